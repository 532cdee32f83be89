/* SPDX-License-Identifier: Apache-2.0 */
/* Managed HSM key attestation: GET /keys/{name}/{version}/attestation (api-version 7.6 and later)
 * into struct kv_attestation, and its checks with OpenSSL: the certificates of certificatePemFile
 * form a chain to its root (or to a root the caller trusts), the key certificate and the blobs
 * certify the key's own public key, and the blobs carry the attestation signer's signature.
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

#define BLOB_MAGIC "AKVEMUAT"
#define BLOB_FORMAT 1u
#define CKA_CLASS_ 0x000u
#define CKA_ID_ 0x102u
#define CKA_SENSITIVE_ 0x103u
#define CKA_PUBLIC_KEY_INFO_ 0x129u
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
  X509_free(r->leaf);
  X509_free(r->signer);
  X509_free(r->root);
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
                             struct kv_attestation **out)
{
  struct kv_call call;
  cJSON *doc = NULL;
  struct kv_attestation *a = NULL;
  char *url;
  kv_rc rc;
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
    if ((rc = kv_get_key(cl, name, NULL, &latest)) != KV_OK)
      return rc;
    rc = latest->version ? kv_get_key_attestation(cl, name, latest->version, out) : KV_E_PROTOCOL;
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

struct blob_facts {
  uint32_t cls;
  const unsigned char *id, *spki;
  size_t id_len, spki_len;
  int sensitive, extractable, never_extractable; /* -1 = absent */
};

static int blob_bool(const unsigned char *v, uint32_t len)
{
  return len == 1 && v[0] <= 1 ? v[0] : -2;
}

/* Parses and checks the signature of one blob (format: docs/emulator.md "Key attestation"). */
static kv_rc check_blob(const unsigned char *b, size_t len, EVP_PKEY *signer, OSSL_LIB_CTX *libctx,
                        const char *name, const char *which, struct blob_facts *f)
{
  size_t off = 20, signed_len;
  uint32_t n, siglen;
  EVP_MD_CTX *md = NULL;
  int ok;
  memset(f, 0, sizeof(*f));
  f->sensitive = f->extractable = f->never_extractable = -1;
  if (len < 24 || memcmp(b, BLOB_MAGIC, 8) != 0 || be32(b + 8) != BLOB_FORMAT) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: %s attestation has an unknown format", name, which);
    return KV_E_PROTOCOL;
  }
  f->cls = be32(b + 12);
  n = be32(b + 16);
  if (n > MAX_ATTRS)
    goto malformed;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t type, alen;
    if (len - off < 8)
      goto malformed;
    type = be32(b + off);
    alen = be32(b + off + 4);
    off += 8;
    if (alen > len - off)
      goto malformed;
    const unsigned char *v = b + off;
    switch (type) {
    case CKA_CLASS_:
      if (alen != 4 || be32(v) != f->cls)
        goto malformed;
      break;
    case CKA_ID_:
      f->id = v;
      f->id_len = alen;
      break;
    case CKA_PUBLIC_KEY_INFO_:
      f->spki = v;
      f->spki_len = alen;
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
  signed_len = off;
  if (len - off < 4)
    goto malformed;
  siglen = be32(b + off);
  off += 4;
  if (siglen == 0 || siglen != len - off)
    goto malformed;
  md = EVP_MD_CTX_new();
  if (!md)
    return KV_E_NOMEM;
  ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", libctx, NULL, signer, NULL) == 1 &&
       EVP_DigestVerify(md, b + off, siglen, b, signed_len) == 1;
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  if (!ok) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the %s attestation's signature does not verify with the "
             "attestation signer's key",
             name, which);
    return KV_E_PROTOCOL;
  }
  return KV_OK;
malformed:
  akv_warn(AKV_LOGC_KV, "keys.attestation %s: %s attestation is truncated or malformed", name,
           which);
  return KV_E_PROTOCOL;
}

static int self_signed(X509 *c)
{
  return X509_check_issued(c, c) == X509_V_OK;
}

kv_rc kv_attestation_verify(const struct kv_attestation *a, OSSL_LIB_CTX *libctx, X509 *anchor,
                            struct kv_attest_result *res)
{
  X509 *certs[MAX_CERTS];
  size_t n = 0, need;
  X509_STORE *store = NULL;
  X509_STORE_CTX *ctx = NULL;
  STACK_OF(X509) *untrusted = NULL;
  unsigned char *spki = NULL;
  size_t spki_len = 0;
  struct blob_facts pf, uf;
  const char *name;
  int asym;
  kv_rc rc;

