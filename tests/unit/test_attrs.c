/* SPDX-License-Identifier: Apache-2.0 */
/* src/store/attrs.c: attribute arrays, C_GetAttributeValue copy-out rules, template lookups. */
#include "store/attrs.h"
#include "model_helpers.h"

static void test_builder(void **state)
{
  struct akv_attrs_builder b;
  CK_ATTRIBUTE *a = NULL;
  const CK_ATTRIBUTE *f;
  size_t n = 0;
  CK_ULONG mechs[2] = {CKM_ECDSA, CKM_ECDSA_SHA256};
  (void)state;

  memset(&b, 0, sizeof(b));
  akv_attrs_add_ulong(&b, CKA_CLASS, CKO_PUBLIC_KEY);
  akv_attrs_add_str(&b, CKA_LABEL, "first");
  akv_attrs_add_bool(&b, CKA_TOKEN, 7);             /* normalised to CK_TRUE */
  akv_attrs_add_str(&b, CKA_LABEL, "second");       /* replaces */
  akv_attrs_add_str(&b, CKA_APPLICATION, NULL);     /* empty */
  akv_attrs_add_date(&b, CKA_START_DATE, 0);        /* empty */
  akv_attrs_add_date(&b, CKA_END_DATE, 1700000000); /* 2023-11-14 */
  akv_attrs_add_ulongs(&b, CKA_ALLOWED_MECHANISMS, mechs, 2);
  assert_int_equal(akv_attrs_finish(&b, &a, &n), CKR_OK);
  assert_int_equal(n, 7);
  /* Sorted by type for lookups. */
  for (size_t i = 1; i < n; i++)
    assert_true(a[i - 1].type < a[i].type);
  f = akv_attrs_find(a, n, CKA_LABEL);
  assert_non_null(f);
  assert_int_equal(f->ulValueLen, 6);
  assert_memory_equal(f->pValue, "second", 6);
  f = akv_attrs_find(a, n, CKA_TOKEN);
  assert_int_equal(*(CK_BBOOL *)f->pValue, CK_TRUE);
  f = akv_attrs_find(a, n, CKA_APPLICATION);
  assert_int_equal(f->ulValueLen, 0);
  assert_non_null(f->pValue);
  assert_int_equal(akv_attrs_find(a, n, CKA_START_DATE)->ulValueLen, 0);
  f = akv_attrs_find(a, n, CKA_END_DATE);
  assert_int_equal(f->ulValueLen, sizeof(CK_DATE));
  assert_memory_equal(f->pValue, "20231114", 8);
  f = akv_attrs_find(a, n, CKA_ALLOWED_MECHANISMS);
  assert_int_equal(f->ulValueLen, 2 * sizeof(CK_ULONG));
  assert_null(akv_attrs_find(a, n, CKA_MODULUS));
  assert_null(akv_attrs_find(NULL, 0, CKA_MODULUS));
  akv_attrs_free(a, n);
  akv_attrs_free(NULL, 0);
}

