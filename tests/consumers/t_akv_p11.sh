#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# akv-p11 right after the build (docs/usage.md "akv-p11", recipe akv-p11-build): run from the
# build tree without -m or AKV_PKCS11_MODULE it loads the build's module; a copy in a tree without
# the module says which paths it tried and how to choose.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_module
[ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
BUILD=$(cd "$(dirname "$AKV_P11")/.." && pwd)
[ "$BUILD/src/akv-pkcs11.so" -ef "$AKV_MODULE" ] || fail "the module is not BUILD/src/akv-pkcs11.so"
unset AKV_PKCS11_MODULE

consumer_vault
# shellcheck disable=SC2034 # (read by recipe, lib.sh)
RECIPE_SUBST=(build/ "$BUILD/")
section "akv-p11 doctor from the build tree (recipe akv-p11-build)"
run_recipe akv-p11-build "recipe akv-p11-build: build/tools/akv-p11 doctor without -m"
check_grep "doctor found the build's module and a healthy vault" '^healthy: no problems found$' \
  "$WORK/recipe-akv-p11-build.out"
check "akv-p11 list (no -m, no AKV_PKCS11_MODULE) lists the vault key" \
  env AKV_PKCS11_CONFIG="$RECIPE_CONFIG" "$AKV_P11" list
check_grep "(mykey is there)" 'mykey' "$WORK/check.out"

section "a copy outside a build tree"
mkdir -p "$WORK/elsewhere/tools"
cp "$AKV_P11" "$WORK/elsewhere/tools/akv-p11"
if [ -e /usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so ]; then
  log "the module is installed: the copy loads the installed module (not checked further)"
else
  check_fails "without a module it fails" env AKV_PKCS11_CONFIG="$RECIPE_CONFIG" "$WORK/elsewhere/tools/akv-p11" list
  cp "$WORK/check.out" "$WORK/nomodule.out"
  check "the message names the build-tree path it tried" \
    grep -qF "$WORK/elsewhere/src/akv-pkcs11.so (the build tree's) is not there" "$WORK/nomodule.out"
  check_grep "and the installed path" 'cannot load /usr/lib/x86_64-linux-gnu/pkcs11/akv-pkcs11.so' "$WORK/nomodule.out"
  check_grep "and how to choose" 'name it with -m PATH or AKV_PKCS11_MODULE=PATH' "$WORK/nomodule.out"
fi
check "-m still wins" env AKV_PKCS11_CONFIG="$RECIPE_CONFIG" "$WORK/elsewhere/tools/akv-p11" -m "$AKV_MODULE" list
finish
