/* SPDX-License-Identifier: Apache-2.0 */
/* bench-share-token: benchmark row (1) of docs/performance.md, "A second signing process".
 *
 * What a short-lived signing process costs once another process has run before it (the cache
 * file warm, the access token in the kernel keyring: docs/security.md "The shared access token"):
 *   1. vault requests and token requests per fresh signing process, counted by the emulator
 *      (goal: 1 and 0);
 *   2. its wall time (fork, exec, dlopen of the module, C_Initialize, C_FindObjects by label,
 *      C_Sign, C_Finalize, exit) with the emulator's latency:MS fault on every vault request (a
 *      WAN-like round trip), against the same with share_token false (a token request per process)
 *      and against raw libcurl doing the same in a fresh process: the token read from a file, one
 *      POST keys/NAME/sign. Modes are interleaved run by run; medians and p90 reported.
 * Every signature of the first run of each mode is verified with the vault's public key.
 *
 * The children are this program itself (--child module|raw ...), so the start-up cost of a process
 * is the same for every mode. The program runs in a session keyring of its own (a fresh one), so a
 * key left by another run is never found.
 *
 * --label-only: the first process finds its key by label alone too (no enumeration), so the cache
 * file holds no listing, only what its cold search read under the key's name.
 *
 * usage: bench-share-token --emulator PATH --module PATH [--json FILE] [--runs N] [--latency MS]
 *        [--smoke] [--label-only]   (exit 0 = measured and every check held; a speed is never
 *        asserted) */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <p11-kit/pkcs11.h>

extern char **environ;

#define KEY_NAME "bench-share-ec"
#define API "api-version=7.6"
#define CHILD_TIMEOUT_S 60
#define READY_WAIT_MS 20000

static char tmpdir[256];
static pid_t emu_pid = -1;

static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench-share-token: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (emu_pid > 0)
    kill(emu_pid, SIGTERM);
  exit(1);
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- small helpers -------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  char *b = NULL;
  long n;
  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 24) &&
      fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1)) &&
      fread(b, 1, (size_t)n, f) == (size_t)n) {
    b[n] = '\0';
    if (len)
      *len = (size_t)n;
  } else {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, data, len) != (ssize_t)len)
    die("cannot write %s: %s", path, strerror(errno));
  close(fd);
}

static size_t b64url_decode(const char *in, unsigned char *out, size_t cap)
{
  size_t n = strlen(in), pad = (4 - n % 4) % 4, o = 0;
  char *t = malloc(n + pad + 1);
  int dec;
  if (!t)
    return 0;
  for (size_t i = 0; i < n; i++)
    t[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
  memset(t + n, '=', pad);
  t[n + pad] = '\0';
  if ((n + pad) / 4 * 3 <= cap + 2) {
    unsigned char *tmp = malloc((n + pad) / 4 * 3 + 1);
    dec = tmp ? EVP_DecodeBlock(tmp, (unsigned char *)t, (int)(n + pad)) : -1;
    if (dec >= 0 && (size_t)dec - pad <= cap) {
      o = (size_t)dec - pad;
      memcpy(out, tmp, o);
    }
    free(tmp);
  }
  free(t);
  return o;
}

static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  for (int i = 0; i < len; i++)
    out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
  while (len > 0 && out[len - 1] == '=')
    out[--len] = '\0';
}

/* ---- HTTP (libcurl) ------------------------------------------------------------------------- */

struct resp {
  char *buf;
  size_t len;
};

static size_t on_data(char *p, size_t sz, size_t n, void *u)
{
  struct resp *r = u;
  char *nb = realloc(r->buf, r->len + sz * n + 1);
  if (!nb)
    return 0;
  r->buf = nb;
  memcpy(r->buf + r->len, p, sz * n);
  r->len += sz * n;
  r->buf[r->len] = '\0';
  return sz * n;
}

