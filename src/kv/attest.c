/* SPDX-License-Identifier: Apache-2.0 */
/* Managed HSM key attestation: GET /keys/{name}/{version}/attestation (api-version 7.6 and later)
 * into struct kv_attestation, and its checks with OpenSSL: the certificates of certificatePemFile
 * (format "MRVL-1") form the vendor's chain (partition certificate to the HSM card certificate,
 * and to the vendor root the caller trusts) and Microsoft's (partition certificate for the same
 * key to its root), the blobs carry the partition key's signature and state the key's own public
 * key, its kid and that it is sensitive and (unless exportable) never extractable. The vendor
 * roots the caller trusts come from attestation_root (docs/config.md) or akv-p11 attest --root.
 * Formats: docs/usage.md "Key attestation for a CA" and docs/emulator.md "Key attestation".
 * A refused attestation is a WARN line (the key itself is unaffected); the caller decides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "kv/client.h"
#include "kv/json.h"
#include "kv/jwk.h"
#include "util/b64.h"
#include "util/log.h"

#define MAX_PEM (64 * 1024)  /* certificatePemFile, decoded */
#define MAX_BLOB (64 * 1024) /* one attestation blob, decoded */
#define MAX_VERSION_LEN 32   /* attestation.version */
#define MAX_CERTS 8          /* certificates in certificatePemFile */
#define MAX_ATTRS 64         /* attributes in one blob */

#define CKA_CLASS_ 0x000u
#define CKA_KEY_TYPE_ 0x100u
#define CKA_ID_ 0x102u
#define CKA_SENSITIVE_ 0x103u
#define CKA_MODULUS_ 0x120u
#define CKA_PUBLIC_EXPONENT_ 0x122u
#define CKK_RSA_ 0u
#define CKK_EC_ 3u
#define CKA_EXTRACTABLE_ 0x162u
#define CKA_NEVER_EXTRACTABLE_ 0x164u
#define CKO_PUBLIC_KEY_ 2u
#define CKO_PRIVATE_KEY_ 3u
#define CKO_SECRET_KEY_ 4u

void kv_attestation_free(struct kv_attestation *a)
{
  if (!a)
    return;
  kv_key_free(a->key);
  free(a->format_version);
  free(a->cert_pem);
  free(a->priv_blob);
  free(a->pub_blob);
  free(a);
}

void kv_attest_result_clear(struct kv_attest_result *r)
{
  if (!r)
    return;
  X509_free(r->signer);
  X509_free(r->card);
  X509_free(r->ms_root);
  X509_free(r->ms_part);
  memset(r, 0, sizeof(*r));
}

/* ---- the reply ------------------------------------------------------------------------------ */

static kv_rc attestation_from_bundle(const cJSON *doc, const char *name,
                                     struct kv_attestation **out)
{
  struct kv_attestation *a = calloc(1, sizeof(*a));
  const cJSON *attrs, *att;
  unsigned char *pem = NULL;
  size_t pem_len = 0;
  kv_rc rc;
  if (!a)
    return KV_E_NOMEM;
  if ((rc = kv_key_from_bundle(doc, &a->key)) != KV_OK)
    goto fail;
  attrs = cJSON_GetObjectItemCaseSensitive(doc, "attributes");
  att = cJSON_GetObjectItemCaseSensitive(attrs, "attestation");
  if (!cJSON_IsObject(att)) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: the reply has no attributes.attestation object",
             name);
    rc = KV_E_PROTOCOL;
    goto fail;
  }
  if ((rc = kv_json_b64url(att, "certificatePemFile", 1, MAX_PEM, &pem, &pem_len)) != KV_OK ||
      (rc = kv_json_b64url(att, "privateKeyAttestation", 1, MAX_BLOB, &a->priv_blob,
                           &a->priv_len)) != KV_OK ||
      (rc = kv_json_b64url(att, "publicKeyAttestation", 0, MAX_BLOB, &a->pub_blob, &a->pub_len)) !=
          KV_OK ||
      (rc = kv_json_dup(att, "version", 0, MAX_VERSION_LEN, &a->format_version)) != KV_OK) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: malformed attributes.attestation", name);
    goto fail;
  }
  /* PEM is text: no NUL inside, and a terminator for OpenSSL's readers. */
  if (pem_len == 0 || memchr(pem, '\0', pem_len)) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: certificatePemFile is empty or not text", name);
    rc = KV_E_PROTOCOL;
    goto fail;
  }
  if (!(a->cert_pem = malloc(pem_len + 1))) {
    rc = KV_E_NOMEM;
    goto fail;
  }
  memcpy(a->cert_pem, pem, pem_len);
  a->cert_pem[pem_len] = '\0';
  a->cert_pem_len = pem_len;
  if (a->priv_len == 0) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: privateKeyAttestation is empty", name);
    rc = KV_E_PROTOCOL;
    goto fail;
  }
  if ((a->key->kty == KV_KTY_OCT) != (a->pub_blob == NULL)) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: publicKeyAttestation must be present for RSA/EC keys only",
             name);
    rc = KV_E_PROTOCOL;
    goto fail;
  }
  free(pem);
  *out = a;
  return KV_OK;
