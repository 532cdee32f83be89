/* src/session.c and src/p11/session.c: sessions, login state machine, session info. */
#include <pthread.h>

#include "model_helpers.h"

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, KV_OP_SIGN);
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static CK_STATE state_of(CK_SESSION_HANDLE h)
{
  CK_SESSION_INFO info;
  assert_int_equal(C_GetSessionInfo(h, &info), CKR_OK);
  return info.state;
}

static CK_ULONG token_sessions(CK_ULONG *rw)
{
  CK_TOKEN_INFO ti;
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  *rw = ti.ulRwSessionCount;
  return ti.ulSessionCount;
}

static void test_open_close(void **state)
{
  CK_SESSION_HANDLE a, b, c = 0;
  CK_SESSION_INFO info;
  CK_ULONG rw;
  (void)state;

  assert_int_equal(C_OpenSession(0, 0, NULL, NULL, &c), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_OpenSession(7, CKF_SERIAL_SESSION, NULL, NULL, &c), CKR_SLOT_ID_INVALID);
  a = t_open(0);
  b = t_open(CKF_RW_SESSION);
  assert_true(a != b);
  assert_int_equal(token_sessions(&rw), 2);
  assert_int_equal(rw, 1);
  assert_int_equal(C_GetSessionInfo(b, &info), CKR_OK);
  assert_int_equal(info.slotID, 0);
  assert_int_equal(info.flags, CKF_SERIAL_SESSION | CKF_RW_SESSION);
  assert_int_equal(info.state, CKS_RW_PUBLIC_SESSION);
  assert_int_equal(info.ulDeviceError, 0);
  assert_int_equal(state_of(a), CKS_RO_PUBLIC_SESSION);
  assert_int_equal(C_GetSessionInfo(a, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_CloseSession(a), CKR_OK);
  assert_int_equal(C_CloseSession(a), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_GetSessionInfo(a, &info), CKR_SESSION_HANDLE_INVALID);
  /* Handles are never reused. */
  c = t_open(0);
  assert_true(c != a && c != b);
  assert_int_equal(C_CloseAllSessions(3), CKR_SLOT_ID_INVALID);
  assert_int_equal(C_CloseAllSessions(0), CKR_OK);
  assert_int_equal(token_sessions(&rw), 0);
  assert_int_equal(C_CloseSession(b), CKR_SESSION_HANDLE_INVALID);
}

static void test_login_state_machine(void **state)
{
  CK_SESSION_HANDLE ro, rw;
  (void)state;

  ro = t_open(0);
  rw = t_open(CKF_RW_SESSION);
  assert_int_equal(C_Logout(ro), CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(C_Login(ro, CKU_USER, NULL, 5), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_Login(ro, 77, (CK_UTF8CHAR_PTR) "x", 1), CKR_USER_TYPE_INVALID);
  assert_int_equal(C_Login(ro, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "x", 1),
                   CKR_OPERATION_NOT_INITIALIZED);
  /* No security officer; a read-only session blocks SO login first. */
  assert_int_equal(C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "x", 1), CKR_SESSION_READ_ONLY_EXISTS);
  /* Any PIN for the user; the state is shared by the token's sessions. */
  assert_int_equal(C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "anything", 8), CKR_OK);
  assert_int_equal(state_of(ro), CKS_RO_USER_FUNCTIONS);
  assert_int_equal(state_of(rw), CKS_RW_USER_FUNCTIONS);
  assert_int_equal(C_Login(rw, CKU_USER, NULL, 0), CKR_USER_ALREADY_LOGGED_IN);
  assert_int_equal(C_Login(rw, CKU_SO, NULL, 0), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
  assert_int_equal(C_Logout(rw), CKR_OK);
  assert_int_equal(state_of(ro), CKS_RO_PUBLIC_SESSION);
  assert_int_equal(C_Login(rw, CKU_USER, NULL, 0), CKR_OK); /* protected path form */
  /* Closing the token's last session logs out. */
  assert_int_equal(C_CloseSession(ro), CKR_OK);
  assert_int_equal(state_of(rw), CKS_RW_USER_FUNCTIONS);
  assert_int_equal(C_CloseSession(rw), CKR_OK);
  ro = t_open(0);
  assert_int_equal(state_of(ro), CKS_RO_PUBLIC_SESSION);
  assert_int_equal(C_CloseSession(ro), CKR_OK);
  /* SO with only RW sessions: no SO PIN can match. */
  rw = t_open(CKF_RW_SESSION);
  assert_int_equal(C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "x", 1), CKR_PIN_INCORRECT);
}

static void test_private_session_objects(void **state)
{
  CK_SESSION_HANDLE s = t_open(0);
  CK_ULONG cls = CKO_SECRET_KEY, kt = CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE;
  unsigned char v[8] = "12345678";
  CK_ATTRIBUTE t[4] = {{CKA_CLASS, &cls, sizeof(cls)},
                       {CKA_KEY_TYPE, &kt, sizeof(kt)},
                       {CKA_VALUE, v, sizeof(v)},
                       {CKA_PRIVATE, &yes, sizeof(yes)}};
  CK_OBJECT_HANDLE h, all[8];
  (void)state;

  /* CKA_PRIVATE objects need a logged-in user, and are hidden after logout. */
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(C_Login(s, CKU_USER, NULL, 0), CKR_OK);
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 1);
  assert_int_equal(C_Logout(s), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 0);
  assert_int_equal(C_DestroyObject(s, h), CKR_OBJECT_HANDLE_INVALID);
}

