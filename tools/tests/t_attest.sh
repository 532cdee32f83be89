#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# akv-p11 attest against the emulator (a Key Vault slot and a Managed HSM slot), in the service's
# format MRVL-1: for an RSA-HSM, an EC-HSM and an oct-HSM key the written files verify with
# `openssl verify` (the vendor's partition certificate through the HSM card certificate to the
# emulator's vendor root, Microsoft's partition certificate to its root, the same key in both), the
# blobs' RSA signatures verify with the partition key and carry the vault key's public key, no key
# certificate is written; a tampered reply (emulator attestation_tamper chain, blob, key) and a
# --root that is not the vendor root are refused with a message and write nothing; a key on the Key
# Vault slot, an absent key and bad arguments give a message and a non-zero exit. Runs the block of
# docs/usage.md "Key attestation for a CA" as it stands.
# Inputs: AKV_EMULATOR, AKV_P11, AKV_SOURCE_ROOT, INTEG_LIB (tests/integration/lib.sh).
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool jq curl openssl
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"

# fails_with DESC STATUS CMD...: CMD exits with STATUS (output in $WORK/check.out).
fails_with() {
  local desc=$1 want=$2 rc=0
  shift 2
  "$@" >"$WORK/check.out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || tail -n 10 "$WORK/check.out" | sed 's/^/#   | /'
  check_eq "$desc: exit status $want" "$want" "$rc"
}

section "a Key Vault and a Managed HSM with keys"
emu_start --vault plain --vault hsm1:mhsm
kv_create_rsa plain-rsa 2048 || fail "seeding plain-rsa"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call POST /keys/signer/create \
  '{"kty":"RSA-HSM","key_size":3072}' >/dev/null || fail "creating signer"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call POST /keys/ec-signer/create \
  '{"kty":"EC-HSM","crv":"P-256"}' >/dev/null || fail "creating ec-signer"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call POST /keys/aes/create \
  '{"kty":"oct-HSM","key_size":256}' >/dev/null || fail "creating aes"

# Configuration: slot 0 the Key Vault, slot 1 the Managed HSM (kind from the ready file).
unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL
module_config "$WORK/cfg.json"
jq --slurpfile r "$EMU_READY" \
  '.slots = [ $r[0].vaults[] | {url, label: .name, kind: (if .kind == "mhsm" then "mhsm" else "keyvault" end), objects: ["keys"]} ]' \
  "$WORK/cfg.json" >"$WORK/cfg2.json" && mv "$WORK/cfg2.json" "$WORK/cfg.json" && chmod 600 "$WORK/cfg.json"
export AKV_PKCS11_CONFIG="$WORK/cfg.json"

VENDOR_ROOT=$(jq -r '.attestation_vendor_root // empty' "$EMU_READY")
[ -s "$VENDOR_ROOT" ] || fail "the ready file names no attestation_vendor_root"

section "docs/usage.md \"Key attestation for a CA\": its block runs as it stands"
awk '/^```sh recipe=attest$/ { inb = 1; next } /^```/ && inb { exit } inb' \
  "${AKV_SOURCE_ROOT:?}/docs/usage.md" >"$WORK/recipe.sh"
check "the recipe block is there" grep -q "akv-p11 attest signer" "$WORK/recipe.sh"
mkdir -p "$WORK/bin" "$WORK/recipe"
ln -sf "$AKV_P11" "$WORK/bin/akv-p11"
cp "$VENDOR_ROOT" "$WORK/recipe/vendor-root.pem"
check "the recipe runs (attest --root, openssl verify of both chains, the blob's signature)" \
  env PATH="$WORK/bin:$PATH" bash -euo pipefail -c 'cd "$1" && source "$2"' _ "$WORK/recipe" "$WORK/recipe.sh"
check_grep "openssl verify: the vendor's partition certificate OK" "^partition.pem: OK$" "$WORK/check.out"
check_grep "openssl verify: Microsoft's partition certificate OK" "^ms-partition.pem: OK$" "$WORK/check.out"
check_grep "openssl dgst: the blob's signature OK" "^Verified OK$" "$WORK/check.out"

section "RSA-HSM key: the files a CA asks for"
check "akv-p11 attest signer --out DIR" "$AKV_P11" attest signer --out "$WORK/att"
check_grep "says what it checked" "attestation verified \\(format MRVL-1" "$WORK/check.out"
check_grep "without --root: says the vendor root was not checked" \
  "warning: the vendor root was not checked" "$WORK/check.out"
check_grep "private key never extractable" "not extractable, never extractable" "$WORK/check.out"
for f in partition.pem card.pem ms-partition.pem ms-root.pem chain.pem \
  private-key-attestation.bin public-key-attestation.bin pubkey.pem attestation.json; do
  check "wrote $f" test -s "$WORK/att/$f"
