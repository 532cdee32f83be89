/* SPDX-License-Identifier: Apache-2.0 */
/* Objects: token objects built from the vault's keys, certificates and secrets (docs/design.md),
 * session secret keys, attribute reads and template matching. Objects are immutable once published,
 * except the lazily fetched value of a secret (under obj->lock). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/module.h"
#include "store/attest.h"
#include "store/attrs.h"
#include "store/handles.h"
#include "store/object.h"
#include "util/log.h"

#define SECRET_APPLICATION "Azure Key Vault secret"

static const CK_MECHANISM_TYPE rsa_mechs[] = {
    CKM_RSA_PKCS,      CKM_SHA256_RSA_PKCS,     CKM_SHA384_RSA_PKCS,     CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,  CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS,
    CKM_RSA_PKCS_OAEP,
};
static const CK_MECHANISM_TYPE ec_mechs[] = {
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
};
static const CK_MECHANISM_TYPE aes_mechs[] = {
    CKM_AES_GCM,          CKM_AES_CBC_PAD, CKM_AES_CBC,     CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD, CKM_SHA256_HMAC, CKM_SHA384_HMAC, CKM_SHA512_HMAC,
};

/* ---- CKA_ID as a tag ---------------------------------------------------------------------- */

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The CKA_ID kept in the AKV_TAG_ID tag of a, decoded into id: its length, 0 when there is none. */
static size_t tag_id(const struct kv_attrs *a, unsigned char id[AKV_MAX_ID])
{
  size_t i, len;
  const char *hex = NULL;

  for (i = 0; i < a->n_tags; i++) {
    if (a->tags[i].name && strcmp(a->tags[i].name, AKV_TAG_ID) == 0)
      hex = a->tags[i].value;
  }
  if (!hex)
    return 0;
  len = strlen(hex);
  /* A tag someone else wrote that is not an id is ignored: the SPKI hash stays. */
  if (len == 0 || len % 2 || len / 2 > AKV_MAX_ID)
    return 0;
  for (i = 0; i < len / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return 0;
    id[i] = (unsigned char)(hi << 4 | lo);
  }
  return len / 2;
}

void akv_object_apply_tag_id(struct akv_attrs_builder *b, const struct kv_attrs *a)
{
  unsigned char id[AKV_MAX_ID];
  size_t len = tag_id(a, id);
  if (len)
    akv_attrs_set(b, CKA_ID, id, len);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

static struct akv_object *object_alloc(struct akv_slot *slot, CK_OBJECT_CLASS cls)
{
  struct akv_object *obj = calloc(1, sizeof(*obj));
  if (!obj)
    return NULL;
  obj->refs = 1;
  obj->cls = cls;
  obj->key_type = (CK_KEY_TYPE)-1;
  obj->slot = slot;
  return obj;
}

struct akv_object *akv_object_ref(struct akv_object *obj)
{
  if (obj)
    __atomic_add_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL);
  return obj;
}

static void value_drop_inlock(struct akv_objval *v)
{
  if (!v->value)
    return;
  OPENSSL_cleanse(v->value, v->value_len);
  free(v->value);
  v->value = NULL;
  v->value_len = 0;
  v->fetched_at = 0;
  akv_handles_secret_give();
}

