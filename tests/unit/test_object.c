/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/object.c: objects built from the vault (docs/design.md) through C_FindObjects and
 * C_GetAttributeValue, against the fake backend. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "store/cache.h"
#include "store/object.h"
#include "model_helpers.h"

#define ALL_OPS                                                                                    \
  (KV_OP_SIGN | KV_OP_VERIFY | KV_OP_ENCRYPT | KV_OP_DECRYPT | KV_OP_WRAP | KV_OP_UNWRAP)

static CK_SESSION_HANDLE sess;

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY | KV_OP_DECRYPT);
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("aes1", "a1", KV_KTY_OCT, 0, ALL_OPS);
  fake_kv_add_cert("rsa1", KV_KTY_RSA, 0);
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  fake_kv_add_secret("db-password", "s3cret", 0);
  fake_kv_add_secret("rsa1-cert-secret", "PEM", 1); /* managed: backs a certificate */
  fake_kv_add_key("off", "o1", KV_KTY_RSA, 1, ALL_OPS)->enabled = 0;
  fake_kv_add_key("expired", "x1", KV_KTY_EC, 1, ALL_OPS)->exp = 1000;
  fake_kv_add_key("future", "f1", KV_KTY_EC, 1, ALL_OPS)->nbf = 4000000000LL;
  assert_int_equal(t_init(T_CFG(",\"objects\":[\"keys\",\"certificates\",\"secrets\"]")), CKR_OK);
  sess = t_open(0);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static void sha1_spki(EVP_PKEY *pk, unsigned char md[20])
{
  unsigned char *der = NULL;
  size_t mdlen = 0;
  int n = i2d_PUBKEY(pk, &der);
  assert_true(n > 0);
  assert_true(EVP_Q_digest(NULL, "SHA1", NULL, der, (size_t)n, md, &mdlen));
  OPENSSL_free(der);
}

static void test_listing(void **state)
{
  CK_OBJECT_HANDLE h[32];
  (void)state;
  /* rsa1: priv+pub, ec1: priv+pub, aes1: secret, 2 certificates, 1 data; hidden: off, expired,
   * future and the managed secret. */
  assert_int_equal(t_find(sess, NULL, 0, h, 32), 8);
}

static void test_rsa(void **state)
{
  CK_OBJECT_HANDLE priv, pub;
  unsigned char buf[1024], md[20];
  BIGNUM *n = NULL, *bn;
  CK_ULONG len;
  (void)state;

  priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  pub = t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  assert_int_equal(t_attr_ulong(sess, priv, CKA_KEY_TYPE), CKK_RSA);
  assert_int_equal(t_attr_ulong(sess, pub, CKA_MODULUS_BITS), 2048);
  assert_int_equal(t_attr_ulong(sess, priv, CKA_MODULUS_BITS), 2048);
  /* The fake sends n with a leading zero; the model strips it. */
  len = t_attr(sess, priv, CKA_MODULUS, buf, sizeof(buf));
  assert_int_equal(len, 256);
  assert_true(EVP_PKEY_get_bn_param(fake_kv_pair(KV_KTY_RSA, 0), OSSL_PKEY_PARAM_RSA_N, &n));
  bn = BN_bin2bn(buf, (int)len, NULL);
  assert_int_equal(BN_cmp(bn, n), 0);
  BN_free(bn);
  BN_free(n);
  len = t_attr(sess, pub, CKA_PUBLIC_EXPONENT, buf, sizeof(buf));
  assert_int_equal(len, 3);
  assert_memory_equal(buf, "\x01\x00\x01", 3);
  /* CKA_ID = SHA-1 of the DER SPKI. */
  sha1_spki(fake_kv_pair(KV_KTY_RSA, 0), md);
  assert_int_equal(t_attr(sess, priv, CKA_ID, buf, sizeof(buf)), 20);
  assert_memory_equal(buf, md, 20);
  assert_int_equal(t_attr(sess, pub, CKA_ID, buf, sizeof(buf)), 20);
  assert_memory_equal(buf, md, 20);
  /* key_ops split between the two objects. */
  assert_int_equal(t_attr_bool(sess, priv, CKA_SIGN), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_DECRYPT), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_UNWRAP), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, pub, CKA_VERIFY), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, pub, CKA_ENCRYPT), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, pub, CKA_WRAP), CK_FALSE);
  /* Storage and protection attributes. */
  assert_int_equal(t_attr_bool(sess, priv, CKA_TOKEN), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_PRIVATE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_MODIFIABLE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_SENSITIVE), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_EXTRACTABLE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_ALWAYS_AUTHENTICATE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_DERIVE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, priv, CKA_LOCAL), CK_FALSE);
  assert_int_equal(t_attr_ulong(sess, priv, CKA_KEY_GEN_MECHANISM), CK_UNAVAILABLE_INFORMATION);
  /* The PKCS#11 view of the SPKI, and the vendor attributes. */
  len = t_attr(sess, pub, CKA_PUBLIC_KEY_INFO, buf, sizeof(buf));
  assert_true(len > 256 && len < 400);
  len = t_attr(sess, priv, CKA_AKV_KID, buf, sizeof(buf));
  assert_int_equal(len, strlen(FAKE_VAULT_URL "/keys/rsa1/v1"));
  assert_memory_equal(buf, FAKE_VAULT_URL "/keys/rsa1/v1", len);
  assert_int_equal(t_attr(sess, priv, CKA_AKV_VERSION, buf, sizeof(buf)), 2);
  assert_int_equal(t_attr_bool(sess, priv, CKA_AKV_HSM), CK_FALSE);
  /* Mechanisms of the key type (docs/mechanisms.md). */
  len = t_attr(sess, priv, CKA_ALLOWED_MECHANISMS, buf, sizeof(buf));
  assert_int_equal(len, 9 * sizeof(CK_ULONG));
  assert_int_equal(((CK_ULONG *)buf)[0], CKM_RSA_PKCS);
}

