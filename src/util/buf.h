/* SPDX-License-Identifier: Apache-2.0 */
/* Growable byte buffer with a hard cap: network data never grows past what the caller allows. */
#ifndef AKV_UTIL_BUF_H
#define AKV_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct akv_buf {
  unsigned char *data; /* always NUL-terminated after a successful append (data[len] == 0) */
  size_t len;
  size_t alloc;
  size_t max; /* hard cap on len */
};

enum { AKV_BUF_OK = 0, AKV_BUF_NOMEM = -1, AKV_BUF_TOO_BIG = -2 };

void akv_buf_init(struct akv_buf *b, size_t max);
int akv_buf_append(struct akv_buf *b, const void *p, size_t n);
int akv_buf_append_str(struct akv_buf *b, const char *s);
int akv_buf_printf(struct akv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer (wiping the old bytes) but keeps the allocation and cap. */
void akv_buf_reset(struct akv_buf *b);
/* Returns the NUL-terminated contents (caller frees) and empties the buffer; NULL on ENOMEM. */
char *akv_buf_take(struct akv_buf *b);
/* Wipes (OPENSSL_cleanse) and frees the contents. */
void akv_buf_free(struct akv_buf *b);

#endif
