/* SPDX-License-Identifier: Apache-2.0 */
/*
 * keycrypto.c - the cryptographic operations of Key Vault keys with OpenSSL:
 * sign/verify (RS*, PS*, RSNULL, ES*, HS*), encrypt/decrypt/wrap/unwrap (RSA1_5,
 * RSA-OAEP, RSA-OAEP-256, AES GCM/CBC/CBCPAD/KW, CKM_AES_KEY_WRAP(_PAD)).
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#define MAX_AES_INPUT (256 * 1024)

static bool is_rsa(const struct key_material *km)
{
  return strncmp(km->kty, "RSA", 3) == 0;
}

static bool is_ec(const struct key_material *km)
{
  return strncmp(km->kty, "EC", 2) == 0;
}

static bool is_oct(const struct key_material *km)
{
  return strncmp(km->kty, "oct", 3) == 0;
}

/* Decode a required or optional base64url member. 1 = present, 0 = absent, -1 = invalid. */
static int b64_member(const cJSON *body, const char *name, unsigned char **out, size_t *len)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
  *out = NULL;
  *len = 0;
  if (!v || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsString(v) || emu_b64url_decode(v->valuestring, out, len) != 0)
    return -1;
  return 1;
}

static int add_b64(cJSON *o, const char *name, const unsigned char *p, size_t n)
{
  char *t = emu_b64url_encode(p, n);
  int rc = (t && cJSON_AddStringToObject(o, name, t)) ? 0 : -1;
  free(t);
  return rc;
}

static const EVP_MD *alg_md(const char *alg)
{
  const char *n = alg + strlen(alg) - 3;
  if (strlen(alg) < 5)
    return NULL;
  if (strcmp(n, "256") == 0 || strcmp(alg, "ES256K") == 0)
    return EVP_sha256();
  if (strcmp(n, "384") == 0)
    return EVP_sha384();
  if (strcmp(n, "512") == 0)
    return EVP_sha512();
  return NULL;
}

static size_t ec_field_len(const char *crv)
{
  if (!strcmp(crv, "P-256") || !strcmp(crv, "P-256K"))
    return 32;
  if (!strcmp(crv, "P-384"))
    return 48;
  return 66;
}

static const char *ec_alg_curve(const char *alg)
{
  if (!strcmp(alg, "ES256"))
    return "P-256";
  if (!strcmp(alg, "ES384"))
    return "P-384";
  if (!strcmp(alg, "ES512"))
    return "P-521";
  if (!strcmp(alg, "ES256K"))
    return "P-256K";
  return NULL;
}

/* Configure an RSA sign/verify context for alg; -1 if alg is not an RSA signature alg. */
static int rsa_sig_setup(EVP_PKEY_CTX *ctx, const char *alg, const EVP_MD **md_out)
{
  const EVP_MD *md = NULL;
  *md_out = NULL;
  if (!strcmp(alg, "RSNULL"))
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 ? 0 : -1;
  if (strlen(alg) != 5 || (strncmp(alg, "RS", 2) && strncmp(alg, "PS", 2)) || !(md = alg_md(alg)))
    return -1;
  *md_out = md;
  if (alg[0] == 'R')
    return (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx, md) == 1)
               ? 0
               : -1;
  return (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
          EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
          EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1)
             ? 0
             : -1;
}

static bool rsa_sig_alg(const char *alg)
{
  return !strcmp(alg, "RSNULL") || !strcmp(alg, "RS256") || !strcmp(alg, "RS384") ||
         !strcmp(alg, "RS512") || !strcmp(alg, "PS256") || !strcmp(alg, "PS384") ||
         !strcmp(alg, "PS512");
}

static bool hmac_alg(const char *alg)
{
  return !strcmp(alg, "HS256") || !strcmp(alg, "HS384") || !strcmp(alg, "HS512");
}

static bool known_sig_alg(const char *alg)
{
  return rsa_sig_alg(alg) || ec_alg_curve(alg) || hmac_alg(alg);
}

