/* SPDX-License-Identifier: Apache-2.0 */
/* Object entry points: create/copy/destroy, sizes and attributes, searches. */
#include "store/object.h"
#include "p11/p11.h"
#include "token/find.h"
#include "token/session.h"
#include "token/write.h"

CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                     CK_OBJECT_HANDLE_PTR phObject)
{
  AKV_P11_SESSION_BEGIN(hSession, (pTemplate || !ulCount) && phObject);
  rv = akv_write_create_object(s, pTemplate, ulCount, phObject);
  AKV_P11_SESSION_END();
}

CK_RV C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                   CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
  AKV_P11_SESSION_BEGIN(hSession, (pTemplate || !ulCount) && phNewObject);
  rv = akv_write_copy_object(s, hObject, phNewObject);
  AKV_P11_SESSION_END();
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
  AKV_P11_SESSION_BEGIN(hSession, 1);
  rv = akv_write_destroy_object(s, hObject);
  AKV_P11_SESSION_END();
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
  struct akv_object *obj = NULL;
  AKV_P11_SESSION_BEGIN(hSession, pulSize != NULL);
  rv = akv_session_object(s, hObject, &obj);
  if (rv == CKR_OK)
    *pulSize = akv_object_size(obj);
  akv_object_unref(obj);
  AKV_P11_SESSION_END();
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  struct akv_object *obj = NULL;
  AKV_P11_SESSION_BEGIN(hSession, pTemplate || !ulCount);
  struct akv_fetch_status failed = {KV_OK, 0};
  rv = akv_session_object(s, hObject, &obj);
  if (rv == CKR_OK)
    rv = akv_object_get_attrs(obj, pTemplate, ulCount, &failed);
  if (failed.rc != KV_OK)
    akv_session_fetch_failed(s, &failed);
  akv_object_unref(obj);
  AKV_P11_SESSION_END();
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  AKV_P11_SESSION_BEGIN(hSession, pTemplate || !ulCount);
  rv = akv_write_set_attrs(s, hObject, pTemplate, ulCount);
  AKV_P11_SESSION_END();
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  AKV_P11_SESSION_BEGIN(hSession, pTemplate || !ulCount);
  rv = akv_find_init(s, pTemplate, ulCount);
  AKV_P11_SESSION_END();
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
  AKV_P11_SESSION_BEGIN(hSession, (phObject || !ulMaxObjectCount) && pulObjectCount);
  rv = akv_find_next(s, phObject, ulMaxObjectCount, pulObjectCount);
  AKV_P11_SESSION_END();
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
  AKV_P11_SESSION_BEGIN(hSession, 1);
  rv = akv_find_final(s);
  AKV_P11_SESSION_END();
}
