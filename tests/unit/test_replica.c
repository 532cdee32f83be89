/* SPDX-License-Identifier: Apache-2.0 */
/* src/kv/replica.c against the fake transport: a primary and two replicas answered by a handler
 * per vault (docs/reliability.md "Replica vaults"): the spread, the replica's own version found by
 * comparing public keys, a replica with other material never used, failover on 429 and on a
 * replica's error for one key, the primary's 404 final, a remote verify and a decrypt spread the
 * same way, symmetric keys on the primary only, every vault failing with one line naming each, and
 * kv_replica_compare (doctor). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "fake_http.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "util/b64.h"
#include "util/log.h"

#define P "https://prim.vault.azure.net"
#define R1 "https://rep1.vault.azure.net"
#define R2 "https://rep2.vault.azure.net"
#define VP "0123456789abcdef0123456789abcdef"     /* the primary's version */
#define VR1 "11111111111111111111111111111111"    /* rep1's version of the same key */
#define VR2 "22222222222222222222222222222222"    /* rep2's latest: other material */
#define VR2OLD "33333333333333333333333333333333" /* rep2's older version: the same key */

static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *cl;
static char log_path[128];
static char jwk_a[512], jwk_b[512]; /* "x":..,"y":.. of two EC P-256 keys */

/* What each vault answers, per test. */
static struct {
  long sign_status[3]; /* status of keys/k/.../sign per vault (0 = 200) */
  const char *retry_after[3];
  int rep2_has_old; /* rep2 lists VR2OLD holding key a */
  int rep1_lacks;   /* rep1 answers 404 for the key */
  long all_status;  /* every vault request gets it (0 = off) */
  int signs[3], gets[3], lists[3], verifies[3], decrypts[3];
  char verify_url[3][256];
  char sign_url[3][256];
} w;

static int vault_of(const char *url)
{
  return strncmp(url, R1, strlen(R1)) == 0 ? 1 : strncmp(url, R2, strlen(R2)) == 0 ? 2 : 0;
}

static char reply_body[2048];

static void bundle(const char *vault, const char *version, const char *jwk)
{
  snprintf(reply_body, sizeof(reply_body),
           "{\"key\":{\"kid\":\"%s/keys/k/%s\",\"kty\":\"EC\",\"crv\":\"P-256\",%s,"
           "\"key_ops\":[\"sign\",\"verify\"]},\"attributes\":{\"enabled\":true}}",
           vault, version, jwk);
}

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  int v = vault_of(req->url);
  const char *base = v == 0 ? P : v == 1 ? R1 : R2;
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->status = 200;
    reply->body = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"tok\"}";
    return;
  }
  if (w.all_status) {
    reply->status = w.all_status;
    reply->body = "{\"error\":{\"code\":\"ServiceUnavailable\",\"message\":\"down\"}}";
    return;
  }
  if (strstr(req->url, "/sign?")) {
    w.signs[v]++;
    snprintf(w.sign_url[v], sizeof(w.sign_url[v]), "%s", req->url);
    reply->status = w.sign_status[v] ? w.sign_status[v] : 200;
    reply->retry_after = w.retry_after[v];
    reply->body = reply->status == 200
                      ? "{\"kid\":\"x\",\"value\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gI"
                        "SIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw\"}"
                      : "{\"error\":{\"code\":\"Refused\",\"message\":\"scripted\"}}";
    return;
  }
  if (strstr(req->url, "/decrypt?")) {
    w.decrypts[v]++;
    snprintf(w.verify_url[v], sizeof(w.verify_url[v]), "%s", req->url);
    reply->status = w.sign_status[v] ? w.sign_status[v] : 200;
    reply->body = reply->status == 200 ? "{\"kid\":\"x\",\"value\":\"c2VjcmV0\"}"
                                       : "{\"error\":{\"code\":\"Refused\",\"message\":\"x\"}}";
    return;
  }
  if (strstr(req->url, "/verify?")) {
    w.verifies[v]++;
    snprintf(w.verify_url[v], sizeof(w.verify_url[v]), "%s", req->url);
    reply->status = w.sign_status[v] ? w.sign_status[v] : 200;
    reply->body = reply->status == 200 ? "{\"value\":true}"
                                       : "{\"error\":{\"code\":\"Refused\",\"message\":\"x\"}}";
    return;
  }
  if (strstr(req->url, "/versions?")) {
    w.lists[v]++;
    snprintf(reply_body, sizeof(reply_body),
             "{\"value\":[{\"kid\":\"%s/keys/k/%s\",\"attributes\":{\"enabled\":true}}%s%s%s]}",
             base, VR2, w.rep2_has_old ? ",{\"kid\":\"" : "", w.rep2_has_old ? R2 "/keys/k/" : "",
             w.rep2_has_old ? VR2OLD "\",\"attributes\":{\"enabled\":true}}" : "");
    reply->status = 200;
    reply->body = reply_body;
    return;
  }
  w.gets[v]++;
  reply->status = 200;
  if (v == 1 && w.rep1_lacks) {
    reply->status = 404;
    reply->body = "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"no key\"}}";
  } else if (v == 0) {
    bundle(P, VP, jwk_a);
  } else if (v == 1) {
    bundle(R1, VR1, jwk_a);
  } else if (strstr(req->url, VR2OLD)) {
    bundle(R2, VR2OLD, jwk_a);
  } else {
    bundle(R2, VR2, jwk_b);
  }
  if (reply->status == 200)
    reply->body = reply_body;
}

