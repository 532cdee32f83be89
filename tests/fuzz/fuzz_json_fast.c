/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_json_fast_str (src/kv/json.c), the strict scan that reads a sign reply's
 * "value" without building a cJSON tree. Differential oracle, its documented contract: whenever
 * the scan accepts, kv_json_parse must accept the same bytes and kv_json_str must give the same
 * string. The first input byte picks the member name; the rest is the reply, passed with its
 * exact length and no NUL. */
#include "fuzz_common.h"

#include "kv/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const names[] = {"value", "kid", "id"};
  const char *name, *val = NULL, *s = NULL;
  size_t len, val_len = 0;
  char *body;
  cJSON *doc;
  if (size < 1)
    return 0;
  name = names[data[0] % 3];
  len = size - 1;
  body = malloc(len ? len : 1);
  if (!body)
    return 0;
  memcpy(body, data + 1, len);
  if (kv_json_fast_str(body, len, name, &val, &val_len)) {
    if (!val || val < body || val_len > len || (size_t)(val - body) > len - val_len)
      abort(); /* the value points into the reply */
    doc = kv_json_parse(body, len, "fuzz");
    if (!doc)
      abort(); /* the scan accepted what the parser rejects */
    if (kv_json_str(doc, name, 1, SIZE_MAX, &s) != KV_OK || !s || strlen(s) != val_len ||
        memcmp(s, val, val_len) != 0)
      abort(); /* the scan read another string than the parser */
    cJSON_Delete(doc);
  }
  /* On 0 (not decided here) *val is not meaningful: the scan may have set it on the first
   * matching member before meeting an error further on, and the caller never reads it then. */
  free(body);
  return 0;
}
