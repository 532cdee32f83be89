/* SPDX-License-Identifier: Apache-2.0 */
/* The operation lifecycle on a session (src/token/op.h): validating mechanism and key at *Init,
 * installing, looking up, settling and freeing the session's operations. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "store/cache.h"
#include "token/mech.h"
#include "token/op.h"
#include "util/log.h"

/* CKA_ALLOWED_MECHANISMS, when the object has it, restricts the mechanisms used with the key. */
static int mechanism_allowed(const struct akv_object *obj, CK_MECHANISM_TYPE type)
{
  const CK_ATTRIBUTE *a = akv_object_attr(obj, CKA_ALLOWED_MECHANISMS);
  const CK_MECHANISM_TYPE *list;
  if (!a || !a->pValue)
    return 1;
  list = a->pValue;
  for (CK_ULONG i = 0; i < a->ulValueLen / sizeof(CK_MECHANISM_TYPE); i++)
    if (list[i] == type)
      return 1;
  return 0;
}

/* The Key Vault operation (JWK key_ops name and bit) behind a PKCS#11 usage flag. */
static const char *need_op(CK_FLAGS need, unsigned *bit)
{
  static const struct {
    CK_FLAGS need;
    unsigned bit;
  } ops[] = {
      {CKF_SIGN, KV_OP_SIGN},       {CKF_VERIFY, KV_OP_VERIFY}, {CKF_ENCRYPT, KV_OP_ENCRYPT},
      {CKF_DECRYPT, KV_OP_DECRYPT}, {CKF_WRAP, KV_OP_WRAP},     {CKF_UNWRAP, KV_OP_UNWRAP},
  };
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (ops[i].need == need) {
      *bit = ops[i].bit;
      return kv_key_op_name(ops[i].bit);
    }
  *bit = 0;
  return "this operation";
}

/* A *Init refused because the vault key does not permit the operation names the key, what it
 * permits and the fix (docs/troubleshooting.md): a bare CKR_KEY_FUNCTION_NOT_PERMITTED leaves a
 * user guessing. The wrong object of a permitted key (signing with the public key object) and
 * session keys are the caller's own choice: a debug line. */
static void refused_log(const char *mech, const struct akv_object *obj, CK_FLAGS need)
{
  char ops[128] = "";
  size_t n = 0;
  unsigned bit;
  const char *op = need_op(need, &bit);
  if (!obj->key || (obj->key->key_ops & bit)) {
    akv_dbg(AKV_LOGC_P11, "%s: this %s object does not allow %s", mech,
            !obj->key                    ? "session key"
            : obj->cls == CKO_PUBLIC_KEY ? "public key"
                                         : "private key",
            op);
    return;
  }
  n = kv_key_ops_str(obj->key->key_ops, ops, sizeof(ops));
  akv_warn(AKV_LOGC_P11,
           "%s: key %s does not allow %s (its key_ops: %s): CKR_KEY_FUNCTION_NOT_PERMITTED; fix: "
           "add %s to the key's permitted operations (az keyvault key set-attributes --name %s "
           "--ops %s%s%s)",
           mech, obj->key->name, op, n ? ops : "none", op, obj->key->name, ops, n ? " " : "", op);
}

static CK_BBOOL permitted(const struct akv_object *obj, CK_FLAGS need)
{
  switch (need) {
  case CKF_SIGN:
    return obj->can_sign;
  case CKF_VERIFY:
    return obj->can_verify;
  case CKF_ENCRYPT:
    return obj->can_encrypt;
  case CKF_DECRYPT:
    return obj->can_decrypt;
  case CKF_WRAP:
    return obj->can_wrap;
  case CKF_UNWRAP:
    return obj->can_unwrap;
  default:
    return CK_FALSE;
  }
}

/* The operation's vault key refused by its cached key_ops: the permission may have been granted
 * since the listing, so the key is read again once (docs/design.md "Permission granted since the
 * listing"). The refreshed object (now op->obj) when it permits the operation, else NULL. */
static struct akv_object *reread(struct akv_op *op, const struct akv_object *obj, CK_FLAGS need)
{
  struct akv_object *fresh = NULL;
  unsigned bit;

  need_op(need, &bit);
  if (!obj->key || (obj->key->key_ops & bit))
    return NULL; /* the wrong object of a permitted key, or a session key */
  if (akv_cache_reread(obj->slot->cache, obj, &fresh) != CKR_OK || !fresh)
    return NULL;
  if (!permitted(fresh, need)) {
    akv_object_unref(op->obj);
    op->obj = fresh; /* the refusal names what the vault says now */
    return NULL;
  }
  akv_info(AKV_LOGC_P11, "key %s: %s is permitted now (the vault's key_ops changed)",
           fresh->key->name, need_op(need, &bit));
  akv_object_unref(op->obj);
  op->obj = fresh;
  return fresh;
}

static int key_type_fits(const struct akv_mech *row, const struct akv_object *obj)
{
  if (row->fam == AKV_MF_HMAC)
    return obj->cls == CKO_SECRET_KEY &&
           (obj->key_type == CKK_GENERIC_SECRET || obj->key_type == CKK_AES);
  return obj->key_type == row->key_type;
}

/* Where the computation happens: private-key and secret-key operations of vault keys always in
 * the vault; public-key operations locally on the cached public key when the slot says so. */
