#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/b64.h"

static void check_roundtrip(const char *plain, const char *std, const char *url)
{
  char *e = akv_b64_encode((const unsigned char *)plain, strlen(plain));
  char *u = akv_b64url_encode((const unsigned char *)plain, strlen(plain));
  unsigned char *d = NULL;
  size_t n = 0;
  assert_string_equal(e, std);
  assert_string_equal(u, url);
  assert_int_equal(akv_b64_decode(std, (size_t)-1, &d, &n), 0);
  assert_int_equal(n, strlen(plain));
  assert_memory_equal(d, plain, n);
  free(d);
  assert_int_equal(akv_b64url_decode(url, (size_t)-1, &d, &n), 0);
  assert_int_equal(n, strlen(plain));
  assert_memory_equal(d, plain, n);
  free(d);
  free(e);
  free(u);
}

static void test_vectors(void **state)
{
  (void)state;
  check_roundtrip("", "", "");
  check_roundtrip("f", "Zg==", "Zg");
  check_roundtrip("fo", "Zm8=", "Zm8");
  check_roundtrip("foo", "Zm9v", "Zm9v");
  check_roundtrip("foob", "Zm9vYg==", "Zm9vYg");
  check_roundtrip("fooba", "Zm9vYmE=", "Zm9vYmE");
  check_roundtrip("foobar", "Zm9vYmFy", "Zm9vYmFy");
}

static void test_url_alphabet(void **state)
{
  const unsigned char bin[] = {0xfb, 0xff, 0xbf};
  char *u = akv_b64url_encode(bin, sizeof(bin));
  char *s = akv_b64_encode(bin, sizeof(bin));
  unsigned char *d = NULL;
  size_t n;
  (void)state;
  assert_string_equal(u, "-_-_");
  assert_string_equal(s, "+/+/");
  assert_int_equal(akv_b64url_decode("-_-_", (size_t)-1, &d, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(d, bin, 3);
  free(d);
  free(u);
  free(s);
}

static void test_invalid(void **state)
{
  static const char *const bad_url[] = {
      "Zm9v=", "Zm9v+", "Zm9v/", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zh", "Zm9=", "€€",
  };
  static const char *const bad_std[] = {
      "Zg", "Zg=", "Zm9v-_", "Zm9vYg=\n", "Zg===", "=Zg=", "Zh==", "Z===", "Zm9vYmFy====",
  };
  unsigned char *d = NULL;
  size_t n = 0;
  (void)state;
  for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++)
    assert_int_equal(akv_b64url_decode(bad_url[i], (size_t)-1, &d, &n), -1);
  for (size_t i = 0; i < sizeof(bad_std) / sizeof(bad_std[0]); i++)
    assert_int_equal(akv_b64_decode(bad_std[i], (size_t)-1, &d, &n), -1);
  assert_int_equal(akv_b64url_decode(NULL, 0, &d, &n), -1);
}

static void test_explicit_length(void **state)
{
  unsigned char *d = NULL;
  size_t n = 0;
  (void)state;
  /* Only the first 4 characters count: the rest of the buffer is not read. */
  assert_int_equal(akv_b64url_decode("Zm9vXXXX!!", 4, &d, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(d, "foo", 3);
  free(d);
}

static void test_large_random(void **state)
{
  unsigned char buf[1000];
  (void)state;
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (unsigned char)(i * 131 + 7);
  for (size_t len = 0; len < 40; len++) {
    char *u = akv_b64url_encode(buf, len);
    unsigned char *d = NULL;
    size_t n = 0;
    assert_non_null(u);
    assert_null(strchr(u, '='));
    assert_int_equal(akv_b64url_decode(u, (size_t)-1, &d, &n), 0);
    assert_int_equal(n, len);
    if (len)
      assert_memory_equal(d, buf, len);
    free(d);
    free(u);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_url_alphabet),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_explicit_length),
      cmocka_unit_test(test_large_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
