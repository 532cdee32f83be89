/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/token.h"
#include "util/b64.h"

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
      "{\"access_token\":\"x\"}",                               /* no expiry */
      "{\"access_token\":\"x\",\"expires_in\":0}",              /* expired */
      "{\"access_token\":\"x\",\"expires_on\":\"1600000000\"}", /* in the past */
      "{\"access_token\":\"\",\"expires_in\":60}",              /* empty */
      "{\"access_token\":\"a b\",\"expires_in\":60}",           /* header injection */
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

/* Fuzz finding (seed crash-rfc3339-short-offset): a zone offset that is not exactly "hh:mm"
 * ("+1:2") was matched by sscanf and the parser then skipped six characters, past the end of
 * the string (a heap over-read under ASan, run by the sanitizers test); "+ 1:-2" was accepted as
 * an offset of 58 minutes. Offsets are now exactly two digits, a colon and two digits. */
static void test_parse_rfc3339_offsets(void **state)
{
  static const struct {
    const char *date;
    int64_t expires_on; /* 0 = rejected */
  } cases[] = {
      {"2023-11-15T00:13:19Z", 1700007199},
      {"2023-11-15T00:13:19.123456z", 1700007199},
      {"2023-11-15T01:13:19+01:00", 1700007199},
      {"2023-11-14T18:43:19-05:30", 1700007199},
      {"2023-11-15T00:13:19+1:2", 0},
      {"2023-11-15T00:13:19+01:0", 0},
      {"2023-11-15T00:13:19+ 1:-2", 0},
      {"2023-11-15T00:13:19+0100", 0},
      {"2023-11-15T00:13:19+01:00x", 0},
      {"2023-11-15T00:13:19+01:60", 0},
      {"2023-11-15T00:13:19+", 0},
      {"2023-11-15T00:13:1", 0},
      {"2023-13-15T00:13:19Z", 0},
      {"2023-1-15T00:13:19Z", 0},
      {"+023-11-15T00:13:19Z", 0},
  };
  struct kv_token t;
  char j[160];
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kv_rc rc;
    /* Exact-size heap copy of the reply, so that ASan sees any read past it. */
    int n = snprintf(j, sizeof(j), "{\"access_token\":\"x\",\"expires_on\":\"%s\"}", cases[i].date);
    char *body = malloc((size_t)n);
    assert_non_null(body);
    memcpy(body, j, (size_t)n);
    rc = kv_token_parse(body, (size_t)n, "access_token", 1700000000, &t);
    free(body);
    if (cases[i].expires_on) {
      if (rc != KV_OK || t.expires_on != cases[i].expires_on)
        fail_msg("%s: rc %d, expires_on %lld", cases[i].date, rc, (long long)t.expires_on);
    } else if (rc != KV_E_PROTOCOL || t.value) {
      fail_msg("accepted %s (expires_on %lld)", cases[i].date, (long long)t.expires_on);
    }
    kv_token_clear(&t);
  }
}

/* Fuzz finding (seed crash-expires-in-overflow): a numeric string expires_in such as
 * "9223372036854775807" fit in a long long, and now + expires_in overflowed (undefined
 * behaviour, reported by UBSan). Numeric strings now have the bound of JSON numbers (1e15 s):
 * beyond it the member counts as absent and the next source of the expiry is used. */
