/* SPDX-License-Identifier: Apache-2.0 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
  fake_push(&fake, 401,
            "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: "
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

/* type auto with a tenant and client id, IMDS at a closed loopback port and az at az_path. */
static void auto_cfg(struct akv_cred_config *cfg, char *az_path)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->kind = AKV_CRED_AUTO;
  cfg->tenant_id = "tid";
  cfg->client_id = "cid";
  cfg->imds_endpoint = "http://127.0.0.1:9";
  cfg->az_path = az_path;
}

/* A fake az that records each call in DIR/NAME.calls and prints a token (ok) or fails. */
static const char *fake_az(const char *name, int ok)
{
  char script[768];
  if (ok)
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho \"$@\" >> %s/%s.calls\necho '{\"accessToken\":\"tok-cli\","
             "\"expires_on\":%lld,\"tokenType\":\"Bearer\"}'\n",
             dir, name, (long long)time(NULL) + 3600);
  else
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho \"$@\" >> %s/%s.calls\necho \"ERROR: Please run 'az login' to "
             "setup account.\" >&2\nexit 1\n",
             dir, name);
  return write_script(name, script);
}

static const char *az_calls(const char *name)
{
  char path[256];
  snprintf(path, sizeof(path), "%s/%s.calls", dir, name);
  return slurp(path);
}

static size_t count_lines_with(const char *text, const char *needle)
{
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* No input for the Entra sources or App Service, IMDS does not answer the probe: the chain
 * reaches the Azure CLI, which is then the slot's source for good. */
static void test_chain_skips_unconfigured(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  struct kv_src_info info[8];
  char *tok = NULL, az[256];
  struct fake_reply *r;
  (void)state;
  snprintf(az, sizeof(az), "%s", fake_az("az-ok", 1));
  auto_cfg(&cfg, az);
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  assert_int_equal(fake.n_reqs, 0);
  r = fake_push_r(&fake, 0, NULL); /* IMDS: nothing listens */
  r->fail = KV_E_NETWORK;
  r->transient = 1;
  assert_int_equal(kv_cred_token(cred, "https://managedhsm.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-cli");
  kv_secure_free(tok, 0);
  /* IMDS was probed once, quickly, without retries. */
  assert_int_equal(fake.n_reqs, 1);
  assert_non_null(strstr(fake.reqs[0].url, "http://127.0.0.1:9/metadata/identity/oauth2/token?"
                                           "api-version=2018-02-01&resource=https%3A%2F%2Fmanag"
                                           "edhsm.azure.net&client_id=cid"));
  assert_non_null(strstr(fake.reqs[0].headers, "Metadata: true"));
  assert_true(fake.reqs[0].allow_http);
  assert_true(fake.reqs[0].no_retry);
  assert_int_equal(fake.reqs[0].connect_timeout_ms, 1000);
  assert_string_equal(az_calls("az-ok"), "account get-access-token --output json --resource "
                                         "https://managedhsm.azure.net --tenant tid\n");
  assert_non_null(strstr(kv_cred_describe(cred), "Azure CLI"));
  assert_int_equal(kv_cred_sources(cred, info, 8), 6);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(info[i].state, KV_SRC_UNCONFIGURED);
    assert_int_equal(info[i].configured, 0);
  }
  assert_non_null(strstr(info[0].note, "no client secret"));
  assert_non_null(strstr(info[3].note, "no IDENTITY_ENDPOINT"));
  assert_int_equal(info[4].state, KV_SRC_UNCONFIGURED);
  assert_non_null(strstr(info[4].note, "no answer from http://127.0.0.1:9/"));
  assert_int_equal(info[5].state, KV_SRC_IN_USE);
  /* A tenant and a client id without the app's secret: the missing variable is named, once, and
   * what the other app sources would need; the walk went on all the same. */
  assert_int_equal(count_lines_with(slurp(logpath), "are set but AZURE_CLIENT_SECRET is missing "
                                                    "(and neither AZURE_CLIENT_CERTIFICATE_PATH"),
                   1);
  assert_non_null(strstr(slurp(logpath), "AZURE_FEDERATED_TOKEN_FILE for workload identity is "
                                         "set), so app cid is not used"));
  /* The source that worked is kept: a forced refresh goes straight to it, IMDS is not asked. */
  assert_int_equal(kv_cred_token(cred, "https://managedhsm.azure.net", NULL, 1, &tok), KV_OK);
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  assert_int_equal(count_lines_with(az_calls("az-ok"), "get-access-token"), 2);
  kv_cred_free(cred);
}

/* type auto with a client secret (from_env: AKV_CRED_ENV_*), IMDS at a closed loopback port and
 * a working fake az "az-ok": every later source would answer. */
static struct kv_cred *secret_chain(const char *secret, unsigned from_env)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char az[256];
  snprintf(az, sizeof(az), "%s", fake_az("az-ok", 1));
  auto_cfg(&cfg, az);
  cfg.client_secret = (char *)secret;
  cfg.from_env = from_env;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  return cred;
}

