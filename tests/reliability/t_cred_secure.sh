#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# No Azure CLI in a privileged process (docs/security.md "Privileged processes", docs/config.md
# "Credential chain"): the az login and PATH belong to whoever started a setuid/setgid program. The driver
# (cred_secure_test.c) lists the objects of a slot whose credential (type auto, from pReserved)
# can only come from az — IMDS is a closed loopback port — with a fake az that works and records
# its calls: a plain copy (the control) gets its token from az; a setgid copy, which the kernel
# starts with AT_SECURE, never runs az and fails with a line saying why.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl
need_module

emu_start --vault credsec
kv_create_ec ec-p256 P-256 || fail "seeding"
PROG=$(rel_prog cred_secure_test)
mkdir -p "$WORK/bin"
cp "$PROG" "$WORK/bin/plain"
cp "$PROG" "$WORK/bin/setgid"
if [ "$(id -u)" = 0 ]; then
  grp=65534
else
  grp=$(id -G | tr ' ' '\n' | grep -vx "$(id -g)" | head -n 1)
  [ -n "$grp" ] || skip "not root and no supplementary group: cannot make a setgid test program"
fi
chgrp "$grp" "$WORK/bin/setgid" && chmod 2755 "$WORK/bin/setgid" || fail "chgrp/chmod g+s"
chmod 755 "$WORK/bin/plain"
"$WORK/bin/setgid" >"$WORK/probe.out" 2>&1 || true
grep -qx "at_secure 1" "$WORK/probe.out" ||
  skip "the setgid copy runs without AT_SECURE ($WORK is on a nosuid mount?): $(head -n1 "$WORK/probe.out")"

# A fake az that works: it gets the token from the emulator with the real secret.
mkdir -p "$WORK/azbin"
fake_az "$WORK/azbin/az"
module_config "$WORK/az.json" '{"objects":["keys"]}' \
  "{\"credential\":{\"type\":\"auto\",\"imds_endpoint\":\"http://127.0.0.1:9\",\"az_path\":\"$WORK/azbin/az\"}}"
jq '.slots |= [.[0]]' "$WORK/az.json" >"$WORK/a.json" && mv "$WORK/a.json" "$WORK/az.json" && chmod 600 "$WORK/az.json"
check "the configuration holds no client secret" test "$(jq -r '.credential.client_secret // "none"' "$WORK/az.json")" = none
# No credential from the environment either (the plain copy would use it).
unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL

section "control: a plain process gets its token from az"
"$WORK/bin/plain" "$WORK/az.json" >"$WORK/plain.out" 2>"$WORK/plain.err" || true
check "the listing works" grep -qx "find CKR_OK" "$WORK/plain.out"
check "objects were found" grep -qx "objects 2" "$WORK/plain.out"
check_eq "az ran once" 1 "$(wc -l <"$WORK/azbin/az.calls")"

section "privileged (setgid, AT_SECURE): az is never run"
: >"$WORK/azbin/az.calls"
"$WORK/bin/setgid" "$WORK/az.json" >"$WORK/priv.out" 2>"$WORK/priv.err" || true
sed 's/^/#   | /' "$WORK/priv.err" | tail -n 5
check "C_Initialize succeeds" grep -qx "init CKR_OK" "$WORK/priv.out"
check "the listing fails with CKR_DEVICE_ERROR" grep -qx "find CKR_DEVICE_ERROR" "$WORK/priv.out"
check_eq "az was not run" 0 "$(wc -l <"$WORK/azbin/az.calls")"
check_grep "the log says why" \
  "credential chain: no source is configured: .*Azure CLI: privileged process \\(AT_SECURE\\): the Azure CLI is never run" \
  "$WORK/priv.err"
finish
