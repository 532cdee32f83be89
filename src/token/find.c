/* SPDX-License-Identifier: Apache-2.0 */
/* C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal: a search over the slot's snapshot
 * (src/store/cache.c) and the session's own objects, with the template matched by
 * akv_object_matches (src/store/object.c). */
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "store/attest.h"
#include "store/cache.h"
#include "store/cold.h"
#include "store/object.h"
#include "store/versions.h"
#include "token/find.h"
#include "token/session.h"

/* akv_object_matches, with a failed fetch of a secret's value recorded on the session. */
static int matches(struct akv_session *s, struct akv_object *obj, const CK_ATTRIBUTE *t, CK_ULONG n)
{
  struct akv_fetch_status failed = {KV_OK, 0};
  int m = akv_object_matches(obj, t, n, &failed);
  if (failed.rc != KV_OK)
    akv_session_fetch_failed(s, &failed);
  return m;
}

/* The handles found are kept in blocks (src/util/ptrs.h: a search of every object of a large slot
 * makes no allocation above glibc's mmap threshold), each handle's value in a pointer. */
_Static_assert(sizeof(CK_OBJECT_HANDLE) <= sizeof(uintptr_t), "a handle fits in a pointer");

static CK_RV push_handle(struct akv_session *s, CK_OBJECT_HANDLE h)
{
  if (akv_ptrs_put(&s->find_handles, s->find_n, (void *)(uintptr_t)h) != 0)
    return CKR_HOST_MEMORY;
  s->find_n++;
  return CKR_OK;
}

struct lazy_match {
  const struct akv_slot_config *sc;
  const CK_ATTRIBUTE *t;
  CK_ULONG n;
};

static int ulong_in(const CK_ATTRIBUTE *a, const CK_ULONG *set, size_t n)
{
  CK_ULONG v;
  size_t i;
  if (a->ulValueLen != sizeof(CK_ULONG))
    return 0;
  memcpy(&v, a->pValue, sizeof(v));
  for (i = 0; i < n; i++) {
    if (set[i] == v)
      return 1;
  }
  return 0;
}

static int bool_is(const CK_ATTRIBUTE *a, CK_BBOOL want)
{
  return a->ulValueLen == sizeof(CK_BBOOL) && (*(const CK_BBOOL *)a->pValue != 0) == (want != 0);
}

/* Whether an object of a pending key (cache.h) could match the template, judged by what the listing
 * tells: the key's name is the label of its objects, which are token objects, private only with
 * login required (class_private), of the classes and types the vault kind can hold; on a Managed
 * HSM, when the search asks for attestation objects (akv_attest_asked), also its data object
 * labelled "NAME attestation". Anything else can only be known by reading the key, so
 * it counts as a possible match. */
static int lazy_may_match(const struct akv_lazykey *lz, const void *arg)
{
  static const CK_ULONG kv_classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
  static const CK_ULONG hsm_classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY};
  static const CK_ULONG kv_types[] = {CKK_RSA, CKK_EC};
  static const CK_ULONG hsm_types[] = {CKK_RSA, CKK_EC, CKK_AES};
  static const CK_ULONG att_classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKO_DATA};
  static const size_t suffix = sizeof(AKV_ATTESTATION_LABEL_SUFFIX) - 1;
  const struct lazy_match *m = arg;
  int hsm = m->sc->kind == AKV_VAULT_MHSM;
  int att = hsm && akv_attest_asked(m->t, m->n);
  size_t nl = strlen(lz->name);
  CK_ULONG i;

  for (i = 0; i < m->n; i++) {
    const CK_ATTRIBUTE *a = &m->t[i];
    switch (a->type) {
    case CKA_CLASS:
      if (!(att ? ulong_in(a, att_classes, 4)
                : ulong_in(a, hsm ? hsm_classes : kv_classes, hsm ? 3 : 2)))
        return 0;
      break;
    case CKA_KEY_TYPE:
      if (!ulong_in(a, hsm ? hsm_types : kv_types, hsm ? 3 : 2))
        return 0;
      break;
    case CKA_LABEL:
      if (a->ulValueLen < nl || memcmp(a->pValue, lz->name, nl) != 0)
        return 0;
      if (a->ulValueLen != nl &&
          (!att || a->ulValueLen != nl + suffix ||
           memcmp((const char *)a->pValue + nl, AKV_ATTESTATION_LABEL_SUFFIX, suffix) != 0))
        return 0;
      break;
    case CKA_TOKEN:
      if (!bool_is(a, CK_TRUE))
        return 0;
      break;
    case CKA_PRIVATE:
      if (!bool_is(a, CK_FALSE) && !m->sc->login_required)
        return 0;
      break;
    default:
      break;
    }
  }
  return 1;
}