/* Validate alg against the key and the digest length. 0 ok, else resp filled. */
static int sig_check(const struct key_material *km, const char *alg, size_t dlen,
                     struct emu_resp *resp)
{
  if (!known_sig_alg(alg))
    return emu_resp_bad_param(resp, "Invalid signature algorithm '%s'.", alg), -1;
  if (rsa_sig_alg(alg)) {
    if (!is_rsa(km))
      return emu_resp_bad_param(resp, "Algorithm %s is not valid for key type %s.", alg, km->kty),
             -1;
    if (!strcmp(alg, "RSNULL")) {
      if (dlen == 0 || dlen > (size_t)EVP_PKEY_get_size(km->pkey) - 11)
        return emu_resp_bad_param(resp, "Invalid length of data for RSNULL."), -1;
      return 0;
    }
  } else if (ec_alg_curve(alg)) {
    if (!is_ec(km))
      return emu_resp_bad_param(resp, "Algorithm %s is not valid for key type %s.", alg, km->kty),
             -1;
    if (strcmp(ec_alg_curve(alg), km->crv) != 0)
      return emu_resp_bad_param(resp,
                                "Key and signing algorithm are incompatible: %s requires "
                                "curve %s, the key uses %s.",
                                alg, ec_alg_curve(alg), km->crv),
             -1;
  } else {
    if (!is_oct(km))
      return emu_resp_bad_param(resp, "Algorithm %s is not valid for key type %s.", alg, km->kty),
             -1;
    if (dlen == 0 || dlen > MAX_AES_INPUT)
      return emu_resp_bad_param(resp, "Invalid length of data for %s.", alg), -1;
    return 0;
  }
  size_t want = (size_t)EVP_MD_get_size(alg_md(alg));
  if (dlen != want)
    return emu_resp_bad_param(resp,
                              "Invalid length of digest for %s: %zu bytes given, it must be "
                              "%zu bytes in length.",
                              alg, dlen, want),
           -1;
  return 0;
}

static int hmac(const struct key_material *km, const char *alg, const unsigned char *data,
                size_t len, unsigned char *out, size_t *outlen)
{
  const char *md = !strcmp(alg, "HS256") ? "SHA256" : !strcmp(alg, "HS384") ? "SHA384" : "SHA512";
  return EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, km->k, km->klen, data, len, out, 64, outlen) ? 0
                                                                                              : -1;
}

static int do_sign(const struct key_material *km, const char *alg, const unsigned char *dig,
                   size_t dlen, unsigned char **sig_out, size_t *siglen_out)
{
  EVP_PKEY_CTX *ctx = NULL;
  unsigned char *der = NULL, *sig = NULL;
  size_t derlen = 0;
  ECDSA_SIG *es = NULL;
  const EVP_MD *md;
  int rc = -1;

  if (hmac_alg(alg)) {
    sig = malloc(64);
    if (!sig || hmac(km, alg, dig, dlen, sig, siglen_out) != 0)
      goto out;
    *sig_out = sig;
    sig = NULL;
    rc = 0;
    goto out;
  }
  ctx = EVP_PKEY_CTX_new(km->pkey, NULL);
  if (!ctx || EVP_PKEY_sign_init(ctx) != 1)
    goto out;
  if (is_rsa(km) && rsa_sig_setup(ctx, alg, &md) != 0)
    goto out;
  if (EVP_PKEY_sign(ctx, NULL, &derlen, dig, dlen) != 1 || !(der = malloc(derlen)) ||
      EVP_PKEY_sign(ctx, der, &derlen, dig, dlen) != 1)
    goto out;
  if (is_rsa(km)) {
    *sig_out = der;
    *siglen_out = derlen;
    der = NULL;
    rc = 0;
    goto out;
  }
  /* ECDSA: DER -> r||s, each left-padded to the field size */
  const unsigned char *p = der;
  size_t fl = ec_field_len(km->crv);
  const BIGNUM *r, *s;
  es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
  if (!es)
    goto out;
  ECDSA_SIG_get0(es, &r, &s);
  sig = malloc(2 * fl);
  if (!sig || BN_bn2binpad(r, sig, (int)fl) < 0 || BN_bn2binpad(s, sig + fl, (int)fl) < 0)
    goto out;
  *sig_out = sig;
  *siglen_out = 2 * fl;
  sig = NULL;
  rc = 0;
out:
  EVP_PKEY_CTX_free(ctx);
  free(der);
  free(sig);
  ECDSA_SIG_free(es);
  return rc;
}

