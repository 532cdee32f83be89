/* SPDX-License-Identifier: Apache-2.0 */
/* Encryption and decryption: RSA (OAEP, PKCS#1 v1.5) with vault keys, AES (GCM, CBC, CBC-PAD, key
 * wrap) with Managed HSM oct-HSM keys or session secret keys. The vault is single-shot, so every
 * operation accumulates its (bounded) input and computes once at C_Encrypt/C_*Final; the result
 * is kept so that a call whose buffer was too small is answered again without a second request. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "token/op.h"
#include "token/session.h"
#include "util/log.h"

#define AKV_MAX_AES_LOCAL (1u << 24)  /* 16 MiB accumulated by local AES */
#define AKV_MAX_AES_REMOTE (1u << 18) /* 256 KiB per Managed HSM request */
#define AES_BLOCK 16

static size_t rsa_bytes(const struct akv_op *op)
{
  const struct akv_object *obj = op->obj;
  if (obj->modulus_bits)
    return (obj->modulus_bits + 7) / 8;
  return obj->pkey ? (size_t)EVP_PKEY_get_size(obj->pkey) : 0;
}

static int encrypting(enum kv_cipher_op vop)
{
  return vop == KV_ENCRYPT || vop == KV_WRAP;
}

/* Largest input: RFC 8017 plaintext limits for RSA, a request cap for AES. */
static size_t in_limit(const struct akv_op *op, enum kv_cipher_op vop)
{
  size_t k = rsa_bytes(op);
  switch (op->mech->fam) {
  case AKV_MF_RSA_PKCS:
    return encrypting(vop) ? (k > 11 ? k - 11 : 0) : k;
  case AKV_MF_RSA_OAEP:
    if (!encrypting(vop))
      return k;
    return k > 2 * akv_mech_hash_len(op->hash) + 2 ? k - 2 * akv_mech_hash_len(op->hash) - 2 : 0;
  default:
    return op->remote ? AKV_MAX_AES_REMOTE : AKV_MAX_AES_LOCAL;
  }
}

size_t akv_cipher_out_len(const struct akv_op *op, enum kv_cipher_op vop, size_t len)
{
  int enc = encrypting(vop);
  switch (op->mech->fam) {
  case AKV_MF_RSA_PKCS:
  case AKV_MF_RSA_OAEP:
    return rsa_bytes(op);
  case AKV_MF_AES_GCM:
    return enc ? len + op->tag_len : (len >= op->tag_len ? len - op->tag_len : 0);
  case AKV_MF_AES_CBC:
    return len;
  case AKV_MF_AES_CBC_PAD:
    return enc ? (len / AES_BLOCK + 1) * AES_BLOCK : len;
  case AKV_MF_AES_KW:
  case AKV_MF_AES_KWP:
    if (enc)
      return (len + 7) / 8 * 8 + 8;
    return len >= 8 ? len - 8 : 0;
  default:
    return 0;
  }
}

/* True when akv_cipher_out_len is the exact size, not only a bound. */
static int out_len_exact(const struct akv_op *op, enum kv_cipher_op vop)
{
  if (encrypting(vop))
    return 1;
  return op->mech->fam == AKV_MF_AES_GCM || op->mech->fam == AKV_MF_AES_CBC ||
         op->mech->fam == AKV_MF_AES_KW;
}

