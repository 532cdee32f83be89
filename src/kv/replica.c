/* SPDX-License-Identifier: Apache-2.0 */
/* Replica vaults (docs/reliability.md "Replica vaults"): a slot's key operations go to the
 * primary or to one of its replicas (vaults holding the same keys under the same names), chosen
 * by the budget left, with failover on throttling, outages and a replica's error for one key.
 *
 * A replica is used for a key only once its public key has been compared with the primary's
 * (the version the object pins): the operation then addresses the replica's own version of that
 * key (same name, its version id), found at that first use. Per-process state only: vault health
 * (cool-down after 429/5xx/network errors), the comparison result per key and replica. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kv/client.h"
#include "kv/http.h"
#include "kv/pace.h"
#include "util/log.h"

#define MAX_VAULTS 9      /* the primary and 8 replicas (docs/config.md "replicas") */
#define MAX_KEYS 16384    /* keys with a comparison state; more are served by the primary */
#define RK_BUCKETS 1024   /* hash buckets of the key table (by name) */
#define MAX_VERSIONS 16   /* replica versions read to find the primary's public key */
#define RECHECK_MS 300000 /* a replica that lacked a key or erred for it is asked again */
#define COOL_BASE_MS 1000 /* cool-down of a vault after a 5xx or network error, doubling */
#define COOL_CAP_MS 30000
#define DEFAULT_RETRY_AFTER_MS 1000

enum rk_state { RK_UNKNOWN = 0, RK_CHECKING, RK_SAME, RK_DIFFERENT, RK_MISSING };

struct rk_rep {
  int state;          /* enum rk_state */
  char *version;      /* RK_SAME: the replica's version of the key */
  int64_t recheck_ms; /* RK_MISSING: asked again from then on */
};

struct rk_entry {
  struct rk_entry *next; /* same bucket */
  char *name;
  char *version;          /* the primary's version the object pins; NULL = latest */
  struct kv_key *primary; /* its public key (set once, then read-only), NULL until read */
  struct rk_rep rep[MAX_VAULTS - 1];
};

struct vault_health {
  int64_t cool_until_ms;
  unsigned fails_in_row;
  char last_error[128];
};

struct kv_replicas {
  struct kv_http *http;
  struct kv_client *cl[MAX_VAULTS - 1]; /* replica clients */
  size_t n;
  struct kv_pace *pace[MAX_VAULTS];  /* each vault's shared budget (0 = the primary), NULL = none */
  pthread_mutex_t lock;              /* everything below */
  struct vault_health h[MAX_VAULTS]; /* 0 = the primary */
  struct rk_entry *keys[RK_BUCKETS]; /* by name; entries never go away before replicas_free */
  size_t n_keys;
  unsigned rr; /* round-robin start */
};

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static void replicas_free(struct kv_replicas *r);
static void note_key(struct kv_client *cl, const char *version, const struct kv_key *k);

kv_rc kv_client_add_replicas(struct kv_client *cl, const char *const *urls, size_t n,
                             const struct akv_quota_config *q)
{
  struct kv_replicas *r;
  struct kv_http *http;
  struct kv_cred *cred;
  struct kv_client_opts o, *opts = &o;
  kv_rc rc = KV_OK;
  if (!cl || (!urls && n) || kv_client_replicas(cl))
    return KV_E_INVALID;
  if (!n)
    return KV_OK;
  kv_client_parts(cl, &http, &cred, &o);
  if (n > MAX_VAULTS - 1) {
    akv_err(AKV_LOGC_KV, "%s: %zu replicas, at most %d are supported", opts->url, n,
            MAX_VAULTS - 1);
    return KV_E_INVALID;
  }
  r = calloc(1, sizeof(*r));
  if (!r)
    return KV_E_NOMEM;
  pthread_mutex_init(&r->lock, NULL);
  r->http = http;
  /* Processes start the round robin at different vaults (docs/reliability.md). */
  r->rr = (unsigned)getpid();
  for (size_t i = 0; i < n; i++) {
    struct kv_client_opts ro = *opts;
    ro.url = urls[i];
    if ((rc = kv_client_new(http, cred, &ro, &r->cl[i])) != KV_OK)
      break;
    r->n++;
  }
  /* Each replica is paced with the slot's quota, like the primary (whose pacer the module
   * registered at C_Initialize): every process then spends the same budget of each vault. A
   * vault without a pacer (pacing off, out of memory) is chosen without consulting one. */
  for (size_t v = 0; q && rc == KV_OK && v <= r->n; v++)
    if (kv_pace_open(kv_http_pace_set(http), v ? urls[v - 1] : opts->url, opts->kind, q,
                     &r->pace[v]) != KV_OK)
      r->pace[v] = NULL;
  if (rc == KV_OK)
    rc = kv_client_attach_replicas(cl, r, replicas_free, note_key);
  if (rc != KV_OK)
    replicas_free(r);
  return rc;
}