/* One request; the status, or -1 without an answer. *body (malloc'd) gets the reply. */
static long http(const char *method, const char *url, const char *ca, const char *bearer,
                 const char *ctype, const char *data, char **body)
{
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  struct resp r = {NULL, 0};
  char auth[8192];
  long status = -1;
  if (!c)
    return -1;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  if (bearer) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
    h = curl_slist_append(h, auth);
  }
  if (data) {
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "application/json");
    h = curl_slist_append(h, ct);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (body)
    *body = r.buf;
  else
    free(r.buf);
  return status;
}

/* The "value" of a sign reply, decoded into sig; its length or 0. */
static size_t sign_value(const char *reply, unsigned char *sig, size_t cap)
{
  cJSON *doc = cJSON_Parse(reply ? reply : "");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "value");
  size_t n = cJSON_IsString(v) ? b64url_decode(v->valuestring, sig, cap) : 0;
  cJSON_Delete(doc);
  return n;
}

/* ---- the children --------------------------------------------------------------------------- */

/* module CHILD: dlopen, C_Initialize (AKV_PKCS11_CONFIG), find the private key by label, sign the
 * digest with CKM_ECDSA, write the signature to out. With list, every object is enumerated first
 * (the listing a search by label alone does not wait for), so that the cache file is warm. */
static int child_module(const char *module, const char *label, const char *digest_hex,
                        const char *out, int list)
{
  CK_OBJECT_HANDLE all[64];
  CK_ULONG nall = 0;
  CK_FUNCTION_LIST_PTR f;
  CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
  CK_SLOT_ID slots[8];
  CK_ULONG ns = 8, found = 0, siglen = 256;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE key;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
  unsigned char digest[32], sig[256];
  void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  for (int i = 0; i < 32; i++)
    sscanf(digest_hex + 2 * i, "%2hhx", &digest[i]);
  if (!h || !(gfl = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList")) ||
      gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK)
    return 2;
  if (f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK || !ns ||
      f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    return 3;
  if (list && (f->C_FindObjectsInit(s, NULL, 0) != CKR_OK ||
               f->C_FindObjects(s, all, 64, &nall) != CKR_OK || f->C_FindObjectsFinal(s) != CKR_OK))
    return 3;
  if (f->C_FindObjectsInit(s, tmpl, 2) != CKR_OK ||
      f->C_FindObjects(s, &key, 1, &found) != CKR_OK || f->C_FindObjectsFinal(s) != CKR_OK ||
      found != 1 || f->C_SignInit(s, &mech, key) != CKR_OK ||
      f->C_Sign(s, digest, sizeof(digest), sig, &siglen) != CKR_OK)
    return 3;
  write_file(out, sig, siglen);
  f->C_Finalize(NULL);
  return 0;
}

/* raw CHILD: the token from a file, one POST keys/NAME/sign with libcurl, the signature to out. */
static int child_raw(const char *vault, const char *ca, const char *token_file,
                     const char *digest_hex, const char *out)
{
  unsigned char digest[32], sig[256];
  char url[1024], body[256], v64[64], *reply = NULL, *tok;
  size_t n;
  long st;
  for (int i = 0; i < 32; i++)
    sscanf(digest_hex + 2 * i, "%2hhx", &digest[i]);
  if (!(tok = read_file(token_file, NULL)))
    return 2;
  tok[strcspn(tok, "\r\n")] = '\0';
  b64url_encode(digest, 32, v64);
  snprintf(url, sizeof(url), "%s/keys/" KEY_NAME "/sign?" API, vault);
  snprintf(body, sizeof(body), "{\"alg\":\"ES256\",\"value\":\"%s\"}", v64);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  st = http("POST", url, ca, tok, NULL, body, &reply);
  n = st == 200 ? sign_value(reply, sig, sizeof(sig)) : 0;
  free(reply);
  free(tok);
  if (!n)
    return 3;
  write_file(out, sig, n);
  curl_global_cleanup();
  return 0;
}

/* ---- the parent ----------------------------------------------------------------------------- */

struct emu {
  char ca[512], authority[256], tenant[128], client[128], secret[256], stats[256], control[256];
  char vault[256];
};

static void jstr(const cJSON *o, const char *name, char *dst, size_t len)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= len)
    die("the ready file has no usable \"%s\"", name);
  memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
}

