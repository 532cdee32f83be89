/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stress.c - N concurrent keep-alive clients run a mix of key operations (create,
 * get, list, sign, verify, encrypt/decrypt, delete+purge) against one akv-emulator
 * for STRESS_DURATION seconds (default 60). Passes when no request failed, the
 * emulator's RSS after the run is not growing compared to after the warm-up, and the
 * emulator exits 0 on SIGTERM.
 * Usage: stress AKV_EMULATOR   env: STRESS_DURATION (s), STRESS_CLIENTS (default 16)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define BODY_CAP (1024 * 1024)
#define MAX_CLIENTS 64

struct buf {
  char *data;
  size_t len;
  bool over;
};

static char ca_file[512], vault[256], token[4096];
static int stop_flag; /* __atomic accessed */
static long total_ops, total_errors;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
  struct buf *b = ud;
  size_t add = sz * n;
  if (b->len + add > BODY_CAP) {
    b->over = true;
    return 0;
  }
  char *nd = realloc(b->data, b->len + add + 1);
  if (!nd)
    return 0;
  b->data = nd;
  memcpy(b->data + b->len, p, add);
  b->len += add;
  b->data[b->len] = '\0';
  return add;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One request on the thread's handle (connection reused). Returns the status, *json the
 * parsed body (or NULL). */
static long request(CURL *c, const char *method, const char *url, const char *body, cJSON **json)
{
  struct buf b = {0};
  struct curl_slist *h = NULL;
  char auth[4200];
  long status = 0;
  snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
  h = curl_slist_append(h, auth);
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_HTTPGET, body ? 0L : 1L);
  if (!body)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  else
    fprintf(stderr, "stress: %s %s: %s\n", method, url, curl_easy_strerror(rc));
  *json = b.data ? cJSON_Parse(b.data) : NULL;
  free(b.data);
  curl_slist_free_all(h);
  return status;
}

static CURL *handle_new(void)
{
  CURL *c = curl_easy_init();
  if (!c)
    return NULL;
  curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  return c;
}

static const char *jstr(const cJSON *j, const char *a, const char *b)
{
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
  if (b)
    x = cJSON_GetObjectItemCaseSensitive(x, b);
  return cJSON_IsString(x) ? x->valuestring : NULL;
}

struct client {
  int id;
  long ops, errors;
};

/* Expect status `want`; count the op, report the first few failures. */
static bool expect(struct client *cl, long got, long want, const char *what, cJSON *j)
{
  cl->ops++;
  if (got == want)
    return true;
  cl->errors++;
  if (cl->errors <= 3) {
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    fprintf(stderr, "stress: client %d: %s: status %ld (want %ld) %.300s\n", cl->id, what, got,
            want, t ? t : "");
    free(t);
  }
  return false;
}

/* A request whose reply only has to carry status `want`. */
static void call_expect(struct client *cl, CURL *c, const char *method, const char *url,
                        const char *body, long want, const char *what)
{
  cJSON *j = NULL;
  long st = request(c, method, url, body, &j);
  expect(cl, st, want, what, j);
  cJSON_Delete(j);
}

/* Sign `digest` with key/alg, verify the signature on the service; counts errors. */
static void sign_verify(struct client *cl, CURL *c, const char *key, const char *alg,
                        const char *digest)
{
  char url[512], body[1024];
  cJSON *j = NULL, *j2 = NULL;
  snprintf(url, sizeof(url), "%s/keys/%s/sign?api-version=7.6", vault, key);
  snprintf(body, sizeof(body), "{\"alg\":\"%s\",\"value\":\"%s\"}", alg, digest);
  long st = request(c, "POST", url, body, &j);
  if (expect(cl, st, 200, "sign", j) && jstr(j, "value", NULL)) {
    snprintf(url, sizeof(url), "%s/keys/%s/verify?api-version=7.6", vault, key);
    snprintf(body, sizeof(body), "{\"alg\":\"%s\",\"digest\":\"%s\",\"value\":\"%s\"}", alg, digest,
             jstr(j, "value", NULL));
    st = request(c, "POST", url, body, &j2);
    if (expect(cl, st, 200, "verify", j2) && !cJSON_IsTrue(cJSON_GetObjectItem(j2, "value"))) {
      cl->errors++;
      fprintf(stderr, "stress: client %d: %s signature did not verify\n", cl->id, alg);
    }
  }
  cJSON_Delete(j);
  cJSON_Delete(j2);
}

