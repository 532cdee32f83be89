#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The benchmark in one command: installs what is missing (Debian packages, the pinned npm packages of
# tests/bench), builds into ${BUILD_DIR:-build}, then runs akv-bench against a fresh emulator and writes
# the JSON results next to the build, then bench-memory (memory per cached key, bench-memory.json)
# and pace-bench.sh (pacing under the vault's quota, bench-pace.json), replica-bench.sh (a replica
# vault past one vault's quota, bench-replica.json).
# Extra arguments go to akv-bench (e.g. --smoke, --duration 10); --smoke skips bench-memory and the
# pacing and replica rows.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$top/build}
bash "$top/scripts/deps.sh"
BUILD_DIR=$build bash "$top/scripts/build.sh"
for f in "$build/tests/bench/akv-bench" "$build/tests/emulator/akv-emulator" "$build/src/akv-pkcs11.so"; do
  if [ ! -x "$f" ] && [ ! -f "$f" ]; then
    echo "bench: $f was not built" >&2
    exit 2
  fi
done
status=0
"$build/tests/bench/akv-bench" \
  --emulator "$build/tests/emulator/akv-emulator" \
  --module "$build/src/akv-pkcs11.so" \
  --json "$build/bench.json" "$@" || status=$?
# Memory per cached key (docs/performance.md), with its own emulator; not part of --smoke.
case " $* " in
*" --smoke "*) ;;
*)
  "$build/tests/bench/bench-memory" \
    --emulator "$build/tests/emulator/akv-emulator" \
    --module "$build/src/akv-pkcs11.so" \
    --json "$build/bench-memory.json" || status=$?
  # Pacing under the vault's quota (docs/performance.md), with its own emulator: about 45 s.
  if [ -x "$build/tests/integration/p11_pace_check" ]; then
    bash "$top/tests/bench/pace-bench.sh" --build "$build" --json "$build/bench-pace.json" || status=$?
  else
    echo "bench: pacing row skipped: p11_pace_check not built (meson -Dintegration_tests=true)" >&2
  fi
  # Row (3): a primary and a replica under --quota (docs/performance.md "Replica vaults"): about 45 s.
  if [ -x "$build/tests/integration/p11_replica_check" ]; then
    bash "$top/tests/bench/replica-bench.sh" --build "$build" --json "$build/bench-replica.json" || status=$?
  else
    echo "bench: replica row skipped: p11_replica_check not built (meson -Dintegration_tests=true)" >&2
  fi
  ;;
esac
# Row (1): a fresh signing process with the cache file warm and the token shared (docs/performance.md
# "A second signing process"), with its own emulator; --smoke makes it 3 runs per mode.
share_args=()
case " $* " in *" --smoke "*) share_args=(--smoke) ;; esac
"$build/tests/bench/bench-share-token" \
  --emulator "$build/tests/emulator/akv-emulator" \
  --module "$build/src/akv-pkcs11.so" \
  --json "$build/bench-share-token.json" "${share_args[@]}" || status=$?
# The same row for processes that search by label only (the cache file holds the name record).
"$build/tests/bench/bench-share-token" --label-only \
  --emulator "$build/tests/emulator/akv-emulator" \
  --module "$build/src/akv-pkcs11.so" \
  --json "$build/bench-share-token-label.json" "${share_args[@]}" || status=$?
# Row (0): the first signature by label in a fresh process with an empty cache, 1,000 and 5,000 keys
# (docs/performance.md "Cold first signature by label"), with its own emulator; about 30 s.
case " $* " in
*" --smoke "*) ;;
*)
  "$build/tests/bench/bench-cold-label" \
    --emulator "$build/tests/emulator/akv-emulator" \
    --module "$build/src/akv-pkcs11.so" \
    --json "$build/bench-cold-label.json" || status=$?
  ;;
esac
exit $status
