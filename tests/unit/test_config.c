/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "util/config.h"
#include "util/log.h"

static char dir[256];

static const char *const env_names[] = {
    "AKV_PKCS11_CONFIG",
    "AKV_PKCS11_VAULT_URL",
    "AKV_PKCS11_CA_FILE",
    "AKV_PKCS11_ALLOWED_HOSTS",
    "AKV_PKCS11_OBJECTS",
    "AKV_PKCS11_LOG_LEVEL",
    "AKV_PKCS11_IMDS_ENDPOINT",
    "AKV_PKCS11_CREDENTIAL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "XDG_CONFIG_HOME",
    "HOME",
};

static int setup(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
    unsetenv(env_names[i]);
  snprintf(dir, sizeof(dir), "/tmp/akv-test-config-XXXXXX");
  assert_non_null(mkdtemp(dir));
  setenv("HOME", dir, 1); /* no ~/.config file is found */
  return 0;
}

static int teardown(void **state)
{
  char cmd[300];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static const char *write_file(const char *name, const char *content, mode_t mode)
{
  static char path[512];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
  return path;
}

/* Parses json and expects failure whose message contains every needle. */
static void expect_error(const char *json, const char *const *needles, size_t n)
{
  struct akv_config *cfg = NULL;
  char err[1024];
  int rc = akv_config_parse(json, "test.json", &cfg, err, sizeof(err));
  if (rc == 0)
    fail_msg("accepted: %s", json);
  assert_null(cfg);
  for (size_t i = 0; i < n; i++)
    if (!strstr(err, needles[i]))
      fail_msg("message \"%s\" lacks \"%s\"", err, needles[i]);
}

#define EXPECT_ERROR(json, ...)                                                                    \
  do {                                                                                             \
    const char *const nd[] = {__VA_ARGS__};                                                        \
    expect_error(json, nd, sizeof(nd) / sizeof(nd[0]));                                            \
  } while (0)

static void test_valid_full(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  const char *json =
      "{\"log_level\":\"info\",\"log_file\":\"/tmp/x.log\",\"audit_file\":\"/tmp/a.jsonl\","
      "\"ca_file\":\"/etc/ca.pem\",\"api_version\":\"7.5\",\"allowed_hosts\":[\"localhost\"],"
      "\"connect_timeout_ms\":2000,\"request_timeout_ms\":5000,\"deadline_ms\":9000,"
      "\"max_retries\":2,\"retry_base_ms\":10,\"retry_cap_ms\":100,\"pool_size\":4,"
      "\"max_response_bytes\":65536,\"cache_file\":\"\","
      "\"credential\":{\"type\":\"managed_identity\",\"client_id\":\"cid\"},"
      "\"slots\":[{\"url\":\"https://MyVault.vault.azure.net/\",\"objects\":[\"keys\",\"secrets\"],"
      "\"ttl\":60,\"secret_ttl\":30,\"read_only\":true,\"versions\":\"all\",\"public_ops\":"
      "\"local\",\"verify\":\"remote\",\"keys\":[\"k1\",\"k-2\"],\"key_filter\":\"k*\"},"
      "{\"url\":\"https://hsm1.managedhsm.azure.net\",\"label\":\"H\"},"
      "{\"url\":\"https://localhost:8443\",\"kind\":\"mhsm\"}]}";
  (void)state;
  assert_int_equal(akv_config_parse(json, "test.json", &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->log_level, 2);
  assert_string_equal(cfg->api_version, "7.5");
  assert_int_equal(cfg->connect_timeout_ms, 2000);
  assert_int_equal(cfg->max_retries, 2);
  assert_int_equal(cfg->max_response_bytes, 65536);
  assert_string_equal(cfg->cache_file, "");
  assert_int_equal(cfg->cred.kind, AKV_CRED_MANAGED);
  assert_string_equal(cfg->cred.client_id, "cid");
  assert_int_equal(cfg->n_slots, 3);
  assert_string_equal(cfg->slots[0].url, "https://myvault.vault.azure.net");
  assert_string_equal(cfg->slots[0].label, "myvault");
  assert_int_equal(cfg->slots[0].kind, AKV_VAULT_KEYVAULT);
  assert_int_equal(cfg->slots[0].objects, AKV_OBJ_KEYS | AKV_OBJ_SECRETS);
  assert_int_equal(cfg->slots[0].ttl_s, 60);
  assert_int_equal(cfg->slots[0].secret_ttl_s, 30);
  assert_int_equal(cfg->slots[0].stale_if_error_s, 3600);
  assert_true(cfg->slots[0].read_only);
  assert_true(cfg->slots[0].versions_all);
  assert_true(cfg->slots[0].public_ops_local);
  assert_true(cfg->slots[0].verify_remote);
  assert_int_equal(cfg->slots[0].n_key_names, 2);
  assert_string_equal(cfg->slots[0].key_names[1], "k-2");
  assert_string_equal(cfg->slots[0].key_filter, "k*");
  assert_int_equal(cfg->slots[1].kind, AKV_VAULT_MHSM);
  assert_int_equal(cfg->slots[1].objects, AKV_OBJ_KEYS);
  assert_string_equal(cfg->slots[1].label, "H");
  assert_int_equal(cfg->slots[2].kind, AKV_VAULT_MHSM);
  assert_string_equal(cfg->slots[2].url, "https://localhost:8443");
  akv_config_free(cfg);
}

static void test_defaults(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  (void)state;
  assert_int_equal(akv_config_parse("{\"slots\":[{\"url\":\"https://v1.vault.azure.net\"}]}",
                                    "t.json", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->log_level, 1);
  assert_string_equal(cfg->api_version, "7.6");
  assert_int_equal(cfg->connect_timeout_ms, 10000);
  assert_int_equal(cfg->request_timeout_ms, 30000);
  assert_int_equal(cfg->deadline_ms, 30000);
  assert_int_equal(cfg->max_retries, 4);
  assert_int_equal(cfg->retry_base_ms, 250);
  assert_int_equal(cfg->retry_cap_ms, 8000);
  assert_int_equal(cfg->pool_size, 16);
  assert_int_equal(cfg->max_response_bytes, 4 * 1024 * 1024);
  assert_null(cfg->cache_file);
  assert_int_equal(cfg->cred.kind, AKV_CRED_AUTO);
  assert_int_equal(cfg->slots[0].objects, AKV_OBJ_KEYS | AKV_OBJ_CERTIFICATES);
  assert_int_equal(cfg->slots[0].ttl_s, 300);
  assert_int_equal(cfg->slots[0].secret_ttl_s, 3600);
  assert_false(cfg->slots[0].has_cred);
  akv_config_free(cfg);
}

static void test_errors_name_field(void **state)
{
  (void)state;
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"colour\":1}", "test.json",
               "`colour`", "unknown field", "slots");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"},{\"url\":\"https://b.vault.az"
               "ure.net\",\"ttl\":\"300\"}]}",
               "test.json", "`slots[1].ttl`", "expected an integer", "a string");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"ttl\":-1}]}", "`slots[0].ttl`",
               "from 0 to");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"read_only\":\"yes\"}]}",
               "`slots[0].read_only`", "true or false");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"objects\":[\"keys\",\"blobs"
               "\"]}]}",
               "`slots[0].objects[1]`", "blobs", "\"certificates\"");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"credential\":{\"tenant\":"
               "\"x\"}}]}",
               "`slots[0].credential.tenant`", "unknown field", "tenant_id");
  EXPECT_ERROR("{\"slots\":{}}", "`slots`", "an array");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"log_level\":\"loud\"}",
               "`log_level`", "\"debug\"");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"pool_size\":1.5}",
               "`pool_size`", "integer");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"credential\":{\"type\":"
               "\"client_secret\",\"tenant_id\":\"t\"}}",
               "`credential.client_id`", "AZURE_CLIENT_ID");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"keys\":[\"https://x\"]}]}",
               "`slots[0].keys[0]`", "not a key name");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"slots\":[]}", "`slots`",
               "twice");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"},{\"url\":\"https://A.vault."
               "azure.net/\"}]}",
               "`slots[1].url`", "already slots[0]");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://h.managedhsm.azure.net\",\"objects\":"
               "[\"secrets\"]}]}",
               "`slots[0].objects`", "keys only");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"retry_base_ms\":500,"
               "\"retry_cap_ms\":100}",
               "`retry_cap_ms`");
  EXPECT_ERROR("{\"slots\": [", "test.json", "invalid JSON", "line 1");
  EXPECT_ERROR("{}", "`slots`", "no vault configured", "AKV_PKCS11_VAULT_URL");
}