static void emu_start(const char *emulator, struct emu *e)
{
  char ready[512], state[512];
  char *argv[] = {(char *)emulator, "--ready-file", ready,     "--port-base", "0",
                  "--state",        state,          "--vault", "share1",      NULL};
  double t0 = now_ms();
  cJSON *doc = NULL;
  char log[512];
  posix_spawn_file_actions_t fa;
  snprintf(ready, sizeof(ready), "%s/ready.json", tmpdir);
  snprintf(state, sizeof(state), "%s/emu-state", tmpdir);
  snprintf(log, sizeof(log), "%s/emulator.log", tmpdir);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (posix_spawn(&emu_pid, emulator, &fa, NULL, argv, environ) != 0)
    die("cannot start %s", emulator);
  posix_spawn_file_actions_destroy(&fa);
  while (now_ms() - t0 < READY_WAIT_MS) {
    char *txt = read_file(ready, NULL);
    doc = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (doc && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "vaults")) > 0)
      break;
    cJSON_Delete(doc);
    doc = NULL;
    usleep(50000);
  }
  if (!doc)
    die("the emulator wrote no ready file within %d ms", READY_WAIT_MS);
  jstr(doc, "ca_file", e->ca, sizeof(e->ca));
  jstr(doc, "authority_host", e->authority, sizeof(e->authority));
  jstr(doc, "tenant_id", e->tenant, sizeof(e->tenant));
  jstr(doc, "client_id", e->client, sizeof(e->client));
  jstr(doc, "client_secret", e->secret, sizeof(e->secret));
  jstr(doc, "stats_url", e->stats, sizeof(e->stats));
  jstr(doc, "control_url", e->control, sizeof(e->control));
  jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "vaults"), 0), "url", e->vault,
       sizeof(e->vault));
  cJSON_Delete(doc);
}

static void control(const struct emu *e, const char *path, const char *body)
{
  char url[512];
  snprintf(url, sizeof(url), "%s/%s", e->control, path);
  if (http("POST", url, e->ca, NULL, "text/plain", body ? body : "", NULL) != 200)
    die("POST %s failed", url);
}

/* requests_total and by_operation.token from the emulator's stats; by_operation as JSON text
 * into ops (when not NULL). */
static void stats(const struct emu *e, long *total, long *token, char *ops, size_t opslen)
{
  char *body = NULL;
  cJSON *doc;
  if (http("GET", e->stats, e->ca, NULL, NULL, NULL, &body) != 200)
    die("GET %s failed", e->stats);
  doc = cJSON_Parse(body);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "requests_total");
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(doc, "by_operation"), "token");
  if (!cJSON_IsNumber(t))
    die("the stats have no requests_total");
  *total = (long)t->valuedouble;
  *token = cJSON_IsNumber(k) ? (long)k->valuedouble : 0; /* absent: none yet */
  if (ops) {
    char *txt = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "by_operation"));
    snprintf(ops, opslen, "%s", txt ? txt : "{}");
    free(txt);
  }
  cJSON_Delete(doc);
  free(body);
}

/* A token from the emulator's Entra endpoint (for seeding and for the raw child's file). */
static char *get_token(const struct emu *e)
{
  char url[512], form[1024], *body = NULL, *tok = NULL;
  cJSON *doc;
  const cJSON *v;
  snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", e->authority, e->tenant);
  snprintf(form, sizeof(form),
           "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=https%%3A%%2F%%2F"
           "vault.azure.net%%2F.default",
           e->client, e->secret);
  if (http("POST", url, e->ca, NULL, "application/x-www-form-urlencoded", form, &body) != 200)
    die("token request failed");
  doc = cJSON_Parse(body);
  v = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
  if (cJSON_IsString(v))
    tok = strdup(v->valuestring);
  cJSON_Delete(doc);
  free(body);
  if (!tok)
    die("no access_token in the token reply");
  return tok;
}

