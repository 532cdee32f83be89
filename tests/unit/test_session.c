/* SPDX-License-Identifier: Apache-2.0 */
/* src/token/session.c and src/p11/session.c: sessions, login state machine, session info. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "token/pin.h"
#include "model_helpers.h"
#include "util/config.h"

/* mkpasswd -m sha512crypt 1234 and mkpasswd -m yescrypt 1234. */
#define PIN_SHA512                                                                                 \
  "$6$DxvxumH2nyRvmnil$XjngemQt8/.nhsQpuMPrKZ7N6FLP7CMQyNpWpRJLeL0Nvq1RQf0dZeytrdYdZIQph2SYqV8hL"  \
  "k0VMKIcl3Cl11"
#define PIN_YESCRYPT "$y$j9T$IBeDPPZ8GLXQlEiyyeqJm/$AQ0vtvnHpTLJIVArxm9pCRHnl1uqUxtXvQKLxYKuz/9"
#define T_LOGIN_CFG                                                                                \
  T_CFG(",\"objects\":[\"keys\",\"secrets\"],\"login\":\"required\","                              \
        "\"pin_hash\":\"" PIN_SHA512 "\"")

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

  /* A token without login cannot keep anything private: the template is refused, logged in or
   * not (docs/security.md "Login"). */
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_Login(s, CKU_USER, NULL, 0), CKR_OK);
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_CreateObject(s, t, 3, &h), CKR_OK); /* public by default */
  assert_int_equal(C_Logout(s), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 1);

  /* With login required: CKA_PRIVATE needs the user, and private objects die at logout. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_LOGIN_CFG), CKR_OK);
  s = t_open(0);
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(C_CreateObject(s, t, 3, &h), CKR_USER_NOT_LOGGED_IN); /* private by default */
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  assert_int_equal(C_CreateObject(s, t, 4, &h), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 1);
  assert_int_equal(C_Logout(s), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 0);
  assert_int_equal(C_DestroyObject(s, h), CKR_OBJECT_HANDLE_INVALID);
  /* Logged in again, the object is gone (destroyed at logout, not hidden). */
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  assert_int_equal(t_find(s, t, 1, all, 8), 0);
  assert_int_equal(C_DestroyObject(s, h), CKR_OBJECT_HANDLE_INVALID);
}

static CK_FLAGS token_flags(void)
{
  CK_TOKEN_INFO ti;
  assert_int_equal(C_GetTokenInfo(0, &ti), CKR_OK);
  return ti.flags;
}

static CK_BBOOL attr_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
  CK_BBOOL b = 0xAA;
  assert_int_equal(t_attr(s, o, type, &b, sizeof(b)), sizeof(b));
  return b;
}

static CK_ULONG count_class(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls)
{
  CK_OBJECT_HANDLE h[16];
  CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
  return t_find(s, &t, 1, h, 16);
}

static void test_pin_check(void **state)
{
  (void)state;
  assert_int_equal(akv_pin_check(PIN_SHA512, (const unsigned char *)"1234", 4), 1);
  assert_int_equal(akv_pin_check(PIN_SHA512, (const unsigned char *)"1235", 4), 0);
  assert_int_equal(akv_pin_check(PIN_SHA512, (const unsigned char *)"12345", 5), 0);
  assert_int_equal(akv_pin_check(PIN_SHA512, (const unsigned char *)"123", 3), 0);
  assert_int_equal(akv_pin_check(PIN_SHA512, NULL, 0), 0);
  assert_int_equal(akv_pin_check(PIN_YESCRYPT, (const unsigned char *)"1234", 4), 1);
  assert_int_equal(akv_pin_check(PIN_YESCRYPT, (const unsigned char *)"4321", 4), 0);
  /* A PIN with a NUL inside is not the PIN before the NUL. */
  assert_int_equal(akv_pin_check(PIN_SHA512, (const unsigned char *)"1234\0x", 6), 0);
  /* Longer than any token PIN (ulMaxPinLen). */
  {
    unsigned char big[300];
    memset(big, '1', sizeof(big));
    assert_int_equal(akv_pin_check(PIN_SHA512, big, sizeof(big)), 0);
  }
  /* A hash that crypt cannot use is an error, never a match. */
  assert_int_equal(akv_pin_check("$6$", (const unsigned char *)"1234", 4), -1);
  assert_int_equal(akv_pin_check("not-a-hash", (const unsigned char *)"1234", 4), -1);
  assert_int_equal(akv_pin_check(NULL, (const unsigned char *)"1234", 4), -1);
}

