#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# akv-p11 against the emulator: doctor's diagnosis of a healthy slot, a slot with a wrong
# client secret (per-slot credential in a 0600 config file) and a key whose key_ops lack sign, as
# JSON compared field by field and as text; the credential chain (type auto): a wrong secret ends
# it with IMDS not asked, and doctor lists every source (configured, in use, why skipped); doctor
# makes no crypto request unless --probe-sign;
# configuration errors exit 2 with the loader's message; `list --json` lists exactly the seeded
# objects; `uri` output is a working key URI for openssl's pkcs11 engine and for p11tool; usage.
# Errors that name their cause: no configuration is a problem naming where doctor looked (and the module
# logs one line naming the places); a configuration error is logged once; a tenant and client id
# without a secret name the missing AZURE_CLIENT_SECRET; a ca_file without the
# issuing CA (token endpoint, vault), a 404 from a loopback web server that is not a vault and a
# vault name that does not resolve (only in a loopback-only network namespace) each name the cause
# and the fix, without retries; against a loopback listener that never answers, doctor prints its
# progress while it runs, stops that slot after its first timeout and checks the next slot.
# Inputs: AKV_EMULATOR, AKV_MODULE, AKV_P11, INTEG_LIB (tests/integration/lib.sh).
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool jq curl openssl p11tool
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
ENGINE_SO=$(find /usr/lib -name pkcs11.so -path '*engines-3*' 2>/dev/null | head -n1)
[ -n "$ENGINE_SO" ] || skip "the OpenSSL pkcs11 engine (libengine-pkcs11-openssl) is not installed"

p11() { "$AKV_P11" --module "$AKV_MODULE" "$@"; }

section "seed two vaults through REST"
emu_start --vault good --vault second
kv_create_rsa rsa2048 2048 || fail "seeding rsa2048"
kv_create_ec ec-p256 P-256 || fail "seeding ec-p256"
kv_call POST /keys/verify-only/create '{"kty":"EC","crv":"P-256","key_ops":["verify"]}' >/dev/null ||
  fail "seeding verify-only"
kv_create_cert tlscert "CN=doctor.test" RSA 2048 || fail "seeding the certificate"
kv_create_ec dup P-256 || fail "seeding dup"
KV_URL=$EMU_VAULT_URL_1 kv_create_ec dup P-256 || fail "seeding dup in the second vault"
KV_URL=$EMU_VAULT_URL_1 kv_create_rsa other 2048 || fail "seeding other"

# Configuration files: no credential may come from the environment.
unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL
WRONG_SECRET="wrong-secret-$RANDOM$RANDOM"
module_config "$WORK/healthy2.json"
jq --arg s "$WRONG_SECRET" '.slots[1].credential = {type: "client_secret",
    tenant_id: .credential.tenant_id, client_id: .credential.client_id, client_secret: $s}' \
  "$WORK/healthy2.json" >"$WORK/doctor.json"
chmod 600 "$WORK/doctor.json"
# Healthy: the first vault only, without the verify-only key (key_filter, as the module applies it).
jq '.slots = [.slots[0] + {key_filter: "[!v]*"}]' "$WORK/healthy2.json" >"$WORK/healthy.json"
chmod 600 "$WORK/healthy.json"
check_eq "the config with the per-slot secret is mode 600" 600 "$(stat -c %a "$WORK/doctor.json")"

section "doctor --json: one healthy slot, one wrong secret, one key without sign"
stats_reset
rc=0
p11 --config "$WORK/doctor.json" doctor --json >"$WORK/doctor.out" 2>"$WORK/doctor.err" || rc=$?
check_eq "doctor exits 1 when it finds problems" 1 "$rc"
check "doctor --json prints valid JSON" jq -e . "$WORK/doctor.out"
D="$WORK/doctor.out"
check_eq "exactly the two expected problems" \
  "CREDENTIAL_FAILED|second|
SIGN_NOT_PERMITTED|good|verify-only" \
  "$(jq -r '.problems[] | "\(.code)|\(.slot)|\(.key // "")"' "$D" | LC_ALL=C sort)"
check_eq "problem_count and healthy" "2 false" "$(jq -r '"\(.problem_count) \(.healthy)"' "$D")"
check_eq "slot good: credential ok" ok "$(jq -r '.slots[0].credential.result' "$D")"
check_eq "slot good: credential scope global" global "$(jq -r '.slots[0].credential.scope' "$D")"
check_grep "slot good: the source names the client secret credential and client id" \
  "client secret.*client $EMU_CLIENT_ID" <(jq -r '.slots[0].credential.source' "$D")
check_eq "slot good: identity tenant from the token claims" "$EMU_TENANT" \
  "$(jq -r '.slots[0].credential.identity.tenant_id' "$D")"
check_eq "slot good: identity app id from the token claims" "$EMU_CLIENT_ID" \
  "$(jq -r '.slots[0].credential.identity.app_id' "$D")"
check "slot good: identity object id present" \
  jq -e '.slots[0].credential.identity.object_id | length > 0' "$D"
check_eq "slot good: list keys ok, 5 keys (tlscert has one)" "ok 5" \
  "$(jq -r '.slots[0].list_keys | "\(.result) \(.count)"' "$D")"
check_eq "slot good: list certificates ok, 1" "ok 1" \
  "$(jq -r '.slots[0].list_certificates | "\(.result) \(.count)"' "$D")"
