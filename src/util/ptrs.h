/* SPDX-License-Identifier: Apache-2.0 */
/* Arrays of pointers in blocks (src/util/ptrs.c), for arrays that grow with a vault's size. */
#ifndef AKV_UTIL_PTRS_H
#define AKV_UTIL_PTRS_H

#include <stddef.h>

/* An array of pointers in blocks of AKV_PTRS_BLOCK (32 KB) and a table of the blocks, so that no
 * allocation exceeds glibc's mmap threshold (128 KB) whatever the vault's size: freeing a larger,
 * mapped block raises the threshold for the whole process (docs/performance.md "Memory per cached
 * key", large slots). Item i is blk[i >> AKV_PTRS_SHIFT][i & (AKV_PTRS_BLOCK - 1)]; every block but
 * the last is full, the last grows by doubling. The count of items is the owner's. */
#define AKV_PTRS_SHIFT 12
#define AKV_PTRS_BLOCK ((size_t)1 << AKV_PTRS_SHIFT)

struct akv_ptrs {
  void ***blk;
  size_t n_blk, cap_blk; /* blocks allocated, room in blk */
  size_t cap;            /* items the blocks hold */
};

static inline void *akv_ptrs_at(const struct akv_ptrs *v, size_t i)
{
  return v->blk[i >> AKV_PTRS_SHIFT][i & (AKV_PTRS_BLOCK - 1)];
}

/* Room for n items: 0, or -1 out of memory (v then holds what it held). */
int akv_ptrs_reserve(struct akv_ptrs *v, size_t n);
/* Item i := p, with room made for it: 0, or -1 out of memory. */
int akv_ptrs_put(struct akv_ptrs *v, size_t i, void *p);
/* Sorts items [0, n) as qsort would with cmp (which receives pointers to two items): each block
 * with qsort, then merged into blocks of their own. 0, or -1 out of memory (the same items, their
 * order not known). */
int akv_ptrs_sort(struct akv_ptrs *v, size_t n, int (*cmp)(const void *, const void *));
/* Frees the blocks and the table (not what the items point to); v is then empty. */
void akv_ptrs_free(struct akv_ptrs *v);

#endif
