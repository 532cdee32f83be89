#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: the credential-free sidecar (docs/usage.md "A credential-free sidecar", recipes
# sidecar, sidecar-client). `p11-kit server` runs the module with the credential; a client in
# network and mount namespaces of its own (no interface up, the configuration, the emulator's
# files and the home directory hidden, an empty environment) lists the token and signs through
# p11-kit-client.so. Then the same with the shipped systemd user units (p11-kit/), run as systemd
# would by systemd-socket-activate. Independent check: openssl verifies every signature with the
# vault's public key (REST).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg p11-kit p11-kit-modules opensc libengine-pkcs11-openssl systemd
need_tool p11-kit pkcs11-tool openssl unshare systemd-socket-activate curl
need_file "$P11KIT_CLIENT"
need_module
UNITS="$(dirname "$0")/../../p11-kit"
UNSHARE=(unshare --net --mount --fork)
"${UNSHARE[@]}" true 2>/dev/null || UNSHARE=(unshare --map-root-user --net --mount --fork)
"${UNSHARE[@]}" true 2>/dev/null || skip "no network and mount namespaces here (unshare failed as $(id -un))"

consumer_vault
SOCKDIR="$WORK/sock"
RECIPE_SUBST=(/run/akv-sidecar "$SOCKDIR")

# isolated_client TAG SOCKDIR: the recipe sidecar-client, run in new namespaces where SOCKDIR is
# /run/akv-sidecar and nothing of this test's work directory is visible; then openssl checks.
isolated_client() {
  local tag=$1 sockdir=$2 c="$WORK/client-$1" saved=("${RECIPE_SUBST[@]}")
  mkdir -p "$c"
  RECIPE_SUBST=()
  recipe sidecar-client "$c/client.sh"
  RECIPE_SUBST=("${saved[@]}")
  cat >"$c/probe.sh" <<'PROBE'
echo "interfaces up: $(ip -o link show up | grep -c .)"
if env | grep -Eq '^(AZURE_|AKV_|IDENTITY_|MSI_|IMDS_)'; then echo "credential variables: yes"; else echo "credential variables: none"; fi
for f in "$@"; do if [ -e "$f" ]; then echo "visible: $f"; else echo "hidden: $f"; fi; done
PROBE
  # Inside: /run is a fresh tmpfs holding only the socket directory and the client's own
  # directory; the work directory (configuration, emulator state with its secrets, HOME) is
  # covered by an empty tmpfs, as is /etc/akv-pkcs11.
  check "$tag: the client signs through p11-kit-client.so in its own network and mount namespaces" \
    timeout 120 "${UNSHARE[@]}" -- bash -c '
      set -e
      mount --make-rprivate /
      mount -t tmpfs -o mode=755 none /run
      mkdir -p /run/akv-sidecar /run/client
      mount --bind "$1" /run/akv-sidecar
      mount --bind "$2" /run/client
      mount -t tmpfs none "$3"
      if [ -d /etc/akv-pkcs11 ]; then mount -t tmpfs none /etc/akv-pkcs11; fi
      cd /run/client
      env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/run/client bash probe.sh "$3/config.json" "$4" "$5"
      curl -sS --max-time 5 --cacert /dev/null "$6" >/dev/null 2>&1 && echo "vault: reachable" || echo "vault: unreachable"
      exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/run/client bash -x client.sh' \
    _ "$sockdir" "$c" "$WORK" "$EMU_CA" "$HOME" "$EMU_VAULT_URL"
  cp "$WORK/check.out" "$c/out"
  check_grep "$tag: no network interface is up in the client's namespace" '^interfaces up: 0$' "$c/out"
  check_grep "$tag: the vault is unreachable from it" '^vault: unreachable$' "$c/out"
  check_grep "$tag: no credential variable in its environment" '^credential variables: none$' "$c/out"
  check_grep "$tag: the module configuration is hidden" "^hidden: $WORK/config.json\$" "$c/out"
  check_grep "$tag: the emulator's CA and secrets are hidden" "^hidden: $EMU_CA\$" "$c/out"
  check_grep "$tag: the test's home directory is hidden" "^hidden: $HOME\$" "$c/out"
  check_grep "$tag: pkcs11-tool -L shows the vault token through the socket" 'token label +: myvault' "$c/out"
  check "$tag: the ECDSA signature verifies with the vault's public key" openssl pkeyutl -verify -pubin \
    -inkey "$WORK/myeckey.vault.pem" -in "$c/data.sha256" -sigfile "$c/data.ecsig"
  check "$tag: the RSA signature verifies with the vault's public key" openssl pkeyutl -verify -pubin \
    -inkey "$WORK/mykey.vault.pem" -pkeyopt digest:sha256 -in "$c/data.sha256" -sigfile "$c/data.sig"
}

section "p11-kit $(pkg_version p11-kit): p11-kit server (recipe sidecar)"
run_recipe sidecar "recipe sidecar: p11-kit server on /run/akv-sidecar/pkcs11"
[ -s "$SOCKDIR.pid" ] && bg_register "$(cat "$SOCKDIR.pid")"
check "the server's socket exists" test -S "$SOCKDIR/pkcs11"
before=$(stats_get keys.sign)
isolated_client server "$SOCKDIR"
check "the vault made both signatures (keys.sign $before -> $(stats_get keys.sign))" \
  test "$(stats_get keys.sign)" -ge $((before + 2))

section "the systemd user units of p11-kit/, run by systemd-socket-activate"
listen=$(sed -n 's/^ListenStream=//p' "$UNITS/akv-pkcs11-server.socket")
exec_start=$(sed -n 's/^ExecStart=//p' "$UNITS/akv-pkcs11-server@.service")
check_eq "the socket unit accepts connections one by one (Accept=yes)" "Accept=yes" \
  "$(grep -x 'Accept=yes' "$UNITS/akv-pkcs11-server.socket")"
check_eq "the service takes the connection as standard input and output" "StandardInput=socket StandardOutput=socket" \
  "$(grep -E '^Standard(Input|Output)=' "$UNITS/akv-pkcs11-server@.service" | tr '\n' ' ' | sed 's/ $//')"
if command -v systemd-analyze >/dev/null; then
  mkdir -m 700 "$WORK/xdg-runtime"
  check "systemd-analyze verify accepts the units" env XDG_RUNTIME_DIR="$WORK/xdg-runtime" \
    systemd-analyze verify --user "$UNITS/akv-pkcs11-server.socket" "$UNITS/akv-pkcs11-server@.service"
fi
# %t is the user's runtime directory; the module path is the build's.
rt="$WORK/rt"
listen=${listen//%t/$rt}
exec_start=${exec_start//"$DOC_MODULE"/"$AKV_MODULE"}
mkdir -p "$rt" && mkdir -m 700 "$(dirname "$listen")"
read -r -a exec_argv <<<"$exec_start"
# Like systemd, systemd-socket-activate hands the service only the variables it is given: the
# user's HOME (the unit finds ~/.config/akv-pkcs11/config.json) or, here, AKV_PKCS11_CONFIG.
timeout 120 systemd-socket-activate --listen="$listen" --accept --inetd -E HOME \
  -E AKV_PKCS11_CONFIG="$RECIPE_CONFIG" -- "${exec_argv[@]}" >"$WORK/activate.log" 2>&1 &
bg_register $!
for _ in $(seq 100); do [ -S "$listen" ] && break; sleep 0.1; done
check "systemd-socket-activate listens on the unit's socket" test -S "$listen"
isolated_client units "$(dirname "$listen")"
finish
