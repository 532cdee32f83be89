/* SPDX-License-Identifier: Apache-2.0 */
/* misuse - a table-driven PKCS#11 misuse test: each row makes one wrong call and names
 * the return value PKCS#11 2.40 (base specification, section 5) prescribes for it, or 3.0 for
 * the calls only its interface has (C_GetInterface*, C_LoginUser, C_SessionCancel, the message
 * functions: reached through the "PKCS 11" 3.0 list); the program prints one line per row and a
 * summary, and fails on any mismatch (a crash fails it too).
 *
 * usage: misuse MODULE RSA_LABEL EC_LABEL SIGNONLY_LABEL
 *   RSA_LABEL: an RSA key with every key_op; EC_LABEL: a P-256 key; SIGNONLY_LABEL: an RSA key
 *   whose key_ops are only sign/verify (no decrypt, no unwrap).
 * env: the module's config (AKV_PKCS11_CONFIG), the seeded vault in the first slot.
 *
 * C_Initialize's pReserved is not tested: the module reads it as a configuration path, the
 * x-init-reserved convention of p11-kit (the spec only says it "should be NULL_PTR").
 *
 * Phases: before C_Initialize, C_Initialize argument checks, initialised (NULL pointers, invalid
 * slot/session/object handles, wrong session state, wrong key, missing usage, unknown mechanism,
 * too-small buffers), after C_Finalize. Each initialised row runs in a fresh session, so an
 * operation a row leaves active cannot leak into the next one. */
#include "p11_common.h"
#include "pkcs11_3.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_HANDLE ((CK_ULONG)0x7eadbeefUL)
#define BAD_SLOT ((CK_SLOT_ID)0x7eadUL)
#define BAD_MECH ((CK_MECHANISM_TYPE)(CKM_VENDOR_DEFINED | 0x7e57UL))
#define NO_RV ((CK_RV)-1) /* "no alternative" in a row */

struct ctx {
  CK_FUNCTION_LIST_PTR f;
  CK_FUNCTION_LIST_3_0 *f3; /* the 3.0 interface's list */
  CK_C_GetInterface get_interface;
  CK_C_GetInterfaceList get_interface_list;
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE rsa_priv, rsa_pub, ec_priv, signonly_priv;
  CK_ULONG rsa_bytes;
  int extra_ok; /* a row's own check of lengths/values after the expected return value */
};

typedef CK_RV (*row_fn)(struct ctx *c);

struct row {
  const char *what;
  CK_RV expect, alt; /* alt: a second value the spec allows for the same misuse, or NO_RV */
  const char *expect_name;
  row_fn fn;
};

static const char *rv_name(CK_RV rv)
{
  /* Names p11_common's table lacks. */
  switch (rv) {
  case CKR_SLOT_ID_INVALID:
    return "CKR_SLOT_ID_INVALID";
  case CKR_CRYPTOKI_ALREADY_INITIALIZED:
    return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
  case CKR_WRAPPING_KEY_HANDLE_INVALID:
    return "CKR_WRAPPING_KEY_HANDLE_INVALID";
  case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
    return "CKR_UNWRAPPING_KEY_HANDLE_INVALID";
  case CKR_SESSION_PARALLEL_NOT_SUPPORTED:
    return "CKR_SESSION_PARALLEL_NOT_SUPPORTED";
  case CKR_KEY_NOT_WRAPPABLE:
    return "CKR_KEY_NOT_WRAPPABLE";
  case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
    return "CKR_WRAPPING_KEY_TYPE_INCONSISTENT";
  case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
    return "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT";
  case CKR_USER_TYPE_INVALID:
    return "CKR_USER_TYPE_INVALID";
  case CKR_USER_ALREADY_LOGGED_IN:
    return "CKR_USER_ALREADY_LOGGED_IN";
  default:
    return t_rv_name(rv);
  }
}

static const unsigned char msg[] = "misuse table: a short message";
static const unsigned char digest32[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                           23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static CK_MECHANISM m_sha256_rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
static CK_MECHANISM m_ecdsa = {CKM_ECDSA, NULL, 0};
static CK_MECHANISM m_sha256 = {CKM_SHA256, NULL, 0};
static CK_MECHANISM m_rsa_pkcs = {CKM_RSA_PKCS, NULL, 0};
static CK_MECHANISM m_bad = {BAD_MECH, NULL, 0};
static CK_MECHANISM m_aes_gen = {CKM_AES_KEY_GEN, NULL, 0};

/* A session AES-256 key (local: no vault request). */
static CK_OBJECT_HANDLE aes_key(struct ctx *c)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ULONG len = 32;
  CK_BBOOL f = CK_FALSE, t = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &f, sizeof(f)},
      {CKA_ENCRYPT, &t, sizeof(t)},       {CKA_DECRYPT, &t, sizeof(t)},
  };
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = c->f->C_GenerateKey(c->s, &m_aes_gen, tmpl, 6, &h);
  if (rv != CKR_OK)
    t_note("setup: C_GenerateKey AES-256: %s", rv_name(rv));
  return h;
}

#define ROW(name) static CK_RV name(struct ctx *c)
#define UNUSED_C (void)c

/* The call shapes many rows share, so that such a row names only the call and its arguments. */
typedef CK_RV (*init_fn)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
typedef CK_RV (*in_out_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*out_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);

static const CK_BYTE zeros[256];

/* fn(in) into a 512-byte output (single-part calls, cipher updates). */
static CK_RV in_out(struct ctx *c, in_out_fn fn, const CK_BYTE *in, CK_ULONG in_len)
{
  CK_BYTE out[512];
  CK_ULONG len = sizeof(out);
  return fn(c->s, (CK_BYTE_PTR)in, in_len, out, &len);
}

/* A final into a 512-byte output. */
static CK_RV out_only(struct ctx *c, out_fn fn)
{
  CK_BYTE out[512];
  CK_ULONG len = sizeof(out);
  return fn(c->s, out, &len);
}

/* An init called twice: the second finds the operation active. */
static CK_RV init_twice(struct ctx *c, init_fn fn, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
  CK_RV rv = fn(c->s, m, key);
  if (rv != CKR_OK)
    return rv;
  return fn(c->s, m, key);
}

/* ---- before C_Initialize / after C_Finalize ---------------------------------------------- */
ROW(r_getinfo)
{
  CK_INFO i;
  return c->f->C_GetInfo(&i);
}
ROW(r_slotlist)
{
  CK_ULONG n = 0;
  return c->f->C_GetSlotList(CK_FALSE, NULL, &n);
}
ROW(r_slotinfo)
{
  CK_SLOT_INFO i;
  return c->f->C_GetSlotInfo(c->slot, &i);
}
ROW(r_tokeninfo)
{
  CK_TOKEN_INFO i;
  return c->f->C_GetTokenInfo(c->slot, &i);
}
ROW(r_mechlist)
{
  CK_ULONG n = 0;
  return c->f->C_GetMechanismList(c->slot, NULL, &n);
}
ROW(r_opensession)
{
  CK_SESSION_HANDLE s;
  return c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
}
ROW(r_closesession)
{
  return c->f->C_CloseSession(c->s);
}
ROW(r_closeall)
{
  return c->f->C_CloseAllSessions(c->slot);
}
ROW(r_finalize)
{
  UNUSED_C;
  return c->f->C_Finalize(NULL);
}
ROW(r_signinit)
{
  return c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
}
ROW(r_findinit)
{
  return c->f->C_FindObjectsInit(c->s, NULL, 0);
}
ROW(r_random)
{
  CK_BYTE b[8];
  return c->f->C_GenerateRandom(c->s, b, sizeof(b));
}

/* ---- C_Initialize / C_Finalize arguments ------------------------------------------------- */
static CK_RV dummy_create(CK_VOID_PTR_PTR m)
{
  (void)m;
  return CKR_OK;
}
ROW(r_init_partial_mutex)
{
  CK_C_INITIALIZE_ARGS a;
  memset(&a, 0, sizeof(a));
  a.CreateMutex = dummy_create; /* some but not all of the four: spec 5.4 */
  return c->f->C_Initialize(&a);
}
ROW(r_init_twice)
{
  UNUSED_C;
  return c->f->C_Initialize(NULL);
}
ROW(r_finalize_reserved)
{
  int x;
  return c->f->C_Finalize(&x);
}

