#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fresh when it matters (docs/design.md "Keys created since the listing"): a key created in the
# vault after a listing is found by label by the next process while the cache file is warm, without
# waiting for the TTL; a label the vault does not have costs at most one GET, and none again within
# the few seconds of the negative-lookup memo. A key created after a listing is found by its CKA_ID
# alone, in the same process and in the next one, at the cost of one listing at most per process
# and id_miss_refresh seconds, however many searches miss, and without reading again the keys the
# cache file gave. Counted with the emulator's request counters.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool jq curl
need_module
[ -x "${P11_FRESH_CHECK:-}" ] || fail "P11_FRESH_CHECK (the built p11_fresh_check) is not set"

emu_start --vault fresh1
kv_create_ec listed P-256 || fail "seeding"

section "a key created after the listing is found by label by the next process"
# The default configuration but a cache file of this test's own (ttl 300 s).
module_config "$WORK/fresh.json" '{"objects":["keys"]}' "{\"cache_file\":\"$WORK/fresh-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/fresh.json"
check "pkcs11-tool -O lists the vault (and writes the cache file)" \
  pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the listing has the seeded key" "label: +listed\$" "$WORK/check.out"
check_nogrep "the listing does not have the key created next" "label: +created-later\$" "$WORK/check.out"
kv_create_ec created-later P-256 || fail "creating the key after the listing"
stats_reset
check "p11_fresh_check searches created-later, listed, created-later" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" created-later listed created-later
check_grep "the new key is found by label at once" "^find created-later found get=1 total=1\$" \
  "$WORK/check.out"
check_grep "a listed key costs nothing (the cache file is warm)" "^find listed found get=0 total=0\$" \
  "$WORK/check.out"
check_grep "the second search for the new key costs nothing" \
  "^find created-later found get=0 total=0\$" "$WORK/check.out"
check_eq "no listing: the cache file served the process (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
stats_reset
check "the next process searches created-later again" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" created-later
check_grep "the cache file learned the new key: no request" "^find created-later found get=0 total=0\$" \
  "$WORK/check.out"

section "a label the vault does not have: one GET, then none within the memo window"
stats_reset
check "p11_fresh_check searches no-such-key twice, then a name the vault cannot have" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" no-such-key no-such-key 'not a vault name'
check_grep "the first search asks the vault once" "^find no-such-key missing get=1 total=1\$" \
  "$WORK/check.out"
check_grep "the second search within the memo window asks nothing" \
  "^find no-such-key missing get=0 total=0\$" "$WORK/check.out"
check_grep "a label that is no vault key name asks nothing" \
  "^find not a vault name missing get=0 total=0\$" "$WORK/check.out"

section "a search in another case: the key keeps the vault's spelling, never a second object"
# The vault compares names without case and its reply's kid spells the name as stored; labels
# compare by their bytes (docs/design.md "Keys created since the listing").
kv_create_ec case-key P-256 || fail "creating case-key after the listing"
stats_reset
check "p11_fresh_check searches CASE-KEY, case-key, Case-Key" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" CASE-KEY case-key Case-Key
check_grep "CASE-KEY: one GET, no object of that label" "^find CASE-KEY missing get=1 total=1\$" \
  "$WORK/check.out"
check_grep "the key was published under its own name: case-key costs nothing" \
  "^find case-key found get=0 total=0\$" "$WORK/check.out"
check_grep "Case-Key: one GET, nothing published" "^find Case-Key missing get=1 total=1\$" \
  "$WORK/check.out"
stats_reset
check "the next process (no memo yet) searches Case-Key, CASE-KEY, case-key" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" Case-Key CASE-KEY case-key
check_grep "Case-Key: one GET, nothing published" "^find Case-Key missing get=1 total=1\$" \
  "$WORK/check.out"
check_grep "CASE-KEY: one GET, nothing published" "^find CASE-KEY missing get=1 total=1\$" \
  "$WORK/check.out"
check_grep "case-key: from the cache file" "^find case-key found get=0 total=0\$" "$WORK/check.out"
check "pkcs11-tool -O lists the objects" pkcs11-tool --module "$AKV_MODULE" -O
check_eq "one private and one public key of that name in any case" 2 \
  "$(grep -Eci 'label: +case-key$' "$WORK/check.out")"
check_eq "both spelled case-key" 2 "$(grep -Ec 'label: +case-key$' "$WORK/check.out")"

