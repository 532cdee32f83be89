/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/cache_file.c, the per-name records a cold search by label writes (docs/design.md
 * "Cache file", "Cold search by label"), with the injected clock and the fake backend: the next
 * process answers the label from the record, within the ttl; out-of-range or forged records are
 * refused and repaired; records beside a listing never answer anything but their label; the
 * bounds on records hold; on a Managed HSM the cold objects include the key's attestation objects,
 * which the listing carries over; a cold search reads the file once (its listing and the record of
 * the label in the same read), counted from the debug line of each read. And searches by another
 * case of a key's name (the fake backend compares names without case and answers with the stored
 * spelling, as the service does): MYKEY, MyKey for mykey, within the read memo and after it, never
 * publish a second object for the key, whose objects carry the vault's spelling. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "akv-pkcs11.h"
#include "cache_file_helpers.h"
#include "model_helpers.h"

#define OPS (KV_OP_SIGN | KV_OP_VERIFY)

static char dir[40], path[128], logpath[128], cfg[600];

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  t_clock_now = 1800000000;
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, OPS);
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, OPS);
  fake_kv_add_cert("ec1", KV_KTY_EC, 0);
  snprintf(dir, sizeof(dir), "/tmp/akv-cfile-test-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/p11-cache", dir);
  snprintf(logpath, sizeof(logpath), "%s/module.log", dir);
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"objects\":[\"keys\",\"certificates\"]}]}",
           path);
  return 0;
}

static int teardown(void **state)
{
  char lock[160];
  (void)state;
  fake_kv_fail(KV_OK);
  (void)C_Finalize(NULL);
  unsetenv("AKV_PKCS11_DEBUG");
  snprintf(lock, sizeof(lock), "%s.lock", path);
  unlink(path);
  unlink(lock);
  unlink(logpath);
  rmdir(dir);
  return 0;
}

/* One process that searches the label name only (private key, public key, certificate when
 * cert): the GETs of keys and certificates it made. */
static int label_process(const char *name, int cert)
{
  int before = fake_kv_calls.get_key + fake_kv_calls.get_cert,
      lists = fake_kv_calls.list_keys + fake_kv_calls.list_certs;
  CK_SESSION_HANDLE s;
  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  (void)t_find_one(s, CKO_PRIVATE_KEY, name);
  (void)t_find_one(s, CKO_PUBLIC_KEY, name);
  if (cert)
    (void)t_find_one(s, CKO_CERTIFICATE, name);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(fake_kv_calls.list_keys + fake_kv_calls.list_certs, lists);
  return fake_kv_calls.get_key + fake_kv_calls.get_cert - before;
}

static cJSON *file_read(void)
{
  return t_cache_file_read(path);
}

static void file_write(cJSON *doc)
{
  t_cache_file_write(path, doc);
}

static cJSON *names_of(cJSON *doc)
{
  cJSON *names = cJSON_GetObjectItem(doc, "names");
  assert_true(cJSON_IsArray(names));
  return names;
}

static cJSON *record(cJSON *doc, const char *name)
{
  cJSON *r;
  cJSON_ArrayForEach(r, names_of(doc))
  {
    if (strcmp(cJSON_GetObjectItem(r, "name")->valuestring, name) == 0)
      return r;
  }
  return NULL;
}

/* The first process reads the name (key and certificate) and records it; the next answers from
 * the record with no request, until the record is ttl old. */
static void test_record_serves(void **state)
{
  cJSON *doc;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  doc = file_read();
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "slots")), 0);
  assert_non_null(record(doc, "ec1"));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(record(doc, "ec1"), "keys")), 1);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(record(doc, "ec1"), "certs")), 1);
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 0);
  t_clock_now += 99;
  assert_int_equal(label_process("ec1", 1), 0);
  t_clock_now += 1; /* ttl old: read again, and recorded again */
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(label_process("ec1", 1), 0);
  /* Another label is not in it: read. */
  assert_int_equal(label_process("rsa1", 0), 2);
  assert_int_equal(label_process("rsa1", 0), 0);
}

