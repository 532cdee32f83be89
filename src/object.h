/* SPDX-License-Identifier: Apache-2.0 */
/* Objects (model-internal): building token objects from vault keys, certificates and secrets,
 * reading attributes, searching. */
#ifndef AKV_OBJECT_H
#define AKV_OBJECT_H

#include "akv.h"

/* Public key material of one key version, shared by its private and public key objects. */
struct akv_keyent {
  int refs; /* atomic */
  struct kv_key *key;
  EVP_PKEY *pkey;      /* RSA/EC in akv_libctx(), NULL for oct keys */
  unsigned char *spki; /* DER SubjectPublicKeyInfo (RSA/EC) */
  size_t spki_len;
  unsigned char id[20]; /* CKA_ID: SHA-1 of the SPKI (of the kid for oct keys) */
};

/* Takes ownership of key (freed on failure too). */
CK_RV akv_keyent_new(struct kv_key *key, struct akv_keyent **out);
struct akv_keyent *akv_keyent_ref(struct akv_keyent *ke);
void akv_keyent_unref(struct akv_keyent *ke);

/* Token objects for one key version: private + public (RSA/EC) or one secret key (oct). out must
 * hold 2; label is the key name or name/version; src tags the objects for reuse at refresh. */
CK_RV akv_objects_from_key(struct akv_slot *slot, struct akv_keyent *ke, const char *label,
                           const char *src, struct akv_object **out, size_t *n);
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

/* Wipes a secret's cached value once it is older than the slot's secret TTL (also done on read). */
void akv_object_expire_value(struct akv_object *obj, int64_t now);

/* C_GetAttributeValue on an object (session acquired). */
CK_RV akv_object_get_attrs(struct akv_session *s, struct akv_object *obj, CK_ATTRIBUTE *t,
                           CK_ULONG n);
CK_ULONG akv_object_size(const struct akv_object *obj);

/* C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal bodies (session acquired). */
CK_RV akv_find_init(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n);
CK_RV akv_find_next(struct akv_session *s, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count);
CK_RV akv_find_final(struct akv_session *s);

/* C_CreateObject / C_CopyObject / C_SetAttributeValue / C_DestroyObject bodies. */
CK_RV akv_object_create(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                        CK_OBJECT_HANDLE *out);
CK_RV akv_object_copy(struct akv_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *t, CK_ULONG n,
                      CK_OBJECT_HANDLE *out);
CK_RV akv_object_set_attrs(struct akv_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *t,
                           CK_ULONG n);
CK_RV akv_object_destroy(struct akv_session *s, CK_OBJECT_HANDLE h);

#endif
