#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Proxy credentials never reach the debug log (docs/security.md "Secrets in memory and in logs"):
# the module reaches the emulator through a loopback CONNECT proxy (connect_proxy.py) that wants
# Basic credentials, with AKV_PKCS11_DEBUG=all and a log file; the listing works through the
# proxy, the trace is on, and neither the user name, the password, its percent-encoded form nor the
# Basic token appears in the log.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl pkcs11-tool python3
need_module

emu_start --vault proxv
kv_create_ec px-key P-256 || fail "seeding a key"
PUSER=px-user-5b1e
PPASS='Pr0xy-p@ss:w0rd-7f3a9c'
PPASS_URL='Pr0xy-p%40ss%3Aw0rd-7f3a9c'
BASIC=$(printf '%s:%s' "$PUSER" "$PPASS" | base64 -w0)
python3 "$(dirname "$0")/connect_proxy.py" "$WORK/proxy.port" "$PUSER" "$PPASS" &
BG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/proxy.port" ] && break; sleep 0.1; done
[ -s "$WORK/proxy.port" ] || fail "the proxy did not start"
PROXY="http://$PUSER:$PPASS_URL@127.0.0.1:$(cat "$WORK/proxy.port")"

module_config "$WORK/module.json" '{"objects":["keys"]}' \
  "{\"proxy\":\"$PROXY\",\"log_file\":\"$WORK/module.log\",\"log_level\":\"debug\"}"
AKV_PKCS11_DEBUG=all AKV_PKCS11_CONFIG="$WORK/module.json" timeout 60 \
  pkcs11-tool --module "$AKV_MODULE" -O >"$WORK/list.out" 2>&1 || true
check "the key is listed through the proxy" grep -q "px-key" "$WORK/list.out"
check "the proxy tunnelled the requests (count file)" test -s "$WORK/proxy.port.count"
check_grep "the debug trace was on (request lines in the log)" "> (GET|POST) " "$WORK/module.log"
check_grep "the proxy exchange is in the trace (CONNECT)" "CONNECT" "$WORK/module.log"
check_nofixed "log: no proxy user name (libcurl's 'Proxy auth using Basic with user ...')" "$PUSER" "$WORK/module.log"
check_nofixed "log: no proxy password" "$PPASS" "$WORK/module.log"
check_nofixed "log: no percent-encoded proxy password" "$PPASS_URL" "$WORK/module.log"
check_nofixed "log: no Basic proxy token" "$BASIC" "$WORK/module.log"
finish
