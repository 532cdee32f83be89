/* SPDX-License-Identifier: Apache-2.0 */
/* A key or certificate re-found by the CKA_ID it had before a rotation or a renewal
 * (docs/lifecycle.md "Keys re-found by CKA_ID after a rotation"): a process that remembered a
 * key's CKA_ID and label (the libp11 engine in a forked nginx worker, a Java KeyStore, an ssh-agent
 * opening its session again) searches by both after the refresh showed the new version. The
 * version with that CKA_ID is read from the vault and answers as the superseded object a process
 * holding the old handle keeps (src/store/cache.c): the same handle, label and source, under the
 * same rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "store/cache.h"
#include "store/object.h"
#include "store/source.h"
#include "store/versions.h"
#include "util/log.h"

/* Older versions read (GET) at most per search and kind, newest first. */
#define REFIND_GETS 4

/* One search's question: objects of kind (AKV_SRC_KEY, AKV_SRC_CERT) named name with CKA_ID id. */
struct refind {
  struct akv_slot *slot;
  enum akv_source_kind kind;
  const char *name;
  const unsigned char *id;
  size_t id_len;
};

static const char *kind_word(const struct refind *r)
{
  return r->kind == AKV_SRC_KEY ? "key" : "certificate";
}

static const CK_ATTRIBUTE *attr_of(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
  CK_ULONG i;
  for (i = 0; i < n; i++) {
    if (t[i].type == type)
      return &t[i];
  }
  return NULL;
}

static int same_id(const struct akv_object *obj, const struct refind *r)
{
  const CK_ATTRIBUTE *a = akv_object_attr(obj, CKA_ID);
  return a && a->ulValueLen == r->id_len && memcmp(a->pValue, r->id, r->id_len) == 0;
}

/* Whether a snapshot (may be NULL; unreferenced here) has a current object of the name and kind
 * with that CKA_ID (then the search's empty answer is the template's doing); the current version
 * into cur (may stay ""). */
static int current_has(struct akv_snapshot *snap, const struct refind *r, char *cur, size_t len)
{
  size_t i;
  int has = 0;
  for (i = 0; snap && i < snap->n && !has; i++) {
    const struct akv_object *o = akv_snapshot_obj(snap, i);
    const CK_ATTRIBUTE *v;
    if (!akv_source_names(o->src, r->kind, r->name))
      continue;
    has = same_id(o, r);
    if ((v = akv_object_attr(o, CKA_AKV_VERSION)))
      snprintf(cur, len, "%.*s", (int)v->ulValueLen, (const char *)v->pValue);
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

/* The objects the listing makes of version v (a key's private and public key, a certificate);
 * none when the version is not usable or cannot be represented (logged). */
static CK_RV version_objects(const struct refind *r, const char *v, struct akv_object **out,
                             size_t *n_out)
{
  struct kv_client *cl = r->slot->client;
  struct kv_key *key = NULL;
  struct kv_cert *cert = NULL;
  char src[1024];
  kv_rc rc;
  CK_RV rv = CKR_OK;

  *n_out = 0;
  rc = r->kind == AKV_SRC_KEY ? kv_get_key(cl, r->name, v, &key, NULL)
                              : kv_get_certificate(cl, r->name, v, &cert, NULL);
  if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "%s %s/%s: reading an older version for a search by CKA_ID: %s",
             kind_word(r), r->name, v, kv_rc_str(rc));
    return CKR_OK;
  }
  if (key) {
    if (usable(&key->attrs, akv_now()))
      return akv_cache_key_objects(r->slot, key, r->name, out, n_out); /* takes key */
    kv_key_free(key);
    return CKR_OK;
  }
  if (usable(&cert->attrs, akv_now())) {
    akv_source_id(src, sizeof(src), AKV_SRC_CERT, r->name, NULL);
    rv = akv_object_from_cert(r->slot, cert, src, &out[0]);
    if (rv == CKR_OK)
      *n_out = 1;
    else if (rv == CKR_DEVICE_ERROR)
      rv = CKR_OK; /* logged: malformed certificate */
  }
  kv_cert_free(cert);
  return rv;
}

/* The vault's side: one page of the versions, then the newest usable ones but the current, until
 * one has the CKA_ID. */
static CK_RV from_vault(const struct refind *r, const char *cur, struct akv_object **out,
                        size_t *n_out)
{
  struct kv_item_list vl = {NULL, 0};
  const struct kv_item **cand = NULL;
  int64_t now = akv_now();
  size_t i, j, n = 0;
  CK_RV rv = CKR_OK;
  kv_rc rc = r->kind == AKV_SRC_KEY
                 ? kv_list_key_versions_page(r->slot->client, r->name, &vl, NULL)
                 : kv_list_certificate_versions_page(r->slot->client, r->name, &vl, NULL);

  if (rc != KV_OK) {
    if (rc != KV_E_NOT_FOUND && rc != KV_E_FORBIDDEN && rc != KV_E_UNSUPPORTED)
      akv_warn(AKV_LOGC_CACHE, "%s %s: listing its versions for a search by CKA_ID: %s",
               kind_word(r), r->name, kv_rc_str(rc));
    kv_item_list_free(&vl);
    return CKR_OK;
  }
  if (vl.n && !(cand = calloc(vl.n, sizeof(*cand)))) {
    kv_item_list_free(&vl);
    return CKR_HOST_MEMORY;
  }
  for (i = 0; i < vl.n; i++) {
    const struct kv_item *it = kv_item_list_at(&vl, i);
    if (it->version && strcmp(it->version, cur) != 0 && usable(&it->attrs, now))
      cand[n++] = it;
  }
  qsort(cand, n, sizeof(*cand), newest_first);
  for (i = 0; i < n && i < REFIND_GETS && rv == CKR_OK && !*n_out; i++) {
    rv = version_objects(r, cand[i]->version, out, n_out);
    if (rv == CKR_OK && *n_out && same_id(out[0], r))
      break;
    for (j = 0; j < *n_out; j++)
      akv_object_unref(out[j]);
    *n_out = 0;
  }
  free(cand);
  kv_item_list_free(&vl);
  return rv;
}

