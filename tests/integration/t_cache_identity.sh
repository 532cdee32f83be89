#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cache file serves a listing only to the principal it was listed for (docs/design.md
# "Decisions", docs/security.md "The cache file"): a process reads it for a slot only once the
# slot's credential has produced a token, and the entry is keyed by who that token names (tenant,
# object id, application). A wrong client secret fails at the token with the credential's error and
# no object; another identity of the tenant (the emulator's second app) gets its own listing; the
# first identity is served from the file again; the same configuration logged in as another
# identity (Azure CLI) gets that identity's entry. Counted with the emulator's request counters.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool jq curl
need_module
[ -x "${P11_FRESH_CHECK:-}" ] || fail "P11_FRESH_CHECK (the built p11_fresh_check) is not set"
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 (the built akv-p11) is not set"

emu_start --vault ident1
kv_create_ec listed P-256 || fail "seeding"
EMU_OTHER_CLIENT_ID=$(emu_field .other_client_id)
EMU_OTHER_CLIENT_SECRET=$(emu_field .other_client_secret)
[ -n "$EMU_OTHER_CLIENT_ID" ] && [ "$EMU_OTHER_CLIENT_ID" != null ] ||
  fail "the emulator's ready file has no other_client_id"

# One cache file for every configuration below (ttl 300 s): only the credential differs.
module_config "$WORK/a.json" '{"objects":["keys"]}' "{\"cache_file\":\"$WORK/id-cache\"}"
jq '.credential.client_secret = "not-the-secret"' "$WORK/a.json" >"$WORK/wrong.json"
jq --arg c "$EMU_OTHER_CLIENT_ID" --arg s "$EMU_OTHER_CLIENT_SECRET" \
  '.credential.client_id = $c | .credential.client_secret = $s' "$WORK/a.json" >"$WORK/b.json"
chmod 600 "$WORK/wrong.json" "$WORK/b.json"
export AKV_PKCS11_CONFIG="$WORK/a.json"

section "the right secret lists and writes the cache file"
stats_reset
check "pkcs11-tool -O lists the vault" pkcs11-tool --module "$AKV_MODULE" -O
check_grep "the listing has the seeded key" "label: +listed\$" "$WORK/check.out"
check "one listing (ops: $(stats_ops))" test "$(stats_get keys.list)" -ge 1
check "the cache file is written" test -s "$WORK/id-cache"
check "a second process is served by the file" pkcs11-tool --module "$AKV_MODULE" -O
stats_reset
check "a third process is served by the file" pkcs11-tool --module "$AKV_MODULE" -O
check_grep "it sees the keys" "label: +listed\$" "$WORK/check.out"
check_eq "no listing (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
# Created after the first identity's listing: a listing made since shows it, that entry does not.
kv_create_ec created-later P-256 || fail "creating created-later"

section "a wrong client secret (same tenant and client id) fails at the token, before any object"
stats_reset
check_fails "pkcs11-tool -O with a wrong secret fails" \
  env AKV_PKCS11_CONFIG="$WORK/wrong.json" pkcs11-tool --module "$AKV_MODULE" -O
check_nogrep "no object is listed" "label: +(listed|created-later)\$" "$WORK/check.out"
check_grep "the error is the credential's: the secret" "Invalid client secret" "$WORK/check.out"
check_grep "the search fails with CKR_DEVICE_ERROR" "CKR_DEVICE_ERROR" "$WORK/check.out"
check_fails "akv-p11 list with a wrong secret fails" \
  env AKV_PKCS11_CONFIG="$WORK/wrong.json" "$AKV_P11" list
check_nogrep "akv-p11 lists no object" "listed|created-later" "$WORK/check.out"
check "a search by label with a wrong secret" \
  env AKV_PKCS11_CONFIG="$WORK/wrong.json" timeout 60 "$P11_FRESH_CHECK" "$AKV_MODULE" listed
check_grep "fails with CKR_DEVICE_ERROR" "C_FindObjectsInit: CKR_DEVICE_ERROR" "$WORK/check.out"
check_grep "finds nothing and reads nothing" "^find listed missing get=0 total=0\$" "$WORK/check.out"
check_eq "the vault saw no listing from them (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
check_eq "and no read by name" 0 "$(stats_get keys.get)"
check "each asked for a token (3 processes: $(stats_get token) token requests)" \
  test "$(stats_get token)" -ge 3

section "another identity of the tenant gets its own listing, never the first one's entry"
stats_reset
check "the second app lists" env AKV_PKCS11_CONFIG="$WORK/b.json" pkcs11-tool --module "$AKV_MODULE" -O
check_grep "its listing has the key created since the first identity's" "label: +created-later\$" \
  "$WORK/check.out"
check "it listed the vault itself (ops: $(stats_ops))" test "$(stats_get keys.list)" -ge 1
stats_reset
check "the second app again" env AKV_PKCS11_CONFIG="$WORK/b.json" pkcs11-tool --module "$AKV_MODULE" -O
check_eq "served by its own entry (ops: $(stats_ops))" 0 "$(stats_get keys.list)"

section "the first identity is still served from its own entry"
stats_reset
check "the first app lists" pkcs11-tool --module "$AKV_MODULE" -O
check_eq "from the file: no listing (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
check_grep "its entry has the seeded key" "label: +listed\$" "$WORK/check.out"
check_nogrep "and not the second app's listing" "label: +created-later\$" "$WORK/check.out"

section "the same configuration logged in as another identity (Azure CLI) gets that one's entry"
# The fake az (lib.sh fake_az) logs in as the app its configuration directory (AZURE_CONFIG_DIR)
# names, as the real one's login is that directory's.
mkdir -p "$WORK/azbin" "$WORK/az-first" "$WORK/az-second"
printf '%s\n%s\n' "$EMU_CLIENT_ID" "$EMU_CLIENT_SECRET" >"$WORK/az-first/app"
printf '%s\n%s\n' "$EMU_OTHER_CLIENT_ID" "$EMU_OTHER_CLIENT_SECRET" >"$WORK/az-second/app"
fake_az "$WORK/azbin/az"
jq --arg az "$WORK/azbin/az" '.credential = {type: "azure_cli", az_path: $az}' "$WORK/a.json" \
  >"$WORK/cli.json"
chmod 600 "$WORK/cli.json"
stats_reset
check "az logged in as the first app" env AKV_PKCS11_CONFIG="$WORK/cli.json" \
  AZURE_CONFIG_DIR="$WORK/az-first" pkcs11-tool --module "$AKV_MODULE" -O
check_eq "the first app's entry, through another credential source (ops: $(stats_ops))" 0 \
  "$(stats_get keys.list)"
check_nogrep "without the key only the second app's listing has" "label: +created-later\$" \
  "$WORK/check.out"
stats_reset
check "the same configuration, az logged in as the second app" env AKV_PKCS11_CONFIG="$WORK/cli.json" \
  AZURE_CONFIG_DIR="$WORK/az-second" pkcs11-tool --module "$AKV_MODULE" -O
check_eq "the second app's entry (ops: $(stats_ops))" 0 "$(stats_get keys.list)"
check_grep "with the key of the second app's listing" "label: +created-later\$" "$WORK/check.out"

finish
