/* SPDX-License-Identifier: Apache-2.0 */
/* The attestation behind a Managed HSM key's attestation data object (src/store/object.c
 * akv_objects_attest): fetched from the vault at the first read of a lazy attribute, checked with
 * OpenSSL (src/kv/attest.c) and against the key the objects belong to, then kept for the objects'
 * life. A refused attestation withdraws the objects (docs/usage.md "Key attestation for a CA"). */
#ifndef AKV_STORE_ATTEST_H
#define AKV_STORE_ATTEST_H

#include "core/akv.h"

/* A new attestation of the key version name/version (kid: its versioned id) on slot; spki is the
 * key's DER SubjectPublicKeyInfo (NULL, 0 for oct keys), copied. NULL when out of memory. */
struct akv_attest *akv_attest_new(struct akv_slot *slot, const char *name, const char *version,
                                  const char *kid, const unsigned char *spki, size_t spki_len);
struct akv_attest *akv_attest_ref(struct akv_attest *a);
void akv_attest_unref(struct akv_attest *a); /* NULL ok */

/* 1 when the attribute of an attestation object of class cls comes from the attestation (read at
 * the first such read): the data object's CKA_VALUE. */
int akv_attest_lazy(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);

/* The value of a lazy attribute: *p (valid while the caller holds a reference to a) and *len.
 * CKR_OBJECT_HANDLE_INVALID once the attestation was refused (malformed, not verified, another
 * key's, or none for this key: one warning said why); another error when the fetch failed and may
 * be tried again at the next read (*failed_rc and *failed_http set, a warning logged). */
CK_RV akv_attest_value(struct akv_attest *a, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type,
                       const void **p, size_t *len, kv_rc *failed_rc, long *failed_http);

/* 1 once the attestation was refused: its objects are no longer offered. */
int akv_attest_refused(struct akv_attest *a);

/* 1 when a search template asks for attestation objects: it names CKA_LABEL, CKA_APPLICATION or
 * CKA_AKV_ATTESTATION (the values are matched as for any object). Other searches do not see them
 * (docs/design.md "Decisions"). */
int akv_attest_asked(const CK_ATTRIBUTE *t, CK_ULONG n);

#endif
