#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every credential kind gets a token from the emulator and pkcs11-tool -O lists the keys;
# a wrong secret fails at the first network use (not at C_Initialize) with a log line naming the
# credential and the HTTP error, without falling through to managed identity or az (one identity
# per slot, docs/config.md "Credential chain"); secrets and tokens never reach the log. Every source stays on loopback.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool jq curl
need_module

emu_start --vault cred1 --vault cred2
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
KV_URL=$EMU_VAULT_URL_1 kv_create_ec other-ec P-256 || fail "seeding"
export AKV_PKCS11_OBJECTS=keys

# Environment with no credential at all; each case adds exactly one. Every source stays on
# loopback: IMDS at a closed port and az at a path that does not exist unless the case sets them
# (the last assignment given to env wins).
CRED_VARS=(AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_CLIENT_CERTIFICATE_PATH
  AZURE_FEDERATED_TOKEN_FILE IDENTITY_ENDPOINT IDENTITY_HEADER AZURE_POD_IDENTITY_AUTHORITY_HOST
  IMDS_ENDPOINT MSI_ENDPOINT MSI_SECRET AKV_PKCS11_IMDS_ENDPOINT AKV_PKCS11_AZ_PATH)
NO_SOURCES=(AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9 AKV_PKCS11_AZ_PATH=/nonexistent/az)
# An empty PATH directory in front, so no real `az` can be found except the fake one.
mkdir -p "$WORK/nobin" "$WORK/azbin"

# lists_keys DESC OP ENV...: pkcs11-tool -O under `env -u <all credential vars> ENV...` lists both
# keys, and the emulator saw its token requested at endpoint OP ("token": Entra, "imds",
# "appservice").
lists_keys() {
  local desc=$1 op=$2 unset_args=() v
  shift 2
  for v in "${CRED_VARS[@]}"; do unset_args+=(-u "$v"); done
  fresh_cache # a listing served from the cross-process cache would need no token at all
  fresh_keyring # nor would a token an earlier process shared (docs/security.md)
  stats_reset
  check "$desc: pkcs11-tool -O succeeds" \
    env "${unset_args[@]}" PATH="$WORK/nobin:$PATH" "${NO_SOURCES[@]}" "$@" timeout 60 pkcs11-tool --module "$AKV_MODULE" -O
  cp "$WORK/check.out" "$WORK/last-O.out"
  check_grep "$desc: rsa2048 listed" "label: +rsa2048\$" "$WORK/last-O.out"
  check_grep "$desc: ec-p256 listed" "label: +ec-p256\$" "$WORK/last-O.out"
  check "$desc: the token came from the '$op' endpoint (ops: $(stats_ops))" test "$(stats_get "$op")" -ge 1
}

section "client secret (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
lists_keys "client secret" token AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" \
  AZURE_CLIENT_SECRET="$EMU_CLIENT_SECRET" AZURE_AUTHORITY_HOST="$EMU_AUTHORITY"

section "client certificate (AZURE_CLIENT_CERTIFICATE_PATH, signed client assertion)"
cert_file=$(emu_field '.client_certificate_file // empty')
if [ -n "$cert_file" ] && [ -f "$cert_file" ]; then
  lists_keys "client certificate" token AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" \
    AZURE_CLIENT_CERTIFICATE_PATH="$cert_file" AZURE_AUTHORITY_HOST="$EMU_AUTHORITY"
else
  check "ready file names an existing client_certificate_file" false
fi

section "workload identity (AZURE_FEDERATED_TOKEN_FILE)"
fed_file=$(emu_field '.federated_token_file // empty')
if [ -n "$fed_file" ] && [ -f "$fed_file" ]; then
  lists_keys "workload identity" token AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" \
    AZURE_FEDERATED_TOKEN_FILE="$fed_file" AZURE_AUTHORITY_HOST="$EMU_AUTHORITY"
else
  check "ready file names an existing federated_token_file" false
fi

section "managed identity: IMDS (endpoint overridden by AZURE_POD_IDENTITY_AUTHORITY_HOST)"
imds=$(emu_field '.imds_endpoint // empty')
if [ -n "$imds" ]; then
  lists_keys "managed identity (IMDS)" imds AZURE_POD_IDENTITY_AUTHORITY_HOST="$imds"
else
  check "ready file has imds_endpoint" false
fi

section "managed identity: App Service (IDENTITY_ENDPOINT, IDENTITY_HEADER)"
id_ep=$(emu_field '.identity_endpoint // empty')
id_hdr=$(emu_field '.identity_header // empty')
if [ -n "$id_ep" ] && [ -n "$id_hdr" ]; then
  lists_keys "managed identity (App Service)" appservice IDENTITY_ENDPOINT="$id_ep" IDENTITY_HEADER="$id_hdr"
else
  check "ready file has identity_endpoint and identity_header" false
fi

