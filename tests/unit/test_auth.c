#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <cjson/cJSON.h>

#include "fake_http.h"
#include "kv/auth.h"
#include "kv/kv.h"
#include "kv/token.h"
#include "util/b64.h"
#include "util/log.h"

static char dir[128];
static char logpath[256];
static struct fake_http fake;
static struct kv_http *http;

static int setup(void **state)
{
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/akv-test-auth-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(logpath, sizeof(logpath), "%s/log", dir);
  akv_log_init(AKV_LOG_INFO, logpath);
  http = fake_http_new(&fake, NULL, 0);
  return http ? 0 : -1;
}

static int teardown(void **state)
{
  char cmd[200];
  (void)state;
  fake_reset(&fake);
  kv_http_free(http);
  akv_log_close();
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  static char buf[65536];
  size_t n;
  if (!f) {
    buf[0] = '\0';
    return buf;
  }
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static const char *write_file(const char *name, const char *content, mode_t mode)
{
  static char path[256];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
  chmod(path, mode);
  return path;
}

static char tok_body[256];

static const char *token_json(const char *tok)
{
  snprintf(tok_body, sizeof(tok_body),
           "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"%s\"}", tok);
  return tok_body;
}

static void test_secret_wins_over_cert(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL;
  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_AUTO;
  cfg.tenant_id = "tenant-1";
  cfg.client_id = "client-1";
  cfg.client_secret = "p@ss word&=";
  cfg.certificate_path = "/nonexistent.pem";
  cfg.authority_host = "https://login.example/";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  assert_int_equal(fake.n_reqs, 0); /* no I/O at construction */
  fake_push(&fake, 200, token_json("tok-secret"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-secret");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  assert_string_equal(fake.reqs[0].method, "POST");
  assert_string_equal(fake.reqs[0].url, "https://login.example/tenant-1/oauth2/v2.0/token");
  assert_non_null(strstr(fake.reqs[0].body, "grant_type=client_credentials"));
  assert_non_null(strstr(fake.reqs[0].body, "client_id=client-1"));
  assert_non_null(strstr(fake.reqs[0].body, "client_secret=p%40ss%20word%26%3D"));
  assert_non_null(strstr(fake.reqs[0].body, "scope=https%3A%2F%2Fvault.azure.net%2F.default"));
  assert_null(strstr(fake.reqs[0].body, "client_assertion"));
  assert_non_null(strstr(kv_cred_describe(cred), "client secret"));
  /* Cached: no second request. */
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  kv_cred_free(cred);
}

static void test_token_endpoint_error_logged_without_secret(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL;
  const char *log;
  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_SECRET;
  cfg.tenant_id = "t";
  cfg.client_id = "c";
  cfg.client_secret = "TOPSECRETVALUE";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 401, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: "
                        "Invalid client secret provided.\"}");
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_null(tok);
  log = slurp(logpath);
  assert_non_null(strstr(log, "AADSTS7000215"));
  assert_non_null(strstr(log, "invalid_client"));
  assert_null(strstr(log, "TOPSECRETVALUE"));
  assert_non_null(strstr(fake.reqs[0].url, "https://login.microsoftonline.com/t/"));
  kv_cred_free(cred);
  /* Missing pieces for an explicit kind are refused at construction. */
  cfg.client_secret = NULL;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_E_INVALID);
}

static const char *write_script(const char *name, const char *body)
{
  return write_file(name, body, 0700);
}

static void test_auto_falls_through(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL, script[512], argsfile[256], az[256];
  const char *log;
  struct fake_reply *r;
  (void)state;
  snprintf(argsfile, sizeof(argsfile), "%s/args", dir);
  snprintf(script, sizeof(script),
           "#!/bin/sh\necho \"$@\" > %s\necho '{\"accessToken\":\"tok-cli\",\"expires_on\":%lld,"
           "\"tokenType\":\"Bearer\"}'\n",
           argsfile, (long long)time(NULL) + 3600);
  snprintf(az, sizeof(az), "%s", write_script("az-ok", script));
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_AUTO;
  cfg.tenant_id = "tid";
  cfg.client_id = "cid";
  cfg.federated_token_file = "/nonexistent/token";
  cfg.imds_endpoint = "http://127.0.0.1:9";
  cfg.az_path = az;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  r = fake_push_r(&fake, 0, NULL); /* IMDS: nothing listens */
  r->fail = KV_E_NETWORK;
  r->transient = 1;
  assert_int_equal(kv_cred_token(cred, "https://managedhsm.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-cli");
  kv_secure_free(tok, 0);
  /* Workload identity failed on the file (no request); IMDS was probed once, quickly. */
  assert_int_equal(fake.n_reqs, 1);
  assert_non_null(strstr(fake.reqs[0].url, "http://127.0.0.1:9/metadata/identity/oauth2/token?"
                                           "api-version=2018-02-01&resource=https%3A%2F%2Fmanag"
                                           "edhsm.azure.net&client_id=cid"));
  assert_non_null(strstr(fake.reqs[0].headers, "Metadata: true"));
  assert_true(fake.reqs[0].allow_http);
  assert_true(fake.reqs[0].no_retry);
  assert_int_equal(fake.reqs[0].connect_timeout_ms, 1000);
  assert_string_equal(slurp(argsfile),
                      "account get-access-token --output json --resource "
                      "https://managedhsm.azure.net --tenant tid\n");
  assert_non_null(strstr(kv_cred_describe(cred), "Azure CLI"));
  /* The source that worked is remembered: a forced refresh goes straight to it. */
  assert_int_equal(kv_cred_token(cred, "https://managedhsm.azure.net", NULL, 1, &tok), KV_OK);
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  kv_cred_free(cred);

  /* All fail: one log line per source with its reason. */
  snprintf(az, sizeof(az), "%s",
           write_script("az-bad", "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup "
                                  "account.\" >&2\nexit 1\n"));
  cfg.az_path = az;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_reset(&fake);
  fake_push(&fake, 400, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not "
                        "found\"}");
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential chain: workload identity, tenant tid, client cid: "
                              "cannot open /nonexistent/token"));
  assert_non_null(strstr(log, "credential chain: managed identity (IMDS) at http://127.0.0.1:9"));
  assert_non_null(strstr(log, "Identity not found"));
  assert_non_null(strstr(log, "credential chain: Azure CLI"));
  assert_non_null(strstr(log, "Please run 'az login'"));
  assert_non_null(strstr(kv_cred_describe(cred), "no source has worked"));
  kv_cred_free(cred);
}