static void test_url_rules(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  (void)state;
  EXPECT_ERROR("{\"slots\":[{\"url\":\"http://a.vault.azure.net\"}]}", "`slots[0].url`", "https");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://evil.example.com\"}]}", "`slots[0].url`",
               "not an Azure", "allowed_hosts");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://vault.azure.net\"}]}", "`slots[0].url`");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net.evil.com\"}]}", "`slots[0].url`");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net/keys/x\"}]}", "`slots[0].url`",
               "base URL");
  EXPECT_ERROR("{\"slots\":[{\"label\":\"x\"}]}", "`slots[0].url`", "missing");
  static const char *const ok[] = {"https://a.vault.azure.cn", "https://a.vault.usgovcloudapi.net",
                                   "https://a.managedhsm.usgovcloudapi.net",
                                   "https://a.vault.microsoftazure.de",
                                   "https://a-b.vault.azure.net:443"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    char json[256];
    snprintf(json, sizeof(json), "{\"slots\":[{\"url\":\"%s\"}]}", ok[i]);
    assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), 0);
    if (i == 2)
      assert_int_equal(cfg->slots[0].kind, AKV_VAULT_MHSM);
    if (i == 4)
      assert_string_equal(cfg->slots[0].url, "https://a-b.vault.azure.net");
    akv_config_free(cfg);
  }
}

