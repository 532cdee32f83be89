/* SPDX-License-Identifier: Apache-2.0 */
/* Wrap/unwrap of session secret keys with vault RSA keys, HSM AES keys and session AES keys
 * (RFC 3394 known answer), and local session key generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_crypto_kv.c"

static struct akv_object *rsa_priv, *rsa_pub, *oct;
static struct akv_session sess;
static CK_BBOOL ck_false = CK_FALSE, ck_true = CK_TRUE;

static int group_setup(void **state)
{
  (void)state;
  fk_session_init(&sess, AKV_VAULT_MHSM);
  rsa_priv = fk_rsa("rsaw", CKO_PRIVATE_KEY, 2048);
  rsa_pub = fk_rsa("rsaw", CKO_PUBLIC_KEY, 2048);
  oct = fk_oct("octw", 32);
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  fk_session_done(&sess);
  akv_object_unref(rsa_priv);
  akv_object_unref(rsa_pub);
  akv_object_unref(oct);
  fk_keys_free();
  return 0;
}

static int each_setup(void **state)
{
  (void)state;
  fk_reset_counters();
  fk_slot_cfg.public_ops_local = 0;
  return 0;
}

static struct akv_object *session_obj(CK_OBJECT_HANDLE h)
{
  for (size_t i = 0; i < sess.n_objects; i++)
    if (sess.objects[i]->handle == h)
      return sess.objects[i];
  return NULL;
}

static void test_rsa_wrap_unwrap(void **state)
{
  static const unsigned char value[32] = "session-key-session-key-session";
  struct akv_object *sk = fk_secret(CKK_AES, value, sizeof(value));
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 0, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &ck_false, sizeof(ck_false)},
                         {CKA_LABEL, "unwrapped", 9}};
  unsigned char wrapped[256];
  CK_ULONG wlen = 0;
  CK_OBJECT_HANDLE h = 0;
  struct akv_object *got;
  (void)state;
  /* Length known without a request. */
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, NULL, &wlen), CKR_OK);
  assert_int_equal(wlen, 256);
  wlen = 8;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, wrapped, &wlen), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(wlen, 256);
  assert_int_equal(fk_cipher_calls, 0);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, wrapped, &wlen), CKR_OK);
  assert_int_equal(fk_cipher_calls, 1);
  assert_string_equal(fk_last_alg, "RSA-OAEP-256");

  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, wlen, tmpl, 4, &h), CKR_OK);
  assert_int_equal(fk_cipher_calls, 2);
  got = session_obj(h);
  assert_non_null(got);
  assert_int_equal(got->key_type, CKK_AES);
  assert_int_equal(got->secret_len, 32);
  assert_memory_equal(got->secret, value, 32);

  /* Local wrap with public_ops local. */
  fk_slot_cfg.public_ops_local = 1;
  wlen = sizeof(wrapped);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, wrapped, &wlen), CKR_OK);
  assert_int_equal(fk_cipher_calls, 2);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, wlen, tmpl, 4, &h), CKR_OK);
  assert_memory_equal(session_obj(h)->secret, value, 32);

  /* Wrong wrapped length and garbage. */
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, 100, tmpl, 4, &h),
                   CKR_WRAPPED_KEY_LEN_RANGE);
  memset(wrapped, 0x11, sizeof(wrapped));
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, 256, tmpl, 4, &h),
                   CKR_WRAPPED_KEY_INVALID);
  akv_object_unref(sk);
}

static void test_wrap_refusals(void **state)
{
  static const unsigned char value[16] = "0123456789abcdef";
  struct akv_object *sk = fk_secret(CKK_AES, value, sizeof(value));
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  unsigned char out[256];
  CK_ULONG n = sizeof(out);
  (void)state;
  /* A vault key is never exported. */
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, oct, out, &n), CKR_KEY_NOT_WRAPPABLE);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, rsa_priv, out, &n), CKR_KEY_HANDLE_INVALID);
  /* CKA_EXTRACTABLE = FALSE */
  sk->attrs = calloc(1, sizeof(CK_ATTRIBUTE));
  sk->attrs[0].type = CKA_EXTRACTABLE;
  sk->attrs[0].pValue = malloc(1);
  memcpy(sk->attrs[0].pValue, &ck_false, 1);
  sk->attrs[0].ulValueLen = 1;
  sk->n_attrs = 1;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, out, &n), CKR_KEY_UNEXTRACTABLE);
  sk->attrs[0].type = CKA_LABEL;
  /* Wrapping key problems are named as such. */
  assert_int_equal(akv_wrap_key_obj(&sess, &m, oct, sk, out, &n),
                   CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_priv, sk, out, &n),
                   CKR_KEY_FUNCTION_NOT_PERMITTED);
  m.mechanism = CKM_AES_GCM;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, oct, sk, out, &n), CKR_MECHANISM_INVALID);
  assert_int_equal(fk_cipher_calls, 0);
  akv_object_unref(sk);
}