void akv_object_unref(struct akv_object *obj)
{
  if (!obj || __atomic_sub_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  akv_attrs_free(obj->attrs, obj->n_attrs);
  if (!obj->keyent || obj->src != obj->keyent->src)
    free(obj->src);
  akv_object_keyent_unref(obj->keyent);
  if (obj->secret) {
    OPENSSL_cleanse(obj->secret, obj->secret_len);
    free(obj->secret);
  }
  if (obj->val) {
    value_drop_inlock(obj->val);
    free(obj->val->secret_name);
    pthread_mutex_destroy(&obj->val->lock);
    free(obj->val);
  }
  akv_attest_unref(obj->att);
  free(obj);
}

/* Hands a newly built object over on success, drops it on failure. */
static CK_RV hand_over(struct akv_object *obj, CK_RV rv, struct akv_object **out)
{
  if (rv != CKR_OK) {
    akv_object_unref(obj);
    obj = NULL;
  }
  *out = obj;
  return rv;
}

/* ---- key material ---------------------------------------------------------------------------- */

static CK_RV sha1(const void *p, size_t len, unsigned char md[20])
{
  size_t mdlen = 0;
  if (!EVP_Q_digest(akv_libctx(), "SHA1", NULL, p, len, md, &mdlen) || mdlen != 20)
    return CKR_GENERAL_ERROR;
  return CKR_OK;
}

/* Big-endian integer without leading zero bytes (JWK encoders sometimes keep one). */
static const unsigned char *strip_zeros(const unsigned char *p, size_t *len)
{
  while (*len > 1 && p[0] == 0) {
    p++;
    (*len)--;
  }
  return p;
}

static CK_ULONG bit_length(const unsigned char *p, size_t len)
{
  unsigned char top;
  CK_ULONG bits;
  p = strip_zeros(p, &len);
  if (len == 0)
    return 0;
  bits = (CK_ULONG)(len - 1) * 8;
  for (top = p[0]; top; top >>= 1)
    bits++;
  return bits;
}

/* ---- DER, written by hand: the values i2d_PUBKEY and i2d_ASN1_OCTET_STRING give, without an
 * OpenSSL object per key. Each writer returns the encoding's length and writes only within cap. */

static size_t der_len_size(size_t len)
{
  size_t n = 1;
  if (len >= 0x80)
    for (; len; len >>= 8)
      n++;
  return n;
}

/* Tag and length; the content follows. */
static size_t der_head(unsigned char *buf, size_t cap, size_t at, unsigned char tag, size_t len)
{
  size_t n = der_len_size(len), i;
  if (at + 1 + n <= cap) {
    buf[at] = tag;
    if (n == 1) {
      buf[at + 1] = (unsigned char)len;
    } else {
      buf[at + 1] = (unsigned char)(0x80 | (n - 1));
      for (i = n - 1; i >= 1; i--, len >>= 8)
        buf[at + 1 + i] = (unsigned char)(len & 0xff);
    }
  }
  return 1 + n;
}

static size_t der_put(unsigned char *buf, size_t cap, size_t at, const void *p, size_t len)
{
  if (len && at + len <= cap)
    memcpy(buf + at, p, len);
  return len;
}

/* A positive INTEGER from big-endian bytes (a leading zero when the top bit is set). */
static size_t der_uint(unsigned char *buf, size_t cap, size_t at, const unsigned char *p,
                       size_t len)
{
  static const unsigned char zero = 0;
  int pad;
  size_t n;
  p = strip_zeros(p, &len);
  pad = len && (p[0] & 0x80);
  n = der_head(buf, cap, at, 0x02, len + (size_t)pad);
  if (pad)
    n += der_put(buf, cap, at + n, &zero, 1);
  return n + der_put(buf, cap, at + n, p, len);
}

/* The uncompressed point 04 || x || y, x and y left-padded to the field size. */
static size_t ec_point_raw(const struct kv_key *k, unsigned char *buf, size_t cap, size_t at)
{
  size_t fb = kv_crv_bytes(k->crv);
  if (fb == 0 || k->x_len > fb || k->y_len > fb || !k->x || !k->y)
    return 0;
  if (at + 1 + 2 * fb <= cap) {
    memset(buf + at, 0, 1 + 2 * fb);
    buf[at] = 0x04;
    memcpy(buf + at + 1 + fb - k->x_len, k->x, k->x_len);
    memcpy(buf + at + 1 + 2 * fb - k->y_len, k->y, k->y_len);
  }
  return 1 + 2 * fb;
}

/* CKA_EC_POINT: DER OCTET STRING of the uncompressed point. */
static size_t ec_point_der(const struct kv_key *k, unsigned char *buf, size_t cap)
{
  size_t raw = ec_point_raw(k, NULL, 0, 0), n;
  if (!raw)
    return 0;
  n = der_head(buf, cap, 0, 0x04, raw);
  return n + ec_point_raw(k, buf, cap, n);
}

size_t akv_object_key_spki(const struct kv_key *k, unsigned char *buf, size_t cap)
{
  static const unsigned char rsa_alg[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                          0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
  static const unsigned char ec_oid[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
  static const unsigned char zero = 0;
  const unsigned char *crv = NULL;
  size_t crv_len = 0, body, inner, bits, n;

  if (k->kty == KV_KTY_RSA && k->n && k->e && k->n_len && k->e_len) {
    inner = der_uint(NULL, 0, 0, k->n, k->n_len) + der_uint(NULL, 0, 0, k->e, k->e_len);
    bits = 1 + der_len_size(inner) + 1 + inner; /* 00, SEQUENCE { n, e } */
    body = sizeof(rsa_alg) + 1 + der_len_size(bits) + bits;
    n = der_head(buf, cap, 0, 0x30, body);
    n += der_put(buf, cap, n, rsa_alg, sizeof(rsa_alg));
    n += der_head(buf, cap, n, 0x03, bits);
    n += der_put(buf, cap, n, &zero, 1);
    n += der_head(buf, cap, n, 0x30, inner);
    n += der_uint(buf, cap, n, k->n, k->n_len);
    return n + der_uint(buf, cap, n, k->e, k->e_len);
  }
  if (k->kty == KV_KTY_EC && (crv = kv_crv_oid_der(k->crv, &crv_len)) != NULL) {
    size_t raw = ec_point_raw(k, NULL, 0, 0), alg = sizeof(ec_oid) + crv_len;
    if (!raw)
      return 0;
    bits = 1 + raw;
    body = 1 + der_len_size(alg) + alg + 1 + der_len_size(bits) + bits;
    n = der_head(buf, cap, 0, 0x30, body);
    n += der_head(buf, cap, n, 0x30, alg);
    n += der_put(buf, cap, n, ec_oid, sizeof(ec_oid));
    n += der_put(buf, cap, n, crv, crv_len);
    n += der_head(buf, cap, n, 0x03, bits);
    n += der_put(buf, cap, n, &zero, 1);
    return n + ec_point_raw(k, buf, cap, n);
  }
  return 0;
}

/* ---- key entries ------------------------------------------------------------------------------
 */

/* One allocation holding a copy of k (kv_key_pack_into), id, src and label (label shares the
 * key's name when equal). */
static struct akv_keyent *keyent_pack(const struct kv_key *k, const unsigned char *id,
                                      size_t id_len, const char *label, const char *src)
{
  size_t kn = kv_key_pack_into(k, NULL, NULL, 0);
  size_t sn = src ? strlen(src) + 1 : 0;
  int own_label = label && !(k->name && strcmp(label, k->name) == 0);
  size_t ln = own_label ? strlen(label) + 1 : 0;
  struct akv_keyent *ke = calloc(1, sizeof(*ke) + kn + id_len + sn + ln);
  unsigned char *d;

  if (!ke)
    return NULL;
  d = (unsigned char *)(ke + 1);
  kv_key_pack_into(k, &ke->key, d, kn);
  d += kn;
  memcpy(d, id, id_len);
  ke->id = d;
  ke->id_len = id_len;
  d += id_len;
  if (src) {
    memcpy(d, src, sn);
    ke->src = (const char *)d;
    d += sn;
  }
  if (own_label)
    memcpy(d, label, ln);
  ke->label = own_label ? (const char *)d : label ? ke->key.name : NULL;
  ke->refs = 1;
  return ke;
}

CK_RV akv_object_keyent_new(struct kv_key *key, struct akv_keyent **out)
{
  unsigned char id[AKV_MAX_ID > 20 ? AKV_MAX_ID : 20], *spki = NULL;
  size_t id_len, spki_len = 0;
  EVP_PKEY *pkey = NULL;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  *out = NULL;
  id_len = tag_id(&key->attrs, id);
  if (key->kty == KV_KTY_RSA || key->kty == KV_KTY_EC) {
    /* The material is checked as OpenSSL will use it (RSA sizes, EC point on its curve); the key
     * is not kept (akv_object_pkey builds it again when a local operation needs it). */
    rc = kv_key_to_pkey(key, akv_libctx(), &pkey);
    EVP_PKEY_free(pkey);
    spki_len = rc == KV_OK ? akv_object_key_spki(key, NULL, 0) : 0;
    if (rc == KV_OK && !spki_len)
      rc = KV_E_PROTOCOL;
    if (rc != KV_OK) {
      akv_warn(AKV_LOGC_CACHE, "key %s: unusable public key: %s", key->kid, kv_rc_str(rc));
      rv = akv_rv_nomem_or(rc, CKR_DEVICE_ERROR);
      goto out;
    }
    /* SHA-1 of the SPKI: the same on the certificate carrying this key, so consumers pair them. */
    if (!id_len) {
      rv = CKR_HOST_MEMORY;
      spki = malloc(spki_len);
      if (!spki)
        goto out;
      akv_object_key_spki(key, spki, spki_len);
      rv = sha1(spki, spki_len, id);
      id_len = 20;
    }
  } else if (!id_len) {
    rv = sha1(key->kid, strlen(key->kid), id);
    id_len = 20;
  }
  if (rv == CKR_OK && !(*out = keyent_pack(key, id, id_len, NULL, NULL)))
    rv = CKR_HOST_MEMORY;
out:
  free(spki);
  kv_key_free(key);
  return rv;
}

struct akv_keyent *akv_object_keyent_ref(struct akv_keyent *ke)
{
  if (ke)
    __atomic_add_fetch(&ke->refs, 1, __ATOMIC_ACQ_REL);
  return ke;
}

void akv_object_keyent_unref(struct akv_keyent *ke)
{
  if (!ke || __atomic_sub_fetch(&ke->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  EVP_PKEY_free(ke->pkey);
  free(ke);
}

/* The lock of a key entry's pkey: one of a few, by address, so an entry needs no mutex of its own
 * (sections are a pointer swap and a reference count). */
#define PKEY_LOCKS 16
static pthread_mutex_t pkey_locks[PKEY_LOCKS] = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *pkey_lock(const struct akv_keyent *ke)
{
  return &pkey_locks[((uintptr_t)ke >> 6) % PKEY_LOCKS];
}

int akv_object_has_pkey(const struct akv_object *obj)
{
  if (obj->keyent)
    return obj->keyent->key.kty == KV_KTY_RSA || obj->keyent->key.kty == KV_KTY_EC;
  return obj->pkey != NULL;
}

EVP_PKEY *akv_object_pkey(const struct akv_object *obj)
{
  struct akv_keyent *ke = obj->keyent;
  EVP_PKEY *pk = NULL, *built = NULL;

  if (!ke) {
    if (obj->pkey && EVP_PKEY_up_ref(obj->pkey))
      return obj->pkey;
    return NULL;
  }
  if (!akv_object_has_pkey(obj))
    return NULL;
  pthread_mutex_lock(pkey_lock(ke));
  if (ke->pkey && EVP_PKEY_up_ref(ke->pkey)) {
    pk = ke->pkey;
    ke->pkey_used = akv_now();
  }
  pthread_mutex_unlock(pkey_lock(ke));
  if (pk)
    return pk;
  /* Built outside the lock; a thread that lost the race frees its own. */
  if (kv_key_to_pkey(&ke->key, akv_libctx(), &built) != KV_OK)
    return NULL;
  pthread_mutex_lock(pkey_lock(ke));
  if (!ke->pkey) {
    ke->pkey = built;
    built = NULL;
  }
  if (EVP_PKEY_up_ref(ke->pkey))
    pk = ke->pkey;
  ke->pkey_used = akv_now();
  pthread_mutex_unlock(pkey_lock(ke));
  EVP_PKEY_free(built);
  return pk;
}

/* A refresh drops an EVP_PKEY not used for the slot's ttl (operations hold their own reference). */
static void pkey_expire(struct akv_keyent *ke, int64_t now, int64_t ttl)
{
  EVP_PKEY *drop = NULL;
  pthread_mutex_lock(pkey_lock(ke));
  if (ke->pkey && now - ke->pkey_used >= ttl) {
    drop = ke->pkey;
    ke->pkey = NULL;
  }
  pthread_mutex_unlock(pkey_lock(ke));
  EVP_PKEY_free(drop);
}

/* ---- token objects ------------------------------------------------------------------------- */

/* The handle registered for the slot, class and id (src/store/handles.h): stable across refreshes,
 * shared in one registry entry by the objects of the same id. */
static CK_RV assign_handle(struct akv_object *obj, const char *id)
{
  obj->handle = akv_handle_for(obj->slot->id, obj->cls, id);
  return obj->handle ? CKR_OK : CKR_HOST_MEMORY;
}

/* CKA_PRIVATE of the token objects of class cls on slot (docs/security.md "Login"): with login
 * required, private keys, secret keys and secrets (data objects) are private; public keys and
 * certificates never are; without login nothing is. */
static CK_BBOOL class_private(const struct akv_slot *slot, CK_OBJECT_CLASS cls)
{
  return slot->cfg->login_required &&
         (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY || cls == CKO_DATA);
}

static const char *class_name(CK_OBJECT_CLASS cls)
{
  switch (cls) {
  case CKO_PRIVATE_KEY:
    return "private key";
  case CKO_PUBLIC_KEY:
    return "public key";
  case CKO_SECRET_KEY:
    return "secret key";
  case CKO_CERTIFICATE:
    return "certificate";
  case CKO_DATA:
    return "data object";
  default:
    return "object";
  }
}

CK_RV akv_object_check_private(const struct akv_slot *slot, CK_OBJECT_CLASS cls,
                               const CK_ATTRIBUTE *t, CK_ULONG n)
{
  CK_BBOOL priv = class_private(slot, cls), want = priv;
  CK_RV rv = akv_attrs_tmpl_bool(t, n, CKA_PRIVATE, &want);

  if (rv != CKR_OK || want == priv)
    return rv;
  if (want && !slot->cfg->login_required)
    akv_err(AKV_LOGC_P11,
            "slot %lu: CKA_PRIVATE=TRUE asked for a %s, but the slot's login is "
            "\"none\", so nothing on it can be private; fix: set \"login\": \"required\" and a "
            "pin_hash for the slot (docs/config.md), or ask for CKA_PRIVATE=FALSE",
            (unsigned long)slot->id, class_name(cls));
  else if (want)
    akv_err(AKV_LOGC_P11,
            "slot %lu: CKA_PRIVATE=TRUE asked for a %s, which is always public; "
            "fix: ask for CKA_PRIVATE=FALSE or leave it out",
            (unsigned long)slot->id, class_name(cls));
  else
    akv_err(AKV_LOGC_P11,
            "slot %lu: CKA_PRIVATE=FALSE asked for a %s, but with login required "
            "private keys, secret keys and data objects are always private; fix: ask for "
            "CKA_PRIVATE=TRUE (pkcs11-tool --private) or leave it out",
            (unsigned long)slot->id, class_name(cls));
  return CKR_ATTRIBUTE_VALUE_INVALID;
}

static void common_storage_attrs(struct akv_attrs_builder *b, struct akv_object *obj,
                                 const char *label)
{
  const struct akv_slot_config *sc = obj->slot->cfg;
  obj->is_private = class_private(obj->slot, obj->cls);
  akv_attrs_add_ulong(b, CKA_CLASS, obj->cls);
  akv_attrs_add_bool(b, CKA_TOKEN, CK_TRUE);
  akv_attrs_add_bool(b, CKA_PRIVATE, obj->is_private);
  akv_attrs_add_bool(b, CKA_MODIFIABLE, CK_FALSE);
  akv_attrs_add_bool(b, CKA_COPYABLE, CK_FALSE);
  akv_attrs_add_bool(b, CKA_DESTROYABLE, sc->allow_destroy && !sc->read_only);
  akv_attrs_add_str(b, CKA_LABEL, label);
}

/* Records the source the object was built from, for the cache's carry-over rule (cache.c reuse). */
static CK_RV set_source(struct akv_object *obj, const char *src, int64_t created, int64_t updated)
{
  obj->src = strdup(src);
  if (!obj->src)
    return CKR_HOST_MEMORY;
  obj->src_created = created;
  obj->src_updated = updated;
  obj->src_fetched_at = akv_now();
  return CKR_OK;
}

static CK_RV finish_object(struct akv_object *obj, struct akv_attrs_builder *b, const char *src,
                           const char *id, int64_t created, int64_t updated)
{
  size_t n = 0;
  CK_RV rv = akv_attrs_finish(b, &obj->attrs, &n);
  obj->n_attrs = (uint32_t)n; /* a builder holds far fewer */
  if (rv == CKR_OK)
    rv = set_source(obj, src, created, updated);
  return rv == CKR_OK ? assign_handle(obj, id) : rv;
}

static CK_RV key_object(struct akv_slot *slot, struct akv_keyent *ke, CK_OBJECT_CLASS cls,
                        struct akv_object **out)
{
  const struct kv_key *k = &ke->key;
  struct akv_object *obj = object_alloc(slot, cls);
  unsigned ops = k->key_ops;
  CK_RV rv = CKR_HOST_MEMORY;

  if (!obj)
    goto out;
  obj->keyent = akv_object_keyent_ref(ke);
  obj->key = &ke->key;
  obj->key_type = k->kty == KV_KTY_RSA ? CKK_RSA : k->kty == KV_KTY_EC ? CKK_EC : CKK_AES;
  obj->is_private = class_private(slot, cls);
  if (k->kty == KV_KTY_RSA)
    obj->modulus_bits = bit_length(k->n, k->n_len);
  /* Each object carries the half of key_ops that belongs to its class. */
  if (cls != CKO_PUBLIC_KEY) {
    obj->can_sign = (ops & KV_OP_SIGN) != 0;
    obj->can_decrypt = (ops & KV_OP_DECRYPT) != 0;
    obj->can_unwrap = (ops & KV_OP_UNWRAP) != 0;
  }
  if (cls != CKO_PRIVATE_KEY) {
    obj->can_verify = (ops & KV_OP_VERIFY) != 0;
    obj->can_encrypt = (ops & KV_OP_ENCRYPT) != 0;
    obj->can_wrap = (ops & KV_OP_WRAP) != 0;
  }
  rv = CKR_DEVICE_ERROR;
  if (cls != CKO_SECRET_KEY &&
      (k->kty == KV_KTY_RSA ? !k->n || !k->e
                            : !ec_point_der(k, NULL, 0) || !akv_object_key_spki(k, NULL, 0)))
    goto out;
  /* The source id and label live in the key entry, shared by both objects. */
  obj->src = (char *)ke->src;
  obj->src_created = k->attrs.created;
  obj->src_updated = k->attrs.updated;
  obj->src_fetched_at = akv_now();
  rv = assign_handle(obj, k->kid);
out:
  return hand_over(obj, rv, out);
}

CK_RV akv_objects_from_key(struct akv_slot *slot, struct akv_keyent *ke, const char *label,
                           const char *src, struct akv_object **out, size_t *n)
{
  struct akv_keyent *own = NULL;
  CK_RV rv;

  *n = 0;
  if (!ke->src || !ke->label || strcmp(ke->src, src) != 0 || strcmp(ke->label, label) != 0) {
    own = keyent_pack(&ke->key, ke->id, ke->id_len, label, src);
    if (!own)
      return CKR_HOST_MEMORY;
    ke = own;
  }
  if (ke->key.kty == KV_KTY_OCT) {
    rv = key_object(slot, ke, CKO_SECRET_KEY, &out[0]);
    if (rv == CKR_OK)
      *n = 1;
    goto out;
  }
  rv = key_object(slot, ke, CKO_PRIVATE_KEY, &out[0]);
  if (rv != CKR_OK)
    goto out;
  rv = key_object(slot, ke, CKO_PUBLIC_KEY, &out[1]);
  if (rv != CKR_OK) {
    akv_object_unref(out[0]);
    out[0] = NULL;
    goto out;
  }
  *n = 2;
out:
  akv_object_keyent_unref(own);
  return rv;
}

/* DER of an OpenSSL object through its i2d function, into the builder. */
#define AB_I2D(b, type, fn, x)                                                                     \
  do {                                                                                             \
    unsigned char *der_ = NULL;                                                                    \
    int len_ = fn((x), &der_);                                                                     \
    if (len_ < 0) {                                                                                \
      rv = CKR_DEVICE_ERROR;                                                                       \
      goto out;                                                                                    \
    }                                                                                              \
    akv_attrs_add_bytes((b), (type), der_, (size_t)len_);                                          \
    OPENSSL_free(der_);                                                                            \
  } while (0)

CK_RV akv_object_from_cert(struct akv_slot *slot, const struct kv_cert *cert, const char *src,
                           struct akv_object **out)
{
  struct akv_object *obj = object_alloc(slot, CKO_CERTIFICATE);
  struct akv_attrs_builder b;
  X509 *x = NULL;
  const unsigned char *p;
  unsigned char *spki = NULL;
  unsigned char md[20];
  int spki_len;
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  if (!obj)
    goto out;
  x = X509_new_ex(akv_libctx(), NULL);
  if (!x)
    goto out;
  p = cert->der;
  if (!cert->der || cert->der_len > LONG_MAX || !d2i_X509(&x, &p, (long)cert->der_len)) {
    akv_warn(AKV_LOGC_CACHE, "certificate %s: `cer` is not DER X.509", cert->id);
    rv = CKR_DEVICE_ERROR;
    goto out;
  }
  spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
  if (spki_len <= 0) {
    rv = CKR_DEVICE_ERROR;
    goto out;
  }
  rv = sha1(spki, (size_t)spki_len, md);
  if (rv != CKR_OK)
    goto out;
  common_storage_attrs(&b, obj, cert->name);
  akv_attrs_add_ulong(&b, CKA_CERTIFICATE_TYPE, CKC_X_509);
  akv_attrs_add_bool(&b, CKA_TRUSTED, CK_FALSE);
  /* A vault certificate always has its key in the vault: a token user certificate. */
  akv_attrs_add_ulong(&b, CKA_CERTIFICATE_CATEGORY, cert->kid ? 1 : 0);
  akv_attrs_add_bytes(&b, CKA_ID, md, sizeof(md));
  /* A certificate tagged with its key's CKA_ID keeps pairing with it. */
  akv_object_apply_tag_id(&b, &cert->attrs);
  akv_attrs_add_bytes(&b, CKA_VALUE, cert->der, cert->der_len);
  akv_attrs_add_bytes(&b, CKA_PUBLIC_KEY_INFO, spki, (size_t)spki_len);
  AB_I2D(&b, CKA_SUBJECT, i2d_X509_NAME, X509_get_subject_name(x));
  AB_I2D(&b, CKA_ISSUER, i2d_X509_NAME, X509_get_issuer_name(x));
  AB_I2D(&b, CKA_SERIAL_NUMBER, i2d_ASN1_INTEGER, X509_get0_serialNumber(x));
  rv = sha1(cert->der, cert->der_len, md);
  if (rv != CKR_OK)
    goto out;
  /* CKA_CHECK_VALUE of a certificate: the first three bytes of the SHA-1 of its value. */
  akv_attrs_add_bytes(&b, CKA_CHECK_VALUE, md, 3);
  akv_attrs_add_date(&b, CKA_START_DATE, cert->attrs.nbf);
  akv_attrs_add_date(&b, CKA_END_DATE, cert->attrs.exp);
  akv_attrs_add_ulong(&b, CKA_JAVA_MIDP_SECURITY_DOMAIN, 0);
  akv_attrs_add_bytes(&b, CKA_URL, "", 0);
  akv_attrs_add_str(&b, CKA_AKV_KID, cert->id);
  akv_attrs_add_str(&b, CKA_AKV_VERSION, cert->version);
  rv = finish_object(obj, &b, src, cert->id, cert->attrs.created, cert->attrs.updated);
out:
  OPENSSL_free(spki);
  X509_free(x);
  akv_attrs_free(b.v, b.n);
  return hand_over(obj, rv, out);
}

CK_RV akv_object_from_secret(struct akv_slot *slot, const struct kv_item *item, const char *src,
                             struct akv_object **out)
{
  struct akv_object *obj = object_alloc(slot, CKO_DATA);
  struct akv_attrs_builder b;
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  if (!obj)
    goto out;
  obj->val = calloc(1, sizeof(*obj->val));
  if (!obj->val)
    goto out;
  if (pthread_mutex_init(&obj->val->lock, NULL) != 0) {
    free(obj->val);
    obj->val = NULL;
    goto out;
  }
  obj->val->secret_name = strdup(item->name);
  if (!obj->val->secret_name)
    goto out;
  common_storage_attrs(&b, obj, item->name);
  akv_attrs_add_str(&b, CKA_APPLICATION, SECRET_APPLICATION);
  akv_attrs_add_bytes(&b, CKA_OBJECT_ID, "", 0);
  akv_attrs_add_str(&b, CKA_AKV_KID, item->id);
  akv_attrs_add_str(&b, CKA_AKV_VERSION, item->version ? item->version : "");
  rv = finish_object(obj, &b, src, item->id, item->attrs.created, item->attrs.updated);
out:
  akv_attrs_free(b.v, b.n);
  return hand_over(obj, rv, out);
}

/* ---- attestation objects (Managed HSM) ------------------------------------------------------ */

/* The attestation data object of the key entry: public, labelled "LABEL attestation", of the
 * key's source and version (it follows the key's refreshes and rotations); the attestation's
 * content is read at the first read of its CKA_VALUE (src/store/attest.c). */
static CK_RV attest_object(struct akv_slot *slot, const struct akv_keyent *ke,
                           struct akv_attest *att, struct akv_object **out)
{
  static const CK_BBOOL no = CK_FALSE;
  const struct kv_key *k = &ke->key;
  struct akv_object *obj = object_alloc(slot, CKO_DATA);
  struct akv_attrs_builder b;
  char label[1100], id[2100];
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  if (!obj)
    goto out;
  obj->att = akv_attest_ref(att);
  snprintf(label, sizeof(label), "%s%s", ke->label, AKV_ATTESTATION_LABEL_SUFFIX);
  common_storage_attrs(&b, obj, label);
  /* Evidence for a third party, like a certificate: never private, never destroyed alone. */
  obj->is_private = CK_FALSE;
  akv_attrs_set(&b, CKA_PRIVATE, &no, sizeof(no));
  akv_attrs_set(&b, CKA_DESTROYABLE, &no, sizeof(no));
  akv_attrs_add_bool(&b, CKA_AKV_ATTESTATION, CK_TRUE);
  akv_attrs_add_str(&b, CKA_AKV_KID, k->kid);
  akv_attrs_add_str(&b, CKA_AKV_VERSION, k->version);
  akv_attrs_add_str(&b, CKA_APPLICATION, AKV_ATTESTATION_APPLICATION);
  akv_attrs_add_bytes(&b, CKA_OBJECT_ID, "", 0);
  snprintf(id, sizeof(id), "%s#attestation", k->kid ? k->kid : "");
  rv = finish_object(obj, &b, ke->src, id, k->attrs.created, k->attrs.updated);
out:
  akv_attrs_free(b.v, b.n);
  return hand_over(obj, rv, out);
}

CK_RV akv_objects_attest(const struct akv_object *key_obj, struct akv_object **out, size_t *n)
{
  const struct akv_keyent *ke = key_obj->keyent;
  struct akv_slot *slot = key_obj->slot;
  struct akv_attest *att;
  unsigned char *spki = NULL;
  size_t spki_len = 0;
  CK_RV rv = CKR_OK;

  *n = 0;
  if (!ke || !ke->src || !ke->label || slot->cfg->kind != AKV_VAULT_MHSM || !ke->key.version)
    return CKR_OK;
  if (ke->key.kty != KV_KTY_OCT) {
    spki_len = akv_object_key_spki(&ke->key, NULL, 0);
    if (!spki_len)
      return CKR_OK;
    if (!(spki = malloc(spki_len)))
      return CKR_HOST_MEMORY;
    akv_object_key_spki(&ke->key, spki, spki_len);
  }
  att = akv_attest_new(slot, ke->key.name, ke->key.version, ke->key.kid, spki, spki_len);
  free(spki);
  if (!att)
    return CKR_HOST_MEMORY;
  /* The service's attestation (MRVL-1) has no key certificate: the data object only, never a
   * certificate with another public key under the key's CKA_ID (docs/design.md "Decisions"). */
  rv = attest_object(slot, ke, att, &out[(*n)++]);
  if (rv != CKR_OK) {
    (*n)--; /* the failed one was dropped by hand_over */
    while (*n)
      akv_object_unref(out[--*n]);
  }
  akv_attest_unref(att);
  return rv;
}

/* ---- session secret keys --------------------------------------------------------------------- */

static int session_attr_known(CK_ATTRIBUTE_TYPE t)
{
  switch (t) {
  case CKA_CLASS:
  case CKA_KEY_TYPE:
  case CKA_TOKEN:
  case CKA_PRIVATE:
  case CKA_LABEL:
  case CKA_ID:
  case CKA_VALUE:
  case CKA_VALUE_LEN:
  case CKA_ENCRYPT:
  case CKA_DECRYPT:
  case CKA_WRAP:
  case CKA_UNWRAP:
  case CKA_SIGN:
  case CKA_VERIFY:
  case CKA_DERIVE:
  case CKA_SENSITIVE:
  case CKA_EXTRACTABLE:
  case CKA_MODIFIABLE:
  case CKA_COPYABLE:
  case CKA_DESTROYABLE:
  case CKA_START_DATE:
  case CKA_END_DATE:
  case CKA_WRAP_WITH_TRUSTED:
  case CKA_TRUSTED:
  case CKA_APPLICATION:
  case CKA_ALLOWED_MECHANISMS:
    return 1;
  default:
    return 0;
  }
}

struct akv_object *akv_object_new_session_secret(struct akv_slot *slot, CK_KEY_TYPE type,
                                                 const unsigned char *value, size_t len,
                                                 const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_RV *rv)
{
  struct akv_object *obj = NULL;
  struct akv_attrs_builder b;
  CK_ULONG cls = CKO_SECRET_KEY, kt = type, vlen = len;
  CK_BBOOL token = CK_FALSE, priv, sensitive = CK_FALSE, extractable = CK_TRUE;
  CK_BBOOL enc = CK_TRUE, dec = CK_TRUE, wrap = CK_TRUE, unwrap = CK_TRUE, sign = CK_TRUE,
           verify = CK_TRUE, derive = CK_FALSE, destroyable = CK_TRUE;
  CK_BBOOL wrap_trusted = CK_FALSE, trusted = CK_FALSE;
  const CK_ATTRIBUTE *a;
  CK_ULONG i;
  size_t n_attrs = 0;
  CK_RV r = CKR_OK;

  memset(&b, 0, sizeof(b));
  if (!slot || (!value && len) || (!tmpl && n)) {
    r = CKR_ARGUMENTS_BAD;
    goto out;
  }
  /* Session secret keys are private by default where there is a login (the caller may ask for a
   * public one); a token without login cannot make one private (docs/security.md "Login"). */
  priv = slot->cfg->login_required ? CK_TRUE : CK_FALSE;
  if ((type == CKK_AES && len != 16 && len != 24 && len != 32) ||
      (type == CKK_GENERIC_SECRET && (len == 0 || len > UINT32_MAX)) ||
      (type != CKK_AES && type != CKK_GENERIC_SECRET)) {
    r = type == CKK_AES || type == CKK_GENERIC_SECRET ? CKR_ATTRIBUTE_VALUE_INVALID
                                                      : CKR_TEMPLATE_INCONSISTENT;
    goto out;
  }
  for (i = 0; i < n; i++) {
    if (!session_attr_known(tmpl[i].type)) {
      r = CKR_ATTRIBUTE_TYPE_INVALID;
      goto out;
    }
  }
  if ((r = akv_attrs_tmpl_ulong(tmpl, n, CKA_CLASS, &cls)) != CKR_OK ||
      (r = akv_attrs_tmpl_ulong(tmpl, n, CKA_KEY_TYPE, &kt)) != CKR_OK ||
      (r = akv_attrs_tmpl_ulong(tmpl, n, CKA_VALUE_LEN, &vlen)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_TOKEN, &token)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_PRIVATE, &priv)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_SENSITIVE, &sensitive)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_EXTRACTABLE, &extractable)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_ENCRYPT, &enc)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_DECRYPT, &dec)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_WRAP, &wrap)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_UNWRAP, &unwrap)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_SIGN, &sign)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_VERIFY, &verify)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_DERIVE, &derive)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_DESTROYABLE, &destroyable)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_WRAP_WITH_TRUSTED, &wrap_trusted)) != CKR_OK ||
      (r = akv_attrs_tmpl_bool(tmpl, n, CKA_TRUSTED, &trusted)) != CKR_OK)
    goto out;
  /* Only the security officer may set CKA_TRUSTED, and this token has none. */
  if (trusted) {
    r = CKR_ATTRIBUTE_READ_ONLY;
    goto out;
  }
  /* Session keys live in memory only: a token key, a derive key or another class cannot be. */
  if (cls != CKO_SECRET_KEY || kt != type || vlen != len || token || derive) {
    r = CKR_TEMPLATE_INCONSISTENT;
    goto out;
  }
  if (priv && !slot->cfg->login_required) {
    r = akv_object_check_private(slot, CKO_SECRET_KEY, tmpl, n);
    goto out;
  }
  if (priv) {
    akv_lock();
    if (!slot->logged_in)
      r = CKR_USER_NOT_LOGGED_IN;
    akv_unlock();
    if (r != CKR_OK)
      goto out;
  }
  r = CKR_HOST_MEMORY;
  obj = object_alloc(slot, CKO_SECRET_KEY);
  if (!obj)
    goto out;
  obj->key_type = type;
  obj->is_private = priv;
  obj->secret = malloc(len ? len : 1);
  if (!obj->secret)
    goto out;
  if (len)
    memcpy(obj->secret, value, len);
  obj->secret_len = (uint32_t)len; /* bounded above */
  obj->can_encrypt = enc;
  obj->can_decrypt = dec;
  obj->can_wrap = wrap;
  obj->can_unwrap = unwrap;
  obj->can_sign = sign;
  obj->can_verify = verify;

  akv_attrs_add_ulong(&b, CKA_CLASS, CKO_SECRET_KEY);
  akv_attrs_add_ulong(&b, CKA_KEY_TYPE, type);
  akv_attrs_add_bool(&b, CKA_TOKEN, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_PRIVATE, priv);
  akv_attrs_add_bool(&b, CKA_MODIFIABLE, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_COPYABLE, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_DESTROYABLE, destroyable);
  akv_attrs_add_bytes(&b, CKA_LABEL, "", 0);
  akv_attrs_add_bytes(&b, CKA_ID, "", 0);
  akv_attrs_add_date(&b, CKA_START_DATE, 0);
  akv_attrs_add_date(&b, CKA_END_DATE, 0);
  akv_attrs_add_bool(&b, CKA_DERIVE, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_LOCAL, CK_FALSE);
  akv_attrs_add_ulong(&b, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  akv_attrs_add_ulong(&b, CKA_VALUE_LEN, (CK_ULONG)len);
  akv_attrs_add_bool(&b, CKA_SENSITIVE, sensitive);
  akv_attrs_add_bool(&b, CKA_EXTRACTABLE, extractable);
  /* The value came in as plaintext (C_CreateObject, C_UnwrapKey): it has been outside. */
  akv_attrs_add_bool(&b, CKA_ALWAYS_SENSITIVE, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_NEVER_EXTRACTABLE, CK_FALSE);
  akv_attrs_add_bool(&b, CKA_ENCRYPT, enc);
  akv_attrs_add_bool(&b, CKA_DECRYPT, dec);
  akv_attrs_add_bool(&b, CKA_WRAP, wrap);
  akv_attrs_add_bool(&b, CKA_UNWRAP, unwrap);
  akv_attrs_add_bool(&b, CKA_SIGN, sign);
  akv_attrs_add_bool(&b, CKA_VERIFY, verify);
  akv_attrs_add_bool(&b, CKA_WRAP_WITH_TRUSTED,
                     wrap_trusted); /* enforced by C_WrapKey (op_wrap.c) */
  akv_attrs_add_bool(&b, CKA_TRUSTED, CK_FALSE);
  /* Free-form attributes the caller chose. */
  if ((a = akv_attrs_tmpl_find(tmpl, n, CKA_LABEL)) && (a->pValue || !a->ulValueLen))
    akv_attrs_set(&b, CKA_LABEL, a->pValue, a->ulValueLen);
  if ((a = akv_attrs_tmpl_find(tmpl, n, CKA_ID)) && (a->pValue || !a->ulValueLen))
    akv_attrs_set(&b, CKA_ID, a->pValue, a->ulValueLen);
  /* The mechanisms the caller allows (mech.c enforces them at *Init). */
  if ((a = akv_attrs_tmpl_find(tmpl, n, CKA_ALLOWED_MECHANISMS))) {
    if ((!a->pValue && a->ulValueLen) || a->ulValueLen % sizeof(CK_MECHANISM_TYPE)) {
      r = CKR_ATTRIBUTE_VALUE_INVALID;
      goto out;
    }
    akv_attrs_set(&b, CKA_ALLOWED_MECHANISMS, a->pValue, a->ulValueLen);
  }
  if ((a = akv_attrs_tmpl_find(tmpl, n, CKA_START_DATE)) && a->pValue &&
      a->ulValueLen == sizeof(CK_DATE))
    akv_attrs_set(&b, CKA_START_DATE, a->pValue, a->ulValueLen);
  if ((a = akv_attrs_tmpl_find(tmpl, n, CKA_END_DATE)) && a->pValue &&
      a->ulValueLen == sizeof(CK_DATE))
    akv_attrs_set(&b, CKA_END_DATE, a->pValue, a->ulValueLen);
  r = akv_attrs_finish(&b, &obj->attrs, &n_attrs);
  obj->n_attrs = (uint32_t)n_attrs;
out:
  akv_attrs_free(b.v, b.n);
  if (r != CKR_OK) {
    akv_object_unref(obj);
    obj = NULL;
  }
  if (rv)
    *rv = r;
  return obj;
}

