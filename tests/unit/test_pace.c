/* SPDX-License-Identifier: Apache-2.0 */
/* Pacing (src/kv/pace.c): the GCRA arithmetic against a sliding-window limit, the shared bucket
 * file and its validation, request classification, the "quota"/"pacing" configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/http.h"
#include "kv/pace.h"
#include "util/config.h"

static char rtdir[] = "/tmp/akv-pace-test-XXXXXX";

static struct kv_http *http_new(const struct akv_config *cfg)
{
  struct kv_http_opts o;
  struct kv_http *h = NULL;
  memset(&o, 0, sizeof(o));
  o.pace_cfg = cfg;
  assert_int_equal(kv_http_new(&o, &h), KV_OK);
  return h;
}

static struct akv_config *parse(const char *json, char *err, size_t len)
{
  struct akv_config *cfg = NULL;
  err[0] = '\0';
  if (akv_config_parse(json, "/etc/test.json", &cfg, err, len) != 0)
    return NULL;
  return cfg;
}

/* ---- arithmetic ----------------------------------------------------------------------------- */

static void test_gcra_basics(void **state)
{
  int64_t tat = 0, cost = kv_pace_cost_us(100, 2), tau = kv_pace_tau_us(100, 2);
  int64_t now = 1000000000, w;
  int immediate = 0;
  (void)state;
  /* 97 % of 100 per 2 s: one operation every 20.618 ms; a burst of 1 % of the window */
  assert_int_equal(cost, 20618);
  assert_int_equal(tau, 20000);
  for (int i = 0; i < 10; i++) {
    w = kv_pace_gcra(&tat, now, cost, tau, now + 10000000);
    if (w == 0)
      immediate++;
    else
      assert_int_equal(w, (int64_t)(i + 1) * cost - tau - cost);
  }
  /* the first 1 + tau / cost go at once */
  assert_int_equal(immediate, 1 + tau / cost);
  /* a turn past the deadline is refused and spends nothing */
  {
    int64_t before = tat;
    assert_int_equal(kv_pace_gcra(&tat, now, cost, tau, now + 1000), -1);
    assert_int_equal(tat, before);
  }
  /* an idle bucket does not save up more than the burst */
  now += 60000000;
  immediate = 0;
  for (int i = 0; i < 10; i++)
    immediate += kv_pace_gcra(&tat, now, cost, tau, now + 10000000) == 0;
  assert_int_equal(immediate, 1 + tau / cost);
  assert_int_equal(kv_pace_cost_us(0, 10), 0);
  assert_int_equal(kv_pace_cost_us(10, 0), 0);
}

/* Greedy clients that go the moment the pacer lets them: no S-second window ever holds more than
 * N operations, and the rate is at least 95 % of N/S. */
static void check_window(uint32_t n, uint32_t s)
{
  int64_t cost = kv_pace_cost_us(n, s), tau = kv_pace_tau_us(n, s), tat = 0;
  int64_t now = 5000000, start = now, win = (int64_t)s * 1000000;
  size_t total = (size_t)n * 10, head = 0;
  int64_t *t = calloc(total, sizeof(*t));
  assert_non_null(t);
  for (size_t i = 0; i < total; i++) {
    int64_t w = kv_pace_gcra(&tat, now, cost, tau, INT64_MAX / 2);
    assert_true(w >= 0);
    now += w;
    t[i] = now;
    while (t[head] <= now - win)
      head++;
    assert_true(i - head + 1 <= n);
  }
  /* 10 windows' worth of operations took at least 10 windows minus the burst, at most 10.5 */
  assert_true(now - start >= 10 * win - tau - cost);
  assert_true((double)total / ((double)(now - start + cost) / 1e6) >= 0.95 * n / s);
  free(t);
}

static void test_gcra_sliding_window(void **state)
{
  (void)state;
  check_window(100, 2);
  check_window(2000, 10);
  check_window(250, 10);
  check_window(10, 1);
  check_window(3, 1);
}

