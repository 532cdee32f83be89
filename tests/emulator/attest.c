/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attest.c - GET /keys/{name}/{version}/attestation (api-version 7.6 and later): the KeyBundle of
 * that key version with attributes.attestation {certificatePemFile, privateKeyAttestation,
 * publicKeyAttestation, version} (Managed HSM only).
 *
 * A per-run emulated HSM root CA certifies an attestation signer (intermediate); the signer signs
 * each attestation blob and, for RSA/EC keys, an X.509 attestation certificate for the key's
 * public key. certificatePemFile is the PEM chain, leaf first: [key certificate,] signer, root.
 * Untampered attestations are kept per key version, so repeated requests get the same one.
 * The blob format (emulator-defined, the service's is the HSM vendor's) is in docs/emulator.md
 * "Key attestation".
 */
#include "core.h"
#include "attest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* PKCS#11 values written into the blobs (pkcs11t.h). */
#define P11_CKA_CLASS 0x000u
#define P11_CKA_TOKEN 0x001u
#define P11_CKA_LABEL 0x003u
#define P11_CKA_KEY_TYPE 0x100u
#define P11_CKA_ID 0x102u
#define P11_CKA_SENSITIVE 0x103u
#define P11_CKA_PUBLIC_KEY_INFO 0x129u
#define P11_CKA_EXTRACTABLE 0x162u
#define P11_CKA_NEVER_EXTRACTABLE 0x164u
#define P11_CKA_ALWAYS_SENSITIVE 0x165u
#define P11_CKO_PUBLIC_KEY 2u
#define P11_CKO_PRIVATE_KEY 3u
#define P11_CKO_SECRET_KEY 4u
#define P11_CKK_RSA 0u
#define P11_CKK_EC 3u
#define P11_CKK_AES 0x1fu

#define ATTEST_MAGIC "AKVEMUAT"
#define ATTEST_FORMAT 1u
#define ATTEST_VERSION "1.0"

static pthread_once_t ca_once = PTHREAD_ONCE_INIT;
static EVP_PKEY *root_key, *signer_key;
static X509 *root_cert, *signer_cert;
static int ca_ok;

static int tamper_mode; /* enum emu_attest_tamper */

/* Untampered attestations by kid: a key version keeps its attestation (the same key certificate)
 * for the run, as a client caching it expects. Bounded; beyond the cap they are made afresh. */
#define CACHE_MAX 4096
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *cache; /* object: kid -> attestation */

/* ---- the per-run CA ---------------------------------------------------------------------- */

static EVP_PKEY *ec_key_new(void)
{
  return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ext)
    return -1;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

/* A certificate for pkey named cn, issued by issuer/issuer_key (self-signed when issuer is
 * NULL). ca: basicConstraints CA:TRUE (pathlen 0 for the signer), else a key certificate. */