/* docs/config.md "replicas": the rules of url, normalised, of the slot's kind, no repeats. */
static void test_replicas(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  (void)state;
  assert_int_equal(akv_config_parse("{\"slots\":[{\"url\":\"https://a.vault.azure.net\","
                                    "\"replicas\":[\"https://B.vault.azure.net:443/\","
                                    "\"https://c.vault.azure.net\"]}]}",
                                    "t.json", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->slots[0].n_replicas, 2);
  assert_string_equal(cfg->slots[0].replicas[0], "https://b.vault.azure.net");
  assert_string_equal(cfg->slots[0].replicas[1], "https://c.vault.azure.net");
  assert_string_equal(cfg->slots[0].label, "a");
  akv_config_free(cfg);
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "[\"http://b.vault.azure.net\"]}]}",
               "test.json", "`slots[0].replicas[0]`", "https", "fix");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "[\"https://evil.example.com\"]}]}",
               "`slots[0].replicas[0]`", "allowed_hosts");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "[\"https://b.managedhsm.azure.net\"]}]}",
               "`slots[0].replicas[0]`", "is a Managed HSM, the slot is a Key Vault", "fix");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.managedhsm.azure.net\",\"replicas\":"
               "[\"https://b.vault.azure.net\"]}]}",
               "`slots[0].replicas[0]`", "is a Key Vault, the slot is a Managed HSM");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "[\"https://A.vault.azure.net/\"]}]}",
               "`slots[0].replicas[0]`", "the slot's own url", "fix");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "[\"https://b.vault.azure.net\",\"https://b.vault.azure.net\"]}]}",
               "`slots[0].replicas[1]`", "already replicas[0]", "fix");
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"replicas\":"
               "\"https://b.vault.azure.net\"}]}",
               "`slots[0].replicas`", "array");
}

/* docs/config.md "share_token": on by default for the module's and each slot's credential; a
 * slot with its own credential may differ, one that uses the module's may not. */
static void test_share_token(void **state)
{
  struct akv_config *cfg = NULL;
  char err[512];
  (void)state;
  assert_int_equal(akv_config_parse("{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}]}",
                                    "t.json", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->share_token, 1);
  assert_int_equal(cfg->cred.share_token, 1);
  assert_int_equal(cfg->slots[0].share_token, 1);
  akv_config_free(cfg);
  assert_int_equal(akv_config_parse("{\"share_token\":false,\"slots\":[{\"url\":"
                                    "\"https://a.vault.azure.net\"},{\"url\":"
                                    "\"https://b.vault.azure.net\",\"share_token\":true,"
                                    "\"credential\":{\"type\":\"managed_identity\"}}]}",
                                    "t.json", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->cred.share_token, 0);
  assert_int_equal(cfg->slots[0].share_token, 0);
  assert_int_equal(cfg->slots[1].share_token, 1);
  assert_int_equal(cfg->slots[1].cred.share_token, 1);
  akv_config_free(cfg);
  EXPECT_ERROR("{\"slots\":[{\"url\":\"https://a.vault.azure.net\",\"share_token\":false}]}",
               "test.json", "`slots[0].share_token`", "the module's credential",
               "fix: set \"share_token\" at the top level");
  EXPECT_ERROR("{\"share_token\":\"no\",\"slots\":[{\"url\":\"https://a.vault.azure.net\"}]}",
               "`share_token`", "true or false");
}

static void test_secret_file_permissions(void **state)
{
  struct akv_config *cfg = NULL;
  char err[1024], json[1024];
  const char *secret;
  char secret_path[512];
  (void)state;
  secret = write_file("secret", "s3cret\n", 0644);
  snprintf(secret_path, sizeof(secret_path), "%s", secret);
  snprintf(json, sizeof(json),
           "{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"credential\":{\"type\":"
           "\"client_secret\",\"tenant_id\":\"t\",\"client_id\":\"c\",\"client_secret_file\":"
           "\"%s\"}}",
           secret_path);
  assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "chmod 600"));
  assert_non_null(strstr(err, secret_path));
  assert_non_null(strstr(err, "`credential.client_secret_file`"));
  assert_int_equal(chmod(secret_path, 0600), 0);
  assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), 0);
  assert_string_equal(cfg->cred.client_secret, "s3cret");
  akv_config_free(cfg);

  /* A config file with an inline secret must be private too. */
  {
    const char *p = write_file("inline.json",
                               "{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],"
                               "\"credential\":{\"client_secret\":\"x\",\"tenant_id\":\"t\","
                               "\"client_id\":\"c\"}}",
                               0644);
    char path[512];
    snprintf(path, sizeof(path), "%s", p);
    setenv("AKV_PKCS11_CONFIG", path, 1);
    assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "`credential.client_secret`"));
    chmod(path, 0600);
    assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->path, path);
    akv_config_free(cfg);
    unsetenv("AKV_PKCS11_CONFIG");
  }
  /* The certificate file carries the private key. */
  {
    const char *p = write_file("cert.pem", "-----BEGIN CERTIFICATE-----\n", 0640);
    char path[512];
    snprintf(path, sizeof(path), "%s", p);
    snprintf(json, sizeof(json),
             "{\"slots\":[{\"url\":\"https://a.vault.azure.net\"}],\"credential\":{\"type\":"
             "\"client_certificate\",\"tenant_id\":\"t\",\"client_id\":\"c\",\"certificate_path\":"
             "\"%s\"}}",
             path);
    assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
  }
}

