/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <openssl/sha.h>

#include "util/audit.h"

static const struct akv_audit_event sign_ev = {
    .vault = "https://v.vault.azure.net",
    .operation = "keys.sign",
    .name = "k\"1",
    .alg = "ES256",
    .outcome = "KV_OK",
    .http_status = 200,
    .latency_ms = 12,
    .client_request_id = "11111111-2222-4333-8444-555555555555",
    .request_id = "rid",
};

static void test_lines(void **state)
{
  char path[160], buf[4096], *line, *save = NULL;
  struct akv_audit_event ev = sign_ev;
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
  strcat(path, ".chain");
  unlink(path);
}

/* An audit file that is a symbolic link, writable by group/other, or owned by another user is
 * refused (docs/security.md "Configuration, log and audit files"). */
static void test_unsafe_file_refused(void **state)
{
  char target[160], link[128];
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
  strcat(target, ".chain");
  unlink(target);
}

static void tmp_path(char *out, size_t n, const char *tag)
{
  snprintf(out, n, "/tmp/akv-test-audit-%ld-%s.jsonl", (long)getpid(), tag);
}

static void unlink_all(const char *path)
{
  char p[300];
  unlink(path);
  snprintf(p, sizeof(p), "%s.chain", path);
  unlink(p);
  snprintf(p, sizeof(p), "%s.1", path);
  unlink(p);
}

static char *slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "r");
  char *b = malloc(1 << 20);
  assert_non_null(f);
  assert_non_null(b);
  *len = fread(b, 1, (1 << 20) - 1, f);
  b[*len] = '\0';
  fclose(f);
  return b;
}

/* SHA-256 hex computed here with OpenSSL's one-shot API, not the module's helper. */
static void sha_hex(const void *p, size_t n, char out[65])
{
  unsigned char md[32];
  SHA256(p, n, md);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Checks every line of path links to the one before (seq + 1, prev = SHA-256 of its bytes) from
 * line `from` (1-based); the line before `from` may be anything. first_prev: the expected prev of
 * line `from` (NULL: the hash of the line before). Returns the number of lines. */
static int check_chain(const char *path, int from, const char *first_chain, const char *first_prev)
{
  size_t len;
  char *b = slurp(path, &len), *p = b, prev_hash[65] = "";
  uint64_t prev_seq = 0;
  int n = 0;
  while (p < b + len) {
    char *nl = memchr(p, '\n', (size_t)(b + len - p));
    struct akv_audit_link l;
    char why[200];
    assert_non_null(nl);
    n++;
    if (n >= from) {
      assert_int_equal(akv_audit_parse_link(p, (size_t)(nl - p), &l, why, sizeof(why)), 0);
      if (n == from) {
        assert_int_equal(l.seq, 1);
        assert_string_equal(l.chain, first_chain);
        assert_string_equal(l.prev, first_prev ? first_prev : prev_hash);
      } else {
        assert_int_equal(l.seq, prev_seq + 1);
        assert_string_equal(l.chain, "");
        assert_string_equal(l.prev, prev_hash);
      }
      prev_seq = l.seq;
    }
    sha_hex(p, (size_t)(nl + 1 - p), prev_hash);
    p = nl + 1;
  }
  free(b);
  return n;
}

/* The hash of the last line of path. */
static void last_line_hash(const char *path, char out[65])
{
  size_t len;
  char *b = slurp(path, &len), *s;
  assert_true(len > 0 && b[len - 1] == '\n');
  for (s = b + len - 1; s > b && s[-1] != '\n'; s--)
    ;
  sha_hex(s, (size_t)(b + len - s), out);
  free(b);
}

static void write_file(const char *path, const char *data, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
}

/* One process's run: opens path, writes n lines, closes it. */
static void record_n(const char *path, int n)
{
  assert_int_equal(akv_audit_open(path), 0);
  for (int i = 0; i < n; i++)
    akv_audit_record(&sign_ev);
  akv_audit_close();
}

/* Lines start a chain with 64 zeros and link by seq and the hash of the line before. */
static void test_chain(void **state)
{
  char path[200];
  (void)state;
  tmp_path(path, sizeof(path), "chain");
  unlink_all(path);
  record_n(path, 5);
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 5);
  /* Another process (here: another open) continues the chain from the file's last line. */
  record_n(path, 1);
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 6);
  unlink_all(path);
}

