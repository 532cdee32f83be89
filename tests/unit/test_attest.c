/* SPDX-License-Identifier: Apache-2.0 */
/* src/kv/attest.c against the fake transport: the request, strict parsing of the reply, and every
 * check of kv_attestation_verify on replies built here with OpenSSL (format MRVL-1: vendor root,
 * HSM card, partition certificates and blobs in the layout of docs/emulator.md "Key attestation"),
 * then spoiled one way at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fake_http.h"
#include "kv/kv.h"
#include "util/audit.h"
#include "util/b64.h"
#include "util/log.h"

#define HSM "https://myhsm.managedhsm.azure.net"
#define V1 "0123456789abcdef0123456789abcdef"
#define KID HSM "/keys/k/" V1

static char log_file[64]; /* per process: tests may run in parallel */
static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *hsm, *vault;
static char *replies[8];
static size_t n_replies, next_reply;

/* Per-process material: the vendor root, the HSM card, the partition key (RSA, signs the blobs)
 * with the vendor's and Microsoft's certificates, Microsoft's root, another vendor root, the
 * attested RSA and EC keys and another key. */
static EVP_PKEY *vroot_key, *card_key, *part_key, *ms_key, *vroot2_key, *rsa_key, *ec_key,
    *other_key;
static X509 *vroot, *card, *part, *ms_root, *ms_part, *vroot2, *ms_other;

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  static char token[] = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"t\"}";
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->status = 200;
    reply->body = token;
  } else if (next_reply < n_replies) {
    reply->status = 200;
    reply->body = replies[next_reply++];
  } else {
    reply->status = 599;
    reply->body = "{\"error\":{\"code\":\"TestHasNoReply\",\"message\":\"unscripted\"}}";
  }
}

static void reply(char *body) /* takes body */
{
  replies[n_replies++] = body;
}

/* ---- building attestations ---------------------------------------------------------------- */

static void ext(X509 *c, X509 *iss, int nid, const char *v)
{
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, iss, c, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, v);
  assert_non_null(e);
  assert_int_equal(X509_add_ext(c, e, -1), 1);
  X509_EXTENSION_free(e);
}

static X509 *cert(EVP_PKEY *pk, const char *cn, X509 *iss, EVP_PKEY *iss_key, const char *bc)
{
  static long serial = 1;
  X509 *c = X509_new();
  assert_non_null(c);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
  X509_set_version(c, 2);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 3600);
  X509_set_pubkey(c, pk);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_UTF8,
                             (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(c, X509_get_subject_name(iss ? iss : c));
  ext(c, iss ? iss : c, NID_subject_key_identifier, "hash");
  ext(c, iss ? iss : c, NID_authority_key_identifier, "keyid:always");
  ext(c, iss ? iss : c, NID_basic_constraints, bc);
  if (strstr(bc, "TRUE"))
    ext(c, iss ? iss : c, NID_key_usage, "critical,keyCertSign,digitalSignature");
  assert_true(X509_sign(c, iss_key, EVP_sha256()) > 0);
  return c;
}

struct buf {
  unsigned char p[4096];
  size_t n;
};

