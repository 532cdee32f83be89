/* SPDX-License-Identifier: Apache-2.0 */
/* A key re-found by the CKA_ID it had before a rotation (docs/lifecycle.md "Keys re-found by CKA_ID
 * after a rotation"): a process that remembered a key's CKA_ID and label (the libp11 engine in a
 * forked nginx worker, a Java KeyStore, an ssh-agent opening its session again) searches by both
 * after the refresh showed the new version. The version with that CKA_ID is read from the vault
 * and answers as the superseded object a process holding the old handle keeps (src/store/cache.c):
 * the same handle, label and source, under the same rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "store/cache.h"
#include "store/object.h"
#include "store/source.h"
#include "store/versions.h"
#include "util/log.h"

/* Older versions read (GET) at most per search, newest first. */
#define REFIND_GETS 4

static const CK_ATTRIBUTE *attr_of(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
  CK_ULONG i;
  for (i = 0; i < n; i++) {
    if (t[i].type == type)
      return &t[i];
  }
  return NULL;
}

static int same_id(const struct akv_object *obj, const unsigned char *id, size_t id_len)
{
  const CK_ATTRIBUTE *a = akv_object_attr(obj, CKA_ID);
  return a && a->ulValueLen == id_len && memcmp(a->pValue, id, id_len) == 0;
}

/* Whether a snapshot (may be NULL) has a current object of the key name with that CKA_ID (then the
 * search's empty answer is the template's doing); the current version into cur (may stay ""). */
static int current_has(struct akv_snapshot *snap, const char *name, const unsigned char *id,
                       size_t id_len, char *cur, size_t cur_len)
{
  size_t i;
  int has = 0;
  for (i = 0; snap && i < snap->n && !has; i++) {
    const struct akv_object *o = snap->objs[i];
    if (!akv_source_names(o->src, AKV_SRC_KEY, name))
      continue;
    has = same_id(o, id, id_len);
    if (o->key && o->key->version)
      snprintf(cur, cur_len, "%s", o->key->version);
  }
  akv_snapshot_unref(snap);
  return has;
}

static int usable(const struct kv_attrs *a, int64_t now)
{
  return a->enabled && !(a->nbf && now < a->nbf) && !(a->exp && now >= a->exp);
}

static int newest_first(const void *a, const void *b)
{
  const struct kv_item *x = *(const struct kv_item *const *)a;
  const struct kv_item *y = *(const struct kv_item *const *)b;
  return x->attrs.created < y->attrs.created ? 1 : x->attrs.created > y->attrs.created ? -1 : 0;
}

/* Reads version v of name; its objects into out when it is usable and has that CKA_ID. */
static CK_RV try_version(struct akv_slot *slot, const char *name, const char *v,
                         const unsigned char *id, size_t id_len, struct akv_object **out,
                         size_t *n_out)
{
  struct kv_key *key = NULL;
  size_t i;
  kv_rc rc = kv_get_key(slot->client, name, v, &key);
  CK_RV rv;

  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "key %s/%s: reading an older version for a search by CKA_ID: %s", name,
             v, kv_rc_str(rc));
    return CKR_OK;
  }
  if (!usable(&key->attrs, akv_now())) {
    kv_key_free(key);
    return CKR_OK;
  }
  rv = akv_cache_key_objects(slot, key, name, out, n_out); /* takes key */
  if (rv == CKR_OK && *n_out && same_id(out[0], id, id_len))
    return CKR_OK;
  for (i = 0; i < *n_out; i++)
    akv_object_unref(out[i]);
  *n_out = 0;
  return rv;
}

