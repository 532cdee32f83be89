/* SPDX-License-Identifier: Apache-2.0 */
/* The mechanism table: rows, per-slot lists and info, DigestInfo parsing, parameter validation
 * of every parameterised family, JWA names and the ECDSA digest mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "token/mech.h"
#include "token/op.h"

/* ---- table, list, info ---- */

static const CK_MECHANISM_TYPE expected_everywhere[] = {
    CKM_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_RSA_PKCS_OAEP,
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_SHA_1,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_AES_GCM,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_SHA256_HMAC,
    CKM_AES_KEY_GEN,
    CKM_GENERIC_SECRET_KEY_GEN,
};

static int in_list(const CK_MECHANISM_TYPE *list, CK_ULONG n, CK_MECHANISM_TYPE t)
{
  for (CK_ULONG i = 0; i < n; i++)
    if (list[i] == t)
      return 1;
  return 0;
}

static void test_list_protocol(void **state)
{
  CK_MECHANISM_TYPE list[64];
  CK_ULONG n = 0, small = 2;
  (void)state;
  for (int kind = AKV_VAULT_KEYVAULT; kind <= AKV_VAULT_MHSM; kind++) {
    assert_int_equal(akv_mech_list(kind, NULL, &n), CKR_OK);
    assert_true(n > 20 && n <= 64);
    small = 2;
    assert_int_equal(akv_mech_list(kind, list, &small), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small, n);
    small = 64;
    assert_int_equal(akv_mech_list(kind, list, &small), CKR_OK);
    assert_int_equal(small, n);
    for (size_t i = 0; i < sizeof(expected_everywhere) / sizeof(expected_everywhere[0]); i++)
      assert_true(in_list(list, n, expected_everywhere[i]));
    /* Key pairs are generated in the vault (src/token/write.c). */
    assert_true(in_list(list, n, CKM_RSA_PKCS_KEY_PAIR_GEN));
    assert_true(in_list(list, n, CKM_EC_KEY_PAIR_GEN));
    /* Every listed mechanism has info, and a row. */
    for (CK_ULONG i = 0; i < n; i++) {
      CK_MECHANISM_INFO info;
      assert_int_equal(akv_mech_info(kind, list[i], &info), CKR_OK);
      assert_non_null(akv_mech_find(list[i]));
      assert_true(info.flags != 0);
    }
  }
}

static void test_info_flags(void **state)
{
  CK_MECHANISM_INFO info;
  (void)state;
  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS, &info), CKR_OK);
  assert_int_equal(info.ulMinKeySize, 2048);
  assert_int_equal(info.ulMaxKeySize, 4096);
  assert_true(info.flags & CKF_HW);
  assert_int_equal(info.flags & ~CKF_HW,
                   CKF_SIGN | CKF_VERIFY | CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP);

  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_ECDSA, &info), CKR_OK);
  assert_int_equal(info.ulMinKeySize, 256);
  assert_int_equal(info.ulMaxKeySize, 521);
  assert_int_equal(info.flags, CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
                                   CKF_EC_UNCOMPRESS);

  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_OAEP, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP);

  /* AES: software (session keys) on a vault, in the HSM on Managed HSM; sizes in bytes. */
  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_AES_GCM, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_ENCRYPT | CKF_DECRYPT);
  assert_int_equal(info.ulMinKeySize, 16);
  assert_int_equal(info.ulMaxKeySize, 32);
  assert_int_equal(akv_mech_info(AKV_VAULT_MHSM, CKM_AES_GCM, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT);
  assert_int_equal(akv_mech_info(AKV_VAULT_MHSM, CKM_AES_KEY_WRAP_PAD, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_HW | CKF_WRAP | CKF_UNWRAP);
  assert_int_equal(akv_mech_info(AKV_VAULT_MHSM, CKM_SHA384_HMAC, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_HW | CKF_SIGN | CKF_VERIFY);

  /* Local-only rows never claim hardware. */
  assert_int_equal(akv_mech_info(AKV_VAULT_MHSM, CKM_SHA256, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_DIGEST);
  assert_int_equal(akv_mech_info(AKV_VAULT_MHSM, CKM_AES_KEY_GEN, &info), CKR_OK);
  assert_int_equal(info.flags, CKF_GENERATE);

  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_MD5, &info), CKR_MECHANISM_INVALID);
  assert_int_equal(akv_mech_info(AKV_VAULT_KEYVAULT, CKM_RSA_X_509, &info), CKR_MECHANISM_INVALID);
  assert_null(akv_mech_for_slot(AKV_VAULT_KEYVAULT, CKM_DSA));
}

/* ---- DigestInfo ---- */

static const unsigned char di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                        0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
static const unsigned char di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x03, 0x05, 0x00, 0x04, 0x40};
static const unsigned char di_sha256_noparam[] = {0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09,
                                                  0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
                                                  0x04, 0x02, 0x01, 0x04, 0x20};

