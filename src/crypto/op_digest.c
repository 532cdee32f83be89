/* SPDX-License-Identifier: Apache-2.0 */
/* Message digests (always local, incremental) and random numbers (the Managed HSM's RNG on HSM
 * slots, OpenSSL's DRBG in the module's library context elsewhere). */
#include <string.h>

#include <openssl/rand.h>

#include "token/op.h"
#include "token/session.h"
#include "util/log.h"

CK_RV akv_digest_init(struct akv_session *s, const CK_MECHANISM *m)
{
  struct akv_op *op = NULL;
  EVP_MD *md = NULL;
  CK_RV rv = akv_op_begin(s, AKV_OP_DIGEST, m, NULL, &op);
  if (rv != CKR_OK)
    return rv;
  rv = CKR_FUNCTION_FAILED;
  md = akv_mech_md_fetch(op->hash);
  op->md = EVP_MD_CTX_new();
  if (!op->md)
    rv = CKR_HOST_MEMORY;
  else if (md && EVP_DigestInit_ex2(op->md, md, NULL))
    rv = CKR_OK;
  EVP_MD_free(md);
  if (rv != CKR_OK)
    akv_op_end(s, AKV_OP_DIGEST);
  return rv;
}

static CK_RV digest_finish(struct akv_op *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  size_t want = akv_mech_hash_len(op->hash);
  /* Answer length queries before finalising: the hash state must survive them. */
  if (!out || *out_len < want)
    return akv_outbuf_copy_out(NULL, want, out, out_len);
  if (!EVP_DigestFinal_ex(op->md, buf, &n))
    return CKR_FUNCTION_FAILED;
  return akv_outbuf_copy_out(buf, n, out, out_len);
}

CK_RV akv_digest(struct akv_session *s, const CK_BYTE *data, CK_ULONG len, CK_BYTE_PTR out,
                 CK_ULONG_PTR out_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_DIGEST);
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  if (op->updated)
    rv = CKR_OPERATION_ACTIVE;
  else if (out && *out_len >= akv_mech_hash_len(op->hash) && len &&
           !EVP_DigestUpdate(op->md, data, len))
    rv = CKR_FUNCTION_FAILED;
  else
    rv = digest_finish(op, out, out_len);
  return akv_op_settle(s, AKV_OP_DIGEST, rv, out);
}

CK_RV akv_digest_update(struct akv_session *s, const CK_BYTE *part, CK_ULONG len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_DIGEST);
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  op->updated = 1;
  if (len && !EVP_DigestUpdate(op->md, part, len)) {
    akv_op_end(s, AKV_OP_DIGEST);
    return CKR_FUNCTION_FAILED;
  }
  return CKR_OK;
}

/* Only session secret keys that are not sensitive can be digested: vault keys never leave the
 * vault. */
CK_RV akv_digest_key(struct akv_session *s, CK_OBJECT_HANDLE hkey)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_DIGEST);
  struct akv_object *obj = NULL;
  const CK_ATTRIBUTE *sensitive;
  CK_RV rv;
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  op->updated = 1;
  rv = akv_session_op_key(s, hkey, &obj);
  if (rv != CKR_OK)
    goto out;
  sensitive = akv_object_attr(obj, CKA_SENSITIVE);
  if (obj->cls != CKO_SECRET_KEY || !obj->secret ||
      (sensitive && sensitive->ulValueLen == sizeof(CK_BBOOL) &&
       *(const CK_BBOOL *)sensitive->pValue)) {
    rv = CKR_KEY_INDIGESTIBLE;
    goto out;
  }
  if (!EVP_DigestUpdate(op->md, obj->secret, obj->secret_len))
    rv = CKR_FUNCTION_FAILED;
out:
  akv_object_unref(obj);
  if (rv != CKR_OK)
    akv_op_end(s, AKV_OP_DIGEST);
  return rv;
}

CK_RV akv_digest_final(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  struct akv_op *op = akv_op_peek(s, AKV_OP_DIGEST);
  if (!op)
    return CKR_OPERATION_NOT_INITIALIZED;
  return akv_op_settle(s, AKV_OP_DIGEST, digest_finish(op, out, out_len), out);
}

CK_RV akv_generate_random(struct akv_session *s, CK_BYTE_PTR out, CK_ULONG len)
{
  long st = 0;
  kv_rc rc;
  if (len == 0)
    return CKR_OK;
  if (s->slot->cfg->kind == AKV_VAULT_MHSM) {
    rc = kv_random(s->slot->client, out, len, &st);
    return rc == KV_OK ? CKR_OK : akv_session_fail(s, rc, st);
  }
  if (RAND_bytes_ex(akv_libctx(), out, len, 0) != 1) {
    akv_err(AKV_LOGC_P11, "C_GenerateRandom: the OpenSSL DRBG failed");
    return CKR_FUNCTION_FAILED;
  }
  return CKR_OK;
}
