#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds and runs the crypto unit tests against fake_crypto_model.c instead of the real model
# (for the crypto helper while the model is not linkable). Usage: fake_crypto_build.sh BUILDDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/build-crypto}
out=$build/standalone
mkdir -p "$out"
cflags="-std=gnu11 -g -O1 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
 -Wmissing-prototypes -Wno-unused-parameter -D_GNU_SOURCE -fsanitize=address,undefined \
 -I$top/src -I$top/include $(pkg-config --cflags p11-kit-1 cmocka openssl)"
srcs="$top/src/mech.c $top/src/op_sign.c $top/src/op_cipher.c $top/src/op_digest.c \
 $top/src/op_wrap.c $top/src/outbuf.c $top/src/util/log.c $here/fake_crypto_model.c"
libs="$(pkg-config --libs cmocka openssl) -lpthread"
rc=0
for t in ${TESTS:-mech outbuf op_sign op_cipher op_digest op_wrap}; do
  [ -f "$here/test_$t.c" ] || continue
  extra=""
  # Tests that do not include the fake backend still need its symbols here.
  if ! grep -q 'fake_crypto_kv.c' "$here/test_$t.c"; then
    timeout 120 ${CC:-cc} $cflags -Wno-unused-function -c -o "$out/fake_kv_$t.o" "$here/fake_crypto_kv.c"
    extra="$out/fake_kv_$t.o"
  fi
  timeout 120 ${CC:-cc} $cflags -o "$out/test_$t" "$here/test_$t.c" $srcs $extra $libs
  if timeout 120 "$out/test_$t"; then echo "PASS $t"; else echo "FAIL $t"; rc=1; fi
done
exit $rc
