/* SPDX-License-Identifier: Apache-2.0 */
/* The final HTTP status of a vault call comes back with the call (kv.h's trailing http_status,
 * docs/design.md "Decisions"): a failed sign or listing reports its own status, 0 when no response
 * arrived, and two threads failing at the same time with different statuses each get their own. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_http.h"
#include "kv/kv.h"

#define VAULT "https://myvault.vault.azure.net"
#define V1 "0123456789abcdef0123456789abcdef"
#define ROUNDS 100

static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *cl;

/* What the vault answers the calling thread (the fake transport runs in the caller's thread): an
 * HTTP status, or -1 for no response at all. */
static __thread long answer = 200;

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  static char page1[256];
  (void)f;
  reply->status = 200;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->body = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"tok\"}";
    return;
  }
  /* A listing's first page always arrives; the answer is the second page's. */
  if (strstr(req->url, "/keys?maxresults=25")) {
    snprintf(page1, sizeof(page1),
             "{\"value\":[{\"kid\":\"" VAULT "/keys/a\",\"attributes\":{\"enabled\":true}}],"
             "\"nextLink\":\"" VAULT "/keys?page=2\"}");
    reply->body = page1;
    return;
  }
  if (answer < 0) {
    reply->fail = KV_E_NETWORK; /* not transient: no retry */
    return;
  }
  reply->status = answer;
  switch (answer) {
  case 200:
    reply->body =
        strstr(req->url, "page=2") ? "{\"value\":[]}" : "{\"kid\":\"x\",\"value\":\"AAAA\"}";
    break;
  case 403:
    reply->body = "{\"error\":{\"code\":\"Forbidden\",\"message\":\"no sign permission\"}}";
    break;
  case 404:
    reply->body = "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"no such key\"}}";
    break;
  default:
    reply->body = "{\"error\":{\"code\":\"Conflict\",\"message\":\"conflict\"}}";
    break;
  }
}

static int setup(void **state)
{
  struct kv_client_opts o = {VAULT, "7.6", AKV_VAULT_KEYVAULT};
  (void)state;
  answer = 200;
  return fake_client_new(&fake, handler, &o, &http, &cred, &cl);
}

static int teardown(void **state)
{
  (void)state;
  fake_client_free(&fake, http, cred, cl);
  return 0;
}

static kv_rc sign(long *st)
{
  static const unsigned char digest[32] = {1, 2, 3};
  struct kv_bytes sig = {NULL, 0};
  kv_rc rc = kv_sign(cl, "k", V1, "ES256", digest, sizeof(digest), &sig, st);
  kv_bytes_free(&sig);
  return rc;
}

static kv_rc list(long *st)
{
  struct kv_item_list l;
  kv_rc rc = kv_list_keys(cl, &l, st);
  kv_item_list_free(&l);
  return rc;
}

/* One thread's failures: each reports the status its own vault answer carried. */
static void test_status_of_the_call(void **state)
{
  struct kv_key *k = NULL;
  long st = -1;
  (void)state;
  answer = 403;
  assert_int_equal(sign(&st), KV_E_FORBIDDEN);
  assert_int_equal(st, 403);
  assert_int_equal(list(&st), KV_E_FORBIDDEN);
  assert_int_equal(st, 403); /* the failed page's, not the first page's 200 */
  answer = 404;
  assert_int_equal(list(&st), KV_E_NOT_FOUND);
  assert_int_equal(st, 404);
  /* No response: 0, never the status of an earlier failure. */
  answer = -1;
  assert_int_equal(sign(&st), KV_E_NETWORK);
  assert_int_equal(st, 0);
  answer = 403;
  assert_int_equal(sign(&st), KV_E_FORBIDDEN);
  assert_int_equal(st, 403);
  st = -1;
  assert_int_equal(kv_get_key(cl, "no/such", NULL, &k, &st), KV_E_INVALID);
  assert_int_equal(st, 0); /* refused before anything was sent */
  /* A success reports its 2xx; NULL is accepted wherever the caller does not want it. */
  answer = 200;
  assert_int_equal(list(&st), KV_OK);
  assert_int_equal(st, 200);
  answer = 409;
  assert_int_equal(sign(NULL), KV_E_CONFLICT);
  assert_int_equal(list(NULL), KV_E_CONFLICT);
}

struct worker {
  long answer; /* what the vault answers this thread */
  kv_rc want;
  pthread_barrier_t *start;
  int wrong;     /* calls whose status was not this thread's */
  long wrong_st; /* the first such status */
};

static void *work(void *arg)
{
  struct worker *w = arg;
  answer = w->answer;
  pthread_barrier_wait(w->start);
  for (int i = 0; i < ROUNDS; i++) {
    long st = -1;
    kv_rc rc = i % 2 ? sign(&st) : list(&st);
    if (rc != w->want || st != w->answer) {
      if (!w->wrong++)
        w->wrong_st = st;
    }
  }
  return NULL;
}

/* Two threads sign and list at the same time, one answered 403, the other 404: each sees its own
 * status on every call, whatever the other thread did in between. */
static void test_two_threads(void **state)
{
  pthread_barrier_t start;
  struct worker w[2] = {{403, KV_E_FORBIDDEN, &start, 0, 0}, {404, KV_E_NOT_FOUND, &start, 0, 0}};
  pthread_t th[2];
  (void)state;
  assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  pthread_barrier_destroy(&start);
  for (int i = 0; i < 2; i++) {
    if (w[i].wrong)
      fail_msg("thread answered %ld: %d of %d calls reported another status (first: %ld)",
               w[i].answer, w[i].wrong, ROUNDS, w[i].wrong_st);
  }
  /* Both threads really were served by the vault, interleaved on one client. */
  assert_true(fake.n_reqs >= FAKE_MAX);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_status_of_the_call, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
