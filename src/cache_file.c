/* The cross-process cache file (see cache_file.h). Format (JSON, one file for all slots):
 *   {"format":3,"slots":[{"fp":SLOT-FINGERPRINT,"built_at":T,"keys":[KEY...],"objects":[OBJ...],
 *                         "pending":[{"name":N,"created":T,"updated":T}...]}]}
 * KEY is the public JWK part of one key version (+ label and source tag); OBJ is a certificate or
 * data object as its attribute list; pending keys are listed keys whose public part no process has
 * read yet (cache.h). The fingerprint covers everything in the slot's config that
 * changes the object list, so a changed config never reuses an old entry. The file is only trusted
 * when it belongs to this user and nobody else can write it; anything malformed is ignored. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "attrs.h"
#include "cache_file.h"
#include "object.h"
#include "util/b64.h"
#include "util/log.h"

/* LIFECYCLE: 2 adds key tags (CKA_ID kept in a tag must survive the file); 3 adds pending keys. */
#define CACHE_FORMAT 3
#define CACHE_MAX_BYTES (32u << 20)
#define LOCK_WAIT_MS 30000

/* The file's path, or 0 when off ("" in the config). */
static int cache_path(char *buf, size_t len)
{
  const struct akv_config *cfg = akv_config();
  const char *env;
  int n;

  if (!cfg || (cfg->cache_file && !cfg->cache_file[0]))
    return 0;
  if (cfg->cache_file)
    n = snprintf(buf, len, "%s", cfg->cache_file);
  else if ((env = getenv("XDG_CACHE_HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/akv-pkcs11/cache.json", env);
  else if ((env = getenv("HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/.cache/akv-pkcs11/cache.json", env);
  else
    return 0;
  return n > 0 && (size_t)n < len;
}

/* Creates the default directory (0700) when the path is ours to choose. */
static void ensure_dir(const char *path)
{
  char dir[4096];
  char *slash;
  if (akv_config()->cache_file)
    return; /* an explicit path: its directory is the administrator's business */
  snprintf(dir, sizeof(dir), "%s", path);
  slash = strrchr(dir, '/');
  if (!slash)
    return;
  *slash = '\0';
  slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    (void)mkdir(dir, 0700); /* ~/.cache */
    *slash = '/';
  }
  (void)mkdir(dir, 0700);
}

/* SHA-256 (hex) of what makes the slot's object list. */
static int fingerprint(const struct akv_slot_config *sc, char out[65])
{
  /* In the module's own library context: a host's ENGINE or provider never sees this. */
  EVP_MD *sha = EVP_MD_fetch(akv_libctx(), "SHA256", NULL);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char h[32];
  unsigned hl = 0, i;
  char num[96];
  size_t k;
  int ok;

  if (!md || !sha) {
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha);
    return 0;
  }
  snprintf(num, sizeof(num), "%d|%u|%d|%d|%d|%d|%zu|", CACHE_FORMAT, sc->objects, sc->versions_all,
           sc->show_disabled, sc->read_only, sc->allow_destroy, sc->n_key_names);
  ok = EVP_DigestInit_ex(md, sha, NULL) && EVP_DigestUpdate(md, sc->url, strlen(sc->url)) &&
       EVP_DigestUpdate(md, num, strlen(num)) &&
       (!sc->key_filter || EVP_DigestUpdate(md, sc->key_filter, strlen(sc->key_filter) + 1));
  for (k = 0; ok && k < sc->n_key_names; k++)
    ok = EVP_DigestUpdate(md, sc->key_names[k], strlen(sc->key_names[k]) + 1);
  ok = ok && EVP_DigestFinal_ex(md, h, &hl) && hl == 32;
  EVP_MD_CTX_free(md);
  EVP_MD_free(sha);
  for (i = 0; ok && i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
  return ok;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* The file's JSON when it is ours and private; NULL otherwise (missing, foreign, malformed). */
static cJSON *read_file(const char *path)
{
  struct stat st;
  char *text = NULL;
  cJSON *doc = NULL;
  ssize_t got;
  size_t off = 0;
  int fd;

  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) ||
      (size_t)st.st_size > CACHE_MAX_BYTES) {
    akv_warn(AKV_LOGC_CACHE, "cache file %s ignored: not a private file of this user", path);
    goto out;
  }
  text = malloc((size_t)st.st_size + 1);
  if (!text)
    goto out;
  while (off < (size_t)st.st_size) {
    got = read(fd, text + off, (size_t)st.st_size - off);
    if (got <= 0)
      goto out;
    off += (size_t)got;
  }
  text[off] = '\0';
  doc = cJSON_ParseWithLength(text, off);
  if (!doc)
    akv_warn(AKV_LOGC_CACHE, "cache file %s ignored: not JSON", path);
out:
  free(text);
  close(fd);
  return doc;
}

static int get_i64(const cJSON *o, const char *name, int64_t *v)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!cJSON_IsNumber(it))
    return 0;
  *v = (int64_t)it->valuedouble;
  return 1;
}

