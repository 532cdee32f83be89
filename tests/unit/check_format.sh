#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The C files of the checked directories are formatted as .clang-format says: runs
# `clang-format --dry-run --Werror` on every *.c and *.h under them (docs/testing.md, "Formatting").
# A file that fails is named with clang-format's first complaints; the fix is
# `clang-format -i FILE`. Exit 0 = all formatted, 1 = a file is not, 77 = clang-format missing.
#
# usage: check_format.sh SOURCE_ROOT [DIR...]    (default DIRs: tools tests)
set -euo pipefail

root=${1:?usage: check_format.sh SOURCE_ROOT [DIR...]}
shift
dirs=("$@")
((${#dirs[@]})) || dirs=(tools tests)

# Paths (files, or directories with everything under them) not checked, each with its reason.
exceptions=()

if ! command -v clang-format >/dev/null 2>&1; then
  echo "SKIP: clang-format is not installed (scripts/deps.sh installs it)"
  exit 77
fi
cd "$root"
[ -f .clang-format ] || { echo "FAIL: no .clang-format in $root"; exit 1; }
echo "# $(clang-format --version)"

excluded() {
  local f=$1 e
  for e in "${exceptions[@]}"; do
    case "$f" in "$e" | "$e"/*) return 0 ;; esac
  done
  return 1
}

checked=0 failed=0
while IFS= read -r -d '' f; do
  f=${f#./}
  excluded "$f" && continue
  checked=$((checked + 1))
  if ! out=$(clang-format --dry-run --Werror "$f" 2>&1); then
    failed=$((failed + 1))
    echo "not ok - $f is not formatted (clang-format -i $f):"
    printf '%s\n' "$out" | head -n 6 | sed 's/^/#   /'
  fi
done < <(find "${dirs[@]}" \( -name node_modules -o -name corpus \) -prune -o \
              -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)

for e in "${exceptions[@]}"; do
  [ -e "$e" ] || { echo "not ok - exception $e names nothing: remove it from the list"; failed=$((failed + 1)); }
done
echo "# format: $checked files checked, $failed failed, ${#exceptions[@]} exceptions"
[ "$checked" -gt 0 ] || { echo "FAIL: no C file found under ${dirs[*]}"; exit 1; }
[ "$failed" -eq 0 ]
