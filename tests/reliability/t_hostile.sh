#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hostile-server resistance, end to end through the module: a tiny HTTPS vault
# (hostile_server.c) answers the sign request (or the key, or every request) with something
# hostile. Every case must end in CKR_DEVICE_ERROR (or, for an unusable JWK, the key not being
# offered), with a log line naming the problem, no crash and no hang (each pkcs11-tool run is
# bounded by `timeout`, and the duration is checked against the configured deadline).
# The unit tests (tests/unit/test_client.c) cover the same parsers through the fake transport.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool pkcs11-tool openssl curl jq timeout
need_module
HS=$(rel_prog hostile_server)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:TRUE" \
  -keyout "$WORK/hs.key" -out "$WORK/hs.pem" 2>/dev/null || fail "making the server certificate"
head -c 32 /dev/urandom >"$WORK/digest.bin"

HS_PID=""
# hs_start MODE [MAX_RETRIES]
hs_start() {
  local mode=$1 retries=${2:-0} i
  rm -f "$WORK/hs.ready"
  "$HS" "$mode" "$WORK/hs.pem" "$WORK/hs.key" "$WORK/hs.ready" >"$WORK/hs.log" 2>&1 &
  HS_PID=$!
  bg_register "$HS_PID"
  for i in $(seq 100); do [ -s "$WORK/hs.ready" ] && break; sleep 0.1; done
  [ -s "$WORK/hs.ready" ] || fail "hostile_server did not start"
  HS_URL="https://localhost:$(cat "$WORK/hs.ready")"
  # deadline 16 s, request timeout 15 s (low-speed cut-off after 5 s of < 64 B/s), no retries:
  # each case is one exchange, and none may take longer than the deadline.
  jq -n --arg u "$HS_URL" --arg ca "$WORK/hs.pem" --arg log "$WORK/module.log" --argjson r "$retries" '{
    ca_file: $ca, allowed_hosts: ["localhost"], cache_file: "", log_file: $log, log_level: "info",
    max_response_bytes: 65536, deadline_ms: 16000, request_timeout_ms: 15000, max_retries: $r,
    credential: {type: "client_secret", tenant_id: "tid", client_id: "cid",
                 client_secret: "hostile-test-secret", authority_host: $u},
    slots: [{url: $u, label: "hostile", objects: ["keys"]}]}' >"$WORK/module.json"
  chmod 600 "$WORK/module.json"
  export AKV_PKCS11_CONFIG="$WORK/module.json"
  : >"$WORK/module.log"
}
# _stop_pid's `wait` returns the server's signal status: not an error here.
hs_stop() { _stop_pid "$HS_PID" || true; }
hs_stat() { curl -sS --max-time 10 --cacert "$WORK/hs.pem" "$HS_URL/stats" | jq -r ".$1"; }

# run_p11 ARGS...: pkcs11-tool bounded by 60 s; sets RC and MS.
run_p11() {
  local start
  start=$(date +%s%N)
  RC=0
  timeout 60 pkcs11-tool --module "$AKV_MODULE" "$@" >"$WORK/p11.out" 2>&1 || RC=$?
  MS=$((($(date +%s%N) - start) / 1000000))
}
sign() { run_p11 --sign -m ECDSA --label k1 -i "$WORK/digest.bin" -o "$WORK/sig.bin"; }

section "harness check: the server behaves, a signature verifies"
hs_start normal
sign
check_eq "normal: pkcs11-tool --sign exits 0" 0 "$RC"
openssl pkey -pubin -in "$WORK/hs.ready.pub.pem" -out "$WORK/pub.pem" 2>/dev/null
# r||s -> DER for openssl
sig_der() {
  local hex r s
  hex=$(od -An -v -tx1 "$WORK/sig.bin" | tr -d ' \n')
  r=${hex:0:64}
  s=${hex:64:64}
  printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "$r" "$s" >"$WORK/sig.cnf"
  openssl asn1parse -genconf "$WORK/sig.cnf" -noout -out "$WORK/sig.der" >/dev/null
}
sig_der
check "normal: the signature verifies with the server's key" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/pub.pem" -in "$WORK/digest.bin" -sigfile "$WORK/sig.der"
hs_stop

