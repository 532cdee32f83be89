#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# rel-loopback (meson suite `reliability`): tests never leave loopback (docs/testing.md). Runs every
# test of the `integration` suite, as meson registers it (its command, environment and timeout),
# with every process it starts (the emulator, curl, pkcs11-tool, ssh-agent and its helper, the
# module inside each) under `strace -f --seccomp-bpf -e trace=connect` (loopback_wrap.sh, given to
# a nested `meson test --wrapper`), and fails on any connect whose destination is not 127.0.0.0/8,
# ::1 (or ::ffff:127.x) or a unix socket. A self-check first proves the filter flags a non-loopback
# destination (169.254.169.254, the IMDS address, and TEST-NET addresses), through UDP connects
# that send no packet, so the test cannot pass vacuously.
#
# Usage: t_loopback.sh BUILD_DIR [TEST...]
#   no TEST: every test of the integration suite but those in LOOPBACK_EXCLUDED below, two at a
#   time (tests registered is_parallel: false run alone, as meson runs them); TEST...: those meson
#   tests, of any suite (e.g. `bash tests/reliability/t_loopback.sh build ssh consumer-nginx`).
# The nested runs' own logs: BUILD_DIR/meson-logs/rel-loopback-traced-{first,second}-bash.{txt,json}
# (the second: the tests that failed traced, run once more).

# The nested meson run gets the environment and umask this script was started with, not what
# lib.sh sets up for this script's own checks: the tests run as their registration runs them.
mapfile -d '' -t ORIG_ENV < <(env -0)
ORIG_UMASK=$(umask)
. "$(dirname "$0")/../integration/lib.sh"
need_tool strace python3 meson jq flock
if [ $# -lt 1 ] || ! [ -f "$1/meson-info/intro-tests.json" ]; then
  fail "usage: t_loopback.sh BUILD_DIR [TEST...] (BUILD_DIR: a configured meson build directory)"
fi
BUILD=$(cd "$1" && pwd)
shift

# Tests of the integration suite that are not traced, each with its reason (printed by every run).
# A test belongs here only when it cannot run under ptrace at all; a test that fails traced is a
# finding to fix, not a reason.
declare -A LOOPBACK_EXCLUDED=()
# Connects outside loopback a test may make, as an extended regex on strace's line (result
# included), each with its reason; every other one of its connects is checked as usual.
declare -A LOOPBACK_ALLOWED=(
  [doctor]='sin6?_port=htons\(53\), .*\) = -1 ENETUNREACH '
)
declare -A LOOPBACK_ALLOWED_WHY=(
  [doctor]="DNS (port 53) refused with ENETUNREACH: its unresolvable-vault-name check runs only in a loopback-only network namespace (scripts/test.sh), where the resolver cannot be reached and no packet is sent"
)

# strace_connects LOG CMD...: CMD and all its descendants, connect(2) calls recorded in LOG. Only
# connect stops the tracee (seccomp-bpf), so the tests run at nearly full speed. The same strace
# command as loopback_wrap.sh's.
strace_connects() {
  local log=$1
  shift
  strace -f -qq --seccomp-bpf -e trace=connect -e signal=none -o "$log" -- "$@"
}

# connect_lines LOG: LOG's connect calls, one line each with its result: a call that strace split
# (`connect(... <unfinished ...>`, later `PID <... connect resumed>) = ...`, another thread of the
# traced tree ran in between) is joined again by its PID.
connect_lines() {
  awk '/<\.\.\. connect resumed>/ {
         if ($1 in pend) { r = $0; sub(/^.*<\.\.\. connect resumed>/, "", r); print pend[$1] r; delete pend[$1] }
         next
       }
       /(^|[[:space:]])connect\(/ {
         if (/ <unfinished \.\.\.>$/) { sub(/ <unfinished \.\.\.>$/, ""); pend[$1] = $0; next }
         print
       }
       END { for (p in pend) print pend[p] }' "$1"
}

# foreign_connects LOG [ALLOWED]: the connect calls in LOG whose destination is anything but
# loopback or a unix socket, less those matching the extended regex ALLOWED (LOOPBACK_ALLOWED).
# AF_UNSPEC (dissolving a UDP association) and AF_NETLINK (the kernel) name no destination;
# 0.0.0.0 and :: are this host (glibc's getaddrinfo connects a UDP socket to each passive address a
# server resolves, to sort them); an address strace could not decode counts as foreign. A call
# that failed counts too: what the network namespace refused would leave a machine without one.
foreign_connects() {
  connect_lines "$1" |
    grep -vE 'sa_family=AF_(UNIX|UNSPEC|NETLINK)[,}]' |
    grep -vE 'sa_family=AF_INET, sin_port=htons\([0-9]+\), sin_addr=inet_addr\("(127\.[0-9]+\.[0-9]+\.[0-9]+|0\.0\.0\.0)"\)' |
    grep -vE 'sa_family=AF_INET6, .*inet_pton\(AF_INET6, "(::1|::|::ffff:127\.[0-9]+\.[0-9]+\.[0-9]+)"' |
    grep -vE "${2:-^\$}" || true
}
n_connects() { connect_lines "$1" | wc -l; }
# n_connects_to LOG DEST: the connect calls in LOG whose destination is DEST (an address as strace
# prints it, or a unix socket path). The self-check counts these, not every connect: the
# interpreter may make connects of its own at start (a name-service socket, say), and those are
# the host's business, not the filter's. When the count is not 1, LOG's connect lines are shown.
n_connects_to() {
  local n
  n=$(connect_lines "$1" | grep -cF "\"$2\"" || true)
  if [ "$n" != 1 ]; then
    connect_lines "$1" | head -n 8 | sed 's/^/#   traced: /' >&2
  fi
  echo "$n"
}

section "self-check: the filter flags every destination outside loopback and passes loopback"
# UDP connect(2) only sets the peer address: no packet leaves, in or outside a network namespace.
UDP_CONNECT='import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
try:
    s.connect((sys.argv[1], 9))
except OSError as e:
    print(e)'
udp_connect=(python3 -c "$UDP_CONNECT")
for addr in 169.254.169.254 192.0.2.1 10.0.0.1 2001:db8::1 ::ffff:10.0.0.1; do
  strace_connects "$WORK/self-$addr.strace" "${udp_connect[@]}" "$addr" >/dev/null 2>&1 || true
  check_eq "a connect to $addr is traced" 1 "$(n_connects_to "$WORK/self-$addr.strace" "$addr")"
  check_eq "a connect to $addr is flagged" 1 \
    "$(foreign_connects "$WORK/self-$addr.strace" | grep -cF "\"$addr\"" || true)"
