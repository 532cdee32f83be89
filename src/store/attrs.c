/* SPDX-License-Identifier: Apache-2.0 */
/* Attribute arrays: building, C_GetAttributeValue copy-out rules, template lookups. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "store/attrs.h"
#include "util/utc.h"

static CK_ATTRIBUTE *ab_slot(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type)
{
  size_t i;

  if (b->oom)
    return NULL;
  for (i = 0; i < b->n; i++) {
    if (b->v[i].type == type)
      return &b->v[i];
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    CK_ATTRIBUTE *v = realloc(b->v, cap * sizeof(*v));
    if (!v) {
      b->oom = 1;
      return NULL;
    }
    b->v = v;
    b->cap = cap;
  }
  memset(&b->v[b->n], 0, sizeof(b->v[0]));
  b->v[b->n].type = type;
  return &b->v[b->n++];
}

void akv_attrs_set(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const void *p, size_t len)
{
  CK_ATTRIBUTE *a = ab_slot(b, type);
  void *copy = NULL;

  if (!a)
    return;
  /* Empty values still get an allocation, so a NULL pValue always means "no value". */
  copy = malloc(len ? len : 1);
  if (!copy) {
    b->oom = 1;
    return;
  }
  if (len)
    memcpy(copy, p, len);
  if (a->pValue) {
    OPENSSL_cleanse(a->pValue, a->ulValueLen);
    free(a->pValue);
  }
  a->pValue = copy;
  a->ulValueLen = (CK_ULONG)len;
}

void akv_attrs_add_bytes(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const void *p,
                         size_t len)
{
  akv_attrs_set(b, type, p, len);
}

void akv_attrs_add_ulong(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
  akv_attrs_set(b, type, &v, sizeof(v));
}

void akv_attrs_add_bool(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL v)
{
  v = v ? CK_TRUE : CK_FALSE;
  akv_attrs_set(b, type, &v, sizeof(v));
}

void akv_attrs_add_str(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const char *s)
{
  akv_attrs_set(b, type, s ? s : "", s ? strlen(s) : 0);
}

void akv_attrs_add_ulongs(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, const CK_ULONG *v,
                          size_t n)
{
  akv_attrs_set(b, type, v, n * sizeof(*v));
}

size_t akv_attrs_date_value(int64_t t, CK_DATE *d)
{
  struct akv_utc u;
  char buf[32];

  /* Up to 9999-12-31T23:59:59Z, the last instant a CK_DATE can spell. */
  if (t <= 0 || t > INT64_C(253402300799))
    return 0;
  akv_utc_from_epoch(t, &u); /* no gmtime_r: its lock may be held at a fork */
  /* CK_DATE is ASCII digits YYYYMMDD without a terminator. */
  snprintf(buf, sizeof(buf), "%04d%02d%02d", u.year, u.month, u.day);
  memcpy(d->year, buf, 4);
  memcpy(d->month, buf + 4, 2);
  memcpy(d->day, buf + 6, 2);
  return sizeof(*d);
}

void akv_attrs_add_date(struct akv_attrs_builder *b, CK_ATTRIBUTE_TYPE type, int64_t t)
{
  CK_DATE d;
  size_t len = akv_attrs_date_value(t, &d);
  akv_attrs_set(b, type, len ? (const void *)&d : "", len);
}

static int cmp_type(const void *a, const void *b)
{
  CK_ATTRIBUTE_TYPE x = ((const CK_ATTRIBUTE *)a)->type, y = ((const CK_ATTRIBUTE *)b)->type;
  return x < y ? -1 : x > y;
}

CK_RV akv_attrs_finish(struct akv_attrs_builder *b, CK_ATTRIBUTE **out, size_t *n)
{
  if (b->oom) {
    akv_attrs_free(b->v, b->n);
    memset(b, 0, sizeof(*b));
    return CKR_HOST_MEMORY;
  }
  qsort(b->v, b->n, sizeof(b->v[0]), cmp_type);
  if (b->n && b->n < b->cap) { /* the builder's spare slots are not kept with the object */
    CK_ATTRIBUTE *v = realloc(b->v, b->n * sizeof(b->v[0]));
    if (v)
      b->v = v;
  }
  *out = b->v;
  *n = b->n;
  memset(b, 0, sizeof(*b));
  return CKR_OK;
}

