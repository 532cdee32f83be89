#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lifecycle (docs/lifecycle.md): token objects written and deleted through pkcs11-tool: data objects become
# vault secrets (read back by a fresh process and by REST), certificates alone are refused,
# deletion follows allow_destroy (soft delete, objects gone at once), CKA_ID changes update the
# pkcs11-id tag, read-only slots refuse every write, and versions: "all" shows older versions.
. "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault obj1
module_config "$WORK/cfg.json"                                   # allow_destroy off (default)
module_config "$WORK/cfg-del.json" '{"allow_destroy":true}'
module_config "$WORK/cfg-ro.json" '{"read_only":true,"allow_destroy":true}'
module_config "$WORK/cfg-keys.json" '{"objects":["keys"]}'
module_config "$WORK/cfg-all.json" '{"versions":"all"}'
export AKV_PKCS11_CONFIG="$WORK/cfg.json"
use() { AKV_PKCS11_CONFIG="$WORK/$1.json"; export AKV_PKCS11_CONFIG; }
vault_has() { kv_call GET "$1" >/dev/null 2>&1; }

section "data objects are vault secrets"
printf 'connection string: host=db;user=app;pw=%s\n' "$RANDOM$RANDOM" >"$WORK/data.txt"
check "pkcs11-tool --write-object --type data --label app-config" \
  p11tool_m --write-object "$WORK/data.txt" --type data --label app-config
check_eq "REST: the secret holds the value" "$(cat "$WORK/data.txt")" "$(kv_secret_value app-config)"
check "a fresh process reads it back" \
  p11tool_m --read-object --type data --label app-config -o "$WORK/data.out"
check_same_file "same bytes" "$WORK/data.txt" "$WORK/data.out"
check_fails "a second data object with that name is refused" \
  p11tool_m --write-object "$WORK/data.txt" --type data --label app-config
check_eq "REST: still one version" 1 "$(kv_call GET /secrets/app-config/versions | jq '.value | length')"
head -c 64 /dev/urandom >"$WORK/bin.dat"
printf '\0\377' >>"$WORK/bin.dat"
check_fails "binary (non UTF-8) values are refused" \
  p11tool_m --write-object "$WORK/bin.dat" --type data --label bin-blob
check_grep "the log says why" "UTF-8" "$WORK/check.out"
use cfg-keys
check_fails "a slot that does not show secrets refuses data objects" \
  p11tool_m --write-object "$WORK/data.txt" --type data --label other-config
check_grep "the log names the objects setting" 'does not show secrets' "$WORK/check.out"
use cfg

section "certificates alone are refused"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/c.key" \
  -subj /CN=lifecycle -days 2 -outform DER -out "$WORK/c.der" 2>/dev/null || fail "openssl req"
check_fails "pkcs11-tool --write-object --type cert fails" \
  p11tool_m --write-object "$WORK/c.der" --type cert --label lone-cert --id 0e
check_grep "CKR_TEMPLATE_INCONSISTENT" "CKR_TEMPLATE_INCONSISTENT" "$WORK/check.out"
check_grep "the log says how to import it" "with its private key" "$WORK/check.out"
vault_has /certificates/lone-cert && _check_result 1 "no certificate in the vault" || _check_result 0 "no certificate in the vault"

section "CKA_ID updates the tag"
check "keypairgen lk-upd" p11tool_gen --keypairgen --key-type EC:prime256v1 --label lk-upd --id 0a0a
check "pkcs11-tool --set-id 0b0b on the private key" \
  p11tool_m --set-id 0b0b --id 0a0a --type privkey
check_eq "REST: the pkcs11-id tag is 0b0b" 0b0b "$(kv_call GET /keys/lk-upd | jq -r '.tags["pkcs11-id"]')"
p11tool_m -O >"$WORK/upd.out" 2>&1 || fail "-O"
check_eq "a new process sees both halves with CKA_ID 0b0b" 2 \
  "$(awk '/label:/{l=$2} /ID:/{if (l=="lk-upd" && $2=="0b0b") c++} END{print c+0}' "$WORK/upd.out")"
check "and signs with it" p11tool_m --sign --id 0b0b -m ECDSA-SHA256 -i "$WORK/data.txt" -o "$WORK/upd.sig"

