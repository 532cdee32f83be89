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

void akv_object_apply_tag_id(struct akv_ab *b, const struct kv_attrs *a)
{
  unsigned char id[AKV_MAX_ID];
  size_t i, len;
  const char *hex = NULL;

  for (i = 0; i < a->n_tags; i++) {
    if (a->tags[i].name && strcmp(a->tags[i].name, AKV_TAG_ID) == 0)
      hex = a->tags[i].value;
  }
  if (!hex)
    return;
  len = strlen(hex);
  /* A tag someone else wrote that is not an id is ignored: the SPKI hash stays. */
  if (len == 0 || len % 2 || len / 2 > AKV_MAX_ID)
    return;
  for (i = 0; i < len / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return;
    id[i] = (unsigned char)(hi << 4 | lo);
  }
  akv_ab_set(b, CKA_ID, id, len / 2);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

static struct akv_object *object_alloc(struct akv_slot *slot, CK_OBJECT_CLASS cls)
{
  struct akv_object *obj = calloc(1, sizeof(*obj));
  if (!obj)
    return NULL;
  if (pthread_mutex_init(&obj->lock, NULL) != 0) {
    free(obj);
    return NULL;
  }
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

static void value_drop_inlock(struct akv_object *obj)
{
  if (!obj->value)
    return;
  OPENSSL_cleanse(obj->value, obj->value_len);
  free(obj->value);
  obj->value = NULL;
  obj->value_len = 0;
  obj->value_fetched_at = 0;
  akv_handles_secret_give();
}

void akv_object_unref(struct akv_object *obj)
{
  if (!obj || __atomic_sub_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  akv_attrs_free(obj->attrs, obj->n_attrs);
  akv_keyent_unref(obj->keyent);
  if (obj->secret) {
    OPENSSL_cleanse(obj->secret, obj->secret_len);
    free(obj->secret);
  }
  value_drop_inlock(obj);
  free(obj->secret_name);
  free(obj->src);
  pthread_mutex_destroy(&obj->lock);
  free(obj);
}

const CK_ATTRIBUTE *akv_object_attr(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  return akv_attrs_find(obj->attrs, obj->n_attrs, type);
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

CK_RV akv_keyent_new(struct kv_key *key, struct akv_keyent **out)
{
  struct akv_keyent *ke = NULL;
  kv_rc rc;
  CK_RV rv = CKR_HOST_MEMORY;

  ke = calloc(1, sizeof(*ke));
  if (!ke)
    goto out;
  ke->refs = 1;
  ke->key = key;
  key = NULL;
  if (ke->key->kty == KV_KTY_RSA || ke->key->kty == KV_KTY_EC) {
    rc = kv_key_to_pkey(ke->key, akv_libctx(), &ke->pkey);
    if (rc == KV_OK)
      rc = kv_key_spki_der(ke->key, akv_libctx(), &ke->spki, &ke->spki_len);
    if (rc != KV_OK) {
      akv_warn(AKV_LOGC_CACHE, "key %s: unusable public key: %s", ke->key->kid, kv_rc_str(rc));
      rv = akv_rv_nomem_or(rc, CKR_DEVICE_ERROR);
      goto out;
    }
    /* SHA-1 of the SPKI: the same on the certificate carrying this key, so consumers pair them. */
    rv = sha1(ke->spki, ke->spki_len, ke->id);
  } else {
    rv = sha1(ke->key->kid, strlen(ke->key->kid), ke->id);
  }
out:
  kv_key_free(key);
  if (rv != CKR_OK) {
    akv_keyent_unref(ke);
    ke = NULL;
  }
  *out = ke;
  return rv;
}

struct akv_keyent *akv_keyent_ref(struct akv_keyent *ke)
{
  if (ke)
    __atomic_add_fetch(&ke->refs, 1, __ATOMIC_ACQ_REL);
  return ke;
}

void akv_keyent_unref(struct akv_keyent *ke)
{
  if (!ke || __atomic_sub_fetch(&ke->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  kv_key_free(ke->key);
  EVP_PKEY_free(ke->pkey);
  free(ke->spki);
  free(ke);
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

/* CKA_EC_POINT: DER OCTET STRING of the uncompressed point 04 || x || y. */
static CK_RV ec_point_der(const struct kv_key *k, unsigned char **der, size_t *der_len)
{
  size_t fb = kv_crv_bytes(k->crv);
  unsigned char *raw = NULL;
  ASN1_OCTET_STRING *os = NULL;
  unsigned char *out = NULL;
  int len;
  CK_RV rv = CKR_DEVICE_ERROR;

  if (fb == 0 || k->x_len > fb || k->y_len > fb || !k->x || !k->y)
    goto out;
  rv = CKR_HOST_MEMORY;
  raw = calloc(1, 1 + 2 * fb);
  os = ASN1_OCTET_STRING_new();
  if (!raw || !os)
    goto out;
  raw[0] = 0x04;
  memcpy(raw + 1 + fb - k->x_len, k->x, k->x_len);
  memcpy(raw + 1 + 2 * fb - k->y_len, k->y, k->y_len);
  if (!ASN1_OCTET_STRING_set(os, raw, (int)(1 + 2 * fb)))
    goto out;
  len = i2d_ASN1_OCTET_STRING(os, &out);
  if (len <= 0)
    goto out;
  *der = out;
  *der_len = (size_t)len;
  rv = CKR_OK;
out:
  free(raw);
  ASN1_OCTET_STRING_free(os);
  return rv;
}

/* ---- token objects ------------------------------------------------------------------------- */

/* Identity under which the handle is registered: stable for the same slot, class and id. */
static CK_RV assign_handle(struct akv_object *obj, const char *id)
{
  char ident[2048];
  int n = snprintf(ident, sizeof(ident), "%lu|%lu|%s", (unsigned long)obj->slot->id,
                   (unsigned long)obj->cls, id);
  if (n < 0 || (size_t)n >= sizeof(ident))
    return CKR_DEVICE_ERROR; /* an id this long is not something the service sends */
  obj->handle = akv_handle_for(ident);
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
  CK_RV rv = akv_tmpl_bool(t, n, CKA_PRIVATE, &want);

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

static void common_storage_attrs(struct akv_ab *b, struct akv_object *obj, const char *label)
{
  const struct akv_slot_config *sc = obj->slot->cfg;
  obj->is_private = class_private(obj->slot, obj->cls);
  akv_ab_ulong(b, CKA_CLASS, obj->cls);
  akv_ab_bool(b, CKA_TOKEN, CK_TRUE);
  akv_ab_bool(b, CKA_PRIVATE, obj->is_private);
  akv_ab_bool(b, CKA_MODIFIABLE, CK_FALSE);
  akv_ab_bool(b, CKA_COPYABLE, CK_FALSE);
  akv_ab_bool(b, CKA_DESTROYABLE, sc->allow_destroy && !sc->read_only);
  akv_ab_str(b, CKA_LABEL, label);
}

static void key_common_attrs(struct akv_ab *b, struct akv_object *obj, const char *label,
                             const struct akv_keyent *ke)
{
  const struct kv_key *k = ke->key;
  common_storage_attrs(b, obj, label);
  akv_ab_ulong(b, CKA_KEY_TYPE, obj->key_type);
  akv_ab_bytes(b, CKA_ID, ke->id, sizeof(ke->id));
  /* A CKA_ID given when the key was generated is kept in a tag (src/token/write.c). */
  akv_object_apply_tag_id(b, &k->attrs);
  akv_ab_date(b, CKA_START_DATE, k->attrs.nbf);
  akv_ab_date(b, CKA_END_DATE, k->attrs.exp);
  akv_ab_bool(b, CKA_DERIVE, CK_FALSE);
  /* Key Vault does not say whether a key was generated there or imported. */
  akv_ab_bool(b, CKA_LOCAL, CK_FALSE);
  akv_ab_ulong(b, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  akv_ab_str(b, CKA_AKV_KID, k->kid);
  akv_ab_str(b, CKA_AKV_VERSION, k->version);
  akv_ab_bool(b, CKA_AKV_HSM, k->hsm ? CK_TRUE : CK_FALSE);
  switch (obj->key_type) {
  case CKK_RSA:
    akv_ab_ulongs(b, CKA_ALLOWED_MECHANISMS, rsa_mechs, sizeof(rsa_mechs) / sizeof(rsa_mechs[0]));
    break;
  case CKK_EC:
    akv_ab_ulongs(b, CKA_ALLOWED_MECHANISMS, ec_mechs, sizeof(ec_mechs) / sizeof(ec_mechs[0]));
    break;
  default:
    akv_ab_ulongs(b, CKA_ALLOWED_MECHANISMS, aes_mechs, sizeof(aes_mechs) / sizeof(aes_mechs[0]));
    break;
  }
}

static CK_RV public_material_attrs(struct akv_ab *b, struct akv_object *obj,
                                   const struct akv_keyent *ke)
{
  const struct kv_key *k = ke->key;
  const unsigned char *p;
  size_t len;
  unsigned char *point = NULL;
  size_t point_len = 0;
  CK_RV rv = CKR_OK;

  if (obj->key_type == CKK_RSA) {
    if (!k->n || !k->e)
      return CKR_DEVICE_ERROR;
    len = k->n_len;
    p = strip_zeros(k->n, &len);
    akv_ab_bytes(b, CKA_MODULUS, p, len);
    akv_ab_ulong(b, CKA_MODULUS_BITS, obj->modulus_bits);
    len = k->e_len;
    p = strip_zeros(k->e, &len);
    akv_ab_bytes(b, CKA_PUBLIC_EXPONENT, p, len);
  } else if (obj->key_type == CKK_EC) {
    p = kv_crv_oid_der(k->crv, &len);
    if (!p)
      return CKR_DEVICE_ERROR;
    akv_ab_bytes(b, CKA_EC_PARAMS, p, len);
    rv = ec_point_der(k, &point, &point_len);
    if (rv != CKR_OK)
      return rv;
    akv_ab_bytes(b, CKA_EC_POINT, point, point_len);
    OPENSSL_free(point);
  }
  if (ke->spki)
    akv_ab_bytes(b, CKA_PUBLIC_KEY_INFO, ke->spki, ke->spki_len);
  return rv;
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

static CK_RV finish_object(struct akv_object *obj, struct akv_ab *b, const char *src,
                           const char *id, int64_t created, int64_t updated)
{
  CK_RV rv = akv_ab_finish(b, &obj->attrs, &obj->n_attrs);
  if (rv == CKR_OK)
    rv = set_source(obj, src, created, updated);
  return rv == CKR_OK ? assign_handle(obj, id) : rv;
}

static CK_RV key_object(struct akv_slot *slot, struct akv_keyent *ke, CK_OBJECT_CLASS cls,
                        const char *label, const char *src, struct akv_object **out)
{
  const struct kv_key *k = ke->key;
  struct akv_object *obj = object_alloc(slot, cls);
  struct akv_ab b;
  unsigned ops = k->key_ops;
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  if (!obj)
    goto out;
  obj->keyent = akv_keyent_ref(ke);
  obj->key = ke->key;
  obj->pkey = ke->pkey;
  obj->key_type = k->kty == KV_KTY_RSA ? CKK_RSA : k->kty == KV_KTY_EC ? CKK_EC : CKK_AES;
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

  key_common_attrs(&b, obj, label, ke);
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    /* Material that is or was exportable (secure key release, "export" in key_ops, a software
     * key behind a certificate whose policy may export it) has been, or may be, outside the vault
     * (docs/security.md "Key attributes"). */
    CK_BBOOL inside =
        !k->attrs.exportable && !(ops & KV_OP_EXPORT) && !(k->attrs.managed && !k->hsm);
    akv_ab_bool(&b, CKA_SENSITIVE, CK_TRUE);
    akv_ab_bool(&b, CKA_EXTRACTABLE, CK_FALSE);
    akv_ab_bool(&b, CKA_ALWAYS_SENSITIVE, inside);
    akv_ab_bool(&b, CKA_NEVER_EXTRACTABLE, inside);
    akv_ab_bool(&b, CKA_WRAP_WITH_TRUSTED, CK_FALSE);
    akv_ab_bool(&b, CKA_ALWAYS_AUTHENTICATE, CK_FALSE);
    akv_ab_bool(&b, CKA_SIGN, obj->can_sign);
    akv_ab_bool(&b, CKA_DECRYPT, obj->can_decrypt);
    akv_ab_bool(&b, CKA_UNWRAP, obj->can_unwrap);
  }
  if (cls == CKO_PUBLIC_KEY || cls == CKO_SECRET_KEY) {
    akv_ab_bool(&b, CKA_VERIFY, obj->can_verify);
    akv_ab_bool(&b, CKA_ENCRYPT, obj->can_encrypt);
    akv_ab_bool(&b, CKA_WRAP, obj->can_wrap);
    akv_ab_bool(&b, CKA_TRUSTED, CK_FALSE);
  }
  if (cls == CKO_PRIVATE_KEY) {
    akv_ab_bytes(&b, CKA_SUBJECT, "", 0);
    akv_ab_bool(&b, CKA_SIGN_RECOVER, CK_FALSE);
  }
  if (cls == CKO_PUBLIC_KEY) {
    akv_ab_bytes(&b, CKA_SUBJECT, "", 0);
    akv_ab_bool(&b, CKA_VERIFY_RECOVER, CK_FALSE);
  }
  if (cls != CKO_SECRET_KEY) {
    rv = public_material_attrs(&b, obj, ke);
    if (rv != CKR_OK)
      goto out;
  }
  rv = finish_object(obj, &b, src, k->kid, k->attrs.created, k->attrs.updated);
out:
  akv_attrs_free(b.v, b.n);
  return hand_over(obj, rv, out);
}

CK_RV akv_objects_from_key(struct akv_slot *slot, struct akv_keyent *ke, const char *label,
                           const char *src, struct akv_object **out, size_t *n)
{
  CK_RV rv;

  *n = 0;
  if (ke->key->kty == KV_KTY_OCT) {
    rv = key_object(slot, ke, CKO_SECRET_KEY, label, src, &out[0]);
    if (rv == CKR_OK)
      *n = 1;
    return rv;
  }
  rv = key_object(slot, ke, CKO_PRIVATE_KEY, label, src, &out[0]);
  if (rv != CKR_OK)
    return rv;
  rv = key_object(slot, ke, CKO_PUBLIC_KEY, label, src, &out[1]);
  if (rv != CKR_OK) {
    akv_object_unref(out[0]);
    out[0] = NULL;
    return rv;
  }
  *n = 2;
  return CKR_OK;
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
    akv_ab_bytes((b), (type), der_, (size_t)len_);                                                 \
    OPENSSL_free(der_);                                                                            \
  } while (0)

CK_RV akv_object_from_cert(struct akv_slot *slot, const struct kv_cert *cert, const char *src,
                           struct akv_object **out)
{
  struct akv_object *obj = object_alloc(slot, CKO_CERTIFICATE);
  struct akv_ab b;
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
  akv_ab_ulong(&b, CKA_CERTIFICATE_TYPE, CKC_X_509);
  akv_ab_bool(&b, CKA_TRUSTED, CK_FALSE);
  /* A vault certificate always has its key in the vault: a token user certificate. */
  akv_ab_ulong(&b, CKA_CERTIFICATE_CATEGORY, cert->kid ? 1 : 0);
  akv_ab_bytes(&b, CKA_ID, md, sizeof(md));
  /* A certificate tagged with its key's CKA_ID keeps pairing with it. */
  akv_object_apply_tag_id(&b, &cert->attrs);
  akv_ab_bytes(&b, CKA_VALUE, cert->der, cert->der_len);
  akv_ab_bytes(&b, CKA_PUBLIC_KEY_INFO, spki, (size_t)spki_len);
  AB_I2D(&b, CKA_SUBJECT, i2d_X509_NAME, X509_get_subject_name(x));
  AB_I2D(&b, CKA_ISSUER, i2d_X509_NAME, X509_get_issuer_name(x));
  AB_I2D(&b, CKA_SERIAL_NUMBER, i2d_ASN1_INTEGER, X509_get0_serialNumber(x));
  rv = sha1(cert->der, cert->der_len, md);
  if (rv != CKR_OK)
    goto out;
  /* CKA_CHECK_VALUE of a certificate: the first three bytes of the SHA-1 of its value. */
  akv_ab_bytes(&b, CKA_CHECK_VALUE, md, 3);
  akv_ab_date(&b, CKA_START_DATE, cert->attrs.nbf);
  akv_ab_date(&b, CKA_END_DATE, cert->attrs.exp);
  akv_ab_ulong(&b, CKA_JAVA_MIDP_SECURITY_DOMAIN, 0);
  akv_ab_bytes(&b, CKA_URL, "", 0);
  akv_ab_str(&b, CKA_AKV_KID, cert->id);
  akv_ab_str(&b, CKA_AKV_VERSION, cert->version);
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
  struct akv_ab b;
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  if (!obj)
    goto out;
  obj->secret_name = strdup(item->name);
  if (!obj->secret_name)
    goto out;
  common_storage_attrs(&b, obj, item->name);
  akv_ab_str(&b, CKA_APPLICATION, SECRET_APPLICATION);
  akv_ab_bytes(&b, CKA_OBJECT_ID, "", 0);
  akv_ab_str(&b, CKA_AKV_KID, item->id);
  akv_ab_str(&b, CKA_AKV_VERSION, item->version ? item->version : "");
  rv = finish_object(obj, &b, src, item->id, item->attrs.created, item->attrs.updated);
out:
  akv_attrs_free(b.v, b.n);
  return hand_over(obj, rv, out);
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
  struct akv_ab b;
  CK_ULONG cls = CKO_SECRET_KEY, kt = type, vlen = len;
  CK_BBOOL token = CK_FALSE, priv, sensitive = CK_FALSE, extractable = CK_TRUE;
  CK_BBOOL enc = CK_TRUE, dec = CK_TRUE, wrap = CK_TRUE, unwrap = CK_TRUE, sign = CK_TRUE,
           verify = CK_TRUE, derive = CK_FALSE, destroyable = CK_TRUE;
  CK_BBOOL wrap_trusted = CK_FALSE, trusted = CK_FALSE;
  const CK_ATTRIBUTE *a;
  CK_ULONG i;
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
      (type == CKK_GENERIC_SECRET && len == 0) || (type != CKK_AES && type != CKK_GENERIC_SECRET)) {
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
  if ((r = akv_tmpl_ulong(tmpl, n, CKA_CLASS, &cls)) != CKR_OK ||
      (r = akv_tmpl_ulong(tmpl, n, CKA_KEY_TYPE, &kt)) != CKR_OK ||
      (r = akv_tmpl_ulong(tmpl, n, CKA_VALUE_LEN, &vlen)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_TOKEN, &token)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_PRIVATE, &priv)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_SENSITIVE, &sensitive)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_EXTRACTABLE, &extractable)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_ENCRYPT, &enc)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_DECRYPT, &dec)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_WRAP, &wrap)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_UNWRAP, &unwrap)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_SIGN, &sign)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_VERIFY, &verify)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_DERIVE, &derive)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_DESTROYABLE, &destroyable)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_WRAP_WITH_TRUSTED, &wrap_trusted)) != CKR_OK ||
      (r = akv_tmpl_bool(tmpl, n, CKA_TRUSTED, &trusted)) != CKR_OK)
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
  obj->secret_len = len;
  obj->can_encrypt = enc;
  obj->can_decrypt = dec;
  obj->can_wrap = wrap;
  obj->can_unwrap = unwrap;
  obj->can_sign = sign;
  obj->can_verify = verify;

  akv_ab_ulong(&b, CKA_CLASS, CKO_SECRET_KEY);
  akv_ab_ulong(&b, CKA_KEY_TYPE, type);
  akv_ab_bool(&b, CKA_TOKEN, CK_FALSE);
  akv_ab_bool(&b, CKA_PRIVATE, priv);
  akv_ab_bool(&b, CKA_MODIFIABLE, CK_FALSE);
  akv_ab_bool(&b, CKA_COPYABLE, CK_FALSE);
  akv_ab_bool(&b, CKA_DESTROYABLE, destroyable);
  akv_ab_bytes(&b, CKA_LABEL, "", 0);
  akv_ab_bytes(&b, CKA_ID, "", 0);
  akv_ab_date(&b, CKA_START_DATE, 0);
  akv_ab_date(&b, CKA_END_DATE, 0);
  akv_ab_bool(&b, CKA_DERIVE, CK_FALSE);
  akv_ab_bool(&b, CKA_LOCAL, CK_FALSE);
  akv_ab_ulong(&b, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  akv_ab_ulong(&b, CKA_VALUE_LEN, (CK_ULONG)len);
  akv_ab_bool(&b, CKA_SENSITIVE, sensitive);
  akv_ab_bool(&b, CKA_EXTRACTABLE, extractable);
  /* The value came in as plaintext (C_CreateObject, C_UnwrapKey): it has been outside. */
  akv_ab_bool(&b, CKA_ALWAYS_SENSITIVE, CK_FALSE);
  akv_ab_bool(&b, CKA_NEVER_EXTRACTABLE, CK_FALSE);
  akv_ab_bool(&b, CKA_ENCRYPT, enc);
  akv_ab_bool(&b, CKA_DECRYPT, dec);
  akv_ab_bool(&b, CKA_WRAP, wrap);
  akv_ab_bool(&b, CKA_UNWRAP, unwrap);
  akv_ab_bool(&b, CKA_SIGN, sign);
  akv_ab_bool(&b, CKA_VERIFY, verify);
  akv_ab_bool(&b, CKA_WRAP_WITH_TRUSTED, wrap_trusted); /* enforced by C_WrapKey (op_wrap.c) */
  akv_ab_bool(&b, CKA_TRUSTED, CK_FALSE);
  /* Free-form attributes the caller chose. */
  if ((a = akv_tmpl_find(tmpl, n, CKA_LABEL)) && (a->pValue || !a->ulValueLen))
    akv_ab_set(&b, CKA_LABEL, a->pValue, a->ulValueLen);
  if ((a = akv_tmpl_find(tmpl, n, CKA_ID)) && (a->pValue || !a->ulValueLen))
    akv_ab_set(&b, CKA_ID, a->pValue, a->ulValueLen);
  /* The mechanisms the caller allows (mech.c enforces them at *Init). */
  if ((a = akv_tmpl_find(tmpl, n, CKA_ALLOWED_MECHANISMS))) {
    if ((!a->pValue && a->ulValueLen) || a->ulValueLen % sizeof(CK_MECHANISM_TYPE)) {
      r = CKR_ATTRIBUTE_VALUE_INVALID;
      goto out;
    }
    akv_ab_set(&b, CKA_ALLOWED_MECHANISMS, a->pValue, a->ulValueLen);
  }
  if ((a = akv_tmpl_find(tmpl, n, CKA_START_DATE)) && a->pValue && a->ulValueLen == sizeof(CK_DATE))
    akv_ab_set(&b, CKA_START_DATE, a->pValue, a->ulValueLen);
  if ((a = akv_tmpl_find(tmpl, n, CKA_END_DATE)) && a->pValue && a->ulValueLen == sizeof(CK_DATE))
    akv_ab_set(&b, CKA_END_DATE, a->pValue, a->ulValueLen);
  r = akv_ab_finish(&b, &obj->attrs, &obj->n_attrs);
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
 * the caller wipes, so the object lock is not held across the copy-out. */
static CK_RV secret_value(struct akv_object *obj, unsigned char **val, size_t *len,
                          struct akv_fetch_status *failed)
{
  struct kv_secret *sec = NULL;
  int64_t now = akv_now();
  kv_rc rc;
  CK_RV rv = CKR_OK;

  pthread_mutex_lock(&obj->lock);
  if (obj->value && now - obj->value_fetched_at >= obj->slot->cfg->secret_ttl_s)
    value_drop_inlock(obj); /* expired: wiped now, fetched again below */
  if (obj->value)
    goto copy;
  pthread_mutex_unlock(&obj->lock);

  rc = kv_get_secret(obj->slot->client, obj->secret_name, NULL, &sec);
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "secret %s: %s", obj->secret_name, kv_rc_str(rc));
    /* The caller records the failure on its session (akv_session_fetch_failed). */
    failed->rc = rc;
    failed->http_status = kv_last_http_status();
    return akv_rv_object(rc);
  }
  pthread_mutex_lock(&obj->lock);
  /* Another thread may have fetched it meanwhile; keep one value, wipe the other (kv_secret_free).
   */
  if (!obj->value && akv_handles_secret_take()) {
    obj->value = sec->value;
    obj->value_len = sec->value_len;
    obj->value_fetched_at = now;
    sec->value = NULL;
    sec->value_len = 0;
  }
  if (!obj->value) {
    /* Over the bound of cached values: serve this read without keeping the value. */
    *val = malloc(sec->value_len ? sec->value_len : 1);
    if (*val && sec->value_len)
      memcpy(*val, sec->value, sec->value_len);
    *len = sec->value_len;
    rv = *val ? CKR_OK : CKR_HOST_MEMORY;
    goto out;
  }
