#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test-objects.sh - functional test of the emulator's secrets and certificates.
#
# Usage: test-objects.sh /path/to/akv-emulator   (or AKV_EMULATOR=... test-objects.sh)
# Starts its own emulator (vault "demo", Managed HSM "hsm1", a seed file), talks REST with curl
# like a real client and checks the service's wire shapes: ids and shared versions, cer/x5t,
# PKCS#12 and PEM secrets, pending operations, soft delete/recover/purge, bad input.
# AKV_EMU_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full") runs the emulator under
# a wrapper; the test then also requires a clean exit of the wrapper. The emulator needs about a
# minute to start under valgrind: the ready wait of tests/integration/lib.sh must allow that.

AKV_EMULATOR=${1:-${AKV_EMULATOR:-}}
export AKV_EMULATOR
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"

need_tool curl jq openssl base64 od

# ---- helpers ------------------------------------------------------------------------------------

API=7.6
# Per-request cap; key generation under a wrapper such as valgrind takes far longer.
REQ_MAX_TIME=60
[ -z "${AKV_EMU_WRAPPER:-}" ] || REQ_MAX_TIME=600
# req METHOD PATH [JSON|@FILE]: sets ST (HTTP status) and writes the body to $WORK/r.json.
# HDRS holds the response headers. KV_URL selects the vault (default: the first one).
req() {
  local method=$1 path=$2 body=${3:-} url sep
  local args=(-sS --max-time "$REQ_MAX_TIME" --cacert "$EMU_CA" -H @"${AUTH_HDR:-$WORK/kv-auth.hdr}" -X "$method"
    -o "$WORK/r.json" -D "$WORK/r.hdr" -w '%{http_code}')
  kv_token
  url="${KV_URL:-$EMU_VAULT_URL}$path"
  sep='?'
  [[ "$path" == *\?* ]] && sep='&'
  url="$url${sep}api-version=$API"
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  ST=$(curl "${args[@]}" "$url") || ST=000
}
# hsm_token: a Managed HSM access token (scope managedhsm.azure.net) in $WORK/hsm-auth.hdr.
hsm_token() {
  local resp tok
  resp=$(curl -sS --max-time 20 --cacert "$EMU_CA" --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$EMU_CLIENT_ID" --data-urlencode "client_secret=$EMU_CLIENT_SECRET" \
    --data-urlencode scope=https://managedhsm.azure.net/.default \
    "$EMU_AUTHORITY/$EMU_TENANT/oauth2/v2.0/token") || fail "HSM token request failed"
  tok=$(jq -r '.access_token // empty' <<<"$resp")
  [ -n "$tok" ] || fail "HSM token response carries no access_token"
  printf 'Authorization: Bearer %s\n' "$tok" >"$WORK/hsm-auth.hdr"
}
# j FILTER: jq on the last response body.
j() { jq -r "$1" "$WORK/r.json"; }
# expect DESC STATUS: the last request answered STATUS.
expect() {
  if [ "$ST" = "$2" ]; then
    _check_result 0 "$1 (HTTP $2)"
  else
    printf '#   expected HTTP %s, got %s: %s\n' "$2" "$ST" "$(head -c 400 "$WORK/r.json")"
    _check_result 1 "$1 (HTTP $2)"
  fi
}
# expect_err DESC STATUS CODE [INNER]: a service error body with that code.
expect_err() {
  expect "$1" "$2"
  check_eq "$1: error.code" "$3" "$(j '.error.code')"
  [ -z "${4:-}" ] || check_eq "$1: innererror.code" "$4" "$(j '.error.innererror.code')"
  check "$1: error.message is set" test -n "$(j '.error.message // empty')"
}
ver_of() { basename "$1"; }
b64url_sha1_of_b64der() {
  printf '%s' "$1" | base64 -d | openssl dgst -sha1 -binary | base64 | tr '+/' '-_' | tr -d '='
}
is_hex32() { [[ "$1" =~ ^[0-9a-f]{32}$ ]]; }
# poll_pending NAME: GET /pending until not inProgress (bounded, 20 s); prints the status.
poll_pending() {
  local i s
  for i in $(seq 100); do
    req GET "/certificates/$1/pending"
    s=$(j '.status')
    [ "$s" != inProgress ] && break
    sleep 0.2
  done
  printf '%s' "$s"
}

# ---- start ----------------------------------------------------------------------------------------

cat >"$WORK/seed.json" <<'EOF'
{
  "secrets": [
    {"vault": "demo", "name": "db-password", "value": "s3cr3t-seed", "contentType": "text/plain",
     "tags": {"env": "test"}}
  ],
  "certificates": [
    {"vault": "demo", "name": "web", "subject": "CN=web", "kty": "RSA", "key_size": 2048,
     "dns_names": ["web.example"]},
    {"vault": "demo", "name": "web-ec", "subject": "CN=web-ec", "kty": "EC", "crv": "P-384",
     "contentType": "application/x-pem-file"}
  ]
}
EOF

if [ -n "${AKV_EMU_WRAPPER:-}" ]; then
  # shellcheck disable=SC2206
  wrap=($AKV_EMU_WRAPPER)
  cat >"$WORK/emu-wrapped" <<EOF
#!/bin/sh
exec ${wrap[*]} "$AKV_EMULATOR" "\$@"
EOF
  chmod 700 "$WORK/emu-wrapped"
  REAL_EMULATOR=$AKV_EMULATOR
  AKV_EMULATOR="$WORK/emu-wrapped"
fi
emu_start --vault demo --vault hsm1:mhsm --seed "$WORK/seed.json"
VAULT=$EMU_VAULT_URL
HSM=$(jq -r '.vaults[] | select(.kind == "mhsm") | .url' "$EMU_READY")
check "ready file lists the Managed HSM" test -n "$HSM"
kv_token

# ---- secrets --------------------------------------------------------------------------------------

section "secrets: set, get, versions"
req PUT /secrets/s1 '{"value":"v1","contentType":"text/plain","tags":{"a":"b"},"attributes":{"enabled":true}}'
expect "set s1" 200
check_eq "set returns the value" v1 "$(j .value)"
check_eq "set returns contentType" text/plain "$(j .contentType)"
check_eq "set returns tags" b "$(j .tags.a)"
ID1=$(j .id)
V1=$(ver_of "$ID1")
check "id is {vault}/secrets/s1/{32 hex}" test "$ID1" = "$VAULT/secrets/s1/$V1"
check "version is 32 lowercase hex" is_hex32 "$V1"
check_eq "attributes.enabled" true "$(j .attributes.enabled)"
check_eq "attributes.recoveryLevel" "CustomizedRecoverable+Purgeable" "$(j .attributes.recoveryLevel)"
check "attributes.created is a number" test "$(j '.attributes.created | type')" = number
check_eq "no managed flag on a plain secret" null "$(j .managed)"

req PUT /secrets/s1 '{"value":"v2"}'
expect "set s1 again" 200
V2=$(ver_of "$(j .id)")
check "second set makes a new version" test "$V1" != "$V2"

req GET /secrets/s1/
expect "get latest (trailing slash)" 200
check_eq "latest value" v2 "$(j .value)"
req GET /secrets/s1
expect "get latest (no slash)" 200
check_eq "latest id" "$VAULT/secrets/s1/$V2" "$(j .id)"
req GET "/secrets/s1/$V1"
expect "get version 1" 200
check_eq "version 1 value" v1 "$(j .value)"
req GET /secrets/S1
expect "names are case-insensitive" 200
req GET "/secrets/s1/0123456789abcdef0123456789abcdef"
expect_err "unknown version" 404 SecretNotFound
req GET /secrets/nope
expect_err "unknown secret" 404 SecretNotFound

section "secrets: list and paging"
for n in 2 3 4; do req PUT "/secrets/p$n" "{\"value\":\"x$n\"}"; done
req GET /secrets
expect "list" 200
check "list holds base ids" test "$(j "[.value[].id] | index(\"$VAULT/secrets/s1\") != null")" = true
check_eq "list items carry no value" 0 "$(j '[.value[] | select(has("value"))] | length')"
check_eq "last page nextLink is null" null "$(j .nextLink)"
check "list shows the seeded secret" test "$(j "[.value[].id] | index(\"$VAULT/secrets/db-password\") != null")" = true
check_eq "seeded secret contentType in list" text/plain "$(j '.value[] | select(.id | endswith("/db-password")) | .contentType')"
req GET "/secrets?maxresults=2"
expect "list maxresults=2" 200
check_eq "page has 2 items" 2 "$(j '.value | length')"
NEXT=$(j .nextLink)
check "nextLink is an absolute URL" test "${NEXT#https://}" != "$NEXT"
pages=1
total=2
while [ "$NEXT" != null ] && [ $pages -lt 20 ]; do
  code=$(curl -sS --max-time 30 --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -o "$WORK/r.json" \
    -w '%{http_code}' "$NEXT")
  [ "$code" = 200 ] || break
  total=$((total + $(j '.value | length')))
  NEXT=$(j .nextLink)
  pages=$((pages + 1))
done
req GET /secrets
check_eq "paging visits every secret" "$(j '.value | length')" "$total"
req GET /secrets/s1/versions
expect "list versions" 200
check_eq "two versions" 2 "$(j '.value | length')"
check "version ids are versioned" test "$(j "[.value[].id] | index(\"$VAULT/secrets/s1/$V1\") != null")" = true

section "secrets: update, disabled"
req PATCH "/secrets/s1/$V2" '{"contentType":"application/json","attributes":{"enabled":false},"tags":{"k":"v"}}'
expect "update" 200
check_eq "update response has no value" false "$(j 'has("value")')"
check_eq "update applied contentType" application/json "$(j .contentType)"
check_eq "update applied enabled" false "$(j .attributes.enabled)"
check_eq "update replaced tags" v "$(j .tags.k)"
req GET /secrets/s1
expect_err "get disabled secret" 403 Forbidden SecretDisabled
req PATCH /secrets/s1/ '{"attributes":{"enabled":true}}'
expect "update latest (version-less)" 200
req GET /secrets/s1
expect "enabled again" 200

section "secrets: soft delete, recover, purge"
req DELETE /secrets/s1
expect "delete" 200
check_eq "recoveryId" "$VAULT/deletedsecrets/s1" "$(j .recoveryId)"
check_eq "deleted bundle has no value" false "$(j 'has("value")')"
check "deletedDate and scheduledPurgeDate" test "$(j '(.deletedDate|type) + (.scheduledPurgeDate|type)')" = numbernumber
req GET /secrets/s1
expect_err "get deleted secret" 404 SecretNotFound
req PUT /secrets/s1 '{"value":"again"}'
expect_err "set over a deleted secret" 409 Conflict ObjectIsDeletedButRecoverable
req GET /deletedsecrets/s1
expect "get deleted" 200
check_eq "get deleted has no value" false "$(j 'has("value")')"
req GET /deletedsecrets
expect "list deleted" 200
check_eq "deleted list holds s1" "$VAULT/deletedsecrets/s1" "$(j '.value[] | select(.id | endswith("/s1")) | .recoveryId')"
req POST /deletedsecrets/s1/recover
expect "recover" 200
req GET /secrets/s1
expect "recovered secret readable" 200
check_eq "recovered value" v2 "$(j .value)"
req DELETE /secrets/s1
req DELETE /deletedsecrets/s1
expect "purge" 204
req GET /deletedsecrets/s1
expect_err "purged secret gone" 404 SecretNotFound
req PUT /secrets/s1 '{"value":"reborn"}'
expect "name reusable after purge" 200
req DELETE /deletedsecrets/p2
expect_err "purge of a live secret" 404 SecretNotFound

section "secrets: backup and restore"
req PUT /secrets/bk '{"value":"first","tags":{"x":"y"}}'
BK1=$(ver_of "$(j .id)")
req PUT /secrets/bk '{"value":"second","contentType":"text/plain"}'
BK2=$(ver_of "$(j .id)")
req POST /secrets/bk/backup
expect "backup" 200
BLOB=$(j .value)
check "backup blob is base64url" sh -c "printf '%s' '$BLOB' | grep -Eq '^[A-Za-z0-9_-]+\$'"
check "backup blob does not reveal the value" sh -c "! printf '%s' '$BLOB' | base64 -d 2>/dev/null | grep -q second"
req POST /secrets/restore "{\"value\":\"$BLOB\"}"
expect_err "restore over a live secret" 409 Conflict
req DELETE /secrets/bk
req POST /secrets/restore "{\"value\":\"$BLOB\"}"
expect_err "restore over a deleted secret" 409 Conflict ObjectIsDeletedButRecoverable
req DELETE /deletedsecrets/bk
req POST /secrets/restore "{\"value\":\"$BLOB\"}"
expect "restore after purge" 200
check_eq "restore answers the latest version" "$VAULT/secrets/bk/$BK2" "$(j .id)"
check_eq "restore answer has no value" false "$(j 'has("value")')"
req GET "/secrets/bk/$BK1"
check_eq "restored old version value" first "$(j .value)"
check_eq "restored old version tags" y "$(j .tags.x)"
req GET /secrets/bk
check_eq "restored latest value" second "$(j .value)"
check_eq "restored latest contentType" text/plain "$(j .contentType)"
req POST /secrets/restore '{"value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}'
expect_err "restore of a forged blob" 400 BadParameter
req POST /secrets/restore '{"value":"not base64url!"}'
expect_err "restore of garbage" 400 BadParameter
req POST /secrets/restore '{}'
expect_err "restore without value" 400 BadParameter
req POST /secrets/nope/backup
expect_err "backup of an unknown secret" 404 SecretNotFound
req POST /secrets/other
expect "POST on a secret name is not a route" 405

section "secrets: bad input"
req PUT /secrets/bad_name '{"value":"x"}'
expect_err "invalid name" 400 BadParameter
req PUT /secrets/b1 '{"contentType":"x"}'
expect_err "missing value" 400 BadParameter
req PUT /secrets/b1 '{"value":5}'
expect_err "value not a string" 400 BadParameter
req PUT /secrets/b1 '{"value":"x","tags":{"a":1}}'
expect_err "tag value not a string" 400 BadParameter
req PUT /secrets/b1 '{"value":"x","attributes":{"enabled":"yes"}}'
expect_err "enabled not a boolean" 400 BadParameter
req PUT /secrets/b1 '{"value":"x",'
expect "malformed JSON" 400
req PUT /secrets/b1 '[1,2]'
expect_err "body not an object" 400 BadParameter
req PUT /secrets/b1 "{\"value\":\"$(head -c 30000 /dev/zero | tr '\0' a)\"}"
expect_err "value too large" 400 BadParameter
req POST /secrets/s1
expect "wrong method" 405
req GET "/secrets/s1?outContentType=text/html"
expect_err "unsupported outContentType" 400 BadParameter
req GET "/secrets/s1?outContentType=application/x-pem-file"
expect_err "outContentType on a non-certificate secret" 400 BadParameter
hsm_token
AUTH_HDR=$WORK/hsm-auth.hdr KV_URL=$HSM req GET /keys
expect "Managed HSM answers its own routes with an HSM token" 200
AUTH_HDR=$WORK/hsm-auth.hdr KV_URL=$HSM req GET /secrets
expect_err "Managed HSM does not serve secrets" 404 NotFound
AUTH_HDR=$WORK/hsm-auth.hdr KV_URL=$HSM req PUT /secrets/x '{"value":"v"}'
expect_err "Managed HSM refuses to set a secret" 404 NotFound
AUTH_HDR=$WORK/hsm-auth.hdr KV_URL=$HSM req GET /certificates
expect_err "Managed HSM does not serve certificates" 404 NotFound

# ---- certificates: create (Self) --------------------------------------------------------------------

section "certificates: create with issuer Self"
POLICY='{"key_props":{"exportable":true,"kty":"RSA","key_size":2048,"reuse_key":false},
 "secret_props":{"contentType":"application/x-pkcs12"},
 "x509_props":{"subject":"CN=c1.example, O=Emu","sans":{"dns_names":["c1.example","alt.example"],"emails":["a@c1.example"],"upns":["u@c1.example"]},
   "ekus":["1.3.6.1.5.5.7.3.1"],"key_usage":["digitalSignature","keyEncipherment"],"validity_months":6},
 "issuer":{"name":"Self"}}'
