# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# lib.sh - sourced by every integration test (tests/integration/*.sh).
#
# Gives each test: strict mode, a private work directory removed on exit, the Key Vault emulator
# ($AKV_EMULATOR) on 127.0.0.1 with the module's environment pointing at it, REST helpers that seed
# the vault the way a real client would, the emulator's request counters, and assertion helpers
# that count and print every check. Every wait is bounded; meson's timeout kills the rest.
#
# Inputs (set by meson, or by hand): AKV_EMULATOR (akv-emulator binary), AKV_MODULE (akv-pkcs11.so).
# Exit codes: 0 all checks passed, 1 a check failed or setup broke, 77 a required tool is absent.

set -Eeuo pipefail
umask 077

T_NAME=$(basename "${0%.sh}")
T_CHECKS=0
T_FAILED=0
T_FAILED_NAMES=()
EMU_PID=""
BG_PIDS=()
CLEANUP_FILES=()
CLEANUP_DIRS=()

# The work dir also becomes HOME and XDG_*: the module's per-user cache file, ssh's and p11-kit's
# user files never touch the real home, and no user config is picked up by accident.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/akv-integ-${T_NAME}.XXXXXX")
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_CACHE_HOME="$WORK/home/.cache"
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME"
# The access token the module shares between processes (docs/security.md "The shared access
# token") stays within the test: a fresh session keyring for this shell and its children (the
# module then uses it rather than the user keyring), so a key left by an earlier run or by a test
# running at the same time is never found; and a private runtime directory for the fetch lock.
# fresh_keyring again later: the next process finds no token an earlier one left (for checks of
# which credential source a process asks).
fresh_keyring() { if command -v keyctl >/dev/null 2>&1; then keyctl new_session >/dev/null 2>&1 || true; fi; }
export XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$XDG_RUNTIME_DIR"
fresh_keyring
# Nothing from the caller's environment may steer the module or the consumers.
unset AKV_PKCS11_CONFIG AKV_PKCS11_VAULT_URL AKV_PKCS11_CA_FILE AKV_PKCS11_ALLOWED_HOSTS \
  AKV_PKCS11_OBJECTS AKV_PKCS11_CREDENTIAL AKV_PKCS11_DEBUG AKV_PKCS11_LOG_LEVEL AKV_PKCS11_LOG_FILE \
  AKV_PKCS11_AUDIT_FILE AKV_PKCS11_PROXY AKV_PKCS11_IMDS_ENDPOINT AKV_PKCS11_AZ_PATH \
  AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST \
  AZURE_CLIENT_CERTIFICATE_PATH AZURE_CLIENT_CERTIFICATE_PASSWORD AZURE_FEDERATED_TOKEN_FILE \
  IDENTITY_ENDPOINT IDENTITY_HEADER IMDS_ENDPOINT MSI_ENDPOINT MSI_SECRET AZURE_POD_IDENTITY_AUTHORITY_HOST \
  AZURE_TOKEN_CREDENTIALS PKCS11_MODULE_PATH OPENSSL_CONF P11_KIT_SERVER_ADDRESS http_proxy https_proxy \
  HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy 2>/dev/null || true
# Every credential source a test can reach stays on loopback (docs/testing.md): managed identity
# (IMDS) at a closed loopback port and no Azure CLI, unless a test points them at the emulator or
# a fake az of its own.
export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9 AKV_PKCS11_AZ_PATH=/nonexistent/az

log() { printf '# %s\n' "$*"; }
section() { printf '\n## %s\n' "$*"; }

fail() {
  printf 'FATAL (%s): %s\n' "$T_NAME" "$*" >&2
  exit 1
}

# skip MSG: only for a tool that is truly absent on this machine.
skip() {
  printf 'SKIP (%s): %s\n' "$T_NAME" "$*"
  exit 77
}

need_tool() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || skip "tool '$t' is not installed"
  done
}

need_file() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || skip "'$f' is not installed"
  done
}

_cleanup() {
  local rc=$? p f
  set +e
  for p in "${BG_PIDS[@]}"; do
    _stop_pid "$p"
  done
  emu_stop
  if [ -n "${AKV_MEMCHECK:-}" ] && [ "${AKV_MEMCHECK}" != 0 ]; then
    memcheck_report || { [ "$rc" = 0 ] || [ "$rc" = 77 ] && rc=1; }
  fi
  for f in "${CLEANUP_FILES[@]}"; do
    rm -f -- "$f"
  done
  for f in "${CLEANUP_DIRS[@]}"; do
    rmdir -- "$f" 2>/dev/null
  done
  if [ -n "${KEEP_WORK:-}" ]; then
    printf '# work dir kept: %s\n' "$WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
  exit "$rc"
}
trap _cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# SIGTERM, wait up to 5 s, then SIGKILL.
_stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

bg_register() { BG_PIDS+=("$1"); }
cleanup_register() { CLEANUP_FILES+=("$1"); }

# ---- assertions -------------------------------------------------------------------------------

