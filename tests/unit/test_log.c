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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/log.h"
#include "util/utc.h"

static char path[128];

static int setup(void **state)
{
  (void)state;
  snprintf(path, sizeof(path), "/tmp/akv-test-log-%ld.log", (long)getpid());
  unlink(path);
  unsetenv("AKV_PKCS11_DEBUG");
  unsetenv("AKV_PKCS11_LOG_LEVEL");
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  akv_log_close();
  unlink(path);
  return 0;
}

static const char *contents(void)
{
  static char buf[8192];
  FILE *f = fopen(path, "r");
  size_t n = 0;
  if (f) {
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
  }
  buf[n] = '\0';
  return buf;
}

static void test_levels_and_file(void **state)
{
  struct stat st;
  (void)state;
  akv_log_init(AKV_LOG_WARN, path);
  akv_err(AKV_LOGC_KV, "error %d", 1);
  akv_warn(AKV_LOGC_HTTP, "warning %s", "two");
  akv_info(AKV_LOGC_KV, "info hidden");
  akv_dbg(AKV_LOGC_HTTP, "debug hidden");
  assert_true(akv_log_enabled(AKV_LOG_ERROR, AKV_LOGC_GEN));
  assert_false(akv_log_enabled(AKV_LOG_INFO, AKV_LOGC_GEN));
  assert_non_null(strstr(contents(), "ERROR kv: error 1\n"));
  assert_non_null(strstr(contents(), "WARN http: warning two\n"));
  assert_null(strstr(contents(), "hidden"));
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0); /* log files are private */
}

static void test_debug_categories(void **state)
{
  (void)state;
  setenv("AKV_PKCS11_DEBUG", "http,auth", 1);
  akv_log_init(AKV_LOG_ERROR, path);
  assert_true(akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_HTTP));
  assert_true(akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_AUTH));
  assert_false(akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_CACHE));
  assert_false(akv_log_enabled(AKV_LOG_INFO, AKV_LOGC_HTTP));
  akv_dbg(AKV_LOGC_HTTP, "http detail");
  akv_dbg(AKV_LOGC_CACHE, "cache detail");
  assert_non_null(strstr(contents(), "DEBUG http: http detail"));
  assert_null(strstr(contents(), "cache detail"));
  setenv("AKV_PKCS11_DEBUG", "all", 1);
  akv_log_init(AKV_LOG_ERROR, path);
  assert_true(akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_CACHE));
  /* The environment level overrides the configured one. */
  unsetenv("AKV_PKCS11_DEBUG");
  setenv("AKV_PKCS11_LOG_LEVEL", "info", 1);
  akv_log_init(AKV_LOG_ERROR, path);
  assert_true(akv_log_enabled(AKV_LOG_INFO, AKV_LOGC_GEN));
  assert_false(akv_log_enabled(AKV_LOG_DEBUG, AKV_LOGC_GEN));
}

static void test_no_line_forgery(void **state)
{
  (void)state;
  akv_log_init(AKV_LOG_INFO, path);
  akv_err(AKV_LOGC_KV, "service said: %s", "bad\nERROR fake line\r");
  assert_non_null(strstr(contents(), "service said: bad ERROR fake line \n"));
  {
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    akv_err(AKV_LOGC_KV, "%s", big); /* truncated, still one line */
    const char *c = contents();
    const char *last = strrchr(c, 'x');
    assert_non_null(last);
    assert_int_equal(last[1], '\n');
  }
}

static void test_fork_safe(void **state)
{
  pid_t pid;
  int status;
  (void)state;
  akv_log_init(AKV_LOG_INFO, path);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    akv_info(AKV_LOGC_GEN, "from child");
    akv_log_init(AKV_LOG_INFO, path);
    akv_info(AKV_LOGC_GEN, "child reinit");
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_non_null(strstr(contents(), "from child"));
  assert_non_null(strstr(contents(), "child reinit"));
}

/* The log's and the audit's lock-free UTC conversion (util/utc.h) agrees with the C library's
 * gmtime_r and timegm, second for second, across leap years, centuries and negative times. */
