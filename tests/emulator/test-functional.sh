#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Functional check of akv-emulator: ready file, challenge, token flows (secret, assertion,
# federated, IMDS, App Service), api-version handling, paging, and every signature
# algorithm verified independently with openssl on the public key from GET key.
# Usage: test-functional.sh AKV_EMULATOR
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/emu-test-lib.sh"
EXE=$1

emu_start "$EXE" --vault demo --vault hsm1:mhsm
W=$EMU_WORK

# ---- ready file -------------------------------------------------------------------------
for m in ca_file authority_host tenant_id client_id client_secret client_certificate_file \
         federated_token_file imds_endpoint identity_endpoint identity_header stats_url control_url state_dir \
         attestation_vendor_root; do
  check "ready file has $m" test -n "$(jq -r ".$m // empty" "$READY")"
done
check "ready file lists both vaults" test "$(jq -r '[.vaults[].kind] | join(",")' "$READY")" = "vault,mhsm"
check "ca_file and client certificate exist" test -s "$CA" -a -s "$(jq -r .client_certificate_file "$READY")"
check "vault url is https://localhost:PORT" grep -Eq '^https://localhost:[0-9]+$' <<<"$VAULT"
check "server certificate verifies against ca_file for localhost" \
  curl -sS --max-time 10 --cacert "$CA" -o /dev/null "$AUTH/$TENANT/v2.0/.well-known/openid-configuration"
check "server certificate verifies for 127.0.0.1" \
  curl -sS --max-time 10 --cacert "$CA" -o /dev/null "https://127.0.0.1:${AUTH##*:}/stats"

# ---- challenge ------------------------------------------------------------------------------
NO_AUTH=1 req POST "$VAULT/keys/k/create?api-version=7.6"
www=$(grep -i '^WWW-Authenticate:' "$W/headers" | tr -d '\r')
check "no token: 401 Unauthorized AKV10000" expect_error 401 Unauthorized
check "challenge header names authority/tenant and vault resource" \
  test "$www" = "WWW-Authenticate: Bearer authorization=\"$AUTH/$TENANT\", resource=\"https://vault.azure.net\""
check "401 carries x-ms-request-id and service headers" \
  grep -qi '^x-ms-request-id: [0-9a-f-]\{36\}' "$W/headers"
NO_AUTH=1 req GET "$HSM/keys?api-version=7.6"
www=$(grep -i '^WWW-Authenticate:' "$W/headers" | tr -d '\r')
check "MHSM challenge: 401, empty body, managedhsm resource" \
  test "$status" = 401 -a -z "$body" -a "$www" = "WWW-Authenticate: Bearer authorization=\"$AUTH/$TENANT\", resource=\"https://managedhsm.azure.net\""
TOKEN=garbage.token.value req GET "$VAULT/keys?api-version=7.6"
check "invalid token: 401 challenge" expect_error 401 Unauthorized

# ---- token flows --------------------------------------------------------------------------
tok_req() { # form args...
  status=$(curl -sS --max-time 30 --cacert "$CA" -o "$W/body" -w '%{http_code}' \
    "$AUTH/$TENANT/oauth2/v2.0/token?client-request-id=1234" "$@")
  body=$(cat "$W/body")
}
tok_req --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
  --data-urlencode "client_secret=$CLIENT_SECRET" --data-urlencode scope=https://vault.azure.net/.default
check "client secret: 200 Bearer with numeric expires_in" \
  test "$status" = 200 -a "$(jq -r '.token_type + " " + (.expires_in|type) + " " + (.ext_expires_in|type)' <<<"$body")" = "Bearer number number"
TOKEN=$(jq -r .access_token <<<"$body")
tok_req --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
  --data-urlencode "client_secret=wrong" --data-urlencode scope=https://vault.azure.net/.default
check "wrong secret: 401 invalid_client AADSTS7000215" \
  test "$status" = 401 -a "$(jq -r '.error + " " + (.error_codes[0]|tostring)' <<<"$body")" = "invalid_client 7000215"
tok_req --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
  --data-urlencode "client_secret=$CLIENT_SECRET" --data-urlencode scope=https://storage.azure.com/.default
check "foreign scope: 400 invalid_scope" test "$status" = 400 -a "$(jq -r .error <<<"$body")" = invalid_scope

CERTKEY=$(jq -r .client_certificate_file "$READY")
x5t=$(openssl x509 -in "$CERTKEY" -outform DER | openssl dgst -sha1 -binary | b64url)
x5t256=$(openssl x509 -in "$CERTKEY" -outform DER | openssl dgst -sha256 -binary | b64url)
now=$(date +%s)
# assertion ALG HEADER_EXTRA KEYFILE [AUD] -> JWT
assertion() {
  local alg=$1 hdr=$2 key=$3 aud=${4:-$AUTH/$TENANT/oauth2/v2.0/token} h p sig
  h=$(printf '{"alg":"%s","typ":"JWT",%s}' "$alg" "$hdr" | b64url)
  p=$(printf '{"aud":"%s","iss":"%s","sub":"%s","jti":"%s","nbf":%d,"exp":%d}' "$aud" "$CLIENT_ID" \
    "$CLIENT_ID" "$(cat /proc/sys/kernel/random/uuid)" "$now" $((now + 600)) | b64url)
  if [ "$alg" = PS256 ]; then
    sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$key" -sigopt rsa_padding_mode:pss \
      -sigopt rsa_pss_saltlen:32 | b64url)
  else
    sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$key" | b64url)
  fi
  printf '%s.%s.%s' "$h" "$p" "$sig"
}
assert_req() {
  tok_req --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    --data-urlencode "client_assertion=$1" --data-urlencode "scope=${2:-https://vault.azure.net/.default}"
}
assert_req "$(assertion RS256 "\"x5t\":\"$x5t\"" "$CERTKEY")"
check "certificate assertion RS256 + x5t: 200" test "$status" = 200 -a -n "$(jq -r '.access_token // empty' <<<"$body")"
assert_req "$(assertion PS256 "\"x5t#S256\":\"$x5t256\"" "$CERTKEY")" https://managedhsm.azure.net/.default
check "certificate assertion PS256 + x5t#S256 (managedhsm scope): 200" test "$status" = 200
HSM_TOKEN=$(jq -r .access_token <<<"$body")
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/other.key" 2>/dev/null
assert_req "$(assertion RS256 "\"x5t\":\"$x5t\"" "$W/other.key")"
check "assertion signed by another key: 401 invalid_client" test "$status" = 401 -a "$(jq -r .error <<<"$body")" = invalid_client
assert_req "$(assertion RS256 "\"x5t\":\"$x5t\"" "$CERTKEY" https://login.example.com/token)"
check "assertion with a wrong aud: rejected" test "$status" -ge 400
assert_req "$(cat "$(jq -r .federated_token_file "$READY")")"
check "federated token: 200" test "$status" = 200 -a -n "$(jq -r '.access_token // empty' <<<"$body")"
FED_TOKEN=$(jq -r .access_token <<<"$body")

