#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Login (docs/security.md "Login"): a slot with "login": "required" and a pin_hash written by
# mkpasswd. Before C_Login the private keys and the secrets are invisible and unusable, public keys
# and certificates are listed; a wrong PIN is CKR_PIN_INCORRECT; the right PIN lets pkcs11-tool,
# ssh-agent (PIN through SSH_ASKPASS), GnuTLS (p11tool, certtool with GNUTLS_PIN) and the OpenSSL
# engine (pin-value in the URI) sign, each signature checked by an independent verifier. A
# CKA_PRIVATE=TRUE template on a slot without login is refused. docs/security.md "Login".
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool p11tool certtool ssh-keygen ssh-agent ssh-add mkpasswd openssl jq curl
need_file /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
need_module

emu_start --vault login1
kv_create_rsa login-rsa 2048 || fail "seeding"
kv_create_ec login-ec P-256 || fail "seeding"
kv_set_secret login-secret "the-secret-value-$$" || fail "seeding"
kv_create_cert login-cert "CN=login cert" || fail "seeding"
PIN="4711-pin-$$"
HASH=$(printf '%s' "$PIN" | mkpasswd -m yescrypt -s) || fail "mkpasswd"
case "$HASH" in \$y\$*) ;; *) fail "mkpasswd wrote no yescrypt string: $HASH" ;; esac
module_config "$WORK/login.json" "$(jq -cn --arg h "$HASH" '{login: "required", pin_hash: $h}')"
module_config "$WORK/open.json"
export AKV_PKCS11_CONFIG="$WORK/login.json"
rsa_id=$(kv_key_id login-rsa) || fail "CKA_ID"
kv_key_pem login-rsa "$WORK/rsa.pem" || fail "vault key"
kv_key_pem login-ec "$WORK/ec.pem" || fail "vault key"
printf 'signed after login\n' >"$WORK/data"
openssl dgst -sha256 -binary "$WORK/data" >"$WORK/data.sha256"

section "pkcs11-tool without login: public objects only"
check "pkcs11-tool -T" p11tool_m -T
check_grep "the token says login required" "token flags +: login required" "$WORK/check.out"
check "pkcs11-tool -O without login" p11tool_m -O
cp "$WORK/check.out" "$WORK/public.out"
check_grep "the public key login-rsa is listed" "^Public Key Object.*RSA" "$WORK/public.out"
check_grep "the certificate is listed" "^Certificate Object" "$WORK/public.out"
check_nogrep "no private key is listed" "^Private Key Object" "$WORK/public.out"
check_nogrep "no data object (secret) is listed" "^Data object" "$WORK/public.out"
check_fails "signing without login fails" p11tool_m --sign -m SHA256-RSA-PKCS --id "$rsa_id" \
  -i "$WORK/data" -o "$WORK/nologin.sig"
check_fails "the secret's value is unreadable without login" \
  p11tool_m --read-object --type data --label login-secret -o "$WORK/nologin.secret"
check_eq "nothing of the secret was written" "" "$(cat "$WORK/nologin.secret" 2>/dev/null)"

section "pkcs11-tool with a wrong PIN"
check_fails "--login --pin WRONG fails" p11tool_m --login --pin "not-$PIN" -O
check_grep "the error is CKR_PIN_INCORRECT" "CKR_PIN_INCORRECT" "$WORK/check.out"
check_nogrep "nothing private was listed" "^Private Key Object" "$WORK/check.out"

section "pkcs11-tool with the PIN"
check "--login --pin -O" p11tool_m --login --pin "$PIN" -O
cp "$WORK/check.out" "$WORK/private.out"
check_grep "the private key is listed" "^Private Key Object" "$WORK/private.out"
check_grep "the secret is listed as a data object" "^Data object" "$WORK/private.out"
check "--login --pin --sign SHA256-RSA-PKCS" p11tool_m --login --pin "$PIN" --sign -m SHA256-RSA-PKCS \
  --id "$rsa_id" -i "$WORK/data" -o "$WORK/p11.sig"