static void test_pin_delay(void **state)
{
  (void)state;
  assert_int_equal(akv_pin_delay_ms(0), 0);
  assert_int_equal(akv_pin_delay_ms(1), 250);
  assert_int_equal(akv_pin_delay_ms(2), 500);
  assert_int_equal(akv_pin_delay_ms(3), 1000);
  assert_int_equal(akv_pin_delay_ms(4), 2000);
  assert_int_equal(akv_pin_delay_ms(5), 4000);
  assert_int_equal(akv_pin_delay_ms(6), 4000);
  assert_int_equal(akv_pin_delay_ms(64), 4000);
  assert_int_equal(akv_pin_delay_ms(~0u), 4000);
}

/* The configuration error for json, or "" when it loads. */
static const char *cfg_error(const char *json)
{
  static char err[1024];
  struct akv_config *cfg = NULL;
  err[0] = '\0';
  if (akv_config_parse(json, "/etc/test.json", &cfg, err, sizeof(err)) == 0) {
    akv_config_free(cfg);
    return "";
  }
  return err;
}

#define SLOT_URL "{\"url\":\"" FAKE_VAULT_URL "\""

static void test_login_config(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  const char *e;
  (void)state;

  e = cfg_error("{\"slots\":[" SLOT_URL ",\"login\":\"required\"}]}");
  assert_non_null(strstr(e, "/etc/test.json"));
  assert_non_null(strstr(e, "slots[0].login"));
  assert_non_null(strstr(e, "pin_hash"));
  assert_non_null(strstr(e, "mkpasswd"));
  e = cfg_error("{\"slots\":[" SLOT_URL ",\"login\":\"required\",\"pin_hash\":"
                "\"$1$o82DpeOk$AW1IDz5fCzXNW9tlgGyg30\"}]}");
  assert_non_null(strstr(e, "slots[0].pin_hash"));
  assert_non_null(strstr(e, "mkpasswd -m yescrypt"));
  e = cfg_error("{\"slots\":[" SLOT_URL ",\"login\":\"required\",\"pin_hash\":\"1234\"}]}");
  assert_non_null(strstr(e, "slots[0].pin_hash"));
  assert_null(strstr(e, "1234")); /* a clear PIN written there is never echoed */
  e = cfg_error("{\"slots\":[" SLOT_URL ",\"pin_hash\":\"" PIN_SHA512 "\"}]}");
  assert_non_null(strstr(e, "slots[0].pin_hash"));
  assert_non_null(strstr(e, "\"login\": \"required\""));
  e = cfg_error("{\"slots\":[" SLOT_URL ",\"login\":\"maybe\"}]}");
  assert_non_null(strstr(e, "slots[0].login"));
  assert_non_null(strstr(e, "\"required\""));
  e = cfg_error("{\"login\":\"required\",\"slots\":[" SLOT_URL "}]}");
  assert_non_null(strstr(e, "login"));
  assert_non_null(strstr(e, "pin_hash"));

  /* Top-level fields are every slot's default; a slot may override them. */
  assert_int_equal(akv_config_parse("{\"login\":\"required\",\"pin_hash\":\"" PIN_YESCRYPT "\","
                                    "\"slots\":[" SLOT_URL "},{\"login\":\"none\","
                                    "\"url\":\"https://two.vault.azure.net\"}]}",
                                    "/etc/test.json", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->slots[0].login_required, 1);
  assert_string_equal(cfg->slots[0].pin_hash, PIN_YESCRYPT);
  assert_int_equal(cfg->slots[1].login_required, 0);
  akv_config_free(cfg);
  /* Default: no login, as before. */
  assert_int_equal(
      akv_config_parse("{\"slots\":[" SLOT_URL "}]}", "/etc/test.json", &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->slots[0].login_required, 0);
  assert_null(cfg->slots[0].pin_hash);
  akv_config_free(cfg);
}

/* CKA_PRIVATE in templates is honoured or refused, never dropped (docs/security.md "Login"). */
static void test_login_templates(void **state)
{
  static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  static CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  CK_OBJECT_CLASS data = CKO_DATA;
  CK_ULONG len32 = 32;
  CK_MECHANISM kp = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, aes = {CKM_AES_KEY_GEN, NULL, 0};
  CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1},
                        {CKA_EC_PARAMS, oid_p256, sizeof(oid_p256)},
                        {CKA_LABEL, "tk-ec", 5},
                        {CKA_PRIVATE, &no, 1}};
  CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1}, {CKA_LABEL, "tk-ec", 5}, {CKA_PRIVATE, &yes, 1}};
  CK_ATTRIBUTE dt[] = {{CKA_CLASS, &data, sizeof(data)},
                       {CKA_TOKEN, &yes, 1},
                       {CKA_LABEL, "tk-data", 7},
                       {CKA_VALUE, "v", 1},
                       {CKA_PRIVATE, &yes, 1}};
  CK_ATTRIBUTE st[] = {
      {CKA_VALUE_LEN, &len32, sizeof(len32)}, {CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}};
  CK_OBJECT_HANDLE hpub, hpriv, h;
  CK_SESSION_HANDLE rw;
  (void)state;

  /* No login: every CKA_PRIVATE=TRUE is refused, and nothing reaches the vault. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_CFG(",\"objects\":[\"keys\",\"secrets\"]")), CKR_OK);
  rw = t_open(CKF_RW_SESSION);
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_CreateObject(rw, dt, 5, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(C_GenerateKey(rw, &aes, st, 3, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  assert_int_equal(count_class(rw, CKO_DATA), 0);
  assert_int_equal(count_class(rw, CKO_PRIVATE_KEY), 1); /* rsa1 only */
  priv[2].pValue = &no;
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv), CKR_OK);
  assert_int_equal(attr_bool(rw, hpriv, CKA_PRIVATE), CK_FALSE);

  /* Login required: writes need the user; templates must match what the slot makes. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_LOGIN_CFG), CKR_OK);
  rw = t_open(CKF_RW_SESSION);
  pub[2].pValue = priv[1].pValue = "tk-ec2";
  pub[2].ulValueLen = priv[1].ulValueLen = 6;
  priv[2].pValue = &yes;
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv),
                   CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(C_CreateObject(rw, dt, 5, &h), CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  priv[2].pValue = &no;
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  priv[2].pValue = &yes;
  pub[3].pValue = &yes;
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv),
                   CKR_ATTRIBUTE_VALUE_INVALID);
  pub[3].pValue = &no; /* what pkcs11-tool --keypairgen sends */
  assert_int_equal(C_GenerateKeyPair(rw, &kp, pub, 4, priv, 3, &hpub, &hpriv), CKR_OK);
  assert_int_equal(attr_bool(rw, hpriv, CKA_PRIVATE), CK_TRUE);
  assert_int_equal(attr_bool(rw, hpub, CKA_PRIVATE), CK_FALSE);
  dt[4].pValue = &no;
  assert_int_equal(C_CreateObject(rw, dt, 5, &h), CKR_ATTRIBUTE_VALUE_INVALID);
  dt[4].pValue = &yes;
  assert_int_equal(C_CreateObject(rw, dt, 5, &h), CKR_OK);
  assert_int_equal(attr_bool(rw, h, CKA_PRIVATE), CK_TRUE);
  assert_int_equal(C_Logout(rw), CKR_OK);
  assert_int_equal(t_find_one(rw, CKO_PUBLIC_KEY, "tk-ec2"), hpub);
  assert_int_equal(count_class(rw, CKO_PRIVATE_KEY), 0);
  assert_int_equal(count_class(rw, CKO_DATA), 0);
}

