#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# integration-memcheck (meson suite `memcheck`): the module inside every kind of consumer, each
# consumer process under valgrind memcheck (tests/integration/lib.sh's AKV_MEMCHECK hook), in a
# selection small enough for CI that still covers every consumer kind — pkcs11-tool, p11tool
# (GnuTLS), ssh-keygen -D and ssh-agent's ssh-pkcs11-helper (OpenSSH), `p11-kit server` (p11-kit
# remote), openssl with the libp11 engine, the C drivers p11_count_check and p11_aes_check — and
# every crypto family: listing (keys, certificate, secret), RSA and EC signatures, RSA decryption,
# encryption and key wrap, Managed HSM AES (GCM, key wrap) and HMAC, the in-process object cache
# (p11_count_check's calls after warm-up cost the counted requests only) and the cross-process cache
# file, the client-secret, client-certificate and managed-identity credentials. (p11_cache_check's
# rotation and stale-if-error phases rely on a 4 s TTL that valgrind's slowdown breaks: they run
# in the full command only.) Every result is still checked (signatures
# verified by openssl with the vault's public key, plaintexts compared); at exit the per-process
# memcheck summary fails the test on any memcheck error or definite leak.
# The whole integration suite under memcheck: tests/reliability/memcheck_full.sh (docs/reliability.md).
export AKV_MEMCHECK=1
. "$(dirname "$0")/../integration/lib.sh"
need_tool valgrind pkcs11-tool p11tool ssh-keygen ssh-agent ssh-add p11-kit openssl jq curl
need_module
for v in P11_COUNT_CHECK P11_AES_CHECK; do
  [ -x "${!v:-}" ] || fail "$v (the built driver) is not set"
done

emu_start --vault mc1 --vault mchsm:mhsm
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
kv_create_cert mccert "CN=memcheck.test" RSA 2048 || fail "seeding the certificate"
kv_set_secret mcsecret "memcheck secret value" || fail "seeding the secret"
head -c 32 /dev/urandom >"$WORK/aes256.key"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call PUT /keys/aes256 "$(jq -cn \
  --arg k "$(b64url_of "$WORK/aes256.key")" \
  '{key:{kty:"oct-HSM",k:$k,key_ops:["encrypt","decrypt","wrapKey","unwrapKey"]}}')" \
  >/dev/null || fail "importing the Managed HSM AES key"
KV_URL=$EMU_VAULT_URL_1 KV_SCOPE=$KV_SCOPE_MHSM kv_call PUT /keys/hmac "$(jq -cn \
  --arg k "$(b64url_of "$WORK/aes256.key")" '{key:{kty:"oct-HSM",k:$k,key_ops:["sign","verify"]}}')" \
  >/dev/null || fail "importing the Managed HSM HMAC key"
kv_key_pem rsa2048 "$WORK/rsa.pem" || fail "vault key"
kv_key_pem ec-p256 "$WORK/ec.pem" || fail "vault key"
rsa_id=$(kv_key_id rsa2048) || fail "CKA_ID"
ec_id=$(kv_key_id ec-p256) || fail "CKA_ID"

# One config per purpose: the vault alone (cache file on), the Managed HSM alone.
module_config "$WORK/vault.json" '{}' "{\"cache_file\":\"$WORK/objects.cache\"}"
jq '.slots |= [.[0]]' "$WORK/vault.json" >"$WORK/v.json" && mv "$WORK/v.json" "$WORK/vault.json"
module_config "$WORK/hsm.json" '{"kind":"mhsm","objects":["keys"]}'
jq '.slots |= [.[1]]' "$WORK/hsm.json" >"$WORK/h.json" && mv "$WORK/h.json" "$WORK/hsm.json"
chmod 600 "$WORK/vault.json" "$WORK/hsm.json"
export AKV_PKCS11_CONFIG="$WORK/vault.json"
printf 'data signed under memcheck\n' >"$WORK/data"
openssl dgst -sha256 -binary "$WORK/data" >"$WORK/data.sha256"

section "pkcs11-tool: listing, cross-process cache, RSA/EC signatures, RSA decryption"
stats_reset
check "pkcs11-tool -O" timeout 120 pkcs11-tool --module "$AKV_MODULE" -O
for o in "Private Key Object; RSA" "Private Key Object; EC" "Certificate Object" "Data object"; do
  check_grep "-O lists a $o" "^$o" "$WORK/check.out"
