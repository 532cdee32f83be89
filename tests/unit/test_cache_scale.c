/* SPDX-License-Identifier: Apache-2.0 */
/* Two steps of a listing that grow with the vault (docs/performance.md "Listing and cache file at
 * scale"), checked against a plain scan of the earlier items for each one: under versions "all",
 * each key's latest version is the one its key objects carry and every other visible version is
 * published once (src/store/cache.c build_versions); the cache file's "keys" hold one entry per key
 * entry, the first object of each in the snapshot's order, in that order, also when a key's
 * objects are far apart (src/store/cache_file.c objects_json). The fake vault holds a few keys of
 * many versions beside SCALE_KEYS bulk keys; AKV_TEST_SCALE_KEYS sets another count (the
 * measurement of docs/performance.md runs 20,000) and the listing and the file write print their
 * times (never checked: speed is the benchmark's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache_file_helpers.h"
#include "model_helpers.h"

#include "store/cache.h"
#include "store/cache_file.h"
#include "store/object.h"
#include "store/snapshot.h"
#include "store/source.h"

#define OPS (KV_OP_SIGN | KV_OP_VERIFY)
#define SCALE_KEYS 1000
#define MULTI_VERSIONS 30

static char dir[40], path[128], cfg[600];
static size_t bulk;

/* Milliseconds on a clock: CLOCK_MONOTONIC, or the process's CPU time (steadier on a loaded
 * machine). */
static double ms(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int setup(void **state)
{
  const char *env = getenv("AKV_TEST_SCALE_KEYS");
  char v[16];
  int i;
  (void)state;
  bulk = env && atoi(env) > 0 ? (size_t)atoi(env) : SCALE_KEYS;
  fake_kv_reset();
  t_clock_now = 1800000000;
  /* Versions interleaved between keys, so that no key's versions are listed together. */
  for (i = 0; i < MULTI_VERSIONS; i++) {
    snprintf(v, sizeof(v), "m%02d", i);
    fake_kv_add_key("multi", v, KV_KTY_EC, i % 2, OPS);
    if (i < 3) {
      snprintf(v, sizeof(v), "r%d", i);
      fake_kv_add_key("rsa2", v, KV_KTY_RSA, 0, OPS);
      snprintf(v, sizeof(v), "d%d", i);
      /* d1 disabled: not shown as an older version */
      fake_kv_add_key("dis", v, KV_KTY_EC, 1, OPS)->enabled = i != 1;
    }
  }
  fake_kv_add_cert("multi", KV_KTY_EC, 1);
  fake_kv_add_bulk_keys("b", bulk);
  t_cache_dir_make(dir, path);
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"versions\":\"all\",\"objects\":[\"keys\",\"certificates\"]}]}",
           path);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  (void)C_Finalize(NULL);
  t_cache_dir_remove(dir, path);
  return 0;
}

/* The listing of every object: the current snapshot (the caller unrefs it). */
static struct akv_snapshot *listing(void)
{
  static CK_OBJECT_HANDLE h[4];
  CK_SESSION_HANDLE s;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &aes, sizeof(aes)}};
  struct akv_snapshot *snap;
  double t0, c0;

  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  t0 = ms(CLOCK_MONOTONIC);
  c0 = ms(CLOCK_PROCESS_CPUTIME_ID);
  assert_int_equal(t_find(s, t, 2, h, 4), 0); /* lists (and writes the file); matches nothing */
  print_message("listing of %zu keys, versions all: %.0f ms (%.0f ms of CPU)\n", bulk + 3,
                ms(CLOCK_MONOTONIC) - t0, ms(CLOCK_PROCESS_CPUTIME_ID) - c0);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  snap = akv_cache_peek(akv_module_slot(0)->cache);
  assert_non_null(snap);
  return snap;
}

/* The objects of snap whose source is of kind and names name (at version, when set). */
static size_t count_src(const struct akv_snapshot *snap, enum akv_source_kind kind,
                        const char *name, const char *version)
{
  char src[256];
  size_t i, n = 0;
  akv_source_id(src, sizeof(src), kind, name, version);
  for (i = 0; i < snap->n; i++) {
    const struct akv_object *o = akv_snapshot_obj(snap, i);
    n += o->src && strcmp(o->src, src) == 0;
  }
  return n;
}

/* Each key's objects carry its latest version; every older visible version is published once
 * (two objects), the latest never as an older version. */