static void replicas_free(struct kv_replicas *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->n; i++)
    kv_client_free(r->cl[i]);
  for (size_t v = 0; v < MAX_VAULTS; v++)
    kv_pace_close(r->pace[v]);
  for (size_t b = 0; b < RK_BUCKETS; b++)
    while (r->keys[b]) {
      struct rk_entry *e = r->keys[b];
      r->keys[b] = e->next;
      free(e->name);
      free(e->version);
      kv_key_free(e->primary);
      for (size_t i = 0; i < MAX_VAULTS - 1; i++)
        free(e->rep[i].version);
      free(e);
    }
  pthread_mutex_destroy(&r->lock);
  free(r);
}

size_t kv_client_n_vaults(const struct kv_client *cl)
{
  const struct kv_replicas *r = cl ? kv_client_replicas(cl) : NULL;
  return r ? r->n + 1 : 1;
}

struct kv_client *kv_client_vault(struct kv_client *cl, size_t i)
{
  const struct kv_replicas *r = kv_client_replicas(cl);
  if (i == 0)
    return cl;
  return r && i <= r->n ? r->cl[i - 1] : NULL;
}

const char *kv_client_vault_url(const struct kv_client *cl, size_t i)
{
  const struct kv_replicas *r = kv_client_replicas(cl);
  if (i == 0)
    return kv_client_base_url(cl);
  return r && i <= r->n ? kv_client_base_url(r->cl[i - 1]) : NULL;
}

/* ---- the primary's public keys ------------------------------------------------------------- */

static int same_version(const char *a, const char *b)
{
  return (!a && !b) || (a && b && strcasecmp(a, b) == 0);
}

/* Bucket of a key name: FNV-1a of its lower-case form (names are case-insensitive). */
static size_t bucket_of(const char *name)
{
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ (uint32_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p)) * 16777619u;
  return h % RK_BUCKETS;
}

/* Entry of (name, version), created when absent; NULL when the table is full or out of memory.
 * Under r->lock. */
static struct rk_entry *entry_get(struct kv_replicas *r, const char *name, const char *version)
{
  size_t b = bucket_of(name);
  struct rk_entry *e;
  for (e = r->keys[b]; e; e = e->next)
    if (strcasecmp(e->name, name) == 0 && same_version(e->version, version))
      return e;
  if (r->n_keys >= MAX_KEYS)
    return NULL;
  e = calloc(1, sizeof(*e));
  if (!e || !(e->name = strdup(name)) || (version && !(e->version = strdup(version)))) {
    if (e)
      free(e->name);
    free(e);
    return NULL;
  }
  e->next = r->keys[b];
  r->keys[b] = e;
  r->n_keys++;
  return e;
}

/* Duplicates the public parts of k (what the comparison reads). */
static int dup_bytes(unsigned char **dst, size_t *dlen, const unsigned char *src, size_t len)
{
  *dst = NULL;
  *dlen = 0;
  if (!src || !len)
    return 1;
  if (!(*dst = malloc(len)))
    return 0;
  memcpy(*dst, src, len);
  *dlen = len;
  return 1;
}

