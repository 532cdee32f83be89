#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# --quota N/S: each vault admits N cryptographic operations in any S seconds (sliding window),
# then answers 429 Throttled with the service's body and a Retry-After of the seconds until the
# window frees; other requests and other vaults are not counted; stats count throttled_total.
# Usage: test-quota.sh AKV_EMULATOR
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/emu-test-lib.sh"
EXE=$1
W=$EMU_WORK

emu_start "$EXE" --vault demo --vault other --quota 5/3
OTHER=$(jq -r '[.vaults[] | select(.name == "other")][0].url' "$READY")
TOKEN=$(token https://vault.azure.net/.default)
req POST "$VAULT/keys/q1/create?api-version=7.6" '{"kty":"EC","crv":"P-256"}'
check "create is not a counted operation" test "$status" = 200
req POST "$OTHER/keys/q1/create?api-version=7.6" '{"kty":"EC","crv":"P-256"}'
digest=$(printf 'quota' | openssl dgst -sha256 -binary | b64url)
sign() { req POST "$1/keys/q1/sign?api-version=7.6" "{\"alg\":\"ES256\",\"value\":\"$digest\"}"; }
curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/stats/reset" -o /dev/null

t0=$(date +%s%N)
ok=0
for i in 1 2 3 4 5; do
  sign "$VAULT"
  [ "$status" = 200 ] && ok=$((ok + 1))
done
check "5 signatures within the quota: all 200" test "$ok" = 5
sign "$VAULT"
ra=$(grep -i '^Retry-After:' "$W/headers" | tr -d '\r' | awk '{print $2}')
check "the 6th: 429 Throttled" expect_error 429 Throttled
check "the service's message" \
  test "$(jq -r .error.message <<<"$body")" = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
check "Retry-After is 1-3 s (the seconds until the window frees): '$ra'" \
  test -n "$ra" -a "${ra:-0}" -ge 1 -a "${ra:-0}" -le 3
req GET "$VAULT/keys/q1?api-version=7.6"
check "a GET is not throttled" test "$status" = 200
sign "$OTHER"
check "another vault has its own window" test "$status" = 200
req POST "$VAULT/keys/q1/verify?api-version=7.6" "{\"alg\":\"ES256\",\"digest\":\"$digest\",\"value\":\"AAAA\"}"
check "verify counts too: 429" expect_error 429 Throttled
stats=$(curl -sS --max-time 10 --cacert "$CA" "$STATS")
check "stats: throttled_total 2" test "$(jq -r .throttled_total <<<"$stats")" = 2
check "stats: keys.sign counts the 6 admitted signatures only" \
  test "$(jq -r '.by_operation["keys.sign"]' <<<"$stats")" = 6

# After Retry-After the window admits again (bounded: at most 4 s).
sleep "${ra:-3}"
sign "$VAULT"
elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
check "after Retry-After the vault admits again (${elapsed} ms after the first)" test "$status" = 200

curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/stats/reset" -o /dev/null
check "stats reset zeroes throttled_total" \
  test "$(curl -sS --max-time 10 --cacert "$CA" "$STATS" | jq -r .throttled_total)" = 0
emu_stop
check "emulator exits 0" test $? = 0

for bad in 0/1 5/0 5 5/x /3 5/3600000 -1/2 '5/2 '; do
  "$EXE" --ready-file "$W/ready-bad.json" --quota "$bad" >/dev/null 2>"$W/err"
  rc=$?
  check "bad --quota '$bad': exit 2 with a message" test "$rc" = 2 -a -n "$(grep 'bad --quota' "$W/err")"
done
finish
