#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/json.h"

static void test_parse_whole(void **state)
{
  cJSON *d;
  (void)state;
  d = kv_json_parse("{\"a\":1}  \n", 10, "t");
  assert_non_null(d);
  cJSON_Delete(d);
  assert_null(kv_json_parse("{\"a\":1}x", 8, "t"));
  assert_null(kv_json_parse("[1]", 3, "t"));
  assert_null(kv_json_parse("", 0, "t"));
  assert_null(kv_json_parse("{\"a\":", 5, "t"));
  /* Only len bytes are parsed. */
  d = kv_json_parse("{\"a\":1}garbage", 7, "t");
  assert_non_null(d);
  cJSON_Delete(d);
}

static void test_getters(void **state)
{
  const char *txt = "{\"s\":\"abc\",\"n\":12,\"b\":true,\"z\":null,\"u\":\"AQID\",\"bad\":\"A+\"}";
  cJSON *d = kv_json_parse(txt, strlen(txt), "t");
  const char *s;
  char *dup;
  int64_t n = -1;
  int b = -1;
  unsigned char *bytes;
  size_t len;
  (void)state;
  assert_int_equal(kv_json_str(d, "s", 1, 10, &s), KV_OK);
  assert_string_equal(s, "abc");
  assert_int_equal(kv_json_str(d, "s", 1, 2, &s), KV_E_PROTOCOL); /* too long */
  assert_int_equal(kv_json_str(d, "n", 1, 10, &s), KV_E_PROTOCOL);
  assert_int_equal(kv_json_str(d, "missing", 1, 10, &s), KV_E_PROTOCOL);
  assert_int_equal(kv_json_str(d, "missing", 0, 10, &s), KV_OK);
  assert_null(s);
  assert_int_equal(kv_json_str(d, "z", 0, 10, &s), KV_OK);
  assert_null(s);
  assert_int_equal(kv_json_dup(d, "s", 1, 10, &dup), KV_OK);
  assert_string_equal(dup, "abc");
  free(dup);
  assert_int_equal(kv_json_int64(d, "n", &n), KV_OK);
  assert_int_equal(n, 12);
  assert_int_equal(kv_json_int64(d, "s", &n), KV_E_PROTOCOL);
  assert_int_equal(kv_json_bool(d, "b", &b), KV_OK);
  assert_int_equal(b, 1);
  assert_int_equal(kv_json_bool(d, "n", &b), KV_E_PROTOCOL);
  assert_int_equal(kv_json_b64url(d, "u", 1, 3, &bytes, &len), KV_OK);
  assert_int_equal(len, 3);
  free(bytes);
  assert_int_equal(kv_json_b64url(d, "u", 1, 2, &bytes, &len), KV_E_PROTOCOL);
  assert_null(bytes);
  assert_int_equal(kv_json_b64url(d, "bad", 1, 10, &bytes, &len), KV_E_PROTOCOL);
  cJSON_Delete(d);
}

static void test_ids(void **state)
{
  char *n = NULL, *v = NULL;
  (void)state;
  assert_int_equal(kv_parse_id("https://v.vault.azure.net/keys/k1/abc123", "keys", &n, &v), KV_OK);
  assert_string_equal(n, "k1");
  assert_string_equal(v, "abc123");
  free(n);
  free(v);
  assert_int_equal(kv_parse_id("https://v.vault.azure.net:443/Keys/k-2", "keys", &n, &v), KV_OK);
  assert_string_equal(n, "k-2");
  assert_null(v);
  free(n);
  assert_int_equal(kv_parse_id("https://v.vault.azure.net/keys/k/", "keys", &n, &v), KV_OK);
  assert_null(v);
  free(n);
  static const char *const bad[] = {
      "https://v.vault.azure.net/secrets/k/1", "https://v.vault.azure.net/keys/", "keys/k",
      "https://v.vault.azure.net/keys/k/1/2", "https://v.vault.azure.net/keys/k%20x",
      "https://v.vault.azure.net/keys/k/v-1", "https://v.vault.azure.net/keysx/k",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (kv_parse_id(bad[i], "keys", &n, &v) != KV_E_PROTOCOL)
      fail_msg("accepted %s", bad[i]);
    assert_null(n);
    assert_null(v);
  }
}

static void test_attrs(void **state)
{
  const char *txt = "{\"attributes\":{\"enabled\":false,\"nbf\":5,\"exp\":6,\"created\":7,\"updat"
                    "ed\":8,\"recoveryLevel\":\"x\"},\"tags\":{\"a\":\"1\",\"b\":\"2\"},\"managed\""
                    ":true}";
  cJSON *d = kv_json_parse(txt, strlen(txt), "t");
  struct kv_attrs a;
  (void)state;
  assert_int_equal(kv_json_attrs(d, &a), KV_OK);
  assert_false(a.enabled);
  assert_int_equal(a.nbf, 5);
  assert_int_equal(a.exp, 6);
  assert_int_equal(a.updated, 8);
  assert_true(a.managed);
  assert_int_equal(a.n_tags, 2);
  assert_string_equal(a.tags[1].name, "b");
  kv_attrs_clear(&a);
  cJSON_Delete(d);
  txt = "{\"tags\":{\"a\":1}}";
  d = kv_json_parse(txt, strlen(txt), "t");
  assert_int_equal(kv_json_attrs(d, &a), KV_E_PROTOCOL);
  assert_null(a.tags);
  cJSON_Delete(d);
  txt = "{}";
  d = kv_json_parse(txt, strlen(txt), "t");
  assert_int_equal(kv_json_attrs(d, &a), KV_OK);
  assert_true(a.enabled); /* absent attributes: enabled */
  cJSON_Delete(d);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_whole),
      cmocka_unit_test(test_getters),
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_attrs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