done
for addr in 127.0.0.1 127.1.2.3 ::1 ::ffff:127.0.0.1 0.0.0.0 ::; do
  strace_connects "$WORK/self-$addr.strace" "${udp_connect[@]}" "$addr" >/dev/null 2>&1 || true
  check_eq "a connect to $addr is traced" 1 "$(n_connects_to "$WORK/self-$addr.strace" "$addr")"
  check_eq "a connect to $addr passes" "" "$(foreign_connects "$WORK/self-$addr.strace")"
done
strace_connects "$WORK/self-unix.strace" python3 -c 'import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("/nonexistent/akv-loopback.sock")
except OSError:
    pass' >/dev/null 2>&1 || true
# Synthetic logs: a connect strace split around another thread's call is joined with its result;
# an allowance (the doctor's) passes only the failed call it names.
printf '%s\n' '7 connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("10.0.0.1")}, 16 <unfinished ...>' \
  '8 connect(4, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("127.0.0.1")}, 16) = 0' \
  '7 <... connect resumed>) = 0' >"$WORK/self-split.strace"
check_eq "a split connect is joined and flagged" \
  '7 connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("10.0.0.1")}, 16) = 0' \
  "$(foreign_connects "$WORK/self-split.strace")"
dns='connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16)'
printf '9 %s = -1 ENETUNREACH (Network is unreachable)\n9 %s = 0\n' "$dns" "$dns" >"$WORK/self-dns.strace"
check_eq "the doctor's allowance passes a refused DNS connect, not one that went out" "9 $dns = 0" \
  "$(foreign_connects "$WORK/self-dns.strace" "${LOOPBACK_ALLOWED[doctor]}")"
unix_traced=$(n_connects_to "$WORK/self-unix.strace" /nonexistent/akv-loopback.sock)
check_eq "a connect to a unix socket is traced and passes" "1|" \
  "$unix_traced|$(foreign_connects "$WORK/self-unix.strace")"

