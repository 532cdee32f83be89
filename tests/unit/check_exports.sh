#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks that the module's dynamic symbol table defines exactly the three PKCS#11 entry points
# (src/akv-pkcs11.map): any other exported symbol could shadow or be shadowed by a dependency's.
set -eu
mod=${1:?usage: check_exports.sh MODULE}
command -v nm >/dev/null 2>&1 || { echo "nm not found" >&2; exit 77; }
got=$(nm -D --defined-only "$mod" | awk '$2 ~ /^[TDBRVWiu]$/ { print $3 }' | sed 's/@.*//' | sort -u)
want=$(printf '%s\n' C_GetFunctionList C_GetInterface C_GetInterfaceList | sort)
if [ "$got" != "$want" ]; then
  echo "unexpected exports of $mod:" >&2
  echo "--- want" >&2; echo "$want" >&2
  echo "--- got" >&2; echo "$got" >&2
  exit 1
fi
echo "exports OK: $(echo $got)"
