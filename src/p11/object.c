/* Object entry points: create/copy/destroy, sizes and attributes, searches. */
#include "object.h"
#include "p11/p11.h"
#include "session.h"
#include "write.h"

CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                     CK_OBJECT_HANDLE_PTR phObject)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, (pTemplate || !ulCount) && phObject, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_write_create_object(s, pTemplate, ulCount, phObject);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                   CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, (pTemplate || !ulCount) && phNewObject, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_object_copy(s, hObject, pTemplate, ulCount, phNewObject);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, 1, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_write_destroy_object(s, hObject);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
  struct akv_session *s = NULL;
  struct akv_object *obj = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, pulSize != NULL, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_session_object(s, hObject, &obj);
  if (rv == CKR_OK)
    *pulSize = akv_object_size(obj);
  akv_object_unref(obj);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  struct akv_session *s = NULL;
  struct akv_object *obj = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, pTemplate || !ulCount, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_session_object(s, hObject, &obj);
  if (rv == CKR_OK)
    rv = akv_object_get_attrs(s, obj, pTemplate, ulCount);
  akv_object_unref(obj);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, pTemplate || !ulCount, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_write_set_attrs(s, hObject, pTemplate, ulCount);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, pTemplate || !ulCount, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_find_init(s, pTemplate, ulCount);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, (phObject || !ulMaxObjectCount) && pulObjectCount, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_find_next(s, phObject, ulMaxObjectCount, pulObjectCount);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
  struct akv_session *s = NULL;
  CK_RV rv;

  AKV_P11_IN();
  rv = akv_p11_session(hSession, 1, &s);
  if (rv != CKR_OK)
    goto out;
  rv = akv_find_final(s);
  akv_session_release(s);
out:
  return AKV_P11_OUT(rv);
}
