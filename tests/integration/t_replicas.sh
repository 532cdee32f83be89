#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Replica vaults (docs/reliability.md "Replica vaults"): one slot whose primary and replicas hold
# the same imported EC key. Checks: 4 processes x 100 signatures spread over the primary and a
# replica, each vault throttled by the emulator, all verify with at most 5 % of the requests
# throttled, and with pacing off every 429 is failed over and nothing is lost; a replica whose key
# of that name is other material is compared once and never used for it (one warning per
# process); akv-p11 doctor shows the replicas; a replica that lacks a key is not used for it; a
# replica stopped mid-run (its TCP path killed) or hanging loses no operation; every vault failing
# gives CKR_DEVICE_ERROR and one log line naming each vault's error. The audit file names the
# vault of every request.
. "$(dirname "$0")/lib.sh"
need_tool openssl jq curl python3
need_module
[ -x "${P11_REPLICA_CHECK:-}" ] || fail "P11_REPLICA_CHECK (the built p11_replica_check) is not set"

# Each vault takes 100 cryptographic operations per 2 s (docs/emulator.md "--quota"); the slot
# says so in its "quota", which paces the primary and each replica (docs/reliability.md "Pacing").
emu_start --vault prim --vault rep1 --vault rep2 --quota 100/2
PRIM=$EMU_VAULT_URL_0
REP1=$EMU_VAULT_URL_1
REP2=$EMU_VAULT_URL_2

# ec_jwk PEM: the private EC P-256 key as a JWK (x, y, d from openssl's text dump).
hex_b64url() { xxd -r -p | base64 -w0 | tr '+/' '-_' | tr -d '='; }
ec_jwk() {
  local txt priv pub
  txt=$(openssl pkey -in "$1" -text -noout) || return 1
  priv=$(awk '/^priv:/{f=1;next} /^pub:/{f=0} f' <<<"$txt" | tr -d ' :\n')
  pub=$(awk '/^pub:/{f=1;next} /^ASN1 OID/{f=0} f' <<<"$txt" | tr -d ' :\n')
  priv=${priv: -64}
  jq -cn --arg x "$(hex_b64url <<<"${pub:2:64}")" --arg y "$(hex_b64url <<<"${pub:66:64}")" \
    --arg d "$(hex_b64url <<<"$priv")" '{kty:"EC",crv:"P-256",x:$x,y:$y,d:$d,key_ops:["sign","verify"]}'
}
# import URL NAME JWK
import_key() { KV_URL=$1 kv_call PUT "/keys/$2" "$(jq -cn --argjson k "$3" '{key:$k}')" >/dev/null; }

for k in sig other only; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/$k.pem" 2>/dev/null ||
    fail "openssl genpkey"
  openssl pkey -in "$WORK/$k.pem" -pubout -out "$WORK/$k.pub.pem" || fail "openssl pkey -pubout"
done
SIG_JWK=$(ec_jwk "$WORK/sig.pem") || fail "JWK of sig"
OTHER_JWK=$(ec_jwk "$WORK/other.pem") || fail "JWK of other"
ONLY_JWK=$(ec_jwk "$WORK/only.pem") || fail "JWK of only"
# "sig": the same material on prim and rep1, other material under the same name on rep2.
import_key "$PRIM" sig "$SIG_JWK" || fail "import sig into prim"
import_key "$REP1" sig "$SIG_JWK" || fail "import sig into rep1"
import_key "$REP2" sig "$OTHER_JWK" || fail "import other material as sig into rep2"
# "only": on the primary alone (rep1 and rep2 lack it).
import_key "$PRIM" only "$ONLY_JWK" || fail "import only into prim"
check_eq "the replicas' versions of sig are their own" 3 \
  "$(for u in "$PRIM" "$REP1" "$REP2"; do KV_URL=$u kv_call GET /keys/sig | jq -r .key.kid; done |
    sed 's#.*/##' | sort -u | wc -l)"

