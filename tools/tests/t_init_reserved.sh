#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# docs/usage.md "p11-kit URIs and x-init-reserved" stays true: a p11-kit module file's
# x-init-reserved reaches the module through the p11-kit proxy and `p11-kit list-modules`, but not
# through GnuTLS (p11tool initialises the module with its own arguments: zero slots), where
# AKV_PKCS11_CONFIG works; a module file of the same name in /etc/pkcs11/modules replaces the
# packaged one in /usr/share/p11-kit/modules; two module files naming the same module give one
# module in the process.
# p11-kit's module directories are system state: each consumer runs in its own mount namespace
# (unshare -m) where a private copy of /etc and a private /usr/share/p11-kit/modules are mounted,
# so nothing outside the test sees its module files. Needs root (or the test is skipped).
# Inputs: AKV_EMULATOR, AKV_MODULE, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool pkcs11-tool p11tool p11-kit unshare mount jq
need_module
PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
need_file "$PROXY" /usr/share/p11-kit/modules
[ "$(id -u)" = 0 ] || skip "private mount namespaces (unshare -m) need root"
unshare -m true 2>/dev/null || skip "unshare -m is not permitted here"

section "vault myvault; the configuration only in module files"
emu_start --vault myvault
kv_create_rsa mykey 2048 || fail "seeding mykey"
module_config "$WORK/config.json"
unset AKV_PKCS11_VAULT_URL AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST \
  AKV_PKCS11_CA_FILE AKV_PKCS11_ALLOWED_HOSTS
MODULE=$(realpath "$AKV_MODULE")

# A private /etc (a copy) and /usr/share/p11-kit/modules (the packaged files, plus ours).
mkdir -p "$WORK/etc" "$WORK/share-modules"
cp -a /etc/. "$WORK/etc/" 2>/dev/null || true
rm -rf "$WORK/etc/pkcs11"
mkdir -p "$WORK/etc/pkcs11/modules"
cp -a /usr/share/p11-kit/modules/. "$WORK/share-modules/"
# ns CMD...: CMD in a mount namespace with the private directories mounted.
ns() {
  unshare -m bash -c 'mount --bind "$1" /etc && mount --bind "$2" /usr/share/p11-kit/modules && shift 2 && exec "$@"' \
    ns "$WORK/etc" "$WORK/share-modules" "$@"
}

section "x-init-reserved in a module file"
printf 'module: %s\nx-init-reserved: %s\n' "$MODULE" "$WORK/config.json" >"$WORK/share-modules/akv-test.module"
check "p11-kit proxy: pkcs11-tool -L" ns pkcs11-tool --module "$PROXY" -L
check_grep "the proxy shows the vault's token" 'token label *: myvault' "$WORK/check.out"
check "p11-kit list-modules" ns p11-kit list-modules
check_grep "list-modules shows the token" 'token: myvault' "$WORK/check.out"
check "p11tool --list-tokens" ns env AKV_PKCS11_LOG_LEVEL=info p11tool --list-tokens
check_nogrep "GnuTLS: no token (x-init-reserved is not passed)" 'myvault' "$WORK/check.out"
check_grep "the module's INFO line says no configuration was found" 'no configuration found' "$WORK/check.out"
check "p11tool with AKV_PKCS11_CONFIG" ns env AKV_PKCS11_CONFIG="$WORK/config.json" p11tool --list-tokens
check_grep "GnuTLS shows the token" 'Label: myvault' "$WORK/check.out"

section "a module file of the same name in /etc/pkcs11/modules replaces the packaged one"
printf 'module: %s\n' "$MODULE" >"$WORK/share-modules/akv-test.module"
ns pkcs11-tool --module "$PROXY" -L >"$WORK/plain.out" 2>&1 || true # "No slots." exits 1
check_nogrep "without x-init-reserved the proxy shows no vault token" 'myvault' "$WORK/plain.out"
printf 'module: %s\nx-init-reserved: %s\n' "$MODULE" "$WORK/config.json" >"$WORK/etc/pkcs11/modules/akv-test.module"
check "with /etc/pkcs11/modules/akv-test.module: the proxy" ns pkcs11-tool --module "$PROXY" -L
check_grep "the token is there" 'token label *: myvault' "$WORK/check.out"
check_eq "once" 1 "$(grep -c 'token label *: myvault' "$WORK/check.out")"

section "two module files naming the same module: one module"
rm -f "$WORK/etc/pkcs11/modules/akv-test.module"
printf 'module: %s\nx-init-reserved: %s\n' "$MODULE" "$WORK/config.json" >"$WORK/share-modules/akv-test.module"
printf 'module: %s\nx-init-reserved: %s\n' "$MODULE" "$WORK/config.json" >"$WORK/share-modules/akv-test2.module"
check "p11-kit list-modules" ns p11-kit list-modules
check_eq "one of the two module names is listed" 1 "$(grep -cE '^akv-test2?: ' "$WORK/check.out")"
check_eq "the token appears once" 1 "$(grep -c 'token: myvault' "$WORK/check.out")"

finish