static const char *get_str(const cJSON *o, const char *name)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int get_b64(const cJSON *o, const char *name, unsigned char **p, size_t *len)
{
  const char *s = get_str(o, name);
  if (!s)
    return 1; /* absent is fine: not every key has every member */
  return akv_b64_decode(s, (size_t)-1, p, len) == 0;
}

static char *dup_str(const cJSON *o, const char *name, int *ok)
{
  const char *s = get_str(o, name);
  char *d = s ? strdup(s) : NULL;
  if (!d)
    *ok = 0;
  return d;
}

/* LIFECYCLE: key tags as a {"name":"value"} object; absent means none. */
static int load_tags(const cJSON *j, struct kv_attrs *a)
{
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags"), *t;
  int n;
  if (!tags)
    return 1;
  if (!cJSON_IsObject(tags) || (n = cJSON_GetArraySize(tags)) > 64)
    return 0;
  a->tags = calloc((size_t)n + 1, sizeof(*a->tags));
  if (!a->tags)
    return 0;
  cJSON_ArrayForEach(t, tags)
  {
    if (!cJSON_IsString(t) || !t->string)
      return 0;
    a->tags[a->n_tags].name = strdup(t->string);
    a->tags[a->n_tags].value = strdup(t->valuestring);
    a->n_tags++;
    if (!a->tags[a->n_tags - 1].name || !a->tags[a->n_tags - 1].value)
      return 0;
  }
  return 1;
}

static int add_tags(cJSON *j, const struct kv_attrs *a)
{
  cJSON *o;
  size_t i;
  if (!a->n_tags)
    return 1;
  o = cJSON_AddObjectToObject(j, "tags");
  for (i = 0; o && i < a->n_tags; i++) {
    if (!cJSON_AddStringToObject(o, a->tags[i].name, a->tags[i].value))
      return 0;
  }
  return o != NULL;
}

