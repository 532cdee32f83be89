/* SPDX-License-Identifier: Apache-2.0 */
/* Attribute arrays (model-internal): building them, C_GetAttributeValue copy-out rules and
 * template matching. */
#ifndef AKV_ATTRS_H
#define AKV_ATTRS_H

#include "core/akv.h"

/* Accumulates owned attributes; after the first allocation failure every call is a no-op and
 * akv_attrs_finish reports CKR_HOST_MEMORY. */
struct akv_attrs_builder {
  CK_ATTRIBUTE *v;
  size_t n, cap;
  int oom;
};

void akv_attrs_add_bytes(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const void *p,
                         size_t len);
void akv_attrs_add_ulong(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
void akv_attrs_add_bool(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL v);
void akv_attrs_add_str(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type,
                       const char *s); /* NULL = empty */
/* CK_DATE of a Unix time; 0 gives the empty value (no date). */
void akv_attrs_add_date(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, int64_t t);
/* The same value in *d: its length, sizeof(CK_DATE) or 0 for no date. */
size_t akv_attrs_date_value(int64_t t, CK_DATE *d);
void akv_attrs_add_ulongs(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const CK_ULONG *v,
                          size_t n);
/* Replaces the value of an attribute already added, or adds it. */
void akv_attrs_set(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const void *p, size_t len);
/* Hands the array over (sorted by type), or frees it and returns CKR_HOST_MEMORY. */
CK_RV akv_attrs_finish(struct akv_attrs_builder *b, CK_ATTRIBUTE **out, size_t *n);

void akv_attrs_free(CK_ATTRIBUTE *a, size_t n); /* wipes values */
const CK_ATTRIBUTE *akv_attrs_find(const CK_ATTRIBUTE *a, size_t n, CK_ATTRIBUTE_TYPE type);

/* One attribute of C_GetAttributeValue: NULL pValue asks the length; a short buffer gives
 * CKR_BUFFER_TOO_SMALL; both failures set ulValueLen to CK_UNAVAILABLE_INFORMATION. */
CK_RV akv_attrs_copy_out(CK_ATTRIBUTE *dst, const void *src, CK_ULONG len);
/* Marks dst unavailable and returns why (CKR_ATTRIBUTE_SENSITIVE / CKR_ATTRIBUTE_TYPE_INVALID). */
CK_RV akv_attrs_unavailable(CK_ATTRIBUTE *dst, CK_RV why);
/* The result of a whole template: the most telling of the per-attribute results. */
CK_RV akv_attrs_rv_merge(CK_RV cur, CK_RV next);

/* Attributes never revealed for this class (private/secret key material). */
int akv_attrs_is_sensitive(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);

/* Template lookups with type/size validation: CKR_OK and *v set when present, CKR_OK and *v
 * untouched when absent, CKR_ATTRIBUTE_VALUE_INVALID when malformed. */
CK_RV akv_attrs_tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL *v);
CK_RV akv_attrs_tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *v);
const CK_ATTRIBUTE *akv_attrs_tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type);

#endif
