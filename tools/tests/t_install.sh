#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `meson install --destdir`: every file meson plans to install lands under DESTDIR, the
# module in p11-kit's module directory with only the three PKCS#11 entry points exported, the
# module file (relative module path) in p11-kit's module config directory, akv-p11 in bindir, its
# man page in man1 and the documents it cites in DATADIR/doc/akv-pkcs11, the vendor header in
# includedir. Needs no root.
# Inputs: AKV_BUILD_ROOT, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool meson jq nm pkg-config
BUILD=${AKV_BUILD_ROOT:?}

section "meson install --destdir"
DEST="$WORK/destdir"
check "meson install --destdir" meson install -C "$BUILD" --no-rebuild --destdir "$DEST"
meson introspect "$BUILD" --installed | jq -r '.[]' | LC_ALL=C sort >"$WORK/installed.list"
check "the install plan is not empty" test -s "$WORK/installed.list"
missing=0
while read -r f; do
  [ -e "$DEST$f" ] || { echo "#   not installed: $f"; missing=1; }
done <"$WORK/installed.list"
check_eq "every planned file is under DESTDIR" 0 "$missing"
P11_MODULE_PATH=$(pkg-config --variable p11_module_path p11-kit-1)
P11_CONFIGS=$(pkg-config --variable p11_module_configs p11-kit-1)
check "the module is in p11-kit's module directory" test -f "$DEST$P11_MODULE_PATH/akv-pkcs11.so"
check "the module file is in p11-kit's module config directory" test -f "$DEST$P11_CONFIGS/akv-pkcs11.module"
check_grep "the module file names the module by a relative path" '^module: akv-pkcs11\.so$' \
  "$DEST$P11_CONFIGS/akv-pkcs11.module"
check_grep "akv-p11 is installed to bindir" '/bin/akv-p11$' "$WORK/installed.list"
P11_BIN=$(grep '/bin/akv-p11$' "$WORK/installed.list" | head -n1)
check "the installed akv-p11 runs" "$DEST$P11_BIN" --version
check_grep "and reports the project version" "^akv-p11 $(meson introspect "$BUILD" --projectinfo | jq -r .version)\$" "$WORK/check.out"
check_grep "the man page is installed to man1" '/share/man/man1/akv-p11\.1$' "$WORK/installed.list"
# akv-p11(1) cites the docs as /usr/share/doc/akv-pkcs11/NAME (PREFIX/share/doc/... elsewhere).
DOCDIR=$(meson introspect "$BUILD" --buildoptions |
  jq -r '(map({(.name): .value}) | add) as $o | "\($o.prefix)/\($o.datadir)/doc/akv-pkcs11"')
grep -o '/usr/share/doc/akv-pkcs11/[A-Za-z_.-]*\.md' "$(dirname "$0")/../akv-p11.1" | sort -u >"$WORK/cited.list"
check "the man page cites documents in /usr/share/doc/akv-pkcs11" test "$(wc -l <"$WORK/cited.list")" -ge 3
while read -r d; do
  check "the cited $(basename "$d") is installed ($DOCDIR)" test -s "$DEST$DOCDIR/$(basename "$d")"
done <"$WORK/cited.list"
check_grep "the vendor header is installed" '/include/akv-pkcs11\.h$' "$WORK/installed.list"
check "the installed module exports only the three PKCS#11 entry points" \
  bash -c "test \"\$(nm -D --defined-only '$DEST$P11_MODULE_PATH/akv-pkcs11.so' | awk '{print \$3}' | grep -v '^_' | LC_ALL=C sort | tr '\n' ' ')\" = 'C_GetFunctionList C_GetInterface C_GetInterfaceList '"

finish
