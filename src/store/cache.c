/* SPDX-License-Identifier: Apache-2.0 */
/* The per-slot object cache (docs/design.md "Cache"): an immutable, refcounted snapshot of
 * the slot's objects, built off-lock and swapped in; soft TTL (75 %) refreshes in the background,
 * hard TTL refreshes synchronously, a failed refresh keeps serving the old snapshot within
 * stale_if_error. Objects whose source (key, version, certificate, secret) has unchanged
 * created/updated times are carried over to the next snapshot, so their public key material and
 * fetched values survive refreshes; objects restored from the cache file never count as read
 * (src_fetched_at 0) and are read from the vault again instead, so the vault's material always wins
 * over the file's. With CKF_LIBRARY_CANT_CREATE_OS_THREADS no thread is started: no background
 * refresh, and keys are read one after another in the caller's thread. */
#include <fnmatch.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/module.h"
#include "store/cache.h"
#include "store/cache_file.h"
#include "store/handles.h"
#include "store/object.h"
#include "store/source.h"
#include "util/b64.h"
#include "util/log.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

/* A failed refresh is not retried for this long while the stale snapshot is served. */
#define RETRY_AFTER_FAILURE_S 30

/* akv_cache_read_key: a name read from the vault is not read again for this long (the negative
 * lookup memo, docs/design.md "Keys created since the listing"), in at most MEMO_N names. */
#define MEMO_S 5
#define MEMO_N 16

/* Superseded versions of one name kept at most for handles held (docs/lifecycle.md "Handles held
 * across a rotation"): the least recently used goes first. */
#define HELD_VERSIONS_PER_NAME 4

/* A cold search by label schedules the first listing: it starts when a search needs it, or this
 * long after, so that a process that signs once and exits lists nothing (docs/design.md "Cold
 * search by label"). */
#define COLD_LIST_DELAY_S 3

/* An object a caller holds the handle of, whose source a new version replaced. */
struct held {
  struct akv_object *obj;         /* referenced */
  CK_SESSION_HANDLE pinned_below; /* kept while a session with a smaller handle is open */
  uint64_t used;                  /* least recently used goes first (HELD_VERSIONS_PER_NAME) */
};

struct akv_cache {
  struct akv_slot *slot;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct akv_snapshot *snap;
  int refreshing;      /* a build is in flight (foreground or background) */
  int invalid;         /* refresh at the next lookup */
  int64_t retry_after; /* no new attempt before this time after a failure */
  int file_dirty;      /* pending keys were read since the cache file was written */
  unsigned gen;        /* builds finished */
  CK_RV last_rv;       /* result of the last build */
  long last_http;      /* HTTP status of its failed vault call (kv.h), 0 = none */
  pthread_t bg;
  int bg_joinable;
  struct {
    char name[168]; /* a key name (at most 127 characters), or akv_cache_memo_claim's key */
    int64_t at;     /* when it was read; 0 = free */
  } memo[MEMO_N];
  unsigned memo_next; /* the entry replaced next (round robin) */
  /* Superseded objects still reachable by their handles, under lock; n_held is also read without
   * it (atomic) so that a lookup that misses the snapshot costs no lock when there are none. */
  struct held *held;
  size_t n_held, cap_held;
  uint64_t use_clock;
  CK_SESSION_HANDLE sess_oldest, sess_next; /* akv_cache_sessions */
  /* Before the first listing: objects read by name for searches by label (src/store/cold.c), sorted
   * by handle, built_at 0, and the names read (docs/design.md "Cold search by label"). */
  struct akv_snapshot *cold;
  int64_t cold_at; /* when its first name was read: served for one ttl at most */
  char cold_names[AKV_COLD_NAMES][128];
  size_t n_cold_names;
  int cold_wait; /* the first listing's thread waits: for cold_go, cold_cancel or the delay */
  int cold_go, cold_cancel;
  /* akv_cache_id_miss: when its last listing started (0: never); the build in flight is its
   * (struct build keep_unread). */
  int64_t id_miss_at;
  int id_miss_listing;
};

/* ---- building a snapshot (no lock held: network I/O) ------------------------------------------
 */

struct build {
  struct akv_slot *slot;
  const struct akv_slot_config *sc;
  long http_status; /* of the vault call that failed the build (kv.h), 0 = none */
  int64_t now;
  struct akv_ptrs prev; /* previous snapshot's objects sorted by src */
  size_t n_prev;
  struct akv_ptrs prev_lazy; /* previous snapshot's pending keys sorted by name */
  size_t n_prev_lazy;
  struct akv_snapshot *snap; /* the objects and pending keys found */
  int keep_unread; /* a listing for a search by CKA_ID (akv_cache_id_miss): objects restored from
                      the cache file with unchanged times are carried over unread */
  int kept_unread; /* some were: the snapshot keeps the previous one's age */
};

/* Borrowed items of the arrays of struct build and struct src_index. */
static struct akv_object *obj_at(const struct akv_ptrs *v, size_t i)
{
  return akv_ptrs_at(v, i);
}

static struct akv_lazykey *lazy_at(const struct akv_ptrs *v, size_t i)
{
  return akv_ptrs_at(v, i);
}

static int cmp_lazy_name(const void *a, const void *b)
{
  const struct akv_lazykey *x = *(struct akv_lazykey *const *)a;
  const struct akv_lazykey *y = *(struct akv_lazykey *const *)b;
  return strcmp(x->name, y->name);
}

/* Takes the caller's reference. */
static CK_RV push_lazy(struct build *b, struct akv_lazykey *lz)
{
  if (!lz)
    return CKR_HOST_MEMORY;
  return akv_snapshot_add_lazy(b->snap, lz);
}

static int cmp_src(const void *a, const void *b)
{
  const struct akv_object *x = *(struct akv_object *const *)a, *y = *(struct akv_object *const *)b;
  return strcmp(x->src ? x->src : "", y->src ? y->src : "");
}

static CK_RV push(struct build *b, struct akv_object *obj)
{
  return akv_snapshot_add(b->snap, obj);
}

/* Carries over the previous snapshot's objects of src when its times did not change. */
static int reuse(struct build *b, const char *src, int64_t created, int64_t updated, CK_RV *rv)
{
  size_t lo = 0, hi = b->n_prev, i;

  *rv = CKR_OK;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(obj_at(&b->prev, mid)->src, src) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo >= b->n_prev || strcmp(obj_at(&b->prev, lo)->src, src) != 0)
    return 0;
  for (i = lo; i < b->n_prev && strcmp(obj_at(&b->prev, i)->src, src) == 0; i++) {
    const struct akv_object *o = obj_at(&b->prev, i);
    if (o->src_created != created || o->src_updated != updated)
      return 0;
    /* The service's times have one-second resolution: a change (a rotation, say) made in the
     * same second the source was read leaves them equal, so such an object is read again. */
    if (o->src_updated >= o->src_fetched_at && !(b->keep_unread && o->src_fetched_at == 0))
      return 0;
  }
  for (i = lo; i < b->n_prev && strcmp(obj_at(&b->prev, i)->src, src) == 0 && *rv == CKR_OK; i++) {
    b->kept_unread |= obj_at(&b->prev, i)->src_fetched_at == 0;
    *rv = push(b, akv_object_ref(obj_at(&b->prev, i)));
  }
  return 1;
}

static int visible_at(const struct akv_slot_config *sc, int64_t now, const struct kv_attrs *a)
{
  if (sc->show_disabled)
    return 1;
  if (!a->enabled)
    return 0;
  if (a->nbf && now < a->nbf)
    return 0;
  if (a->exp && now >= a->exp)
    return 0;
  return 1;
}

static int visible(const struct build *b, const struct kv_attrs *a)
{
  return visible_at(b->sc, b->now, a);
}

static int name_wanted(const struct build *b, const char *name)
{
  return !b->sc->key_filter || fnmatch(b->sc->key_filter, name, 0) == 0;
}

/* Errors that leave one object out instead of failing the refresh: the object went away between
 * list and get, or this identity may not read it. */
static int skippable(kv_rc rc)
{
  return rc == KV_E_NOT_FOUND || rc == KV_E_FORBIDDEN;
}

/* The objects of one fetched key (takes key); none when the key cannot be represented (logged). */
static CK_RV objects_of_key(struct akv_slot *slot, struct kv_key *key, const char *label,
                            const char *src, struct akv_object **objs, size_t *n)
{
  struct akv_keyent *ke = NULL;
  CK_RV rv;

  *n = 0;
  rv = akv_object_keyent_new(key, &ke);
  if (rv == CKR_DEVICE_ERROR)
    return CKR_OK; /* logged: a key we cannot represent is left out */
  if (rv != CKR_OK)
    return rv;
  rv = akv_objects_from_key(slot, ke, label, src, objs, n);
  akv_object_keyent_unref(ke);
  if (rv == CKR_DEVICE_ERROR) {
    akv_warn(AKV_LOGC_CACHE, "key %s: left out (malformed public key)", label);
    *n = 0;
    return CKR_OK;
  }
  return rv;
}

/* objects_of_key, then the key's attestation objects (a Managed HSM's: akv_objects_attest);
 * objs holds AKV_KEY_OBJECTS. */
static CK_RV key_objects(struct akv_slot *slot, struct kv_key *key, const char *label,
                         const char *src, struct akv_object **objs, size_t *n)
{
  size_t m = 0;
  CK_RV rv = objects_of_key(slot, key, label, src, objs, n);
  if (rv == CKR_OK && *n)
    rv = akv_objects_attest(objs[0], objs + *n, &m);
  if (rv != CKR_OK) {
    while (*n)
      akv_object_unref(objs[--*n]);
  }
  *n += m;
  return rv;
}

static CK_RV add_key(struct build *b, struct kv_key *key, const char *label, const char *src)
{
  struct akv_object *objs[AKV_KEY_OBJECTS];
  size_t n = 0, i;
  CK_RV rv = key_objects(b->slot, key, label, src, objs, &n);

  for (i = 0; i < n && rv == CKR_OK; i++)
    rv = push(b, objs[i]);
  for (; i < n; i++)
    akv_object_unref(objs[i]);
  return rv;
}

