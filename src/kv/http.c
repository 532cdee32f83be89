/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl transport: one process-wide share handle (DNS, TLS sessions) with a pool of reusable
 * easy handles that each keep their own live connections, strict TLS, caps on everything that comes
 * from the network, and the retry/backoff/deadline policy on top of a replaceable transport. */
#include "kv/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "kv/pace.h"
#include "util/log.h"

#define HEADER_VALUE_MAX 4096
#define USER_AGENT "akv-pkcs11/" AKV_VERSION

struct kv_http {
  struct kv_http_opts opts; /* strings below are owned copies */
  char *ca_file;
  char *proxy;
  int privileged; /* AT_SECURE: the environment's proxy variables are not used */
  char **allowed_hosts;
  CURLSH *share;
  pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
  pthread_mutex_t pool_lock;
  struct slot **pool;
  size_t n_pool;
  struct kv_http_transport transport;
  struct kv_pace_set *paces; /* docs/reliability.md "Pacing" */
};

static __thread int64_t op_deadline; /* transport clock ms; 0 = no operation running */

/* RFC 4122 text of a version 4 UUID from 16 random bytes. Hex by hand: a 16-argument snprintf
 * cost as much as the rest of the request set-up. */
static void uuid_format(unsigned char b[16], char out[37])
{
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
}

void kv_uuid4(char out[37])
{
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    /* RAND failure is exotic; a time-based value still gives a usable correlation id. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(b, 0, sizeof(b));
    memcpy(b, &ts, sizeof(ts) < sizeof(b) ? sizeof(ts) : sizeof(b));
  }
  uuid_format(b, out);
}

/* Client request ids only correlate a request with the service's logs: they must be unique, not
 * secret. RAND_bytes (a locked DRBG call, 6.6k instructions) on every request cost more than the
 * rest of the module's request set-up, so each thread draws a 128-bit key from RAND_bytes once
 * and derives ids from a counter through splitmix64 (a bijection: no repeat within a thread;
 * across threads the random keys make a collision as unlikely as for random UUIDs). A forked
 * child draws a new key (its copy of the parent's thread state would repeat the parent's ids). */
static unsigned rid_fork_gen;
static pthread_once_t rid_once = PTHREAD_ONCE_INIT;
static __thread struct {
  uint64_t k0, k1, ctr;
  unsigned gen;
  int seeded;
} rid;

static void rid_child(void)
{
  __atomic_add_fetch(&rid_fork_gen, 1, __ATOMIC_RELAXED);
}

static void rid_register(void)
{
  pthread_atfork(NULL, NULL, rid_child);
}

static uint64_t splitmix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void kv_request_id(char out[37])
{
  unsigned gen;
  uint64_t a, b;
  unsigned char bytes[16];
  pthread_once(&rid_once, rid_register);
  gen = __atomic_load_n(&rid_fork_gen, __ATOMIC_RELAXED);
  if (!rid.seeded || rid.gen != gen) {
    unsigned char seed[16];
    if (RAND_bytes(seed, sizeof(seed)) != 1) {
      kv_uuid4(out); /* its own fallback; try seeding again next time */
      return;
    }
    memcpy(&rid.k0, seed, 8);
    memcpy(&rid.k1, seed + 8, 8);
    OPENSSL_cleanse(seed, sizeof(seed));
    rid.ctr = 0;
    rid.gen = gen;
    rid.seeded = 1;
  }
  rid.ctr++;
  a = splitmix64(rid.k0 ^ rid.ctr);
  b = splitmix64(rid.k1 + a);
  memcpy(bytes, &a, 8);
  memcpy(bytes + 8, &b, 8);
  uuid_format(bytes, out);
}

void kv_http_response_init(struct kv_http_response *r)
{
  memset(r, 0, sizeof(*r));
  akv_buf_init(&r->body, 0);
}

static void response_clear(struct kv_http_response *r)
{
  r->status = 0;
  r->fail = KV_FAIL_NONE;
  r->vault_headers = 0;
  akv_buf_reset(&r->body);
  free(r->www_authenticate);
  free(r->retry_after);
  r->www_authenticate = NULL;
  r->retry_after = NULL;
  r->request_id[0] = '\0';
}

void kv_http_response_free(struct kv_http_response *r)
{
  if (!r)
    return;
  response_clear(r);
  akv_buf_free(&r->body);
}

/* ---- retry policy ------------------------------------------------------------------------------
 */

long kv_http_backoff_ms(long base_ms, long cap_ms, unsigned attempt)
{
  long ceiling = base_ms;
  uint32_t r = 0;
  for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
    ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
  if (ceiling > cap_ms)
    ceiling = cap_ms;
  if (ceiling <= 0)
    return 0;
  if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
    return ceiling / 2;
  return (long)(r % ((uint32_t)ceiling + 1u));
}

long kv_http_retry_after_ms(const char *value, int64_t now_s)
{
  char *end = NULL;
  long long v;
  time_t when;
  if (!value)
    return -1;
  while (*value == ' ' || *value == '\t')
    value++;
  if (*value >= '0' && *value <= '9') {
    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno || v < 0)
      return -1;
    if (strcmp(end, "ms") == 0)
      return v > 86400000LL ? 86400000L : (long)v;
    while (*end == ' ' || *end == '\t')
      end++;
    if (*end)
      return -1;
    return v > 86400 ? 86400000L : (long)v * 1000;
  }
  /* HTTP-date (RFC 7231): curl_getdate understands the three historic formats. */
  when = curl_getdate(value, NULL);
  if (when == (time_t)-1)
    return -1;
  if ((int64_t)when <= now_s)
    return 0;
  if ((int64_t)when - now_s > 86400)
    return 86400000L;
  return (long)(((int64_t)when - now_s) * 1000);
}