_check_result() {
  local ok=$1 desc=$2
  T_CHECKS=$((T_CHECKS + 1))
  if [ "$ok" = 0 ]; then
    printf 'ok %d - %s\n' "$T_CHECKS" "$desc"
  else
    T_FAILED=$((T_FAILED + 1))
    T_FAILED_NAMES+=("$desc")
    printf 'not ok %d - %s\n' "$T_CHECKS" "$desc"
  fi
}

# check DESC CMD...: passes when CMD exits 0. Output of CMD goes to $WORK/check.out (shown on failure).
check() {
  local desc=$1 rc=0
  shift
  "$@" >"$WORK/check.out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    printf '#   command: %s\n#   exit status %d; output (last 25 lines):\n' "$*" "$rc"
    tail -n 25 "$WORK/check.out" | sed 's/^/#   | /'
  fi
  _check_result "$rc" "$desc"
  return 0
}

# check_fails DESC CMD...: passes when CMD exits non-zero (a refusal we expect).
check_fails() {
  local desc=$1 rc=0
  shift
  "$@" >"$WORK/check.out" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    printf '#   command unexpectedly succeeded: %s\n' "$*"
    tail -n 10 "$WORK/check.out" | sed 's/^/#   | /'
    _check_result 1 "$desc"
  else
    _check_result 0 "$desc"
  fi
  return 0
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then
    _check_result 0 "$1"
  else
    printf '#   expected: %s\n#   got:      %s\n' "$2" "$3"
    _check_result 1 "$1"
  fi
  return 0
}

# check_grep DESC REGEX FILE: FILE has a line matching the extended REGEX.
check_grep() {
  if grep -Eq -- "$2" "$3"; then
    _check_result 0 "$1"
  else
    printf '#   no line matches /%s/ in %s:\n' "$2" "$3"
    head -n 40 "$3" | sed 's/^/#   | /'
    _check_result 1 "$1"
  fi
  return 0
}

check_nogrep() {
  if grep -rEq -- "$2" "$3"; then
    printf '#   unexpected line matching /%s/ in %s:\n' "$2" "$3"
    grep -rE -m 5 -- "$2" "$3" | sed 's/^/#   | /'
    _check_result 1 "$1"
  else
    _check_result 0 "$1"
  fi
  return 0
}

# check_same_file DESC FILE1 FILE2 (byte equality)
check_same_file() {
  if [ -s "$2" ] && cmp -s -- "$2" "$3"; then
    _check_result 0 "$1"
  else
    printf '#   %s (%s bytes) and %s (%s bytes) differ or are empty\n' "$2" "$(wc -c <"$2" 2>/dev/null || echo -)" \
      "$3" "$(wc -c <"$3" 2>/dev/null || echo -)"
    _check_result 1 "$1"
  fi
  return 0
}

# finish: prints the summary and sets the exit status. Call at the end of every test.
finish() {
  local n
  printf '\n# %s: %d checks, %d failed\n' "$T_NAME" "$T_CHECKS" "$T_FAILED"
  for n in "${T_FAILED_NAMES[@]}"; do
    printf '#   FAILED: %s\n' "$n"
  done
  [ "$T_CHECKS" -gt 0 ] || fail "no checks ran"
  [ "$T_FAILED" = 0 ] || exit 1
  exit 0
}

# ---- emulator ---------------------------------------------------------------------------------

# emu_start [emulator args...]: starts $AKV_EMULATOR on 127.0.0.1 (ephemeral ports), waits for the
# ready file (20 s), exports what the module and the helpers below need.
emu_start() {
  local ready="$WORK/emu-ready.json" i n wait_s=${EMU_START_TIMEOUT:-20}
  [ -n "${AKV_EMULATOR:-}" ] || fail "AKV_EMULATOR is not set"
  [ -x "$AKV_EMULATOR" ] || fail "AKV_EMULATOR '$AKV_EMULATOR' is not an executable"
  mkdir -p "$WORK/emu-state"
  rm -f "$ready"
  "$AKV_EMULATOR" --ready-file "$ready" --port-base 0 --state "$WORK/emu-state" "$@" \
    >"$WORK/emu.log" 2>&1 </dev/null &
  EMU_PID=$!
  # EMU_START_TIMEOUT (seconds, default 20): longer when the emulator runs under valgrind.
  for i in $(seq $((wait_s * 10))); do
    if [ -s "$ready" ] && jq -e '.vaults | length > 0' "$ready" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$EMU_PID" 2>/dev/null; then
      sed 's/^/#   emu| /' "$WORK/emu.log" >&2
      EMU_PID=""
      fail "the emulator exited before writing its ready file"
    fi
    sleep 0.1
  done
  if ! [ -s "$ready" ] || ! jq -e '.vaults | length > 0' "$ready" >/dev/null 2>&1; then
    sed 's/^/#   emu| /' "$WORK/emu.log" >&2
    fail "the emulator wrote no valid ready file within $wait_s s"
  fi
  EMU_READY=$ready
  export EMU_READY
  EMU_CA=$(jq -r '.ca_file' "$ready")
  EMU_AUTHORITY=$(jq -r '.authority_host' "$ready")
  EMU_TENANT=$(jq -r '.tenant_id' "$ready")
  EMU_CLIENT_ID=$(jq -r '.client_id' "$ready")
  EMU_CLIENT_SECRET=$(jq -r '.client_secret' "$ready")
  EMU_STATS=$(jq -r '.stats_url' "$ready")
  EMU_CONTROL=$(jq -r '.control_url // empty' "$ready")
  EMU_VAULT_URLS=$(jq -r '[.vaults[].url] | join(",")' "$ready")
  EMU_VAULT_URL=$(jq -r '.vaults[0].url' "$ready")
  EMU_VAULT_NAME=$(jq -r '.vaults[0].name' "$ready")
  n=$(jq -r '.vaults | length' "$ready")
  for ((i = 0; i < n; i++)); do
    export "EMU_VAULT_URL_$i=$(jq -r ".vaults[$i].url" "$ready")"
    export "EMU_VAULT_NAME_$i=$(jq -r ".vaults[$i].name" "$ready")"
  done
  export EMU_CA EMU_AUTHORITY EMU_TENANT EMU_CLIENT_ID EMU_CLIENT_SECRET EMU_STATS EMU_CONTROL \
    EMU_VAULT_URLS EMU_VAULT_URL EMU_VAULT_NAME
  export AKV_PKCS11_CA_FILE="$EMU_CA" AKV_PKCS11_ALLOWED_HOSTS=localhost \
    AKV_PKCS11_VAULT_URL="$EMU_VAULT_URLS" AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" \
    AZURE_CLIENT_SECRET="$EMU_CLIENT_SECRET" AZURE_AUTHORITY_HOST="$EMU_AUTHORITY"
  log "emulator pid $EMU_PID, vaults: $EMU_VAULT_URLS"
}