/* A wrong client secret with managed identity and az available: the secret's error, one line,
 * no IMDS request, no az run. */
static void test_configured_failure_ends_chain(void **state)
{
  struct kv_cred *cred = secret_chain("WRONGSECRETVALUE", 0);
  struct kv_src_info info[8];
  char *tok = NULL;
  const char *log;
  (void)state;
  fake_push(&fake, 401,
            "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: "
            "Invalid client secret provided.\\r\\nTrace ID: 42\"}");
  fake_push(&fake, 401, "{\"error\":\"invalid_client\"}");
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_null(tok);
  assert_int_equal(fake.n_reqs, 1);
  assert_non_null(strstr(fake.reqs[0].url, "/tid/oauth2/v2.0/token"));
  assert_string_equal(az_calls("az-ok"), "");
  log = slurp(logpath);
  assert_int_equal(count_lines_with(log, "credential"), 1);
  assert_non_null(strstr(log, "credential: client secret (configuration), tenant tid, "
                              "client cid failed: HTTP 401 from "));
  assert_non_null(strstr(log, "invalid_client - AADSTS7000215"));
  assert_non_null(strstr(log, "; fix: check tenant tid and client cid, and replace the client "
                              "secret"));
  assert_non_null(strstr(log, "no other source is tried"));
  assert_null(strstr(log, "WRONGSECRETVALUE"));
  assert_null(strstr(log, "managed identity"));
  assert_non_null(strstr(kv_cred_describe(cred), "client secret")); /* answers for the slot */
  /* doctor's view: the secret failed, the later sources were not reached; az would be found. */
  assert_int_equal(kv_cred_sources(cred, info, 8), 6);
  assert_int_equal(info[0].state, KV_SRC_FAILED);
  assert_int_equal(info[0].configured, 1);
  assert_non_null(strstr(info[0].note, "HTTP 401"));
  assert_non_null(strstr(info[0].note, "provided.  Trace ID: 42")); /* Entra's CR LF: spaces */
  assert_int_equal(info[4].state, KV_SRC_NOT_TRIED);
  assert_int_equal(info[4].configured, -1);
  assert_int_equal(info[5].state, KV_SRC_NOT_TRIED);
  assert_int_equal(info[5].configured, 1);
  assert_non_null(strstr(info[5].note, "az at "));
  /* Asked again: the same source, the same end. */
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_int_equal(fake.n_reqs, 2);
  assert_non_null(strstr(fake.reqs[1].url, "/tid/oauth2/v2.0/token"));
  kv_cred_free(cred);
}

/* The token endpoint times out (every attempt, to the deadline); IMDS and az would answer. */
static void timeout_secret_handler(struct fake_http *f, const struct fake_req *req,
                                   struct fake_reply *reply)
{
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->delay_ms = 600000; /* past every attempt's timeout: the transport's KV_E_TIMEOUT */
  } else {
    reply->status = 200;
    reply->body = "{\"access_token\":\"tok-imds\",\"expires_in\":3599}";
  }
}

/* A configured client secret (from the environment) whose token endpoint times out: a configured
 * source that fails ends the chain, as an Entra error does: the secret's error in one line, no
 * IMDS request, az not run. */
