/* PKCS#11 surface of the crypto group: mechanism queries, encrypt/decrypt, digest, sign/verify,
 * key generation, wrapping and random. Entry points check arguments, acquire the session and call
 * one model function (src/op_*.c). */
#include "akv.h"

/* Acquires the session or returns its error; every function below starts with it. */
static CK_RV session_begin(CK_SESSION_HANDLE h, struct akv_session **s)
{
  CK_RV rv = akv_module_check();
  if (rv != CKR_OK)
    return rv;
  return akv_session_acquire(h, s);
}

/* Temporary body until the operation is wired to its model function. */
static CK_RV pending(CK_SESSION_HANDLE h)
{
  struct akv_session *s = NULL;
  CK_RV rv = session_begin(h, &s);
  if (rv != CKR_OK)
    return rv;
  akv_session_release(s);
  return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
  CK_RV rv = akv_module_check();
  if (rv != CKR_OK)
    return rv;
  if (!count)
    return CKR_ARGUMENTS_BAD;
  if (!akv_slot_get(slot_id))
    return CKR_SLOT_ID_INVALID;
  (void)list;
  return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
  CK_RV rv = akv_module_check();
  if (rv != CKR_OK)
    return rv;
  if (!info)
    return CKR_ARGUMENTS_BAD;
  if (!akv_slot_get(slot_id))
    return CKR_SLOT_ID_INVALID;
  (void)type;
  return CKR_MECHANISM_INVALID;
}

#define INIT_FN(name)                                                                              \
  CK_RV name(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)                    \
  {                                                                                                \
    (void)key;                                                                                     \
    if (!mech)                                                                                     \
      return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;                \
    return pending(h);                                                                             \
  }

INIT_FN(C_EncryptInit)
INIT_FN(C_DecryptInit)
INIT_FN(C_SignInit)
INIT_FN(C_SignRecoverInit)
INIT_FN(C_VerifyInit)
INIT_FN(C_VerifyRecoverInit)

CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech)
{
  if (!mech)
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

/* one-shot / update shaped: (in, in_len, out, out_len) */
#define INOUT_FN(name)                                                                             \
  CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,              \
             CK_ULONG_PTR out_len)                                                                 \
  {                                                                                                \
    (void)in;                                                                                      \
    (void)in_len;                                                                                  \
    (void)out;                                                                                     \
    if (!out_len)                                                                                  \
      return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;              \
    return pending(h);                                                                             \
  }

INOUT_FN(C_Encrypt)
INOUT_FN(C_EncryptUpdate)
INOUT_FN(C_Decrypt)
INOUT_FN(C_DecryptUpdate)
INOUT_FN(C_Digest)
INOUT_FN(C_Sign)
INOUT_FN(C_SignRecover)
INOUT_FN(C_VerifyRecover)
INOUT_FN(C_DigestEncryptUpdate)
INOUT_FN(C_DecryptDigestUpdate)
INOUT_FN(C_SignEncryptUpdate)
INOUT_FN(C_DecryptVerifyUpdate)

#define FINAL_FN(name)                                                                             \
  CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)                          \
  {                                                                                                \
    (void)out;                                                                                     \
    if (!out_len)                                                                                  \
      return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;              \
    return pending(h);                                                                             \
  }

FINAL_FN(C_EncryptFinal)
FINAL_FN(C_DecryptFinal)
FINAL_FN(C_DigestFinal)
FINAL_FN(C_SignFinal)

#define UPDATE_FN(name)                                                                            \
  CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len)                            \
  {                                                                                                \
    if (!part && part_len)                                                                         \
      return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;              \
    return pending(h);                                                                             \
  }

UPDATE_FN(C_DigestUpdate)
UPDATE_FN(C_SignUpdate)
UPDATE_FN(C_VerifyUpdate)
UPDATE_FN(C_VerifyFinal)

CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
  (void)key;
  return pending(h);
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
               CK_ULONG sig_len)
{
  if ((!data && data_len) || (!sig && sig_len))
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR tmpl,
                    CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  if (!mech || !key || (!tmpl && count))
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_tmpl,
                        CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_count,
                        CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
  if (!mech || !pub || !priv || (!pub_tmpl && pub_count) || (!priv_tmpl && priv_count))
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

CK_RV C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping_key,
                CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len)
{
  (void)wrapping_key;
  (void)key;
  (void)wrapped;
  if (!mech || !wrapped_len)
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping_key,
                  CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR tmpl,
                  CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  (void)unwrapping_key;
  if (!mech || !wrapped || !key || (!tmpl && count))
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  (void)wrapped_len;
  return pending(h);
}

CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base_key,
                  CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  (void)base_key;
  if (!mech || !key || (!tmpl && count))
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG seed_len)
{
  struct akv_session *s = NULL;
  CK_RV rv = session_begin(h, &s);
  if (rv != CKR_OK)
    return rv;
  akv_session_release(s);
  if (!seed && seed_len)
    return CKR_ARGUMENTS_BAD;
  return CKR_RANDOM_SEED_NOT_SUPPORTED;
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
  if (!out && len)
    return akv_module_check() != CKR_OK ? akv_module_check() : CKR_ARGUMENTS_BAD;
  return pending(h);
}