/* Input rules checked before any computation. */
static CK_RV check_input(const struct akv_op *op, enum kv_cipher_op vop, size_t len)
{
  int enc = encrypting(vop);
  CK_RV bad = enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
  switch (op->mech->fam) {
  case AKV_MF_RSA_PKCS:
  case AKV_MF_RSA_OAEP:
    if (enc ? len > in_limit(op, vop) : len != rsa_bytes(op))
      return bad;
    return CKR_OK;
  case AKV_MF_AES_GCM:
    return (!enc && len < op->tag_len) ? bad : CKR_OK;
  case AKV_MF_AES_CBC:
    /* The service would silently zero-pad a partial block. */
    return len % AES_BLOCK ? bad : CKR_OK;
  case AKV_MF_AES_CBC_PAD:
    return (!enc && (len == 0 || len % AES_BLOCK)) ? bad : CKR_OK;
  case AKV_MF_AES_KW:
    if (enc)
      return (len < 16 || len % 8) ? bad : CKR_OK;
    return (len < 24 || len % 8) ? bad : CKR_OK;
  case AKV_MF_AES_KWP:
    if (enc)
      return len == 0 ? bad : CKR_OK;
    return (len < 16 || len % 8) ? bad : CKR_OK;
  default:
    return CKR_MECHANISM_INVALID;
  }
}

/* ---- AES key sizes of vault keys ---------------------------------------------------------------
 */

/* Key Vault does not report the size of an oct-HSM key, and A*GCM/A*CBC name it. When the object
 * has no CKA_VALUE_LEN, the size is found by asking (256, then 128, then 192 bits: the service
 * refuses a mismatching algorithm with 400) and remembered per key version. */
#define SIZE_MEMO_N 64
#define SIZE_MEMO_KID 512
/* Fork-safe (docs/reliability.md "Fork"): a child never finds it held, nor an entry half written.
 */
static struct akv_fork_lock memo_lock = AKV_FORK_LOCK_INIT;
static struct {
  char kid[SIZE_MEMO_KID];
  size_t bytes;
} size_memo[SIZE_MEMO_N];
static unsigned memo_next;

static size_t memo_get(const char *kid)
{
  size_t bytes = 0;
  if (!kid || strlen(kid) >= SIZE_MEMO_KID)
    return 0;
  akv_fork_lock_take(&memo_lock);
  for (unsigned i = 0; i < SIZE_MEMO_N; i++)
    if (size_memo[i].bytes && strcmp(size_memo[i].kid, kid) == 0)
      bytes = size_memo[i].bytes;
  akv_fork_lock_give(&memo_lock);
  return bytes;
}

static void memo_put(const char *kid, size_t bytes)
{
  if (!kid || strlen(kid) >= SIZE_MEMO_KID || memo_get(kid) == bytes)
    return;
  akv_fork_lock_take(&memo_lock);
  snprintf(size_memo[memo_next].kid, SIZE_MEMO_KID, "%s", kid);
  size_memo[memo_next].bytes = bytes;
  memo_next = (memo_next + 1) % SIZE_MEMO_N;
  akv_fork_lock_give(&memo_lock);
}

/* ---- remote ---------------------------------------------------------------------------------- */

static CK_RV remote_fail(struct akv_session *s, struct akv_op *op, enum kv_cipher_op vop, kv_rc rc,
                         long http_status)
{
  /* A version deleted or disabled meanwhile: CKR_KEY_HANDLE_INVALID, dropped. */
  CK_RV rv = akv_session_key_failed(s, op->obj, rc, http_status);
  /* A ciphertext the vault refuses (bad padding, failed GCM tag) is the caller's data. */
  if (rc == KV_E_BAD_REQUEST && vop == KV_DECRYPT)
    return CKR_ENCRYPTED_DATA_INVALID;
  if (rc == KV_E_BAD_REQUEST && vop == KV_UNWRAP)
    return CKR_WRAPPED_KEY_INVALID;
  return rv;
}

