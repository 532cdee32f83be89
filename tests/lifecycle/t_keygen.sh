#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lifecycle (docs/lifecycle.md): pkcs11-tool --keypairgen for every key type the vault makes; the key is in
# the vault with the expected kty/crv/size/key_ops and the pkcs11-id tag (checked by REST), signs
# at once and from a new process (verified with openssl on the vault's public key), keeps its
# CKA_ID across processes (listing and cross-process cache file), and bad templates are refused.
. "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault gen1 --vault genh:mhsm
module_config "$WORK/cfg.json"
jq '.slots[1].kind = "mhsm" | .slots[1].objects = ["keys"]' "$WORK/cfg.json" >"$WORK/cfg.tmp" &&
  mv "$WORK/cfg.tmp" "$WORK/cfg.json" && chmod 600 "$WORK/cfg.json" || fail "config"
export AKV_PKCS11_CONFIG="$WORK/cfg.json"
printf 'lifecycle test data %s\n' "$RANDOM" >"$WORK/data"

# name  key-type          kty  size/crv  id    sign mechanism   openssl digest
KEYS=(
  "lk-rsa2048 rsa:2048 RSA 2048 01a1 SHA256-RSA-PKCS"
  "lk-rsa3072 rsa:3072 RSA 3072 01a2 SHA384-RSA-PKCS"
  "lk-rsa4096 rsa:4096 RSA 4096 01a3 SHA512-RSA-PKCS"
  "lk-p256 EC:prime256v1 EC P-256 02b1 ECDSA-SHA256"
  "lk-p384 EC:secp384r1 EC P-384 02b2 ECDSA-SHA384"
  "lk-p521 EC:secp521r1 EC P-521 02b3 ECDSA-SHA512"
  "lk-k256 EC:secp256k1 EC P-256K 02b4 ECDSA-SHA256"
)

sign_and_verify() { # name id mech -> signs with the token, verifies with openssl on the vault key
  local name=$1 id=$2 mech=$3 dg
  case $mech in *256*) dg=sha256 ;; *384*) dg=sha384 ;; *) dg=sha512 ;; esac
  p11tool_m --sign --id "$id" -m "$mech" --signature-format openssl -i "$WORK/data" \
    -o "$WORK/$name.sig" || return 1
  kv_key_pem "$name" "$WORK/$name.pub.pem" || return 1
  openssl dgst "-$dg" -verify "$WORK/$name.pub.pem" -signature "$WORK/$name.sig" "$WORK/data"
}

for row in "${KEYS[@]}"; do
  read -r name kt kty arg id mech <<<"$row"
  section "$kt as $name (CKA_ID $id)"
  check "pkcs11-tool --keypairgen --key-type $kt --label $name --id $id" \
    p11tool_gen --keypairgen --key-type "$kt" --label "$name" --id "$id"
  cp "$WORK/check.out" "$WORK/$name.gen"
  # pkcs11-tool prints both new objects through the returned handles: usable at once.
  check_grep "$name: the new private key is readable at once with its label" "label: +$name" "$WORK/$name.gen"
  check_grep "$name: the new objects carry CKA_ID $id" "ID: +$id" "$WORK/$name.gen"
  kv_call GET "/keys/$name" >"$WORK/$name.json" || fail "GET key $name"
  check_eq "$name: vault kty" "$kty" "$(jq -r '.key.kty' "$WORK/$name.json")"
  if [ "$kty" = RSA ]; then
    check_eq "$name: vault modulus size" "$arg" \
      "$(jq -r '.key.n' "$WORK/$name.json" | tr '_-' '/+' | awk '{l=length($0); printf "%s", $0; for(i=0;i<(4-l%4)%4;i++) printf "="}' |
        base64 -d | wc -c | awk '{print $1*8}')"
    check_eq "$name: vault key_ops" '["decrypt","encrypt","sign","unwrapKey","verify","wrapKey"]' \
      "$(jq -c '.key.key_ops | sort' "$WORK/$name.json")"
  else
    check_eq "$name: vault curve" "$arg" "$(jq -r '.key.crv' "$WORK/$name.json")"
    check_eq "$name: vault key_ops" '["sign","verify"]' "$(jq -c '.key.key_ops | sort' "$WORK/$name.json")"
  fi
  check_eq "$name: CKA_ID kept in the pkcs11-id tag" "$id" "$(jq -r '.tags["pkcs11-id"]' "$WORK/$name.json")"
  check "$name: a new process signs ($mech) and openssl verifies with the vault's key" \
    sign_and_verify "$name" "$id" "$mech"
done

section "CKA_ID survives new processes"
p11tool_m -O >"$WORK/list.out" 2>&1 || fail "pkcs11-tool -O"
for row in "${KEYS[@]}"; do
  read -r name kt kty arg id mech <<<"$row"
  check_eq "$name: private and public objects listed with CKA_ID $id" 2 \
    "$(awk -v n="$name" -v id="$id" '/label:/{l=$2} /ID:/{if (l==n && $2==id) c++} END{print c+0}' "$WORK/list.out")"
done
section "and through the cross-process cache file"
module_config "$WORK/cfg-file.json" '{}' "{\"cache_file\":\"$WORK/akv-cache.json\"}"
AKV_PKCS11_CONFIG="$WORK/cfg-file.json" p11tool_m -O >/dev/null 2>&1 || fail "first listing"
check "the cache file exists" test -s "$WORK/akv-cache.json"
AKV_PKCS11_CONFIG="$WORK/cfg-file.json" p11tool_m -O >"$WORK/list2.out" 2>&1 || fail "second listing"
check_eq "lk-p256 keeps CKA_ID 02b1 when loaded from the cache file" 2 \
  "$(awk '/label:/{l=$2} /ID:/{if (l=="lk-p256" && $2=="02b1") c++} END{print c+0}' "$WORK/list2.out")"