check "the signature verifies with openssl and the vault's public key" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/p11.sig" "$WORK/data"
check "--login --pin --read-object the secret" p11tool_m --login --pin "$PIN" --read-object --type data \
  --label login-secret -o "$WORK/secret.out"
check_eq "the secret's value after login" "the-secret-value-$$" "$(cat "$WORK/secret.out" 2>/dev/null)"

section "ssh: public keys without a PIN, signing through ssh-agent with the PIN from SSH_ASKPASS"
check "ssh-keygen -D lists the public keys without a PIN" ssh-keygen -D "$AKV_MODULE"
cp "$WORK/check.out" "$WORK/D.out"
declare -A SSHPUB
for k in login-rsa login-ec; do
  SSHPUB[$k]=$(ssh-keygen -i -m PKCS8 -f "$WORK/${k#login-}.pem" | awk '{print $1, $2}')
  check "ssh-keygen -D shows $k" grep -qF -- "${SSHPUB[$k]}" "$WORK/D.out"
done
sock="$WORK/agent.sock"
timeout 120 ssh-agent -D -a "$sock" -P "$AKV_MODULE" >"$WORK/agent.out" 2>&1 &
bg_register $!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
printf '#!/bin/sh\necho "not-%s"\n' "$PIN" >"$WORK/askpass-wrong"
printf '#!/bin/sh\necho "%s"\n' "$PIN" >"$WORK/askpass"
chmod 700 "$WORK/askpass" "$WORK/askpass-wrong"
add_env=(env SSH_AUTH_SOCK="$sock" SSH_ASKPASS_REQUIRE=force DISPLAY=none AKV_PKCS11_CONFIG="$WORK/login.json")
check_fails "ssh-add -s with a wrong PIN is refused" "${add_env[@]}" SSH_ASKPASS="$WORK/askpass-wrong" \
  timeout 60 ssh-add -s "$AKV_MODULE"
check "ssh-add -s with the PIN from SSH_ASKPASS" "${add_env[@]}" SSH_ASKPASS="$WORK/askpass" \
  timeout 60 ssh-add -s "$AKV_MODULE"
check "ssh-add -L" env SSH_AUTH_SOCK="$sock" ssh-add -L
cp "$WORK/check.out" "$WORK/agentL.out"
for k in login-rsa login-ec; do
  check "the agent holds $k" grep -qF -- "${SSHPUB[$k]}" "$WORK/agentL.out"
  printf '%s\n' "${SSHPUB[$k]}" >"$WORK/$k.sshpub"
  printf 'signer %s\n' "${SSHPUB[$k]}" >"$WORK/$k.allowed"
  cp "$WORK/data" "$WORK/$k.msg"
  check "$k: ssh-keygen -Y sign through the agent" env SSH_AUTH_SOCK="$sock" \
    timeout 60 ssh-keygen -Y sign -n file -f "$WORK/$k.sshpub" "$WORK/$k.msg"
  check "$k: ssh-keygen -Y verify against the vault's public key" \
    bash -c 'ssh-keygen -Y verify -f "$1" -I signer -n file -s "$2.sig" <"$2"' _ "$WORK/$k.allowed" "$WORK/$k.msg"
done

section "GnuTLS: p11tool and certtool with GNUTLS_PIN"
url="pkcs11:token=login1"
# p11tool exits 2 when it finds nothing: its output is what tells.
p11tool --provider "$AKV_MODULE" --list-all-privkeys "$url" >"$WORK/gnutls-nologin.out" 2>&1 || true
check_grep "p11tool --list-all-privkeys without login finds nothing" "No matching objects" \
  "$WORK/gnutls-nologin.out"
check_nogrep "no private key without login" "type=private" "$WORK/gnutls-nologin.out"
check "p11tool --login --list-all-privkeys (GNUTLS_PIN)" env GNUTLS_PIN="$PIN" \
  p11tool --provider "$AKV_MODULE" --login --list-all-privkeys "$url"
