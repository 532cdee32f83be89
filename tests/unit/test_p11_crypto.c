/* SPDX-License-Identifier: Apache-2.0 */
/* src/p11/crypto.c: the crypto entry points through the real module (no network: session keys,
 * digests, local random, mechanism queries; the fake vault only answers the HSM RNG). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_crypto_kv.c"

#define CFG                                                                                        \
  "{\"cache_file\":\"\",\"slots\":[{\"url\":\"https://unit.vault.azure.net\"},"                    \
  "{\"url\":\"https://unit.managedhsm.azure.net\"}]}"

static CK_SESSION_HANDLE sess;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static CK_RV init(void)
{
  CK_C_INITIALIZE_ARGS a;
  memset(&a, 0, sizeof(a));
  a.flags = CKF_OS_LOCKING_OK;
  a.pReserved = (void *)CFG;
  return C_Initialize(&a);
}

static int setup(void **state)
{
  (void)state;
  fk_reset_counters();
  assert_int_equal(init(), CKR_OK);
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &sess), CKR_OK);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (akv_module_check() == CKR_OK)
    assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static CK_OBJECT_HANDLE gen_key(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech, CK_ULONG len)
{
  CK_MECHANISM m = {mech, NULL, 0};
  CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},  {CKA_TOKEN, &no, sizeof(no)},
                      {CKA_ENCRYPT, &yes, sizeof(yes)},    {CKA_DECRYPT, &yes, sizeof(yes)},
                      {CKA_WRAP, &yes, sizeof(yes)},       {CKA_UNWRAP, &yes, sizeof(yes)},
                      {CKA_SIGN, &yes, sizeof(yes)},       {CKA_VERIFY, &yes, sizeof(yes)},
                      {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
  CK_OBJECT_HANDLE h = 0;
  assert_int_equal(C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), &h), CKR_OK);
  assert_true(h != 0);
  return h;
}

static void test_not_initialized(void **state)
{
  CK_MECHANISM m = {CKM_SHA256, NULL, 0};
  CK_BYTE buf[32] = {0};
  CK_ULONG n = sizeof(buf);
  CK_MECHANISM_TYPE list[64];
  CK_MECHANISM_INFO info;
  (void)state;
  assert_int_equal(C_GetMechanismList(0, list, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GetMechanismInfo(0, CKM_SHA256, &info), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_DigestInit(1, &m), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_DigestInit(1, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_Sign(1, buf, 1, buf, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_Verify(1, buf, 1, buf, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_Encrypt(1, buf, 1, buf, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GenerateRandom(1, buf, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_SeedRandom(1, buf, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_WrapKey(1, &m, 1, 2, buf, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void test_mechanisms(void **state)
{
  CK_MECHANISM_TYPE list[64];
  CK_ULONG n0 = 0, n1 = 0, small = 1;
  CK_MECHANISM_INFO info;
  (void)state;
  assert_int_equal(C_GetMechanismList(0, NULL, &n0), CKR_OK);
  assert_int_equal(C_GetMechanismList(1, NULL, &n1), CKR_OK);
  assert_true(n0 > 20 && n0 <= 64 && n1 > 20 && n1 <= 64);
  assert_int_equal(C_GetMechanismList(0, list, &small), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(small, n0);
  assert_int_equal(C_GetMechanismList(0, list, &n0), CKR_OK);
  assert_int_equal(C_GetMechanismList(0, list, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetMechanismList(7, list, &n0), CKR_SLOT_ID_INVALID);
  assert_int_equal(C_GetMechanismInfo(0, CKM_AES_GCM, &info), CKR_OK);
  assert_false(info.flags & CKF_HW);
  assert_int_equal(C_GetMechanismInfo(1, CKM_AES_GCM, &info), CKR_OK);
  assert_true(info.flags & CKF_HW);
  assert_int_equal(C_GetMechanismInfo(0, CKM_ECDSA, &info), CKR_OK);
  assert_true(info.flags & CKF_EC_NAMEDCURVE);
  assert_int_equal(C_GetMechanismInfo(0, CKM_MD5, &info), CKR_MECHANISM_INVALID);
  assert_int_equal(C_GetMechanismInfo(0, CKM_SHA256, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetMechanismInfo(9, CKM_SHA256, &info), CKR_SLOT_ID_INVALID);
}

static void test_arguments_and_sessions(void **state)
{
  CK_MECHANISM m = {CKM_SHA256, NULL, 0};
  CK_BYTE buf[64] = {0};
  CK_ULONG n = sizeof(buf);
  (void)state;
  assert_int_equal(C_DigestInit(sess, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_SignInit(sess, NULL, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_EncryptInit(sess, NULL, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_Sign(sess, buf, 1, buf, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_Sign(sess, NULL, 5, buf, &n), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_Verify(sess, buf, 1, NULL, 4), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_DecryptFinal(sess, buf, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GenerateKey(sess, &m, NULL, 1, &n), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_UnwrapKey(sess, &m, 1, NULL, 0, NULL, 0, &n), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_DigestInit(0xdead, &m), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_SignFinal(0xdead, buf, &n), CKR_SESSION_HANDLE_INVALID);
  /* Operations never initialised. */
  assert_int_equal(C_SignUpdate(sess, buf, 1), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_VerifyFinal(sess, buf, 4), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_EncryptUpdate(sess, buf, 1, buf, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_DecryptFinal(sess, buf, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_DigestFinal(sess, buf, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_SignRecover(sess, buf, 1, buf, &n), CKR_OPERATION_NOT_INITIALIZED);
  /* A key handle this session cannot see. */
  m.mechanism = CKM_SHA256_RSA_PKCS;
  assert_int_equal(C_SignInit(sess, &m, 0x7777777), CKR_KEY_HANDLE_INVALID);
  /* What the module does not offer. */
  assert_int_equal(C_SignRecoverInit(sess, &m, 1), CKR_MECHANISM_INVALID);
  assert_int_equal(C_VerifyRecoverInit(sess, &m, 1), CKR_MECHANISM_INVALID);
  assert_int_equal(C_DeriveKey(sess, &m, 1, NULL, 0, &n), CKR_MECHANISM_INVALID);
  assert_int_equal(C_DigestEncryptUpdate(sess, buf, 1, buf, &n), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_SeedRandom(sess, buf, 4), CKR_RANDOM_SEED_NOT_SUPPORTED);
  {
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    CK_MECHANISM kp = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    /* Key pairs are generated in the vault: a read-only session cannot. */
    assert_int_equal(C_GenerateKeyPair(sess, &kp, NULL, 0, NULL, 0, &pub, &priv),
                     CKR_SESSION_READ_ONLY);
    assert_int_equal(C_GenerateKeyPair(sess, &kp, NULL, 0, NULL, 0, NULL, &priv),
                     CKR_ARGUMENTS_BAD);
  }
}

static void test_digest_and_random(void **state)
{
  CK_MECHANISM m = {CKM_SHA512, NULL, 0};
  CK_BYTE out[64], buf[100];
  CK_ULONG n = 0;
  CK_SESSION_HANDLE hsm = 0;
  unsigned int rl = 0;
  unsigned char ref[64];
  (void)state;
  EVP_Digest("digest me", 9, ref, &rl, EVP_sha512(), NULL);
  assert_int_equal(C_DigestInit(sess, &m), CKR_OK);
  assert_int_equal(C_DigestInit(sess, &m), CKR_OPERATION_ACTIVE);
  assert_int_equal(C_DigestUpdate(sess, (CK_BYTE_PTR) "digest ", 7), CKR_OK);
  assert_int_equal(C_DigestUpdate(sess, (CK_BYTE_PTR) "me", 2), CKR_OK);
  assert_int_equal(C_DigestFinal(sess, NULL, &n), CKR_OK);
  assert_int_equal(n, 64);
  assert_int_equal(C_DigestFinal(sess, out, &n), CKR_OK);
  assert_memory_equal(out, ref, 64);

  assert_int_equal(C_GenerateRandom(sess, buf, sizeof(buf)), CKR_OK);
  assert_int_equal(fk_random_calls, 0);
  assert_int_equal(C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &hsm), CKR_OK);
  assert_int_equal(C_GenerateRandom(hsm, buf, 16), CKR_OK);
  assert_int_equal(fk_random_calls, 1);
  assert_int_equal(buf[0], 0xA5);
  assert_int_equal(C_CloseSession(hsm), CKR_OK);
}

static void test_session_keys(void **state)
{
  CK_OBJECT_HANDLE aes = gen_key(sess, CKM_AES_KEY_GEN, 32);
  CK_OBJECT_HANDLE kek = gen_key(sess, CKM_AES_KEY_GEN, 16);
  CK_OBJECT_HANDLE mac = gen_key(sess, CKM_GENERIC_SECRET_KEY_GEN, 32);
  CK_BYTE iv[16] = "0123456789abcdef", ct[64], pt[64], wrapped[64], sig[64];
  CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, 16}, kw = {CKM_AES_KEY_WRAP, NULL, 0};
  CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
  CK_ULONG n = 0, pn = sizeof(pt), wn = 0, sn = 0;
  CK_KEY_TYPE kt = CKK_AES;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof(cls)},
                       {CKA_KEY_TYPE, &kt, sizeof(kt)},
                       {CKA_TOKEN, &no, sizeof(no)},
                       {CKA_DECRYPT, &yes, sizeof(yes)}};
  CK_OBJECT_HANDLE unwrapped = 0;
  (void)state;
  /* Encrypt with the length protocol, then decrypt. */
  assert_int_equal(C_EncryptInit(sess, &cbc, aes), CKR_OK);
  assert_int_equal(C_EncryptInit(sess, &cbc, aes), CKR_OPERATION_ACTIVE);
  assert_int_equal(C_Encrypt(sess, (CK_BYTE_PTR) "attack at dawn", 14, NULL, &n), CKR_OK);
  assert_int_equal(n, 16);
  n = 4;
  assert_int_equal(C_Encrypt(sess, (CK_BYTE_PTR) "attack at dawn", 14, ct, &n),
                   CKR_BUFFER_TOO_SMALL);
  n = sizeof(ct);
  assert_int_equal(C_Encrypt(sess, (CK_BYTE_PTR) "attack at dawn", 14, ct, &n), CKR_OK);
  assert_int_equal(C_Encrypt(sess, (CK_BYTE_PTR) "x", 1, ct, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_DecryptInit(sess, &cbc, aes), CKR_OK);
  assert_int_equal(C_Decrypt(sess, ct, 16, pt, &pn), CKR_OK);
  assert_int_equal(pn, 14);
  assert_memory_equal(pt, "attack at dawn", 14);

  /* Wrap the AES key with the KEK and unwrap it into a new session key that decrypts the same. */
  assert_int_equal(C_WrapKey(sess, &kw, kek, aes, NULL, &wn), CKR_OK);
  assert_int_equal(wn, 40);
  assert_int_equal(C_WrapKey(sess, &kw, kek, aes, wrapped, &wn), CKR_OK);
  assert_int_equal(C_UnwrapKey(sess, &kw, kek, wrapped, wn, ut, 4, &unwrapped), CKR_OK);
  pn = sizeof(pt);
  assert_int_equal(C_DecryptInit(sess, &cbc, unwrapped), CKR_OK);
  assert_int_equal(C_Decrypt(sess, ct, 16, pt, &pn), CKR_OK);
  assert_memory_equal(pt, "attack at dawn", 14);
  assert_int_equal(C_WrapKey(sess, &kw, 0x7777777, aes, wrapped, &wn),
                   CKR_WRAPPING_KEY_HANDLE_INVALID);
  assert_int_equal(C_UnwrapKey(sess, &kw, 0x7777777, wrapped, wn, ut, 4, &unwrapped),
                   CKR_UNWRAPPING_KEY_HANDLE_INVALID);

  /* HMAC with a generic secret, multi-part sign and one-shot verify. */
  assert_int_equal(C_SignInit(sess, &hmac, mac), CKR_OK);
  assert_int_equal(C_SignUpdate(sess, (CK_BYTE_PTR) "to be ", 6), CKR_OK);
  assert_int_equal(C_SignUpdate(sess, (CK_BYTE_PTR) "authenticated", 13), CKR_OK);
  assert_int_equal(C_SignFinal(sess, NULL, &sn), CKR_OK);
  assert_int_equal(sn, 32);
  assert_int_equal(C_SignFinal(sess, sig, &sn), CKR_OK);
  assert_int_equal(C_VerifyInit(sess, &hmac, mac), CKR_OK);
  assert_int_equal(C_Verify(sess, (CK_BYTE_PTR) "to be authenticated", 19, sig, sn), CKR_OK);
  sig[3] ^= 1;
  assert_int_equal(C_VerifyInit(sess, &hmac, mac), CKR_OK);
  assert_int_equal(C_Verify(sess, (CK_BYTE_PTR) "to be authenticated", 19, sig, sn),
                   CKR_SIGNATURE_INVALID);
  /* Mechanism and key type must agree. */
  assert_int_equal(C_SignInit(sess, &hmac, aes), CKR_OK); /* HMAC accepts AES keys too */
  assert_int_equal(C_SignFinal(sess, sig, &sn), CKR_OK);
  assert_int_equal(C_EncryptInit(sess, &cbc, mac), CKR_KEY_TYPE_INCONSISTENT);
  assert_int_equal(fk_cipher_calls + fk_sign_calls, 0);
}

