/* SPDX-License-Identifier: Apache-2.0 */
/* Arrays of pointers in blocks (src/util/ptrs.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/ptrs.h"

/* A new block starts with room for this many items and doubles up to AKV_PTRS_BLOCK. */
#define PTRS_FIRST 16

static void **ptrs_slot(const struct akv_ptrs *v, size_t i)
{
  return &v->blk[i >> AKV_PTRS_SHIFT][i & (AKV_PTRS_BLOCK - 1)];
}

static size_t min_size(size_t a, size_t b)
{
  return a < b ? a : b;
}

int akv_ptrs_reserve(struct akv_ptrs *v, size_t n)
{
  while (v->cap < n) {
    size_t start = v->n_blk ? (v->n_blk - 1) * AKV_PTRS_BLOCK : 0;
    size_t last = v->n_blk ? v->cap - start : AKV_PTRS_BLOCK, want;
    void **b;

    if (last < AKV_PTRS_BLOCK) { /* the last block grows */
      want = min_size(AKV_PTRS_BLOCK, n - start > last * 2 ? n - start : last * 2);
      b = realloc(v->blk[v->n_blk - 1], want * sizeof(*b));
      if (!b)
        return -1;
      v->blk[v->n_blk - 1] = b;
      v->cap += want - last;
      continue;
    }
    if (v->n_blk == v->cap_blk) {
      size_t cap = v->cap_blk ? v->cap_blk * 2 : 4;
      void ***t = realloc(v->blk, cap * sizeof(*t));
      if (!t)
        return -1;
      v->blk = t;
      v->cap_blk = cap;
    }
    want = min_size(AKV_PTRS_BLOCK, n - v->cap > PTRS_FIRST ? n - v->cap : PTRS_FIRST);
    b = malloc(want * sizeof(*b));
    if (!b)
      return -1;
    v->blk[v->n_blk++] = b;
    v->cap += want;
  }
  return 0;
}

int akv_ptrs_put(struct akv_ptrs *v, size_t i, void *p)
{
  if (i >= v->cap && (i == SIZE_MAX || akv_ptrs_reserve(v, i + 1) != 0))
    return -1;
  *ptrs_slot(v, i) = p;
  return 0;
}

void akv_ptrs_free(struct akv_ptrs *v)
{
  size_t i;
  for (i = 0; i < v->n_blk; i++)
    free(v->blk[i]);
  free(v->blk);
  memset(v, 0, sizeof(*v));
}

/* The runs [lo, mid) and [mid, hi) of from, sorted, merged into [lo, hi) of to. */
static void ptrs_merge(const struct akv_ptrs *from, struct akv_ptrs *to, size_t lo, size_t mid,
                       size_t hi, int (*cmp)(const void *, const void *))
{
  size_t x = lo, y = mid, i;
  for (i = lo; i < hi; i++) {
    void **px = x < mid ? ptrs_slot(from, x) : NULL, **py = y < hi ? ptrs_slot(from, y) : NULL;
    if (px && (!py || cmp(px, py) <= 0)) {
      *ptrs_slot(to, i) = *px;
      x++;
    } else {
      *ptrs_slot(to, i) = *py;
      y++;
    }
  }
}

int akv_ptrs_sort(struct akv_ptrs *v, size_t n, int (*cmp)(const void *, const void *))
{
  struct akv_ptrs a = *v, b, t;
  size_t w, lo;

  /* glibc's qsort takes a buffer of the array's size: one block's, 32 KB. */
  for (lo = 0; lo < n; lo += AKV_PTRS_BLOCK)
    qsort(v->blk[lo >> AKV_PTRS_SHIFT], min_size(n - lo, AKV_PTRS_BLOCK), sizeof(void *), cmp);
  if (n <= AKV_PTRS_BLOCK)
    return 0;
  memset(&b, 0, sizeof(b));
  if (akv_ptrs_reserve(&b, n) != 0) {
    akv_ptrs_free(&b);
    return -1;
  }
  /* Bottom-up: runs of one block, two, four... merged from a into b, then the two swap. */
  for (w = AKV_PTRS_BLOCK; w < n; w *= 2) {
    for (lo = 0; lo < n; lo += 2 * w)
      ptrs_merge(&a, &b, lo, min_size(lo + w, n), min_size(lo + 2 * w, n), cmp);
    t = a;
    a = b;
    b = t;
  }
  *v = a;
  akv_ptrs_free(&b);
  return 0;
}