section "permission granted after a refusal works on the next C_SignInit"
kv_call POST /keys/verify-only/create '{"kty":"EC","crv":"P-256","key_ops":["verify"]}' >/dev/null ||
  fail "seeding verify-only"
kv_token
cat >"$WORK/grant.sh" <<EOF2
exec curl -sS --fail --max-time 30 --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -X PATCH \\
  -H 'Content-Type: application/json' --data-binary '{"key_ops":["sign","verify"]}' \\
  -o /dev/null "$EMU_VAULT_URL/keys/verify-only?api-version=$KV_API"
EOF2
# Found by label (read from the vault, as above): the cache file now holds its key_ops, "verify".
check "p11_fresh_check finds verify-only" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" verify-only
check_grep "verify-only is found (and cached)" "^find verify-only found get=1 total=1\$" "$WORK/check.out"
stats_reset
check "p11_fresh_check sign verify-only (sign granted in between)" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" sign verify-only "bash $WORK/grant.sh"
check_grep "before the grant: refused after reading the key once" \
  "^signinit before CKR_KEY_FUNCTION_NOT_PERMITTED get=1\$" "$WORK/check.out"
check_grep "after the grant: C_SignInit reads the key again and succeeds" \
  "^signinit after CKR_OK get=1\$" "$WORK/check.out"
check_grep "the signature is made" "^sign CKR_OK 64\$" "$WORK/check.out"
stats_reset
check "the next process signs with verify-only at once" \
  timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" sign verify-only true
check_grep "the cache file learned the new key_ops: no GET" "^signinit before CKR_OK get=0\$" \
  "$WORK/check.out"

section "a listing cached under one identity is not served to another"
# The same vault and slot settings and the same cache file; only the credential's client id differs
# (one the emulator does not know: its token request fails).
jq '.credential.client_id = "00000000-0000-0000-0000-0000000000ff"' "$WORK/fresh.json" >"$WORK/other.json"
chmod 600 "$WORK/other.json"
check "the first identity lists from the warm cache file" pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the first identity sees the keys" "label: +listed\$" "$WORK/check.out"
stats_reset
check_fails "another identity (same cache file) gets no listing: its credential fails" \
  env AKV_PKCS11_CONFIG="$WORK/other.json" pkcs11-tool --module "$AKV_MODULE" -O
check_nogrep "the other identity is shown no key of the first" "label: +(listed|created-later)\$" \
  "$WORK/check.out"
check "the other identity asked for a token (ops: $(stats_ops))" test "$(stats_get token)" -ge 1
stats_reset
check "the first identity is still served by the cache file" pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the first identity still sees the keys" "label: +listed\$" "$WORK/check.out"
check_eq "without a listing (ops: $(stats_ops))" 0 "$(stats_get keys.list)"

section "a key created after the listing is found by its CKA_ID alone (id_miss_refresh 2 s)"
# The SHA-1 of a P-256 key's SPKI (its default CKA_ID) from the vault's JWK on stdin.
spki_sha1_p256() {
  python3 -c '
import base64, hashlib, json, sys
k = json.load(sys.stdin)["key"]
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
der = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + d(k["x"]) + d(k["y"])
print(hashlib.sha1(der).hexdigest())'
}
module_config "$WORK/id.json" '{"objects":["keys"],"id_miss_refresh":2}' \
  "{\"cache_file\":\"$WORK/id-cache\"}"
ID_CFG="$WORK/id.json"
check "pkcs11-tool -O lists the vault (and writes the cache file)" \
  env AKV_PKCS11_CONFIG="$ID_CFG" pkcs11-tool --module "$AKV_MODULE" -O
kv_call POST /keys/id-later/create '{"kty":"EC","crv":"P-256"}' >"$WORK/id-later.json" ||
  fail "creating id-later after the listing"
