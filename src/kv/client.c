/* SPDX-License-Identifier: Apache-2.0 */
/* Key Vault REST client: authenticated calls with challenge handling, paging, object getters. */
#include "kv/client.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "kv/error.h"
#include "kv/http.h"
#include "kv/json.h"
#include "kv/jwk.h"
#include "kv/token.h"
#include "util/audit.h"
#include "util/b64.h"
#include "util/log.h"

/* A listing holds at most MAX_ITEMS items; at the service's 25 per page (maxresults=25) that is
 * MAX_PAGES pages, the bound on a nextLink loop. 25,000 keys (1,000 pages) is a real vault's size,
 * not a loop (docs/performance.md "Memory per cached key"). */
#define MAX_ITEMS 100000
#define MAX_PAGES (MAX_ITEMS / 25)
#define MAX_ID_LEN 2048
#define MAX_SECRET (256 * 1024)
#define GET_KEYS_THREADS 8
#ifndef AKV_API_VERSION
#define AKV_API_VERSION "7.6"
#endif

struct kv_client {
  struct kv_http *http;
  struct kv_cred *cred;
  char *url; /* https://host[:port] */
  size_t url_len;
  char *host;
  char *port; /* explicit or "443" */
  char *api_version;
  enum akv_vault_kind kind;
  int custom_host;      /* from allowed_hosts rather than an Azure domain */
  pthread_mutex_t lock; /* resource, tenant */
  char *resource;       /* token resource, updated from a verified challenge */
  char *tenant;         /* tenant hint from the challenge */
  /* Replica vaults (kv/replica.c), NULL = none; attached with the functions that free it and
   * record the primary's keys, so that this file does not depend on replica.c. */
  struct kv_replicas *rep;
  void (*rep_free)(struct kv_replicas *rep);
  void (*rep_note)(struct kv_client *cl, const char *version, const struct kv_key *k);
};

struct kv_replicas *kv_client_replicas(const struct kv_client *cl)
{
  return cl->rep;
}

kv_rc kv_client_attach_replicas(struct kv_client *cl, struct kv_replicas *rep,
                                void (*rep_free)(struct kv_replicas *rep),
                                void (*rep_note)(struct kv_client *cl, const char *version,
                                                 const struct kv_key *k))
{
  if (!cl || !rep || cl->rep)
    return KV_E_INVALID;
  cl->rep = rep;
  cl->rep_free = rep_free;
  cl->rep_note = rep_note;
  return KV_OK;
}

void kv_client_parts(const struct kv_client *cl, struct kv_http **http, struct kv_cred **cred,
                     struct kv_client_opts *opts)
{
  *http = cl->http;
  *cred = cl->cred;
  memset(opts, 0, sizeof(*opts));
  opts->url = cl->url;
  opts->api_version = cl->api_version;
  opts->kind = cl->kind;
}

const char *kv_client_base_url(const struct kv_client *cl)
{
  return cl->url;
}

enum akv_vault_kind kv_client_kind(const struct kv_client *cl)
{
  return cl->kind;
}

kv_rc kv_check_name(const char *name, const char *version)
{
  if (!kv_valid_name(name)) {
    akv_err(AKV_LOGC_KV, "\"%.130s\" is not a Key Vault object name (1-127 of 0-9a-zA-Z-)",
            name ? name : "(null)");
    return KV_E_INVALID;
  }
  if (version && !kv_valid_version(version)) {
    akv_err(AKV_LOGC_KV, "\"%.70s\" is not a Key Vault object version", version);
    return KV_E_INVALID;
  }
  return KV_OK;
}

