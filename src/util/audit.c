/* SPDX-License-Identifier: Apache-2.0 */
/* Audit lines: JSON built with cJSON (so names are escaped), one write(2) per line on an O_APPEND
 * descriptor so lines from several threads or processes never interleave. Every line carries a
 * sequence number and the SHA-256 of the line before it (docs/audit.md "Chain"): the writer reads
 * the file's last line and appends under a POSIX record lock on the file (other processes) taken
 * inside a fork-safe mutex (other threads; akv_fork_lock: a child never inherits it held by a
 * thread that does not exist there). Nothing else is locked or logged while they are held. */
#include "util/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "util/log.h"
#include "util/utc.h"

/* The record lock is polled, not waited for, so a process that holds it forever cannot hang the
 * signing of another: at most this long, then the line is written without it (logged). */
#define AUDIT_LOCK_WAIT_MS 5000

static struct akv_fork_lock audit_lock = AKV_FORK_LOCK_INIT;
static int audit_fd = -1;  /* O_WRONLY|O_APPEND: the lines */
static int audit_rfd = -1; /* O_RDONLY on the same file: its last line */
static char *audit_path;   /* absolute, to notice a rotation whatever the host's cwd */
/* Hash of the last line this process wrote to audit_path: the link to a file emptied under it
 * (copytruncate). "" when none. */
static char audit_last[AKV_AUDIT_HASH_HEX + 1];
static int audit_reopen_warned;
/* <audit_file>.chain: the hash of the last line any process wrote, so that the first line of a
 * file logrotate created links to the rotated file's last line (docs/audit.md "Rotation"). */
static int audit_sfd = -1;
static char *audit_spath;

int akv_audit_hash(const void *p, size_t len, char out[AKV_AUDIT_HASH_HEX + 1])
{
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(p, len, md, &n, EVP_sha256(), NULL) || n != AKV_AUDIT_HASH_HEX / 2) {
    out[0] = '\0';
    return -1;
  }
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  out[AKV_AUDIT_HASH_HEX] = '\0';
  return 0;
}

