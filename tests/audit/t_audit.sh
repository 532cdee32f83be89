#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The audit trail (docs/audit.md) written by the module through real consumers: one JSON line per
# remote operation with identifiers and outcomes, mode 0600, and never a secret, token or data.
source "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool jq openssl
need_module

emu_start --vault audit1
kv_create_rsa signer 2048 || fail "seeding signer"
kv_create_ec ec256 P-256 || fail "seeding ec256"
SECRET_VALUE="audit-secret-$RANDOM-$RANDOM"
kv_set_secret dbpass "$SECRET_VALUE" || fail "seeding the secret"

AUDIT="$WORK/audit.jsonl"
CFG="$WORK/module.json"
module_config "$CFG" '{}' "$(jq -cn --arg a "$AUDIT" '{audit_file: $a}')"
export AKV_PKCS11_CONFIG="$CFG"

section "listing and signing write audit lines"
p11tool_m -O >"$WORK/objects.txt" 2>"$WORK/o.err" || { cat "$WORK/o.err" >&2; fail "pkcs11-tool -O"; }
id=$(kv_key_id signer)
head -c 1000 /dev/urandom >"$WORK/data"
check "sign with the vault key" p11tool_m --sign -m SHA256-RSA-PKCS --id "$id" -i "$WORK/data" -o "$WORK/sig"
check "read the secret value" p11tool_m --read-object --type data --label dbpass -o "$WORK/secret.out"

check "audit file exists" test -s "$AUDIT"
check_eq "audit file mode is 0600" "$(stat -c %a "$AUDIT")" 600
check "every line is one JSON object" jq -e -s 'length > 0 and all(type == "object")' "$AUDIT"
check "every line has the schema's fields" jq -e -s 'all(has("time") and has("pid") and has("process") and has("producer")
  and has("kid") and has("ck_rv") and has("vault")
  and has("operation") and has("name") and has("version") and has("alg") and has("outcome")
  and has("http_status") and has("latency_ms") and has("client_request_id") and has("request_id"))' "$AUDIT"
check "the sign is recorded with its key, version, alg and request ids" jq -e -s --arg v "$EMU_VAULT_URL" '
  [.[] | select(.operation == "keys.sign")] | length == 1 and
  (.[0] | .name == "signer" and (.version | test("^[0-9a-f]{32}$")) and .alg == "RS256" and
   .outcome == "KV_OK" and .ck_rv == "CKR_OK" and .http_status == 200 and .vault == $v and
   .process == "pkcs11-tool" and .kid == ($v + "/keys/signer/" + .version) and
   (.client_request_id | test("^[0-9a-f-]{36}$")) and (.request_id | length > 0))' "$AUDIT"
check "the listing is recorded without a kid" jq -e -s \
  '[.[] | select(.operation == "keys.list")] | length >= 1 and all(.kid == null)' "$AUDIT"
check "the secret read is recorded by name" jq -e -s \
  '[.[] | select(.operation == "secrets.get" and .name == "dbpass" and .outcome == "KV_OK")] | length == 1' "$AUDIT"
check "every line names its producer and the project version" jq -e -s --arg v "${AKV_VERSION:?}" \
  'all(.producer == "akv-pkcs11/" + $v)' "$AUDIT"
check "pids are this run's consumers" jq -e -s 'all(.pid > 1)' "$AUDIT"
check_nogrep "the secret value is never written" "$SECRET_VALUE" "$AUDIT"
check_nogrep "no token is written" "eyJ" "$AUDIT"
check_nogrep "the client secret is never written" "$EMU_CLIENT_SECRET" "$AUDIT"

section "a failed operation is recorded with its outcome"
# A second process served from the cross-process cache file makes no listing, so a persistent 503
# hits the sign itself; a short deadline bounds the retries.
module_config "$CFG" '{}' "$(jq -cn --arg a "$AUDIT" --arg c "$WORK/p11-cache" \
  '{audit_file: $a, cache_file: $c, deadline_ms: 2000, max_retries: 2}')"
p11tool_m -O >/dev/null 2>&1 || fail "pkcs11-tool -O to fill the cache file"
emu_faults "503" || fail "setting the 503 fault"
before=$(wc -l <"$AUDIT")
check_fails "signing fails while the vault answers 503" \
  p11tool_m --sign -m SHA256-RSA-PKCS --id "$id" -i "$WORK/data" -o "$WORK/sig2"
emu_faults "" || fail "clearing faults"
check "every failed sign is audited with its outcome and status" jq -e -s --argjson n "$before" '
  .[$n:] | [.[] | select(.operation == "keys.sign")] | length >= 1 and
  all(.outcome == "KV_E_SERVER" and .ck_rv == "CKR_DEVICE_ERROR" and .http_status == 503 and
      .name == "signer")' "$AUDIT"

section "an audit file that cannot be opened fails C_Initialize"
module_config "$WORK/bad.json" '{}' '{"audit_file": "/nonexistent-dir/audit.jsonl"}'
AKV_PKCS11_CONFIG="$WORK/bad.json" p11tool_m -L >"$WORK/bad.out" 2>"$WORK/bad.err" && rc=0 || rc=$?
check "pkcs11-tool -L fails" test "$rc" -ne 0
check_grep "the log names the audit file" "cannot open audit file /nonexistent-dir/audit.jsonl" "$WORK/bad.err"

finish
