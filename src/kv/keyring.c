/* SPDX-License-Identifier: Apache-2.0 */
/* The shared access token in the kernel keyring (docs/security.md "The shared access token").
 * Which keyring: the process's own session keyring when it has one (a login session under
 * pam_keyinit, a systemd service, `keyctl session`), else the user keyring; see
 * docs/design.md "Decisions". */
#include "kv/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/cache_path.h"
#include "util/log.h"

/* <linux/keyctl.h>, spelled out: the module needs no kernel headers to build. */
#define KEY_SPEC_PROCESS_KEYRING -2
#define KEY_SPEC_SESSION_KEYRING -3
#define KEY_SPEC_USER_KEYRING -4
#define KEY_SPEC_USER_SESSION_KEYRING -5
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_DESCRIBE 6
#define KEYCTL_LINK 8
#define KEYCTL_UNLINK 9
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11
#define KEYCTL_SET_TIMEOUT 15
#define KEYCTL_SETPERM 5
#define KEYCTL_INVALIDATE 21

/* The owner's uid: view, read, write, search, link, setattr; nobody else anything. Not even a
 * possessor: possessor rights add to any uid's, and a process that dropped privileges (or was
 * started by another user) can possess a session keyring it inherited. */
#define KEY_PERM 0x003f0000u
#define KEY_PERM_NOT_OWNER 0xff00ffffu

#define MAGIC "AKVTOK1 "
#define TOKEN_MAX (16 * 1024)

static long sys_keyctl(int cmd, unsigned long a2, unsigned long a3, unsigned long a4,
                       unsigned long a5)
{
  return syscall(SYS_keyctl, cmd, a2, a3, a4, a5);
}

/* ---- the entry format ---------------------------------------------------------------------- */

static int token_chars_ok(const char *t, size_t n)
{
  /* The token goes into an HTTP header: visible ASCII only (as in kv_token_parse). */
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
      return 0;
  return 1;
}

size_t kv_keyring_format(const struct kv_token *t, char *buf, size_t len)
{
  size_t tl;
  int n;
  if (!t || !t->value || !buf)
    return 0;
  tl = strlen(t->value);
  if (!tl || tl > TOKEN_MAX || !token_chars_ok(t->value, tl) || t->expires_on <= 0 ||
      t->refresh_on <= 0 || t->refresh_on > t->expires_on)
    return 0;
  n = snprintf(buf, len, MAGIC "%lld %lld %s", (long long)t->expires_on, (long long)t->refresh_on,
               t->value);
  if (n < 0 || (size_t)n >= len) {
    if (len)
      OPENSSL_cleanse(buf, len);
    return 0;
  }
  return (size_t)n;
}

/* A decimal number of 1 to 12 digits (Unix seconds until the year 33658) ending at a space:
 * no sign, no leading blanks, nothing strtoll would also take. */
static int parse_secs(const char **p, const char *end, int64_t *out)
{
  int64_t v = 0;
  int n = 0;
  for (; *p < end && **p >= '0' && **p <= '9' && n < 12; (*p)++, n++)
    v = v * 10 + (**p - '0');
  if (!n || *p >= end || **p != ' ')
    return -1;
  (*p)++;
  *out = v;
  return 0;
}

int kv_keyring_parse(const char *payload, size_t len, int64_t now, struct kv_token *out,
                     const char **why)
{
  const char *p = payload, *end;
  int64_t exp, ref;
  size_t tl;
  const char *dummy;
  if (!why)
    why = &dummy;
  memset(out, 0, sizeof(*out));
  if (!payload || len < sizeof(MAGIC) - 1 || memcmp(p, MAGIC, sizeof(MAGIC) - 1) != 0) {
    *why = "not in the module's format";
    return -1;
  }
  end = payload + len; /* after the NULL check: no arithmetic on a null pointer */
  p += sizeof(MAGIC) - 1;
  if (parse_secs(&p, end, &exp) || parse_secs(&p, end, &ref) || exp <= 0 || ref <= 0 || ref > exp) {
    *why = "not in the module's format (expiry)";
    return -1;
  }
  tl = (size_t)(end - p);
  if (!tl || tl > TOKEN_MAX || !token_chars_ok(p, tl)) {
    *why = "not in the module's format (token)";
    return -1;
  }
  if (exp <= now) {
    *why = "expired";
    return -1;
  }
  out->value = malloc(tl + 1);
  if (!out->value) {
    *why = "out of memory";
    return -1;
  }
  memcpy(out->value, p, tl);
  out->value[tl] = '\0';
  out->expires_on = exp;
  out->refresh_on = ref;
  return 0;
}

