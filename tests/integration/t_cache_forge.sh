#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Whoever can write the cache directory must not be able to forge a key through the
# cross-process cache file (docs/security.md "The cache file"). Each scenario tampers with a valid
# file the way such a writer could — another P-256 key under the victim's label and CKA_ID with a
# fresh built_at, a built_at that overflows the freshness test, a wrong MAC, a truncated file, a
# directory or lock file writable by the group — and then checks, through real pkcs11-tool
# processes, that the forged key never reaches a caller (the public key read through the token is
# the vault's JWK), that C_Verify rejects a signature made with the forger's private key, that the
# process logs exactly one warning about it, and that the next listing repairs the file (a later
# process is served from it with 0 vault requests and gets the vault's key).
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault forge1
kv_create_ec victim P-256 || fail "seeding"
kv_create_rsa bystander 2048 || fail "seeding"

CDIR="$WORK/cachedir"
CFILE="$CDIR/p11-cache"
MLOG="$WORK/module.log"
mkdir -m 700 "$CDIR"
module_config "$WORK/forge.json" '{"objects":["keys"]}' \
  "$(jq -cn --arg c "$CFILE" --arg l "$MLOG" '{cache_file: $c, log_file: $l, log_level: "warn"}')"
export AKV_PKCS11_CONFIG="$WORK/forge.json"

VID=$(kv_key_id victim) || fail "victim id"
kv_key_der victim "$WORK/victim.der" || fail "victim public key"

# The forger's key pair and its public point (x, y of P-256: the last 64 bytes of the SPKI).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/forger.pem" 2>/dev/null ||
  fail "forger key"
openssl pkey -in "$WORK/forger.pem" -pubout -outform DER -out "$WORK/forger.der" || fail "forger spki"
tail -c 64 "$WORK/forger.der" | head -c 32 >"$WORK/fx.bin"
tail -c 32 "$WORK/forger.der" >"$WORK/fy.bin"
FX_STD=$(base64 -w0 "$WORK/fx.bin")
FY_STD=$(base64 -w0 "$WORK/fy.bin")
FX_URL=$(b64url_of "$WORK/fx.bin")
FY_URL=$(b64url_of "$WORK/fy.bin")
printf 'a message the forger signed' >"$WORK/msg"
openssl dgst -sha256 -sign "$WORK/forger.pem" -out "$WORK/forged.sig" "$WORK/msg" || fail "forger sig"

# pub_is_vault: the public key with the victim's CKA_ID, read through the token, is the vault's.
pub_is_vault() { token_pubkey_der "$VID" "$WORK/tok.der" && cmp "$WORK/tok.der" "$WORK/victim.der"; }

# valid_file: a cache file the module wrote itself from a listing of the vault.
valid_file() {
  chmod 700 "$CDIR"
  rm -f "$CFILE" "$CFILE.lock"
  p11tool_m -O >"$WORK/valid.out" 2>&1 || { cat "$WORK/valid.out" >&2; fail "listing"; }
  [ -s "$CFILE" ] || fail "no cache file written"
}