static X509 *cert_new(EVP_PKEY *pkey, const char *ou, const char *cn, X509 *issuer,
                      EVP_PKEY *issuer_key, int ca, const char *san_uri)
{
  X509 *c = X509_new();
  X509_NAME *n;
  unsigned char serial[16];
  BIGNUM *bn = NULL;
  if (!c || RAND_bytes(serial, sizeof(serial)) != 1)
    goto fail;
  serial[0] &= 0x7f;
  if (!(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
      !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) || !X509_set_version(c, 2) ||
      !X509_gmtime_adj(X509_getm_notBefore(c), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(c), 10L * 366 * 24 * 3600) || !X509_set_pubkey(c, pkey))
    goto fail;
  n = X509_get_subject_name(c);
  if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
                                  (const unsigned char *)"akv-pkcs11 emulator HSM", -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n))
    goto fail;
  X509 *iss = issuer ? issuer : c;
  if (add_ext(c, iss, NID_subject_key_identifier, "hash") != 0 ||
      add_ext(c, iss, NID_authority_key_identifier, "keyid:always") != 0)
    goto fail;
  if (ca) {
    if (add_ext(c, iss, NID_basic_constraints,
                issuer ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE") != 0 ||
        add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") != 0)
      goto fail;
  } else {
    char san[1200];
    if (add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") != 0)
      goto fail;
    if (san_uri) {
      if ((size_t)snprintf(san, sizeof(san), "URI:%s", san_uri) >= sizeof(san) ||
          add_ext(c, iss, NID_subject_alt_name, san) != 0)
        goto fail;
    }
  }
  if (!X509_sign(c, issuer_key, EVP_sha256()))
    goto fail;
  BN_free(bn);
  return c;
fail:
  BN_free(bn);
  X509_free(c);
  return NULL;
}

static void ca_init(void)
{
  root_key = ec_key_new();
  signer_key = ec_key_new();
  if (!root_key || !signer_key)
    return;
  root_cert = cert_new(root_key, "key attestation", "emulated HSM root CA (this run)", NULL,
                       root_key, 1, NULL);
  if (!root_cert)
    return;
  signer_cert = cert_new(signer_key, "key attestation", "emulated HSM attestation signer",
                         root_cert, root_key, 1, NULL);
  ca_ok = signer_cert != NULL;
}

void emu_attest_set_tamper(enum emu_attest_tamper mode)
{
  __atomic_store_n(&tamper_mode, (int)mode, __ATOMIC_RELAXED);
}

enum emu_attest_tamper emu_attest_get_tamper(void)
{
  return (enum emu_attest_tamper)__atomic_load_n(&tamper_mode, __ATOMIC_RELAXED);
}

/* ---- blobs ---------------------------------------------------------------------------------- */

struct blob {
  unsigned char *p;
  size_t len, cap;
  int bad;
};

static void put(struct blob *b, const void *data, size_t len)
{
  if (b->bad)
    return;
  if (b->len + len > b->cap) {
    size_t cap = (b->len + len) * 2 + 64;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
      b->bad = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, len);
  b->len += len;
}

static void put_u32(struct blob *b, uint32_t v)
{
  unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                         (unsigned char)(v >> 8), (unsigned char)v};
  put(b, be, 4);
}

static void attr_bytes(struct blob *b, uint32_t *count, uint32_t type, const void *v, size_t len)
{
  put_u32(b, type);
  put_u32(b, (uint32_t)len);
  put(b, v, len);
  (*count)++;
}

static void attr_ulong(struct blob *b, uint32_t *count, uint32_t type, uint32_t v)
{
  unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                         (unsigned char)(v >> 8), (unsigned char)v};
  attr_bytes(b, count, type, be, 4);
}

static void attr_bool(struct blob *b, uint32_t *count, uint32_t type, int v)
{
  unsigned char c = v ? 1 : 0;
  attr_bytes(b, count, type, &c, 1);
}

/* One attestation blob: magic, format, class, attribute count, attributes, signature length,
 * ECDSA-SHA256 signature of the signer over everything before the signature length. */
