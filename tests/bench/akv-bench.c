/* SPDX-License-Identifier: Apache-2.0 */
/*
 * akv-bench - the module against the practical limit and against the official SDK, in one run.
 *
 * Against the Key Vault emulator (started here, or an already running one given by its ready file)
 * it measures, for each key (RSA-2048, EC P-256) and each thread count:
 *   raw     the same REST sign requests made directly with libcurl: same TLS trust, one token
 * fetched once, keep-alive, one easy handle per thread (the practical limit on this machine); sdk
 * @azure/keyvault-keys CryptographyClient.sign from Node at the same concurrency
 *           (tests/bench/sdk-sign.mjs, with the node tests/node/find-node.sh picks; skipped
 *           with a note when there is no Node >= 20 or its packages are absent);
 *   module  the PKCS#11 module through dlopen: one session per thread, C_SignInit + C_Sign.
 * Plus cached lookups (C_FindObjects + C_GetAttributeValue, which must cost 0 vault requests) and
 * cold start with N keys in a vault (C_Initialize to first signature in a fresh process) against a
 * raw listing of the same vault.
 *
 * Columns: ops/s, p50/p99 latency, client CPU per op (getrusage of this process for raw/module,
 * process.cpuUsage for Node), vault HTTP requests per op (emulator stats, reset before each
 * measured window and read after it). Every signature sample is verified with OpenSSL against the
 * public key from GET key; the checks at the end are about correctness, never about speed.
 */
#include <p11-kit/pkcs11.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AKV_BENCH_SRCDIR
#define AKV_BENCH_SRCDIR "."
#endif

extern char **environ;

#define API_VERSION "7.6"
#define MAX_THREADS 64
#define MAX_THREAD_COUNTS 8
#define MAX_KEYS 5000 /* the emulator's per-vault cap */
#define MAX_PROCS 200

/* --only: which parts run (default all) */
#define SEL_RAW 0x01u
#define SEL_SDK 0x02u
#define SEL_MODULE 0x04u
#define SEL_LOOKUP 0x08u
#define SEL_COLD 0x10u
#define SEL_PROCS 0x20u
#define SEL_ALL 0x3fu
#define RESP_MAX (4 * 1024 * 1024) /* cap on any HTTP response body */
#define LINE_MAX_BYTES (1024 * 1024)
#define LAT_MAX_PER_THREAD (1u << 21)
#define NSAMPLES 4 /* per thread: the first three signatures and the latest one */
#define SIG_MAX 512
#define SEED_THREADS 16 /* concurrency of cold-vault seeding and of the raw GET-all listing */
#define COLD_REPS 5     /* cold start runs of raw and module each (medians reported) */
#define HTTP_TIMEOUT_MS 30000L
#define MAX_CONSECUTIVE_ERRORS 200
#define SIGN_KEY_RSA "bench-rsa"
#define SIGN_KEY_EC "bench-ec"
#define VAULT_SIGN "bench"
#define VAULT_COLD "cold"

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  if (!s) {
    fprintf(stderr, "akv-bench: out of memory\n");
    exit(2);
  }
  return s;
}

static char *xstrdup(const char *s)
{
  char *d = strdup(s);
  if (!d) {
    fprintf(stderr, "akv-bench: out of memory\n");
    exit(2);
  }
  return d;
}

static void *xcalloc(size_t n, size_t sz)
{
  void *p = calloc(n, sz);
  if (!p) {
    fprintf(stderr, "akv-bench: out of memory\n");
    exit(2);
  }
  return p;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Frees a string that held a secret (token, Authorization header) after wiping it. */
static void free_secret(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
  char *end = NULL;
  unsigned long v;
  if (!s || !*s || *s == '-')
    return -1;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static const char *rv_name(CK_RV rv)
{
  switch (rv) {
  case CKR_OK:
    return "CKR_OK";
  case CKR_HOST_MEMORY:
    return "CKR_HOST_MEMORY";
  case CKR_GENERAL_ERROR:
    return "CKR_GENERAL_ERROR";
  case CKR_FUNCTION_FAILED:
    return "CKR_FUNCTION_FAILED";
  case CKR_ARGUMENTS_BAD:
    return "CKR_ARGUMENTS_BAD";
  case CKR_ATTRIBUTE_TYPE_INVALID:
    return "CKR_ATTRIBUTE_TYPE_INVALID";
  case CKR_DEVICE_ERROR:
    return "CKR_DEVICE_ERROR";
  case CKR_FUNCTION_NOT_SUPPORTED:
    return "CKR_FUNCTION_NOT_SUPPORTED";
  case CKR_KEY_HANDLE_INVALID:
    return "CKR_KEY_HANDLE_INVALID";
  case CKR_KEY_TYPE_INCONSISTENT:
    return "CKR_KEY_TYPE_INCONSISTENT";
  case CKR_KEY_FUNCTION_NOT_PERMITTED:
    return "CKR_KEY_FUNCTION_NOT_PERMITTED";
  case CKR_MECHANISM_INVALID:
    return "CKR_MECHANISM_INVALID";
  case CKR_MECHANISM_PARAM_INVALID:
    return "CKR_MECHANISM_PARAM_INVALID";
  case CKR_OBJECT_HANDLE_INVALID:
    return "CKR_OBJECT_HANDLE_INVALID";
  case CKR_OPERATION_ACTIVE:
    return "CKR_OPERATION_ACTIVE";
  case CKR_OPERATION_NOT_INITIALIZED:
    return "CKR_OPERATION_NOT_INITIALIZED";
  case CKR_SESSION_HANDLE_INVALID:
    return "CKR_SESSION_HANDLE_INVALID";
  case CKR_SLOT_ID_INVALID:
    return "CKR_SLOT_ID_INVALID";
  case CKR_TOKEN_NOT_PRESENT:
    return "CKR_TOKEN_NOT_PRESENT";
  case CKR_BUFFER_TOO_SMALL:
    return "CKR_BUFFER_TOO_SMALL";
  case CKR_DATA_LEN_RANGE:
    return "CKR_DATA_LEN_RANGE";
  case CKR_CRYPTOKI_NOT_INITIALIZED:
    return "CKR_CRYPTOKI_NOT_INITIALIZED";
  case CKR_CRYPTOKI_ALREADY_INITIALIZED:
    return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
  case CKR_TEMPLATE_INCONSISTENT:
    return "CKR_TEMPLATE_INCONSISTENT";
  default:
    return "CKR_(other)";
  }
}

/* base64url without padding; returns the length written or 0 when `cap` is too small. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
  size_t n;
  if (len > INT_MAX / 2 || 4 * ((len + 2) / 3) + 1 > cap)
    return 0;
  n = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
  while (n > 0 && out[n - 1] == '=')
    n--;
  out[n] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (out[i] == '+')
      out[i] = '-';
    else if (out[i] == '/')
      out[i] = '_';
  }
  return n;
}

/* base64url (padding optional) into out[cap]; 0 or -1 on bad input or when it does not fit. */
static int b64url_decode(const char *in, unsigned char *out, size_t cap, size_t *outlen)
{
  char tmp[2048];
  size_t len = strlen(in), pad, n;
  int dec;
  unsigned char raw[1536];
  if (len == 0 || len % 4 == 1 || len + 3 >= sizeof(tmp))
    return -1;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (c == '+' || c == '/')
      return -1;
    tmp[i] = c;
  }
  n = len;
  while (n > 0 && tmp[n - 1] == '=')
    n--;
  pad = (4 - n % 4) % 4;
  for (size_t i = 0; i < pad; i++)
    tmp[n + i] = '=';
  tmp[n + pad] = '\0';
  dec = EVP_DecodeBlock(raw, (const unsigned char *)tmp, (int)(n + pad));
  if (dec < 0 || (size_t)dec < pad || (size_t)dec - pad > cap)
    return -1;
  *outlen = (size_t)dec - pad;
  memcpy(out, raw, *outlen);
  return 0;
}

/* ---- HTTP (libcurl, one easy handle per user) ------------------------------------------- */

struct http {
  CURL *curl;
  struct curl_slist *hdrs;
  char *buf;
  size_t len, cap;
  bool overflow;
  char errbuf[CURL_ERROR_SIZE];
};

static size_t http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct http *h = userdata;
  size_t add = size * nmemb;
  if (add > RESP_MAX - h->len) {
    h->overflow = true;
    return 0;
  }
  if (h->len + add + 1 > h->cap) {
    size_t ncap = h->cap ? h->cap : 4096;
    char *nb;
    while (ncap < h->len + add + 1)
      ncap *= 2;
    if (ncap > RESP_MAX + 1)
      ncap = RESP_MAX + 1;
    nb = realloc(h->buf, ncap);
    if (!nb)
      return 0;
    h->buf = nb;
    h->cap = ncap;
  }
  memcpy(h->buf + h->len, ptr, add);
  h->len += add;
  h->buf[h->len] = '\0';
  return add;
}

static void http_close(struct http *h)
{
  if (h->curl)
    curl_easy_cleanup(h->curl);
  for (struct curl_slist *s = h->hdrs; s; s = s->next)
    OPENSSL_cleanse(s->data, strlen(s->data)); /* the Authorization header */
  curl_slist_free_all(h->hdrs);
  free(h->buf);
  memset(h, 0, sizeof(*h));
}

/* A handle that trusts only `ca_file`, keeps its connection alive and sends `auth_header`
 * ("Authorization: Bearer ...", may be NULL) and `content_type` on every request. */
static int http_open(struct http *h, const char *ca_file, const char *auth_header,
                     const char *content_type)
{
  struct curl_slist *l;
  memset(h, 0, sizeof(*h));
  h->curl = curl_easy_init();
  if (!h->curl)
    return -1;
  l = curl_slist_append(NULL, "Accept: application/json");
  if (l && content_type) {
    char line[128];
    snprintf(line, sizeof(line), "Content-Type: %s", content_type);
    l = curl_slist_append(l, line);
  }
  if (l && auth_header)
    l = curl_slist_append(l, auth_header);
  if (!l) {
    http_close(h);
    return -1;
  }
  h->hdrs = l;
  if (curl_easy_setopt(h->curl, CURLOPT_CAINFO, ca_file) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, HTTP_TIMEOUT_MS) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "akv-bench") != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->hdrs) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->errbuf) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, http_write_cb) != CURLE_OK ||
      curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h) != CURLE_OK) {
    http_close(h);
    return -1;
  }
  return 0;
}

/* One request; returns the HTTP status, or -1 with h->errbuf set. A NULL body on POST sends an
 * empty body. The response body is in h->buf (NUL-terminated, h->len bytes). */
static long http_do(struct http *h, const char *method, const char *url, const char *body)
{
  long status = 0;
  CURLcode rc;
  h->len = 0;
  h->overflow = false;
  h->errbuf[0] = '\0';
  if (h->buf)
    h->buf[0] = '\0';
  curl_easy_setopt(h->curl, CURLOPT_URL, url);
  if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
  }
  rc = curl_easy_perform(h->curl);
  if (rc != CURLE_OK) {
    if (h->overflow)
      snprintf(h->errbuf, sizeof(h->errbuf), "response larger than %d bytes", RESP_MAX);
    else if (!h->errbuf[0])
      snprintf(h->errbuf, sizeof(h->errbuf), "%s", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

/* Short description of a failed request for error messages (status and the start of the body). */
static void http_describe(const struct http *h, long status, char *err, size_t errlen,
                          const char *what)
{
  if (status < 0)
    seterr(err, errlen, "%s: %s", what, h->errbuf);
  else
    seterr(err, errlen, "%s: HTTP %ld %.200s", what, status, h->buf ? h->buf : "");
}

/* ---- benchmark state -------------------------------------------------------------------- */

struct key {
  const char *name;
  bool rsa;
  char *kid;     /* versioned key id from GET key */
  EVP_PKEY *pub; /* public key from the JWK */
  unsigned char modulus[512];
  size_t modulus_len;
};

struct module {
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  CK_SLOT_ID slot;
  bool initialized;
  bool init_failed; /* do not retry: the first error stands */
  char err[512];
};

struct opts {
  const char *emulator, *ready_file, *module, *json_out, *sdk_dir, *node;
  unsigned threads[MAX_THREAD_COUNTS];
  size_t nthreads;
  double duration;
  unsigned long keys;
  unsigned long procs;
  unsigned long max_time;
  unsigned only; /* SEL_* */
  bool smoke;
};

struct bench {
  struct opts o;
  char *tmpdir;
  pid_t emu_pid;
  char *ready_path;
  char *ca_file, *authority_host, *tenant_id, *client_id, *client_secret;
  char *stats_url, *control_url;
  char *vault_url, *cold_url;
  char *auth_header; /* "Authorization: Bearer <token>", wiped at the end */
  struct http stats_http;
  struct key rsa, ec;
  struct module mod;
  bool mod_loaded;
  char *self_exe;
  char *node_found; /* what tests/node/find-node.sh printed, when --node was not given */
  int ncpu;
};

/* ---- watchdog: the whole run is bounded even if a component hangs ------------------------ */

static pid_t watchdog_emu_pid;
static unsigned long watchdog_secs;

static void *watchdog_main(void *arg)
{
  (void)arg;
  sleep_ms((long)watchdog_secs * 1000L);
  fprintf(stderr, "akv-bench: FATAL: the run exceeded --max-time %lu s; stopping\n", watchdog_secs);
  if (watchdog_emu_pid > 0)
    kill(watchdog_emu_pid, SIGKILL);
  _exit(3);
  return NULL;
}

/* ---- processes ------------------------------------------------------------------------------ */

/* waitpid with a bound; kills the child when it does not exit in time. */
static int proc_wait(pid_t pid, long timeout_ms, int *status)
{
  uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
      return 0;
    if (r < 0 && errno != EINTR)
      return -1;
    if (now_ns() >= end)
      break;
    sleep_ms(20);
  }
  kill(pid, SIGKILL);
  waitpid(pid, status, 0);
  return -1;
}

/* A copy of environ with `n` NAME=value overrides (replacing entries of the same name). */
static char **env_with(const char *const *names, const char *const *values, size_t n)
{
  size_t count = 0, k = 0;
  char **env;
  for (char **e = environ; *e; e++)
    count++;
  env = xcalloc(count + n + 1, sizeof(char *));
  for (char **e = environ; *e; e++) {
    bool skip = false;
    for (size_t i = 0; i < n; i++) {
      size_t nl = strlen(names[i]);
      if (strncmp(*e, names[i], nl) == 0 && (*e)[nl] == '=')
        skip = true;
    }
    if (!skip)
      env[k++] = xstrdup(*e);
  }
  for (size_t i = 0; i < n; i++)
    env[k++] = xasprintf("%s=%s", names[i], values[i]);
  return env;
}

static void env_free(char **env)
{
  for (char **e = env; e && *e; e++)
    free_secret(*e); /* the environment carries the client secret */
  free(env);
}

struct linebuf {
  char *buf;
  size_t len;
};

/* Next line from fd within timeout_ms: 1 and *line (malloc'd), 0 timeout, -1 EOF/error/too long. */
static int read_line(int fd, struct linebuf *lb, long timeout_ms, char **line)
{
  uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
  if (!lb->buf)
    lb->buf = xcalloc(1, LINE_MAX_BYTES);
  for (;;) {
    char *nl = memchr(lb->buf, '\n', lb->len);
    struct pollfd pfd = {fd, POLLIN, 0};
    uint64_t now;
    ssize_t n;
    int pr;
    if (nl) {
      size_t l = (size_t)(nl - lb->buf);
      *line = xcalloc(1, l + 1);
      memcpy(*line, lb->buf, l);
      memmove(lb->buf, nl + 1, lb->len - l - 1);
      lb->len -= l + 1;
      return 1;
    }
    if (lb->len == LINE_MAX_BYTES)
      return -1;
    now = now_ns();
    if (now >= end)
      return 0;
    pr = poll(&pfd, 1, (int)((end - now) / 1000000u) + 1);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr < 0)
      return -1;
    if (pr == 0)
      continue;
    n = read(fd, lb->buf + lb->len, LINE_MAX_BYTES - lb->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    lb->len += (size_t)n;
  }
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path); /* best effort: a leftover file in /tmp is not worth failing the run */
  return 0;
}

