#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: git commit signing with gpg.format=ssh through ssh-agent (docs/usage.md "git commit
# signing", recipe git), and the secp256k1 workaround for ssh-add (docs/troubleshooting.md,
# recipe ssh-secp256k1): the vault holds a secp256k1 key, ssh-add -s fails for the whole token
# until the slot names its keys. Checks: git verify-commit accepts the commit, the signing key is
# the vault's (fingerprint of its REST public key), the emulator counted the signature, and a
# tampered copy of the commit does not verify.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg git openssh-client
need_tool git ssh-agent ssh-add ssh-keygen jq
need_module

consumer_vault
kv_create_ec k1key P-256K || fail "seeding the secp256k1 key"
AGENT_SOCK="$WORK/agent.sock"

section "the symptom: ssh-add -s refuses a token that holds a secp256k1 key"
timeout 60 ssh-agent -D -a "$AGENT_SOCK" -P "$AKV_MODULE" >"$WORK/agent.out" 2>&1 &
bg_register $!
for _ in $(seq 100); do [ -S "$AGENT_SOCK" ] && break; sleep 0.1; done
check_fails "ssh-add -s with every key of the vault is refused" env SSH_AUTH_SOCK="$AGENT_SOCK" \
  AKV_PKCS11_CONFIG="$RECIPE_CONFIG" SSH_ASKPASS=/bin/true SSH_ASKPASS_REQUIRE=force \
  timeout 60 ssh-add -s "$AKV_MODULE" </dev/null
check_grep "with the documented message" 'agent refused operation' "$WORK/check.out"

section "the workaround: the slot names its keys (recipe ssh-secp256k1)"
run_recipe ssh-secp256k1 "recipe ssh-secp256k1: keys [mykey, myeckey], ssh-add -s, ssh-add -L"
check_grep "ssh-add -L lists the RSA key" '^ssh-rsa AAAA' "$WORK/recipe-ssh-secp256k1.out"
check_grep "ssh-add -L lists the P-256 key" '^ecdsa-sha2-nistp256 AAAA' "$WORK/recipe-ssh-secp256k1.out"

section "git $(pkg_version git): a commit signed through ssh-agent (recipe git)"
RECIPE_CONFIG="$WORK/run/ssh.json"
before=$(stats_get keys.sign)
run_recipe git "recipe git: ssh-add -s, git commit -S (gpg.format=ssh), git verify-commit"
R="$WORK/recipe-git.out"
vault_fp=$(ssh-keygen -l -f <(ssh-keygen -i -m PKCS8 -f "$WORK/myeckey.vault.pem") | awk '{print $2}')
check "git verify-commit: good signature by dev@example.com with the vault key ($vault_fp)" \
  grep -qF "Good \"git\" signature for dev@example.com with ECDSA key $vault_fp" "$R"
check "the vault made the signature (keys.sign $before -> $(stats_get keys.sign))" \
  test "$(stats_get keys.sign)" -gt "$before"
check_grep "the commit carries an SSH signature" '^gpgsig -----BEGIN SSH SIGNATURE-----' \
  <(git -C "$WORK/run/repo" cat-file commit HEAD)
check "git verify-commit accepts it again (outside the recipe)" git -C "$WORK/run/repo" verify-commit HEAD
tampered=$(git -C "$WORK/run/repo" cat-file commit HEAD | sed 's/^a commit signed/a commit forged/' |
  git -C "$WORK/run/repo" hash-object -t commit -w --stdin)
check_fails "a tampered copy of the commit does not verify" git -C "$WORK/run/repo" verify-commit "$tampered"
finish
