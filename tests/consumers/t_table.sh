#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# README.md's "Tested consumers" table cannot drift: every row names a test that exists, every
# consumer test (tests/consumers/meson.build) has a row, and each installed package is of the
# version series the row gives (a row whose package is not installed is reported, not checked).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
ROOT=${AKV_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
README="$ROOT/README.md"
awk '/<!-- consumers-table:begin -->/ {inb = 1; next} /<!-- consumers-table:end -->/ {inb = 0} inb' \
  "$README" | tail -n +3 >"$WORK/rows"
check "README.md has the consumers table" test -s "$WORK/rows"

# upstream VERSION: a Debian version without epoch and revision.
upstream() { local v=${1#*:}; echo "${v%-*}"; }
declare -A ROW_TESTS=()
while IFS='|' read -r _ consumer pkg series test _; do
  consumer=$(echo "$consumer" | sed 's/^ *//; s/ *$//')
  pkg=$(echo "$pkg" | tr -d ' `')
  test=$(echo "$test" | tr -d ' `')
  series=$(echo "$series" | tr -d ' ')
  ROW_TESTS[$test]=1
  check "$consumer: the test $test is defined" \
    grep -rqF -- "'$test'" "$ROOT/tests/consumers/meson.build" "$ROOT/tests/integration/meson.build" \
    "$ROOT/tools/meson.build"
  v=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
  if [ -z "$v" ]; then
    log "$consumer: package $pkg is not installed here: its version is not checked"
    continue
  fi
  up=$(upstream "$v")
  ok=1
  IFS=, read -r -a list <<<"$series"
  for s in "${list[@]}"; do
    case "$up" in "$s" | "$s".* | "$s"+* | "$s"p*) ok=0 ;; esac
  done
  check_eq "$consumer: installed $pkg $up is of the series in the table ($series)" 0 "$ok"
done <"$WORK/rows"

for t in $(grep -oE "^ +'[a-z0-9-]+' : \[" "$ROOT/tests/consumers/meson.build" | tr -d " ':[" ); do
  case "$t" in consumers-table | akv-p11-build-tree) continue ;; esac
  check "the consumer test $t has a row in README.md" test -n "${ROW_TESTS[$t]:-}"
done
finish
