# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Shared start of the key attestation tests (t_attest_objects.sh, t_attest_root.sh), sourced after
# lib.sh: attest_setup TOOL... checks the tools (pkcs11-tool, openssl, jq, curl and TOOL...), the
# module, akv-p11 and PyKCS11 (PY, PYCHECK: p11_attest_check.py), starts the emulator with one
# Managed HSM (hsm1; KV_SCOPE its scope) and creates the RSA-HSM 3072 key "signer" there.
attest_setup() {
  need_tool pkcs11-tool openssl jq curl "$@"
  need_module
  [ -x "${AKV_P11:-}" ] || fail "AKV_P11 '${AKV_P11:-}' is not an executable"
  PY=/usr/bin/python3
  "$PY" -c 'import PyKCS11' 2>/dev/null || skip "python3-pykcs11 is not installed (scripts/deps.sh)"
  # shellcheck disable=SC2034 # used by the test that sources this file
  PYCHECK="$(dirname "${BASH_SOURCE[0]}")/p11_attest_check.py"
  emu_start --vault hsm1:mhsm
  export KV_SCOPE=$KV_SCOPE_MHSM
  kv_call POST /keys/signer/create '{"kty":"RSA-HSM","key_size":3072}' >/dev/null || fail "creating signer"
}
