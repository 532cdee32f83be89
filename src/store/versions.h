/* SPDX-License-Identifier: Apache-2.0 */
/* A key re-found by the CKA_ID it had before a rotation (src/store/versions.c, docs/lifecycle.md
 * "Keys re-found by CKA_ID after a rotation"). */
#ifndef AKV_VERSIONS_H
#define AKV_VERSIONS_H

#include "core/akv.h"

/* A search whose template names a key by CKA_LABEL (the key's name) and a CKA_ID found nothing
 * (src/token/find.c). When no current object of that name has that CKA_ID, the key's older
 * versions are looked at (one page of GET keys/NAME/versions, then GET of at most 4 of the most
 * recent enabled ones within nbf/exp, newest first, until one has that CKA_ID; a miss is memoed for
 * a few seconds) and the objects of the version found go to out (referenced; AKV_KEY_OBJECTS room):
 * labelled NAME, with the handles the version's objects have everywhere, kept in the slot's
 * superseded table (docs/lifecycle.md "Handles held across a rotation"). *n_out 0 when there is no
 * such version, or it cannot be read (logged); the caller matches the template against out. */
CK_RV akv_versions_refind(struct akv_slot *slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                          struct akv_object **out, size_t *n_out);

#endif