static const char *slurp_log(const char *path)
{
  static char buf[16384];
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
  return buf;
}

/* A configuration file is read whole up to 1 MB (its own size allocated, not the cap); one byte
 * more is refused with the limit named. */
static void test_config_file_size(void **state)
{
  const size_t cap = 1024 * 1024;
  const char *doc = "{\"slots\": [{\"url\": \"https://big.vault.azure.net\"}]}";
  char *big = malloc(cap + 2), err[1024];
  struct akv_config *cfg = NULL;
  (void)state;
  assert_non_null(big);
  memset(big, ' ', cap + 1);
  memcpy(big, doc, strlen(doc));
  big[cap] = '\0'; /* exactly the cap: the document and spaces */
  if (akv_config_load(write_file("big.json", big, 0600), &cfg, err, sizeof(err)) != 0)
    fail_msg("refused: %s", err);
  assert_int_equal(cfg->n_slots, 1);
  akv_config_free(cfg);
  cfg = NULL;
  big[cap] = ' ';
  big[cap + 1] = '\0';
  assert_int_equal(akv_config_load(write_file("big.json", big, 0600), &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "at most 1048576 bytes"));
  free(big);
}

/* The loader logs nothing about a configuration it rejects: its caller reports err once
 * (C_Initialize logs it, the tools print it). With nothing configured it logs one INFO line
 * naming every place it searched, which akv_config_searched gives the tools too. */
static void test_logged_once(void **state)
{
  struct akv_config *cfg = NULL;
  char err[1024], logpath[512], where[1024], want[1200];
  const char *log;
  (void)state;
  snprintf(logpath, sizeof(logpath), "%s/log", dir);
  akv_log_init(AKV_LOG_INFO, logpath);
  assert_int_equal(akv_config_parse("{\"colour\": \"blue\"}", "t.json", &cfg, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "colour"));
  assert_int_equal(
      akv_config_load(write_file("bad.json", "{\"slots\": 1}", 0600), &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "slots"));
  log = slurp_log(logpath);
  assert_null(strstr(log, "colour"));
  assert_null(strstr(log, "slots"));
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->n_slots, 0);
  assert_null(cfg->path);
  akv_config_free(cfg);
  akv_config_searched(where, sizeof(where));
  snprintf(want, sizeof(want),
           "pReserved, AKV_PKCS11_CONFIG, %s/.config/akv-pkcs11/config.json, "
           "/etc/akv-pkcs11/config.json, AKV_PKCS11_VAULT_URL",
           dir);
  assert_string_equal(where, want);
  snprintf(want, sizeof(want), "INFO conf: no configuration found (looked at %s): no slots", where);
  log = slurp_log(logpath);
  assert_non_null(strstr(log, want));
  /* One line, the first one the loader wrote. */
  assert_null(strstr(strstr(log, "no configuration found") + 1, "no configuration found"));
  akv_log_close();
}

