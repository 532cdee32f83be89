#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What a cold search by label read reaches the cache file (docs/design.md "Cold search by label",
# "Cache file"): a process that only searches by label (p11_cold_check label) records the name, so
# that the next process of the same configuration signs with exactly one vault request (keys.sign;
# its token from the keyring), no keys.get and no listing; the objects are those the listing gives
# (same handles and attributes) and a search by CKA_ID still lists, after which the listing
# replaces the record; certificates are recorded with their key; each configuration has its own
# records, at most 32 of them; records past the ttl, altered files and forged records (authentic,
# but naming another key) are not served; processes writing at once lose none of each other's
# names; with the cache file off every process reads the name again. Counted with the emulator's
# counters.
. "$(dirname "$0")/lib.sh"
need_tool openssl jq curl
need_module
[ -x "${P11_COLD_CHECK:-}" ] || fail "P11_COLD_CHECK (the built p11_cold_check) is not set"

# The token is shared through the kernel keyring where there is one (docs/security.md): then a
# later process asks for none.
if command -v keyctl >/dev/null 2>&1 && keyctl show @s >/dev/null 2>&1; then TOK2=0; else TOK2=1; fi

jq -n '{keys: [range(300) | {name: "bulk-\(.)", kty: "EC", crv: "P-256"}],
        certificates: [{name: "cold-cert", subject: "CN=cold.test", kty: "EC", crv: "P-256"}]}' \
  >"$WORK/seed.json"
emu_start --vault coldf --seed "$WORK/seed.json"
CFILE="$WORK/p11-cache"
module_config "$WORK/keys.json" '{"objects":["keys"]}' "{\"cache_file\":\"$CFILE\"}"
module_config "$WORK/certs.json" '{"objects":["keys","certificates"]}' "{\"cache_file\":\"$CFILE\"}"
module_config "$WORK/short.json" '{"objects":["keys"],"ttl":2}' "{\"cache_file\":\"$CFILE\"}"
module_config "$WORK/off.json" '{"objects":["keys"]}'
export AKV_PKCS11_CONFIG="$WORK/keys.json" AKV_PKCS11_LOG_FILE="$WORK/module.log" \
  AKV_PKCS11_LOG_LEVEL=debug

# sign TAG LABEL CERT GETS TOKENS: one process that searches LABEL by label only (its key, public
# key, and certificate with CERT 1) and signs, with exactly GETS keys.get (and certificates.get
# with CERT), TOKENS token requests and the keys.sign (p11_cold_check label).
sign() {
  local tag=$1
  shift
  stats_reset
  run_check "$tag" label "$@"
}
body() { tail -n +2 "$CFILE"; }
names_of() { body | jq -r '[.names[]?.name] | sort | join(" ")'; }
run_check() {
  local name=$1 rc=0
  shift
  timeout 60 "$P11_COLD_CHECK" "$AKV_MODULE" "$@" >"$WORK/cold-$name.out" 2>"$WORK/cold-$name.err" || rc=$?
  cat "$WORK/cold-$name.out"
  sed 's/^/#   stderr| /' "$WORK/cold-$name.err" | tail -n 20
  T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/cold-$name.out" || true)))
  check_eq "p11_cold_check $* passed all its checks" 0 "$rc"
}
# remac: the file's MAC line recomputed over its (edited) JSON with the user's key, as a forger
# who could read the key would (the key is not in the cache directory: docs/security.md).
remac() {
  local key mac
  key=$(hex_of "$XDG_CONFIG_HOME/akv-pkcs11/cache.key")
  mac=$({ printf 'akv-pkcs11-cache 5\n'; cat "$WORK/body.json"; } |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -r | cut -d' ' -f1)
  { printf 'akv-pkcs11-cache 5 %s\n' "$mac"; cat "$WORK/body.json"; } >"$CFILE"
  chmod 600 "$CFILE"
}

section "process 1 searches by label only: token + keys.get + keys.sign, the name recorded"
fresh_keyring
sign p1 bulk-123 0 1 1
check "the cache file exists" test -s "$CFILE"
check_eq "it records bulk-123 under its name" "bulk-123" "$(names_of)"
check_eq "and holds no listing" 0 "$(body | jq '.slots | length')"
check_grep "the log says the name was recorded" "bulk-123 recorded \(2 object" "$WORK/module.log"

section "process 2, same configuration, label only: exactly one vault request (keys.sign)"
: >"$WORK/module.log"
sign p2 bulk-123 0 0 "$TOK2"
check_grep "the log says the objects came from the cache file" \
  "cold search bulk-123: 2 object\(s\) from the cache file" "$WORK/module.log"
