/* SPDX-License-Identifier: Apache-2.0 */
/* Sign and verify. Signing keys live in the vault: only a digest (or, for HMAC, the message) is
 * sent, hashing happens here incrementally. Verification is local on the cached public key unless
 * the slot asks the vault (verify: remote). */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "token/op.h"
#include "token/session.h"
#include "util/log.h"

#define AKV_MAX_DIGEST 64
#define AKV_MAX_RAW_ECDSA 128    /* longer than any hash: a bigger input is not a digest */
#define AKV_MAX_HMAC_INPUT 65536 /* remote HMAC sends the message itself */
#define AKV_MAX_LOCAL_MAC (1u << 30)

size_t akv_sign_len(const struct akv_op *op)
{
  const struct akv_object *obj = op->obj;
  switch (op->mech->fam) {
  case AKV_MF_RSA_PKCS:
  case AKV_MF_RSA_PSS:
    if (obj->modulus_bits)
      return (obj->modulus_bits + 7) / 8;
    return obj->pkey ? (size_t)EVP_PKEY_get_size(obj->pkey) : 0;
  case AKV_MF_ECDSA:
    return obj->key ? 2 * akv_mech_ec_field_len(obj->key->crv) : 0;
  case AKV_MF_HMAC:
    return akv_mech_hash_len(op->hash);
  default:
    return 0;
  }
}

CK_RV akv_ecdsa_digest(enum kv_crv crv, const unsigned char *in, size_t len, unsigned char *out,
                       size_t *out_len)
{
  size_t want = akv_mech_ec_digest_len(crv);
  if (!want || len == 0)
    return CKR_DATA_LEN_RANGE;
  if (len <= want) {
    /* Leading zero bytes do not change the integer ECDSA derives from the hash, and the ES*
     * input is never truncated by the service (its size is at most the order's). */
    memset(out, 0, want - len);
    memcpy(out + want - len, in, len);
  } else if (akv_mech_ec_order_bits(crv) == 8 * want) {
    /* ECDSA keeps the leftmost order-size bits of a longer hash. */
    memcpy(out, in, want);
  } else {
    /* P-521 would need a 521-bit prefix, which no ES512 input expresses. */
    return CKR_DATA_LEN_RANGE;
  }
  *out_len = want;
  return CKR_OK;
}

CK_RV akv_ecdsa_rs_to_der(const unsigned char *rs, size_t len, unsigned char **der, size_t *der_len)
{
  CK_RV rv = CKR_HOST_MEMORY;
  ECDSA_SIG *sig = NULL;
  BIGNUM *r = NULL, *s = NULL;
  unsigned char *p = NULL;
  int n;

  if (len == 0 || len % 2)
    return CKR_SIGNATURE_LEN_RANGE;
  sig = ECDSA_SIG_new();
  r = BN_bin2bn(rs, (int)(len / 2), NULL);
  s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
  if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s))
    goto out;
  r = s = NULL; /* owned by sig now */
  n = i2d_ECDSA_SIG(sig, &p);
  if (n <= 0)
    goto out;
  *der = p;
  *der_len = (size_t)n;
  rv = CKR_OK;
out:
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return rv;
}

/* ---- setup and input ------------------------------------------------------------------------- */

static CK_RV mac_setup(struct akv_op *op)
{
  CK_RV rv = CKR_FUNCTION_FAILED;
  EVP_MAC *mac = EVP_MAC_fetch(akv_libctx(), "HMAC", NULL);
  OSSL_PARAM params[2];

  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               (char *)akv_mech_hash_name(op->hash), 0);
  params[1] = OSSL_PARAM_construct_end();
  if (!mac)
    goto out;
  op->mac = EVP_MAC_CTX_new(mac);
  if (!op->mac) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  if (!EVP_MAC_init(op->mac, op->obj->secret, op->obj->secret_len, params))
    goto out;
  rv = CKR_OK;
out:
  EVP_MAC_free(mac);
  return rv;
}