section "the tests under strace -f --seccomp-bpf -e trace=connect"
if [ $# -gt 0 ]; then
  tests=("$@")
  suite=()
else
  mapfile -t all < <(jq -r '.[] | select(any(.suite[]; . == "integration" or endswith(":integration"))) |
    .name' "$BUILD/meson-info/intro-tests.json")
  [ "${#all[@]}" -gt 0 ] || fail "no test of the integration suite is registered in $BUILD"
  for name in "${!LOOPBACK_EXCLUDED[@]}"; do
    check_eq "excluded test $name is still registered" "$name" \
      "$(printf '%s\n' "${all[@]}" | grep -xF -- "$name" || true)"
  done
  tests=()
  for name in "${all[@]}"; do
    if [ -n "${LOOPBACK_EXCLUDED[$name]+set}" ]; then
      log "not traced: $name (${LOOPBACK_EXCLUDED[$name]})"
    else
      tests+=("$name")
    fi
  done
  log "${#tests[@]} of the ${#all[@]} tests of the integration suite traced, ${#LOOPBACK_EXCLUDED[@]} excluded"
  suite=(--suite integration)
fi
for name in "${!LOOPBACK_ALLOWED[@]}"; do
  log "allowed for $name: ${LOOPBACK_ALLOWED_WHY[$name]}"
done

# The nested run does not build (--no-rebuild: a second ninja in the build directory would race
# the one of the meson run this test is part of), so what the selected tests depend on must exist.
missing=$(jq -r --argjson names "$(printf '%s\n' "${tests[@]}" | jq -R . | jq -s .)" \
  --slurpfile tg "$BUILD/meson-info/intro-targets.json" \
  '($tg[0] | map({(.id): .filename}) | add) as $files |
   [.[] | select(.name as $n | $names | index($n)) | .depends[] | $files[.][]?] | unique | .[]' \
  "$BUILD/meson-info/intro-tests.json" | while read -r f; do [ -e "$f" ] || echo "$f"; done)
[ -z "$missing" ] || fail "not built (run ninja -C $BUILD first): ${missing//$'\n'/ }"

logbase=rel-loopback-traced
# One traced run at a time per build directory: the nested run's log has a fixed name (kept with
# the other meson logs, for a post-mortem), which a second run would overwrite while it is read.
mkdir -p "$BUILD/meson-logs"
exec {lockfd}>"$BUILD/meson-logs/$logbase.lock"
flock -w 900 "$lockfd" || fail "another rel-loopback run holds $BUILD/meson-logs/$logbase.lock"
wrapper=(bash "$(cd "$(dirname "$0")" && pwd)/loopback_wrap.sh")
nw=${#wrapper[@]}
total=0
nforeign=0
ntraces=0
declare -A result_of=() dur_of=() first_result=()

# traced_pass PASS TEST...: one nested meson run of the TESTs under loopback_wrap.sh; records each
# test's result and checks every trace it left for connects outside loopback.
traced_pass() {
  local pass=$1 traces="$WORK/traces.$1" json rc=0 t0 c trace n allowed note name result dur cmd64 cmd
  local -a jsons
  local -A trace_of=() checked=()
  shift
  mkdir -p "$traces"
  rm -f "$BUILD/meson-logs/$logbase-$pass"-*.json
  t0=$(date +%s)
  # shellcheck disable=SC2097,SC2098
  (exec {lockfd}>&- && umask "$ORIG_UMASK" && exec env -i "${ORIG_ENV[@]}" AKV_LOOPBACK_DIR="$traces" \
    meson test -C "$BUILD" --no-rebuild --num-processes 2 --logbase "$logbase-$pass" \
    --wrapper "$(printf '%q ' "${wrapper[@]}")" "${suite[@]}" "$@") >"$WORK/meson.$pass.out" 2>&1 || rc=$?
  log "nested meson test ($pass): exit status $rc, $(($(date +%s) - t0)) s wall"
  grep -E '^(Ok|Fail|Skipped|Timeout|Expected Fail|Unexpected Pass):' "$WORK/meson.$pass.out" | sed 's/^/#   /' || true
  jsons=("$BUILD/meson-logs/$logbase-$pass"-*.json)
  json=${jsons[0]}
  [ -f "$json" ] || { tail -n 20 "$WORK/meson.$pass.out" | sed 's/^/#   | /'; fail "the nested meson test wrote no JSON log"; }

  # The trace of each test: the .cmd file loopback_wrap.sh wrote holds the test's command, the
  # JSON log's `command` is the wrapper followed by that same command.
  for c in "$traces"/trace.*.cmd; do
    [ -e "$c" ] || continue
    trace_of["$(cat "$c")"]=${c%.cmd}.strace
  done
  while IFS=$'\t' read -r name result dur cmd64; do
    name=${name##* / }
    result_of[$name]=$result
    dur_of[$name]=$dur
    [ -n "${first_result[$name]+set}" ] || first_result[$name]=$result
    cmd=$(printf '%s' "$cmd64" | base64 -d)
    trace=${trace_of[$cmd]:-}
    if [ "$result" = SKIP ]; then
      log "$name skipped itself (exit 77): only its connect calls so far are checked"
    elif [ "$result" != OK ]; then
      log "$name: $result traced ($pass run, ${dur} s)"
      jq -r --arg n "$name" 'select(.name | endswith(" / " + $n)) | .stdout' "$json" |
        { grep -E '^not ok|^# .*(FAILED|checks)|SKIP|FATAL' || true; } | head -n 20 | sed 's/^/#   | /'
    fi
    if [ -z "$trace" ] || ! [ -f "$trace" ]; then
      check_eq "$name was traced ($pass run: a trace file for its command)" yes no
      continue
    fi
    checked[$trace]=1
    n=$(n_connects "$trace")
    total=$((total + n))
    [ "$result" != OK ] || check "$name made connect calls ($pass run, $n traced)" test "$n" -gt 0
    allowed=${LOOPBACK_ALLOWED[$name]:-}
    foreign_connects "$trace" "$allowed" >"$trace.foreign"
    if [ -s "$trace.foreign" ]; then
      log "$name: $(wc -l <"$trace.foreign") connects outside loopback"
      head -n 10 "$trace.foreign" | sed 's/^/#   foreign: /'
    fi
    nforeign=$((nforeign + $(wc -l <"$trace.foreign")))
    note=""
    [ -z "$allowed" ] || note=", $(($(foreign_connects "$trace" | wc -l) - $(wc -l <"$trace.foreign"))) allowed"
    check_eq "$name: no connect outside loopback and unix sockets ($pass run, $n connects$note)" 0 \
      "$(wc -l <"$trace.foreign")"
  done < <(jq -r --argjson nw "$nw" \
    '[.name, .result, (.duration | floor | tostring), (.command[$nw:] | join("\n") | @base64)] | @tsv' "$json")

  # A trace no test of the log claims (a command the JSON log does not show as it ran) is checked too.
  for trace in "$traces"/trace.*.strace; do
    [ -f "$trace" ] || continue
    ntraces=$((ntraces + 1))
    [ -z "${checked[$trace]:-}" ] || continue
    log "a trace of no test in the log: $trace ($(tr '\n' ' ' <"${trace%.strace}.cmd"))"
    total=$((total + $(n_connects "$trace")))
    nforeign=$((nforeign + $(foreign_connects "$trace" | tee /dev/stderr | wc -l)))
  done
}

traced_pass first "${tests[@]}"
# What this test judges is where the tests connect; whether they pass is the integration suite's
# own verdict. A traced test that fails (on this 2-core machine, most often a wait for a server
# under load) is run traced once more, alone with the other failures, so that one slow start
# neither fails this test nor leaves the rest of that test's connects unseen. A test that fails
# twice fails here too; more than 5 failures are not retried (something broke for real).
retry=()
for name in "${tests[@]}"; do
  case ${result_of[$name]:-none} in OK | SKIP) ;; *) retry+=("$name") ;; esac
done
if [ "${#retry[@]}" -gt 0 ] && [ "${#retry[@]}" -le 5 ]; then
  log "run traced again: ${retry[*]}"
  traced_pass second "${retry[@]}"
fi
for name in "${tests[@]}"; do
  note=""
  [ "${first_result[$name]:-}" = "${result_of[$name]:-}" ] ||
    note=", after ${first_result[$name]:-no result} on its first traced run"
  case ${result_of[$name]:-none} in
    SKIP) ;;
    *) check_eq "$name passes traced (${dur_of[$name]:-?} s$note)" OK "${result_of[$name]:-none}" ;;
  esac
done

check_eq "every selected test ran traced" "${#tests[@]}" "${#result_of[@]}"
check_eq "no connect outside loopback in any of the $ntraces traces ($total connects)" 0 "$nforeign"
finish
