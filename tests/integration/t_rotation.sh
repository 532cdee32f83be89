#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Rotation without outages (docs/lifecycle.md "Handles held across a rotation"): one process
# (p11_rotation_check) holds a key handle while the key is rotated in the vault; after the refresh
# shows the new version the held handle still signs, and openssl verifies that signature with the
# OLD version's public key (read by REST) while a new search signs with the new version; disabling
# the old version then makes the held handle answer CKR_KEY_HANDLE_INVALID. The same for a
# certificate renewed with a new key, for a process that learned the objects from the cache file,
# and 100 rotations in one process, which keep the superseded objects bounded (the module's own
# count, in its debug log) and the heap flat. A new process (and a forked child) that re-finds the
# key by the CKA_ID and label it had before the rotation gets the old version while it is enabled,
# and so does one that re-finds a renewed certificate and its key.
. "$(dirname "$0")/lib.sh"
need_tool openssl jq curl
need_module
[ -x "${P11_ROTATION_CHECK:-}" ] || fail "P11_ROTATION_CHECK (the built p11_rotation_check) is not set"

emu_start --vault rot1
kv_token
printf 'rotation test %s\n' "$RANDOM" >"$WORK/data"
version_of() { jq -r '.key.kid // .kid | split("/") | .[-1]'; }

# hook NAME BODY: a shell script the check program runs between its steps (REST through curl with
# this test's token; $1.. are not used).
hook() {
  {
    printf '#!/usr/bin/env bash\nset -euo pipefail\n'
    printf 'rest() { curl -sS --fail --max-time 60 --cacert %q -H @%q -H "Content-Type: application/json" -X "$1" ${3:+--data-binary "$3"} "%s$2?api-version=%s"; }\n' \
      "$EMU_CA" "$WORK/kv-auth.hdr" "$EMU_VAULT_URL" "$KV_API"
    printf '%s\n' "$2"
  } >"$WORK/$1"
  chmod +x "$WORK/$1"
}

# run_check NAME ARGS...: runs p11_rotation_check, counts its checks in this test's total.
run_check() {
  local name=$1 rc=0
  shift
  timeout 300 "$P11_ROTATION_CHECK" "$AKV_MODULE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  cat "$WORK/$name.out"
  { grep -v ' DEBUG ' "$WORK/$name.err" || true; } | sed 's/^/#   stderr| /' | tail -n 20
  T_CHECKS=$((T_CHECKS + $(grep -c '^ok ' "$WORK/$name.out" || true)))
  check_eq "p11_rotation_check $name passed all its checks" 0 "$rc"
}

# verify_with LABEL SIG PEM: openssl verifies the RSA PKCS#1 v1.5 SHA-256 signature of the data.
verify_with() { check "$1" openssl dgst -sha256 -verify "$3" -signature "$2" "$WORK/data"; }

# key_case NAME CONFIG WAIT: one key (created by the caller), rotated and then its old version
# disabled.
key_case() {
  local name=$1 cfg=$2 wait_s=$3 old new
  old=$(kv_call GET "/keys/$name" | version_of) || fail "version"
  kv_key_pem "$name" "$WORK/$name-old.pem" "$old" || fail "old public key"
  hook "$name-rotate.sh" "
curl -sS --fail --max-time 10 --cacert '$EMU_CA' '$EMU_STATS' | jq -r '.by_operation[\"keys.list\"] // 0' >'$WORK/$name-lists-before'
rest POST /keys/$name/rotate >'$WORK/$name-rotated.json'
sleep $wait_s"
  hook "$name-disable.sh" "rest PATCH /keys/$name/$old '{\"attributes\":{\"enabled\":false}}' >/dev/null"
  mkdir -p "$WORK/$name"
  cp "$WORK/data" "$WORK/$name/data"
  AKV_PKCS11_CONFIG=$cfg run_check "$name" key "$name" "$WORK/$name-rotate.sh" \
    "$WORK/$name-disable.sh" "$WORK/$name"
  new=$(version_of <"$WORK/$name-rotated.json")
  check "the vault made a new version ($old -> $new)" test -n "$new" -a "$new" != "$old"
  kv_key_pem "$name" "$WORK/$name-new.pem" "$new" || fail "new public key"
  verify_with "the held handle's signature verifies with the old version's public key" \
    "$WORK/$name/old.sig" "$WORK/$name-old.pem"
  check_fails "and not with the new version's" openssl dgst -sha256 -verify "$WORK/$name-new.pem" \
    -signature "$WORK/$name/old.sig" "$WORK/data"
  verify_with "the new search's signature verifies with the new version's public key" \
    "$WORK/$name/new.sig" "$WORK/$name-new.pem"
  verify_with "after the old version was disabled the new one still signs" \
    "$WORK/$name/new2.sig" "$WORK/$name-new.pem"
}

