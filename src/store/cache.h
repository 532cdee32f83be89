/* SPDX-License-Identifier: Apache-2.0 */
/* The per-slot object cache (docs/design.md "Cache"). A snapshot is an immutable, refcounted
 * list of objects sorted by handle, built off-lock and swapped in. */
#ifndef AKV_CACHE_H
#define AKV_CACHE_H

#include "core/akv.h"

/* A key the listing named whose public part has not been read yet. A listing that finds more new
 * or changed keys than the slot's prefetch_keys leaves them pending: a search reads (concurrently)
 * only the pending keys it may match, so the first signature in a large vault costs the listing and
 * one GET, not a GET per key. Pending keys never have handles: a search resolves them before it
 * returns any. The same entry is shared by successive snapshots while the key's times are unchanged;
 * its state and objects are guarded by the cache's lock. */
enum akv_lazy_state { AKV_LAZY_PENDING = 0, AKV_LAZY_RESOLVING, AKV_LAZY_RESOLVED, AKV_LAZY_GONE };

struct akv_lazykey {
  int refs;                   /* atomic */
  char *name;
  int64_t created, updated;   /* the listing's times of the latest version */
  enum akv_lazy_state state;  /* under the cache's lock */
  struct akv_object *objs[2]; /* RESOLVED: the key's objects (private + public, or secret key) */
  size_t n;
};

struct akv_snapshot {
  int refs;                 /* atomic */
  int64_t built_at;         /* akv_now() when the listing started */
  struct akv_object **objs; /* sorted by handle */
  size_t n;
  struct akv_lazykey **lazy; /* pending keys (may have been resolved since; see above) */
  size_t n_lazy;
};

struct akv_cache *akv_cache_new(struct akv_slot *slot);
/* Waits for a background refresh in flight, then frees. NULL ok. */
void akv_cache_free(struct akv_cache *c);

/* The current snapshot, refreshed first when missing or past its TTL (synchronously) and in the
 * background past 75 % of it; a failed refresh serves the old snapshot within stale_if_error.
 * Never called with the module lock held. */
CK_RV akv_cache_get(struct akv_cache *c, struct akv_snapshot **out);
/* The current snapshot without any I/O (may be NULL). */
struct akv_snapshot *akv_cache_peek(struct akv_cache *c);
void akv_cache_invalidate(struct akv_cache *c);

void akv_snapshot_unref(struct akv_snapshot *snap); /* NULL ok */

struct akv_lazykey *akv_lazykey_new(const char *name, int64_t created, int64_t updated);
struct akv_lazykey *akv_lazykey_ref(struct akv_lazykey *lz);
void akv_lazykey_unref(struct akv_lazykey *lz); /* NULL ok */

/* Reads the pending keys of the slot's current snapshot for which want(lz, arg) is true
 * (concurrently, one GET each), then publishes their objects in the current snapshot (and the cache
 * file). Keys that went away or may not be read are dropped with a warning. Other threads resolving
 * the same keys are waited for, not repeated. Returns the first listing error otherwise. */
CK_RV akv_cache_resolve(struct akv_cache *c, int (*want)(const struct akv_lazykey *, const void *),
                        const void *arg);
/* Borrowed object by handle, or NULL. snap may be NULL. */
struct akv_object *akv_snapshot_find(const struct akv_snapshot *snap, CK_OBJECT_HANDLE h);

/* A write to the vault changes the slot's snapshot at once (src/token/write.c): objects for
 * which drop(obj, arg) is true leave it, the add objects (referenced here) join it, and the
 * cross-process cache file gets the result. Without a snapshot yet nothing changes: the first
 * listing sees the vault as it is. CKR_HOST_MEMORY leaves the snapshot as it was and marks it for
 * a refresh. */
CK_RV akv_cache_apply(struct akv_cache *c, int (*drop)(const struct akv_object *, const void *),
                      const void *arg, struct akv_object *const *add, size_t n_add);

#endif
