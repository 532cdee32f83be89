/* SPDX-License-Identifier: Apache-2.0 */
/* The user PIN of a slot with "login": "required": checking it against the configured crypt(3)
 * string and the delay before answering a wrong one (docs/security.md "Login"). */
#ifndef AKV_PIN_H
#define AKV_PIN_H

#include <stddef.h>

/* The longest PIN the token takes (CK_TOKEN_INFO.ulMaxPinLen); a longer one never matches. */
#define AKV_PIN_MAX 256

/* Checks pin (len bytes, not NUL-terminated, NULL when len is 0) against hash with libxcrypt's
 * crypt_rn, comparing in constant time. Returns 1 on a match, 0 on a mismatch (also for a PIN with
 * a NUL byte or longer than AKV_PIN_MAX), -1 when hash cannot be used (logged). Copies of the PIN
 * and crypt's work area are wiped. */
int akv_pin_check(const char *hash, const unsigned char *pin, size_t len);

/* For "pin": "certificate_password": 1 when pin (as akv_pin_check takes it) opens the encrypted
 * private key of the PEM file at path, 0 when it does not, -1 when the file cannot be read or holds
 * no encrypted private key (logged). The key itself is not kept. */
int akv_pin_opens_key(const char *path, const unsigned char *pin, size_t len);

/* 1 when the PEM file at path holds an encrypted private key; 0 otherwise (logged). */
int akv_pin_key_file_encrypted(const char *path);

/* Milliseconds to wait before answering the failures-th consecutive wrong PIN: 0 for none, then
 * 250 doubling up to 4000. */
long akv_pin_delay_ms(unsigned failures);

#endif