  if (!a || !a->key || !res)
    return KV_E_INVALID;
  memset(res, 0, sizeof(*res));
  name = a->key->name;
  asym = a->key->kty != KV_KTY_OCT;
  if ((rc = parse_certs(a, libctx, name, certs, &n)) != KV_OK)
    return rc;
  /* Order, leaf first: [key certificate (RSA/EC keys),] attestation signer, ..., root. */
  need = asym ? 3 : 2;
  if (n < need || !self_signed(certs[n - 1])) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: certificatePemFile holds %zu certificate(s); expected %s"
             "the attestation signer and a self-signed root",
             name, n, asym ? "the key certificate, " : "");
    rc = KV_E_PROTOCOL;
    goto out;
  }
  X509 *target = certs[0];
  X509 *signer = asym ? certs[1] : certs[0];

  /* The chain, with OpenSSL: to the caller's root, else to the reply's own root. */
  if (!(store = X509_STORE_new()) || !(ctx = X509_STORE_CTX_new_ex(libctx, NULL)) ||
      !(untrusted = sk_X509_new_null())) {
    rc = KV_E_NOMEM;
    goto out;
  }
  if (!X509_STORE_add_cert(store, anchor ? anchor : certs[n - 1])) {
    rc = KV_E_NOMEM;
    goto out;
  }
  for (size_t i = 1; i + 1 < n; i++)
    if (!sk_X509_push(untrusted, certs[i])) {
      rc = KV_E_NOMEM;
      goto out;
    }
  if (!X509_STORE_CTX_init(ctx, store, target, untrusted)) {
    rc = KV_E_NOMEM;
    goto out;
  }
  X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
  if (X509_verify_cert(ctx) != 1) {
    int err = X509_STORE_CTX_get_error(ctx);
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: the certificate chain does not verify: %s%s", name,
             X509_verify_cert_error_string(err), anchor ? " (against the trusted root)" : "");
    ERR_clear_error();
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (asym && X509_check_issued(signer, target) != X509_V_OK) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the key certificate is not issued by the "
             "attestation signer",
             name);
    rc = KV_E_PROTOCOL;
    goto out;
  }

  /* The blobs: the signer's signature, the key they describe. */
  EVP_PKEY *skey = X509_get0_pubkey(signer);
  if (!skey) {
    akv_warn(AKV_LOGC_KV, "keys.attestation %s: the attestation signer's key is unusable (%s)",
             name, ossl_reason());
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if ((rc = check_blob(a->priv_blob, a->priv_len, skey, libctx, name, "private key", &pf)) != KV_OK)
    goto out;
  if (pf.cls != (asym ? CKO_PRIVATE_KEY_ : CKO_SECRET_KEY_) || pf.sensitive != 1 || !pf.id ||
      pf.id_len != strlen(a->key->kid) || memcmp(pf.id, a->key->kid, pf.id_len) != 0) {
    akv_warn(AKV_LOGC_KV,
             "keys.attestation %s: the private key attestation describes another object (class, "
             "CKA_ID or CKA_SENSITIVE differ)",
             name);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (asym) {
    if ((rc = check_blob(a->pub_blob, a->pub_len, skey, libctx, name, "public key", &uf)) != KV_OK)
      goto out;
    if ((rc = kv_key_spki_der(a->key, libctx, &spki, &spki_len)) != KV_OK)
      goto out;
    unsigned char *cert_spki = NULL;
    int cl = i2d_PUBKEY(X509_get0_pubkey(target), &cert_spki);
    int same = cl > 0 && (size_t)cl == spki_len && memcmp(cert_spki, spki, spki_len) == 0;
    OPENSSL_free(cert_spki);
    if (!same) {
      akv_warn(AKV_LOGC_KV,
               "keys.attestation %s: the key certificate certifies another public key than the "
               "key's",
               name);
      rc = KV_E_PROTOCOL;
      goto out;
    }
    if (uf.cls != CKO_PUBLIC_KEY_ || !pf.spki || !uf.spki || pf.spki_len != spki_len ||
        uf.spki_len != spki_len || memcmp(pf.spki, spki, spki_len) != 0 ||
        memcmp(uf.spki, spki, spki_len) != 0 || !uf.id || uf.id_len != pf.id_len ||
        memcmp(uf.id, pf.id, pf.id_len) != 0) {
      akv_warn(AKV_LOGC_KV,
               "keys.attestation %s: the attestation blobs describe another public key than the "
               "key's",
               name);
      rc = KV_E_PROTOCOL;
      goto out;
    }
  }
  res->extractable = pf.extractable;
  res->never_extractable = pf.never_extractable;
  res->leaf = asym ? target : NULL;
  res->signer = signer;
  res->root = certs[n - 1];
  if (res->leaf)
    X509_up_ref(res->leaf);
  X509_up_ref(res->signer);
  X509_up_ref(res->root);
  rc = KV_OK;
out:
  free(spki);
  sk_X509_free(untrusted);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  for (size_t i = 0; i < n; i++)
    X509_free(certs[i]);
  return rc;
}
