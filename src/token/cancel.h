/* SPDX-License-Identifier: Apache-2.0 */
/* C_SessionCancel's body (src/token/cancel.c). */
#ifndef AKV_CANCEL_H
#define AKV_CANCEL_H

#include "core/akv.h"
#include "pkcs11_3.h"

/* The operation flags C_SessionCancel accepts: every operation flag of CK_MECHANISM_INFO
 * (PKCS#11 3.0 §5.6), CKF_FIND_OBJECTS included. Any other bit names no operation. */
#define AKV_CANCEL_FLAGS                                                                           \
  (CKF_ENCRYPT | CKF_DECRYPT | CKF_DIGEST | CKF_SIGN | CKF_SIGN_RECOVER | CKF_VERIFY |             \
   CKF_VERIFY_RECOVER | CKF_GENERATE | CKF_GENERATE_KEY_PAIR | CKF_WRAP | CKF_UNWRAP |             \
   CKF_DERIVE | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT | CKF_MESSAGE_SIGN |                     \
   CKF_MESSAGE_VERIFY | CKF_FIND_OBJECTS)

/* Ends the session's active operations named by flags (a subset of AKV_CANCEL_FLAGS; the session
 * acquired): sign, verify, encrypt, decrypt, digest and the object search. A flag whose operation
 * is not active in the session is ignored, as the specification says; the module runs no
 * message-based, recover, generate, wrap, unwrap or derive operation across calls, so those flags
 * never find one. Nothing here can fail. */
void akv_cancel_ops(struct akv_session *s, CK_FLAGS flags);

#endif