IMDS=$(jq -r .imds_endpoint "$READY")
status=$(curl -sS --max-time 10 -o "$W/body" -w '%{http_code}' "$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net")
check "IMDS without Metadata header: 400" test "$status" = 400
status=$(curl -sS --max-time 10 -o "$W/body" -w '%{http_code}' -H 'Metadata: true' \
  "$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net")
body=$(cat "$W/body")
check "IMDS: 200 with string expires_in/expires_on" \
  test "$status" = 200 -a "$(jq -r '(.expires_in|type) + (.expires_on|type) + .resource' <<<"$body")" = "stringstringhttps://vault.azure.net"
MI_TOKEN=$(jq -r .access_token <<<"$body")
IDE=$(jq -r .identity_endpoint "$READY")
IDH=$(jq -r .identity_header "$READY")
status=$(curl -sS --max-time 10 -o "$W/body" -w '%{http_code}' -H "X-IDENTITY-HEADER: $IDH" \
  "$IDE?resource=https://vault.azure.net&api-version=2019-08-01")
body=$(cat "$W/body")
check "App Service 2019: 200 with string expires_on" test "$status" = 200 -a "$(jq -r '.expires_on|type' <<<"$body")" = string
status=$(curl -sS --max-time 10 -o "$W/body" -w '%{http_code}' -H "X-IDENTITY-HEADER: nope" \
  "$IDE?resource=https://vault.azure.net&api-version=2019-08-01")
check "App Service with a wrong identity header: rejected" test "$status" -ge 400

for t in TOKEN FED_TOKEN MI_TOKEN; do
  TOKEN=${!t} req GET "$VAULT/keys?api-version=7.6"
  check "vault accepts the $t token" test "$status" = 200
done
TOKEN=$HSM_TOKEN req GET "$VAULT/keys?api-version=7.6"
check "vault rejects a managedhsm-audience token" expect_error 401 Unauthorized
TOKEN=$HSM_TOKEN req GET "$HSM/keys?api-version=7.6"
check "MHSM accepts a managedhsm-audience token" test "$status" = 200

# ---- api-version ----------------------------------------------------------------------------
req GET "$VAULT/keys"
check "missing api-version: 400 BadParameter" expect_error 400 BadParameter
req GET "$VAULT/keys?api-version=7.3"
check "unknown api-version: 400 'not recognized'" \
  sh -c '[ "$0" = 400 ] && printf "%s" "$1" | grep -q "The specified version (7.3) is not recognized"' "$status" "$body"
for v in 7.4 7.5 7.6 2025-07-01 2026-04-01; do
  req GET "$VAULT/keys?api%2Dversion=$v"
  check "api-version $v accepted (name percent-encoded)" test "$status" = 200
done
hdr_ok() { grep -qi "^$1:" "$W/headers"; }
req GET "$VAULT/keys?api-version=7.6"
check "vault response headers" sh -c 'grep -qi "^Content-Type: application/json; charset=utf-8" "$0" &&
  grep -qi "^x-ms-keyvault-service-version:" "$0" && grep -qi "^Cache-Control: no-cache" "$0"' "$W/headers"
status=$(curl -sS --max-time 10 --cacert "$CA" -o /dev/null -D "$W/headers" -w '%{http_code}' \
  -H "Authorization: Bearer $TOKEN" -H 'x-ms-client-request-id: 11111111-2222-3333-4444-555555555555' "$VAULT/keys?api-version=7.6")
check "x-ms-client-request-id echoed" grep -qi '^x-ms-client-request-id: 11111111-2222-3333-4444-555555555555' "$W/headers"

# ---- paging -----------------------------------------------------------------------------------
for i in 1 2 3 4 5 6 7; do
  req POST "$VAULT/keys/page-$i/create?api-version=7.6" '{"kty":"EC"}'
done
url="$VAULT/keys?api-version=7.6&maxresults=3"
pages=0 items=0 ports_ok=1
while [ -n "$url" ] && [ "$url" != null ] && [ $pages -lt 20 ]; do
  req GET "$url"
  [ "$status" = 200 ] || break
  pages=$((pages + 1))
  items=$((items + $(jq '.value | length' <<<"$body")))
  url=$(jq -r '.nextLink' <<<"$body")
  if [ "$url" != null ] && ! grep -Eq '^https://localhost:[0-9]+/keys\?api-version=7\.6&\$skiptoken=[A-Za-z0-9_-]+&maxresults=3$' <<<"$url"; then
    ports_ok=0
  fi
