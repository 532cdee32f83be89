#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs the Azure SDK fidelity tour (tour.mjs) against a fresh akv-emulator.
# Usage: run.sh EMULATOR_PATH
# Exit: the tour's status (0 pass, 1 failures), 77 (skipped) only when there is no Node >= 20
# (tests/node/find-node.sh) or tests/interop/node_modules is absent, 99 if the emulator did not start.
# Environment: INTEROP_TIMEOUT (s, default 540), INTEROP_SECTIONS (comma list), INTEROP_TRACE (errors|all),
# INTEROP_KEEP=1 keeps the state dir and emulator log.
set -u

here=$(cd "$(dirname "$0")" && pwd)
emu=${1:-}
if [ -z "$emu" ] || [ ! -x "$emu" ]; then
    echo "run.sh: usage: run.sh EMULATOR_PATH (got '${emu}', not an executable)" >&2
    exit 99
fi
# The node on PATH when it is >= 20, else the pinned one scripts/deps.sh installed
# (docs/testing.md, "Node.js for the SDK tests").
if ! node=$(sh "$here/../node/find-node.sh"); then
    echo "SKIP: $node" >&2
    exit 77
fi
echo "run.sh: $node $("$node" --version)" >&2
for pkg in @azure/identity @azure/keyvault-keys @azure/keyvault-secrets @azure/keyvault-certificates; do
    if [ ! -f "$here/node_modules/$pkg/package.json" ]; then
        echo "SKIP: $here/node_modules/$pkg is missing; run 'npm ci --no-audit --no-fund' in $here" >&2
        exit 77
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/akv-interop.XXXXXX") || exit 99
emu_pid=
cleanup() {
    if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
        kill -TERM "$emu_pid" 2>/dev/null
        i=0
        while kill -0 "$emu_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        if kill -0 "$emu_pid" 2>/dev/null; then
            echo "run.sh: emulator ignored SIGTERM for 5 s, killing it" >&2
            kill -KILL "$emu_pid" 2>/dev/null
        fi
        wait "$emu_pid" 2>/dev/null
    fi
    if [ "${INTEROP_KEEP:-0}" = 1 ]; then
        echo "run.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready="$work/ready.json"
mkdir -p "$work/state"
"$emu" --ready-file "$ready" --port-base 0 --vault demo --vault hsm1:mhsm --state "$work/state" \
    >"$work/emulator.log" 2>&1 &
emu_pid=$!

# Wait (bounded, 20 s) for the ready file; it must be complete JSON, not a half-written file.
i=0
while :; do
    if ! kill -0 "$emu_pid" 2>/dev/null; then
        echo "run.sh: emulator exited before it was ready; its log:" >&2
        sed 's/^/  | /' "$work/emulator.log" >&2
        emu_pid=
        exit 99
    fi
    if [ -s "$ready" ] && "$node" -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$ready" 2>/dev/null; then
        break
    fi
    i=$((i + 1))
    if [ $i -ge 200 ]; then
        echo "run.sh: no ready file after 20 s; emulator log:" >&2
        sed 's/^/  | /' "$work/emulator.log" >&2
        exit 99
    fi
    sleep 0.1
done

ca=$("$node" -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).ca_file || "")' "$ready")
if [ -z "$ca" ] || [ ! -r "$ca" ]; then
    echo "run.sh: ready file has no readable ca_file ('$ca')" >&2
    exit 99
fi

# The SDKs verify TLS; the emulator's CA is trusted through NODE_EXTRA_CA_CERTS, nothing is disabled.
# No AZURE_* credentials leak in from the caller's environment: the tour builds every credential itself.
rc=0
(
    cd "$here" || exit 99
    unset AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_TENANT_ID AZURE_CLIENT_CERTIFICATE_PATH \
        AZURE_FEDERATED_TOKEN_FILE AZURE_AUTHORITY_HOST IDENTITY_ENDPOINT IDENTITY_HEADER IMDS_ENDPOINT \
        MSI_ENDPOINT MSI_SECRET AZURE_POD_IDENTITY_AUTHORITY_HOST NODE_TLS_REJECT_UNAUTHORIZED
    export NODE_EXTRA_CA_CERTS="$ca" INTEROP_READY_FILE="$ready"
    exec timeout -k 10 "${INTEROP_TIMEOUT:-540}" "$node" tour.mjs
) || rc=$?
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "run.sh: the tour timed out after ${INTEROP_TIMEOUT:-540} s" >&2
    rc=1
fi
if [ $rc -ne 0 ]; then
    echo "run.sh: tour failed (status $rc); last lines of the emulator log:" >&2
    tail -n 40 "$work/emulator.log" | sed 's/^/  | /' >&2
fi
exit $rc
