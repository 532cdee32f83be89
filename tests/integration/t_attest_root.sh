#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# attestation_root (docs/config.md, docs/usage.md "Key attestation for a CA"): with the emulator's
# per-run vendor root as a slot's attestation_root (its own, the top-level default, or one of a
# bundle) the attestation data object of a Managed HSM key reads and is the service's reply byte
# for byte; with another root (made here with openssl) the object is refused like a tampered one:
# one warning naming the slot, the key and why, the object withdrawn, the key still signing; a
# missing, group-writable or non-PEM file is a configuration error at C_Initialize naming the
# file, the field and the fix; `akv-p11 attest` without --root checks against the slot's
# attestation_root (and --root still wins).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/attest_lib.sh"
attest_setup
kv_call GET /keys/signer/attestation >"$WORK/emu-att.json" || fail "GET attestation"
kv_key_pem signer "$WORK/signer-vault.pem" || fail "reading the vault key"
export AKV_PKCS11_LOG_LEVEL=info

# The roots: the emulator's vendor root (per run, named in its ready file), another self-signed
# root, and a bundle of both.
VENDOR=$(emu_field '.attestation_vendor_root // empty')
[ -s "$VENDOR" ] || fail "the ready file names no attestation_vendor_root"
install -m 644 "$VENDOR" "$WORK/vendor-root.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/other.key" \
  -subj "/CN=another HSM vendor root" -days 2 -out "$WORK/other-root.pem" 2>/dev/null ||
  fail "making another root with openssl"
chmod 644 "$WORK/other-root.pem"
{ printf '# two vendor roots\n'; cat "$WORK/other-root.pem" "$WORK/vendor-root.pem"; } >"$WORK/both.pem"
chmod 644 "$WORK/both.pem"
SLOT='"kind":"mhsm","objects":["keys"]'

# cfg NAME SLOT_EXTRA [GLOBAL_EXTRA]: $WORK/NAME.json, a configuration for the emulator's Managed HSM.
cfg() {
  local g=${3:-}
  module_config "$WORK/$1.json" "{$SLOT$2}" "${g:-"{}"}"
}
READ_ATT=(--read-object --type data --label "signer attestation")

section "the emulator's vendor root configured: the object reads and verifies"
for c in slot top bundle own-wins; do
  case $c in
    slot) cfg $c ",\"attestation_root\":\"$WORK/vendor-root.pem\"" ;;
    top) cfg $c "" "{\"attestation_root\":\"$WORK/vendor-root.pem\"}" ;;
    bundle) cfg $c ",\"attestation_root\":\"$WORK/both.pem\"" ;;
    own-wins) cfg $c ",\"attestation_root\":\"$WORK/vendor-root.pem\"" "{\"attestation_root\":\"$WORK/other-root.pem\"}" ;;
  esac
  check "$c: pkcs11-tool --read-object 'signer attestation'" \
    env AKV_PKCS11_CONFIG="$WORK/$c.json" pkcs11-tool --module "$AKV_MODULE" "${READ_ATT[@]}" -o "$WORK/att-$c.json"
  check_nogrep "$c: no warning" "WARN" "$WORK/check.out"
  check_eq "$c: the service's attestation, byte for byte" \
    "$(jq -cS '.attributes.attestation' "$WORK/emu-att.json")" "$(jq -cS '.attributes.attestation' "$WORK/att-$c.json" 2>/dev/null)"
done

section "another root configured: refused like a tampered attestation"
printf 'signed while the attestation is refused\n' >"$WORK/data"
cfg other ",\"attestation_root\":\"$WORK/other-root.pem\""
check "the object is found, its read is refused, the key signs (p11_attest_check.py refused)" \
  env AKV_PKCS11_CONFIG="$WORK/other.json" "$PY" "$PYCHECK" refused "$WORK"
cp "$WORK/check.out" "$WORK/refused.out"
check_eq "exactly one warning about the attestation" 1 "$(grep -c 'WARN.*attestation' "$WORK/refused.out")"
check_grep "it names the key, the slot, the file and why" \
  "WARN.*signer: the certificate chain does not verify: unable to get local issuer certificate .*trusted vendor root of slot hsm1 attestation_root $WORK/other-root.pem" \
  "$WORK/refused.out"
check_grep "the object is withdrawn, the key is not" \
  "attestation object is withdrawn \\(the key itself is unaffected\\)" "$WORK/refused.out"
