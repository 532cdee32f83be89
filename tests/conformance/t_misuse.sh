#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The PKCS#11 misuse table (misuse.c) against the module and a seeded emulator vault.
# Keys: rsa2048 (all key_ops), ec-p256, and rsa-signonly whose key_ops are only sign/verify.
. "$(dirname "$0")/../integration/lib.sh"
need_tool jq curl
need_module
[ -x "${MISUSE_CHECK:-}" ] || fail "MISUSE_CHECK (the built misuse program) is not set"

emu_start --vault misuse1
kv_create_rsa rsa2048 2048 || fail "seeding rsa2048"
kv_create_ec ec-p256 P-256 || fail "seeding ec-p256"
kv_call POST /keys/rsa-signonly/create '{"kty":"RSA","key_size":2048,"key_ops":["sign","verify"]}' \
  >/dev/null || fail "seeding rsa-signonly"
module_config "$WORK/module.json" '{"objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/module.json"

section "misuse table"
rc=0
timeout 50 "$MISUSE_CHECK" "$AKV_MODULE" rsa2048 ec-p256 rsa-signonly >"$WORK/misuse.out" 2>"$WORK/misuse.err" || rc=$?
cat "$WORK/misuse.out"
sed 's/^/# stderr: /' "$WORK/misuse.err"
# A crash (signal: rc > 128) or a timeout (124) fails like a mismatch; the summary line says which rows.
check "misuse exits 0 (every row as the spec says, no crash; exit status $rc)" test "$rc" = 0
finish
