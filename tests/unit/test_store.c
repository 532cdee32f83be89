/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/ on its own: objects, attribute reads, template matching, handles and the per-slot
 * cache, linked with src/core/ and the fake backend only (no sessions, no C_* entry points:
 * docs/design.md "Layers"). A slot is set up by hand instead of by C_Initialize. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/module.h"
#include "core/state.h"
#include "fake_kv.h"
#include "store/cache.h"
#include "store/handles.h"
#include "store/object.h"
#include "store/source.h"

static int64_t now_s = 1800000000;
static int64_t test_clock(void)
{
  return now_s;
}

static struct akv_slot_config sc;
static struct akv_slot slot;

static int setup(void **state)
{
  struct kv_client_opts co = {FAKE_VAULT_URL, "7.5", AKV_VAULT_KEYVAULT};
  (void)state;
  fake_kv_reset();
  akv_set_clock(test_clock);
  /* What C_Initialize would set up below the store: a handle counter and the handle registry. The
   * configuration stays NULL: no cache file. */
  atomic_store(&akv_state.next_handle, 1);
  assert_int_equal(akv_handles_init(), CKR_OK);
  memset(&sc, 0, sizeof(sc));
  sc.url = (char *)FAKE_VAULT_URL;
  sc.kind = AKV_VAULT_KEYVAULT;
  sc.objects = AKV_OBJ_KEYS | AKV_OBJ_CERTIFICATES | AKV_OBJ_SECRETS;
  sc.ttl_s = 300;
  sc.secret_ttl_s = 3600;
  sc.stale_if_error_s = 3600;
  sc.prefetch_keys = 100;
  memset(&slot, 0, sizeof(slot));
  slot.cfg = &sc;
  assert_int_equal(kv_client_new(NULL, NULL, &co, &slot.client), KV_OK);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kv_client_free(slot.client);
  akv_handles_free();
  fake_kv_fail(KV_OK);
  return 0;
}

static struct akv_object *secret_object(const char *name)
{
  struct kv_item item;
  struct akv_object *obj = NULL;
  char src[64];
  memset(&item, 0, sizeof(item));
  item.name = (char *)name;
  item.attrs.enabled = 1;
  snprintf(src, sizeof(src), "s|%s", name);
  assert_int_equal(akv_object_from_secret(&slot, &item, src, &obj), CKR_OK);
  assert_non_null(obj);
  assert_true(obj->handle != CK_INVALID_HANDLE);
  return obj;
}

/* A secret's value is fetched on first read; no failure to report. */
static void test_get_attrs_fetches_value(void **state)
{
  char buf[32];
  CK_ATTRIBUTE t = {CKA_VALUE, buf, sizeof(buf)};
  struct akv_fetch_status failed = {KV_OK, 0};
  struct akv_object *obj;
  (void)state;
  fake_kv_add_secret("db-password", "hunter2", 0);
  obj = secret_object("db-password");
  assert_int_equal(akv_object_get_attrs(obj, &t, 1, &failed), CKR_OK);
  assert_int_equal(t.ulValueLen, 7);
  assert_memory_equal(buf, "hunter2", 7);
  assert_int_equal(failed.rc, KV_OK);
  assert_int_equal(fake_kv_calls.get_secret, 1);
  /* Kept for the secret TTL: the second read asks nothing. */
  t.ulValueLen = sizeof(buf);
  assert_int_equal(akv_object_get_attrs(obj, &t, 1, &failed), CKR_OK);
  assert_int_equal(fake_kv_calls.get_secret, 1);
  akv_object_unref(obj);
}

/* A failed fetch is handed back to the caller (which records it on its session): the status and
 * the mapped CK_RV, the value unavailable; other attributes still read. */
