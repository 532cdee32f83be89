#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# rel-loopback (meson suite `reliability`): tests never leave loopback (docs/testing.md). Runs
# integration tests with every process they start (the emulator, curl, pkcs11-tool, ssh-agent and
# its helper, the module inside each) under `strace -f -e trace=connect`, and fails on any connect
# whose destination is not 127.0.0.0/8, ::1 (or ::ffff:127.x) or a unix socket. A self-check first
# proves the filter flags a non-loopback destination (169.254.169.254, the IMDS address, and
# TEST-NET addresses), through UDP connects that send no packet, so the test cannot pass vacuously.
#
# Usage: t_loopback.sh INTEGRATION_TEST.sh...   (meson passes credentials, identity, sign, objects)
# Inputs: what the integration tests need (AKV_EMULATOR, AKV_MODULE, ...: integ_env).
. "$(dirname "$0")/../integration/lib.sh"
need_tool strace python3
[ $# -gt 0 ] || fail "usage: t_loopback.sh INTEGRATION_TEST.sh..."

# strace_connects LOG CMD...: CMD and all its descendants, connect(2) calls recorded in LOG. Only
# connect stops the tracee (seccomp-bpf), so the tests run at nearly full speed.
strace_connects() {
  local log=$1
  shift
  strace -f -qq --seccomp-bpf -e trace=connect -e signal=none -o "$log" -- "$@"
}

# foreign_connects LOG: the connect calls in LOG whose destination is anything but loopback or a
# unix socket. AF_UNSPEC (dissolving a UDP association) and AF_NETLINK (the kernel) name no
# destination; 0.0.0.0 and :: are this host (glibc's getaddrinfo connects a UDP socket to each
# passive address a server resolves, to sort them); an address strace could not decode counts as
# foreign.
foreign_connects() {
  grep -E '(^|[[:space:]])connect\(' "$1" |
    grep -vE 'sa_family=AF_(UNIX|UNSPEC|NETLINK)[,}]' |
    grep -vE 'sa_family=AF_INET, sin_port=htons\([0-9]+\), sin_addr=inet_addr\("(127\.[0-9]+\.[0-9]+\.[0-9]+|0\.0\.0\.0)"\)' |
    grep -vE 'sa_family=AF_INET6, .*inet_pton\(AF_INET6, "(::1|::|::ffff:127\.[0-9]+\.[0-9]+\.[0-9]+)"' || true
}
n_connects() { grep -cE '(^|[[:space:]])connect\(' "$1" || true; }
# n_connects_to LOG DEST: the connect calls in LOG whose destination is DEST (an address as strace
# prints it, or a unix socket path). The self-check counts these, not every connect: the
# interpreter may make connects of its own at start (a name-service socket, say), and those are
# the host's business, not the filter's. When the count is not 1, LOG's connect lines are shown.
n_connects_to() {
  local n
  n=$(grep -E '(^|[[:space:]])connect\(' "$1" | grep -cF "\"$2\"" || true)
  if [ "$n" != 1 ]; then
    grep -E '(^|[[:space:]])connect\(' "$1" | head -n 8 | sed 's/^/#   traced: /' >&2
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
unix_traced=$(n_connects_to "$WORK/self-unix.strace" /nonexistent/akv-loopback.sock)
check_eq "a connect to a unix socket is traced and passes" "1|" \
  "$unix_traced|$(foreign_connects "$WORK/self-unix.strace")"

for t in "$@"; do
  name=$(basename "${t%.sh}")
  section "$name under strace -f -e trace=connect"
  rc=0
  strace_connects "$WORK/$name.strace" bash "$t" >"$WORK/$name.out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    { grep -E '^not ok|^# .*(FAILED|checks)|SKIP|FATAL' "$WORK/$name.out" || tail -n 5 "$WORK/$name.out"; } |
      head -n 20 | sed 's/^/#   | /'
  fi
  if [ "$rc" = 77 ]; then
    log "$name skipped itself (exit 77): only its connect calls so far are checked"
  else
    check_eq "$name passes under strace ($(grep -c '^ok' "$WORK/$name.out" || true) checks ok)" 0 "$rc"
  fi
  n=$(n_connects "$WORK/$name.strace")
  check "$name made connect calls ($n traced)" test "$n" -gt 0
  foreign_connects "$WORK/$name.strace" >"$WORK/$name.foreign"
  if [ -s "$WORK/$name.foreign" ]; then
    head -n 10 "$WORK/$name.foreign" | sed 's/^/#   foreign: /'
  fi
  check_eq "$name: no connect outside loopback and unix sockets" 0 "$(wc -l <"$WORK/$name.foreign")"
done
finish