/* ---- NULL pointers ----------------------------------------------------------------------- */
ROW(n_getinfo)
{
  return c->f->C_GetInfo(NULL);
}
ROW(n_slotlist)
{
  return c->f->C_GetSlotList(CK_TRUE, NULL, NULL);
}
ROW(n_slotinfo)
{
  return c->f->C_GetSlotInfo(c->slot, NULL);
}
ROW(n_tokeninfo)
{
  return c->f->C_GetTokenInfo(c->slot, NULL);
}
ROW(n_mechlist)
{
  return c->f->C_GetMechanismList(c->slot, NULL, NULL);
}
ROW(n_mechinfo)
{
  return c->f->C_GetMechanismInfo(c->slot, CKM_SHA256_RSA_PKCS, NULL);
}
ROW(n_opensession)
{
  return c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, NULL);
}
ROW(n_sessioninfo)
{
  return c->f->C_GetSessionInfo(c->s, NULL);
}
ROW(n_findinit)
{
  return c->f->C_FindObjectsInit(c->s, NULL, 1);
}
ROW(n_findobjects)
{
  CK_ULONG got;
  CK_RV rv = c->f->C_FindObjectsInit(c->s, NULL, 0);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_FindObjects(c->s, NULL, 1, &got);
}
ROW(n_findcount)
{
  CK_OBJECT_HANDLE h;
  CK_RV rv = c->f->C_FindObjectsInit(c->s, NULL, 0);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_FindObjects(c->s, &h, 1, NULL);
}
ROW(n_getattr)
{
  return c->f->C_GetAttributeValue(c->s, c->rsa_pub, NULL, 1);
}
ROW(n_objsize)
{
  return c->f->C_GetObjectSize(c->s, c->rsa_pub, NULL);
}
ROW(n_signinit)
{
  return c->f->C_SignInit(c->s, NULL, c->rsa_priv);
}
ROW(n_sign_len)
{
  CK_BYTE sig[1024];
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, NULL);
}
ROW(n_sign_data)
{
  CK_BYTE sig[1024];
  CK_ULONG len = sizeof(sig);
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_Sign(c->s, NULL, 20, sig, &len);
}
ROW(n_verifyinit)
{
  return c->f->C_VerifyInit(c->s, NULL, c->rsa_pub);
}
ROW(n_encryptinit)
{
  return c->f->C_EncryptInit(c->s, NULL, c->rsa_pub);
}
ROW(n_decryptinit)
{
  return c->f->C_DecryptInit(c->s, NULL, c->rsa_priv);
}
ROW(n_digestinit)
{
  return c->f->C_DigestInit(c->s, NULL);
}
ROW(n_digest_len)
{
  CK_BYTE out[64];
  CK_RV rv = c->f->C_DigestInit(c->s, &m_sha256);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_Digest(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, NULL);
}
ROW(n_genkey_out)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ULONG len = 32;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_VALUE_LEN, &len, sizeof(len)}};
  return c->f->C_GenerateKey(c->s, &m_aes_gen, tmpl, 2, NULL);
}
ROW(n_genkey_mech)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG len = 32;
  CK_ATTRIBUTE tmpl[] = {{CKA_VALUE_LEN, &len, sizeof(len)}};
  return c->f->C_GenerateKey(c->s, NULL, tmpl, 1, &h);
}
ROW(n_random)
{
  return c->f->C_GenerateRandom(c->s, NULL, 16);
}
ROW(n_wrap_len)
{
  CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
  CK_OBJECT_HANDLE k = aes_key(c);
  return c->f->C_WrapKey(c->s, &m, c->rsa_pub, k, NULL, NULL);
}
ROW(n_login_pin)
{
  return c->f->C_Login(c->s, CKU_USER, NULL, 4);
}

/* ---- invalid slot ------------------------------------------------------------------------- */
ROW(s_slotinfo)
{
  CK_SLOT_INFO i;
  UNUSED_C;
  return c->f->C_GetSlotInfo(BAD_SLOT, &i);
}
ROW(s_tokeninfo)
{
  CK_TOKEN_INFO i;
  UNUSED_C;
  return c->f->C_GetTokenInfo(BAD_SLOT, &i);
}
ROW(s_mechlist)
{
  CK_ULONG n = 0;
  UNUSED_C;
  return c->f->C_GetMechanismList(BAD_SLOT, NULL, &n);
}
ROW(s_mechinfo)
{
  CK_MECHANISM_INFO i;
  UNUSED_C;
  return c->f->C_GetMechanismInfo(BAD_SLOT, CKM_SHA256_RSA_PKCS, &i);
}
ROW(s_opensession)
{
  CK_SESSION_HANDLE s;
  UNUSED_C;
  return c->f->C_OpenSession(BAD_SLOT, CKF_SERIAL_SESSION, NULL, NULL, &s);
}
ROW(s_closeall)
{
  UNUSED_C;
  return c->f->C_CloseAllSessions(BAD_SLOT);
}
ROW(s_parallel)
{
  CK_SESSION_HANDLE s;
  return c->f->C_OpenSession(c->slot, 0, NULL, NULL, &s); /* no CKF_SERIAL_SESSION: spec 5.6 */
}

/* ---- invalid session handle --------------------------------------------------------------- */
ROW(h_close)
{
  UNUSED_C;
  return c->f->C_CloseSession(BAD_HANDLE);
}
ROW(h_info)
{
  CK_SESSION_INFO i;
  UNUSED_C;
  return c->f->C_GetSessionInfo(BAD_HANDLE, &i);
}
ROW(h_login)
{
  UNUSED_C;
  return c->f->C_Login(BAD_HANDLE, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
}
ROW(h_logout)
{
  UNUSED_C;
  return c->f->C_Logout(BAD_HANDLE);
}
ROW(h_findinit)
{
  UNUSED_C;
  return c->f->C_FindObjectsInit(BAD_HANDLE, NULL, 0);
}
ROW(h_find)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG n;
  UNUSED_C;
  return c->f->C_FindObjects(BAD_HANDLE, &h, 1, &n);
}
ROW(h_findfinal)
{
  UNUSED_C;
  return c->f->C_FindObjectsFinal(BAD_HANDLE);
}
ROW(h_getattr)
{
  CK_ULONG len = 0;
  CK_ATTRIBUTE a = {CKA_MODULUS_BITS, &len, sizeof(len)};
  return c->f->C_GetAttributeValue(BAD_HANDLE, c->rsa_pub, &a, 1);
}
ROW(h_destroy)
{
  return c->f->C_DestroyObject(BAD_HANDLE, c->rsa_pub);
}
ROW(h_signinit)
{
  return c->f->C_SignInit(BAD_HANDLE, &m_sha256_rsa, c->rsa_priv);
}
ROW(h_sign)
{
  CK_BYTE sig[512];
  CK_ULONG len = sizeof(sig);
  UNUSED_C;
  return c->f->C_Sign(BAD_HANDLE, (CK_BYTE_PTR)msg, 4, sig, &len);
}
ROW(h_verifyinit)
{
  return c->f->C_VerifyInit(BAD_HANDLE, &m_sha256_rsa, c->rsa_pub);
}
ROW(h_encryptinit)
{
  return c->f->C_EncryptInit(BAD_HANDLE, &m_rsa_pkcs, c->rsa_pub);
}
ROW(h_decryptinit)
{
  return c->f->C_DecryptInit(BAD_HANDLE, &m_rsa_pkcs, c->rsa_priv);
}
ROW(h_digestinit)
{
  UNUSED_C;
  return c->f->C_DigestInit(BAD_HANDLE, &m_sha256);
}
ROW(h_genkey)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG len = 32;
  CK_ATTRIBUTE tmpl[] = {{CKA_VALUE_LEN, &len, sizeof(len)}};
  UNUSED_C;
  return c->f->C_GenerateKey(BAD_HANDLE, &m_aes_gen, tmpl, 1, &h);
}
ROW(h_random)
{
  CK_BYTE b[8];
  UNUSED_C;
  return c->f->C_GenerateRandom(BAD_HANDLE, b, sizeof(b));
}
ROW(h_unwrap)
{
  CK_OBJECT_HANDLE h;
  CK_BYTE blob[256] = {0};
  return c->f->C_UnwrapKey(BAD_HANDLE, &m_rsa_pkcs, c->rsa_priv, blob, sizeof(blob), NULL, 0, &h);
}
ROW(h_closed)
{
  /* A handle that was valid and is closed now. */
  CK_SESSION_HANDLE s;
  CK_SESSION_INFO i;
  CK_RV rv = c->f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_CloseSession(s);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_GetSessionInfo(s, &i);
}

