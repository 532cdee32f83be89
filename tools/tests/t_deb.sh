#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Packaging (docs/usage.md): the Debian source package (debian/) builds with `dpkg-buildpackage -us -uc -b` from a
# copy of the tree in a temporary directory (the repository stays clean); the .deb installs with
# `dpkg -i`, and through the INSTALLED module pkcs11-tool lists a fresh emulator's objects,
# `p11-kit list-modules` shows the installed module file and its token, a module file of our own
# passes the configuration with x-init-reserved, the p11-kit proxy sees the token, and the installed
# akv-p11 finds the installed module by default. The packages are removed (`dpkg -r`) at the end,
# also on failure. Needs root (dpkg -i); skipped (77) otherwise.
# Inputs: AKV_EMULATOR, AKV_SOURCE_ROOT, INTEG_LIB. The DESTDIR layout: t_install.sh.
# shellcheck source=../../tests/integration/lib.sh
source "${INTEG_LIB:?INTEG_LIB is not set}"

[ "$(id -u)" = 0 ] || skip "installing a .deb needs root (dpkg -i); run the package suite as root"
need_tool dpkg-buildpackage dh dpkg dpkg-deb dpkg-parsechangelog pkcs11-tool p11-kit jq tar
need_file /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
SRC=${AKV_SOURCE_ROOT:?}
INSTALLED_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so
XINIT_MODULE_FILE=/etc/pkcs11/modules/akv-deb-test.module
PKGS=(akv-pkcs11 akv-pkcs11-dev)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in "${PKGS[@]}"; do
  installed "$p" && fail "$p is installed already: this test installs and removes it; run 'dpkg -r $p' first"
done

# Removes what this test put on the system, then runs lib.sh's cleanup with the test's status.
WE_INSTALLED=0
MADE_MODULES_DIR=0
deb_cleanup() {
  local rc=$?
  set +e
  rm -f "$XINIT_MODULE_FILE"
  [ "$MADE_MODULES_DIR" = 1 ] && rmdir /etc/pkcs11/modules /etc/pkcs11 2>/dev/null
  if [ "$WE_INSTALLED" = 1 ]; then
    dpkg -r "${PKGS[@]}" >"$WORK/dpkg-r.log" 2>&1 || cat "$WORK/dpkg-r.log" >&2
  fi
  (exit "$rc")
  _cleanup
}
trap deb_cleanup EXIT

