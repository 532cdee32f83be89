# SPDX-License-Identifier: Apache-2.0
# Shared helpers of the emulator's shell tests (sourced by bash scripts).
# emu_start EMULATOR [extra args...]   starts an instance (EMU_WRAPPER may prefix a command,
#                                       e.g. valgrind), waits for its ready file (bounded)
# emu_stop                              SIGTERM, bounded wait, returns the emulator's exit status
# req METHOD URL [BODY]                 authenticated vault request; sets $status and $body
# check NAME CONDITION...               records ok/not ok (TAP-style)

for tool in curl jq openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool is not installed" >&2
    exit 77
  fi
done

EMU_WORK=$(mktemp -d "${TMPDIR:-/tmp}/akv-emu-test.XXXXXX") || exit 99
EMU_PID=
TESTS=0
FAILED=0

emu_cleanup() {
  if [ -n "$EMU_PID" ] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill -KILL "$EMU_PID" 2>/dev/null
    wait "$EMU_PID" 2>/dev/null
  fi
  rm -rf "$EMU_WORK"
}
trap emu_cleanup EXIT

emu_start() {
  local exe=$1 timeout_s=${EMU_START_TIMEOUT:-60}
  shift
  rm -f "$EMU_WORK/ready.json"
  ${EMU_WRAPPER:-} "$exe" --ready-file "$EMU_WORK/ready.json" --state "$EMU_WORK/state" "$@" \
    >"$EMU_WORK/emu.log" 2>&1 &
  EMU_PID=$!
  local i=0
  while [ ! -s "$EMU_WORK/ready.json" ]; do
    if ! kill -0 "$EMU_PID" 2>/dev/null; then
      echo "emulator exited early:" >&2
      cat "$EMU_WORK/emu.log" >&2
      exit 99
    fi
    i=$((i + 1))
    if [ $i -gt $((timeout_s * 10)) ]; then
      echo "emulator not ready after ${timeout_s}s" >&2
      cat "$EMU_WORK/emu.log" >&2
      exit 99
    fi
    sleep 0.1
  done
  READY=$EMU_WORK/ready.json
  CA=$(jq -r .ca_file "$READY")
  AUTH=$(jq -r .authority_host "$READY")
  TENANT=$(jq -r .tenant_id "$READY")
  CLIENT_ID=$(jq -r .client_id "$READY")
  CLIENT_SECRET=$(jq -r .client_secret "$READY")
  VAULT=$(jq -r '[.vaults[] | select(.kind == "vault")][0].url // empty' "$READY")
  HSM=$(jq -r '[.vaults[] | select(.kind == "mhsm")][0].url // empty' "$READY")
  STATS=$(jq -r .stats_url "$READY")
  CONTROL=$(jq -r .control_url "$READY")
}

emu_stop() {
  local i=0 rc
  kill -TERM "$EMU_PID" 2>/dev/null
  while kill -0 "$EMU_PID" 2>/dev/null && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  wait "$EMU_PID"
  rc=$?
  EMU_PID=
  return $rc
}

# token SCOPE -> prints an access token (client secret flow)
token() {
  curl -sS --max-time 30 --cacert "$CA" "$AUTH/$TENANT/oauth2/v2.0/token" \
    --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret=$CLIENT_SECRET" --data-urlencode "scope=$1" | jq -r .access_token
}

# req METHOD URL [BODY]; uses $TOKEN unless NO_AUTH=1
req() {
  local method=$1 url=$2 data=${3:-}
  local args=(-sS --max-time 60 --cacert "$CA" -X "$method" -o "$EMU_WORK/body" -D "$EMU_WORK/headers"
    -w '%{http_code}')
  [ "${NO_AUTH:-0}" = 1 ] || args+=(-H "Authorization: Bearer $TOKEN")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
  status=$(curl "${args[@]}" "$url") || status=000
  body=$(cat "$EMU_WORK/body" 2>/dev/null)
}

check() {
  local name=$1
  shift
  TESTS=$((TESTS + 1))
  if "$@"; then
    echo "ok $TESTS - $name"
  else
    FAILED=$((FAILED + 1))
    echo "not ok $TESTS - $name"
    echo "#   status=${status:-} body=$(printf '%.400s' "${body:-}")"
  fi
}

# expect_error STATUS CODE: last response had that status and error.code
expect_error() {
  [ "$status" = "$1" ] && [ "$(printf '%s' "$body" | jq -r '.error.code' 2>/dev/null)" = "$2" ]
}

finish() {
  echo "1..$TESTS"
  echo "# $((TESTS - FAILED)) passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
unb64url() {
  local s
  s=$(tr -- '-_' '+/')
  case $((${#s} % 4)) in
    2) s="$s==" ;;
    3) s="$s=" ;;
  esac
  printf '%s' "$s" | openssl base64 -d -A
}
hex() { od -An -v -tx1 | tr -d ' \n'; }