static CK_RV remote_result(struct akv_op *op, enum kv_cipher_op vop,
                           const struct kv_crypt_result *r, size_t in_len, struct akv_outbuf *res)
{
  CK_RV rv;
  if (op->mech->fam == AKV_MF_AES_GCM && vop == KV_ENCRYPT) {
    if (r->iv.len != op->iv_len || r->tag.len != op->tag_len || r->value.len != in_len) {
      akv_err(AKV_LOGC_P11, "CKM_AES_GCM: the HSM returned an IV/tag of unexpected size");
      return CKR_DEVICE_ERROR;
    }
    rv = akv_outbuf_set(res, r->value.data, r->value.len);
    if (rv == CKR_OK)
      rv = akv_outbuf_append(res, r->tag.data, r->tag.len, SIZE_MAX);
    if (rv == CKR_OK && op->iv_out)
      memcpy(op->iv_out, r->iv.data, r->iv.len);
    return rv;
  }
  if (encrypting(vop) && (op->mech->fam == AKV_MF_RSA_PKCS || op->mech->fam == AKV_MF_RSA_OAEP) &&
      r->value.len && r->value.len < rsa_bytes(op)) {
    /* An RSA ciphertext is an integer: put back leading zero bytes the service left out. */
    static const unsigned char zeros[64];
    size_t pad = rsa_bytes(op) - r->value.len, chunk;
    rv = akv_outbuf_set(res, NULL, 0);
    for (; rv == CKR_OK && pad; pad -= chunk) {
      chunk = pad < sizeof(zeros) ? pad : sizeof(zeros);
      rv = akv_outbuf_append(res, zeros, chunk, SIZE_MAX);
    }
    return rv == CKR_OK ? akv_outbuf_append(res, r->value.data, r->value.len, SIZE_MAX) : rv;
  }
  if (encrypting(vop) && r->value.len != akv_cipher_out_len(op, vop, in_len)) {
    akv_err(AKV_LOGC_P11, "%s: the vault returned %zu bytes, expected %zu", op->mech->name,
            r->value.len, akv_cipher_out_len(op, vop, in_len));
    return CKR_DEVICE_ERROR;
  }
  return akv_outbuf_set(res, r->value.data, r->value.len);
}

static CK_RV run_remote(struct akv_session *s, struct akv_op *op, enum kv_cipher_op vop,
                        const unsigned char *in, size_t len, struct akv_outbuf *res)
{
  static const size_t probe[] = {32, 16, 24};
  const struct kv_key *key = op->obj->key;
  struct kv_aes_params aes = {NULL, 0, NULL, 0, NULL, 0};
  const struct kv_aes_params *ap = NULL;
  struct kv_crypt_result r;
  size_t sizes[3], n_sizes = 0, data_len = len;
  const char *alg = op->alg;
  kv_rc rc = KV_E_INVALID;
  long st = 0;
  CK_RV rv;

  switch (op->mech->fam) {
  case AKV_MF_AES_GCM:
    aes.aad = op->aad;
    aes.aad_len = op->aad_len;
    if (vop == KV_DECRYPT) {
      /* PKCS#11 carries the tag after the ciphertext; the service takes it separately. */
      data_len = len - op->tag_len;
      aes.iv = op->iv;
      aes.iv_len = op->iv_len;
      aes.tag = in + data_len;
      aes.tag_len = op->tag_len;
    }
    ap = &aes;
    break;
  case AKV_MF_AES_CBC:
  case AKV_MF_AES_CBC_PAD:
    aes.iv = op->iv;
    aes.iv_len = op->iv_len;
    ap = &aes;
    break;
  default:
    break;
  }
  if (!alg) {
    size_t known = memo_get(key->kid);
    if (known)
      sizes[n_sizes++] = known;
    else
      for (size_t i = 0; i < 3; i++)
        sizes[n_sizes++] = probe[i];
  } else {
    sizes[n_sizes++] = 0;
  }
  for (size_t i = 0; i < n_sizes; i++) {
    const char *try_alg = alg ? alg : akv_mech_jwa_aes(op->mech->fam, sizes[i]);
    memset(&r, 0, sizeof(r));
    rc = kv_cipher(op->obj->slot->client, vop, key->name, key->version, try_alg, in, data_len, ap,
                   &r, &st);
    if (rc == KV_OK) {
      if (!alg)
        memo_put(key->kid, sizes[i]);
      akv_dbg(AKV_LOGC_P11, "%s: %s/%s (%s)", op->mech->name, key->name, key->version, try_alg);
      rv = remote_result(op, vop, &r, data_len, res);
      kv_crypt_result_free(&r);
      return rv;
    }
    kv_crypt_result_free(&r);
    if (rc != KV_E_BAD_REQUEST)
      break;
  }
  return remote_fail(s, op, vop, rc, st);
}

