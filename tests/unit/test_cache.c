/* src/cache.c: TTL, soft refresh in the background, stale-if-error, rotation, stable handles and
 * lazy mode, with the injected clock and the fake backend. */
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model_helpers.h"

#define OPS (KV_OP_SIGN | KV_OP_VERIFY)
#define CFG_TTL T_CFG(",\"ttl\":100,\"stale_if_error\":1000")

static CK_SESSION_HANDLE sess;

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static CK_ULONG count_all(void)
{
  CK_OBJECT_HANDLE h[64];
  return t_find(sess, NULL, 0, h, 64);
}

/* Waits (bounded) for the background refresh to have listed, then for it to publish. */
static void wait_list_calls(int n)
{
  int i;
  for (i = 0; i < 500 && __atomic_load_n(&fake_kv_calls.list_keys, __ATOMIC_SEQ_CST) < n; i++)
    sleep_ms(10);
  assert_int_equal(fake_kv_calls.list_keys, n);
  sleep_ms(50);
}

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  t_clock_now = 1800000000;
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, OPS);
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, OPS);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_kv_fail(KV_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static void test_first_use_lists(void **state)
{
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  /* No network I/O in C_Initialize or C_OpenSession. */
  sess = t_open(0);
  assert_int_equal(fake_kv_calls.list_keys, 0);
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(fake_kv_calls.get_key, 2);
  assert_int_equal(fake_kv_calls.list_certs, 1);
  assert_int_equal(fake_kv_calls.list_secrets, 0); /* secrets are opt-in */
}

static void test_ttl_soft_and_hard(void **state)
{
  CK_OBJECT_HANDLE before, after;
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  before = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  assert_int_equal(fake_kv_calls.list_keys, 1);
  /* Within the soft TTL: served from the snapshot. */
  t_clock_now += 74;
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  /* Past 75 %: served at once, one background refresh. */
  t_clock_now += 2;
  assert_int_equal(count_all(), 4);
  wait_list_calls(2);
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  /* Unchanged keys are carried over: no keys/get on refresh, same handles. */
  assert_int_equal(fake_kv_calls.get_key, 2);
  after = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  assert_int_equal(before, after);
  /* Past the hard TTL of the new snapshot: synchronous refresh. */
  t_clock_now += 100;
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 3);
}

static void test_stale_if_error(void **state)
{
  CK_OBJECT_HANDLE h;
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  h = t_find_one(sess, CKO_PUBLIC_KEY, "ec1");
  fake_kv_fail(KV_E_SERVER);
  t_clock_now += 150;
  /* The refresh fails; the old snapshot is served (with a warning). */
  assert_int_equal(t_find_one(sess, CKO_PUBLIC_KEY, "ec1"), h);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  /* Not retried at every call right after a failure. */
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  t_clock_now += 31;
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 3);
  /* Beyond TTL + stale_if_error the error reaches the caller. */
  t_clock_now += 1100;
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_DEVICE_ERROR);
  /* Recovery. */
  fake_kv_fail(KV_OK);
  assert_int_equal(count_all(), 4);
  assert_int_equal(t_find_one(sess, CKO_PUBLIC_KEY, "ec1"), h);
}

static void test_error_without_snapshot(void **state)
{
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  fake_kv_fail(KV_E_FORBIDDEN);
  assert_int_equal(C_FindObjectsInit(sess, NULL, 0), CKR_DEVICE_ERROR);
  fake_kv_fail(KV_OK);
  assert_int_equal(count_all(), 4);
}