static void test_hsm_aes_wrap(void **state)
{
  static const unsigned char value[24] = "generic-secret-24-bytes";
  struct akv_object *sk = fk_secret(CKK_GENERIC_SECRET, value, sizeof(value));
  CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
  CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
  CK_ULONG vlen = 24;
  CK_ATTRIBUTE tmpl[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_VALUE_LEN, &vlen, sizeof(vlen)}};
  unsigned char out[64];
  CK_ULONG n = sizeof(out);
  CK_OBJECT_HANDLE h = 0;
  (void)state;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, oct, sk, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_string_equal(fk_last_alg, "CKM_AES_KEY_WRAP_PAD");
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, out, n, tmpl, 2, &h), CKR_OK);
  assert_int_equal(session_obj(h)->key_type, CKK_GENERIC_SECRET);
  assert_memory_equal(session_obj(h)->secret, value, 24);
  /* CKA_VALUE_LEN disagreeing with what was unwrapped. */
  vlen = 16;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, out, n, tmpl, 2, &h),
                   CKR_TEMPLATE_INCONSISTENT);
  /* RFC 3394 wrap needs a multiple of 8 bytes, at least 16. */
  m.mechanism = CKM_AES_KEY_WRAP;
  n = sizeof(out);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, oct, sk, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_string_equal(fk_last_alg, "CKM_AES_KEY_WRAP");
  akv_object_unref(sk);
}

/* RFC 3394 section 4.1: 128-bit key data with a 128-bit KEK, computed locally. */
static void test_local_kw_known_answer(void **state)
{
  static const unsigned char kek[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F};
  static const unsigned char data[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                         0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF};
  static const unsigned char expect[24] = {0x1F, 0xA6, 0x8B, 0x0A, 0x81, 0x12, 0xB4, 0x47,
                                           0xAE, 0xF3, 0x4B, 0xD8, 0xFB, 0x5A, 0x7B, 0x82,
                                           0x9D, 0x3E, 0x86, 0x23, 0x71, 0xD2, 0xCF, 0xE5};
  struct akv_object *kek_obj = fk_secret(CKK_AES, kek, sizeof(kek));
  struct akv_object *sk = fk_secret(CKK_AES, data, sizeof(data));
  CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}};
  unsigned char out[40];
  CK_ULONG n = sizeof(out);
  CK_OBJECT_HANDLE h = 0;
  (void)state;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, kek_obj, sk, out, &n), CKR_OK);
  assert_int_equal(n, 24);
  assert_memory_equal(out, expect, 24);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, kek_obj, out, n, tmpl, 1, &h), CKR_OK);
  assert_memory_equal(session_obj(h)->secret, data, 16);
  out[3] ^= 1;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, kek_obj, out, n, tmpl, 1, &h),
                   CKR_WRAPPED_KEY_INVALID);
  assert_int_equal(fk_cipher_calls, 0);
  akv_object_unref(kek_obj);
  akv_object_unref(sk);
}

static CK_BBOOL obj_bool(const struct akv_object *o, CK_ATTRIBUTE_TYPE type)
{
  const CK_ATTRIBUTE *a = akv_object_attr(o, type);
  assert_non_null(a);
  assert_int_equal(a->ulValueLen, sizeof(CK_BBOOL));
  return *(const CK_BBOOL *)a->pValue;
}

/* An unwrapped key was plaintext outside the token: CKA_ALWAYS_SENSITIVE and
 * CKA_NEVER_EXTRACTABLE are FALSE whatever the template says. CKA_WRAP_WITH_TRUSTED is honoured:
 * no key is CKA_TRUSTED (no security officer), so such a key is never wrapped. */
static void test_unwrapped_origin_and_trusted(void **state)
{
  static const unsigned char value[32] = "session-key-session-key-session";
  struct akv_object *sk = fk_secret(CKK_AES, value, sizeof(value)), *got;
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 0, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_SENSITIVE, &ck_true, 1},
                         {CKA_EXTRACTABLE, &ck_true, 1},
                         {CKA_WRAP_WITH_TRUSTED, &ck_true, 1}};
  unsigned char wrapped[256], again[256];
  CK_ULONG wlen = sizeof(wrapped), n = sizeof(again);
  CK_OBJECT_HANDLE h = 0;
  (void)state;
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, sk, wrapped, &wlen), CKR_OK);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, wlen, tmpl, 5, &h), CKR_OK);
  got = session_obj(h);
  assert_non_null(got);
  assert_int_equal(obj_bool(got, CKA_SENSITIVE), CK_TRUE);
  assert_int_equal(obj_bool(got, CKA_ALWAYS_SENSITIVE), CK_FALSE);
  assert_int_equal(obj_bool(got, CKA_NEVER_EXTRACTABLE), CK_FALSE);
  assert_int_equal(obj_bool(got, CKA_WRAP_WITH_TRUSTED), CK_TRUE);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, got, again, &n), CKR_KEY_NOT_WRAPPABLE);
  /* Without it, the same key wraps. */
  tmpl[4].pValue = &ck_false;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, wlen, tmpl, 5, &h), CKR_OK);
  n = sizeof(again);
  assert_int_equal(akv_wrap_key_obj(&sess, &m, rsa_pub, session_obj(h), again, &n), CKR_OK);
  /* CKA_TRUSTED=TRUE cannot be set. */
  tmpl[4].type = CKA_TRUSTED;
  tmpl[4].pValue = &ck_true;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, wrapped, wlen, tmpl, 5, &h),
                   CKR_ATTRIBUTE_READ_ONLY);
  akv_object_unref(sk);
}

