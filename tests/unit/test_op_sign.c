/* SPDX-License-Identifier: Apache-2.0 */
/* Sign and verify against the fake vault (fake_crypto_kv.c): JWA choice, DigestInfo handling,
 * ECDSA digest mapping, length queries without requests, local and remote verification,
 * operation state rules. Signatures are checked independently with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_crypto_kv.c"

static struct akv_object *rsa_priv, *rsa_pub, *ec_priv[5], *ec_pub[5], *oct;
static struct akv_session sess;

static int group_setup(void **state)
{
  (void)state;
  fk_session_init(&sess, AKV_VAULT_MHSM);
  rsa_priv = fk_rsa("rsa1", CKO_PRIVATE_KEY, 2048);
  rsa_pub = fk_rsa("rsa1", CKO_PUBLIC_KEY, 2048);
  for (int c = KV_CRV_P256; c <= KV_CRV_P256K; c++) {
    char name[16];
    snprintf(name, sizeof(name), "ec%d", c);
    ec_priv[c] = fk_ec(name, CKO_PRIVATE_KEY, (enum kv_crv)c);
    ec_pub[c] = fk_ec(name, CKO_PUBLIC_KEY, (enum kv_crv)c);
  }
  oct = fk_oct("oct1", 32);
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  fk_session_done(&sess);
  akv_object_unref(rsa_priv);
  akv_object_unref(rsa_pub);
  for (int c = KV_CRV_P256; c <= KV_CRV_P256K; c++) {
    akv_object_unref(ec_priv[c]);
    akv_object_unref(ec_pub[c]);
  }
  akv_object_unref(oct);
  fk_keys_free();
  return 0;
}

static int each_setup(void **state)
{
  (void)state;
  fk_reset_counters();
  fk_slot_cfg.verify_remote = 0;
  fk_slot_cfg.public_ops_local = 0;
  return 0;
}

static EVP_PKEY *priv_of(const char *name)
{
  return fk_find(name)->priv;
}

/* OpenSSL's own verification of a PKCS#1 v1.5 or PSS signature over msg. */
static int ossl_verify_rsa(const EVP_MD *md, int pss, const void *msg, size_t len,
                           const unsigned char *sig, size_t sig_len)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  int ok = EVP_DigestVerifyInit(ctx, &pctx, md, NULL, priv_of("rsa1")) == 1;
  if (ok && pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md));
  }
  ok = ok && EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

/* OpenSSL's ECDSA verification (it truncates long digests itself) of an r||s signature. */
static int ossl_verify_ec(const char *name, const unsigned char *digest, size_t dlen,
                          const unsigned char *rs, size_t rs_len)
{
  unsigned char *der = NULL;
  size_t der_len = 0;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(priv_of(name), NULL);
  int ok = akv_ecdsa_rs_to_der(rs, rs_len, &der, &der_len) == CKR_OK &&
           EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_verify(ctx, der, der_len, digest, dlen) == 1;
  OPENSSL_free(der);
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

static size_t digestinfo(const EVP_MD *md, const char *msg, unsigned char *out)
{
  static const unsigned char p256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                       0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
  static const unsigned char p384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                       0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
  static const unsigned char p512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                       0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};
  static const unsigned char p1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                     0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
  int n = EVP_MD_get_size(md);
  const unsigned char *prefix = n == 32 ? p256 : n == 48 ? p384 : n == 64 ? p512 : p1;
  size_t plen = n == 20 ? sizeof(p1) : sizeof(p256);
  unsigned int dl = 0;
  memcpy(out, prefix, plen);
  EVP_Digest(msg, strlen(msg), out + plen, &dl, md, NULL);
  return plen + dl;
}

