/* SPDX-License-Identifier: Apache-2.0 */
/* fault_test - signatures from many threads while the emulator injects faults.
 *
 *   fault_test ok   CONFIG THREADS COUNT NAME=SPEC...
 *   fault_test fail CONFIG THREADS COUNT DEADLINE_MS NAME=SPEC[=STATUS]...
 *
 * "ok": for each fault spec, THREADS threads (each with its own session) make COUNT signatures
 * (alternating CKM_ECDSA on a P-256 key and CKM_SHA256_RSA_PKCS on an RSA key); every call must
 * succeed and every signature must verify with OpenSSL against the vault's public key (DER files
 * written by the runner from the vault's JWK, not from the module). The emulator's counters must
 * show that the fault fired.
 * "fail": the fault hits every request; every call must fail with CKR_DEVICE_ERROR within
 * DEADLINE_MS + 1000 ms (a bound on a hang, the module's deadline is DEADLINE_MS), and when STATUS
 * is given C_GetSessionInfo.ulDeviceError must be that HTTP status.
 *
 * Environment: AKV_MODULE, EMU_CONTROL, EMU_CA, REL_EC_LABEL, REL_EC_PUB, REL_RSA_LABEL,
 * REL_RSA_PUB. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rel_common.h"

#define MAX_THREADS 64

struct shared {
  CK_FUNCTION_LIST_PTR f;
  CK_SLOT_ID slot;
  struct rel_key keys[2];
  int fail_mode;
  long count;
  long deadline_ms;
  long expect_status;
};

struct worker {
  pthread_t th;
  const struct shared *sh;
  unsigned idx;
  /* results */
  long ok, failed, bad_sig, wrong_rv, over_time, wrong_status;
  int64_t max_ms;
  CK_RV first_rv;
  CK_ULONG first_status;
};

static void *run_worker(void *arg)
{
  struct worker *w = arg;
  const struct shared *sh = w->sh;
  CK_SESSION_HANDLE s;
  CK_RV rv = sh->f->C_OpenSession(sh->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    w->failed = sh->count;
    w->first_rv = rv;
    return NULL;
  }
  for (long i = 0; i < sh->count; i++) {
    enum rel_kind kind = ((unsigned long)i + w->idx) % 2 ? REL_RSA : REL_EC;
    struct rel_sig_result r;
    rel_sign_verify(sh->f, s, kind, &sh->keys[kind], &r);
    if (r.ms > w->max_ms)
      w->max_ms = r.ms;
    if (sh->fail_mode) {
      if (r.rv == CKR_OK) {
        w->ok++;
      } else {
        if (r.rv != CKR_DEVICE_ERROR)
          w->wrong_rv++;
        if (sh->expect_status && (long)r.device_error != sh->expect_status)
          w->wrong_status++;
        if (!w->first_rv) {
          w->first_rv = r.rv;
          w->first_status = r.device_error;
        }
      }
      if (r.ms > sh->deadline_ms + 1000)
        w->over_time++;
      continue;
    }
    if (r.rv != CKR_OK) {
      w->failed++;
      if (!w->first_rv) {
        w->first_rv = r.rv;
        w->first_status = r.device_error;
      }
    } else if (!r.verified) {
      w->bad_sig++;
    } else {
      w->ok++;
    }
  }
  sh->f->C_CloseSession(s);
  return NULL;
}

static int run_phase(struct shared *sh, unsigned nthreads, const char *name, const char *spec)
{
  struct worker w[MAX_THREADS];
  long ok = 0, failed = 0, bad = 0, wrong_rv = 0, over = 0, wrong_status = 0, fired[8];
  int64_t max_ms = 0, t0;
  CK_RV first_rv = CKR_OK;
  CK_ULONG first_status = 0;
  long total = (long)nthreads * sh->count;
  int nf, any_fired = 0;

  if (rel_emu_faults(spec) != 0) {
    t_check(0, "%s: fault '%s' set in the emulator", name, spec);
    return -1;
  }
  t0 = rel_now_ms();
  memset(w, 0, sizeof(w));
  for (unsigned i = 0; i < nthreads; i++) {
    w[i].sh = sh;
    w[i].idx = i;
    if (pthread_create(&w[i].th, NULL, run_worker, &w[i]) != 0) {
      fprintf(stderr, "FATAL: pthread_create\n");
      exit(1);
    }
  }
  for (unsigned i = 0; i < nthreads; i++) {
    pthread_join(w[i].th, NULL);
    ok += w[i].ok;
    failed += w[i].failed;
    bad += w[i].bad_sig;
    wrong_rv += w[i].wrong_rv;
    over += w[i].over_time;
    wrong_status += w[i].wrong_status;
    if (w[i].max_ms > max_ms)
      max_ms = w[i].max_ms;
    if (!first_rv && w[i].first_rv) {
      first_rv = w[i].first_rv;
      first_status = w[i].first_status;
    }
  }
  nf = rel_emu_faults_fired(fired, sizeof(fired) / sizeof(fired[0]));
  for (int i = 0; i < nf && i < 8; i++)
    if (fired[i] > 0)
      any_fired = 1;
  rel_emu_faults("");
  t_note("%s ('%s'): %u threads x %ld calls in %lld ms, slowest call %lld ms, fault fired %ld "
         "time(s)",
         name, spec, nthreads, sh->count, (long long)(rel_now_ms() - t0), (long long)max_ms,
         nf > 0 ? fired[0] : -1L);
  t_check(any_fired, "%s: the emulator injected the fault (fired %ld)", name,
          nf > 0 ? fired[0] : -1L);
  if (!sh->fail_mode) {
    t_check(failed == 0, "%s: %ld/%ld signatures failed (first: %s, ulDeviceError %lu)", name,
            failed, total, t_rv_name(first_rv), (unsigned long)first_status);
    t_check(bad == 0, "%s: %ld signatures do not verify", name, bad);
    t_check(ok == total, "%s: %ld/%ld signatures made and verified with OpenSSL", name, ok, total);
  } else {
    t_check(ok == 0 && wrong_rv == 0,
            "%s: all %ld calls failed with CKR_DEVICE_ERROR (%ld succeeded, %ld other CKR_; "
            "first %s)",
            name, total, ok, wrong_rv, t_rv_name(first_rv));
    t_check(over == 0,
            "%s: every call returned within the deadline + 1 s (%ld ms; slowest %lld "
            "ms, %ld over)",
            name, sh->deadline_ms + 1000, (long long)max_ms, over);
    if (sh->expect_status)
      t_check(wrong_status == 0,
              "%s: ulDeviceError = %ld on every failed session (%ld differ; "
              "first %lu)",
              name, sh->expect_status, wrong_status, (unsigned long)first_status);
  }
  return 0;
}

