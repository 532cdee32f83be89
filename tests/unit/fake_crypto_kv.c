/* SPDX-License-Identifier: Apache-2.0 */
/* A fake Key Vault crypto backend for the crypto unit tests (#included by test_op_*.c): kv_sign,
 * kv_verify, kv_cipher and kv_random computed with real OpenSSL on keys the test registers, with
 * call counters and the last algorithm/version seen, plus builders for key objects. The kv_*
 * definitions are weak so that a test binary never clashes with the real backend; the real
 * backend's crypto file is only pulled in when nothing here defines its symbols. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "core/akv.h"
#include "token/op.h"

#define FK_WEAK __attribute__((weak))
/* Each test uses some of the fixtures. */
#define FK_UNUSED __attribute__((unused))

struct fk_key {
  char name[64];
  EVP_PKEY *priv; /* RSA/EC */
  enum kv_crv crv;
  unsigned char sym[32]; /* oct-HSM */
  size_t sym_len;
};

static struct fk_key fk_keys[32];
FK_UNUSED static size_t fk_n;
FK_UNUSED static unsigned fk_sign_calls, fk_verify_calls, fk_cipher_calls, fk_random_calls;
static char fk_last_alg[32], fk_last_version[64];
FK_UNUSED static size_t fk_last_len;
static kv_rc fk_force_rc;
/* The HTTP status a forced failure reports (kv.h's trailing http_status); 200 otherwise. */
FK_UNUSED static long fk_force_status;
/* When set, RSA signatures come back without leading zero bytes (fk_trimmed counts them). */
FK_UNUSED static int fk_trim_rsa_sig, fk_trimmed;
FK_UNUSED static int fk_next_handle = 100;

FK_UNUSED static struct fk_key *fk_find(const char *name)
{
  for (size_t i = 0; i < fk_n; i++)
    if (strcmp(fk_keys[i].name, name) == 0)
      return &fk_keys[i];
  return NULL;
}

FK_UNUSED static void fk_record(unsigned *counter, const char *alg, const char *version, size_t len)
{
  (*counter)++;
  snprintf(fk_last_alg, sizeof(fk_last_alg), "%s", alg ? alg : "");
  snprintf(fk_last_version, sizeof(fk_last_version), "%s", version ? version : "");
  fk_last_len = len;
}

FK_UNUSED static void fk_status(long *http_status)
{
  if (http_status)
    *http_status = fk_force_rc ? fk_force_status : 200;
}

FK_UNUSED static void fk_reset_counters(void)
{
  fk_sign_calls = fk_verify_calls = fk_cipher_calls = fk_random_calls = 0;
  fk_last_alg[0] = fk_last_version[0] = '\0';
  fk_force_rc = KV_OK;
  fk_force_status = 0;
  fk_trim_rsa_sig = fk_trimmed = 0;
}

FK_UNUSED static const EVP_MD *fk_md_for(const char *alg)
{
  if (strstr(alg, "256"))
    return EVP_sha256();
  if (strstr(alg, "384"))
    return EVP_sha384();
  if (strstr(alg, "512"))
    return EVP_sha512();
  return NULL;
}

FK_UNUSED static int fk_bytes_set(struct kv_bytes *b, const unsigned char *p, size_t n)
{
  b->data = malloc(n ? n : 1);
  if (!b->data)
    return 0;
  if (n)
    memcpy(b->data, p, n);
  b->len = n;
  return 1;
}

