/* SPDX-License-Identifier: Apache-2.0 */
/* p11_rotation_check - one process holds key (and certificate) handles across rotations in the
 * vault, for t_rotation.sh (docs/lifecycle.md "Handles held across a rotation"). The vault is
 * changed by shell commands the script passes (run with system()); signatures are written to OUT
 * for the script to verify with openssl against the public keys the vault's REST API gives.
 *
 * usage: p11_rotation_check MODULE key LABEL ROTATE DISABLE OUT
 *   Finds the RSA private key LABEL and signs OUT/data (CKM_SHA256_RSA_PKCS); runs ROTATE (a new
 *   version, then whatever wait the slot's TTL needs); searches again (the new version, another
 *   handle) and signs with both handles (OUT/old.sig, OUT/new.sig); a search for LABEL returns only
 *   the new handle; runs DISABLE (the old version disabled in the vault); the held handle then
 *   answers CKR_KEY_HANDLE_INVALID and is gone, the new one still signs (OUT/new2.sig).
 *
 * usage: p11_rotation_check MODULE cert LABEL RENEW OUT
 *   Holds the certificate LABEL and its private key; RENEW makes a new certificate version with a
 *   new key; the held certificate still reads its old value (OUT/cert-held.der), the held key still
 *   signs (OUT/old.sig); the new ones are found (OUT/cert-new.der, OUT/new.sig).
 *
 * usage: p11_rotation_check MODULE many LABEL N ROTATE
 *   Session A holds the first handle and signs with it after each of N rotations; each rotation is
 *   seen by a search in a session B opened and closed around it, which signs with the new handle.
 *   Prints the heap in use (mallinfo2) after 10 rotations and at the end ("heap N M"), for the
 *   script to judge with the module's own count of superseded objects (its debug log).
 *
 * usage: p11_rotation_check MODULE certrefind LABEL OLD_ID OUT
 *   After the certificate LABEL was renewed with a new key, a new process finds the certificate and
 *   its private key by the old CKA_ID (hex) and LABEL: the old certificate (OUT/cert-refind.der)
 *   and a signature by the old key (OUT/refind.sig).
 *
 * usage: p11_rotation_check MODULE refind LABEL OLD_ID NEW_ID DISABLE OUT
 *   A process started after a rotation and its refresh re-finds the key by LABEL and the CKA_ID
 *   (hex) it had before (docs/lifecycle.md "Keys re-found by CKA_ID after a rotation"): one private
 *   key, labelled LABEL, of the old version, which signs (OUT/old.sig); searched again (and its
 *   public key) without a new versions request; the new CKA_ID finds the new version (OUT/new.sig),
 *   the label alone only that; a flood of searches by an unknown CKA_ID costs at most one versions
 *   request per 5 s (the memo); a forked child that calls C_Initialize again re-finds and signs
 *   with the old version too (OUT/child.sig); after DISABLE (the old version disabled) a new
 *   C_Initialize finds nothing by the old CKA_ID and the new one still signs.
 *
 * env: the module's config (AKV_PKCS11_CONFIG); EMU_STATS and EMU_CA (refind). */
#include "p11_common.h"

#include "akv-pkcs11.h" /* CKA_AKV_VERSION */

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned char *data;
static size_t data_len;

/* C_SignInit + C_Sign of the data with h; writes the signature to path when not NULL. */
static CK_RV sign_to(struct t_p11 *p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *path)
{
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  unsigned char sig[1024];
  CK_ULONG len = sizeof(sig);
  FILE *f;
  CK_RV rv = p->f->C_SignInit(s, &m, h);

  if (rv != CKR_OK)
    return rv;
  rv = p->f->C_Sign(s, data, data_len, sig, &len);
  if (rv != CKR_OK || !path)
    return rv;
  f = fopen(path, "wb");
  if (!f || fwrite(sig, 1, len, f) != len) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  fclose(f);
  return CKR_OK;
}

static void run(const char *cmd)
{
  fflush(stdout);
  if (system(cmd) != 0) {
    fprintf(stderr, "FATAL: %s failed\n", cmd);
    exit(1);
  }
}

static char *path(const char *dir, const char *name)
{
  static char buf[4][1024];
  static unsigned i;
  char *b = buf[i++ % 4];
  snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
  return b;
}

/* CKA_AKV_VERSION of h as a string ("" when unreadable). */
static const char *version_of(struct t_p11 *p, CK_OBJECT_HANDLE h, char *buf, size_t len)
{
  CK_ATTRIBUTE a = {CKA_AKV_VERSION, buf, len - 1};
  buf[0] = 0;
  if (p->f->C_GetAttributeValue(p->sess, h, &a, 1) == CKR_OK && a.ulValueLen < len)
    buf[a.ulValueLen] = 0;
  return buf;
}