req POST /certificates/c1/create "{\"policy\":$POLICY,\"tags\":{\"t\":\"1\"}}"
expect "create" 202
check_eq "operation status" inProgress "$(j .status)"
check_eq "operation id" "$VAULT/certificates/c1/pending" "$(j .id)"
check_eq "operation issuer" Self "$(j .issuer.name)"
check_eq "cancellation_requested false" false "$(j .cancellation_requested)"
check "request_id set" test -n "$(j '.request_id // empty')"
check_grep "Location header points at /pending" '^[Ll]ocation: .*/certificates/c1/pending\?' "$WORK/r.hdr"
j .csr | base64 -d >"$WORK/c1.csr.der"
check "csr is standard base64 DER PKCS#10 with a valid signature" \
  openssl req -inform DER -in "$WORK/c1.csr.der" -noout -verify
check "csr subject" sh -c "openssl req -inform DER -in '$WORK/c1.csr.der' -noout -subject | grep -q 'CN *= *c1.example'"
check_eq "pending completes" completed "$(poll_pending c1)"
check_eq "completed operation target" "$VAULT/certificates/c1" "$(j .target)"
check_eq "completed operation has no status_details" null "$(j .status_details)"

req GET /certificates/c1
expect "get certificate" 200
CID=$(j .id)
CV=$(ver_of "$CID")
check "certificate version is 32 hex" is_hex32 "$CV"
check_eq "kid shares the version" "$VAULT/keys/c1/$CV" "$(j .kid)"
check_eq "sid shares the version" "$VAULT/secrets/c1/$CV" "$(j .sid)"
CER=$(j .cer)
check "cer is standard base64" sh -c "printf '%s' '$CER' | grep -Eq '^[A-Za-z0-9+/]+=*\$'"
printf '%s' "$CER" | base64 -d >"$WORK/c1.der"
check "cer is a DER certificate" openssl x509 -inform DER -in "$WORK/c1.der" -noout
check_eq "x5t is base64url SHA-1 of cer" "$(b64url_sha1_of_b64der "$CER")" "$(j .x5t)"
check_eq "certificate enabled" true "$(j .attributes.enabled)"
check "nbf/exp from the certificate" test "$(j '(.attributes.nbf|type) + (.attributes.exp|type)')" = numbernumber
check_eq "tags kept" 1 "$(j .tags.t)"
check_eq "policy id" "$VAULT/certificates/c1/policy" "$(j .policy.id)"
check_eq "policy key_props.kty" RSA "$(j .policy.key_props.kty)"
check_eq "policy key_size" 2048 "$(j .policy.key_props.key_size)"
check_eq "policy contentType" application/x-pkcs12 "$(j .policy.secret_props.contentType)"
check_eq "policy validity_months" 6 "$(j .policy.x509_props.validity_months)"
check_eq "policy issuer" Self "$(j .policy.issuer.name)"
check_eq "pending link" "$VAULT/certificates/c1/pending" "$(j .pending.id)"
openssl x509 -inform DER -in "$WORK/c1.der" -noout -text >"$WORK/c1.txt"
check_grep "subject CN" 'Subject: .*CN *= *c1.example' "$WORK/c1.txt"
check_grep "self-signed: issuer = subject" 'Issuer: .*CN *= *c1.example' "$WORK/c1.txt"
check_grep "SAN dns" 'DNS:c1.example, DNS:alt.example' "$WORK/c1.txt"
check_grep "SAN email" 'email:a@c1.example' "$WORK/c1.txt"
check_grep "SAN UPN (otherName)" 'othername: *(UPN|1\.3\.6\.1\.4\.1\.311\.20\.2\.3)' "$WORK/c1.txt"
check_grep "EKU serverAuth" 'TLS Web Server Authentication' "$WORK/c1.txt"
check_grep "key usage" 'Digital Signature, Key Encipherment' "$WORK/c1.txt"
check_grep "RSA 2048" 'Public-Key: \(2048 bit\)' "$WORK/c1.txt"
check "certificate verifies against itself" \
  sh -c "openssl x509 -inform DER -in '$WORK/c1.der' -out '$WORK/c1.pem' && openssl verify -CAfile '$WORK/c1.pem' -partial_chain '$WORK/c1.pem'"
