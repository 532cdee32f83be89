/* SPDX-License-Identifier: Apache-2.0 */
/* cred_secure_test - does a listing need a token, and can it get one (docs/config.md
 * "Credential chain", docs/security.md "One identity per slot").
 *
 *   cred_secure_test CONFIG
 *
 * Prints "at_secure N" (getauxval(AT_SECURE)), calls C_Initialize with pReserved = CONFIG, opens a
 * session on the first slot and lists every object (the module then needs a token), and prints
 * "init CKR_...", "find CKR_..." and "objects N". t_cred_secure.sh runs a setgid copy (AT_SECURE)
 * and a plain copy with the same configuration. Environment: AKV_MODULE. */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/auxv.h>

#include "rel_common.h"

int main(int argc, char **argv)
{
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE objs[64];
  CK_ULONG n = 0;
  CK_RV rv;

  printf("at_secure %lu\n", getauxval(AT_SECURE));
  if (argc != 2) {
    fprintf(stderr, "usage: cred_secure_test CONFIG\n");
    return 2;
  }
  f = rel_load(rel_env("AKV_MODULE"), &dl);
  rv = rel_initialize(f, argv[1]);
  printf("init %s\n", t_rv_name(rv));
  if (rv != CKR_OK)
    return 0;
  rv = f->C_OpenSession(rel_first_slot(f), CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv == CKR_OK)
    rv = f->C_FindObjectsInit(s, NULL, 0);
  if (rv == CKR_OK) {
    rv = f->C_FindObjects(s, objs, sizeof(objs) / sizeof(objs[0]), &n);
    f->C_FindObjectsFinal(s);
  }
  printf("find %s\nobjects %lu\n", t_rv_name(rv), (unsigned long)n);
  f->C_Finalize(NULL);
  dlclose(dl);
  return 0;
}
