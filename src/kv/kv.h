/* SPDX-License-Identifier: Apache-2.0 */
/* Key Vault backend: HTTP transport, credentials and the REST client. Shared contract between the
 * backend (src/kv, src/util) and the model (the .c files at the top of src/). Never includes
 * pkcs11.h; errors are kv_rc, translated to CK_RV in exactly one place (src/rv.c). All functions
 * are thread-safe unless noted. Every returned object is owned by the caller and released with
 * the matching _free. */
#ifndef AKV_KV_H
#define AKV_KV_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "util/config.h"

typedef enum {
  KV_OK = 0,
  KV_E_NOMEM,        /* allocation failed */
  KV_E_INVALID,      /* bad argument from our side (caller bug, bad name, bad config) */
  KV_E_NOT_FOUND,    /* 404 */
  KV_E_FORBIDDEN,    /* 403: missing permission, key_ops, disabled key, firewall */
  KV_E_UNAUTHORIZED, /* 401 after one token refresh */
  KV_E_AUTH,         /* no token: the credential has logged why (kv_rc_reported) */
  KV_E_BAD_REQUEST,  /* 400 from the service (bad alg, bad length...) */
  KV_E_CONFLICT,     /* 409 */
  KV_E_THROTTLED,    /* 429 after retries and deadline */
  KV_E_SERVER,       /* 5xx after retries and deadline */
  KV_E_NETWORK,      /* connection/TLS failure after retries */
  KV_E_TIMEOUT,      /* deadline exceeded */
  KV_E_PROTOCOL,     /* malformed, oversized or inconsistent response */
  KV_E_UNSUPPORTED,  /* operation the vault kind cannot do */
} kv_rc;

const char *kv_rc_str(kv_rc rc);

/* 1 when a failure with this code was already logged at error level where it arose (KV_E_AUTH:
 * the credential's line naming the source, the error and the fix): a caller's own line about it
 * goes at debug, so one failure is one line at the default level (docs/troubleshooting.md). */
static inline int kv_rc_reported(kv_rc rc)
{
  return rc == KV_E_AUTH;
}

/* ---- transport ---------------------------------------------------------------------------- */

struct kv_http;

struct kv_http_opts {
  const char *ca_file; /* NULL = system store */
  const char *proxy;   /* NULL = libcurl's environment handling */
  long connect_timeout_ms;
  long request_timeout_ms;
  long deadline_ms; /* per logical operation incl. retries */
  unsigned max_retries;
  long retry_base_ms;
  long retry_cap_ms;
  unsigned pool_size;
  size_t max_response_bytes;
  const char *const *allowed_hosts; /* extra hosts allowed besides Azure's vault domains */
  size_t n_allowed_hosts;
  const struct akv_config *pace_cfg; /* its slots' vaults are paced (kv/pace.h); NULL = none */
};

/* One per process (per C_Initialize): connection pool, share handle, TLS session cache. */
kv_rc kv_http_new(const struct kv_http_opts *opts, struct kv_http **out);
void kv_http_free(struct kv_http *http);

/* ---- credentials -------------------------------------------------------------------------- */

struct kv_cred;

/* Builds a credential (chain for AKV_CRED_AUTO) from config; no network I/O here. */
kv_rc kv_cred_new(struct kv_http *http, const struct akv_cred_config *cfg, struct kv_cred **out);
void kv_cred_free(struct kv_cred *cred);

/* Returns a bearer token for resource ("https://vault.azure.net" or
 * "https://managedhsm.azure.net"), from the cache unless force_refresh or it is within the
 * refresh-ahead window. Single flight: one caller refreshes, others wait. *token is a copy the
 * caller wipes and frees (kv_secure_free). */
kv_rc kv_cred_token(struct kv_cred *cred, const char *resource, const char *tenant_hint,
                    int force_refresh, char **token);

/* The same token without a copy: a counted reference to the cached token (kv/token.h:
 * kv_token_ref_str to read it, kv_token_ref_unref to drop it; wiped when the last one goes). For
 * the per-request path. */
struct kv_token_ref;
kv_rc kv_cred_token_ref(struct kv_cred *cred, const char *resource, const char *tenant_hint,
                        int force_refresh, struct kv_token_ref **token);

/* Human-readable description of the credential that last produced a token (for logs/doctor). */
const char *kv_cred_describe(const struct kv_cred *cred);

void kv_secure_free(void *p, size_t len); /* OPENSSL_cleanse + free; len 0 = strlen */

/* ---- vault client --------------------------------------------------------------------------- */

