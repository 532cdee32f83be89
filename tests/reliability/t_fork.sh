#!/usr/bin/env bash
# Fork safety (issue 5): see fork_test.c for what is checked.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
need_module

emu_start --vault forkv
rel_seed
module_config "$WORK/module.json" '{"objects":["keys"]}'
rel_run_counted "fork_test: child needs C_Initialize, uses its own connections; parent unaffected" \
  "$(rel_prog fork_test)" "$WORK/module.json" 20
finish