fail:
  free(pem);
  kv_attestation_free(a);
  return rc;
}

kv_rc kv_attestation_from_json(const char *json, size_t len, struct kv_attestation **out)
{
  cJSON *doc;
  kv_rc rc;
  if (!json || !out)
    return KV_E_INVALID;
  *out = NULL;
  if (!(doc = kv_json_parse(json, len, "attestation")))
    return KV_E_PROTOCOL;
  rc = cJSON_IsObject(doc) ? attestation_from_bundle(doc, "(json)", out) : KV_E_PROTOCOL;
  cJSON_Delete(doc);
  return rc;
}

kv_rc kv_get_key_attestation(struct kv_client *cl, const char *name, const char *version,
                             struct kv_attestation **out, long *http_status)
{
  struct kv_call call;
  cJSON *doc = NULL;
  struct kv_attestation *a = NULL;
  char *url;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !out)
    return KV_E_INVALID;
  *out = NULL;
  memset(&call, 0, sizeof(call));
  if (kv_client_kind(cl) != AKV_VAULT_MHSM) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: key attestation needs a Managed HSM", name);
    return KV_E_UNSUPPORTED;
  }
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  if (!version) {
    /* The spec makes the version segment optional, but an empty segment ("keys/NAME//attestation")
     * is not a URL every server takes: ask for the latest version's id first. */
    struct kv_key *latest = NULL;
    if ((rc = kv_get_key(cl, name, NULL, &latest, http_status)) != KV_OK)
      return rc;
    rc = latest->version ? kv_get_key_attestation(cl, name, latest->version, out, http_status)
                         : KV_E_PROTOCOL;
    kv_key_free(latest);
    return rc;
  }
  url = kv_client_url(cl, "keys/%s/%s/attestation", name, version);
  if (!url)
    return KV_E_NOMEM;
  call.op = "keys.attestation";
  call.method = "GET";
  call.url = url;
  call.idempotent = 1;
  call.name = name;
  call.version = version;
  call.defer_audit = 1;
  rc = kv_client_call(cl, &call, &doc);
  kv_status_set(http_status, call.status);
  call.url = NULL;
  free(url);
  if (rc == KV_OK && !doc) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: empty response", name);
    rc = KV_E_PROTOCOL;
  }
  if (rc == KV_OK && (rc = attestation_from_bundle(doc, name, &a)) == KV_OK) {
    if (strcasecmp(a->key->name, name) != 0 ||
        (version && (!a->key->version || strcasecmp(a->key->version, version) != 0))) {
      akv_warn(AKV_LOGC_KV, "keys.attestation %s: the response describes another key (%s)", name,
               a->key->name);
      rc = KV_E_PROTOCOL;
    }
  }
  kv_client_audit(cl, &call, rc);
  cJSON_Delete(doc);
  if (rc != KV_OK) {
    kv_attestation_free(a);
    return rc;
  }
  *out = a;
  return KV_OK;
}

