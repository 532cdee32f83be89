/* SPDX-License-Identifier: Apache-2.0 */
/* Token serial numbers (src/util/serial.h). */
#include <string.h>

#include <openssl/evp.h>

#include "util/serial.h"

int akv_vault_serial(OSSL_LIB_CTX *libctx, const char *url, char out[17])
{
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  size_t mdlen = 0, len = strlen(url);

  while (len && url[len - 1] == '/')
    len--;
  if (!EVP_Q_digest(libctx, "SHA256", NULL, url, len, md, &mdlen) || mdlen < 8) {
    out[0] = '\0';
    return -1;
  }
  for (size_t i = 0; i < 8; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  out[16] = '\0';
  return 0;
}