# One debug line per read of the file (open, MAC check, parse): the slot's listing and the record
# of the label come from the same read.
check_eq "the cache file was read once" 1 \
  "$(grep -c 'cache file .*: read [0-9]* bytes' "$WORK/module.log")"
check_nogrep "no warning" " WARN " "$WORK/module.log"

section "process 3: the listing's handles and attributes; a search by CKA_ID still lists"
stats_reset
run_check filed filed bulk-123 0 "$TOK2"
check_eq "the listing that search made replaced the record" "" "$(names_of)"
check_eq "and is in the file" 1 "$(body | jq '.slots | length')"

section "certificates shown: the key and its certificate recorded, then one request"
export AKV_PKCS11_CONFIG="$WORK/certs.json"
: >"$WORK/module.log"
sign c1 cold-cert 1 1 "$TOK2"
check_eq "the file was read twice: to look (listing and record at once), and to record the name" \
  2 "$(grep -c 'cache file .*: read [0-9]* bytes (authentic)' "$WORK/module.log")"
check_eq "another configuration's record sits beside the keys-only listing" "cold-cert" "$(names_of)"
stats_reset
run_check certs filed cold-cert 1 "$TOK2"

section "records past the slot's ttl are read again"
export AKV_PKCS11_CONFIG="$WORK/short.json"
rm -f "$CFILE"
sign t1 bulk-40 0 1 "$TOK2"
sleep 3
sign t2 bulk-40 0 1 "$TOK2"

section "an altered file is refused (one warning), the name read again and the file rewritten"
export AKV_PKCS11_CONFIG="$WORK/keys.json"
rm -f "$CFILE"
sign a1 bulk-200 0 1 "$TOK2"
body | sed 's/"read_at":\([0-9]*\)/"read_at":\1 /' >"$WORK/body.json"
{ head -n 1 "$CFILE"; cat "$WORK/body.json"; } >"$CFILE.new" && mv "$CFILE.new" "$CFILE"
chmod 600 "$CFILE"
: >"$WORK/module.log"
sign a2 bulk-200 0 1 "$TOK2"
check_eq "one cache warning" 1 "$(grep -c ' WARN cache: ' "$WORK/module.log")"
check_grep "it says the MAC does not match" "ignored: its MAC does not match" "$WORK/module.log"
sign a3 bulk-200 0 0 "$TOK2"

section "an authentic record naming another key is refused (one warning)"
# The record of bulk-200 relabelled bulk-201 and MACed again: its objects are bulk-200's.
body | jq -c '.names |= map(.name = "bulk-201")' >"$WORK/body.json"
remac
: >"$WORK/module.log"
sign f1 bulk-201 0 1 "$TOK2"
check_grep "the warning says the record fails the checks" \
  "ignored: a name record fails the checks a vault reply must pass" "$WORK/module.log"
check_eq "one cache warning" 1 "$(grep -c ' WARN cache: ' "$WORK/module.log")"
check_eq "bulk-201's own record replaced it" "bulk-201" "$(names_of)"

section "four processes writing at once: none loses another's name"
rm -f "$CFILE"
pids=()
for i in 10 11 12 13; do
  timeout 60 "$P11_COLD_CHECK" "$AKV_MODULE" label "bulk-$i" 0 -1 0 >"$WORK/par.$i.out" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
check_eq "the four processes signed" 0 "$rc"
check_eq "the file records the four names" "bulk-10 bulk-11 bulk-12 bulk-13" "$(names_of)"
for i in 10 11 12 13; do
  sign "w$i" "bulk-$i" 0 0 "$TOK2"
done

section "at most 32 records per configuration: the oldest goes first"
rm -f "$CFILE"
for i in $(seq 100 132); do
  timeout 60 "$P11_COLD_CHECK" "$AKV_MODULE" label "bulk-$i" 0 -1 0 >"$WORK/bound.out" 2>&1 ||
    { cat "$WORK/bound.out"; fail "label-only process for bulk-$i"; }
done
check_eq "32 records kept" 32 "$(body | jq '.names | length')"
check_eq "the first one written (bulk-100) went" "" "$(body | jq -r '.names[] | select(.name == "bulk-100") | .name')"
check_eq "the last one (bulk-132) is there" "bulk-132" "$(body | jq -r '.names[-1].name')"

section "cache file off: every process reads the name again"
export AKV_PKCS11_CONFIG="$WORK/off.json"
rm -f "$CFILE"
sign o1 bulk-50 0 1 "$TOK2"
sign o2 bulk-50 0 1 "$TOK2"
check "no cache file written" test ! -e "$CFILE"

finish
