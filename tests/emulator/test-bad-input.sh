#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Bad input never crashes akv-emulator and gets the service's error responses:
# malformed/oversized/mistyped bodies, bad base64url, unknown algorithms, wrong key
# types, wrong digest lengths, bad tokens, bad paths and queries, soft-delete conflicts,
# key state enforcement, and every injected fault kind. Ends with SIGTERM -> exit 0.
# Usage: test-bad-input.sh AKV_EMULATOR   (EMU_WRAPPER="valgrind ..." runs it under valgrind)
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/emu-test-lib.sh"
EXE=$1

emu_start "$EXE" --vault demo --vault hsm1:mhsm
W=$EMU_WORK
TOKEN=$(token https://vault.azure.net/.default)
HSM_TOKEN=$(token https://managedhsm.azure.net/.default)
K="$VAULT/keys"
Q="api-version=7.6"

req POST "$K/rsa/create?$Q" '{"kty":"RSA"}'
check "setup: RSA key" test "$status" = 200
req POST "$K/ec/create?$Q" '{"kty":"EC","crv":"P-256"}'
check "setup: EC key" test "$status" = 200
D32=$(head -c 32 /dev/zero | b64url)

# ---- request bodies -------------------------------------------------------------------------
while IFS='|' read -r name bodytext; do
  req POST "$K/new1/create?$Q" "$bodytext"
  check "create with $name: 400 BadParameter" expect_error 400 BadParameter
done <<'EOF'
malformed JSON|{"kty":"RSA",
trailing garbage after JSON|{"kty":"EC"} x
truncated JSON|{"kty":
JSON array body|["kty","RSA"]
JSON string body|"RSA"
no kty|{"key_size":2048}
numeric kty|{"kty":5}
unknown kty|{"kty":"DSA"}
oct on a vault|{"kty":"oct-HSM","key_size":256}
string key_size|{"kty":"RSA","key_size":"big"}
fractional key_size|{"kty":"RSA","key_size":2048.5}
RSA 1024|{"kty":"RSA","key_size":1024}
bad public_exponent|{"kty":"RSA","public_exponent":17}
unknown curve|{"kty":"EC","crv":"P-192"}
numeric curve|{"kty":"EC","crv":256}
attributes not an object|{"kty":"EC","attributes":"x"}
enabled not a bool|{"kty":"EC","attributes":{"enabled":"yes"}}
negative exp|{"kty":"EC","attributes":{"exp":-5}}
string nbf|{"kty":"EC","attributes":{"nbf":"tomorrow"}}
tags as array|{"kty":"EC","tags":["a"]}
tag value number|{"kty":"EC","tags":{"a":1}}
16 tags|{"kty":"EC","tags":{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1","j":"1","k":"1","l":"1","m":"1","n":"1","o":"1","p":"1"}}
key_ops a string|{"kty":"EC","key_ops":"sign"}
unknown key_op|{"kty":"EC","key_ops":["sign","fly"]}
key_op number|{"kty":"EC","key_ops":[1]}
EOF
req POST "$K/new1/create?$Q"
check "create without a body: 400" expect_error 400 BadParameter
req POST "$K/new1/create?$Q" '{"kty":"EC","key_ops":["sign"],"deep":'"$(printf '[%.0s' $(seq 1 2000))"
check "deeply nested malformed JSON: 400" expect_error 400 BadParameter
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' 'a' >"$W/big"
status=$(curl -sS --max-time 60 --cacert "$CA" -o "$W/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' --data-binary @"$W/big" "$K/new1/create?$Q")
body=$(cat "$W/body")
check "body over 1 MiB (Content-Length): 413" expect_error 413 RequestEntityTooLarge
status=$(curl -sS --max-time 60 --cacert "$CA" -o "$W/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$W/big" "$K/new1/create?$Q")
body=$(cat "$W/body")
check "body over 1 MiB (chunked): 413" expect_error 413 RequestEntityTooLarge

# ---- import ------------------------------------------------------------------------------------
while IFS='|' read -r name bodytext; do
  req PUT "$K/imp1?$Q" "$bodytext"
  check "import with $name: 400" expect_error 400 BadParameter
done <<'EOF'
no key|{"Hsm":false}
key not an object|{"key":"abc"}
Hsm not a bool|{"key":{"kty":"EC"},"Hsm":"yes"}
public-only RSA|{"key":{"kty":"RSA","n":"AQAB","e":"AQAB"}}
bad base64url n|{"key":{"kty":"RSA","n":"***","e":"AQAB","d":"AQAB"}}
inconsistent EC point|{"key":{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB","d":"AQAB"}}
EC without crv|{"key":{"kty":"EC","x":"AQAB","y":"AQAB","d":"AQAB"}}
oct on a vault|{"key":{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"}}
tiny RSA|{"key":{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}}
EOF

# ---- crypto parameters ---------------------------------------------------------------------------
while IFS='|' read -r name op key bodytext; do
  req POST "$K/$key/$op?$Q" "$bodytext"
  check "$op with $name: 400 BadParameter" expect_error 400 BadParameter
done <<EOF
no alg|sign|rsa|{"value":"$D32"}
alg not a string|sign|rsa|{"alg":256,"value":"$D32"}
no value|sign|rsa|{"alg":"RS256"}
bad base64url value|sign|rsa|{"alg":"RS256","value":"not base64!"}
standard base64 alphabet|sign|rsa|{"alg":"RS256","value":"ab+/"}
impossible base64 length|sign|rsa|{"alg":"RS256","value":"abcde"}
unknown alg|sign|rsa|{"alg":"RS999","value":"$D32"}
EC alg on RSA key|sign|rsa|{"alg":"ES256","value":"$D32"}
RSA alg on EC key|sign|ec|{"alg":"RS256","value":"$D32"}
curve mismatch|sign|ec|{"alg":"ES384","value":"$(head -c 48 /dev/zero | b64url)"}
HMAC on RSA|sign|rsa|{"alg":"HS256","value":"$D32"}
RS256 20-byte digest|sign|rsa|{"alg":"RS256","value":"$(head -c 20 /dev/zero | b64url)"}
PS512 32-byte digest|sign|rsa|{"alg":"PS512","value":"$D32"}
ES256 48-byte digest|sign|ec|{"alg":"ES256","value":"$(head -c 48 /dev/zero | b64url)"}
RSNULL too long|sign|rsa|{"alg":"RSNULL","value":"$(head -c 300 /dev/zero | b64url)"}
verify without digest|verify|rsa|{"alg":"RS256","value":"$D32"}
verify bad digest base64|verify|rsa|{"alg":"RS256","digest":"%%%","value":"$D32"}
AES alg on RSA key|encrypt|rsa|{"alg":"A256GCM","value":"$D32"}
unknown enc alg|encrypt|rsa|{"alg":"RSA-OAEP-512","value":"$D32"}
plaintext too long|encrypt|rsa|{"alg":"RSA-OAEP-256","value":"$(head -c 200 /dev/zero | b64url)"}
ciphertext wrong length|decrypt|rsa|{"alg":"RSA-OAEP","value":"$D32"}
garbage ciphertext|decrypt|rsa|{"alg":"RSA-OAEP","value":"$(head -c 256 /dev/zero | b64url)"}
EOF
req POST "$K/rsa/sign?$Q" '{"alg":"RS256","value":"'"$(head -c 32 /dev/zero | b64url)"'","extra":{"nested":[1,2,3]}}'
check "unknown members are ignored" test "$status" = 200
req POST "$K/rsa/verify?$Q" '{"alg":"RS256","digest":"'"$D32"'","value":"AAAA"}'
check "verify with a short signature: 200 false" test "$status" = 200 -a "$(jq -r .value <<<"$body")" = false

# MHSM AES parameter errors
TOKEN=$HSM_TOKEN
req POST "$HSM/keys/aes/create?$Q" '{"kty":"oct-HSM","key_size":128}'
check "setup: MHSM AES-128 key" test "$status" = 200
while IFS='|' read -r name op bodytext; do
  req POST "$HSM/keys/aes/$op?$Q" "$bodytext"
  check "MHSM $op with $name: 400 BadParameter" expect_error 400 BadParameter
done <<EOF
alg size mismatch|encrypt|{"alg":"A256GCM","value":"$D32"}
client iv on GCM encrypt|encrypt|{"alg":"A128GCM","value":"$D32","iv":"$(head -c 12 /dev/zero | b64url)"}
GCM decrypt without tag|decrypt|{"alg":"A128GCM","value":"$D32","iv":"$(head -c 12 /dev/zero | b64url)"}
GCM decrypt bad tag|decrypt|{"alg":"A128GCM","value":"$D32","iv":"$(head -c 12 /dev/zero | b64url)","tag":"$(head -c 16 /dev/zero | b64url)"}
CBC without iv|encrypt|{"alg":"A128CBC","value":"$D32"}
CBC short iv|encrypt|{"alg":"A128CBC","value":"$D32","iv":"AAAA"}
CBC decrypt partial block|decrypt|{"alg":"A128CBC","value":"AAAA","iv":"$(head -c 16 /dev/zero | b64url)"}
CBCPAD bad padding|decrypt|{"alg":"A128CBCPAD","value":"$(head -c 16 /dev/zero | b64url)","iv":"$(head -c 16 /dev/zero | b64url)"}
KW on encrypt|encrypt|{"alg":"A128KW","value":"$D32"}
GCM on wrapkey|wrapkey|{"alg":"A128GCM","value":"$D32"}
KW short input|wrapkey|{"alg":"A128KW","value":"AAAAAAAAAAA"}
KW corrupted|unwrapkey|{"alg":"A128KW","value":"$(head -c 24 /dev/zero | b64url)"}
bad iv base64|encrypt|{"alg":"A128CBC","value":"$D32","iv":"@@@"}
EOF
req POST "$HSM/rng?$Q" '{"count":0}'
check "rng count 0: 400" expect_error 400 BadParameter
req POST "$HSM/rng?$Q" '{"count":129}'
check "rng count 129: 400" expect_error 400 BadParameter
req POST "$HSM/rng?$Q" '{"count":"8"}'
check "rng count string: 400" expect_error 400 BadParameter
req GET "$HSM/secrets?$Q"
check "secrets on a managed HSM: 404" test "$status" = 404
TOKEN=$(token https://vault.azure.net/.default)

# ---- tokens ------------------------------------------------------------------------------------
# flip_sig JWT: change one character well inside the signature (the last character may only
# carry padding bits)
flip_sig() {
  local t=$1 pos c
  pos=$((${#t} - 20))
  c=${t:$pos:1}
  if [ "$c" = A ]; then c=B; else c=A; fi
  printf '%s%s%s' "${t:0:$pos}" "$c" "${t:$((pos + 1))}"
}
for t in "" "Bearer" "Bearer " "Basic abc" "Bearer a.b.c" "Bearer $(head -c 9000 /dev/zero | tr '\0' a)" \
         "Bearer ${HSM_TOKEN}" "Bearer $(flip_sig "$TOKEN")"; do
  if [ -z "$t" ]; then NO_AUTH=1 req GET "$K?$Q"; else
    status=$(curl -sS --max-time 30 --cacert "$CA" -o "$W/body" -w '%{http_code}' -H "Authorization: $t" "$K?$Q")
    body=$(cat "$W/body")
  fi
  check "bad bearer '$(printf '%.20s' "$t")': 401 Unauthorized" expect_error 401 Unauthorized
done
tok() { status=$(curl -sS --max-time 30 --cacert "$CA" -o "$W/body" -w '%{http_code}' "$@"); body=$(cat "$W/body"); }
tok -X POST "$AUTH/$TENANT/oauth2/v2.0/token" --data-binary 'grant_type=client_credentials&client_id=%zz'
check "token: bad percent escape: 400 invalid_request" test "$status" = 400 -a "$(jq -r .error <<<"$body")" = invalid_request
tok -X POST "$AUTH/$TENANT/oauth2/v2.0/token" --data-binary ''
check "token: empty form: 400" test "$status" = 400
tok "$AUTH/$TENANT/oauth2/v2.0/token" -d grant_type=password -d client_id=$CLIENT_ID
check "token: unsupported grant: 400 unsupported_grant_type" test "$(jq -r .error <<<"$body")" = unsupported_grant_type
tok "$AUTH/$TENANT/oauth2/v2.0/token" -d grant_type=client_credentials -d client_id=nobody -d scope=https://vault.azure.net/.default
check "token: unknown client: 400 unauthorized_client" test "$(jq -r .error <<<"$body")" = unauthorized_client
tok "$AUTH/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token" -d grant_type=client_credentials
check "token: unknown tenant: 400" test "$status" = 400
tok "$AUTH/$TENANT/oauth2/v2.0/token" -d grant_type=client_credentials -d client_id=$CLIENT_ID \
  -d scope=https://vault.azure.net/.default -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion=not-a-jwt
check "token: assertion not a JWT: 400" test "$status" = 400
tok "$AUTH/$TENANT/oauth2/v2.0/token" -d grant_type=client_credentials -d client_id=$CLIENT_ID \
  -d scope=https://vault.azure.net/.default -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d "client_assertion=$(printf '{"alg":"none","x5t":"AAAA"}' | b64url).$(printf '{}' | b64url)."
check "token: alg none assertion rejected" test "$status" -ge 400 -a "$status" -lt 500
tok "$AUTH/$TENANT/oauth2/v2.0/token" -d grant_type=client_credentials -d client_id=$CLIENT_ID -d scope=https://vault.azure.net/.default
check "token: neither secret nor assertion: 401 invalid_client" test "$(jq -r .error <<<"$body")" = invalid_client
tok "$AUTH/$TENANT/oauth2/v2.0/token"
check "token: GET: 405" test "$status" = 405
IMDS=$(jq -r .imds_endpoint "$READY")
tok -H 'Metadata: true' "$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://evil.example.com"
check "IMDS: foreign resource: 400" test "$status" = 400
tok -H 'Metadata: true' "$IMDS/metadata/identity/oauth2/token?resource=https://vault.azure.net"
check "IMDS: no api-version: 400" test "$status" = 400
tok "$IMDS/nothing"
check "identity listener: unknown path 404" test "$status" = 404

# ---- paths and queries -----------------------------------------------------------------------
req GET "$K/bad_name?$Q"
check "invalid name: 400" expect_error 400 BadParameter
req GET "$K/$(head -c 128 /dev/zero | tr '\0' a)?$Q"
check "128-char name: 400" expect_error 400 BadParameter
req GET "$K/rsa/0123456789abcdef0123456789abcdef?$Q"
check "unknown version: 404 KeyNotFound" expect_error 404 KeyNotFound
req GET "$K/nokey?$Q"
check "unknown key: 404 KeyNotFound" expect_error 404 KeyNotFound
req GET "$K/nokey/versions?$Q"
check "versions of an unknown key: 404" expect_error 404 KeyNotFound
req GET "$VAULT/storage?$Q"
check "unknown collection: 404" test "$status" = 404
req DELETE "$K?$Q"
check "DELETE on the collection: 405" test "$status" = 405
req GET "$K/rsa/create?$Q"
check "GET on create: 405" test "$status" = 405
req GET "$K/a/b/c/d/e?$Q"
check "too many segments: 404" test "$status" = 404
req GET "$K/%zz?$Q"
check "bad percent escape in path: 400" expect_error 400 BadParameter
req GET "$K/a%00b?$Q"
check "NUL byte in path: 400" expect_error 400 BadParameter
req GET "$K?$Q&$(for i in $(seq 1 20); do printf 'p%d=1&' "$i"; done)"
check "too many query parameters: 400" expect_error 400 BadParameter
req GET "$K?api-version=7.6&maxresults=abc"
check "maxresults not a number: 400" expect_error 400 BadParameter
req GET "$K?api-version=7.6&maxresults=0"
check "maxresults 0: 400" expect_error 400 BadParameter
req GET "$K?api-version=$(head -c 300 /dev/zero | tr '\0' 7)"
check "huge api-version: 400" expect_error 400 BadParameter
req GET "$K?$Q&x=$(head -c 9000 /dev/zero | tr '\0' a)"
check "URI over 8 KiB: 414" test "$status" = 414
status=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${VAULT##*:}/keys?$Q" 2>/dev/null)
check "plain HTTP on the TLS port is refused, emulator survives" kill -0 "$EMU_PID"

# ---- soft delete and key state ---------------------------------------------------------------
req DELETE "$K/ec?$Q"
check "delete: DeletedKeyBundle with recoveryId" test "$status" = 200 -a "$(jq -r .recoveryId <<<"$body")" = "$VAULT/deletedkeys/ec"
req DELETE "$K/ec?$Q"
check "delete twice: 404" expect_error 404 KeyNotFound
req POST "$K/EC/create?$Q" '{"kty":"EC"}'
check "create over a deleted name: 409 ObjectIsDeletedButRecoverable" \
  test "$status" = 409 -a "$(jq -r .error.innererror.code <<<"$body")" = ObjectIsDeletedButRecoverable
req POST "$K/ec/sign?$Q" "{\"alg\":\"ES256\",\"value\":\"$D32\"}"
check "sign with a deleted key: 404" expect_error 404 KeyNotFound
req POST "$VAULT/deletedkeys/ec/recover?$Q"
check "recover: 200 KeyBundle" test "$status" = 200
req DELETE "$VAULT/deletedkeys/ec?$Q"
check "purge a key that is not deleted: 404" expect_error 404 KeyNotFound
curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/config" -d '{"delete_delay_ms":3000}' -o /dev/null
req DELETE "$K/ec?$Q"
req GET "$VAULT/deletedkeys/ec?$Q"
check "within the being-deleted window: /deletedkeys 404" expect_error 404 KeyNotFound
req POST "$K/ec/create?$Q" '{"kty":"EC"}'
check "within the window: create 409 ObjectIsBeingDeleted" \
  test "$status" = 409 -a "$(jq -r .error.innererror.code <<<"$body")" = ObjectIsBeingDeleted
curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/config" -d '{"delete_delay_ms":0}' -o /dev/null
# the window of that delete still runs: poll (bounded) until the deleted key shows up
for i in $(seq 1 60); do
  req GET "$VAULT/deletedkeys/ec?$Q"
  [ "$status" = 200 ] && break
  sleep 0.5
done
check "after the window: /deletedkeys shows it" test "$status" = 200
req DELETE "$VAULT/deletedkeys/ec?$Q"
check "purge after the window: 204" test "$status" = 204 -a -z "$body"
req POST "$K/ec/create?$Q" '{"kty":"EC"}'
check "name reusable after purge" test "$status" = 200
curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/config" -d '{"delete_delay_ms":-1}' -o "$W/body"
check "control config rejects a negative delay" grep -q error "$W/body"

req PATCH "$K/rsa?$Q" '{"attributes":{"enabled":false}}'
check "disable key" test "$(jq -r .attributes.enabled <<<"$body")" = false
req POST "$K/rsa/sign?$Q" "{\"alg\":\"RS256\",\"value\":\"$D32\"}"
check "sign with a disabled key: 403 Forbidden" expect_error 403 Forbidden
req PATCH "$K/rsa?$Q" "{\"attributes\":{\"enabled\":true,\"exp\":$(($(date +%s) - 10))},\"key_ops\":[\"sign\",\"verify\",\"decrypt\"]}"
req POST "$K/rsa/sign?$Q" "{\"alg\":\"RS256\",\"value\":\"$D32\"}"
check "sign after exp: 403" expect_error 403 Forbidden
req POST "$K/rsa/encrypt?$Q" "{\"alg\":\"RSA-OAEP\",\"value\":\"$D32\"}"
check "encrypt not in key_ops: 403" expect_error 403 Forbidden
req POST "$K/rsa/verify?$Q" "{\"alg\":\"RS256\",\"digest\":\"$D32\",\"value\":\"$D32\"}"
check "verify after exp still works (200)" test "$status" = 200
req PATCH "$K/rsa?$Q" '{"key_ops":"sign"}'
check "update with bad key_ops: 400" expect_error 400 BadParameter
req PATCH "$K/rsa?$Q" '{"attributes":{"exp":"never"}}'
check "update with bad exp: 400" expect_error 400 BadParameter

# ---- mutated bodies: every member of valid bodies replaced by each JSON type ------------------
mutate_all() { # METHOD URL VALID_BODY -> counts answers that are not 200/400/403/409
  local method=$1 url=$2 valid=$3 m v bad=0 n=0
  for m in $(jq -r 'paths | map(tostring) | join(".")' <<<"$valid"); do
    for v in null 0 -1 1e308 '"x"' '""' true '[]' '{}' '[1,"a",null]' '{"a":{"b":[]}}'; do
      req "$method" "$url" "$(jq -c --argjson v "$v" --arg p "$m" 'setpath($p | split(".") | map(tonumber? // .); $v)' <<<"$valid")"
      n=$((n + 1))
      case $status in 200 | 204 | 400 | 403 | 404 | 409) ;; *) bad=$((bad + 1)); echo "#   $m=$v -> $status $body" ;; esac
    done
  done
  [ $n -gt 0 ] && [ $bad = 0 ]
}
check "mutated create bodies answered cleanly" mutate_all POST "$K/mut/create?$Q" \
  '{"kty":"EC","crv":"P-256","key_ops":["sign","verify"],"attributes":{"enabled":true,"nbf":1,"exp":4102444800,"exportable":false},"tags":{"a":"b"}}'
check "mutated import bodies answered cleanly" mutate_all PUT "$K/mutimp?$Q" \
  "{\"key\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAB\",\"y\":\"AQAB\",\"d\":\"AQAB\",\"key_ops\":[\"sign\"]},\"Hsm\":false,\"attributes\":{\"enabled\":true},\"tags\":{}}"
check "mutated update bodies answered cleanly" mutate_all PATCH "$K/rsa?$Q" \
  '{"key_ops":["sign","verify","encrypt","decrypt"],"attributes":{"enabled":true,"exp":4102444800},"tags":{"t":"v"}}'
check "mutated sign bodies answered cleanly" mutate_all POST "$K/rsa/sign?$Q" "{\"alg\":\"RS256\",\"value\":\"$D32\"}"
check "mutated verify bodies answered cleanly" mutate_all POST "$K/rsa/verify?$Q" "{\"alg\":\"RS256\",\"digest\":\"$D32\",\"value\":\"$D32\"}"
check "mutated decrypt bodies answered cleanly" mutate_all POST "$K/rsa/decrypt?$Q" "{\"alg\":\"RSA-OAEP\",\"value\":\"$D32\"}"
check "mutated rotation policy bodies answered cleanly" mutate_all PUT "$K/rsa/rotationpolicy?$Q" \
  '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P2Y"}}'
check "mutated restore bodies answered cleanly" mutate_all POST "$K/restore?$Q" '{"value":"AAAA"}'
TOKEN=$HSM_TOKEN
check "mutated MHSM GCM decrypt bodies answered cleanly" mutate_all POST "$HSM/keys/aes/decrypt?$Q" \
  "{\"alg\":\"A128GCM\",\"value\":\"$D32\",\"iv\":\"$(head -c 12 /dev/zero | b64url)\",\"tag\":\"$(head -c 16 /dev/zero | b64url)\",\"aad\":\"AQAB\"}"
check "mutated rng bodies answered cleanly" mutate_all POST "$HSM/rng?$Q" '{"count":16}'
TOKEN=$(token https://vault.azure.net/.default)
printf 'GARBAGE / HTTP/9.9\r\nHost: x\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${VAULT##*:}" >/dev/null 2>&1
printf 'GET /keys HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${VAULT##*:}" >/dev/null 2>&1
head -c 5000 /dev/urandom | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${VAULT##*:}" >/dev/null 2>&1
head -c 5000 /dev/urandom | timeout 5 bash -c "cat > /dev/tcp/127.0.0.1/${VAULT##*:}" 2>/dev/null
head -c 5000 /dev/urandom | timeout 5 bash -c "cat > /dev/tcp/127.0.0.1/${IMDS##*:}" 2>/dev/null
req GET "$K?$Q"
check "garbage HTTP and raw bytes on the listeners: emulator still serves" test "$status" = 200

# ---- faults ------------------------------------------------------------------------------------
fault() { curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/faults" --data-binary "$1" -o "$W/fbody" -w '%{http_code}'; }
check "bad fault spec: 400" test "$(fault 'explode@2')" = 400
check "bad fault argument: 400" test "$(fault 'latency')" = 400
check "fault spec set" test "$(fault '429:7@2#1')" = 200
req GET "$K?$Q"
s1=$status
req GET "$K?$Q"
check "429 with Retry-After: 7 on the 2nd request, once" \
  sh -c '[ "$0" = 200 ] && [ "$1" = 429 ] && grep -qi "^Retry-After: 7" "$2"' "$s1" "$status" "$W/headers"
check "429 body code Throttled" expect_error 429 Throttled
req GET "$K?$Q"; req GET "$K?$Q"
check "429 fired at most once (#1)" test "$status" = 200
fault '429-noretry' >/dev/null
req GET "$K?$Q"
check "429 without Retry-After" sh -c '[ "$0" = 429 ] && ! grep -qi "^Retry-After" "$1"' "$status" "$W/headers"
fault '429-date:30' >/dev/null
req GET "$K?$Q"
check "429-date: Retry-After as an IMF-fixdate about 30 s ahead" sh -c '
  [ "$0" = 429 ] || exit 1
  d=$(grep -i "^Retry-After:" "$1" | cut -d" " -f2- | tr -d "\r")
  printf "%s" "$d" | grep -Eq "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$" || exit 1
  t=$(date -d "$d" +%s) && n=$(date +%s) && [ $((t - n)) -ge 25 ] && [ $((t - n)) -le 35 ]' "$status" "$W/headers"
for s in 500 502 503 504; do
  fault "$s" >/dev/null
  req GET "$K?$Q"
  check "injected $s" test "$status" = "$s"
done
fault '{"spec":"drop"}' >/dev/null
curl -sS --max-time 10 --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$K?$Q" -o /dev/null 2>/dev/null
check "drop: connection closed without a response (curl exit 52)" test $? = 52
fault '[{"kind":"truncate","every":1}]' >/dev/null
curl -sS --max-time 10 --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$K?$Q" -o /dev/null 2>/dev/null
check "truncate: partial body (curl exit 18)" test $? = 18
fault 'badjson' >/dev/null
req GET "$K?$Q"
check "badjson: 200 with a body that is not JSON" sh -c '[ "$0" = 200 ] && ! printf "%s" "$1" | jq . >/dev/null 2>&1' "$status" "$body"
fault 'latency:300' >/dev/null
t0=$(date +%s%N); req GET "$K?$Q"; t1=$(date +%s%N)
check "latency:300 delays the response" test $(((t1 - t0) / 1000000)) -ge 300
fault 'token-expired@1#1' >/dev/null
req GET "$K?$Q"
check "token-expired: 401 challenge once" expect_error 401 Unauthorized
req GET "$K?$Q"
check "token accepted again after the bounded fault" test "$status" = 200
fault 'token-revoke@2#1' >/dev/null
OLD_TOKEN=$TOKEN
req GET "$K?$Q"
check "token-revoke: 1st check passes" test "$status" = 200
req GET "$K?$Q"
check "token-revoke: 2nd check revokes the token (401)" expect_error 401 Unauthorized
req GET "$K?$Q"
check "token-revoke: the revoked token stays refused" expect_error 401 Unauthorized
TOKEN=$(token https://vault.azure.net/.default)
req GET "$K?$Q"
check "token-revoke: a token issued afterwards is accepted" test "$status" = 200
TOKEN=$OLD_TOKEN req GET "$K?$Q"
check "token-revoke: the old token is still refused" expect_error 401 Unauthorized
fault 'token-ttl:5' >/dev/null
check "token-ttl shortens expires_in" test "$(curl -sS --max-time 10 --cacert "$CA" "$AUTH/$TENANT/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=$CLIENT_ID --data-urlencode client_secret=$CLIENT_SECRET \
  --data-urlencode scope=https://vault.azure.net/.default | jq .expires_in)" -le 5
check "empty spec clears faults" test "$(fault '')" = 200
req GET "$K?$Q"
check "normal service after clearing" test "$status" = 200

s=$(curl -sS --max-time 10 --cacert "$CA" "$STATS")
check "stats still served, requests counted" test "$(jq -r '.requests_total > 100' <<<"$s")" = true
check "stats count connections per listener" \
  test "$(jq -r '[.connections_total > 10, .connections_open >= 0, .connections_by_listener.demo.total > 0, .connections_by_listener.entra.total > 0, .connections_by_listener.identity.total > 0] | all' <<<"$s")" = true
check "emulator survived everything" kill -0 "$EMU_PID"
emu_stop
rc=$?
check "SIGTERM: exit status 0 (under valgrind: no errors, no leaks)" test $rc = 0
if [ $rc != 0 ]; then tail -40 "$W/emu.log"; fi
finish
