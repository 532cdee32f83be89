#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark row (3) of docs/performance.md "Replica vaults: goodput past one vault's quota": PROCS
# processes sign (ECDSA P-256, every signature verified with OpenSSL by p11_replica_check) against a
# slot whose primary and one replica hold the same imported key, each vault admitting N
# cryptographic operations per S seconds (emulator --quota N/S, the slot's quota "N/S"). Reports
# goodput / (2 x quota) (goal >= 0.9), the 429s per 1,000 requests and each vault's share (from the
# audit file), next to the same processes against the primary alone (goodput / quota), as JSON.
#
# usage: replica-bench.sh --build DIR [--quota N/S] [--procs P] [--duration SECONDS] [--json FILE]
# The build must hold the emulator, the module and tests/integration/p11_replica_check.
set -euo pipefail
build='' quota=100/2 procs=8 duration=20 json=''
while [ $# -gt 0 ]; do
  case $1 in
  --build) build=$2; shift 2 ;;
  --quota) quota=$2; shift 2 ;;
  --procs) procs=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --json) json=$2; shift 2 ;;
  *) echo "usage: replica-bench.sh --build DIR [--quota N/S] [--procs P] [--duration S] [--json FILE]" >&2
     exit 2 ;;
  esac
done
emu=$build/tests/emulator/akv-emulator module=$build/src/akv-pkcs11.so
signer=$build/tests/integration/p11_replica_check
for f in "$emu" "$module" "$signer"; do
  [ -e "$f" ] || { echo "replica-bench: $f was not built" >&2; exit 2; }
done
[[ $quota =~ ^([0-9]+)/([0-9]+)$ ]] || { echo "replica-bench: --quota N/S" >&2; exit 2; }
qn=${BASH_REMATCH[1]} qs=${BASH_REMATCH[2]}
if [ "$procs" -lt 1 ] || [ "$procs" -gt 64 ] || [ "$duration" -lt 2 ] || [ "$duration" -gt 600 ]; then
  echo "replica-bench: --procs 1-64, --duration 2-600" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/akv-replica-bench.XXXXXX")
emu_pid=
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# A private runtime directory (the pacers' shared files), home and keyring: nothing of the user's.
export HOME=$work/home XDG_RUNTIME_DIR=$work/run XDG_CACHE_HOME=$work/home/.cache
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
if command -v keyctl >/dev/null 2>&1; then keyctl new_session >/dev/null 2>&1 || true; fi
unset AKV_PKCS11_CONFIG AKV_PKCS11_VAULT_URL AKV_PKCS11_LOG_LEVEL AKV_PKCS11_DEBUG http_proxy \
  https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy 2>/dev/null || true
export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9 AKV_PKCS11_AZ_PATH=/nonexistent/az

"$emu" --ready-file "$work/ready.json" --port-base 0 --state "$work/emu" --vault prim --vault rep1 \
  --quota "$quota" >"$work/emu.log" 2>&1 </dev/null &
emu_pid=$!
for _ in $(seq 200); do
  [ -s "$work/ready.json" ] && break
  sleep 0.1
done
[ -s "$work/ready.json" ] || { cat "$work/emu.log" >&2; echo "replica-bench: emulator not ready" >&2; exit 1; }
r=$work/ready.json
ca=$(jq -r .ca_file "$r") stats=$(jq -r .stats_url "$r") control=$(jq -r .control_url "$r")
prim=$(jq -r '.vaults[0].url' "$r") rep1=$(jq -r '.vaults[1].url' "$r")
curl -sS --fail --max-time 30 --cacert "$ca" "$(jq -r .authority_host "$r")/$(jq -r .tenant_id "$r")/oauth2/v2.0/token" \
  --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$(jq -r .client_id "$r")" \
  --data-urlencode "client_secret=$(jq -r .client_secret "$r")" \
  --data-urlencode scope=https://vault.azure.net/.default |
  jq -r '"Authorization: Bearer " + .access_token' >"$work/auth.hdr"
chmod 600 "$work/auth.hdr"

# One EC P-256 key made here and imported into both vaults (each gives it its own version).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
b64u_hex() { xxd -r -p | base64 -w0 | tr '+/' '-_' | tr -d '='; }
dump=$(openssl pkey -in "$work/key.pem" -text -noout)
d=$(awk '/^priv:/{f=1;next} /^pub:/{f=0} f' <<<"$dump" | tr -d ' :\n')
q=$(awk '/^pub:/{f=1;next} /^ASN1 OID/{f=0} f' <<<"$dump" | tr -d ' :\n')
body=$(jq -cn --arg x "$(b64u_hex <<<"${q:2:64}")" --arg y "$(b64u_hex <<<"${q:66:64}")" \
  --arg d "$(b64u_hex <<<"${d: -64}")" '{key: {kty:"EC",crv:"P-256",x:$x,y:$y,d:$d,key_ops:["sign","verify"]}}')
for v in "$prim" "$rep1"; do
  curl -sS --fail --max-time 30 --cacert "$ca" -H "@$work/auth.hdr" -H 'Content-Type: application/json' \
    -X PUT "$v/keys/bench-ec?api-version=7.6" --data "$body" >/dev/null
