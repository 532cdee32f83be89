/* SPDX-License-Identifier: Apache-2.0 */
/* JSON Web Keys: strict parsing of the public parts Key Vault returns, and their conversion to
 * OpenSSL keys (EVP_PKEY_fromdata in the caller's library context) and SubjectPublicKeyInfo. Also
 * the strict parsing of certificate bundles and list items. Every parser here serves both the
 * vault's replies (client.c) and the cross-process cache file (cache_file.c): what the file
 * restores is checked exactly as a reply is. */
#include "kv/jwk.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kv/json.h"
#include "util/b64.h"
#include "util/log.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 16384

static const struct {
  enum kv_crv crv;
  const char *name;  /* JWK */
  const char *group; /* OpenSSL */
  size_t bytes;
  unsigned char oid[12];
  size_t oid_len;
} curves[] = {
    {KV_CRV_P256,
     "P-256",
     "prime256v1",
     32,
     {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07},
     10},
    {KV_CRV_P384, "P-384", "secp384r1", 48, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 7},
    {KV_CRV_P521, "P-521", "secp521r1", 66, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 7},
    {KV_CRV_P256K, "P-256K", "secp256k1", 32, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}, 7},
};
#define N_CURVES (sizeof(curves) / sizeof(curves[0]))

static int curve_index(enum kv_crv crv)
{
  for (size_t i = 0; i < N_CURVES; i++)
    if (curves[i].crv == crv)
      return (int)i;
  return -1;
}

const unsigned char *kv_crv_oid_der(enum kv_crv crv, size_t *len)
{
  int i = curve_index(crv);
  if (i < 0)
    return NULL;
  if (len)
    *len = curves[i].oid_len;
  return curves[i].oid;
}

size_t kv_crv_bytes(enum kv_crv crv)
{
  int i = curve_index(crv);
  return i < 0 ? 0 : curves[i].bytes;
}

const char *kv_crv_name(enum kv_crv crv)
{
  int i = curve_index(crv);
  return i < 0 ? NULL : curves[i].name;
}

/* A packed key (kv_key_pack_into right after its struct) is one allocation. */
static int key_packed(const struct kv_key *k)
{
  return (k->attrs.n_tags ? (const void *)k->attrs.tags : (const void *)k->kid) ==
         (const void *)(k + 1);
}

static unsigned char *put(unsigned char *data, size_t cap, size_t *at, const void *src, size_t len)
{
  unsigned char *d = data && *at + len <= cap ? data + *at : NULL;
  if (!src)
    return NULL;
  if (d && len)
    memcpy(d, src, len);
  *at += len;
  return d;
}

static char *put_str(unsigned char *data, size_t cap, size_t *at, const char *s)
{
  return s ? (char *)put(data, cap, at, s, strlen(s) + 1) : NULL;
}

size_t kv_key_pack_into(const struct kv_key *k, struct kv_key *dst, unsigned char *data, size_t cap)
{
  struct kv_key tmp;
  struct kv_tag *tags;
  size_t at = k->attrs.n_tags * sizeof(struct kv_tag), i;
  const char *v;

  if (!dst)
    dst = &tmp;
  tags = data && k->attrs.n_tags && at <= cap ? (struct kv_tag *)(void *)data : NULL;
  *dst = *k;
  dst->attrs.tags = tags;
  for (i = 0; i < k->attrs.n_tags; i++) {
    char *name = put_str(data, cap, &at, k->attrs.tags[i].name);
    char *value = put_str(data, cap, &at, k->attrs.tags[i].value);
    if (tags) {
      tags[i].name = name;
      tags[i].value = value;
    }
  }
  dst->kid = put_str(data, cap, &at, k->kid);
  dst->name = put_str(data, cap, &at, k->name);
  /* The version is the kid's last segment: kept once. */
  v = k->kid && k->version ? strrchr(k->kid, '/') : NULL;
  if (v && strcmp(v + 1, k->version) == 0)
    dst->version = dst->kid ? dst->kid + (v + 1 - k->kid) : NULL;
  else
    dst->version = put_str(data, cap, &at, k->version);
  dst->n = put(data, cap, &at, k->n, k->n_len);
  dst->e = put(data, cap, &at, k->e, k->e_len);
  dst->x = put(data, cap, &at, k->x, k->x_len);
  dst->y = put(data, cap, &at, k->y, k->y_len);
  return at;
}