static int status_retryable(long status, int idempotent)
{
  if (status == 429)
    return 1; /* throttled requests were not processed: safe even for creates */
  if (status == 503)
    return 1; /* service unavailable: not processed */
  if (status == 500 || status == 502 || status == 504)
    return idempotent;
  return 0;
}

static long deadline_ms(const struct kv_http_opts *o)
{
  return o->deadline_ms > 0 ? o->deadline_ms : 30000;
}

int64_t kv_http_op_begin(struct kv_http *http)
{
  int64_t saved = op_deadline;
  if (!saved)
    op_deadline = http->transport.now_ms(http->transport.ctx) + deadline_ms(&http->opts);
  return saved;
}

void kv_http_op_end(int64_t saved)
{
  op_deadline = saved;
}

kv_rc kv_http_do(struct kv_http *http, const struct kv_http_request *req,
                 struct kv_http_response *resp)
{
  const struct kv_http_opts *o = &http->opts;
  struct kv_http_transport *t = &http->transport;
  int64_t start = t->now_ms(t->ctx);
  int64_t deadline = start + deadline_ms(o);
  unsigned max_retries = req->no_retry ? 0 : o->max_retries;
  kv_rc rc = KV_E_TIMEOUT;
  struct kv_pace_req pace;
  char crid[37];

  if (op_deadline && op_deadline < deadline)
    deadline = op_deadline; /* what is left of the logical operation's deadline */
  response_clear(resp);
  kv_pace_request_begin(http->paces, req->method, req->url, req->body, req->body_len, &pace);
  kv_request_id(crid);
  /* One client request id per logical operation: retries are the same operation to the service. */
  memcpy(resp->client_request_id, crid, sizeof(crid)); /* both 37 bytes and up: the id fits */
  resp->attempts = 0;
  for (unsigned attempt = 0;; attempt++) {
    struct kv_http_attempt a;
    int64_t now = t->now_ms(t->ctx);
    int retry = 0;
    long delay;
    if (now >= deadline) {
      if (attempt == 0 || resp->status == 0)
        rc = KV_E_TIMEOUT;
      break;
    }
    if (pace.pace) {
      /* Wait for this vault's turn, within what is left of the deadline (every attempt is one
       * operation to the service's quota). */
      if (kv_pace_take(pace.pace, pace.cls, kv_pace_now_ms() + (deadline - now)) != KV_OK) {
        if (attempt == 0 || resp->status == 0)
          rc = KV_E_THROTTLED;
        break;
      }
      now = t->now_ms(t->ctx);
      if (now >= deadline) {
        if (attempt == 0 || resp->status == 0)
          rc = KV_E_TIMEOUT;
        break;
      }
    }
    memset(&a, 0, sizeof(a));
    a.req = req;
    a.client_request_id = crid;
    a.timeout_ms = req->timeout_ms > 0         ? req->timeout_ms
                   : o->request_timeout_ms > 0 ? o->request_timeout_ms
                                               : 30000;
    if (a.timeout_ms > deadline - now)
      a.timeout_ms = (long)(deadline - now);
    a.connect_timeout_ms =
        req->connect_timeout_ms ? req->connect_timeout_ms : o->connect_timeout_ms;
    if (a.connect_timeout_ms <= 0 || a.connect_timeout_ms > a.timeout_ms)
      a.connect_timeout_ms = a.timeout_ms;
    a.max_response_bytes = o->max_response_bytes ? o->max_response_bytes : 4u * 1024 * 1024;
    response_clear(resp);
    resp->body.max = a.max_response_bytes;
    resp->attempts++;
    rc = t->perform(t->ctx, &a, resp);
    resp->fail = rc == KV_OK ? KV_FAIL_NONE : a.fail;
    if (rc == KV_OK) {
      retry = status_retryable(resp->status, req->idempotent);
      if (pace.pace && resp->status == 429)
        kv_pace_throttled(pace.pace, resp->retry_after ? kv_http_retry_after_ms(resp->retry_after,
                                                                                (int64_t)time(NULL))
                                                       : -1);
      else if (pace.learn && resp->status >= 200 && resp->status < 300)
        kv_pace_request_done(&pace, (const char *)resp->body.data, resp->body.len);
    } else if (rc == KV_E_NETWORK || rc == KV_E_TIMEOUT) {
      resp->status = 0;
      retry = a.transient && (req->idempotent || !a.maybe_sent);
    }
    if (!retry || attempt >= max_retries)
      break;
    delay = kv_http_backoff_ms(o->retry_base_ms > 0 ? o->retry_base_ms : 250,
                               o->retry_cap_ms > 0 ? o->retry_cap_ms : 8000, attempt);
    if (rc == KV_OK && resp->retry_after) {
      long ra = kv_http_retry_after_ms(resp->retry_after, (int64_t)time(NULL));
      if (ra >= 0)
        delay = ra; /* the service knows best when it will take the request again */
    }
    now = t->now_ms(t->ctx);
    if (now + delay >= deadline) {
      akv_dbg(AKV_LOGC_HTTP, "%s %s: no retry, %ld ms wait would pass the %ld ms deadline",
              req->method, req->url, delay, deadline_ms(o));
      break;
    }
    if (rc == KV_OK)
      akv_info(AKV_LOGC_HTTP, "%s %s: HTTP %ld, retry %u/%u in %ld ms (x-ms-client-request-id %s)",
               req->method, req->url, resp->status, attempt + 1, max_retries, delay, crid);
    else
      akv_info(AKV_LOGC_HTTP, "%s %s: %s, retry %u/%u in %ld ms (x-ms-client-request-id %s)",
               req->method, req->url, kv_rc_str(rc), attempt + 1, max_retries, delay, crid);
    t->sleep_ms(t->ctx, delay);
  }
  if (rc == KV_OK && resp->status >= 300 && resp->status < 400) {
    akv_err(AKV_LOGC_HTTP, "%s %s: HTTP %ld redirect refused (a vault never redirects)",
            req->method, req->url, resp->status);
    rc = KV_E_PROTOCOL;
  }
  resp->latency_ms = (long)(t->now_ms(t->ctx) - start);
  return rc;
}

