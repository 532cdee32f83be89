/* SPDX-License-Identifier: Apache-2.0 */
/* bench-cold-label: benchmark row (0) of docs/performance.md, "Cold first signature by label".
 *
 * A fresh process with an empty cache (cache file off, no shared token) in a vault of N EC P-256
 * keys (1,000 and 5,000, seeded at the emulator's start) finds the last key by label and signs:
 *   1. the vault requests it made, counted by the emulator (goal: token + keys.get + keys.sign,
 *      whatever N), and that no list request was made;
 *   2. its time from dlopen to the signature (C_Initialize, C_FindObjects by label, C_Sign),
 *      against raw libcurl in a fresh process doing the token request, GET keys/NAME and
 *      POST keys/NAME/VERSION/sign (goal: at most 1.5x). Modes alternate run by run; medians,
 *      with each step's median, the fastest runs and the CPU time of each process over the same
 *      window (load-independent, unlike the wall time: docs/performance.md "Where the time goes").
 * The children are this program itself (--child module|raw ...). Every module run's signature is
 * checked to be 64 bytes and every run's counts must be the same.
 *
 * usage: bench-cold-label --emulator PATH --module PATH [--json FILE] [--runs N] [--keys N,N]
 * exit 0 = measured and every check held (a speed is never asserted). */
#include <dlfcn.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <p11-kit/pkcs11.h>

extern char **environ;

#define API "api-version=7.6"

static char workdir[256];
static pid_t emu = -1;

static void stop_emu(void)
{
  if (emu > 0) {
    kill(emu, SIGTERM);
    waitpid(emu, NULL, 0);
    emu = -1;
  }
}

/* Removes the work directory (seed files, emulator state, configurations). */
static void clean_workdir(void)
{
  char *argv[] = {"rm", "-rf", "--", workdir, NULL};
  pid_t pid;
  if (workdir[0] && posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0)
    waitpid(pid, NULL, 0);
}

static void fatal(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench-cold-label: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  stop_emu();
  clean_workdir();
  exit(1);
}

static double ms_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (every thread), in milliseconds: unlike the wall time, it does
 * not grow when other processes take the CPUs. */
static double cpu_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct buf {
  char *p;
  size_t n;
};

static size_t collect(char *d, size_t sz, size_t nm, void *u)
{
  struct buf *b = u;
  char *np = realloc(b->p, b->n + sz * nm + 1);
  if (!np)
    return 0;
  memcpy(np + b->n, d, sz * nm);
  b->p = np;
  b->n += sz * nm;
  b->p[b->n] = 0;
  return sz * nm;
}

/* One request on the handle c (kept alive between calls); the HTTP status, -1 without one. */
static long req(CURL *c, const char *url, const char *ca, const char *bearer, const char *form,
                const char *json, char **out)
{
  struct curl_slist *h = NULL;
  struct buf b = {NULL, 0};
  char line[4096];
  long st = -1;

  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  if (bearer) {
    snprintf(line, sizeof(line), "Authorization: Bearer %s", bearer);
    h = curl_slist_append(h, line);
  }
  if (form || json) {
    h = curl_slist_append(h, json ? "Content-Type: application/json"
                                  : "Content-Type: application/x-www-form-urlencoded");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json ? json : form);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all(h);
  if (out)
    *out = b.p;
  else
    free(b.p);
  return st;
}

/* The steps a child times: it prints its total wall time, the CPU time of the process over the
 * same window, then the wall milliseconds of each step. */
#define MSTEPS 5
#define RSTEPS 4
static const char *const mstep[MSTEPS] = {"dlopen", "C_Initialize", "slots+session",
                                          "find by label", "sign"};
static const char *const rstep[RSTEPS] = {"curl init", "token", "GET key", "sign"};

static const char *jget(const cJSON *o, const char *name)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

struct emu {
  char ca[512], vault[256], authority[256], tenant[128], client[128], secret[256], stats[256],
      control[256];
};

/* ---- children ---------------------------------------------------------------------------- */

