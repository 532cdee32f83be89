#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spdx.sh --check|--fix|--list [FILE...]: the license line of every source file (CONTRIBUTING.md,
# "License headers").
#
#   --list    prints the files that count as source, one a line
#   --check   prints each source file that lacks its SPDX line; exit 1 if there is one, 0 if none
#   --fix     inserts the line where it is missing: line 1, or line 2 after a `#!` line; prints
#             each file it changed (content only: mode and inode stay)
#
# Without FILE arguments the files are those of the tree: `git ls-files` (tracked and new, not
# ignored) in a git checkout, otherwise every file under the top directory except build*/, other
# meson build directories, node_modules/ and .git/ (an unpacked `meson dist` tarball). FILE arguments that are not source files are
# ignored, so `--fix $(git diff --name-only)` is safe.
#
# Source files and their line (it must be line 1, or line 2 under a `#!` line):
#   *.c *.h                                            /* SPDX-License-Identifier: Apache-2.0 */
#   *.sh *.py meson.build meson_options.txt, and files
#   without an extension whose first line is #! (sh, bash, python)
#                                                      # SPDX-License-Identifier: Apache-2.0
#   *.js *.mjs *.cjs                                   // SPDX-License-Identifier: Apache-2.0
# Not source (no line): docs and other Markdown, the man page, JSON (package.json carries
# "license"), the fuzz corpora and any other data (tests/fuzz/corpus/, *.supp, *.der, *.pem),
# configuration templates (p11-kit/*.module, .clang-format, .gitignore), the linker version
# script, debian/ (covered by debian/copyright in its own format), LICENSE, and anything
# generated or vendored (build directories, node_modules/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ID='SPDX-License-Identifier: Apache-2.0'

usage() {
  echo "usage: spdx.sh --check|--fix|--list [FILE...]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
mode=$1
shift
case $mode in --check | --fix | --list) ;; *) usage ;; esac

# style FILE (relative to $top): prints c, hash or slash for a source file, nothing otherwise.
style() {
  local f=$1 base first
  case "/$f" in
    */node_modules/* | /build*/* | */.git/* | /debian/* | /tests/fuzz/corpus/*) return 0 ;;
  esac
  base=${f##*/}
  case $base in
    *.c | *.h) echo c ;;
    *.sh | *.py | meson.build | meson_options.txt) echo hash ;;
    *.js | *.mjs | *.cjs) echo slash ;;
    *.*) ;;
    *)
      [ -f "$top/$f" ] || return 0
      IFS= read -r first <"$top/$f" || true
      case $first in
        '#!'*/sh | '#!'*/bash | '#!'*/python3 | '#!'*' sh' | '#!'*' bash' | '#!'*' python3' | \
          '#!'*/sh' '* | '#!'*/bash' '*) echo hash ;;
      esac
      ;;
  esac
}

line_for() {
  case $1 in
    c) printf '/* %s */\n' "$ID" ;;
    hash) printf '# %s\n' "$ID" ;;
    slash) printf '// %s\n' "$ID" ;;
  esac
}

# has_line FILE STYLE: the line is line 1, or line 2 under a #! line.
has_line() {
  local want l1 l2
  want=$(line_for "$2")
  { IFS= read -r l1 || true; IFS= read -r l2 || true; } <"$top/$1"
  [ "$l1" = "$want" ] && return 0
  case $l1 in '#!'*) [ "$l2" = "$want" ] && return 0 ;; esac
  return 1
}

fix_file() {
  local f=$1 st=$2 tmp l1=''
  tmp=$(mktemp "$top/${f%/*}/.spdx.XXXXXX" 2>/dev/null || mktemp)
  IFS= read -r l1 <"$top/$f" || true
  case $l1 in
    '#!'*) { head -n 1 "$top/$f"; line_for "$st"; tail -n +2 "$top/$f"; } >"$tmp" ;;
    *) { line_for "$st"; cat "$top/$f"; } >"$tmp" ;;
  esac
  cat "$tmp" >"$top/$f"
  rm -f "$tmp"
}

list_tree() {
  if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files --cached --others --exclude-standard
  else
    # Meson build directories (any name: they hold meson-private/) are left out too.
    (cd "$top" && find . \( -name .git -o -name node_modules -o -path './build*' \
      -o -type d -exec test -d '{}/meson-private' \; \) -prune -o -type f -print | sed 's#^\./##')
  fi
}

if [ $# -gt 0 ]; then
  for a in "$@"; do
    # Paths relative to the current directory or absolute; reported relative to the top.
    p=$(cd "$(dirname "$a")" 2>/dev/null && pwd)/${a##*/} || continue
    case $p in "$top"/*) printf '%s\n' "${p#"$top"/}" ;; esac
  done
else
  list_tree
fi | LC_ALL=C sort -u | {
  missing=0
  while IFS= read -r f; do
    [ -f "$top/$f" ] || continue
    st=$(style "$f")
    [ -n "$st" ] || continue
    case $mode in
      --list) printf '%s\n' "$f" ;;
      --check) has_line "$f" "$st" || { printf '%s\n' "$f"; missing=$((missing + 1)); } ;;
      --fix) has_line "$f" "$st" || { fix_file "$f" "$st" && printf 'fixed %s\n' "$f"; } ;;
    esac
  done
  if [ "$mode" = --check ] && [ "$missing" -gt 0 ]; then
    echo "spdx: $missing source file(s) lack the line '$ID' (fix: bash scripts/spdx.sh --fix)" >&2
    exit 1
  fi
  exit 0
}