/* ---- attribute reads ------------------------------------------------------------------------- */

/* The value of a secret, fetched on first read and kept for the slot's secret TTL. Returns a copy
 * the caller wipes, so the value's lock is not held across the copy-out. */
static CK_RV secret_value(struct akv_object *obj, unsigned char **val, size_t *len,
                          struct akv_fetch_status *failed)
{
  struct akv_objval *v = obj->val;
  struct kv_secret *sec = NULL;
  int64_t now = akv_now();
  long http = 0;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  pthread_mutex_lock(&v->lock);
  if (v->value && now - v->fetched_at >= obj->slot->cfg->secret_ttl_s)
    value_drop_inlock(v); /* expired: wiped now, fetched again below */
  if (v->value)
    goto copy;
  pthread_mutex_unlock(&v->lock);

  rc = kv_get_secret(obj->slot->client, v->secret_name, NULL, &sec, &http);
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "secret %s: %s", v->secret_name, kv_rc_str(rc));
    /* The caller records the failure on its session (akv_session_fetch_failed). */
    failed->rc = rc;
    failed->http_status = http;
    return akv_rv_object(rc);
  }
  pthread_mutex_lock(&v->lock);
  /* Another thread may have fetched it meanwhile; keep one value, wipe the other (kv_secret_free).
   */
  if (!v->value && akv_handles_secret_take()) {
    v->value = sec->value;
    v->value_len = sec->value_len;
    v->fetched_at = now;
    sec->value = NULL;
    sec->value_len = 0;
  }
  if (!v->value) {
    /* Over the bound of cached values: serve this read without keeping the value. */
    *val = malloc(sec->value_len ? sec->value_len : 1);
    if (*val && sec->value_len)
      memcpy(*val, sec->value, sec->value_len);
    *len = sec->value_len;
    rv = *val ? CKR_OK : CKR_HOST_MEMORY;
    goto out;
  }