done
check "paging: 3 pages of maxresults=3 over 7 keys, last nextLink null" test "$pages" = 3 -a "$items" = 7 -a "$url" = null
check "nextLink absolute with port, api-version, skiptoken, maxresults" test $ports_ok = 1
req GET "$VAULT/keys?api-version=7.6&maxresults=26"
check "maxresults 26: 400" expect_error 400 BadParameter
req GET "$VAULT/keys?api-version=7.6&\$skiptoken=notatoken"
check "bad skiptoken: 400" expect_error 400 BadParameter
req GET "$VAULT/KEYS/PAGE-1/?api-version=7.6"
check "case-insensitive collection and name, trailing slash = latest" \
  test "$status" = 200 -a "$(jq -r .key.kid <<<"$body" | cut -d/ -f5)" = page-1

# ---- signatures verified with openssl -----------------------------------------------------------
# pubkey_pem KEYBUNDLE_JSON OUT.pem
pubkey_pem() {
  local j=$1 out=$2 kty
  kty=$(jq -r .key.kty <<<"$j")
  if [ "${kty%-HSM}" = RSA ]; then
    printf 'asn1=SEQUENCE:pk\n[pk]\nn=INTEGER:0x%s\ne=INTEGER:0x%s\n' \
      "$(jq -r .key.n <<<"$j" | unb64url | hex)" "$(jq -r .key.e <<<"$j" | unb64url | hex)" >"$W/pk.cnf"
    openssl asn1parse -genconf "$W/pk.cnf" -noout -out "$W/pk.der" &&
      openssl rsa -RSAPublicKey_in -inform DER -in "$W/pk.der" -pubout -out "$out" 2>/dev/null
  else
    local oid
    case $(jq -r .key.crv <<<"$j") in
      P-256) oid=prime256v1 ;; P-384) oid=secp384r1 ;; P-521) oid=secp521r1 ;; P-256K) oid=secp256k1 ;;
    esac
    printf 'asn1=SEQUENCE:spki\n[spki]\nalg=SEQUENCE:alg\npub=FORMAT:HEX,BITSTRING:04%s%s\n[alg]\na=OID:id-ecPublicKey\nc=OID:%s\n' \
      "$(jq -r .key.x <<<"$j" | unb64url | hex)" "$(jq -r .key.y <<<"$j" | unb64url | hex)" "$oid" >"$W/pk.cnf"
    openssl asn1parse -genconf "$W/pk.cnf" -noout -out "$W/pk.der" &&
      openssl pkey -pubin -inform DER -in "$W/pk.der" -out "$out" 2>/dev/null
  fi
}
# rs_to_der SIGFILE FIELD_LEN OUT
rs_to_der() {
  local h r s
  h=$(hex <"$1")
  r=${h:0:$(($2 * 2))}
  s=${h:$(($2 * 2))}
  printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "$r" "$s" >"$W/sig.cnf"
  openssl asn1parse -genconf "$W/sig.cnf" -noout -out "$3"
}
head -c 1000 /dev/urandom >"$W/msg"
sign_check() { # KEYNAME ALG DGST FIELDLEN
  local name=$1 alg=$2 dg=$3 fl=${4:-0} digest sig
  openssl dgst "-$dg" -binary "$W/msg" >"$W/digest"
  digest=$(b64url <"$W/digest")
  if [ "$alg" = RSNULL ]; then
    # RSNULL: caller supplies the DigestInfo (here SHA-256's) as the data
    local dhex
    dhex=$(hex <"$W/digest")
    printf '3031300d060960864801650304020105000420%s' "$dhex" | xxd -r -p >"$W/digest"
    digest=$(b64url <"$W/digest")
  fi
  req POST "$VAULT/keys/$name/sign?api-version=7.6" "{\"alg\":\"$alg\",\"value\":\"$digest\"}"
  [ "$status" = 200 ] || return 1
  sig=$(jq -r .value <<<"$body")
  printf '%s' "$sig" | unb64url >"$W/sig"
  case $alg in
    RSNULL) openssl pkeyutl -verify -pubin -inkey "$W/$name.pem" -in "$W/digest" -sigfile "$W/sig" \
              -pkeyopt rsa_padding_mode:pkcs1 >/dev/null || return 1 ;;
    RS*) openssl pkeyutl -verify -pubin -inkey "$W/$name.pem" -in "$W/digest" -sigfile "$W/sig" \
           -pkeyopt "digest:$dg" -pkeyopt rsa_padding_mode:pkcs1 >/dev/null || return 1 ;;
    PS*) openssl pkeyutl -verify -pubin -inkey "$W/$name.pem" -in "$W/digest" -sigfile "$W/sig" \
           -pkeyopt "digest:$dg" -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:digest >/dev/null || return 1 ;;
    ES*) [ "$(stat -c %s "$W/sig")" = $((2 * fl)) ] || return 1
         rs_to_der "$W/sig" "$fl" "$W/sig.der" || return 1
         openssl pkeyutl -verify -pubin -inkey "$W/$name.pem" -in "$W/digest" -sigfile "$W/sig.der" >/dev/null || return 1 ;;
  esac
  # the emulator's own verify agrees, and rejects a tampered signature
  local d=$digest
  req POST "$VAULT/keys/$name/verify?api-version=7.6" "{\"alg\":\"$alg\",\"digest\":\"$d\",\"value\":\"$sig\"}"
  [ "$status" = 200 ] && [ "$(jq -r .value <<<"$body")" = true ] || return 1
  local bad
  # first byte changed: to ff, or to 00 when it is ff already (else 1 signature in 256 stays valid)
  bad=$(printf '%s' "$sig" | unb64url | hex | sed 's/^ff/00/;t;s/^\(..\)/ff/' | xxd -r -p | b64url)
  req POST "$VAULT/keys/$name/verify?api-version=7.6" "{\"alg\":\"$alg\",\"digest\":\"$d\",\"value\":\"$bad\"}"
  [ "$status" = 200 ] && [ "$(jq -r .value <<<"$body")" = false ]
}
req POST "$VAULT/keys/sig-rsa/create?api-version=7.6" '{"kty":"RSA","key_size":2048}'
pubkey_pem "$body" "$W/sig-rsa.pem"
check "RSA JWK converts to a PEM public key" test -s "$W/sig-rsa.pem"
for a in RS256:sha256 RS384:sha384 RS512:sha512 PS256:sha256 PS384:sha384 PS512:sha512 RSNULL:sha256; do
  check "sign ${a%%:*} verified by openssl" sign_check sig-rsa "${a%%:*}" "${a#*:}"
