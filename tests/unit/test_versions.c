/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/versions.c through src/token/find.c: a search by a key's label and the CKA_ID it had
 * before a rotation finds that older version (docs/lifecycle.md "Keys re-found by CKA_ID after a
 * rotation"), with the token, store and core layers and the fake backend only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "akv-pkcs11.h"
#include "core/module.h"
#include "fake_kv.h"
#include "store/cache.h"
#include "token/find.h"
#include "token/session.h"

#define CFG "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\"%s}]}"

static CK_SESSION_HANDLE h;
static struct akv_session *s;
static unsigned char id1[64], id2[64];
static size_t id1_len, id2_len;

static void init(const char *extra)
{
  static char cfg[512];
  CK_C_INITIALIZE_ARGS a;
  snprintf(cfg, sizeof(cfg), CFG, extra);
  memset(&a, 0, sizeof(a));
  a.flags = CKF_OS_LOCKING_OK;
  a.pReserved = cfg;
  assert_int_equal(akv_module_initialize(&a), CKR_OK);
  assert_int_equal(akv_session_open(0, CKF_SERIAL_SESSION, &h), CKR_OK);
  assert_int_equal(akv_session_acquire(h, &s), CKR_OK);
}

static void fini(void)
{
  akv_session_release(s);
  assert_int_equal(akv_module_finalize(NULL), CKR_OK);
}

/* The handles of one search (at most 8). */
static CK_ULONG find(CK_OBJECT_CLASS cls, const char *label, const unsigned char *id, size_t id_len,
                     CK_OBJECT_HANDLE *out)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                      {CKA_LABEL, (void *)label, strlen(label)},
                      {CKA_ID, (void *)id, id_len}};
  CK_ULONG got = 0;
  assert_int_equal(akv_find_init(s, t, id ? 3 : 2), CKR_OK);
  assert_int_equal(akv_find_next(s, out, 8, &got), CKR_OK);
  assert_int_equal(akv_find_final(s), CKR_OK);
  return got;
}

/* An attribute of the key object h as a string (or bytes) into buf; its length. */
static size_t attr(CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_TYPE type, void *buf, size_t cap)
{
  struct akv_object *obj = NULL;
  const CK_ATTRIBUTE *a;
  size_t n;
  assert_int_equal(akv_session_op_key(s, oh, &obj), CKR_OK);
  a = akv_object_attr(obj, type);
  assert_non_null(a);
  assert_true(a->ulValueLen <= cap);
  memcpy(buf, a->pValue, a->ulValueLen);
  n = a->ulValueLen;
  akv_object_unref(obj);
  return n;
}

/* signer v1 (key pair 0) and v2 (pair 1, the current version); the CKA_IDs of both, each read by a
 * process that saw only that version. */
static int setup(void **state)
{
  CK_OBJECT_HANDLE out[8];
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  init("");
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  id1_len = attr(out[0], CKA_ID, id1, sizeof(id1));
  fini();
  fake_kv_add_key("signer", "v2", KV_KTY_RSA, 1, KV_OP_SIGN | KV_OP_VERIFY);
  init("");
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  id2_len = attr(out[0], CKA_ID, id2, sizeof(id2));
  fini();
  assert_false(id1_len == id2_len && memcmp(id1, id2, id1_len) == 0);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_kv_fail(KV_OK);
  return 0;
}

static void test_refind_old_version(void **state)
{
  CK_OBJECT_HANDLE out[8], h_old, h_new;
  char buf[128];
  size_t n;
  int lv, gk;
  (void)state;
  init("");
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1); /* the listing */
  h_new = out[0];
  lv = fake_kv_calls.list_versions;
  gk = fake_kv_calls.get_key;
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id1, id1_len, out), 1);
  h_old = out[0];
  assert_true(h_old != h_new);
  assert_int_equal(fake_kv_calls.list_versions, lv + 1);
  assert_int_equal(fake_kv_calls.get_key, gk + 1); /* v1 only: v2 is the current one */
  n = attr(h_old, CKA_LABEL, buf, sizeof(buf));
  assert_int_equal(n, 6);
  assert_memory_equal(buf, "signer", 6);
  n = attr(h_old, CKA_AKV_VERSION, buf, sizeof(buf));
  assert_int_equal(n, 2);
  assert_memory_equal(buf, "v1", 2);
  /* Again, and its public key: from the superseded table, no request. */
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id1, id1_len, out), 1);
  assert_int_equal(out[0], h_old);
  assert_int_equal(find(CKO_PUBLIC_KEY, "signer", id1, id1_len, out), 1);
  assert_int_equal(fake_kv_calls.list_versions, lv + 1);
  assert_int_equal(fake_kv_calls.get_key, gk + 1);
  /* The current CKA_ID and the label alone: the current version, as before. */
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id2, id2_len, out), 1);
  assert_int_equal(out[0], h_new);
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  assert_int_equal(out[0], h_new);
  assert_int_equal(fake_kv_calls.list_versions, lv + 1);
  fini();
}

/* A CKA_ID no version has: nothing, and one versions request for a flood of searches (the memo). */
static void test_refind_miss_memoed(void **state)
{
  static const unsigned char bogus[20] = {1, 2, 3};
  CK_OBJECT_HANDLE out[8];
  int i, lv;
  (void)state;
  init("");
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  lv = fake_kv_calls.list_versions;
  for (i = 0; i < 20; i++)
    assert_int_equal(find(CKO_PRIVATE_KEY, "signer", bogus, sizeof(bogus), out), 0);
  assert_int_equal(fake_kv_calls.list_versions, lv + 1);
  /* A failing vault: the search answers nothing, no error. */
  fake_kv_fail(KV_E_NETWORK);
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id1, id1_len, out), 0);
  fake_kv_fail(KV_OK);
  fini();
}

/* A disabled old version is not found. A certificate class asks for the certificate's versions only
 * (there is no certificate signer). Nothing on a versions "all" slot, which lists the old version
 * as signer/v1: no request. */
static void test_refind_not(void **state)
{
  CK_OBJECT_HANDLE out[8];
  struct kv_attrs *a;
  int lv, lc;
  (void)state;
  init("");
  assert_int_equal(akv_find_init(s, NULL, 0), CKR_OK); /* the listing */
  assert_int_equal(akv_find_final(s), CKR_OK);
  lv = fake_kv_calls.list_versions;
  lc = fake_kv_calls.list_certs;
  assert_int_equal(find(CKO_CERTIFICATE, "signer", id1, id1_len, out), 0);
  assert_int_equal(fake_kv_calls.list_versions, lv);
  assert_int_equal(fake_kv_calls.list_certs, lc + 1);
  fini();

  init(",\"versions\":\"all\"");
  assert_int_equal(akv_find_init(s, NULL, 0), CKR_OK); /* the listing, with the versions */
  assert_int_equal(akv_find_final(s), CKR_OK);
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  lv = fake_kv_calls.list_versions;
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id1, id1_len, out), 0);
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer/v1", id1, id1_len, out), 1);
  assert_int_equal(fake_kv_calls.list_versions, lv);
  fini();

  fake_kv_reset();
  a = fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  a->enabled = 0;
  fake_kv_add_key("signer", "v2", KV_KTY_RSA, 1, KV_OP_SIGN | KV_OP_VERIFY);
  init("");
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", NULL, 0, out), 1);
  lv = fake_kv_calls.list_versions;
  assert_int_equal(find(CKO_PRIVATE_KEY, "signer", id1, id1_len, out), 0);
  assert_int_equal(fake_kv_calls.list_versions, lv + 1);
  fini();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_refind_old_version, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refind_miss_memoed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refind_not, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
