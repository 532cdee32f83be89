/* SPDX-License-Identifier: Apache-2.0 */
/* Module-wide state (model-internal): initialisation, the module lock, handle counters. */
#ifndef AKV_MODULE_H
#define AKV_MODULE_H

#include "core/akv.h"

/* C_Initialize / C_Finalize bodies (argument rules of PKCS#11 2.40 §5.4, fork rule of
 * docs/design.md "Fork").
 */
CK_RV akv_module_initialize(CK_VOID_PTR init_args);
CK_RV akv_module_finalize(CK_VOID_PTR reserved);

/* Every entry point holds the module state for its duration: akv_module_enter (through
 * akv_p11_begin) is akv_module_check plus a hold that C_Finalize waits for before it frees
 * anything; akv_module_leave (through AKV_P11_OUT, at every return) gives it back. A thread holds
 * at most one; nested calls share it. */
CK_RV akv_module_enter(void);
void akv_module_leave(void);

/* The module lock: application mutex callbacks when the application supplied them without
 * CKF_OS_LOCKING_OK, a pthread mutex otherwise. Guards the session table and slot counters. */
void akv_lock(void);
void akv_unlock(void);

/* Slots in config order (valid until C_Finalize). */
size_t akv_module_slot_count(void);

/* A new object handle: per-process counter, never reused while initialised. */
CK_OBJECT_HANDLE akv_module_next_handle(void);
/* The first of n consecutive new handles (the handle registry's blocks, src/store/handles.c). */
CK_OBJECT_HANDLE akv_module_next_handles(CK_ULONG n);

/* False when the application said CKF_LIBRARY_CANT_CREATE_OS_THREADS: no background refresh. */
int akv_threads_allowed(void);

/* Fills C_GetInfo. */
void akv_module_info(CK_INFO *info);

/* Blank-pads src (truncated at a UTF-8 character boundary) into a fixed-size PKCS#11 field. */
void akv_pad(unsigned char *dst, size_t size, const char *src);

#endif
