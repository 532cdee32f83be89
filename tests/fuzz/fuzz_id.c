/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_parse_id, which splits the object ids a vault returns ("kid", "id" of list
 * items and bundles, "sid", nextLink-free ids) into name and version. The first input byte picks
 * the collection; the rest is the id. */
#include "fuzz_common.h"

#include "kv/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const collections[] = {"keys", "secrets", "certificates"};
  char *id, *name = (char *)1, *version = (char *)1;
  kv_rc rc;
  if (size < 1)
    return 0;
  id = fuzz_cstr(data + 1, size - 1);
  if (!id)
    return 0;
  rc = kv_parse_id(id, collections[data[0] % 3], &name, &version);
  if (rc == KV_OK) {
    if (!name || !kv_valid_name(name) || !strstr(id, name))
      abort(); /* a name from the id that passes the Key Vault name rules */
    if (version && (!kv_valid_version(version) || !strstr(id, version)))
      abort();
  } else if (name || version) {
    abort(); /* failure hands out nothing */
  }
  free(name);
  free(version);
  free(id);
  return 0;
}
