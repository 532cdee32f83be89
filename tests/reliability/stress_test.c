/* SPDX-License-Identifier: Apache-2.0 */
/* stress_test - 16 threads over one module instance, built for the sanitizer runs.
 *
 *   stress_test CONFIG THREADS ITERATIONS
 *
 * Phase 1: each thread repeats ITERATIONS times: C_OpenSession, C_FindObjects (all objects, then
 * by label), C_GetAttributeValue (label, key type, EC point / modulus, with a length query
 * first), C_Sign (CKM_ECDSA on P-256 and CKM_SHA256_RSA_PKCS, both verified with OpenSSL against
 * the vault's public keys), C_Verify (the module's verification of a fresh signature, and of a
 * corrupted one which must fail), C_Decrypt (CKM_RSA_PKCS_OAEP SHA-256 of a ciphertext made by
 * OpenSSL), C_CloseSession. Then C_Finalize.
 * Phase 2: C_Initialize again, the same loop in all threads, and C_Finalize from the main thread
 * while the calls are in flight: every call returns CKR_OK or a "module/session is gone" code, no
 * crash, no hang, and the module can be initialised once more afterwards.
 * Phase 3: the threads loop on calls that take no session (C_GetInfo, C_GetSlotList,
 * C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList, C_GetMechanismInfo, C_OpenSession then
 * C_CloseSession) while the main thread finalises and re-initialises FINALIZE_CYCLES times: every
 * call holds the module state for its duration (docs/reliability.md "C_Finalize racing calls"), so
 * the sanitizer builds see no use of freed state and every call returns CKR_OK or a "gone" code.
 *
 * Built twice: stress_test dlopens $AKV_MODULE (how hosts use it); stress_test_linked (REL_LINKED)
 * has the module's code linked in, which is what the clang sanitizer builds run.
 *
 * Environment: AKV_MODULE, REL_EC_LABEL, REL_EC_PUB, REL_RSA_LABEL, REL_RSA_PUB. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "rel_common.h"

#define MAX_THREADS 64

static struct {
  CK_FUNCTION_LIST_PTR f;
  const char *labels[2];
  EVP_PKEY *pub[2];
  long iterations;
  atomic_int stop;
} g;

struct stats {
  long iterations, errors;
  CK_RV first_error;
  char where[64];
};

static void fail_at(struct stats *st, const char *where, CK_RV rv)
{
  if (!st->errors++) {
    st->first_error = rv;
    snprintf(st->where, sizeof(st->where), "%s", where);
  }
}

/* Codes a call may legitimately return once C_Finalize ran under it. */
static int gone_rv(CK_RV rv)
{
  return rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_SESSION_HANDLE_INVALID ||
         rv == CKR_SESSION_CLOSED || rv == CKR_OBJECT_HANDLE_INVALID ||
         rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OPERATION_NOT_INITIALIZED ||
         rv == CKR_SLOT_ID_INVALID;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label,
                                 CK_RV *rv)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG n = 0;
  *rv = g.f->C_FindObjectsInit(s, t, 2);
  if (*rv != CKR_OK)
    return h;
  *rv = g.f->C_FindObjects(s, &h, 1, &n);
  g.f->C_FindObjectsFinal(s);
  if (*rv == CKR_OK && n != 1) {
    *rv = CKR_GENERAL_ERROR;
    h = CK_INVALID_HANDLE;
  }
  return h;
}

/* One iteration; returns 0 when every step behaved, otherwise records the failure. With
 * `finalizing`, a "gone" code ends the iteration quietly. */
