#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lifecycle (docs/lifecycle.md): one process generates a key pair, signs and verifies with the returned
# handles at once, changes its dates, tries to rename it, and destroys it (p11_lifecycle_check);
# the vault's record of the deleted key (REST) shows the dates and the CKA_ID tag it ended with.
. "$(dirname "$0")/../integration/lib.sh"
need_tool jq curl
need_module
[ -n "${P11_LIFECYCLE_CHECK:-}" ] && [ -x "$P11_LIFECYCLE_CHECK" ] || fail "P11_LIFECYCLE_CHECK is not set"

emu_start --vault att1
module_config "$WORK/cfg.json" '{"allow_destroy":true}'
export AKV_PKCS11_CONFIG="$WORK/cfg.json"

check "p11_lifecycle_check: generate, sign at once, update dates, destroy" \
  "$P11_LIFECYCLE_CHECK" "$AKV_MODULE" lk-attrs
sed 's/^/#   | /' "$WORK/check.out" | grep -E "ok [0-9]+" || true
deleted() {
  local i
  for i in $(seq 50); do kv_call GET /deletedkeys/lk-attrs >"$WORK/deleted.json" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
check "REST: the key is soft-deleted" deleted
check_eq "REST: exp is 2032-03-04 (C_SetAttributeValue CKA_END_DATE)" "$(date -u -d 2032-03-04 +%s)" \
  "$(jq -r '.attributes.exp' "$WORK/deleted.json")"
check_eq "REST: nbf is 2026-01-01 (CKA_START_DATE at generation)" "$(date -u -d 2026-01-01 +%s)" \
  "$(jq -r '.attributes.nbf' "$WORK/deleted.json")"
check_eq "REST: the pkcs11-id tag is 5aa5" 5aa5 "$(jq -r '.tags["pkcs11-id"]' "$WORK/deleted.json")"
check_eq "REST: key_ops are the RSA defaults (no usage was set to FALSE)" \
  '["decrypt","encrypt","sign","unwrapKey","verify","wrapKey"]' "$(jq -c '.key.key_ops | sort' "$WORK/deleted.json")"

finish
