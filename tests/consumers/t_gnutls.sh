#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: GnuTLS (docs/usage.md "GnuTLS: gnutls-serv and gnutls-cli", recipe gnutls). certtool
# makes self-signed certificates with the vault RSA and EC keys; gnutls-serv serves with both;
# gnutls-cli verifies TLS 1.3 RSA-PSS, TLS 1.3 ECDSA and TLS 1.2 RSA handshakes. Independent
# checks: the certificates carry the vault's public keys and verify with openssl, and openssl
# s_client completes verified handshakes with the same server.
#
# gnutls-serv binds every address and has no option to choose one: the whole test runs in a
# network namespace of its own (root, or an unprivileged user namespace) with only loopback up.
if [ -z "${AKV_CONSUMER_NETNS:-}" ]; then
  export AKV_CONSUMER_NETNS=1
  for opts in "--net" "--net --map-root-user"; do
    # shellcheck disable=SC2086
    if unshare $opts true 2>/dev/null; then
      # shellcheck disable=SC2086
      exec unshare $opts -- bash -c 'ip link set lo up && exec bash "$@"' _ "$0" "$@"
    fi
  done
  echo "SKIP (t_gnutls): no network namespace available (unshare --net failed as $(id -un))"
  exit 77
fi
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg gnutls-bin
need_tool gnutls-serv gnutls-cli certtool openssl ss
need_module
check "only the loopback interface exists here" bash -c '[ "$(ip -o link show | grep -vc " lo:")" = 0 ]'

consumer_vault
P1=$(free_port) || fail "no free port"
# shellcheck disable=SC2034 # (read by recipe, lib.sh)
RECIPE_SUBST=(8443 "$P1")

section "GnuTLS $(pkg_version gnutls-bin): certtool, gnutls-serv, gnutls-cli (recipe gnutls)"
run_recipe gnutls "recipe gnutls: certificates by certtool, gnutls-serv, three gnutls-cli handshakes"
R="$WORK/recipe-gnutls.out"
check_eq "gnutls-cli: three completed handshakes" 3 "$(grep -c '^- Handshake was completed' "$R")"
check_eq "gnutls-cli: three trusted certificates" 3 "$(grep -c 'Status: The certificate is trusted' "$R")"
check_grep "TLS 1.3 with RSA-PSS" 'Description: \(TLS1.3-X.509\).*\(RSA-PSS-RSAE-SHA256\)' "$R"
check_grep "TLS 1.3 with ECDSA" 'Description: \(TLS1.3-X.509\).*\(ECDSA-SECP256R1-SHA256\)' "$R"
check_grep "TLS 1.2 with RSA PKCS#1" 'Description: \(TLS1.2-X.509\).*\(RSA-SHA256\)' "$R"
for k in mykey myeckey; do
  openssl x509 -in "$WORK/run/$k.crt" -noout -pubkey >"$WORK/$k.crt.pub"
  check "$k: certtool's certificate carries the vault's public key" cmp "$WORK/$k.crt.pub" "$WORK/$k.vault.pem"
  check "$k: its signature (made by the vault key) verifies with openssl" \
    openssl verify -CAfile "$WORK/run/$k.crt" -check_ss_sig "$WORK/run/$k.crt"
done

section "openssl s_client against gnutls-serv"
export AKV_PKCS11_CONFIG=$RECIPE_CONFIG
timeout 60 gnutls-serv --provider "$AKV_MODULE" --http --port "$P1" \
  --x509keyfile "pkcs11:token=myvault;object=mykey;type=private" --x509certfile "$WORK/run/mykey.crt" \
  --x509keyfile "pkcs11:token=myvault;object=myeckey;type=private" --x509certfile "$WORK/run/myeckey.crt" \
  >"$WORK/serv2.log" 2>&1 &
bg_register $!
wait_port "$P1" 100 || fail "gnutls-serv does not listen"
for k in mykey myeckey; do
  case $k in mykey) sigalgs=rsa_pss_rsae_sha256 ;; myeckey) sigalgs=ecdsa_secp256r1_sha256 ;; esac
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$P1" -servername localhost \
    -CAfile "$WORK/run/$k.crt" -verify_return_error -brief -ign_eof -sigalgs "$sigalgs" >"$WORK/s_client-$k.out" 2>&1 || true
  check_grep "$k: openssl s_client verified the handshake" '^Verification: OK' "$WORK/s_client-$k.out"
  check_grep "$k: and got gnutls-serv's page" 'HTTP/1.0 200 OK' "$WORK/s_client-$k.out"
done
check "the vault made the signatures (keys.sign: $(stats_get keys.sign))" test "$(stats_get keys.sign)" -ge 7
finish
