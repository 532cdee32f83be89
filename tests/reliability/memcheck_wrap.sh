#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# memcheck_wrap.sh NAME REAL [ARGS...] - runs REAL under valgrind memcheck when this invocation
# loads akv-pkcs11.so, and plainly otherwise (openssl dgst, curl against the REST API, ssh-keygen
# -i ... stay at full speed). tests/integration/lib.sh installs one shim per consumer in front of
# PATH when AKV_MEMCHECK is set; each shim is `exec memcheck_wrap.sh NAME REAL "$@"`.
#
# Environment (set by lib.sh's memcheck_setup):
#   AKV_MEMCHECK_LOG_DIR  where the logs go, one per process: NAME.PID.log
#   AKV_MEMCHECK_SUPP     suppressions file (tests/reliability/memcheck.supp)
#   AKV_MEMCHECK_GENSUPP  1: print a suppression after every error (to write new entries)
#   AKV_MEMCHECK_VALGRIND the valgrind binary (default: valgrind from PATH)
#   AKV_MEMCHECK_EXITCODE exit status of a process with a memcheck error or definite leak (default
#                         97, so the test's own check fails right there; 0: the program's own
#                         status, to collect every report of a run in one go)
set -u
name=$1 real=$2
shift 2

use=0
trace=no
case "$name" in
# Always load the module: pkcs11-tool and p11tool are given it (--module / --provider, or the
# p11-kit proxy that loads it), the C drivers dlopen it, OpenSSH's helper loads it for ssh-agent.
pkcs11-tool | p11tool | ssh-pkcs11-helper | p11_*) use=1 ;;
# `p11-kit server` execs p11-kit-server, which forks and execs p11-kit-remote per client: the
# module lives in that grandchild, so only here valgrind follows exec.
p11-kit) use=1 trace=yes ;;
*)
  for a in "$@"; do
    case "$name:$a" in
    ssh-keygen:-D | ssh:-I | ssh:-I* | ssh:*PKCS11Provider* | openssl:-engine | curl:--engine) use=1 ;;
    esac
  done
  ;;
esac
[ "$use" = 1 ] || exec "$real" "$@"

# --keep-debuginfo: a program that unloads a library (openssl its engine, p11-kit-proxy the module)
# still gets that library's frames named in leak reports printed at exit, instead of "???".
args=(--tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
  "--error-exitcode=${AKV_MEMCHECK_EXITCODE:-97}" --num-callers=40 --keep-debuginfo=yes --trace-children="$trace" --child-silent-after-fork=no
  "--log-file=$AKV_MEMCHECK_LOG_DIR/$name.%p.log")
[ -n "${AKV_MEMCHECK_SUPP:-}" ] && args+=("--suppressions=$AKV_MEMCHECK_SUPP")
[ "${AKV_MEMCHECK_GENSUPP:-0}" = 1 ] && args+=(--gen-suppressions=all)
exec "${AKV_MEMCHECK_VALGRIND:-valgrind}" "${args[@]}" "$real" "$@"