/* The number of objects of class cls labelled label, and the first of them in *first. */
static long count_label(struct t_p11 *p, CK_OBJECT_CLASS cls, const char *label,
                        CK_OBJECT_HANDLE *first)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE h[16];
  CK_ULONG got = 0;

  if (p->f->C_FindObjectsInit(p->sess, t, 2) != CKR_OK)
    return -1;
  if (p->f->C_FindObjects(p->sess, h, 16, &got) != CKR_OK)
    got = 0;
  p->f->C_FindObjectsFinal(p->sess);
  if (got && first)
    *first = h[0];
  return (long)got;
}

static int write_attr(struct t_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, const char *to)
{
  CK_ULONG len = 0;
  unsigned char *v = t_attr_new(p, h, type, &len);
  FILE *f = v ? fopen(to, "wb") : NULL;
  int ok = f && fwrite(v, 1, len, f) == len;
  if (f)
    fclose(f);
  free(v);
  return ok;
}

static int key_mode(struct t_p11 *p, const char *label, const char *rotate, const char *disable,
                    const char *out)
{
  CK_OBJECT_HANDLE h_old, h_new = CK_INVALID_HANDLE, first = CK_INVALID_HANDLE;
  char v_old[128], v_new[128];
  CK_ULONG len = 0;
  unsigned char *v;
  CK_RV rv;

  h_old = t_find(p, CKO_PRIVATE_KEY, label);
  t_check(h_old != CK_INVALID_HANDLE, "the private key %s is found", label);
  if (h_old == CK_INVALID_HANDLE)
    return t_finish("p11_rotation_check key");
  version_of(p, h_old, v_old, sizeof(v_old));
  rv = sign_to(p, p->sess, h_old, path(out, "before.sig"));
  t_check(rv == CKR_OK, "it signs before the rotation (%s)", t_rv_name(rv));

  run(rotate);
  t_check(count_label(p, CKO_PRIVATE_KEY, label, &h_new) == 1,
          "after the rotation a search finds one private key %s", label);
  version_of(p, h_new, v_new, sizeof(v_new));
  t_check(h_new != h_old && strcmp(v_new, v_old) != 0,
          "the refresh shows the new version (%s, handle %lu; held: %s, handle %lu)", v_new,
          (unsigned long)h_new, v_old, (unsigned long)h_old);
  version_of(p, h_old, v_new, sizeof(v_new));
  t_check(strcmp(v_new, v_old) == 0, "the held handle still reads its version (%s)", v_new);
  rv = sign_to(p, p->sess, h_old, path(out, "old.sig"));
  t_check(rv == CKR_OK, "the held handle signs after the refresh (%s)", t_rv_name(rv));
  rv = sign_to(p, p->sess, h_new, path(out, "new.sig"));
  t_check(rv == CKR_OK, "the new handle signs (%s)", t_rv_name(rv));
  first = CK_INVALID_HANDLE;
  t_check(count_label(p, CKO_PRIVATE_KEY, label, &first) == 1 && first == h_new,
          "a search never returns the held (superseded) handle");

  run(disable);
  rv = sign_to(p, p->sess, h_old, NULL);
  t_check(rv == CKR_KEY_HANDLE_INVALID,
          "with its version disabled the held handle answers CKR_KEY_HANDLE_INVALID (%s)",
          t_rv_name(rv));
  v = t_attr_new(p, h_old, CKA_LABEL, &len);
  t_check(v == NULL, "and is gone afterwards (C_GetAttributeValue fails)");
  free(v);
  rv = sign_to(p, p->sess, h_new, path(out, "new2.sig"));
  t_check(rv == CKR_OK, "the new version still signs (%s)", t_rv_name(rv));
  return t_finish("p11_rotation_check key");
}

