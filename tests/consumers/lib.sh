# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# lib.sh - sourced by the consumer tests (tests/consumers/t_*.sh): the integration library
# (emulator, vault seeding, checks; tests/integration/lib.sh) plus the recipe runner.
#
# The recipes are the ```sh recipe=NAME blocks of docs/usage.md (and docs/troubleshooting.md): a test cuts its block out of the
# document, replaces the paths a reader would use (module, configuration, /etc and /run paths,
# ports) with the test's own, and runs it with bash -euo pipefail. So the documentation is the
# command the test runs; the test then checks the result with an independent verifier.
# Inputs: AKV_EMULATOR, AKV_MODULE, AKV_SOURCE_ROOT (set by tests/consumers/meson.build).

# shellcheck source=../integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

DOCS_DIR="${AKV_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/docs"
# The documents holding recipes: the usage recipes, and the workarounds in troubleshooting.md.
RECIPE_DOCS=("$DOCS_DIR/usage.md" "$DOCS_DIR/troubleshooting.md")
# shellcheck disable=SC2034 # (used by the tests that source this file)
DOC_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so
DOC_CONFIG=/etc/akv-pkcs11/config.json
# shellcheck disable=SC2034
ENGINE_SO=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
# shellcheck disable=SC2034
P11KIT_CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
# Paths the recipes use, replaced with the test's own by recipe (RECIPE_SUBST: FROM TO ...).
RECIPE_SUBST=()

