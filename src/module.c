/* SPDX-License-Identifier: Apache-2.0 */
/* Module-wide state: initialisation and finalisation, the module lock, the fork check, the
 * private OpenSSL library context, the clock and the handle counter. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include "cache.h"
#include "module.h"
#include "op.h"
#include "session.h"
#include "slot.h"
#include "util/audit.h"
#include "util/log.h"

static struct module_state {
  atomic_int initialized;
  atomic_int pid;      /* process that called C_Initialize */
  atomic_uint gen;     /* fork_gen when C_Initialize ran */
  int threads_ok;
  /* Application locking (CK_C_INITIALIZE_ARGS callbacks without CKF_OS_LOCKING_OK). */
  CK_C_INITIALIZE_ARGS args;
  void *app_mutex;
  pthread_mutex_t lock;
  struct akv_config *cfg;
  OSSL_LIB_CTX *libctx;
  OSSL_PROVIDER *provider;
  struct kv_http *http;
  struct kv_cred *cred;
  struct akv_slot *slots;
  size_t n_slots;
  atomic_ulong next_handle;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Serialises C_Initialize/C_Finalize. Reset in a forked child, where another thread of the parent
 * may have held it at fork time. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Fork generation: bumped in every forked child by the atfork handler, never in the parent. A
 * process is the one that called C_Initialize when the generation it recorded is still current:
 * the same answer as comparing getpid() with the recorded pid, without a system call on every
 * entry point (glibc does not cache the pid; a signature used to cost four getpid calls). */
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
  pthread_mutex_init(&init_lock, NULL);
  /* The parent's threads that held the state do not exist here. */
  atomic_store(&calls_in, 0);
}

/* The module is linked with -z nodelete, so the handler stays valid after dlclose. Registered at
 * the first C_Initialize: before it no process state exists that a child could inherit. */
static void atfork_register(void)
{
  atomic_store(&atfork_ok, pthread_atfork(NULL, NULL, atfork_child) == 0);
}

/* True in the process whose C_Initialize set up g (not in a fork of it), initialised or not. A
 * child created without the atfork handlers (a raw clone system call) is not detected; such a
 * child cannot safely call into libc's locks either. */
static int initialized_here(void)
{
  if (atomic_load_explicit(&g.gen, memory_order_relaxed) !=
      atomic_load_explicit(&fork_gen, memory_order_relaxed))
    return 0;
  return atomic_load_explicit(&atfork_ok, memory_order_relaxed) ||
         atomic_load(&g.pid) == (int)getpid();
}

CK_RV akv_module_check(void)
{
  if (!atomic_load(&g.initialized) || !initialized_here())
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
  if (!atomic_load(&g.initialized))
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
static void wait_calls_out(void)
{
  struct timespec ts = {0, 200 * 1000};
  while (atomic_load(&calls_in) > 0)
    nanosleep(&ts, NULL);
}

OSSL_LIB_CTX *akv_libctx(void)
{
  return g.libctx;
}

const struct akv_config *akv_config(void)
{
  return g.cfg;
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
  if (g.app_mutex)
    g.args.LockMutex(g.app_mutex);
  else
    pthread_mutex_lock(&g.lock);
}

void akv_unlock(void)
{
  if (g.app_mutex)
    g.args.UnlockMutex(g.app_mutex);
  else
    pthread_mutex_unlock(&g.lock);
}

size_t akv_slot_count(void)
{
  return g.n_slots;
}

struct akv_slot *akv_slot_get(CK_SLOT_ID id)
{
  if (akv_module_check() != CKR_OK || id >= g.n_slots)
    return NULL;
  return &g.slots[id];
}

CK_OBJECT_HANDLE akv_handle_next(void)
{
  return (CK_OBJECT_HANDLE)atomic_fetch_add(&g.next_handle, 1);
}

int akv_threads_allowed(void)
{
  return g.threads_ok;
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

/* CK_C_INITIALIZE_ARGS rules: the four mutex callbacks are all set or all NULL. */
static CK_RV check_args(const CK_C_INITIALIZE_ARGS *a)
{
  int n = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) +
          (a->UnlockMutex != NULL);
  if (n != 0 && n != 4)
    return CKR_ARGUMENTS_BAD;
  return CKR_OK;
}

/* pReserved is read as a C string (libp11, p11-kit x-init-reserved): PKCS#11 says it should be
 * NULL, so nothing tells us how long it is or whether it is a string at all. The read stops at
 * RESERVED_MAX bytes, so a pointer to something that is not a string costs at most that much
 * reading instead of running on until a NUL or a fault; bytes that are not printable text mean it
 * is not our configuration (a path or inline JSON) and are refused before anything parses them. */
#define RESERVED_MAX (64 * 1024)

/* Length of the UTF-8 sequence starting at s (1..4), 0 when it is not well-formed (overlong,
 * surrogate, beyond U+10FFFF, truncated) or encodes a C1 control character (U+0080..U+009F). */
static size_t utf8_seq_len(const unsigned char *s)
{
  size_t n;
  unsigned cp;
  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) {
    n = 2;
    cp = s[0] & 0x1fu;
  } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    n = 3;
    cp = s[0] & 0x0fu;
  } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    n = 4;
    cp = s[0] & 0x07u;
  } else {
    return 0;
  }
  /* A continuation byte is never NUL, so this stops at the terminator. */
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
    return 0;
  return n;
}