/* ---- emulator ----------------------------------------------------------------------------- */

static const char *json_str(const cJSON *obj, const char *name)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(it) && it->valuestring ? it->valuestring : NULL;
}

static char *read_file_capped(const char *path, size_t cap)
{
  FILE *f = fopen(path, "re");
  char *buf;
  size_t n;
  if (!f)
    return NULL;
  buf = xcalloc(1, cap + 1);
  n = fread(buf, 1, cap + 1, f);
  fclose(f);
  if (n > cap) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
}

/* Reads the ready file; 0 when complete and valid, -1 (not yet / invalid) with err. */
static int ready_parse(struct bench *b, char *err, size_t errlen)
{
  char *text = read_file_capped(b->ready_path, 1024 * 1024);
  cJSON *root = NULL, *vaults;
  const char *need[] = {"ca_file",   "authority_host", "tenant_id",
                        "client_id", "client_secret",  "stats_url"};
  int rc = -1;
  const cJSON *v;
  if (!text) {
    seterr(err, errlen, "cannot read %s", b->ready_path);
    goto out;
  }
  root = cJSON_Parse(text);
  if (!root) {
    seterr(err, errlen, "%s is not JSON (yet)", b->ready_path);
    goto out;
  }
  for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
    if (!json_str(root, need[i])) {
      seterr(err, errlen, "ready file lacks \"%s\"", need[i]);
      goto out;
    }
  }
  vaults = cJSON_GetObjectItemCaseSensitive(root, "vaults");
  if (!cJSON_IsArray(vaults) || cJSON_GetArraySize(vaults) < 1) {
    seterr(err, errlen, "ready file has no vaults");
    goto out;
  }
  b->ca_file = xstrdup(json_str(root, "ca_file"));
  b->authority_host = xstrdup(json_str(root, "authority_host"));
  b->tenant_id = xstrdup(json_str(root, "tenant_id"));
  b->client_id = xstrdup(json_str(root, "client_id"));
  b->client_secret = xstrdup(json_str(root, "client_secret"));
  b->stats_url = xstrdup(json_str(root, "stats_url"));
  if (json_str(root, "control_url"))
    b->control_url = xstrdup(json_str(root, "control_url"));
  /* The sign vault holds only the two benchmark keys; cold start gets its own vault so that the
   * signing phases' listing stays small. With one vault both share it. */
  cJSON_ArrayForEach(v, vaults)
  {
    const char *name = json_str(v, "name"), *url = json_str(v, "url"), *kind = json_str(v, "kind");
    if (!name || !url || (kind && strcmp(kind, "vault") != 0))
      continue;
    if (!b->vault_url && strcmp(name, VAULT_COLD) != 0)
      b->vault_url = xstrdup(url);
    else if (!b->cold_url && strcmp(name, VAULT_COLD) == 0)
      b->cold_url = xstrdup(url);
  }
  if (!b->vault_url && b->cold_url)
    b->vault_url = xstrdup(b->cold_url);
  if (!b->vault_url) {
    seterr(err, errlen, "ready file lists no vault of kind \"vault\"");
    goto out;
  }
  if (!b->cold_url)
    b->cold_url = xstrdup(b->vault_url);
  for (size_t l = strlen(b->authority_host); l > 0 && b->authority_host[l - 1] == '/'; l--)
    b->authority_host[l - 1] = '\0';
  rc = 0;
out:
  cJSON_Delete(root);
  if (text) {
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  return rc;
}

static int emulator_start(struct bench *b)
{
  posix_spawn_file_actions_t fa;
  char *log = xasprintf("%s/emulator.log", b->tmpdir);
  char *state = xasprintf("%s/emu-state", b->tmpdir);
  char *argv[] = {(char *)b->o.emulator,
                  "--ready-file",
                  b->ready_path,
                  "--port-base",
                  "0",
                  "--vault",
                  VAULT_SIGN,
                  "--vault",
                  VAULT_COLD,
                  "--state",
                  state,
                  NULL};
  char err[512] = "";
  uint64_t end;
  int rc = -1, st;

  if (mkdir(state, 0700) != 0) {
    fprintf(stderr, "akv-bench: mkdir %s: %s\n", state, strerror(errno));
    goto out;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  st = posix_spawn(&b->emu_pid, b->o.emulator, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (st != 0) {
    fprintf(stderr, "akv-bench: cannot start %s: %s\n", b->o.emulator, strerror(st));
    b->emu_pid = 0;
    goto out;
  }
  watchdog_emu_pid = b->emu_pid;
  end = now_ns() + 30ull * 1000000000u;
  while (now_ns() < end) {
    if (waitpid(b->emu_pid, &st, WNOHANG) == b->emu_pid) {
      char *text = read_file_capped(log, 64 * 1024);
      fprintf(stderr, "akv-bench: the emulator exited (status %d) before it was ready:\n%s\n", st,
              text ? text : "(no log)");
      free(text);
      b->emu_pid = 0;
      goto out;
    }
    if (access(b->ready_path, R_OK) == 0 && ready_parse(b, err, sizeof(err)) == 0) {
      rc = 0;
      goto out;
    }
    sleep_ms(50);
  }
  fprintf(stderr, "akv-bench: the emulator was not ready within 30 s (%s); log: %s\n", err, log);
out:
  free(log);
  free(state);
  return rc;
}

static void emulator_stop(struct bench *b)
{
  int st;
  if (b->emu_pid <= 0)
    return;
  kill(b->emu_pid, SIGTERM);
  if (proc_wait(b->emu_pid, 10000, &st) != 0)
    fprintf(stderr, "akv-bench: the emulator did not stop on SIGTERM within 10 s (killed)\n");
  b->emu_pid = 0;
  watchdog_emu_pid = 0;
}

/* ---- emulator stats ------------------------------------------------------------------------- */

struct stats {
  double total, sign, token, list, get;
  cJSON *by_op; /* owned copy of by_operation */
};

static void stats_clear(struct stats *st)
{
  cJSON_Delete(st->by_op);
  memset(st, 0, sizeof(*st));
}

static double by_op_num(const cJSON *by_op, const char *name)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(by_op, name);
  return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

static int stats_read(struct bench *b, struct stats *st, char *err, size_t errlen)
{
  long status = http_do(&b->stats_http, "GET", b->stats_url, NULL);
  cJSON *root;
  const cJSON *total, *by;
  memset(st, 0, sizeof(*st));
  if (status != 200) {
    http_describe(&b->stats_http, status, err, errlen, "GET stats_url");
    return -1;
  }
  root = cJSON_Parse(b->stats_http.buf);
  total = cJSON_GetObjectItemCaseSensitive(root, "requests_total");
  by = cJSON_GetObjectItemCaseSensitive(root, "by_operation");
  if (!cJSON_IsNumber(total) || !cJSON_IsObject(by)) {
    seterr(err, errlen, "stats: no requests_total/by_operation in %.200s", b->stats_http.buf);
    cJSON_Delete(root);
    return -1;
  }
  st->total = total->valuedouble;
  st->by_op = cJSON_Duplicate(by, 1);
  st->sign = by_op_num(by, "keys.sign");
  st->token = by_op_num(by, "token");
  st->list = by_op_num(by, "keys.list");
  st->get = by_op_num(by, "keys.get");
  cJSON_Delete(root);
  return 0;
}

static int stats_reset(struct bench *b, char *err, size_t errlen)
{
  char *url;
  long status;
  if (!b->control_url) {
    seterr(err, errlen, "the ready file has no control_url to reset the stats");
    return -1;
  }
  url = xasprintf("%s/stats/reset", b->control_url);
  status = http_do(&b->stats_http, "POST", url, NULL);
  free(url);
  if (status < 200 || status > 299) {
    http_describe(&b->stats_http, status, err, errlen, "POST control_url/stats/reset");
    return -1;
  }
  return 0;
}

/* ---- token, keys, verification -------------------------------------------------------------- */

/* One token from the Entra ID endpoint (client credentials), kept as the Authorization header. */
static int token_fetch(struct bench *b, char *err, size_t errlen)
{
  struct http h;
  char *url = NULL, *body = NULL, *cid = NULL, *sec = NULL;
  cJSON *root = NULL;
  const char *tok;
  long status;
  int rc = -1;
  if (http_open(&h, b->ca_file, NULL, "application/x-www-form-urlencoded") != 0) {
    seterr(err, errlen, "curl init failed");
    return -1;
  }
  url = xasprintf("%s/%s/oauth2/v2.0/token", b->authority_host, b->tenant_id);
  cid = curl_easy_escape(h.curl, b->client_id, 0);
  sec = curl_easy_escape(h.curl, b->client_secret, 0);
  if (!cid || !sec) {
    seterr(err, errlen, "out of memory");
    goto out;
  }
  body = xasprintf("grant_type=client_credentials&client_id=%s&client_secret=%s"
                   "&scope=https%%3A%%2F%%2Fvault.azure.net%%2F.default",
                   cid, sec);
  status = http_do(&h, "POST", url, body);
  if (status != 200) {
    http_describe(&h, status, err, errlen, "token request");
    goto out;
  }
  root = cJSON_Parse(h.buf);
  tok = json_str(root, "access_token");
  if (!tok || !*tok) {
    seterr(err, errlen, "token response without access_token");
    goto out;
  }
  b->auth_header = xasprintf("Authorization: Bearer %s", tok);
  rc = 0;
out:
  if (root) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    if (cJSON_IsString(t) && t->valuestring)
      OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
  }
  if (h.buf)
    OPENSSL_cleanse(h.buf, h.len);
  cJSON_Delete(root);
  free_secret(body);
  if (sec) {
    OPENSSL_cleanse(sec, strlen(sec));
    curl_free(sec);
  }
  curl_free(cid);
  free(url);
  http_close(&h);
  return rc;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  EVP_PKEY *pkey = NULL;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    pkey = NULL;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey;
}

/* Public key and kid from a GET key response body. */
static int key_from_json(struct key *k, const char *body, char *err, size_t errlen)
{
  cJSON *root = cJSON_Parse(body);
  const cJSON *jwk = cJSON_GetObjectItemCaseSensitive(root, "key");
  const char *kid = json_str(jwk, "kid"), *kty = json_str(jwk, "kty");
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  BIGNUM *n = NULL, *e = NULL;
  unsigned char a[600], c[600], pt[1 + 2 * 66];
  size_t al, cl;
  int rc = -1;
  if (!kid || !kty || !bld) {
    seterr(err, errlen, "GET key %s: no key.kid/key.kty in the response", k->name);
    goto out;
  }
  if (k->rsa) {
    const char *ns = json_str(jwk, "n"), *es = json_str(jwk, "e");
    if (!ns || !es || b64url_decode(ns, a, sizeof(a), &al) != 0 ||
        b64url_decode(es, c, sizeof(c), &cl) != 0 || al > sizeof(k->modulus)) {
      seterr(err, errlen, "GET key %s: bad RSA n/e", k->name);
      goto out;
    }
    n = BN_bin2bn(a, (int)al, NULL);
    e = BN_bin2bn(c, (int)cl, NULL);
    if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
      goto out;
    /* the modulus without leading zero bytes, as CKA_MODULUS carries it */
    k->modulus_len = (size_t)BN_bn2bin(n, k->modulus);
    k->pub = pkey_from_params("RSA", bld);
  } else {
    const char *xs = json_str(jwk, "x"), *ys = json_str(jwk, "y"), *crv = json_str(jwk, "crv");
    if (!xs || !ys || !crv || strcmp(crv, "P-256") != 0 ||
        b64url_decode(xs, a, sizeof(a), &al) != 0 || b64url_decode(ys, c, sizeof(c), &cl) != 0 ||
        al != 32 || cl != 32) {
      seterr(err, errlen, "GET key %s: bad EC P-256 x/y/crv", k->name);
      goto out;
    }
    pt[0] = 0x04;
    memcpy(pt + 1, a, 32);
    memcpy(pt + 33, c, 32);
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 65))
      goto out;
    k->pub = pkey_from_params("EC", bld);
  }
  if (!k->pub) {
    seterr(err, errlen, "GET key %s: OpenSSL rejected the public key", k->name);
    goto out;
  }
  free(k->kid);
  k->kid = xstrdup(kid);
  rc = 0;
out:
  if (rc != 0 && !err[0])
    seterr(err, errlen, "GET key %s: out of memory", k->name);
  BN_free(n);
  BN_free(e);
  OSSL_PARAM_BLD_free(bld);
  cJSON_Delete(root);
  return rc;
}