static size_t build_di(unsigned char *buf, const unsigned char *prefix, size_t plen, size_t hlen)
{
  memcpy(buf, prefix, plen);
  for (size_t i = 0; i < hlen; i++)
    buf[plen + i] = (unsigned char)(0x10 + i);
  return plen + hlen;
}

static void test_digestinfo_valid(void **state)
{
  static const struct {
    const unsigned char *prefix;
    size_t plen, hlen;
    CK_MECHANISM_TYPE hash;
    const char *alg;
  } cases[] = {
      {di_sha256, sizeof(di_sha256), 32, CKM_SHA256, "RS256"},
      {di_sha384, sizeof(di_sha384), 48, CKM_SHA384, "RS384"},
      {di_sha512, sizeof(di_sha512), 64, CKM_SHA512, "RS512"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    unsigned char buf[128];
    size_t n = build_di(buf, cases[i].prefix, cases[i].plen, cases[i].hlen);
    CK_MECHANISM_TYPE hash = 0;
    const unsigned char *digest = NULL;
    assert_int_equal(akv_mech_digestinfo_parse(buf, n, &hash, &digest), CKR_OK);
    assert_int_equal(hash, cases[i].hash);
    assert_ptr_equal(digest, buf + cases[i].plen);
    assert_string_equal(akv_mech_jwa_rs(hash), cases[i].alg);
  }
}

static void test_digestinfo_rejected(void **state)
{
  unsigned char buf[160];
  CK_MECHANISM_TYPE hash = 0;
  const unsigned char *digest = NULL;
  size_t n;
  (void)state;
  /* SHA-1: Key Vault has no RS1 (signed with RSNULL instead). */
  n = build_di(buf, di_sha1, sizeof(di_sha1), 20);
  assert_int_equal(akv_mech_digestinfo_parse(buf, n, &hash, &digest), CKR_DATA_INVALID);
  /* Trailing byte. */
  n = build_di(buf, di_sha256, sizeof(di_sha256), 32);
  buf[n] = 0;
  assert_int_equal(akv_mech_digestinfo_parse(buf, n + 1, &hash, &digest), CKR_DATA_INVALID);
  /* Truncated. */
  assert_int_equal(akv_mech_digestinfo_parse(buf, n - 1, &hash, &digest), CKR_DATA_INVALID);
  /* Absent NULL parameters: valid DER, but not what RS256 would sign. */
  n = build_di(buf, di_sha256_noparam, sizeof(di_sha256_noparam), 32);
  assert_int_equal(akv_mech_digestinfo_parse(buf, n, &hash, &digest), CKR_DATA_INVALID);
  /* Digest length not matching the OID. */
  n = build_di(buf, di_sha384, sizeof(di_sha384), 48);
  buf[1] = 0x31;  /* outer length for 32 bytes */
  buf[18] = 0x20; /* octet string of 32 */
  assert_int_equal(akv_mech_digestinfo_parse(buf, sizeof(di_sha384) + 32, &hash, &digest),
                   CKR_DATA_INVALID);
  /* A bare hash, garbage, empty. */
  memset(buf, 0x5a, 32);
  assert_int_equal(akv_mech_digestinfo_parse(buf, 32, &hash, &digest), CKR_DATA_INVALID);
  assert_int_equal(akv_mech_digestinfo_parse(buf, 0, &hash, &digest), CKR_DATA_INVALID);
  assert_int_equal(akv_mech_digestinfo_parse(NULL, 0, &hash, &digest), CKR_DATA_INVALID);
  /* Non-minimal (BER long-form) length. */
  {
    unsigned char ber[128];
    ber[0] = 0x30;
    ber[1] = 0x81;
    ber[2] = 0x31;
    memcpy(ber + 3, di_sha256 + 2, sizeof(di_sha256) - 2);
    memset(ber + 3 + sizeof(di_sha256) - 2, 1, 32);
    assert_int_equal(akv_mech_digestinfo_parse(ber, 1 + sizeof(di_sha256) + 32, &hash, &digest),
                     CKR_DATA_INVALID);
  }
}

/* ---- parameter validation ---- */

struct fixture {
  struct kv_key key;
  struct akv_object obj;
  struct akv_op op;
};

static void fixture_init(struct fixture *f, CK_MECHANISM_TYPE mech, enum akv_op_kind kind,
                         CK_KEY_TYPE kt, enum kv_crv crv, int remote)
{
  memset(f, 0, sizeof(*f));
  f->key.crv = crv;
  f->key.name = (char *)"k";
  f->key.version = (char *)"v";
  f->obj.key_type = kt;
  f->obj.key = &f->key;
  f->op.mech = akv_mech_find(mech);
  f->op.kind = kind;
  f->op.obj = &f->obj;
  f->op.remote = remote;
  assert_non_null(f->op.mech);
}

static void fixture_done(struct fixture *f)
{
  free(f->op.aad);
}

static CK_RV params(CK_MECHANISM_TYPE mech, enum akv_op_kind kind, CK_KEY_TYPE kt, void *p,
                    CK_ULONG plen, const char **alg, CK_MECHANISM_TYPE *hash)
{
  struct fixture f;
  CK_MECHANISM m = {mech, p, plen};
  CK_RV rv;
  fixture_init(&f, mech, kind, kt, KV_CRV_P256, 1);
  rv = akv_mech_params(&f.op, &m);
  if (alg)
    *alg = f.op.alg;
  if (hash)
    *hash = f.op.hash;
  fixture_done(&f);
  return rv;
}

static void test_params_pss(void **state)
{
  CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
  const char *alg = NULL;
  CK_MECHANISM_TYPE hash = 0;
  (void)state;
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), &alg, &hash),
                   CKR_OK);
  assert_string_equal(alg, "PS256");
  assert_int_equal(hash, CKM_SHA256);
  p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA512, CKG_MGF1_SHA512, 64};
  assert_int_equal(params(CKM_SHA512_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), &alg, NULL),
                   CKR_OK);
  assert_string_equal(alg, "PS512");
  /* Another salt length, MGF or hash than the service's PS* */
  p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 20};
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA1, 32};
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA_1, CKG_MGF1_SHA1, 20};
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  /* Hash differing from the mechanism's own. */
  p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 32};
  assert_int_equal(params(CKM_SHA384_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  /* Missing or mis-sized parameters. */
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, NULL, 0, NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  assert_int_equal(params(CKM_RSA_PKCS_PSS, AKV_OP_SIGN, CKK_RSA, &p, sizeof(p) - 1, NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
}

static void test_params_oaep(void **state)
{
  CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
  unsigned char label[4] = "abc";
  const char *alg = NULL;
  (void)state;
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), &alg, NULL),
                   CKR_OK);
  assert_string_equal(alg, "RSA-OAEP");
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 0, NULL, 0};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_ENCRYPT, CKK_RSA, &p, sizeof(p), &alg, NULL),
                   CKR_OK);
  assert_string_equal(alg, "RSA-OAEP-256");
  /* A label (what pkcs11-tool --test probes) */
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, label, 3};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  /* An empty label is no label. */
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, label, 0};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_OK);
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA384, CKG_MGF1_SHA384, 0, NULL, 0};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA1, 0, NULL, 0};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  p = (CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 7, NULL, 0};
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, &p, sizeof(p), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  assert_int_equal(params(CKM_RSA_PKCS_OAEP, AKV_OP_DECRYPT, CKK_RSA, NULL, 0, NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
}

static void test_params_plain(void **state)
{
  const char *alg = NULL;
  unsigned char junk[8] = {0};
  (void)state;
  assert_int_equal(params(CKM_RSA_PKCS, AKV_OP_SIGN, CKK_RSA, NULL, 0, &alg, NULL), CKR_OK);
  assert_null(alg); /* the DigestInfo decides */
  assert_int_equal(params(CKM_RSA_PKCS, AKV_OP_DECRYPT, CKK_RSA, NULL, 0, &alg, NULL), CKR_OK);
  assert_string_equal(alg, "RSA1_5");
  assert_int_equal(params(CKM_SHA384_RSA_PKCS, AKV_OP_SIGN, CKK_RSA, NULL, 0, &alg, NULL), CKR_OK);
  assert_string_equal(alg, "RS384");
  assert_int_equal(params(CKM_SHA512_HMAC, AKV_OP_SIGN, CKK_AES, NULL, 0, &alg, NULL), CKR_OK);
  assert_string_equal(alg, "HS512");
  assert_int_equal(params(CKM_RSA_PKCS, AKV_OP_SIGN, CKK_RSA, junk, sizeof(junk), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  assert_int_equal(params(CKM_ECDSA, AKV_OP_SIGN, CKK_EC, junk, sizeof(junk), NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  assert_int_equal(params(CKM_AES_KEY_WRAP, AKV_OP_ENCRYPT, CKK_AES, junk, 8, NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
  assert_int_equal(params(CKM_AES_KEY_WRAP_PAD, AKV_OP_ENCRYPT, CKK_AES, NULL, 0, &alg, NULL),
                   CKR_OK);
  assert_string_equal(alg, "CKM_AES_KEY_WRAP_PAD");
  assert_int_equal(params(CKM_SHA256, AKV_OP_DIGEST, AKV_NO_KEY_TYPE, junk, 4, NULL, NULL),
                   CKR_MECHANISM_PARAM_INVALID);
}

static void test_params_ecdsa_curves(void **state)
{
  static const struct {
    enum kv_crv crv;
    const char *alg;
  } cases[] = {{KV_CRV_P256, "ES256"},
               {KV_CRV_P384, "ES384"},
               {KV_CRV_P521, "ES512"},
               {KV_CRV_P256K, "ES256K"}};
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  (void)state;
  for (size_t i = 0; i < 4; i++) {
    struct fixture f;
    fixture_init(&f, CKM_ECDSA_SHA256, AKV_OP_SIGN, CKK_EC, cases[i].crv, 1);
    assert_int_equal(akv_mech_params(&f.op, &m), CKR_OK);
    assert_string_equal(f.op.alg, cases[i].alg);
    assert_int_equal(f.op.hash, CKM_SHA256);
    fixture_done(&f);
  }
  {
    struct fixture f;
    fixture_init(&f, CKM_ECDSA, AKV_OP_SIGN, CKK_EC, KV_CRV_NONE, 1);
    m.mechanism = CKM_ECDSA;
    assert_int_equal(akv_mech_params(&f.op, &m), CKR_KEY_TYPE_INCONSISTENT);
    fixture_done(&f);
  }
}

static void test_params_aes(void **state)
{
  unsigned char iv[16] = {0}, aad[5] = "hdr!";
  CK_GCM_PARAMS g = {iv, 12, 96, aad, 4, 128};
  CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof(g)};
  struct fixture f;
  (void)state;

  /* HSM encrypt: 12-byte IV buffer that receives the HSM's IV, 128-bit tag. */
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 1);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_OK);
  assert_ptr_equal(f.op.iv_out, iv);
  assert_int_equal(f.op.tag_len, 16);
  assert_int_equal(f.op.aad_len, 4);
  assert_memory_equal(f.op.aad, "hdr!", 4);
  assert_null(f.op.alg); /* size unknown without CKA_VALUE_LEN */
  fixture_done(&f);

  g.ulTagBits = 96;
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 1);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);
  g.ulTagBits = 128;
  g.ulIvLen = 16;
  fixture_init(&f, CKM_AES_GCM, AKV_OP_DECRYPT, CKK_AES, KV_CRV_NONE, 1);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);

  /* Local: any IV up to 16 bytes, tags 96..128. */
  g.ulTagBits = 96;
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 0);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_OK);
  assert_null(f.op.iv_out);
  assert_int_equal(f.op.tag_len, 12);
  fixture_done(&f);
  g.ulTagBits = 64;
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 0);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);
  g.ulTagBits = 128;
  g.pIv = NULL;
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 0);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);
  m.ulParameterLen = sizeof(g) - sizeof(CK_ULONG);
  fixture_init(&f, CKM_AES_GCM, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 0);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);

  /* CBC: a 16-byte IV. */
  m = (CK_MECHANISM){CKM_AES_CBC_PAD, iv, 16};
  fixture_init(&f, CKM_AES_CBC_PAD, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 1);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_OK);
  assert_int_equal(f.op.iv_len, 16);
  fixture_done(&f);
  m.ulParameterLen = 8;
  fixture_init(&f, CKM_AES_CBC_PAD, AKV_OP_ENCRYPT, CKK_AES, KV_CRV_NONE, 1);
  assert_int_equal(akv_mech_params(&f.op, &m), CKR_MECHANISM_PARAM_INVALID);
  fixture_done(&f);
}

