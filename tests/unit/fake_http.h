/* SPDX-License-Identifier: Apache-2.0 */
/* Fake HTTP transport for backend unit tests: scripted replies or a handler, a recorded request
 * log and a virtual clock (sleeps advance it), installed with kv_http_set_transport. */
#ifndef AKV_TEST_FAKE_HTTP_H
#define AKV_TEST_FAKE_HTTP_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/http.h"

#define FAKE_MAX 128

struct fake_reply {
  long status;
  const char *body;
  const char *www_auth;
  const char *retry_after;
  const char *request_id;
  kv_rc fail; /* != KV_OK: the attempt fails without a response */
  int transient;
  int maybe_sent;
  int net_fail;  /* enum kv_http_fail of a failed attempt */
  long delay_ms; /* virtual time the attempt takes */
};

struct fake_req {
  char *method, *url, *body, *bearer, *headers, *client_request_id;
  int allow_http, no_retry;
  long connect_timeout_ms, timeout_ms;
};

struct fake_http;
typedef void (*fake_handler)(struct fake_http *f, const struct fake_req *req,
                             struct fake_reply *reply);

struct fake_http {
  struct fake_reply replies[FAKE_MAX];
  size_t n_replies, next_reply;
  fake_handler handler;
  void *user;
  struct fake_req reqs[FAKE_MAX];
  size_t n_reqs;
  int64_t now_ms;
  long sleeps[FAKE_MAX];
  size_t n_sleeps;
};