/* A PEM file with a self-signed certificate and its RSA key, the key encrypted with password (or
 * not, when password is NULL); returns its path (static buffer, mode 0600). */
static const char *cert_file(const char *name, const char *password)
{
  static char path[256];
  EVP_PKEY *key = EVP_RSA_gen(2048);
  X509 *x = X509_new();
  FILE *f;
  assert_non_null(key);
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)"unit", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  assert_true(X509_sign(x, key, EVP_sha256()) > 0);
  snprintf(path, sizeof(path), "/tmp/akv-unit-%s-%d.pem", name, (int)getpid());
  f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(chmod(path, 0600), 0);
  assert_true(PEM_write_X509(f, x));
  if (password)
    assert_true(
        PEM_write_PKCS8PrivateKey(f, key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)password));
  else
    assert_true(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
  return path;
}

static void test_pin_opens_key(void **state)
{
  char enc[256], open_key[256];
  (void)state;
  snprintf(enc, sizeof(enc), "%s", cert_file("enc", "pass-4711"));
  snprintf(open_key, sizeof(open_key), "%s", cert_file("open", NULL));
  assert_int_equal(akv_pin_opens_key(enc, (const unsigned char *)"pass-4711", 9), 1);
  assert_int_equal(akv_pin_opens_key(enc, (const unsigned char *)"pass-4712", 9), 0);
  assert_int_equal(akv_pin_opens_key(enc, (const unsigned char *)"pass-471", 8), 0);
  assert_int_equal(akv_pin_opens_key(enc, NULL, 0), 0);
  assert_int_equal(akv_pin_opens_key(enc, (const unsigned char *)"pass-4711\0", 10), 0);
  /* An open key would take any PIN: refused as a configuration problem. */
  assert_int_equal(akv_pin_opens_key(open_key, (const unsigned char *)"x", 1), -1);
  assert_int_equal(akv_pin_opens_key("/nonexistent/akv.pem", (const unsigned char *)"x", 1), -1);
  unlink(enc);
  unlink(open_key);
}