copy:
  *val = malloc(v->value_len ? v->value_len : 1);
  if (*val && v->value_len)
    memcpy(*val, v->value, v->value_len);
  *len = v->value_len;
  rv = *val ? CKR_OK : CKR_HOST_MEMORY;
out:
  pthread_mutex_unlock(&v->lock);
  kv_secret_free(sec);
  return rv;
}

void akv_object_expire_value(struct akv_object *obj, int64_t now)
{
  if (obj->keyent && obj->keyent->pkey)
    pkey_expire(obj->keyent, now, obj->slot->cfg->ttl_s);
  if (obj->cls != CKO_DATA || !obj->val)
    return;
  pthread_mutex_lock(&obj->val->lock);
  if (obj->val->value && now - obj->val->fetched_at >= obj->slot->cfg->secret_ttl_s)
    value_drop_inlock(obj->val);
  pthread_mutex_unlock(&obj->val->lock);
}

static int is_lazy_value(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  return obj->cls == CKO_DATA && obj->val && type == CKA_VALUE;
}

/* ---- attributes of vault keys, built when asked -------------------------------------------- */

/* Large enough for every value of a key object: an RSA-16384 SPKI is 2,094 bytes. */
#define KEY_ATTR_MAX 2304

/* A value kept in the key entry (or static): *p points at it ("" for an absent string). */
static long stored(const void *ptr, size_t len, const void **p)
{
  *p = ptr ? ptr : "";
  return (long)len;
}

