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

/* Cross-process lock held while this process refreshes the listing (bounded wait); -1 when the
 * cache file is off or the lock cannot be had in time (the refresh then goes ahead unlocked). */
int akv_cache_file_lock(void);
void akv_cache_file_unlock(int fd);

#endif
