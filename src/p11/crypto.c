/* PKCS#11 surface of the crypto group: mechanism queries, encrypt/decrypt, digest, sign/verify,
 * key generation, wrapping and random. Entry points check arguments, acquire the session, call
 * one model function (src/mech.c, src/op_*.c) and trace the result. */
#include "mech.h"
#include "op.h"
#include "p11/p11.h"
#include "write.h"

/* Module check, argument check, then the session (the order PKCS#11 callers expect). */
#define BEGIN(h, args_ok)                                                                          \
  struct akv_session *s = NULL;                                                                    \
  CK_RV rv;                                                                                        \
  AKV_P11_IN();                                                                                    \
  rv = akv_p11_session((h), (args_ok) ? 1 : 0, &s);                                               \
  if (rv != CKR_OK)                                                                                \
    return AKV_P11_OUT(rv)

/* BEGIN for the calls of an active operation: PKCS#11 2.40 §5.2 — a call that fails (other than
 * CKR_BUFFER_TOO_SMALL) ends the operation, bad arguments included; the return values stay as
 * BEGIN's. */
#define BEGIN_OP(h, args_ok, kind)                                                                 \
  struct akv_session *s = NULL;                                                                    \
  CK_RV rv;                                                                                        \
  AKV_P11_IN();                                                                                    \
  rv = akv_p11_session((h), 1, &s);                                                                \
  if (rv == CKR_OK && !(args_ok)) {                                                                \
    akv_op_end(s, (kind));                                                                         \
    akv_session_release(s);                                                                        \
    rv = CKR_ARGUMENTS_BAD;                                                                        \
  } else if (rv != CKR_OK && rv != CKR_CRYPTOKI_NOT_INITIALIZED && !(args_ok)) {                   \
    rv = CKR_ARGUMENTS_BAD;                                                                        \
  }                                                                                                \
  if (rv != CKR_OK)                                                                                \
    return AKV_P11_OUT(rv)

#define END()                                                                                      \
  akv_session_release(s);                                                                          \
  return AKV_P11_OUT(rv)

CK_RV C_GetMechanismList(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
  struct akv_slot *slot;
  CK_RV rv;
  AKV_P11_IN();
  rv = akv_p11_begin(count != NULL);
  if (rv != CKR_OK)
    return AKV_P11_OUT(rv);
  slot = akv_slot_get(slot_id);
  if (!slot)
    return AKV_P11_OUT(CKR_SLOT_ID_INVALID);
  return AKV_P11_OUT(akv_mech_list(slot->cfg->kind, list, count));
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
  struct akv_slot *slot;
  CK_RV rv;
  AKV_P11_IN();
  rv = akv_p11_begin(info != NULL);
  if (rv != CKR_OK)
    return AKV_P11_OUT(rv);
  slot = akv_slot_get(slot_id);
  if (!slot)
    return AKV_P11_OUT(CKR_SLOT_ID_INVALID);
  return AKV_P11_OUT(akv_mech_info(slot->cfg->kind, type, info));
}

/* ---- encrypt / decrypt ---- */

CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = akv_encrypt_init(s, mech, key);
  END();
}

CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,
                CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len && (data || !data_len), AKV_OP_ENCRYPT);
  rv = akv_encrypt(s, data, data_len, out, out_len);
  END();
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len && (part || !part_len), AKV_OP_ENCRYPT);
  rv = akv_encrypt_update(s, part, part_len, out, out_len);
  END();
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len, AKV_OP_ENCRYPT);
  rv = akv_encrypt_final(s, out, out_len);
  END();
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = akv_decrypt_init(s, mech, key);
  END();
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,
                CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len && (data || !data_len), AKV_OP_DECRYPT);
  rv = akv_decrypt(s, data, data_len, out, out_len);
  END();
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len && (part || !part_len), AKV_OP_DECRYPT);
  rv = akv_decrypt_update(s, part, part_len, out, out_len);
  END();
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len, AKV_OP_DECRYPT);
  rv = akv_decrypt_final(s, out, out_len);
  END();
}

/* ---- digest ---- */

CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech)
{
  BEGIN(h, mech);
  rv = akv_digest_init(s, mech);
  END();
}

CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,
               CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len && (data || !data_len), AKV_OP_DIGEST);
  rv = akv_digest(s, data, data_len, out, out_len);
  END();
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len)
{
  BEGIN_OP(h, part || !part_len, AKV_OP_DIGEST);
  rv = akv_digest_update(s, part, part_len);
  END();
}

CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
  BEGIN(h, 1);
  rv = akv_digest_key(s, key);
  END();
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  BEGIN_OP(h, out_len, AKV_OP_DIGEST);
  rv = akv_digest_final(s, out, out_len);
  END();
}

/* ---- sign / verify ---- */

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = akv_sign_init(s, mech, key);
  END();
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
             CK_ULONG_PTR sig_len)
{
  BEGIN_OP(h, sig_len && (data || !data_len), AKV_OP_SIGN);
  rv = akv_sign(s, data, data_len, sig, sig_len);
  END();
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len)
{
  BEGIN_OP(h, part || !part_len, AKV_OP_SIGN);
  rv = akv_sign_update(s, part, part_len);
  END();
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
  BEGIN_OP(h, sig_len, AKV_OP_SIGN);
  rv = akv_sign_final(s, sig, sig_len);
  END();
}

/* No mechanism offers signatures with message recovery (CKF_SIGN_RECOVER / CKF_VERIFY_RECOVER):
 * Key Vault has no such operation. */
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = CKR_MECHANISM_INVALID;
  END();
}

CK_RV C_SignRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
                    CK_ULONG_PTR sig_len)
{
  BEGIN(h, sig_len && (data || !data_len));
  rv = CKR_OPERATION_NOT_INITIALIZED;
  END();
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = akv_verify_init(s, mech, key);
  END();
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
               CK_ULONG sig_len)
{
  BEGIN_OP(h, (data || !data_len) && (sig || !sig_len), AKV_OP_VERIFY);
  rv = akv_verify(s, data, data_len, sig, sig_len);
  END();
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len)
{
  BEGIN_OP(h, part || !part_len, AKV_OP_VERIFY);
  rv = akv_verify_update(s, part, part_len);
  END();
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
  BEGIN_OP(h, sig || !sig_len, AKV_OP_VERIFY);
  rv = akv_verify_final(s, sig, sig_len);
  END();
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  BEGIN(h, mech);
  rv = CKR_MECHANISM_INVALID;
  END();
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR data,
                      CK_ULONG_PTR data_len)
{
  BEGIN(h, data_len && (sig || !sig_len));
  rv = CKR_OPERATION_NOT_INITIALIZED;
  END();
}

/* ---- dual-function operations: not offered (each would need two vault round trips per part) ---- */

#define DUAL_FN(name)                                                                              \
  CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,              \
             CK_ULONG_PTR out_len)                                                                 \
  {                                                                                                \
    BEGIN(h, out_len && (in || !in_len));                                                          \
    rv = CKR_FUNCTION_NOT_SUPPORTED;                                                               \
    END();                                                                                         \
  }

DUAL_FN(C_DigestEncryptUpdate)
DUAL_FN(C_DecryptDigestUpdate)
DUAL_FN(C_SignEncryptUpdate)
DUAL_FN(C_DecryptVerifyUpdate)

/* ---- keys ---- */

CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR tmpl,
                    CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  BEGIN(h, mech && key && (tmpl || !count));
  rv = akv_write_generate_key(s, mech, tmpl, count, key);
  END();
}

/* Key pairs are created in the vault (src/write.c). */
CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_tmpl,
                        CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_count,
                        CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
  BEGIN(h, mech && pub && priv && (pub_tmpl || !pub_count) && (priv_tmpl || !priv_count));
  rv = akv_write_generate_key_pair(s, mech, pub_tmpl, pub_count, priv_tmpl, priv_count, pub, priv);
  END();
}

CK_RV C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping_key,
                CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len)
{
  BEGIN(h, mech && wrapped_len);
  rv = akv_wrap_key(s, mech, wrapping_key, key, wrapped, wrapped_len);
  END();
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping_key,
                  CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR tmpl,
                  CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  BEGIN(h, mech && wrapped && key && (tmpl || !count));
  rv = akv_unwrap_key(s, mech, unwrapping_key, wrapped, wrapped_len, tmpl, count, key);
  END();
}

/* No mechanism offers CKF_DERIVE. */
CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base_key,
                  CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  BEGIN(h, mech && key && (tmpl || !count));
  rv = CKR_MECHANISM_INVALID;
  END();
}

/* ---- random ---- */

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG seed_len)
{
  BEGIN(h, seed || !seed_len);
  rv = CKR_RANDOM_SEED_NOT_SUPPORTED;
  END();
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
  BEGIN(h, out || !len);
  rv = akv_generate_random(s, out, len);
  END();
}