#define CERT_CRED(path)                                                                            \
  "\"credential\":{\"type\":\"client_certificate\",\"tenant_id\":\"t\",\"client_id\":\"c\","       \
  "\"certificate_path\":\"" path "\"}"

static void test_pin_certificate_config(void **state)
{
  char json[1024];
  const char *path = cert_file("cfg", "pw");
  const char *e;
  struct akv_config *cfg = NULL;
  char err[512];
  (void)state;
#define CFG(fmt, ...) (snprintf(json, sizeof(json), fmt, __VA_ARGS__), cfg_error(json))
  /* Accepted: the slot's PIN is the key's password, which implies login required. */
  snprintf(json, sizeof(json),
           "{\"slots\":[" SLOT_URL ",\"pin\":\"certificate_password\","
           "\"credential\":{\"type\":\"client_certificate\",\"tenant_id\":\"t\","
           "\"client_id\":\"c\",\"certificate_path\":\"%s\"}}]}",
           path);
  assert_int_equal(akv_config_parse(json, "/etc/test.json", &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->slots[0].pin_certificate, 1);
  assert_int_equal(cfg->slots[0].login_required, 1);
  akv_config_free(cfg);
  e = CFG("{\"slots\":[" SLOT_URL ",\"pin\":\"certificate_password\",\"login\":\"none\","
          "\"credential\":{\"type\":\"client_certificate\",\"tenant_id\":\"t\","
          "\"client_id\":\"c\",\"certificate_path\":\"%s\"}}]}",
          path);
  assert_non_null(strstr(e, "slots[0].pin"));
  assert_non_null(strstr(e, "\"none\""));
  e = CFG("{\"slots\":[" SLOT_URL ",\"pin\":\"certificate_password\",\"pin_hash\":\"%s\","
          "\"credential\":{\"type\":\"client_certificate\",\"tenant_id\":\"t\","
          "\"client_id\":\"c\",\"certificate_path\":\"%s\"}}]}",
          PIN_SHA512, path);
  assert_non_null(strstr(e, "slots[0].pin"));
  assert_non_null(strstr(e, "remove pin_hash"));
  e = CFG("{\"slots\":[" SLOT_URL ",\"pin\":\"certificate_password\","
          "\"credential\":{\"type\":\"client_certificate\",\"tenant_id\":\"t\","
          "\"client_id\":\"c\",\"certificate_path\":\"%s\",\"certificate_password\":\"pw\"}}]}",
          path);
  assert_non_null(strstr(e, "slots[0].pin"));
  assert_non_null(strstr(e, "remove the configured password"));
  assert_null(strstr(e, "\"pw\""));
  e = CFG("{\"pin\":\"certificate_password\",\"credential\":{\"type\":\"client_secret\","
          "\"tenant_id\":\"t\",\"client_id\":\"c\",\"client_secret\":\"s\"},\"slots\":[%s}]}",
          SLOT_URL);
  assert_non_null(strstr(e, "field `pin`"));
  assert_non_null(strstr(e, "client_certificate"));
  e = CFG("{\"slots\":[" SLOT_URL ",\"pin\":\"passphrase\"%s}]}", "");
  assert_non_null(strstr(e, "\"certificate_password\""));
#undef CFG
  unlink(path);
}

/* "pin": "certificate_password": no object and no vault call before the first login; the PIN is
 * the key's password. */
static void test_pin_certificate_login(void **state)
{
  char json[1024], path[256];
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE h[16];
  int creds;
  (void)state;

  snprintf(path, sizeof(path), "%s", cert_file("login", "pass-4711"));
  snprintf(json, sizeof(json),
           "{\"cache_file\":\"\",\"slots\":[" SLOT_URL ","
           "\"pin\":\"certificate_password\",\"credential\":{\"type\":\"client_certificate\","
           "\"tenant_id\":\"t\",\"client_id\":\"c\",\"certificate_path\":\"%s\"}}]}",
           path);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  creds = fake_kv_calls.cred_new;
  assert_int_equal(t_init(json), CKR_OK);
  assert_int_equal(fake_kv_calls.cred_new, creds + 1); /* the top-level one only */
  assert_int_equal(token_flags() & CKF_LOGIN_REQUIRED, CKF_LOGIN_REQUIRED);
  s = t_open(0);
  fake_kv_calls.list_keys = 0;
  assert_int_equal(t_find(s, NULL, 0, h, 16), 0);
  assert_int_equal(fake_kv_calls.list_keys, 0);
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "pass-4712", 9), CKR_PIN_INCORRECT);
  assert_int_equal(fake_kv_calls.cred_new, creds + 1);
  assert_int_equal(t_find(s, NULL, 0, h, 16), 0);
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "pass-4711", 9), CKR_OK);
  assert_int_equal(fake_kv_calls.cred_new, creds + 2);
  assert_int_equal(t_find(s, NULL, 0, h, 16), 2);
  assert_int_equal(C_Logout(s), CKR_OK);
  assert_int_equal(t_find(s, NULL, 0, h, 16), 1); /* the public key */
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong", 5), CKR_PIN_INCORRECT);
  assert_int_equal(C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "pass-4711", 9), CKR_OK);
  assert_int_equal(fake_kv_calls.cred_new, creds + 2); /* opened once */
  assert_int_equal(t_find(s, NULL, 0, h, 16), 2);
  unlink(path);

  /* A key without a password would take any PIN: the module does not start. */
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  snprintf(path, sizeof(path), "%s", cert_file("login-open", NULL));
  snprintf(json, sizeof(json),
           "{\"cache_file\":\"\",\"slots\":[" SLOT_URL ","
           "\"pin\":\"certificate_password\",\"credential\":{\"type\":\"client_certificate\","
           "\"tenant_id\":\"t\",\"client_id\":\"c\",\"certificate_path\":\"%s\"}}]}",
           path);
  assert_int_equal(t_init(json), CKR_GENERAL_ERROR);
  assert_int_equal(t_init(T_CFG("")), CKR_OK); /* for the teardown */
  unlink(path);
}

