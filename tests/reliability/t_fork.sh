#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fork safety (docs/reliability.md "Fork"): see fork_test.c for what is checked.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
need_module

emu_start --vault forkv
rel_seed
module_config "$WORK/module.json" '{"objects":["keys"]}'
rel_run_counted "fork_test: child needs C_Initialize, uses its own connections; parent unaffected" \
  "$(rel_prog fork_test)" "$WORK/module.json" 20
# Forks while 8 threads sign with the audit file and a debug log on (their locks taken on every
# signature): 200 children, each re-initialises and signs; none may hang (fork_storm_test.c).
module_config "$WORK/storm.json" '{"objects":["keys"]}' \
  "{\"audit_file\":\"$WORK/audit.log\",\"log_file\":\"$WORK/storm.log\",\"log_level\":\"debug\"}"
rel_run_counted "fork_storm_test: 200 forks while 8 threads sign, every child re-initialises" \
  "$(rel_prog fork_storm_test)" "$WORK/storm.json" "${FORK_STORM_FORKS:-200}"
finish