static CK_RV md_setup(struct akv_op *op)
{
  CK_RV rv = CKR_FUNCTION_FAILED;
  EVP_MD *md = akv_mech_md_fetch(op->hash);
  if (!md)
    goto out;
  op->md = EVP_MD_CTX_new();
  if (!op->md) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  if (!EVP_DigestInit_ex2(op->md, md, NULL))
    goto out;
  rv = CKR_OK;
out:
  EVP_MD_free(md);
  return rv;
}

/* Hash-and-sign mechanisms hash here; raw ones and remote HMAC accumulate (bounded) input. */
static CK_RV sv_setup(struct akv_op *op)
{
  const struct akv_mech *row = op->mech;
  if (row->fam == AKV_MF_HMAC) {
    if (!op->remote)
      return mac_setup(op);
    op->in_limit = AKV_MAX_HMAC_INPUT;
    return CKR_OK;
  }
  if (row->hash)
    return md_setup(op);
  if (row->fam == AKV_MF_RSA_PKCS) {
    size_t k = akv_sign_len(op);
    op->in_limit = k > 11 ? k - 11 : 0;
  } else if (row->fam == AKV_MF_RSA_PSS) {
    op->in_limit = akv_mech_hash_len(op->hash);
  } else {
    op->in_limit = AKV_MAX_RAW_ECDSA;
  }
  return CKR_OK;
}

static CK_RV sv_feed(struct akv_op *op, const CK_BYTE *data, CK_ULONG len)
{
  if (len == 0)
    return CKR_OK;
  if (op->md)
    return EVP_DigestUpdate(op->md, data, len) ? CKR_OK : CKR_FUNCTION_FAILED;
  if (op->mac)
    return EVP_MAC_update(op->mac, data, len) ? CKR_OK : CKR_FUNCTION_FAILED;
  return akv_outbuf_append(&op->in, data, len, op->in_limit);
}

/* What goes to the vault: the bytes the JWA algorithm takes (*tbs, pointing into buf or the
 * input in/in_len: the accumulated input, or a single-part call's data) and that algorithm. For
 * remote HMAC that is the message itself. Hash-and-sign mechanisms take the digest of op->md. */
static CK_RV sv_tbs(struct akv_op *op, const unsigned char *in, size_t in_len, unsigned char *buf,
                    const unsigned char **tbs, size_t *tbs_len, const char **alg)
{
  unsigned char tmp[EVP_MAX_MD_SIZE];
  unsigned int tmp_len = 0;
  CK_MECHANISM_TYPE hash;
  const unsigned char *digest;
  CK_RV rv = CKR_OK;

  *alg = op->alg;
  if (op->md) {
    if (!EVP_DigestFinal_ex(op->md, tmp, &tmp_len))
      return CKR_FUNCTION_FAILED;
    in = tmp;
    in_len = tmp_len;
  }
  switch (op->mech->fam) {
  case AKV_MF_HMAC:
    *tbs = in;
    *tbs_len = in_len;
    return CKR_OK;
  case AKV_MF_RSA_PKCS:
    if (!op->md) {
      if (in_len == 0)
        return CKR_DATA_LEN_RANGE;
      if (akv_mech_digestinfo_parse(in, in_len, &hash, &digest) == CKR_OK) {
        *alg = akv_mech_jwa_rs(hash);
        in = digest;
        in_len = akv_mech_hash_len(hash);
      } else {
        /* Any other input (a SHA-1 DigestInfo, the TLS 1.0 MD5+SHA-1 pair...) is signed as is
         * with RSNULL, PKCS#1 v1.5 over the caller's bytes: exactly CKM_RSA_PKCS. */
        akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: %zu bytes that are no SHA-2 DigestInfo: RSNULL",
                in_len);
        *alg = "RSNULL";
        *tbs = in;
        *tbs_len = in_len;
        return CKR_OK;
      }
    }
    break;
  case AKV_MF_RSA_PSS:
    if (in_len != akv_mech_hash_len(op->hash))
      return CKR_DATA_LEN_RANGE;
    break;
  case AKV_MF_ECDSA:
    rv = akv_ecdsa_digest(op->obj->key->crv, in, in_len, buf, tbs_len);
    *tbs = buf;
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return rv;
  default:
    return CKR_GENERAL_ERROR;
  }
  memcpy(buf, in, in_len);
  *tbs = buf;
  *tbs_len = in_len;
  OPENSSL_cleanse(tmp, sizeof(tmp));
  return CKR_OK;
}

