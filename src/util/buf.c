/* SPDX-License-Identifier: Apache-2.0 */
/* Growable buffer with a hard cap and overflow-checked sizes. */
#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void akv_buf_init(struct akv_buf *b, size_t max)
{
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
  b->max = max ? max : SIZE_MAX - 1;
}

/* Ensures room for n more bytes plus the terminating NUL. */
static int buf_reserve(struct akv_buf *b, size_t n)
{
  size_t need, cap;
  unsigned char *p;
  if (n > b->max || b->len > b->max - n)
    return AKV_BUF_TOO_BIG;
  need = b->len + n + 1; /* cannot overflow: len + n <= max < SIZE_MAX */
  if (need <= b->alloc)
    return AKV_BUF_OK;
  cap = b->alloc ? b->alloc : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max + 1)
    cap = b->max + 1;
  /* Grow by copy rather than realloc so that old bytes (possibly secrets) are wiped. */
  p = malloc(cap);
  if (!p)
    return AKV_BUF_NOMEM;
  if (b->data) {
    memcpy(p, b->data, b->len);
    OPENSSL_cleanse(b->data, b->alloc);
    free(b->data);
  }
  b->data = p;
  b->alloc = cap;
  return AKV_BUF_OK;
}

int akv_buf_append(struct akv_buf *b, const void *p, size_t n)
{
  int rc = buf_reserve(b, n);
  if (rc != AKV_BUF_OK)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
  return AKV_BUF_OK;
}

int akv_buf_append_str(struct akv_buf *b, const char *s)
{
  return akv_buf_append(b, s, strlen(s));
}

int akv_buf_printf(struct akv_buf *b, const char *fmt, ...)
{
  va_list ap;
  int n, rc;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return AKV_BUF_NOMEM;
  rc = buf_reserve(b, (size_t)n);
  if (rc != AKV_BUF_OK)
    return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return AKV_BUF_OK;
}

void akv_buf_reset(struct akv_buf *b)
{
  if (b->data) {
    OPENSSL_cleanse(b->data, b->alloc);
    b->data[0] = 0;
  }
  b->len = 0;
}

char *akv_buf_take(struct akv_buf *b)
{
  char *s;
  if (!b->data) {
    s = calloc(1, 1);
    return s;
  }
  s = (char *)b->data;
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
  return s;
}

void akv_buf_free(struct akv_buf *b)
{
  if (!b)
    return;
  if (b->data) {
    OPENSSL_cleanse(b->data, b->alloc);
    free(b->data);
  }
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
}
