/* SPDX-License-Identifier: Apache-2.0 */
/* p11_count_check - what each crypto call costs in vault requests, measured with the emulator's
 * counters around single PKCS#11 calls in one process, plus an AES key wrap/unwrap round trip.
 *
 * usage: p11_count_check MODULE remote|local|verify-remote RSA_LABEL EC_LABEL [WRAPPED_FILE
 * AESKEY_FILE] remote: the module's default (public_ops remote): C_Encrypt and C_WrapKey are vault
 * calls; local:  the module runs with public_ops "local": they cost no request; verify-remote: the
 * module runs with verify "remote": C_Verify is a vault call too. WRAPPED_FILE: an AES key
 * encrypted by openssl (RSA-OAEP SHA-256) with RSA_LABEL's public key, AESKEY_FILE its plaintext:
 * C_UnwrapKey must give a key with exactly that value. env: EMU_STATS, EMU_CA; the module's config
 * (AKV_PKCS11_CONFIG or environment).
 *
 * After one warm-up call of each kind (token, key material, connections), a measured call must
 * cost: C_Sign 1, C_Verify 0, C_Encrypt 1 (0 when local), C_Decrypt 1, C_WrapKey 1 (0 when local),
 * C_UnwrapKey 1, C_GenerateKey of a session AES key 0. Results are checked too: the signature
 * verifies (and a corrupted one does not), decrypt returns the plaintext, unwrap returns the
 * wrapped key. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

struct keys {
  CK_OBJECT_HANDLE rsa_priv, rsa_pub, ec_priv, ec_pub;
};

static int64_t before_total;
static int verify_remote; /* verify: "remote" — C_Verify costs one request */

static void mark(void)
{
  int64_t unused = 0;
  if (t_stats(NULL, &before_total, &unused) != 0)
    exit(1);
}

static int64_t delta(void)
{
  int64_t now = 0, unused = 0;
  if (t_stats(NULL, &now, &unused) != 0)
    exit(1);
  return now - before_total;
}

static CK_RV sign(struct t_p11 *p, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
                  CK_ULONG inlen, unsigned char *sig, CK_ULONG *siglen)
{
  CK_RV rv = p->f->C_SignInit(p->sess, m, k);
  if (rv != CKR_OK)
    return rv;
  return p->f->C_Sign(p->sess, (CK_BYTE_PTR)in, inlen, sig, siglen);
}

static CK_RV verify(struct t_p11 *p, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
                    CK_ULONG inlen, unsigned char *sig, CK_ULONG siglen)
{
  CK_RV rv = p->f->C_VerifyInit(p->sess, m, k);
  if (rv != CKR_OK)
    return rv;
  return p->f->C_Verify(p->sess, (CK_BYTE_PTR)in, inlen, sig, siglen);
}

static CK_RV encrypt(struct t_p11 *p, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
                     CK_ULONG inlen, unsigned char *out, CK_ULONG *outlen)
{
  CK_RV rv = p->f->C_EncryptInit(p->sess, m, k);
  if (rv != CKR_OK)
    return rv;
  return p->f->C_Encrypt(p->sess, (CK_BYTE_PTR)in, inlen, out, outlen);
}

static CK_RV decrypt(struct t_p11 *p, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
                     CK_ULONG inlen, unsigned char *out, CK_ULONG *outlen)
{
  CK_RV rv = p->f->C_DecryptInit(p->sess, m, k);
  if (rv != CKR_OK)
    return rv;
  return p->f->C_Decrypt(p->sess, (CK_BYTE_PTR)in, inlen, out, outlen);
}