/* ---- sign ------------------------------------------------------------------------------------ */

static CK_RV sign_remote(struct akv_session *s, struct akv_op *op, const unsigned char *in,
                         size_t in_len, struct kv_bytes *sig)
{
  unsigned char digest[AKV_MAX_DIGEST];
  const unsigned char *tbs = NULL;
  size_t tbs_len = 0;
  const char *alg = NULL;
  const struct kv_key *key = op->obj->key;
  long st = 0;
  kv_rc rc;
  CK_RV rv = sv_tbs(op, in, in_len, digest, &tbs, &tbs_len, &alg);

  if (rv != CKR_OK)
    return rv;
  /* The version pinned when the object was listed, never "latest". */
  rc = kv_sign(op->obj->slot->client, key->name, key->version, alg, tbs, tbs_len, sig, &st);
  if (rc != KV_OK)
    return akv_session_key_failed(s, op->obj, rc, st); /* deleted/disabled version */
  akv_dbg(AKV_LOGC_P11, "%s: signed with %s/%s (%s)", op->mech->name, key->name, key->version, alg);
  return CKR_OK;
}

/* Produces the signature once the caller's buffer is known to be large enough. */
static CK_RV sign_finish(struct akv_session *s, struct akv_op *op, const unsigned char *in,
                         size_t in_len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
  struct kv_bytes res = {NULL, 0};
  size_t n = akv_sign_len(op), mac_len = 0;
  CK_RV rv;

  if (op->mac) {
    if (!EVP_MAC_final(op->mac, sig, &mac_len, *sig_len))
      return CKR_FUNCTION_FAILED;
    *sig_len = mac_len;
    return CKR_OK;
  }
  rv = sign_remote(s, op, in, in_len, &res);
  if (rv != CKR_OK)
    goto out;
  if (res.len > n || res.len == 0 ||
      (res.len < n && op->mech->fam != AKV_MF_RSA_PKCS && op->mech->fam != AKV_MF_RSA_PSS)) {
    akv_err(AKV_LOGC_P11, "%s: the vault returned a %zu-byte signature, expected %zu",
            op->mech->name, res.len, n);
    rv = CKR_DEVICE_ERROR;
    goto out;
  }
  /* An RSA signature is an integer: one that came without its leading zero bytes is padded back
   * to the modulus size PKCS#1 (I2OSP) prescribes. */
  memset(sig, 0, n - res.len);
  memcpy(sig + (n - res.len), res.data, res.len);
  *sig_len = n;
out:
  kv_bytes_free(&res);
  return rv;
}

static CK_RV sign_setup(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj,
                        enum akv_op_kind kind)
{
  struct akv_op *op = NULL;
  CK_RV rv = akv_op_begin(s, kind, m, obj, &op);
  if (rv != CKR_OK)
    return rv;
  rv = sv_setup(op);
  if (rv != CKR_OK)
    akv_op_end(s, kind);
  return rv;
}

CK_RV akv_sign_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj)
{
  return sign_setup(s, m, obj, AKV_OP_SIGN);
}

CK_RV akv_sign_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey)
{
  struct akv_object *obj = NULL;
  CK_RV rv;
  if (s->ops[AKV_OP_SIGN])
    return CKR_OPERATION_ACTIVE;
  rv = akv_session_op_key(s, hkey, &obj);
  if (rv == CKR_OK)
    rv = akv_sign_init_obj(s, m, obj);
  akv_object_unref(obj);
  return rv;
}

/* Length queries and too-small buffers never reach the vault: the size is known from the key.
 * Returns 1 when the signature must be computed, else 0 with *rv the answer. */
