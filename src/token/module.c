/* SPDX-License-Identifier: Apache-2.0 */
/* C_Initialize and C_Finalize: the composition root. Builds the module-wide state of
 * src/core/module.c (configuration, audit trail, locks, OpenSSL library context, HTTP transport,
 * credential, slots, caches, session table) and frees it in reverse order; a forked child
 * abandons its parent's state (docs/design.md "Layers"). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include "core/module.h"
#include "core/state.h"
#include "store/handles.h"
#include "token/op.h"
#include "token/session.h"
#include "token/slot.h"
#include "util/audit.h"
#include "util/log.h"
#include "util/utf8.h"

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

/* CKR_OK when reserved is NULL or a NUL-terminated string of at most RESERVED_MAX bytes of UTF-8
 * text without control characters other than whitespace; else CKR_ARGUMENTS_BAD, logged with
 * what is wrong and where (never the content: inline JSON may hold a client secret). */
static CK_RV check_reserved(const char *reserved)
{
  const unsigned char *s = (const unsigned char *)reserved;
  size_t len, i, n;
  unsigned cp = 0;
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
    else if (s[i] >= 0x80) {
      n = akv_utf8_seq_len(s + i, len - i, &cp);
      if (cp >= 0x80 && cp <= 0x9f) /* C1 control characters */
        n = 0;
    }
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
  akv_slots_free(akv_state.slots, akv_state.n_slots);
  akv_state.slots = NULL;
  akv_state.n_slots = 0;
  akv_handles_free();
  kv_cred_free(akv_state.cred);
  akv_state.cred = NULL;
  kv_http_free(akv_state.http);
  akv_state.http = NULL;
  akv_config_free(akv_state.cfg);
  akv_state.cfg = NULL;
  akv_mech_md_cache_free();
  if (akv_state.provider)
    OSSL_PROVIDER_unload(akv_state.provider);
  akv_state.provider = NULL;
  OSSL_LIB_CTX_free(akv_state.libctx);
  akv_state.libctx = NULL;
  if (akv_state.app_mutex)
    akv_state.args.DestroyMutex(akv_state.app_mutex);
  akv_state.app_mutex = NULL;
}

/* What forked children abandoned (abandon_parent_state), one entry per fork generation: kept
 * reachable, never used nor freed, so the memory stays accounted for (a leak checker sees it as
 * reachable, not as lost) and a child that forks again does not lose its own parent's state. */
struct abandoned_state {
  struct abandoned_state *prev;
  struct akv_module_state st; /* a copy of g as the parent left it (its pointers are what counts) */
};
static struct abandoned_state *abandoned;

static void keep_abandoned(void)
{
  struct abandoned_state *a = calloc(1, sizeof(*a));

  if (!a)
    return; /* out of memory: the state is only dropped, as the child never uses it */
  a->prev = abandoned;
  memcpy(&a->st, &akv_state, sizeof(akv_state));
  abandoned = a;
}

/* In a forked child the parent's state is dropped without being freed: its curl handles share
 * sockets and TLS sessions with the parent, and freeing them could send close_notify on a
 * connection the parent still uses. Locks another parent thread held at fork time are reset. */
static void abandon_parent_state(void)
{
  akv_info(AKV_LOGC_GEN, "C_Initialize in a forked child: abandoning the parent's state");
  akv_sessions_abandon();
  akv_handles_abandon();
  akv_mech_md_cache_abandon();
  keep_abandoned();
  akv_state.slots = NULL;
  akv_state.n_slots = 0;
  akv_state.cred = NULL;
  akv_state.http = NULL;
  akv_state.cfg = NULL;
  akv_state.provider = NULL;
  akv_state.libctx = NULL;
  akv_state.app_mutex = NULL;
  pthread_mutex_init(&akv_state.lock, NULL);
  atomic_store(&akv_state.initialized, 0);
}

static CK_RV build_network(void)
{
  struct kv_http_opts ho;
  kv_rc rc;
  CK_RV rv;

  memset(&ho, 0, sizeof(ho));
  ho.ca_file = akv_state.cfg->ca_file;
  ho.proxy = akv_state.cfg->proxy;
  ho.connect_timeout_ms = akv_state.cfg->connect_timeout_ms;
  ho.request_timeout_ms = akv_state.cfg->request_timeout_ms;
  ho.deadline_ms = akv_state.cfg->deadline_ms;
  ho.max_retries = akv_state.cfg->max_retries;
  ho.retry_base_ms = akv_state.cfg->retry_base_ms;
  ho.retry_cap_ms = akv_state.cfg->retry_cap_ms;
  ho.pool_size = akv_state.cfg->pool_size;
  ho.max_response_bytes = akv_state.cfg->max_response_bytes;
  ho.allowed_hosts = (const char *const *)akv_state.cfg->allowed_hosts;
  ho.n_allowed_hosts = akv_state.cfg->n_allowed_hosts;
  ho.pace_cfg = akv_state.cfg; /* docs/reliability.md "Pacing" */
  rc = kv_http_new(&ho, &akv_state.http);
  if (rc != KV_OK) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: HTTP transport: %s", kv_rc_str(rc));
    return akv_rv_nomem_or(rc, CKR_GENERAL_ERROR);
  }
  rc = kv_cred_new(akv_state.http, &akv_state.cfg->cred, &akv_state.cred);
  if (rc != KV_OK) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: credential: %s", kv_rc_str(rc));
    return akv_rv_nomem_or(rc, CKR_GENERAL_ERROR);
  }
  rv = akv_slots_new(akv_state.cfg, akv_state.http, akv_state.cred, &akv_state.slots,
                     &akv_state.n_slots);
  return rv;
}