static void test_sign_verify(struct t_p11 *p, const struct keys *k)
{
  static const unsigned char msg[] = "integration: one vault request per C_Sign";
  unsigned char digest[32], sig[1024];
  CK_MECHANISM rsa = {CKM_SHA256_RSA_PKCS, NULL, 0}, ec = {CKM_ECDSA, NULL, 0};
  CK_ULONG siglen;
  CK_RV rv;
  int64_t d;

  SHA256(msg, sizeof(msg) - 1, digest);

  siglen = sizeof(sig); /* warm-up */
  rv = sign(p, &rsa, k->rsa_priv, msg, sizeof(msg) - 1, sig, &siglen);
  t_check(rv == CKR_OK, "warm-up C_Sign SHA256-RSA-PKCS: %s", t_rv_name(rv));

  mark();
  siglen = sizeof(sig);
  rv = sign(p, &rsa, k->rsa_priv, msg, sizeof(msg) - 1, sig, &siglen);
  d = delta();
  t_check(rv == CKR_OK, "C_Sign SHA256-RSA-PKCS: %s", t_rv_name(rv));
  t_check(d == 1, "C_Sign SHA256-RSA-PKCS costs exactly 1 vault request (got %lld)", (long long)d);

  mark();
  rv = verify(p, &rsa, k->rsa_pub, msg, sizeof(msg) - 1, sig, siglen);
  d = delta();
  t_check(rv == CKR_OK, "C_Verify SHA256-RSA-PKCS of that signature: %s", t_rv_name(rv));
  t_check(d == verify_remote, "C_Verify costs %d vault request(s) with verify %s (got %lld)",
          verify_remote, verify_remote ? "remote" : "local (default)", (long long)d);

  sig[siglen / 2] ^= 0x55;
  mark();
  rv = verify(p, &rsa, k->rsa_pub, msg, sizeof(msg) - 1, sig, siglen);
  d = delta();
  t_check(rv == CKR_SIGNATURE_INVALID,
          "C_Verify of a corrupted signature: CKR_SIGNATURE_INVALID (%s)", t_rv_name(rv));
  t_check(d == verify_remote, "failed C_Verify costs %d vault request(s) (got %lld)", verify_remote,
          (long long)d);

  siglen = sizeof(sig); /* warm-up for the EC key */
  rv = sign(p, &ec, k->ec_priv, digest, sizeof(digest), sig, &siglen);
  t_check(rv == CKR_OK, "warm-up C_Sign ECDSA: %s", t_rv_name(rv));

  mark();
  siglen = sizeof(sig);
  rv = sign(p, &ec, k->ec_priv, digest, sizeof(digest), sig, &siglen);
  d = delta();
  t_check(rv == CKR_OK && siglen == 64, "C_Sign ECDSA P-256 gives a 64-byte r||s: %s, %lu bytes",
          t_rv_name(rv), (unsigned long)siglen);
  t_check(d == 1, "C_Sign ECDSA costs exactly 1 vault request (got %lld)", (long long)d);

  mark();
  rv = verify(p, &ec, k->ec_pub, digest, sizeof(digest), sig, siglen);
  d = delta();
  t_check(rv == CKR_OK, "C_Verify ECDSA of that signature: %s", t_rv_name(rv));
  t_check(d == verify_remote, "C_Verify ECDSA costs %d vault request(s) (got %lld)", verify_remote,
          (long long)d);
}

static void test_encrypt_decrypt(struct t_p11 *p, const struct keys *k, int local)
{
  static const unsigned char pt[] = "integration: encrypt/decrypt round trip";
  CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
  CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
  unsigned char ct[1024], out[1024];
  CK_ULONG ctlen, outlen;
  CK_RV rv;
  int64_t d;

  ctlen = sizeof(ct); /* warm-up */
  rv = encrypt(p, &m, k->rsa_pub, pt, sizeof(pt) - 1, ct, &ctlen);
  t_check(rv == CKR_OK, "warm-up C_Encrypt RSA-PKCS-OAEP SHA-256: %s", t_rv_name(rv));
  outlen = sizeof(out);
  rv = decrypt(p, &m, k->rsa_priv, ct, ctlen, out, &outlen);
  t_check(rv == CKR_OK, "warm-up C_Decrypt RSA-PKCS-OAEP SHA-256: %s", t_rv_name(rv));

  mark();
  ctlen = sizeof(ct);
  rv = encrypt(p, &m, k->rsa_pub, pt, sizeof(pt) - 1, ct, &ctlen);
  d = delta();
  t_check(rv == CKR_OK, "C_Encrypt RSA-PKCS-OAEP: %s", t_rv_name(rv));
  t_check(d == (local ? 0 : 1), "C_Encrypt costs %d vault request(s) with public_ops %s (got %lld)",
          local ? 0 : 1, local ? "local" : "remote", (long long)d);

  mark();
  outlen = sizeof(out);
  rv = decrypt(p, &m, k->rsa_priv, ct, ctlen, out, &outlen);
  d = delta();
  t_check(rv == CKR_OK && outlen == sizeof(pt) - 1 && memcmp(out, pt, outlen) == 0,
          "C_Decrypt RSA-PKCS-OAEP returns the plaintext: %s", t_rv_name(rv));
  t_check(d == 1, "C_Decrypt costs exactly 1 vault request (got %lld)", (long long)d);

  mark();
  ctlen = sizeof(ct);
  rv = encrypt(p, &v15, k->rsa_pub, pt, sizeof(pt) - 1, ct, &ctlen);
  d = delta();
  t_check(rv == CKR_OK, "C_Encrypt RSA-PKCS (v1.5): %s", t_rv_name(rv));
  t_check(d == (local ? 0 : 1), "C_Encrypt RSA-PKCS costs %d vault request(s) (got %lld)",
          local ? 0 : 1, (long long)d);
  outlen = sizeof(out);
  rv = decrypt(p, &v15, k->rsa_priv, ct, ctlen, out, &outlen);
  t_check(rv == CKR_OK && outlen == sizeof(pt) - 1 && memcmp(out, pt, outlen) == 0,
          "C_Decrypt RSA-PKCS (v1.5) returns the plaintext: %s", t_rv_name(rv));
}