static inline char *fake_dup(const char *s, size_t n)
{
  char *d;
  if (!s)
    return NULL;
  d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;

static kv_rc fake_perform_inlock(void *ctx, struct kv_http_attempt *a,
                                 struct kv_http_response *resp);

/* Serialised so tests of concurrent callers (kv_get_keys) can share one fake. */
static kv_rc fake_perform(void *ctx, struct kv_http_attempt *a, struct kv_http_response *resp)
{
  kv_rc rc;
  pthread_mutex_lock(&fake_lock);
  rc = fake_perform_inlock(ctx, a, resp);
  pthread_mutex_unlock(&fake_lock);
  return rc;
}

static kv_rc fake_perform_inlock(void *ctx, struct kv_http_attempt *a,
                                 struct kv_http_response *resp)
{
  struct fake_http *f = ctx;
  struct fake_reply r;
  const struct kv_http_request *q = a->req;
  struct fake_req scratch, *rec = &scratch;
  size_t hl = 0;
  memset(&r, 0, sizeof(r));
  memset(&scratch, 0, sizeof(scratch));
  /* Past FAKE_MAX requests the log stops growing; handlers still see each request. */
  if (f->n_reqs < FAKE_MAX)
    rec = &f->reqs[f->n_reqs++];
  {
    rec->method = fake_dup(q->method, strlen(q->method));
    rec->url = fake_dup(q->url, strlen(q->url));
    rec->body = q->body ? fake_dup(q->body, q->body_len) : NULL;
    rec->bearer = q->bearer ? fake_dup(q->bearer, strlen(q->bearer)) : NULL;
    rec->client_request_id = fake_dup(a->client_request_id, strlen(a->client_request_id));
    for (size_t i = 0; i < q->n_headers; i++)
      hl += strlen(q->headers[i]) + 1;
    rec->headers = calloc(1, hl + 1);
    for (size_t i = 0, off = 0; rec->headers && i < q->n_headers; i++) {
      size_t n = strlen(q->headers[i]);
      memcpy(rec->headers + off, q->headers[i], n);
      rec->headers[off + n] = '\n';
      off += n + 1;
    }
    rec->allow_http = q->allow_http;
    rec->no_retry = q->no_retry;
    rec->connect_timeout_ms = a->connect_timeout_ms;
    rec->timeout_ms = a->timeout_ms;
  }
  if (f->handler) {
    r.status = 200;
    f->handler(f, rec, &r);
  } else if (f->next_reply < f->n_replies) {
    r = f->replies[f->next_reply++];
  } else {
    fprintf(stderr, "fake_http: no reply scripted for %s %s\n", q->method, q->url);
    r.fail = KV_E_NETWORK;
  }
  if (rec == &scratch) {
    free(scratch.method);
    free(scratch.url);
    free(scratch.body);
    free(scratch.bearer);
    free(scratch.headers);
    free(scratch.client_request_id);
  }
  /* Like a real transport, an attempt ends at its timeout. */
  if (r.delay_ms > a->timeout_ms) {
    __atomic_add_fetch(&f->now_ms, (int64_t)a->timeout_ms, __ATOMIC_SEQ_CST);
    a->transient = 1;
    a->maybe_sent = 1;
    return KV_E_TIMEOUT;
  }
  __atomic_add_fetch(&f->now_ms, (int64_t)r.delay_ms, __ATOMIC_SEQ_CST);
  if (r.fail != KV_OK) {
    a->transient = r.transient;
    a->maybe_sent = r.maybe_sent;
    a->fail = r.net_fail;
    return r.fail;
  }
  resp->status = r.status;
  if (r.body) {
    /* Same cap rule as the libcurl transport: the transfer is aborted past the cap. */
    int brc = akv_buf_append(&resp->body, r.body, strlen(r.body));
    if (brc == AKV_BUF_TOO_BIG)
      return KV_E_PROTOCOL;
    if (brc)
      return KV_E_NOMEM;
  }
  if (r.www_auth)
    resp->www_authenticate = strdup(r.www_auth);
  if (r.retry_after)
    resp->retry_after = strdup(r.retry_after);
  if (r.request_id)
    snprintf(resp->request_id, sizeof(resp->request_id), "%s", r.request_id);
  return KV_OK;
}

static int64_t fake_now(void *ctx)
{
  /* Atomic: the clock is read outside the fake's lock (deadline bookkeeping) while another
   * thread's attempt advances it. */
  return __atomic_load_n(&((struct fake_http *)ctx)->now_ms, __ATOMIC_SEQ_CST);
}

static void fake_sleep(void *ctx, long ms)
{
  struct fake_http *f = ctx;
  pthread_mutex_lock(&fake_lock);
  if (f->n_sleeps < FAKE_MAX)
    f->sleeps[f->n_sleeps++] = ms;
  pthread_mutex_unlock(&fake_lock);
  __atomic_add_fetch(&f->now_ms, (int64_t)ms, __ATOMIC_SEQ_CST);
}

static inline void fake_install(struct fake_http *f, struct kv_http *http)
{
  struct kv_http_transport t = {fake_perform, fake_now, fake_sleep, f};
  memset(f, 0, sizeof(*f));
  f->now_ms = 1000000;
  kv_http_set_transport(http, &t);
}

static inline void fake_push(struct fake_http *f, long status, const char *body)
{
  struct fake_reply r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.body = body;
  if (f->n_replies < FAKE_MAX)
    f->replies[f->n_replies++] = r;
}

static inline struct fake_reply *fake_push_r(struct fake_http *f, long status, const char *body)
{
  fake_push(f, status, body);
  return &f->replies[f->n_replies - 1];
}

static inline void fake_reset(struct fake_http *f)
{
  for (size_t i = 0; i < f->n_reqs; i++) {
    free(f->reqs[i].method);
    free(f->reqs[i].url);
    free(f->reqs[i].body);
    free(f->reqs[i].bearer);
    free(f->reqs[i].headers);
    free(f->reqs[i].client_request_id);
  }
  memset(f->reqs, 0, sizeof(f->reqs));
  f->n_reqs = 0;
  f->n_replies = f->next_reply = 0;
  f->n_sleeps = 0;
}

/* A kv_http with default-ish options and the fake installed. */
static inline struct kv_http *fake_http_new(struct fake_http *f, const char *const *allowed,
                                            size_t n_allowed)
{
  struct kv_http_opts o;
  struct kv_http *http = NULL;
  memset(&o, 0, sizeof(o));
  o.connect_timeout_ms = 5000;
  o.request_timeout_ms = 10000;
  o.deadline_ms = 30000;
  o.max_retries = 4;
  o.retry_base_ms = 100;
  o.retry_cap_ms = 2000;
  o.pool_size = 4;
  o.max_response_bytes = 64 * 1024;
  o.allowed_hosts = allowed;
  o.n_allowed_hosts = n_allowed;
  if (kv_http_new(&o, &http) != KV_OK)
    return NULL;
  fake_install(f, http);
  return http;
}

/* The n-th request that went to a vault (token requests skipped), or NULL; how many there were. */
static inline const struct fake_req *fake_vault_req(const struct fake_http *f, size_t n)
{
  for (size_t i = 0; i < f->n_reqs; i++)
    if (!strstr(f->reqs[i].url, "/oauth2/") && n-- == 0)
      return &f->reqs[i];
  return NULL;
}

static inline size_t fake_vault_reqs(const struct fake_http *f)
{
  size_t n = 0;
  while (fake_vault_req(f, n))
    n++;
  return n;
}

/* A client-secret credential (tenant "tid", client "cid") on http, or NULL. */
static inline struct kv_cred *fake_secret_cred(struct kv_http *http)
{
  struct akv_cred_config cc;
  struct kv_cred *cred = NULL;
  memset(&cc, 0, sizeof(cc));
  cc.kind = AKV_CRED_SECRET;
  cc.tenant_id = "tid";
  cc.client_id = "cid";
  cc.client_secret = "sec";
  return kv_cred_new(http, &cc, &cred) == KV_OK ? cred : NULL;
}

/* A client of the vault o names on a new fake transport answering with handler, its credential
 * (fake_secret_cred): 0, or -1 when one could not be made. fake_client_free releases the three. */
static inline int fake_client_new(struct fake_http *f, fake_handler handler,
                                  const struct kv_client_opts *o, struct kv_http **http,
                                  struct kv_cred **cred, struct kv_client **cl)
{
  *cred = NULL;
  *cl = NULL;
  *http = fake_http_new(f, NULL, 0);
  if (!*http)
    return -1;
  f->handler = handler;
  *cred = fake_secret_cred(*http);
  return *cred && kv_client_new(*http, *cred, o, cl) == KV_OK ? 0 : -1;
}

static inline void fake_client_free(struct fake_http *f, struct kv_http *http, struct kv_cred *cred,
                                    struct kv_client *cl)
{
  kv_client_free(cl);
  kv_cred_free(cred);
  fake_reset(f);
  kv_http_free(http);
}

#endif
