/* SPDX-License-Identifier: Apache-2.0 */
/* p11_common.h - shared by the integration test programs (p11_cache_check, p11_count_check):
 * loading a PKCS#11 module with dlopen, finding objects, reading the emulator's request
 * counters, and counting checks the way lib.sh does ("ok N - ..." / "not ok N - ..."). */
#ifndef AKV_INTEG_P11_COMMON_H
#define AKV_INTEG_P11_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

/* The loaded module: its function list and the first slot's open session. */
struct t_p11 {
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE sess;
};

/* dlopen(path), C_GetFunctionList, C_Initialize (CKF_OS_LOCKING_OK), first slot with a token,
 * C_OpenSession. Exits the program (status 1) with a message on any failure: nothing can be
 * checked without a module. */
void t_p11_open(struct t_p11 *p, const char *path);
void t_p11_close(struct t_p11 *p);

/* First object of `cls` whose CKA_LABEL is `label`, or CK_INVALID_HANDLE. */
CK_OBJECT_HANDLE t_find(struct t_p11 *p, CK_OBJECT_CLASS cls, const char *label);

/* All objects of the session (empty template) into *out (malloc'd); the count, or -1 with a
 * message on error. */
long t_find_all(struct t_p11 *p, CK_OBJECT_HANDLE **out);

/* Attribute value (malloc'd, *len set) or NULL when the attribute is absent/unreadable. */
unsigned char *t_attr_new(struct t_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                          CK_ULONG *len);

/* The emulator's counters from $EMU_STATS (TLS verified against $EMU_CA when set): requests_total
 * and, when op is not NULL, by_operation[op] (0 when absent). -1 on error (message printed). */
int t_stats(const char *op, int64_t *total, int64_t *op_count);

/* Checks, counted. */
void t_check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void t_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *t_rv_name(CK_RV rv);
/* Prints the summary; 0 when every check passed, 1 otherwise (or when none ran). */
int t_finish(const char *name);

/* Lower-case hex of a buffer into a malloc'd string. */
char *t_hex_new(const unsigned char *b, size_t n);
/* Whole file into a malloc'd buffer (cap 1 MiB); NULL with a message on error. */
unsigned char *t_read_file_new(const char *path, size_t *len);

#endif
