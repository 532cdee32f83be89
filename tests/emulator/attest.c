/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attest.c - GET /keys/{name}/{version}/attestation (api-version 7.6 and later): the KeyBundle of
 * that key version with attributes.attestation {certificatePemFile, privateKeyAttestation,
 * publicKeyAttestation, version} (Managed HSM only), in the service's format "MRVL-1" (the HSM
 * vendor's blobs, docs/emulator.md "Key attestation").
 *
 * Per-run emulated roots: an HSM vendor root (written to the state dir, never in a reply) issues
 * the HSM card certificate, which issues the vendor's partition certificate; the partition key
 * signs the blobs. A self-signed "Microsoft" partition root issues a second certificate for the
 * same partition key. Untampered attestations are kept per key version, so repeated requests get
 * the same one.
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

/* PKCS#11 attribute types and values as the blobs carry them (pkcs11t.h). */
#define P11_CKA_CLASS 0x000u
#define P11_CKA_TOKEN 0x001u
#define P11_CKA_LABEL 0x003u
#define P11_CKA_KEY_TYPE 0x100u
#define P11_CKA_ID 0x102u
#define P11_CKA_SENSITIVE 0x103u
#define P11_CKA_ENCRYPT 0x104u
#define P11_CKA_SIGN 0x108u
#define P11_CKA_VERIFY 0x10au
#define P11_CKA_MODULUS 0x120u
#define P11_CKA_MODULUS_BITS 0x121u
#define P11_CKA_PUBLIC_EXPONENT 0x122u
#define P11_CKA_VALUE_LEN 0x161u
#define P11_CKA_EXTRACTABLE 0x162u
#define P11_CKA_NEVER_EXTRACTABLE 0x164u
#define P11_CKA_ALWAYS_SENSITIVE 0x165u
#define P11_CKO_PUBLIC_KEY 2u
#define P11_CKO_PRIVATE_KEY 3u
#define P11_CKO_SECRET_KEY 4u
#define P11_CKK_RSA 0u
#define P11_CKK_EC 3u
#define P11_CKK_AES 0x1fu

#define ATTEST_VERSION "MRVL-1"
#define MRVL_FLAGS 3u       /* attributes returned and signed */
#define MRVL_OBJ_VERSION 3u /* key object version of the attribute data */
#define MRVL_HANDLE_PRIV 0x2001u
#define MRVL_HANDLE_PUB 0x2002u

/* The per-run certificates (docs/emulator.md "Key attestation"): the vendor's root (not in the
 * replies, written to the state dir), the HSM card, the vendor's partition certificate (its key
 * signs the blobs), Microsoft's self-signed partition root and its partition certificate for the
 * same partition key. All RSA-2048. */
#define VENDOR_ORG "akv-pkcs11 emulator HSM vendor"

static pthread_once_t ca_once = PTHREAD_ONCE_INIT;
static EVP_PKEY *vendor_key, *card_key, *part_key, *ms_key;
static X509 *vendor_root, *card_cert, *part_cert, *ms_root, *ms_part_cert;
static int ca_ok;

static int tamper_mode; /* enum emu_attest_tamper */

/* Untampered attestations by kid: a key version keeps its attestation for the run, as a client
 * caching it expects. Bounded; beyond the cap they are made afresh. */
#define CACHE_MAX 4096
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *cache; /* object: kid -> attestation */

/* ---- the per-run certificates --------------------------------------------------------------- */

