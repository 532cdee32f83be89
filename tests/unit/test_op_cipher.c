/* SPDX-License-Identifier: Apache-2.0 */
/* Encrypt and decrypt: RSA in the fake vault (and locally with public_ops local), AES in the fake
 * Managed HSM (GCM with the HSM's IV, CBC, CBC-PAD, key-size discovery) and locally with session
 * keys; the length-query protocol without extra requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_crypto_kv.c"

static struct akv_object *rsa_priv, *rsa_pub, *oct128, *oct256;
static struct akv_session sess;

static int group_setup(void **state)
{
  (void)state;
  fk_session_init(&sess, AKV_VAULT_MHSM);
  rsa_priv = fk_rsa("rsa1", CKO_PRIVATE_KEY, 2048);
  rsa_pub = fk_rsa("rsa1", CKO_PUBLIC_KEY, 2048);
  oct128 = fk_oct("oct128", 16);
  oct256 = fk_oct("oct256", 32);
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  fk_session_done(&sess);
  akv_object_unref(rsa_priv);
  akv_object_unref(rsa_pub);
  akv_object_unref(oct128);
  akv_object_unref(oct256);
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

static CK_RV encrypt_all(const CK_MECHANISM *m, struct akv_object *key, const void *in, size_t len,
                         unsigned char *out, CK_ULONG *out_len)
{
  CK_RV rv = akv_encrypt_init_obj(&sess, m, key);
  return rv != CKR_OK ? rv : akv_encrypt(&sess, in, len, out, out_len);
}

static CK_RV decrypt_all(const CK_MECHANISM *m, struct akv_object *key, const void *in, size_t len,
                         unsigned char *out, CK_ULONG *out_len)
{
  CK_RV rv = akv_decrypt_init_obj(&sess, m, key);
  return rv != CKR_OK ? rv : akv_decrypt(&sess, in, len, out, out_len);
}

static void test_rsa_oaep_roundtrip(void **state)
{
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
  unsigned char ct[256], pt[256];
  CK_ULONG ct_len = 0, pt_len = 0;
  (void)state;
  /* Encrypt is a vault call by default; its length is known without one. */
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_encrypt(&sess, (const CK_BYTE *)"secret", 6, NULL, &ct_len), CKR_OK);
  assert_int_equal(ct_len, 256);
  ct_len = 10;
  assert_int_equal(akv_encrypt(&sess, (const CK_BYTE *)"secret", 6, ct, &ct_len),
                   CKR_BUFFER_TOO_SMALL);
  assert_int_equal(fk_cipher_calls, 0);
  ct_len = sizeof(ct);
  assert_int_equal(akv_encrypt(&sess, (const CK_BYTE *)"secret", 6, ct, &ct_len), CKR_OK);
  assert_int_equal(ct_len, 256);
  assert_int_equal(fk_cipher_calls, 1);
  assert_string_equal(fk_last_alg, "RSA-OAEP-256");
  assert_null(sess.ops[AKV_OP_ENCRYPT]);

  /* Decrypt: the length query answers the modulus size without a request; a too-small buffer
   * costs one request whose result is kept for the next call. */
  assert_int_equal(akv_decrypt_init_obj(&sess, &m, rsa_priv), CKR_OK);
  assert_int_equal(akv_decrypt(&sess, ct, ct_len, NULL, &pt_len), CKR_OK);
  assert_int_equal(pt_len, 256);
  assert_int_equal(fk_cipher_calls, 1);
  pt_len = 3;
  assert_int_equal(akv_decrypt(&sess, ct, ct_len, pt, &pt_len), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(pt_len, 6);
  assert_int_equal(fk_cipher_calls, 2);
  pt_len = sizeof(pt);
  assert_int_equal(akv_decrypt(&sess, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_int_equal(fk_cipher_calls, 2);
  assert_int_equal(pt_len, 6);
  assert_memory_equal(pt, "secret", 6);
  assert_null(sess.ops[AKV_OP_DECRYPT]);
}

static void test_rsa_local_public_ops(void **state)
{
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA_1, CKG_MGF1_SHA1, 0, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
  CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
  unsigned char ct[256], pt[256];
  CK_ULONG ct_len = sizeof(ct), pt_len = sizeof(pt);
  (void)state;
  fk_slot_cfg.public_ops_local = 1;
  assert_int_equal(encrypt_all(&m, rsa_pub, "local", 5, ct, &ct_len), CKR_OK);
  assert_int_equal(fk_cipher_calls, 0);
  assert_int_equal(decrypt_all(&m, rsa_priv, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_int_equal(fk_cipher_calls, 1);
  assert_string_equal(fk_last_alg, "RSA-OAEP");
  assert_int_equal(pt_len, 5);
  assert_memory_equal(pt, "local", 5);
  /* PKCS#1 v1.5 both ways. */
  ct_len = sizeof(ct);
  pt_len = sizeof(pt);
  assert_int_equal(encrypt_all(&v15, rsa_pub, "v15", 3, ct, &ct_len), CKR_OK);
  assert_int_equal(decrypt_all(&v15, rsa_priv, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_string_equal(fk_last_alg, "RSA1_5");
  assert_int_equal(pt_len, 3);
  assert_memory_equal(pt, "v15", 3);
}

/* A ciphertext the service sent without its leading zero byte is padded back to k bytes. */
static void test_short_rsa_ciphertext(void **state)
{
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  unsigned char ct[256], pt[256];
  CK_ULONG ct_len = 0, pt_len = 0;
  unsigned counter;
  (void)state;
  fk_trim_rsa_sig = 1;
  for (counter = 0; counter < 5000 && !fk_trimmed; counter++) {
    ct_len = sizeof(ct);
    assert_int_equal(encrypt_all(&m, rsa_pub, &counter, sizeof(counter), ct, &ct_len), CKR_OK);
    assert_int_equal(ct_len, 256);
  }
  assert_int_equal(fk_trimmed, 1);
  assert_int_equal(ct[0], 0);
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&m, rsa_priv, ct, ct_len, pt, &pt_len), CKR_OK);
  counter--;
  assert_int_equal(pt_len, sizeof(counter));
  assert_memory_equal(pt, &counter, sizeof(counter));
}

static void test_rsa_errors(void **state)
{
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 0, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
  unsigned char buf[300] = {0}, out[256];
  CK_ULONG out_len = sizeof(out);
  (void)state;
  /* 256 - 2*32 - 2 = 190 bytes at most. */
  assert_int_equal(encrypt_all(&m, rsa_pub, buf, 191, out, &out_len), CKR_DATA_LEN_RANGE);
  assert_null(sess.ops[AKV_OP_ENCRYPT]);
  assert_int_equal(decrypt_all(&m, rsa_priv, buf, 255, out, &out_len),
                   CKR_ENCRYPTED_DATA_LEN_RANGE);
  assert_int_equal(fk_cipher_calls, 0);
  /* Garbage ciphertext: the vault refuses it (400). */
  buf[0] = 0x7f;
  assert_int_equal(decrypt_all(&m, rsa_priv, buf, 256, out, &out_len), CKR_ENCRYPTED_DATA_INVALID);
  assert_int_equal(fk_cipher_calls, 1);
  assert_null(sess.ops[AKV_OP_DECRYPT]);
  /* Permissions and key types. */
  assert_int_equal(akv_decrypt_init_obj(&sess, &m, rsa_pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct256), CKR_KEY_TYPE_INCONSISTENT);
  m.mechanism = CKM_SHA256_RSA_PKCS;
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, rsa_pub), CKR_MECHANISM_INVALID);
  m.mechanism = CKM_RSA_PKCS_OAEP;
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, rsa_pub), CKR_OK);
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, rsa_pub), CKR_OPERATION_ACTIVE);
  akv_op_end(&sess, AKV_OP_ENCRYPT);
  assert_int_equal(akv_encrypt(&sess, buf, 1, out, &out_len), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_decrypt_update(&sess, buf, 1, out, &out_len), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_decrypt_final(&sess, out, &out_len), CKR_OPERATION_NOT_INITIALIZED);
}