static int sign_needed(const struct akv_op *op, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len, CK_RV *rv)
{
  size_t n = akv_sign_len(op);
  if (!n) {
    *rv = CKR_GENERAL_ERROR;
    return 0;
  }
  if (sig && *sig_len >= n)
    return 1;
  *rv = akv_outbuf_copy_out(NULL, n, sig, sig_len); /* sets *sig_len; BUFFER_TOO_SMALL when sig */
  return 0;
}

CK_RV akv_sign(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, CK_BYTE_PTR sig,
               CK_ULONG_PTR sig_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_SIGN);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  if (op->updated) {
    rv = CKR_OPERATION_ACTIVE; /* C_Sign after C_SignUpdate: the caller lost track */
    goto out;
  }
  if (!sign_needed(op, sig, sig_len, &rv))
    goto out;
  if (!op->md && !op->mac) {
    /* Raw input in one part: signed from the caller's buffer, not copied into op->in (an
     * allocation, a copy and a wipe per C_Sign), within the same limit sv_feed applies. */
    rv = len > op->in_limit ? CKR_DATA_LEN_RANGE : sign_finish(s, op, data, len, sig, sig_len);
    goto out;
  }
  rv = sv_feed(op, data, len);
  if (rv == CKR_OK)
    rv = sign_finish(s, op, op->in.data, op->in.len, sig, sig_len);
out:
  return akv_op_settle(s, AKV_OP_SIGN, rv, sig);
}

CK_RV akv_sign_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_SIGN);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  op->updated = 1;
  rv = sv_feed(op, part, len);
  if (rv != CKR_OK)
    akv_op_end(s, AKV_OP_SIGN);
  return rv;
}

CK_RV akv_sign_final(struct akv_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_SIGN);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  if (sign_needed(op, sig, sig_len, &rv))
    rv = sign_finish(s, op, op->in.data, op->in.len, sig, sig_len);
  return akv_op_settle(s, AKV_OP_SIGN, rv, sig);
}

/* ---- verify ---------------------------------------------------------------------------------- */

static CK_RV verify_local_pkey(struct akv_op *op, const unsigned char *sig, size_t sig_len)
{
  CK_RV rv = CKR_FUNCTION_FAILED;
  EVP_PKEY_CTX *ctx = NULL;
  EVP_PKEY *pk;
  EVP_MD *md = NULL;
  unsigned char digest[AKV_MAX_DIGEST];
  unsigned int dlen = 0;
  const unsigned char *tbs = op->in.data;
  size_t tbs_len = op->in.len;
  unsigned char *der = NULL;
  size_t der_len = 0;
  int fam = op->mech->fam;

  if (op->md) {
    if (!EVP_DigestFinal_ex(op->md, digest, &dlen))
      goto out;
    tbs = digest;
    tbs_len = dlen;
  }
  if (fam == AKV_MF_RSA_PSS && tbs_len != akv_mech_hash_len(op->hash)) {
    rv = CKR_DATA_LEN_RANGE;
    goto out;
  }
  if (fam == AKV_MF_ECDSA) {
    if (tbs_len == 0) {
      rv = CKR_DATA_LEN_RANGE;
      goto out;
    }
    rv = akv_ecdsa_rs_to_der(sig, sig_len, &der, &der_len);
    if (rv != CKR_OK)
      goto out;
    rv = CKR_FUNCTION_FAILED;
    sig = der;
    sig_len = der_len;
  }
  pk = akv_object_pkey(op->obj); /* the context keeps its own reference */
  ctx = pk ? EVP_PKEY_CTX_new_from_pkey(akv_libctx(), pk, NULL) : NULL;
  EVP_PKEY_free(pk);
  if (!ctx || EVP_PKEY_verify_init(ctx) <= 0)
    goto out;
  if (fam == AKV_MF_RSA_PKCS || fam == AKV_MF_RSA_PSS) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, fam == AKV_MF_RSA_PSS ? RSA_PKCS1_PSS_PADDING
                                                                : RSA_PKCS1_PADDING) <= 0)
      goto out;
    /* Raw CKM_RSA_PKCS verifies the caller's bytes (usually a DigestInfo) as they are. */
    if (op->hash) {
      md = akv_mech_md_fetch(op->hash);
      if (!md || EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0)
        goto out;
    }
    if (fam == AKV_MF_RSA_PSS &&
        (EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)akv_mech_hash_len(op->hash)) <= 0))
      goto out;
  }
  rv = EVP_PKEY_verify(ctx, sig, sig_len, tbs, tbs_len) == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
  ERR_clear_error();
