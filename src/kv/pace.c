/* SPDX-License-Identifier: Apache-2.0 */
/* Pacing of a vault's cryptographic operations under its quota, shared by the user's processes
 * (docs/reliability.md "Pacing"). One budget per vault as a GCRA cell (the "theoretical arrival
 * time" of the next operation) in a 48-byte file under $XDG_RUNTIME_DIR/akv-pkcs11, read and
 * written under flock(2); a process that cannot use the file paces itself alone. */
#include "kv/pace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kv/http.h"
#include "util/log.h"

/* Pace at 97 % of the quota, with a burst of 1 % of the window: any window then holds at most
 * 1 + (S + tau) / cost <= N operations, what a sliding-window limit of N per S admits
 * (docs/reliability.md "Pacing"). */
#define PACE_MARGIN_PCT 3
#define PACE_BURST_PCT 1
#define PACE_DEFAULT_HOLD_MS 1000 /* a 429 without Retry-After */
#define PACE_MAX_HOLD_MS 60000    /* the longest a Retry-After holds every process back */
#define PACE_MAX_AHEAD_US (3600LL * 1000000) /* a cell further ahead is not believed */
#define PACE_DEFAULT_WAIT_MS 30000
#define PACE_MEMO 64
#define PACE_MAGIC 0x45434150564b41ULL /* "AKVPACE" */
#define PACE_VERSION 2u

/* The bucket file, host byte order (the file never leaves the machine). */
struct pace_file {
  uint64_t magic;
  uint32_t version;
  uint32_t size;
  uint64_t url_hash;
  uint64_t boot;  /* hash of the kernel's boot_id: the clock below is this boot's */
  int64_t tat_us; /* CLOCK_MONOTONIC µs */
  uint64_t check; /* FNV-1a of the fields above */
};

struct kv_pace {
  struct kv_pace *next;
  char *url;
  size_t url_len;
  uint64_t url_hash;
  uint64_t boot;
  int64_t cost_us[KV_PACE_NCLASS]; /* 0 = not paced */
  int64_t tau_us;
  pthread_mutex_t lock;
  int fd;         /* the bucket file, -1 = this process alone */
  char *path;     /* its path (messages) */
  int64_t tat_us; /* this process's cell when fd is -1 */
  int warned;
  unsigned refs;
  uint64_t memo[PACE_MEMO]; /* (name hash << 32) | RSA bits, atomics */
};

struct kv_pace_set {
  pthread_mutex_t lock;
  struct kv_pace *head;
};

/* ---- arithmetic ----------------------------------------------------------------------------- */

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

int64_t kv_pace_cost_us(uint32_t count, uint32_t window_s)
{
  if (!count || !window_s)
    return 0;
  return ((int64_t)window_s * 1000000 * 100) / ((int64_t)count * (100 - PACE_MARGIN_PCT));
}

int64_t kv_pace_tau_us(uint32_t count, uint32_t window_s)
{
  if (!count || !window_s)
    return 0;
  return (int64_t)window_s * 1000000 * PACE_BURST_PCT / 100;
}

int64_t kv_pace_gcra(int64_t *tat, int64_t now_us, int64_t cost_us, int64_t tau_us,
                     int64_t deadline_us)
{
  int64_t t = *tat > now_us ? *tat : now_us;
  int64_t go = t - tau_us;
  int64_t wait = go > now_us ? go - now_us : 0;
  if (now_us + wait > deadline_us)
    return -1;
  *tat = t + cost_us;
  return wait;
}

int64_t kv_pace_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum kv_pace_class kv_pace_class_of(const char *alg, unsigned rsa_bits)
{
  if (alg && alg[0] == 'E' && alg[1] == 'S')
    return KV_PACE_EC;
  if (alg && (alg[0] == 'H' || alg[0] == 'A' || strncmp(alg, "CKM_", 4) == 0))
    return KV_PACE_OCT; /* HS256.., A256KW, A256GCM, A128CBCPAD, CKM_AES_KEY_WRAP */
  if (rsa_bits > 3072)
    return KV_PACE_RSA4096;
  if (rsa_bits > 2048)
    return KV_PACE_RSA3072;
  return KV_PACE_RSA2048;
}

/* ---- the bucket file ------------------------------------------------------------------------ */

