/* SPDX-License-Identifier: Apache-2.0 */
/* src/kv/attest.c against the fake transport: the request, strict parsing of the reply, and every
 * check of kv_attestation_verify on replies built here with OpenSSL (root, signer, key
 * certificate and blobs in the layout of docs/emulator.md "Key attestation"), then spoiled one
 * way at a time. */
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

/* Per-process material: a root, a signer, an RSA and an EC key, another root. */
static EVP_PKEY *root_key, *signer_key, *rsa_key, *other_key, *root2_key;
static X509 *root, *signer, *root2;

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

static void attr(struct buf *b, uint32_t type, const void *v, size_t n)
{
  u32(b, type);
  u32(b, (uint32_t)n);
  put(b, v, n);
}

/* A blob: class, CKA_CLASS, CKA_ID, (private) CKA_SENSITIVE/CKA_EXTRACTABLE/
 * CKA_NEVER_EXTRACTABLE, CKA_PUBLIC_KEY_INFO when spki; signed by key. */
static void blob(struct buf *b, uint32_t cls, const char *kid, const unsigned char *spki,
                 size_t spki_len, EVP_PKEY *key)
{
  unsigned char t = 1, f = 0, be[4] = {0, 0, 0, (unsigned char)cls}, sig[512];
  size_t siglen = sizeof(sig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int priv = cls != 2;
  b->n = 0;
  put(b, "AKVEMUAT", 8);
  u32(b, 1);
  u32(b, cls);
  u32(b, (priv ? 5 : 2) + (spki ? 1 : 0));
  attr(b, 0x000, be, 4);
  attr(b, 0x102, kid, strlen(kid));
  if (priv) {
    attr(b, 0x103, &t, 1);
    attr(b, 0x162, &f, 1);
    attr(b, 0x164, &t, 1);
  }
  if (spki)
    attr(b, 0x129, spki, spki_len);
  assert_non_null(md);
  assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
  assert_int_equal(EVP_DigestSign(md, sig, &siglen, b->p, b->n), 1);
  EVP_MD_CTX_free(md);
  u32(b, (uint32_t)siglen);
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

static char *bn_b64(EVP_PKEY *pk, const char *param)
{
  BIGNUM *bn = NULL;
  unsigned char d[1024];
  assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
  int n = BN_bn2bin(bn, d);
  BN_free(bn);
  return b64(d, (size_t)n);
}

/* What to spoil in the reply built by attestation_json. */
enum spoil {
  OK,
  CHAIN_SIG,   /* a byte of the key certificate's signature */
  BLOB_SIG,    /* a signed byte of the private blob */
  OTHER_KEY,   /* key certificate and blobs for another key */
  ROOT_FIRST,  /* the certificates in the wrong order */
  NO_ROOT,     /* the last certificate is not self-signed */
  TRAILING,    /* text after the last certificate */
  NOT_CERT,    /* a PEM block that is no certificate */
  SHORT_BLOB,  /* the blob cut short */
  OTHER_ID,    /* the private blob names another key (CKA_ID) */
  NO_PUB_BLOB, /* publicKeyAttestation missing for an RSA key */
  BAD_B64,     /* privateKeyAttestation not base64url */
};

/* KeyBundle with attributes.attestation of the RSA key "k" (or, oct, the AES key). */
static char *attestation_json(enum spoil sp, int oct)
{
  unsigned char *cspki = NULL;
  EVP_PKEY *certified = sp == OTHER_KEY ? other_key : rsa_key;
  int cspki_len = i2d_PUBKEY(certified, &cspki);
  X509 *leaf = cert(certified, "k", signer, signer_key, "critical,CA:FALSE");
  struct buf pb, ub;
  char *chain, *n = bn_b64(rsa_key, OSSL_PKEY_PARAM_RSA_N), *out;
  X509 *order[3] = {leaf, signer, root};
  size_t nc = 3;
  X509 *const *certs = order;
  X509 *only[2] = {signer, root};

  if (oct) {
    certs = only;
    nc = 2;
  } else if (sp == ROOT_FIRST) {
    order[0] = root;
    order[2] = leaf;
  } else if (sp == NO_ROOT) {
    nc = 2;
  }
  blob(&pb, oct ? 4 : 3, sp == OTHER_ID ? HSM "/keys/x/" V1 : KID, oct ? NULL : cspki,
       (size_t)cspki_len, signer_key);
  blob(&ub, 2, KID, cspki, (size_t)cspki_len, signer_key);
  if (sp == BLOB_SIG)
    pb.p[45] ^= 1; /* in the CKA_ID value: parses, but the signature no longer matches */
  if (sp == SHORT_BLOB)
    pb.n = 40;
  chain = pem(certs, nc);
  if (sp == CHAIN_SIG) {
    char *end = strstr(chain, "\n-----END");
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
  char *c64 = b64(chain, strlen(chain)), *p64 = b64(pb.p, pb.n), *u64 = b64(ub.p, ub.n);
  size_t cap = strlen(c64) + strlen(p64) + strlen(u64) + strlen(n) + 1024;
  out = malloc(cap);
  if (oct)
    snprintf(out, cap,
             "{\"key\":{\"kid\":\"%s\",\"kty\":\"oct-HSM\",\"key_ops\":[\"encrypt\"]},"
             "\"attributes\":{\"enabled\":true,\"attestation\":{\"certificatePemFile\":\"%s\","
             "\"privateKeyAttestation\":\"%s\",\"version\":\"1.0\"}}}",
             KID, c64, p64);
  else
    snprintf(out, cap,
             "{\"key\":{\"kid\":\"%s\",\"kty\":\"RSA-HSM\",\"key_ops\":[\"sign\"],\"n\":\"%s\","
             "\"e\":\"AQAB\"},\"attributes\":{\"enabled\":true,\"attestation\":{"
             "\"certificatePemFile\":\"%s\",\"privateKeyAttestation\":\"%s\"%s%s%s,"
             "\"version\":\"1.0\"}}}",
             KID, n, c64, sp == BAD_B64 ? "not+base64/url" : p64,
             sp == NO_PUB_BLOB ? "" : ",\"publicKeyAttestation\":\"", sp == NO_PUB_BLOB ? "" : u64,
             sp == NO_PUB_BLOB ? "" : "\"");
  OPENSSL_free(cspki);
  X509_free(leaf);
  free(chain);
  free(c64);
  free(p64);
  free(u64);
  free(n);
  return out;
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
  (void)state;
  snprintf(log_file, sizeof(log_file), "/tmp/akv-test-attest-%ld.log", (long)getpid());
  root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  signer_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  root2_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  other_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  assert_true(root_key && signer_key && root2_key && other_key && rsa_key);
  root = cert(root_key, "root", NULL, root_key, "critical,CA:TRUE");
  signer = cert(signer_key, "signer", root, root_key, "critical,CA:TRUE,pathlen:0");
  root2 = cert(root2_key, "root", NULL, root2_key, "critical,CA:TRUE");
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  X509_free(root);
  X509_free(signer);
  X509_free(root2);
  EVP_PKEY_free(root_key);
  EVP_PKEY_free(signer_key);
  EVP_PKEY_free(root2_key);
  EVP_PKEY_free(other_key);
  EVP_PKEY_free(rsa_key);
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

/* Fetch (must succeed) and verify; returns verify's rc. */
static kv_rc fetch_verify(enum spoil sp, int oct, X509 *anchor, struct kv_attest_result *res)
{
  struct kv_attestation *a = NULL;
  kv_rc rc;
  reply(attestation_json(sp, oct));
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a), KV_OK);
  rc = kv_attestation_verify(a, NULL, anchor, res);
  kv_attestation_free(a);
  return rc;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_valid_rsa(void **state)
{
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  unsigned char *spki = NULL, *got = NULL;
  (void)state;
  reply(attestation_json(OK, 0));
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a), KV_OK);
  assert_string_equal(fake_vault_req(&fake, 0)->method, "GET");
  assert_string_equal(fake_vault_req(&fake, 0)->url,
                      HSM "/keys/k/" V1 "/attestation?api-version=7.6");
  assert_string_equal(a->key->kid, KID);
  assert_string_equal(a->format_version, "1.0");
  assert_non_null(strstr(a->cert_pem, "-----BEGIN CERTIFICATE-----"));
  assert_non_null(a->pub_blob);
  assert_int_equal(kv_attestation_verify(a, NULL, NULL, &res), KV_OK);
  assert_non_null(res.leaf);
  assert_int_equal(X509_cmp(res.root, root), 0);
  assert_int_equal(X509_cmp(res.signer, signer), 0);
  int l1 = i2d_PUBKEY(rsa_key, &spki), l2 = i2d_PUBKEY(X509_get0_pubkey(res.leaf), &got);
  assert_int_equal(l1, l2);
  assert_memory_equal(spki, got, (size_t)l1);
  assert_int_equal(res.extractable, 0);
  assert_int_equal(res.never_extractable, 1);
  OPENSSL_free(spki);
  OPENSSL_free(got);
  kv_attest_result_clear(&res);
  /* with the right root as the anchor too, and refused against another root */
  assert_int_equal(kv_attestation_verify(a, NULL, root, &res), KV_OK);
  kv_attest_result_clear(&res);
  assert_int_equal(kv_attestation_verify(a, NULL, root2, &res), KV_E_PROTOCOL);
  assert_null(res.root);
  assert_true(log_has("the certificate chain does not verify: unable to get local issuer "
                      "certificate (against the trusted root)"));
  kv_attestation_free(a);
}

static void test_from_json(void **state)
{
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  char *json = attestation_json(OK, 0);
  (void)state;
  assert_int_equal(kv_attestation_from_json(json, strlen(json), &a), KV_OK);
  assert_int_equal(kv_attestation_verify(a, NULL, NULL, &res), KV_OK);
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
  assert_int_equal(fetch_verify(OK, 1, NULL, &res), KV_OK);
  assert_null(res.leaf);
  assert_int_equal(X509_cmp(res.signer, signer), 0);
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
  reply(attestation_json(OK, 1));
  assert_int_equal(kv_get_key_attestation(hsm, "k", NULL, &a), KV_OK);
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
  assert_int_equal(kv_get_key_attestation(vault, "k", V1, &a), KV_E_UNSUPPORTED);
  assert_null(a);
  assert_int_equal(fake_vault_reqs(&fake), 0);
  assert_int_equal(kv_get_key_attestation(hsm, "bad name", V1, &a), KV_E_INVALID);
  assert_int_equal(kv_get_key_attestation(NULL, "k", V1, &a), KV_E_INVALID);
  assert_int_equal(kv_get_key_attestation(hsm, "k", V1, NULL), KV_E_INVALID);
  assert_int_equal(kv_attestation_verify(NULL, NULL, NULL, NULL), KV_E_INVALID);
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
    kv_rc rc = kv_get_key_attestation(hsm, "k", V1, &a);
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
    reply(attestation_json(bad_get[i], 0));
    assert_int_equal(kv_get_key_attestation(hsm, "k", V1, &a), KV_E_PROTOCOL);
    free(replies[0]);
  }
  n_replies = 0;
}

