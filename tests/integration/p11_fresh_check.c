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
 * usage: p11_fresh_check MODULE id STEP...
 * Searches by CKA_ID alone (docs/design.md "Keys created since the listing"), step by step:
 * HEX: C_FindObjectsInit {CKA_ID} and prints "findid HEX found=N list=N get=N", the objects found
 * and the emulator's keys.list and keys.get requests the search cost; flood:N:HEX: N such searches,
 * printed as one line "flood HEX n=N found=N list=N get=N ms=MS" (MS their wall time); sleep:S:
 * sleeps S seconds; run:CMD: runs CMD (exit 1 when it fails).
 *
 * env: EMU_STATS, EMU_CA; the module's config (AKV_PKCS11_CONFIG or environment). */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The emulator's keys.list and keys.get counters. */
static void list_get(int64_t *list, int64_t *get)
{
  int64_t total;
  if (t_stats("keys.list", &total, list) != 0 || t_stats("keys.get", &total, get) != 0)
    exit(1);
}

/* The number of objects a search by the CKA_ID hex finds (exits on a failed call). */
static CK_ULONG find_id(struct t_p11 *p, const char *hex)
{
  unsigned char id[128];
  CK_ATTRIBUTE t = {CKA_ID, id, 0};
  CK_OBJECT_HANDLE h[16];
  CK_ULONG n = 0;
  size_t len = strlen(hex), i;
  unsigned v;
  CK_RV rv;

  if (len == 0 || len % 2 || len / 2 > sizeof(id)) {
    fprintf(stderr, "CKA_ID %s: expected 1 to 128 bytes of hex\n", hex);
    exit(2);
  }
  for (i = 0; i < len / 2; i++) {
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
      fprintf(stderr, "CKA_ID %s: not hex\n", hex);
      exit(2);
    }
    id[i] = (unsigned char)v;
  }
  t.ulValueLen = len / 2;
  rv = p->f->C_FindObjectsInit(p->sess, &t, 1);
  if (rv == CKR_OK)
    rv = p->f->C_FindObjects(p->sess, h, 16, &n);
  if (rv == CKR_OK)
    rv = p->f->C_FindObjectsFinal(p->sess);
  if (rv != CKR_OK) {
    fprintf(stderr, "search by CKA_ID %s: %s\n", hex, t_rv_name(rv));
    exit(1);
  }
  return n;
}

static int64_t mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int id_mode(struct t_p11 *p, int argc, char **argv)
{
  int64_t list0, get0, list1, get1, t0;
  unsigned long found;
  int i, k, n;

  for (i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "sleep:", 6) == 0) {
      sleep((unsigned)atoi(a + 6));
      continue;
    }
    if (strncmp(a, "run:", 4) == 0) {
      fflush(stdout);
      if (system(a + 4) != 0) {
        fprintf(stderr, "%s failed\n", a + 4);
        return 1;
      }
      continue;
    }
    list_get(&list0, &get0);
    t0 = mono_ms();
    if (strncmp(a, "flood:", 6) == 0) {
      n = atoi(a + 6);
      a = strchr(a + 6, ':');
      if (n < 1 || n > 100000 || !a) {
        fprintf(stderr, "flood:N:HEX expected\n");
        return 2;
      }
      a++;
      for (k = 0, found = 0; k < n; k++)
        found += find_id(p, a);
      list_get(&list1, &get1);
      printf("flood %s n=%d found=%lu list=%lld get=%lld ms=%lld\n", a, n, found,
             (long long)(list1 - list0), (long long)(get1 - get0), (long long)(mono_ms() - t0));
      continue;
    }
    found = find_id(p, a);
    list_get(&list1, &get1);
    printf("findid %s found=%lu list=%lld get=%lld\n", a, found, (long long)(list1 - list0),
           (long long)(get1 - get0));
  }
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
  if (strcmp(argv[2], "id") == 0) {
    t_p11_open(&p, argv[1]);
    i = id_mode(&p, argc - 3, argv + 3);
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
