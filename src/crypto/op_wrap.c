/* SPDX-License-Identifier: Apache-2.0 */
/* Key management that stays within PKCS#11 session objects: wrapping a session secret key with a
 * vault key (or another session key), unwrapping into a new session secret key, and generating
 * session secret keys locally. Vault keys themselves are never exported. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "store/attrs.h"
#include "token/op.h"
#include "token/session.h"
#include "util/log.h"

#define AKV_MAX_GENERIC_SECRET 64

/* Template reads through src/store/attrs.c (the last occurrence of an attribute counts): 1 found,
 * 0 absent, -1 malformed. */
static int tmpl_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
  if (!akv_attrs_tmpl_find(tmpl, n, t))
    return 0;
  return akv_attrs_tmpl_ulong(tmpl, n, t, v) == CKR_OK ? 1 : -1;
}

/* A CK_BBOOL attribute present, well-formed and true. */
static int tmpl_true(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE t)
{
  CK_BBOOL b = CK_FALSE;
  return akv_attrs_tmpl_bool(tmpl, n, t, &b) == CKR_OK && b;
}

/* Common template rules for a new session secret key: a secret key class, a supported key type
 * (expected unless 0 = take it from the template), no token object. */
static CK_RV tmpl_secret(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_KEY_TYPE expected,
                         CK_KEY_TYPE *type)
{
  CK_ULONG cls = CKO_SECRET_KEY, kt = expected;
  int has_type;
  if (tmpl_ulong(tmpl, n, CKA_CLASS, &cls) < 0 ||
      (has_type = tmpl_ulong(tmpl, n, CKA_KEY_TYPE, &kt)) < 0)
    return CKR_ATTRIBUTE_VALUE_INVALID;
  if (cls != CKO_SECRET_KEY)
    return CKR_TEMPLATE_INCONSISTENT;
  if (!has_type && expected == 0)
    return CKR_TEMPLATE_INCOMPLETE;
  if ((expected && kt != expected) || (kt != CKK_AES && kt != CKK_GENERIC_SECRET))
    return CKR_TEMPLATE_INCONSISTENT;
  if (tmpl_true(tmpl, n, CKA_TOKEN)) {
    akv_warn(AKV_LOGC_P11, "creating keys in the vault is not supported yet: only session keys "
                           "(CKA_TOKEN=FALSE)");
    return CKR_FUNCTION_NOT_SUPPORTED;
  }
  *type = kt;
  return CKR_OK;
}

static CK_RV secret_publish(struct akv_session *s, CK_KEY_TYPE type, const unsigned char *value,
                            size_t len, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR out)
{
  CK_RV rv = CKR_OK;
  struct akv_object *obj;
  if (type == CKK_AES && len != 16 && len != 24 && len != 32)
    return CKR_KEY_SIZE_RANGE;
  obj = akv_object_new_session_secret(s->slot, type, value, len, tmpl, n, &rv);
  if (!obj)
    return rv != CKR_OK ? rv : CKR_HOST_MEMORY;
  return akv_session_add_object(s, obj, out);
}

/* ---- wrap ------------------------------------------------------------------------------------ */

static CK_RV as_wrapping_key_error(CK_RV rv, int unwrap)
{
  if (rv == CKR_KEY_HANDLE_INVALID)
    return unwrap ? CKR_UNWRAPPING_KEY_HANDLE_INVALID : CKR_WRAPPING_KEY_HANDLE_INVALID;
  if (rv == CKR_KEY_TYPE_INCONSISTENT)
    return unwrap ? CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT : CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
  if (rv == CKR_KEY_SIZE_RANGE)
    return unwrap ? CKR_UNWRAPPING_KEY_SIZE_RANGE : CKR_WRAPPING_KEY_SIZE_RANGE;
  return rv;
}

CK_RV akv_wrap_key_obj(struct akv_session *s, const CK_MECHANISM *m, struct akv_object *wrapping,
                       struct akv_object *key, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  struct akv_op *op = NULL;
  struct akv_outbuf res = {NULL, 0, 0};
  const CK_ATTRIBUTE *extractable;
  size_t want;
  CK_RV rv;

  if (key->slot != s->slot || key->cls != CKO_SECRET_KEY) {
    rv = CKR_KEY_HANDLE_INVALID;
    goto out;
  }
  if (!key->secret) {
    rv = CKR_KEY_NOT_WRAPPABLE; /* a vault key never leaves the vault */
    goto out;
  }
  extractable = akv_object_attr(key, CKA_EXTRACTABLE);
  if (extractable && extractable->ulValueLen == sizeof(CK_BBOOL) &&
      !*(const CK_BBOOL *)extractable->pValue) {
    rv = CKR_KEY_UNEXTRACTABLE;
    goto out;
  }
  /* CKA_WRAP_WITH_TRUSTED: only a CKA_TRUSTED key may wrap it (docs/security.md "Key
   * attributes"). */
  if (tmpl_true(key->attrs, key->n_attrs, CKA_WRAP_WITH_TRUSTED) &&
      !tmpl_true(wrapping->attrs, wrapping->n_attrs, CKA_TRUSTED)) {
    rv = CKR_KEY_NOT_WRAPPABLE;
    goto out;
  }
  rv = akv_op_new(s, AKV_OP_ENCRYPT, CKF_WRAP, m, wrapping, &op);
  if (rv != CKR_OK) {
    rv = as_wrapping_key_error(rv, 0);
    goto out;
  }
  /* The size is known exactly: no request for a length query or a small buffer. */
  want = akv_cipher_out_len(op, KV_WRAP, key->secret_len);
  if (!out || *out_len < want) {
    rv = akv_outbuf_copy_out(NULL, want, out, out_len);
    goto out;
  }
  rv = akv_cipher_run(s, op, KV_WRAP, key->secret, key->secret_len, &res);
  if (rv == CKR_DATA_LEN_RANGE)
    rv = CKR_KEY_SIZE_RANGE;
  if (rv == CKR_OK)
    rv = akv_outbuf_copy_out(res.data, res.len, out, out_len);
out:
  akv_outbuf_clear(&res);
  akv_op_free(op);
  return rv;
}

