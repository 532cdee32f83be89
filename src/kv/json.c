/* SPDX-License-Identifier: Apache-2.0 */
/* Strict, capped access to service JSON. */
#include "kv/json.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "util/b64.h"
#include "util/log.h"

#define MAX_TAGS 64
#define MAX_TAG_LEN 512

cJSON *kv_json_parse(const char *data, size_t len, const char *ctx)
{
  const char *end = NULL;
  cJSON *doc;
  if (!data || !len) {
    akv_err(AKV_LOGC_KV, "%s: empty response body where JSON was expected", ctx);
    return NULL;
  }
  doc = cJSON_ParseWithLengthOpts(data, len, &end, 0);
  if (!doc) {
    akv_err(AKV_LOGC_KV, "%s: response is not valid JSON (error near byte %ld of %zu)", ctx,
            end ? (long)(end - data) : -1L, len);
    return NULL;
  }
  /* Whitespace after the document is fine; anything else means a mangled response. */
  if (end) {
    while ((size_t)(end - data) < len && isspace((unsigned char)*end))
      end++;
    if ((size_t)(end - data) < len && *end) {
      akv_err(AKV_LOGC_KV, "%s: trailing data after the JSON document", ctx);
      cJSON_Delete(doc);
      return NULL;
    }
  }
  if (!cJSON_IsObject(doc)) {
    akv_err(AKV_LOGC_KV, "%s: response JSON is not an object", ctx);
    cJSON_Delete(doc);
    return NULL;
  }
  return doc;
}

kv_rc kv_json_str(const cJSON *obj, const char *name, int required, size_t max_len,
                  const char **out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) {
    if (!required)
      return KV_OK;
    akv_err(AKV_LOGC_KV, "response: required member \"%s\" is missing", name);
    return KV_E_PROTOCOL;
  }
  if (!cJSON_IsString(v) || !v->valuestring) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" must be a string", name);
    return KV_E_PROTOCOL;
  }
  if (strlen(v->valuestring) > max_len) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" is longer than %zu bytes", name, max_len);
    return KV_E_PROTOCOL;
  }
  *out = v->valuestring;
  return KV_OK;
}

kv_rc kv_json_dup(const cJSON *obj, const char *name, int required, size_t max_len, char **out)
{
  const char *s;
  kv_rc rc = kv_json_str(obj, name, required, max_len, &s);
  *out = NULL;
  if (rc != KV_OK || !s)
    return rc;
  *out = strdup(s);
  return *out ? KV_OK : KV_E_NOMEM;
}

kv_rc kv_json_b64url(const cJSON *obj, const char *name, int required, size_t max_bytes,
                     unsigned char **out, size_t *len)
{
  const char *s;
  kv_rc rc;
  *out = NULL;
  *len = 0;
  /* base64url of max_bytes is at most 4/3 of it (+3). */
  rc = kv_json_str(obj, name, required, max_bytes / 3 * 4 + 4, &s);
  if (rc != KV_OK || !s)
    return rc;
  if (akv_b64url_decode(s, (size_t)-1, out, len) != 0) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" is not valid base64url", name);
    return KV_E_PROTOCOL;
  }
  if (*len > max_bytes) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" decodes to %zu bytes (at most %zu)", name, *len,
            max_bytes);
    OPENSSL_cleanse(*out, *len);
    free(*out);
    *out = NULL;
    *len = 0;
    return KV_E_PROTOCOL;
  }
  return KV_OK;
}

kv_rc kv_json_int64(const cJSON *obj, const char *name, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  double d;
  if (!v || cJSON_IsNull(v))
    return KV_OK;
  if (!cJSON_IsNumber(v)) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" must be a number", name);
    return KV_E_PROTOCOL;
  }
  d = v->valuedouble;
  if (d != d || d < -9.0e15 || d > 9.0e15) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" is out of range", name);
    return KV_E_PROTOCOL;
  }
  *out = (int64_t)d;
  return KV_OK;
}

