/* SPDX-License-Identifier: Apache-2.0 */
/* A key re-found by the CKA_ID it had before a rotation (src/store/versions.c, docs/lifecycle.md
 * "Keys re-found by CKA_ID after a rotation"). */
#ifndef AKV_VERSIONS_H
#define AKV_VERSIONS_H

#include "core/akv.h"

/* Room akv_versions_refind needs in out: a key's objects, and a certificate. */
#define AKV_REFIND_OBJECTS (AKV_KEY_OBJECTS + 1)

/* A search whose template names a key or certificate by CKA_LABEL (its name) and a CKA_ID found
 * nothing (src/token/find.c). For each kind the template's CKA_CLASS allows (keys, and certificates
 * on a slot that shows them), when no current object of that name has that CKA_ID, the older
 * versions are looked at (one page of GET keys/NAME/versions or certificates/NAME/versions, then
 * GET of at most 4 of the most recent enabled ones within nbf/exp, newest first, until one has that
 * CKA_ID; a miss is memoed for a few seconds) and the objects of the version found go to out
 * (referenced; AKV_REFIND_OBJECTS room): labelled NAME, with the handles the version's objects have
 * everywhere, kept in the slot's superseded table (docs/lifecycle.md "Handles held across a
 * rotation"). *n_out 0 when there is no such version, or it cannot be read (logged); the caller
 * matches the template against out. */
CK_RV akv_versions_refind(struct akv_slot *slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                          struct akv_object **out, size_t *n_out);

#endif