/* ---- libcurl transport -------------------------------------------------------------------------
 */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_global(void)
{
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userp)
{
  struct kv_http *http = userp;
  if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
    pthread_mutex_lock(&http->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
  struct kv_http *http = userp;
  if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
    pthread_mutex_unlock(&http->share_locks[data]);
}

static int64_t real_now_ms(void *ctx)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void real_sleep_ms(void *ctx, long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

struct xfer {
  struct kv_http_response *resp;
  int too_big;
};

/* A pooled easy handle. The options that never change for a given profile (TLS, callbacks,
 * proxy, share, verbosity) are set once; a request only sets what is its own (URL, method, body,
 * headers, timeouts). curl_easy_reset plus the full option set on every request cost more client
 * CPU than the rest of the module's sign path. */
struct slot {
  CURL *h;
  pthread_t owner;  /* thread that used it last: see pool_get */
  unsigned profile; /* PROFILE_* bits the handle is configured for; 0 = needs a full setup */
  /* Per-request options as last set on the handle (valid while profile is): a request sets only
   * those that differ. */
  struct {
    int method; /* METHOD_*, 0 = unknown */
    long timeout_ms, connect_timeout_ms, low_time;
    size_t max_bytes;
  } last;
  struct xfer x;
  char errbuf[CURL_ERROR_SIZE];
};

#define HANDLE_MAXCONNECTS 4
#define METHOD_POST 1
#define PROFILE_SET 1u
#define PROFILE_HTTP 2u  /* plain http allowed (identity endpoints), never proxied */
#define PROFILE_DEBUG 4u /* header tracing on */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
  struct xfer *x = userp;
  size_t n = size * nmemb;
  int rc = akv_buf_append(&x->resp->body, ptr, n);
  if (rc == AKV_BUF_TOO_BIG) {
    x->too_big = 1;
    return 0; /* aborts the transfer: no point reading a body we will reject */
  }
  return rc == AKV_BUF_OK ? n : 0;
}

/* Copy of a header value (curl has trimmed the blanks around it), capped. */
static char *header_value_dup(const char *v)
{
  return strndup(v, HEADER_VALUE_MAX);
}

/* The last response's header name (final response only: not 1xx, not a proxy CONNECT), or NULL.
 * index counts repeated headers. */
static const char *header_get(CURL *h, const char *name, size_t index, size_t *amount)
{
  struct curl_header *hh = NULL;
  if (curl_easy_header(h, name, index, CURLH_HEADER, -1, &hh) != CURLHE_OK || !hh)
    return NULL;
  if (amount)
    *amount = hh->amount;
  return hh->value;
}

/* Reads the response headers the client uses from curl's header store once the transfer is
 * done: a header callback costs a call and a few compares for every header line of every
 * response, while on success only x-ms-request-id is needed, and only for the audit line and
 * debug log (a lookup walks every header twice: 1.7k instructions). */
static kv_rc response_headers(CURL *h, int want_request_id, struct kv_http_response *r)
{
  const char *v;
  size_t n = 0;
  if ((want_request_id || r->status >= 400) &&
      (v = header_get(h, "x-ms-request-id", 0, NULL)) != NULL) {
    size_t l = strnlen(v, sizeof(r->request_id) - 1);
    memcpy(r->request_id, v, l);
    r->request_id[l] = '\0';
  }
  if (r->status < 400)
    return KV_OK;
  /* Key Vault and Managed HSM put these on every response (docs/troubleshooting.md "a 404 from
   * something that is not a vault"); a web server at a mistyped URL does not. */
  r->vault_headers = header_get(h, "x-ms-keyvault-region", 0, NULL) != NULL ||
                     header_get(h, "x-ms-keyvault-service-version", 0, NULL) != NULL;
  if (r->status == 401 && (v = header_get(h, "www-authenticate", 0, &n)) != NULL) {
    /* Several challenges may come; keep the Bearer one (else the first). */
    const char *pick = v;
    for (size_t i = 0; i < n && i < 16; i++) {
      const char *w = i ? header_get(h, "www-authenticate", i, NULL) : v;
      if (w && strncasecmp(w, "Bearer", 6) == 0) {
        pick = w;
        break;
      }
    }
    if (!(r->www_authenticate = header_value_dup(pick)))
      return KV_E_NOMEM;
  }
  /* The millisecond forms are the more precise when a service sends both. */
  if ((v = header_get(h, "retry-after-ms", 0, NULL)) != NULL ||
      (v = header_get(h, "x-ms-retry-after-ms", 0, NULL)) != NULL) {
    size_t l = strnlen(v, HEADER_VALUE_MAX);
    if (!(r->retry_after = malloc(l + 3)))
      return KV_E_NOMEM;
    memcpy(r->retry_after, v, l);
    memcpy(r->retry_after + l, "ms", 3);
  } else if ((v = header_get(h, "retry-after", 0, NULL)) != NULL) {
    if (!(r->retry_after = header_value_dup(v)))
      return KV_E_NOMEM;
  }
  return KV_OK;
}

static int is_secret_header(const char *line, size_t len)
{
  static const char *const names[] = {"authorization", "x-identity-header",
                                      "secret",        "proxy-authorization",
                                      "cookie",        "set-cookie"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    size_t nl = strlen(names[i]);
    if (len > nl && line[nl] == ':' && strncasecmp(line, names[i], nl) == 0)
      return 1;
  }
  return 0;
}

/* libcurl's informational lines that name a credential: "Proxy auth using Basic with user 'U'"
 * (and the server's), and any "scheme://user:password@host" a message repeats. Returns the
 * length of the line to print before " [redacted]", or 0 when the line names none. */
static size_t text_credential_cut(const char *line, size_t len)
{
  static const char with_user[] = "with user";
  const size_t wl = sizeof(with_user) - 1;
  for (size_t i = 0; i + wl <= len; i++)
    if (memcmp(line + i, with_user, wl) == 0)
      return i + wl;
  for (size_t i = 0; i + 3 <= len; i++) {
    if (memcmp(line + i, "://", 3) != 0)
      continue;
    for (size_t j = i + 3; j < len && !strchr("/ \t'\"", line[j]); j++)
      if (line[j] == '@')
        return i + 3;
  }
  return 0;
}

/* Headers only, never bodies (token responses and client secrets travel in bodies), and the
 * value of credential headers is blanked, as are proxy and server user names and passwords in
 * libcurl's informational lines (docs/security.md "Secrets in memory and in logs"). */
static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *userp)
{
  const char *dir;
  size_t off = 0;
  if (type == CURLINFO_TEXT)
    dir = "*";
  else if (type == CURLINFO_HEADER_IN)
    dir = "<";
  else if (type == CURLINFO_HEADER_OUT)
    dir = ">";
  else
    return 0;
  while (off < size) {
    size_t n = 0;
    while (off + n < size && data[off + n] != '\n')
      n++;
    size_t ln = n;
    while (ln && data[off + ln - 1] == '\r')
      ln--;
    if (ln) {
      size_t cut = 0;
      if (type != CURLINFO_TEXT && is_secret_header(data + off, ln)) {
        size_t nl = strcspn(data + off, ":");
        akv_dbg(AKV_LOGC_HTTP, "%s %.*s: [redacted]", dir, (int)nl, data + off);
      } else if (type == CURLINFO_TEXT && (cut = text_credential_cut(data + off, ln)) != 0) {
        akv_dbg(AKV_LOGC_HTTP, "%s %.*s [redacted]", dir, (int)(cut > 512 ? 512 : cut), data + off);
      } else {
        akv_dbg(AKV_LOGC_HTTP, "%s %.*s", dir, (int)(ln > 512 ? 512 : ln), data + off);
      }
    }
    off += n + 1;
  }
  return 0;
}

