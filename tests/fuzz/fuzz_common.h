/* SPDX-License-Identifier: Apache-2.0 */
/* Shared setup of the fuzz targets: logging goes to /dev/null at debug level, so every log
 * statement (and its format arguments) on the parsers' error paths is exercised without
 * flooding the fuzzer's output. */
#ifndef AKV_FUZZ_COMMON_H
#define AKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_log_init(void)
{
  unsetenv("AKV_PKCS11_DEBUG");
  unsetenv("AKV_PKCS11_LOG_LEVEL");
  akv_log_init(AKV_LOG_DEBUG, "/dev/null");
}

/* NUL-terminated copy of the input (the parsers under test take C strings); NULL on OOM. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  if (s) {
    if (size)
      memcpy(s, data, size);
    s[size] = '\0';
  }
  return s;
}

#endif
