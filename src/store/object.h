/* SPDX-License-Identifier: Apache-2.0 */
/* Objects: building token objects from vault keys, certificates and secrets, reading attributes,
 * matching templates. Nothing here takes a session: a failed fetch is handed back to the caller
 * (struct akv_fetch_status), which records it on its session. */
#ifndef AKV_OBJECT_H
#define AKV_OBJECT_H

#include "core/akv.h"

struct akv_attrs_builder;

/* The tag that keeps a key's CKA_ID (lowercase hex) in the vault across processes. */
#define AKV_TAG_ID "pkcs11-id"
/* Longest CKA_ID kept: its hex form must fit the service's 256-character tag value. */
#define AKV_MAX_ID 128

/* A fetch that failed while reading or matching attributes (a secret's value): rc KV_OK when none
 * did; http_status is the failed request's HTTP status, 0 when no response arrived. */
struct akv_fetch_status {
  kv_rc rc;
  long http_status;
};

/* One key version, shared by its private and public key objects, in one allocation: what cannot
 * be derived cheaply (names, times, flags, tags, the raw public key, CKA_ID). Every attribute value
 * is built from it when asked; the EVP_PKEY only for a local operation (akv_object_pkey), kept here
 * until a refresh finds it unused for the slot's ttl (docs/performance.md "Memory per cached
 * key"). Immutable once built, but for pkey and pkey_used (under a lock of object.c). */
struct akv_keyent {
  int refs;                /* atomic */
  struct kv_key key;       /* every pointer points into this allocation */
  const char *src;         /* the objects' source id (obj->src), NULL before akv_objects_from_key */
  const char *label;       /* their CKA_LABEL (may be key.name) */
  const unsigned char *id; /* CKA_ID: the AKV_TAG_ID tag, else SHA-1 of the SPKI (of the kid for
                            * oct keys) */
  size_t id_len;
  EVP_PKEY *pkey;    /* RSA/EC in akv_libctx(), built at the first local operation */
  int64_t pkey_used; /* akv_now() of its last use */
};

/* The lazily fetched value of a secret (CKO_DATA, obj->val), guarded by lock: only data objects
 * pay for the mutex. */
struct akv_objval {
  pthread_mutex_t lock;
  char *secret_name;
  unsigned char *value;
  size_t value_len;
  int64_t fetched_at;
};

/* Checks the key's public material as a listing must (kv_key_to_pkey) and packs it; takes
 * ownership of key (freed on failure too). CKR_DEVICE_ERROR (logged) for unusable material. */
CK_RV akv_object_keyent_new(struct kv_key *key, struct akv_keyent **out);
struct akv_keyent *akv_object_keyent_ref(struct akv_keyent *ke);
void akv_object_keyent_unref(struct akv_keyent *ke);

/* Token objects for one key version: private + public (RSA/EC) or one secret key (oct). out must
 * hold 2; label is the key name or name/version; src tags the objects for reuse at refresh. The
 * objects share one key entry holding label and src (ke itself when it already does). */
CK_RV akv_objects_from_key(struct akv_slot *slot, struct akv_keyent *ke, const char *label,
                           const char *src, struct akv_object **out, size_t *n);
/* The attestation objects of the key whose private (or secret) key object is key_obj, into out
 * (room for 2): on a Managed HSM slot the data object (no certificate: docs/design.md
 * "Decisions"), of the key's source and version, its content read at the first read
 * (src/store/attest.h); none elsewhere. docs/usage.md "Key attestation for a CA". */
CK_RV akv_objects_attest(const struct akv_object *key_obj, struct akv_object **out, size_t *n);
/* A CKO_CERTIFICATE from a certificate bundle. */
CK_RV akv_object_from_cert(struct akv_slot *slot, const struct kv_cert *cert, const char *src,
                           struct akv_object **out);
/* A CKO_DATA object for a secret list entry; its value is fetched on first read. */
CK_RV akv_object_from_secret(struct akv_slot *slot, const struct kv_item *item, const char *src,
                             struct akv_object **out);

/* Checks a template's CKA_PRIVATE for a token object of class cls to be made on slot: it must be
 * what the module gives such objects (with login required: TRUE for private keys, secret keys and
 * data objects, FALSE for public keys and certificates; without login: FALSE). CKR_OK when absent
 * or equal; CKR_ATTRIBUTE_VALUE_INVALID (logged) otherwise, never a silently dropped request.
 * docs/security.md "Login". */
CK_RV akv_object_check_private(const struct akv_slot *slot, CK_OBJECT_CLASS cls,
                               const CK_ATTRIBUTE *t, CK_ULONG n);

/* Wipes a secret's cached value once it is older than the slot's secret TTL (also done on read),
 * and drops a key's EVP_PKEY not used for the slot's ttl (built again when needed). Called for
 * every object at each refresh. */
void akv_object_expire_value(struct akv_object *obj, int64_t now);

/* C_GetAttributeValue on an object. A failed fetch of a secret's value is reported in *failed. */
CK_RV akv_object_get_attrs(struct akv_object *obj, CK_ATTRIBUTE *t, CK_ULONG n,
                           struct akv_fetch_status *failed);
CK_ULONG akv_object_size(const struct akv_object *obj);

/* 1 when every attribute of the template exists on obj with the same bytes (unknown or sensitive
 * attributes never match); a failed fetch of a secret's value is no match, reported in *failed. */
int akv_object_matches(struct akv_object *obj, const CK_ATTRIBUTE *t, CK_ULONG n,
                       struct akv_fetch_status *failed);

/* The CKA_ID kept in the AKV_TAG_ID tag of a, if any: replaces CKA_ID in b. */
void akv_object_apply_tag_id(struct akv_attrs_builder *b, const struct kv_attrs *a);

/* DER SubjectPublicKeyInfo of an RSA/EC key, as i2d_PUBKEY writes it, built without OpenSSL: its
 * length, written to buf only when it fits cap; 0 for other keys or malformed material. */
size_t akv_object_key_spki(const struct kv_key *k, unsigned char *buf, size_t cap);

#endif