/* Every function here and below that makes a vault request takes a trailing long *http_status
 * (NULL = not wanted), set on every return to the final HTTP status of its last request: 0 when
 * no response arrived (network failure, timeout, an argument refused before sending); with
 * replica vaults, the last attempt's. The status travels with the call, nothing is kept per
 * thread (docs/design.md "Decisions"). */

struct kv_client;

struct kv_client_opts {
  const char *url; /* vault base URL, no trailing slash */
  const char *api_version;
  enum akv_vault_kind kind;
};

kv_rc kv_client_new(struct kv_http *http, struct kv_cred *cred, const struct kv_client_opts *opts,
                    struct kv_client **out);
void kv_client_free(struct kv_client *cl);

/* Who an access token says it is: claims of its JWT payload, read without checking the signature
 * (the token came from the identity provider over verified TLS, or from this user's kernel keyring:
 * src/kv/keyring.c); only the cache file's entries are keyed by them (docs/design.md "Decisions").
 * Each is "" when the token does not carry it in the expected form: a string of 1 to KV_CLAIM_MAX
 * characters of [0-9A-Za-z._-] (GUIDs). */
#define KV_CLAIM_MAX 64
struct kv_principal {
  char tid[KV_CLAIM_MAX + 1]; /* the tenant */
  char oid[KV_CLAIM_MAX + 1]; /* the user, service principal or managed identity */
  char app[KV_CLAIM_MAX + 1]; /* the client application: appid (v1 tokens), else azp (v2) */
};

/* The principal of the token cl sends to its vault. The token is had as the next request would
 * have it (the process's token cache, the shared copy in the kernel keyring, else the credential),
 * so a credential that produces none fails here with that request's error (KV_E_AUTH, logged).
 * KV_OK with tid or oid "" when the token does not name them. */
kv_rc kv_client_principal(struct kv_client *cl, struct kv_principal *out);

enum kv_kty { KV_KTY_RSA = 1, KV_KTY_EC, KV_KTY_OCT };
enum kv_crv { KV_CRV_NONE = 0, KV_CRV_P256, KV_CRV_P384, KV_CRV_P521, KV_CRV_P256K };

enum kv_key_op {
  KV_OP_ENCRYPT = 1u << 0,
  KV_OP_DECRYPT = 1u << 1,
  KV_OP_SIGN = 1u << 2,
  KV_OP_VERIFY = 1u << 3,
  KV_OP_WRAP = 1u << 4,
  KV_OP_UNWRAP = 1u << 5,
  KV_OP_IMPORT = 1u << 6,
  KV_OP_EXPORT = 1u << 7,
};

struct kv_tag {
  char *name;
  char *value;
};

/* Attributes common to keys, secrets and certificates. Times are Unix seconds, 0 = absent. */
struct kv_attrs {
  int enabled;
  int64_t nbf, exp, created, updated;
  int managed;    /* backs a certificate */
  int exportable; /* attributes.exportable: secure key release may hand the key out */
  struct kv_tag *tags;
  size_t n_tags;
};

/* One version of a key, public parts only (from GET key / create / import). */
struct kv_key {
  char *kid; /* full versioned id, as the service returned it */
  char *name;
  char *version;
  enum kv_kty kty;
  int hsm; /* -HSM kty */
  enum kv_crv crv;
  unsigned char *n, *e, *x, *y; /* big-endian, as decoded from base64url */
  size_t n_len, e_len, x_len, y_len;
  unsigned key_ops; /* enum kv_key_op bits */
  struct kv_attrs attrs;
};

/* A list entry (keys, secrets, certificates, or their versions). */
struct kv_item {
  char *id; /* as returned (base id, or versioned id for /versions) */
  char *name;
  char *version;      /* NULL for base ids */
  char *content_type; /* secrets only */
  char *x5t;          /* certificates only */
  struct kv_attrs attrs;
};

/* A listing's items, in the service's order, kept in blocks of KV_ITEM_BLOCK so that no allocation
 * grows with the vault (docs/performance.md "Memory per cached key", third pass): read item i with
 * kv_item_list_at. */
#define KV_ITEM_BLOCK 512
struct kv_item_list {
  struct kv_item **blocks; /* blocks[i / KV_ITEM_BLOCK][i % KV_ITEM_BLOCK] */
  size_t n;
};

static inline const struct kv_item *kv_item_list_at(const struct kv_item_list *l, size_t i)
{
  return &l->blocks[i / KV_ITEM_BLOCK][i % KV_ITEM_BLOCK];
}

/* Room for one more item at l->n, zeroed, a new block when the last is full; NULL when out of
 * memory. The caller counts it (l->n++) at once, even when filling it fails, so that
 * kv_item_list_free releases the block and what was filled. */