static void test_class_of(void **state)
{
  (void)state;
  assert_int_equal(kv_pace_class_of("ES256", 0), KV_PACE_EC);
  assert_int_equal(kv_pace_class_of("ES256K", 0), KV_PACE_EC);
  assert_int_equal(kv_pace_class_of("RS256", 0), KV_PACE_RSA2048);
  assert_int_equal(kv_pace_class_of("PS384", 3072), KV_PACE_RSA3072);
  assert_int_equal(kv_pace_class_of("RSA-OAEP-256", 4096), KV_PACE_RSA4096);
  assert_int_equal(kv_pace_class_of("RSNULL", 2048), KV_PACE_RSA2048);
  assert_int_equal(kv_pace_class_of("A256GCM", 0), KV_PACE_OCT);
  assert_int_equal(kv_pace_class_of("HS256", 0), KV_PACE_OCT);
  assert_int_equal(kv_pace_class_of("CKM_AES_KEY_WRAP", 0), KV_PACE_OCT);
  assert_int_equal(kv_pace_class_of(NULL, 0), KV_PACE_RSA2048);
}

/* ---- the bucket file ------------------------------------------------------------------------ */

static int check_path(const char *path, mode_t mode, uid_t uid, size_t size, char *why)
{
  int fd, r;
  unlink(path);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(fchmod(fd, mode), 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  if (uid != geteuid() && fchown(fd, uid, (gid_t)-1) != 0) {
    close(fd);
    return -2; /* not root: cannot make a foreign-owned file */
  }
  why[0] = '\0';
  r = kv_pace_file_check(fd, why, 256);
  close(fd);
  return r;
}

static void test_file_check(void **state)
{
  char path[PATH_MAX], why[256];
  int fd, r;
  (void)state;
  snprintf(path, sizeof(path), "%s/check", rtdir);
  assert_int_equal(check_path(path, 0600, geteuid(), 0, why), 0);
  assert_int_equal(check_path(path, 0600, geteuid(), 48, why), 0);
  assert_int_equal(check_path(path, 0620, geteuid(), 48, why), -1);
  assert_non_null(strstr(why, "writable by group or others (mode 620)"));
  assert_int_equal(check_path(path, 0602, geteuid(), 48, why), -1);
  assert_int_equal(check_path(path, 0600, geteuid(), 40, why), -1);
  assert_non_null(strstr(why, "has 40 bytes, not 48"));
  r = check_path(path, 0600, 65534, 48, why);
  if (r != -2) {
    assert_int_equal(r, -1);
    assert_non_null(strstr(why, "owned by uid 65534"));
  }
  unlink(path);
  fd = open(rtdir, O_RDONLY | O_DIRECTORY);
  assert_true(fd >= 0);
  assert_int_equal(kv_pace_file_check(fd, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "not a regular file"));
  close(fd);
}

static const char one_vault[] =
    "{\"slots\":[{\"url\":\"https://v1.vault.azure.net\",\"quota\":\"100/2\"}]}";

/* Removes the bucket files under rtdir (the pacers that had them open are closed). */
static void remove_buckets(void)
{
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof(cmd), "rm -f %s/akv-pkcs11/pace-*", rtdir);
  assert_int_equal(system(cmd), 0);
}