int main(int argc, char **argv)
{
  struct shared sh;
  void *dl = NULL;
  CK_SESSION_HANDLE s;
  CK_RV rv;
  unsigned nthreads;
  int argi;
  const char *labels[2];

  if (argc < 6 || (strcmp(argv[1], "ok") != 0 && strcmp(argv[1], "fail") != 0)) {
    fprintf(stderr,
            "usage: fault_test ok CONFIG THREADS COUNT NAME=SPEC...\n"
            "       fault_test fail CONFIG THREADS COUNT DEADLINE_MS NAME=SPEC[=STATUS]...\n");
    return 2;
  }
  memset(&sh, 0, sizeof(sh));
  sh.fail_mode = strcmp(argv[1], "fail") == 0;
  nthreads = (unsigned)strtoul(argv[3], NULL, 10);
  sh.count = strtol(argv[4], NULL, 10);
  argi = 5;
  if (sh.fail_mode)
    sh.deadline_ms = strtol(argv[argi++], NULL, 10);
  if (nthreads == 0 || nthreads > MAX_THREADS || sh.count <= 0 || argi >= argc ||
      (sh.fail_mode && sh.deadline_ms <= 0)) {
    fprintf(stderr, "fault_test: bad arguments\n");
    return 2;
  }
  labels[REL_EC] = rel_env("REL_EC_LABEL");
  labels[REL_RSA] = rel_env("REL_RSA_LABEL");
  sh.keys[REL_EC].pub = rel_pubkey_load(rel_env("REL_EC_PUB"));
  sh.keys[REL_RSA].pub = rel_pubkey_load(rel_env("REL_RSA_PUB"));
  if (!sh.keys[REL_EC].pub || !sh.keys[REL_RSA].pub)
    return 1;

  sh.f = rel_load(rel_env("AKV_MODULE"), &dl);
  rv = rel_initialize(sh.f, argv[2]);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_Initialize: %s\n", t_rv_name(rv));
    return 1;
  }
  sh.slot = rel_first_slot(sh.f);
  rv = sh.f->C_OpenSession(sh.slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_OpenSession: %s\n", t_rv_name(rv));
    return 1;
  }
  /* Warm-up without faults: the listing, the public keys and a token are cached, so the phases
   * measure the signing path (the part a long-running host exercises). */
  for (int k = 0; k < 2; k++) {
    struct rel_sig_result r;
    sh.keys[k].priv = rel_find(sh.f, s, CKO_PRIVATE_KEY, labels[k]);
    t_check(sh.keys[k].priv != CK_INVALID_HANDLE, "private key '%s' found", labels[k]);
    if (sh.keys[k].priv == CK_INVALID_HANDLE)
      return t_finish("fault_test");
    rel_sign_verify(sh.f, s, (enum rel_kind)k, &sh.keys[k], &r);
    t_check(r.rv == CKR_OK && r.verified, "warm-up signature with '%s' verifies (%s)", labels[k],
            t_rv_name(r.rv));
  }

  for (; argi < argc; argi++) {
    char *arg = strdup(argv[argi]);
    char *eq = arg ? strchr(arg, '=') : NULL;
    char *status;
    if (!eq) {
      fprintf(stderr, "fault_test: '%s' is not NAME=SPEC\n", argv[argi]);
      return 2;
    }
    *eq = '\0';
    status = strchr(eq + 1, '=');
    sh.expect_status = 0;
    if (status) {
      *status = '\0';
      sh.expect_status = strtol(status + 1, NULL, 10);
    }
    run_phase(&sh, nthreads, arg, eq + 1);
    free(arg);
  }

  /* The module recovers once the vault does. */
  {
    struct rel_sig_result r;
    rel_sign_verify(sh.f, s, REL_EC, &sh.keys[REL_EC], &r);
    t_check(r.rv == CKR_OK && r.verified, "after the faults are cleared, signing works (%s)",
            t_rv_name(r.rv));
  }
  sh.f->C_CloseSession(s);
  rv = sh.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "C_Finalize: %s", t_rv_name(rv));
  EVP_PKEY_free(sh.keys[0].pub);
  EVP_PKEY_free(sh.keys[1].pub);
  dlclose(dl);
  return t_finish("fault_test");
}