done
n1=$(stats_total)
check "pkcs11-tool -O again (served from the cache file)" timeout 120 pkcs11-tool --module "$AKV_MODULE" -O
check_eq "the second listing cost 0 vault requests" "$n1" "$(stats_total)"
check "SHA256-RSA-PKCS sign" timeout 120 pkcs11-tool --module "$AKV_MODULE" --sign -m SHA256-RSA-PKCS \
  --id "$rsa_id" -i "$WORK/data" -o "$WORK/rsa.sig"
check "the RSA signature verifies with the vault key" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/data"
check "ECDSA sign" timeout 120 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
  --id "$ec_id" -i "$WORK/data.sha256" -o "$WORK/ec.sig"
check "the ECDSA signature verifies with the vault key" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/data.sha256" -sigfile "$WORK/ec.sig"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/data" -out "$WORK/data.oaep" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 || fail "openssl encrypt"
check "RSA-PKCS-OAEP (SHA256) decrypt" timeout 120 pkcs11-tool --module "$AKV_MODULE" --decrypt \
  -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 --id "$rsa_id" -i "$WORK/data.oaep" -o "$WORK/data.dec"
check_same_file "the decryption gives the plaintext" "$WORK/data" "$WORK/data.dec"

section "credentials: client certificate and managed identity (IMDS)"
cert_file=$(emu_field '.client_certificate_file // empty')
imds=$(emu_field '.imds_endpoint // empty')
[ -n "$cert_file" ] && [ -n "$imds" ] || fail "the ready file names no client certificate or IMDS endpoint"
# env: every -u before the first assignment (after one, "-u" would be taken as the command).
unset_cred=(-u AKV_PKCS11_CONFIG -u AZURE_CLIENT_SECRET)
creds=(AKV_PKCS11_VAULT_URL="$EMU_VAULT_URL" AKV_PKCS11_OBJECTS=keys)
fresh_cache
stats_reset
check "client certificate: pkcs11-tool -O" env "${unset_cred[@]}" "${creds[@]}" AZURE_CLIENT_CERTIFICATE_PATH="$cert_file" \
  timeout 120 pkcs11-tool --module "$AKV_MODULE" -O
check_grep "client certificate: rsa2048 listed" "label: +rsa2048\$" "$WORK/check.out"
fresh_cache
check "managed identity: pkcs11-tool -O" env "${unset_cred[@]}" -u AZURE_TENANT_ID -u AZURE_CLIENT_ID "${creds[@]}" \
  AZURE_POD_IDENTITY_AUTHORITY_HOST="$imds" timeout 120 pkcs11-tool --module "$AKV_MODULE" -O
check_grep "managed identity: ec-p256 listed" "label: +ec-p256\$" "$WORK/check.out"
check "the tokens came from Entra and IMDS ($(stats_ops))" \
  test "$(stats_get token)" -ge 1 -a "$(stats_get imds)" -ge 1

section "C drivers: C_Sign/Verify/Encrypt/Decrypt/WrapKey/UnwrapKey/GenerateKey after warm-up, Managed HSM AES"
head -c 32 /dev/urandom >"$WORK/aes.key"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/aes.key" -out "$WORK/aes.wrapped" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 || fail "openssl wrap"
module_config "$WORK/count.json" '{"objects":["keys"]}'
jq '.slots |= [.[0]]' "$WORK/count.json" >"$WORK/c.json" && mv "$WORK/c.json" "$WORK/count.json" && chmod 600 "$WORK/count.json"
check "p11_count_check" env AKV_PKCS11_CONFIG="$WORK/count.json" timeout 240 "$P11_COUNT_CHECK" "$AKV_MODULE" \
  remote rsa2048 ec-p256 "$WORK/aes.wrapped" "$WORK/aes.key"
check "p11_aes_check (AES-GCM, AES key wrap with the Managed HSM key)" env AKV_PKCS11_CONFIG="$WORK/hsm.json" \
  timeout 240 "$P11_AES_CHECK" "$AKV_MODULE" aes256 "$WORK/aes256.key"
check "pkcs11-tool -O on the Managed HSM" env AKV_PKCS11_CONFIG="$WORK/hsm.json" timeout 120 \
  pkcs11-tool --module "$AKV_MODULE" -O
hmac_id=$(obj_table "$WORK/check.out" | grep '^secret|hmac|' | cut -d'|' -f3)
check "the HMAC key is a secret key object with a CKA_ID" test -n "$hmac_id"
check "pkcs11-tool SHA256-HMAC on the Managed HSM" env AKV_PKCS11_CONFIG="$WORK/hsm.json" timeout 120 \
  pkcs11-tool --module "$AKV_MODULE" --sign -m SHA256-HMAC --id "$hmac_id" -i "$WORK/data" -o "$WORK/data.hmac"
