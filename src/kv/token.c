/* SPDX-License-Identifier: Apache-2.0 */
/* Token reply parsing and the refresh-ahead, single-flight token cache. */
#include "kv/token.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include "kv/json.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/utc.h"

#define TOKEN_MAX_LEN (16 * 1024)
#define REFRESH_AHEAD_MAX_S 300 /* refresh five minutes before expiry... */
#define EXPIRY_SKEW_S 10        /* ...and never use a token in its last seconds */
#define WAIT_MAX_S 120          /* bound on waiting for another thread's fetch */

static int64_t (*token_clock)(void);

void kv_token_set_clock(int64_t (*now)(void))
{
  token_clock = now;
}

int64_t kv_token_now(void)
{
  return token_clock ? token_clock() : (int64_t)time(NULL);
}

void kv_token_clear(struct kv_token *t)
{
  if (!t)
    return;
  kv_secure_free(t->value, 0);
  memset(t, 0, sizeof(*t));
}

void kv_secure_free(void *p, size_t len)
{
  if (!p)
    return;
  OPENSSL_cleanse(p, len ? len : strlen(p));
  free(p);
}

/* Numbers beyond this many seconds (31 million years) are not an expiry: bounding them keeps
 * now + expires_in and the refresh arithmetic far from int64_t overflow. */
#define NUM_MAX 1e15

/* Number or numeric string member within +-NUM_MAX; 1 = found. */
static int num_member(const cJSON *doc, const char *name, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
  char *end;
  long long ll;
  if (cJSON_IsNumber(v) && v->valuedouble > -NUM_MAX && v->valuedouble < NUM_MAX) {
    *out = (int64_t)v->valuedouble;
    return 1;
  }
  if (cJSON_IsString(v) && v->valuestring[0]) {
    errno = 0;
    ll = strtoll(v->valuestring, &end, 10);
    /* The same bound as for JSON numbers: "9223372036854775807" is a valid long long, and
     * now + expires_in would overflow. */
    if (!errno && *end == '\0' && ll > -(long long)NUM_MAX && ll < (long long)NUM_MAX) {
      *out = ll;
      return 1;
    }
  }
  return 0;
}

/* s starts with layout, where '9' stands for one ASCII digit and any other character for itself.
 * Compares one character at a time and stops at the first mismatch, so it never reads past the
 * string's NUL (which matches nothing in a layout). */
static int layout_ok(const char *s, const char *layout)
{
  for (; *layout; s++, layout++) {
    if (*layout == '9' ? (*s < '0' || *s > '9') : *s != *layout)
      return 0;
  }
  return 1;
}

/* The value of n digits already checked by layout_ok. */
static int digits_value(const char *s, int n)
{
  int v = 0;
  for (int i = 0; i < n; i++)
    v = v * 10 + (s[i] - '0');
  return v;
}

/* RFC 3339 "2024-01-02T03:04:05(.fff)(Z|+hh:mm|-hh:mm)": fixed-width fields of digits (no signs
 * or spaces inside them, which sscanf's %d would take), and a zone offset of exactly "hh:mm". */
static int parse_rfc3339(const char *s, int64_t *out)
{
  struct akv_utc u;
  int y, mo, d, h, mi, sec, oh = 0, om = 0;
  long off = 0;
  const char *p;
  if (!layout_ok(s, "9999-99-99") || (s[10] != 'T' && s[10] != 't') ||
      !layout_ok(s + 11, "99:99:99"))
    return 0;
  y = digits_value(s, 4);
  mo = digits_value(s + 5, 2);
  d = digits_value(s + 8, 2);
  h = digits_value(s + 11, 2);
  mi = digits_value(s + 14, 2);
  sec = digits_value(s + 17, 2);
  p = s + 19;
  if (*p == '.')
    for (p++; isdigit((unsigned char)*p); p++)
      ;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && layout_ok(p + 1, "99:99")) {
    oh = digits_value(p + 1, 2);
    om = digits_value(p + 4, 2);
    off = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
    p += 6; /* the sign and "hh:mm", all checked above */
  } else {
    return 0;
  }
  if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || oh > 23 ||
      om > 59)
    return 0;
  u.year = (int)y;
  u.month = (int)mo;
  u.day = (int)d;
  u.hour = (int)h;
  u.min = (int)mi;
  u.sec = (int)sec;
  *out = akv_utc_to_epoch(&u) - off; /* no timegm: its lock may be held at a fork */
  return 1;
}

