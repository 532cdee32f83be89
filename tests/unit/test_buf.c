/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"

static void test_append_and_cap(void **state)
{
  struct akv_buf b;
  char big[100];
  (void)state;
  akv_buf_init(&b, 10);
  assert_int_equal(akv_buf_append_str(&b, "hello"), AKV_BUF_OK);
  assert_int_equal(b.len, 5);
  assert_string_equal((char *)b.data, "hello");
  assert_int_equal(akv_buf_append_str(&b, "world"), AKV_BUF_OK);
  assert_int_equal(b.len, 10);
  assert_int_equal(akv_buf_append_str(&b, "!"), AKV_BUF_TOO_BIG);
  assert_int_equal(b.len, 10); /* unchanged on failure */
  memset(big, 'x', sizeof(big));
  assert_int_equal(akv_buf_append(&b, big, SIZE_MAX), AKV_BUF_TOO_BIG);
  akv_buf_free(&b);
  assert_null(b.data);
}

static void test_printf_take(void **state)
{
  struct akv_buf b;
  char *s;
  (void)state;
  akv_buf_init(&b, 0);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(akv_buf_printf(&b, "%d,", i), AKV_BUF_OK);
  assert_true(b.len > 3000);
  assert_memory_equal(b.data, "0,1,2,", 6);
  s = akv_buf_take(&b);
  assert_non_null(s);
  assert_int_equal(strlen(s), 3890);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  free(s);
  akv_buf_init(&b, 8);
  assert_int_equal(akv_buf_printf(&b, "%s", "123456789"), AKV_BUF_TOO_BIG);
  s = akv_buf_take(&b); /* empty buffer gives an empty string */
  assert_string_equal(s, "");
  free(s);
}

static void test_reset(void **state)
{
  struct akv_buf b;
  (void)state;
  akv_buf_init(&b, 64);
  akv_buf_append_str(&b, "secret");
  akv_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal((char *)b.data, "");
  assert_int_equal(akv_buf_append_str(&b, "ok"), AKV_BUF_OK);
  assert_string_equal((char *)b.data, "ok");
  akv_buf_free(&b);
  akv_buf_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_and_cap),
      cmocka_unit_test(test_printf_take),
      cmocka_unit_test(test_reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
