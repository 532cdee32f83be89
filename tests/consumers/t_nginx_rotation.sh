#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: a long-running nginx (libp11 engine, docs/usage.md recipe nginx) across a rotation of its
# keys (docs/lifecycle.md "Handles held across a rotation", "Keys re-found by CKA_ID after a
# rotation"). nginx runs with the documented configuration (2 workers) and a slot TTL of 2 s; curl
# --cacert completes TLS handshakes with the RSA and the EC key before, during and after both keys
# are rotated in the vault and the TTL passes, all verified against the unchanged certificates (made
# for the old versions). Then both workers are replaced (SIGQUIT: the master starts new ones), so
# every later handshake is by a worker whose first handshake, and so the engine's search by the
# CKA_ID and label the master read, comes after the rotation and refresh: those verify against the
# old certificates too. Then the recipe's next step: certificates for the new versions and
# nginx -s reload; the new workers serve them, verified against the vault's new public keys.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg nginx libengine-pkcs11-openssl curl
need_tool nginx curl openssl pgrep comm
need_module

consumer_vault
TTL=2
# log_level info: the module's line for a key re-found by its old CKA_ID reaches nginx's error log.
jq --argjson t "$TTL" '.slots[] += {ttl: $t} | .log_level = "info"' "$WORK/config.json" >"$WORK/config.tmp" &&
  mv "$WORK/config.tmp" "$WORK/config.json" && chmod 600 "$WORK/config.json" || fail "ttl"

section "nginx $(pkg_version nginx) with the vault keys (slot ttl $TTL s)"
nginx_start "recipe nginx: certificates made with the vault keys, nginx started"
cp "$N/rsa.pem" "$WORK/rsa-old.pem"
cp "$N/ec.pem" "$WORK/ec-old.pem"
old_rsa=$(kv_call GET /keys/mykey | jq -r '.key.kid | split("/") | .[-1]') || fail "version"
old_ec=$(kv_call GET /keys/myeckey | jq -r '.key.kid | split("/") | .[-1]') || fail "version"

# handshakes TAG N: N rounds of one curl --cacert handshake per key (the old certificates); prints
# "ok" or "fail" per handshake into $WORK/hs-TAG.
handshakes() {
  local tag=$1 n=$2 i
  : >"$WORK/hs-$tag"
  for i in $(seq "$n"); do
    for k in rsa ec; do
      if [ $k = rsa ]; then port=$P1 key=mykey; else port=$P2 key=myeckey; fi
      if timeout 30 curl -sS --fail --cacert "$WORK/$k-old.pem" --resolve "localhost:$port:127.0.0.1" \
        "https://localhost:$port/" 2>>"$WORK/hs-$tag.err" | grep -q "served with the vault key $key"; then
        echo ok >>"$WORK/hs-$tag"
      else
        echo fail >>"$WORK/hs-$tag"
      fi
    done
    [ "$tag" != during ] || sleep 0.2
  done
}
count() { grep -c -x "$1" "$WORK/hs-$2" || true; }

section "before the rotation"
handshakes before 4
check_eq "8 handshakes before the rotation" 8 "$(count ok before)"

section "rotation of both keys while handshakes go on"
handshakes during 30 &
HS=$!
bg_register "$HS"
sleep 1
kv_rotate mykey || fail "rotate mykey"
kv_rotate myeckey || fail "rotate myeckey"
new_rsa=$(kv_call GET /keys/mykey | jq -r '.key.kid | split("/") | .[-1]') || fail "version"
new_ec=$(kv_call GET /keys/myeckey | jq -r '.key.kid | split("/") | .[-1]') || fail "version"
check "the vault has new versions of both keys" \
  test "$new_rsa" != "$old_rsa" -a "$new_ec" != "$old_ec"
# The TTL passes twice while the handshakes go on: every later lookup sees the new versions.
wait "$HS" || true
check_eq "all 60 handshakes during the rotation and the refresh completed" 60 "$(count ok during)"
sed 's/^/#   curl| /' "$WORK/hs-during.err" 2>/dev/null | head -n 5

section "after the rotation and the refresh"
sleep $((TTL + 1))
# A new process sees the new versions (the listing is fresh).
env OPENSSL_CONF="$N/openssl.cnf" AKV_PKCS11_CONFIG="$N/config.json" \
  pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/after-O.out" 2>&1 || true
