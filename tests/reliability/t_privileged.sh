#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A privileged process (AT_SECURE) uses no environment variable and no user configuration file,
# only pReserved and /etc (docs/security.md "Privileged processes"). The driver (privileged_test.c)
# runs twice with the same environment: a plain copy (the control: the environment is used) and a
# setgid copy, which the kernel starts with AT_SECURE set (its effective group differs from the
# real one): as root, group nogroup (65534); otherwise a supplementary group of the caller.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/rel_lib.sh"
need_tool jq curl openssl
need_module

emu_start --vault privv
rel_setgid_pair "$(rel_prog privileged_test)"
# The driver says whether the kernel set AT_SECURE (a nosuid mount does not).
"$WORK/bin/setgid" /nonexistent >"$WORK/probe.out" 2>&1 || true
grep -qx "at_secure 1" "$WORK/probe.out" ||
  skip "the setgid copy runs without AT_SECURE ($WORK is on a nosuid mount?): $(head -n1 "$WORK/probe.out")"
grep -qx "at_secure 0" <("$WORK/bin/plain" /nonexistent 2>/dev/null) || fail "plain copy has AT_SECURE"
[ -e /etc/akv-pkcs11/config.json ] && log "note: /etc/akv-pkcs11/config.json exists on this host"

module_config "$WORK/user.json" '{"label":"from-user-file","objects":["keys"]}'
module_config "$WORK/reserved.json" '{"label":"from-preserved","objects":["keys"]}'
mkdir -p "$XDG_CONFIG_HOME/akv-pkcs11"
module_config "$XDG_CONFIG_HOME/akv-pkcs11/config.json" '{"label":"from-home","objects":["keys"]}'
URL=$(jq -r '.vaults[0].url' "$EMU_READY")

# run OUT PROG [ARGS]: the driver with the environment of this test.
run() { local out=$1; shift; "$@" >"$WORK/$out.out" 2>"$WORK/$out.err" || true; }

section "AKV_PKCS11_CONFIG"
run plain-env env AKV_PKCS11_CONFIG="$WORK/user.json" "$WORK/bin/plain"
run priv-env env AKV_PKCS11_CONFIG="$WORK/user.json" "$WORK/bin/setgid"
check "control: a plain process uses AKV_PKCS11_CONFIG" grep -qx "slot from-user-file" "$WORK/plain-env.out"
check "privileged: C_Initialize succeeds" grep -qx "init CKR_OK" "$WORK/priv-env.out"
check_fails "privileged: AKV_PKCS11_CONFIG is not used" grep -q "from-user-file" "$WORK/priv-env.out"

section "XDG_CONFIG_HOME / HOME"
run plain-home "$WORK/bin/plain"
run priv-home "$WORK/bin/setgid"
check "control: a plain process reads \$XDG_CONFIG_HOME/akv-pkcs11/config.json" \
  grep -qx "slot from-home" "$WORK/plain-home.out"
check_fails "privileged: the user's config file is not read (XDG_CONFIG_HOME)" grep -q "from-home" "$WORK/priv-home.out"
run priv-home2 env -u XDG_CONFIG_HOME "$WORK/bin/setgid"
check_fails "privileged: the user's config file is not read (HOME)" grep -q "from-home" "$WORK/priv-home2.out"

section "AKV_PKCS11_VAULT_URL and AZURE_*"
qs=(env HOME=/nonexistent XDG_CONFIG_HOME=/nonexistent AKV_PKCS11_VAULT_URL="$URL"
  AKV_PKCS11_ALLOWED_HOSTS=localhost AKV_PKCS11_CA_FILE="$(jq -r .ca_file "$EMU_READY")"
  AZURE_TENANT_ID="$(jq -r .tenant_id "$EMU_READY")" AZURE_CLIENT_ID="$(jq -r .client_id "$EMU_READY")")
run plain-qs "${qs[@]}" "$WORK/bin/plain"
run priv-qs "${qs[@]}" "$WORK/bin/setgid"
check "control: a plain process makes a slot from AKV_PKCS11_VAULT_URL" grep -q "^slot " "$WORK/plain-qs.out"
check_fails "privileged: no slot from AKV_PKCS11_VAULT_URL" grep -q "^slot " "$WORK/priv-qs.out"

section "pReserved is used; AKV_PKCS11_DEBUG / AKV_PKCS11_LOG_LEVEL are not"
dbg=(env AKV_PKCS11_DEBUG=all AKV_PKCS11_LOG_LEVEL=debug)
run plain-res "${dbg[@]}" "$WORK/bin/plain" "$WORK/reserved.json"
run priv-res "${dbg[@]}" "$WORK/bin/setgid" "$WORK/reserved.json"
check "control: a plain process logs debug lines with AKV_PKCS11_DEBUG=all" grep -q " DEBUG " "$WORK/plain-res.err"
check "privileged: the configuration in pReserved is used" grep -qx "slot from-preserved" "$WORK/priv-res.out"
check_fails "privileged: AKV_PKCS11_DEBUG and AKV_PKCS11_LOG_LEVEL are ignored (no DEBUG line)" \
  grep -q " DEBUG " "$WORK/priv-res.err"
section "proxy environment variables"
# libcurl reads https_proxy/all_proxy itself; a privileged process must not let them steer it. The
# proxy named here is a closed loopback port: using it fails the listing.
kv_create_ec priv-key P-256 || fail "seeding a key"
px=(env https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 all_proxy=http://127.0.0.1:9
  no_proxy= NO_PROXY=)
run plain-px "${px[@]}" "$WORK/bin/plain" "$WORK/reserved.json"
run priv-px "${px[@]}" "$WORK/bin/setgid" "$WORK/reserved.json"
check "control: a plain process uses https_proxy from the environment (the listing fails)" \
  grep -q "^find " "$WORK/plain-px.out"
check "privileged: https_proxy/all_proxy are ignored (the vault is listed directly)" \
  grep -Eq "^objects [1-9]" "$WORK/priv-px.out"
finish