void akv_attrs_free(CK_ATTRIBUTE *a, size_t n)
{
  size_t i;
  if (!a)
    return;
  for (i = 0; i < n; i++) {
    if (a[i].pValue) {
      OPENSSL_cleanse(a[i].pValue, a[i].ulValueLen);
      free(a[i].pValue);
    }
  }
  free(a);
}

const CK_ATTRIBUTE *akv_attrs_find(const CK_ATTRIBUTE *a, size_t n, CK_ATTRIBUTE_TYPE type)
{
  CK_ATTRIBUTE key;
  memset(&key, 0, sizeof(key));
  key.type = type;
  if (!a || n == 0)
    return NULL;
  return bsearch(&key, a, n, sizeof(a[0]), cmp_type);
}

CK_RV akv_attrs_copy_out(CK_ATTRIBUTE *dst, const void *src, CK_ULONG len)
{
  if (!dst->pValue) {
    dst->ulValueLen = len;
    return CKR_OK;
  }
  if (dst->ulValueLen < len) {
    dst->ulValueLen = CK_UNAVAILABLE_INFORMATION;
    return CKR_BUFFER_TOO_SMALL;
  }
  if (len)
    memcpy(dst->pValue, src, len);
  dst->ulValueLen = len;
  return CKR_OK;
}

CK_RV akv_attrs_unavailable(CK_ATTRIBUTE *dst, CK_RV why)
{
  dst->ulValueLen = CK_UNAVAILABLE_INFORMATION;
  return why;
}

static int rv_rank(CK_RV rv)
{
  switch (rv) {
  case CKR_OK:
    return 0;
  case CKR_BUFFER_TOO_SMALL:
    return 1;
  case CKR_ATTRIBUTE_TYPE_INVALID:
    return 2;
  case CKR_ATTRIBUTE_SENSITIVE:
    return 3;
  default:
    return 4; /* a real failure (device error...) wins */
  }
}

/* PKCS#11 lets any of the three "not really errors" be returned; sensitivity is the one an
 * application most needs to know about, and a real failure trumps them all. */
CK_RV akv_attrs_rv_merge(CK_RV cur, CK_RV next)
{
  return rv_rank(next) > rv_rank(cur) ? next : cur;
}

int akv_attrs_is_sensitive(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
  if (cls == CKO_PRIVATE_KEY) {
    switch (type) {
    case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1:
    case CKA_PRIME_2:
    case CKA_EXPONENT_1:
    case CKA_EXPONENT_2:
    case CKA_COEFFICIENT:
    case CKA_VALUE:
      return 1;
    default:
      return 0;
    }
  }
  if (cls == CKO_SECRET_KEY)
    return type == CKA_VALUE;
  return 0;
}

const CK_ATTRIBUTE *akv_attrs_tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
  CK_ULONG i;
  const CK_ATTRIBUTE *found = NULL;
  if (!t)
    return NULL;
  /* The last occurrence wins, as several tokens do for repeated attributes. */
  for (i = 0; i < n; i++) {
    if (t[i].type == type)
      found = &t[i];
  }
  return found;
}

CK_RV akv_attrs_tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL *v)
{
  const CK_ATTRIBUTE *a = akv_attrs_tmpl_find(t, n, type);
  if (!a)
    return CKR_OK;
  if (!a->pValue || a->ulValueLen != sizeof(CK_BBOOL))
    return CKR_ATTRIBUTE_VALUE_INVALID;
  *v = *(const CK_BBOOL *)a->pValue ? CK_TRUE : CK_FALSE;
  return CKR_OK;
}

CK_RV akv_attrs_tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
  const CK_ATTRIBUTE *a = akv_attrs_tmpl_find(t, n, type);
  if (!a)
    return CKR_OK;
  if (!a->pValue || a->ulValueLen != sizeof(CK_ULONG))
    return CKR_ATTRIBUTE_VALUE_INVALID;
  memcpy(v, a->pValue, sizeof(*v));
  return CKR_OK;
}