/* Two module instances (as two processes would) spend one budget through the file. */
static void test_shared_bucket(void **state)
{
  char err[512];
  struct akv_config *cfg = parse(one_vault, err, sizeof(err));
  struct kv_http *a, *b;
  struct kv_pace *pa, *pb;
  long full;
  (void)state;
  assert_non_null(cfg);
  a = http_new(cfg);
  b = http_new(cfg);
  assert_int_equal(kv_pace_open(kv_http_pace_set(a), "https://v1.vault.azure.net",
                                AKV_VAULT_KEYVAULT, NULL, &pa),
                   KV_OK);
  assert_int_equal(kv_pace_open(kv_http_pace_set(b), "https://v1.vault.azure.net/",
                                AKV_VAULT_KEYVAULT, NULL, &pb),
                   KV_OK);
  assert_non_null(pa);
  assert_non_null(pb);
  full = kv_pace_available(pb, KV_PACE_EC);
  assert_true(full >= 1 && full <= 3);
  for (long i = 0; i < full; i++)
    assert_int_equal(kv_pace_take(pa, KV_PACE_EC, kv_pace_now_ms() + 1000), KV_OK);
  /* what a spent, b cannot spend again */
  assert_true(kv_pace_available(pb, KV_PACE_EC) <= 1);
  /* a 429 seen by a holds b back for the Retry-After */
  kv_pace_throttled(pa, 1500);
  assert_int_equal(kv_pace_available(pb, KV_PACE_EC), 0);
  assert_true(kv_pace_wait_ms(pb, KV_PACE_EC) > 1300);
  /* a turn past the deadline is refused at once */
  assert_int_equal(kv_pace_take(pb, KV_PACE_EC, kv_pace_now_ms() + 100), KV_E_THROTTLED);
  /* one reply holds every process back for at most 60 s, whatever its Retry-After */
  kv_pace_throttled(pa, 86400000);
  assert_true(kv_pace_wait_ms(pb, KV_PACE_EC) > 59000);
  assert_true(kv_pace_wait_ms(pb, KV_PACE_EC) <= 60000);
  kv_pace_close(pa);
  kv_pace_close(pb);
  kv_http_free(a);
  kv_http_free(b);
  akv_config_free(cfg);
  /* the 60 s hold stays in the file: the next test starts from a new one */
  remove_buckets();
}

struct taker {
  struct kv_pace *p;
  int ok;
};

static void *take_ten(void *arg)
{
  struct taker *t = arg;
  for (int i = 0; i < 10; i++)
    t->ok += kv_pace_take(t->p, KV_PACE_EC, kv_pace_now_ms() + 10000) == KV_OK;
  return NULL;
}

/* 4 threads of two module instances (two processes' worth) take 40 turns of one budget: they
 * take as long as 40 turns at the vault's pace, minus the burst. */
static void test_threads_share(void **state)
{
  char err[512];
  struct akv_config *cfg = parse(one_vault, err, sizeof(err));
  struct kv_http *a, *b;
  struct taker t[4];
  pthread_t th[4];
  int64_t t0, ms, cost_ms;
  (void)state;
  assert_non_null(cfg);
  a = http_new(cfg);
  b = http_new(cfg);
  for (int i = 0; i < 4; i++) {
    t[i].ok = 0;
    assert_int_equal(kv_pace_open(kv_http_pace_set((i < 2 ? a : b)), "https://v1.vault.azure.net",
                                  0, NULL, &t[i].p),
                     KV_OK);
    assert_non_null(t[i].p);
  }
  /* start from an idle budget: a new bucket file (test_shared_bucket removed its own) has no
   * wait beyond one turn's cost; bounded, so a leftover hold fails here instead of hanging */
  for (int i = 0; i < 200 && kv_pace_wait_ms(t[0].p, KV_PACE_EC) > 0; i++)
    usleep(10000);
  assert_int_equal(kv_pace_wait_ms(t[0].p, KV_PACE_EC), 0);
  t0 = kv_pace_now_ms();
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, take_ten, &t[i]), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  ms = kv_pace_now_ms() - t0;
  cost_ms = kv_pace_cost_us(100, 2) / 1000;
  for (int i = 0; i < 4; i++)
    assert_int_equal(t[i].ok, 10);
  printf("# 40 turns by 4 threads of 2 instances: %lld ms (at least %lld)\n", (long long)ms,
         (long long)(38 * cost_ms));
  assert_true(ms >= 38 * cost_ms);
  kv_http_free(a);
  kv_http_free(b);
  akv_config_free(cfg);
}

static void bucket_path(char *path, size_t len)
{
  /* the only file in the directory after test_shared_bucket */
  snprintf(path, len, "%s/akv-pkcs11", rtdir);
}

/* A corrupt, group-writable or foreign-owned bucket file: the pacer works for this process alone
 * and leaves the file as it was. */