static void test_get_attrs_reports_failed_fetch(void **state)
{
  char buf[32], label[64];
  CK_ATTRIBUTE t[2] = {{CKA_LABEL, label, sizeof(label)}, {CKA_VALUE, buf, sizeof(buf)}};
  struct akv_fetch_status failed = {KV_OK, 0};
  struct akv_object *obj;
  (void)state;
  fake_kv_add_secret("api-key", "s3cret", 0);
  obj = secret_object("api-key");
  fake_kv_fail(KV_E_FORBIDDEN);
  assert_int_equal(akv_object_get_attrs(obj, t, 2, &failed), CKR_DEVICE_ERROR);
  assert_int_equal(failed.rc, KV_E_FORBIDDEN);
  assert_int_equal(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(t[0].ulValueLen, strlen("api-key"));
  assert_memory_equal(label, "api-key", t[0].ulValueLen);

  /* Gone from the vault: the object's handle is invalid. */
  failed.rc = KV_OK;
  fake_kv_fail(KV_E_NOT_FOUND);
  t[1].ulValueLen = sizeof(buf);
  assert_int_equal(akv_object_get_attrs(obj, &t[1], 1, &failed), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(failed.rc, KV_E_NOT_FOUND);
  akv_object_unref(obj);
}

/* Template matching: same bytes match, a failed value fetch is no match and is reported. */
static void test_matches(void **state)
{
  CK_OBJECT_CLASS data = CKO_DATA, key = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE by_class = {CKA_CLASS, &data, sizeof(data)};
  CK_ATTRIBUTE other_class = {CKA_CLASS, &key, sizeof(key)};
  CK_ATTRIBUTE by_value = {CKA_VALUE, (void *)"token-v1", 8};
  CK_ATTRIBUTE wrong_value = {CKA_VALUE, (void *)"token-v2", 8};
  struct akv_fetch_status failed = {KV_OK, 0};
  struct akv_object *obj;
  (void)state;
  fake_kv_add_secret("webhook", "token-v1", 0);
  obj = secret_object("webhook");
  assert_int_equal(akv_object_matches(obj, &by_class, 1, &failed), 1);
  assert_int_equal(akv_object_matches(obj, &other_class, 1, &failed), 0);
  assert_int_equal(akv_object_matches(obj, &by_value, 1, &failed), 1);
  assert_int_equal(akv_object_matches(obj, &wrong_value, 1, &failed), 0);
  assert_int_equal(failed.rc, KV_OK);
  akv_object_unref(obj);

  obj = secret_object("webhook");
  fake_kv_fail(KV_E_THROTTLED);
  assert_int_equal(akv_object_matches(obj, &by_value, 1, &failed), 0);
  assert_int_equal(failed.rc, KV_E_THROTTLED);
  akv_object_unref(obj);
}

/* The same identity gets the same handle while the registry lives; another identity another. The
 * objects of one id share a registry entry: a key version's private and public objects take
 * consecutive handles, other slots and other ids other handles. */
static void test_handles(void **state)
{
  CK_OBJECT_HANDLE a, b, c, d, e, v;
  size_t n0 = akv_handles_count();
  (void)state;
  a = akv_handle_for(0, CKO_PRIVATE_KEY, "https://v/keys/signer/1");
  b = akv_handle_for(0, CKO_PRIVATE_KEY, "https://v/keys/signer/1");
  c = akv_handle_for(0, CKO_PUBLIC_KEY, "https://v/keys/signer/1");
  d = akv_handle_for(1, CKO_PRIVATE_KEY, "https://v/keys/signer/1");
  e = akv_handle_for(0, CKO_PRIVATE_KEY, "https://v/keys/signer/2");
  v = akv_handle_for(0, CKO_VENDOR_DEFINED, "https://v/keys/signer/1");
  assert_true(a != CK_INVALID_HANDLE && c != CK_INVALID_HANDLE && v != CK_INVALID_HANDLE);
  assert_int_equal(a, b);
  assert_int_equal(c, a + 1);
  assert_true(d != a && d != c && e != a && e != c && e != d);
  assert_true(v != a && v != c && v != d && v != e);
  assert_int_equal(akv_handle_for(0, CKO_VENDOR_DEFINED, "https://v/keys/signer/1"), v);
  assert_int_equal(akv_handle_for(1, CKO_PUBLIC_KEY, "https://v/keys/signer/1"), d + 1);
  /* signer/1 on slot 0 and on slot 1, signer/2, the vendor-class object */
  assert_int_equal(akv_handles_count() - n0, 4);
}

/* The per-slot cache lists the fake vault once and serves the snapshot within the TTL; its
 * objects are found by handle. */
static void test_cache_snapshot(void **state)
{
  struct akv_cache *c;
  struct akv_snapshot *snap = NULL, *again = NULL;
  size_t i, keys = 0;
  (void)state;
  fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("ec-signer", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  c = akv_cache_new(&slot);
  assert_non_null(c);
  slot.cache = c;
  assert_int_equal(akv_cache_get(c, &snap, NULL), CKR_OK);
  assert_non_null(snap);
  for (i = 0; i < snap->n; i++) {
    if (akv_snapshot_obj(snap, i)->cls == CKO_PRIVATE_KEY ||
        akv_snapshot_obj(snap, i)->cls == CKO_PUBLIC_KEY)
      keys++;
    assert_ptr_equal(akv_snapshot_find(snap, akv_snapshot_obj(snap, i)->handle),
                     akv_snapshot_obj(snap, i));
  }
  assert_int_equal(keys, 4);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  now_s += 10;
  assert_int_equal(akv_cache_get(c, &again, NULL), CKR_OK);
  assert_ptr_equal(again, snap);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  akv_snapshot_unref(again);
  akv_snapshot_unref(snap);
  akv_cache_free(c);
  slot.cache = NULL;
}

/* Source ids: built and read in one place. */
static void test_source_ids(void **state)
{
  char buf[64];
  enum akv_source_kind kind;
  const char *name, *version;
  size_t nl;
  (void)state;
  akv_source_id(buf, sizeof(buf), AKV_SRC_VERSION, "signer", "abc");
  assert_string_equal(buf, "v|signer|abc");
  assert_true(akv_source_names(buf, AKV_SRC_VERSION, "SIGNER"));
  assert_false(akv_source_names(buf, AKV_SRC_KEY, "signer"));
  assert_int_equal(akv_source_split(buf, &kind, &name, &nl, &version), 1);
  assert_int_equal(kind, AKV_SRC_VERSION);
  assert_int_equal(nl, 6);
  assert_string_equal(version, "abc");
  akv_source_id(buf, sizeof(buf), AKV_SRC_KEY, "signer", NULL);
  assert_string_equal(buf, "k|signer");
  assert_true(akv_source_is(buf, AKV_SRC_KEY));
  assert_string_equal(akv_source_name(buf), "signer");
  assert_false(akv_source_names(buf, AKV_SRC_KEY, "sign"));
  assert_int_equal(akv_source_split(buf, &kind, &name, &nl, &version), 1);
  assert_null(version);
  /* Not source ids: a key with a version part, a version without one, another kind, NULL. */
  assert_int_equal(akv_source_split("k|a|b", &kind, &name, &nl, &version), 0);
  assert_int_equal(akv_source_split("v|a", &kind, &name, &nl, &version), 0);
  assert_int_equal(akv_source_split("x|a", &kind, &name, &nl, &version), 0);
  assert_int_equal(akv_source_split("", &kind, &name, &nl, &version), 0);
  assert_false(akv_source_is(NULL, AKV_SRC_SECRET));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get_attrs_fetches_value, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_attrs_reports_failed_fetch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_matches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_handles, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_snapshot, setup, teardown),
      cmocka_unit_test(test_source_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