static void test_parse_huge_numeric_strings(void **state)
{
  static const char *const bad[] = {
      "{\"access_token\":\"x\",\"expires_in\":\"9223372036854775807\"}",
      "{\"access_token\":\"x\",\"expires_in\":\"2000000000000000\"}",
      "{\"access_token\":\"x\",\"expires_in\":2000000000000000}",
      "{\"access_token\":\"x\",\"expires_on\":\"9223372036854775807\"}",
      "{\"access_token\":\"x\",\"expires_on\":\"-9223372036854775808\"}",
  };
  struct kv_token t;
  const char *j;
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    kv_rc rc = kv_token_parse(bad[i], strlen(bad[i]), "access_token", 1700000000, &t);
    if (rc != KV_E_PROTOCOL || t.value)
      fail_msg("accepted %s (expires_on %lld)", bad[i], (long long)t.expires_on);
  }
  /* Out of range expires_in: expires_on decides. */
  j = "{\"access_token\":\"x\",\"expires_in\":\"9223372036854775807\","
      "\"expires_on\":\"1700003600\"}";
  assert_int_equal(kv_token_parse(j, strlen(j), "access_token", 1700000000, &t), KV_OK);
  assert_int_equal(t.expires_on, 1700003600);
  kv_token_clear(&t);
  /* The largest accepted value still leaves the refresh arithmetic in range. */
  j = "{\"access_token\":\"x\",\"expires_in\":\"999999999999999\","
      "\"refresh_in\":\"999999999999998\"}";
  assert_int_equal(kv_token_parse(j, strlen(j), "access_token", 1700000000, &t), KV_OK);
  assert_int_equal(t.expires_on, INT64_C(1700000000) + INT64_C(999999999999999));
  assert_int_equal(t.refresh_on, INT64_C(1700000000) + INT64_C(999999999999998));
  kv_token_clear(&t);
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
  struct kv_token_ref *t = NULL;
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t), KV_OK);
  assert_string_equal(kv_token_ref_str(t), "tok1-https://vault.azure.net-t1");
  kv_token_ref_unref(t);
  /* Within the lifetime and before refresh_on: cached. */
  fake_clock += 3000;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t), KV_OK);
  assert_int_equal(f.calls, 1);
  kv_token_ref_unref(t);
  /* Other resource or tenant: separate entries. */
  assert_int_equal(kv_token_cache_get(c, "https://managedhsm.azure.net", "t1", 0, fetch, &f, &t),
                   KV_OK);
  assert_int_equal(f.calls, 2);
  kv_token_ref_unref(t);
  /* Past refresh_on (expires - 300): refreshed ahead of expiry. */
  fake_clock += 301;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t), KV_OK);
  assert_int_equal(f.calls, 3);
  assert_string_equal(kv_token_ref_str(t), "tok3-https://vault.azure.net-t1");
  kv_token_ref_unref(t);
  /* A refresh that fails while the old token is still valid keeps the old one. */
  fake_clock += 3400;
  f.rc = KV_E_AUTH;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t), KV_OK);
  assert_string_equal(kv_token_ref_str(t), "tok3-https://vault.azure.net-t1");
  kv_token_ref_unref(t);
  /* ...but not once it expired. */
  fake_clock += 600;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t),
                   KV_E_AUTH);
  assert_null(t);
  /* Forced refresh always fetches. */
  f.rc = KV_OK;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 0, fetch, &f, &t), KV_OK);
  kv_token_ref_unref(t);
  int before = f.calls;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "t1", 1, fetch, &f, &t), KV_OK);
  assert_int_equal(f.calls, before + 1);
  kv_token_ref_unref(t);
  kv_token_cache_free(c);
  kv_token_set_clock(NULL);
}

/* A token a request still holds stays intact while the cache moves on to a newer one (the cache
 * drops its reference, the holder's keeps the old value readable until it lets go), and a NULL
 * tenant names the same entry as "". Run under ASan by the sanitizers test. */
static void test_held_token_survives_refresh(void **state)
{
  struct kv_token_cache *c = kv_token_cache_new();
  struct fetcher f = {0, KV_OK, 3600, 0, 0};
  struct kv_token_ref *old = NULL, *cur = NULL, *again = NULL;
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &old),
                   KV_OK);
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", "", 0, fetch, &f, &again),
                   KV_OK);
  assert_ptr_equal(again, old); /* the same cached token, not a copy */
  assert_int_equal(f.calls, 1);
  kv_token_ref_unref(again);
  fake_clock += 3400; /* past refresh_on */
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &cur),
                   KV_OK);
  assert_int_equal(f.calls, 2);
  assert_string_equal(kv_token_ref_str(cur), "tok2-https://vault.azure.net-");
  assert_string_equal(kv_token_ref_str(old), "tok1-https://vault.azure.net-");
  kv_token_ref_unref(old);
  /* Freeing the cache leaves a holder's reference valid. */
  kv_token_cache_free(c);
  assert_string_equal(kv_token_ref_str(cur), "tok2-https://vault.azure.net-");
  kv_token_ref_unref(cur);
  kv_token_ref_unref(NULL);
  kv_token_set_clock(NULL);
}

struct thr {
  struct kv_token_cache *c;
  struct fetcher *f;
  kv_rc rc;
  struct kv_token_ref *tok;
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
      assert_string_equal(kv_token_ref_str(a[i].tok), want);
    kv_token_ref_unref(a[i].tok);
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
  struct kv_token_ref *t = NULL;
  (void)state;
  kv_token_set_clock(clock_fn);
  fake_clock = 1700000000;
  run_getters(c, &f, "tok1-https://vault.azure.net-");
  assert_int_equal(f.calls, 1);
  fake_clock += 1; /* before refresh_on: still cached */
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &t), KV_OK);
  assert_string_equal(kv_token_ref_str(t), "tok1-https://vault.azure.net-");
  kv_token_ref_unref(t);
  assert_int_equal(f.calls, 1);
  fake_clock += 2; /* past refresh_on: fetched again */
  assert_int_equal(kv_token_cache_get(c, "https://vault.azure.net", NULL, 0, fetch, &f, &t), KV_OK);
  assert_string_equal(kv_token_ref_str(t), "tok2-https://vault.azure.net-");
  kv_token_ref_unref(t);
  assert_int_equal(f.calls, 2);
  kv_token_cache_free(c);
  kv_token_set_clock(NULL);
}

/* "h." + base64url(payload) + ".s": a JWT whose payload is the given bytes. */
static char *jwt_of(const char *payload)
{
  char *b64 = akv_b64url_encode((const unsigned char *)payload, strlen(payload)), *t;
  assert_non_null(b64);
  t = malloc(strlen(b64) + 32);
  assert_non_null(t);
  sprintf(t, "eyJhbGciOiJSUzI1NiJ9.%s.c2ln", b64);
  free(b64);
  return t;
}