/* ---- invalid object handle ---------------------------------------------------------------- */
ROW(o_getattr)
{
  CK_ULONG bits = 0;
  CK_ATTRIBUTE a = {CKA_MODULUS_BITS, &bits, sizeof(bits)};
  return c->f->C_GetAttributeValue(c->s, BAD_HANDLE, &a, 1);
}
ROW(o_size)
{
  CK_ULONG n;
  return c->f->C_GetObjectSize(c->s, BAD_HANDLE, &n);
}
ROW(o_destroy)
{
  return c->f->C_DestroyObject(c->s, BAD_HANDLE);
}
ROW(o_setattr)
{
  CK_ATTRIBUTE a = {CKA_LABEL, "x", 1};
  return c->f->C_SetAttributeValue(c->s, BAD_HANDLE, &a, 1);
}
ROW(o_signinit)
{
  return c->f->C_SignInit(c->s, &m_sha256_rsa, BAD_HANDLE);
}
ROW(o_verifyinit)
{
  return c->f->C_VerifyInit(c->s, &m_sha256_rsa, BAD_HANDLE);
}
ROW(o_encryptinit)
{
  return c->f->C_EncryptInit(c->s, &m_rsa_pkcs, BAD_HANDLE);
}
ROW(o_decryptinit)
{
  return c->f->C_DecryptInit(c->s, &m_rsa_pkcs, BAD_HANDLE);
}
ROW(o_wrap_wrapping)
{
  CK_ULONG len = 0;
  CK_OBJECT_HANDLE k = aes_key(c);
  return c->f->C_WrapKey(c->s, &m_rsa_pkcs, BAD_HANDLE, k, NULL, &len);
}
ROW(o_wrap_key)
{
  CK_ULONG len = 0;
  return c->f->C_WrapKey(c->s, &m_rsa_pkcs, c->rsa_pub, BAD_HANDLE, NULL, &len);
}
ROW(o_unwrap)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
  CK_OBJECT_HANDLE h;
  CK_BYTE blob[256] = {0};
  return c->f->C_UnwrapKey(c->s, &m_rsa_pkcs, BAD_HANDLE, blob, sizeof(blob), tmpl, 2, &h);
}

/* ---- wrong session state ------------------------------------------------------------------ */
ROW(w_sign)
{
  return in_out(c, c->f->C_Sign, msg, 4);
}
ROW(w_signupdate)
{
  return c->f->C_SignUpdate(c->s, (CK_BYTE_PTR)msg, 4);
}
ROW(w_signfinal)
{
  return out_only(c, c->f->C_SignFinal);
}
ROW(w_verify)
{
  return c->f->C_Verify(c->s, (CK_BYTE_PTR)msg, 4, (CK_BYTE_PTR)zeros, sizeof(zeros));
}
ROW(w_verifyfinal)
{
  return c->f->C_VerifyFinal(c->s, (CK_BYTE_PTR)zeros, sizeof(zeros));
}
ROW(w_encrypt)
{
  return in_out(c, c->f->C_Encrypt, msg, 4);
}
ROW(w_encryptupdate)
{
  return in_out(c, c->f->C_EncryptUpdate, msg, 4);
}
ROW(w_encryptfinal)
{
  return out_only(c, c->f->C_EncryptFinal);
}
ROW(w_decrypt)
{
  return in_out(c, c->f->C_Decrypt, zeros, 256);
}
ROW(w_decryptupdate)
{
  return in_out(c, c->f->C_DecryptUpdate, zeros, 16);
}
ROW(w_decryptfinal)
{
  return out_only(c, c->f->C_DecryptFinal);
}
ROW(w_digest)
{
  return in_out(c, c->f->C_Digest, msg, 4);
}
ROW(w_digestupdate)
{
  return c->f->C_DigestUpdate(c->s, (CK_BYTE_PTR)msg, 4);
}
ROW(w_digestfinal)
{
  return out_only(c, c->f->C_DigestFinal);
}
ROW(w_find)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG n;
  return c->f->C_FindObjects(c->s, &h, 1, &n);
}
ROW(w_findfinal)
{
  return c->f->C_FindObjectsFinal(c->s);
}
ROW(w_signinit_twice)
{
  return init_twice(c, c->f->C_SignInit, &m_sha256_rsa, c->rsa_priv);
}
ROW(w_verifyinit_twice)
{
  return init_twice(c, c->f->C_VerifyInit, &m_sha256_rsa, c->rsa_pub);
}
ROW(w_decryptinit_twice)
{
  return init_twice(c, c->f->C_DecryptInit, &m_rsa_pkcs, c->rsa_priv);
}
ROW(w_encryptinit_twice)
{
  return init_twice(c, c->f->C_EncryptInit, &m_rsa_pkcs, c->rsa_pub);
}
ROW(w_digestinit_twice)
{
  CK_RV rv = c->f->C_DigestInit(c->s, &m_sha256);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_DigestInit(c->s, &m_sha256);
}
ROW(w_findinit_twice)
{
  CK_RV rv = c->f->C_FindObjectsInit(c->s, NULL, 0);
  if (rv != CKR_OK)
    return rv;
  return c->f->C_FindObjectsInit(c->s, NULL, 0);
}
ROW(w_sign_after_done)
{
  /* A completed C_Sign ends the operation (spec 5.11): a second C_Sign has nothing to do. */
  CK_BYTE sig[1024];
  CK_ULONG len = sizeof(sig);
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
  if (rv == CKR_OK)
    rv = c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &len);
  if (rv != CKR_OK)
    return rv;
  len = sizeof(sig);
  return c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &len);
}
ROW(w_sign_after_failure)
{
  /* A call that fails other than with CKR_BUFFER_TOO_SMALL ends the operation (spec 5.11):
   * C_Sign with NULL data and a length fails, so C_SignFinal then is not initialised. */
  CK_BYTE sig[1024];
  CK_ULONG len = sizeof(sig);
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Sign(c->s, NULL, 20, sig, &len);
  if (rv != CKR_ARGUMENTS_BAD)
    t_note("  (setup C_Sign(NULL data) gave %s)", rv_name(rv));
  len = sizeof(sig);
  return c->f->C_SignFinal(c->s, sig, &len);
}

ROW(w_digest_after_failure)
{
  /* As above for digests: C_Digest with a NULL length pointer fails and ends the operation. */
  CK_BYTE out[64];
  CK_ULONG len = sizeof(out);
  CK_RV rv = c->f->C_DigestInit(c->s, &m_sha256);
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Digest(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, NULL);
  if (rv != CKR_ARGUMENTS_BAD)
    t_note("  (setup C_Digest(NULL length) gave %s)", rv_name(rv));
  return c->f->C_DigestFinal(c->s, out, &len);
}

/* ---- wrong key type / missing usage / unknown mechanism ----------------------------------- */
ROW(k_ecdsa_rsa)
{
  return c->f->C_SignInit(c->s, &m_ecdsa, c->rsa_priv);
}
ROW(k_rsa_ec)
{
  return c->f->C_SignInit(c->s, &m_sha256_rsa, c->ec_priv);
}
ROW(k_decrypt_ec)
{
  return c->f->C_DecryptInit(c->s, &m_rsa_pkcs, c->ec_priv);
}
ROW(k_gcm_rsa)
{
  CK_BYTE iv[12] = {0};
  CK_GCM_PARAMS gp = {iv, sizeof(iv), 96, NULL, 0, 128};
  CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
  return c->f->C_EncryptInit(c->s, &m, c->rsa_pub);
}
ROW(k_ecdsa_aes)
{
  CK_OBJECT_HANDLE k = aes_key(c);
  return c->f->C_SignInit(c->s, &m_ecdsa, k);
}
ROW(u_sign_pub)
{
  return c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_pub);
}
ROW(u_verify_priv_signonly)
{
  /* The signonly key's private half cannot decrypt: key_ops lack "decrypt" (docs/mechanisms.md). */
  return c->f->C_DecryptInit(c->s, &m_rsa_pkcs, c->signonly_priv);
}
ROW(u_unwrap_signonly)
{
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
  CK_OBJECT_HANDLE h;
  CK_BYTE blob[256] = {1};
  CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
  return c->f->C_UnwrapKey(c->s, &m, c->signonly_priv, blob, sizeof(blob), tmpl, 2, &h);
}
ROW(u_encrypt_priv)
{
  return c->f->C_EncryptInit(c->s, &m_rsa_pkcs, c->rsa_priv);
}
ROW(m_signinit)
{
  return c->f->C_SignInit(c->s, &m_bad, c->rsa_priv);
}
ROW(m_digestinit)
{
  return c->f->C_DigestInit(c->s, &m_bad);
}
ROW(m_decryptinit)
{
  return c->f->C_DecryptInit(c->s, &m_bad, c->rsa_priv);
}
ROW(m_genkey)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG len = 32;
  CK_ATTRIBUTE tmpl[] = {{CKA_VALUE_LEN, &len, sizeof(len)}};
  return c->f->C_GenerateKey(c->s, &m_bad, tmpl, 1, &h);
}
ROW(m_mechinfo)
{
  CK_MECHANISM_INFO i;
  return c->f->C_GetMechanismInfo(c->slot, BAD_MECH, &i);
}
ROW(m_oaep_params)
{
  /* OAEP without its parameters: spec 2.1.8 requires CK_RSA_PKCS_OAEP_PARAMS. */
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, NULL, 0};
  return c->f->C_DecryptInit(c->s, &m, c->rsa_priv);
}

