#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lifecycle (docs/lifecycle.md): certificate chains. Intermediate certificates carried in a vault
# certificate's secret (PEM and PKCS#12) appear as CKO_CERTIFICATE objects NAME-chain-N when the
# slot shows secrets, and not otherwise.
. "$(dirname "$0")/../integration/lib.sh"
need_tool pkcs11-tool openssl jq curl
need_module

emu_start --vault chn1
module_config "$WORK/cfg.json"                                  # keys, certificates, secrets
module_config "$WORK/cfg-nosec.json" '{"objects":["keys","certificates"]}'
export AKV_PKCS11_CONFIG="$WORK/cfg.json"

section "a root, an intermediate and a leaf (openssl)"
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
  -subj /CN=Lifecycle-Root -days 5 -addext basicConstraints=critical,CA:true 2>/dev/null || fail "root"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr \
  -subj /CN=Lifecycle-Intermediate 2>/dev/null || fail "int csr"
printf 'basicConstraints=critical,CA:true\n' >int.ext
openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 5 -extfile int.ext \
  -out int.pem 2>/dev/null || fail "int"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
  -subj /CN=lifecycle-leaf 2>/dev/null || fail "leaf csr"
openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 5 -out leaf.pem 2>/dev/null ||
  fail "leaf"
openssl pkcs8 -topk8 -nocrypt -in leaf.key -out leaf.p8 || fail "pkcs8"
cat leaf.p8 leaf.pem int.pem >bundle.pem
openssl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile int.pem -passout pass: -out bundle.p12 ||
  fail "pkcs12"
openssl x509 -in int.pem -outform DER -out int.der

import() { # name value contentType
  kv_call POST "/certificates/$1/import" "$(jq -cn --arg v "$2" --arg ct "$3" \
    '{value:$v, policy:{key_props:{exportable:true,kty:"EC",crv:"P-256",reuse_key:false},
      secret_props:{contentType:$ct}}}')" >/dev/null
}
check "import a PEM certificate with its chain" import chainpem "$(cat bundle.pem)" application/x-pem-file
check "import a PKCS#12 certificate with its chain" import chainpfx "$(base64 -w0 bundle.p12)" application/x-pkcs12

section "slot with secrets: the chain is visible"
p11tool_m -O >list.out 2>&1 || fail "-O"
for n in chainpem chainpfx; do
  check_grep "$n: the leaf certificate is listed" "label: +$n$" list.out
  check_grep "$n: the intermediate is listed as $n-chain-1" "label: +$n-chain-1$" list.out
  check_nogrep "$n: no second chain certificate (the leaf is not repeated)" "label: +$n-chain-2$" list.out
  check "$n: read the intermediate's DER" \
    p11tool_m --read-object --type cert --label "$n-chain-1" -o "$n-int.der"
  check_same_file "$n: it is the intermediate" int.der "$n-int.der"
done

section "slot without secrets: no chain"
AKV_PKCS11_CONFIG="$WORK/cfg-nosec.json" p11tool_m -O >nosec.out 2>&1 || fail "-O"
check_grep "the leaf is listed" "label: +chainpem$" nosec.out
check_nogrep "no chain object" "chain-1" nosec.out

finish