static int cert_mode(struct t_p11 *p, const char *label, const char *renew, const char *out)
{
  CK_OBJECT_HANDLE c_old, k_old, c_new = CK_INVALID_HANDLE, k_new = CK_INVALID_HANDLE;
  CK_RV rv;

  c_old = t_find(p, CKO_CERTIFICATE, label);
  k_old = t_find(p, CKO_PRIVATE_KEY, label);
  t_check(c_old != CK_INVALID_HANDLE && k_old != CK_INVALID_HANDLE,
          "the certificate %s and its private key are found", label);
  if (c_old == CK_INVALID_HANDLE || k_old == CK_INVALID_HANDLE)
    return t_finish("p11_rotation_check cert");
  t_check(write_attr(p, c_old, CKA_VALUE, path(out, "cert-before.der")), "its CKA_VALUE reads");
  rv = sign_to(p, p->sess, k_old, NULL);
  t_check(rv == CKR_OK, "the key signs before the renewal (%s)", t_rv_name(rv));

  run(renew);
  t_check(count_label(p, CKO_CERTIFICATE, label, &c_new) == 1 && c_new != c_old,
          "after the renewal a search finds one certificate %s, with a new handle", label);
  t_check(count_label(p, CKO_PRIVATE_KEY, label, &k_new) == 1 && k_new != k_old,
          "and one private key %s, with a new handle", label);
  t_check(write_attr(p, c_old, CKA_VALUE, path(out, "cert-held.der")),
          "the held certificate handle still reads its value");
  t_check(write_attr(p, c_new, CKA_VALUE, path(out, "cert-new.der")),
          "the new certificate reads its value");
  rv = sign_to(p, p->sess, k_old, path(out, "old.sig"));
  t_check(rv == CKR_OK, "the held key handle signs (%s)", t_rv_name(rv));
  rv = sign_to(p, p->sess, k_new, path(out, "new.sig"));
  t_check(rv == CKR_OK, "the new key signs (%s)", t_rv_name(rv));
  return t_finish("p11_rotation_check cert");
}

static int many_mode(struct t_p11 *p, const char *label, long n, const char *rotate)
{
  CK_OBJECT_HANDLE h0, h;
  CK_SESSION_HANDLE b;
  size_t heap10 = 0;
  long i, held_ok = 0, new_ok = 0, found = 0;

  h0 = t_find(p, CKO_PRIVATE_KEY, label);
  t_check(h0 != CK_INVALID_HANDLE, "the private key %s is found", label);
  if (h0 == CK_INVALID_HANDLE)
    return t_finish("p11_rotation_check many");
  for (i = 1; i <= n; i++) {
    run(rotate);
    if (p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, &b) != CKR_OK)
      break;
    {
      CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
      CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                          {CKA_LABEL, (void *)label, strlen(label)}};
      CK_ULONG got = 0;
      h = CK_INVALID_HANDLE;
      if (p->f->C_FindObjectsInit(b, t, 2) == CKR_OK &&
          p->f->C_FindObjects(b, &h, 1, &got) == CKR_OK && got == 1 && h != h0)
        found++;
      p->f->C_FindObjectsFinal(b);
    }
    new_ok += sign_to(p, b, h, NULL) == CKR_OK;
    p->f->C_CloseSession(b);
    held_ok += sign_to(p, p->sess, h0, NULL) == CKR_OK;
    if (i == 10)
      heap10 = mallinfo2().uordblks;
  }
  t_check(found == n, "each of %ld rotations showed a new version to a new search (%ld)", n, found);
  t_check(new_ok == n, "each new version signed (%ld of %ld)", new_ok, n);
  t_check(held_ok == n, "the handle held since the start signed after every rotation (%ld of %ld)",
          held_ok, n);
  printf("heap %zu %zu\n", heap10, mallinfo2().uordblks);
  return t_finish("p11_rotation_check many");
}

/* Hex to bytes (at most cap); the length, 0 on a malformed string. */
static size_t unhex(const char *hex, unsigned char *out, size_t cap)
{
  size_t n = 0;
  unsigned v;
  while (hex[0] && hex[1] && n < cap && sscanf(hex, "%2x", &v) == 1) {
    out[n++] = (unsigned char)v;
    hex += 2;
  }
  return hex[0] ? 0 : n;
}

/* The objects of class cls labelled label with that CKA_ID in session s (at most 8) into h. */
static long find_id(struct t_p11 *p, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label,
                    const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *h)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                      {CKA_ID, (void *)id, id_len},
                      {CKA_LABEL, (void *)label, strlen(label)}};
  CK_ULONG got = 0;
  if (p->f->C_FindObjectsInit(s, t, 3) != CKR_OK)
    return -1;
  if (p->f->C_FindObjects(s, h, 8, &got) != CKR_OK)
    got = 0;
  p->f->C_FindObjectsFinal(s);
  return (long)got;
}

static int64_t versions_requests(void)
{
  int64_t total = 0, n = -1;
  if (t_stats("keys.list_versions", &total, &n) != 0)
    return -1;
  return n;
}

/* A forked child, as the libp11 engine in an nginx worker: C_Initialize again, a new session, the
 * search by the old CKA_ID and label, a signature. Exits 0 when it signed. */