/* The value of a vault key object's attribute: its length, or -1 when the object has none. *p
 * points at it: into the key entry when stored there, else at buf, where it was written (when
 * cap is too small for it, *p is NULL and only the length is returned). The values are those
 * the object had when its attributes were built once (docs/performance.md "Memory per cached
 * key"). */
static long key_attr(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type, unsigned char *buf,
                     size_t cap, const void **p)
{
  const struct akv_keyent *ke = obj->keyent;
  const struct kv_key *k = &ke->key;
  const struct akv_slot_config *sc = obj->slot->cfg;
  CK_OBJECT_CLASS cls = obj->cls;
  int priv = cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
  int pub = cls == CKO_PUBLIC_KEY || cls == CKO_SECRET_KEY;
  int asym = cls != CKO_SECRET_KEY;
  const unsigned char *v = NULL;
  size_t len = 0;
  CK_ULONG ul;
  CK_BBOOL bo;
  CK_DATE d;

  *p = NULL;
#define UL(x) (ul = (CK_ULONG)(x), v = (const unsigned char *)&ul, len = sizeof(ul))
#define BO(x) (bo = (x) ? CK_TRUE : CK_FALSE, v = &bo, len = sizeof(bo))
#define STORED(ptr, n) stored((ptr), (n), p)
#define STR(str) stored((str), (str) ? strlen(str) : 0, p)
  switch (type) {
  case CKA_CLASS:
    UL(cls);
    break;
  case CKA_TOKEN:
    BO(1);
    break;
  case CKA_PRIVATE:
    BO(obj->is_private);
    break;
  case CKA_MODIFIABLE:
  case CKA_COPYABLE:
  case CKA_DERIVE:
  case CKA_LOCAL: /* Key Vault does not say whether a key was generated there or imported */
    BO(0);
    break;
  case CKA_DESTROYABLE:
    BO(sc->allow_destroy && !sc->read_only);
    break;
  case CKA_LABEL:
    return STR(ke->label);
  case CKA_KEY_TYPE:
    UL(obj->key_type);
    break;
  case CKA_ID:
    return STORED(ke->id, ke->id_len);
  case CKA_START_DATE:
  case CKA_END_DATE:
    len = akv_attrs_date_value(type == CKA_START_DATE ? k->attrs.nbf : k->attrs.exp, &d);
    v = len ? (const unsigned char *)&d : (const unsigned char *)"";
    break;
  case CKA_KEY_GEN_MECHANISM:
    UL(CK_UNAVAILABLE_INFORMATION);
    break;
  case CKA_AKV_KID:
    return STR(k->kid);
  case CKA_AKV_VERSION:
    return STR(k->version);
  case CKA_AKV_HSM:
    BO(k->hsm);
    break;
  case CKA_ALLOWED_MECHANISMS:
    if (obj->key_type == CKK_RSA)
      return STORED(rsa_mechs, sizeof(rsa_mechs));
    if (obj->key_type == CKK_EC)
      return STORED(ec_mechs, sizeof(ec_mechs));
    return STORED(aes_mechs, sizeof(aes_mechs));
  case CKA_SENSITIVE:
  case CKA_EXTRACTABLE:
  case CKA_ALWAYS_SENSITIVE:
  case CKA_NEVER_EXTRACTABLE:
  case CKA_WRAP_WITH_TRUSTED:
  case CKA_ALWAYS_AUTHENTICATE:
    if (!priv)
      return -1;
    if (type == CKA_SENSITIVE) {
      BO(1);
    } else if (type == CKA_ALWAYS_SENSITIVE || type == CKA_NEVER_EXTRACTABLE) {
      /* Material that is or was exportable (secure key release, "export" in key_ops, a software
       * key behind a certificate whose policy may export it) has been, or may be, outside the
       * vault (docs/security.md "Key attributes"). */
      BO(!k->attrs.exportable && !(k->key_ops & KV_OP_EXPORT) && !(k->attrs.managed && !k->hsm));
    } else {
      BO(0);
    }
    break;
  case CKA_SIGN:
  case CKA_DECRYPT:
  case CKA_UNWRAP:
    if (!priv)
      return -1;
    BO(type == CKA_SIGN ? obj->can_sign : type == CKA_DECRYPT ? obj->can_decrypt : obj->can_unwrap);
    break;
  case CKA_VERIFY:
  case CKA_ENCRYPT:
  case CKA_WRAP:
  case CKA_TRUSTED:
    if (!pub)
      return -1;
    BO(type == CKA_VERIFY    ? obj->can_verify
       : type == CKA_ENCRYPT ? obj->can_encrypt
       : type == CKA_WRAP    ? obj->can_wrap
                             : 0);
    break;
  case CKA_SUBJECT:
    if (!asym)
      return -1;
    return STORED("", 0);
  case CKA_SIGN_RECOVER:
  case CKA_VERIFY_RECOVER:
    if (cls != (type == CKA_SIGN_RECOVER ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY))
      return -1;
    BO(0);
    break;
  case CKA_MODULUS:
  case CKA_PUBLIC_EXPONENT:
    if (!asym || obj->key_type != CKK_RSA)
      return -1;
    v = type == CKA_MODULUS ? k->n : k->e;
    len = type == CKA_MODULUS ? k->n_len : k->e_len;
    v = strip_zeros(v, &len);
    return STORED(v, len);
  case CKA_MODULUS_BITS:
    if (!asym || obj->key_type != CKK_RSA)
      return -1;
    UL(obj->modulus_bits);
    break;
  case CKA_EC_PARAMS:
    if (!asym || obj->key_type != CKK_EC)
      return -1;
    v = kv_crv_oid_der(k->crv, &len);
    return STORED(v, len);
  case CKA_EC_POINT:
    if (!asym || obj->key_type != CKK_EC)
      return -1;
    len = ec_point_der(k, buf, cap);
    *p = len <= cap ? buf : NULL;
    return (long)len;
  case CKA_PUBLIC_KEY_INFO:
    if (!asym)
      return -1;
    len = akv_object_key_spki(k, buf, cap);
    *p = len <= cap ? buf : NULL;
    return (long)len;
  default:
    return -1;
  }
#undef UL
#undef BO
#undef STORED
#undef STR
  if (len > cap)
    return (long)len;
  if (len)
    memcpy(buf, v, len);
  *p = buf;
  return (long)len;
}

