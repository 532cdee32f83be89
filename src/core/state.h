/* SPDX-License-Identifier: Apache-2.0 */
/* The module-wide state behind core/module.h, shared with the code that builds and frees it
 * (src/token/module.c: C_Initialize, C_Finalize). Nothing else includes this header. */
#ifndef AKV_STATE_H
#define AKV_STATE_H

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/provider.h>

#include "core/akv.h"

struct akv_module_state {
  atomic_int initialized;
  atomic_int pid;  /* process that called C_Initialize */
  atomic_uint gen; /* fork_gen when C_Initialize ran */
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
};

extern struct akv_module_state akv_state;

/* Serialises C_Initialize/C_Finalize (reset in a forked child). */
extern pthread_mutex_t akv_init_lock;

/* Registers the fork handler once per process (at the first C_Initialize). */
void akv_module_atfork_once(void);

/* The current fork generation (bumped in every forked child). */
unsigned akv_module_fork_gen(void);

/* True in the process whose C_Initialize set up the state (not in a fork of it). */
int akv_module_initialized_here(void);

/* Waits until no entry point holds the module state (akv_module_enter .. akv_module_leave). */
void akv_module_wait_calls_out(void);

#endif
