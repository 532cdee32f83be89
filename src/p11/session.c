/* SPDX-License-Identifier: Apache-2.0 */
/* Session and login entry points (C_LoginUser and C_SessionCancel of PKCS#11 3.0 too). */
#include "core/module.h"
#include "p11/p11.h"
#include "token/cancel.h"
#include "token/session.h"

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                    CK_SESSION_HANDLE_PTR phSession)
{
  CK_RV rv;

  AKV_P11_IN();
  (void)pApplication; /* no callbacks: the module never surrenders */
  (void)Notify;
  rv = akv_p11_begin(phSession != NULL);
  if (rv == CKR_OK)
    rv = akv_session_open(slotID, flags, phSession);
  return AKV_P11_OUT(rv);
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_begin(1);
  if (rv == CKR_OK)
    rv = akv_session_close(hSession);
  return AKV_P11_OUT(rv);
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_begin(1);
  if (rv == CKR_OK)
    rv = akv_module_slot(slotID) ? akv_session_close_all(slotID) : CKR_SLOT_ID_INVALID;
  return AKV_P11_OUT(rv);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
  AKV_P11_SESSION_BEGIN(hSession, pInfo != NULL);
  akv_session_info(s, pInfo);
  AKV_P11_SESSION_END();
}

/* Operation state lives partly in the vault (remote operations): it cannot be saved. */
CK_RV C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG_PTR pulOperationStateLen)
{
  AKV_P11_IN();
  (void)pOperationState;
  return AKV_P11_OUT(
      akv_p11_refuse(hSession, pulOperationStateLen != NULL, CKR_FUNCTION_NOT_SUPPORTED));
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                          CK_OBJECT_HANDLE hAuthenticationKey)
{
  AKV_P11_IN();
  (void)hEncryptionKey;
  (void)hAuthenticationKey;
  return AKV_P11_OUT(
      akv_p11_refuse(hSession, pOperationState && ulOperationStateLen, CKR_FUNCTION_NOT_SUPPORTED));
}

/* A NULL PIN with length 0 (the protected-authentication-path form) is the empty PIN: the token
 * has no protected path (docs/security.md "Login"). */
CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
              CK_ULONG ulPinLen)
{
  AKV_P11_SESSION_BEGIN(hSession, pPin || !ulPinLen);
  rv = akv_session_login(s, userType, pPin, ulPinLen);
  AKV_P11_SESSION_END();
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
  AKV_P11_SESSION_BEGIN(hSession, 1);
  rv = akv_session_logout(s);
  AKV_P11_SESSION_END();
}

CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_p11_refuse(hSession, 1, CKR_FUNCTION_NOT_PARALLEL));
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_p11_refuse(hSession, 1, CKR_FUNCTION_NOT_PARALLEL));
}

CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_p11_refuse(hSession, pPin || !ulPinLen, CKR_FUNCTION_NOT_SUPPORTED));
}

CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
               CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_p11_refuse(hSession, (pOldPin || !ulOldLen) && (pNewPin || !ulNewLen),
                                    CKR_FUNCTION_NOT_SUPPORTED));
}

/* PKCS#11 3.0: C_Login with a user name. The token has one user (the Azure credential is the
 * identity; docs/security.md "Login"), so a name (any UTF-8 the caller passes, or none) selects
 * nothing and is not interpreted; the PIN and the user type are checked as C_Login checks them. */
CK_RV C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                  CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
  AKV_P11_SESSION_BEGIN(hSession, (pPin || !ulPinLen) && (pUsername || !ulUsernameLen));
  rv = akv_session_login(s, userType, pPin, ulPinLen);
  AKV_P11_SESSION_END();
}

/* PKCS#11 3.0: ends the session's active operations named by flags (operation flags of
 * CK_MECHANISM_INFO, CKF_FIND_OBJECTS); a flag whose operation is not active is ignored, 0 changes
 * nothing. A bit that names no operation is CKR_ARGUMENTS_BAD and cancels nothing (docs/design.md
 * "Decisions"). */
CK_RV C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
  AKV_P11_SESSION_BEGIN(hSession, !(flags & ~(CK_FLAGS)AKV_CANCEL_FLAGS));
  akv_cancel_ops(s, flags);
  rv = CKR_OK;
  AKV_P11_SESSION_END();
}