nb=$(j .attributes.nbf)
ex=$(j .attributes.exp)
check "validity is about 6 months" test $(((ex - nb) / 86400)) -ge 180 -a $(((ex - nb) / 86400)) -le 186

section "certificates: managed key and secret"
req GET "/keys/c1/$CV"
expect "key of the certificate" 200
check_eq "key kid" "$VAULT/keys/c1/$CV" "$(j .key.kid)"
check_eq "key is managed" true "$(j .managed)"
jq -c .key "$WORK/r.json" >"$WORK/c1.jwk"
check "key public part equals the certificate's" sh -c \
  "openssl x509 -inform DER -in '$WORK/c1.der' -noout -pubkey | openssl pkey -pubin -outform DER -out '$WORK/c1.spki' && true"
jwk_to_der "$(cat "$WORK/c1.jwk")" "$WORK/c1.jwk.der"
check_same_file "key JWK = certificate public key" "$WORK/c1.spki" "$WORK/c1.jwk.der"
req GET "/secrets/c1/$CV"
expect "secret of the certificate" 200
check_eq "secret is managed" true "$(j .managed)"
check_eq "secret kid" "$VAULT/keys/c1/$CV" "$(j .kid)"
check_eq "secret contentType" application/x-pkcs12 "$(j .contentType)"
j .value | base64 -d >"$WORK/c1.pfx"
check "PFX opens with an empty password" \
  openssl pkcs12 -in "$WORK/c1.pfx" -passin pass: -nodes -out "$WORK/c1.pfx.pem"
