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
#include <pthread.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

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

/* ---- a search by CKA_ID on a warm listing (docs/design.md "Keys created since the listing") -- */

#define CFG_ID(extra)                                                                              \
  "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\",\"objects\":[\"keys\"]" extra   \
  "}]}"

static int64_t clock_now = 1800000000;
static int clock_slow; /* each reading of the clock takes 2 ms: a listing lasts a while */
static int64_t clock_fn(void)
{
  if (__atomic_load_n(&clock_slow, __ATOMIC_SEQ_CST)) {
    struct timespec ts = {0, 2000000L};
    nanosleep(&ts, NULL);
  }
  return __atomic_load_n(&clock_now, __ATOMIC_SEQ_CST);
}

/* The fake vault's key "ec-signer" and the slot's first listing, on the configuration cfg. */
static void init_id(const char *cfg)
{
  CK_C_INITIALIZE_ARGS a;
  CK_OBJECT_HANDLE out[16];
  fake_kv_reset();
  fake_kv_add_key("ec-signer", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  clock_now = 1800000000;
  akv_set_clock(clock_fn);
  memset(&a, 0, sizeof(a));
  a.flags = CKF_OS_LOCKING_OK;
  a.pReserved = (void *)cfg;
  assert_int_equal(akv_module_initialize(&a), CKR_OK);
  assert_int_equal(akv_session_open(0, CKF_SERIAL_SESSION, &h), CKR_OK);
  assert_int_equal(akv_session_acquire(h, &s), CKR_OK);
  assert_int_equal(find_all(NULL, 0, out), 2);
  assert_int_equal(fake_kv_calls.list_keys, 1);
}

static int setup_id(void **state)
{
  (void)state;
  init_id(CFG_ID(""));
  return 0;
}

static int setup_id_off(void **state)
{
  (void)state;
  init_id(CFG_ID(",\"id_miss_refresh\":0"));
  return 0;
}

static int teardown_id(void **state)
{
  __atomic_store_n(&clock_slow, 0, __ATOMIC_SEQ_CST);
  akv_set_clock(NULL);
  return teardown(state);
}

/* The CKA_ID the module gives a key without a pkcs11-id tag: the SHA-1 of its SPKI. */
static void spki_id(enum kv_kty kty, int pair, unsigned char id[20])
{
  unsigned char *der = NULL;
  unsigned int len = 0;
  int n = i2d_PUBKEY(fake_kv_pair(kty, pair), &der);
  assert_true(n > 0);
  assert_int_equal(EVP_Digest(der, (size_t)n, id, &len, EVP_sha1(), NULL), 1);
  assert_int_equal(len, 20);
  OPENSSL_free(der);
}

/* The key "ec-later" (EC, key pair 1) joins the vault after the listing; its CKA_ID into id. */
static void add_later(unsigned char id[20])
{
  spki_id(KV_KTY_EC, 1, id);
  fake_kv_add_key("ec-later", "v1", KV_KTY_EC, 1, KV_OP_SIGN | KV_OP_VERIFY);
}

static CK_ULONG find_id(const unsigned char *id, CK_ULONG len)
{
  CK_ATTRIBUTE t = {CKA_ID, (void *)id, len};
  CK_OBJECT_HANDLE out[16];
  return find_all(&t, 1, out);
}

/* A key created since the listing is found by its CKA_ID alone once the listing is
 * id_miss_refresh (5 s) old: one listing, one read of the new key; then no more requests. */
static void test_find_id_created_since(void **state)
{
  unsigned char id[20];
  CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY;
  CK_ATTRIBUTE by_class_id[2] = {{CKA_CLASS, &pub, sizeof(pub)}, {CKA_ID, id, sizeof(id)}};
  CK_OBJECT_HANDLE out[16];
  (void)state;
  add_later(id);
  /* A listing younger than the bound answers as it is. */
  clock_now += 4;
  assert_int_equal(find_id(id, sizeof(id)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  clock_now += 1;
  assert_int_equal(find_id(id, sizeof(id)), 2); /* private + public */
  assert_int_equal(fake_kv_calls.list_keys, 2);
  assert_int_equal(fake_kv_calls.get_key, 2); /* ec-signer at the first listing, ec-later now */
  assert_int_equal(find_all(by_class_id, 2, out), 1);
  clock_now += 60;
  assert_int_equal(find_id(id, sizeof(id)), 2);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  assert_int_equal(fake_kv_calls.get_key, 2);
}

/* A CKA_ID nobody has: one listing per id_miss_refresh seconds however many searches; a failed
 * listing is not tried again within the 30 s after it; a search with a label, or for session
 * objects, does not list. */
static void test_find_id_miss_bounded(void **state)
{
  static const unsigned char none[4] = {0xde, 0xad, 0xbe, 0xef};
  CK_BBOOL no = CK_FALSE;
  CK_ATTRIBUTE with_label[2] = {{CKA_LABEL, (void *)"no-such-key", 11},
                                {CKA_ID, (void *)none, sizeof(none)}};
  CK_ATTRIBUTE session_only[2] = {{CKA_TOKEN, &no, sizeof(no)},
                                  {CKA_ID, (void *)none, sizeof(none)}};
  CK_OBJECT_HANDLE out[16];
  int i;
  (void)state;
  clock_now += 5;
  for (i = 0; i < 20; i++)
    assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  clock_now += 4;
  for (i = 0; i < 20; i++)
    assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  clock_now += 1;
  assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 3);
  clock_now += 10;
  assert_int_equal(find_all(with_label, 2, out), 0);
  assert_int_equal(find_all(session_only, 2, out), 0);
  assert_int_equal(fake_kv_calls.list_keys, 3);
  /* The vault fails the listing: the search answers from the listing it has, once per 30 s. */
  fake_kv_fail(KV_E_NETWORK);
  assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 4);
  clock_now += 10;
  assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 4);
  fake_kv_fail(KV_OK);
  clock_now += 21;
  assert_int_equal(find_id(none, sizeof(none)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 5);
}

/* id_miss_refresh 0: a miss waits for the refresh at ttl, as before. */
static void test_find_id_off(void **state)
{
  unsigned char id[20];
  (void)state;
  add_later(id);
  clock_now += 60;
  assert_int_equal(find_id(id, sizeof(id)), 0);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  clock_now += 300; /* ttl */
  assert_int_equal(find_id(id, sizeof(id)), 2);
  assert_int_equal(fake_kv_calls.list_keys, 2);
}

struct id_finder {
  CK_SESSION_HANDLE h;
  const unsigned char *id;
  pthread_barrier_t *go;
  CK_RV rv;
  CK_ULONG found;
};

static void *find_id_thread(void *arg)
{
  struct id_finder *f = arg;
  CK_ATTRIBUTE t = {CKA_ID, (void *)f->id, 20};
  CK_OBJECT_HANDLE out[8];
  struct akv_session *fs = NULL;
  pthread_barrier_wait(f->go);
  f->rv = akv_session_acquire(f->h, &fs);
  if (f->rv != CKR_OK)
    return NULL;
  f->rv = akv_find_init(fs, &t, 1);
  if (f->rv == CKR_OK)
    f->rv = akv_find_next(fs, out, 8, &f->found);
  if (f->rv == CKR_OK)
    f->rv = akv_find_final(fs);
  akv_session_release(fs);
  return NULL;
}

/* Eight threads miss the new key's CKA_ID at once while the listing is slow: one listing, and
 * every search finds the key (none answers from the old listing while the new one is in flight).
 * Then a background refresh in flight (past 75 % of ttl) is waited for, not repeated. */
static void test_find_id_single_flight(void **state)
{
  unsigned char id[20], id2[20];
  struct id_finder f[8];
  pthread_t th[8];
  pthread_barrier_t go;
  int i, round;
  (void)state;
  add_later(id);
  spki_id(KV_KTY_RSA, 1, id2);
  for (i = 0; i < 8; i++)
    assert_int_equal(akv_session_open(0, CKF_SERIAL_SESSION, &f[i].h), CKR_OK);
  assert_int_equal(pthread_barrier_init(&go, NULL, 8), 0);
  for (round = 0; round < 2; round++) {
    if (round == 1) {
      /* Past 75 % of ttl: the first search starts the background refresh; the misses wait for
       * it. */
      fake_kv_add_key("rsa-later", "v1", KV_KTY_RSA, 1, KV_OP_SIGN | KV_OP_VERIFY);
      clock_now += 230;
    } else {
      clock_now += 5;
    }
    __atomic_store_n(&clock_slow, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < 8; i++) {
      f[i].id = round ? id2 : id;
      f[i].go = &go;
      f[i].rv = CKR_GENERAL_ERROR;
      f[i].found = 0;
      assert_int_equal(pthread_create(&th[i], NULL, find_id_thread, &f[i]), 0);
    }
    for (i = 0; i < 8; i++) {
      assert_int_equal(pthread_join(th[i], NULL), 0);
      assert_int_equal(f[i].rv, CKR_OK);
      assert_int_equal(f[i].found, 2);
    }
    __atomic_store_n(&clock_slow, 0, __ATOMIC_SEQ_CST);
    assert_int_equal(fake_kv_calls.list_keys, 2 + round);
  }
  pthread_barrier_destroy(&go);
  for (i = 0; i < 8; i++)
    assert_int_equal(akv_session_close(f[i].h), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_find_by_class, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_states, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_failed_fetch_recorded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_id_created_since, setup_id, teardown_id),
      cmocka_unit_test_setup_teardown(test_find_id_miss_bounded, setup_id, teardown_id),
      cmocka_unit_test_setup_teardown(test_find_id_off, setup_id_off, teardown_id),
      cmocka_unit_test_setup_teardown(test_find_id_single_flight, setup_id, teardown_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
