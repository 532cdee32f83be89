/* SPDX-License-Identifier: Apache-2.0 */
/* Reading and writing the cross-process cache file as the module does (src/store/cache_file.c,
 * docs/design.md "Cache file"), for the unit tests that tamper with an authentic file: the JSON
 * after the MAC line, and a document written back under a MAC with the user's key (the config
 * directory's cache.key, $XDG_CONFIG_HOME set by the test). */
#ifndef AKV_TEST_CACHE_FILE_HELPERS_H
#define AKV_TEST_CACHE_FILE_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "model_helpers.h"

#define T_CACHE_MAGIC "akv-pkcs11-cache 5"

/* The file's JSON (after its MAC line); the caller deletes it. */
static inline cJSON *t_cache_file_read(const char *path)
{
  static char buf[1 << 20];
  FILE *fp = fopen(path, "rb");
  size_t n;
  assert_non_null(fp);
  n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  assert_true(n > 84);
  assert_memory_equal(buf, T_CACHE_MAGIC " ", sizeof(T_CACHE_MAGIC));
  assert_int_equal(buf[83], '\n');
  return cJSON_Parse(buf + 84);
}

/* Writes doc as the module would: the MAC line under the user's key, then the JSON (0600). */
static inline void t_cache_file_write(const char *path, cJSON *doc)
{
  char kpath[512], *text = cJSON_PrintUnformatted(doc), *data;
  unsigned char key[32], mac[32];
  size_t mlen = 0, len, i;
  FILE *fp;

  snprintf(kpath, sizeof(kpath), "%s/akv-pkcs11/cache.key", getenv("XDG_CONFIG_HOME"));
  fp = fopen(kpath, "rb");
  assert_non_null(fp);
  assert_int_equal(fread(key, 1, 32, fp), 32);
  fclose(fp);
  assert_non_null(text);
  len = sizeof(T_CACHE_MAGIC) + strlen(text);
  data = malloc(len + 1);
  assert_non_null(data);
  snprintf(data, len + 1, T_CACHE_MAGIC "\n%s", text);
  assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, 32, (unsigned char *)data, len,
                            mac, sizeof(mac), &mlen));
  fp = fopen(path, "wb");
  assert_non_null(fp);
  fputs(T_CACHE_MAGIC " ", fp);
  for (i = 0; i < 32; i++)
    fprintf(fp, "%02x", mac[i]);
  fprintf(fp, "\n%s", text);
  fclose(fp);
  chmod(path, 0600);
  free(data);
  free(text);
}

/* Replaces (or adds) o's member name with v. */
static inline void t_json_set(cJSON *o, const char *name, cJSON *v)
{
  assert_non_null(o);
  if (cJSON_GetObjectItem(o, name))
    cJSON_ReplaceItemInObject(o, name, v);
  else
    cJSON_AddItemToObject(o, name, v);
}

/* A private config directory for the cache file's key (home: a mkdtemp template), as
 * $XDG_CONFIG_HOME; 0 on failure. t_config_home_leave removes it and the key. */
static inline int t_config_home_enter(char *home)
{
  return mkdtemp(home) && setenv("XDG_CONFIG_HOME", home, 1) == 0;
}

static inline void t_config_home_leave(const char *home)
{
  char kpath[128];
  snprintf(kpath, sizeof(kpath), "%s/akv-pkcs11/cache.key", home);
  unlink(kpath);
  snprintf(kpath, sizeof(kpath), "%s/akv-pkcs11", home);
  rmdir(kpath);
  rmdir(home);
}

/* Runs the group of n tests with a private config directory ($XDG_CONFIG_HOME, removed after):
 * what main returns. */
static inline int t_run_in_config_home(const char *name, const struct CMUnitTest *tests, size_t n)
{
  char cfg_home[] = "/tmp/akv-cfg-test-XXXXXX";
  int rc;
  if (!t_config_home_enter(cfg_home))
    return 1;
  rc = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
  t_config_home_leave(cfg_home);
  return rc;
}

/* A private directory (dir: 40 bytes) for a cache file at path (128 bytes), and its removal with
 * the file and its lock file. */
static inline void t_cache_dir_make(char *dir, char *path)
{
  snprintf(dir, 40, "/tmp/akv-cfile-test-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, 128, "%s/p11-cache", dir);
}

static inline void t_cache_dir_remove(const char *dir, const char *path)
{
  char lock[160];
  snprintf(lock, sizeof(lock), "%s.lock", path);
  unlink(path);
  unlink(lock);
  rmdir(dir);
}

#endif