char *kv_client_url(const struct kv_client *cl, const char *fmt, ...)
{
  struct akv_buf b;
  va_list ap;
  int n;
  char *path;
  akv_buf_init(&b, 8192);
  va_start(ap, fmt);
  n = vasprintf(&path, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  if (akv_buf_printf(&b, "%s/%s%sapi-version=%s", cl->url, path, strchr(path, '?') ? "&" : "?",
                     cl->api_version)) {
    free(path);
    akv_buf_free(&b);
    return NULL;
  }
  free(path);
  return akv_buf_take(&b);
}

/* Appends s (len bytes) at *o in buf (cap bytes); 0 when it does not fit with a NUL after it. */
static int put(char *buf, size_t cap, size_t *o, const char *s, size_t len)
{
  if (len >= cap - *o)
    return 0;
  memcpy(buf + *o, s, len);
  *o += len;
  buf[*o] = '\0';
  return 1;
}

const char *kv_client_path_url(const struct kv_client *cl, char *buf, size_t cap,
                               const char *const *segs, size_t n)
{
  size_t o = 0;
  if (!cap || !put(buf, cap, &o, cl->url, cl->url_len))
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (segs[i] && (!put(buf, cap, &o, "/", 1) || !put(buf, cap, &o, segs[i], strlen(segs[i]))))
      return NULL;
  if (!put(buf, cap, &o, "?api-version=", 13) ||
      !put(buf, cap, &o, cl->api_version, strlen(cl->api_version)))
    return NULL;
  return buf;
}

/* ---- challenge
 * ------------------------------------------------------------------------------------ */

/* Extracts the value of param from a Bearer challenge (quoted or token); malloc'd or NULL.
 * Declared in client.h for the fuzz target. */
char *kv_challenge_param(const char *hdr, const char *param)
{
  const char *p = hdr;
  size_t pl = strlen(param);
  if (strncasecmp(p, "Bearer", 6) != 0)
    return NULL;
  p += 6;
  while (*p) {
    const char *k, *v;
    size_t kl, vl;
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    k = p;
    while (*p && *p != '=' && *p != ' ' && *p != ',')
      p++;
    kl = (size_t)(p - k);
    if (*p != '=')
      continue;
    p++;
    if (*p == '"') {
      v = ++p;
      while (*p && *p != '"')
        p++;
      vl = (size_t)(p - v);
      if (*p)
        p++;
    } else {
      v = p;
      while (*p && *p != ',' && *p != ' ')
        p++;
      vl = (size_t)(p - v);
    }
    if (kl == pl && strncasecmp(k, param, pl) == 0 && vl < 1024)
      return strndup(v, vl);
  }
  return NULL;
}

/* Parses and verifies a 401 challenge, updating the resource/tenant used for tokens. */
static kv_rc handle_challenge(struct kv_client *cl, const char *hdr)
{
  char *auth = NULL, *resource = NULL, *scope = NULL, *tenant = NULL;
  const char *domain = NULL;
  size_t hl, dl;
  kv_rc rc = KV_E_PROTOCOL;
  if (!hdr) {
    akv_warn(AKV_LOGC_AUTH, "%s: 401 without a Bearer challenge; refreshing the token", cl->url);
    return KV_OK;
  }
  auth = kv_challenge_param(hdr, "authorization");
  if (!auth)
    auth = kv_challenge_param(hdr, "authorization_uri");
  resource = kv_challenge_param(hdr, "resource");
  scope = kv_challenge_param(hdr, "scope");
  if (!resource && scope) {
    size_t sl = strlen(scope);
    if (sl > 9 && strcmp(scope + sl - 9, "/.default") == 0)
      scope[sl - 9] = '\0';
    resource = scope;
    scope = NULL;
  }
  if (resource) {
    size_t rl = strlen(resource);
    while (rl && resource[rl - 1] == '/')
      resource[--rl] = '\0';
    /* Never send a token for something else: the resource must be a vault service, and a vault
     * under an Azure domain must belong to that resource's domain. */
    if (!akv_known_vault_resource(resource, &domain)) {
      akv_err(AKV_LOGC_AUTH,
              "%s: the challenge resource '%.200s' is not a Key Vault resource; "
              "refusing",
              cl->url, resource);
      goto out;
    }
    hl = strlen(cl->host);
    dl = strlen(domain);
    if (!cl->custom_host && (hl <= dl || strcasecmp(cl->host + hl - dl, domain) != 0)) {
      akv_err(AKV_LOGC_AUTH,
              "%s: the challenge resource '%s' does not match the requested "
              "domain; refusing",
              cl->url, resource);
      goto out;
    }
  }
  if (auth) {
    /* The tenant is the first path segment of the authorization URL. */
    CURLU *u = curl_url();
    char *path = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, auth, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path[0] == '/' && path[1]) {
      size_t tl = strcspn(path + 1, "/");
      tenant = strndup(path + 1, tl);
    }
    curl_free(path);
    curl_url_cleanup(u);
  }
  pthread_mutex_lock(&cl->lock);
  if (resource) {
    free(cl->resource);
    cl->resource = resource;
    resource = NULL;
  }
  if (tenant) {
    free(cl->tenant);
    cl->tenant = tenant;
    tenant = NULL;
  }
  pthread_mutex_unlock(&cl->lock);
  rc = KV_OK;
out:
  free(auth);
  free(resource);
  free(scope);
  free(tenant);
  return rc;
}

