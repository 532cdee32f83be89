#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# 16-thread stress test: see stress_test.c. Argument: the program (stress_test, which
# dlopens the module, or stress_test_linked). Under a sanitizer build the same test runs
# (sanitizers.sh); REL_STRESS_ITERATIONS sets the iterations per thread (default 25), and
# AKV_EMULATOR_OVERRIDE lets the sanitizer builds use the emulator of the normal build.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
[ "${1:-stress_test}" = stress_test_linked ] || need_module
[ -n "${AKV_EMULATOR_OVERRIDE:-}" ] && AKV_EMULATOR=$AKV_EMULATOR_OVERRIDE

emu_start --vault stress
rel_seed
module_config "$WORK/module.json" '{"objects":["keys","certificates","secrets"]}'
kv_set_secret stress-secret "not logged" || fail "seeding a secret"
PROG=${1:-stress_test}
rel_run_counted "$PROG: 16 threads x ${REL_STRESS_ITERATIONS:-25} iterations, then C_Finalize racing calls" \
  "$(rel_prog "$PROG")" "$WORK/module.json" 16 "${REL_STRESS_ITERATIONS:-25}"
finish