static void test_rsa_pkcs_digestinfo(void **state)
{
  const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
  const char *algs[] = {"RS256", "RS384", "RS512"};
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  (void)state;
  for (int i = 0; i < 3; i++) {
    unsigned char di[128], sig[256];
    CK_ULONG sig_len = sizeof(sig);
    size_t n = digestinfo(mds[i], "hello", di);
    fk_reset_counters();
    assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
    assert_int_equal(akv_sign(&sess, di, n, sig, &sig_len), CKR_OK);
    assert_int_equal(sig_len, 256);
    assert_int_equal(fk_sign_calls, 1);
    assert_string_equal(fk_last_alg, algs[i]);
    assert_string_equal(fk_last_version, "v1");             /* pinned version, never latest */
    assert_int_equal(fk_last_len, EVP_MD_get_size(mds[i])); /* only the digest is sent */
    assert_null(sess.ops[AKV_OP_SIGN]);
    assert_true(ossl_verify_rsa(mds[i], 0, "hello", 5, sig, sig_len));
    /* Local verify of the same DigestInfo, no request. */
    assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
    assert_int_equal(akv_verify(&sess, di, n, sig, sig_len), CKR_OK);
    assert_int_equal(fk_verify_calls, 0);
  }
}

/* OpenSSL's raw PKCS#1 v1.5 verification of a signature over exactly these bytes. */
static int ossl_verify_raw(const unsigned char *tbs, size_t len, const unsigned char *sig,
                           size_t sig_len)
{
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(priv_of("rsa1"), NULL);
  int ok = EVP_PKEY_verify_init(ctx) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_verify(ctx, sig, sig_len, tbs, len) == 1;
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

/* Inputs no RS* algorithm covers are signed as they are with RSNULL. */
static void test_rsa_pkcs_rsnull(void **state)
{
  unsigned char di[64], sig[256], tls[36];
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  size_t n = digestinfo(EVP_sha1(), "hello", di);
  (void)state;
  /* SHA-1 DigestInfo (what pkcs11-tool --test signs). */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, di, n, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_sign_calls, 1);
  assert_string_equal(fk_last_alg, "RSNULL");
  assert_int_equal(fk_last_len, n);
  assert_true(ossl_verify_rsa(EVP_sha1(), 0, "hello", 5, sig, sig_len));
  /* Multi-part accumulation of the same, and local verify. */
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify_update(&sess, di, 10), CKR_OK);
  assert_int_equal(akv_verify_update(&sess, di + 10, n - 10), CKR_OK);
  assert_int_equal(akv_verify_final(&sess, sig, sig_len), CKR_OK);
  /* ... and remote verify. */
  fk_slot_cfg.verify_remote = 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, di, n, sig, sig_len), CKR_OK);
  assert_int_equal(fk_verify_calls, 1);
  assert_string_equal(fk_last_alg, "RSNULL");
  fk_slot_cfg.verify_remote = 0;

  /* TLS 1.0-style MD5+SHA-1 concatenation: raw bytes. */
  memset(tls, 0x3c, sizeof(tls));
  sig_len = sizeof(sig);
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, tls, 20), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, tls + 20, 16), CKR_OK);
  assert_int_equal(akv_sign_final(&sess, sig, &sig_len), CKR_OK);
  assert_string_equal(fk_last_alg, "RSNULL");
  assert_true(ossl_verify_raw(tls, sizeof(tls), sig, sig_len));

  /* Empty, and longer than k-11 (cannot be PKCS#1-padded). */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, di, 0, sig, &sig_len), CKR_DATA_LEN_RANGE);
  assert_null(sess.ops[AKV_OP_SIGN]);
  {
    unsigned char big[246] = {0};
    assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
    assert_int_equal(akv_sign(&sess, big, sizeof(big), sig, &sig_len), CKR_DATA_LEN_RANGE);
    assert_null(sess.ops[AKV_OP_SIGN]);
  }
  assert_int_equal(fk_sign_calls, 2);
}

