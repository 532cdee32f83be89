#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark row (2) of docs/performance.md "Pacing under the vault's quota": PROCS processes sign
# (ECDSA P-256, each signature verified with OpenSSL) against one vault whose emulator admits N
# cryptographic operations per S seconds (--quota N/S), with the module's pacing on (the slot's
# quota "N/S") and off ("pacing": false). Reports goodput / quota (goal >= 0.95 with pacing) and the
# 429s per 1,000 requests (goal <= 10), and writes them as JSON.
#
# usage: pace-bench.sh --build DIR [--quota N/S] [--procs P] [--duration SECONDS] [--json FILE]
# The build must hold the emulator, the module and tests/integration/p11_pace_check.
set -euo pipefail
. "$(dirname "$0")/quota-lib.sh"
qb_args pace-bench "$@"
check=$build/tests/integration/p11_pace_check
qb_need "$emu" "$module" "$check"
# Enough signatures per process to keep the vault at its quota for about DURATION seconds.
count=$(((qn * duration / qs + procs - 1) / procs))

qb_setup
qb_emulator pace
vault=$(jq -r '.vaults[0].url' "$r")
jwk=$(curl -sS --fail --max-time 30 --cacert "$ca" -H "@$work/auth.hdr" -H 'Content-Type: application/json' \
  -X POST "$vault/keys/pace-ec/create?api-version=7.6" --data '{"kty":"EC","crv":"P-256"}' | jq -c .key)
# The public key as DER SPKI from the JWK (not from the module): 0x04 || x || y under P-256's OID.
b64u() { local s; s=$(tr -- '-_' '+/'); while [ $((${#s} % 4)) != 0 ]; do s="$s="; done; printf '%s' "$s" | base64 -d; }
{
  printf '\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00\x04'
  jq -r .x <<<"$jwk" | b64u
  jq -r .y <<<"$jwk" | b64u
} >"$work/pub.der"
openssl pkey -pubin -inform DER -in "$work/pub.der" -noout 2>/dev/null ||
  { echo "pace-bench: could not build the public key" >&2; exit 1; }

config() { # FILE SLOT_EXTRA
  jq -n --slurpfile r "$r" --argjson se "$2" '($r[0]) as $r | {
    ca_file: $r.ca_file, allowed_hosts: ["localhost"], cache_file: "",
    credential: {type: "client_secret", tenant_id: $r.tenant_id, client_id: $r.client_id,
                 client_secret: $r.client_secret, authority_host: $r.authority_host},
    slots: [{url: $r.vaults[0].url, label: "pace", objects: ["keys"]} + $se]}' >"$1"
  chmod 600 "$1"
}
config "$work/on.json" "{\"quota\":\"$quota\"}"
config "$work/off.json" "{\"quota\":\"$quota\",\"pacing\":false}"

# run TAG CONFIG: prints "verified failed admitted throttled wall_ms"
run() {
  local tag=$1 cfg=$2 i pids=() t0 t1 v=0 f=0 a th vi fl
  curl -sS --fail --max-time 10 --cacert "$ca" -X POST "$control/stats/reset" >/dev/null
  rm -rf "$XDG_RUNTIME_DIR/akv-pkcs11"
  t0=$(date +%s%N)
  for ((i = 1; i <= procs; i++)); do
    AKV_PKCS11_CONFIG=$cfg timeout $((duration * 10 + 60)) "$check" "$module" pace-ec "$count" "$work/pub.der" \
      >"$work/$tag.$i.out" 2>"$work/$tag.$i.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || true; done
  t1=$(date +%s%N)
  for ((i = 1; i <= procs; i++)); do
    read -r _ _ _ vi _ fl _ <"$work/$tag.$i.out" || { vi=0; fl=$count; }
    v=$((v + vi)) f=$((f + fl))
  done
  a=$(curl -sS --fail --max-time 10 --cacert "$ca" "$stats" | jq -r '.by_operation["keys.sign"] // 0')
  th=$(curl -sS --fail --max-time 10 --cacert "$ca" "$stats" | jq -r .throttled_total)
  echo "$v $f $a $th $(((t1 - t0) / 1000000))"
}

results=()
for mode in on off; do
  read -r v f a th ms < <(run "$mode" "$work/$mode.json")
  goodput=$(awk -v v="$v" -v ms="$ms" 'BEGIN { printf "%.2f", v / (ms / 1000) }')
  ratio=$(awk -v g="$goodput" -v n="$qn" -v s="$qs" 'BEGIN { printf "%.3f", g / (n / s) }')
  per1k=$(awk -v th="$th" -v a="$a" 'BEGIN { printf "%.1f", (a + th) ? th * 1000 / (a + th) : 0 }')
  printf 'pacing %-3s: %d processes x %d signatures under --quota %s: %d verified, %d failed, %d ms; goodput %s/s = %s of the quota; %d throttled of %d requests = %s per 1,000\n' \
    "$mode" "$procs" "$count" "$quota" "$v" "$f" "$ms" "$goodput" "$ratio" "$th" $((a + th)) "$per1k"
  results+=("$(jq -cn --arg mode "$mode" --argjson v "$v" --argjson f "$f" --argjson a "$a" \
    --argjson th "$th" --argjson ms "$ms" --argjson g "$goodput" --argjson r "$ratio" --argjson k "$per1k" \
    '{pacing: $mode, verified: $v, failed: $f, admitted: $a, throttled: $th, wall_ms: $ms,
      goodput_per_s: $g, goodput_over_quota: $r, throttled_per_1000: $k}')")
done
if [ -n "$json" ]; then
  printf '%s\n' "${results[@]}" | jq -s --arg q "$quota" --argjson p "$procs" --argjson c "$count" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
    --arg cores "$(nproc)" --arg kernel "$(uname -r)" \
    '{row: "pacing", quota: $q, processes: $p, signatures_per_process: $c,
      machine: {cpu: $cpu, cores: ($cores | tonumber), kernel: $kernel}, runs: .}' >"$json"
  echo "pace-bench: wrote $json"
fi
