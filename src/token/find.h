/* SPDX-License-Identifier: Apache-2.0 */
/* Object searches (src/token/find.c). */
#ifndef AKV_FIND_H
#define AKV_FIND_H

#include "core/akv.h"

/* C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal bodies (session acquired). */
CK_RV akv_find_init(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n);
CK_RV akv_find_next(struct akv_session *s, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count);
CK_RV akv_find_final(struct akv_session *s);

#endif
