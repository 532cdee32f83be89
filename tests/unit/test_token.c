#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/token.h"

static int64_t fake_clock = 1700000000;
static int64_t clock_fn(void)
{
  return __atomic_load_n(&fake_clock, __ATOMIC_SEQ_CST);
}

static void test_parse_variants(void **state)
{
  struct kv_token t;
  const int64_t now = 1700000000;
  (void)state;
  assert_int_equal(kv_token_parse("{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":"
                                  "\"abc.def\"}",
                                  71, "access_token", now, &t),
                   KV_OK);
  assert_string_equal(t.value, "abc.def");
  assert_int_equal(t.expires_on, now + 3599);
  assert_int_equal(t.refresh_on, now + 3599 - 300);
  kv_token_clear(&t);
  assert_null(t.value);
  /* IMDS: strings everywhere. */
  {
    const char *j = "{\"access_token\":\"x\",\"expires_in\":\"600\",\"expires_on\":\"1\"}";
    assert_int_equal(kv_token_parse(j, strlen(j), "access_token", now, &t), KV_OK);
    assert_int_equal(t.expires_on, now + 600);
    assert_int_equal(t.refresh_on, now + 300); /* half-life for short tokens */
    kv_token_clear(&t);
  }
  /* App Service: expires_on numeric string only. */
  {
    const char *j = "{\"access_token\":\"x\",\"expires_on\":\"1700003600\",\"token_type\":"
                    "\"Bearer\"}";
    assert_int_equal(kv_token_parse(j, strlen(j), "access_token", now, &t), KV_OK);
    assert_int_equal(t.expires_on, 1700003600);
    kv_token_clear(&t);
  }
  /* refresh_in wins for the refresh time. */
  {
    const char *j = "{\"access_token\":\"x\",\"expires_in\":3600,\"refresh_in\":1800}";
    assert_int_equal(kv_token_parse(j, strlen(j), "access_token", now, &t), KV_OK);
    assert_int_equal(t.refresh_on, now + 1800);
    kv_token_clear(&t);
  }
  /* RFC 3339 and az CLI forms. */
  {
    const char *j = "{\"access_token\":\"x\",\"expires_on\":\"2023-11-14T23:13:20Z\"}";
    assert_int_equal(kv_token_parse(j, strlen(j), "access_token", now - 3600, &t), KV_OK);
    assert_int_equal(t.expires_on, 1700003600);
    kv_token_clear(&t);
    j = "{\"accessToken\":\"x\",\"expires_on\":1700003600,\"expiresOn\":\"2000-01-01 00:00:00.0\","
        "\"tokenType\":\"Bearer\"}";
    assert_int_equal(kv_token_parse(j, strlen(j), "accessToken", now, &t), KV_OK);
    assert_int_equal(t.expires_on, 1700003600);
    kv_token_clear(&t);
    j = "{\"accessToken\":\"x\",\"expiresOn\":\"2099-01-01 00:00:00.000000\"}";
    assert_int_equal(kv_token_parse(j, strlen(j), "accessToken", now, &t), KV_OK);
    assert_true(t.expires_on > now);
    kv_token_clear(&t);
  }
}

static void test_parse_rejects(void **state)
{
  static const char *const bad[] = {
      "{\"access_token\":\"x\"}",                                     /* no expiry */
      "{\"access_token\":\"x\",\"expires_in\":0}",                    /* expired */
      "{\"access_token\":\"x\",\"expires_on\":\"1600000000\"}",       /* in the past */
      "{\"access_token\":\"\",\"expires_in\":60}",                    /* empty */
      "{\"access_token\":\"a b\",\"expires_in\":60}",                 /* header injection */
      "{\"access_token\":\"a\\r\\nX: y\",\"expires_in\":60}",
      "{\"access_token\":7,\"expires_in\":60}",
      "{\"access_token\":\"x\",\"expires_in\":60,\"token_type\":\"pop\"}",
      "{\"expires_in\":60}",
      "not json",
      "",
  };
  struct kv_token t;
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    kv_rc rc = kv_token_parse(bad[i], strlen(bad[i]), "access_token", 1700000000, &t);
    if (rc != KV_E_PROTOCOL)
      fail_msg("accepted %s", bad[i]);
    assert_null(t.value);
  }
}

struct fetcher {
  int calls;
  kv_rc rc;
  int lifetime;
  int sleep_us;
  int refresh_ahead; /* seconds before expiry; 0 = 300 */
};

