#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Consumer: Apache httpd with mod_ssl (docs/usage.md "Apache httpd", recipes apache, apache-stop).
# SSLCryptoDevice pkcs11 and a pkcs11: URI as SSLCertificateKeyFile; the children run as www-data
# (when run as root), starting from a configuration whose CA file only root can read (the recipe
# gives them a copy). curl fetches the page; openssl s_client verifies the handshake against the
# certificate, whose public key is the vault's (REST).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_pkg apache2 libengine-pkcs11-openssl curl
need_tool apache2 curl openssl ss jq
need_module

consumer_vault
P1=$(free_port) || fail "no free port"
A="$WORK/pub/apache"
PIDFILE="$WORK/pub/apache.pid"
# shellcheck disable=SC2034 # (read by recipe, lib.sh)
RECIPE_SUBST=(/etc/apache2/akv "$A" /run/apache2-akv.pid "$PIDFILE" 8443 "$P1")
worker_user
root_only_ca_config

section "Apache $(pkg_version apache2) with mod_ssl (recipe apache)"
run_recipe apache "recipe apache: certificate, apache2 -t, apache2 -k start, curl"
stop_pidfile "$PIDFILE"
R="$WORK/recipe-apache.out"
check_grep "curl got the page over TLS" '^served by Apache with the vault key mykey$' "$R"
openssl x509 -in "$A/server.pem" -noout -pubkey >"$WORK/server.pub"
check "the served certificate carries the vault's public key" cmp "$WORK/server.pub" "$WORK/mykey.vault.pem"
printf 'GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$P1" \
  -servername localhost -CAfile "$A/server.pem" -verify_return_error -brief -ign_eof >"$WORK/s_client.out" 2>&1 || true
check_grep "openssl s_client verified the handshake" '^Verification: OK' "$WORK/s_client.out"
check_grep "and got the page" 'served by Apache with the vault key mykey' "$WORK/s_client.out"
if [ -s "$PIDFILE" ]; then
  kids=$(pgrep -P "$(cat "$PIDFILE")" | head -n 1)
  check_eq "the children run as $WUSER" "$WUSER" "$(ps -o user= -p "$kids" | tr -d ' ')"
fi
# The CA file of the configuration is root's (0600, root_only_ca_config): the children, which
# sign, read the recipe's copy.
check_eq "the children's configuration names the recipe's CA copy (0644; the original is 0600)" \
  "$A/ca.pem 644 600" \
  "$(jq -r .ca_file "$A/config.json") $(stat -c %a "$A/ca.pem") $(stat -c %a "$WORK/ca-root-only.pem")"
check "the vault made the signatures (keys.sign: $(stats_get keys.sign))" test "$(stats_get keys.sign)" -ge 3
check_nogrep "no error in Apache's log" '\[[a-z_]+:(emerg|alert|crit|error)\]' "$A/error.log"
check_nogrep "no warning or error from the module in Apache's log" 'akv-pkcs11\[[0-9]+\] (WARN|ERROR)' "$A/error.log"
run_recipe apache-stop "recipe apache-stop: apache2 -k stop"
finish