static void test_close_mid_operation(void **state)
{
  CK_OBJECT_HANDLE aes = gen_key(sess, CKM_AES_KEY_GEN, 16);
  CK_BYTE iv[16] = {0}, buf[64] = {0};
  CK_MECHANISM cbc = {CKM_AES_CBC, iv, 16}, dig = {CKM_SHA256, NULL, 0};
  CK_ULONG n = sizeof(buf);
  (void)state;
  assert_int_equal(C_EncryptInit(sess, &cbc, aes), CKR_OK);
  assert_int_equal(C_EncryptUpdate(sess, buf, 32, buf, &n), CKR_OK);
  assert_int_equal(C_DigestInit(sess, &dig), CKR_OK);
  assert_int_equal(C_CloseSession(sess), CKR_OK); /* frees both operations (ASan/valgrind) */
  assert_int_equal(C_EncryptFinal(sess, buf, &n), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &sess), CKR_OK);
  /* The key was a session object of the closed session. */
  assert_int_equal(C_EncryptInit(sess, &cbc, aes), CKR_KEY_HANDLE_INVALID);
  /* Finalize with an operation still active. */
  assert_int_equal(C_DigestInit(sess, &dig), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_not_initialized),
      cmocka_unit_test_setup_teardown(test_mechanisms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_arguments_and_sessions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_digest_and_random, setup, teardown),
      cmocka_unit_test_setup_teardown(test_session_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_mid_operation, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