/* 1 valid, 0 invalid, -1 internal error. */
static int do_verify(const struct key_material *km, const char *alg, const unsigned char *dig,
                     size_t dlen, const unsigned char *sig, size_t siglen)
{
  EVP_PKEY_CTX *ctx = NULL;
  unsigned char *der = NULL;
  ECDSA_SIG *es = NULL;
  BIGNUM *r = NULL, *s = NULL;
  const EVP_MD *md;
  int rc = -1, derlen;

  if (hmac_alg(alg)) {
    unsigned char mac[64];
    size_t maclen = 0;
    if (hmac(km, alg, dig, dlen, mac, &maclen) != 0)
      return -1;
    rc = siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
  }
  ctx = EVP_PKEY_CTX_new(km->pkey, NULL);
  if (!ctx || EVP_PKEY_verify_init(ctx) != 1)
    goto out;
  if (is_rsa(km)) {
    if (rsa_sig_setup(ctx, alg, &md) != 0)
      goto out;
    if (siglen != (size_t)EVP_PKEY_get_size(km->pkey)) {
      rc = 0;
      goto out;
    }
    rc = EVP_PKEY_verify(ctx, sig, siglen, dig, dlen) == 1;
    goto out;
  }
  size_t fl = ec_field_len(km->crv);
  if (siglen != 2 * fl) {
    rc = 0;
    goto out;
  }
  es = ECDSA_SIG_new();
  r = BN_bin2bn(sig, (int)fl, NULL);
  s = BN_bin2bn(sig + fl, (int)fl, NULL);
  if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1)
    goto out;
  r = s = NULL;
  derlen = i2d_ECDSA_SIG(es, &der);
  if (derlen <= 0)
    goto out;
  rc = EVP_PKEY_verify(ctx, der, (size_t)derlen, dig, dlen) == 1;
out:
  ERR_clear_error();
  EVP_PKEY_CTX_free(ctx);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  BN_free(r);
  BN_free(s);
  return rc;
}

/* ---- encryption ------------------------------------------------------------------------ */

enum aes_mode { AES_NONE, AES_GCM, AES_CBC, AES_CBCPAD, AES_KW, AES_KWP };

/* Parse an AES alg: mode and the key bits it names (0 = any, for CKM_*). */
static enum aes_mode aes_alg(const char *alg, int *bits)
{
  *bits = 0;
  if (!strcmp(alg, "CKM_AES_KEY_WRAP"))
    return AES_KW;
  if (!strcmp(alg, "CKM_AES_KEY_WRAP_PAD"))
    return AES_KWP;
  if (alg[0] != 'A' || strlen(alg) < 5)
    return AES_NONE;
  if (!strncmp(alg + 1, "128", 3))
    *bits = 128;
  else if (!strncmp(alg + 1, "192", 3))
    *bits = 192;
  else if (!strncmp(alg + 1, "256", 3))
    *bits = 256;
  else
    return AES_NONE;
  const char *m = alg + 4;
  if (!strcmp(m, "GCM"))
    return AES_GCM;
  if (!strcmp(m, "CBC"))
    return AES_CBC;
  if (!strcmp(m, "CBCPAD"))
    return AES_CBCPAD;
  if (!strcmp(m, "KW"))
    return AES_KW;
  return AES_NONE;
}

static const EVP_CIPHER *aes_cipher(enum aes_mode mode, size_t klen)
{
  switch (mode) {
  case AES_GCM:
    return klen == 16 ? EVP_aes_128_gcm() : klen == 24 ? EVP_aes_192_gcm() : EVP_aes_256_gcm();
  case AES_CBC:
  case AES_CBCPAD:
    return klen == 16 ? EVP_aes_128_cbc() : klen == 24 ? EVP_aes_192_cbc() : EVP_aes_256_cbc();
  case AES_KW:
    return klen == 16 ? EVP_aes_128_wrap() : klen == 24 ? EVP_aes_192_wrap() : EVP_aes_256_wrap();
  case AES_KWP:
    return klen == 16   ? EVP_aes_128_wrap_pad()
           : klen == 24 ? EVP_aes_192_wrap_pad()
                        : EVP_aes_256_wrap_pad();
  default:
    return NULL;
  }
}

