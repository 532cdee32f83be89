#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Security defaults, end to end (docs/security.md):
#  - with every debug category on and a log file, full flows (listing, reading a secret data object,
#    signing, decrypting, login with a PIN, token refreshes forced by the vault) leave no client
#    secret, no bearer token (JWT "eyJ..." and the actual tokens fetched during the run), no PIN
#    and no secret value in the log or the audit file;
#  - TLS is always verified: without the emulator's CA the module refuses the vault, and the
#    configuration knows no switch that turns verification off;
#  - vault URLs must be https and, unless in allowed_hosts, in Azure's vault domains;
#  - a config file holding a client secret is refused when group/other can read it.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool pkcs11-tool openssl curl jq
need_module

emu_start --vault secv
rel_seed
SECRET_VALUE="s3cr3t-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')-value"
kv_set_secret app-password "$SECRET_VALUE" || fail "seeding the secret"
PIN="pin-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
module_config "$WORK/module.json" '{"objects":["keys","secrets"]}' \
  "$(jq -cn --arg l "$WORK/module.log" --arg a "$WORK/audit.log" '{log_file:$l,log_level:"debug",audit_file:$a}')"
export AKV_PKCS11_CONFIG="$WORK/module.json" AKV_PKCS11_DEBUG=all
head -c 32 /dev/urandom >"$WORK/digest.bin"

section "secrets never logged (AKV_PKCS11_DEBUG=all, log_level debug)"
check "listing with login (PIN)" p11tool_m --login --pin "$PIN" -O
check_grep "... lists the secret as a data object" "app-password" "$WORK/check.out"
check "reading the secret value through the module" \
  p11tool_m --read-object --type data --label app-password -o "$WORK/secret.out"
check_eq "... the value read is the vault's" "$SECRET_VALUE" "$(cat "$WORK/secret.out")"
check "ECDSA signature" p11tool_m --sign -m ECDSA --label "$REL_EC_LABEL" -i "$WORK/digest.bin" -o "$WORK/sig"
openssl pkey -pubin -inform DER -in "$REL_RSA_PUB" -out "$WORK/rsa.pem"
printf 'plaintext for the log test' >"$WORK/pt"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt" -out "$WORK/ct" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
check "RSA-OAEP decryption" p11tool_m --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 \
  --mgf MGF1-SHA256 --id "$(kv_key_id "$REL_RSA_LABEL")" -i "$WORK/ct" -o "$WORK/pt.out"
check_same_file "... gives the plaintext back" "$WORK/pt" "$WORK/pt.out"
# Make the vault refuse a token (as expired) so the module fetches a fresh one (logged paths: 401
# challenge, forced refresh, token endpoint), twice.
for i in 1 2; do
  emu_faults "token-expired@1#1" || fail "setting faults"
  check "signature after a forced token refresh ($i)" \
    p11tool_m --sign -m ECDSA --label "$REL_EC_LABEL" -i "$WORK/digest.bin" -o "$WORK/sig2"
done
emu_faults "" || fail "clearing faults"
# The first process fetched a token and shared it through the kernel keyring (docs/security.md
# "The shared access token"; the later processes took it from there, their keyring paths are in
# the log too), and each forced refresh fetched one: at least 3 (each process fetches its own
# where there is no keyring).
check "the token endpoint was asked during the run ($(stats_get token) times)" test "$(stats_get token)" -ge 3
if command -v keyctl >/dev/null 2>&1 && keyctl show @s >/dev/null 2>&1; then
  check_grep "... and the later processes took the shared token (logged without it)" \
    "token for .* taken from the kernel keyring" "$WORK/module.log"
