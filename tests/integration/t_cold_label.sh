#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A search by label on a cold cache (docs/design.md "Cold search by label"): in a vault of 300 keys,
# a fresh process with the cache file off finds a key by label and signs with exactly a token, one
# GET of the key (and of its certificate where the slot shows certificates) and the signature, no
# listing before the signature; the handles and attributes are those the listing gives; a search
# by CKA_ID waits for the listing; a label no key has falls back to the listing; a wrong credential
# fails the search as a listing would. Counted with the emulator's request counters.
. "$(dirname "$0")/lib.sh"
need_tool jq curl
need_module
[ -x "${P11_COLD_CHECK:-}" ] || fail "P11_COLD_CHECK (the built p11_cold_check) is not set"

# 300 EC keys and a certificate (with its key) seeded at the emulator's start.
jq -n '{keys: [range(300) | {name: "bulk-\(.)", kty: "EC", crv: "P-256"}],
        certificates: [{name: "cold-cert", subject: "CN=cold.test", kty: "EC", crv: "P-256"}]}' \
  >"$WORK/seed.json"
emu_start --vault cold1 --seed "$WORK/seed.json"

run_check() {
  local name=$1 rc=0
  shift
  fresh_keyring # a token request per process: the count does not depend on the run before
  timeout 60 "$P11_COLD_CHECK" "$AKV_MODULE" "$@" >"$WORK/cold-$name.out" 2>"$WORK/cold-$name.err" || rc=$?
  cat "$WORK/cold-$name.out"
  sed 's/^/#   stderr| /' "$WORK/cold-$name.err" | tail -n 20
  T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/cold-$name.out" || true)))
  check_eq "p11_cold_check $* passed all its checks" 0 "$rc"
}

section "keys only: token + keys.get + keys.sign, then the listing for a search by CKA_ID"
module_config "$WORK/keys.json" '{"objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/keys.json"
stats_reset
run_check keys sign bulk-123 0

section "certificates shown: token + keys.get + certificates.get + keys.sign"
module_config "$WORK/certs.json" '{"objects":["keys","certificates"]}'
export AKV_PKCS11_CONFIG="$WORK/certs.json"
stats_reset
run_check certs sign cold-cert 1

section "a label no key has: asked for once, then the listing answers (nothing)"
stats_reset
run_check missing missing no-such-key

section "a label that differs from a key's name in case only: the listing answers (nothing)"
stats_reset
run_check case missing BULK-5

section "a wrong client secret fails the search by label as a listing would"
jq '.credential.client_secret = "wrong-secret-for-the-test-0123456789"' "$WORK/keys.json" >"$WORK/bad.json"
chmod 600 "$WORK/bad.json"
AKV_PKCS11_CONFIG="$WORK/bad.json" run_check badcred badcred bulk-7

finish