/* k in one allocation (freed by kv_key_free like any other), or NULL without memory. */
static struct kv_key *key_pack(const struct kv_key *k)
{
  size_t need = kv_key_pack_into(k, NULL, NULL, 0);
  struct kv_key *p = malloc(sizeof(*p) + need);
  if (!p)
    return NULL;
  kv_key_pack_into(k, p, (unsigned char *)(p + 1), need);
  return p;
}

/* Replaces *k by its packed copy: a vault reply's key is read by many threads and cached, so it
 * is kept in one allocation instead of eight (docs/performance.md "Memory per cached key"). */
static kv_rc key_repack(struct kv_key **k)
{
  struct kv_key *p = key_pack(*k);
  if (!p)
    return KV_E_NOMEM;
  kv_key_free(*k);
  *k = p;
  return KV_OK;
}

void kv_key_free(struct kv_key *k)
{
  if (!k)
    return;
  if (key_packed(k)) {
    free(k);
    return;
  }
  free(k->kid);
  free(k->name);
  free(k->version);
  free(k->n);
  free(k->e);
  free(k->x);
  free(k->y);
  kv_attrs_clear(&k->attrs);
  free(k);
}

/* The JWK key_ops names, in the order of their bits (enum kv_key_op). */
static const struct {
  const char *name;
  unsigned bit;
} names[] = {
    {"encrypt", KV_OP_ENCRYPT}, {"decrypt", KV_OP_DECRYPT}, {"sign", KV_OP_SIGN},
    {"verify", KV_OP_VERIFY},   {"wrapKey", KV_OP_WRAP},    {"unwrapKey", KV_OP_UNWRAP},
    {"import", KV_OP_IMPORT},   {"export", KV_OP_EXPORT},
};

const char *kv_key_op_name(unsigned bit)
{
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].bit == bit)
      return names[i].name;
  return NULL;
}

size_t kv_key_ops_str(unsigned ops, char *buf, size_t len)
{
  size_t n = 0;
  if (len)
    buf[0] = '\0';
  for (size_t i = 0; len && i < sizeof(names) / sizeof(names[0]); i++)
    if (ops & names[i].bit) {
      int w = snprintf(buf + n, len - n, "%s%s", n ? " " : "", names[i].name);
      if (w < 0 || (size_t)w >= len - n)
        break;
      n += (size_t)w;
    }
  return n;
}

static unsigned parse_key_ops(const cJSON *ops, kv_rc *rc)
{
  const cJSON *it;
  unsigned mask = 0;
  *rc = KV_OK;
  if (!ops || cJSON_IsNull(ops))
    return 0;
  if (!cJSON_IsArray(ops) || cJSON_GetArraySize(ops) > 64) {
    akv_err(AKV_LOGC_KV, "JWK: \"key_ops\" must be an array of strings");
    *rc = KV_E_PROTOCOL;
    return 0;
  }
  cJSON_ArrayForEach(it, ops)
  {
    if (!cJSON_IsString(it)) {
      akv_err(AKV_LOGC_KV, "JWK: \"key_ops\" must be an array of strings");
      *rc = KV_E_PROTOCOL;
      return 0;
    }
    /* Case-insensitive: services have sent "wrapkey"; unknown operations (deriveKey) are
     * tolerated and ignored. */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
      if (strcasecmp(it->valuestring, names[i].name) == 0)
        mask |= names[i].bit;
  }
  return mask;
}

/* Strips leading zero bytes in place (a JWK integer should be minimal, tolerate it anyway). */
static void strip_zeros(unsigned char *p, size_t *len)
{
  size_t z = 0;
  while (z + 1 < *len && p[z] == 0)
    z++;
  if (z) {
    memmove(p, p + z, *len - z);
    *len -= z;
  }
}