static void test_ec(void **state)
{
  CK_OBJECT_HANDLE priv, pub, cert;
  unsigned char buf[512], id1[20], id2[20], id3[20], md[20];
  unsigned char pt[65];
  size_t ptlen = 0;
  CK_ULONG len;
  (void)state;

  priv = t_find_one(sess, CKO_PRIVATE_KEY, "ec1");
  pub = t_find_one(sess, CKO_PUBLIC_KEY, "ec1");
  cert = t_find_one(sess, CKO_CERTIFICATE, "ec1");
  assert_int_equal(t_attr_ulong(sess, pub, CKA_KEY_TYPE), CKK_EC);
  len = t_attr(sess, priv, CKA_EC_PARAMS, buf, sizeof(buf));
  assert_int_equal(len, 10);
  assert_memory_equal(buf, "\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 10);
  /* CKA_EC_POINT: DER OCTET STRING of the uncompressed point. */
  len = t_attr(sess, pub, CKA_EC_POINT, buf, sizeof(buf));
  assert_int_equal(len, 67);
  assert_int_equal(buf[0], 0x04);
  assert_int_equal(buf[1], 65);
  assert_true(EVP_PKEY_get_octet_string_param(
      fake_kv_pair(KV_KTY_EC, 0), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt), &ptlen));
  assert_int_equal(ptlen, 65);
  assert_memory_equal(buf + 2, pt, 65);
  /* One CKA_ID across private key, public key and certificate. */
  assert_int_equal(t_attr(sess, priv, CKA_ID, id1, sizeof(id1)), 20);
  assert_int_equal(t_attr(sess, pub, CKA_ID, id2, sizeof(id2)), 20);
  assert_int_equal(t_attr(sess, cert, CKA_ID, id3, sizeof(id3)), 20);
  sha1_spki(fake_kv_pair(KV_KTY_EC, 0), md);
  assert_memory_equal(id1, md, 20);
  assert_memory_equal(id2, md, 20);
  assert_memory_equal(id3, md, 20);
  len = t_attr(sess, priv, CKA_ALLOWED_MECHANISMS, buf, sizeof(buf));
  assert_int_equal(len, 4 * sizeof(CK_ULONG));
}