static struct kv_key *key_pub_dup(const struct kv_key *k)
{
  struct kv_key *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->kty = k->kty;
  c->hsm = k->hsm;
  c->crv = k->crv;
  if ((k->name && !(c->name = strdup(k->name))) ||
      (k->version && !(c->version = strdup(k->version))) ||
      !dup_bytes(&c->n, &c->n_len, k->n, k->n_len) ||
      !dup_bytes(&c->e, &c->e_len, k->e, k->e_len) ||
      !dup_bytes(&c->x, &c->x_len, k->x, k->x_len) ||
      !dup_bytes(&c->y, &c->y_len, k->y, k->y_len)) {
    kv_key_free(c);
    return NULL;
  }
  return c;
}

/* Records the primary's public key as kv_get_key read it, for the replicas' comparison. */
static void note_key(struct kv_client *cl, const char *version, const struct kv_key *k)
{
  struct kv_replicas *r = kv_client_replicas(cl);
  struct rk_entry *e;
  if (!r || !k || !k->name || k->kty == KV_KTY_OCT)
    return;
  /* Under the version the reply names: the one an object made from it pins (a read of the
   * latest, version NULL, also answers for "latest"). */
  pthread_mutex_lock(&r->lock);
  for (int pass = 0; pass < 2; pass++) {
    if (pass && same_version(version, k->version))
      break;
    e = entry_get(r, k->name, pass ? version : k->version);
    if (e && !e->primary)
      e->primary = key_pub_dup(k);
  }
  pthread_mutex_unlock(&r->lock);
}

/* ---- comparison ---------------------------------------------------------------------------- */