/* kv_token_principal of a JWT with that payload gives want and those claims. */
static void expect_claims(const char *payload, int want, const char *tid, const char *oid,
                          const char *app)
{
  struct kv_principal p;
  char *t = jwt_of(payload);
  assert_int_equal(kv_token_principal(t, &p), want);
  assert_string_equal(p.tid, tid);
  assert_string_equal(p.oid, oid);
  assert_string_equal(p.app, app);
  free(t);
}

static void test_principal(void **state)
{
  struct kv_principal p;
  char *big;
  size_t i;
  (void)state;
  /* A v1 token (appid wins over azp), a v2 token (azp). */
  expect_claims(
      "{\"aud\":\"https://vault.azure.net\",\"tid\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\","
      "\"oid\":\"0a1b2c3d-0000-4000-8000-000000000001\",\"appid\":\"app-1\",\"azp\":\"x\"}",
      1, "72f988bf-86f1-41af-91ab-2d7cd011db47", "0a1b2c3d-0000-4000-8000-000000000001", "app-1");
  expect_claims("{\"tid\":\"t\",\"oid\":\"o\",\"azp\":\"cli.app_2\"}", 1, "t", "o", "cli.app_2");
  /* Missing or unusable claims: what is usable is kept, the answer is 0. */
  expect_claims("{\"tid\":\"t\"}", 0, "t", "", "");
  expect_claims("{\"tid\":42,\"oid\":[\"o\"],\"appid\":null}", 0, "", "", "");
  expect_claims("{\"tid\":\"\",\"oid\":\"o/../x\",\"appid\":\"a b\"}", 0, "", "", "");
  expect_claims("{\"tid\":\"t\",\"oid\":\"o\\u0000x\"}", 0, "", "", ""); /* not read as "o" */
  expect_claims("{\"tid\":\"t\",\"oid\":"
                "\"00000000001111111111222222222233333333334444444444555555555566666\"}",
                0, "t", "", ""); /* 65 characters */
  expect_claims("{\"tid\":\"t\",\"oid\":"
                "\"0000000000111111111122222222223333333333444444444455555555556666\"}",
                1, "t", "0000000000111111111122222222223333333333444444444455555555556666", "");
  /* Not JSON, not an object. */
  expect_claims("{\"tid\":\"t\",\"oid\":\"o\"", 0, "", "", "");
  expect_claims("[\"tid\",\"oid\"]", 0, "", "", "");
  /* Not base64url (padding, '+'), not three parts, empty parts, not a JWT at all. */
  assert_int_equal(kv_token_principal("h.eyJ0aWQiOiJ0Iiwib2lkIjoibyJ9.s", &p), 1); /* the control */
  assert_int_equal(kv_token_principal("h.eyJ0aWQiOiJ0Iiwib2lkIjoibyJ9=.s", &p), 0);
  assert_int_equal(kv_token_principal("h.eyJ0aWQiOiJ0I+wib2lkIjoibyJ9.s", &p), 0);
  assert_int_equal(kv_token_principal("h.eyJ0aWQiOiJ0Iiwib2lkIjoibyJ9", &p), 0);
  assert_int_equal(kv_token_principal("h.eyJ0aWQiOiJ0Iiwib2lkIjoibyJ9.s.x.y", &p), 0);
  assert_int_equal(kv_token_principal("h..s", &p), 0);
  assert_int_equal(kv_token_principal("opaque-token", &p), 0);
  assert_int_equal(kv_token_principal("", &p), 0);
  assert_int_equal(kv_token_principal(NULL, &p), 0);
  assert_string_equal(p.tid, "");
  /* A large token (many group claims) is read; one longer than any token may be (16 KB) is not,
   * nor a payload nested 5,000 deep. */
  big = malloc(40000);
  assert_non_null(big);
  strcpy(big, "{\"tid\":\"t\",\"oid\":\"o\",\"groups\":\"");
  for (i = strlen(big); i < 11000; i++)
    big[i] = 'g';
  memcpy(big + i, "\"}", 3);
  expect_claims(big, 1, "t", "o", "");
  for (; i < 39000; i++)
    big[i] = 'g';
  memcpy(big + i, "\"}", 3);
  expect_claims(big, 0, "", "", "");
  for (i = 0; i < 5000; i++)
    big[i] = '[';
  big[i] = '\0';
  expect_claims(big, 0, "", "", "");
  free(big);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_variants),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_parse_rfc3339_offsets),
      cmocka_unit_test(test_parse_huge_numeric_strings),
      cmocka_unit_test(test_cache_refresh_ahead),
      cmocka_unit_test(test_single_flight),
      cmocka_unit_test(test_held_token_survives_refresh),
      cmocka_unit_test(test_short_lived_tokens),
      cmocka_unit_test(test_principal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