done
check "no key certificate (the format has none)" test ! -e "$WORK/att/attest.pem"
check "openssl verify: partition.pem through card.pem to the vendor root" \
  openssl verify -x509_strict -CAfile "$VENDOR_ROOT" -untrusted "$WORK/att/card.pem" "$WORK/att/partition.pem"
check "openssl verify: ms-partition.pem to ms-root.pem" \
  openssl verify -x509_strict -CAfile "$WORK/att/ms-root.pem" "$WORK/att/ms-partition.pem"
check "ms-root.pem is self-signed" openssl verify -CAfile "$WORK/att/ms-root.pem" "$WORK/att/ms-root.pem"
openssl x509 -in "$WORK/att/partition.pem" -noout -pubkey >"$WORK/part-key.pem"
openssl x509 -in "$WORK/att/ms-partition.pem" -noout -pubkey >"$WORK/ms-part-key.pem"
check_same_file "both partition certificates certify the same key" "$WORK/part-key.pem" "$WORK/ms-part-key.pem"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_key_pem signer "$WORK/signer-vault.pem" ||
  fail "reading the vault key"
check_same_file "pubkey.pem is the vault key's" "$WORK/signer-vault.pem" "$WORK/att/pubkey.pem"
kid=$(KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call GET /keys/signer/ | jq -r .key.kid)
check_eq "attestation.json names the key's current version" "$kid" \
  "$(jq -r .key.kid "$WORK/att/attestation.json")"
check_eq "attestation.json carries the members as the service sends them" \
  "certificatePemFile,privateKeyAttestation,publicKeyAttestation,version" \
  "$(jq -r '.attributes.attestation | keys | join(",")' "$WORK/att/attestation.json")"
check_eq "version MRVL-1" "MRVL-1" "$(jq -r .attributes.attestation.version "$WORK/att/attestation.json")"
check_eq "chain.pem (certificatePemFile) holds four certificates" 4 \
  "$(grep -c 'BEGIN CERTIFICATE' "$WORK/att/chain.pem")"
for f in partition card ms-partition ms-root; do
  check "chain.pem holds $f.pem" grep -qF "$(sed -n 2p "$WORK/att/$f.pem")" "$WORK/att/chain.pem"
done
# Blob (docs/emulator.md "Key attestation"): the last 256 bytes are the partition key's RSA
# PKCS#1 v1.5 SHA-256 signature over everything before them; the header's total size is the size.
blob_check() { # BLOB PARTITION_CERT
  head -c -256 "$1" >"$1.data" && tail -c 256 "$1" >"$1.sig" &&
    [ $((0x$(od -An -v -tx1 -j8 -N4 "$1" | tr -d ' \n'))) = "$(stat -c %s "$1")" ] &&
    openssl x509 -in "$2" -noout -pubkey >"$1.signer.pem" &&
    openssl dgst -sha256 -verify "$1.signer.pem" -signature "$1.sig" "$1.data"
}
check "private-key-attestation.bin: signed by the partition key" \
  blob_check "$WORK/att/private-key-attestation.bin" "$WORK/att/partition.pem"
check "public-key-attestation.bin: signed by the partition key" \
  blob_check "$WORK/att/public-key-attestation.bin" "$WORK/att/partition.pem"
modulus=$(openssl rsa -pubin -in "$WORK/signer-vault.pem" -noout -modulus | sed 's/^Modulus=//' | tr 'A-F' 'a-f')
check "both blobs carry the vault key's modulus" bash -c \
  '[[ $(od -An -v -tx1 "$1" | tr -d " \n") == *"$3"* && $(od -An -v -tx1 "$2" | tr -d " \n") == *"$3"* ]]' \
  _ "$WORK/att/private-key-attestation.bin" "$WORK/att/public-key-attestation.bin" "$modulus"
check "and the key's kid as CKA_ID" grep -qF "$kid" "$WORK/att/private-key-attestation.bin"

section "EC-HSM and oct-HSM keys"
check "akv-p11 attest ec-signer --slot 1" "$AKV_P11" attest ec-signer --slot 1 --out "$WORK/att-ec"
check "EC: openssl verify to the vendor root" openssl verify -CAfile "$VENDOR_ROOT" \
  -untrusted "$WORK/att-ec/card.pem" "$WORK/att-ec/partition.pem"
check "EC: the private key attestation is signed by the partition key" \
  blob_check "$WORK/att-ec/private-key-attestation.bin" "$WORK/att-ec/partition.pem"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_key_pem ec-signer "$WORK/ec-vault.pem" ||
  fail "reading the EC key"
