/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "fake_http.h"
#include "kv/http.h"

static struct fake_http fake;
static struct kv_http *http;

static int setup(void **state)
{
  (void)state;
  http = fake_http_new(&fake, NULL, 0);
  return http ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  fake_reset(&fake);
  kv_http_free(http);
  return 0;
}

static kv_rc do_req(const char *method, int idempotent, struct kv_http_response *resp)
{
  struct kv_http_request req;
  memset(&req, 0, sizeof(req));
  req.method = method;
  req.url = "https://v.vault.azure.net/keys?api-version=7.6";
  req.idempotent = idempotent;
  kv_http_response_init(resp);
  return kv_http_do(http, &req, resp);
}

static void test_retry_after_seconds(void **state)
{
  struct kv_http_response resp;
  (void)state;
  fake_push_r(&fake, 429, "{}")->retry_after = "2";
  fake_push_r(&fake, 200, "{\"ok\":1}")->request_id = "srv-id";
  assert_int_equal(do_req("GET", 1, &resp), KV_OK);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.attempts, 2);
  assert_int_equal(fake.n_sleeps, 1);
  assert_int_equal(fake.sleeps[0], 2000);
  assert_string_equal(resp.request_id, "srv-id");
  assert_string_equal((char *)resp.body.data, "{\"ok\":1}");
  /* One x-ms-client-request-id per logical operation, kept across retries. */
  assert_string_equal(fake.reqs[0].client_request_id, fake.reqs[1].client_request_id);
  assert_string_equal(fake.reqs[0].client_request_id, resp.client_request_id);
  assert_int_equal(strlen(resp.client_request_id), 36);
  assert_int_equal(resp.client_request_id[14], '4');
  kv_http_response_free(&resp);
}

static void test_backoff_jitter_on_5xx(void **state)
{
  struct kv_http_response resp;
  (void)state;
  fake_push(&fake, 503, NULL);
  fake_push(&fake, 500, NULL);
  fake_push(&fake, 504, NULL);
  fake_push(&fake, 200, "{}");
  assert_int_equal(do_req("GET", 1, &resp), KV_OK);
  assert_int_equal(resp.status, 200);
  assert_int_equal(fake.n_sleeps, 3);
  /* Full jitter: each wait within [0, min(cap, base * 2^n)] (base 100, cap 2000). */
  assert_true(fake.sleeps[0] >= 0 && fake.sleeps[0] <= 100);
  assert_true(fake.sleeps[1] >= 0 && fake.sleeps[1] <= 200);
  assert_true(fake.sleeps[2] >= 0 && fake.sleeps[2] <= 400);
  kv_http_response_free(&resp);
}

static void test_max_retries_then_status(void **state)
{
  struct kv_http_response resp;
  (void)state;
  for (int i = 0; i < 10; i++)
    fake_push(&fake, 429, "{\"error\":{\"code\":\"Throttled\"}}");
  assert_int_equal(do_req("GET", 1, &resp), KV_OK);
  assert_int_equal(resp.status, 429);
  assert_int_equal(resp.attempts, 5); /* 1 + max_retries 4 */
  kv_http_response_free(&resp);
}

static void test_deadline_stops_retries(void **state)
{
  struct kv_http_response resp;
  (void)state;
  /* Retry-After beyond the 30 s deadline: give up at once rather than sleep past it. */
  fake_push_r(&fake, 429, NULL)->retry_after = "60";
  fake_push(&fake, 200, "{}");
  assert_int_equal(do_req("GET", 1, &resp), KV_OK);
  assert_int_equal(resp.status, 429);
  assert_int_equal(resp.attempts, 1);
  assert_int_equal(fake.n_sleeps, 0);
  kv_http_response_free(&resp);
  fake_reset(&fake);
  /* Slow attempts eat the deadline: 3 x 12 s > 30 s. */
  for (int i = 0; i < 5; i++) {
    struct fake_reply *r = fake_push_r(&fake, 0, NULL);
    r->fail = KV_E_TIMEOUT;
    r->transient = 1;
    r->maybe_sent = 1;
    r->delay_ms = 12000;
  }
  assert_int_equal(do_req("GET", 1, &resp), KV_E_TIMEOUT);
  assert_true(resp.attempts <= 3);
  assert_int_equal(resp.status, 0); /* no response: the final status is 0 */
  /* No attempt was given more time than was left. */
  for (size_t i = 0; i < fake.n_reqs; i++)
    assert_true(fake.reqs[i].timeout_ms <= 30000);
  kv_http_response_free(&resp);
}

