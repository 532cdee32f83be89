/* SPDX-License-Identifier: Apache-2.0 */
/* Internal HTTP layer of the backend: one request with retries, backoff and a deadline over a
 * replaceable transport (libcurl in production, a fake in unit tests). */
#ifndef AKV_KV_HTTP_H
#define AKV_KV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"
#include "util/buf.h"

struct kv_http_request {
  const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
  const char *url;
  const char *const *headers; /* extra "Name: value" lines (may hold secrets: never logged) */
  size_t n_headers;
  const char *body; /* NULL = no body */
  size_t body_len;
  const char *content_type; /* for body; default "application/json" */
  const char *bearer;       /* access token for Authorization, NULL = none */
  int idempotent;           /* safe to resend after it may have reached the server */
  int allow_http;           /* plain http allowed (managed identity endpoints only) */
  long connect_timeout_ms;  /* 0 = transport default */
  long timeout_ms;          /* whole attempt, 0 = request_timeout_ms (a replica attempt leaves
                               time for the next vault: kv/replica.c) */
  int no_retry;             /* one attempt only (IMDS probe) */
  int want_request_id;      /* fill response request_id on success (always on errors) */
  int ca_file_reported;     /* the caller's own error line names a ca_file this process cannot
                               open (its owner, mode and the uid: kv/auth.c token_request), so
                               the transport's line for it is debug (docs/troubleshooting.md) */
};

/* Why no response was received (kv_http_response.fail), for messages that name the fix. */
enum kv_http_fail {
  KV_FAIL_NONE = 0,  /* a response, or a failure with no more specific cause */
  KV_FAIL_DNS,       /* the host name does not resolve: never retried */
  KV_FAIL_TLS_TRUST, /* the server's certificate chain is not trusted by the CA in use */
};

struct kv_http_response {
  long status;         /* 0 when no response was received */
  int fail;            /* enum kv_http_fail of the last attempt when status is 0 */
  int vault_headers;   /* an error response carried x-ms-keyvault-* or x-ms-request-id */
  struct akv_buf body; /* capped at max_response_bytes */
  char *www_authenticate;
  char *retry_after;          /* Retry-After, or retry-after-ms as "<n>ms" */
  char request_id[80];        /* x-ms-request-id */
  char client_request_id[40]; /* the x-ms-client-request-id we sent */
  unsigned attempts;
  long latency_ms;
};

/* A short phrase for enum kv_http_fail ("the host name does not resolve"), NULL for none. */
const char *kv_http_fail_str(int fail);

void kv_http_response_init(struct kv_http_response *r);
void kv_http_response_free(struct kv_http_response *r); /* wipes the body */

/* Performs req with retries (429, 500/502/503/504, connection failures) within the deadline.
 * Returns KV_OK when a response was received (any status except redirects: check resp->status),
 * KV_E_TIMEOUT/KV_E_NETWORK when none was, KV_E_PROTOCOL for a redirect or an oversized body.
 * resp->status is the final status (0 = no response): kv_client_call hands it up in
 * kv_call.status, and the kv.h functions to their caller (their trailing http_status). */
kv_rc kv_http_do(struct kv_http *http, const struct kv_http_request *req,
                 struct kv_http_response *resp);

/* A logical operation (a vault call with its token fetch and its one 401 retry) shares one
 * deadline: kv_http_op_begin starts it on this thread unless one is already running and returns
 * what kv_http_op_end must restore. Every kv_http_do on the thread stops at that deadline. */
int64_t kv_http_op_begin(struct kv_http *http);
void kv_http_op_end(int64_t saved);

/* ---- transport (tests replace it) ---------------------------------------------------------- */

struct kv_http_attempt {
  const struct kv_http_request *req;
  const char *client_request_id;
  long timeout_ms; /* whole attempt */
  long connect_timeout_ms;
  size_t max_response_bytes;
  /* outputs when perform fails: */
  int maybe_sent; /* the request may have reached the server */
  int transient;  /* worth retrying (reset, timeout, refused) */
  int fail;       /* enum kv_http_fail */
};

struct kv_http_transport {
  /* One attempt: KV_OK with resp->status/body/headers filled, or an error (KV_E_NETWORK,
   * KV_E_TIMEOUT, KV_E_PROTOCOL for an oversized body, KV_E_NOMEM, KV_E_INVALID). */
  kv_rc (*perform)(void *ctx, struct kv_http_attempt *a, struct kv_http_response *resp);
  int64_t (*now_ms)(void *ctx); /* monotonic */
  void (*sleep_ms)(void *ctx, long ms);
  void *ctx;
};

/* Replaces the transport (NULL restores libcurl). Not thread-safe: call before use. */
void kv_http_set_transport(struct kv_http *http, const struct kv_http_transport *t);

const struct kv_http_opts *kv_http_opts_peek(const struct kv_http *http);
/* The pacers of http's vaults (src/kv/pace.h), for kv_pace_open. */
struct kv_pace_set *kv_http_pace_set(struct kv_http *http);

/* 1 when host is listed in the options' allowed_hosts (case-insensitive). */
int kv_http_host_allowed(const struct kv_http *http, const char *host);

/* Retry-After value (delta seconds, HTTP-date, or "<n>ms") to milliseconds from now_s; -1 if
 * unparsable. */
long kv_http_retry_after_ms(const char *value, int64_t now_s);

/* Backoff before retry number attempt (0-based): uniform in [0, min(cap, base * 2^attempt)]. */
long kv_http_backoff_ms(long base_ms, long cap_ms, unsigned attempt);

/* Random RFC 4122 version 4 UUID into out (37 bytes), from RAND_bytes (nonces such as a
 * client assertion's jti). */
void kv_uuid4(char out[37]);
/* Unique RFC 4122 version 4 UUID for x-ms-client-request-id: derived from a per-thread random
 * key and a counter (cheap; unique, not unpredictable). */
void kv_request_id(char out[37]);

#endif