done
for c in P-256:ES256:sha256:32 P-384:ES384:sha384:48 P-521:ES512:sha512:66 P-256K:ES256K:sha256:32; do
  IFS=: read -r crv alg dg fl <<<"$c"
  req POST "$VAULT/keys/sig-$alg/create?api-version=7.6" "{\"kty\":\"EC\",\"crv\":\"$crv\"}"
  pubkey_pem "$body" "$W/sig-$alg.pem"
  check "sign $alg ($crv, r||s $((2 * fl)) bytes) verified by openssl" sign_check "sig-$alg" "$alg" "$dg" "$fl"
done


req GET "$VAULT/keys/sig-rsa/rotationpolicy?api-version=7.6"
check "rotation policy default: notify 30 days before expiry" \
  test "$status" = 200 -a "$(jq -r '.id + " " + .lifetimeActions[0].trigger.timeBeforeExpiry + " " + .lifetimeActions[0].action.type' <<<"$body")" = "$VAULT/keys/sig-rsa/rotationpolicy P30D Notify"
req PUT "$VAULT/keys/sig-rsa/rotationpolicy?api-version=7.6" '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"rotate"}}],"attributes":{"expiryTime":"P2Y"}}'
check "rotation policy PUT stored and returned" \
  test "$(jq -r '.lifetimeActions[0].trigger.timeAfterCreate + " " + .lifetimeActions[0].action.type + " " + .attributes.expiryTime' <<<"$body")" = "P90D Rotate P2Y"
req PUT "$VAULT/keys/sig-rsa/rotationpolicy?api-version=7.6" '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"90 days"},"action":{"type":"Rotate"}}]}'
check "rotation policy with a bad duration: 400" expect_error 400 BadParameter
# ---- backup / restore ---------------------------------------------------------------------------
req POST "$VAULT/keys/sig-rsa/rotate?api-version=7.6"
rot_kid=$(jq -r .key.kid <<<"$body")
check "rotate: new version, same type and size" \
  test "$status" = 200 -a "$(jq -r '.key.kty + " " + (.key.n | length | tostring)' <<<"$body")" = "RSA 342"
