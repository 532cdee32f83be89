/* SPDX-License-Identifier: Apache-2.0 */
/* Audit lines: JSON built with cJSON (so names are escaped), one write(2) per line on an O_APPEND
 * descriptor so lines from several threads or processes never interleave. The lock is fork-safe
 * (akv_fork_lock): a child never inherits it held by a thread that does not exist there; nothing
 * else is locked or logged while it is held. */
#include "util/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "util/log.h"

static struct akv_fork_lock audit_lock = AKV_FORK_LOCK_INIT;
static int audit_fd = -1;

int akv_audit_open(const char *path)
{
  int fd = -1;
  if (path && *path) {
    char why[512];
    fd = akv_open_own_file(path, why, sizeof(why));
    if (fd < 0) {
      akv_err(AKV_LOGC_GEN, "cannot open audit file %s: %s", path, why);
      return -1;
    }
  }
  akv_fork_lock_take(&audit_lock);
  if (audit_fd >= 0)
    close(audit_fd);
  audit_fd = fd;
  akv_fork_lock_give(&audit_lock);
  return 0;
}

void akv_audit_close(void)
{
  akv_audit_open(NULL);
}

int akv_audit_enabled(void)
{
  int on;
  akv_fork_lock_take(&audit_lock);
  on = audit_fd >= 0;
  akv_fork_lock_give(&audit_lock);
  return on;
}

static int add_opt(cJSON *o, const char *k, const char *v)
{
  if (!v)
    return cJSON_AddNullToObject(o, k) != NULL;
  return cJSON_AddStringToObject(o, k, v) != NULL;
}

static const char *(*outcome_mapper)(const char *outcome);

void akv_audit_set_outcome_mapper(const char *(*fn)(const char *outcome))
{
  akv_fork_lock_take(&audit_lock);
  outcome_mapper = fn;
  akv_fork_lock_give(&audit_lock);
}

/* The object's identifier as the service writes it: {vault}/{keys|secrets|certificates}/{name}[/{version}]. */
static int add_kid(cJSON *o, const struct akv_audit_event *ev)
{
  char kid[1024];
  const char *dot = ev->operation ? strchr(ev->operation, '.') : NULL;
  int n;
  if (!ev->vault || !ev->name || !dot)
    return cJSON_AddNullToObject(o, "kid") != NULL;
  n = snprintf(kid, sizeof(kid), "%s/%.*s/%s%s%s", ev->vault, (int)(dot - ev->operation),
               ev->operation, ev->name, ev->version ? "/" : "", ev->version ? ev->version : "");
  if (n < 0 || (size_t)n >= sizeof(kid))
    return cJSON_AddNullToObject(o, "kid") != NULL;
  return cJSON_AddStringToObject(o, "kid", kid) != NULL;
}

void akv_audit_record(const struct akv_audit_event *ev)
{
  const char *(*mapper)(const char *);
  cJSON *o = NULL;
  char *line = NULL;
  char ts[96];
  struct timespec now;
  struct tm tm;
  size_t len;
  if (!ev || !akv_audit_enabled())
    return;
  akv_fork_lock_take(&audit_lock);
  mapper = outcome_mapper;
  akv_fork_lock_give(&audit_lock);
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
  o = cJSON_CreateObject();
  if (!o || !cJSON_AddStringToObject(o, "time", ts) ||
      !cJSON_AddNumberToObject(o, "pid", (double)getpid()) ||
      !add_opt(o, "process", program_invocation_short_name) ||
      !add_opt(o, "producer", "akv-pkcs11/" AKV_VERSION) || !add_opt(o, "vault", ev->vault) ||
      !add_opt(o, "operation", ev->operation) || !add_kid(o, ev) || !add_opt(o, "name", ev->name) ||
      !add_opt(o, "version", ev->version) || !add_opt(o, "alg", ev->alg) ||
      !add_opt(o, "outcome", ev->outcome) ||
      !add_opt(o, "ck_rv", mapper && ev->outcome ? mapper(ev->outcome) : NULL) ||
      !cJSON_AddNumberToObject(o, "http_status", (double)ev->http_status) ||
      !cJSON_AddNumberToObject(o, "latency_ms", (double)ev->latency_ms) ||
      !add_opt(o, "client_request_id", ev->client_request_id) ||
      !add_opt(o, "request_id", ev->request_id && *ev->request_id ? ev->request_id : NULL))
    goto out;
  line = cJSON_PrintUnformatted(o);
  if (!line)
    goto out;
  len = strlen(line);
  {
    char *nl = realloc(line, len + 2);
    if (!nl)
      goto out;
    line = nl;
  }
  line[len++] = '\n';
  line[len] = '\0';
  {
    ssize_t w = (ssize_t)len;
    int e = 0;
    akv_fork_lock_take(&audit_lock);
    if (audit_fd >= 0) {
      do
        w = write(audit_fd, line, len);
      while (w < 0 && errno == EINTR);
      e = errno;
    }
    akv_fork_lock_give(&audit_lock);
    if (w != (ssize_t)len)
      akv_warn(AKV_LOGC_GEN, "audit line not fully written: %s",
               w < 0 ? strerror(e) : "short write");
  }
out:
  free(line);
  cJSON_Delete(o);
}