FK_WEAK void kv_bytes_free(struct kv_bytes *b)
{
  if (!b || !b->data)
    return;
  OPENSSL_cleanse(b->data, b->len);
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

FK_WEAK void kv_crypt_result_free(struct kv_crypt_result *r)
{
  if (!r)
    return;
  kv_bytes_free(&r->value);
  kv_bytes_free(&r->iv);
  kv_bytes_free(&r->tag);
}

FK_UNUSED static const char *fk_es_for(enum kv_crv crv)
{
  switch (crv) {
  case KV_CRV_P256:
    return "ES256";
  case KV_CRV_P384:
    return "ES384";
  case KV_CRV_P521:
    return "ES512";
  case KV_CRV_P256K:
    return "ES256K";
  default:
    return "";
  }
}

FK_WEAK kv_rc kv_sign(struct kv_client *cl, const char *name, const char *version, const char *alg,
                      const unsigned char *digest, size_t digest_len, struct kv_bytes *sig,
                      long *http_status)
{
  struct fk_key *k = fk_find(name);
  EVP_PKEY_CTX *ctx = NULL;
  unsigned char buf[1024];
  size_t n = sizeof(buf);
  kv_rc rc = KV_E_BAD_REQUEST;
  (void)cl;
  fk_record(&fk_sign_calls, alg, version, digest_len);
  fk_status(http_status);
  if (fk_force_rc)
    return fk_force_rc;
  if (!k)
    return KV_E_NOT_FOUND;
  if (alg[0] == 'H') {
    const EVP_MD *md = fk_md_for(alg);
    unsigned int mlen = 0;
    if (!md || !k->sym_len || !HMAC(md, k->sym, (int)k->sym_len, digest, digest_len, buf, &mlen))
      return KV_E_BAD_REQUEST;
    return fk_bytes_set(sig, buf, mlen) ? KV_OK : KV_E_NOMEM;
  }
  if (!k->priv)
    return KV_E_BAD_REQUEST;
  ctx = EVP_PKEY_CTX_new(k->priv, NULL);
  if (!ctx || EVP_PKEY_sign_init(ctx) <= 0)
    goto out;
  if (strcmp(alg, "RSNULL") == 0) {
    /* PKCS#1 v1.5 over the caller's bytes, at most k-11 of them. */
    if (digest_len == 0 || digest_len > (size_t)EVP_PKEY_get_size(k->priv) - 11)
      goto out;
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
    if (EVP_PKEY_sign(ctx, buf, &n, digest, digest_len) <= 0)
      goto out;
    rc = fk_bytes_set(sig, buf, n) ? KV_OK : KV_E_NOMEM;
  } else if (alg[0] == 'R' || alg[0] == 'P') {
    const EVP_MD *md = fk_md_for(alg);
    if (!md || (size_t)EVP_MD_get_size(md) != digest_len)
      goto out;
    EVP_PKEY_CTX_set_rsa_padding(ctx, alg[0] == 'P' ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING);
    EVP_PKEY_CTX_set_signature_md(ctx, md);
    if (alg[0] == 'P') {
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)digest_len);
    }
    if (EVP_PKEY_sign(ctx, buf, &n, digest, digest_len) <= 0)
      goto out;
    {
      size_t skip = 0;
      while (fk_trim_rsa_sig && skip < n && buf[skip] == 0)
        skip++;
      fk_trimmed += skip > 0;
      rc = fk_bytes_set(sig, buf + skip, n - skip) ? KV_OK : KV_E_NOMEM;
    }
  } else if (alg[0] == 'E') {
    size_t field = akv_mech_ec_field_len(k->crv);
    const unsigned char *p = buf;
    ECDSA_SIG *es;
    unsigned char rs[132];
    if (strcmp(alg, fk_es_for(k->crv)) != 0 || digest_len != akv_mech_ec_digest_len(k->crv))
      goto out;
    if (EVP_PKEY_sign(ctx, buf, &n, digest, digest_len) <= 0)
      goto out;
    es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    if (!es)
      goto out;
    BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, (int)field);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + field, (int)field);
    ECDSA_SIG_free(es);
    rc = fk_bytes_set(sig, rs, 2 * field) ? KV_OK : KV_E_NOMEM;
  }
out:
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

FK_WEAK kv_rc kv_verify(struct kv_client *cl, const char *name, const char *version,
                        const char *alg, const unsigned char *digest, size_t digest_len,
                        const unsigned char *sig, size_t sig_len, int *valid, long *http_status)
{
  struct fk_key *k = fk_find(name);
  EVP_PKEY_CTX *ctx = NULL;
  unsigned char *der = NULL;
  size_t der_len = 0;
  kv_rc rc = KV_E_BAD_REQUEST;
  (void)cl;
  fk_record(&fk_verify_calls, alg, version, digest_len);
  fk_status(http_status);
  if (fk_force_rc)
    return fk_force_rc;
  if (!k)
    return KV_E_NOT_FOUND;
  if (alg[0] == 'H') {
    unsigned char mac[64];
    unsigned int mlen = 0;
    HMAC(fk_md_for(alg), k->sym, (int)k->sym_len, digest, digest_len, mac, &mlen);
    *valid = mlen == sig_len && memcmp(mac, sig, sig_len) == 0;
    return KV_OK;
  }
  ctx = EVP_PKEY_CTX_new(k->priv, NULL);
  if (!ctx || EVP_PKEY_verify_init(ctx) <= 0)
    goto out;
  if (strcmp(alg, "RSNULL") == 0) {
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
    *valid = EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;
  } else if (alg[0] == 'R' || alg[0] == 'P') {
    const EVP_MD *md = fk_md_for(alg);
    EVP_PKEY_CTX_set_rsa_padding(ctx, alg[0] == 'P' ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING);
    EVP_PKEY_CTX_set_signature_md(ctx, md);
    if (alg[0] == 'P') {
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)digest_len);
    }
    *valid = EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;
  } else {
    if (akv_ecdsa_rs_to_der(sig, sig_len, &der, &der_len) != CKR_OK)
      goto out;
    *valid = EVP_PKEY_verify(ctx, der, der_len, digest, digest_len) == 1;
  }
  rc = KV_OK;
