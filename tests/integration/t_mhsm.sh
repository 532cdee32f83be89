#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Managed HSM: a slot of kind "mhsm" (model "Managed HSM", CKF_RNG); AES-CBC and
# AES-CBC-PAD encryption/decryption with imported oct-HSM keys checked against `openssl enc` with
# the same key bytes; AES-GCM and AES key wrap (p11_aes_check, checked with OpenSSL's EVP);
# SHA256/384/512-HMAC checked against `openssl dgst -mac HMAC`;
# C_GenerateRandom from the HSM's RNG (one `rng` request); RSA-HSM and EC-HSM signatures verified
# by openssl.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault hsm1:mhsm
export KV_SCOPE=$KV_SCOPE_MHSM

# import_oct NAME KEYFILE OPS_JSON: an oct-HSM key with known bytes (MHSM import).
import_oct() {
  kv_call PUT "/keys/$1" "$(jq -cn --arg k "$(b64url_of "$2")" --argjson ops "$3" \
    '{key:{kty:"oct-HSM",k:$k,key_ops:$ops}}')" >/dev/null
}
head -c 32 /dev/urandom >"$WORK/aes256.key"
head -c 16 /dev/urandom >"$WORK/aes128.key"
import_oct aes256 "$WORK/aes256.key" '["encrypt","decrypt","wrapKey","unwrapKey"]' || fail "importing aes256"
import_oct aes128 "$WORK/aes128.key" '["encrypt","decrypt","wrapKey","unwrapKey"]' || fail "importing aes128"
import_oct hmac "$WORK/aes256.key" '["sign","verify"]' || fail "importing hmac"
kv_call POST /keys/rsa-hsm/create '{"kty":"RSA-HSM","key_size":2048}' >/dev/null || fail "creating rsa-hsm"
kv_call POST /keys/ec-hsm/create '{"kty":"EC-HSM","crv":"P-384"}' >/dev/null || fail "creating ec-hsm"

module_config "$WORK/module.json" '{"kind":"mhsm","objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/module.json"

section "the slot is a Managed HSM"
check "pkcs11-tool -L" p11tool_m -L
check_grep "model Managed HSM" "token model +: Managed HSM\$" "$WORK/check.out"
check_grep "CKF_RNG" "token flags +:.*\\brng\\b" "$WORK/check.out"
check "pkcs11-tool -M" p11tool_m -M
for m in AES-CBC AES-CBC-PAD AES-GCM AES-KEY-WRAP SHA256-HMAC SHA384-HMAC SHA512-HMAC; do
  check_grep "-M lists $m" "^ +$m," "$WORK/check.out"
done
check "pkcs11-tool -O" p11tool_m -O
obj_table "$WORK/check.out" >"$WORK/O.table"
cat "$WORK/O.table"
declare -A ID
for k in aes256 aes128 hmac; do
  ID[$k]=$(grep "^secret|$k|" "$WORK/O.table" | cut -d'|' -f3)
  check "$k is a secret key object with a CKA_ID" test -n "${ID[$k]}"
done
check_grep "rsa-hsm is a key pair" "^priv\\|rsa-hsm\\|$(kv_key_id rsa-hsm)\$" "$WORK/O.table"
check_grep "ec-hsm is a key pair" "^priv\\|ec-hsm\\|$(kv_key_id ec-hsm)\$" "$WORK/O.table"