static void put(struct buf *b, const void *d, size_t n)
{
  assert_true(b->n + n <= sizeof(b->p));
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void u32(struct buf *b, uint32_t v)
{
  unsigned char be[4] = {v >> 24, v >> 16, v >> 8, v};
  put(b, be, 4);
}

static void u16(struct buf *b, uint32_t v)
{
  unsigned char be[2] = {v >> 8, v};
  put(b, be, 2);
}

static void attr(struct buf *b, uint32_t *count, uint32_t type, const void *v, size_t n)
{
  u32(b, type);
  u32(b, (uint32_t)n);
  put(b, v, n);
  (*count)++;
}

static void attr_byte(struct buf *b, uint32_t *count, uint32_t type, unsigned char v)
{
  attr(b, count, type, &v, 1);
}

/* An MRVL-1 blob of class cls for pk (NULL: a secret key) named kid: header, attribute data with
 * one key object, the partition key's RSA PKCS#1 v1.5 SHA-256 signature. */
static void blob(struct buf *b, uint32_t cls, const char *kid, EVP_PKEY *pk, int extractable)
{
  struct buf a = {.n = 0}, d = {.n = 0};
  unsigned char v[1024], sig[512];
  size_t siglen = sizeof(sig), len = 0;
  uint32_t n = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  attr_byte(&a, &n, 0x000, (unsigned char)cls);
  attr_byte(&a, &n, 0x100, !pk ? 0x1f : EVP_PKEY_is_a(pk, "RSA") ? 0 : 3);
  attr(&a, &n, 0x003, "k", 2);
  attr(&a, &n, 0x102, kid, strlen(kid) + 1);
  if (pk && EVP_PKEY_is_a(pk, "RSA")) {
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, "n", &bn), 1);
    attr(&a, &n, 0x120, v, (size_t)BN_bn2bin(bn, v));
    BN_free(bn);
    bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, "e", &bn), 1);
    attr(&a, &n, 0x122, v, (size_t)BN_bn2bin(bn, v));
    BN_free(bn);
  } else if (pk) {
    assert_int_equal(EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", v, sizeof(v), &len), 1);
    attr(&a, &n, 0x120, v, len);
  }
  if (cls != 2) {
    attr_byte(&a, &n, 0x103, 1);
    attr_byte(&a, &n, 0x162, (unsigned char)extractable);
    attr_byte(&a, &n, 0x164, (unsigned char)!extractable);
  }
  u16(&d, 3);
  u16(&d, 3);
  u16(&d, 8);
  u16(&d, 0);
  u32(&d, 0x2001);
  u32(&d, n);
  u32(&d, (uint32_t)a.n);
  put(&d, a.p, a.n);
  b->n = 0;
  u32(b, 0);
  u32(b, 3);
  u32(b, (uint32_t)(16 + d.n + 256));
  u32(b, (uint32_t)d.n);
  put(b, d.p, d.n);
  assert_non_null(md);
  assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, part_key), 1);
  assert_int_equal(EVP_DigestSign(md, sig, &siglen, b->p, b->n), 1);
  assert_int_equal(siglen, 256);
  EVP_MD_CTX_free(md);
  put(b, sig, siglen);
}

static char *b64(const void *d, size_t n)
{
  char *s = akv_b64url_encode(d, n);
  assert_non_null(s);
  return s;
}

static char *pem(X509 *const *certs, size_t n)
{
  BIO *bio = BIO_new(BIO_s_mem());
  char *p, *out;
  long len;
  for (size_t i = 0; i < n; i++)
    assert_int_equal(PEM_write_bio_X509(bio, certs[i]), 1);
  len = BIO_get_mem_data(bio, &p);
  out = strndup(p, (size_t)len);
  BIO_free(bio);
  return out;
}

/* A JWK number: width 0 gives the minimal big-endian bytes (RSA n), else exactly width bytes (an
 * EC coordinate is always the curve's size, RFC 7518 6.2.1.2, even with leading zero bytes: one
 * key in 128 has one). */
static char *bn_b64(EVP_PKEY *pk, const char *param, int width)
{
  BIGNUM *bn = NULL;
  unsigned char d[1024];
  assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
  int n = width ? BN_bn2binpad(bn, d, width) : BN_bn2bin(bn, d);
  BN_free(bn);
  assert_true(n > 0);
  return b64(d, (size_t)n);
}

/* What to spoil in the reply built by attestation_json. */
enum spoil {
  OK,
  SHUFFLED,    /* the certificates in another order (fine: no fixed order) */
  CHAIN_SIG,   /* a byte of the vendor partition certificate's signature */
  BLOB_SIG,    /* a signed byte of the private blob */
  OTHER_KEY,   /* blobs for another public key */
  NO_MS_ROOT,  /* Microsoft's root missing */
  MS_OTHER,    /* Microsoft's partition certificate for another key */
  TRAILING,    /* text after the last certificate */
  NOT_CERT,    /* a PEM block that is no certificate */
  SHORT_BLOB,  /* the blob cut short */
  BAD_HEADER,  /* the header's total size is not the blob's */
  OTHER_ID,    /* the private blob names another key (CKA_ID) */
  EXTRACTABLE, /* the private blob says extractable for a key that is not exportable */
  OLD_FORMAT,  /* version "1.0" */
  NO_PUB_BLOB, /* publicKeyAttestation missing for an RSA key */
  BAD_B64,     /* privateKeyAttestation not base64url */
};

enum kind { K_RSA, K_EC, K_OCT };

