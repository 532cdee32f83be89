#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cross-process cache file (docs/design.md, docs/security.md "The cache file"). Public parts (key lists, public keys,
# certificates; never secret values or tokens) go to a per-user cache file (0600), so a second
# short-lived process within the TTL costs no listing: a second pkcs11-tool -O costs 0 requests.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module
[ -x "${P11_THREAD_CHECK:-}" ] || fail "P11_THREAD_CHECK is not set (meson sets it)"

emu_start --vault cachef1
kv_create_rsa rsa2048 2048 || fail "seeding"
kv_create_ec ec-p256 P-256 || fail "seeding"
kv_create_cert "$STD_CERT" "CN=cache.test" RSA 2048 || fail "seeding"
kv_set_secret "$STD_SECRET" "$STD_SECRET_VALUE" || fail "seeding"

section "across processes: a second pkcs11-tool -O within the TTL costs 0 requests"
module_config "$WORK/filecache.json" '{}' "{\"cache_file\":\"$WORK/p11-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/filecache.json"
stats_reset
check "first pkcs11-tool -O" p11tool_m -O
cp "$WORK/check.out" "$WORK/O1.out"
first=$(stats_total)
log "first listing cost $first requests: $(stats_ops)"
check "first listing reached the vault (requests > 0)" test "$first" -gt 0
stats_reset
check "second pkcs11-tool -O" p11tool_m -O
cp "$WORK/check.out" "$WORK/O2.out"
check_eq "second listing within the TTL costs 0 vault requests (ops: $(stats_ops))" 0 "$(stats_total)"
check_eq "both listings show the same objects" "$(obj_table "$WORK/O1.out" | md5sum)" "$(obj_table "$WORK/O2.out" | md5sum)"
check "the cache file is private (0600)" bash -c '[ "$(stat -c %a "$1")" = 600 ]' _ "$WORK/p11-cache"

section "secret values and tokens never reach the cache file"
if [ -e "$WORK/p11-cache" ]; then
  check "read the secret (its value is fetched and cached in memory only)" \
    p11tool_m --read-object --type data --label "$STD_SECRET" -o "$WORK/secret.out"
  check_nofixed "the cache file does not contain the secret's value" "$STD_SECRET_VALUE" "$WORK/p11-cache"
  check_nogrep "the cache file contains no bearer token" "eyJ[A-Za-z0-9_-]{10,}\\.eyJ" "$WORK/p11-cache"
fi

section "keys read on demand (prefetch_keys 0): a search reads only the keys it may match"
# With more new keys in a listing than prefetch_keys, the module does not GET every key: a search by
# label reads that key only, the cache file keeps the others pending for the next process, and a
# search that may match any key (by CKA_ID, as pkcs11-tool --sign does, or -O) reads the rest.
module_config "$WORK/lazy.json" '{"prefetch_keys":0}' "{\"cache_file\":\"$WORK/lazy-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/lazy.json"
printf 'on-demand keys' >"$WORK/lazy.msg"
kv_key_der ec-p256 "$WORK/ec-vault.der" || fail "ec-p256 public key"
kv_key_pem rsa2048 "$WORK/rsa.pem" || fail "rsa2048 public key"
rsa_id=$(kv_key_id rsa2048) || fail "rsa2048 id"
stats_reset
check "process 1: read the public key found by label" p11tool_m --read-object --type pubkey \
  --label ec-p256 -o "$WORK/ec-token.der"
log "process 1 cost: $(stats_ops)"
check_eq "process 1: one keys.get (the key it asked for, not every key)" 1 "$(stats_get keys.get)"
check_same_file "process 1: the public key is the vault's" "$WORK/ec-vault.der" "$WORK/ec-token.der"
check_grep "the cache file keeps the unread keys pending" '"pending":\[\{"name":' "$WORK/lazy-cache"
check_nogrep "the key that was read is not pending any more" '"name":"ec-p256","created"' "$WORK/lazy-cache"
stats_reset
check "process 2: sign by CKA_ID" p11tool_m --sign -m SHA256-RSA-PKCS --id "$rsa_id" \
  -i "$WORK/lazy.msg" -o "$WORK/lazy-rsa.sig"
log "process 2 cost: $(stats_ops)"
check_eq "process 2: no listing (the cache file has it)" 0 "$(stats_get keys.list)"
check_eq "process 2: the two pending keys read (CKA_ID needs the public key)" 2 "$(stats_get keys.get)"
check_eq "process 2: one keys.sign" 1 "$(stats_get keys.sign)"
check "process 2: the signature verifies" openssl dgst -sha256 -verify "$WORK/rsa.pem" \
  -signature "$WORK/lazy-rsa.sig" "$WORK/lazy.msg"
stats_reset
check "process 3: pkcs11-tool -O" p11tool_m -O
check_eq "process 3: every key was read by processes 1 and 2: 0 requests (ops: $(stats_ops))" 0 "$(stats_total)"
check_eq "process 3 shows the same objects as an eager listing" \
  "$(obj_table "$WORK/O1.out" | md5sum)" "$(obj_table "$WORK/check.out" | md5sum)"
rm -f "$WORK/lazy-cache"
stats_reset
check "fresh cache: pkcs11-tool -O reads every pending key" p11tool_m -O
check_eq "fresh cache: one keys.get per key (ops: $(stats_ops))" 3 "$(stats_get keys.get)"
check_eq "fresh cache: the same objects" \
  "$(obj_table "$WORK/O1.out" | md5sum)" "$(obj_table "$WORK/check.out" | md5sum)"

