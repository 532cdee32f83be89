/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "util/audit.h"

static void test_lines(void **state)
{
  char path[128], buf[4096], *line, *save = NULL;
  struct akv_audit_event ev = {"https://v.vault.azure.net", "keys.sign", "k\"1", NULL, "ES256",
                               "KV_OK", 200, 12, "11111111-2222-4333-8444-555555555555", "rid"};
  struct stat st;
  FILE *f;
  size_t n;
  int lines = 0;
  (void)state;
  snprintf(path, sizeof(path), "/tmp/akv-test-audit-%ld.jsonl", (long)getpid());
  unlink(path);
  akv_audit_record(&ev); /* not open: no-op */
  assert_false(akv_audit_enabled());
  assert_int_equal(akv_audit_open(path), 0);
  assert_true(akv_audit_enabled());
  akv_audit_record(&ev);
  ev.name = NULL;
  ev.operation = "keys.list";
  ev.request_id = "";
  akv_audit_record(&ev);
  akv_audit_close();
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  f = fopen(path, "r");
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *o = cJSON_Parse(line);
    assert_non_null(o);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "time")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "pid")));
    assert_string_equal(cJSON_GetObjectItem(o, "vault")->valuestring, "https://v.vault.azure.net");
    assert_int_equal(cJSON_GetObjectItem(o, "http_status")->valueint, 200);
    assert_int_equal(cJSON_GetObjectItem(o, "latency_ms")->valueint, 12);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "version")));
    if (lines == 0) {
      assert_string_equal(cJSON_GetObjectItem(o, "name")->valuestring, "k\"1");
      assert_string_equal(cJSON_GetObjectItem(o, "request_id")->valuestring, "rid");
    } else {
      assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "name")));
      assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "request_id")));
    }
    cJSON_Delete(o);
    lines++;
  }
  assert_int_equal(lines, 2);
  assert_int_equal(akv_audit_open("/nonexistent-dir/audit.jsonl"), -1);
  assert_false(akv_audit_enabled());
  unlink(path);
}

/* An audit file that is a symbolic link, writable by group/other, or owned by another user is
 * refused (docs/security.md "Configuration, log and audit files"). */
static void test_unsafe_file_refused(void **state)
{
  char target[128], link[128];
  int fd;
  (void)state;
  snprintf(target, sizeof(target), "/tmp/akv-test-audit-%ld.target", (long)getpid());
  snprintf(link, sizeof(link), "/tmp/akv-test-audit-%ld.link", (long)getpid());
  unlink(target);
  unlink(link);
  fd = open(target, O_WRONLY | O_CREAT, 0600);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(symlink(target, link), 0);
  assert_int_equal(akv_audit_open(link), -1);
  assert_false(akv_audit_enabled());
  unlink(link);
  assert_int_equal(chmod(target, 0620), 0);
  assert_int_equal(akv_audit_open(target), -1);
  assert_int_equal(chmod(target, 0606), 0);
  assert_int_equal(akv_audit_open(target), -1);
  assert_false(akv_audit_enabled());
  if (geteuid() == 0) {
    assert_int_equal(chmod(target, 0600), 0);
    assert_int_equal(chown(target, 4242, (gid_t)-1), 0);
    assert_int_equal(akv_audit_open(target), -1);
    assert_int_equal(chown(target, 0, (gid_t)-1), 0);
  }
  assert_int_equal(chmod(target, 0644), 0);
  assert_int_equal(akv_audit_open(target), 0);
  assert_true(akv_audit_enabled());
  akv_audit_close();
  unlink(target);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_unsafe_file_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