section "a key rotated under a held handle (ttl 0: every search lists the vault)"
module_config "$WORK/ttl0.json" '{"ttl":0,"objects":["keys","certificates"]}'
kv_create_rsa rot-rsa 2048 || fail "seeding rot-rsa"
key_case rot-rsa "$WORK/ttl0.json" 0
check_grep "the disabled version was logged" "rot-rsa/.* was disabled in the vault" "$WORK/rot-rsa.err"

section "the same for a process that learned the objects from the cache file"
module_config "$WORK/file.json" '{"ttl":3,"objects":["keys","certificates"]}' \
  "{\"cache_file\":\"$WORK/akv-cache.json\"}"
kv_create_rsa file-rsa 2048 || fail "seeding file-rsa"
# A first process lists the vault and writes the cache file; the check process starts within the
# TTL, so it learns the objects from the file (it lists nothing before the rotation).
check "a first process lists the vault (pkcs11-tool -O)" \
  env AKV_PKCS11_CONFIG="$WORK/file.json" pkcs11-tool --module "$AKV_MODULE" -O
stats_reset
# The rotation hook waits out the TTL (3 s), so the next search lists the vault again.
key_case file-rsa "$WORK/file.json" 4
check_eq "the check process listed nothing before the rotation (objects from the cache file)" \
  0 "$(cat "$WORK/file-rsa-lists-before")"

