#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: GnuPG with gnupg-pkcs11-scd (docs/usage.md "GnuPG", recipe gnupg). gpg-agent runs
# gnupg-pkcs11-scd with the module; gpg makes an OpenPGP key around the vault key mycert's key
# (Key-Grip) and signs a file. Checks: the keygrip is the vault key's (SHA-1 of the RSA modulus,
# computed by openssl from the vault's REST public key), gpg --verify accepts the signature and
# rejects a changed file, the emulator counted the signature.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg gnupg-pkcs11-scd gnupg
need_tool gpg gpg-connect-agent gpgconf openssl
need_module

consumer_vault
kv_key_pem mycert "$WORK/mycert.vault.pem" || fail "vault key of mycert"
# An RSA keygrip is the SHA-1 of the modulus as an unsigned big-endian integer with a leading zero
# byte when its top bit is set (libgcrypt's rule).
mod=$(openssl rsa -pubin -in "$WORK/mycert.vault.pem" -noout -modulus | sed 's/^Modulus=//')
case "$mod" in [89A-Fa-f]*) mod="00$mod" ;; esac
hex2bin "$mod" "$WORK/modulus.bin"
want_grip=$(openssl dgst -sha1 -binary "$WORK/modulus.bin" | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F)

section "GnuPG $(pkg_version gnupg), gnupg-pkcs11-scd $(pkg_version gnupg-pkcs11-scd) (recipe gnupg)"
trap 'GNUPGHOME="$WORK/run/gnupg" gpgconf --kill all 2>/dev/null; _cleanup' EXIT
before=$(stats_get keys.sign)
run_recipe gnupg "recipe gnupg: agent LEARN, gpg --gen-key with Key-Grip, detach-sign, verify"
R="$WORK/recipe-gnupg.out"
check_grep "the smart-card daemon offers the vault key with its keygrip ($want_grip)" \
  "KEYPAIRINFO $want_grip " "$WORK/run/learn.txt"
check_grep "gpg --verify: good signature from the vault-backed key" 'Good signature from "Akv Signer <signer@example.com>"' "$R"
check "the vault made the signatures (keys.sign $before -> $(stats_get keys.sign))" \
  test "$(stats_get keys.sign)" -gt "$before"
echo "changed" >>"$WORK/run/release.txt"
check_fails "a changed file does not verify" env GNUPGHOME="$WORK/run/gnupg" \
  gpg --verify "$WORK/run/release.txt.asc" "$WORK/run/release.txt"
finish