/* Fetches keys concurrently and turns each into objects. versions may be NULL (latest). */
static CK_RV fetch_keys(struct build *b, const char **names, const char **versions, size_t n)
{
  struct kv_key **keys = NULL;
  kv_rc *rcs = NULL, rc;
  long *sts = NULL; /* each fetch's HTTP status */
  char src[1024], label[1024];
  size_t i;
  CK_RV rv = CKR_HOST_MEMORY;

  if (n == 0)
    return CKR_OK;
  keys = calloc(n, sizeof(*keys));
  rcs = calloc(n, sizeof(*rcs));
  sts = calloc(n, sizeof(*sts));
  if (!keys || !rcs || !sts)
    goto out;
  rc = kv_get_keys(b->slot->client, names, versions, n, akv_threads_allowed(), keys, rcs, sts);
  if (rc != KV_OK && rc != KV_E_NOT_FOUND && rc != KV_E_FORBIDDEN) {
    /* Per-key codes say more; fall through to them when they are set. */
    akv_dbg(AKV_LOGC_CACHE, "kv_get_keys: %s", kv_rc_str(rc));
  }
  rv = CKR_OK;
  for (i = 0; i < n; i++) {
    if (rcs[i] != KV_OK || !keys[i]) {
      rc = rcs[i] != KV_OK ? rcs[i] : rc;
      if (rc == KV_OK)
        rc = KV_E_PROTOCOL;
      if (skippable(rc)) {
        akv_warn(AKV_LOGC_CACHE, "key %s%s%s: %s, left out", names[i], versions ? "/" : "",
                 versions ? versions[i] : "", kv_rc_str(rc));
        continue;
      }
      akv_warn(AKV_LOGC_CACHE, "key %s: %s", names[i], kv_rc_str(rc));
      if (rv == CKR_OK) {
        rv = akv_rv_listing(rc);
        b->http_status = sts[i];
      }
      continue;
    }
    if (rv != CKR_OK)
      continue;
    if (versions) {
      akv_source_id(src, sizeof(src), AKV_SRC_VERSION, names[i], versions[i]);
      snprintf(label, sizeof(label), "%s/%s", names[i], versions[i]);
    } else {
      akv_source_id(src, sizeof(src), AKV_SRC_KEY, names[i], NULL);
      snprintf(label, sizeof(label), "%s", names[i]);
      /* Lazy mode learns the times only now: still carry over unchanged objects. */
      if (!visible(b, &keys[i]->attrs))
        continue;
      if (reuse(b, src, keys[i]->attrs.created, keys[i]->attrs.updated, &rv))
        continue;
    }
    rv = add_key(b, keys[i], label, src);
    keys[i] = NULL;
  }
out:
  if (keys) {
    for (i = 0; i < n; i++)
      kv_key_free(keys[i]);
  }
  free(keys);
  free(rcs);
  free(sts);
  return rv;
}

static int latest_key(const struct akv_object *o)
{
  return o->key && akv_source_is(o->src, AKV_SRC_KEY);
}

static int cmp_key_name(const void *a, const void *b)
{
  const struct akv_object *x = *(struct akv_object *const *)a, *y = *(struct akv_object *const *)b;
  return strcmp(x->key->name, y->key->name);
}

/* The first slot of name among the m objects of idx sorted by key name (m when none). */
static size_t key_name_at(const struct akv_ptrs *idx, size_t m, const char *name)
{
  size_t lo = 0, hi = m;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(obj_at(idx, mid)->key->name, name) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < m && strcmp(obj_at(idx, lo)->key->name, name) == 0 ? lo : m;
}

/* The build's key objects of a latest version (AKV_SRC_KEY) sorted by key name into idx, each
 * name's first slot holding the first of its objects in the build: their count, or (size_t)-1 out
 * of memory. A name is then looked up in log n rather than by a scan of the build per key
 * (docs/performance.md "Listing and cache file at scale"). */
static size_t latest_index(const struct build *b, struct akv_ptrs *idx)
{
  size_t i, m = 0;
  for (i = 0; i < b->snap->n; i++) {
    struct akv_object *o = akv_snapshot_obj(b->snap, i);
    if (latest_key(o) && akv_ptrs_put(idx, m++, o) != 0)
      return (size_t)-1;
  }
  if (akv_ptrs_sort(idx, m, cmp_key_name) != 0)
    return (size_t)-1;
  /* Backwards, so that the earliest object of a name is the last one put in its first slot (the
   * sort keeps no order among equal names); the slots overwritten hold the same name. */
  for (i = b->snap->n; i-- > 0;) {
    struct akv_object *o = akv_snapshot_obj(b->snap, i);
    if (latest_key(o))
      (void)akv_ptrs_put(idx, key_name_at(idx, m, o->key->name), o);
  }
  return m;
}

/* The latest version of a key already in the build (idx, m: latest_index), or NULL. */
static const char *latest_version(const struct akv_ptrs *idx, size_t m, const char *name)
{
  size_t at = key_name_at(idx, m, name);
  return at < m ? obj_at(idx, at)->key->version : NULL;
}

/* Keys a listing leaves to read (and older versions to add) are handed on in chunks of this many
 * (the pending keys' block size, src/store/snapshot.c), so that the arrays of build_keys and
 * build_versions stay a few KB whatever the vault's size (docs/performance.md "Memory per cached
 * key", third pass). */
#define BUILD_CHUNK 512

/* Reads the n versions names[i]/vers[i] and frees the strings. */
static CK_RV flush_versions(struct build *b, const char **names, const char **vers, size_t n,
                            CK_RV rv)
{
  size_t i;
  if (rv == CKR_OK)
    rv = fetch_keys(b, names, vers, n);
  for (i = 0; i < n; i++) {
    free((void *)names[i]);
    free((void *)vers[i]);
  }
  return rv;
}

static CK_RV build_versions(struct build *b, const struct kv_item_list *keys)
{
  struct kv_item_list vl;
  struct akv_ptrs idx;
  const char **names = calloc(BUILD_CHUNK, sizeof(*names));
  const char **vers = calloc(BUILD_CHUNK, sizeof(*vers));
  size_t n = 0, i, j, m = 0;
  char src[1024];
  long st = 0;
  kv_rc rc;
  CK_RV rv = names && vers ? CKR_OK : CKR_HOST_MEMORY;

  memset(&idx, 0, sizeof(idx));
  if (rv == CKR_OK && (m = latest_index(b, &idx)) == (size_t)-1)
    rv = CKR_HOST_MEMORY;
  for (i = 0; i < keys->n && rv == CKR_OK; i++) {
    const struct kv_item *it = kv_item_list_at(keys, i);
    const char *latest;
    /* Older versions stay visible when the latest one is disabled or expired. */
    if (!it->name || !name_wanted(b, it->name))
      continue;
    latest = latest_version(&idx, m, it->name);
    memset(&vl, 0, sizeof(vl));
    rc = kv_list_key_versions(b->slot->client, it->name, &vl, &st);
    if (rc != KV_OK) {
      kv_item_list_free(&vl);
      if (skippable(rc))
        continue;
      rv = akv_rv_listing(rc);
      b->http_status = st;
      break;
    }
    for (j = 0; j < vl.n && rv == CKR_OK; j++) {
      const struct kv_item *v = kv_item_list_at(&vl, j);
      if (!v->version || (latest && strcmp(v->version, latest) == 0) || !visible(b, &v->attrs))
        continue;
      akv_source_id(src, sizeof(src), AKV_SRC_VERSION, it->name, v->version);
      if (reuse(b, src, v->attrs.created, v->attrs.updated, &rv))
        continue;
      names[n] = strdup(it->name);
      vers[n] = strdup(v->version);
      if (!names[n] || !vers[n]) {
        free((void *)names[n]);
        free((void *)vers[n]);
        rv = CKR_HOST_MEMORY;
        break;
      }
      /* Versions objects are AKV_SRC_VERSION: reading a chunk now changes no latest_index. */
      if (++n == BUILD_CHUNK) {
        rv = flush_versions(b, names, vers, n, rv);
        n = 0;
      }
    }
    kv_item_list_free(&vl);
  }
  rv = flush_versions(b, names, vers, n, rv);
  akv_ptrs_free(&idx);
  free(names);
  free(vers);
  return rv;
}

