/* SPDX-License-Identifier: Apache-2.0 */
/* Logging by category to stderr, a file or syslog; never stdout (it belongs to the host program).
 * One preformatted line per write(2) so concurrent lines do not interleave; the sink lock is
 * re-armed around fork so a child never inherits it held. */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "util/utc.h"

#define LOG_LINE_MAX 2048

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
/* Read without the lock on the hot path (akv_log_enabled), while C_Initialize may be changing
 * them: relaxed atomics (a call racing a reconfiguration sees the old or the new setting). */
static atomic_int log_level = AKV_LOG_WARN;
static atomic_uint log_debug_cats;
static int log_fd = -1; /* -1 = stderr */
static int log_syslog;  /* 1 = syslog(3) */
static int log_fd_owned;

static void log_atfork_prepare(void)
{
  pthread_mutex_lock(&log_lock);
}

static void log_atfork_release(void)
{
  pthread_mutex_unlock(&log_lock);
}

/* The registered fork-safe locks (akv_fork_lock_take); the registry lock is taken first around
 * fork so no registration runs while the handlers walk the list. */
#define FORK_LOCKS_MAX 16
static pthread_mutex_t fork_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_reg_once = PTHREAD_ONCE_INIT;
static struct akv_fork_lock *fork_locks[FORK_LOCKS_MAX];
static int n_fork_locks;

static void fork_locks_prepare(void)
{
  pthread_mutex_lock(&fork_reg_lock);
  for (int i = 0; i < n_fork_locks; i++)
    pthread_mutex_lock(&fork_locks[i]->m);
}

static void fork_locks_release(void)
{
  for (int i = n_fork_locks - 1; i >= 0; i--)
    pthread_mutex_unlock(&fork_locks[i]->m);
  pthread_mutex_unlock(&fork_reg_lock);
}

static void fork_reg_init(void)
{
  pthread_atfork(fork_locks_prepare, fork_locks_release, fork_locks_release);
}

void akv_fork_lock_take(struct akv_fork_lock *l)
{
  if (!atomic_load_explicit(&l->registered, memory_order_acquire)) {
    pthread_once(&fork_reg_once, fork_reg_init);
    pthread_mutex_lock(&fork_reg_lock);
    /* A full registry (a programming error: there are a handful of such locks) leaves the lock
     * working, only not fork-safe. */
    if (!atomic_load(&l->registered) && n_fork_locks < FORK_LOCKS_MAX)
      fork_locks[n_fork_locks++] = l;
    atomic_store_explicit(&l->registered, 1, memory_order_release);
    pthread_mutex_unlock(&fork_reg_lock);
  }
  pthread_mutex_lock(&l->m);
}

void akv_fork_lock_give(struct akv_fork_lock *l)
{
  pthread_mutex_unlock(&l->m);
}

static int parse_level(const char *s, int *out)
{
  static const char *const names[] = {"error", "warn", "info", "debug"};
  if (!s || !*s)
    return -1;
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, names[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = AKV_LOG_WARN;
    return 0;
  }
  if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0') {
    *out = s[0] - '0';
    return 0;
  }
  return -1;
}

static unsigned parse_cats(const char *s)
{
  static const struct {
    const char *name;
    unsigned bit;
  } cats[] = {
      {"gen", AKV_LOGC_GEN},     {"http", AKV_LOGC_HTTP}, {"auth", AKV_LOGC_AUTH},
      {"cache", AKV_LOGC_CACHE}, {"p11", AKV_LOGC_P11},   {"kv", AKV_LOGC_KV},
      {"conf", AKV_LOGC_CONF},
  };
  unsigned mask = 0;
  while (s && *s) {
    size_t n = strcspn(s, ",: ");
    if (n == 3 && strncasecmp(s, "all", 3) == 0)
      mask = ~0u;
    else if (n == 1 && s[0] == '1')
      mask = ~0u;
    for (size_t i = 0; i < sizeof(cats) / sizeof(cats[0]); i++)
      if (strlen(cats[i].name) == n && strncasecmp(s, cats[i].name, n) == 0)
        mask |= cats[i].bit;
    s += n;
    if (*s)
      s++;
  }
  return mask;
}

static void log_once_init(void)
{
  int lvl;
  pthread_atfork(log_atfork_prepare, log_atfork_release, log_atfork_release);
  if (parse_level(secure_getenv("AKV_PKCS11_LOG_LEVEL"), &lvl) == 0)
    atomic_store_explicit(&log_level, lvl, memory_order_relaxed);
  atomic_store_explicit(&log_debug_cats, parse_cats(secure_getenv("AKV_PKCS11_DEBUG")),
                        memory_order_relaxed);
}

static void close_sink_inlock(void)
{
  if (log_fd_owned && log_fd >= 0)
    close(log_fd);
  if (log_syslog)
    closelog();
  log_fd = -1;
  log_fd_owned = 0;
  log_syslog = 0;
}