static int decide_remote(const struct akv_session *s, const struct akv_object *obj, CK_FLAGS need)
{
  const struct akv_slot_config *cfg = s->slot->cfg;
  if (!obj->key)
    return 0;
  if (!akv_object_has_pkey(obj))
    return 1;
  if (need == CKF_VERIFY)
    return cfg->verify_remote;
  if (need == CKF_ENCRYPT || need == CKF_WRAP)
    return !cfg->public_ops_local;
  return 1;
}

/* Frees what an operation holds, wiping secrets; the struct itself stays. */
static void op_release(struct akv_op *op)
{
  EVP_MD_CTX_free(op->md);
  EVP_MAC_CTX_free(op->mac);
  akv_outbuf_clear(&op->in);
  akv_outbuf_clear(&op->out);
  if (op->aad) {
    OPENSSL_cleanse(op->aad, op->aad_len);
    free(op->aad);
  }
  OPENSSL_cleanse(op->iv, sizeof(op->iv));
  akv_object_unref(op->obj);
}

CK_RV akv_op_new(struct akv_session *s, enum akv_op_kind kind, CK_FLAGS need, const CK_MECHANISM *m,
                 struct akv_object *obj, struct akv_op **out)
{
  CK_RV rv;
  struct akv_op *op = NULL;
  const struct akv_mech *row = akv_mech_for_slot(s->slot->cfg->kind, m->mechanism);

  if (!row || !(row->flags & need)) {
    rv = CKR_MECHANISM_INVALID;
    goto out;
  }
  /* The storage of the session's last ended operation (already zeroed) saves a calloc/free pair
   * per C_SignInit + C_Sign. */
  op = s->spare_op;
  s->spare_op = NULL;
  if (!op && !(op = calloc(1, sizeof(*op)))) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  op->kind = kind;
  op->mech = row;
  if (need != CKF_DIGEST) {
    if (!obj) {
      rv = CKR_KEY_HANDLE_INVALID;
      goto out;
    }
    op->obj = akv_object_ref(obj);
    if (obj->slot != s->slot ||
        (obj->cls != CKO_PRIVATE_KEY && obj->cls != CKO_PUBLIC_KEY && obj->cls != CKO_SECRET_KEY) ||
        (!obj->key && !obj->secret)) {
      rv = CKR_KEY_HANDLE_INVALID;
      goto out;
    }
    if (!key_type_fits(row, obj)) {
      rv = CKR_KEY_TYPE_INCONSISTENT;
      goto out;
    }
    if (!mechanism_allowed(obj, row->type)) {
      rv = CKR_MECHANISM_INVALID;
      goto out;
    }
    if (!permitted(obj, need) && !(obj = reread(op, obj, need))) {
      refused_log(row->name, op->obj, need);
      rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
      goto out;
    }
    if (obj->secret && row->key_type == CKK_AES && obj->secret_len != 16 && obj->secret_len != 24 &&
        obj->secret_len != 32) {
      rv = CKR_KEY_SIZE_RANGE;
      goto out;
    }
    op->remote = decide_remote(s, obj, need);
    /* Local verify/encrypt needs the cached public key. */
    if (!op->remote && !obj->secret && !akv_object_has_pkey(obj)) {
      rv = CKR_KEY_HANDLE_INVALID;
      goto out;
    }
  }
  rv = akv_mech_params(op, m);
  if (rv != CKR_OK)
    goto out;
  *out = op;
  op = NULL;
out:
  akv_op_free(op);
  return rv;
}

CK_RV akv_op_begin(struct akv_session *s, enum akv_op_kind kind, const CK_MECHANISM *m,
                   struct akv_object *obj, struct akv_op **out)
{
  static const CK_FLAGS need[AKV_OP_COUNT] = {
      [AKV_OP_SIGN] = CKF_SIGN,       [AKV_OP_VERIFY] = CKF_VERIFY, [AKV_OP_ENCRYPT] = CKF_ENCRYPT,
      [AKV_OP_DECRYPT] = CKF_DECRYPT, [AKV_OP_DIGEST] = CKF_DIGEST,
  };
  struct akv_op *op = NULL;
  CK_RV rv;

  if (s->ops[kind])
    return CKR_OPERATION_ACTIVE;
  rv = akv_op_new(s, kind, need[kind], m, obj, &op);
  if (rv != CKR_OK)
    return rv;
  s->ops[kind] = op;
  *out = op;
  return CKR_OK;
}

struct akv_op *akv_op_peek(struct akv_session *s, enum akv_op_kind kind)
{
  return s->ops[kind];
}

void akv_op_end(struct akv_session *s, enum akv_op_kind kind)
{
  struct akv_op *op = s->ops[kind];
  s->ops[kind] = NULL;
  if (!op)
    return;
  if (s->spare_op) {
    akv_op_free(op);
    return;
  }
  /* Kept for the session's next operation with nothing in it: buffers wiped and freed, the key
   * released, every field zero. The session frees it when it ends. */
  op_release(op);
  memset(op, 0, sizeof(*op));
  s->spare_op = op;
}

CK_RV akv_op_settle(struct akv_session *s, enum akv_op_kind kind, CK_RV rv, const void *out)
{
  if (rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && !out))
    return rv;
  akv_op_end(s, kind);
  return rv;
}

void akv_op_free(struct akv_op *op)
{
  if (!op)
    return;
  op_release(op);
  free(op);
}