static void test_sign_length_query(void **state)
{
  unsigned char sig[256];
  CK_ULONG sig_len = 0;
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"msg", 3, NULL, &sig_len), CKR_OK);
  assert_int_equal(sig_len, 256);
  sig_len = 100;
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"msg", 3, sig, &sig_len), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(sig_len, 256);
  assert_int_equal(fk_sign_calls, 0); /* no request for either */
  assert_non_null(sess.ops[AKV_OP_SIGN]);
  sig_len = sizeof(sig);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"msg", 3, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_sign_calls, 1);
  assert_true(ossl_verify_rsa(EVP_sha256(), 0, "msg", 3, sig, sig_len));
  assert_null(sess.ops[AKV_OP_SIGN]);

  /* EC: twice the field size. */
  m.mechanism = CKM_ECDSA;
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P521]), CKR_OK);
  assert_int_equal(akv_sign(&sess, sig, 64, NULL, &sig_len), CKR_OK);
  assert_int_equal(sig_len, 132);
  assert_int_equal(akv_sign_final(&sess, NULL, &sig_len), CKR_OK);
  assert_int_equal(sig_len, 132);
  assert_int_equal(fk_sign_calls, 1);
  akv_op_end(&sess, AKV_OP_SIGN);
}

static void test_hash_and_sign_multipart(void **state)
{
  unsigned char sig[256];
  CK_ULONG sig_len = 0;
  CK_MECHANISM m = {CKM_SHA384_RSA_PKCS, NULL, 0};
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"part one, ", 10), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"", 0), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"part two", 8), CKR_OK);
  assert_int_equal(akv_sign_final(&sess, NULL, &sig_len), CKR_OK);
  assert_int_equal(sig_len, 256);
  assert_int_equal(akv_sign_final(&sess, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_sign_calls, 1);
  assert_string_equal(fk_last_alg, "RS384");
  assert_true(ossl_verify_rsa(EVP_sha384(), 0, "part one, part two", 18, sig, sig_len));

  /* Multi-part verify of the same. */
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify_update(&sess, (const CK_BYTE *)"part one, part", 14), CKR_OK);
  assert_int_equal(akv_verify_update(&sess, (const CK_BYTE *)" two", 4), CKR_OK);
  assert_int_equal(akv_verify_final(&sess, sig, sig_len), CKR_OK);

  /* C_Sign after C_SignUpdate is a caller error that ends the operation. */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"x", 1), CKR_OK);
  sig_len = sizeof(sig);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"x", 1, sig, &sig_len), CKR_OPERATION_ACTIVE);
  assert_null(sess.ops[AKV_OP_SIGN]);
}

static void test_pss(void **state)
{
  CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &p, sizeof(p)};
  unsigned char sig[256], digest[32];
  CK_ULONG sig_len = sizeof(sig);
  unsigned int dl = 0;
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"tls13", 5, sig, &sig_len), CKR_OK);
  assert_string_equal(fk_last_alg, "PS256");
  assert_true(ossl_verify_rsa(EVP_sha256(), 1, "tls13", 5, sig, sig_len));
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"tls13", 5, sig, sig_len), CKR_OK);

  /* Raw PSS over a digest. */
  m.mechanism = CKM_RSA_PKCS_PSS;
  EVP_Digest("tls13", 5, digest, &dl, EVP_sha256(), NULL);
  sig_len = sizeof(sig);
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, digest, 32, sig, &sig_len), CKR_OK);
  assert_true(ossl_verify_rsa(EVP_sha256(), 1, "tls13", 5, sig, sig_len));
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, digest, 32, sig, sig_len), CKR_OK);
  /* A digest of another length than the parameters' hash. */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, digest, 31, sig, &sig_len), CKR_DATA_LEN_RANGE);
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, sig, 33, sig, &sig_len), CKR_DATA_LEN_RANGE);
  assert_int_equal(fk_sign_calls, 2);
  /* Salt the service cannot use: refused at Init. */
  p.sLen = 0;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_MECHANISM_PARAM_INVALID);
  assert_null(sess.ops[AKV_OP_SIGN]);
}

