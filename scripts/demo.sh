#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: installs what the demo uses when it is missing (deps.sh --demo: no test-only
# packages, no npm), builds, starts the Key Vault emulator with a demo vault and shows pkcs11-tool
# and openssl signing with vault keys through the module.
#
# usage: scripts/demo.sh           the demo; cleans up everything it started
#        scripts/demo.sh --keep    the demo, then leaves the emulator and a ready configuration
#                                  running and prints the three lines that use them (README.md,
#                                  "Try it yourself")
#        scripts/demo.sh --stop DIR  stops what --keep left running (the line --keep prints)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
case "${1:-}" in
  --stop) exec bash "$top/tests/integration/demo.sh" "$@" ;;
  --keep) [ $# = 1 ] || { echo "usage: $0 [--keep | --stop DIR]" >&2; exit 2; } ;;
  "") ;;
  *) echo "usage: $0 [--keep | --stop DIR]" >&2; exit 2 ;;
esac
bash "$top/scripts/deps.sh" --demo
BUILD_DIR=$build bash "$top/scripts/build.sh"
exec bash "$top/tests/integration/demo.sh" "$@" "$build"
