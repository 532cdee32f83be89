#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `meson install --destdir`: every file meson plans to install lands under DESTDIR, the
# module in p11-kit's module directory with only the three PKCS#11 entry points exported, the
# module file (relative module path) in p11-kit's module config directory, akv-p11 in bindir, its
# man page in man1 citing the documents installed in DATADIR/doc/akv-pkcs11 (README.md, NEWS.md,
# SECURITY.md and docs/, their links between them intact), the vendor header in includedir. Needs no root.
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
# akv-p11(1) cites the docs by their installed paths, DATADIR/doc/akv-pkcs11/... (the build writes
# the page from tools/akv-p11.1 with that directory), and the installed documents' links between
# each other resolve in the installed tree.
DOCDIR=$(meson introspect "$BUILD" --buildoptions |
  jq -r '(map({(.name): .value}) | add) as $o | "\($o.prefix)/\($o.datadir)/doc/akv-pkcs11"')
MAN="$BUILD/tools/akv-p11.1"
check "the man page has no placeholder left" bash -c "! grep -n '@DOCDIR@' '$MAN'"
grep -o "$DOCDIR/[A-Za-z_./-]*\.md" "$MAN" | sort -u >"$WORK/cited.list"
check "the man page cites documents in $DOCDIR" test "$(wc -l <"$WORK/cited.list")" -ge 3
while read -r d; do
  check "the cited ${d#"$DOCDIR"/} is installed" test -s "$DEST$d"
done <"$WORK/cited.list"
for d in README.md NEWS.md SECURITY.md docs/config.md docs/design.md docs/troubleshooting.md; do
  check "$d is installed in $DOCDIR" test -s "$DEST$DOCDIR/$d"
done
# Relative links ([text](path.md#anchor), not URLs or in-page anchors) of every installed document.
dead=0 links=0
while IFS= read -r -d '' md; do
  while read -r target; do
    links=$((links + 1))
    [ -e "$(dirname "$md")/$target" ] || { echo "#   dead link in ${md#"$DEST"}: $target"; dead=1; }
  done < <(grep -o '\]([^)#: ]*\.md' "$md" | sed 's/^](//' | sort -u)
done < <(find "$DEST$DOCDIR" -name '*.md' -print0)
echo "# $links relative links checked in the installed documents"
check "the installed documents' links between them resolve" test "$dead" = 0 -a "$links" -gt 20
check_grep "the vendor header is installed" '/include/akv-pkcs11\.h$' "$WORK/installed.list"
check "the installed module exports only the three PKCS#11 entry points" \
  bash -c "test \"\$(nm -D --defined-only '$DEST$P11_MODULE_PATH/akv-pkcs11.so' | awk '{print \$3}' | grep -v '^_' | LC_ALL=C sort | tr '\n' ' ')\" = 'C_GetFunctionList C_GetInterface C_GetInterfaceList '"

finish
