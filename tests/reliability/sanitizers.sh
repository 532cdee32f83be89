#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sanitizers.sh SOURCE_ROOT [EMULATOR]: builds the sanitizer variants with clang and runs the same
# stress suite and the backend unit tests there:
#   ThreadSanitizer           -Db_sanitize=thread
#   AddressSanitizer + UBSan  -Db_sanitize=address,undefined
# Build dirs: $SAN_BUILD_ROOT/build-{tsan,asan} (default /tmp/akv-pkcs11-san-<hash of SOURCE_ROOT>,
# reused between runs of the same tree so a second run only rebuilds what changed; a meson build
# dir belongs to one source tree, so two checkouts never share one). Only the needed targets are built (the model and
# backend libraries, the linked stress test, the backend unit tests) to stay within a few minutes
# on 2 cores. EMULATOR (the normal build's akv-emulator) serves the stress test: the emulator is
# not what is under test. Any sanitizer report fails the run (halt_on_error / exitcode).
# Exit: 0 clean, 1 a failure, 77 clang or its sanitizer runtime is missing.
set -Eeuo pipefail
SRC=${1:?usage: sanitizers.sh SOURCE_ROOT [EMULATOR]}
EMU=${2:-}
SRC=$(cd "$SRC" && pwd -P)
ROOT=${SAN_BUILD_ROOT:-/tmp/akv-pkcs11-san-$(printf '%s' "$SRC" | sha256sum | cut -c1-12)}
SUPP="$SRC/tests/reliability/lsan.supp"
UNIT_TESTS=(b64 buf log config json jwk http token auth client error audit crypto pace keyring)

command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
[ -d "$(clang --print-runtime-dir)" ] || { echo "SKIP: clang sanitizer runtime missing"; exit 77; }
if [ -z "$EMU" ] || [ ! -x "$EMU" ]; then
  echo "FATAL: the emulator of the normal build is needed (argument 2)" >&2
  exit 1
fi

# Two runs at once (two build dirs running the suite) would share the sanitizer build dirs.
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock -w 600 9 || { echo "FATAL: $ROOT is locked by another run for 10 minutes" >&2; exit 1; }

failed=0
targets=(tests/reliability/stress_test_linked)
for t in "${UNIT_TESTS[@]}"; do targets+=("tests/unit/test_$t"); done
tests=(rel-stress)
for t in "${UNIT_TESTS[@]}"; do tests+=("unit-$t"); done

export AKV_EMULATOR_OVERRIDE="$EMU"
# The libp11 engine's own leaks (see lsan.supp) need full stacks to be matched.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:fast_unwind_on_malloc=0:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$SUPP:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
# Sanitized code is 5-15x slower: fewer iterations than the normal build, same code paths.
export REL_STRESS_ITERATIONS=${REL_STRESS_ITERATIONS:-8}

for san in thread address,undefined; do
  case $san in thread) dir="$ROOT/build-tsan" ;; *) dir="$ROOT/build-asan" ;; esac
  echo "## $san in $dir"
  start=$(date +%s)
  if [ ! -f "$dir/build.ninja" ]; then
    mkdir -p "$ROOT"
    CC=clang meson setup "$dir" "$SRC" -Db_sanitize="$san" -Db_lundef=false \
      -Dinterop_tests=false >"$ROOT/setup-${san%%,*}.log" 2>&1 ||
      { tail -n 30 "$ROOT/setup-${san%%,*}.log"; exit 1; }
  fi
  if ! ninja -C "$dir" "${targets[@]}" >"$ROOT/build-${san%%,*}.log" 2>&1; then
    tail -n 40 "$ROOT/build-${san%%,*}.log"
    echo "not ok - $san: build failed"
    failed=1
    continue
  fi
  echo "# built in $(($(date +%s) - start)) s"
  if meson test -C "$dir" --no-rebuild --print-errorlogs "${tests[@]}" >"$ROOT/test-${san%%,*}.log" 2>&1; then
    echo "ok - $san: ${tests[*]} clean ($(($(date +%s) - start)) s)"
  else
    grep -E "^ *[0-9]+/[0-9]+ " "$ROOT/test-${san%%,*}.log" | grep -v " OK " || true
    grep -E -A25 "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error" \
      "$dir/meson-logs/testlog.txt" | head -n 80 || true
    echo "not ok - $san: sanitizer run failed (logs: $dir/meson-logs/testlog.txt)"
    failed=1
  fi
done
exit "$failed"
