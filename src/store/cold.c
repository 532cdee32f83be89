/* SPDX-License-Identifier: Apache-2.0 */
/* A search by label on a cold cache (docs/design.md "Cold search by label"): before the slot's
 * first listing, the key of that name (and the certificate of that name where the slot shows
 * certificates) is read by name and the search answers from what the listing would make of it,
 * while the listing is scheduled in the background (src/store/cache.c). The answer is taken only
 * when it is complete: a key that is not there or may not be read, a certificate read that fails
 * other than with 404, or a label that may name an object read only by listing (a secret, a chain
 * certificate) leaves the search to the listing. What was read is recorded in the cache file under
 * its name (src/store/cache_file.h), where the next process's cold search of that label finds it
 * without a vault request. */
#include <string.h>

#include "core/module.h"
#include "store/cache.h"
#include "store/cache_file.h"
#include "store/cold.h"
#include "store/object.h"
#include "util/log.h"

/* What a cold read found for name: the key's objects (with its attestation objects, as the listing
 * makes them) and a certificate, at most AKV_CF_NAME_OBJECTS. 1 when complete, 0 when the search
 * must wait for the listing (logged at debug), -1 on CKR_HOST_MEMORY. */
static int read_name(struct akv_slot *slot, const char *name, struct akv_object **objs, size_t *n)
{
  const struct akv_slot_config *sc = slot->cfg;
  struct kv_key *key = NULL;
  struct kv_cert *cert = NULL;
  char src[1024];
  kv_rc rc;
  CK_RV rv;

  *n = 0;
  rc = kv_get_key(slot->client, name, NULL, &key, NULL);
  if (rc != KV_OK) {
    /* 404: the label may be a certificate's, a secret's or another object's; 401/403: the
     * listing's answer is the answer (an identity may list without reading, or neither). */
    akv_dbg(AKV_LOGC_CACHE, "cold search %s: key read: %s, waiting for the listing", name,
            kv_rc_str(rc));
    if (rc == KV_E_NOT_FOUND)
      akv_cache_cold_missed(slot->cache, name);
    return rc == KV_E_NOMEM ? -1 : 0;
  }
  if (!key->name || strcmp(key->name, name) != 0) {
    /* The vault compares names without case, a label is compared by its bytes: the listing's
     * objects carry the vault's spelling. */
    akv_dbg(AKV_LOGC_CACHE,
            "cold search %s: the vault spells it otherwise, waiting for the listing", name);
    kv_key_free(key);
    akv_cache_cold_missed(slot->cache, name);
    return 0;
  }
  if (!akv_cache_shows(sc, AKV_SRC_KEY, name, &key->attrs)) {
    kv_key_free(key);
  } else {
    size_t m = 0;
    rv = akv_cache_key_objects(slot, key, name, objs, n); /* takes key */
    if (rv == CKR_OK && *n)
      rv = akv_objects_attest(objs[0], objs + *n, &m);
    if (rv != CKR_OK) {
      while (*n)
        akv_object_unref(objs[--*n]);
      return -1;
    }
    *n += m;
  }
  if (!(sc->objects & AKV_OBJ_CERTIFICATES) || sc->kind == AKV_VAULT_MHSM ||
      !akv_cache_shows(sc, AKV_SRC_CERT, name, NULL))
    return 1;
  rc = kv_get_certificate(slot->client, name, NULL, &cert, NULL);
  if (rc == KV_E_NOT_FOUND)
    return 1;
  if (rc != KV_OK) {
    akv_dbg(AKV_LOGC_CACHE, "cold search %s: certificate read: %s, waiting for the listing", name,
            kv_rc_str(rc));
    return rc == KV_E_NOMEM ? -1 : 0;
  }
  rv = CKR_OK;
  if (cert->name && strcmp(cert->name, name) == 0 &&
      akv_cache_shows(sc, AKV_SRC_CERT, name, &cert->attrs)) {
    akv_source_id(src, sizeof(src), AKV_SRC_CERT, name, NULL);
    rv = akv_object_from_cert(slot, cert, src, &objs[*n]);
    if (rv == CKR_OK)
      (*n)++;
    else if (rv == CKR_DEVICE_ERROR)
      rv = CKR_OK; /* logged: the listing leaves a malformed certificate out too */
  }
  kv_cert_free(cert);
  return rv == CKR_OK ? 1 : -1;
}

/* Whether a label can only be answered by the listing on this slot: a name the vault cannot hold
 * (a name/version label of versions "all", a chain certificate "NAME-chain-N" is a valid name but
 * comes from a secret), or any label where the slot shows secrets (a data object of that name,
 * certificate chains). */
static int listing_only(const struct akv_slot_config *sc, const char *name)
{
  return (sc->objects & AKV_OBJ_SECRETS) || !(sc->objects & AKV_OBJ_KEYS) ||
         !akv_cache_shows(sc, AKV_SRC_KEY, name, NULL);
}

/* Releases what rec holds. */
static void rec_release(struct akv_cf_name *rec)
{
  while (rec->n)
    akv_object_unref(rec->objs[--rec->n]);
}

CK_RV akv_cold_get(struct akv_slot *slot, const char *name, struct akv_snapshot **out,
                   long *http_status)
{
  struct akv_cache *c = slot->cache;
  struct akv_cf_name rec; /* what was read for name: the cache file's record, else the vault's */
  size_t n;
  int64_t read_at = 0;
  int cold = 0, landed = 0, got;
  CK_RV rv;

  *out = NULL;
  if (listing_only(slot->cfg, name))
    return akv_cache_get(c, out, http_status);
  memset(&rec, 0, sizeof(rec));
  rv = akv_cache_get_for(c, name, out, &cold, &rec, http_status);
  if (rv != CKR_OK || !cold || *out) {
    rec_release(&rec);
    return rv;
  }
  /* What a cold search of another process read for this name, else the vault (then recorded for
   * the next process: docs/design.md "Cold search by label"). The slot's first search had the
   * record from the same read of the file as the listing; a later one reads the file for it. */
  if (!rec.looked)
    rec.found = akv_cache_file_load_name(slot, name, rec.objs, &rec.n, &rec.read_at) == CKR_OK;
  if (rec.found) {
    got = 1;
    read_at = rec.read_at;
  } else {
    read_at = akv_now();
    got = read_name(slot, name, rec.objs, &rec.n);
  }
  if (got < 0)
    rv = CKR_HOST_MEMORY;
  else if (got > 0)
    rv = akv_cache_cold_add(c, name, rec.objs, rec.n, read_at, &landed);
  if (rv == CKR_OK && got > 0 && !landed && !rec.found)
    akv_cache_file_save_name(slot, name, rec.objs, rec.n, read_at);
  n = rec.n;
  rec_release(&rec);
  if (rv == CKR_OK && got > 0 && !landed) {
    akv_dbg(AKV_LOGC_CACHE, "cold search %s: %zu object(s) %s", name, n,
            rec.found ? "from the cache file" : "read by name");
    *out = akv_cache_cold(c);
    if (*out)
      return CKR_OK;
  }
  if (rv == CKR_HOST_MEMORY)
    return rv;
  /* Incomplete, too many names or the listing landed: the listing answers. */
  return akv_cache_get(c, out, http_status);
}
