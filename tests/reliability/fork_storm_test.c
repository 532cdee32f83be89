/* SPDX-License-Identifier: Apache-2.0 */
/* fork_storm_test - forks while other threads hold the module's locks
 * (docs/reliability.md "Fork").
 *
 *   fork_storm_test CONFIG FORKS
 *
 * The parent initialises the module (CONFIG should turn on the audit file and a log file, so the
 * audit and log locks are taken on every signature) and signs on 8 threads without pause. Its main
 * thread forks FORKS children, one after the other, at random points of that traffic. Each child
 * calls C_Initialize (abandoning the parent's state), opens a session, finds the key, signs once,
 * verifies the signature with OpenSSL and calls C_Finalize. A child that outlives CHILD_SECONDS
 * (hung on a lock a parent thread held at fork time) has its stack printed, where gdb is installed,
 * then is killed and counted as hung; its own alarm is a later backstop. A child whose stack shows
 * it waiting on one of OpenSSL's own locks is counted apart and named in a note: OpenSSL 3.0 does
 * not re-arm its random generator's locks at fork, and no module can. Every other child must exit
 * 0 and every parent signature must verify.
 *
 * Environment: AKV_MODULE, REL_EC_LABEL, REL_EC_PUB. */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rel_common.h"

#define SIGNERS 8
#define CHILD_SECONDS 20

static struct {
  CK_FUNCTION_LIST_PTR f;
  struct rel_key key;
  const char *config;
  atomic_int stop;
  atomic_long ok, fail, bad;
} g;

static void *signer(void *arg)
{
  CK_SESSION_HANDLE s;
  (void)arg;
  if (g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
    atomic_fetch_add(&g.fail, 1);
    return NULL;
  }
  while (!atomic_load(&g.stop)) {
    struct rel_sig_result r;
    rel_sign_verify(g.f, s, REL_EC, &g.key, &r);
    if (r.rv != CKR_OK)
      atomic_fetch_add(&g.fail, 1);
    else if (!r.verified)
      atomic_fetch_add(&g.bad, 1);
    else
      atomic_fetch_add(&g.ok, 1);
  }
  g.f->C_CloseSession(s);
  return NULL;
}

/* A child that outlived CHILD_SECONDS: its stack, where gdb is installed, printed so that a hang
 * names the lock it waits on (each line prefixed "# "). Returns 1 when that lock is OpenSSL's own
 * (a CRYPTO_THREAD_* lock frame: the random generator's, which OpenSSL 3.0 does not re-arm at fork
 * and the module cannot reach; docs/reliability.md "Fork"), 0 for any other lock or no stack. */
static int show_stack(pid_t pid)
{
  char cmd[160], line[512];
  int openssl = 0, frames = 0;
  FILE *p;
  snprintf(cmd, sizeof(cmd),
           "command -v gdb >/dev/null && timeout 30 gdb -p %d -batch -ex bt 2>/dev/null", (int)pid);
  fflush(stdout);
  p = popen(cmd, "r");
  if (!p)
    return 0;
  while (fgets(line, sizeof(line), p)) {
    if (line[0] != '#')
      continue;
    /* Only the innermost frames say which lock: the first few below the futex wait. */
    if (frames++ < 6 && strstr(line, "CRYPTO_THREAD_"))
      openssl = 1;
    printf("# hung child: %s", line);
  }
  pclose(p);
  return openssl;
}

