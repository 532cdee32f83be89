#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The same vault seen through GnuTLS' p11tool (listing, and --test-sign), OpenSSH's
# ssh-keygen -D and p11-kit (list-modules with a registered .module file). Touches /etc/pkcs11/modules (removed on exit).
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool p11tool ssh-keygen p11-kit openssl jq curl
need_module

emu_start --vault integ1 --vault integ2
seed_standard
KV_URL=$EMU_VAULT_URL_1 kv_create_rsa other-rsa 2048 || fail "seeding the second vault"
module_config "$WORK/module.json"
export AKV_PKCS11_CONFIG="$WORK/module.json"

section "p11tool --provider M --list-all"
check "p11tool --list-all pkcs11:token=integ1" \
  p11tool --provider "$AKV_MODULE" --list-all "pkcs11:token=integ1"
cp "$WORK/check.out" "$WORK/p11tool.out"
cat "$WORK/p11tool.out"
# "object=NAME;type=TYPE" of every URL p11tool printed, sorted.
grep -Eo 'URL: pkcs11:[^ ]+' "$WORK/p11tool.out" |
  sed -E 's/.*;object=([^;]*).*;type=([a-z-]+).*/\1|\2/' | LC_ALL=C sort >"$WORK/p11tool.table"
{
  for k in "${STD_RSA_KEYS[@]}" "${STD_EC_KEYS[@]}" "$STD_CERT"; do
    echo "$k|private"
    echo "$k|public"
  done
  echo "$STD_CERT|cert"
  echo "$STD_SECRET|data"
} | LC_ALL=C sort >"$WORK/p11tool.expected"
if diff -u "$WORK/p11tool.expected" "$WORK/p11tool.table" >"$WORK/p11tool.diff"; then
  check_eq "p11tool lists exactly the vault's objects" same same
else
  sed 's/^/#   /' "$WORK/p11tool.diff"
  check_eq "p11tool lists exactly the vault's objects" expected-set different-set
fi
check "p11tool --list-all pkcs11:token=integ2" \
  p11tool --provider "$AKV_MODULE" --list-all "pkcs11:token=integ2"
check_grep "p11tool: token integ2 holds other-rsa" "object=other-rsa;type=private" "$WORK/check.out"
check_nogrep "p11tool: token integ2 holds nothing of integ1" "object=rsa2048" "$WORK/check.out"

section "GnuTLS signs with vault keys: p11tool --test-sign"
for k in rsa2048 rsa4096 ec-p256 ec-p384 ec-p521; do
  check "p11tool --test-sign with $k" timeout 60 \
    p11tool --provider "$AKV_MODULE" --test-sign "pkcs11:token=integ1;object=$k;type=private"
  check_grep "$k: GnuTLS verified the signature with the token's public key" \
    "Verifying against public key in the token\.\.\. ok" "$WORK/check.out"
done

section "ssh-keygen -D: exactly the RSA and EC (P-256/384/521) public keys of the vault"
check "ssh-keygen -D M" ssh-keygen -D "$AKV_MODULE"
cp "$WORK/check.out" "$WORK/sshkeys.out"
cat "$WORK/sshkeys.out"
# ssh-keygen -D covers vault 1 and vault 2 (every slot).
: >"$WORK/ssh.expected"
for k in "${STD_RSA_KEYS[@]}" ec-p256 ec-p384 ec-p521 "$STD_CERT"; do
  kv_key_pem "$k" "$WORK/ssh-$k.pem" || fail "vault public key of $k"
  ssh-keygen -i -m PKCS8 -f "$WORK/ssh-$k.pem" | awk '{print $1, $2}' >>"$WORK/ssh.expected"
done
KV_URL=$EMU_VAULT_URL_1 kv_key_pem other-rsa "$WORK/ssh-other.pem" || fail "vault public key of other-rsa"
ssh-keygen -i -m PKCS8 -f "$WORK/ssh-other.pem" | awk '{print $1, $2}' >>"$WORK/ssh.expected"
LC_ALL=C sort -o "$WORK/ssh.expected" "$WORK/ssh.expected"
# OpenSSH has no secp256k1 key type: it prints such a key as "ssh-unknown" (an OpenSSH quirk).
grep -E '^(ssh-rsa|ecdsa-sha2-)' "$WORK/sshkeys.out" | awk '{print $1, $2}' | LC_ALL=C sort >"$WORK/ssh.got"
if diff -u "$WORK/ssh.expected" "$WORK/ssh.got" >"$WORK/ssh.diff"; then
  check_eq "ssh-keygen -D lists exactly the vault's RSA and NIST EC keys" same same
else
  sed 's/^/#   /' "$WORK/ssh.diff"
  check_eq "ssh-keygen -D lists exactly the vault's RSA and NIST EC keys" expected-set different-set
fi

check_eq "the only key ssh cannot type is the P-256K one (shown as ssh-unknown)" 1 \
  "$(grep -c '^ssh-unknown ' "$WORK/sshkeys.out" || true)"

section "p11-kit list-modules with the .module file"
p11kit_install_module "$WORK/module.json"
log "registered $P11KIT_MODULE_FILE"
check "p11-kit list-modules" p11-kit list-modules
cp "$WORK/check.out" "$WORK/p11kit.out"
# The block of our module only.
# p11-kit prints "NAME: PATH" at column 0 for each module, then indented details.
awk -v m="$P11KIT_MODULE_NAME:" '/^[^ \t]/{on = ($1 == m)} on' "$WORK/p11kit.out" >"$WORK/p11kit.ours"
cat "$WORK/p11kit.ours"
check_grep "p11-kit lists module $P11KIT_MODULE_NAME with the built module" "^$P11KIT_MODULE_NAME: $AKV_MODULE\$" "$WORK/p11kit.ours"
check_grep "p11-kit shows token integ1" "^ +token: integ1\$" "$WORK/p11kit.ours"
check_grep "p11-kit shows token integ2" "^ +token: integ2\$" "$WORK/p11kit.ours"
check_grep "p11-kit shows the Key Vault model" "^ +model: Key Vault\$" "$WORK/p11kit.ours"
check_grep "p11-kit shows vault 1's serial" "serial-number: $(vault_serial "$EMU_VAULT_URL_0")\$" "$WORK/p11kit.ours"
check "pkcs11-tool through p11-kit-proxy lists vault 1's objects" \
  pkcs11-tool --module /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so --token-label integ1 -O
check_grep "proxy: rsa4096 is listed" "label: +rsa4096\$" "$WORK/check.out"

finish
