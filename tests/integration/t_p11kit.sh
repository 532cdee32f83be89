#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pkcs11-tool signing through p11-kit: the p11-kit proxy with the .module installed
# (touches /etc/pkcs11/modules, removed on exit), and `p11-kit server` + p11-kit-client.so.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool p11-kit openssl jq curl
PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
need_file "$PROXY" "$CLIENT"
need_module

emu_start --vault p11k1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
module_config "$WORK/module.json" '{"objects":["keys"]}'
rsa_id=$(kv_key_id rsa2048) || fail "CKA_ID"
ec_id=$(kv_key_id ec-p256) || fail "CKA_ID"
kv_key_pem rsa2048 "$WORK/rsa.pem" || fail "vault key"
kv_key_pem ec-p256 "$WORK/ec.pem" || fail "vault key"
printf 'signed through p11-kit\n' >"$WORK/data"
openssl dgst -sha256 -binary "$WORK/data" >"$WORK/data.sha256"

# sign_both LABEL MODULE [ENV...]: RSA and ECDSA signatures through MODULE, verified by openssl.
sign_both() {
  local what=$1 mod=$2
  shift 2
  check "$what: SHA256-RSA-PKCS sign" env "$@" timeout 60 pkcs11-tool --module "$mod" --token-label p11k1 \
    --sign -m SHA256-RSA-PKCS --id "$rsa_id" -i "$WORK/data" -o "$WORK/$what.rsa.sig"
  check "$what: RSA signature verifies with the vault key" \
    openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/$what.rsa.sig" "$WORK/data"
  check "$what: ECDSA sign" env "$@" timeout 60 pkcs11-tool --module "$mod" --token-label p11k1 \
    --sign -m ECDSA --signature-format openssl --id "$ec_id" -i "$WORK/data.sha256" -o "$WORK/$what.ec.sig"
  check "$what: ECDSA signature verifies with the vault key" \
    openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/data.sha256" -sigfile "$WORK/$what.ec.sig"
}

section "p11-kit-proxy.so with the .module file (config via x-init-reserved)"
p11kit_install_module "$WORK/module.json"
log "registered $P11KIT_MODULE_FILE"
# No AKV_PKCS11_* in the environment: the configuration reaches the module only through p11-kit.
sign_both proxy "$PROXY" -u AKV_PKCS11_CONFIG -u AKV_PKCS11_VAULT_URL

section "p11-kit server + p11-kit-client.so"
sock="$WORK/p11kit.sock"
AKV_PKCS11_CONFIG="$WORK/module.json" timeout 120 p11-kit server -f -n "$sock" --provider "$AKV_MODULE" \
  "pkcs11:token=p11k1" >"$WORK/server.out" 2>&1 &
bg_register $!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
if [ -S "$sock" ]; then
  sign_both server "$CLIENT" -u AKV_PKCS11_CONFIG -u AKV_PKCS11_VAULT_URL P11_KIT_SERVER_ADDRESS="unix:path=$sock"
else
  sed 's/^/#   server| /' "$WORK/server.out"
  check "p11-kit server created its socket within 10 s" false
fi

finish
