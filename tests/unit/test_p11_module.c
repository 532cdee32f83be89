/* SPDX-License-Identifier: Apache-2.0 */
/* src/p11/module.c: function list, PKCS#11 3.0 interface calls, C_GetInfo. */
#include "model_helpers.h"
#include "p11/pkcs11_3.h"

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

static void test_interface_list(void **state)
{
  CK_INTERFACE list[2];
  CK_ULONG n = 0;
  CK_FUNCTION_LIST_PTR fl = NULL;
  (void)state;

  assert_int_equal(C_GetInterfaceList(NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterfaceList(NULL, &n), CKR_OK);
  assert_int_equal(n, 1);
  n = 0;
  assert_int_equal(C_GetInterfaceList(list, &n), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(n, 1);
  n = 2;
  assert_int_equal(C_GetInterfaceList(list, &n), CKR_OK);
  assert_int_equal(n, 1);
  assert_string_equal((const char *)list[0].pInterfaceName, "PKCS 11");
  assert_int_equal(list[0].flags, 0);
  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_ptr_equal(list[0].pFunctionList, fl);
}

static void test_interface(void **state)
{
  CK_INTERFACE_PTR ifc = NULL;
  CK_VERSION v240 = {2, 40}, v30 = {3, 0};
  CK_FUNCTION_LIST_PTR fl = NULL;
  (void)state;

  assert_int_equal(C_GetFunctionList(&fl), CKR_OK);
  assert_int_equal(C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterface(NULL, NULL, &ifc, 0), CKR_OK);
  assert_ptr_equal(ifc->pFunctionList, fl);
  ifc = NULL;
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &ifc, 0), CKR_OK);
  assert_non_null(ifc);
  assert_int_equal(((CK_VERSION *)ifc->pFunctionList)->minor, 40);
  /* What we do not offer: another name, the 3.0 list, fork safety. */
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &ifc, 0), CKR_ARGUMENTS_BAD);
  assert_null(ifc);
  assert_int_equal(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ifc, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetInterface(NULL, NULL, &ifc, CKF_INTERFACE_FORK_SAFE), CKR_ARGUMENTS_BAD);
}

static void test_get_info(void **state)
{
  CK_INFO info;
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
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_function_list),
      cmocka_unit_test(test_interface_list),
      cmocka_unit_test(test_interface),
      cmocka_unit_test(test_get_info),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