static int iteration(struct stats *st, int finalizing)
{
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE all[64], priv[2], pub;
  CK_ULONG n = 0;
  CK_RV rv;
  const char *where = "";
  int rc = -1;
  CK_SLOT_ID slots[4];
  CK_ULONG ns = 4;

#define STEP(name, call)                                                                           \
  do {                                                                                             \
    where = name;                                                                                  \
    rv = (call);                                                                                   \
    if (rv != CKR_OK)                                                                              \
      goto out;                                                                                    \
  } while (0)

  STEP("C_GetSlotList", g.f->C_GetSlotList(CK_TRUE, slots, &ns));
  STEP("C_OpenSession", g.f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s));
  STEP("C_FindObjectsInit(all)", g.f->C_FindObjectsInit(s, NULL, 0));
  rv = g.f->C_FindObjects(s, all, 64, &n);
  g.f->C_FindObjectsFinal(s);
  where = "C_FindObjects(all)";
  if (rv != CKR_OK)
    goto out;
  if (n < 4) {
    rv = CKR_GENERAL_ERROR;
    goto out;
  }
  for (int k = 0; k < 2; k++) {
    CK_ATTRIBUTE a[2] = {{CKA_LABEL, NULL, 0}, {CKA_KEY_TYPE, NULL, 0}};
    unsigned char label[256], big[1024];
    CK_KEY_TYPE kt;
    CK_ATTRIBUTE pa = {k == REL_EC ? CKA_EC_POINT : CKA_MODULUS, NULL, 0};
    where = "find by label";
    priv[k] = find_one(s, CKO_PRIVATE_KEY, g.labels[k], &rv);
    if (rv != CKR_OK)
      goto out;
    pub = find_one(s, CKO_PUBLIC_KEY, g.labels[k], &rv);
    if (rv != CKR_OK)
      goto out;
    STEP("C_GetAttributeValue(length)", g.f->C_GetAttributeValue(s, priv[k], a, 2));
    where = "attribute lengths";
    if (a[0].ulValueLen != strlen(g.labels[k]) || a[1].ulValueLen != sizeof(kt)) {
      rv = CKR_GENERAL_ERROR;
      goto out;
    }
    a[0].pValue = label;
    a[0].ulValueLen = sizeof(label);
    a[1].pValue = &kt;
    STEP("C_GetAttributeValue", g.f->C_GetAttributeValue(s, priv[k], a, 2));
    where = "attribute values";
    if (memcmp(label, g.labels[k], strlen(g.labels[k])) != 0 ||
        kt != (k == REL_EC ? CKK_EC : CKK_RSA)) {
      rv = CKR_GENERAL_ERROR;
      goto out;
    }
    pa.pValue = big;
    pa.ulValueLen = sizeof(big);
    STEP("C_GetAttributeValue(public)", g.f->C_GetAttributeValue(s, pub, &pa, 1));
    {
      struct rel_key key = {priv[k], g.pub[k]};
      struct rel_sig_result r;
      rel_sign_verify(g.f, s, (enum rel_kind)k, &key, &r);
      where = k == REL_EC ? "C_Sign(ECDSA)" : "C_Sign(SHA256_RSA_PKCS)";
      rv = r.rv;
      if (rv != CKR_OK)
        goto out;
      where = "OpenSSL verification of the module's signature";
      if (!r.verified) {
        rv = CKR_GENERAL_ERROR;
        goto out;
      }
    }
    if (k == REL_EC) {
      /* The module verifies its own signature (locally, on the cached public key) and rejects
       * a corrupted one. */
      CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
      unsigned char dg[32], sig[64];
      CK_ULONG sl = sizeof(sig);
      if (RAND_bytes(dg, sizeof(dg)) != 1)
        goto out;
      STEP("C_SignInit", g.f->C_SignInit(s, &m, priv[k]));
      STEP("C_Sign", g.f->C_Sign(s, dg, sizeof(dg), sig, &sl));
      STEP("C_VerifyInit", g.f->C_VerifyInit(s, &m, pub));
      STEP("C_Verify", g.f->C_Verify(s, dg, sizeof(dg), sig, sl));
      sig[5] ^= 0x40;
      STEP("C_VerifyInit", g.f->C_VerifyInit(s, &m, pub));
      where = "C_Verify(corrupted)";
      rv = g.f->C_Verify(s, dg, sizeof(dg), sig, sl);
      if (rv != CKR_SIGNATURE_INVALID) {
        if (rv == CKR_OK)
          rv = CKR_GENERAL_ERROR;
        goto out;
      }
    } else {
      CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
      CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
      unsigned char pt[32], ct[512], out[512];
      size_t ctl = sizeof(ct);
      CK_ULONG ol = sizeof(out);
      EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(g.pub[k], NULL);
      int ok = c && RAND_bytes(pt, sizeof(pt)) == 1 && EVP_PKEY_encrypt_init(c) == 1 &&
               EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) == 1 &&
               EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1 &&
               EVP_PKEY_encrypt(c, ct, &ctl, pt, sizeof(pt)) == 1;
      EVP_PKEY_CTX_free(c);
      where = "OpenSSL encryption";
      if (!ok) {
        rv = CKR_GENERAL_ERROR;
        goto out;
      }
      STEP("C_DecryptInit", g.f->C_DecryptInit(s, &m, priv[k]));
      STEP("C_Decrypt", g.f->C_Decrypt(s, ct, (CK_ULONG)ctl, out, &ol));
      where = "decrypted plaintext";
      if (ol != sizeof(pt) || memcmp(out, pt, sizeof(pt)) != 0) {
        rv = CKR_GENERAL_ERROR;
        goto out;
      }
    }
  }
  where = "C_CloseSession";
  rv = g.f->C_CloseSession(s);
  s = CK_INVALID_HANDLE;
  if (rv != CKR_OK)
    goto out;
  rc = 0;
out:
  if (s != CK_INVALID_HANDLE)
    g.f->C_CloseSession(s);
  if (rc != 0) {
    if (finalizing && gone_rv(rv))
      return 1; /* the module went away under us: expected in phase 2 */
    fail_at(st, where, rv);
  }
  return rc;
