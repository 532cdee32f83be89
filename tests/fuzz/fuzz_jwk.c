/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_key_from_json (KeyBundle or bare JWK: JSON parsing, base64url of n/e/x/y/d,
 * key type vs. parameter checks, EC point validation, building the public key). */
#include "fuzz_common.h"

#include "kv/kv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kv_key *k = NULL;
  /* Not NUL-terminated on purpose: the parser takes (json, len) and must not read past len
   * (ASan reports it since libFuzzer's buffer is exactly size bytes). */
  kv_rc rc = kv_key_from_json((const char *)data, size, &k);
  if (rc == KV_OK && !k)
    abort(); /* success must yield a key */
  if (rc != KV_OK && k)
    abort(); /* failure must not hand out a half-built key */
  kv_key_free(k);
  return 0;
}
