/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/cache.c: TTL, soft refresh in the background, stale-if-error, rotation, stable handles
 * and lazy mode, with the injected clock and the fake backend. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "cache_file_helpers.h"
#include "model_helpers.h"

#include "store/cache.h"
#include "store/cache_file.h"
#include "store/object.h"
#include "util/b64.h"

#define OPS (KV_OP_SIGN | KV_OP_VERIFY)
#define CFG_TTL T_CFG(",\"ttl\":100,\"stale_if_error\":1000")

static CK_SESSION_HANDLE sess;

/* Every thread the module starts goes through here (the model is linked into this program). */
static int threads_created;
int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
  int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
      (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(
          RTLD_NEXT, "pthread_create");
  __atomic_add_fetch(&threads_created, 1, __ATOMIC_SEQ_CST);
  return real(t, attr, fn, arg);
}

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

/* For tests that end with the module finalized (one whole process after another). */
static int teardown_finalized(void **state)
{
  (void)state;
  fake_kv_fail(KV_OK);
  (void)C_Finalize(NULL);
  return 0;
}

/* The slot's first listing, made by a search no label names: a search by label on a cold slot
 * reads that key by name instead (docs/design.md "Cold search by label"). No key matches. */
static void list_first(CK_SESSION_HANDLE s)
{
  CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
  CK_OBJECT_HANDLE h[8];
  (void)t_find(s, &t, 1, h, 8);
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
  list_first(sess);
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
  list_first(sess);
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
  list_first(sess);
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
  /* The handle held before the rotation keeps its version (docs/lifecycle.md "Handles held across
   * a rotation"), and no search returns it. */
  a.ulValueLen = sizeof(ver);
  assert_int_equal(C_GetAttributeValue(sess, old_priv, &a, 1), CKR_OK);
  assert_int_equal(a.ulValueLen, 2);
  assert_memory_equal(ver, "v1", 2);
  assert_int_equal(t_find_one(sess, CKO_PRIVATE_KEY, "ec1"), ec_before);
  assert_int_equal(count_all(), 4);
  assert_int_equal(akv_cache_superseded_count(akv_module_slot(0)->cache), 1);
}