static void child_refind(struct t_p11 *p, const char *label, const unsigned char *id, size_t id_len,
                         const char *sig)
{
  CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE h[8];
  CK_RV rv = p->f->C_Initialize(&args);

  if (rv != CKR_OK) {
    fprintf(stderr, "child: C_Initialize: %s\n", t_rv_name(rv));
    _exit(2);
  }
  if (p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    _exit(3);
  if (find_id(p, s, CKO_PRIVATE_KEY, label, id, id_len, h) != 1)
    _exit(4);
  rv = sign_to(p, s, h[0], sig);
  p->f->C_Finalize(NULL);
  _exit(rv == CKR_OK ? 0 : 5);
}

static int refind_mode(struct t_p11 *p, const char *module, const char *label, const char *old_hex,
                       const char *new_hex, const char *disable, const char *out)
{
  unsigned char old_id[64], new_id[64], bogus[20];
  size_t old_len = unhex(old_hex, old_id, sizeof(old_id));
  size_t new_len = unhex(new_hex, new_id, sizeof(new_id));
  CK_OBJECT_HANDLE h[8], h_old = CK_INVALID_HANDLE, h_new = CK_INVALID_HANDLE;
  char v_old[128], v_new[128];
  int64_t r0, r1, r2;
  CK_ULONG len = 0;
  unsigned char *v;
  long got, i, floods = 20;
  time_t started;
  int status = -1;
  pid_t pid;
  CK_RV rv;

  t_check(old_len && new_len && (old_len != new_len || memcmp(old_id, new_id, old_len)),
          "the old and new CKA_IDs differ (%s, %s)", old_hex, new_hex);
  r0 = versions_requests();
  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, old_id, old_len, h);
  r1 = versions_requests();
  t_check(got == 1, "a search by the old CKA_ID and label finds one private key (%ld)", got);
  if (got != 1)
    return t_finish("p11_rotation_check refind");
  h_old = h[0];
  t_check(r0 >= 0 && r1 - r0 == 1, "it read the key's versions once (%lld)", (long long)(r1 - r0));
  v = t_attr_new(p, h_old, CKA_LABEL, &len);
  t_check(v && len == strlen(label) && memcmp(v, label, len) == 0,
          "its CKA_LABEL is the label searched (%.*s)", v ? (int)len : 0, v ? (char *)v : "");
  free(v);
  v = t_attr_new(p, h_old, CKA_ID, &len);
  t_check(v && len == old_len && memcmp(v, old_id, len) == 0, "its CKA_ID is the old one");
  free(v);
  rv = sign_to(p, p->sess, h_old, path(out, "old.sig"));
  t_check(rv == CKR_OK, "it signs (%s)", t_rv_name(rv));
  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, old_id, old_len, h);
  t_check(got == 1 && h[0] == h_old, "searched again it is the same handle");
  got = find_id(p, p->sess, CKO_PUBLIC_KEY, label, old_id, old_len, h);
  t_check(got == 1 && h[0] != h_old, "its public key is found by the old CKA_ID too");
  r2 = versions_requests();
  t_check(r2 == r1, "neither search asked the vault for the versions again (%lld)",
          (long long)(r2 - r1));

  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, new_id, new_len, h);
  t_check(got == 1 && h[0] != h_old, "the new CKA_ID finds the new version, another handle");
  if (got == 1)
    h_new = h[0];
  version_of(p, h_old, v_old, sizeof(v_old));
  version_of(p, h_new, v_new, sizeof(v_new));
  t_check(v_old[0] && strcmp(v_old, v_new) != 0, "of another version (old %s, new %s)", v_old,
          v_new);
  rv = sign_to(p, p->sess, h_new, path(out, "new.sig"));
  t_check(rv == CKR_OK, "the new version signs (%s)", t_rv_name(rv));
  t_check(count_label(p, CKO_PRIVATE_KEY, label, &h[0]) == 1 && h[0] == h_new,
          "a search by the label alone finds the new version only");

  memset(bogus, 0x5a, sizeof(bogus));
  r1 = versions_requests();
  started = time(NULL);
  for (i = 0; i < floods; i++) {
    if (find_id(p, p->sess, CKO_PRIVATE_KEY, label, bogus, sizeof(bogus), h) != 0)
      break;
  }
  r2 = versions_requests();
  t_check(i == floods, "%ld searches by an unknown CKA_ID find nothing", floods);
  t_check(r2 - r1 >= 1 && r2 - r1 <= 1 + (time(NULL) - started) / 5,
          "and cost %lld versions request(s) in %lld s (the memo: at most one per 5 s)",
          (long long)(r2 - r1), (long long)(time(NULL) - started));

  fflush(stdout);
  pid = fork();
  if (pid == 0)
    child_refind(p, label, old_id, old_len, path(out, "child.sig"));
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    status = -1;
  t_check(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a forked child (C_Initialize again) re-finds the old version and signs (status %d)",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1);

  run(disable);
  t_p11_close(p);
  t_p11_open(p, module);
  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, old_id, old_len, h);
  t_check(got == 0,
          "with the old version disabled, a new C_Initialize finds nothing by its CKA_ID");
  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, new_id, new_len, h);
  rv = got == 1 ? sign_to(p, p->sess, h[0], NULL) : CKR_OBJECT_HANDLE_INVALID;
  t_check(rv == CKR_OK, "the new CKA_ID still finds the new version, which signs (%s)",
          t_rv_name(rv));
  return t_finish("p11_rotation_check refind");
}