static void test_ecdsa_curves(void **state)
{
  static const struct {
    enum kv_crv crv;
    const char *alg;
    const EVP_MD *(*md)(void);
    size_t sig_len;
    CK_MECHANISM_TYPE hashed;
  } cases[] = {
      {KV_CRV_P256, "ES256", EVP_sha256, 64, CKM_ECDSA_SHA256},
      {KV_CRV_P384, "ES384", EVP_sha384, 96, CKM_ECDSA_SHA384},
      {KV_CRV_P521, "ES512", EVP_sha512, 132, CKM_ECDSA_SHA512},
      {KV_CRV_P256K, "ES256K", EVP_sha256, 64, CKM_ECDSA_SHA256},
  };
  (void)state;
  for (size_t i = 0; i < 4; i++) {
    unsigned char digest[64], sig[132];
    unsigned int dl = 0;
    CK_ULONG sig_len = sizeof(sig);
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    char name[16];
    snprintf(name, sizeof(name), "ec%d", cases[i].crv);
    EVP_Digest("ecdsa", 5, digest, &dl, cases[i].md(), NULL);
    fk_reset_counters();
    assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[cases[i].crv]), CKR_OK);
    assert_int_equal(akv_sign(&sess, digest, dl, sig, &sig_len), CKR_OK);
    assert_int_equal(sig_len, cases[i].sig_len);
    assert_string_equal(fk_last_alg, cases[i].alg);
    assert_true(ossl_verify_ec(name, digest, dl, sig, sig_len));
    assert_int_equal(akv_verify_init_obj(&sess, &m, ec_pub[cases[i].crv]), CKR_OK);
    assert_int_equal(akv_verify(&sess, digest, dl, sig, sig_len), CKR_OK);
    /* Hash-and-sign. */
    m.mechanism = cases[i].hashed;
    sig_len = sizeof(sig);
    assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[cases[i].crv]), CKR_OK);
    assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"ecdsa", 5, sig, &sig_len), CKR_OK);
    assert_true(ossl_verify_ec(name, digest, dl, sig, sig_len));
    assert_int_equal(akv_verify_init_obj(&sess, &m, ec_pub[cases[i].crv]), CKR_OK);
    assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"ecdsa", 5, sig, sig_len), CKR_OK);
    assert_int_equal(fk_sign_calls, 2);
    assert_int_equal(fk_verify_calls, 0);
  }
}

/* A hash of another size than the curve's ES* digest still yields a standard ECDSA signature. */
static void test_ecdsa_digest_sizes(void **state)
{
  unsigned char d384[48], d256[32], sig[132];
  unsigned int dl = 0;
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  (void)state;
  EVP_Digest("x", 1, d384, &dl, EVP_sha384(), NULL);
  EVP_Digest("x", 1, d256, &dl, EVP_sha256(), NULL);
  /* SHA-384 on P-256: ECDSA truncates to 256 bits. */
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P256]), CKR_OK);
  assert_int_equal(akv_sign(&sess, d384, 48, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_last_len, 32);
  assert_true(ossl_verify_ec("ec1", d384, 48, sig, sig_len));
  /* SHA-256 on P-384: the integer is the same after zero-padding. */
  sig_len = sizeof(sig);
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P384]), CKR_OK);
  assert_int_equal(akv_sign(&sess, d256, 32, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_last_len, 48);
  assert_true(ossl_verify_ec("ec2", d256, 32, sig, sig_len));
  /* Hash-and-sign with a hash longer than the curve. */
  m.mechanism = CKM_ECDSA_SHA384;
  sig_len = sizeof(sig);
  EVP_Digest("y", 1, d384, &dl, EVP_sha384(), NULL);
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P256]), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"y", 1, sig, &sig_len), CKR_OK);
  assert_true(ossl_verify_ec("ec1", d384, 48, sig, sig_len));
  /* Empty input is no digest. */
  m.mechanism = CKM_ECDSA;
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P256]), CKR_OK);
  assert_int_equal(akv_sign(&sess, d256, 0, sig, &sig_len), CKR_DATA_LEN_RANGE);
}