/* A copy of s in buf when it fits (the usual case: challenge values are under 1024 bytes), else
 * on the heap in *heap; NULL only when out of memory. */
static const char *copy_in(const char *s, char *buf, size_t cap, char **heap)
{
  size_t n = strlen(s);
  if (n < cap) {
    memcpy(buf, s, n + 1);
    return buf;
  }
  *heap = strdup(s);
  return *heap;
}

static kv_rc get_token(struct kv_client *cl, int force, struct kv_token_ref **token)
{
  /* resource and tenant change only on a challenge: copied out under the lock (on the stack,
   * this runs once per request), never held over the token fetch. */
  char rbuf[1024], tbuf[256];
  char *rheap = NULL, *theap = NULL;
  const char *resource, *tenant = NULL;
  int has_tenant;
  kv_rc rc = KV_E_NOMEM;
  pthread_mutex_lock(&cl->lock);
  resource = copy_in(cl->resource, rbuf, sizeof(rbuf), &rheap);
  has_tenant = cl->tenant != NULL;
  if (has_tenant)
    tenant = copy_in(cl->tenant, tbuf, sizeof(tbuf), &theap);
  pthread_mutex_unlock(&cl->lock);
  if (!resource || (has_tenant && !tenant))
    goto out;
  rc = kv_cred_token_ref(cl->cred, resource, tenant, force, token);
  if (rc != KV_OK && rc != KV_E_NOMEM) {
    /* The credential logs its own failures (KV_E_AUTH); anything else is said here. Either way
     * the caller gets KV_E_AUTH: already reported. */
    akv_log(kv_rc_reported(rc) ? AKV_LOG_DEBUG : AKV_LOG_ERROR, AKV_LOGC_AUTH,
            "%s: no access token (%s) from %s", cl->url, kv_rc_str(rc), kv_cred_describe(cl->cred));
    rc = KV_E_AUTH;
  }
out:
  free(rheap);
  free(theap);
  return rc;
}

void kv_client_audit(const struct kv_client *cl, const struct kv_call *call, kv_rc rc)
{
  struct akv_audit_event ev;
  if (!call->op || !akv_audit_enabled())
    return;
  ev.vault = cl->url;
  ev.operation = call->op;
  ev.name = call->name;
  ev.version = call->version;
  ev.alg = call->alg;
  ev.outcome = kv_rc_str(rc);
  ev.http_status = call->status;
  ev.latency_ms = call->latency_ms;
  ev.client_request_id = call->client_request_id[0] ? call->client_request_id : NULL;
  ev.request_id = call->request_id;
  akv_audit_record(&ev);
}

kv_rc kv_client_principal(struct kv_client *cl, struct kv_principal *out)
{
  struct kv_token_ref *token = NULL;
  kv_rc rc;

  memset(out, 0, sizeof(*out));
  if (!cl)
    return KV_E_INVALID;
  rc = get_token(cl, 0, &token);
  if (rc == KV_OK)
    (void)kv_token_principal(kv_token_ref_str(token), out);
  kv_token_ref_unref(token);
  return rc;
}

/* Truncating copy of src into dst (cap > 0 bytes): snprintf("%s") without the format engine,
 * which costs more than the whole copy on the per-request path. */