check_eq "slot good: permissions per key (get sign decrypt wrap)" \
  "dup ok allowed not-applicable not-applicable
ec-p256 ok allowed not-applicable not-applicable
rsa2048 ok allowed allowed allowed
tlscert ok allowed allowed allowed
verify-only ok not-allowed not-applicable not-applicable" \
  "$(jq -r '.slots[0].keys[] | "\(.name) \(.permissions.get.result) \(.permissions.sign) \(.permissions.decrypt) \(.permissions.wrap)"' "$D" | LC_ALL=C sort)"
check_eq "slot good: verify-only key_ops as the vault has them" '["verify"]' \
  "$(jq -c '.slots[0].keys[] | select(.name == "verify-only") | .key_ops' "$D")"
check_grep "the SIGN_NOT_PERMITTED message names the key_ops and the PKCS#11 consequence" \
  'key_ops \[verify\] do not permit sign.*CKR_KEY_FUNCTION_NOT_PERMITTED' \
  <(jq -r '.problems[] | select(.code == "SIGN_NOT_PERMITTED") | .message' "$D")
# The module itself says the same when a signature with that key is refused.
AKV_PKCS11_CONFIG=$WORK/healthy2.json pkcs11-tool --module "$AKV_MODULE" --sign \
  --id "$(kv_key_id verify-only)" -m ECDSA-SHA256 -i "$WORK/doctor.json" -o "$WORK/refused.sig" \
  >"$WORK/refused.out" 2>&1 || true
check_grep "C_SignInit with a key without sign answers CKR_KEY_FUNCTION_NOT_PERMITTED" \
  CKR_KEY_FUNCTION_NOT_PERMITTED "$WORK/refused.out"
check_grep "... and the module's warning names the key, its key_ops and the fix" \
  'key verify-only does not allow sign \(its key_ops: verify\).*--ops verify sign' "$WORK/refused.out"
check_eq "slot good: the module token has the vault's serial" "$(vault_serial "$EMU_VAULT_URL_0")" \
  "$(jq -r '.slots[0].module.serial' "$D")"
check_eq "slot good: the module lists the objects" ok "$(jq -r '.slots[0].module.result' "$D")"
# Every key's URIs: private and public, object=NAME, id = SHA-1 of the vault key's SPKI.
for k in rsa2048 ec-p256 verify-only; do
  id=$(kv_key_id "$k" | tr a-f A-F | sed 's/../%&/g')
  check_eq "slot good: $k has the private and public key URIs with its CKA_ID" \
    "pkcs11:model=Key%20Vault;manufacturer=akv-pkcs11;serial=$(vault_serial "$EMU_VAULT_URL_0");token=good;id=$id;object=$k;type=private
pkcs11:model=Key%20Vault;manufacturer=akv-pkcs11;serial=$(vault_serial "$EMU_VAULT_URL_0");token=good;id=$id;object=$k;type=public" \
    "$(jq -r --arg k "$k" '.slots[0].keys[] | select(.name == $k) | .uris[]' "$D" | LC_ALL=C sort)"
done
check "slot good: the certificate's URI is reported" \
  jq -e '[.slots[0].module.objects[] | select(.class == "cert" and .label == "tlscert") |
    .uri | test(";object=tlscert;type=cert$")] == [true]' "$D"
check_eq "slot second: credential failed" failed "$(jq -r '.slots[1].credential.result' "$D")"
check_eq "slot second: the per-slot credential was used" slot "$(jq -r '.slots[1].credential.scope' "$D")"
check_grep "slot second: the log line names the client secret credential and the 401" \
  'client secret.*HTTP 401.*invalid_client' <(jq -r '.slots[1].credential.log[]' "$D")
check_grep "slot second: the problem quotes the reason (invalid client secret)" \
  'no token for https://vault.azure.net.*Invalid client secret' \
  <(jq -r '.problems[] | select(.code == "CREDENTIAL_FAILED") | .message' "$D")
check_eq "slot second: the module pass is skipped with the reason" skipped \
  "$(jq -r '.slots[1].module.result' "$D")"
check_nofixed "the output never contains the wrong secret" "$WRONG_SECRET" "$D"
check_nofixed "the output never contains the real secret" "$EMU_CLIENT_SECRET" "$D"
check_nogrep "the output never contains a bearer token (JWT)" 'eyJ[A-Za-z0-9_-]{10,}\.' "$D"
check_nogrep "stderr has no stray module log lines" 'akv-pkcs11\[' "$WORK/doctor.err"
check_eq "doctor without --probe-sign made no sign request" 0 "$(stats_get keys.sign)"
check_eq "doctor without --probe-sign made no decrypt/wrap/unwrap request" "0 0 0" \
  "$(stats_get keys.decrypt) $(stats_get keys.wrapkey) $(stats_get keys.unwrapkey)"