static void test_non_idempotent(void **state)
{
  struct kv_http_response resp;
  struct fake_reply *r;
  (void)state;
  /* A create that got a 500 may have happened: not retried. */
  fake_push(&fake, 500, NULL);
  fake_push(&fake, 200, "{}");
  assert_int_equal(do_req("POST", 0, &resp), KV_OK);
  assert_int_equal(resp.status, 500);
  assert_int_equal(resp.attempts, 1);
  kv_http_response_free(&resp);
  fake_reset(&fake);
  /* ...nor after a reset once the request was sent... */
  r = fake_push_r(&fake, 0, NULL);
  r->fail = KV_E_NETWORK;
  r->transient = 1;
  r->maybe_sent = 1;
  fake_push(&fake, 200, "{}");
  assert_int_equal(do_req("POST", 0, &resp), KV_E_NETWORK);
  assert_int_equal(resp.attempts, 1);
  kv_http_response_free(&resp);
  fake_reset(&fake);
  /* ...but a refused connection or a 429 never reached processing: retried. */
  r = fake_push_r(&fake, 0, NULL);
  r->fail = KV_E_NETWORK;
  r->transient = 1;
  fake_push(&fake, 429, NULL);
  fake_push(&fake, 200, "{}");
  assert_int_equal(do_req("POST", 0, &resp), KV_OK);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.attempts, 3);
  kv_http_response_free(&resp);
}

static void test_no_retry_on_client_errors(void **state)
{
  struct kv_http_response resp;
  struct fake_reply *r;
  (void)state;
  fake_push(&fake, 404, "{}");
  assert_int_equal(do_req("GET", 1, &resp), KV_OK);
  assert_int_equal(resp.attempts, 1);
  kv_http_response_free(&resp);
  fake_reset(&fake);
  /* A TLS verification failure is not transient. */
  r = fake_push_r(&fake, 0, NULL);
  r->fail = KV_E_NETWORK;
  assert_int_equal(do_req("GET", 1, &resp), KV_E_NETWORK);
  assert_int_equal(resp.attempts, 1);
  kv_http_response_free(&resp);
}

static void test_redirect_and_oversize(void **state)
{
  struct kv_http_response resp;
  static char big[70000];
  (void)state;
  fake_push(&fake, 302, NULL);
  assert_int_equal(do_req("GET", 1, &resp), KV_E_PROTOCOL);
  kv_http_response_free(&resp);
  fake_reset(&fake);
  memset(big, 'a', sizeof(big) - 1);
  fake_push(&fake, 200, big); /* over the 64 KiB cap */
  assert_int_equal(do_req("GET", 1, &resp), KV_E_PROTOCOL);
  assert_int_equal(resp.attempts, 1);
  kv_http_response_free(&resp);
}

