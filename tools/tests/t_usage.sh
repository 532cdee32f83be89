#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# docs/usage.md and docs/troubleshooting.md stay true: every ```sh block of them runs, in order and in one shell, against the
# emulator (vault "myvault" with RSA key "mykey", EC key "myeckey", certificate "mycert"). Only the
# module path, the configuration path and the ports 8443/8444 are replaced. Each block is one
# check; the blocks verify their own results (openssl -verify, cmp, grep).
# Inputs: AKV_EMULATOR, AKV_MODULE, AKV_P11, INTEG_LIB, AKV_SOURCE_ROOT.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool jq curl openssl pkcs11-tool p11tool ssh-keygen ssh-agent ssh-add ss awk
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
find /usr/lib -name pkcs11.so -path '*engines-3*' 2>/dev/null | grep -q . ||
  skip "the OpenSSL pkcs11 engine (libengine-pkcs11-openssl) is not installed"
DOCS=("${AKV_SOURCE_ROOT:?}/docs/usage.md" "$AKV_SOURCE_ROOT/docs/troubleshooting.md")
for d in "${DOCS[@]}"; do [ -f "$d" ] || fail "$d is missing"; done

section "vault myvault, seeded through REST"
emu_start --vault myvault
kv_create_rsa mykey 2048 || fail "seeding mykey"
kv_create_ec myeckey P-256 || fail "seeding myeckey"
kv_create_cert mycert "CN=mycert" RSA 2048 || fail "seeding mycert"
unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST AKV_PKCS11_VAULT_URL
module_config "$WORK/config.json"

# akv-p11 as the docs call it, loading the build's module.
mkdir -p "$WORK/bin" "$WORK/run"
ln -s "$AKV_P11" "$WORK/bin/akv-p11"
export PATH="$WORK/bin:$PATH" AKV_PKCS11_MODULE="$AKV_MODULE"
P1=$(free_port) || fail "no free port"
P2=$(free_port) || fail "no free port"
[ "$P1" != "$P2" ] || P2=$(free_port)

section "extract the sh blocks of docs/usage.md, then docs/troubleshooting.md"
# One file per block, named by document order, document and first line number.
mkdir -p "$WORK/blocks"
di=0
for d in "${DOCS[@]}"; do
  di=$((di + 1))
  awk -v dir="$WORK/blocks" -v di="$di" -v doc="$(basename "$d" .md)" '
    /^```sh$/ { inb = 1; n++; f = sprintf("%s/%d%03d-%s-L%d.sh", dir, di, n, doc, NR); next }
    /^```/ && inb { inb = 0; close(f); next }
    inb { print > f }' "$d"
done
mapfile -t BLOCKS < <(find "$WORK/blocks" -name '*.sh' | LC_ALL=C sort)
check "docs/usage.md has sh blocks" test "$(find "$WORK/blocks" -name '1*-usage-*.sh' | wc -l)" -ge 10
check "docs/troubleshooting.md has sh blocks" test "$(find "$WORK/blocks" -name '2*-troubleshooting-*.sh' | wc -l)" -ge 2
for b in "${BLOCKS[@]}"; do
  sed -i -e "s#/usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so#$AKV_MODULE#g" \
    -e "s#/etc/akv-pkcs11/config.json#$WORK/config.json#g" \
    -e "s#8443#$P1#g" -e "s#8444#$P2#g" "$b"
done

# One shell runs every block (variables carry over, as for a reader); a marker per finished block.
{
  echo 'set -euo pipefail'
  # An agent left by a failed block is stopped (after `ssh-agent -k` the pid is gone: not an error).
  echo 'trap '\''if [ -n "${SSH_AGENT_PID:-}" ]; then kill "$SSH_AGENT_PID" 2>/dev/null || true; fi'\'' EXIT'
  for b in "${BLOCKS[@]}"; do
    printf 'echo "### %s"\n' "$(basename "$b")"
    cat "$b"
    printf 'touch %q\n' "$b.done"
  done
} >"$WORK/usage-run.sh"

section "run them"
rc=0
(cd "$WORK/run" && timeout 300 bash -x "$WORK/usage-run.sh") >"$WORK/usage.log" 2>&1 || rc=$?
for b in "${BLOCKS[@]}"; do
  name=$(basename "$b" .sh)
  if [ -e "$b.done" ]; then
    _check_result 0 "block $name: $(head -n1 "$b" | cut -c1-70)"
  else
    printf '#   block %s failed or was not reached (exit status %s); end of the log:\n' "$name" "$rc"
    tail -n 30 "$WORK/usage.log" | sed 's/^/#   | /'
    _check_result 1 "block $name: $(head -n1 "$b" | cut -c1-70)"
    break
  fi
done
check_eq "the whole document ran" 0 "$rc"
check_grep "doctor said healthy" '^healthy: no problems found$' "$WORK/usage.log"
check_grep "ssh-add loaded the vault keys into the agent" '^ssh-rsa AAAA' "$WORK/usage.log"
check_grep "s_client completed the handshake with the vault key" 'Verification: OK' "$WORK/usage.log"

finish