static CK_RV load_key(struct akv_slot *slot, const cJSON *j, struct akv_object **objs,
                      size_t *n_objs)
{
  struct kv_key *k = calloc(1, sizeof(*k));
  struct akv_keyent *ke = NULL;
  const char *label = get_str(j, "label"), *src = get_str(j, "src");
  int64_t v[8] = {0};
  int ok = k != NULL;
  CK_RV rv = CKR_FUNCTION_FAILED;

  *n_objs = 0;
  if (!ok || !label || !src)
    goto out;
  k->kid = dup_str(j, "kid", &ok);
  k->name = dup_str(j, "name", &ok);
  k->version = dup_str(j, "version", &ok);
  ok = ok && get_i64(j, "kty", &v[0]) && get_i64(j, "hsm", &v[1]) && get_i64(j, "crv", &v[2]) &&
       get_i64(j, "ops", &v[3]) && get_i64(j, "enabled", &v[4]) &&
       get_i64(j, "nbf", &k->attrs.nbf) && get_i64(j, "exp", &k->attrs.exp) &&
       get_i64(j, "created", &k->attrs.created) && get_i64(j, "updated", &k->attrs.updated) &&
       get_b64(j, "n", &k->n, &k->n_len) && get_b64(j, "e", &k->e, &k->e_len) &&
       get_b64(j, "x", &k->x, &k->x_len) && get_b64(j, "y", &k->y, &k->y_len);
  if (!ok || v[0] < KV_KTY_RSA || v[0] > KV_KTY_OCT || v[2] < 0 || v[2] > KV_CRV_P256K)
    goto out;
  k->kty = (enum kv_kty)v[0];
  k->hsm = v[1] != 0;
  k->crv = (enum kv_crv)v[2];
  k->key_ops = (unsigned)v[3];
  k->attrs.enabled = v[4] != 0;
  /* LIFECYCLE: tags (the pkcs11-id tag gives CKA_ID). */
  if (!load_tags(j, &k->attrs))
    goto out;
  /* The key material is checked again (kv_key_to_pkey), as if it came from the vault. */
  rv = akv_keyent_new(k, &ke);
  k = NULL;
  if (rv == CKR_OK)
    rv = akv_objects_from_key(slot, ke, label, src, objs, n_objs);
out:
  kv_key_free(k);
  akv_keyent_unref(ke);
  return rv;
}

static CK_RV load_object(struct akv_slot *slot, const cJSON *j, struct akv_object **out)
{
  const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(j, "attrs"), *a;
  const char *src = get_str(j, "src");
  int64_t cls = 0, created = 0, updated = 0, type;
  unsigned char *val;
  size_t len;
  struct akv_ab b;

  memset(&b, 0, sizeof(b));
  if (!src || !cJSON_IsArray(attrs) || !get_i64(j, "cls", &cls) ||
      !get_i64(j, "created", &created) || !get_i64(j, "updated", &updated) ||
      (cls != CKO_CERTIFICATE && cls != CKO_DATA))
    return CKR_FUNCTION_FAILED;
  cJSON_ArrayForEach(a, attrs)
  {
    val = NULL;
    if (!get_i64(a, "t", &type) || type < 0 || !get_str(a, "v") || !get_b64(a, "v", &val, &len)) {
      akv_attrs_free(b.v, b.n);
      return CKR_FUNCTION_FAILED;
    }
    akv_ab_set(&b, (CK_ATTRIBUTE_TYPE)type, val, len);
    free(val);
  }
  return akv_object_restore(slot, (CK_OBJECT_CLASS)cls, &b, src, created, updated, out);
}

static const cJSON *find_entry(const cJSON *doc, const char *fp)
{
  const cJSON *slots = cJSON_GetObjectItemCaseSensitive(doc, "slots"), *e;
  int64_t format = 0;
  if (!get_i64(doc, "format", &format) || format != CACHE_FORMAT || !cJSON_IsArray(slots))
    return NULL;
  cJSON_ArrayForEach(e, slots)
  {
    const char *f = get_str(e, "fp");
    if (f && strcmp(f, fp) == 0)
      return e;
  }
  return NULL;
}

static int cmp_handle(const void *a, const void *b)
{
  const struct akv_object *x = *(struct akv_object *const *)a, *y = *(struct akv_object *const *)b;
  return x->handle < y->handle ? -1 : x->handle > y->handle;
}

static CK_RV push(struct akv_snapshot *s, size_t *cap, struct akv_object *obj)
{
  if (s->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 64;
    struct akv_object **v = realloc(s->objs, ncap * sizeof(*v));
    if (!v) {
      akv_object_unref(obj);
      return CKR_HOST_MEMORY;
    }
    s->objs = v;
    *cap = ncap;
  }
  s->objs[s->n++] = obj;
  return CKR_OK;
}