static void test_env_quick_start(void **state)
{
  struct akv_config *cfg = NULL;
  char err[1024];
  (void)state;
  /* Nothing configured anywhere: a module with zero slots (installed system-wide, p11-kit loads
   * it into every program), not an error. */
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
  assert_non_null(cfg);
  assert_int_equal(cfg->n_slots, 0);
  akv_config_free(cfg);
  cfg = NULL;
  /* An explicit configuration without a vault is still an error naming the field. */
  assert_int_equal(akv_config_parse("{\"slots\": []}", "t.json", &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "AKV_PKCS11_VAULT_URL"));
  setenv("AKV_PKCS11_VAULT_URL", "https://v1.vault.azure.net, https://localhost:8444#mhsm", 1);
  setenv("AKV_PKCS11_ALLOWED_HOSTS", "localhost,127.0.0.1", 1);
  setenv("AKV_PKCS11_CA_FILE", "/tmp/ca.pem", 1);
  setenv("AKV_PKCS11_OBJECTS", "keys,secrets", 1);
  setenv("AZURE_TENANT_ID", "tid", 1);
  setenv("AZURE_CLIENT_ID", "cid", 1);
  setenv("AZURE_CLIENT_SECRET", "csecret", 1);
  setenv("AZURE_AUTHORITY_HOST", "https://localhost:9000", 1);
  setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9001", 1);
  setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9002/msi/token", 1);
  setenv("IDENTITY_HEADER", "hdr", 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
  assert_null(cfg->path);
  assert_int_equal(cfg->n_slots, 2);
  assert_string_equal(cfg->slots[0].url, "https://v1.vault.azure.net");
  assert_int_equal(cfg->slots[0].objects, AKV_OBJ_KEYS | AKV_OBJ_SECRETS);
  assert_string_equal(cfg->slots[1].url, "https://localhost:8444");
  assert_int_equal(cfg->slots[1].kind, AKV_VAULT_MHSM);
  assert_int_equal(cfg->slots[1].objects, AKV_OBJ_KEYS);
  assert_string_equal(cfg->slots[1].label, "localhost");
  assert_int_equal(cfg->n_allowed_hosts, 2);
  assert_string_equal(cfg->allowed_hosts[1], "127.0.0.1");
  assert_string_equal(cfg->ca_file, "/tmp/ca.pem");
  assert_string_equal(cfg->cred.tenant_id, "tid");
  assert_string_equal(cfg->cred.client_secret, "csecret");
  assert_string_equal(cfg->cred.authority_host, "https://localhost:9000");
  assert_string_equal(cfg->cred.imds_endpoint, "http://127.0.0.1:9001");
  assert_string_equal(cfg->cred.identity_endpoint, "http://127.0.0.1:9002/msi/token");
  assert_string_equal(cfg->cred.identity_header, "hdr");
  akv_config_free(cfg);
  setenv("AKV_PKCS11_LOG_LEVEL", "debug", 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->log_level, 3);
  akv_config_free(cfg);
  setenv("AKV_PKCS11_LOG_LEVEL", "chatty", 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "AKV_PKCS11_LOG_LEVEL"));
  unsetenv("AKV_PKCS11_LOG_LEVEL");

  /* The file wins, the environment fills the rest. */
  {
    const char *p = write_file("c.json",
                               "{\"slots\":[{\"url\":\"https://file.vault.azure.net\"}],"
                               "\"ca_file\":\"/file/ca.pem\"}",
                               0644);
    assert_int_equal(akv_config_load(p, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->n_slots, 1);
    assert_string_equal(cfg->slots[0].url, "https://file.vault.azure.net");
    assert_string_equal(cfg->ca_file, "/file/ca.pem");
    assert_string_equal(cfg->cred.client_id, "cid");
    akv_config_free(cfg);
  }
  setenv("AKV_PKCS11_OBJECTS", "keys,blobs", 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "AKV_PKCS11_OBJECTS"));
  setenv("AKV_PKCS11_OBJECTS", "keys", 1);
  setenv("AKV_PKCS11_VAULT_URL", "https://other.example.org", 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "AKV_PKCS11_ALLOWED_HOSTS"));
}

