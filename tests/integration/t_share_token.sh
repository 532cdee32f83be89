#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The access token shared between the user's processes through the kernel keyring
# (docs/security.md "The shared access token", docs/config.md `share_token`): a second
# `pkcs11-tool --sign` process with the cache file warm costs one vault request and no token
# request; the entry is private (possessor and user only) and expires with the token; processes
# that start together fetch one token; a token the vault refuses (401) is dropped and replaced; a
# foreign or garbage entry under the module's description is ignored; another client secret for
# the same app gets no shared token; a managed identity's token is shared too; `share_token: false`
# asks for a token in every process. lib.sh gives the test a session keyring of its own.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl keyctl
need_module
keyctl show @s >/dev/null 2>&1 || skip "no kernel keyring in this environment (the module keeps its tokens per process)"

emu_start --vault share1
kv_create_ec ec-p256 P-256 || fail "seeding"
kv_key_pem ec-p256 "$WORK/ec.pem" || fail "ec-p256 public key"
module_config "$WORK/share.json" '{"objects":["keys"]}' "{\"cache_file\":\"$WORK/p11-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/share.json" AKV_PKCS11_LOG_FILE="$WORK/module.log" AKV_PKCS11_LOG_LEVEL=debug
head -c 32 /dev/urandom >"$WORK/digest"
# The identity's description ends with a digest of the credential (src/kv/auth.c, share_desc).
mark=$(printf 'secret\0%s' "$EMU_CLIENT_SECRET" | sha256sum | cut -c1-16)
desc="akv-pkcs11:token:v1:entra ${EMU_AUTHORITY%/} $EMU_TENANT $EMU_CLIENT_ID https://vault.azure.net $mark"

# sign N: one pkcs11-tool process signing the digest with the vault's EC key; its signature
# verifies with the vault's public key.
sign() {
  check "process $1: pkcs11-tool --sign succeeds" timeout 60 pkcs11-tool --module "$AKV_MODULE" \
    --sign -m ECDSA --signature-format openssl --label ec-p256 -i "$WORK/digest" -o "$WORK/sig.$1"
  check "process $1: the signature verifies" openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" \
    -in "$WORK/digest" -sigfile "$WORK/sig.$1"
}
entry() { keyctl search @s user "$desc" 2>/dev/null; }
# entry_sum: a digest of the entry's payload (the token is never printed).
entry_sum() { keyctl pipe "$(entry)" 2>/dev/null | sha256sum | cut -c1-16; }

section "the first process fetches a token and leaves it in the keyring"
stats_reset
sign 1
check_eq "process 1: one token request (ops: $(stats_ops))" 1 "$(stats_get token)"
key=$(entry || true)
check "the keyring holds the token under the identity's description" test -n "$key"
check_grep "the entry is a \"user\" key of this uid, for its owner only (no possessor, group, other)" \
  "^user;$(id -u);[0-9]+;003f0000;" <(keyctl rdescribe "$key" 2>&1)
check_grep "the entry is in the module's format" '^AKVTOK1 [0-9]+ [0-9]+ ' \
  <(keyctl pipe "$key" 2>/dev/null | cut -c1-30)
# /proc/keys: the expiry column is the time left ("59m", "3599s"...), never "perm" (no timeout).
check_grep "the entry expires with the token (a timeout is set)" \
  "^$(printf '%08x' "$key") [^ ]+ +[0-9]+ +[0-9]+[smh] " /proc/keys
check_grep "the log says the token was stored" "token stored in the kernel keyring" "$WORK/module.log"
keyctl pipe "$key" >"$WORK/entry.bin" 2>/dev/null || true
keyctl rdescribe "$key" >>"$WORK/entry.bin" 2>/dev/null || true
check_nofixed "neither the entry nor its description holds the client secret" "$EMU_CLIENT_SECRET" \
  "$WORK/entry.bin"
rm -f "$WORK/entry.bin"
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1; then
  # nobody inherits this shell's session keyring (it possesses it) but not the owner's rights.
  check_fails "a process of another uid in the same session keyring cannot read the entry" \
    setpriv --reuid=nobody --regid=nogroup --clear-groups keyctl pipe "$key"
fi

section "a second process with the cache file warm: one vault request, no token request"
stats_reset
sign 2
check_eq "process 2: no token request (ops: $(stats_ops))" 0 "$(stats_get token)"
check_eq "process 2: one keys.sign" 1 "$(stats_get keys.sign)"
check_eq "process 2: exactly one vault request" 1 "$(stats_total)"
check_grep "the log says the token came from the keyring" "token for .* taken from the kernel keyring" \
  "$WORK/module.log"

section "processes that start together fetch one token"
keyctl unlink "$(entry)" @s >/dev/null
stats_reset
pids=()
for i in 1 2 3 4; do
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
    --label ec-p256 -i "$WORK/digest" -o "$WORK/par.$i" >"$WORK/par.$i.out" 2>&1 &
  pids+=($!)
done
rcs=0
for p in "${pids[@]}"; do wait "$p" || rcs=$((rcs + 1)); done
check_eq "four processes signed" 0 "$rcs"
check_eq "one token request between them (ops: $(stats_ops))" 1 "$(stats_get token)"
check_eq "four keys.sign" 4 "$(stats_get keys.sign)"

section "a token the vault refuses (401) is dropped from the keyring and replaced"
before=$(entry_sum)
# Every token issued so far is refused from the next bearer check on (docs/emulator.md faults).
emu_faults "token-revoke@1#1"
stats_reset
sign 3
check_eq "process 3: one token request after the 401 (ops: $(stats_ops))" 1 "$(stats_get token)"
check "process 3: the vault refused the shared token once" test "$(stats_get unauthorized)" -ge 1
check_grep "the log says the refused token was dropped" "token refused by the vault dropped from the kernel keyring" \
  "$WORK/module.log"
