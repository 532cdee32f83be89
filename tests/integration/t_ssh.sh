#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSSH. A throwaway sshd on 127.0.0.1 (own config, host key, port) accepts
# `ssh -I akv-pkcs11.so` with a vault RSA key and with a vault EC key (authorized one at a time,
# from `ssh-keygen -D`), and runs a command; the same through ssh-agent (ssh-add -s); a key that is
# not in the vault is refused.
. "$(dirname "$0")/lib.sh"
need_tool ssh ssh-keygen ssh-agent ssh-add openssl jq curl ss
need_file /usr/sbin/sshd
need_module

emu_start --vault ssh1
kv_create_rsa ssh-rsa-key 2048 || fail "seeding"
kv_create_ec ssh-ec-key P-256 || fail "seeding"
export AKV_PKCS11_OBJECTS=keys

section "public keys from ssh-keygen -D"
check "ssh-keygen -D M" ssh-keygen -D "$AKV_MODULE"
cp "$WORK/check.out" "$WORK/D.out"
declare -A SSHPUB
for k in ssh-rsa-key ssh-ec-key; do
  kv_key_pem "$k" "$WORK/$k.pem" || fail "vault key $k"
  SSHPUB[$k]=$(ssh-keygen -i -m PKCS8 -f "$WORK/$k.pem" | awk '{print $1, $2}')
  check "ssh-keygen -D shows the vault key $k" grep -qF -- "${SSHPUB[$k]}" "$WORK/D.out"
done

section "throwaway sshd on 127.0.0.1"
port=$(free_port) || fail "no free port"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey" -C integration-host
ssh-keygen -q -t ed25519 -N '' -f "$WORK/outsider" -C not-in-the-vault
: >"$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $WORK/hostkey
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
UsePAM no
PidFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel VERBOSE
CFG
timeout 90 /usr/sbin/sshd -D -e -f "$WORK/sshd_config" >"$WORK/sshd.log" 2>&1 &
bg_register $!
wait_port "$port" 100 || { sed 's/^/#   sshd| /' "$WORK/sshd.log"; fail "sshd did not listen on 127.0.0.1:$port"; }
log "sshd on 127.0.0.1:$port"

ssh_run() {
  timeout 60 ssh -F /dev/null -I "$AKV_MODULE" -o BatchMode=yes -o IdentitiesOnly=no -o IdentityAgent=none \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile="$WORK/known_hosts" -o PasswordAuthentication=no \
    -o ConnectTimeout=20 -p "$port" "$(id -un)@127.0.0.1" "$@"
}

for k in ssh-rsa-key ssh-ec-key; do
  section "ssh -I akv-pkcs11.so with only $k authorized"
  printf '%s %s\n' "${SSHPUB[$k]}" "$k" >"$WORK/authorized_keys"
  check "$k: ssh logs in and runs a command" ssh_run "echo akv-ssh-ok-\$((6*7))"
  check_grep "$k: the command ran on the server" "^akv-ssh-ok-42\$" "$WORK/check.out"
  fp=$(ssh-keygen -l -f <(echo "${SSHPUB[$k]}") | awk '{print $2}')
  check "$k: sshd accepted exactly that key ($fp)" \
    bash -c 'grep "Accepted publickey for" "$1" | tail -n 1 | grep -qF -- " $2"' _ "$WORK/sshd.log" "$fp"
done

section "ssh-agent: ssh-add -s loads the vault keys, ssh signs through the agent"
sock="$WORK/agent.sock"
# -P: the agent only loads PKCS#11 modules from an allow-list (default /usr/lib*/*).
timeout 90 ssh-agent -D -a "$sock" -P "$AKV_MODULE" >"$WORK/agent.out" 2>&1 &
bg_register $!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
# ssh-add -s always asks for a PIN; the token needs none, so an askpass answers with an empty one.
printf '#!/bin/sh\necho ""\n' >"$WORK/askpass"
chmod 700 "$WORK/askpass"
check "ssh-add -s akv-pkcs11.so" env SSH_AUTH_SOCK="$sock" SSH_ASKPASS="$WORK/askpass" \
  SSH_ASKPASS_REQUIRE=force DISPLAY=none timeout 60 ssh-add -s "$AKV_MODULE"
check "ssh-add -L lists the vault keys" env SSH_AUTH_SOCK="$sock" ssh-add -L
cp "$WORK/check.out" "$WORK/agentL.out"
for k in ssh-rsa-key ssh-ec-key; do
  check "ssh-add -L has $k" grep -qF -- "${SSHPUB[$k]}" "$WORK/agentL.out"
done
for k in ssh-ec-key ssh-rsa-key; do
  printf '%s %s\n' "${SSHPUB[$k]}" "$k" >"$WORK/authorized_keys"
  check "$k through the agent: ssh logs in and runs a command" \
    timeout 60 ssh -F /dev/null -o IdentityAgent="$sock" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile="$WORK/known_hosts" -o PasswordAuthentication=no -o ConnectTimeout=20 \
    -p "$port" "$(id -un)@127.0.0.1" "echo agent-ok"
  check_grep "$k through the agent: the command ran" "^agent-ok\$" "$WORK/check.out"
done

section "a key that is not in the vault"
cp "$WORK/outsider.pub" "$WORK/authorized_keys"
check_fails "ssh with only a foreign key authorized is refused" ssh_run true

finish