/* ---- too-small buffers: CKR_BUFFER_TOO_SMALL, the needed length, the operation usable ------ */
ROW(b_sign)
{
  CK_BYTE sig[1024];
  CK_ULONG len = 1;
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv), rv2;
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &len);
  c->extra_ok = len == c->rsa_bytes;
  if (!c->extra_ok)
    t_note("  needed length %lu, expected %lu", (unsigned long)len, (unsigned long)c->rsa_bytes);
  rv2 = c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &len);
  if (rv2 != CKR_OK || len != c->rsa_bytes) {
    t_note("  retry with the needed length: %s, %lu bytes", rv_name(rv2), (unsigned long)len);
    c->extra_ok = 0;
  }
  return rv;
}
ROW(b_sign_query)
{
  /* NULL output asks the length and returns CKR_OK; the operation stays active (spec 5.2). */
  CK_BYTE sig[1024];
  CK_ULONG len = 0;
  CK_RV rv = c->f->C_SignInit(c->s, &m_ecdsa, c->ec_priv), rv2;
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Sign(c->s, (CK_BYTE_PTR)digest32, sizeof(digest32), NULL, &len);
  c->extra_ok = len == 64;
  len = sizeof(sig);
  rv2 = c->f->C_Sign(c->s, (CK_BYTE_PTR)digest32, sizeof(digest32), sig, &len);
  if (rv2 != CKR_OK || len != 64) {
    t_note("  then C_Sign: %s, %lu bytes", rv_name(rv2), (unsigned long)len);
    c->extra_ok = 0;
  }
  return rv;
}
ROW(b_digest)
{
  CK_BYTE out[64];
  CK_ULONG len = 8;
  CK_RV rv = c->f->C_DigestInit(c->s, &m_sha256), rv2;
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Digest(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, &len);
  c->extra_ok = len == 32;
  len = sizeof(out);
  rv2 = c->f->C_Digest(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, &len);
  if (rv2 != CKR_OK || len != 32) {
    t_note("  then C_Digest: %s, %lu bytes", rv_name(rv2), (unsigned long)len);
    c->extra_ok = 0;
  }
  return rv;
}
ROW(b_encrypt_gcm)
{
  CK_BYTE iv[12] = {9}, out[256];
  CK_GCM_PARAMS gp = {iv, sizeof(iv), 96, NULL, 0, 128};
  CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
  CK_ULONG len = 4;
  CK_OBJECT_HANDLE k = aes_key(c);
  CK_RV rv = c->f->C_EncryptInit(c->s, &m, k), rv2;
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_Encrypt(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, &len);
  c->extra_ok = len >= sizeof(msg) - 1 + 16;
  len = sizeof(out);
  rv2 = c->f->C_Encrypt(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, out, &len);
  if (rv2 != CKR_OK || len != sizeof(msg) - 1 + 16) {
    t_note("  then C_Encrypt: %s, %lu bytes", rv_name(rv2), (unsigned long)len);
    c->extra_ok = 0;
  }
  return rv;
}
ROW(b_decrypt_rsa)
{
  /* Encrypt with the public key, then decrypt into a 1-byte buffer. */
  CK_BYTE ct[1024], pt[1024];
  CK_ULONG ctlen = sizeof(ct), len = 1;
  CK_RV rv = c->f->C_EncryptInit(c->s, &m_rsa_pkcs, c->rsa_pub), rv2;
  if (rv == CKR_OK)
    rv = c->f->C_Encrypt(c->s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, ct, &ctlen);
  if (rv == CKR_OK)
    rv = c->f->C_DecryptInit(c->s, &m_rsa_pkcs, c->rsa_priv);
  if (rv != CKR_OK) {
    t_note("  setup: %s", rv_name(rv));
    return rv;
  }
  rv = c->f->C_Decrypt(c->s, ct, ctlen, pt, &len);
  /* The needed length may be the modulus size (an upper bound) or the exact plaintext size. */
  c->extra_ok = len >= sizeof(msg) - 1 && len <= c->rsa_bytes;
  if (!c->extra_ok)
    t_note("  needed length %lu", (unsigned long)len);
  len = sizeof(pt);
  rv2 = c->f->C_Decrypt(c->s, ct, ctlen, pt, &len);
  if (rv2 != CKR_OK || len != sizeof(msg) - 1 || memcmp(pt, msg, len) != 0) {
    t_note("  then C_Decrypt: %s, %lu bytes", rv_name(rv2), (unsigned long)len);
    c->extra_ok = 0;
  }
  return rv;
}
ROW(b_getattr)
{
  /* Spec 5.7: too small -> CKR_BUFFER_TOO_SMALL and ulValueLen = CK_UNAVAILABLE_INFORMATION. */
  CK_BYTE mod[4];
  CK_ATTRIBUTE a = {CKA_MODULUS, mod, sizeof(mod)};
  CK_RV rv = c->f->C_GetAttributeValue(c->s, c->rsa_pub, &a, 1);
  c->extra_ok = a.ulValueLen == CK_UNAVAILABLE_INFORMATION;
  if (!c->extra_ok)
    t_note("  ulValueLen %lu", (unsigned long)a.ulValueLen);
  return rv;
}
ROW(b_mechlist)
{
  CK_MECHANISM_TYPE list[1];
  CK_ULONG n = 1, want = 0;
  CK_RV rv = c->f->C_GetMechanismList(c->slot, NULL, &want);
  if (rv != CKR_OK || want < 2) {
    t_note("  setup: %s, %lu mechanisms", rv_name(rv), (unsigned long)want);
    return rv == CKR_OK ? CKR_GENERAL_ERROR : rv;
  }
  rv = c->f->C_GetMechanismList(c->slot, list, &n);
  c->extra_ok = n == want;
  return rv;
}
ROW(b_slotlist)
{
  CK_SLOT_ID list[1];
  CK_ULONG n = 0, want = 0;
  CK_RV rv = c->f->C_GetSlotList(CK_FALSE, NULL, &want);
  if (rv != CKR_OK)
    return rv;
  rv = c->f->C_GetSlotList(CK_FALSE, list, &n);
  c->extra_ok = n == want;
  return rv;
}
ROW(b_wrap)
{
  CK_BYTE out[8];
  CK_ULONG len = sizeof(out);
  CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
  CK_OBJECT_HANDLE k = aes_key(c);
  CK_RV rv = c->f->C_WrapKey(c->s, &m, c->rsa_pub, k, out, &len);
  c->extra_ok = len == c->rsa_bytes;
  if (!c->extra_ok)
    t_note("  needed length %lu", (unsigned long)len);
  return rv;
}

/* ---- PKCS#11 3.0 ------------------------------------------------------------------------ */
static CK_MECHANISM m_aes_gcm = {CKM_AES_GCM, NULL, 0};
static CK_BYTE buf16[16];
static CK_ULONG len16 = sizeof(buf16);

