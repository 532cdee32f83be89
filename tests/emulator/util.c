/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.c - shared helpers of the emulator: responses, encoding, identifiers,
 * attributes, soft delete, paging.
 */
#include "core.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

char *emu_strdup_printf(const char *fmt, ...)
{
  va_list ap;
  char *out = NULL;
  va_start(ap, fmt);
  if (vasprintf(&out, fmt, ap) < 0)
    out = NULL;
  va_end(ap);
  return out;
}

/* ---- requests / responses ------------------------------------------------------- */

const char *emu_req_query(const struct emu_req *req, const char *name)
{
  for (size_t i = 0; i < req->nquery; i++)
    if (strcasecmp(req->query[i].name, name) == 0)
      return req->query[i].value;
  return NULL;
}

void emu_req_clear(struct emu_req *req)
{
  for (size_t i = 0; i < req->nseg; i++)
    free(req->seg[i]);
  for (size_t i = 0; i < req->nquery; i++) {
    free(req->query[i].name);
    free(req->query[i].value);
  }
  req->nseg = 0;
  req->nquery = 0;
}

void emu_resp_clear(struct emu_resp *resp)
{
  cJSON_Delete(resp->json);
  resp->json = NULL;
  for (size_t i = 0; i < resp->nhdr; i++) {
    free(resp->hdr[i].name);
    free(resp->hdr[i].value);
  }
  resp->nhdr = 0;
  resp->status = 0;
}

int emu_resp_json(struct emu_resp *resp, unsigned status, cJSON *body)
{
  cJSON_Delete(resp->json);
  resp->json = body;
  resp->status = status;
  return 0;
}

int emu_resp_empty(struct emu_resp *resp, unsigned status)
{
  return emu_resp_json(resp, status, NULL);
}

int emu_resp_header(struct emu_resp *resp, const char *name, const char *value)
{
  if (resp->nhdr >= EMU_MAX_HEADERS)
    return -1;
  char *n = strdup(name), *v = strdup(value);
  if (!n || !v) {
    free(n);
    free(v);
    return -1;
  }
  resp->hdr[resp->nhdr].name = n;
  resp->hdr[resp->nhdr].value = v;
  resp->nhdr++;
  return 0;
}

