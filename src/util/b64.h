/* SPDX-License-Identifier: Apache-2.0 */
/* Base64 (standard, padded) and base64url (no padding), table-driven.
 * Decoding is strict: characters outside the alphabet, misplaced padding, whitespace and
 * non-canonical trailing bits are rejected. */
#ifndef AKV_UTIL_B64_H
#define AKV_UTIL_B64_H

#include <stddef.h>

/* Encoders return a NUL-terminated malloc'd string (NULL on ENOMEM / size overflow). */
char *akv_b64url_encode(const unsigned char *data, size_t len);
char *akv_b64_encode(const unsigned char *data, size_t len);
/* base64url of data into out (NUL-terminated, no allocation); returns the length without the
 * NUL, 0 when it does not fit in cap bytes (or data is empty). */
size_t akv_b64url_encode_to(const unsigned char *data, size_t len, char *out, size_t cap);

/* Decoders: 0 on success with *out malloc'd (at least 1 byte, even for empty input) and *out_len;
 * -1 on invalid input or ENOMEM. text_len may be (size_t)-1 for strlen(text). */
int akv_b64url_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len);
int akv_b64_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len);

#endif