section "doctor (text)"
rc=0
p11 --config "$WORK/doctor.json" doctor >"$WORK/doctor.txt" 2>&1 || rc=$?
check_eq "text doctor exits 1" 1 "$rc"
check_grep "text: the healthy slot's credential line" "^  credential \(global\): client secret.*: ok$" "$WORK/doctor.txt"
check_grep "text: identity line" "identity: +tenant $EMU_TENANT, app $EMU_CLIENT_ID" "$WORK/doctor.txt"
check_grep "text: verify-only line" "key verify-only \(EC P-256\):.*sign not-allowed" "$WORK/doctor.txt"
check_grep "text: the wrong secret problem" '^PROBLEM \[CREDENTIAL_FAILED\] slot second:' "$WORK/doctor.txt"
check_grep "text: the key without sign problem" '^PROBLEM \[SIGN_NOT_PERMITTED\] key verify-only' "$WORK/doctor.txt"
check_grep "text: summary" '^2 problems found$' "$WORK/doctor.txt"

section "doctor on a healthy configuration, with and without --probe-sign"
rc=0
p11 --config "$WORK/healthy.json" doctor >"$WORK/healthy.txt" 2>&1 || rc=$?
check_eq "healthy doctor exits 0" 0 "$rc"
check_grep "healthy doctor says so" '^healthy: no problems found$' "$WORK/healthy.txt"
stats_reset
rc=0
p11 --config "$WORK/healthy.json" doctor --json --probe-sign >"$WORK/probe.json" 2>&1 || rc=$?
check_eq "doctor --probe-sign exits 0" 0 "$rc"
check_eq "--probe-sign: sign verified on every sign-capable key" \
  "dup verified ES256
ec-p256 verified ES256
rsa2048 verified RS256
tlscert verified RS256" \
  "$(jq -r '.slots[0].keys[] | "\(.name) \(.permissions.sign) \(.sign_probe.alg)"' "$WORK/probe.json" | LC_ALL=C sort)"
check_eq "--probe-sign made exactly one sign request per key" 4 "$(stats_get keys.sign)"

section "credential chain (type auto): a wrong client secret ends the chain, IMDS is not asked"
# One identity per slot (docs/config.md, "Credential chain"): the emulator's IMDS would answer, but
# the configured client secret answers for the slot.
jq --arg i "$(jq -r .imds_endpoint "$EMU_READY")" --arg s "$WRONG_SECRET" \
  '.credential = (.credential + {type: "auto", client_secret: $s, imds_endpoint: $i})' \
  "$WORK/healthy.json" >"$WORK/chain.json"
chmod 600 "$WORK/chain.json"
stats_reset
rc=0
p11 --config "$WORK/chain.json" doctor --json >"$WORK/chain.out" 2>&1 || rc=$?
check_eq "a failing configured source is a problem: exit 1" 1 "$rc"
check_eq "the problem is CREDENTIAL_FAILED" CREDENTIAL_FAILED "$(jq -r '.problems[0].code' "$WORK/chain.out")"
check_grep "the source that answers for the slot is the client secret, from the configuration file" \
  '^client secret \(configuration\), tenant ' \
  <(jq -r '.slots[0].credential.source' "$WORK/chain.out")
check_eq "sources: the secret failed, the later ones were not tried (configured: no, IMDS unknown)" \
  "failed true|not_tried false|not_tried false|not_tried false|not_tried null|not_tried false" \
  "$(jq -r '[.slots[0].credential.sources[] | "\(.state) \(.configured)"] | join("|")' "$WORK/chain.out")"
check_grep "the secret's failure is the Entra error" 'HTTP 401 .*invalid_client' \
  <(jq -r '.slots[0].credential.sources[0].detail' "$WORK/chain.out")
check_grep "IMDS: not probed, and why" '^not probed: client secret .* answers for this slot' \
  <(jq -r '.slots[0].credential.sources[4].detail' "$WORK/chain.out")
check_grep "the module's line names the source, the error, the fix and the rule" \
  'credential: client secret.* failed: HTTP 401 .*invalid_client.*; fix: .*no other source is tried' \
  <(jq -r '.slots[0].credential.log[]' "$WORK/chain.out")
check_eq "no IMDS request ($(stats_ops))" 0 "$(stats_get imds)"
check_nofixed "the chain output never contains the wrong secret" "$WRONG_SECRET" "$WORK/chain.out"

section "credential chain (type auto) with no secret: managed identity (IMDS) is the slot's source"
jq --arg i "$(jq -r .imds_endpoint "$EMU_READY")" \
  '.credential = {type: "auto", imds_endpoint: $i}' "$WORK/healthy.json" >"$WORK/mi.json"
chmod 600 "$WORK/mi.json"
rc=0
p11 --config "$WORK/mi.json" doctor >"$WORK/mi.txt" 2>&1 || rc=$?
check_eq "doctor exits 0" 0 "$rc"
check_grep "text: IMDS is in use" '^      source managed identity \(IMDS\) at http://127\.0\.0\.1:[0-9]+: in_use$' "$WORK/mi.txt"
check_grep "text: the client secret was skipped, and why" \
  '^      source client secret, tenant .*: not_configured: no client secret' "$WORK/mi.txt"
check_grep "text: the Azure CLI comes after it and is not configured here" \
  '^      source Azure CLI .*: not_tried: not configured: (az_path .* is not an executable file|no az on PATH)' "$WORK/mi.txt"

section "credential chain (type auto): tenant and client id without a secret name what is missing"
# AZURE_TENANT_ID and AZURE_CLIENT_ID reach the process, AZURE_CLIENT_SECRET does not: the app's
# sources are not configured (the rule does not change), IMDS is a closed loopback port and there
# is no az, so no source answers; the missing variable is named.
jq '.credential = {type: "auto", authority_host: .credential.authority_host}' "$WORK/healthy.json" \
  >"$WORK/half.json"
