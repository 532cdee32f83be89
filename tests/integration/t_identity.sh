#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One identity per slot (docs/config.md, "Credential chain"): with type auto and managed
# identity (the emulator's IMDS) and a working az (a fake that records its calls) also available,
# - a CA file the process cannot read (pkcs11-tool run as nobody) fails with one line at the
#   default level naming the file, its owner and mode and the uid (the transport's line about the
#   CA file is debug), and costs no IMDS request and no az run;
# - a client secret revoked after the first token (the emulator's token-revoke fault plus
#   client_secret_revoked) fails clearly inside the running process (ssh-agent's
#   ssh-pkcs11-helper), with no IMDS request and no az run: the slot never changes identity.
# The wrong-secret case is in t_credentials.sh; the chain reaching IMDS with no other input too.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool ssh-agent ssh-add setpriv jq curl openssl
need_module
id nobody >/dev/null 2>&1 || skip "no user nobody"

emu_start --vault ident
kv_create_ec ec-p256 P-256 || fail "seeding"
IMDS=$(emu_field '.imds_endpoint')
[ -n "$IMDS" ] && [ "$IMDS" != null ] || fail "the ready file has no imds_endpoint"

# A fake az that works (it gets a token from the emulator with the real secret) and records calls.
mkdir -p "$WORK/azbin"
fake_az "$WORK/azbin/az"
# Every other source is there and would work: only the configured client secret may answer.
export AZURE_POD_IDENTITY_AUTHORITY_HOST="$IMDS" AKV_PKCS11_AZ_PATH="$WORK/azbin/az" AKV_PKCS11_OBJECTS=keys

section "a CA file the process cannot read (pkcs11-tool as nobody)"
# A world-searchable directory for the unprivileged run: nobody's HOME, a CA copy only root can
# read and one nobody can.
NB="$WORK/nobody"
mkdir -p "$NB"
chmod 755 "$NB" "$WORK" "$WORK/azbin"
install -d -m 700 -o nobody "$NB/home"
install -m 600 -o root "$EMU_CA" "$NB/ca-root-only.pem"
install -m 644 "$EMU_CA" "$NB/ca-readable.pem"
as_nobody() {
  env HOME="$NB/home" XDG_CACHE_HOME="$NB/home/.cache" XDG_CONFIG_HOME="$NB/home/.config" "$@" \
    timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
    pkcs11-tool --module "$AKV_MODULE" -O
}
stats_reset
check "control: as nobody with a readable CA file, pkcs11-tool -O works" \
  as_nobody AKV_PKCS11_CA_FILE="$NB/ca-readable.pem"
check_grep "control: the key is listed" "label: +ec-p256\$" "$WORK/check.out"
rm -rf -- "$NB/home/.cache" # the listing must come from the vault, not the cache file
fresh_keyring                # and the token from the token endpoint, not the control run's
stats_reset
rc=0
as_nobody AKV_PKCS11_CA_FILE="$NB/ca-root-only.pem" >"$WORK/ca.out" 2>"$WORK/ca.err" || rc=$?
sed 's/^/#   | /' "$WORK/ca.err" | tail -n 8
check "pkcs11-tool -O fails (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
cat "$WORK/ca.out" "$WORK/ca.err" >"$WORK/ca.all"
check_grep "pkcs11-tool reports CKR_DEVICE_ERROR" CKR_DEVICE_ERROR "$WORK/ca.all"
NOBODY_UID=$(id -u nobody)
check_grep "one line names the source, the CA file, its owner and mode and the uid" \
  "credential: client secret .* failed: cannot open the CA file \\(ca_file\\) $NB/ca-root-only.pem: Permission denied \\(owner uid 0 gid 0, mode 0600; this process runs as uid $NOBODY_UID " \
  "$WORK/ca.err"
check_grep "and the fix" "fix: let uid $NOBODY_UID read $NB/ca-root-only.pem" "$WORK/ca.err"
check_eq "that is the one module line at the default level (ERROR or WARN)" 1 \
  "$(grep -cE 'akv-pkcs11\[[0-9]+\] (ERROR|WARN) ' "$WORK/ca.err")"
as_nobody AKV_PKCS11_CA_FILE="$NB/ca-root-only.pem" AKV_PKCS11_LOG_LEVEL=debug \
  >/dev/null 2>"$WORK/ca-debug.err" || true
check_grep "at debug level the transport's line is there too" \
  "DEBUG http: POST .*: the CA file $NB/ca-root-only.pem cannot be used" "$WORK/ca-debug.err"
check_eq "and still one line at ERROR" 1 "$(grep -cE 'akv-pkcs11\[[0-9]+\] (ERROR|WARN) ' "$WORK/ca-debug.err")"
check_eq "no IMDS request ($(stats_ops))" 0 "$(stats_get imds)"
check_eq "az was not run" 0 "$(wc -l <"$WORK/azbin/az.calls")"

section "a client secret revoked after the first token: the running process fails clearly, no switch"
sock="$WORK/agent.sock"
# Info level: a switch to another source would be logged ("credential: using ...").
export AKV_PKCS11_LOG_FILE="$WORK/agent-module.log" AKV_PKCS11_LOG_LEVEL=info
timeout 120 ssh-agent -D -a "$sock" -P "$AKV_MODULE" >"$WORK/agent.out" 2>&1 &
agent=$!
bg_register "$agent"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
check "ssh-agent is listening" test -S "$sock"
printf '#!/bin/sh\necho\n' >"$WORK/askpass" && chmod 700 "$WORK/askpass"
ag() { env SSH_AUTH_SOCK="$sock" SSH_ASKPASS="$WORK/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none timeout 60 "$@"; }
stats_reset
check "ssh-add -s loads the module (token from the client secret)" ag ssh-add -s "$AKV_MODULE"
ag ssh-add -L >"$WORK/agent.pub" 2>&1 || true
check_grep "the agent holds the vault's EC key" "^ecdsa-sha2-nistp256 " "$WORK/agent.pub"
grep -m1 '^ecdsa-sha2-nistp256 ' "$WORK/agent.pub" >"$WORK/key.pub" || true
check "ssh-add -T: the helper signs with the vault key" ag ssh-add -T "$WORK/key.pub"
check "the first token came from the client secret ($(stats_ops))" test "$(stats_get token)" -ge 1
# The secret is deleted from the app and every token issued so far dies.
curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST --data '{"client_secret_revoked":true}' \
  "$EMU_CONTROL/config" >/dev/null || fail "revoking the client secret"
emu_faults "token-revoke@1#1"
stats_reset
check_fails "ssh-add -T fails once the secret is revoked" ag ssh-add -T "$WORK/key.pub"
check "the module asked Entra again ($(stats_ops))" test "$(stats_get token)" -ge 1
check_eq "no IMDS request" 0 "$(stats_get imds)"
check_eq "az was not run" 0 "$(wc -l <"$WORK/azbin/az.calls")"
check_grep "the log says the secret failed, why, and that the slot keeps its identity" \
  "credential: client secret .* failed: HTTP 401 .*invalid_client.*; fix: .*the slot's identity since its first token: no other source is tried" \
  "$AKV_PKCS11_LOG_FILE"
check_nogrep "the log never mentions a switch to another source" "credential: using (managed|Azure CLI)" \
  "$AKV_PKCS11_LOG_FILE"
check "ssh-add -e unloads the module" ag ssh-add -e "$AKV_MODULE"
finish
