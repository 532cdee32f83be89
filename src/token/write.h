/* SPDX-License-Identifier: Apache-2.0 */
/* The writable side of the token (model-internal, docs/lifecycle.md): key generation in the
 * vault, token object creation, deletion and attribute updates. Every write goes to the vault
 * first and then changes the slot's cached snapshot at once, so the new state is usable without
 * waiting for a refresh. All functions are called with the session acquired. */
#ifndef AKV_WRITE_H
#define AKV_WRITE_H

#include "core/akv.h"
#include "store/object.h"
/* Longest vault object name. */
#define AKV_MAX_NAME 127

/* A parsed C_GenerateKeyPair / C_GenerateKey template. */
struct akv_keygen {
  struct kv_key_spec spec;
  char name[AKV_MAX_NAME + 1];
  unsigned char id[AKV_MAX_ID];
  size_t id_len; /* 0 = no CKA_ID given */
  char id_hex[2 * AKV_MAX_ID + 1];
  struct kv_tag tag; /* AKV_TAG_ID -> id_hex when id_len */
};

/* C_GenerateKeyPair / C_GenerateKey template parsing (exposed for unit tests): the mechanism,
 * the vault kind and the templates give the key's type, size/curve, key_ops, protection, name and
 * CKA_ID. CKR_MECHANISM_INVALID, CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT,
 * CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID (logged with the reason). */
CK_RV akv_write_parse_keypair(enum akv_vault_kind kind, CK_MECHANISM_TYPE mech,
                              const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                              CK_ULONG npriv, struct akv_keygen *g);
CK_RV akv_write_parse_secret_key(enum akv_vault_kind kind, CK_MECHANISM_TYPE mech,
                                 const CK_ATTRIBUTE *t, CK_ULONG n, struct akv_keygen *g);

/* CKA_EC_PARAMS: DER OID of a named curve, or a PrintableString (or bare) curve name
 * ("prime256v1", "secp384r1", "P-521", "secp256k1"...). CKR_ATTRIBUTE_VALUE_INVALID otherwise. */
CK_RV akv_write_ec_params(const unsigned char *p, size_t len, enum kv_crv *crv);

/* CKA_LABEL as a vault object name: ^[0-9a-zA-Z-]{1,127}$ (CKR_ATTRIBUTE_VALUE_INVALID, logged
 * with that rule, otherwise). */
CK_RV akv_write_name(const CK_ATTRIBUTE *label, char out[AKV_MAX_NAME + 1]);

/* CK_DATE <-> Unix time (UTC midnight). An empty value gives 0 (no date). */
CK_RV akv_write_date(const CK_ATTRIBUTE *a, int64_t *t);

/* Entry-point bodies. */
CK_RV akv_write_generate_key_pair(struct akv_session *s, const CK_MECHANISM *m,
                                  const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                                  CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv);
/* A CKA_TOKEN=TRUE key: an AES key in the Managed HSM (C_GenerateKey calls akv_generate_key of
 * src/crypto/op_wrap.c for session keys). */
CK_RV akv_write_generate_key(struct akv_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *t,
                             CK_ULONG n, CK_OBJECT_HANDLE *out);
CK_RV akv_write_create_object(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_HANDLE *out);
/* C_CopyObject: every object says CKA_COPYABLE = FALSE. */
CK_RV akv_write_copy_object(struct akv_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE *out);
CK_RV akv_write_destroy_object(struct akv_session *s, CK_OBJECT_HANDLE h);
CK_RV akv_write_set_attrs(struct akv_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *t,
                          CK_ULONG n);

#endif