check_grep "PFX holds the private key" 'BEGIN PRIVATE KEY' "$WORK/c1.pfx.pem"
check "PFX certificate equals cer" sh -c \
  "openssl x509 -in '$WORK/c1.pfx.pem' -outform DER -out '$WORK/c1.pfx.der' && cmp -s '$WORK/c1.pfx.der' '$WORK/c1.der'"
check "PFX private key matches the certificate" sh -c \
  "openssl pkey -in '$WORK/c1.pfx.pem' -pubout -outform DER -out '$WORK/c1.pfx.spki' && cmp -s '$WORK/c1.pfx.spki' '$WORK/c1.spki'"
req GET "/secrets/c1/$CV?outContentType=application/x-pem-file"
expect "secret as PEM (outContentType)" 200
check_eq "converted contentType" application/x-pem-file "$(j .contentType)"
j .value >"$WORK/c1.conv.pem"
check_grep "converted PEM has the PKCS#8 key" '^-----BEGIN PRIVATE KEY-----$' "$WORK/c1.conv.pem"
check_grep "converted PEM has the certificate" '^-----BEGIN CERTIFICATE-----$' "$WORK/c1.conv.pem"
req PUT /secrets/c1 '{"value":"hijack"}'
expect_err "managed secret cannot be set directly" 403 Forbidden
req DELETE /secrets/c1
expect_err "managed secret cannot be deleted directly" 403 Forbidden
req GET /secrets
check_eq "managed secret listed with managed=true" true "$(j '.value[] | select(.id | endswith("/secrets/c1")) | .managed')"

section "certificates: EC, PEM, non-exportable, reuse_key"
req POST /certificates/ec1/create '{"policy":{"key_props":{"kty":"EC","crv":"P-256"},"secret_props":{"contentType":"application/x-pem-file"},"x509_props":{"subject":"CN=ec1"},"issuer":{"name":"Self"}}}'
expect "create EC P-256 PEM" 202
check_eq "EC completes" completed "$(poll_pending ec1)"
req GET /certificates/ec1
ECV=$(ver_of "$(j .id)")
check_eq "EC policy crv" P-256 "$(j .policy.key_props.crv)"
check_eq "EC default key_usage" digitalSignature "$(j '.policy.x509_props.key_usage | join(",")')"
req GET /secrets/ec1
check_eq "EC secret shares the version" "$ECV" "$(ver_of "$(j .id)")"
check_eq "EC secret contentType" application/x-pem-file "$(j .contentType)"
j .value >"$WORK/ec1.pem"
check_grep "PEM starts with the PKCS#8 key" '^-----BEGIN PRIVATE KEY-----$' "$WORK/ec1.pem"
check_grep "PEM has the certificate" '^-----BEGIN CERTIFICATE-----$' "$WORK/ec1.pem"
check "PEM key is EC P-256" sh -c "openssl pkey -in '$WORK/ec1.pem' -noout -text | grep -q 'prime256v1\\|P-256'"
check "PEM key matches PEM certificate" sh -c \
  "[ \"\$(openssl pkey -in '$WORK/ec1.pem' -pubout)\" = \"\$(openssl x509 -in '$WORK/ec1.pem' -noout -pubkey)\" ]"
req GET "/secrets/ec1?outContentType=application/x-pkcs12"
expect "PEM secret as PKCS#12" 200
j .value | base64 -d >"$WORK/ec1.pfx"
check "converted PFX opens with an empty password" openssl pkcs12 -in "$WORK/ec1.pfx" -passin pass: -nodes -noout
req GET /keys/ec1
check_eq "EC key type" EC "$(j .key.kty)"
check_eq "EC key curve" P-256 "$(j .key.crv)"