emu_stop() {
  [ -n "${EMU_PID:-}" ] || return 0
  _stop_pid "$EMU_PID"
  EMU_PID=""
}

emu_field() { jq -r "$1" "$EMU_READY"; }

# ---- Key Vault REST (what a real client does) -------------------------------------------------

KV_API=7.6

# kv_token: an access token from the emulator's Entra endpoint for $KV_SCOPE (default the Key
# Vault scope; https://managedhsm.azure.net/.default for a Managed HSM), cached for this test in a
# 0600 header file (kv_hdr prints its path) so it never appears on a command line or in a log.
KV_SCOPE_VAULT=https://vault.azure.net/.default
KV_SCOPE_MHSM=https://managedhsm.azure.net/.default
kv_hdr() {
  if [ "${KV_SCOPE:-$KV_SCOPE_VAULT}" = "$KV_SCOPE_VAULT" ]; then
    echo "$WORK/kv-auth.hdr"
  else
    echo "$WORK/kv-auth-mhsm.hdr"
  fi
}
kv_token() {
  local resp tok hdr
  hdr=$(kv_hdr)
  [ -s "$hdr" ] && return 0
  resp=$(curl -sS --fail-with-body --max-time 20 --cacert "$EMU_CA" \
    --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$EMU_CLIENT_ID" \
    --data-urlencode "client_secret=$EMU_CLIENT_SECRET" \
    --data-urlencode "scope=${KV_SCOPE:-$KV_SCOPE_VAULT}" \
    "$EMU_AUTHORITY/$EMU_TENANT/oauth2/v2.0/token") || fail "token request failed: $resp"
  tok=$(jq -r '.access_token // empty' <<<"$resp")
  [ -n "$tok" ] || fail "token response carries no access_token"
  printf 'Authorization: Bearer %s\n' "$tok" >"$hdr"
}

# kv_call METHOD PATH [JSON]: the response body on stdout; HTTP errors fail loudly (status and
# body on stderr, exit status 1). KV_URL overrides the vault (default: the first one), KV_SCOPE
# the token's scope.
kv_call() {
  local method=$1 path=$2 body=${3:-} url sep code out hdr
  kv_token
  hdr=$(kv_hdr)
  url="${KV_URL:-$EMU_VAULT_URL}$path"
  sep='?'
  [[ "$path" == *\?* ]] && sep='&'
  url="$url${sep}api-version=$KV_API"
  out="$WORK/kv-call.out"
  if [ -n "$body" ]; then
    code=$(curl -sS --max-time 60 --cacert "$EMU_CA" -H @"$hdr" \
      -H 'Content-Type: application/json' -X "$method" --data-binary "$body" -o "$out" \
      -w '%{http_code}' "$url") || { echo "kv_call: curl failed: $method $path" >&2; return 1; }
  else
    code=$(curl -sS --max-time 60 --cacert "$EMU_CA" -H @"$hdr" -X "$method" \
      -o "$out" -w '%{http_code}' "$url") || { echo "kv_call: curl failed: $method $path" >&2; return 1; }
  fi
  if [ "${code:0:1}" != 2 ]; then
    printf 'kv_call: %s %s -> HTTP %s: %s\n' "$method" "$path" "$code" "$(head -c 600 "$out")" >&2
    return 1
  fi
  cat "$out"
}

kv_create_rsa() { kv_call POST "/keys/$1/create" "{\"kty\":\"RSA\",\"key_size\":$2}" >/dev/null; }
kv_create_ec() { kv_call POST "/keys/$1/create" "{\"kty\":\"EC\",\"crv\":\"$2\"}" >/dev/null; }
kv_create_disabled() {
  kv_call POST "/keys/$1/create" '{"kty":"EC","crv":"P-256","attributes":{"enabled":false}}' >/dev/null
}
kv_rotate() { kv_call POST "/keys/$1/rotate" >/dev/null; }
kv_set_secret() { kv_call PUT "/secrets/$1" "$(jq -cn --arg v "$2" '{value:$v}')" >/dev/null; }

# kv_create_cert NAME SUBJECT [KTY [SIZE_OR_CRV]]: self-signed certificate with its key; polls the
# pending operation (bounded, 30 s) until completed. KV_CERT_X509 (a JSON object) is merged into
# the policy's x509_props (e.g. other key_usage, ekus).
kv_create_cert() {
  local name=$1 subject=$2 kty=${3:-RSA} arg=${4:-2048} keyprops status i
  if [ "$kty" = EC ]; then
    keyprops=$(jq -cn --arg c "$arg" '{exportable:true,kty:"EC",crv:$c,reuse_key:false}')
  else
    keyprops=$(jq -cn --argjson s "$arg" '{exportable:true,kty:"RSA",key_size:$s,reuse_key:false}')
  fi
  kv_call POST "/certificates/$name/create" "$(jq -cn --arg s "$subject" --argjson k "$keyprops" \
    --argjson x "${KV_CERT_X509:-{\}}" \
    '{policy:{key_props:$k,secret_props:{contentType:"application/x-pem-file"},
      x509_props:({subject:$s,validity_months:12,key_usage:["digitalSignature","keyEncipherment"]} + $x),
      issuer:{name:"Self"}}}')" >/dev/null || return 1
  for i in $(seq 150); do
    status=$(kv_call GET "/certificates/$name/pending" | jq -r '.status') || return 1
    case "$status" in
    completed) return 0 ;;
    inProgress) sleep 0.2 ;;
    *) echo "kv_create_cert: $name pending status '$status'" >&2; return 1 ;;
    esac
  done
  echo "kv_create_cert: $name still pending after 30 s" >&2
  return 1
}