static void test_spoiled(void **state)
{
  static const struct {
    enum spoil sp;
    const char *why; /* in the log line */
  } bad[] = {
      {CHAIN_SIG, "the certificate chain does not verify: certificate signature failure"},
      {BLOB_SIG, "the private key attestation's signature does not verify"},
      {OTHER_KEY, "the key certificate certifies another public key than the key's"},
      {ROOT_FIRST, "expected the key certificate, the attestation signer and a self-signed root"},
      {NO_ROOT, "certificatePemFile holds 2 certificate(s)"},
      {TRAILING, "text after the last certificate"},
      {NOT_CERT, "certificatePemFile entry 4 is not an X.509 certificate"},
      {SHORT_BLOB, "private key attestation is truncated or malformed"},
      {OTHER_ID, "the private key attestation describes another object"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct kv_attest_result res;
    n_replies = next_reply = 0;
    kv_rc rc = fetch_verify(bad[i].sp, 0, NULL, &res);
    if (rc != KV_E_PROTOCOL || !log_has(bad[i].why))
      fail_msg("spoil %d: rc %s, log without \"%s\"", (int)bad[i].sp, kv_rc_str(rc), bad[i].why);
    assert_null(res.leaf);
    assert_null(res.root);
    free(replies[0]);
  }
  n_replies = 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_rsa, setup, teardown),
      cmocka_unit_test_setup_teardown(test_from_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_valid_oct, setup, teardown),
      cmocka_unit_test_setup_teardown(test_latest_version, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_vault_unsupported, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_spoiled, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