/* module CONFIG MODULE LABEL: prints the milliseconds from dlopen to the signature's return. */
static int child_module(const char *module, const char *label)
{
  double c0 = cpu_ms(), t0 = ms_now();
  CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
  CK_FUNCTION_LIST_PTR f;
  CK_SLOT_ID slot[4];
  CK_ULONG ns = 4, found = 0, siglen = 256;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE key;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  unsigned char digest[32], sig[256];
  double st[MSTEPS];
  void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  int i;

  memset(digest, 0x42, sizeof(digest));
  if (!h || !(gfl = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList")) ||
      gfl(&f) != CKR_OK)
    return 2;
  st[0] = ms_now(); /* dlopen + C_GetFunctionList */
  if (f->C_Initialize(NULL) != CKR_OK)
    return 2;
  st[1] = ms_now();
  if (f->C_GetSlotList(CK_TRUE, slot, &ns) != CKR_OK || ns == 0 ||
      f->C_OpenSession(slot[0], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    return 2;
  st[2] = ms_now();
  if (f->C_FindObjectsInit(s, t, 2) != CKR_OK || f->C_FindObjects(s, &key, 1, &found) != CKR_OK ||
      f->C_FindObjectsFinal(s) != CKR_OK || found != 1)
    return 3;
  st[3] = ms_now();
  if (f->C_SignInit(s, &m, key) != CKR_OK ||
      f->C_Sign(s, digest, sizeof(digest), sig, &siglen) != CKR_OK || siglen != 64)
    return 3;
  st[4] = ms_now();
  printf("%.3f %.3f", st[4] - t0, cpu_ms() - c0);
  for (i = 0; i < MSTEPS; i++)
    printf(" %.3f", st[i] - (i ? st[i - 1] : t0));
  printf("\n");
  fflush(stdout);
  f->C_Finalize(NULL);
  return 0;
}

/* raw VAULT CA AUTHORITY TENANT CLIENT SECRET LABEL: token, GET keys/LABEL, sign; prints ms. */
static int child_raw(char **a)
{
  double c0 = cpu_ms(), t0 = ms_now();
  const char *vault = a[0], *ca = a[1], *label = a[6];
  char url[1024], form[1024], body[256], *reply = NULL, *tok = NULL, *kid = NULL;
  CURL *auth, *kv;
  cJSON *doc;
  double sp[RSTEPS];
  long st;
  int rc = 3, i;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  auth = curl_easy_init();
  kv = curl_easy_init();
  sp[0] = ms_now();
  snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", a[2], a[3]);
  snprintf(form, sizeof(form),
           "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=https%%3A%%2F%%2F"
           "vault.azure.net%%2F.default",
           a[4], a[5]);
  if (req(auth, url, ca, NULL, form, NULL, &reply) != 200 || !(doc = cJSON_Parse(reply)))
    goto out;
  tok = jget(doc, "access_token") ? strdup(jget(doc, "access_token")) : NULL;
  cJSON_Delete(doc);
  free(reply);
  reply = NULL;
  sp[1] = ms_now();
  snprintf(url, sizeof(url), "%s/keys/%s?" API, vault, label);
  if (!tok || req(kv, url, ca, tok, NULL, NULL, &reply) != 200 || !(doc = cJSON_Parse(reply)))
    goto out;
  kid = jget(cJSON_GetObjectItemCaseSensitive(doc, "key"), "kid")
            ? strdup(jget(cJSON_GetObjectItemCaseSensitive(doc, "key"), "kid"))
            : NULL;
  cJSON_Delete(doc);
  free(reply);
  reply = NULL;
  if (!kid || strrchr(kid, '/') == NULL)
    goto out;
  sp[2] = ms_now();
  snprintf(url, sizeof(url), "%s/keys/%s/%s/sign?" API, vault, label, strrchr(kid, '/') + 1);
  snprintf(body, sizeof(body), "{\"alg\":\"ES256\",\"value\":\"%s\"}",
           "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI");
  st = req(kv, url, ca, tok, NULL, body, &reply);
  if (st == 200 && reply && strstr(reply, "\"value\"")) {
    sp[3] = ms_now();
    printf("%.3f %.3f", sp[3] - t0, cpu_ms() - c0);
    for (i = 0; i < RSTEPS; i++)
      printf(" %.3f", sp[i] - (i ? sp[i - 1] : t0));
    printf("\n");
    rc = 0;
  }
out:
  free(reply);
  free(tok);
  free(kid);
  curl_easy_cleanup(auth);
  curl_easy_cleanup(kv);
  curl_global_cleanup();
  return rc;
}

/* ---- parent ------------------------------------------------------------------------------ */

static void start_emulator(const char *exe, unsigned long nkeys, struct emu *e)
{
  char seed[512], ready[512], state[512];
  char *argv[] = {(char *)exe, "--ready-file", ready,  "--port-base", "0",  "--state",
                  state,       "--vault",      "cold", "--seed",      seed, NULL};
  FILE *fp;
  cJSON *doc = NULL;
  unsigned long i;
  int tries;

  snprintf(seed, sizeof(seed), "%s/seed-%lu.json", workdir, nkeys);
  snprintf(ready, sizeof(ready), "%s/ready-%lu.json", workdir, nkeys);
  snprintf(state, sizeof(state), "%s/state-%lu", workdir, nkeys);
  mkdir(state, 0700);
  if (!(fp = fopen(seed, "w")))
    fatal("cannot write %s", seed);
  fputs("{\"keys\":[", fp);
  for (i = 0; i < nkeys; i++)
    fprintf(fp, "%s{\"name\":\"k-%lu\",\"kty\":\"EC\",\"crv\":\"P-256\"}", i ? "," : "", i);
  fputs("]}\n", fp);
  fclose(fp);
  if (posix_spawn(&emu, exe, NULL, NULL, argv, environ) != 0)
    fatal("cannot start %s", exe);
  for (tries = 0; tries < 1200 && !doc; tries++) { /* 120 s at most */
    struct timespec ts = {0, 100000000L};
    char *txt = NULL;
    long len;
    nanosleep(&ts, NULL);
    if ((fp = fopen(ready, "r"))) {
      fseek(fp, 0, SEEK_END);
      len = ftell(fp);
      rewind(fp);
      if (len > 0 && (txt = calloc(1, (size_t)len + 1)) && fread(txt, 1, (size_t)len, fp))
        doc = cJSON_Parse(txt);
      free(txt);
      fclose(fp);
    }
  }
  if (!doc)
    fatal("the emulator wrote no ready file");
#define COPY(dst, o, k)                                                                            \
  do {                                                                                             \
    const char *v_ = jget(o, k);                                                                   \
    if (!v_ || strlen(v_) >= sizeof(dst))                                                          \
      fatal("ready file: no %s", k);                                                               \
    strcpy(dst, v_);                                                                               \
  } while (0)
  COPY(e->ca, doc, "ca_file");
  COPY(e->authority, doc, "authority_host");
  COPY(e->tenant, doc, "tenant_id");
  COPY(e->client, doc, "client_id");
  COPY(e->secret, doc, "client_secret");
  COPY(e->stats, doc, "stats_url");
  COPY(e->control, doc, "control_url");
  COPY(e->vault, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "vaults"), 0), "url");
#undef COPY
  cJSON_Delete(doc);
}

struct counts {
  long total, token, get, list, sign;
};

static void read_counts(const struct emu *e, struct counts *c)
{
  CURL *h = curl_easy_init();
  char *body = NULL;
  cJSON *doc, *by;
  if (!h || req(h, e->stats, e->ca, NULL, NULL, NULL, &body) != 200 || !(doc = cJSON_Parse(body)))
    fatal("GET %s failed", e->stats);
  by = cJSON_GetObjectItemCaseSensitive(doc, "by_operation");
#define NUM(o, k)                                                                                  \
  (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, k))                                          \
       ? (long)cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble                                 \
       : 0)
  c->total = NUM(doc, "requests_total");
  c->token = NUM(by, "token");
  c->get = NUM(by, "keys.get");
  c->list = NUM(by, "keys.list");
  c->sign = NUM(by, "keys.sign");
