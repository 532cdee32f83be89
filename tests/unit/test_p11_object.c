/* SPDX-License-Identifier: Apache-2.0 */
/* src/p11/object.c: argument, session and handle checks of every object entry point, and the
 * search protocol. */
#include "model_helpers.h"

static CK_SESSION_HANDLE sess;
static CK_OBJECT_HANDLE priv;

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  sess = t_open(0);
  priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (akv_module_check() == CKR_OK)
    assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static void test_argument_checks(void **state)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG n, size;
  CK_ATTRIBUTE a = {CKA_CLASS, NULL, 0};
  (void)state;

  assert_int_equal(C_CreateObject(sess, NULL, 1, &h), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_CreateObject(sess, &a, 1, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_CopyObject(sess, priv, NULL, 1, &h), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_CopyObject(sess, priv, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetObjectSize(sess, priv, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetAttributeValue(sess, priv, NULL, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetAttributeValue(sess, priv, NULL, 0), CKR_OK);
  assert_int_equal(C_SetAttributeValue(sess, priv, NULL, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 1), CKR_ARGUMENTS_BAD);
  /* A template attribute with a length but no value. */
  a.ulValueLen = 4;
  assert_int_equal(C_FindObjectsInit(sess, &a, 1), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_OK);
  assert_int_equal(C_FindObjects(sess, NULL, 1, &n), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_FindObjects(sess, &h, 1, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_FindObjectsFinal(sess), CKR_OK);
  /* Bad session and object handles. */
  assert_int_equal(C_GetObjectSize(4242, priv, &size), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_GetObjectSize(sess, 4242, &size), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_GetObjectSize(sess, 0, &size), CKR_OBJECT_HANDLE_INVALID);
  a.pValue = NULL;
  a.ulValueLen = 0;
  assert_int_equal(C_GetAttributeValue(sess, 4242, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_GetAttributeValue(4242, priv, &a, 1), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_SetAttributeValue(sess, 4242, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_DestroyObject(sess, 4242), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_DestroyObject(4242, priv), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_CopyObject(sess, 4242, NULL, 0, &h), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_FindObjectsInit(4242, NULL, 0), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_FindObjects(4242, &h, 1, &n), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_FindObjectsFinal(4242), CKR_SESSION_HANDLE_INVALID);
}

static void test_not_initialized(void **state)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG n;
  CK_ATTRIBUTE a = {CKA_CLASS, NULL, 0};
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(C_CreateObject(sess, &a, 1, &h), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_CopyObject(sess, priv, NULL, 0, &h), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_DestroyObject(sess, priv), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GetObjectSize(sess, priv, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GetAttributeValue(sess, priv, &a, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_SetAttributeValue(sess, priv, &a, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_FindObjects(sess, &h, 1, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_FindObjectsFinal(sess), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void test_find_protocol(void **state)
{
  CK_OBJECT_HANDLE h[8], all[8];
  CK_ULONG n = 99, got = 0, i, j;
  CK_ULONG cls = CKO_CERTIFICATE;
  CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
  (void)state;

  assert_int_equal(C_FindObjects(sess, h, 8, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_FindObjectsFinal(sess), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_OK);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_OPERATION_ACTIVE);
  /* Zero asked: zero given, search kept. */
  assert_int_equal(C_FindObjects(sess, NULL, 0, &n), CKR_OK);
  assert_int_equal(n, 0);
  /* One at a time, each handle once. */
  for (i = 0; i < 8; i++) {
    assert_int_equal(C_FindObjects(sess, &h[got], 1, &n), CKR_OK);
    if (n == 0)
      break;
    got += n;
  }
  assert_int_equal(got, 5);
  assert_int_equal(C_FindObjects(sess, all, 8, &n), CKR_OK);
  assert_int_equal(n, 0);
  assert_int_equal(C_FindObjectsFinal(sess), CKR_OK);
  for (i = 0; i < got; i++)
    for (j = i + 1; j < got; j++)
      assert_true(h[i] != h[j]);
  /* Empty template = everything; a class template narrows; searches are per session. */
  assert_int_equal(t_find(sess, NULL, 0, all, 8), 5);
  assert_int_equal(t_find(sess, &t, 1, all, 8), 1);
  cls = CKO_DATA;
  assert_int_equal(t_find(sess, &t, 1, all, 8), 0);
  /* Closing the session ends its search. */
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_OK);
  assert_int_equal(C_CloseSession(sess), CKR_OK);
  assert_int_equal(C_FindObjects(sess, h, 8, &n), CKR_SESSION_HANDLE_INVALID);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_argument_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_initialized, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_protocol, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