/* TLS secrets never leave the process: libcurl writes every connection's secrets to the file
 * named by SSLKEYLOGFILE, and with them a capture of the traffic shows the bearer tokens
 * (docs/security.md "Secrets in memory and in logs"). Called by libcurl once it has set up each
 * TLS context (the vault's and an https proxy's), before the handshake. */
static CURLcode ssl_ctx_cb(CURL *h, void *ssl_ctx, void *userp)
{
  (void)h;
  (void)userp;
  SSL_CTX_set_keylog_callback((SSL_CTX *)ssl_ctx, NULL);
  return CURLE_OK;
}

static void slot_free(struct slot *sl)
{
  if (!sl)
    return;
  if (sl->h)
    curl_easy_cleanup(sl->h);
  free(sl);
}

static struct slot *pool_get(struct kv_http *http)
{
  struct slot *sl = NULL;
  pthread_t self = pthread_self();
  pthread_mutex_lock(&http->pool_lock);
  if (http->n_pool) {
    /* Prefer the handle this thread used last: its buffers and connection were allocated in
     * this thread's malloc arena, and a handle that moves between threads makes every realloc
     * and free take another thread's arena lock (measured: the main contention at 4 threads). */
    size_t i = http->n_pool - 1;
    for (size_t j = 0; j < http->n_pool; j++)
      if (pthread_equal(http->pool[j]->owner, self)) {
        i = j;
        break;
      }
    sl = http->pool[i];
    http->pool[i] = http->pool[--http->n_pool];
  }
  pthread_mutex_unlock(&http->pool_lock);
  if (!sl) {
    sl = calloc(1, sizeof(*sl));
    if (sl && !(sl->h = curl_easy_init())) {
      free(sl);
      sl = NULL;
    }
  }
  if (sl)
    sl->owner = self; /* keeps live connections, caches and the options of its profile */
  return sl;
}

