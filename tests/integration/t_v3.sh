#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The PKCS#11 3.0 interface (docs/design.md "Decisions"): C_GetInterfaceList offers "PKCS 11" 3.0
# then 2.40, and a 3.0 application signs, cancels a signature half-way with C_SessionCancel and
# signs again, and logs in with C_LoginUser on a login slot (p11_v3_check); pkcs11-tool 0.23, which
# takes the 3.0 interface when the module offers one, lists both and signs through it.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool jq curl openssl mkpasswd
need_module
[ -x "${P11_V3_CHECK:-}" ] || fail "P11_V3_CHECK (the built p11_v3_check) is not set"

emu_start --vault v3a
kv_create_ec eckey P-256 || fail "seeding eckey"
module_config "$WORK/v3.json" '{"objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/v3.json"

section "a 3.0 application: interfaces, C_GetInfo, a signature, C_SessionCancel mid-operation"
check "p11_v3_check (no login)" timeout 60 "$P11_V3_CHECK" "$AKV_MODULE" eckey
sed 's/^/#   /' "$WORK/check.out"
check_grep "interface 0 is \"PKCS 11\" 3.0" '^interface 0: "PKCS 11" 3\.0 flags 0$' "$WORK/check.out"
check_grep "interface 1 is \"PKCS 11\" 2.40" '^interface 1: "PKCS 11" 2\.40 flags 0$' "$WORK/check.out"

section "C_LoginUser on a slot that requires a login"
login_config "$WORK/v3.json" "$WORK/v3-login.json"
check "p11_v3_check with the PIN" \
  env AKV_PKCS11_CONFIG="$WORK/v3-login.json" timeout 60 "$P11_V3_CHECK" "$AKV_MODULE" eckey "$GEN_PIN"
sed 's/^/#   /' "$WORK/check.out"

section "pkcs11-tool 0.23 through the 3.0 interface"
check "pkcs11-tool --list-interfaces" pkcs11-tool --module "$AKV_MODULE" --list-interfaces
check_eq "two interfaces listed" 2 "$(grep -c 'Interface.*PKCS 11' "$WORK/check.out")"
check "pkcs11-tool -I" pkcs11-tool --module "$AKV_MODULE" -I
check_grep "pkcs11-tool took the 3.0 interface (Cryptoki version 3.0)" "Cryptoki version 3\.0" \
  "$WORK/check.out"
ID=$(pkcs11-tool --module "$AKV_MODULE" -O --type privkey 2>/dev/null | awk '/label: +eckey$/ {f=1} f && /ID:/ {print $2; exit}')
[ -n "$ID" ] || fail "no ID for eckey in pkcs11-tool -O"
printf 'signed by pkcs11-tool through the 3.0 interface\n' >"$WORK/data.txt"
check "pkcs11-tool --sign ECDSA-SHA256" pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA-SHA256 \
  --signature-format openssl --id "$ID" -i "$WORK/data.txt" -o "$WORK/data.sig"
check "pkcs11-tool --read-object pubkey" pkcs11-tool --module "$AKV_MODULE" --read-object \
  --type pubkey --id "$ID" -o "$WORK/eckey.der"
check "openssl verifies the signature" openssl dgst -sha256 -verify "$WORK/eckey.der" -keyform DER \
  -signature "$WORK/data.sig" "$WORK/data.txt"
finish