point=$(openssl pkey -pubin -in "$WORK/ec-vault.pem" -outform DER | tail -c 65 | od -An -v -tx1 | tr -d ' \n')
check "EC: the blob carries the vault key's point" \
  bash -c '[[ $(od -An -v -tx1 "$1" | tr -d " \n") == *"$2"* ]]' _ "$WORK/att-ec/public-key-attestation.bin" "$point"
check_same_file "one per-run HSM card for every key" "$WORK/att/card.pem" "$WORK/att-ec/card.pem"
check "oct-HSM: akv-p11 attest aes" "$AKV_P11" attest aes --out "$WORK/att-aes"
check "oct-HSM: no public key attestation, no public key" \
  test ! -e "$WORK/att-aes/public-key-attestation.bin" -a ! -e "$WORK/att-aes/pubkey.pem"
check "oct-HSM: the private key attestation is signed by the partition key" \
  blob_check "$WORK/att-aes/private-key-attestation.bin" "$WORK/att-aes/partition.pem"

section "--root: the vendor's chain must end in the vendor root the caller trusts"
check "--root the emulator's vendor root" \
  "$AKV_P11" attest signer --root "$VENDOR_ROOT" --out "$WORK/att-pinned"
check_grep "--root: says it checked against that root" "and to a trusted vendor root of --root " "$WORK/check.out"
check_nogrep "--root: no warning about the vendor root" "vendor root was not checked" "$WORK/check.out"
fails_with "--root another CA (the emulator's TLS CA)" 1 "$AKV_P11" attest signer --root "$EMU_CA" \
  --out "$WORK/att-wrong-root"
check_grep "another root: the reason" "the certificate chain does not verify: .*to a trusted vendor root of --root " \
  "$WORK/check.out"
check "another root: nothing written" test ! -e "$WORK/att-wrong-root"
fails_with "--root a file that is no certificate" 2 "$AKV_P11" attest signer --root "$WORK/cfg.json"
check_grep "not a certificate: says so" "--root: .*cfg.json holds no PEM certificate" "$WORK/check.out"

section "tampered replies are refused and nothing is written"
for t in chain blob key; do
  curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST "$EMU_CONTROL/config" \
    --data-binary "{\"attestation_tamper\":\"$t\"}" >/dev/null || fail "setting attestation_tamper"
  fails_with "tamper $t: akv-p11 attest fails" 1 "$AKV_P11" attest signer --out "$WORK/tamper-$t"
  case $t in
    chain) check_grep "tamper chain: says the chain does not verify" \
             "certificate chain does not verify" "$WORK/check.out" ;;
    blob) check_grep "tamper blob: says the signature does not verify" \
            "attestation's signature does not verify" "$WORK/check.out" ;;
    key) check_grep "tamper key: says another public key is certified" \
           "certifies another public key than the key's" "$WORK/check.out" ;;
  esac
  check_grep "tamper $t: the conclusion" "the attestation does not verify; nothing written" \
    "$WORK/check.out"
  check "tamper $t: nothing written" test ! -e "$WORK/tamper-$t"
done
curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST "$EMU_CONTROL/config" \
  --data-binary '{"attestation_tamper":"none"}' >/dev/null || fail "clearing attestation_tamper"

section "no attestation: a clear message and a non-zero exit"
fails_with "a key on the Key Vault slot" 1 "$AKV_P11" attest plain-rsa --slot 0 --out "$WORK/x"
check_grep "Key Vault slot: says why" "is a Key Vault: key attestation is a Managed HSM feature" \
  "$WORK/check.out"
fails_with "an absent key" 1 "$AKV_P11" attest no-such-key --out "$WORK/x"
check_grep "absent key: names it" "key no-such-key in hsm1: KV_E_NOT_FOUND" "$WORK/check.out"
check "nothing written for them" test ! -e "$WORK/x"
check_fails "--slot 7 (no such slot)" "$AKV_P11" attest signer --slot 7
check_grep "no such slot: says so" "no slot 7 \\(the configuration has 2\\)" "$WORK/check.out"
fails_with "--slot x" 2 "$AKV_P11" attest signer --slot x
fails_with "attest without NAME" 2 "$AKV_P11" attest
jq '.slots = [.slots[0]]' "$WORK/cfg.json" >"$WORK/plain.json" && chmod 600 "$WORK/plain.json"
check_fails "no Managed HSM slot" "$AKV_P11" --config "$WORK/plain.json" attest plain-rsa
check_grep "no Managed HSM slot: says so" "no Managed HSM slot in the configuration" \
  "$WORK/check.out"

finish