done

config() { # FILE REPLICAS_JSON
  jq -n --slurpfile r "$r" --argjson reps "$2" --arg p "$prim" --arg audit "$work/audit.log" '($r[0]) as $r | {
    ca_file: $r.ca_file, allowed_hosts: ["localhost"], cache_file: "", audit_file: $audit,
    credential: {type: "client_secret", tenant_id: $r.tenant_id, client_id: $r.client_id,
                 client_secret: $r.client_secret, authority_host: $r.authority_host},
    slots: [{url: $p, label: "bench", objects: ["keys"], quota: "'"$quota"'", replicas: $reps}]}' >"$1"
  chmod 600 "$1"
}
config "$work/replica.json" "[\"$rep1\"]"
config "$work/single.json" "[]"

# run CONFIG VAULTS: prints "verified failed admitted throttled wall_ms prim_served rep1_served"
# (the emulator counts a throttled request in throttled_total only, not under keys.sign)
run() {
  local cfg=$1 nv=$2 i pids=() t0 t1 v=0 f=0 count a th vi nf
  # Enough signatures to keep NV vaults at their quota for about DURATION seconds.
  count=$(((qn * nv * duration / qs + procs - 1) / procs))
  curl -sS --fail --max-time 10 --cacert "$ca" -X POST "$control/stats/reset" >/dev/null
  rm -rf "$XDG_RUNTIME_DIR/akv-pkcs11" "$work/audit.log"
  t0=$(date +%s%N)
  for ((i = 1; i <= procs; i++)); do
    AKV_PKCS11_CONFIG=$cfg timeout $((duration * 10 + 60)) "$signer" "$module" bench-ec "$work/pub.pem" "$count" \
      >"$work/run.$i.out" 2>"$work/run.$i.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || true; done
  t1=$(date +%s%N)
  for ((i = 1; i <= procs; i++)); do
    vi=$(sed -n 's/^# signed=[0-9]* verified=\([0-9]*\) failed=\([0-9]*\)$/\1/p' "$work/run.$i.out")
    nf=$(sed -n 's/^# signed=[0-9]* verified=\([0-9]*\) failed=\([0-9]*\)$/\2/p' "$work/run.$i.out")
    v=$((v + ${vi:-0})) f=$((f + ${nf:-$count}))
  done
  a=$(curl -sS --fail --max-time 10 --cacert "$ca" "$stats" | jq -r '.by_operation["keys.sign"] // 0')
  th=$(curl -sS --fail --max-time 10 --cacert "$ca" "$stats" | jq -r '.throttled_total // 0')
  served() { jq -r --arg v "$1" 'select(.vault == $v and .operation == "keys.sign" and .outcome == "KV_OK") | 1' \
    "$work/audit.log" | wc -l; }
  echo "$v $f $a $th $(((t1 - t0) / 1000000)) $(served "$prim") $(served "$rep1")"
}

results=()
for mode in replica single; do
  nv=1
  [ "$mode" = replica ] && nv=2
  read -r v f a th ms sp sr < <(run "$work/$mode.json" "$nv")
  goodput=$(awk -v v="$v" -v ms="$ms" 'BEGIN { printf "%.2f", v / (ms / 1000) }')
  ratio=$(awk -v g="$goodput" -v n="$qn" -v s="$qs" -v k="$nv" 'BEGIN { printf "%.3f", g / (k * n / s) }')
  per1k=$(awk -v th="$th" -v a="$a" 'BEGIN { printf "%.1f", (a + th) ? th * 1000 / (a + th) : 0 }')
  printf '%-7s: %d processes under --quota %s per vault, %d vault(s): %d verified, %d failed, %d ms; goodput %s/s = %s of %d x quota; %d throttled of %d requests = %s per 1,000; served: primary %d, replica %d\n' \
    "$mode" "$procs" "$quota" "$nv" "$v" "$f" "$ms" "$goodput" "$ratio" "$nv" "$th" $((a + th)) "$per1k" "$sp" "$sr"
  results+=("$(jq -cn --arg mode "$mode" --argjson nv "$nv" --argjson v "$v" --argjson f "$f" --argjson a "$a" \
    --argjson th "$th" --argjson ms "$ms" --argjson g "$goodput" --argjson ra "$ratio" --argjson k "$per1k" \
    --argjson sp "$sp" --argjson sr "$sr" \
    '{mode: $mode, vaults: $nv, verified: $v, failed: $f, admitted: $a, throttled: $th, wall_ms: $ms,
      goodput_per_s: $g, goodput_over_quotas: $ra, throttled_per_1000: $k,
      served_primary: $sp, served_replica: $sr}')")
done
if [ -n "$json" ]; then
  printf '%s\n' "${results[@]}" | jq -s --arg q "$quota" --argjson p "$procs" --argjson d "$duration" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
    --arg cores "$(nproc)" --arg kernel "$(uname -r)" \
    '{row: "replicas", quota_per_vault: $q, processes: $p, duration_s: $d,
      machine: {cpu: $cpu, cores: ($cores | tonumber), kernel: $kernel}, runs: .}' >"$json"
  echo "replica-bench: wrote $json"
fi