static void make_cert(const char *path, EVP_PKEY **key_out, X509 **cert_out)
{
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  X509 *x = X509_new();
  FILE *f;
  assert_non_null(key);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)"test", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  assert_true(X509_sign(x, key, EVP_sha256()) > 0);
  f = fopen(path, "w");
  assert_non_null(f);
  PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  PEM_write_X509(f, x);
  fclose(f);
  chmod(path, 0600);
  *key_out = key;
  *cert_out = x;
}

static cJSON *decode_part(const char *p, size_t n)
{
  unsigned char *d = NULL;
  size_t dl = 0;
  cJSON *j;
  assert_int_equal(akv_b64url_decode(p, n, &d, &dl), 0);
  j = cJSON_ParseWithLength((char *)d, dl);
  free(d);
  assert_non_null(j);
  return j;
}

static void test_certificate_assertion(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL, path[256], *assertion, *dot1, *dot2, *amp;
  EVP_PKEY *key;
  X509 *x;
  cJSON *hdr, *claims;
  unsigned char *sig = NULL, md[20], *der = NULL;
  size_t siglen = 0;
  unsigned mdlen;
  int derlen;
  char *x5t;
  EVP_MD_CTX *mctx;
  time_t now = time(NULL);
  (void)state;
  snprintf(path, sizeof(path), "%s/cert.pem", dir);
  make_cert(path, &key, &x);
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_CERTIFICATE;
  cfg.tenant_id = "tid";
  cfg.client_id = "cid";
  cfg.certificate_path = path;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 200, token_json("tok-cert"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-cert");
  kv_secure_free(tok, 0);
  assert_non_null(strstr(fake.reqs[0].body, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth"
                                            "%3Aclient-assertion-type%3Ajwt-bearer"));
  assert_null(strstr(fake.reqs[0].body, "client_secret"));
  assertion = strstr(fake.reqs[0].body, "client_assertion=");
  assert_non_null(assertion);
  assertion += strlen("client_assertion=");
  amp = strchr(assertion, '&');
  if (amp)
    *amp = '\0';
  dot1 = strchr(assertion, '.');
  assert_non_null(dot1);
  dot2 = strchr(dot1 + 1, '.');
  assert_non_null(dot2);
  hdr = decode_part(assertion, (size_t)(dot1 - assertion));
  claims = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
  assert_string_equal(cJSON_GetObjectItem(hdr, "alg")->valuestring, "RS256");
  assert_string_equal(cJSON_GetObjectItem(hdr, "typ")->valuestring, "JWT");
  derlen = i2d_X509(x, &der);
  EVP_Digest(der, (size_t)derlen, md, &mdlen, EVP_sha1(), NULL);
  x5t = akv_b64url_encode(md, mdlen);
  assert_string_equal(cJSON_GetObjectItem(hdr, "x5t")->valuestring, x5t);
  assert_string_equal(cJSON_GetObjectItem(claims, "aud")->valuestring,
                      "https://login.microsoftonline.com/tid/oauth2/v2.0/token");
  assert_string_equal(cJSON_GetObjectItem(claims, "iss")->valuestring, "cid");
  assert_string_equal(cJSON_GetObjectItem(claims, "sub")->valuestring, "cid");
  assert_int_equal(strlen(cJSON_GetObjectItem(claims, "jti")->valuestring), 36);
  assert_true(cJSON_GetObjectItem(claims, "nbf")->valuedouble >= (double)now - 5);
  assert_true(cJSON_GetObjectItem(claims, "exp")->valuedouble -
                  cJSON_GetObjectItem(claims, "nbf")->valuedouble ==
              600);
  /* The signature verifies with the certificate's key over header.payload. */
  assert_int_equal(akv_b64url_decode(dot2 + 1, (size_t)-1, &sig, &siglen), 0);
  mctx = EVP_MD_CTX_new();
  assert_int_equal(EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)), 1);
  assert_int_equal(EVP_DigestVerify(mctx, sig, siglen, (unsigned char *)assertion,
                                    (size_t)(dot2 - assertion)),
                   1);
  EVP_MD_CTX_free(mctx);
  free(sig);
  free(x5t);
  OPENSSL_free(der);
  cJSON_Delete(hdr);
  cJSON_Delete(claims);
  EVP_PKEY_free(key);
  X509_free(x);
  kv_cred_free(cred);
}

