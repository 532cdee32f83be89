/* SPDX-License-Identifier: Apache-2.0 */
/* rel_common.h - shared by the reliability test programs (fault_test, fork_test, stress_test,
 * hostile_test): the module loaded with an explicit config, the emulator's fault control, public
 * keys from DER files written by the runner (independent of the module), and a sign+verify step
 * checked with OpenSSL. Check counting and module loading come from tests/integration/p11_common.
 */
#ifndef AKV_REL_COMMON_H
#define AKV_REL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "p11_common.h"

/* Monotonic milliseconds. */
int64_t rel_now_ms(void);

/* dlopen + C_GetFunctionList only (no C_Initialize); exits on failure. */
CK_FUNCTION_LIST_PTR rel_load(const char *module_path, void **dl);

/* C_Initialize with CKF_OS_LOCKING_OK and pReserved = config (a path; NULL = environment). */
CK_RV rel_initialize(CK_FUNCTION_LIST_PTR f, const char *config);

/* First slot with a token, or (CK_SLOT_ID)-1 with a note. */
CK_SLOT_ID rel_first_slot(CK_FUNCTION_LIST_PTR f);

/* Object of class cls with CKA_LABEL label in session s, or CK_INVALID_HANDLE. */
CK_OBJECT_HANDLE rel_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                          const char *label);

/* POST {EMU_CONTROL}/faults with spec ("" clears); 0 on success, -1 with a note. */
int rel_emu_faults(const char *spec);

/* GET {EMU_CONTROL}/faults: fills fired[i] (up to n items) with how often item i fired and
 * returns the number of items, or -1 with a note. */
int rel_emu_faults_fired(long *fired, size_t n);

/* connections_by_listener[listener].total from the emulator's $EMU_STATS (-1 with a note). */
long rel_emu_connections(const char *listener);

/* Public key from a DER SubjectPublicKeyInfo file (NULL with a note). */
EVP_PKEY *rel_pubkey_load(const char *path);

/* Signing keys the tests use: an EC P-256 key (CKM_ECDSA over a SHA-256 digest) and an RSA key
 * (CKM_SHA256_RSA_PKCS over the message). */
enum rel_kind { REL_EC = 0, REL_RSA = 1 };

struct rel_key {
  CK_OBJECT_HANDLE priv;
  EVP_PKEY *pub;
};

/* Result of one sign + verify. */
struct rel_sig_result {
  CK_RV rv;              /* of the sign sequence (C_SignInit/C_Sign) */
  int verified;          /* 1: OpenSSL accepted the signature over the message */
  int64_t ms;            /* wall time of C_SignInit + C_Sign */
  CK_ULONG device_error; /* C_GetSessionInfo.ulDeviceError after a failure */
};

/* Signs a fresh random message with key (kind selects the mechanism) in session s and verifies
 * the signature with OpenSSL against key->pub. */
void rel_sign_verify(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, enum rel_kind kind,
                     const struct rel_key *key, struct rel_sig_result *out);

/* Required environment variable (exits with a message when unset). */
const char *rel_env(const char *name);

#endif