static void test_bad_bucket_file(void **state)
{
  static const char *const modes[] = {"corrupt", "group-writable", "foreign"};
  char err[512], dir[PATH_MAX], path[PATH_MAX + 64], buf[64], cmd[PATH_MAX + 64];
  struct akv_config *cfg = parse(one_vault, err, sizeof(err));
  (void)state;
  assert_non_null(cfg);
  bucket_path(dir, sizeof(dir));
  for (size_t m = 0; m < 3; m++) {
    struct kv_http *h;
    struct kv_pace *p;
    FILE *f;
    int fd;
    snprintf(cmd, sizeof(cmd), "ls %s", dir);
    f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    pclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    snprintf(path, sizeof(path), "%s/%s", dir, buf);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    memset(buf, 'x', 48);
    assert_int_equal(write(fd, buf, 48), 48);
    if (m == 1)
      assert_int_equal(fchmod(fd, 0660), 0);
    if (m == 2 && fchown(fd, 65534, (gid_t)-1) != 0) {
      close(fd);
      continue; /* not root */
    }
    close(fd);
    h = http_new(cfg);
    assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://v1.vault.azure.net",
                                  AKV_VAULT_KEYVAULT, NULL, &p),
                     KV_OK);
    assert_non_null(p);
    for (int i = 0; i < 5; i++)
      assert_int_equal(kv_pace_take(p, KV_PACE_RSA2048, kv_pace_now_ms() + 1000), KV_OK);
    assert_true(kv_pace_available(p, KV_PACE_RSA2048) <= 1); /* paced, not free */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), 48);
    close(fd);
    for (int i = 0; i < 48; i++)
      assert_int_equal(buf[i], 'x');
    kv_http_free(h);
    printf("# %s bucket file: paced alone, file untouched\n", modes[m]);
    /* a good file again for the next mode */
    unlink(path);
    h = http_new(cfg);
    kv_http_free(h);
  }
  akv_config_free(cfg);
}

/* ---- requests ------------------------------------------------------------------------------- */

static void test_request_classes(void **state)
{
  char err[512];
  struct akv_config *cfg = parse("{\"slots\":[{\"url\":\"https://v2.vault.azure.net\"},"
                                 "{\"url\":\"https://v3.vault.azure.net\",\"pacing\":false}]}",
                                 err, sizeof(err));
  struct kv_http *h;
  struct kv_pace_req pr;
  char body[1200], sig[700];
  (void)state;
  assert_non_null(cfg);
  h = http_new(cfg);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/k/sign?api-version=7.6",
                        "{\"alg\":\"ES256\",\"value\":\"AAAA\"}", 30, &pr);
  assert_non_null(pr.pace);
  assert_int_equal(pr.cls, KV_PACE_EC);
  assert_int_equal(pr.learn, 0);
  /* RSA of unknown size: priced as 2048, learnt from the signature's size */
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/big/v1/sign?api-version=7.6",
                        "{\"alg\":\"RS256\",\"value\":\"AAAA\"}", 30, &pr);
  assert_int_equal(pr.cls, KV_PACE_RSA2048);
  assert_int_equal(pr.learn, 1);
  memset(sig, 'A', 683); /* 512 bytes in base64url */
  snprintf(body, sizeof(body),
           "{\"kid\":\"https://v2.vault.azure.net/keys/big/v1\",\"value\":\"%.683s\"}", sig);
  kv_pace_request_done(&pr, body, strlen(body));
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/big/sign?api-version=7.6",
                        "{\"alg\":\"PS256\",\"value\":\"AAAA\"}", 30, &pr);
  assert_int_equal(pr.cls, KV_PACE_RSA4096);
  assert_int_equal(pr.learn, 0);
  /* verify and decrypt carry a modulus-sized value */
  memset(sig, 'A', 512); /* 384 bytes */
  snprintf(body, sizeof(body), "{\"alg\":\"RS256\",\"digest\":\"AAAA\",\"value\":\"%.512s\"}", sig);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/mid/verify?api-version=7.6", body,
                        strlen(body), &pr);
  assert_int_equal(pr.cls, KV_PACE_RSA3072);
  snprintf(body, sizeof(body), "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%.512s\"}", sig);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/mid/decrypt?api-version=7.6", body,
                        strlen(body), &pr);
  assert_int_equal(pr.cls, KV_PACE_RSA3072);
  /* not paced: other requests, other vaults, a vault with pacing off */
  kv_pace_request_begin(kv_http_pace_set(h), "GET",
                        "https://v2.vault.azure.net/keys/k?api-version=7.6", NULL, 0, &pr);
  assert_null(pr.pace);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net/keys/k/create?api-version=7.6", "{}", 2, &pr);
  assert_null(pr.pace);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v2.vault.azure.net.evil/keys/k/sign?api-version=7.6",
                        "{\"alg\":\"ES256\"}", 15, &pr);
  assert_null(pr.pace);
  kv_pace_request_begin(kv_http_pace_set(h), "POST",
                        "https://v3.vault.azure.net/keys/k/sign?api-version=7.6",
                        "{\"alg\":\"ES256\"}", 15, &pr);
  assert_null(pr.pace);
  kv_http_free(h);
  akv_config_free(cfg);
}