section "a certificate renewed with a new key under held handles"
kv_create_cert rot-cert "CN=rotation.test" RSA 2048 || fail "seeding rot-cert"
cert_old=$(kv_call GET /certificates/rot-cert | version_of) || fail "version"
kv_cert_der rot-cert "$WORK/rot-cert-old.der" || fail "old certificate"
KEYPROPS='{"exportable":true,"kty":"RSA","key_size":2048,"reuse_key":false}'
hook renew.sh "
rest POST /certificates/rot-cert/create '{\"policy\":{\"key_props\":$KEYPROPS,\"secret_props\":{\"contentType\":\"application/x-pem-file\"},\"x509_props\":{\"subject\":\"CN=rotation.test\",\"validity_months\":12},\"issuer\":{\"name\":\"Self\"}}}' >/dev/null
for i in \$(seq 150); do
  s=\$(rest GET /certificates/rot-cert/pending | jq -r .status)
  [ \"\$s\" = completed ] && exit 0
  [ \"\$s\" = inProgress ] || { echo \"pending status \$s\" >&2; exit 1; }
  sleep 0.2
done
exit 1"
mkdir -p "$WORK/cert"
cp "$WORK/data" "$WORK/cert/data"
AKV_PKCS11_CONFIG="$WORK/ttl0.json" run_check cert cert rot-cert "$WORK/renew.sh" "$WORK/cert"
cert_new=$(kv_call GET /certificates/rot-cert | version_of) || fail "version"
check "the vault renewed the certificate ($cert_old -> $cert_new)" test "$cert_new" != "$cert_old"
check_same_file "the held certificate handle reads the old certificate" \
  "$WORK/rot-cert-old.der" "$WORK/cert/cert-held.der"
kv_cert_der rot-cert "$WORK/rot-cert-new.der" || fail "new certificate"
check_same_file "the new certificate object is the vault's new version" \
  "$WORK/rot-cert-new.der" "$WORK/cert/cert-new.der"
openssl x509 -inform DER -in "$WORK/rot-cert-old.der" -pubkey -noout >"$WORK/cert-old.pem" || fail "pubkey"
openssl x509 -inform DER -in "$WORK/rot-cert-new.der" -pubkey -noout >"$WORK/cert-new.pem" || fail "pubkey"
verify_with "the held key's signature verifies with the old certificate's key" \
  "$WORK/cert/old.sig" "$WORK/cert-old.pem"
verify_with "the new key's signature verifies with the new certificate's key" \
  "$WORK/cert/new.sig" "$WORK/cert-new.pem"
# A new process after the renewal, by the old certificate's CKA_ID (the SHA-1 of its public key).
openssl pkey -pubin -in "$WORK/cert-old.pem" -outform DER -out "$WORK/cert-old-spki.der" || fail "spki"
AKV_PKCS11_CONFIG="$WORK/ttl0.json" run_check certrefind certrefind rot-cert \
  "$(der_id "$WORK/cert-old-spki.der")" "$WORK/cert"
check_same_file "the certificate re-found by its old CKA_ID is the old certificate" \
  "$WORK/rot-cert-old.der" "$WORK/cert/cert-refind.der"
verify_with "the key re-found by the old CKA_ID signs with the old certificate's key" \
  "$WORK/cert/refind.sig" "$WORK/cert-old.pem"

section "a key re-found by its old CKA_ID and label after the rotation (a new process, a forked child)"
# What the libp11 engine does in a forked nginx worker (docs/lifecycle.md "Keys re-found by CKA_ID
# after a rotation"): the search by the CKA_ID and label it remembered, after the refresh.
kv_create_rsa refind-rsa 2048 || fail "seeding refind-rsa"
r_old=$(kv_call GET /keys/refind-rsa | version_of) || fail "version"
kv_key_pem refind-rsa "$WORK/refind-old.pem" "$r_old" || fail "old public key"
r_old_id=$(AKV_PKCS11_CONFIG="$WORK/ttl0.json" "$P11_ROTATION_CHECK" "$AKV_MODULE" id refind-rsa) ||
  fail "the CKA_ID before the rotation"
check_eq "the module's CKA_ID is the SHA-1 of the old version's public key" \
  "$(kv_key_der refind-rsa "$WORK/refind-old.der" "$r_old" && der_id "$WORK/refind-old.der")" "$r_old_id"
kv_rotate refind-rsa || fail "rotating refind-rsa"
r_new_id=$(kv_key_id refind-rsa) || fail "the new CKA_ID"
kv_key_pem refind-rsa "$WORK/refind-new.pem" || fail "new public key"
hook refind-disable.sh "rest PATCH /keys/refind-rsa/$r_old '{\"attributes\":{\"enabled\":false}}' >/dev/null"
mkdir -p "$WORK/refind"
cp "$WORK/data" "$WORK/refind/data"
AKV_PKCS11_LOG_LEVEL=info AKV_PKCS11_CONFIG="$WORK/ttl0.json" run_check refind refind refind-rsa "$r_old_id" "$r_new_id" \
  "$WORK/refind-disable.sh" "$WORK/refind"
verify_with "the re-found key's signature verifies with the old version's public key" \
  "$WORK/refind/old.sig" "$WORK/refind-old.pem"
verify_with "the forked child's signature too" "$WORK/refind/child.sig" "$WORK/refind-old.pem"
verify_with "the new CKA_ID's signature verifies with the new version's public key" \
  "$WORK/refind/new.sig" "$WORK/refind-new.pem"
check_grep "the module logged the older version it found" \
  "key refind-rsa: a search by CKA_ID found version $r_old" "$WORK/refind.err"

section "100 rotations in one process: superseded objects bounded, heap flat"
kv_create_rsa many-rsa 2048 || fail "seeding many-rsa"
hook many-rotate.sh "rest POST /keys/many-rsa/rotate >/dev/null"
AKV_PKCS11_LOG_LEVEL=debug AKV_PKCS11_LOG_FILE="$WORK/many.log" AKV_PKCS11_CONFIG="$WORK/ttl0.json" \
  run_check many many many-rsa 100 "$WORK/many-rotate.sh"
held=$(sed -n 's/.*: \([0-9]*\) superseded object(s) held.*/\1/p' "$WORK/many.log" | sort -n | tail -n 1)
log "most superseded objects held at once: ${held:-none}"
check "the module held superseded objects (the held handle's version among them)" test "${held:-0}" -ge 1
check "never more than 4 (versions per key, one object each)" test "${held:-99}" -le 4
check_grep "the least recently used version beyond 4 was released with a warning" \
  "more than 4 superseded versions of many-rsa are held by handles" "$WORK/many.log"
last=$(sed -n 's/.*: \([0-9]*\) superseded object(s) held.*/\1/p' "$WORK/many.log" | tail -n 1)
check_eq "closing the last session released every superseded object" 0 "$last"
read -r _ heap10 heap_end < <(grep '^heap ' "$WORK/many.out") || fail "no heap line"
log "heap in use after 10 rotations: $heap10 B, after 100: $heap_end B"
# One kept version costs several KiB (its RSA key, attributes, JSON); 90 kept would be ~500 KiB.
# The handle registry keeps ~100 B per version ever seen (handles are never reused).
check "the heap grew less than 128 KiB over the last 90 rotations" \
  test $((heap_end - heap10)) -lt 131072

finish