check_grep "the private key login-rsa after login" "object=login-rsa;type=private" "$WORK/check.out"
check_fails "p11tool --login with a wrong GNUTLS_PIN" env GNUTLS_PIN="not-$PIN" \
  p11tool --provider "$AKV_MODULE" --login --list-all-privkeys "$url"
printf 'cn = "login through certtool"\nserial = 7\nexpiration_days = 2\nsigning_key\n' >"$WORK/cert.tmpl"
check "certtool self-signs with the vault key (GNUTLS_PIN)" env GNUTLS_PIN="$PIN" \
  timeout 60 certtool --provider "$AKV_MODULE" --generate-self-signed \
  --load-privkey "$url;object=login-ec;type=private" --template "$WORK/cert.tmpl" \
  --outfile "$WORK/gnutls.crt"
check "openssl verifies the certificate's self-signature" \
  openssl verify -CAfile "$WORK/gnutls.crt" -check_ss_sig "$WORK/gnutls.crt"
openssl x509 -in "$WORK/gnutls.crt" -noout -pubkey >"$WORK/gnutls.pub" 2>/dev/null || true
check "the certificate carries the vault's EC key" \
  cmp -s <(openssl pkey -pubin -in "$WORK/gnutls.pub" -outform DER) \
  <(openssl pkey -pubin -in "$WORK/ec.pem" -outform DER)

section "OpenSSL engine: the PIN in the URI"
euri="pkcs11:token=login1;object=login-rsa;type=private"
check_fails "pkeyutl -sign without a PIN fails" env PKCS11_MODULE_PATH="$AKV_MODULE" \
  timeout 60 openssl pkeyutl -engine pkcs11 -keyform engine -inkey "$euri" -sign \
  -pkeyopt digest:sha256 -in "$WORK/data.sha256" -out "$WORK/eng-nopin.sig" </dev/null
check "pkeyutl -sign with pin-value in the URI" env PKCS11_MODULE_PATH="$AKV_MODULE" \
  timeout 60 openssl pkeyutl -engine pkcs11 -keyform engine -inkey "$euri;pin-value=$PIN" -sign \
  -pkeyopt digest:sha256 -in "$WORK/data.sha256" -out "$WORK/eng.sig" </dev/null
check "the engine's signature verifies with openssl and the vault's key" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/rsa.pem" -pkeyopt digest:sha256 \
  -in "$WORK/data.sha256" -sigfile "$WORK/eng.sig"

section "key generation and writes"
check_fails "--keypairgen without login on the login slot is refused" p11tool_m --keypairgen \
  --key-type EC:prime256v1 --label login-gen0
check_grep "with CKR_USER_NOT_LOGGED_IN" "CKR_USER_NOT_LOGGED_IN" "$WORK/check.out"
check "--login --keypairgen on the login slot" p11tool_m --login --pin "$PIN" --keypairgen \
  --key-type EC:prime256v1 --label login-gen1 --id 4711
check "the new key signs after login" p11tool_m --login --pin "$PIN" --sign -m ECDSA \
  --signature-format openssl --id 4711 -i "$WORK/data.sha256" -o "$WORK/gen1.sig"
kv_key_pem login-gen1 "$WORK/gen1.pem" || fail "vault key login-gen1"
check "and openssl verifies it with the vault's key" openssl pkeyutl -verify -pubin \
  -inkey "$WORK/gen1.pem" -in "$WORK/data.sha256" -sigfile "$WORK/gen1.sig"
check_fails "--keypairgen on a login-none slot is refused (pkcs11-tool asks CKA_PRIVATE=TRUE)" \
  env AKV_PKCS11_CONFIG="$WORK/open.json" pkcs11-tool --module "$AKV_MODULE" --keypairgen \
  --key-type EC:prime256v1 --label login-gen2
check_grep "with CKR_ATTRIBUTE_VALUE_INVALID" "CKR_ATTRIBUTE_VALUE_INVALID" "$WORK/check.out"
kv_call GET /keys/login-gen2 >/dev/null 2>&1 && _check_result 1 "no login-gen2 in the vault" ||
  _check_result 0 "no login-gen2 in the vault"