kv_rc kv_json_bool(const cJSON *obj, const char *name, int *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (!v || cJSON_IsNull(v))
    return KV_OK;
  if (!cJSON_IsBool(v)) {
    akv_err(AKV_LOGC_KV, "response: member \"%s\" must be true or false", name);
    return KV_E_PROTOCOL;
  }
  *out = cJSON_IsTrue(v);
  return KV_OK;
}

void kv_attrs_clear(struct kv_attrs *a)
{
  for (size_t i = 0; a->tags && i < a->n_tags; i++) {
    free(a->tags[i].name);
    free(a->tags[i].value);
  }
  free(a->tags);
  memset(a, 0, sizeof(*a));
}

kv_rc kv_json_attrs(const cJSON *bundle, struct kv_attrs *a)
{
  const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(bundle, "attributes");
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(bundle, "tags");
  const cJSON *t;
  kv_rc rc;
  memset(a, 0, sizeof(*a));
  a->enabled = 1;
  if (attrs && !cJSON_IsNull(attrs)) {
    if (!cJSON_IsObject(attrs)) {
      akv_err(AKV_LOGC_KV, "response: \"attributes\" must be an object");
      return KV_E_PROTOCOL;
    }
    if ((rc = kv_json_bool(attrs, "enabled", &a->enabled)) != KV_OK ||
        (rc = kv_json_int64(attrs, "nbf", &a->nbf)) != KV_OK ||
        (rc = kv_json_int64(attrs, "exp", &a->exp)) != KV_OK ||
        (rc = kv_json_int64(attrs, "created", &a->created)) != KV_OK ||
        (rc = kv_json_int64(attrs, "updated", &a->updated)) != KV_OK ||
        (rc = kv_json_bool(attrs, "exportable", &a->exportable)) != KV_OK)
      return rc;
  }
  if ((rc = kv_json_bool(bundle, "managed", &a->managed)) != KV_OK)
    return rc;
  if (!tags || cJSON_IsNull(tags))
    return KV_OK;
  if (!cJSON_IsObject(tags)) {
    akv_err(AKV_LOGC_KV, "response: \"tags\" must be an object");
    return KV_E_PROTOCOL;
  }
  if (cJSON_GetArraySize(tags) > MAX_TAGS) {
    akv_err(AKV_LOGC_KV, "response: more than %d tags", MAX_TAGS);
    return KV_E_PROTOCOL;
  }
  a->tags = calloc((size_t)cJSON_GetArraySize(tags) + 1, sizeof(*a->tags));
  if (!a->tags)
    return KV_E_NOMEM;
  cJSON_ArrayForEach(t, tags)
  {
    if (!cJSON_IsString(t) || strlen(t->string) > MAX_TAG_LEN ||
        strlen(t->valuestring) > MAX_TAG_LEN) {
      akv_err(AKV_LOGC_KV, "response: tag values must be strings of at most %d bytes", MAX_TAG_LEN);
      kv_attrs_clear(a);
      return KV_E_PROTOCOL;
    }
    a->tags[a->n_tags].name = strdup(t->string);
    a->tags[a->n_tags].value = strdup(t->valuestring);
    a->n_tags++;
    if (!a->tags[a->n_tags - 1].name || !a->tags[a->n_tags - 1].value) {
      kv_attrs_clear(a);
      return KV_E_NOMEM;
    }
  }
  return KV_OK;
}

int kv_valid_name(const char *name)
{
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len > 127)
    return 0;
  /* ASCII letters and digits whatever the host's locale (isalnum would follow it). */
  for (size_t i = 0; i < len; i++)
    if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'z') ||
          (name[i] >= 'A' && name[i] <= 'Z') || name[i] == '-'))
      return 0;
  return 1;
}

int kv_valid_version(const char *version)
{
  size_t len = version ? strlen(version) : 0;
  if (len == 0 || len > 64)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)version[i]))
      return 0;
  return 1;
}

