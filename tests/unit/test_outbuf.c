/* SPDX-License-Identifier: Apache-2.0 */
/* The length-query protocol (akv_outbuf_copy_out) and the bounded buffers of operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "token/op.h"

static void test_copy_out_length_query(void **state)
{
  const unsigned char src[5] = {1, 2, 3, 4, 5};
  CK_ULONG len = 0;
  (void)state;
  assert_int_equal(akv_outbuf_copy_out(src, sizeof(src), NULL, &len), CKR_OK);
  assert_int_equal(len, 5);
}

static void test_copy_out_too_small(void **state)
{
  const unsigned char src[5] = {1, 2, 3, 4, 5};
  unsigned char out[4] = {9, 9, 9, 9};
  CK_ULONG len = sizeof(out);
  (void)state;
  assert_int_equal(akv_outbuf_copy_out(src, sizeof(src), out, &len), CKR_BUFFER_TOO_SMALL);
  assert_int_equal(len, 5);
  assert_int_equal(out[0], 9); /* untouched */
}

static void test_copy_out_fits(void **state)
{
  const unsigned char src[5] = {1, 2, 3, 4, 5};
  unsigned char out[8] = {0};
  CK_ULONG len = sizeof(out);
  (void)state;
  assert_int_equal(akv_outbuf_copy_out(src, sizeof(src), out, &len), CKR_OK);
  assert_int_equal(len, 5);
  assert_memory_equal(out, src, 5);
  assert_int_equal(out[5], 0);
}

static void test_copy_out_empty(void **state)
{
  unsigned char out[1] = {7};
  CK_ULONG len = 1;
  (void)state;
  assert_int_equal(akv_outbuf_copy_out(NULL, 0, out, &len), CKR_OK);
  assert_int_equal(len, 0);
  assert_int_equal(out[0], 7);
}

static void test_outbuf_limit(void **state)
{
  struct akv_outbuf b = {NULL, 0, 0};
  unsigned char chunk[100];
  (void)state;
  memset(chunk, 0x42, sizeof(chunk));
  for (int i = 0; i < 10; i++)
    assert_int_equal(akv_outbuf_append(&b, chunk, sizeof(chunk), 1000), CKR_OK);
  assert_int_equal(b.len, 1000);
  assert_int_equal(akv_outbuf_append(&b, chunk, 1, 1000), CKR_DATA_LEN_RANGE);
  assert_int_equal(b.len, 1000);
  assert_int_equal(akv_outbuf_append(&b, chunk, 0, 1000), CKR_OK);
  assert_int_equal(akv_outbuf_append(&b, chunk, SIZE_MAX, SIZE_MAX - 1), CKR_DATA_LEN_RANGE);
  for (size_t i = 0; i < b.len; i++)
    assert_int_equal(b.data[i], 0x42);
  akv_outbuf_clear(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
}

static void test_outbuf_set_replaces(void **state)
{
  struct akv_outbuf b = {NULL, 0, 0};
  (void)state;
  assert_int_equal(akv_outbuf_set(&b, "hello world", 11), CKR_OK);
  assert_int_equal(akv_outbuf_set(&b, "bye", 3), CKR_OK);
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.data, "bye", 3);
  assert_int_equal(akv_outbuf_set(&b, NULL, 0), CKR_OK);
  assert_int_equal(b.len, 0);
  akv_outbuf_clear(&b);
  akv_outbuf_clear(&b); /* idempotent */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_copy_out_length_query), cmocka_unit_test(test_copy_out_too_small),
      cmocka_unit_test(test_copy_out_fits),         cmocka_unit_test(test_copy_out_empty),
      cmocka_unit_test(test_outbuf_limit),          cmocka_unit_test(test_outbuf_set_replaces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