static void pool_put(struct kv_http *http, struct slot *sl)
{
  pthread_mutex_lock(&http->pool_lock);
  if (http->n_pool < http->opts.pool_size) {
    http->pool[http->n_pool++] = sl;
    sl = NULL;
  }
  pthread_mutex_unlock(&http->pool_lock);
  slot_free(sl);
}

/* Sockets are close-on-exec: a host that forks and execs must not leak vault connections into
 * the new program (a forked child that does not exec never uses them either, see module.c). */
static int sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0)
    fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  return CURL_SOCKOPT_OK;
}

static kv_rc map_curl_error(CURLcode cc, struct kv_http_attempt *a, const struct xfer *x, CURL *h)
{
  long sent = 0;
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
  a->maybe_sent = sent > 0;
  switch (cc) {
  case CURLE_WRITE_ERROR:
    if (x->too_big)
      return KV_E_PROTOCOL;
    return KV_E_NOMEM;
  case CURLE_FILESIZE_EXCEEDED:
    return KV_E_PROTOCOL; /* Content-Length announced more than the cap: not worth a retry */
  case CURLE_OUT_OF_MEMORY:
    return KV_E_NOMEM;
  case CURLE_OPERATION_TIMEDOUT:
    a->transient = 1;
    return KV_E_TIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    /* A name that does not resolve is a wrong name far more often than a resolver hiccup:
     * retrying only makes the user wait for the same answer (docs/troubleshooting.md). */
    a->fail = KV_FAIL_DNS;
    a->maybe_sent = 0;
    return KV_E_NETWORK;
  case CURLE_PEER_FAILED_VERIFICATION: /* also CURLE_SSL_CACERT */
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
    a->fail = KV_FAIL_TLS_TRUST;
    return KV_E_NETWORK;
  case CURLE_COULDNT_CONNECT:
    a->transient = 1;
    a->maybe_sent = 0;
    return KV_E_NETWORK;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    a->transient = 1;
    return KV_E_NETWORK;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    return KV_E_INVALID;
  default:
    /* TLS verification failures and the like: retrying cannot help. */
    return KV_E_NETWORK;
  }
}