int kv_pace_file_check(int fd, char *why, size_t why_len)
{
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(why, why_len, "cannot be examined (%s)", strerror(errno));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(why, why_len, "is not a regular file");
    return -1;
  }
  if (st.st_uid != geteuid()) {
    snprintf(why, why_len, "is owned by uid %lu, not by this user (uid %lu)",
             (unsigned long)st.st_uid, (unsigned long)geteuid());
    return -1;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(why, why_len, "is writable by group or others (mode %03o)",
             (unsigned)(st.st_mode & 0777));
    return -1;
  }
  if (st.st_size != 0 && st.st_size != (off_t)sizeof(struct pace_file)) {
    snprintf(why, why_len, "has %lld bytes, not %zu (not a bucket file of this module)",
             (long long)st.st_size, sizeof(struct pace_file));
    return -1;
  }
  return 0;
}

static uint64_t file_check(const struct pace_file *f)
{
  return fnv1a(f, offsetof(struct pace_file, check), FNV_INIT);
}

/* A directory only this user can change: owned by the effective user, no write for group or
 * others. */
static int dir_safe(const char *path, char *why, size_t why_len)
{
  struct stat st;
  if (lstat(path, &st) != 0) {
    snprintf(why, why_len, "%s cannot be examined (%s)", path, strerror(errno));
    return 0;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    snprintf(why, why_len, "%s is not a directory owned by this user and closed to others", path);
    return 0;
  }
  return 1;
}

/* Opens the vault's bucket file; -1 (with why, or why "" for no XDG_RUNTIME_DIR) when it cannot
 * be used. */
static int file_open(const struct kv_pace *p, char *path, size_t path_len, char *why,
                     size_t why_len)
{
  const char *rt = secure_getenv("XDG_RUNTIME_DIR");
  char dir[PATH_MAX];
  int fd, n;
  why[0] = '\0';
  path[0] = '\0';
  if (!rt || rt[0] != '/')
    return -1;
  n = snprintf(dir, sizeof(dir), "%s/akv-pkcs11", rt);
  if (n < 0 || (size_t)n >= sizeof(dir)) {
    snprintf(why, why_len, "XDG_RUNTIME_DIR is too long");
    return -1;
  }
  if (!dir_safe(rt, why, why_len))
    return -1;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(why, why_len, "cannot create %s (%s)", dir, strerror(errno));
    return -1;
  }
  if (!dir_safe(dir, why, why_len))
    return -1;
  n = snprintf(path, path_len, "%s/pace-%016llx", dir, (unsigned long long)p->url_hash);
  if (n < 0 || (size_t)n >= path_len) {
    snprintf(why, why_len, "XDG_RUNTIME_DIR is too long");
    return -1;
  }
  fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(why, why_len, "the file %s cannot be opened (%s)", path, strerror(errno));
    return -1;
  }
  if (kv_pace_file_check(fd, dir, sizeof(dir)) != 0) {
    snprintf(why, why_len, "the file %s %s", path, dir);
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads the cell under the file lock; 1 = read (or a new file), 0 = the content is not ours. */
static int file_read(const struct kv_pace *p, struct pace_file *f)
{
  ssize_t n = pread(p->fd, f, sizeof(*f), 0);
  if (n == 0) {
    memset(f, 0, sizeof(*f));
    f->magic = PACE_MAGIC;
    f->version = PACE_VERSION;
    f->size = sizeof(*f);
    f->url_hash = p->url_hash;
    f->boot = p->boot;
    return 1;
  }
  if (n != (ssize_t)sizeof(*f) || f->magic != PACE_MAGIC || f->version != PACE_VERSION ||
      f->size != sizeof(*f) || f->url_hash != p->url_hash || f->check != file_check(f))
    return 0;
  if (f->boot != p->boot) {
    /* written before a reboot (a runtime directory that is not a tmpfs): its clock is gone */
    f->boot = p->boot;
    f->tat_us = 0;
  }
  return 1;
}

/* A cell more than an hour ahead (a clock that went back, a time namespace) would refuse every
 * operation until its deadline: it restarts from now. */
static void cell_sane(int64_t *tat, int64_t now)
{
  if (*tat > now + PACE_MAX_AHEAD_US)
    *tat = now;
}

static void fall_back(struct kv_pace *p, const char *what)
{
  if (!p->warned) {
    p->warned = 1;
    akv_warn(AKV_LOGC_KV,
             "pacing %s: shared bucket not used: the file %s %s; pacing this "
             "process alone (fix: remove the file; it is made again with mode 0600)",
             p->url, p->path, what);
  }
  close(p->fd);
  p->fd = -1;
  p->tat_us = 0;
}

/* Runs fn on the vault's cell, shared when the file is usable: fn gets the cell and now. Called
 * with p->lock held. */
static int64_t with_cell(struct kv_pace *p, int64_t (*fn)(int64_t *tat, int64_t now, void *ctx),
                         void *ctx)
{
  struct pace_file f;
  int64_t r;
  if (p->fd >= 0) {
    if (flock(p->fd, LOCK_EX) != 0) {
      fall_back(p, "cannot be locked");
    } else if (!file_read(p, &f)) {
      flock(p->fd, LOCK_UN);
      fall_back(p, "holds something other than this vault's bucket");
    } else {
      int64_t now = now_us();
      cell_sane(&f.tat_us, now);
      r = fn(&f.tat_us, now, ctx);
      f.check = file_check(&f);
      if (pwrite(p->fd, &f, sizeof(f), 0) != (ssize_t)sizeof(f)) {
        flock(p->fd, LOCK_UN);
        fall_back(p, "cannot be written");
        return r;
      }
      flock(p->fd, LOCK_UN);
      return r;
    }
  }
  return fn(&p->tat_us, now_us(), ctx);
}

/* Hash of /proc/sys/kernel/random/boot_id (0 when unreadable). */
static uint64_t boot_hash(void)
{
  char id[64];
  ssize_t n = 0;
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = read(fd, id, sizeof(id));
    close(fd);
  }
  return n > 0 ? fnv1a(id, (size_t)n, FNV_INIT) : 0;
}

