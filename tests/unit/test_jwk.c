/* SPDX-License-Identifier: Apache-2.0 */
/* ENGINE is deprecated in OpenSSL 3 but is what hosts like `openssl -engine pkcs11` still use. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/engine.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kv/kv.h"
#include "util/b64.h"

static OSSL_LIB_CTX *libctx;

static char *bn_b64(const EVP_PKEY *pk, const char *param, size_t pad)
{
  BIGNUM *bn = NULL;
  unsigned char buf[1024];
  int n;
  assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
  n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
  BN_free(bn);
  return akv_b64url_encode(buf, (size_t)n);
}

static void spki_matches(const struct kv_key *k, EVP_PKEY *orig)
{
  unsigned char *der = NULL, *want = NULL;
  size_t len = 0;
  int wl;
  assert_int_equal(kv_key_spki_der(k, libctx, &der, &len), KV_OK);
  wl = i2d_PUBKEY(orig, &want);
  assert_int_equal((size_t)wl, len);
  assert_memory_equal(der, want, len);
  free(der);
  OPENSSL_free(want);
}

static void test_rsa(void **state)
{
  EVP_PKEY *pk = EVP_PKEY_Q_keygen(libctx, NULL, "RSA", (size_t)2048);
  char *n = bn_b64(pk, OSSL_PKEY_PARAM_RSA_N, 0), *e = bn_b64(pk, OSSL_PKEY_PARAM_RSA_E, 0);
  char json[2048];
  struct kv_key *k = NULL;
  EVP_PKEY *got = NULL;
  (void)state;
  snprintf(
      json, sizeof(json),
      "{\"key\":{\"kid\":\"https://v.vault.azure.net/keys/rsa1/0123456789abcdef0123456789abcdef"
      "\",\"kty\":\"RSA-HSM\",\"key_ops\":[\"sign\",\"verify\",\"wrapKey\",\"deriveKey\"],"
      "\"n\":\"%s\",\"e\":\"%s\"},\"attributes\":{\"enabled\":false,\"nbf\":100,\"exp\":200,"
      "\"created\":1,\"updated\":2},\"tags\":{\"a\":\"b\"},\"managed\":true}",
      n, e);
  assert_int_equal(kv_key_from_json(json, strlen(json), &k), KV_OK);
  assert_string_equal(k->name, "rsa1");
  assert_string_equal(k->version, "0123456789abcdef0123456789abcdef");
  assert_int_equal(k->kty, KV_KTY_RSA);
  assert_true(k->hsm);
  assert_int_equal(k->key_ops, KV_OP_SIGN | KV_OP_VERIFY | KV_OP_WRAP);
  assert_int_equal(k->n_len, 256);
  assert_false(k->attrs.enabled);
  assert_int_equal(k->attrs.nbf, 100);
  assert_int_equal(k->attrs.exp, 200);
  assert_true(k->attrs.managed);
  assert_int_equal(k->attrs.n_tags, 1);
  assert_string_equal(k->attrs.tags[0].value, "b");
  assert_int_equal(kv_key_to_pkey(k, libctx, &got), KV_OK);
  assert_int_equal(EVP_PKEY_eq(got, pk), 1);
  spki_matches(k, pk);
  EVP_PKEY_free(got);
  kv_key_free(k);
  EVP_PKEY_free(pk);
  free(n);
  free(e);
}

static void ec_case(const char *group, const char *crv, enum kv_crv want, size_t fb)
{
  EVP_PKEY *pk = EVP_PKEY_Q_keygen(libctx, NULL, "EC", group);
  char *x = bn_b64(pk, OSSL_PKEY_PARAM_EC_PUB_X, fb), *y = bn_b64(pk, OSSL_PKEY_PARAM_EC_PUB_Y, fb);
  char json[1024];
  struct kv_key *k = NULL;
  EVP_PKEY *got = NULL;
  size_t oid_len = 0;
  assert_non_null(pk);
  snprintf(json, sizeof(json),
           "{\"kid\":\"https://v.vault.azure.net/keys/ec/0123456789abcdef0123456789abcdef\","
           "\"kty\":\"EC\",\"crv\":\"%s\",\"key_ops\":[\"sign\",\"verify\"],\"x\":\"%s\",\"y\":"
           "\"%s\"}",
           crv, x, y);
  assert_int_equal(kv_key_from_json(json, strlen(json), &k), KV_OK);
  assert_int_equal(k->kty, KV_KTY_EC);
  assert_int_equal(k->crv, want);
  assert_int_equal(k->x_len, fb);
  assert_int_equal(kv_crv_bytes(want), fb);
  assert_string_equal(kv_crv_name(want), crv);
  assert_non_null(kv_crv_oid_der(want, &oid_len));
  assert_true(oid_len >= 7);
  assert_int_equal(kv_key_to_pkey(k, libctx, &got), KV_OK);
  assert_int_equal(EVP_PKEY_eq(got, pk), 1);
  spki_matches(k, pk);
  EVP_PKEY_free(got);
  kv_key_free(k);
  EVP_PKEY_free(pk);
  free(x);
  free(y);
}

static void test_ec(void **state)
{
  (void)state;
  ec_case("P-256", "P-256", KV_CRV_P256, 32);
  ec_case("P-384", "P-384", KV_CRV_P384, 48);
  ec_case("P-521", "P-521", KV_CRV_P521, 66);
  ec_case("secp256k1", "P-256K", KV_CRV_P256K, 32);
}

static void test_oct(void **state)
{
  const char *json = "{\"kid\":\"https://h.managedhsm.azure.net/keys/aes/0123456789abcdef0123456789"
                     "abcdef\",\"kty\":\"oct-HSM\",\"key_ops\":[\"encrypt\",\"decrypt\"]}";
  struct kv_key *k = NULL;
  EVP_PKEY *pk = NULL;
  (void)state;
  assert_int_equal(kv_key_from_json(json, strlen(json), &k), KV_OK);
  assert_int_equal(k->kty, KV_KTY_OCT);
  assert_int_equal(k->key_ops, KV_OP_ENCRYPT | KV_OP_DECRYPT);
  assert_int_equal(kv_key_to_pkey(k, libctx, &pk), KV_E_UNSUPPORTED);
  kv_key_free(k);
}

static void expect_bad(const char *jwk)
{
  struct kv_key *k = NULL;
  kv_rc rc = kv_key_from_json(jwk, strlen(jwk), &k);
  if (rc != KV_E_PROTOCOL)
    fail_msg("%s for %s", kv_rc_str(rc), jwk);
  assert_null(k);
}

#define KID "\"kid\":\"https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef\""
/* P-256 generator point: a valid point to vary from. */
#define GX "\"x\":\"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY\""
#define GY "\"y\":\"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU\""