int kv_keyring_describe_ok(const char *described, uid_t uid, const char *desc, const char **why)
{
  char type[16];
  unsigned long kuid, kgid, perm;
  int n = 0;
  const char *dummy;
  if (!why)
    why = &dummy;
  if (!described ||
      sscanf(described, "%15[^;];%lu;%lu;%lx;%n", type, &kuid, &kgid, &perm, &n) != 4 || !n) {
    *why = "unreadable description";
    return -1;
  }
  if (strcmp(type, "user") != 0) {
    *why = "not a \"user\" key";
    return -1;
  }
  if (kuid != (unsigned long)uid) {
    *why = "owned by another user";
    return -1;
  }
  if (perm & KEY_PERM_NOT_OWNER) {
    *why = "open to others than its owner (possessor, group or other permissions)";
    return -1;
  }
  if (strcmp(described + n, desc) != 0) {
    *why = "another description";
    return -1;
  }
  (void)kgid;
  return 0;
}

/* ---- the keyring ---------------------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int keyring_target; /* KEY_SPEC_SESSION_KEYRING or KEY_SPEC_USER_KEYRING; 0 = none */
static int warned_foreign;

static void probe(void)
{
  long s, us;
  if (sys_keyctl(KEYCTL_GET_KEYRING_ID, (unsigned long)KEY_SPEC_USER_KEYRING, 0, 0, 0) < 0) {
    int err = errno;
    akv_dbg(AKV_LOGC_AUTH,
            "token sharing: the kernel keyring is not available (%s); access "
            "tokens stay per process",
            strerror(err));
    return;
  }
  /* Without a session keyring of its own, KEY_SPEC_SESSION_KEYRING is the user session keyring:
   * the user keyring is then the place every process of the user finds. */
  s = sys_keyctl(KEYCTL_GET_KEYRING_ID, (unsigned long)KEY_SPEC_SESSION_KEYRING, 0, 0, 0);
  us = sys_keyctl(KEYCTL_GET_KEYRING_ID, (unsigned long)KEY_SPEC_USER_SESSION_KEYRING, 0, 0, 0);
  keyring_target = s > 0 && us > 0 && s != us ? KEY_SPEC_SESSION_KEYRING : KEY_SPEC_USER_KEYRING;
  akv_dbg(AKV_LOGC_AUTH, "token sharing: access tokens are shared through the %s keyring",
          keyring_target == KEY_SPEC_SESSION_KEYRING ? "session" : "user");
}

int kv_keyring_available(void)
{
  pthread_once(&probe_once, probe);
  return keyring_target != 0;
}

/* The serial of the key under desc in the target keyring (searched with the keyrings linked to
 * it), or -1. */
static long find_key(const char *desc)
{
  if (!kv_keyring_available())
    return -1;
  return sys_keyctl(KEYCTL_SEARCH, (unsigned long)keyring_target, (unsigned long)"user",
                    (unsigned long)desc, 0);
}

/* One warning per process for entries this module did not write. */
static void warn_foreign(const char *desc, long key, const char *why)
{
  if (!__atomic_exchange_n(&warned_foreign, 1, __ATOMIC_RELAXED))
    akv_warn(AKV_LOGC_AUTH,
             "token sharing: the kernel keyring entry \"%s\" (key %ld) is not one "
             "this module wrote (%s): ignored",
             desc, key, why);
}

