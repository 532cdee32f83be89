#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The audit chain (docs/audit.md "Chain") written by the module through pkcs11-tool and checked by
# akv-p11 audit verify: a real run verifies; a changed line, a removed line and two swapped lines
# are each reported with their line number; 8 processes signing at once leave one valid chain; a
# rotation by rename links the new file to the old; a foreign file gets a restart line and signing
# goes on.
source "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool jq openssl
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 (the akv-p11 binary) is not set"

emu_start --vault chain1
kv_create_rsa signer 2048 || fail "seeding signer"

AUDIT="$WORK/audit.jsonl"
CFG="$WORK/module.json"
module_config "$CFG" '{}' "$(jq -cn --arg a "$AUDIT" '{audit_file: $a}')"
export AKV_PKCS11_CONFIG="$CFG"
id=$(kv_key_id signer)
head -c 1000 /dev/urandom >"$WORK/data"
# Bounded: a pkcs11-tool run that hangs is ended after 60 s and fails its check.
sign() {
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m SHA256-RSA-PKCS --id "$id" \
    -i "$WORK/data" -o "$1"
}
verify() { "$AKV_P11" audit verify "$@"; }

section "a real run writes a valid chain"
check "pkcs11-tool -O" p11tool_m -O -o /dev/null
check "sign" sign "$WORK/s1"
check "sign again" sign "$WORK/s2"
n=$(wc -l <"$AUDIT")
check "at least 6 lines were written ($n)" test "$n" -ge 6
verify "$AUDIT" >"$WORK/v.out" 2>&1 && rc=0 || rc=$?
check_eq "verify exits 0" "$rc" 0
check_grep "verify reports the line count" "$n lines, chain valid .seq 1 to $n." "$WORK/v.out"
check "the first line starts a new chain with 64 zeros" jq -e -s \
  '.[0].seq == 1 and .[0].chain == "new" and .[0].prev == ("0" * 64)' "$AUDIT"
check "seq counts up by one" jq -e -s '[.[].seq] == [range(1; length + 1)]' "$AUDIT"
# prev of line 3 is the SHA-256 of line 2's bytes with its newline, recomputed with sha256sum.
want=$(sed -n 2p "$AUDIT" | sha256sum | cut -d' ' -f1)
check_eq "prev is the hash of the line before" "$(sed -n 3p "$AUDIT" | jq -r .prev)" "$want"

section "a changed, a removed and two swapped lines are reported by line number"
sed '3s/"latency_ms":[0-9]*/"latency_ms":999999/' "$AUDIT" >"$WORK/changed.jsonl"
verify "$WORK/changed.jsonl" >"$WORK/v1.out" 2>&1 && rc=0 || rc=$?
check_eq "a changed line: exit 1" "$rc" 1
check_grep "a changed line: line 3 named" "changed.jsonl:3: line 3 was changed after it was written" \
  "$WORK/v1.out"
sed '4d' "$AUDIT" >"$WORK/removed.jsonl"
verify "$WORK/removed.jsonl" >"$WORK/v2.out" 2>&1 && rc=0 || rc=$?
check_eq "a removed line: exit 1" "$rc" 1
check_grep "a removed line: line 4 named" "removed.jsonl:4: 1 line.s. missing before this line" \
  "$WORK/v2.out"
awk 'NR == 2 { held = $0; next } NR == 3 { print; print held; next } { print }' "$AUDIT" \
  >"$WORK/swapped.jsonl"
verify "$WORK/swapped.jsonl" >"$WORK/v3.out" 2>&1 && rc=0 || rc=$?
check_eq "two swapped lines: exit 1" "$rc" 1
check_grep "two swapped lines: lines 2 and 3 named" "swapped.jsonl:2: lines 2 and 3 are out of order" \
  "$WORK/v3.out"

section "8 processes signing at once leave one valid chain"
before=$(wc -l <"$AUDIT")
pids=()
for i in 1 2 3 4 5 6 7 8; do
  sign "$WORK/p$i.sig" >"$WORK/p$i.out" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do
  wait "$p" || failed=$((failed + 1))
