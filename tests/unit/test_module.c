/* SPDX-License-Identifier: Apache-2.0 */
/* src/token/module.c and C_Initialize/C_Finalize: argument rules, locking callbacks, configuration
 * sources, finalisation with open sessions, the fork rule. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_helpers.h"

static int n_create, n_destroy, n_lock, n_unlock, fail_create;
static int fake_mutex;

static CK_RV m_create(CK_VOID_PTR_PTR m)
{
  if (fail_create)
    return CKR_HOST_MEMORY;
  n_create++;
  *m = &fake_mutex;
  return CKR_OK;
}
static CK_RV m_destroy(CK_VOID_PTR m)
{
  assert_ptr_equal(m, &fake_mutex);
  n_destroy++;
  return CKR_OK;
}
static CK_RV m_lock(CK_VOID_PTR m)
{
  assert_ptr_equal(m, &fake_mutex);
  n_lock++;
  return CKR_OK;
}
static CK_RV m_unlock(CK_VOID_PTR m)
{
  assert_ptr_equal(m, &fake_mutex);
  n_unlock++;
  return CKR_OK;
}

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, KV_OP_SIGN);
  n_create = n_destroy = n_lock = n_unlock = fail_create = 0;
  return 0;
}

static void test_not_initialized(void **state)
{
  CK_INFO info;
  CK_ULONG n = 0;
  CK_SESSION_HANDLE h;
  (void)state;
  assert_int_equal(akv_module_check(), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h),
                   CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_CloseSession(1), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_Login(1, CKU_USER, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(C_FindObjectsInit(1, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_null(akv_module_slot(0));
}

static void test_double_init_and_finalize_args(void **state)
{
  int dummy;
  (void)state;
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  assert_int_equal(t_init(T_CFG("")), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  assert_int_equal(C_Finalize(&dummy), CKR_ARGUMENTS_BAD);
  assert_int_equal(akv_module_check(), CKR_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  /* Everything built by C_Initialize was freed. */
  assert_int_equal(fake_kv_calls.http_new, fake_kv_calls.http_free);
  assert_int_equal(fake_kv_calls.client_new, fake_kv_calls.client_free);
  assert_int_equal(fake_kv_calls.cred_new, fake_kv_calls.cred_free);
}