static void test_rotation(void **state)
{
  CK_OBJECT_HANDLE old_priv, new_priv, ec_before;
  char ver[8];
  CK_ATTRIBUTE a = {CKA_AKV_VERSION, ver, sizeof(ver)};
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  old_priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  ec_before = t_find_one(sess, CKO_PRIVATE_KEY, "ec1");
  fake_kv_add_key("rsa1", "v2", KV_KTY_RSA, 1, OPS);
  /* Attribute change without a new version: rebuilt, same kid, same handle. */
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, OPS);
  t_clock_now += 100;
  new_priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  assert_true(new_priv != old_priv);
  assert_int_equal(C_GetAttributeValue(sess, new_priv, &a, 1), CKR_OK);
  assert_int_equal(a.ulValueLen, 2);
  assert_memory_equal(ver, "v2", 2);
  assert_int_equal(C_GetAttributeValue(sess, old_priv, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(t_find_one(sess, CKO_PRIVATE_KEY, "ec1"), ec_before);
  assert_int_equal(count_all(), 4);
}

static void test_versions_all(void **state)
{
  CK_OBJECT_HANDLE h[64];
  (void)state;
  fake_kv_add_key("rsa1", "v2", KV_KTY_RSA, 1, OPS);
  fake_kv_add_key("rsa1", "v3", KV_KTY_RSA, 2, OPS)->enabled = 0; /* latest, disabled */
  assert_int_equal(t_init(T_CFG(",\"versions\":\"all\",\"show_disabled\":false")), CKR_OK);
  sess = t_open(0);
  /* rsa1 latest (v3) disabled: hidden with its name; v1 and v2 listed as rsa1/vN; ec1. */
  assert_int_equal(t_find(sess, NULL, 0, h, 64), 6);
  t_find_one(sess, CKO_PRIVATE_KEY, "rsa1/v1");
  t_find_one(sess, CKO_PUBLIC_KEY, "rsa1/v2");
}

static void test_lazy_mode(void **state)
{
  (void)state;
  fake_kv_add_cert("rsa1", KV_KTY_RSA, 0);
  assert_int_equal(t_init(T_CFG(",\"keys\":[\"rsa1\",\"missing\"]")), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 3); /* rsa1 pair and its certificate */
  assert_int_equal(fake_kv_calls.list_keys, 0);
  assert_int_equal(fake_kv_calls.list_certs, 0);
  assert_int_equal(fake_kv_calls.get_key, 2);
  assert_int_equal(fake_kv_calls.get_cert, 2);
}

static void test_filter_and_invalidate(void **state)
{
  (void)state;
  assert_int_equal(t_init(T_CFG(",\"key_filter\":\"ec*\"")), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 2);
  fake_kv_add_key("ec2", "x", KV_KTY_EC, 1, OPS);
  assert_int_equal(count_all(), 2);
  /* A 404 on a known key invalidates the listing: the next search relists. */
  akv_slot_invalidate(akv_slot_get(0));
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 2);
}

static void test_no_threads(void **state)
{
  CK_C_INITIALIZE_ARGS a;
  (void)state;
  memset(&a, 0, sizeof(a));
  a.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS;
  a.pReserved = (void *)CFG_TTL;
  assert_int_equal(C_Initialize(&a), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 4);
  t_clock_now += 80;
  assert_int_equal(count_all(), 4);
  sleep_ms(100);
  assert_int_equal(fake_kv_calls.list_keys, 1); /* no background thread */
  t_clock_now += 30;
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 2);
}

/* The cross-process cache file: a second "process" (here: a second C_Initialize) within the TTL
 * lists nothing; the file is private; a foreign-permission or corrupt file is ignored. */
static void test_cache_file(void **state)
{
  char dir[] = "/tmp/akv-cache-test-XXXXXX", path[256], cfg[512], lockp[300];
  unsigned char mod1[512], mod2[512];
  CK_OBJECT_HANDLE h;
  CK_ULONG l1, l2;
  struct stat st;
  FILE *f;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/p11-cache", dir);
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"objects\":[\"keys\",\"certificates\",\"secrets\"]}]}",
           path);
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  fake_kv_add_secret("pw", "value", 0);
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  h = t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  l1 = t_attr(sess, h, CKA_MODULUS, mod1, sizeof(mod1));
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(C_Finalize(NULL), CKR_OK);

  /* Within the TTL: everything from the file, no request at all. */
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  t_clock_now += 50;
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.get_key + fake_kv_calls.list_certs +
                       fake_kv_calls.get_cert + fake_kv_calls.list_secrets,
                   0);
  h = t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  l2 = t_attr(sess, h, CKA_MODULUS, mod2, sizeof(mod2));
  assert_int_equal(l1, l2);
  assert_memory_equal(mod1, mod2, l1);
  t_find_one(sess, CKO_CERTIFICATE, "ec1");
  /* Secret values are never in the file: fetched on read. */
  assert_int_equal(t_attr(sess, t_find_one(sess, CKO_DATA, "pw"), CKA_VALUE, mod2, sizeof(mod2)),
                   5);
  assert_int_equal(fake_kv_calls.get_secret, 1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);

  /* A file others could write is not trusted. */
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  assert_int_equal(chmod(path, 0622), 0);
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  /* Rewritten private by that listing; now corrupt it: ignored, listed again. */
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"format\":1,\"slots\":[{\"fp\":", f);
  fclose(f);
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  /* Past the TTL the file is stale: listed again. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  t_clock_now += 200;
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  unlink(path);
  snprintf(lockp, sizeof(lockp), "%s.lock", path);
  unlink(lockp);
  rmdir(dir);
}

#define CFG_PENDING T_CFG(",\"ttl\":100,\"prefetch_keys\":0")

/* prefetch_keys 0: the listing reads no key; a search reads only the keys it may match. */
static void test_pending_keys(void **state)
{
  CK_OBJECT_CLASS cert = CKO_CERTIFICATE, priv = CKO_PRIVATE_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &priv, sizeof(priv)}, {CKA_KEY_TYPE, &aes, sizeof(aes)}};
  CK_ATTRIBUTE tc = {CKA_CLASS, &cert, sizeof(cert)};
  CK_OBJECT_HANDLE h[64], ec1;
  (void)state;
  fake_kv_add_key("ec2", "x2", KV_KTY_EC, 1, OPS);
  fake_kv_add_key("ec3", "x3", KV_KTY_EC, 1, OPS);
  assert_int_equal(t_init(CFG_PENDING), CKR_OK);
  sess = t_open(0);
  /* By label: the listing, then that key only. */
  ec1 = t_find_one(sess, CKO_PRIVATE_KEY, "ec1");
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(fake_kv_calls.get_key, 1);
  assert_int_equal(t_find_one(sess, CKO_PUBLIC_KEY, "ec1") != 0, 1);
  assert_int_equal(fake_kv_calls.get_key, 1);
  /* Templates no key can match read nothing: certificates, AES keys in a Key Vault. */
  assert_int_equal(t_find(sess, &tc, 1, h, 64), 0);
  assert_int_equal(t_find(sess, t, 2, h, 64), 0);
  assert_int_equal(fake_kv_calls.get_key, 1);
  /* A failed read fails the search and is tried again by the next one. */
  fake_kv_fail(KV_E_SERVER);
  t[1].type = CKA_LABEL;
  t[1].pValue = (void *)"rsa1";
  t[1].ulValueLen = 4;
  assert_int_equal(C_FindObjectsInit(sess, t, 2), CKR_DEVICE_ERROR);
  fake_kv_fail(KV_OK);
  assert_int_equal(t_find(sess, t, 2, h, 64), 1);
  assert_int_equal(fake_kv_calls.get_key, 3);
  /* A key deleted since the listing is left out; a search of everything reads the rest. */
  fake_kv_remove_key("ec2");
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.get_key, 5);
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.get_key, 5);
  /* A refresh carries every read key over: no new read, the same handles. */
  t_clock_now += 100;
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  assert_int_equal(fake_kv_calls.get_key, 5);
  assert_int_equal(t_find_one(sess, CKO_PRIVATE_KEY, "ec1"), ec1);
}