# kv_cert_der NAME OUT: the certificate's `cer` (standard base64) as DER.
kv_cert_der() { kv_call GET "/certificates/$1" | jq -r '.cer' | base64 -d >"$2"; }
kv_secret_value() { kv_call GET "/secrets/$1" | jq -j '.value'; }

# ---- JWK -> public key ------------------------------------------------------------------------

_b64url_hex() {
  local s=$1
  s=${s//-/+}
  s=${s//_//}
  case $((${#s} % 4)) in
  2) s="$s==" ;;
  3) s="$s=" ;;
  esac
  printf '%s' "$s" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

# jwk_to_der JWK_JSON OUT_DER: DER SubjectPublicKeyInfo of an RSA or EC JWK (openssl asn1parse
# -genconf, so the encoding is openssl's, independent of the module).
jwk_to_der() {
  local jwk=$1 out=$2 kty conf="$WORK/jwk.cnf" curve
  kty=$(jq -r '.kty' <<<"$jwk")
  case "$kty" in
  RSA | RSA-HSM)
    cat >"$conf" <<EOF
asn1=SEQUENCE:spki
[spki]
alg=SEQUENCE:alg
key=BITWRAP,SEQUENCE:rsakey
[alg]
oid=OID:rsaEncryption
null=NULL
[rsakey]
n=INTEGER:0x00$(_b64url_hex "$(jq -r .n <<<"$jwk")")
e=INTEGER:0x$(_b64url_hex "$(jq -r .e <<<"$jwk")")
EOF
    ;;
  EC | EC-HSM)
    case "$(jq -r .crv <<<"$jwk")" in
    P-256) curve=prime256v1 ;;
    P-384) curve=secp384r1 ;;
    P-521) curve=secp521r1 ;;
    P-256K | SECP256K1) curve=secp256k1 ;;
    *) echo "jwk_to_der: unknown curve" >&2; return 1 ;;
    esac
    cat >"$conf" <<EOF
asn1=SEQUENCE:spki
[spki]
alg=SEQUENCE:alg
key=FORMAT:HEX,BITSTRING:04$(_b64url_hex "$(jq -r .x <<<"$jwk")")$(_b64url_hex "$(jq -r .y <<<"$jwk")")
[alg]
oid=OID:id-ecPublicKey
curve=OID:$curve
EOF
    ;;
  *) echo "jwk_to_der: unsupported kty $kty" >&2; return 1 ;;
  esac
  openssl asn1parse -genconf "$conf" -noout -out "$out.raw" >/dev/null || return 1
  # Re-encode through openssl pkey: canonical DER (e.g. no superfluous leading zero of n).
  openssl pkey -pubin -inform DER -in "$out.raw" -outform DER -out "$out" || return 1
  rm -f "$out.raw"
}