section "Azure CLI (a fake az first in PATH that fetches its token from the emulator)"
# The fake az (lib.sh fake_az) gets its token with the emulator's client secret, which the
# module itself never sees here.
fake_az "$WORK/azbin/az"
lists_keys "Azure CLI" token PATH="$WORK/azbin:$WORK/nobin:$PATH" AKV_PKCS11_AZ_PATH=az
check_grep "the module ran 'az account get-access-token'" "^az account get-access-token" "$WORK/azbin/az.calls"
check "Azure CLI: IMDS was probed (a closed loopback port) and cost the emulator nothing ($(stats_ops))" \
  test "$(stats_get imds)" = 0

section "explicit selection: AKV_PKCS11_CREDENTIAL=managed_identity wins over a client secret"
if [ -n "$imds" ]; then
  lists_keys "explicit managed identity" imds AKV_PKCS11_CREDENTIAL=managed_identity \
    AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" AZURE_CLIENT_SECRET="$EMU_CLIENT_SECRET" \
    AZURE_AUTHORITY_HOST="$EMU_AUTHORITY" AZURE_POD_IDENTITY_AUTHORITY_HOST="$imds"
  check_eq "explicit managed identity: no client-credentials token was requested" 0 "$(stats_get token)"
fi

section "per-slot credential: vault 2 uses managed identity, vault 1 the global client secret"
if [ -n "$imds" ]; then
  jq -n --slurpfile r "$EMU_READY" --arg imds "$imds" '($r[0]) as $r | {
    ca_file: $r.ca_file, allowed_hosts: ["localhost"], cache_file: "",
    credential: {type: "client_secret", tenant_id: $r.tenant_id, client_id: $r.client_id,
                 client_secret: $r.client_secret, authority_host: $r.authority_host},
    slots: [{url: $r.vaults[0].url, label: "cred1", objects: ["keys"]},
            {url: $r.vaults[1].url, label: "cred2", objects: ["keys"],
             credential: {type: "managed_identity", imds_endpoint: $imds}}]}' >"$WORK/perslot.json"
  chmod 600 "$WORK/perslot.json"
  fresh_cache
  fresh_keyring
  stats_reset
  check "per-slot: pkcs11-tool --token-label cred2 -O" env AKV_PKCS11_CONFIG="$WORK/perslot.json" \
    timeout 60 pkcs11-tool --module "$AKV_MODULE" --token-label cred2 -O
  check_grep "per-slot: vault 2's key listed" "label: +other-ec\$" "$WORK/check.out"
  check "per-slot: vault 2's token came from IMDS (ops: $(stats_ops))" test "$(stats_get imds)" -ge 1
  check_eq "per-slot: no client-secret token for vault 2" 0 "$(stats_get token)"
  fresh_cache
  fresh_keyring
  stats_reset
  check "per-slot: pkcs11-tool --token-label cred1 -O" env AKV_PKCS11_CONFIG="$WORK/perslot.json" \
    timeout 60 pkcs11-tool --module "$AKV_MODULE" --token-label cred1 -O
  check_grep "per-slot: vault 1's key listed" "label: +rsa2048\$" "$WORK/check.out"
  check "per-slot: vault 1's token came from the client secret (ops: $(stats_ops))" test "$(stats_get token)" -ge 1
fi

section "wrong client secret, managed identity and az available: C_Initialize works offline, the first network use fails with the secret's error"
# IMDS (the emulator's) and az (the fake, which would work) are there too; the module
# must not fall through to them: one identity per slot (docs/config.md).
unset_args=()
for v in "${CRED_VARS[@]}"; do unset_args+=(-u "$v"); done
fresh_cache
WRONG='wrong-secret-for-the-test-0123456789'
wrong_env=(env "${unset_args[@]}" AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID"
  AZURE_CLIENT_SECRET="$WRONG" AZURE_AUTHORITY_HOST="$EMU_AUTHORITY" PATH="$WORK/azbin:$WORK/nobin:$PATH"
  AZURE_POD_IDENTITY_AUTHORITY_HOST="${imds:-http://127.0.0.1:9}" AKV_PKCS11_AZ_PATH="$WORK/azbin/az")
: >"$WORK/azbin/az.calls"
stats_reset
check "pkcs11-tool -L (C_Initialize, slot and token info) succeeds with a wrong secret" \
  "${wrong_env[@]}" timeout 60 pkcs11-tool --module "$AKV_MODULE" -L
check_eq "-L made no vault request" 0 "$(stats_total)"
check_eq "-L asked for no token" '{}' "$(stats_ops)"
rc=0
"${wrong_env[@]}" timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/wrong.out" 2>"$WORK/wrong.err" || rc=$?
sed 's/^/#   | /' "$WORK/wrong.out" "$WORK/wrong.err" | tail -n 20
check "pkcs11-tool -O fails with a wrong secret (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
cat "$WORK/wrong.out" "$WORK/wrong.err" >"$WORK/wrong.all"
check_grep "pkcs11-tool reports CKR_DEVICE_ERROR" "CKR_DEVICE_ERROR" "$WORK/wrong.all"
check_grep "the module's log names the credential (client secret)" "[Cc]lient[ _-]?[Ss]ecret" "$WORK/wrong.err"
check_grep "the module's log gives the HTTP error" "(HTTP|status)[^0-9]*(400|401)|invalid_client" "$WORK/wrong.err"
check_nofixed "the wrong secret itself is not logged" "$WRONG" "$WORK/wrong.all"
check_eq "one credential error line, the secret's" 1 "$(grep -c 'credential' "$WORK/wrong.err")"
check_grep "it names the source by where the secret came from, the fix, and that no other source is tried" \
  "credential: client secret \(environment: AZURE_CLIENT_SECRET\), .* failed: HTTP 401 .*; fix: .*no other source is tried" "$WORK/wrong.err"