static EVP_PKEY *rsa_key_new(void)
{
  return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
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

/* A certificate for pkey, O=org CN=cn, issued by issuer/issuer_key (self-signed when issuer is
 * NULL); ca: basicConstraints CA:TRUE, else CA:FALSE. */
static X509 *cert_new(EVP_PKEY *pkey, const char *org, const char *cn, X509 *issuer,
                      EVP_PKEY *issuer_key, int ca)
{
  X509 *c = X509_new();
  X509_NAME *n;
  unsigned char serial[16];
  BIGNUM *bn = NULL;
  if (!c || RAND_bytes(serial, sizeof(serial)) != 1)
    goto fail;
  serial[0] &= 0x7f;
  serial[0] |= 0x01;
  if (!(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
      !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) || !X509_set_version(c, 2) ||
      !X509_gmtime_adj(X509_getm_notBefore(c), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(c), 10L * 366 * 24 * 3600) || !X509_set_pubkey(c, pkey))
    goto fail;
  n = X509_get_subject_name(c);
  if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n))
    goto fail;
  X509 *iss = issuer ? issuer : c;
  if (add_ext(c, iss, NID_subject_key_identifier, "hash") != 0 ||
      add_ext(c, iss, NID_authority_key_identifier, "keyid:always") != 0 ||
      add_ext(c, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE") != 0 ||
      add_ext(c, iss, NID_key_usage,
              ca ? "critical,keyCertSign,cRLSign,digitalSignature" : "critical,digitalSignature") !=
          0)
    goto fail;
  if (!X509_sign(c, issuer_key, EVP_sha256()))
    goto fail;
  BN_free(bn);
  return c;
fail:
  BN_free(bn);
  X509_free(c);
  return NULL;
}

/* The vendor root, at start (its file is named by the ready file); the rest at the first
 * attestation, so that an emulator never asked for one does not pay for three more keys. */
static pthread_once_t root_once = PTHREAD_ONCE_INIT;

static void root_init(void)
{
  if ((vendor_key = rsa_key_new()))
    vendor_root = cert_new(vendor_key, VENDOR_ORG, "emulated HSM vendor root (this run)", NULL,
                           vendor_key, 1);
}

static void ca_init(void)
{
  static const char ms[] = "akv-pkcs11 emulator Managed HSM";
  pthread_once(&root_once, root_init);
  if (!vendor_root || !(card_key = rsa_key_new()) || !(part_key = rsa_key_new()) ||
      !(ms_key = rsa_key_new()))
    return;
  card_cert = cert_new(card_key, VENDOR_ORG, "emulated HSM card", vendor_root, vendor_key, 1);
  part_cert = card_cert
                  ? cert_new(part_key, VENDOR_ORG, "emulated HSM partition", card_cert, card_key, 0)
                  : NULL;
  ms_root = cert_new(ms_key, ms, "emulated partition owner root (this run)", NULL, ms_key, 1);
  ms_part_cert =
      ms_root ? cert_new(part_key, ms, "emulated HSM partition (owner)", ms_root, ms_key, 0) : NULL;
  ca_ok = part_cert && ms_part_cert;
}

int emu_attest_init(const char *path)
{
  FILE *f;
  int ok;
  pthread_once(&root_once, root_init);
  if (!vendor_root || !(f = fopen(path, "w")))
    return -1;
  ok = PEM_write_X509(f, vendor_root) == 1;
  return fclose(f) == 0 && ok ? 0 : -1;
}

void emu_attest_set_tamper(enum emu_attest_tamper mode)
{
  __atomic_store_n(&tamper_mode, (int)mode, __ATOMIC_RELAXED);
}

enum emu_attest_tamper emu_attest_get_tamper(void)
{
  return (enum emu_attest_tamper)__atomic_load_n(&tamper_mode, __ATOMIC_RELAXED);
}

/* ---- blobs (MRVL-1) ------------------------------------------------------------------------- */

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

static void put_u16(struct blob *b, uint16_t v)
{
  unsigned char be[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  put(b, be, 2);
}

static void attr_bytes(struct blob *b, uint32_t *count, uint32_t type, const void *v, size_t len)
{
  put_u32(b, type);
  put_u32(b, (uint32_t)len);
  put(b, v, len);
  (*count)++;
}

static void attr_u32(struct blob *b, uint32_t *count, uint32_t type, uint32_t v)
{
  unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                         (unsigned char)(v >> 8), (unsigned char)v};
  attr_bytes(b, count, type, be, 4);
}

static void attr_byte(struct blob *b, uint32_t *count, uint32_t type, unsigned v)
{
  unsigned char c = (unsigned char)v;
  attr_bytes(b, count, type, &c, 1);
}