static void test_workload_rereads_file(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL, path[256];
  (void)state;
  snprintf(path, sizeof(path), "%s", write_file("fed", "assertion-one\n", 0644));
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_WORKLOAD;
  cfg.tenant_id = "tid";
  cfg.client_id = "cid";
  cfg.federated_token_file = path;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 200, token_json("t1"));
  fake_push(&fake, 200, token_json("t2"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  kv_secure_free(tok, 0);
  assert_non_null(strstr(fake.reqs[0].body, "client_assertion=assertion-one"));
  assert_null(strstr(fake.reqs[0].body, "%0A")); /* trailing newline trimmed */
  write_file("fed", "assertion-two", 0644);
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 1, &tok), KV_OK);
  assert_string_equal(tok, "t2");
  kv_secure_free(tok, 0);
  assert_non_null(strstr(fake.reqs[1].body, "client_assertion=assertion-two"));
  kv_cred_free(cred);
}

static void test_managed_app_service(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL, body[256];
  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_MANAGED;
  cfg.identity_endpoint = "http://127.0.0.1:41741/msi/token";
  cfg.identity_header = "hdr-secret";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  snprintf(body, sizeof(body),
           "{\"access_token\":\"tok-msi\",\"expires_on\":\"%lld\",\"resource\":\"https://vault.az"
           "ure.net\",\"token_type\":\"Bearer\"}",
           (long long)time(NULL) + 3600);
  fake_push(&fake, 200, body);
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", "ignored", 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-msi");
  kv_secure_free(tok, 0);
  assert_string_equal(fake.reqs[0].url, "http://127.0.0.1:41741/msi/token?api-version=2019-08-01"
                                        "&resource=https%3A%2F%2Fvault.azure.net");
  assert_non_null(strstr(fake.reqs[0].headers, "X-IDENTITY-HEADER: hdr-secret"));
  assert_false(fake.reqs[0].no_retry); /* explicit managed identity: normal retries */
  kv_cred_free(cred);
}

static void test_tenant_hint(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL;
  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_AUTO;
  cfg.client_id = "cid";
  cfg.client_secret = "s";
  cfg.az_path = "/nonexistent/az";
  cfg.imds_endpoint = "http://127.0.0.1:9";
  /* Without a tenant the environment secret source is not in the chain. */
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 200, token_json("tok-imds"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", "challenge-tenant", 0, &tok),
                   KV_OK);
  assert_string_equal(tok, "tok-imds");
  kv_secure_free(tok, 0);
  kv_cred_free(cred);
  /* A challenge tenant with path characters is never put into the token URL. */
  cfg.kind = AKV_CRED_SECRET;
  cfg.tenant_id = NULL;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_E_INVALID);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_secret_wins_over_cert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_endpoint_error_logged_without_secret, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_auto_falls_through, setup, teardown),
      cmocka_unit_test_setup_teardown(test_certificate_assertion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_workload_rereads_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_managed_app_service, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenant_hint, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