/* ---- names and ECDSA digest mapping ---- */

static void test_jwa_names(void **state)
{
  (void)state;
  assert_string_equal(akv_mech_jwa_aes(AKV_MF_AES_GCM, 16), "A128GCM");
  assert_string_equal(akv_mech_jwa_aes(AKV_MF_AES_CBC, 24), "A192CBC");
  assert_string_equal(akv_mech_jwa_aes(AKV_MF_AES_CBC_PAD, 32), "A256CBCPAD");
  assert_string_equal(akv_mech_jwa_aes(AKV_MF_AES_KW, 0), "CKM_AES_KEY_WRAP");
  assert_null(akv_mech_jwa_aes(AKV_MF_AES_GCM, 0));
  assert_null(akv_mech_jwa_aes(AKV_MF_AES_GCM, 20));
  assert_null(akv_mech_jwa_rs(CKM_SHA_1));
  assert_null(akv_mech_jwa_ps(CKM_SHA224));
  assert_string_equal(akv_mech_jwa_es(KV_CRV_P256K), "ES256K");
  assert_int_equal(akv_mech_hash_len(CKM_SHA224), 28);
  assert_int_equal(akv_mech_hash_by_len(48), CKM_SHA384);
  assert_int_equal(akv_mech_hash_by_len(20), 0);
  assert_int_equal(akv_mech_ec_field_len(KV_CRV_P521), 66);
}

