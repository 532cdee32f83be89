/* SPDX-License-Identifier: Apache-2.0 */
/* Operation state and the model functions behind the crypto C_* entry points (src/p11/crypto.c).
 * Internal to the crypto part of the model (token/mech.c, crypto/op_*.c). Every function here is
 * called with the session acquired (akv_session_acquire) and follows the PKCS#11 operation rules:
 * an error other than CKR_BUFFER_TOO_SMALL, or a completed call, ends the operation; a length
 * query (NULL output) keeps it. */
#ifndef AKV_OP_H
#define AKV_OP_H

#include <openssl/evp.h>

#include "core/akv.h"
#include "core/outbuf.h"
#include "token/mech.h"

struct akv_op {
  enum akv_op_kind kind;
  const struct akv_mech *mech;
  struct akv_object *obj; /* the key (referenced); NULL for digest */
  int remote;             /* the vault computes it (obj->key), else local (pkey or secret) */
  CK_MECHANISM_TYPE hash; /* PSS/OAEP hash, the hash of hash-and-sign and HMAC mechanisms */
  const char *alg;        /* JWA chosen at Init; NULL when the data decides (raw RSA/ECDSA) */
  EVP_MD_CTX *md;         /* incremental local hash */
  EVP_MAC_CTX *mac;       /* local HMAC with a session key */
  struct akv_outbuf in;   /* accumulated input of single-shot computations */
  size_t in_limit;        /* cap on in.len */
  struct akv_outbuf out;  /* result computed for a call whose buffer was too small */
  int have_out;
  int updated; /* a C_*Update happened: the single-part call is refused */
  /* AES */
  size_t key_bytes; /* 16/24/32, 0 = unknown (vault key without CKA_VALUE_LEN) */
  unsigned char iv[16];
  size_t iv_len;
  unsigned char *aad;
  size_t aad_len;
  size_t tag_len;     /* GCM tag bytes */
  CK_BYTE_PTR iv_out; /* GCM encrypt in the HSM: the caller's pIv receives the HSM's IV */
};

/* ---- lifecycle (op.c) ---- */

/* Validates mechanism, key and parameters for a use `need` (one of CKF_SIGN, CKF_VERIFY,
 * CKF_ENCRYPT, CKF_DECRYPT, CKF_DIGEST, CKF_WRAP, CKF_UNWRAP) and returns a new operation (not
 * installed): CKR_MECHANISM_INVALID, CKR_KEY_HANDLE_INVALID, CKR_KEY_TYPE_INCONSISTENT,
 * CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_MECHANISM_PARAM_INVALID... obj (borrowed, NULL for
 * CKF_DIGEST) is referenced by the operation. */
CK_RV akv_op_new(struct akv_session *s, enum akv_op_kind kind, CK_FLAGS need, const CK_MECHANISM *m,
                 struct akv_object *obj, struct akv_op **out);

/* akv_op_new for an operation of `kind`, installed on the session (CKR_OPERATION_ACTIVE if one
 * is already there). obj is borrowed (NULL for digest); *out is owned by the session. */
CK_RV akv_op_begin(struct akv_session *s, enum akv_op_kind kind, const CK_MECHANISM *m,
                   struct akv_object *obj, struct akv_op **out);

/* The active operation of that kind, or NULL (-> CKR_OPERATION_NOT_INITIALIZED). */
struct akv_op *akv_op_peek(struct akv_session *s, enum akv_op_kind kind);

/* Ends the operation of that kind (frees it). */
void akv_op_end(struct akv_session *s, enum akv_op_kind kind);

/* Applies the termination rule to the result of an output-producing call: keeps the operation on
 * CKR_BUFFER_TOO_SMALL and on a successful length query (out == NULL), ends it otherwise. */
CK_RV akv_op_settle(struct akv_session *s, enum akv_op_kind kind, CK_RV rv, const void *out);

/* Checks the mechanism parameters of a validated row for this key and fills op (hash, alg, AES
 * parameters). Exposed for tests. */
CK_RV akv_mech_params(struct akv_op *op, const CK_MECHANISM *m);

/* Key size of an AES key object in bytes (session secret length, CKA_VALUE_LEN), 0 if unknown. */
size_t akv_mech_aes_key_bytes(const struct akv_object *obj);

/* ---- sign / verify (op_sign.c) ---- */
CK_RV akv_sign_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey);
CK_RV akv_sign_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj);
CK_RV akv_sign(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, CK_BYTE_PTR sig,
               CK_ULONG_PTR sig_len);
