#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# akv-p11 cache clear (docs/troubleshooting.md): after a pkcs11-tool -O with the cross-process
# cache file on (the default path under $XDG_CACHE_HOME), `cache clear` removes the file and names
# it, a second clear says there is none, a symbolic link in the file's place is removed without
# touching its target, a directory another user could write is refused; doctor --json and its
# text name the cache file's path and age, and doctor clears it before its module pass (which
# reads the vault and writes it afresh). Inputs: AKV_EMULATOR, AKV_MODULE, AKV_P11, INTEG_LIB.
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
check_eq "doctor --json: it cleared the file before its module pass" true \
  "$(jq -r '.cache_file.cleared' "$WORK/doctor.out")"
check_grep "doctor --json: clear names the removed file" "^removed the cache file $CF " \
  <(jq -r '.cache_file.clear' "$WORK/doctor.out")
check_eq "doctor --json: its module pass wrote the file afresh" true \
  "$(jq -r '.cache_file.refreshed' "$WORK/doctor.out")"
check_grep "doctor --json: the note says doctor reads the vault directly" \
  "^doctor reads the vault directly: .* wrote it afresh" <(jq -r '.cache_file.note' "$WORK/doctor.out")
check "the refreshed file is there" test -f "$CF"
p11 --config "$WORK/on.json" doctor >"$WORK/doctor.txt" 2>&1 || true
check_grep "doctor text: cache file line with path and age" \
  "^cache file: $CF \\(written [0-9]+ s ago\\)" "$WORK/doctor.txt"
p11 --config "$WORK/off.json" doctor --json >"$WORK/doctor-off.out" 2>/dev/null || true
check_eq "doctor --json with cache_file \"\": path null" null \
  "$(jq -r '.cache_file.path' "$WORK/doctor-off.out")"

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