/* The previous snapshot's pending entry for a key, or NULL. */
static struct akv_lazykey *prev_lazy(const struct build *b, const char *name)
{
  size_t lo = 0, hi = b->n_prev_lazy;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(lazy_at(&b->prev_lazy, mid)->name, name);
    if (c == 0)
      return lazy_at(&b->prev_lazy, mid);
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Carries over a pending key the previous snapshot had with the same times: still pending, or its
 * objects when a search resolved it meanwhile. 1 when carried (or known gone), 0 otherwise. */
static int reuse_lazy(struct build *b, const struct kv_item *it, CK_RV *rv)
{
  struct akv_lazykey *lz = prev_lazy(b, it->name);
  struct akv_cache *c = b->slot->cache;
  size_t i;

  *rv = CKR_OK;
  if (!lz || lz->created != it->attrs.created || lz->updated != it->attrs.updated)
    return 0;
  pthread_mutex_lock(&c->lock);
  switch (lz->state) {
  case AKV_LAZY_RESOLVED:
    for (i = 0; i < lz->n && *rv == CKR_OK; i++)
      *rv = push(b, akv_object_ref(lz->objs[i]));
    break;
  case AKV_LAZY_GONE:
    break;
  default:
    *rv = push_lazy(b, akv_snapshot_lazykey_ref(lz));
    break;
  }
  pthread_mutex_unlock(&c->lock);
  return 1;
}

/* Reads now, or leaves pending (lazy), the chunk's n keys. */
static CK_RV build_chunk(struct build *b, const struct kv_item **todo, const char **names, size_t n,
                         int lazy)
{
  struct akv_lazykey *made[BUILD_CHUNK];
  size_t i;
  CK_RV rv;
  if (!lazy)
    return fetch_keys(b, names, NULL, n);
  rv = akv_snapshot_lazykeys_new(todo, n, made);
  for (i = 0; i < n && rv == CKR_OK; i++) {
    rv = push_lazy(b, made[i]);
    while (rv != CKR_OK && ++i < n) /* push_lazy released made[i] */
      akv_snapshot_lazykey_unref(made[i]);
  }
  return rv;
}

static CK_RV build_keys(struct build *b)
{
  struct kv_item_list items;
  unsigned char *wanted = NULL; /* one bit per listed key to read or leave pending */
  const struct kv_item **todo = NULL;
  const char **names = NULL;
  char src[1024];
  size_t n = 0, i, m = 0;
  int lazy;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  memset(&items, 0, sizeof(items));
  if (b->sc->key_names) {
    /* Least privilege: keys/get on the configured names only, never a list call. */
    return fetch_keys(b, (const char **)b->sc->key_names, NULL, b->sc->n_key_names);
  }
  rc = kv_list_keys(b->slot->client, &items, &b->http_status);
  if (rc != KV_OK) {
    akv_log(kv_rc_reported(rc) ? AKV_LOG_DEBUG : AKV_LOG_WARN, AKV_LOGC_CACHE,
            "%s: listing keys: %s", b->sc->url, kv_rc_str(rc));
    rv = akv_rv_listing(rc);
    goto out;
  }
  wanted = calloc(items.n / 8 + 1, 1);
  todo = calloc(BUILD_CHUNK, sizeof(*todo));
  names = calloc(BUILD_CHUNK, sizeof(*names));
  if (!wanted || !todo || !names) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  for (i = 0; i < items.n && rv == CKR_OK; i++) {
    const struct kv_item *it = kv_item_list_at(&items, i);
    if (!it->name || !visible(b, &it->attrs) || !name_wanted(b, it->name))
      continue;
    akv_source_id(src, sizeof(src), AKV_SRC_KEY, it->name, NULL);
    if (reuse(b, src, it->attrs.created, it->attrs.updated, &rv) || rv != CKR_OK)
      continue;
    if (reuse_lazy(b, it, &rv) || rv != CKR_OK)
      continue;
    wanted[i / 8] |= (unsigned char)(1u << (i % 8));
    n++;
  }
  /* Many new or changed keys (a large vault, first listing): read each only when a search may
   * match it. versions "all" needs every latest version to know which older ones to show. */
  lazy = (int64_t)n > b->sc->prefetch_keys && !b->sc->versions_all;
  for (i = 0; i < items.n && rv == CKR_OK; i++) {
    if (wanted[i / 8] & (1u << (i % 8))) {
      todo[m] = kv_item_list_at(&items, i);
      names[m] = todo[m]->name;
      m++;
    }
    if (m && (m == BUILD_CHUNK || i + 1 == items.n)) {
      rv = build_chunk(b, todo, names, m, lazy);
      m = 0;
    }
  }
  if (rv == CKR_OK && lazy)
    akv_dbg(AKV_LOGC_CACHE, "%s: %zu key(s) read on demand (more than prefetch_keys %lld)",
            b->sc->url, n, (long long)b->sc->prefetch_keys);
  if (rv == CKR_OK && b->sc->versions_all)
    rv = build_versions(b, &items);
out:
  free(wanted);
  free(names);
  free(todo);
  kv_item_list_free(&items);
  return rv;
}

/* Chain certificates from the certificate's secret (defined at the end). */
static CK_RV add_chain(struct build *b, const struct kv_cert *cert, const char *src);

static CK_RV add_cert(struct build *b, const char *name)
{
  struct kv_cert *cert = NULL;
  struct akv_object *obj = NULL;
  char src[1024];
  long st = 0;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  rc = kv_get_certificate(b->slot->client, name, NULL, &cert, &st);
  if (rc != KV_OK) {
    if (skippable(rc)) {
      akv_dbg(AKV_LOGC_CACHE, "certificate %s: %s, left out", name, kv_rc_str(rc));
      return CKR_OK;
    }
    b->http_status = st;
    return akv_rv_listing(rc);
  }
  akv_source_id(src, sizeof(src), AKV_SRC_CERT, name, NULL);
  if (!visible(b, &cert->attrs))
    goto out;
  if (reuse(b, src, cert->attrs.created, cert->attrs.updated, &rv))
    goto out;
  rv = akv_object_from_cert(b->slot, cert, src, &obj);
  if (rv == CKR_DEVICE_ERROR) {
    rv = CKR_OK; /* logged: malformed certificate left out */
    goto out;
  }
  if (rv == CKR_OK)
    rv = push(b, obj);
  /* Intermediates carried in the certificate's secret, when the slot reads secrets. */
  if (rv == CKR_OK && (b->sc->objects & AKV_OBJ_SECRETS))
    rv = add_chain(b, cert, src);
out:
  kv_cert_free(cert);
  return rv;
}

static CK_RV build_certs(struct build *b)
{
  struct kv_item_list items;
  char src[1024];
  size_t i;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  if (b->sc->key_names) {
    /* Lazy mode: the certificate of a key has the key's name. */
    for (i = 0; i < b->sc->n_key_names && rv == CKR_OK; i++)
      rv = add_cert(b, b->sc->key_names[i]);
    return rv;
  }
  memset(&items, 0, sizeof(items));
  rc = kv_list_certificates(b->slot->client, &items, &b->http_status);
  if (rc != KV_OK) {
    akv_log(kv_rc_reported(rc) ? AKV_LOG_DEBUG : AKV_LOG_WARN, AKV_LOGC_CACHE,
            "%s: listing certificates: %s", b->sc->url, kv_rc_str(rc));
    kv_item_list_free(&items);
    return akv_rv_listing(rc);
  }
  for (i = 0; i < items.n && rv == CKR_OK; i++) {
    const struct kv_item *it = kv_item_list_at(&items, i);
    if (!it->name || !visible(b, &it->attrs))
      continue;
    akv_source_id(src, sizeof(src), AKV_SRC_CERT, it->name, NULL);
    if (reuse(b, src, it->attrs.created, it->attrs.updated, &rv))
      continue;
    rv = add_cert(b, it->name);
  }
  kv_item_list_free(&items);
  return rv;
}

static CK_RV build_secrets(struct build *b)
{
  struct kv_item_list items;
  struct akv_object *obj;
  char src[1024];
  size_t i;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  if (b->sc->key_names)
    return CKR_OK; /* lazy mode lists nothing, and secrets are only known by listing */
  memset(&items, 0, sizeof(items));
  rc = kv_list_secrets(b->slot->client, &items, &b->http_status);
  if (rc != KV_OK) {
    akv_log(kv_rc_reported(rc) ? AKV_LOG_DEBUG : AKV_LOG_WARN, AKV_LOGC_CACHE,
            "%s: listing secrets: %s", b->sc->url, kv_rc_str(rc));
    kv_item_list_free(&items);
    return akv_rv_listing(rc);
  }
  for (i = 0; i < items.n && rv == CKR_OK; i++) {
    const struct kv_item *it = kv_item_list_at(&items, i);
    /* Secrets backing certificates are the certificates' business, not data objects. */
    if (!it->name || it->attrs.managed || !visible(b, &it->attrs))
      continue;
    akv_source_id(src, sizeof(src), AKV_SRC_SECRET, it->name, NULL);
    if (reuse(b, src, it->attrs.created, it->attrs.updated, &rv))
      continue;
    rv = akv_object_from_secret(b->slot, it, src, &obj);
    if (rv == CKR_OK)
      rv = push(b, obj);
  }
  kv_item_list_free(&items);
  return rv;
}

/* to := from's n items sorted by cmp, in blocks: 0, or -1 out of memory. */
static int sorted_copy(struct akv_ptrs *to, const struct akv_ptrs *from, size_t n,
                       int (*cmp)(const void *, const void *))
{
  size_t i;
  if (akv_ptrs_reserve(to, n) != 0)
    return -1;
  for (i = 0; i < n; i++)
    akv_ptrs_put(to, i, akv_ptrs_at(from, i)); /* within the room reserved: cannot fail */
  return akv_ptrs_sort(to, n, cmp);
}

static CK_RV build_snapshot(struct akv_slot *slot, struct akv_snapshot *prev,
                            struct akv_snapshot **out, long *http_status)
{
  struct build b;
  size_t i;
  CK_RV rv = CKR_HOST_MEMORY;