static unsigned char *blob_new(uint32_t cls, uint32_t ckk, const char *kid, const char *label,
                               const unsigned char *spki, size_t spki_len, int exportable,
                               size_t *out_len)
{
  struct blob b = {0}, attrs = {0};
  uint32_t n = 0;
  EVP_MD_CTX *md = NULL;
  size_t siglen = 0;
  unsigned char *sig = NULL;

  attr_ulong(&attrs, &n, P11_CKA_CLASS, cls);
  attr_ulong(&attrs, &n, P11_CKA_KEY_TYPE, ckk);
  attr_bool(&attrs, &n, P11_CKA_TOKEN, 1);
  attr_bytes(&attrs, &n, P11_CKA_ID, kid, strlen(kid));
  attr_bytes(&attrs, &n, P11_CKA_LABEL, label, strlen(label));
  if (cls != P11_CKO_PUBLIC_KEY) {
    attr_bool(&attrs, &n, P11_CKA_SENSITIVE, 1);
    attr_bool(&attrs, &n, P11_CKA_ALWAYS_SENSITIVE, 1);
    attr_bool(&attrs, &n, P11_CKA_EXTRACTABLE, exportable);
    attr_bool(&attrs, &n, P11_CKA_NEVER_EXTRACTABLE, !exportable);
  }
  if (spki)
    attr_bytes(&attrs, &n, P11_CKA_PUBLIC_KEY_INFO, spki, spki_len);

  put(&b, ATTEST_MAGIC, 8);
  put_u32(&b, ATTEST_FORMAT);
  put_u32(&b, cls);
  put_u32(&b, n);
  if (!attrs.bad)
    put(&b, attrs.p, attrs.len);
  if (b.bad || attrs.bad)
    goto fail;
  if (!(md = EVP_MD_CTX_new()) ||
      EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, signer_key) != 1 ||
      EVP_DigestSign(md, NULL, &siglen, b.p, b.len) != 1 || !(sig = malloc(siglen)) ||
      EVP_DigestSign(md, sig, &siglen, b.p, b.len) != 1)
    goto fail;
  if (emu_attest_get_tamper() == EMU_ATTEST_TAMPER_BLOB)
    b.p[b.len - 1] ^= 0x01; /* the last attribute byte: the signature no longer matches */
  put_u32(&b, (uint32_t)siglen);
  put(&b, sig, siglen);
  if (b.bad)
    goto fail;
  EVP_MD_CTX_free(md);
  free(sig);
  free(attrs.p);
  *out_len = b.len;
  return b.p;
fail:
  EVP_MD_CTX_free(md);
  free(sig);
  free(attrs.p);
  free(b.p);
  return NULL;
}

/* ---- the operation ------------------------------------------------------------------------- */

static int pem_append(BIO *bio, X509 *c)
{
  return PEM_write_bio_X509(bio, c) == 1 ? 0 : -1;
}

static int add_b64(cJSON *o, const char *member, const unsigned char *data, size_t len)
{
  char *s = emu_b64url_encode(data, len);
  int rc = s && cJSON_AddStringToObject(o, member, s) ? 0 : -1;
  free(s);
  return rc;
}

/* attributes.attestation for one key version; NULL on failure. */
static cJSON *attestation_new(const cJSON *bundle, EVP_PKEY *pkey, const char *name)
{
  const cJSON *key = cJSON_GetObjectItemCaseSensitive(bundle, "key");
  const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(bundle, "attributes");
  const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(key, "kid"));
  const char *kty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(key, "kty"));
  int exportable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(attrs, "exportable"));
  unsigned char *spki = NULL, *priv = NULL, *pub = NULL, *pem = NULL;
  size_t spki_len = 0, priv_len = 0, pub_len = 0;
  long pem_len;
  X509 *leaf = NULL;
  EVP_PKEY *other = NULL;
  BIO *bio = NULL;
  cJSON *a = NULL;
  uint32_t ckk;

  if (!kid || !kty)
    return NULL;
  ckk = !strncmp(kty, "RSA", 3) ? P11_CKK_RSA : !strncmp(kty, "EC", 2) ? P11_CKK_EC : P11_CKK_AES;
  if (pkey) {
    int l = i2d_PUBKEY(pkey, &spki);
    if (l <= 0)
      goto fail;
    spki_len = (size_t)l;
    EVP_PKEY *certified = pkey;
    if (emu_attest_get_tamper() == EMU_ATTEST_TAMPER_KEY) {
      /* A well-signed certificate and blobs for another public key. */
      if (!(other = ec_key_new()))
        goto fail;
      certified = other;
      OPENSSL_free(spki);
      spki = NULL;
      if ((l = i2d_PUBKEY(other, &spki)) <= 0)
        goto fail;
      spki_len = (size_t)l;
    }
    char cn[65];
    snprintf(cn, sizeof(cn), "%s", name);
    if (!(leaf = cert_new(certified, "key attestation certificate", cn, signer_cert, signer_key, 0,
                          kid)))
      goto fail;
  }
  priv = blob_new(pkey ? P11_CKO_PRIVATE_KEY : P11_CKO_SECRET_KEY, ckk, kid, name, spki, spki_len,
                  exportable, &priv_len);
  if (!priv)
    goto fail;
  if (pkey &&
      !(pub = blob_new(P11_CKO_PUBLIC_KEY, ckk, kid, name, spki, spki_len, exportable, &pub_len)))
    goto fail;

  if (!(bio = BIO_new(BIO_s_mem())) || (leaf && pem_append(bio, leaf) != 0) ||
      pem_append(bio, signer_cert) != 0 || pem_append(bio, root_cert) != 0)
    goto fail;
  pem_len = BIO_get_mem_data(bio, (char **)&pem);
  if (pem_len <= 0)
    goto fail;
  if (emu_attest_get_tamper() == EMU_ATTEST_TAMPER_CHAIN) {
    /* One byte of the first certificate's base64 (its signature area, before the END line):
     * the chain no longer verifies. */
    unsigned char *end = (unsigned char *)strstr((char *)pem, "\n-----END");
    if (end && end - pem > 8)
      end[-4] = end[-4] == 'A' ? 'B' : 'A';
  }

  if (!(a = cJSON_CreateObject()) || add_b64(a, "certificatePemFile", pem, (size_t)pem_len) != 0 ||
      add_b64(a, "privateKeyAttestation", priv, priv_len) != 0 ||
      (pub && add_b64(a, "publicKeyAttestation", pub, pub_len) != 0) ||
      !cJSON_AddStringToObject(a, "version", ATTEST_VERSION))
    goto fail;
  goto out;