# kv_key_der NAME OUT_DER [VERSION]: the vault's current public key as DER SPKI.
kv_key_der() { jwk_to_der "$(kv_call GET "/keys/$1/${3:-}" | jq -c '.key')" "$2"; }
kv_key_pem() {
  kv_key_der "$1" "$2.der" "${3:-}" && openssl pkey -pubin -inform DER -in "$2.der" -out "$2" && rm -f "$2.der"
}

# der_id FILE: hex SHA-1 of a DER SPKI, the CKA_ID of the key pair (docs/lifecycle.md "CKA_ID and pairing with certificates").
der_id() { openssl dgst -sha1 -binary "$1" | od -An -v -tx1 | tr -d ' \n'; }
# kv_key_id NAME: CKA_ID the module must give to key NAME.
kv_key_id() { kv_key_der "$1" "$WORK/kid.der" && der_id "$WORK/kid.der"; }
# token serial (docs/usage.md): first 16 hex digits of SHA-256 of the vault URL.
vault_serial() { printf '%s' "${1%/}" | sha256sum | cut -c1-16; }

# ---- emulator statistics ----------------------------------------------------------------------

stats_json() { curl -sS --fail --max-time 10 --cacert "$EMU_CA" "$EMU_STATS"; }
stats_get() { stats_json | jq -r --arg op "$1" '.by_operation[$op] // 0'; }
stats_total() { stats_json | jq -r '.requests_total'; }
stats_reset() {
  [ -n "$EMU_CONTROL" ] || fail "the ready file has no control_url (stats reset impossible)"
  curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST "$EMU_CONTROL/stats/reset" >/dev/null
}
# stats_ops: compact view of the counters for messages.
stats_ops() { stats_json | jq -c '.by_operation'; }

# ---- module helpers ---------------------------------------------------------------------------

need_module() {
  [ -n "${AKV_MODULE:-}" ] || fail "AKV_MODULE is not set"
  [ -f "$AKV_MODULE" ] || fail "AKV_MODULE '$AKV_MODULE' does not exist"
}

p11tool_m() { pkcs11-tool --module "$AKV_MODULE" "$@"; }

# pkcs11-tool marks every private key it generates CKA_PRIVATE=TRUE, which a slot without login
# refuses (docs/security.md "Login"): key generation runs on a copy of the configuration whose
# slots require a login with the PIN $GEN_PIN. login_config SRC DST writes that copy (0600);
# p11tool_gen ARGS... runs pkcs11-tool --login --pin on a copy of $AKV_PKCS11_CONFIG.
GEN_PIN=keygen-pin-4711
login_config() {
  local hash
  hash=$(printf '%s' "$GEN_PIN" | mkpasswd -m sha512crypt -s) || fail "mkpasswd (package whois)"
  jq --arg h "$hash" '.slots[] += {login: "required", pin_hash: $h}' "$1" >"$2.tmp" &&
    mv "$2.tmp" "$2" && chmod 600 "$2" || fail "login_config $1"
}
p11tool_gen() {
  [ -n "${AKV_PKCS11_CONFIG:-}" ] || fail "p11tool_gen: AKV_PKCS11_CONFIG is not set"
  login_config "$AKV_PKCS11_CONFIG" "$WORK/gen-login.json"
  AKV_PKCS11_CONFIG="$WORK/gen-login.json" pkcs11-tool --module "$AKV_MODULE" --login --pin "$GEN_PIN" "$@"
}

# module_config FILE [SLOT_EXTRA_JSON [GLOBAL_EXTRA_JSON]]: a module config file (0600) with one
# slot per emulator vault, labelled with the vault's name, objects keys+certificates+secrets, the
# emulator CA and credentials, and no cross-process cache file. SLOT_EXTRA_JSON (an object) is
# merged into every slot, GLOBAL_EXTRA_JSON into the top level. Field names: docs/config.md.
module_config() {
  local file=$1 slot_extra=${2:-'{}'} global_extra=${3:-'{}'}
  jq -n --slurpfile r "$EMU_READY" --argjson se "$slot_extra" --argjson ge "$global_extra" '
    ($r[0]) as $r |
    {
      ca_file: $r.ca_file,
      allowed_hosts: ["localhost"],
      cache_file: "",
      credential: {
        type: "client_secret",
        tenant_id: $r.tenant_id,
        client_id: $r.client_id,
        client_secret: $r.client_secret,
        authority_host: $r.authority_host
      },
      slots: [ $r.vaults[] | ({url: .url, label: .name, objects: ["keys", "certificates", "secrets"]} + $se) ]
    } + $ge' >"$file"
  chmod 600 "$file"
}

# fresh_cache: removes the module's default cross-process cache file (docs/security.md "The cache file"; it lives under
# $XDG_CACHE_HOME, i.e. in the work dir), so the next process must talk to the vault again.
fresh_cache() { rm -rf -- "$XDG_CACHE_HOME/akv-pkcs11"; }

# ---- misc -------------------------------------------------------------------------------------