  memset(&b, 0, sizeof(b));
  b.slot = slot;
  b.sc = slot->cfg;
  b.now = akv_now();
  pthread_mutex_lock(&slot->cache->lock);
  b.keep_unread = slot->cache->id_miss_listing;
  pthread_mutex_unlock(&slot->cache->lock);
  b.snap = calloc(1, sizeof(*b.snap));
  if (!b.snap)
    goto out;
  b.snap->refs = 1;
  b.snap->built_at = b.now;
  if (prev && prev->n) {
    if (sorted_copy(&b.prev, &prev->objs, prev->n, cmp_src) != 0)
      goto out;
    b.n_prev = prev->n;
  }
  if (prev && prev->n_lazy) {
    if (sorted_copy(&b.prev_lazy, &prev->lazy, prev->n_lazy, cmp_lazy_name) != 0)
      goto out;
    b.n_prev_lazy = prev->n_lazy;
  }
  rv = CKR_OK;
  if (b.sc->objects & AKV_OBJ_KEYS)
    rv = build_keys(&b);
  if (rv == CKR_OK && (b.sc->objects & AKV_OBJ_CERTIFICATES))
    rv = build_certs(&b);
  if (rv == CKR_OK && (b.sc->objects & AKV_OBJ_SECRETS))
    rv = build_secrets(&b);
  if (rv == CKR_OK)
    rv = akv_snapshot_sort(b.snap);
  if (rv != CKR_OK)
    goto out;
  /* Secret values carried over with their objects are wiped at every refresh once past their
   * TTL, not only when read again. */
  for (i = 0; i < b.snap->n; i++)
    akv_object_expire_value(akv_snapshot_obj(b.snap, i), b.now);
  /* Objects carried over unread keep the age of the listing they came with: the refresh at the TTL
   * still reads them from the vault (docs/design.md "Keys created since the listing"). */
  if (b.kept_unread && prev)
    b.snap->built_at = prev->built_at;
  akv_dbg(AKV_LOGC_CACHE, "%s: %zu object(s), %zu key(s) pending", b.sc->url, b.snap->n,
          b.snap->n_lazy);
out:
  if (rv != CKR_OK) {
    akv_snapshot_unref(b.snap);
    b.snap = NULL;
  }
  akv_ptrs_free(&b.prev);
  akv_ptrs_free(&b.prev_lazy);
  *out = b.snap;
  if (http_status)
    *http_status = rv == CKR_OK ? 0 : b.http_status;
  return rv;
}

/* ---- refresh policy ---------------------------------------------------------------------------
 */

static void held_remove_inlock(struct akv_cache *c, size_t i);

struct akv_cache *akv_cache_new(struct akv_slot *slot)
{
  struct akv_cache *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  if (pthread_mutex_init(&c->lock, NULL) != 0) {
    free(c);
    return NULL;
  }
  if (pthread_cond_init(&c->cond, NULL) != 0) {
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
  }
  c->slot = slot;
  return c;
}

void akv_cache_free(struct akv_cache *c)
{
  if (!c)
    return;
  /* A background refresh holds the slot's client: let it finish (bounded by the backend's
   * deadline) before the client goes away. */
  pthread_mutex_lock(&c->lock);
  c->cold_cancel = 1; /* a first listing not started yet is not started */
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  if (c->bg_joinable)
    pthread_join(c->bg, NULL);
  akv_snapshot_unref(c->cold);
  if (c->file_dirty)
    akv_cache_file_save(c->slot, c->snap, AKV_CF_IF_NOT_OLDER);
  akv_snapshot_unref(c->snap);
  while (c->n_held)
    held_remove_inlock(c, c->n_held - 1);
  free(c->held);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

struct akv_snapshot *akv_cache_peek(struct akv_cache *c)
{
  struct akv_snapshot *snap;
  pthread_mutex_lock(&c->lock);
  snap = akv_snapshot_ref(c->snap ? c->snap : c->cold);
  pthread_mutex_unlock(&c->lock);
  return snap;
}

void akv_cache_invalidate(struct akv_cache *c)
{
  pthread_mutex_lock(&c->lock);
  c->invalid = 1;
  c->retry_after = 0;
  pthread_mutex_unlock(&c->lock);
}

/* ---- handles held across a rotation (docs/lifecycle.md "Handles held across a rotation") ----- */

static int handed_out(const struct akv_object *obj)
{
  return __atomic_load_n(&obj->handed_out, __ATOMIC_ACQUIRE);
}

static void mark_handed_out(struct akv_object *obj)
{
  __atomic_store_n(&obj->handed_out, 1, __ATOMIC_RELEASE);
}

/* The name part of a source id ("k|NAME", "v|NAME|VERSION", "c|NAME") and the object's version
 * (CKA_AKV_VERSION): a superseded version is counted per name and released whole. */
static int same_name(const char *a, const char *b)
{
  enum akv_source_kind ka, kb;
  const char *na, *nb, *va, *vb;
  size_t la, lb;
  if (!akv_source_split(a, &ka, &na, &la, &va) || !akv_source_split(b, &kb, &nb, &lb, &vb))
    return 0;
  return la == lb && strncasecmp(na, nb, la) == 0;
}

static int same_version(const struct akv_object *x, const struct akv_object *y)
{
  const CK_ATTRIBUTE *a = akv_object_attr(x, CKA_AKV_VERSION);
  const CK_ATTRIBUTE *b = akv_object_attr(y, CKA_AKV_VERSION);
  return a && b && a->ulValueLen == b->ulValueLen &&
         memcmp(a->pValue, b->pValue, a->ulValueLen) == 0 && same_name(x->src, y->src);
}

static void held_remove_inlock(struct akv_cache *c, size_t i)
{
  akv_object_unref(c->held[i].obj);
  c->held[i] = c->held[c->n_held - 1];
  __atomic_store_n(&c->n_held, c->n_held - 1, __ATOMIC_RELEASE);
}

static ssize_t held_index_inlock(const struct akv_cache *c, CK_OBJECT_HANDLE h)
{
  size_t i;
  for (i = 0; i < c->n_held; i++) {
    if (c->held[i].obj->handle == h)
      return (ssize_t)i;
  }
  return -1;
}

/* Keeps at most HELD_VERSIONS_PER_NAME superseded versions of obj's name: the least recently used
 * version beyond that is released, with a warning naming it. */
static void held_bound_inlock(struct akv_cache *c, const struct akv_object *obj)
{
  for (;;) {
    size_t i, j, versions = 0, lru = SIZE_MAX;
    for (i = 0; i < c->n_held; i++) {
      const struct akv_object *o = c->held[i].obj;
      if (!same_name(o->src, obj->src))
        continue;
      for (j = 0; j < i && !same_version(c->held[j].obj, o); j++)
        ;
      if (j == i)
        versions++;
      if (lru == SIZE_MAX || c->held[i].used < c->held[lru].used)
        lru = i;
    }
    if (versions <= HELD_VERSIONS_PER_NAME || lru == SIZE_MAX)
      return;
    {
      struct akv_object *gone = akv_object_ref(c->held[lru].obj);
      const CK_ATTRIBUTE *v = akv_object_attr(gone, CKA_AKV_VERSION);
      akv_warn(AKV_LOGC_CACHE,
               "%s: more than %d superseded versions of %s are held by handles: version %.*s "
               "(least recently used) is released, its handles answer CKR_OBJECT_HANDLE_INVALID",
               c->slot->cfg->url, HELD_VERSIONS_PER_NAME, akv_source_name(gone->src),
               v ? (int)v->ulValueLen : 0, v ? (const char *)v->pValue : "");
      for (i = 0; i < c->n_held;) {
        if (same_version(c->held[i].obj, gone))
          held_remove_inlock(c, i);
        else
          i++;
      }
      akv_object_unref(gone);
    }
  }
}

/* obj (handed out) lost its place in the snapshot to a new version of its source. */
static void supersede_inlock(struct akv_cache *c, struct akv_object *obj)
{
  if (held_index_inlock(c, obj->handle) >= 0)
    return;
  if (c->n_held == c->cap_held) {
    size_t cap = c->cap_held ? c->cap_held * 2 : 8;
    struct held *v = realloc(c->held, cap * sizeof(*v));
    if (!v) {
      akv_warn(AKV_LOGC_CACHE,
               "%s: out of memory: handle %lu of %s answers "
               "CKR_OBJECT_HANDLE_INVALID after the rotation",
               c->slot->cfg->url, (unsigned long)obj->handle, obj->src);
      return;
    }
    c->held = v;
    c->cap_held = cap;
  }
  c->held[c->n_held].obj = akv_object_ref(obj);
  c->held[c->n_held].pinned_below = c->sess_next;
  c->held[c->n_held].used = ++c->use_clock;
  __atomic_store_n(&c->n_held, c->n_held + 1, __ATOMIC_RELEASE);
  akv_dbg(AKV_LOGC_CACHE, "%s: handle %lu (%s) superseded by a new version, kept for its holders",
          c->slot->cfg->url, (unsigned long)obj->handle, obj->src);
  held_bound_inlock(c, obj);
}

/* Releases the superseded objects no session can name any more: every session open when they
 * were superseded or last used has closed, and nothing else (an operation, a call in flight)
 * references them. */
static void held_sweep_inlock(struct akv_cache *c)
{
  size_t i, before = c->n_held;
  for (i = 0; i < c->n_held;) {
    if (c->sess_oldest >= c->held[i].pinned_below &&
        __atomic_load_n(&c->held[i].obj->refs, __ATOMIC_ACQUIRE) == 1)
      held_remove_inlock(c, i);
    else
      i++;
  }
  if (before)
    akv_dbg(AKV_LOGC_CACHE, "%s: %zu superseded object(s) held, %zu released", c->slot->cfg->url,
            c->n_held, before - c->n_held);
}

/* Whether a snapshot has objects of a source (or the key pending), for the swap's rule: its
 * objects sorted by source, built at the first question. Out of memory it answers no (the object
 * is then not kept, as before a rotation rule existed). */
struct src_index {
  const struct akv_snapshot *snap;
  struct akv_ptrs v;
  size_t n;
  int built;
};

static int src_present(struct src_index *ix, const char *src)
{
  const struct akv_snapshot *snap = ix->snap;
  size_t lo = 0, hi, i;

  if (!ix->built && snap->n && sorted_copy(&ix->v, &snap->objs, snap->n, cmp_src) == 0)
    ix->n = snap->n;
  ix->built = 1;
  hi = ix->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct akv_object *o = obj_at(&ix->v, mid);
    int d = strcmp(o->src ? o->src : "", src);
    if (d == 0)
      return 1;
    if (d < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  /* A key whose new version is pending (not read yet) is still the key. */
  if (akv_source_is(src, AKV_SRC_KEY)) {
    for (i = 0; i < snap->n_lazy; i++) {
      if (strcmp(akv_snapshot_lazy(snap, i)->name, akv_source_name(src)) == 0)
        return 1;
    }
  }
  return 0;
}

/* Publishes snap (takes it) as the current snapshot. A handed-out object passes its mark to the
 * object of the same handle in snap; one whose handle snap lacks while its source is still there
 * (a new version replaced it) moves to the superseded table. A superseded object whose handle snap
 * lists again leaves the table; with release_gone (a write that removed objects: C_DestroyObject),
 * so do those whose source left snap. */
static void swap_inlock(struct akv_cache *c, struct akv_snapshot *snap, int release_gone)
{
  struct akv_snapshot *old = c->snap;
  struct src_index ix = {snap, {0}, 0, 0};
  size_t i, j = 0;

  c->snap = snap;
  for (i = 0; old && i < old->n; i++) {
    struct akv_object *o = akv_snapshot_obj(old, i);
    while (j < snap->n && akv_snapshot_obj(snap, j)->handle < o->handle)
      j++;
    if (!handed_out(o))
      continue;
    if (j < snap->n && akv_snapshot_obj(snap, j)->handle == o->handle)
      mark_handed_out(akv_snapshot_obj(snap, j));
    else if (o->src && !o->session && src_present(&ix, o->src))
      supersede_inlock(c, o);
  }
  for (i = 0; i < c->n_held;) {
    struct akv_object *back = akv_snapshot_find(snap, c->held[i].obj->handle);
    if (back) /* the version is listed again (versions: "all", or its successor went away) */
      mark_handed_out(back);
    if (back || (release_gone && !src_present(&ix, c->held[i].obj->src)))
      held_remove_inlock(c, i);
    else
      i++;
  }
  akv_ptrs_free(&ix.v);
  akv_snapshot_unref(old);
}

void akv_cache_hand_out(struct akv_cache *c, struct akv_object *obj)
{
  struct akv_object *cur;

  if (!c || !obj || handed_out(obj) || obj->session || !obj->src)
    return;
  pthread_mutex_lock(&c->lock);
  mark_handed_out(obj);
  /* A refresh may have replaced the snapshot obj was found in since: the mark must reach what
   * stands for obj now, or obj must be kept as superseded (the same rule as swap_inlock). */
  cur = akv_snapshot_find(c->snap, obj->handle);
  if (cur) {
    mark_handed_out(cur);
  } else if (c->snap && held_index_inlock(c, obj->handle) < 0) {
    struct src_index ix = {c->snap, {0}, 0, 0};
    if (src_present(&ix, obj->src))
      supersede_inlock(c, obj);
    akv_ptrs_free(&ix.v);
  }
  pthread_mutex_unlock(&c->lock);
}

struct akv_object *akv_cache_held(struct akv_cache *c, CK_OBJECT_HANDLE h)
{
  struct akv_object *obj = NULL;
  ssize_t i;

  if (!c || __atomic_load_n(&c->n_held, __ATOMIC_ACQUIRE) == 0)
    return NULL;
  pthread_mutex_lock(&c->lock);
  i = held_index_inlock(c, h);
  if (i >= 0) {
    obj = akv_object_ref(c->held[i].obj);
    c->held[i].pinned_below = c->sess_next;
    c->held[i].used = ++c->use_clock;
  }
  pthread_mutex_unlock(&c->lock);
  return obj;
}

void akv_cache_sessions(struct akv_cache *c, CK_SESSION_HANDLE oldest, CK_SESSION_HANDLE next)
{
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  if (oldest > c->sess_oldest)
    c->sess_oldest = oldest;
  if (next > c->sess_next)
    c->sess_next = next;
  if (c->n_held)
    held_sweep_inlock(c);
  pthread_mutex_unlock(&c->lock);
}

size_t akv_cache_held_find(struct akv_cache *c, enum akv_source_kind kind, const char *name,
                           const unsigned char *id, size_t id_len, struct akv_object **out,
                           size_t cap)
{
  size_t i, n = 0;

  if (!c || __atomic_load_n(&c->n_held, __ATOMIC_ACQUIRE) == 0)
    return 0;
  pthread_mutex_lock(&c->lock);
  for (i = 0; i < c->n_held && n < cap; i++) {
    struct akv_object *o = c->held[i].obj;
    const CK_ATTRIBUTE *a = akv_object_attr(o, CKA_ID);
    if (!akv_source_names(o->src, kind, name) || !a || a->ulValueLen != id_len ||
        memcmp(a->pValue, id, id_len) != 0)
      continue;
    out[n++] = akv_object_ref(o);
    c->held[i].pinned_below = c->sess_next;
    c->held[i].used = ++c->use_clock;
  }
  pthread_mutex_unlock(&c->lock);
  return n;
}

void akv_cache_keep(struct akv_cache *c, struct akv_object *const *objs, size_t n)
{
  size_t i;
  pthread_mutex_lock(&c->lock);
  for (i = 0; i < n; i++) {
    mark_handed_out(objs[i]);
    supersede_inlock(c, objs[i]);
  }
  pthread_mutex_unlock(&c->lock);
}

size_t akv_cache_superseded_count(struct akv_cache *c)
{
  size_t n;
  pthread_mutex_lock(&c->lock);
  n = c->n_held;
  pthread_mutex_unlock(&c->lock);
  return n;
}

/* Folds the resolved pending keys of the current snapshot into its objects (a new snapshot of the
 * same age), so that handle lookups find them by binary search. Call with c->lock held. 1 when the
 * snapshot changed; on allocation failure the resolved keys stay where they are (a search still
 * sees them) and the next call tries again. */
static int promote_inlock(struct akv_cache *c)
{
  struct akv_snapshot *old = c->snap, *snap;
  size_t i, j, extra = 0, left = 0;
  CK_RV rv = CKR_OK;

  if (!old)
    return 0;
  for (i = 0; i < old->n_lazy; i++) {
    const struct akv_lazykey *lz = akv_snapshot_lazy(old, i);
    if (lz->state == AKV_LAZY_RESOLVED)
      extra += lz->n;
    else if (lz->state != AKV_LAZY_GONE)
      left++;
  }
  if (left == old->n_lazy)
    return 0;
  snap = calloc(1, sizeof(*snap));
  if (!snap)
    return 0;
  snap->refs = 1;
  snap->built_at = old->built_at;
  if (akv_ptrs_reserve(&snap->objs, old->n + extra) != 0 ||
      akv_ptrs_reserve(&snap->lazy, left) != 0)
    rv = CKR_HOST_MEMORY;
  for (i = 0; i < old->n && rv == CKR_OK; i++)
    rv = akv_snapshot_add(snap, akv_object_ref(akv_snapshot_obj(old, i)));
  for (i = 0; i < old->n_lazy && rv == CKR_OK; i++) {
    struct akv_lazykey *lz = akv_snapshot_lazy(old, i);
    if (lz->state == AKV_LAZY_RESOLVED) {
      for (j = 0; j < lz->n && rv == CKR_OK; j++)
        rv = akv_snapshot_add(snap, akv_object_ref(lz->objs[j]));
    } else if (lz->state != AKV_LAZY_GONE) {
      rv = akv_snapshot_add_lazy(snap, akv_snapshot_lazykey_ref(lz));
    }
  }
  if (rv == CKR_OK)
    rv = akv_snapshot_sort(snap);
  if (rv != CKR_OK) {
    akv_snapshot_unref(snap);
    return 0;
  }
  swap_inlock(c, snap, 0);
  return 1;
}

/* Publishes the result of a build. Call with c->lock held; takes built. */
static CK_RV publish_inlock(struct akv_cache *c, CK_RV rv, struct akv_snapshot *built,
                            int64_t started)
{
  const struct akv_slot_config *sc = c->slot->cfg;

  c->refreshing = 0;
  c->gen++;
  c->last_rv = rv;
  c->last_http = 0; /* publish_build_inlock records a failed build's */
  pthread_cond_broadcast(&c->cond);
  if (rv == CKR_OK) {
    if (!c->snap && c->cold) {
      /* The objects cold searches handed out pass their marks to the listing's (same handles). */
      c->snap = c->cold;
      c->cold = NULL;
      c->n_cold_names = 0;
    }
    swap_inlock(c, built, 0);
    if (c->n_held)
      held_sweep_inlock(c);
    c->invalid = 0;
    c->retry_after = 0;
    /* A search may have resolved pending keys the build carried over while it ran. */
    promote_inlock(c);
    return CKR_OK;
  }
  if (c->snap && started - c->snap->built_at < sc->ttl_s + sc->stale_if_error_s) {
    akv_warn(AKV_LOGC_CACHE, "%s: refresh failed (%s); serving the list from %lld s ago", sc->url,
             akv_rv_name(rv), (long long)(started - c->snap->built_at));
    c->retry_after = started + RETRY_AFTER_FAILURE_S;
    return CKR_OK;
  }
  return rv;
}

/* publish_inlock, keeping the HTTP status of a failed build (kv.h) for the searches that share
 * its failure (akv_cache_get). */
static CK_RV publish_build_inlock(struct akv_cache *c, CK_RV rv, struct akv_snapshot *built,
                                  int64_t started, long http_status)
{
  CK_RV r = publish_inlock(c, rv, built, started);
  if (rv != CKR_OK)
    c->last_http = http_status;
  return r;
}

/* A process that exits without C_Finalize while a background refresh runs (a short-lived tool past
 * the soft TTL: `nginx -s reload` with the libp11 engine) would have OpenSSL's exit handler free
 * what the refresh's TLS connection uses. The first background refresh registers an exit handler,
 * run before OpenSSL's (registered earlier), that waits for the refreshes of this process to end,
 * at most BG_EXIT_WAIT_MS (docs/design.md "Cache"). Atomics, not locks: a forked child runs the
 * handler too, with its parent's counter, and must not wait for threads it does not have. */
#define BG_EXIT_WAIT_MS 5000

static int bg_running; /* atomic: background refreshes running in process bg_pid */
static pid_t bg_pid;   /* atomic */
static pthread_once_t bg_exit_once = PTHREAD_ONCE_INIT;
static int bg_exiting; /* atomic: the exit handler ran; a scheduled first listing does not start */

static void bg_wait_at_exit(void)
{
  struct timespec ts = {0, 10 * 1000000L};
  int i;
  __atomic_store_n(&bg_exiting, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) != getpid())
    return;
  for (i = 0; i < BG_EXIT_WAIT_MS / 10 && __atomic_load_n(&bg_running, __ATOMIC_ACQUIRE) > 0; i++)
    nanosleep(&ts, NULL);
}

static void bg_exit_register(void)
{
  (void)atexit(bg_wait_at_exit);
}

/* Counts a background refresh in (+1) or out (-1) of this process. */
static void bg_count(int d)
{
  pid_t me = getpid();
  if (__atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) != me) { /* the first in this process */
    __atomic_store_n(&bg_running, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&bg_pid, me, __ATOMIC_RELEASE);
  }
  __atomic_add_fetch(&bg_running, d, __ATOMIC_ACQ_REL);
}

static void *bg_main(void *arg)
{
  struct akv_cache *c = arg;
  struct akv_snapshot *prev, *built = NULL;
  int64_t started = akv_now();
  long http = 0;
  CK_RV rv;

  pthread_mutex_lock(&c->lock);
  prev = akv_snapshot_ref(c->snap ? c->snap : c->cold);
  pthread_mutex_unlock(&c->lock);
  rv = build_snapshot(c->slot, prev, &built, &http);
  akv_snapshot_unref(prev);
  if (rv == CKR_OK)
    akv_cache_file_save(c->slot, built, 0);
  pthread_mutex_lock(&c->lock);
  /* Into the cache's record of the build only: a search that shares this failure takes it from
   * there (akv_cache_get), no session is written from here. */
  publish_build_inlock(c, rv, built, started, http);
  pthread_mutex_unlock(&c->lock);
  bg_count(-1);
  return NULL;
}

/* Starts the one background refresh. Call with c->lock held and no refresh in flight. */
static void start_bg_inlock(struct akv_cache *c)
{
  if (!akv_threads_allowed())
    return;
  if (c->bg_joinable) {
    pthread_join(c->bg, NULL); /* the previous one has finished: refreshing is 0 */
    c->bg_joinable = 0;
  }
  c->refreshing = 1;
  (void)pthread_once(&bg_exit_once, bg_exit_register);
  bg_count(1);
  if (pthread_create(&c->bg, NULL, bg_main, c) != 0) {
    bg_count(-1);
    c->refreshing = 0;
    akv_warn(AKV_LOGC_CACHE, "cannot start a background refresh; refreshing at the TTL");
    return;
  }
  c->bg_joinable = 1;
}

/* A synchronous refresh: under the cross-process lock, adopt what another process listed within
 * the TTL (newer than ours, and listed at floor or later), else list and share the result through
 * the file. */
static CK_RV refresh_since(struct akv_slot *slot, struct akv_snapshot *prev, int use_file,
                           int64_t floor, struct akv_snapshot **out, long *http_status)
{
  int lock = akv_cache_file_lock();
  struct akv_snapshot *base = NULL;
  CK_RV rv = CKR_FUNCTION_FAILED;

  *out = NULL;
  if (http_status)
    *http_status = 0;
  if (use_file && (rv = akv_cache_file_load(slot, out)) == CKR_OK) {
    if ((!prev || (*out)->built_at > prev->built_at) && (*out)->built_at >= floor) {
      rv = CKR_OK;
      goto out;
    }
    if (!prev || (*out)->built_at > prev->built_at)
      base = *out; /* newer than prev but listed before floor: the listing starts from it */
    else
      akv_snapshot_unref(*out);
    *out = NULL;
  } else if (use_file && rv != CKR_FUNCTION_FAILED) {
    goto out; /* the credential produced no token (logged): the listing would ask for the same */
  }
  rv = build_snapshot(slot, base ? base : prev, out, http_status);
  akv_snapshot_unref(base);
  if (rv == CKR_OK)
    akv_cache_file_save(slot, *out, lock >= 0 ? AKV_CF_HAVE_LOCK : 0);
out:
  akv_cache_file_unlock(lock);
  return rv;
}

static CK_RV refresh_sync(struct akv_slot *slot, struct akv_snapshot *prev, int use_file,
                          struct akv_snapshot **out, long *http_status)
{
  return refresh_since(slot, prev, use_file, INT64_MIN, out, http_status);
}

CK_RV akv_cache_get(struct akv_cache *c, struct akv_snapshot **out, long *http_status)
{
  const struct akv_slot_config *sc = c->slot->cfg;
  struct akv_snapshot *prev, *built = NULL;
  int64_t now, age, soft = sc->ttl_s * 3 / 4, started;
  unsigned gen;
  int use_file;
  long http = 0;
  CK_RV rv;

  if (http_status)
    *http_status = 0;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    now = akv_now();
    if (c->snap && !c->invalid) {
      age = now - c->snap->built_at;
      if (age < soft)
        goto serve;
      if (age < sc->ttl_s) {
        if (!c->refreshing)
          start_bg_inlock(c);
        goto serve;
      }
    }
    if (c->snap && now < c->retry_after)
      goto serve;
    if (!c->refreshing)
      break;
    /* Single flight: another thread (or the background refresh) is building; wait for it and
     * share its failure rather than repeating it when there is nothing to serve. */
    gen = c->gen;
    while (c->refreshing && c->gen == gen) {
      if (c->cold_wait && !c->cold_go) { /* the listing a cold search scheduled: needed now */
        c->cold_go = 1;
        pthread_cond_broadcast(&c->cond);
      }
      pthread_cond_wait(&c->cond, &c->lock);
    }
    if (!c->snap && c->gen != gen && c->last_rv != CKR_OK) {
      rv = c->last_rv;
      if (http_status)
        *http_status = c->last_http;
      pthread_mutex_unlock(&c->lock);
      return rv;
    }
  }
  c->refreshing = 1;
  prev = akv_snapshot_ref(c->snap ? c->snap : c->cold); /* cold: built_at 0, any file is newer */
  use_file = !c->invalid;
  pthread_mutex_unlock(&c->lock);

