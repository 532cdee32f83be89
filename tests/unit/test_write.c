/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/token/write.c: key generation templates (valid and invalid), CKA_EC_PARAMS
 * forms, vault names, dates, the CKA_ID tag, and the write entry points over the fake vault
 * (generation, attribute updates, data objects, deletion, read-only slots). */
#include "model_helpers.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/attrs.h"
#include "token/write.h"

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_ULONG bits2048 = 2048, bits1024 = 1024;
static CK_BYTE e65537[] = {0x01, 0x00, 0x01}, e65537z[] = {0x00, 0x01, 0x00, 0x01}, e3[] = {0x03};
static CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_BYTE oid_p192[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01};

#define A(t, v)                                                                                    \
  {                                                                                                \
    (t), (void *)(v), sizeof(*(v))                                                                 \
  }
#define AB(t, v)                                                                                   \
  {                                                                                                \
    (t), (void *)(v), sizeof(v)                                                                    \
  }
#define AS(t, s)                                                                                   \
  {                                                                                                \
    (t), (void *)(s), sizeof(s) - 1                                                                \
  }
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_names(void **state)
{
  char out[AKV_MAX_NAME + 1], longname[200];
  CK_ATTRIBUTE ok = AS(CKA_LABEL, "my-Key-01"), bad = AS(CKA_LABEL, "my_key"),
               dot = AS(CKA_LABEL, "a.b"), empty = {CKA_LABEL, "", 0}, nul = AS(CKA_LABEL, "ab\0c"),
               lng;
  (void)state;
  assert_int_equal(akv_write_name(&ok, out), CKR_OK);
  assert_string_equal(out, "my-Key-01");
  assert_int_equal(akv_write_name(&bad, out), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_name(&dot, out), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_name(&empty, out), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_name(&nul, out), CKR_ATTRIBUTE_VALUE_INVALID); /* a NUL inside */
  assert_int_equal(akv_write_name(NULL, out), CKR_TEMPLATE_INCOMPLETE);
  memset(longname, 'a', sizeof(longname));
  lng.type = CKA_LABEL;
  lng.pValue = longname;
  lng.ulValueLen = 127;
  assert_int_equal(akv_write_name(&lng, out), CKR_OK);
  assert_int_equal(strlen(out), 127);
  lng.ulValueLen = 128;
  assert_int_equal(akv_write_name(&lng, out), CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_ec_params(void **state)
{
  static const unsigned char ps[] = {0x13, 0x0a, 'p', 'r', 'i', 'm', 'e', '2', '5', '6', 'v', '1'};
  static const unsigned char ps_bad_len[] = {0x13, 0x0b, 'p', 'r', 'i', 'm',
                                             'e',  '2',  '5', '6', 'v', '1'};
  enum kv_crv crv = KV_CRV_NONE;
  size_t len;
  const unsigned char *der;
  (void)state;
  /* Curves by their DER OID, as the backend encodes them (the fake vault knows P-256; the
   * integration tests run every curve against the real backend). */
  for (int c = KV_CRV_P256; c <= KV_CRV_P256K; c++) {
    der = kv_crv_oid_der((enum kv_crv)c, &len);
    if (!der)
      continue;
    assert_int_equal(akv_write_ec_params(der, len, &crv), CKR_OK);
    assert_int_equal(crv, c);
  }
  assert_int_equal(akv_write_ec_params(oid_p256, sizeof(oid_p256), &crv), CKR_OK);
  assert_int_equal(crv, KV_CRV_P256);
  /* Named curves: PrintableString and bare. */
  assert_int_equal(akv_write_ec_params(ps, sizeof(ps), &crv), CKR_OK);
  assert_int_equal(crv, KV_CRV_P256);
  assert_int_equal(akv_write_ec_params((const unsigned char *)"secp384r1", 9, &crv), CKR_OK);
  assert_int_equal(crv, KV_CRV_P384);
  assert_int_equal(akv_write_ec_params((const unsigned char *)"P-521", 5, &crv), CKR_OK);
  assert_int_equal(crv, KV_CRV_P521);
  assert_int_equal(akv_write_ec_params((const unsigned char *)"secp256k1", 9, &crv), CKR_OK);
  assert_int_equal(crv, KV_CRV_P256K);
  /* What the vault has not. */
  assert_int_equal(akv_write_ec_params(oid_p192, sizeof(oid_p192), &crv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_ec_params((const unsigned char *)"prime192v1", 10, &crv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_ec_params(ps_bad_len, sizeof(ps_bad_len), &crv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_ec_params(NULL, 0, &crv), CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_dates(void **state)
{
  CK_DATE d;
  CK_ATTRIBUTE a = {CKA_END_DATE, &d, sizeof(d)}, empty = {CKA_END_DATE, NULL, 0};
  int64_t t = -1;
  (void)state;
  memcpy(d.year, "2030", 4);
  memcpy(d.month, "01", 2);
  memcpy(d.day, "01", 2);
  assert_int_equal(akv_write_date(&a, &t), CKR_OK);
  assert_int_equal(t, 1893456000);
  memcpy(d.year, "2028", 4); /* a leap year: 29 February is a date */
  memcpy(d.month, "02", 2);
  memcpy(d.day, "29", 2);
  assert_int_equal(akv_write_date(&a, &t), CKR_OK);
  assert_int_equal(t, 1835395200);
  memcpy(d.year, "2030", 4);
  assert_int_equal(akv_write_date(&a, &t), CKR_ATTRIBUTE_VALUE_INVALID);
  memcpy(d.day, "31", 2);
  assert_int_equal(akv_write_date(&a, &t), CKR_ATTRIBUTE_VALUE_INVALID);
  memcpy(d.day, "3x", 2);
  assert_int_equal(akv_write_date(&a, &t), CKR_ATTRIBUTE_VALUE_INVALID);
  a.ulValueLen = 7;
  assert_int_equal(akv_write_date(&a, &t), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_write_date(&empty, &t), CKR_OK);
  assert_int_equal(t, 0);
}

static void test_rsa_templates(void **state)
{
  CK_BYTE id[] = {0x01, 0xa1};
  CK_ATTRIBUTE pub[] = {A(CKA_TOKEN, &yes),
                        A(CKA_MODULUS_BITS, &bits2048),
                        AB(CKA_PUBLIC_EXPONENT, e65537),
                        AS(CKA_LABEL, "rsa-key"),
                        AB(CKA_ID, id),
                        A(CKA_VERIFY, &yes),
                        A(CKA_ENCRYPT, &no)};
  CK_ATTRIBUTE priv[] = {A(CKA_TOKEN, &yes), AS(CKA_LABEL, "rsa-key"), AB(CKA_ID, id),
                         A(CKA_SIGN, &yes),  A(CKA_DECRYPT, &no),      A(CKA_SENSITIVE, &yes)};
  struct akv_keygen g;
  (void)state;

  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_OK);
  assert_int_equal(g.spec.kty, KV_KTY_RSA);
  assert_int_equal(g.spec.key_size, 2048);
  assert_int_equal(g.spec.hsm, 0);
  assert_string_equal(g.name, "rsa-key");
  /* Explicit FALSE drops the usage; unset ones default to the vault's (wrap/unwrap). */
  assert_int_equal(g.spec.key_ops, KV_OP_SIGN | KV_OP_VERIFY | KV_OP_WRAP | KV_OP_UNWRAP);
  assert_int_equal(g.spec.n_tags, 1);
  assert_string_equal(g.spec.tags[0].name, AKV_TAG_ID);
  assert_string_equal(g.spec.tags[0].value, "01a1");

  /* A leading zero byte in the exponent is still 65537. */
  pub[2].pValue = e65537z;
  pub[2].ulValueLen = sizeof(e65537z);
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_OK);
  pub[2].pValue = e3;
  pub[2].ulValueLen = sizeof(e3);
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  pub[2].pValue = e65537;
  pub[2].ulValueLen = sizeof(e65537);
  pub[1].pValue = &bits1024;
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  /* Without CKA_MODULUS_BITS. */
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub, 1,
                                           priv, N(priv), &g),
                   CKR_TEMPLATE_INCOMPLETE);
  pub[1].pValue = &bits2048;
  /* Labels or ids that disagree between the halves. */
  priv[1].pValue = "rsa-kez";
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  priv[1].pValue = "rsa_key";
  pub[3].pValue = "rsa_key";
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  priv[1].pValue = pub[3].pValue = "rsa-key";
  /* Session key pairs do not exist here. */
  priv[0].pValue = &no;
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv + 1, N(priv) - 1, &g),
                   CKR_TEMPLATE_INCONSISTENT); /* CKA_TOKEN absent means FALSE */
  priv[0].pValue = &yes;
  /* Extractable keys cannot be made; a usage nobody allows makes no key. */
  priv[5].type = CKA_EXTRACTABLE;
  priv[5].pValue = &yes;
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  priv[5].type = CKA_MODULUS; /* not a generation attribute */
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                           N(pub), priv, N(priv), &g),
                   CKR_ATTRIBUTE_TYPE_INVALID);
  priv[5].type = CKA_SENSITIVE;
  /* Another mechanism. */
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_DSA_KEY_PAIR_GEN, pub, N(pub),
                                           priv, N(priv), &g),
                   CKR_MECHANISM_INVALID);
  /* Managed HSM: always HSM; CKA_AKV_HSM=FALSE contradicts it. */
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_MHSM, CKM_RSA_PKCS_KEY_PAIR_GEN, pub, N(pub),
                                           priv, N(priv), &g),
                   CKR_OK);
  assert_int_equal(g.spec.hsm, 1);
  {
    CK_ATTRIBUTE priv2[] = {A(CKA_TOKEN, &yes), AS(CKA_LABEL, "rsa-key"), A(CKA_AKV_HSM, &no)};
    assert_int_equal(akv_write_parse_keypair(AKV_VAULT_MHSM, CKM_RSA_PKCS_KEY_PAIR_GEN, pub, N(pub),
                                             priv2, N(priv2), &g),
                     CKR_TEMPLATE_INCONSISTENT);
    priv2[2].pValue = &yes;
    assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_RSA_PKCS_KEY_PAIR_GEN, pub,
                                             N(pub), priv2, N(priv2), &g),
                     CKR_OK);
    assert_int_equal(g.spec.hsm, 1);    /* RSA-HSM on a vault by the vendor attribute */
    assert_int_equal(g.spec.n_tags, 1); /* the id of the public template */
  }
}

