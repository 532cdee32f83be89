/* SPDX-License-Identifier: Apache-2.0 */
/* C_Initialize's pReserved (src/token/module.c, docs/config.md): it is read as a C string of at
 * most 64 KiB before its NUL, and only printable UTF-8 text (whitespace allowed, no other control
 * characters) is taken as a configuration path or inline JSON; anything else is CKR_ARGUMENTS_BAD
 * with a log line that says what is wrong and never shows the content. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model_helpers.h"

/* The documented cap (docs/config.md): bytes before the terminating NUL. */
#define T_RESERVED_MAX (64 * 1024)

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, KV_OP_SIGN);
  unsetenv("AKV_PKCS11_LOG_LEVEL");
  unsetenv("AKV_PKCS11_DEBUG");
  return 0;
}

/* stderr (where the module logs before its configuration is read) captured into a file. */
struct t_capture {
  int saved;
  char path[64];
};

static void capture_start(struct t_capture *c)
{
  int fd;
  snprintf(c->path, sizeof(c->path), "/tmp/akv-reserved-log-XXXXXX");
  fd = mkstemp(c->path);
  assert_true(fd >= 0);
  fflush(stderr);
  c->saved = dup(STDERR_FILENO);
  assert_true(c->saved >= 0);
  assert_true(dup2(fd, STDERR_FILENO) >= 0);
  close(fd);
}

