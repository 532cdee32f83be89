/* SPDX-License-Identifier: Apache-2.0 */
/* fork_test - fork safety (docs/reliability.md "Fork").
 *
 *   fork_test CONFIG ROUNDS
 *
 * The parent initialises the module, signs, forks. The child, without C_Initialize, gets
 * CKR_CRYPTOKI_NOT_INITIALIZED from C_GetSlotList, C_OpenSession and C_Sign (on the parent's
 * session); after C_Initialize it finds the key and signs (verified with OpenSSL against the
 * vault's public key). While the child signs the first time the parent is paused, so that the
 * child's use of sockets can be observed alone: every socket the child inherited has sent exactly
 * as many bytes after the child's signing as before it (TCP_INFO tcpi_bytes_sent), and the child
 * owns at least one new socket connected to the vault's port (/proc/self/fd and /proc/net/tcp);
 * the inherited connections are close-on-exec.
 * Then parent and child sign at the same time, and the parent signs again after the child exited.
 * Every signature is verified.
 *
 * The emulator's connection counter for the vault grows during that phase too.
 *
 * Environment: AKV_MODULE, EMU_VAULT_URL, EMU_VAULT_NAME, EMU_STATS, EMU_CA, REL_EC_LABEL,
 * REL_EC_PUB. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rel_common.h"

#define MAX_SOCKS 256

struct sock {
  int fd;
  int cloexec;
  unsigned long inode;
  unsigned long long sent; /* tcpi_bytes_sent */
  int have_sent;
};

/* What the child reports to the parent over a pipe. */
struct child_report {
  int phase;
  CK_RV rv_slots, rv_open, rv_sign, rv_init, rv_old_session;
  long signed_ok, sign_fail, bad_sig;
  int n_inherited, n_inherited_tcp, n_inherited_used, n_new_to_vault, n_inherited_no_cloexec;
};

static unsigned long socket_inode(int fd)
{
  char path[64], target[128];
  ssize_t n;
  unsigned long ino = 0;
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  n = readlink(path, target, sizeof(target) - 1);
  if (n <= 0)
    return 0;
  target[n] = '\0';
  if (sscanf(target, "socket:[%lu]", &ino) != 1)
    return 0;
  return ino;
}

/* The process's socket fds with their TCP bytes-sent counter (TCP sockets only have one). */
static int list_sockets(struct sock *out, int max)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) && n < max) {
    int fd = atoi(e->d_name);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    unsigned long ino;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
      continue;
    ino = socket_inode(fd);
    if (!ino)
      continue;
    memset(&out[n], 0, sizeof(out[n]));
    out[n].fd = fd;
    out[n].inode = ino;
    out[n].cloexec = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof(ti.tcpi_bytes_sent)) {
      out[n].sent = ti.tcpi_bytes_sent;
      out[n].have_sent = 1;
    }
    n++;
  }
  closedir(d);
  return n;
}

/* 1 when the socket with this inode is a TCP connection to 127.0.0.1:port (/proc/net/tcp). */
static int inode_connected_to(unsigned long inode, unsigned port)
{
  FILE *f = fopen("/proc/net/tcp", "r");
  char line[512];
  int found = 0;
  if (!f)
    return 0;
  while (!found && fgets(line, sizeof(line), f)) {
    unsigned rport = 0, st = 0;
    unsigned long ino = 0;
    char rem[64];
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
    if (sscanf(line, " %*s %*s %63s %x %*s %*s %*s %*u %*u %lu", rem, &st, &ino) != 3)
      continue;
    if (ino != inode)
      continue;
    if (sscanf(strchr(rem, ':') ? strchr(rem, ':') + 1 : "", "%x", &rport) == 1 && rport == port &&
        st == 1 /* ESTABLISHED */)
      found = 1;
  }
  fclose(f);
  return found;
}