# forge BUILT_AT [MAC]: replaces the victim's public point by the forger's, keeps its label and
# (through the pkcs11-id tag) its CKA_ID, sets every entry's built_at. The file's MAC line (when
# the format has one) is kept as it is, or replaced by MAC. Works on the JSON whatever its layout
# (key material at the top level of a key entry, or inside a JWK "key" member).
forge() {
  local built_at=$1 mac=${2:-} header="" body="$WORK/body.json"
  if [ "$(head -c1 "$CFILE")" = "{" ]; then
    cp "$CFILE" "$body"
  else
    header=$(head -n1 "$CFILE")
    tail -n +2 "$CFILE" >"$body"
  fi
  [ -z "$mac" ] || header="${header% *} $mac"
  jq -c --arg xs "$FX_STD" --arg ys "$FY_STD" --arg xu "$FX_URL" --arg yu "$FY_URL" \
    --arg id "$VID" --argjson b "$built_at" '
    .slots |= map(.built_at = $b | .keys |= map(
      if .src == "k|victim" then
        (if has("key") then .key.x = $xu | .key.y = $yu else .x = $xs | .y = $ys end)
        | .tags = ((.tags // {}) + {"pkcs11-id": $id})
      else . end))' "$body" >"$body.new" || fail "forging the file"
  grep -q "$FX_STD\|$FX_URL" "$body.new" || fail "the forger's key is not in the forged file"
  { [ -z "$header" ] || printf '%s\n' "$header"; cat "$body.new"; } >"$CFILE"
  chmod 600 "$CFILE"
}

# one_process NAME CMD...: runs a consumer process with a fresh module log.
one_process() {
  local name=$1
  shift
  : >"$MLOG"
  "$@" >"$WORK/$name.out" 2>&1 || true
}

# expect_rejected SCENARIO: the three promises, with the file as the scenario left it.
expect_rejected() {
  local s=$1
  local saved="$WORK/tampered.$s"
  cp -p "$CFILE" "$saved"
  one_process "$s-verify" p11tool_m --verify -m ECDSA-SHA256 --signature-format openssl --id "$VID" \
    --input-file "$WORK/msg" --signature-file "$WORK/forged.sig"
  check_grep "$s: C_Verify rejects the forger's signature" "Invalid signature" "$WORK/$s-verify.out"
  check_nogrep "$s: ...and never says it is valid" "Signature is valid" "$WORK/$s-verify.out"
  check_eq "$s: exactly one cache warning in that process" 1 "$(grep -c ' WARN cache: ' "$MLOG")"
  cp -p "$saved" "$CFILE"
  : >"$MLOG"
  check "$s: the public key read through the token is the vault's JWK" pub_is_vault
}

# expect_repaired SCENARIO: the next listing rewrote the file: a later process is served from it
# with no vault request, and gets the vault's key.
expect_repaired() {
  local s=$1
  check_nofixed "$s: the forger's key is gone from the file" "$FX_URL" "$CFILE"
  check_nofixed "$s: ...in either encoding" "$FX_STD" "$CFILE"
  stats_reset
  : >"$MLOG"
  check "$s: a later process reads the public key" pub_is_vault
  check_eq "$s: ...served from the repaired file, 0 vault requests (ops: $(stats_ops))" 0 \
    "$(stats_total)"
  check_eq "$s: ...without any cache warning" 0 "$(grep -c ' WARN cache: ' "$MLOG" || true)"
}

section "baseline: the module's own file serves the next process"
valid_file
stats_reset
: >"$MLOG"
check "a process within the TTL reads the public key" pub_is_vault
check_eq "...from the file (0 vault requests; ops: $(stats_ops))" 0 "$(stats_total)"
one_process "legit-sign" p11tool_m --sign -m ECDSA-SHA256 --signature-format openssl --id "$VID" \
  --input-file "$WORK/msg" --output-file "$WORK/legit.sig"
one_process "legit-verify" p11tool_m --verify -m ECDSA-SHA256 --signature-format openssl \
  --id "$VID" --input-file "$WORK/msg" --signature-file "$WORK/legit.sig"
check_grep "C_Verify accepts the vault key's own signature" "Signature is valid" \
  "$WORK/legit-verify.out"

section "a forged entry: another key, same label and CKA_ID, fresh built_at"
valid_file
forge "$(date +%s)"
expect_rejected forged
expect_repaired forged

section "a built_at that overflows the freshness test"
valid_file
forge -9223372036854775808
expect_rejected overflow
expect_repaired overflow
valid_file
forge 1e300
expect_rejected overflow-1e300
expect_repaired overflow-1e300

section "a wrong MAC"
valid_file
forge "$(date +%s)" "$(openssl rand -hex 32)"
expect_rejected wrong-mac
expect_repaired wrong-mac

section "a truncated file"
valid_file
forge "$(date +%s)"
truncate -s $(($(stat -c %s "$CFILE") / 2)) "$CFILE"
expect_rejected truncated
expect_repaired truncated

section "a FIFO in place of the file: no hang"
# Opening a FIFO for reading waits for a writer: the module must not (bounded by timeout here).
valid_file
rm -f "$CFILE"
mkfifo -m 600 "$CFILE"
: >"$MLOG"
check "a listing with a FIFO for a cache file returns (within 10 s)" \
  timeout 10 pkcs11-tool --module "$AKV_MODULE" -O
check_grep "fifo: the listing still shows the victim" "label: +victim" "$WORK/check.out"
check_eq "fifo: exactly one cache warning" 1 "$(grep -c ' WARN cache: ' "$MLOG")"
rm -f "$CFILE"

section "a cache directory writable by the group"
valid_file
forge "$(date +%s)"
chmod 770 "$CDIR"
expect_rejected group-dir
check_grep "group-dir: the warning names the directory" "cache directory $CDIR" "$MLOG"
check_fixed_file() { cmp -s "$1" "$2"; }
check "group-dir: the cache is off: the refused directory's file is not rewritten" \
  check_fixed_file "$CFILE" "$WORK/tampered.group-dir"
chmod 700 "$CDIR"
one_process "group-dir-relist" p11tool_m -O
expect_repaired group-dir

section "a cache directory owned by another user"
if [ "$(id -u)" = 0 ]; then
  valid_file
  forge "$(date +%s)"
  chown 65534 "$CDIR"
  expect_rejected other-owner
  check_grep "other-owner: the warning says who owns it" "owned by another user" "$MLOG"
  chown 0 "$CDIR"
  one_process "other-owner-relist" p11tool_m -O
  expect_repaired other-owner
else
  log "not root: cannot give the directory to another user (the unit of this rule is cf_open's owner check)"
fi

section "a lock file writable by others, and a lock file that is a symbolic link"
valid_file
forge "$(date +%s)"
chmod 666 "$CFILE.lock"
expect_rejected group-lock
check_grep "group-lock: the warning names the lock file" "cache file lock $CFILE.lock" "$MLOG"
rm -f "$CFILE.lock"
one_process "group-lock-relist" p11tool_m -O
expect_repaired group-lock
valid_file
forge "$(date +%s)"
rm -f "$CFILE.lock"
ln -s "$WORK/elsewhere" "$CFILE.lock"
expect_rejected symlink-lock
check "symlink-lock: the link was not followed" test ! -e "$WORK/elsewhere"
rm -f "$CFILE.lock"
one_process "symlink-lock-relist" p11tool_m -O
expect_repaired symlink-lock

finish