/* Restores stderr and returns what was logged (malloc'd, NUL-terminated). */
static char *capture_end(struct t_capture *c)
{
  char *text;
  long len;
  FILE *f;
  fflush(stderr);
  assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
  close(c->saved);
  f = fopen(c->path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  len = ftell(f);
  assert_true(len >= 0);
  rewind(f);
  text = calloc(1, (size_t)len + 1);
  assert_non_null(text);
  assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  unlink(c->path);
  return text;
}

/* pReserved is refused: CKR_ARGUMENTS_BAD, the module stays uninitialised, and the log names the
 * problem (want) but not the content (secret, when given). */
static void expect_refused(const char *reserved, const char *want, const char *secret)
{
  struct t_capture c;
  char *log;
  capture_start(&c);
  assert_int_equal(t_init(reserved), CKR_ARGUMENTS_BAD);
  log = capture_end(&c);
  assert_int_equal(akv_module_check(), CKR_CRYPTOKI_NOT_INITIALIZED);
  if (!strstr(log, want))
    fail_msg("log lacks \"%s\": %s", want, log);
  assert_non_null(strstr(log, "fix: "));
  if (secret)
    assert_null(strstr(log, secret));
  free(log);
}

static void expect_ok(const char *reserved, const char *label)
{
  CK_TOKEN_INFO ti;
  assert_int_equal(t_init(reserved), CKR_OK);
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  assert_memory_equal(ti.label, label, strlen(label));
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

static void test_valid_path(void **state)
{
  static const char json[] =
      "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\",\"label\":\"from-path\"}]}";
  char path[] = "/tmp/akv-reserved-cfg-XXXXXX";
  int fd;
  (void)state;
  fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
  close(fd);
  expect_ok(path, "from-path ");
  unlink(path);
}

static void test_valid_json(void **state)
{
  (void)state;
  expect_ok(T_CFG(""), "unit ");
  /* Whitespace (newlines, tabs, CR) and non-ASCII UTF-8 are text. */
  expect_ok("{\n\t\"cache_file\": \"\",\r\n\t\"slots\": [{\"url\": \"" FAKE_VAULT_URL
            "\", \"label\": \"cl\xc3\xa9-\xe2\x9c\x93-\xf0\x9f\x94\x91\"}]\n}\n",
            "cl\xc3\xa9-\xe2\x9c\x93-\xf0\x9f\x94\x91 ");
}

/* Exactly the cap is accepted: valid JSON padded with spaces to T_RESERVED_MAX bytes. */
static void test_cap_exact(void **state)
{
  static const char head[] =
      "{\"cache_file\":\"\",\"slots\":[{\"url\":\"" FAKE_VAULT_URL "\",\"label\":\"padded\"}]";
  char *buf = malloc(T_RESERVED_MAX + 1);
  (void)state;
  assert_non_null(buf);
  memset(buf, ' ', T_RESERVED_MAX);
  memcpy(buf, head, strlen(head));
  buf[T_RESERVED_MAX - 1] = '}';
  buf[T_RESERVED_MAX] = '\0';
  assert_int_equal(strlen(buf), T_RESERVED_MAX);
  expect_ok(buf, "padded ");
  free(buf);
}

static void test_too_long(void **state)
{
  char *buf;
  (void)state;
  /* cap+1 non-NUL bytes, then a NUL, inside a larger allocation. */
  buf = malloc(T_RESERVED_MAX + 64);
  assert_non_null(buf);
  memset(buf, 'a', T_RESERVED_MAX + 64);
  buf[T_RESERVED_MAX + 1] = '\0';
  expect_refused(buf, "pReserved has no NUL within 65536 bytes", "aaaa");
  free(buf);
  /* An allocation of exactly cap+1 bytes and no NUL at all: the read stops inside it (an overread
   * would be an ASan/valgrind error in the sanitizer and memcheck runs of this test). */
  buf = malloc(T_RESERVED_MAX + 1);
  assert_non_null(buf);
  memset(buf, '{', T_RESERVED_MAX + 1);
  expect_refused(buf, "pReserved has no NUL within 65536 bytes", NULL);
  free(buf);
}

static void test_not_text(void **state)
{
  static const struct {
    const char *s;
    const char *where; /* expected "byte N of LEN is 0xXX" */
  } cases[] = {
      {"\x01", "byte 0 of 1 is 0x01"},
      {"/etc/akv\x1b[31m.json", "byte 8 of 18 is 0x1b"},            /* ESC */
      {"/etc/akv-pkcs11/config.json\x7f", "byte 27 of 28 is 0x7f"}, /* DEL */
      {"\xff\xfe{}", "byte 0 of 4 is 0xff"},                        /* never UTF-8 */
      {"/tmp/\xc0\xaf", "byte 5 of 7 is 0xc0"},                     /* overlong '/' */
      {"{\"a\":\"\xed\xa0\x80\"}", "byte 6 of 11 is 0xed"},         /* surrogate U+D800 */
      {"{\xf4\x90\x80\x80}", "byte 1 of 6 is 0xf4"},                /* beyond U+10FFFF */
      {"x\xc2\x85y", "byte 1 of 4 is 0xc2"},                        /* C1 control NEL */
      {"abc\xe2\x82", "byte 3 of 5 is 0xe2"},                       /* truncated sequence */
      {"ab\x80", "byte 2 of 3 is 0x80"},                            /* lone continuation */
  };
  unsigned char binary[16] = {0x30, 0x10, 0x40, 0x00};
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char want[128];
    snprintf(want, sizeof(want), "pReserved is not text (%s", cases[i].where);
    expect_refused(cases[i].s, want, NULL);
  }
  /* The secret in a mangled inline JSON never reaches the log. */
  expect_refused("{\"credential\":{\"client_secret\":\"s3cr3t-VALUE\"}\x02}",
                 "pReserved is not text (byte 46 of 48 is 0x02", "s3cr3t-VALUE");
  /* A pointer to a structure (what a confused caller may pass) is not text. */
  expect_refused((const char *)binary, "pReserved is not text (byte 1 of 3 is 0x10", NULL);
  /* The module still initialises afterwards. */
  expect_ok(T_CFG(""), "unit ");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_valid_path, setup),
      cmocka_unit_test_setup(test_valid_json, setup),
      cmocka_unit_test_setup(test_cap_exact, setup),
      cmocka_unit_test_setup(test_too_long, setup),
      cmocka_unit_test_setup(test_not_text, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
