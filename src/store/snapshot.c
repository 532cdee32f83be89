/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshots and pending keys: reference counts, release, lookup by handle (src/store/snapshot.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/object.h"
#include "store/snapshot.h"

/* Reference counts of snapshots and pending keys: +1, and -1 telling whether it was the last. */
static void ref_take(int *refs)
{
  __atomic_add_fetch(refs, 1, __ATOMIC_ACQ_REL);
}

static int ref_drop_last(int *refs)
{
  return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL) == 0;
}

struct akv_snapshot *akv_snapshot_ref(struct akv_snapshot *snap)
{
  if (snap)
    ref_take(&snap->refs);
  return snap;
}

void akv_snapshot_unref(struct akv_snapshot *snap)
{
  size_t i;
  if (!snap || !ref_drop_last(&snap->refs))
    return;
  for (i = 0; i < snap->n; i++)
    akv_object_unref(akv_snapshot_obj(snap, i));
  for (i = 0; i < snap->n_lazy; i++)
    akv_snapshot_lazykey_unref(akv_snapshot_lazy(snap, i));
  akv_ptrs_free(&snap->objs);
  akv_ptrs_free(&snap->lazy);
  free(snap);
}

/* ---- snapshots' contents --------------------------------------------------------------------- */

CK_RV akv_snapshot_add(struct akv_snapshot *snap, struct akv_object *obj)
{
  if (akv_ptrs_put(&snap->objs, snap->n, obj) != 0) {
    akv_object_unref(obj);
    return CKR_HOST_MEMORY;
  }
  snap->n++;
  return CKR_OK;
}

CK_RV akv_snapshot_add_lazy(struct akv_snapshot *snap, struct akv_lazykey *lz)
{
  if (akv_ptrs_put(&snap->lazy, snap->n_lazy, lz) != 0) {
    akv_snapshot_lazykey_unref(lz);
    return CKR_HOST_MEMORY;
  }
  snap->n_lazy++;
  return CKR_OK;
}

static int cmp_handle(const void *a, const void *b)
{
  const struct akv_object *x = *(struct akv_object *const *)a, *y = *(struct akv_object *const *)b;
  return x->handle < y->handle ? -1 : x->handle > y->handle;
}

CK_RV akv_snapshot_sort(struct akv_snapshot *snap)
{
  return akv_ptrs_sort(&snap->objs, snap->n, cmp_handle) == 0 ? CKR_OK : CKR_HOST_MEMORY;
}

/* Pending keys made by one listing: entries and names in blocks of up to LAZY_BLOCK_KEYS, so that
 * a large vault's first listing costs one allocation per block rather than two per key; a block is
 * freed with the last of its keys. Blocks stay below glibc's mmap threshold (128 KB): freeing a
 * larger, mapped block would raise malloc's trim threshold for the whole process and leave the
 * reader threads' freed memory resident (docs/performance.md "Memory per cached key"). */
#define LAZY_BLOCK_KEYS 512

struct akv_lazyblock {
  int live; /* atomic: entries not yet released */
  struct akv_lazykey keys[];
  /* followed by the names */
};

/* One block for items[0..n), n <= LAZY_BLOCK_KEYS. */
static CK_RV lazy_block(const struct kv_item *const *items, size_t n, struct akv_lazykey **out)
{
  struct akv_lazyblock *blk;
  size_t size = sizeof(*blk) + n * sizeof(blk->keys[0]), i;
  char *names;

  for (i = 0; i < n; i++) {
    size_t len = strlen(items[i]->name) + 1;
    if (size > SIZE_MAX - len)
      return CKR_HOST_MEMORY;
    size += len;
  }
  blk = calloc(1, size);
  if (!blk)
    return CKR_HOST_MEMORY;
  blk->live = (int)n;
  names = (char *)&blk->keys[n];
  for (i = 0; i < n; i++) {
    struct akv_lazykey *lz = &blk->keys[i];
    size_t len = strlen(items[i]->name) + 1;
    memcpy(names, items[i]->name, len);
    lz->name = names;
    names += len;
    lz->refs = 1;
    lz->state = AKV_LAZY_PENDING;
    lz->created = items[i]->attrs.created;
    lz->updated = items[i]->attrs.updated;
    lz->block = blk;
    out[i] = lz;
  }
  return CKR_OK;
}

CK_RV akv_snapshot_lazykeys_new(const struct kv_item *const *items, size_t n,
                                struct akv_lazykey **out)
{
  size_t done = 0, i;

  while (done < n) {
    size_t m = n - done < LAZY_BLOCK_KEYS ? n - done : LAZY_BLOCK_KEYS;
    if (lazy_block(items + done, m, out + done) != CKR_OK) {
      for (i = 0; i < done; i++)
        akv_snapshot_lazykey_unref(out[i]);
      return CKR_HOST_MEMORY;
    }
    done += m;
  }
  return CKR_OK;
}

struct akv_lazykey *akv_snapshot_lazykey_new(const char *name, int64_t created, int64_t updated)
{
  struct kv_item it;
  const struct kv_item *items[1] = {&it};
  struct akv_lazykey *lz = NULL;

  memset(&it, 0, sizeof(it));
  it.name = (char *)name;
  it.attrs.created = created;
  it.attrs.updated = updated;
  return akv_snapshot_lazykeys_new(items, 1, &lz) == CKR_OK ? lz : NULL;
}

struct akv_lazykey *akv_snapshot_lazykey_ref(struct akv_lazykey *lz)
{
  if (lz)
    ref_take(&lz->refs);
  return lz;
}

void akv_snapshot_lazykey_unref(struct akv_lazykey *lz)
{
  size_t i;
  if (!lz || !ref_drop_last(&lz->refs))
    return;
  for (i = 0; i < lz->n; i++)
    akv_object_unref(lz->objs[i]);
  if (ref_drop_last(&lz->block->live))
    free(lz->block);
}

struct akv_object *akv_snapshot_find(const struct akv_snapshot *snap, CK_OBJECT_HANDLE h)
{
  size_t lo = 0, hi;
  if (!snap)
    return NULL;
  hi = snap->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    struct akv_object *o = akv_snapshot_obj(snap, mid);
    if (o->handle < h)
      lo = mid + 1;
    else if (o->handle > h)
      hi = mid;
    else
      return o;
  }
  return NULL;
}
