/* SPDX-License-Identifier: Apache-2.0 */
/* p11_aes_check - AES-GCM and AES key wrap with a Managed HSM oct-HSM key through the module,
 * each result checked independently with OpenSSL and the key's known bytes (the test imported
 * the key into the emulated HSM). pkcs11-tool 0.23 has no options for GCM parameters and wraps
 * only keys it can find on the token, so these run in C.
 *
 * usage: p11_aes_check MODULE KEY_LABEL KEY_FILE
 *   KEY_FILE holds the raw AES key bytes (16, 24 or 32) the vault key KEY_LABEL was imported with.
 * env: the module's config (AKV_PKCS11_CONFIG), with the HSM slot first.
 *
 * GCM (docs/mechanisms.md): the HSM chooses the IV on encrypt and the module writes it back into
 * CK_GCM_PARAMS.pIv; output is ciphertext || 16-byte tag. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16

static const EVP_CIPHER *gcm_cipher(size_t keylen)
{
  return keylen == 16 ? EVP_aes_128_gcm() : keylen == 24 ? EVP_aes_192_gcm() : EVP_aes_256_gcm();
}

static const EVP_CIPHER *wrap_cipher(size_t keylen, int pad)
{
  if (pad)
    return keylen == 16   ? EVP_aes_128_wrap_pad()
           : keylen == 24 ? EVP_aes_192_wrap_pad()
                          : EVP_aes_256_wrap_pad();
  return keylen == 16 ? EVP_aes_128_wrap() : keylen == 24 ? EVP_aes_192_wrap() : EVP_aes_256_wrap();
}

/* OpenSSL AES-GCM (independent of the module). enc: out = ct || tag; dec: in = ct || tag.
 * Returns the output length or -1 (bad tag on decrypt). */
static int ossl_gcm(int enc, const unsigned char *key, size_t keylen, const unsigned char *iv,
                    const unsigned char *aad, int aadlen, const unsigned char *in, int inlen,
                    unsigned char *out)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, total = -1, n = enc ? inlen : inlen - GCM_TAG_LEN;

  if (!c || n < 0)
    goto out;
  if (EVP_CipherInit_ex(c, gcm_cipher(keylen), NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, GCM_IV_LEN, NULL) != 1 ||
      EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1 ||
      EVP_CipherUpdate(c, NULL, &len, aad, aadlen) != 1 ||
      EVP_CipherUpdate(c, out, &len, in, n) != 1)
    goto out;
  total = len;
  if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, (void *)(in + n)) != 1) {
    total = -1;
    goto out;
  }
  if (EVP_CipherFinal_ex(c, out + total, &len) != 1) {
    total = -1;
    goto out;
  }
  total += len;
  if (enc) {
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, out + total) != 1) {
      total = -1;
      goto out;
    }
    total += GCM_TAG_LEN;
  }
out:
  EVP_CIPHER_CTX_free(c);
  return total;
}

/* OpenSSL RFC 3394 / 5649 key wrap or unwrap. Returns the output length or -1. */
static int ossl_wrap(int enc, int pad, const unsigned char *key, size_t keylen,
                     const unsigned char *in, int inlen, unsigned char *out)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, total = -1;

  if (!c)
    return -1;
  EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex(c, wrap_cipher(keylen, pad), NULL, key, NULL, enc) == 1 &&
      EVP_CipherUpdate(c, out, &len, in, inlen) == 1) {
    total = len;
    if (EVP_CipherFinal_ex(c, out + total, &len) == 1)
      total += len;
    else
      total = -1;
  }
  EVP_CIPHER_CTX_free(c);
  return total;
}

static void test_gcm(struct t_p11 *p, CK_OBJECT_HANDLE k, const unsigned char *key, size_t keylen)
{
  static const unsigned char pt[] = "AES-GCM inside the Managed HSM, checked by OpenSSL";
  static const unsigned char aad[] = "associated data";
  unsigned char iv[GCM_IV_LEN], ct[256], out[256], oiv[GCM_IV_LEN];
  CK_GCM_PARAMS gp;
  CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
  CK_ULONG ctlen = sizeof(ct), outlen = sizeof(out);
  CK_RV rv;
  int n;

  memset(iv, 0, sizeof(iv)); /* the HSM replaces it */
  memset(&gp, 0, sizeof(gp));
  gp.pIv = iv;
  gp.ulIvLen = GCM_IV_LEN;
  gp.ulIvBits = GCM_IV_LEN * 8;
  gp.pAAD = (CK_BYTE_PTR)aad;
  gp.ulAADLen = sizeof(aad) - 1;
  gp.ulTagBits = GCM_TAG_LEN * 8;

  rv = p->f->C_EncryptInit(p->sess, &m, k);
  if (rv == CKR_OK)
    rv = p->f->C_Encrypt(p->sess, (CK_BYTE_PTR)pt, sizeof(pt) - 1, ct, &ctlen);
  t_check(rv == CKR_OK && ctlen == sizeof(pt) - 1 + GCM_TAG_LEN,
          "C_Encrypt AES-GCM: %s, %lu bytes (ciphertext || tag)", t_rv_name(rv),
          (unsigned long)ctlen);
  if (rv != CKR_OK)
    return;
  n = ossl_gcm(0, key, keylen, iv, aad, (int)sizeof(aad) - 1, ct, (int)ctlen, out);
  t_check(n == (int)sizeof(pt) - 1 && memcmp(out, pt, (size_t)n) == 0,
          "OpenSSL decrypts the HSM's GCM output with the IV written back into CK_GCM_PARAMS");

  /* The other way: OpenSSL encrypts with its own IV, the HSM decrypts. */
  for (size_t i = 0; i < sizeof(oiv); i++)
    oiv[i] = (unsigned char)(0xa0 + i);
  n = ossl_gcm(1, key, keylen, oiv, aad, (int)sizeof(aad) - 1, pt, (int)sizeof(pt) - 1, ct);
  memcpy(iv, oiv, sizeof(iv));
  rv = p->f->C_DecryptInit(p->sess, &m, k);
  if (rv == CKR_OK)
    rv = p->f->C_Decrypt(p->sess, ct, (CK_ULONG)n, out, &outlen);
  t_check(rv == CKR_OK && outlen == sizeof(pt) - 1 && memcmp(out, pt, outlen) == 0,
          "C_Decrypt AES-GCM of OpenSSL's ciphertext returns the plaintext: %s", t_rv_name(rv));

  ct[0] ^= 1;
  outlen = sizeof(out);
  rv = p->f->C_DecryptInit(p->sess, &m, k);
  if (rv == CKR_OK)
    rv = p->f->C_Decrypt(p->sess, ct, (CK_ULONG)n, out, &outlen);
  t_check(rv == CKR_ENCRYPTED_DATA_INVALID,
          "C_Decrypt AES-GCM of a modified ciphertext: CKR_ENCRYPTED_DATA_INVALID (%s)",
          t_rv_name(rv));
}