section "a certificate with its chain survives the file: the next process sees the same objects"
# The chain certificates (NAME-chain-N, from the certificate's secret) are rebuilt from the file
# by the listing's own constructor: same objects, same DER, no request.
(
  cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key \
    -out root.pem -subj /CN=Cache-Root -days 5 -addext basicConstraints=critical,CA:true
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr \
    -subj /CN=Cache-Intermediate
  printf 'basicConstraints=critical,CA:true\n' >int.ext
  openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 5 \
    -extfile int.ext -out int.pem
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
    -subj /CN=cache-leaf
  openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 5 -out leaf.pem
  openssl pkcs8 -topk8 -nocrypt -in leaf.key -out leaf.p8
  cat leaf.p8 leaf.pem int.pem >bundle.pem
  openssl x509 -in int.pem -outform DER -out int.der
) >/dev/null 2>&1 || fail "making a chain"
kv_call POST "/certificates/chained/import" "$(jq -cn --arg v "$(cat "$WORK/bundle.pem")" \
  '{value:$v, policy:{key_props:{exportable:true,kty:"EC",crv:"P-256",reuse_key:false},
    secret_props:{contentType:"application/x-pem-file"}}}')" >/dev/null || fail "importing it"
module_config "$WORK/chain.json" '{}' "{\"cache_file\":\"$WORK/chain-cache\"}"
export AKV_PKCS11_CONFIG="$WORK/chain.json"
check "first process lists (and writes the file)" p11tool_m -O
cp "$WORK/check.out" "$WORK/C1.out"
check_grep "the chain certificate is an object" "label: +chained-chain-1" "$WORK/C1.out"
stats_reset
check "second process" p11tool_m -O
cp "$WORK/check.out" "$WORK/C2.out"
check_eq "served from the file: 0 vault requests (ops: $(stats_ops))" 0 "$(stats_total)"
check_eq "the same objects, chain included" "$(obj_table "$WORK/C1.out" | md5sum)" \
  "$(obj_table "$WORK/C2.out" | md5sum)"
check "the chain certificate from the file is the intermediate's DER" \
  p11tool_m --read-object --type cert --label chained-chain-1 -o "$WORK/int-token.der"
check_same_file "...byte for byte" "$WORK/int.der" "$WORK/int-token.der"

section "CKF_LIBRARY_CANT_CREATE_OS_THREADS: the module starts no thread, and everything works"
# p11_thread_check counts every pthread_create in its process (the module's and any library's) and
# the threads in /proc/self/task, around a listing, keys read on demand (several at once), a
# signature, its verification, and lookups past the soft and the hard TTL (2 s).
module_config "$WORK/threads.json" '{"ttl":2,"prefetch_keys":0}' '{"cache_file":""}'
AKV_PKCS11_CONFIG="$WORK/threads.json" "$P11_THREAD_CHECK" "$AKV_MODULE" none rsa2048 2 \
  >"$WORK/threads-none.out" 2>&1 || true
sed 's/^/#   /' "$WORK/threads-none.out"
check_grep "with the flag: no pthread_create, one thread, all calls work" \
  "^# p11_thread_check: [0-9]+ checks, 0 failed" "$WORK/threads-none.out"
AKV_PKCS11_CONFIG="$WORK/threads.json" "$P11_THREAD_CHECK" "$AKV_MODULE" default rsa2048 2 \
  >"$WORK/threads-default.out" 2>&1 || true
sed 's/^/#   /' "$WORK/threads-default.out"
check_grep "control, without the flag: the same calls start threads" \
  "^# p11_thread_check: [0-9]+ checks, 0 failed" "$WORK/threads-default.out"

section "a privileged process (AT_SECURE) uses no cache file"
# A setgid copy of the driver (group nogroup, as root) runs with AT_SECURE; its configuration comes
# from pReserved. The plain copy (the control) writes the cache file; the setgid copy neither reads
# nor writes it, and says so once (INFO).
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$WORK/bin"
  cp "$P11_THREAD_CHECK" "$WORK/bin/plain"
  cp "$P11_THREAD_CHECK" "$WORK/bin/setgid"
  chmod 755 "$WORK/bin/plain"
  chgrp 65534 "$WORK/bin/setgid" && chmod 2755 "$WORK/bin/setgid" || fail "chgrp/chmod g+s"
  module_config "$WORK/priv.json" '{"ttl":2,"prefetch_keys":0}' \
    "$(jq -cn --arg c "$WORK/priv-cache" --arg l "$WORK/priv.log" \
      '{cache_file: $c, log_file: $l, log_level: "info"}')"
  "$WORK/bin/plain" "$AKV_MODULE" none rsa2048 0 "$WORK/priv.json" >"$WORK/plain.out" 2>&1 || true
  check "control: a plain process writes the cache file" test -s "$WORK/priv-cache"
  rm -f "$WORK/priv-cache" "$WORK/priv-cache.lock" "$WORK/priv.log"
  "$WORK/bin/setgid" "$AKV_MODULE" none rsa2048 0 "$WORK/priv.json" >"$WORK/setgid.out" 2>&1 || true
  if grep -qx "at_secure 1" "$WORK/setgid.out"; then
    check_grep "privileged: the module works" "^# p11_thread_check: [0-9]+ checks, 0 failed" \
      "$WORK/setgid.out"
    check "privileged: no cache file written" test ! -e "$WORK/priv-cache"
    check_grep "privileged: the log says why, once" "cache file off: the process is privileged" \
      "$WORK/priv.log"
    check_eq "...once" 1 "$(grep -c 'cache file off' "$WORK/priv.log")"
  else
    log "the setgid copy runs without AT_SECURE (nosuid mount?): privileged case not checked"
  fi
else
  log "not root: no setgid copy to another group here (the privileged case is root-only)"
fi

finish
