/* SPDX-License-Identifier: Apache-2.0 */
/* The module's one UTF-8 validator (RFC 3629: no overlong forms, no surrogates, nothing beyond
 * U+10FFFF), src/util/utf8.c. */
#ifndef AKV_UTF8_H
#define AKV_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s, of which avail bytes may be read; 0 when
 * it is malformed or truncated. Its code point goes to *cp when cp is not NULL. */
size_t akv_utf8_seq_len(const unsigned char *s, size_t avail, unsigned *cp);

#endif
