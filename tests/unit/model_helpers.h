/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the model/surface unit tests (which run against fake_kv.c). */
#ifndef AKV_TEST_MODEL_HELPERS_H
#define AKV_TEST_MODEL_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/akv.h"
#include "fake_kv.h"

/* A one-slot configuration on the fake vault; extra is more JSON members of the slot. */
#define T_CFG(extra) "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\"" extra "}]}"

static int64_t t_clock_now = 1800000000;
static inline int64_t t_clock(void)
{
  return t_clock_now;
}

static inline CK_RV t_init(const char *json)
{
  CK_C_INITIALIZE_ARGS a;
  memset(&a, 0, sizeof(a));
  a.flags = CKF_OS_LOCKING_OK;
  a.pReserved = (void *)json;
  akv_set_clock(t_clock);
  return C_Initialize(&a);
}

static inline CK_SESSION_HANDLE t_open(CK_FLAGS extra)
{
  CK_SESSION_HANDLE h = 0;
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION | extra, NULL, NULL, &h), CKR_OK);
  assert_true(h != 0);
  return h;
}

/* Runs a whole search and returns the number of handles found (up to max). */
static inline CK_ULONG t_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_HANDLE *out, CK_ULONG max)
{
  CK_ULONG got = 0, chunk;
  assert_int_equal(C_FindObjectsInit(s, t, n), CKR_OK);
  for (;;) {
    chunk = 0;
    assert_int_equal(C_FindObjects(s, out + got, max - got, &chunk), CKR_OK);
    got += chunk;
    if (chunk == 0 || got == max)
      break;
  }
  assert_int_equal(C_FindObjectsFinal(s), CKR_OK);
  return got;
}

/* The one object with this class and label (fails the test otherwise). */
static inline CK_OBJECT_HANDLE t_find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                          const char *label)
{
  CK_ATTRIBUTE t[2];
  CK_OBJECT_HANDLE h[4];
  t[0].type = CKA_CLASS;
  t[0].pValue = &cls;
  t[0].ulValueLen = sizeof(cls);
  t[1].type = CKA_LABEL;
  t[1].pValue = (void *)label;
  t[1].ulValueLen = strlen(label);
  assert_int_equal(t_find(s, t, 2, h, 4), 1);
  return h[0];
}

/* Reads one attribute into buf; returns its length (CK_UNAVAILABLE_INFORMATION on failure). */
static inline CK_ULONG t_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                              void *buf, CK_ULONG len)
{
  CK_ATTRIBUTE a;
  a.type = type;
  a.pValue = buf;
  a.ulValueLen = len;
  (void)C_GetAttributeValue(s, o, &a, 1);
  return a.ulValueLen;
}

static inline CK_ULONG t_attr_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
  CK_ULONG v = 0xdeadbeef;
  assert_int_equal(t_attr(s, o, type, &v, sizeof(v)), sizeof(v));
  return v;
}

static inline CK_BBOOL t_attr_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
  CK_BBOOL v = 0x55;
  assert_int_equal(t_attr(s, o, type, &v, sizeof(v)), sizeof(v));
  return v;
}

#endif