/* Creates the key (a new version when it exists) and reads its public part back. */
static int key_seed(struct bench *b, struct key *k, char *err, size_t errlen)
{
  struct http h;
  char *url = NULL;
  const char *body = k->rsa
                         ? "{\"kty\":\"RSA\",\"key_size\":2048,\"key_ops\":[\"sign\",\"verify\"]}"
                         : "{\"kty\":\"EC\",\"crv\":\"P-256\",\"key_ops\":[\"sign\",\"verify\"]}";
  long status;
  int rc = -1;
  if (http_open(&h, b->ca_file, b->auth_header, "application/json") != 0) {
    seterr(err, errlen, "curl init failed");
    return -1;
  }
  url = xasprintf("%s/keys/%s/create?api-version=" API_VERSION, b->vault_url, k->name);
  status = http_do(&h, "POST", url, body);
  if (status != 200) {
    http_describe(&h, status, err, errlen, "create key");
    goto out;
  }
  free(url);
  url = xasprintf("%s/keys/%s?api-version=" API_VERSION, b->vault_url, k->name);
  status = http_do(&h, "GET", url, NULL);
  if (status != 200) {
    http_describe(&h, status, err, errlen, "GET key");
    goto out;
  }
  rc = key_from_json(k, h.buf, err, errlen);
out:
  free(url);
  http_close(&h);
  return rc;
}

/* RS256: PKCS#1 v1.5 with SHA-256 over `digest`; ES256: r||s (64 bytes) over `digest`. */
static bool sig_verify(const struct key *k, const unsigned char digest[32],
                       const unsigned char *sig, size_t siglen)
{
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pub, NULL);
  unsigned char *der = NULL;
  ECDSA_SIG *es = NULL;
  bool ok = false;
  int derlen;
  if (!ctx || EVP_PKEY_verify_init(ctx) != 1)
    goto out;
  if (k->rsa) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1)
      goto out;
    ok = EVP_PKEY_verify(ctx, sig, siglen, digest, 32) == 1;
  } else {
    BIGNUM *r, *s;
    if (siglen != 64)
      goto out;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      goto out;
    }
    derlen = i2d_ECDSA_SIG(es, &der);
    if (derlen <= 0)
      goto out;
    ok = EVP_PKEY_verify(ctx, der, (size_t)derlen, digest, 32) == 1;
  }
out:
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

/* ---- the PKCS#11 module ------------------------------------------------------------------------
 */

static int module_load(struct module *m, const char *path)
{
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
  CK_RV rv;
  m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!m->dl) {
    seterr(m->err, sizeof(m->err), "dlopen %s: %s", path, dlerror());
    return -1;
  }
  *(void **)&get_list = dlsym(m->dl, "C_GetFunctionList");
  if (!get_list) {
    seterr(m->err, sizeof(m->err), "%s exports no C_GetFunctionList", path);
    return -1;
  }
  rv = get_list(&m->f);
  if (rv != CKR_OK || !m->f) {
    seterr(m->err, sizeof(m->err), "C_GetFunctionList: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    return -1;
  }
  return 0;
}

static int module_init(struct module *m)
{
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  CK_RV rv;
  if (m->init_failed)
    return -1;
  if (m->initialized)
    return 0;
  m->init_failed = true;
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  rv = m->f->C_Initialize(&args);
  if (rv != CKR_OK) {
    seterr(m->err, sizeof(m->err), "C_Initialize: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    return -1;
  }
  m->initialized = true;
  rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK || n == 0) {
    seterr(m->err, sizeof(m->err), "C_GetSlotList: %s (0x%lx), %lu slots", rv_name(rv),
           (unsigned long)rv, (unsigned long)n);
    return -1;
  }
  m->slot = slots[0];
  m->init_failed = false;
  return 0;
}

static void module_finalize(struct module *m)
{
  if (m->initialized)
    m->f->C_Finalize(NULL);
  m->initialized = false;
}

/* The private key object labelled `label` (exactly one expected). */
static int module_find_key(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_HANDLE *out, char *err, size_t errlen)
{
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)}};
  CK_OBJECT_HANDLE found[4];
  CK_ULONG n = 0;
  CK_RV rv = f->C_FindObjectsInit(s, tmpl, 2);
  if (rv != CKR_OK) {
    seterr(err, errlen, "C_FindObjectsInit: %s", rv_name(rv));
    return -1;
  }
  rv = f->C_FindObjects(s, found, 4, &n);
  f->C_FindObjectsFinal(s);
  if (rv != CKR_OK) {
    seterr(err, errlen, "C_FindObjects: %s", rv_name(rv));
    return -1;
  }
  if (n != 1) {
    seterr(err, errlen, "C_FindObjects: %lu private keys labelled %s (expected 1)",
           (unsigned long)n, label);
    return -1;
  }
  *out = found[0];
  return 0;
}

/* ---- measured phases: raw, module sign, module lookup -------------------------------------------
 */

enum phase_kind { PH_RAW, PH_MODULE, PH_LOOKUP };
static const char *const phase_names[] = {"raw", "module", "lookup"};

struct sample {
  unsigned char digest[32];
  unsigned char sig[SIG_MAX];
  size_t siglen;
};

struct phase;

struct worker {
  struct phase *ph;
  unsigned idx;
  pthread_t th;
  bool started, warm_ok;
  char err[512];
  uint64_t ops, errors;
  uint64_t *lat;
  size_t nlat, latcap;
  struct sample smp[NSAMPLES];
  size_t nsmp;
  unsigned char msg[32];
  /* raw */
  struct http http;
  char *sign_url;
  /* module */
  CK_SESSION_HANDLE sess;
  bool sess_open;
  CK_OBJECT_HANDLE obj;
};

struct phase {
  struct bench *b;
  enum phase_kind kind;
  struct key *key;
  unsigned nthreads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned nwarm;
  bool go, abort;
  uint64_t deadline;
};

/* The result of one measured phase, whatever ran it. */
struct result {
  const char *key;  /* "RSA-2048" / "EC P-256" */
  const char *impl; /* raw / sdk / module / lookup */
  unsigned threads;
  bool ran;    /* measured (false: skipped or failed before measuring) */
  bool failed; /* false when skipped on purpose */
  char note[512];
  uint64_t ops, errors;
  double elapsed_s, ops_s, p50_ms, p99_ms, cpu_us_op, req_op;
  struct stats st;
  unsigned verified, sampled;
  double cpu_total; /* µs, summed over the rounds */
  uint64_t *lat;    /* ns, all rounds; sorted by result_finish */
  size_t nlat;
};

static void sample_store(struct worker *w, const unsigned char digest[32], const unsigned char *sig,
                         size_t siglen)
{
  size_t slot = w->nsmp < NSAMPLES ? w->nsmp++ : NSAMPLES - 1;
  memcpy(w->smp[slot].digest, digest, 32);
  memcpy(w->smp[slot].sig, sig, siglen);
  w->smp[slot].siglen = siglen;
}

/* A fresh 32-byte message per operation (counter and thread index over a random base). */
static void next_msg(struct worker *w, uint64_t counter)
{
  memcpy(w->msg, &counter, sizeof(counter));
  w->msg[8] = (unsigned char)w->idx;
}

static int raw_op(struct worker *w, uint64_t counter)
{
  struct key *k = w->ph->key;
  unsigned char digest[32], sig[SIG_MAX];
  char b64[64], body[160];
  size_t siglen;
  cJSON *root;
  const char *val;
  long status;
  int rc = -1;
  next_msg(w, counter);
  /* The module hashes locally for CKM_SHA256_RSA_PKCS; the raw client does the same work. */
  if (k->rsa) {
    if (EVP_Digest(w->msg, sizeof(w->msg), digest, NULL, EVP_sha256(), NULL) != 1) {
      seterr(w->err, sizeof(w->err), "SHA-256 failed");
      return -1;
    }
  } else {
    memcpy(digest, w->msg, 32);
  }
  b64url_encode(digest, 32, b64, sizeof(b64));
  snprintf(body, sizeof(body), "{\"alg\":\"%s\",\"value\":\"%s\"}", k->rsa ? "RS256" : "ES256",
           b64);
  status = http_do(&w->http, "POST", w->sign_url, body);
  if (status != 200) {
    http_describe(&w->http, status, w->err, sizeof(w->err), "raw sign");
    return -1;
  }
  root = cJSON_ParseWithLength(w->http.buf, w->http.len);
  val = json_str(root, "value");
  if (!val || b64url_decode(val, sig, sizeof(sig), &siglen) != 0 ||
      siglen != (k->rsa ? 256u : 64u)) {
    seterr(w->err, sizeof(w->err), "raw sign: no valid signature in %.200s", w->http.buf);
    goto out;
  }
  if (w->nsmp < NSAMPLES - 1 || counter % 64 == 0)
    sample_store(w, digest, sig, siglen);
  rc = 0;
out:
  cJSON_Delete(root);
  return rc;
}

static int module_sign_op(struct worker *w, uint64_t counter)
{
  CK_FUNCTION_LIST_PTR f = w->ph->b->mod.f;
  struct key *k = w->ph->key;
  CK_MECHANISM mech = {k->rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA, NULL, 0};
  unsigned char sig[SIG_MAX], digest[32];
  CK_ULONG siglen = sizeof(sig);
  CK_RV rv;
  next_msg(w, counter);
  rv = f->C_SignInit(w->sess, &mech, w->obj);
  if (rv != CKR_OK) {
    seterr(w->err, sizeof(w->err), "C_SignInit: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    return -1;
  }
  rv = f->C_Sign(w->sess, w->msg, sizeof(w->msg), sig, &siglen);
  if (rv != CKR_OK) {
    seterr(w->err, sizeof(w->err), "C_Sign: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    return -1;
  }
  if (siglen != (k->rsa ? 256u : 64u)) {
    seterr(w->err, sizeof(w->err), "C_Sign returned %lu bytes", (unsigned long)siglen);
    return -1;
  }
  if (w->nsmp < NSAMPLES - 1 || counter % 64 == 0) {
    if (k->rsa)
      EVP_Digest(w->msg, sizeof(w->msg), digest, NULL, EVP_sha256(), NULL);
    else
      memcpy(digest, w->msg, 32);
    sample_store(w, digest, sig, siglen);
  }
  return 0;
}

/* What an application does to use a key: find it by label, read its public attributes. */
static int lookup_op(struct worker *w, uint64_t counter)
{
  CK_FUNCTION_LIST_PTR f = w->ph->b->mod.f;
  struct key *k = w->ph->key;
  CK_OBJECT_HANDLE obj;
  CK_KEY_TYPE kt = 0;
  unsigned char id[64], modulus[512];
  CK_ATTRIBUTE attrs[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)},
                          {CKA_ID, id, sizeof(id)},
                          {CKA_MODULUS, modulus, sizeof(modulus)}};
  CK_RV rv;
  (void)counter;
  if (module_find_key(f, w->sess, k->name, &obj, w->err, sizeof(w->err)) != 0)
    return -1;
  rv = f->C_GetAttributeValue(w->sess, obj, attrs, 3);
  if (rv != CKR_OK) {
    seterr(w->err, sizeof(w->err), "C_GetAttributeValue: %s (0x%lx)", rv_name(rv),
           (unsigned long)rv);
    return -1;
  }
  if (kt != CKK_RSA || attrs[1].ulValueLen == 0 || attrs[2].ulValueLen != k->modulus_len ||
      memcmp(modulus, k->modulus, k->modulus_len) != 0) {
    seterr(w->err, sizeof(w->err),
           "C_GetAttributeValue: key type/CKA_ID/CKA_MODULUS do not match"
           " the vault's key");
    return -1;
  }
  return 0;
}

static int worker_op(struct worker *w, uint64_t counter)
{
  switch (w->ph->kind) {
  case PH_RAW:
    return raw_op(w, counter);
  case PH_MODULE:
    return module_sign_op(w, counter);
  case PH_LOOKUP:
    return lookup_op(w, counter);
  }
  return -1;
}

