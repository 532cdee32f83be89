/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshots and pending keys: reference counts, release, lookup by handle (src/store/snapshot.h).
 */
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
    akv_object_unref(snap->objs[i]);
  for (i = 0; i < snap->n_lazy; i++)
    akv_lazykey_unref(snap->lazy[i]);
  free(snap->objs);
  free(snap->lazy);
  free(snap);
}

struct akv_lazykey *akv_lazykey_new(const char *name, int64_t created, int64_t updated)
{
  struct akv_lazykey *lz = calloc(1, sizeof(*lz));
  if (!lz)
    return NULL;
  lz->name = strdup(name);
  if (!lz->name) {
    free(lz);
    return NULL;
  }
  lz->refs = 1;
  lz->created = created;
  lz->updated = updated;
  return lz;
}

struct akv_lazykey *akv_lazykey_ref(struct akv_lazykey *lz)
{
  if (lz)
    ref_take(&lz->refs);
  return lz;
}

void akv_lazykey_unref(struct akv_lazykey *lz)
{
  size_t i;
  if (!lz || !ref_drop_last(&lz->refs))
    return;
  for (i = 0; i < lz->n; i++)
    akv_object_unref(lz->objs[i]);
  free(lz->name);
  free(lz);
}

struct akv_object *akv_snapshot_find(const struct akv_snapshot *snap, CK_OBJECT_HANDLE h)
{
  size_t lo = 0, hi;
  if (!snap)
    return NULL;
  hi = snap->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (snap->objs[mid]->handle < h)
      lo = mid + 1;
    else if (snap->objs[mid]->handle > h)
      hi = mid;
    else
      return snap->objs[mid];
  }
  return NULL;
}