static unsigned vault_port(void)
{
  const char *url = rel_env("EMU_VAULT_URL");
  const char *c = strrchr(url, ':');
  return c ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

static struct {
  CK_FUNCTION_LIST_PTR f;
  struct rel_key key;
  const char *label;
  const char *config;
  long rounds;
} g;

/* Opens a session, finds the key, makes `rounds` signatures and verifies each. */
static void sign_rounds(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, long rounds, long *ok,
                        long *fail, long *bad)
{
  struct rel_key k = {priv, g.key.pub};
  for (long i = 0; i < rounds; i++) {
    struct rel_sig_result r;
    rel_sign_verify(g.f, s, REL_EC, &k, &r);
    if (r.rv != CKR_OK)
      (*fail)++;
    else if (!r.verified)
      (*bad)++;
    else
      (*ok)++;
  }
}

static int write_all(int fd, const void *p, size_t n)
{
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads exactly n bytes within timeout_ms; -1 on timeout, EOF or error. */
static int read_all(int fd, void *p, size_t n, int timeout_ms)
{
  char *c = p;
  int64_t end = rel_now_ms() + timeout_ms;
  while (n) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int64_t left = end - rel_now_ms();
    ssize_t r;
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
      return -1;
    r = read(fd, c, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static void child_main(int to_parent, int from_parent, CK_SESSION_HANDLE parent_sess,
                       CK_OBJECT_HANDLE parent_key)
{
  struct child_report rep;
  struct sock before[MAX_SOCKS], after[MAX_SOCKS];
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE priv;
  CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
  unsigned char dg[32] = {1}, sig[256];
  CK_ULONG sig_len = sizeof(sig);
  int nb, na;
  unsigned port = vault_port();
  char go;

  memset(&rep, 0, sizeof(rep));
  rep.phase = 1;
  /* Without C_Initialize in this process, nothing works, not even the parent's handles. */
  rep.rv_slots = g.f->C_GetSlotList(CK_TRUE, slots, &n);
  rep.rv_open = g.f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
  rep.rv_sign = g.f->C_SignInit(parent_sess, &mech, parent_key);
  if (rep.rv_sign == CKR_OK)
    rep.rv_sign = g.f->C_Sign(parent_sess, dg, sizeof(dg), sig, &sig_len);

  nb = list_sockets(before, MAX_SOCKS);
  rep.rv_init = rel_initialize(g.f, g.config);
  if (rep.rv_init == CKR_OK) {
    rep.rv_old_session = g.f->C_CloseSession(parent_sess);
    s = CK_INVALID_HANDLE;
    if (g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK) {
      priv = rel_find(g.f, s, CKO_PRIVATE_KEY, g.label);
      sign_rounds(s, priv, g.rounds, &rep.signed_ok, &rep.sign_fail, &rep.bad_sig);
    } else {
      rep.sign_fail = g.rounds;
    }
  }
  na = list_sockets(after, MAX_SOCKS);
  rep.n_inherited = nb;
  for (int i = 0; i < nb; i++) {
    if (!before[i].have_sent)
      continue;
    rep.n_inherited_tcp++;
    if (!before[i].cloexec)
      rep.n_inherited_no_cloexec++;
    for (int j = 0; j < na; j++)
      if (after[j].inode == before[i].inode &&
          (!after[j].have_sent || after[j].sent != before[i].sent))
        rep.n_inherited_used++;
  }
  for (int j = 0; j < na; j++) {
    int inherited = 0;
    for (int i = 0; i < nb; i++)
      if (before[i].inode == after[j].inode)
        inherited = 1;
    if (!inherited && inode_connected_to(after[j].inode, port))
      rep.n_new_to_vault++;
  }
  if (write_all(to_parent, &rep, sizeof(rep)) != 0)
    _exit(3);

  /* Phase 2: sign while the parent signs too. */
  if (read_all(from_parent, &go, 1, 60000) != 0)
    _exit(4);
  memset(&rep, 0, sizeof(rep));
  rep.phase = 2;
  s = CK_INVALID_HANDLE;
  rep.rv_init = g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rep.rv_init == CKR_OK) {
    priv = rel_find(g.f, s, CKO_PRIVATE_KEY, g.label);
    sign_rounds(s, priv, g.rounds, &rep.signed_ok, &rep.sign_fail, &rep.bad_sig);
  } else {
    rep.sign_fail = g.rounds;
  }
  g.f->C_Finalize(NULL);
  if (write_all(to_parent, &rep, sizeof(rep)) != 0)
    _exit(3);
  _exit(0);
}

struct parent_signer {
  pthread_t th;
  atomic_int stop;
  atomic_int rounds; /* rounds finished, read by the main thread */
  CK_OBJECT_HANDLE priv;
  long ok, fail, bad;
};

static void *parent_sign_loop(void *arg)
{
  struct parent_signer *ps = arg;
  CK_SESSION_HANDLE s;
  if (g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
    ps->fail++;
    return NULL;
  }
  while (!atomic_load(&ps->stop)) {
    sign_rounds(s, ps->priv, 1, &ps->ok, &ps->fail, &ps->bad);
    atomic_fetch_add(&ps->rounds, 1);
  }
  g.f->C_CloseSession(s);
  return NULL;
}

int main(int argc, char **argv)
{
  void *dl;
  CK_SESSION_HANDLE s;
  CK_RV rv;
  int up[2], down[2], status = 0;
  pid_t pid;
  long ok = 0, fail = 0, bad = 0;
  struct child_report rep;
  struct parent_signer ps;
  int64_t t_end;
  long conns_before, conns_after;

  if (argc != 3) {
    fprintf(stderr, "usage: fork_test CONFIG ROUNDS\n");
    return 2;
  }
  g.config = argv[1];
  g.rounds = strtol(argv[2], NULL, 10);
  g.label = rel_env("REL_EC_LABEL");
  g.key.pub = rel_pubkey_load(rel_env("REL_EC_PUB"));
  if (!g.key.pub || g.rounds <= 0)
    return 2;
  g.f = rel_load(rel_env("AKV_MODULE"), &dl);
  rv = rel_initialize(g.f, g.config);
  if (rv != CKR_OK) {
    fprintf(stderr, "FATAL: C_Initialize: %s\n", t_rv_name(rv));
    return 1;
  }
  rv = g.f->C_OpenSession(rel_first_slot(g.f), CKF_SERIAL_SESSION, NULL, NULL, &s);
  t_check(rv == CKR_OK, "parent: C_OpenSession: %s", t_rv_name(rv));
  g.key.priv = rel_find(g.f, s, CKO_PRIVATE_KEY, g.label);
  t_check(g.key.priv != CK_INVALID_HANDLE, "parent: key '%s' found", g.label);
  sign_rounds(s, g.key.priv, g.rounds, &ok, &fail, &bad);
  t_check(ok == g.rounds, "parent before fork: %ld/%ld signatures verified (%ld failed, %ld bad)",
          ok, g.rounds, fail, bad);

  conns_before = rel_emu_connections(rel_env("EMU_VAULT_NAME"));
  if (pipe(up) != 0 || pipe(down) != 0)
    return 1;
  fflush(stdout);
  pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    close(up[0]);
    close(down[1]);
    child_main(up[1], down[0], s, g.key.priv);
  }
  close(up[1]);
  close(down[0]);

  /* Phase 1: the parent is idle while the child initialises and signs alone. */
  if (read_all(up[0], &rep, sizeof(rep), 60000) != 0 || rep.phase != 1) {
    t_check(0, "child phase 1 report received");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return t_finish("fork_test");
  }
  t_check(rep.rv_slots == CKR_CRYPTOKI_NOT_INITIALIZED,
          "child without C_Initialize: C_GetSlotList -> %s", t_rv_name(rep.rv_slots));
  t_check(rep.rv_open == CKR_CRYPTOKI_NOT_INITIALIZED,
          "child without C_Initialize: C_OpenSession -> %s", t_rv_name(rep.rv_open));
  t_check(rep.rv_sign == CKR_CRYPTOKI_NOT_INITIALIZED,
          "child without C_Initialize: C_SignInit/C_Sign on the parent's session -> %s",
          t_rv_name(rep.rv_sign));
  t_check(rep.rv_init == CKR_OK, "child: C_Initialize -> %s", t_rv_name(rep.rv_init));
  t_check(rep.rv_old_session == CKR_SESSION_HANDLE_INVALID,
          "child after C_Initialize: the parent's session handle is not valid here -> 0x%lx",
          (unsigned long)rep.rv_old_session);
  t_check(rep.signed_ok == g.rounds, "child: %ld/%ld signatures verified (%ld failed, %ld bad)",
          rep.signed_ok, g.rounds, rep.sign_fail, rep.bad_sig);
  t_note("child inherited %d socket(s), %d of them TCP with a byte counter", rep.n_inherited,
         rep.n_inherited_tcp);
  t_check(rep.n_inherited_tcp > 0,
          "the child inherited the parent's live connections (%d), so "
          "the next check means something",
          rep.n_inherited_tcp);
  t_check(rep.n_inherited_used == 0,
          "no inherited socket sent a byte while the child signed "
          "(%d did)",
          rep.n_inherited_used);
  t_check(rep.n_inherited_no_cloexec == 0,
          "every inherited connection is close-on-exec (%d are "
          "not)",
          rep.n_inherited_no_cloexec);
  t_check(rep.n_new_to_vault > 0,
          "the child signed over its own new connection(s) to the vault "
          "(%d)",
          rep.n_new_to_vault);
  conns_after = rel_emu_connections(rel_env("EMU_VAULT_NAME"));
  t_check(conns_before >= 0 && conns_after > conns_before,
          "the vault (emulator stats) accepted "
          "new connections while only the child was active (%ld -> %ld)",
          conns_before, conns_after);

  /* Phase 2: both sign at the same time. */
  memset(&ps, 0, sizeof(ps));
  ps.priv = g.key.priv;
  if (pthread_create(&ps.th, NULL, parent_sign_loop, &ps) != 0)
    return 1;
  /* The child starts only once the parent's signer has finished a round, so that the two really
   * overlap however loaded the machine is (bounded: 30 s). */
  t_end = rel_now_ms() + 30000;
  while (atomic_load(&ps.rounds) == 0 && rel_now_ms() < t_end)
    usleep(5000);
  if (write_all(down[1], "g", 1) != 0 || read_all(up[0], &rep, sizeof(rep), 60000) != 0 ||
      rep.phase != 2) {
    t_check(0, "child phase 2 report received");
    rep.signed_ok = -1;
  }
  atomic_store(&ps.stop, 1);
  pthread_join(ps.th, NULL);
  t_check(rep.signed_ok == g.rounds,
          "child, while the parent signs: %ld/%ld verified (%ld "
          "failed, %ld bad)",
          rep.signed_ok, g.rounds, rep.sign_fail, rep.bad_sig);
  t_check(ps.fail == 0 && ps.bad == 0 && ps.ok > 0,
          "parent, while the child signs: %ld "
          "verified, %ld failed, %ld bad",
          ps.ok, ps.fail, ps.bad);
  t_end = rel_now_ms() + 30000;
  while (waitpid(pid, &status, WNOHANG) == 0 && rel_now_ms() < t_end)
    usleep(20000);
  t_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exited cleanly (status 0x%x)",
          status);

  /* After: the parent's own connections and state are intact. */
  ok = fail = bad = 0;
  sign_rounds(s, g.key.priv, g.rounds, &ok, &fail, &bad);
  t_check(ok == g.rounds, "parent after the child exited: %ld/%ld verified (%ld failed, %ld bad)",
          ok, g.rounds, fail, bad);
  g.f->C_CloseSession(s);
  rv = g.f->C_Finalize(NULL);
  t_check(rv == CKR_OK, "parent: C_Finalize -> %s", t_rv_name(rv));
  EVP_PKEY_free(g.key.pub);
  dlclose(dl);
  return t_finish("fork_test");
}