/* The entry's pending keys (absent: none). */
static CK_RV load_pending(const cJSON *e, struct akv_snapshot *snap)
{
  const cJSON *pending = cJSON_GetObjectItemCaseSensitive(e, "pending"), *it;
  int64_t created, updated;
  const char *name;
  int n;

  if (!pending)
    return CKR_OK;
  if (!cJSON_IsArray(pending))
    return CKR_FUNCTION_FAILED;
  n = cJSON_GetArraySize(pending);
  snap->lazy = calloc((size_t)n + 1, sizeof(*snap->lazy));
  if (!snap->lazy)
    return CKR_HOST_MEMORY;
  cJSON_ArrayForEach(it, pending)
  {
    name = get_str(it, "name");
    if (!name || !name[0] || strlen(name) > 127 || !get_i64(it, "created", &created) ||
        !get_i64(it, "updated", &updated) || snap->n_lazy >= (size_t)n)
      return CKR_FUNCTION_FAILED;
    snap->lazy[snap->n_lazy] = akv_lazykey_new(name, created, updated);
    if (!snap->lazy[snap->n_lazy])
      return CKR_HOST_MEMORY;
    snap->n_lazy++;
  }
  return CKR_OK;
}

CK_RV akv_cache_file_load(struct akv_slot *slot, struct akv_snapshot **out)
{
  char path[4096], fp[65];
  cJSON *doc = NULL;
  const cJSON *e, *it;
  struct akv_snapshot *snap = NULL;
  struct akv_object *objs[2];
  size_t cap = 0, n, i;
  int64_t built_at = 0, now = akv_now();
  CK_RV rv = CKR_FUNCTION_FAILED;

  *out = NULL;
  if (!cache_path(path, sizeof(path)) || !fingerprint(slot->cfg, fp))
    return rv;
  doc = read_file(path);
  e = doc ? find_entry(doc, fp) : NULL;
  if (!e || !get_i64(e, "built_at", &built_at) || built_at > now ||
      now - built_at >= slot->cfg->ttl_s) {
    e = NULL; /* none, or stale: listing is expected, nothing to warn about */
    goto out;
  }
  snap = calloc(1, sizeof(*snap));
  if (!snap) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  snap->refs = 1;
  snap->built_at = built_at;
  rv = CKR_OK;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "keys"))
  {
    rv = load_key(slot, it, objs, &n);
    for (i = 0; i < n; i++) {
      if (rv == CKR_OK)
        rv = push(snap, &cap, objs[i]);
      else
        akv_object_unref(objs[i]);
    }
    if (rv != CKR_OK)
      goto out;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "objects"))
  {
    rv = load_object(slot, it, &objs[0]);
    if (rv == CKR_OK)
      rv = push(snap, &cap, objs[0]);
    if (rv != CKR_OK)
      goto out;
  }
  rv = load_pending(e, snap);
  if (rv != CKR_OK)
    goto out;
  qsort(snap->objs, snap->n, sizeof(*snap->objs), cmp_handle);
  akv_dbg(AKV_LOGC_CACHE, "%s: %zu object(s), %zu pending key(s) from the cache file (%lld s old)",
          slot->cfg->url, snap->n, snap->n_lazy, (long long)(now - built_at));
out:
  if (rv != CKR_OK) {
    if (e)
      akv_warn(AKV_LOGC_CACHE, "cache file %s: unusable entry for %s, listing instead", path,
               slot->cfg->url);
    akv_snapshot_unref(snap);
    snap = NULL;
  }
  cJSON_Delete(doc);
  *out = snap;
  return snap ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int add_b64(cJSON *o, const char *name, const unsigned char *p, size_t len)
{
  char *s;
  cJSON *it;
  if (!p)
    return 1;
  s = akv_b64_encode(p, len);
  it = s ? cJSON_AddStringToObject(o, name, s) : NULL;
  free(s);
  return it != NULL;
}

static int add_num(cJSON *o, const char *name, int64_t v)
{
  return cJSON_AddNumberToObject(o, name, (double)v) != NULL;
}