/* NUL-ended text, as the HSM gives CKA_ID and CKA_LABEL. */
static void attr_text(struct blob *b, uint32_t *count, uint32_t type, const char *s)
{
  attr_bytes(b, count, type, s, strlen(s) + 1);
}

/* The public key's attributes: RSA modulus (no leading zero byte), bits and exponent; EC the
 * uncompressed point in CKA_MODULUS with its length in CKA_VALUE_LEN. */
static int attr_pubkey(struct blob *b, uint32_t *count, EVP_PKEY *pk)
{
  unsigned char buf[1024];
  size_t len = 0;
  if (EVP_PKEY_is_a(pk, "RSA")) {
    BIGNUM *n = NULL, *e = NULL;
    int ok = EVP_PKEY_get_bn_param(pk, "n", &n) && EVP_PKEY_get_bn_param(pk, "e", &e) &&
             BN_num_bytes(n) <= (int)sizeof(buf);
    if (ok) {
      len = (size_t)BN_bn2bin(n, buf);
      attr_bytes(b, count, P11_CKA_MODULUS, buf, len);
      attr_u32(b, count, P11_CKA_MODULUS_BITS, (uint32_t)BN_num_bits(n));
      len = (size_t)BN_bn2bin(e, buf);
      attr_bytes(b, count, P11_CKA_PUBLIC_EXPONENT, buf, len);
    }
    BN_free(n);
    BN_free(e);
    return ok ? 0 : -1;
  }
  if (EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", buf, sizeof(buf), &len) != 1 ||
      len == 0 || buf[0] != 0x04)
    return -1;
  attr_bytes(b, count, P11_CKA_MODULUS, buf, len);
  attr_u32(b, count, P11_CKA_VALUE_LEN, (uint32_t)len);
  return 0;
}

/* One MRVL-1 blob: the 16-byte header (result code 0, flags, total size, attribute data size),
 * the attribute data (object version, flags, offset of the key object, no second object; the key
 * object: handle, attribute count, attribute size, attributes), then the partition key's
 * RSA PKCS#1 v1.5 SHA-256 signature over everything before it. */
static unsigned char *blob_new(uint32_t cls, uint32_t ckk, const char *kid, const char *label,
                               EVP_PKEY *pk, int exportable, size_t *out_len)
{
  struct blob b = {0}, attrs = {0}, data = {0};
  uint32_t n = 0;
  EVP_MD_CTX *md = NULL;
  size_t siglen = (size_t)EVP_PKEY_get_size(part_key), total, signed_len;
  static const unsigned char zero[512];

  attr_byte(&attrs, &n, P11_CKA_CLASS, cls);
  attr_byte(&attrs, &n, P11_CKA_KEY_TYPE, ckk);
  attr_byte(&attrs, &n, P11_CKA_TOKEN, 1);
  attr_text(&attrs, &n, P11_CKA_LABEL, label);
  attr_text(&attrs, &n, P11_CKA_ID, kid);
  if (pk && attr_pubkey(&attrs, &n, pk) != 0)
    goto fail;
  if (cls == P11_CKO_PUBLIC_KEY) {
    attr_byte(&attrs, &n, P11_CKA_VERIFY, 1);
  } else {
    attr_byte(&attrs, &n, pk ? P11_CKA_SIGN : P11_CKA_ENCRYPT, 1);
    attr_byte(&attrs, &n, P11_CKA_SENSITIVE, 1);
    attr_byte(&attrs, &n, P11_CKA_ALWAYS_SENSITIVE, 1);
    attr_byte(&attrs, &n, P11_CKA_EXTRACTABLE, exportable ? 1 : 0);
    attr_byte(&attrs, &n, P11_CKA_NEVER_EXTRACTABLE, exportable ? 0 : 1);
  }
  put_u16(&data, MRVL_OBJ_VERSION);
  put_u16(&data, MRVL_FLAGS);
  put_u16(&data, 8); /* the key object, right after these 8 bytes */
  put_u16(&data, 0); /* no second object */
  put_u32(&data, cls == P11_CKO_PUBLIC_KEY ? MRVL_HANDLE_PUB : MRVL_HANDLE_PRIV);
  put_u32(&data, n);
  put_u32(&data, (uint32_t)attrs.len);
  if (!attrs.bad)
    put(&data, attrs.p, attrs.len);
  if (data.bad || attrs.bad)
    goto fail;
  total = 16 + data.len + siglen;
  put_u32(&b, 0);
  put_u32(&b, MRVL_FLAGS);
  put_u32(&b, (uint32_t)total);
  put_u32(&b, (uint32_t)data.len);
  put(&b, data.p, data.len);
  signed_len = b.len;
  if (siglen > sizeof(zero))
    goto fail;
  put(&b, zero, siglen); /* room for the signature */
  if (b.bad || !(md = EVP_MD_CTX_new()) ||
      EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, part_key) != 1 ||
      EVP_DigestSign(md, b.p + signed_len, &siglen, b.p, signed_len) != 1 ||
      signed_len + siglen != total)
    goto fail;
  if (emu_attest_get_tamper() == EMU_ATTEST_TAMPER_BLOB)
    b.p[signed_len - 1] ^= 0x01; /* the last attribute byte: the signature no longer matches */
  EVP_MD_CTX_free(md);
  free(attrs.p);
  free(data.p);
  *out_len = b.len;
  return b.p;
