/* SPDX-License-Identifier: Apache-2.0 */
/* src/core/rv.c: the one kv_rc -> CK_RV translation (docs/design.md "Errors") and CKR names. */
#include "model_helpers.h"

static void test_map(void **state)
{
  (void)state;
  assert_int_equal(akv_rv(KV_OK), CKR_OK);
  assert_int_equal(akv_rv(KV_E_NOMEM), CKR_HOST_MEMORY);
  assert_int_equal(akv_rv(KV_E_NOT_FOUND), CKR_KEY_HANDLE_INVALID);
  assert_int_equal(akv_rv_object(KV_E_NOT_FOUND), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(akv_rv_object(KV_E_THROTTLED), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv_listing(KV_E_NOT_FOUND), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv_listing(KV_E_NOMEM), CKR_HOST_MEMORY);
  assert_int_equal(akv_rv(KV_E_UNSUPPORTED), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(akv_rv(KV_E_BAD_REQUEST), CKR_FUNCTION_FAILED);
  assert_int_equal(akv_rv(KV_E_INVALID), CKR_FUNCTION_FAILED);
  assert_int_equal(akv_rv(KV_E_CONFLICT), CKR_FUNCTION_FAILED);
  /* Authorization, throttling, outages and hostile replies are device errors. */
  assert_int_equal(akv_rv(KV_E_FORBIDDEN), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_UNAUTHORIZED), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_AUTH), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_THROTTLED), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_SERVER), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_NETWORK), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_TIMEOUT), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv(KV_E_PROTOCOL), CKR_DEVICE_ERROR);
  assert_int_equal(akv_rv((kv_rc)999), CKR_GENERAL_ERROR);
}

/* The module's own work: out of memory is CKR_HOST_MEMORY, anything else the caller's choice. */
static void test_nomem_or(void **state)
{
  (void)state;
  assert_int_equal(akv_rv_nomem_or(KV_OK, CKR_GENERAL_ERROR), CKR_OK);
  assert_int_equal(akv_rv_nomem_or(KV_E_NOMEM, CKR_GENERAL_ERROR), CKR_HOST_MEMORY);
  assert_int_equal(akv_rv_nomem_or(KV_E_NETWORK, CKR_GENERAL_ERROR), CKR_GENERAL_ERROR);
  assert_int_equal(akv_rv_nomem_or(KV_E_FORBIDDEN, CKR_FUNCTION_FAILED), CKR_FUNCTION_FAILED);
  assert_int_equal(akv_rv_nomem_or(KV_E_NOT_FOUND, CKR_OK), CKR_OK);
}

static void test_names(void **state)
{
  (void)state;
  assert_string_equal(akv_rv_name(CKR_OK), "CKR_OK");
  assert_string_equal(akv_rv_name(CKR_BUFFER_TOO_SMALL), "CKR_BUFFER_TOO_SMALL");
  assert_string_equal(akv_rv_name(CKR_CRYPTOKI_NOT_INITIALIZED), "CKR_CRYPTOKI_NOT_INITIALIZED");
  assert_string_equal(akv_rv_name(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
  assert_string_equal(akv_rv_name(CKR_VENDOR_DEFINED | 5), "CKR_VENDOR_DEFINED");
  assert_string_equal(akv_rv_name(0x7777), "CKR_(unknown)");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_map),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_nomem_or),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
