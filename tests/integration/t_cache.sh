#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The object cache, proven with the emulator's request counters.
# In one process (p11_cache_check): a second listing within the TTL costs 0 requests; a key
# rotated through REST shows its new public key after the soft TTL without a restart; when the
# vault then fails, the old snapshot is still served after the hard TTL (stale-if-error).
# (The cross-process cache file is t_cache_file.sh.)
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module
[ -x "${P11_CACHE_CHECK:-}" ] || fail "P11_CACHE_CHECK (the built p11_cache_check) is not set"

emu_start --vault cache1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
kv_create_ec rotating P-256 || fail "seeding"
kv_create_cert "$STD_CERT" "CN=cache.test" RSA 2048 || fail "seeding"

# Under valgrind (AKV_MEMCHECK) the first listing alone outlasts a 3 s soft TTL: a longer TTL.
CACHE_TTL=4
[ -z "${AKV_MEMCHECK:-}" ] || CACHE_TTL=10
section "one process: cache hit, rotation seen after the soft TTL (ttl $CACHE_TTL s)"
module_config "$WORK/ttl4.json" "{\"ttl\":$CACHE_TTL}"
old_jwk=$(kv_call GET /keys/rotating | jq -c .key) || fail "GET key"
old_point="04$(_b64url_hex "$(jq -r .x <<<"$old_jwk")")$(_b64url_hex "$(jq -r .y <<<"$old_jwk")")"
kv_token
cat >"$WORK/rotate.sh" <<EOF
exec curl -sS --fail --max-time 30 --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -X POST \\
  -o "$WORK/rotated.json" "$EMU_VAULT_URL/keys/rotating/rotate?api-version=$KV_API"
EOF
cat >"$WORK/faults.sh" <<EOF
exec curl -sS --fail --max-time 10 --cacert "$EMU_CA" -o /dev/null -X POST --data-binary 500 "$EMU_CONTROL/faults"
EOF
rc=0
CACHE_TTL=$CACHE_TTL AKV_PKCS11_CONFIG="$WORK/ttl4.json" timeout 120 "$P11_CACHE_CHECK" "$AKV_MODULE" rotating \
  "$WORK/rotate.sh" "$WORK/faults.sh" >"$WORK/cache.out" 2>"$WORK/cache.err" || rc=$?
emu_faults "" || fail "clearing faults"
cat "$WORK/cache.out"
sed 's/^/#   stderr| /' "$WORK/cache.err" | tail -n 20
# Count the helper's own checks in this test's total, so the summary shows them.
T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/cache.out" || true)))
check_eq "p11_cache_check passed all its checks" 0 "$rc"
new_jwk=$(jq -c .key "$WORK/rotated.json" 2>/dev/null || true)
new_point="04$(_b64url_hex "$(jq -r .x <<<"$new_jwk")")$(_b64url_hex "$(jq -r .y <<<"$new_jwk")")"
before=$(sed -n 's/^KEY before //p' "$WORK/cache.out")
after=$(sed -n 's/^KEY after //p' "$WORK/cache.out")
check "the cached key before rotation is the vault's first version" \
  bash -c '[[ "$1" == *"$2" ]]' _ "$before" "$old_point"
check "the key listed after the soft TTL is the vault's new version" \
  bash -c '[[ "$1" == *"$2" ]]' _ "$after" "$new_point"
check "the vault really has a new version" test "$old_point" != "$new_point"
check_grep "the failed refresh was logged as a warning" "WARN" "$WORK/cache.err"

section "versions: all — the rotated key's older version is an extra object labelled name/version"
module_config "$WORK/versions.json" '{"versions":"all","objects":["keys"]}'
old_version=$(jq -r '.kid' <<<"$old_jwk" | awk -F/ '{print $NF}')
check "pkcs11-tool -O with versions: all" env AKV_PKCS11_CONFIG="$WORK/versions.json" \
  pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the first version of 'rotating' is listed as rotating/<version>" \
  "label: +rotating/$old_version\$" "$WORK/check.out"
check_grep "the current version is listed as 'rotating'" "label: +rotating\$" "$WORK/check.out"
module_config "$WORK/latest.json" '{"objects":["keys"]}'
check "pkcs11-tool -O with the default (latest versions only)" env AKV_PKCS11_CONFIG="$WORK/latest.json" \
  pkcs11-tool --module "$AKV_MODULE" -O
check_nogrep "without versions: all, no name/version objects" "label: +rotating/" "$WORK/check.out"

section "lazy least-privilege mode: named keys, no list call"
module_config "$WORK/lazy.json" '{"keys":["ec-p256"],"objects":["keys"]}'
stats_reset
check "pkcs11-tool -O with keys: [ec-p256]" env AKV_PKCS11_CONFIG="$WORK/lazy.json" \
  pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the named key is listed" "label: +ec-p256\$" "$WORK/check.out"
check_nogrep "no other key is listed" "label: +(rsa2048|rotating)\$" "$WORK/check.out"
check_eq "no keys.list request (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
check "the named key was fetched with keys.get" test "$(stats_get keys.get)" -ge 1

finish