after=$(entry_sum)
check "the keyring now holds the new token" test -n "$(entry)" -a "$before" != "$after"
stats_reset
sign 4
check_eq "process 4: the new shared token works: no token request (ops: $(stats_ops))" 0 "$(stats_get token)"
check_eq "process 4: no refusal" 0 "$(stats_get unauthorized)"

section "a foreign entry under the module's description is ignored"
keyctl unlink "$(entry)" @s >/dev/null
garbage=$(keyctl add user "$desc" "not a token at all" @s)
keyctl setperm "$garbage" 0x003f0000 # the owner's only, as the module's: only the content is wrong
: >"$WORK/module.log"
stats_reset
sign 5
check_eq "process 5: garbage ignored, a token fetched (ops: $(stats_ops))" 1 "$(stats_get token)"
check_grep "the log names the entry and why it was ignored" \
  "kernel keyring entry .* is not one this module wrote \(not in the module's format\): ignored" "$WORK/module.log"
check_grep "the garbage was replaced by the module's entry" '^AKVTOK1 ' <(keyctl pipe "$(entry)" 2>/dev/null | cut -c1-8)
keyctl unlink "$(entry)" @s >/dev/null
# Well formed, but readable by group and others: not one the module wrote.
planted=$(keyctl add user "$desc" "AKVTOK1 $(($(date +%s) + 3000)) $(($(date +%s) + 2000)) planted.token" @s)
keyctl setperm "$planted" 0x3f3f3f3f
: >"$WORK/module.log"
stats_reset
sign 6
check_eq "process 6: the planted token is not used: a token fetched (ops: $(stats_ops))" 1 "$(stats_get token)"
check_eq "process 6: no refusal (the planted token never reached the vault)" 0 "$(stats_get unauthorized)"
check_grep "the log says why" "is not one this module wrote \(open to others than its owner" \
  "$WORK/module.log"
check_grep "the entry is the module's again, private" "^user;$(id -u);[0-9]+;003f0000;" \
  <(keyctl rdescribe "$(entry)" 2>&1)

section "another credential for the same app does not get the shared token"
jq '.credential.client_secret = "not-the-secret"' "$WORK/share.json" >"$WORK/wrong.json"
chmod 600 "$WORK/wrong.json"
stats_reset
check_fails "a process with a wrong client secret fails" env AKV_PKCS11_CONFIG="$WORK/wrong.json" \
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
  --label ec-p256 -i "$WORK/digest" -o "$WORK/sig.wrong"
check "it asked Entra ID itself (ops: $(stats_ops))" test "$(stats_get token)" -ge 1
check_eq "it signed nothing" 0 "$(stats_get keys.sign)"

section "managed identity (IMDS): the second process asks IMDS nothing"
IMDS=$(emu_field '.imds_endpoint')
jq --arg imds "$IMDS" '.credential = {type: "managed_identity", imds_endpoint: $imds}' \
  "$WORK/share.json" >"$WORK/imds.json"
chmod 600 "$WORK/imds.json"
stats_reset
check "process 9 (managed identity) signs" env AKV_PKCS11_CONFIG="$WORK/imds.json" \
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
  --label ec-p256 -i "$WORK/digest" -o "$WORK/sig.9"
check_eq "process 9: one IMDS request, no Entra request (ops: $(stats_ops))" "1 0" \
  "$(stats_get imds) $(stats_get token)"
check_grep "the keyring holds the managed identity's token" \
  "akv-pkcs11:token:v1:imds $IMDS [^ ]+ [^ ]+ https://vault.azure.net -\$" <(keyctl show @s 2>&1)
stats_reset
check "process 10 (managed identity) signs" env AKV_PKCS11_CONFIG="$WORK/imds.json" \
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
  --label ec-p256 -i "$WORK/digest" -o "$WORK/sig.10"
check_eq "process 10: no IMDS request, one vault request (ops: $(stats_ops))" "0 1" \
  "$(stats_get imds) $(stats_total)"

section "no kernel keyring (its system calls refused, as in a container): per process, said once"
if [ -f "${AKV_NOKEYRING_PRELOAD:-}" ]; then
  for err in ENOSYS EPERM; do
    : >"$WORK/module.log"
    stats_reset
    for i in 1 2; do
      check "$err: process $i signs" env LD_PRELOAD="$AKV_NOKEYRING_PRELOAD" NOKEYRING_ERRNO="$err" \
        timeout 60 pkcs11-tool --module "$AKV_MODULE" --sign -m ECDSA --signature-format openssl \
        --label ec-p256 -i "$WORK/digest" -o "$WORK/sig.nokr"
    done
    check_eq "$err: a token request per process (ops: $(stats_ops))" 2 "$(stats_get token)"
    check_eq "$err: the debug log says it once per process" 2 \
      "$(grep -c "token sharing: the kernel keyring is not available (.*); access tokens stay per process" "$WORK/module.log")"
  done
else
  log "AKV_NOKEYRING_PRELOAD is not set (meson sets it): section not run"
fi

section "share_token false: a token request per process, nothing in the keyring"
keyctl unlink "$(entry)" @s >/dev/null
module_config "$WORK/noshare.json" '{"objects":["keys"]}' \
  "{\"cache_file\":\"$WORK/p11-cache\",\"share_token\":false}"
export AKV_PKCS11_CONFIG="$WORK/noshare.json"
stats_reset
sign 7
check_eq "process 7: one token request (ops: $(stats_ops))" 1 "$(stats_get token)"
stats_reset
sign 8
check_eq "process 8: its own token request (ops: $(stats_ops))" 1 "$(stats_get token)"
check "nothing was stored in the keyring" test -z "$(entry || true)"

finish
