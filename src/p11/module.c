/* SPDX-License-Identifier: Apache-2.0 */
/* Module entry: the function lists (2.40, and 3.0 which adds C_GetInterface*, C_LoginUser,
 * C_SessionCancel and the message functions), C_GetFunctionList (the 2.40 list), the 3.0
 * interface calls (C_GetInterfaceList / C_GetInterface: interface "PKCS 11" 3.0, then 2.40), and
 * C_Initialize / C_Finalize / C_GetInfo. Only the three C_Get* symbols are exported
 * (src/akv-pkcs11.map); the other C_* are reached through the list. */
#include <string.h>

#include "core/module.h"
#include "p11/p11.h"
#include "pkcs11_3.h"

/* The entries both lists share, in the order of CK_FUNCTION_LIST (2.40), which CK_FUNCTION_LIST_3_0
 * extends; C_GetInfo differs (it reports the list's own version: docs/design.md "Decisions"). */
#define AKV_P11_ENTRIES_240(info_fn)                                                               \
  .C_Initialize = C_Initialize, .C_Finalize = C_Finalize, .C_GetInfo = info_fn,                    \
  .C_GetFunctionList = C_GetFunctionList, .C_GetSlotList = C_GetSlotList,                          \
  .C_GetSlotInfo = C_GetSlotInfo, .C_GetTokenInfo = C_GetTokenInfo,                                \
  .C_GetMechanismList = C_GetMechanismList, .C_GetMechanismInfo = C_GetMechanismInfo,              \
  .C_InitToken = C_InitToken, .C_InitPIN = C_InitPIN, .C_SetPIN = C_SetPIN,                        \
  .C_OpenSession = C_OpenSession, .C_CloseSession = C_CloseSession,                                \
  .C_CloseAllSessions = C_CloseAllSessions, .C_GetSessionInfo = C_GetSessionInfo,                  \
  .C_GetOperationState = C_GetOperationState, .C_SetOperationState = C_SetOperationState,          \
  .C_Login = C_Login, .C_Logout = C_Logout, .C_CreateObject = C_CreateObject,                      \
  .C_CopyObject = C_CopyObject, .C_DestroyObject = C_DestroyObject,                                \
  .C_GetObjectSize = C_GetObjectSize, .C_GetAttributeValue = C_GetAttributeValue,                  \
  .C_SetAttributeValue = C_SetAttributeValue, .C_FindObjectsInit = C_FindObjectsInit,              \
  .C_FindObjects = C_FindObjects, .C_FindObjectsFinal = C_FindObjectsFinal,                        \
  .C_EncryptInit = C_EncryptInit, .C_Encrypt = C_Encrypt, .C_EncryptUpdate = C_EncryptUpdate,      \
  .C_EncryptFinal = C_EncryptFinal, .C_DecryptInit = C_DecryptInit, .C_Decrypt = C_Decrypt,        \
  .C_DecryptUpdate = C_DecryptUpdate, .C_DecryptFinal = C_DecryptFinal,                            \
  .C_DigestInit = C_DigestInit, .C_Digest = C_Digest, .C_DigestUpdate = C_DigestUpdate,            \
  .C_DigestKey = C_DigestKey, .C_DigestFinal = C_DigestFinal, .C_SignInit = C_SignInit,            \
  .C_Sign = C_Sign, .C_SignUpdate = C_SignUpdate, .C_SignFinal = C_SignFinal,                      \
  .C_SignRecoverInit = C_SignRecoverInit, .C_SignRecover = C_SignRecover,                          \
  .C_VerifyInit = C_VerifyInit, .C_Verify = C_Verify, .C_VerifyUpdate = C_VerifyUpdate,            \
  .C_VerifyFinal = C_VerifyFinal, .C_VerifyRecoverInit = C_VerifyRecoverInit,                      \
  .C_VerifyRecover = C_VerifyRecover, .C_DigestEncryptUpdate = C_DigestEncryptUpdate,              \
  .C_DecryptDigestUpdate = C_DecryptDigestUpdate, .C_SignEncryptUpdate = C_SignEncryptUpdate,      \
  .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate, .C_GenerateKey = C_GenerateKey,                  \
  .C_GenerateKeyPair = C_GenerateKeyPair, .C_WrapKey = C_WrapKey, .C_UnwrapKey = C_UnwrapKey,      \
  .C_DeriveKey = C_DeriveKey, .C_SeedRandom = C_SeedRandom, .C_GenerateRandom = C_GenerateRandom,  \
  .C_GetFunctionStatus = C_GetFunctionStatus, .C_CancelFunction = C_CancelFunction,                \
  .C_WaitForSlotEvent = C_WaitForSlotEvent,

static CK_RV get_info_3_0(CK_INFO_PTR pInfo);

static CK_FUNCTION_LIST function_list = {.version = {2, 40}, AKV_P11_ENTRIES_240(C_GetInfo)};

