#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSSL 3 with the libp11 engine (libengine-pkcs11-openssl): a self-signed certificate
# made by `openssl req -x509` with a vault key, pkeyutl signing, `openssl s_server` serving
# TLS 1.2 and TLS 1.3 with a vault RSA key and with a vault EC key, completed by s_client, and
# curl authenticating as a TLS client with a vault key.
. "$(dirname "$0")/lib.sh"
need_tool openssl jq curl ss
need_file /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
need_module

emu_start --vault eng1
kv_create_rsa tls-rsa 2048 || fail "seeding"
kv_create_ec tls-ec P-256 || fail "seeding"
module_config "$WORK/module.json" '{"objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/module.json" PKCS11_MODULE_PATH="$AKV_MODULE"

uri() { echo "pkcs11:token=eng1;object=$1;type=private"; }

for k in tls-rsa tls-ec; do
  section "openssl req -x509 with the vault key $k"
  kv_key_pem "$k" "$WORK/$k.vault.pem" || fail "vault public key of $k"
  check "$k: openssl req -new -x509 signed through the engine" \
    timeout 60 openssl req -engine pkcs11 -keyform engine -key "$(uri "$k")" -new -x509 -days 2 \
    -subj "/CN=$k.integration.test" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out "$WORK/$k.crt"
  openssl x509 -in "$WORK/$k.crt" -noout -pubkey >"$WORK/$k.crt.pub" 2>/dev/null || true
  check "$k: the certificate carries the vault's public key" cmp "$WORK/$k.crt.pub" "$WORK/$k.vault.pem"
  check "$k: the certificate's signature verifies with that key" \
    openssl verify -CAfile "$WORK/$k.crt" -check_ss_sig "$WORK/$k.crt"

  printf 'pkeyutl input for %s\n' "$k" | openssl dgst -sha256 -binary >"$WORK/$k.dgst"
  check "$k: openssl pkeyutl -sign through the engine" \
    timeout 60 openssl pkeyutl -engine pkcs11 -keyform engine -inkey "$(uri "$k")" -sign \
    -in "$WORK/$k.dgst" -pkeyopt digest:sha256 -out "$WORK/$k.pkeyutl.sig"
  check "$k: that signature verifies with the vault's public key" \
    openssl pkeyutl -verify -pubin -inkey "$WORK/$k.vault.pem" -in "$WORK/$k.dgst" \
    -sigfile "$WORK/$k.pkeyutl.sig" -pkeyopt digest:sha256
done

# handshake KEY TLSVER: one s_server (-naccept 1) with the vault key, one s_client.
handshake() {
  local k=$1 ver=$2 port spid rc=0 sigalgs extra=()
  port=$(free_port) || fail "no free port"
  case "$k" in tls-rsa) sigalgs=RSA+SHA256 ;; tls-ec) sigalgs=ECDSA+SHA256 ;; esac
  [ "$ver" = 1.2 ] && extra=(-sigalgs "$sigalgs")
  timeout 60 openssl s_server -engine pkcs11 -keyform engine -key "$(uri "$k")" -cert "$WORK/$k.crt" \
    -accept "127.0.0.1:$port" -naccept 1 -www </dev/null >"$WORK/srv-$k-$ver.out" 2>&1 &
  spid=$!
  bg_register "$spid"
  if ! wait_port "$port" 150; then
    sed 's/^/#   server| /' "$WORK/srv-$k-$ver.out"
    check "$k TLS $ver: s_server listens on 127.0.0.1:$port" false
    return 0
  fi
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$port" \
    -CAfile "$WORK/$k.crt" -verify_return_error -brief -ign_eof "-tls${ver/./_}" "${extra[@]}" \
    >"$WORK/cli-$k-$ver.out" 2>&1 || rc=$?
  wait "$spid" 2>/dev/null || true
  head -n 12 "$WORK/cli-$k-$ver.out" | sed 's/^/#   client| /'
  check_eq "$k TLS $ver: s_client completes the handshake (exit status)" 0 "$rc"
  check_grep "$k TLS $ver: negotiated TLSv$ver" "Protocol version: TLSv$ver" "$WORK/cli-$k-$ver.out"
  check_grep "$k TLS $ver: server certificate verified" "Verification: OK" "$WORK/cli-$k-$ver.out"
  check_grep "$k TLS $ver: the server answered over the connection" "HTTP/1.0 200 ok" "$WORK/cli-$k-$ver.out"
  case "$k-$ver" in
  tls-rsa-1.3) check_grep "$k TLS 1.3: RSA-PSS signature (CKM_RSA_PKCS_PSS)" "Signature type: RSA-PSS" "$WORK/cli-$k-$ver.out" ;;
  tls-rsa-1.2) check_grep "$k TLS 1.2: RSA PKCS#1 signature" "Signature type: RSA\$" "$WORK/cli-$k-$ver.out" ;;
  tls-ec-*) check_grep "$k TLS $ver: ECDSA signature" "Signature type: ECDSA" "$WORK/cli-$k-$ver.out" ;;
  esac
}

for k in tls-rsa tls-ec; do
  for ver in 1.2 1.3; do
    section "openssl s_server -engine pkcs11 with $k, TLS $ver"
    handshake "$k" "$ver"
  done
done

# TLS client authentication: curl (OpenSSL backend) signs with the vault key through the engine;
# the server (a local software key) requires and verifies the client certificate.
if command -v curl >/dev/null && curl --version | grep -q OpenSSL; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/srv.key" -x509 -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out "$WORK/srv.crt" 2>/dev/null ||
    fail "making the server certificate"
  for k in tls-rsa tls-ec; do
    section "TLS client authentication: curl --engine pkcs11 with $k"
    port=$(free_port) || fail "no free port"
    timeout 60 openssl s_server -key "$WORK/srv.key" -cert "$WORK/srv.crt" -accept "127.0.0.1:$port" \
      -naccept 1 -Verify 1 -verify_return_error -CAfile "$WORK/$k.crt" -www </dev/null >"$WORK/csrv-$k.out" 2>&1 &
    spid=$!
    bg_register "$spid"
    wait_port "$port" 150 || { check "client-auth server for $k listens" false; continue; }
    check "$k: curl --engine pkcs11 --key-type ENG authenticates with the vault key" \
      timeout 60 curl -sS --engine pkcs11 --key-type ENG --key "$(uri "$k")" --cert "$WORK/$k.crt" \
      --cacert "$WORK/srv.crt" "https://127.0.0.1:$port/"
    check_grep "$k: the server saw the client certificate" "Client certificate" "$WORK/check.out"
    wait "$spid" 2>/dev/null || true
    check_grep "$k: the server verified it (depth=0 CN = $k.integration.test)" \
      "depth=0 CN = $k\.integration\.test" "$WORK/csrv-$k.out"
  done
else
  log "curl is not built with OpenSSL: client authentication through the engine not tested"
fi

finish