ROW(v3_getinterface_null)
{
  return c->get_interface(NULL, NULL, NULL, 0);
}
ROW(v3_getinterface_name)
{
  CK_INTERFACE_PTR i = NULL;
  return c->get_interface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &i, 0);
}
ROW(v3_getinterface_version)
{
  CK_VERSION v = {3, 1};
  CK_INTERFACE_PTR i = NULL;
  return c->get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v, &i, 0);
}
ROW(v3_getinterface_forksafe)
{
  CK_INTERFACE_PTR i = NULL;
  return c->get_interface(NULL, NULL, &i, CKF_INTERFACE_FORK_SAFE);
}
ROW(v3_getinterfacelist_null)
{
  return c->get_interface_list(NULL, NULL);
}
ROW(v3_getinterfacelist_small)
{
  CK_INTERFACE l[1];
  CK_ULONG n = 1;
  CK_RV rv = c->get_interface_list(l, &n);
  c->extra_ok = n == 2;
  if (!c->extra_ok)
    t_note("  count %lu", (unsigned long)n);
  return rv;
}
ROW(v3_getinfo)
{
  CK_INFO i;
  return c->f3->C_GetInfo(&i);
}
ROW(v3_getinfo_null)
{
  return c->f3->C_GetInfo(NULL);
}
ROW(v3_loginuser)
{
  return c->f3->C_LoginUser(c->s, CKU_USER, NULL, 0, NULL, 0);
}
ROW(v3_loginuser_pin)
{
  return c->f3->C_LoginUser(c->s, CKU_USER, NULL, 4, NULL, 0);
}
ROW(v3_loginuser_name)
{
  return c->f3->C_LoginUser(c->s, CKU_USER, NULL, 0, NULL, 5);
}
ROW(v3_loginuser_session)
{
  return c->f3->C_LoginUser(BAD_HANDLE, CKU_USER, NULL, 0, (CK_UTF8CHAR_PTR) "u", 1);
}
ROW(v3_loginuser_type)
{
  return c->f3->C_LoginUser(c->s, 7, NULL, 0, (CK_UTF8CHAR_PTR) "u", 1);
}
ROW(v3_loginuser_twice)
{
  CK_RV rv = c->f3->C_LoginUser(c->s, CKU_USER, NULL, 0, (CK_UTF8CHAR_PTR) "u", 1);
  if (rv != CKR_OK)
    return rv;
  rv = c->f3->C_LoginUser(c->s, CKU_USER, NULL, 0, NULL, 0);
  c->f->C_Logout(c->s);
  return rv;
}
ROW(v3_cancel)
{
  return c->f3->C_SessionCancel(c->s, CKF_SIGN);
}
ROW(v3_cancel_session)
{
  return c->f3->C_SessionCancel(BAD_HANDLE, CKF_SIGN);
}
ROW(v3_cancel_hw)
{
  return c->f3->C_SessionCancel(c->s, CKF_SIGN | CKF_HW);
}
ROW(v3_cancel_unknown)
{
  return c->f3->C_SessionCancel(c->s, 0x40000000UL);
}
ROW(v3_cancel_none_active)
{
  return c->f3->C_SessionCancel(c->s, CKF_DECRYPT | CKF_FIND_OBJECTS | CKF_MESSAGE_SIGN);
}
/* A refused cancel leaves the operation active: C_SignInit again finds it. */
ROW(v3_cancel_bad_keeps)
{
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv);
  if (rv != CKR_OK) {
    t_note("  setup: %s", rv_name(rv));
    return rv;
  }
  rv = c->f3->C_SessionCancel(c->s, CKF_SIGN | CKF_EXTENSION);
  c->extra_ok = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv) == CKR_OPERATION_ACTIVE;
  return rv;
}
/* A cancelled operation is gone (C_Sign: not initialised), the others stay, and a new one
 * starts. */
ROW(v3_cancel_then_sign)
{
  CK_BYTE sig[512];
  CK_ULONG len = sizeof(sig);
  CK_RV rv = c->f->C_SignInit(c->s, &m_sha256_rsa, c->rsa_priv), r2, r3, r4;
  if (rv != CKR_OK || (rv = c->f->C_DigestInit(c->s, &m_sha256)) != CKR_OK) {
    t_note("  setup: %s", rv_name(rv));
    return rv;
  }
  rv = c->f3->C_SessionCancel(c->s, CKF_SIGN);
  r2 = c->f->C_Sign(c->s, (CK_BYTE_PTR)msg, 4, sig, &len);
  r3 = c->f->C_DigestUpdate(c->s, (CK_BYTE_PTR)msg, 4);
  r4 = c->f->C_SignInit(c->s, &m_ecdsa, c->ec_priv);
  c->extra_ok = r2 == CKR_OPERATION_NOT_INITIALIZED && r3 == CKR_OK && r4 == CKR_OK;
  if (!c->extra_ok)
    t_note("  then C_Sign %s, C_DigestUpdate %s, C_SignInit %s", rv_name(r2), rv_name(r3),
           rv_name(r4));
  return rv;
}
ROW(v3_cancel_find)
{
  CK_OBJECT_HANDLE h;
  CK_ULONG n = 0;
  CK_RV rv = c->f->C_FindObjectsInit(c->s, NULL, 0);
  if (rv != CKR_OK)
    return rv;
  rv = c->f3->C_SessionCancel(c->s, CKF_FIND_OBJECTS);
  c->extra_ok = c->f->C_FindObjects(c->s, &h, 1, &n) == CKR_OPERATION_NOT_INITIALIZED;
  return rv;
}
ROW(v3_msg_encinit_null)
{
  return c->f3->C_MessageEncryptInit(c->s, NULL, c->rsa_pub);
}
ROW(v3_msg_decinit_null)
{
  return c->f3->C_MessageDecryptInit(c->s, NULL, c->rsa_priv);
}
ROW(v3_msg_signinit_null)
{
  return c->f3->C_MessageSignInit(c->s, NULL, c->rsa_priv);
}
ROW(v3_msg_verifyinit_null)
{
  return c->f3->C_MessageVerifyInit(c->s, NULL, c->rsa_pub);
}
ROW(v3_msg_encrypt_len)
{
  return c->f3->C_EncryptMessage(c->s, NULL, 0, NULL, 0, buf16, 16, buf16, NULL);
}
ROW(v3_msg_encrypt_param)
{
  return c->f3->C_EncryptMessage(c->s, NULL, 12, NULL, 0, buf16, 16, buf16, &len16);
}
ROW(v3_msg_encnext_flags)
{
  return c->f3->C_EncryptMessageNext(c->s, NULL, 0, buf16, 16, buf16, &len16, 0x80UL);
}
ROW(v3_msg_decrypt_len)
{
  return c->f3->C_DecryptMessage(c->s, NULL, 0, NULL, 0, buf16, 16, buf16, NULL);
}
ROW(v3_msg_decbegin_aad)
{
  return c->f3->C_DecryptMessageBegin(c->s, NULL, 0, NULL, 8);
}
ROW(v3_msg_decnext_flags)
{
  return c->f3->C_DecryptMessageNext(c->s, NULL, 0, buf16, 16, buf16, &len16, 0x80UL);
}
ROW(v3_msg_sign_len)
{
  return c->f3->C_SignMessage(c->s, NULL, 0, buf16, 16, buf16, NULL);
}
ROW(v3_msg_signnext_data)
{
  return c->f3->C_SignMessageNext(c->s, NULL, 0, NULL, 16, NULL, NULL);
}
ROW(v3_msg_verify_sig)
{
  return c->f3->C_VerifyMessage(c->s, NULL, 0, buf16, 16, NULL, 64);
}
ROW(v3_msg_verifybegin_param)
{
  return c->f3->C_VerifyMessageBegin(c->s, NULL, 4);
}

/* Every message function, well formed, on a session handle h: the module has no message-based
 * mechanism, so each answers CKR_FUNCTION_NOT_SUPPORTED once initialised and h is valid. */
