/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faults.c - deterministic fault injection on the vault data plane.
 *
 * SPEC  := ITEM ((',' | ';' | ' ') ITEM)*      empty SPEC clears all faults
 * ITEM  := KIND [':' ARG] ['@' N] ['#' MAX]
 *   N   = fire on every Nth counted request (default 1 = every request)
 *   MAX = fire at most MAX times (default unlimited)
 * KIND  := 429 (ARG = Retry-After seconds, default 1) | 429-noretry
 *        | 429-date (ARG = seconds, default 1; Retry-After as an HTTP-date) | 500 | 502 | 503 | 504
 *        | latency (ARG = ms, required) | drop | truncate | badjson
 *        | token-expired (counts bearer checks) | token-ttl (ARG = seconds; not counted)
 *        | token-revoke (counts bearer checks; revokes every token issued so far)
 * Counters count authenticated data-plane requests since the spec was set.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULTS_MAX 16

enum fkind {
  FK_STATUS,
  FK_LATENCY,
  FK_DROP,
  FK_TRUNCATE,
  FK_BADJSON,
  FK_TOKEN_EXPIRED,
  FK_TOKEN_TTL,
  FK_TOKEN_REVOKE,
};

struct fault {
  enum fkind kind;
  unsigned status;
  long arg; /* retry-after s (-1 none) / latency ms / ttl s */
  unsigned long every;
  unsigned long max;   /* 0 = unlimited */
  unsigned long count; /* requests seen */
  unsigned long fired;
  bool date; /* 429-date: Retry-After as an HTTP-date */
  char text[48];
};

static pthread_mutex_t faults_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults[FAULTS_MAX];
static size_t nfaults;

