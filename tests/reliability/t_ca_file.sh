#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ca_file replaces the system store (docs/security.md "TLS is always verified"): with ca_file set,
# a CA that only the system store trusts is not trusted. The system store is made to trust the
# emulator's CA in a private mount namespace (a directory with the CA as ca-certificates.crt and
# under its hash name, bind-mounted over /etc/ssl/certs, libcurl's default CA file and CA path);
# the real /etc/ssl/certs is never touched.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl pkcs11-tool unshare mount
need_module
unshare --mount true 2>/dev/null || skip "unshare --mount is not permitted here (needs root or user namespaces)"
mkdir -p "$WORK/probe"
unshare --mount sh -c 'mount --make-rprivate / && mount --bind "$1" /etc/ssl/certs' sh "$WORK/probe" \
  2>"$WORK/probe.err" || skip "a bind mount in a private mount namespace is not permitted: $(head -n1 "$WORK/probe.err")"

emu_start --vault cafv
kv_create_ec ca-key P-256 || fail "seeding a key"

# The fake system store: the emulator's CA, as the bundle file and as a hashed CA-path entry.
mkdir -p "$WORK/sys"
cp "$EMU_CA" "$WORK/sys/ca-certificates.crt"
cp "$EMU_CA" "$WORK/sys/emulator-ca.pem"
openssl rehash "$WORK/sys" 2>/dev/null || c_rehash "$WORK/sys" >/dev/null || fail "rehash"
# An unrelated CA, the only one ca_file names.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=unrelated CA" \
  -keyout "$WORK/other.key" -out "$WORK/other.pem" 2>/dev/null || fail "making an unrelated CA"

module_config "$WORK/sysstore.json" '{"objects":["keys"]}' "{\"log_file\":\"$WORK/sysstore.log\"}"
jq 'del(.ca_file)' "$WORK/sysstore.json" >"$WORK/t.json" && mv "$WORK/t.json" "$WORK/sysstore.json"
module_config "$WORK/other.json" '{"objects":["keys"]}' \
  "{\"ca_file\":\"$WORK/other.pem\",\"log_file\":\"$WORK/other.log\"}"
chmod 600 "$WORK"/*.json

# in_ns CONFIG OUT: pkcs11-tool -O with the fake system store mounted over /etc/ssl/certs.
in_ns() {
  AKV_PKCS11_CONFIG=$1 unshare --mount sh -c 'mount --make-rprivate / && mount --bind "$1" /etc/ssl/certs &&
    exec timeout 60 pkcs11-tool --module "$2" -O' sh "$WORK/sys" "$AKV_MODULE" >"$WORK/$2.out" 2>&1
}

rc=0; in_ns "$WORK/sysstore.json" sysstore || rc=$?
check "control: without ca_file the system store (the emulator's CA here) is used: the key is listed (exit $rc)" \
  grep -q "ca-key" "$WORK/sysstore.out"
rc=0; in_ns "$WORK/other.json" other || rc=$?
check_fails "with ca_file naming an unrelated CA, the system store is not used: the key is not listed" \
  grep -q "ca-key" "$WORK/other.out"
check_grep "... and the log says the certificate was not trusted" "certificate|SSL" "$WORK/other.log"
finish