# free_port: a TCP port on 127.0.0.1 nobody listens on right now.
free_port() {
  local p i
  for i in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_port PORT [TENTHS]: until something listens on 127.0.0.1:PORT (default 10 s).
wait_port() {
  local i
  for i in $(seq "${2:-100}"); do
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# token_pubkey_der ID OUT_DER: the public key with CKA_ID ID as the token exports it
# (pkcs11-tool --read-object --type pubkey), normalised by openssl to DER SPKI.
# pkcs11-tool 0.23 with OpenSSL 3.0 fails to build some EC keys ("cannot create EVP_PKEY", OpenSC
# issue #3200, a consumer bug): then the SPKI is built from the token's own CKA_EC_PARAMS and
# CKA_EC_POINT as pkcs11-tool -O prints them, so the key still comes from the token.
token_pubkey_der() {
  local id=$1 out=$2 point params curve raw
  if p11tool_m --read-object --type pubkey --id "$id" -o "$out.raw" >"$out.log" 2>&1; then
    openssl pkey -pubin -inform DER -in "$out.raw" -outform DER -out "$out"
    return
  fi
  if ! grep -q "cannot create EVP_PKEY" "$out.log"; then
    cat "$out.log" >&2
    return 1
  fi
  echo "note: pkcs11-tool 0.23 cannot export this EC key (OpenSC #3200); using CKA_EC_PARAMS/CKA_EC_POINT from -O" >&2
  p11tool_m -O >"$out.O" 2>&1 || { cat "$out.O" >&2; return 1; }
  point=$(awk -v id="$id" '/^Public Key Object/{blk=1; p=""; q=""; next} /^[^ \t]/{blk=0}
    blk && /EC_POINT:/{p=$2} blk && /EC_PARAMS:/{q=$2} blk && /ID:/ && $2==id {print p; exit}' "$out.O")
  params=$(awk -v id="$id" '/^Public Key Object/{blk=1; p=""; q=""; next} /^[^ \t]/{blk=0}
    blk && /EC_POINT:/{p=$2} blk && /EC_PARAMS:/{q=$2} blk && /ID:/ && $2==id {print q; exit}' "$out.O")
  case "$params" in
  06082a8648ce3d030107) curve=prime256v1 ;;
  06052b81040022) curve=secp384r1 ;;
  06052b81040023) curve=secp521r1 ;;
  06052b8104000a) curve=secp256k1 ;;
  *) echo "token_pubkey_der: no EC public key with ID $id in -O output (params '$params')" >&2; return 1 ;;
  esac
  # CKA_EC_POINT is a DER OCTET STRING: 04 LEN or 04 81 LEN, then the point.
  case "${point:2:2}" in 81) raw=${point:6} ;; *) raw=${point:4} ;; esac
  cat >"$out.cnf" <<EOF2
asn1=SEQUENCE:spki
[spki]
alg=SEQUENCE:alg
key=FORMAT:HEX,BITSTRING:$raw
[alg]
oid=OID:id-ecPublicKey
curve=OID:$curve
EOF2
  openssl asn1parse -genconf "$out.cnf" -noout -out "$out.raw" >/dev/null &&
    openssl pkey -pubin -inform DER -in "$out.raw" -outform DER -out "$out"
}

# token_pubkey_pem ID OUT_PEM
token_pubkey_pem() {
  token_pubkey_der "$1" "$2.der" && openssl pkey -pubin -inform DER -in "$2.der" -out "$2"
}

hex_of() { od -An -v -tx1 "$1" | tr -d ' \n'; }
# b64url_of FILE: base64url without padding of a file's bytes (JWK encoding).
b64url_of() { base64 -w0 "$1" | tr '+/' '-_' | tr -d '='; }

# ---- standard seed and pkcs11-tool -O parsing -------------------------------------------------

# The keys every issue-3/issue-8 test seeds: name -> "kty arg".
STD_RSA_KEYS=(rsa2048 rsa3072 rsa4096)
STD_EC_KEYS=(ec-p256 ec-p384 ec-p521 ec-p256k)
declare -A STD_KEY_ARG=([rsa2048]=2048 [rsa3072]=3072 [rsa4096]=4096 [ec-p256]=P-256 [ec-p384]=P-384
  [ec-p521]=P-521 [ec-p256k]=P-256K)
STD_CERT=tlscert
STD_SECRET=db-password
STD_SECRET_VALUE='s3cr3t value with spaces & symbols: <>"'"'"
STD_DISABLED=off-key

# seed_standard: RSA 2048/3072/4096, EC P-256/P-384/P-521/P-256K keys, a disabled key, an RSA
# certificate with its key and a secret in the first vault (via REST).
seed_standard() {
  local k
  for k in "${STD_RSA_KEYS[@]}"; do kv_create_rsa "$k" "${STD_KEY_ARG[$k]}" || fail "seeding key $k"; done
  for k in "${STD_EC_KEYS[@]}"; do kv_create_ec "$k" "${STD_KEY_ARG[$k]}" || fail "seeding key $k"; done
  kv_create_disabled "$STD_DISABLED" || fail "seeding the disabled key"
  kv_create_cert "$STD_CERT" "CN=integration.test" RSA 2048 || fail "seeding the certificate"
  kv_set_secret "$STD_SECRET" "$STD_SECRET_VALUE" || fail "seeding the secret"
}

