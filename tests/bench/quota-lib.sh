# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# What the quota benchmark rows share (tests/bench/pace-bench.sh, replica-bench.sh): their
# arguments, a private environment, the emulator under --quota and a bearer token for seeding.
# Sourced, never run; each function exits the script with a message naming $qb_name on failure.

# qb_args NAME ARGS...: parses --build DIR [--quota N/S] [--procs P] [--duration S] [--json FILE]
# into build quota procs duration json, and qn qs (the quota's count and window).
qb_args() {
  qb_name=$1
  shift
  build='' quota=100/2 procs=8 duration=20 json=''
  while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --quota) quota=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "usage: $qb_name.sh --build DIR [--quota N/S] [--procs P] [--duration S] [--json FILE]" >&2
       exit 2 ;;
    esac
  done
  [[ $quota =~ ^([0-9]+)/([0-9]+)$ ]] || { echo "$qb_name: --quota N/S" >&2; exit 2; }
  qn=${BASH_REMATCH[1]} qs=${BASH_REMATCH[2]}
  if [ "$procs" -lt 1 ] || [ "$procs" -gt 64 ] || [ "$duration" -lt 2 ] || [ "$duration" -gt 600 ]; then
    echo "$qb_name: --procs 1-64, --duration 2-600" >&2
    exit 2
  fi
  emu=$build/tests/emulator/akv-emulator module=$build/src/akv-pkcs11.so
}

# qb_need FILE...: each must have been built.
qb_need() {
  for f in "$@"; do
    [ -e "$f" ] || { echo "$qb_name: $f was not built" >&2; exit 2; }
  done
}

# qb_setup: a work directory removed at exit (with the emulator), and a private runtime directory
# (the pacers' shared files), home and keyring: nothing of the user's.
qb_setup() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/akv-$qb_name.XXXXXX")
  emu_pid=
  trap qb_cleanup EXIT
  export HOME=$work/home XDG_RUNTIME_DIR=$work/run XDG_CACHE_HOME=$work/home/.cache
  mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
  chmod 700 "$XDG_RUNTIME_DIR"
  if command -v keyctl >/dev/null 2>&1; then keyctl new_session >/dev/null 2>&1 || true; fi
  unset AKV_PKCS11_CONFIG AKV_PKCS11_VAULT_URL AKV_PKCS11_LOG_LEVEL AKV_PKCS11_DEBUG http_proxy \
    https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy 2>/dev/null || true
  export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9 AKV_PKCS11_AZ_PATH=/nonexistent/az
}
qb_cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
  rm -rf "$work"
}

# qb_emulator VAULT...: the emulator with those vaults under --quota $quota; sets r (its ready
# file), ca, stats, control, and writes $work/auth.hdr (a bearer token, mode 0600) for seeding.
qb_emulator() {
  local args=() v
  for v in "$@"; do args+=(--vault "$v"); done
  "$emu" --ready-file "$work/ready.json" --port-base 0 --state "$work/emu" "${args[@]}" \
    --quota "$quota" >"$work/emu.log" 2>&1 </dev/null &
  emu_pid=$!
  for _ in $(seq 200); do
    [ -s "$work/ready.json" ] && break
    sleep 0.1
  done
  [ -s "$work/ready.json" ] || { cat "$work/emu.log" >&2; echo "$qb_name: emulator not ready" >&2; exit 1; }
  r=$work/ready.json
  ca=$(jq -r .ca_file "$r") stats=$(jq -r .stats_url "$r") control=$(jq -r .control_url "$r")
  curl -sS --fail --max-time 30 --cacert "$ca" "$(jq -r .authority_host "$r")/$(jq -r .tenant_id "$r")/oauth2/v2.0/token" \
    --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$(jq -r .client_id "$r")" \
    --data-urlencode "client_secret=$(jq -r .client_secret "$r")" \
    --data-urlencode scope=https://vault.azure.net/.default |
    jq -r '"Authorization: Bearer " + .access_token' >"$work/auth.hdr"
  chmod 600 "$work/auth.hdr"
}
