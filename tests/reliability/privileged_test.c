/* SPDX-License-Identifier: Apache-2.0 */
/* privileged_test - what the module reads in a privileged process (docs/security.md
 * "Privileged processes").
 *
 *   privileged_test [CONFIG]
 *
 * Prints "at_secure N" (getauxval(AT_SECURE): 1 when this copy runs setgid/setuid), calls
 * C_Initialize with pReserved = CONFIG (NULL without it) and prints "init CKR_..." and one
 * "slot LABEL" line per slot (the token label, blanks trimmed), "objects N" (or "find CKR_...") for
 * a listing of the first slot's objects, then C_Finalize. t_privileged.sh
 * runs a setgid copy and a plain copy with the same environment and compares. The module's own
 * log goes to stderr. Environment: AKV_MODULE. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#include "rel_common.h"

int main(int argc, char **argv)
{
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  CK_RV rv;

  printf("at_secure %lu\n", getauxval(AT_SECURE));
  f = rel_load(rel_env("AKV_MODULE"), &dl);
  rv = rel_initialize(f, argc > 1 ? argv[1] : NULL);
  printf("init %s\n", t_rv_name(rv));
  if (rv != CKR_OK)
    return 0;
  rv = f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK)
    printf("slotlist %s\n", t_rv_name(rv));
  for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
    CK_TOKEN_INFO ti;
    char label[33];
    size_t len = sizeof(ti.label);
    if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
      continue;
    memcpy(label, ti.label, len);
    while (len > 0 && label[len - 1] == ' ')
      len--;
    label[len] = '\0';
    printf("slot %s\n", label);
  }
  /* The objects of the first slot: a listing that goes to the vault. */
  if (rv == CKR_OK && n > 0) {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE objs[64];
    CK_ULONG found = 0;
    rv = f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK && (rv = f->C_FindObjectsInit(s, NULL, 0)) == CKR_OK) {
      rv = f->C_FindObjects(s, objs, 64, &found);
      f->C_FindObjectsFinal(s);
    }
    if (rv == CKR_OK)
      printf("objects %lu\n", (unsigned long)found);
    else
      printf("find %s\n", t_rv_name(rv));
  }
  f->C_Finalize(NULL);
  dlclose(dl);
  return 0;
}