chmod 600 "$WORK/half.json"
rc=0
AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" \
  p11 --config "$WORK/half.json" doctor --json >"$WORK/half.out" 2>&1 || rc=$?
check_eq "half an app credential: exit 1, CREDENTIAL_FAILED" "1 CREDENTIAL_FAILED" \
  "$rc $(jq -r '[.problems[].code] | join(",")' "$WORK/half.out")"
check_grep "the missing AZURE_CLIENT_SECRET is named, with what the other app sources need" \
  "WARN auth: credential chain: tenant_id \(AZURE_TENANT_ID\) and client_id \(AZURE_CLIENT_ID\) are set but AZURE_CLIENT_SECRET is missing \(and neither AZURE_CLIENT_CERTIFICATE_PATH for a certificate nor AZURE_FEDERATED_TOKEN_FILE for workload identity is set\), so app $EMU_CLIENT_ID is not used" \
  <(jq -r '.slots[0].credential.log[]' "$WORK/half.out")
check_grep "the source list says the same" '^not_configured no client secret \(AZURE_CLIENT_SECRET' \
  <(jq -r '.slots[0].credential.sources[0] | "\(.state) \(.detail)"' "$WORK/half.out")
# The same with the (wrong) secret in the environment: the source is named by where it came from.
rc=0
AZURE_TENANT_ID="$EMU_TENANT" AZURE_CLIENT_ID="$EMU_CLIENT_ID" AZURE_CLIENT_SECRET="$WRONG_SECRET" \
  p11 --config "$WORK/half.json" doctor --json >"$WORK/envsecret.out" 2>&1 || rc=$?
check_eq "a wrong secret from the environment: exit 1" 1 "$rc"
check_grep "the source is the client secret from AZURE_CLIENT_SECRET" \
  "^client secret \(environment: AZURE_CLIENT_SECRET\), tenant $EMU_TENANT, client $EMU_CLIENT_ID\$" \
  <(jq -r '.slots[0].credential.source' "$WORK/envsecret.out")
check_grep "its failure line names it so" \
  'credential: client secret \(environment: AZURE_CLIENT_SECRET\), .* failed: HTTP 401 ' \
  <(jq -r '.slots[0].credential.log[]' "$WORK/envsecret.out")

section "least-privilege mode: named keys, one of them misspelt, and a disabled key"
kv_create_disabled off-key || fail "seeding off-key"
jq '.slots = [.slots[0] + {keys: ["rsa2048", "rsa2084", "off-key"]}]' "$WORK/healthy.json" >"$WORK/named.json"
chmod 600 "$WORK/named.json"
stats_reset
rc=0
p11 --config "$WORK/named.json" doctor --json >"$WORK/named.out" 2>&1 || rc=$?
check_eq "named keys with a typo: exit 1" 1 "$rc"
check_eq "named keys: no list call, the reason is given" "skipped 0" \
  "$(jq -r '.slots[0].list_keys.result' "$WORK/named.out") $(stats_get keys.list)"
check_eq "named keys: the misspelt key is the one problem" "KEY_NOT_FOUND|rsa2084" \
  "$(jq -r '.problems[] | "\(.code)|\(.key)"' "$WORK/named.out")"
check_grep "named keys: the message says where to fix it" 'fix the name in the slot.s "keys" list' \
  <(jq -r '.problems[0].message' "$WORK/named.out")
check_eq "named keys: the disabled key is a note, not a problem" 1 \
  "$(jq '[.notes[] | select(.message | test("off-key is disabled"))] | length' "$WORK/named.out")"
check_eq "named keys: rsa2048 is checked and has its URIs" "ok 2" \
  "$(jq -r '.slots[0].keys[] | select(.name == "rsa2048") | "\(.permissions.get.result) \(.uris | length)"' "$WORK/named.out")"

section "configuration errors exit 2 with the loader's message"
jq '.colour = "blue"' "$WORK/healthy.json" >"$WORK/bad.json"
chmod 600 "$WORK/bad.json"
rc=0
p11 --config "$WORK/bad.json" doctor >"$WORK/bad.out" 2>&1 || rc=$?
check_eq "unknown field: exit 2" 2 "$rc"
check_grep "unknown field: the message names the field" 'configuration error: .*colour.*unknown field' "$WORK/bad.out"
cp "$WORK/doctor.json" "$WORK/open.json"
chmod 644 "$WORK/open.json"
rc=0
p11 --config "$WORK/open.json" doctor --json >"$WORK/open.out" 2>"$WORK/open.err" || rc=$?
check_eq "a readable secret file: exit 2" 2 "$rc"
check_grep "a readable secret file: the fix is chmod 600" 'chmod 600' "$WORK/open.err"
check "a readable secret file: --json still reports the error as JSON" \
  jq -e '.config.ok == false and (.config.error | test("chmod 600"))' "$WORK/open.out"