req POST /certificates/ne1/create '{"policy":{"key_props":{"kty":"RSA","key_size":3072,"exportable":false},"x509_props":{"subject":"CN=ne1"},"issuer":{"name":"Self"}}}'
expect "create non-exportable RSA 3072" 202
poll_pending ne1 >/dev/null
req GET /secrets/ne1
j .value | base64 -d >"$WORK/ne1.pfx"
openssl pkcs12 -in "$WORK/ne1.pfx" -passin pass: -nodes -out "$WORK/ne1.pem" 2>/dev/null || true
check_nogrep "non-exportable: no private key in the secret" 'PRIVATE KEY' "$WORK/ne1.pem"
check_grep "non-exportable: certificate in the secret" 'BEGIN CERTIFICATE' "$WORK/ne1.pem"
req GET /keys/ne1
check "RSA 3072 key" test "$(j '.key.n | length')" -ge 510

req GET "/keys/c1/$CV"
N_OLD=$(j .key.n)
req POST /certificates/c1/create '{"policy":{"key_props":{"kty":"RSA","key_size":2048,"reuse_key":true},"x509_props":{"subject":"CN=c1.example"},"issuer":{"name":"Self"}}}'
expect "create new version with reuse_key" 202
poll_pending c1 >/dev/null
req GET /certificates/c1
CV2=$(ver_of "$(j .id)")
check "new latest version" test "$CV2" != "$CV"
req GET "/keys/c1/$CV2"
check_eq "reuse_key keeps the key pair" "$N_OLD" "$(j .key.n)"
req GET /certificates/c1/versions
expect "list certificate versions" 200
check "versions list both" test "$(j '.value | length')" -ge 2
check "version items carry x5t" test "$(j '[.value[] | has("x5t")] | all')" = true
req GET "/certificates/c1/$CV"
expect "get older version" 200
check_eq "older version cer unchanged" "$CER" "$(j .cer)"

section "certificates: issuer Unknown, cancel, merge"
req POST /certificates/u1/create '{"policy":{"x509_props":{"subject":"CN=u1"},"issuer":{"name":"Unknown"}}}'
expect "create with issuer Unknown" 202
req POST /certificates/u1/create '{"policy":{"x509_props":{"subject":"CN=u1"},"issuer":{"name":"Unknown"}}}'
expect_err "second create while an operation is in progress" 409 Conflict
sleep 1.2
req GET /certificates/u1/pending
expect "pending" 200
check_eq "Unknown issuer stays inProgress" inProgress "$(j .status)"
j .csr | base64 -d >"$WORK/u1.csr.der"
req GET /certificates/u1
expect "get while pending" 200
check_eq "pending placeholder is disabled" false "$(j .attributes.enabled)"
check_eq "pending placeholder has no cer, kid, sid, x5t" false "$(j 'has("cer") or has("kid") or has("sid") or has("x5t")')"
check_eq "pending placeholder links the operation" "$VAULT/certificates/u1/pending" "$(j .pending.id)"
check "pending placeholder id is versioned" is_hex32 "$(ver_of "$(j .id)")"
req GET /certificates
check_eq "list without includePending hides u1" 0 "$(j '[.value[] | select(.id | endswith("/u1"))] | length')"
req GET "/certificates?includePending=true"
check_eq "list with includePending shows u1" 1 "$(j '[.value[] | select(.id | endswith("/u1"))] | length')"
# sign the CSR with a local CA and merge
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 30 \
  -subj "/CN=Merge CA" >/dev/null 2>&1
openssl x509 -req -inform DER -in "$WORK/u1.csr.der" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 30 -outform DER -out "$WORK/u1.der" >/dev/null 2>&1
X5C=$(jq -cn --arg a "$(base64 -w0 "$WORK/u1.der")" \
  --arg b "$(openssl x509 -in "$WORK/ca.pem" -outform DER | base64 -w0)" '{x5c:[$a,$b]}')
req POST /certificates/u1/pending/merge '{"x5c":["bm90IGEgY2VydA=="]}'
expect_err "merge with garbage" 400 BadParameter
req POST /certificates/u1/pending/merge "$X5C"
expect "merge" 201
check_eq "merged cer" "$(base64 -w0 "$WORK/u1.der")" "$(j .cer)"
req GET /certificates/u1/pending
check_eq "merged operation completed" completed "$(j .status)"
req GET /secrets/u1
j .value | base64 -d >"$WORK/u1.pfx"
openssl pkcs12 -in "$WORK/u1.pfx" -passin pass: -nodes -out "$WORK/u1.pem" 2>/dev/null
check_eq "merged chain kept in the secret (2 certificates)" 2 "$(grep -c 'BEGIN CERTIFICATE' "$WORK/u1.pem")"

req POST /certificates/u2/create '{"policy":{"x509_props":{"subject":"CN=u2"},"issuer":{"name":"Unknown"}}}'
req PATCH /certificates/u2/pending '{"cancellation_requested":true}'
expect "cancel" 200
check_eq "cancellation_requested" true "$(j .cancellation_requested)"
check_eq "cancelled status" cancelled "$(j .status)"
req DELETE /certificates/u2/pending
expect "delete operation" 200
req GET /certificates/u2/pending
expect_err "operation gone" 404 PendingCertificateNotFound
req GET /certificates/u2
expect "placeholder certificate remains" 200
check_eq "placeholder has no pending link" null "$(j .pending)"

section "certificates: import"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/imp.key" -out "$WORK/imp.crt" -days 60 \
  -subj "/CN=imported/O=Emu" -addext "subjectAltName=DNS:imp.example" >/dev/null 2>&1
openssl x509 -req -in <(openssl req -new -key "$WORK/imp.key" -subj "/CN=leaf.imported") \
  -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 30 -out "$WORK/leaf.crt" >/dev/null 2>&1
openssl pkcs12 -export -inkey "$WORK/imp.key" -in "$WORK/leaf.crt" -certfile "$WORK/ca.pem" \
  -passout pass:pw -out "$WORK/imp.pfx"