kv_rc kv_key_from_jwk(const cJSON *jwk, struct kv_key **out)
{
  struct kv_key *k = NULL;
  const char *kty = NULL, *crv = NULL;
  kv_rc rc = KV_E_NOMEM;
  *out = NULL;
  if (!cJSON_IsObject(jwk)) {
    akv_err(AKV_LOGC_KV, "JWK: \"key\" must be an object");
    return KV_E_PROTOCOL;
  }
  k = calloc(1, sizeof(*k));
  if (!k)
    return KV_E_NOMEM;
  k->attrs.enabled = 1;
  if ((rc = kv_json_dup(jwk, "kid", 1, 2048, &k->kid)) != KV_OK ||
      (rc = kv_parse_id(k->kid, "keys", &k->name, &k->version)) != KV_OK ||
      (rc = kv_json_str(jwk, "kty", 1, 16, &kty)) != KV_OK)
    goto out;
  if (!k->version) {
    akv_err(AKV_LOGC_KV, "JWK: kid %.200s has no version", k->kid);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  rc = KV_E_PROTOCOL;
  if (strcmp(kty, "RSA") == 0 || strcmp(kty, "RSA-HSM") == 0) {
    k->kty = KV_KTY_RSA;
  } else if (strcmp(kty, "EC") == 0 || strcmp(kty, "EC-HSM") == 0) {
    k->kty = KV_KTY_EC;
  } else if (strcmp(kty, "oct") == 0 || strcmp(kty, "oct-HSM") == 0) {
    k->kty = KV_KTY_OCT;
  } else {
    akv_err(AKV_LOGC_KV, "JWK %s: unknown kty \"%.32s\"", k->name, kty);
    goto out;
  }
  k->hsm = strstr(kty, "-HSM") != NULL;
  k->key_ops = parse_key_ops(cJSON_GetObjectItemCaseSensitive(jwk, "key_ops"), &rc);
  if (rc != KV_OK)
    goto out;
  if (k->kty == KV_KTY_RSA) {
    BIGNUM *bn;
    int bits;
    if ((rc = kv_json_b64url(jwk, "n", 1, RSA_MAX_BITS / 8 + 1, &k->n, &k->n_len)) != KV_OK ||
        (rc = kv_json_b64url(jwk, "e", 1, 8, &k->e, &k->e_len)) != KV_OK)
      goto out;
    rc = KV_E_PROTOCOL;
    /* A present but empty member ("e":"") decodes to 0 bytes; the checks below index the last
     * byte (found by tests/fuzz). */
    if (k->n_len == 0 || k->e_len == 0) {
      akv_err(AKV_LOGC_KV, "JWK %s: empty RSA modulus or public exponent", k->name);
      goto out;
    }
    strip_zeros(k->n, &k->n_len);
    strip_zeros(k->e, &k->e_len);
    bn = BN_bin2bn(k->n, (int)k->n_len, NULL);
    if (!bn) {
      rc = KV_E_NOMEM;
      goto out;
    }
    bits = BN_num_bits(bn);
    BN_free(bn);
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS || !(k->n[k->n_len - 1] & 1)) {
      akv_err(AKV_LOGC_KV, "JWK %s: RSA modulus of %d bits (expected an odd modulus of %d..%d)",
              k->name, bits, RSA_MIN_BITS, RSA_MAX_BITS);
      goto out;
    }
    if (!(k->e[k->e_len - 1] & 1) || (k->e_len == 1 && k->e[0] < 3)) {
      akv_err(AKV_LOGC_KV, "JWK %s: invalid RSA public exponent", k->name);
      goto out;
    }
  } else if (k->kty == KV_KTY_EC) {
    size_t fb;
    if ((rc = kv_json_str(jwk, "crv", 1, 16, &crv)) != KV_OK)
      goto out;
    rc = KV_E_PROTOCOL;
    for (size_t i = 0; i < N_CURVES; i++)
      if (strcmp(crv, curves[i].name) == 0)
        k->crv = curves[i].crv;
    if (k->crv == KV_CRV_NONE) {
      akv_err(AKV_LOGC_KV, "JWK %s: unknown curve \"%.32s\"", k->name, crv);
      goto out;
    }
    fb = kv_crv_bytes(k->crv);
    if ((rc = kv_json_b64url(jwk, "x", 1, 132, &k->x, &k->x_len)) != KV_OK ||
        (rc = kv_json_b64url(jwk, "y", 1, 132, &k->y, &k->y_len)) != KV_OK)
      goto out;
    rc = KV_E_PROTOCOL;
    if (k->x_len != fb || k->y_len != fb) {
      akv_err(AKV_LOGC_KV, "JWK %s: EC coordinates of %zu/%zu bytes, %s needs %zu", k->name,
              k->x_len, k->y_len, crv, fb);
      goto out;
    }
  }
  *out = k;
  k = NULL;
  rc = KV_OK;
out:
  kv_key_free(k);
  return rc;
}

