/* SPDX-License-Identifier: Apache-2.0 */
/* Slot and token entry points. */
#include "core/module.h"
#include "p11/p11.h"
#include "token/slot.h"

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
  CK_ULONG n, i;
  CK_RV rv;

  AKV_P11_IN();
  (void)tokenPresent; /* the token is always present: both lists are the same */
  rv = akv_p11_begin(pulCount != NULL);
  if (rv != CKR_OK)
    goto out;
  n = (CK_ULONG)akv_module_slot_count();
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
  struct akv_slot *slot = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_slot(slotID, pInfo != NULL, &slot);
  if (rv == CKR_OK)
    akv_slot_info(slot, pInfo);
  return AKV_P11_OUT(rv);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
  struct akv_slot *slot = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_slot(slotID, pInfo != NULL, &slot);
  if (rv == CKR_OK) {
    akv_lock(); /* session counts */
    akv_slot_token_info(slot, pInfo);
    akv_unlock();
  }
  return AKV_P11_OUT(rv);
}

/* Tokens never appear or go away: there is no event to wait for. */
CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_begin(pSlot && !pReserved);
  if (rv == CKR_OK)
    rv = (flags & CKF_DONT_BLOCK) ? CKR_NO_EVENT : CKR_FUNCTION_NOT_SUPPORTED;
  return AKV_P11_OUT(rv);
}

/* A vault is provisioned in Azure, not initialised through PKCS#11, and Azure credentials (not
 * PINs) authorize: C_InitToken (and C_InitPIN / C_SetPIN, src/p11/session.c) are not supported,
 * after their argument, slot and session checks. */
CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                  CK_UTF8CHAR_PTR pLabel)
{
  struct akv_slot *slot = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_slot(slotID, pLabel && (pPin || !ulPinLen), &slot);
  if (rv == CKR_OK)
    rv = CKR_FUNCTION_NOT_SUPPORTED;
  return AKV_P11_OUT(rv);
}
