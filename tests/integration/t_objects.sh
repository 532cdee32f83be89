#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Slots, tokens, mechanisms and objects as pkcs11-tool sees them.
# Two vaults; the first seeded with RSA 2048/3072/4096, EC P-256/P-384/P-521/P-256K keys, a
# disabled key, a certificate with its key and a secret; the second with one key.
. "$(dirname "$0")/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault integ1 --vault integ2
seed_standard
KV_URL=$EMU_VAULT_URL_1 kv_create_ec other-ec P-256 || fail "seeding the second vault"
export AKV_PKCS11_OBJECTS=keys,certificates,secrets

declare -A ID
for k in "${STD_RSA_KEYS[@]}" "${STD_EC_KEYS[@]}" "$STD_CERT"; do
  ID[$k]=$(kv_key_id "$k") || fail "computing the CKA_ID of $k"
done
ID[other-ec]=$(KV_URL=$EMU_VAULT_URL_1 kv_key_id other-ec) || fail "computing the CKA_ID of other-ec"

section "pkcs11-tool -L / -T (environment-only configuration: AKV_PKCS11_VAULT_URL with two vaults)"
check "pkcs11-tool -L succeeds" p11tool_m -L
cp "$WORK/check.out" "$WORK/L.out"
cat "$WORK/L.out"
check_eq "-L shows one slot per vault (2)" 2 "$(grep -c '^Slot ' "$WORK/L.out" || true)"
check_grep "-L: serial of vault 1 = first 16 hex of SHA-256(url)" \
  "serial num +: $(vault_serial "$EMU_VAULT_URL_0")\$" "$WORK/L.out"
check_grep "-L: serial of vault 2 = first 16 hex of SHA-256(url)" \
  "serial num +: $(vault_serial "$EMU_VAULT_URL_1")\$" "$WORK/L.out"
check_grep "-L: token model is Key Vault" "token model +: Key Vault" "$WORK/L.out"
check_nogrep "-L: no token asks for a login (CKF_LOGIN_REQUIRED)" "login required" "$WORK/L.out"
check "pkcs11-tool -T succeeds" p11tool_m -T
check_eq "-T lists both tokens" 2 "$(grep -c '^Slot ' "$WORK/check.out" || true)"

section "pkcs11-tool -M"
check "pkcs11-tool -M succeeds" p11tool_m -M
cp "$WORK/check.out" "$WORK/M.out"
for m in RSA-PKCS SHA256-RSA-PKCS SHA384-RSA-PKCS SHA512-RSA-PKCS RSA-PKCS-PSS SHA256-RSA-PKCS-PSS \
  SHA384-RSA-PKCS-PSS SHA512-RSA-PKCS-PSS ECDSA ECDSA-SHA256 ECDSA-SHA384 ECDSA-SHA512 RSA-PKCS-OAEP; do
  check_grep "-M lists $m" "^ +$m(,|\$)" "$WORK/M.out"
done

section "pkcs11-tool -O on vault 1: exactly the seeded objects"
check "pkcs11-tool -O succeeds" p11tool_m -O
cp "$WORK/check.out" "$WORK/O.out"
cat "$WORK/O.out"
{
  for k in "${STD_RSA_KEYS[@]}" "${STD_EC_KEYS[@]}" "$STD_CERT"; do
    echo "priv|$k|${ID[$k]}"
    echo "pub|$k|${ID[$k]}"
  done
  echo "cert|$STD_CERT|${ID[$STD_CERT]}"
  echo "data|$STD_SECRET|"
} | LC_ALL=C sort >"$WORK/O.expected"
obj_table "$WORK/O.out" >"$WORK/O.table"
if diff -u "$WORK/O.expected" "$WORK/O.table" >"$WORK/O.diff"; then
  check_eq "-O lists exactly the seeded objects (key pairs, certificate, secret; CKA_ID = SHA-1 of SPKI)" 0 0
else
  sed 's/^/#   /' "$WORK/O.diff"
  check_eq "-O lists exactly the seeded objects (key pairs, certificate, secret; CKA_ID = SHA-1 of SPKI)" \
    "$(wc -l <"$WORK/O.expected") objects as expected" "differs (diff above)"
fi
check_nogrep "-O hides the disabled key" "label: +$STD_DISABLED\$" "$WORK/O.out"
check_eq "certificate and its private key share CKA_ID" \
  "$(grep "^priv|$STD_CERT|" "$WORK/O.table" | cut -d'|' -f3)" \
  "$(grep "^cert|$STD_CERT|" "$WORK/O.table" | cut -d'|' -f3)"
for k in "${STD_RSA_KEYS[@]}"; do
  check_grep "-O: $k public key is RSA ${STD_KEY_ARG[$k]} bits" \
    "^Public Key Object; RSA ${STD_KEY_ARG[$k]} bits" "$WORK/O.out"
done
check_eq "-O: 4 EC public keys" 4 "$(grep -c '^Public Key Object; EC' "$WORK/O.out" || true)"

section "pkcs11-tool -O on vault 2"
check "pkcs11-tool --slot-index 1 -O succeeds" p11tool_m --slot-index 1 -O
obj_table "$WORK/check.out" >"$WORK/O2.table"
check_eq "vault 2 holds exactly its one key pair" \
  "priv|other-ec|${ID[other-ec]} pub|other-ec|${ID[other-ec]}" "$(tr '\n' ' ' <"$WORK/O2.table" | sed 's/ $//')"

section "--read-object"
check "read the certificate by --id" \
  p11tool_m --read-object --type cert --id "${ID[$STD_CERT]}" -o "$WORK/cert.tok.der"