/* The vault's side: one page of the key's versions, then the newest usable ones but the current. */
static CK_RV from_vault(struct akv_slot *slot, const char *name, const char *cur,
                        const unsigned char *id, size_t id_len, struct akv_object **out,
                        size_t *n_out)
{
  struct kv_item_list vl = {NULL, 0};
  const struct kv_item **cand = NULL;
  int64_t now = akv_now();
  size_t i, n = 0;
  CK_RV rv = CKR_OK;
  kv_rc rc = kv_list_key_versions_page(slot->client, name, &vl);

  if (rc != KV_OK) {
    if (rc != KV_E_NOT_FOUND && rc != KV_E_FORBIDDEN)
      akv_warn(AKV_LOGC_CACHE, "key %s: listing its versions for a search by CKA_ID: %s", name,
               kv_rc_str(rc));
    kv_item_list_free(&vl);
    return CKR_OK;
  }
  if (vl.n && !(cand = calloc(vl.n, sizeof(*cand)))) {
    kv_item_list_free(&vl);
    return CKR_HOST_MEMORY;
  }
  for (i = 0; i < vl.n; i++) {
    const struct kv_item *it = &vl.items[i];
    if (it->version && strcmp(it->version, cur) != 0 && usable(&it->attrs, now))
      cand[n++] = it;
  }
  qsort(cand, n, sizeof(*cand), newest_first);
  for (i = 0; i < n && i < REFIND_GETS && rv == CKR_OK && !*n_out; i++)
    rv = try_version(slot, name, cand[i]->version, id, id_len, out, n_out);
  free(cand);
  kv_item_list_free(&vl);
  return rv;
}

CK_RV akv_versions_refind(struct akv_slot *slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                          struct akv_object **out, size_t *n_out)
{
  const CK_ATTRIBUTE *label = attr_of(t, n, CKA_LABEL), *ida = attr_of(t, n, CKA_ID);
  const CK_ATTRIBUTE *cls = attr_of(t, n, CKA_CLASS), *tok = attr_of(t, n, CKA_TOKEN);
  struct akv_cache *c = slot->cache;
  char name[128], cur[128] = "", memo[168];
  const unsigned char *id;
  size_t id_len, i;
  CK_ULONG cv;
  CK_RV rv;
  int has_client;

  *n_out = 0;
  if (!label || !ida || !label->ulValueLen || label->ulValueLen >= sizeof(name) ||
      !ida->ulValueLen || memchr(label->pValue, 0, label->ulValueLen))
    return CKR_OK;
  /* Token objects only. */
  if (tok && (tok->ulValueLen != sizeof(CK_BBOOL) || !*(const CK_BBOOL *)tok->pValue))
    return CKR_OK;
  /* Keys only: a certificate is not re-found by its older versions (docs/lifecycle.md). */
  if (cls && (cls->ulValueLen != sizeof(cv) || (memcpy(&cv, cls->pValue, sizeof(cv)),
                                                cv != CKO_PRIVATE_KEY && cv != CKO_PUBLIC_KEY)))
    return CKR_OK;
  memcpy(name, label->pValue, label->ulValueLen);
  name[label->ulValueLen] = 0;
  id = ida->pValue;
  id_len = ida->ulValueLen;
  /* versions: "all" lists the older versions already, as NAME/VERSION under these handles. */
  if (slot->cfg->versions_all || !akv_cache_shows(slot->cfg, AKV_SRC_KEY, name, NULL))
    return CKR_OK;
  akv_lock();
  has_client = slot->client != NULL;
  akv_unlock();
  if (!has_client)
    return CKR_OK;
  /* Found before (by this search's rule or held since before the rotation): no request. */
  if ((*n_out = akv_cache_held_find(c, name, id, id_len, out, AKV_KEY_OBJECTS)))
    return CKR_OK;
  if (current_has(akv_cache_peek(c), name, id, id_len, cur, sizeof(cur)) ||
      current_has(akv_cache_cold(c), name, id, id_len, cur, sizeof(cur)))
    return CKR_OK;
  i = (size_t)snprintf(memo, sizeof(memo), "%s|%zu|", name, id_len);
  for (size_t j = 0; j < id_len && j < 16 && i + 2 < sizeof(memo); j++, i += 2)
    snprintf(memo + i, sizeof(memo) - i, "%02x", id[j]);
  if (!akv_cache_memo_claim(c, memo))
    return CKR_OK;
  rv = from_vault(slot, name, cur, id, id_len, out, n_out);
  if (rv != CKR_OK || !*n_out) {
    akv_dbg(AKV_LOGC_CACHE, "key %s: no older version has the CKA_ID searched", name);
    return rv;
  }
  akv_cache_memo_forget(c, memo);
  akv_cache_keep(c, out, *n_out);
  {
    const CK_ATTRIBUTE *v = akv_object_attr(out[0], CKA_AKV_VERSION);
    akv_info(AKV_LOGC_CACHE,
             "key %s: a search by CKA_ID found version %.*s (older than the current one); "
             "it answers for its holders while it is enabled",
             name, v ? (int)v->ulValueLen : 0, v ? (const char *)v->pValue : "");
  }
  return CKR_OK;
}