req POST "$VAULT/keys/sig-rsa/backup?api-version=7.6"
blob=$(jq -r .value <<<"$body")
check "backup: opaque base64url blob" test "$status" = 200 -a ${#blob} -gt 100
req DELETE "$VAULT/keys/sig-rsa?api-version=7.6"
req DELETE "$VAULT/deletedkeys/sig-rsa?api-version=7.6"
req POST "$VAULT/keys/restore?api-version=7.6" "{\"value\":\"$blob\"}"
check "restore after purge: latest version back with the same kid" test "$status" = 200 -a "$(jq -r .key.kid <<<"$body")" = "$rot_kid"
req GET "$VAULT/keys/sig-rsa/versions?api-version=7.6"
check "restore brings back both versions" test "$(jq '.value | length' <<<"$body")" = 2
req GET "$VAULT/keys/sig-rsa?api-version=7.6"
pubkey_pem "$body" "$W/sig-rsa.pem"
check "restored key signs (RS256 verified by openssl)" sign_check sig-rsa RS256 sha256
req POST "$VAULT/keys/restore?api-version=7.6" "{\"value\":\"$blob\"}"
check "restore over an existing name: 409" expect_error 409 Conflict
req POST "$VAULT/keys/restore?api-version=7.6" '{"value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}'
check "restore of a forged blob: 400" expect_error 400 BadParameter

# RSA encryption: openssl encrypts with the public key, the emulator decrypts
printf 'secret data for rsa' >"$W/pt"
for a in RSA1_5:pkcs1:sha1 RSA-OAEP:oaep:sha1 RSA-OAEP-256:oaep:sha256; do
  IFS=: read -r alg pad md <<<"$a"
  opts=(-pkeyopt "rsa_padding_mode:$pad")
  [ "$pad" = oaep ] && opts+=(-pkeyopt "rsa_oaep_md:$md" -pkeyopt "rsa_mgf1_md:$md")
  openssl pkeyutl -encrypt -pubin -inkey "$W/sig-rsa.pem" -in "$W/pt" -out "$W/ct" "${opts[@]}"
  req POST "$VAULT/keys/sig-rsa/decrypt?api-version=7.6" "{\"alg\":\"$alg\",\"value\":\"$(b64url <"$W/ct")\"}"
  check "$alg: openssl encrypt, emulator decrypt" test "$status" = 200 -a "$(jq -r .value <<<"$body" | unb64url)" = "secret data for rsa"
  req POST "$VAULT/keys/sig-rsa/wrapkey?api-version=7.6" "{\"alg\":\"$alg\",\"value\":\"$(b64url <"$W/pt")\"}"
  w=$(jq -r .value <<<"$body")
  req POST "$VAULT/keys/sig-rsa/unwrapkey?api-version=7.6" "{\"alg\":\"$alg\",\"value\":\"$w\"}"
  check "$alg: wrapkey/unwrapkey round trip" test "$status" = 200 -a "$(jq -r .value <<<"$body" | unb64url)" = "secret data for rsa"
done

# ---- Managed HSM AES with known keys (RFC 3394 / RFC 5649 vectors, openssl for CBC) -------------
TOKEN=$HSM_TOKEN
k128=$(printf '000102030405060708090A0B0C0D0E0F' | xxd -r -p | b64url)
req PUT "$HSM/keys/aes128?api-version=7.6" "{\"key\":{\"kty\":\"oct-HSM\",\"k\":\"$k128\",\"key_ops\":[\"encrypt\",\"decrypt\",\"wrapKey\",\"unwrapKey\"]}}"
check "import oct-HSM key: kty oct-HSM, no k returned" test "$status" = 200 -a "$(jq -r '.key.kty + (.key.k // "none")' <<<"$body")" = oct-HSMnone
v=$(printf '00112233445566778899AABBCCDDEEFF' | xxd -r -p | b64url)
req POST "$HSM/keys/aes128/wrapkey?api-version=7.6" "{\"alg\":\"A128KW\",\"value\":\"$v\"}"
check "A128KW matches the RFC 3394 vector" test "$(jq -r .value <<<"$body" | unb64url | hex)" = 1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5
req POST "$HSM/keys/aes128/unwrapkey?api-version=7.6" "{\"alg\":\"CKM_AES_KEY_WRAP\",\"value\":\"$(jq -r .value <<<"$body")\"}"
check "CKM_AES_KEY_WRAP unwraps it" test "$(jq -r .value <<<"$body")" = "$v"
k192=$(printf '5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8' | xxd -r -p | b64url)
req PUT "$HSM/keys/aes192?api-version=7.6" "{\"key\":{\"kty\":\"oct\",\"k\":\"$k192\",\"key_ops\":[\"wrapKey\",\"unwrapKey\"]}}"
v=$(printf 'c37b7e6492584340bed12207808941155068f738' | xxd -r -p | b64url)
req POST "$HSM/keys/aes192/wrapkey?api-version=7.6" "{\"alg\":\"CKM_AES_KEY_WRAP_PAD\",\"value\":\"$v\"}"
check "CKM_AES_KEY_WRAP_PAD matches the RFC 5649 vector" test "$(jq -r .value <<<"$body" | unb64url | hex)" = 138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a
k256hex=603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
k256=$(printf '%s' $k256hex | xxd -r -p | b64url)
req PUT "$HSM/keys/aes256?api-version=7.6" "{\"key\":{\"kty\":\"oct-HSM\",\"k\":\"$k256\"}}"
ivhex=000102030405060708090a0b0c0d0e0f
iv=$(printf '%s' $ivhex | xxd -r -p | b64url)
head -c 200 /dev/urandom >"$W/pt"
req POST "$HSM/keys/aes256/encrypt?api-version=7.6" "{\"alg\":\"A256CBCPAD\",\"value\":\"$(b64url <"$W/pt")\",\"iv\":\"$iv\"}"
jq -r .value <<<"$body" | unb64url >"$W/ct"
check "A256CBCPAD equals openssl aes-256-cbc (PKCS#7), 208 bytes, alg echoed" \
  sh -c 'cmp -s "$0" "$1" && [ "$(stat -c %s "$1")" = 208 ] && [ "$2" = A256CBCPAD ]' \
  <(openssl enc -aes-256-cbc -K $k256hex -iv $ivhex -in "$W/pt") "$W/ct" "$(jq -r .alg <<<"$body")"
req POST "$HSM/keys/aes256/encrypt?api-version=7.6" "{\"alg\":\"A256CBC\",\"value\":\"$(b64url <"$W/pt")\",\"iv\":\"$iv\"}"
jq -r .value <<<"$body" | unb64url >"$W/ct"
check "A256CBC zero-pads to 208 bytes (= openssl -nopad on zero-padded input)" \
  sh -c 'cmp -s "$0" "$1"' <( (cat "$W/pt"; head -c 8 /dev/zero) | openssl enc -aes-256-cbc -nopad -K $k256hex -iv $ivhex) "$W/ct"
aad=$(printf 'header' | b64url)
req POST "$HSM/keys/aes256/encrypt?api-version=7.6" "{\"alg\":\"A256GCM\",\"value\":\"$(b64url <"$W/pt")\",\"aad\":\"$aad\"}"
check "A256GCM: 12-byte server iv, 16-byte tag, aad echoed" \
  test "$(jq -r .iv <<<"$body" | unb64url | wc -c)/$(jq -r .tag <<<"$body" | unb64url | wc -c)/$(jq -r .aad <<<"$body")" = "12/16/$aad"
gcm=$body
req POST "$HSM/keys/aes256/decrypt?api-version=7.6" "$(jq -c '{alg, value, iv, tag, aad}' <<<"$gcm")"
check "A256GCM decrypt round trip" test "$(jq -r .value <<<"$body")" = "$(b64url <"$W/pt")"
req POST "$HSM/keys/aes256/decrypt?api-version=7.6" "$(jq -c '{alg, value, iv, tag, aad: "eA"}' <<<"$gcm")"
check "A256GCM decrypt with wrong aad: 400" expect_error 400 BadParameter
req POST "$HSM/rng?api-version=7.6" '{"count":64}'
check "MHSM rng returns 64 bytes" test "$(jq -r .value <<<"$body" | unb64url | wc -c)" = 64
req POST "$HSM/keys/hm/create?api-version=7.6" '{"kty":"oct","key_size":256,"key_ops":["sign","verify"]}'
check "MHSM create oct -> oct-HSM, attributes without hsmPlatform" \
  test "$(jq -r '.key.kty + " " + (.attributes.hsmPlatform // "none")' <<<"$body")" = "oct-HSM none"
req POST "$HSM/keys/hm/sign?api-version=7.6" "{\"alg\":\"HS256\",\"value\":\"$(b64url <"$W/msg")\"}"
hs=$(jq -r .value <<<"$body")
req POST "$HSM/keys/hm/verify?api-version=7.6" "{\"alg\":\"HS256\",\"digest\":\"$(b64url <"$W/msg")\",\"value\":\"$hs\"}"
check "HS256 sign/verify on oct-HSM" test "$(jq -r .value <<<"$body")" = true

# ---- Managed HSM key attestation (GET /keys/{n}/{v}/attestation), format MRVL-1 -----------------
VROOT=$(jq -r .attestation_vendor_root "$READY")
check "the vendor root (ready file): a self-signed RSA-2048 certificate" \
  bash -c 'openssl verify -CAfile "$0" "$0" >/dev/null && openssl x509 -in "$0" -noout -text | grep -q "Public-Key: (2048 bit)"' "$VROOT"
# attest_files BUNDLE_JSON PREFIX: PREFIX.pem (certificatePemFile), PREFIX-0.pem.. (one per
# certificate: card, vendor partition, Microsoft root, Microsoft partition), PREFIX.priv /
# PREFIX.pub (the blobs)
attest_files() {
  local a
  a=$(jq -c .attributes.attestation <<<"$1")
  jq -r .certificatePemFile <<<"$a" | unb64url >"$2.pem"
  jq -r .privateKeyAttestation <<<"$a" | unb64url >"$2.priv"
  jq -r '.publicKeyAttestation // empty' <<<"$a" | unb64url >"$2.pub"
  rm -f "$2"-[0-9].pem
  awk -v p="$2" '/-----BEGIN/{f=sprintf("%s-%d.pem", p, n++)} f{print >f} /-----END/{f=""}' "$2.pem"
}
# blob_split BLOB: BLOB.data (all but the last 256 bytes) and BLOB.sig (the partition key's
# RSA-2048 signature); the header says result code 0, flags 3, the total size, the data size.
blob_split() {
  local size
  size=$(stat -c %s "$1")
  head -c -256 "$1" >"$1.data"
  tail -c 256 "$1" >"$1.sig"
  [ "$(head -c 16 "$1" | hex)" = "$(printf '00000000%08x%08x%08x' 3 "$size" $((size - 272)))" ]
}
# blob_attr BLOB TYPE: the hex value of attribute TYPE (hex, e.g. 0102) of the first key object.
blob_attr() {
  local h off n i t l
  h=$(hex <"$1")
  off=$((16 + 0x${h:40:4}))            # attribute data at 16; the object's offset at +4
  n=$((0x${h:$((off * 2 + 8)):8}))     # handle, count, size
  off=$((off + 12))
  for ((i = 0; i < n; i++)); do
    t=${h:$((off * 2)):8}
    l=$((0x${h:$((off * 2 + 8)):8}))
    if [ "$t" = "0000$2" ]; then
      echo "${h:$((off * 2 + 16)):$((l * 2))}"
      return 0
    fi
    off=$((off + 8 + l))
  done
  return 1
}
export -f blob_split blob_attr hex
TOKEN=$HSM_TOKEN
req POST "$HSM/keys/att-rsa/create?api-version=7.6" '{"kty":"RSA-HSM","key_size":2048}'
rsa_bundle=$body
rsa_kid=$(jq -r .key.kid <<<"$rsa_bundle")
pubkey_pem "$rsa_bundle" "$W/att-rsa.key.pem"
ver=$(cut -d/ -f6 <<<"$rsa_kid")
req GET "$HSM/keys/att-rsa/$ver/attestation?api-version=7.6"
att_rsa_first=$body
check "attestation (7.6): 200, the key's bundle, attributes.attestation version MRVL-1" \
  test "$status/$(jq -r '.key.kid + " " + .attributes.attestation.version' <<<"$body")" = "200/$rsa_kid MRVL-1"
check "attestation members are base64url strings (no padding, no +/)" \
  bash -c '! jq -r ".attributes.attestation | .certificatePemFile, .privateKeyAttestation, .publicKeyAttestation" <<<"$0" | grep -q "[^A-Za-z0-9_-]"' "$body"
attest_files "$body" "$W/att-rsa"
check "certificatePemFile: 4 PEM certificates (card, vendor partition, Microsoft root and partition)" \
  test "$(grep -c 'BEGIN CERTIFICATE' "$W/att-rsa.pem")" = 4
check "openssl verify: vendor partition -> HSM card -> the vendor root (not in the reply)" \
  bash -c 'openssl verify -x509_strict -CAfile "$1" -untrusted "$0-0.pem" "$0-1.pem" >/dev/null &&
         ! grep -qF "$(sed -n 2p "$1")" "$0.pem"' "$W/att-rsa" "$VROOT"
check "openssl verify: Microsoft partition -> Microsoft's self-signed root" \
  bash -c 'openssl verify -x509_strict -CAfile "$0-2.pem" "$0-3.pem" >/dev/null &&
         openssl verify -CAfile "$0-2.pem" "$0-2.pem" >/dev/null' "$W/att-rsa"
openssl x509 -in "$W/att-rsa-1.pem" -noout -pubkey >"$W/att-part.pem"
check "both partition certificates certify the same RSA-2048 key" \
  bash -c 'cmp -s "$0" <(openssl x509 -in "$1" -noout -pubkey) && openssl pkey -pubin -in "$0" -noout -text | grep -q "(2048 bit)"' \
  "$W/att-part.pem" "$W/att-rsa-3.pem"
check "private key attestation: MRVL-1 header, signed by the partition key" \
  bash -c 'blob_split "$0" && openssl dgst -sha256 -verify "$1" -signature "$0.sig" "$0.data" >/dev/null' \
  "$W/att-rsa.priv" "$W/att-part.pem"
check "public key attestation: MRVL-1 header, signed by the partition key" \
  bash -c 'blob_split "$0" && openssl dgst -sha256 -verify "$1" -signature "$0.sig" "$0.data" >/dev/null' \
  "$W/att-rsa.pub" "$W/att-part.pem"
modulus=$(openssl rsa -pubin -in "$W/att-rsa.key.pem" -noout -modulus | sed 's/^Modulus=//' | tr A-F a-f)
kid_hex=$(printf '%s' "$rsa_kid" | hex)00
attrs_of() { # BLOB: class key_type id modulus exponent bits sensitive extractable never_extractable
  local a r=
  for a in 0000 0100 0102 0120 0122 0121 0103 0162 0164; do r="$r $(blob_attr "$1" $a || echo -)"; done
  echo "${r# }"
}
check "private blob: CKO_PRIVATE_KEY, CKK_RSA, CKA_ID the kid, the key's n/e, 2048 bits, sensitive, never extractable" \
  test "$(attrs_of "$W/att-rsa.priv")" = "03 00 $kid_hex $modulus 010001 00000800 01 00 01"
check "public blob: CKO_PUBLIC_KEY, the same key and CKA_ID, CKA_VERIFY" \
  test "$(attrs_of "$W/att-rsa.pub") $(blob_attr "$W/att-rsa.pub" 010a)" = "02 00 $kid_hex $modulus 010001 00000800 - - - 01"
req GET "$HSM/keys/att-rsa/attestation?api-version=2025-07-01"
check "attestation without a version (2025-07-01): the latest version" \
  test "$status/$(jq -r .key.kid <<<"$body" | cut -d/ -f6)" = "200/$ver"
check "a key version keeps its attestation (the same certificates and blobs again)" \
  test "$(jq -c .attributes.attestation <<<"$body")" = "$(jq -c .attributes.attestation <<<"$att_rsa_first")"
# SDKs generated from the path keys/{key-name}/{key-version}/attestation send an empty version.
req GET "$HSM/keys/att-rsa//attestation?api-version=2025-07-01"
check "attestation at keys/{n}//attestation (the SDKs' path without a version): the latest version's" \
  test "$status/$(jq -r .key.kid <<<"$body" | cut -d/ -f6)/$(jq -c .attributes.attestation <<<"$body")" = \
  "200/$ver/$(jq -c .attributes.attestation <<<"$att_rsa_first")"
req GET "$HSM/keys/att-none//attestation?api-version=7.6"
check "keys/{absent}//attestation: 404 KeyNotFound" expect_error 404 KeyNotFound
req GET "$HSM/keys/att-rsa//?api-version=7.6"
check "an empty version anywhere else (keys/{n}//): 400 BadParameter, as before" expect_error 400 BadParameter
req POST "$HSM/keys/att-rsa//sign?api-version=7.6" '{"alg":"RS256","value":"AAAA"}'
check "keys/{n}//sign: 400 BadParameter" expect_error 400 BadParameter
req POST "$HSM/keys/att-ec/create?api-version=7.6" '{"kty":"EC-HSM","crv":"P-384"}'
pubkey_pem "$body" "$W/att-ec.key.pem"
req GET "$HSM/keys/att-ec/attestation?api-version=7.6"
attest_files "$body" "$W/att-ec"
point=$(openssl pkey -pubin -in "$W/att-ec.key.pem" -outform DER | tail -c 97 | hex)
check "EC key: the same certificates as the RSA key's, a signed blob with the key's point (CKA_VALUE_LEN 97)" \
  bash -c 'cmp -s "$0.pem" "$1.pem" && blob_split "$0.pub" &&
         openssl dgst -sha256 -verify "$2" -signature "$0.pub.sig" "$0.pub.data" >/dev/null &&
         [ "$(blob_attr "$0.pub" 0100) $(blob_attr "$0.pub" 0120) $(blob_attr "$0.pub" 0161)" = "03 $3 00000061" ]' \
  "$W/att-ec" "$W/att-rsa" "$W/att-part.pem" "$point"
req GET "$HSM/keys/aes256/attestation?api-version=7.6"
attest_files "$body" "$W/att-aes"
check "oct-HSM key: the same certificates, no publicKeyAttestation, a signed CKO_SECRET_KEY blob" \
  bash -c 'cmp -s "$0.pem" "$1.pem" && [ ! -s "$0.pub" ] && blob_split "$0.priv" &&
         openssl dgst -sha256 -verify "$2" -signature "$0.priv.sig" "$0.priv.data" >/dev/null &&
         [ "$(blob_attr "$0.priv" 0000) $(blob_attr "$0.priv" 0100)" = "04 1f" ]' \
  "$W/att-aes" "$W/att-rsa" "$W/att-part.pem"
req GET "$HSM/keys/att-rsa/$ver/attestation?api-version=7.5"
check "attestation with api-version 7.5: 400 BadParameter" expect_error 400 BadParameter
req GET "$HSM/keys/att-none/attestation?api-version=7.6"
check "attestation of an absent key: 404 KeyNotFound" expect_error 404 KeyNotFound
req POST "$HSM/keys/att-rsa/$ver/attestation?api-version=7.6"
check "POST attestation: 405" test "$status" = 405
TOKEN=$(token https://vault.azure.net/.default) req GET "$VAULT/keys/sig-rsa/attestation?api-version=7.6"
check "attestation on a Key Vault: 400 BadParameter" expect_error 400 BadParameter
for t in chain blob key; do
  NO_AUTH=1 req POST "$CONTROL/config" "{\"attestation_tamper\":\"$t\"}"
  req GET "$HSM/keys/att-rsa/attestation?api-version=7.6"
  attest_files "$body" "$W/att-t"
  case $t in
    chain) check "tamper chain: the vendor partition certificate no longer verifies, Microsoft's does" \
             bash -c '! openssl verify -CAfile "$1" -untrusted "$0-0.pem" "$0-1.pem" >/dev/null 2>&1 &&
                    openssl verify -CAfile "$0-2.pem" "$0-3.pem" >/dev/null' "$W/att-t" "$VROOT" ;;
    blob) check "tamper blob: the chain verifies, the blob signature does not" \
            bash -c 'openssl verify -CAfile "$2" -untrusted "$0-0.pem" "$0-1.pem" >/dev/null && blob_split "$0.priv" &&
                   ! openssl dgst -sha256 -verify "$1" -signature "$0.priv.sig" "$0.priv.data" >/dev/null 2>&1' \
            "$W/att-t" "$W/att-part.pem" "$VROOT" ;;
    key) check "tamper key: a well-signed blob of another public key" \
           bash -c 'blob_split "$0.priv" && openssl dgst -sha256 -verify "$1" -signature "$0.priv.sig" "$0.priv.data" >/dev/null &&
                  [ "$(blob_attr "$0.priv" 0120)" != "$2" ] && [ "$(blob_attr "$0.priv" 0100)" = 03 ]' \
           "$W/att-t" "$W/att-part.pem" "$modulus" ;;
  esac