static void test_certificate(void **state)
{
  CK_OBJECT_HANDLE cert;
  unsigned char der[4096], buf[512], *p;
  const unsigned char *cp;
  X509 *x;
  CK_ULONG len, n;
  int dn;
  (void)state;

  cert = t_find_one(sess, CKO_CERTIFICATE, "rsa1");
  assert_int_equal(t_attr_ulong(sess, cert, CKA_CERTIFICATE_TYPE), CKC_X_509);
  assert_int_equal(t_attr_ulong(sess, cert, CKA_CERTIFICATE_CATEGORY), 1);
  assert_int_equal(t_attr_bool(sess, cert, CKA_TRUSTED), CK_FALSE);
  len = t_attr(sess, cert, CKA_VALUE, der, sizeof(der));
  assert_true(len > 100 && len < sizeof(der));
  cp = der;
  x = d2i_X509(NULL, &cp, (long)len);
  assert_non_null(x);
  /* Subject, issuer and serial as DER. */
  p = NULL;
  dn = i2d_X509_NAME(X509_get_subject_name(x), &p);
  n = t_attr(sess, cert, CKA_SUBJECT, buf, sizeof(buf));
  assert_int_equal(n, (CK_ULONG)dn);
  assert_memory_equal(buf, p, n);
  OPENSSL_free(p);
  n = t_attr(sess, cert, CKA_ISSUER, buf, sizeof(buf));
  assert_int_equal(n, (CK_ULONG)dn);
  n = t_attr(sess, cert, CKA_SERIAL_NUMBER, buf, sizeof(buf));
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "\x02\x02\x12\x34", 4);
  assert_int_equal(t_attr(sess, cert, CKA_CHECK_VALUE, buf, sizeof(buf)), 3);
  X509_free(x);
}