#undef NUM
  cJSON_Delete(doc);
  free(body);
  curl_easy_cleanup(h);
}

static void reset_counts(const struct emu *e)
{
  CURL *h = curl_easy_init();
  char url[512];
  snprintf(url, sizeof(url), "%s/stats/reset", e->control);
  if (!h || req(h, url, e->ca, NULL, "x", NULL, NULL) != 200)
    fatal("POST %s failed", url);
  curl_easy_cleanup(h);
}

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Runs this program as a child; its printed total milliseconds (its CPU milliseconds in *cpu, its
 * nsteps step times in steps), or fatal. */
static double run_child(char **argv, char *const *envp, double *cpu, double *steps, int nsteps)
{
  int fd[2], st, i;
  pid_t pid;
  char out[256] = "", *p, *e;
  double total;
  ssize_t n;
  posix_spawn_file_actions_t fa;

  if (pipe(fd) != 0)
    fatal("pipe");
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
  posix_spawn_file_actions_addclose(&fa, fd[0]);
  if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, envp) != 0)
    fatal("cannot start a child");
  posix_spawn_file_actions_destroy(&fa);
  close(fd[1]);
  n = read(fd[0], out, sizeof(out) - 1);
  close(fd[0]);
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || n <= 0)
    fatal("child %s failed (status %d)", argv[2], st);
  total = strtod(out, &p);
  *cpu = strtod(p, &e);
  if (e == p)
    fatal("child %s printed no CPU time: %s", argv[2], out);
  p = e;
  for (i = 0; i < nsteps; i++, p = e)
    if ((steps[i] = strtod(p, &e)), e == p)
      fatal("child %s printed no step %d: %s", argv[2], i, out);
  return total;
}