static int resp_verror(struct emu_resp *resp, unsigned status, const char *code, const char *inner,
                       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static int resp_verror(struct emu_resp *resp, unsigned status, const char *code, const char *inner,
                       const char *fmt, va_list ap)
{
  char msg[1024];
  cJSON *root = NULL, *err, *in;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  root = cJSON_CreateObject();
  if (!root)
    goto fail;
  err = cJSON_AddObjectToObject(root, "error");
  if (!err || !cJSON_AddStringToObject(err, "code", code) ||
      !cJSON_AddStringToObject(err, "message", msg))
    goto fail;
  if (inner) {
    in = cJSON_AddObjectToObject(err, "innererror");
    if (!in || !cJSON_AddStringToObject(in, "code", inner))
      goto fail;
  }
  return emu_resp_json(resp, status, root);
fail:
  cJSON_Delete(root);
  emu_resp_json(resp, 500, NULL);
  return -1;
}

int emu_resp_error(struct emu_resp *resp, unsigned status, const char *code, const char *inner,
                   const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int rc = resp_verror(resp, status, code, inner, fmt, ap);
  va_end(ap);
  return rc;
}

int emu_resp_bad_param(struct emu_resp *resp, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int rc = resp_verror(resp, 400, "BadParameter", NULL, fmt, ap);
  va_end(ap);
  return rc;
}

int emu_resp_not_found(struct emu_resp *resp, const char *what, const char *name)
{
  char code[32], lower[32];
  snprintf(code, sizeof(code), "%sNotFound", what);
  snprintf(lower, sizeof(lower), "%s", what);
  for (char *p = lower; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return emu_resp_error(resp, 404, code, NULL,
                        "A %s with (name/id) %s was not found in this key vault. If you recently "
                        "deleted this %s you may be able to recover it using the correct recovery "
                        "command. For help resolving this issue, please see "
                        "https://go.microsoft.com/fwlink/?linkid=2125182",
                        lower, name, lower);
}

int emu_resp_deleted_not_found(struct emu_resp *resp, const char *what, const char *name)
{
  char code[32];
  snprintf(code, sizeof(code), "%sNotFound", what);
  return emu_resp_error(resp, 404, code, NULL, "Deleted %s not found: %s", what, name);
}

int emu_resp_method_not_allowed(struct emu_resp *resp)
{
  return emu_resp_error(resp, 405, "MethodNotAllowed", NULL,
                        "The requested resource does not support this HTTP method.");
}

/* ---- identifiers ------------------------------------------------------------------ */

int emu_name_valid(const char *name)
{
  size_t n = 0;
  if (!name)
    return 0;
  for (; name[n]; n++)
    if (!(isalnum((unsigned char)name[n]) || name[n] == '-') || n >= EMU_NAME_MAX)
      return 0;
  return n > 0;
}

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

void emu_version_new(char out[EMU_VERSION_LEN + 1])
{
  unsigned char r[EMU_VERSION_LEN / 2];
  if (RAND_bytes(r, sizeof(r)) != 1)
    abort(); /* no randomness: nothing sensible to continue with */
  hex_lower(r, sizeof(r), out);
}

void emu_uuid_new(char out[37])
{
  unsigned char r[16];
  char hex[33];
  if (RAND_bytes(r, sizeof(r)) != 1)
    abort();
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
  hex_lower(r, sizeof(r), hex);
  snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

char *emu_obj_id_new(const struct emu_vault *vault, const char *collection, const char *name,
                     const char *version)
{
  if (version && *version)
    return emu_strdup_printf("%s/%s/%s/%s", vault->base_url, collection, name, version);
  return emu_strdup_printf("%s/%s/%s", vault->base_url, collection, name);
}

/* ---- base64 ------------------------------------------------------------------------ */

char *emu_b64_encode(const unsigned char *data, size_t len)
{
  if (len > (size_t)INT32_MAX / 2)
    return NULL;
  size_t outlen = 4 * ((len + 2) / 3) + 1;
  char *out = malloc(outlen);
  if (!out)
    return NULL;
  EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

char *emu_b64url_encode(const unsigned char *data, size_t len)
{
  char *out = emu_b64_encode(data, len);
  if (!out)
    return NULL;
  size_t n = strlen(out);
  while (n > 0 && out[n - 1] == '=')
    out[--n] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (out[i] == '+')
      out[i] = '-';
    else if (out[i] == '/')
      out[i] = '_';
  }
  return out;
}

/* Decode canonical standard base64 (length multiple of 4, padding only at the end). */
static int b64_decode_std(const char *text, size_t n, unsigned char **out, size_t *outlen)
{
  unsigned char *buf = NULL;
  size_t pad = 0;
  if (n % 4 != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '=') {
      if (i < n - 2)
        return -1;
      pad++;
    } else if (pad || !(isalnum(c) || c == '+' || c == '/')) {
      return -1;
    }
  }
  if (n > (size_t)INT32_MAX)
    return -1;
  buf = malloc(n / 4 * 3 + 1);
  if (!buf)
    return -1;
  int got = n ? EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n) : 0;
  if (got < 0 || (size_t)got < pad) {
    free(buf);
    return -1;
  }
  *outlen = (size_t)got - pad;
  buf[*outlen] = '\0';
  *out = buf;
  return 0;
}

int emu_b64_decode(const char *text, unsigned char **out, size_t *outlen)
{
  if (!text)
    return -1;
  return b64_decode_std(text, strlen(text), out, outlen);
}

int emu_b64url_decode(const char *text, unsigned char **out, size_t *outlen)
{
  int rc = -1;
  char *tmp = NULL;
  if (!text)
    return -1;
  size_t n = strlen(text);
  while (n > 0 && text[n - 1] == '=')
    n--;
  if (n % 4 == 1 || n > EMU_BODY_MAX)
    return -1;
  size_t full = (n + 3) / 4 * 4;
  tmp = malloc(full + 1);
  if (!tmp)
    return -1;
  for (size_t i = 0; i < n; i++) {
    char c = text[i];
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (c == '+' || c == '/' || c == '=')
      goto out; /* standard alphabet inside base64url text */
    tmp[i] = c;
  }
  for (size_t i = n; i < full; i++)
    tmp[i] = '=';
  tmp[full] = '\0';
  rc = b64_decode_std(tmp, full, out, outlen);
out:
  free(tmp);
  return rc;
}

/* ---- time ---------------------------------------------------------------------------- */

int64_t emu_now(void)
{
  return (int64_t)time(NULL);
}

int64_t emu_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- attributes / tags / soft delete ---------------------------------------------------- */

static int json_int64(const cJSON *item, int64_t *out)
{
  if (!cJSON_IsNumber(item))
    return -1;
  double d = item->valuedouble;
  if (d < 0 || d > 253402300799.0 || d != (double)(int64_t)d)
    return -1;
  *out = (int64_t)d;
  return 0;
}

int emu_attrs_apply(const cJSON *attrs_json, struct emu_attrs *attrs, int keys, const char **err)
{
  const cJSON *it;
  if (!attrs_json || cJSON_IsNull(attrs_json))
    return 0;
  if (!cJSON_IsObject(attrs_json)) {
    *err = "attributes must be an object";
    return -1;
  }
  it = cJSON_GetObjectItemCaseSensitive(attrs_json, "enabled");
  if (it && !cJSON_IsNull(it)) {
    if (!cJSON_IsBool(it)) {
      *err = "attributes.enabled must be a boolean";
      return -1;
    }
    attrs->enabled = cJSON_IsTrue(it);
  }
  it = cJSON_GetObjectItemCaseSensitive(attrs_json, "nbf");
  if (it && !cJSON_IsNull(it) && json_int64(it, &attrs->nbf) != 0) {
    *err = "attributes.nbf must be a Unix time in seconds";
    return -1;
  }
  it = cJSON_GetObjectItemCaseSensitive(attrs_json, "exp");
  if (it && !cJSON_IsNull(it) && json_int64(it, &attrs->exp) != 0) {
    *err = "attributes.exp must be a Unix time in seconds";
    return -1;
  }
  if (keys) {
    it = cJSON_GetObjectItemCaseSensitive(attrs_json, "exportable");
    if (it && !cJSON_IsNull(it)) {
      if (!cJSON_IsBool(it)) {
        *err = "attributes.exportable must be a boolean";
        return -1;
      }
      attrs->exportable = cJSON_IsTrue(it);
    }
  }
  return 0;
}

cJSON *emu_attrs_json_new(const struct emu_attrs *attrs)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  if (!cJSON_AddBoolToObject(o, "enabled", attrs->enabled) ||
      (attrs->nbf && !cJSON_AddNumberToObject(o, "nbf", (double)attrs->nbf)) ||
      (attrs->exp && !cJSON_AddNumberToObject(o, "exp", (double)attrs->exp)) ||
      !cJSON_AddNumberToObject(o, "created", (double)attrs->created) ||
      !cJSON_AddNumberToObject(o, "updated", (double)attrs->updated) ||
      !cJSON_AddStringToObject(o, "recoveryLevel", EMU_RECOVERY_LEVEL) ||
      !cJSON_AddNumberToObject(o, "recoverableDays", EMU_RECOVERABLE_DAYS)) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

int emu_tags_valid(const cJSON *tags, const char **err)
{
  const cJSON *t;
  int n = 0;
  if (!tags || cJSON_IsNull(tags))
    return 0;
  if (!cJSON_IsObject(tags)) {
    *err = "tags must be an object of strings";
    return -1;
  }
  cJSON_ArrayForEach(t, tags)
  {
    if (!cJSON_IsString(t)) {
      *err = "tag values must be strings";
      return -1;
    }
    if (strlen(t->string) > 256 || strlen(t->valuestring) > 256) {
      *err = "tag names and values are limited to 256 characters";
      return -1;
    }
    if (++n > 15) {
      *err = "at most 15 tags are allowed";
      return -1;
    }
  }
  return 0;
}

void emu_deleted_init(struct emu_deleted *del)
{
  del->deleted_date = emu_now();
  del->scheduled_purge_date = del->deleted_date + (int64_t)EMU_RECOVERABLE_DAYS * 86400;
  del->visible_at_ms = emu_now_ms() + emu_srv->delete_delay_ms;
}

int emu_deleted_visible(const struct emu_deleted *del)
{
  return emu_now_ms() >= del->visible_at_ms;
}

int emu_deleted_json_add(cJSON *bundle, const struct emu_vault *vault,
                         const char *deleted_collection, const char *name,
                         const struct emu_deleted *del)
{
  char *rid = emu_obj_id_new(vault, deleted_collection, name, NULL);
  int rc = -1;
  if (!rid)
    return -1;
  if (cJSON_AddStringToObject(bundle, "recoveryId", rid) &&
      cJSON_AddNumberToObject(bundle, "deletedDate", (double)del->deleted_date) &&
      cJSON_AddNumberToObject(bundle, "scheduledPurgeDate", (double)del->scheduled_purge_date))
    rc = 0;
  free(rid);
  return rc;
}

/* ---- api-version / JSON --------------------------------------------------------------- */

int emu_api_version_ok(const char *v)
{
  static const char *const ok[] = {"7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"};
  if (!v)
    return 0;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (strcmp(v, ok[i]) == 0)
      return 1;
  return 0;
}

cJSON *emu_json_parse(const char *text, size_t len)
{
  const char *end = NULL;
  cJSON *j;
  if (!text)
    return NULL;
  /* cJSON stops after the first value; insist the rest is whitespace */
  j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!j)
    return NULL;
  for (; end && end < text + len; end++) {
    if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
      cJSON_Delete(j);
      return NULL;
    }
  }
  return j;
}