static int slot_has_client(struct akv_slot *slot)
{
  int v;
  akv_lock();
  v = slot->client != NULL;
  akv_unlock();
  return v;
}

/* The handles of the snapshot's and the session's objects matching the template, in s->find_*. */
static CK_RV collect(struct akv_session *s, struct akv_snapshot *snap, const CK_ATTRIBUTE *t,
                     CK_ULONG n)
{
  struct akv_object **sobjs = NULL;
  size_t i, n_sobjs;
  CK_RV rv = CKR_OK;
  int user;

  akv_ptrs_free(&s->find_handles);
  s->find_n = s->find_pos = 0;
  /* The login state once for the whole search (akv_session_can_see takes the module lock). */
  user = akv_session_logged_in(s);
  for (i = 0; i < snap->n && rv == CKR_OK; i++) {
    struct akv_object *o = akv_snapshot_obj(snap, i);
    if ((user || !o->is_private) && matches(s, o, t, n)) {
      /* Its handle goes to the caller: kept across a rotation (docs/lifecycle.md). */
      akv_cache_hand_out(s->slot->cache, o);
      rv = push_handle(s, o->handle);
    }
  }
  n_sobjs = akv_session_objects(s, &sobjs);
  for (i = 0; i < n_sobjs; i++) {
    if (rv == CKR_OK && (user || !sobjs[i]->is_private) && matches(s, sobjs[i], t, n))
      rv = push_handle(s, sobjs[i]->handle);
    akv_object_unref(sobjs[i]);
  }
  free(sobjs);
  return rv;
}

/* A search by label that found nothing: a key of that name may have been created in the vault
 * since the listing (docs/design.md "Keys created since the listing"). When a key of that name
 * could match the template, asks the cache to read it (one GET, at most once per name per few
 * seconds); true when it published objects, so the search runs again. A failed read leaves the
 * answer to the cache (logged by the cache). */
static int created_since(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n)
{
  struct lazy_match m = {s->slot->cfg, t, n};
  struct akv_lazykey probe;
  char name[128];
  int published = 0;
  CK_ULONG j;

  for (j = 0; j < n && t[j].type != CKA_LABEL; j++)
    ;
  if (j == n || t[j].ulValueLen == 0 || t[j].ulValueLen >= sizeof(name))
    return 0;
  memcpy(name, t[j].pValue, t[j].ulValueLen);
  name[t[j].ulValueLen] = 0;
  memset(&probe, 0, sizeof(probe));
  probe.name = name;
  if (!lazy_may_match(&probe, &m))
    return 0;
  return akv_cache_read_key(s->slot->cache, name, &published) == CKR_OK && published;
}

/* The template's CKA_LABEL as a string, when it names one that could be a vault name (no NUL,
 * shorter than len) and the search may match token objects. */
static int label_of(const CK_ATTRIBUTE *t, CK_ULONG n, char *name, size_t len)
{
  CK_ULONG j;
  for (j = 0; j < n; j++) {
    if (t[j].type == CKA_TOKEN && !bool_is(&t[j], CK_TRUE))
      return 0;
  }
  for (j = 0; j < n && t[j].type != CKA_LABEL; j++)
    ;
  if (j == n || t[j].ulValueLen == 0 || t[j].ulValueLen >= len ||
      memchr(t[j].pValue, 0, t[j].ulValueLen))
    return 0;
  memcpy(name, t[j].pValue, t[j].ulValueLen);
  name[t[j].ulValueLen] = 0;
  return 1;
}

/* A search by label and CKA_ID that found nothing: an older version of the key may have that
 * CKA_ID (a process that re-finds a key it knew before a rotation: docs/lifecycle.md "Keys
 * re-found by CKA_ID after a rotation"). Its matching objects join the answer. */
static CK_RV older_version(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n)
{
  struct akv_object *objs[AKV_REFIND_OBJECTS];
  size_t n_objs = 0, i;
  int user = akv_session_logged_in(s);
  CK_RV rv = akv_versions_refind(s->slot, t, n, objs, &n_objs);

  for (i = 0; i < n_objs; i++) {
    if (rv == CKR_OK && (user || !objs[i]->is_private) && matches(s, objs[i], t, n))
      rv = push_handle(s, objs[i]->handle);
    akv_object_unref(objs[i]);
  }
  return rv;
}

/* A search by CKA_ID without a label, of token objects: what akv_cache_id_miss lists again for
 * when it finds nothing (docs/design.md "Keys created since the listing"). */