static CK_OBJECT_HANDLE session_aes(struct t_p11 *p, const unsigned char *value, CK_ULONG len,
                                    CK_RV *rv)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL f = CK_FALSE, t = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &f, sizeof(f)},       {CKA_SENSITIVE, &f, sizeof(f)},
      {CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_VALUE, (void *)value, len},
  };
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  *rv = p->f->C_CreateObject(p->sess, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
  return h;
}

static void test_wrap(struct t_p11 *p, CK_OBJECT_HANDLE k, const unsigned char *key, size_t keylen,
                      int pad)
{
  const char *name = pad ? "CKM_AES_KEY_WRAP_PAD" : "CKM_AES_KEY_WRAP";
  CK_MECHANISM m = {pad ? CKM_AES_KEY_WRAP_PAD : CKM_AES_KEY_WRAP, NULL, 0};
  unsigned char secret[32], wrapped[128], out[128], *val = NULL;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL f = CK_FALSE, t = CK_TRUE;
  CK_ATTRIBUTE utmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},  {CKA_TOKEN, &f, sizeof(f)},
      {CKA_SENSITIVE, &f, sizeof(f)}, {CKA_EXTRACTABLE, &t, sizeof(t)},
  };
  CK_OBJECT_HANDLE sk, uk = CK_INVALID_HANDLE;
  CK_ULONG wlen = sizeof(wrapped), vlen = 0;
  CK_RV rv;
  int n;

  for (size_t i = 0; i < sizeof(secret); i++)
    secret[i] = (unsigned char)(0x11 * (i + 1));
  sk = session_aes(p, secret, sizeof(secret), &rv);
  t_check(rv == CKR_OK, "%s: session AES key with known bytes (C_CreateObject): %s", name,
          t_rv_name(rv));
  if (rv != CKR_OK)
    return;
  rv = p->f->C_WrapKey(p->sess, &m, k, sk, wrapped, &wlen);
  t_check(rv == CKR_OK, "%s: C_WrapKey with the HSM key: %s", name, t_rv_name(rv));
  if (rv == CKR_OK) {
    n = ossl_wrap(0, pad, key, keylen, wrapped, (int)wlen, out);
    t_check(n == (int)sizeof(secret) && memcmp(out, secret, sizeof(secret)) == 0,
            "%s: OpenSSL unwraps the HSM's output to the session key's bytes", name);
  }
  n = ossl_wrap(1, pad, key, keylen, secret, (int)sizeof(secret), wrapped);
  rv = p->f->C_UnwrapKey(p->sess, &m, k, wrapped, (CK_ULONG)n, utmpl,
                         sizeof(utmpl) / sizeof(utmpl[0]), &uk);
  t_check(rv == CKR_OK, "%s: C_UnwrapKey of OpenSSL's wrapping: %s", name, t_rv_name(rv));
  if (rv == CKR_OK) {
    val = t_attr_new(p, uk, CKA_VALUE, &vlen);
    t_check(val && vlen == sizeof(secret) && memcmp(val, secret, vlen) == 0,
            "%s: the unwrapped key has the wrapped bytes", name);
    free(val);
  }
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  CK_OBJECT_HANDLE k;
  unsigned char *key;
  size_t keylen = 0;

  if (argc != 4) {
    fprintf(stderr, "usage: %s MODULE KEY_LABEL KEY_FILE\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  key = t_read_file_new(argv[3], &keylen);
  if (!key || (keylen != 16 && keylen != 24 && keylen != 32)) {
    fprintf(stderr, "%s: need 16, 24 or 32 key bytes\n", argv[3]);
    return 2;
  }
  t_p11_open(&p, argv[1]);
  k = t_find(&p, CKO_SECRET_KEY, argv[2]);
  t_check(k != CK_INVALID_HANDLE, "secret key '%s' found", argv[2]);
  if (k != CK_INVALID_HANDLE) {
    test_gcm(&p, k, key, keylen);
    test_wrap(&p, k, key, keylen, 0);
    test_wrap(&p, k, key, keylen, 1);
  }
  OPENSSL_cleanse(key, keylen);
  free(key);
  t_p11_close(&p);
  return t_finish("p11_aes_check");
}