/* az CLI "expiresOn": "2022-08-24 00:43:08.000000", local time without a zone. */
static int parse_local_time(const char *s, int64_t *out)
{
  struct tm tm;
  int y, mo, d, h, mi, sec, n = 0;
  time_t t;
  if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || !n)
    return 0;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  tm.tm_isdst = -1;
  t = mktime(&tm);
  if (t == (time_t)-1)
    return 0;
  *out = (int64_t)t;
  return 1;
}

static int date_member(const cJSON *doc, const char *name, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
  time_t t;
  if (num_member(doc, name, out))
    return 1;
  if (!cJSON_IsString(v))
    return 0;
  if (parse_rfc3339(v->valuestring, out) || parse_local_time(v->valuestring, out))
    return 1;
  t = curl_getdate(v->valuestring, NULL); /* RFC 1123 and friends */
  if (t != (time_t)-1) {
    *out = (int64_t)t;
    return 1;
  }
  return 0;
}

static int token_chars_ok(const char *t)
{
  /* The token goes into an HTTP header: anything outside visible ASCII could inject headers. */
  for (; *t; t++)
    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
      return 0;
  return 1;
}

kv_rc kv_token_parse(const char *json, size_t len, const char *token_field, int64_t now,
                     struct kv_token *out)
{
  cJSON *doc = NULL;
  const cJSON *tok, *type;
  int64_t v = 0, expires_on = 0, refresh_on = 0, lifetime;
  kv_rc rc = KV_E_PROTOCOL;
  memset(out, 0, sizeof(*out));
  doc = kv_json_parse(json, len, "token response");
  if (!doc)
    goto out;
  tok = cJSON_GetObjectItemCaseSensitive(doc, token_field);
  if (!cJSON_IsString(tok) || !tok->valuestring[0] || strlen(tok->valuestring) > TOKEN_MAX_LEN ||
      !token_chars_ok(tok->valuestring)) {
    akv_err(AKV_LOGC_AUTH, "token response: \"%s\" missing or not a usable token", token_field);
    goto out;
  }
  type = cJSON_GetObjectItemCaseSensitive(doc, "token_type");
  if (!type)
    type = cJSON_GetObjectItemCaseSensitive(doc, "tokenType");
  if (type && (!cJSON_IsString(type) || strcasecmp(type->valuestring, "Bearer") != 0)) {
    akv_err(AKV_LOGC_AUTH, "token response: token_type is not Bearer");
    goto out;
  }
  if (num_member(doc, "expires_in", &v) && v > 0)
    expires_on = now + v;
  else if (date_member(doc, "expires_on", &v) && v > 0)
    expires_on = v;
  else if (date_member(doc, "expiresOn", &v) && v > 0)
    expires_on = v;
  if (expires_on <= now) {
    akv_err(AKV_LOGC_AUTH, "token response: no usable expiry (expires_in/expires_on)");
    goto out;
  }
  lifetime = expires_on - now;
  if (num_member(doc, "refresh_in", &v) && v > 0 && v < lifetime)
    refresh_on = now + v;
  else
    refresh_on =
        expires_on - (lifetime / 2 < REFRESH_AHEAD_MAX_S ? lifetime / 2 : REFRESH_AHEAD_MAX_S);
  out->value = strdup(tok->valuestring);
  if (!out->value) {
    rc = KV_E_NOMEM;
    goto out;
  }
  out->expires_on = expires_on;
  out->refresh_on = refresh_on;
  rc = KV_OK;
out:
  if (doc) {
    /* The token is also inside the parsed tree: wipe it there before freeing. */
    tok = cJSON_GetObjectItemCaseSensitive(doc, token_field);
    if (cJSON_IsString(tok))
      OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
    cJSON_Delete(doc);
  }
  return rc;
}

/* ---- handed-out tokens -------------------------------------------------------------------------
 */

/* One allocation per fetched token: the counter, then the NUL-terminated value. The cache holds a
 * reference while the token is current; each request holds one while it builds its header. */
struct kv_token_ref {
  unsigned refs; /* atomic */
  size_t len;
  char value[];
};

/* A reference to a copy of t->value; t->value is wiped and freed either way. */
static struct kv_token_ref *token_ref_take(struct kv_token *t)
{
  size_t len = strlen(t->value);
  struct kv_token_ref *r = malloc(sizeof(*r) + len + 1);
  if (r) {
    r->refs = 1;
    r->len = len;
    memcpy(r->value, t->value, len + 1);
  }
  kv_secure_free(t->value, len);
  t->value = NULL;
  return r;
}

const char *kv_token_ref_str(const struct kv_token_ref *r)
{
  return r->value;
}