static int by_id_alone(const CK_ATTRIBUTE *t, CK_ULONG n)
{
  int id = 0;
  CK_ULONG j;
  for (j = 0; j < n; j++) {
    if (t[j].type == CKA_LABEL || (t[j].type == CKA_TOKEN && !bool_is(&t[j], CK_TRUE)))
      return 0;
    if (t[j].type == CKA_ID && t[j].ulValueLen > 0)
      id = 1;
  }
  return id;
}

/* The snapshot a search runs on, with the pending keys it may match read (s->device_error set
 * when a listing in this thread failed). */
static CK_RV search_snapshot(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                             struct akv_snapshot **out)
{
  struct akv_snapshot *snap = NULL;
  char name[128];
  long http = 0;
  CK_RV rv;

  /* By label, before the slot's first listing: the objects of that name read by name
   * (docs/design.md "Cold search by label"). */
  if (label_of(t, n, name, sizeof(name)))
    rv = akv_cold_get(s->slot, name, &snap, &http);
  else
    rv = akv_cache_get(s->slot->cache, &snap, &http);
  if (rv == CKR_OK && snap->n_lazy) {
    /* Keys the listing named but nobody has read yet: read those the search may match, then
     * search the snapshot they were published in. */
    struct lazy_match m = {s->slot->cfg, t, n};
    akv_snapshot_unref(snap);
    snap = NULL;
    rv = akv_cache_resolve(s->slot->cache, lazy_may_match, &m, &http);
    if (rv == CKR_OK && !(snap = akv_cache_peek(s->slot->cache)))
      rv = CKR_DEVICE_ERROR;
  }
  if (rv != CKR_OK) {
    /* The failed listing's (or read's) HTTP status came back with the cache call. */
    if (rv == CKR_DEVICE_ERROR && http > 0)
      s->device_error = (CK_ULONG)http;
    return rv;
  }
  *out = snap;
  return CKR_OK;
}

CK_RV akv_find_init(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n)
{
  struct akv_snapshot *snap = NULL, *seen = NULL;
  CK_ULONG j;
  CK_RV rv;

  if (s->find_active)
    return CKR_OPERATION_ACTIVE;
  for (j = 0; j < n; j++) {
    if (!t[j].pValue && t[j].ulValueLen)
      return CKR_ARGUMENTS_BAD;
  }
  /* "pin": "certificate_password" before the first login: no credential, so no object at all
   * (docs/security.md "Login"). */
  if (s->slot->cfg->pin_certificate && !akv_session_logged_in(s) && !slot_has_client(s->slot)) {
    akv_ptrs_free(&s->find_handles);
    s->find_n = s->find_pos = 0;
    s->find_active = 1;
    return CKR_OK;
  }
  rv = search_snapshot(s, t, n, &seen);
  if (rv != CKR_OK)
    return rv;
  rv = collect(s, seen, t, n);
  if (rv == CKR_OK && s->find_n == 0 && created_since(s, t, n) &&
      (snap = akv_cache_peek(s->slot->cache))) {
    rv = collect(s, snap, t, n);
    akv_snapshot_unref(snap);
  }
  /* By CKA_ID alone: a key created since the listing is known only by listing again. */
  if (rv == CKR_OK && s->find_n == 0 && by_id_alone(t, n) &&
      akv_cache_id_miss(s->slot->cache, seen) && (rv = search_snapshot(s, t, n, &snap)) == CKR_OK) {
    rv = collect(s, snap, t, n);
    akv_snapshot_unref(snap);
  }
  akv_snapshot_unref(seen);
  if (rv == CKR_OK && s->find_n == 0)
    rv = older_version(s, t, n);
  if (rv != CKR_OK) {
    akv_ptrs_free(&s->find_handles);
    s->find_n = 0;
    return rv;
  }
  s->find_active = 1;
  return CKR_OK;
}

CK_RV akv_find_next(struct akv_session *s, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
  CK_ULONG k = 0;
  if (!s->find_active)
    return CKR_OPERATION_NOT_INITIALIZED;
  while (k < max && s->find_pos < s->find_n)
    out[k++] = (CK_OBJECT_HANDLE)(uintptr_t)akv_ptrs_at(&s->find_handles, s->find_pos++);
  *count = k;
  return CKR_OK;
}

CK_RV akv_find_final(struct akv_session *s)
{
  if (!s->find_active)
    return CKR_OPERATION_NOT_INITIALIZED;
  akv_ptrs_free(&s->find_handles);
  s->find_n = s->find_pos = 0;
  s->find_active = 0;
  return CKR_OK;
}