static void test_bad_inputs(void **state)
{
  struct kv_key *k = NULL;
  char big[8000];
  (void)state;
  expect_bad("{" KID ",\"kty\":\"DSA\"}");
  expect_bad("{" KID ",\"kty\":\"EC\",\"crv\":\"P-999\"," GX "," GY "}");
  expect_bad("{" KID ",\"kty\":\"EC\"," GX "," GY "}");                   /* no crv */
  expect_bad("{" KID ",\"kty\":\"EC\",\"crv\":\"P-384\"," GX "," GY "}"); /* wrong size */
  expect_bad("{" KID ",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9K"
             "E5RdiYwp+\"," GY "}");                                        /* bad b64url */
  expect_bad("{" KID ",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":12," GY "}"); /* wrong type */
  expect_bad("{" KID ",\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}");    /* 17-bit modulus */
  expect_bad("{\"kid\":\"https://v.vault.azure.net/secrets/k/01\",\"kty\":\"oct\"}");
  expect_bad("{\"kid\":\"https://v.vault.azure.net/keys/k\",\"kty\":\"oct\"}"); /* no version */
  expect_bad("{\"kid\":\"https://v.vault.azure.net/keys/k%2F../01\",\"kty\":\"oct\"}");
  expect_bad("{" KID ",\"kty\":\"oct\",\"key_ops\":\"sign\"}");
  expect_bad("{" KID ",\"kty\":\"oct\",\"key_ops\":[1]}");
  expect_bad("{" KID "}");
  expect_bad("[1,2]");
  expect_bad("{" KID ",\"kty\":\"oct\"} trailing");
  /* A huge RSA modulus (over 16384 bits) is refused. */
  memset(big, 'A', sizeof(big));
  memcpy(big, "{" KID ",\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"w",
         strlen("{" KID ",\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"w"));
  memcpy(big + 7000, "\"}", 3);
  expect_bad(big);
  /* A point not on the curve parses (sizes fine) but cannot become a key. */
  {
    const char *off = "{" KID ",\"kty\":\"EC\",\"crv\":\"P-256\"," GX
                      ",\"y\":\"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfQ\"}";
    EVP_PKEY *pk = NULL;
    assert_int_equal(kv_key_from_json(off, strlen(off), &k), KV_OK);
    assert_int_equal(kv_key_to_pkey(k, libctx, &pk), KV_E_PROTOCOL);
    assert_null(pk);
    kv_key_free(k);
  }
  {
    const char *on = "{" KID ",\"kty\":\"EC\",\"crv\":\"P-256\"," GX "," GY "}";
    EVP_PKEY *pk = NULL;
    assert_int_equal(kv_key_from_json(on, strlen(on), &k), KV_OK);
    assert_int_equal(kv_key_to_pkey(k, libctx, &pk), KV_OK);
    EVP_PKEY_free(pk);
    kv_key_free(k);
  }
  assert_null(kv_crv_oid_der(KV_CRV_NONE, NULL));
  assert_int_equal(kv_crv_bytes(KV_CRV_NONE), 0);
}

/* F1: in a host where the libp11 engine is the default for all methods, JWK conversion must still
 * use the providers of the module's libctx. Keys are generated before the engine is enabled. */
static void test_engine_host(void **state)
{
  EVP_PKEY *rsa = EVP_PKEY_Q_keygen(libctx, NULL, "RSA", (size_t)2048);
  EVP_PKEY *ec = EVP_PKEY_Q_keygen(libctx, NULL, "EC", "P-256");
  char *n = bn_b64(rsa, OSSL_PKEY_PARAM_RSA_N, 0), *e = bn_b64(rsa, OSSL_PKEY_PARAM_RSA_E, 0);
  char *x = bn_b64(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32), *y = bn_b64(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
  char json[2048];
  struct kv_key *k = NULL;
  EVP_PKEY *got = NULL;
  ENGINE *eng;
  (void)state;
  setenv("PKCS11_MODULE_PATH", "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so", 0);
  ENGINE_load_builtin_engines();
  eng = ENGINE_by_id("pkcs11");
  if (!eng || !ENGINE_init(eng)) {
    if (eng)
      ENGINE_free(eng);
    free(n);
    free(e);
    free(x);
    free(y);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    skip(); /* libengine-pkcs11-openssl not installed */
  }
  assert_int_equal(ENGINE_set_default(eng, ENGINE_METHOD_ALL), 1);
  snprintf(json, sizeof(json),
           "{\"kid\":\"https://v.vault.azure.net/keys/r/0123456789abcdef0123456789abcdef\","
           "\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}",
           n, e);
  assert_int_equal(kv_key_from_json(json, strlen(json), &k), KV_OK);
  assert_int_equal(kv_key_to_pkey(k, libctx, &got), KV_OK);
  spki_matches(k, rsa);
  EVP_PKEY_free(got);
  kv_key_free(k);
  snprintf(json, sizeof(json),
           "{\"kid\":\"https://v.vault.azure.net/keys/e/0123456789abcdef0123456789abcdef\","
           "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
           x, y);
  assert_int_equal(kv_key_from_json(json, strlen(json), &k), KV_OK);
  assert_int_equal(kv_key_to_pkey(k, libctx, &got), KV_OK);
  spki_matches(k, ec);
  EVP_PKEY_free(got);
  kv_key_free(k);
  ENGINE_finish(eng);
  ENGINE_free(eng);
  free(n);
  free(e);
  free(x);
  free(y);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rsa),         cmocka_unit_test(test_ec),
      cmocka_unit_test(test_oct),         cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_engine_host), /* last: it changes process-wide defaults */
  };
  int rc;
  libctx = OSSL_LIB_CTX_new();
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  OSSL_LIB_CTX_free(libctx);
  return rc;
}