/* ---- local ----------------------------------------------------------------------------------- */

static CK_RV rsa_local_encrypt(struct akv_op *op, const unsigned char *in, size_t len,
                               struct akv_outbuf *res)
{
  CK_RV rv = CKR_FUNCTION_FAILED;
  EVP_PKEY *pk = akv_object_pkey(op->obj); /* the context keeps its own reference */
  EVP_PKEY_CTX *ctx = pk ? EVP_PKEY_CTX_new_from_pkey(akv_libctx(), pk, NULL) : NULL;
  EVP_MD *md = NULL;
  size_t out_len = rsa_bytes(op);
  unsigned char *out = malloc(out_len ? out_len : 1);

  EVP_PKEY_free(pk);

  if (!ctx || !out) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  if (EVP_PKEY_encrypt_init(ctx) <= 0)
    goto out;
  if (op->mech->fam == AKV_MF_RSA_OAEP) {
    md = akv_mech_md_fetch(op->hash);
    if (!md || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0)
      goto out;
  } else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0) {
    goto out;
  }
  if (EVP_PKEY_encrypt(ctx, out, &out_len, in, len) <= 0)
    goto out;
  rv = akv_outbuf_set(res, out, out_len);
out:
  ERR_clear_error();
  free(out);
  EVP_MD_free(md);
  EVP_PKEY_CTX_free(ctx);
  return rv;
}

static const char *aes_cipher_name(enum akv_mfam fam, size_t key_bytes, char *buf, size_t n)
{
  const char *mode;
  switch (fam) {
  case AKV_MF_AES_GCM:
    mode = "GCM";
    break;
  case AKV_MF_AES_CBC:
  case AKV_MF_AES_CBC_PAD:
    mode = "CBC";
    break;
  case AKV_MF_AES_KW:
    mode = "WRAP";
    break;
  case AKV_MF_AES_KWP:
    mode = "WRAP-PAD";
    break;
  default:
    return NULL;
  }
  snprintf(buf, n, "AES-%zu-%s", key_bytes * 8, mode);
  return buf;
}