# replica_config FILE REP1_URL [EXTRA_JSON]: one slot, primary prim, replicas REP1_URL and rep2.
replica_config() {
  jq -n --slurpfile r "$EMU_READY" --arg p "$PRIM" --arg r1 "$2" --arg r2 "$REP2" \
    --arg audit "$WORK/audit.log" --arg log "$WORK/module.log" --argjson x "${3:-{\}}" '
    ($r[0]) as $r | {
      ca_file: $r.ca_file, allowed_hosts: ["localhost"], cache_file: "",
      audit_file: $audit, log_file: $log,
      credential: {type: "client_secret", tenant_id: $r.tenant_id, client_id: $r.client_id,
                   client_secret: $r.client_secret, authority_host: $r.authority_host},
      slots: [({url: $p, label: "prim", objects: ["keys"], replicas: [$r1, $r2], quota: "100/2"} + $x)]
    }' >"$1"
  chmod 600 "$1"
}

# run_signers N COUNT TAG [LABEL [PUB]]: N processes of p11_replica_check in parallel.
run_signers() {
  local n=$1 count=$2 tag=$3 label=${4:-sig} pub=${5:-$WORK/sig.pub.pem} i pids=() rc=0
  for i in $(seq "$n"); do
    timeout 60 "$P11_REPLICA_CHECK" "$AKV_MODULE" "$label" "$pub" "$count" \
      >"$WORK/$tag.$i.out" 2>"$WORK/$tag.$i.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || rc=1
  done
  for i in $(seq "$n"); do
    grep -E '^(not ok|# signed=)' "$WORK/$tag.$i.out" | sed "s/^/#   $tag.$i| /"
    tail -n 5 "$WORK/$tag.$i.err" | sed "s/^/#   $tag.$i stderr| /"
  done
  return "$rc"
}

# audit_count VAULT OP NAME [STATUS]: audit lines of OP on key NAME served by VAULT.
audit_count() {
  jq -r --arg v "$1" --arg op "$2" --arg n "$3" --arg s "${4:-}" \
    'select(.vault == $v and .operation == $op and .name == $n and
            ($s == "" or (.http_status | tostring) == $s)) | 1' "$WORK/audit.log" 2>/dev/null | wc -l
}

section "4 processes x 100 signatures over a primary and a replica"
replica_config "$WORK/module.json" "$REP1"
export AKV_PKCS11_CONFIG="$WORK/module.json"
t0=$(date +%s%N)
check "400 signatures from 4 processes all verify" run_signers 4 100 bulk
log "4 x 100 signatures in $((($(date +%s%N) - t0) / 1000000)) ms"
signs_prim=$(audit_count "$PRIM" keys.sign sig 200)
signs_rep1=$(audit_count "$REP1" keys.sign sig 200)
signs_all=$(jq -r 'select(.operation == "keys.sign") | 1' "$WORK/audit.log" | wc -l)
throttled=$(jq -r 'select(.http_status == 429) | 1' "$WORK/audit.log" | wc -l)
emu_throttled=$(stats_json | jq -r '.throttled_total // 0')
log "served: prim $signs_prim, rep1 $signs_rep1; sign requests $signs_all, throttled $throttled (emulator: $emu_throttled)"
check_eq "every signature was served once (prim + rep1 = 400)" 400 $((signs_prim + signs_rep1))
check "the primary served some" test "$signs_prim" -gt 0
check "the replica rep1 served some" test "$signs_rep1" -gt 0
check "at most 5 % of the requests were throttled ($throttled of $signs_all)" \
  test $((throttled * 100)) -le $((signs_all * 5))
check_eq "rep2 (other material under the name sig) signed nothing" 0 "$(audit_count "$REP2" keys.sign sig)"
check "rep2's key was read for the comparison" test "$(audit_count "$REP2" keys.get sig)" -ge 1
check_grep "the difference is named in a warning" \
  "replica $REP2: key sig differs from the primary's \(EC public point x/y differs\)" "$WORK/module.log"
check "one warning per process at most" \
  test "$(grep -c "replica $REP2: key sig differs" "$WORK/module.log")" -le 4
check_nogrep "no operation failed" "every vault failed" "$WORK/module.log"