static struct kv_token_ref *token_ref_ref(struct kv_token_ref *r)
{
  __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
  return r;
}

void kv_token_ref_unref(struct kv_token_ref *r)
{
  if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  OPENSSL_cleanse(r->value, r->len);
  free(r);
}

/* ---- cache
 * --------------------------------------------------------------------------------------- */

struct entry {
  struct entry *next;
  const char *resource, *tenant; /* in names; tenant "" when none */
  struct kv_token_ref *tok;      /* current token, NULL before the first fetch */
  int64_t expires_on, refresh_on;
  int refreshing;
  unsigned generation; /* bumped on every completed fetch */
  kv_rc last_rc;
  char names[]; /* resource NUL tenant NUL */
};

struct kv_token_cache {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct entry *entries;
};

struct kv_token_cache *kv_token_cache_new(void)
{
  struct kv_token_cache *c = calloc(1, sizeof(*c));
  pthread_condattr_t ca;
  if (!c)
    return NULL;
  pthread_mutex_init(&c->lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);
  return c;
}

void kv_token_cache_free(struct kv_token_cache *c)
{
  struct entry *e, *n;
  if (!c)
    return;
  for (e = c->entries; e; e = n) {
    n = e->next;
    kv_token_ref_unref(e->tok);
    free(e);
  }
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* The entry for (resource, tenant), created empty when missing. Compared field by field: no key
 * is formatted per request. */
static struct entry *entry_get_inlock(struct kv_token_cache *c, const char *resource,
                                      const char *tenant)
{
  struct entry *e;
  size_t rl, tl;
  for (e = c->entries; e; e = e->next)
    if (strcmp(e->resource, resource) == 0 && strcmp(e->tenant, tenant) == 0)
      return e;
  rl = strlen(resource);
  tl = strlen(tenant);
  e = calloc(1, sizeof(*e) + rl + tl + 2);
  if (!e)
    return NULL;
  memcpy(e->names, resource, rl + 1);
  memcpy(e->names + rl + 1, tenant, tl + 1);
  e->resource = e->names;
  e->tenant = e->names + rl + 1;
  e->next = c->entries;
  c->entries = e;
  return e;
}

/* A token is not used in its last seconds (clock skew, time in flight); for a token that lives
 * less than that margin (a managed identity endpoint may hand out one close to its expiry, or a
 * short-lived test token) the margin shrinks to half of its refresh-ahead window, so a token that
 * was just fetched is always usable and short tokens do not cost a fetch per call. */
static int usable(const struct entry *e, int64_t now)
{
  int64_t skew = EXPIRY_SKEW_S, window = e->expires_on - e->refresh_on;
  if (window / 2 < skew)
    skew = window > 0 ? window / 2 : 0;
  return e->tok && now < e->expires_on - skew;
}

struct kv_token_ref *kv_token_cache_peek(struct kv_token_cache *c, const char *resource,
                                         const char *tenant)
{
  struct kv_token_ref *r = NULL;
  const struct entry *e;
  pthread_mutex_lock(&c->lock);
  for (e = c->entries; e; e = e->next)
    if (strcmp(e->resource, resource) == 0 && strcmp(e->tenant, tenant ? tenant : "") == 0) {
      if (e->tok)
        r = token_ref_ref(e->tok);
      break;
    }
  pthread_mutex_unlock(&c->lock);
  return r;
}

kv_rc kv_token_cache_get(struct kv_token_cache *c, const char *resource, const char *tenant,
                         int force, kv_token_fetch_fn fetch, void *ctx, struct kv_token_ref **token)
{
  struct entry *e;
  struct kv_token fresh = {NULL, 0, 0};
  struct kv_token_ref *ref = NULL;
  unsigned start_gen;
  int64_t now;
  kv_rc rc = KV_E_NOMEM;
  *token = NULL;
  pthread_mutex_lock(&c->lock);
  e = entry_get_inlock(c, resource, tenant ? tenant : "");
  if (!e)
    goto unlock;
  start_gen = e->generation;
  for (;;) {
    now = kv_token_now();
    /* A forced refresh is satisfied by any fetch that completed after the caller asked. */
    if (usable(e, now) &&
        ((!force && now < e->refresh_on) || (force && e->generation != start_gen))) {
      *token = token_ref_ref(e->tok);
      rc = KV_OK;
      goto unlock;
    }
    if (!e->refreshing)
      break;
    if (force && e->generation != start_gen) {
      rc = e->last_rc != KV_OK ? e->last_rc : KV_E_AUTH;
      goto unlock;
    }
    /* Someone else is fetching: keep using a still-valid token rather than queueing. */
    if (!force && usable(e, now)) {
      *token = token_ref_ref(e->tok);
      rc = KV_OK;
      goto unlock;
    }
    {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += WAIT_MAX_S;
      unsigned gen = e->generation;
      while (e->refreshing && e->generation == gen)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT) {
          rc = KV_E_TIMEOUT;
          goto unlock;
        }
      /* The fetch we waited for failed: report it. When it succeeded but the token is
       * already unusable, the loop fetches again. */
      if (!force && !usable(e, kv_token_now()) && e->last_rc != KV_OK) {
        rc = e->last_rc;
        goto unlock;
      }
    }
  }
  e->refreshing = 1;
  pthread_mutex_unlock(&c->lock);

  memset(&fresh, 0, sizeof(fresh));
  rc = fetch(ctx, resource, tenant, &fresh);
  /* Copied into its counted form outside the lock; the fetched string is wiped here. */
  if (rc == KV_OK && !fresh.value)
    rc = KV_E_PROTOCOL; /* a source that reports success without a token */
  else if (rc == KV_OK && !(ref = token_ref_take(&fresh)))
    rc = KV_E_NOMEM;

  pthread_mutex_lock(&c->lock);
  e->refreshing = 0;
  e->generation++;
  e->last_rc = rc;
  if (rc == KV_OK) {
    kv_token_ref_unref(e->tok); /* wiped now unless a request still holds it */
    e->tok = ref;
    e->expires_on = fresh.expires_on;
    e->refresh_on = fresh.refresh_on;
    akv_dbg(AKV_LOGC_AUTH, "token for %s cached, expires in %lld s, refresh in %lld s", resource,
            (long long)(e->expires_on - kv_token_now()),
            (long long)(e->refresh_on - kv_token_now()));
  } else if (!force && usable(e, kv_token_now())) {
    /* Refresh ahead failed but the old token still works: use it, try again next time. */
    akv_warn(AKV_LOGC_AUTH,
             "token refresh for %s failed (%s); using the cached token until it "
             "expires",
             resource, kv_rc_str(rc));
    rc = KV_OK;
  }
  if (rc == KV_OK)
    *token = token_ref_ref(e->tok);
  pthread_cond_broadcast(&c->cond);
unlock:
  pthread_mutex_unlock(&c->lock);
  kv_token_clear(&fresh);
  return rc;
}