CK_RV akv_module_initialize(CK_VOID_PTR init_args)
{
  CK_C_INITIALIZE_ARGS *a = init_args;
  const char *reserved = NULL;
  char err[512];
  CK_RV rv = CKR_OK;

  akv_module_atfork_once();
  pthread_mutex_lock(&akv_init_lock);
  if (atomic_load(&akv_state.initialized)) {
    if (akv_module_initialized_here()) {
      rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
      goto out;
    }
    abandon_parent_state();
  }
  memset(&akv_state.args, 0, sizeof(akv_state.args));
  akv_state.threads_ok = 1;
  if (a) {
    rv = check_args(a);
    if (rv != CKR_OK)
      goto out;
    akv_state.args = *a;
    akv_state.threads_ok = !(a->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS);
    /* PKCS#11 wants pReserved NULL; libp11 and p11-kit's x-init-reserved pass a string there,
     * which is our configuration (a path or inline JSON). */
    reserved = a->pReserved;
  }

  akv_log_init(AKV_LOG_WARN, NULL);
  rv = check_reserved(reserved);
  if (rv != CKR_OK)
    goto fail;
  if (akv_config_load(reserved, &akv_state.cfg, err, sizeof(err)) != 0) {
    /* A configuration error is not a bad argument: C_Initialize fails with CKR_GENERAL_ERROR and
     * the message (file, field, expectation) goes to the log, which defaults to stderr. */
    akv_err(AKV_LOGC_CONF, "configuration: %s", err);
    akv_state.cfg = NULL;
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_log_init(akv_state.cfg->log_level, akv_state.cfg->log_file);
  /* An audit trail that was asked for and cannot be written is a configuration error: running
   * without it would silently drop what the operator relies on. */
  if (akv_audit_open(akv_state.cfg->audit_file) != 0) {
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_audit_set_outcome_mapper(akv_rv_outcome_name);

  /* Mutex callbacks without CKF_OS_LOCKING_OK: the module lock must be the application's. */
  if (a && a->CreateMutex && !(a->flags & CKF_OS_LOCKING_OK)) {
    rv = a->CreateMutex(&akv_state.app_mutex);
    if (rv != CKR_OK) {
      akv_state.app_mutex = NULL;
      goto fail;
    }
  }

  akv_state.libctx = OSSL_LIB_CTX_new();
  if (!akv_state.libctx) {
    rv = CKR_HOST_MEMORY;
    goto fail;
  }
  akv_state.provider = OSSL_PROVIDER_load(akv_state.libctx, "default");
  if (!akv_state.provider) {
    akv_err(AKV_LOGC_GEN, "C_Initialize: cannot load OpenSSL's default provider");
    rv = CKR_GENERAL_ERROR;
    goto fail;
  }
  akv_mech_md_cache_init();
  rv = akv_handles_init();
  if (rv != CKR_OK)
    goto fail;
  rv = akv_sessions_init();
  if (rv != CKR_OK)
    goto fail;
  rv = build_network();
  if (rv != CKR_OK)
    goto fail;

  if (atomic_load(&akv_state.next_handle) == 0)
    atomic_store(&akv_state.next_handle, 1);
  atomic_store(&akv_state.pid, (int)getpid());
  atomic_store(&akv_state.gen, akv_module_fork_gen());
  atomic_store(&akv_state.initialized, 1);
  akv_info(AKV_LOGC_GEN, "initialised: %zu slot(s)", akv_state.n_slots);
  goto out;

fail:
  akv_sessions_shutdown();
  teardown();
out:
  pthread_mutex_unlock(&akv_init_lock);
  return rv;
}

CK_RV akv_module_finalize(CK_VOID_PTR reserved)
{
  CK_RV rv;

  pthread_mutex_lock(&akv_init_lock);
  rv = akv_module_check();
  if (rv != CKR_OK)
    goto out;
  if (reserved) {
    rv = CKR_ARGUMENTS_BAD;
    goto out;
  }
  /* Refuse new calls first, wait for the calls in flight to end, then close sessions, stop the
   * background refreshes and wipe cached secrets. */
  atomic_store(&akv_state.initialized, 0);
  akv_module_wait_calls_out();
  akv_sessions_shutdown();
  teardown();
  akv_info(AKV_LOGC_GEN, "finalised");
out:
  pthread_mutex_unlock(&akv_init_lock);
  return rv;
}