static void test_device_error(void **state)
{
  CK_SESSION_HANDLE s = t_open(0);
  CK_SESSION_INFO info;
  (void)state;

  fake_kv_fail(KV_E_SERVER);
  assert_int_equal(C_FindObjectsInit(s, NULL, 0), CKR_DEVICE_ERROR);
  fake_kv_fail(KV_OK);
  assert_int_equal(C_GetSessionInfo(s, &info), CKR_OK);
  assert_int_equal(info.ulDeviceError, 503);
  /* A failed crypto call records its status through akv_session_fail. */
  {
    struct akv_session *as = NULL;
    fake_kv_fail(KV_E_NOT_FOUND);
    t_clock_now += 1000000; /* past the stale window: the failure reaches the caller */
    assert_int_equal(C_FindObjectsInit(s, NULL, 0), CKR_DEVICE_ERROR);
    assert_int_equal(akv_session_acquire(s, &as), CKR_OK);
    assert_int_equal(akv_session_fail(as, KV_E_NOT_FOUND), CKR_KEY_HANDLE_INVALID);
    akv_session_release(as);
    fake_kv_fail(KV_OK);
  }
  assert_int_equal(C_GetSessionInfo(s, &info), CKR_OK);
  assert_int_equal(info.ulDeviceError, 404);
}

static void test_not_supported_state(void **state)
{
  CK_SESSION_HANDLE s = t_open(0);
  CK_ULONG len = 0;
  CK_BYTE st[4] = {0};
  (void)state;

  assert_int_equal(C_GetOperationState(s, NULL, NULL), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_GetOperationState(s, NULL, &len), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_GetOperationState(999, NULL, &len), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_SetOperationState(s, NULL, 0, 0, 0), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_SetOperationState(s, st, sizeof(st), 0, 0), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
  assert_int_equal(C_CancelFunction(s), CKR_FUNCTION_NOT_PARALLEL);
  assert_int_equal(C_GetFunctionStatus(999), CKR_SESSION_HANDLE_INVALID);
  assert_int_equal(C_InitPIN(s, NULL, 3), CKR_ARGUMENTS_BAD);
  assert_int_equal(C_InitPIN(s, (CK_UTF8CHAR_PTR) "1234", 4), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_SetPIN(s, NULL, 0, NULL, 0), CKR_FUNCTION_NOT_SUPPORTED);
  assert_int_equal(C_SetPIN(999, NULL, 0, NULL, 0), CKR_SESSION_HANDLE_INVALID);
}

static void test_read_only_slot(void **state)
{
  CK_SESSION_HANDLE s = 0;
  (void)state;
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_CFG(",\"read_only\":true")), CKR_OK);
  assert_int_equal(C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                   CKR_TOKEN_WRITE_PROTECTED);
  s = t_open(0);
  {
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tok = {CKA_TOKEN, &yes, sizeof(yes)};
    CK_OBJECT_HANDLE h;
    CK_OBJECT_HANDLE priv = t_find_one(s, CKO_PRIVATE_KEY, "rsa1");
    assert_int_equal(C_CreateObject(s, &tok, 1, &h), CKR_TOKEN_WRITE_PROTECTED);
    assert_int_equal(C_DestroyObject(s, priv), CKR_TOKEN_WRITE_PROTECTED);
    assert_int_equal(C_SetAttributeValue(s, priv, &tok, 1), CKR_TOKEN_WRITE_PROTECTED);
  }
}

/* Sessions opened, searched, read and closed from several threads at once, while another thread
 * logs in and out and closes everything: no crash, no deadlock, consistent counts. */
static void *worker(void *arg)
{
  CK_OBJECT_HANDLE h[8];
  CK_ULONG n, cls;
  CK_SESSION_HANDLE s;
  int i, *errors = arg;
  for (i = 0; i < 200; i++) {
    if (C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
      (*errors)++;
      continue;
    }
    /* The session may be closed under us by C_CloseAllSessions: only that error is allowed. */
    if (C_FindObjectsInit(s, NULL, 0) == CKR_OK && C_FindObjects(s, h, 8, &n) == CKR_OK && n == 2 &&
        C_FindObjectsFinal(s) == CKR_OK) {
      CK_RV rv = C_GetAttributeValue(s, h[0], &(CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)}, 1);
      if (rv != CKR_OK && rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_SESSION_CLOSED)
        (*errors)++;
    }
    (void)C_CloseSession(s);
  }
  return NULL;
}

static void test_threads(void **state)
{
  pthread_t th[4];
  int errors[4] = {0}, i;
  CK_SESSION_HANDLE s;
  CK_ULONG rw;
  (void)state;
  for (i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker, &errors[i]), 0);
  for (i = 0; i < 100; i++) {
    s = t_open(0);
    (void)C_Login(s, CKU_USER, NULL, 0);
    (void)C_Logout(s);
    if (i % 10 == 0)
      assert_int_equal(C_CloseAllSessions(0), CKR_OK);
    else
      (void)C_CloseSession(s);
  }
  for (i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(errors[i], 0);
  }
  assert_int_equal(C_CloseAllSessions(0), CKR_OK);
  assert_int_equal(token_sessions(&rw), 0);
  assert_int_equal(rw, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_login_state_machine, setup, teardown),
      cmocka_unit_test_setup_teardown(test_private_session_objects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_device_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_supported_state, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_only_slot, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
