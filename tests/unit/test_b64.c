/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

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

/* The table-driven coder against OpenSSL's block coder, byte for byte, over many lengths. */
static void test_against_openssl(void **state)
{
  unsigned char buf[300], ref[420];
  (void)state;
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (unsigned char)(i * 197 + 11);
  for (size_t len = 0; len <= sizeof(buf); len++) {
    char *s = akv_b64_encode(buf, len);
    unsigned char *d = NULL;
    size_t n = 0;
    int rl = len ? EVP_EncodeBlock(ref, buf, (int)len) : 0;
    ref[rl] = '\0';
    assert_non_null(s);
    assert_string_equal(s, (const char *)ref);
    assert_int_equal(akv_b64_decode(s, (size_t)-1, &d, &n), 0);
    assert_int_equal(n, len);
    if (len)
      assert_memory_equal(d, buf, len);
    free(d);
    free(s);
  }
}

/* Every byte value in every position of a 4-character group: accepted exactly when it is in the
 * alphabet (and, for the last characters, when it leaves no stray bits). */
static void test_every_byte(void **state)
{
  (void)state;
  for (int url = 0; url < 2; url++) {
    const char *alpha = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int pos = 0; pos < 4; pos++) {
      for (int c = 1; c < 256; c++) {
        char t[5] = "QUJD";
        unsigned char *d = NULL;
        size_t n = 0;
        int in = strchr(alpha, c) != NULL;
        int rc;
        t[pos] = (char)c;
        rc = url ? akv_b64url_decode(t, 4, &d, &n) : akv_b64_decode(t, 4, &d, &n);
        assert_int_equal(rc, in ? 0 : -1);
        if (rc == 0) {
          char *back = url ? akv_b64url_encode(d, n) : akv_b64_encode(d, n);
          assert_string_equal(back, t);
          free(back);
        }
        free(d);
      }
    }
  }
}

/* Tails of 2 and 3 characters: decoding succeeds exactly for the canonical ones (those that the
 * encoder gives back unchanged). */
static void test_canonical_tails(void **state)
{
  const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t accepted2 = 0, accepted3 = 0;
  (void)state;
  for (int a = 0; a < 64; a++) {
    for (int b = 0; b < 64; b++) {
      for (int c = -1; c < 64; c++) {
        char t[8] = "Zm9v";
        unsigned char *d = NULL;
        size_t n = 0;
        t[4] = alpha[a];
        t[5] = alpha[b];
        t[6] = c >= 0 ? alpha[c] : '\0';
        if (akv_b64url_decode(t, (size_t)-1, &d, &n) == 0) {
          char *back = akv_b64url_encode(d, n);
          assert_string_equal(back, t);
          free(back);
          if (c < 0)
            accepted2++;
          else
            accepted3++;
        }
        free(d);
      }
    }
  }
  assert_int_equal(accepted2, 64 * 4);       /* second character: low 4 bits zero */
  assert_int_equal(accepted3, 64 * 64 * 16); /* third character: low 2 bits zero */
}

static void test_encode_to(void **state)
{
  char out[8];
  (void)state;
  assert_int_equal(akv_b64url_encode_to((const unsigned char *)"foob", 4, out, sizeof(out)), 6);
  assert_string_equal(out, "Zm9vYg");
  /* 6 characters and the NUL need 7 bytes. */
  assert_int_equal(akv_b64url_encode_to((const unsigned char *)"foob", 4, out, 7), 6);
  assert_int_equal(akv_b64url_encode_to((const unsigned char *)"foob", 4, out, 6), 0);
  /* 8 characters do not fit 8 bytes with the NUL. */
  assert_int_equal(akv_b64url_encode_to((const unsigned char *)"foobar", 6, out, sizeof(out)), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),      cmocka_unit_test(test_url_alphabet),
      cmocka_unit_test(test_invalid),      cmocka_unit_test(test_explicit_length),
      cmocka_unit_test(test_large_random), cmocka_unit_test(test_against_openssl),
      cmocka_unit_test(test_every_byte),   cmocka_unit_test(test_canonical_tails),
      cmocka_unit_test(test_encode_to),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