struct kv_item *kv_item_list_grow(struct kv_item_list *l);

struct kv_cert {
  char *id, *kid, *sid, *name, *version;
  unsigned char *der; /* the `cer` member */
  size_t der_len;
  struct kv_attrs attrs;
};

struct kv_secret {
  char *id, *name, *version, *content_type, *kid;
  unsigned char *value; /* raw value bytes (UTF-8 as stored); wiped on free */
  size_t value_len;
  struct kv_attrs attrs;
};

void kv_key_free(struct kv_key *k);
/* Copies k's strings, tags and material into data (cap bytes; the tag array first, so data must
 * be aligned for pointers) and points dst's members at them; dst may be NULL and data NULL to
 * measure. Returns the bytes needed. A key parsed from a reply (kv_key_from_bundle,
 * kv_key_from_json) is already packed this way, right after its struct. */
size_t kv_key_pack_into(const struct kv_key *k, struct kv_key *dst, unsigned char *data,
                        size_t cap);
void kv_cert_free(struct kv_cert *c);
void kv_secret_free(struct kv_secret *s);
void kv_item_list_free(struct kv_item_list *l); /* frees contents, not l itself */

/* Lists follow nextLink until done; a page cap protects against loops. */
kv_rc kv_list_keys(struct kv_client *cl, struct kv_item_list *out, long *http_status);
kv_rc kv_list_key_versions(struct kv_client *cl, const char *name, struct kv_item_list *out,
                           long *http_status);
/* The first page only (up to 25 versions, in the service's order): a bounded look at the versions.
 */
kv_rc kv_list_key_versions_page(struct kv_client *cl, const char *name, struct kv_item_list *out,
                                long *http_status);
kv_rc kv_list_certificates(struct kv_client *cl, struct kv_item_list *out, long *http_status);
/* A certificate's versions, the first page only (as kv_list_key_versions_page). */
kv_rc kv_list_certificate_versions_page(struct kv_client *cl, const char *name,
                                        struct kv_item_list *out, long *http_status);
kv_rc kv_list_secrets(struct kv_client *cl, struct kv_item_list *out, long *http_status);

/* version NULL = latest. */
kv_rc kv_get_key(struct kv_client *cl, const char *name, const char *version, struct kv_key **out,
                 long *http_status);
kv_rc kv_get_certificate(struct kv_client *cl, const char *name, const char *version,
                         struct kv_cert **out, long *http_status);
kv_rc kv_get_secret(struct kv_client *cl, const char *name, const char *version,
                    struct kv_secret **out, long *http_status);

/* Fetches several keys concurrently (bounded parallelism), or one after another in the caller's
 * thread when threads is 0 (CKF_LIBRARY_CANT_CREATE_OS_THREADS); out[i] is NULL where
 * rcs[i] != KV_OK, statuses[i] (statuses NULL = not wanted) is fetch i's final HTTP status. */
kv_rc kv_get_keys(struct kv_client *cl, const char *const *names, const char *const *versions,
                  size_t n, int threads, struct kv_key **out, kv_rc *rcs, long *statuses);

/* ---- cryptography (Key Vault calls). name+version address the key; alg is the JWA name. ---- */

struct kv_bytes {
  unsigned char *data;
  size_t len;
};
void kv_bytes_free(struct kv_bytes *b); /* wipes and frees data; b itself is not freed */

/* AES parameters (Managed HSM); NULL members/zero lengths are omitted from the request. */
struct kv_aes_params {
  const unsigned char *iv;
  size_t iv_len;
  const unsigned char *aad;
  size_t aad_len;
  const unsigned char *tag;
  size_t tag_len;
};

/* Result of encrypt: value plus what AES-GCM/CBC return. */
struct kv_crypt_result {
  struct kv_bytes value, iv, tag;
};
void kv_crypt_result_free(struct kv_crypt_result *r);

kv_rc kv_sign(struct kv_client *cl, const char *name, const char *version, const char *alg,
              const unsigned char *digest, size_t digest_len, struct kv_bytes *sig,
              long *http_status);
kv_rc kv_verify(struct kv_client *cl, const char *name, const char *version, const char *alg,
                const unsigned char *digest, size_t digest_len, const unsigned char *sig,
                size_t sig_len, int *valid, long *http_status);

enum kv_cipher_op { KV_ENCRYPT, KV_DECRYPT, KV_WRAP, KV_UNWRAP };
kv_rc kv_cipher(struct kv_client *cl, enum kv_cipher_op op, const char *name, const char *version,
                const char *alg, const unsigned char *in, size_t in_len,
                const struct kv_aes_params *aes, struct kv_crypt_result *out, long *http_status);