# obj_table FILE: pkcs11-tool -O output as sorted "class|label|id" lines
# (class: priv, pub, secret, cert, data).
obj_table() {
  awk '
    function flush() { if (cls != "") print cls "|" label "|" id; cls = ""; label = ""; id = "" }
    /^Private Key Object/ { flush(); cls = "priv"; next }
    /^Public Key Object/ { flush(); cls = "pub"; next }
    /^Secret Key Object/ { flush(); cls = "secret"; next }
    /^Certificate Object/ { flush(); cls = "cert"; next }
    /^Data object/ { flush(); cls = "data"; next }
    /^[^ \t]/ { flush(); next }
    /^[ \t]+label:/ { sub(/^[ \t]+label:[ \t]*/, ""); gsub(/^'"'"'|'"'"'$/, ""); label = $0; next }
    /^[ \t]+ID:/ { sub(/^[ \t]+ID:[ \t]*/, ""); id = $0; next }
    END { flush() }' "$1" | LC_ALL=C sort
}

# pubkey_matches_vault NAME ID: the public key pkcs11-tool exports for ID equals the vault's JWK.
pubkey_matches_vault() {
  local name=$1 id=$2 d="$WORK/pk-$1"
  token_pubkey_der "$id" "$d.tok.der" || return 1
  kv_key_der "$name" "$d.kv.der" || return 1
  cmp "$d.tok.der" "$d.kv.der"
}

# ---- p11-kit module registration --------------------------------------------------------------

# p11kit_install_module CONFIG_FILE: registers the module with p11-kit as "akv-pkcs11-test"
# (/etc/pkcs11/modules as root, where p11-kit ignores the user's files; ~/.config/pkcs11/modules,
# i.e. inside the work dir, otherwise), handing CONFIG_FILE to C_Initialize via x-init-reserved.
# Sets P11KIT_MODULE_FILE. The file (and any directory this created) is removed on exit. Call it
# directly, not in $(...): the cleanup registration must happen in the test's own shell.
P11KIT_MODULE_NAME=akv-pkcs11-test
P11KIT_MODULE_FILE=""
p11kit_install_module() {
  local dir
  if [ "$(id -u)" = 0 ]; then
    dir=/etc/pkcs11/modules
    [ -d /etc/pkcs11 ] || CLEANUP_DIRS+=(/etc/pkcs11/modules /etc/pkcs11)
    [ -d /etc/pkcs11 ] && [ ! -d "$dir" ] && CLEANUP_DIRS+=("$dir")
  else
    dir="$XDG_CONFIG_HOME/pkcs11/modules"
  fi
  # System directories get the usual 0755 whatever this test's umask is.
  (umask 022 && mkdir -p "$dir")
  P11KIT_MODULE_FILE="$dir/$P11KIT_MODULE_NAME.module"
  cleanup_register "$P11KIT_MODULE_FILE"
  printf 'module: %s\nx-init-reserved: %s\ncritical: no\n' "$AKV_MODULE" "$1" >"$P11KIT_MODULE_FILE"
  chmod 644 "$P11KIT_MODULE_FILE"
}

# check_nofixed DESC STRING FILE: FILE does not contain the literal STRING (secrets, tokens).
check_nofixed() {
  if [ -n "$2" ] && grep -rqF -- "$2" "$3"; then
    printf '#   %s contains a string it must not contain\n' "$3"
    _check_result 1 "$1"
  else
    _check_result 0 "$1"
  fi
  return 0
}