static kv_rc fetch(void *ctx, const char *resource, const char *tenant, struct kv_token *out)
{
  struct fetcher *f = ctx;
  char buf[64];
  int n = __atomic_add_fetch(&f->calls, 1, __ATOMIC_SEQ_CST);
  if (f->sleep_us)
    usleep((useconds_t)f->sleep_us);
  if (f->rc != KV_OK)
    return f->rc;
  snprintf(buf, sizeof(buf), "tok%d-%s-%s", n, resource, tenant ? tenant : "");
  out->value = strdup(buf);
  out->expires_on = clock_fn() + f->lifetime;
  out->refresh_on = out->expires_on - (f->refresh_ahead ? f->refresh_ahead : 300);
  return KV_OK;
}

static void test_cache_refresh_ahead(void **state)
{
  struct kv_token_cache *c = kv_token_cache_new();
  struct fetcher f = {0, KV_OK, 3600, 0, 0};
  char *t = NULL;
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_string_equal(t, "tok1-https://vault.azure.net-t1");
  free(t);
  /* Within the lifetime and before refresh_on: cached. */
  fake_clock += 3000;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_int_equal(f.calls, 1);
  free(t);
  /* Other resource or tenant: separate entries. */
  assert_int_equal(kv_token_cache_get(c, "https://managedhsm.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_int_equal(f.calls, 2);
  free(t);
  /* Past refresh_on (expires - 300): refreshed ahead of expiry. */
  fake_clock += 301;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_int_equal(f.calls, 3);
  assert_string_equal(t, "tok3-https://vault.azure.net-t1");
  free(t);
  /* A refresh that fails while the old token is still valid keeps the old one. */
  fake_clock += 3400;
  f.rc = KV_E_AUTH;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_string_equal(t, "tok3-https://vault.azure.net-t1");
  free(t);
  /* ...but not once it expired. */
  fake_clock += 600;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_E_AUTH);
  assert_null(t);
  /* Forced refresh always fetches. */
  f.rc = KV_OK;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  free(t);
  int before = f.calls;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 1, fetch, &f, &t),
                   KV_OK);
  assert_int_equal(f.calls, before + 1);
  free(t);
  kv_token_cache_free(c);
  kv_token_set_clock(NULL);
}

struct thr {
  struct kv_token_cache *c;
  struct fetcher *f;
  kv_rc rc;
  char *tok;
};

static void *getter(void *arg)
{
  struct thr *t = arg;
  t->rc = kv_token_cache_get(t->c, "https://vault.azure.net", NULL, 0, fetch, t->f, &t->tok);
  return NULL;
}

/* 8 threads get a token at once; all succeed (with token `want` when not NULL). */
static void run_getters(struct kv_token_cache *c, struct fetcher *f, const char *want)
{
  pthread_t th[8];
  struct thr a[8];
  for (int i = 0; i < 8; i++) {
    a[i].c = c;
    a[i].f = f;
    a[i].tok = NULL;
    assert_int_equal(pthread_create(&th[i], NULL, getter, &a[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(a[i].rc, KV_OK);
    if (want)
      assert_string_equal(a[i].tok, want);
    free(a[i].tok);
  }
}

static void test_single_flight(void **state)
{
  struct kv_token_cache *c = kv_token_cache_new();
  struct fetcher f = {0, KV_OK, 3600, 100000, 0};
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  run_getters(c, &f, "tok1-https://vault.azure.net-");
  assert_int_equal(f.calls, 1);
  /* In the refresh window, while one thread refreshes the others keep the valid token. */
  fake_clock += 3400;
  run_getters(c, &f, NULL);
  assert_int_equal(f.calls, 2);
  kv_token_cache_free(c);
  kv_token_set_clock(NULL);
}

/* Tokens that live less than the expiry margin (a managed identity endpoint may hand out one
 * near its end; the emulator's token-ttl fault): a fresh one is usable, cached until its refresh
 * time, and threads that waited for the fetch get it instead of an error. */
static void test_short_lived_tokens(void **state)
{
  struct kv_token_cache *c = kv_token_cache_new();
  struct fetcher f = {0, KV_OK, 4, 50000, 2};
  char *t = NULL;
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  run_getters(c, &f, "tok1-https://vault.azure.net-");
  assert_int_equal(f.calls, 1);
  fake_clock += 1; /* before refresh_on: still cached */
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &t),
                   KV_OK);
  assert_string_equal(t, "tok1-https://vault.azure.net-");
  free(t);
  assert_int_equal(f.calls, 1);
  fake_clock += 2; /* past refresh_on: fetched again */
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &t),
                   KV_OK);
  assert_string_equal(t, "tok2-https://vault.azure.net-");
  free(t);
  assert_int_equal(f.calls, 2);
  kv_token_cache_free(c);
  kv_token_set_clock(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_variants),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_cache_refresh_ahead),
      cmocka_unit_test(test_single_flight),
      cmocka_unit_test(test_short_lived_tokens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