/* ---- who a token names ---------------------------------------------------------------------- */

/* Claim name of payload into dst (KV_CLAIM_MAX + 1 bytes) when it is a string of 1 to KV_CLAIM_MAX
 * characters of [0-9A-Za-z._-]; 1 when copied. */
static int claim_copy(const cJSON *payload, const char *name, char *dst)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(payload, name);
  const char *v = cJSON_IsString(it) ? it->valuestring : NULL;
  size_t n;
  if (!v)
    return 0;
  for (n = 0; v[n]; n++)
    if (n >= KV_CLAIM_MAX || !(isalnum((unsigned char)v[n]) || strchr("._-", v[n])))
      return 0;
  if (!n)
    return 0;
  memcpy(dst, v, n + 1);
  return 1;
}

int kv_token_principal(const char *token, struct kv_principal *out)
{
  const char *p, *q;
  unsigned char *json = NULL;
  size_t len = 0;
  cJSON *payload = NULL;

  memset(out, 0, sizeof(*out));
  /* header.payload.signature: the payload is the second part, base64url without padding. */
  if (!token || strnlen(token, TOKEN_MAX_LEN + 1) > TOKEN_MAX_LEN || !(p = strchr(token, '.')) ||
      !(q = strchr(++p, '.')) || q == p || strchr(q + 1, '.'))
    return 0;
  if (akv_b64url_decode(p, (size_t)(q - p), &json, &len) != 0)
    return 0;
  /* A string with an escaped NUL would end there: "a\u0000b" must not read as "a". */
  if (!memmem(json, len, "\\u0000", 6))
    payload = cJSON_ParseWithLength((const char *)json, len);
  if (cJSON_IsObject(payload)) {
    claim_copy(payload, "tid", out->tid);
    claim_copy(payload, "oid", out->oid);
    if (!claim_copy(payload, "appid", out->app))
      claim_copy(payload, "azp", out->app);
  }
  cJSON_Delete(payload);
  OPENSSL_cleanse(json, len);
  free(json);
  return out->tid[0] && out->oid[0];
}