static void test_defaults_and_off(void **state)
{
  char err[512];
  struct akv_config *cfg =
      parse("{\"slots\":[{\"url\":\"https://d.vault.azure.net\"},"
            "{\"url\":\"https://s.vault.azure.net\",\"quota\":\"software\"},"
            "{\"url\":\"https://o.vault.azure.net\",\"quota\":\"off\"},"
            "{\"url\":\"https://m.managedhsm.azure.net\"},"
            "{\"url\":\"https://n.managedhsm.azure.net\",\"quota\":{\"oct\":\"5000/1\"}},"
            "{\"url\":\"https://localhost:8443\"},"
            "{\"url\":\"https://127.0.0.1:8444\",\"quota\":{\"ec\":\"10/1\"}}],"
            "\"allowed_hosts\":[\"localhost\",\"127.0.0.1\"]}",
            err, sizeof(err));
  struct kv_http *h;
  struct kv_pace *p;
  (void)state;
  assert_non_null(cfg);
  h = http_new(cfg);
  /* Key Vault, HSM-key limits per 10 s: burst of 1 % of the window */
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://d.vault.azure.net", 0, NULL, &p),
                   KV_OK);
  assert_non_null(p);
  assert_int_equal(kv_pace_available(p, KV_PACE_EC), 1 + 100000 / kv_pace_cost_us(2000, 10));
  assert_int_equal(kv_pace_available(p, KV_PACE_RSA4096), 1 + 100000 / kv_pace_cost_us(250, 10));
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://s.vault.azure.net", 0, NULL, &p),
                   KV_OK);
  assert_int_equal(kv_pace_available(p, KV_PACE_EC), 1 + 100000 / kv_pace_cost_us(4000, 10));
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://o.vault.azure.net", 0, NULL, &p),
                   KV_OK);
  assert_null(p);
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://m.managedhsm.azure.net", 1, NULL, &p),
                   KV_OK);
  assert_null(p); /* Managed HSM: not throttled by the service; paced only when configured */
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://n.managedhsm.azure.net", 1, NULL, &p),
                   KV_OK);
  assert_non_null(p);
  assert_int_equal(kv_pace_available(p, KV_PACE_RSA2048), LONG_MAX);
  assert_true(kv_pace_available(p, KV_PACE_OCT) > 1);
  /* a host outside the Azure domains (an emulator, a proxy): only with a quota */
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://localhost:8443", 0, NULL, &p), KV_OK);
  assert_null(p);
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://127.0.0.1:8444", 0, NULL, &p), KV_OK);
  assert_non_null(p);
  assert_int_equal(kv_pace_available(p, KV_PACE_RSA2048), LONG_MAX);
  assert_int_equal(kv_pace_available(p, KV_PACE_EC), 1);
  /* NULL pacer: no pacing */
  assert_int_equal(kv_pace_take(NULL, KV_PACE_EC, 0), KV_OK);
  assert_int_equal(kv_pace_wait_ms(NULL, KV_PACE_EC), 0);
  kv_http_free(h);
  akv_config_free(cfg);
}