copy:
  *val = malloc(obj->value_len ? obj->value_len : 1);
  if (*val && obj->value_len)
    memcpy(*val, obj->value, obj->value_len);
  *len = obj->value_len;
  rv = *val ? CKR_OK : CKR_HOST_MEMORY;
out:
  pthread_mutex_unlock(&obj->lock);
  kv_secret_free(sec);
  return rv;
}

void akv_object_expire_value(struct akv_object *obj, int64_t now)
{
  if (obj->cls != CKO_DATA || !obj->secret_name)
    return;
  pthread_mutex_lock(&obj->lock);
  if (obj->value && now - obj->value_fetched_at >= obj->slot->cfg->secret_ttl_s)
    value_drop_inlock(obj);
  pthread_mutex_unlock(&obj->lock);
}

static int is_lazy_value(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  return obj->cls == CKO_DATA && obj->secret_name && type == CKA_VALUE;
}

/* Sensitive for this object: key material of private keys and of secret keys that are sensitive
 * or not extractable (session keys may be neither). */
static int attr_hidden(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  const CK_ATTRIBUTE *a;
  if (!akv_attr_is_sensitive(obj->cls, type))
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

CK_RV akv_object_get_attrs(struct akv_object *obj, CK_ATTRIBUTE *t, CK_ULONG n,
                           struct akv_fetch_status *failed)
{
  CK_RV rv = CKR_OK, r;
  CK_ULONG i;
  const CK_ATTRIBUTE *a;
  unsigned char *val;
  size_t len;

  for (i = 0; i < n; i++) {
    if (attr_hidden(obj, t[i].type)) {
      r = akv_attr_unavailable(&t[i], CKR_ATTRIBUTE_SENSITIVE);
    } else if (obj->cls == CKO_SECRET_KEY && obj->secret && t[i].type == CKA_VALUE) {
      r = akv_attr_copy_out(&t[i], obj->secret, (CK_ULONG)obj->secret_len);
    } else if (is_lazy_value(obj, t[i].type)) {
      val = NULL;
      len = 0;
      r = secret_value(obj, &val, &len, failed);
      if (r == CKR_OK)
        r = akv_attr_copy_out(&t[i], val, (CK_ULONG)len);
      else
        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
      if (val) {
        OPENSSL_cleanse(val, len);
        free(val);
      }
    } else if ((a = akv_object_attr(obj, t[i].type)) != NULL) {
      r = akv_attr_copy_out(&t[i], a->pValue, a->ulValueLen);
    } else {
      r = akv_attr_unavailable(&t[i], CKR_ATTRIBUTE_TYPE_INVALID);
    }
    rv = akv_attrs_rv_merge(rv, r);
  }
  return rv;
}

CK_ULONG akv_object_size(const struct akv_object *obj)
{
  CK_ULONG sum = 0;
  size_t i;
  for (i = 0; i < obj->n_attrs; i++)
    sum += obj->attrs[i].ulValueLen;
  return sum + (CK_ULONG)obj->secret_len;
}

/* ---- template matching
 * ---------------------------------------------------------------------------------- */

/* A template matches when every attribute exists on the object with the same bytes; unknown or
 * sensitive attributes never match. */
int akv_object_matches(struct akv_object *obj, const CK_ATTRIBUTE *t, CK_ULONG n,
                       struct akv_fetch_status *failed)
{
  const CK_ATTRIBUTE *a;
  unsigned char *val;
  size_t len;
  int ok;
  CK_ULONG i;

  for (i = 0; i < n; i++) {
    if (attr_hidden(obj, t[i].type))
      return 0;
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
    a = akv_object_attr(obj, t[i].type);
    if (!a || a->ulValueLen != t[i].ulValueLen)
      return 0;
    if (a->ulValueLen && memcmp(a->pValue, t[i].pValue, a->ulValueLen) != 0)
      return 0;
  }
  return 1;
}