static void test_mutex_callbacks(void **state)
{
  CK_C_INITIALIZE_ARGS a;
  CK_SESSION_HANDLE h;
  (void)state;

  memset(&a, 0, sizeof(a));
  a.pReserved = (void *)T_CFG("");
  /* All four callbacks or none. */
  a.CreateMutex = m_create;
  a.LockMutex = m_lock;
  assert_int_equal(C_Initialize(&a), CKR_ARGUMENTS_BAD);
  assert_int_equal(akv_module_check(), CKR_CRYPTOKI_NOT_INITIALIZED);
  a.DestroyMutex = m_destroy;
  a.UnlockMutex = m_unlock;
  /* A failing CreateMutex fails C_Initialize with its code. */
  fail_create = 1;
  assert_int_equal(C_Initialize(&a), CKR_HOST_MEMORY);
  assert_int_equal(akv_module_check(), CKR_CRYPTOKI_NOT_INITIALIZED);
  fail_create = 0;
  /* Callbacks without CKF_OS_LOCKING_OK: the application's mutex is the module lock. */
  assert_int_equal(C_Initialize(&a), CKR_OK);
  assert_int_equal(n_create, 1);
  h = t_open(0);
  assert_int_equal(C_CloseSession(h), CKR_OK);
  assert_true(n_lock >= 2);
  assert_int_equal(n_lock, n_unlock);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(n_destroy, 1);
  assert_int_equal(n_lock, n_unlock);
  /* With CKF_OS_LOCKING_OK the module uses its own locks. */
  n_create = n_lock = 0;
  a.flags = CKF_OS_LOCKING_OK;
  assert_int_equal(C_Initialize(&a), CKR_OK);
  h = t_open(0);
  assert_int_equal(C_CloseSession(h), CKR_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(n_create, 0);
  assert_int_equal(n_lock, 0);
}

static void test_config_sources(void **state)
{
  char path[] = "/tmp/akv-test-config-XXXXXX";
  const char *json = T_CFG(",\"label\":\"from-file\"");
  CK_TOKEN_INFO ti;
  int fd;
  (void)state;

  /* A malformed configuration: CKR_GENERAL_ERROR with the message logged. */
  assert_int_equal(t_init("{\"slots\": 5}"), CKR_GENERAL_ERROR);
  assert_int_equal(akv_module_check(), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(t_init("{\"slots\":[{\"url\":\"https://x.vault.azure.net\",\"bogus\":1}]}"),
                   CKR_GENERAL_ERROR);
  /* pReserved as a path. */
  fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
  close(fd);
  assert_int_equal(t_init(path), CKR_OK);
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  assert_memory_equal(ti.label, "from-file ", 10);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  unlink(path);
  /* No init args at all: the environment. */
  setenv("AKV_PKCS11_VAULT_URL", FAKE_VAULT_URL, 1);
  unsetenv("AKV_PKCS11_CONFIG");
  setenv("XDG_CONFIG_HOME", "/nonexistent-akv-test", 1);
  assert_int_equal(C_Initialize(NULL), CKR_OK);
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  assert_memory_equal(ti.label, "unit ", 5);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  unsetenv("AKV_PKCS11_VAULT_URL");
}

static void test_finalize_with_sessions(void **state)
{
  CK_SESSION_HANDLE a, b;
  CK_OBJECT_HANDLE h[8];
  CK_SESSION_INFO info;
  (void)state;
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  a = t_open(0);
  b = t_open(0);
  assert_int_equal(C_Login(a, CKU_USER, NULL, 0), CKR_OK);
  assert_int_equal(C_FindObjectsInit(b, NULL, 0), CKR_OK); /* an active operation */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(C_GetSessionInfo(a, &info), CKR_CRYPTOKI_NOT_INITIALIZED);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  assert_int_equal(C_GetSessionInfo(a, &info), CKR_SESSION_HANDLE_INVALID);
  a = t_open(0);
  assert_int_equal(C_GetSessionInfo(a, &info), CKR_OK);
  assert_int_equal(info.state, CKS_RO_PUBLIC_SESSION);
  assert_int_equal(t_find(a, NULL, 0, h, 8), 2);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

/* SHA-256("abc") through C_Digest: the digests are fetched per C_Initialize in the module's
 * library context, so this checks they exist (and belong to the live context) after every
 * (re-)initialisation. 1 when the digest is right. */
static int sha256_abc_ok(CK_SESSION_HANDLE s)
{
  static const unsigned char want[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                         0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                         0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                         0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  CK_MECHANISM m = {CKM_SHA256, NULL, 0};
  unsigned char out[64];
  CK_ULONG n = sizeof(out);
  if (C_DigestInit(s, &m) != CKR_OK || C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &n) != CKR_OK)
    return 0;
  return n == sizeof(want) && memcmp(out, want, n) == 0;
}

/* The fork rule: a child sees CKR_CRYPTOKI_NOT_INITIALIZED until its own C_Initialize, which
 * rebuilds network state without freeing the parent's handles. Results go through the exit code
 * (cmocka's asserts do not cross fork). */
static int child_checks(void)
{
  CK_INFO info;
  CK_SESSION_INFO si;
  int freed = fake_kv_calls.http_free, news = fake_kv_calls.http_new;
  CK_OBJECT_HANDLE h[8];
  CK_ULONG n = 0;
  CK_SESSION_HANDLE s = 0;

  if (C_GetInfo(&info) != CKR_CRYPTOKI_NOT_INITIALIZED)
    return 10;
  if (C_GetSessionInfo(1, &si) != CKR_CRYPTOKI_NOT_INITIALIZED)
    return 11;
  if (C_Finalize(NULL) != CKR_CRYPTOKI_NOT_INITIALIZED)
    return 12;
  if (t_init(T_CFG("")) != CKR_OK)
    return 13;
  if (fake_kv_calls.http_free != freed || fake_kv_calls.http_new != news + 1)
    return 14; /* the parent's transport abandoned, a new one built */
  if (C_GetSessionInfo(1, &si) != CKR_SESSION_HANDLE_INVALID)
    return 15;
  if (C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    return 16;
  if (C_FindObjectsInit(s, NULL, 0) != CKR_OK || C_FindObjects(s, h, 8, &n) != CKR_OK || n != 2)
    return 17;
  if (!sha256_abc_ok(s))
    return 19;
  if (C_Finalize(NULL) != CKR_OK)
    return 18;
  return 0;
}

/* Waits (bounded) for a child; its exit code, or -1 when it did not finish or did not exit. */
static int wait_child(pid_t pid)
{
  int status = -1, i;
  for (i = 0; i < 3000; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      break;
    usleep(10000);
  }
  if (i == 3000) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A child that initialised is itself a parent: its own child (a second fork generation) is not
 * initialised, and the re-initialised child keeps working while and after that grandchild runs. */
static int child_forks_again(void)
{
  CK_OBJECT_HANDLE h[8];
  CK_ULONG n = 0;
  CK_SESSION_HANDLE s = 0;
  pid_t pid;
  int rc;

  if (t_init(T_CFG("")) != CKR_OK)
    return 20;
  if (C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
    return 21;
  pid = fork();
  if (pid < 0)
    return 22;
  if (pid == 0)
    _exit(child_checks());
  rc = wait_child(pid);
  if (rc != 0)
    return rc > 0 ? rc : 23;
  if (C_FindObjectsInit(s, NULL, 0) != CKR_OK || C_FindObjects(s, h, 8, &n) != CKR_OK || n != 2 ||
      C_FindObjectsFinal(s) != CKR_OK)
    return 24;
  if (t_init(T_CFG("")) != CKR_CRYPTOKI_ALREADY_INITIALIZED)
    return 25;
  if (C_Finalize(NULL) != CKR_OK)
    return 26;
  return 0;
}

static void test_fork_twice(void **state)
{
  pid_t pid;
  (void)state;

  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(child_forks_again());
  assert_int_equal(wait_child(pid), 0);
  /* The parent is still initialised (its generation did not move) and can re-initialise. */
  assert_int_equal(t_init(T_CFG("")), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  assert_true(sha256_abc_ok(t_open(0)));
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  assert_true(sha256_abc_ok(t_open(0)));
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

static void test_fork(void **state)
{
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE h[8];
  pid_t pid;
  (void)state;

  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  s = t_open(0);
  assert_int_equal(t_find(s, NULL, 0, h, 8), 2);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(child_checks());
  assert_int_equal(wait_child(pid), 0);
  /* The parent is unaffected. */
  assert_int_equal(t_find(s, NULL, 0, h, 8), 2);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_not_initialized, setup),
      cmocka_unit_test_setup(test_double_init_and_finalize_args, setup),
      cmocka_unit_test_setup(test_mutex_callbacks, setup),
      cmocka_unit_test_setup(test_config_sources, setup),
      cmocka_unit_test_setup(test_finalize_with_sessions, setup),
      cmocka_unit_test_setup(test_fork, setup),
      cmocka_unit_test_setup(test_fork_twice, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