static int64_t ms_since(const struct timespec *t0)
{
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_login_required(void **state)
{
  CK_SESSION_HANDLE ro, rw;
  CK_OBJECT_HANDLE priv, pub, data, h[16];
  CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_BYTE buf[64];
  CK_ATTRIBUTE val = {CKA_VALUE, buf, sizeof(buf)};
  struct timespec t0;
  int64_t took;
  (void)state;

  fake_kv_add_secret("db-password", "s3cret", 0);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_LOGIN_CFG), CKR_OK);
  assert_int_equal(token_flags() & (CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED |
                                    CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_LOCKED),
                   CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED);
  ro = t_open(0);
  rw = t_open(CKF_RW_SESSION);

  /* Before login: the public key only; no private key, no secret. */
  assert_int_equal(count_class(ro, CKO_PRIVATE_KEY), 0);
  assert_int_equal(count_class(ro, CKO_DATA), 0);
  assert_int_equal(t_find(ro, NULL, 0, h, 16), 1);
  pub = t_find_one(ro, CKO_PUBLIC_KEY, "rsa1");
  assert_int_equal(attr_bool(ro, pub, CKA_PRIVATE), CK_FALSE);
  assert_int_equal(C_Logout(ro), CKR_USER_NOT_LOGGED_IN);

  /* A wrong PIN: refused after the delay, and the token says so; the right one logs every session
   * in. */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "0000", 4), CKR_PIN_INCORRECT);
  took = ms_since(&t0);
  assert_true(took >= 240);
  assert_int_equal(state_of(ro), CKS_RO_PUBLIC_SESSION);
  assert_true(token_flags() & CKF_USER_PIN_COUNT_LOW);
  assert_false(token_flags() & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(C_Login(rw, CKU_USER, NULL, 0), CKR_PIN_INCORRECT);
  assert_true(ms_since(&t0) >= 490); /* the second failure in a row waits twice as long */
  assert_int_equal(C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  assert_false(token_flags() & CKF_USER_PIN_COUNT_LOW);
  assert_int_equal(state_of(ro), CKS_RO_USER_FUNCTIONS);
  assert_int_equal(state_of(rw), CKS_RW_USER_FUNCTIONS);
  assert_int_equal(C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_USER_ALREADY_LOGGED_IN);
  assert_int_equal(C_Login(ro, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "1234", 4),
                   CKR_OPERATION_NOT_INITIALIZED);

  /* Logged in: private key and secret visible, private, usable. */
  priv = t_find_one(ro, CKO_PRIVATE_KEY, "rsa1");
  data = t_find_one(ro, CKO_DATA, "db-password");
  assert_int_equal(attr_bool(ro, priv, CKA_PRIVATE), CK_TRUE);
  assert_int_equal(attr_bool(ro, data, CKA_PRIVATE), CK_TRUE);
  assert_int_equal(C_GetAttributeValue(ro, data, &val, 1), CKR_OK);
  assert_int_equal(val.ulValueLen, 6);
  assert_memory_equal(buf, "s3cret", 6);
  assert_int_equal(C_SignInit(ro, &m, priv), CKR_OK);

  /* Logout from any session ends it for all; held handles stop working. */
  assert_int_equal(C_Logout(rw), CKR_OK);
  assert_int_equal(state_of(ro), CKS_RO_PUBLIC_SESSION);
  assert_int_equal(C_Logout(ro), CKR_USER_NOT_LOGGED_IN);
  val.ulValueLen = sizeof(buf);
  assert_int_equal(C_GetAttributeValue(ro, data, &val, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_GetAttributeValue(ro, priv, &val, 1), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(C_SignInit(rw, &m, priv), CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(count_class(ro, CKO_PRIVATE_KEY), 0);

  /* C_Finalize forgets the login. */
  assert_int_equal(C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  assert_int_equal(t_init(T_LOGIN_CFG), CKR_OK);
  ro = t_open(0);
  assert_int_equal(state_of(ro), CKS_RO_PUBLIC_SESSION);
  assert_int_equal(count_class(ro, CKO_PRIVATE_KEY), 0);

  /* And so does a forked child, which must initialise the module again. */
  assert_int_equal(C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
  {
    pid_t pid = fork();
    int st = 0;
    assert_true(pid >= 0);
    if (pid == 0) {
      CK_SESSION_HANDLE c = 0;
      CK_SESSION_INFO info;
      int ok = t_init(T_LOGIN_CFG) == CKR_OK &&
               C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &c) == CKR_OK &&
               C_GetSessionInfo(c, &info) == CKR_OK && info.state == CKS_RO_PUBLIC_SESSION;
      _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  assert_int_equal(state_of(ro), CKS_RO_USER_FUNCTIONS);
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
  /* A failed listing's status travels back with the cache call (404 here)... */
  {
    struct akv_session *as = NULL;
    fake_kv_fail(KV_E_NOT_FOUND);
    t_clock_now += 1000000; /* past the stale window: the failure reaches the caller */
    assert_int_equal(C_FindObjectsInit(s, NULL, 0), CKR_DEVICE_ERROR);
    fake_kv_fail(KV_OK);
    assert_int_equal(C_GetSessionInfo(s, &info), CKR_OK);
    assert_int_equal(info.ulDeviceError, 404);
    /* ...and a failed crypto call's with akv_session_fail. */
    assert_int_equal(akv_session_acquire(s, &as), CKR_OK);
    assert_int_equal(akv_session_fail(as, KV_E_THROTTLED, 429), CKR_DEVICE_ERROR);
    akv_session_release(as);
  }
  assert_int_equal(C_GetSessionInfo(s, &info), CKR_OK);
  assert_int_equal(info.ulDeviceError, 429);
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
      cmocka_unit_test(test_pin_check),
      cmocka_unit_test(test_pin_delay),
      cmocka_unit_test(test_login_config),
      cmocka_unit_test_setup_teardown(test_login_required, setup, teardown),
      cmocka_unit_test_setup_teardown(test_login_templates, setup, teardown),
      cmocka_unit_test(test_pin_opens_key),
      cmocka_unit_test(test_pin_certificate_config),
      cmocka_unit_test_setup_teardown(test_pin_certificate_login, setup, teardown),
      cmocka_unit_test_setup_teardown(test_device_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_supported_state, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_only_slot, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