static void test_search_order(void **state)
{
  struct akv_config *cfg = NULL;
  char err[1024], xdg[512];
  (void)state;
  snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
  mkdir(xdg, 0700);
  snprintf(xdg, sizeof(xdg), "%s/xdg/akv-pkcs11", dir);
  mkdir(xdg, 0700);
  write_file("xdg/akv-pkcs11/config.json",
             "{\"slots\":[{\"url\":\"https://xdg.vault.azure.net\"}]}", 0644);
  snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
  setenv("XDG_CONFIG_HOME", xdg, 1);
  assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
  assert_string_equal(cfg->slots[0].url, "https://xdg.vault.azure.net");
  akv_config_free(cfg);
  {
    const char *p =
        write_file("env.json", "{\"slots\":[{\"url\":\"https://env.vault.azure.net\"}]}", 0644);
    char path[512];
    snprintf(path, sizeof(path), "%s", p);
    setenv("AKV_PKCS11_CONFIG", path, 1);
    assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->slots[0].url, "https://env.vault.azure.net");
    akv_config_free(cfg);
    /* pReserved wins over everything, as inline JSON or as a path. */
    assert_int_equal(akv_config_load("  {\"slots\":[{\"url\":\"https://res.vault.azure.net\"}]}",
                                     &cfg, err, sizeof(err)),
                     0);
    assert_string_equal(cfg->slots[0].url, "https://res.vault.azure.net");
    akv_config_free(cfg);
    assert_int_equal(akv_config_load("/nonexistent/akv.json", &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/akv.json"));
    unsetenv("AKV_PKCS11_CONFIG");
  }
  unsetenv("XDG_CONFIG_HOME");
}

/* A configuration file another user can change is refused whatever it holds (no secret here),
 * with the file, the mode or owner and the fix (docs/config.md "Where the configuration comes
 * from"); 0644 and 0600 owned by the caller are accepted. */
static void test_config_file_owner_mode(void **state)
{
  static const mode_t refused[] = {0664, 0646, 0666, 0620, 0602};
  struct akv_config *cfg = NULL;
  char err[1024], path[512], mode[8];
  (void)state;
  snprintf(path, sizeof(path), "%s",
           write_file("plain.json", "{\"slots\":[{\"url\":\"https://p.vault.azure.net\"}]}", 0644));
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    assert_int_equal(chmod(path, refused[i]), 0);
    snprintf(mode, sizeof(mode), "%03o", (unsigned)refused[i]);
    assert_int_equal(akv_config_load(path, &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, mode));
    assert_non_null(strstr(err, "chmod go-w"));
    /* The same through AKV_PKCS11_CONFIG. */
    setenv("AKV_PKCS11_CONFIG", path, 1);
    assert_int_equal(akv_config_load(NULL, &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod go-w"));
    unsetenv("AKV_PKCS11_CONFIG");
  }
  assert_int_equal(chmod(path, 0644), 0);
  assert_int_equal(akv_config_load(path, &cfg, err, sizeof(err)), 0);
  akv_config_free(cfg);
  assert_int_equal(chmod(path, 0600), 0);
  assert_int_equal(akv_config_load(path, &cfg, err, sizeof(err)), 0);
  akv_config_free(cfg);
  /* Owned by another user (only root can give a file away): refused, mode 0644 or not. */
  if (geteuid() == 0) {
    assert_int_equal(chown(path, 4242, (gid_t)-1), 0);
    assert_int_equal(akv_config_load(path, &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "uid 4242"));
    assert_non_null(strstr(err, "chown"));
    assert_int_equal(chown(path, 0, (gid_t)-1), 0);
    assert_int_equal(akv_config_load(path, &cfg, err, sizeof(err)), 0);
    akv_config_free(cfg);
  }
}

/* ca_file chooses which servers are trusted: a file another user can change is refused. */
static void test_ca_file_owner_mode(void **state)
{
  struct akv_config *cfg = NULL;
  char err[1024], json[1024], ca[512];
  (void)state;
  snprintf(ca, sizeof(ca), "%s", write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0664));
  snprintf(json, sizeof(json),
           "{\"ca_file\":\"%s\",\"slots\":[{\"url\":\"https://p.vault.azure.net\"}]}", ca);
  assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "`ca_file`"));
  assert_non_null(strstr(err, ca));
  assert_non_null(strstr(err, "664"));
  assert_non_null(strstr(err, "chmod go-w"));
  /* The same through AKV_PKCS11_CA_FILE. */
  setenv("AKV_PKCS11_CA_FILE", ca, 1);
  assert_int_equal(akv_config_parse("{\"slots\":[{\"url\":\"https://p.vault.azure.net\"}]}",
                                    "t.json", &cfg, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "chmod go-w"));
  unsetenv("AKV_PKCS11_CA_FILE");
  assert_int_equal(chmod(ca, 0644), 0);
  assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), 0);
  akv_config_free(cfg);
  if (geteuid() == 0) {
    assert_int_equal(chown(ca, 4242, (gid_t)-1), 0);
    assert_int_equal(akv_config_parse(json, "t.json", &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "uid 4242"));
    assert_non_null(strstr(err, "chown"));
    assert_int_equal(chown(ca, 0, (gid_t)-1), 0);
  }
}

/* ---- attestation_root --------------------------------------------------------------------- */

/* A certificate for key named cn, issued by issuer/ikey (NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey)
{
  X509 *c = X509_new();
  X509_NAME *n = X509_NAME_new();
  assert_non_null(c);
  assert_non_null(n);
  assert_int_equal(
      X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
  assert_int_equal(X509_set_version(c, 2), 1);
  assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(c), 1), 1);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(c), -3600));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(c), 86400));
  assert_int_equal(X509_set_subject_name(c, n), 1);
  assert_int_equal(X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n), 1);
  assert_int_equal(X509_set_pubkey(c, key), 1);
  assert_true(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
  X509_NAME_free(n);
  return c;
}

static char *pem_text(X509 *c)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL, *out;
  long n;
  assert_int_equal(PEM_write_bio_X509(b, c), 1);
  n = BIO_get_mem_data(b, &p);
  out = strndup(p, (size_t)n);
  BIO_free(b);
  return out;
}

/* The configuration with attestation_root top (NULL: none) and a Managed HSM slot whose own is
 * slot (NULL: none), plus a Key Vault slot. */