check "the signature verifies with the vault key (openssl)" \
  openssl dgst -sha256 -verify "$WORK/signer-vault.pem" -signature "$WORK/sig" "$WORK/data"
cfg other-top "" "{\"attestation_root\":\"$WORK/other-root.pem\"}"
check_fails "the top-level default of another root: pkcs11-tool's read fails" \
  env AKV_PKCS11_CONFIG="$WORK/other-top.json" pkcs11-tool --module "$AKV_MODULE" "${READ_ATT[@]}" -o "$WORK/att-other-top.json"
check_grep "the warning names the slot and the top-level file it took" \
  "WARN.*signer: the certificate chain does not verify.*slot hsm1 attestation_root $WORK/other-root.pem" "$WORK/check.out"

section "a bad attestation_root is a configuration error at C_Initialize"
cp "$WORK/vendor-root.pem" "$WORK/writable.pem"
chmod 664 "$WORK/writable.pem"
for c in missing writable notpem; do
  case $c in
    missing) f="$WORK/no-such-root.pem" want="cannot read $f: No such file or directory; fix:" ;;
    writable) f="$WORK/writable.pem" want="group or other can write $f \\(mode 664\\).*fix: chmod go-w $f" ;;
    notpem) f="$WORK/slot.json" want="$f holds no PEM certificate.*fix:" ;;
  esac
  cfg "bad-$c" ",\"attestation_root\":\"$f\""
  check_fails "$c: pkcs11-tool -L fails" env AKV_PKCS11_CONFIG="$WORK/bad-$c.json" pkcs11-tool --module "$AKV_MODULE" -L
  check_grep "$c: the message names the file, the field and the fix" \
    "configuration: $WORK/bad-$c.json: field \`slots\\[0\\].attestation_root\`: $want" "$WORK/check.out"
done
cfg bad-top "" "{\"attestation_root\":\"$WORK/no-such-root.pem\"}"
check_fails "top level, missing: pkcs11-tool -L fails" env AKV_PKCS11_CONFIG="$WORK/bad-top.json" pkcs11-tool --module "$AKV_MODULE" -L
check_grep "top level: the field is named" "field \`attestation_root\`: cannot read $WORK/no-such-root.pem" "$WORK/check.out"

section "akv-p11 attest without --root takes the slot's attestation_root"
check "the vendor root configured: akv-p11 attest signer" \
  env AKV_PKCS11_CONFIG="$WORK/slot.json" "$AKV_P11" attest signer --out "$WORK/out-slot"
check_grep "it says it checked against the slot's root" \
  "and to a trusted vendor root of slot hsm1 attestation_root $WORK/vendor-root.pem\\)" "$WORK/check.out"
check_nogrep "no 'vendor root was not checked' warning" "vendor root was not checked" "$WORK/check.out"
check "the files are written" test -s "$WORK/out-slot/attestation.json"
check "openssl agrees: partition.pem through card.pem to the configured root" \
  openssl verify -x509_strict -CAfile "$WORK/vendor-root.pem" -untrusted "$WORK/out-slot/card.pem" "$WORK/out-slot/partition.pem"
rc=0
env AKV_PKCS11_CONFIG="$WORK/other.json" "$AKV_P11" attest signer --out "$WORK/out-other" >"$WORK/check.out" 2>&1 || rc=$?
check_eq "another root configured: exit status 1" 1 "$rc"
check_grep "another root: the reason names the slot's file" \
  "certificate chain does not verify: .*slot hsm1 attestation_root $WORK/other-root.pem" "$WORK/check.out"
check "another root: nothing written" test ! -e "$WORK/out-other/attestation.json"
check "--root wins over the slot's attestation_root" \
  env AKV_PKCS11_CONFIG="$WORK/other.json" "$AKV_P11" attest signer --root "$WORK/vendor-root.pem" --out "$WORK/out-root"
check_grep "--root: named as the root checked" "trusted vendor root of --root $WORK/vendor-root.pem\\)" "$WORK/check.out"
rc=0
env AKV_PKCS11_CONFIG="$WORK/bad-missing.json" "$AKV_P11" attest signer --out "$WORK/out-bad" >"$WORK/check.out" 2>&1 || rc=$?
check_eq "a bad attestation_root: akv-p11 attest exits 2 (configuration error)" 2 "$rc"
check_grep "with the configuration message" "configuration error: .*field \`slots\\[0\\].attestation_root\`" "$WORK/check.out"

finish