req POST /certificates/imp1/import "$(jq -cn --arg v "$(base64 -w0 "$WORK/imp.pfx")" '{value:$v,pwd:"pw",tags:{src:"pfx"}}')"
expect "import PKCS#12 with password and chain" 200
IV=$(ver_of "$(j .id)")
check_eq "import kid" "$VAULT/keys/imp1/$IV" "$(j .kid)"
check_eq "import cer = leaf" "$(openssl x509 -in "$WORK/leaf.crt" -outform DER | base64 -w0)" "$(j .cer)"
check_eq "import policy subject" "CN=leaf.imported" "$(j .policy.x509_props.subject)"
check_eq "import policy issuer" Unknown "$(j .policy.issuer.name)"
req GET /secrets/imp1
j .value | base64 -d >"$WORK/imp1.pfx"
openssl pkcs12 -in "$WORK/imp1.pfx" -passin pass: -nodes -out "$WORK/imp1.pem" 2>/dev/null
check_eq "imported chain kept in the secret" 2 "$(grep -c 'BEGIN CERTIFICATE' "$WORK/imp1.pem")"
check_grep "imported secret has the key" 'BEGIN PRIVATE KEY' "$WORK/imp1.pem"
cat "$WORK/imp.key" "$WORK/ca.pem" "$WORK/leaf.crt" >"$WORK/imp.pem"
req POST /certificates/imp2/import "$(jq -cn --rawfile v "$WORK/imp.pem" '{value:$v,policy:{secret_props:{contentType:"application/x-pem-file"}}}')"
expect "import PEM (key, CA, leaf in any order)" 200
check_eq "PEM import picks the leaf matching the key" "$(openssl x509 -in "$WORK/leaf.crt" -outform DER | base64 -w0)" "$(j .cer)"
req GET /secrets/imp2
j .value >"$WORK/imp2.pem"
check_eq "PEM secret: key + leaf + chain" "1 2" "$(grep -c 'BEGIN PRIVATE KEY' "$WORK/imp2.pem") $(grep -c 'BEGIN CERTIFICATE' "$WORK/imp2.pem")"
req POST /certificates/imp3/import "$(jq -cn --arg v "$(base64 -w0 "$WORK/imp.pfx")" '{value:$v,pwd:"wrong"}')"
expect_err "import with a wrong password" 400 BadParameter
req POST /certificates/imp3/import '{"value":"!!!notbase64"}'
expect_err "import bad base64" 400 BadParameter
req POST /certificates/imp3/import '{"value":"aGVsbG8gd29ybGQ="}'
expect_err "import base64 that is not a PFX" 400 BadParameter
req POST /certificates/imp3/import '{"value":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n","policy":{"secret_props":{"contentType":"application/x-pem-file"}}}'
expect_err "import PEM without key" 400 BadParameter
req POST /certificates/imp3/import "$(jq -cn --rawfile v "$WORK/imp.crt" --rawfile k "$WORK/ca.key" '{value:($k+$v)}')"
expect_err "import PEM whose certificate does not match the key" 400 BadParameter
req POST /certificates/imp3/import '{"pwd":"x"}'
expect_err "import without value" 400 BadParameter

section "certificates: backup and restore"
req GET /certificates/imp1
IMP_CER=$(j .cer)
IMP_ID=$(j .id)
req GET /keys/imp1
IMP_N=$(j .key.n)
req GET /secrets/imp1
IMP_VAL=$(j .value)
req POST /certificates/imp1/backup
expect "certificate backup" 200
CBLOB=$(j .value)
check "certificate backup blob is base64url" sh -c "printf '%s' '$CBLOB' | grep -Eq '^[A-Za-z0-9_-]+\$'"
req POST /certificates/restore "{\"value\":\"$CBLOB\"}"
expect_err "certificate restore over a live certificate" 409 Conflict
req DELETE /certificates/imp1
req DELETE /deletedcertificates/imp1
expect "purge before restore" 204
req GET /keys/imp1
expect "key purged with the certificate" 404
req POST /certificates/restore "{\"value\":\"$CBLOB\"}"
expect "certificate restore" 200
check_eq "restored certificate id (same version)" "$IMP_ID" "$(j .id)"
check_eq "restored cer" "$IMP_CER" "$(j .cer)"
check_eq "restored policy issuer" Unknown "$(j .policy.issuer.name)"
req GET /keys/imp1
check_eq "restored key (same public key)" "$IMP_N" "$(j .key.n)"
check_eq "restored key is managed" true "$(j .managed)"
req GET /secrets/imp1
check_eq "restored secret value" "$IMP_VAL" "$(j .value)"
check_eq "restored secret kid" "$VAULT/keys/imp1/$(ver_of "$IMP_ID")" "$(j .kid)"
req POST /certificates/restore "{\"value\":\"$BLOB\"}"
expect_err "a secret backup is not a certificate backup" 400 BadParameter
req POST /certificates/nope/backup
expect_err "backup of an unknown certificate" 404 CertificateNotFound

section "certificates: policy and update"
req GET /certificates/c1/policy
expect "get policy" 200
check_eq "policy id" "$VAULT/certificates/c1/policy" "$(j .id)"
req PATCH /certificates/c1/policy '{"x509_props":{"validity_months":24},"secret_props":{"contentType":"application/x-pem-file"}}'
expect "update policy" 200
check_eq "policy validity updated" 24 "$(j .x509_props.validity_months)"
check_eq "policy contentType updated" application/x-pem-file "$(j .secret_props.contentType)"
check_eq "policy subject kept" CN=c1.example "$(j .x509_props.subject)"
req PATCH /certificates/c1/policy '{"key_props":{"kty":"DSA"}}'
expect_err "policy with a bad kty" 400 BadParameter
req PATCH /certificates/c1/ '{"attributes":{"enabled":false},"tags":{"u":"2"}}'
expect "update certificate" 200
check_eq "certificate disabled" false "$(j .attributes.enabled)"
check_eq "certificate tags" 2 "$(j .tags.u)"
req GET /secrets/c1
expect_err "secret of a disabled certificate" 403 Forbidden SecretDisabled
req GET /keys/c1
check_eq "key of a disabled certificate is disabled" false "$(j .attributes.enabled)"
check_eq "key of the certificate carries its tags" 2 "$(j .tags.u)"
req PATCH /certificates/c1 '{"attributes":{"enabled":true}}'
expect "re-enable" 200
req GET /keys/c1
check_eq "key re-enabled with its certificate" true "$(j .attributes.enabled)"