/* A signature the service sent without its leading zero byte is padded back to k bytes. */
static void test_short_rsa_signature(void **state)
{
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  unsigned char sig[256];
  CK_ULONG sig_len = sizeof(sig);
  unsigned counter = 0;
  (void)state;
  fk_trim_rsa_sig = 1;
  /* About one signature in 256 starts with a zero byte. */
  for (counter = 0; counter < 5000 && !fk_trimmed; counter++) {
    sig_len = sizeof(sig);
    assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
    assert_int_equal(akv_sign(&sess, (const CK_BYTE *)&counter, sizeof(counter), sig, &sig_len),
                     CKR_OK);
    assert_int_equal(sig_len, 256);
  }
  assert_int_equal(fk_trimmed, 1);
  assert_int_equal(sig[0], 0);
  counter--;
  assert_true(ossl_verify_rsa(EVP_sha256(), 0, &counter, sizeof(counter), sig, sig_len));
}

static void test_verify_local_results(void **state)
{
  unsigned char sig[256];
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"data", 4, sig, &sig_len), CKR_OK);
  fk_reset_counters();
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"data", 4, sig, sig_len), CKR_OK);
  assert_null(sess.ops[AKV_OP_VERIFY]);
  sig[10] ^= 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"data", 4, sig, sig_len),
                   CKR_SIGNATURE_INVALID);
  assert_null(sess.ops[AKV_OP_VERIFY]);
  sig[10] ^= 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"datA", 4, sig, sig_len),
                   CKR_SIGNATURE_INVALID);
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"data", 4, sig, sig_len - 1),
                   CKR_SIGNATURE_LEN_RANGE);
  assert_int_equal(fk_verify_calls, 0); /* all local */

  /* EC: bad r||s. */
  {
    unsigned char d[32] = {1}, es[64];
    CK_ULONG es_len = sizeof(es);
    CK_MECHANISM e = {CKM_ECDSA, NULL, 0};
    assert_int_equal(akv_sign_init_obj(&sess, &e, ec_priv[KV_CRV_P256]), CKR_OK);
    assert_int_equal(akv_sign(&sess, d, 32, es, &es_len), CKR_OK);
    es[63] ^= 0x80;
    assert_int_equal(akv_verify_init_obj(&sess, &e, ec_pub[KV_CRV_P256]), CKR_OK);
    assert_int_equal(akv_verify(&sess, d, 32, es, es_len), CKR_SIGNATURE_INVALID);
    memset(es, 0, sizeof(es));
    assert_int_equal(akv_verify_init_obj(&sess, &e, ec_pub[KV_CRV_P256]), CKR_OK);
    assert_int_equal(akv_verify(&sess, d, 32, es, es_len), CKR_SIGNATURE_INVALID);
    assert_int_equal(akv_verify_init_obj(&sess, &e, ec_pub[KV_CRV_P256]), CKR_OK);
    assert_int_equal(akv_verify(&sess, d, 32, es, 96), CKR_SIGNATURE_LEN_RANGE);
  }
}

static void test_verify_remote_option(void **state)
{
  unsigned char sig[256];
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_SHA512_RSA_PKCS, NULL, 0};
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"data", 4, sig, &sig_len), CKR_OK);
  fk_slot_cfg.verify_remote = 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"data", 4, sig, sig_len), CKR_OK);
  assert_int_equal(fk_verify_calls, 1);
  assert_string_equal(fk_last_alg, "RS512");
  sig[0] ^= 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"data", 4, sig, sig_len),
                   CKR_SIGNATURE_INVALID);
  assert_int_equal(fk_verify_calls, 2);
}