out:
  OPENSSL_free(der);
  EVP_MD_free(md);
  EVP_PKEY_CTX_free(ctx);
  return rv;
}

static CK_RV verify_local_mac(struct akv_op *op, const unsigned char *sig, size_t sig_len)
{
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mac_len = 0;
  CK_RV rv;
  if (!EVP_MAC_final(op->mac, mac, &mac_len, sizeof(mac)))
    return CKR_FUNCTION_FAILED;
  rv = (mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0) ? CKR_OK
                                                                     : CKR_SIGNATURE_INVALID;
  OPENSSL_cleanse(mac, sizeof(mac));
  return rv;
}

static CK_RV verify_remote(struct akv_session *s, struct akv_op *op, const unsigned char *sig,
                           size_t sig_len)
{
  unsigned char digest[AKV_MAX_DIGEST];
  const unsigned char *tbs = NULL;
  size_t tbs_len = 0;
  const char *alg = NULL;
  const struct kv_key *key = op->obj->key;
  int valid = 0;
  long st = 0;
  kv_rc rc;
  CK_RV rv = sv_tbs(op, op->in.data, op->in.len, digest, &tbs, &tbs_len, &alg);

  if (rv != CKR_OK)
    return rv;
  rc = kv_verify(op->obj->slot->client, key->name, key->version, alg, tbs, tbs_len, sig, sig_len,
                 &valid, &st);
  if (rc != KV_OK)
    return akv_session_key_failed(s, op->obj, rc, st); /* deleted/disabled version */
  return valid ? CKR_OK : CKR_SIGNATURE_INVALID;
}

static CK_RV verify_finish(struct akv_session *s, struct akv_op *op, const CK_BYTE *sig,
                           CK_ULONG sig_len)
{
  if (sig_len != akv_sign_len(op))
    return CKR_SIGNATURE_LEN_RANGE;
  if (op->mac)
    return verify_local_mac(op, sig, sig_len);
  if (op->remote)
    return verify_remote(s, op, sig, sig_len);
  return verify_local_pkey(op, sig, sig_len);
}

CK_RV akv_verify_init_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *obj)
{
  return sign_setup(s, m, obj, AKV_OP_VERIFY);
}

CK_RV akv_verify_init(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hkey)
{
  struct akv_object *obj = NULL;
  CK_RV rv;
  if (s->ops[AKV_OP_VERIFY])
    return CKR_OPERATION_ACTIVE;
  rv = akv_session_op_key(s, hkey, &obj);
  if (rv == CKR_OK)
    rv = akv_verify_init_obj(s, m, obj);
  akv_object_unref(obj);
  return rv;
}

CK_RV akv_verify(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, const CK_BYTE *sig,
                 CK_ULONG sig_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_VERIFY);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  if (op->updated)
    rv = CKR_OPERATION_ACTIVE;
  else if ((rv = sv_feed(op, data, len)) == CKR_OK)
    rv = verify_finish(s, op, sig, sig_len);
  akv_op_end(s, AKV_OP_VERIFY);
  return rv;
}

CK_RV akv_verify_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_VERIFY);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  op->updated = 1;
  rv = sv_feed(op, part, len);
  if (rv != CKR_OK)
    akv_op_end(s, AKV_OP_VERIFY);
  return rv;
}

CK_RV akv_verify_final(struct akv_session *s, const CK_BYTE *sig, CK_ULONG sig_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_VERIFY);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  rv = verify_finish(s, op, sig, sig_len);
  akv_op_end(s, AKV_OP_VERIFY);
  return rv;
}
