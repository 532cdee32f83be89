/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_error_from_response (Key Vault {"error":{code,message,innererror}} and Entra
 * {"error":"...","error_description":"..."} bodies) for a spread of HTTP statuses. */
#include "fuzz_common.h"

#include "kv/error.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const long statuses[] = {0, 200, 204, 400, 401, 403, 404, 409, 429, 500, 503, 599, 302};
  long status;
  kv_rc rc;
  if (size < 1)
    return 0;
  /* The first byte picks the status; the rest is the body, passed with its exact length. */
  status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
  rc = kv_error_from_response(status, size > 1 ? (const char *)data + 1 : NULL, size - 1, "fuzz");
  if ((status >= 200 && status < 300) != (rc == KV_OK))
    abort(); /* only a 2xx maps to KV_OK, whatever the body says */
  if (rc != kv_status_rc(status))
    abort(); /* the body never changes the mapping of the status */
  return 0;
}