int akv_open_own_file(const char *path, char *why, size_t whylen)
{
  struct stat st;
  uid_t me = geteuid();
  /* O_NONBLOCK: a FIFO nobody reads would block the open, and so C_Initialize, for ever; it fails
   * with ENXIO instead. Writes block again once the file is open (cleared below). */
  int fd = open(
      path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0) {
    if (errno == ELOOP)
      snprintf(why, whylen,
               "it is a symbolic link, which is not followed; fix: name the file "
               "itself");
    else if (errno == ENXIO)
      snprintf(why, whylen,
               "it is a FIFO that no process reads; fix: start its reader first, or "
               "name a regular file");
    else
      snprintf(why, whylen, "%s", strerror(errno));
    return -1;
  }
  if (fstat(fd, &st) != 0 || fcntl(fd, F_SETFL, O_APPEND) != 0) {
    snprintf(why, whylen, "%s", strerror(errno));
  } else if (st.st_uid != 0 && st.st_uid != me) {
    snprintf(why, whylen,
             "it is owned by uid %u, neither root nor this process's user (uid %u); fix: chown "
             "%u %s, or choose a path in a directory you own",
             (unsigned)st.st_uid, (unsigned)me, (unsigned)me, path);
  } else if (S_ISREG(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH))) {
    snprintf(why, whylen,
             "group or other can write it (mode %03o), so its lines could be forged; fix: chmod "
             "go-w %s",
             (unsigned)(st.st_mode & 0777), path);
  } else {
    return fd;
  }
  close(fd);
  return -1;
}

void akv_log_init(int level, const char *file)
{
  int lvl;
  int fd = -1;
  pthread_once(&log_once, log_once_init);
  if (level < AKV_LOG_ERROR)
    level = AKV_LOG_ERROR;
  if (level > AKV_LOG_DEBUG)
    level = AKV_LOG_DEBUG;
  /* The environment overrides the configuration so an operator can debug without editing it. */
  if (parse_level(secure_getenv("AKV_PKCS11_LOG_LEVEL"), &lvl) == 0)
    level = lvl;
  if (file && *file && strcmp(file, "syslog") != 0 && strcmp(file, "stderr") != 0) {
    char why[512];
    fd = akv_open_own_file(file, why, sizeof(why));
    if (fd < 0)
      fprintf(stderr, "akv-pkcs11: cannot open log file %s: %s; logging to stderr\n", file, why);
  }
  pthread_mutex_lock(&log_lock);
  close_sink_inlock();
  atomic_store_explicit(&log_level, level, memory_order_relaxed);
  atomic_store_explicit(&log_debug_cats, parse_cats(secure_getenv("AKV_PKCS11_DEBUG")),
                        memory_order_relaxed);
  if (fd >= 0) {
    log_fd = fd;
    log_fd_owned = 1;
  } else if (file && strcmp(file, "syslog") == 0) {
    openlog("akv-pkcs11", LOG_PID, LOG_USER);
    log_syslog = 1;
  }
  pthread_mutex_unlock(&log_lock);
}

void akv_log_close(void)
{
  pthread_once(&log_once, log_once_init);
  pthread_mutex_lock(&log_lock);
  close_sink_inlock();
  pthread_mutex_unlock(&log_lock);
}

int akv_log_enabled(int level, unsigned cat)
{
  pthread_once(&log_once, log_once_init);
  if (level <= atomic_load_explicit(&log_level, memory_order_relaxed))
    return 1;
  return level == AKV_LOG_DEBUG &&
         (atomic_load_explicit(&log_debug_cats, memory_order_relaxed) & cat) != 0;
}

static const char *cat_name(unsigned cat)
{
  switch (cat) {
  case AKV_LOGC_HTTP:
    return "http";
  case AKV_LOGC_AUTH:
    return "auth";
  case AKV_LOGC_CACHE:
    return "cache";
  case AKV_LOGC_P11:
    return "p11";
  case AKV_LOGC_KV:
    return "kv";
  case AKV_LOGC_CONF:
    return "conf";
  default:
    return "gen";
  }
}

void akv_log(int level, unsigned cat, const char *fmt, ...)
{
  static const char *const lvl_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  static const int sys_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  char line[LOG_LINE_MAX];
  size_t off = 0;
  int n;
  va_list ap;
  struct timespec ts;
  struct akv_utc tm;

  if (!akv_log_enabled(level, cat))
    return;
  if (level < AKV_LOG_ERROR)
    level = AKV_LOG_ERROR;
  if (level > AKV_LOG_DEBUG)
    level = AKV_LOG_DEBUG;
  clock_gettime(CLOCK_REALTIME, &ts);
  akv_utc_from_epoch(ts.tv_sec, &tm); /* no gmtime_r: its lock may be held at a fork */
  n = snprintf(line, sizeof(line),
               "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ akv-pkcs11[%ld] %s %s: ", tm.year, tm.month,
               tm.day, tm.hour, tm.min, tm.sec, ts.tv_nsec / 1000000, (long)getpid(),
               lvl_names[level], cat_name(cat));
  if (n < 0)
    return;
  off = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
  va_start(ap, fmt);
  n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  off += (size_t)n;
  if (off > sizeof(line) - 2)
    off = sizeof(line) - 2; /* truncated */
  /* Control characters from remote data must not forge extra log lines. */
  for (size_t i = 0; i < off; i++)
    if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
      line[i] = ' ';
  line[off++] = '\n';
  line[off] = '\0';

  pthread_mutex_lock(&log_lock);
  if (log_syslog) {
    line[off - 1] = '\0';
    syslog(sys_prio[level], "%s", line);
  } else {
    int fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
    size_t done = 0;
    while (done < off) {
      ssize_t w = write(fd, line + done, off - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break;
      done += (size_t)w;
    }
  }
  pthread_mutex_unlock(&log_lock);
}
