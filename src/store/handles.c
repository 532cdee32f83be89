/* SPDX-License-Identifier: Apache-2.0 */
/* The process-wide handle registry (handles stable per object identity) and the bound on cached
 * secret values (src/store/handles.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/module.h"
#include "store/handles.h"

#define MAX_CACHED_SECRETS 256

/* ---- handle registry ------------------------------------------------------------------------ */

/* One entry per (slot, id): a vault key version, certificate or secret. Its objects of the five
 * standard classes take the handles base + class_offset, so a key version's private and public
 * objects cost one entry, and the identity is held inline (16 bytes of the SHA-256 of slot and id:
 * a collision among 10^6 ids has odds below 10^-26), with no allocation per entry. Objects of
 * other classes have an entry of their own (the class enters the digest). */
#define HANDLE_BLOCK 5

struct reg_entry {
  unsigned char ident[16];
  CK_OBJECT_HANDLE base; /* 0: free slot */
};

/* The table is cut in blocks of REG_BLOCK entries (96 KB), below glibc's mmap threshold (128 KB):
 * freeing a larger, mapped table when it grows would raise the threshold for the whole process
 * (docs/performance.md "Memory per cached key", large slots). A table smaller than a block is one
 * block of its size. */
#define REG_SHIFT 12
#define REG_BLOCK ((size_t)1 << REG_SHIFT)

static struct {
  pthread_mutex_t lock;
  /* open addressing, linear probing, power-of-two capacity, load <= 3/4; entry i is
   * blk[i >> REG_SHIFT][i & (REG_BLOCK - 1)] */
  struct reg_entry **blk;
  size_t n, cap, n_blk;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_int secrets_cached;

static int class_offset(CK_OBJECT_CLASS cls)
{
  switch (cls) {
  case CKO_PRIVATE_KEY:
    return 0;
  case CKO_PUBLIC_KEY:
    return 1;
  case CKO_SECRET_KEY:
    return 2;
  case CKO_CERTIFICATE:
    return 3;
  case CKO_DATA:
    return 4;
  default:
    return -1;
  }
}

static size_t slot_of(const unsigned char ident[16], size_t cap)
{
  uint64_t h;
  memcpy(&h, ident, sizeof(h)); /* the digest's bytes are uniform */
  return (size_t)h & (cap - 1);
}

static struct reg_entry *reg_at(struct reg_entry *const *blk, size_t i)
{
  return &blk[i >> REG_SHIFT][i & (REG_BLOCK - 1)];
}

static void reg_blocks_free(struct reg_entry **blk, size_t n_blk)
{
  size_t i;
  for (i = 0; blk && i < n_blk; i++)
    free(blk[i]);
  free(blk);
}

static int reg_grow_inlock(void)
{
  size_t cap = reg.cap ? reg.cap * 2 : 256, i, j;
  size_t n_blk = cap > REG_BLOCK ? cap / REG_BLOCK : 1;
  struct reg_entry **blk = calloc(n_blk, sizeof(*blk));

  for (i = 0; blk && i < n_blk; i++) {
    if (!(blk[i] = calloc(cap < REG_BLOCK ? cap : REG_BLOCK, sizeof(**blk)))) {
      reg_blocks_free(blk, i);
      return -1;
    }
  }
  if (!blk)
    return -1;
  for (i = 0; i < reg.cap; i++) {
    const struct reg_entry *e = reg_at(reg.blk, i);
    if (!e->base)
      continue;
    for (j = slot_of(e->ident, cap); reg_at(blk, j)->base; j = (j + 1) & (cap - 1))
      ;
    *reg_at(blk, j) = *e;
  }
  reg_blocks_free(reg.blk, reg.n_blk);
  reg.blk = blk;
  reg.n_blk = n_blk;
  reg.cap = cap;
  return 0;
}

/* 16 bytes of SHA-256(slot, group, id): group names the class for classes outside the block. */
static int ident_of(CK_SLOT_ID slot, CK_OBJECT_CLASS cls, const char *id, unsigned char out[16])
{
  uint64_t head[2] = {(uint64_t)slot, class_offset(cls) < 0 ? (uint64_t)cls : UINT64_MAX};
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_MD *sha = EVP_MD_fetch(akv_libctx(), "SHA256", NULL);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = sha && ctx && EVP_DigestInit_ex(ctx, sha, NULL) &&
           EVP_DigestUpdate(ctx, head, sizeof(head)) && EVP_DigestUpdate(ctx, id, strlen(id)) &&
           EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == sizeof(md);

  EVP_MD_CTX_free(ctx);
  EVP_MD_free(sha);
  if (ok)
    memcpy(out, md, 16);
  return ok ? 0 : -1;
}

CK_OBJECT_HANDLE akv_handle_for(CK_SLOT_ID slot, CK_OBJECT_CLASS cls, const char *id)
{
  unsigned char ident[16];
  CK_OBJECT_HANDLE base = 0;
  int off = class_offset(cls);
  size_t i;

  if (ident_of(slot, cls, id ? id : "", ident) != 0)
    return 0;
  pthread_mutex_lock(&reg.lock);
  if ((reg.n + 1) * 4 > reg.cap * 3 && reg_grow_inlock() != 0)
    goto out;
  for (i = slot_of(ident, reg.cap); reg_at(reg.blk, i)->base; i = (i + 1) & (reg.cap - 1)) {
    if (memcmp(reg_at(reg.blk, i)->ident, ident, sizeof(ident)) == 0) {
      base = reg_at(reg.blk, i)->base;
      goto out;
    }
  }
  base = akv_module_next_handles(off < 0 ? 1 : HANDLE_BLOCK);
  memcpy(reg_at(reg.blk, i)->ident, ident, sizeof(ident));
  reg_at(reg.blk, i)->base = base;
  reg.n++;
out:
  pthread_mutex_unlock(&reg.lock);
  return base ? base + (CK_OBJECT_HANDLE)(off < 0 ? 0 : off) : 0;
}

size_t akv_handles_count(void)
{
  size_t n;
  pthread_mutex_lock(&reg.lock);
  n = reg.n;
  pthread_mutex_unlock(&reg.lock);
  return n;
}

CK_RV akv_handles_init(void)
{
  atomic_store(&secrets_cached, 0);
  return CKR_OK;
}

void akv_handles_free(void)
{
  pthread_mutex_lock(&reg.lock);
  reg_blocks_free(reg.blk, reg.n_blk);
  reg.blk = NULL;
  reg.n = reg.cap = reg.n_blk = 0;
  pthread_mutex_unlock(&reg.lock);
}

/* Handle registries a forked child abandoned (akv_handles_abandon), kept reachable and never
 * used, like the rest of the parent's state (src/token/module.c, abandon_parent_state). */
static struct abandoned_reg {
  struct abandoned_reg *prev;
  struct reg_entry **blk;
} * abandoned_regs;

void akv_handles_abandon(void)
{
  struct abandoned_reg *a = malloc(sizeof(*a));

  if (a) { /* out of memory: the registry is only dropped, as the child never uses it */
    a->prev = abandoned_regs;
    a->blk = reg.blk;
    abandoned_regs = a;
  }
  pthread_mutex_init(&reg.lock, NULL);
  reg.blk = NULL;
  reg.n = reg.cap = reg.n_blk = 0;
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