out:
  OPENSSL_free(der);
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

static kv_rc fk_rsa_cipher(struct fk_key *k, enum kv_cipher_op op, const char *alg,
                           const unsigned char *in, size_t len, struct kv_crypt_result *out)
{
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->priv, NULL);
  unsigned char buf[1024];
  size_t n = sizeof(buf);
  int enc = op == KV_ENCRYPT || op == KV_WRAP;
  kv_rc rc = KV_E_BAD_REQUEST;
  if (!ctx || (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) <= 0)
    goto out;
  if (strcmp(alg, "RSA1_5") == 0) {
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
  } else {
    const EVP_MD *md = strcmp(alg, "RSA-OAEP-256") == 0 ? EVP_sha256() : EVP_sha1();
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING);
    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md);
    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md);
  }
  if ((enc ? EVP_PKEY_encrypt(ctx, buf, &n, in, len) : EVP_PKEY_decrypt(ctx, buf, &n, in, len)) <=
      0)
    goto out;
  {
    size_t skip = 0;
    while (enc && fk_trim_rsa_sig && skip < n && buf[skip] == 0)
      skip++;
    fk_trimmed += skip > 0;
    rc = fk_bytes_set(&out->value, buf + skip, n - skip) ? KV_OK : KV_E_NOMEM;
  }
out:
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

static kv_rc fk_aes_cipher(struct fk_key *k, enum kv_cipher_op op, const char *alg,
                           const unsigned char *in, size_t len, const struct kv_aes_params *aes,
                           struct kv_crypt_result *out)
{
  char name[32];
  const char *mode;
  int enc = op == KV_ENCRYPT || op == KV_WRAP, n = 0, fin = 0, bits = 0, pad = 0;
  unsigned char *buf = malloc(len + 64), iv[16];
  size_t in_len = len;
  unsigned char *zero_padded = NULL;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  kv_rc rc = KV_E_BAD_REQUEST;

  if (strncmp(alg, "CKM_AES_KEY_WRAP", 16) == 0) {
    bits = (int)k->sym_len * 8;
    mode = strcmp(alg, "CKM_AES_KEY_WRAP_PAD") == 0 ? "WRAP-PAD" : "WRAP";
  } else if (sscanf(alg, "A%dGCM", &bits) == 1 && strstr(alg, "GCM")) {
    mode = "GCM";
  } else if (sscanf(alg, "A%dCBC", &bits) == 1) {
    mode = "CBC";
    pad = strstr(alg, "CBCPAD") != NULL;
  } else {
    goto out;
  }
  if ((size_t)bits != k->sym_len * 8)
    goto out; /* the service refuses an algorithm of another key size */
  snprintf(name, sizeof(name), "AES-%d-%s", bits, mode);
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (strcmp(mode, "GCM") == 0) {
    if (enc)
      RAND_bytes(iv, 12); /* the HSM picks the IV */
    else if (!aes || aes->iv_len != 12 || aes->tag_len != 16)
      goto out;
    else
      memcpy(iv, aes->iv, 12);
    if (!EVP_CipherInit_ex(ctx, EVP_get_cipherbyname(name), NULL, k->sym, iv, enc))
      goto out;
    if (aes && aes->aad_len && !EVP_CipherUpdate(ctx, NULL, &n, aes->aad, (int)aes->aad_len))
      goto out;
    if (!enc)
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)aes->tag);
  } else if (strcmp(mode, "CBC") == 0) {
    if (!aes || aes->iv_len != 16)
      goto out;
    if (!EVP_CipherInit_ex(ctx, EVP_get_cipherbyname(name), NULL, k->sym, aes->iv, enc))
      goto out;
    EVP_CIPHER_CTX_set_padding(ctx, pad);
    if (!pad && enc && len % 16) {
      /* Key Vault zero-pads A*CBC plaintext. */
      in_len = (len / 16 + 1) * 16;
      zero_padded = calloc(1, in_len);
      memcpy(zero_padded, in, len);
      in = zero_padded;
    }
  } else {
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    int ok = c && EVP_CipherInit_ex2(ctx, c, k->sym, NULL, enc, NULL);
    EVP_CIPHER_free(c);
    if (!ok)
      goto out;
  }
  if (!EVP_CipherUpdate(ctx, buf, &n, in, (int)in_len) || !EVP_CipherFinal_ex(ctx, buf + n, &fin))
    goto out;
  n += fin;
  if (!fk_bytes_set(&out->value, buf, (size_t)n))
    goto out;
  if (strcmp(mode, "GCM") == 0 && enc) {
    unsigned char tag[16];
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
    fk_bytes_set(&out->iv, iv, 12);
    fk_bytes_set(&out->tag, tag, 16);
  } else if (strcmp(mode, "CBC") == 0 && enc) {
    fk_bytes_set(&out->iv, aes->iv, 16);
  }
  rc = KV_OK;