static int tail_of(const char *path, const char *data, size_t n, char *buf, size_t *len)
{
  int fd, st;
  write_file(path, data, n);
  fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  st = akv_audit_read_tail(fd, buf, AKV_AUDIT_LINE_MAX + 2, len);
  close(fd);
  return st;
}

/* The last line is read from the file's tail, bounded by AKV_AUDIT_LINE_MAX. */
static void test_read_tail(void **state)
{
  char path[200], buf[AKV_AUDIT_LINE_MAX + 2];
  char *big = malloc(3 * AKV_AUDIT_LINE_MAX);
  size_t len;
  (void)state;
  assert_non_null(big);
  tmp_path(path, sizeof(path), "tail");
  assert_int_equal(tail_of(path, "", 0, buf, &len), 0);
  assert_int_equal(tail_of(path, "a\nbb\n", 5, buf, &len), 1);
  assert_int_equal(len, 3);
  assert_memory_equal(buf, "bb\n", 3);
  assert_int_equal(tail_of(path, "one\n", 4, buf, &len), 1);
  assert_memory_equal(buf, "one\n", 4);
  assert_int_equal(tail_of(path, "a\nbb", 4, buf, &len), 2);
  assert_int_equal(len, 2);
  assert_memory_equal(buf, "bb", 2);
  assert_int_equal(tail_of(path, "\n", 1, buf, &len), 1);
  assert_int_equal(len, 1);
  /* A last line of exactly the bound, after a longer one. */
  memset(big, 'x', 3 * AKV_AUDIT_LINE_MAX);
  big[2 * AKV_AUDIT_LINE_MAX - 1] = '\n';
  big[3 * AKV_AUDIT_LINE_MAX - 1] = '\n';
  assert_int_equal(tail_of(path, big, 3 * AKV_AUDIT_LINE_MAX, buf, &len), 1);
  assert_int_equal(len, AKV_AUDIT_LINE_MAX);
  /* Longer than the bound. */
  assert_int_equal(tail_of(path, big, 2 * AKV_AUDIT_LINE_MAX, buf, &len), 3);
  assert_int_equal(tail_of(path, big, 2 * AKV_AUDIT_LINE_MAX - 5, buf, &len), 3);
  unlink(path);
  free(big);
}

/* The chain fields are checked strictly. */
static void test_parse_link(void **state)
{
  static const char *const bad[] = {
      "",
      "hello",
      "[1]",
      "{\"seq\":1}",
      "{\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"}",
      "{\"seq\":0,\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"}",
      "{\"seq\":1.5,\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"}",
      "{\"seq\":\"1\",\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"}",
      "{\"seq\":1,\"prev\":\"00\"}",
      "{\"seq\":1,\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"} x",
      "{\"seq\":1,\"prev\":\"" AKV_AUDIT_ZERO_HASH "\",\"chain\":\"other\"}",
      "{\"seq\":1,\"prev\":\"000000000000000000000000000000000000000000000000000000000000000A\"}",
  };
  struct akv_audit_link l;
  char why[200];
  const char *good = "{\"seq\":7,\"prev\":\"" AKV_AUDIT_ZERO_HASH
                     "\",\"chain\":\"restart\",\"chain_reason\":\"r\",\"x\":1}";
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    why[0] = '\0';
    assert_int_equal(akv_audit_parse_link(bad[i], strlen(bad[i]), &l, why, sizeof(why)), -1);
    assert_true(why[0] != '\0');
  }
  assert_int_equal(akv_audit_parse_link("{\"seq\":1,\"prev\":\"a\0\"}", 20, &l, why, sizeof(why)),
                   -1);
  assert_int_equal(akv_audit_parse_link(good, strlen(good), &l, why, sizeof(why)), 0);
  assert_int_equal(l.seq, 7);
  assert_string_equal(l.chain, "restart");
  assert_string_equal(l.reason, "r");
}

