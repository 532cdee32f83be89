/* SPDX-License-Identifier: Apache-2.0 */
/* envelope - envelope encryption round trip: a session AES-256 data key encrypts data
 * locally with AES-GCM, a vault key wraps it, the session ends (and the data key with it); a new
 * session unwraps the key with the vault key and decrypts.
 *
 * usage: envelope MODULE rsa RSA_LABEL
 *        envelope MODULE aes AES_LABEL AES_KEY_FILE
 *   rsa: wrap with the vault RSA public key, CKM_RSA_PKCS_OAEP SHA-256 / MGF1-SHA-256;
 *   aes: wrap with a Managed HSM oct-HSM key, CKM_AES_KEY_WRAP_PAD and CKM_AES_KEY_WRAP;
 *        AES_KEY_FILE holds the raw bytes that key was imported with.
 * env: the module's config (AKV_PKCS11_CONFIG), the vault holding the key in the first slot.
 *
 * What is checked independently of the module (OpenSSL EVP with known bytes): the GCM ciphertext
 * decrypts under the data key's CKA_VALUE (the key is generated extractable and not sensitive for
 * that reason); with the HSM key, the wrapped blob unwraps under the imported key bytes to the
 * data key. An RSA vault private key never leaves the vault, so for RSA the wrapped blob is
 * checked through the vault itself (C_Decrypt with the private key gives the data key bytes),
 * which is the vault's RSA, not the module's unwrap path, but not independent of the module. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define DK_LEN 32
#define IV_LEN 12
#define TAG_LEN 16

static const unsigned char plain[] =
    "envelope encryption: the data key encrypts this locally; only the vault can unwrap the key";
#define PLAIN_LEN (sizeof(plain) - 1)

static CK_BBOOL ck_true = CK_TRUE, ck_false = CK_FALSE;
static CK_OBJECT_CLASS cls_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE kt_aes = CKK_AES;

/* The last step of an EVP decryption after `done` bytes: the total length, or -1 (a bad tag or
 * integrity check value). */
static int decrypt_final(EVP_CIPHER_CTX *c, unsigned char *out, int done)
{
  int len = 0;
  if (EVP_DecryptFinal_ex(c, out + done, &len) != 1)
    return -1;
  return done + len;
}

/* OpenSSL AES-256-GCM decrypt of ct||tag; the plaintext length or -1. */
static int ossl_gcm_decrypt(const unsigned char *key, const unsigned char *iv,
                            const unsigned char *in, int inlen, unsigned char *out)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, total = -1, n = inlen - TAG_LEN;

  if (!c || n < 0)
    goto out;
  if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) != 1 ||
      EVP_DecryptInit_ex(c, NULL, NULL, key, iv) != 1 ||
      EVP_DecryptUpdate(c, out, &len, in, n) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(in + n)) != 1)
    goto out;
  total = decrypt_final(c, out, len);
out:
  EVP_CIPHER_CTX_free(c);
  return total;
}

/* OpenSSL AES key unwrap (RFC 3394 or RFC 5649) of `in` under kek; the key length or -1. */
static int ossl_unwrap(int pad, const unsigned char *kek, size_t keklen, const unsigned char *in,
                       int inlen, unsigned char *out)
{
  const EVP_CIPHER *ciph;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, total = -1;

  if (keklen == 16)
    ciph = pad ? EVP_aes_128_wrap_pad() : EVP_aes_128_wrap();
  else if (keklen == 24)
    ciph = pad ? EVP_aes_192_wrap_pad() : EVP_aes_192_wrap();
  else
    ciph = pad ? EVP_aes_256_wrap_pad() : EVP_aes_256_wrap();
  if (!c)
    goto out;
  EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_DecryptInit_ex(c, ciph, NULL, kek, NULL) != 1 ||
      EVP_DecryptUpdate(c, out, &len, in, inlen) != 1)
    goto out;
  total = decrypt_final(c, out, len);
out:
  EVP_CIPHER_CTX_free(c);
  return total;
}

static CK_OBJECT_HANDLE open_find(struct t_p11 *p, const char *module, CK_OBJECT_CLASS cls,
                                  const char *label)
{
  CK_OBJECT_HANDLE h;
  CK_RV rv =
      p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->sess);
  (void)module;
  if (rv != CKR_OK) {
    t_check(0, "C_OpenSession: %s", t_rv_name(rv));
    return CK_INVALID_HANDLE;
  }
  h = t_find(p, cls, label);
  t_check(h != CK_INVALID_HANDLE, "the vault key %s is found", label);
  return h;
}