static void str_copy(char *dst, size_t cap, const char *src)
{
  size_t n = strlen(src);
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Appends src at *o, truncating at cap - 1; buf stays NUL-terminated. */
static void str_append(char *buf, size_t cap, size_t *o, const char *src)
{
  str_copy(buf + *o, cap - *o, src);
  *o += strlen(buf + *o);
}

/* "<op> <name>[/<version>]" (or the vault URL for calls without an object) for messages. */
static void what_build(const struct kv_client *cl, const struct kv_call *call, char *buf,
                       size_t cap)
{
  size_t o = 0;
  buf[0] = '\0';
  str_append(buf, cap, &o, call->op ? call->op : "");
  str_append(buf, cap, &o, " ");
  str_append(buf, cap, &o, call->name ? call->name : cl->url);
  if (call->version) {
    str_append(buf, cap, &o, "/");
    str_append(buf, cap, &o, call->version);
  }
}

kv_rc kv_client_call(struct kv_client *cl, struct kv_call *call, cJSON **doc)
{
  struct kv_http_request req;
  struct kv_http_response resp;
  struct kv_token_ref *token = NULL;
  char what[256];
  long latency = 0;
  int64_t saved_deadline;
  kv_rc rc;
  *doc = NULL;
  call->fast_taken = 0;
  kv_http_response_init(&resp);
  /* The deadline covers the token fetch, the request, its retries and the 401 retry. */
  saved_deadline = kv_http_op_begin(cl->http);
  memset(&req, 0, sizeof(req));
  req.method = call->method;
  req.url = call->url;
  req.body = call->body;
  req.body_len = call->body_len;
  req.idempotent = call->idempotent;
  req.no_retry = call->attempt != NULL; /* kv_replica_run tries another vault instead */
  req.timeout_ms = call->attempt ? call->attempt->timeout_ms : 0;
  if (call->attempt) {
    call->attempt->status = 0;
    call->attempt->retry_after_ms = -1;
    call->attempt->err[0] = '\0';
  }
  /* The service's request id only goes to the audit line and the debug log. */
  req.want_request_id =
      (call->op && akv_audit_enabled()) || akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_KV);
  what_build(cl, call, what, sizeof(what));
  for (int attempt = 0; attempt < 2; attempt++) {
    rc = get_token(cl, attempt > 0, &token);
    if (rc != KV_OK)
      goto out;
    req.bearer = kv_token_ref_str(token);
    rc = kv_http_do(cl->http, &req, &resp);
    latency += resp.latency_ms;
    req.bearer = NULL;
    kv_token_ref_unref(token);
    token = NULL;
    if (rc != KV_OK) {
      const char *cause = kv_http_fail_str(resp.fail);
      akv_log(call->attempt ? AKV_LOG_INFO : AKV_LOG_ERROR, AKV_LOGC_KV,
              "%s: %s after %u attempt(s)%s%s (x-ms-client-request-id %s)", what, kv_rc_str(rc),
              resp.attempts, cause ? ": " : "", cause ? cause : "", resp.client_request_id);
      if (call->attempt)
        snprintf(call->attempt->err, sizeof(call->attempt->err), "%s%s%s", kv_rc_str(rc),
                 cause ? ": " : "", cause ? cause : "");
      goto out;
    }
    if (resp.status != 401 || attempt > 0)
      break;
    rc = handle_challenge(cl, resp.www_authenticate);
    if (rc != KV_OK)
      goto out;
  }
  if (resp.status == 404 && !resp.vault_headers &&
      !kv_is_vault_error((const char *)resp.body.data, resp.body.len)) {
    /* Neither Key Vault's headers nor its error body: a web server at a wrong URL, whose 404
     * must not pass for "this key does not exist" (docs/troubleshooting.md). */
    akv_err(AKV_LOGC_KV,
            "%s: HTTP 404 from %s without Key Vault's error body or x-ms-keyvault "
            "headers: the URL is probably not a vault; fix: check slots[].url "
            "(https://NAME.vault.azure.net or https://NAME.managedhsm.azure.net, no path)",
            what, cl->url);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (resp.status < 200 || resp.status >= 300) {
    if (call->attempt) {
      struct kv_attempt *at = call->attempt;
      at->status = resp.status;
      snprintf(at->err, sizeof(at->err), "HTTP %ld", resp.status);
      if (resp.retry_after)
        at->retry_after_ms = kv_http_retry_after_ms(resp.retry_after, (int64_t)time(NULL));
      if (resp.status == 429 || resp.status >= 500) {
        /* Another vault may take it: the caller logs the outcome (docs/troubleshooting.md). */
        rc = kv_status_rc(resp.status);
        akv_info(AKV_LOGC_KV, "%s: HTTP %ld from %s; trying another vault", what, resp.status,
                 cl->url);
        goto out;
      }
    }
    rc = kv_error_from_response(resp.status, (const char *)resp.body.data, resp.body.len, what);
    if (rc == KV_E_UNAUTHORIZED)
      akv_err(AKV_LOGC_AUTH,
              "%s: still 401 after a token refresh; the token of %s is not "
              "accepted by this vault",
              what, kv_cred_describe(cl->cred));
    goto out;
  }
  if (resp.body.len && call->fast_body &&
      call->fast_body(call->fast_ctx, (const char *)resp.body.data, resp.body.len)) {
    call->fast_taken = 1;
    rc = KV_OK;
    goto out;
  }
  if (resp.body.len) {
    *doc = kv_json_parse((const char *)resp.body.data, resp.body.len, what);
    if (!*doc) {
      rc = KV_E_PROTOCOL;
      goto out;
    }
  }
  rc = KV_OK;
out:
  kv_token_ref_unref(token);
  call->status = resp.status;
  call->latency_ms = latency;
  str_copy(call->client_request_id, sizeof(call->client_request_id), resp.client_request_id);
  str_copy(call->request_id, sizeof(call->request_id), resp.request_id);
  if (!call->defer_audit)
    kv_client_audit(cl, call, rc);
  akv_dbg(AKV_LOGC_KV, "%s: %s, HTTP %ld, %ld ms, x-ms-client-request-id %s, x-ms-request-id %s",
          what, kv_rc_str(rc), resp.status, latency, resp.client_request_id,
          resp.request_id[0] ? resp.request_id : "-");
  kv_http_response_free(&resp);
  kv_http_op_end(saved_deadline);
  return rc;
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------ */

kv_rc kv_client_new(struct kv_http *http, struct kv_cred *cred, const struct kv_client_opts *opts,
                    struct kv_client **out)
{
  struct kv_client *cl = NULL;
  CURLU *u = NULL;
  char *scheme = NULL, *host = NULL, *port = NULL;
  const char *resource = NULL;
  enum akv_vault_kind kind;
  kv_rc rc = KV_E_INVALID;
  size_t ul;
  if (!http || !cred || !opts || !opts->url || !out)
    return KV_E_INVALID;
  *out = NULL;
  u = curl_url();
  if (!u)
    return KV_E_NOMEM;
  if (curl_url_set(u, CURLUPART_URL, opts->url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
      strcasecmp(scheme, "https") != 0) {
    akv_err(AKV_LOGC_KV, "vault URL %s is not an https URL", opts->url);
    goto out;
  }
  rc = KV_E_NOMEM;
  cl = calloc(1, sizeof(*cl));
  if (!cl)
    goto out;
  pthread_mutex_init(&cl->lock, NULL);
  cl->http = http;
  cl->cred = cred;
  cl->kind = opts->kind;
  if (akv_azure_vault_host(host, &resource, &kind)) {
    cl->custom_host = 0;
  } else if (kv_http_host_allowed(http, host)) {
    cl->custom_host = 1;
    resource =
        opts->kind == AKV_VAULT_MHSM ? "https://managedhsm.azure.net" : "https://vault.azure.net";
  } else {
    akv_err(AKV_LOGC_KV, "vault host %s is neither an Azure vault domain nor in allowed_hosts",
            host);
    rc = KV_E_INVALID;
    goto out;
  }
  cl->url = strdup(opts->url);
  cl->host = strdup(host);
  cl->port = strdup(port);
  cl->api_version = strdup(opts->api_version ? opts->api_version : AKV_API_VERSION);
  cl->resource = strdup(resource);
  if (!cl->url || !cl->host || !cl->port || !cl->api_version || !cl->resource)
    goto out;
  ul = strlen(cl->url);
  while (ul && cl->url[ul - 1] == '/')
    cl->url[--ul] = '\0';
  cl->url_len = ul;
  *out = cl;
  cl = NULL;
  rc = KV_OK;
out:
  kv_client_free(cl);
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}

void kv_client_free(struct kv_client *cl)
{
  if (!cl)
    return;
  free(cl->url);
  free(cl->host);
  free(cl->port);
  free(cl->api_version);
  free(cl->resource);
  free(cl->tenant);
  if (cl->rep)
    cl->rep_free(cl->rep);
  pthread_mutex_destroy(&cl->lock);
  free(cl);
}

/* ---- lists
 * ---------------------------------------------------------------------------------------- */

/* nextLink is followed only to the vault itself (same scheme, host and port). */
static kv_rc check_next_link(const struct kv_client *cl, const char *link)
{
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  kv_rc rc = KV_E_PROTOCOL;
  if (!u)
    return KV_E_NOMEM;
  if (strlen(link) > 8192 || curl_url_set(u, CURLUPART_URL, link, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    akv_err(AKV_LOGC_KV, "%s: nextLink is not an absolute URL; refusing", cl->url);
    goto out;
  }
  if (strcasecmp(scheme, "https") != 0 || strcasecmp(host, cl->host) != 0 ||
      strcmp(port, cl->port) != 0) {
    akv_err(AKV_LOGC_KV, "%s: nextLink points to %s://%s:%s, not to the vault; refusing", cl->url,
            scheme, host, port);
    goto out;
  }
  rc = KV_OK;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}

static kv_rc list_all(struct kv_client *cl, const char *op, const char *collection,
                      const char *id_field, const char *name, int one_page,
                      struct kv_item_list *out, long *http_status)
{
  char *url = NULL;
  cJSON *doc = NULL;
  struct kv_item_list l = {NULL, 0};
  kv_rc rc;
  out->blocks = NULL;
  out->n = 0;
  kv_status_set(http_status, 0);
  if (name && (rc = kv_check_name(name, NULL)) != KV_OK)
    return rc;
  url = name ? kv_client_url(cl, "%s/%s/versions?maxresults=25", collection, name)
             : kv_client_url(cl, "%s?maxresults=25", collection);
  if (!url)
    return KV_E_NOMEM;
  for (unsigned page = 0;; page++) {
    struct kv_call call = {.op = op, .method = "GET", .url = url, .idempotent = 1, .name = name};
    const cJSON *value, *next, *it;
    if (page >= MAX_PAGES) {
      akv_err(AKV_LOGC_KV, "%s: more than %d pages; giving up (nextLink loop?)", op, MAX_PAGES);
      rc = KV_E_PROTOCOL;
      goto out;
    }
    rc = kv_client_call(cl, &call, &doc);
    kv_status_set(http_status, call.status); /* the last page's */
    if (rc != KV_OK)
      goto out;
    rc = KV_E_PROTOCOL;
    if (!doc) {
      akv_err(AKV_LOGC_KV, "%s: empty list response", op);
      goto out;
    }
    value = cJSON_GetObjectItemCaseSensitive(doc, "value");
    if (!cJSON_IsArray(value)) {
      akv_err(AKV_LOGC_KV, "%s: list response without a \"value\" array", op);
      goto out;
    }
    cJSON_ArrayForEach(it, value)
    {
      struct kv_item *item;
      if (l.n >= MAX_ITEMS) {
        akv_err(AKV_LOGC_KV, "%s: more than %d items", op, MAX_ITEMS);
        rc = KV_E_PROTOCOL;
        goto out;
      }
      item = kv_item_list_grow(&l);
      if (!item) {
        rc = KV_E_NOMEM;
        goto out;
      }
      rc = kv_item_from_json(it, collection, id_field, item);
      l.n++; /* counted even on failure so kv_item_list_free releases partial members */
      if (rc != KV_OK)
        goto out;
    }
    rc = KV_E_PROTOCOL;
    next = cJSON_GetObjectItemCaseSensitive(doc, "nextLink");
    if (one_page || !next || cJSON_IsNull(next) || (cJSON_IsString(next) && !next->valuestring[0]))
      break;
    if (!cJSON_IsString(next)) {
      akv_err(AKV_LOGC_KV, "%s: nextLink must be a string", op);
      goto out;
    }
    if ((rc = check_next_link(cl, next->valuestring)) != KV_OK)
      goto out;
    free(url);
    url = strdup(next->valuestring);
    if (!url) {
      rc = KV_E_NOMEM;
      goto out;
    }
    cJSON_Delete(doc);
    doc = NULL;
  }
  *out = l;
  l.blocks = NULL;
  l.n = 0;
  rc = KV_OK;
out:
  kv_item_list_free(&l);
  cJSON_Delete(doc);
  free(url);
  return rc;
}

kv_rc kv_list_keys(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  return list_all(cl, "keys.list", "keys", "kid", NULL, 0, out, http_status);
}

kv_rc kv_list_key_versions(struct kv_client *cl, const char *name, struct kv_item_list *out,
                           long *http_status)
{
  return list_all(cl, "keys.versions", "keys", "kid", name, 0, out, http_status);
}

kv_rc kv_list_key_versions_page(struct kv_client *cl, const char *name, struct kv_item_list *out,
                                long *http_status)
{
  return list_all(cl, "keys.versions", "keys", "kid", name, 1, out, http_status);
}

kv_rc kv_list_certificates(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  kv_status_set(http_status, 0);
  if (cl->kind == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  return list_all(cl, "certificates.list", "certificates", "id", NULL, 0, out, http_status);
}

kv_rc kv_list_certificate_versions_page(struct kv_client *cl, const char *name,
                                        struct kv_item_list *out, long *http_status)
{
  kv_status_set(http_status, 0);
  if (cl->kind == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  return list_all(cl, "certificates.versions", "certificates", "id", name, 1, out, http_status);
}

kv_rc kv_list_secrets(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  kv_status_set(http_status, 0);
  if (cl->kind == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  return list_all(cl, "secrets.list", "secrets", "id", NULL, 0, out, http_status);
}

/* ---- getters
 * -------------------------------------------------------------------------------------- */

static char *object_url(struct kv_client *cl, const char *collection, const char *name,
                        const char *version)
{
  if (version)
    return kv_client_url(cl, "%s/%s/%s", collection, name, version);
  return kv_client_url(cl, "%s/%s/", collection, name);
}

/* The service must answer about the object we asked for. */
static kv_rc check_same_object(const char *what, const char *name, const char *version,
                               const char *got_name, const char *got_version)
{
  if (strcasecmp(name, got_name) != 0 ||
      (version && (!got_version || strcasecmp(version, got_version) != 0))) {
    akv_err(AKV_LOGC_KV, "%s %s: the response describes another object (%s)", what, name, got_name);
    return KV_E_PROTOCOL;
  }
  return KV_OK;
}

/* GET of one object into *doc; call is set up for the caller's kv_client_audit (call->op stays
 * NULL when no request was made). */
static kv_rc get_object(struct kv_client *cl, const char *op, const char *collection,
                        const char *name, const char *version, struct kv_call *call, cJSON **doc,
                        struct kv_attempt *at)
{
  char *url;
  kv_rc rc;
  memset(call, 0, sizeof(*call));
  *doc = NULL;
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  url = object_url(cl, collection, name, version);
  if (!url)
    return KV_E_NOMEM;
  call->op = op;
  call->method = "GET";
  call->url = url;
  call->idempotent = 1;
  call->name = name;
  call->version = version;
  call->defer_audit = 1;
  call->attempt = at;
  rc = kv_client_call(cl, call, doc);
  call->url = NULL;
  free(url);
  if (rc == KV_OK && !*doc) {
    akv_err(AKV_LOGC_KV, "%s %s: empty response", op, name);
    rc = KV_E_PROTOCOL;
  }
  return rc;
}

kv_rc kv_get_key(struct kv_client *cl, const char *name, const char *version, struct kv_key **out,
                 long *http_status)
{
  return kv_get_key_at(cl, name, version, NULL, out, http_status);
}

kv_rc kv_get_key_at(struct kv_client *cl, const char *name, const char *version,
                    struct kv_attempt *at, struct kv_key **out, long *http_status)
{
  cJSON *doc = NULL;
  struct kv_key *k = NULL;
  struct kv_call call;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !out)
    return KV_E_INVALID;
  *out = NULL;
  rc = get_object(cl, "keys.get", "keys", name, version, &call, &doc, at);
  if (rc != KV_OK)
    goto out;
  if ((rc = kv_key_from_bundle(doc, &k)) != KV_OK ||
      (rc = check_same_object("keys.get", name, version, k->name, k->version)) != KV_OK)
    goto out;
  if (cl->rep)
    cl->rep_note(cl, version, k);
  *out = k;
  k = NULL;
out:
  kv_status_set(http_status, call.status);
  kv_client_audit(cl, &call, rc);
  kv_key_free(k);
  cJSON_Delete(doc);
  return rc;
}

kv_rc kv_get_certificate(struct kv_client *cl, const char *name, const char *version,
                         struct kv_cert **out, long *http_status)
{
  cJSON *doc = NULL;
  struct kv_cert *c = NULL;
  struct kv_call call;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !out)
    return KV_E_INVALID;
  *out = NULL;
  if (cl->kind == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  rc = get_object(cl, "certificates.get", "certificates", name, version, &call, &doc, NULL);
  if (rc != KV_OK)
    goto out;
  if ((rc = kv_cert_from_bundle(doc, "certificates.get", &c)) != KV_OK ||
      (rc = check_same_object("certificates.get", name, version, c->name, c->version)) != KV_OK)
    goto out;
  *out = c;
  c = NULL;
  rc = KV_OK;
out:
  kv_status_set(http_status, call.status);
  kv_client_audit(cl, &call, rc);
  kv_cert_free(c);
  cJSON_Delete(doc);
  return rc;
}

kv_rc kv_get_secret(struct kv_client *cl, const char *name, const char *version,
                    struct kv_secret **out, long *http_status)
{
  cJSON *doc = NULL;
  struct kv_secret *s = NULL;
  struct kv_call call;
  const char *value;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !out)
    return KV_E_INVALID;
  *out = NULL;
  if (cl->kind == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  rc = get_object(cl, "secrets.get", "secrets", name, version, &call, &doc, NULL);
  if (rc != KV_OK)
    goto out;
  rc = KV_E_NOMEM;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  if ((rc = kv_json_dup(doc, "id", 1, MAX_ID_LEN, &s->id)) != KV_OK ||
      (rc = kv_parse_id(s->id, "secrets", &s->name, &s->version)) != KV_OK ||
      (rc = check_same_object("secrets.get", name, version, s->name, s->version)) != KV_OK ||
      (rc = kv_json_dup(doc, "contentType", 0, 256, &s->content_type)) != KV_OK ||
      (rc = kv_json_dup(doc, "kid", 0, MAX_ID_LEN, &s->kid)) != KV_OK ||
      (rc = kv_json_attrs(doc, &s->attrs)) != KV_OK ||
      (rc = kv_json_str(doc, "value", 1, MAX_SECRET, &value)) != KV_OK)
    goto out;
  rc = KV_E_NOMEM;
  s->value_len = strlen(value);
  s->value = malloc(s->value_len + 1);
  if (!s->value)
    goto out;
  memcpy(s->value, value, s->value_len + 1);
  *out = s;
  s = NULL;
  rc = KV_OK;
out:
  kv_status_set(http_status, call.status);
  kv_client_audit(cl, &call, rc);
  if (doc) {
    /* The secret value also sits in the parsed tree: wipe it there. */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "value");
    if (cJSON_IsString(v))
      OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
  }
  kv_secret_free(s);
  cJSON_Delete(doc);
  return rc;
}

/* ---- concurrent key fetch
 * --------------------------------------------------------------------------- */

struct get_keys_job {
  struct kv_client *cl;
  const char *const *names;
  const char *const *versions;
  size_t n;
  struct kv_key **out;
  kv_rc *rcs;
  long *statuses;
  pthread_mutex_t lock;
  size_t next;
};

static void *get_keys_worker(void *arg)
{
  struct get_keys_job *j = arg;
  for (;;) {
    size_t i;
    pthread_mutex_lock(&j->lock);
    i = j->next++;
    pthread_mutex_unlock(&j->lock);
    if (i >= j->n)
      break;
    j->rcs[i] = kv_get_key(j->cl, j->names[i], j->versions ? j->versions[i] : NULL, &j->out[i],
                           j->statuses ? &j->statuses[i] : NULL);
  }
  return NULL;
}

kv_rc kv_get_keys(struct kv_client *cl, const char *const *names, const char *const *versions,
                  size_t n, int threads, struct kv_key **out, kv_rc *rcs, long *statuses)
{
  pthread_t th[GET_KEYS_THREADS];
  size_t nth = !threads ? 1 : n < GET_KEYS_THREADS ? n : GET_KEYS_THREADS, started = 0;
  struct get_keys_job job = {cl, names, versions, n, out, rcs, statuses, PTHREAD_MUTEX_INITIALIZER,
                             0};
  kv_rc rc = KV_OK;
  if (!cl || (!names && n) || (!out && n) || (!rcs && n))
    return KV_E_INVALID;
  for (size_t i = 0; i < n; i++) {
    out[i] = NULL;
    rcs[i] = KV_E_NOMEM;
    if (statuses)
      statuses[i] = 0;
  }
  /* Threads over the shared connection pool; with fewer threads started (resource limits, or none
   * at all when threads is 0) the ones running still drain the whole queue, and the caller works
   * too. */
  for (size_t t = 1; t < nth; t++) {
    if (pthread_create(&th[started], NULL, get_keys_worker, &job) != 0)
      break;
    started++;
  }
  get_keys_worker(&job);
  for (size_t t = 0; t < started; t++)
    pthread_join(th[t], NULL);
  pthread_mutex_destroy(&job.lock);
  for (size_t i = 0; i < n; i++)
    if (rcs[i] != KV_OK && rc == KV_OK)
      rc = rcs[i];
  return rc;
}