char *kv_attestation_json(const struct kv_attestation *a, size_t *len)
{
  cJSON *root, *key, *attrs, *att;
  char *b64 = NULL, *text = NULL;
  int ok;
  if (!a || !a->key || !a->key->kid || !len)
    return NULL;
  root = cJSON_CreateObject();
  ok = root && (key = cJSON_AddObjectToObject(root, "key")) &&
       cJSON_AddStringToObject(key, "kid", a->key->kid) &&
       (attrs = cJSON_AddObjectToObject(root, "attributes")) &&
       (att = cJSON_AddObjectToObject(attrs, "attestation"));
  if (ok) {
    struct {
      const char *name;
      const unsigned char *data;
      size_t len;
    } m[] = {{"certificatePemFile", (const unsigned char *)a->cert_pem, a->cert_pem_len},
             {"privateKeyAttestation", a->priv_blob, a->priv_len},
             {"publicKeyAttestation", a->pub_blob, a->pub_len}};
    for (size_t i = 0; ok && i < 3; i++) {
      if (!m[i].data)
        continue;
      b64 = akv_b64url_encode(m[i].data, m[i].len);
      ok = b64 && cJSON_AddStringToObject(att, m[i].name, b64);
      free(b64);
    }
    if (ok && a->format_version)
      ok = cJSON_AddStringToObject(att, "version", a->format_version) != NULL;
  }
  if (ok && (text = cJSON_Print(root)))
    *len = strlen(text);
  cJSON_Delete(root);
  return text;
}

/* ---- the checks ----------------------------------------------------------------------------- */

static const char *ossl_reason(void)
{
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown OpenSSL error";
}

/* All certificates of the PEM text, in order; anything else in it is an error. */
static kv_rc parse_certs(const struct kv_attestation *a, OSSL_LIB_CTX *libctx, const char *name,
                         X509 **certs, size_t *n)
{
  BIO *bio = BIO_new_mem_buf(a->cert_pem, (int)a->cert_pem_len);
  kv_rc rc = KV_OK;
  *n = 0;
  if (!bio)
    return KV_E_NOMEM;
  for (;;) {
    char *pname = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    ERR_set_mark();
    if (PEM_read_bio(bio, &pname, &header, &data, &len) != 1) {
      unsigned long e = ERR_peek_last_error();
      ERR_pop_to_mark();
      if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && *n > 0)
        break; /* the end (only whitespace may follow: checked below) */
      akv_warn(AKV_LOGC_KV, "keys.attestation %s: certificatePemFile is not valid PEM", name);
      rc = KV_E_PROTOCOL;
      break;
    }
    ERR_pop_to_mark();
    const unsigned char *p = data;
    X509 *c = NULL;
    if (strcmp(pname, "CERTIFICATE") != 0 || *n >= MAX_CERTS || !(c = X509_new_ex(libctx, NULL)) ||
        !d2i_X509(&c, &p, len) || p != data + len) {
      akv_warn(AKV_LOGC_KV,
               "keys.attestation %s: certificatePemFile entry %zu is not an X.509 certificate "
               "(at most %d certificates)",
               name, *n + 1, MAX_CERTS);
      X509_free(c);
      rc = KV_E_PROTOCOL;
    } else {
      certs[(*n)++] = c;
    }
    OPENSSL_free(pname);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (rc != KV_OK)
      break;
  }
  if (rc == KV_OK) {
    /* PEM_read_bio skips text before a BEGIN line, so garbage after the last certificate shows
     * up as a NO_START_LINE end: refuse anything but whitespace there. */
    const char *t = a->cert_pem + a->cert_pem_len;
    const char *last = NULL;
    for (const char *s = a->cert_pem; (s = strstr(s, "-----END CERTIFICATE-----")); s++)
      last = s;
    if (last) {
      for (const char *s = last + strlen("-----END CERTIFICATE-----"); s < t; s++)
        if (*s != '\n' && *s != '\r' && *s != ' ' && *s != '\t') {
          akv_warn(AKV_LOGC_KV, "keys.attestation %s: text after the last certificate", name);
          rc = KV_E_PROTOCOL;
          break;
        }
    }
  }
  BIO_free(bio);
  if (rc != KV_OK) {
    for (size_t i = 0; i < *n; i++)
      X509_free(certs[i]);
    *n = 0;
  }
  return rc;
}

static uint32_t be32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t be16(const unsigned char *p)
{
  return (uint32_t)p[0] << 8 | p[1];
}

/* What one key object of a blob states; pointers into the blob. */
struct blob_facts {
  uint32_t cls, ktype; /* UINT32_MAX = absent */
  const unsigned char *id, *modulus, *exponent;
  size_t id_len, modulus_len, exponent_len;
  int sensitive, extractable, never_extractable; /* -1 = absent */
};

/* A CK_ULONG of 1 to 4 bytes, big-endian; UINT32_MAX when longer. */
static uint32_t blob_ulong(const unsigned char *v, uint32_t len)
{
  uint32_t r = 0;
  if (len == 0 || len > 4)
    return UINT32_MAX;
  for (uint32_t i = 0; i < len; i++)
    r = r << 8 | v[i];
  return r;
}