/* Managed HSM POST /rng, count 1..128 per call (the client loops for more). */
kv_rc kv_random(struct kv_client *cl, unsigned char *out, size_t count, long *http_status);

/* ---- replica vaults (src/kv/replica.c; docs/reliability.md "Replica vaults") --------------- */

/* Adds replica vaults to a new client (before any use): same keys (names and key material), same
 * kind, same credential and options; its key operations are then spread over the primary and
 * these (docs/config.md "replicas"). At most 8. q: the slot's quota, which paces each replica
 * like the primary (docs/reliability.md "Pacing"); NULL = the vaults' budgets are not consulted
 * (tools that make no key operations). */
kv_rc kv_client_add_replicas(struct kv_client *cl, const char *const *urls, size_t n,
                             const struct akv_quota_config *q);

/* Vault i of a client: 0 = the primary (the client itself), 1..n = its replicas. */
size_t kv_client_n_vaults(const struct kv_client *cl);
const char *kv_client_vault_url(const struct kv_client *cl, size_t i);
struct kv_client *kv_client_vault(struct kv_client *cl, size_t i);

/* Compares key name (version = the primary's version, NULL = latest) on vault i (a replica) with
 * the primary's public key (RSA n/e, EC crv/x/y): KV_OK when one of the replica's versions holds
 * the same public key (its version into rep_version, rep_cap bytes, when not NULL);
 * KV_E_CONFLICT when none does (diff says how the latest differs); KV_E_UNSUPPORTED for a
 * symmetric key (nothing public to compare); another rc: the primary's or the replica's error.
 * Makes requests (GET on both vaults, the replica's version list); no state is kept. */
kv_rc kv_replica_compare(struct kv_client *cl, size_t i, const char *name, const char *version,
                         char *rep_version, size_t rep_cap, char *diff, size_t diff_len);

/* ---- JWK helpers (no network) --------------------------------------------------------------- */

/* The JWK key_ops name of one enum kv_key_op bit ("wrapKey"), NULL for another value. */
const char *kv_key_op_name(unsigned bit);
/* The names of the bits set in ops, space-separated, into buf (always terminated when len > 0);
 * returns the length written ("" and 0 for none). */
size_t kv_key_ops_str(unsigned ops, char *buf, size_t len);

/* Public key of a JWK as an EVP_PKEY in libctx (the module's private OSSL_LIB_CTX). */
kv_rc kv_key_to_pkey(const struct kv_key *k, OSSL_LIB_CTX *libctx, EVP_PKEY **out);

/* DER SubjectPublicKeyInfo of an RSA/EC key; *der is malloc'd (free()). */
kv_rc kv_key_spki_der(const struct kv_key *k, OSSL_LIB_CTX *libctx, unsigned char **der,
                      size_t *der_len);

/* Curve facts: DER of the named-curve OID (for CKA_EC_PARAMS), field size in bytes. */
const unsigned char *kv_crv_oid_der(enum kv_crv crv, size_t *len);
size_t kv_crv_bytes(enum kv_crv crv);
const char *kv_crv_name(enum kv_crv crv); /* "P-256" ... */

/* Parses a JSON KeyBundle / JsonWebKey (for tests and the cache file). */
kv_rc kv_key_from_json(const char *json, size_t len, struct kv_key **out);

/* ---- writes (src/kv/write.c) ---------------------------------------------------------------- */

/* What to create (POST /keys/{name}/create). Zero members are left to the service's defaults. */
struct kv_key_spec {
  enum kv_kty kty;
  int hsm;           /* -HSM kty (always on a Managed HSM) */
  unsigned key_size; /* RSA modulus bits, oct bits */
  enum kv_crv crv;   /* EC */
  unsigned key_ops;  /* enum kv_key_op bits, 0 = service default */
  int64_t nbf, exp;  /* 0 = absent */
  const struct kv_tag *tags;
  size_t n_tags;
};

/* Attribute changes (PATCH): only members whose set_ flag is on are sent. A time of 0 clears it
 * (JSON null). Tags replace the whole tag set, as the service does. */
struct kv_update {
  int set_enabled, enabled;
  int set_nbf, set_exp;
  int64_t nbf, exp;
  int set_tags;
  const struct kv_tag *tags;
  size_t n_tags;
};

/* Creates a key (or a new version of it); *out is the new version's public parts. Never retried
 * blindly (not idempotent). */