done
NO_AUTH=1 req POST "$CONTROL/config" '{"attestation_tamper":"sideways"}'
check "control: unknown attestation_tamper value: 400" test "$status" = 400
NO_AUTH=1 req POST "$CONTROL/config" '{"attestation_tamper":"none"}'
check "control: attestation_tamper back to none" test "$status/$(jq -r .attestation_tamper <<<"$body")" = 200/none
req GET "$HSM/keys/att-rsa/attestation?api-version=7.6"
check "after tampering: the kept attestation again" \
  test "$(jq -c .attributes.attestation <<<"$body")" = "$(jq -c .attributes.attestation <<<"$att_rsa_first")"

# ---- stats --------------------------------------------------------------------------------------
s=$(curl -sS --max-time 10 --cacert "$CA" "$STATS")
check "stats count keys.sign, token, unauthorized, imds" \
  test "$(jq -r '[.by_operation["keys.sign"] > 0, .by_operation.token > 0, .by_operation.unauthorized > 0, .by_operation.imds > 0, .requests_total > 0] | all' <<<"$s")" = true
curl -sS --max-time 10 --cacert "$CA" -X POST "$CONTROL/stats/reset" -o /dev/null
s=$(curl -sS --max-time 10 --cacert "$CA" "$STATS")
check "stats reset" test "$(jq -r .requests_total <<<"$s")" = 0

