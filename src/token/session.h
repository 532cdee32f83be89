/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions (model-internal): the session table, login state, C_* bodies of the session group. */
#ifndef AKV_SESSION_H
#define AKV_SESSION_H

#include "core/akv.h"
#include "store/object.h"

CK_RV akv_sessions_init(void);
/* C_Finalize: closes every session, waiting for calls in flight on them. */
void akv_sessions_shutdown(void);
/* Forked child: forgets the parent's sessions without touching them. */
void akv_sessions_abandon(void);

CK_RV akv_session_open(CK_SLOT_ID slot_id, CK_FLAGS flags, CK_SESSION_HANDLE *out);
CK_RV akv_session_close(CK_SESSION_HANDLE h);
CK_RV akv_session_close_all(CK_SLOT_ID slot_id);
/* Call with the session acquired. */
void akv_session_info(struct akv_session *s, CK_SESSION_INFO *info);
/* C_Login / C_Logout bodies (docs/security.md "Login"). pin may be NULL when pin_len is 0. */
CK_RV akv_session_login(struct akv_session *s, CK_USER_TYPE user, const unsigned char *pin,
                        CK_ULONG pin_len);
CK_RV akv_session_logout(struct akv_session *s);
/* The session objects of the session's token (its own and other sessions'), referenced: the
 * caller unrefs each and frees *out. */
size_t akv_session_objects(struct akv_session *s, struct akv_object ***out);
/* Removes a session object of the token (C_DestroyObject); CKR_OBJECT_HANDLE_INVALID if none. */
CK_RV akv_session_remove_object(struct akv_session *s, CK_OBJECT_HANDLE h);
/* True when the user is logged in to the session's token. */
int akv_session_logged_in(struct akv_session *s);
/* True when the session may see obj (CKA_PRIVATE objects need a logged-in token). */
int akv_session_can_see(struct akv_session *s, const struct akv_object *obj);

/* Records a failed fetch (akv_object_get_attrs, akv_object_matches) on the session: its HTTP
 * status becomes ulDeviceError; a 404 drops the slot's listing so the next lookup refreshes it. */
void akv_session_fetch_failed(struct akv_session *s, const struct akv_fetch_status *f);

/* The key object for an operation (referenced): CKR_USER_NOT_LOGGED_IN for a private key the
 * session may not see yet (docs/security.md "Login"); CKR_KEY_HANDLE_INVALID when there is no such
 * object or it belongs to another slot. */
CK_RV akv_session_op_key(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out);

/* The result of a failed vault operation on obj's pinned version: a version deleted (404) or
 * disabled (403, confirmed by reading the version) meanwhile gives CKR_KEY_HANDLE_INVALID and
 * leaves the slot's snapshot at once; other failures map as akv_session_fail does (http_status:
 * the failed call's, kv.h). */
CK_RV akv_session_key_failed(struct akv_session *s, struct akv_object *obj, kv_rc rc,
                             long http_status);

#endif