/* A superseded object lives while a session open at its rotation (or its last use) is open. */
static void test_rotation_release(void **state)
{
  CK_OBJECT_HANDLE old_priv, old_pub;
  CK_SESSION_HANDLE later;
  struct akv_cache *c;
  CK_ULONG bits = 0;
  CK_ATTRIBUTE a = {CKA_MODULUS_BITS, &bits, sizeof(bits)};
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  c = akv_module_slot(0)->cache;
  sess = t_open(0);
  list_first(sess);
  old_priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  (void)t_find_one(sess, CKO_PRIVATE_KEY, "ec1"); /* the whole list is there */
  old_pub = t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  fake_kv_add_key("rsa1", "v2", KV_KTY_RSA, 1, OPS);
  t_clock_now += 100;
  assert_true(t_find_one(sess, CKO_PRIVATE_KEY, "rsa1") != old_priv);
  assert_int_equal(akv_cache_superseded_count(c), 2);
  /* A session opened after the rotation reaches the handle while the first one is open... */
  later = t_open(0);
  assert_int_equal(C_GetAttributeValue(later, old_pub, &a, 1), CKR_OK);
  /* ...and that use pins it for `later` too: closing the first session keeps it. */
  assert_int_equal(C_CloseSession(sess), CKR_OK);
  assert_int_equal(akv_cache_superseded_count(c), 1); /* old_priv: only `sess` could name it */
  assert_int_equal(C_GetAttributeValue(later, old_pub, &a, 1), CKR_OK);
  assert_int_equal(C_GetAttributeValue(later, old_priv, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_CloseSession(later), CKR_OK);
  assert_int_equal(akv_cache_superseded_count(c), 0);
  sess = t_open(0);
  assert_int_equal(C_GetAttributeValue(sess, old_pub, &a, 1), CKR_OBJECT_HANDLE_INVALID);
}

/* At most 4 superseded versions per name are kept, however many rotations one session sees. */
static void test_rotation_bound(void **state)
{
  CK_OBJECT_HANDLE first, h;
  char ver[8];
  int i;
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  list_first(sess);
  first = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  for (i = 2; i < 12; i++) {
    snprintf(ver, sizeof(ver), "v%d", i);
    fake_kv_add_key("rsa1", ver, KV_KTY_RSA, i % 2, OPS);
    t_clock_now += 100;
    h = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
    assert_true(h != CK_INVALID_HANDLE && h != first);
    assert_true(akv_cache_superseded_count(akv_module_slot(0)->cache) <= 4);
  }
  assert_int_equal(akv_cache_superseded_count(akv_module_slot(0)->cache), 4);
  /* The least recently used went first: the first version is released. */
  {
    CK_BBOOL b;
    CK_ATTRIBUTE a = {CKA_SIGN, &b, sizeof(b)};
    assert_int_equal(C_GetAttributeValue(sess, first, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  }
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
  akv_slot_invalidate(akv_module_slot(0));
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
  threads_created = 0;
  assert_int_equal(C_Initialize(&a), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 4);
  t_clock_now += 80;
  assert_int_equal(count_all(), 4);
  sleep_ms(100);
  assert_int_equal(fake_kv_calls.list_keys, 1); /* no background thread */
  t_clock_now += 30;
  assert_int_equal(count_all(), 4);
  assert_int_equal(fake_kv_calls.list_keys, 2); /* refreshed inline at the TTL instead */
  /* Pending keys (prefetch_keys 0) are read in this thread too. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  a.pReserved = (void *)T_CFG(",\"ttl\":100,\"prefetch_keys\":0");
  assert_int_equal(C_Initialize(&a), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 4);
  assert_int_equal(threads_created, 0);
}

/* The positive control of the test above: without the flag, past the soft TTL, one thread. */
static void test_threads_by_default(void **state)
{
  (void)state;
  threads_created = 0;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 4);
  t_clock_now += 80;
  assert_int_equal(count_all(), 4);
  wait_list_calls(2);
  assert_int_equal(threads_created, 1);
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
  list_first(sess);
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
  list_first(sess);
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
  list_first(sess);
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

/* ---- the cache file's content (docs/design.md "Cache file"): what a process may find in it -- */

struct cfile {
  char dir[40], path[128], cfg[600];
};

static void cfile_setup(struct cfile *f)
{
  snprintf(f->dir, sizeof(f->dir), "/tmp/akv-cache-test-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/p11-cache", f->dir);
  snprintf(f->cfg, sizeof(f->cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"objects\":[\"keys\",\"certificates\",\"secrets\"]}]}",
           f->path);
}

static void cfile_cleanup(struct cfile *f)
{
  char lock[160];
  snprintf(lock, sizeof(lock), "%s.lock", f->path);
  unlink(f->path);
  unlink(lock);
  rmdir(f->dir);
}

/* One process: C_Initialize, a search of everything, C_Finalize; returns the listing calls. */
static int one_process(const struct cfile *f, CK_ULONG expect_objects)
{
  int before = fake_kv_calls.list_keys;
  assert_int_equal(t_init(f->cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), expect_objects);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return fake_kv_calls.list_keys - before;
}

/* The file's JSON (after its MAC line). */
static cJSON *cfile_read(const char *path)
{
  return t_cache_file_read(path);
}

/* Writes doc as the module would: the MAC line under the user's key, then the JSON. */
static void cfile_write(const char *path, cJSON *doc)
{
  t_cache_file_write(path, doc);
}

/* The entry of the only slot, and in it the array member arr's element whose "src" is src. */
static cJSON *entry_of(cJSON *doc)
{
  cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "slots"), 0);
  assert_non_null(e);
  return e;
}

static cJSON *item_by_src(cJSON *doc, const char *arr, const char *src)
{
  cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(entry_of(doc), arr))
  {
    if (strcmp(cJSON_GetObjectItem(it, "src")->valuestring, src) == 0)
      return it;
  }
  fail_msg("no %s entry %s in the cache file", arr, src);
  return NULL;
}

static void set_member(cJSON *o, const char *name, cJSON *v)
{
  t_json_set(o, name, v);
}

static char *b64url_fill(unsigned char byte, size_t n)
{
  unsigned char buf[512];
  static char out[1024];
  memset(buf, byte, n);
  assert_true(akv_b64url_encode_to(buf, n, out, sizeof(out)) > 0);
  return out;
}

/* Numbers out of range in an authentic file (a bug, or a file from a broken clock): ignored,
 * listed, and the listing repairs the file. A built_at near INT64_MIN or of 1e300 once overflowed
 * the freshness test into "fresh forever". */
static void test_file_bounds(void **state)
{
  static const char *const bad[] = {
      "-9223372036854775808", "1e300",          "-1",  "0", "1800003600",
      "1800000000.5",         "\"1800000000\"", "null"};
  struct cfile f;
  cJSON *doc;
  size_t i;
  (void)state;
  cfile_setup(&f);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(one_process(&f, 4), 0); /* the file serves the next process */
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    print_message("built_at %s\n", bad[i]);
    doc = cfile_read(f.path);
    set_member(entry_of(doc), "built_at", cJSON_CreateRaw(bad[i]));
    cfile_write(f.path, doc);
    cJSON_Delete(doc);
    assert_int_equal(one_process(&f, 4), 1); /* ignored: listed */
    assert_int_equal(one_process(&f, 4), 0); /* repaired by that listing */
  }
  /* A pending key's times too. */
  doc = cfile_read(f.path);
  cJSON_AddItemToArray(cJSON_GetObjectItem(entry_of(doc), "pending"),
                       cJSON_Parse("{\"name\":\"p1\",\"created\":1e300,\"updated\":1}"));
  cfile_write(f.path, doc);
  cJSON_Delete(doc);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(one_process(&f, 4), 0);
  cfile_cleanup(&f);
}

/* Key material and certificates in an authentic file are checked as strictly as a vault reply: a
 * file that breaks any rule is ignored and the vault listed. */
static void test_file_material_checked(void **state)
{
  struct cfile f;
  cJSON *doc, *key;
  int i;
  (void)state;
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  cfile_setup(&f);
  assert_int_equal(one_process(&f, 5), 1);
  for (i = 0; i < 9; i++) {
    doc = cfile_read(f.path);
    key = cJSON_GetObjectItem(cJSON_GetObjectItem(item_by_src(doc, "keys", "k|rsa1"), "bundle"),
                              "key");
    switch (i) {
    case 0: /* an even modulus */
      set_member(key, "n", cJSON_CreateString(b64url_fill(0xfe, 256)));
      break;
    case 1: /* 1024 bits */
      set_member(key, "n", cJSON_CreateString(b64url_fill(0xff, 128)));
      break;
    case 2: /* an even exponent */
      set_member(key, "e", cJSON_CreateString("AQAA"));
      break;
    case 3: /* an unknown key type */
      set_member(key, "kty", cJSON_CreateString("DSA"));
      break;
    case 4: /* an EC point not on the curve */
      key = cJSON_GetObjectItem(cJSON_GetObjectItem(item_by_src(doc, "keys", "k|ec1"), "bundle"),
                                "key");
      set_member(key, "x", cJSON_CreateString(b64url_fill(0x01, 32)));
      break;
    case 5: /* a certificate that is not DER */
      set_member(cJSON_GetObjectItem(item_by_src(doc, "certs", "c|ec1"), "bundle"), "cer",
                 cJSON_CreateString("MIIBAA=="));
      break;
    case 6: /* an entry filed under another key's name (the label comes from src) */
      set_member(item_by_src(doc, "keys", "k|rsa1"), "src", cJSON_CreateString("k|ec1"));
      break;
    case 7: /* a kid of another collection */
      set_member(key, "kid", cJSON_CreateString(FAKE_VAULT_URL "/secrets/rsa1/v1"));
      break;
    default: /* key_ops of the wrong type */
      set_member(key, "key_ops", cJSON_CreateString("sign"));
      break;
    }
    cfile_write(f.path, doc);
    cJSON_Delete(doc);
    print_message("mutation %d\n", i);
    assert_int_equal(one_process(&f, 5), 1);
  }
  assert_int_equal(one_process(&f, 5), 0);
  cfile_cleanup(&f);
}

/* The file restores nothing but what the listing builds: attributes of the module's own choosing
 * cannot be slipped in. */
static void test_file_no_foreign_attributes(void **state)
{
  struct cfile f;
  cJSON *doc;
  CK_OBJECT_HANDLE h;
  (void)state;
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  cfile_setup(&f);
  assert_int_equal(one_process(&f, 5), 1);
  doc = cfile_read(f.path);
  /* Format 3 kept attribute lists: CKA_TRUSTED (0x86) TRUE would make a trust anchor. */
  cJSON_AddItemToObject(item_by_src(doc, "certs", "c|ec1"), "attrs",
                        cJSON_Parse("[{\"t\":134,\"v\":\"AQ==\"}]"));
  cJSON_AddItemToObject(item_by_src(doc, "keys", "k|rsa1"), "attrs",
                        cJSON_Parse("[{\"t\":2,\"v\":\"AQ==\"}]"));
  cfile_write(f.path, doc);
  cJSON_Delete(doc);
  assert_int_equal(t_init(f.cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 5);
  assert_int_equal(fake_kv_calls.list_keys, 1); /* served from the file */
  h = t_find_one(sess, CKO_CERTIFICATE, "ec1");
  assert_int_equal(t_attr_bool(sess, h, CKA_TRUSTED), CK_FALSE);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  cfile_cleanup(&f);
}

/* What the vault says wins over what the file says: objects from the file never count as read
 * now, so the next refresh reads them again even when the listing's times are unchanged. */
static void test_file_vault_wins(void **state)
{
  struct cfile f;
  cJSON *doc, *k1, *k2;
  unsigned char mod1[600], mod2[600], modf[600];
  CK_ULONG l1, l2, lf;
  int i;
  (void)state;
  fake_kv_add_key("rsa2", "w1", KV_KTY_RSA, 1, OPS);
  cfile_setup(&f);
  assert_int_equal(t_init(f.cfg), CKR_OK);
  sess = t_open(0);
  l1 = t_attr(sess, t_find_one(sess, CKO_PUBLIC_KEY, "rsa1"), CKA_MODULUS, mod1, sizeof(mod1));
  lf = t_attr(sess, t_find_one(sess, CKO_PUBLIC_KEY, "rsa2"), CKA_MODULUS, modf, sizeof(modf));
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  /* An authentic file whose rsa1 has other material (rsa2's) than the vault's. */
  doc = cfile_read(f.path);
  k1 =
      cJSON_GetObjectItem(cJSON_GetObjectItem(item_by_src(doc, "keys", "k|rsa1"), "bundle"), "key");
  k2 =
      cJSON_GetObjectItem(cJSON_GetObjectItem(item_by_src(doc, "keys", "k|rsa2"), "bundle"), "key");
  set_member(k1, "n", cJSON_Duplicate(cJSON_GetObjectItem(k2, "n"), 1));
  cfile_write(f.path, doc);
  cJSON_Delete(doc);
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
  assert_int_equal(t_init(f.cfg), CKR_OK);
  sess = t_open(0);
  l2 = t_attr(sess, t_find_one(sess, CKO_PUBLIC_KEY, "rsa1"), CKA_MODULUS, mod2, sizeof(mod2));
  assert_int_equal(fake_kv_calls.list_keys, 0); /* within the TTL the file is believed */
  assert_int_equal(l2, lf);
  assert_memory_equal(mod2, modf, lf);
  /* The next refresh (background, past 75 % of the TTL): same times in the listing, yet every key
   * is read again, and the vault's material replaces the file's. */
  t_clock_now += 80;
  assert_int_equal(count_all(), 6);
  wait_list_calls(1);
  /* Published after the file is written: wait for it (bounded). */
  for (i = 0; i < 500; i++) {
    l2 = t_attr(sess, t_find_one(sess, CKO_PUBLIC_KEY, "rsa1"), CKA_MODULUS, mod2, sizeof(mod2));
    if (l2 == l1 && memcmp(mod2, mod1, l1) == 0)
      break;
    sleep_ms(10);
  }
  assert_int_equal(fake_kv_calls.get_key, 3);
  assert_int_equal(l2, l1);
  assert_memory_equal(mod2, mod1, l1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  cfile_cleanup(&f);
}

/* A digest of every attribute of an object, to compare objects across processes. */
static void obj_digest(const struct akv_object *o, unsigned char md[32])
{
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  size_t i;
  assert_non_null(c);
  assert_true(EVP_DigestInit_ex(c, EVP_sha256(), NULL));
  for (i = 0; i < o->n_attrs; i++) {
    assert_true(EVP_DigestUpdate(c, &o->attrs[i].type, sizeof(o->attrs[i].type)));
    assert_true(EVP_DigestUpdate(c, &o->attrs[i].ulValueLen, sizeof(o->attrs[i].ulValueLen)));
    if (o->attrs[i].ulValueLen)
      assert_true(EVP_DigestUpdate(c, o->attrs[i].pValue, o->attrs[i].ulValueLen));
  }
  assert_true(EVP_DigestFinal_ex(c, md, NULL));
  EVP_MD_CTX_free(c);
}

/* The round trip: every object restored from the file has exactly the attributes the listing gave
 * it (certificates and their CKA_ID tag, secrets' data objects, HSM keys), and a certificate's key
 * keeps `managed`. */
static void test_file_round_trip(void **state)
{
  struct cfile f;
  struct akv_snapshot *snap;
  unsigned char md[16][32];
  char src[16][64];
  CK_OBJECT_CLASS cls[16];
  size_t n, i, j, found;
  int pass, managed = 0;
  (void)state;
  fake_kv_add_key("crt1", "c1", KV_KTY_RSA, 1, OPS)->managed = 1;
  fake_kv_add_cert("crt1", KV_KTY_RSA, 1);
  fake_kv_add_key("aes1", "a1", KV_KTY_OCT, 0, KV_OP_ENCRYPT | KV_OP_DECRYPT);
  fake_kv_add_secret("pw", "value", 0);
  cfile_setup(&f);
  for (pass = 0; pass < 2; pass++) {
    memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
    assert_int_equal(t_init(f.cfg), CKR_OK);
    sess = t_open(0);
    assert_int_equal(count_all(), 9);
    assert_int_equal(fake_kv_calls.list_keys, pass == 0 ? 1 : 0);
    snap = akv_cache_peek(akv_module_slot(0)->cache);
    assert_non_null(snap);
    assert_int_equal(snap->n, 9);
    for (i = 0; i < snap->n; i++) {
      const struct akv_object *o = akv_snapshot_obj(snap, i);
      unsigned char d[32];
      obj_digest(o, d);
      if (pass == 0) {
        assert_true(i < 16);
        memcpy(md[i], d, 32);
        snprintf(src[i], sizeof(src[i]), "%s", o->src);
        cls[i] = o->cls;
        continue;
      }
      for (j = 0, found = 0; j < snap->n; j++)
        found += cls[j] == o->cls && strcmp(src[j], o->src) == 0 && memcmp(md[j], d, 32) == 0;
      if (found != 1)
        fail_msg("object %s (class %lu) differs after the round trip", o->src,
                 (unsigned long)o->cls);
      assert_int_equal(o->src_fetched_at, 0); /* never counted as read now */
      if (o->key && strcmp(o->key->name, "crt1") == 0)
        managed += o->key->attrs.managed;
    }
    n = snap->n;
    akv_snapshot_unref(snap);
    assert_int_equal(C_Finalize(NULL), CKR_OK);
  }
  assert_int_equal(n, 9);
  assert_int_equal(managed, 2); /* its private and public key objects */
  cfile_cleanup(&f);
}

/* The key that authenticates the file: created once, private, in the config directory; a key file
 * another user could read or write turns the cache file off. */
static void test_file_key(void **state)
{
  struct cfile f;
  char kpath[512], other[600], saved_cfg[512], *saved_home;
  struct stat st;
  (void)state;
  snprintf(kpath, sizeof(kpath), "%s/akv-pkcs11/cache.key", getenv("XDG_CONFIG_HOME"));
  cfile_setup(&f);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(lstat(kpath, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, 32);
  assert_int_equal(one_process(&f, 4), 0);
  /* Readable by others: refused, the cache file is off (nothing read, nothing written). */
  assert_int_equal(chmod(kpath, 0644), 0);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(chmod(kpath, 0600), 0);
  assert_int_equal(one_process(&f, 4), 0);
  /* Another key (a file written under someone else's key): the MAC fails, the file is rebuilt. */
  assert_int_equal(unlink(kpath), 0);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(lstat(kpath, &st), 0);
  assert_int_equal(one_process(&f, 4), 0);
  /* A symbolic link in its place (to a 32-byte private file) is not followed: off. */
  snprintf(other, sizeof(other), "%s.real", kpath);
  assert_int_equal(rename(kpath, other), 0);
  assert_int_equal(symlink(other, kpath), 0);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(unlink(kpath), 0);
  assert_int_equal(rename(other, kpath), 0);
  assert_int_equal(one_process(&f, 4), 0);
  /* No config directory at all (no XDG_CONFIG_HOME, no HOME): off, never unauthenticated. */
  snprintf(saved_cfg, sizeof(saved_cfg), "%s", getenv("XDG_CONFIG_HOME"));
  saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("XDG_CONFIG_HOME");
  unsetenv("HOME");
  assert_int_equal(unlink(f.path), 0);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(lstat(f.path, &st), -1); /* nothing written */
  assert_int_equal(one_process(&f, 4), 1);
  setenv("XDG_CONFIG_HOME", saved_cfg, 1);
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  assert_int_equal(one_process(&f, 4), 1);
  assert_int_equal(one_process(&f, 4), 0);
  cfile_cleanup(&f);
}

/* A search by label on a cold slot reads that key (and certificate) by name and lists nothing; a
 * search that needs the listing waits for it and sees the same handles; a name no key has is left
 * to the listing (docs/design.md "Cold search by label"). */
static void test_cold_label(void **state)
{
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)"nokey", 5}};
  CK_OBJECT_HANDLE priv, pub, h[4];
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  priv = t_find_one(sess, CKO_PRIVATE_KEY, "rsa1");
  pub = t_find_one(sess, CKO_PUBLIC_KEY, "rsa1");
  assert_int_equal(fake_kv_calls.get_key, 1);
  assert_int_equal(fake_kv_calls.get_cert, 1);
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.list_certs, 0);
  /* A name no key has: one read, then the listing answers (nothing). */
  assert_int_equal(t_find(sess, t, 2, h, 4), 0);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  /* The listing's objects have the cold search's handles. */
  assert_int_equal(count_all(), 4);
  assert_int_equal(t_find_one(sess, CKO_PRIVATE_KEY, "rsa1"), priv);
  assert_int_equal(t_find_one(sess, CKO_PUBLIC_KEY, "rsa1"), pub);
  assert_int_equal(fake_kv_calls.list_keys, 1);
}

/* A process that searches by label, then finalizes, lists nothing: the listing was only scheduled.
 */
static void test_cold_label_no_listing(void **state)
{
  (void)state;
  assert_int_equal(t_init(CFG_TTL), CKR_OK);
  sess = t_open(0);
  (void)t_find_one(sess, CKO_PRIVATE_KEY, "ec1");
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(fake_kv_calls.get_key, 1);
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.list_certs, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_use_lists, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cold_label, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cold_label_no_listing, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_ttl_soft_and_hard, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_if_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_without_snapshot, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_versions_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lazy_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_filter_and_invalidate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_single_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_cache_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads_by_default, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_bounds, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_file_material_checked, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_file_no_foreign_attributes, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_file_vault_wins, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_file_round_trip, setup, teardown_finalized),
      cmocka_unit_test_setup_teardown(test_file_key, setup, teardown_finalized),
  };
  /* The cache file's key lives in the config directory: a private one for this run. */
  char cfg_home[] = "/tmp/akv-cfg-test-XXXXXX";
  int rc;
  if (!t_config_home_enter(cfg_home))
    return 1;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  t_config_home_leave(cfg_home);
  return rc;
}