static int rsa_crypt(const struct key_material *km, const char *alg, bool enc,
                     const unsigned char *in, size_t inlen, unsigned char **out, size_t *outlen,
                     struct emu_resp *resp)
{
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(km->pkey, NULL);
  unsigned char *buf = NULL;
  size_t blen = 0, bufcap = 0;
  int rc = -1;
  const EVP_MD *md = NULL;
  int pad = RSA_PKCS1_OAEP_PADDING;
  if (!strcmp(alg, "RSA1_5"))
    pad = RSA_PKCS1_PADDING;
  else if (!strcmp(alg, "RSA-OAEP"))
    md = EVP_sha1();
  else
    md = EVP_sha256();
  if (!ctx || (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx, pad) != 1 ||
      (md &&
       (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1)))
    goto out;
  size_t k = (size_t)EVP_PKEY_get_size(km->pkey);
  if (enc) {
    size_t maxin = pad == RSA_PKCS1_PADDING ? k - 11 : k - 2 - 2 * (size_t)EVP_MD_get_size(md);
    if (inlen > maxin) {
      rc = emu_resp_bad_param(resp,
                              "The plaintext is too long for %s with a %zu-bit key (at most "
                              "%zu bytes).",
                              alg, k * 8, maxin);
      rc = rc == 0 ? 1 : -1;
      goto out;
    }
  } else if (inlen != k) {
    rc = emu_resp_bad_param(resp, "The ciphertext length must be %zu bytes for this key.", k);
    rc = rc == 0 ? 1 : -1;
    goto out;
  }
  blen = k;
  bufcap = k + 1;
  buf = malloc(bufcap);
  if (!buf)
    goto out;
  if ((enc ? EVP_PKEY_encrypt(ctx, buf, &blen, in, inlen)
           : EVP_PKEY_decrypt(ctx, buf, &blen, in, inlen)) != 1) {
    ERR_clear_error();
    rc = emu_resp_bad_param(resp, enc ? "Encryption failed."
                                      : "Decryption failed: the ciphertext "
                                        "is invalid for this key and algorithm.");
    rc = rc == 0 ? 1 : -1;
    goto out;
  }
  *out = buf;
  *outlen = blen;
  buf = NULL;
  rc = 0;
out:
  EVP_PKEY_CTX_free(ctx);
  if (buf) {
    OPENSSL_cleanse(buf, bufcap);
    free(buf);
  }
  return rc;
}

/* AES on oct-HSM keys. Returns 0 with members added to res, 1 when resp holds an error,
 * -1 on internal failure. */
static int aes_crypt(const struct key_material *km, const char *alg, enum key_op op,
                     const cJSON *body, const unsigned char *in, size_t inlen, cJSON *res,
                     struct emu_resp *resp)
{
  int bits, rc = -1, outl = 0, fin = 0;
  enum aes_mode mode = aes_alg(alg, &bits);
  unsigned char *iv = NULL, *aad = NULL, *tag = NULL, *out = NULL, *padded = NULL;
  size_t ivlen = 0, aadlen = 0, taglen = 0, outcap;
  unsigned char gen_iv[12], gen_tag[16];
  EVP_CIPHER_CTX *ctx = NULL;
  bool enc = op == OP_ENCRYPT || op == OP_WRAP;
  bool wrapop = op == OP_WRAP || op == OP_UNWRAP;
  int hiv, haad, htag;

#define FAIL400(...)                                                                               \
  do {                                                                                             \
    rc = emu_resp_bad_param(resp, __VA_ARGS__) == 0 ? 1 : -1;                                      \
    goto out;                                                                                      \
  } while (0)
  if (mode == AES_NONE)
    FAIL400("Invalid encryption algorithm '%s'.", alg);
  if (bits && (size_t)bits != km->klen * 8)
    FAIL400("Algorithm %s requires a %d-bit key; this key has %zu bits.", alg, bits, km->klen * 8);
  if (wrapop != (mode == AES_KW || mode == AES_KWP))
    FAIL400("Algorithm %s is not valid for the %s operation.", alg,
            op == OP_ENCRYPT   ? "encrypt"
            : op == OP_DECRYPT ? "decrypt"
            : op == OP_WRAP    ? "wrapKey"
                               : "unwrapKey");
  if (inlen > MAX_AES_INPUT)
    FAIL400("The value is too long.");
  hiv = b64_member(body, "iv", &iv, &ivlen);
  haad = b64_member(body, "aad", &aad, &aadlen);
  htag = b64_member(body, "tag", &tag, &taglen);
  if (hiv < 0 || haad < 0 || htag < 0)
    FAIL400("iv, aad and tag must be base64url encoded.");