kv_cert_der "$STD_CERT" "$WORK/cert.kv.der" || fail "GET certificate"
check_same_file "certificate DER equals the vault's cer" "$WORK/cert.kv.der" "$WORK/cert.tok.der"
check "read the secret by --label" \
  p11tool_m --read-object --type data --label "$STD_SECRET" -o "$WORK/secret.tok"
printf '%s' "$(kv_secret_value "$STD_SECRET")" >"$WORK/secret.kv"
check_same_file "secret value equals the vault's" "$WORK/secret.kv" "$WORK/secret.tok"
for k in "${STD_RSA_KEYS[@]}" "${STD_EC_KEYS[@]}"; do
  check "public key of $k (--read-object --type pubkey) equals the vault's JWK" \
    pubkey_matches_vault "$k" "${ID[$k]}"
done
check "openssl reads the exported P-256K public key as secp256k1" \
  bash -c "openssl pkey -pubin -inform DER -in '$WORK/pk-ec-p256k.tok.der' -text -noout | grep -q secp256k1"

section "fork and threads (pkcs11-tool --test-fork, --test-threads)"
check "pkcs11-tool --test-fork: a forked child can C_Initialize again, then -O works" \
  timeout 60 pkcs11-tool --module "$AKV_MODULE" --test-fork -O
check_grep "... the listing after the fork test is complete" "label: +rsa4096\$" "$WORK/check.out"
# C_Initialize, C_GetInfo and C_GetSlotList from three threads while the main thread initialises
# (CKF_OS_LOCKING_OK) and lists. pkcs11-tool 0.23 looks at its threads once, right after its own
# work (a few ms here): a thread the scheduler has not run by then makes it sleep 30 s before it
# looks again (its test_threads_cleanup, whatever the module does). So the test waits for the three
# threads' own last lines and then ends pkcs11-tool if it is in that sleep.
tt="$WORK/test-threads.out"
stdbuf -oL pkcs11-tool --module "$AKV_MODULE" --use-locking --test-threads IN --test-threads GI \
  --test-threads SL -L >"$tt" 2>&1 &
ttpid=$!
threads_done() { [ "$(grep -c '^Test thread [0-9] returning rv' "$tt")" -ge 3 ]; }
for _ in $(seq 1 300); do # 30 s at most
  kill -0 "$ttpid" 2>/dev/null || break
  threads_done && grep -q '^test_threads waiting for 30 seconds' "$tt" && break
  sleep 0.1
done
ttrc=0
if ! kill -0 "$ttpid" 2>/dev/null; then
  wait "$ttpid" || ttrc=$?
elif threads_done && grep -q '^test_threads waiting for 30 seconds' "$tt"; then
  kill "$ttpid" 2>/dev/null
  wait "$ttpid" 2>/dev/null || true
  log "pkcs11-tool ended in its own 30 s wait for a thread that had not run when it first looked"
else
  kill -KILL "$ttpid" 2>/dev/null
  wait "$ttpid" 2>/dev/null || true
  ttrc=124
  log "pkcs11-tool --test-threads did not end within 30 s"
fi
check_eq "pkcs11-tool --use-locking --test-threads IN GI SL -L exits 0" 0 "$ttrc"
check_eq "... each of the three threads returned" 3 "$(grep -c '^Test thread [0-9] returning rv' "$tt")"
check_grep "... thread 0: C_Initialize(NULL) succeeds or finds the module initialised" \
  '^Test thread 0 C_Initialize returned CKR_(OK|CRYPTOKI_ALREADY_INITIALIZED)$' "$tt"
check_grep "... thread 1: C_GetInfo answers (CKR_CRYPTOKI_NOT_INITIALIZED before any C_Initialize)" \
  '^Test thread 1 C_GetInfo returned CKR_(OK|CRYPTOKI_NOT_INITIALIZED)$' "$tt"
check_grep "... thread 2: C_GetSlotList answers" \
  '^Test thread 2 C_GetSlotList returned CKR_(OK|CRYPTOKI_NOT_INITIALIZED)$' "$tt"
check_nogrep "... no thread saw another result" \
  '^Test thread [0-9] .* returned CKR_(GENERAL_ERROR|FUNCTION_FAILED|HOST_MEMORY|ARGUMENTS_BAD|CANT_LOCK|MUTEX)' "$tt"
check_grep "... the main thread's -L lists the slots" '^Available slots:' "$tt"

section "secrets off: no data objects"
AKV_PKCS11_OBJECTS=keys,certificates check "pkcs11-tool -O with AKV_PKCS11_OBJECTS=keys,certificates" p11tool_m -O
check_nogrep "no data object without secrets in AKV_PKCS11_OBJECTS" "^Data object" "$WORK/check.out"
check_grep "certificate still listed" "^Certificate Object" "$WORK/check.out"

section "labels from a config file (AKV_PKCS11_CONFIG)"
module_config "$WORK/module.json"
AKV_PKCS11_CONFIG="$WORK/module.json" check "pkcs11-tool -L with a config file" p11tool_m -L
check_grep "token label of vault 1 is its configured label" "token label +: integ1\$" "$WORK/check.out"
check_grep "token label of vault 2 is its configured label" "token label +: integ2\$" "$WORK/check.out"
AKV_PKCS11_CONFIG="$WORK/module.json" check "pkcs11-tool --token-label integ2 -O" \
  p11tool_m --token-label integ2 -O
check_grep "--token-label integ2 selects the second vault" "label: +other-ec\$" "$WORK/check.out"

finish