emu_stop
check "SIGTERM: clean exit 0" test $? = 0

# ---- second instance: --seed, --port-base, --tenant-id -----------------------------------------
cat >"$W/seed.json" <<'EOF'
{"keys": [{"name": "seed-rsa", "kty": "RSA", "key_size": 3072, "tags": {"team": "a"}},
          {"vault": "seedhsm", "name": "seed-aes", "kty": "oct-HSM", "key_size": 128},
          {"vault": "seedvault", "name": "seed-ec", "kty": "EC", "crv": "P-384", "key_ops": ["sign"]}]}
EOF
started=0
for attempt in 1 2 3; do
  base=$((20000 + RANDOM % 40000))
  rm -f "$W/ready.json"
  "$EXE" --ready-file "$W/ready.json" --state "$W/state2" --port-base $base --vault seedvault \
    --vault seedhsm:mhsm --seed "$W/seed.json" --tenant-id my-tenant-1 >"$W/emu2.log" 2>&1 &
  EMU_PID=$!
  for i in $(seq 1 100); do
    if [ -s "$W/ready.json" ] || ! kill -0 $EMU_PID 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -s "$W/ready.json" ]; then started=1; break; fi
  wait $EMU_PID 2>/dev/null
done
check "second instance starts with --port-base/--seed/--tenant-id" test $started = 1
if [ $started = 1 ]; then
  check "--port-base: authority N, identity N+1, vaults N+2.." test "$(jq -r '[.authority_host, .imds_endpoint, .vaults[0].url, .vaults[1].url] | join(" ")' "$W/ready.json")" = \
    "https://localhost:$base http://127.0.0.1:$((base + 1)) https://localhost:$((base + 2)) https://localhost:$((base + 3))"
  check "--tenant-id used" test "$(jq -r .tenant_id "$W/ready.json")" = my-tenant-1
  check "stdout names the listeners" grep -q "vault seedvault at https://localhost:$((base + 2))" "$W/emu2.log"
  CA=$(jq -r .ca_file "$W/ready.json"); AUTH=$(jq -r .authority_host "$W/ready.json"); TENANT=my-tenant-1
  CLIENT_ID=$(jq -r .client_id "$W/ready.json"); CLIENT_SECRET=$(jq -r .client_secret "$W/ready.json")
  TOKEN=$(token https://vault.azure.net/.default)
  req GET "https://localhost:$((base + 2))/keys/seed-rsa?api-version=7.6"
  check "seeded RSA 3072 key with tags in the first vault" \
    test "$(jq -r '(.key.n | length | tostring) + " " + .tags.team' <<<"$body")" = "512 a"
  req GET "https://localhost:$((base + 2))/keys/seed-ec?api-version=7.6"
  check "seeded EC P-384 key with key_ops" test "$(jq -r '.key.crv + " " + (.key.key_ops | join(","))' <<<"$body")" = "P-384 sign"
  TOKEN=$(token https://managedhsm.azure.net/.default)
  req GET "https://localhost:$((base + 3))/keys/seed-aes?api-version=7.6"
  check "seeded oct-HSM key in the managed HSM" test "$(jq -r .key.kty <<<"$body")" = oct-HSM
  emu_stop
  check "second instance: clean exit" test $? = 0
fi
echo '{"keys":[{"name":"bad","kty":"RSA","key_size":1}]}' >"$W/badseed.json"
"$EXE" --ready-file "$W/ready3.json" --state "$W/state3" --seed "$W/badseed.json" >"$W/emu3.log" 2>&1
rc=$?
check "invalid seed entry: exit 2, message, no ready file" \
  sh -c '[ "$0" = 2 ] && [ ! -e "$1" ] && grep -q "seed: key bad" "$2"' $rc "$W/ready3.json" "$W/emu3.log"
"$EXE" --ready-file "$W/ready4.json" --vault x >/dev/null 2>&1
check "bad --vault name: exit 2" test $? = 2
"$EXE" --ready-file "$W/ready4.json" --faults 'nonsense' >/dev/null 2>&1
check "bad --faults: exit 2" test $? = 2
finish
