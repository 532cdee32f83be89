#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# akv-p11 cache clear (docs/troubleshooting.md): after a pkcs11-tool -O with the cross-process
# cache file on (the default path under $XDG_CACHE_HOME), `cache clear` removes the file and names
# it, a second clear says there is none, a symbolic link in the file's place is removed without
# touching its target, a directory another user could write is refused; doctor --json and its
# text name the cache file's path and age; doctor's module pass takes nothing from the file and
# replaces only the entries of the slots it checks (another configuration sharing the file keeps
# its entry and is served from it with no listing).
# Inputs: AKV_EMULATOR, AKV_MODULE, AKV_P11, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool jq pkcs11-tool
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
p11() { "$AKV_P11" --module "$AKV_MODULE" "$@"; }

emu_start --vault clearv
kv_create_ec ec-p256 P-256 || fail "seeding"
unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL
module_config "$WORK/off.json"
jq 'del(.cache_file)' "$WORK/off.json" >"$WORK/on.json"
chmod 600 "$WORK/on.json"
export AKV_PKCS11_CONFIG="$WORK/on.json"
CF="$XDG_CACHE_HOME/akv-pkcs11/cache.json"

section "cache clear removes the file the module wrote"
fresh_cache
check "pkcs11-tool -O with the cache file on" p11tool_m -O
check "the module wrote the cache file at the default path" test -f "$CF"

section "doctor shows the cache file's path and age"
p11 --config "$WORK/on.json" doctor --json >"$WORK/doctor.out" 2>"$WORK/doctor.err" || true
check_eq "doctor --json: cache_file.path" "$CF" "$(jq -r '.cache_file.path' "$WORK/doctor.out")"
check_eq "doctor --json: the file is present" true "$(jq -r '.cache_file.present' "$WORK/doctor.out")"
check "doctor --json: age_s is a number 0..600" \
  jq -e '.cache_file.age_s | type == "number" and . >= 0 and . < 600' "$WORK/doctor.out"
check_eq "doctor --json: its module pass ran with AKV_PKCS11_CACHE_RELIST" true \
  "$(jq -r '.cache_file.relist' "$WORK/doctor.out")"
check_eq "doctor --json: the file is there after its module pass" true \
  "$(jq -r '.cache_file.refreshed' "$WORK/doctor.out")"
check_grep "doctor --json: the note says doctor reads the vault directly" \
  "^doctor reads the vault directly: .* replaced the entries of the slots it checked; other" \
  <(jq -r '.cache_file.note' "$WORK/doctor.out")
check "the refreshed file is there" test -f "$CF"
p11 --config "$WORK/on.json" doctor >"$WORK/doctor.txt" 2>&1 || true
check_grep "doctor text: cache file line with path and age" \
  "^cache file: $CF \\(written [0-9]+ s ago\\)" "$WORK/doctor.txt"
p11 --config "$WORK/off.json" doctor --json >"$WORK/doctor-off.out" 2>/dev/null || true
check_eq "doctor --json with cache_file \"\": path null" null \
  "$(jq -r '.cache_file.path' "$WORK/doctor-off.out")"

section "doctor replaces only its own slots' entries: another configuration's stays"
# Two configurations share the cache file: A (on.json) and B (keys only: another fingerprint).
# Doctor on A drops and rewrites A's entry from the vault; B's entry is untouched, so a B process
# is served from the file (0 listings) and does not see a key created after B's listing.
entries() { tail -n +2 "$CF" | jq -c '[.slots[] | {fp, built_at}] | sort_by(.fp)'; }
jq '.slots[0].objects = ["keys"]' "$WORK/on.json" >"$WORK/other.json"
chmod 600 "$WORK/other.json"
fresh_cache
check "A: pkcs11-tool -O" p11tool_m -O
AKV_PKCS11_CONFIG="$WORK/other.json" p11tool_m -O >"$WORK/other1.out" 2>&1
check_grep "B: pkcs11-tool -O lists the key" "label: +ec-p256\$" "$WORK/other1.out"
entries >"$WORK/entries1"
check_eq "the file holds two entries (A's and B's)" 2 "$(jq length "$WORK/entries1")"
sleep 1 # a new listing's built_at is then later than these
kv_create_ec after-b P-256 || fail "seeding after-b"
rc=0
p11 --config "$WORK/on.json" doctor --json >"$WORK/doctor-a.out" 2>"$WORK/doctor-a.err" || rc=$?
check "doctor on A ran (exit 0 or 1: $rc)" test "$rc" -le 1
entries >"$WORK/entries2"
check_eq "still two entries after doctor on A" 2 "$(jq length "$WORK/entries2")"
check_eq "one entry unchanged (B's), one rewritten (A's)" 1 \
  "$(jq -n --slurpfile a "$WORK/entries1" --slurpfile b "$WORK/entries2" '$a[0] - ($a[0] - $b[0]) | length')"