static int is_hash_hex(const char *s)
{
  size_t i;
  for (i = 0; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return i == AKV_AUDIT_HASH_HEX;
}

int akv_audit_parse_link(const char *line, size_t len, struct akv_audit_link *out, char *why,
                         size_t whylen)
{
  const char *end = NULL;
  cJSON *o, *seq, *prev, *chain, *reason;
  int rc = -1;
  memset(out, 0, sizeof(*out));
  if (len == 0) {
    snprintf(why, whylen, "an empty line");
    return -1;
  }
  if (memchr(line, '\0', len) || memchr(line, '\n', len)) {
    snprintf(why, whylen, "not an audit line: it contains a NUL or newline byte");
    return -1;
  }
  o = cJSON_ParseWithLengthOpts(line, len, &end, 0);
  if (!o || !cJSON_IsObject(o) || end != line + len) {
    snprintf(why, whylen, "not an audit line: not one JSON object");
    goto out;
  }
  seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
  prev = cJSON_GetObjectItemCaseSensitive(o, "prev");
  chain = cJSON_GetObjectItemCaseSensitive(o, "chain");
  reason = cJSON_GetObjectItemCaseSensitive(o, "chain_reason");
  if (!seq || !prev) {
    snprintf(why, whylen, "not a chained audit line: no \"seq\" or \"prev\" field");
    goto out;
  }
  if (!cJSON_IsNumber(seq) || seq->valuedouble < 1 || seq->valuedouble > 9007199254740992.0 ||
      floor(seq->valuedouble) != seq->valuedouble) {
    snprintf(why, whylen, "\"seq\" is not an integer from 1 to 2^53");
    goto out;
  }
  if (!cJSON_IsString(prev) || !is_hash_hex(prev->valuestring)) {
    snprintf(why, whylen, "\"prev\" is not 64 lowercase hex digits (a SHA-256)");
    goto out;
  }
  if (chain && !(cJSON_IsString(chain) && (strcmp(chain->valuestring, "new") == 0 ||
                                           strcmp(chain->valuestring, "rotated") == 0 ||
                                           strcmp(chain->valuestring, "restart") == 0))) {
    snprintf(why, whylen, "\"chain\" is not \"new\", \"rotated\" or \"restart\"");
    goto out;
  }
  out->seq = (uint64_t)seq->valuedouble;
  memcpy(out->prev, prev->valuestring, AKV_AUDIT_HASH_HEX + 1);
  if (chain)
    snprintf(out->chain, sizeof(out->chain), "%s", chain->valuestring);
  if (cJSON_IsString(reason))
    snprintf(out->reason, sizeof(out->reason), "%s", reason->valuestring);
  rc = 0;
out:
  cJSON_Delete(o);
  return rc;
}

int akv_audit_read_tail(int fd, char *buf, size_t cap, size_t *len)
{
  struct stat st;
  size_t n, got = 0, start;
  off_t size;
  int state;
  *len = 0;
  if (cap < AKV_AUDIT_LINE_MAX + 2) {
    errno = EINVAL;
    return -1;
  }
  if (fstat(fd, &st) != 0)
    return -1;
  size = st.st_size;
  if (size <= 0)
    return 0;
  n = (uintmax_t)size < AKV_AUDIT_LINE_MAX + 1 ? (size_t)size : AKV_AUDIT_LINE_MAX + 1;
  while (got < n) {
    ssize_t r = pread(fd, buf + got, n - got, size - (off_t)n + (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break; /* truncated meanwhile by a writer that does not take the lock */
    got += (size_t)r;
  }
  if (got == 0)
    return 0;
  n = got;
  state = buf[n - 1] == '\n' ? 1 : 2;
  /* The line starts after the newline before its last byte, or at the file's start. */
  start = n - 1;
  while (start > 0 && buf[start - 1] != '\n')
    start--;
  if (start == 0 && (uintmax_t)size > n) {
    /* No newline within the bound: the line is longer than any the writer produces. */
    *len = n;
    return 3;
  }
  memmove(buf, buf + start, n - start);
  *len = n - start;
  return state;
}

/* Opens path for appending (akv_open_own_file's checks) and for reading the same file. */
static int open_pair(const char *path, int *wfd, int *rfd, char *why, size_t whylen)
{
  struct stat a, b;
  for (int attempt = 0; attempt < 3; attempt++) {
    int w = akv_open_own_file(path, why, whylen), r;
    if (w < 0)
      return -1;
    if (fstat(w, &a) != 0 || !S_ISREG(a.st_mode)) {
      /* The chain is read back from the file's tail: a FIFO or device has none. */
      snprintf(why, whylen, "it is not a regular file; fix: name a regular file");
      close(w);
      return -1;
    }
    r = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (r >= 0 && fstat(w, &a) == 0 && fstat(r, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino) {
      *wfd = w;
      *rfd = r;
      return 0;
    }
    snprintf(why, whylen, "%s", r < 0 ? strerror(errno) : "it was replaced while being opened");
    close(w);
    if (r >= 0)
      close(r);
  }
  return -1;
}

/* The hash in <audit_file>.chain, when it is one of ours (the checks of akv_open_own_file). */
static int read_chain_state(char out[AKV_AUDIT_HASH_HEX + 1])
{
  char buf[AKV_AUDIT_HASH_HEX + 2];
  struct stat st;
  ssize_t n;
  int fd;
  if (!audit_spath)
    return -1;
  fd = open(audit_spath, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
      (st.st_mode & (S_IWGRP | S_IWOTH))) {
    close(fd);
    return -1;
  }
  do
    n = pread(fd, buf, sizeof(buf), 0);
  while (n < 0 && errno == EINTR);
  close(fd);
  if (n != AKV_AUDIT_HASH_HEX + 1 || buf[AKV_AUDIT_HASH_HEX] != '\n')
    return -1;
  buf[AKV_AUDIT_HASH_HEX] = '\0';
  if (!is_hash_hex(buf))
    return -1;
  memcpy(out, buf, AKV_AUDIT_HASH_HEX + 1);
  return 0;
}

int akv_audit_open(const char *path)
{
  int fd = -1, rfd = -1, sfd = -1, regular = 1;
  char *abs = NULL, *spath = NULL;
  struct stat st;
  if (path && *path) {
    char why[512], cwd[4096];
    if (path[0] != '/' && getcwd(cwd, sizeof(cwd))) {
      size_t n = strlen(cwd) + strlen(path) + 2;
      abs = malloc(n);
      if (abs)
        snprintf(abs, n, "%s/%s", cwd, path);
    } else {
      abs = strdup(path);
    }
    if (!abs) {
      akv_err(AKV_LOGC_GEN, "cannot open audit file %s: %s", path, strerror(ENOMEM));
      return -1;
    }
    if (open_pair(abs, &fd, &rfd, why, sizeof(why)) != 0) {
      akv_err(AKV_LOGC_GEN, "cannot open audit file %s: %s", path, why);
      free(abs);
      return -1;
    }
    /* Only a regular file has a chain state: not /dev/null or another device. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
      regular = 0;
    else if (asprintf(&spath, "%s.chain", abs) < 0)
      spath = NULL;
    if (spath)
      sfd = akv_open_own_file(spath, why, sizeof(why));
    /* Rewritten in place (pwrite at 0), not appended to. */
    if (sfd >= 0 && fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) & ~O_APPEND) != 0) {
      snprintf(why, sizeof(why), "%s", strerror(errno));
      close(sfd);
      sfd = -1;
    }
    if (regular && sfd < 0)
      akv_warn(AKV_LOGC_GEN,
               "cannot open the audit chain state %s.chain: %s; a new audit file after a "
               "rotation may start a new chain",
               abs, spath ? why : strerror(ENOMEM));
  }
  akv_fork_lock_take(&audit_lock);
  if (audit_fd >= 0)
    close(audit_fd);
  if (audit_rfd >= 0)
    close(audit_rfd);
  if (audit_sfd >= 0)
    close(audit_sfd);
  audit_fd = fd;
  audit_rfd = rfd;
  audit_sfd = sfd;
  free(audit_spath);
  audit_spath = spath;
  /* The remembered link belongs to the file it was written to. */
  if (!abs || !audit_path || strcmp(abs, audit_path) != 0)
    audit_last[0] = '\0';
  free(audit_path);
  audit_path = abs;
  audit_reopen_warned = 0;
  akv_fork_lock_give(&audit_lock);
  return 0;
}

void akv_audit_close(void)
{
  akv_audit_open(NULL);
}

int akv_audit_enabled(void)
{
  int on;
  akv_fork_lock_take(&audit_lock);
  on = audit_fd >= 0;
  akv_fork_lock_give(&audit_lock);
  return on;
}

static int add_opt(cJSON *o, const char *k, const char *v)
{
  if (!v)
    return cJSON_AddNullToObject(o, k) != NULL;
  return cJSON_AddStringToObject(o, k, v) != NULL;
}

static const char *(*outcome_mapper)(const char *outcome);

void akv_audit_set_outcome_mapper(const char *(*fn)(const char *outcome))
{
  akv_fork_lock_take(&audit_lock);
  outcome_mapper = fn;
  akv_fork_lock_give(&audit_lock);
}

/* The object's identifier as the service writes it:
 * {vault}/{keys|secrets|certificates}/{name}[/{version}]. */
static int add_kid(cJSON *o, const struct akv_audit_event *ev)
{
  char kid[1024];
  const char *dot = ev->operation ? strchr(ev->operation, '.') : NULL;
  int n;
  if (!ev->vault || !ev->name || !dot)
    return cJSON_AddNullToObject(o, "kid") != NULL;
  n = snprintf(kid, sizeof(kid), "%s/%.*s/%s%s%s", ev->vault, (int)(dot - ev->operation),
               ev->operation, ev->name, ev->version ? "/" : "", ev->version ? ev->version : "");
  if (n < 0 || (size_t)n >= sizeof(kid))
    return cJSON_AddNullToObject(o, "kid") != NULL;
  return cJSON_AddStringToObject(o, "kid", kid) != NULL;
}

/* The line's fields after the chain's, as a JSON object text. oversize: the identifiers that can
 * be long (vault, kid, name, version, request ids) are null and "oversize" is true, so the line
 * stays within AKV_AUDIT_LINE_MAX and the next writer can read it back. */
static char *build_body(const struct akv_audit_event *ev, const char *ck_rv, int oversize)
{
  cJSON *o = cJSON_CreateObject();
  char ts[96], *s = NULL;
  struct timespec now;
  struct akv_utc tm;
  clock_gettime(CLOCK_REALTIME, &now);
  akv_utc_from_epoch(now.tv_sec, &tm); /* no gmtime_r: its lock may be held at a fork */
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.year, tm.month, tm.day,
           tm.hour, tm.min, tm.sec, now.tv_nsec / 1000000);
  if (!o || !cJSON_AddStringToObject(o, "time", ts) ||
      !cJSON_AddNumberToObject(o, "pid", (double)getpid()) ||
      !add_opt(o, "process", program_invocation_short_name) ||
      !add_opt(o, "producer", "akv-pkcs11/" AKV_VERSION) ||
      !add_opt(o, "vault", oversize ? NULL : ev->vault) ||
      !add_opt(o, "operation", ev->operation) ||
      !(oversize ? cJSON_AddNullToObject(o, "kid") != NULL : add_kid(o, ev)) ||
      !add_opt(o, "name", oversize ? NULL : ev->name) ||
      !add_opt(o, "version", oversize ? NULL : ev->version) || !add_opt(o, "alg", ev->alg) ||
      !add_opt(o, "outcome", ev->outcome) || !add_opt(o, "ck_rv", ck_rv) ||
      !cJSON_AddNumberToObject(o, "http_status", (double)ev->http_status) ||
      !cJSON_AddNumberToObject(o, "latency_ms", (double)ev->latency_ms) ||
      !add_opt(o, "client_request_id", oversize ? NULL : ev->client_request_id) ||
      !add_opt(o, "request_id",
               !oversize && ev->request_id && *ev->request_id ? ev->request_id : NULL) ||
      (oversize && !cJSON_AddTrueToObject(o, "oversize")))
    goto out;
  s = cJSON_PrintUnformatted(o);
out:
  cJSON_Delete(o);
  return s;
}

static long long mono_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Takes the record lock on fd, polling up to AUDIT_LOCK_WAIT_MS of wall time. The pause between
 * tries stays short (at most 500 us): a holder that appends many lines in a row (threads of one
 * busy process) frees the lock only briefly between them, and a long pause would miss those
 * moments. 0, or -1 with errno. */
static int file_lock(int fd, int type)
{
  struct flock fl;
  long long start = 0;
  long step_us = 20;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = (short)type;
  fl.l_whence = SEEK_SET;
  for (;;) {
    struct timespec ts;
    if (fcntl(fd, F_SETLK, &fl) == 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EACCES)
      return -1;
    if (!start)
      start = mono_us();
    else if (mono_us() - start >= AUDIT_LOCK_WAIT_MS * 1000LL) {
      errno = ETIMEDOUT;
      return -1;
    }
    ts.tv_sec = 0;
    ts.tv_nsec = step_us * 1000L;
    nanosleep(&ts, NULL);
    if (step_us < 500)
      step_us *= 2;
  }
}

static const char *lock_error(int e)
{
  return e == ETIMEDOUT ? "another process held it for 5 s" : strerror(e);
}

/* What to log once the locks are released. */
struct audit_notes {
  char warn[3][640];
  int n;
  char info[640];
};

#define NOTE_WARN(nt, ...)                                                                         \
  do {                                                                                             \
    if ((nt)->n < 3)                                                                               \
      snprintf((nt)->warn[(nt)->n++], sizeof((nt)->warn[0]), __VA_ARGS__);                         \
  } while (0)

/* Under audit_lock and the record lock on audit_fd: when audit_path no longer names the open file
 * (logrotate renamed or removed it), the hash of the open file's last line goes to carry and the
 * path is opened anew (created when missing), its record lock taken. A path that cannot be opened
 * keeps the lines in the old file. */
static void follow_rotation(char carry[AKV_AUDIT_HASH_HEX + 1], char *tail, size_t cap,
                            struct audit_notes *nt)
{
  for (int round = 0; round < 3 && audit_path; round++) {
    struct stat sp, sf;
    char why[512];
    size_t len;
    int st, w, r;
    if (fstat(audit_fd, &sf) != 0)
      return;
    if (stat(audit_path, &sp) == 0) {
      if (sp.st_dev == sf.st_dev && sp.st_ino == sf.st_ino)
        return;
    } else if (errno != ENOENT) {
      return;
    }
    st = akv_audit_read_tail(audit_rfd, tail, cap, &len);
    if (st == 1 || st == 2)
      akv_audit_hash(tail, len, carry);
    else if (st == 0)
      memcpy(carry, audit_last, sizeof(audit_last));
    else
      memcpy(carry, AKV_AUDIT_ZERO_HASH, sizeof(AKV_AUDIT_ZERO_HASH));
    if (open_pair(audit_path, &w, &r, why, sizeof(why)) != 0) {
      if (!audit_reopen_warned)
        NOTE_WARN(nt,
                  "cannot reopen audit file %s after it was rotated: %s; the lines go on in "
                  "the rotated file",
                  audit_path, why);
      audit_reopen_warned = 1;
      carry[0] = '\0';
      return;
    }
    if (file_lock(w, F_WRLCK) != 0)
      NOTE_WARN(nt, "cannot lock audit file %s: %s; this line is appended without the lock",
                audit_path, lock_error(errno));
    close(audit_fd); /* drops the old file's record lock */
    close(audit_rfd);
    audit_fd = w;
    audit_rfd = r;
    audit_reopen_warned = 0;
    snprintf(nt->info, sizeof(nt->info),
             "audit file %s was rotated; its chain continues in the new file", audit_path);
  }
}

void akv_audit_record(const struct akv_audit_event *ev)
{
  const char *(*mapper)(const char *);
  struct audit_notes nt;
  char *body = NULL, *line = NULL, *tail = NULL, *reason_json = NULL;
  char carry[AKV_AUDIT_HASH_HEX + 1] = "", prev[AKV_AUDIT_HASH_HEX + 1];
  char reason[256] = "", head[1024];
  const char *chain = NULL;
  uint64_t seq = 1;
  size_t len, tlen = 0, cap = AKV_AUDIT_LINE_MAX + 2;
  int st, locked, lead_nl = 0;
  if (!ev || !akv_audit_enabled())
    return;
  memset(&nt, 0, sizeof(nt));
  akv_fork_lock_take(&audit_lock);
  mapper = outcome_mapper;
  akv_fork_lock_give(&audit_lock);
  body = build_body(ev, mapper && ev->outcome ? mapper(ev->outcome) : NULL, 0);
  if (body && strlen(body) > AKV_AUDIT_LINE_MAX - 1024) {
    free(body);
    body = build_body(ev, mapper && ev->outcome ? mapper(ev->outcome) : NULL, 1);
    NOTE_WARN(&nt,
              "audit line for %s longer than %d bytes: its identifiers are left out "
              "(\"oversize\": true)",
              ev->operation ? ev->operation : "?", AKV_AUDIT_LINE_MAX);
  }
  tail = malloc(cap);
  line = malloc(AKV_AUDIT_LINE_MAX + 2);
  if (!body || !tail || !line || body[0] != '{' || body[1] == '}')
    goto out;

  akv_fork_lock_take(&audit_lock);
  if (audit_fd < 0) {
    akv_fork_lock_give(&audit_lock);
    goto out;
  }
  locked = file_lock(audit_fd, F_WRLCK) == 0;
  if (!locked)
    NOTE_WARN(&nt, "cannot lock audit file %s: %s; this line is appended without the lock",
              audit_path ? audit_path : "?", lock_error(errno));
  follow_rotation(carry, tail, cap, &nt);
  st = akv_audit_read_tail(audit_rfd, tail, cap, &tlen);
  if (st == 0) {
    /* An empty file: the first line links to the file before it, when known: seen here before
     * the rename, else the chain state, else the last line this process wrote. */
    char state[AKV_AUDIT_HASH_HEX + 1];
    const char *from = carry[0] ? carry : read_chain_state(state) == 0 ? state : audit_last;
    chain = from[0] ? "rotated" : "new";
    memcpy(prev, from[0] ? from : AKV_AUDIT_ZERO_HASH, sizeof(prev));
  } else if (st == 1) {
    struct akv_audit_link l;
    char why[200] = "at the largest seq (2^53)";
    akv_audit_hash(tail, tlen, prev);
    if (akv_audit_parse_link(tail, tlen - 1, &l, why, sizeof(why)) == 0 &&
        l.seq < 9007199254740992ULL) {
      seq = l.seq + 1;
    } else {
      chain = "restart";
      snprintf(reason, sizeof(reason), "the last line is %s", why);
    }
  } else if (st == 2) {
    /* A last line without its newline: ended here so the new line starts on its own. */
    chain = "restart";
    lead_nl = 1;
    tail[tlen++] = '\n';
    akv_audit_hash(tail, tlen, prev);
    snprintf(reason, sizeof(reason), "the last line is incomplete (no newline at its end)");
  } else {
    chain = "restart";
    memcpy(prev, AKV_AUDIT_ZERO_HASH, sizeof(prev));
    if (st == 3)
      snprintf(reason, sizeof(reason), "the last line is longer than %d bytes", AKV_AUDIT_LINE_MAX);
    else
      snprintf(reason, sizeof(reason), "the last line cannot be read: %s", strerror(errno));
  }
  if (reason[0]) {
    cJSON *r = cJSON_CreateString(reason);
    reason_json = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
  }
  snprintf(head, sizeof(head), "%s{\"seq\":%llu,\"prev\":\"%s\"%s%s%s%s%s,", lead_nl ? "\n" : "",
           (unsigned long long)seq, prev, chain ? ",\"chain\":\"" : "", chain ? chain : "",
           chain ? "\"" : "", reason_json ? ",\"chain_reason\":" : "",
           reason_json ? reason_json : "");
  len = (size_t)snprintf(line, AKV_AUDIT_LINE_MAX + 2, "%s%s\n", head, body + 1);
  if (len >= AKV_AUDIT_LINE_MAX + 2) {
    NOTE_WARN(&nt, "audit line not fully written: %s", "longer than the line bound");
  } else {
    ssize_t w;
    do
      w = write(audit_fd, line, len);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)len) {
      akv_audit_hash(line + lead_nl, len - (size_t)lead_nl, audit_last);
      if (audit_sfd >= 0) {
        /* Always 65 bytes at offset 0: the file holds this one hash. */
        char s[AKV_AUDIT_HASH_HEX + 1];
        memcpy(s, audit_last, AKV_AUDIT_HASH_HEX);
        s[AKV_AUDIT_HASH_HEX] = '\n';
        if (pwrite(audit_sfd, s, sizeof(s), 0) != (ssize_t)sizeof(s))
          NOTE_WARN(&nt, "cannot write the audit chain state %s: %s", audit_spath, strerror(errno));
      }
    } else
      NOTE_WARN(&nt, "audit line not fully written: %s", w < 0 ? strerror(errno) : "short write");
    if (chain && strcmp(chain, "restart") == 0)
      NOTE_WARN(&nt, "audit file %s: %s; a new chain starts here (\"chain\":\"restart\")",
                audit_path ? audit_path : "?", reason);
  }
  /* Also when only the file followed after a rotation was locked. */
  file_lock(audit_fd, F_UNLCK);
  akv_fork_lock_give(&audit_lock);
  for (int i = 0; i < nt.n; i++)
    akv_warn(AKV_LOGC_GEN, "%s", nt.warn[i]);
  if (nt.info[0])
    akv_info(AKV_LOGC_GEN, "%s", nt.info);
out:
  free(reason_json);
  free(line);
  free(tail);
  free(body);
}
