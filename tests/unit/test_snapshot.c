/* SPDX-License-Identifier: Apache-2.0 */
/* Large slots (docs/performance.md "Memory per cached key", fourth pass): the arrays of pointers
 * in blocks (src/util/ptrs.c) sort and grow correctly across their blocks, and a slot of 20,000
 * keys on the fake vault (listing, keys read on demand, searches of every object, a refresh) makes
 * no allocation above glibc's mmap threshold (128 KB), with handles stable and found by lookup.
 * The largest request is seen by replacing malloc, calloc and realloc in this program (glibc
 * supports it): not under AddressSanitizer, whose own allocator must see every block; the rest of
 * the test still runs there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_helpers.h"

#include "store/cache.h"
#include "store/handles.h"
#include "store/object.h"
#include "store/snapshot.h"

#define KEYS 20000
#define MMAP_THRESHOLD (128 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define SIZE_HOOK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIZE_HOOK 0
#endif
#endif
#ifndef SIZE_HOOK
#define SIZE_HOOK 1
#endif

/* The largest request made while armed, and the code that made it (for addr2line). */
static int armed;
static size_t largest;
static void *largest_by;

#if SIZE_HOOK
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static void seen(size_t n, void *by)
{
  if (__atomic_load_n(&armed, __ATOMIC_RELAXED) && n > largest) {
    largest = n;
    largest_by = by;
  }
}

void *malloc(size_t n)
{
  seen(n, __builtin_return_address(0));
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
  seen(n * size, __builtin_return_address(0));
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
  seen(n, __builtin_return_address(0));
  return __libc_realloc(p, n);
}
#endif

static void arm(void)
{
  largest = 0;
  largest_by = NULL;
  __atomic_store_n(&armed, 1, __ATOMIC_RELAXED);
}

/* Disarms and checks the largest request seen since arm(). */
static void no_large_block(const char *what)
{
  __atomic_store_n(&armed, 0, __ATOMIC_RELAXED);
  if (!SIZE_HOOK)
    return;
  printf("%s: largest allocation %zu bytes (by %p)\n", what, largest, largest_by);
  assert_true(largest > 0);
  assert_true(largest < MMAP_THRESHOLD);
}

/* ---- struct akv_ptrs ------------------------------------------------------------------------- */

static int cmp_value(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* n values put, sorted, checked in order and complete (their sum), for sizes around the blocks. */
static void test_ptrs_sort(void **state)
{
  static const size_t sizes[] = {0,
                                 1,
                                 2,
                                 AKV_PTRS_BLOCK - 1,
                                 AKV_PTRS_BLOCK,
                                 AKV_PTRS_BLOCK + 1,
                                 3 * AKV_PTRS_BLOCK + 5,
                                 8 * AKV_PTRS_BLOCK,
                                 KEYS * 2 + 7};
  size_t k, i;
  (void)state;

  arm();
  for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    struct akv_ptrs v;
    size_t n = sizes[k];
    uint64_t sum = 0, sum2 = 0, x = 88172645463325252ull;

    memset(&v, 0, sizeof(v));
    for (i = 0; i < n; i++) {
      x ^= x << 13; /* xorshift: values with repeats (the low 16 bits only) */
      x ^= x >> 7;
      x ^= x << 17;
      assert_int_equal(akv_ptrs_put(&v, i, (void *)(uintptr_t)(x & 0xffff)), 0);
      sum += x & 0xffff;
    }
    assert_true(v.cap >= n);
    assert_int_equal(akv_ptrs_sort(&v, n, cmp_value), 0);
    for (i = 0; i < n; i++) {
      sum2 += (uintptr_t)akv_ptrs_at(&v, i);
      if (i)
        assert_true((uintptr_t)akv_ptrs_at(&v, i - 1) <= (uintptr_t)akv_ptrs_at(&v, i));
    }
    assert_true(sum == sum2);
    /* Room reserved at once is used in place; a block holds at most AKV_PTRS_BLOCK items. */
    assert_int_equal(akv_ptrs_reserve(&v, n + AKV_PTRS_BLOCK), 0);
    assert_true(v.cap >= n + AKV_PTRS_BLOCK);
    assert_true(v.n_blk <= (v.cap + AKV_PTRS_BLOCK - 1) / AKV_PTRS_BLOCK);
    akv_ptrs_free(&v);
    assert_null(v.blk);
    assert_int_equal(v.cap, 0);
  }
  no_large_block("akv_ptrs");
}

