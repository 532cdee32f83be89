#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: code signing (docs/usage.md "Code signing", recipe codesign). osslsigncode signs a PE
# file with Authenticode through the libp11 engine (-pkcs11engine/-pkcs11module); sbsign signs it
# for UEFI Secure Boot through the engine. Each signature is checked by both verifiers
# (osslsigncode verify, sbverify --cert: two implementations), and openssl reads the signer
# certificate from each signature.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg osslsigncode sbsigntool systemd-boot-efi libengine-pkcs11-openssl gnutls-bin
need_tool osslsigncode sbsign sbverify p11tool openssl
EFI=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
need_file "$EFI"
need_module

consumer_vault
kv_cert_der mycert "$WORK/mycert.der" || fail "vault certificate mycert"

section "osslsigncode $(osslsigncode --version 2>/dev/null | awk 'NR == 1 {sub(/,$/, "", $2); print $2}'), sbsigntool $(pkg_version sbsigntool) (recipe codesign)"
run_recipe codesign "recipe codesign: osslsigncode sign + verify, sbsign + sbverify"
R="$WORK/recipe-codesign.out"
check "the certificate read from the token is the vault's" \
  cmp <(openssl x509 -in "$WORK/run/mycert.pem" -outform DER) "$WORK/mycert.der"
check_grep "osslsigncode verify: signature ok" '^Signature verification: ok' "$R"
check_grep "sbverify: Signature verification OK" '^Signature verification OK' "$R"

section "each signature checked by the other verifier"
check "sbverify accepts the Authenticode signature osslsigncode made" \
  sbverify --cert "$WORK/run/mycert.pem" "$WORK/run/authenticode.efi"
# osslsigncode 2.5 (Debian 12) answers "Invalid signature" for every sbsign signature, which 2.9
# and sbverify accept (docs/troubleshooting.md, consumers): the cross-check needs 2.6 or later.
OSSL_VER=$(osslsigncode --version 2>/dev/null | awk 'NR == 1 {sub(/,$/, "", $2); print $2}')
if dpkg --compare-versions "$OSSL_VER" ge 2.6; then
  check "osslsigncode $OSSL_VER verify accepts the signature sbsign made" \
    osslsigncode verify -CAfile "$WORK/run/mycert.pem" -in "$WORK/run/uefi.efi"
  check_grep "(Signature verification: ok)" '^Signature verification: ok' "$WORK/check.out"
else
  check_fails "osslsigncode $OSSL_VER still rejects sbsign's signatures (when this fails, drop the version test)" \
    osslsigncode verify -CAfile "$WORK/run/mycert.pem" -in "$WORK/run/uefi.efi"
fi
if dpkg --compare-versions "$OSSL_VER" ge 2.9; then
  check "osslsigncode $OSSL_VER sign with -pkcs11engine and -pkcs11module" env AKV_PKCS11_CONFIG="$RECIPE_CONFIG" \
    osslsigncode sign -pkcs11engine "$ENGINE_SO" -pkcs11module "$AKV_MODULE" \
    -key "pkcs11:token=myvault;object=mycert;type=private" -certs "$WORK/run/mycert.pem" -h sha256 \
    -in "$EFI" -out "$WORK/engine.efi"
  check "sbverify accepts it" sbverify --cert "$WORK/run/mycert.pem" "$WORK/engine.efi"
fi
check_fails "the unsigned binary does not verify" sbverify --cert "$WORK/run/mycert.pem" "$EFI"

# openssl cms/smime cannot verify Authenticode's SignedData (its messageDigest covers the
# SpcIndirectDataContent without its outer tag), so openssl only reads who signed.
section "the PKCS#7 signature blocks, read by openssl"
for f in authenticode uefi; do
  check "$f: osslsigncode extract-signature" \
    osslsigncode extract-signature -pem -in "$WORK/run/$f.efi" -out "$WORK/$f.p7.pem"
  openssl pkcs7 -in "$WORK/$f.p7.pem" -print_certs 2>/dev/null | openssl x509 -outform DER -out "$WORK/$f.signer.der" 2>/dev/null || true
  check "$f: the signer certificate in the signature is the vault's" cmp "$WORK/$f.signer.der" "$WORK/mycert.der"
done
check "the vault made the signatures (keys.sign: $(stats_get keys.sign))" test "$(stats_get keys.sign)" -ge 2
finish