/* One kind: the superseded table first, then (unless a current object has the CKA_ID, or the same
 * question missed within the memo's few seconds) the vault. */
static CK_RV refind_kind(const struct refind *r, struct akv_object **out, size_t cap, size_t *n_out)
{
  struct akv_cache *c = r->slot->cache;
  char cur[128] = "", memo[168];
  size_t i, j;
  CK_RV rv;

  if ((*n_out = akv_cache_held_find(c, r->kind, r->name, r->id, r->id_len, out, cap)))
    return CKR_OK;
  if (current_has(akv_cache_peek(c), r, cur, sizeof(cur)) ||
      current_has(akv_cache_cold(c), r, cur, sizeof(cur)))
    return CKR_OK;
  /* The memo key: kind, name, and the CKA_ID's length and first 16 bytes. */
  i = (size_t)snprintf(memo, sizeof(memo), "%c|%s|%zu|", (char)r->kind, r->name, r->id_len);
  for (j = 0; j < r->id_len && j < 16 && i + 2 < sizeof(memo); j++, i += 2)
    snprintf(memo + i, sizeof(memo) - i, "%02x", r->id[j]);
  /* Only a miss is memoed: a search running while another one reads the vault for the same
   * question reads it too rather than answer nothing before the other's answer is in. */
  if (!akv_cache_memo_claim(c, memo))
    return CKR_OK;
  akv_cache_memo_forget(c, memo);
  rv = from_vault(r, cur, out, n_out);
  if (rv != CKR_OK || !*n_out) {
    akv_dbg(AKV_LOGC_CACHE, "%s %s: no older version has the CKA_ID searched", kind_word(r),
            r->name);
    akv_cache_memo_claim(c, memo);
    return rv;
  }
  akv_cache_keep(c, out, *n_out);
  {
    const CK_ATTRIBUTE *v = akv_object_attr(out[0], CKA_AKV_VERSION);
    akv_info(AKV_LOGC_CACHE,
             "%s %s: a search by CKA_ID found version %.*s (older than the current one); "
             "it answers for its holders while it is enabled",
             kind_word(r), r->name, v ? (int)v->ulValueLen : 0, v ? (const char *)v->pValue : "");
  }
  return CKR_OK;
}

CK_RV akv_versions_refind(struct akv_slot *slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                          struct akv_object **out, size_t *n_out)
{
  const CK_ATTRIBUTE *label = attr_of(t, n, CKA_LABEL), *ida = attr_of(t, n, CKA_ID);
  const CK_ATTRIBUTE *cls = attr_of(t, n, CKA_CLASS), *tok = attr_of(t, n, CKA_TOKEN);
  const struct akv_slot_config *sc = slot->cfg;
  struct refind r;
  char name[128];
  CK_ULONG cv = 0;
  size_t got = 0;
  int keys, certs, has_client;
  CK_RV rv = CKR_OK;

  *n_out = 0;
  if (!label || !ida || !label->ulValueLen || label->ulValueLen >= sizeof(name) ||
      !ida->ulValueLen || memchr(label->pValue, 0, label->ulValueLen))
    return CKR_OK;
  /* Token objects only. */
  if (tok && (tok->ulValueLen != sizeof(CK_BBOOL) || !*(const CK_BBOOL *)tok->pValue))
    return CKR_OK;
  if (cls && cls->ulValueLen != sizeof(cv))
    return CKR_OK;
  if (cls)
    memcpy(&cv, cls->pValue, sizeof(cv));
  memcpy(name, label->pValue, label->ulValueLen);
  name[label->ulValueLen] = 0;
  /* versions: "all" lists the older versions already, as NAME/VERSION under these handles. */
  if (sc->versions_all)
    return CKR_OK;
  keys = (!cls || cv == CKO_PRIVATE_KEY || cv == CKO_PUBLIC_KEY) &&
         akv_cache_shows(sc, AKV_SRC_KEY, name, NULL);
  certs = (!cls || cv == CKO_CERTIFICATE) && (sc->objects & AKV_OBJ_CERTIFICATES) &&
          sc->kind != AKV_VAULT_MHSM && akv_cache_shows(sc, AKV_SRC_CERT, name, NULL);
  if (!keys && !certs)
    return CKR_OK;
  akv_lock();
  has_client = slot->client != NULL;
  akv_unlock();
  if (!has_client)
    return CKR_OK;
  r.slot = slot;
  r.name = name;
  r.id = ida->pValue;
  r.id_len = ida->ulValueLen;
  /* A key's objects (its attestation objects too when held), then a certificate. */
  if (keys) {
    r.kind = AKV_SRC_KEY;
    rv = refind_kind(&r, out, AKV_KEY_OBJECTS, &got);
    *n_out = got;
  }
  if (certs && rv == CKR_OK) {
    r.kind = AKV_SRC_CERT;
    rv = refind_kind(&r, out + *n_out, 1, &got);
    *n_out += got;
  }
  return rv;
}
