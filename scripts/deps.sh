#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what building and testing akv-pkcs11 needs on Debian 12, when it is missing.
# As root it runs apt-get itself; otherwise it prints the command to run.
# usage: deps.sh          everything the tests need (packages, then the SDK tour's npm packages)
#        deps.sh --demo   only what scripts/demo.sh and README's "Try it yourself" use: the build,
#                         the emulator, pkcs11-tool, openssl with the libp11 engine, ssh-keygen
#                         (no npm, no network when nothing is missing)
set -euo pipefail

pkgs=(build-essential meson ninja-build pkg-config clang clang-format libclang-rt-14-dev debhelper dpkg-dev
      libssl-dev libcurl4-openssl-dev libcjson-dev libp11-kit-dev libcmocka-dev libmicrohttpd-dev
      openssl curl jq valgrind strace gdb python3 iproute2 procps xxd libcrypt-dev whois
      opensc p11-kit p11-kit-modules gnutls-bin libengine-pkcs11-openssl
      openssh-client openssh-server nodejs npm
      nginx openjdk-17-jdk-headless unzip git xz-utils osslsigncode sbsigntool systemd-boot-efi apache2 systemd openvpn gnupg gnupg-pkcs11-scd keyutils python3-pykcs11)

demo_pkgs=(build-essential meson ninja-build pkg-config libssl-dev libcurl4-openssl-dev libcjson-dev
           libcrypt-dev libp11-kit-dev libcmocka-dev libmicrohttpd-dev openssl curl jq iproute2
           opensc libengine-pkcs11-openssl openssh-client)
demo=0
case "${1:-}" in
  "") ;;
  --demo) demo=1; pkgs=("${demo_pkgs[@]}") ;;
  *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node/npm may come from another source than Debian's packages: accept working binaries.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# The SDK interop tour's npm packages (pinned by package-lock.json); the demo needs none.
[ "$demo" = 0 ] || exit 0
top=$(cd "$(dirname "$0")/.." && pwd)
# Their @azure packages need Node >= 20. Where the system's node is older (Debian 12 has 18), the
# Node 20 pinned in tests/node/package-lock.json (version and integrity, from the npm registry) is
# installed under tests/node/node_modules; tests/node/find-node.sh picks one or the other.
dirs=(tests/interop tests/bench)
if ! picked=$(sh "$top/tests/node/find-node.sh") || [ "$picked" != "$(command -v node)" ]; then
  dirs=(tests/node "${dirs[@]}")
fi
for d in "${dirs[@]}"; do
  # Also when package-lock.json changed since the last install (npm writes node_modules/.package-lock.json).
  if [ -f "$top/$d/package-lock.json" ] && { [ ! -d "$top/$d/node_modules" ] ||
    { [ "$d" = tests/node ] && ! sh "$top/$d/find-node.sh" >/dev/null; } ||
    [ "$top/$d/package-lock.json" -nt "$top/$d/node_modules/.package-lock.json" ]; }; then
    echo "deps: npm ci in $d" >&2
    (cd "$top/$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
# npm ci passes over an optional package it could not fetch or verify, so the result is checked here.
if ! picked=$(sh "$top/tests/node/find-node.sh"); then
  case $(uname -m) in
    x86_64 | aarch64)
      echo "deps: npm ci in tests/node installed no Node >= 20 (a download or integrity failure;" \
        "'npm ci --loglevel=verbose' in tests/node names it): $picked" >&2
      exit 1 ;;
    *)
      echo "deps: warning: tests/node pins Node 20 for x86_64 and aarch64 only, not $(uname -m);" \
        "the SDK tests (interop-sdk-tour, the benchmark's SDK rows) will skip: $picked" >&2 ;;
  esac
fi
