/* SPDX-License-Identifier: Apache-2.0 */
/* src/p11/module.c: function lists, PKCS#11 3.0 interface calls, C_GetInfo; the 3.0 calls of
 * src/p11/session.c (C_LoginUser, C_SessionCancel) and src/p11/message.c. */
#include "model_helpers.h"
#include "pkcs11_3.h"

static void test_function_list(void **state)
{
  CK_FUNCTION_LIST_PTR fl = NULL;
  CK_FUNCTION_LIST_PTR fl2 = NULL;
  void (**fp)(void);
  size_t i, n;
  (void)state;

  assert_int_equal(C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_int_equal(C_GetFunctionList(&fl2), CKR_OK);
  assert_ptr_equal(fl, fl2);
  assert_int_equal(fl->version.major, 2);
  assert_int_equal(fl->version.minor, 40);
  /* Every entry is set (the crypto group included). */
  fp = (void (**)(void))((char *)fl + sizeof(CK_VERSION) +
                         (offsetof(CK_FUNCTION_LIST, C_Initialize) - sizeof(CK_VERSION)));
  n = (sizeof(CK_FUNCTION_LIST) - offsetof(CK_FUNCTION_LIST, C_Initialize)) / sizeof(void *);
  assert_int_equal(n, 68);
  for (i = 0; i < n; i++)
    assert_non_null(fp[i]);
  assert_ptr_equal(fl->C_Initialize, C_Initialize);
  assert_ptr_equal(fl->C_GetFunctionList, C_GetFunctionList);
  assert_ptr_equal(fl->C_FindObjects, C_FindObjects);
  assert_ptr_equal(fl->C_WaitForSlotEvent, C_WaitForSlotEvent);
  assert_ptr_equal(fl->C_Sign, C_Sign);
}

/* The 3.0 list: the 2.40 entries (C_GetInfo apart) then the 24 of 3.0, every one set. */
static void test_function_list_3_0(const CK_FUNCTION_LIST_3_0 *f3)
{
  CK_FUNCTION_LIST_PTR fl = NULL;
  void (*const *fp)(void) = (void (*const *)(void)) & f3->C_Initialize;
  size_t i, n = (sizeof(*f3) - offsetof(CK_FUNCTION_LIST_3_0, C_Initialize)) / sizeof(void *);

  assert_int_equal(n, 68 + 24);
  for (i = 0; i < n; i++)
    assert_non_null(fp[i]);
  assert_int_equal(f3->version.major, 3);
  assert_int_equal(f3->version.minor, 0);
  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_ptr_equal(f3->C_Sign, fl->C_Sign);
  assert_ptr_equal(f3->C_WaitForSlotEvent, fl->C_WaitForSlotEvent);
  assert_ptr_not_equal(f3->C_GetInfo, fl->C_GetInfo); /* each reports its own version */
  assert_ptr_equal(f3->C_GetInterfaceList, C_GetInterfaceList);
  assert_ptr_equal(f3->C_GetInterface, C_GetInterface);
  assert_ptr_equal(f3->C_LoginUser, C_LoginUser);
  assert_ptr_equal(f3->C_SessionCancel, C_SessionCancel);
  assert_ptr_equal(f3->C_MessageEncryptInit, C_MessageEncryptInit);
  assert_ptr_equal(f3->C_MessageVerifyFinal, C_MessageVerifyFinal);
}

static void test_interface_list(void **state)
{
  CK_INTERFACE list[3];
  CK_ULONG n = 0;
  CK_FUNCTION_LIST_PTR fl = NULL;
  (void)state;

  assert_int_equal(C_GetInterfaceList(NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterfaceList(NULL, &n), CKR_OK);
  assert_int_equal(n, 2);
  n = 1;
  assert_int_equal(C_GetInterfaceList(list, &n), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(n, 2);
  n = 3;
  assert_int_equal(C_GetInterfaceList(list, &n), CKR_OK);
  assert_int_equal(n, 2);
  /* "PKCS 11" 3.0 first, then 2.40 (the list C_GetFunctionList gives). */
  assert_string_equal((const char *)list[0].pInterfaceName, "PKCS 11");
  assert_string_equal((const char *)list[1].pInterfaceName, "PKCS 11");
  assert_int_equal(list[0].flags, 0);
  assert_int_equal(list[1].flags, 0);
  test_function_list_3_0(list[0].pFunctionList);
  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_ptr_equal(list[1].pFunctionList, fl);
}

static void test_interface(void **state)
{
  CK_INTERFACE_PTR ifc = NULL, first = NULL;
  CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v31 = {3, 1}, v211 = {2, 11};
  CK_FUNCTION_LIST_PTR fl = NULL;
  CK_INTERFACE list[2];
  CK_ULONG n = 2;
  (void)state;

  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_int_equal(C_GetInterfaceList(list, &n), CKR_OK);
  assert_int_equal(C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
  /* The default (no name, no version) is the first: 3.0. */
  assert_int_equal(C_GetInterface(NULL, NULL, &first, 0), CKR_OK);
  assert_ptr_equal(first->pFunctionList, list[0].pFunctionList);
  assert_int_equal(((CK_VERSION *)first->pFunctionList)->major, 3);
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &ifc, 0), CKR_OK);
  assert_ptr_equal(ifc, first);
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ifc, 0), CKR_OK);
  assert_ptr_equal(ifc, first);
  assert_int_equal(C_GetInterface(NULL, &v240, &ifc, 0), CKR_OK);
  assert_ptr_equal(ifc->pFunctionList, fl);
  ifc = NULL;
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &ifc, 0), CKR_OK);
  assert_ptr_equal(ifc->pFunctionList, fl);
  /* What we do not offer: another name, another version, fork safety. */
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &ifc, 0), CKR_ARGUMENTS_BAD);
  assert_null(ifc);
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v31, &ifc, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterface(NULL, &v211, &ifc, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterface(NULL, NULL, &ifc, CKF_INTERFACE_FORK_SAFE), CKR_ARGUMENTS_BAD);
}

