#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fault-injection suite (docs/reliability.md): for each fault kind, THREADS threads x COUNT
# signatures through the module complete with 0 failures and every signature verifies; with a fault
# on every request, every call returns CKR_DEVICE_ERROR within the deadline + 1 s. `--long` = 8 x 200 per kind
# (the CI default is 8 x 50). See docs/reliability.md.
# Token expiry: the first request of the phase revokes every token issued so far (the module's
# cached one dies: 401, one refresh, one retry), and tokens issued afterwards live 2 s, so they
# really expire during the phase (60 ms latency per request stretches it past 2 s). Both are
# deterministic: a fresh token is never refused.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
need_module

THREADS=8
COUNT=${REL_COUNT:-50}
[ "${1:-}" = --long ] && COUNT=200

emu_start --vault rel
rel_seed
# Success phases: a generous deadline, so that a request unlucky enough to meet the fault several
# times in a row still completes; short attempts so that a latency spike becomes a timeout.
module_config "$WORK/ok.json" '{"objects":["keys"]}' \
  '{"deadline_ms":30000,"request_timeout_ms":2000,"connect_timeout_ms":2000,"max_retries":12,
    "retry_base_ms":50,"retry_cap_ms":1000}'
# Persistent faults: a short deadline (3 s) to bound every call.
module_config "$WORK/fail.json" '{"objects":["keys"]}' \
  '{"deadline_ms":3000,"request_timeout_ms":1000,"connect_timeout_ms":1000,"max_retries":12,
    "retry_base_ms":50,"retry_cap_ms":500}'
FT=$(rel_prog fault_test)

section "transient faults: $THREADS threads x $COUNT signatures each, 0 failures, all verified"
rel_run_counted "fault_test ok: every fault kind" "$FT" ok "$WORK/ok.json" "$THREADS" "$COUNT" \
  "429-retry-after=429:1@5" \
  "429-retry-after-http-date=429-date:1@5" \
  "429-without-retry-after=429-noretry@5" \
  "503=503@3" \
  "500-502-504=500@4,502@5,504@6" \
  "dropped-connections=drop@4" \
  "truncated-bodies=truncate@4" \
  "latency-spikes=latency:400@5" \
  "latency-spikes-past-the-request-timeout=latency:3000@10" \
  "token-expiry=token-revoke@1#1,token-ttl:2,latency:60"

section "persistent faults: every call CKR_DEVICE_ERROR within deadline (3 s) + 1 s"
rel_run_counted "fault_test fail: every persistent fault" "$FT" fail "$WORK/fail.json" "$THREADS" 2 3000 \
  "503=503=503" \
  "429=429:1=429" \
  "429-without-retry-after=429-noretry=429" \
  "500=500=500" \
  "dropped-connections=drop" \
  "truncated-bodies=truncate" \
  "timeouts=latency:5000" \
  "invalid-json=badjson" \
  "token-always-rejected=token-expired=401"

section "key creation (not idempotent) under faults"
# C_GenerateKeyPair first checks the name (keys.get), lists, fetches every listed key, then creates:
# the create is its last request. A clean probe run measures that position; the next run (one key
# more in the vault, so one request more) gets the fault exactly on its create.
module_config "$WORK/gen.json" '{"objects":["keys"]}' \
  '{"log_level":"info","max_retries":4,"retry_base_ms":50,"retry_cap_ms":200}'
login_config "$WORK/gen.json" "$WORK/gen.json" # generated private keys are CKA_PRIVATE
GEN_N=0
# gen LABEL: sets RC and TOTAL (vault requests; a faulted request counts in the total only).
gen() {
  stats_reset
  RC=0
  AKV_PKCS11_CONFIG="$WORK/gen.json" timeout 60 pkcs11-tool --module "$AKV_MODULE" \
    --login --pin "$GEN_PIN" --keypairgen \
    --key-type EC:prime256v1 --label "$1" >"$WORK/gen.out" 2>&1 || RC=$?
  TOTAL=$(stats_total)
}
# gen_with_fault KIND: a fault of KIND on the create request of a new key pair.
gen_with_fault() {
  GEN_N=$((GEN_N + 1))
  gen "probe-$GEN_N"
  [ "$RC" = 0 ] || fail "probe key generation failed: $(tail -n 3 "$WORK/gen.out")"
  PROBE_TOTAL=$TOTAL
  emu_faults "$1@$((TOTAL + 1))#1" || fail "setting faults"
  gen "gen-$1"
  emu_faults "" || fail "clearing faults"
  grep -Eq "keys\.create gen-$1: HTTP $1|/keys/gen-$1/create.*HTTP $1" "$WORK/gen.out"
}
if gen_with_fault 500; then
  check "500 on the create: C_GenerateKeyPair fails (exit $RC)" test "$RC" = 1
  check_grep "... with CKR_DEVICE_ERROR" "C_GenerateKeyPair.*CKR_DEVICE_ERROR" "$WORK/gen.out"
  # the probe's requests + the one key more to fetch, and no second create
  check_eq "... and the create was sent once, not retried (it may have been processed)" \
    "$((PROBE_TOTAL + 1))" "$TOTAL"
else
  sed 's/^/#   | /' "$WORK/gen.out" | tail -n 8
  check "the 500 fault reached the create request" false
fi
if gen_with_fault 503; then
  check "503 on the create (not processed): retried, the key pair is generated (exit $RC)" test "$RC" = 0
  check_eq "... with exactly one retry" "$((PROBE_TOTAL + 2))" "$TOTAL"
else
  sed 's/^/#   | /' "$WORK/gen.out" | tail -n 8
  check "the 503 fault reached the create request" false
fi

finish
