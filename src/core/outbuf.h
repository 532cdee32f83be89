/* SPDX-License-Identifier: Apache-2.0 */
/* Growable byte buffers for operation state (src/core/outbuf.c). */
#ifndef AKV_OUTBUF_H
#define AKV_OUTBUF_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

/* A growable byte buffer with a hard limit (inputs accumulated by *Update, cached results). */
struct akv_outbuf {
  unsigned char *data;
  size_t len, alloc;
};

/* Appends; CKR_DATA_LEN_RANGE when the total would pass limit, CKR_HOST_MEMORY. */
CK_RV akv_outbuf_append(struct akv_outbuf *b, const void *p, size_t n, size_t limit);
/* Replaces the contents with a copy of p (n may be 0). */
CK_RV akv_outbuf_set(struct akv_outbuf *b, const void *p, size_t n);
/* Wipes and frees the contents; the struct is reusable. */
void akv_outbuf_clear(struct akv_outbuf *b);

#endif
