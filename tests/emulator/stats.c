/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stats.c - request counters served at {stats_url}.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_MAX_OPS 128 /* distinct operation names kept; more are folded into "other" */

struct stat_entry {
  char name[48];
  uint64_t count;
};

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stat_entry stats_ops[STATS_MAX_OPS];
static size_t stats_nops;
static uint64_t stats_total;
static uint64_t stats_throttled_total; /* 429s of --quota */

#define STATS_MAX_LISTENERS (EMU_MAX_VAULTS + 2)
struct conn_entry {
  char name[32];
  uint64_t total; /* accepted since the last reset */
  int64_t open;   /* currently open (not reset) */
};
static struct conn_entry conns[STATS_MAX_LISTENERS];
static size_t nconns;

void stats_connection(const char *listener, bool opened)
{
  size_t i;
  pthread_mutex_lock(&stats_lock);
  for (i = 0; i < nconns; i++)
    if (strcmp(conns[i].name, listener) == 0)
      break;
  if (i == nconns && nconns < STATS_MAX_LISTENERS) {
    snprintf(conns[i].name, sizeof(conns[i].name), "%s", listener);
    conns[i].total = 0;
    conns[i].open = 0;
    nconns++;
  }
  if (i < nconns) {
    if (opened) {
      conns[i].total++;
      conns[i].open++;
    } else {
      conns[i].open--;
    }
  }
  pthread_mutex_unlock(&stats_lock);
}

void stats_init(void)
{
  stats_reset();
}

void stats_request(void)
{
  pthread_mutex_lock(&stats_lock);
  stats_total++;
  pthread_mutex_unlock(&stats_lock);
}

void stats_throttled(void)
{
  pthread_mutex_lock(&stats_lock);
  stats_throttled_total++;
  pthread_mutex_unlock(&stats_lock);
}

void emu_stats_count(const char *op)
{
  size_t i;
  if (!op || strlen(op) >= sizeof(stats_ops[0].name))
    op = "other";
  pthread_mutex_lock(&stats_lock);
  for (i = 0; i < stats_nops; i++)
    if (strcmp(stats_ops[i].name, op) == 0)
      break;
  if (i == stats_nops) {
    if (stats_nops == STATS_MAX_OPS) {
      i = STATS_MAX_OPS - 1; /* the last slot becomes the catch-all */
      memcpy(stats_ops[i].name, "other", sizeof("other"));
    } else {
      memset(stats_ops[i].name, 0, sizeof(stats_ops[i].name));
      memcpy(stats_ops[i].name, op, strlen(op));
      stats_ops[i].count = 0;
      stats_nops++;
    }
  }
  stats_ops[i].count++;
  pthread_mutex_unlock(&stats_lock);
}

void stats_reset(void)
{
  pthread_mutex_lock(&stats_lock);
  stats_nops = 0;
  stats_total = 0;
  stats_throttled_total = 0;
  for (size_t i = 0; i < nconns; i++)
    conns[i].total = 0;
  pthread_mutex_unlock(&stats_lock);
}

cJSON *stats_json_new(void)
{
  cJSON *root = cJSON_CreateObject(), *by;
  if (!root)
    return NULL;
  pthread_mutex_lock(&stats_lock);
  cJSON_AddNumberToObject(root, "requests_total", (double)stats_total);
  cJSON_AddNumberToObject(root, "throttled_total", (double)stats_throttled_total);
  by = cJSON_AddObjectToObject(root, "by_operation");
  for (size_t i = 0; by && i < stats_nops; i++)
    cJSON_AddNumberToObject(by, stats_ops[i].name, (double)stats_ops[i].count);
  uint64_t ctotal = 0;
  int64_t copen = 0;
  cJSON *bl = cJSON_AddObjectToObject(root, "connections_by_listener");
  for (size_t i = 0; i < nconns; i++) {
    ctotal += conns[i].total;
    copen += conns[i].open;
    cJSON *o = bl ? cJSON_AddObjectToObject(bl, conns[i].name) : NULL;
    if (o) {
      cJSON_AddNumberToObject(o, "total", (double)conns[i].total);
      cJSON_AddNumberToObject(o, "open", (double)conns[i].open);
    }
  }
  cJSON_AddNumberToObject(root, "connections_total", (double)ctotal);
  cJSON_AddNumberToObject(root, "connections_open", (double)copen);
  pthread_mutex_unlock(&stats_lock);
  if (!by) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

void stats_free(void)
{
  stats_reset();
}