static void test_unwrap_template(void **state)
{
  CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_KEY_TYPE kt = CKK_RSA;
  unsigned char w[24] = {0};
  CK_OBJECT_HANDLE h = 0;
  CK_ATTRIBUTE bad_cls[] = {{CKA_CLASS, &cls, sizeof(cls)}};
  CK_ATTRIBUTE bad_type[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}};
  CK_ATTRIBUTE token[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_TOKEN, &ck_true, 1}};
  CK_ATTRIBUTE short_type[] = {{CKA_KEY_TYPE, &kt, 1}};
  (void)state;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, w, 24, NULL, 0, &h), CKR_TEMPLATE_INCOMPLETE);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, w, 24, bad_cls, 1, &h),
                   CKR_TEMPLATE_INCONSISTENT);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, w, 24, bad_type, 1, &h),
                   CKR_TEMPLATE_INCONSISTENT);
  kt = CKK_AES;
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, w, 24, token, 2, &h),
                   CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, oct, w, 24, short_type, 1, &h),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_unwrap_key_obj(&sess, &m, rsa_priv, w, 24, bad_type, 1, &h),
                   CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
  assert_int_equal(fk_cipher_calls, 0);
}

static void test_generate_key(void **state)
{
  CK_MECHANISM aes = {CKM_AES_KEY_GEN, NULL, 0}, gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
  CK_ULONG len = 32;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_TOKEN, &ck_false, 1},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)}};
  CK_ATTRIBUTE token[] = {{CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &ck_true, 1}};
  CK_OBJECT_HANDLE h1 = 0, h2 = 0;
  (void)state;
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl, 3, &h1), CKR_OK);
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl, 2, &h2), CKR_OK);
  assert_int_not_equal(h1, h2);
  assert_int_equal(session_obj(h1)->secret_len, 32);
  assert_int_equal(session_obj(h1)->key_type, CKK_AES);
  assert_memory_not_equal(session_obj(h1)->secret, session_obj(h2)->secret, 32);
  len = 20;
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl, 1, &h1), CKR_KEY_SIZE_RANGE);
  assert_int_equal(akv_generate_key(&sess, &gen, tmpl, 1, &h1), CKR_OK);
  assert_int_equal(session_obj(h1)->key_type, CKK_GENERIC_SECRET);
  assert_int_equal(session_obj(h1)->secret_len, 20);
  /* Generic secret with an AES key type in the template. */
  assert_int_equal(akv_generate_key(&sess, &gen, tmpl, 3, &h1), CKR_TEMPLATE_INCONSISTENT);
  len = 65;
  assert_int_equal(akv_generate_key(&sess, &gen, tmpl, 1, &h1), CKR_KEY_SIZE_RANGE);
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl + 1, 1, &h1), CKR_TEMPLATE_INCOMPLETE);
  len = 16;
  assert_int_equal(akv_generate_key(&sess, &aes, token, 2, &h1), CKR_FUNCTION_NOT_SUPPORTED);
  aes.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl, 1, &h1), CKR_MECHANISM_INVALID);
  aes.mechanism = CKM_SHA256_RSA_PKCS;
  assert_int_equal(akv_generate_key(&sess, &aes, tmpl, 1, &h1), CKR_MECHANISM_INVALID);

  /* A generated key works for local AES. */
  {
    unsigned char iv[16] = {0}, ct[32], pt[32];
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, 16};
    CK_ULONG n = sizeof(ct), pn = sizeof(pt);
    len = 16;
    assert_int_equal(
        akv_generate_key(&sess, &(CK_MECHANISM){CKM_AES_KEY_GEN, NULL, 0}, tmpl, 1, &h1), CKR_OK);
    assert_int_equal(akv_encrypt_init_obj(&sess, &cbc, session_obj(h1)), CKR_OK);
    assert_int_equal(akv_encrypt(&sess, (const CK_BYTE *)"plain", 5, ct, &n), CKR_OK);
    assert_int_equal(akv_decrypt_init_obj(&sess, &cbc, session_obj(h1)), CKR_OK);
    assert_int_equal(akv_decrypt(&sess, ct, n, pt, &pn), CKR_OK);
    assert_int_equal(pn, 5);
    assert_memory_equal(pt, "plain", 5);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_rsa_wrap_unwrap, each_setup),
      cmocka_unit_test_setup(test_wrap_refusals, each_setup),
      cmocka_unit_test_setup(test_hsm_aes_wrap, each_setup),
      cmocka_unit_test_setup(test_local_kw_known_answer, each_setup),
      cmocka_unit_test_setup(test_unwrap_template, each_setup),
      cmocka_unit_test_setup(test_unwrapped_origin_and_trusted, each_setup),
      cmocka_unit_test_setup(test_generate_key, each_setup),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