kv_rc kv_create_key(struct kv_client *cl, const char *name, const struct kv_key_spec *spec,
                    struct kv_key **out, long *http_status);
/* PATCH /keys/{name}/{version}; *out (may be NULL) the updated bundle. */
kv_rc kv_update_key(struct kv_client *cl, const char *name, const char *version,
                    const struct kv_update *u, struct kv_key **out, long *http_status);
/* DELETE /keys/{name} (soft delete: every version). */
kv_rc kv_delete_key(struct kv_client *cl, const char *name, long *http_status);
/* PUT /secrets/{name}: value must be UTF-8 text without NUL (the service stores a JSON string),
 * else KV_E_INVALID. *out (may be NULL) describes the new version, without its value. */
kv_rc kv_set_secret(struct kv_client *cl, const char *name, const unsigned char *value, size_t len,
                    const char *content_type, const struct kv_tag *tags, size_t n_tags,
                    struct kv_secret **out, long *http_status);
kv_rc kv_delete_secret(struct kv_client *cl, const char *name, long *http_status);
/* DELETE /certificates/{name} (with its managed key and secret). */
kv_rc kv_delete_certificate(struct kv_client *cl, const char *name, long *http_status);

/* ---- key attestation (Managed HSM, api-version 7.6 and later: src/kv/attest.c) ------------- */

/* GET /keys/{name}/{version}/attestation, decoded. */
struct kv_attestation {
  struct kv_key *key;   /* the key version the reply describes */
  char *format_version; /* attributes.attestation.version (NULL when absent) */
  char *cert_pem;       /* certificatePemFile decoded: PEM certificates, NUL-terminated */
  size_t cert_pem_len;
  unsigned char *priv_blob; /* privateKeyAttestation */
  size_t priv_len;
  unsigned char *pub_blob; /* publicKeyAttestation: RSA/EC keys only, else NULL */
  size_t pub_len;
};
void kv_attestation_free(struct kv_attestation *a);

/* version NULL = latest. KV_E_UNSUPPORTED on a Key Vault (Managed HSM only); KV_E_PROTOCOL with a
 * log line when the reply is malformed. No check of the content: kv_attestation_verify. */
kv_rc kv_get_key_attestation(struct kv_client *cl, const char *name, const char *version,
                             struct kv_attestation **out, long *http_status);

/* The same from a reply's JSON text (tests, the fuzzer); no name check. */
kv_rc kv_attestation_from_json(const char *json, size_t len, struct kv_attestation **out);

/* {"key":{"kid"},"attributes":{"attestation":{...}}}: the reply's attestation members re-encoded
 * as the service sends them (base64url), the input of Microsoft's validation tool; NUL-terminated
 * text of *len bytes the caller frees, NULL when out of memory. */
char *kv_attestation_json(const struct kv_attestation *a, size_t *len);

/* The attestation format this module reads (attributes.attestation.version). */
#define KV_ATTEST_FORMAT "MRVL-1"

/* What kv_attestation_verify established (references the caller releases with
 * kv_attest_result_clear). */
struct kv_attest_result {
  X509 *signer;                       /* the vendor's partition certificate: signs the blobs */
  X509 *card;                         /* the HSM card certificate that issued it */
  X509 *ms_root;                      /* Microsoft's self-signed partition root */
  X509 *ms_part;                      /* Microsoft's partition certificate (the signer's key) */
  int vendor_root_checked;            /* the card certificate chains to one of the caller's roots */
  int extractable, never_extractable; /* from the private key attestation */
};
void kv_attest_result_clear(struct kv_attest_result *r);

/* Checks with OpenSSL (docs/usage.md "Key attestation for a CA"): version "MRVL-1";
 * certificatePemFile holds the HSM card, the vendor's partition certificate it issued, Microsoft's
 * self-signed partition root and its partition certificate for the same key, both chains verify
 * (the vendor's to the card certificate or, when roots is not NULL, through it to one of roots,
 * the trusted vendor root certificates; roots_name says where they come from in the log line,
 * e.g. "slot hsm attestation_root FILE"); the blobs carry the partition key's signature, name the
 * key (CKA_ID = kid), state its public key (RSA n/e, EC point), CKA_SENSITIVE and
 * CKA_EXTRACTABLE/CKA_NEVER_EXTRACTABLE as the key's exportable attribute says. KV_OK or
 * KV_E_PROTOCOL with a log line saying which check failed. */
kv_rc kv_attestation_verify(const struct kv_attestation *a, OSSL_LIB_CTX *libctx,
                            STACK_OF(X509) * roots, const char *roots_name,
                            struct kv_attest_result *res);

#endif
