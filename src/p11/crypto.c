/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 surface of the crypto group: mechanism queries, encrypt/decrypt, digest, sign/verify,
 * key generation, wrapping and random. Entry points check arguments, acquire the session, call
 * one model function (src/mech.c, src/op_*.c) and trace the result. */
#include "token/mech.h"
#include "token/op.h"
#include "p11/p11.h"
#include "store/attrs.h"
#include "token/write.h"

/* Module check, argument check, then the session (the order PKCS#11 callers expect). */
#define BEGIN(h, args_ok) AKV_P11_SESSION_BEGIN(h, args_ok)

/* The prologue of the calls of an active operation: PKCS#11 2.40 §5.2 — a call that fails (other
 * than CKR_BUFFER_TOO_SMALL) ends the operation, bad arguments included; the return values stay
 * as BEGIN's. */
static CK_RV op_session(CK_SESSION_HANDLE h, int args_ok, enum akv_op_kind kind,
                        struct akv_session **s)
{
  CK_RV rv = akv_p11_session(h, 1, s);

  if (rv == CKR_OK && !args_ok) {
    akv_op_end(*s, kind);
    akv_session_release(*s);
    *s = NULL;
    rv = CKR_ARGUMENTS_BAD;
  } else if (rv != CKR_OK && rv != CKR_CRYPTOKI_NOT_INITIALIZED && !args_ok) {
    rv = CKR_ARGUMENTS_BAD;
  }
  return rv;
}

/* BEGIN for the calls of an active operation. */
#define BEGIN_OP(h, args_ok, kind)                                                                 \
  AKV_P11_SESSION_BEGIN_BY(op_session((h), (args_ok) ? 1 : 0, (kind), &s))

#define END() AKV_P11_SESSION_END()

CK_RV C_GetMechanismList(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
  struct akv_slot *slot = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_slot(slot_id, count != NULL, &slot);
  if (rv == CKR_OK)
    rv = akv_mech_list(slot->cfg->kind, list, count);
  return AKV_P11_OUT(rv);
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
  struct akv_slot *slot = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_slot(slot_id, info != NULL, &slot);
  if (rv == CKR_OK)
    rv = akv_mech_info(slot->cfg->kind, type, info);
  return AKV_P11_OUT(rv);
}

/* ---- the calls of the operations ---- */

/* Each entry point is written with its parameter list; the body of each kind of call (its argument
 * check, the model function, the operation a bad call ends) is one macro. */

/* C_xInit(session, mechanism, key) */
#define INIT_BODY(model)                                                                           \
  BEGIN(h, mech);                                                                                  \
  rv = model(s, mech, key);                                                                        \
  END()

/* Input and output with its length: single-part calls and cipher updates. */
#define IN_OUT_BODY(model, kind)                                                                   \
  BEGIN_OP(h, out_len && (in || !in_len), kind);                                                   \
  rv = model(s, in, in_len, out, out_len);                                                         \
  END()

/* Input only: updates of digests and signatures, C_VerifyFinal. */
#define IN_BODY(model, kind)                                                                       \
  BEGIN_OP(h, in || !in_len, kind);                                                                \
  rv = model(s, in, in_len);                                                                       \
  END()

/* Output only: the finals that produce something. */
#define OUT_BODY(model, kind)                                                                      \
  BEGIN_OP(h, out_len, kind);                                                                      \
  rv = model(s, out, out_len);                                                                     \
  END()

/* Calls the module does not offer: the checks of their shape, then `refusal` (no operation of
 * theirs can be active, so a bad call has nothing to end). */
#define REFUSED_INIT_BODY(refusal)                                                                 \
  AKV_P11_IN();                                                                                    \
  (void)key;                                                                                       \
  return AKV_P11_OUT(akv_p11_refuse(h, mech != NULL, (refusal)))

#define REFUSED_IN_OUT_BODY(refusal)                                                               \
  AKV_P11_IN();                                                                                    \
  return AKV_P11_OUT(akv_p11_refuse(h, out_len && (in || !in_len), (refusal)))

/* ---- encrypt / decrypt ---- */

CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  INIT_BODY(akv_encrypt_init);
}

CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_encrypt, AKV_OP_ENCRYPT);
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_encrypt_update, AKV_OP_ENCRYPT);
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  OUT_BODY(akv_encrypt_final, AKV_OP_ENCRYPT);
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  INIT_BODY(akv_decrypt_init);
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_decrypt, AKV_OP_DECRYPT);
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_decrypt_update, AKV_OP_DECRYPT);
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  OUT_BODY(akv_decrypt_final, AKV_OP_DECRYPT);
}

/* ---- digest ---- */

CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech)
{
  BEGIN(h, mech);
  rv = akv_digest_init(s, mech);
  END();
}

CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
               CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_digest, AKV_OP_DIGEST);
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
  IN_BODY(akv_digest_update, AKV_OP_DIGEST);
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  OUT_BODY(akv_digest_final, AKV_OP_DIGEST);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
  BEGIN(h, 1);
  rv = akv_digest_key(s, key);
  END();
}

/* ---- sign / verify ---- */

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  INIT_BODY(akv_sign_init);
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
             CK_ULONG_PTR out_len)
{
  IN_OUT_BODY(akv_sign, AKV_OP_SIGN);
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
  IN_BODY(akv_sign_update, AKV_OP_SIGN);
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
  OUT_BODY(akv_sign_final, AKV_OP_SIGN);
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  INIT_BODY(akv_verify_init);
}

/* Two inputs: its own shape. */
CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
               CK_ULONG sig_len)
{
  BEGIN_OP(h, (data || !data_len) && (sig || !sig_len), AKV_OP_VERIFY);
  rv = akv_verify(s, data, data_len, sig, sig_len);
  END();
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
  IN_BODY(akv_verify_update, AKV_OP_VERIFY);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
  IN_BODY(akv_verify_final, AKV_OP_VERIFY);
}

/* No mechanism offers signatures with message recovery (CKF_SIGN_RECOVER / CKF_VERIFY_RECOVER):
 * Key Vault has no such operation. */
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  REFUSED_INIT_BODY(CKR_MECHANISM_INVALID);
}

CK_RV C_SignRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                    CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
  REFUSED_INIT_BODY(CKR_MECHANISM_INVALID);
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_OPERATION_NOT_INITIALIZED);
}

/* ---- dual-function operations: not offered (two vault round trips per part) ---- */

CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
  REFUSED_IN_OUT_BODY(CKR_FUNCTION_NOT_SUPPORTED);
}

/* ---- keys ---- */

CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR tmpl,
                    CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
  CK_BBOOL token = CK_FALSE;
  BEGIN(h, mech && key && (tmpl || !count));
  /* CKA_TOKEN=TRUE: a key in the vault (src/token/write.c); otherwise a session key generated
   * locally (src/crypto/op_wrap.c). */
  if (akv_attrs_tmpl_bool(tmpl, count, CKA_TOKEN, &token) != CKR_OK || !token)
    rv = akv_generate_key(s, mech, tmpl, count, key);
  else
    rv = akv_write_generate_key(s, mech, tmpl, count, key);
  END();
}

/* Key pairs are created in the vault (src/token/write.c). */
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
                  CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                  CK_OBJECT_HANDLE_PTR key)
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