static CK_RV msg_call(struct ctx *c, int which, CK_SESSION_HANDLE h)
{
  CK_ULONG n = sizeof(buf16);
  CK_FUNCTION_LIST_3_0 *f = c->f3;
  switch (which) {
  case 0:
    return f->C_MessageEncryptInit(h, &m_aes_gcm, c->rsa_pub);
  case 1:
    return f->C_EncryptMessage(h, NULL, 0, NULL, 0, buf16, 16, buf16, &n);
  case 2:
    return f->C_EncryptMessageBegin(h, NULL, 0, NULL, 0);
  case 3:
    return f->C_EncryptMessageNext(h, NULL, 0, buf16, 16, buf16, &n, CKF_END_OF_MESSAGE);
  case 4:
    return f->C_MessageEncryptFinal(h);
  case 5:
    return f->C_MessageDecryptInit(h, &m_aes_gcm, c->rsa_priv);
  case 6:
    return f->C_DecryptMessage(h, NULL, 0, NULL, 0, buf16, 16, buf16, &n);
  case 7:
    return f->C_DecryptMessageBegin(h, NULL, 0, NULL, 0);
  case 8:
    return f->C_DecryptMessageNext(h, NULL, 0, buf16, 16, buf16, &n, 0);
  case 9:
    return f->C_MessageDecryptFinal(h);
  case 10:
    return f->C_MessageSignInit(h, &m_sha256_rsa, c->rsa_priv);
  case 11:
    return f->C_SignMessage(h, NULL, 0, buf16, 16, buf16, &n);
  case 12:
    return f->C_SignMessageBegin(h, NULL, 0);
  case 13:
    return f->C_SignMessageNext(h, NULL, 0, buf16, 16, NULL, NULL);
  case 14:
    return f->C_MessageSignFinal(h);
  case 15:
    return f->C_MessageVerifyInit(h, &m_sha256_rsa, c->rsa_pub);
  case 16:
    return f->C_VerifyMessage(h, NULL, 0, buf16, 16, buf16, 16);
  case 17:
    return f->C_VerifyMessageBegin(h, NULL, 0);
  case 18:
    return f->C_VerifyMessageNext(h, NULL, 0, buf16, 16, NULL, 0);
  default:
    return f->C_MessageVerifyFinal(h);
  }
}
static const char *const msg_names[] = {
    "C_MessageEncryptInit",  "C_EncryptMessage",      "C_EncryptMessageBegin",
    "C_EncryptMessageNext",  "C_MessageEncryptFinal", "C_MessageDecryptInit",
    "C_DecryptMessage",      "C_DecryptMessageBegin", "C_DecryptMessageNext",
    "C_MessageDecryptFinal", "C_MessageSignInit",     "C_SignMessage",
    "C_SignMessageBegin",    "C_SignMessageNext",     "C_MessageSignFinal",
    "C_MessageVerifyInit",   "C_VerifyMessage",       "C_VerifyMessageBegin",
    "C_VerifyMessageNext",   "C_MessageVerifyFinal",
};
#define N_MSG ((int)(sizeof(msg_names) / sizeof(msg_names[0])))

/* The message functions on h, each expected to answer `expect`. */
static void msg_rows(struct ctx *c, CK_SESSION_HANDLE h, const char *how, CK_RV expect)
{
  for (int i = 0; i < N_MSG; i++) {
    char what[96];
    CK_RV rv = msg_call(c, i, h);
    snprintf(what, sizeof(what), "%s %s", msg_names[i], how);
    t_check(rv == expect, "%-62s expect %s, got %s", what, rv_name(expect), rv_name(rv));
  }
}

#define R(fn, what, exp)                                                                           \
  {                                                                                                \
    what, exp, NO_RV, #exp, fn                                                                     \
  }
#define R2(fn, what, exp, alt)                                                                     \
  {                                                                                                \
    what, exp, alt, #exp " or " #alt, fn                                                           \
  }