static int parse_ulong(const char *s, size_t len, unsigned long lo, unsigned long hi,
                       unsigned long *out)
{
  char buf[24];
  char *end = NULL;
  if (len == 0 || len >= sizeof(buf))
    return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (buf[0] < '0' || buf[0] > '9')
    return -1;
  unsigned long v = strtoul(buf, &end, 10);
  if (*end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int parse_item(const char *s, size_t len, struct fault *f, char *err, size_t errlen)
{
  const char *colon = memchr(s, ':', len), *at = memchr(s, '@', len), *hash = memchr(s, '#', len);
  const char *kend = s + len;
  unsigned long v;
  bool has_arg = colon != NULL;
  memset(f, 0, sizeof(*f));
  f->every = 1;
  f->arg = -1;
  if (colon && colon < kend)
    kend = colon;
  if (at && at < kend)
    kend = at;
  if (hash && hash < kend)
    kend = hash;
  size_t klen = (size_t)(kend - s);
  snprintf(f->text, sizeof(f->text), "%.*s", (int)(len < 47 ? len : 47), s);
#define KIS(k) (klen == strlen(k) && memcmp(s, k, klen) == 0)
  if (KIS("429")) {
    f->kind = FK_STATUS;
    f->status = 429;
    f->arg = 1;
  } else if (KIS("429-date")) {
    f->kind = FK_STATUS;
    f->status = 429;
    f->arg = 1;
    f->date = true;
  } else if (KIS("429-noretry")) {
    f->kind = FK_STATUS;
    f->status = 429;
  } else if (KIS("500") || KIS("502") || KIS("503") || KIS("504")) {
    f->kind = FK_STATUS;
    f->status = (unsigned)strtoul(s, NULL, 10);
  } else if (KIS("latency")) {
    f->kind = FK_LATENCY;
  } else if (KIS("drop")) {
    f->kind = FK_DROP;
  } else if (KIS("truncate")) {
    f->kind = FK_TRUNCATE;
  } else if (KIS("badjson")) {
    f->kind = FK_BADJSON;
  } else if (KIS("token-expired")) {
    f->kind = FK_TOKEN_EXPIRED;
  } else if (KIS("token-ttl")) {
    f->kind = FK_TOKEN_TTL;
  } else if (KIS("token-revoke")) {
    f->kind = FK_TOKEN_REVOKE;
  } else {
    snprintf(err, errlen, "unknown fault kind '%.*s'", (int)klen, s);
    return -1;
  }
#undef KIS
  if (has_arg) {
    const char *a = colon + 1, *e = s + len;
    if (at && at > colon && at < e)
      e = at;
    if (hash && hash > colon && hash < e)
      e = hash;
    bool arg_ok = (f->kind == FK_STATUS && f->status == 429 && f->arg == 1) ||
                  f->kind == FK_LATENCY || f->kind == FK_TOKEN_TTL;
    if (!arg_ok ||
        parse_ulong(a, (size_t)(e - a), f->kind == FK_TOKEN_TTL ? 1 : 0, 600000, &v) != 0) {
      snprintf(err, errlen, "bad argument in fault '%s'", f->text);
      return -1;
    }
    f->arg = (long)v;
  } else if (f->kind == FK_LATENCY || f->kind == FK_TOKEN_TTL) {
    snprintf(err, errlen, "fault '%s' needs ':ARG'", f->text);
    return -1;
  }
  if (at) {
    const char *a = at + 1, *e = s + len;
    if (hash && hash > at)
      e = hash;
    if (parse_ulong(a, (size_t)(e - a), 1, 1000000000UL, &f->every) != 0) {
      snprintf(err, errlen, "bad '@N' in fault '%s'", f->text);
      return -1;
    }
  }
  if (hash) {
    const char *a = hash + 1, *e = s + len;
    if (at && at > hash)
      e = at;
    if (parse_ulong(a, (size_t)(e - a), 1, 1000000000UL, &f->max) != 0) {
      snprintf(err, errlen, "bad '#MAX' in fault '%s'", f->text);
      return -1;
    }
  }
  return 0;
}

int faults_set(const char *spec, char *err, size_t errlen)
{
  struct fault tmp[FAULTS_MAX];
  size_t n = 0, i = 0, len = strlen(spec);
  while (i < len) {
    while (i < len && (spec[i] == ',' || spec[i] == ';' || spec[i] == ' ' || spec[i] == '\n' ||
                       spec[i] == '\t' || spec[i] == '\r'))
      i++;
    size_t start = i;
    while (i < len && !(spec[i] == ',' || spec[i] == ';' || spec[i] == ' ' || spec[i] == '\n' ||
                        spec[i] == '\t' || spec[i] == '\r'))
      i++;
    if (i == start)
      break;
    if (n == FAULTS_MAX) {
      snprintf(err, errlen, "at most %d faults", FAULTS_MAX);
      return -1;
    }
    if (parse_item(spec + start, i - start, &tmp[n], err, errlen) != 0)
      return -1;
    n++;
  }
  pthread_mutex_lock(&faults_lock);
  memcpy(faults, tmp, n * sizeof(tmp[0]));
  nfaults = n;
  pthread_mutex_unlock(&faults_lock);
  return 0;
}

/* JSON forms: "SPEC", {"spec":"SPEC"}, [{"kind":"429","arg":2,"every":3,"max":1}, ...] */
int faults_set_json(const cJSON *json, char *err, size_t errlen)
{
  char spec[FAULTS_MAX * 64] = "";
  size_t len = 0;
  if (cJSON_IsString(json))
    return faults_set(json->valuestring, err, errlen);
  if (cJSON_IsObject(json)) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(json, "spec");
    if (!cJSON_IsString(s)) {
      snprintf(err, errlen, "expected {\"spec\":\"...\"}");
      return -1;
    }
    return faults_set(s->valuestring, err, errlen);
  }
  if (!cJSON_IsArray(json) || cJSON_GetArraySize(json) > FAULTS_MAX) {
    snprintf(err, errlen, "expected a spec string, {\"spec\":...} or an array of faults");
    return -1;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, json)
  {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(it, "kind");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, "arg");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(it, "every");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "max");
    if (!cJSON_IsString(k) || strlen(k->valuestring) > 20 || (a && !cJSON_IsNumber(a)) ||
        (e && !cJSON_IsNumber(e)) || (m && !cJSON_IsNumber(m))) {
      snprintf(err, errlen, "fault objects need \"kind\" (string) and numeric arg/every/max");
      return -1;
    }
    len += (size_t)snprintf(spec + len, sizeof(spec) - len, "%s%s", len ? "," : "", k->valuestring);
    if (a)
      len += (size_t)snprintf(spec + len, sizeof(spec) - len, ":%.0f", a->valuedouble);
    if (e)
      len += (size_t)snprintf(spec + len, sizeof(spec) - len, "@%.0f", e->valuedouble);
    if (m)
      len += (size_t)snprintf(spec + len, sizeof(spec) - len, "#%.0f", m->valuedouble);
    if (len >= sizeof(spec)) {
      snprintf(err, errlen, "fault list too long");
      return -1;
    }
  }
  return faults_set(spec, err, errlen);
}

