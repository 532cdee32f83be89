#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: nginx with the libp11 engine (docs/usage.md "nginx", recipes nginx, nginx-fetch,
# nginx-reload, nginx-stop). A master and two workers (as www-data when run as root) serve TLS
# with the vault RSA key and the vault EC key; curl fetches a page over TLS 1.2 and 1.3 with each;
# nginx is reloaded and serves again from new workers. Independent checks: openssl s_client
# verifies each handshake against the certificate, whose public key is the vault's (REST).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg nginx libengine-pkcs11-openssl curl
need_tool nginx curl openssl ss
need_module

consumer_vault
section "nginx $(pkg_version nginx): master + 2 workers, keys from the vault"
nginx_start "recipe nginx: certificates made with the vault keys, nginx -t, nginx started"

workers() { pgrep -P "$MASTER" -f 'nginx: worker process' | LC_ALL=C sort | tr '\n' ' '; }
# The workers' user: as configured (root is not allowed to sign anything here).
check_eq "two workers" 2 "$(workers | wc -w)"
for w in $(workers); do
  check_eq "worker $w runs as $WUSER" "$WUSER" "$(ps -o user= -p "$w" | tr -d ' ')"
done
# The CA file of the configuration is root's (0600, nginx_start): the workers read the recipe's copy.
check_eq "the workers' configuration names the recipe's CA copy (0644; the original is 0600)" \
  "$N/ca.pem 644 600" \
  "$(jq -r .ca_file "$N/config.json") $(stat -c %a "$N/ca.pem") $(stat -c %a "$WORK/ca-root-only.pem")"
for k in mykey myeckey; do
  openssl x509 -in "$N/$([ $k = mykey ] && echo rsa || echo ec).pem" -noout -pubkey >"$WORK/$k.crt.pub"
  check "$k: the served certificate carries the vault's public key" cmp "$WORK/$k.crt.pub" "$WORK/$k.vault.pem"
done

# fetch_all TAG: the documented curl fetches, then an openssl s_client per key and version.
fetch_all() {
  local tag=$1 v k port crt
  run_recipe nginx-fetch "$tag: curl --cacert over TLS 1.2 and 1.3, RSA and EC (recipe nginx-fetch)"
  check_eq "$tag: the four pages" "$(printf 'served with the vault key %s\n' mykey myeckey mykey myeckey)" \
    "$(grep '^served with' "$WORK/recipe-nginx-fetch.out")"
  for k in mykey myeckey; do
    if [ $k = mykey ]; then port=$P1 crt="$N/rsa.pem"; else port=$P2 crt="$N/ec.pem"; fi
    for v in 1.2 1.3; do
      printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$port" \
        -servername localhost -CAfile "$crt" -verify_return_error -brief -ign_eof "-tls${v/./_}" \
        >"$WORK/s_client-$tag-$k-$v.out" 2>&1 || true
      check_grep "$tag $k TLS $v: s_client verified the handshake signed with the vault key" \
        "^Verification: OK" "$WORK/s_client-$tag-$k-$v.out"
      check_grep "$tag $k TLS $v: protocol TLSv$v" "Protocol version: TLSv$v" "$WORK/s_client-$tag-$k-$v.out"
      check_grep "$tag $k TLS $v: the page" "served with the vault key $k" "$WORK/s_client-$tag-$k-$v.out"
    done
  done
}

section "before the reload"
fetch_all before
# 16 handshakes at once, spread over both workers by the kernel: each worker signs in turn.
burst=()
for i in $(seq 16); do
  if [ $((i % 2)) = 0 ]; then port=$P1 crt="$N/rsa.pem"; else port=$P2 crt="$N/ec.pem"; fi
  timeout 60 curl -sS --fail --cacert "$crt" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" \
    >"$WORK/burst-$i.out" 2>&1 &
  burst+=($!)
done
wait "${burst[@]}" || true
check_eq "16 concurrent fetches all got their page" 16 "$(cat "$WORK"/burst-*.out | grep -c '^served with the vault key')"
OLD=$(workers)

section "nginx -s reload mid-test"
run_recipe nginx-reload "recipe nginx-reload"
new=""
for _ in $(seq 100); do
  new=$(workers)
  [ "$(wc -w <<<"$new")" = 2 ] && ! grep -qw -F -f <(tr ' ' '\n' <<<"$OLD" | grep .) <<<"$new" && break
  sleep 0.1
done
check "reload: two new workers replaced the old ones (old: $OLD new: $new)" \
  bash -c '[ "$(wc -w <<<"$1")" = 2 ] && [ "$1" != "$2" ]' _ "$new" "$OLD"
check_eq "reload: the master is the same process" "$MASTER" "$(cat "$PIDFILE")"
fetch_all after

# 2 certificates + 2 x 8 + 16 handshakes, each a signature by the vault (the emulator counts them).
check "the vault made every signature (keys.sign: $(stats_get keys.sign))" test "$(stats_get keys.sign)" -ge 34
check "the workers' cache file is private to $WUSER" \
  bash -c '[ "$(stat -c %U:%a "$1")" = "$2:600" ]' _ "$WORK/pub/nginx-home/.cache/akv-pkcs11/cache.json" "$WUSER"

section "error log and stop"
check_nogrep "no emergency, alert or error in nginx's log" '\[(emerg|alert|crit|error)\]' "$N/error.log"
check_nogrep "the module logged no warning or error in the workers" 'akv-pkcs11\[[0-9]+\] (WARN|ERROR)' "$N/error.log"
run_recipe nginx-stop "recipe nginx-stop: nginx -s quit"
for _ in $(seq 100); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
check_fails "nginx has stopped" kill -0 "$MASTER"
finish
