/* SPDX-License-Identifier: Apache-2.0 */
/* Local digests (known answers, multi-part, length queries, C_DigestKey) and C_GenerateRandom
 * (HSM RNG on Managed HSM slots, local DRBG elsewhere). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_crypto_kv.c"

static struct akv_session sess;

/* FIPS 180-2 "abc" vectors. */
static const unsigned char abc_sha256[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
static const unsigned char abc_sha1[20] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81,
                                           0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                                           0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};

static int setup(void **state)
{
  (void)state;
  fk_reset_counters();
  fk_session_init(&sess, AKV_VAULT_KEYVAULT);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fk_session_done(&sess);
  return 0;
}

static void test_known_answers(void **state)
{
  CK_MECHANISM m = {CKM_SHA256, NULL, 0};
  unsigned char out[64];
  CK_ULONG n = 0;
  (void)state;
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest(&sess, (const CK_BYTE *)"abc", 3, NULL, &n), CKR_OK);
  assert_int_equal(n, 32);
  n = 31;
  assert_int_equal(akv_digest(&sess, (const CK_BYTE *)"abc", 3, out, &n), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(n, 32);
  n = sizeof(out);
  assert_int_equal(akv_digest(&sess, (const CK_BYTE *)"abc", 3, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_memory_equal(out, abc_sha256, 32);
  assert_null(sess.ops[AKV_OP_DIGEST]);

  m.mechanism = CKM_SHA_1;
  n = sizeof(out);
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest_update(&sess, (const CK_BYTE *)"a", 1), CKR_OK);
  assert_int_equal(akv_digest_update(&sess, (const CK_BYTE *)"", 0), CKR_OK);
  assert_int_equal(akv_digest_update(&sess, (const CK_BYTE *)"bc", 2), CKR_OK);
  assert_int_equal(akv_digest_final(&sess, NULL, &n), CKR_OK);
  assert_int_equal(n, 20);
  n = 4;
  assert_int_equal(akv_digest_final(&sess, out, &n), CKR_BUFFER_TOO_SMALL);
  n = sizeof(out);
  assert_int_equal(akv_digest_final(&sess, out, &n), CKR_OK);
  assert_memory_equal(out, abc_sha1, 20);
}

static void test_all_sizes(void **state)
{
  static const struct {
    CK_MECHANISM_TYPE m;
    size_t len;
  } cases[] = {{CKM_SHA224, 28}, {CKM_SHA384, 48}, {CKM_SHA512, 64}};
  (void)state;
  for (size_t i = 0; i < 3; i++) {
    CK_MECHANISM m = {cases[i].m, NULL, 0};
    unsigned char out[64], ref[64];
    unsigned int rl = 0;
    CK_ULONG n = sizeof(out);
    EVP_Digest("data", 4, ref, &rl, EVP_get_digestbyname(akv_mech_hash_name(cases[i].m)), NULL);
    assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
    assert_int_equal(akv_digest(&sess, (const CK_BYTE *)"data", 4, out, &n), CKR_OK);
    assert_int_equal(n, cases[i].len);
    assert_memory_equal(out, ref, rl);
  }
}

static void test_state(void **state)
{
  CK_MECHANISM m = {CKM_SHA256, NULL, 0}, bad = {CKM_MD5, NULL, 0};
  unsigned char out[32] = {0};
  CK_ULONG n = sizeof(out);
  (void)state;
  assert_int_equal(akv_digest(&sess, out, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_digest_update(&sess, out, 1), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_digest_final(&sess, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_digest_key(&sess, 1), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_digest_init(&sess, &bad), CKR_MECHANISM_INVALID);
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OPERATION_ACTIVE);
  assert_int_equal(akv_digest_update(&sess, (const CK_BYTE *)"x", 1), CKR_OK);
  assert_int_equal(akv_digest(&sess, (const CK_BYTE *)"x", 1, out, &n), CKR_OPERATION_ACTIVE);
  assert_null(sess.ops[AKV_OP_DIGEST]);
}

static void test_digest_key(void **state)
{
  static const unsigned char v[16] = "0123456789abcdef";
  CK_BBOOL yes = CK_TRUE;
  struct akv_object *sk = fk_secret(CKK_AES, v, sizeof(v));
  struct akv_object *oct = fk_oct("octd", 32);
  CK_MECHANISM m = {CKM_SHA256, NULL, 0};
  unsigned char out[32], ref[32];
  unsigned int rl = 0;
  CK_ULONG n = sizeof(out);
  (void)state;
  sess.objects = calloc(2, sizeof(*sess.objects));
  sess.objects[0] = sk;
  sess.objects[1] = oct;
  sess.n_objects = 2;
  EVP_Digest("pre"
             "0123456789abcdef",
             19, ref, &rl, EVP_sha256(), NULL);
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest_update(&sess, (const CK_BYTE *)"pre", 3), CKR_OK);
  assert_int_equal(akv_digest_key(&sess, sk->handle), CKR_OK);
  assert_int_equal(akv_digest_final(&sess, out, &n), CKR_OK);
  assert_memory_equal(out, ref, 32);
  /* A vault key never leaves the vault. */
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest_key(&sess, oct->handle), CKR_KEY_INDIGESTIBLE);
  assert_null(sess.ops[AKV_OP_DIGEST]);
  /* A sensitive session key neither. */
  sk->attrs = calloc(1, sizeof(CK_ATTRIBUTE));
  sk->attrs[0].type = CKA_SENSITIVE;
  sk->attrs[0].pValue = malloc(1);
  memcpy(sk->attrs[0].pValue, &yes, 1);
  sk->attrs[0].ulValueLen = 1;
  sk->n_attrs = 1;
  assert_int_equal(akv_digest_init(&sess, &m), CKR_OK);
  assert_int_equal(akv_digest_key(&sess, sk->handle), CKR_KEY_INDIGESTIBLE);
  assert_null(sess.ops[AKV_OP_DIGEST]);
}

static void test_random(void **state)
{
  unsigned char buf[300];
  size_t a5 = 0;
  (void)state;
  memset(buf, 0, sizeof(buf));
  assert_int_equal(akv_generate_random(&sess, buf, sizeof(buf)), CKR_OK);
  assert_int_equal(fk_random_calls, 0); /* vault slot: local DRBG */
  for (size_t i = 0; i < sizeof(buf); i++)
    a5 += buf[i] == 0xA5;
  assert_true(a5 < 20);
  assert_int_equal(akv_generate_random(&sess, buf, 0), CKR_OK);

  fk_slot_cfg.kind = AKV_VAULT_MHSM;
  assert_int_equal(akv_generate_random(&sess, buf, 200), CKR_OK);
  assert_int_equal(fk_random_calls, 1);
  for (size_t i = 0; i < 200; i++)
    assert_int_equal(buf[i], 0xA5);
  fk_force_rc = KV_E_THROTTLED;
  assert_int_equal(akv_generate_random(&sess, buf, 16), akv_rv(KV_E_THROTTLED));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_known_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_all_sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state, setup, teardown),
      cmocka_unit_test_setup_teardown(test_digest_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_random, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  fk_keys_free();
  return rc;
}