CK_RV akv_sign_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len);
CK_RV akv_sign_final(struct akv_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len);
CK_RV akv_verify_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey);
CK_RV akv_verify_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj);
CK_RV akv_verify(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, const CK_BYTE *sig,
                 CK_ULONG sig_len);
CK_RV akv_verify_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len);
CK_RV akv_verify_final(struct akv_session *s, const CK_BYTE *sig, CK_ULONG sig_len);

/* Signature size of the operation's key without asking the vault (RSA: modulus bytes, EC: twice
 * the field size, HMAC: hash size), 0 if unknown. */
size_t akv_sign_len(const struct akv_op *op);

/* CKM_ECDSA input to the digest length the curve's ES* algorithm takes, with the same meaning
 * under ECDSA's rules (FIPS 186-4 6.4: the leftmost field-size bits of a longer hash; a shorter
 * one left-padded with zeros). CKR_DATA_LEN_RANGE when that cannot be expressed. */
CK_RV akv_ecdsa_digest(enum kv_crv crv, const unsigned char *in, size_t len, unsigned char *out,
                       size_t *out_len);

/* ECDSA signature r||s (PKCS#11, JWA) <-> DER (OpenSSL). */
CK_RV akv_ecdsa_rs_to_der(const unsigned char *rs, size_t len, unsigned char **der,
                          size_t *der_len);

/* ---- encrypt / decrypt (op_cipher.c) ---- */
CK_RV akv_encrypt_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey);
CK_RV akv_encrypt_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj);
CK_RV akv_encrypt(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len);
CK_RV akv_encrypt_update(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                         CK_ULONG_PTR out_len);
CK_RV akv_encrypt_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV akv_decrypt_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey);
CK_RV akv_decrypt_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj);
CK_RV akv_decrypt(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len);
CK_RV akv_decrypt_update(struct akv_session *s, const CK_BYTE *in, CK_ULONG len, CK_BYTE_PTR out,
                         CK_ULONG_PTR out_len);
CK_RV akv_decrypt_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

/* One RSA or AES encryption/decryption with the key of op, remote or local as op says; used by
 * encrypt/decrypt and by wrap/unwrap (vop KV_WRAP/KV_UNWRAP). Output in *res (caller clears). */
CK_RV akv_cipher_run(struct akv_session *s, struct akv_op *op, enum kv_cipher_op vop,
                     const unsigned char *in, size_t len, struct akv_outbuf *res);

/* Upper bound of the output size for an input of len bytes (exact where it is known). */
size_t akv_cipher_out_len(const struct akv_op *op, enum kv_cipher_op vop, size_t len);

/* ---- digest and random (op_digest.c) ---- */
CK_RV akv_digest_init(struct akv_session *s, const CK_MECHANISM *m);
CK_RV akv_digest(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, CK_BYTE_PTR out,
                 CK_ULONG_PTR out_len);
CK_RV akv_digest_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len);
CK_RV akv_digest_key(struct akv_session *s, CK_OBJECT_HANDLE hkey);
CK_RV akv_digest_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV akv_generate_random(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG len);

/* A fetched digest in akv_libctx() for CKM_SHA_1..CKM_SHA512 (caller frees), NULL if unknown.
 * Served from the per-initialisation cache below (a counted reference, no method-store lookup). */
EVP_MD *akv_mech_md_fetch(CK_MECHANISM_TYPE hash);

/* The digest cache's life follows the library context: filled by C_Initialize once akv_libctx()
 * has its provider, freed by C_Finalize before the context, forgotten (not freed: it belongs to the
 * parent's abandoned context) by a forked child's C_Initialize. */
void akv_mech_md_cache_init(void);
void akv_mech_md_cache_free(void);
void akv_mech_md_cache_abandon(void);

/* ---- keys: wrap, unwrap, generate (op_wrap.c) ---- */
/* The _obj variants take the objects themselves (borrowed); the others look the handles up. */
CK_RV akv_wrap_key(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hwrapping,
                   CK_OBJECT_HANDLE hkey, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV akv_wrap_key_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *wrapping,
                       struct akv_object *key, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV akv_unwrap_key(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hunwrapping,
                     const CK_BYTE *wrapped, CK_ULONG len, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR out);
CK_RV akv_unwrap_key_obj(struct akv_session *s, const CK_MECHANISM *m,
                         struct akv_object *unwrapping, const CK_BYTE *wrapped, CK_ULONG len,
                         const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out);
CK_RV akv_generate_key(struct akv_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *tmpl,
                       CK_ULONG n, CK_OBJECT_HANDLE_PTR out);

#endif