/* The median of column col of n rows of width w (sorts a copy). */
static double median_col(const double *rows, int n, int w, int col)
{
  double *v = calloc((size_t)n, sizeof(double)), m;
  int i;
  if (!v)
    fatal("out of memory");
  for (i = 0; i < n; i++)
    v[i] = rows[i * w + col];
  qsort(v, (size_t)n, sizeof(double), cmp_d);
  m = v[n / 2];
  free(v);
  return m;
}

int main(int argc, char **argv)
{
  const char *emulator = NULL, *module = NULL, *json = NULL;
  unsigned long sizes[4] = {1000, 5000}, nsizes = 2, k;
  int runs = 41, i;
  cJSON *out, *rows;
  char host[256] = "";

  if (argc >= 4 && strcmp(argv[1], "--child") == 0)
    return strcmp(argv[2], "module") == 0 ? child_module(argv[3], argv[4])
           : argc >= 10                   ? child_raw(argv + 3)
                                          : 2;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--emulator") == 0)
      emulator = argv[i + 1];
    else if (strcmp(argv[i], "--module") == 0)
      module = argv[i + 1];
    else if (strcmp(argv[i], "--json") == 0)
      json = argv[i + 1];
    else if (strcmp(argv[i], "--runs") == 0)
      runs = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--keys") == 0)
      nsizes = (unsigned long)sscanf(argv[i + 1], "%lu,%lu", &sizes[0], &sizes[1]);
    else
      fatal("unknown argument %s", argv[i]);
  }
  if (!emulator || !module || runs < 1 || runs > 50 || nsizes < 1)
    fatal("usage: --emulator PATH --module PATH [--json FILE] [--runs 1..50] [--keys N[,N]]");
  snprintf(workdir, sizeof(workdir), "/tmp/akv-bench-cold-XXXXXX");
  if (!mkdtemp(workdir))
    fatal("mkdtemp");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  gethostname(host, sizeof(host) - 1);
  out = cJSON_CreateObject();
  cJSON_AddStringToObject(out, "row", "cold first signature by label");
  cJSON_AddNumberToObject(out, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
  rows = cJSON_AddArrayToObject(out, "results");
  printf("Cold first signature by label (fresh process, empty cache, EC P-256), %d runs per mode\n",
         runs);
  for (k = 0; k < nsizes; k++) {
    struct emu e;
    char cfg[4096], cfgpath[512], envcfg[600], label[64], **envp;
    double *tm = calloc((size_t)runs, sizeof(double)), *tr = calloc((size_t)runs, sizeof(double));
    double *sm = calloc((size_t)runs * MSTEPS, sizeof(double));
    double *sr = calloc((size_t)runs * RSTEPS, sizeof(double));
    double *cm = calloc((size_t)runs, sizeof(double)), *cr = calloc((size_t)runs, sizeof(double));
    struct counts c, first = {0, 0, 0, 0, 0};
    size_t ne = 0, j;
    FILE *fp;
    cJSON *row, *steps;

    if (!tm || !tr || !sm || !sr || !cm || !cr)
      fatal("out of memory");
    memset(&e, 0, sizeof(e));
    start_emulator(emulator, sizes[k], &e);
    snprintf(label, sizeof(label), "k-%lu", sizes[k] - 1);
    snprintf(cfg, sizeof(cfg),
             "{\"ca_file\":\"%s\",\"allowed_hosts\":[\"localhost\"],\"cache_file\":\"\","
             "\"share_token\":false,\"credential\":{\"type\":\"client_secret\",\"tenant_id\":"
             "\"%s\",\"client_id\":\"%s\",\"client_secret\":\"%s\",\"authority_host\":\"%s\"},"
             "\"slots\":[{\"url\":\"%s\",\"objects\":[\"keys\"]}]}",
             e.ca, e.tenant, e.client, e.secret, e.authority, e.vault);
    snprintf(cfgpath, sizeof(cfgpath), "%s/config-%lu.json", workdir, sizes[k]);
    if (!(fp = fopen(cfgpath, "w")) || fputs(cfg, fp) < 0 || fclose(fp) != 0)
      fatal("cannot write %s", cfgpath);
    chmod(cfgpath, 0600);
    snprintf(envcfg, sizeof(envcfg), "AKV_PKCS11_CONFIG=%s", cfgpath);
    while (environ[ne])
      ne++;
    envp = calloc(ne + 2, sizeof(*envp));
    for (j = 0; j < ne; j++)
      envp[j] = strncmp(environ[j], "AKV_PKCS11_CONFIG=", 18) == 0 ? envcfg : environ[j];
    envp[ne] = envcfg; /* a duplicate is harmless: getenv takes the first */
    for (i = 0; i < runs; i++) {
      char *am[] = {argv[0], "--child", "module", (char *)module, label, NULL};
      char *ar[] = {argv[0],  "--child", "raw",    e.vault, e.ca, e.authority,
                    e.tenant, e.client,  e.secret, label,   NULL};
      reset_counts(&e);
      tm[i] = run_child(am, envp, &cm[i], sm + i * MSTEPS, MSTEPS);
      read_counts(&e, &c);
      if (i == 0)
        first = c;
      else if (memcmp(&c, &first, sizeof(c)) != 0)
        fatal(
            "module run %d: requests %ld (token %ld, get %ld, list %ld, sign %ld) differ from the "
            "first run's",
            i, c.total, c.token, c.get, c.list, c.sign);
      tr[i] = run_child(ar, envp, &cr[i], sr + i * RSTEPS, RSTEPS);
    }
    qsort(tm, (size_t)runs, sizeof(double), cmp_d);
    qsort(tr, (size_t)runs, sizeof(double), cmp_d);
    qsort(cm, (size_t)runs, sizeof(double), cmp_d);
    qsort(cr, (size_t)runs, sizeof(double), cmp_d);
    printf("%5lu keys: module %.1f ms, raw libcurl %.1f ms (medians), ratio %.2fx; module "
           "requests: %ld vault (keys.get %ld, keys.sign %ld, keys.list %ld) + %ld token\n",
           sizes[k], tm[runs / 2], tr[runs / 2], tm[runs / 2] / tr[runs / 2], first.total,
           first.get, first.sign, first.list, first.token);
    printf("       module steps (medians, ms):");
    for (j = 0; j < MSTEPS; j++)
      printf(" %s %.2f;", mstep[j], median_col(sm, runs, MSTEPS, (int)j));
    printf("\n       raw steps (medians, ms):");
    for (j = 0; j < RSTEPS; j++)
      printf(" %s %.2f;", rstep[j], median_col(sr, runs, RSTEPS, (int)j));
    printf("\n       spread (min-max, ms): module %.1f-%.1f, raw %.1f-%.1f; fastest runs' ratio "
           "%.2fx; CPU (medians): module %.1f ms, raw %.1f ms, ratio %.2fx\n",
           tm[0], tm[runs - 1], tr[0], tr[runs - 1], tm[0] / tr[0], cm[runs / 2], cr[runs / 2],
           cm[runs / 2] / cr[runs / 2]);
    row = cJSON_CreateObject();
    cJSON_AddNumberToObject(row, "keys", (double)sizes[k]);
    cJSON_AddNumberToObject(row, "module_ms_median", tm[runs / 2]);
    cJSON_AddNumberToObject(row, "raw_ms_median", tr[runs / 2]);
    cJSON_AddNumberToObject(row, "ratio", tm[runs / 2] / tr[runs / 2]);
    cJSON_AddNumberToObject(row, "vault_requests", (double)first.total);
    cJSON_AddNumberToObject(row, "keys_get", (double)first.get);
    cJSON_AddNumberToObject(row, "keys_sign", (double)first.sign);
    cJSON_AddNumberToObject(row, "keys_list", (double)first.list);
    cJSON_AddNumberToObject(row, "token", (double)first.token);
    cJSON_AddNumberToObject(row, "module_ms_min", tm[0]);
    cJSON_AddNumberToObject(row, "module_ms_max", tm[runs - 1]);
    cJSON_AddNumberToObject(row, "raw_ms_min", tr[0]);
    cJSON_AddNumberToObject(row, "raw_ms_max", tr[runs - 1]);
    cJSON_AddNumberToObject(row, "ratio_fastest", tm[0] / tr[0]);
    cJSON_AddNumberToObject(row, "module_cpu_ms_median", cm[runs / 2]);
    cJSON_AddNumberToObject(row, "raw_cpu_ms_median", cr[runs / 2]);
    cJSON_AddNumberToObject(row, "cpu_ratio", cm[runs / 2] / cr[runs / 2]);
    steps = cJSON_AddObjectToObject(row, "module_steps_ms_median");
    for (j = 0; j < MSTEPS; j++)
      cJSON_AddNumberToObject(steps, mstep[j], median_col(sm, runs, MSTEPS, (int)j));
    steps = cJSON_AddObjectToObject(row, "raw_steps_ms_median");
    for (j = 0; j < RSTEPS; j++)
      cJSON_AddNumberToObject(steps, rstep[j], median_col(sr, runs, RSTEPS, (int)j));
    cJSON_AddItemToArray(rows, row);
    stop_emu();
    free(tm);
    free(tr);
    free(sm);
    free(sr);
    free(cm);
    free(cr);
    free(envp);
    if (first.list != 0 || first.get != 1 || first.sign != 1 || first.token != 1)
      fatal("the module's requests are not token + GET + sign");
  }
  if (json) {
    char *txt = cJSON_Print(out);
    FILE *fp = fopen(json, "w");
    if (!fp || !txt || fputs(txt, fp) < 0 || fclose(fp) != 0)
      fatal("cannot write %s", json);
    free(txt);
  }
  cJSON_Delete(out);
  curl_global_cleanup();
  clean_workdir();
  return 0;
}