/* 0 when key is one this module wrote for desc; else -1 and one warning per process. */
static int key_is_ours(long key, const char *desc)
{
  char d[KV_KEYRING_DESC_MAX + 96];
  const char *why = NULL;
  long n = sys_keyctl(KEYCTL_DESCRIBE, (unsigned long)key, (unsigned long)d, sizeof(d), 0);
  if (n <= 0 || (size_t)n > sizeof(d)) {
    why = "cannot be described";
  } else {
    d[sizeof(d) - 1] = '\0';
    if (kv_keyring_describe_ok(d, geteuid(), desc, &why) == 0)
      return 0;
  }
  warn_foreign(desc, key, why);
  return -1;
}

/* The key's payload into buf (wiped by the caller); its length or -1. */
static long read_key(long key, char *buf, size_t len)
{
  long n = sys_keyctl(KEYCTL_READ, (unsigned long)key, (unsigned long)buf, len, 0);
  if (n < 0 || (size_t)n > len)
    return -1;
  return n;
}

int kv_keyring_get(const char *desc, struct kv_token *out)
{
  char *buf;
  const char *why = NULL;
  long key, n;
  int rc = -1;
  memset(out, 0, sizeof(*out));
  key = find_key(desc);
  if (key < 0 || key_is_ours(key, desc))
    return -1;
  buf = malloc(KV_KEYRING_PAYLOAD_MAX);
  if (!buf)
    return -1;
  n = read_key(key, buf, KV_KEYRING_PAYLOAD_MAX);
  if (n >= 0) {
    rc = kv_keyring_parse(buf, (size_t)n, kv_token_now(), out, &why);
    if (rc && strcmp(why, "expired") != 0)
      warn_foreign(desc, key, why);
  }
  OPENSSL_cleanse(buf, KV_KEYRING_PAYLOAD_MAX);
  free(buf);
  return rc;
}

int kv_keyring_put(const char *desc, const struct kv_token *t)
{
  char *buf;
  size_t n;
  long key, life;
  int rc = -1;
  if (!kv_keyring_available())
    return -1;
  life = (long)(t->expires_on - kv_token_now());
  if (life <= 0)
    return -1;
  /* An entry this module did not write (another owner, wider permissions) goes first, named
   * once in the log; the link below displaces the module's own older entry. */
  key = find_key(desc);
  if (key >= 0 && key_is_ours(key, desc))
    sys_keyctl(KEYCTL_UNLINK, (unsigned long)key, (unsigned long)keyring_target, 0, 0);
  buf = malloc(KV_KEYRING_PAYLOAD_MAX);
  if (!buf)
    return -1;
  n = kv_keyring_format(t, buf, KV_KEYRING_PAYLOAD_MAX);
  if (n) {
    /* Made in this process's own keyring, which no other process possesses, and given its
     * permissions there before it is linked where the others find it: a new key grants its
     * possessor read, and a process of another uid may possess the shared session keyring. */
    key = syscall(SYS_add_key, "user", desc, buf, n, KEY_SPEC_PROCESS_KEYRING);
    if (key >= 0) {
      if (sys_keyctl(KEYCTL_SETPERM, (unsigned long)key, KEY_PERM, 0, 0) == 0 &&
          sys_keyctl(KEYCTL_SET_TIMEOUT, (unsigned long)key, (unsigned long)life, 0, 0) == 0 &&
          sys_keyctl(KEYCTL_LINK, (unsigned long)key, (unsigned long)keyring_target, 0, 0) == 0) {
        rc = 0;
        akv_dbg(AKV_LOGC_AUTH,
                "token sharing: token stored in the kernel keyring as \"%s\", "
                "expires in %ld s",
                desc, life);
      } else {
        int err = errno;
        akv_dbg(AKV_LOGC_AUTH,
                "token sharing: cannot set the permissions, the timeout or the link of "
                "\"%s\" (%s): not shared",
                desc, strerror(err));
      }
      sys_keyctl(KEYCTL_UNLINK, (unsigned long)key, (unsigned long)KEY_SPEC_PROCESS_KEYRING, 0, 0);
    } else {
      akv_dbg(AKV_LOGC_AUTH,
              "token sharing: cannot store \"%s\" in the kernel keyring (%s): "
              "not shared",
              desc, strerror(errno));
    }
  }
  OPENSSL_cleanse(buf, KV_KEYRING_PAYLOAD_MAX);
  free(buf);
  return rc;
}