/* A record's read_at out of range is refused (the name read again) and the record rewritten. */
static void test_record_bounds(void **state)
{
  static const char *const bad[] = {
      "-9223372036854775808", "1e300",          "-1",  "0", "1800003600",
      "1800000000.5",         "\"1800000000\"", "null"};
  cJSON *doc;
  size_t i;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    print_message("read_at %s\n", bad[i]);
    doc = file_read();
    t_json_set(record(doc, "ec1"), "read_at", cJSON_CreateRaw(bad[i]));
    file_write(doc);
    cJSON_Delete(doc);
    assert_int_equal(label_process("ec1", 1), 2); /* refused: read */
    assert_int_equal(label_process("ec1", 1), 0); /* repaired */
  }
}

/* Authentic records that are not what a cold search of that name writes are refused: another
 * key's objects under the name, two keys, a secret. */
static void test_record_forged(void **state)
{
  cJSON *doc, *r, *keys;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(label_process("rsa1", 0), 2);
  /* rsa1's record relabelled ec1. */
  doc = file_read();
  cJSON_DeleteItemFromArray(names_of(doc), 0);
  t_json_set(record(doc, "rsa1"), "name", cJSON_CreateString("ec1"));
  file_write(doc);
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(label_process("ec1", 1), 0);
  /* Two keys in ec1's record (its own twice). */
  doc = file_read();
  r = record(doc, "ec1");
  keys = cJSON_GetObjectItem(r, "keys");
  cJSON_AddItemToArray(keys, cJSON_Duplicate(cJSON_GetArrayItem(keys, 0), 1));
  file_write(doc);
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 2);
  /* A "secrets" member. */
  doc = file_read();
  t_json_set(record(doc, "ec1"), "secrets", cJSON_CreateArray());
  file_write(doc);
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(label_process("ec1", 1), 0);
}

/* "names" that is not an array is not read, and the next write replaces it. */
static void test_names_not_array(void **state)
{
  cJSON *doc;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  doc = file_read();
  t_json_set(doc, "names", cJSON_CreateNumber(5));
  file_write(doc);
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 2);
  doc = file_read();
  assert_non_null(record(doc, "ec1"));
  cJSON_Delete(doc);
  assert_int_equal(label_process("ec1", 1), 0);
}

/* 128 records in all, the oldest first; another fingerprint's records older than a day go. */
static void test_total_bound(void **state)
{
  cJSON *doc, *names, *proto, *r;
  char nm[32];
  int i;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  doc = file_read();
  names = names_of(doc);
  proto = cJSON_Duplicate(record(doc, "ec1"), 1);
  cJSON_DeleteItemFromArray(names, 0);
  for (i = 0; i < 140; i++) {
    r = cJSON_Duplicate(proto, 1);
    snprintf(nm, sizeof(nm), "other-%d", i);
    t_json_set(r, "name", cJSON_CreateString(nm));
    t_json_set(r, "fp", cJSON_CreateString(i < 10 ? "old" : "fresh"));
    t_json_set(r, "read_at", cJSON_CreateNumber(i < 10 ? 1800000000 - 86400 : 1800000000 + i));
    cJSON_AddItemToArray(names, r);
  }
  cJSON_Delete(proto);
  file_write(doc);
  cJSON_Delete(doc);
  t_clock_now += 200;
  assert_int_equal(label_process("ec1", 1), 2); /* not in the file: read, recorded */
  doc = file_read();
  names = names_of(doc);
  assert_int_equal(cJSON_GetArraySize(names), 128);
  assert_non_null(record(doc, "ec1"));
  assert_null(record(doc, "other-0"));  /* a day old */
  assert_null(record(doc, "other-12")); /* the oldest of the fresh ones */
  assert_non_null(record(doc, "other-13"));
  assert_non_null(record(doc, "other-139"));
  cJSON_Delete(doc);
}

/* A search that needs the listing lists despite the record, and the listing written drops the
 * records read before it; a search by label then answers from the listing. */
static void test_listing_replaces(void **state)
{
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE h[16];
  cJSON *doc;
  (void)state;
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  (void)t_find_one(s, CKO_PRIVATE_KEY, "ec1");
  assert_int_equal(fake_kv_calls.list_keys, 0);
  assert_true(t_find(s, NULL, 0, h, 16) >= 5); /* an enumeration: the listing */
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  doc = file_read();
  assert_int_equal(cJSON_GetArraySize(names_of(doc)), 0);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "slots")), 1);
  cJSON_Delete(doc);
  assert_int_equal(label_process("rsa1", 0), 0); /* from the listing */
}

