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

#endif
