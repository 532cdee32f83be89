/* SPDX-License-Identifier: Apache-2.0 */
/* The token serial number of a vault (src/util/serial.c): the module's slots and the akv-p11 CLI
 * compute it the same way. */
#ifndef AKV_SERIAL_H
#define AKV_SERIAL_H

#include <openssl/types.h>

/* The first 16 hex digits of SHA-256 of the vault URL without trailing '/', NUL-terminated:
 * unique and stable, so `serial=` PKCS#11 URIs keep working. libctx NULL = OpenSSL's default.
 * 0, or -1 (out "") when the digest fails. */
int akv_vault_serial(OSSL_LIB_CTX *libctx, const char *url, char out[17]);

#endif
