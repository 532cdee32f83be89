/* Helpers shared by the PKCS#11 entry points (the files of src/p11): in/out traces with the CKR
 * name. */
#ifndef AKV_P11_H
#define AKV_P11_H

#include "akv.h"
#include "util/log.h"

#define AKV_P11_IN() akv_dbg(AKV_LOGC_P11, "%s: in", __func__)

static inline CK_RV akv_p11_out(const char *fn, CK_RV rv)
{
  akv_dbg(AKV_LOGC_P11, "%s: out %s", fn, akv_rv_name(rv));
  return rv;
}
#define AKV_P11_OUT(rv) akv_p11_out(__func__, (rv))

/* The common prologue: initialised, then arguments (args_ok false -> CKR_ARGUMENTS_BAD). */
static inline CK_RV akv_p11_begin(int args_ok)
{
  CK_RV rv = akv_module_check();
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

#endif
