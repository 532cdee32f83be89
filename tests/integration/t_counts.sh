#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The emulator's counters show exactly one vault request per C_Sign, C_Encrypt,
# C_Decrypt, C_WrapKey and C_UnwrapKey after warm-up, none for C_Verify, none for C_Encrypt and
# C_WrapKey with public_ops "local", one per C_Verify with verify "remote"; plus an AES key
# wrap/unwrap round trip (a session AES key wrapped and unwrapped, and an AES key wrapped by
# openssl unwrapped by the vault key).
. "$(dirname "$0")/lib.sh"
need_tool openssl jq curl
need_module
[ -x "${P11_COUNT_CHECK:-}" ] || fail "P11_COUNT_CHECK (the built p11_count_check) is not set"

emu_start --vault count1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
export AKV_PKCS11_OBJECTS=keys

kv_key_pem rsa2048 "$WORK/rsa.pub.pem" || fail "vault public key"
head -c 32 /dev/urandom >"$WORK/aes.key"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pub.pem" -in "$WORK/aes.key" -out "$WORK/aes.wrapped" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 || fail "openssl wrap"

run_helper() {
  local mode=$1 rc=0
  shift
  "$@" timeout 120 "$P11_COUNT_CHECK" "$AKV_MODULE" "$mode" rsa2048 ec-p256 "$WORK/aes.wrapped" "$WORK/aes.key" \
    >"$WORK/count-$mode.out" 2>"$WORK/count-$mode.err" || rc=$?
  cat "$WORK/count-$mode.out"
  sed 's/^/#   stderr| /' "$WORK/count-$mode.err" | tail -n 20
  T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/count-$mode.out" || true)))
  check_eq "p11_count_check ($mode) passed all its checks" 0 "$rc"
}

section "default configuration (public_ops remote, verify local)"
run_helper remote env

section "public_ops local"
module_config "$WORK/local.json" '{"public_ops":"local","objects":["keys"]}'
run_helper local env AKV_PKCS11_CONFIG="$WORK/local.json"

section "verify remote"
module_config "$WORK/vremote.json" '{"verify":"remote","objects":["keys"]}'
run_helper verify-remote env AKV_PKCS11_CONFIG="$WORK/vremote.json"

finish