fail:
  EVP_MD_CTX_free(md);
  free(attrs.p);
  free(data.p);
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

/* certificatePemFile: card, vendor partition, Microsoft root, Microsoft partition. Tamper
 * "chain" changes one byte of the vendor partition certificate's signature (its base64, before
 * the END line), so it no longer verifies against the card certificate. */
static int chain_pem(BIO *bio)
{
  BIO *part = BIO_new(BIO_s_mem());
  char *p = NULL;
  long len;
  int rc = -1;
  if (!part || pem_append(bio, card_cert) != 0 || pem_append(part, part_cert) != 0 ||
      (len = BIO_get_mem_data(part, &p)) <= 0)
    goto out;
  if (emu_attest_get_tamper() == EMU_ATTEST_TAMPER_CHAIN) {
    char *end = strstr(p, "\n-----END");
    if (end && end - p > 8)
      end[-4] = end[-4] == 'A' ? 'B' : 'A';
  }
  if (BIO_write(bio, p, (int)len) != (int)len || pem_append(bio, ms_root) != 0 ||
      pem_append(bio, ms_part_cert) != 0)
    goto out;
  rc = 0;
out:
  BIO_free(part);
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
  unsigned char *priv = NULL, *pub = NULL, *pem = NULL;
  size_t priv_len = 0, pub_len = 0;
  long pem_len;
  EVP_PKEY *other = NULL, *attested = pkey;
  BIO *bio = NULL;
  cJSON *a = NULL;
  uint32_t ckk;

  if (!kid || !kty)
    return NULL;
  ckk = !strncmp(kty, "RSA", 3) ? P11_CKK_RSA : !strncmp(kty, "EC", 2) ? P11_CKK_EC : P11_CKK_AES;
  if (pkey && emu_attest_get_tamper() == EMU_ATTEST_TAMPER_KEY) {
    /* Well-signed blobs of another (fresh EC P-256) public key. */
    if (!(other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")))
      goto fail;
    attested = other;
    ckk = P11_CKK_EC;
  }
  priv = blob_new(pkey ? P11_CKO_PRIVATE_KEY : P11_CKO_SECRET_KEY, ckk, kid, name, attested,
                  exportable, &priv_len);
  if (!priv)
    goto fail;
  if (pkey && !(pub = blob_new(P11_CKO_PUBLIC_KEY, ckk, kid, name, attested, exportable, &pub_len)))
    goto fail;
  if (!(bio = BIO_new(BIO_s_mem())) || chain_pem(bio) != 0)
    goto fail;
  pem_len = BIO_get_mem_data(bio, (char **)&pem);
  if (pem_len <= 0)
    goto fail;
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
  EVP_PKEY_free(other);
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