static void test_configured_timeout_ends_chain(void **state)
{
  struct kv_cred *cred = secret_chain("s", AKV_CRED_ENV_SECRET);
  struct kv_src_info info[8];
  char *tok = NULL;
  const char *log;
  (void)state;
  fake.handler = timeout_secret_handler;
  /* Asked twice: the secret each time (retried within the deadline), never IMDS, never az. */
  for (int round = 0; round < 2; round++) {
    fake_reset(&fake);
    assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
    assert_null(tok);
    assert_true(fake.n_reqs >= 1);
    for (size_t i = 0; i < fake.n_reqs; i++)
      assert_non_null(strstr(fake.reqs[i].url, "/tid/oauth2/v2.0/token"));
    assert_string_equal(az_calls("az-ok"), "");
  }
  log = slurp(logpath);
  assert_int_equal(count_lines_with(log, "credential"), 2); /* one per request */
  assert_non_null(strstr(log, "credential: client secret (environment: AZURE_CLIENT_SECRET), "
                              "tenant tid, client cid failed: no response from "
                              "https://login.microsoftonline.com/tid/oauth2/v2.0/token: "
                              "KV_E_TIMEOUT; fix: check the network path to "
                              "https://login.microsoftonline.com"));
  assert_non_null(strstr(log, "(no other source is tried: one identity per slot"));
  assert_null(strstr(log, "managed identity"));
  assert_non_null(
      strstr(kv_cred_describe(cred), "client secret (environment: AZURE_CLIENT_SECRET)"));
  assert_int_equal(kv_cred_sources(cred, info, 8), 6);
  assert_int_equal(info[0].state, KV_SRC_FAILED);
  assert_non_null(strstr(info[0].note, "KV_E_TIMEOUT"));
  for (int i = 1; i < 6; i++)
    assert_int_equal(info[i].state, KV_SRC_NOT_TRIED);
  fake.handler = NULL;
  kv_cred_free(cred);
}

/* A configured source whose file cannot be read fails with the path, owner, mode and uid; so does
 * a CA file the process cannot open. */
static void test_file_errors_end_chain(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  struct kv_http *h2 = NULL;
  struct kv_http_opts o;
  struct fake_http f2;
  struct fake_reply *r;
  char *tok = NULL, az[256], expect[128];
  const char *log;
  (void)state;
  snprintf(az, sizeof(az), "%s", fake_az("az-ok", 1));
  auto_cfg(&cfg, az);
  cfg.federated_token_file = "/nonexistent/token";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_int_equal(fake.n_reqs, 0);
  assert_string_equal(az_calls("az-ok"), "");
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential: workload identity, tenant tid, client cid failed: "
                              "cannot open the federated token file /nonexistent/token: No such "
                              "file or directory"));
  snprintf(expect, sizeof(expect), "this process runs as uid %u", (unsigned)geteuid());
  assert_non_null(strstr(log, expect));
  assert_non_null(strstr(log, "; fix: point the configuration at the right file"));
  kv_cred_free(cred);

  /* The CA file: the token request gets no answer and the module names the file. */
  memset(&f2, 0, sizeof(f2));
  memset(&o, 0, sizeof(o));
  o.ca_file = "/nonexistent/ca.pem";
  o.connect_timeout_ms = 5000;
  o.request_timeout_ms = 10000;
  o.deadline_ms = 30000;
  o.pool_size = 1;
  o.max_response_bytes = 64 * 1024;
  assert_int_equal(kv_http_new(&o, &h2), KV_OK);
  fake_install(&f2, h2);
  cfg.federated_token_file = NULL;
  cfg.client_secret = "s";
  assert_int_equal(kv_cred_new(h2, &cfg, &cred), KV_OK);
  r = fake_push_r(&f2, 0, NULL);
  r->fail = KV_E_NETWORK; /* what libcurl reports when it cannot load the CA file */
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_int_equal(f2.n_reqs, 1);
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential: client secret (configuration), tenant tid, "
                              "client cid failed: cannot open the CA file (ca_file) "
                              "/nonexistent/ca.pem: No such file or directory"));
  assert_string_equal(az_calls("az-ok"), "");
  kv_cred_free(cred);
  fake_reset(&f2);
  kv_http_free(h2);
}