/* KeyBundle with attributes.attestation of the key "k": RSA, EC or oct-HSM. */
static char *attestation_json(enum spoil sp, enum kind kind)
{
  EVP_PKEY *key = kind == K_RSA ? rsa_key : kind == K_EC ? ec_key : NULL;
  EVP_PKEY *attested = sp == OTHER_KEY ? other_key : key;
  struct buf pb, ub;
  char *chain, *out, keyjson[2048];
  X509 *order[4] = {card, part, ms_root, ms_part};
  size_t nc = 4;

  if (sp == SHUFFLED) {
    order[0] = ms_part;
    order[1] = ms_root;
    order[2] = part;
    order[3] = card;
  } else if (sp == NO_MS_ROOT) {
    order[2] = ms_part;
    nc = 3;
  } else if (sp == MS_OTHER) {
    order[3] = ms_other;
  }
  blob(&pb, kind == K_OCT ? 4 : 3, sp == OTHER_ID ? HSM "/keys/x/" V1 : KID, attested,
       sp == EXTRACTABLE);
  blob(&ub, 2, KID, attested, 0);
  if (sp == BLOB_SIG)
    pb.p[60] ^= 1; /* in the attributes: parses, but the signature no longer matches */
  if (sp == SHORT_BLOB)
    pb.n = 40;
  if (sp == BAD_HEADER)
    pb.p[11] ^= 1;
  chain = pem(order, nc);
  if (sp == CHAIN_SIG) {
    /* the second certificate (the vendor partition's): its last base64 line */
    char *end = strstr(strstr(chain, "\n-----END") + 1, "\n-----END");
    end[-4] = end[-4] == 'A' ? 'B' : 'A';
  }
  if (sp == TRAILING || sp == NOT_CERT) {
    const char *more = sp == TRAILING ? "trailing text\n"
                                      : "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE "
                                        "KEY-----\n";
    char *c2 = malloc(strlen(chain) + strlen(more) + 1);
    strcpy(c2, chain);
    strcat(c2, more);
    free(chain);
    chain = c2;
  }
  if (kind == K_RSA) {
    char *n = bn_b64(rsa_key, OSSL_PKEY_PARAM_RSA_N, 0);
    snprintf(keyjson, sizeof(keyjson),
             "\"kty\":\"RSA-HSM\",\"key_ops\":[\"sign\"],\"n\":\"%s\",\"e\":\"AQAB\"", n);
    free(n);
  } else if (kind == K_EC) {
    char *x = bn_b64(ec_key, OSSL_PKEY_PARAM_EC_PUB_X, 32),
         *y = bn_b64(ec_key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    snprintf(
        keyjson, sizeof(keyjson),
        "\"kty\":\"EC-HSM\",\"key_ops\":[\"sign\"],\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"", x,
        y);
    free(x);
    free(y);
  } else {
    snprintf(keyjson, sizeof(keyjson), "\"kty\":\"oct-HSM\",\"key_ops\":[\"encrypt\"]");
  }
  char *c64 = b64(chain, strlen(chain)), *p64 = b64(pb.p, pb.n), *u64 = b64(ub.p, ub.n);
  size_t cap = strlen(c64) + strlen(p64) + strlen(u64) + strlen(keyjson) + 1024;
  int pub = kind != K_OCT && sp != NO_PUB_BLOB;
  out = malloc(cap);
  snprintf(out, cap,
           "{\"key\":{\"kid\":\"%s\",%s},\"attributes\":{\"enabled\":true,\"attestation\":{"
           "\"certificatePemFile\":\"%s\",\"privateKeyAttestation\":\"%s\"%s%s%s,"
           "\"version\":\"%s\"}}}",
           KID, keyjson, c64, sp == BAD_B64 ? "not+base64/url" : p64,
           pub ? ",\"publicKeyAttestation\":\"" : "", pub ? u64 : "", pub ? "\"" : "",
           sp == OLD_FORMAT ? "1.0" : "MRVL-1");
  free(chain);
  free(c64);
  free(p64);
  free(u64);
  return out;
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
  (void)state;
  snprintf(log_file, sizeof(log_file), "/tmp/akv-test-attest-%ld.log", (long)getpid());
  vroot_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  card_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  ms_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  vroot2_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  part_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  assert_true(vroot_key && card_key && ms_key && vroot2_key && ec_key && other_key && part_key &&
              rsa_key);
  vroot = cert(vroot_key, "vendor root", NULL, vroot_key, "critical,CA:TRUE");
  card = cert(card_key, "card", vroot, vroot_key, "critical,CA:TRUE");
  part = cert(part_key, "partition", card, card_key, "critical,CA:FALSE");
  ms_root = cert(ms_key, "ms root", NULL, ms_key, "critical,CA:TRUE");
  ms_part = cert(part_key, "ms partition", ms_root, ms_key, "critical,CA:FALSE");
  ms_other = cert(other_key, "ms partition", ms_root, ms_key, "critical,CA:FALSE");
  vroot2 = cert(vroot2_key, "vendor root", NULL, vroot2_key, "critical,CA:TRUE");
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  X509 *c[] = {vroot, card, part, ms_root, ms_part, ms_other, vroot2};
  EVP_PKEY *k[] = {vroot_key, card_key, ms_key, vroot2_key, ec_key, other_key, part_key, rsa_key};
  for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
    X509_free(c[i]);
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
    EVP_PKEY_free(k[i]);
  return 0;
}

static int setup(void **state)
{
  struct kv_client_opts o = {HSM, "7.6", AKV_VAULT_MHSM};
  struct kv_client_opts ov = {"https://myvault.vault.azure.net", "7.6", AKV_VAULT_KEYVAULT};
  (void)state;
  unlink(log_file);
  akv_log_init(AKV_LOG_WARN, log_file);
  http = fake_http_new(&fake, NULL, 0);
  assert_non_null(http);
  fake.handler = handler;
  assert_non_null(cred = fake_secret_cred(http));
  assert_int_equal(kv_client_new(http, cred, &o, &hsm), KV_OK);
  assert_int_equal(kv_client_new(http, cred, &ov, &vault), KV_OK);
  n_replies = next_reply = 0;
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < n_replies; i++)
    free(replies[i]);
  kv_client_free(hsm);
  kv_client_free(vault);
  kv_cred_free(cred);
  fake_reset(&fake);
  kv_http_free(http);
  akv_audit_close();
  akv_log_close();
  unlink(log_file);
  return 0;
}