section "certificates: list, seeds"
req GET "/certificates?maxresults=1"
expect "list maxresults=1" 200
check_eq "one item" 1 "$(j '.value | length')"
check "nextLink present" test "$(j .nextLink)" != null
req GET /certificates
check "list holds c1 with x5t" test -n "$(j '.value[] | select(.id | endswith("/certificates/c1")) | .x5t')"
check "list holds the seeded web certificate" test -n "$(j '.value[] | select(.id | endswith("/certificates/web")) | .x5t')"
req GET /certificates/web
check_eq "seed subject" CN=web "$(j .policy.x509_props.subject)"
printf '%s' "$(j .cer)" | base64 -d | openssl x509 -inform DER -noout -text >"$WORK/web.txt"
check_grep "seed SAN" 'DNS:web.example' "$WORK/web.txt"
req GET /secrets/web-ec
check_eq "seeded EC certificate secret is PEM" application/x-pem-file "$(j .contentType)"
req GET /secrets/db-password
check_eq "seeded secret value" s3cr3t-seed "$(j .value)"

section "certificates: soft delete, recover, purge"
req DELETE /certificates/c1
expect "delete certificate" 200
check_eq "recoveryId" "$VAULT/deletedcertificates/c1" "$(j .recoveryId)"
check "deleted bundle has cer" test -n "$(j '.cer // empty')"
req GET /certificates/c1
expect_err "deleted certificate" 404 CertificateNotFound
req GET /keys/c1
expect "managed key deleted with its certificate" 404
req GET /secrets/c1
expect "managed secret deleted with its certificate" 404
req POST /certificates/c1/create "{\"policy\":$POLICY}"
expect_err "create over a deleted certificate" 409 Conflict ObjectIsDeletedButRecoverable
req GET /deletedcertificates/c1
expect "get deleted certificate" 200
req GET /deletedcertificates
check_eq "deleted list holds c1" "$VAULT/deletedcertificates/c1" "$(j '.value[] | select(.id | endswith("/c1")) | .recoveryId')"
req DELETE /deletedsecrets/c1
expect_err "managed deleted secret cannot be purged alone" 403 Forbidden
req POST /deletedcertificates/c1/recover
expect "recover certificate" 200
req GET /keys/c1
expect "key recovered" 200
req GET /secrets/c1
expect "secret recovered" 200
req DELETE /certificates/c1
req DELETE /deletedcertificates/c1
expect "purge certificate" 204
req GET /deletedcertificates/c1
expect_err "purged certificate gone" 404 CertificateNotFound
req GET /deletedkeys/c1
expect "managed key purged" 404
req GET /deletedsecrets/c1
expect "managed secret purged" 404

section "certificates: bad input"
req POST /certificates/b1/create '{}'
expect_err "create without policy" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b"},"key_props":{"kty":"oct"}}}'
expect_err "create with kty oct" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b"},"key_props":{"kty":"RSA","key_size":1000}}}'
expect_err "create with bad key_size" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"no-equals-sign"}}}'
expect_err "create with a bad subject" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b","ekus":["not-an-oid"]}}}'
expect_err "create with a bad EKU" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b","key_usage":["everything"]}}}'
expect_err "create with a bad key usage" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b"},"issuer":{"name":"DigiCert"}}}'
expect_err "create with an unsupported issuer" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b"},"secret_props":{"contentType":"text/plain"}}}'
expect_err "create with a bad contentType" 400 BadParameter
req POST /certificates/b1/create '{"policy":{"x509_props":{"subject":"CN=b","validity_months":"12"}}}'
expect_err "create with validity_months as a string" 400 BadParameter
req POST /certificates/b1/create '{"policy":5}'
expect_err "policy not an object" 400 BadParameter
req POST /certificates/b_1/create "{\"policy\":$POLICY}"
expect_err "invalid certificate name" 400 BadParameter
req POST /certificates/b1/pending/merge '{"x5c":[]}'
expect_err "merge with empty x5c" 400 BadParameter
req GET /certificates/nope
expect_err "unknown certificate" 404 CertificateNotFound
req GET /certificates/nope/pending
expect_err "unknown operation" 404 PendingCertificateNotFound
req PATCH /certificates/u1/pending '{"cancellation_requested":"yes"}'
expect_err "cancel with a non-boolean" 400 BadParameter

section "robustness: every member of valid bodies replaced by wrong types"
# For each leaf or container path of a valid body, send the body with that value replaced by each
# of several wrong-typed values; every answer must be a clean 2xx/4xx with a JSON body.
mutate_route() {
  local method=$1 path=$2 body=$3 p v bad=0 n=0 mbody
  while IFS= read -r p; do
    for v in 'null' '-1e308' '""' 'true' '[{"a":null}]' '{"b":[]}'; do
      mbody=$(jq -c --argjson p "$p" --argjson v "$v" 'setpath($p; $v)' <<<"$body")
      req "$method" "$path" "$mbody"
      n=$((n + 1))
      case "$ST" in
      2?? | 400 | 403 | 404 | 409) jq -e 'type == "object"' "$WORK/r.json" >/dev/null 2>&1 || [ "$ST" = 204 ] || {
        printf '#   %s %s %s -> %s with a non-JSON body\n' "$method" "$path" "$mbody" "$ST"
        bad=$((bad + 1))
      } ;;
      *)
        printf '#   %s %s %s -> HTTP %s\n' "$method" "$path" "$mbody" "$ST"
        bad=$((bad + 1))
        ;;
      esac
    done
  done < <(jq -c 'paths' <<<"$body")
  check_eq "$method $path: $n mutated bodies answered cleanly" 0 "$bad"
}
mutate_route PUT /secrets/mut '{"value":"v","contentType":"t","tags":{"a":"b"},"attributes":{"enabled":true,"nbf":1,"exp":4102444800}}'
mutate_route PATCH /secrets/mut '{"contentType":"t","tags":{"a":"b"},"attributes":{"enabled":true}}'
mutate_route POST /certificates/mut/create '{"policy":{"key_props":{"exportable":true,"kty":"EC","crv":"P-256","reuse_key":true},
 "secret_props":{"contentType":"application/x-pem-file"},"x509_props":{"subject":"CN=m","sans":{"dns_names":["m"],"emails":["e@m"],"upns":["u@m"]},
 "ekus":["1.3.6.1.5.5.7.3.1"],"key_usage":["digitalSignature"],"validity_months":1},"lifetime_actions":[{"trigger":{"lifetime_percentage":80},"action":{"action_type":"AutoRenew"}}],
 "issuer":{"name":"Self","cty":"x","cert_transparency":false},"attributes":{"enabled":true}},"attributes":{"enabled":true},"tags":{"a":"b"}}'