kv_rc kv_key_from_bundle(const cJSON *bundle, struct kv_key **out)
{
  struct kv_key *k = NULL;
  kv_rc rc;
  *out = NULL;
  rc = kv_key_from_jwk(cJSON_GetObjectItemCaseSensitive(bundle, "key"), &k);
  if (rc != KV_OK)
    return rc;
  kv_attrs_clear(&k->attrs);
  rc = kv_json_attrs(bundle, &k->attrs);
  if (rc == KV_OK)
    rc = key_repack(&k);
  if (rc != KV_OK) {
    kv_key_free(k);
    return rc;
  }
  *out = k;
  return KV_OK;
}

kv_rc kv_key_from_json(const char *json, size_t len, struct kv_key **out)
{
  cJSON *doc;
  kv_rc rc;
  if (!json || !out)
    return KV_E_INVALID;
  *out = NULL;
  doc = kv_json_parse(json, len, "key JSON");
  if (!doc)
    return KV_E_PROTOCOL;
  if (cJSON_GetObjectItemCaseSensitive(doc, "key"))
    rc = kv_key_from_bundle(doc, out);
  else if ((rc = kv_key_from_jwk(doc, out)) == KV_OK && (rc = key_repack(out)) != KV_OK) {
    kv_key_free(*out);
    *out = NULL;
  }
  cJSON_Delete(doc);
  return rc;
}

/* Key types are named by OID, not "RSA"/"EC": OpenSSL 3.0 maps those names to legacy NIDs and asks
 * ENGINE_get_pkey_meth_engine first, so in a host that set an engine as default for all methods
 * (openssl -engine pkcs11, libp11) EVP_PKEY_fromdata would reach the engine and fail. An OID is not
 * mapped, so the provider keymgmt of libctx is fetched. */
#define OID_RSA "1.2.840.113549.1.1.1"
#define OID_EC "1.2.840.10045.2.1"

/* The point must lie on the curve; checked with EC_POINT so that no EVP_PKEY_CTX (which an engine
 * may capture) is involved. */
static kv_rc ec_point_check(OSSL_LIB_CTX *libctx, const char *group, const unsigned char *pub,
                            size_t len)
{
  EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(libctx, NULL, OBJ_sn2nid(group));
  EC_POINT *pt = g ? EC_POINT_new(g) : NULL;
  kv_rc rc = KV_E_NOMEM;
  if (!g || !pt)
    goto out;
  rc = KV_E_PROTOCOL;
  if (EC_POINT_oct2point(g, pt, pub, len, NULL) != 1 || EC_POINT_is_on_curve(g, pt, NULL) != 1 ||
      EC_POINT_is_at_infinity(g, pt)) {
    akv_err(AKV_LOGC_KV, "JWK: the EC point is not on curve %s", group);
    goto out;
  }
  rc = KV_OK;
out:
  EC_POINT_free(pt);
  EC_GROUP_free(g);
  return rc;
}

static kv_rc pkey_fromdata(OSSL_LIB_CTX *libctx, const char *type, OSSL_PARAM_BLD *bld,
                           EVP_PKEY **out)
{
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  EVP_PKEY *pkey = NULL;
  kv_rc rc = KV_E_NOMEM;
  params = OSSL_PARAM_BLD_to_param(bld);
  ctx = EVP_PKEY_CTX_new_from_name(libctx, type, NULL);
  if (!params || !ctx)
    goto out;
  rc = KV_E_PROTOCOL;
  if (EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    akv_err(AKV_LOGC_KV, "JWK: OpenSSL rejected the %s public key",
            strcmp(type, OID_RSA) == 0 ? "RSA" : "EC");
    goto out;
  }
  *out = pkey;
  pkey = NULL;
  rc = KV_OK;
out:
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return rc;
}

kv_rc kv_key_to_pkey(const struct kv_key *k, OSSL_LIB_CTX *libctx, EVP_PKEY **out)
{
  OSSL_PARAM_BLD *bld = NULL;
  BIGNUM *n = NULL, *e = NULL;
  unsigned char *pub = NULL;
  kv_rc rc = KV_E_NOMEM;
  int ci;
  if (!k || !out)
    return KV_E_INVALID;
  *out = NULL;
  bld = OSSL_PARAM_BLD_new();
  if (!bld)
    goto out;
  if (k->kty == KV_KTY_RSA) {
    if (!k->n || !k->e) {
      rc = KV_E_INVALID;
      goto out;
    }
    n = BN_bin2bn(k->n, (int)k->n_len, NULL);
    e = BN_bin2bn(k->e, (int)k->e_len, NULL);
    if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
      goto out;
    rc = pkey_fromdata(libctx, OID_RSA, bld, out);
  } else if (k->kty == KV_KTY_EC) {
    size_t fb = kv_crv_bytes(k->crv);
    ci = curve_index(k->crv);
    if (ci < 0 || k->x_len != fb || k->y_len != fb) {
      rc = KV_E_INVALID;
      goto out;
    }
    pub = malloc(1 + 2 * fb);
    if (!pub)
      goto out;
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, k->x, fb);
    memcpy(pub + 1 + fb, k->y, fb);
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[ci].group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * fb))
      goto out;
    rc = ec_point_check(libctx, curves[ci].group, pub, 1 + 2 * fb);
    if (rc == KV_OK)
      rc = pkey_fromdata(libctx, OID_EC, bld, out);
  } else {
    rc = KV_E_UNSUPPORTED; /* symmetric keys have no public part */
  }
