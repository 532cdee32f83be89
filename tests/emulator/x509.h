/* SPDX-License-Identifier: Apache-2.0 */
/* X.509, CSR and PKCS#12/PEM helpers of the emulator's certificate support.
 * Pure OpenSSL; no HTTP or JSON store knowledge beyond reading policy members. */
#ifndef EMU_X509_H
#define EMU_X509_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Key generation per certificate key_props: kty RSA/RSA-HSM (key_size 2048/3072/4096) or EC/EC-HSM
 * (crv P-256/P-384/P-521/P-256K). Returns NULL and a static message in *err on bad input. */
EVP_PKEY *x509_keygen_new(const char *kty, int key_size, const char *crv, const char **err);

/* Check x509_props (subject, sans, ekus, key_usage, validity_months) without building anything.
 * Returns 0 or -1 with a static message in *err. */
int x509_props_check(const cJSON *x509_props, const char **err);

/* Self-signed certificate for pkey from x509_props (already checked): notBefore = now - 10 min,
 * notAfter = now + validity_months (default 12). NULL on failure (message in *err). */
X509 *x509_selfsigned_new(EVP_PKEY *pkey, const cJSON *x509_props, const char **err);

/* DER PKCS#10 request for pkey with subject and extensions from x509_props. Caller frees *der
 * with OPENSSL_free. */
int x509_csr_der(EVP_PKEY *pkey, const cJSON *x509_props, unsigned char **der, size_t *len,
                 const char **err);

/* DER of a certificate (caller OPENSSL_free's *der). */
int x509_cert_der(X509 *cert, unsigned char **der, size_t *len);

/* base64url (no padding) of the SHA-1 of the DER certificate, into out (>= 28 bytes). */
int x509_thumbprint_b64url(X509 *cert, char *out, size_t outlen);

/* Unix time of notBefore / notAfter. */
int64_t x509_not_before(X509 *cert);
int64_t x509_not_after(X509 *cert);

/* Certificate secret values. pkey may be NULL (non-exportable: certificate only).
 * x509_pkcs12_b64_new: standard base64 of a PFX that opens with an empty password.
 * x509_pem_new: PKCS#8 key then leaf then chain, '\n' line ends. Both return malloc'd text that
 * holds key material: wipe with OPENSSL_cleanse before free. */
char *x509_pkcs12_b64_new(EVP_PKEY *pkey, X509 *leaf, STACK_OF(X509) * chain);
char *x509_pem_new(EVP_PKEY *pkey, X509 *leaf, STACK_OF(X509) * chain);

/* Parse an import value. PEM text (key + certificates in any order) or standard base64 PKCS#12
 * with an optional password. The leaf is the certificate matching the private key; the other
 * certificates go to *chain (never NULL on success). Returns 0 or -1 with a message in *err. */
int x509_parse_import(const char *value, const char *password, int is_pem, EVP_PKEY **pkey,
                      X509 **leaf, STACK_OF(X509) * *chain, const char **err);

/* Certificate from standard base64 DER (merge x5c entries). */
X509 *x509_from_b64_der(const char *b64, const char **err);

/* Does the certificate carry this public key? */
int x509_matches_key(X509 *cert, EVP_PKEY *pkey);

#endif
