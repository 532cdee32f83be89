#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pkcs11-tool --decrypt of what openssl pkeyutl -encrypt made with the exported public
# key (PKCS#1 v1.5, OAEP SHA-1, OAEP SHA-256) for every RSA size, and pkcs11-tool --test --allow-sw.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault dec1 --vault dec2
for k in "${STD_RSA_KEYS[@]}"; do kv_create_rsa "$k" "${STD_KEY_ARG[$k]}" || fail "seeding $k"; done
KV_URL=$EMU_VAULT_URL_1 kv_create_rsa t-rsa 2048 || fail "seeding"
KV_URL=$EMU_VAULT_URL_1 kv_create_ec t-ec P-256 || fail "seeding"
export AKV_PKCS11_OBJECTS=keys

head -c 32 /dev/urandom >"$WORK/pt"
for k in "${STD_RSA_KEYS[@]}"; do
  section "decrypt with $k"
  id=$(kv_key_id "$k") || fail "CKA_ID of $k"
  token_pubkey_pem "$id" "$WORK/$k.pub.pem" || fail "exporting $k's public key"
  pub="$WORK/$k.pub.pem"

  openssl pkeyutl -encrypt -pubin -inkey "$pub" -in "$WORK/pt" -out "$WORK/$k.v15.ct" || fail "openssl encrypt"
  check "$k: pkcs11-tool --decrypt -m RSA-PKCS" \
    p11tool_m --decrypt -m RSA-PKCS --id "$id" -i "$WORK/$k.v15.ct" -o "$WORK/$k.v15.out"
  check_same_file "$k: RSA-PKCS decrypt gives the plaintext" "$WORK/pt" "$WORK/$k.v15.out"

  for h in sha1 sha256; do
    case $h in sha1) H=SHA-1 M=MGF1-SHA1 ;; sha256) H=SHA256 M=MGF1-SHA256 ;; esac
    openssl pkeyutl -encrypt -pubin -inkey "$pub" -in "$WORK/pt" -out "$WORK/$k.oaep-$h.ct" \
      -pkeyopt rsa_padding_mode:oaep -pkeyopt "rsa_oaep_md:$h" -pkeyopt "rsa_mgf1_md:$h" || fail "openssl encrypt"
    check "$k: pkcs11-tool --decrypt -m RSA-PKCS-OAEP ($H)" \
      p11tool_m --decrypt -m RSA-PKCS-OAEP --hash-algorithm "$H" --mgf "$M" --id "$id" \
      -i "$WORK/$k.oaep-$h.ct" -o "$WORK/$k.oaep-$h.out"
    check_same_file "$k: OAEP $H decrypt gives the plaintext" "$WORK/pt" "$WORK/$k.oaep-$h.out"
  done
done

section "a ciphertext for another key is refused"
check_fails "rsa2048 cannot decrypt what was encrypted for rsa3072" \
  p11tool_m --decrypt -m RSA-PKCS --id "$(kv_key_id rsa2048)" -i "$WORK/rsa3072.v15.ct" -o "$WORK/x.out"

section "pkcs11-tool --test --allow-sw (vault 2: RSA 2048 and EC P-256)"
check "pkcs11-tool --test --allow-sw passes" timeout 240 \
  pkcs11-tool --module "$AKV_MODULE" --slot-index 1 --test --allow-sw
cp "$WORK/check.out" "$WORK/test.out"
head -n 60 "$WORK/test.out" | sed 's/^/#   | /'
check_grep "--test reports no errors" "^No errors" "$WORK/test.out"
check_grep "--test exercised signatures" "[Ss]ignatures" "$WORK/test.out"
check_grep "--test exercised decryption" "[Dd]ecryption" "$WORK/test.out"

finish
