#!/usr/bin/env bash
# Issue 3 / DESIGN §5: the cross-process cache file. Public parts (key lists, public keys,
# certificates; never secret values or tokens) go to a per-user cache file (0600), so a second
# short-lived process within the TTL costs no listing: a second pkcs11-tool -O costs 0 requests.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault cachef1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
kv_create_cert "$STD_CERT" "CN=cache.test" RSA 2048 || fail "seeding"
kv_set_secret "$STD_SECRET" "$STD_SECRET_VALUE" || fail "seeding"

section "across processes: a second pkcs11-tool -O within the TTL costs 0 requests"
module_config "$WORK/filecache.json" '{}' "{\"cache_file\":\"$WORK/p11-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/filecache.json"
stats_reset
check "first pkcs11-tool -O" p11tool_m -O
cp "$WORK/check.out" "$WORK/O1.out"
first=$(stats_total)
log "first listing cost $first requests: $(stats_ops)"
check "first listing reached the vault (requests > 0)" test "$first" -gt 0
stats_reset
check "second pkcs11-tool -O" p11tool_m -O
cp "$WORK/check.out" "$WORK/O2.out"
check_eq "second listing within the TTL costs 0 vault requests (ops: $(stats_ops))" 0 "$(stats_total)"
check_eq "both listings show the same objects" "$(obj_table "$WORK/O1.out" | md5sum)" "$(obj_table "$WORK/O2.out" | md5sum)"
check "the cache file is private (0600)" bash -c '[ "$(stat -c %a "$1")" = 600 ]' _ "$WORK/p11-cache"

section "secret values and tokens never reach the cache file"
if [ -e "$WORK/p11-cache" ]; then
  check "read the secret (its value is fetched and cached in memory only)" \
    p11tool_m --read-object --type data --label "$STD_SECRET" -o "$WORK/secret.out"
  check_nofixed "the cache file does not contain the secret's value" "$STD_SECRET_VALUE" "$WORK/p11-cache"
  check_nogrep "the cache file contains no bearer token" "eyJ[A-Za-z0-9_-]{10,}\\.eyJ" "$WORK/p11-cache"
fi

finish