int kv_keyring_drop(const char *desc, const char *refused)
{
  struct kv_token held;
  long key = find_key(desc);
  int match;
  if (key < 0)
    return 0;
  if (refused) {
    /* Only the refused token: a newer one another process stored is kept. */
    if (kv_keyring_get(desc, &held))
      return 0;
    match = strcmp(held.value, refused) == 0;
    kv_token_clear(&held);
    if (!match)
      return 0;
    key = find_key(desc);
    if (key < 0)
      return 0;
  } else if (key_is_ours(key, desc)) {
    return 0;
  }
  if (sys_keyctl(KEYCTL_INVALIDATE, (unsigned long)key, 0, 0, 0) != 0 &&
      sys_keyctl(KEYCTL_UNLINK, (unsigned long)key, (unsigned long)keyring_target, 0, 0) != 0)
    return 0;
  akv_dbg(AKV_LOGC_AUTH,
          "token sharing: token refused by the vault dropped from the kernel "
          "keyring (\"%s\")",
          desc);
  return 1;
}

/* ---- single flight across processes --------------------------------------------------------- */

/* FNV-1a: the lock file's name only (a collision makes two identities share a lock, no more). */
static uint64_t name_hash(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* $XDG_RUNTIME_DIR/akv-pkcs11 (created), when the runtime directory and it are directories only
 * this user (or root, for the runtime directory) controls. */
static int lock_dir(char *buf, size_t len)
{
  const char *rt = secure_getenv("XDG_RUNTIME_DIR");
  struct stat st;
  int n;
  if (!rt || rt[0] != '/')
    return -1;
  if (stat(rt, &st) != 0 || !S_ISDIR(st.st_mode) || akv_cache_not_private(&st, 022, 1))
    return -1;
  n = snprintf(buf, len, "%s/akv-pkcs11", rt);
  if (n < 0 || (size_t)n >= len)
    return -1;
  if (mkdir(buf, 0700) != 0 && errno != EEXIST)
    return -1;
  if (lstat(buf, &st) != 0 || !S_ISDIR(st.st_mode) || akv_cache_not_private(&st, 077, 0))
    return -1;
  return 0;
}

int kv_keyring_lock(const char *desc, long wait_ms)
{
  static int said;
  char path[PATH_MAX];
  struct stat st;
  struct timespec t0, now, nap = {0, 2 * 1000 * 1000};
  int fd, n;
  if (lock_dir(path, sizeof(path))) {
    if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
      akv_dbg(AKV_LOGC_AUTH,
              "token sharing: no private runtime directory ($XDG_RUNTIME_DIR) "
              "for the fetch lock; processes that miss the token at the same time each fetch "
              "one");
    return -1;
  }
  n = (int)strlen(path);
  if (snprintf(path + n, sizeof(path) - (size_t)n, "/token-%016llx.lock",
               (unsigned long long)name_hash(desc)) >= (int)(sizeof(path) - (size_t)n))
    return -1;
  fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    return -1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      return fd;
    if (errno != EWOULDBLOCK && errno != EINTR)
      break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms) {
      if (wait_ms > 0)
        akv_warn(AKV_LOGC_AUTH,
                 "token sharing: another process has been fetching the token for "
                 "\"%s\" for %ld ms; fetching without waiting longer",
                 desc, wait_ms);
      close(fd);
      return KV_KEYRING_BUSY;
    }
    nanosleep(&nap, NULL);
    if (nap.tv_nsec < 50 * 1000 * 1000)
      nap.tv_nsec *= 2;
  }
  close(fd);
  return -1;
}

void kv_keyring_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* releases the flock */
}
