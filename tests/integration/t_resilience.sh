#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The module under a misbehaving vault (emulator fault injection): retries on 503 and 429 (with
# Retry-After) are invisible to pkcs11-tool, a vault that keeps failing gives CKR_DEVICE_ERROR
# within the configured deadline, and hostile/broken responses never crash or hang a consumer.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool jq curl
need_module

emu_start --vault resil1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
module_config "$WORK/module.json" '{"objects":["keys"]}' \
  '{"deadline_ms":5000,"max_retries":3,"retry_base_ms":100,"retry_cap_ms":1000}'
export AKV_PKCS11_CONFIG="$WORK/module.json"

# baseline request count of one listing
stats_reset
check "baseline: pkcs11-tool -O" p11tool_m -O
base=$(stats_total)
log "a listing costs $base requests: $(stats_ops)"

section "one 503 is retried"
stats_reset
emu_faults "503@1#1" || fail "setting faults"
check "pkcs11-tool -O succeeds although the first vault request got 503" p11tool_m -O
check_grep "... and lists the keys" "label: +rsa2048\$" "$WORK/check.out"
check_eq "exactly one extra request (the retry)" "$((base + 1))" "$(stats_total)"

section "one 429 with Retry-After: 1 is retried after the delay"
stats_reset
emu_faults "429:1@1#1" || fail "setting faults"
start=$(date +%s%N)
check "pkcs11-tool -O succeeds although the first vault request got 429" p11tool_m -O
ms=$((($(date +%s%N) - start) / 1000000))
check_eq "exactly one extra request (the retry)" "$((base + 1))" "$(stats_total)"
check "the retry waited for Retry-After (took ${ms} ms >= 1000)" test "$ms" -ge 1000

section "a vault that keeps failing: CKR_DEVICE_ERROR within the deadline (5 s)"
emu_faults "500" || fail "setting faults"
stats_reset
start=$(date +%s%N)
rc=0
timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/fail.out" 2>&1 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
sed 's/^/#   | /' "$WORK/fail.out" | tail -n 6
check "pkcs11-tool -O fails (exit $rc, not killed by a signal or the timeout)" test "$rc" -ne 0 -a "$rc" -lt 124
check_grep "... with CKR_DEVICE_ERROR" "CKR_DEVICE_ERROR" "$WORK/fail.out"
check "... within the deadline plus slack (took ${ms} ms < 15000)" test "$ms" -lt 15000
check_grep "the module's log names the HTTP status" "500" "$WORK/fail.out"
n=$(stats_total)
check "the 500 was retried, at most max_retries (3) times: $n requests" test "$n" -ge 2 -a "$n" -le 4

for f in badjson truncate drop latency:200; do
  section "fault '$f' on every request: no crash, no hang"
  emu_faults "$f" || fail "setting faults"
  rc=0
  timeout 60 pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/f.out" 2>&1 || rc=$?
  sed 's/^/#   | /' "$WORK/f.out" | tail -n 3
  check "$f: pkcs11-tool -O ends on its own (exit $rc: 0, or 1 with an error; not a crash/timeout)" \
    test "$rc" -le 1
  if [ "$rc" != 0 ]; then
    check_grep "$f: the failure is a PKCS#11 error (CKR_DEVICE_ERROR)" "CKR_DEVICE_ERROR" "$WORK/f.out"
  else
    check_grep "$f: the listing is complete" "label: +rsa2048\$" "$WORK/f.out"
  fi
done
emu_faults "" || fail "clearing faults"
check "after the faults are cleared, pkcs11-tool -O works again" p11tool_m -O

finish