#undef STEP
}

struct worker {
  pthread_t th;
  unsigned idx;
  int finalizing;
  struct stats st;
};

#define FINALIZE_CYCLES 30

/* Phase 3 rounds whose C_GetTokenInfo and C_OpenSession both found the module initialised. */
static atomic_long live_rounds;

/* One round of phase 3's calls on the first slot; 0, or 1 with an unexpected code counted. */
static int slot_calls(struct stats *st)
{
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8, nm = 64;
  CK_MECHANISM_TYPE mechs[64];
  CK_MECHANISM_INFO mi;
  CK_SLOT_INFO si;
  CK_TOKEN_INFO ti;
  CK_INFO info;
  CK_SESSION_HANDLE s;
  CK_RV rv;
  int live;
#define SLOT_CALL(name, call)                                                                      \
  do {                                                                                             \
    rv = (call);                                                                                   \
    if (rv != CKR_OK && !gone_rv(rv)) {                                                            \
      fail_at(st, name, rv);                                                                       \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)
  SLOT_CALL("C_GetInfo", g.f->C_GetInfo(&info));
  SLOT_CALL("C_GetSlotList", g.f->C_GetSlotList(CK_TRUE, slots, &n));
  SLOT_CALL("C_GetSlotInfo", g.f->C_GetSlotInfo(0, &si));
  SLOT_CALL("C_GetTokenInfo", g.f->C_GetTokenInfo(0, &ti));
  live = rv == CKR_OK;
  SLOT_CALL("C_GetMechanismList", g.f->C_GetMechanismList(0, mechs, &nm));
  SLOT_CALL("C_GetMechanismInfo", g.f->C_GetMechanismInfo(0, CKM_ECDSA, &mi));
  rv = g.f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv == CKR_OK && live)
    atomic_fetch_add(&live_rounds, 1);
  if (rv == CKR_OK)
    SLOT_CALL("C_CloseSession", g.f->C_CloseSession(s));
  else
    SLOT_CALL("C_OpenSession", rv);
#undef SLOT_CALL
  return 0;
}

static void *run_slot_calls(void *arg)
{
  struct worker *w = arg;
  while (!atomic_load(&g.stop)) {
    w->st.iterations++;
    if (slot_calls(&w->st))
      break;
  }
  return NULL;
}

static void *run(void *arg)
{
  struct worker *w = arg;
  for (long i = 0; w->finalizing ? !atomic_load(&g.stop) : i < g.iterations; i++) {
    int r = iteration(&w->st, w->finalizing);
    w->st.iterations++;
    if (r == 1)
      break;
  }
  return NULL;
}

static void run_threads(struct worker *w, unsigned n, int finalizing)
{
  for (unsigned i = 0; i < n; i++) {
    memset(&w[i], 0, sizeof(w[i]));
    w[i].idx = i;
    w[i].finalizing = finalizing;
    if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
      fprintf(stderr, "FATAL: pthread_create\n");
      exit(1);
    }
  }
  if (finalizing) {
    CK_RV rv;
    usleep(1500 * 1000);
    rv = g.f->C_Finalize(NULL);
    t_check(rv == CKR_OK, "C_Finalize with calls in flight: %s", t_rv_name(rv));
    atomic_store(&g.stop, 1);
  }
  for (unsigned i = 0; i < n; i++)
    pthread_join(w[i].th, NULL);
}

