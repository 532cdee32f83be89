#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: OpenVPN with pkcs11-helper (docs/usage.md "OpenVPN", recipe openvpn). An OpenVPN
# server on 127.0.0.1 (--dev null, TLS point-to-point, a software key) trusts only the vault
# certificate vpncert; the client authenticates with --pkcs11-providers/--pkcs11-id. Checks: the
# server's log shows the verified client certificate (CN=vpncert) and the completed connection,
# the emulator counted the signature.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg openvpn
need_tool openvpn openssl
need_module

consumer_vault
kv_create_cert vpncert "CN=vpncert" RSA 2048 || fail "seeding vpncert"
kv_cert_der vpncert "$WORK/vpncert.der" || fail "vault certificate vpncert"
openssl x509 -inform DER -in "$WORK/vpncert.der" -out "$WORK/vpncert.pem"
P1=$(free_port) || fail "no free port"
mkdir -p "$WORK/run"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/server.key" \
  -out "$WORK/run/server-ca.pem" -days 2 -subj /CN=openvpn-test-server 2>/dev/null || fail "server key"

section "OpenVPN $(pkg_version openvpn) server on 127.0.0.1:$P1"
timeout 90 openvpn --dev null --proto udp4 --local 127.0.0.1 --lport "$P1" --tls-server --dh none \
  --ca "$WORK/vpncert.pem" --cert "$WORK/run/server-ca.pem" --key "$WORK/server.key" --verb 3 \
  --log "$WORK/server.log" &
bg_register $!
for _ in $(seq 100); do grep -q 'Initialization Sequence Completed\|UDPv4 link local (bound)' "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done

# shellcheck disable=SC2034 # (read by recipe, lib.sh)
RECIPE_SUBST=(8443 "$P1")
before=$(stats_get keys.sign)
run_recipe openvpn "recipe openvpn: --show-pkcs11-ids, a client with --pkcs11-providers/--pkcs11-id connects"
check_grep "--show-pkcs11-ids lists the vault certificate" 'DN:.*CN=vpncert' "$WORK/run/pkcs11-ids.txt"
for _ in $(seq 100); do grep -q 'Peer Connection Initiated' "$WORK/server.log" && break; sleep 0.1; done
check_grep "the server verified the client's vault certificate" 'VERIFY OK: depth=0, CN=vpncert' "$WORK/server.log"
check_grep "and completed the connection" 'Peer Connection Initiated with \[AF_INET\]127\.0\.0\.1' "$WORK/server.log"
check "the vault made the handshake signature (keys.sign $before -> $(stats_get keys.sign))" \
  test "$(stats_get keys.sign)" -gt "$before"
finish