struct envelope {
  unsigned char dk[DK_LEN]; /* data key bytes as the module reported them */
  unsigned char iv[IV_LEN];
  unsigned char ct[PLAIN_LEN + TAG_LEN]; /* ciphertext || tag */
  unsigned char wrapped[1024];
  CK_ULONG ctlen, wlen;
  CK_OBJECT_HANDLE dk_handle; /* in the first session, must be gone later */
};

/* Session 1: data key, local AES-GCM, wrap. 0 on success. */
static int seal(struct t_p11 *p, CK_MECHANISM *wrap_mech, CK_OBJECT_HANDLE wrapping,
                struct envelope *e)
{
  CK_ULONG vlen = DK_LEN;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls_secret, sizeof(cls_secret)}, {CKA_KEY_TYPE, &kt_aes, sizeof(kt_aes)},
      {CKA_VALUE_LEN, &vlen, sizeof(vlen)},         {CKA_TOKEN, &ck_false, sizeof(ck_false)},
      {CKA_ENCRYPT, &ck_true, sizeof(ck_true)},     {CKA_DECRYPT, &ck_true, sizeof(ck_true)},
      {CKA_EXTRACTABLE, &ck_true, sizeof(ck_true)}, {CKA_SENSITIVE, &ck_false, sizeof(ck_false)},
  };
  CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_GCM_PARAMS gp;
  CK_MECHANISM gcm = {CKM_AES_GCM, &gp, sizeof(gp)};
  unsigned char *val = NULL, check[PLAIN_LEN + 16];
  CK_ULONG len = 0;
  CK_RV rv;
  int n, rc = -1;

  rv = p->f->C_GenerateKey(p->sess, &gen, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &e->dk_handle);
  t_check(rv == CKR_OK, "C_GenerateKey CKM_AES_KEY_GEN, session AES-256, extractable: %s",
          t_rv_name(rv));
  if (rv != CKR_OK)
    goto out;
  val = t_attr_new(p, e->dk_handle, CKA_VALUE, &len);
  t_check(val && len == DK_LEN, "the data key's CKA_VALUE is readable, %lu bytes",
          (unsigned long)len);
  if (!val || len != DK_LEN)
    goto out;
  memcpy(e->dk, val, DK_LEN);

  if (RAND_bytes(e->iv, IV_LEN) != 1)
    goto out;
  memset(&gp, 0, sizeof(gp));
  gp.pIv = e->iv;
  gp.ulIvLen = IV_LEN;
  gp.ulIvBits = IV_LEN * 8;
  gp.ulTagBits = TAG_LEN * 8;
  rv = p->f->C_EncryptInit(p->sess, &gcm, e->dk_handle);
  e->ctlen = sizeof(e->ct);
  if (rv == CKR_OK)
    rv = p->f->C_Encrypt(p->sess, (CK_BYTE_PTR)plain, PLAIN_LEN, e->ct, &e->ctlen);
  t_check(rv == CKR_OK && e->ctlen == PLAIN_LEN + TAG_LEN,
          "C_Encrypt AES-GCM with the data key: %s, %lu bytes", t_rv_name(rv),
          (unsigned long)e->ctlen);
  if (rv != CKR_OK || e->ctlen != PLAIN_LEN + TAG_LEN)
    goto out;
  n = ossl_gcm_decrypt(e->dk, e->iv, e->ct, (int)e->ctlen, check);
  t_check(n == (int)PLAIN_LEN && memcmp(check, plain, PLAIN_LEN) == 0,
          "OpenSSL decrypts the GCM ciphertext with the data key's bytes (independent)");

  rv = p->f->C_WrapKey(p->sess, wrap_mech, wrapping, e->dk_handle, NULL, &e->wlen);
  t_check(rv == CKR_OK && e->wlen > 0 && e->wlen <= sizeof(e->wrapped),
          "C_WrapKey length query: %s, %lu bytes", t_rv_name(rv), (unsigned long)e->wlen);
  if (rv != CKR_OK || e->wlen > sizeof(e->wrapped))
    goto out;
  e->wlen = sizeof(e->wrapped);
  rv = p->f->C_WrapKey(p->sess, wrap_mech, wrapping, e->dk_handle, e->wrapped, &e->wlen);
  t_check(rv == CKR_OK, "C_WrapKey of the data key with the vault key: %s, %lu bytes",
          t_rv_name(rv), (unsigned long)e->wlen);
  if (rv == CKR_OK)
    rc = 0;