stats_reset
AKV_PKCS11_CONFIG="$WORK/other.json" p11tool_m -O >"$WORK/other2.out" 2>&1
check_eq "B after doctor on A: served from the file, no listing (ops: $(stats_ops))" 0 \
  "$(stats_get keys.list)"
check_grep "B after doctor on A: its objects are there" "label: +ec-p256\$" "$WORK/other2.out"
check_nogrep "B after doctor on A: its entry predates after-b" "label: +after-b\$" "$WORK/other2.out"
stats_reset
p11tool_m -O >"$WORK/a2.out" 2>&1
check_eq "A after doctor: served from the entry doctor wrote, no listing (ops: $(stats_ops))" 0 \
  "$(stats_get keys.list)"
check_grep "A after doctor: that entry was listed from the vault (after-b is there)" \
  "label: +after-b\$" "$WORK/a2.out"

section "AKV_PKCS11_CACHE_RELIST drops the slot's entry even when its listing then fails"
entries >"$WORK/entries3"
check_eq "two entries before" 2 "$(jq length "$WORK/entries3")"
emu_faults "badjson" || fail "setting faults"
AKV_PKCS11_CACHE_RELIST=1 AKV_PKCS11_LOG_LEVEL=debug p11tool_m -O >"$WORK/relist.out" 2>&1 || true
emu_faults "" || fail "clearing faults"
check_grep "the module dropped A's entry (debug line)" \
  "cache file $CF: 1 entry of slot [0-9a-f]{12} dropped \\(relist\\)" "$WORK/relist.out"
entries >"$WORK/entries4"
check_eq "one entry left, B's, unchanged (A's listing failed, so none was written)" \
  "$(jq -c '.[] | select(.built_at == ($b[0] | map(.built_at) | min))' --slurpfile b "$WORK/entries3" "$WORK/entries3")" \
  "$(jq -c '.[]' "$WORK/entries4")"
stats_reset
AKV_PKCS11_CONFIG="$WORK/other.json" p11tool_m -O >"$WORK/other3.out" 2>&1
check_eq "B: still served from the file (ops: $(stats_ops))" 0 "$(stats_get keys.list)"

section "cache clear"
rc=0
p11 cache clear >"$WORK/clear1.out" 2>&1 || rc=$?
check_eq "cache clear exits 0" 0 "$rc"
check "the cache file is gone" test ! -e "$CF"
check_grep "the message names the removed file" "^removed the cache file $CF " "$WORK/clear1.out"
rc=0
p11 --config "$WORK/on.json" cache clear >"$WORK/clear2.out" 2>&1 || rc=$?
check_eq "a second cache clear exits 0" 0 "$rc"
check_grep "a second cache clear says there was none" "^no cache file at $CF: nothing to remove" \
  "$WORK/clear2.out"
rc=0
p11 --config "$WORK/off.json" cache clear >"$WORK/clear-off.out" 2>&1 || rc=$?
check_eq "cache clear with cache_file \"\" exits 0" 0 "$rc"
check_grep "cache clear with cache_file \"\" says it is off" "^no cache file: it is off" \
  "$WORK/clear-off.out"

section "a symbolic link in the file's place is not followed"
echo "keep me" >"$WORK/target"
ln -s "$WORK/target" "$CF"
rc=0
p11 cache clear >"$WORK/clear3.out" 2>&1 || rc=$?
check_eq "cache clear on a link exits 0" 0 "$rc"
check "the link is gone" test ! -L "$CF"
check_eq "its target is untouched" "keep me" "$(cat "$WORK/target")"
check_grep "the message says the link was not followed" "symbolic link, not followed" \
  "$WORK/clear3.out"

section "a directory group or others can write is refused"
mkdir -p "$WORK/shared"
chmod 777 "$WORK/shared"
echo x >"$WORK/shared/cache.json"
jq --arg f "$WORK/shared/cache.json" '.cache_file = $f' "$WORK/off.json" >"$WORK/shared.json"
chmod 600 "$WORK/shared.json"
rc=0
p11 --config "$WORK/shared.json" cache clear >"$WORK/clear4.out" 2>&1 || rc=$?
check_eq "cache clear in a world-writable directory exits 1" 1 "$rc"
check_grep "the message names the directory and why" \
  "cache directory $WORK/shared refused: writable by group or others" "$WORK/clear4.out"
check "the file there is kept" test -f "$WORK/shared/cache.json"
chmod 700 "$WORK/shared"

finish