static void test_hsm_gcm(void **state)
{
  unsigned char iv[12] = {0}, aad[] = "header";
  CK_GCM_PARAMS g = {iv, 12, 96, aad, 6, 128};
  CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof(g)};
  unsigned char msg[40], ct[64], pt[64], zero[12] = {0};
  CK_ULONG ct_len = 0, pt_len = sizeof(pt);
  (void)state;
  memset(msg, 'm', sizeof(msg));
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct128), CKR_OK);
  assert_int_equal(akv_encrypt(&sess, msg, sizeof(msg), NULL, &ct_len), CKR_OK);
  assert_int_equal(ct_len, 56); /* ciphertext + 16-byte tag */
  assert_int_equal(fk_cipher_calls, 0);
  assert_int_equal(akv_encrypt(&sess, msg, sizeof(msg), ct, &ct_len), CKR_OK);
  /* Size unknown: A256GCM refused, then A128GCM. */
  assert_int_equal(fk_cipher_calls, 2);
  assert_string_equal(fk_last_alg, "A128GCM");
  /* The IV the HSM chose is in the caller's parameters. */
  assert_memory_not_equal(iv, zero, 12);

  assert_int_equal(decrypt_all(&m, oct128, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_int_equal(fk_cipher_calls, 3); /* size remembered */
  assert_int_equal(pt_len, 40);
  assert_memory_equal(pt, msg, 40);
  /* A tampered tag. */
  ct[ct_len - 1] ^= 1;
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&m, oct128, ct, ct_len, pt, &pt_len), CKR_ENCRYPTED_DATA_INVALID);
  /* Too short to hold a tag. */
  assert_int_equal(decrypt_all(&m, oct128, ct, 15, pt, &pt_len), CKR_ENCRYPTED_DATA_LEN_RANGE);
  /* The HSM needs a 12-byte IV buffer and a full tag. */
  g.ulIvLen = 16;
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct128), CKR_MECHANISM_PARAM_INVALID);
  g.ulIvLen = 12;
  g.ulTagBits = 120;
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct128), CKR_MECHANISM_PARAM_INVALID);
}

