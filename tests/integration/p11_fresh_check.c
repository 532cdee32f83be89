/* SPDX-License-Identifier: Apache-2.0 */
/* p11_fresh_check - searches by label in one process, each with the vault requests it cost, for
 * t_fresh.sh (docs/design.md "Keys created since the listing").
 *
 * usage: p11_fresh_check MODULE LABEL...
 * For each LABEL in order: C_FindObjectsInit {CKA_CLASS private key, CKA_LABEL} and prints one line
 * "find LABEL found|missing get=N total=N": the emulator's keys.get and all requests the search
 * cost. Exits 1 when a call fails (not when a key is missing: the script judges the lines).
 *
 * usage: p11_fresh_check MODULE sign LABEL SCRIPT
 * On the EC private key LABEL: C_SignInit (CKM_ECDSA), then runs SCRIPT (which changes the key in
 * the vault), then C_SignInit again and, when it succeeds, C_Sign of a 32-byte digest. Prints
 * "signinit before RV get=N", "signinit after RV get=N" and "sign RV LEN" for the script to judge.
 *
 * env: EMU_STATS, EMU_CA; the module's config (AKV_PKCS11_CONFIG or environment). */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* C_SignInit with CKM_ECDSA and the keys.get requests it cost, printed as "signinit WHEN RV get=N".
 */
static CK_RV sign_init(struct t_p11 *p, CK_OBJECT_HANDLE h, const char *when)
{
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  int64_t total, get0, get1;
  CK_RV rv;

  if (t_stats("keys.get", &total, &get0) != 0)
    exit(1);
  rv = p->f->C_SignInit(p->sess, &m, h);
  if (t_stats("keys.get", &total, &get1) != 0)
    exit(1);
  printf("signinit %s %s get=%lld\n", when, t_rv_name(rv), (long long)(get1 - get0));
  return rv;
}

static int sign_mode(struct t_p11 *p, const char *label, const char *script)
{
  unsigned char digest[32], sig[256];
  CK_ULONG sig_len = sizeof(sig);
  CK_OBJECT_HANDLE h = t_find(p, CKO_PRIVATE_KEY, label);
  CK_RV rv;

  if (h == CK_INVALID_HANDLE) {
    fprintf(stderr, "no private key labelled %s\n", label);
    return 1;
  }
  if (sign_init(p, h, "before") == CKR_OK)
    p->f->C_SignFinal(p->sess, NULL, &sig_len); /* ends it: the script expects a refusal */
  fflush(stdout);
  if (system(script) != 0) {
    fprintf(stderr, "%s failed\n", script);
    return 1;
  }
  if (sign_init(p, h, "after") != CKR_OK)
    return 0;
  memset(digest, 0x5a, sizeof(digest));
  sig_len = sizeof(sig);
  rv = p->f->C_Sign(p->sess, digest, sizeof(digest), sig, &sig_len);
  printf("sign %s %lu\n", t_rv_name(rv), (unsigned long)sig_len);
  return 0;
}

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
  if (strcmp(argv[2], "sign") == 0) {
    if (argc != 5) {
      fprintf(stderr, "usage: %s MODULE sign LABEL SCRIPT\n", argv[0]);
      return 2;
    }
    t_p11_open(&p, argv[1]);
    i = sign_mode(&p, argv[3], argv[4]);
    t_p11_close(&p);
    return i;
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