/* ---- the pacer ------------------------------------------------------------------------------ */

struct take_ctx {
  const struct kv_pace *p;
  int64_t cost, deadline_us;
};

static int64_t take_fn(int64_t *tat, int64_t now, void *ctx)
{
  struct take_ctx *t = ctx;
  return kv_pace_gcra(tat, now, t->cost, t->p->tau_us, t->deadline_us);
}

static void sleep_us(int64_t us)
{
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

kv_rc kv_pace_take(struct kv_pace *p, enum kv_pace_class c, int64_t deadline_ms)
{
  struct take_ctx t;
  int64_t wait;
  if (!p || (unsigned)c >= KV_PACE_NCLASS || !p->cost_us[c])
    return KV_OK;
  t.p = p;
  t.cost = p->cost_us[c];
  if (!deadline_ms)
    deadline_ms = kv_pace_now_ms() + PACE_DEFAULT_WAIT_MS;
  /* now_us and kv_pace_now_ms read the same clock */
  t.deadline_us = deadline_ms * 1000;
  pthread_mutex_lock(&p->lock);
  wait = with_cell(p, take_fn, &t);
  pthread_mutex_unlock(&p->lock);
  if (wait < 0) {
    akv_dbg(AKV_LOGC_KV,
            "pacing %s: the next turn comes after the operation's deadline; not "
            "sent",
            p->url);
    return KV_E_THROTTLED;
  }
  if (wait > 0)
    sleep_us(wait);
  return KV_OK;
}

static int64_t peek_fn(int64_t *tat, int64_t now, void *ctx)
{
  *(int64_t *)ctx = now;
  return *tat;
}

/* The cell's tat and now without spending. */
static int64_t peek(struct kv_pace *p, int64_t *now)
{
  int64_t tat;
  pthread_mutex_lock(&p->lock);
  tat = with_cell(p, peek_fn, now);
  pthread_mutex_unlock(&p->lock);
  return tat;
}

long kv_pace_available(struct kv_pace *p, enum kv_pace_class c)
{
  int64_t now, tat, slack;
  if (!p || (unsigned)c >= KV_PACE_NCLASS || !p->cost_us[c])
    return LONG_MAX;
  tat = peek(p, &now);
  slack = now + p->tau_us - (tat > now ? tat : now);
  if (slack < 0)
    return 0;
  return (long)(slack / p->cost_us[c]) + 1;
}

long kv_pace_wait_ms(struct kv_pace *p, enum kv_pace_class c)
{
  int64_t now, tat, go;
  if (!p || (unsigned)c >= KV_PACE_NCLASS || !p->cost_us[c])
    return 0;
  tat = peek(p, &now);
  go = tat - p->tau_us;
  return go > now ? (long)((go - now + 999) / 1000) : 0;
}

struct hold_ctx {
  int64_t hold_us, tau_us;
};

static int64_t hold_fn(int64_t *tat, int64_t now, void *ctx)
{
  struct hold_ctx *h = ctx;
  /* The next operation may go at tat - tau: not before the service said. */
  if (*tat < now + h->hold_us + h->tau_us)
    *tat = now + h->hold_us + h->tau_us;
  return 0;
}

void kv_pace_throttled(struct kv_pace *p, long retry_after_ms)
{
  struct hold_ctx h;
  if (!p)
    return;
  if (retry_after_ms < 0)
    retry_after_ms = PACE_DEFAULT_HOLD_MS;
  else if (retry_after_ms > PACE_MAX_HOLD_MS)
    retry_after_ms = PACE_MAX_HOLD_MS; /* one reply does not stop every process for a day */
  h.hold_us = (int64_t)retry_after_ms * 1000;
  h.tau_us = p->tau_us;
  pthread_mutex_lock(&p->lock);
  with_cell(p, hold_fn, &h);
  pthread_mutex_unlock(&p->lock);
  akv_info(AKV_LOGC_KV,
           "pacing %s: HTTP 429: no operation of this vault is sent for %ld ms, by "
           "any process of this user",
           p->url, (long)(h.hold_us / 1000));
}

/* The documented per-vault limits per 10 s (docs/config.md "quota"), HSM-protected keys. */
static const uint32_t kv_hsm_limits[KV_PACE_NCLASS] = {2000, 500, 250, 2000, 2000};

/* 1 when url ("https://host[:port]") is at an Azure vault domain: the documented limits are that
 * service's; a host from allowed_hosts (an emulator, a proxy) is paced only with a quota. */
static int azure_host(const char *url)
{
  char host[256];
  const char *h = strstr(url, "://");
  size_t n;
  h = h ? h + 3 : url;
  n = strcspn(h, ":/");
  if (n == 0 || n >= sizeof(host))
    return 0;
  memcpy(host, h, n);
  host[n] = '\0';
  return akv_azure_vault_host(host, NULL, NULL);
}

static struct kv_pace *pace_new(const char *url, enum akv_vault_kind kind,
                                const struct akv_quota_config *q)
{
  struct kv_pace *p;
  int any = 0, defaults = kind != AKV_VAULT_MHSM && azure_host(url);
  uint32_t minw = 0;
  char path[PATH_MAX], why[PATH_MAX + 128];
  if (q && (q->pacing_off || q->off))
    return NULL;
  if (!(p = calloc(1, sizeof(*p))))
    return NULL;
  if (!(p->url = strdup(url))) {
    free(p);
    return NULL;
  }
  p->url_len = strlen(url);
  p->url_hash = fnv1a(url, p->url_len, FNV_INIT);
  p->boot = boot_hash();
  for (int c = 0; c < KV_PACE_NCLASS; c++) {
    uint32_t n = q ? q->count[c] : 0, w = q ? q->window_s[c] : 0;
    if (!n && defaults) {
      /* Managed HSM documents no throttling of cryptographic operations: paced only with a
       * configured quota (docs/config.md "Quota and pacing"). */
      n = kv_hsm_limits[c] * (q && q->software ? 2 : 1);
      w = 10;
    }
    p->cost_us[c] = kv_pace_cost_us(n, w);
    if (p->cost_us[c]) {
      any = 1;
      if (!minw || w < minw)
        minw = w;
      if (!p->tau_us || kv_pace_tau_us(n, w) < p->tau_us)
        p->tau_us = kv_pace_tau_us(n, w);
    }
  }
  if (!any) {
    free(p->url);
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  p->fd = file_open(p, path, sizeof(path), why, sizeof(why));
  if (p->fd >= 0 && !(p->path = strdup(path))) {
    close(p->fd);
    p->fd = -1;
  }
  if (p->fd < 0 && why[0]) {
    p->warned = 1;
    akv_warn(AKV_LOGC_KV,
             "pacing %s: shared bucket not used: %s; pacing this process alone "
             "(fix: %s)",
             url, why,
             strncmp(why, "the file ", 9) == 0
                 ? "remove the file; it is made again with mode 0600"
                 : "point XDG_RUNTIME_DIR at a directory of this user with mode 0700, such as "
                   "/run/user/UID");
  } else if (p->fd < 0) {
    akv_info(AKV_LOGC_KV,
             "pacing %s: XDG_RUNTIME_DIR is not set (or not absolute); pacing this "
             "process alone",
             url);
  }
  akv_dbg(AKV_LOGC_KV, "pacing %s: RSA-2048/EC operation every %lld us, burst %lld us, %s", url,
          (long long)p->cost_us[KV_PACE_RSA2048], (long long)p->tau_us,
          p->fd >= 0 ? "shared by the user's processes" : "this process alone");
  return p;
}

static void pace_free(struct kv_pace *p)
{
  if (!p)
    return;
  if (p->fd >= 0)
    close(p->fd);
  pthread_mutex_destroy(&p->lock);
  free(p->path);
  free(p->url);
  free(p);
}

struct kv_pace_set *kv_pace_set_new(void)
{
  struct kv_pace_set *s = calloc(1, sizeof(*s));
  if (s)
    pthread_mutex_init(&s->lock, NULL);
  return s;
}

void kv_pace_set_free(struct kv_pace_set *s)
{
  struct kv_pace *p, *next;
  if (!s)
    return;
  for (p = s->head; p; p = next) {
    next = p->next;
    pace_free(p);
  }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* A pacer stands for its URL in the set even when pacing is off: a marker with no cost. */
kv_rc kv_pace_open(struct kv_pace_set *s, const char *vault_url, enum akv_vault_kind kind,
                   const struct akv_quota_config *q, struct kv_pace **out)
{
  struct kv_pace *p;
  size_t n;
  if (out)
    *out = NULL;
  if (!s || !vault_url)
    return KV_E_INVALID;
  n = strlen(vault_url);
  while (n && vault_url[n - 1] == '/')
    n--;
  pthread_mutex_lock(&s->lock);
  for (p = s->head; p; p = p->next)
    if (p->url_len == n && strncmp(p->url, vault_url, n) == 0)
      break;
  if (!p) {
    char *url = strndup(vault_url, n);
    if (!url) {
      pthread_mutex_unlock(&s->lock);
      return KV_E_NOMEM;
    }
    p = pace_new(url, kind, q);
    if (!p) {
      /* off (or out of memory): an entry without cost keeps the decision for later opens */
      p = calloc(1, sizeof(*p));
      if (p) {
        p->url = url;
        url = NULL;
        p->url_len = n;
        p->fd = -1;
        pthread_mutex_init(&p->lock, NULL);
      }
    }
    free(url);
    if (!p) {
      pthread_mutex_unlock(&s->lock);
      return KV_E_NOMEM;
    }
    p->next = s->head;
    __atomic_store_n(&s->head, p, __ATOMIC_RELEASE);
  }
  __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&s->lock);
  if (out) {
    int paced = 0;
    for (int c = 0; c < KV_PACE_NCLASS; c++)
      paced |= p->cost_us[c] != 0;
    *out = paced ? p : NULL;
  }
  return KV_OK;
}

void kv_pace_close(struct kv_pace *p)
{
  if (p)
    __atomic_sub_fetch(&p->refs, 1, __ATOMIC_RELAXED); /* freed with the set */
}

void kv_pace_setup(struct kv_pace_set *set, const struct akv_config *cfg)
{
  for (size_t i = 0; cfg && i < cfg->n_slots; i++)
    kv_pace_open(set, cfg->slots[i].url, cfg->slots[i].kind, &cfg->slots[i].quota, NULL);
}

/* ---- requests ------------------------------------------------------------------------------- */

/* Length of the JSON string value of "key" in body (0 when absent); *at its start. */
static size_t json_str(const char *body, size_t len, const char *key, const char **at)
{
  size_t kl = strlen(key);
  const char *end = body + len;
  for (const char *s = body; s && s + kl + 3 < end; s++) {
    s = memchr(s, '"', (size_t)(end - s));
    if (!s || s + kl + 3 >= end)
      return 0;
    if (memcmp(s + 1, key, kl) == 0 && s[kl + 1] == '"') {
      const char *v = s + kl + 2, *q;
      while (v < end && (*v == ':' || *v == ' '))
        v++;
      if (v >= end || *v != '"')
        return 0;
      v++;
      q = memchr(v, '"', (size_t)(end - v));
      if (!q)
        return 0;
      *at = v;
      return (size_t)(q - v);
    }
  }
  return 0;
}

/* RSA modulus bits from the base64url length of a value of that size (256, 384, 512 bytes). */
static unsigned rsa_bits_of(size_t b64_len)
{
  size_t bytes = b64_len * 3 / 4;
  return bytes >= 128 && bytes <= 1024 ? (unsigned)(bytes * 8) : 0;
}

static unsigned memo_get(struct kv_pace *p, uint32_t h)
{
  uint64_t e = __atomic_load_n(&p->memo[h % PACE_MEMO], __ATOMIC_RELAXED);
  return (uint32_t)(e >> 32) == h ? (unsigned)(e & 0xffffffffu) : 0;
}

void kv_pace_request_begin(struct kv_pace_set *s, const char *method, const char *url,
                           const char *body, size_t body_len, struct kv_pace_req *pr)
{
  static const char *const ops[] = {"sign", "verify", "encrypt", "decrypt", "wrapkey", "unwrapkey"};
  struct kv_pace *p;
  const char *path, *q, *op, *name, *name_end, *alg = NULL;
  char algbuf[33];
  size_t oplen, al, vl;
  int i;
  unsigned bits = 0;
  memset(pr, 0, sizeof(*pr));
  if (!s || !url || !method || strcmp(method, "POST") != 0)
    return;
  /* Entries are complete before they are published and never removed before kv_http_free: the
   * per-request path reads the list without the lock. */
  for (p = __atomic_load_n(&s->head, __ATOMIC_ACQUIRE); p; p = p->next)
    if (strncmp(url, p->url, p->url_len) == 0 && url[p->url_len] == '/')
      break;
  if (!p || !p->tau_us)
    return;
  path = url + p->url_len + 1;
  if (strncmp(path, "keys/", 5) != 0)
    return;
  name = path + 5;
  q = strchr(name, '?');
  if (!q)
    q = name + strlen(name);
  for (op = q; op > name && op[-1] != '/'; op--)
    ;
  oplen = (size_t)(q - op);
  for (i = 0; i < 6 && !(strlen(ops[i]) == oplen && memcmp(ops[i], op, oplen) == 0); i++)
    ;
  if (i == 6 || op == name)
    return;
  name_end = memchr(name, '/', (size_t)(op - name));
  pr->name_hash = (uint32_t)fnv1a(name, (size_t)(name_end - name), FNV_INIT);
  if (body && (al = json_str(body, body_len, "alg", &alg)) > 0 && al < sizeof(algbuf)) {
    memcpy(algbuf, alg, al);
    algbuf[al] = '\0';
    alg = algbuf;
  } else {
    alg = NULL;
  }
  if (alg && kv_pace_class_of(alg, 0) == KV_PACE_RSA2048) {
    const char *v;
    /* verify carries the signature, decrypt/unwrapkey the ciphertext: both modulus-sized */
    if ((i == 1 || i == 3 || i == 5) && (vl = json_str(body, body_len, "value", &v)) > 0)
      bits = rsa_bits_of(vl);
    if (!bits)
      bits = memo_get(p, pr->name_hash);
    pr->learn = !bits && (i == 0 || i == 2 || i == 4);
  }
  pr->cls = kv_pace_class_of(alg, bits);
  pr->pace = p;
}

void kv_pace_request_done(const struct kv_pace_req *pr, const char *body, size_t body_len)
{
  const char *v;
  size_t vl;
  unsigned bits;
  if (!pr->pace || !pr->learn || !body)
    return;
  vl = json_str(body, body_len, "value", &v);
  bits = rsa_bits_of(vl);
  if (bits)
    __atomic_store_n(&pr->pace->memo[pr->name_hash % PACE_MEMO],
                     ((uint64_t)pr->name_hash << 32) | bits, __ATOMIC_RELAXED);
}