static void ec_jwk(char *out, size_t len)
{
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  BIGNUM *x = NULL, *y = NULL;
  unsigned char bx[32], by[32];
  char *sx, *sy;
  assert_non_null(k);
  assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
  assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
  assert_int_equal(BN_bn2binpad(x, bx, 32), 32);
  assert_int_equal(BN_bn2binpad(y, by, 32), 32);
  sx = akv_b64url_encode(bx, 32);
  sy = akv_b64url_encode(by, 32);
  snprintf(out, len, "\"x\":\"%s\",\"y\":\"%s\"", sx, sy);
  free(sx);
  free(sy);
  BN_free(x);
  BN_free(y);
  EVP_PKEY_free(k);
}

static int setup(void **state)
{
  static const char *const urls[] = {R1, R2};
  struct kv_client_opts o = {P, "7.6", AKV_VAULT_KEYVAULT};
  (void)state;
  memset(&w, 0, sizeof(w));
  snprintf(log_path, sizeof(log_path), "/tmp/akv-test-replica-%ld.log", (long)getpid());
  unlink(log_path);
  akv_log_init(AKV_LOG_WARN, log_path);
  http = fake_http_new(&fake, NULL, 0);
  assert_non_null(http);
  fake.handler = handler;
  cred = fake_secret_cred(http);
  assert_non_null(cred);
  assert_int_equal(kv_client_new(http, cred, &o, &cl), KV_OK);
  assert_int_equal(kv_client_add_replicas(cl, urls, 2, NULL), KV_OK);
  assert_int_equal(kv_client_n_vaults(cl), 3);
  assert_string_equal(kv_client_vault_url(cl, 2), R2);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kv_client_free(cl);
  kv_cred_free(cred);
  fake_reset(&fake);
  kv_http_free(http);
  akv_log_close();
  unlink(log_path);
  return 0;
}

