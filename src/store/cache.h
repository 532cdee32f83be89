/* SPDX-License-Identifier: Apache-2.0 */
/* The per-slot object cache (docs/design.md "Cache"). A snapshot is an immutable, refcounted
 * list of objects sorted by handle, built off-lock and swapped in. */
#ifndef AKV_CACHE_H
#define AKV_CACHE_H

#include "core/akv.h"
#include "store/snapshot.h"
#include "store/source.h"

struct akv_cache *akv_cache_new(struct akv_slot *slot);
/* Waits for a background refresh in flight, then frees. NULL ok. */
void akv_cache_free(struct akv_cache *c);

/* The current snapshot, refreshed first when missing or past its TTL (synchronously) and in the
 * background past 75 % of it; a failed refresh serves the old snapshot within stale_if_error.
 * When it fails, *http_status (NULL = not wanted) is the HTTP status of the vault call that failed
 * the listing (kv.h; 0 = none), also when it shares another thread's failed listing. Never called
 * with the module lock held. */
CK_RV akv_cache_get(struct akv_cache *c, struct akv_snapshot **out, long *http_status);
/* The current snapshot without any I/O (may be NULL). */
struct akv_snapshot *akv_cache_peek(struct akv_cache *c);
void akv_cache_invalidate(struct akv_cache *c);

/* Reads the pending keys of the slot's current snapshot for which want(lz, arg) is true
 * (concurrently, one GET each), then publishes their objects in the current snapshot (and the cache
 * file). Keys that went away or may not be read are dropped with a warning. Other threads resolving
 * the same keys are waited for, not repeated. Returns the first listing error otherwise, with the
 * HTTP status of the read that failed in *http_status (NULL = not wanted; 0 = none). */
CK_RV akv_cache_resolve(struct akv_cache *c, int (*want)(const struct akv_lazykey *, const void *),
                        const void *arg, long *http_status);

/* A write to the vault changes the slot's snapshot at once (src/token/write.c): objects for
 * which drop(obj, arg) is true leave it, the add objects (referenced here) join it, and the
 * cross-process cache file gets the result. Without a snapshot yet nothing changes: the first
 * listing sees the vault as it is. CKR_HOST_MEMORY leaves the snapshot as it was and marks it for
 * a refresh. */
CK_RV akv_cache_apply(struct akv_cache *c, int (*drop)(const struct akv_object *, const void *),
                      const void *arg, struct akv_object *const *add, size_t n_add);

/* A search found nothing labelled name (src/token/find.c): unless name was read within the last
 * few seconds, reads the key from the vault (one GET) and, when it exists, is shown by the slot's
 * configuration and is missing from the snapshot's listing, publishes its objects like
 * akv_cache_apply and sets *published. A key that does not exist (or may not be read) is not an
 * error. No lock held. */
CK_RV akv_cache_read_key(struct akv_cache *c, const char *name, int *published);

/* A search by CKA_ID (no label) found nothing in the snapshot seen (referenced by the caller;
 * src/token/find.c): a key or certificate created since the listing may have that CKA_ID, and no
 * name lookup can find it. When seen's listing is at least id_miss_refresh seconds old and no
 * listing for a miss started within that time, lists the vault again synchronously (a listing
 * another process wrote to the cache file within that time serves instead); objects restored from
 * the cache file with unchanged times are carried over unread, and then the snapshot keeps its age
 * (the refresh at the TTL still reads them). A refresh in flight is waited for and its result
 * used. 1 when the slot's snapshot is no longer seen (search again), 0 otherwise (a failed listing
 * is logged and the old one kept). No lock held (docs/design.md "Keys created since the
 * listing"). */
int akv_cache_id_miss(struct akv_cache *c, const struct akv_snapshot *seen);

/* A vault key's object whose cached key_ops refused an operation (src/token/op.c): reads the key
 * again (one GET of its latest version), publishes its objects like akv_cache_apply, and hands
 * back (referenced, in *fresh) the new object of obj's class; *fresh stays NULL when obj is not a
 * listed vault key or the read failed (logged) or found it gone. No lock held. */
CK_RV akv_cache_reread(struct akv_cache *c, const struct akv_object *obj,
                       struct akv_object **fresh);

/* ---- cold searches by label (src/store/cold.c, docs/design.md "Cold search by label") ------ */

/* Names read by cold searches before the first listing, at most (then searches wait for it). */
#define AKV_COLD_NAMES 32

/* For a search by the label name: the current snapshot as akv_cache_get gives it when the slot
 * has one or the cache file gives one (*cold 0). On a cold slot (neither), schedules the first
 * listing in the background (it starts when a search needs it, or a few seconds later, and is not
 * started at all when the cache is freed before) and sets *cold: *out is then the slot's cold
 * snapshot when name was read already, else NULL (read it, then akv_cache_cold_add). When this
 * call read the cache file (the slot's first search), rec holds what that one read found for name
 * (akv_cache_file_load_cold; rec->looked 0 otherwise, zeroed by the caller; the caller releases
 * its objects). http_status as akv_cache_get's. */
