#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `demo.sh --keep` (README.md, "Try it yourself"): the demo leaves the emulator and its
# configuration running and prints three lines; in a fresh environment (nothing but PATH and
# HOME), the first two and then every sh block of README's "Try it yourself" section run as a
# reader would type them (a signature made in the vault, verified by openssl; ssh-keygen -D lists
# the keys); the third line stops the emulator and removes its directory. `--stop` refuses a
# directory that --keep did not leave. README's build-dependency line is deps.sh --demo's list.
# Inputs: AKV_EMULATOR, AKV_MODULE, AKV_P11, AKV_SOURCE_ROOT, AKV_BUILD_ROOT, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool pkcs11-tool openssl jq curl ss ssh-keygen awk
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
SRC=${AKV_SOURCE_ROOT:?}
README="$SRC/README.md"

section "demo.sh --keep"
mkdir -p "$WORK/tmp" "$WORK/user"
rc=0
TMPDIR="$WORK/tmp" timeout 170 bash "$SRC/tests/integration/demo.sh" --keep "${AKV_BUILD_ROOT:?}" \
  >"$WORK/demo.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || tail -n 30 "$WORK/demo.out" | sed 's/^/#   | /'
check_eq "the demo ran to its end" 0 "$rc"
check_grep "it says what stays up" 'The emulator and the configuration stay up' "$WORK/demo.out"
# The three lines follow "Run these in your shell" and a blank line.
awk 'f == 2 && NF { print } /^Run these in your shell/ { f = 1; next } f == 1 && !NF { f = 2 }' \
  "$WORK/demo.out" | grep -v '^# work dir kept' >"$WORK/lines"
check_eq "three lines printed" 3 "$(wc -l <"$WORK/lines")"
L1=$(sed -n 1p "$WORK/lines")
L2=$(sed -n 2p "$WORK/lines")
L3=$(sed -n 3p "$WORK/lines")
printf '#   %s\n' "$L1" "$L2" "$L3"
check "line 1 exports the configuration, the module and akv-p11's directory" \
  grep -Eq '^export AKV_PKCS11_CONFIG=/[^ ]+\.json AKV_PKCS11_MODULE=/[^ ]+\.so PATH=/[^ ]+:\$PATH$' <<<"$L1"
check_eq "line 2 is pkcs11-tool on the module" 'pkcs11-tool --module "$AKV_PKCS11_MODULE" -O' "$L2"
check "line 3 is demo.sh --stop DIR" grep -Eq "^bash $SRC/scripts/demo.sh --stop /[^ ]+\$" <<<"$L3"
KEPT=${L3##* }
EMU=$(cat "$KEPT/emulator.pid" 2>/dev/null || true)
[[ "$EMU" =~ ^[0-9]+$ ]] && bg_register "$EMU" # stopped on exit if the stop line fails
check "the emulator is still running after the demo ended" kill -0 "${EMU:-0}"
CONF=$(sed -E 's/^export AKV_PKCS11_CONFIG=([^ ]+) .*/\1/' <<<"$L1")
check_eq "the configuration is there, mode 600" 600 "$(stat -c %a "$CONF" 2>&1)"

section "README.md \"Try it yourself\", in a fresh environment"
awk '/^## Try it yourself/ { s = 1; next } /^## / { s = 0 }
     s && /^```sh$/ { b = 1; next } s && /^```/ { b = 0 } s && b' "$README" >"$WORK/try.sh"
check "the section has a sh block that signs and verifies" grep -q 'openssl dgst -sha256 -verify' "$WORK/try.sh"
{
  echo 'set -euo pipefail'
  echo "$L1"
  echo "$L2"
  echo 'echo "### README block"'
  cat "$WORK/try.sh"
} >"$WORK/user.sh"
rc=0
(cd "$WORK/user" && env -i HOME="$WORK/user" PATH=/usr/local/bin:/usr/bin:/bin \
  timeout 120 bash "$WORK/user.sh") >"$WORK/user.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || tail -n 30 "$WORK/user.out" | sed 's/^/#   | /'
check_eq "the printed lines and the README block ran" 0 "$rc"
check_grep "pkcs11-tool -O lists the demo's RSA key" 'label: *demo-rsa' "$WORK/user.out"
check_grep "akv-p11 doctor: healthy" '^healthy' "$WORK/user.out"
check_grep "the signature verified" '^Verified OK$' "$WORK/user.out"
check_grep "ssh-keygen -D shows the RSA key" '^ssh-rsa .* demo-rsa$' "$WORK/user.out"
check_grep "ssh-keygen -D shows the EC key" '^ecdsa-sha2-nistp256 .* demo-ec$' "$WORK/user.out"
SECRET=$(jq -r .credential.client_secret "$CONF")
check_fails "the configuration shown has no client secret" grep -qF -- "$SECRET" "$WORK/user.out"

section "the third line stops it"
check "the stop line runs" env -i PATH=/usr/local/bin:/usr/bin:/bin timeout 30 bash -c "$L3"
check_grep "it stopped the emulator" "emulator $EMU stopped" "$WORK/check.out"
check_fails "the emulator is gone" kill -0 "$EMU"
check_fails "its directory is gone" test -e "$KEPT"

section "README's apt-get line is what deps.sh --demo installs"
# shellcheck disable=SC1090,SC1091,SC2154 # demo_pkgs comes from the sourced list
DEMO_PKGS=$(source <(sed -n '/^demo_pkgs=(/,/)/p' "$SRC/scripts/deps.sh") && printf '%s\n' "${demo_pkgs[@]}" | sort)
README_PKGS=$(awk '/^## Quick start with a real vault/ { s = 1 } s && /apt-get install/ { a = 1 }
  a { print; if (!/\\$/) exit }' "$README" | tr -d '\\' | tr ' ' '\n' |
  grep -vE '^(sudo|apt-get|install|-y|--no-install-recommends|)$' | sort)
check "deps.sh has a demo package list" test -n "$DEMO_PKGS"
check_eq "README's quick start installs exactly deps.sh --demo's packages" "$DEMO_PKGS" "$README_PKGS"

section "--stop refuses a directory --keep did not leave"
mkdir -p "$WORK/notkept"
echo keep >"$WORK/notkept/file"
check_fails "--stop on another directory fails" bash "$SRC/scripts/demo.sh" --stop "$WORK/notkept"
check_grep "and says why" 'not a directory left by demo.sh --keep' "$WORK/check.out"
check "and leaves it alone" test -f "$WORK/notkept/file"

finish