static int parse_roots(const char *top, const char *slot, struct akv_config **cfg, char *err,
                       size_t errlen)
{
  char json[2048], t[700] = "", sl[700] = "";
  if (top)
    snprintf(t, sizeof(t), "\"attestation_root\":\"%s\",", top);
  if (slot)
    snprintf(sl, sizeof(sl), ",\"attestation_root\":\"%s\"", slot);
  snprintf(json, sizeof(json),
           "{%s\"slots\":[{\"url\":\"https://h.managedhsm.azure.net\"%s},"
           "{\"url\":\"https://v.vault.azure.net\"}]}",
           t, sl);
  return akv_config_parse(json, "t.json", cfg, err, errlen);
}

/* Fails, the message naming the field, the file and every needle. */
static void roots_fail(const char *top, const char *slot, const char *field, const char *path,
                       const char *needle)
{
  struct akv_config *cfg = NULL;
  char err[1024];
  if (parse_roots(top, slot, &cfg, err, sizeof(err)) == 0)
    fail_msg("accepted attestation_root %s / %s", top ? top : "-", slot ? slot : "-");
  assert_null(cfg);
  if (!strstr(err, field) || (path && !strstr(err, path)) || !strstr(err, needle) ||
      !strstr(err, "fix:"))
    fail_msg("message \"%s\" lacks %s, %s, %s or the fix", err, field, path ? path : "-", needle);
}

