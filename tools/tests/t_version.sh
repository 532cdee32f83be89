#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The version is written once, as meson.build's project version (CONTRIBUTING.md "Releases"), and
# every place that shows it agrees: debian/changelog's top entry (dpkg needs the literal, so it is
# the one copy, checked here), `akv-p11 --version`, CK_INFO.libraryVersion through `pkcs11-tool -I`,
# every token's firmware version through `pkcs11-tool -L` against the emulator, and the User-Agent
# compiled into the module. (The audit lines' producer field: tests/audit/t_audit.sh.)
# Inputs: AKV_VERSION (meson.project_version()), AKV_SOURCE_ROOT, AKV_MODULE, AKV_P11,
# AKV_EMULATOR, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool pkcs11-tool jq
need_module
V=${AKV_VERSION:?AKV_VERSION is not set}
SRC=${AKV_SOURCE_ROOT:?}
MAJOR_MINOR=$(printf '%s' "$V" | cut -d. -f1,2)

section "meson.build and debian/changelog"
check "meson's version is MAJOR.MINOR.PATCH" grep -Eqx '[0-9]+\.[0-9]+\.[0-9]+' <<<"$V"
# The first line of debian/changelog: "akv-pkcs11 (VERSION) DIST; urgency=...".
CHANGELOG_V=$(sed -n '1s/^akv-pkcs11 (\([^)]*\)).*/\1/p' "$SRC/debian/changelog")
check_eq "debian/changelog's top entry is meson.build's version" "$V" "$CHANGELOG_V"
if command -v dpkg-parsechangelog >/dev/null; then
  check_eq "dpkg-parsechangelog reads the same version" "$V" \
    "$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)"
fi
check_grep "NEWS.md has a section for this version" "^## $(printf '%s' "$V" | sed 's/\./\\./g')( |\$)" \
  "$SRC/NEWS.md"

section "the binaries report it"
check "akv-p11 --version" "${AKV_P11:?}" --version
check_eq "akv-p11 --version prints the project version" "akv-p11 $V" "$(cat "$WORK/check.out")"
check "the module's User-Agent carries the version" grep -qaF "akv-pkcs11/$V" "$AKV_MODULE"

emu_start --vault verv1 --vault verv2
check "pkcs11-tool -I" p11tool_m -I
check_grep "CK_INFO.libraryVersion is meson's major.minor" \
  "^Library +Azure Key Vault PKCS#11 module \\(ver ${MAJOR_MINOR//./\\.}\\)\$" "$WORK/check.out"
check "pkcs11-tool -L" p11tool_m -L
cp "$WORK/check.out" "$WORK/L.out"
check_eq "two slots are listed" 2 "$(grep -c '^Slot [0-9]' "$WORK/L.out")"
check_eq "every token's firmware version is meson's major.minor" "$MAJOR_MINOR $MAJOR_MINOR" \
  "$(sed -n 's/^ *firmware version *: *//p' "$WORK/L.out" | tr '\n' ' ' | sed 's/ $//')"

finish