static void test_hsm_cbc_multipart(void **state)
{
  unsigned char iv[16] = "fedcba9876543210", msg[40], ct[64], pt[64];
  CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, 16};
  CK_ULONG n = sizeof(ct), total = 0, pt_len = sizeof(pt);
  (void)state;
  memset(msg, 'c', sizeof(msg));
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct256), CKR_OK);
  /* Update: a length query consumes nothing; data goes out at Final. */
  assert_int_equal(akv_encrypt_update(&sess, msg, 10, NULL, &n), CKR_OK);
  assert_int_equal(n, 0);
  n = sizeof(ct);
  assert_int_equal(akv_encrypt_update(&sess, msg, 10, ct, &n), CKR_OK);
  assert_int_equal(n, 0);
  n = sizeof(ct);
  assert_int_equal(akv_encrypt_update(&sess, msg + 10, 30, ct, &n), CKR_OK);
  assert_int_equal(akv_encrypt_final(&sess, NULL, &n), CKR_OK);
  assert_int_equal(n, 48);
  assert_int_equal(fk_cipher_calls, 0);
  n = sizeof(ct);
  assert_int_equal(akv_encrypt_final(&sess, ct, &n), CKR_OK);
  total = n;
  assert_int_equal(total, 48);
  assert_int_equal(fk_cipher_calls, 1);
  assert_string_equal(fk_last_alg, "A256CBCPAD");
  assert_int_equal(fk_last_len, 40);

  /* One-shot encrypt after Update is refused. */
  assert_int_equal(akv_decrypt_init_obj(&sess, &m, oct256), CKR_OK);
  n = sizeof(pt);
  assert_int_equal(akv_decrypt_update(&sess, ct, 20, pt, &n), CKR_OK);
  assert_int_equal(akv_decrypt_update(&sess, ct + 20, total - 20, pt, &n), CKR_OK);
  assert_int_equal(akv_decrypt_final(&sess, pt, &pt_len), CKR_OK);
  assert_int_equal(pt_len, 40);
  assert_memory_equal(pt, msg, 40);

  /* Unpadded CBC takes whole blocks only (the service would zero-pad silently). */
  m.mechanism = CKM_AES_CBC;
  n = sizeof(ct);
  assert_int_equal(encrypt_all(&m, oct256, msg, 40, ct, &n), CKR_DATA_LEN_RANGE);
  n = sizeof(ct);
  assert_int_equal(encrypt_all(&m, oct256, msg, 32, ct, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_string_equal(fk_last_alg, "A256CBC");
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&m, oct256, ct, 32, pt, &pt_len), CKR_OK);
  assert_memory_equal(pt, msg, 32);
}