out:
  free(zero_padded);
  free(buf);
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

FK_WEAK kv_rc kv_cipher(struct kv_client *cl, enum kv_cipher_op op, const char *name,
                        const char *version, const char *alg, const unsigned char *in,
                        size_t in_len, const struct kv_aes_params *aes, struct kv_crypt_result *out,
                        long *http_status)
{
  struct fk_key *k = fk_find(name);
  (void)cl;
  fk_record(&fk_cipher_calls, alg, version, in_len);
  fk_status(http_status);
  memset(out, 0, sizeof(*out));
  if (fk_force_rc)
    return fk_force_rc;
  if (!k)
    return KV_E_NOT_FOUND;
  if (k->priv)
    return fk_rsa_cipher(k, op, alg, in, in_len, out);
  return fk_aes_cipher(k, op, alg, in, in_len, aes, out);
}

FK_WEAK kv_rc kv_random(struct kv_client *cl, unsigned char *out, size_t count, long *http_status)
{
  (void)cl;
  fk_record(&fk_random_calls, "rng", "", count);
  fk_status(http_status);
  if (fk_force_rc)
    return fk_force_rc;
  memset(out, 0xA5, count); /* recognisable: proves the HSM path was taken */
  return KV_OK;
}

/* ---- test fixtures: a slot, a session and key objects ---------------------------------------- */

static struct akv_slot_config fk_slot_cfg;
static struct akv_slot fk_slot;

FK_UNUSED static void fk_session_init(struct akv_session *s, enum akv_vault_kind kind)
{
  memset(s, 0, sizeof(*s));
  memset(&fk_slot_cfg, 0, sizeof(fk_slot_cfg));
  memset(&fk_slot, 0, sizeof(fk_slot));
  fk_slot_cfg.kind = kind;
  fk_slot.cfg = &fk_slot_cfg;
  fk_slot.client = (struct kv_client *)&fk_slot; /* never dereferenced by the fake */
  s->refs = 1;
  s->handle = 1;
  s->slot = &fk_slot;
  pthread_mutex_init(&s->lock, NULL);
}

FK_UNUSED static void fk_session_done(struct akv_session *s)
{
  for (int k = 0; k < AKV_OP_COUNT; k++) {
    akv_op_free(s->ops[k]);
    s->ops[k] = NULL;
  }
  for (size_t i = 0; i < s->n_objects; i++)
    akv_object_unref(s->objects[i]);
  free(s->objects);
  s->objects = NULL;
  s->n_objects = 0;
  pthread_mutex_destroy(&s->lock);
}

FK_UNUSED static struct akv_object *fk_obj_new(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
  struct akv_object *obj = calloc(1, sizeof(*obj));
  obj->refs = 1;
  obj->handle = (CK_OBJECT_HANDLE)fk_next_handle++;
  obj->cls = cls;
  obj->key_type = kt;
  obj->slot = &fk_slot;
  obj->can_sign = obj->can_decrypt = obj->can_unwrap = cls != CKO_PUBLIC_KEY;
  obj->can_verify = obj->can_encrypt = obj->can_wrap = cls != CKO_PRIVATE_KEY;
  return obj;
}

