/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshots of a slot's objects and pending keys (src/store/snapshot.c): the refcounted values the
 * cache (src/store/cache.c) publishes and the cache file (src/store/cache_file.c) reads and
 * writes. */
#ifndef AKV_SNAPSHOT_H
#define AKV_SNAPSHOT_H

#include "core/akv.h"
#include "util/ptrs.h"

/* A key the listing named whose public part has not been read yet. A listing that finds more new
 * or changed keys than the slot's prefetch_keys leaves them pending: a search reads (concurrently)
 * only the pending keys it may match, so the first signature in a large vault costs the listing and
 * one GET, not a GET per key. Pending keys never have handles: a search resolves them before it
 * returns any. The same entry is shared by successive snapshots while the key's times are
 * unchanged; its state and objects are guarded by the cache's lock. */
enum akv_lazy_state { AKV_LAZY_PENDING = 0, AKV_LAZY_RESOLVING, AKV_LAZY_RESOLVED, AKV_LAZY_GONE };

struct akv_lazyblock;

struct akv_lazykey {
  int refs;                  /* atomic */
  enum akv_lazy_state state; /* under the cache's lock */
  char *name;                /* in the block */
  int64_t created, updated;  /* the listing's times of the latest version */
  /* RESOLVED: the key's objects (private + public, or secret key; attestation objects) */
  struct akv_object *objs[AKV_KEY_OBJECTS];
  size_t n;
  /* The allocation holding this entry and its name with the other pending keys of the same
   * listing, freed with the last of them (docs/performance.md "Memory per cached key"). */
  struct akv_lazyblock *block;
};

struct akv_snapshot {
  int refs;             /* atomic */
  int64_t built_at;     /* akv_now() when the listing started */
  struct akv_ptrs objs; /* struct akv_object *, sorted by handle: akv_snapshot_obj */
  size_t n;
  /* pending keys (may have been resolved since; see above): akv_snapshot_lazy */
  struct akv_ptrs lazy;
  size_t n_lazy;
};

/* Object i < snap->n, pending key i < snap->n_lazy (borrowed). */
static inline struct akv_object *akv_snapshot_obj(const struct akv_snapshot *snap, size_t i)
{
  return akv_ptrs_at(&snap->objs, i);
}

static inline struct akv_lazykey *akv_snapshot_lazy(const struct akv_snapshot *snap, size_t i)
{
  return akv_ptrs_at(&snap->lazy, i);
}

/* Appends obj (takes the caller's reference, released when out of memory): CKR_OK or
 * CKR_HOST_MEMORY. The same for a pending key. */
CK_RV akv_snapshot_add(struct akv_snapshot *snap, struct akv_object *obj);
CK_RV akv_snapshot_add_lazy(struct akv_snapshot *snap, struct akv_lazykey *lz);
/* Sorts the objects by handle: CKR_OK or CKR_HOST_MEMORY. */
CK_RV akv_snapshot_sort(struct akv_snapshot *snap);

struct akv_snapshot *akv_snapshot_ref(struct akv_snapshot *snap); /* NULL ok */
void akv_snapshot_unref(struct akv_snapshot *snap);               /* NULL ok */
/* Borrowed object by handle, or NULL. snap may be NULL. */
struct akv_object *akv_snapshot_find(const struct akv_snapshot *snap, CK_OBJECT_HANDLE h);

struct akv_lazykey *akv_snapshot_lazykey_new(const char *name, int64_t created, int64_t updated);
/* Pending keys for n listed items (their name and times) in one allocation: out[i] holds one
 * reference to each. CKR_HOST_MEMORY (out untouched) when it cannot be allocated. */
CK_RV akv_snapshot_lazykeys_new(const struct kv_item *const *items, size_t n,
                                struct akv_lazykey **out);
struct akv_lazykey *akv_snapshot_lazykey_ref(struct akv_lazykey *lz);
void akv_snapshot_lazykey_unref(struct akv_lazykey *lz); /* NULL ok */

#endif