static cJSON *key_json(const struct akv_object *obj)
{
  const struct kv_key *k = obj->key;
  const CK_ATTRIBUTE *label = akv_object_attr(obj, CKA_LABEL);
  cJSON *j = cJSON_CreateObject();
  char *l = label ? strndup(label->pValue, label->ulValueLen) : NULL;
  int ok = j && l && cJSON_AddStringToObject(j, "label", l) &&
           cJSON_AddStringToObject(j, "src", obj->src) &&
           cJSON_AddStringToObject(j, "kid", k->kid) &&
           cJSON_AddStringToObject(j, "name", k->name) &&
           cJSON_AddStringToObject(j, "version", k->version) && add_num(j, "kty", k->kty) &&
           add_num(j, "hsm", k->hsm) && add_num(j, "crv", k->crv) &&
           add_num(j, "ops", k->key_ops) && add_num(j, "enabled", k->attrs.enabled) &&
           add_num(j, "nbf", k->attrs.nbf) && add_num(j, "exp", k->attrs.exp) &&
           add_num(j, "created", k->attrs.created) && add_num(j, "updated", k->attrs.updated) &&
           add_b64(j, "n", k->n, k->n_len) && add_b64(j, "e", k->e, k->e_len) &&
           add_b64(j, "x", k->x, k->x_len) && add_b64(j, "y", k->y, k->y_len) &&
           add_tags(j, &k->attrs); /* LIFECYCLE */
  free(l);
  if (!ok) {
    cJSON_Delete(j);
    j = NULL;
  }
  return j;
}

static cJSON *object_json(const struct akv_object *obj)
{
  cJSON *j = cJSON_CreateObject(), *attrs = NULL, *a;
  size_t i;
  int ok = j && cJSON_AddStringToObject(j, "src", obj->src) && add_num(j, "cls", obj->cls) &&
           add_num(j, "created", obj->src_created) && add_num(j, "updated", obj->src_updated) &&
           (attrs = cJSON_AddArrayToObject(j, "attrs")) != NULL;
  for (i = 0; ok && i < obj->n_attrs; i++) {
    a = cJSON_CreateObject();
    ok = a && cJSON_AddItemToArray(attrs, a) && add_num(a, "t", (int64_t)obj->attrs[i].type) &&
         add_b64(a, "v", obj->attrs[i].pValue, obj->attrs[i].ulValueLen);
  }
  if (!ok) {
    cJSON_Delete(j);
    j = NULL;
  }
  return j;
}

static cJSON *entry_json(const struct akv_slot *slot, const struct akv_snapshot *snap,
                         const char *fp)
{
  cJSON *e = cJSON_CreateObject(), *keys, *objs, *pending, *it;
  size_t i, k;
  int ok = e && cJSON_AddStringToObject(e, "fp", fp) && add_num(e, "built_at", snap->built_at) &&
           (keys = cJSON_AddArrayToObject(e, "keys")) != NULL &&
           (objs = cJSON_AddArrayToObject(e, "objects")) != NULL &&
           (pending = cJSON_AddArrayToObject(e, "pending")) != NULL;
  (void)slot;
  for (i = 0; ok && i < snap->n; i++) {
    const struct akv_object *o = snap->objs[i];
    if (o->keyent) {
      /* One entry per key version: the private and public objects share it. */
      for (k = 0; k < i && snap->objs[k]->keyent != o->keyent; k++)
        ;
      if (k < i)
        continue;
      it = key_json(o);
      ok = it && cJSON_AddItemToArray(keys, it);
    } else if (o->cls == CKO_CERTIFICATE || o->cls == CKO_DATA) {
      it = object_json(o);
      ok = it && cJSON_AddItemToArray(objs, it);
    }
  }
  /* Every pending entry is written as pending: one a search resolved since is read once more by
   * the next process, which is cheaper than taking the cache's lock here. */
  for (i = 0; ok && i < snap->n_lazy; i++) {
    const struct akv_lazykey *lz = snap->lazy[i];
    it = cJSON_CreateObject();
    if (!it || !cJSON_AddItemToArray(pending, it)) {
      cJSON_Delete(it);
      ok = 0;
      break;
    }
    ok = cJSON_AddStringToObject(it, "name", lz->name) && add_num(it, "created", lz->created) &&
         add_num(it, "updated", lz->updated);
  }
  if (!ok) {
    cJSON_Delete(e);
    e = NULL;
  }
  return e;
}

