#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Managed HSM key attestation as a PKCS#11 data object (docs/usage.md "Key attestation for a CA"):
# for an RSA-HSM, an EC-HSM and an oct-HSM key, the data object labelled "NAME attestation" holding
# the attestation (format MRVL-1) as JSON, read through pkcs11-tool and PyKCS11, is byte-identical
# to what the emulator returns (curl's GET .../attestation and `akv-p11 attest --out`); there is no
# attestation certificate object (the format has no key certificate); no attestation request at
# listing nor at a search, one per process at the first read (keys read on demand and a warm cache
# file included); searches that do not ask for attestation objects (by CKA_ID, by class, empty) and
# the consumers that pair certificates with keys (pkcs11-tool --id, ssh-keygen -D) see what they saw
# before; a hostile attestation (the emulator's attestation_tamper chain/blob/key) is withdrawn with
# one warning while the key signs; held handles follow their key's version across a rotation; an
# attestation object cannot be destroyed or changed (the key stays).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/attest_lib.sh"
attest_setup ssh-keygen
kv_call POST /keys/ec-signer/create '{"kty":"EC-HSM","crv":"P-256"}' >/dev/null || fail "creating ec-signer"
kv_call POST /keys/aes/create '{"kty":"oct-HSM","key_size":256}' >/dev/null || fail "creating aes"

module_config "$WORK/module.json" '{"kind":"mhsm","objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/module.json" AKV_PKCS11_LOG_LEVEL=info
SIGNER_ID=$(kv_key_id signer)