static CK_OBJECT_HANDLE unwrap_aes(struct t_p11 *p, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                                   unsigned char *wrapped, CK_ULONG wlen, CK_RV *rv)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL f = CK_FALSE, t = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &f, sizeof(f)},       {CKA_SENSITIVE, &f, sizeof(f)},
      {CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_ENCRYPT, &t, sizeof(t)},
      {CKA_DECRYPT, &t, sizeof(t)},
  };
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  *rv = p->f->C_UnwrapKey(p->sess, m, k, wrapped, wlen, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
  return h;
}

static void test_wrap_unwrap(struct t_p11 *p, const struct keys *k, int local, const char *wfile,
                             const char *kfile)
{
  CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
  CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ULONG vlen = 32;
  CK_BBOOL f = CK_FALSE, t = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &f, sizeof(f)},     {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
      {CKA_SENSITIVE, &f, sizeof(f)}, {CKA_EXTRACTABLE, &t, sizeof(t)},
      {CKA_ENCRYPT, &t, sizeof(t)},   {CKA_DECRYPT, &t, sizeof(t)},
  };
  CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE, un = CK_INVALID_HANDLE;
  unsigned char wrapped[1024], out[1024], *orig = NULL, *val = NULL, *ext = NULL, *extkey = NULL;
  CK_ULONG wlen, olen, origlen = 0, vallen = 0;
  size_t extlen = 0, extkeylen = 0;
  CK_RV rv;
  int64_t d;

  mark();
  rv = p->f->C_GenerateKey(p->sess, &gen, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &aes);
  d = delta();
  t_check(rv == CKR_OK, "C_GenerateKey of a session AES-256 key: %s", t_rv_name(rv));
  t_check(d == 0, "C_GenerateKey of a session key costs 0 vault requests (got %lld)", (long long)d);
  if (rv == CKR_OK) {
    orig = t_attr_new(p, aes, CKA_VALUE, &origlen);
    t_check(orig && origlen == 32, "session AES key has a readable 32-byte CKA_VALUE (%lu)",
            (unsigned long)origlen);
  }

  if (rv == CKR_OK) {
    wlen = sizeof(wrapped); /* warm-up */
    rv = p->f->C_WrapKey(p->sess, &m, k->rsa_pub, aes, wrapped, &wlen);
    t_check(rv == CKR_OK, "warm-up C_WrapKey RSA-PKCS-OAEP: %s", t_rv_name(rv));
    mark();
    wlen = sizeof(wrapped);
    rv = p->f->C_WrapKey(p->sess, &m, k->rsa_pub, aes, wrapped, &wlen);
    d = delta();
    t_check(rv == CKR_OK, "C_WrapKey of the AES key with the RSA public key: %s", t_rv_name(rv));
    t_check(d == (local ? 0 : 1),
            "C_WrapKey costs %d vault request(s) with public_ops %s (got %lld)", local ? 0 : 1,
            local ? "local" : "remote", (long long)d);

    if (rv == CKR_OK) {
      /* The vault's private key opens what was wrapped: independent of the unwrap path. */
      olen = sizeof(out);
      rv = decrypt(p, &m, k->rsa_priv, wrapped, wlen, out, &olen);
      t_check(rv == CKR_OK && orig && olen == origlen && memcmp(out, orig, olen) == 0,
              "C_Decrypt of the wrapped blob gives the AES key value: %s", t_rv_name(rv));

      mark();
      un = unwrap_aes(p, &m, k->rsa_priv, wrapped, wlen, &rv);
      d = delta();
      t_check(rv == CKR_OK, "C_UnwrapKey with the RSA private key: %s", t_rv_name(rv));
      t_check(d == 1, "C_UnwrapKey costs exactly 1 vault request (got %lld)", (long long)d);
      if (rv == CKR_OK) {
        val = t_attr_new(p, un, CKA_VALUE, &vallen);
        t_check(val && orig && vallen == origlen && memcmp(val, orig, vallen) == 0,
                "unwrapped key equals the wrapped AES key");
      }
    }
  }

  if (wfile && kfile) {
    ext = t_read_file_new(wfile, &extlen);
    extkey = t_read_file_new(kfile, &extkeylen);
    if (ext && extkey) {
      free(val);
      val = NULL;
      un = unwrap_aes(p, &m, k->rsa_priv, ext, (CK_ULONG)extlen, &rv);
      t_check(rv == CKR_OK, "C_UnwrapKey of an AES key wrapped by openssl pkeyutl: %s",
              t_rv_name(rv));
      if (rv == CKR_OK) {
        val = t_attr_new(p, un, CKA_VALUE, &vallen);
        t_check(val && vallen == extkeylen && memcmp(val, extkey, vallen) == 0,
                "openssl-wrapped AES key unwraps to its value");
      }
    } else {
      t_check(0, "read %s and %s", wfile, kfile);
    }
  }
  free(orig);
  free(val);
  free(ext);
  free(extkey);
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  struct keys k;
  int local;

  if (argc != 5 && argc != 7) {
    fprintf(stderr,
            "usage: %s MODULE remote|local|verify-remote RSA_LABEL EC_LABEL [WRAPPED_FILE "
            "AESKEY_FILE]\n",
            argv[0]);
    return 2;
  }
  local = strcmp(argv[2], "local") == 0;
  verify_remote = strcmp(argv[2], "verify-remote") == 0;
  if (!local && !verify_remote && strcmp(argv[2], "remote") != 0) {
    fprintf(stderr, "unknown mode '%s'\n", argv[2]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  t_p11_open(&p, argv[1]);

  k.rsa_priv = t_find(&p, CKO_PRIVATE_KEY, argv[3]);
  k.rsa_pub = t_find(&p, CKO_PUBLIC_KEY, argv[3]);
  k.ec_priv = t_find(&p, CKO_PRIVATE_KEY, argv[4]);
  k.ec_pub = t_find(&p, CKO_PUBLIC_KEY, argv[4]);
  t_check(k.rsa_priv != CK_INVALID_HANDLE && k.rsa_pub != CK_INVALID_HANDLE,
          "RSA key pair '%s' found", argv[3]);
  t_check(k.ec_priv != CK_INVALID_HANDLE && k.ec_pub != CK_INVALID_HANDLE, "EC key pair '%s' found",
          argv[4]);
  if (k.rsa_priv == CK_INVALID_HANDLE || k.ec_priv == CK_INVALID_HANDLE)
    return t_finish("p11_count_check");
  /* The searches by label above were answered by name (docs/design.md "Cold search by label"),
   * which schedules the slot's listing a few seconds later. An enumeration runs it now, so that the
   * counts below measure each operation alone, also in a slow (valgrind) run. */
  {
    CK_OBJECT_HANDLE *all = NULL;
    t_check(t_find_all(&p, &all) >= 4, "the slot's listing is read before the counts");
    free(all);
  }

  test_sign_verify(&p, &k);
  test_encrypt_decrypt(&p, &k, local);
  test_wrap_unwrap(&p, &k, local, argc == 7 ? argv[5] : NULL, argc == 7 ? argv[6] : NULL);

  t_p11_close(&p);
  return t_finish(local           ? "p11_count_check (public_ops local)"
                  : verify_remote ? "p11_count_check (verify remote)"
                                  : "p11_count_check");
}
