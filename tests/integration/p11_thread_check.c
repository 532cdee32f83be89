/* SPDX-License-Identifier: Apache-2.0 */
/* p11_thread_check - with CKF_LIBRARY_CANT_CREATE_OS_THREADS the module starts no thread, and
 * still works: listing, keys read on demand, signing and verifying, a refresh past the soft TTL
 * (no background refresh) and past the hard TTL (refreshed inline).
 *
 * usage: p11_thread_check MODULE none|default RSA_LABEL TTL_S [CONFIG]
 *   none:    C_Initialize with CKF_LIBRARY_CANT_CREATE_OS_THREADS: no pthread_create at all;
 *   default: without the flag (the control): the same calls do start threads.
 * env: the module's config (AKV_PKCS11_CONFIG), which should set the slot's ttl to TTL_S and
 * prefetch_keys to 0 (so that a search of every key reads several keys at once). CONFIG, when
 * given, is passed in pReserved instead (what a privileged process uses: t_cache_file.sh runs a
 * setgid copy of this program to see that the cache file is off there). It prints
 * "at_secure N" first.
 *
 * Every pthread_create in this process (the module's, and that of any library it calls) binds to
 * the definition below (the program exports it: export_dynamic), which counts and forwards. The
 * thread count in /proc/self/task is checked too. */
#include "p11_common.h"

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

static int threads_created;

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
  int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
      (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(
          RTLD_NEXT, "pthread_create");
  __atomic_add_fetch(&threads_created, 1, __ATOMIC_SEQ_CST);
  return real ? real(t, attr, fn, arg) : 11 /* EAGAIN */;
}

static int tasks(void)
{
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static long find_all(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s)
{
  CK_OBJECT_HANDLE h[256];
  CK_ULONG n = 0;
  CK_RV rv = f->C_FindObjectsInit(s, NULL, 0);
  if (rv == CKR_OK)
    rv = f->C_FindObjects(s, h, 256, &n);
  f->C_FindObjectsFinal(s);
  return rv == CKR_OK ? (long)n : -1;
}

static CK_OBJECT_HANDLE find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                             const char *label)
{
  CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, 0}};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG n = 0;
  t[1].ulValueLen = strlen(label);
  if (f->C_FindObjectsInit(s, t, 2) == CKR_OK)
    f->C_FindObjects(s, &h, 1, &n);
  f->C_FindObjectsFinal(s);
  return n == 1 ? h : CK_INVALID_HANDLE;
}

int main(int argc, char **argv)
{
  CK_C_GetFunctionList get;
  CK_FUNCTION_LIST_PTR f = NULL;
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slots[8];
  CK_ULONG ns = 8, sig_len = 0;
  CK_SESSION_HANDLE s = 0;
  CK_OBJECT_HANDLE priv, pub;
  CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
  unsigned char msg[] = "no threads", sig[1024];
  long ttl_ms, n1, n2, n3;
  int none, before, after;
  CK_RV rv;
  void *dl;

  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s MODULE none|default RSA_LABEL TTL_S [CONFIG]\n", argv[0]);
    return 2;
  }
  printf("at_secure %lu\n", getauxval(AT_SECURE));
  none = strcmp(argv[2], "none") == 0;
  ttl_ms = atol(argv[4]) * 1000;
  dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!dl || !(get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) || get(&f) != CKR_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  before = tasks();
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK | (none ? CKF_LIBRARY_CANT_CREATE_OS_THREADS : 0);
  args.pReserved = argc == 6 ? argv[5] : NULL;
  rv = f->C_Initialize(&args);
  t_check(rv == CKR_OK, "C_Initialize (%s): %s", argv[2], t_rv_name(rv));
  if (rv != CKR_OK)
    return t_finish("p11_thread_check");
  rv = f->C_GetSlotList(CK_TRUE, slots, &ns);
  t_check(rv == CKR_OK && ns > 0, "a slot with a token");
  rv = f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
  t_check(rv == CKR_OK, "C_OpenSession: %s", t_rv_name(rv));

  /* The listing (keys pending), then a search of every key: several keys read at once. */
  priv = find(f, s, CKO_PRIVATE_KEY, argv[3]);
  n1 = find_all(f, s);
  t_check(priv != CK_INVALID_HANDLE && n1 > 2, "listing and keys read on demand (%ld objects)", n1);
  pub = find(f, s, CKO_PUBLIC_KEY, argv[3]);
  sig_len = sizeof(sig);
  rv = f->C_SignInit(s, &mech, priv);
  if (rv == CKR_OK)
    rv = f->C_Sign(s, msg, sizeof(msg) - 1, sig, &sig_len);
  t_check(rv == CKR_OK, "C_Sign (a vault call): %s", t_rv_name(rv));
  rv = f->C_VerifyInit(s, &mech, pub);
  if (rv == CKR_OK)
    rv = f->C_Verify(s, msg, sizeof(msg) - 1, sig, sig_len);
  t_check(rv == CKR_OK, "C_Verify of that signature: %s", t_rv_name(rv));

  /* Past 75 % of the TTL: a background refresh by default, none with the flag. */
  sleep_ms(ttl_ms * 3 / 4 + 300);
  n2 = find_all(f, s);
  sleep_ms(300);
  /* Past the TTL: refreshed (inline with the flag). */
  sleep_ms(ttl_ms / 4 + 300);
  n3 = find_all(f, s);
  t_check(n2 == n1 && n3 == n1, "the same objects past the soft and the hard TTL (%ld, %ld)", n2,
          n3);
  after = tasks();
  if (none) {
    t_check(threads_created == 0, "no pthread_create in the whole run (%d)", threads_created);
    t_check(before == 1 && after == 1, "one thread in /proc/self/task before and after (%d, %d)",
            before, after);
  } else {
    t_check(threads_created > 0, "control: without the flag the module did start threads (%d)",
            threads_created);
  }
  f->C_CloseSession(s);
  rv = f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "C_Finalize: %s", t_rv_name(rv));
  if (none)
    t_check(threads_created == 0 && tasks() == 1, "still no thread after C_Finalize");
  return t_finish("p11_thread_check");
}