static void test_ec_templates(void **state)
{
  CK_ATTRIBUTE pub[] = {A(CKA_TOKEN, &yes), AB(CKA_EC_PARAMS, oid_p256), AS(CKA_LABEL, "ec-key"),
                        A(CKA_DERIVE, &yes)};
  CK_ATTRIBUTE priv[] = {A(CKA_TOKEN, &yes), A(CKA_SIGN, &yes), A(CKA_DERIVE, &yes)};
  CK_ATTRIBUTE priv_dec[] = {A(CKA_TOKEN, &yes), A(CKA_DECRYPT, &yes)};
  CK_ATTRIBUTE priv_nosign[] = {A(CKA_TOKEN, &yes), A(CKA_SIGN, &no)};
  CK_ATTRIBUTE pub_noverify[] = {A(CKA_TOKEN, &yes), AB(CKA_EC_PARAMS, oid_p256),
                                 AS(CKA_LABEL, "ec-key"), A(CKA_VERIFY, &no)};
  struct akv_keygen g;
  (void)state;

  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_EC_KEY_PAIR_GEN, pub, N(pub),
                                           priv, N(priv), &g),
                   CKR_OK);
  assert_int_equal(g.spec.kty, KV_KTY_EC);
  assert_int_equal(g.spec.crv, KV_CRV_P256);
  /* CKA_DERIVE is asked by tools by default and not given; encryption is not for EC keys. */
  assert_int_equal(g.spec.key_ops, KV_OP_SIGN | KV_OP_VERIFY);
  assert_int_equal(g.spec.n_tags, 0);
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_EC_KEY_PAIR_GEN, pub, N(pub),
                                           priv_dec, N(priv_dec), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_EC_KEY_PAIR_GEN, pub_noverify,
                                           N(pub_noverify), priv_nosign, N(priv_nosign), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  assert_int_equal(
      akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_EC_KEY_PAIR_GEN, pub, 1, priv, N(priv), &g),
      CKR_TEMPLATE_INCOMPLETE); /* no CKA_EC_PARAMS */
  pub[1].pValue = oid_p192;
  assert_int_equal(akv_write_parse_keypair(AKV_VAULT_KEYVAULT, CKM_EC_KEY_PAIR_GEN, pub, N(pub),
                                           priv, N(priv), &g),
                   CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_secret_key_templates(void **state)
{
  CK_ULONG len = 32, bad = 20;
  CK_ATTRIBUTE t[] = {A(CKA_TOKEN, &yes), A(CKA_VALUE_LEN, &len), AS(CKA_LABEL, "aes-key"),
                      A(CKA_WRAP, &no)};
  struct akv_keygen g;
  (void)state;
  assert_int_equal(akv_write_parse_secret_key(AKV_VAULT_MHSM, CKM_AES_KEY_GEN, t, N(t), &g),
                   CKR_OK);
  assert_int_equal(g.spec.kty, KV_KTY_OCT);
  assert_int_equal(g.spec.key_size, 256);
  assert_int_equal(g.spec.hsm, 1);
  assert_int_equal(g.spec.key_ops, KV_OP_ENCRYPT | KV_OP_DECRYPT | KV_OP_UNWRAP);
  assert_int_equal(akv_write_parse_secret_key(AKV_VAULT_KEYVAULT, CKM_AES_KEY_GEN, t, N(t), &g),
                   CKR_TEMPLATE_INCONSISTENT);
  assert_int_equal(
      akv_write_parse_secret_key(AKV_VAULT_MHSM, CKM_GENERIC_SECRET_KEY_GEN, t, N(t), &g),
      CKR_MECHANISM_INVALID);
  t[1].pValue = &bad;
  assert_int_equal(akv_write_parse_secret_key(AKV_VAULT_MHSM, CKM_AES_KEY_GEN, t, N(t), &g),
                   CKR_KEY_SIZE_RANGE);
  assert_int_equal(akv_write_parse_secret_key(AKV_VAULT_MHSM, CKM_AES_KEY_GEN, t, 1, &g),
                   CKR_TEMPLATE_INCOMPLETE);
}

static void test_tag_id(void **state)
{
  struct kv_tag tags[2] = {{(char *)"other", (char *)"zz"}, {(char *)AKV_TAG_ID, (char *)"0aFf"}};
  struct kv_attrs a;
  struct akv_attrs_builder b;
  CK_ATTRIBUTE *v = NULL;
  size_t n = 0;
  const CK_ATTRIBUTE *id;
  (void)state;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  a.tags = tags;
  a.n_tags = 2;
  akv_attrs_add_bytes(&b, CKA_ID, "\x01\x02\x03", 3);
  akv_object_apply_tag_id(&b, &a);
  assert_int_equal(akv_attrs_finish(&b, &v, &n), CKR_OK);
  id = akv_attrs_find(v, n, CKA_ID);
  assert_non_null(id);
  assert_int_equal(id->ulValueLen, 2);
  assert_memory_equal(id->pValue, "\x0a\xff", 2);
  akv_attrs_free(v, n);
  /* A tag that is not hex leaves the SPKI hash. */
  tags[1].value = (char *)"0g";
  memset(&b, 0, sizeof(b));
  akv_attrs_add_bytes(&b, CKA_ID, "\x01\x02\x03", 3);
  akv_object_apply_tag_id(&b, &a);
  assert_int_equal(akv_attrs_finish(&b, &v, &n), CKR_OK);
  assert_int_equal(akv_attrs_find(v, n, CKA_ID)->ulValueLen, 3);
  akv_attrs_free(v, n);
}

/* ---- entry points over the fake vault ---- */

static int setup_rw(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("seed", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  return t_init(T_CFG(",\"allow_destroy\":true,\"objects\":[\"keys\",\"secrets\"]")) == CKR_OK ? 0
                                                                                               : -1;
}

static int teardown(void **state)
{
  (void)state;
  C_Finalize(NULL);
  return 0;
}

static void test_generate_update_destroy(void **state)
{
  CK_SESSION_HANDLE rw = t_open(CKF_RW_SESSION), ro = t_open(0);
  CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_ATTRIBUTE pub[] = {A(CKA_TOKEN, &yes), AB(CKA_EC_PARAMS, oid_p256), AS(CKA_LABEL, "gen-ec")};
  CK_ATTRIBUTE priv[] = {A(CKA_TOKEN, &yes), AS(CKA_LABEL, "gen-ec")};
  CK_OBJECT_HANDLE hpub = 0, hpriv = 0;
  CK_DATE d, got;
  CK_ATTRIBUTE end = {CKA_END_DATE, &d, sizeof(d)}, label = AS(CKA_LABEL, "renamed");
  char buf[64];
  (void)state;

  assert_int_equal(C_GenerateKeyPair(ro, &m, pub, N(pub), priv, N(priv), &hpub, &hpriv),
                   CKR_SESSION_READ_ONLY);
  assert_int_equal(C_GenerateKeyPair(rw, &m, pub, N(pub), priv, N(priv), &hpub, &hpriv), CKR_OK);
  /* Usable at once, from any session, without a refresh. */
  assert_int_equal(t_attr_ulong(ro, hpriv, CKA_CLASS), CKO_PRIVATE_KEY);
  assert_int_equal(t_attr_ulong(ro, hpub, CKA_CLASS), CKO_PUBLIC_KEY);
  assert_int_equal(t_attr(ro, hpriv, CKA_LABEL, buf, sizeof(buf)), 6);
  assert_memory_equal(buf, "gen-ec", 6);
  assert_true(t_attr_bool(ro, hpriv, CKA_SIGN));
  assert_int_equal(t_find_one(ro, CKO_PRIVATE_KEY, "gen-ec"), hpriv);
  /* The name is taken now. */
  assert_int_equal(C_GenerateKeyPair(rw, &m, pub, N(pub), priv, N(priv), &hpub, &hpriv),
                   CKR_ATTRIBUTE_VALUE_INVALID);

  /* CKA_END_DATE updates exp; CKA_LABEL is the name and stays. */
  memcpy(d.year, "2031", 4);
  memcpy(d.month, "06", 2);
  memcpy(d.day, "15", 2);
  assert_int_equal(C_SetAttributeValue(ro, hpriv, &end, 1), CKR_SESSION_READ_ONLY);
  assert_int_equal(C_SetAttributeValue(rw, hpriv, &label, 1), CKR_ATTRIBUTE_READ_ONLY);
  assert_int_equal(C_SetAttributeValue(rw, hpriv, &end, 1), CKR_OK);
  assert_int_equal(t_attr(ro, hpriv, CKA_END_DATE, &got, sizeof(got)), sizeof(got));
  assert_memory_equal(&got, &d, sizeof(d));
  assert_int_equal(t_attr(ro, hpub, CKA_END_DATE, &got, sizeof(got)), sizeof(got));
  assert_memory_equal(&got, &d, sizeof(d));

  /* The public half alone is not deleted; the private key deletes the vault key. */
  assert_int_equal(C_DestroyObject(rw, hpub), CKR_ACTION_PROHIBITED);
  assert_int_equal(C_DestroyObject(ro, hpriv), CKR_SESSION_READ_ONLY);
  assert_int_equal(C_DestroyObject(rw, hpriv), CKR_OK);
  assert_int_equal(C_GetAttributeValue(ro, hpriv, &label, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_GetAttributeValue(ro, hpub, &label, 1), CKR_OBJECT_HANDLE_INVALID);
  {
    struct kv_key *k = NULL;
    assert_int_equal(kv_get_key(NULL, "gen-ec", NULL, &k, NULL), KV_E_NOT_FOUND);
  }
}

static void test_data_objects(void **state)
{
  CK_SESSION_HANDLE rw = t_open(CKF_RW_SESSION);
  CK_OBJECT_CLASS data = CKO_DATA, cert = CKO_CERTIFICATE;
  CK_ATTRIBUTE t[] = {A(CKA_CLASS, &data), A(CKA_TOKEN, &yes), AS(CKA_LABEL, "app-config"),
                      AS(CKA_VALUE, "value-1")};
  CK_ATTRIBUTE c[] = {A(CKA_CLASS, &cert), A(CKA_TOKEN, &yes), AS(CKA_LABEL, "lone"),
                      AS(CKA_VALUE, "\x30\x03\x02\x01\x01")};
  CK_OBJECT_HANDLE h = 0, h2 = 0;
  char buf[32];
  (void)state;

  assert_int_equal(C_CreateObject(rw, t, N(t), &h), CKR_OK);
  assert_int_equal(t_attr(rw, h, CKA_VALUE, buf, sizeof(buf)), 7);
  assert_memory_equal(buf, "value-1", 7);
  assert_int_equal(t_find_one(rw, CKO_DATA, "app-config"), h);
  assert_int_equal(C_CreateObject(rw, t, N(t), &h2), CKR_ATTRIBUTE_VALUE_INVALID); /* exists */
  assert_int_equal(C_CreateObject(rw, c, N(c), &h2), CKR_TEMPLATE_INCONSISTENT);
  t[2].pValue = "bad name";
  t[2].ulValueLen = 8;
  assert_int_equal(C_CreateObject(rw, t, N(t), &h2), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_DestroyObject(rw, h), CKR_OK);
  assert_int_equal(C_GetAttributeValue(rw, h, t, 1), CKR_OBJECT_HANDLE_INVALID);
}

static void test_read_only(void **state)
{
  CK_SESSION_HANDLE s;
  CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_OBJECT_CLASS data = CKO_DATA;
  CK_ATTRIBUTE t[] = {A(CKA_CLASS, &data), A(CKA_TOKEN, &yes), AS(CKA_LABEL, "x"),
                      AS(CKA_VALUE, "v")};
  CK_OBJECT_HANDLE a, b;
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("seed", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  assert_int_equal(t_init(T_CFG(",\"read_only\":true,\"allow_destroy\":true")), CKR_OK);
  s = t_open(0);
  assert_int_equal(C_GenerateKeyPair(s, &m, NULL, 0, NULL, 0, &a, &b), CKR_TOKEN_WRITE_PROTECTED);
  assert_int_equal(C_CreateObject(s, t, N(t), &a), CKR_TOKEN_WRITE_PROTECTED);
  a = t_find_one(s, CKO_PRIVATE_KEY, "seed");
  assert_int_equal(C_DestroyObject(s, a), CKR_TOKEN_WRITE_PROTECTED);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_ec_params),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_rsa_templates),
      cmocka_unit_test(test_ec_templates),
      cmocka_unit_test(test_secret_key_templates),
      cmocka_unit_test(test_tag_id),
      cmocka_unit_test_setup_teardown(test_generate_update_destroy, setup_rw, teardown),
      cmocka_unit_test_setup_teardown(test_data_objects, setup_rw, teardown),
      cmocka_unit_test(test_read_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
