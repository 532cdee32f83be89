/* SPDX-License-Identifier: Apache-2.0 */
/* p11_cold_check - a search by label on a cold cache (docs/design.md "Cold search by label"),
 * counted with the emulator's request counters in one fresh process (the cache file off, or on for
 * label and filed: docs/design.md "Cache file").
 *
 * usage: p11_cold_check MODULE sign LABEL CERT   (CERT 1: the slot shows certificates and LABEL
 *                                                 has one; 0: the slot shows keys only)
 *        p11_cold_check MODULE label LABEL CERT GETS TOKENS
 *        p11_cold_check MODULE filed LABEL CERT TOKENS
 *        p11_cold_check MODULE missing LABEL
 *        p11_cold_check MODULE badcred LABEL
 * env: EMU_STATS, EMU_CA; the module's config (AKV_PKCS11_CONFIG).
 *
 * sign: the private and public key (and certificate) of LABEL found by label and an ECDSA signature
 * made and verified cost exactly: 1 token, 1 keys.get, CERT certificates.get, 1 keys.sign and no
 * listing; then a search by CKA_ID waits for the listing and finds the same handle; a search by
 * label after the listing gives the same handles and attributes.
 * label: a process that searches by label only: the searches, the signature and its counts of sign
 * with GETS keys.get (and as many certificates.get with CERT) and TOKENS token requests, nothing
 * after them; GETS -1: not counted (processes running at once).
 * filed: sign with LABEL recorded in the cache file by an earlier process's cold search: no
 * keys.get or certificates.get, TOKENS token requests (0 with the token in the keyring), 1
 * keys.sign. missing: a label no key has falls back to the listing (1 keys.get, then the listing)
 * and finds nothing. badcred (a wrong client secret): the search by label fails with the CK_RV of a
 * search by CKA_ID, never CKR_OK with no object. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ops[] = {"token",     "keys.get",  "certificates.get",
                                  "keys.sign", "keys.list", "certificates.list"};
enum { O_TOKEN, O_GET, O_CERT_GET, O_SIGN, O_LIST, O_CERT_LIST, O_N };

struct counts {
  int64_t total, op[O_N];
};

static void counts(struct counts *c)
{
  size_t i;
  for (i = 0; i < O_N; i++) {
    if (t_stats(ops[i], &c->total, &c->op[i]) != 0)
      exit(1);
  }
}

/* The handles of objects matching the template (at most 8); -1 when the search fails (*rv). */
static long find(struct t_p11 *p, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *h, CK_RV *rv)
{
  CK_ULONG got = 0;
  *rv = p->f->C_FindObjectsInit(p->sess, t, n);
  if (*rv != CKR_OK)
    return -1;
  *rv = p->f->C_FindObjects(p->sess, h, 8, &got);
  p->f->C_FindObjectsFinal(p->sess);
  return *rv == CKR_OK ? (long)got : -1;
}

static long find_label(struct t_p11 *p, CK_OBJECT_CLASS cls, const char *label, CK_OBJECT_HANDLE *h,
                       CK_RV *rv)
{
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)},
                       {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)}};
  return find(p, t, 2, h, rv);
}

/* The attributes a search after the listing must give the same. */
static const CK_ATTRIBUTE_TYPE kept[] = {CKA_ID,   CKA_LABEL,     CKA_KEY_TYPE,
                                         CKA_SIGN, CKA_EC_PARAMS, CKA_PRIVATE};
#define N_KEPT (sizeof(kept) / sizeof(kept[0]))

static void attrs(struct t_p11 *p, CK_OBJECT_HANDLE h, unsigned char **v, CK_ULONG *len)
{
  size_t i;
  for (i = 0; i < N_KEPT; i++)
    v[i] = t_attr_new(p, h, kept[i], &len[i]);
}

/* gets: keys.get (and certificates.get when cert) expected before the signature; tokens: token
 * requests expected; by_id: then a search by CKA_ID, which lists. */
