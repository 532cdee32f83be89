/* SPDX-License-Identifier: Apache-2.0 */
/* Module-wide state: the module lock, the fork check, the private OpenSSL library context, the
 * configuration, the clock, the slot table and the handle counter. C_Initialize and C_Finalize,
 * which build and free it, are in src/token/module.c (docs/design.md "Layers"). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include "core/module.h"
#include "core/state.h"
#include "util/audit.h"
#include "util/log.h"

struct akv_module_state akv_state = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Serialises C_Initialize/C_Finalize. Reset in a forked child, where another thread of the parent
 * may have held it at fork time. */
pthread_mutex_t akv_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Fork generation: bumped in every forked child by the atfork handler, never in the parent. A
 * process is the one that called C_Initialize when the generation it recorded is still current:
 * the same answer as comparing getpid() with the recorded pid, without a system call on every
 * entry point (glibc does not cache the pid). */
static atomic_uint fork_gen;
/* 0 when pthread_atfork failed: the generation would then miss forks, and the check falls back to
 * getpid(). */
static atomic_int atfork_ok;

static int64_t (*clock_fn)(void);

/* Entry points in progress that hold the module state (akv_module_enter .. akv_module_leave):
 * C_Finalize waits for zero before it frees anything (docs/reliability.md "C_Finalize racing
 * calls"). The thread's own hold is recorded with the fork generation it was taken in, so a child
 * that forked inside an entry point does not give back a count it never had. */
static atomic_long calls_in;
static _Thread_local struct {
  int held;
  unsigned gen;
} call_hold;

static void atfork_child(void)
{
  atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
  pthread_mutex_init(&akv_init_lock, NULL);
  /* The parent's threads that held the state do not exist here. */
  atomic_store(&calls_in, 0);
}

/* The module is linked with -z nodelete, so the handler stays valid after dlclose. Registered at
 * the first C_Initialize: before it no process state exists that a child could inherit. */
static void atfork_register(void)
{
  atomic_store(&atfork_ok, pthread_atfork(NULL, NULL, atfork_child) == 0);
}

unsigned akv_module_fork_gen(void)
{
  return atomic_load(&fork_gen);
}

void akv_module_atfork_once(void)
{
  pthread_once(&atfork_once, atfork_register);
}

/* True in the process whose C_Initialize set up g (not in a fork of it), initialised or not. A
 * child created without the atfork handlers (a raw clone system call) is not detected; such a
 * child cannot safely call into libc's locks either. */
int akv_module_initialized_here(void)
{
  if (atomic_load_explicit(&akv_state.gen, memory_order_relaxed) !=
      atomic_load_explicit(&fork_gen, memory_order_relaxed))
    return 0;
  return atomic_load_explicit(&atfork_ok, memory_order_relaxed) ||
         atomic_load(&akv_state.pid) == (int)getpid();
}

CK_RV akv_module_check(void)
{
  if (!atomic_load(&akv_state.initialized) || !akv_module_initialized_here())
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  return CKR_OK;
}

CK_RV akv_module_enter(void)
{
  CK_RV rv;
  if (call_hold.held)
    return akv_module_check(); /* an entry point called from one: already held */
  /* Not initialised: refused without touching the count, so that callers looping on a finalised
   * module cannot keep it above zero and starve C_Finalize's wait. */
  if (!atomic_load(&akv_state.initialized))
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  /* Counted before the real check, with sequentially consistent atomics on both sides: either
   * C_Finalize's wait sees this count, or this check sees initialized cleared. */
  atomic_fetch_add(&calls_in, 1);
  rv = akv_module_check();
  if (rv != CKR_OK) {
    atomic_fetch_sub(&calls_in, 1);
    return rv;
  }
  call_hold.held = 1;
  call_hold.gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  return CKR_OK;
}

void akv_module_leave(void)
{
  if (!call_hold.held)
    return;
  call_hold.held = 0;
  if (call_hold.gen == atomic_load_explicit(&fork_gen, memory_order_relaxed))
    atomic_fetch_sub(&calls_in, 1);
}

/* Waits until no entry point holds the module state. Calls in flight end within their request
 * deadlines; new ones are refused as soon as initialized is cleared. */
void akv_module_wait_calls_out(void)
{
  struct timespec ts = {0, 200 * 1000};
  while (atomic_load(&calls_in) > 0)
    nanosleep(&ts, NULL);
}

OSSL_LIB_CTX *akv_libctx(void)
{
  return akv_state.libctx;
}

const struct akv_config *akv_config(void)
{
  return akv_state.cfg;
}

int64_t akv_now(void)
{
  if (clock_fn)
    return clock_fn();
  return (int64_t)time(NULL);
}

void akv_set_clock(int64_t (*fn)(void))
{
  clock_fn = fn;
}

void akv_lock(void)
{
  if (akv_state.app_mutex)
    akv_state.args.LockMutex(akv_state.app_mutex);
  else
    pthread_mutex_lock(&akv_state.lock);
}

void akv_unlock(void)
{
  if (akv_state.app_mutex)
    akv_state.args.UnlockMutex(akv_state.app_mutex);
  else
    pthread_mutex_unlock(&akv_state.lock);
}

size_t akv_module_slot_count(void)
{
  return akv_state.n_slots;
}

struct akv_slot *akv_module_slot(CK_SLOT_ID id)
{
  if (akv_module_check() != CKR_OK || id >= akv_state.n_slots)
    return NULL;
  return &akv_state.slots[id];
}

CK_OBJECT_HANDLE akv_module_next_handle(void)
{
  return (CK_OBJECT_HANDLE)atomic_fetch_add(&akv_state.next_handle, 1);
}

CK_OBJECT_HANDLE akv_module_next_handles(CK_ULONG n)
{
  return (CK_OBJECT_HANDLE)atomic_fetch_add(&akv_state.next_handle, n);
}

int akv_threads_allowed(void)
{
  return akv_state.threads_ok;
}

void akv_pad(unsigned char *dst, size_t size, const char *src)
{
  size_t len = src ? strlen(src) : 0;
  if (len > size) {
    len = size;
    /* Do not cut a UTF-8 sequence: drop continuation bytes and the lead byte they belong to. */
    while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
      len--;
  }
  memset(dst, ' ', size);
  if (len)
    memcpy(dst, src, len);
}

void akv_module_info(CK_INFO *info)
{
  memset(info, 0, sizeof(*info));
  info->cryptokiVersion.major = CRYPTOKI_VERSION_MAJOR;
  info->cryptokiVersion.minor = CRYPTOKI_VERSION_MINOR;
  akv_pad(info->manufacturerID, sizeof(info->manufacturerID), "akv-pkcs11");
  info->flags = 0;
  akv_pad(info->libraryDescription, sizeof(info->libraryDescription),
          "Azure Key Vault PKCS#11 module");
  info->libraryVersion.major = AKV_VERSION_MAJOR; /* meson.build's project version */
  info->libraryVersion.minor = AKV_VERSION_MINOR;
}