check_eq "no IMDS request ($(stats_ops))" 0 "$(stats_get imds)"
check_eq "az was not run" 0 "$(wc -l <"$WORK/azbin/az.calls")"
check_nogrep "the log mentions no managed identity" "managed identity|Azure CLI" "$WORK/wrong.err"

section "a wrong client_secret in the configuration file: one line at the default log level"
# The credential's line names the source (by where the secret came from), the error and the fix;
# the follow-ups of the same failure (no access token, listing keys) are at debug only.
module_config "$WORK/good-conf.json"
jq --arg s "$WRONG" '.credential = (.credential + {type: "auto", client_secret: $s})' \
  "$WORK/good-conf.json" >"$WORK/wrong-conf.json"
chmod 600 "$WORK/wrong-conf.json"
conf_env=(env "${unset_args[@]}" AKV_PKCS11_CONFIG="$WORK/wrong-conf.json" PATH="$WORK/azbin:$WORK/nobin:$PATH"
  AZURE_POD_IDENTITY_AUTHORITY_HOST="${imds:-http://127.0.0.1:9}" AKV_PKCS11_AZ_PATH="$WORK/azbin/az")
fresh_cache
fresh_keyring
: >"$WORK/azbin/az.calls"
stats_reset
rc=0
"${conf_env[@]}" timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/conf.out" 2>"$WORK/conf.err" || rc=$?
sed 's/^/#   | /' "$WORK/conf.err" | tail -n 5
check "pkcs11-tool -O fails (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check_grep "pkcs11-tool reports CKR_DEVICE_ERROR" CKR_DEVICE_ERROR "$WORK/conf.err"
grep ' akv-pkcs11\[[0-9]*\] ' "$WORK/conf.err" >"$WORK/conf.lines" || true
check_eq "exactly one module log line at the default level" 1 "$(wc -l <"$WORK/conf.lines")"
check_grep "it is the credential's error, naming the source by where the secret came from" \
  "ERROR auth: credential: client secret \(configuration\), tenant $EMU_TENANT, client $EMU_CLIENT_ID failed: " \
  "$WORK/conf.lines"
check_grep "it gives the error (Entra's 401 invalid_client)" "failed: HTTP 401 from [^ ]*: invalid_client" "$WORK/conf.lines"
check_grep "and the fix" "; fix: check tenant .*, and replace the client secret .*client_secret.* \(no other source is tried" \
  "$WORK/conf.lines"
check_nofixed "the wrong secret is not logged" "$WRONG" "$WORK/conf.err"
check_eq "no IMDS request, az not run ($(stats_ops))" "0 0" "$(stats_get imds) $(wc -l <"$WORK/azbin/az.calls")"
fresh_cache
fresh_keyring
rc=0
"${conf_env[@]}" AKV_PKCS11_LOG_LEVEL=debug timeout 60 pkcs11-tool --module "$AKV_MODULE" -O \
  >"$WORK/conf-debug.out" 2>"$WORK/conf-debug.err" || rc=$?
check "with debug logging, pkcs11-tool -O fails the same (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check_grep "debug keeps the follow-up: no access token" \
  "DEBUG auth: https://[^ ]*: no access token \(KV_E_AUTH\) from client secret \(configuration\)" "$WORK/conf-debug.err"
check_grep "debug keeps the follow-up: the listing that failed" "DEBUG cache: https://[^ ]*: listing keys: KV_E_AUTH" \
  "$WORK/conf-debug.err"
check_eq "still one error or warning line, the credential's" 1 \
  "$(grep -c ' akv-pkcs11\[[0-9]*\] \(ERROR\|WARN\) ' "$WORK/conf-debug.err" || true)"

section "debug logging never shows the secret or the access token"
fresh_cache
fresh_keyring
stats_reset
rc=0
env AKV_PKCS11_DEBUG=all timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/debug.out" 2>"$WORK/debug.err" || rc=$?
check_eq "pkcs11-tool -O with AKV_PKCS11_DEBUG=all succeeds" 0 "$rc"
check "debug log is not empty" test -s "$WORK/debug.err"
check_nofixed "debug log does not contain the client secret" "$EMU_CLIENT_SECRET" "$WORK/debug.err"
# Access tokens are JWTs: "eyJ<header>.eyJ<claims>"; none may appear.
check_nogrep "debug log contains no bearer token" "Bearer +ey|eyJ[A-Za-z0-9_-]{10,}\\.eyJ" "$WORK/debug.err"

finish