# The emulator's answer, independently of the module: curl's GET .../attestation.
kv_call GET /keys/signer/attestation >"$WORK/signer-att.json" || fail "GET attestation"
jq -r '.attributes.attestation.certificatePemFile' "$WORK/signer-att.json" | tr -- '-_' '+/' |
  { read -r b; while [ $((${#b} % 4)) != 0 ]; do b="$b="; done; printf '%s' "$b"; } | base64 -d >"$WORK/chain.pem"
kv_key_pem signer "$WORK/signer-vault.pem" || fail "reading the vault key"
check_eq "the emulator answers format MRVL-1" "MRVL-1" "$(jq -r .attributes.attestation.version "$WORK/signer-att.json")"

section "listing and searching cost no attestation request"
stats_reset
check "pkcs11-tool -O" p11tool_m -O
check_nogrep "-O shows no attestation object (only searches that ask see them)" "attestation" "$WORK/check.out"
check_grep "the key pair is listed" "label: *signer$" "$WORK/check.out"
check_eq "no attestation request at listing" 0 "$(stats_get keys.attestation)"
check_fails "pkcs11-tool --read-object --type cert --id KEY_ID: no certificate for the key's CKA_ID" \
  p11tool_m --read-object --type cert --id "$SIGNER_ID" -o "$WORK/none.der"
check "ssh-keygen -D" ssh-keygen -D "$AKV_MODULE"
check_eq "ssh-keygen -D: the RSA and EC keys, each once" 2 "$(grep -c '^ssh-\|^ecdsa-' "$WORK/check.out")"
check_eq "still no attestation request" 0 "$(stats_get keys.attestation)"

section "pkcs11-tool reads the attestation data object by label; no certificate object"
check_fails "--read-object --type cert --label 'signer attestation': none (no key certificate)" \
  p11tool_m --read-object --type cert --label "signer attestation" -o "$WORK/p11-cert.der"
check "--read-object --type data --label 'signer attestation'" \
  p11tool_m --read-object --type data --label "signer attestation" -o "$WORK/p11-att.json"
check_eq "one attestation request for that process" 1 "$(stats_get keys.attestation)"
check_eq "the data object holds the service's attestation members, byte for byte" \
  "$(jq -cS '.attributes.attestation' "$WORK/signer-att.json")" "$(jq -cS '.attributes.attestation' "$WORK/p11-att.json")"
check_eq "and the key's versioned kid" "$(jq -r .key.kid "$WORK/signer-att.json")" "$(jq -r .key.kid "$WORK/p11-att.json")"
check "akv-p11 attest signer --out DIR" "$AKV_P11" attest signer --out "$WORK/att"
check_same_file "the data object is akv-p11 attest's attestation.json" "$WORK/att/attestation.json" "$WORK/p11-att.json"

section "docs/usage.md \"Key attestation for a CA\", \"Through PKCS#11\": its block runs as it stands"
awk '/^```sh recipe=attest-objects$/ { inb = 1; next } /^```/ && inb { exit } inb' \
  "$(dirname "$0")/../../docs/usage.md" >"$WORK/recipe.sh"
check "the recipe block is there" grep -q 'label "signer attestation"' "$WORK/recipe.sh"
check "the recipe runs in akv-p11 attest's directory (pkcs11-tool, the certificates, openssl verify)" \
  env M="$AKV_MODULE" bash -euo pipefail -c 'cd "$1" && source "$2"' _ "$WORK/att" "$WORK/recipe.sh"
cp "$WORK/check.out" "$WORK/recipe.out"
check_grep "openssl verify said OK" "^ms-partition.pem: OK$" "$WORK/recipe.out"
awk '/BEGIN CERT/ { p = 1 } p { print } /END CERT/ { p = 0 }' "$WORK/recipe.out" >"$WORK/recipe-chain.pem"
awk '/BEGIN CERT/ { p = 1 } p { print } /END CERT/ { p = 0 }' "$WORK/chain.pem" >"$WORK/emu-chain.pem"
check_same_file "the recipe's certificates are the emulator's certificatePemFile" "$WORK/emu-chain.pem" \
  "$WORK/recipe-chain.pem"

section "PyKCS11: attributes, searches that do not ask, one request per process"
mkdir -p "$WORK/py"
stats_reset
check "p11_attest_check.py read" "$PY" "$PYCHECK" read "$WORK/py"
cat "$WORK/check.out"
check_same_file "its data object is akv-p11 attest's attestation.json" "$WORK/att/attestation.json" "$WORK/py/attestation.json"
check_eq "one attestation request for the whole process" 1 "$(stats_get keys.attestation)"
check "EC-HSM: pkcs11-tool reads ec-signer's attestation data object" \
  p11tool_m --read-object --type data --label "ec-signer attestation" -o "$WORK/ec-att.json"
kv_call GET /keys/ec-signer/attestation >"$WORK/ec-emu.json" || fail "GET ec-signer attestation"
check_eq "EC-HSM: the emulator's attestation" "$(jq -cS '.attributes.attestation' "$WORK/ec-emu.json")" \
  "$(jq -cS '.attributes.attestation' "$WORK/ec-att.json")"
check "oct-HSM: the data object of aes" \
  p11tool_m --read-object --type data --label "aes attestation" -o "$WORK/aes-att.json"
check_eq "oct-HSM: no public key attestation, as the service" "certificatePemFile,privateKeyAttestation,version" \
  "$(jq -r '.attributes.attestation | keys | join(",")' "$WORK/aes-att.json")"

section "keys read on demand (prefetch_keys 0) and a warm cache file"
module_config "$WORK/lazy.json" '{"kind":"mhsm","objects":["keys"],"prefetch_keys":0}' \
  "{\"cache_file\":\"$WORK/lazy-cache\"}"
stats_reset
check "pending keys: pkcs11-tool -O (the listing, then every pending key read)" \
  env AKV_PKCS11_CONFIG="$WORK/lazy.json" pkcs11-tool --module "$AKV_MODULE" -O
check_nogrep "no attestation object listed" "attestation" "$WORK/check.out"
check "a later process, the cache file warm: --read-object --label 'ec-signer attestation'" \
  env AKV_PKCS11_CONFIG="$WORK/lazy.json" pkcs11-tool --module "$AKV_MODULE" --read-object \
  --type data --label "ec-signer attestation" -o "$WORK/ec-att-cached.json"
check_same_file "the same data object as without the cache file" "$WORK/ec-att.json" "$WORK/ec-att-cached.json"
check_eq "one listing in all (the second process took the cache file)" 1 "$(stats_get keys.list)"
check_eq "one attestation request in all" 1 "$(stats_get keys.attestation)"
fresh_cache
rm -f "$WORK/lazy-cache"
stats_reset
check "pending keys, no cache file: --read-object --label 'ec-signer attestation'" \
  env AKV_PKCS11_CONFIG="$WORK/lazy.json" pkcs11-tool --module "$AKV_MODULE" --read-object \
  --type data --label "ec-signer attestation" -o "$WORK/ec-att-lazy.json"
check_same_file "the search by the attestation label read the pending key it names" "$WORK/ec-att.json" \
  "$WORK/ec-att-lazy.json"
check_eq "only that key was read (the others stay pending)" 1 "$(stats_get keys.get)"

section "a hostile attestation: withdrawn with one warning, the key signs"
printf 'signed while the attestation is refused\n' >"$WORK/py/data"
for t in chain blob key; do
  curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST "$EMU_CONTROL/config" \
    --data-binary "{\"attestation_tamper\":\"$t\"}" >/dev/null || fail "setting attestation_tamper"
  rm -f "$WORK/py/sig"
  check "tamper $t: p11_attest_check.py refused" "$PY" "$PYCHECK" refused "$WORK/py"
  cp "$WORK/check.out" "$WORK/refused-$t.out"
  check_eq "tamper $t: exactly one warning about the attestation" 1 \
    "$(grep -c 'WARN.*attestation' "$WORK/refused-$t.out")"
  case $t in
    chain) check_grep "tamper chain: it says the chain does not verify" "WARN.*certificate chain does not verify" "$WORK/refused-$t.out" ;;
    blob) check_grep "tamper blob: it says the blob signature does not verify" "WARN.*attestation's signature does not verify" "$WORK/refused-$t.out" ;;
    key) check_grep "tamper key: it says another public key is certified" "WARN.*another" "$WORK/refused-$t.out" ;;
  esac
  check_grep "tamper $t: the object is withdrawn, the key is not" "attestation object is withdrawn \\(the key itself is unaffected\\)" "$WORK/refused-$t.out"
  check "tamper $t: the signature verifies with the vault key (openssl)" \
    openssl dgst -sha256 -verify "$WORK/signer-vault.pem" -signature "$WORK/py/sig" "$WORK/py/data"
done
curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST "$EMU_CONTROL/config" \
  --data-binary '{"attestation_tamper":"none"}' >/dev/null || fail "clearing attestation_tamper"

section "rotation: held handles keep their version's attestation"
module_config "$WORK/module-ttl.json" '{"kind":"mhsm","objects":["keys"],"ttl":1,"allow_destroy":true}'
kv_token
ROTATE_CMD="curl -sS --fail --max-time 30 --cacert '$EMU_CA' -H @'$(kv_hdr)' -X POST '$EMU_VAULT_URL/keys/signer/rotate?api-version=$KV_API' >/dev/null"
export ROTATE_CMD
check "p11_attest_check.py rotate" env AKV_PKCS11_CONFIG="$WORK/module-ttl.json" "$PY" "$PYCHECK" rotate "$WORK/py"
cat "$WORK/check.out"
check_eq "the new data object names the new version" "$(kv_call GET /keys/signer/ | jq -r .key.kid | sed 's|.*/||')" \
  "$(jq -r .key.kid "$WORK/py/new.json" | sed 's|.*/||')"
check_eq "the held data object names the old version" "$(cat "$WORK/py/old-version")" \
  "$(jq -r .key.kid "$WORK/py/old.json" | sed 's|.*/||')"

section "a key generated through the module"
check "p11_attest_check.py generate" "$PY" "$PYCHECK" generate "$WORK/py"
cat "$WORK/check.out"
check_eq "its data object names the vault's key of that name" \
  "$(kv_call GET /keys/made/ | jq -r .key.kid)" "$(jq -r .key.kid "$WORK/py/made.json")"
check_eq "in format MRVL-1" "MRVL-1" "$(jq -r .attributes.attestation.version "$WORK/py/made.json")"

finish