AKV_PKCS11_CONFIG="$WORK/cfg-file.json" check "a key generated now is in the cache file at once" \
  p11tool_gen --keypairgen --key-type EC:prime256v1 --label lk-late --id 0c
AKV_PKCS11_CONFIG="$WORK/cfg-file.json" p11tool_m -O >"$WORK/list3.out" 2>&1 || fail "third listing"
check_grep "the next process (within the TTL, no listing) sees it" "label: +lk-late" "$WORK/list3.out"

section "refusals"
check_fails "an invalid key name is refused" \
  p11tool_gen --keypairgen --key-type EC:prime256v1 --label bad_name
check_grep "the log names the rule" 'must match \^\[0-9a-zA-Z-\]\{1,127\}\$' "$WORK/check.out"
check_grep "CKR_ATTRIBUTE_VALUE_INVALID" "CKR_ATTRIBUTE_VALUE_INVALID" "$WORK/check.out"
check_fails "an existing name is never turned into a new version" \
  p11tool_gen --keypairgen --key-type EC:prime256v1 --label lk-p256
check_grep "the log says the key exists" "exists in the vault" "$WORK/check.out"
check_eq "lk-p256 still has one version" 1 "$(kv_call GET /keys/lk-p256/versions | jq '.value | length')"
check_fails "RSA 1024 is refused" p11tool_gen --keypairgen --key-type rsa:1024 --label lk-small
check_grep "CKR_ATTRIBUTE_VALUE_INVALID for the size" "CKR_ATTRIBUTE_VALUE_INVALID" "$WORK/check.out"
check_fails "an unknown curve is refused" p11tool_gen --keypairgen --key-type EC:prime192v1 --label lk-192
kv_call GET /keys/lk-small >/dev/null 2>&1 && _check_result 1 "no lk-small in the vault" || _check_result 0 "no lk-small in the vault"

section "Managed HSM: token AES keys and HSM key pairs"
hsm_call() { KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call "$@"; }
check "pkcs11-tool --keygen --key-type AES:32 on the Managed HSM slot" \
  p11tool_m --slot-index 1 --keygen --key-type AES:32 --label hsm-aes --id 0f
check_grep "the new AES key is readable at once" "label: +hsm-aes" "$WORK/check.out"
hsm_call GET /keys/hsm-aes >"$WORK/hsm-aes.json" || fail "GET hsm-aes"
check_eq "REST: kty oct-HSM" oct-HSM "$(jq -r '.key.kty' "$WORK/hsm-aes.json")"
check_eq "REST: key_ops" '["decrypt","encrypt","unwrapKey","wrapKey"]' "$(jq -c '.key.key_ops | sort' "$WORK/hsm-aes.json")"
check_eq "REST: pkcs11-id tag" 0f "$(jq -r '.tags["pkcs11-id"]' "$WORK/hsm-aes.json")"
head -c 48 /dev/urandom >"$WORK/pt"
check "a new process encrypts with it (AES-CBC-PAD in the HSM)" \
  p11tool_m --slot-index 1 --encrypt --id 0f -m AES-CBC-PAD --iv 000102030405060708090a0b0c0d0e0f \
  -i "$WORK/pt" -o "$WORK/ct"
check "and decrypts" \
  p11tool_m --slot-index 1 --decrypt --id 0f -m AES-CBC-PAD --iv 000102030405060708090a0b0c0d0e0f \
  -i "$WORK/ct" -o "$WORK/pt.out"
check_same_file "round trip through the HSM key" "$WORK/pt" "$WORK/pt.out"
check "keypairgen EC P-384 on the Managed HSM" \
  p11tool_gen --slot-index 1 --keypairgen --key-type EC:secp384r1 --label hsm-ec --id 10
check_eq "REST: kty EC-HSM (a Managed HSM only holds HSM keys)" EC-HSM "$(hsm_call GET /keys/hsm-ec | jq -r '.key.kty')"
check_fails "a token AES key on a Key Vault slot is refused" \
  p11tool_m --slot-index 0 --keygen --key-type AES:32 --label kv-aes
check_grep "CKR_TEMPLATE_INCONSISTENT, the log says why" "exist only in a Managed HSM" "$WORK/check.out"
vault_has_key() { kv_call GET "/keys/$1" >/dev/null 2>&1; }
vault_has_key kv-aes && _check_result 1 "no kv-aes in the vault" || _check_result 0 "no kv-aes in the vault"

section "read-only slot"
module_config "$WORK/cfg-ro.json" '{"read_only":true}'
AKV_PKCS11_CONFIG="$WORK/cfg-ro.json" check_fails "keypairgen on a read-only slot fails" \
  p11tool_gen --keypairgen --key-type EC:prime256v1 --label lk-ro
check_grep "CKR_TOKEN_WRITE_PROTECTED (or the read-only session the tool gets)" \
  "CKR_TOKEN_WRITE_PROTECTED|CKR_SESSION_READ_ONLY|CKR_TOKEN_WRITE_PROTECTED" "$WORK/check.out"
kv_call GET /keys/lk-ro >/dev/null 2>&1 && _check_result 1 "no lk-ro in the vault" || _check_result 0 "no lk-ro in the vault"

finish