kv_rc kv_parse_id(const char *id, const char *collection, char **name, char **version)
{
  CURLU *u = NULL;
  char *path = NULL;
  char *n = NULL, *v = NULL;
  const char *p, *seg;
  size_t cl = strlen(collection), len;
  kv_rc rc = KV_E_PROTOCOL;
  *name = NULL;
  *version = NULL;
  if (!id || strlen(id) > 2048)
    goto bad;
  u = curl_url();
  if (!u) {
    rc = KV_E_NOMEM;
    goto out;
  }
  if (curl_url_set(u, CURLUPART_URL, id, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
    goto bad;
  p = path;
  if (*p != '/' || strncasecmp(p + 1, collection, cl) != 0 || p[cl + 1] != '/')
    goto bad;
  seg = p + cl + 2;
  len = strcspn(seg, "/");
  n = strndup(seg, len);
  if (!n) {
    rc = KV_E_NOMEM;
    goto out;
  }
  seg += len;
  if (*seg == '/' && seg[1]) {
    seg++;
    len = strcspn(seg, "/");
    if (seg[len] != '\0' && strcmp(seg + len, "/") != 0)
      goto bad;
    v = strndup(seg, len);
    if (!v) {
      rc = KV_E_NOMEM;
      goto out;
    }
  }
  if (!kv_valid_name(n) || (v && !kv_valid_version(v)))
    goto bad;
  *name = n;
  *version = v;
  n = v = NULL;
  rc = KV_OK;
  goto out;
bad:
  akv_err(AKV_LOGC_KV, "response: \"%.200s\" is not a %s identifier", id ? id : "(null)",
          collection);
out:
  free(n);
  free(v);
  curl_free(path);
  curl_url_cleanup(u);
  return rc;
}

/* ---- fast path for small replies ----------------------------------------------------------- */

/* A strict RFC 8259 scanner used only to decide whether a reply can skip the cJSON tree. Every
 * doubt answers "no" and the caller parses with cJSON, so this never accepts what cJSON would
 * reject: RFC whitespace only, no raw control characters in strings, no lone surrogates, numbers
 * in RFC form and at most 63 characters (cJSON reads numbers through a 64-byte buffer), nesting
 * at most FAST_MAX_DEPTH. */
#define FAST_MAX_DEPTH 32

struct fast_scan {
  const unsigned char *p, *end;
};

static void fast_ws(struct fast_scan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int fast_hex4(const unsigned char *p, unsigned *v)
{
  *v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      d = (c | 0x20) - 'a' + 10;
    else
      return 0;
    *v = *v << 4 | d;
  }
  return 1;
}

/* Bytes that end a run of plain string characters: '"', '\\' and control characters. */
static const unsigned char fast_special[256] = {1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                                1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                                1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1};

/* A string at s->p (which is '"'): 1 with its raw contents in [*start, *start + *len) and
 * *escaped set when it holds a backslash, 0 when malformed. */

static int fast_string(struct fast_scan *s, const unsigned char **start, size_t *len, int *escaped)
{
  const unsigned char *p = s->p + 1;
  *escaped = 0;
  *start = p;
  while (p < s->end && *p != '"') {
    /* A base64 value is one long plain run: one table lookup per byte. */
    while (p < s->end && !fast_special[*p])
      p++;
    if (p >= s->end || *p == '"')
      break;
    if (*p < 0x20)
      return 0;
    if (*p == '\\') {
      *escaped = 1;
      if (p + 1 >= s->end)
        return 0;
      if (p[1] == 'u') {
        unsigned cp, lo;
        if (s->end - p < 6 || !fast_hex4(p + 2, &cp))
          return 0;
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff)
          return 0; /* low surrogate first */
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' || !fast_hex4(p + 2, &lo) ||
              lo < 0xdc00 || lo > 0xdfff)
            return 0;
          p += 6;
        }
        continue;
      }
      if (!strchr("\"\\/bfnrt", p[1]) || !p[1])
        return 0;
      p += 2;
      continue;
    }
    p++;
  }
  if (p >= s->end)
    return 0;
  *len = (size_t)(p - *start);
  s->p = p + 1;
  return 1;
}

static int fast_digits(struct fast_scan *s)
{
  const unsigned char *b = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
    s->p++;
  return s->p > b;
}

