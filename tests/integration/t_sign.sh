#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pkcs11-tool --sign with every signature mechanism and every key type/size, each
# signature verified independently by openssl with the public key pkcs11-tool exports.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault sign1
for k in "${STD_RSA_KEYS[@]}"; do kv_create_rsa "$k" "${STD_KEY_ARG[$k]}" || fail "seeding $k"; done
for k in "${STD_EC_KEYS[@]}"; do kv_create_ec "$k" "${STD_KEY_ARG[$k]}" || fail "seeding $k"; done
export AKV_PKCS11_OBJECTS=keys

printf 'The quick brown fox signs with a vault key.\n%s\n' "$(date)" >"$WORK/data"
for h in sha1 sha256 sha384 sha512; do
  openssl dgst -"$h" -binary "$WORK/data" >"$WORK/data.$h"
  hex2bin "${DIGESTINFO_PREFIX[$h]}$(hex_of "$WORK/data.$h")" "$WORK/data.$h.di"
done

declare -A ID
for k in "${STD_RSA_KEYS[@]}" "${STD_EC_KEYS[@]}"; do
  ID[$k]=$(kv_key_id "$k") || fail "CKA_ID of $k"
  token_pubkey_pem "${ID[$k]}" "$WORK/$k.pub.pem" || fail "exporting the public key of $k with pkcs11-tool"
done

# sign_ok DESC KEY OUT -- pkcs11-tool sign args...
sign_ok() {
  local desc=$1 key=$2 out=$3
  shift 4
  rm -f "$out"
  check "$desc: pkcs11-tool --sign" p11tool_m --sign --id "${ID[$key]}" -o "$out" "$@"
}

for k in "${STD_RSA_KEYS[@]}"; do
  section "RSA ${STD_KEY_ARG[$k]} ($k)"
  pub="$WORK/$k.pub.pem"
  for h in sha256 sha384 sha512; do
    H=${h^^}
    sig="$WORK/$k.rsapkcs.$h.sig"
    sign_ok "$k RSA-PKCS over a $H DigestInfo" "$k" "$sig" -- -m RSA-PKCS -i "$WORK/data.$h.di"
    check "$k RSA-PKCS/$H verifies with openssl dgst -$h" \
      openssl dgst -"$h" -verify "$pub" -signature "$sig" "$WORK/data"

    sig="$WORK/$k.$h-rsa-pkcs.sig"
    sign_ok "$k $H-RSA-PKCS" "$k" "$sig" -- -m "$H-RSA-PKCS" -i "$WORK/data"
    check "$k $H-RSA-PKCS verifies with openssl dgst -$h" \
      openssl dgst -"$h" -verify "$pub" -signature "$sig" "$WORK/data"

    sig="$WORK/$k.pss.$h.sig"
    sign_ok "$k RSA-PKCS-PSS ($H, MGF1-$H, salt ${HASH_LEN[$h]}) over the digest" "$k" "$sig" -- \
      -m RSA-PKCS-PSS --hash-algorithm "$H" --mgf "MGF1-$H" --salt-len "${HASH_LEN[$h]}" -i "$WORK/data.$h"
    check "$k RSA-PKCS-PSS/$H verifies with openssl pkeyutl" \
      openssl pkeyutl -verify -pubin -inkey "$pub" -in "$WORK/data.$h" -sigfile "$sig" \
      -pkeyopt rsa_padding_mode:pss -pkeyopt "digest:$h" -pkeyopt "rsa_mgf1_md:$h" \
      -pkeyopt "rsa_pss_saltlen:${HASH_LEN[$h]}"

    sig="$WORK/$k.$h-rsa-pkcs-pss.sig"
    # pkcs11-tool 0.23 takes the hash from the mechanism here (it refuses --hash-algorithm).
    sign_ok "$k $H-RSA-PKCS-PSS" "$k" "$sig" -- \
      -m "$H-RSA-PKCS-PSS" --mgf "MGF1-$H" --salt-len "${HASH_LEN[$h]}" -i "$WORK/data"
    check "$k $H-RSA-PKCS-PSS verifies with openssl dgst -$h (PSS)" \
      openssl dgst -"$h" -sigopt rsa_padding_mode:pss -sigopt "rsa_pss_saltlen:${HASH_LEN[$h]}" \
      -sigopt "rsa_mgf1_md:$h" -verify "$pub" -signature "$sig" "$WORK/data"
  done
done

declare -A EC_HASH=([ec-p256]=sha256 [ec-p384]=sha384 [ec-p521]=sha512 [ec-p256k]=sha256)
for k in "${STD_EC_KEYS[@]}"; do
  section "EC ${STD_KEY_ARG[$k]} ($k)"
  pub="$WORK/$k.pub.pem"
  h=${EC_HASH[$k]}
  H=${h^^}
  sig="$WORK/$k.ecdsa.sig"
  sign_ok "$k ECDSA over a raw $H digest" "$k" "$sig" -- -m ECDSA --signature-format openssl -i "$WORK/data.$h"
  check "$k ECDSA verifies with openssl pkeyutl" \
    openssl pkeyutl -verify -pubin -inkey "$pub" -in "$WORK/data.$h" -sigfile "$sig"
  sig="$WORK/$k.ecdsa-$h.sig"
  sign_ok "$k ECDSA-$H" "$k" "$sig" -- -m "ECDSA-$H" --signature-format openssl -i "$WORK/data"
  check "$k ECDSA-$H verifies with openssl dgst -$h" \
    openssl dgst -"$h" -verify "$pub" -signature "$sig" "$WORK/data"
