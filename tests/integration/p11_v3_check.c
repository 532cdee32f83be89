/* SPDX-License-Identifier: Apache-2.0 */
/* p11_v3_check - the PKCS#11 3.0 interface of the module, used as a 3.0 application uses it:
 * C_GetInterfaceList lists "PKCS 11" 3.0 then 2.40 (the 2.40 one is C_GetFunctionList's list),
 * C_GetInterface's default is 3.0, C_GetInfo reports the version of the list it was called
 * through, and every call below goes through the 3.0 list: C_LoginUser (when a PIN is given: a
 * wrong PIN refused, then the right one with a user name), an ECDSA signature that verifies,
 * C_SessionCancel in the middle of a multi-part signature (C_SignFinal then answers
 * CKR_OPERATION_NOT_INITIALIZED) and a new C_SignInit that signs again.
 *
 * usage: p11_v3_check MODULE EC_KEY_LABEL [PIN]
 *   EC_KEY_LABEL: a P-256 key of the first slot; PIN: the slot requires a login with it. */
#include "p11_common.h"
#include "pkcs11_3.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char msg[] = "signed through the PKCS#11 3.0 interface";

static CK_OBJECT_HANDLE find(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                             const char *label)
{
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                      {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)}};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG n = 0;
  if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
    return CK_INVALID_HANDLE;
  if (f->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1)
    h = CK_INVALID_HANDLE;
  f->C_FindObjectsFinal(s);
  return h;
}

/* C_VerifyInit + C_Verify of msg with the public key: CKR_OK when sig is a valid signature. */
static CK_RV verify(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub,
                    const CK_BYTE *sig, CK_ULONG len)
{
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  CK_RV rv = f->C_VerifyInit(s, &m, pub);
  if (rv != CKR_OK)
    return rv;
  return f->C_Verify(s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, (CK_BYTE_PTR)sig, len);
}