/* CKR_OK when reserved is NULL or a NUL-terminated string of at most RESERVED_MAX bytes of UTF-8
 * text without control characters other than whitespace; else CKR_ARGUMENTS_BAD, logged with
 * what is wrong and where (never the content: inline JSON may hold a client secret). */
static CK_RV check_reserved(const char *reserved)
{
  const unsigned char *s = (const unsigned char *)reserved;
  size_t len, i, n;
  if (!reserved)
    return CKR_OK;
  len = strnlen(reserved, RESERVED_MAX + 1);
  if (len > RESERVED_MAX) {
    akv_err(AKV_LOGC_CONF,
            "C_Initialize: pReserved has no NUL within %d bytes (not a string, or a configuration "
            "too long to pass inline); fix: pass NULL, a path or inline JSON as a NUL-terminated "
            "string, or put a long configuration in a file and pass its path",
            RESERVED_MAX);
    return CKR_ARGUMENTS_BAD;
  }
  for (i = 0; i < len; i += n) {
    n = 1;
    if (s[i] == 0x7f || (s[i] < 0x20 && !strchr("\t\n\v\f\r", s[i])))
      n = 0;
    else if (s[i] >= 0x80)
      n = utf8_seq_len(s + i);
    if (n == 0) {
      akv_err(AKV_LOGC_CONF,
              "C_Initialize: pReserved is not text (byte %zu of %zu is 0x%02x: a control character "
              "or invalid UTF-8), so it is not a configuration path or inline JSON; fix: pass NULL "
              "or a NUL-terminated UTF-8 string (the caller may be handing over a pointer to "
              "something else)",
              i, len, s[i]);
      return CKR_ARGUMENTS_BAD;
    }
  }
  return CKR_OK;
}

/* Frees everything built by C_Initialize, in reverse order. */
static void teardown(void)
{
  akv_audit_close();
  akv_slots_free(g.slots, g.n_slots);
  g.slots = NULL;
  g.n_slots = 0;
  akv_cache_global_free();
  kv_cred_free(g.cred);
  g.cred = NULL;
  kv_http_free(g.http);
  g.http = NULL;
  akv_config_free(g.cfg);
  g.cfg = NULL;
  akv_md_cache_free();
  if (g.provider)
    OSSL_PROVIDER_unload(g.provider);
  g.provider = NULL;
  OSSL_LIB_CTX_free(g.libctx);
  g.libctx = NULL;
  if (g.app_mutex)
    g.args.DestroyMutex(g.app_mutex);
  g.app_mutex = NULL;
}

/* What forked children abandoned (abandon_parent_state), one entry per fork generation: kept
 * reachable, never used nor freed, so the memory stays accounted for (a leak checker sees it as
 * reachable, not as lost) and a child that forks again does not lose its own parent's state. */
struct abandoned_state {
  struct abandoned_state *prev;
  struct module_state st; /* a copy of g as the parent left it (its pointers are what counts) */
};
static struct abandoned_state *abandoned;

static void keep_abandoned(void)
{
  struct abandoned_state *a = calloc(1, sizeof(*a));

  if (!a)
    return; /* out of memory: the state is only dropped, as the child never uses it */
  a->prev = abandoned;
  memcpy(&a->st, &g, sizeof(g));
  abandoned = a;
}

/* In a forked child the parent's state is dropped without being freed: its curl handles share
 * sockets and TLS sessions with the parent, and freeing them could send close_notify on a
 * connection the parent still uses. Locks another parent thread held at fork time are reset. */
static void abandon_parent_state(void)
{
  akv_info(AKV_LOGC_GEN, "C_Initialize in a forked child: abandoning the parent's state");
  akv_sessions_abandon();
  akv_cache_global_abandon();
  akv_md_cache_abandon();
  keep_abandoned();
  g.slots = NULL;
  g.n_slots = 0;
  g.cred = NULL;
  g.http = NULL;
  g.cfg = NULL;
  g.provider = NULL;
  g.libctx = NULL;
  g.app_mutex = NULL;
  pthread_mutex_init(&g.lock, NULL);
  atomic_store(&g.initialized, 0);
}

