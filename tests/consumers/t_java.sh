#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: Java SunPKCS11 (docs/usage.md "Java SunPKCS11", recipes java, java-program).
# keytool -list shows the vault certificate's entry, jarsigner signs a jar with the vault key and
# `jarsigner -verify -strict` accepts it, and a Java program signs with SHA256withECDSA. Independent
# checks: the jar's PKCS#7 signature block verifies with openssl cms, the program's signature with
# openssl dgst against the vault's public key (REST).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg openjdk-17-jdk-headless
need_tool java keytool jarsigner jar openssl
need_module

consumer_vault
kv_create_codesign_cert myeccert "CN=myeccert" EC P-256 || fail "seeding myeccert"
kv_cert_der mycert "$WORK/mycert.der" || fail "vault certificate mycert"
kv_key_pem myeccert "$WORK/myeccert.vault.pem" || fail "vault key myeccert"

section "OpenJDK $(pkg_version openjdk-17-jdk-headless): keytool, jarsigner"
run_recipe java "recipe java: keytool -list, jarsigner sign, jarsigner -verify -strict"
R="$WORK/recipe-java.out"
check_grep "keytool -list shows the entry mycert as a PrivateKeyEntry" '^mycert, PrivateKeyEntry' "$R"
check_grep "keytool -list shows myeccert too" '^myeccert, PrivateKeyEntry' "$R"
check_grep "jarsigner: jar signed" '^jar signed\.' "$R"
check_grep "jarsigner -verify -strict: jar verified" '^jar verified\.' "$R"
sed -n '/^+ jarsigner -verify/,$p' "$R" >"$WORK/verify.out"
check_grep "jarsigner -verify ran" 'jar verified' "$WORK/verify.out"
check_nogrep "jarsigner -verify -strict printed no warning" '^Warning:|unsigned entries|not validated' "$WORK/verify.out"
openssl x509 -inform DER -in "$WORK/mycert.der" -out "$WORK/mycert.vault.pem"
check "the exported certificate is the vault's certificate" \
  cmp <(openssl x509 -in "$WORK/run/mycert.pem" -outform DER) "$WORK/mycert.der"

section "independent check of the jar signature (openssl cms)"
mkdir -p "$WORK/jar"
(cd "$WORK/jar" && unzip -q -o "$WORK/run/app.jar") || fail "unzip app.jar"
check "META-INF/MYCERT.SF and MYCERT.RSA exist" test -s "$WORK/jar/META-INF/MYCERT.SF" -a -s "$WORK/jar/META-INF/MYCERT.RSA"
check "openssl cms verifies the signature block over MYCERT.SF with the vault certificate" \
  openssl cms -verify -binary -inform DER -in "$WORK/jar/META-INF/MYCERT.RSA" \
  -content "$WORK/jar/META-INF/MYCERT.SF" -CAfile "$WORK/mycert.vault.pem" -purpose any -out /dev/null
sf_digest=$(openssl dgst -sha256 -binary "$WORK/jar/META-INF/MANIFEST.MF" | base64 -w0)
check_grep "MYCERT.SF holds the SHA-256 of the manifest" "^SHA-256-Digest-Manifest: ${sf_digest//+/\\+}" \
  "$WORK/jar/META-INF/MYCERT.SF"
entry_digest=$(openssl dgst -sha256 -binary "$WORK/jar/hello.txt" | base64 -w0)
check_grep "the manifest holds the SHA-256 of hello.txt" "^SHA-256-Digest: ${entry_digest//+/\\+}" \
  "$WORK/jar/META-INF/MANIFEST.MF"

section "a Java program: Signature.getInstance(\"SHA256withECDSA\", provider)"
run_recipe java-program "recipe java-program: java Sign.java signs with myeccert's key"
check_grep "the program ran through SunPKCS11-AKV" 'signed hello.txt with myeccert \(SunPKCS11-AKV\)' \
  "$WORK/recipe-java-program.out"
check "openssl verifies the ECDSA signature with the vault's public key" \
  openssl dgst -sha256 -verify "$WORK/myeccert.vault.pem" -signature "$WORK/run/hello.sig" "$WORK/run/hello.txt"
check "the vault made the signatures (keys.sign: $(stats_get keys.sign))" test "$(stats_get keys.sign)" -ge 2
finish
