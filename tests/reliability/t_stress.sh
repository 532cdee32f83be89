#!/usr/bin/env bash
# 16-thread stress test (issue 5): see stress_test.c. Under a sanitizer build the same test runs
# (sanitizers.sh); REL_STRESS_ITERATIONS sets the iterations per thread (default 25), and
# AKV_EMULATOR_OVERRIDE lets the sanitizer builds use the emulator of the normal build.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
need_module
[ -n "${AKV_EMULATOR_OVERRIDE:-}" ] && AKV_EMULATOR=$AKV_EMULATOR_OVERRIDE

emu_start --vault stress
rel_seed
module_config "$WORK/module.json" '{"objects":["keys","certificates","secrets"]}'
kv_set_secret stress-secret "not logged" || fail "seeding a secret"
rel_run_counted "stress_test: 16 threads x ${REL_STRESS_ITERATIONS:-25} iterations, then C_Finalize racing calls" \
  "$(rel_prog stress_test)" "$WORK/module.json" 16 "${REL_STRESS_ITERATIONS:-25}"
finish
