/* SPDX-License-Identifier: Apache-2.0 */
/* Vault client internals shared by client.c (objects) and crypto.c (operations). */
#ifndef AKV_KV_CLIENT_H
#define AKV_KV_CLIENT_H

#include <cjson/cJSON.h>

#include "kv/kv.h"

struct kv_call {
  const char *op; /* audit operation name, e.g. "keys.sign" */
  const char *method;
  const char *url;  /* absolute (built with kv_client_url or a validated nextLink) */
  const char *body; /* JSON or NULL */
  size_t body_len;
  int idempotent;
  const char *name, *version, *alg; /* for the audit line */
  int defer_audit; /* the caller validates the result and calls kv_client_audit itself */
  /* Optional fast path for a 2xx body, tried before building a cJSON tree: returns 1 when it took
   * the result (kv_client_call then gives *doc NULL), 0 to let the body be parsed as usual. */
  int (*fast_body)(void *ctx, const char *data, size_t len);
  void *fast_ctx;
  /* outputs of kv_client_call, for the audit line */
  long status;
  long latency_ms;
  char client_request_id[40];
  char request_id[80];
  int fast_taken; /* fast_body took the reply */
  /* NULL: the usual retries within the deadline. Else one attempt of a key operation spread over
   * replica vaults (kv/replica.c): no retry here, a 429, 5xx or network failure is logged at info
   * level only (the caller tries another vault and logs the outcome), and its details are copied
   * there. */
  struct kv_attempt *attempt;
};

/* What one attempt on one vault gave, for kv_replica_run's choice of the next vault. */
struct kv_attempt {
  long timeout_ms;     /* input: the attempt's own time limit, 0 = request_timeout_ms */
  long status;         /* HTTP status, 0 = none received */
  long retry_after_ms; /* the reply's Retry-After, -1 = none */
  char err[112];       /* "HTTP 429", "KV_E_NETWORK: connection refused"... ("" on success) */
};

/* One attempt of a key operation on vault cl (the primary or a replica's client), addressing
 * version there; at goes into the kv_call it makes (kv_call.attempt). */
typedef kv_rc (*kv_attempt_fn)(struct kv_client *cl, const char *name, const char *version,
                               void *ctx, struct kv_attempt *at);

/* Runs a key operation (JWA alg) on the vault with the most budget left and fails over to another
 * on 429, 5xx, a network error or a replica's error for this key, within the operation's deadline
 * (docs/reliability.md "Replica vaults"). op names it in messages ("keys.sign"). Called only
 * when kv_client_n_vaults(cl) > 1. */
kv_rc kv_replica_run(struct kv_client *cl, const char *op, const char *name, const char *version,
                     const char *alg, kv_attempt_fn fn, void *ctx);

/* Replica state of a client (kv/replica.c, kv_client_add_replicas); NULL when it has none. It
 * is attached with the function that frees it and the one that records each key kv_get_key reads
 * from the primary (for the replicas' comparison): client.c calls replica.c only through them. */
struct kv_replicas;
struct kv_replicas *kv_client_replicas(const struct kv_client *cl);
kv_rc kv_client_attach_replicas(struct kv_client *cl, struct kv_replicas *rep,
                                void (*rep_free)(struct kv_replicas *rep),
                                void (*rep_note)(struct kv_client *cl, const char *version,
                                                 const struct kv_key *k));
/* What a client was made of: its transport, credential and options (url, api_version, kind). */
void kv_client_parts(const struct kv_client *cl, struct kv_http **http, struct kv_cred **cred,
                     struct kv_client_opts *opts);

const char *kv_client_base_url(const struct kv_client *cl);

/* kv_get_key as one attempt of kv_replica_run's (at not NULL: kv_call.attempt). */
kv_rc kv_get_key_at(struct kv_client *cl, const char *name, const char *version,
                    struct kv_attempt *at, struct kv_key **out, long *http_status);

/* Hands a call's final HTTP status to a caller that asked for it (http_status not NULL): the
 * trailing out parameter of the kv.h functions, 0 when no response arrived. */
static inline void kv_status_set(long *http_status, long status)
{
  if (http_status)
    *http_status = status;
}

/* Sends an authenticated request (token, one challenge-driven refresh and retry on 401), maps
 * errors to kv_rc, writes the audit line. On KV_OK *doc is the parsed JSON object of a 2xx
 * reply (NULL for an empty body, e.g. 204, or when call->fast_body took it). */
kv_rc kv_client_call(struct kv_client *cl, struct kv_call *call, cJSON **doc);

/* Writes the audit line of call with the operation's final outcome. */
void kv_client_audit(const struct kv_client *cl, const struct kv_call *call, kv_rc rc);

/* "<vault>/<path>?api-version=V" with path printf-formatted (malloc'd); names must be validated
 * first. */
char *kv_client_url(const struct kv_client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same URL with path = the non-NULL segments joined by '/', built in buf (cap bytes) without
 * allocating or formatting (per-operation path). Returns buf, or NULL when it does not fit. */
const char *kv_client_path_url(const struct kv_client *cl, char *buf, size_t cap,
                               const char *const *segs, size_t n);

enum akv_vault_kind kv_client_kind(const struct kv_client *cl);

/* Checks name (and version when not NULL) against the Key Vault alphabets; logs on failure. */
kv_rc kv_check_name(const char *name, const char *version);

/* Value of param (case-insensitive) in a WWW-Authenticate Bearer challenge, quoted or token;
 * malloc'd, NULL when absent or 1024 bytes or longer. Internal (client.c), public for the fuzzer.
 */
char *kv_challenge_param(const char *hdr, const char *param);

#endif
