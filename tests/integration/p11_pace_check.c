/* SPDX-License-Identifier: Apache-2.0 */
/* p11_pace_check - one signing process of the pacing test (t_pacing.sh) and of the benchmark row
 * tests/bench/pace-bench.sh: COUNT ECDSA P-256 signatures with the key LABEL, each verified with
 * OpenSSL against PUBKEY_DER (the vault's public key, taken from the REST API, not from the
 * module). Prints one line:
 *   signed S verified V failed F first_error RV elapsed_ms MS
 * and exits 0 when every signature was made and verified.
 *
 * usage: p11_pace_check MODULE LABEL COUNT PUBKEY_DER
 * env: the module's configuration (AKV_PKCS11_CONFIG); PACE_FORK=N: after its COUNT signatures
 * the process forks, the child calls C_Initialize again (docs/reliability.md "Fork") and both make
 * N more at the same time, spending the same shared budget; the child prints its own line first,
 * prefixed "child ", and must end within 60 s. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* r || s (64 bytes) against the digest, with OpenSSL. */
static int verify_p256(EVP_PKEY *pub, const unsigned char *dg, const unsigned char *rs)
{
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
  unsigned char *der = NULL;
  int der_len, ok = 0;
  EVP_PKEY_CTX *ctx = NULL;
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    goto out;
  }
  der_len = i2d_ECDSA_SIG(sig, &der);
  ctx = EVP_PKEY_CTX_new(pub, NULL);
  ok = der_len > 0 && ctx && EVP_PKEY_verify_init(ctx) == 1 &&
       EVP_PKEY_verify(ctx, der, (size_t)der_len, dg, 32) == 1;
out:
  EVP_PKEY_CTX_free(ctx);
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return ok;
}

struct tally {
  long signed_n, verified, failed;
  CK_RV first;
};

static void sign_loop(struct t_p11 *p, CK_OBJECT_HANDLE key, EVP_PKEY *pub, long count,
                      struct tally *t)
{
  CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
  unsigned char dg[32], sig[64];
  CK_RV rv;
  for (long i = 0; i < count; i++) {
    CK_ULONG sig_len = sizeof(sig);
    if (RAND_bytes(dg, sizeof(dg)) != 1)
      exit(1);
    rv = p->f->C_SignInit(p->sess, &mech, key);
    if (rv == CKR_OK)
      rv = p->f->C_Sign(p->sess, dg, sizeof(dg), sig, &sig_len);
    if (rv != CKR_OK || sig_len != 64) {
      t->failed++;
      if (t->first == CKR_OK)
        t->first = rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
      continue;
    }
    t->signed_n++;
    if (verify_p256(pub, dg, sig))
      t->verified++;
    else
      t->failed++;
  }
}

static void report(const char *who, const struct tally *t, int64_t ms)
{
  printf("%ssigned %ld verified %ld failed %ld first_error %s elapsed_ms %lld\n", who, t->signed_n,
         t->verified, t->failed, t->first == CKR_OK ? "none" : t_rv_name(t->first), (long long)ms);
  fflush(stdout);
}

/* The forked child: C_Initialize again (the parent's state is not usable in it), then sign. */
static int child(struct t_p11 *p, const char *label, EVP_PKEY *pub, long count)
{
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slots[16];
  CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
  CK_OBJECT_HANDLE key;
  struct tally t = {0, 0, 0, CKR_OK};
  int64_t t0 = now_ms();
  alarm(60); /* a hang (a lock held across the fork) ends the child and fails the check */
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  if (p->f->C_Initialize(&args) != CKR_OK || p->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK ||
      n == 0 || p->f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &p->sess) != CKR_OK) {
    printf("child: the module did not initialise again\n");
    return 1;
  }
  key = t_find(p, CKO_PRIVATE_KEY, label);
  if (key == CK_INVALID_HANDLE) {
    printf("child: no private key labelled %s\n", label);
    return 1;
  }
  sign_loop(p, key, pub, count, &t);
  report("child ", &t, now_ms() - t0);
  p->f->C_Finalize(NULL);
  return t.verified == count ? 0 : 1;
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  CK_OBJECT_HANDLE key;
  EVP_PKEY *pub = NULL;
  unsigned char *der;
  const unsigned char *q;
  const char *env;
  size_t der_len;
  long count, more;
  struct tally t = {0, 0, 0, CKR_OK};
  int64_t t0;
  int ok;
  if (argc != 5 || (count = strtol(argv[3], NULL, 10)) < 1 || count > 100000) {
    fprintf(stderr, "usage: p11_pace_check MODULE LABEL COUNT PUBKEY_DER\n");
    return 2;
  }
  der = t_read_file_new(argv[4], &der_len);
  q = der;
  if (!der || !(pub = d2i_PUBKEY(NULL, &q, (long)der_len))) {
    fprintf(stderr, "p11_pace_check: %s is not a DER public key\n", argv[4]);
    free(der);
    return 2;
  }
  free(der);
  t_p11_open(&p, argv[1]);
  key = t_find(&p, CKO_PRIVATE_KEY, argv[2]);
  if (key == CK_INVALID_HANDLE) {
    fprintf(stderr, "p11_pace_check: no private key labelled %s\n", argv[2]);
    return 1;
  }
  t0 = now_ms();
  sign_loop(&p, key, pub, count, &t);
  ok = t.verified == count;
  if ((env = getenv("PACE_FORK")) && (more = strtol(env, NULL, 10)) > 0 && more <= 100000) {
    int st = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid == 0)
      _exit(child(&p, argv[2], pub, more));
    sign_loop(&p, key, pub, more, &t);
    ok = ok && pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
         t.verified == count + more;
  }
  report("", &t, now_ms() - t0);
  t_p11_close(&p);
  EVP_PKEY_free(pub);
  return ok ? 0 : 1;
}