kv_key_der mykey "$WORK/mykey-new.der" "$new_rsa" || fail "new public key"
check_grep "a new search finds mykey's new version" "ID: *$(der_id "$WORK/mykey-new.der")" "$WORK/after-O.out"
handshakes after 4
check_eq "8 handshakes after the rotation, with the old certificates" 8 "$(count ok after)"
for k in rsa ec; do
  if [ $k = rsa ]; then port=$P1; else port=$P2; fi
  printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$port" \
    -servername localhost -CAfile "$WORK/$k-old.pem" -verify_return_error -brief -ign_eof \
    >"$WORK/s_client-$k.out" 2>&1 || true
  check_grep "$k: s_client verifies the handshake against the certificate of the old version" \
    "^Verification: OK" "$WORK/s_client-$k.out"
done
check_eq "the master is the same process" "$MASTER" "$(cat "$PIDFILE")"

section "new workers after the rotation: the engine re-finds the keys by their old CKA_ID"
# workers: the master's children (nginx's worker processes), one pid a line, sorted.
workers() { { pgrep -P "$MASTER" || true; } | sort; }
old_workers=$(workers)
check_eq "nginx runs 2 workers" 2 "$(printf '%s\n' "$old_workers" | grep -c .)"
for w in $old_workers; do kill -QUIT "$w" 2>/dev/null || true; done
new_workers=""
for _ in $(seq 100); do # the master starts a new worker for each within a second or two
  cur=$(workers)
  if [ "$(printf '%s\n' "$cur" | grep -c .)" = 2 ] && [ -z "$(comm -12 <(printf '%s\n' "$old_workers") <(printf '%s\n' "$cur"))" ]; then
    new_workers=$cur
    break
  fi
  sleep 0.1
done
check "the master replaced both workers (new: ${new_workers//$'\n'/ })" test -n "$new_workers"
handshakes respawned 5
check_eq "10 handshakes by the new workers, verified against the old versions' certificates" \
  10 "$(count ok respawned)"
sed 's/^/#   curl| /' "$WORK/hs-respawned.err" 2>/dev/null | head -n 5
check_grep "the new workers' engine re-found mykey's old version by its CKA_ID (module log)" \
  "key mykey: a search by CKA_ID found version $old_rsa" "$N/error.log"
check_grep "and myeckey's" "key myeckey: a search by CKA_ID found version $old_ec" "$N/error.log"
for k in rsa ec; do
  if [ $k = rsa ]; then port=$P1; else port=$P2; fi
  printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$port" \
    -servername localhost -CAfile "$WORK/$k-old.pem" -verify_return_error -brief -ign_eof \
    >"$WORK/s_client2-$k.out" 2>&1 || true
  check_grep "$k: s_client verifies a new worker's handshake against the old version's certificate" \
    "^Verification: OK" "$WORK/s_client2-$k.out"
done

section "the recipe's next step: certificates for the new versions, nginx -s reload"
export OPENSSL_CONF="$N/openssl.cnf" AKV_PKCS11_CONFIG="$N/config.json"
for k in rsa ec; do
  if [ $k = rsa ]; then key=mykey; else key=myeckey; fi
  check "$k: a certificate for the new version of $key" openssl req -engine pkcs11 -keyform engine \
    -key "pkcs11:token=myvault;object=$key;type=private" -new -x509 -days 365 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -out "$N/$k.pem"
done
unset OPENSSL_CONF AKV_PKCS11_CONFIG
kv_key_pem mykey "$WORK/mykey-new.pem" "$new_rsa" || fail "new public key"
openssl x509 -in "$N/rsa.pem" -noout -pubkey >"$WORK/rsa-new.crt.pub"
check "the new RSA certificate carries the vault's new public key" cmp "$WORK/rsa-new.crt.pub" "$WORK/mykey-new.pem"
run_recipe nginx-reload "recipe nginx-reload"
for k in rsa ec; do
  if [ $k = rsa ]; then port=$P1 key=mykey; else port=$P2 key=myeckey; fi
  ok=""
  for _ in $(seq 50); do # the new worker takes over within a few seconds
    if timeout 30 curl -sS --fail --cacert "$N/$k.pem" --resolve "localhost:$port:127.0.0.1" \
      "https://localhost:$port/" 2>/dev/null | grep -q "served with the vault key $key"; then
      ok=1
      break
    fi
    sleep 0.2
  done
  check "$k: after the reload nginx serves the new certificate, signed by the new version" test -n "$ok"
done

section "error log and stop"
check_nogrep "no emergency, alert or error in nginx's log" '\[(emerg|alert|crit|error)\]' "$N/error.log"
check_nogrep "the module logged no error in nginx" 'akv-pkcs11\[[0-9]+\] ERROR' "$N/error.log"
run_recipe nginx-stop "recipe nginx-stop: nginx -s quit"
for _ in $(seq 100); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
check_fails "nginx has stopped" kill -0 "$MASTER"
finish