static int fast_number(struct fast_scan *s)
{
  const unsigned char *b = s->p;
  if (s->p < s->end && *s->p == '-')
    s->p++;
  if (s->p < s->end && *s->p == '0')
    s->p++;
  else if (!fast_digits(s))
    return 0;
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (!fast_digits(s))
      return 0;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!fast_digits(s))
      return 0;
  }
  return s->p - b <= 63;
}

static int fast_value(struct fast_scan *s, int depth);

/* Object or array at s->p, whose members are skipped. */
static int fast_container(struct fast_scan *s, int depth)
{
  int obj = *s->p == '{';
  unsigned char close = obj ? '}' : ']';
  const unsigned char *k;
  size_t kl;
  int esc;
  if (depth >= FAST_MAX_DEPTH)
    return 0;
  s->p++;
  fast_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    return 1;
  }
  for (;;) {
    if (obj) {
      if (s->p >= s->end || *s->p != '"' || !fast_string(s, &k, &kl, &esc))
        return 0;
      fast_ws(s);
      if (s->p >= s->end || *s->p != ':')
        return 0;
      s->p++;
      fast_ws(s);
    }
    if (!fast_value(s, depth + 1))
      return 0;
    fast_ws(s);
    if (s->p >= s->end)
      return 0;
    if (*s->p == close) {
      s->p++;
      return 1;
    }
    if (*s->p != ',')
      return 0;
    s->p++;
    fast_ws(s);
  }
}

static int fast_literal(struct fast_scan *s, const char *lit, size_t n)
{
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
    return 0;
  s->p += n;
  return 1;
}

static int fast_value(struct fast_scan *s, int depth)
{
  const unsigned char *k;
  size_t kl;
  int esc;
  if (s->p >= s->end)
    return 0;
  switch (*s->p) {
  case '{':
  case '[':
    return fast_container(s, depth);
  case '"':
    return fast_string(s, &k, &kl, &esc);
  case 't':
    return fast_literal(s, "true", 4);
  case 'f':
    return fast_literal(s, "false", 5);
  case 'n':
    return fast_literal(s, "null", 4);
  default:
    return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && fast_number(s);
  }
}

int kv_json_fast_str(const char *data, size_t len, const char *name, const char **val,
                     size_t *val_len)
{
  struct fast_scan s = {(const unsigned char *)data, (const unsigned char *)data + len};
  size_t nl = strlen(name);
  const unsigned char *k, *v = NULL, *fv = NULL;
  size_t kl, vl, fvl = 0;
  int esc, found = 0;
  /* Outputs are set only on acceptance: a declined reply hands out nothing. */
  *val = NULL;
  *val_len = 0;
  if (!data)
    return 0;
  fast_ws(&s);
  if (s.p >= s.end || *s.p != '{')
    return 0;
  s.p++;
  fast_ws(&s);
  if (s.p < s.end && *s.p == '}')
    return 0; /* no members: the caller's full path reports the missing one */
  for (;;) {
    int is_name;
    if (s.p >= s.end || *s.p != '"' || !fast_string(&s, &k, &kl, &esc))
      return 0;
    /* An escaped key might decode to name: only cJSON can tell. */
    if (esc)
      return 0;
    is_name = !found && kl == nl && memcmp(k, name, nl) == 0;
    fast_ws(&s);
    if (s.p >= s.end || *s.p != ':')
      return 0;
    s.p++;
    fast_ws(&s);
    if (is_name) {
      /* The first member of that name is the one cJSON_GetObjectItemCaseSensitive gives. */
      if (s.p >= s.end || *s.p != '"' || !fast_string(&s, &v, &vl, &esc) || esc)
        return 0;
      found = 1;
      fv = v;
      fvl = vl;
    } else if (!fast_value(&s, 1)) {
      return 0;
    }
    fast_ws(&s);
    if (s.p >= s.end)
      return 0;
    if (*s.p == '}') {
      s.p++;
      break;
    }
    if (*s.p != ',')
      return 0;
    s.p++;
    fast_ws(&s);
  }
  fast_ws(&s);
  if (s.p != s.end || !found)
    return 0;
  *val = (const char *)fv;
  *val_len = fvl;
  return 1;
}