static void test_attestation_root(void **state)
{
  struct akv_config *cfg = NULL;
  struct stack_st_X509 *roots = NULL;
  EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *k3 = EVP_EC_gen("P-256");
  X509 *r1, *r2, *leaf;
  char err[1024], bundle[8192], one[512], two[512], lf[512], dirp[512], why[1024];
  char *p1, *p2, *pl;
  (void)state;
  assert_non_null(k1);
  assert_non_null(k2);
  assert_non_null(k3);
  r1 = make_cert(k1, "vendor root 1", NULL, NULL);
  r2 = make_cert(k2, "vendor root 2", NULL, NULL);
  leaf = make_cert(k3, "HSM card", r1, k1);
  p1 = pem_text(r1);
  p2 = pem_text(r2);
  pl = pem_text(leaf);
  /* Two roots with text around them, as CA bundles have. */
  snprintf(bundle, sizeof(bundle), "# vendor roots\n%s\nsecond:\n%s\n", p1, p2);
  snprintf(two, sizeof(two), "%s", write_file("roots.pem", bundle, 0644));
  snprintf(one, sizeof(one), "%s", write_file("root2.pem", p2, 0600));
  snprintf(lf, sizeof(lf), "%s", write_file("leaf.pem", pl, 0644));

  /* The top-level field: read at load, taken by the Managed HSM slot, not by the Key Vault. */
  assert_int_equal(parse_roots(two, NULL, &cfg, err, sizeof(err)), 0);
  assert_string_equal(cfg->attestation_root, two);
  assert_int_equal(sk_X509_num(cfg->attestation_roots), 2);
  assert_int_equal(X509_cmp(sk_X509_value(cfg->attestation_roots, 0), r1), 0);
  assert_int_equal(X509_cmp(sk_X509_value(cfg->attestation_roots, 1), r2), 0);
  assert_string_equal(cfg->slots[0].attestation_root, two);
  assert_int_equal(sk_X509_num(cfg->slots[0].attestation_roots), 2);
  assert_null(cfg->slots[1].attestation_root);
  assert_null(cfg->slots[1].attestation_roots);
  akv_config_free(cfg);
  /* The slot's own wins over the top-level one. */
  assert_int_equal(parse_roots(two, one, &cfg, err, sizeof(err)), 0);
  assert_string_equal(cfg->slots[0].attestation_root, one);
  assert_int_equal(sk_X509_num(cfg->slots[0].attestation_roots), 1);
  assert_int_equal(X509_cmp(sk_X509_value(cfg->slots[0].attestation_roots, 0), r2), 0);
  assert_int_equal(sk_X509_num(cfg->attestation_roots), 2);
  akv_config_free(cfg);
  /* Unset: none anywhere (checked up to the HSM card certificate). */
  assert_int_equal(parse_roots(NULL, NULL, &cfg, err, sizeof(err)), 0);
  assert_null(cfg->attestation_roots);
  assert_null(cfg->slots[0].attestation_roots);
  akv_config_free(cfg);

  /* Every problem is an error naming the file, the field and the fix. */
  snprintf(dirp, sizeof(dirp), "%s/missing.pem", dir);
  roots_fail(dirp, NULL, "field `attestation_root`", dirp, "No such file");
  roots_fail(NULL, dirp, "field `slots[0].attestation_root`", dirp, "cannot read");
  roots_fail(NULL, dir, "field `slots[0].attestation_root`", dir, "not a regular file");
  roots_fail("", NULL, "field `attestation_root`", NULL, "is empty");
  roots_fail(NULL, write_file("text.pem", "not a certificate\n", 0644),
             "field `slots[0].attestation_root`", "text.pem", "holds no PEM certificate");
  roots_fail(
      NULL,
      write_file("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600),
      "field `slots[0].attestation_root`", "key.pem", "is a PRIVATE KEY, not a CERTIFICATE");
  roots_fail(
      NULL,
      write_file("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0644),
      "field `slots[0].attestation_root`", "bad.pem", "is not an X.509 certificate");
  roots_fail(lf, NULL, "field `attestation_root`", lf, "is not self-signed");
  snprintf(bundle, sizeof(bundle), "%s%s", p1, pl);
  roots_fail(write_file("mixed.pem", bundle, 0644), NULL, "field `attestation_root`", "mixed.pem",
             "certificate 2 (/CN=HSM card) is not self-signed");
  /* The trust rule of ca_file: not writable by group or other, owned by root or the user. */
  assert_int_equal(chmod(two, 0664), 0);
  roots_fail(two, NULL, "field `attestation_root`", two, "chmod go-w");
  assert_int_equal(chmod(two, 0646), 0);
  roots_fail(NULL, two, "field `slots[0].attestation_root`", two, "(mode 646)");
  assert_int_equal(chmod(two, 0644), 0);
  if (geteuid() == 0) {
    assert_int_equal(chown(two, 4242, (gid_t)-1), 0);
    roots_fail(two, NULL, "field `attestation_root`", two, "owned by uid 4242");
    assert_int_equal(chown(two, 0, (gid_t)-1), 0);
  }
  /* A Key Vault has no key attestation: a slot's own field there is a mistake. */
  snprintf(bundle, sizeof(bundle),
           "{\"slots\":[{\"url\":\"https://v.vault.azure.net\",\"attestation_root\":\"%s\"}]}",
           two);
  assert_int_equal(akv_config_parse(bundle, "t.json", &cfg, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "field `slots[0].attestation_root`"));
  assert_non_null(strstr(err, "Key Vault"));
  assert_non_null(strstr(err, "fix:"));
  EXPECT_ERROR("{\"attestation_root\":5,\"slots\":[{\"url\":\"https://h.managedhsm.azure.net\"}]}",
               "`attestation_root`", "expected a string");

  /* The reader akv-p11 attest --root uses. */
  assert_int_equal(akv_attestation_roots_read(one, &roots, why, sizeof(why)), 0);
  assert_int_equal(sk_X509_num(roots), 1);
  sk_X509_pop_free(roots, X509_free);
  assert_int_equal(akv_attestation_roots_read(lf, &roots, why, sizeof(why)), -1);
  assert_null(roots);
  assert_non_null(strstr(why, "not self-signed"));

  free(p1);
  free(p2);
  free(pl);
  X509_free(r1);
  X509_free(r2);
  X509_free(leaf);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
  EVP_PKEY_free(k3);
}

static void test_azure_domains(void **state)
{
  const char *res = NULL, *dom = NULL;
  enum akv_vault_kind k;
  (void)state;
  assert_true(akv_azure_vault_host("x.vault.azure.net", &res, &k));
  assert_string_equal(res, "https://vault.azure.net");
  assert_int_equal(k, AKV_VAULT_KEYVAULT);
  assert_true(akv_azure_vault_host("X.MANAGEDHSM.AZURE.NET", &res, &k));
  assert_string_equal(res, "https://managedhsm.azure.net");
  assert_int_equal(k, AKV_VAULT_MHSM);
  assert_false(akv_azure_vault_host("vault.azure.net", &res, &k));
  assert_false(akv_azure_vault_host("x.vault.azure.net.evil", &res, &k));
  assert_false(akv_azure_vault_host("localhost", &res, &k));
  assert_true(akv_known_vault_resource("https://vault.azure.net/", &dom));
  assert_string_equal(dom, ".vault.azure.net");
  assert_true(akv_known_vault_resource("https://managedhsm.azure.net", &dom));
  assert_false(akv_known_vault_resource("https://management.azure.com", &dom));
  assert_false(akv_known_vault_resource("https://vault.azure.net.evil.com", &dom));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_name_field, setup, teardown),
      cmocka_unit_test_setup_teardown(test_url_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replicas, setup, teardown),
      cmocka_unit_test_setup_teardown(test_share_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secret_file_permissions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_env_quick_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_azure_domains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_file_owner_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ca_file_owner_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attestation_root, setup, teardown),
      cmocka_unit_test_setup_teardown(test_logged_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_file_size, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
