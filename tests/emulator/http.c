/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.c - libmicrohttpd listeners: one HTTPS listener per vault, one HTTPS
 * listener for Entra ID (+ stats/control), one plain-HTTP listener for managed
 * identity. Parses requests into struct emu_req, authenticates, injects faults,
 * dispatches, and writes service-shaped responses.
 */
#include "core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define URI_MAX 8192
#define SERVICE_VERSION "1.9.2455.1"
#define LATEST_API "2025-07-01"

enum listener_type { L_VAULT, L_ENTRA, L_IDENTITY };

struct listener {
  struct MHD_Daemon *d;
  enum listener_type type;
  struct emu_vault *vault;
  unsigned port;
};

struct conn_ctx {
  char *uri; /* raw request target (path + query), as received */
  char *body;
  size_t len, cap;
  bool started;
  bool too_big;
  int64_t t0;
};

static struct listener listeners[EMU_MAX_VAULTS + 2];
static size_t nlisteners;

unsigned http_entra_port(void)
{
  return listeners[0].port;
}

unsigned http_identity_port(void)
{
  return listeners[1].port;
}

static const char *listener_name(const struct listener *l)
{
  return l->type == L_VAULT ? l->vault->name : l->type == L_ENTRA ? "entra" : "identity";
}

static void conn_cb(void *cls, struct MHD_Connection *con, void **socket_context,
                    enum MHD_ConnectionNotificationCode toe)
{
  (void)con;
  (void)socket_context;
  stats_connection(listener_name(cls), toe == MHD_CONNECTION_NOTIFY_STARTED);
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
  (void)cls;
  (void)con;
  struct conn_ctx *ctx = calloc(1, sizeof(*ctx));
  if (!ctx)
    return NULL;
  /* over-long targets are kept truncated-empty and rejected later */
  ctx->uri = strlen(uri) <= URI_MAX ? strdup(uri) : strdup("");
  ctx->t0 = emu_now_ms();
  if (!ctx->uri) {
    free(ctx);
    return NULL;
  }
  return ctx;
}

static void done_cb(void *cls, struct MHD_Connection *con, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
  (void)cls;
  (void)con;
  (void)toe;
  struct conn_ctx *ctx = *con_cls;
  if (!ctx)
    return;
  if (ctx->body) {
    OPENSSL_cleanse(ctx->body, ctx->len);
    free(ctx->body);
  }
  free(ctx->uri);
  free(ctx);
  *con_cls = NULL;
}

/* ---- response writing ------------------------------------------------------------- */

struct trunc_state {
  char *data;
  size_t len;
  size_t limit;
};

static ssize_t trunc_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
  struct trunc_state *t = cls;
  if (pos >= t->limit)
    return MHD_CONTENT_READER_END_WITH_ERROR; /* connection closed mid-body */
  size_t n = t->limit - (size_t)pos;
  if (n > max)
    n = max;
  memcpy(buf, t->data + pos, n);
  return (ssize_t)n;
}

static void trunc_free(void *cls)
{
  struct trunc_state *t = cls;
  free(t->data);
  free(t);
}

static void add_common_headers(struct MHD_Response *r, const struct listener *l,
                               const char *client_req_id, int64_t t0, bool has_body)
{
  char rid[37], buf[64];
  emu_uuid_new(rid);
  if (has_body)
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
  MHD_add_response_header(r, "x-ms-request-id", rid);
  if (client_req_id)
    MHD_add_response_header(r, "x-ms-client-request-id", client_req_id);
  if (l->type != L_VAULT) {
    MHD_add_response_header(r, "Cache-Control", "no-store, no-cache");
    MHD_add_response_header(r, "Pragma", "no-cache");
    return;
  }
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "x-ms-keyvault-region", "local");
  MHD_add_response_header(r, "x-ms-keyvault-network-info",
                          "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;");
  if (l->vault->kind == EMU_KIND_MHSM) {
    MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self'");
    MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    MHD_add_response_header(r, "X-Frame-Options", "SAMEORIGIN");
    snprintf(buf, sizeof(buf), "%lld", (long long)(emu_now_ms() - t0));
    MHD_add_response_header(r, "x-ms-server-latency", buf);
  } else {
    MHD_add_response_header(r, "Pragma", "no-cache");
    MHD_add_response_header(r, "Expires", "-1");
    MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000;includeSubDomains");
    MHD_add_response_header(r, "x-ms-keyvault-service-version", SERVICE_VERSION);
  }
}

