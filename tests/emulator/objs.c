/* SPDX-License-Identifier: Apache-2.0 */
/* objs.c - what the secret and certificate handlers share (objects.h): the
 * named-entry store with its soft-delete state, the JSON pieces and replies the two collections
 * have in common, their listings, opaque backup blobs, and the routing tables' dispatcher. */
#include "objects.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---- small JSON helpers ---------------------------------------------------------------------- */

int objs_ieq(const char *a, const char *b)
{
  return a && b && !strcasecmp(a, b);
}

const char *objs_json_str(const cJSON *obj, const char *name, int *bad)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

  if (!it || cJSON_IsNull(it))
    return NULL;
  if (!cJSON_IsString(it)) {
    *bad = 1;
    return NULL;
  }
  return it->valuestring;
}

int objs_json_add_tags(cJSON *bundle, const cJSON *tags)
{
  cJSON *dup;

  if (!tags)
    return 0;
  dup = cJSON_Duplicate(tags, 1);
  if (!dup || !cJSON_AddItemToObject(bundle, "tags", dup)) {
    cJSON_Delete(dup);
    return -1;
  }
  return 0;
}

/* ---- the store of named entries -------------------------------------------------------------- */

struct objs_entry *objs_find_inlock(void *store, const char *name, size_t *idx)
{
  struct objs_store *st = store;
  size_t i;

  if (!st)
    return NULL;
  for (i = 0; i < st->n; i++) {
    if (objs_ieq(st->e[i]->name, name)) {
      if (idx)
        *idx = i;
      return st->e[i];
    }
  }
  return NULL;
}

struct objs_entry *objs_add_inlock(void **store, const char *name, size_t size, size_t max)
{
  struct objs_store *st = *store;
  struct objs_entry *e, **ne;

  if (!st)
    st = *store = calloc(1, sizeof(*st));
  if (!st || st->n >= max)
    return NULL;
  ne = realloc(st->e, (st->n + 1) * sizeof(*ne));
  if (!ne)
    return NULL;
  st->e = ne;
  e = calloc(1, size);
  if (!e || !(e->name = strdup(name))) {
    free(e);
    return NULL;
  }
  st->e[st->n++] = e;
  return e;
}

void objs_remove_inlock(void *store, size_t idx)
{
  struct objs_store *st = store;

  memmove(&st->e[idx], &st->e[idx + 1], (st->n - idx - 1) * sizeof(st->e[0]));
  st->n--;
}

void objs_store_free(void *store, void (*entry_free)(struct objs_entry *e))
{
  struct objs_store *st = store;
  size_t i;

  if (!st)
    return;
  for (i = 0; i < st->n; i++)
    entry_free(st->e[i]);
  free(st->e);
  free(st);
}

enum emu_rc objs_deleted_state(const struct objs_entry *e)
{
  return emu_deleted_visible(&e->del) ? EMU_E_DELETED_RECOVERABLE : EMU_E_BEING_DELETED;
}

/* ---- JSON pieces and replies ----------------------------------------------------------------- */

int objs_json_add_attrs_tags(cJSON *obj, const struct emu_attrs *attrs, const cJSON *tags)
{
  cJSON *a = emu_attrs_json_new(attrs);

  if (!a || !cJSON_AddItemToObject(obj, "attributes", a)) {
    cJSON_Delete(a);
    return -1;
  }
  return objs_json_add_tags(obj, tags);
}

cJSON *objs_json_deleted(cJSON *obj, struct emu_vault *vault, const char *deleted_coll,
                         const struct objs_entry *e)
{
  if (obj && emu_deleted_json_add(obj, vault, deleted_coll, e->name, &e->del)) {
    cJSON_Delete(obj);
    return NULL;
  }
  return obj;
}

int objs_items_add(cJSON *items, cJSON *item)
{
  if (!item || !cJSON_AddItemToArray(items, item)) {
    cJSON_Delete(item);
    return -1;
  }
  return 0;
}

int objs_reply_json(struct emu_resp *resp, unsigned status, cJSON *json)
{
  if (!json)
    return -1;
  return emu_resp_json(resp, status, json);
}

int objs_reply_not_found(struct emu_resp *resp, const char *what, const char *name,
                         const char *version)
{
  char buf[EMU_NAME_MAX + 48];

  if (version && *version) {
    snprintf(buf, sizeof(buf), "%.127s/%.40s", name, version);
    return emu_resp_not_found(resp, what, buf);
  }
  return emu_resp_not_found(resp, what, name);
}