static void test_local_aes(void **state)
{
  static const unsigned char key[32] = "k-k-k-k-k-k-k-k-k-k-k-k-k-k-k-k";
  struct akv_object *sk = fk_secret(CKK_AES, key, sizeof(key));
  unsigned char iv[16] = "iv-iv-iv-iv-iv-", aad[3] = "hdr";
  CK_GCM_PARAMS g = {iv, 12, 96, aad, 3, 128};
  CK_MECHANISM gcm = {CKM_AES_GCM, &g, sizeof(g)}, cbc = {CKM_AES_CBC_PAD, iv, 16};
  unsigned char msg[33], ct[80], pt[80], ref[80];
  CK_ULONG ct_len = sizeof(ct), pt_len = sizeof(pt);
  int n = 0, f = 0;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  (void)state;
  memset(msg, 'L', sizeof(msg));
  assert_int_equal(encrypt_all(&gcm, sk, msg, sizeof(msg), ct, &ct_len), CKR_OK);
  assert_int_equal(ct_len, 49);
  /* Independent AES-256-GCM with the same IV/AAD. */
  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv);
  EVP_EncryptUpdate(ctx, NULL, &n, aad, 3);
  EVP_EncryptUpdate(ctx, ref, &n, msg, sizeof(msg));
  EVP_EncryptFinal_ex(ctx, ref + n, &f);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, ref + 33);
  assert_memory_equal(ct, ref, 49);
  assert_int_equal(decrypt_all(&gcm, sk, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_int_equal(pt_len, 33);
  assert_memory_equal(pt, msg, 33);
  ct[0] ^= 1;
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&gcm, sk, ct, ct_len, pt, &pt_len), CKR_ENCRYPTED_DATA_INVALID);

  /* CBC-PAD and a padding error. */
  ct_len = sizeof(ct);
  assert_int_equal(encrypt_all(&cbc, sk, msg, sizeof(msg), ct, &ct_len), CKR_OK);
  assert_int_equal(ct_len, 48);
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&cbc, sk, ct, ct_len, pt, &pt_len), CKR_OK);
  assert_int_equal(pt_len, 33);
  ct[47] ^= 0x55;
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&cbc, sk, ct, ct_len, pt, &pt_len), CKR_ENCRYPTED_DATA_INVALID);
  pt_len = sizeof(pt);
  assert_int_equal(decrypt_all(&cbc, sk, ct, 47, pt, &pt_len), CKR_ENCRYPTED_DATA_LEN_RANGE);
  assert_int_equal(fk_cipher_calls, 0); /* all local */
  EVP_CIPHER_CTX_free(ctx);
  akv_object_unref(sk);

  /* A session key of a size AES does not have. */
  sk = fk_secret(CKK_AES, key, 20);
  assert_int_equal(akv_encrypt_init_obj(&sess, &cbc, sk), CKR_KEY_SIZE_RANGE);
  akv_object_unref(sk);
}

static void test_op_freed_midway(void **state)
{
  unsigned char iv[16] = {0}, buf[64] = {0};
  CK_MECHANISM m = {CKM_AES_CBC, iv, 16};
  CK_ULONG n = sizeof(buf);
  (void)state;
  assert_int_equal(akv_encrypt_init_obj(&sess, &m, oct256), CKR_OK);
  assert_int_equal(akv_encrypt_update(&sess, buf, 32, buf, &n), CKR_OK);
  assert_int_equal(oct256->refs, 2);
  akv_op_end(&sess, AKV_OP_ENCRYPT);
  assert_int_equal(oct256->refs, 1);
  assert_int_equal(fk_cipher_calls, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_rsa_oaep_roundtrip, each_setup),
      cmocka_unit_test_setup(test_rsa_local_public_ops, each_setup),
      cmocka_unit_test_setup(test_short_rsa_ciphertext, each_setup),
      cmocka_unit_test_setup(test_rsa_errors, each_setup),
      cmocka_unit_test_setup(test_hsm_gcm, each_setup),
      cmocka_unit_test_setup(test_hsm_cbc_multipart, each_setup),
      cmocka_unit_test_setup(test_local_aes, each_setup),
      cmocka_unit_test_setup(test_op_freed_midway, each_setup),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