section "list"
check "list --json (healthy two-vault config)" p11 --config "$WORK/healthy2.json" list --json
cp "$WORK/check.out" "$WORK/list.json"
expected=$(for k in rsa2048 ec-p256 verify-only dup tlscert; do
  printf 'good|private|%s\ngood|public|%s\n' "$k" "$k"
done
printf 'good|cert|tlscert\nsecond|private|dup\nsecond|public|dup\nsecond|private|other\nsecond|public|other\n')
check_eq "list --json lists exactly the seeded objects" "$(LC_ALL=C sort <<<"$expected")" \
  "$(jq -r '.tokens[] | .label as $t | .objects[] | "\($t)|\(.class)|\(.label)"' "$WORK/list.json" | LC_ALL=C sort)"
check_eq "list --json: the RSA private key can sign and decrypt, 2048 bits" "true true 2048 RSA" \
  "$(jq -r '.tokens[0].objects[] | select(.label == "rsa2048" and .class == "private") |
    "\(.sign) \(.decrypt) \(.bits) \(.key_type)"' "$WORK/list.json")"
check_eq "list --json: the verify-only private key cannot sign" false \
  "$(jq -r '.tokens[0].objects[] | select(.label == "verify-only" and .class == "private") | .sign' "$WORK/list.json")"
check_eq "list --json: ids are the SHA-1 of the vault key's SPKI" "$(kv_key_id ec-p256)" \
  "$(jq -r '.tokens[0].objects[] | select(.label == "ec-p256" and .class == "public") | .id' "$WORK/list.json")"
check "list --token second (table)" p11 --config "$WORK/healthy2.json" list --token second
check_grep "the table shows the second vault's key" '^second +private +RSA-2048 +other ' "$WORK/check.out"
check_nogrep "the table shows only that token" '^good ' "$WORK/check.out"
rc=0
p11 --config "$WORK/doctor.json" list >"$WORK/list-bad.out" 2>&1 || rc=$?
check_eq "list exits 1 when a token cannot be listed" 1 "$rc"
check_grep "list names the failing token" 'token second: .*CKR_DEVICE_ERROR' "$WORK/list-bad.out"
check_grep "list still shows the healthy token" '^good +private' "$WORK/list-bad.out"

section "uri: openssl pkcs11 engine and p11tool"
export AKV_PKCS11_CONFIG="$WORK/healthy2.json" PKCS11_MODULE_PATH="$AKV_MODULE"
for k in rsa2048 ec-p256; do
  check "uri $k" p11 uri "$k"
  uri=$(cat "$WORK/check.out")
  check_grep "uri $k is its private key URI" "^pkcs11:.*;token=good;id=.*;object=$k;type=private$" "$WORK/check.out"
  kv_key_pem "$k" "$WORK/$k.pem"
  printf 'signed through a URI from akv-p11 (%s)\n' "$k" | openssl dgst -sha256 -binary >"$WORK/$k.dgst"
  check "$k: openssl pkeyutl -engine pkcs11 -sign with the uri output" \
    timeout 60 openssl pkeyutl -engine pkcs11 -keyform engine -inkey "$uri" -sign \
    -in "$WORK/$k.dgst" -pkeyopt digest:sha256 -out "$WORK/$k.sig"
  check "$k: the signature verifies with the vault's public key" \
    openssl pkeyutl -verify -pubin -inkey "$WORK/$k.pem" -in "$WORK/$k.dgst" \
    -sigfile "$WORK/$k.sig" -pkeyopt digest:sha256
  check "$k: p11tool --list-all with the uri output" p11tool --provider "$AKV_MODULE" --list-all "$uri"
  check_eq "$k: p11tool finds exactly that object" "$uri" \
    "$(grep -Eo 'URL: pkcs11:[^ ]+' "$WORK/check.out" | sed 's/^URL: //')"
done
check "p11tool --list-all pkcs11:token=good" p11tool --provider "$AKV_MODULE" --list-all "pkcs11:token=good"
check_eq "p11tool prints the same object URIs as akv-p11 list" \
  "$(jq -r '.tokens[] | select(.label == "good") | .objects[].uri' "$WORK/list.json" | LC_ALL=C sort)" \
  "$(grep -Eo 'URL: pkcs11:[^ ]+' "$WORK/check.out" | sed 's/^URL: //' | LC_ALL=C sort)"
check "uri --type cert tlscert" p11 uri --type cert tlscert
check_grep "the certificate URI" ';object=tlscert;type=cert$' "$WORK/check.out"
check "uri --type public rsa2048" p11 uri --type public rsa2048
check_grep "the public key URI" ';object=rsa2048;type=public$' "$WORK/check.out"
rc=0
p11 uri dup >"$WORK/dup.out" 2>&1 || rc=$?
check_eq "uri of a name on two tokens exits 1" 1 "$rc"
check_grep "it asks for --token" "exists on tokens 'good' and 'second'; choose one with --token" "$WORK/dup.out"
check "uri --token second dup" p11 uri --token second dup
check_grep "the second token's dup" ';token=second;.*;object=dup;type=private$' "$WORK/check.out"
rc=0
p11 uri no-such-key >"$WORK/none.out" 2>&1 || rc=$?
check_eq "uri of an unknown name exits 1" 1 "$rc"
check_grep "it says so" "no object labelled 'no-such-key'" "$WORK/none.out"
unset AKV_PKCS11_CONFIG PKCS11_MODULE_PATH