int objs_parse_attrs_tags(const cJSON *body, struct emu_attrs *attrs, const cJSON **tags,
                          const char **err)
{
  *tags = cJSON_GetObjectItemCaseSensitive(body, "tags");
  if (*tags && cJSON_IsNull(*tags))
    *tags = NULL;
  if (*tags && emu_tags_valid(*tags, err))
    return -1;
  return emu_attrs_apply(cJSON_GetObjectItemCaseSensitive(body, "attributes"), attrs, 0, err);
}

/* ---- listings -------------------------------------------------------------------------------- */

int objs_list_reply(struct emu_req *req, struct emu_resp *resp, void *const *store, int deleted,
                    const char *deleted_coll, objs_item_fn *item_fn, const void *ctx)
{
  struct emu_vault *vault = req->vault;
  const struct objs_store *st;
  cJSON *items = cJSON_CreateArray(), *it;
  size_t i;
  int ok = items != NULL;

  pthread_mutex_lock(&vault->lock);
  st = *store;
  for (i = 0; ok && st && i < st->n; i++) {
    const struct objs_entry *e = st->e[i];

    if (e->deleted != deleted || (deleted && !emu_deleted_visible(&e->del)))
      continue;
    it = NULL;
    ok = !item_fn(vault, e, ctx, &it);
    if (ok && it) {
      if (deleted)
        it = objs_json_deleted(it, vault, deleted_coll, e);
      ok = !objs_items_add(items, it);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!ok) {
    cJSON_Delete(items);
    return -1;
  }
  return emu_page(req, resp, items);
}

int objs_versions_reply(struct emu_req *req, struct emu_resp *resp, void *const *store,
                        const char *what, objs_versions_fn *versions_fn)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  const struct objs_entry *e;
  cJSON *items = cJSON_CreateArray();
  int ok = items != NULL, found = 0;

  pthread_mutex_lock(&vault->lock);
  e = objs_find_inlock(*store, name, NULL);
  if (e && !e->deleted) {
    found = 1;
    ok = ok && !versions_fn(vault, e, items);
  }
  pthread_mutex_unlock(&vault->lock);
  if (!ok || !found) {
    cJSON_Delete(items);
    return ok ? emu_resp_not_found(resp, what, name) : -1;
  }
  return emu_page(req, resp, items);
}

/* ---- backup / restore ------------------------------------------------------------------------ */

/* Backup blobs are opaque to clients, as the service's are: AES-256-GCM under a key drawn at
 * start-up, so a blob restores into this emulator process only (the service restores within the
 * same subscription and geography). Layout: base64url(magic-bound IV 12 | ciphertext | tag 16). */
#define BLOB_AAD "akv-emulator-backup-1"
#define BLOB_MAX (EMU_BODY_MAX / 2)

static unsigned char blob_key[32];
static int blob_key_ok;
static pthread_once_t blob_once = PTHREAD_ONCE_INIT;

static void blob_key_init(void)
{
  blob_key_ok = RAND_bytes(blob_key, sizeof(blob_key)) == 1;
}

static int blob_crypt(int enc, const unsigned char *iv, const unsigned char *in, size_t inlen,
                      unsigned char *out, unsigned char *tag)
{
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, fin = 0, ok;

  ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, blob_key, iv, enc) &&
       EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)BLOB_AAD, sizeof(BLOB_AAD) - 1) &&
       EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) &&
       (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag)) &&
       EVP_CipherFinal_ex(ctx, out + n, &fin) &&
       (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag));
  EVP_CIPHER_CTX_free(ctx);
  return ok ? 0 : -1;
}

char *objs_blob_seal_new(const char *plain)
{
  size_t len = strlen(plain);
  unsigned char *buf = NULL;
  char *ret = NULL;

  pthread_once(&blob_once, blob_key_init);
  if (!blob_key_ok || len > BLOB_MAX)
    return NULL;
  buf = malloc(12 + len + 16);
  if (!buf || RAND_bytes(buf, 12) != 1 ||
      blob_crypt(1, buf, (const unsigned char *)plain, len, buf + 12, buf + 12 + len))
    goto out;
  ret = emu_b64url_encode(buf, 12 + len + 16);
out:
  free(buf);
  return ret;
}

char *objs_blob_open_new(const char *blob)
{
  unsigned char *raw = NULL;
  char *plain = NULL;
  size_t len = 0;

  pthread_once(&blob_once, blob_key_init);
  if (!blob_key_ok || strlen(blob) > BLOB_MAX * 2 || emu_b64url_decode(blob, &raw, &len) ||
      len < 12 + 16)
    goto out;
  plain = malloc(len - 28 + 1);
  if (!plain || blob_crypt(0, raw, raw + 12, len - 28, (unsigned char *)plain, raw + len - 16)) {
    if (plain)
      OPENSSL_cleanse(plain, len - 28);
    free(plain);
    plain = NULL;
    goto out;
  }
  plain[len - 28] = '\0';
out:
  free(raw);
  return plain;
}