static const struct row before_init[] = {
    R(r_getinfo, "C_GetInfo before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_slotlist, "C_GetSlotList before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_slotinfo, "C_GetSlotInfo before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_tokeninfo, "C_GetTokenInfo before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_mechlist, "C_GetMechanismList before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_opensession, "C_OpenSession before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_closesession, "C_CloseSession before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_closeall, "C_CloseAllSessions before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_signinit, "C_SignInit before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_findinit, "C_FindObjectsInit before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_random, "C_GenerateRandom before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_finalize, "C_Finalize before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_init_partial_mutex, "C_Initialize with only CreateMutex set", CKR_ARGUMENTS_BAD),
    R(v3_getinfo, "C_GetInfo (3.0 list) before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(v3_loginuser, "C_LoginUser before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(v3_cancel, "C_SessionCancel before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED),
    /* C_GetInterface* need no initialisation, as C_GetFunctionList. */
    R(v3_getinterface_null, "C_GetInterface(ppInterface NULL)", CKR_ARGUMENTS_BAD),
    R(v3_getinterface_name, "C_GetInterface(unknown name)", CKR_ARGUMENTS_BAD),
    R(v3_getinterface_version, "C_GetInterface(\"PKCS 11\" 3.1)", CKR_ARGUMENTS_BAD),
    R(v3_getinterface_forksafe, "C_GetInterface(CKF_INTERFACE_FORK_SAFE)", CKR_ARGUMENTS_BAD),
    R(v3_getinterfacelist_null, "C_GetInterfaceList(pulCount NULL)", CKR_ARGUMENTS_BAD),
    R(v3_getinterfacelist_small, "C_GetInterfaceList into 1 entry: too small, count 2",
      CKR_BUFFER_TOO_SMALL),
};

static const struct row initialised[] = {
    R(r_init_twice, "C_Initialize twice", CKR_CRYPTOKI_ALREADY_INITIALIZED),
    R(r_finalize_reserved, "C_Finalize with a non-NULL pReserved", CKR_ARGUMENTS_BAD),
    R(n_getinfo, "C_GetInfo(NULL)", CKR_ARGUMENTS_BAD),
    R(n_slotlist, "C_GetSlotList(pulCount NULL)", CKR_ARGUMENTS_BAD),
    R(n_slotinfo, "C_GetSlotInfo(pInfo NULL)", CKR_ARGUMENTS_BAD),
    R(n_tokeninfo, "C_GetTokenInfo(pInfo NULL)", CKR_ARGUMENTS_BAD),
    R(n_mechlist, "C_GetMechanismList(pulCount NULL)", CKR_ARGUMENTS_BAD),
    R(n_mechinfo, "C_GetMechanismInfo(pInfo NULL)", CKR_ARGUMENTS_BAD),
    R(n_opensession, "C_OpenSession(phSession NULL)", CKR_ARGUMENTS_BAD),
    R(n_sessioninfo, "C_GetSessionInfo(pInfo NULL)", CKR_ARGUMENTS_BAD),
    R(n_findinit, "C_FindObjectsInit(NULL template, count 1)", CKR_ARGUMENTS_BAD),
    R(n_findobjects, "C_FindObjects(phObject NULL)", CKR_ARGUMENTS_BAD),
    R(n_findcount, "C_FindObjects(pulObjectCount NULL)", CKR_ARGUMENTS_BAD),
    R(n_getattr, "C_GetAttributeValue(NULL template, count 1)", CKR_ARGUMENTS_BAD),
    R(n_objsize, "C_GetObjectSize(pulSize NULL)", CKR_ARGUMENTS_BAD),
    R(n_signinit, "C_SignInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_sign_len, "C_Sign(pulSignatureLen NULL)", CKR_ARGUMENTS_BAD),
    R(n_sign_data, "C_Sign(NULL data, length 20)", CKR_ARGUMENTS_BAD),
    R(n_verifyinit, "C_VerifyInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_encryptinit, "C_EncryptInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_decryptinit, "C_DecryptInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_digestinit, "C_DigestInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_digest_len, "C_Digest(pulDigestLen NULL)", CKR_ARGUMENTS_BAD),
    R(n_genkey_out, "C_GenerateKey(phKey NULL)", CKR_ARGUMENTS_BAD),
    R(n_genkey_mech, "C_GenerateKey(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(n_random, "C_GenerateRandom(NULL buffer, 16)", CKR_ARGUMENTS_BAD),
    R(n_wrap_len, "C_WrapKey(pulWrappedKeyLen NULL)", CKR_ARGUMENTS_BAD),
    R(n_login_pin, "C_Login(NULL PIN, length 4)", CKR_ARGUMENTS_BAD),
    R(s_slotinfo, "C_GetSlotInfo(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_tokeninfo, "C_GetTokenInfo(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_mechlist, "C_GetMechanismList(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_mechinfo, "C_GetMechanismInfo(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_opensession, "C_OpenSession(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_closeall, "C_CloseAllSessions(invalid slot)", CKR_SLOT_ID_INVALID),
    R(s_parallel, "C_OpenSession without CKF_SERIAL_SESSION", CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    R(h_close, "C_CloseSession(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_info, "C_GetSessionInfo(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_login, "C_Login(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_logout, "C_Logout(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_findinit, "C_FindObjectsInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_find, "C_FindObjects(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_findfinal, "C_FindObjectsFinal(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_getattr, "C_GetAttributeValue(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_destroy, "C_DestroyObject(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_signinit, "C_SignInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_sign, "C_Sign(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_verifyinit, "C_VerifyInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_encryptinit, "C_EncryptInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_decryptinit, "C_DecryptInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_digestinit, "C_DigestInit(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_genkey, "C_GenerateKey(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_random, "C_GenerateRandom(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_unwrap, "C_UnwrapKey(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(h_closed, "C_GetSessionInfo(closed session)", CKR_SESSION_HANDLE_INVALID),
    R(o_getattr, "C_GetAttributeValue(invalid object)", CKR_OBJECT_HANDLE_INVALID),
    R(o_size, "C_GetObjectSize(invalid object)", CKR_OBJECT_HANDLE_INVALID),
    R(o_destroy, "C_DestroyObject(invalid object)", CKR_OBJECT_HANDLE_INVALID),
    R(o_setattr, "C_SetAttributeValue(invalid object)", CKR_OBJECT_HANDLE_INVALID),
    R(o_signinit, "C_SignInit(invalid key)", CKR_KEY_HANDLE_INVALID),
    R(o_verifyinit, "C_VerifyInit(invalid key)", CKR_KEY_HANDLE_INVALID),
    R(o_encryptinit, "C_EncryptInit(invalid key)", CKR_KEY_HANDLE_INVALID),
    R(o_decryptinit, "C_DecryptInit(invalid key)", CKR_KEY_HANDLE_INVALID),
    R(o_wrap_wrapping, "C_WrapKey(invalid wrapping key)", CKR_WRAPPING_KEY_HANDLE_INVALID),
    R(o_wrap_key, "C_WrapKey(invalid key to wrap)", CKR_KEY_HANDLE_INVALID),
    R(o_unwrap, "C_UnwrapKey(invalid unwrapping key)", CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    R(w_sign, "C_Sign without C_SignInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_signupdate, "C_SignUpdate without C_SignInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_signfinal, "C_SignFinal without C_SignInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_verify, "C_Verify without C_VerifyInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_verifyfinal, "C_VerifyFinal without C_VerifyInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_encrypt, "C_Encrypt without C_EncryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_encryptupdate, "C_EncryptUpdate without C_EncryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_encryptfinal, "C_EncryptFinal without C_EncryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_decrypt, "C_Decrypt without C_DecryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_decryptupdate, "C_DecryptUpdate without C_DecryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_decryptfinal, "C_DecryptFinal without C_DecryptInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_digest, "C_Digest without C_DigestInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_digestupdate, "C_DigestUpdate without C_DigestInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_digestfinal, "C_DigestFinal without C_DigestInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_find, "C_FindObjects without C_FindObjectsInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_findfinal, "C_FindObjectsFinal without C_FindObjectsInit", CKR_OPERATION_NOT_INITIALIZED),
    R(w_signinit_twice, "C_SignInit twice", CKR_OPERATION_ACTIVE),
    R(w_verifyinit_twice, "C_VerifyInit twice", CKR_OPERATION_ACTIVE),
    R(w_encryptinit_twice, "C_EncryptInit twice", CKR_OPERATION_ACTIVE),
    R(w_decryptinit_twice, "C_DecryptInit twice", CKR_OPERATION_ACTIVE),
    R(w_digestinit_twice, "C_DigestInit twice", CKR_OPERATION_ACTIVE),
    R(w_findinit_twice, "C_FindObjectsInit twice", CKR_OPERATION_ACTIVE),
    R(w_sign_after_done, "C_Sign after a completed C_Sign", CKR_OPERATION_NOT_INITIALIZED),
    R(w_sign_after_failure, "C_SignFinal after a failed C_Sign", CKR_OPERATION_NOT_INITIALIZED),
    R(w_digest_after_failure, "C_DigestFinal after a failed C_Digest",
      CKR_OPERATION_NOT_INITIALIZED),
    R(k_ecdsa_rsa, "C_SignInit(CKM_ECDSA, RSA key)", CKR_KEY_TYPE_INCONSISTENT),
    R(k_rsa_ec, "C_SignInit(CKM_SHA256_RSA_PKCS, EC key)", CKR_KEY_TYPE_INCONSISTENT),
    R(k_decrypt_ec, "C_DecryptInit(CKM_RSA_PKCS, EC key)", CKR_KEY_TYPE_INCONSISTENT),
    R(k_gcm_rsa, "C_EncryptInit(CKM_AES_GCM, RSA public key)", CKR_KEY_TYPE_INCONSISTENT),
    R(k_ecdsa_aes, "C_SignInit(CKM_ECDSA, session AES key)", CKR_KEY_TYPE_INCONSISTENT),
    R(u_sign_pub, "C_SignInit with a public key (CKA_SIGN false)", CKR_KEY_FUNCTION_NOT_PERMITTED),
    R(u_verify_priv_signonly, "C_DecryptInit with a key whose key_ops lack decrypt",
      CKR_KEY_FUNCTION_NOT_PERMITTED),
    R(u_unwrap_signonly, "C_UnwrapKey with a key whose key_ops lack unwrapKey",
      CKR_KEY_FUNCTION_NOT_PERMITTED),
    R(u_encrypt_priv, "C_EncryptInit with a private key (CKA_ENCRYPT false)",
      CKR_KEY_FUNCTION_NOT_PERMITTED),
    R(m_signinit, "C_SignInit(unknown mechanism)", CKR_MECHANISM_INVALID),
    R(m_digestinit, "C_DigestInit(unknown mechanism)", CKR_MECHANISM_INVALID),
    R(m_decryptinit, "C_DecryptInit(unknown mechanism)", CKR_MECHANISM_INVALID),
    R(m_genkey, "C_GenerateKey(unknown mechanism)", CKR_MECHANISM_INVALID),
    R(m_mechinfo, "C_GetMechanismInfo(unknown mechanism)", CKR_MECHANISM_INVALID),
    R(m_oaep_params, "C_DecryptInit(CKM_RSA_PKCS_OAEP without parameters)",
      CKR_MECHANISM_PARAM_INVALID),
    R(b_sign, "C_Sign RSA into 1 byte: too small, needed length, then succeeds",
      CKR_BUFFER_TOO_SMALL),
    R(b_sign_query, "C_Sign ECDSA with NULL output: length 64, then succeeds", CKR_OK),
    R(b_digest, "C_Digest SHA-256 into 8 bytes: too small, 32, then succeeds",
      CKR_BUFFER_TOO_SMALL),
    R(b_encrypt_gcm, "C_Encrypt AES-GCM into 4 bytes: too small, then succeeds",
      CKR_BUFFER_TOO_SMALL),
    R(b_decrypt_rsa, "C_Decrypt RSA into 1 byte: too small, then succeeds", CKR_BUFFER_TOO_SMALL),
    R(b_getattr, "C_GetAttributeValue CKA_MODULUS into 4 bytes", CKR_BUFFER_TOO_SMALL),
    R(b_mechlist, "C_GetMechanismList into 1 entry: too small, full count", CKR_BUFFER_TOO_SMALL),
    R(b_slotlist, "C_GetSlotList with count 0 and a buffer: too small, full count",
      CKR_BUFFER_TOO_SMALL),
    R(b_wrap, "C_WrapKey RSA-OAEP into 8 bytes: too small, modulus length", CKR_BUFFER_TOO_SMALL),
    R(v3_getinfo_null, "C_GetInfo (3.0 list)(NULL)", CKR_ARGUMENTS_BAD),
    R(v3_loginuser_pin, "C_LoginUser(NULL PIN, length 4)", CKR_ARGUMENTS_BAD),
    R(v3_loginuser_name, "C_LoginUser(NULL user name, length 5)", CKR_ARGUMENTS_BAD),
    R(v3_loginuser_session, "C_LoginUser(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(v3_loginuser_type, "C_LoginUser(user type 7)", CKR_USER_TYPE_INVALID),
    R(v3_loginuser_twice, "C_LoginUser twice", CKR_USER_ALREADY_LOGGED_IN),
    R(v3_cancel_session, "C_SessionCancel(invalid session)", CKR_SESSION_HANDLE_INVALID),
    R(v3_cancel_hw, "C_SessionCancel(CKF_SIGN | CKF_HW: not an operation)", CKR_ARGUMENTS_BAD),
    R(v3_cancel_unknown, "C_SessionCancel(undefined flag bit)", CKR_ARGUMENTS_BAD),
    R(v3_cancel_bad_keeps, "C_SessionCancel refused: the sign operation stays active",
      CKR_ARGUMENTS_BAD),
    R(v3_cancel_none_active, "C_SessionCancel of operations not active", CKR_OK),
    R(v3_cancel_then_sign, "C_SessionCancel(CKF_SIGN): C_Sign not initialised, digest stays",
      CKR_OK),
    R(v3_cancel_find, "C_SessionCancel(CKF_FIND_OBJECTS): C_FindObjects not initialised", CKR_OK),
    R(v3_msg_encinit_null, "C_MessageEncryptInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(v3_msg_decinit_null, "C_MessageDecryptInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(v3_msg_signinit_null, "C_MessageSignInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(v3_msg_verifyinit_null, "C_MessageVerifyInit(NULL mechanism)", CKR_ARGUMENTS_BAD),
    R(v3_msg_encrypt_len, "C_EncryptMessage(pulCiphertextLen NULL)", CKR_ARGUMENTS_BAD),
    R(v3_msg_encrypt_param, "C_EncryptMessage(NULL parameter, length 12)", CKR_ARGUMENTS_BAD),
    R(v3_msg_encnext_flags, "C_EncryptMessageNext(unknown flag)", CKR_ARGUMENTS_BAD),
    R(v3_msg_decrypt_len, "C_DecryptMessage(pulPlaintextLen NULL)", CKR_ARGUMENTS_BAD),
    R(v3_msg_decbegin_aad, "C_DecryptMessageBegin(NULL associated data, length 8)",
      CKR_ARGUMENTS_BAD),
    R(v3_msg_decnext_flags, "C_DecryptMessageNext(unknown flag)", CKR_ARGUMENTS_BAD),
    R(v3_msg_sign_len, "C_SignMessage(pulSignatureLen NULL)", CKR_ARGUMENTS_BAD),
    R(v3_msg_signnext_data, "C_SignMessageNext(NULL data, length 16)", CKR_ARGUMENTS_BAD),
    R(v3_msg_verify_sig, "C_VerifyMessage(NULL signature, length 64)", CKR_ARGUMENTS_BAD),
    R(v3_msg_verifybegin_param, "C_VerifyMessageBegin(NULL parameter, length 4)",
      CKR_ARGUMENTS_BAD),
};

static const struct row after_finalize[] = {
    R(r_getinfo, "C_GetInfo after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_slotlist, "C_GetSlotList after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_opensession, "C_OpenSession after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_closesession, "C_CloseSession (old session) after C_Finalize",
      CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_signinit, "C_SignInit (old session) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_random, "C_GenerateRandom (old session) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(r_finalize, "C_Finalize after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(v3_getinfo, "C_GetInfo (3.0 list) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(v3_loginuser, "C_LoginUser (old session) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
    R(v3_cancel, "C_SessionCancel (old session) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED),
};

static void run_row(struct ctx *c, const struct row *r)
{
  CK_RV rv;
  c->extra_ok = 1;
  rv = r->fn(c);
  t_check((rv == r->expect || (r->alt != NO_RV && rv == r->alt)) && c->extra_ok,
          "%-62s expect %s, got %s%s", r->what, r->expect_name, rv_name(rv),
          c->extra_ok ? "" : " (length/result check failed)");
}

static CK_OBJECT_HANDLE find_key(struct ctx *c, CK_OBJECT_CLASS cls, const char *label)
{
  struct t_p11 p = {NULL, c->f, c->slot, c->s};
  CK_OBJECT_HANDLE h = t_find(&p, cls, label);
  if (h == CK_INVALID_HANDLE) {
    fprintf(stderr, "FATAL: no %s object labelled %s\n",
            cls == CKO_PRIVATE_KEY ? "private" : "public", label);
    exit(1);
  }
  return h;
}

int main(int argc, char **argv)
{
  struct ctx c;
  CK_C_GetFunctionList gfl;
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16, bits = 0;
  CK_ATTRIBUTE a = {CKA_MODULUS_BITS, &bits, sizeof(bits)};
  void *dl;
  size_t i;
  CK_RV rv;

  if (argc != 5) {
    fprintf(stderr, "usage: %s MODULE RSA_LABEL EC_LABEL SIGNONLY_LABEL\n", argv[0]);
    return 2;
  }
  memset(&c, 0, sizeof(c));
  dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    fprintf(stderr, "FATAL: dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  *(void **)(&gfl) = dlsym(dl, "C_GetFunctionList");
  if (!gfl || gfl(&c.f) != CKR_OK || !c.f) {
    fprintf(stderr, "FATAL: C_GetFunctionList\n");
    return 1;
  }
  rv = gfl(NULL);
  t_check(rv == CKR_ARGUMENTS_BAD, "%-62s expect CKR_ARGUMENTS_BAD, got %s",
          "C_GetFunctionList(NULL)", rv_name(rv));
  *(void **)(&c.get_interface) = dlsym(dl, "C_GetInterface");
  *(void **)(&c.get_interface_list) = dlsym(dl, "C_GetInterfaceList");
  {
    CK_VERSION v30 = {3, 0};
    CK_INTERFACE_PTR ifc = NULL;
    if (!c.get_interface || !c.get_interface_list ||
        c.get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ifc, 0) != CKR_OK || !ifc) {
      fprintf(stderr, "FATAL: C_GetInterface(\"PKCS 11\", 3.0)\n");
      return 1;
    }
    c.f3 = ifc->pFunctionList;
  }

  /* Slot 0 and session 1 are plausible handles a confused caller would pass. */
  c.slot = 0;
  c.s = 1;
  t_note("phase: before C_Initialize");
  for (i = 0; i < sizeof(before_init) / sizeof(before_init[0]); i++)
    run_row(&c, &before_init[i]);
  msg_rows(&c, c.s, "before C_Initialize", CKR_CRYPTOKI_NOT_INITIALIZED);

  rv = c.f->C_Initialize(NULL);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_Initialize: %s\n", rv_name(rv));
    return 1;
  }
  rv = c.f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK || n == 0) {
    fprintf(stderr, "FATAL: C_GetSlotList: %s, %lu slots\n", rv_name(rv), (unsigned long)n);
    return 1;
  }
  c.slot = slots[0];
  rv = c.f->C_OpenSession(c.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c.s);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_OpenSession: %s\n", rv_name(rv));
    return 1;
  }
  c.rsa_priv = find_key(&c, CKO_PRIVATE_KEY, argv[2]);
  c.rsa_pub = find_key(&c, CKO_PUBLIC_KEY, argv[2]);
  c.ec_priv = find_key(&c, CKO_PRIVATE_KEY, argv[3]);
  c.signonly_priv = find_key(&c, CKO_PRIVATE_KEY, argv[4]);
  if (c.f->C_GetAttributeValue(c.s, c.rsa_pub, &a, 1) != CKR_OK || bits < 1024) {
    fprintf(stderr, "FATAL: CKA_MODULUS_BITS of %s\n", argv[2]);
    return 1;
  }
  c.rsa_bytes = bits / 8;

  t_note("phase: initialised (each row in a fresh session)");
  for (i = 0; i < sizeof(initialised) / sizeof(initialised[0]); i++) {
    CK_SESSION_HANDLE s;
    rv = c.f->C_OpenSession(c.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
      t_check(0, "%s: C_OpenSession for the row: %s", initialised[i].what, rv_name(rv));
      continue;
    }
    c.s = s;
    run_row(&c, &initialised[i]);
    c.f->C_CloseSession(s); /* the row may have closed it already: the result does not matter */
  }
  rv = c.f->C_OpenSession(c.slot, CKF_SERIAL_SESSION, NULL, NULL, &c.s);
  t_check(rv == CKR_OK, "a session for the message functions: %s", rv_name(rv));
  msg_rows(&c, BAD_HANDLE, "(invalid session)", CKR_SESSION_HANDLE_INVALID);
  msg_rows(&c, c.s, "(no message-based mechanism)", CKR_FUNCTION_NOT_SUPPORTED);
  c.f->C_CloseSession(c.s);

  /* The last session stays open on purpose: its handle must be refused after C_Finalize. */
  rv = c.f->C_OpenSession(c.slot, CKF_SERIAL_SESSION, NULL, NULL, &c.s);
  t_check(rv == CKR_OK, "a session open across C_Finalize: %s", rv_name(rv));
  rv = c.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "C_Finalize: %s", rv_name(rv));
  t_note("phase: after C_Finalize");
  for (i = 0; i < sizeof(after_finalize) / sizeof(after_finalize[0]); i++)
    run_row(&c, &after_finalize[i]);
  msg_rows(&c, c.s, "(old session) after C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED);

  /* And the module can be initialised again after all this. */
  rv = c.f->C_Initialize(NULL);
  t_check(rv == CKR_OK, "C_Initialize again after the misuse: %s", rv_name(rv));
  if (rv == CKR_OK) {
    n = 16;
    rv = c.f->C_GetSlotList(CK_TRUE, slots, &n);
    t_check(rv == CKR_OK && n > 0, "C_GetSlotList after re-initialisation: %s, %lu slots",
            rv_name(rv), (unsigned long)n);
    c.f->C_Finalize(NULL);
  }
  dlclose(dl);
  return t_finish("misuse");
}