done

section "parameters the vault cannot honour are refused, never a wrong signature"
# docs/mechanisms.md: a DigestInfo the vault has no RS* for (SHA-1 here, as pkcs11-tool --test
# signs) goes out as RSNULL, PKCS#1 v1.5 over the caller's bytes; it must be a correct signature.
sign_ok "rsa2048 RSA-PKCS over a SHA-1 DigestInfo (RSNULL)" rsa2048 "$WORK/rsnull.sig" -- \
  -m RSA-PKCS -i "$WORK/data.sha1.di"
check "... verifies with openssl dgst -sha1" \
  openssl dgst -sha1 -verify "$WORK/rsa2048.pub.pem" -signature "$WORK/rsnull.sig" "$WORK/data"
check_fails "SHA256-RSA-PKCS-PSS with salt 20 is refused" \
  p11tool_m --sign --id "${ID[rsa2048]}" -m SHA256-RSA-PKCS-PSS \
  --mgf MGF1-SHA256 --salt-len 20 -i "$WORK/data" -o "$WORK/x.sig"
check_grep "... with CKR_MECHANISM_PARAM_INVALID" "CKR_MECHANISM_PARAM_INVALID" "$WORK/check.out"
check_fails "RSA-PKCS-PSS (SHA256) with salt 20 is refused" \
  p11tool_m --sign --id "${ID[rsa2048]}" -m RSA-PKCS-PSS --hash-algorithm SHA256 \
  --mgf MGF1-SHA256 --salt-len 20 -i "$WORK/data.sha256" -o "$WORK/x.sig"
check_grep "... with CKR_MECHANISM_PARAM_INVALID" "CKR_MECHANISM_PARAM_INVALID" "$WORK/check.out"
check_fails "SHA256-RSA-PKCS-PSS with MGF1-SHA1 is refused" \
  p11tool_m --sign --id "${ID[rsa2048]}" -m SHA256-RSA-PKCS-PSS \
  --mgf MGF1-SHA1 --salt-len 32 -i "$WORK/data" -o "$WORK/x.sig"
check_grep "... with CKR_MECHANISM_PARAM_INVALID" "CKR_MECHANISM_PARAM_INVALID" "$WORK/check.out"

# refused_or_valid DESC VERIFY_CMD... -- SIGN_ARGS...: the module may refuse a hash that does not
# match the curve, or sign it the way ECDSA defines (digest truncated to the order's length); a
# signature that openssl does not accept is the only failure.
refused_or_valid() {
  local desc=$1 verify=() rc=0
  shift
  while [ "$1" != -- ]; do verify+=("$1"); shift; done
  shift
  rm -f "$WORK/x.sig"
  p11tool_m --sign -o "$WORK/x.sig" "$@" >"$WORK/rov.out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    check_grep "$desc: refused (CKR_MECHANISM_PARAM_INVALID)" "CKR_MECHANISM_PARAM_INVALID" "$WORK/rov.out"
  else
    check "$desc: signed, and the signature is valid ECDSA" "${verify[@]}"
  fi
}
refused_or_valid "ECDSA-SHA384 on a P-256 key" \
  openssl dgst -sha384 -verify "$WORK/ec-p256.pub.pem" -signature "$WORK/x.sig" "$WORK/data" -- \
  --id "${ID[ec-p256]}" -m ECDSA-SHA384 --signature-format openssl -i "$WORK/data"
refused_or_valid "ECDSA over a 48-byte digest on a P-256 key" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ec-p256.pub.pem" -in "$WORK/data.sha384" -sigfile "$WORK/x.sig" -- \
  --id "${ID[ec-p256]}" -m ECDSA --signature-format openssl -i "$WORK/data.sha384"
check_fails "ECDSA with an RSA key is refused" \
  p11tool_m --sign --id "${ID[rsa2048]}" -m ECDSA -i "$WORK/data.sha256" -o "$WORK/x.sig"

section "pkcs11-tool --verify (local, on the cached public key)"
# pkcs11-tool 0.23 exits 0 either way; it prints "Signature is valid" or "Invalid signature".
check "pkcs11-tool --verify of an RSA SHA256-RSA-PKCS signature" \
  p11tool_m --verify --id "${ID[rsa2048]}" -m SHA256-RSA-PKCS -i "$WORK/data" \
  --signature-file "$WORK/rsa2048.sha256-rsa-pkcs.sig"
check_grep "... Signature is valid" "^Signature is valid" "$WORK/check.out"
check "pkcs11-tool --verify of an ECDSA-SHA384 signature" \
  p11tool_m --verify --id "${ID[ec-p384]}" -m ECDSA-SHA384 --signature-format openssl -i "$WORK/data" \
  --signature-file "$WORK/ec-p384.ecdsa-sha384.sig"
check_grep "... Signature is valid" "^Signature is valid" "$WORK/check.out"
cp "$WORK/data" "$WORK/data.tampered"
echo tampered >>"$WORK/data.tampered"
p11tool_m --verify --id "${ID[rsa2048]}" -m SHA256-RSA-PKCS -i "$WORK/data.tampered" \
  --signature-file "$WORK/rsa2048.sha256-rsa-pkcs.sig" >"$WORK/tampered.out" 2>&1 || true
check_grep "pkcs11-tool --verify rejects a signature over other data" "^Invalid signature" "$WORK/tampered.out"
check_nogrep "... and does not call it valid" "^Signature is valid" "$WORK/tampered.out"

finish