/* On a Managed HSM, a cold search makes the key's attestation objects as the listing does, so the
 * listing that takes the cold objects over (same source times, not read again) keeps them. */
static void test_mhsm_attestation(void **state)
{
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE att = {CKA_AKV_ATTESTATION, &yes, sizeof(yes)};
  CK_OBJECT_HANDLE h[16];
  CK_SESSION_HANDLE s;
  (void)state;
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"slots\":[{\"url\":\"https://unit.managedhsm.azure.net\","
           "\"ttl\":100,\"objects\":[\"keys\"]}]}",
           path);
  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  (void)t_find_one(s, CKO_PRIVATE_KEY, "ec1");
  assert_int_equal(fake_kv_calls.get_key, 1);
  /* Not a label: the listing, which reads rsa1 and carries ec1's objects over. */
  assert_int_equal(t_find(s, &att, 1, h, 16), 2); /* a data object per key */
  assert_int_equal(fake_kv_calls.list_keys, 1);
  assert_int_equal(fake_kv_calls.get_key, 2);
}

/* Lines of the log that contain what (and also, when set). */
static int log_count2(const char *what, const char *also)
{
  char line[4096];
  FILE *fp = fopen(logpath, "r");
  int n = 0;
  if (!fp)
    return 0;
  while (fgets(line, sizeof(line), fp))
    n += strstr(line, what) && (!also || strstr(line, also));
  fclose(fp);
  return n;
}

static int log_count(const char *what)
{
  return log_count2(what, NULL);
}

/* Reads of the cache file: its debug line "cache file PATH: read N bytes (authentic)" (or "(not
 * used)"), one per open, MAC check and parse. */
static int reads(void)
{
  return log_count2("cache file ", " bytes (");
}

/* Empties the log. */
static void log_empty(void)
{
  assert_int_equal(truncate(logpath, 0) == 0 || access(logpath, F_OK) != 0, 1);
}

/* The first cold search of a process reads the cache file once: its listing (none here) and the
 * record of the label come from the same read (before: two reads, the listing's and the
 * record's). A later cold search of another label reads it once for that label; a label read
 * from the vault is recorded with one more read (the read-modify-write, under the lock). */
static void test_one_read_per_cold_search(void **state)
{
  CK_SESSION_HANDLE s;
  (void)state;
  setenv("AKV_PKCS11_DEBUG", "cache", 1);
  snprintf(cfg, sizeof(cfg),
           "{\"cache_file\":\"%s\",\"log_file\":\"%s\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL
           "\",\"ttl\":100,\"objects\":[\"keys\",\"certificates\"]}]}",
           path, logpath);
  /* No file yet: nothing read; the key and certificate read from the vault and recorded. */
  assert_int_equal(label_process("ec1", 1), 2);
  assert_int_equal(reads(), 0);
  assert_int_equal(log_count("ec1 recorded (3 object"), 1);
  /* Answered from the record: one read, no request. */
  log_empty();
  assert_int_equal(label_process("ec1", 1), 0);
  assert_int_equal(reads(), 1);
  assert_int_equal(log_count2("cache file ", " bytes (authentic)"), 1);
  assert_int_equal(log_count("cold search ec1: 3 object(s) from the cache file"), 1);
  /* Another label, not in the file: one read to look, one to record it. */
  log_empty();
  assert_int_equal(label_process("rsa1", 0), 2); /* its key and (404) certificate */
  assert_int_equal(reads(), 2);
  assert_int_equal(log_count("rsa1 recorded ("), 1);
  /* Two labels in one process, both recorded: one read each, no request. */
  log_empty();
  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  (void)t_find_one(s, CKO_PRIVATE_KEY, "ec1");
  (void)t_find_one(s, CKO_PRIVATE_KEY, "rsa1");
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(reads(), 2);
  assert_int_equal(fake_kv_calls.get_key, 2);
  assert_int_equal(fake_kv_calls.list_keys, 0);
}

/* ---- the vault's spelling --------------------------------------------------------------------
 */

static char kcfg[] = T_CFG(",\"objects\":[\"keys\"]");

/* Objects of class cls whose label is name in any case: their count, and the label of the last
 * one in label. */