static void test_get_attribute_rules(void **state)
{
  CK_OBJECT_HANDLE priv;
  CK_ULONG cls = 0, bits = 0;
  unsigned char small[4], pe[512];
  CK_ATTRIBUTE t[5];
  (void)state;

  priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  t[0].type = CKA_CLASS, t[0].pValue = &cls, t[0].ulValueLen = sizeof(cls);
  t[1].type = CKA_PRIVATE_EXPONENT, t[1].pValue = pe, t[1].ulValueLen = sizeof(pe);
  t[2].type = 0x7fff0000UL, t[2].pValue = pe, t[2].ulValueLen = sizeof(pe); /* unknown */
  t[3].type = CKA_MODULUS, t[3].pValue = small, t[3].ulValueLen = sizeof(small);
  t[4].type = CKA_MODULUS_BITS, t[4].pValue = &bits, t[4].ulValueLen = sizeof(bits);
  /* Every attribute is processed; the sensitive one is reported. */
  assert_int_equal(C_GetAttributeValue(sess, priv, t, 5), CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(cls, CKO_PRIVATE_KEY);
  assert_int_equal(t[0].ulValueLen, sizeof(CK_ULONG));
  assert_int_equal(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(t[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(bits, 2048);
  /* Without the sensitive one, the unknown type is reported, then a short buffer. */
  t[1] = t[0];
  t[2].ulValueLen = sizeof(pe);
  t[3].ulValueLen = sizeof(small);
  assert_int_equal(C_GetAttributeValue(sess, priv, t, 4), CKR_ATTRIBUTE_TYPE_INVALID);
  t[3].ulValueLen = sizeof(small);
  assert_int_equal(C_GetAttributeValue(sess, priv, &t[3], 1), CKR_BUFFER_TOO_SMALL);
  /* Length queries with NULL pValue. */
  t[3].pValue = NULL;
  t[3].ulValueLen = 0;
  t[4].pValue = NULL;
  assert_int_equal(C_GetAttributeValue(sess, priv, &t[3], 2), CKR_OK);
  assert_int_equal(t[3].ulValueLen, 256);
  assert_int_equal(t[4].ulValueLen, sizeof(CK_ULONG));
  /* Other private parts are sensitive too. */
  t[0].type = CKA_PRIME_1, t[0].pValue = NULL, t[0].ulValueLen = 0;
  assert_int_equal(C_GetAttributeValue(sess, priv, t, 1), CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

static void test_secret_key(void **state)
{
  CK_OBJECT_HANDLE k;
  unsigned char buf[64];
  CK_ATTRIBUTE t = {CKA_VALUE, buf, sizeof(buf)};
  (void)state;

  k = t_find_one(sess, CKO_SECRET_KEY, "aes1");
  assert_int_equal(t_attr_ulong(sess, k, CKA_KEY_TYPE), CKK_AES);
  assert_int_equal(t_attr_bool(sess, k, CKA_AKV_HSM), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, k, CKA_ENCRYPT), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, k, CKA_UNWRAP), CK_TRUE);
  assert_int_equal(C_GetAttributeValue(sess, k, &t, 1), CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(t_attr(sess, k, CKA_ALLOWED_MECHANISMS, buf, sizeof(buf)), 8 * sizeof(CK_ULONG));
}

static void test_data_object(void **state)
{
  CK_OBJECT_HANDLE d;
  char buf[64];
  int gets;
  (void)state;

  d = t_find_one(sess, CKO_DATA, "db-password");
  assert_int_equal(t_attr(sess, d, CKA_APPLICATION, buf, sizeof(buf)), 22);
  assert_memory_equal(buf, "Azure Key Vault secret", 22);
  assert_int_equal(t_attr(sess, d, CKA_OBJECT_ID, buf, sizeof(buf)), 0);
  /* The value is fetched on first read, then cached for the secret TTL. */
  gets = fake_kv_calls.get_secret;
  assert_int_equal(t_attr(sess, d, CKA_VALUE, buf, sizeof(buf)), 6);
  assert_memory_equal(buf, "s3cret", 6);
  assert_int_equal(fake_kv_calls.get_secret, gets + 1);
  assert_int_equal(t_attr(sess, d, CKA_VALUE, NULL, 0), 6);
  assert_int_equal(fake_kv_calls.get_secret, gets + 1);
  /* Past the secret TTL the value is wiped even without a read (here: at a refresh). */
  {
    struct akv_snapshot *snap = akv_cache_peek(akv_module_slot(0)->cache);
    struct akv_object *o = akv_snapshot_find(snap, d);
    assert_non_null(o);
    assert_non_null(o->val->value);
    akv_snapshot_unref(snap);
    t_clock_now += 3600;
    akv_slot_invalidate(akv_module_slot(0));
    assert_int_equal(t_find_one(sess, CKO_DATA, "db-password"), d); /* carried over */
    snap = akv_cache_peek(akv_module_slot(0)->cache);
    o = akv_snapshot_find(snap, d);
    assert_non_null(o);
    assert_null(o->val->value);
    akv_snapshot_unref(snap);
  }
  fake_kv_set_secret("db-password", "rotated");
  t_clock_now += 3600; /* secret TTL (default 1 h) */
  assert_int_equal(t_attr(sess, d, CKA_VALUE, buf, sizeof(buf)), 7);
  assert_memory_equal(buf, "rotated", 7);
  assert_int_equal(fake_kv_calls.get_secret, gets + 2);
}

static void test_find_templates(void **state)
{
  CK_OBJECT_HANDLE h[32];
  CK_ULONG cls = CKO_PRIVATE_KEY, kt = CKK_EC;
  CK_BBOOL yes = CK_TRUE;
  unsigned char id[20];
  CK_ATTRIBUTE t[2];
  (void)state;

  t[0].type = CKA_CLASS, t[0].pValue = &cls, t[0].ulValueLen = sizeof(cls);
  assert_int_equal(t_find(sess, t, 1, h, 32), 2);
  t[1].type = CKA_KEY_TYPE, t[1].pValue = &kt, t[1].ulValueLen = sizeof(kt);
  assert_int_equal(t_find(sess, t, 2, h, 32), 1);
  /* A template attribute no object has matches nothing. */
  t[1].type = 0x7fff0001UL;
  assert_int_equal(t_find(sess, t, 2, h, 32), 0);
  /* A sensitive attribute never matches. */
  t[1].type = CKA_PRIVATE_EXPONENT;
  assert_int_equal(t_find(sess, t, 2, h, 32), 0);
  /* Same CKA_ID: private key, public key and certificate. */
  assert_int_equal(t_attr(sess, t_find_one(sess, CKO_PUBLIC_KEY, "rsa1"), CKA_ID, id, 20), 20);
  t[0].type = CKA_ID, t[0].pValue = id, t[0].ulValueLen = 20;
  assert_int_equal(t_find(sess, t, 1, h, 32), 3);
  t[0].type = CKA_SIGN, t[0].pValue = &yes, t[0].ulValueLen = sizeof(yes);
  assert_int_equal(t_find(sess, t, 1, h, 32), 3); /* rsa1, ec1, aes1 */
  /* Data objects match on their (lazily fetched) value. */
  t[0].type = CKA_VALUE, t[0].pValue = "s3cret", t[0].ulValueLen = 6;
  assert_int_equal(t_find(sess, t, 1, h, 32), 1);
}

static void test_session_objects(void **state)
{
  CK_ULONG cls = CKO_SECRET_KEY, kt = CKK_AES;
  CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
  unsigned char key[16] = "0123456789abcdef", buf[32];
  CK_ATTRIBUTE t[5] = {
      {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_VALUE, key, sizeof(key)},  {CKA_SENSITIVE, &no, sizeof(no)},
      {CKA_LABEL, "tmp", 3},
  };
  CK_OBJECT_HANDLE h = 0, copy = 0, all[32];
  CK_SESSION_HANDLE other;
  CK_ULONG size;
  (void)state;

  assert_int_equal(C_CreateObject(sess, t, 5, &h), CKR_OK);
  assert_true(h != 0);
  assert_int_equal(t_attr_bool(sess, h, CKA_TOKEN), CK_FALSE);
  assert_int_equal(t_attr_ulong(sess, h, CKA_VALUE_LEN), 16);
  assert_int_equal(t_attr(sess, h, CKA_VALUE, buf, sizeof(buf)), 16);
  assert_memory_equal(buf, key, 16);
  assert_int_equal(t_find_one(sess, CKO_SECRET_KEY, "tmp"), h);
  /* Immutable and not copyable. */
  assert_int_equal(C_SetAttributeValue(sess, h, &t[4], 1), CKR_ACTION_PROHIBITED);
  assert_int_equal(C_CopyObject(sess, h, NULL, 0, &copy), CKR_ACTION_PROHIBITED);
  /* Session objects are visible to the token's other sessions, which may destroy them, and go
   * away with the session that created them. */
  other = t_open(0);
  assert_int_equal(t_attr_ulong(other, h, CKA_CLASS), CKO_SECRET_KEY);
  assert_int_equal(t_find_one(other, CKO_SECRET_KEY, "tmp"), h);
  assert_int_equal(C_DestroyObject(other, h), CKR_OK);
  assert_int_equal(C_GetObjectSize(sess, h, &size), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_CreateObject(other, t, 5, &h), CKR_OK);
  assert_int_equal(t_find_one(sess, CKO_SECRET_KEY, "tmp"), h);
  assert_int_equal(C_CloseSession(other), CKR_OK);
  assert_int_equal(C_GetObjectSize(sess, h, &size), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_CreateObject(sess, t, 5, &h), CKR_OK);
  assert_int_equal(C_DestroyObject(sess, h), CKR_OK);
  assert_int_equal(C_DestroyObject(sess, h), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(t_find(sess, NULL, 0, all, 32), 8);
  /* Sensitive session keys hide their value. */
  t[3].pValue = &yes;
  assert_int_equal(C_CreateObject(sess, t, 5, &h), CKR_OK);
  t[2].pValue = buf, t[2].ulValueLen = sizeof(buf);
  assert_int_equal(C_GetAttributeValue(sess, h, &t[2], 1), CKR_ATTRIBUTE_SENSITIVE);
  /* CKA_ALLOWED_MECHANISMS is kept (and must be a list of mechanism types). */
  {
    CK_MECHANISM_TYPE allowed[1] = {CKM_AES_GCM};
    CK_ATTRIBUTE t2[4] = {t[0],
                          t[1],
                          {CKA_VALUE, key, sizeof(key)},
                          {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)}};
    CK_MECHANISM_TYPE got[4];
    assert_int_equal(C_CreateObject(sess, t2, 4, &h), CKR_OK);
    assert_int_equal(t_attr(sess, h, CKA_ALLOWED_MECHANISMS, got, sizeof(got)), sizeof(allowed));
    assert_int_equal(got[0], CKM_AES_GCM);
    t2[3].ulValueLen = 3;
    assert_int_equal(C_CreateObject(sess, t2, 4, &h), CKR_ATTRIBUTE_VALUE_INVALID);
    t2[3].type = CKA_MODULUS; /* not a secret key attribute */
    assert_int_equal(C_CreateObject(sess, t2, 4, &h), CKR_ATTRIBUTE_TYPE_INVALID);
  }
  /* Template checks. */
  t[2].pValue = key, t[2].ulValueLen = 15;
  assert_int_equal(C_CreateObject(sess, t, 5, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_CreateObject(sess, t, 2, &h), CKR_TEMPLATE_INCOMPLETE);
  cls = CKO_DATA;
  assert_int_equal(C_CreateObject(sess, t, 1, &h), CKR_FUNCTION_NOT_SUPPORTED);
}

static void test_token_writes(void **state)
{
  CK_OBJECT_HANDLE priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1"), h;
  CK_SESSION_HANDLE rw = t_open(CKF_RW_SESSION);
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE tok = {CKA_TOKEN, &yes, sizeof(yes)};
  (void)state;

  assert_int_equal(C_DestroyObject(sess, priv), CKR_SESSION_READ_ONLY);
  assert_int_equal(C_DestroyObject(rw, priv), CKR_ACTION_PROHIBITED); /* allow_destroy off */
  /* src/token/write.c: only dates and CKA_ID of vault keys change; no class, no object. */
  assert_int_equal(C_SetAttributeValue(rw, priv, &tok, 1), CKR_ATTRIBUTE_READ_ONLY);
  assert_int_equal(C_CreateObject(sess, &tok, 1, &h), CKR_SESSION_READ_ONLY);
  assert_int_equal(C_CreateObject(rw, &tok, 1, &h), CKR_TEMPLATE_INCOMPLETE);
  assert_int_equal(C_CopyObject(rw, priv, NULL, 0, &h), CKR_ACTION_PROHIBITED);
  assert_int_equal(C_CloseSession(rw), CKR_OK);
}

static void test_object_size(void **state)
{
  CK_ULONG size = 0;
  (void)state;
  assert_int_equal(C_GetObjectSize(sess, t_find_one(sess, CKO_CERTIFICATE, "rsa1"), &size), CKR_OK);
  assert_true(size > 100);
  assert_int_equal(C_GetObjectSize(sess, 0x7ffffff, &size), CKR_OBJECT_HANDLE_INVALID);
}

/* Where the key material has been (docs/security.md "Key attributes"): a vault key that is or was
 * exportable (attributes.exportable, "export" in key_ops, a certificate-backed software key whose
 * certificate may export it) and a key created from a plaintext value report CKA_ALWAYS_SENSITIVE
 * and CKA_NEVER_EXTRACTABLE FALSE; a key generated in the vault and never exportable reports TRUE.
 * CKA_TRUSTED cannot be set (there is no security officer); CKA_WRAP_WITH_TRUSTED is kept. */
static int setup_origin(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("plain", "p1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("releasable", "r1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY)->exportable = 1;
  fake_kv_add_key("exportop", "x1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY | KV_OP_EXPORT);
  fake_kv_add_key("certkey", "c1", KV_KTY_EC, 1, KV_OP_SIGN | KV_OP_VERIFY)->managed = 1;
  assert_int_equal(t_init(T_CFG(",\"objects\":[\"keys\"]")), CKR_OK);
  sess = t_open(0);
  return 0;
}

static void test_key_origin(void **state)
{
  static const char *const outside[] = {"releasable", "exportop", "certkey"};
  CK_ULONG cls = CKO_SECRET_KEY, kt = CKK_AES;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  unsigned char key[16] = "0123456789abcdef";
  CK_ATTRIBUTE t[6] = {
      {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_VALUE, key, sizeof(key)},      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes)},
  };
  CK_OBJECT_HANDLE h = 0, k;
  (void)state;
  k = t_find_one(sess, CKO_PRIVATE_KEY, "plain");
  assert_int_equal(t_attr_bool(sess, k, CKA_ALWAYS_SENSITIVE), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, k, CKA_NEVER_EXTRACTABLE), CK_TRUE);
  for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
    k = t_find_one(sess, CKO_PRIVATE_KEY, outside[i]);
    assert_int_equal(t_attr_bool(sess, k, CKA_EXTRACTABLE), CK_FALSE);
    assert_int_equal(t_attr_bool(sess, k, CKA_ALWAYS_SENSITIVE), CK_FALSE);
    assert_int_equal(t_attr_bool(sess, k, CKA_NEVER_EXTRACTABLE), CK_FALSE);
  }
  /* A key made from a plaintext value, even sensitive and unextractable from now on. */
  assert_int_equal(C_CreateObject(sess, t, 6, &h), CKR_OK);
  assert_int_equal(t_attr_bool(sess, h, CKA_SENSITIVE), CK_TRUE);
  assert_int_equal(t_attr_bool(sess, h, CKA_ALWAYS_SENSITIVE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, h, CKA_NEVER_EXTRACTABLE), CK_FALSE);
  assert_int_equal(t_attr_bool(sess, h, CKA_WRAP_WITH_TRUSTED), CK_TRUE);
  /* CKA_TRUSTED=TRUE needs a security officer, which this token does not have. */
  t[5].type = CKA_TRUSTED;
  assert_int_equal(C_CreateObject(sess, t, 6, &h), CKR_ATTRIBUTE_READ_ONLY);
  t[5].pValue = &no;
  assert_int_equal(C_CreateObject(sess, t, 6, &h), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rsa, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ec, setup, teardown),
      cmocka_unit_test_setup_teardown(test_certificate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_attribute_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secret_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_data_object, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_templates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_session_objects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_object_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_origin, setup_origin, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