void objs_text_free(char *text)
{
  if (!text)
    return;
  OPENSSL_cleanse(text, strlen(text));
  free(text);
}

void objs_backup_doc_free(cJSON *doc)
{
  const cJSON *v, *m;

  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "versions"))
  {
    cJSON_ArrayForEach(m, v)
    {
      if (cJSON_IsString(m) && (!strcmp(m->string, "value") || !strcmp(m->string, "key")))
        OPENSSL_cleanse(m->valuestring, strlen(m->valuestring));
    }
  }
  cJSON_Delete(doc);
}

int objs_backup_reply(struct emu_resp *resp, cJSON *doc, const char *what, const char *name)
{
  char *plain = doc ? cJSON_PrintUnformatted(doc) : NULL, *blob;
  cJSON *out;

  objs_backup_doc_free(doc);
  if (!plain)
    return -1;
  blob = objs_blob_seal_new(plain);
  objs_text_free(plain);
  if (!blob)
    return emu_resp_bad_param(resp, "%s %s is too large to back up in the emulator.", what, name);
  out = cJSON_CreateObject();
  if (!out || !cJSON_AddStringToObject(out, "value", blob)) {
    cJSON_Delete(out);
    objs_text_free(blob);
    return -1;
  }
  objs_text_free(blob);
  return emu_resp_json(resp, 200, out);
}

cJSON *objs_restore_doc_new(struct emu_req *req, struct emu_resp *resp, char name[EMU_NAME_MAX + 1],
                            int *ret)
{
  const char *blob, *doc_name;
  char *plain;
  cJSON *doc;
  int bad = 0;

  *ret = 0;
  if (!objs_ieq(req->seg[0], "restore")) {
    *ret = emu_resp_method_not_allowed(resp);
    return NULL;
  }
  blob = cJSON_IsObject(req->body) ? objs_json_str(req->body, "value", &bad) : NULL;
  if (bad || !blob) {
    *ret = emu_resp_bad_param(resp, "Property 'value' (the backup blob) is required.");
    return NULL;
  }
  plain = objs_blob_open_new(blob);
  doc = plain ? cJSON_Parse(plain) : NULL;
  objs_text_free(plain);
  doc_name = doc ? objs_json_str(doc, "name", &bad) : NULL;
  if (!doc || bad || !doc_name || !emu_name_valid(doc_name) ||
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "versions")) < 1) {
    objs_backup_doc_free(doc);
    *ret = emu_resp_bad_param(resp, "The backup blob is malformed or was not made by this "
                                    "emulator instance.");
    return NULL;
  }
  snprintf(name, EMU_NAME_MAX + 1, "%s", doc_name);
  return doc;
}

/* ---- routing --------------------------------------------------------------------------------- */

const char *objs_req_version(const struct emu_req *req)
{
  return req->nseg == 2 ? req->seg[1] : NULL;
}

static int route_matches(const struct emu_req *req, const struct objs_route *r)
{
  return r->nseg == req->nseg && (!r->seg1 || objs_ieq(req->seg[1], r->seg1)) &&
         (!r->seg2 || objs_ieq(req->seg[2], r->seg2));
}

static int same_pattern(const char *a, const char *b)
{
  return a == b || (a && b && !strcmp(a, b));
}

int objs_dispatch(struct emu_req *req, struct emu_resp *resp, const struct objs_route *routes,
                  size_t n)
{
  const struct objs_route *path = NULL;
  size_t i;

  /* The first route whose segments match fixes the path (literal segments are listed before
   * wildcards); among the routes of that path the method picks the handler, else 405. */
  for (i = 0; i < n && !path; i++) {
    if (route_matches(req, &routes[i]))
      path = &routes[i];
  }
  if (!path)
    return emu_resp_error(resp, 404, "NotFound", NULL, "The requested path %.300s is not served.",
                          req->path);
  for (i = 0; i < n; i++) {
    const struct objs_route *r = &routes[i];

    if (r->nseg == path->nseg && same_pattern(r->seg1, path->seg1) &&
        same_pattern(r->seg2, path->seg2) && !strcmp(r->method, req->method)) {
      emu_stats_count(r->stat);
      return r->fn(req, resp, r->arg);
    }
  }
  return emu_resp_method_not_allowed(resp);
}