void emu_json_sort(cJSON *item)
{
  if (!item)
    return;
  if (cJSON_IsObject(item)) {
    /* insertion sort on the member list (responses are small) */
    cJSON *sorted = NULL, *next;
    for (cJSON *c = item->child; c; c = next) {
      next = c->next;
      emu_json_sort(c);
      cJSON **pp = &sorted;
      while (*pp && strcmp((*pp)->string, c->string) <= 0)
        pp = &(*pp)->next;
      c->next = *pp;
      *pp = c;
    }
    /* fix prev links: cJSON keeps child->prev pointing at the last element */
    cJSON *prev = NULL, *last = NULL;
    for (cJSON *c = sorted; c; c = c->next) {
      c->prev = prev;
      prev = c;
      last = c;
    }
    if (sorted)
      sorted->prev = last;
    item->child = sorted;
  } else if (cJSON_IsArray(item)) {
    cJSON *c;
    cJSON_ArrayForEach(c, item) emu_json_sort(c);
  }
}

char *emu_pct_decode_new(const char *s, size_t len)
{
  char *out = malloc(len + 1);
  size_t o = 0;
  if (!out)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
        goto bad;
      char hex[3] = {s[i + 1], s[i + 2], 0};
      long v = strtol(hex, NULL, 16);
      if (v == 0)
        goto bad;
      out[o++] = (char)v;
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
bad:
  free(out);
  return NULL;
}