static void test_get_info(void **state)
{
  CK_INFO info, info3;
  CK_INTERFACE_PTR ifc = NULL;
  const CK_FUNCTION_LIST_3_0 *f3;
  (void)state;
  fake_kv_reset();
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  assert_int_equal(C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInfo(&info), CKR_OK);
  assert_int_equal(info.cryptokiVersion.major, 2);
  assert_int_equal(info.cryptokiVersion.minor, 40);
  assert_memory_equal(info.manufacturerID, "akv-pkcs11                      ", 32);
  assert_memory_equal(info.libraryDescription, "Azure Key Vault PKCS#11 module  ", 32);
  assert_int_equal(info.flags, 0);
  assert_int_equal(info.libraryVersion.major, AKV_VERSION_MAJOR);
  assert_int_equal(info.libraryVersion.minor, AKV_VERSION_MINOR);
  /* Through the 3.0 interface: the same, reporting 3.0. */
  assert_int_equal(C_GetInterface(NULL, NULL, &ifc, 0), CKR_OK);
  f3 = ifc->pFunctionList;
  assert_int_equal(f3->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(f3->C_GetInfo(&info3), CKR_OK);
  assert_int_equal(info3.cryptokiVersion.major, 3);
  assert_int_equal(info3.cryptokiVersion.minor, 0);
  assert_memory_equal(info3.manufacturerID, info.manufacturerID, 32);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(f3->C_GetInfo(&info3), CKR_CRYPTOKI_NOT_INITIALIZED);
}

/* C_SessionCancel on local operations (a digest, a search): the named ones end, the others stay,
 * a bit that names no operation cancels nothing. */
static void test_session_cancel(void **state)
{
  CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
  CK_BYTE out[32];
  CK_ULONG len = sizeof(out), got = 0;
  CK_OBJECT_HANDLE h;
  CK_SESSION_HANDLE s;
  (void)state;
  fake_kv_reset();
  assert_int_equal(C_SessionCancel(1, CKF_DIGEST), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  s = t_open(0);
  assert_int_equal(C_SessionCancel(s + 1000, CKF_DIGEST), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_SessionCancel(s, 0), CKR_OK); /* nothing named, nothing active */
  assert_int_equal(C_SessionCancel(s, CKF_SIGN | CKF_FIND_OBJECTS), CKR_OK); /* none active */
  assert_int_equal(C_DigestInit(s, &sha), CKR_OK);
  assert_int_equal(C_FindObjectsInit(s, NULL, 0), CKR_OK);
  assert_int_equal(C_SessionCancel(s, CKF_DIGEST | CKF_HW), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_SessionCancel(s, CKF_DIGEST | 0x40000000UL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_SessionCancel(s, CKF_SIGN | CKF_ENCRYPT | CKF_MESSAGE_SIGN), CKR_OK);
  assert_int_equal(C_DigestUpdate(s, (CK_BYTE_PTR) "x", 1), CKR_OK); /* still active */
  assert_int_equal(C_SessionCancel(s, CKF_DIGEST), CKR_OK);
  assert_int_equal(C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_FindObjects(s, &h, 1, &got), CKR_OK); /* the search was not named */
  assert_int_equal(C_SessionCancel(s, CKF_FIND_OBJECTS), CKR_OK);
  assert_int_equal(C_FindObjects(s, &h, 1, &got), CKR_OPERATION_NOT_INITIALIZED);
  /* A new operation starts afresh. */
  assert_int_equal(C_DigestInit(s, &sha), CKR_OK);
  len = sizeof(out);
  assert_int_equal(C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OK);
  assert_int_equal(len, 32);
  assert_int_equal(C_FindObjectsInit(s, NULL, 0), CKR_OK);
  assert_int_equal(C_FindObjectsFinal(s), CKR_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

/* C_LoginUser is C_Login with a name that is not interpreted; the message functions are refused
 * after their checks. */
static void test_login_user_and_messages(void **state)
{
  CK_SESSION_INFO si;
  CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
  CK_BYTE buf[16];
  CK_ULONG len = sizeof(buf);
  CK_SESSION_HANDLE s;
  (void)state;
  fake_kv_reset();
  assert_int_equal(C_LoginUser(1, CKU_USER, NULL, 0, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_MessageSignFinal(1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  s = t_open(0);
  assert_int_equal(C_LoginUser(s, CKU_USER, NULL, 4, NULL, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_LoginUser(s, CKU_USER, NULL, 0, NULL, 5), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_LoginUser(s + 1000, CKU_USER, NULL, 0, NULL, 0), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_LoginUser(s, 7, NULL, 0, NULL, 0), CKR_USER_TYPE_INVALID);
  assert_int_equal(C_LoginUser(s, CKU_USER, NULL, 0, (CK_UTF8CHAR_PTR) "alice", 5), CKR_OK);
  assert_int_equal(C_GetSessionInfo(s, &si), CKR_OK);
  assert_int_equal(si.state, CKS_RO_USER_FUNCTIONS);
  assert_int_equal(C_LoginUser(s, CKU_USER, NULL, 0, NULL, 0), CKR_USER_ALREADY_LOGGED_IN);
  assert_int_equal(C_Logout(s), CKR_OK);

  assert_int_equal(C_MessageEncryptInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_MessageEncryptInit(s + 1000, &gcm, 1), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_MessageEncryptInit(s, &gcm, 1), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_EncryptMessage(s, NULL, 0, NULL, 0, buf, 1, buf, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_EncryptMessage(s, NULL, 0, NULL, 0, buf, 1, buf, &len),
                   CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_EncryptMessageNext(s, NULL, 0, buf, 1, buf, &len, 0x2), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_EncryptMessageNext(s, NULL, 0, buf, 1, buf, &len, CKF_END_OF_MESSAGE),
                   CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_DecryptMessageBegin(s, NULL, 4, NULL, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_DecryptMessage(s, NULL, 0, NULL, 0, buf, 1, buf, &len),
                   CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_MessageDecryptFinal(s), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_SignMessage(s, NULL, 0, NULL, 3, buf, &len), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_SignMessageNext(s, NULL, 0, buf, 1, NULL, NULL), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_MessageSignInit(s, &gcm, 1), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_VerifyMessage(s, NULL, 0, buf, 1, NULL, 8), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_VerifyMessageBegin(s, buf, 1), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_MessageVerifyFinal(s + 1000), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_function_list),  cmocka_unit_test(test_interface_list),
      cmocka_unit_test(test_interface),      cmocka_unit_test(test_get_info),
      cmocka_unit_test(test_session_cancel), cmocka_unit_test(test_login_user_and_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