/* Serialize `resp` and queue it. Applies truncate/badjson faults. */
static enum MHD_Result send_resp(struct MHD_Connection *conn, const struct listener *l,
                                 struct emu_resp *resp, const char *client_req_id, int64_t t0,
                                 const struct fault_decision *fd)
{
  char *text = NULL;
  size_t len = 0;
  struct MHD_Response *r = NULL;
  enum MHD_Result ret = MHD_NO;
  unsigned status = resp->status ? resp->status : 500;

  if (resp->json) {
    if (l->type == L_VAULT && l->vault->kind == EMU_KIND_MHSM)
      emu_json_sort(resp->json);
    text = cJSON_PrintUnformatted(resp->json);
    if (!text)
      return MHD_NO;
    len = strlen(text);
  }
  if (fd && fd->badjson) {
    free(text);
    text =
        strdup("{\"value\":[{\"kid\":\"https://localhost/keys/x\",\"attributes\":{\"enabled\":tru");
    if (!text)
      return MHD_NO;
    len = strlen(text);
  }
  if (fd && fd->truncate && len > 1) {
    struct trunc_state *t = malloc(sizeof(*t));
    if (!t) {
      free(text);
      return MHD_NO;
    }
    t->data = text;
    t->len = len;
    t->limit = len / 2;
    r = MHD_create_response_from_callback(len, 4096, trunc_reader, t, trunc_free);
    if (!r) {
      trunc_free(t);
      return MHD_NO;
    }
  } else {
    r = MHD_create_response_from_buffer(len, text ? text : (void *)"",
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
      free(text);
      return MHD_NO;
    }
  }
  add_common_headers(r, l, client_req_id, t0, resp->json != NULL);
  for (size_t i = 0; i < resp->nhdr; i++)
    MHD_add_response_header(r, resp->hdr[i].name, resp->hdr[i].value);
  ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* ---- request parsing --------------------------------------------------------------- */

/* Splits target into req->seg/collection/path and req->query. 0 or -1 (bad request). */
static int parse_target(const char *uri, struct emu_req *req, char **path_out, char **coll_out)
{
  const char *q = strchr(uri, '?');
  size_t plen = q ? (size_t)(q - uri) : strlen(uri);
  char *path = NULL, *coll = NULL;
  int rc = -1;

  if (plen == 0 || uri[0] != '/')
    return -1;
  path = emu_pct_decode_new(uri, plen);
  if (!path)
    return -1;
  /* segments */
  const char *p = path + 1;
  size_t total = 0;
  while (1) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (total == 0) {
      coll = strndup(p, n);
      if (!coll)
        goto out;
      for (char *c = coll; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    } else {
      if (n == 0 && !slash)
        break; /* one trailing slash */
      /* An empty segment is malformed but in one place: the version of keys/{name}//..., which the
         SDKs send for "the latest version" (keys.c decides which operations take it). */
      if ((n == 0 && !(req->nseg == 1 && !strcmp(coll, "keys"))) || req->nseg == EMU_MAX_SEGS)
        goto out;
      req->seg[req->nseg] = strndup(p, n);
      if (!req->seg[req->nseg])
        goto out;
      req->nseg++;
    }
    total++;
    if (!slash)
      break;
    p = slash + 1;
  }
  /* query */
  if (q) {
    const char *s = q + 1;
    while (*s) {
      const char *amp = strchr(s, '&');
      size_t n = amp ? (size_t)(amp - s) : strlen(s);
      if (n) {
        const char *eq = memchr(s, '=', n);
        size_t nl = eq ? (size_t)(eq - s) : n;
        char *name = emu_pct_decode_new(s, nl);
        char *val = eq ? emu_pct_decode_new(eq + 1, n - nl - 1) : strdup("");
        if (!name || !val || req->nquery == EMU_MAX_QUERY) {
          free(name);
          free(val);
          goto out;
        }
        req->query[req->nquery].name = name;
        req->query[req->nquery].value = val;
        req->nquery++;
      }
      if (!amp)
        break;
      s = amp + 1;
    }
  }
  rc = 0;
out:
  if (rc != 0) {
    free(path);
    free(coll);
    return -1;
  }
  *path_out = path;
  *coll_out = coll;
  return 0;
}

static int dispatch(struct emu_req *req, struct emu_resp *resp)
{
  const char *c = req->collection;
  bool mhsm = req->vault->kind == EMU_KIND_MHSM;
  if (!strcmp(c, "keys") || !strcmp(c, "deletedkeys") || !strcmp(c, "rng"))
    return keys_handle(req, resp);
  if (!mhsm && (!strcmp(c, "secrets") || !strcmp(c, "deletedsecrets")))
    return emu_secrets_handle(req, resp);
  if (!mhsm && (!strcmp(c, "certificates") || !strcmp(c, "deletedcertificates")))
    return emu_certs_handle(req, resp);
  emu_stats_count("unknown");
  return emu_resp_error(resp, 404, "NotFound", NULL,
                        "The requested resource '%s' does not exist on this %s.", req->path,
                        mhsm ? "managed HSM" : "key vault");
}

static enum MHD_Result vault_request(struct MHD_Connection *conn, struct listener *l,
                                     struct conn_ctx *ctx, const char *method)
{
  struct emu_req req;
  struct emu_resp resp;
  struct fault_decision fd;
  char *path = NULL, *coll = NULL;
  cJSON *body = NULL;
  const char *why = NULL;
  enum MHD_Result ret;
  bool use_fd = false;

  memset(&req, 0, sizeof(req));
  memset(&resp, 0, sizeof(resp));
  stats_request();
  req.vault = l->vault;
  req.method = method;
  req.client_request_id =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-ms-client-request-id");
  if (req.client_request_id && strlen(req.client_request_id) > 256)
    req.client_request_id = NULL;

  /* authentication first: the SDKs' challenge probe must always get the 401 */
  const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  if (entra_check_bearer(l->vault, authz, &why) != 0) {
    char hdr[512];
    emu_stats_count("unauthorized");
    snprintf(hdr, sizeof(hdr), "Bearer authorization=\"%s/%s\", resource=\"%s\"",
             emu_srv->authority_host, emu_srv->tenant_id,
             l->vault->kind == EMU_KIND_MHSM ? "https://managedhsm.azure.net"
                                             : "https://vault.azure.net");
    if (l->vault->kind == EMU_KIND_MHSM)
      emu_resp_empty(&resp, 401);
    else
      emu_resp_error(&resp, 401, "Unauthorized", NULL, "%s",
                     strcmp(why, "missing") == 0
                         ? "AKV10000: Request is missing a Bearer or PoP token."
                         : why);
    emu_resp_header(&resp, "WWW-Authenticate", hdr);
    goto send;
  }

  faults_decide(&fd);
  use_fd = true;
  if (fd.latency_ms) {
    struct timespec ts = {fd.latency_ms / 1000, (long)(fd.latency_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (fd.drop) {
    ret = MHD_NO; /* close without a response */
    goto out;
  }
  if (fd.status) {
    if (fd.status == 429) {
      emu_resp_error(&resp, 429, "Throttled", NULL,
                     "Request was not processed because too many requests were received. "
                     "Reason: VaultRequestTypeLimitReached");
      if (fd.retry_after >= 0) {
        char ra[64];
        if (fd.retry_after_date) {
          /* RFC 9110 IMF-fixdate; the C locale gives English day/month names */
          time_t when = time(NULL) + fd.retry_after;
          struct tm tm;
          gmtime_r(&when, &tm);
          strftime(ra, sizeof(ra), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        } else {
          snprintf(ra, sizeof(ra), "%d", fd.retry_after);
        }
        emu_resp_header(&resp, "Retry-After", ra);
      }
    } else {
      emu_resp_error(&resp, fd.status,
                     fd.status == 500 ? "InternalServerError" : "ServiceUnavailable", NULL,
                     "The service is temporarily unavailable (injected fault %u).", fd.status);
    }
    fd.truncate = fd.badjson = false;
    goto send;
  }

  if (ctx->uri[0] == '\0') {
    emu_resp_error(&resp, 414, "RequestUriTooLong", NULL, "The request URI is too long.");
    goto send;
  }
  if (parse_target(ctx->uri, &req, &path, &coll) != 0) {
    emu_resp_bad_param(&resp, "The request URI is malformed.");
    goto send;
  }
  req.path = path;
  req.collection = coll;
  req.api_version = emu_req_query(&req, "api-version");
  if (!req.api_version || !*req.api_version) {
    emu_resp_bad_param(&resp, "The api-version query parameter (?api-version=) is required for "
                              "all requests.");
    goto send;
  }
  if (!emu_api_version_ok(req.api_version)) {
    emu_resp_bad_param(&resp,
                       "The specified version (%.64s) is not recognized. Consider using the "
                       "latest supported version (%s).",
                       req.api_version, LATEST_API);
    goto send;
  }
  if (quota_throttle(&req, &resp))
    goto send;
  if (ctx->too_big) {
    emu_resp_error(&resp, 413, "RequestEntityTooLarge", NULL,
                   "The request body is larger than %d bytes.", EMU_BODY_MAX);
    goto send;
  }
  if (ctx->len) {
    body = emu_json_parse(ctx->body, ctx->len);
    if (!body) {
      emu_resp_bad_param(&resp, "The request body is not valid JSON.");
      goto send;
    }
    if (!cJSON_IsObject(body)) {
      emu_resp_bad_param(&resp, "The request body must be a JSON object.");
      goto send;
    }
    req.body = body;
  }
  if (dispatch(&req, &resp) != 0 || resp.status == 0) {
    emu_resp_error(&resp, 500, "InternalServerError", NULL, "The emulator ran out of memory.");
  }
send:
  ret = send_resp(conn, l, &resp, req.client_request_id, ctx->t0, use_fd ? &fd : NULL);
out:
  emu_req_clear(&req);
  emu_resp_clear(&resp);
  cJSON_Delete(body);
  free(path);
  free(coll);
  return ret;
}

static enum MHD_Result aux_request(struct MHD_Connection *conn, struct listener *l,
                                   struct conn_ctx *ctx, const char *method)
{
  struct entra_out out = {0};
  struct emu_resp resp;
  const char *q = strchr(ctx->uri, '?');
  char *path = strndup(ctx->uri, q ? (size_t)(q - ctx->uri) : strlen(ctx->uri));
  enum MHD_Result ret;
  memset(&resp, 0, sizeof(resp));
  if (!path)
    return MHD_NO;
  /* msal-node asks for ".../oauth2/token/?..."; trailing slashes do not matter here */
  for (size_t n = strlen(path); n > 1 && path[n - 1] == '/'; n--)
    path[n - 1] = '\0';
  if (ctx->too_big) {
    out.status = 413;
    out.json = cJSON_CreateObject();
    if (out.json)
      cJSON_AddStringToObject(out.json, "error", "request body too large");
  } else {
    entra_handle(method, path, q ? q + 1 : NULL, ctx->body, ctx->len,
                 MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Metadata"),
                 MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-IDENTITY-HEADER"),
                 l->type == L_IDENTITY, &out);
  }
  if (out.op)
    emu_stats_count(out.op);
  emu_resp_json(&resp, out.json || out.status != 500 ? out.status : 500, out.json);
  ret = send_resp(conn, l, &resp,
                  MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "client-request-id"), ctx->t0,
                  NULL);
  emu_resp_clear(&resp);
  free(path);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
  struct listener *l = cls;
  struct conn_ctx *ctx = *con_cls;
  (void)url;
  (void)version;
  if (!ctx)
    return MHD_NO;
  if (!ctx->started) {
    ctx->started = true;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > EMU_BODY_MAX)
      ctx->too_big = true;
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (ctx->too_big || ctx->len + n > EMU_BODY_MAX) {
      ctx->too_big = true;
      return MHD_YES;
    }
    if (ctx->len + n + 1 > ctx->cap) {
      size_t cap = ctx->cap ? ctx->cap : 4096;
      while (cap < ctx->len + n + 1)
        cap *= 2;
      char *nb = realloc(ctx->body, cap);
      if (!nb)
        return MHD_NO;
      ctx->body = nb;
      ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, upload_data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
    return MHD_YES;
  }
  if (l->type == L_VAULT)
    return vault_request(conn, l, ctx, method);
  return aux_request(conn, l, ctx, method);
}

static int start_one(struct listener *l, unsigned port, bool tls)
{
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct MHD_OptionItem opts[] = {
      {MHD_OPTION_SOCK_ADDR, 0, &sa},
      {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_cb, l},
      {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)done_cb, l},
      {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)conn_cb, l},
      {MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, 512, NULL},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 256 * 1024, NULL},
      {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, emu_srv->server_key_pem},
      {MHD_OPTION_HTTPS_MEM_CERT, 0, emu_srv->server_cert_pem},
      {MHD_OPTION_END, 0, NULL},
  };
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (tls)
    flags |= MHD_USE_TLS;
  l->d =
      MHD_start_daemon(flags, 0, NULL, NULL, on_request, l, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
  if (!l->d) {
    fprintf(stderr, "akv-emulator: cannot listen on 127.0.0.1:%u\n", port);
    return -1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
  l->port = info ? info->port : port;
  return 0;
}

int http_start(struct emu_server *srv, unsigned port_base)
{
  unsigned p = port_base;
#define NEXT_PORT() (port_base ? p++ : 0)
  nlisteners = 0;
  listeners[0].type = L_ENTRA;
  if (start_one(&listeners[0], NEXT_PORT(), true) != 0)
    return -1;
  nlisteners = 1;
  listeners[1].type = L_IDENTITY;
  if (start_one(&listeners[1], NEXT_PORT(), false) != 0)
    return -1;
  nlisteners = 2;
  srv->authority_host = emu_strdup_printf("https://localhost:%u", listeners[0].port);
  srv->imds_endpoint = emu_strdup_printf("http://127.0.0.1:%u", listeners[1].port);
  if (!srv->authority_host || !srv->imds_endpoint)
    return -1;
  for (size_t i = 0; i < srv->nvaults; i++) {
    struct listener *l = &listeners[nlisteners];
    l->type = L_VAULT;
    l->vault = &srv->vaults[i];
    if (start_one(l, NEXT_PORT(), true) != 0)
      return -1;
    nlisteners++;
    l->vault->port = l->port;
    l->vault->base_url = emu_strdup_printf("https://localhost:%u", l->port);
    if (!l->vault->base_url)
      return -1;
  }
#undef NEXT_PORT
  return 0;
}

void http_stop(void)
{
  for (size_t i = 0; i < nlisteners; i++) {
    if (listeners[i].d)
      MHD_stop_daemon(listeners[i].d);
    listeners[i].d = NULL;
  }
  nlisteners = 0;
}