/* ---- a slot of KEYS keys ------------------------------------------------------------------- */

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  t_clock_now = 1800000000;
  fake_kv_add_bulk_keys("k", KEYS);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static const char *const probes[] = {"k000000", "k004095", "k004096", "k012345", "k019999"};
#define N_PROBES (sizeof(probes) / sizeof(probes[0]))

/* The private key of each probe by class and label; its label read back through its handle. */
static void find_probes(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h)
{
  char label[32];
  size_t i;
  for (i = 0; i < N_PROBES; i++) {
    h[i] = t_find_one(s, CKO_PRIVATE_KEY, probes[i]);
    assert_int_equal(t_attr(s, h[i], CKA_LABEL, label, sizeof(label)), strlen(probes[i]));
    assert_memory_equal(label, probes[i], strlen(probes[i]));
  }
}

/* Every object of the current snapshot: sorted by handle, each found by its handle. */
static void all_found(size_t objects)
{
  struct akv_snapshot *snap = akv_cache_peek(akv_module_slot(0)->cache);
  size_t i;
  assert_non_null(snap);
  assert_int_equal(snap->n, objects);
  assert_int_equal(snap->n_lazy, 0);
  for (i = 0; i < snap->n; i++) {
    struct akv_object *o = akv_snapshot_obj(snap, i);
    if (i)
      assert_true(akv_snapshot_obj(snap, i - 1)->handle < o->handle);
    assert_ptr_equal(akv_snapshot_find(snap, o->handle), o);
  }
  assert_null(akv_snapshot_find(snap, akv_snapshot_obj(snap, snap->n - 1)->handle + 100));
  akv_snapshot_unref(snap);
}

/* Every object by an empty template: 2 * KEYS handles, in the snapshot's order (by handle). */
static void find_all(CK_SESSION_HANDLE s)
{
  static CK_OBJECT_HANDLE all[2 * KEYS + 1]; /* not from malloc: the hook sees the module's */
  size_t i;
  assert_int_equal(t_find(s, NULL, 0, all, 2 * KEYS + 1), 2 * KEYS);
  for (i = 1; i < 2 * KEYS; i++)
    assert_true(all[i - 1] < all[i]);
}

/* Lists KEYS keys (cfg decides whether they are read at once or on demand), reads every pending
 * one through a search that matches none of them, finds every object, refreshes past the hard
 * TTL: no request above the threshold, and the probes keep their handles. */
static void large_slot(const char *cfg, const char *what)
{
  CK_OBJECT_HANDLE before[N_PROBES], after[N_PROBES], h[4];
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_KEY_TYPE rsa = CKK_RSA;
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &rsa, sizeof(rsa)}};
  CK_SESSION_HANDLE s;
  size_t i;

  arm();
  assert_int_equal(t_init(cfg), CKR_OK);
  s = t_open(0);
  find_probes(s, before);
  /* No label: every pending key may match, so every one is read (none is RSA). */
  assert_int_equal(t_find(s, t, 2, h, 4), 0);
  all_found(2 * KEYS);
  find_all(s);
  assert_int_equal(akv_handles_count(), KEYS);
  t_clock_now += 200; /* past the hard TTL (ttl 100): the next search lists again */
  find_probes(s, after);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  for (i = 0; i < N_PROBES; i++)
    assert_int_equal(after[i], before[i]);
  all_found(2 * KEYS);
  find_all(s);
  assert_int_equal(akv_handles_count(), KEYS);
  no_large_block(what);
}

static void test_large_slot_on_demand(void **state)
{
  (void)state;
  large_slot(T_CFG(",\"ttl\":100"), "keys read on demand");
}

static void test_large_slot_listed(void **state)
{
  (void)state;
  large_slot(T_CFG(",\"ttl\":100,\"prefetch_keys\":1000000"), "keys read at listing");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ptrs_sort),
      cmocka_unit_test_setup_teardown(test_large_slot_on_demand, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_slot_listed, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