/* Once the secret has produced a token, a later failure is the secret's: no switch to IMDS. */
static void test_sticky_after_first_token(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL;
  const char *log;
  (void)state;
  auto_cfg(&cfg, "/nonexistent/az");
  cfg.client_secret = "s";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 200, token_json("tok-1"));
  fake_push(&fake, 401,
            "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000222: "
            "The provided client secret keys are expired.\"}");
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-1");
  kv_secure_free(tok, 0);
  /* The vault refused the token (revoked): the forced refresh fails with the secret's error. */
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 1, &tok), KV_E_AUTH);
  assert_int_equal(fake.n_reqs, 2);
  assert_non_null(strstr(fake.reqs[1].url, "/tid/oauth2/v2.0/token"));
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential: client secret (configuration), tenant tid, "
                              "client cid failed: HTTP 401"));
  assert_non_null(strstr(log, "AADSTS7000222"));
  assert_non_null(strstr(log, "the slot's identity since its first token"));
  assert_non_null(strstr(kv_cred_describe(cred), "client secret"));
  kv_cred_free(cred);
}

/* IMDS answering 400 (no identity on this VM) is "not configured"; a transient error of the
 * probe is retried normally; nothing configured at all gives one line listing why. */
static void test_imds_probe_outcomes(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  char *tok = NULL, az[256];
  struct fake_reply *r;
  const char *log;
  (void)state;
  snprintf(az, sizeof(az), "%s", fake_az("az-bad", 0));
  memset(&cfg, 0, sizeof(cfg));
  cfg.kind = AKV_CRED_AUTO;
  cfg.imds_endpoint = "http://127.0.0.1:9";
  cfg.az_path = az;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 400,
            "{\"error\":\"invalid_request\",\"error_description\":\"Identity not "
            "found\"}");
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  assert_int_equal(count_lines_with(az_calls("az-bad"), "get-access-token"), 1);
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential: Azure CLI ("));
  assert_non_null(strstr(log, "az exited with status 1: ERROR: Please run 'az login'"));
  assert_non_null(strstr(log, "; fix: run `az login` as uid "));
  kv_cred_free(cred);

  fake_reset(&fake);
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 503, "{}");
  fake_push(&fake, 200, token_json("tok-imds"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-imds");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 2);
  assert_true(fake.reqs[0].no_retry);
  assert_false(fake.reqs[1].no_retry);
  assert_non_null(strstr(kv_cred_describe(cred), "managed identity (IMDS)"));
  kv_cred_free(cred);

  fake_reset(&fake);
  cfg.az_path = "/nonexistent/az";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  r = fake_push_r(&fake, 0, NULL);
  r->fail = KV_E_TIMEOUT;
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", NULL, 0, &tok), KV_E_AUTH);
  log = slurp(logpath);
  assert_non_null(strstr(log, "credential chain: no source is configured: client secret: no "
                              "client secret"));
  assert_non_null(strstr(log, "managed identity (IMDS): no answer from http://127.0.0.1:9/"));
  assert_non_null(
      strstr(log, "Azure CLI: az_path /nonexistent/az is not an executable file; fix: "));
  kv_cred_free(cred);
}

/* Entra refuses the secret, IMDS would answer: whatever the threads ask, only Entra is asked. */
static void refuse_secret_handler(struct fake_http *f, const struct fake_req *req,
                                  struct fake_reply *reply)
{
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->status = 401;
    reply->body = "{\"error\":\"invalid_client\"}";
  } else {
    reply->status = 200;
    reply->body = "{\"access_token\":\"tok-imds\",\"expires_in\":3599}";
  }
}

struct chain_thread {
  struct kv_cred *cred;
  char resource[64];
  kv_rc rc;
};

static void *chain_thread_main(void *arg)
{
  struct chain_thread *t = arg;
  char *tok = NULL;
  t->rc = kv_cred_token(t->cred, t->resource, NULL, 0, &tok);
  kv_secure_free(tok, 0);
  return NULL;
}