static int blob_bool(const unsigned char *v, uint32_t len)
{
  return len == 1 && v[0] <= 1 ? v[0] : -2;
}

/* The first key object of an MRVL-1 blob, after its signature is checked (layout:
 * docs/emulator.md "Key attestation"): header (result code, flags, total size, attribute data
 * size), attribute data (object version, flags, offsets of up to two key objects; a key object:
 * handle, attribute count, attribute size, u32 type | u32 length | value), then the partition
 * key's RSA PKCS#1 v1.5 SHA-256 signature over everything before it. A second key object is not
 * read. */
static kv_rc check_blob(const unsigned char *b, size_t len, EVP_PKEY *signer, OSSL_LIB_CTX *libctx,
                        const char *name, const char *which, struct blob_facts *f)
{
  size_t siglen = (size_t)EVP_PKEY_get_size(signer), dsize, off, end;
  const unsigned char *d;
  uint32_t n;
  EVP_MD_CTX *md = NULL;
  int ok;
  memset(f, 0, sizeof(*f));
  f->cls = f->ktype = UINT32_MAX;
  f->sensitive = f->extractable = f->never_extractable = -1;
  if (len < 16 || be32(b) != 0 || be32(b + 8) != len) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: %s attestation is not an MRVL-1 blob (result code, total size)",
             name, which);
    return KV_E_PROTOCOL;
  }
  dsize = be32(b + 12);
  if (dsize < 8 || dsize > len - 16 || len - 16 - dsize != siglen)
    goto malformed;
  md = EVP_MD_CTX_new();
  if (!md)
    return KV_E_NOMEM;
  ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", libctx, NULL, signer, NULL) == 1 &&
       EVP_DigestVerify(md, b + 16 + dsize, siglen, b, 16 + dsize) == 1;
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  if (!ok) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the %s attestation's signature does not verify with the "
             "partition certificate's key",
             name, which);
    return KV_E_PROTOCOL;
  }
  d = b + 16;
  off = be16(d + 4);
  if (off < 8 || dsize - off < 12)
    goto malformed;
  n = be32(d + off + 4);
  if (n > MAX_ATTRS || be32(d + off + 8) > dsize - off - 12)
    goto malformed;
  end = off + 12 + be32(d + off + 8);
  off += 12;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t type, alen;
    if (end - off < 8)
      goto malformed;
    type = be32(d + off);
    alen = be32(d + off + 4);
    off += 8;
    if (alen > end - off)
      goto malformed;
    const unsigned char *v = d + off;
    switch (type) {
    case CKA_CLASS_:
      f->cls = blob_ulong(v, alen);
      break;
    case CKA_KEY_TYPE_:
      f->ktype = blob_ulong(v, alen);
      break;
    case CKA_ID_:
      f->id = v;
      f->id_len = alen && v[alen - 1] == '\0' ? alen - 1 : alen; /* NUL-ended text */
      break;
    case CKA_MODULUS_:
      f->modulus = v;
      f->modulus_len = alen;
      break;
    case CKA_PUBLIC_EXPONENT_:
      f->exponent = v;
      f->exponent_len = alen;
      break;
    case CKA_SENSITIVE_:
      if ((f->sensitive = blob_bool(v, alen)) < -1)
        goto malformed;
      break;
    case CKA_EXTRACTABLE_:
      if ((f->extractable = blob_bool(v, alen)) < -1)
        goto malformed;
      break;
    case CKA_NEVER_EXTRACTABLE_:
      if ((f->never_extractable = blob_bool(v, alen)) < -1)
        goto malformed;
      break;
    default:
      break;
    }
    off += alen;
  }
  return KV_OK;
malformed:
  akv_warn(AKV_LOGC_KV, "keys.attestation %s: %s attestation is truncated or malformed", name,
           which);
  return KV_E_PROTOCOL;
}