CK_RV akv_wrap_key(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hwrapping,
                   CK_OBJECT_HANDLE hkey, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  struct akv_object *wrapping = NULL, *key = NULL;
  CK_RV rv = akv_session_op_key(s, hwrapping, &wrapping);
  if (rv != CKR_OK) {
    rv = as_wrapping_key_error(rv, 0);
    goto out;
  }
  rv = akv_session_op_key(s, hkey, &key);
  if (rv == CKR_OK)
    rv = akv_wrap_key_obj(s, m, wrapping, key, out, out_len);
out:
  akv_object_unref(key);
  akv_object_unref(wrapping);
  return rv;
}

/* ---- unwrap ---------------------------------------------------------------------------------- */

CK_RV akv_unwrap_key_obj(struct akv_session *s, const CK_MECHANISM *m,
                         struct akv_object *unwrapping, const CK_BYTE *wrapped, CK_ULONG len,
                         const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
  struct akv_op *op = NULL;
  struct akv_outbuf res = {NULL, 0, 0};
  CK_KEY_TYPE type = 0;
  CK_ULONG value_len = 0;
  int has_len;
  CK_RV rv = tmpl_secret(tmpl, n, 0, &type);

  if (rv != CKR_OK)
    goto out;
  has_len = tmpl_ulong(tmpl, n, CKA_VALUE_LEN, &value_len);
  if (has_len < 0) {
    rv = CKR_ATTRIBUTE_VALUE_INVALID;
    goto out;
  }
  rv = akv_op_new(s, AKV_OP_DECRYPT, CKF_UNWRAP, m, unwrapping, &op);
  if (rv != CKR_OK) {
    rv = as_wrapping_key_error(rv, 1);
    goto out;
  }
  rv = akv_cipher_run(s, op, KV_UNWRAP, wrapped, len, &res);
  if (rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
    rv = CKR_WRAPPED_KEY_LEN_RANGE;
  else if (rv == CKR_ENCRYPTED_DATA_INVALID)
    rv = CKR_WRAPPED_KEY_INVALID;
  if (rv != CKR_OK)
    goto out;
  if (has_len && value_len != res.len) {
    rv = CKR_TEMPLATE_INCONSISTENT;
    goto out;
  }
  rv = secret_publish(s, type, res.data, res.len, tmpl, n, out);
out:
  akv_outbuf_clear(&res);
  akv_op_free(op);
  return rv;
}

CK_RV akv_unwrap_key(struct akv_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hunwrapping,
                     const CK_BYTE *wrapped, CK_ULONG len, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR out)
{
  struct akv_object *unwrapping = NULL;
  CK_RV rv = akv_session_op_key(s, hunwrapping, &unwrapping);
  if (rv != CKR_OK)
    return as_wrapping_key_error(rv, 1);
  rv = akv_unwrap_key_obj(s, m, unwrapping, wrapped, len, tmpl, n, out);
  akv_object_unref(unwrapping);
  return rv;
}

/* ---- generate -------------------------------------------------------------------------------- */

CK_RV akv_generate_key(struct akv_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *tmpl,
                       CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
  unsigned char value[AKV_MAX_GENERIC_SECRET];
  const struct akv_mech *row = akv_mech_for_slot(s->slot->cfg->kind, m->mechanism);
  CK_KEY_TYPE type = 0;
  CK_ULONG len = 0;
  int has_len;
  CK_RV rv;

  if (!row || !(row->flags & CKF_GENERATE))
    return CKR_MECHANISM_INVALID;
  if (m->ulParameterLen)
    return CKR_MECHANISM_PARAM_INVALID;
  rv = tmpl_secret(tmpl, n, row->key_type, &type);
  if (rv != CKR_OK)
    return rv;
  has_len = tmpl_ulong(tmpl, n, CKA_VALUE_LEN, &len);
  if (has_len < 0)
    return CKR_ATTRIBUTE_VALUE_INVALID;
  if (!has_len)
    return CKR_TEMPLATE_INCOMPLETE;
  if (len < row->min_size / (type == CKK_AES ? 1 : 8) ||
      len > row->max_size / (type == CKK_AES ? 1 : 8))
    return CKR_KEY_SIZE_RANGE;
  if (type == CKK_AES && len != 16 && len != 24 && len != 32)
    return CKR_KEY_SIZE_RANGE;
  if (RAND_bytes_ex(akv_libctx(), value, len, 0) != 1) {
    akv_err(AKV_LOGC_P11, "C_GenerateKey: the OpenSSL DRBG failed");
    return CKR_FUNCTION_FAILED;
  }
  rv = secret_publish(s, type, value, len, tmpl, n, out);
  OPENSSL_cleanse(value, sizeof(value));
  return rv;
}
