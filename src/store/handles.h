/* SPDX-License-Identifier: Apache-2.0 */
/* Process-wide object bookkeeping (src/store/handles.c): the handle registry (handles stable per
 * object identity) and the bound on cached secret values. */
#ifndef AKV_HANDLES_H
#define AKV_HANDLES_H

#include "core/akv.h"

/* The handle of the object of class cls with source id id (a key version's kid, a certificate's or
 * secret's id) on slot: the same for the same identity as long as the module stays initialised, a
 * new one otherwise. The objects of one (slot, id) share a registry entry: their handles are
 * consecutive (private key, public key, secret key, certificate, data object; a key version's
 * private key h, its public key h + 1). 0 on failure. */
CK_OBJECT_HANDLE akv_handle_for(CK_SLOT_ID slot, CK_OBJECT_CLASS cls, const char *id);
/* Registry entries (unit-memory: one per key version, not one per object). */
size_t akv_handles_count(void);

/* Life of the registry and the budget: C_Initialize, C_Finalize, a forked child's C_Initialize
 * (which abandons the parent's registry without freeing it). */
CK_RV akv_handles_init(void);
void akv_handles_free(void);
void akv_handles_abandon(void);

/* Secret values cached at once are bounded: a value is kept only when a slot is available. */
int akv_handles_secret_take(void);
void akv_handles_secret_give(void);

#endif