  started = now;
  rv = refresh_sync(c->slot, prev, use_file, &built, &http);
  akv_snapshot_unref(prev);

  pthread_mutex_lock(&c->lock);
  rv = publish_build_inlock(c, rv, built, started, http);
  if (rv != CKR_OK) {
    if (http_status)
      *http_status = http;
    pthread_mutex_unlock(&c->lock);
    return rv;
  }
serve:
  *out = akv_snapshot_ref(c->snap);
  pthread_mutex_unlock(&c->lock);
  return CKR_OK;
}

int akv_cache_id_miss(struct akv_cache *c, const struct akv_snapshot *seen)
{
  int64_t bound = c->slot->cfg->id_miss_refresh_s, now, age;
  struct akv_snapshot *prev, *built = NULL;
  unsigned gen;
  int newer = 0;
  CK_RV rv;

  if (bound <= 0 || !seen)
    return 0;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    now = akv_now();
    if (!c->snap)
      goto out;
    if (c->snap != seen && c->snap->built_at > seen->built_at) {
      newer = 1; /* listed since the search looked */
      goto out;
    }
    if (!c->refreshing)
      break;
    /* Single flight: the refresh in flight (another search's, the background one) is this
     * search's answer; wait for it instead of answering from the listing it replaces. */
    gen = c->gen;
    while (c->refreshing && c->gen == gen)
      pthread_cond_wait(&c->cond, &c->lock);
    if (c->gen != gen && c->last_rv == CKR_OK) {
      newer = c->snap != seen;
      goto out;
    }
  }
  age = now - c->snap->built_at;
  if (c->id_miss_at && now >= c->id_miss_at && now - c->id_miss_at < bound) {
    /* Listed for a miss within the bound already: its result is the answer. */
    newer = c->snap != seen;
    goto out;
  }
  if (age < bound || now < c->retry_after)
    goto out; /* the listing is recent enough, or the vault failed it a moment ago */
  c->id_miss_at = now;
  c->id_miss_listing = 1;
  c->refreshing = 1;
  prev = akv_snapshot_ref(c->snap);
  pthread_mutex_unlock(&c->lock);

  akv_info(AKV_LOGC_CACHE,
           "%s: a search by CKA_ID found nothing; listing the vault again (the list is %lld s old)",
           c->slot->cfg->url, (long long)age);
  /* Another process's listing in the cache file serves when it is as recent as the bound asks. */
  rv = refresh_since(c->slot, prev, 1, now - bound + 1, &built, NULL);
  akv_snapshot_unref(prev);

  pthread_mutex_lock(&c->lock);
  c->id_miss_listing = 0;
  rv = publish_inlock(c, rv, built, now);
  newer = rv == CKR_OK && c->snap != seen;