static void test_copy_out(void **state)
{
  CK_ATTRIBUTE a;
  unsigned char buf[8];
  (void)state;

  /* Length query. */
  a.type = CKA_LABEL;
  a.pValue = NULL;
  a.ulValueLen = 0;
  assert_int_equal(akv_attrs_copy_out(&a, "abcdef", 6), CKR_OK);
  assert_int_equal(a.ulValueLen, 6);
  /* Too small: unavailable. */
  a.pValue = buf;
  a.ulValueLen = 5;
  assert_int_equal(akv_attrs_copy_out(&a, "abcdef", 6), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
  /* Exact and larger buffers. */
  a.ulValueLen = 6;
  assert_int_equal(akv_attrs_copy_out(&a, "abcdef", 6), CKR_OK);
  assert_memory_equal(buf, "abcdef", 6);
  a.ulValueLen = sizeof(buf);
  assert_int_equal(akv_attrs_copy_out(&a, "xy", 2), CKR_OK);
  assert_int_equal(a.ulValueLen, 2);
  assert_int_equal(akv_attrs_unavailable(&a, CKR_ATTRIBUTE_SENSITIVE), CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

static void test_merge(void **state)
{
  (void)state;
  assert_int_equal(akv_attrs_rv_merge(CKR_OK, CKR_OK), CKR_OK);
  assert_int_equal(akv_attrs_rv_merge(CKR_OK, CKR_BUFFER_TOO_SMALL), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(akv_attrs_rv_merge(CKR_BUFFER_TOO_SMALL, CKR_ATTRIBUTE_TYPE_INVALID),
                   CKR_ATTRIBUTE_TYPE_INVALID);
  assert_int_equal(akv_attrs_rv_merge(CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID),
                   CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(akv_attrs_rv_merge(CKR_ATTRIBUTE_SENSITIVE, CKR_DEVICE_ERROR), CKR_DEVICE_ERROR);
  assert_int_equal(akv_attrs_rv_merge(CKR_DEVICE_ERROR, CKR_OK), CKR_DEVICE_ERROR);
}

static void test_sensitive(void **state)
{
  (void)state;
  assert_true(akv_attrs_is_sensitive(CKO_PRIVATE_KEY, CKA_PRIVATE_EXPONENT));
  assert_true(akv_attrs_is_sensitive(CKO_PRIVATE_KEY, CKA_PRIME_1));
  assert_true(akv_attrs_is_sensitive(CKO_PRIVATE_KEY, CKA_COEFFICIENT));
  assert_true(akv_attrs_is_sensitive(CKO_PRIVATE_KEY, CKA_VALUE));
  assert_false(akv_attrs_is_sensitive(CKO_PRIVATE_KEY, CKA_MODULUS));
  assert_true(akv_attrs_is_sensitive(CKO_SECRET_KEY, CKA_VALUE));
  assert_false(akv_attrs_is_sensitive(CKO_PUBLIC_KEY, CKA_VALUE));
  assert_false(akv_attrs_is_sensitive(CKO_CERTIFICATE, CKA_VALUE));
  assert_false(akv_attrs_is_sensitive(CKO_DATA, CKA_VALUE));
}

static void test_template(void **state)
{
  CK_BBOOL t = CK_TRUE, f = CK_FALSE, bv = 9;
  CK_ULONG cls = CKO_SECRET_KEY, uv = 9;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_TOKEN, &t, sizeof(t)},     {CKA_TOKEN, &f, sizeof(f)},    /* the last occurrence wins */
      {CKA_CLASS, &cls, sizeof(cls)}, {CKA_SIGN, &cls, sizeof(cls)}, /* wrong size for a CK_BBOOL */
      {CKA_KEY_TYPE, &t, sizeof(t)},                                 /* wrong size for a CK_ULONG */
  };
  (void)state;

  assert_int_equal(akv_attrs_tmpl_bool(tmpl, 5, CKA_TOKEN, &bv), CKR_OK);
  assert_int_equal(bv, CK_FALSE);
  assert_int_equal(akv_attrs_tmpl_ulong(tmpl, 5, CKA_CLASS, &uv), CKR_OK);
  assert_int_equal(uv, CKO_SECRET_KEY);
  bv = 9;
  assert_int_equal(akv_attrs_tmpl_bool(tmpl, 5, CKA_ENCRYPT, &bv), CKR_OK); /* absent: untouched */
  assert_int_equal(bv, 9);
  assert_int_equal(akv_attrs_tmpl_bool(tmpl, 5, CKA_SIGN, &bv), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(akv_attrs_tmpl_ulong(tmpl, 5, CKA_KEY_TYPE, &uv), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_null(akv_attrs_tmpl_find(NULL, 0, CKA_CLASS));
  assert_ptr_equal(akv_attrs_tmpl_find(tmpl, 5, CKA_TOKEN), &tmpl[1]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builder),  cmocka_unit_test(test_copy_out),
      cmocka_unit_test(test_merge),    cmocka_unit_test(test_sensitive),
      cmocka_unit_test(test_template),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