done
check_eq "all 8 signatures succeeded" "$failed" 0
verify "$AUDIT" >"$WORK/v4.out" 2>&1 && rc=0 || rc=$?
cat "$WORK/v4.out"
check_eq "verify exits 0 after the parallel run" "$rc" 0
check "8 new signing lines from 8 processes" jq -e -s --argjson n "$before" \
  '.[$n:] | [.[] | select(.operation == "keys.sign")] | length == 8 and (map(.pid) | unique | length) == 8' \
  "$AUDIT"
check "no seq repeats" jq -e -s '([.[].seq] | unique | length) == length' "$AUDIT"

section "rotation by rename: the new file continues the old one"
mv "$AUDIT" "$AUDIT.1"
check "sign after the rotation" sign "$WORK/s3"
check "the new file starts with rotated and the old file's last line's hash" jq -e -s \
  --arg h "$(tail -n 1 "$AUDIT.1" | sha256sum | cut -d' ' -f1)" \
  '.[0].seq == 1 and .[0].chain == "rotated" and .[0].prev == $h' "$AUDIT"
check "verify OLD NEW exits 0" verify "$AUDIT.1" "$AUDIT"
verify "$AUDIT" "$AUDIT.1" >"$WORK/v5.out" 2>&1 && rc=0 || rc=$?
check_eq "files in the wrong order: exit 1" "$rc" 1
check_grep "files in the wrong order: named" "audit.jsonl.1:1: does not continue" "$WORK/v5.out"
head -n -1 "$AUDIT.1" >"$WORK/cut.1"
verify "$WORK/cut.1" "$AUDIT" >"$WORK/v6.out" 2>&1 && rc=0 || rc=$?
check_eq "the old file's last line removed: exit 1" "$rc" 1
check_grep "the old file's last line removed: the link is named" "audit.jsonl:1: does not continue" \
  "$WORK/v6.out"

section "a foreign audit file gets a restart line and signing goes on"
FOREIGN="$WORK/foreign.jsonl"
printf 'Nov 25 22:49:04 host something else wrote this\n' >"$FOREIGN"
chmod 600 "$FOREIGN"
module_config "$WORK/foreign.json" '{}' "$(jq -cn --arg a "$FOREIGN" '{audit_file: $a}')"
AKV_PKCS11_CONFIG="$WORK/foreign.json" sign "$WORK/s4" 2>"$WORK/foreign.err" && rc=0 || rc=$?
check_eq "signing works" "$rc" 0
kv_key_pem signer "$WORK/signer.pem" || fail "the signer's public key"
check "the signature verifies" openssl dgst -sha256 -verify "$WORK/signer.pem" \
  -signature "$WORK/s4" "$WORK/data"
check_grep "a warning names the file and the restart" \
  "audit file $FOREIGN: the last line is not an audit line: not one JSON object; a new chain starts here" \
  "$WORK/foreign.err"
check "line 2 restarts the chain, linked to the foreign line, and says why" jq -e -R -s \
  --arg h "$(head -n 1 "$FOREIGN" | sha256sum | cut -d' ' -f1)" '
  split("\n") | .[1] | fromjson | .seq == 1 and .chain == "restart" and .prev == $h and
  (.chain_reason | test("not an audit line"))' "$FOREIGN"
verify "$FOREIGN" >"$WORK/v7.out" 2>&1 && rc=0 || rc=$?
check_eq "verify exits 1 on the foreign line" "$rc" 1
check_grep "verify names line 1" "foreign.jsonl:1: not an audit line" "$WORK/v7.out"
check_grep "verify names the restart" "foreign.jsonl:2: note: the module started a new chain here" \
  "$WORK/v7.out"
tail -n +2 "$FOREIGN" >"$WORK/after-restart.jsonl"
check "the lines from the restart on verify" verify "$WORK/after-restart.jsonl"

finish