section "dpkg-buildpackage from a copy of the tree"
PKGDIR="$WORK/pkg"
TREE="$PKGDIR/akv-pkcs11-$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)"
mkdir -p "$TREE"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  # Tracked and new files, without what .gitignore excludes (build directories, node_modules).
  (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -xf - -C "$TREE"
else
  tar -C "$SRC" --exclude='./build*' --exclude='node_modules' --exclude='./.git' -cf - . | tar -xf - -C "$TREE"
fi
check "the copy has debian/ and meson.build" test -f "$TREE/debian/control" -a -f "$TREE/meson.build"
rc=0
# nocheck: the unit suite runs in the main test run already (debian/rules runs it otherwise); here
# a unit failure must not hide what the package test checks.
(cd "$TREE" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" timeout 1500 dpkg-buildpackage -us -uc -b) \
  >"$WORK/dpkg-buildpackage.log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  tail -n 40 "$WORK/dpkg-buildpackage.log" | sed 's/^/#   | /'
fi
check_eq "dpkg-buildpackage -us -uc -b succeeds" 0 "$rc"
DEB=$(find "$PKGDIR" -maxdepth 1 -name 'akv-pkcs11_*_amd64.deb' | head -n1)
DEVDEB=$(find "$PKGDIR" -maxdepth 1 -name 'akv-pkcs11-dev_*_all.deb' | head -n1)
check "the module package was built" test -f "$DEB"
check "the -dev package was built" test -f "$DEVDEB"
[ -f "$DEB" ] && [ -f "$DEVDEB" ] || { finish; }
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's#^\./#/#' >"$WORK/deb.list"
for f in "$INSTALLED_MODULE" /usr/share/p11-kit/modules/akv-pkcs11.module /usr/bin/akv-p11 \
  /usr/share/man/man1/akv-p11.1.gz /usr/share/doc/akv-pkcs11/copyright; do
  check_grep "the .deb holds $f" "^$f\$" "$WORK/deb.list"
done
for d in README NEWS SECURITY docs/usage docs/troubleshooting docs/config docs/mechanisms docs/design; do
  check_grep "the .deb holds $d.md" "^/usr/share/doc/akv-pkcs11/$d\.md\$" "$WORK/deb.list"
done
check_grep "the -dev package holds the header" '^\./usr/include/akv-pkcs11\.h$' \
  <(dpkg-deb -c "$DEVDEB" | awk '{print $6}')
for p in obj-x86_64-linux-gnu debian/.debhelper debian/akv-pkcs11 debian/files debian/debhelper-build-stamp; do
  check "the repository stays clean: no $p" test ! -e "$SRC/$p"
done

section "dpkg -i and the installed module against a fresh emulator"
rc=0
dpkg -i "$DEB" "$DEVDEB" >"$WORK/dpkg-i.log" 2>&1 || rc=$?
WE_INSTALLED=1
[ "$rc" = 0 ] || cat "$WORK/dpkg-i.log"
check_eq "dpkg -i installs both packages" 0 "$rc"
check "the module is installed at $INSTALLED_MODULE" test -f "$INSTALLED_MODULE"
emu_start --vault debvault
kv_create_rsa debkey 2048 || fail "seeding debkey"
kv_create_ec debec P-256 || fail "seeding debec"
check "pkcs11-tool --module $INSTALLED_MODULE -O" pkcs11-tool --module "$INSTALLED_MODULE" -O
cp "$WORK/check.out" "$WORK/O.out"
check_grep "-O lists the RSA key" '^ *label: +debkey$' "$WORK/O.out"
check_grep "-O lists the EC key" '^ *label: +debec$' "$WORK/O.out"
check_eq "-O lists exactly two private and two public keys" "2 2" \
  "$(grep -c '^Private Key Object' "$WORK/O.out") $(grep -c '^Public Key Object' "$WORK/O.out")"
check "p11-kit list-modules" p11-kit list-modules
cp "$WORK/check.out" "$WORK/list-modules.out"
# p11-kit 0.24 prints "NAME: MODULE-PATH-AS-CONFIGURED", then the module's tokens indented.
SERIAL=$(vault_serial "$EMU_VAULT_URL")
check_grep "list-modules shows the installed module file (relative module path)" \
  '^akv-pkcs11: akv-pkcs11\.so$' "$WORK/list-modules.out"
check "list-modules shows the vault's token under it" \
  awk -v s="$SERIAL" '/^akv-pkcs11: /{m=1; next} /^[^ \t]/{m=0} m && $1 == "serial-number:" && $2 == s {f=1}
    END{exit !f}' "$WORK/list-modules.out"
check "the installed akv-p11 finds the installed module by default: doctor" akv-p11 doctor
check_grep "doctor: healthy" '^healthy: no problems found$' "$WORK/check.out"
check "the installed akv-p11: uri debkey" akv-p11 uri debkey
check_grep "uri: the key's URI" ";serial=$SERIAL;.*;object=debkey;type=private\$" "$WORK/check.out"
check "man akv-p11 is found" man -w akv-p11
MANPAGE=$(man -w akv-p11 2>/dev/null || true)
zcat -f "$MANPAGE" 2>/dev/null | grep -o '/usr/share/doc/akv-pkcs11/[A-Za-z_./-]*\.md' | sort -u >"$WORK/man-cited.list"
check "the installed man page cites installed documents" test "$(wc -l <"$WORK/man-cited.list")" -ge 3
while read -r d; do
  check "the man page's $d exists" test -s "$d"
done <"$WORK/man-cited.list"

section "x-init-reserved in a module file of our own, and the p11-kit proxy"
module_config "$WORK/config.json"
# Only the module file's x-init-reserved points at the configuration from here on.
(
  unset AKV_PKCS11_VAULT_URL AKV_PKCS11_CA_FILE AKV_PKCS11_ALLOWED_HOSTS AZURE_TENANT_ID AZURE_CLIENT_ID \
    AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST
  [ -d /etc/pkcs11/modules ] || { install -d -m 755 /etc/pkcs11 /etc/pkcs11/modules && echo made >"$WORK/made-dir"; }
  printf 'module: akv-pkcs11.so\nx-init-reserved: %s\n' "$WORK/config.json" >"$XINIT_MODULE_FILE"
  p11-kit list-modules >"$WORK/xinit.out" 2>&1 || true
  pkcs11-tool --module /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so -L >"$WORK/proxy.out" 2>&1 || true
)
[ -e "$WORK/made-dir" ] && MADE_MODULES_DIR=1
check_grep "list-modules shows our module file" '^akv-deb-test: akv-pkcs11\.so$' "$WORK/xinit.out"
# The configuration file labels the token with the vault's name; the environment would say localhost.
check "its token comes from the x-init-reserved configuration" \
  awk '/^akv-deb-test: /{m=1; next} /^[^ \t]/{m=0} m && /^ *token: debvault$/{f=1} END{exit !f}' "$WORK/xinit.out"
check_grep "the p11-kit proxy shows the token" 'token label +: debvault' "$WORK/proxy.out"

section "dpkg -r"
rm -f "$XINIT_MODULE_FILE"
rc=0
dpkg -r "${PKGS[@]}" >"$WORK/dpkg-r.log" 2>&1 || rc=$?
[ "$rc" = 0 ] && WE_INSTALLED=0
check_eq "dpkg -r removes both packages" 0 "$rc"
check "the module is gone" test ! -e "$INSTALLED_MODULE"
check "the module file is gone" test ! -e /usr/share/p11-kit/modules/akv-pkcs11.module

finish