static bool fires_inlock(struct fault *f)
{
  f->count++;
  if (f->count % f->every != 0 || (f->max && f->fired >= f->max))
    return false;
  f->fired++;
  return true;
}

void faults_decide(struct fault_decision *d)
{
  memset(d, 0, sizeof(*d));
  d->retry_after = -1;
  pthread_mutex_lock(&faults_lock);
  for (size_t i = 0; i < nfaults; i++) {
    struct fault *f = &faults[i];
    if (f->kind == FK_TOKEN_EXPIRED || f->kind == FK_TOKEN_TTL || f->kind == FK_TOKEN_REVOKE)
      continue;
    if (!fires_inlock(f))
      continue;
    switch (f->kind) {
    case FK_STATUS:
      if (!d->status) {
        d->status = f->status;
        d->retry_after = (int)f->arg;
        d->retry_after_date = f->date;
      }
      break;
    case FK_LATENCY:
      d->latency_ms += (unsigned)f->arg;
      break;
    case FK_DROP:
      d->drop = true;
      break;
    case FK_TRUNCATE:
      d->truncate = true;
      break;
    case FK_BADJSON:
      d->badjson = true;
      break;
    default:
      break;
    }
  }
  pthread_mutex_unlock(&faults_lock);
}

/* Count one bearer check for every fault of `kind`; true when one fires. */
static bool token_fault_fires(enum fkind kind)
{
  bool out = false;
  pthread_mutex_lock(&faults_lock);
  for (size_t i = 0; i < nfaults; i++)
    if (faults[i].kind == kind && fires_inlock(&faults[i]))
      out = true;
  pthread_mutex_unlock(&faults_lock);
  return out;
}

bool faults_token_expired(void)
{
  return token_fault_fires(FK_TOKEN_EXPIRED);
}

bool faults_token_revoke(void)
{
  return token_fault_fires(FK_TOKEN_REVOKE);
}

int faults_token_ttl(void)
{
  int ttl = -1;
  pthread_mutex_lock(&faults_lock);
  for (size_t i = 0; i < nfaults; i++)
    if (faults[i].kind == FK_TOKEN_TTL)
      ttl = (int)faults[i].arg;
  pthread_mutex_unlock(&faults_lock);
  return ttl;
}

cJSON *faults_json_new(void)
{
  cJSON *root = cJSON_CreateObject(), *arr;
  if (!root || !(arr = cJSON_AddArrayToObject(root, "faults"))) {
    cJSON_Delete(root);
    return NULL;
  }
  pthread_mutex_lock(&faults_lock);
  for (size_t i = 0; i < nfaults; i++) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
      break;
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "spec", faults[i].text);
    cJSON_AddNumberToObject(o, "seen", (double)faults[i].count);
    cJSON_AddNumberToObject(o, "fired", (double)faults[i].fired);
  }
  pthread_mutex_unlock(&faults_lock);
  return root;
}

void faults_free(void)
{
  pthread_mutex_lock(&faults_lock);
  nfaults = 0;
  pthread_mutex_unlock(&faults_lock);
}
