/* SPDX-License-Identifier: Apache-2.0 */
/* bench-memory: the memory a process holds per cached key (docs/performance.md "Memory per cached
 * key"). Starts its own emulator with four vaults (1,000 and 4,000 EC P-256 keys, 1,000 and 4,000
 * RSA-2048 keys), then, for each vault, one fresh process (`--child`) that loads the module with
 * the cache file off and:
 *   1. C_Initialize, C_OpenSession, reads its RSS (/proc/self/statm) and heap in use (mallinfo2);
 *   2. cold start: finds the last key by label and signs with it (timed from C_Initialize);
 *   3. lists every object (C_FindObjects with an empty template, which reads every key) and reads
 *      CKA_LABEL, CKA_ID, CKA_KEY_TYPE, CKA_MODULUS or CKA_EC_POINT and CKA_PUBLIC_KEY_INFO of
 * each;
 *   4. reads RSS and heap again: (after - before) / keys is the row's bytes per key;
 *   5. cached lookups for --duration seconds on one thread (find by class and label, then
 *      C_GetAttributeValue of CKA_KEY_TYPE, CKA_ID and CKA_MODULUS or CKA_EC_POINT), as akv-bench's
 *      cached-lookup row does, but over a slot of N keys.
 * Then a second child does the same with the cache file on, for the file's size per key. The
 * bytes each key adds beyond the process's fixed share are printed as the slope between the 1,000
 * and 4,000 key rows. --no-threads initialises with CKF_LIBRARY_CANT_CREATE_OS_THREADS (keys read
 * in the caller's thread: no reader threads' heaps in the RSS). --large adds two EC P-256 rows of
 * 6,000 and 20,000 keys (about 2 minutes more; their slope is printed too): large slots, which no
 * longer allocate blocks above glibc's mmap threshold (docs/performance.md, fourth pass).
 * RSA vaults are filled by importing 16 generated key pairs round robin (generating 5,000 RSA keys
 * would take minutes); each imported key is its own key version in the vault and in the module,
 * which shares no material between keys, so the memory is that of distinct keys.
 * Exit status: 0 when every row ran, 1 when one failed, 2 on a setup error. Never asserts a size.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>

extern char **environ;

#define API "api-version=7.5"
#define RSA_PAIRS 16

static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("bench-memory: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- child: the module in a fresh process ------------------------------------------------ */

static long rss_bytes(void)
{
  long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2)
    res = -1;
  fclose(f);
  return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static long heap_bytes(void)
{
  struct mallinfo2 mi = mallinfo2(); /* all arenas */
  return (long)(mi.uordblks + mi.hblkhd);
}

static CK_FUNCTION_LIST_PTR F;

