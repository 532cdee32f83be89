/* SPDX-License-Identifier: Apache-2.0 */
/* p11_cache_check - proves the module's object cache from inside ONE process (each pkcs11-tool
 * run is a new process, so it cannot show this).
 *
 * usage: p11_cache_check MODULE KEY_LABEL ROTATE_SCRIPT [FAULT_SCRIPT]
 * env:   EMU_STATS, EMU_CA (emulator counters); the module's own config (a short ttl, e.g. 4 s,
 *        so the soft TTL is 3 s) through AKV_PKCS11_CONFIG; CACHE_TTL, that ttl in seconds
 *        (default 4), which sets how long to wait for the refreshes.
 *
 * 1. lists every object (class, label, id, as pkcs11-tool -O reads them) and remembers the public
 *    key of KEY_LABEL;
 * 2. lists again at once: the emulator must have seen 0 vault requests;
 * 3. runs ROTATE_SCRIPT with /bin/sh (rotates KEY_LABEL in the vault through REST);
 * 4. right after it, the cached (old) key is still served, still without a request;
 * 5. lists again, bounded (20 s), until the new public key shows up: rotation seen without a
 *    restart once the soft TTL passed; then one more listing costs 0 requests again;
 * 6. with FAULT_SCRIPT: runs it (the vault answers 500 from then on), waits past the hard TTL and
 *    lists again: the refresh fails, the old snapshot is still served (stale-if-error).
 * Prints "KEY before <hex>" and "KEY after <hex>" (CKA_MODULUS or CKA_EC_POINT) so the shell can
 * compare them with the vault's JWKs. */
#include "p11_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One full listing; returns the hex public value of `label`'s public key (malloc'd) or NULL.
 * *nobj receives the number of objects seen. */
static char *list_all(struct t_p11 *p, const char *label, long *nobj)
{
  CK_OBJECT_HANDLE *h = NULL;
  char *found = NULL;
  long n = t_find_all(p, &h);

  *nobj = n;
  for (long i = 0; i < n; i++) {
    CK_ULONG clen = 0, llen = 0, ilen = 0, vlen = 0;
    unsigned char *cls = t_attr_new(p, h[i], CKA_CLASS, &clen);
    unsigned char *lab = t_attr_new(p, h[i], CKA_LABEL, &llen);
    unsigned char *id = t_attr_new(p, h[i], CKA_ID, &ilen);
    CK_OBJECT_CLASS c = CKO_VENDOR_DEFINED;

    if (cls && clen == sizeof(c))
      memcpy(&c, cls, sizeof(c));
    if (c == CKO_PUBLIC_KEY && lab && llen == strlen(label) && memcmp(lab, label, llen) == 0 &&
        !found) {
      unsigned char *v = t_attr_new(p, h[i], CKA_MODULUS, &vlen);
      if (!v)
        v = t_attr_new(p, h[i], CKA_EC_POINT, &vlen);
      if (v)
        found = t_hex_new(v, vlen);
      free(v);
    }
    free(cls);
    free(lab);
    free(id);
  }
  free(h);
  return found;
}