static CK_RV build_network(void)
{
  struct kv_http_opts ho;
  kv_rc rc;
  CK_RV rv;

  memset(&ho, 0, sizeof(ho));
  ho.ca_file = g.cfg->ca_file;
  ho.proxy = g.cfg->proxy;
  ho.connect_timeout_ms = g.cfg->connect_timeout_ms;
  ho.request_timeout_ms = g.cfg->request_timeout_ms;
  ho.deadline_ms = g.cfg->deadline_ms;
  ho.max_retries = g.cfg->max_retries;
  ho.retry_base_ms = g.cfg->retry_base_ms;
  ho.retry_cap_ms = g.cfg->retry_cap_ms;
  ho.pool_size = g.cfg->pool_size;
  ho.max_response_bytes = g.cfg->max_response_bytes;
  ho.allowed_hosts = (const char *const *)g.cfg->allowed_hosts;
  ho.n_allowed_hosts = g.cfg->n_allowed_hosts;
  rc = kv_http_new(&ho, &g.http);
  if (rc != KV_OK) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: HTTP transport: %s", kv_rc_str(rc));
    return rc == KV_E_NOMEM ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;
  }
  rc = kv_cred_new(g.http, &g.cfg->cred, &g.cred);
  if (rc != KV_OK) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: credential: %s", kv_rc_str(rc));
    return rc == KV_E_NOMEM ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;
  }
  rv = akv_slots_new(g.cfg, g.http, g.cred, &g.slots, &g.n_slots);
  return rv;
}

CK_RV akv_module_initialize(CK_VOID_PTR init_args)
{
  CK_C_INITIALIZE_ARGS *a = init_args;
  const char *reserved = NULL;
  char err[512];
  CK_RV rv = CKR_OK;

  pthread_once(&atfork_once, atfork_register);
  pthread_mutex_lock(&init_lock);
  if (atomic_load(&g.initialized)) {
    if (initialized_here()) {
      rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
      goto out;
    }
    abandon_parent_state();
  }
  memset(&g.args, 0, sizeof(g.args));
  g.threads_ok = 1;
  if (a) {
    rv = check_args(a);
    if (rv != CKR_OK)
      goto out;
    g.args = *a;
    g.threads_ok = !(a->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS);
    /* PKCS#11 wants pReserved NULL; libp11 and p11-kit's x-init-reserved pass a string there,
     * which is our configuration (a path or inline JSON). */
    reserved = a->pReserved;
  }

  akv_log_init(AKV_LOG_WARN, NULL);
  rv = check_reserved(reserved);
  if (rv != CKR_OK)
    goto fail;
  if (akv_config_load(reserved, &g.cfg, err, sizeof(err)) != 0) {
    /* A configuration error is not a bad argument: C_Initialize fails with CKR_GENERAL_ERROR and
     * the message (file, field, expectation) goes to the log, which defaults to stderr. */
    akv_err(AKV_LOGC_CONF, "configuration: %s", err);
    g.cfg = NULL;
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_log_init(g.cfg->log_level, g.cfg->log_file);
  /* An audit trail that was asked for and cannot be written is a configuration error: running
   * without it would silently drop what the operator relies on. */
  if (akv_audit_open(g.cfg->audit_file) != 0) {
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_audit_set_outcome_mapper(akv_rv_outcome_name);

  /* Mutex callbacks without CKF_OS_LOCKING_OK: the module lock must be the application's. */
  if (a && a->CreateMutex && !(a->flags & CKF_OS_LOCKING_OK)) {
    rv = a->CreateMutex(&g.app_mutex);
    if (rv != CKR_OK) {
      g.app_mutex = NULL;
      goto fail;
    }
  }

  g.libctx = OSSL_LIB_CTX_new();
  if (!g.libctx) {
    rv = CKR_HOST_MEMORY;
    goto fail;
  }
  g.provider = OSSL_PROVIDER_load(g.libctx, "default");
  if (!g.provider) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: cannot load OpenSSL's default provider");
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_md_cache_init();
  rv = akv_cache_global_init();
  if (rv != CKR_OK)
    goto fail;
  rv = akv_sessions_init();
  if (rv != CKR_OK)
    goto fail;
  rv = build_network();
  if (rv != CKR_OK)
    goto fail;

  if (atomic_load(&g.next_handle) == 0)
    atomic_store(&g.next_handle, 1);
  atomic_store(&g.pid, (int)getpid());
  atomic_store(&g.gen, atomic_load(&fork_gen));
  atomic_store(&g.initialized, 1);
  akv_info(AKV_LOGC_GEN, "initialised: %zu slot(s)", g.n_slots);
  goto out;

fail:
  akv_sessions_shutdown();
  teardown();
out:
  pthread_mutex_unlock(&init_lock);
  return rv;
}

CK_RV akv_module_finalize(CK_VOID_PTR reserved)
{
  CK_RV rv;

  pthread_mutex_lock(&init_lock);
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (reserved) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  /* Refuse new calls first, wait for the calls in flight to end, then close sessions, stop the
   * background refreshes and wipe cached secrets. */
  atomic_store(&g.initialized, 0);
  wait_calls_out();
  akv_sessions_shutdown();
  teardown();
  akv_info(AKV_LOGC_GEN, "finalised");
out:
  pthread_mutex_unlock(&init_lock);
  return rv;
}