static int write_atomic(const char *path, const char *text)
{
  char tmp[4200];
  size_t len = strlen(text), off = 0;
  ssize_t w;
  int fd, ok = 1;

  if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(tmp))
    return 0;
  (void)unlink(tmp);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return 0;
  while (ok && off < len) {
    w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    ok = w > 0;
    if (ok)
      off += (size_t)w;
  }
  ok = close(fd) == 0 && ok;
  if (ok)
    ok = rename(tmp, path) == 0;
  if (!ok)
    (void)unlink(tmp);
  return ok;
}

void akv_cache_file_save(struct akv_slot *slot, const struct akv_snapshot *snap, unsigned flags)
{
  char path[4096], fp[65];
  cJSON *doc = NULL, *slots, *entry = NULL;
  char *text = NULL;
  int64_t format = 0;
  int lock = -1, i;

  if (!snap || !cache_path(path, sizeof(path)) || !fingerprint(slot->cfg, fp))
    return;
  ensure_dir(path);
  if (!(flags & AKV_CF_HAVE_LOCK))
    lock = akv_cache_file_lock();
  /* Read-modify-write under the lock: other slots' (and other configs') entries are kept. */
  doc = read_file(path);
  slots = doc ? cJSON_GetObjectItemCaseSensitive(doc, "slots") : NULL;
  if (!doc || !cJSON_IsArray(slots) || !get_i64(doc, "format", &format) || format != CACHE_FORMAT) {
    cJSON_Delete(doc);
    doc = cJSON_CreateObject();
    slots =
        doc && add_num(doc, "format", CACHE_FORMAT) ? cJSON_AddArrayToObject(doc, "slots") : NULL;
    if (!slots)
      goto out;
  }
  for (i = cJSON_GetArraySize(slots) - 1; i >= 0; i--) {
    const cJSON *old = cJSON_GetArrayItem(slots, i);
    const char *f = get_str(old, "fp");
    int64_t built_at = 0;
    if (f && strcmp(f, fp) == 0 && (flags & AKV_CF_IF_NOT_OLDER) &&
        get_i64(old, "built_at", &built_at) && built_at > snap->built_at)
      goto out; /* another process listed since: its entry is the better one */
    if (!f || strcmp(f, fp) == 0)
      cJSON_DeleteItemFromArray(slots, i);
  }
  entry = entry_json(slot, snap, fp);
  if (!entry || !cJSON_AddItemToArray(slots, entry)) {
    cJSON_Delete(entry);
    goto out;
  }
  text = cJSON_PrintUnformatted(doc);
  if (!text || !write_atomic(path, text))
    akv_warn(AKV_LOGC_CACHE, "cache file %s: cannot write it: %s", path, strerror(errno));
out:
  free(text);
  cJSON_Delete(doc);
  akv_cache_file_unlock(lock);
}

/* ---- locking ------------------------------------------------------------------------------ */

int akv_cache_file_lock(void)
{
  char path[4096], lock[4200];
  struct timespec ts = {0, 50 * 1000000L};
  int fd, waited;

  if (!cache_path(path, sizeof(path)))
    return -1;
  ensure_dir(path);
  if (snprintf(lock, sizeof(lock), "%s.lock", path) >= (int)sizeof(lock))
    return -1;
  fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  for (waited = 0; waited < LOCK_WAIT_MS; waited += 50) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      return fd;
    if (errno != EWOULDBLOCK && errno != EINTR)
      break;
    nanosleep(&ts, NULL);
  }
  akv_warn(AKV_LOGC_CACHE, "cache file lock %s: not acquired, refreshing without it", lock);
  close(fd);
  return -1;
}

void akv_cache_file_unlock(int fd)
{
  if (fd < 0)
    return;
  (void)flock(fd, LOCK_UN);
  close(fd);
}
