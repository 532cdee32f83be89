#!/usr/bin/env bash
# The test command: installs missing dependencies, builds, runs every meson test (unit, emulator,
# SDK interop, integration with pkcs11-tool/openssl/ssh/p11-kit) and prints "N passed, M failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
bash "$top/scripts/deps.sh" || exit 1
BUILD_DIR=$build bash "$top/scripts/build.sh" || exit 1

meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
status=$?

python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    with open(sys.argv[1]) as f:
        for line in f:
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:
                failed += 1
except FileNotFoundError:
    pass
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