# hex2bin HEX OUT: bytes of a hex string (no xxd needed).
hex2bin() { printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')" >"$2"; }

# DigestInfo prefixes (RFC 8017 §9.2 note 1).
declare -A DIGESTINFO_PREFIX=([sha1]=3021300906052b0e03021a05000414
  [sha256]=3031300d060960864801650304020105000420 [sha384]=3041300d060960864801650304020205000430
  [sha512]=3051300d060960864801650304020305000440)
declare -A HASH_LEN=([sha1]=20 [sha256]=32 [sha384]=48 [sha512]=64)

# emu_faults SPEC: replace the emulator's fault injection ("" clears); see docs/emulator.md.
emu_faults() {
  curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST --data-binary "$1" "$EMU_CONTROL/faults" >/dev/null
}

# fake_az FILE: an executable fake Azure CLI at FILE that answers `az account get-access-token
# ... --output json` like the real one, with a token it gets from the emulator's Entra endpoint
# (client secret), and appends each call ("az ARGS") to FILE.calls (created empty, mode 666 so a
# call by an unprivileged test user is recorded too). Its login is the emulator's app, or, as the
# real one's is its configuration directory, the app whose client id and secret are the two lines
# of $AZURE_CONFIG_DIR/app when that file exists.
fake_az() {
  cat >"$1" <<EOF
#!/usr/bin/env bash
set -euo pipefail
echo "az \$*" >>"$1.calls"
[ "\${1:-}" = account ] && [ "\${2:-}" = get-access-token ] || { echo "ERROR: fake az: unsupported" >&2; exit 2; }
id="$EMU_CLIENT_ID" secret="$EMU_CLIENT_SECRET"
if [ -f "\${AZURE_CONFIG_DIR:-/nonexistent}/app" ]; then { read -r id; read -r secret; } <"\$AZURE_CONFIG_DIR/app"; fi
resp=\$(curl -sS --fail --max-time 20 --cacert "$EMU_CA" \\
  --data-urlencode grant_type=client_credentials --data-urlencode client_id="\$id" \\
  --data-urlencode client_secret="\$secret" \\
  --data-urlencode scope=https://vault.azure.net/.default \\
  "$EMU_AUTHORITY/$EMU_TENANT/oauth2/v2.0/token")
exp=\$((\$(date +%s) + \$(jq -r '.expires_in' <<<"\$resp")))
jq -n --arg t "\$(jq -r .access_token <<<"\$resp")" --argjson e "\$exp" \\
  --arg eo "\$(date -d @\$exp '+%Y-%m-%d %H:%M:%S.000000')" --arg ten "$EMU_TENANT" \\
  '{accessToken:\$t, expiresOn:\$eo, expires_on:\$e, subscription:"00000000-0000-0000-0000-000000000000", tenant:\$ten, tokenType:"Bearer"}'
EOF
  chmod 755 "$1"
  : >"$1.calls"
  chmod 666 "$1.calls"
}

# ---- valgrind memcheck hook -------------------------------------------------------------------

# AKV_MEMCHECK=1 runs every process of the test that loads the module under valgrind memcheck
# (tests/reliability/memcheck_wrap.sh decides per invocation; docs/reliability.md, "Memcheck"):
# shims for the consumers go first in PATH, the C drivers (P11_*_CHECK) and OpenSSH's
# ssh-pkcs11-helper (SSH_PKCS11_HELPER, used by ssh-agent) point at shims too. One log per process
# in $AKV_MEMCHECK_LOG_DIR (default $WORK/memcheck); at exit the test prints one line per process
# and fails when any memcheck error or definite leak was reported. Suppressions:
# $AKV_MEMCHECK_SUPP (default tests/reliability/memcheck.supp). Unset: nothing changes.
MEMCHECK_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../reliability" 2>/dev/null && pwd || true)
memcheck_setup() {
  local bin="$WORK/memcheck-bin" name real var
  [ -f "$MEMCHECK_TOOLS/memcheck_wrap.sh" ] || fail "AKV_MEMCHECK: $MEMCHECK_TOOLS/memcheck_wrap.sh is missing"
  command -v "${AKV_MEMCHECK_VALGRIND:-valgrind}" >/dev/null || fail "AKV_MEMCHECK: valgrind is not installed"
  export AKV_MEMCHECK_LOG_DIR=${AKV_MEMCHECK_LOG_DIR:-$WORK/memcheck}
  export AKV_MEMCHECK_SUPP=${AKV_MEMCHECK_SUPP:-$MEMCHECK_TOOLS/memcheck.supp}
  mkdir -p "$bin" "$AKV_MEMCHECK_LOG_DIR"
  _memcheck_shim() {
    printf '#!/bin/sh\nexec bash %s %s %s "$@"\n' "$(printf '%q' "$MEMCHECK_TOOLS/memcheck_wrap.sh")" \
      "$(printf '%q' "$1")" "$(printf '%q' "$2")" >"$bin/$3"
    chmod 755 "$bin/$3"
  }
  for name in pkcs11-tool p11tool p11-kit ssh-keygen ssh openssl curl; do
    real=$(command -v "$name") || continue
    _memcheck_shim "$name" "$real" "$name"
  done
  for var in P11_CACHE_CHECK P11_COUNT_CHECK P11_AES_CHECK P11_ROTATION_CHECK; do
    real=${!var:-}
    [ -n "$real" ] || continue
    _memcheck_shim "$(basename "$real")" "$real" "$(basename "$real")"
    export "$var=$bin/$(basename "$real")"
  done
  if [ -x /usr/lib/openssh/ssh-pkcs11-helper ]; then
    _memcheck_shim ssh-pkcs11-helper /usr/lib/openssh/ssh-pkcs11-helper ssh-pkcs11-helper
    export SSH_PKCS11_HELPER="$bin/ssh-pkcs11-helper"
  fi
  export PATH="$bin:$PATH"
  log "memcheck: processes that load the module run under valgrind, logs in $AKV_MEMCHECK_LOG_DIR"
}
# memcheck_report: the per-process summary of this test's logs; non-zero on any error or leak.
memcheck_report() {
  printf '\n# memcheck (%s):\n' "$T_NAME"
  bash "$MEMCHECK_TOOLS/memcheck_report.sh" "$AKV_MEMCHECK_LOG_DIR"
}
if [ -n "${AKV_MEMCHECK:-}" ] && [ "${AKV_MEMCHECK}" != 0 ]; then
  memcheck_setup
fi
