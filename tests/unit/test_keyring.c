/* SPDX-License-Identifier: Apache-2.0 */
/* The shared token's keyring entry (src/kv/keyring.c): its format, the checks that make a
 * foreign entry ignored, and, where the kernel keyring is available, a round trip through it
 * under a description no other test uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/keyring.h"

static const int64_t now = 1700000000;

static void test_format_parse_roundtrip(void **state)
{
  struct kv_token t = {"eyJ0.abc-_~+/=", now + 3600, now + 3300}, back;
  char buf[256];
  const char *why = NULL;
  size_t n;
  (void)state;
  n = kv_keyring_format(&t, buf, sizeof(buf));
  assert_true(n > 0);
  assert_string_equal(buf, "AKVTOK1 1700003600 1700003300 eyJ0.abc-_~+/=");
  assert_int_equal(kv_keyring_parse(buf, n, now, &back, &why), 0);
  assert_string_equal(back.value, t.value);
  assert_int_equal(back.expires_on, t.expires_on);
  assert_int_equal(back.refresh_on, t.refresh_on);
  kv_token_clear(&back);
  /* No NUL needed: the length bounds it. */
  memcpy(buf + n, "XYZ", 4);
  assert_int_equal(kv_keyring_parse(buf, n, now, &back, &why), 0);
  assert_string_equal(back.value, t.value);
  kv_token_clear(&back);
  /* Too small a buffer, or a token that is not one. */
  assert_int_equal(kv_keyring_format(&t, buf, 20), 0);
  t.value = "has space";
  assert_int_equal(kv_keyring_format(&t, buf, sizeof(buf)), 0);
  t.value = "ok";
  t.refresh_on = t.expires_on + 1;
  assert_int_equal(kv_keyring_format(&t, buf, sizeof(buf)), 0);
  assert_int_equal(kv_keyring_format(NULL, buf, sizeof(buf)), 0);
}

static void expect_bad(const char *payload, const char *reason)
{
  struct kv_token out;
  const char *why = NULL;
  assert_int_equal(kv_keyring_parse(payload, strlen(payload), now, &out, &why), -1);
  assert_null(out.value);
  assert_non_null(why);
  if (reason)
    assert_string_equal(why, reason);
}

static void test_parse_rejects(void **state)
{
  char *big;
  (void)state;
  expect_bad("", "not in the module's format");
  expect_bad("AKVTOK1", "not in the module's format");
  expect_bad("AKVTOK2 1700003600 1700003300 tok", "not in the module's format");
  expect_bad("{\"access_token\":\"x\"}", "not in the module's format");
  expect_bad("AKVTOK1 1700003600 1700003300 ", "not in the module's format (token)");
  expect_bad("AKVTOK1 1700003600 1700003300 to k", "not in the module's format (token)");
  expect_bad("AKVTOK1 1700003600 1700003300 tok\n", "not in the module's format (token)");
  expect_bad("AKVTOK1 1700003600 1700003300 t\x7fk", "not in the module's format (token)");
  expect_bad("AKVTOK1 +1700003600 1700003300 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 -1 1700003300 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1  1700003600 1700003300 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 1700003600 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 1700003600 1700003601 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 0 0 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 9999999999999 1700003300 tok", "not in the module's format (expiry)");
  expect_bad("AKVTOK1 1700003600x 1700003300 tok", "not in the module's format (expiry)");
  /* Well formed, but its token has expired. */
  expect_bad("AKVTOK1 1700000000 1699999000 tok", "expired");
  expect_bad("AKVTOK1 1600000000 1599999000 tok", "expired");
  /* A token larger than any the module stores. */
  big = malloc(KV_KEYRING_PAYLOAD_MAX + 2);
  assert_non_null(big);
  memset(big, 'a', KV_KEYRING_PAYLOAD_MAX + 1);
  memcpy(big, "AKVTOK1 1700003600 1700003300 ", 30);
  big[KV_KEYRING_PAYLOAD_MAX + 1] = '\0';
  expect_bad(big, "not in the module's format (token)");
  free(big);
  {
    struct kv_token out;
    assert_int_equal(kv_keyring_parse(NULL, 0, now, &out, NULL), -1);
  }
}