/* After a certificate's renewal, a new process re-finds the certificate and its key by the old
 * CKA_ID and label: OUT/cert-refind.der, OUT/refind.sig. */
static int certrefind_mode(struct t_p11 *p, const char *label, const char *old_hex, const char *out)
{
  unsigned char old_id[64];
  size_t old_len = unhex(old_hex, old_id, sizeof(old_id));
  CK_OBJECT_HANDLE h[8];
  long got;
  CK_RV rv;

  got = find_id(p, p->sess, CKO_CERTIFICATE, label, old_id, old_len, h);
  t_check(got == 1, "a search by the old CKA_ID and label finds one certificate (%ld)", got);
  if (got == 1)
    t_check(write_attr(p, h[0], CKA_VALUE, path(out, "cert-refind.der")), "its CKA_VALUE reads");
  got = find_id(p, p->sess, CKO_PRIVATE_KEY, label, old_id, old_len, h);
  t_check(got == 1, "and one private key (%ld)", got);
  rv = got == 1 ? sign_to(p, p->sess, h[0], path(out, "refind.sig")) : CKR_OBJECT_HANDLE_INVALID;
  t_check(rv == CKR_OK, "which signs (%s)", t_rv_name(rv));
  return t_finish("p11_rotation_check certrefind");
}

/* Prints the CKA_ID (hex) of the private key label. */
static int id_mode(struct t_p11 *p, const char *label)
{
  CK_OBJECT_HANDLE h = t_find(p, CKO_PRIVATE_KEY, label);
  CK_ULONG len = 0;
  unsigned char *v = h != CK_INVALID_HANDLE ? t_attr_new(p, h, CKA_ID, &len) : NULL;
  char *hex = v ? t_hex_new(v, len) : NULL;
  if (hex)
    printf("%s\n", hex);
  free(hex);
  free(v);
  return hex ? 0 : 1;
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  int rc;

  if (argc < 4) {
    fprintf(stderr, "usage: %s MODULE key|cert|many|refind|certrefind|id LABEL ...\n", argv[0]);
    return 2;
  }
  t_p11_open(&p, argv[1]);
  if (strcmp(argv[2], "key") == 0 && argc == 7) {
    data = t_read_file_new(path(argv[6], "data"), &data_len);
    rc = data ? key_mode(&p, argv[3], argv[4], argv[5], argv[6]) : 1;
  } else if (strcmp(argv[2], "cert") == 0 && argc == 6) {
    data = t_read_file_new(path(argv[5], "data"), &data_len);
    rc = data ? cert_mode(&p, argv[3], argv[4], argv[5]) : 1;
  } else if (strcmp(argv[2], "many") == 0 && argc == 6) {
    static unsigned char fixed[] = "rotation";
    data = fixed;
    data_len = sizeof(fixed) - 1;
    rc = many_mode(&p, argv[3], strtol(argv[4], NULL, 10), argv[5]);
    data = NULL;
  } else if (strcmp(argv[2], "refind") == 0 && argc == 8) {
    data = t_read_file_new(path(argv[7], "data"), &data_len);
    rc = data ? refind_mode(&p, argv[1], argv[3], argv[4], argv[5], argv[6], argv[7]) : 1;
  } else if (strcmp(argv[2], "certrefind") == 0 && argc == 6) {
    data = t_read_file_new(path(argv[5], "data"), &data_len);
    rc = data ? certrefind_mode(&p, argv[3], argv[4], argv[5]) : 1;
  } else if (strcmp(argv[2], "id") == 0 && argc == 4) {
    rc = id_mode(&p, argv[3]);
  } else {
    fprintf(stderr, "usage: %s MODULE key|cert|many|refind|certrefind|id LABEL ...\n", argv[0]);
    rc = 2;
  }
  free(data);
  t_p11_close(&p);
  return rc;
}