section "AES through the HSM, checked with openssl enc and the same key bytes"
printf 'Managed HSM AES test vector, not a multiple of 16\n' >"$WORK/pt"
head -c 64 /dev/urandom >"$WORK/pt64"
iv=$(head -c 16 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
for k in aes256 aes128; do
  bits=$((8 * $(wc -c <"$WORK/$k.key")))
  keyhex=$(hex_of "$WORK/$k.key")
  check "$k AES-CBC-PAD encrypt" p11tool_m --encrypt -m AES-CBC-PAD --id "${ID[$k]}" --iv "$iv" \
    -i "$WORK/pt" -o "$WORK/$k.ct"
  check "$k AES-CBC-PAD ciphertext decrypts with openssl enc -aes-$bits-cbc" \
    bash -c 'openssl enc -d -aes-'"$bits"'-cbc -K "$1" -iv "$2" -in "$3" | cmp - "$4"' _ "$keyhex" "$iv" \
    "$WORK/$k.ct" "$WORK/pt"
  openssl enc -aes-"$bits"-cbc -K "$keyhex" -iv "$iv" -in "$WORK/pt" -out "$WORK/$k.ossl.ct"
  check "$k AES-CBC-PAD decrypt of openssl's ciphertext" p11tool_m --decrypt -m AES-CBC-PAD \
    --id "${ID[$k]}" --iv "$iv" -i "$WORK/$k.ossl.ct" -o "$WORK/$k.pt"
  check_same_file "$k AES-CBC-PAD decrypt gives the plaintext" "$WORK/pt" "$WORK/$k.pt"
  check "$k AES-CBC (no padding) encrypt of 64 bytes" p11tool_m --encrypt -m AES-CBC --id "${ID[$k]}" \
    --iv "$iv" -i "$WORK/pt64" -o "$WORK/$k.ct64"
  check "$k AES-CBC ciphertext equals openssl's (-nopad)" \
    bash -c 'openssl enc -aes-'"$bits"'-cbc -nopad -K "$1" -iv "$2" -in "$3" | cmp - "$4"' _ "$keyhex" "$iv" \
    "$WORK/pt64" "$WORK/$k.ct64"
done

section "AES-GCM and AES key wrap (RFC 3394/5649) through the HSM, checked with OpenSSL (p11_aes_check)"
if [ -x "${P11_AES_CHECK:-}" ]; then
  for k in aes256 aes128; do
    rc=0
    timeout 60 "$P11_AES_CHECK" "$AKV_MODULE" "$k" "$WORK/$k.key" >"$WORK/aes-$k.out" 2>"$WORK/aes-$k.err" || rc=$?
    sed 's/^/#   /' "$WORK/aes-$k.out"
    sed 's/^/#   stderr| /' "$WORK/aes-$k.err" | tail -n 10
    T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/aes-$k.out" || true)))
    check_eq "p11_aes_check $k passed all its checks" 0 "$rc"
  done
else
  check "P11_AES_CHECK (the built p11_aes_check) is set" false
fi

section "HMAC through the HSM, checked with openssl dgst -mac HMAC"
keyhex=$(hex_of "$WORK/aes256.key")
for h in sha256 sha384 sha512; do
  H=${h^^}
  check "$H-HMAC sign" p11tool_m --sign -m "$H-HMAC" --id "${ID[hmac]}" -i "$WORK/pt" -o "$WORK/mac.$h"
  check "$H-HMAC equals openssl's" bash -c 'openssl dgst -'"$h"' -mac HMAC -macopt hexkey:"$1" -binary "$2" | cmp - "$3"' \
    _ "$keyhex" "$WORK/pt" "$WORK/mac.$h"
done

section "C_GenerateRandom from the HSM"
stats_reset
check "pkcs11-tool --generate-random 64" p11tool_m --generate-random 64 -o "$WORK/rnd1"
check_eq "64 random bytes" 64 "$(wc -c <"$WORK/rnd1")"
check_eq "exactly one rng request to the HSM (ops: $(stats_ops))" 1 "$(stats_get rng)"
p11tool_m --generate-random 64 -o "$WORK/rnd2" >/dev/null 2>&1 || true
check "two calls give different bytes" bash -c '! cmp -s "$1" "$2"' _ "$WORK/rnd1" "$WORK/rnd2"

section "RSA-HSM and EC-HSM signatures, verified by openssl"
printf 'signed inside a Managed HSM\n' >"$WORK/data"
rid=$(kv_key_id rsa-hsm)
eid=$(kv_key_id ec-hsm)
kv_key_pem rsa-hsm "$WORK/rsa.pem" || fail "public key"
kv_key_pem ec-hsm "$WORK/ec.pem" || fail "public key"
check "rsa-hsm SHA256-RSA-PKCS-PSS sign" p11tool_m --sign -m SHA256-RSA-PKCS-PSS --mgf MGF1-SHA256 \
  --salt-len 32 --id "$rid" -i "$WORK/data" -o "$WORK/rsa.sig"
check "... verifies" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/data"
check "ec-hsm ECDSA-SHA384 sign" p11tool_m --sign -m ECDSA-SHA384 --signature-format openssl --id "$eid" \
  -i "$WORK/data" -o "$WORK/ec.sig"
check "... verifies" openssl dgst -sha384 -verify "$WORK/ec.pem" -signature "$WORK/ec.sig" "$WORK/data"

finish