static CK_FUNCTION_LIST_3_0 function_list_3_0 = {
    .version = {3, 0},
    AKV_P11_ENTRIES_240(get_info_3_0).C_GetInterfaceList = C_GetInterfaceList,
    .C_GetInterface = C_GetInterface,
    .C_LoginUser = C_LoginUser,
    .C_SessionCancel = C_SessionCancel,
    .C_MessageEncryptInit = C_MessageEncryptInit,
    .C_EncryptMessage = C_EncryptMessage,
    .C_EncryptMessageBegin = C_EncryptMessageBegin,
    .C_EncryptMessageNext = C_EncryptMessageNext,
    .C_MessageEncryptFinal = C_MessageEncryptFinal,
    .C_MessageDecryptInit = C_MessageDecryptInit,
    .C_DecryptMessage = C_DecryptMessage,
    .C_DecryptMessageBegin = C_DecryptMessageBegin,
    .C_DecryptMessageNext = C_DecryptMessageNext,
    .C_MessageDecryptFinal = C_MessageDecryptFinal,
    .C_MessageSignInit = C_MessageSignInit,
    .C_SignMessage = C_SignMessage,
    .C_SignMessageBegin = C_SignMessageBegin,
    .C_SignMessageNext = C_SignMessageNext,
    .C_MessageSignFinal = C_MessageSignFinal,
    .C_MessageVerifyInit = C_MessageVerifyInit,
    .C_VerifyMessage = C_VerifyMessage,
    .C_VerifyMessageBegin = C_VerifyMessageBegin,
    .C_VerifyMessageNext = C_VerifyMessageNext,
    .C_MessageVerifyFinal = C_MessageVerifyFinal,
};

static CK_UTF8CHAR interface_name[] = "PKCS 11";

/* 3.0 first: C_GetInterface(NULL, NULL, ...) answers the first (PKCS#11 3.0 §5.4 "default").
 * Not CKF_INTERFACE_FORK_SAFE: a forked child must call C_Initialize again (docs/design.md
 * "Fork"). */
static CK_INTERFACE interfaces[] = {
    {interface_name, &function_list_3_0, 0},
    {interface_name, &function_list, 0},
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
  CK_RV rv = CKR_OK;
  AKV_P11_IN();
  if (!ppFunctionList)
    rv = CKR_ARGUMENTS_BAD;
  else
    *ppFunctionList = &function_list;
  return AKV_P11_OUT(rv);
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
  const CK_ULONG n = sizeof(interfaces) / sizeof(interfaces[0]);
  CK_RV rv = CKR_OK;

  AKV_P11_IN();
  if (!pulCount) {
    rv = CKR_ARGUMENTS_BAD;
  } else if (!pInterfacesList) {
    *pulCount = n;
  } else if (*pulCount < n) {
    *pulCount = n;
    rv = CKR_BUFFER_TOO_SMALL;
  } else {
    memcpy(pInterfacesList, interfaces, sizeof(interfaces));
    *pulCount = n;
  }
  return AKV_P11_OUT(rv);
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
  CK_RV rv = CKR_ARGUMENTS_BAD;
  size_t i;

  AKV_P11_IN();
  if (!ppInterface)
    goto out;
  *ppInterface = NULL;
  for (i = 0; i < sizeof(interfaces) / sizeof(interfaces[0]); i++) {
    const CK_VERSION *v = interfaces[i].pFunctionList;
    if (pInterfaceName &&
        strcmp((const char *)pInterfaceName, (const char *)interfaces[i].pInterfaceName) != 0)
      continue;
    if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor))
      continue;
    if ((interfaces[i].flags & flags) != flags)
      continue;
    *ppInterface = &interfaces[i];
    rv = CKR_OK;
    break;
  }
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_module_initialize(pInitArgs));
}

CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
  AKV_P11_IN();
  return AKV_P11_OUT(akv_module_finalize(pReserved));
}

/* CK_INFO.cryptokiVersion is the version of the list the call came through: 2.40 through
 * C_GetFunctionList's list (or the 2.40 interface), 3.0 through the 3.0 interface. */
static CK_RV get_info(CK_INFO_PTR pInfo, const CK_VERSION *version)
{
  CK_RV rv = akv_p11_begin(pInfo != NULL);
  if (rv == CKR_OK) {
    akv_module_info(pInfo);
    pInfo->cryptokiVersion = *version;
  }
  return rv;
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo)
{
  AKV_P11_IN();
  return AKV_P11_OUT(get_info(pInfo, &function_list.version));
}

/* C_GetInfo of the 3.0 list. */
static CK_RV get_info_3_0(CK_INFO_PTR pInfo)
{
  AKV_P11_IN();
  return AKV_P11_OUT(get_info(pInfo, &function_list_3_0.version));
}
