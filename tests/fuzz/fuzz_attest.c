/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_attestation_from_json then kv_attestation_verify (src/kv/attest.c): the
 * KeyBundle with attributes.attestation, base64url members, the PEM certificate list, the chain
 * check and, behind a valid chain (the seeds come from the emulator), the blob parser and its
 * signature check. Verification must hand out references exactly on success. */
#include "fuzz_common.h"

#include "kv/kv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  kv_rc rc = kv_attestation_from_json((const char *)data, size, &a);
  if ((rc == KV_OK) != (a != NULL))
    abort(); /* success yields an attestation, failure none */
  if (a) {
    rc = kv_attestation_verify(a, NULL, NULL, NULL, &res);
    if ((rc == KV_OK) != (res.signer != NULL))
      abort();
    kv_attest_result_clear(&res);
  }
  kv_attestation_free(a);
  return 0;
}