out:
  pthread_mutex_unlock(&c->lock);
  return newer;
}

/* ---- writes change the snapshot at once ------------------------------------------------------ */

/* A pending key that an added object replaces (same source: the key was just generated or
 * rotated through the module). */
static int lazy_replaced(const struct akv_lazykey *lz, struct akv_object *const *add, size_t n_add)
{
  size_t i;
  for (i = 0; i < n_add; i++) {
    const char *src = add[i]->src;
    if (akv_source_is(src, AKV_SRC_KEY) && strcmp(akv_source_name(src), lz->name) == 0)
      return 1;
  }
  return 0;
}

static CK_RV cold_apply_inlock(struct akv_cache *c,
                               int (*drop)(const struct akv_object *, const void *),
                               const void *arg, struct akv_object *const *add, size_t n_add);

/* A new snapshot derived from old (NULL: none) without anything else changing: old's objects but
 * those drop (may be NULL) selects, plus add (referenced; marked handed out when hand_out: added on
 * a caller's behalf, a key it generated or its search or operation read), sorted by handle; old's
 * pending keys but those add replaces; old's age (the vault's state is newer than the listing, not
 * older), 0 without old. Shared by writes to a listed snapshot and by the cold snapshot's changes.
 * NULL when out of memory. */
static struct akv_snapshot *derive(const struct akv_snapshot *old,
                                   int (*drop)(const struct akv_object *, const void *),
                                   const void *arg, struct akv_object *const *add, size_t n_add,
                                   int hand_out)
{
  size_t n_old = old ? old->n : 0, n_lazy = old ? old->n_lazy : 0, i;
  struct akv_snapshot *snap = calloc(1, sizeof(*snap));
  CK_RV rv = CKR_OK;

  if (!snap)
    return NULL;
  snap->refs = 1;
  snap->built_at = old ? old->built_at : 0;
  if (akv_ptrs_reserve(&snap->objs, n_old + n_add) != 0 ||
      akv_ptrs_reserve(&snap->lazy, n_lazy) != 0)
    rv = CKR_HOST_MEMORY;
  for (i = 0; i < n_old && rv == CKR_OK; i++) {
    struct akv_object *o = akv_snapshot_obj(old, i);
    if (!drop || !drop(o, arg))
      rv = akv_snapshot_add(snap, akv_object_ref(o));
  }
  for (i = 0; i < n_add && rv == CKR_OK; i++) {
    if (hand_out)
      mark_handed_out(add[i]);
    rv = akv_snapshot_add(snap, akv_object_ref(add[i]));
  }
  for (i = 0; i < n_lazy && rv == CKR_OK; i++) {
    struct akv_lazykey *lz = akv_snapshot_lazy(old, i);
    if (!lazy_replaced(lz, add, n_add))
      rv = akv_snapshot_add_lazy(snap, akv_snapshot_lazykey_ref(lz));
  }
  if (rv == CKR_OK)
    rv = akv_snapshot_sort(snap);
  if (rv != CKR_OK) {
    akv_snapshot_unref(snap);
    return NULL;
  }
  return snap;
}

/* akv_cache_apply; release_gone as swap_inlock. */
static CK_RV apply(struct akv_cache *c, int (*drop)(const struct akv_object *, const void *),
                   const void *arg, struct akv_object *const *add, size_t n_add, int release_gone)
{
  struct akv_snapshot *old, *snap = NULL;
  CK_RV rv = CKR_HOST_MEMORY;

  pthread_mutex_lock(&c->lock);
  old = c->snap;
  if (!old) {
    /* Before the first listing, the objects cold searches read change the same way. */
    rv = c->cold ? cold_apply_inlock(c, drop, arg, add, n_add) : CKR_OK;
    pthread_mutex_unlock(&c->lock);
    return rv;
  }
  if (!(snap = derive(old, drop, arg, add, n_add, 1))) {
    c->invalid = 1;
    goto out;
  }
  swap_inlock(c, snap, release_gone);
  promote_inlock(c);
  snap = akv_snapshot_ref(c->snap); /* for the file below */
  rv = CKR_OK;
out:
  pthread_mutex_unlock(&c->lock);
  if (rv == CKR_OK) {
    akv_cache_file_save(c->slot, snap, 0);
    akv_snapshot_unref(snap);
  }
  return rv;
}

CK_RV akv_cache_apply(struct akv_cache *c, int (*drop)(const struct akv_object *, const void *),
                      const void *arg, struct akv_object *const *add, size_t n_add)
{
  return apply(c, drop, arg, add, n_add, 1);
}

/* ---- pending keys -----------------------------------------------------------------------------
 */

/* Pending keys read at a time by akv_cache_resolve. */
#define RESOLVE_BATCH 128

struct resolving {
  struct akv_ptrs lz; /* the entries this thread reads (state RESOLVING, referenced) */
  size_t n;
};

/* Reads the claimed keys concurrently and records each result; *http_status is the HTTP status
 * of the read that failed it (kv.h). Called without the lock. */
static CK_RV resolve_fetch(struct akv_cache *c, struct resolving *r, long *http_status)
{
  struct akv_slot *slot = c->slot;
  struct kv_key *keys[RESOLVE_BATCH];
  kv_rc rcs[RESOLVE_BATCH], rc = KV_OK;
  long sts[RESOLVE_BATCH];
  const char *names[RESOLVE_BATCH];
  struct akv_object *objs[AKV_KEY_OBJECTS];
  int64_t now = akv_now();
  char src[1024];
  size_t i, k, n, b, m = 0;
  CK_RV rv = CKR_OK, r1;

  for (i = 0; i < r->n; i++) {
    struct akv_lazykey *lz = lazy_at(&r->lz, i);
    /* In batches, each turned into objects before the next is read: the reader threads' heaps
     * then hold at most one batch of replies (docs/performance.md "Memory per cached key"). */
    b = i % RESOLVE_BATCH;
    if (b == 0) {
      m = r->n - i < RESOLVE_BATCH ? r->n - i : RESOLVE_BATCH;
      memset(keys, 0, sizeof(keys));
      memset(rcs, 0, sizeof(rcs));
      for (k = 0; k < m; k++)
        names[k] = lazy_at(&r->lz, i + k)->name;
      rc = kv_get_keys(slot->client, names, NULL, m, akv_threads_allowed(), keys, rcs, sts);
      if (rc != KV_OK)
        akv_dbg(AKV_LOGC_CACHE, "kv_get_keys: %s", kv_rc_str(rc));
    }
    n = 0;
    r1 = CKR_OK;
    rc = rcs[b] != KV_OK ? rcs[b] : keys[b] ? KV_OK : rc != KV_OK ? rc : KV_E_PROTOCOL;
    if (rc == KV_OK && visible_at(slot->cfg, now, &keys[b]->attrs)) {
      akv_source_id(src, sizeof(src), AKV_SRC_KEY, names[b], NULL);
      r1 = key_objects(slot, keys[b], names[b], src, objs, &n);
      keys[b] = NULL;
    } else if (rc != KV_OK && !skippable(rc)) {
      akv_warn(AKV_LOGC_CACHE, "key %s: %s", names[b], kv_rc_str(rc));
      r1 = akv_rv_listing(rc);
    } else if (rc != KV_OK) {
      akv_warn(AKV_LOGC_CACHE, "key %s: %s, left out", names[b], kv_rc_str(rc));
    }
    if (b + 1 == m) { /* the batch's replies not turned into objects */
      for (k = 0; k < m; k++)
        kv_key_free(keys[k]);
    }
    pthread_mutex_lock(&c->lock);
    if (r1 != CKR_OK) {
      lz->state = AKV_LAZY_PENDING; /* tried again by the next search that needs it */
      if (rv == CKR_OK) {
        rv = r1;
        *http_status = sts[b];
      }
    } else {
      for (k = 0; k < n; k++)
        lz->objs[k] = objs[k];
      lz->n = n;
      lz->state = n ? AKV_LAZY_RESOLVED : AKV_LAZY_GONE;
    }
    pthread_mutex_unlock(&c->lock);
  }
  pthread_mutex_lock(&c->lock);
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  return rv;
}

/* Keys read by one search past which the freed memory is handed back to the system. */
#define RESOLVE_TRIM_KEYS 128

