/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_http_retry_after_ms, the Retry-After header of a 429/503 (delta seconds,
 * HTTP-date, or the "<n>ms" form of retry-after-ms), which decides how long a call sleeps. */
#include "fuzz_common.h"

#include "kv/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const int64_t clocks[] = {1700000000, 0, 4102444800, -1};
  char *value = fuzz_cstr(data, size);
  if (!value)
    return 0;
  for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
    long ms = kv_http_retry_after_ms(value, clocks[i]);
    /* -1 (unparsable) or a wait of at most one day, whatever the server says. */
    if (ms < -1 || ms > 86400000L)
      abort();
  }
  free(value);
  return 0;
}
