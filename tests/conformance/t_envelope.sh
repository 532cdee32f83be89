#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Envelope encryption round trip (envelope.c). A session AES-256 data key encrypts data
# with AES-GCM, is wrapped by a vault key, the session ends; a new session unwraps and decrypts.
# Wrapping keys: an RSA 2048 key in a Key Vault (RSA-OAEP SHA-256) and an oct-HSM AES-256 key in a
# Managed HSM, imported with known bytes so OpenSSL can check the wrapped blob independently
# (AES-KW with and without padding).
. "$(dirname "$0")/../integration/lib.sh"
need_tool jq curl
need_module
[ -x "${ENVELOPE_CHECK:-}" ] || fail "ENVELOPE_CHECK (the built envelope program) is not set"

emu_start --vault env1 --vault hsm1:mhsm
kv_create_rsa wrap-rsa 2048 || fail "seeding wrap-rsa"
head -c 32 /dev/urandom >"$WORK/kek.key"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call PUT /keys/wrap-aes \
  "$(jq -cn --arg k "$(b64url_of "$WORK/kek.key")" \
    '{key:{kty:"oct-HSM",k:$k,key_ops:["encrypt","decrypt","wrapKey","unwrapKey"]}}')" >/dev/null ||
  fail "importing wrap-aes into the Managed HSM"

# One config per wrapping key, its vault as the only slot.
module_config "$WORK/all.json" '{"objects":["keys"]}'
jq '.slots |= map(select(.label == "env1"))' "$WORK/all.json" >"$WORK/kv.json"
jq '.slots |= map(select(.label == "hsm1") | . + {kind: "mhsm"})' "$WORK/all.json" >"$WORK/hsm.json"
chmod 600 "$WORK/kv.json" "$WORK/hsm.json"

run_envelope() {
  local name=$1 rc=0
  shift
  AKV_PKCS11_CONFIG="$WORK/$name.json" timeout 50 "$ENVELOPE_CHECK" "$AKV_MODULE" "$@" \
    >"$WORK/env-$name.out" 2>"$WORK/env-$name.err" || rc=$?
  cat "$WORK/env-$name.out"
  sed 's/^/# stderr: /' "$WORK/env-$name.err"
  check "envelope $* exits 0 (exit status $rc)" test "$rc" = 0
}

section "envelope: Key Vault RSA key, RSA-OAEP SHA-256"
run_envelope kv rsa wrap-rsa
section "envelope: Managed HSM AES key, AES-KW (pad and no pad)"
run_envelope hsm aes wrap-aes "$WORK/kek.key"
finish
