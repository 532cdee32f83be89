#!/usr/bin/env bash
# Fault-injection suite (issue 5): for each fault kind, THREADS threads x COUNT signatures through
# the module complete with 0 failures and every signature verifies; with a fault on every request,
# every call returns CKR_DEVICE_ERROR within the deadline + 1 s. `--long` = 8 x 200 per kind
# (the CI default is 8 x 50). See docs/reliability.md.
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
  "429-without-retry-after=429-noretry@5" \
  "503=503@3" \
  "500-502-504=500@4,502@5,504@6" \
  "dropped-connections=drop@4" \
  "truncated-bodies=truncate@4" \
  "latency-spikes=latency:400@5" \
  "latency-spikes-past-the-request-timeout=latency:3000@10" \
  "token-expiry=token-expired@100#2,token-ttl:2"

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

finish
