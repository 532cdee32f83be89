/* SPDX-License-Identifier: Apache-2.0 */
/* The process-wide handle registry (handles stable per object identity) and the bound on cached
 * secret values (src/store/handles.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "store/handles.h"

#define MAX_CACHED_SECRETS 256

/* ---- handle registry ------------------------------------------------------------------------ */

struct reg_entry {
  char *ident;
  CK_OBJECT_HANDLE handle;
};

static struct {
  pthread_mutex_t lock;
  struct reg_entry *v; /* open addressing, power-of-two capacity */
  size_t n, cap;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_int secrets_cached;

static uint64_t hash_str(const char *s)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  while (*s) {
    h ^= (unsigned char)*s++;
    h *= 1099511628211ULL;
  }
  return h;
}

static int reg_grow_inlock(void)
{
  size_t cap = reg.cap ? reg.cap * 2 : 256, i, j;
  struct reg_entry *v = calloc(cap, sizeof(*v));
  if (!v)
    return -1;
  for (i = 0; i < reg.cap; i++) {
    if (!reg.v[i].ident)
      continue;
    for (j = hash_str(reg.v[i].ident) & (cap - 1); v[j].ident; j = (j + 1) & (cap - 1))
      ;
    v[j] = reg.v[i];
  }
  free(reg.v);
  reg.v = v;
  reg.cap = cap;
  return 0;
}

CK_OBJECT_HANDLE akv_handle_for(const char *ident)
{
  CK_OBJECT_HANDLE h = 0;
  size_t i;

  pthread_mutex_lock(&reg.lock);
  if ((reg.n + 1) * 2 > reg.cap && reg_grow_inlock() != 0)
    goto out;
  for (i = hash_str(ident) & (reg.cap - 1); reg.v[i].ident; i = (i + 1) & (reg.cap - 1)) {
    if (strcmp(reg.v[i].ident, ident) == 0) {
      h = reg.v[i].handle;
      goto out;
    }
  }
  reg.v[i].ident = strdup(ident);
  if (!reg.v[i].ident)
    goto out;
  reg.v[i].handle = h = akv_module_next_handle();
  reg.n++;
out:
  pthread_mutex_unlock(&reg.lock);
  return h;
}

CK_RV akv_handles_init(void)
{
  atomic_store(&secrets_cached, 0);
  return CKR_OK;
}

void akv_handles_free(void)
{
  size_t i;
  pthread_mutex_lock(&reg.lock);
  for (i = 0; i < reg.cap; i++)
    free(reg.v[i].ident);
  free(reg.v);
  reg.v = NULL;
  reg.n = reg.cap = 0;
  pthread_mutex_unlock(&reg.lock);
}

/* Handle registries a forked child abandoned (akv_handles_abandon), kept reachable and never
 * used, like the rest of the parent's state (src/token/module.c, abandon_parent_state). */
static struct abandoned_reg {
  struct abandoned_reg *prev;
  struct reg_entry *v;
} * abandoned_regs;

void akv_handles_abandon(void)
{
  struct abandoned_reg *a = malloc(sizeof(*a));

  if (a) { /* out of memory: the registry is only dropped, as the child never uses it */
    a->prev = abandoned_regs;
    a->v = reg.v;
    abandoned_regs = a;
  }
  pthread_mutex_init(&reg.lock, NULL);
  reg.v = NULL;
  reg.n = reg.cap = 0;
  atomic_store(&secrets_cached, 0);
}

int akv_handles_secret_take(void)
{
  int n = atomic_fetch_add(&secrets_cached, 1);
  if (n >= MAX_CACHED_SECRETS) {
    atomic_fetch_sub(&secrets_cached, 1);
    return 0;
  }
  return 1;
}

void akv_handles_secret_give(void)
{
  atomic_fetch_sub(&secrets_cached, 1);
}