section "deletion needs allow_destroy"
check "keypairgen lk-del" p11tool_gen --keypairgen --key-type rsa:2048 --label lk-del --id 0d
check_fails "allow_destroy off: --delete-object privkey is refused" \
  p11tool_m --delete-object --type privkey --label lk-del
# pkcs11-tool 0.23 has no name for CKR_ACTION_PROHIBITED (0x1b).
check_grep "CKR_ACTION_PROHIBITED" "CKR_ACTION_PROHIBITED|\(0x1b\)" "$WORK/check.out"
check "REST: the key is still there" vault_has /keys/lk-del
check_fails "allow_destroy off: data objects stay too" \
  p11tool_m --delete-object --type data --label app-config
use cfg-ro
check_fails "read-only slot: --delete-object is refused" \
  p11tool_m --delete-object --type privkey --label lk-del
check_fails "read-only slot: --write-object is refused" \
  p11tool_m --write-object "$WORK/data.txt" --type data --label ro-config
check_grep "CKR_TOKEN_WRITE_PROTECTED" "CKR_TOKEN_WRITE_PROTECTED" "$WORK/check.out"
check_fails "read-only slot: --set-id is refused" p11tool_m --set-id 0c0c --id 0b0b --type privkey
vault_has /secrets/ro-config && _check_result 1 "no ro-config in the vault" || _check_result 0 "no ro-config in the vault"
use cfg-del
check_fails "the public half alone is not deleted" \
  p11tool_m --delete-object --type pubkey --label lk-del
check "allow_destroy on: --delete-object privkey deletes the vault key" \
  p11tool_m --delete-object --type privkey --label lk-del
vault_has /keys/lk-del && _check_result 1 "REST: lk-del is gone" || _check_result 0 "REST: lk-del is gone"
# The vault may take a moment before the deleted key is listed (docs/emulator.md, the "being
# deleted" window).
deleted_seen() {
  local i
  for i in $(seq 50); do vault_has /deletedkeys/lk-del && return 0; sleep 0.2; done
  return 1
}
check "REST: it is soft-deleted (recoverable under /deletedkeys)" deleted_seen
p11tool_m -O >"$WORK/del.out" 2>&1 || fail "-O"
check_nogrep "neither half is listed by a new process" "label: +lk-del$" "$WORK/del.out"
check "--delete-object --type data deletes the secret" \
  p11tool_m --delete-object --type data --label app-config
vault_has /secrets/app-config && _check_result 1 "REST: app-config is gone" || _check_result 0 "REST: app-config is gone"

section "versions: all"
kv_create_ec lk-rot P-256 || fail "seeding lk-rot"
old=$(kv_call GET /keys/lk-rot | jq -r '.key.kid | split("/") | .[-1]')
kv_rotate lk-rot || fail "rotating lk-rot"
new=$(kv_call GET /keys/lk-rot | jq -r '.key.kid | split("/") | .[-1]')
use cfg-all
p11tool_m -O >"$WORK/all.out" 2>&1 || fail "-O"
check_grep "the latest version is labelled lk-rot" "label: +lk-rot$" "$WORK/all.out"
check_grep "the older version is labelled lk-rot/$old" "label: +lk-rot/$old$" "$WORK/all.out"
kv_key_pem lk-rot "$WORK/old.pem" "$old" || fail "old public key"
openssl pkey -pubin -in "$WORK/old.pem" -outform DER -out "$WORK/old.der" || fail "old DER"
old_id=$(der_id "$WORK/old.der")
check_grep "the older version's objects carry its own CKA_ID" "ID: +$old_id" "$WORK/all.out"
check "the older version still signs (pinned to $old)" \
  p11tool_m --sign --id "$old_id" -m ECDSA-SHA256 --signature-format openssl -i "$WORK/data.txt" -o "$WORK/old.sig"
check "openssl verifies it with the older version's key" \
  openssl dgst -sha256 -verify "$WORK/old.pem" -signature "$WORK/old.sig" "$WORK/data.txt"
use cfg
p11tool_m -O >"$WORK/latest.out" 2>&1 || fail "-O"
check_nogrep "without versions: all, only the latest ($new) is listed" "label: +lk-rot/" "$WORK/latest.out"

finish
