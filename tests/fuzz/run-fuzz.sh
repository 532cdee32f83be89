#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-fuzz.sh SOURCE_ROOT [SECONDS]: builds the libFuzzer targets of tests/fuzz with clang
# (-fsanitize=fuzzer + AddressSanitizer + UBSan, the backend compiled with fuzzer-no-link for
# coverage) and runs each for SECONDS (default 10) from a temporary copy of its seed corpus
# (tests/fuzz/corpus/<target>), so the repository stays clean. Any crash, sanitizer report, leak,
# timeout (>10 s per input) or out-of-memory fails the run; its reproducer is kept under
# $FUZZ_BUILD_ROOT/artifacts/<target>/ and named in the output.
# Build dir: $FUZZ_BUILD_ROOT/build (default /tmp/akv-pkcs11-fuzz-<hash of SOURCE_ROOT>), reused
# between runs of the same checkout (a meson build dir belongs to one source tree).
# FUZZ_TARGETS (space-separated names, default all) picks the targets.
# Exit: 0 clean, 1 a failure, 77 clang or libFuzzer is missing.
set -Eeuo pipefail
SRC=$(cd "${1:?usage: run-fuzz.sh SOURCE_ROOT [SECONDS]}" && pwd -P)
SECS=${2:-10}
ROOT=${FUZZ_BUILD_ROOT:-/tmp/akv-pkcs11-fuzz-$(printf '%s' "$SRC" | sha256sum | cut -c1-12)}
DIR="$ROOT/build"
ALL_TARGETS=(jwk error config challenge token id json b64 retry_after json_fast attest)
# FUZZ_TARGETS="token id" runs only those (e.g. to re-run one target after a fix).
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"
for t in "${TARGETS[@]}"; do
  case " ${ALL_TARGETS[*]} " in *" $t "*) ;; *)
    echo "FATAL: unknown fuzz target '$t' (known: ${ALL_TARGETS[*]})" >&2; exit 1 ;;
  esac
done
[ "${#TARGETS[@]}" -gt 0 ] || { echo "FATAL: FUZZ_TARGETS names no target" >&2; exit 1; }

case $SECS in '' | *[!0-9]*) echo "FATAL: SECONDS must be a number, got '$SECS'" >&2; exit 1 ;; esac
command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
rtdir=$(clang --print-runtime-dir 2>/dev/null || true)
if [ -z "$rtdir" ] || ! ls "$rtdir"/libclang_rt.fuzzer*.a "$rtdir"/../*/libclang_rt.fuzzer*.a \
    >/dev/null 2>&1; then
  # Debian's layout: lib/linux/libclang_rt.fuzzer-x86_64.a
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}' |
    clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null ||
    { echo "SKIP: clang's libFuzzer runtime (libclang-rt-*-dev) is missing"; exit 77; }
fi

# Two runs at once would share the build dir.
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock -w 600 9 || { echo "FATAL: $ROOT is locked by another run for 10 minutes" >&2; exit 1; }

start=$(date +%s)
echo "# fuzz build dir: $DIR"
if [ ! -f "$DIR/build.ninja" ]; then
  CC=clang meson setup "$DIR" "$SRC" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fsanitize=fuzzer-no-link -Dinterop_tests=false >"$ROOT/setup.log" 2>&1 ||
    { tail -n 30 "$ROOT/setup.log"; echo "not ok - meson setup failed"; exit 1; }
fi
ninja_targets=()
for t in "${TARGETS[@]}"; do ninja_targets+=("tests/fuzz/fuzz_$t"); done
if ! ninja -C "$DIR" "${ninja_targets[@]}" >"$ROOT/build.log" 2>&1; then
  tail -n 40 "$ROOT/build.log"
  echo "not ok - build failed (log: $ROOT/build.log)"
  exit 1
fi
echo "# built in $(($(date +%s) - start)) s"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
work=$(mktemp -d "$ROOT/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${TARGETS[@]}"; do
  seeds="$SRC/tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || { echo "not ok - $t: no seed corpus at $seeds"; failed=1; continue; }
  mkdir -p "$work/$t" "$ROOT/artifacts/$t"
  cp -- "$seeds"/* "$work/$t/"
  log="$ROOT/fuzz-$t.log"
  # New inputs go to the temporary copy (first dir); the seeds are only read.
  if "$DIR/tests/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$ROOT/artifacts/$t/" \
      "$work/$t" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)
    echo "ok - $t: ${execs:-?} executions in $SECS s, ${cov:-cov: ?}, corpus $(ls "$work/$t" | wc -l) (seeds $(ls "$seeds" | wc -l))"
  else
    grep -E -A30 "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|==[0-9]+== ?ERROR" \
      "$log" | head -n 60 || tail -n 40 "$log"
    grep -E "Test unit written to" "$log" || true
    echo "not ok - $t: crash (log: $log)"
    failed=1
  fi
done
echo "# total $(($(date +%s) - start)) s"
exit "$failed"
