/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: akv_config_parse (the JSON configuration: slots, credentials, URLs, hosts,
 * numbers and their ranges). Environment variables that fill unset fields are cleared so that
 * only the input decides the result. */
#include "fuzz_common.h"

#include "util/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  static const char *const vars[] = {
      "AKV_PKCS11_CONFIG",
      "AKV_PKCS11_VAULT_URL",
      "AZURE_TENANT_ID",
      "AZURE_CLIENT_ID",
      "AZURE_CLIENT_SECRET",
      "AZURE_CLIENT_CERTIFICATE_PATH",
      "AZURE_FEDERATED_TOKEN_FILE",
      "AZURE_AUTHORITY_HOST",
      "IDENTITY_ENDPOINT",
      "IDENTITY_HEADER",
      "MSI_ENDPOINT",
  };
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    unsetenv(vars[i]);
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct akv_config *cfg = NULL;
  char err[256];
  char *json = fuzz_cstr(data, size);
  int r;
  if (!json)
    return 0;
  err[0] = '\0';
  r = akv_config_parse(json, "fuzz.json", &cfg, err, sizeof err);
  if (r == 0 && !cfg)
    abort(); /* success must yield a configuration */
  if (r != 0) {
    if (cfg)
      abort(); /* failure must not hand out a configuration */
    if (!err[0] || !memchr(err, '\0', sizeof err))
      abort(); /* every failure explains itself, NUL-terminated within errlen */
  }
  akv_config_free(cfg);
  free(json);
  return 0;
}