/* Eight threads asking for tokens of different resources at once: the configured secret answers
 * for each of them, none falls through to IMDS. */
static void test_chain_threads_one_identity(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *cred = NULL;
  struct chain_thread t[8];
  pthread_t th[8];
  (void)state;
  auto_cfg(&cfg, "/nonexistent/az");
  cfg.client_secret = "s";
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake.handler = refuse_secret_handler;
  for (int i = 0; i < 8; i++) {
    t[i].cred = cred;
    snprintf(t[i].resource, sizeof(t[i].resource), "https://r%d.example", i);
    assert_int_equal(pthread_create(&th[i], NULL, chain_thread_main, &t[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(t[i].rc, KV_E_AUTH);
  }
  assert_int_equal(fake.n_reqs, 8);
  for (size_t i = 0; i < fake.n_reqs; i++)
    assert_non_null(strstr(fake.reqs[i].url, "/tid/oauth2/v2.0/token"));
  fake.handler = NULL;
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
  assert_int_equal(
      EVP_DigestVerify(mctx, sig, siglen, (unsigned char *)assertion, (size_t)(dot2 - assertion)),
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
  /* A secret without a tenant is still the configured source: the vault's challenge names the
   * tenant. */
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_OK);
  fake_push(&fake, 200, token_json("tok-secret"));
  assert_int_equal(kv_cred_token(cred, "https://vault.azure.net", "challenge-tenant", 0, &tok),
                   KV_OK);
  assert_string_equal(tok, "tok-secret");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  assert_non_null(strstr(fake.reqs[0].url, "/challenge-tenant/oauth2/v2.0/token"));
  kv_cred_free(cred);
  /* A challenge tenant with path characters is never put into the token URL. */
  cfg.kind = AKV_CRED_SECRET;
  cfg.tenant_id = NULL;
  assert_int_equal(kv_cred_new(http, &cfg, &cred), KV_E_INVALID);
}

/* A session keyring of this process's own, the fetch lock in the test's directory, and a client
 * secret credential with sharing on under an authority no other run uses. -1 without a kernel
 * keyring. */
static int shared_setup(struct akv_cred_config *cfg, char *auth, size_t len, const char *what)
{
  if (syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0)
    return -1;
  setenv("XDG_RUNTIME_DIR", dir, 1);
  snprintf(auth, len, "https://login-%s-%d-%ld.example", what, (int)getpid(), (long)time(NULL));
  memset(cfg, 0, sizeof(*cfg));
  cfg->kind = AKV_CRED_SECRET;
  cfg->tenant_id = "tenant-1";
  cfg->client_id = "client-1";
  cfg->client_secret = "the-secret";
  cfg->authority_host = auth;
  cfg->share_token = 1;
  return 0;
}

/* docs/security.md "The shared access token": a second credential for the same identity and
 * secret (another process, in effect) takes the first one's token from the kernel keyring; a
 * forced refresh (the vault answered 401) drops the refused token and shares the new one, and a
 * forced refresh of a token already replaced takes the replacement; another secret for the same
 * app gets no shared token. */
static void test_shared_token(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  char *tok = NULL, auth[128];
  const char *vault = "https://vault.azure.net";
  (void)state;
  if (shared_setup(&cfg, auth, sizeof(auth), "shared"))
    skip(); /* no kernel keyring here: tokens stay per process (test_share_token.sh says so) */
  assert_int_equal(kv_cred_new(http, &cfg, &a), KV_OK);
  assert_int_equal(kv_cred_new(http, &cfg, &b), KV_OK);
  fake_push(&fake, 200, token_json("tok-one"));
  assert_int_equal(kv_cred_token(a, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-one");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  assert_int_equal(kv_cred_token(b, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-one");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1); /* shared: no request */
  /* b's token is refused: dropped, fetched again, shared. */
  fake_push(&fake, 200, token_json("tok-two"));
  assert_int_equal(kv_cred_token(b, vault, NULL, 1, &tok), KV_OK);
  assert_string_equal(tok, "tok-two");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 2);
  assert_int_equal(kv_cred_new(http, &cfg, &c), KV_OK);
  assert_int_equal(kv_cred_token(c, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-two");
  kv_secure_free(tok, 0);
  /* a still holds tok-one; refused, it finds tok-two already there and asks nothing. */
  assert_int_equal(kv_cred_token(a, vault, NULL, 1, &tok), KV_OK);
  assert_string_equal(tok, "tok-two");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 2);
  /* Another secret for the same app: its own request. */
  cfg.client_secret = "another-secret";
  assert_int_equal(kv_cred_new(http, &cfg, &d), KV_OK);
  fake_push(&fake, 200, token_json("tok-three"));
  assert_int_equal(kv_cred_token(d, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-three");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 3);
  kv_cred_free(a);
  kv_cred_free(b);
  kv_cred_free(c);
  kv_cred_free(d);
  unsetenv("XDG_RUNTIME_DIR");
}

static int64_t shared_clock;
static int64_t shared_clock_fn(void)
{
  return shared_clock;
}

/* A shared token due for refresh while another process holds the fetch lock (it is refreshing)
 * is used at once, without a request and without waiting; once the lock is free, the next
 * process refreshes it. */
static void test_shared_token_refresh_ahead(void **state)
{
  struct akv_cred_config cfg;
  struct kv_cred *a = NULL, *b = NULL, *c = NULL;
  char *tok = NULL, auth[128], lockdir[300], path[600];
  const char *vault = "https://vault.azure.net";
  struct dirent *de;
  DIR *dh;
  int held = -1;
  (void)state;
  if (shared_setup(&cfg, auth, sizeof(auth), "ahead"))
    skip();
  assert_int_equal(kv_cred_new(http, &cfg, &a), KV_OK);
  fake_push(&fake, 200, token_json("tok-one")); /* expires_in 3599: refresh 300 s before */
  assert_int_equal(kv_cred_token(a, vault, NULL, 0, &tok), KV_OK);
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  /* Another process holds the fetch lock (the only lock file so far). */
  snprintf(lockdir, sizeof(lockdir), "%s/akv-pkcs11", dir);
  dh = opendir(lockdir);
  assert_non_null(dh);
  while ((de = readdir(dh)))
    if (strncmp(de->d_name, "token-", 6) == 0) {
      snprintf(path, sizeof(path), "%s/%s", lockdir, de->d_name);
      held = open(path, O_RDWR | O_CLOEXEC);
    }
  closedir(dh);
  assert_true(held >= 0);
  assert_int_equal(flock(held, LOCK_EX | LOCK_NB), 0);
  shared_clock = (int64_t)time(NULL) + 3400; /* due for refresh, not expired */
  kv_token_set_clock(shared_clock_fn);
  assert_int_equal(kv_cred_new(http, &cfg, &b), KV_OK);
  assert_int_equal(kv_cred_token(b, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-one");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 1);
  /* The lock is free again: the next process refreshes and shares. */
  close(held);
  fake_push(&fake, 200, token_json("tok-two"));
  assert_int_equal(kv_cred_new(http, &cfg, &c), KV_OK);
  assert_int_equal(kv_cred_token(c, vault, NULL, 0, &tok), KV_OK);
  assert_string_equal(tok, "tok-two");
  kv_secure_free(tok, 0);
  assert_int_equal(fake.n_reqs, 2);
  kv_token_set_clock(NULL);
  kv_cred_free(a);
  kv_cred_free(b);
  kv_cred_free(c);
  unsetenv("XDG_RUNTIME_DIR");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_secret_wins_over_cert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_endpoint_error_logged_without_secret, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_chain_skips_unconfigured, setup, teardown),
      cmocka_unit_test_setup_teardown(test_configured_failure_ends_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_configured_timeout_ends_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_errors_end_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sticky_after_first_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_imds_probe_outcomes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chain_threads_one_identity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_certificate_assertion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_workload_rereads_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_managed_app_service, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenant_hint, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_token_refresh_ahead, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
