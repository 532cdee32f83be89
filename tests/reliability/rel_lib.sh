# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# rel_lib.sh - sourced by the reliability tests after tests/integration/lib.sh: program paths and
# the standard seed (an EC P-256 and an RSA 2048 key whose public keys are exported from the
# vault's JWK, independently of the module).
REL_BIN_DIR=${REL_BIN_DIR:-}
[ -n "$REL_BIN_DIR" ] || fail "REL_BIN_DIR is not set (run through meson or set it to build*/tests/reliability)"
REL_EC_LABEL=ec-p256
REL_RSA_LABEL=rsa2048
export REL_EC_LABEL REL_RSA_LABEL

# rel_seed: creates the two keys and writes their public keys to $WORK/{ec,rsa}.der.
rel_seed() {
  kv_create_ec "$REL_EC_LABEL" P-256 || fail "seeding $REL_EC_LABEL"
  kv_create_rsa "$REL_RSA_LABEL" 2048 || fail "seeding $REL_RSA_LABEL"
  kv_key_der "$REL_EC_LABEL" "$WORK/ec.der" || fail "exporting $REL_EC_LABEL"
  kv_key_der "$REL_RSA_LABEL" "$WORK/rsa.der" || fail "exporting $REL_RSA_LABEL"
  REL_EC_PUB="$WORK/ec.der"
  REL_RSA_PUB="$WORK/rsa.der"
  export REL_EC_PUB REL_RSA_PUB
}

# rel_prog NAME: path of a reliability test program.
rel_prog() {
  [ -x "$REL_BIN_DIR/$1" ] || fail "$REL_BIN_DIR/$1 is not built"
  echo "$REL_BIN_DIR/$1"
}

# rel_run_counted DESC PROG ARGS...: runs a C test program (its "ok N"/"not ok N" lines are shown)
# and counts it as one check of this script: passed when it exits 0.
rel_run_counted() {
  local desc=$1 rc=0
  shift
  "$@" || rc=$?
  _check_result "$rc" "$desc (exit $rc)"
}

# rel_setgid_pair PROG: copies PROG to $WORK/bin/plain and $WORK/bin/setgid, the second one setgid
# to a group the caller does not run as (nogroup when root, else a supplementary group), which the
# kernel starts with AT_SECURE set; skips, saying why, where such a copy cannot be made.
rel_setgid_pair() {
  local grp
  mkdir -p "$WORK/bin"
  cp "$1" "$WORK/bin/plain" && cp "$1" "$WORK/bin/setgid" || fail "copying $1"
  if [ "$(id -u)" = 0 ]; then
    grp=65534
  else
    grp=$(id -G | tr ' ' '\n' | grep -vx "$(id -g)" | head -n 1)
    [ -n "$grp" ] || skip "not root and no supplementary group: cannot make a setgid test program"
  fi
  chgrp "$grp" "$WORK/bin/setgid" 2>"$WORK/chgrp.err" && chmod 2755 "$WORK/bin/setgid" ||
    skip "cannot make a setgid copy (group $grp): $(head -n1 "$WORK/chgrp.err")"
  chmod 755 "$WORK/bin/plain"
}