CK_RV akv_cache_resolve(struct akv_cache *c, int (*want)(const struct akv_lazykey *, const void *),
                        const void *arg, long *http_status)
{
  long http = 0;
  struct akv_snapshot *snap;
  struct resolving r;
  size_t i;
  int busy;
  CK_RV rv = CKR_OK;

  memset(&r, 0, sizeof(r));
  pthread_mutex_lock(&c->lock);
  snap = akv_snapshot_ref(c->snap);
  if (!snap || !snap->n_lazy)
    goto unlock;
  for (i = 0; i < snap->n_lazy; i++) {
    struct akv_lazykey *lz = akv_snapshot_lazy(snap, i);
    if (lz->state == AKV_LAZY_PENDING && want(lz, arg)) {
      if (akv_ptrs_put(&r.lz, r.n, lz) != 0) {
        rv = CKR_HOST_MEMORY;
        break;
      }
      lz->state = AKV_LAZY_RESOLVING;
      akv_snapshot_lazykey_ref(lz);
      r.n++;
    }
  }
  if (rv != CKR_OK) { /* the claimed keys are left to the next search */
    for (i = 0; i < r.n; i++)
      lazy_at(&r.lz, i)->state = AKV_LAZY_PENDING;
    goto unlock;
  }
  pthread_mutex_unlock(&c->lock);

  if (r.n) {
    akv_dbg(AKV_LOGC_CACHE, "%s: reading %zu pending key(s)", c->slot->cfg->url, r.n);
    rv = resolve_fetch(c, &r, &http);
  }

  pthread_mutex_lock(&c->lock);
  /* Keys another thread is reading: wait for its result (bounded by the backend's deadline). */
  do {
    busy = 0;
    for (i = 0; i < snap->n_lazy && !busy; i++) {
      const struct akv_lazykey *lz = akv_snapshot_lazy(snap, i);
      busy = lz->state == AKV_LAZY_RESOLVING && want(lz, arg);
    }
    if (busy)
      pthread_cond_wait(&c->cond, &c->lock);
  } while (busy);
  /* A key this search may match and nobody could read (another thread's failure): the search
   * cannot be complete. */
  for (i = 0; i < snap->n_lazy && rv == CKR_OK; i++) {
    const struct akv_lazykey *lz = akv_snapshot_lazy(snap, i);
    if (lz->state == AKV_LAZY_PENDING && want(lz, arg))
      rv = CKR_DEVICE_ERROR;
  }
  /* The file learns what was read when the cache is next written or freed (C_Finalize): not in the
   * caller's way, and a process reading several keys writes the file once. */
  if (promote_inlock(c))
    c->file_dirty = 1;
unlock:
  pthread_mutex_unlock(&c->lock);
  for (i = 0; i < r.n; i++)
    akv_snapshot_lazykey_unref(lazy_at(&r.lz, i));
  akv_ptrs_free(&r.lz);
  akv_snapshot_unref(snap);
#ifdef __GLIBC__
  /* Many keys read: the replies, the reader threads' buffers and the pending entries were freed
   * in pieces between the objects kept; give their pages back (docs/performance.md "Memory per
   * cached key"). */
  if (r.n >= RESOLVE_TRIM_KEYS)
    malloc_trim(0);
#endif
  if (http_status)
    *http_status = rv == CKR_OK ? 0 : http;
  return rv;
}

/* Certificate chains. The certificate's secret (same name and version) holds the leaf,
 * the chain and, for exportable certificates, the private key, as PEM or as base64 PKCS#12 without
 * a password. Reading it needs secrets/get, so it happens only on slots that show secrets. The
 * certificates other than the leaf become CKO_CERTIFICATE objects labelled NAME-chain-N, with the
 * leaf's source and times (they are carried over and dropped with it). Any failure leaves the
 * chain out with a warning: it never fails the listing. */
static STACK_OF(X509) * chain_certs(const struct kv_secret *sec)
{
  STACK_OF(X509) *out = sk_X509_new_null();
  BIO *bio = NULL;
  X509 *x = NULL;
  PKCS12 *p12 = NULL;
  EVP_PKEY *pkey = NULL;
  unsigned char *der = NULL;
  const unsigned char *p;
  size_t der_len = 0;

  if (!out || !sec->value || sec->value_len > INT_MAX)
    goto fail;
  if (sec->content_type && strcmp(sec->content_type, "application/x-pkcs12") == 0) {
    if (akv_b64_decode((const char *)sec->value, sec->value_len, &der, &der_len) != 0 ||
        der_len > LONG_MAX)
      goto fail;
    p = der;
    p12 = d2i_PKCS12(NULL, &p, (long)der_len);
    /* The secret behind a certificate is a PFX without a password, as the service exports it; the
     * private key is freed at once. */
    if (!p12 ||
        (!PKCS12_parse(p12, "", &pkey, &x, &out) && !PKCS12_parse(p12, NULL, &pkey, &x, &out)))
      goto fail;
  } else {
    bio = BIO_new_mem_buf(sec->value, (int)sec->value_len);
    if (!bio)
      goto fail;
    /* Every CERTIFICATE block in order; the key block is skipped by the reader. */
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
      if (!sk_X509_push(out, x))
        goto fail;
      x = NULL;
    }
    ERR_clear_error();
  }
  goto done;
fail:
  sk_X509_pop_free(out, X509_free);
  out = NULL;
done:
  X509_free(x);
  EVP_PKEY_free(pkey);
  PKCS12_free(p12);
  BIO_free(bio);
  if (der) {
    OPENSSL_cleanse(der, der_len);
    free(der);
  }
  return out;
}

static CK_RV add_chain(struct build *b, const struct kv_cert *cert, const char *src)
{
  struct kv_secret *sec = NULL;
  STACK_OF(X509) *chain = NULL;
  struct kv_cert c;
  char id[2200], label[200];
  unsigned char *der = NULL;
  struct akv_object *obj = NULL;
  int i, n = 0, len;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  rc = kv_get_secret(b->slot->client, cert->name, cert->version, &sec, NULL);
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "certificate %s: its secret is not readable (%s): no chain",
             cert->name, kv_rc_str(rc));
    return akv_rv_nomem_or(rc, CKR_OK);
  }
  chain = chain_certs(sec);
  kv_secret_free(sec); /* wipes the value, which may hold the private key */
  if (!chain) {
    akv_warn(AKV_LOGC_CACHE,
             "certificate %s: its secret is neither PEM nor a PKCS#12 without "
             "password: no chain",
             cert->name);
    return CKR_OK;
  }
  for (i = 0; i < sk_X509_num(chain) && rv == CKR_OK; i++) {
    len = i2d_X509(sk_X509_value(chain, i), &der);
    if (len <= 0)
      continue;
    if ((size_t)len == cert->der_len && memcmp(der, cert->der, cert->der_len) == 0) {
      OPENSSL_free(der);
      der = NULL;
      continue; /* the leaf */
    }
    n++;
    snprintf(id, sizeof(id), "%s#chain-%d", cert->id, n);
    snprintf(label, sizeof(label), "%s-chain-%d", cert->name, n);
    memset(&c, 0, sizeof(c));
    c.id = id;
    c.name = label;
    c.version = cert->version;
    c.der = der;
    c.der_len = (size_t)len;
    c.attrs.created = cert->attrs.created;
    c.attrs.updated = cert->attrs.updated;
    rv = akv_object_from_cert(b->slot, &c, src, &obj);
    OPENSSL_free(der);
    der = NULL;
    if (rv == CKR_DEVICE_ERROR) {
      rv = CKR_OK;
      continue;
    }
    if (rv == CKR_OK)
      rv = push(b, obj);
  }
  sk_X509_pop_free(chain, X509_free);
  return rv;
}

static int same_source(const struct akv_object *obj, const void *src)
{
  return obj->src && strcmp(obj->src, src) == 0;
}

CK_RV akv_cache_drop_version(struct akv_cache *c, const struct akv_object *obj)
{
  struct akv_object *cur;
  size_t i;
  int current;

  pthread_mutex_lock(&c->lock);
  for (i = 0; i < c->n_held;) {
    if (c->held[i].obj == obj || same_version(c->held[i].obj, obj))
      held_remove_inlock(c, i);
    else
      i++;
  }
  cur = akv_snapshot_find(c->snap ? c->snap : c->cold, obj->handle);
  current = cur && cur->src && obj->src && strcmp(cur->src, obj->src) == 0;
  pthread_mutex_unlock(&c->lock);
  /* Only the version that went away leaves: the other versions held by handles stay (they answer
   * for themselves when used). */
  return current ? apply(c, same_source, obj->src, NULL, 0, 0) : CKR_OK;
}

/* ---- keys created since the listing ------------------------------------------------------------
 */

/* A name the vault accepts for a key (1..127 of [0-9a-zA-Z-]): anything else cannot exist there and
 * costs no request. */
static int vault_name(const char *name)
{
  size_t i, n = strlen(name);
  if (n < 1 || n > 127)
    return 0;
  for (i = 0; i < n; i++) {
    char ch = name[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          ch == '-'))
      return 0;
  }
  return 1;
}

/* Whether the slot's configuration would show a key of this name at all. */
static int name_shown(const struct akv_slot_config *sc, const char *name)
{
  size_t i;
  if (sc->key_filter && fnmatch(sc->key_filter, name, 0) != 0)
    return 0;
  if (!sc->key_names)
    return 1;
  for (i = 0; i < sc->n_key_names; i++) {
    if (strcmp(sc->key_names[i], name) == 0)
      return 1;
  }
  return 0;
}

/* Whether the snapshot already has the key (its objects, or the key pending): then its absence from
 * a search is the template's doing, not the listing's age. */
static int known_inlock(const struct akv_snapshot *snap, const char *src, const char *name)
{
  size_t i;
  for (i = 0; i < snap->n; i++) {
    const char *s = akv_snapshot_obj(snap, i)->src;
    if (s && strcmp(s, src) == 0)
      return 1;
  }
  for (i = 0; i < snap->n_lazy; i++) {
    if (strcmp(akv_snapshot_lazy(snap, i)->name, name) == 0)
      return 1;
  }
  return 0;
}

/* Claims the name for a read unless it was read within MEMO_S seconds. Under the lock. */
static int memo_claim_inlock(struct akv_cache *c, const char *name, int64_t now)
{
  unsigned i;
  for (i = 0; i < MEMO_N; i++) {
    if (c->memo[i].at && now - c->memo[i].at < MEMO_S && now >= c->memo[i].at &&
        strcmp(c->memo[i].name, name) == 0)
      return 0;
  }
  i = c->memo_next++ % MEMO_N;
  snprintf(c->memo[i].name, sizeof(c->memo[i].name), "%s", name);
  c->memo[i].at = now;
  return 1;
}

int akv_cache_memo_claim(struct akv_cache *c, const char *key)
{
  int claimed;
  pthread_mutex_lock(&c->lock);
  claimed = memo_claim_inlock(c, key, akv_now());
  pthread_mutex_unlock(&c->lock);
  return claimed;
}

void akv_cache_memo_forget(struct akv_cache *c, const char *key)
{
  unsigned i;
  pthread_mutex_lock(&c->lock);
  for (i = 0; i < MEMO_N; i++) {
    if (c->memo[i].at && strcmp(c->memo[i].name, key) == 0)
      c->memo[i].at = 0;
  }
  pthread_mutex_unlock(&c->lock);
}

CK_RV akv_cache_read_key(struct akv_cache *c, const char *name, int *published)
{
  struct akv_slot *slot = c->slot;
  struct akv_object *objs[AKV_KEY_OBJECTS];
  struct kv_key *key = NULL;
  char src[1024], spelled[128];
  size_t n = 0, i;
  int64_t now = akv_now();
  int claimed, known;
  kv_rc rc;
  CK_RV rv;

  *published = 0;
  if (!vault_name(name) || !name_shown(slot->cfg, name))
    return CKR_OK;
  akv_source_id(src, sizeof(src), AKV_SRC_KEY, name, NULL);
  pthread_mutex_lock(&c->lock);
  claimed = c->snap && !known_inlock(c->snap, src, name) && memo_claim_inlock(c, name, now);
  pthread_mutex_unlock(&c->lock);
  if (!claimed)
    return CKR_OK;
  rc = kv_get_key(slot->client, name, NULL, &key, NULL);
  if (rc == KV_E_NOT_FOUND || rc == KV_E_FORBIDDEN) {
    akv_dbg(AKV_LOGC_CACHE, "key %s: not in the vault either (%s)", name, kv_rc_str(rc));
    return CKR_OK;
  }
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "key %s: %s", name, kv_rc_str(rc));
    return akv_rv_listing(rc);
  }
  /* The vault compares names without case and its reply spells the name as stored (the kid;
   * kv_get_key checked it is this name in some case). The objects carry that spelling, as the
   * listing's do: a search in another case publishes the key under its own name, once, and
   * never a second object for a key the snapshot has (docs/design.md "Keys created since the
   * listing"). */
  snprintf(spelled, sizeof(spelled), "%s", key->name);
  if (strcmp(spelled, name) != 0) {
    akv_source_id(src, sizeof(src), AKV_SRC_KEY, spelled, NULL);
    pthread_mutex_lock(&c->lock);
    known = known_inlock(c->snap, src, spelled);
    pthread_mutex_unlock(&c->lock);
    if (known || !name_shown(slot->cfg, spelled)) {
      akv_dbg(AKV_LOGC_CACHE, "key %s: the vault spells it %s (%s)", name, spelled,
              known ? "known already" : "not shown");
      kv_key_free(key);
      return CKR_OK;
    }
  }
  if (!visible_at(slot->cfg, now, &key->attrs)) {
    kv_key_free(key);
    return CKR_OK;
  }
  rv = key_objects(slot, key, spelled, src, objs, &n); /* takes key */
  if (rv == CKR_OK && n) {
    akv_info(AKV_LOGC_CACHE, "key %s: created since the listing, read from the vault", spelled);
    /* The same path as a write through the module: the snapshot and the cache file get it. */
    rv = akv_cache_apply(c, same_source, src, objs, n);
    *published = rv == CKR_OK;
  }
  for (i = 0; i < n; i++)
    akv_object_unref(objs[i]);
  return rv;
}