out:
  if (val)
    OPENSSL_cleanse(val, len);
  free(val);
  return rc;
}

/* Session 2: unwrap, decrypt, compare; a tampered ciphertext is refused. */
static void open_envelope(struct t_p11 *p, CK_MECHANISM *wrap_mech, CK_OBJECT_HANDLE unwrapping,
                          const struct envelope *e)
{
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls_secret, sizeof(cls_secret)}, {CKA_KEY_TYPE, &kt_aes, sizeof(kt_aes)},
      {CKA_TOKEN, &ck_false, sizeof(ck_false)},     {CKA_DECRYPT, &ck_true, sizeof(ck_true)},
      {CKA_EXTRACTABLE, &ck_true, sizeof(ck_true)}, {CKA_SENSITIVE, &ck_false, sizeof(ck_false)},
  };
  CK_GCM_PARAMS gp;
  CK_MECHANISM gcm = {CKM_AES_GCM, &gp, sizeof(gp)};
  CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
  unsigned char *val = NULL, iv[IV_LEN], out[PLAIN_LEN + 64], bad[PLAIN_LEN + TAG_LEN];
  CK_ULONG len = 0, outlen, bits = 0;
  CK_ATTRIBUTE probe = {CKA_VALUE_LEN, &bits, sizeof(bits)};
  CK_RV rv;

  rv = p->f->C_GetAttributeValue(p->sess, e->dk_handle, &probe, 1);
  t_check(rv == CKR_OBJECT_HANDLE_INVALID,
          "the first session's data key is gone after C_CloseSession: %s", t_rv_name(rv));

  rv = p->f->C_UnwrapKey(p->sess, wrap_mech, unwrapping, (CK_BYTE_PTR)e->wrapped, e->wlen, tmpl,
                         sizeof(tmpl) / sizeof(tmpl[0]), &k);
  t_check(rv == CKR_OK, "C_UnwrapKey in a new session -> session AES key: %s", t_rv_name(rv));
  if (rv != CKR_OK)
    return;
  val = t_attr_new(p, k, CKA_VALUE, &len);
  t_check(val && len == DK_LEN && memcmp(val, e->dk, DK_LEN) == 0,
          "the unwrapped key's CKA_VALUE equals the data key (%lu bytes)", (unsigned long)len);
  {
    CK_BBOOL tok = CK_TRUE;
    CK_ATTRIBUTE a = {CKA_TOKEN, &tok, sizeof(tok)};
    rv = p->f->C_GetAttributeValue(p->sess, k, &a, 1);
    t_check(rv == CKR_OK && tok == CK_FALSE,
            "the unwrapped key is a session object (CKA_TOKEN false): %s", t_rv_name(rv));
  }

  memcpy(iv, e->iv, IV_LEN);
  memset(&gp, 0, sizeof(gp));
  gp.pIv = iv;
  gp.ulIvLen = IV_LEN;
  gp.ulIvBits = IV_LEN * 8;
  gp.ulTagBits = TAG_LEN * 8;
  rv = p->f->C_DecryptInit(p->sess, &gcm, k);
  outlen = sizeof(out);
  if (rv == CKR_OK)
    rv = p->f->C_Decrypt(p->sess, (CK_BYTE_PTR)e->ct, e->ctlen, out, &outlen);
  t_check(rv == CKR_OK && outlen == PLAIN_LEN && memcmp(out, plain, PLAIN_LEN) == 0,
          "C_Decrypt AES-GCM with the unwrapped key gives the plaintext: %s, %lu bytes",
          t_rv_name(rv), (unsigned long)outlen);

  memcpy(bad, e->ct, e->ctlen);
  bad[3] ^= 0x01;
  rv = p->f->C_DecryptInit(p->sess, &gcm, k);
  outlen = sizeof(out);
  if (rv == CKR_OK)
    rv = p->f->C_Decrypt(p->sess, bad, e->ctlen, out, &outlen);
  t_check(rv == CKR_ENCRYPTED_DATA_INVALID,
          "a tampered GCM ciphertext is refused: %s (expect CKR_ENCRYPTED_DATA_INVALID)",
          t_rv_name(rv));

  rv = p->f->C_DestroyObject(p->sess, k);
  t_check(rv == CKR_OK, "C_DestroyObject of the unwrapped key: %s", t_rv_name(rv));
  if (val)
    OPENSSL_cleanse(val, len);
  free(val);
}