out:
  BN_free(n);
  BN_free(e);
  free(pub);
  OSSL_PARAM_BLD_free(bld);
  return rc;
}

kv_rc kv_key_spki_der(const struct kv_key *k, OSSL_LIB_CTX *libctx, unsigned char **der,
                      size_t *der_len)
{
  EVP_PKEY *pkey = NULL;
  unsigned char *buf = NULL;
  int len;
  kv_rc rc;
  if (!der || !der_len)
    return KV_E_INVALID;
  rc = kv_key_to_pkey(k, libctx, &pkey);
  if (rc != KV_OK)
    return rc;
  len = i2d_PUBKEY(pkey, &buf);
  EVP_PKEY_free(pkey);
  if (len <= 0)
    return KV_E_NOMEM;
  /* Hand out plain malloc memory so callers free() it like everything else from the backend. */
  *der = malloc((size_t)len);
  if (!*der) {
    OPENSSL_free(buf);
    return KV_E_NOMEM;
  }
  memcpy(*der, buf, (size_t)len);
  OPENSSL_free(buf);
  *der_len = (size_t)len;
  return KV_OK;
}

/* ---- certificate bundles and list items ------------------------------------------------------ */

#define MAX_ID_LEN 2048
#define MAX_CERT_DER (256 * 1024)

kv_rc kv_cert_from_bundle(const cJSON *doc, const char *what, struct kv_cert **out)
{
  struct kv_cert *c = NULL;
  const char *cer;
  kv_rc rc = KV_E_NOMEM;

  *out = NULL;
  if (!(c = calloc(1, sizeof(*c))))
    goto out;
  if ((rc = kv_json_dup(doc, "id", 1, MAX_ID_LEN, &c->id)) != KV_OK ||
      (rc = kv_parse_id(c->id, "certificates", &c->name, &c->version)) != KV_OK ||
      (rc = kv_json_dup(doc, "kid", 0, MAX_ID_LEN, &c->kid)) != KV_OK ||
      (rc = kv_json_dup(doc, "sid", 0, MAX_ID_LEN, &c->sid)) != KV_OK ||
      (rc = kv_json_attrs(doc, &c->attrs)) != KV_OK ||
      (rc = kv_json_str(doc, "cer", 1, MAX_CERT_DER / 3 * 4 + 4, &cer)) != KV_OK)
    goto out;
  rc = KV_E_PROTOCOL;
  if (akv_b64_decode(cer, (size_t)-1, &c->der, &c->der_len) != 0 || c->der_len == 0) {
    akv_err(AKV_LOGC_KV, "%s %s: \"cer\" is not valid base64", what, c->name);
    goto out;
  }
  *out = c;
  c = NULL;
  rc = KV_OK;
out:
  kv_cert_free(c);
  return rc;
}

kv_rc kv_item_from_json(const cJSON *it, const char *collection, const char *id_field,
                        struct kv_item *item)
{
  kv_rc rc;
  memset(item, 0, sizeof(*item));
  if (!cJSON_IsObject(it)) {
    akv_err(AKV_LOGC_KV, "list: an item is not an object");
    return KV_E_PROTOCOL;
  }
  if ((rc = kv_json_dup(it, id_field, 1, MAX_ID_LEN, &item->id)) != KV_OK ||
      (rc = kv_parse_id(item->id, collection, &item->name, &item->version)) != KV_OK ||
      (rc = kv_json_attrs(it, &item->attrs)) != KV_OK ||
      (rc = kv_json_dup(it, "contentType", 0, 256, &item->content_type)) != KV_OK ||
      (rc = kv_json_dup(it, "x5t", 0, 128, &item->x5t)) != KV_OK)
    return rc;
  return KV_OK;
}
