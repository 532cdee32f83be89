/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the WWW-Authenticate Bearer challenge parser (kv_challenge_param), driven the way
 * the client's 401 handling uses it: authorization / authorization_uri, resource, scope (with
 * "/.default" stripped), then the resource check that decides whether a token may be sent. */
#include "fuzz_common.h"

#include "kv/client.h"
#include "util/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

/* A returned value is a C string shorter than 1024 bytes taken from hdr. */
static void check_value(const char *hdr, const char *v)
{
  if (!v)
    return;
  if (strlen(v) >= 1024 || !strstr(hdr, v))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const params[] = {
      "authorization", "authorization_uri", "resource", "scope", "claims", "error"};
  char *hdr = fuzz_cstr(data, size);
  char *resource = NULL;
  if (!hdr)
    return 0;
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    char *v = kv_challenge_param(hdr, params[i]);
    check_value(hdr, v);
    if (i == 2)
      resource = v;
    else if (i == 3 && !resource)
      resource = v;
    else
      free(v);
  }
  if (resource) {
    const char *domain = NULL;
    size_t rl = strlen(resource);
    if (rl > 9 && strcmp(resource + rl - 9, "/.default") == 0)
      resource[rl - 9] = '\0';
    if (akv_known_vault_resource(resource, &domain) && !domain)
      abort(); /* an accepted resource names the domain vault hosts must end in */
    free(resource);
  }
  free(hdr);
  return 0;
}
