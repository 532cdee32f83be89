#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lifecycle (docs/lifecycle.md): versions under change. A process that knows a key from the cross-process
# cache file (listed before the change) keeps signing with its pinned version after a rotation
# through REST, until a refresh shows the new version; a version disabled or deleted meanwhile
# gives CKR_KEY_HANDLE_INVALID on use and leaves the object list at once. The slot's TTL is long
# enough for the changes to happen within it even on a loaded machine; the test then waits it out.
. "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault ver1
TTL=30
module_config "$WORK/cfg.json" "{\"ttl\":$TTL}" "{\"cache_file\":\"$WORK/akv-cache.json\"}"
START=$(date +%s)
export AKV_PKCS11_CONFIG="$WORK/cfg.json"
printf 'versions test %s\n' "$RANDOM" >"$WORK/data"
for k in rot-ec dis-ec del-ec; do kv_create_ec "$k" P-256 || fail "seeding $k"; done
key_id() { kv_key_der "$1" "$WORK/$1.der" "${2:-}" && der_id "$WORK/$1.der"; }
sign_id() { p11tool_m --sign --id "$1" -m ECDSA-SHA256 --signature-format openssl -i "$WORK/data" -o "$2"; }

check "a first process lists the vault (the cache file holds it)" p11tool_m -O
rot_old=$(kv_call GET /keys/rot-ec | jq -r '.key.kid | split("/") | .[-1]')
rot_id=$(key_id rot-ec) || fail "id"
dis_id=$(key_id dis-ec) || fail "id"
del_id=$(key_id del-ec) || fail "id"

section "rotation through REST"
kv_rotate rot-ec || fail "rotate"
rot_new=$(kv_call GET /keys/rot-ec | jq -r '.key.kid | split("/") | .[-1]')
check "the listed object still signs, with its pinned version" sign_id "$rot_id" "$WORK/rot.sig"
kv_key_pem rot-ec "$WORK/rot-old.pem" "$rot_old" || fail "old key"
check "openssl verifies it with version $rot_old" \
  openssl dgst -sha256 -verify "$WORK/rot-old.pem" -signature "$WORK/rot.sig" "$WORK/data"

section "disabled and deleted versions"
kv_call PATCH "/keys/dis-ec/$(kv_call GET /keys/dis-ec | jq -r '.key.kid | split("/") | .[-1]')" \
  '{"attributes":{"enabled":false}}' >/dev/null || fail "disable"
kv_call DELETE /keys/del-ec >/dev/null || fail "delete"
check_fails "signing with the disabled version fails" sign_id "$dis_id" "$WORK/dis.sig"
check_grep "CKR_KEY_HANDLE_INVALID (disabled)" "CKR_KEY_HANDLE_INVALID" "$WORK/check.out"
check_fails "signing with the deleted key fails" sign_id "$del_id" "$WORK/del.sig"
check_grep "CKR_KEY_HANDLE_INVALID (deleted)" "CKR_KEY_HANDLE_INVALID" "$WORK/check.out"

section "the next listing (after the TTL)"
check "the changes above took less than the TTL (${TTL} s)" test $(($(date +%s) - START)) -lt "$TTL"
wait_s=$((TTL + 1 - ($(date +%s) - START)))
[ "$wait_s" -gt 0 ] && sleep "$wait_s"
p11tool_m -O >"$WORK/after.out" 2>&1 || fail "-O"
check_nogrep "the disabled key is gone from the list" "label: +dis-ec$" "$WORK/after.out"
check_nogrep "the deleted key is gone from the list" "label: +del-ec$" "$WORK/after.out"
new_id=$(key_id rot-ec) || fail "id"
check_grep "rot-ec shows its new version ($rot_new)" "ID: +$new_id" "$WORK/after.out"
check "the new version signs" sign_id "$new_id" "$WORK/rot-new.sig"
kv_key_pem rot-ec "$WORK/rot-new.pem" || fail "new key"
check "openssl verifies it with the new version" \
  openssl dgst -sha256 -verify "$WORK/rot-new.pem" -signature "$WORK/rot-new.sig" "$WORK/data"

finish