/* Big-endian integers compared without their leading zero bytes. */
static int same_int(const unsigned char *a, size_t al, const unsigned char *b, size_t bl)
{
  while (al && !*a) {
    a++;
    al--;
  }
  while (bl && !*b) {
    b++;
    bl--;
  }
  return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static const char *kty_name(enum kv_kty kty)
{
  return kty == KV_KTY_RSA ? "RSA" : kty == KV_KTY_EC ? "EC" : "oct";
}

/* 1 when the public keys are the same; else 0 with the difference in diff. */
static int same_key(const struct kv_key *p, const struct kv_key *k, char *diff, size_t dl)
{
  if (p->kty != k->kty)
    snprintf(diff, dl, "key type %s, the primary's is %s", kty_name(k->kty), kty_name(p->kty));
  else if (p->kty == KV_KTY_RSA && !same_int(p->n, p->n_len, k->n, k->n_len))
    snprintf(diff, dl, "RSA modulus n differs (%zu bytes, the primary's %zu)", k->n_len, p->n_len);
  else if (p->kty == KV_KTY_RSA && !same_int(p->e, p->e_len, k->e, k->e_len))
    snprintf(diff, dl, "RSA exponent e differs");
  else if (p->kty == KV_KTY_EC && p->crv != k->crv)
    snprintf(diff, dl, "curve %s, the primary's is %s", kv_crv_name(k->crv), kv_crv_name(p->crv));
  else if (p->kty == KV_KTY_EC &&
           (!same_int(p->x, p->x_len, k->x, k->x_len) || !same_int(p->y, p->y_len, k->y, k->y_len)))
    snprintf(diff, dl, "EC public point x/y differs");
  else if (p->kty == KV_KTY_OCT)
    snprintf(diff, dl, "a symmetric key has no public part to compare");
  else
    return 1;
  return 0;
}

/* Finds the version of name on replica rc whose public key is p's: the latest, else one of its
 * other enabled versions (at most MAX_VERSIONS read). */
static kv_rc compare_on(struct kv_client *rc_cl, const struct kv_key *p, const char *name,
                        char *rep_version, size_t rep_cap, char *diff, size_t dl,
                        struct kv_attempt *at)
{
  struct kv_key *k = NULL;
  struct kv_item_list l = {NULL, 0};
  size_t read = 0;
  char other[160];
  kv_rc rc;
  if (p->kty == KV_KTY_OCT) {
    snprintf(diff, dl, "a symmetric key has no public part to compare");
    return KV_E_UNSUPPORTED;
  }
  rc = kv_get_key_at(rc_cl, name, NULL, at, &k, NULL); /* one attempt: the replica may be down */
  if (rc != KV_OK)
    return rc;
  if (!same_key(p, k, diff, dl)) {
    kv_rc lrc = kv_list_key_versions(rc_cl, name, &l, NULL);
    if (lrc != KV_OK) {
      kv_key_free(k);
      return lrc;
    }
    for (size_t i = 0; i < l.n && read < MAX_VERSIONS; i++) {
      const struct kv_item *it = kv_item_list_at(&l, i);
      struct kv_key *o = NULL;
      if (!it->version || !it->attrs.enabled ||
          (k->version && strcasecmp(it->version, k->version) == 0))
        continue;
      read++;
      if (kv_get_key(rc_cl, name, it->version, &o, NULL) == KV_OK &&
          same_key(p, o, other, sizeof(other))) {
        kv_key_free(k);
        k = o;
        goto same;
      }
      kv_key_free(o);
    }
    kv_item_list_free(&l);
    kv_key_free(k);
    return KV_E_CONFLICT;
  }
same:
  kv_item_list_free(&l);
  if (!k->version || kv_check_name(name, k->version) != KV_OK) {
    kv_key_free(k);
    return KV_E_PROTOCOL;
  }
  if (rep_version && rep_cap)
    snprintf(rep_version, rep_cap, "%s", k->version ? k->version : "");
  kv_key_free(k);
  return KV_OK;
}

kv_rc kv_replica_compare(struct kv_client *cl, size_t i, const char *name, const char *version,
                         char *rep_version, size_t rep_cap, char *diff, size_t diff_len)
{
  struct kv_client *rc_cl;
  struct kv_key *p = NULL;
  struct kv_attempt at = {0};
  kv_rc rc;
  if (diff && diff_len)
    diff[0] = '\0';
  if (!cl || !name || !diff || !diff_len || i == 0 || !(rc_cl = kv_client_vault(cl, i)))
    return KV_E_INVALID;
  if ((rc = kv_get_key(cl, name, version, &p, NULL)) != KV_OK)
    return rc;
  rc = compare_on(rc_cl, p, name, rep_version, rep_cap, diff, diff_len, &at);
  kv_key_free(p);
  return rc;
}

/* ---- choosing a vault ---------------------------------------------------------------------- */

/* Time limit of one attempt: what is left of the deadline, halved while another vault could still
 * take the operation, so that a vault that hangs leaves time for the next one. */
static long attempt_timeout(int64_t deadline, int others)
{
  int64_t left = deadline - now_ms();
  if (left < 2)
    left = 2;
  return (long)(others ? left / 2 : left);
}

/* Failures another vault may not share: throttling, outages, hostile or cut replies. */
static int transient(kv_rc rc)
{
  return rc == KV_E_THROTTLED || rc == KV_E_SERVER || rc == KV_E_NETWORK || rc == KV_E_TIMEOUT ||
         rc == KV_E_PROTOCOL;
}

/* How long a vault rests after a transient failure: its Retry-After after a 429 (1 s when none),
 * the cap after a timeout (a vault that hangs would hold every caller for one), else 1 s doubling
 * with the failures in a row. */
static long rest_ms(kv_rc rc, long retry_after_ms, unsigned fails_in_row)
{
  long ms;
  if (rc == KV_E_THROTTLED)
    ms = retry_after_ms >= 0 ? retry_after_ms : DEFAULT_RETRY_AFTER_MS;
  else if (rc == KV_E_TIMEOUT)
    ms = COOL_CAP_MS;
  else
    ms = fails_in_row >= 5 ? COOL_CAP_MS : COOL_BASE_MS << fails_in_row;
  return ms < COOL_CAP_MS ? ms : COOL_CAP_MS;
}

/* May replica i (0-based) serve e now? 1 = yes, 2 = after a comparison, 0 = no. Under lock. */
static int rep_usable(const struct rk_entry *e, size_t i, int64_t now)
{
  if (!e)
    return 0;
  switch (e->rep[i].state) {
  case RK_SAME:
    return 1;
  case RK_UNKNOWN:
    return 2;
  case RK_MISSING:
    return now >= e->rep[i].recheck_ms ? 2 : 0;
  default:
    return 0; /* RK_CHECKING (another thread compares), RK_DIFFERENT */
  }
}

/* The vault to try next among those this operation has not tried, not cooling down and usable
 * for the key: the one with the most budget left in its shared pacer (docs/reliability.md
 * "Pacing": operations of class cls it could send now), else, all spent, the one whose turn
 * comes first; ties (and vaults without a pacer) go round robin from r->rr. Returns MAX_VAULTS
 * when none; *wake_ms is then the earliest end of a cool-down of an untried usable vault (0 =
 * none). Under lock. */
static size_t choose(struct kv_replicas *r, const struct rk_entry *e, const int *tried, int64_t now,
                     enum kv_pace_class cls, int64_t *wake_ms)
{
  size_t nv = r->n + 1, start = r->rr++ % nv, best = MAX_VAULTS;
  long best_avail = -1, best_wait = 0;
  *wake_ms = 0;
  for (size_t k = 0; k < nv; k++) {
    size_t v = (start + k) % nv;
    long avail, wait = 0;
    if (tried[v] || (v > 0 && !rep_usable(e, v - 1, now)))
      continue;
    if (r->h[v].cool_until_ms > now) {
      if (!*wake_ms || r->h[v].cool_until_ms < *wake_ms)
        *wake_ms = r->h[v].cool_until_ms;
      continue;
    }
    avail = kv_pace_available(r->pace[v], cls);
    if (avail <= 0)
      wait = kv_pace_wait_ms(r->pace[v], cls);
    if (best == MAX_VAULTS || avail > best_avail ||
        (avail <= 0 && best_avail <= 0 && wait < best_wait)) {
      best = v;
      best_avail = avail;
      best_wait = wait;
    }
  }
  return best;
}

/* First use of e on replica v: compares its key with the primary's. Returns 1 when the replica
 * may serve it (its version recorded), else 0 with the reason in why. Called with r->lock held,
 * which it drops meanwhile. */
static int check_replica(struct kv_client *cl, struct kv_replicas *r, struct rk_entry *e, size_t v,
                         int64_t deadline, char *why, size_t wl)
{
  struct rk_rep *rp = &e->rep[v - 1];
  const char *url = kv_client_base_url(r->cl[v - 1]);
  char ver[128], diff[160];
  struct kv_attempt at = {0};
  struct kv_key *p = NULL;
  kv_rc rc = KV_OK;
  int have_primary = e->primary != NULL; /* set once, under the lock */
  rp->state = RK_CHECKING;
  pthread_mutex_unlock(&r->lock);
  at.timeout_ms = attempt_timeout(deadline, 1); /* the primary can serve meanwhile */
  if (!have_primary) {
    /* The primary's key as the object pins it (one attempt: the primary may be the vault that
     * is down); kv_get_key_at records it in e. */
    rc = kv_get_key_at(cl, e->name, e->version, &at, &p, NULL);
    kv_key_free(p);
  }
  pthread_mutex_lock(&r->lock);
  if (rc != KV_OK || !e->primary) {
    rp->state = RK_UNKNOWN; /* the primary did not answer: compared at a later use */
    snprintf(why, wl, "not used: the primary's key could not be read to compare (%s)",
             kv_rc_str(rc));
    return 0;
  }
  pthread_mutex_unlock(&r->lock);
  diff[0] = '\0';
  memset(&at, 0, sizeof(at));
  at.timeout_ms = attempt_timeout(deadline, 1);
  rc = compare_on(r->cl[v - 1], e->primary, e->name, ver, sizeof(ver), diff, sizeof(diff), &at);
  pthread_mutex_lock(&r->lock);
  if (rc == KV_OK) {
    free(rp->version);
    rp->version = strdup(ver);
    rp->state = rp->version ? RK_SAME : RK_UNKNOWN;
    akv_dbg(AKV_LOGC_KV, "replica %s: key %s is the primary's (its version %s)", url, e->name, ver);
    return rp->version != NULL;
  }
  if (rc == KV_E_CONFLICT || rc == KV_E_UNSUPPORTED) {
    rp->state = RK_DIFFERENT;
    snprintf(why, wl, "not used: its key differs");
    akv_warn(AKV_LOGC_KV,
             "replica %s: key %s differs from the primary's (%s); the replica is "
             "not used for this key; fix: import the same key material under the same name",
             url, e->name, diff);
    return 0;
  }
  if (transient(rc) || rc == KV_E_NOMEM) {
    rp->state = RK_UNKNOWN; /* the replica is throttled or down: compared at a later use */
    if (rc != KV_E_NOMEM) {
      r->h[v].cool_until_ms = now_ms() + rest_ms(rc, at.retry_after_ms, 0);
      snprintf(r->h[v].last_error, sizeof(r->h[v].last_error), "%.100s (comparing key %s)",
               at.err[0] ? at.err : kv_rc_str(rc), e->name);
    }
    snprintf(why, wl, "%s", rc == KV_E_NOMEM ? kv_rc_str(rc) : r->h[v].last_error);
    return 0;
  }
  rp->state = RK_MISSING;
  rp->recheck_ms = now_ms() + RECHECK_MS;
  snprintf(why, wl, "not used: %s for this key", kv_rc_str(rc));
  akv_warn(AKV_LOGC_KV,
           "replica %s: key %s: %s when comparing it with the primary's; the "
           "replica is not used for this key for %d s",
           url, e->name, kv_rc_str(rc), RECHECK_MS / 1000);
  return 0;
}

/* Records a failed attempt on vault v: the cool-down it earns, the error for the summary. Under
 * lock. */
static void note_failure(struct kv_replicas *r, struct rk_entry *e, size_t v, kv_rc rc,
                         const struct kv_attempt *at, const char *op, const char *name)
{
  struct vault_health *h = &r->h[v];
  snprintf(h->last_error, sizeof(h->last_error), "%s", at->err[0] ? at->err : kv_rc_str(rc));
  if (transient(rc)) {
    h->cool_until_ms = now_ms() + rest_ms(rc, at->retry_after_ms, h->fails_in_row);
    h->fails_in_row++;
    return;
  }
  /* A replica's own error for this key (absent, disabled, refused): the others serve it. */
  if (v > 0 && e) {
    e->rep[v - 1].state = RK_MISSING;
    e->rep[v - 1].recheck_ms = now_ms() + RECHECK_MS;
    akv_warn(AKV_LOGC_KV,
             "replica %s: %s %s failed there (%s); the replica is not used for "
             "this key for %d s",
             kv_client_base_url(r->cl[v - 1]), op, name, h->last_error, RECHECK_MS / 1000);
  }
}

kv_rc kv_replica_run(struct kv_client *cl, const char *op, const char *name, const char *version,
                     const char *alg, kv_attempt_fn fn, void *ctx)
{
  struct kv_replicas *r = kv_client_replicas(cl);
  const struct kv_http_opts *ho;
  char errs[MAX_VAULTS][112], ver[128], summary[1024];
  int tried[MAX_VAULTS] = {0}, final = 0;
  int64_t deadline, saved;
  unsigned attempts, max_attempts;
  struct rk_entry *e;
  kv_rc rc = KV_E_TIMEOUT, last = KV_E_TIMEOUT;
  size_t nv, o = 0;
  enum kv_pace_class cls;
  if (!r)
    return fn(cl, name, version, ctx, NULL);
  nv = r->n + 1;
  cls = kv_pace_class_of(alg, 0);
  ho = kv_http_opts_peek(r->http);
  deadline = now_ms() + (ho->deadline_ms > 0 ? ho->deadline_ms : 30000);
  max_attempts = (ho->max_retries + 1) * (unsigned)nv;
  for (size_t v = 0; v < nv; v++)
    errs[v][0] = '\0';
  /* One deadline for every attempt on every vault. */
  saved = kv_http_op_begin(r->http);
  pthread_mutex_lock(&r->lock);
  e = entry_get(r, name, version); /* NULL (table full): the primary serves it */
  for (attempts = 0; attempts < max_attempts && !final;) {
    struct kv_attempt at;
    int64_t now = now_ms(), wake;
    int others;
    size_t v = choose(r, e, tried, now, cls, &wake);
    if (v == MAX_VAULTS) {
      int left = 0;
      for (size_t k = 0; k < nv; k++)
        left |= !tried[k] && (k == 0 || rep_usable(e, k - 1, now));
      if (!left) {
        /* Every usable vault had its turn: a new round, at once or when a cool-down ends. */
        memset(tried, 0, sizeof(tried));
        if (choose(r, e, tried, now, cls, &wake) != MAX_VAULTS)
          continue;
      }
      if (!wake || wake >= deadline)
        break;
      pthread_mutex_unlock(&r->lock);
      sleep_ms((long)(wake - now));
      pthread_mutex_lock(&r->lock);
      continue;
    }
    if (v > 0 && e->rep[v - 1].state != RK_SAME) {
      attempts++;
      if (!check_replica(cl, r, e, v, deadline, errs[v], sizeof(errs[v]))) {
        tried[v] = 1;
        continue;
      }
    }
    snprintf(ver, sizeof(ver), "%s", v > 0 ? e->rep[v - 1].version : version ? version : "");
    others = 0;
    for (size_t k = 0; k < nv; k++)
      others |= k != v && !tried[k] && (k == 0 || rep_usable(e, k - 1, now));
    pthread_mutex_unlock(&r->lock);
    memset(&at, 0, sizeof(at));
    at.retry_after_ms = -1;
    at.timeout_ms = attempt_timeout(deadline, others);
    rc = fn(kv_client_vault(cl, v), name, ver[0] ? ver : NULL, ctx, &at);
    attempts++;
    pthread_mutex_lock(&r->lock);
    if (rc == KV_OK) {
      r->h[v].fails_in_row = 0;
      break;
    }
    note_failure(r, e, v, rc, &at, op, name);
    snprintf(errs[v], sizeof(errs[v]), "%s", r->h[v].last_error);
    tried[v] = 1;
    if (transient(rc))
      last = rc;
    /* The caller's input, or the primary's word on the key: the same answer everywhere (its
     * error line is written). */
    final = rc == KV_E_NOMEM || rc == KV_E_INVALID || (v == 0 && !transient(rc));
    if (now_ms() >= deadline)
      break;
  }
  if (rc != KV_OK && !final) {
    int64_t now = now_ms();
    for (size_t v = 0; v < nv; v++) {
      const char *why =
          errs[v][0]                                          ? errs[v]
          : v > 0 && e && e->rep[v - 1].state == RK_DIFFERENT ? "not used: its key differs"
          : v > 0 && e && e->rep[v - 1].state == RK_MISSING ? "not used: no usable key of that name"
          : r->h[v].cool_until_ms > now                     ? "not tried: cooling down"
                                                            : "not tried";
      int n = snprintf(summary + o, sizeof(summary) - o, "%s%s: %s", v ? "; " : "",
                       kv_client_vault_url(cl, v), why);
      if (n > 0 && (size_t)n < sizeof(summary) - o)
        o += (size_t)n;
    }
    summary[o] = '\0';
    rc = transient(last) ? last : KV_E_TIMEOUT;
    akv_err(AKV_LOGC_KV, "%s %s: every vault failed within the deadline: %s", op, name, summary);
  }
  pthread_mutex_unlock(&r->lock);
  kv_http_op_end(saved);
  return rc;
}