static int run_sign(struct t_p11 *p, const char *label, int cert, int gets, int tokens, int by_id)
{
  CK_OBJECT_HANDLE priv[8], pub[8], crt[8], byid[8], again[8];
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  unsigned char digest[32], sig[256], *before[N_KEPT], *after[N_KEPT], *id;
  CK_ULONG sig_len = sizeof(sig), blen[N_KEPT], alen[N_KEPT], id_len = 0;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  struct counts c0, c1, c2;
  long n;
  size_t i;
  CK_RV rv;

  memset(digest, 0x5a, sizeof(digest));
  counts(&c0);
  n = find_label(p, CKO_PRIVATE_KEY, label, priv, &rv);
  t_check(n == 1, "the private key %s is found by label (%ld, %s)", label, n, t_rv_name(rv));
  n = find_label(p, CKO_PUBLIC_KEY, label, pub, &rv);
  t_check(n == 1, "its public key is found by label (%ld, %s)", n, t_rv_name(rv));
  if (cert) {
    n = find_label(p, CKO_CERTIFICATE, label, crt, &rv);
    t_check(n == 1, "its certificate is found by label (%ld, %s)", n, t_rv_name(rv));
  }
  rv = p->f->C_SignInit(p->sess, &m, priv[0]);
  if (rv == CKR_OK)
    rv = p->f->C_Sign(p->sess, digest, sizeof(digest), sig, &sig_len);
  t_check(rv == CKR_OK && sig_len == 64, "C_Sign (ECDSA P-256): %s, %lu bytes", t_rv_name(rv),
          (unsigned long)sig_len);
  rv = p->f->C_VerifyInit(p->sess, &m, pub[0]);
  if (rv == CKR_OK)
    rv = p->f->C_Verify(p->sess, digest, sizeof(digest), sig, sig_len);
  t_check(rv == CKR_OK, "the signature verifies with the public key found by label (%s)",
          t_rv_name(rv));
  if (gets < 0)
    return 0;
  counts(&c1);
  t_note("before the signature completed: total %lld, token %lld, keys.get %lld, "
         "certificates.get %lld, keys.sign %lld, keys.list %lld, certificates.list %lld",
         (long long)(c1.total - c0.total), (long long)(c1.op[O_TOKEN] - c0.op[O_TOKEN]),
         (long long)(c1.op[O_GET] - c0.op[O_GET]),
         (long long)(c1.op[O_CERT_GET] - c0.op[O_CERT_GET]),
         (long long)(c1.op[O_SIGN] - c0.op[O_SIGN]), (long long)(c1.op[O_LIST] - c0.op[O_LIST]),
         (long long)(c1.op[O_CERT_LIST] - c0.op[O_CERT_LIST]));
  t_check(c1.op[O_TOKEN] - c0.op[O_TOKEN] == tokens, "%d token request(s)", tokens);
  t_check(c1.op[O_GET] - c0.op[O_GET] == gets, "%d keys.get (%d searches by label)", gets,
          2 + cert);
  t_check(c1.op[O_CERT_GET] - c0.op[O_CERT_GET] == cert * gets, "%d certificates.get", cert * gets);
  t_check(c1.op[O_SIGN] - c0.op[O_SIGN] == 1, "one keys.sign (the verification is local)");
  t_check(c1.op[O_LIST] == c0.op[O_LIST] && c1.op[O_CERT_LIST] == c0.op[O_CERT_LIST],
          "no listing before the signature completed");
  t_check(c1.total - c0.total == gets * (1 + cert) + 1, "vault requests: exactly %d",
          gets * (1 + cert) + 1);
  if (!by_id)
    return 0;

  attrs(p, priv[0], before, blen);
  id = t_attr_new(p, priv[0], CKA_ID, &id_len);
  t_check(id != NULL && id_len > 0, "the key found by label has a CKA_ID");
  {
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, id, id_len}};
    n = find(p, t, 2, byid, &rv);
  }
  t_check(n == 1 && byid[0] == priv[0],
          "a search by CKA_ID waits for the listing and finds the same handle (%ld, %s)", n,
          t_rv_name(rv));
  counts(&c2);
  t_check(c2.op[O_LIST] > c1.op[O_LIST], "the search by CKA_ID listed the vault (%lld keys.list)",
          (long long)(c2.op[O_LIST] - c1.op[O_LIST]));
  n = find_label(p, CKO_PRIVATE_KEY, label, again, &rv);
  t_check(n == 1 && again[0] == priv[0], "after the listing, the label gives the same handle");
  n = find_label(p, CKO_PUBLIC_KEY, label, again, &rv);
  t_check(n == 1 && again[0] == pub[0], "and the same public key handle");
  if (cert) {
    n = find_label(p, CKO_CERTIFICATE, label, again, &rv);
    t_check(n == 1 && again[0] == crt[0], "and the same certificate handle");
  }
  attrs(p, priv[0], after, alen);
  for (i = 0; i < N_KEPT; i++) {
    t_check((!before[i] && !after[i]) || (before[i] && after[i] && blen[i] == alen[i] &&
                                          memcmp(before[i], after[i], blen[i]) == 0),
            "attribute 0x%lx is the same before and after the listing", (unsigned long)kept[i]);
    free(before[i]);
    free(after[i]);
  }
  free(id);
  return 0;
}