  const EVP_CIPHER *cipher = aes_cipher(mode, km->klen);
  ctx = EVP_CIPHER_CTX_new();
  if (!ctx || !cipher)
    goto out;
  outcap = inlen + 32;
  out = malloc(outcap);
  if (!out)
    goto out;

  if (mode == AES_GCM) {
    if (enc) {
      if (hiv)
        FAIL400("The iv must not be supplied for %s encryption; the service generates it.", alg);
      if (RAND_bytes(gen_iv, sizeof(gen_iv)) != 1)
        goto out;
    } else {
      if (hiv != 1 || ivlen != 12)
        FAIL400("A 12-byte iv is required for %s decryption.", alg);
      if (htag != 1 || taglen != 16)
        FAIL400("A 16-byte authentication tag is required for %s decryption.", alg);
    }
    const unsigned char *use_iv = enc ? gen_iv : iv;
    if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, km->k, use_iv, enc) != 1)
      goto out;
    if (aadlen && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aadlen) != 1)
      goto out;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)inlen) != 1)
      goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
      goto out;
    if (EVP_CipherFinal_ex(ctx, out + outl, &fin) != 1)
      FAIL400("Decryption failed: the authentication tag does not match.");
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, gen_tag) != 1)
      goto out;
    if (add_b64(res, "value", out, (size_t)(outl + fin)) != 0)
      goto out;
    if (enc && (add_b64(res, "iv", gen_iv, 12) != 0 || add_b64(res, "tag", gen_tag, 16) != 0 ||
                (haad == 1 && add_b64(res, "aad", aad, aadlen) != 0)))
      goto out;
  } else if (mode == AES_CBC || mode == AES_CBCPAD) {
    const unsigned char *src = in;
    size_t srclen = inlen;
    if (hiv != 1 || ivlen != 16)
      FAIL400("A 16-byte iv is required for %s.", alg);
    if (mode == AES_CBC && enc && inlen % 16) {
      /* A*CBC has no padding: the service zero-pads the plaintext to the block size */
      srclen = (inlen + 15) / 16 * 16;
      padded = calloc(1, srclen);
      if (!padded)
        goto out;
      memcpy(padded, in, inlen);
      src = padded;
    }
    if (!enc && (inlen == 0 || inlen % 16))
      FAIL400("The ciphertext length must be a positive multiple of 16 bytes for %s.", alg);
    if (EVP_CipherInit_ex(ctx, cipher, NULL, km->k, iv, enc) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx, mode == AES_CBCPAD) != 1 ||
        EVP_CipherUpdate(ctx, out, &outl, src, (int)srclen) != 1)
      goto out;
    if (EVP_CipherFinal_ex(ctx, out + outl, &fin) != 1)
      FAIL400("Decryption failed: the padding is invalid.");
    if (add_b64(res, "value", out, (size_t)(outl + fin)) != 0 ||
        (enc && add_b64(res, "iv", iv, 16) != 0))
      goto out;
  } else {
    if (mode == AES_KW && (inlen < 16 || inlen % 8))
      FAIL400("The value for %s must be a multiple of 8 bytes and at least 16 bytes.", alg);
    if (mode == AES_KWP && (inlen == 0 || (!enc && (inlen < 16 || inlen % 8))))
      FAIL400("Invalid value length for %s.", alg);
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex(ctx, cipher, NULL, km->k, NULL, enc) != 1)
      goto out;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)inlen) != 1)
      FAIL400("Unwrap failed: the integrity check of the wrapped key failed.");
    if (EVP_CipherFinal_ex(ctx, out + outl, &fin) != 1)
      FAIL400("Unwrap failed: the integrity check of the wrapped key failed.");
    if (add_b64(res, "value", out, (size_t)(outl + fin)) != 0)
      goto out;
  }
  rc = 0;
