/* SPDX-License-Identifier: Apache-2.0 */
/* The message-based functions of PKCS#11 3.0 (C_MessageEncryptInit ... C_MessageVerifyFinal),
 * reached through the "PKCS 11" 3.0 interface only. Key Vault has no per-message operation (each
 * call is one REST request with its own parameters: the single-part C_Encrypt/C_Sign already are
 * that), so no mechanism carries CKF_MESSAGE_* and each call answers CKR_FUNCTION_NOT_SUPPORTED
 * after the checks every call on a session makes (initialised, arguments, session handle). */
#include "p11/p11.h"
#include "pkcs11_3.h"

/* A (pointer, length) pair is an argument when the pointer is set or the length is 0. */
#define BUF_OK(p, n) ((p) != NULL || (n) == 0)

#define REFUSE(h, args_ok)                                                                         \
  do {                                                                                             \
    AKV_P11_IN();                                                                                  \
    return AKV_P11_OUT(akv_p11_refuse((h), (args_ok) ? 1 : 0, CKR_FUNCTION_NOT_SUPPORTED));        \
  } while (0)

CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_OBJECT_HANDLE hKey)
{
  (void)hKey;
  REFUSE(hSession, pMechanism);
}

CK_RV C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                       CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen,
                       CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                       CK_ULONG_PTR pulCiphertextLen)
{
  (void)pCiphertext;
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) &&
                       BUF_OK(pAssociatedData, ulAssociatedDataLen) &&
                       BUF_OK(pPlaintext, ulPlaintextLen) && pulCiphertextLen);
}

CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen)
{
  REFUSE(hSession,
         BUF_OK(pParameter, ulParameterLen) && BUF_OK(pAssociatedData, ulAssociatedDataLen));
}

CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                           CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                           CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)
{
  (void)pCiphertextPart;
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) &&
                       BUF_OK(pPlaintextPart, ulPlaintextPartLen) && pulCiphertextPartLen &&
                       !(flags & ~CKF_END_OF_MESSAGE));
}

CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE hSession)
{
  REFUSE(hSession, 1);
}

CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_OBJECT_HANDLE hKey)
{
  (void)hKey;
  REFUSE(hSession, pMechanism);
}

CK_RV C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                       CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen,
                       CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                       CK_ULONG_PTR pulPlaintextLen)
{
  (void)pPlaintext;
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) &&
                       BUF_OK(pAssociatedData, ulAssociatedDataLen) &&
                       BUF_OK(pCiphertext, ulCiphertextLen) && pulPlaintextLen);
}

CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen)
{
  REFUSE(hSession,
         BUF_OK(pParameter, ulParameterLen) && BUF_OK(pAssociatedData, ulAssociatedDataLen));
}

CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                           CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                           CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)
{
  (void)pPlaintextPart;
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) &&
                       BUF_OK(pCiphertextPart, ulCiphertextPartLen) && pulPlaintextPartLen &&
                       !(flags & ~CKF_END_OF_MESSAGE));
}

CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE hSession)
{
  REFUSE(hSession, 1);
}

CK_RV C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hKey)
{
  (void)hKey;
  REFUSE(hSession, pMechanism);
}

CK_RV C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                    CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                    CK_ULONG_PTR pulSignatureLen)
{
  (void)pSignature;
  REFUSE(hSession,
         BUF_OK(pParameter, ulParameterLen) && BUF_OK(pData, ulDataLen) && pulSignatureLen);
}

CK_RV C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                         CK_ULONG ulParameterLen)
{
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen));
}

/* pulSignatureLen NULL is a part that is not the last (PKCS#11 3.0 C_SignMessageNext). */
CK_RV C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                        CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                        CK_ULONG_PTR pulSignatureLen)
{
  (void)pSignature;
  (void)pulSignatureLen;
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) && BUF_OK(pData, ulDataLen));
}

CK_RV C_MessageSignFinal(CK_SESSION_HANDLE hSession)
{
  REFUSE(hSession, 1);
}

CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                          CK_OBJECT_HANDLE hKey)
{
  (void)hKey;
  REFUSE(hSession, pMechanism);
}

CK_RV C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                      CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                      CK_ULONG ulSignatureLen)
{
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) && BUF_OK(pData, ulDataLen) &&
                       BUF_OK(pSignature, ulSignatureLen));
}

CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen)
{
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen));
}

CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                          CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                          CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
  REFUSE(hSession, BUF_OK(pParameter, ulParameterLen) && BUF_OK(pData, ulDataLen) &&
                       BUF_OK(pSignature, ulSignatureLen));
}

CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE hSession)
{
  REFUSE(hSession, 1);
}