static void run_missing(struct t_p11 *p, const char *label)
{
  CK_OBJECT_HANDLE h[8];
  struct counts c0, c1;
  long n;
  CK_RV rv;

  counts(&c0);
  n = find_label(p, CKO_PRIVATE_KEY, label, h, &rv);
  counts(&c1);
  t_check(n == 0, "a label no key has finds nothing (%ld, %s)", n, t_rv_name(rv));
  t_check(c1.op[O_GET] - c0.op[O_GET] == 1, "it was asked for by name once (%lld keys.get)",
          (long long)(c1.op[O_GET] - c0.op[O_GET]));
  t_check(c1.op[O_LIST] > c0.op[O_LIST], "then the search waited for the listing (%lld keys.list)",
          (long long)(c1.op[O_LIST] - c0.op[O_LIST]));
}

static void run_badcred(struct t_p11 *p, const char *label)
{
  CK_OBJECT_HANDLE h[8];
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  unsigned char id[4] = {1, 2, 3, 4};
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, id, sizeof(id)}};
  CK_RV by_label, by_id;
  long n;

  n = find_label(p, CKO_PRIVATE_KEY, label, h, &by_label);
  t_check(n < 0 && by_label != CKR_OK, "a wrong credential fails the search by label (%s)",
          t_rv_name(by_label));
  n = find(p, t, 2, h, &by_id);
  t_check(n < 0 && by_id == by_label, "with the CK_RV a search by CKA_ID gives (%s)",
          t_rv_name(by_id));
}

int main(int argc, char **argv)
{
  struct t_p11 p;

  if (argc < 4 || (strcmp(argv[2], "sign") == 0 && argc < 5) ||
      (strcmp(argv[2], "filed") == 0 && argc < 6) || (strcmp(argv[2], "label") == 0 && argc < 7)) {
    fprintf(stderr,
            "usage: %s MODULE sign LABEL CERT | label LABEL CERT GETS TOKENS | filed LABEL CERT "
            "TOKENS | missing LABEL | badcred LABEL\n",
            argv[0]);
    return 2;
  }
  t_p11_open(&p, argv[1]);
  if (strcmp(argv[2], "sign") == 0)
    run_sign(&p, argv[3], atoi(argv[4]) ? 1 : 0, 1, 1, 1);
  else if (strcmp(argv[2], "label") == 0)
    run_sign(&p, argv[3], atoi(argv[4]) ? 1 : 0, atoi(argv[5]), atoi(argv[6]), 0);
  else if (strcmp(argv[2], "filed") == 0)
    run_sign(&p, argv[3], atoi(argv[4]) ? 1 : 0, 0, atoi(argv[5]), 1);
  else if (strcmp(argv[2], "missing") == 0)
    run_missing(&p, argv[3]);
  else if (strcmp(argv[2], "badcred") == 0)
    run_badcred(&p, argv[3]);
  else
    t_check(0, "unknown mode %s", argv[2]);
  t_p11_close(&p);
  return t_finish("p11_cold_check");
}