/* Creates the EC key; its public key as an EVP_PKEY. */
static EVP_PKEY *seed_key(const struct emu *e, const char *tok)
{
  char url[512], *body = NULL;
  unsigned char pt[65];
  cJSON *doc;
  const cJSON *k;
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *pc;
  OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params;
  snprintf(url, sizeof(url), "%s/keys/" KEY_NAME "/create?" API, e->vault);
  if (http("POST", url, e->ca, tok, NULL, "{\"kty\":\"EC\",\"crv\":\"P-256\"}", &body) != 200)
    die("creating the key failed: %s", body ? body : "(no answer)");
  doc = cJSON_Parse(body);
  k = cJSON_GetObjectItemCaseSensitive(doc, "key");
  pt[0] = 4;
  if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(k, "x")) ||
      b64url_decode(cJSON_GetObjectItemCaseSensitive(k, "x")->valuestring, pt + 1, 32) != 32 ||
      b64url_decode(cJSON_GetObjectItemCaseSensitive(k, "y")->valuestring, pt + 33, 32) != 32)
    die("the created key has no P-256 point");
  cJSON_Delete(doc);
  free(body);
  OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
  params = OSSL_PARAM_BLD_to_param(b);
  pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
  if (!pc || EVP_PKEY_fromdata_init(pc) != 1 ||
      EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    die("cannot build the public key");
  EVP_PKEY_CTX_free(pc);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(b);
  return pkey;
}

/* 1 when the r||s signature in file verifies over digest. */
static int verify(EVP_PKEY *pkey, const unsigned char *digest, const char *file)
{
  size_t n = 0;
  char *raw = read_file(file, &n);
  ECDSA_SIG *es = ECDSA_SIG_new();
  unsigned char *der = NULL;
  int dl, ok = 0;
  EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new(pkey, NULL);
  if (raw && n == 64 && es &&
      ECDSA_SIG_set0(es, BN_bin2bn((unsigned char *)raw, 32, NULL),
                     BN_bin2bn((unsigned char *)raw + 32, 32, NULL)) == 1 &&
      (dl = i2d_ECDSA_SIG(es, &der)) > 0 && vc && EVP_PKEY_verify_init(vc) == 1)
    ok = EVP_PKEY_verify(vc, der, (size_t)dl, digest, 32) == 1;
  EVP_PKEY_CTX_free(vc);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  free(raw);
  return ok;
}

enum mode { M_SHARED, M_UNSHARED, M_RAW, M_N };
static const char *const mode_names[M_N] = {"module, shared token", "module, share_token false",
                                            "raw libcurl, token from a file"};
static const char *const mode_keys[M_N] = {"module_shared", "module_unshared", "raw"};

struct ctx {
  const char *self, *module;
  struct emu e;
  char cfg[M_N][512], tokfile[512], sigfile[512], digest_hex[65];
  int list; /* the next module child enumerates every object first */
  unsigned char digest[32];
};

/* One fresh process of mode m; its wall time in ms (die on failure), its CPU time (user + system)
 * in *cpu_ms. */