static void test_utc_matches_libc(void **state)
{
  static const int64_t fixed[] = {0,           -1,           59,           86399,
                                  86400,       951782400,    951868799,    4107542400,
                                  -2208988800, 253402300799, -62135596800, 1796531293};
  (void)state;
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 20000; i++) {
    int64_t t = i < sizeof(fixed) / sizeof(fixed[0])
                    ? fixed[i]
                    : (int64_t)(i * 7919u % 20000u) * 1234567 - 12000000000LL;
    time_t tt = (time_t)t;
    struct tm tm;
    struct akv_utc u;
    assert_non_null(gmtime_r(&tt, &tm));
    akv_utc_from_epoch(t, &u);
    assert_int_equal(u.year, tm.tm_year + 1900);
    assert_int_equal(u.month, tm.tm_mon + 1);
    assert_int_equal(u.day, tm.tm_mday);
    assert_int_equal(u.hour, tm.tm_hour);
    assert_int_equal(u.min, tm.tm_min);
    assert_int_equal(u.sec, tm.tm_sec);
    assert_int_equal(akv_utc_to_epoch(&u), t);
    assert_int_equal(akv_utc_to_epoch(&u), (int64_t)timegm(&tm));
  }
}

/* A FIFO that no process reads is refused at once (ENXIO) instead of blocking the open, and so
 * C_Initialize, for ever; one with a reader is written to. */
static void test_fifo_log(void **state)
{
  char why[256] = "", fifo[64];
  int fd, rd;
  (void)state;
  snprintf(fifo, sizeof(fifo), "/tmp/akv-test-fifo-%ld", (long)getpid());
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(akv_open_own_file(fifo, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "FIFO that no process reads"));
  rd = open(fifo, O_RDONLY | O_NONBLOCK);
  assert_true(rd >= 0);
  fd = akv_open_own_file(fifo, why, sizeof(why));
  assert_true(fd >= 0);
  assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
  assert_int_equal(write(fd, "x\n", 2), 2);
  close(fd);
  close(rd);
  unlink(fifo);
}

/* A log file that is a symbolic link, writable by group/other, or owned by another user is not
 * written to: lines go to stderr instead (docs/security.md "Configuration, log and audit files").
 */
static void test_unsafe_file_refused(void **state)
{
  char target[160], link[160];
  struct stat st;
  (void)state;
  snprintf(target, sizeof(target), "%s.target", path);
  snprintf(link, sizeof(link), "%s.link", path);
  unlink(target);
  unlink(link);
  assert_int_equal(close(open(target, O_WRONLY | O_CREAT, 0600)), 0);
  assert_int_equal(symlink(target, link), 0);
  akv_log_init(AKV_LOG_WARN, link);
  akv_err(AKV_LOGC_GEN, "through the link");
  akv_log_close();
  assert_int_equal(stat(target, &st), 0);
  assert_int_equal(st.st_size, 0);
  unlink(link);

  for (int i = 0; i < 2; i++) { /* group-writable, other-writable */
    assert_int_equal(chmod(target, i ? 0602 : 0620), 0);
    akv_log_init(AKV_LOG_WARN, target);
    akv_err(AKV_LOGC_GEN, "writable by others");
    akv_log_close();
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 0);
  }

  if (geteuid() == 0) {
    assert_int_equal(chmod(target, 0600), 0);
    assert_int_equal(chown(target, 4242, (gid_t)-1), 0);
    akv_log_init(AKV_LOG_WARN, target);
    akv_err(AKV_LOGC_GEN, "foreign owner");
    akv_log_close();
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 0);
  }
  /* The same file, private and ours: written. */
  assert_int_equal(chown(target, geteuid(), (gid_t)-1), 0);
  assert_int_equal(chmod(target, 0644), 0);
  akv_log_init(AKV_LOG_WARN, target);
  akv_err(AKV_LOGC_GEN, "accepted");
  akv_log_close();
  assert_int_equal(stat(target, &st), 0);
  assert_true(st.st_size > 0);
  unlink(target);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_levels_and_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_debug_categories, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_line_forgery, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fork_safe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsafe_file_refused, setup, teardown),
      cmocka_unit_test(test_utc_matches_libc),
      cmocka_unit_test(test_fifo_log),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