static void test_state_errors(void **state)
{
  unsigned char sig[256] = {0};
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  (void)state;
  assert_int_equal(akv_sign(&sess, sig, 1, sig, &sig_len), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_sign_update(&sess, sig, 1), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_sign_final(&sess, sig, &sig_len), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_verify(&sess, sig, 1, sig, 256), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_verify_update(&sess, sig, 1), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_verify_final(&sess, sig, 256), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OPERATION_ACTIVE);
  assert_int_equal(akv_sign_init(&sess, &m, rsa_priv->handle), CKR_OPERATION_ACTIVE);
  /* The failed Init did not disturb the active one. */
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"a", 1, sig, &sig_len), CKR_OK);
  assert_int_equal(fk_sign_calls, 1);
  /* Sign and verify are independent operations. */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_pub), CKR_OK);
  akv_op_end(&sess, AKV_OP_SIGN);
  akv_op_end(&sess, AKV_OP_VERIFY);
}

static void test_key_checks(void **state)
{
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  struct akv_object *other;
  (void)state;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
  assert_int_equal(akv_verify_init_obj(&sess, &m, rsa_priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
  assert_int_equal(akv_sign_init_obj(&sess, &m, ec_priv[KV_CRV_P256]), CKR_KEY_TYPE_INCONSISTENT);
  m.mechanism = CKM_ECDSA;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_KEY_TYPE_INCONSISTENT);
  m.mechanism = CKM_SHA256; /* a digest, not a signature mechanism */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_MECHANISM_INVALID);
  m.mechanism = CKM_RSA_PKCS_OAEP;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_MECHANISM_INVALID);
  m.mechanism = CKM_MD5_RSA_PKCS;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_MECHANISM_INVALID);
  /* A key whose key_ops lack sign. */
  other = fk_rsa("rsa1", CKO_PRIVATE_KEY, 2048);
  other->can_sign = CK_FALSE;
  m.mechanism = CKM_RSA_PKCS;
  assert_int_equal(akv_sign_init_obj(&sess, &m, other), CKR_KEY_FUNCTION_NOT_PERMITTED);
  /* CKA_ALLOWED_MECHANISMS restricts the mechanisms. */
  other->can_sign = CK_TRUE;
  {
    CK_MECHANISM_TYPE allowed[1] = {CKM_ECDSA};
    other->attrs = calloc(1, sizeof(CK_ATTRIBUTE));
    other->attrs[0].type = CKA_ALLOWED_MECHANISMS;
    other->attrs[0].pValue = malloc(sizeof(allowed));
    memcpy(other->attrs[0].pValue, allowed, sizeof(allowed));
    other->attrs[0].ulValueLen = sizeof(allowed);
    other->n_attrs = 1;
    assert_int_equal(akv_sign_init_obj(&sess, &m, other), CKR_MECHANISM_INVALID);
    allowed[0] = CKM_RSA_PKCS;
    memcpy(other->attrs[0].pValue, allowed, sizeof(allowed));
    assert_int_equal(akv_sign_init_obj(&sess, &m, other), CKR_OK);
    akv_op_end(&sess, AKV_OP_SIGN);
  }
  /* A key of another slot. */
  other->slot = NULL;
  assert_int_equal(akv_sign_init_obj(&sess, &m, other), CKR_KEY_HANDLE_INVALID);
  akv_object_unref(other);
  assert_null(sess.ops[AKV_OP_SIGN]);
  assert_int_equal(fk_sign_calls, 0);
}

static void test_backend_errors(void **state)
{
  unsigned char sig[256];
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_RV rv;
  (void)state;
  fk_force_rc = KV_E_SERVER;
  fk_force_status = 503;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  rv = akv_sign(&sess, (const CK_BYTE *)"a", 1, sig, &sig_len);
  assert_int_equal(rv, akv_rv(KV_E_SERVER));
  assert_int_equal(rv, CKR_DEVICE_ERROR);
  assert_null(sess.ops[AKV_OP_SIGN]);       /* the error ended it */
  assert_int_equal(sess.device_error, 503); /* the status kv_sign gave back */
  fk_force_rc = KV_E_NOT_FOUND;
  fk_force_status = 404;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"a", 1, sig, &sig_len), akv_rv(KV_E_NOT_FOUND));
  assert_int_equal(sess.device_error, 404);
  /* No response (network): 0, not the status of the failure before. */
  fk_force_rc = KV_E_NETWORK;
  fk_force_status = 0;
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"a", 1, sig, &sig_len), CKR_DEVICE_ERROR);
  assert_int_equal(sess.device_error, 0);
  assert_int_equal(fk_sign_calls, 3);
}

