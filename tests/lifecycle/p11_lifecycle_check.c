/* SPDX-License-Identifier: Apache-2.0 */
/* p11_lifecycle_check MODULE NAME: in one process, generates an RSA key pair NAME in the vault
 * (with CKA_ID, CKA_START_DATE and CKA_END_DATE), signs and verifies with the returned handles at
 * once, changes CKA_END_DATE (C_SetAttributeValue), checks that CKA_LABEL
 * is read-only, then destroys the private key and checks both handles are gone. The shell test
 * (t_attrs.sh) checks the vault side by REST between the steps it cannot see. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../integration/p11_common.h"

static void set_date(CK_DATE *d, const char *ymd)
{
  memcpy(d->year, ymd, 4);
  memcpy(d->month, ymd + 4, 2);
  memcpy(d->day, ymd + 6, 2);
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  CK_SESSION_HANDLE rw = 0, ro = 0;
  CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0}, sign = {CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_BBOOL yes = CK_TRUE;
  CK_ULONG bits = 2048;
  CK_BYTE exp[] = {1, 0, 1}, id[] = {0x5a, 0xa5}, sig[512], data[] = "lifecycle data";
  CK_ULONG sig_len = sizeof(sig);
  CK_DATE start, end, end2, got;
  CK_OBJECT_HANDLE pub = 0, priv = 0;
  CK_RV rv;
  const char *name;

  if (argc != 3) {
    fprintf(stderr, "usage: %s MODULE NAME\n", argv[0]);
    return 2;
  }
  name = argv[2];
  set_date(&start, "20260101");
  set_date(&end, "20310101");
  set_date(&end2, "20320304");
  {
    CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                         {CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, exp, sizeof(exp)},
                         {CKA_LABEL, (void *)name, strlen(name)},
                         {CKA_ID, id, sizeof(id)},
                         {CKA_VERIFY, &yes, sizeof(yes)}};
    CK_ATTRIBUTE kt[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                         {CKA_LABEL, (void *)name, strlen(name)},
                         {CKA_ID, id, sizeof(id)},
                         {CKA_SIGN, &yes, sizeof(yes)},
                         {CKA_START_DATE, &start, sizeof(start)},
                         {CKA_END_DATE, &end, sizeof(end)}};
    t_p11_open(&p, argv[1]);
    rv = p.f->C_OpenSession(p.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
    t_check(rv == CKR_OK, "C_OpenSession (read-write): %s", t_rv_name(rv));
    rv = p.f->C_OpenSession(p.slot, CKF_SERIAL_SESSION, NULL, NULL, &ro);
    t_check(rv == CKR_OK, "C_OpenSession (read-only): %s", t_rv_name(rv));
    rv = p.f->C_GenerateKeyPair(rw, &gen, pt, 6, kt, 6, &pub, &priv);
    t_check(rv == CKR_OK && pub && priv, "C_GenerateKeyPair RSA 2048 %s: %s", name, t_rv_name(rv));
  }
  /* Usable at once: sign with the new private key, verify with the new public key. */
  rv = p.f->C_SignInit(rw, &sign, priv);
  if (rv == CKR_OK)
    rv = p.f->C_Sign(rw, data, sizeof(data), sig, &sig_len);
  t_check(rv == CKR_OK && sig_len == 256, "the new private key signs in the same process: %s",
          t_rv_name(rv));
  rv = p.f->C_VerifyInit(p.sess, &sign, pub);
  if (rv == CKR_OK)
    rv = p.f->C_Verify(p.sess, data, sizeof(data), sig, sig_len);
  t_check(rv == CKR_OK, "the new public key verifies it (another session): %s", t_rv_name(rv));
  {
    CK_ATTRIBUTE a = {CKA_START_DATE, &got, sizeof(got)};
    rv = p.f->C_GetAttributeValue(p.sess, priv, &a, 1);
    t_check(rv == CKR_OK && a.ulValueLen == sizeof(got) && memcmp(&got, &start, sizeof(got)) == 0,
            "CKA_START_DATE is the template's: %s", t_rv_name(rv));
  }
  /* Dates: a new CKA_END_DATE; both halves follow. */
  {
    CK_ATTRIBUTE upd[] = {{CKA_END_DATE, &end2, sizeof(end2)}};
    CK_ATTRIBUTE a = {CKA_END_DATE, &got, sizeof(got)};
    rv = p.f->C_SetAttributeValue(ro, priv, upd, 1);
    t_check(rv == CKR_SESSION_READ_ONLY, "a read-only session cannot change dates: %s",
            t_rv_name(rv));
    rv = p.f->C_SetAttributeValue(rw, priv, upd, 1);
    t_check(rv == CKR_OK, "C_SetAttributeValue CKA_END_DATE: %s", t_rv_name(rv));
    rv = p.f->C_GetAttributeValue(p.sess, pub, &a, 1);
    t_check(rv == CKR_OK && a.ulValueLen == sizeof(got) && memcmp(&got, &end2, sizeof(got)) == 0,
            "the public key reads the new CKA_END_DATE: %s", t_rv_name(rv));
    a.type = CKA_START_DATE;
    a.ulValueLen = sizeof(got);
    rv = p.f->C_GetAttributeValue(p.sess, priv, &a, 1);
    t_check(rv == CKR_OK && a.ulValueLen == sizeof(got) && memcmp(&got, &start, sizeof(got)) == 0,
            "CKA_START_DATE is unchanged: %s", t_rv_name(rv));
  }
  {
    CK_ATTRIBUTE lab = {CKA_LABEL, "renamed", 7}, idv = {CKA_ID, &got, sizeof(got)};
    CK_BYTE idbuf[8];
    rv = p.f->C_SetAttributeValue(rw, priv, &lab, 1);
    t_check(rv == CKR_ATTRIBUTE_READ_ONLY, "CKA_LABEL is read-only: %s", t_rv_name(rv));
    idv.pValue = idbuf;
    idv.ulValueLen = sizeof(idbuf);
    rv = p.f->C_GetAttributeValue(p.sess, priv, &idv, 1);
    t_check(rv == CKR_OK && idv.ulValueLen == sizeof(id) && memcmp(idbuf, id, sizeof(id)) == 0,
            "CKA_ID is still the generated one after the update: %s", t_rv_name(rv));
  }
  /* Destroy: the vault key goes, and both handles with it. */
  rv = p.f->C_DestroyObject(rw, priv);
  t_check(rv == CKR_OK, "C_DestroyObject of the private key: %s", t_rv_name(rv));
  {
    CK_ATTRIBUTE a = {CKA_CLASS, &bits, sizeof(bits)};
    rv = p.f->C_GetAttributeValue(p.sess, priv, &a, 1);
    t_check(rv == CKR_OBJECT_HANDLE_INVALID, "the private key handle is gone: %s", t_rv_name(rv));
    rv = p.f->C_GetAttributeValue(p.sess, pub, &a, 1);
    t_check(rv == CKR_OBJECT_HANDLE_INVALID, "the public key handle is gone: %s", t_rv_name(rv));
  }
  p.f->C_CloseSession(rw);
  p.f->C_CloseSession(ro);
  t_p11_close(&p);
  return t_finish("p11_lifecycle_check");
}
