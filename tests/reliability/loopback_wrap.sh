#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# loopback_wrap.sh CMD... - the `meson test --wrapper` of rel-loopback (t_loopback.sh): runs CMD,
# a test's registered command, with every process it starts under
# `strace -f --seccomp-bpf -e trace=connect` (only connect(2) stops a tracee, so the test runs at
# nearly full speed). The trace goes to $AKV_LOOPBACK_DIR/trace.XXXXXX.strace and CMD, one
# argument a line, to the matching .cmd file, from which t_loopback.sh finds the meson test it
# belongs to. The exit status is CMD's (strace passes it on), so meson judges the test as usual.
set -u
dir=${AKV_LOOPBACK_DIR:?AKV_LOOPBACK_DIR: where the traces go (set by t_loopback.sh)}
base=$(mktemp "$dir/trace.XXXXXX") || exit 1
printf '%s\n' "$@" >"$base.cmd"
exec strace -f -qq --seccomp-bpf -e trace=connect -e signal=none -o "$base.strace" -- "$@"
