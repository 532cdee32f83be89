/* SPDX-License-Identifier: Apache-2.0 */
/* The PKCS#11 output convention (length query, CKR_BUFFER_TOO_SMALL), written once, and the
 * bounded buffers operations accumulate input and keep results in. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/akv.h"
#include "core/outbuf.h"

CK_RV akv_outbuf_copy_out(const void *src, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  if (!out) {
    *out_len = len;
    return CKR_OK;
  }
  if (*out_len < len) {
    *out_len = len;
    return CKR_BUFFER_TOO_SMALL;
  }
  if (len)
    memcpy(out, src, len);
  *out_len = len;
  return CKR_OK;
}

/* Grows by copying into a fresh allocation so that the old bytes can be wiped (realloc could
 * leave plaintext behind in freed memory). */
static CK_RV reserve(struct akv_outbuf *b, size_t need)
{
  unsigned char *p;
  size_t alloc;
  if (need <= b->alloc)
    return CKR_OK;
  alloc = b->alloc ? b->alloc : 64;
  while (alloc < need)
    alloc = alloc > SIZE_MAX / 2 ? need : alloc * 2;
  p = malloc(alloc);
  if (!p)
    return CKR_HOST_MEMORY;
  if (b->len)
    memcpy(p, b->data, b->len);
  if (b->data) {
    OPENSSL_cleanse(b->data, b->alloc);
    free(b->data);
  }
  b->data = p;
  b->alloc = alloc;
  return CKR_OK;
}

CK_RV akv_outbuf_append(struct akv_outbuf *b, const void *p, size_t n, size_t limit)
{
  CK_RV rv;
  if (n == 0)
    return CKR_OK;
  if (n > limit || b->len > limit - n)
    return CKR_DATA_LEN_RANGE;
  rv = reserve(b, b->len + n);
  if (rv != CKR_OK)
    return rv;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return CKR_OK;
}

CK_RV akv_outbuf_set(struct akv_outbuf *b, const void *p, size_t n)
{
  b->len = 0;
  return akv_outbuf_append(b, p, n, SIZE_MAX);
}

void akv_outbuf_clear(struct akv_outbuf *b)
{
  if (b->data) {
    OPENSSL_cleanse(b->data, b->alloc);
    free(b->data);
  }
  b->data = NULL;
  b->len = b->alloc = 0;
}