/* The module's log since setup holds text. */
static int log_has(const char *text)
{
  char buf[16384];
  FILE *f = fopen(log_file, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  return strstr(buf, text) != NULL;
}

/* The trusted roots: the certificates given (NULL-ended, up-referenced); free with roots_free. */
static STACK_OF(X509) * roots_of(X509 *c, ...)
{
  STACK_OF(X509) *s = sk_X509_new_null();
  va_list ap;
  assert_non_null(s);
  va_start(ap, c);
  for (; c; c = va_arg(ap, X509 *)) {
    assert_true(sk_X509_push(s, c) > 0);
    X509_up_ref(c);
  }
  va_end(ap);
  return s;
}

static void roots_free(STACK_OF(X509) * s)
{
  sk_X509_pop_free(s, X509_free);
}

/* Fetch (must succeed) and verify against anchor (NULL: no vendor root); returns verify's rc. */
static kv_rc fetch_verify(enum spoil sp, enum kind kind, X509 *anchor, struct kv_attest_result *res)
{
  struct kv_attestation *a = NULL;
  STACK_OF(X509) *roots = anchor ? roots_of(anchor, NULL) : NULL;
  kv_rc rc;
  reply(attestation_json(sp, kind));
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a, NULL), KV_OK);
  rc = kv_attestation_verify(a, NULL, roots, "the test's roots", res);
  roots_free(roots);
  kv_attestation_free(a);
  return rc;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_valid_rsa(void **state)
{
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  STACK_OF(X509) * roots;
  (void)state;
  reply(attestation_json(OK, K_RSA));
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a, NULL), KV_OK);
  assert_string_equal(fake_vault_req(&fake, 0)->method, "GET");
  assert_string_equal(fake_vault_req(&fake, 0)->url,
                      HSM "/keys/k/" V1 "/attestation?api-version=7.6");
  assert_string_equal(a->key->kid, KID);
  assert_string_equal(a->format_version, "MRVL-1");
  assert_non_null(strstr(a->cert_pem, "-----BEGIN CERTIFICATE-----"));
  assert_non_null(a->pub_blob);
  assert_int_equal(kv_attestation_verify(a, NULL, NULL, NULL, &res), KV_OK);
  assert_int_equal(X509_cmp(res.signer, part), 0);
  assert_int_equal(X509_cmp(res.card, card), 0);
  assert_int_equal(X509_cmp(res.ms_root, ms_root), 0);
  assert_int_equal(X509_cmp(res.ms_part, ms_part), 0);
  assert_int_equal(res.vendor_root_checked, 0);
  assert_int_equal(res.extractable, 0);
  assert_int_equal(res.never_extractable, 1);
  kv_attest_result_clear(&res);
  /* with the vendor root trusted too, alone or among others; refused against another root and
   * against an empty set */
  roots = roots_of(vroot, NULL);
  assert_int_equal(kv_attestation_verify(a, NULL, roots, "R", &res), KV_OK);
  assert_int_equal(res.vendor_root_checked, 1);
  kv_attest_result_clear(&res);
  roots_free(roots);
  roots = roots_of(vroot2, vroot, NULL);
  assert_int_equal(kv_attestation_verify(a, NULL, roots, "R", &res), KV_OK);
  assert_int_equal(res.vendor_root_checked, 1);
  kv_attest_result_clear(&res);
  roots_free(roots);
  roots = roots_of(vroot2, NULL);
  assert_int_equal(kv_attestation_verify(a, NULL, roots, "slot hsm attestation_root F", &res),
                   KV_E_PROTOCOL);
  assert_null(res.signer);
  assert_true(log_has("the certificate chain does not verify: unable to get local issuer "
                      "certificate (the vendor's partition certificate through the HSM card "
                      "certificate to a trusted vendor root of slot hsm attestation_root F)"));
  roots_free(roots);
  roots = roots_of(NULL);
  assert_int_equal(kv_attestation_verify(a, NULL, roots, NULL, &res), KV_E_PROTOCOL);
  assert_null(res.signer);
  roots_free(roots);
  kv_attestation_free(a);
}