section "pacing off: the vaults' 429s are failed over, nothing is lost"
replica_config "$WORK/module-nopace.json" "$REP1" '{"pacing": false}'
export AKV_PKCS11_CONFIG="$WORK/module-nopace.json"
: >"$WORK/audit.log"
check "4 x 100 signatures verify with pacing off" run_signers 4 100 nopace
nopace_429=$(jq -r 'select(.operation == "keys.sign" and .http_status == 429) | 1' "$WORK/audit.log" | wc -l)
log "pacing off: $nopace_429 sign requests throttled, each followed by another vault or a later turn"
check_eq "every signature was served once" 400 \
  $(($(audit_count "$PRIM" keys.sign sig 200) + $(audit_count "$REP1" keys.sign sig 200)))
check "the vaults throttled (the failover path ran)" test "$nopace_429" -gt 0
export AKV_PKCS11_CONFIG="$WORK/module.json"

section "akv-p11 doctor shows the replicas and the comparison of each key"
if [ -x "${AKV_P11:-}" ]; then
  rc=0
  "$AKV_P11" doctor --json >"$WORK/doctor.json" 2>"$WORK/doctor.err" || rc=$?
  check_eq "doctor exits 1 (the replicas' keys are problems)" 1 "$rc"
  check_eq "rep1: reachable, sig the same, only missing" "reachable same missing" \
    "$(jq -r --arg u "$REP1" '.slots[0].replicas[] | select(.url == $u) |
      [.state, (.keys[] | select(.name == "sig") | .result), (.keys[] | select(.name == "only") | .result)] | join(" ")' \
      "$WORK/doctor.json")"
  check_eq "rep2: sig different, named" "different EC public point x/y differs" \
    "$(jq -r --arg u "$REP2" '.slots[0].replicas[] | select(.url == $u) | .keys[] | select(.name == "sig") |
      [.result, .difference] | join(" ")' "$WORK/doctor.json")"
  check_eq "problem codes" "REPLICA_KEY_DIFFERS REPLICA_KEY_MISSING REPLICA_KEY_MISSING" \
    "$(jq -r '[.problems[].code] | sort | join(" ")' "$WORK/doctor.json")"
  "$AKV_P11" doctor >"$WORK/doctor.txt" 2>/dev/null || true
  check_grep "text: rep1's line" "^  replica $REP1: reachable \(keys: 1 the same, 0 different, 1 missing\)" \
    "$WORK/doctor.txt"
  check_grep "text: rep2's different key" "^      key sig: different: EC public point x/y differs" "$WORK/doctor.txt"
fi

section "a key the replicas lack is served by the primary"
: >"$WORK/audit.log"
check "20 signatures with 'only' verify" run_signers 1 20 only only "$WORK/only.pub.pem"
check_eq "the primary served all 20" 20 "$(audit_count "$PRIM" keys.sign only 200)"
check_eq "no replica was asked to sign it" 0 \
  $(($(audit_count "$REP1" keys.sign only) + $(audit_count "$REP2" keys.sign only)))
check_grep "the missing key is named" "replica $REP1: key only: KV_E_NOT_FOUND when comparing" \
  "$WORK/module.log"

section "a replica stopped mid-run loses no operation"
REP1_PORT=${REP1##*:}
PROXY_PORT=$(free_port) || fail "no free port"
cat >"$WORK/fwd.py" <<'EOF'
# A TCP forwarder 127.0.0.1:LPORT -> 127.0.0.1:DPORT (the replica's path, killed mid-run); with a
# third argument S, the replies are held S seconds (a replica that hangs).
import socket, sys, threading, time
hold = float(sys.argv[3]) if len(sys.argv) > 3 else 0
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(64)
def pipe(a, b, delay):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            time.sleep(delay)
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = ls.accept()
    try:
        u = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5)
    except OSError:
        c.close()
        continue
    u.settimeout(None)
    threading.Thread(target=pipe, args=(c, u, 0), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c, hold), daemon=True).start()
EOF
python3 "$WORK/fwd.py" "$PROXY_PORT" "$REP1_PORT" &
FWD_PID=$!
bg_register "$FWD_PID"
wait_port "$PROXY_PORT" || fail "the forwarder does not listen"
REP1_VIA="https://localhost:$PROXY_PORT"
replica_config "$WORK/module-fwd.json" "$REP1_VIA"
export AKV_PKCS11_CONFIG="$WORK/module-fwd.json"
: >"$WORK/audit.log"
: >"$WORK/module.log"
run_signers 2 150 stop &
SIGNERS=$!
# Stop the replica's path once it has served some signatures (bounded: 20 s).
for i in $(seq 200); do
  [ "$(audit_count "$REP1_VIA" keys.sign sig 200)" -ge 10 ] && break
  sleep 0.1