/* Every attribute a key object may have, for akv_object_size. */
static const CK_ATTRIBUTE_TYPE key_attr_types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_LABEL,
    CKA_KEY_TYPE,
    CKA_ID,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_DERIVE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_AKV_KID,
    CKA_AKV_VERSION,
    CKA_AKV_HSM,
    CKA_ALLOWED_MECHANISMS,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_SIGN,
    CKA_DECRYPT,
    CKA_UNWRAP,
    CKA_VERIFY,
    CKA_ENCRYPT,
    CKA_WRAP,
    CKA_TRUSTED,
    CKA_SUBJECT,
    CKA_SIGN_RECOVER,
    CKA_VERIFY_RECOVER,
    CKA_MODULUS,
    CKA_PUBLIC_EXPONENT,
    CKA_MODULUS_BITS,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_PUBLIC_KEY_INFO,
};

/* akv_object_attr's storage for values built on demand: a few per thread, reused in turn. */
#define ATTR_RING 4
static __thread struct {
  CK_ATTRIBUTE a;
  unsigned char buf[256];
} attr_ring[ATTR_RING];
static __thread unsigned attr_next;

const CK_ATTRIBUTE *akv_object_attr(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  unsigned i;
  const void *p;
  long len;

  if (!obj->keyent)
    return akv_attrs_find(obj->attrs, obj->n_attrs, type);
  i = attr_next++ % ATTR_RING;
  len = key_attr(obj, type, attr_ring[i].buf, sizeof(attr_ring[i].buf), &p);
  if (len < 0)
    return NULL;
  attr_ring[i].a.type = type;
  attr_ring[i].a.pValue = (void *)p;
  attr_ring[i].a.ulValueLen = (CK_ULONG)len;
  return &attr_ring[i].a;
}