section "usage"
check "--help exits 0" "$AKV_P11" --help
check_grep "--help lists the commands" '^  doctor ' "$WORK/check.out"
for args in "" "bogus" "uri" "--type nonsense uri x" "list extra"; do
  rc=0
  # shellcheck disable=SC2086
  "$AKV_P11" $args >/dev/null 2>&1 || rc=$?
  check_eq "usage error '$args' exits 2" 2 "$rc"
done
rc=0
"$AKV_P11" --module /nonexistent/akv-pkcs11.so --config "$WORK/healthy.json" list >"$WORK/nomod.out" 2>&1 || rc=$?
check_eq "list with a missing module exits 2" 2 "$rc"
check_grep "it names the module" 'cannot load /nonexistent/akv-pkcs11.so' "$WORK/nomod.out"
rc=0
"$AKV_P11" --module /nonexistent/akv-pkcs11.so --config "$WORK/healthy.json" doctor --json >"$WORK/nomod.json" 2>&1 || rc=$?
check_eq "doctor with a missing module exits 1" 1 "$rc"
check "doctor reports MODULE_LOAD_FAILED" jq -e '[.problems[].code] == ["MODULE_LOAD_FAILED"]' "$WORK/nomod.json"


section "doctor with no configuration at all: a problem, where it looked, the smallest config"
if [ -e /etc/akv-pkcs11/config.json ]; then
  log "skipped: /etc/akv-pkcs11/config.json exists on this machine"
else
  mkdir -p "$WORK/nohome"
  rc=0
  env -u AKV_PKCS11_CONFIG -u AKV_PKCS11_VAULT_URL HOME="$WORK/nohome" \
    XDG_CONFIG_HOME="$WORK/nohome/.config" "$AKV_P11" --module "$AKV_MODULE" doctor \
    >"$WORK/noconf.txt" 2>"$WORK/noconf.err" || rc=$?
  check_eq "no configuration: doctor exits 1" 1 "$rc"
  check_grep "no configuration: the problem names every place it looked" \
    "^PROBLEM \[NO_CONFIGURATION\] no configuration found \(looked at pReserved, AKV_PKCS11_CONFIG, $WORK/nohome/.config/akv-pkcs11/config.json, /etc/akv-pkcs11/config.json, AKV_PKCS11_VAULT_URL\)" \
    "$WORK/noconf.txt"
  check_grep "no configuration: and the smallest configuration that works" \
    'the smallest configuration that works is \{"slots": \[\{"url": "https://NAME.vault.azure.net"\}\]\}' \
    "$WORK/noconf.txt"
  check_grep "no configuration: the config line says none was found" '^config: \(none found\)$' \
    "$WORK/noconf.txt"
  check_nogrep "no configuration: not called healthy" '^healthy' "$WORK/noconf.txt"
  rc=0
  env -u AKV_PKCS11_CONFIG -u AKV_PKCS11_VAULT_URL HOME="$WORK/nohome" \
    XDG_CONFIG_HOME="$WORK/nohome/.config" "$AKV_P11" --module "$AKV_MODULE" doctor --json \
    >"$WORK/noconf.json" 2>/dev/null || rc=$?
  check_eq "no configuration --json: exit 1, one problem NO_CONFIGURATION" "1 NO_CONFIGURATION" \
    "$rc $(jq -r '[.problems[].code] | join(",")' "$WORK/noconf.json")"
  check_grep "no configuration --json: config.searched" "^pReserved, AKV_PKCS11_CONFIG, " \
    <(jq -r '.config.searched' "$WORK/noconf.json")
  # The module itself: zero slots and one INFO line naming the places (p11tool passes no
  # configuration in pReserved).
  env -u AKV_PKCS11_CONFIG -u AKV_PKCS11_VAULT_URL HOME="$WORK/nohome" \
    XDG_CONFIG_HOME="$WORK/nohome/.config" AKV_PKCS11_LOG_LEVEL=info \
    timeout 60 p11tool --provider "$AKV_MODULE" --list-tokens >"$WORK/noconf-p11.out" \
    2>"$WORK/noconf-p11.err" || true
  check_eq "no configuration: the module logs one line naming the places it searched" 1 \
    "$(grep -c "INFO conf: no configuration found (looked at pReserved, AKV_PKCS11_CONFIG, $WORK/nohome/.config/akv-pkcs11/config.json, /etc/akv-pkcs11/config.json, AKV_PKCS11_VAULT_URL): no slots" "$WORK/noconf-p11.err" || true)"
fi

section "a configuration error is logged once"
rc=0
AKV_PKCS11_CONFIG="$WORK/bad.json" timeout 60 p11tool --provider "$AKV_MODULE" --list-tokens \
  >"$WORK/bad-p11.out" 2>"$WORK/bad-p11.err" || rc=$?
check_eq "the module's configuration error appears once" 1 \
  "$(grep -c 'colour.*unknown field' "$WORK/bad-p11.err" || true)"
check_grep "as the ERROR line from C_Initialize" 'ERROR conf: configuration: .*colour' "$WORK/bad-p11.err"