static void test_versions_all(void **state)
{
  struct akv_snapshot *snap;
  char v[16];
  size_t i, keys = 0, versions = 0;
  (void)state;
  snap = listing();
  for (i = 0; i < snap->n; i++) {
    const struct akv_object *o = akv_snapshot_obj(snap, i);
    if (akv_source_is(o->src, AKV_SRC_KEY)) {
      const char *want = strcmp(o->key->name, "multi") == 0  ? "m29"
                         : strcmp(o->key->name, "rsa2") == 0 ? "r2"
                         : strcmp(o->key->name, "dis") == 0  ? "d2"
                                                             : "b1";
      assert_string_equal(o->key->version, want);
      keys++;
    } else if (akv_source_is(o->src, AKV_SRC_VERSION)) {
      assert_non_null(o->key);
      versions++;
    }
  }
  assert_int_equal(keys, 2 * (bulk + 3));
  for (i = 0; i < MULTI_VERSIONS; i++) {
    snprintf(v, sizeof(v), "m%02zu", i);
    assert_int_equal(count_src(snap, AKV_SRC_VERSION, "multi", v), i + 1 < MULTI_VERSIONS ? 2 : 0);
  }
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "rsa2", "r0"), 2);
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "rsa2", "r1"), 2);
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "rsa2", "r2"), 0);
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "dis", "d0"), 2);
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "dis", "d1"), 0); /* disabled */
  assert_int_equal(count_src(snap, AKV_SRC_VERSION, "dis", "d2"), 0);
  assert_int_equal(versions, 2 * (MULTI_VERSIONS - 1 + 2 + 1));
  assert_int_equal(count_src(snap, AKV_SRC_CERT, "multi", NULL), 1);
  akv_snapshot_unref(snap);
}

/* The file's JSON (after its MAC line), whatever its size; the caller deletes it. */
static cJSON *file_read(void)
{
  struct stat st;
  FILE *fp = fopen(path, "rb");
  char *buf;
  cJSON *doc;
  assert_non_null(fp);
  assert_int_equal(fstat(fileno(fp), &st), 0);
  assert_true(st.st_size > 84);
  buf = malloc((size_t)st.st_size + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
  fclose(fp);
  buf[st.st_size] = '\0';
  assert_memory_equal(buf, T_CACHE_MAGIC " ", sizeof(T_CACHE_MAGIC));
  doc = cJSON_Parse(buf + 84);
  free(buf);
  assert_non_null(doc);
  return doc;
}

/* The file's entry's "keys" are, in order, the sources of the first object of each key entry of
 * snap in its order (the scan of every earlier object the writer made before); one "certs" item
 * per certificate. */
static void keys_as_scanned(const struct akv_snapshot *snap)
{
  cJSON *doc = file_read(), *entry, *keys, *it;
  size_t i, k, j = 0, certs = 0;

  entry = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "slots"), 0);
  keys = cJSON_GetObjectItem(entry, "keys");
  assert_true(cJSON_IsArray(keys));
  for (i = 0; i < snap->n; i++) {
    const struct akv_object *o = akv_snapshot_obj(snap, i);
    certs += o->cls == CKO_CERTIFICATE;
    if (!o->src || !o->keyent)
      continue;
    for (k = 0; k < i && akv_snapshot_obj(snap, k)->keyent != o->keyent; k++)
      ;
    if (k < i)
      continue;
    it = cJSON_GetArrayItem(keys, (int)j++);
    assert_non_null(it);
    assert_string_equal(cJSON_GetObjectItem(it, "src")->valuestring, o->src);
  }
  assert_int_equal(cJSON_GetArraySize(keys), j);
  assert_int_equal(j, bulk + 3 + MULTI_VERSIONS - 1 + 2 + 1); /* key versions */
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(entry, "certs")), certs);
  cJSON_Delete(doc);
}

/* The file the listing wrote, then one written from the same objects in another order: the
 * private keys in reverse, then the public keys and the rest, so that a key's two objects are far
 * apart and the public one comes first for half of them. */
static void test_cache_file_keys(void **state)
{
  struct akv_snapshot *snap, *mixed;
  struct stat st;
  size_t i, half;
  double t0, c0;
  (void)state;
  snap = listing();
  keys_as_scanned(snap);
  t0 = ms(CLOCK_MONOTONIC);
  c0 = ms(CLOCK_PROCESS_CPUTIME_ID);
  akv_cache_file_save(akv_module_slot(0), snap, 0);
  t0 = ms(CLOCK_MONOTONIC) - t0;
  c0 = ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
  assert_int_equal(stat(path, &st), 0);
  print_message("cache file of %zu objects (%lld bytes) written in %.0f ms (%.0f ms of CPU)\n",
                snap->n, (long long)st.st_size, t0, c0);
  keys_as_scanned(snap);

  mixed = calloc(1, sizeof(*mixed));
  assert_non_null(mixed);
  mixed->refs = 1;
  mixed->built_at = snap->built_at + 1;
  half = snap->n / 2;
  for (i = snap->n; i-- > 0;) {
    struct akv_object *o = akv_snapshot_obj(snap, i);
    if (o->cls == CKO_PRIVATE_KEY && i >= half)
      assert_int_equal(akv_snapshot_add(mixed, akv_object_ref(o)), CKR_OK);
  }
  for (i = 0; i < snap->n; i++) {
    struct akv_object *o = akv_snapshot_obj(snap, i);
    if (o->cls != CKO_PRIVATE_KEY || i < half)
      assert_int_equal(akv_snapshot_add(mixed, akv_object_ref(o)), CKR_OK);
  }
  assert_int_equal(mixed->n, snap->n);
  akv_cache_file_save(akv_module_slot(0), mixed, 0);
  keys_as_scanned(mixed);
  akv_snapshot_unref(mixed);
  akv_snapshot_unref(snap);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_versions_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_file_keys, setup, teardown),
  };
  /* The cache file's key lives in the config directory: a private one for this run. */
  return t_run_in_config_home("cache_scale", tests, sizeof(tests) / sizeof(tests[0]));
}