/* Sensitive for this object: key material of private keys and of secret keys that are sensitive
 * or not extractable (session keys may be neither). */
static int attr_hidden(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  const CK_ATTRIBUTE *a;
  if (!akv_attrs_is_sensitive(obj->cls, type))
    return 0;
  if (obj->cls == CKO_SECRET_KEY && obj->secret) {
    a = akv_object_attr(obj, CKA_SENSITIVE);
    if (a && *(CK_BBOOL *)a->pValue)
      return 1;
    a = akv_object_attr(obj, CKA_EXTRACTABLE);
    return !(a && *(CK_BBOOL *)a->pValue);
  }
  return 1;
}

/* The value of a non-lazy attribute: *p and its length, -1 when the object has none. buf (cap
 * bytes) holds values built on demand. */
static long attr_value(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type, unsigned char *buf,
                       size_t cap, const void **p)
{
  const CK_ATTRIBUTE *a;
  if (obj->keyent)
    return key_attr(obj, type, buf, cap, p);
  a = akv_attrs_find(obj->attrs, obj->n_attrs, type);
  if (!a)
    return -1;
  *p = a->pValue;
  return (long)a->ulValueLen;
}

/* A lazy attribute of an attestation object (src/store/attest.h). */
static CK_RV attest_value(struct akv_object *obj, CK_ATTRIBUTE_TYPE type, const void **p,
                          size_t *len, struct akv_fetch_status *failed)
{
  kv_rc rc = KV_OK;
  long http = 0;
  CK_RV rv = akv_attest_value(obj->att, obj->cls, type, p, len, &rc, &http);
  if (rc != KV_OK) {
    failed->rc = rc;
    failed->http_status = http;
  }
  return rv;
}