check "the HMAC matches openssl's" bash -c 'openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -binary "$2" |
  cmp - "$3"' _ "$(hex_of "$WORK/aes256.key")" "$WORK/data" "$WORK/data.hmac"

section "OpenSSL + libp11 engine"
check "openssl pkeyutl -sign through the engine (EC)" env PKCS11_MODULE_PATH="$AKV_MODULE" timeout 120 openssl pkeyutl -engine pkcs11 -keyform engine \
  -inkey "pkcs11:token=mc1;object=ec-p256;type=private" -sign -in "$WORK/data.sha256" -out "$WORK/eng.sig"
check "the engine's signature verifies" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/data.sha256" -sigfile "$WORK/eng.sig"

section "GnuTLS p11tool, OpenSSH"
check "p11tool --list-all" timeout 120 p11tool --provider "$AKV_MODULE" --list-all "pkcs11:token=mc1"
check_grep "p11tool lists the certificate" "object=mccert;type=cert" "$WORK/check.out"
check "p11tool --test-sign (RSA)" timeout 120 p11tool --provider "$AKV_MODULE" --test-sign \
  "pkcs11:token=mc1;object=rsa2048;type=private"
check_grep "GnuTLS verified the signature" "Verifying against public key in the token\.\.\. ok" "$WORK/check.out"
check "ssh-keygen -D" timeout 120 ssh-keygen -D "$AKV_MODULE"
check_grep "ssh-keygen -D shows the EC key" "^ecdsa-sha2-nistp256 " "$WORK/check.out"
sock="$WORK/agent.sock"
timeout 240 ssh-agent -D -a "$sock" -P "$AKV_MODULE" >"$WORK/agent.out" 2>&1 &
agent=$!
bg_register "$agent"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
printf '#!/bin/sh\necho\n' >"$WORK/askpass" && chmod 700 "$WORK/askpass"
check "ssh-add -s (ssh-pkcs11-helper loads the module)" env SSH_AUTH_SOCK="$sock" SSH_ASKPASS="$WORK/askpass" \
  SSH_ASKPASS_REQUIRE=force DISPLAY=none timeout 120 ssh-add -s "$AKV_MODULE"
check "ssh-add -L lists the vault keys" env SSH_AUTH_SOCK="$sock" ssh-add -L
check_grep "the agent holds the RSA key" "^ssh-rsa " "$WORK/check.out"
check "ssh-add -e (the helper unloads the module)" env SSH_AUTH_SOCK="$sock" timeout 60 ssh-add -e "$AKV_MODULE"

section "p11-kit server + p11-kit-client.so"
psock="$WORK/p11kit.sock"
timeout 240 p11-kit server -f -n "$psock" --provider "$AKV_MODULE" "pkcs11:token=mc1" >"$WORK/server.out" 2>&1 &
server=$!
bg_register "$server"
for _ in $(seq 300); do [ -S "$psock" ] && break; sleep 0.1; done
check "p11-kit server created its socket" test -S "$psock"
check "ECDSA sign through p11-kit-client.so" env P11_KIT_SERVER_ADDRESS="unix:path=$psock" timeout 120 \
  pkcs11-tool --module /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so --token-label mc1 --sign -m ECDSA \
  --signature-format openssl --id "$ec_id" -i "$WORK/data.sha256" -o "$WORK/p11kit.sig"
check "the signature through p11-kit verifies" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/data.sha256" -sigfile "$WORK/p11kit.sig"

section "every consumer kind ran under memcheck and exited with a report"
_stop_pid "$server" || true
_stop_pid "$agent" || true
for kind in pkcs11-tool p11tool ssh-keygen ssh-pkcs11-helper p11-kit openssl p11_count_check p11_aes_check; do
  check "a $kind process was checked by memcheck" \
    bash -c 'grep -l "ERROR SUMMARY" "$1"/"$2".*.log' _ "$AKV_MEMCHECK_LOG_DIR" "$kind"
done
check "the module ran inside p11-kit-remote" \
  bash -c 'grep -l "Command: .*p11-kit-remote" "$1"/p11-kit.*.log | xargs grep -l "ERROR SUMMARY"' _ "$AKV_MEMCHECK_LOG_DIR"
finish