section "the log names wrong PINs, never the PIN"
module_config "$WORK/logged.json" "$(jq -cn --arg h "$HASH" '{login: "required", pin_hash: $h}')" \
  "$(jq -cn --arg l "$WORK/module.log" '{log_file: $l, log_level: "debug"}')"
check_fails "a wrong PIN" env AKV_PKCS11_CONFIG="$WORK/logged.json" AKV_PKCS11_DEBUG=all \
  pkcs11-tool --module "$AKV_MODULE" --login --pin "wrong-$PIN" -O
check "the right PIN" env AKV_PKCS11_CONFIG="$WORK/logged.json" AKV_PKCS11_DEBUG=all \
  pkcs11-tool --module "$AKV_MODULE" --login --pin "$PIN" -O
check_grep "the wrong PIN is logged" "wrong user PIN \(1 in a row\); answering after 250 ms" \
  "$WORK/module.log"
check_grep "the login is logged" "slot 0: user logged in" "$WORK/module.log"
check "no PIN in the log" bash -c '! grep -qF -- "$1" "$2"' _ "$PIN" "$WORK/module.log"

section "pin: certificate_password: the PIN is the password of the client certificate's key"
cert_file=$(emu_field '.client_certificate_file // empty')
[ -n "$cert_file" ] && [ -f "$cert_file" ] || fail "the emulator names no client_certificate_file"
CPIN="cert-pin-$$"
{ openssl x509 -in "$cert_file" && openssl pkey -in "$cert_file" -aes256 -passout "pass:$CPIN"; } \
  >"$WORK/cred.pem" || fail "encrypting the certificate key"
chmod 600 "$WORK/cred.pem"
module_config "$WORK/certpin.json" '{"pin": "certificate_password"}' "$(jq -cn --arg p "$WORK/cred.pem" \
  --arg t "$EMU_TENANT" --arg c "$EMU_CLIENT_ID" --arg a "$EMU_AUTHORITY" \
  '{credential: {type: "client_certificate", tenant_id: $t, client_id: $c, certificate_path: $p,
                 authority_host: $a}}')"
certpin() { env AKV_PKCS11_CONFIG="$WORK/certpin.json" pkcs11-tool --module "$AKV_MODULE" "$@"; }
stats_reset
check "pkcs11-tool -O without the PIN" certpin -O
check_nogrep "no object at all without the PIN" "Object" "$WORK/check.out"
check_fails "a wrong PIN" certpin --login --pin "not-$CPIN" -O
check_grep "is CKR_PIN_INCORRECT" "CKR_PIN_INCORRECT" "$WORK/check.out"
check_eq "no token was asked for without the right PIN" 0 "$(stats_get token)"
check "--login with the key's password lists the keys" certpin --login --pin "$CPIN" -O
check_grep "the private key is listed" "^Private Key Object" "$WORK/check.out"
check "and signs" certpin --login --pin "$CPIN" --sign -m SHA256-RSA-PKCS --id "$rsa_id" \
  -i "$WORK/data" -o "$WORK/certpin.sig"
check "the signature verifies with openssl and the vault's key" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/certpin.sig" "$WORK/data"
check "the token came from the client assertion ($(stats_get token) token requests)" \
  test "$(stats_get token)" -ge 1

section "a slot without login refuses CKA_PRIVATE=TRUE"
printf 'x' >"$WORK/obj.txt"
check_fails "--write-object --private on a login-none slot is refused" \
  env AKV_PKCS11_CONFIG="$WORK/open.json" pkcs11-tool --module "$AKV_MODULE" --login --pin 0000 \
  --write-object "$WORK/obj.txt" --type data --label private-ask --private
check_grep "with CKR_ATTRIBUTE_VALUE_INVALID" "CKR_ATTRIBUTE_VALUE_INVALID" "$WORK/check.out"
check "and nothing was stored" env AKV_PKCS11_CONFIG="$WORK/open.json" pkcs11-tool --module "$AKV_MODULE" -O
check_nogrep "no object private-ask" "private-ask" "$WORK/check.out"

finish