# Loopback servers that are not vaults (python3, bounded): "notfound" is an HTTPS web server at
# the wrong URL (404 for every path, an HTML body, no Key Vault headers); "silent" accepts TCP
# connections and never answers. Each writes its port to READY and exits after 120 s at most.
cat >"$WORK/servers.py" <<'EOF'
import http.server, socket, ssl, sys, threading, time
mode, ready = sys.argv[1], sys.argv[2]
deadline = time.time() + 120
if mode == "notfound":
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body><h1>404 Not Found</h1></body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.timeout = 1
    open(ready, "w").write(str(srv.server_address[1]))
    while time.time() < deadline:
        srv.handle_request()
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    s.settimeout(1)
    open(ready, "w").write(str(s.getsockname()[1]))
    held = []
    while time.time() < deadline:
        try:
            held.append(s.accept()[0])
        except socket.timeout:
            pass
        with open(ready + ".accepted", "w") as f:
            f.write(str(len(held)))
EOF
# serve MODE NAME [CERT KEY]: starts one, waits for its port (10 s at most), sets PORT.
serve() {
  local mode=$1 name=$2 i
  timeout 130 python3 "$WORK/servers.py" "$mode" "$WORK/$name.port" "${@:3}" \
    >"$WORK/$name.log" 2>&1 &
  bg_register $!
  for i in $(seq 100); do
    [ -s "$WORK/$name.port" ] && break
    sleep 0.1
  done
  [ -s "$WORK/$name.port" ] || fail "the $mode server did not start: $(cat "$WORK/$name.log")"
  PORT=$(cat "$WORK/$name.port")
}

# A CA of our own and a server certificate for localhost; a bundle that trusts the emulator and it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=doctor-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign -days 2 \
  -keyout "$WORK/ca2.key" -out "$WORK/ca2.pem" 2>/dev/null || fail "creating the test CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/srv2.key" -out "$WORK/srv2.csr" 2>/dev/null || fail "creating the server key"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/srv2.ext"
openssl x509 -req -in "$WORK/srv2.csr" -CA "$WORK/ca2.pem" -CAkey "$WORK/ca2.key" \
  -CAcreateserial -days 2 -extfile "$WORK/srv2.ext" -out "$WORK/srv2.pem" 2>/dev/null ||
  fail "signing the server certificate"
cat "$EMU_CA" "$WORK/ca2.pem" >"$WORK/both-ca.pem"

section "TLS trust: a ca_file without the issuing CA names the file and the fix, not retried"
jq --arg ca "$WORK/ca2.pem" '.ca_file = $ca' "$WORK/healthy.json" >"$WORK/wrongca.json"
chmod 600 "$WORK/wrongca.json"
stats_reset
rc=0
p11 --config "$WORK/wrongca.json" doctor --json >"$WORK/wrongca.out" 2>&1 || rc=$?
check_eq "untrusted token endpoint: exit 1, CREDENTIAL_FAILED" "1 CREDENTIAL_FAILED" \
  "$rc $(jq -r '[.problems[].code] | join(",")' "$WORK/wrongca.out")"
check_grep "the transport error names the ca_file in use and the fix" \
  "the certificate of localhost is not trusted: ca_file $WORK/ca2.pem does not hold the CA that issued it .*; fix: set ca_file to that CA's PEM file" \
  <(jq -r '.slots[0].credential.log[]' "$WORK/wrongca.out")
check_grep "the credential's reason says the certificate is not trusted" \
  "no response from https://localhost:[0-9]+/.*: KV_E_NETWORK: the server's certificate is not trusted; fix: set ca_file" \
  <(jq -r '.problems[0].message' "$WORK/wrongca.out")
check_nogrep "no retry of a TLS trust failure" 'retry [0-9]' <(jq -r '.slots[0].credential.log[]' "$WORK/wrongca.out")
# The vault itself untrusted (token from the emulator, the vault at a server whose CA is not in
# ca_file).
serve notfound untrusted "$WORK/srv2.pem" "$WORK/srv2.key"
jq --arg u "https://localhost:$PORT" '.slots = [{url: $u, label: "untrusted", objects: ["keys"]}]' \
  "$WORK/healthy.json" >"$WORK/untrusted.json"
chmod 600 "$WORK/untrusted.json"
rc=0
p11 --config "$WORK/untrusted.json" doctor --json >"$WORK/untrusted.out" 2>&1 || rc=$?
check_eq "untrusted vault: exit 1" 1 "$rc"
check_grep "untrusted vault: the listing problem says the certificate is not trusted, 1 attempt" \
  "listing keys failed \(KV_E_NETWORK\): .*the certificate of localhost is not trusted: ca_file $EMU_CA does not hold the CA.*KV_E_NETWORK after 1 attempt\(s\): the server's certificate is not trusted" \
  <(jq -r '.problems[] | select(.code == "LIST_FAILED") | .message' "$WORK/untrusted.out")

section "a 404 from a web server that is not a vault says the URL is probably not a vault"
jq --arg ca "$WORK/both-ca.pem" '.ca_file = $ca' "$WORK/untrusted.json" >"$WORK/notvault.json"
chmod 600 "$WORK/notvault.json"
rc=0
p11 --config "$WORK/notvault.json" doctor --json >"$WORK/notvault.out" 2>&1 || rc=$?
check_eq "not a vault: exit 1, the listing fails in doctor and in the module" \
  "1 LIST_FAILED,MODULE_OBJECTS_FAILED" "$rc $(jq -r '[.problems[].code] | join(",")' "$WORK/notvault.out")"