static void round_trip(struct t_p11 *p, const char *module, const char *label,
                       CK_MECHANISM *wrap_mech, const char *mech_name, const unsigned char *kek,
                       size_t keklen, int pad)
{
  struct envelope e;
  CK_OBJECT_HANDLE wrapping, unwrapping;
  CK_OBJECT_CLASS wrap_cls = kek ? CKO_SECRET_KEY : CKO_PUBLIC_KEY;
  CK_OBJECT_CLASS unwrap_cls = kek ? CKO_SECRET_KEY : CKO_PRIVATE_KEY;
  unsigned char out[1024];
  int n;

  t_note("envelope with %s (%s)", label, mech_name);
  memset(&e, 0, sizeof(e));
  wrapping = open_find(p, module, wrap_cls, label);
  if (wrapping == CK_INVALID_HANDLE)
    return;
  if (seal(p, wrap_mech, wrapping, &e) == 0) {
    if (kek) {
      n = ossl_unwrap(pad, kek, keklen, e.wrapped, (int)e.wlen, out);
      t_check(n == DK_LEN && memcmp(out, e.dk, DK_LEN) == 0,
              "OpenSSL unwraps the blob with the HSM key's imported bytes to the data key "
              "(independent)");
    } else {
      /* The vault's RSA decrypt of the blob must give the data key's bytes. */
      CK_OBJECT_HANDLE priv = t_find(p, CKO_PRIVATE_KEY, label);
      CK_ULONG outlen = sizeof(out);
      CK_RV rv = p->f->C_DecryptInit(p->sess, wrap_mech, priv);
      if (rv == CKR_OK)
        rv = p->f->C_Decrypt(p->sess, e.wrapped, e.wlen, out, &outlen);
      t_check(rv == CKR_OK && outlen == DK_LEN && memcmp(out, e.dk, DK_LEN) == 0,
              "the vault's RSA-OAEP decrypt of the blob gives the data key (through the module, "
              "vault-side)");
      OPENSSL_cleanse(out, sizeof(out));
    }
  }
  p->f->C_CloseSession(p->sess);
  if (e.wlen == 0) {
    t_check(0, "%s: nothing wrapped, the second session is skipped", mech_name);
    return;
  }
  unwrapping = open_find(p, module, unwrap_cls, label);
  if (unwrapping != CK_INVALID_HANDLE)
    open_envelope(p, wrap_mech, unwrapping, &e);
  p->f->C_CloseSession(p->sess);
  OPENSSL_cleanse(&e, sizeof(e));
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  unsigned char *kek = NULL;
  size_t keklen = 0;

  if (argc < 4 || (strcmp(argv[2], "rsa") != 0 && strcmp(argv[2], "aes") != 0) ||
      (strcmp(argv[2], "aes") == 0 && argc != 5)) {
    fprintf(stderr, "usage: %s MODULE rsa RSA_LABEL | MODULE aes AES_LABEL AES_KEY_FILE\n",
            argv[0]);
    return 2;
  }
  if (argc == 5) {
    kek = t_read_file_new(argv[4], &keklen);
    if (!kek || (keklen != 16 && keklen != 24 && keklen != 32)) {
      fprintf(stderr, "FATAL: %s must hold 16, 24 or 32 key bytes\n", argv[4]);
      return 1;
    }
  }
  t_p11_open(&p, argv[1]);
  /* Every session here is opened by round_trip: the one t_p11_open made is not needed. */
  p.f->C_CloseSession(p.sess);
  if (!kek) {
    CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
    round_trip(&p, argv[1], argv[3], &m, "CKM_RSA_PKCS_OAEP SHA-256", NULL, 0, 0);
  } else {
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0}, kw = {CKM_AES_KEY_WRAP, NULL, 0};
    round_trip(&p, argv[1], argv[3], &kwp, "CKM_AES_KEY_WRAP_PAD", kek, keklen, 1);
    round_trip(&p, argv[1], argv[3], &kw, "CKM_AES_KEY_WRAP", kek, keklen, 0);
    OPENSSL_cleanse(kek, keklen);
  }
  free(kek);
  /* t_p11_close closes p.sess again (already closed: harmless) and finalizes. */
  t_p11_close(&p);
  return t_finish("envelope");
}