static void test_valid_ec_shuffled(void **state)
{
  struct kv_attest_result res;
  (void)state;
  assert_int_equal(fetch_verify(OK, K_EC, vroot, &res), KV_OK);
  kv_attest_result_clear(&res);
  n_replies = next_reply = 0;
  free(replies[0]);
  assert_int_equal(fetch_verify(SHUFFLED, K_EC, vroot, &res), KV_OK);
  assert_int_equal(X509_cmp(res.signer, part), 0);
  kv_attest_result_clear(&res);
}

static void test_from_json(void **state)
{
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  char *json = attestation_json(OK, K_RSA);
  (void)state;
  assert_int_equal(kv_attestation_from_json(json, strlen(json), &a), KV_OK);
  assert_int_equal(kv_attestation_verify(a, NULL, NULL, NULL, &res), KV_OK);
  kv_attest_result_clear(&res);
  kv_attestation_free(a);
  a = NULL;
  assert_int_equal(kv_attestation_from_json(json, strlen(json) - 1, &a), KV_E_PROTOCOL);
  assert_null(a);
  assert_int_equal(kv_attestation_from_json("[]", 2, &a), KV_E_PROTOCOL);
  assert_int_equal(kv_attestation_from_json(NULL, 0, &a), KV_E_INVALID);
  free(json);
}

static void test_valid_oct(void **state)
{
  struct kv_attest_result res;
  (void)state;
  assert_int_equal(fetch_verify(OK, K_OCT, NULL, &res), KV_OK);
  assert_int_equal(X509_cmp(res.signer, part), 0);
  kv_attest_result_clear(&res);
}

static void test_latest_version(void **state)
{
  struct kv_attestation *a = NULL;
  char *key = malloc(256);
  (void)state;
  snprintf(key, 256,
           "{\"key\":{\"kid\":\"%s\",\"kty\":\"oct-HSM\",\"key_ops\":[\"encrypt\"]},"
           "\"attributes\":{\"enabled\":true}}",
           KID);
  reply(key);
  reply(attestation_json(OK, K_OCT));
  assert_int_equal(kv_get_key_attestation(hsm, "k", NULL, &a, NULL), KV_OK);
  assert_int_equal(fake_vault_reqs(&fake), 2);
  assert_string_equal(fake_vault_req(&fake, 0)->url, HSM "/keys/k/?api-version=7.6");
  assert_string_equal(fake_vault_req(&fake, 1)->url,
                      HSM "/keys/k/" V1 "/attestation?api-version=7.6");
  kv_attestation_free(a);
}

static void test_key_vault_unsupported(void **state)
{
  struct kv_attestation *a = NULL;
  (void)state;
  assert_int_equal(kv_get_key_attestation(vault, "k", V1, &a, NULL), KV_E_UNSUPPORTED);
  assert_null(a);
  assert_int_equal(fake_vault_reqs(&fake), 0);
  assert_int_equal(kv_get_key_attestation(hsm, "bad name", V1, &a, NULL), KV_E_INVALID);
  assert_int_equal(kv_get_key_attestation(NULL, "k", V1, &a, NULL), KV_E_INVALID);
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, NULL, NULL), KV_E_INVALID);
  assert_int_equal(kv_attestation_verify(NULL, NULL, NULL, NULL, NULL), KV_E_INVALID);
}

