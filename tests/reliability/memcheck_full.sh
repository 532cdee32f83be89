#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# memcheck_full.sh BUILD_DIR [TEST...] - the whole integration suite (tests/integration/t_*.sh and
# demo.sh, or only the named tests, e.g. `sign engine`) with every process that loads the module
# under valgrind memcheck (tests/integration/lib.sh's AKV_MEMCHECK hook). One test at a time; the
# logs of test T go to $MEMCHECK_OUT/T (default: a new /tmp/akv-memcheck.XXXXXX, kept). Prints each
# test's result and time, then the per-process summary of every log and the totals; exit status 1
# when a test failed, or when any process reported a memcheck error or a definite leak.
#
#   bash tests/reliability/memcheck_full.sh build            # everything (~20 min on 2 busy cores)
#   bash tests/reliability/memcheck_full.sh build sign ssh   # two tests
#
# Environment: AKV_MEMCHECK_EXITCODE=0 lets every check run to its end despite memcheck reports (to
# collect all of them at once); AKV_MEMCHECK_GENSUPP=1 adds suppression templates to the logs.
set -uo pipefail
if [ -z "${1:-}" ] || ! [ -d "$1" ]; then
  echo "usage: $0 BUILD_DIR [TEST...]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
top=$(cd "$(dirname "$0")/../.." && pwd)
integ="$top/tests/integration"
export AKV_EMULATOR="$build/tests/emulator/akv-emulator" AKV_MODULE="$build/src/akv-pkcs11.so"
export P11_CACHE_CHECK="$build/tests/integration/p11_cache_check"
export P11_COUNT_CHECK="$build/tests/integration/p11_count_check"
export P11_AES_CHECK="$build/tests/integration/p11_aes_check"
for f in "$AKV_EMULATOR" "$AKV_MODULE" "$P11_CACHE_CHECK" "$P11_COUNT_CHECK" "$P11_AES_CHECK"; do
  [ -e "$f" ] || { echo "memcheck_full: $f is missing (ninja -C $build)" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "memcheck_full: valgrind is not installed" >&2; exit 2; }

tests=()
if [ $# -gt 0 ]; then
  for t in "$@"; do
    t=${t#t_}
    t=${t%.sh}
    if [ "$t" = demo ]; then tests+=("$integ/demo.sh"); else tests+=("$integ/t_$t.sh"); fi
  done
else
  for f in "$integ"/t_*.sh; do tests+=("$f"); done
  tests+=("$integ/demo.sh")
fi

out=${MEMCHECK_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/akv-memcheck.XXXXXX")}
mkdir -p "$out"
echo "# memcheck_full: logs in $out"
failed=()
start=$(date +%s)
for f in "${tests[@]}"; do
  [ -f "$f" ] || { echo "not ok - $f does not exist"; failed+=("$f"); continue; }
  name=$(basename "$f" .sh)
  t0=$(date +%s)
  args=()
  [ "$name" = demo ] && args=("$build")
  # A test's own timeout (meson's, up to 600 s) times the valgrind slowdown.
  AKV_MEMCHECK=1 AKV_MEMCHECK_LOG_DIR="$out/$name" timeout 3600 bash "$f" "${args[@]}" >"$out/$name.out" 2>&1
  rc=$?
  dt=$(($(date +%s) - t0))
  summary=$(grep -E '^# (t_[a-z0-9_]+|demo): [0-9]+ checks' "$out/$name.out" | tail -n 1)
  mc=$(grep -E '^# memcheck: [0-9]+ processes' "$out/$name.out" | tail -n 1)
  if [ "$rc" = 0 ]; then
    echo "ok - $name (${dt}s) ${summary#\# } ${mc#\# }"
  else
    echo "not ok - $name: exit status $rc (${dt}s) ${summary#\# } ${mc#\# }"
    grep -E '^(not ok|FATAL)' "$out/$name.out" | head -n 20 | sed 's/^/#   /'
    failed+=("$name")
  fi
done

echo
echo "# per-process summary (every process that loaded the module):"
dirs=()
for f in "${tests[@]}"; do dirs+=("$out/$(basename "$f" .sh)"); done
bash "$(dirname "$0")/memcheck_report.sh" "${dirs[@]}" >"$out/report.txt"
mrc=$?
grep -E '^#   [^ |]' "$out/report.txt"
echo "# processes by program:"
grep -E '^#   [^ |]' "$out/report.txt" | awk '{split($2, a, "."); n[a[1]]++} END {for (p in n) printf "#   %-20s %d\n", p, n[p]}' |
  sort
grep -E '^# memcheck:' "$out/report.txt"
[ "$mrc" = 0 ] || sed -n '/^# ---- /,$p' "$out/report.txt" | grep -v '^# memcheck:' | head -n 300
echo "# memcheck_full: ${#tests[@]} tests, ${#failed[@]} failed, $(($(date +%s) - start)) s; logs in $out"
[ "${#failed[@]}" = 0 ] && [ "$mrc" = 0 ]