static void test_retry_after_parsing(void **state)
{
  char date[64];
  time_t now = time(NULL);
  struct tm tm;
  (void)state;
  assert_int_equal(kv_http_retry_after_ms("3", now), 3000);
  assert_int_equal(kv_http_retry_after_ms(" 0 ", now), 0);
  assert_int_equal(kv_http_retry_after_ms("250ms", now), 250);
  assert_int_equal(kv_http_retry_after_ms("999999999", now), 86400000L);
  assert_int_equal(kv_http_retry_after_ms("-1", now), -1);
  assert_int_equal(kv_http_retry_after_ms("soon", now), -1);
  assert_int_equal(kv_http_retry_after_ms("5x", now), -1);
  assert_int_equal(kv_http_retry_after_ms(NULL, now), -1);
  gmtime_r(&(time_t){now + 7}, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  assert_int_equal(kv_http_retry_after_ms(date, now), 7000);
  assert_int_equal(kv_http_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", now), 0);
}

static void test_backoff_bounds(void **state)
{
  (void)state;
  for (unsigned a = 0; a < 40; a++) {
    long d = kv_http_backoff_ms(250, 8000, a);
    long ceiling = a < 5 ? 250L << a : 8000;
    assert_true(d >= 0 && d <= ceiling);
  }
  assert_int_equal(kv_http_backoff_ms(0, 0, 3), 0);
}

static void test_allowed_hosts(void **state)
{
  const char *hosts[] = {"localhost", "Emu.Local"};
  struct fake_http f2;
  struct kv_http *h2 = fake_http_new(&f2, hosts, 2);
  (void)state;
  assert_non_null(h2);
  assert_true(kv_http_host_allowed(h2, "LOCALHOST"));
  assert_true(kv_http_host_allowed(h2, "emu.local"));
  assert_false(kv_http_host_allowed(h2, "other"));
  assert_false(kv_http_host_allowed(http, "localhost"));
  kv_http_free(h2);
}

static void test_uuid(void **state)
{
  char a[37], b[37];
  (void)state;
  kv_uuid4(a);
  kv_uuid4(b);
  assert_int_equal(strlen(a), 36);
  assert_string_not_equal(a, b);
  assert_int_equal(a[8], '-');
  assert_true(strchr("89ab", a[19]) != NULL);
}

static void check_uuid_shape(const char *id)
{
  assert_int_equal(strlen(id), 36);
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      assert_int_equal(id[i], '-');
    else
      assert_non_null(strchr("0123456789abcdef", id[i]));
  }
  assert_int_equal(id[14], '4');
  assert_non_null(strchr("89ab", id[19]));
}

static int cmp_id(const void *a, const void *b)
{
  return strcmp((const char *)a, (const char *)b);
}

#define RID_N 4096
static char rid_ids[4][RID_N][37];

static void *rid_thread(void *arg)
{
  char(*ids)[37] = arg;
  for (int i = 0; i < RID_N; i++)
    kv_request_id(ids[i]);
  return NULL;
}

/* Request ids: v4 UUID text, no repeat within a thread, across threads, or between a forked
 * child and its parent (the child must not replay the parent's sequence). */
static void test_request_id(void **state)
{
  pthread_t th[3];
  char child_id[37], parent_id[37];
  int fds[2], st;
  pid_t pid;
  (void)state;
  rid_thread(rid_ids[0]);
  for (int t = 0; t < 3; t++)
    assert_int_equal(pthread_create(&th[t], NULL, rid_thread, rid_ids[t + 1]), 0);
  for (int t = 0; t < 3; t++)
    pthread_join(th[t], NULL);
  for (int t = 0; t < 4; t++)
    for (int i = 0; i < RID_N; i++)
      check_uuid_shape(rid_ids[t][i]);
  qsort(rid_ids, 4 * RID_N, 37, cmp_id);
  for (int i = 1; i < 4 * RID_N; i++)
    assert_string_not_equal(((char(*)[37])rid_ids)[i - 1], ((char(*)[37])rid_ids)[i]);

  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    kv_request_id(child_id);
    _exit(write(fds[1], child_id, 37) == 37 ? 0 : 1);
  }
  kv_request_id(parent_id);
  assert_int_equal(read(fds[0], child_id, 37), 37);
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  check_uuid_shape(child_id);
  assert_string_not_equal(child_id, parent_id);
  close(fds[0]);
  close(fds[1]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_id),
      cmocka_unit_test_setup_teardown(test_retry_after_seconds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backoff_jitter_on_5xx, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_retries_then_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline_stops_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_non_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_retry_on_client_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redirect_and_oversize, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_after_parsing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backoff_bounds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_allowed_hosts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_uuid, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