fi
check_grep "the debug log really is on (HTTP headers traced)" "> POST /keys/" "$WORK/module.log"
check_grep "... and the Authorization header shows as redacted" "Authorization: \\[redacted\\]" "$WORK/module.log"
check_nofixed "log: no client secret" "$EMU_CLIENT_SECRET" "$WORK/module.log"
check_nofixed "audit: no client secret" "$EMU_CLIENT_SECRET" "$WORK/audit.log"
check_nofixed "log: no secret value" "$SECRET_VALUE" "$WORK/module.log"
check_nofixed "audit: no secret value" "$SECRET_VALUE" "$WORK/audit.log"
check_nofixed "log: no PIN" "$PIN" "$WORK/module.log"
check_nogrep "log: no JWT (eyJ...)" "eyJ[A-Za-z0-9_-]{8,}" "$WORK/module.log"
check_nogrep "audit: no JWT (eyJ...)" "eyJ[A-Za-z0-9_-]{8,}" "$WORK/audit.log"
check_nogrep "log: no Bearer value" "Bearer +[A-Za-z0-9_.-]{16,}" "$WORK/module.log"
# Tokens the emulator issues for this client right now share their header and claims prefix with
# the module's: the first 40 characters after the header must not appear either.
for i in 1 2; do
  tok=$(curl -sS --max-time 10 --cacert "$EMU_CA" --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$EMU_CLIENT_ID" --data-urlencode "client_secret=$EMU_CLIENT_SECRET" \
    --data-urlencode scope=https://vault.azure.net/.default "$EMU_AUTHORITY/$EMU_TENANT/oauth2/v2.0/token" |
    jq -r .access_token)
  check_nofixed "log: no part of a token's signed payload (sample $i)" "$(cut -d. -f2 <<<"$tok" | cut -c1-40)" "$WORK/module.log"
done
check "the audit file has entries (so its check means something)" test -s "$WORK/audit.log"

section "TLS is always verified"
jq 'del(.ca_file)' "$WORK/module.json" >"$WORK/noca.json" && chmod 600 "$WORK/noca.json"
rc=0
AKV_PKCS11_CA_FILE= AKV_PKCS11_CONFIG="$WORK/noca.json" timeout 60 pkcs11-tool --module "$AKV_MODULE" -O \
  >"$WORK/noca.out" 2>&1 || rc=$?
check "without the emulator's CA, the listing fails (exit $rc)" test "$rc" = 1
check_grep "... with a certificate error in the log" "certificate|SSL|TLS" "$WORK/module.log"
for sw in insecure ssl_verify verify_tls tls_verify skip_verify; do
  jq --arg k "$sw" '. + {($k): false}' "$WORK/module.json" >"$WORK/sw.json" && chmod 600 "$WORK/sw.json"
  check_fails "config field '$sw' does not exist (C_Initialize refuses it)" \
    env AKV_PKCS11_CONFIG="$WORK/sw.json" timeout 30 pkcs11-tool --module "$AKV_MODULE" -L
done
check_nogrep "no code path turns peer or host verification off" \
  "SSL_VERIFYPEER, *0|SSL_VERIFYHOST, *0|SSL_VERIFYSTATUS, *0" "$(dirname "$0")/../../src"

section "TLS secrets never written to \$SSLKEYLOGFILE"
# libcurl writes every connection's TLS secrets to the file SSLKEYLOGFILE names; with them, a
# capture of the traffic shows the bearer tokens.
rm -f "$WORK/keylog.txt"
SSLKEYLOGFILE="$WORK/keylog.txt" timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/kl.out" 2>&1
check_grep "the listing with SSLKEYLOGFILE set works (TLS connections were made)" "Private Key Object" \
  "$WORK/kl.out"
check "no TLS secret was written to \$SSLKEYLOGFILE (the file is absent or empty)" \
  test ! -s "$WORK/keylog.txt"

section "vault URLs: https, Azure domains unless allowed_hosts"
for url in "http://localhost:${EMU_VAULT_URL##*:}" "https://127.0.0.1:${EMU_VAULT_URL##*:}" \
  "https://evil.example.com" "https://myvault.vault.azure.net.evil.example.com"; do
  jq --arg u "$url" '.slots[0].url = $u' "$WORK/module.json" >"$WORK/url.json" && chmod 600 "$WORK/url.json"
  check_fails "vault URL $url is refused" \
    env AKV_PKCS11_CONFIG="$WORK/url.json" timeout 30 pkcs11-tool --module "$AKV_MODULE" -O
done

section "a config file holding a secret must not be readable by group/other"
cp "$WORK/module.json" "$WORK/perm.json"
for mode in 640 604 644; do
  chmod "$mode" "$WORK/perm.json"
  check_fails "mode $mode: C_Initialize refuses the file" \
    env AKV_PKCS11_CONFIG="$WORK/perm.json" timeout 30 pkcs11-tool --module "$AKV_MODULE" -L
  check_grep "mode $mode: ... and says why" "perm|readable|group|other|0$mode" "$WORK/check.out"
done
chmod 600 "$WORK/perm.json"
check "mode 600: accepted" env AKV_PKCS11_CONFIG="$WORK/perm.json" timeout 30 pkcs11-tool --module "$AKV_MODULE" -L
finish