static int run_script(const char *path)
{
  int status = 0;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    execl("/bin/sh", "sh", path, (char *)NULL);
    perror("execl /bin/sh");
    _exit(127);
  }
  if (waitpid(pid, &status, 0) < 0)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(int argc, char **argv)
{
  struct t_p11 p;
  const char *module, *label;
  char *before = NULL, *again = NULL, *after = NULL;
  int64_t t0 = 0, t1 = 0, unused = 0;
  long n1 = 0, n2 = 0, n3 = 0;
  double start, waited, ttl = 4;
  const char *ttl_env = getenv("CACHE_TTL");
  int rc;

  if (ttl_env) {
    char *end;
    long v = strtol(ttl_env, &end, 10);
    if (*ttl_env && !*end && v > 0 && v <= 3600)
      ttl = (double)v;
  }
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s MODULE KEY_LABEL ROTATE_SCRIPT [FAULT_SCRIPT]\n", argv[0]);
    return 2;
  }
  module = argv[1];
  label = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  t_p11_open(&p, module);

  before = list_all(&p, label, &n1);
  t_check(n1 > 0, "first listing finds objects (%ld)", n1);
  t_check(before != NULL, "first listing has the public key '%s'", label);
  printf("KEY before %s\n", before ? before : "-");

  if (t_stats(NULL, &t0, &unused) != 0)
    return 1;
  again = list_all(&p, label, &n2);
  if (t_stats(NULL, &t1, &unused) != 0)
    return 1;
  t_check(t1 - t0 == 0, "second listing within the TTL costs 0 vault requests (got %lld)",
          (long long)(t1 - t0));
  t_check(n2 == n1, "second listing sees the same %ld objects (got %ld)", n1, n2);
  t_check(again && before && strcmp(again, before) == 0, "second listing: same public key");
  free(again);
  again = NULL;

  start = now_s();
  rc = run_script(argv[3]);
  t_check(rc == 0, "rotate command succeeded (exit %d)", rc);

  /* Still inside the soft TTL (3 s after the first listing, rotation takes well under that for
   * an EC key): the snapshot is served as is. */
  if (t_stats(NULL, &t0, &unused) != 0)
    return 1;
  again = list_all(&p, label, &n3);
  if (t_stats(NULL, &t1, &unused) != 0)
    return 1;
  if (now_s() - start < 2.0) {
    t_check(t1 - t0 == 0,
            "listing right after the rotation is served from the cache (%lld requests)",
            (long long)(t1 - t0));
    t_check(again && before && strcmp(again, before) == 0,
            "listing right after the rotation still shows the cached version");
  } else {
    t_note("rotation took %.1f s: the within-soft-TTL check is not meaningful", now_s() - start);
  }
  free(again);
  again = NULL;

  /* After the soft TTL: the next lookups refresh (in the background, or synchronously after the
   * hard TTL); poll, bounded. */
  for (;;) {
    free(after);
    after = list_all(&p, label, &n3);
    if (after && before && strcmp(after, before) != 0)
      break;
    if (now_s() - start > 5.0 * ttl)
      break;
    usleep(250 * 1000);
  }
  waited = now_s() - start;
  t_check(after && before && strcmp(after, before) != 0,
          "the rotated key's new public key is listed without a restart (after %.1f s)", waited);
  printf("KEY after %s\n", after ? after : "-");

  /* A fresh snapshot is cached again. */
  free(again);
  if (t_stats(NULL, &t0, &unused) != 0)
    return 1;
  again = list_all(&p, label, &n3);
  if (t_stats(NULL, &t1, &unused) != 0)
    return 1;
  t_check(t1 - t0 == 0, "listing after the refresh is served from the cache again (%lld requests)",
          (long long)(t1 - t0));

  if (argc == 5) {
    char *stale;
    long n4 = 0;
    rc = run_script(argv[4]);
    t_check(rc == 0, "fault script succeeded (exit %d)", rc);
    /* Past the hard TTL of the snapshot made above, so a refresh must be attempted. */
    sleep((unsigned)ttl + 2);
    if (t_stats(NULL, &t0, &unused) != 0)
      return 1;
    stale = list_all(&p, label, &n4);
    usleep(500 * 1000); /* a background refresh may still be failing */
    if (t_stats(NULL, &t1, &unused) != 0)
      return 1;
    t_check(t1 - t0 > 0, "after the hard TTL a refresh was attempted (%lld requests)",
            (long long)(t1 - t0));
    t_check(n4 == n1,
            "with the vault failing, the old snapshot is still served (%ld of %ld objects)", n4,
            n1);
    t_check(stale && after && strcmp(stale, after) == 0,
            "stale-if-error keeps the last known public key");
    free(stale);
  }

  free(before);
  free(again);
  free(after);
  t_p11_close(&p);
  return t_finish("p11_cache_check");
}