#undef FAIL400
out:
  ERR_clear_error();
  EVP_CIPHER_CTX_free(ctx);
  if (out) {
    OPENSSL_cleanse(out, inlen + 32);
    free(out);
  }
  if (padded) {
    OPENSSL_cleanse(padded, (inlen + 15) / 16 * 16);
    free(padded);
  }
  free(iv);
  free(aad);
  free(tag);
  return rc;
}

static bool rsa_enc_alg(const char *alg)
{
  return !strcmp(alg, "RSA1_5") || !strcmp(alg, "RSA-OAEP") || !strcmp(alg, "RSA-OAEP-256");
}

int keycrypto_run(const struct key_material *km, enum key_op op, const cJSON *body, bool mhsm,
                  const char *kid, struct emu_resp *resp)
{
  const cJSON *algj = cJSON_GetObjectItemCaseSensitive(body, "alg");
  unsigned char *val = NULL, *dig = NULL, *out = NULL;
  size_t vlen = 0, dlen = 0, outlen = 0;
  cJSON *res = NULL;
  int rc = -1, h;
  const char *alg;

  if (!body)
    return emu_resp_bad_param(resp, "The request body is required.");
  if (!cJSON_IsString(algj))
    return emu_resp_bad_param(resp, "The parameter 'alg' is required and must be a string.");
  alg = algj->valuestring;
  h = b64_member(body, "value", &val, &vlen);
  if (h <= 0) {
    rc = emu_resp_bad_param(resp, h == 0 ? "The parameter 'value' is required."
                                         : "The parameter 'value' is not valid base64url.");
    goto out;
  }
  res = cJSON_CreateObject();
  if (!res || (op != OP_VERIFY && !cJSON_AddStringToObject(res, "kid", kid)))
    goto out;

  if (op == OP_SIGN || op == OP_VERIFY) {
    const unsigned char *msg = val;
    size_t mlen = vlen;
    if (op == OP_VERIFY) {
      h = b64_member(body, "digest", &dig, &dlen);
      if (h <= 0) {
        rc = emu_resp_bad_param(resp, h == 0 ? "The parameter 'digest' is required."
                                             : "The parameter 'digest' is not valid base64url.");
        goto out;
      }
      msg = dig;
      mlen = dlen;
    }
    if (sig_check(km, alg, mlen, resp) != 0) {
      rc = 0;
      goto out;
    }
    if (op == OP_SIGN) {
      if (do_sign(km, alg, msg, mlen, &out, &outlen) != 0)
        goto out;
      if (add_b64(res, "value", out, outlen) != 0)
        goto out;
    } else {
      int ok = do_verify(km, alg, msg, mlen, val, vlen);
      if (ok < 0)
        goto out;
      if (!cJSON_AddBoolToObject(res, "value", ok))
        goto out;
    }
  } else if (rsa_enc_alg(alg)) {
    if (!is_rsa(km)) {
      rc = emu_resp_bad_param(resp, "Algorithm %s is not valid for key type %s.", alg, km->kty);
      goto out;
    }
    h = rsa_crypt(km, alg, op == OP_ENCRYPT || op == OP_WRAP, val, vlen, &out, &outlen, resp);
    if (h != 0) {
      rc = h > 0 ? 0 : -1;
      goto out;
    }
    if (add_b64(res, "value", out, outlen) != 0)
      goto out;
  } else {
    int bits;
    if (aes_alg(alg, &bits) == AES_NONE) {
      rc = emu_resp_bad_param(resp, "Invalid encryption algorithm '%s'.", alg);
      goto out;
    }
    if (!is_oct(km)) {
      rc = emu_resp_bad_param(resp, "Algorithm %s is not valid for key type %s.", alg, km->kty);
      goto out;
    }
    h = aes_crypt(km, alg, op, body, val, vlen, res, resp);
    if (h != 0) {
      rc = h > 0 ? 0 : -1;
      goto out;
    }
  }
  if (mhsm && op != OP_VERIFY && !cJSON_AddStringToObject(res, "alg", alg))
    goto out;
  rc = emu_resp_json(resp, 200, res);
  res = NULL;
out:
  cJSON_Delete(res);
  if (val) {
    OPENSSL_cleanse(val, vlen);
    free(val);
  }
  free(dig);
  if (out) {
    OPENSSL_cleanse(out, outlen);
    free(out);
  }
  return rc;
}
