#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The release tarball (CONTRIBUTING.md "Releases"): `meson dist --no-tests` makes
# akv-pkcs11-VERSION.tar.xz from the committed HEAD (uncommitted changes in the working tree are
# left out, as in any release, so the test does not depend on them); the tarball holds every file of
# HEAD and nothing else (no .git, build directory or node_modules), and it is enough on its own: it
# is extracted in a temporary directory, configured with the default options, built, and its unit
# suite passes; the akv-p11 it built reports meson.build's version; scripts/spdx.sh, run there
# without git, finds the same source files (and no build output). About 1 minute on 2 cores.
# Needs a git checkout (meson dist archives a commit): skipped (77) in an unpacked tarball.
# Inputs: AKV_BUILD_ROOT, AKV_SOURCE_ROOT, AKV_VERSION, INTEG_LIB.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

need_tool meson ninja git tar xz sha256sum
BUILD=${AKV_BUILD_ROOT:?}
SRC=${AKV_SOURCE_ROOT:?}
V=${AKV_VERSION:?}
git -C "$SRC" rev-parse --verify -q HEAD >/dev/null 2>&1 ||
  skip "$SRC is not a git checkout with a commit: meson dist archives a commit"

section "meson dist --no-tests"
NAME="akv-pkcs11-$V"
TARBALL="$BUILD/meson-dist/$NAME.tar.xz"
rm -f "$TARBALL" "$TARBALL.sha256sum"
check "meson dist --no-tests --allow-dirty" timeout 300 meson dist -C "$BUILD" --no-tests --allow-dirty \
  --formats xztar
check "the tarball is $NAME.tar.xz" test -s "$TARBALL"
[ -s "$TARBALL" ] || finish
check "its checksum file verifies" bash -c "cd '$BUILD/meson-dist' && sha256sum -c '$NAME.tar.xz.sha256sum'"

section "what the tarball holds"
tar -tJf "$TARBALL" | sed -n "s#^$NAME/##p" | grep -v '/$' | grep -v '^$' | LC_ALL=C sort >"$WORK/tar.list"
git -C "$SRC" ls-tree -r --name-only HEAD | LC_ALL=C sort >"$WORK/head.list"
check_eq "every entry is under $NAME/" "$(tar -tJf "$TARBALL" | wc -l)" \
  "$(tar -tJf "$TARBALL" | grep -c "^$NAME/")"
check "the tarball holds exactly the files of HEAD" diff -u "$WORK/head.list" "$WORK/tar.list"
for f in LICENSE README.md NEWS.md SECURITY.md CONTRIBUTING.md meson.build meson_options.txt \
  debian/changelog debian/copyright scripts/spdx.sh; do
  check_grep "it holds $f" "^${f//./\\.}\$" "$WORK/tar.list"
done
check_nogrep "no .git, build directory or node_modules" '(^|/)(\.git|node_modules)/|^build' "$WORK/tar.list"

section "the tarball builds and passes its unit suite on its own"
mkdir -p "$WORK/x"
check "extract" tar -xJf "$TARBALL" -C "$WORK/x"
T="$WORK/x/$NAME"
check "meson setup (default options)" timeout 300 meson setup "$T/_build" "$T"
check "ninja" timeout 900 ninja -C "$T/_build"
check "meson test --suite unit" timeout 600 meson test -C "$T/_build" --suite unit --num-processes 2 \
  --print-errorlogs
cp "$WORK/check.out" "$WORK/unit.out"
check_grep "the unit suite ran tests and none failed" '^Ok: +[1-9][0-9]*' "$WORK/unit.out"
check_grep "no unit test failed" '^Fail: +0 *$' "$WORK/unit.out"
# Outside git, scripts/spdx.sh finds the source files itself: the same list as from the tarball's
# file list, with the build directory inside the tree left out.
(cd "$T" && bash scripts/spdx.sh --list) >"$WORK/spdx-find.list" 2>&1 || true
(cd "$T" && xargs -d '\n' bash scripts/spdx.sh --list <"$WORK/tar.list") >"$WORK/spdx-args.list" 2>&1 || true
check "spdx.sh lists a tarball's source files (no git, build dir inside)" \
  bash -c "test -s '$WORK/spdx-find.list' && diff -u '$WORK/spdx-args.list' '$WORK/spdx-find.list'"
check "and they all carry the license line" bash -c "cd '$T' && bash scripts/spdx.sh --check"
check "the tarball's akv-p11 --version" "$T/_build/tools/akv-p11" --version
check_eq "it reports meson.build's version" "akv-p11 $V" "$(cat "$WORK/check.out")"

finish