section "throttle-date: 429 with Retry-After as an HTTP-date is honoured"
hs_start throttle-date 2
sign
check_eq "throttle-date: pkcs11-tool --sign exits 0 after the retry" 0 "$RC"
openssl pkey -pubin -in "$WORK/hs.ready.pub.pem" -out "$WORK/pub.pem" 2>/dev/null # this run's key
sig_der
check "throttle-date: the signature verifies" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/pub.pem" -in "$WORK/digest.bin" -sigfile "$WORK/sig.der"
check_eq "throttle-date: two sign requests (the 429, then the retry)" 2 "$(hs_stat sign_requests)"
check_grep "throttle-date: the retry was logged" "HTTP 429, retry 1/2 in [0-9]+ ms" "$WORK/module.log"
# The date has 1 s resolution: the wait is 1-2 s, never the jittered backoff (50-250 ms here).
ms=$(grep -Eo "HTTP 429, retry 1/2 in [0-9]+ ms" "$WORK/module.log" | grep -Eo "[0-9]+ ms" | cut -d' ' -f1)
check "throttle-date: the wait came from the date (${ms} ms, 1000..2000)" test "${ms:-0}" -ge 1000 -a "${ms:-0}" -le 2000
hs_stop

# hostile MODE LOG_REGEX DESCRIPTION
hostile_sign() {
  local mode=$1 re=$2 what=$3
  section "$mode: $what"
  hs_start "$mode"
  sign
  check "$mode: pkcs11-tool ends by itself with an error, no crash (exit $RC)" test "$RC" = 1
  check_grep "$mode: C_Sign returns CKR_DEVICE_ERROR" "C_Sign.*CKR_DEVICE_ERROR|CKR_DEVICE_ERROR" "$WORK/p11.out"
  # pkcs11-tool 0.23 tries C_Sign, then C_SignUpdate/C_SignFinal: one bound per request.
  n=$(hs_stat sign_requests)
  check "$mode: each of the $n sign request(s) ended within the deadline (16 s; $MS ms in all)" \
    test "$MS" -lt $((n * 16000 + 1000))
  PER_REQ_MS=$((MS / (n > 0 ? n : 1)))
  check_grep "$mode: the log says why" "$re" "$WORK/module.log"
  check "$mode: the server saw the sign request" test "$n" -ge 1
  hs_stop
}

hostile_sign oversize "larger than 65536 bytes" "a reply over max_response_bytes is cut off"
hostile_sign badjson "not valid JSON" "invalid JSON"
hostile_sign wrongtype '"value" must be a string' "a member of the wrong type"
hostile_sign badb64 '"value" is not valid base64url' "invalid base64url"
hostile_sign shortsig "63-byte signature is not a ES256 signature" "a signature of the wrong length"
hostile_sign slowbody "Operation too slow|Timeout was reached" "a body that drips (low-speed limit)"
check "slowbody: cut off by the low-speed limit (5 s), long before the 15 s request timeout ($PER_REQ_MS ms per request)" \
  test "$PER_REQ_MS" -lt 10000
hostile_sign redirect "redirect refused" "a redirect is refused, never followed"

section "jwkmismatch: a JWK whose members do not match its kty"
hs_start jwkmismatch
run_p11 -O
check "jwkmismatch: pkcs11-tool -O ends by itself (exit $RC, no crash)" test "$RC" -le 1
check_nogrep "jwkmismatch: the key is not offered as an object" "label: +k1" "$WORK/p11.out"
check_grep "jwkmismatch: the log says why" "JWK|EC|coordinates|missing" "$WORK/module.log"
hs_stop

section "challenge: a 401 challenge for another resource gets no token"
hs_start challenge
run_p11 -O
check "challenge: pkcs11-tool -O fails (exit $RC)" test "$RC" = 1
check_grep "challenge: CKR_DEVICE_ERROR" "CKR_DEVICE_ERROR" "$WORK/p11.out"
check_grep "challenge: the log names the refused resource" "management.azure.com.*(not a Key Vault resource|refusing)" "$WORK/module.log"
check_eq "challenge: no token was ever asked for another scope" 0 "$(hs_stat foreign_scope_tokens)"
check_eq "challenge: one vault request per attempt, no retry with a new token" \
  "$(hs_stat vault_requests)" "$(hs_stat with_bearer)"
check_nofixed "challenge: the client secret is not in the log" "hostile-test-secret" "$WORK/module.log"
hs_stop

finish
