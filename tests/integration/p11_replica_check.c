/* SPDX-License-Identifier: Apache-2.0 */
/* p11_replica_check - signs COUNT messages with the EC P-256 private key labelled LABEL
 * (CKM_ECDSA over a SHA-256 digest made here) and verifies every signature with OpenSSL against
 * PUB_PEM, the public key the test imported (independent of the module). Used by t_replicas.sh
 * against a slot with replica vaults (docs/reliability.md "Replica vaults").
 *
 * usage: p11_replica_check MODULE LABEL PUB_PEM COUNT [EXPECT_RV]
 *   without EXPECT_RV: every C_Sign must succeed and verify;
 *   with EXPECT_RV (a CKR_ name): every C_Sign must fail with it.
 * env: the module's configuration (AKV_PKCS11_CONFIG); P11_REPLICA_GATE=DIR: once the key is
 * found, creates DIR/ready and waits (at most 20 s) for DIR/go before signing, so that the test
 * can inject faults after the listing. Prints "ok N - ..." lines and a summary
 * "signed=S verified=V failed=F". */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

/* Verifies the raw r||s signature of digest with pub. */
static int verify_raw(EVP_PKEY *pub, const unsigned char *dgst, const unsigned char *sig,
                      size_t len)
{
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = len == 64 ? BN_bin2bn(sig, 32, NULL) : NULL;
  BIGNUM *s = len == 64 ? BN_bin2bn(sig + 32, 32, NULL) : NULL;
  unsigned char *der = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  int dlen, ok = 0;
  if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
    BN_free(r);
    BN_free(s);
    goto out;
  }
  dlen = i2d_ECDSA_SIG(es, &der);
  ctx = EVP_PKEY_CTX_new(pub, NULL);
  ok = dlen > 0 && ctx && EVP_PKEY_verify_init(ctx) == 1 &&
       EVP_PKEY_verify(ctx, der, (size_t)dlen, dgst, 32) == 1;
out:
  EVP_PKEY_CTX_free(ctx);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  return ok;
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  CK_OBJECT_HANDLE key;
  const char *expect = argc > 5 ? argv[5] : NULL;
  EVP_PKEY *pub = NULL;
  FILE *f;
  long count;
  unsigned long signed_n = 0, verified = 0, failed = 0, expected_fail = 0;
  CK_RV first_bad = CKR_OK;
  if (argc < 5 || (count = strtol(argv[4], NULL, 10)) <= 0 || count > 100000) {
    fprintf(stderr, "usage: %s MODULE LABEL PUB_PEM COUNT [EXPECT_RV]\n", argv[0]);
    return 2;
  }
  f = fopen(argv[3], "r");
  if (!f || !(pub = PEM_read_PUBKEY(f, NULL, NULL, NULL))) {
    fprintf(stderr, "cannot read the public key %s\n", argv[3]);
    return 1;
  }
  fclose(f);
  t_p11_open(&p, argv[1]);
  key = t_find(&p, CKO_PRIVATE_KEY, argv[2]);
  t_check(key != CK_INVALID_HANDLE, "private key %s found", argv[2]);
  if (getenv("P11_REPLICA_GATE")) {
    char path[512];
    int waited = 0;
    snprintf(path, sizeof(path), "%s/ready", getenv("P11_REPLICA_GATE"));
    if ((f = fopen(path, "w")) != NULL)
      fclose(f);
    snprintf(path, sizeof(path), "%s/go", getenv("P11_REPLICA_GATE"));
    while (access(path, F_OK) != 0 && waited++ < 200)
      usleep(100000);
    t_check(access(path, F_OK) == 0, "the test opened the gate");
  }
  for (long i = 0; key != CK_INVALID_HANDLE && i < count; i++) {
    char msg[96];
    unsigned char dgst[32], sig[256];
    CK_ULONG slen = sizeof(sig);
    CK_RV rv;
    snprintf(msg, sizeof(msg), "replica test %ld/%ld of process %ld", i, count, (long)getpid());
    SHA256((const unsigned char *)msg, strlen(msg), dgst);
    rv = p.f->C_SignInit(p.sess, &m, key);
    if (rv == CKR_OK)
      rv = p.f->C_Sign(p.sess, dgst, sizeof(dgst), sig, &slen);
    if (expect) {
      if (strcmp(t_rv_name(rv), expect) == 0)
        expected_fail++;
      else if (first_bad == CKR_OK)
        first_bad = rv == CKR_OK ? (CK_RV)-1 : rv;
      continue;
    }
    if (rv != CKR_OK) {
      failed++;
      if (first_bad == CKR_OK)
        first_bad = rv;
      continue;
    }
    signed_n++;
    verified += (unsigned long)verify_raw(pub, dgst, sig, slen);
  }
  if (expect) {
    t_check(expected_fail == (unsigned long)count, "%lu of %ld C_Sign gave %s%s%s", expected_fail,
            count, expect, first_bad ? "; another answer: " : "",
            first_bad ? (first_bad == (CK_RV)-1 ? "CKR_OK" : t_rv_name(first_bad)) : "");
  } else {
    t_check(signed_n == (unsigned long)count, "%lu of %ld C_Sign succeeded%s%s", signed_n, count,
            failed ? "; first failure " : "", failed ? t_rv_name(first_bad) : "");
    t_check(verified == (unsigned long)count, "%lu of %ld signatures verify with OpenSSL", verified,
            count);
  }
  printf("# signed=%lu verified=%lu failed=%lu\n", signed_n, verified, failed);
  t_p11_close(&p);
  EVP_PKEY_free(pub);
  return t_finish("p11_replica_check");
}
