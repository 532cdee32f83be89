#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# memcheck_report.sh [--quiet] DIR... - summarises the valgrind memcheck logs (NAME.PID.log, as
# memcheck_wrap.sh writes them) found under each DIR: one line per process (errors, definitely lost
# bytes/blocks, suppressed errors, command), the full record of every process that reported
# something, and a total line:
#   # memcheck: P processes (C with an exit report), E errors, D bytes definitely lost in B blocks
# Exit status 1 when any process reported a memcheck error or a definite leak (valgrind counts a
# definite leak as an error here: --errors-for-leak-kinds=definite), 0 otherwise.
#
# A log without "ERROR SUMMARY" belongs to a process that exec'd a program valgrind did not follow
# or that was killed with SIGKILL: it has no leak report, so it is listed as "no exit report" and
# fails the run only if it holds an error record.
set -u
quiet=0
if [ "${1:-}" = --quiet ]; then
  quiet=1
  shift
fi

logs=()
for d in "$@"; do
  [ -d "$d" ] || continue
  while IFS= read -r -d '' f; do logs+=("$f"); done < <(find "$d" -name '*.log' -type f -print0 | sort -z)
done

procs=0 complete=0 errors=0 def_bytes=0 def_blocks=0 bad=()
for f in "${logs[@]}"; do
  # NAME.PID.log; the first line valgrind writes is "==PID== Memcheck, ..."
  head -c 200 "$f" | grep -q 'Memcheck' || continue
  procs=$((procs + 1))
  read -r e s db dk fin cmd < <(awk '
    /== Command: / && cmd == "" { sub(/^==[0-9]+== Command: /, ""); cmd = $0 }
    /== ERROR SUMMARY: / {
      for (i = 1; i <= NF; i++) {
        if ($i == "SUMMARY:") e = $(i + 1)
        if ($i == "(suppressed:") s = $(i + 1)
      }
      done = 1
    }
    /definitely lost: / && !/possibly/ {
      for (i = 1; i <= NF; i++) if ($i == "lost:") { b = $(i + 1); k = $(i + 4) }
      gsub(/,/, "", b); gsub(/,/, "", k)
    }
    / are definitely lost in loss record / { lr++ }
    # Error records, for logs without a summary (an untraced exec, SIGKILL).
    /== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument .* of function|Process terminating with default action of signal (4|6|7|8|11) )/ { rec++ }
    END {
      # ERROR SUMMARY counts each definite leak record too (--errors-for-leak-kinds=definite).
      if (!done) { e = rec + 0; s = 0 } else { e -= lr }
      printf "%d %d %d %d %d %s\n", e, s, b + 0, k + 0, done + 0, (cmd == "" ? "?" : cmd)
    }' "$f")
  errors=$((errors + e))
  def_bytes=$((def_bytes + db))
  def_blocks=$((def_blocks + dk))
  base=$(basename "$f" .log)
  if [ "$fin" = 1 ]; then
    complete=$((complete + 1))
    state=""
  else
    state="  (no exit report: exec'd or killed)"
  fi
  if [ "$e" != 0 ] || [ "$db" != 0 ]; then
    bad+=("$f")
  fi
  if [ "$quiet" = 0 ] || [ "$e" != 0 ] || [ "$db" != 0 ]; then
    printf '#   %-28s errors %d  definitely lost %d B in %d blocks  suppressed %d  %.110s%s\n' \
      "$base" "$e" "$db" "$dk" "$s" "$cmd" "$state"
  fi
done

for f in "${bad[@]}"; do
  printf '\n# ---- %s ----\n' "$f"
  grep -v -e '^==[0-9]*== *$' "$f" | sed -n '/Command:/,$p' | head -n 400 | sed 's/^/#   | /'
done
printf '# memcheck: %d processes (%d with an exit report), %d errors, %d bytes definitely lost in %d blocks\n' \
  "$procs" "$complete" "$errors" "$def_bytes" "$def_blocks"
[ "$errors" = 0 ] && [ "$def_bytes" = 0 ]
