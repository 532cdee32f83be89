/* Session and login entry points. */
#include "module.h"
#include "p11/p11.h"
#include "session.h"

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                    CK_SESSION_HANDLE_PTR phSession)
{
  CK_RV rv;

  AKV_P11_IN();
  (void)pApplication; /* no callbacks: the module never surrenders */
  (void)Notify;
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!phSession) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = akv_session_open(slotID, flags, phSession);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv == CKR_OK)
    rv = akv_session_close(hSession);
  return AKV_P11_OUT(rv);
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!akv_slot_get(slotID)) {
    rv = CKR_SLOT_ID_INVALID;
    goto out;
  }
  rv = akv_session_close_all(slotID);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pInfo) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    goto out;
  akv_session_info(s, pInfo);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

/* Operation state lives partly in the vault (remote operations): it cannot be saved. */
CK_RV C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG_PTR pulOperationStateLen)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  (void)pOperationState;
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pulOperationStateLen) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    goto out;
  rv = CKR_FUNCTION_NOT_SUPPORTED;
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                          CK_OBJECT_HANDLE hAuthenticationKey)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  (void)hEncryptionKey;
  (void)hAuthenticationKey;
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pOperationState || !ulOperationStateLen) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    goto out;
  rv = CKR_FUNCTION_NOT_SUPPORTED;
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
              CK_ULONG ulPinLen)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  /* A NULL PIN with length 0 is the protected-authentication-path form; accepted like any PIN. */
  if (!pPin && ulPinLen) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_session_login(s, userType, ulPinLen);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_session_logout(s);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

/* Legacy parallel-function calls (PKCS#11 2.40 §5.16). */
static CK_RV not_parallel(CK_SESSION_HANDLE hSession)
{
  struct akv_session *s = NULL;
  CK_RV rv = akv_module_check();

  if (rv != CKR_OK)
    return rv;
  rv = akv_session_acquire(hSession, &s);
  if (rv != CKR_OK)
    return rv;
  akv_session_release(s);
  return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
  AKV_P11_IN();
  return AKV_P11_OUT(not_parallel(hSession));
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession)
{
  AKV_P11_IN();
  return AKV_P11_OUT(not_parallel(hSession));
}