#define CK(call)                                                                                   \
  do {                                                                                             \
    CK_RV rv_ = (call);                                                                            \
    if (rv_ != CKR_OK) {                                                                           \
      printf("{\"ok\":false,\"error\":\"%s: 0x%lx\"}\n", #call, (unsigned long)rv_);               \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE h = 0;
  CK_ULONG n = 0;
  CK(F->C_FindObjectsInit(s, t, 2));
  CK(F->C_FindObjects(s, &h, 1, &n));
  CK(F->C_FindObjectsFinal(s));
  if (n != 1) {
    printf("{\"ok\":false,\"error\":\"no private key labelled %s\"}\n", label);
    exit(1);
  }
  return h;
}

static int child(const char *module, const char *kty, unsigned keys, double duration)
{
  void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slot;
  CK_ULONG n = 1, got, i, total = 0;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE key, *all = NULL;
  CK_ULONG cap = 0;
  bool rsa = strcmp(kty, "rsa") == 0;
  CK_ATTRIBUTE_TYPE material = rsa ? CKA_MODULUS : CKA_EC_POINT;
  CK_MECHANISM mech = {rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA, NULL, 0};
  unsigned char msg[32] = {1}, sig[512], buf[4][2048];
  CK_ULONG siglen = sizeof(sig);
  char label[32];
  long rss0, rss1, heap0, heap1;
  double t0, cold_ms, t_end, lookups = 0, lookup_s;

  if (!dl)
    die("dlopen %s: %s", module, dlerror());
  *(void **)&get = dlsym(dl, "C_GetFunctionList");
  if (!get || get(&F) != CKR_OK)
    die("%s: no C_GetFunctionList", module);
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  if (getenv("BENCH_MEMORY_NO_THREADS")) /* --no-threads: keys read one after another */
    args.flags |= CKF_LIBRARY_CANT_CREATE_OS_THREADS;
  t0 = now_ms();
  CK(F->C_Initialize(&args));
  CK(F->C_GetSlotList(CK_TRUE, &slot, &n));
  CK(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
  rss0 = rss_bytes();
  heap0 = heap_bytes();

  /* Cold start: what a short-lived signing tool does first, timed from C_Initialize. */
  snprintf(label, sizeof(label), "k-%05u", keys - 1);
  key = find_one(s, CKO_PRIVATE_KEY, label);
  CK(F->C_SignInit(s, &mech, key));
  CK(F->C_Sign(s, msg, sizeof(msg), sig, &siglen));
  cold_ms = now_ms() - t0;

  /* Every object, every public attribute a consumer reads when it enumerates. */
  CK(F->C_FindObjectsInit(s, NULL, 0));
  for (;;) {
    if (total == cap) {
      cap = cap ? cap * 2 : 1024;
      all = realloc(all, cap * sizeof(*all));
      if (!all)
        die("out of memory");
    }
    CK(F->C_FindObjects(s, all + total, cap - total, &got));
    if (got == 0)
      break;
    total += got;
  }
  CK(F->C_FindObjectsFinal(s));
  for (i = 0; i < total; i++) {
    CK_ATTRIBUTE t[] = {{CKA_LABEL, buf[0], sizeof(buf[0])},
                        {CKA_ID, buf[1], sizeof(buf[1])},
                        {material, buf[2], sizeof(buf[2])},
                        {CKA_PUBLIC_KEY_INFO, buf[3], sizeof(buf[3])}};
    CK(F->C_GetAttributeValue(s, all[i], t, 4));
  }
  rss1 = rss_bytes();
  heap1 = heap_bytes();

  /* Cached lookups over a slot of `keys` keys. */
  t0 = now_ms();
  t_end = t0 + duration * 1e3;
  for (i = 0; now_ms() < t_end; i++) {
    CK_KEY_TYPE kt;
    CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_ID, buf[1], sizeof(buf[1])},
                        {material, buf[2], sizeof(buf[2])}};
    snprintf(label, sizeof(label), "k-%05lu", (unsigned long)(i * 7919 % keys));
    key = find_one(s, CKO_PRIVATE_KEY, label);
    CK(F->C_GetAttributeValue(s, key, t, 3));
    lookups++;
  }
  lookup_s = (now_ms() - t0) / 1e3;
  printf("{\"ok\":true,\"objects\":%lu,\"rss_before\":%ld,\"rss_after\":%ld,\"heap_before\":%ld,"
         "\"heap_after\":%ld,\"cold_ms\":%.1f,\"lookups_per_s\":%.0f}\n",
         (unsigned long)total, rss0, rss1, heap0, heap1, cold_ms, lookups / lookup_s);
  fflush(stdout);
  F->C_CloseSession(s);
  F->C_Finalize(NULL);
  free(all);
  return 0;
}

/* ---- parent: emulator, seeding, rows ----------------------------------------------------- */

struct buf {
  char *p;
  size_t n;
};

static size_t on_data(char *p, size_t sz, size_t nm, void *u)
{
  struct buf *b = u;
  char *q = realloc(b->p, b->n + sz * nm + 1);
  if (!q)
    return 0;
  memcpy(q + b->n, p, sz * nm);
  b->n += sz * nm;
  q[b->n] = 0;
  b->p = q;
  return sz * nm;
}

static CURL *H;
static const char *ca_file;

/* One HTTPS request; the reply body in *out (caller frees). Returns the HTTP status. */
static long http(const char *method, const char *url, const char *auth, const char *ctype,
                 const char *body, char **out)
{
  struct curl_slist *hd = NULL;
  struct buf b = {NULL, 0};
  long status = 0;
  char h[4096];

  curl_easy_reset(H);
  curl_easy_setopt(H, CURLOPT_URL, url);
  curl_easy_setopt(H, CURLOPT_CAINFO, ca_file);
  curl_easy_setopt(H, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(H, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(H, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(H, CURLOPT_TIMEOUT, 30L);
  if (auth) {
    snprintf(h, sizeof(h), "Authorization: Bearer %s", auth);
    hd = curl_slist_append(hd, h);
  }
  snprintf(h, sizeof(h), "Content-Type: %s", ctype);
  hd = curl_slist_append(hd, h);
  curl_easy_setopt(H, CURLOPT_HTTPHEADER, hd);
  if (body)
    curl_easy_setopt(H, CURLOPT_POSTFIELDS, body);
  if (curl_easy_perform(H) == CURLE_OK)
    curl_easy_getinfo(H, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hd);
  if (out)
    *out = b.p;
  else
    free(b.p);
  return status;
}

static char *b64url_bn(const BIGNUM *bn)
{
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int len = BN_num_bytes(bn), i, o = 0;
  unsigned char *raw = malloc((size_t)len);
  char *s = malloc((size_t)len * 4 / 3 + 4);
  if (!raw || !s)
    die("out of memory");
  BN_bn2bin(bn, raw);
  for (i = 0; i < len; i += 3) {
    unsigned v = (unsigned)raw[i] << 16 | (i + 1 < len ? raw[i + 1] : 0) << 8 |
                 (i + 2 < len ? raw[i + 2] : 0);
    s[o++] = al[v >> 18];
    s[o++] = al[(v >> 12) & 63];
    if (i + 1 < len)
      s[o++] = al[(v >> 6) & 63];
    if (i + 2 < len)
      s[o++] = al[v & 63];
  }
  s[o] = 0;
  free(raw);
  return s;
}

/* An import body {"key": {"kty":"RSA","n","e","d"}} of a fresh RSA-2048 key. */
static char *rsa_import_body(void)
{
  EVP_PKEY *pk = EVP_RSA_gen(2048);
  BIGNUM *bn[3] = {NULL, NULL, NULL};
  const char *names[3] = {OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D};
  char *v[3], *body;
  int i;
  if (!pk)
    die("RSA key generation failed");
  for (i = 0; i < 3; i++) {
    if (!EVP_PKEY_get_bn_param(pk, names[i], &bn[i]))
      die("RSA parameters");
    v[i] = b64url_bn(bn[i]);
    BN_clear_free(bn[i]);
  }
  if (asprintf(&body, "{\"key\":{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\",\"d\":\"%s\"}}", v[0],
               v[1], v[2]) < 0)
    die("out of memory");
  for (i = 0; i < 3; i++)
    free(v[i]);
  EVP_PKEY_free(pk);
  return body;
}

static const char *jstr(const cJSON *o, const char *k)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

struct row {
  const char *kty;
  unsigned keys;
  int large; /* run with --large, or when --only names it */
  char vault[32], url[256];
  cJSON *result;
  double rss, heap; /* added by the row's child, 0 when it failed */
};

static void seed(struct row *r, const char *token, char **rsa_bodies)
{
  char url[512];
  unsigned i;
  for (i = 0; i < r->keys; i++) {
    long st;
    if (strcmp(r->kty, "ec") == 0) {
      snprintf(url, sizeof(url), "%s/keys/k-%05u/create?" API, r->url, i);
      st = http("POST", url, token, "application/json", "{\"kty\":\"EC\",\"crv\":\"P-256\"}", NULL);
    } else {
      snprintf(url, sizeof(url), "%s/keys/k-%05u?" API, r->url, i);
      st = http("PUT", url, token, "application/json", rsa_bodies[i % RSA_PAIRS], NULL);
    }
    if (st != 200)
      die("seeding %s key %u: HTTP %ld", r->vault, i, st);
  }
}

/* --wrap "valgrind --tool=massif ...": a command line (split on spaces) the children run under. */
static char *wrap_argv[16];
static int wrap_n;

/* One child for row r; cache_file NULL keeps the cache file off. */
static cJSON *run_child(const char *self, const char *module, struct row *r, const char *dir,
                        const char *duration, const char *cache_file)
{
  char cfg[512], keys[16], line[4096], *argv[7 + 16];
  int w;
  FILE *f;
  int p[2], st;
  pid_t pid;
  posix_spawn_file_actions_t fa;
  ssize_t got;
  size_t n = 0;

  snprintf(cfg, sizeof(cfg), "%s/%s.json", dir, r->vault);
  f = fopen(cfg, "w");
  if (!f)
    die("%s: %s", cfg, strerror(errno));
  fprintf(f,
          "{\"cache_file\":\"%s\",\"ca_file\":\"%s\",\"allowed_hosts\":[\"localhost\"],"
          "\"slots\":[{\"url\":\"%s\",\"objects\":[\"keys\"]}]}\n",
          cache_file ? cache_file : "", ca_file, r->url);
  fclose(f);
  setenv("AKV_PKCS11_CONFIG", cfg, 1);
  snprintf(keys, sizeof(keys), "%u", r->keys);
  for (w = 0; w < wrap_n; w++)
    argv[w] = wrap_argv[w];
  argv[w++] = (char *)self;
  argv[w++] = "--child";
  argv[w++] = (char *)module;
  argv[w++] = (char *)r->kty;
  argv[w++] = keys;
  argv[w++] = (char *)duration;
  argv[w] = NULL;
  if (pipe(p) != 0)
    die("pipe: %s", strerror(errno));
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
    die("spawn %s: %s", argv[0], strerror(errno));
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  while (n < sizeof(line) - 1 && (got = read(p[0], line + n, sizeof(line) - 1 - n)) > 0)
    n += (size_t)got;
  line[n] = 0;
  close(p[0]);
  waitpid(pid, &st, 0);
  return cJSON_Parse(line);
}

int main(int argc, char **argv)
{
  const char *emulator = NULL, *module = NULL, *json_out = NULL, *duration = "2", *only = NULL;
  char dir[] = "/tmp/bench-memory-XXXXXX", ready[600], state[600], url[600], form[1024];
  char *text = NULL, *token = NULL, *reply = NULL, *rsa_bodies[RSA_PAIRS], self[4096];
  struct row rows[] = {{.kty = "ec", .keys = 1000},
                       {.kty = "ec", .keys = 4000},
                       {.kty = "rsa", .keys = 1000},
                       {.kty = "rsa", .keys = 4000},
                       {.kty = "ec", .keys = 6000, .large = 1},
                       {.kty = "ec", .keys = 20000, .large = 1}};
  size_t nrows = sizeof(rows) / sizeof(rows[0]), i;
  cJSON *ready_json = NULL, *vaults, *v, *tok, *out;
  pid_t emu = 0;
  int failed = 0, large = 0;
  unsigned seeded = 0;
  double t0;
  ssize_t sl;

  if (argc == 6 && strcmp(argv[1], "--child") == 0)
    return child(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 10), atof(argv[5]));
  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--emulator") == 0 && a + 1 < argc)
      emulator = argv[++a];
    else if (strcmp(argv[a], "--module") == 0 && a + 1 < argc)
      module = argv[++a];
    else if (strcmp(argv[a], "--json") == 0 && a + 1 < argc)
      json_out = argv[++a];
    else if (strcmp(argv[a], "--duration") == 0 && a + 1 < argc)
      duration = argv[++a];
    else if (strcmp(argv[a], "--no-threads") == 0)
      setenv("BENCH_MEMORY_NO_THREADS", "1", 1);
    else if (strcmp(argv[a], "--large") == 0)
      large = 1;
    else if (strcmp(argv[a], "--only") == 0 && a + 1 < argc)
      only = argv[++a];
    else if (strcmp(argv[a], "--wrap") == 0 && a + 1 < argc) {
      char *save = NULL, *tokn = strtok_r(argv[++a], " ", &save);
      for (; tokn && wrap_n < 15; tokn = strtok_r(NULL, " ", &save))
        wrap_argv[wrap_n++] = tokn;
    } else
      die("usage: bench-memory --emulator EXE --module SO [--json FILE] [--duration S] "
          "[--only ec-1000|ec-4000|rsa-1000|rsa-4000|ec-6000|ec-20000] [--large] [--no-threads] "
          "[--wrap 'CMD ARGS']");
  }
  if (!emulator || !module)
    die("--emulator and --module are required");
  sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (sl <= 0)
    die("readlink /proc/self/exe: %s", strerror(errno));
  self[sl] = 0;
  if (!mkdtemp(dir))
    die("mkdtemp: %s", strerror(errno));

  /* The emulator, one vault per row. */
  snprintf(ready, sizeof(ready), "%s/ready.json", dir);
  snprintf(state, sizeof(state), "%s/state", dir);
  {
    char *eargv[24] = {(char *)emulator, "--ready-file", ready, "--port-base", "0",
                       "--state",        state};
    int k = 7;
    for (i = 0; i < nrows; i++) {
      snprintf(rows[i].vault, sizeof(rows[i].vault), "mem-%s-%u", rows[i].kty, rows[i].keys);
      eargv[k++] = "--vault";
      eargv[k++] = rows[i].vault;
    }
    posix_spawn_file_actions_t efa;
    char log[600];
    eargv[k] = NULL;
    snprintf(log, sizeof(log), "%s/emulator.log", dir);
    posix_spawn_file_actions_init(&efa);
    posix_spawn_file_actions_addopen(&efa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&efa, 1, 2);
    if (posix_spawn(&emu, emulator, &efa, NULL, eargv, environ) != 0)
      die("cannot start %s", emulator);
    posix_spawn_file_actions_destroy(&efa);
  }
  for (t0 = now_ms(); now_ms() - t0 < 30000; usleep(50000)) {
    FILE *f = fopen(ready, "r");
    if (f) {
      text = calloc(1, 65536);
      if (text && fread(text, 1, 65535, f) > 0)
        ready_json = cJSON_Parse(text);
      fclose(f);
      free(text);
      if (ready_json)
        break;
    }
  }
  if (!ready_json)
    die("the emulator was not ready within 30 s");
  ca_file = jstr(ready_json, "ca_file");
  vaults = cJSON_GetObjectItemCaseSensitive(ready_json, "vaults");
  cJSON_ArrayForEach(v, vaults)
  {
    for (i = 0; i < nrows; i++) {
      if (jstr(v, "name") && strcmp(jstr(v, "name"), rows[i].vault) == 0)
        snprintf(rows[i].url, sizeof(rows[i].url), "%s", jstr(v, "url"));
    }
  }
  {
    char d1[600], d2[600];
    snprintf(d1, sizeof(d1), "%s/config", dir);
    snprintf(d2, sizeof(d2), "%s/cache", dir);
    if (mkdir(d1, 0700) != 0 || mkdir(d2, 0700) != 0)
      die("mkdir in %s: %s", dir, strerror(errno));
    setenv("XDG_CONFIG_HOME", d1, 1);
  }
  setenv("AZURE_TENANT_ID", jstr(ready_json, "tenant_id"), 1);
  setenv("AZURE_CLIENT_ID", jstr(ready_json, "client_id"), 1);
  setenv("AZURE_CLIENT_SECRET", jstr(ready_json, "client_secret"), 1);
  setenv("AZURE_AUTHORITY_HOST", jstr(ready_json, "authority_host"), 1);

  /* A token, then the keys. */
  curl_global_init(CURL_GLOBAL_DEFAULT);
  H = curl_easy_init();
  snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", jstr(ready_json, "authority_host"),
           jstr(ready_json, "tenant_id"));
  snprintf(form, sizeof(form),
           "grant_type=client_credentials&client_id=%s&client_secret=%s"
           "&scope=https%%3A%%2F%%2Fvault.azure.net%%2F.default",
           jstr(ready_json, "client_id"), jstr(ready_json, "client_secret"));
  if (http("POST", url, NULL, "application/x-www-form-urlencoded", form, &reply) != 200)
    die("token request failed");
  tok = cJSON_Parse(reply);
  token = tok && jstr(tok, "access_token") ? strdup(jstr(tok, "access_token")) : NULL;
  cJSON_Delete(tok);
  free(reply);
  if (!token)
    die("no access_token in the token reply");
  for (i = 0; i < RSA_PAIRS; i++)
    rsa_bodies[i] = rsa_import_body();
  t0 = now_ms();
  for (i = 0; i < nrows; i++) {
    if ((only && strcmp(only, rows[i].vault + 4) != 0) || (!only && rows[i].large && !large))
      continue; /* not run: left empty */
    seed(&rows[i], token, rsa_bodies);
    seeded += rows[i].keys;
  }
  fprintf(stderr, "bench-memory: seeded %u keys in %.1f s\n", seeded, (now_ms() - t0) / 1e3);

  printf("Memory per cached key (cache file off, one fresh process per row):\n\n");
  printf(
      "| key | keys | RSS added | RSS / key | heap / key | cache file / key | cached lookups/s | "
      "cold start ms |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  out = cJSON_CreateArray();
  for (i = 0; i < nrows; i++) {
    struct row *r = &rows[i];
    cJSON *res;
    if ((only && strcmp(only, r->vault + 4) != 0) || (!only && r->large && !large))
      continue;
    res = run_child(self, module, r, dir, duration, NULL);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(res, "ok");
    if (!cJSON_IsTrue(ok)) {
      printf("| %s | %u | failed: %s | | | | |\n", r->kty, r->keys,
             res && jstr(res, "error") ? jstr(res, "error") : "no result");
      failed = 1;
      cJSON_Delete(res);
      continue;
    }
#define NUM(k) cJSON_GetObjectItemCaseSensitive(res, k)->valuedouble
    {
      /* The same listing with the cache file on: its size per key (written at C_Finalize). */
      char cf[700];
      struct stat sb;
      cJSON *res2;
      snprintf(cf, sizeof(cf), "%s/cache/%s.json", dir, r->vault);
      res2 = run_child(self, module, r, dir, "0", cf);
      cJSON_AddNumberToObject(res, "cache_file_bytes",
                              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res2, "ok")) &&
                                      stat(cf, &sb) == 0
                                  ? (double)sb.st_size
                                  : -1);
      cJSON_Delete(res2);
    }
    {
      double rss = NUM("rss_after") - NUM("rss_before");
      double heap = NUM("heap_after") - NUM("heap_before");
      cJSON_AddStringToObject(res, "key", strcmp(r->kty, "ec") == 0 ? "EC P-256" : "RSA-2048");
      cJSON_AddNumberToObject(res, "keys", r->keys);
      cJSON_AddNumberToObject(res, "rss_per_key", rss / r->keys);
      cJSON_AddNumberToObject(res, "heap_per_key", heap / r->keys);
      printf("| %s | %u | %.2f MB | %.0f B | %.0f B | %.0f B | %.0f | %.1f |\n",
             strcmp(r->kty, "ec") == 0 ? "EC P-256" : "RSA-2048", r->keys, rss / 1e6, rss / r->keys,
             heap / r->keys, NUM("cache_file_bytes") / r->keys, NUM("lookups_per_s"),
             NUM("cold_ms"));
      r->rss = rss;
      r->heap = heap;
    }
#undef NUM
    cJSON_AddItemToArray(out, res);
  }
  /* What each key costs beyond the process's fixed share (connections, threads, code pages): the
   * slope between the 1,000 and 4,000 key rows. */
  for (i = 0; i + 1 < nrows; i += 2) {
    if (rows[i].rss > 0 && rows[i + 1].rss > 0) {
      double dk = (double)(rows[i + 1].keys - rows[i].keys);
      printf("\n%s, each key beyond %u: RSS %.0f B, heap %.0f B",
             strcmp(rows[i].kty, "ec") == 0 ? "EC P-256" : "RSA-2048", rows[i].keys,
             (rows[i + 1].rss - rows[i].rss) / dk, (rows[i + 1].heap - rows[i].heap) / dk);
    }
  }
  printf("\n");
  if (json_out) {
    char *s = cJSON_Print(out);
    FILE *f = fopen(json_out, "w");
    if (f && s) {
      fputs(s, f);
      fputc('\n', f);
    }
    if (f)
      fclose(f);
    free(s);
  }
  cJSON_Delete(out);
  kill(emu, SIGTERM);
  waitpid(emu, NULL, 0);
  for (i = 0; i < RSA_PAIRS; i++)
    free(rsa_bodies[i]);
  free(token);
  cJSON_Delete(ready_json);
  curl_easy_cleanup(H);
  {
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
      fprintf(stderr, "bench-memory: could not remove %s\n", dir);
  }
  return failed;
}
