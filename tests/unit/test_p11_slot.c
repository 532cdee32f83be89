/* SPDX-License-Identifier: Apache-2.0 */
/* src/p11/slot.c and src/token/slot.c: slot list, slot and token information, unsupported token
 * management calls. */
#include "model_helpers.h"

#define CFG2                                                                                       \
  "{\"slots\":[{\"url\":\"" FAKE_VAULT_URL                                                         \
  "\",\"label\":\"Très long label de plus de trente-deux "                                        \
  "octets\",\"read_only\":true},{\"url\":\"https://unit2.managedhsm.azure.net\"}]}"

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  assert_int_equal(t_init(CFG2), CKR_OK);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static void test_slot_list(void **state)
{
  CK_SLOT_ID ids[4] = {99, 99, 99, 99};
  CK_ULONG n = 0;
  (void)state;

  assert_int_equal(C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
  assert_int_equal(n, 2);
  n = 1;
  assert_int_equal(C_GetSlotList(CK_TRUE, ids, &n), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 99);
  n = 4;
  assert_int_equal(C_GetSlotList(CK_TRUE, ids, &n), CKR_OK);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 0);
  assert_int_equal(ids[1], 1);
}

static void test_slot_info(void **state)
{
  CK_SLOT_INFO si;
  (void)state;
  assert_int_equal(C_GetSlotInfo(0, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetSlotInfo(2, &si), CKR_SLOT_ID_INVALID);
  assert_int_equal(C_GetSlotInfo(1, &si), CKR_OK);
  assert_int_equal(si.flags, CKF_TOKEN_PRESENT);
  assert_memory_equal(si.slotDescription, "Azure Managed HSM https://unit2.managedhsm.azure.net ",
                      53);
  assert_memory_equal(si.manufacturerID, "akv-pkcs11 ", 11);
}

static void test_token_info(void **state)
{
  CK_TOKEN_INFO ti;
  unsigned char md[32];
  char hex[17];
  size_t mdlen = 0, i;
  CK_SESSION_HANDLE s;
  (void)state;

  assert_int_equal(C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetTokenInfo(5, &ti), CKR_SLOT_ID_INVALID);
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  /* The label is cut at 32 bytes on a character boundary and blank-padded. */
  assert_memory_equal(ti.label, "Très long label de plus de tren", 32);
  assert_memory_equal(ti.manufacturerID, "akv-pkcs11                      ", 32);
  assert_memory_equal(ti.model, "Key Vault       ", 16);
  assert_true(
      EVP_Q_digest(NULL, "SHA256", NULL, FAKE_VAULT_URL, strlen(FAKE_VAULT_URL), md, &mdlen));
  for (i = 0; i < 8; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  assert_memory_equal(ti.serialNumber, hex, 16);
  assert_int_equal(ti.flags,
                   CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_WRITE_PROTECTED);
  assert_int_equal(ti.ulMaxSessionCount, CK_EFFECTIVELY_INFINITE);
  assert_int_equal(ti.ulSessionCount, 0);
  assert_int_equal(ti.ulTotalPublicMemory, CK_UNAVAILABLE_INFORMATION);
  /* Managed HSM: its own model, an RNG, no write protection. */
  assert_int_equal(C_GetTokenInfo(1, &ti), CKR_OK);
  assert_memory_equal(ti.label, "unit2 ", 6);
  assert_memory_equal(ti.model, "Managed HSM     ", 16);
  assert_int_equal(ti.flags, CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG);
  assert_int_equal(C_OpenSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
  assert_int_equal(C_GetTokenInfo(1, &ti), CKR_OK);
  assert_int_equal(ti.ulSessionCount, 1);
  assert_int_equal(ti.ulRwSessionCount, 1);
}

static void test_events_and_management(void **state)
{
  CK_SLOT_ID slot;
  int dummy;
  (void)state;
  assert_int_equal(C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, &dummy), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
  assert_int_equal(C_WaitForSlotEvent(0, &slot, NULL), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_InitToken(0, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_InitToken(0, NULL, 4, (CK_UTF8CHAR_PTR) "label"), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_InitToken(9, NULL, 0, (CK_UTF8CHAR_PTR) "label"), CKR_SLOT_ID_INVALID);
  assert_int_equal(C_InitToken(1, (CK_UTF8CHAR_PTR) "1234", 4, (CK_UTF8CHAR_PTR) "label"),
                   CKR_FUNCTION_NOT_SUPPORTED);
}

/* A label whose 32nd byte is inside a UTF-8 character is cut before that character. */
static void test_label_utf8_cut(void **state)
{
  CK_TOKEN_INFO ti;
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_CFG(",\"label\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9z\"")), CKR_OK);
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  assert_memory_equal(ti.label, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ", 32);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_slot_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slot_info, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_info, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events_and_management, setup, teardown),
      cmocka_unit_test_setup_teardown(test_label_utf8_cut, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