static int objects_named(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *name, char *label)
{
  CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
  CK_OBJECT_HANDLE h[32];
  CK_ULONG n = t_find(s, &t, 1, h, 32), i, len;
  char buf[128];
  int found = 0;
  for (i = 0; i < n; i++) {
    len = t_attr(s, h[i], CKA_LABEL, buf, sizeof(buf) - 1);
    assert_true(len < sizeof(buf));
    buf[len] = '\0';
    if (strcasecmp(buf, name) == 0) {
      found++;
      strcpy(label, buf);
    }
  }
  return found;
}

/* Exactly one private and one public key of the name mykey in any case, labelled mykey. */
static void one_per_class(CK_SESSION_HANDLE s)
{
  char label[128];
  assert_int_equal(objects_named(s, CKO_PRIVATE_KEY, "mykey", label), 1);
  assert_string_equal(label, "mykey");
  assert_int_equal(objects_named(s, CKO_PUBLIC_KEY, "mykey", label), 1);
  assert_string_equal(label, "mykey");
}

/* Searches of label for private keys: how many it found (labels compare by their bytes). */
static CK_ULONG find_private(CK_SESSION_HANDLE s, const char *label)
{
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE h[4];
  return t_find(s, t, 2, h, 4);
}

/* MYKEY, mykey and MyKey, within the memo and past it: mykey only is found, one object per class,
 * spelled as the vault spells it. */
static void searches_by_case(CK_SESSION_HANDLE s)
{
  int round;
  for (round = 0; round < 2; round++) {
    assert_int_equal(find_private(s, "MYKEY"), 0);
    assert_int_equal(find_private(s, "mykey"), 1);
    assert_int_equal(find_private(s, "MyKey"), 0);
    one_per_class(s);
    t_clock_now += 6; /* past the 5 s memo of the reads by name */
  }
}

/* A key the listing has: searches in another case read it (one GET per name per memo) and
 * publish nothing (before: a second object labelled MYKEY after the memo of the cold search). A
 * cold search for MYKEY first: the vault spells it otherwise, the listing answers. */
static void test_listed_key_other_case(void **state)
{
  CK_SESSION_HANDLE s;
  (void)state;
  fake_kv_add_key("mykey", "m1", KV_KTY_EC, 1, OPS);
  assert_int_equal(t_init(kcfg), CKR_OK);
  s = t_open(0);
  assert_int_equal(find_private(s, "MYKEY"), 0);
  assert_int_equal(fake_kv_calls.list_keys, 1);
  one_per_class(s);
  searches_by_case(s);
  assert_int_equal(fake_kv_calls.list_keys, 1);
}

/* A key created since the listing, searched first in another case: read once and published under
 * the vault's spelling (before: labelled MYKEY, and after the memo a second copy labelled MyKey);
 * the search of its own spelling then costs nothing. */
static void test_created_key_other_case(void **state)
{
  CK_SESSION_HANDLE s;
  char label[128];
  int gets;
  (void)state;
  assert_int_equal(t_init(kcfg), CKR_OK);
  s = t_open(0);
  assert_int_equal(objects_named(s, CKO_PRIVATE_KEY, "mykey", label), 0); /* the listing */
  fake_kv_add_key("mykey", "m1", KV_KTY_EC, 1, OPS);
  gets = fake_kv_calls.get_key;
  assert_int_equal(find_private(s, "MYKEY"), 0);
  assert_int_equal(fake_kv_calls.get_key - gets, 1);
  gets = fake_kv_calls.get_key;
  assert_int_equal(find_private(s, "mykey"), 1);
  assert_int_equal(fake_kv_calls.get_key - gets, 0); /* published by the MYKEY search */
  one_per_class(s);
  searches_by_case(s);
  assert_int_equal(fake_kv_calls.list_keys, 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_record_serves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_record_bounds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_record_forged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names_not_array, setup, teardown),
      cmocka_unit_test_setup_teardown(test_total_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_listing_replaces, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mhsm_attestation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_read_per_cold_search, setup, teardown),
      cmocka_unit_test_setup_teardown(test_listed_key_other_case, setup, teardown),
      cmocka_unit_test_setup_teardown(test_created_key_other_case, setup, teardown),
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