static void test_hmac(void **state)
{
  static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
  struct akv_object *sk = fk_secret(CKK_GENERIC_SECRET, key, sizeof(key));
  CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
  unsigned char mac[64], want[64];
  unsigned int want_len = 0;
  CK_ULONG mac_len = sizeof(mac);
  (void)state;
  HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)"message", 7, want, &want_len);
  /* Local with a session key. */
  assert_int_equal(akv_sign_init_obj(&sess, &m, sk), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"mess", 4), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"age", 3), CKR_OK);
  assert_int_equal(akv_sign_final(&sess, NULL, &mac_len), CKR_OK);
  assert_int_equal(mac_len, 32);
  assert_int_equal(akv_sign_final(&sess, mac, &mac_len), CKR_OK);
  assert_memory_equal(mac, want, 32);
  assert_int_equal(fk_sign_calls, 0);
  assert_int_equal(akv_verify_init_obj(&sess, &m, sk), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"message", 7, mac, 32), CKR_OK);
  mac[0] ^= 1;
  assert_int_equal(akv_verify_init_obj(&sess, &m, sk), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"message", 7, mac, 32),
                   CKR_SIGNATURE_INVALID);
  akv_object_unref(sk);

  /* In the HSM with an oct-HSM key: the message goes to HS256. */
  m.mechanism = CKM_SHA384_HMAC;
  mac_len = sizeof(mac);
  assert_int_equal(akv_sign_init_obj(&sess, &m, oct), CKR_OK);
  assert_int_equal(akv_sign(&sess, (const CK_BYTE *)"message", 7, mac, &mac_len), CKR_OK);
  assert_int_equal(mac_len, 48);
  assert_string_equal(fk_last_alg, "HS384");
  assert_int_equal(fk_sign_calls, 1);
  assert_int_equal(akv_verify_init_obj(&sess, &m, oct), CKR_OK);
  assert_int_equal(akv_verify(&sess, (const CK_BYTE *)"message", 7, mac, 48), CKR_OK);
  assert_int_equal(fk_verify_calls, 1);
}

static void test_op_freed_midway(void **state)
{
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  (void)state;
  /* A session closed mid-operation frees the accumulated input and the key reference (ASan). */
  assert_int_equal(akv_sign_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_sign_update(&sess, (const CK_BYTE *)"0123456789", 10), CKR_OK);
  assert_int_equal(sess.ops[AKV_OP_SIGN]->in.len, 10);
  assert_int_equal(rsa_priv->refs, 2);
  akv_op_free(sess.ops[AKV_OP_SIGN]);
  sess.ops[AKV_OP_SIGN] = NULL;
  assert_int_equal(rsa_priv->refs, 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_rsa_pkcs_digestinfo, each_setup),
      cmocka_unit_test_setup(test_rsa_pkcs_rsnull, each_setup),
      cmocka_unit_test_setup(test_sign_length_query, each_setup),
      cmocka_unit_test_setup(test_hash_and_sign_multipart, each_setup),
      cmocka_unit_test_setup(test_pss, each_setup),
      cmocka_unit_test_setup(test_ecdsa_curves, each_setup),
      cmocka_unit_test_setup(test_ecdsa_digest_sizes, each_setup),
      cmocka_unit_test_setup(test_short_rsa_signature, each_setup),
      cmocka_unit_test_setup(test_verify_local_results, each_setup),
      cmocka_unit_test_setup(test_verify_remote_option, each_setup),
      cmocka_unit_test_setup(test_state_errors, each_setup),
      cmocka_unit_test_setup(test_key_checks, each_setup),
      cmocka_unit_test_setup(test_backend_errors, each_setup),
      cmocka_unit_test_setup(test_hmac, each_setup),
      cmocka_unit_test_setup(test_op_freed_midway, each_setup),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
