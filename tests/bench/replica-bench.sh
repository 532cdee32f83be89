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
. "$(dirname "$0")/quota-lib.sh"
qb_args replica-bench "$@"
signer=$build/tests/integration/p11_replica_check
qb_need "$emu" "$module" "$signer"

qb_setup
qb_emulator prim rep1
prim=$(jq -r '.vaults[0].url' "$r") rep1=$(jq -r '.vaults[1].url' "$r")

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