# recipe NAME OUT: the block ```sh recipe=NAME of docs/usage.md or docs/troubleshooting.md as the
# script OUT, with the module path, the configuration path and every RECIPE_SUBST pair replaced
# (literal strings).
recipe() {
  local name=$1 out=$2 text i n
  n=$(cat "${RECIPE_DOCS[@]}" | grep -x -F -c -- '```sh recipe='"$name" || true)
  [ "$n" = 1 ] || fail "docs/usage.md and troubleshooting.md must have one \`\`\`sh recipe=$name block (have $n)"
  text=$(awk -v open='```sh recipe='"$name" '$0 == open { inb = 1; next } /^```/ { inb = 0 } inb { print }' \
    "${RECIPE_DOCS[@]}")
  [ -n "$text" ] || fail "docs: the recipe $name is empty"
  text=${text//"$DOC_MODULE"/"$AKV_MODULE"}
  [ -z "${RECIPE_CONFIG:-}" ] || text=${text//"$DOC_CONFIG"/"$RECIPE_CONFIG"}
  for ((i = 0; i + 1 < ${#RECIPE_SUBST[@]}; i += 2)); do
    text=${text//"${RECIPE_SUBST[i]}"/"${RECIPE_SUBST[i + 1]}"}
  done
  printf 'set -euo pipefail\n%s\n' "$text" >"$out"
}

# run_recipe NAME DESC: one check that runs the recipe NAME (in $WORK/run, bounded by
# RECIPE_TIMEOUT seconds, default 120); its trace and output stay in $WORK/recipe-NAME.out.
run_recipe() {
  local name=$1 desc=$2
  mkdir -p "$WORK/run"
  recipe "$name" "$WORK/recipe-$name.sh"
  check "$desc" bash -c 'cd "$1" && timeout "$2" bash -x "$3"' _ "$WORK/run" "${RECIPE_TIMEOUT:-120}" \
    "$WORK/recipe-$name.sh"
  cp "$WORK/check.out" "$WORK/recipe-$name.out"
}

# stop_pidfile FILE: registers the daemon whose pid FILE holds (nginx, apache2) with the EXIT
# trap's bounded stop (SIGTERM, 5 s, SIGKILL).
stop_pidfile() {
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  [[ "$pid" =~ ^[0-9]+$ ]] && bg_register "$pid"
  return 0
}

# worker_user: WUSER, the user a server's workers run as: www-data as the recipes say when this
# test runs as root; otherwise (a server cannot switch users) this test's user and group, which
# RECIPE_SUBST then puts in the recipe's place.
worker_user() {
  WUSER=www-data
  [ "$(id -u)" = 0 ] && return 0
  WUSER=$(id -un)
  local g
  g=$(id -gn)
  RECIPE_SUBST+=("-o www-data -g www-data" "-o $WUSER -g $g" "user www-data;" "user $WUSER;"
    "User www-data" "User $WUSER" "Group www-data" "Group $g")
}

# need_pkg PKG...: skips only when a Debian package is absent (scripts/deps.sh installs them all).
need_pkg() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      skip "package $p is not installed (scripts/deps.sh installs it)"
  done
}

# pkg_version PKG: the installed Debian version.
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# kv_create_codesign_cert NAME SUBJECT KTY SIZE_OR_CRV: a self-signed vault certificate for code
# signing (key usage digitalSignature, extended key usage codeSigning, as jarsigner -strict and
# Authenticode want).
kv_create_codesign_cert() {
  KV_CERT_X509='{"key_usage":["digitalSignature"],"ekus":["1.3.6.1.5.5.7.3.3"]}' kv_create_cert "$@"
}

# consumer_vault: emulator with vault "myvault" holding the documented objects (RSA key mykey,
# EC P-256 key myeckey, RSA certificate mycert, here a code-signing one), a configuration file for it in $WORK/config.json
# whose CA file every user can read (servers drop to their worker user) and which keeps the default
# per-user cache file, and RECIPE_CONFIG pointing at it.
consumer_vault() {
  emu_start --vault myvault
  kv_create_rsa mykey 2048 || fail "seeding mykey"
  kv_create_ec myeckey P-256 || fail "seeding myeckey"
  kv_create_codesign_cert mycert "CN=mycert" RSA 2048 || fail "seeding mycert"
  mkdir -p "$WORK/pub"
  chmod 755 "$WORK/pub"
  chmod 711 "$WORK"
  install -m 644 "$EMU_CA" "$WORK/pub/emulator-ca.pem"
  module_config "$WORK/config.json" '{}' "$(jq -cn --arg ca "$WORK/pub/emulator-ca.pem" '{ca_file: $ca}')"
  # The per-user cache file as installed (module_config turns it off for the integration tests).
  jq 'del(.cache_file)' "$WORK/config.json" >"$WORK/config.tmp" && mv "$WORK/config.tmp" "$WORK/config.json"
  chmod 600 "$WORK/config.json"
  unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL \
    AKV_PKCS11_CA_FILE AKV_PKCS11_ALLOWED_HOSTS
  RECIPE_CONFIG="$WORK/config.json"
  kv_key_pem mykey "$WORK/mykey.vault.pem" || fail "vault public key of mykey"
  kv_key_pem myeckey "$WORK/myeckey.vault.pem" || fail "vault public key of myeckey"
}

# root_only_ca_config: the configuration a server recipe starts from (RECIPE_CONFIG, replaced)
# names a CA file only root can read, $WORK/ca-root-only.pem (0600), as a root-owned
# /etc/akv-pkcs11 would have: the workers (www-data) have the CA only if the recipe gives it them.
root_only_ca_config() {
  install -m 600 "$EMU_CA" "$WORK/ca-root-only.pem"
  jq --arg ca "$WORK/ca-root-only.pem" '.ca_file = $ca' "$RECIPE_CONFIG" >"$WORK/root-ca-source.json"
  chmod 600 "$WORK/root-ca-source.json"
  RECIPE_CONFIG="$WORK/root-ca-source.json"
}

# nginx_start CHECK: nginx as docs/usage.md recipe `nginx` gives it (master + 2 workers, the vault's
# RSA key on P1, its EC key on P2), started with CHECK as the recipe's check; sets P1 P2 N PIDFILE
# MASTER (and RECIPE_SUBST, WUSER). Fails the test when nginx does not start or listen.
nginx_start() {
  P1=$(free_port) || fail "no free port"
  P2=$(free_port) || fail "no free port"
  [ "$P1" != "$P2" ] || P2=$(free_port)
  N="$WORK/pub/nginx"
  PIDFILE="$WORK/pub/nginx.pid"
  # shellcheck disable=SC2034 # (read by run_recipe)
  RECIPE_SUBST=(/etc/nginx/akv "$N" /var/lib/akv-pkcs11-nginx "$WORK/pub/nginx-home"
    /run/nginx-akv.pid "$PIDFILE" 8443 "$P1" 8444 "$P2")
  worker_user
  root_only_ca_config
  run_recipe nginx "$1"
  stop_pidfile "$PIDFILE"
  [ -s "$PIDFILE" ] || { sed 's/^/#   | /' "$N/error.log" 2>/dev/null; fail "nginx did not start"; }
  MASTER=$(cat "$PIDFILE")
  wait_port "$P1" 100 && wait_port "$P2" 100 || fail "nginx does not listen on $P1/$P2"
}