int main(int argc, char **argv)
{
  CK_C_GetInterfaceList gil;
  CK_C_GetInterface gi;
  CK_C_GetFunctionList gfl;
  CK_INTERFACE list[4];
  CK_INTERFACE_PTR ifc = NULL;
  CK_FUNCTION_LIST_PTR f240 = NULL;
  CK_FUNCTION_LIST_3_0 *f;
  CK_C_INITIALIZE_ARGS args;
  CK_INFO info;
  CK_SLOT_ID slots[8];
  CK_SESSION_HANDLE s;
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  CK_OBJECT_HANDLE priv, pub;
  CK_BYTE sig[128];
  CK_ULONG n = 4, len;
  const char *pin = argc > 3 ? argv[3] : NULL;
  void *dl;
  CK_RV rv;

  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODULE EC_KEY_LABEL [PIN]\n", argv[0]);
    return 2;
  }
  dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    fprintf(stderr, "FATAL: dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  *(void **)(&gil) = dlsym(dl, "C_GetInterfaceList");
  *(void **)(&gi) = dlsym(dl, "C_GetInterface");
  *(void **)(&gfl) = dlsym(dl, "C_GetFunctionList");
  if (!gil || !gi || !gfl || gfl(&f240) != CKR_OK) {
    fprintf(stderr,
            "FATAL: the module lacks C_GetInterfaceList/C_GetInterface/C_GetFunctionList\n");
    return 1;
  }

  /* The list: 3.0 first, then 2.40. */
  rv = gil(list, &n);
  t_check(rv == CKR_OK && n == 2, "C_GetInterfaceList: %s, %lu interfaces", t_rv_name(rv),
          (unsigned long)n);
  if (rv != CKR_OK || n != 2)
    return t_finish("p11_v3_check");
  for (CK_ULONG i = 0; i < n; i++) {
    const CK_VERSION *v = list[i].pFunctionList;
    printf("interface %lu: \"%s\" %u.%u flags %lu\n", (unsigned long)i,
           (const char *)list[i].pInterfaceName, v->major, v->minor, (unsigned long)list[i].flags);
  }
  t_check(strcmp((const char *)list[0].pInterfaceName, "PKCS 11") == 0 &&
              ((CK_VERSION *)list[0].pFunctionList)->major == 3 &&
              ((CK_VERSION *)list[0].pFunctionList)->minor == 0,
          "the first interface is \"PKCS 11\" 3.0");
  t_check(strcmp((const char *)list[1].pInterfaceName, "PKCS 11") == 0 &&
              list[1].pFunctionList == (void *)f240,
          "the second is \"PKCS 11\" 2.40, the list of C_GetFunctionList");
  rv = gi(NULL, NULL, &ifc, 0);
  t_check(rv == CKR_OK && ifc && ifc->pFunctionList == list[0].pFunctionList,
          "C_GetInterface(NULL, NULL): the 3.0 list (%s)", t_rv_name(rv));
  f = list[0].pFunctionList;

  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  rv = f->C_Initialize(&args);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_Initialize: %s\n", t_rv_name(rv));
    return 1;
  }
  rv = f->C_GetInfo(&info);
  t_check(rv == CKR_OK && info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 0,
          "C_GetInfo through the 3.0 list: %s, version %u.%u", t_rv_name(rv),
          info.cryptokiVersion.major, info.cryptokiVersion.minor);
  rv = f240->C_GetInfo(&info);
  t_check(rv == CKR_OK && info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40,
          "C_GetInfo through the 2.40 list: %s, version %u.%u", t_rv_name(rv),
          info.cryptokiVersion.major, info.cryptokiVersion.minor);

  n = sizeof(slots) / sizeof(slots[0]);
  rv = f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK || n == 0 ||
      (rv = f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK) {
    fprintf(stderr, "FATAL: a session on the first slot: %s\n", t_rv_name(rv));
    return 1;
  }

  if (pin) {
    t_check(find(f, s, CKO_PRIVATE_KEY, argv[2]) == CK_INVALID_HANDLE,
            "before C_LoginUser the private key is not visible");
    rv = f->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9, (CK_UTF8CHAR_PTR) "user", 4);
    t_check(rv == CKR_PIN_INCORRECT, "C_LoginUser with a wrong PIN: %s", t_rv_name(rv));
    rv = f->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin),
                        (CK_UTF8CHAR_PTR) "any user name", 13);
    t_check(rv == CKR_OK, "C_LoginUser with the PIN and a user name: %s", t_rv_name(rv));
  }
  priv = find(f, s, CKO_PRIVATE_KEY, argv[2]);
  pub = find(f, s, CKO_PUBLIC_KEY, argv[2]);
  t_check(priv != CK_INVALID_HANDLE && pub != CK_INVALID_HANDLE,
          "the key pair %s is found through the 3.0 list", argv[2]);
  if (priv == CK_INVALID_HANDLE || pub == CK_INVALID_HANDLE)
    return t_finish("p11_v3_check");

  /* A signature through the 3.0 list. */
  len = sizeof(sig);
  rv = f->C_SignInit(s, &m, priv);
  if (rv == CKR_OK)
    rv = f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &len);
  t_check(rv == CKR_OK && len == 64, "C_Sign ECDSA-SHA256: %s, %lu bytes", t_rv_name(rv),
          (unsigned long)len);
  rv = verify(f, s, pub, sig, len);
  t_check(rv == CKR_OK, "the signature verifies: %s", t_rv_name(rv));

  /* C_SessionCancel in the middle of a multi-part signature. */
  rv = f->C_SignInit(s, &m, priv);
  if (rv == CKR_OK)
    rv = f->C_SignUpdate(s, (CK_BYTE_PTR)msg, 10);
  t_check(rv == CKR_OK, "C_SignInit + C_SignUpdate: %s", t_rv_name(rv));
  rv = f->C_SessionCancel(s, CKF_SIGN);
  t_check(rv == CKR_OK, "C_SessionCancel(CKF_SIGN) mid-operation: %s", t_rv_name(rv));
  len = sizeof(sig);
  rv = f->C_SignFinal(s, sig, &len);
  t_check(rv == CKR_OPERATION_NOT_INITIALIZED, "C_SignFinal after the cancel: %s", t_rv_name(rv));
  len = sizeof(sig);
  rv = f->C_SignInit(s, &m, priv);
  t_check(rv == CKR_OK, "a new C_SignInit after the cancel: %s", t_rv_name(rv));
  if (rv == CKR_OK) {
    rv = f->C_SignUpdate(s, (CK_BYTE_PTR)msg, 10);
    if (rv == CKR_OK)
      rv = f->C_SignUpdate(s, (CK_BYTE_PTR)msg + 10, sizeof(msg) - 1 - 10);
    if (rv == CKR_OK)
      rv = f->C_SignFinal(s, sig, &len);
    t_check(rv == CKR_OK && verify(f, s, pub, sig, len) == CKR_OK,
            "it signs (multi-part) and the signature verifies: %s", t_rv_name(rv));
  }

  if (pin) {
    rv = f->C_Logout(s);
    t_check(rv == CKR_OK, "C_Logout: %s", t_rv_name(rv));
  }
  f->C_CloseSession(s);
  rv = f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "C_Finalize through the 3.0 list: %s", t_rv_name(rv));
  dlclose(dl);
  return t_finish("p11_v3_check");
}
