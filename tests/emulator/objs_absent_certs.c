/* SPDX-License-Identifier: Apache-2.0 */
/*
 * objs_absent_certs.c - linked only while tests/emulator/certs.c (helper EMU-OBJ) does
 * not exist: answers 404 NotImplemented for /certificates and /deletedcertificates.
 */
#include "core.h"

int emu_certs_handle(struct emu_req *req, struct emu_resp *resp)
{
  emu_stats_count("certificates.absent");
  return emu_resp_error(resp, 404, "NotImplemented", NULL,
                        "Certificates are not built into this emulator (certs.c missing): %s",
                        req->path);
}