static void test_ecdsa_digest(void **state)
{
  unsigned char in[80], out[80];
  size_t n = 0;
  (void)state;
  for (size_t i = 0; i < sizeof(in); i++)
    in[i] = (unsigned char)(i + 1);
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P256, in, 32, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_memory_equal(out, in, 32);
  /* Shorter: left-padded (same integer). */
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P256, in, 20, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  for (size_t i = 0; i < 12; i++)
    assert_int_equal(out[i], 0);
  assert_memory_equal(out + 12, in, 20);
  /* Longer on P-256/P-384: the leftmost order-size bytes. */
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P256, in, 64, out, &n), CKR_OK);
  assert_int_equal(n, 32);
  assert_memory_equal(out, in, 32);
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P384, in, 64, out, &n), CKR_OK);
  assert_int_equal(n, 48);
  /* P-521: shorter hashes pad into ES512's 64 bytes, longer ones cannot be expressed. */
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P521, in, 32, out, &n), CKR_OK);
  assert_int_equal(n, 64);
  assert_memory_equal(out + 32, in, 32);
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P521, in, 66, out, &n), CKR_DATA_LEN_RANGE);
  assert_int_equal(akv_ecdsa_digest(KV_CRV_P256, in, 0, out, &n), CKR_DATA_LEN_RANGE);
  assert_int_equal(akv_ecdsa_digest(KV_CRV_NONE, in, 32, out, &n), CKR_DATA_LEN_RANGE);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_protocol),    cmocka_unit_test(test_info_flags),
      cmocka_unit_test(test_digestinfo_valid), cmocka_unit_test(test_digestinfo_rejected),
      cmocka_unit_test(test_params_pss),       cmocka_unit_test(test_params_oaep),
      cmocka_unit_test(test_params_plain),     cmocka_unit_test(test_params_ecdsa_curves),
      cmocka_unit_test(test_params_aes),       cmocka_unit_test(test_jwa_names),
      cmocka_unit_test(test_ecdsa_digest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