int main(int argc, char **argv)
{
  struct worker w[MAX_THREADS];
  void *dl;
  unsigned n;
  long its = 0, errs = 0;
  CK_RV rv, first = CKR_OK;
  const char *where = "";
  int64_t t0;

  if (argc != 4) {
    fprintf(stderr, "usage: stress_test CONFIG THREADS ITERATIONS\n");
    return 2;
  }
  n = (unsigned)strtoul(argv[2], NULL, 10);
  g.iterations = strtol(argv[3], NULL, 10);
  if (n == 0 || n > MAX_THREADS || g.iterations <= 0)
    return 2;
  g.labels[REL_EC] = rel_env("REL_EC_LABEL");
  g.labels[REL_RSA] = rel_env("REL_RSA_LABEL");
  g.pub[REL_EC] = rel_pubkey_load(rel_env("REL_EC_PUB"));
  g.pub[REL_RSA] = rel_pubkey_load(rel_env("REL_RSA_PUB"));
  if (!g.pub[0] || !g.pub[1])
    return 1;
#ifdef REL_LINKED
  /* Linked with the module's code (sanitizer builds: a clang-sanitized shared module cannot be
   * linked with -z defs, the executable carries the runtime). */
  dl = NULL;
  if (C_GetFunctionList(&g.f) != CKR_OK)
    return 1;
#else
  g.f = rel_load(rel_env("AKV_MODULE"), &dl);
#endif

  /* Phase 1 */
  rv = rel_initialize(g.f, argv[1]);
  t_check(rv == CKR_OK, "C_Initialize: %s", t_rv_name(rv));
  if (rv != CKR_OK)
    return t_finish("stress_test");
  t0 = rel_now_ms();
  run_threads(w, n, 0);
  for (unsigned i = 0; i < n; i++) {
    its += w[i].st.iterations;
    errs += w[i].st.errors;
    if (w[i].st.errors && first == CKR_OK) {
      first = w[i].st.first_error;
      where = w[i].st.where;
    }
  }
  t_note("phase 1: %u threads x %ld iterations in %lld ms", n, g.iterations,
         (long long)(rel_now_ms() - t0));
  t_check(errs == 0 && its == (long)n * g.iterations,
          "phase 1: %ld iterations (open, find, attributes, 2 signs verified by OpenSSL, verify "
          "good+bad, decrypt, close), %ld failed (first: %s at %s)",
          its, errs, t_rv_name(first), where);
  rv = g.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "C_Finalize after the threads: %s", t_rv_name(rv));

  /* Phase 2 */
  rv = rel_initialize(g.f, argv[1]);
  t_check(rv == CKR_OK, "C_Initialize again: %s", t_rv_name(rv));
  if (rv != CKR_OK)
    return t_finish("stress_test");
  run_threads(w, n, 1);
  its = errs = 0;
  first = CKR_OK;
  for (unsigned i = 0; i < n; i++) {
    its += w[i].st.iterations;
    errs += w[i].st.errors;
    if (w[i].st.errors && first == CKR_OK) {
      first = w[i].st.first_error;
      where = w[i].st.where;
    }
  }
  t_check(errs == 0,
          "phase 2: %ld iterations with C_Finalize racing them; calls returned CKR_OK "
          "or a 'module/session gone' code (%ld others, first 0x%lx at %s)",
          its, errs, (unsigned long)first, where);
  rv = g.f->C_GetSlotList(CK_TRUE, NULL, &(CK_ULONG){0});
  t_check(rv == CKR_CRYPTOKI_NOT_INITIALIZED, "after C_Finalize: C_GetSlotList -> %s",
          t_rv_name(rv));

  /* Phase 3 */
  {
    long cycles_ok = 0;
    atomic_store(&g.stop, 0);
    rv = rel_initialize(g.f, argv[1]);
    t_check(rv == CKR_OK, "C_Initialize a third time: %s", t_rv_name(rv));
    for (unsigned i = 0; i < n; i++) {
      memset(&w[i], 0, sizeof(w[i]));
      if (pthread_create(&w[i].th, NULL, run_slot_calls, &w[i]) != 0) {
        fprintf(stderr, "FATAL: pthread_create\n");
        exit(1);
      }
    }
    t0 = rel_now_ms();
    for (int c = 0; c < FINALIZE_CYCLES; c++) {
      CK_RV rf, ri;
      usleep(20 * 1000);
      rf = g.f->C_Finalize(NULL);
      usleep(2 * 1000);
      ri = rel_initialize(g.f, argv[1]);
      if (rf == CKR_OK && ri == CKR_OK)
        cycles_ok++;
    }
    atomic_store(&g.stop, 1);
    its = errs = 0;
    first = CKR_OK;
    where = "";
    for (unsigned i = 0; i < n; i++) {
      pthread_join(w[i].th, NULL);
      its += w[i].st.iterations;
      errs += w[i].st.errors;
      if (w[i].st.errors && first == CKR_OK) {
        first = w[i].st.first_error;
        where = w[i].st.where;
      }
    }
    t_check(cycles_ok == FINALIZE_CYCLES,
            "phase 3: %ld/%d C_Finalize + C_Initialize cycles "
            "returned CKR_OK while %u threads called slot functions (%lld ms)",
            cycles_ok, FINALIZE_CYCLES, n, (long long)(rel_now_ms() - t0));
    t_check(errs == 0 && atomic_load(&live_rounds) > 0,
            "phase 3: %ld rounds (%ld on an initialised module) of C_GetInfo, C_GetSlotList, "
            "C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList, C_GetMechanismInfo, "
            "C_OpenSession/C_CloseSession returned CKR_OK or a 'module gone' code (%ld others, "
            "first 0x%lx at %s)",
            its, atomic_load(&live_rounds), errs, (unsigned long)first, where);
  }
  rv = g.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "final C_Finalize: %s", t_rv_name(rv));
  EVP_PKEY_free(g.pub[0]);
  EVP_PKEY_free(g.pub[1]);
  if (dl)
    dlclose(dl);
  return t_finish("stress_test");
}