/* Big-endian integers equal, leading zero bytes aside (the HSM writes the modulus without one). */
static int same_uint(const unsigned char *a, size_t al, const unsigned char *b, size_t bl)
{
  while (al && !*a)
    a++, al--;
  while (bl && !*b)
    b++, bl--;
  return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* The blob's public key is the key's: RSA n and e; EC the uncompressed point. */
static int same_pubkey(const struct kv_key *k, const struct blob_facts *f)
{
  if (k->kty == KV_KTY_RSA)
    return f->ktype == CKK_RSA_ && f->modulus && f->exponent &&
           same_uint(f->modulus, f->modulus_len, k->n, k->n_len) &&
           same_uint(f->exponent, f->exponent_len, k->e, k->e_len);
  if (k->kty == KV_KTY_EC) {
    size_t cb = kv_crv_bytes(k->crv);
    const unsigned char *p = f->modulus;
    return f->ktype == CKK_EC_ && p && cb && f->modulus_len == 1 + 2 * cb && p[0] == 0x04 &&
           k->x_len <= cb && k->y_len <= cb && same_uint(p + 1, cb, k->x, k->x_len) &&
           same_uint(p + 1 + cb, cb, k->y, k->y_len);
  }
  return 0;
}

static int same_id(const struct blob_facts *f, const char *kid)
{
  return f->id && f->id_len == strlen(kid) && memcmp(f->id, kid, f->id_len) == 0;
}

static int self_signed(X509 *c)
{
  return X509_check_issued(c, c) == X509_V_OK;
}

/* target verifies to trusted, or to one of trusted_set when trusted is NULL (partial chain
 * allowed: the trusted certificate need not be self-signed), over untrusted (may be NULL); 0 or
 * the X509_V_ERR_ code. */
static int chain_error(OSSL_LIB_CTX *libctx, X509 *target, X509 *trusted,
                       STACK_OF(X509) * trusted_set, X509 *untrusted, int partial, kv_rc *rc)
{
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new_ex(libctx, NULL);
  STACK_OF(X509) *chain = sk_X509_new_null();
  int err = 0, added = store != NULL;
  *rc = KV_E_NOMEM;
  if (added && trusted)
    added = X509_STORE_add_cert(store, trusted);
  for (int i = 0; added && !trusted && i < sk_X509_num(trusted_set); i++)
    added = X509_STORE_add_cert(store, sk_X509_value(trusted_set, i));
  if (ctx && chain && added && (!untrusted || sk_X509_push(chain, untrusted)) &&
      X509_STORE_CTX_init(ctx, store, target, chain)) {
    *rc = KV_OK;
    X509_STORE_CTX_set_flags(ctx,
                             X509_V_FLAG_X509_STRICT | (partial ? X509_V_FLAG_PARTIAL_CHAIN : 0));
    if (X509_verify_cert(ctx) != 1)
      err = X509_STORE_CTX_get_error(ctx) ? X509_STORE_CTX_get_error(ctx) : X509_V_ERR_UNSPECIFIED;
  }
  ERR_clear_error();
  sk_X509_free(chain);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return err;
}

kv_rc kv_attestation_verify(const struct kv_attestation *a, OSSL_LIB_CTX *libctx,
                            STACK_OF(X509) * roots, const char *roots_name,
                            struct kv_attest_result *res)
{
  X509 *certs[MAX_CERTS];
  X509 *ms_root = NULL, *ms_part = NULL, *part = NULL, *card = NULL;
  size_t n = 0, self_signed_n = 0;
  struct blob_facts pf, uf;
  const char *name;
  int asym, err;
  kv_rc rc;

  if (!a || !a->key || !a->key->kid || !res)
    return KV_E_INVALID;
  memset(res, 0, sizeof(*res));
  name = a->key->name;
  asym = a->key->kty != KV_KTY_OCT;
  if (!a->format_version || strcmp(a->format_version, KV_ATTEST_FORMAT) != 0) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: unknown attestation format version \"%s\" (this module reads "
             "\"" KV_ATTEST_FORMAT "\")",
             name, a->format_version ? a->format_version : "(none)");
    return KV_E_PROTOCOL;
  }
  if ((rc = parse_certs(a, libctx, name, certs, &n)) != KV_OK)
    return rc;
  /* The four certificates, in any order: Microsoft's self-signed partition root, Microsoft's
   * partition certificate (issued by it), the vendor's partition certificate (the same public
   * key) and the HSM card certificate that issued the latter. */
  for (size_t i = 0; i < n; i++)
    if (self_signed(certs[i])) {
      ms_root = certs[i];
      self_signed_n++;
    }
  for (size_t i = 0; ms_root && i < n; i++)
    if (certs[i] != ms_root && X509_check_issued(ms_root, certs[i]) == X509_V_OK)
      ms_part = certs[i];
  for (size_t i = 0; ms_part && i < n; i++)
    if (certs[i] != ms_root && certs[i] != ms_part &&
        EVP_PKEY_eq(X509_get0_pubkey(certs[i]), X509_get0_pubkey(ms_part)) == 1)
      part = certs[i];
  for (size_t i = 0; part && i < n; i++)
    if (certs[i] != ms_root && certs[i] != ms_part && certs[i] != part &&
        X509_check_issued(certs[i], part) == X509_V_OK)
      card = certs[i];
  ERR_clear_error();
  if (n != 4 || self_signed_n != 1 || !card) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: certificatePemFile holds %zu certificate(s); expected the HSM "
             "card, the vendor's partition certificate issued by it, Microsoft's self-signed "
             "partition root and its partition certificate for the same key",
             name, n);
    rc = KV_E_PROTOCOL;
    goto out;
  }

  /* The chains, with OpenSSL: Microsoft's to the root in the file; the vendor's to the card
   * certificate and, when the caller trusts vendor roots, through it to one of them. */
  if ((err = chain_error(libctx, ms_part, ms_root, NULL, NULL, 0, &rc)) != 0 && rc == KV_OK) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the certificate chain does not verify: %s (Microsoft's "
             "partition certificate to its root)",
             name, X509_verify_cert_error_string(err));
    rc = KV_E_PROTOCOL;
  }
  if (rc == KV_OK && !roots && (err = chain_error(libctx, part, card, NULL, NULL, 1, &rc)) != 0 &&
      rc == KV_OK) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the certificate chain does not verify: %s (the vendor's "
             "partition certificate to the HSM card certificate)",
             name, X509_verify_cert_error_string(err));
    rc = KV_E_PROTOCOL;
  }
  if (rc == KV_OK && roots && (err = chain_error(libctx, part, NULL, roots, card, 0, &rc)) != 0 &&
      rc == KV_OK) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the certificate chain does not verify: %s (the vendor's "
             "partition certificate through the HSM card certificate to a trusted vendor root "
             "of %s)",
             name, X509_verify_cert_error_string(err), roots_name ? roots_name : "the caller");
    rc = KV_E_PROTOCOL;
  }
  if (rc != KV_OK)
    goto out;

  /* The blobs: the partition key's signature, the key they describe. */
  EVP_PKEY *skey = X509_get0_pubkey(part);
  if (!skey || !EVP_PKEY_is_a(skey, "RSA")) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the partition certificate's key is not a usable RSA key (%s)",
             name, ossl_reason());
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if ((rc = check_blob(a->priv_blob, a->priv_len, skey, libctx, name, "private key", &pf)) != KV_OK)
    goto out;
  if (pf.cls != (asym ? CKO_PRIVATE_KEY_ : CKO_SECRET_KEY_) || pf.sensitive != 1 ||
      !same_id(&pf, a->key->kid)) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the private key attestation describes another object (class, "
             "CKA_ID or CKA_SENSITIVE differ)",
             name);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (pf.extractable != (a->key->attrs.exportable ? 1 : 0) ||
      pf.never_extractable != (a->key->attrs.exportable ? 0 : 1)) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the private key attestation says CKA_EXTRACTABLE %d, "
             "CKA_NEVER_EXTRACTABLE %d for a key that is %sexportable",
             name, pf.extractable, pf.never_extractable, a->key->attrs.exportable ? "" : "not ");
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (asym) {
    if ((rc = check_blob(a->pub_blob, a->pub_len, skey, libctx, name, "public key", &uf)) != KV_OK)
      goto out;
    if (!same_pubkey(a->key, &pf) || !same_pubkey(a->key, &uf) || uf.cls != CKO_PUBLIC_KEY_ ||
        !same_id(&uf, a->key->kid)) {
      akv_warn(AKV_LOGC_KV,
               "keys.attestation %s: the attestation certifies another public key than the "
               "key's",
               name);
      rc = KV_E_PROTOCOL;
      goto out;
    }
  }
  res->extractable = pf.extractable;
  res->never_extractable = pf.never_extractable;
  res->vendor_root_checked = roots != NULL;
  res->signer = part;
  res->card = card;
  res->ms_root = ms_root;
  res->ms_part = ms_part;
  X509_up_ref(part);
  X509_up_ref(card);
  X509_up_ref(ms_root);
  X509_up_ref(ms_part);
  rc = KV_OK;
out:
  for (size_t i = 0; i < n; i++)
    X509_free(certs[i]);
  return rc;
}