fail:
  cJSON_Delete(a);
  a = NULL;
out:
  BIO_free(bio);
  X509_free(leaf);
  EVP_PKEY_free(other);
  OPENSSL_free(spki);
  free(priv);
  free(pub);
  return a;
}

int emu_attest_handle(struct emu_req *req, struct emu_resp *resp, const char *name,
                      const char *version)
{
  struct emu_vault *vault = req->vault;
  emu_stats_count("keys.attestation");
  if (strcmp(req->api_version, "7.6") != 0 && strcmp(req->api_version, "2025-07-01") != 0 &&
      strcmp(req->api_version, "2026-04-01") != 0)
    return emu_resp_bad_param(resp, "Key attestation needs api-version 7.6 or later (got %s).",
                              req->api_version);
  if (vault->kind != EMU_KIND_MHSM)
    return emu_resp_bad_param(resp, "Key attestation is only supported for keys in a Managed HSM.");
  pthread_once(&ca_once, ca_init);
  if (!ca_ok)
    return -1;
  struct emu_key_version *kv = emu_keys_get(vault, name, version);
  if (!kv)
    return emu_resp_not_found(resp, "Key", version && *version ? version : name);
  cJSON *b = emu_key_version_bundle_new(vault, kv), *a = NULL, *attrs;
  const char *kid = emu_key_version_kid_peek(kv);
  bool cacheable = emu_attest_get_tamper() == EMU_ATTEST_TAMPER_NONE;
  if (cacheable) {
    pthread_mutex_lock(&cache_lock);
    a = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cache, kid), 1);
    pthread_mutex_unlock(&cache_lock);
  }
  if (b && !a && (a = attestation_new(b, emu_key_version_pkey_peek(kv), name)) && cacheable) {
    cJSON *copy = cJSON_Duplicate(a, 1);
    pthread_mutex_lock(&cache_lock);
    if (!cache)
      cache = cJSON_CreateObject();
    if (copy && cache && cJSON_GetArraySize(cache) < CACHE_MAX &&
        !cJSON_GetObjectItemCaseSensitive(cache, kid))
      cJSON_AddItemToObject(cache, kid, copy);
    else
      cJSON_Delete(copy);
    pthread_mutex_unlock(&cache_lock);
  }
  if (b && a && (attrs = cJSON_GetObjectItemCaseSensitive(b, "attributes")))
    cJSON_AddItemToObject(attrs, "attestation", a);
  else {
    cJSON_Delete(a);
    a = NULL;
  }
  emu_key_version_unref(kv);
  if (!a) {
    cJSON_Delete(b);
    return -1;
  }
  return emu_resp_json(resp, 200, b);
}