/* A file whose last line is not an audit line gets a line that starts a new chain and says why;
 * the next line continues it. An incomplete last line is ended first. */
static void test_restart_foreign(void **state)
{
  char path[200], h[65];
  size_t len;
  char *b;
  (void)state;
  tmp_path(path, sizeof(path), "foreign");
  unlink_all(path);
  write_file(path, "hello world\n", 12);
  record_n(path, 2);
  sha_hex("hello world\n", 12, h);
  assert_int_equal(check_chain(path, 2, "restart", h), 3);
  b = slurp(path, &len);
  assert_non_null(strstr(b, "\"chain_reason\":\"the last line is not an audit line: not one JSON "
                            "object\""));
  free(b);

  write_file(path, "{\"seq\":3,\"prev\":\"x\"}\npartial", 28);
  record_n(path, 1);
  sha_hex("partial\n", 8, h);
  assert_int_equal(check_chain(path, 3, "restart", h), 3);
  b = slurp(path, &len);
  assert_non_null(strstr(b, "\npartial\n{\"seq\":1,"));
  assert_non_null(strstr(b, "no newline at its end"));
  free(b);

  /* The largest seq a JSON number holds exactly: the chain restarts rather than overflow. */
  {
    const char top[] = "{\"seq\":9007199254740992,\"prev\":\"" AKV_AUDIT_ZERO_HASH "\"}\n";
    write_file(path, top, sizeof(top) - 1);
    record_n(path, 1);
    sha_hex(top, sizeof(top) - 1, h);
    assert_int_equal(check_chain(path, 2, "restart", h), 2);
    b = slurp(path, &len);
    assert_non_null(strstr(b, "the last line is at the largest seq"));
    free(b);
  }
  unlink_all(path);
}

/* Rotation: a file renamed away while the process has it open, one emptied under it
 * (copytruncate), and a new file found by a later process (the chain state) each start with the
 * hash of the old file's last line. */
static void test_rotation(void **state)
{
  char path[200], old[220], chain[220], h[65];
  (void)state;
  tmp_path(path, sizeof(path), "rot");
  snprintf(old, sizeof(old), "%s.1", path);
  snprintf(chain, sizeof(chain), "%s.chain", path);
  unlink_all(path);
  assert_int_equal(akv_audit_open(path), 0);
  akv_audit_record(&sign_ev);
  akv_audit_record(&sign_ev);
  /* Renamed while open; the chain state removed, so the link comes from the old file itself. */
  assert_int_equal(rename(path, old), 0);
  unlink(chain);
  akv_audit_record(&sign_ev);
  akv_audit_record(&sign_ev);
  assert_int_equal(check_chain(old, 1, "new", AKV_AUDIT_ZERO_HASH), 2);
  last_line_hash(old, h);
  assert_int_equal(check_chain(path, 1, "rotated", h), 2);
  /* Emptied under the open descriptor (the chain state is gone: the process's own memory). */
  last_line_hash(path, h);
  assert_int_equal(truncate(path, 0), 0);
  akv_audit_record(&sign_ev);
  akv_audit_close();
  assert_int_equal(check_chain(path, 1, "rotated", h), 1);
  /* Renamed between two processes: the chain state (written again from the next line on) links
   * the new file. */
  record_n(path, 1);
  last_line_hash(path, h);
  assert_int_equal(rename(path, old), 0);
  record_n(path, 1);
  assert_int_equal(check_chain(path, 1, "rotated", h), 1);
  unlink_all(path);
}

static void *record_50(void *arg)
{
  (void)arg;
  for (int j = 0; j < 50; j++)
    akv_audit_record(&sign_ev);
  return NULL;
}

