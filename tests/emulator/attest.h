/* SPDX-License-Identifier: Apache-2.0 */
/* Managed HSM key attestation (attest.c): GET /keys/{name}/{version}/attestation. */
#ifndef EMU_ATTEST_H
#define EMU_ATTEST_H

#include "emu.h"

/* Test control (POST {control_url}/config {"attestation_tamper":...}): what the next replies
 * spoil, to check that clients refuse them. */
enum emu_attest_tamper {
  EMU_ATTEST_TAMPER_NONE = 0,
  EMU_ATTEST_TAMPER_CHAIN, /* one byte of the vendor partition certificate's signature */
  EMU_ATTEST_TAMPER_BLOB,  /* one byte of each blob after signing */
  EMU_ATTEST_TAMPER_KEY,   /* a valid attestation of another public key */
};
/* Makes the per-run vendor root (once) and writes its certificate to path (PEM). 0 or -1. */
int emu_attest_init(const char *path);
void emu_attest_set_tamper(enum emu_attest_tamper mode);
enum emu_attest_tamper emu_attest_get_tamper(void);

/* The operation (version NULL or "" = latest). Fills resp; -1 on out of memory. */
int emu_attest_handle(struct emu_req *req, struct emu_resp *resp, const char *name,
                      const char *version);

#endif