struct finder {
  CK_SESSION_HANDLE s;
  CK_RV rv;
  CK_ULONG found;
};

static void *find_ec3(void *arg)
{
  struct finder *f = arg;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)"ec3", 3}};
  CK_OBJECT_HANDLE h[4];
  f->rv = C_FindObjectsInit(f->s, t, 2);
  if (f->rv == CKR_OK)
    f->rv = C_FindObjects(f->s, h, 4, &f->found);
  if (f->rv == CKR_OK)
    f->rv = C_FindObjectsFinal(f->s);
  return NULL;
}

/* Threads searching for the same pending key at once: one read, every search finds it. */
static void test_pending_single_flight(void **state)
{
  struct finder f[8];
  pthread_t th[8];
  int i;
  (void)state;
  fake_kv_add_key("ec3", "x3", KV_KTY_EC, 1, OPS);
  assert_int_equal(t_init(CFG_PENDING), CKR_OK);
  sess = t_open(0);
  for (i = 0; i < 8; i++) {
    f[i].s = t_open(0);
    f[i].rv = CKR_GENERAL_ERROR;
    f[i].found = 0;
    assert_int_equal(pthread_create(&th[i], NULL, find_ec3, &f[i]), 0);
  }
  for (i = 0; i < 8; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(f[i].rv, CKR_OK);
    assert_int_equal(f[i].found, 1);
  }
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(fake_kv_calls.get_key, 1);
}

/* Pending keys survive in the cache file: the next process lists nothing and reads only what its
 * search needs; what one process read, the next does not read again. */
static void test_pending_cache_file(void **state)
{
  char dir[] = "/tmp/akv-cache-test-XXXXXX", path[256], cfg[512], lockp[300];
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/p11-cache", dir);
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"prefetch_keys\":0}]}",
           path);
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  assert_int_equal(fake_kv_calls.get_key, 1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);

  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  t_clock_now += 10;
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.get_key, 0);
  assert_int_equal(count_all(), 4); /* reads ec1, still pending in the file */
  assert_int_equal(fake_kv_calls.list_keys, 0);
  assert_int_equal(fake_kv_calls.get_key, 1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);

  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.get_key, 0);
  unlink(path);
  snprintf(lockp, sizeof(lockp), "%s.lock", path);
  unlink(lockp);
  rmdir(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_use_lists, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ttl_soft_and_hard, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_if_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_without_snapshot, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_versions_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lazy_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_filter_and_invalidate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_single_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_cache_file, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
