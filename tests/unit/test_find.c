/* SPDX-License-Identifier: Apache-2.0 */
/* src/token/find.c: searches over a slot's snapshot and the session's objects, linked with the
 * token, store and core layers and the fake backend only (no src/crypto, no C_* entry points:
 * docs/design.md "Layers"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/module.h"
#include "fake_kv.h"
#include "token/find.h"
#include "token/session.h"

#define CFG                                                                                        \
  "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\","                               \
  "\"objects\":[\"keys\",\"secrets\"]}]}"

static CK_SESSION_HANDLE h;
static struct akv_session *s;

static int setup(void **state)
{
  CK_C_INITIALIZE_ARGS a;
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("ec-signer", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_secret("db-password", "hunter2", 0);
  memset(&a, 0, sizeof(a));
  a.flags = CKF_OS_LOCKING_OK;
  a.pReserved = (void *)CFG;
  assert_int_equal(akv_module_initialize(&a), CKR_OK);
  assert_int_equal(akv_session_open(0, CKF_SERIAL_SESSION, &h), CKR_OK);
  assert_int_equal(akv_session_acquire(h, &s), CKR_OK);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  akv_session_release(s);
  fake_kv_fail(KV_OK);
  assert_int_equal(akv_module_finalize(NULL), CKR_OK);
  return 0;
}

/* All handles of one search (at most 16). */
static CK_ULONG find_all(CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
  CK_ULONG got = 0, chunk;
  assert_int_equal(akv_find_init(s, t, n), CKR_OK);
  do {
    chunk = 0;
    assert_int_equal(akv_find_next(s, out + got, 3, &chunk), CKR_OK);
    got += chunk;
  } while (chunk > 0 && got <= 13);
  assert_int_equal(akv_find_final(s), CKR_OK);
  return got;
}

static void test_find_by_class(void **state)
{
  CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY, data = CKO_DATA;
  CK_ATTRIBUTE by_priv = {CKA_CLASS, &priv, sizeof(priv)};
  CK_ATTRIBUTE by_data = {CKA_CLASS, &data, sizeof(data)};
  CK_OBJECT_HANDLE out[16];
  (void)state;
  assert_int_equal(find_all(NULL, 0, out), 5); /* 2 x (private + public) + 1 data object */
  assert_int_equal(find_all(&by_priv, 1, out), 2);
  assert_int_equal(find_all(&by_data, 1, out), 1);
  assert_int_equal(fake_kv_calls.list_keys, 1); /* one listing serves every search */
}

/* The operation rules: one search at a time, next/final only while one is active. */
static void test_find_states(void **state)
{
  CK_OBJECT_HANDLE out[4];
  CK_ULONG n = 0;
  (void)state;
  assert_int_equal(akv_find_next(s, out, 4, &n), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_find_final(s), CKR_OPERATION_NOT_INITIALIZED);
  assert_int_equal(akv_find_init(s, NULL, 0), CKR_OK);
  assert_int_equal(akv_find_init(s, NULL, 0), CKR_OPERATION_ACTIVE);
  assert_int_equal(akv_find_final(s), CKR_OK);
}

/* Matching a secret's value the vault no longer has: no match, the 404 lands on the session
 * (ulDeviceError) and drops the slot's listing, so the next search lists again. */
static void test_find_failed_fetch_recorded(void **state)
{
  CK_ATTRIBUTE by_value = {CKA_VALUE, (void *)"hunter2", 7};
  CK_OBJECT_HANDLE out[16];
  CK_SESSION_INFO info;
  int lists;
  (void)state;
  assert_int_equal(find_all(NULL, 0, out), 5); /* listed; no value read yet */
  lists = fake_kv_calls.list_secrets;
  fake_kv_fail(KV_E_NOT_FOUND);
  assert_int_equal(find_all(&by_value, 1, out), 0);
  akv_session_info(s, &info);
  assert_int_equal(info.ulDeviceError, 404);
  fake_kv_fail(KV_OK);
  assert_int_equal(find_all(&by_value, 1, out), 1);
  assert_int_equal(fake_kv_calls.list_secrets, lists + 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_find_by_class, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_states, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_failed_fetch_recorded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