#define SETOPT(o, v)                                                                               \
  do {                                                                                             \
    if (curl_easy_setopt(h, o, v) != CURLE_OK) {                                                   \
      rc = KV_E_INVALID;                                                                           \
      akv_err(AKV_LOGC_HTTP, "libcurl rejected option %s", #o);                                    \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)

/* The options a handle keeps from one request to the next (see struct slot). */
static kv_rc slot_configure(struct kv_http *http, struct slot *sl, unsigned profile)
{
  CURL *h = sl->h;
  kv_rc rc = KV_E_INVALID;
  if (sl->profile == profile)
    return KV_OK;
  sl->profile = 0;
  memset(&sl->last, 0, sizeof(sl->last));
  curl_easy_reset(h); /* keeps live connections and caches, drops every option */
  SETOPT(CURLOPT_SHARE, http->share);
  SETOPT(CURLOPT_PROTOCOLS_STR, (profile & PROFILE_HTTP) ? "http,https" : "https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  /* Connections belong to the handle (not to the share handle, whose connection lock every
   * transfer took several times: the main lock contention under concurrency). A handle talks to
   * a vault and perhaps a token endpoint; a few idle connections each is plenty. */
  SETOPT(CURLOPT_MAXCONNECTS, (long)HANDLE_MAXCONNECTS);
  SETOPT(CURLOPT_USERAGENT, USER_AGENT);
  SETOPT(CURLOPT_ERRORBUFFER, sl->errbuf);
  SETOPT(CURLOPT_LOW_SPEED_LIMIT, 64L);
  SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
  SETOPT(CURLOPT_WRITEDATA, &sl->x);
  SETOPT(CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
  SETOPT(CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
  /* ca_file replaces the system store (docs/security.md "TLS is always verified"): libcurl's
   * default CA path (/etc/ssl/certs on Debian) would otherwise still be searched next to it. */
  if (http->ca_file) {
    SETOPT(CURLOPT_CAINFO, http->ca_file);
    SETOPT(CURLOPT_CAPATH, (char *)NULL);
  }
  if (profile & PROFILE_HTTP) {
    SETOPT(CURLOPT_NOPROXY, "*"); /* identity endpoints are local; never send them to a proxy */
  } else if (!http->proxy && http->privileged) {
    /* libcurl reads https_proxy/all_proxy with getenv: in a privileged process they were set
     * by a less trusted user (docs/security.md "Privileged processes"). "" = no proxy. */
    SETOPT(CURLOPT_PROXY, "");
  } else if (http->proxy) {
    SETOPT(CURLOPT_PROXY, http->proxy);
    /* An https:// proxy is verified against the same store as the vault. */
    if (http->ca_file) {
      SETOPT(CURLOPT_PROXY_CAINFO, http->ca_file);
      SETOPT(CURLOPT_PROXY_CAPATH, (char *)NULL);
    }
  }
  if (profile & PROFILE_DEBUG) {
    SETOPT(CURLOPT_DEBUGFUNCTION, debug_cb);
    SETOPT(CURLOPT_VERBOSE, 1L);
  }
  sl->profile = profile;
  rc = KV_OK;
out:
  return rc;
}

/* "<prefix><value>" into buf (cap bytes); 0 when it does not fit. */
static int header_line(char *buf, size_t cap, const char *prefix, const char *value)
{
  size_t pl = strlen(prefix), vl = strlen(value);
  if (pl + vl >= cap)
    return 0;
  memcpy(buf, prefix, pl);
  memcpy(buf + pl, value, vl + 1);
  return 1;
}

/* The host of url into buf ("?" when it has none). */
static void url_host(const char *url, char *buf, size_t len)
{
  CURLU *u = curl_url();
  char *host = NULL;
  snprintf(buf, len, "?");
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    snprintf(buf, len, "%s", host);
  curl_free(host);
  curl_url_cleanup(u);
}

/* The CA file the handle verifies with: ca_file, else libcurl's built-in default. */
static const char *ca_in_use(const struct kv_http *http, CURL *h)
{
  char *def = NULL;
  if (http->ca_file)
    return http->ca_file;
  if (curl_easy_getinfo(h, CURLINFO_CAINFO, &def) == CURLE_OK && def)
    return def;
  return "the system store";
}

/* ca_file is set and this process cannot open it: the caller that set ca_file_reported names it,
 * its owner and mode and the uid in its own line (one line at the default level). */
static int ca_unopenable(const struct kv_http *http)
{
  int fd;
  if (!http->ca_file)
    return 0;
  fd = open(http->ca_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd >= 0)
    close(fd);
  return fd < 0;
}

/* One error line for a failure retrying cannot fix, with its cause and the fix
 * (docs/troubleshooting.md, "HTTP"); debug when the caller reports it (ca_file_reported). */
static void log_fail(const struct kv_http *http, CURL *h, CURLcode cc,
                     const struct kv_http_request *req, const char *errbuf)
{
  char host[256];
  const char *detail = errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc);
  url_host(req->url, host, sizeof(host));
  if (cc == CURLE_COULDNT_RESOLVE_PROXY)
    akv_err(AKV_LOGC_HTTP,
            "%s %s: cannot resolve the proxy %s: check the proxy name; not "
            "retried (%s)",
            req->method, req->url,
            http->proxy ? http->proxy
                        : "(from the "
                          "environment)",
            detail);
  else if (cc == CURLE_COULDNT_RESOLVE_HOST)
    akv_err(AKV_LOGC_HTTP,
            "%s %s: cannot resolve %s: check the vault name (the host of "
            "slots[].url, or authority_host for a token) and DNS; not retried (%s)",
            req->method, req->url, host, detail);
  else if (cc == CURLE_SSL_CACERT_BADFILE)
    akv_log(req->ca_file_reported && ca_unopenable(http) ? AKV_LOG_DEBUG : AKV_LOG_ERROR,
            AKV_LOGC_HTTP,
            "%s %s: the CA file %s cannot be used (%s); fix: set ca_file to a "
            "readable PEM file of CA certificates",
            req->method, req->url, ca_in_use(http, h), detail);
  else if (http->ca_file)
    akv_err(AKV_LOGC_HTTP,
            "%s %s: the certificate of %s is not trusted: ca_file %s does not hold "
            "the CA that issued it (%s); fix: set ca_file to that CA's PEM file, or remove "
            "ca_file to use the system store",
            req->method, req->url, host, http->ca_file, detail);
  else
    akv_err(AKV_LOGC_HTTP,
            "%s %s: the certificate of %s is not trusted by %s (%s); fix: set "
            "ca_file to the PEM file of the CA that issued it (a TLS-inspecting proxy's or a "
            "private endpoint's CA)",
            req->method, req->url, host, ca_in_use(http, h), detail);
}

/* Header list without allocations: curl only reads it during the transfer. */
#define MAX_REQ_HEADERS 16

static kv_rc curl_perform(void *ctx, struct kv_http_attempt *a, struct kv_http_response *resp)
{
  struct kv_http *http = ctx;
  const struct kv_http_request *req = a->req;
  struct slot *sl = NULL;
  CURL *h = NULL;
  struct curl_slist hdrs[MAX_REQ_HEADERS + 4];
  size_t n_hdrs = 0;
  char ctype[128], crid[64];
  char auth_stack[8192], *auth = NULL, *auth_heap = NULL;
  size_t auth_len = 0;
  unsigned profile = PROFILE_SET;
  CURLcode cc = CURLE_OK;
  kv_rc rc = KV_E_NOMEM;
  long low_time;
  int is_get = strcmp(req->method, "GET") == 0;

  if (req->n_headers > MAX_REQ_HEADERS) {
    akv_err(AKV_LOGC_HTTP, "%s %s: %zu extra headers, at most %d", req->method, req->url,
            req->n_headers, MAX_REQ_HEADERS);
    return KV_E_INVALID;
  }
  sl = pool_get(http);
  if (!sl)
    goto out;
  h = sl->h;
  if (req->allow_http)
    profile |= PROFILE_HTTP;
  if (akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_HTTP))
    profile |= PROFILE_DEBUG;
  if ((rc = slot_configure(http, sl, profile)) != KV_OK)
    goto out;
  sl->errbuf[0] = '\0';
  sl->x.resp = resp;
  sl->x.too_big = 0;
  SETOPT(CURLOPT_URL, req->url);
  if (sl->last.timeout_ms != a->timeout_ms) {
    SETOPT(CURLOPT_TIMEOUT_MS, a->timeout_ms);
    sl->last.timeout_ms = a->timeout_ms;
  }
  if (sl->last.connect_timeout_ms != a->connect_timeout_ms) {
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, a->connect_timeout_ms);
    sl->last.connect_timeout_ms = a->connect_timeout_ms;
  }
  /* A server that drips bytes (or stalls mid-body) is cut off long before the request timeout. */
  low_time = a->timeout_ms / 3000;
  if (low_time < 5)
    low_time = 5;
  if (sl->last.low_time != low_time) {
    SETOPT(CURLOPT_LOW_SPEED_TIME, low_time);
    sl->last.low_time = low_time;
  }
  if (sl->last.max_bytes != a->max_response_bytes) {
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)a->max_response_bytes);
    sl->last.max_bytes = a->max_response_bytes;
  }
  /* The handle keeps the previous request's method and body: the body is set every time, the
   * method when it changes. */
  if (strcmp(req->method, "POST") == 0) {
    if (sl->last.method != METHOD_POST) {
      SETOPT(CURLOPT_ACCEPT_ENCODING, (char *)NULL);
      SETOPT(CURLOPT_CUSTOMREQUEST, (char *)NULL);
      SETOPT(CURLOPT_POST, 1L);
      sl->last.method = METHOD_POST;
    }
    SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
  } else if (is_get || (!req->body && strcmp(req->method, "DELETE") == 0)) {
    sl->last.method = 0; /* cheap enough and rare: always set in full */
    /* Compression only where a response can be large (listings, GETs); sign/crypto replies are
     * a few hundred bytes and content negotiation would only cost CPU. */
    SETOPT(CURLOPT_ACCEPT_ENCODING, is_get ? "" : NULL);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    SETOPT(CURLOPT_POSTFIELDS, (char *)NULL);
    SETOPT(CURLOPT_HTTPGET, 1L);
    SETOPT(CURLOPT_CUSTOMREQUEST, is_get ? NULL : req->method);
  } else {
    sl->last.method = 0;
    SETOPT(CURLOPT_ACCEPT_ENCODING, (char *)NULL);
    SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
    SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
  }
  rc = KV_E_NOMEM;
  hdrs[n_hdrs++].data = "Accept: application/json";
  /* No "Expect: 100-continue" round trip: libcurl adds it only for bodies of 1 KiB and more
   * (1 MiB from 7.83), and a header, even one that only removes another, costs about a
   * thousand instructions of libcurl's header assembly on every request. */
  if (req->body && req->body_len >= 1024)
    hdrs[n_hdrs++].data = "Expect:";
  if (req->body) {
    if (!req->content_type) {
      hdrs[n_hdrs++].data = "Content-Type: application/json";
    } else if (header_line(ctype, sizeof(ctype), "Content-Type: ", req->content_type)) {
      hdrs[n_hdrs++].data = ctype;
    } else {
      rc = KV_E_INVALID;
      akv_err(AKV_LOGC_HTTP, "%s %s: content type too long", req->method, req->url);
      goto out;
    }
  }
  /* A request id is 36 characters: it always fits. */
  header_line(crid, sizeof(crid), "x-ms-client-request-id: ", a->client_request_id);
  hdrs[n_hdrs++].data = crid;
  for (size_t i = 0; i < req->n_headers; i++)
    hdrs[n_hdrs++].data = (char *)req->headers[i];
  if (req->bearer) {
    /* On the stack for the usual token size (1.5-4 KB); wiped below either way. */
    size_t n = strlen(req->bearer) + sizeof("Authorization: Bearer ");
    if (n <= sizeof(auth_stack)) {
      auth = auth_stack;
    } else if (!(auth = auth_heap = malloc(n))) {
      goto out;
    }
    header_line(auth, n, "Authorization: Bearer ", req->bearer);
    auth_len = n - 1;
    hdrs[n_hdrs++].data = auth;
  }
  for (size_t i = 0; i < n_hdrs; i++)
    hdrs[i].next = i + 1 < n_hdrs ? &hdrs[i + 1] : NULL;
  SETOPT(CURLOPT_HTTPHEADER, hdrs);

  cc = curl_easy_perform(h);
  if (cc != CURLE_OK) {
    rc = map_curl_error(cc, a, &sl->x, h);
    if (rc == KV_E_PROTOCOL)
      akv_err(AKV_LOGC_HTTP, "%s %s: response larger than %zu bytes, transfer aborted", req->method,
              req->url, a->max_response_bytes);
    else if (a->fail != KV_FAIL_NONE)
      log_fail(http, h, cc, req, sl->errbuf);
    else
      akv_warn(AKV_LOGC_HTTP, "%s %s: %s (%s)", req->method, req->url, curl_easy_strerror(cc),
               sl->errbuf[0] ? sl->errbuf : "no detail");
    goto out;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
  rc = response_headers(h, req->want_request_id, resp);
out:
  if (auth)
    OPENSSL_cleanse(auth, auth_len);
  free(auth_heap);
  if (sl) {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    sl->x.resp = NULL;
    if (rc != KV_OK && cc == CURLE_OK)
      sl->profile = 0; /* an option failed: start from a clean handle next time */
    pool_put(http, sl);
  }
  return rc;
}
#undef SETOPT

/* ---- lifecycle ---------------------------------------------------------------------------------
 */

void kv_http_set_transport(struct kv_http *http, const struct kv_http_transport *t)
{
  if (t) {
    http->transport = *t;
  } else {
    http->transport.perform = curl_perform;
    http->transport.now_ms = real_now_ms;
    http->transport.sleep_ms = real_sleep_ms;
    http->transport.ctx = http;
  }
}

const char *kv_http_fail_str(int fail)
{
  switch (fail) {
  case KV_FAIL_DNS:
    return "the host name does not resolve";
  case KV_FAIL_TLS_TRUST:
    return "the server's certificate is not trusted";
  default:
    return NULL;
  }
}

struct kv_pace_set *kv_http_pace_set(struct kv_http *http)
{
  return http->paces;
}

const struct kv_http_opts *kv_http_opts_peek(const struct kv_http *http)
{
  return &http->opts;
}

int kv_http_host_allowed(const struct kv_http *http, const char *host)
{
  for (size_t i = 0; host && i < http->opts.n_allowed_hosts; i++)
    if (strcasecmp(http->allowed_hosts[i], host) == 0)
      return 1;
  return 0;
}

kv_rc kv_http_new(const struct kv_http_opts *opts, struct kv_http **out)
{
  struct kv_http *http = NULL;
  kv_rc rc = KV_E_NOMEM;
  size_t i;
  if (!opts || !out)
    return KV_E_INVALID;
  pthread_once(&curl_once, curl_global);
  if (curl_init_rc != CURLE_OK) {
    akv_err(AKV_LOGC_HTTP, "curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
    return KV_E_NETWORK;
  }
  http = calloc(1, sizeof(*http));
  if (!http)
    return KV_E_NOMEM;
  http->opts = *opts;
  if (!http->opts.pool_size)
    http->opts.pool_size = 16;
  for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init(&http->share_locks[i], NULL);
  pthread_mutex_init(&http->pool_lock, NULL);
  if ((opts->ca_file && !(http->ca_file = strdup(opts->ca_file))) ||
      (opts->proxy && !(http->proxy = strdup(opts->proxy))))
    goto out;
  http->opts.ca_file = http->ca_file;
  http->opts.proxy = http->proxy;
  http->privileged = getauxval(AT_SECURE) != 0;
  http->allowed_hosts = calloc(opts->n_allowed_hosts + 1, sizeof(char *));
  if (!http->allowed_hosts)
    goto out;
  for (i = 0; i < opts->n_allowed_hosts; i++)
    if (!(http->allowed_hosts[i] = strdup(opts->allowed_hosts[i])))
      goto out;
  http->opts.allowed_hosts = (const char *const *)http->allowed_hosts;
  http->pool = calloc(http->opts.pool_size, sizeof(*http->pool));
  if (!http->pool)
    goto out;
  http->share = curl_share_init();
  if (!http->share)
    goto out;
  rc = KV_E_NETWORK;
  if (curl_share_setopt(http->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
      curl_share_setopt(http->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
      curl_share_setopt(http->share, CURLSHOPT_USERDATA, http) != CURLSHE_OK ||
      curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
      curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
    akv_err(AKV_LOGC_HTTP, "libcurl share handle setup failed");
    goto out;
  }
  if (!(http->paces = kv_pace_set_new())) {
    rc = KV_E_NOMEM;
    goto out;
  }
  kv_http_set_transport(http, NULL);
  kv_pace_setup(http->paces, opts->pace_cfg);
  *out = http;
  http = NULL;
  rc = KV_OK;
out:
  kv_http_free(http);
  return rc;
}

void kv_http_free(struct kv_http *http)
{
  if (!http)
    return;
  kv_pace_set_free(http->paces);
  for (size_t i = 0; i < http->n_pool; i++)
    slot_free(http->pool[i]);
  free(http->pool);
  if (http->share)
    curl_share_cleanup(http->share);
  for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_destroy(&http->share_locks[i]);
  pthread_mutex_destroy(&http->pool_lock);
  for (size_t i = 0; http->allowed_hosts && i < http->opts.n_allowed_hosts; i++)
    free(http->allowed_hosts[i]);
  free(http->allowed_hosts);
  free(http->ca_file);
  free(http->proxy);
  free(http);
}
