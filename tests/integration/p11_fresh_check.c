/* SPDX-License-Identifier: Apache-2.0 */
/* p11_fresh_check - searches by label in one process, each with the vault requests it cost, for
 * t_fresh.sh (docs/design.md "Keys created since the listing").
 *
 * usage: p11_fresh_check MODULE LABEL...
 * For each LABEL in order: C_FindObjectsInit {CKA_CLASS private key, CKA_LABEL} and prints one line
 * "find LABEL found|missing get=N total=N": the emulator's keys.get and all requests the search
 * cost. Exits 1 when a call fails (not when a key is missing: the script judges the lines).
 *
 * env: EMU_STATS, EMU_CA; the module's config (AKV_PKCS11_CONFIG or environment). */
#include "p11_common.h"

#include <stdio.h>

int main(int argc, char **argv)
{
  struct t_p11 p;
  int64_t total0, get0, total1, get1;
  CK_OBJECT_HANDLE h;
  int i;

  if (argc < 3) {
    fprintf(stderr, "usage: %s MODULE LABEL...\n", argv[0]);
    return 2;
  }
  t_p11_open(&p, argv[1]);
  for (i = 2; i < argc; i++) {
    if (t_stats("keys.get", &total0, &get0) != 0)
      return 1;
    h = t_find(&p, CKO_PRIVATE_KEY, argv[i]);
    if (t_stats("keys.get", &total1, &get1) != 0)
      return 1;
    printf("find %s %s get=%lld total=%lld\n", argv[i],
           h != CK_INVALID_HANDLE ? "found" : "missing", (long long)(get1 - get0),
           (long long)(total1 - total0));
  }
  t_p11_close(&p);
  return 0;
}
