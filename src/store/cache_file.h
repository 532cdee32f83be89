/* SPDX-License-Identifier: Apache-2.0 */
/* The cross-process cache file (docs/design.md "Cache file"), model-internal: public parts of each
 * slot's snapshot (key lists and public keys, certificates, secret names; never secret values or
 * tokens) in one per-user file (0600, atomic replace, authenticated with an HMAC under a per-user
 * key kept in the config directory), so short-lived processes within the TTL cost no listing. A
 * lock file serialises refreshes between processes. Whoever can write the cache directory is not
 * trusted (docs/security.md "The cache file"): a file that is not authentic, not private or out of
 * range is ignored with one warning, and the cache file is off (one warning) when its directory or
 * lock file could be written by others, when there is no usable key, or in a privileged process. */
#ifndef AKV_CACHE_FILE_H
#define AKV_CACHE_FILE_H

#include "store/cache.h"

/* The slot's snapshot from the file when an authentic one younger than the TTL is there (CKR_OK),
 * else an error and *out NULL. Its objects never count as read now (src_fetched_at 0): the next
 * refresh reads them from the vault again. No-op (error) when the cache file is off. */
CK_RV akv_cache_file_load(struct akv_slot *slot, struct akv_snapshot **out);
/* Writes the slot's snapshot into the file (other slots' entries kept). Flags: AKV_CF_HAVE_LOCK,
 * the caller holds akv_cache_file_lock already; AKV_CF_IF_NOT_OLDER, keep the file's entry when it
 * comes from a newer listing than snap (another process listed since). Failures are logged. */
#define AKV_CF_HAVE_LOCK 1u
#define AKV_CF_IF_NOT_OLDER 2u
void akv_cache_file_save(struct akv_slot *slot, const struct akv_snapshot *snap, unsigned flags);

/* Per-name records (docs/design.md "Cache file", "Cold search by label"): what a cold search read
 * for one label (the objects of the key and the certificate of that name), so that the next process
 * of the same slot fingerprint answers that label without a vault request. They sit beside the
 * listings ("names", never "slots"): a record is never a listing, so searches by CKA_ID and
 * enumerations still list. A listing written for the same fingerprint drops the records read
 * before it started. At most AKV_CF_NAME_OBJECTS objects per record. */
#define AKV_CF_NAME_OBJECTS (AKV_KEY_OBJECTS + 1)
/* The objects recorded for name (referenced into out, *n of them, none when the record has none)
 * and when they were read (*read_at), when an authentic record younger than the slot's TTL is
 * there: CKR_OK. Else an error, *n 0: none (silently), or one that fails the checks (one warning).
 * Objects never count as read now (src_fetched_at 0). */
CK_RV akv_cache_file_load_name(struct akv_slot *slot, const char *name, struct akv_object **out,
                               size_t *n, int64_t *read_at);
/* What the first cold search's one read of the file found for its name (looked: the file was
 * looked at, so akv_cache_file_load_name is not called again; found: a record was there, its n
 * objects referenced into objs, read at read_at, as akv_cache_file_load_name gives them). */
struct akv_cf_name {
  int looked, found;
  size_t n;
  int64_t read_at;
  struct akv_object *objs[AKV_CF_NAME_OBJECTS];
};
/* One read of the file (one open, one MAC check, one parse) for a cold search of name before the
 * slot has anything: the slot's listing as akv_cache_file_load gives it (CKR_OK, *out), else an
 * error with the record of name in rec (docs/design.md "Cold search by label"). */
CK_RV akv_cache_file_load_cold(struct akv_slot *slot, const char *name, struct akv_snapshot **out,
                               struct akv_cf_name *rec);
/* Records objs (at most AKV_CF_NAME_OBJECTS, of the key and certificate of that name) read at
 * read_at, replacing the fingerprint's record of that name, within the bounds on records. The
 * cross-process lock is waited for briefly only: when another process holds it (a listing runs)
 * nothing is written (debug log), and that listing serves the next process. */
void akv_cache_file_save_name(struct akv_slot *slot, const char *name,
                              struct akv_object *const *objs, size_t n, int64_t read_at);

/* Cross-process lock held while this process refreshes the listing (bounded wait); -1 when the
 * cache file is off or the lock cannot be had in time (the refresh then goes ahead unlocked). */
int akv_cache_file_lock(void);
void akv_cache_file_unlock(int fd);

#endif
