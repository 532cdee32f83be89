/* SPDX-License-Identifier: Apache-2.0 */
/* Vault client internals shared by client.c (objects) and crypto.c (operations). */
#ifndef AKV_KV_CLIENT_H
#define AKV_KV_CLIENT_H

#include <cjson/cJSON.h>

#include "kv/kv.h"

struct kv_call {
  const char *op;      /* audit operation name, e.g. "keys.sign" */
  const char *method;
  const char *url;     /* absolute (built with kv_client_url or a validated nextLink) */
  const char *body;    /* JSON or NULL */
  size_t body_len;
  int idempotent;
  const char *name, *version, *alg; /* for the audit line */
  int defer_audit;     /* the caller validates the result and calls kv_client_audit itself */
  /* Optional fast path for a 2xx body, tried before building a cJSON tree: returns 1 when it took
   * the result (kv_client_call then gives *doc NULL), 0 to let the body be parsed as usual. */
  int (*fast_body)(void *ctx, const char *data, size_t len);
  void *fast_ctx;
  /* outputs of kv_client_call, for the audit line */
  long status;
  long latency_ms;
  char client_request_id[40];
  char request_id[80];
  int fast_taken;      /* fast_body took the reply */
};

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
 * malloc'd, NULL when absent or 1024 bytes or longer. Internal (client.c), public for the fuzzer. */
char *kv_challenge_param(const char *hdr, const char *param);

#endif