CK_RV akv_object_get_attrs(struct akv_object *obj, CK_ATTRIBUTE *t, CK_ULONG n,
                           struct akv_fetch_status *failed)
{
  unsigned char buf[KEY_ATTR_MAX];
  CK_RV rv = CKR_OK, r;
  CK_ULONG i;
  const void *p;
  unsigned char *val;
  size_t len;
  long alen;

  /* A refused attestation's objects are gone (docs/usage.md "Key attestation for a CA"). */
  if (obj->att && akv_attest_refused(obj->att))
    return CKR_OBJECT_HANDLE_INVALID;
  for (i = 0; i < n; i++) {
    if (attr_hidden(obj, t[i].type)) {
      r = akv_attrs_unavailable(&t[i], CKR_ATTRIBUTE_SENSITIVE);
    } else if (obj->att && akv_attest_lazy(obj->cls, t[i].type)) {
      r = attest_value(obj, t[i].type, &p, &len, failed);
      if (r == CKR_OBJECT_HANDLE_INVALID)
        return r;
      r = r == CKR_OK ? akv_attrs_copy_out(&t[i], p, (CK_ULONG)len)
                      : akv_attrs_unavailable(&t[i], r);
    } else if (obj->cls == CKO_SECRET_KEY && obj->secret && t[i].type == CKA_VALUE) {
      r = akv_attrs_copy_out(&t[i], obj->secret, (CK_ULONG)obj->secret_len);
    } else if (is_lazy_value(obj, t[i].type)) {
      val = NULL;
      len = 0;
      r = secret_value(obj, &val, &len, failed);
      if (r == CKR_OK)
        r = akv_attrs_copy_out(&t[i], val, (CK_ULONG)len);
      else
        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
      if (val) {
        OPENSSL_cleanse(val, len);
        free(val);
      }
    } else if ((alen = attr_value(obj, t[i].type, buf, sizeof(buf), &p)) >= 0) {
      /* A value larger than buf cannot be: KEY_ATTR_MAX holds the largest key the parser takes. */
      r = p ? akv_attrs_copy_out(&t[i], p, (CK_ULONG)alen)
            : akv_attrs_unavailable(&t[i], CKR_GENERAL_ERROR);
    } else {
      r = akv_attrs_unavailable(&t[i], CKR_ATTRIBUTE_TYPE_INVALID);
    }
    rv = akv_attrs_rv_merge(rv, r);
  }
  return rv;
}

CK_ULONG akv_object_size(const struct akv_object *obj)
{
  unsigned char buf[KEY_ATTR_MAX];
  const void *p;
  CK_ULONG sum = 0;
  size_t i;
  long len;

  if (obj->keyent) {
    for (i = 0; i < sizeof(key_attr_types) / sizeof(key_attr_types[0]); i++) {
      len = key_attr(obj, key_attr_types[i], buf, sizeof(buf), &p);
      if (len > 0)
        sum += (CK_ULONG)len;
    }
    return sum;
  }
  for (i = 0; i < obj->n_attrs; i++)
    sum += obj->attrs[i].ulValueLen;
  return sum + (CK_ULONG)obj->secret_len;
}

/* ---- template matching ------------------------------------------------------------------ */

/* A template matches when every attribute exists on the object with the same bytes; unknown or
 * sensitive attributes never match. A key object's values are built into buf one at a time, and
 * the first mismatch ends the match (CKA_CLASS and CKA_LABEL, which most searches give, cost a
 * compare each). */
int akv_object_matches(struct akv_object *obj, const CK_ATTRIBUTE *t, CK_ULONG n,
                       struct akv_fetch_status *failed)
{
  unsigned char buf[KEY_ATTR_MAX];
  const void *p;
  unsigned char *val;
  size_t len;
  long alen;
  int ok;
  CK_ULONG i;

  /* Attestation objects: only for searches that ask for them, never once refused. */
  if (obj->att && (!akv_attest_asked(t, n) || akv_attest_refused(obj->att)))
    return 0;
  for (i = 0; i < n; i++) {
    if (attr_hidden(obj, t[i].type))
      return 0;
    if (obj->att && akv_attest_lazy(obj->cls, t[i].type)) {
      if (attest_value(obj, t[i].type, &p, &len, failed) != CKR_OK || len != t[i].ulValueLen ||
          (len && memcmp(p, t[i].pValue, len) != 0))
        return 0;
      continue;
    }
    if (obj->cls == CKO_SECRET_KEY && obj->secret && t[i].type == CKA_VALUE) {
      if (t[i].ulValueLen != obj->secret_len ||
          (obj->secret_len && CRYPTO_memcmp(t[i].pValue, obj->secret, obj->secret_len) != 0))
        return 0;
      continue;
    }
    if (is_lazy_value(obj, t[i].type)) {
      val = NULL;
      len = 0;
      if (secret_value(obj, &val, &len, failed) != CKR_OK)
        return 0;
      ok = t[i].ulValueLen == len && (len == 0 || CRYPTO_memcmp(t[i].pValue, val, len) == 0);
      OPENSSL_cleanse(val, len);
      free(val);
      if (!ok)
        return 0;
      continue;
    }
    alen = attr_value(obj, t[i].type, buf, sizeof(buf), &p);
    if (alen < 0 || !p || (CK_ULONG)alen != t[i].ulValueLen)
      return 0;
    if (alen && memcmp(p, t[i].pValue, (size_t)alen) != 0)
      return 0;
  }
  return 1;
}