check_grep "not a vault: the message says so and names the URL and the fix" \
  "keys.list https://localhost:$PORT: HTTP 404 from https://localhost:$PORT without Key Vault's error body or x-ms-keyvault headers: the URL is probably not a vault; fix: check slots\[\].url" \
  <(jq -r '.problems[0].message' "$WORK/notvault.out")
check_eq "not a vault: not taken for an empty vault (KV_E_PROTOCOL)" KV_E_PROTOCOL \
  "$(jq -r '.slots[0].list_keys.rc' "$WORK/notvault.out")"
check_grep "not a vault: the module logs the same line" 'the URL is probably not a vault' \
  <(jq -r '.slots[0].module.log[]' "$WORK/notvault.out")

section "a vault name that does not resolve is named and not retried"
# Only where no DNS packet can leave the machine: inside the loopback-only network namespace that
# scripts/test.sh sets up (there the resolver fails at once). Not `ip ... | grep -q`: under
# pipefail, grep -q leaving early makes ip die of SIGPIPE and the test take the wrong branch; an
# `ip` that fails counts as an interface besides loopback.
links=$(ip -o link show 2>/dev/null) || links=unknown
if [ "$(grep -cv ': lo:' <<<"$links" || true)" != 0 ]; then
  log "skipped: this network namespace has interfaces besides loopback (run through scripts/test.sh)"
else
  jq '.allowed_hosts += ["nonexistent.invalid"] |
      .slots = [{url: "https://nonexistent.invalid", label: "nxdomain", objects: ["keys"]}]' \
    "$WORK/healthy.json" >"$WORK/dns.json"
  chmod 600 "$WORK/dns.json"
  rc=0
  p11 --config "$WORK/dns.json" doctor --json >"$WORK/dns.out" 2>&1 || rc=$?
  check_eq "DNS: exit 1, the listing fails in doctor and in the module" \
    "1 LIST_FAILED,MODULE_OBJECTS_FAILED" "$rc $(jq -r '[.problems[].code] | join(",")' "$WORK/dns.out")"
  check_grep "DNS: the transport names the host and the fix" \
    'GET https://nonexistent.invalid/keys.*: cannot resolve nonexistent.invalid: check the vault name' \
    <(jq -r '.slots[0].list_keys.log[]' "$WORK/dns.out")
  check_grep "DNS: one attempt, the cause named" \
    'keys.list https://nonexistent.invalid: KV_E_NETWORK after 1 attempt\(s\): the host name does not resolve' \
    <(jq -r '.slots[0].list_keys.log[]' "$WORK/dns.out")
  check_nogrep "DNS: no retry line" 'retry [0-9]' <(jq -r '.slots[0].list_keys.log[]' "$WORK/dns.out")
fi

section "a vault that never answers: doctor shows progress, stops the slot after its first timeout"
serve silent silent
# Three slots: a healthy vault, the silent one, and the emulator's second vault after it.
jq --arg u "https://localhost:$PORT" --arg v2 "$EMU_VAULT_URL_1" \
  '.deadline_ms = 2000 | .request_timeout_ms = 2000 |
   .slots = [.slots[0] + {key_filter: "[!v]*"},
             {url: $u, label: "silent", objects: ["keys", "certificates", "secrets"]},
             {url: $v2, label: "after", objects: ["keys"]}]' "$WORK/healthy2.json" >"$WORK/silent.json"
chmod 600 "$WORK/silent.json"
rm -f "$WORK/silent.err"
p11 --config "$WORK/silent.json" doctor >"$WORK/silent.txt" 2>"$WORK/silent.err" &
dpid=$!
seen_running=no
for _ in $(seq 300); do
  if grep -q '^doctor: slot good: list keys ok$' "$WORK/silent.err" 2>/dev/null; then
    kill -0 "$dpid" 2>/dev/null && seen_running=yes
    break
  fi
  sleep 0.1
done
rc=0
wait "$dpid" || rc=$?
check_eq "the first slot's progress is on stderr while doctor still runs" yes "$seen_running"
check_eq "doctor exits 1" 1 "$rc"
check_eq "progress, in order: the silent slot stops after its listing, the next slot is checked" \
  "doctor: slot silent: token for https://vault.azure.net ok
doctor: slot silent: list keys failed
doctor: slot silent: timed out, skipping its remaining checks
doctor: slot after: token for https://vault.azure.net ok
doctor: slot after: list keys ok" \
  "$(grep -E '^doctor: slot (silent|after): (token|list|timed)' "$WORK/silent.err")"
check_grep "the problem names the slot, the step and the deadline" \
  "^PROBLEM \[SLOT_TIMEOUT\] slot silent: listing keys got no answer from https://localhost:$PORT within deadline_ms \(2000 ms\); the slot's remaining checks are skipped" \
  "$WORK/silent.txt"
check_nogrep "no listing of certificates or secrets after the timeout" \
  'slot silent: list (certificates|secrets)' "$WORK/silent.err"
check_grep "the module pass skips the slot, with the reason" \
  'module token: +skipped .*\(the vault timed out: the module would wait as long\)' "$WORK/silent.txt"
check_grep "the slot after it is checked by the module too" '^doctor: slot after: module objects ok$' \
  "$WORK/silent.err"
check_eq "exactly one problem" "1" "$(grep -c '^PROBLEM' "$WORK/silent.txt")"
log "connections the silent server accepted: $(cat "$WORK/silent.port.accepted" 2>/dev/null || echo ?)"

finish
