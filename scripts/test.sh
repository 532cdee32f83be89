#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs missing dependencies, builds, runs every meson test (unit, emulator,
# SDK interop, integration with pkcs11-tool/openssl/ssh/p11-kit) and prints "N passed, M failed".
# The tests run in a private network namespace that has only loopback (docs/testing.md), so a test
# that tries to reach anything but 127.0.0.0/8, ::1 or a unix socket fails loudly instead of
# leaving the machine. Where unshare is not permitted, one line says so and they run as before.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
bash "$top/scripts/deps.sh" || exit 1
BUILD_DIR=$build bash "$top/scripts/build.sh" || exit 1

tests=(meson test -C "$build" --print-errorlogs --num-processes 2 "$@")
if why=$(unshare --net -- true 2>&1); then
  # shellcheck disable=SC2016
  unshare --net -- bash -c 'ip link set lo up || exit 1; echo "test: in a private network namespace (loopback only)"; exec "$@"' _ "${tests[@]}"
else
  echo "test: unshare --net is not permitted here (${why:-no reason given}): the tests run on the host network"
  "${tests[@]}"
fi
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
print(f"{skipped} skipped")
print(f"{passed} passed, {failed} failed")
PY
exit $status
