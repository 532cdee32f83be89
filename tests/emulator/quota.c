/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quota.c - --quota N/S: each vault admits at most N authenticated cryptographic operations
 * (POST keys/{name}[/{version}]/{sign,verify,encrypt,decrypt,wrapkey,unwrapkey}) in any S seconds
 * (a sliding window, like the service's per-vault limit); beyond that 429 with the service's
 * body and a Retry-After of the seconds until the window frees (docs/emulator.md "Quota").
 * Throttled requests do not count against the window (as with Key Vault).
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define QUOTA_MAX_N 1000000
#define QUOTA_MAX_S 3600

struct quota_window {
  int64_t *t; /* admission times (ms, monotonic) of the last n operations, a ring */
  size_t head, len;
};

static pthread_mutex_t quota_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long quota_n, quota_s; /* 0 = off */
static struct quota_window quota_w[EMU_MAX_VAULTS];

static int64_t mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int quota_set(const char *spec, char *err, size_t errlen)
{
  unsigned long n, s;
  int used = 0;
  if (!spec || sscanf(spec, "%lu/%lu%n", &n, &s, &used) != 2 || (size_t)used != strlen(spec) ||
      spec[0] < '0' || spec[0] > '9' || n < 1 || n > QUOTA_MAX_N || s < 1 || s > QUOTA_MAX_S) {
    snprintf(err, errlen, "'%.40s' is not N/S (1-%d operations per 1-%d seconds)", spec ? spec : "",
             QUOTA_MAX_N, QUOTA_MAX_S);
    return -1;
  }
  pthread_mutex_lock(&quota_lock);
  for (size_t i = 0; i < EMU_MAX_VAULTS; i++) {
    free(quota_w[i].t);
    quota_w[i].t = NULL;
    quota_w[i].head = quota_w[i].len = 0;
  }
  quota_n = n;
  quota_s = s;
  pthread_mutex_unlock(&quota_lock);
  return 0;
}

void quota_free(void)
{
  pthread_mutex_lock(&quota_lock);
  for (size_t i = 0; i < EMU_MAX_VAULTS; i++) {
    free(quota_w[i].t);
    quota_w[i].t = NULL;
  }
  quota_n = 0;
  pthread_mutex_unlock(&quota_lock);
}

static bool crypto_op(const struct emu_req *req)
{
  static const char *const ops[] = {"sign", "verify", "encrypt", "decrypt", "wrapkey", "unwrapkey"};
  const char *op;
  if (strcmp(req->method, "POST") != 0 || strcmp(req->collection, "keys") != 0 ||
      (req->nseg != 2 && req->nseg != 3))
    return false;
  op = req->seg[req->nseg - 1];
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (strcasecmp(op, ops[i]) == 0)
      return true;
  return false;
}

/* Seconds until the window admits one more, 0 = admitted now (and counted). */
static long admit(struct quota_window *w, int64_t now)
{
  int64_t oldest;
  if (!w->t && !(w->t = calloc(quota_n, sizeof(*w->t))))
    return 0; /* out of memory: do not throttle on our own failure */
  if (w->len < quota_n) {
    w->t[(w->head + w->len) % quota_n] = now;
    w->len++;
    return 0;
  }
  oldest = w->t[w->head];
  if (oldest + (int64_t)quota_s * 1000 <= now) {
    w->t[w->head] = now;
    w->head = (w->head + 1) % quota_n;
    return 0;
  }
  /* whole seconds, rounded up: a client that waits that long is admitted */
  return (long)((oldest + (int64_t)quota_s * 1000 - now + 999) / 1000);
}

bool quota_throttle(const struct emu_req *req, struct emu_resp *resp)
{
  long wait = 0;
  size_t vi;
  if (!crypto_op(req))
    return false;
  vi = (size_t)(req->vault - emu_srv->vaults);
  pthread_mutex_lock(&quota_lock);
  if (quota_n && vi < EMU_MAX_VAULTS)
    wait = admit(&quota_w[vi], mono_ms());
  pthread_mutex_unlock(&quota_lock);
  if (!wait)
    return false;
  char ra[32];
  stats_throttled();
  emu_resp_error(resp, 429, "Throttled", NULL,
                 "Request was not processed because too many requests were received. Reason: "
                 "VaultRequestTypeLimitReached");
  snprintf(ra, sizeof(ra), "%ld", wait);
  emu_resp_header(resp, "Retry-After", ra);
  return true;
}
