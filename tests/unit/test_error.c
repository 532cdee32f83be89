/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kv/error.h"
#include "kv/kv.h"

static void test_status_map(void **state)
{
  (void)state;
  assert_int_equal(kv_status_rc(200), KV_OK);
  assert_int_equal(kv_status_rc(204), KV_OK);
  assert_int_equal(kv_status_rc(400), KV_E_BAD_REQUEST);
  assert_int_equal(kv_status_rc(401), KV_E_UNAUTHORIZED);
  assert_int_equal(kv_status_rc(403), KV_E_FORBIDDEN);
  assert_int_equal(kv_status_rc(404), KV_E_NOT_FOUND);
  assert_int_equal(kv_status_rc(409), KV_E_CONFLICT);
  assert_int_equal(kv_status_rc(429), KV_E_THROTTLED);
  assert_int_equal(kv_status_rc(500), KV_E_SERVER);
  assert_int_equal(kv_status_rc(503), KV_E_SERVER);
  assert_int_equal(kv_status_rc(0), KV_E_NETWORK);
  assert_int_equal(kv_status_rc(302), KV_E_PROTOCOL);
  assert_int_equal(kv_status_rc(418), KV_E_PROTOCOL);
}

static void test_bodies(void **state)
{
  static const char *const bodies[] = {
      "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"A key with (name/id) x was not found\"}}",
      ("{\"error\":{\"code\":\"Forbidden\",\"message\":\"m\",\"innererror\":{\"code\":"
       "\"ForbiddenByRb"
       "ac\"}}}"),
      "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215\"}",
      "{\"error\":null}",
      "not json",
      "",
      "{\"error\":{\"code\":5,\"message\":[]}}",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    assert_int_equal(kv_error_from_response(404, bodies[i], strlen(bodies[i]), "t"),
                     KV_E_NOT_FOUND);
    assert_int_equal(kv_error_from_response(403, bodies[i], strlen(bodies[i]), "t"),
                     KV_E_FORBIDDEN);
  }
  assert_int_equal(kv_error_from_response(200, "{}", 2, "t"), KV_OK);
  assert_int_equal(kv_error_from_response(429, NULL, 0, "t"), KV_E_THROTTLED);
}

static void test_names(void **state)
{
  (void)state;
  assert_string_equal(kv_rc_str(KV_OK), "KV_OK");
  assert_string_equal(kv_rc_str(KV_E_PROTOCOL), "KV_E_PROTOCOL");
  assert_string_equal(kv_rc_str(KV_E_UNSUPPORTED), "KV_E_UNSUPPORTED");
  assert_string_equal(kv_rc_str((kv_rc)999), "KV_E_UNKNOWN");
  for (int rc = KV_OK; rc <= KV_E_UNSUPPORTED; rc++)
    assert_string_not_equal(kv_rc_str((kv_rc)rc), "KV_E_UNKNOWN");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_map),
      cmocka_unit_test(test_bodies),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
