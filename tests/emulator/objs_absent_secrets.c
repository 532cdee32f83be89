/* SPDX-License-Identifier: Apache-2.0 */
/*
 * objs_absent_secrets.c - linked only while tests/emulator/secrets.c (helper EMU-OBJ)
 * does not exist: answers 404 NotImplemented for /secrets and /deletedsecrets and
 * refuses seed entries for secrets and certificates.
 */
#include "core.h"

#include <stdio.h>

int emu_secrets_handle(struct emu_req *req, struct emu_resp *resp)
{
  emu_stats_count("secrets.absent");
  return emu_resp_error(resp, 404, "NotImplemented", NULL,
                        "Secrets are not built into this emulator (secrets.c missing): %s",
                        req->path);
}

int emu_objs_seed(struct emu_vault *vault, const char *collection, const cJSON *item)
{
  (void)item;
  fprintf(stderr, "akv-emulator: seed: vault %s: %s are not built into this emulator\n",
          vault->name, collection);
  return -1;
}

void emu_objs_vault_free(struct emu_vault *vault)
{
  (void)vault;
}