/* ---- paging ------------------------------------------------------------------------------ */

static char *skiptoken_new(size_t offset)
{
  char json[64];
  snprintf(json, sizeof(json), "{\"NextMarker\":\"2!%zu\",\"TargetLocation\":0}", offset);
  return emu_b64url_encode((const unsigned char *)json, strlen(json));
}

static int skiptoken_parse(const char *tok, size_t *offset)
{
  unsigned char *raw = NULL;
  size_t rawlen = 0;
  cJSON *j = NULL;
  int rc = -1;
  if (strlen(tok) > 512 || emu_b64url_decode(tok, &raw, &rawlen) != 0)
    return -1;
  j = emu_json_parse((const char *)raw, rawlen);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "NextMarker");
  if (cJSON_IsString(m) && strncmp(m->valuestring, "2!", 2) == 0) {
    char *end = NULL;
    unsigned long long v = strtoull(m->valuestring + 2, &end, 10);
    if (end && *end == '\0' && end != m->valuestring + 2 && v < 1000000) {
      *offset = (size_t)v;
      rc = 0;
    }
  }
  cJSON_Delete(j);
  free(raw);
  return rc;
}

/* percent-encode a query value (RFC 3986 unreserved kept) */
static char *pct_encode_new(const char *s)
{
  size_t n = strlen(s);
  char *out = malloc(3 * n + 1);
  size_t o = 0;
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out[o++] = (char)c;
    } else {
      snprintf(out + o, 4, "%%%02X", c);
      o += 3;
    }
  }
  out[o] = '\0';
  return out;
}