static double run_child(struct ctx *c, enum mode m, double *cpu_ms)
{
  struct rusage ru;
  char *argv[10], envcfg[600];
  char **env;
  size_t ne = 0;
  pid_t pid;
  int status = 0;
  double t0, t;
  for (char **p = environ; *p; p++)
    ne++;
  env = calloc(ne + 2, sizeof(*env));
  if (!env)
    die("out of memory");
  ne = 0;
  for (char **p = environ; *p; p++)
    if (strncmp(*p, "AKV_PKCS11_CONFIG=", 18) != 0)
      env[ne++] = *p;
  snprintf(envcfg, sizeof(envcfg), "AKV_PKCS11_CONFIG=%s", c->cfg[m]);
  env[ne++] = envcfg;
  if (m == M_RAW) {
    char *a[] = {(char *)c->self, "--child",  "raw",         c->e.vault,
                 c->e.ca,         c->tokfile, c->digest_hex, c->sigfile};
    memcpy(argv, a, sizeof(a));
    argv[8] = NULL;
  } else {
    char *a[] = {(char *)c->self,   "--child", c->list ? "module-list" : "module",
                 (char *)c->module, KEY_NAME,  c->digest_hex,
                 c->sigfile};
    memcpy(argv, a, sizeof(a));
    argv[7] = NULL;
  }
  unlink(c->sigfile);
  t0 = now_ms();
  if (posix_spawn(&pid, c->self, NULL, NULL, argv, env) != 0)
    die("cannot start a child");
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
    ;
  t = now_ms() - t0;
  if (cpu_ms)
    *cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
              (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  free(env);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("the %s child failed (status %d)", mode_names[m], status);
  return t;
}

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
  qsort(v, (size_t)n, sizeof(*v), cmp_d);
  return v[(int)(p * (n - 1) + 0.5)];
}

static void write_config(struct ctx *c, enum mode m, int share)
{
  cJSON *o = cJSON_CreateObject(), *cred = cJSON_CreateObject(), *slots = cJSON_CreateArray(),
        *slot = cJSON_CreateObject(), *hosts = cJSON_CreateArray(), *objs = cJSON_CreateArray();
  char cache[512], *txt;
  snprintf(c->cfg[m], sizeof(c->cfg[m]), "%s/config-%d.json", tmpdir, (int)m);
  snprintf(cache, sizeof(cache), "%s/cache.json", tmpdir);
  cJSON_AddStringToObject(o, "ca_file", c->e.ca);
  cJSON_AddItemToArray(hosts, cJSON_CreateString("localhost"));
  cJSON_AddItemToObject(o, "allowed_hosts", hosts);
  cJSON_AddStringToObject(o, "cache_file", cache);
  cJSON_AddBoolToObject(o, "share_token", share);
  cJSON_AddStringToObject(cred, "type", "client_secret");
  cJSON_AddStringToObject(cred, "tenant_id", c->e.tenant);
  cJSON_AddStringToObject(cred, "client_id", c->e.client);
  cJSON_AddStringToObject(cred, "client_secret", c->e.secret);
  cJSON_AddStringToObject(cred, "authority_host", c->e.authority);
  cJSON_AddItemToObject(o, "credential", cred);
  cJSON_AddStringToObject(slot, "url", c->e.vault);
  cJSON_AddItemToArray(objs, cJSON_CreateString("keys"));
  cJSON_AddItemToObject(slot, "objects", objs);
  cJSON_AddItemToArray(slots, slot);
  cJSON_AddItemToObject(o, "slots", slots);
  txt = cJSON_Print(o);
  write_file(c->cfg[m], txt, strlen(txt));
  free(txt);
  cJSON_Delete(o);
}