/* The model's objects do not own key and pkey (its shared key entries do), so the fixtures keep
 * them here and fk_keys_free releases them after the objects are gone. */
static struct kv_key *fk_owned_keys[256];
static EVP_PKEY *fk_owned_pkeys[256];
static size_t fk_n_owned_keys, fk_n_owned_pkeys;

FK_UNUSED static EVP_PKEY *fk_own_pkey(EVP_PKEY *p)
{
  EVP_PKEY_up_ref(p);
  fk_owned_pkeys[fk_n_owned_pkeys++] = p;
  return p;
}

FK_UNUSED static struct kv_key *fk_kv_key(const char *name, enum kv_kty kty, enum kv_crv crv)
{
  struct kv_key *k = calloc(1, sizeof(*k));
  fk_owned_keys[fk_n_owned_keys++] = k;
  char kid[256];
  snprintf(kid, sizeof(kid), "https://fake.vault.azure.net/keys/%s/v1", name);
  k->kid = strdup(kid);
  k->name = strdup(name);
  k->version = strdup("v1");
  k->kty = kty;
  k->crv = crv;
  k->key_ops = 0xff;
  return k;
}

FK_UNUSED static struct fk_key *fk_register(const char *name)
{
  struct fk_key *k = fk_find(name);
  if (!k) {
    k = &fk_keys[fk_n++];
    memset(k, 0, sizeof(*k));
    snprintf(k->name, sizeof(k->name), "%s", name);
  }
  return k;
}

/* Vault RSA key (one key pair per name, generated once). */
FK_UNUSED static struct akv_object *fk_rsa(const char *name, CK_OBJECT_CLASS cls, unsigned bits)
{
  struct fk_key *k = fk_register(name);
  struct akv_object *obj = fk_obj_new(cls, CKK_RSA);
  if (!k->priv)
    k->priv = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
  obj->key = fk_kv_key(name, KV_KTY_RSA, KV_CRV_NONE);
  obj->pkey = fk_own_pkey(k->priv);
  obj->modulus_bits = bits;
  return obj;
}

FK_UNUSED static struct akv_object *fk_ec(const char *name, CK_OBJECT_CLASS cls, enum kv_crv crv)
{
  static const char *const groups[] = {"", "P-256", "P-384", "P-521", "secp256k1"};
  struct fk_key *k = fk_register(name);
  struct akv_object *obj = fk_obj_new(cls, CKK_EC);
  if (!k->priv)
    k->priv = EVP_PKEY_Q_keygen(NULL, NULL, "EC", groups[crv]);
  k->crv = crv;
  obj->key = fk_kv_key(name, KV_KTY_EC, crv);
  obj->pkey = fk_own_pkey(k->priv);
  return obj;
}

/* Managed HSM oct-HSM key: no public part, size unknown to the module unless a test says so. */
FK_UNUSED static struct akv_object *fk_oct(const char *name, size_t bytes)
{
  struct fk_key *k = fk_register(name);
  struct akv_object *obj = fk_obj_new(CKO_SECRET_KEY, CKK_AES);
  if (!k->sym_len) {
    RAND_bytes(k->sym, (int)bytes);
    k->sym_len = bytes;
  }
  obj->key = fk_kv_key(name, KV_KTY_OCT, KV_CRV_NONE);
  obj->key->hsm = 1;
  obj->can_sign = obj->can_verify = CK_TRUE;
  return obj;
}

/* Session secret key with a known value. */
FK_UNUSED static struct akv_object *fk_secret(CK_KEY_TYPE kt, const unsigned char *value,
                                              size_t len)
{
  struct akv_object *obj = fk_obj_new(CKO_SECRET_KEY, kt);
  obj->session = 1;
  obj->secret = malloc(len);
  memcpy(obj->secret, value, len);
  obj->secret_len = len;
  obj->can_sign = obj->can_verify = CK_TRUE;
  return obj;
}

FK_UNUSED static void fk_keys_free(void)
{
  for (size_t i = 0; i < fk_n; i++)
    EVP_PKEY_free(fk_keys[i].priv);
  fk_n = 0;
  for (size_t i = 0; i < fk_n_owned_keys; i++)
    kv_key_free(fk_owned_keys[i]);
  for (size_t i = 0; i < fk_n_owned_pkeys; i++)
    EVP_PKEY_free(fk_owned_pkeys[i]);
  fk_n_owned_keys = fk_n_owned_pkeys = 0;
}