int emu_page(const struct emu_req *req, struct emu_resp *resp, cJSON *items)
{
  size_t max = EMU_PAGE_MAX, offset = 0, total;
  const char *mr = emu_req_query(req, "maxresults");
  const char *st = emu_req_query(req, "$skiptoken");
  cJSON *root = NULL, *page = NULL;
  char *link = NULL, *tok = NULL;
  int rc = -1;

  if (mr) {
    char *end = NULL;
    long v = strtol(mr, &end, 10);
    if (!*mr || *end || v < 1 || v > EMU_PAGE_MAX) {
      rc = emu_resp_bad_param(resp,
                              "Invalid value for maxresults: '%s'. It must be an integer "
                              "between 1 and 25.",
                              mr);
      goto out;
    }
    max = (size_t)v;
  }
  if (st && *st && skiptoken_parse(st, &offset) != 0) {
    rc = emu_resp_bad_param(resp, "The skip token is invalid.");
    goto out;
  }
  total = (size_t)cJSON_GetArraySize(items);
  root = cJSON_CreateObject();
  page = cJSON_CreateArray();
  if (!root || !page)
    goto nomem;
  /* detach the requested slice from items into page */
  for (size_t i = 0; i < max && offset < total; i++) {
    cJSON *it = cJSON_DetachItemFromArray(items, (int)offset);
    cJSON_AddItemToArray(page, it);
    total--;
  }
  cJSON_AddItemToObject(root, "value", page);
  page = NULL;
  if (offset < total) {
    /* build nextLink: absolute, explicit port, api-version first, other params kept */
    size_t cap = 4096, len;
    char *buf = malloc(cap);
    if (!buf)
      goto nomem;
    tok = skiptoken_new(offset + max);
    if (!tok) {
      free(buf);
      goto nomem;
    }
    len = (size_t)snprintf(buf, cap, "%s%s?api-version=%s&$skiptoken=%s", req->vault->base_url,
                           req->path, req->api_version, tok);
    for (size_t i = 0; i < req->nquery && len < cap; i++) {
      const char *qn = req->query[i].name;
      if (!strcasecmp(qn, "api-version") || !strcasecmp(qn, "$skiptoken") ||
          !strcasecmp(qn, "maxresults"))
        continue;
      char *en = pct_encode_new(qn), *ev = pct_encode_new(req->query[i].value);
      if (en && ev)
        len += (size_t)snprintf(buf + len, cap - len, "&%s=%s", en, ev);
      free(en);
      free(ev);
    }
    if (mr && len < cap)
      len += (size_t)snprintf(buf + len, cap - len, "&maxresults=%zu", max);
    if (len >= cap) {
      free(buf);
      rc = emu_resp_bad_param(resp, "The request URL is too long.");
      goto out;
    }
    link = buf;
    if (!cJSON_AddStringToObject(root, "nextLink", link))
      goto nomem;
  } else if (!cJSON_AddNullToObject(root, "nextLink")) {
    goto nomem;
  }
  rc = emu_resp_json(resp, 200, root);
  root = NULL;
  goto out;
nomem:
  rc = -1;
out:
  cJSON_Delete(items);
  cJSON_Delete(page);
  cJSON_Delete(root);
  free(link);
  free(tok);
  return rc;
}