static CK_RV aes_local(struct akv_op *op, enum kv_cipher_op vop, const unsigned char *in,
                       size_t len, struct akv_outbuf *res)
{
  CK_RV rv = CKR_FUNCTION_FAILED;
  int enc = encrypting(vop), fam = op->mech->fam, n = 0, fin = 0;
  char name[32];
  EVP_CIPHER *cipher = NULL;
  EVP_CIPHER_CTX *ctx = NULL;
  unsigned char *out = NULL;
  size_t data_len = len, out_cap = len + 2 * AES_BLOCK + op->tag_len;
  OSSL_PARAM params[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
  size_t iv_len = op->iv_len;

  if (!aes_cipher_name(op->mech->fam, op->obj->secret_len, name, sizeof(name)))
    goto out;
  cipher = EVP_CIPHER_fetch(akv_libctx(), name, NULL);
  ctx = EVP_CIPHER_CTX_new();
  out = malloc(out_cap);
  if (!cipher || !ctx || !out) {
    rv = cipher ? CKR_HOST_MEMORY : CKR_FUNCTION_FAILED;
    goto out;
  }
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (fam == AKV_MF_AES_GCM) {
    params[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &iv_len);
    if (!enc)
      data_len = len - op->tag_len;
  }
  if (!EVP_CipherInit_ex2(ctx, cipher, NULL, NULL, enc, params) ||
      !EVP_CipherInit_ex2(ctx, NULL, op->obj->secret, op->iv_len ? op->iv : NULL, enc, NULL))
    goto out;
  if (fam == AKV_MF_AES_CBC || fam == AKV_MF_AES_CBC_PAD)
    EVP_CIPHER_CTX_set_padding(ctx, fam == AKV_MF_AES_CBC_PAD);
  if (fam == AKV_MF_AES_GCM) {
    if (op->aad_len && !EVP_CipherUpdate(ctx, NULL, &n, op->aad, (int)op->aad_len))
      goto out;
    if (!enc &&
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)op->tag_len, (void *)(in + data_len)))
      goto out;
  }
  n = 0;
  if (data_len && !EVP_CipherUpdate(ctx, out, &n, in, (int)data_len)) {
    rv = enc ? CKR_FUNCTION_FAILED
             : (vop == KV_UNWRAP ? CKR_WRAPPED_KEY_INVALID : CKR_ENCRYPTED_DATA_INVALID);
    goto out;
  }
  if (!EVP_CipherFinal_ex(ctx, out + n, &fin)) {
    /* Wrong padding, failed tag or failed unwrap integrity check. */
    rv = enc ? CKR_FUNCTION_FAILED
             : (vop == KV_UNWRAP ? CKR_WRAPPED_KEY_INVALID : CKR_ENCRYPTED_DATA_INVALID);
    goto out;
  }
  n += fin;
  if (fam == AKV_MF_AES_GCM && enc) {
    if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, (int)op->tag_len, out + n))
      goto out;
    n += (int)op->tag_len;
  }
  rv = akv_outbuf_set(res, out, (size_t)n);
out:
  ERR_clear_error();
  if (out) {
    OPENSSL_cleanse(out, out_cap);
    free(out);
  }
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  return rv;
}

CK_RV akv_cipher_run(struct akv_session *s, struct akv_op *op, enum kv_cipher_op vop,
                     const unsigned char *in, size_t len, struct akv_outbuf *res)
{
  CK_RV rv = check_input(op, vop, len);
  if (rv != CKR_OK)
    return rv;
  if (op->remote)
    return run_remote(s, op, vop, in, len, res);
  if (op->obj->secret)
    return aes_local(op, vop, in, len, res);
  if (encrypting(vop))
    return rsa_local_encrypt(op, in, len, res);
  return CKR_GENERAL_ERROR; /* private-key operations never run locally */
}

/* ---- encrypt / decrypt ----------------------------------------------------------------------- */

static CK_RV cipher_init(struct akv_session *s, enum akv_op_kind kind, const CK_MECHANISM *m,
                         struct akv_object *obj)
{
  struct akv_op *op = NULL;
  CK_RV rv = akv_op_begin(s, kind, m, obj, &op);
  if (rv != CKR_OK)
    return rv;
  op->in_limit = in_limit(op, kind == AKV_OP_ENCRYPT ? KV_ENCRYPT : KV_DECRYPT);
  return CKR_OK;
}

static CK_RV cipher_init_handle(struct akv_session *s, enum akv_op_kind kind, const CK_MECHANISM *m,
                                CK_OBJECT_HANDLE hkey)
{
  struct akv_object *obj = NULL;
  CK_RV rv;
  if (s->ops[kind])
    return CKR_OPERATION_ACTIVE;
  rv = akv_session_op_key(s, hkey, &obj);
  if (rv == CKR_OK)
    rv = cipher_init(s, kind, m, obj);
  akv_object_unref(obj);
  return rv;
}

/* Produces (once) and hands out the result for the input accumulated so far. */
static CK_RV cipher_finish(struct akv_session *s, struct akv_op *op, enum kv_cipher_op vop,
                           CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  CK_RV rv;
  if (!op->have_out) {
    size_t want = akv_cipher_out_len(op, vop, op->in.len);
    /* No request for a length query, nor for a buffer that is surely too small. */
    if (!out || (*out_len < want && out_len_exact(op, vop)))
      return akv_outbuf_copy_out(NULL, want, out, out_len);
    rv = akv_cipher_run(s, op, vop, op->in.data, op->in.len, &op->out);
    if (rv != CKR_OK)
      return rv;
    op->have_out = 1;
    akv_outbuf_clear(&op->in);
  }
  return akv_outbuf_copy_out(op->out.data, op->out.len, out, out_len);
}