/* ---- a refused operation reads its key again ---------------------------------------------------
 */

CK_RV akv_cache_reread(struct akv_cache *c, const struct akv_object *obj, struct akv_object **fresh)
{
  struct akv_slot *slot = c->slot;
  struct akv_object *objs[AKV_KEY_OBJECTS];
  struct kv_key *key = NULL;
  const char *name;
  size_t n = 0, i;
  kv_rc rc;
  CK_RV rv;

  *fresh = NULL;
  if (obj->session || !obj->key || !akv_source_is(obj->src, AKV_SRC_KEY))
    return CKR_OK;
  name = akv_source_name(obj->src);
  rc = kv_get_key(slot->client, name, NULL, &key, NULL);
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "key %s: reading it again: %s", name, kv_rc_str(rc));
    return CKR_OK;
  }
  if (!visible_at(slot->cfg, akv_now(), &key->attrs)) {
    kv_key_free(key);
    return CKR_OK;
  }
  rv = key_objects(slot, key, name, obj->src, objs, &n); /* takes key */
  if (rv == CKR_OK && n)
    rv = akv_cache_apply(c, same_source, obj->src, objs, n);
  for (i = 0; i < n; i++) {
    if (rv == CKR_OK && !*fresh && objs[i]->cls == obj->cls)
      *fresh = objs[i];
    else
      akv_object_unref(objs[i]);
  }
  return rv;
}

/* ---- cold searches by label (src/store/cold.c, docs/design.md "Cold search by label") -------- */

/* The first listing a cold search scheduled: waits for a search that needs it (cold_go), the end
 * of the cache (cold_cancel) or COLD_LIST_DELAY_S, then lists as a synchronous refresh would
 * (under the cross-process lock, adopting a listing another process wrote meanwhile). */
static void *cold_main(void *arg)
{
  struct akv_cache *c = arg;
  struct akv_snapshot *prev, *built = NULL;
  struct timespec until;
  int64_t started;
  long http = 0;
  CK_RV rv;

  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += COLD_LIST_DELAY_S;
  pthread_mutex_lock(&c->lock);
  while (!c->cold_go && !c->cold_cancel && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0)
    ;
  c->cold_wait = 0;
  if (!c->cold_cancel) {
    /* Counted before the exit handler is looked at: either the handler waits for this listing,
     * or the listing sees the handler and does not start. */
    bg_count(1);
    if (!__atomic_load_n(&bg_exiting, __ATOMIC_SEQ_CST)) {
      const char *why = c->cold_go ? "a search needs it" : "scheduled by a cold search";
      prev = akv_snapshot_ref(c->cold);
      pthread_mutex_unlock(&c->lock);
      akv_dbg(AKV_LOGC_CACHE, "%s: the first listing starts (%s)", c->slot->cfg->url, why);
      started = akv_now();
      rv = refresh_sync(c->slot, prev, 1, &built, &http);
      akv_snapshot_unref(prev);
      pthread_mutex_lock(&c->lock);
      publish_build_inlock(c, rv, built, started, http);
      pthread_mutex_unlock(&c->lock);
      bg_count(-1);
      return NULL;
    }
    bg_count(-1);
  }
  /* Not listed: a search that needs the listing makes it (akv_cache_get). */
  c->refreshing = 0;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* Schedules the first listing. Call with c->lock held, refreshing set by the caller. */
static void cold_schedule_inlock(struct akv_cache *c)
{
  if (c->bg_joinable) {
    pthread_join(c->bg, NULL);
    c->bg_joinable = 0;
  }
  (void)pthread_once(&bg_exit_once, bg_exit_register);
  c->cold_wait = 1;
  c->cold_go = 0;
  pthread_cond_broadcast(&c->cond); /* a search waiting for the listing says it needs it */
  if (pthread_create(&c->bg, NULL, cold_main, c) != 0) {
    c->cold_wait = 0;
    c->refreshing = 0;
    pthread_cond_broadcast(&c->cond);
    akv_warn(AKV_LOGC_CACHE, "cannot start a background refresh; refreshing at the TTL");
    return;
  }
  c->bg_joinable = 1;
}

static int cold_known_inlock(const struct akv_cache *c, const char *name)
{
  size_t i;
  for (i = 0; i < c->n_cold_names; i++) {
    if (strcasecmp(c->cold_names[i], name) == 0)
      return 1;
  }
  return 0;
}

CK_RV akv_cache_get_for(struct akv_cache *c, const char *name, struct akv_snapshot **out, int *cold,
                        struct akv_cf_name *rec, long *http_status)
{
  struct akv_snapshot *loaded = NULL;
  int64_t started;
  CK_RV rv;

  *out = NULL;
  *cold = 0;
  pthread_mutex_lock(&c->lock);
  if (c->snap || c->invalid || (c->refreshing && !c->cold_wait && !c->cold) ||
      (c->cold && akv_now() - c->cold_at >= c->slot->cfg->ttl_s)) {
    pthread_mutex_unlock(&c->lock);
    return akv_cache_get(c, out, http_status);
  }
  if (http_status)
    *http_status = 0;
  if (!c->refreshing) {
    /* Nothing yet: the cache file first, as the first listing would (no cross-process lock: it
     * is only read), and in the same read the record of name; then the listing is scheduled. */
    c->refreshing = 1;
    pthread_mutex_unlock(&c->lock);
    started = akv_now();
    rv = akv_cache_file_load_cold(c->slot, name, &loaded, rec);
    if (rv == CKR_OK) {
      pthread_mutex_lock(&c->lock);
      publish_inlock(c, CKR_OK, loaded, started);
      *out = akv_snapshot_ref(c->snap);
      pthread_mutex_unlock(&c->lock);
      return CKR_OK;
    }
    pthread_mutex_lock(&c->lock);
    if (rv != CKR_FUNCTION_FAILED) {
      /* The credential produced no token (logged): a read by name or a listing would ask for the
       * same; the searches waiting share this failure. */
      rv = publish_inlock(c, rv, NULL, started);
      pthread_mutex_unlock(&c->lock);
      return rv;
    }
    if (akv_threads_allowed()) {
      cold_schedule_inlock(c);
    } else {
      c->refreshing = 0; /* the first search that needs the listing makes it */
      pthread_cond_broadcast(&c->cond);
    }
  }
  *cold = 1;
  if (cold_known_inlock(c, name))
    *out = akv_snapshot_ref(c->cold);
  pthread_mutex_unlock(&c->lock);
  return CKR_OK;
}

/* A write before the first listing (src/token/write.c, akv_cache_reread): the cold snapshot
 * without the objects drop selects and with add (handed out), as apply does to a snapshot. */
static CK_RV cold_apply_inlock(struct akv_cache *c,
                               int (*drop)(const struct akv_object *, const void *),
                               const void *arg, struct akv_object *const *add, size_t n_add)
{
  struct akv_snapshot *old = c->cold, *snap = derive(old, drop, arg, add, n_add, 1);

  if (!snap)
    return CKR_HOST_MEMORY;
  c->cold = snap;
  akv_snapshot_unref(old);
  return CKR_OK;
}

CK_RV akv_cache_cold_add(struct akv_cache *c, const char *name, struct akv_object *const *add,
                         size_t n_add, int64_t read_at, int *landed)
{
  struct akv_snapshot *old, *snap;

  *landed = 0;
  pthread_mutex_lock(&c->lock);
  if (c->snap) {
    *landed = 1;
    pthread_mutex_unlock(&c->lock);
    return CKR_OK;
  }
  if (cold_known_inlock(c, name)) { /* another thread read it meanwhile */
    pthread_mutex_unlock(&c->lock);
    return CKR_OK;
  }
  if (c->n_cold_names == AKV_COLD_NAMES) {
    pthread_mutex_unlock(&c->lock);
    return CKR_FUNCTION_FAILED;
  }
  old = c->cold;
  /* built_at 0 (a cold snapshot's, as derive keeps it): not a listing, any listing or cache file
   * is newer */
  if (!(snap = derive(old, NULL, NULL, add, n_add, 0))) {
    pthread_mutex_unlock(&c->lock);
    return CKR_HOST_MEMORY;
  }
  if (!old || read_at < c->cold_at)
    c->cold_at = read_at; /* served for one ttl from the oldest read */
  c->cold = snap;
  snprintf(c->cold_names[c->n_cold_names++], sizeof(c->cold_names[0]), "%s", name);
  akv_snapshot_unref(old);
  pthread_mutex_unlock(&c->lock);
  return CKR_OK;
}

void akv_cache_cold_missed(struct akv_cache *c, const char *name)
{
  pthread_mutex_lock(&c->lock);
  (void)memo_claim_inlock(c, name, akv_now());
  pthread_mutex_unlock(&c->lock);
}

struct akv_snapshot *akv_cache_cold(struct akv_cache *c)
{
  struct akv_snapshot *snap;
  pthread_mutex_lock(&c->lock);
  snap = akv_snapshot_ref(c->cold);
  pthread_mutex_unlock(&c->lock);
  return snap;
}

int akv_cache_shows(const struct akv_slot_config *sc, enum akv_source_kind kind, const char *name,
                    const struct kv_attrs *a)
{
  size_t i;
  if (!vault_name(name))
    return 0;
  if (kind == AKV_SRC_KEY && !name_shown(sc, name))
    return 0;
  if (kind == AKV_SRC_CERT && sc->key_names) { /* key_filter is the keys' only */
    for (i = 0; i < sc->n_key_names && strcmp(sc->key_names[i], name) != 0; i++)
      ;
    if (i == sc->n_key_names)
      return 0;
  }
  return !a || visible_at(sc, akv_now(), a);
}

CK_RV akv_cache_key_objects(struct akv_slot *slot, struct kv_key *key, const char *name,
                            struct akv_object **objs, size_t *n)
{
  char src[1024];
  akv_source_id(src, sizeof(src), AKV_SRC_KEY, name, NULL);
  return objects_of_key(slot, key, name, src, objs, n);
}
