/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the PKCS#11 entry points (the files of src/p11): in/out traces with the CKR
 * name. */
#ifndef AKV_P11_H
#define AKV_P11_H

#include "core/akv.h"
#include "core/module.h"
#include "util/log.h"

#define AKV_P11_IN() akv_dbg(AKV_LOGC_P11, "%s: in", __func__)

/* Every entry point returns through here: it gives back the module state akv_p11_begin took. */
static inline CK_RV akv_p11_out(const char *fn, CK_RV rv)
{
  akv_dbg(AKV_LOGC_P11, "%s: out %s", fn, akv_rv_name(rv));
  akv_module_leave();
  return rv;
}
#define AKV_P11_OUT(rv) akv_p11_out(__func__, (rv))

/* The common prologue: initialised (and the module state held until AKV_P11_OUT, so C_Finalize
 * cannot free it under the call), then arguments (args_ok false -> CKR_ARGUMENTS_BAD). */
static inline CK_RV akv_p11_begin(int args_ok)
{
  CK_RV rv = akv_module_enter();
  if (rv == CKR_OK && !args_ok)
    rv = CKR_ARGUMENTS_BAD;
  return rv;
}

/* The prologue of calls on a session: as akv_p11_begin, then the session acquired. */
static inline CK_RV akv_p11_session(CK_SESSION_HANDLE h, int args_ok, struct akv_session **s)
{
  CK_RV rv = akv_p11_begin(args_ok);
  if (rv == CKR_OK)
    rv = akv_session_acquire(h, s);
  return rv;
}

/* The prologue of calls on a slot: as akv_p11_begin, then a known slot (or CKR_SLOT_ID_INVALID). */
static inline CK_RV akv_p11_slot(CK_SLOT_ID id, int args_ok, struct akv_slot **slot)
{
  CK_RV rv = akv_p11_begin(args_ok);
  if (rv == CKR_OK) {
    *slot = akv_module_slot(id);
    if (!*slot)
      rv = CKR_SLOT_ID_INVALID;
  }
  return rv;
}

/* The calls the module does not offer on a session (operation state, legacy parallel functions,
 * PINs, signatures with recovery, dual-function updates): the prologue's checks, then `refusal`. */
static inline CK_RV akv_p11_refuse(CK_SESSION_HANDLE h, int args_ok, CK_RV refusal)
{
  struct akv_session *s = NULL;
  CK_RV rv = akv_p11_session(h, args_ok, &s);

  if (rv == CKR_OK) {
    rv = refusal;
    akv_session_release(s);
  }
  return rv;
}

/* The body of an entry point on a session, between these two: AKV_P11_SESSION_BEGIN traces in,
 * declares `s` (the acquired session) and `rv`, and returns the prologue's error; the body sets
 * rv; AKV_P11_SESSION_END releases the session and returns rv traced. _BY takes the prologue: an
 * expression that acquires `s` and gives a CK_RV. */
#define AKV_P11_SESSION_BEGIN_BY(prologue)                                                         \
  struct akv_session *s = NULL;                                                                    \
  CK_RV rv;                                                                                        \
  AKV_P11_IN();                                                                                    \
  rv = (prologue);                                                                                 \
  do {                                                                                             \
    if (rv != CKR_OK)                                                                              \
      return AKV_P11_OUT(rv);                                                                      \
  } while (0)

#define AKV_P11_SESSION_BEGIN(h, args_ok)                                                          \
  AKV_P11_SESSION_BEGIN_BY(akv_p11_session((h), (args_ok) ? 1 : 0, &s))

#define AKV_P11_SESSION_END()                                                                      \
  akv_session_release(s);                                                                          \
  return AKV_P11_OUT(rv)

#endif
