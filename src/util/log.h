/* SPDX-License-Identifier: Apache-2.0 */
/* Logging by category. Shared contract: src/util/log.c implements it (backend helper).
 * Never logs to stdout (it belongs to the host program). Secrets are never passed here. */
#ifndef AKV_UTIL_LOG_H
#define AKV_UTIL_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

enum akv_log_level {
  AKV_LOG_ERROR = 0,
  AKV_LOG_WARN = 1,
  AKV_LOG_INFO = 2,
  AKV_LOG_DEBUG = 3,
};

/* Categories are bits, enabled at debug level by AKV_PKCS11_DEBUG=http,auth,cache,p11,kv,conf,all
 */
enum akv_log_cat {
  AKV_LOGC_GEN = 1u << 0,
  AKV_LOGC_HTTP = 1u << 1,
  AKV_LOGC_AUTH = 1u << 2,
  AKV_LOGC_CACHE = 1u << 3,
  AKV_LOGC_P11 = 1u << 4,
  AKV_LOGC_KV = 1u << 5,
  AKV_LOGC_CONF = 1u << 6,
};

/* (Re)configures logging: level (ERROR..DEBUG), file (NULL or "" = stderr, "syslog" = syslog(3)).
 * Environment AKV_PKCS11_DEBUG (categories, implies DEBUG for them) and AKV_PKCS11_LOG_LEVEL
 * override. Safe to call again after fork or C_Finalize. */
void akv_log_init(int level, const char *file);
void akv_log_close(void);

/* A process-wide mutex that is safe across fork(2): the first akv_fork_lock_take registers it, and
 * from then on a pthread_atfork prepare handler takes it (with every other registered one) and
 * the parent and child handlers release it, so a child never inherits it held by a thread it does
 * not have (docs/reliability.md "Fork"). A thread must not hold two of them at once. */
struct akv_fork_lock {
  pthread_mutex_t m;
  atomic_int registered;
};
#define AKV_FORK_LOCK_INIT                                                                         \
  {                                                                                                \
    PTHREAD_MUTEX_INITIALIZER, 0                                                                   \
  }
void akv_fork_lock_take(struct akv_fork_lock *l);
void akv_fork_lock_give(struct akv_fork_lock *l);

/* Opens one of the module's own output files (log, audit) for appending, created 0600: never
 * through a symbolic link (O_NOFOLLOW), and refused when it is owned by neither root nor this
 * process's user, or when it is a regular file group or other can write (docs/security.md
 * "Configuration, log and audit files"). Returns the descriptor, or -1 with the reason and the fix
 * in why. */
int akv_open_own_file(const char *path, char *why, size_t whylen);

/* True when a message of this level and category would be written (cheap, lock-free). */
int akv_log_enabled(int level, unsigned cat);

void akv_log(int level, unsigned cat, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define akv_err(cat, ...) akv_log(AKV_LOG_ERROR, (cat), __VA_ARGS__)
#define akv_warn(cat, ...) akv_log(AKV_LOG_WARN, (cat), __VA_ARGS__)
#define akv_info(cat, ...) akv_log(AKV_LOG_INFO, (cat), __VA_ARGS__)
#define akv_dbg(cat, ...)                                                                          \
  do {                                                                                             \
    if (akv_log_enabled(AKV_LOG_DEBUG, (cat)))                                                     \
      akv_log(AKV_LOG_DEBUG, (cat), __VA_ARGS__);                                                  \
  } while (0)

#endif