struct akv_cf_name;
CK_RV akv_cache_get_for(struct akv_cache *c, const char *name, struct akv_snapshot **out, int *cold,
                        struct akv_cf_name *rec, long *http_status);
/* Records what a cold search read for name at read_at (the objects of its key and certificate,
 * referenced here; none when the slot shows neither), from the vault or from the cache file's
 * record of that name: they join the cold snapshot, found by handle until the first listing lands,
 * whose objects of the same sources take their handles and marks; the cold snapshot serves for one
 * ttl from its oldest read. *landed when the listing landed meanwhile (nothing recorded).
 * CKR_FUNCTION_FAILED when AKV_COLD_NAMES names are recorded already. */
CK_RV akv_cache_cold_add(struct akv_cache *c, const char *name, struct akv_object *const *add,
                         size_t n_add, int64_t read_at, int *landed);
/* A cold search found no key of that name (404): the listing's search for it does not ask the
 * vault again within the few seconds of akv_cache_read_key's memo. */
void akv_cache_cold_missed(struct akv_cache *c, const char *name);
/* The cold snapshot (referenced; NULL when there is none). */
struct akv_snapshot *akv_cache_cold(struct akv_cache *c);
/* Whether the listing shows an object of this kind (AKV_SRC_KEY, AKV_SRC_CERT) and name with the
 * attributes a (NULL: any): the vault's name rule, key_filter (keys), keys, and enabled/nbf/exp
 * unless show_disabled. */
int akv_cache_shows(const struct akv_slot_config *sc, enum akv_source_kind kind, const char *name,
                    const struct kv_attrs *a);
/* The objects the listing makes of the latest version of a key read by name (takes key; none when
 * it cannot be represented, logged). out must hold 2. */
CK_RV akv_cache_key_objects(struct akv_slot *slot, struct kv_key *key, const char *name,
                            struct akv_object **out, size_t *n);

/* ---- handles held across a rotation (docs/lifecycle.md "Handles held across a rotation") ----- */

/* Marks a token object of the slot as handed out (its handle reached a caller: a search matched it,
 * a call named it). When a refresh, a write or a re-read then replaces its source with a new
 * version (a new handle), the object moves to the slot's table of superseded objects instead of
 * going away. Cheap once marked (one atomic load). */
void akv_cache_hand_out(struct akv_cache *c, struct akv_object *obj);

/* A superseded object by handle (referenced), or NULL. A hit pins it for the sessions open now. */
struct akv_object *akv_cache_held(struct akv_cache *c, CK_OBJECT_HANDLE h);

/* The session table tells the cache about the slot's sessions (src/token/session.c, at
 * C_OpenSession and C_CloseSession): the handle of its oldest open session (next when none is open)
 * and the next handle to be given. Session handles only grow, so both only grow. Superseded objects
 * that no session open when they were superseded (or last used) can still name, and that nothing
 * else references, are released here and at each refresh. */
void akv_cache_sessions(struct akv_cache *c, CK_SESSION_HANDLE oldest, CK_SESSION_HANDLE next);

/* obj's version went away in the vault (deleted, disabled): a superseded obj leaves the table with
 * every object of its version; an object of the current snapshot leaves it with the objects of
 * its source (the key's other versions held by handles stay). */
CK_RV akv_cache_drop_version(struct akv_cache *c, const struct akv_object *obj);

/* ---- older versions re-found by CKA_ID (src/store/versions.c, docs/lifecycle.md "Keys re-found
 * by CKA_ID after a rotation") ---------------------------------------------------------------- */

/* The superseded objects of the key or certificate name (source kind AKV_SRC_KEY, AKV_SRC_CERT)
 * whose CKA_ID is id, referenced into out (at most cap); each is pinned for the sessions open now,
 * like akv_cache_held. */
size_t akv_cache_held_find(struct akv_cache *c, enum akv_source_kind kind, const char *name,
                           const unsigned char *id, size_t id_len, struct akv_object **out,
                           size_t cap);
/* Adds objects of an older version (not in the snapshot) to the superseded table, handed out and
 * pinned for the sessions open now: the same rules as a superseded object from then on. */
void akv_cache_keep(struct akv_cache *c, struct akv_object *const *objs, size_t n);
/* Claims key (at most 167 characters) for a vault request unless it was claimed within the few
 * seconds of akv_cache_read_key's memo (shared with it): 1 when claimed. akv_cache_memo_forget
 * clears the claim (the request found what it looked for). */
int akv_cache_memo_claim(struct akv_cache *c, const char *key);
void akv_cache_memo_forget(struct akv_cache *c, const char *key);

/* The number of superseded objects the slot holds (logged and tested). */
size_t akv_cache_superseded_count(struct akv_cache *c);

#endif