static void *client_main(void *arg)
{
  struct client *cl = arg;
  CURL *c = handle_new();
  char url[512], body[1024], name[64];
  cJSON *j = NULL;
  long st;
  unsigned iter = 0;
  /* 32-byte digest and a short plaintext, base64url */
  const char *digest = "ltYuKr0-Qt5fUDMPuO_ExVmYNSeAd7IemqCzPB3wehw";
  const char *plain = "cGxhaW50ZXh0IGZvciB0aGUgc3RyZXNzIHRlc3Q";
  if (!c) {
    cl->errors++;
    return NULL;
  }
  snprintf(name, sizeof(name), "stress-client-%d", cl->id);
  while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
    iter++;
    snprintf(url, sizeof(url), "%s/keys/%s/create?api-version=7.6", vault, name);
    call_expect(cl, c, "POST", url, "{\"kty\":\"EC\",\"crv\":\"P-256\"}", 200, "create");
    snprintf(url, sizeof(url), "%s/keys/%s/?api-version=7.6", vault, name);
    call_expect(cl, c, "GET", url, NULL, 200, "get");

    snprintf(url, sizeof(url), "%s/keys?api-version=2025-07-01&maxresults=5", vault);
    st = request(c, "GET", url, NULL, &j);
    if (expect(cl, st, 200, "list", j)) {
      const char *next = jstr(j, "nextLink", NULL);
      if (next)
        call_expect(cl, c, "GET", next, NULL, 200, "list page 2");
    }
    cJSON_Delete(j);

    /* own EC key and the shared RSA key: sign, then verify on the service */
    sign_verify(cl, c, name, "ES256", digest);
    sign_verify(cl, c, "stress-rsa", "PS256", digest);
    snprintf(url, sizeof(url), "%s/keys/stress-rsa/encrypt?api-version=7.6", vault);
    snprintf(body, sizeof(body), "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%s\"}", plain);
    st = request(c, "POST", url, body, &j);
    if (expect(cl, st, 200, "encrypt", j) && jstr(j, "value", NULL)) {
      cJSON *j2 = NULL;
      char db[1024];
      snprintf(url, sizeof(url), "%s/keys/stress-rsa/decrypt?api-version=7.6", vault);
      snprintf(db, sizeof(db), "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%s\"}",
               jstr(j, "value", NULL));
      st = request(c, "POST", url, db, &j2);
      if (expect(cl, st, 200, "decrypt", j2)) {
        const char *v = jstr(j2, "value", NULL);
        if (!v || strcmp(v, plain) != 0) {
          cl->errors++;
          fprintf(stderr, "stress: client %d: decrypt returned the wrong plaintext\n", cl->id);
        }
      }
      cJSON_Delete(j2);
    }
    cJSON_Delete(j);

    /* every 4th round: delete and purge so the store stays bounded */
    if (iter % 4 == 0) {
      snprintf(url, sizeof(url), "%s/keys/%s?api-version=7.6", vault, name);
      call_expect(cl, c, "DELETE", url, NULL, 200, "delete");
      snprintf(url, sizeof(url), "%s/deletedkeys/%s?api-version=7.6", vault, name);
      call_expect(cl, c, "DELETE", url, NULL, 204, "purge");
    }
  }
  curl_easy_cleanup(c);
  return NULL;
}

