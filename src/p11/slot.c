/* Slot and token entry points. */
#include "module.h"
#include "p11/p11.h"
#include "slot.h"

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
  CK_ULONG n, i;
  CK_RV rv;

  AKV_P11_IN();
  (void)tokenPresent; /* the token is always present: both lists are the same */
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pulCount) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  n = (CK_ULONG)akv_slot_count();
  if (pSlotList) {
    if (*pulCount < n) {
      rv = CKR_BUFFER_TOO_SMALL;
    } else {
      for (i = 0; i < n; i++)
        pSlotList[i] = i;
    }
  }
  *pulCount = n;
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
  struct akv_slot *slot;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pInfo) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  slot = akv_slot_get(slotID);
  if (!slot) {
    rv = CKR_SLOT_ID_INVALID;
    goto out;
  }
  akv_slot_info(slot, pInfo);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
  struct akv_slot *slot;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pInfo) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  slot = akv_slot_get(slotID);
  if (!slot) {
    rv = CKR_SLOT_ID_INVALID;
    goto out;
  }
  akv_lock(); /* session counts */
  akv_slot_token_info(slot, pInfo);
  akv_unlock();
out:
  return AKV_P11_OUT(rv);
}

/* Tokens never appear or go away: there is no event to wait for. */
CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pSlot || pReserved) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  rv = (flags & CKF_DONT_BLOCK) ? CKR_NO_EVENT : CKR_FUNCTION_NOT_SUPPORTED;
out:
  return AKV_P11_OUT(rv);
}

/* A vault is provisioned in Azure, not initialised through PKCS#11, and Azure credentials (not
 * PINs) authorize: C_InitToken, C_InitPIN and C_SetPIN are not supported (after their argument,
 * slot and session checks). */
CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                  CK_UTF8CHAR_PTR pLabel)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pLabel || (!pPin && ulPinLen)) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  if (!akv_slot_get(slotID)) {
    rv = CKR_SLOT_ID_INVALID;
    goto out;
  }
  rv = CKR_FUNCTION_NOT_SUPPORTED;
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (!pPin && ulPinLen) {
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

CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
               CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if ((!pOldPin && ulOldLen) || (!pNewPin && ulNewLen)) {
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