static void test_config_errors(void **state)
{
  static const struct {
    const char *json, *want;
  } bad[] = {
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":\"100\"}]}",
       "/etc/test.json: field `slots[0].quota`: \"100\" is not a rate; fix: write "
       "OPERATIONS/SECONDS"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"sign\":\"2000/10\"}}]}",
       "field `slots[0].quota.sign`: unknown key class; fix: use one of: rsa2048"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"ec\":\"0/10\"}}]}",
       "field `slots[0].quota.ec`: \"0/10\" is not a rate"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"ec\":\"10/0\"}}]}",
       "is not a rate"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"ec\":\" 10/1\"}}]}",
       "is not a rate"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"ec\":5}}]}",
       "field `slots[0].quota.ec`: expected a string"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":12}]}",
       "field `slots[0].quota`: expected \"N/S\", \"off\", \"hsm\", \"software\" or an object"},
      {"{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"pacing\":\"no\"}]}",
       "field `slots[0].pacing`: expected true or false"},
  };
  char err[512];
  struct akv_config *cfg;
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cfg = parse(bad[i].json, err, sizeof(err));
    assert_null(cfg);
    if (!strstr(err, bad[i].want))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].want);
  }
  cfg =
      parse("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"quota\":{\"rsa4096\":\"500/10\","
            "\"ec\":\"4000/10\"},\"pacing\":true}]}",
            err, sizeof(err));
  assert_non_null(cfg);
  assert_int_equal(cfg->slots[0].quota.count[KV_PACE_RSA4096], 500);
  assert_int_equal(cfg->slots[0].quota.window_s[KV_PACE_EC], 10);
  assert_int_equal(cfg->slots[0].quota.count[KV_PACE_RSA2048], 0);
  assert_int_equal(cfg->slots[0].quota.pacing_off, 0);
  akv_config_free(cfg);
}

/* No XDG_RUNTIME_DIR, or one open to others: per process, and still paced. */
static void test_no_runtime_dir(void **state)
{
  char err[512], open_dir[PATH_MAX];
  struct akv_config *cfg = parse(one_vault, err, sizeof(err));
  struct kv_http *h;
  struct kv_pace *p;
  (void)state;
  assert_non_null(cfg);
  unsetenv("XDG_RUNTIME_DIR");
  h = http_new(cfg);
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://v1.vault.azure.net", 0, NULL, &p),
                   KV_OK);
  assert_non_null(p);
  assert_int_equal(kv_pace_take(p, KV_PACE_EC, 0), KV_OK);
  kv_http_free(h);
  snprintf(open_dir, sizeof(open_dir), "%s/open", rtdir);
  assert_int_equal(mkdir(open_dir, 0777), 0);
  assert_int_equal(chmod(open_dir, 0777), 0);
  setenv("XDG_RUNTIME_DIR", open_dir, 1);
  h = http_new(cfg);
  assert_int_equal(kv_pace_open(kv_http_pace_set(h), "https://v1.vault.azure.net", 0, NULL, &p),
                   KV_OK);
  assert_non_null(p);
  assert_int_equal(kv_pace_take(p, KV_PACE_EC, 0), KV_OK);
  kv_http_free(h);
  /* nothing was created in a directory others can write */
  {
    char sub[PATH_MAX + 16];
    snprintf(sub, sizeof(sub), "%s/akv-pkcs11", open_dir);
    assert_int_not_equal(access(sub, F_OK), 0);
  }
  assert_int_equal(rmdir(open_dir), 0);
  setenv("XDG_RUNTIME_DIR", rtdir, 1);
  akv_config_free(cfg);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gcra_basics),      cmocka_unit_test(test_gcra_sliding_window),
      cmocka_unit_test(test_class_of),         cmocka_unit_test(test_file_check),
      cmocka_unit_test(test_shared_bucket),    cmocka_unit_test(test_threads_share),
      cmocka_unit_test(test_bad_bucket_file),  cmocka_unit_test(test_request_classes),
      cmocka_unit_test(test_defaults_and_off), cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_no_runtime_dir),
  };
  char cmd[64];
  int rc;
  if (!mkdtemp(rtdir))
    return 1;
  chmod(rtdir, 0700);
  setenv("XDG_RUNTIME_DIR", rtdir, 1);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", rtdir);
  if (system(cmd) != 0)
    rc = rc ? rc : 1;
  return rc;
}