int main(int argc, char **argv)
{
  const char *emulator = NULL, *json = NULL;
  int runs = 20, latency = 20, smoke = 0, keyring = 0, ok = 1, label_only = 0;
  struct ctx c;
  char path[600], *tok, fault[64], ops[512];
  long tot0, tok0, tot1, tok1;
  double t[M_N][2][200], cpu[M_N][200], med[M_N][2], p90[M_N][2], cpu_med[M_N];
  double per_req, per_tok;
  EVP_PKEY *pkey;
  FILE *jf;

  if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
    if ((strcmp(argv[2], "module") == 0 || strcmp(argv[2], "module-list") == 0) && argc == 7)
      return child_module(argv[3], argv[4], argv[5], argv[6], argv[2][6] == '-');
    if (strcmp(argv[2], "raw") == 0 && argc == 8)
      return child_raw(argv[3], argv[4], argv[5], argv[6], argv[7]);
    return 2;
  }
  memset(&c, 0, sizeof(c));
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--emulator") == 0 && i + 1 < argc)
      emulator = argv[++i];
    else if (strcmp(argv[i], "--module") == 0 && i + 1 < argc)
      c.module = argv[++i];
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      json = argv[++i];
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--latency") == 0 && i + 1 < argc)
      latency = atoi(argv[++i]);
    else if (strcmp(argv[i], "--smoke") == 0)
      smoke = 1;
    else if (strcmp(argv[i], "--label-only") == 0)
      label_only = 1;
    else
      die("usage: bench-share-token --emulator PATH --module PATH [--json FILE] [--runs N] "
          "[--latency MS] [--smoke] [--label-only]");
  }
  if (smoke)
    runs = 3;
  if (!emulator || !c.module || runs < 1 || runs > 200 || latency < 0 || latency > 10000)
    die("--emulator and --module are required; --runs 1..200, --latency 0..10000");
  c.self = realpath("/proc/self/exe", NULL);
  if (!c.self)
    die("cannot find this program");

  /* A session keyring of its own, inherited by the children (docs/security.md). */
  keyring = syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) >= 0;

  snprintf(tmpdir, sizeof(tmpdir), "%s/akv-bench-share-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmpdir))
    die("mkdtemp: %s", strerror(errno));
  /* The children's per-user files stay in the run's directory. */
  snprintf(path, sizeof(path), "%s/home", tmpdir);
  mkdir(path, 0700);
  setenv("HOME", path, 1);
  snprintf(path, sizeof(path), "%s/home/.config", tmpdir);
  mkdir(path, 0700);
  setenv("XDG_CONFIG_HOME", path, 1);
  snprintf(path, sizeof(path), "%s/home/.cache", tmpdir);
  mkdir(path, 0700);
  setenv("XDG_CACHE_HOME", path, 1);
  snprintf(path, sizeof(path), "%s/run", tmpdir);
  mkdir(path, 0700);
  setenv("XDG_RUNTIME_DIR", path, 1);
  unsetenv("AKV_PKCS11_LOG_FILE");
  unsetenv("AKV_PKCS11_DEBUG");

  curl_global_init(CURL_GLOBAL_DEFAULT);
  emu_start(emulator, &c.e);
  tok = get_token(&c.e);
  pkey = seed_key(&c.e, tok);
  snprintf(c.tokfile, sizeof(c.tokfile), "%s/token", tmpdir);
  write_file(c.tokfile, tok, strlen(tok));
  free(tok);
  snprintf(c.sigfile, sizeof(c.sigfile), "%s/sig", tmpdir);
  SHA256((const unsigned char *)"bench-share-token", 17, c.digest);
  for (int i = 0; i < 32; i++)
    sprintf(c.digest_hex + 2 * i, "%02x", c.digest[i]);
  write_config(&c, M_SHARED, 1);
  write_config(&c, M_UNSHARED, 0);
  write_config(&c, M_RAW, 1); /* not read by the raw child */

  /* The first process: lists (the cache file is then warm), fetches a token and shares it. With
   * --label-only it finds its key by label alone, as every later process does: the cache file then
   * holds what its cold search read under the key's name, no listing (docs/design.md "Cold search
   * by label"). */
  c.list = !label_only;
  run_child(&c, M_SHARED, NULL);
  c.list = 0;
  if (!verify(pkey, c.digest, c.sigfile))
    die("the first module signature does not verify");

  /* 1: requests per fresh process with the cache file warm and the token shared. */
  control(&c.e, "stats/reset", NULL);
  stats(&c.e, &tot0, &tok0, NULL, 0);
  for (int i = 0; i < runs; i++)
    run_child(&c, M_SHARED, NULL);
  stats(&c.e, &tot1, &tok1, ops, sizeof(ops));
  per_req = (double)(tot1 - tot0) / runs;
  per_tok = (double)(tok1 - tok0) / runs;

  /* 2: wall time, without and with latency, modes interleaved. */
  for (int l = 0; l < 2; l++) {
    snprintf(fault, sizeof(fault), "latency:%d", latency);
    control(&c.e, "faults", l ? fault : "");
    for (int i = 0; i < runs; i++)
      for (int m = 0; m < M_N; m++) {
        t[m][l][i] = run_child(&c, (enum mode)m, &cpu[m][i]);
        if (i == 0 && !verify(pkey, c.digest, c.sigfile)) {
          fprintf(stderr, "bench-share-token: a %s signature does not verify\n", mode_names[m]);
          ok = 0;
        }
      }
    for (int m = 0; m < M_N; m++) {
      med[m][l] = pct(t[m][l], runs, 0.5);
      p90[m][l] = pct(t[m][l], runs, 0.9);
      if (l == 0)
        cpu_med[m] = pct(cpu[m], runs, 0.5);
    }
  }
  control(&c.e, "faults", "");

  printf("bench-share-token: a fresh signing process with the cache file warm (%d runs each%s)\n",
         runs, label_only ? ", every process searching by label only" : "");
  printf("  kernel keyring: %s\n",
         keyring ? "yes (a session keyring of its own)" : "NOT AVAILABLE");
  printf("  vault requests per process: %.2f (goal 1), token requests per process: %.2f (goal 0)\n",
         per_req, per_tok);
  printf("  the emulator's counts for the %d processes: %s\n", runs, ops);
  for (int l = 0; l < 2; l++) {
    printf("  wall time per process, %s:\n", l ? fault : "no added latency");
    for (int m = 0; m < M_N; m++)
      printf("    %-32s median %7.1f ms  p90 %7.1f ms  (x%.2f of raw)\n", mode_names[m], med[m][l],
             p90[m][l], med[m][l] / med[M_RAW][l]);
  }
  printf("  CPU time per process (user + system, no added latency), median:\n");
  for (int m = 0; m < M_N; m++)
    printf("    %-32s %7.1f ms\n", mode_names[m], cpu_med[m]);
  if (json && (jf = fopen(json, "w"))) {
    fprintf(jf,
            "{\"row\":\"warm second process\",\"label_only\":%s,\"runs\":%d,\"keyring\":%s,"
            "\"requests_per_process\":%.3f,\"token_requests_per_process\":%.3f,"
            "\"latency_ms\":%d,\"wall_ms\":{",
            label_only ? "true" : "false", runs, keyring ? "true" : "false", per_req, per_tok,
            latency);
    for (int m = 0; m < M_N; m++)
      fprintf(jf,
              "%s\"%s\":{\"median\":%.2f,\"p90\":%.2f,\"median_latency\":%.2f,"
              "\"p90_latency\":%.2f,\"cpu_median\":%.2f}",
              m ? "," : "", mode_keys[m], med[m][0], p90[m][0], med[m][1], p90[m][1], cpu_med[m]);
    fprintf(jf, "}}\n");
    fclose(jf);
  }
  if (keyring && (per_req != 1.0 || per_tok != 0.0)) {
    fprintf(stderr,
            "bench-share-token: expected 1 vault request and 0 token requests per process\n");
    ok = 0;
  }
  EVP_PKEY_free(pkey);
  kill(emu_pid, SIGTERM);
  waitpid(emu_pid, NULL, 0);
  snprintf(path, sizeof(path), "rm -rf -- '%s'", tmpdir);
  if (system(path) != 0)
    fprintf(stderr, "bench-share-token: could not remove %s\n", tmpdir);
  curl_global_cleanup();
  return ok ? 0 : 1;
}
