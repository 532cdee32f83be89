/* SPDX-License-Identifier: Apache-2.0 */
/* A fake Key Vault backend for the model's unit tests: implements kv.h in memory with real RSA/EC
 * keys, self-signed certificates over them and secrets; counts calls and injects failures. */
#ifndef AKV_TEST_FAKE_KV_H
#define AKV_TEST_FAKE_KV_H

#include <openssl/evp.h>

#include "kv/kv.h"

#define FAKE_VAULT_URL "https://unit.vault.azure.net"

struct fake_kv_calls {
  int list_keys, list_versions, get_key, list_certs, get_cert, list_secrets, get_secret;
  int http_new, http_free, client_new, client_free, cred_new, cred_free;
};
extern struct fake_kv_calls fake_kv_calls;

/* Empties the vault, the counters and the failure. Keeps generated key pairs for speed. */
void fake_kv_reset(void);

/* Adds a version of a key (the latest is the last added). kty: KV_KTY_RSA/EC/OCT. key_ops:
 * enum kv_key_op bits. pair selects one of a few generated key pairs (same pair = same public
 * key). Returns the stored version's attributes for tweaking (enabled, nbf, exp, updated...). */
struct kv_attrs *fake_kv_add_key(const char *name, const char *version, enum kv_kty kty, int pair,
                                 unsigned key_ops);
/* n EC P-256 keys named prefix000000, prefix000001... (version "b1", key pair 0, sign and
 * verify, listed after the others), held as a count rather than entries: slots of tens of
 * thousands of keys (unit-snapshot). prefix: at most 15 characters. */
void fake_kv_add_bulk_keys(const char *prefix, size_t n);
/* A self-signed certificate (CN=name) over the public key of key pair (kty, pair). */
struct kv_attrs *fake_kv_add_cert(const char *name, enum kv_kty kty, int pair);
struct kv_attrs *fake_kv_add_secret(const char *name, const char *value, int managed);
/* Changes a stored secret's value (as a new version would). */
void fake_kv_set_secret(const char *name, const char *value);
void fake_kv_remove_key(const char *name);

/* Every list/get call fails with rc while it is not KV_OK. */
void fake_kv_fail(kv_rc rc);

/* The generated key pair (private), to check public material against. */
EVP_PKEY *fake_kv_pair(enum kv_kty kty, int pair);

#endif