/* Eight processes appending at once leave one valid chain with every line. */
static void test_processes(void **state)
{
  char path[200];
  pid_t pids[8];
  (void)state;
  tmp_path(path, sizeof(path), "procs");
  unlink_all(path);
  assert_int_equal(akv_audit_open(path), 0);
  for (int i = 0; i < 8; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      record_50(NULL);
      _exit(0);
    }
  }
  for (int i = 0; i < 8; i++) {
    int st = 0;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  akv_audit_close();
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 400);
  unlink_all(path);
}

/* Four threads of one process appending at once: one valid chain with every line. */
static void test_threads(void **state)
{
  char path[200];
  pthread_t th[4];
  (void)state;
  tmp_path(path, sizeof(path), "threads");
  unlink_all(path);
  assert_int_equal(akv_audit_open(path), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, record_50, NULL), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  akv_audit_close();
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 200);
  unlink_all(path);
}

/* Another process that keeps the record lock does not stop the line: after the bounded wait it is
 * appended without the lock (and a warning logged). */
static void test_lock_held(void **state)
{
  char path[200], errpath[220], c, *err;
  int ready[2], errfd, saved;
  size_t errlen;
  pid_t pid;
  (void)state;
  tmp_path(path, sizeof(path), "locked");
  unlink_all(path);
  record_n(path, 1);
  assert_int_equal(pipe(ready), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int fd = open(path, O_WRONLY);
    if (fd < 0 || fcntl(fd, F_SETLKW, &fl) != 0)
      _exit(1);
    if (write(ready[1], "x", 1) != 1)
      _exit(1);
    alarm(30); /* bounded even if the parent never kills it */
    pause();
    _exit(0);
  }
  close(ready[1]);
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  /* The module logs to stderr: captured in a file for this line. */
  snprintf(errpath, sizeof(errpath), "%s.err", path);
  errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  saved = dup(2);
  assert_true(errfd >= 0 && saved >= 0);
  assert_int_equal(dup2(errfd, 2), 2);
  assert_int_equal(akv_audit_open(path), 0);
  akv_audit_record(&sign_ev);
  akv_audit_close();
  assert_int_equal(dup2(saved, 2), 2);
  close(saved);
  close(errfd);
  err = slurp(errpath, &errlen);
  assert_non_null(strstr(err, "another process held it for 5 s; this line is appended without "
                              "the lock"));
  free(err);
  unlink(errpath);
  kill(pid, SIGKILL);
  assert_int_equal(waitpid(pid, NULL, 0), pid);
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 2);
  unlink_all(path);
}

/* A line that would exceed the bound leaves its long identifiers out, and the chain goes on. */
static void test_oversize(void **state)
{
  char path[200], *name = malloc(AKV_AUDIT_LINE_MAX * 2);
  struct akv_audit_event ev = sign_ev;
  size_t len;
  char *b;
  (void)state;
  assert_non_null(name);
  memset(name, 'n', AKV_AUDIT_LINE_MAX * 2 - 1);
  name[AKV_AUDIT_LINE_MAX * 2 - 1] = '\0';
  ev.name = name;
  tmp_path(path, sizeof(path), "big");
  unlink_all(path);
  assert_int_equal(akv_audit_open(path), 0);
  akv_audit_record(&ev);
  akv_audit_record(&sign_ev);
  akv_audit_close();
  assert_int_equal(check_chain(path, 1, "new", AKV_AUDIT_ZERO_HASH), 2);
  b = slurp(path, &len);
  assert_non_null(strstr(b, "\"oversize\":true"));
  assert_null(strstr(b, "nnnn"));
  free(b);
  free(name);
  unlink_all(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),      cmocka_unit_test(test_unsafe_file_refused),
      cmocka_unit_test(test_chain),      cmocka_unit_test(test_read_tail),
      cmocka_unit_test(test_parse_link), cmocka_unit_test(test_restart_foreign),
      cmocka_unit_test(test_rotation),   cmocka_unit_test(test_processes),
      cmocka_unit_test(test_threads),    cmocka_unit_test(test_lock_held),
      cmocka_unit_test(test_oversize),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