static size_t log_count(const char *needle)
{
  char line[1024];
  size_t n = 0;
  FILE *f = fopen(log_path, "r");
  if (!f)
    return 0;
  while (fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

static kv_rc sign_once(const char *alg)
{
  unsigned char d[32] = {1};
  struct kv_bytes sig = {NULL, 0};
  kv_rc rc = kv_sign(cl, "k", VP, alg, d, sizeof(d), &sig, NULL);
  if (rc == KV_OK)
    assert_int_equal(sig.len, 64); /* ES256 and HS512 */
  kv_bytes_free(&sig);
  return rc;
}

/* Spread over the primary and rep1, addressing rep1's own version; rep2 (other material under the
 * name, no older version) never signs, one warning names it and the difference. */
static void test_spread_own_version_differs(void **state)
{
  (void)state;
  for (int i = 0; i < 9; i++)
    assert_int_equal(sign_once("ES256"), KV_OK);
  assert_int_equal(w.signs[0] + w.signs[1], 9);
  assert_true(w.signs[0] >= 2 && w.signs[1] >= 2);
  assert_non_null(strstr(w.sign_url[1], R1 "/keys/k/" VR1 "/sign?"));
  assert_non_null(strstr(w.sign_url[0], P "/keys/k/" VP "/sign?"));
  assert_int_equal(w.signs[2], 0);
  assert_int_equal(w.gets[1], 1); /* one comparison each, the primary's key read once */
  assert_int_equal(w.gets[2], 1);
  assert_int_equal(w.lists[2], 1);
  assert_int_equal(w.gets[0], 1);
  assert_int_equal(log_count("replica " R2 ": key k differs from the primary's (EC public point "
                             "x/y differs)"),
                   1);
}

/* rep2's latest differs, an older enabled version holds the key: that version is used. */
static void test_older_version_matches(void **state)
{
  char ver[64], diff[160];
  (void)state;
  w.rep2_has_old = 1;
  assert_int_equal(kv_replica_compare(cl, 2, "k", VP, ver, sizeof(ver), diff, sizeof(diff)), KV_OK);
  assert_string_equal(ver, VR2OLD);
  w.sign_status[0] = w.sign_status[1] = 503;
  assert_int_equal(sign_once("ES256"), KV_OK);
  assert_int_equal(w.signs[2], 1);
  assert_non_null(strstr(w.sign_url[2], R2 "/keys/k/" VR2OLD "/sign?"));
  assert_int_equal(log_count("every vault failed"), 0);
}

/* kv_replica_compare (akv-p11 doctor): same, different with the difference, missing. */
static void test_compare(void **state)
{
  char ver[64], diff[160];
  (void)state;
  assert_int_equal(kv_replica_compare(cl, 1, "k", NULL, ver, sizeof(ver), diff, sizeof(diff)),
                   KV_OK);
  assert_string_equal(ver, VR1);
  assert_int_equal(kv_replica_compare(cl, 2, "k", NULL, ver, sizeof(ver), diff, sizeof(diff)),
                   KV_E_CONFLICT);
  assert_string_equal(diff, "EC public point x/y differs");
  w.rep1_lacks = 1;
  assert_int_equal(kv_replica_compare(cl, 1, "k", NULL, ver, sizeof(ver), diff, sizeof(diff)),
                   KV_E_NOT_FOUND);
  assert_int_equal(kv_replica_compare(cl, 0, "k", NULL, ver, sizeof(ver), diff, sizeof(diff)),
                   KV_E_INVALID);
}

/* A 429 at one vault: the same call goes on at the other, which then takes the next calls while
 * the throttled one rests for its Retry-After. */
static void test_failover_throttled(void **state)
{
  (void)state;
  w.sign_status[1] = 429;
  w.retry_after[1] = "30";
  for (int i = 0; i < 6; i++)
    assert_int_equal(sign_once("ES256"), KV_OK);
  assert_true(w.signs[1] <= 1); /* asked once at most, then resting */
  assert_int_equal(w.signs[0], 6);
  assert_int_equal(log_count("every vault failed"), 0);
}

/* A replica's own error for the key (403): the primary serves, the replica is not asked again for
 * that key; a replica that lacks the key is never asked to sign it. */
static void test_replica_error_for_key(void **state)
{
  (void)state;
  w.sign_status[1] = 403;
  for (int i = 0; i < 6; i++)
    assert_int_equal(sign_once("ES256"), KV_OK);
  assert_true(w.signs[1] <= 1);
  assert_int_equal(w.signs[0] + w.signs[1], 6 + w.signs[1]);
  assert_int_equal(log_count("sign k failed there (HTTP 403)"), w.signs[1]);
}

static void test_replica_lacks_key(void **state)
{
  (void)state;
  w.rep1_lacks = 1;
  for (int i = 0; i < 4; i++)
    assert_int_equal(sign_once("ES256"), KV_OK);
  assert_int_equal(w.signs[1], 0);
  assert_int_equal(w.signs[0], 4);
  assert_int_equal(log_count("replica " R1 ": key k: KV_E_NOT_FOUND when comparing"), 1);
}

/* The primary's 404 is final: the key is gone, no replica is asked after it. */
static void test_primary_not_found_final(void **state)
{
  int before;
  (void)state;
  w.sign_status[0] = 404;
  w.sign_status[1] = 503;
  /* rep1 answers 503, so whichever the round robin starts at, the primary is asked. */
  assert_int_equal(sign_once("ES256"), KV_E_NOT_FOUND);
  assert_int_equal(w.signs[0], 1);
  before = w.signs[1];
  assert_true(before <= 1);
  assert_int_equal(log_count("every vault failed"), 0);
}

/* A remote verify is spread the same way, with the replica's own version; a 503 at one vault
 * moves it to another. */
static void test_verify_spread(void **state)
{
  unsigned char d[32] = {3}, sig[64] = {4};
  int valid = 0;
  (void)state;
  w.sign_status[0] = 503; /* the primary fails: rep1 (rep2 differs) answers */
  assert_int_equal(kv_verify(cl, "k", VP, "ES256", d, sizeof(d), sig, sizeof(sig), &valid, NULL),
                   KV_OK);
  assert_true(valid);
  assert_int_equal(w.verifies[1], 1);
  assert_non_null(strstr(w.verify_url[1], R1 "/keys/k/" VR1 "/verify?"));
  assert_int_equal(w.verifies[2], 0);
}

/* A decrypt too: throttled at the primary, rep1 answers with the plaintext. */
static void test_decrypt_spread(void **state)
{
  unsigned char ct[256] = {5};
  struct kv_crypt_result res;
  (void)state;
  w.sign_status[0] = 429;
  w.retry_after[0] = "5";
  assert_int_equal(
      kv_cipher(cl, KV_DECRYPT, "k", VP, "RSA-OAEP-256", ct, sizeof(ct), NULL, &res, NULL), KV_OK);
  assert_int_equal(res.value.len, 6);
  assert_memory_equal(res.value.data, "secret", 6);
  kv_crypt_result_free(&res);
  assert_int_equal(w.decrypts[1], 1);
  assert_non_null(strstr(w.verify_url[1], R1 "/keys/k/" VR1 "/decrypt?"));
  assert_true(w.decrypts[0] <= 1);
}

/* HMAC (a symmetric key): the primary only, no comparison. */
static void test_symmetric_primary_only(void **state)
{
  (void)state;
  for (int i = 0; i < 3; i++)
    assert_int_equal(sign_once("HS512"), KV_OK);
  assert_int_equal(w.signs[0], 3);
  assert_int_equal(w.signs[1] + w.signs[2] + w.gets[1] + w.gets[2], 0);
}

/* Every vault answering 503 within a short deadline: KV_E_SERVER and one line naming each. */
static void test_all_fail(void **state)
{
  static const char *const urls[] = {R1, R2};
  struct kv_client_opts o = {P, "7.6", AKV_VAULT_KEYVAULT};
  struct kv_http_opts ho;
  struct kv_http *h2 = NULL;
  struct kv_client *c2 = NULL;
  struct fake_http f2;
  unsigned char d[32] = {2};
  struct kv_bytes sig = {NULL, 0};
  (void)state;
  /* A client of its own with a 1.5 s deadline: the vaults' 1 s rests are real time. */
  memset(&f2, 0, sizeof(f2));
  ho = *kv_http_opts_peek(http);
  ho.deadline_ms = 1500;
  assert_int_equal(kv_http_new(&ho, &h2), KV_OK);
  fake_install(&f2, h2);
  f2.handler = handler;
  assert_int_equal(kv_client_new(h2, cred, &o, &c2), KV_OK);
  assert_int_equal(kv_client_add_replicas(c2, urls, 2, NULL), KV_OK);
  assert_int_equal(kv_sign(c2, "k", VP, "ES256", d, sizeof(d), &sig, NULL), KV_OK); /* warms up */
  kv_bytes_free(&sig);
  w.all_status = 503;
  assert_int_equal(kv_sign(c2, "k", VP, "ES256", d, sizeof(d), &sig, NULL), KV_E_SERVER);
  assert_int_equal(log_count("keys.sign k: every vault failed within the deadline: " P ": "), 1);
  assert_int_equal(log_count(R1 ": "), 1);
  kv_client_free(c2);
  fake_reset(&f2);
  kv_http_free(h2);
}

static void test_bad_arguments(void **state)
{
  static const char *const urls[] = {R1, R2, R1, R2, R1, R2, R1, R2, R1};
  struct kv_client_opts o = {P, "7.6", AKV_VAULT_KEYVAULT};
  struct kv_client *c2 = NULL;
  (void)state;
  assert_int_equal(kv_client_add_replicas(cl, urls, 1, NULL), KV_E_INVALID); /* already has */
  assert_int_equal(kv_client_add_replicas(NULL, urls, 1, NULL), KV_E_INVALID);
  assert_int_equal(kv_client_new(http, cred, &o, &c2), KV_OK);
  assert_int_equal(kv_client_add_replicas(c2, urls, 9, NULL), KV_E_INVALID);
  assert_int_equal(kv_client_add_replicas(c2, NULL, 0, NULL), KV_OK);
  assert_int_equal(kv_client_n_vaults(c2), 1);
  assert_null(kv_client_vault(c2, 1));
  kv_client_free(c2);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_spread_own_version_differs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_older_version_matches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_compare, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failover_throttled, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replica_error_for_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replica_lacks_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_primary_not_found_final, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_spread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decrypt_spread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symmetric_primary_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_all_fail, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
  };
  ec_jwk(jwk_a, sizeof(jwk_a));
  ec_jwk(jwk_b, sizeof(jwk_b));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