static CK_RV cipher_once(struct akv_session *s, enum akv_op_kind kind, const CK_BYTE *in,
                         CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  struct akv_op *op = akv_op_peek(s, kind);
  enum kv_cipher_op vop = kind == AKV_OP_ENCRYPT ? KV_ENCRYPT : KV_DECRYPT;
  CK_RV rv = CKR_OK;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  if (op->updated) {
    rv = CKR_OPERATION_ACTIVE;
    goto out;
  }
  /* A repeated call after CKR_BUFFER_TOO_SMALL is answered from the kept result. */
  if (!op->have_out) {
    akv_outbuf_clear(&op->in);
    if (len > op->in_limit) {
      rv = kind == AKV_OP_ENCRYPT ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
      goto out;
    }
    rv = akv_outbuf_append(&op->in, in, len, op->in_limit);
  }
  if (rv == CKR_OK)
    rv = cipher_finish(s, op, vop, out, out_len);
out:
  return akv_op_settle(s, kind, rv, out);
}

static CK_RV cipher_update(struct akv_session *s, enum akv_op_kind kind, const CK_BYTE *in,
                           CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  struct akv_op *op = akv_op_peek(s, kind);
  CK_RV rv = CKR_OK;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  op->updated = 1;
  /* Output comes at C_*Final; a length query (NULL output) consumes nothing. */
  if (out) {
    rv = akv_outbuf_append(&op->in, in, len, op->in_limit);
    if (rv == CKR_DATA_LEN_RANGE && kind == AKV_OP_DECRYPT)
      rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
  }
  if (rv == CKR_OK)
    *out_len = 0;
  else
    akv_op_end(s, kind);
  return rv;
}

static CK_RV cipher_final(struct akv_session *s, enum akv_op_kind kind, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len)
{
  struct akv_op *op = akv_op_peek(s, kind);
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  return akv_op_settle(
      s, kind, cipher_finish(s, op, kind == AKV_OP_ENCRYPT ? KV_ENCRYPT : KV_DECRYPT, out, out_len),
      out);
}

CK_RV akv_encrypt_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj)
{
  return cipher_init(s, AKV_OP_ENCRYPT, m, obj);
}

CK_RV akv_encrypt_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey)
{
  return cipher_init_handle(s, AKV_OP_ENCRYPT, m, hkey);
}

CK_RV akv_encrypt(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len)
{
  return cipher_once(s, AKV_OP_ENCRYPT, in, len, out, out_len);
}

CK_RV akv_encrypt_update(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                         CK_ULONG_PTR out_len)
{
  return cipher_update(s, AKV_OP_ENCRYPT, in, len, out, out_len);
}

CK_RV akv_encrypt_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  return cipher_final(s, AKV_OP_ENCRYPT, out, out_len);
}

CK_RV akv_decrypt_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj)
{
  return cipher_init(s, AKV_OP_DECRYPT, m, obj);
}

CK_RV akv_decrypt_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey)
{
  return cipher_init_handle(s, AKV_OP_DECRYPT, m, hkey);
}

CK_RV akv_decrypt(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len)
{
  return cipher_once(s, AKV_OP_DECRYPT, in, len, out, out_len);
}

CK_RV akv_decrypt_update(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                         CK_ULONG_PTR out_len)
{
  return cipher_update(s, AKV_OP_DECRYPT, in, len, out, out_len);
}

CK_RV akv_decrypt_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  return cipher_final(s, AKV_OP_DECRYPT, out, out_len);
}