static void test_malformed_replies(void **state)
{
  static const char *const bodies[] = {
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"enabled\":true}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":[]}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":12,\"privateKeyAttestation\":\"AAAA\"}}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"LS0t\"}}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"\",\"privateKeyAttestation\":\"AAAA\"}}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"AAAA\",\"privateKeyAttestation\":\"AAAA\"}}}", /* NUL bytes */
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"LS0t\",\"privateKeyAttestation\":\"\"}}}",
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"LS0t\",\"privateKeyAttestation\":\"AAAA\","
      "\"publicKeyAttestation\":\"AAAA\"}}}", /* a public blob for an oct key */
      "{\"key\":{\"kid\":\"" KID "\",\"kty\":\"oct-HSM\"},\"attributes\":{\"attestation\":{"
      "\"certificatePemFile\":\"LS0t\",\"privateKeyAttestation\":\"AAAA\",\"version\":7}}}",
      "{\"key\":{\"kid\":\"" HSM "/keys/other/" V1 "\",\"kty\":\"oct-HSM\"},\"attributes\":{"
      "\"attestation\":{\"certificatePemFile\":\"LS0t\",\"privateKeyAttestation\":\"AAAA\"}}}",
      "[]",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    struct kv_attestation *a = NULL;
    n_replies = next_reply = 0;
    reply(strdup(bodies[i]));
    kv_rc rc = kv_get_key_attestation(hsm, "k", V1, &a, NULL);
    if (rc != KV_E_PROTOCOL)
      fail_msg("body %zu: rc %s", i, kv_rc_str(rc));
    assert_null(a);
    free(replies[0]);
  }
  n_replies = 0;
  /* the same checks on replies built from a valid one */
  static const enum spoil bad_get[] = {NO_PUB_BLOB, BAD_B64};
  for (size_t i = 0; i < 2; i++) {
    struct kv_attestation *a = NULL;
    n_replies = next_reply = 0;
    reply(attestation_json(bad_get[i], K_RSA));
    assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a, NULL), KV_E_PROTOCOL);
    free(replies[0]);
  }
  n_replies = 0;
}

static void test_spoiled(void **state)
{
  static const struct {
    enum spoil sp;
    enum kind kind;
    const char *why; /* in the log line */
  } bad[] = {
      {CHAIN_SIG, K_RSA,
       "the certificate chain does not verify: certificate signature failure (the vendor's "
       "partition certificate to the HSM card certificate)"},
      {BLOB_SIG, K_RSA, "the private key attestation's signature does not verify"},
      {OTHER_KEY, K_RSA, "the attestation certifies another public key than the key's"},
      {OTHER_KEY, K_EC, "the attestation certifies another public key than the key's"},
      {NO_MS_ROOT, K_RSA, "certificatePemFile holds 3 certificate(s)"},
      {MS_OTHER, K_RSA, "certificatePemFile holds 4 certificate(s); expected the HSM card"},
      {TRAILING, K_RSA, "text after the last certificate"},
      {NOT_CERT, K_RSA, "certificatePemFile entry 5 is not an X.509 certificate"},
      {SHORT_BLOB, K_RSA, "private key attestation is not an MRVL-1 blob"},
      {BAD_HEADER, K_OCT, "private key attestation is not an MRVL-1 blob"},
      {OTHER_ID, K_RSA, "the private key attestation describes another object"},
      {EXTRACTABLE, K_EC,
       "CKA_EXTRACTABLE 1, CKA_NEVER_EXTRACTABLE 0 for a key that is not exportable"},
      {OLD_FORMAT, K_RSA,
       "unknown attestation format version \"1.0\" (this module reads \"MRVL-1\")"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct kv_attest_result res;
    n_replies = next_reply = 0;
    kv_rc rc = fetch_verify(bad[i].sp, bad[i].kind, NULL, &res);
    if (rc != KV_E_PROTOCOL || !log_has(bad[i].why))
      fail_msg("spoil %d: rc %s, log without \"%s\"", (int)bad[i].sp, kv_rc_str(rc), bad[i].why);
    assert_null(res.signer);
    assert_null(res.ms_root);
    free(replies[0]);
  }
  n_replies = 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_rsa, setup, teardown),
      cmocka_unit_test_setup_teardown(test_valid_ec_shuffled, setup, teardown),
      cmocka_unit_test_setup_teardown(test_from_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_valid_oct, setup, teardown),
      cmocka_unit_test_setup_teardown(test_latest_version, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_vault_unsupported, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_spoiled, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
