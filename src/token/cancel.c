/* SPDX-License-Identifier: Apache-2.0 */
/* C_SessionCancel (PKCS#11 3.0): ends a session's active operations, as their own final call or
 * an error would (src/token/op.c akv_op_end, src/token/find.c akv_find_final). */
#include "token/cancel.h"
#include "token/find.h"
#include "token/op.h"

void akv_cancel_ops(struct akv_session *s, CK_FLAGS flags)
{
  static const struct {
    CK_FLAGS flag;
    enum akv_op_kind kind;
  } ops[] = {
      {CKF_SIGN, AKV_OP_SIGN},       {CKF_VERIFY, AKV_OP_VERIFY}, {CKF_ENCRYPT, AKV_OP_ENCRYPT},
      {CKF_DECRYPT, AKV_OP_DECRYPT}, {CKF_DIGEST, AKV_OP_DIGEST},
  };

  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if ((flags & ops[i].flag) && akv_op_peek(s, ops[i].kind))
      akv_op_end(s, ops[i].kind);
  if ((flags & CKF_FIND_OBJECTS) && s->find_active)
    (void)akv_find_final(s);
}
