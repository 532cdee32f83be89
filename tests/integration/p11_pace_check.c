/* SPDX-License-Identifier: Apache-2.0 */
/* p11_pace_check - one signing process of the pacing test (t_pacing.sh) and of the benchmark row
 * tests/bench/pace-bench.sh: COUNT ECDSA P-256 signatures with the key LABEL, each verified with
 * OpenSSL against PUBKEY_DER (the vault's public key, taken from the REST API, not from the
 * module). Prints one line:
 *   signed S verified V failed F first_error RV elapsed_ms MS
 * and exits 0 when every signature was made and verified.
 *
 * usage: p11_pace_check MODULE LABEL COUNT PUBKEY_DER
 * env: the module's configuration (AKV_PKCS11_CONFIG). */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int main(int argc, char **argv)
{
  struct t_p11 p;
  CK_OBJECT_HANDLE key;
  CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
  CK_RV rv, first = CKR_OK;
  EVP_PKEY *pub = NULL;
  unsigned char *der, dg[32], sig[64];
  const unsigned char *q;
  size_t der_len;
  long count, signed_n = 0, verified = 0, failed = 0;
  int64_t t0;
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
  for (long i = 0; i < count; i++) {
    CK_ULONG sig_len = sizeof(sig);
    if (RAND_bytes(dg, sizeof(dg)) != 1)
      return 1;
    rv = p.f->C_SignInit(p.sess, &mech, key);
    if (rv == CKR_OK)
      rv = p.f->C_Sign(p.sess, dg, sizeof(dg), sig, &sig_len);
    if (rv != CKR_OK || sig_len != 64) {
      failed++;
      if (first == CKR_OK)
        first = rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
      continue;
    }
    signed_n++;
    if (verify_p256(pub, dg, sig))
      verified++;
    else
      failed++;
  }
  printf("signed %ld verified %ld failed %ld first_error %s elapsed_ms %lld\n", signed_n, verified,
         failed, first == CKR_OK ? "none" : t_rv_name(first), (long long)(now_ms() - t0));
  t_p11_close(&p);
  EVP_PKEY_free(pub);
  return verified == count ? 0 : 1;
}