/* Warm-up outside the measured window: connection, session, key handle, first operation. */
static int worker_warm(struct worker *w)
{
  struct bench *b = w->ph->b;
  CK_RV rv;
  if (RAND_bytes(w->msg, sizeof(w->msg)) != 1) {
    seterr(w->err, sizeof(w->err), "RAND_bytes failed");
    return -1;
  }
  if (w->ph->kind == PH_RAW) {
    if (http_open(&w->http, b->ca_file, b->auth_header, "application/json") != 0) {
      seterr(w->err, sizeof(w->err), "curl init failed");
      return -1;
    }
    w->sign_url = xasprintf("%s/sign?api-version=" API_VERSION, w->ph->key->kid);
    return raw_op(w, 0);
  }
  rv = b->mod.f->C_OpenSession(b->mod.slot, CKF_SERIAL_SESSION, NULL, NULL, &w->sess);
  if (rv != CKR_OK) {
    seterr(w->err, sizeof(w->err), "C_OpenSession: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    return -1;
  }
  w->sess_open = true;
  if (module_find_key(b->mod.f, w->sess, w->ph->key->name, &w->obj, w->err, sizeof(w->err)) != 0)
    return -1;
  return worker_op(w, 0);
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  struct phase *ph = w->ph;
  unsigned consecutive = 0;
  uint64_t counter = 1;
  w->warm_ok = worker_warm(w) == 0;
  w->nsmp = 0; /* samples come from the measured window only */
  pthread_mutex_lock(&ph->mu);
  ph->nwarm++;
  pthread_cond_broadcast(&ph->cv);
  while (!ph->go)
    pthread_cond_wait(&ph->cv, &ph->mu);
  pthread_mutex_unlock(&ph->mu);
  if (!w->warm_ok || ph->abort)
    return NULL;
  while (now_ns() < ph->deadline) {
    uint64_t t0 = now_ns();
    if (worker_op(w, counter++) == 0) {
      uint64_t dt = now_ns() - t0;
      w->ops++;
      consecutive = 0;
      if (w->nlat == w->latcap && w->latcap < LAT_MAX_PER_THREAD) {
        size_t ncap = w->latcap ? w->latcap * 2 : 4096;
        uint64_t *nl = realloc(w->lat, ncap * sizeof(*nl));
        if (nl) {
          w->lat = nl;
          w->latcap = ncap;
        }
      }
      if (w->nlat < w->latcap)
        w->lat[w->nlat++] = dt;
    } else {
      w->errors++;
      /* a dead endpoint fails fast: stop spinning, the error is reported */
      if (++consecutive >= MAX_CONSECUTIVE_ERRORS)
        break;
    }
  }
  return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double percentile_ms(const uint64_t *sorted, size_t n, double p)
{
  size_t idx;
  if (n == 0)
    return 0;
  idx = (size_t)((p / 100.0) * (double)n + 0.999999);
  idx = idx == 0 ? 0 : idx - 1;
  if (idx >= n)
    idx = n - 1;
  return (double)sorted[idx] / 1e6;
}

static double cpu_us(const struct rusage *ru)
{
  return (double)ru->ru_utime.tv_sec * 1e6 + (double)ru->ru_utime.tv_usec +
         (double)ru->ru_stime.tv_sec * 1e6 + (double)ru->ru_stime.tv_usec;
}

static void result_rates(struct result *r, double cpu)
{
  r->ops_s = r->elapsed_s > 0 ? (double)r->ops / r->elapsed_s : 0;
  r->cpu_us_op = r->ops ? cpu / (double)r->ops : 0;
  r->req_op = r->ops ? r->st.total / (double)r->ops : 0;
}

/* Rates and percentiles of a result measured in rounds by phase_run. */
static void result_finish(struct result *r)
{
  qsort(r->lat, r->nlat, sizeof(*r->lat), cmp_u64);
  r->p50_ms = percentile_ms(r->lat, r->nlat, 50);
  r->p99_ms = percentile_ms(r->lat, r->nlat, 99);
  result_rates(r, r->cpu_total);
}

/* Adds the counters of one round to the result's. */
static void stats_add(struct stats *dst, const struct stats *src)
{
  const cJSON *it;
  dst->total += src->total;
  dst->sign += src->sign;
  dst->token += src->token;
  dst->list += src->list;
  dst->get += src->get;
  if (!dst->by_op) {
    dst->by_op = src->by_op ? cJSON_Duplicate(src->by_op, 1) : NULL;
    return;
  }
  cJSON_ArrayForEach(it, src->by_op)
  {
    cJSON *have = cJSON_GetObjectItemCaseSensitive(dst->by_op, it->string);
    if (!cJSON_IsNumber(it))
      continue;
    if (have && cJSON_IsNumber(have))
      cJSON_SetNumberValue(have, have->valuedouble + it->valuedouble);
    else
      cJSON_AddNumberToObject(dst->by_op, it->string, it->valuedouble);
  }
}

/* Runs one round of a threaded phase into `r` (accumulating over rounds): warm-up, stats reset,
 * `seconds` of operations, stats read. A failed round marks the whole result failed. */
static void phase_run(struct bench *b, enum phase_kind kind, struct key *key, unsigned nthreads,
                      double seconds, struct result *r)
{
  struct phase ph;
  struct worker *ws = xcalloc(nthreads, sizeof(*ws));
  pthread_condattr_t ca;
  struct rusage ru0, ru1;
  struct stats st;
  uint64_t t0, t1;
  size_t total_lat = 0;
  unsigned started = 0;
  char err[512] = "";

  r->impl = phase_names[kind];
  r->threads = nthreads;
  if (r->failed)
    return; /* an earlier round failed: its note stands */
  r->failed = true;
  r->ran = false;
  memset(&st, 0, sizeof(st));
  memset(&ph, 0, sizeof(ph));
  ph.b = b;
  ph.kind = kind;
  ph.key = key;
  ph.nthreads = nthreads;
  pthread_mutex_init(&ph.mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ph.cv, &ca);
  pthread_condattr_destroy(&ca);

  for (unsigned i = 0; i < nthreads; i++) {
    ws[i].ph = &ph;
    ws[i].idx = i;
    if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
      seterr(r->note, sizeof(r->note), "pthread_create failed for thread %u", i);
      break;
    }
    ws[i].started = true;
    started++;
  }

  /* all threads warm (bounded), then one start signal */
  pthread_mutex_lock(&ph.mu);
  {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 120;
    while (ph.nwarm < started) {
      if (pthread_cond_timedwait(&ph.cv, &ph.mu, &until) == ETIMEDOUT)
        break;
    }
  }
  if (ph.nwarm < started) {
    seterr(r->note, sizeof(r->note), "warm-up did not finish within 120 s");
    ph.abort = true;
  }
  for (unsigned i = 0; i < started && !ph.abort; i++) {
    if (!ws[i].warm_ok) {
      seterr(r->note, sizeof(r->note), "warm-up failed: %s", ws[i].err);
      ph.abort = true;
    }
  }
  if (started < nthreads)
    ph.abort = true;
  if (!ph.abort && stats_reset(b, err, sizeof(err)) != 0) {
    seterr(r->note, sizeof(r->note), "%s", err);
    ph.abort = true;
  }
  getrusage(RUSAGE_SELF, &ru0);
  t0 = now_ns();
  ph.deadline = t0 + (uint64_t)(seconds * 1e9);
  ph.go = true;
  pthread_cond_broadcast(&ph.cv);
  pthread_mutex_unlock(&ph.mu);

  for (unsigned i = 0; i < nthreads; i++)
    if (ws[i].started)
      pthread_join(ws[i].th, NULL);
  t1 = now_ns();
  getrusage(RUSAGE_SELF, &ru1);

  if (!ph.abort) {
    if (stats_read(b, &st, err, sizeof(err)) != 0) {
      seterr(r->note, sizeof(r->note), "%s", err);
    } else {
      stats_add(&r->st, &st);
      r->ran = true;
      r->failed = false;
    }
  }
  stats_clear(&st);
  for (unsigned i = 0; i < nthreads; i++) {
    r->ops += ws[i].ops;
    r->errors += ws[i].errors;
    total_lat += ws[i].nlat;
    if (ws[i].errors && !r->note[0])
      seterr(r->note, sizeof(r->note), "first error: %s", ws[i].err);
  }
  r->elapsed_s += (double)(t1 - t0) / 1e9;
  r->cpu_total += cpu_us(&ru1) - cpu_us(&ru0);
  if (total_lat) {
    uint64_t *nl = realloc(r->lat, (r->nlat + total_lat) * sizeof(*nl));
    if (!nl) {
      fprintf(stderr, "akv-bench: out of memory\n");
      exit(2);
    }
    r->lat = nl;
  }
  for (unsigned i = 0; i < nthreads; i++) {
    memcpy(r->lat + r->nlat, ws[i].lat, ws[i].nlat * sizeof(*r->lat));
    r->nlat += ws[i].nlat;
    for (size_t k = 0; kind != PH_LOOKUP && k < ws[i].nsmp; k++) {
      r->sampled++;
      if (sig_verify(key, ws[i].smp[k].digest, ws[i].smp[k].sig, ws[i].smp[k].siglen))
        r->verified++;
    }
  }

  for (unsigned i = 0; i < nthreads; i++) {
    if (ws[i].sess_open)
      b->mod.f->C_CloseSession(ws[i].sess);
    http_close(&ws[i].http);
    free(ws[i].sign_url);
    free(ws[i].lat);
  }
  free(ws);
  pthread_cond_destroy(&ph.cv);
  pthread_mutex_destroy(&ph.mu);
}

/* ---- the official SDK (Node) -------------------------------------------------------------------
 */

static bool file_exists(const char *path)
{
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void sdk_parse_done(struct bench *b, struct key *key, const char *line, struct result *r)
{
  cJSON *root = cJSON_Parse(line);
  const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "ops");
  const cJSON *errs = cJSON_GetObjectItemCaseSensitive(root, "errors");
  const cJSON *el = cJSON_GetObjectItemCaseSensitive(root, "elapsed_s");
  const cJSON *p50 = cJSON_GetObjectItemCaseSensitive(root, "p50_ms");
  const cJSON *p99 = cJSON_GetObjectItemCaseSensitive(root, "p99_ms");
  const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(root, "cpu_us");
  const cJSON *samples = cJSON_GetObjectItemCaseSensitive(root, "samples"), *s;
  (void)b;
  if (!cJSON_IsNumber(ops) || !cJSON_IsNumber(errs) || !cJSON_IsNumber(el) ||
      !cJSON_IsNumber(p50) || !cJSON_IsNumber(p99) || !cJSON_IsNumber(cpu) ||
      !cJSON_IsArray(samples)) {
    seterr(r->note, sizeof(r->note), "sdk-sign.mjs: malformed result %.200s", line);
    goto out;
  }
  r->ops = (uint64_t)ops->valuedouble;
  r->errors = (uint64_t)errs->valuedouble;
  r->elapsed_s = el->valuedouble;
  r->p50_ms = p50->valuedouble;
  r->p99_ms = p99->valuedouble;
  if (json_str(root, "first_error"))
    seterr(r->note, sizeof(r->note), "first error: %s", json_str(root, "first_error"));
  cJSON_ArrayForEach(s, samples)
  {
    unsigned char digest[64], sig[SIG_MAX];
    size_t dl, sl;
    const char *ds = json_str(s, "digest"), *ss = json_str(s, "signature");
    r->sampled++;
    if (ds && ss && b64url_decode(ds, digest, sizeof(digest), &dl) == 0 && dl == 32 &&
        b64url_decode(ss, sig, sizeof(sig), &sl) == 0 && sig_verify(key, digest, sig, sl))
      r->verified++;
  }
  r->ran = true;
  r->failed = false;
  result_rates(r, cpu->valuedouble);
out:
  cJSON_Delete(root);
}

/* The node of the SDK rows: --node, else what tests/node/find-node.sh picks: the node on PATH when
 * it is Node >= 20, else the pinned one scripts/deps.sh installed (docs/testing.md, "Node.js for
 * the SDK tests"). 0 with b->o.node set; 1 when there is none (the script's reason and fix in err);
 * -1 when the script itself did not work (what went wrong in err). */
static int sdk_node(struct bench *b, char *err, size_t errlen)
{
  char *finder = xasprintf("%s/../node/find-node.sh", AKV_BENCH_SRCDIR), *line = NULL;
  char *argv[] = {"sh", finder, NULL};
  int out[2] = {-1, -1}, st, got, rc = -1;
  struct linebuf lb = {NULL, 0};
  posix_spawn_file_actions_t fa;
  pid_t pid;

  if (b->o.node) {
    rc = 0;
    goto out;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    seterr(err, errlen, "pipe: %s", strerror(errno));
    goto out;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  st = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  out[1] = -1;
  if (st != 0) {
    seterr(err, errlen, "cannot run /bin/sh %s: %s", finder, strerror(st));
    goto out;
  }
  got = read_line(out[0], &lb, 10000, &line);
  if (proc_wait(pid, 10000, &st) != 0) {
    seterr(err, errlen, "%s did not finish within 10 s", finder);
    goto out;
  }
  if (got != 1 || !line[0]) {
    seterr(err, errlen, "%s printed nothing (wait status %d)", finder, st);
    goto out;
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 1) {
    seterr(err, errlen, "%s", line);
    rc = 1;
    goto out;
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    seterr(err, errlen, "%s failed (wait status %d): %s", finder, st, line);
    goto out;
  }
  b->node_found = line;
  line = NULL;
  b->o.node = b->node_found;
  rc = 0;
out:
  if (out[0] >= 0)
    close(out[0]);
  if (out[1] >= 0)
    close(out[1]);
  free(line);
  free(lb.buf);
  free(finder);
  return rc;
}

static void sdk_run(struct bench *b, struct key *key, unsigned conc, struct result *r)
{
  char *script = xasprintf("%s/sdk-sign.mjs", b->o.sdk_dir);
  char *pkg = xasprintf("%s/node_modules/@azure/keyvault-keys/package.json", b->o.sdk_dir);
  char cbuf[16], dbuf[32], err[512] = "";
  const char *envn[] = {"NODE_EXTRA_CA_CERTS"};
  const char *envv[] = {b->ca_file};
  char **env = NULL;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, st;
  pid_t pid = 0;
  posix_spawn_file_actions_t fa;
  struct linebuf lb = {NULL, 0};
  char *line = NULL;
  long done_timeout = (long)(b->o.duration * 1000) + 120000;

  r->impl = "sdk";
  r->threads = conc;
  if (!file_exists(pkg)) {
    seterr(r->note, sizeof(r->note),
           "skipped: %s/node_modules absent (run `npm ci` in tests/bench)", b->o.sdk_dir);
    goto out;
  }
  st = sdk_node(b, err, sizeof(err));
  if (st != 0) {
    seterr(r->note, sizeof(r->note), "%s%s", st > 0 ? "skipped: " : "", err);
    r->failed = st < 0;
    goto out;
  }
  snprintf(cbuf, sizeof(cbuf), "%u", conc);
  snprintf(dbuf, sizeof(dbuf), "%g", b->o.duration);
  {
    char *argv[] = {
        (char *)b->o.node, script,  "--ready",         b->ready_path, "--vault",
        b->vault_url,      "--key", (char *)key->name, "--alg",       key->rsa ? "RS256" : "ES256",
        "--concurrency",   cbuf,    "--duration",      dbuf,          NULL};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
      seterr(r->note, sizeof(r->note), "pipe: %s", strerror(errno));
      r->failed = true;
      goto out;
    }
    env = env_with(envn, envv, 1);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    st = posix_spawnp(&pid, b->o.node, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (st != 0) {
      seterr(r->note, sizeof(r->note), "skipped: cannot run %s: %s", b->o.node, strerror(st));
      pid = 0;
      goto out;
    }
  }
  close(in[0]);
  close(out[1]);
  in[0] = out[1] = -1;
  r->failed = true;
  /* warm-up (token, key fetch, connections) is not measured; then reset the stats and go */
  for (;;) {
    int lr = read_line(out[0], &lb, 120000, &line);
    if (lr <= 0) {
      seterr(r->note, sizeof(r->note), "sdk-sign.mjs: no warm-up report (%s)",
             lr == 0 ? "timeout" : "exited");
      goto out;
    }
    if (strstr(line, "\"phase\":\"warm\""))
      break;
    if (strstr(line, "\"phase\":\"error\"")) {
      seterr(r->note, sizeof(r->note), "sdk-sign.mjs: %.400s", line);
      goto out;
    }
    free(line);
    line = NULL;
  }
  free(line);
  line = NULL;
  if (stats_reset(b, err, sizeof(err)) != 0) {
    seterr(r->note, sizeof(r->note), "%s", err);
    goto out;
  }
  if (write(in[1], "go\n", 3) != 3) {
    seterr(r->note, sizeof(r->note), "sdk-sign.mjs: cannot send go: %s", strerror(errno));
    goto out;
  }
  for (;;) {
    int lr = read_line(out[0], &lb, done_timeout, &line);
    if (lr <= 0) {
      seterr(r->note, sizeof(r->note), "sdk-sign.mjs: no result (%s)",
             lr == 0 ? "timeout" : "exited");
      goto out;
    }
    if (strstr(line, "\"phase\":\"done\""))
      break;
    if (strstr(line, "\"phase\":\"error\"")) {
      seterr(r->note, sizeof(r->note), "sdk-sign.mjs: %.400s", line);
      goto out;
    }
    free(line);
    line = NULL;
  }
  if (stats_read(b, &r->st, err, sizeof(err)) != 0) {
    seterr(r->note, sizeof(r->note), "%s", err);
    goto out;
  }
  sdk_parse_done(b, key, line, r);
out:
  if (in[1] >= 0)
    close(in[1]);
  if (in[0] >= 0)
    close(in[0]);
  if (out[0] >= 0)
    close(out[0]);
  if (out[1] >= 0)
    close(out[1]);
  if (pid > 0 && proc_wait(pid, 15000, &st) == 0 && !r->failed &&
      (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
    seterr(r->note, sizeof(r->note), "sdk-sign.mjs exited with status %d", st);
    r->failed = true;
    r->ran = false;
  }
  env_free(env);
  free(line);
  free(lb.buf);
  free(pkg);
  free(script);
}

/* ---- cold start
 * ---------------------------------------------------------------------------------- */

struct cold {
  bool ran;
  char note[512];
  double seed_ms;
  unsigned long seeded;
  /* raw: fresh connection + token + all list pages + one sign (median of reps runs; the parts
   * are those of the last run) */
  unsigned reps;
  double raw_ms, raw_token_ms, raw_list_ms, raw_sign_ms, raw_min_ms, raw_max_ms, mod_min_ms;
  unsigned long raw_keys, raw_pages;
  struct stats raw_st;
  bool raw_ok, raw_sig_ok;
  /* raw: list + GET every key with SEED_THREADS connections */
  double rawget_ms;
  unsigned long rawget_keys;
  struct stats rawget_st;
  bool rawget_ok;
  /* module, fresh process, empty cache dir; then a second process with the same cache dir */
  struct cold_module {
    unsigned nprocs, n_ok, n_verified;
    bool ok, sig_ok;         /* every process signed / every signature verifies */
    double load_ms, init_ms; /* of the first process that reported */
    double total_ms;         /* C_Initialize to first signature (median over processes) */
    double max_ms, wall_ms;  /* slowest process; first spawn to last result */
    struct stats st;
    char note[512];
  } mod[2], par; /* fresh and second process (cold vault); `procs` parallel ones (sign vault) */
};

struct seed_job {
  struct bench *b;
  unsigned long n;
  unsigned long next; /* protected by mu */
  pthread_mutex_t mu;
  unsigned long failures;
  char err[512];
  char **kids; /* for GET-all: the base ids to fetch */
  unsigned long nkids;
};

static bool job_next(struct seed_job *j, unsigned long *i)
{
  bool more;
  pthread_mutex_lock(&j->mu);
  more = j->next < j->n && j->failures == 0;
  if (more)
    *i = j->next++;
  pthread_mutex_unlock(&j->mu);
  return more;
}

static void job_fail(struct seed_job *j, const char *err)
{
  pthread_mutex_lock(&j->mu);
  if (j->failures++ == 0)
    snprintf(j->err, sizeof(j->err), "%s", err);
  pthread_mutex_unlock(&j->mu);
}

static void *seed_main(void *arg)
{
  struct seed_job *j = arg;
  struct http h;
  char err[512];
  unsigned long i;
  if (http_open(&h, j->b->ca_file, j->b->auth_header, "application/json") != 0) {
    job_fail(j, "curl init failed");
    return NULL;
  }
  while (job_next(j, &i)) {
    char *url;
    long status;
    if (j->kids)
      url = xasprintf("%s?api-version=" API_VERSION, j->kids[i]);
    else
      url = xasprintf("%s/keys/cold-%05lu/create?api-version=" API_VERSION, j->b->cold_url, i);
    status = j->kids ? http_do(&h, "GET", url, NULL)
                     : http_do(&h, "POST", url, "{\"kty\":\"EC\",\"crv\":\"P-256\"}");
    free(url);
    if (status != 200) {
      http_describe(&h, status, err, sizeof(err), j->kids ? "GET key" : "create cold key");
      job_fail(j, err);
    }
  }
  http_close(&h);
  return NULL;
}

/* Runs seed_main on SEED_THREADS threads; 0 or -1 with the first error in j->err. */
static int job_run(struct seed_job *j)
{
  pthread_t th[SEED_THREADS];
  unsigned started = 0;
  pthread_mutex_init(&j->mu, NULL);
  for (unsigned i = 0; i < SEED_THREADS; i++) {
    if (pthread_create(&th[i], NULL, seed_main, j) != 0) {
      job_fail(j, "pthread_create failed");
      break;
    }
    started++;
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  pthread_mutex_destroy(&j->mu);
  return j->failures ? -1 : 0;
}

/* Pages through {cold}/keys; collects base ids when kids != NULL. */
static int raw_list(struct bench *b, struct http *h, unsigned long *nkeys, unsigned long *npages,
                    char ***kids, char *err, size_t errlen)
{
  char *url = xasprintf("%s/keys?api-version=" API_VERSION "&maxresults=25", b->cold_url);
  unsigned long cap = 0;
  int rc = -1;
  *nkeys = *npages = 0;
  while (url) {
    long status = http_do(h, "GET", url, NULL);
    cJSON *root;
    const cJSON *val, *it;
    const char *next;
    free(url);
    url = NULL;
    if (status != 200) {
      http_describe(h, status, err, errlen, "list keys");
      goto out;
    }
    root = cJSON_ParseWithLength(h->buf, h->len);
    val = cJSON_GetObjectItemCaseSensitive(root, "value");
    if (!cJSON_IsArray(val)) {
      seterr(err, errlen, "list keys: no value array in %.200s", h->buf);
      cJSON_Delete(root);
      goto out;
    }
    cJSON_ArrayForEach(it, val)
    {
      const char *kid = json_str(it, "kid");
      if (kids && kid) {
        if (*nkeys == cap) {
          cap = cap ? cap * 2 : 256;
          *kids = realloc(*kids, cap * sizeof(char *));
          if (!*kids) {
            fprintf(stderr, "akv-bench: out of memory\n");
            exit(2);
          }
        }
        (*kids)[*nkeys] = xstrdup(kid);
      }
      (*nkeys)++;
    }
    (*npages)++;
    next = json_str(root, "nextLink");
    if (next && *next)
      url = xstrdup(next);
    cJSON_Delete(root);
    if (*npages > 10000) {
      seterr(err, errlen, "list keys: more than 10000 pages");
      goto out;
    }
  }
  rc = 0;
out:
  free(url);
  return rc;
}

/* The raw client's cold path: fresh connection and token, every list page, one sign. */
static void cold_raw(struct bench *b, struct key *coldkey, struct cold *c)
{
  struct http h;
  char err[512] = "", *saved_auth = b->auth_header, *url = NULL;
  unsigned char digest[32], sig[SIG_MAX];
  char b64[64], body[160];
  size_t siglen;
  cJSON *root = NULL;
  uint64_t t0, t1, t2, t3;
  long status;

  if (stats_reset(b, err, sizeof(err)) != 0) {
    seterr(c->note, sizeof(c->note), "%s", err);
    return;
  }
  memset(&h, 0, sizeof(h));
  t0 = now_ns();
  b->auth_header = NULL;
  if (token_fetch(b, err, sizeof(err)) != 0) {
    seterr(c->note, sizeof(c->note), "raw cold: %s", err);
    goto out;
  }
  t1 = now_ns();
  if (http_open(&h, b->ca_file, b->auth_header, "application/json") != 0 ||
      raw_list(b, &h, &c->raw_keys, &c->raw_pages, NULL, err, sizeof(err)) != 0) {
    seterr(c->note, sizeof(c->note), "raw cold: %s", err[0] ? err : "curl init failed");
    goto out;
  }
  t2 = now_ns();
  RAND_bytes(digest, sizeof(digest));
  b64url_encode(digest, 32, b64, sizeof(b64));
  snprintf(body, sizeof(body), "{\"alg\":\"ES256\",\"value\":\"%s\"}", b64);
  url = xasprintf("%s/keys/%s/sign?api-version=" API_VERSION, b->cold_url, coldkey->name);
  status = http_do(&h, "POST", url, body);
  t3 = now_ns();
  if (status != 200) {
    http_describe(&h, status, c->note, sizeof(c->note), "raw cold sign");
    goto out;
  }
  root = cJSON_ParseWithLength(h.buf, h.len);
  c->raw_sig_ok = json_str(root, "value") &&
                  b64url_decode(json_str(root, "value"), sig, sizeof(sig), &siglen) == 0 &&
                  sig_verify(coldkey, digest, sig, siglen);
  c->raw_token_ms = (double)(t1 - t0) / 1e6;
  c->raw_list_ms = (double)(t2 - t1) / 1e6;
  c->raw_sign_ms = (double)(t3 - t2) / 1e6;
  c->raw_ms = (double)(t3 - t0) / 1e6;
  if (stats_read(b, &c->raw_st, err, sizeof(err)) != 0)
    seterr(c->note, sizeof(c->note), "%s", err);
  else
    c->raw_ok = true;
out:
  cJSON_Delete(root);
  free(url);
  http_close(&h);
  free_secret(b->auth_header);
  b->auth_header = saved_auth;
}

/* Cold start is one sample per process and moves with the machine's load: raw and module run
 * COLD_REPS times, alternating, each module run in a fresh process with its own empty cache dir
 * (the last one is `cache_dir`, which the second-process run then reuses); the medians count. */
static void module_procs(struct bench *b, const char *vault_url, struct key *key,
                         const char *cache_dir, unsigned n, struct cold_module *cm);
static int cmp_double(const void *a, const void *b);

static void cold_pairs(struct bench *b, struct key *coldkey, const char *cache_dir, struct cold *c)
{
  double raw_s[COLD_REPS], mod_s[COLD_REPS];
  unsigned reps = b->o.smoke ? 1 : COLD_REPS, nr = 0, nm = 0;

  for (unsigned r = 0; r < reps; r++) {
    char *dir = r + 1 < reps ? xasprintf("%s-%u", cache_dir, r) : xstrdup(cache_dir);
    mkdir(dir, 0700);
    c->raw_ok = false;
    cold_raw(b, coldkey, c);
    if (c->raw_ok)
      raw_s[nr++] = c->raw_ms;
    stats_clear(&c->mod[0].st);
    memset(&c->mod[0], 0, sizeof(c->mod[0]));
    module_procs(b, b->cold_url, coldkey, dir, 1, &c->mod[0]);
    if (c->mod[0].ok)
      mod_s[nm++] = c->mod[0].total_ms;
    free(dir);
  }
  c->reps = reps;
  c->raw_ok = nr == reps;
  if (nr) {
    qsort(raw_s, nr, sizeof(*raw_s), cmp_double);
    c->raw_ms = raw_s[nr / 2];
  }
  if (nm == reps) {
    qsort(mod_s, nm, sizeof(*mod_s), cmp_double);
    c->mod[0].total_ms = mod_s[nm / 2];
    c->mod[0].max_ms = mod_s[nm - 1];
    c->mod_min_ms = mod_s[0];
  } else {
    c->mod[0].ok = false;
  }
  if (nr) {
    c->raw_min_ms = raw_s[0];
    c->raw_max_ms = raw_s[nr - 1];
  }
}

/* Reference for a module that needs every public key: list, then GET all keys concurrently. */
static void cold_raw_getall(struct bench *b, struct cold *c)
{
  struct http h;
  struct seed_job j;
  char err[512] = "";
  unsigned long npages = 0;
  uint64_t t0, t1;
  memset(&j, 0, sizeof(j));
  if (stats_reset(b, err, sizeof(err)) != 0 ||
      http_open(&h, b->ca_file, b->auth_header, "application/json") != 0) {
    seterr(c->note, sizeof(c->note), "raw get-all: %s", err[0] ? err : "curl init failed");
    return;
  }
  t0 = now_ns();
  if (raw_list(b, &h, &j.nkids, &npages, &j.kids, err, sizeof(err)) != 0) {
    seterr(c->note, sizeof(c->note), "raw get-all: %s", err);
    goto out;
  }
  j.b = b;
  j.n = j.nkids;
  if (job_run(&j) != 0) {
    seterr(c->note, sizeof(c->note), "raw get-all: %s", j.err);
    goto out;
  }
  t1 = now_ns();
  c->rawget_ms = (double)(t1 - t0) / 1e6;
  c->rawget_keys = j.nkids;
  if (stats_read(b, &c->rawget_st, err, sizeof(err)) != 0)
    seterr(c->note, sizeof(c->note), "%s", err);
  else
    c->rawget_ok = true;
out:
  for (unsigned long i = 0; i < j.nkids; i++)
    free(j.kids[i]);
  free(j.kids);
  http_close(&h);
}

/* Child mode (`--cold-child MODULE LABEL`): one process doing what a short-lived signing tool does.
 */
static int cold_child(const char *module_path, const char *label)
{
  struct module m;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE key;
  CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
  unsigned char digest[32], sig[SIG_MAX];
  char d64[64], s64[200], err[512] = "";
  CK_ULONG siglen = sizeof(sig);
  uint64_t t0, t1, t2, t3;
  CK_RV rv;
  memset(&m, 0, sizeof(m));
  if (RAND_bytes(digest, sizeof(digest)) != 1) {
    seterr(err, sizeof(err), "RAND_bytes failed");
    goto fail;
  }
  t0 = now_ns();
  if (module_load(&m, module_path) != 0) {
    seterr(err, sizeof(err), "%s", m.err);
    goto fail;
  }
  t1 = now_ns();
  if (module_init(&m) != 0) {
    seterr(err, sizeof(err), "%s", m.err);
    goto fail;
  }
  t2 = now_ns();
  rv = m.f->C_OpenSession(m.slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    seterr(err, sizeof(err), "C_OpenSession: %s", rv_name(rv));
    goto fail;
  }
  if (module_find_key(m.f, s, label, &key, err, sizeof(err)) != 0)
    goto fail;
  rv = m.f->C_SignInit(s, &mech, key);
  if (rv == CKR_OK)
    rv = m.f->C_Sign(s, digest, sizeof(digest), sig, &siglen);
  t3 = now_ns();
  if (rv != CKR_OK) {
    seterr(err, sizeof(err), "C_SignInit/C_Sign: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
    goto fail;
  }
  if (siglen > 128) {
    seterr(err, sizeof(err), "C_Sign returned %lu bytes", (unsigned long)siglen);
    goto fail;
  }
  b64url_encode(digest, 32, d64, sizeof(d64));
  b64url_encode(sig, siglen, s64, sizeof(s64));
  printf("{\"ok\":true,\"load_ms\":%.3f,\"init_ms\":%.3f,\"total_ms\":%.3f,\"digest\":\"%s\","
         "\"signature\":\"%s\"}\n",
         (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t3 - t1) / 1e6, d64, s64);
  fflush(stdout);
  module_finalize(&m);
  return 0;
fail : {
  cJSON *o = cJSON_CreateObject();
  char *txt;
  cJSON_AddFalseToObject(o, "ok");
  cJSON_AddStringToObject(o, "error", err);
  txt = cJSON_PrintUnformatted(o);
  printf("%s\n", txt ? txt : "{\"ok\":false}");
  fflush(stdout);
  free(txt);
  cJSON_Delete(o);
}
  module_finalize(&m);
  return 1;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Parses one child's result line into cm (accumulating over children). */
static void child_result(struct key *key, const char *line, struct cold_module *cm, double *total)
{
  cJSON *root = cJSON_Parse(line);
  const cJSON *lm = cJSON_GetObjectItemCaseSensitive(root, "load_ms");
  const cJSON *im = cJSON_GetObjectItemCaseSensitive(root, "init_ms");
  const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "total_ms");
  const char *ds = json_str(root, "digest"), *ss = json_str(root, "signature");
  unsigned char digest[64], sig[SIG_MAX];
  size_t dl, sl;
  if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ok")) || !cJSON_IsNumber(lm) ||
      !cJSON_IsNumber(im) || !cJSON_IsNumber(tm)) {
    if (!cm->note[0])
      seterr(cm->note, sizeof(cm->note), "module cold start failed: %.400s",
             json_str(root, "error") ? json_str(root, "error") : line);
    goto out;
  }
  if (cm->n_ok == 0) {
    cm->load_ms = lm->valuedouble;
    cm->init_ms = im->valuedouble;
  }
  *total = tm->valuedouble;
  cm->n_ok++;
  if (ds && ss && b64url_decode(ds, digest, sizeof(digest), &dl) == 0 && dl == 32 &&
      b64url_decode(ss, sig, sizeof(sig), &sl) == 0 && sig_verify(key, digest, sig, sl))
    cm->n_verified++;
out:
  cJSON_Delete(root);
}

/* Starts `n` fresh processes at once (`akv-bench --cold-child`), all with the module configured
 * for `vault_url` and the cache directory `cache_dir`; each times C_Initialize to its first
 * signature with `key`. The emulator's counters cover exactly these processes. */
static void module_procs(struct bench *b, const char *vault_url, struct key *key,
                         const char *cache_dir, unsigned n, struct cold_module *cm)
{
  const char *envn[] = {"AKV_PKCS11_VAULT_URL", "XDG_CACHE_HOME"};
  const char *envv[] = {vault_url, cache_dir};
  char *argv[] = {b->self_exe, "--cold-child", (char *)b->o.module, (char *)key->name, NULL};
  char **env = env_with(envn, envv, 2);
  char err[512] = "";
  pid_t *pids = xcalloc(n, sizeof(*pids));
  int *fds = xcalloc(n, sizeof(*fds));
  double *totals = xcalloc(n, sizeof(*totals));
  unsigned started = 0;
  uint64_t t0, deadline;

  cm->nprocs = n;
  if (stats_reset(b, err, sizeof(err)) != 0) {
    seterr(cm->note, sizeof(cm->note), "%s", err);
    goto out;
  }
  t0 = now_ns();
  deadline = t0 + 180ull * 1000000000u;
  for (unsigned i = 0; i < n; i++) {
    posix_spawn_file_actions_t fa;
    int out[2], st;
    if (pipe2(out, O_CLOEXEC) != 0) {
      seterr(cm->note, sizeof(cm->note), "pipe: %s", strerror(errno));
      break;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    st = posix_spawn(&pids[i], b->self_exe, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (st != 0) {
      close(out[0]);
      seterr(cm->note, sizeof(cm->note), "cannot start %s: %s", b->self_exe, strerror(st));
      break;
    }
    fds[started++] = out[0];
  }
  for (unsigned i = 0; i < started; i++) {
    struct linebuf lb = {NULL, 0};
    char *line = NULL;
    uint64_t now = now_ns();
    long left = now < deadline ? (long)((deadline - now) / 1000000u) : 0;
    if (read_line(fds[i], &lb, left, &line) == 1)
      child_result(key, line, cm, &totals[cm->n_ok]);
    else if (!cm->note[0])
      seterr(cm->note, sizeof(cm->note), "a cold-start process gave no result");
    free(line);
    free(lb.buf);
  }
  cm->wall_ms = (double)(now_ns() - t0) / 1e6;
  for (unsigned i = 0; i < started; i++) {
    int st;
    if (proc_wait(pids[i], 30000, &st) != 0 && !cm->note[0])
      seterr(cm->note, sizeof(cm->note), "a cold-start process did not exit within 30 s");
    close(fds[i]);
  }
  if (stats_read(b, &cm->st, err, sizeof(err)) != 0) {
    seterr(cm->note, sizeof(cm->note), "%s", err);
    goto out;
  }
  qsort(totals, cm->n_ok, sizeof(*totals), cmp_double);
  if (cm->n_ok) {
    cm->total_ms = totals[(cm->n_ok - 1) / 2];
    cm->max_ms = totals[cm->n_ok - 1];
  }
  cm->ok = started == n && cm->n_ok == n;
  cm->sig_ok = cm->n_verified == n;
out:
  free(totals);
  free(fds);
  free(pids);
  env_free(env);
}

/* Seeds the cold vault with N EC keys, concurrently, and reads one of them back for verifying. */
static int cold_seed(struct bench *b, struct key *coldkey, struct cold *c)
{
  struct seed_job j;
  struct http h;
  char *url;
  long status;
  uint64_t t0 = now_ns();
  char err[512] = "";
  int rc = -1;
  memset(&j, 0, sizeof(j));
  j.b = b;
  j.n = b->o.keys;
  if (job_run(&j) != 0) {
    seterr(c->note, sizeof(c->note), "seeding the cold vault: %s", j.err);
    return -1;
  }
  c->seed_ms = (double)(now_ns() - t0) / 1e6;
  c->seeded = b->o.keys;
  if (http_open(&h, b->ca_file, b->auth_header, "application/json") != 0) {
    seterr(c->note, sizeof(c->note), "curl init failed");
    return -1;
  }
  url = xasprintf("%s/keys/%s?api-version=" API_VERSION, b->cold_url, coldkey->name);
  status = http_do(&h, "GET", url, NULL);
  free(url);
  if (status != 200)
    http_describe(&h, status, c->note, sizeof(c->note), "GET cold key");
  else if (key_from_json(coldkey, h.buf, err, sizeof(err)) != 0)
    seterr(c->note, sizeof(c->note), "%s", err);
  else
    rc = 0;
  http_close(&h);
  return rc;
}

/* ---- report
 * --------------------------------------------------------------------------------------- */

struct check {
  char name[160];
  bool ok;
  char detail[400];
};

struct report {
  struct result *sign; /* [key][threads][impl] flattened */
  size_t nsign;
  struct result *lookup;
  size_t nlookup;
  struct cold cold;
  struct check checks[256];
  size_t nchecks;
  bool all_ok;
};

static void check_add(struct report *rep, bool ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check_add(struct report *rep, bool ok, const char *name, const char *fmt, ...)
{
  struct check *c;
  va_list ap;
  if (!ok)
    rep->all_ok = false;
  if (rep->nchecks == sizeof(rep->checks) / sizeof(rep->checks[0]))
    return;
  c = &rep->checks[rep->nchecks++];
  c->ok = ok;
  snprintf(c->name, sizeof(c->name), "%s", name);
  va_start(ap, fmt);
  vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
  va_end(ap);
}

static double ratio(double a, double b)
{
  return b > 0 ? a / b : 0;
}

static const struct result *find_result(const struct report *rep, const char *key, unsigned t,
                                        const char *impl)
{
  for (size_t i = 0; i < rep->nsign; i++) {
    const struct result *r = &rep->sign[i];
    if (strcmp(r->key, key) == 0 && r->threads == t && strcmp(r->impl, impl) == 0)
      return r;
  }
  return NULL;
}

/* Correctness of the numbers (never their speed). */
static void run_checks(struct bench *b, struct report *rep)
{
  char name[160];
  for (size_t i = 0; i < rep->nsign; i++) {
    const struct result *r = &rep->sign[i];
    snprintf(name, sizeof(name), "%s %s %u thr", r->key, r->impl, r->threads);
    if (!r->ran) {
      /* a skipped SDK (no node / packages) is a note, anything else that did not run is a failure
       */
      if (!r->failed)
        continue;
      check_add(rep, false, name, "did not run: %s", r->note);
      continue;
    }
    check_add(rep, r->ops > 0 && r->errors == 0, name, "%" PRIu64 " ops, %" PRIu64 " errors%s%s",
              r->ops, r->errors, r->note[0] ? ": " : "", r->note);
    check_add(rep, r->sampled > 0 && r->verified == r->sampled, name,
              "%u of %u sampled signatures verify with OpenSSL against GET key", r->verified,
              r->sampled);
    if (strcmp(r->impl, "module") == 0) {
      /* exactly one sign request per C_Sign; anything else (a cache refresh) within tolerance */
      double other = r->st.total - r->st.sign;
      double tol = (double)r->ops / 100 > 2 ? (double)r->ops / 100 : 2;
      check_add(rep, r->st.sign == (double)r->ops && other <= tol, name,
                "vault requests: %.0f keys.sign for %" PRIu64
                " C_Sign, %.0f other (tolerance %.0f),"
                " %.0f token",
                r->st.sign, r->ops, other, tol, r->st.token);
    } else {
      check_add(rep, r->st.sign == (double)r->ops, name,
                "vault requests: %.0f keys.sign for %" PRIu64 " signatures (%.0f in total)",
                r->st.sign, r->ops, r->st.total);
    }
  }
  for (size_t i = 0; i < rep->nlookup; i++) {
    const struct result *r = &rep->lookup[i];
    snprintf(name, sizeof(name), "cached lookup %u thr", r->threads);
    if (!r->ran) {
      check_add(rep, false, name, "did not run: %s", r->note);
      continue;
    }
    check_add(rep, r->ops > 0 && r->errors == 0, name, "%" PRIu64 " ops, %" PRIu64 " errors%s%s",
              r->ops, r->errors, r->note[0] ? ": " : "", r->note);
    check_add(rep, r->st.total == 0, name, "%.0f vault requests during cached lookups (must be 0)",
              r->st.total);
  }
  if (b->o.only & SEL_COLD) {
    const struct cold *c = &rep->cold;
    if (!c->ran) {
      check_add(rep, false, "cold start", "did not run: %s", c->note);
    } else {
      check_add(rep, c->raw_ok && c->raw_sig_ok && c->raw_keys >= b->o.keys,
                "cold start raw listing",
                "%lu keys listed in %lu pages (vault seeded with %lu), "
                "signature %s%s%s",
                c->raw_keys, c->raw_pages, b->o.keys,
                c->raw_sig_ok ? "verifies" : "DOES NOT verify", c->note[0] ? "; " : "", c->note);
      check_add(rep,
                c->rawget_ok && c->rawget_keys == c->raw_keys &&
                    c->rawget_st.get == (double)c->rawget_keys,
                "cold start raw list+get", "%lu keys fetched, %.0f keys.get requests",
                c->rawget_keys, c->rawget_st.get);
      for (int i = 0; i < 2; i++) {
        const struct cold_module *cm = &c->mod[i];
        snprintf(name, sizeof(name), "cold start module (%s)",
                 i == 0 ? "fresh process, empty cache" : "second process, same cache dir");
        check_add(rep, cm->ok && cm->sig_ok && cm->st.sign == 1, name,
                  "%s; signature %s; %.0f keys.sign, %.0f vault requests in total",
                  cm->ok ? "C_Initialize to first signature done" : cm->note,
                  cm->sig_ok ? "verifies" : "DOES NOT verify", cm->st.sign, cm->st.total);
      }
    }
  }
  if (b->o.only & SEL_PROCS) {
    const struct cold_module *cm = &rep->cold.par;
    snprintf(name, sizeof(name), "%u processes at once", cm->nprocs);
    check_add(rep, cm->ok && cm->sig_ok && cm->st.sign == (double)cm->nprocs, name,
              "%u of %u signed%s%s; %u signatures verify; %.0f keys.sign requests", cm->n_ok,
              cm->nprocs, cm->note[0] ? ": " : "", cm->note, cm->n_verified, cm->st.sign);
  }
}

static void print_sign_table(const struct bench *b, const struct report *rep, const char *key,
                             const char *title)
{
  printf("\n%s\n", title);
  printf("%4s  %-7s %10s %9s %9s %10s %7s %9s %6s %9s\n", "thr", "impl", "ops/s", "p50 ms",
         "p99 ms", "cpu us/op", "req/op", "ops", "errors", "verified");
  for (size_t t = 0; t < b->o.nthreads; t++) {
    const char *impls[] = {"raw", "sdk", "module"};
    const struct result *mr = find_result(rep, key, b->o.threads[t], "module");
    const struct result *rr = find_result(rep, key, b->o.threads[t], "raw");
    const struct result *sr = find_result(rep, key, b->o.threads[t], "sdk");
    for (size_t i = 0; i < 3; i++) {
      const struct result *r = find_result(rep, key, b->o.threads[t], impls[i]);
      if (!r)
        continue;
      if (!r->ran) {
        printf("%4u  %-7s %s\n", r->threads, r->impl, r->note);
        continue;
      }
      printf("%4u  %-7s %10.1f %9.3f %9.3f %10.1f %7.3f %9" PRIu64 " %6" PRIu64 " %5u/%-3u\n",
             r->threads, r->impl, r->ops_s, r->p50_ms, r->p99_ms, r->cpu_us_op, r->req_op, r->ops,
             r->errors, r->verified, r->sampled);
    }
    if (mr && mr->ran) {
      if (rr && rr->ran)
        printf("      module/raw: ops/s %.3f  cpu/op %.3f", ratio(mr->ops_s, rr->ops_s),
               ratio(mr->cpu_us_op, rr->cpu_us_op));
      else
        printf("      module/raw: n/a (raw not run)");
      if (sr && sr->ran)
        printf("   module/sdk: ops/s %.3f  cpu/op %.3f", ratio(mr->ops_s, sr->ops_s),
               ratio(mr->cpu_us_op, sr->cpu_us_op));
      else
        printf("   module/sdk: n/a (sdk not run)");
      printf("\n");
    }
  }
}

static void print_report(const struct bench *b, const struct report *rep)
{
  const struct cold *c = &rep->cold;
  printf("\nakv-bench: %d CPUs online, %.3g s per phase, threads", b->ncpu, b->o.duration);
  for (size_t t = 0; t < b->o.nthreads; t++)
    printf("%s%u", t ? "," : " ", b->o.threads[t]);
  printf(", %lu keys for cold start%s\n", b->o.keys, b->o.smoke ? " (smoke)" : "");
  print_sign_table(b, rep, "RSA-2048",
                   "Sign RSA-2048: module CKM_SHA256_RSA_PKCS over 32 bytes; raw/sdk RS256 over "
                   "their SHA-256");
  print_sign_table(b, rep, "EC P-256",
                   "Sign EC P-256: module CKM_ECDSA over a 32-byte digest; raw/sdk ES256");
  if (b->o.only & SEL_LOOKUP) {
    printf("\nCached lookup: C_FindObjects(class+label) + C_GetAttributeValue(KEY_TYPE, ID, "
           "MODULUS)\n");
    printf("%4s %10s %9s %9s %10s %9s %14s\n", "thr", "ops/s", "p50 ms", "p99 ms", "cpu us/op",
           "ops", "vault requests");
    for (size_t i = 0; i < rep->nlookup; i++) {
      const struct result *r = &rep->lookup[i];
      if (!r->ran) {
        printf("%4u  %s\n", r->threads, r->note);
        continue;
      }
      printf("%4u %10.1f %9.4f %9.4f %10.2f %9" PRIu64 " %14.0f\n", r->threads, r->ops_s, r->p50_ms,
             r->p99_ms, r->cpu_us_op, r->ops, r->st.total);
    }
  }
  if (b->o.only & SEL_COLD)
    printf("\nCold start: %lu EC P-256 keys in vault \"%s\" (seeded in %.0f ms, %d connections)\n",
           b->o.keys, VAULT_COLD, c->seed_ms, SEED_THREADS);
  if (!(b->o.only & SEL_COLD)) {
    /* not selected */
  } else if (!c->ran) {
    printf("  not run: %s\n", c->note);
  } else {
    printf("  (medians of %u alternating runs of raw and module fresh-process cold start)\n",
           c->reps);
    if (c->raw_ok)
      printf(
          "  raw     new connection + token + list (%lu keys, %lu pages) + sign: %9.1f ms"
          "  (range %.1f-%.1f; last run: token %.1f, list %.1f, sign %.1f; %.0f vault requests)\n",
          c->raw_keys, c->raw_pages, c->raw_ms, c->raw_min_ms, c->raw_max_ms, c->raw_token_ms,
          c->raw_list_ms, c->raw_sign_ms, c->raw_st.total);
    if (c->rawget_ok)
      printf("  raw     list + GET every key (%d connections):                %9.1f ms"
             "  (%.0f vault requests)\n",
             SEED_THREADS, c->rawget_ms, c->rawget_st.total);
    for (int i = 0; i < 2; i++) {
      const struct cold_module *cm = &c->mod[i];
      const char *what = i == 0 ? "fresh process, empty cache dir" : "second process, same cache";
      if (!cm->ok) {
        printf("  module  %s: %s\n", what, cm->note);
        continue;
      }
      if (i == 0)
        printf("  module  C_Initialize -> first signature, %-30s %9.1f ms  (range %.1f-%.1f;"
               " C_Initialize %.1f; %.0f vault requests: %.0f list, %.0f get, %.0f sign; %.0f "
               "token)\n",
               what, cm->total_ms, c->mod_min_ms, cm->max_ms, cm->init_ms, cm->st.total,
               cm->st.list, cm->st.get, cm->st.sign, cm->st.token);
      else
        printf("  module  C_Initialize -> first signature, %-30s %9.1f ms  (C_Initialize %.1f;"
               " %.0f vault requests: %.0f list, %.0f get, %.0f sign; %.0f token)\n",
               what, cm->total_ms, cm->init_ms, cm->st.total, cm->st.list, cm->st.get, cm->st.sign,
               cm->st.token);
    }
    if (c->raw_ok && c->mod[0].ok)
      printf("  module/raw cold start: %.3f of the raw listing, %.3f of raw list + GET every key\n",
             ratio(c->mod[0].total_ms, c->raw_ms),
             c->rawget_ok ? ratio(c->mod[0].total_ms, c->rawget_ms) : 0);
  }
  if (b->o.only & SEL_PROCS) {
    const struct cold_module *cm = &c->par;
    printf("\n%u processes at once, each C_Initialize -> one signature (vault \"%s\", 2 keys, one"
           " empty cache dir)\n",
           cm->nprocs, VAULT_SIGN);
    if (cm->n_ok == 0)
      printf("  not run: %s\n", cm->note);
    else
      printf("  %u of %u signed; wall %.1f ms, per process median %.1f ms, max %.1f ms;"
             " %.0f vault requests: %.0f list, %.0f get, %.0f sign; %.0f token%s%s\n",
             cm->n_ok, cm->nprocs, cm->wall_ms, cm->total_ms, cm->max_ms, cm->st.total, cm->st.list,
             cm->st.get, cm->st.sign, cm->st.token, cm->note[0] ? "; " : "", cm->note);
  }
  printf("\nChecks (correctness of the numbers, never speed):\n");
  for (size_t i = 0; i < rep->nchecks; i++)
    printf("  %-4s %s: %s\n", rep->checks[i].ok ? "ok" : "FAIL", rep->checks[i].name,
           rep->checks[i].detail);
  for (size_t i = 0; i < rep->nsign; i++)
    if (!rep->sign[i].ran && !rep->sign[i].failed)
      printf("  note %s %s %u thr: %s\n", rep->sign[i].key, rep->sign[i].impl, rep->sign[i].threads,
             rep->sign[i].note);
  printf("akv-bench: %s\n", rep->all_ok ? "all checks passed" : "SOME CHECKS FAILED");
}

static cJSON *result_json(const struct result *r)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "key", r->key);
  cJSON_AddStringToObject(o, "impl", r->impl);
  cJSON_AddNumberToObject(o, "threads", r->threads);
  cJSON_AddBoolToObject(o, "ran", r->ran);
  if (r->note[0])
    cJSON_AddStringToObject(o, "note", r->note);
  if (r->ran) {
    cJSON_AddNumberToObject(o, "ops", (double)r->ops);
    cJSON_AddNumberToObject(o, "errors", (double)r->errors);
    cJSON_AddNumberToObject(o, "elapsed_s", r->elapsed_s);
    cJSON_AddNumberToObject(o, "ops_per_s", r->ops_s);
    cJSON_AddNumberToObject(o, "p50_ms", r->p50_ms);
    cJSON_AddNumberToObject(o, "p99_ms", r->p99_ms);
    cJSON_AddNumberToObject(o, "cpu_us_per_op", r->cpu_us_op);
    cJSON_AddNumberToObject(o, "requests_per_op", r->req_op);
    cJSON_AddNumberToObject(o, "requests_total", r->st.total);
    if (r->st.by_op)
      cJSON_AddItemToObject(o, "requests_by_operation", cJSON_Duplicate(r->st.by_op, 1));
    cJSON_AddNumberToObject(o, "signatures_sampled", r->sampled);
    cJSON_AddNumberToObject(o, "signatures_verified", r->verified);
  }
  return o;
}

static cJSON *cold_module_json(const struct cold_module *cm)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", cm->ok);
  if (cm->note[0])
    cJSON_AddStringToObject(o, "note", cm->note);
  cJSON_AddNumberToObject(o, "processes", cm->nprocs);
  cJSON_AddNumberToObject(o, "processes_signed", cm->n_ok);
  cJSON_AddNumberToObject(o, "signatures_verified", cm->n_verified);
  cJSON_AddNumberToObject(o, "wall_ms", cm->wall_ms);
  cJSON_AddNumberToObject(o, "max_ms", cm->max_ms);
  cJSON_AddNumberToObject(o, "dlopen_ms", cm->load_ms);
  cJSON_AddNumberToObject(o, "c_initialize_ms", cm->init_ms);
  cJSON_AddNumberToObject(o, "initialize_to_first_signature_ms", cm->total_ms); /* median */
  cJSON_AddBoolToObject(o, "signature_verified", cm->sig_ok);
  cJSON_AddNumberToObject(o, "requests_total", cm->st.total);
  if (cm->st.by_op)
    cJSON_AddItemToObject(o, "requests_by_operation", cJSON_Duplicate(cm->st.by_op, 1));
  return o;
}

static int write_json(const struct bench *b, const struct report *rep, const char *path)
{
  cJSON *root = cJSON_CreateObject(), *arr, *o;
  struct utsname un;
  char date[64], *text;
  time_t now = time(NULL);
  struct tm tm;
  FILE *f;
  int rc = -1;
  gmtime_r(&now, &tm);
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(root, "date", date);
  if (uname(&un) == 0)
    cJSON_AddStringToObject(root, "kernel", un.release);
  cJSON_AddNumberToObject(root, "cpus_online", b->ncpu);
  cJSON_AddNumberToObject(root, "phase_seconds", b->o.duration);
  cJSON_AddBoolToObject(root, "smoke", b->o.smoke);
  cJSON_AddNumberToObject(root, "cold_start_keys", (double)b->o.keys);
  arr = cJSON_AddArrayToObject(root, "sign");
  for (size_t i = 0; i < rep->nsign; i++)
    cJSON_AddItemToArray(arr, result_json(&rep->sign[i]));
  arr = cJSON_AddArrayToObject(root, "ratios");
  for (size_t k = 0; k < 2; k++) {
    const char *key = k == 0 ? "RSA-2048" : "EC P-256";
    for (size_t t = 0; t < b->o.nthreads; t++) {
      const struct result *m = find_result(rep, key, b->o.threads[t], "module");
      const struct result *r = find_result(rep, key, b->o.threads[t], "raw");
      const struct result *s = find_result(rep, key, b->o.threads[t], "sdk");
      if (!m || !m->ran)
        continue;
      o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "key", key);
      cJSON_AddNumberToObject(o, "threads", b->o.threads[t]);
      if (r && r->ran) {
        cJSON_AddNumberToObject(o, "module_raw_ops", ratio(m->ops_s, r->ops_s));
        cJSON_AddNumberToObject(o, "module_raw_cpu", ratio(m->cpu_us_op, r->cpu_us_op));
      }
      if (s && s->ran) {
        cJSON_AddNumberToObject(o, "module_sdk_ops", ratio(m->ops_s, s->ops_s));
        cJSON_AddNumberToObject(o, "module_sdk_cpu", ratio(m->cpu_us_op, s->cpu_us_op));
      }
      cJSON_AddItemToArray(arr, o);
    }
  }
  arr = cJSON_AddArrayToObject(root, "cached_lookup");
  for (size_t i = 0; i < rep->nlookup; i++)
    cJSON_AddItemToArray(arr, result_json(&rep->lookup[i]));
  o = cJSON_AddObjectToObject(root, "cold_start");
  {
    const struct cold *c = &rep->cold;
    cJSON *raw = cJSON_AddObjectToObject(o, "raw_list"), *rg;
    cJSON_AddNumberToObject(o, "keys", (double)c->seeded);
    cJSON_AddNumberToObject(o, "seed_ms", c->seed_ms);
    if (c->note[0])
      cJSON_AddStringToObject(o, "note", c->note);
    cJSON_AddBoolToObject(raw, "ok", c->raw_ok);
    cJSON_AddNumberToObject(o, "runs", c->reps);
    cJSON_AddNumberToObject(raw, "total_ms", c->raw_ms);
    cJSON_AddNumberToObject(raw, "min_ms", c->raw_min_ms);
    cJSON_AddNumberToObject(raw, "max_ms", c->raw_max_ms);
    cJSON_AddNumberToObject(raw, "token_ms", c->raw_token_ms);
    cJSON_AddNumberToObject(raw, "list_ms", c->raw_list_ms);
    cJSON_AddNumberToObject(raw, "sign_ms", c->raw_sign_ms);
    cJSON_AddNumberToObject(raw, "keys_listed", (double)c->raw_keys);
    cJSON_AddNumberToObject(raw, "pages", (double)c->raw_pages);
    cJSON_AddNumberToObject(raw, "requests_total", c->raw_st.total);
    rg = cJSON_AddObjectToObject(o, "raw_list_get_all");
    cJSON_AddBoolToObject(rg, "ok", c->rawget_ok);
    cJSON_AddNumberToObject(rg, "total_ms", c->rawget_ms);
    cJSON_AddNumberToObject(rg, "connections", SEED_THREADS);
    cJSON_AddNumberToObject(rg, "requests_total", c->rawget_st.total);
    cJSON_AddItemToObject(o, "module_fresh_process", cold_module_json(&c->mod[0]));
    cJSON_AddItemToObject(o, "module_second_process", cold_module_json(&c->mod[1]));
    cJSON_AddItemToObject(root, "parallel_processes", cold_module_json(&c->par));
    if (c->raw_ok && c->mod[0].ok)
      cJSON_AddNumberToObject(o, "module_raw_list_ratio", ratio(c->mod[0].total_ms, c->raw_ms));
    if (c->rawget_ok && c->mod[0].ok)
      cJSON_AddNumberToObject(o, "module_raw_list_get_ratio",
                              ratio(c->mod[0].total_ms, c->rawget_ms));
  }
  arr = cJSON_AddArrayToObject(root, "checks");
  for (size_t i = 0; i < rep->nchecks; i++) {
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", rep->checks[i].name);
    cJSON_AddBoolToObject(o, "ok", rep->checks[i].ok);
    cJSON_AddStringToObject(o, "detail", rep->checks[i].detail);
    cJSON_AddItemToArray(arr, o);
  }
  cJSON_AddBoolToObject(root, "ok", rep->all_ok);
  text = cJSON_Print(root);
  f = text ? fopen(path, "we") : NULL;
  if (f && fputs(text, f) >= 0 && fputc('\n', f) != EOF)
    rc = 0;
  if (f && fclose(f) != 0)
    rc = -1;
  if (rc != 0)
    fprintf(stderr, "akv-bench: cannot write %s: %s\n", path, strerror(errno));
  free(text);
  cJSON_Delete(root);
  return rc;
}

/* ---- main
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
  fprintf(
      f,
      "usage: akv-bench (--emulator PATH | --ready-file FILE) --module PATH [options]\n"
      "  --emulator PATH     start this akv-emulator (vaults \"" VAULT_SIGN "\" and \"" VAULT_COLD
      "\") and stop it at the end\n"
      "  --ready-file FILE   use an emulator that is already running (its ready file)\n"
      "  --module PATH       the PKCS#11 module (akv-pkcs11.so)\n"
      "  --threads LIST      thread counts, default 1,4,16\n"
      "  --duration S        seconds per measured phase, default 5\n"
      "  --keys N            keys in the vault for cold start, default 1000\n"
      "  --procs N           processes signing at once from an empty cache, default 50\n"
      "  --only LIST         run only these parts: raw,sdk,module,lookup,cold,procs\n"
      "  --json FILE         also write the results as JSON\n"
      "  --sdk-dir DIR       where sdk-sign.mjs and its node_modules are (default: source dir)\n"
      "  --node PATH         node binary (default: what tests/node/find-node.sh picks)\n"
      "  --max-time S        abort the whole run after S seconds (default 900, smoke 280)\n"
      "  --smoke             1 s phases, threads 1,4, 50 keys, 10 processes: checks the numbers\n");
}

static int parse_threads(const char *s, struct opts *o)
{
  char buf[128], *save = NULL, *tok;
  snprintf(buf, sizeof(buf), "%s", s);
  o->nthreads = 0;
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    unsigned long v;
    if (o->nthreads == MAX_THREAD_COUNTS || parse_uint(tok, 1, MAX_THREADS, &v) != 0)
      return -1;
    o->threads[o->nthreads++] = (unsigned)v;
  }
  return o->nthreads ? 0 : -1;
}

static int parse_only(const char *s, unsigned *out)
{
  static const struct {
    const char *name;
    unsigned bit;
  } parts[] = {{"raw", SEL_RAW},       {"sdk", SEL_SDK},   {"module", SEL_MODULE},
               {"lookup", SEL_LOOKUP}, {"cold", SEL_COLD}, {"procs", SEL_PROCS}};
  char buf[128], *save = NULL, *tok;
  snprintf(buf, sizeof(buf), "%s", s);
  *out = 0;
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t i;
    for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
      if (strcmp(tok, parts[i].name) == 0)
        break;
    if (i == sizeof(parts) / sizeof(parts[0]))
      return -1;
    *out |= parts[i].bit;
  }
  return *out ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
  bool threads_set = false, duration_set = false, keys_set = false, max_set = false;
  bool procs_set = false;
  o->sdk_dir = AKV_BENCH_SRCDIR;
  o->only = SEL_ALL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    unsigned long n;
    if (strcmp(a, "--smoke") == 0) {
      o->smoke = true;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (!v) {
      fprintf(stderr, "akv-bench: %s needs a value\n", a);
      return -1;
    }
    i++;
    if (strcmp(a, "--emulator") == 0) {
      o->emulator = v;
    } else if (strcmp(a, "--ready-file") == 0) {
      o->ready_file = v;
    } else if (strcmp(a, "--module") == 0) {
      o->module = v;
    } else if (strcmp(a, "--json") == 0) {
      o->json_out = v;
    } else if (strcmp(a, "--sdk-dir") == 0) {
      o->sdk_dir = v;
    } else if (strcmp(a, "--node") == 0) {
      o->node = v;
    } else if (strcmp(a, "--threads") == 0) {
      if (parse_threads(v, o) != 0) {
        fprintf(stderr, "akv-bench: --threads wants up to %d counts of 1..%d, e.g. 1,4,16\n",
                MAX_THREAD_COUNTS, MAX_THREADS);
        return -1;
      }
      threads_set = true;
    } else if (strcmp(a, "--duration") == 0) {
      char *end = NULL;
      errno = 0;
      o->duration = strtod(v, &end);
      if (errno || !end || *end || !(o->duration >= 0.1 && o->duration <= 600)) {
        fprintf(stderr, "akv-bench: --duration wants seconds in [0.1, 600]\n");
        return -1;
      }
      duration_set = true;
    } else if (strcmp(a, "--keys") == 0) {
      if (parse_uint(v, 1, MAX_KEYS, &n) != 0) {
        fprintf(stderr, "akv-bench: --keys wants 1..%d\n", MAX_KEYS);
        return -1;
      }
      o->keys = n;
      keys_set = true;
    } else if (strcmp(a, "--only") == 0) {
      if (parse_only(v, &o->only) != 0) {
        fprintf(stderr, "akv-bench: --only wants a list of raw,sdk,module,lookup,cold,procs\n");
        return -1;
      }
    } else if (strcmp(a, "--procs") == 0) {
      if (parse_uint(v, 1, MAX_PROCS, &n) != 0) {
        fprintf(stderr, "akv-bench: --procs wants 1..%d\n", MAX_PROCS);
        return -1;
      }
      o->procs = n;
      procs_set = true;
    } else if (strcmp(a, "--max-time") == 0) {
      if (parse_uint(v, 10, 86400, &n) != 0) {
        fprintf(stderr, "akv-bench: --max-time wants 10..86400 seconds\n");
        return -1;
      }
      o->max_time = n;
      max_set = true;
    } else {
      fprintf(stderr, "akv-bench: unknown option %s\n", a);
      return -1;
    }
  }
  if (!threads_set) {
    o->nthreads = o->smoke ? 2 : 3;
    o->threads[0] = 1;
    o->threads[1] = 4;
    o->threads[2] = 16;
  }
  if (!duration_set)
    o->duration = o->smoke ? 1 : 5;
  if (!keys_set)
    o->keys = o->smoke ? 50 : 1000;
  if (!procs_set)
    o->procs = o->smoke ? 10 : 50;
  if (!max_set)
    o->max_time = o->smoke ? 280 : 900;
  if (!!o->emulator == !!o->ready_file) {
    fprintf(stderr, "akv-bench: give exactly one of --emulator and --ready-file\n");
    return -1;
  }
  if (!o->module) {
    fprintf(stderr, "akv-bench: --module is required\n");
    return -1;
  }
  return 0;
}

/* Environment the module reads at C_Initialize (the documented quick-start variables). */
static void module_env(struct bench *b, const char *cache_dir)
{
  setenv("AKV_PKCS11_VAULT_URL", b->vault_url, 1);
  setenv("AKV_PKCS11_CA_FILE", b->ca_file, 1);
  setenv("AKV_PKCS11_ALLOWED_HOSTS", "localhost", 1);
  setenv("AZURE_TENANT_ID", b->tenant_id, 1);
  setenv("AZURE_CLIENT_ID", b->client_id, 1);
  setenv("AZURE_CLIENT_SECRET", b->client_secret, 1);
  setenv("AZURE_AUTHORITY_HOST", b->authority_host, 1);
  /* a private cache dir: no earlier run's cross-process cache file can serve this one */
  setenv("XDG_CACHE_HOME", cache_dir, 1);
}

/* Marks a row of a part that --only left out (a note, not a failure). */
static void not_selected(struct result *r, const char *impl, unsigned n, unsigned selected)
{
  if (selected)
    return;
  r->impl = impl;
  r->threads = n;
  seterr(r->note, sizeof(r->note), "not selected (--only)");
}

/* A module phase round; initializes the module on first use, notes why when it cannot. */
static void module_phase(struct bench *b, enum phase_kind kind, struct key *key, unsigned n,
                         double seconds, struct result *r, bool *ready)
{
  if (!*ready && b->mod_loaded && module_init(&b->mod) == 0)
    *ready = true;
  if (*ready) {
    phase_run(b, kind, key, n, seconds, r);
    return;
  }
  r->impl = phase_names[kind];
  r->threads = n;
  r->failed = true;
  seterr(r->note, sizeof(r->note), "module unusable: %s", b->mod.err);
}

static void run_all(struct bench *b, struct report *rep)
{
  struct key *keys[2] = {&b->rsa, &b->ec};
  const char *keynames[2] = {"RSA-2048", "EC P-256"};
  struct key coldkey;
  char *cache_main = xasprintf("%s/cache-main", b->tmpdir);
  char *cache_cold = xasprintf("%s/cache-cold", b->tmpdir);
  char *cache_par = xasprintf("%s/cache-parallel", b->tmpdir);
  bool module_ready = false;
  char coldname[32];

  mkdir(cache_main, 0700);
  mkdir(cache_cold, 0700);
  mkdir(cache_par, 0700);
  module_env(b, cache_main);
  if (module_load(&b->mod, b->o.module) == 0)
    b->mod_loaded = true;

  rep->sign = xcalloc(2 * b->o.nthreads * 3, sizeof(*rep->sign));
  for (size_t k = 0; k < 2; k++) {
    for (size_t t = 0; t < b->o.nthreads; t++) {
      unsigned n = b->o.threads[t];
      struct result *raw = &rep->sign[rep->nsign++];
      struct result *sdk = &rep->sign[rep->nsign++];
      struct result *mod = &rep->sign[rep->nsign++];
      double half = b->o.duration / 2;
      raw->key = sdk->key = mod->key = keynames[k];
      /* raw and module each run twice for half the time, in the order raw, module, sdk, module,
       * raw: a drift of the machine's speed during the run (other load on the cores) then
       * weighs on both alike instead of on whichever ran second */
      fprintf(stderr, "akv-bench: %s, %u thread(s): raw, module, sdk, module, raw\n", keynames[k],
              n);
      if (b->o.only & SEL_RAW)
        phase_run(b, PH_RAW, keys[k], n, half, raw);
      if (b->o.only & SEL_MODULE)
        module_phase(b, PH_MODULE, keys[k], n, half, mod, &module_ready);
      if (b->o.only & SEL_SDK)
        sdk_run(b, keys[k], n, sdk);
      if (b->o.only & SEL_MODULE)
        module_phase(b, PH_MODULE, keys[k], n, half, mod, &module_ready);
      if (b->o.only & SEL_RAW)
        phase_run(b, PH_RAW, keys[k], n, half, raw);
      not_selected(raw, "raw", n, b->o.only & SEL_RAW);
      not_selected(sdk, "sdk", n, b->o.only & SEL_SDK);
      not_selected(mod, "module", n, b->o.only & SEL_MODULE);
      result_finish(raw);
      result_finish(mod);
    }
  }
  rep->lookup = xcalloc(b->o.nthreads, sizeof(*rep->lookup));
  for (size_t t = 0; (b->o.only & SEL_LOOKUP) && t < b->o.nthreads; t++) {
    struct result *r = &rep->lookup[rep->nlookup++];
    r->key = "RSA-2048";
    fprintf(stderr, "akv-bench: cached lookup, %u thread(s)\n", b->o.threads[t]);
    module_phase(b, PH_LOOKUP, &b->rsa, b->o.threads[t], b->o.duration, r, &module_ready);
    result_finish(r);
  }
  if (b->mod_loaded)
    module_finalize(&b->mod);

  memset(&coldkey, 0, sizeof(coldkey));
  snprintf(coldname, sizeof(coldname), "cold-%05lu", b->o.keys - 1);
  coldkey.name = coldname;
  if (b->o.only & SEL_COLD) {
    fprintf(stderr, "akv-bench: cold start: seeding %lu keys\n", b->o.keys);
    if (cold_seed(b, &coldkey, &rep->cold) == 0) {
      rep->cold.ran = true;
      fprintf(stderr, "akv-bench: cold start: raw listing, module (fresh, second process)\n");
      cold_pairs(b, &coldkey, cache_cold, &rep->cold);
      cold_raw_getall(b, &rep->cold);
      module_procs(b, b->cold_url, &coldkey, cache_cold, 1, &rep->cold.mod[1]);
    }
  }
  if (b->o.only & SEL_PROCS) {
    fprintf(stderr, "akv-bench: %lu processes signing at once from an empty cache\n", b->o.procs);
    module_procs(b, b->vault_url, &b->ec, cache_par, (unsigned)b->o.procs, &rep->cold.par);
  }
  EVP_PKEY_free(coldkey.pub);
  free(coldkey.kid);
  free(cache_main);
  free(cache_cold);
  free(cache_par);
}

static void bench_free(struct bench *b, struct report *rep)
{
  for (size_t i = 0; i < rep->nsign; i++) {
    stats_clear(&rep->sign[i].st);
    free(rep->sign[i].lat);
  }
  for (size_t i = 0; i < rep->nlookup; i++) {
    stats_clear(&rep->lookup[i].st);
    free(rep->lookup[i].lat);
  }
  stats_clear(&rep->cold.raw_st);
  stats_clear(&rep->cold.rawget_st);
  stats_clear(&rep->cold.mod[0].st);
  stats_clear(&rep->cold.mod[1].st);
  stats_clear(&rep->cold.par.st);
  free(rep->sign);
  free(rep->lookup);
  http_close(&b->stats_http);
  free_secret(b->auth_header);
  free_secret(b->client_secret);
  free(b->ca_file);
  free(b->authority_host);
  free(b->tenant_id);
  free(b->client_id);
  free(b->stats_url);
  free(b->control_url);
  free(b->vault_url);
  free(b->cold_url);
  free(b->ready_path);
  free(b->self_exe);
  free(b->node_found);
  EVP_PKEY_free(b->rsa.pub);
  EVP_PKEY_free(b->ec.pub);
  free(b->rsa.kid);
  free(b->ec.kid);
}

int main(int argc, char **argv)
{
  struct bench b;
  struct report rep;
  pthread_t wd;
  char err[512] = "", tmpl[] = "/tmp/akv-bench.XXXXXX";
  int rc = 2;

  if (argc == 4 && strcmp(argv[1], "--cold-child") == 0)
    return cold_child(argv[2], argv[3]);

  memset(&b, 0, sizeof(b));
  memset(&rep, 0, sizeof(rep));
  rep.all_ok = true;
  if (parse_args(argc, argv, &b.o) != 0) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  b.ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  b.self_exe = realpath("/proc/self/exe", NULL);
  if (!b.self_exe) {
    fprintf(stderr, "akv-bench: cannot resolve /proc/self/exe: %s\n", strerror(errno));
    return 2;
  }
  watchdog_secs = b.o.max_time;
  if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0 || pthread_detach(wd) != 0) {
    fprintf(stderr, "akv-bench: cannot start the watchdog thread\n");
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "akv-bench: curl_global_init failed\n");
    return 2;
  }
  b.tmpdir = mkdtemp(tmpl);
  if (!b.tmpdir) {
    fprintf(stderr, "akv-bench: mkdtemp: %s\n", strerror(errno));
    return 2;
  }
  if (b.o.emulator) {
    b.ready_path = xasprintf("%s/ready.json", b.tmpdir);
    if (emulator_start(&b) != 0)
      goto out;
  } else {
    b.ready_path = xstrdup(b.o.ready_file);
    if (ready_parse(&b, err, sizeof(err)) != 0) {
      fprintf(stderr, "akv-bench: %s\n", err);
      goto out;
    }
  }
  if (http_open(&b.stats_http, b.ca_file, NULL, "application/json") != 0 ||
      token_fetch(&b, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-bench: %s\n", err[0] ? err : "curl init failed");
    goto out;
  }
  b.rsa.name = SIGN_KEY_RSA;
  b.rsa.rsa = true;
  b.ec.name = SIGN_KEY_EC;
  if (key_seed(&b, &b.rsa, err, sizeof(err)) != 0 || key_seed(&b, &b.ec, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-bench: seeding the sign keys: %s\n", err);
    goto out;
  }
  run_all(&b, &rep);
  run_checks(&b, &rep);
  print_report(&b, &rep);
  rc = rep.all_ok ? 0 : 1;
  if (b.o.json_out && write_json(&b, &rep, b.o.json_out) != 0)
    rc = 2;
out:
  emulator_stop(&b);
  if (b.tmpdir)
    nftw(b.tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  bench_free(&b, &rep);
  curl_global_cleanup();
  return rc;
}