/* Exit status: 0 signed and verified; 10+n the step that failed. */
static void child_main(void)
{
  CK_SESSION_HANDLE s;
  CK_RV rv;
  struct rel_key k = {CK_INVALID_HANDLE, g.key.pub};
  struct rel_sig_result r;
  alarm(CHILD_SECONDS + 15); /* a backstop: the parent looks at a hung child first */
  rv = rel_initialize(g.f, g.config);
  if (rv != CKR_OK)
    _exit(11);
  if (g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    _exit(12);
  k.priv = rel_find(g.f, s, CKO_PRIVATE_KEY, rel_env("REL_EC_LABEL"));
  if (k.priv == CK_INVALID_HANDLE)
    _exit(13);
  rel_sign_verify(g.f, s, REL_EC, &k, &r);
  if (r.rv != CKR_OK || !r.verified)
    _exit(14);
  g.f->C_CloseSession(s);
  if (g.f->C_Finalize(NULL) != CKR_OK)
    _exit(15);
  _exit(0);
}

int main(int argc, char **argv)
{
  void *dl;
  CK_SESSION_HANDLE s;
  CK_RV rv;
  pthread_t th[SIGNERS];
  long forks, exited_ok = 0, hung = 0, hung_openssl = 0, failed = 0;
  int last_failure = 0;
  int64_t t0;

  if (argc != 3) {
    fprintf(stderr, "usage: fork_storm_test CONFIG FORKS\n");
    return 2;
  }
  g.config = argv[1];
  forks = strtol(argv[2], NULL, 10);
  g.key.pub = rel_pubkey_load(rel_env("REL_EC_PUB"));
  if (!g.key.pub || forks <= 0)
    return 2;
  g.f = rel_load(rel_env("AKV_MODULE"), &dl);
  rv = rel_initialize(g.f, g.config);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_Initialize: %s\n", t_rv_name(rv));
    return 1;
  }
  rv = g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s);
  t_check(rv == CKR_OK, "parent: C_OpenSession: %s", t_rv_name(rv));
  g.key.priv = rel_find(g.f, s, CKO_PRIVATE_KEY, rel_env("REL_EC_LABEL"));
  t_check(g.key.priv != CK_INVALID_HANDLE, "parent: key found");
  if (g.key.priv == CK_INVALID_HANDLE)
    return t_finish("fork_storm_test");
  for (int i = 0; i < SIGNERS; i++)
    if (pthread_create(&th[i], NULL, signer, NULL) != 0)
      return 1;

  t0 = rel_now_ms();
  srand((unsigned)getpid());
  for (long i = 0; i < forks; i++) {
    int status = 0;
    pid_t pid, w;
    int64_t t_end;
    /* Land the fork at a random point of the signers' traffic. */
    usleep((useconds_t)(rand() % 3000));
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
      perror("fork");
      break;
    }
    if (pid == 0)
      child_main();
    t_end = rel_now_ms() + CHILD_SECONDS * 1000;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && rel_now_ms() < t_end)
      usleep(2000);
    if (w == 0) {
      if (show_stack(pid))
        hung_openssl++;
      else
        hung++;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      hung++;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      exited_ok++;
    } else {
      failed++;
      last_failure = status;
    }
  }
  atomic_store(&g.stop, 1);
  for (int i = 0; i < SIGNERS; i++)
    pthread_join(th[i], NULL);

  t_note("%ld forks in %lld ms while %d threads signed (%ld parent signatures)", forks,
         (long long)(rel_now_ms() - t0), SIGNERS, atomic_load(&g.ok));
  t_check(hung == 0,
          "no child hung on a lock held at fork time (%ld of %ld did: killed after "
          "%d s)",
          hung, forks, CHILD_SECONDS);
  if (hung_openssl)
    t_note("%ld of %ld children hung inside OpenSSL's random generator, on a lock a parent thread "
           "held "
           "at fork time (not a module lock; docs/reliability.md \"Fork\")",
           hung_openssl, forks);
  t_check(exited_ok + hung_openssl == forks,
          "every child re-initialised, signed, verified and finalised (%ld/%ld, %ld stopped in "
          "OpenSSL; %ld failed otherwise, last status 0x%x: exit 11 init, 12 session, 13 find, "
          "14 sign, 15 finalize)",
          exited_ok, forks, hung_openssl, failed, last_failure);
  t_check(atomic_load(&g.fail) == 0 && atomic_load(&g.bad) == 0 && atomic_load(&g.ok) > 0,
          "parent signers: %ld verified, %ld failed, %ld bad", atomic_load(&g.ok),
          atomic_load(&g.fail), atomic_load(&g.bad));
  g.f->C_CloseSession(s);
  rv = g.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "parent: C_Finalize -> %s", t_rv_name(rv));
  EVP_PKEY_free(g.key.pub);
  dlclose(dl);
  return t_finish("fork_storm_test");
}
