#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The akv-pkcs11 demo: a Key Vault emulator with a demo vault (an RSA key, an EC key and a
# certificate), the module configured by a file, and real programs using the vault's keys:
# pkcs11-tool lists and signs, openssl verifies, openssl s_server serves a TLS handshake with the
# vault's certificate key. Ends by itself and cleans up everything it started, unless --keep:
# then the emulator and the configuration stay up for README.md's "Try it yourself", and the
# demo ends with the three lines that use them (the configuration, a pkcs11-tool command, the
# command that stops the emulator: demo.sh --stop DIR).
#
# usage: tests/integration/demo.sh [--keep] BUILD_DIR
#        tests/integration/demo.sh --stop DIR
#   (AKV_EMULATOR and AKV_MODULE, when set, override BUILD_DIR's emulator and module)
usage() {
  echo "usage: $0 [--keep] BUILD_DIR | $0 --stop DIR" >&2
  exit 2
}
KEEP_MARK=.akv-pkcs11-demo-keep

# --stop DIR: stops the emulator a --keep run left in DIR (the process is checked to be that
# emulator before it is signalled) and removes DIR (only a directory carrying the keep mark).
if [ "${1:-}" = --stop ]; then
  dir=${2:-}
  [ -n "$dir" ] && [ $# = 2 ] || usage
  if [ ! -f "$dir/$KEEP_MARK" ]; then
    echo "demo: $dir is not a directory left by demo.sh --keep (no $KEEP_MARK in it)" >&2
    exit 1
  fi
  pid=$(cat "$dir/emulator.pid" 2>/dev/null || true)
  if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
      grep -qF -- "--ready-file $dir/emu-ready.json"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    echo "demo: emulator $pid stopped"
  else
    echo "demo: the emulator of $dir is not running any more"
  fi
  rm -rf -- "$dir"
  echo "demo: removed $dir"
  exit 0
fi

keep=0
if [ "${1:-}" = --keep ]; then
  keep=1
  shift
fi
[ $# -le 1 ] || usage
if [ -z "${1:-}" ] && { [ -z "${AKV_EMULATOR:-}" ] || [ -z "${AKV_MODULE:-}" ]; }; then
  usage
fi
if [ -n "${1:-}" ]; then
  build=$(cd "$1" && pwd) || exit 2
  : "${AKV_EMULATOR:=$build/tests/emulator/akv-emulator}" "${AKV_MODULE:=$build/src/akv-pkcs11.so}"
  [ -x "$build/tools/akv-p11" ] && : "${AKV_P11:=$build/tools/akv-p11}"
fi
AKV_MODULE=$(realpath "$AKV_MODULE")
top=$(cd "$(dirname "$0")/../.." && pwd)
export AKV_EMULATOR AKV_MODULE
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl ss
need_module

banner() { printf '\n==================== %s ====================\n' "$*"; }
# show CMD...: prints the command, runs it; the demo stops on the first failure.
show() {
  printf '\n$ %s\n' "$*"
  "$@" || fail "this step failed: $*"
}

banner "1. Start the Key Vault emulator (HTTPS on 127.0.0.1) with a demo vault"
emu_start --vault demo
printf 'vault URL: %s\n' "$EMU_VAULT_URL"

banner "2. Put keys and a certificate into the vault (Key Vault REST API, like any client)"
kv_create_rsa demo-rsa 2048 || fail "creating demo-rsa"
echo "created RSA 2048 key 'demo-rsa'"
kv_create_ec demo-ec P-256 || fail "creating demo-ec"
echo "created EC P-256 key 'demo-ec'"
kv_create_cert demo-tls "CN=localhost" RSA 2048 || fail "creating certificate demo-tls"
echo "created certificate 'demo-tls' (self-signed, CN=localhost) with its RSA key"
stats_reset

banner "3. Write the module's configuration file"
mkdir -p "$WORK/demo"
conf="$WORK/demo/akv-pkcs11.json"
module_config "$conf" '{"objects":["keys","certificates"]}'
export AKV_PKCS11_CONFIG="$conf"
unset AKV_PKCS11_VAULT_URL
printf '%s (mode %s), the client secret masked here:\n' "$conf" "$(stat -c %a "$conf")"
jq '(.. | objects | select(has("client_secret")) | .client_secret) |= "***"' "$conf"

banner "4. pkcs11-tool sees one slot per vault"
show pkcs11-tool --module "$AKV_MODULE" -L

banner "5. ... and the vault's keys and certificate as PKCS#11 objects"
show pkcs11-tool --module "$AKV_MODULE" -O

banner "6. Sign a file with the vault's RSA key, verify the signature with openssl"
printf 'Hello from akv-pkcs11, %s\n' "$(date -u +%FT%TZ)" >"$WORK/demo/hello.txt"
rsa_id=$(kv_key_id demo-rsa) || fail "CKA_ID of demo-rsa"
show pkcs11-tool --module "$AKV_MODULE" --sign -m SHA256-RSA-PKCS --id "$rsa_id" \
  -i "$WORK/demo/hello.txt" -o "$WORK/demo/hello.sig"
show pkcs11-tool --module "$AKV_MODULE" --read-object --type pubkey --id "$rsa_id" -o "$WORK/demo/rsa.der"
show openssl pkey -pubin -inform DER -in "$WORK/demo/rsa.der" -out "$WORK/demo/rsa.pem"
show openssl dgst -sha256 -verify "$WORK/demo/rsa.pem" -signature "$WORK/demo/hello.sig" "$WORK/demo/hello.txt"

banner "7. Same with the EC key (ECDSA over a SHA-256 digest)"
ec_id=$(kv_key_id demo-ec) || fail "CKA_ID of demo-ec"
openssl dgst -sha256 -binary "$WORK/demo/hello.txt" >"$WORK/demo/hello.sha256"
show pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl --id "$ec_id" \
  -i "$WORK/demo/hello.sha256" -o "$WORK/demo/hello.ecsig"
show pkcs11-tool --module "$AKV_MODULE" --read-object --type pubkey --id "$ec_id" -o "$WORK/demo/ec.der"
show openssl pkey -pubin -inform DER -in "$WORK/demo/ec.der" -out "$WORK/demo/ec.pem"
show openssl pkeyutl -verify -pubin -inkey "$WORK/demo/ec.pem" -in "$WORK/demo/hello.sha256" \
  -sigfile "$WORK/demo/hello.ecsig"

banner "8. A TLS server whose private key stays in the vault"
if [ ! -e /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ]; then
  echo "(skipped: the libp11 OpenSSL engine, package libengine-pkcs11-openssl, is not installed)"
else
  cert_id=$(kv_key_id demo-tls) || fail "CKA_ID of demo-tls"
  show pkcs11-tool --module "$AKV_MODULE" --read-object --type cert --id "$cert_id" -o "$WORK/demo/tls.der"
  show openssl x509 -inform DER -in "$WORK/demo/tls.der" -out "$WORK/demo/tls.pem"
  port=$(free_port) || fail "no free port"
  key_uri="pkcs11:token=demo;object=demo-tls;type=private"
  printf '\n$ openssl s_server -engine pkcs11 -keyform engine -key "%s" -cert tls.pem -accept 127.0.0.1:%s -naccept 1 -www &\n' \
    "$key_uri" "$port"
  PKCS11_MODULE_PATH="$AKV_MODULE" timeout 60 openssl s_server -engine pkcs11 -keyform engine -key "$key_uri" \
    -cert "$WORK/demo/tls.pem" -accept "127.0.0.1:$port" -naccept 1 -www </dev/null >"$WORK/demo/server.log" 2>&1 &
  spid=$!
  bg_register "$spid"
  wait_port "$port" 150 || { cat "$WORK/demo/server.log"; fail "s_server did not start"; }
  printf '$ openssl s_client -connect 127.0.0.1:%s -CAfile tls.pem -verify_return_error -brief\n' "$port"
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$port" \
    -CAfile "$WORK/demo/tls.pem" -verify_return_error -brief -ign_eof >"$WORK/demo/client.log" 2>&1 ||
    { cat "$WORK/demo/client.log" "$WORK/demo/server.log"; fail "the TLS handshake failed"; }
  grep -E '^(CONNECTION ESTABLISHED|Protocol version|Ciphersuite|Peer certificate|Signature type|Verification)' \
    "$WORK/demo/client.log"
  grep -q '^Verification: OK' "$WORK/demo/client.log" || fail "the server certificate did not verify"
  wait "$spid" 2>/dev/null || true
fi

banner "9. What it cost: requests the vault saw from the programs above (seeding not counted)"
stats_json | jq .

if [ "$keep" = 0 ]; then
  banner "Done: every key operation above ran in the (emulated) vault; cleaning up"
  exit 0
fi

# --keep: the work dir (emulator state, CA, configuration) and the emulator outlive this script.
printf '%s\n' "$EMU_PID" >"$WORK/emulator.pid"
: >"$WORK/$KEEP_MARK"
EMU_PID=""
# shellcheck disable=SC2034 # KEEP_WORK is read by lib.sh's exit trap: the work dir stays
KEEP_WORK=1
path_part=""
[ -n "${AKV_P11:-}" ] && path_part=" PATH=$(dirname "$(realpath "$AKV_P11")"):\$PATH"
banner "Done. The emulator and the configuration stay up: try it yourself (README.md)"
echo "Run these in your shell (the first sets the configuration, the module and akv-p11 on PATH):"
echo
printf 'export AKV_PKCS11_CONFIG=%s AKV_PKCS11_MODULE=%s%s\n' "$conf" "$AKV_MODULE" "$path_part"
printf 'pkcs11-tool --module "$AKV_PKCS11_MODULE" -O\n'
printf 'bash %s/scripts/demo.sh --stop %s\n' "$top" "$WORK"