done
kill -KILL "$FWD_PID" 2>/dev/null
log "replica path stopped after $(audit_count "$REP1_VIA" keys.sign sig 200) signatures on it"
rc=0
wait "$SIGNERS" || rc=$?
check_eq "300 signatures from 2 processes all verify although rep1 stopped" 0 "$rc"
check "rep1 served some before it stopped" test "$(audit_count "$REP1_VIA" keys.sign sig 200)" -ge 10
check "the primary took over" test "$(audit_count "$PRIM" keys.sign sig 200)" -gt 0
check_eq "every signature was served once" 300 \
  $(($(audit_count "$PRIM" keys.sign sig 200) + $(audit_count "$REP1_VIA" keys.sign sig 200)))

section "a replica that hangs: its attempts end at half the deadline, the primary serves"
SLOW_PORT=$(free_port) || fail "no free port"
python3 "$WORK/fwd.py" "$SLOW_PORT" "$REP1_PORT" 60 &
bg_register $!
wait_port "$SLOW_PORT" || fail "the slow forwarder does not listen"
SLOW_VIA="https://localhost:$SLOW_PORT"
replica_config "$WORK/module-slow.json" "$SLOW_VIA"
jq '.deadline_ms = 4000' "$WORK/module-slow.json" >"$WORK/m.tmp" &&
  mv "$WORK/m.tmp" "$WORK/module-slow.json" && chmod 600 "$WORK/module-slow.json"
export AKV_PKCS11_CONFIG="$WORK/module-slow.json"
: >"$WORK/audit.log"
t0=$(date +%s%N)
check "2 x 30 signatures verify although rep1 hangs" run_signers 2 30 slow
slow_ms=$((($(date +%s%N) - t0) / 1000000))
log "2 x 30 signatures with a hanging replica in $slow_ms ms"
check_eq "the primary served all 60" 60 "$(audit_count "$PRIM" keys.sign sig 200)"
check "each process waited on the hanging replica once at most (its attempts end after 2 s)" \
  test "$(jq -r --arg v "$SLOW_VIA" 'select(.vault == $v) | 1' "$WORK/audit.log" | wc -l)" -le 2
check "within 2 x 4 s plus the signing ($slow_ms ms)" test "$slow_ms" -lt 20000

section "every vault failing: CKR_DEVICE_ERROR and one line naming each vault's error"
replica_config "$WORK/module-fail.json" "$REP1" '{}'
jq '.deadline_ms = 3000 | .max_retries = 1' "$WORK/module-fail.json" >"$WORK/m.tmp" &&
  mv "$WORK/m.tmp" "$WORK/module-fail.json" && chmod 600 "$WORK/module-fail.json"
export AKV_PKCS11_CONFIG="$WORK/module-fail.json"
: >"$WORK/module.log"
# The helper lists and finds the key, then waits at the gate; every request after that gets 503.
mkdir -p "$WORK/gate"
P11_REPLICA_GATE="$WORK/gate" timeout 60 "$P11_REPLICA_CHECK" "$AKV_MODULE" sig "$WORK/sig.pub.pem" 1 \
  CKR_DEVICE_ERROR >"$WORK/fail.out" 2>&1 &
FAILER=$!
for i in $(seq 200); do
  [ -e "$WORK/gate/ready" ] && break
  sleep 0.1
done
curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST --data '503' "$EMU_CONTROL/faults" >/dev/null ||
  fail "setting faults"
touch "$WORK/gate/go"
rc=0
wait "$FAILER" || rc=$?
sed 's/^/#   fail| /' "$WORK/fail.out" | tail -n 8
curl -sS --fail --max-time 10 --cacert "$EMU_CA" -X POST --data '' "$EMU_CONTROL/faults" >/dev/null
check_eq "C_Sign fails with CKR_DEVICE_ERROR" 0 "$rc"
check_grep "the log line names each vault's error" \
  "keys.sign sig: every vault failed within the deadline: $PRIM: HTTP 503; $REP1: [^;]*503[^;]*; $REP2: [^;]+$" \
  "$WORK/module.log"

finish