static void test_describe_checks(void **state)
{
  const char *d = KV_KEYRING_DESC_PREFIX "entra https://127.0.0.1:4431 t c https://vault.azure.net";
  char line[512];
  const char *why = NULL;
  (void)state;
  snprintf(line, sizeof(line), "user;1000;1000;003f0000;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), 0);
  snprintf(line, sizeof(line), "user;1000;1000;00010000;%s", d); /* narrower: still ours */
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), 0);
  snprintf(line, sizeof(line), "user;1001;1000;003f0000;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  assert_string_equal(why, "owned by another user");
  snprintf(line, sizeof(line), "user;1000;1000;003f0800;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  assert_string_equal(why, "open to others than its owner (possessor, group or other permissions)");
  snprintf(line, sizeof(line), "user;1000;1000;003f0001;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  /* A possessor need not be the owner (an inherited session keyring): no rights for it either. */
  snprintf(line, sizeof(line), "user;1000;1000;3f3f0000;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  snprintf(line, sizeof(line), "user;1000;1000;01000000;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  snprintf(line, sizeof(line), "logon;1000;1000;003f0000;%s", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  assert_string_equal(why, "not a \"user\" key");
  snprintf(line, sizeof(line), "user;1000;1000;003f0000;%sX", d);
  assert_int_equal(kv_keyring_describe_ok(line, 1000, d, &why), -1);
  assert_string_equal(why, "another description");
  assert_int_equal(kv_keyring_describe_ok("user;1000", 1000, d, &why), -1);
  assert_string_equal(why, "unreadable description");
  assert_int_equal(kv_keyring_describe_ok("", 1000, d, &why), -1);
  assert_int_equal(kv_keyring_describe_ok(NULL, 1000, d, &why), -1);
}

/* ---- through the kernel keyring, where there is one ---------------------------------------- */

static void unique_desc(char *buf, size_t len, const char *what)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(buf, len, KV_KEYRING_DESC_PREFIX "unit-%s %ld.%09ld %d", what, (long)ts.tv_sec,
           ts.tv_nsec, (int)getpid());
}

static void test_keyring_roundtrip(void **state)
{
  char desc[256];
  struct kv_token t, got;
  int64_t real_now = (int64_t)time(NULL);
  (void)state;
  if (!kv_keyring_available())
    skip();
  unique_desc(desc, sizeof(desc), "roundtrip");
  assert_int_equal(kv_keyring_get(desc, &got), -1);
  t.value = "tok-one";
  t.expires_on = real_now + 120;
  t.refresh_on = real_now + 60;
  assert_int_equal(kv_keyring_put(desc, &t), 0);
  assert_int_equal(kv_keyring_get(desc, &got), 0);
  assert_string_equal(got.value, "tok-one");
  assert_int_equal(got.expires_on, t.expires_on);
  assert_int_equal(got.refresh_on, t.refresh_on);
  kv_token_clear(&got);
  /* Replaced in place. */
  t.value = "tok-two";
  assert_int_equal(kv_keyring_put(desc, &t), 0);
  assert_int_equal(kv_keyring_get(desc, &got), 0);
  assert_string_equal(got.value, "tok-two");
  kv_token_clear(&got);
  /* A refusal of another token keeps this one; a refusal of this one drops it. */
  assert_int_equal(kv_keyring_drop(desc, "tok-one"), 0);
  assert_int_equal(kv_keyring_get(desc, &got), 0);
  kv_token_clear(&got);
  assert_int_equal(kv_keyring_drop(desc, "tok-two"), 1);
  assert_int_equal(kv_keyring_get(desc, &got), -1);
  /* An expired token is not stored. */
  t.expires_on = real_now - 1;
  t.refresh_on = real_now - 2;
  assert_int_equal(kv_keyring_put(desc, &t), -1);
  assert_int_equal(kv_keyring_get(desc, &got), -1);
}

/* add_key(2) of a key the module did not write, in the keyring the module uses. */
static long add_foreign(const char *desc, const char *payload, unsigned perm)
{
  /* The module's keyring: the session keyring when the process has its own, else the user
   * keyring (src/kv/keyring.c). */
  long s = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* @s */, 0, 0, 0);
  long us = syscall(SYS_keyctl, 0, -5 /* @us */, 0, 0, 0);
  long k = syscall(SYS_add_key, "user", desc, payload, strlen(payload), s > 0 && s != us ? -3 : -4);
  if (k >= 0 && perm)
    syscall(SYS_keyctl, 5 /* SETPERM */, k, perm, 0, 0);
  if (k >= 0)
    syscall(SYS_keyctl, 15 /* SET_TIMEOUT */, k, 60, 0, 0);
  return k;
}

static void test_keyring_foreign_entries(void **state)
{
  char desc[256], payload[128];
  struct kv_token got, t;
  int64_t real_now = (int64_t)time(NULL);
  long k;
  (void)state;
  if (!kv_keyring_available())
    skip();
  /* Garbage under the module's description: ignored. */
  unique_desc(desc, sizeof(desc), "garbage");
  k = add_foreign(desc, "not a token", 0);
  assert_true(k >= 0);
  assert_int_equal(kv_keyring_get(desc, &got), -1);
  /* A well-formed entry that group and others may read: not one the module wrote. */
  unique_desc(desc, sizeof(desc), "wideperm");
  snprintf(payload, sizeof(payload), "AKVTOK1 %lld %lld planted", (long long)real_now + 100,
           (long long)real_now + 50);
  k = add_foreign(desc, payload, 0x3f3f3f3f);
  assert_true(k >= 0);
  assert_int_equal(kv_keyring_get(desc, &got), -1);
  /* Storing over it replaces it with the module's own (and its permissions). */
  t.value = "mine";
  t.expires_on = real_now + 100;
  t.refresh_on = real_now + 50;
  if (kv_keyring_put(desc, &t) == 0) {
    assert_int_equal(kv_keyring_get(desc, &got), 0);
    assert_string_equal(got.value, "mine");
    kv_token_clear(&got);
    assert_int_equal(kv_keyring_drop(desc, NULL), 1);
  }
  syscall(SYS_keyctl, 21 /* INVALIDATE */, k, 0, 0, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format_parse_roundtrip),  cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_describe_checks),         cmocka_unit_test(test_keyring_roundtrip),
      cmocka_unit_test(test_keyring_foreign_entries),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