static long rss_kb(pid_t pid)
{
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  char *b = NULL;
  if (!f)
    return NULL;
  b = calloc(1, 65536);
  if (b && fread(b, 1, 65535, f) == 0) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static long env_long(const char *name, long def, long lo, long hi)
{
  const char *v = getenv(name);
  char *end = NULL;
  if (!v || !*v)
    return def;
  long x = strtol(v, &end, 10);
  if (*end || x < lo || x > hi) {
    fprintf(stderr, "stress: %s must be %ld..%ld\n", name, lo, hi);
    exit(2);
  }
  return x;
}

int main(int argc, char **argv)
{
  long duration = env_long("STRESS_DURATION", 60, 3, 3600);
  long nclients = env_long("STRESS_CLIENTS", 16, 1, MAX_CLIENTS);
  char dir[] = "/tmp/akv-stress-XXXXXX", ready[600], state[600], logf[600];
  pid_t pid = -1;
  int rc = 1, status;
  cJSON *r = NULL, *j = NULL;
  char *text = NULL;
  pthread_t th[MAX_CLIENTS];
  struct client cl[MAX_CLIENTS];
  CURL *c = NULL;

  if (argc != 2) {
    fprintf(stderr, "usage: stress AKV_EMULATOR\n");
    return 2;
  }
  if (!mkdtemp(dir))
    return 99;
  snprintf(ready, sizeof(ready), "%s/ready.json", dir);
  snprintf(state, sizeof(state), "%s/state", dir);
  snprintf(logf, sizeof(logf), "%s/emu.log", dir);
  pid = fork();
  if (pid == 0) {
    if (!freopen(logf, "w", stdout) || !freopen(logf, "a", stderr))
      _exit(127);
    execl(argv[1], argv[1], "--ready-file", ready, "--state", state, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 600 && !(text = slurp(ready)); i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      fprintf(stderr, "stress: emulator exited early\n");
      pid = -1;
      rc = 99;
      goto out;
    }
    usleep(100000);
  }
  r = text ? cJSON_Parse(text) : NULL;
  const char *ca = jstr(r, "ca_file", NULL), *auth = jstr(r, "authority_host", NULL);
  const char *ten = jstr(r, "tenant_id", NULL), *cid = jstr(r, "client_id", NULL);
  const char *sec = jstr(r, "client_secret", NULL);
  const cJSON *v0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "vaults"), 0);
  const char *vu = jstr(v0, "url", NULL);
  if (!ca || !auth || !ten || !cid || !sec || !vu) {
    fprintf(stderr, "stress: emulator not ready / bad ready file\n");
    rc = 99;
    goto out;
  }
  snprintf(ca_file, sizeof(ca_file), "%s", ca);
  snprintf(vault, sizeof(vault), "%s", vu);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  /* token (client secret) */
  {
    struct buf b = {0};
    char url[512], form[1024];
    c = handle_new();
    char *es = curl_easy_escape(c, sec, 0);
    snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", auth, ten);
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&client_secret=%s"
             "&scope=https%%3A%%2F%%2Fvault.azure.net%%2F.default",
             cid, es);
    curl_free(es);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(c) != CURLE_OK || !b.data || !(j = cJSON_Parse(b.data)) ||
        !jstr(j, "access_token", NULL)) {
      fprintf(stderr, "stress: token request failed\n");
      free(b.data);
      goto out;
    }
    snprintf(token, sizeof(token), "%s", jstr(j, "access_token", NULL));
    free(b.data);
    cJSON_Delete(j);
    j = NULL;
    curl_easy_cleanup(c);
    c = handle_new();
    char u2[512];
    snprintf(u2, sizeof(u2), "%s/keys/stress-rsa/create?api-version=7.6", vault);
    if (request(c, "POST", u2, "{\"kty\":\"RSA\",\"key_size\":2048}", &j) != 200) {
      fprintf(stderr, "stress: cannot create the shared RSA key\n");
      goto out;
    }
    cJSON_Delete(j);
    j = NULL;
  }

  double t0 = now_s(), warm = duration / 6.0 < 2 ? 2 : duration / 6.0;
  for (long i = 0; i < nclients; i++) {
    cl[i].id = (int)i;
    cl[i].ops = cl[i].errors = 0;
    if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
      fprintf(stderr, "stress: pthread_create failed\n");
      __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
      nclients = i;
      break;
    }
  }
  long rss_warm = -1, rss_end = -1;
  while (now_s() - t0 < duration) {
    usleep(200000);
    if (rss_warm < 0 && now_s() - t0 >= warm)
      rss_warm = rss_kb(pid);
  }
  __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
  for (long i = 0; i < nclients; i++) {
    pthread_join(th[i], NULL);
    total_ops += cl[i].ops;
    total_errors += cl[i].errors;
  }
  double elapsed = now_s() - t0;
  usleep(300000);
  rss_end = rss_kb(pid);
  printf("stress: %ld clients, %.1f s, %ld operations (%.0f/s), %ld errors\n", nclients, elapsed,
         total_ops, (double)total_ops / elapsed, total_errors);
  printf("stress: emulator RSS after warm-up %ld KiB, at the end %ld KiB\n", rss_warm, rss_end);
  /* not growing: allow allocator slack (per-thread arenas) but no steady growth */
  bool rss_ok = rss_warm > 0 && rss_end > 0 && rss_end <= rss_warm + rss_warm / 4 + 16 * 1024;
  if (!rss_ok)
    fprintf(stderr, "stress: emulator RSS grew from %ld to %ld KiB\n", rss_warm, rss_end);
  rc = (total_errors == 0 && total_ops > 0 && rss_ok) ? 0 : 1;
out:
  if (c)
    curl_easy_cleanup(c);
  cJSON_Delete(j);
  cJSON_Delete(r);
  free(text);
  if (pid > 0) {
    kill(pid, SIGTERM);
    int waited = 0;
    for (int i = 0; i < 300; i++) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        waited = 1;
        break;
      }
      usleep(100000);
    }
    if (!waited) {
      fprintf(stderr, "stress: emulator ignored SIGTERM, killing it\n");
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      rc = 1;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "stress: emulator exit status %d\n", status);
      rc = 1;
    }
  }
  /* best-effort cleanup of the temp dir */
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "stress: could not remove %s\n", dir);
  curl_global_cleanup();
  return rc;
}