req DELETE /certificates/mut/pending
mutate_route PATCH /certificates/web/policy '{"key_props":{"kty":"RSA","key_size":2048},"x509_props":{"subject":"CN=p","validity_months":3},"issuer":{"name":"Self"}}'
mutate_route PATCH /certificates/imp1 '{"attributes":{"enabled":true},"tags":{"a":"b"}}'
mutate_route POST /certificates/mut2/import "$(jq -cn --rawfile v "$WORK/imp.pem" '{value:$v,pwd:"",policy:{secret_props:{contentType:"application/x-pem-file"},key_props:{exportable:true}},attributes:{enabled:true},tags:{a:"b"}}')"
mutate_route PATCH /certificates/u1/pending '{"cancellation_requested":false}'
mutate_route POST /certificates/u1/pending/merge '{"x5c":["AAAA"]}'
mutate_route POST /secrets/restore '{"value":"AAAA"}'
check "emulator alive after the mutations" kill -0 "$EMU_PID"

section "concurrency: parallel clients"
# worker N: its own certificate (create + poll + get), versions of a shared secret, listings and a
# delete/purge cycle of its own secret; every request's status goes to $WORK/par-N.log.
par_worker() {
  local n=$1 i code st
  local c=(curl -sS --max-time "$REQ_MAX_TIME" --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -o "$WORK/par-$n.json"
    -w '%{http_code}' -H 'Content-Type: application/json')
  : >"$WORK/par-$n.log"
  code=$("${c[@]}" -X POST --data-binary '{"policy":{"key_props":{"kty":"EC","crv":"P-256"},"x509_props":{"subject":"CN=par"}}}' \
    "$VAULT/certificates/par$n/create?api-version=$API")
  echo "create $code" >>"$WORK/par-$n.log"
  for i in $(seq 50); do
    code=$("${c[@]}" "$VAULT/certificates/par$n/pending?api-version=$API")
    st=$(jq -r .status "$WORK/par-$n.json" 2>/dev/null)
    [ "$st" = completed ] && break
    sleep 0.1
  done
  echo "pending $code $st" >>"$WORK/par-$n.log"
  code=$("${c[@]}" "$VAULT/certificates/par$n?api-version=$API")
  echo "getcert $code $(jq -r 'has("cer")' "$WORK/par-$n.json" 2>/dev/null)" >>"$WORK/par-$n.log"
  for i in $(seq 10); do
    code=$("${c[@]}" -X PUT --data-binary "{\"value\":\"w$n-$i\"}" "$VAULT/secrets/shared?api-version=$API")
    echo "setshared $code" >>"$WORK/par-$n.log"
    code=$("${c[@]}" "$VAULT/secrets/shared?api-version=$API")
    echo "getshared $code" >>"$WORK/par-$n.log"
    code=$("${c[@]}" "$VAULT/certificates?api-version=$API&includePending=true")
    echo "listcerts $code" >>"$WORK/par-$n.log"
    code=$("${c[@]}" -X PUT --data-binary '{"value":"own"}' "$VAULT/secrets/own$n?api-version=$API")
    echo "setown $code" >>"$WORK/par-$n.log"
    code=$("${c[@]}" -X DELETE "$VAULT/secrets/own$n?api-version=$API")
    echo "delown $code" >>"$WORK/par-$n.log"
    code=$("${c[@]}" -X DELETE "$VAULT/deletedsecrets/own$n?api-version=$API")
    echo "purgeown $code" >>"$WORK/par-$n.log"
  done
}
PAR=6
pids=()
for n in $(seq $PAR); do
  par_worker "$n" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
cat "$WORK"/par-*.log >"$WORK/par.log"
check_eq "parallel creates accepted" "$PAR" "$(grep -c '^create 202$' "$WORK/par.log")"
check_eq "parallel operations completed" "$PAR" "$(grep -c '^pending 200 completed$' "$WORK/par.log")"
check_eq "parallel certificates readable with cer" "$PAR" "$(grep -c '^getcert 200 true$' "$WORK/par.log")"
check_eq "parallel sets of one secret all succeed" $((PAR * 10)) "$(grep -c '^setshared 200$' "$WORK/par.log")"
check_eq "parallel gets all succeed" $((PAR * 10)) "$(grep -c '^getshared 200$' "$WORK/par.log")"
check_eq "parallel listings all succeed" $((PAR * 10)) "$(grep -c '^listcerts 200$' "$WORK/par.log")"
check_eq "parallel set/delete/purge cycles all succeed" $((PAR * 30)) \
  "$(grep -cE '^(setown 200|delown 200|purgeown 204)$' "$WORK/par.log")"
req GET "/secrets/shared/versions?maxresults=25"
n=$(j '.value | length')
NEXT=$(j .nextLink)
while [ "$NEXT" != null ]; do
  curl -sS --max-time 30 --cacert "$EMU_CA" -H @"$WORK/kv-auth.hdr" -o "$WORK/r.json" "$NEXT"
  n=$((n + $(j '.value | length')))
  NEXT=$(j .nextLink)
done
check_eq "the shared secret has one version per set" $((PAR * 10)) "$n"
check "emulator still running" kill -0 "$EMU_PID"

section "stats"
S=$(stats_json)
for op in secrets.set secrets.get secrets.list secrets.versions secrets.update secrets.delete \
  secrets.deleted_get secrets.deleted_list secrets.recover secrets.purge certificates.create \
  certificates.get certificates.list certificates.versions certificates.pending \
  certificates.pending_update certificates.pending_delete certificates.merge certificates.import \
  certificates.policy_get certificates.policy_update certificates.update certificates.delete \
  certificates.deleted_get certificates.deleted_list certificates.recover certificates.purge \
  secrets.backup secrets.restore certificates.backup certificates.restore; do
  check "stats count $op" test "$(jq -r --arg op "$op" '.by_operation[$op] // 0' <<<"$S")" -gt 0
done

if [ -n "${AKV_EMU_WRAPPER:-}" ]; then
  section "clean shutdown under the wrapper"
  kill -TERM "$EMU_PID"
  rc=0
  for i in $(seq 300); do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.2; done
  wait "$EMU_PID" || rc=$?
  EMU_PID=""
  check_eq "emulator exit status under $AKV_EMU_WRAPPER" 0 "$rc"
  [ "$rc" = 0 ] || tail -n 60 "$WORK/emu.log" | sed 's/^/#   emu| /'
  : "${REAL_EMULATOR:=}"
fi

finish