id_later=$(spki_sha1_p256 <"$WORK/id-later.json")
[ ${#id_later} = 40 ] || fail "no CKA_ID computed for id-later"
sleep 3 # the listing in the cache file is now older than id_miss_refresh
stats_reset
check "the next process searches by the new key's CKA_ID alone" \
  env AKV_PKCS11_CONFIG="$ID_CFG" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" id "$id_later"
check_grep "found (private + public) at the cost of one listing and one GET" \
  "^findid $id_later found=2 list=1 get=1\$" "$WORK/check.out"
stats_reset
check "pkcs11-tool -O --id in the next process" \
  env AKV_PKCS11_CONFIG="$ID_CFG" pkcs11-tool --module "$AKV_MODULE" -O --id "$id_later"
check_grep "pkcs11-tool finds id-later by its id" "label: +id-later\$" "$WORK/check.out"
check_eq "the cache file learned it: no request (ops: $(stats_ops))" 0 "$(stats_total)"

# In one warm process: a key created by another process (here curl) while it runs, with its CKA_ID
# as the pkcs11-id tag; the process searches for it before and after.
kv_token
cat >"$WORK/mk-tagged.sh" <<EOF2
exec curl -sS --fail --max-time 30 --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -X POST \\
  -H 'Content-Type: application/json' \\
  --data-binary '{"kty":"EC","crv":"P-256","tags":{"pkcs11-id":"c0ffee0001"}}' \\
  -o /dev/null "$EMU_VAULT_URL/keys/id-tagged/create?api-version=$KV_API"
EOF2
stats_reset
check "one process: search c0ffee0001, another process creates it, search again" \
  env AKV_PKCS11_CONFIG="$ID_CFG" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" id c0ffee0001 \
  "run:bash $WORK/mk-tagged.sh" sleep:3 c0ffee0001
check_grep "before it exists: not found, at most one listing" "^findid c0ffee0001 found=0 list=[01] get=0\$" \
  "$WORK/check.out"
check_grep "after: found in the same process, one listing and one GET" \
  "^findid c0ffee0001 found=2 list=1 get=1\$" "$WORK/check.out"

section "a flood of searches for a CKA_ID nobody has: one listing per id_miss_refresh"
stats_reset
check "200 searches by an absent CKA_ID, after the listing aged past the bound" \
  env AKV_PKCS11_CONFIG="$ID_CFG" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" id sleep:3 \
  flood:200:deadbeef00
check_grep "all answered empty, without reading a key" "^flood deadbeef00 n=200 found=0 list=[0-9]+ get=0 ms=[0-9]+\$" \
  "$WORK/check.out"
flood_list=$(sed -En 's/^flood .* list=([0-9]+) .*/\1/p' "$WORK/check.out")
flood_ms=$(sed -En 's/^flood .* ms=([0-9]+)$/\1/p' "$WORK/check.out")
printf '# 200 misses: %s listing(s) in %s ms (ops: %s)\n' "${flood_list:-?}" "${flood_ms:-?}" \
  "$(stats_ops)"
check "at least one listing, at most one per 2 s begun" \
  test "${flood_list:-0}" -ge 1 -a "${flood_list:-99}" -le $((1 + ${flood_ms:-0} / 2000))
sleep 3 # the cache file's listing is older than the bound again
stats_reset
check "four processes miss together" bash -c "
  for i in 1 2 3 4; do
    AKV_PKCS11_CONFIG='$ID_CFG' timeout 60 '$P11_FRESH_CHECK' '$AKV_MODULE' id flood:20:deadbeef00 \
      >'$WORK/flood-'\$i.out 2>&1 &
  done
  wait"
# Each process's listing came from the cache file: its miss listing carries those keys over unread
# (no GET) and keeps the file's age, so it is not shared; at most one listing per process.
check "one listing per process at most, no key read (ops: $(stats_ops))" \
  test "$(stats_get keys.list)" -ge 1 -a "$(stats_get keys.list)" -le 4 -a "$(stats_get keys.get)" = 0
for i in 1 2 3 4; do
  check_grep "process $i: 20 searches answered empty" "^flood deadbeef00 n=20 found=0 list=[0-9]+ get=0 " \
    "$WORK/flood-$i.out"
done

section "id_miss_refresh 0: a miss waits for the ttl"
module_config "$WORK/id-off.json" '{"objects":["keys"],"id_miss_refresh":0}' \
  "{\"cache_file\":\"$WORK/id-off-cache\"}"
check "pkcs11-tool -O lists the vault" \
  env AKV_PKCS11_CONFIG="$WORK/id-off.json" pkcs11-tool --module "$AKV_MODULE" -O
kv_call POST /keys/id-off/create '{"kty":"EC","crv":"P-256","tags":{"pkcs11-id":"c0ffee0002"}}' \
  >/dev/null || fail "creating id-off"
stats_reset
check "the next process searches c0ffee0002 after the bound" \
  env AKV_PKCS11_CONFIG="$WORK/id-off.json" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" id \
  sleep:3 c0ffee0002
check_grep "not found, no listing" "^findid c0ffee0002 found=0 list=0 get=0\$" "$WORK/check.out"

finish
