/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/kv/write.c over the fake HTTP transport: request method, path and JSON body of
 * key create/update/delete and secret set/delete, reply parsing, and the checks made before any
 * request (names, vault kinds, secret values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_http.h"
#include "kv/kv.h"

#define VAULT "https://myvault.vault.azure.net"
#define HSM "https://myhsm.managedhsm.azure.net"
#define V1 "0123456789abcdef0123456789abcdef"
#define EC_BUNDLE(host, name)                                                                      \
  "{\"key\":{\"kid\":\"" host "/keys/" name "/" V1 "\",\"kty\":\"EC\",\"crv\":\"P-256\","          \
  "\"key_ops\":[\"sign\",\"verify\"],\"x\":\"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY\","       \
  "\"y\":\"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU\"},\"attributes\":{\"enabled\":true,"       \
  "\"created\":1700000000,\"updated\":1700000001,\"exp\":1893456000},"                             \
  "\"tags\":{\"pkcs11-id\":\"0a0b\"}}"

static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *cl, *hsm;
static struct fake_reply queue[16];
static size_t n_queue, next_queue;

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    reply->status = 200;
    reply->body = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"tok\"}";
    return;
  }
  if (next_queue < n_queue) {
    *reply = queue[next_queue++];
    return;
  }
  reply->status = 599;
  reply->body = "{\"error\":{\"code\":\"TestHasNoReply\",\"message\":\"unscripted\"}}";
}

static void q(long status, const char *body)
{
  struct fake_reply *r = &queue[n_queue++];
  memset(r, 0, sizeof(*r));
  r->status = status;
  r->body = body;
}

/* The n-th request that went to a vault (token requests skipped), or NULL. */
static const struct fake_req *vault_req(size_t n)
{
  for (size_t i = 0; i < fake.n_reqs; i++)
    if (!strstr(fake.reqs[i].url, "/oauth2/") && n-- == 0)
      return &fake.reqs[i];
  return NULL;
}

static size_t vault_reqs(void)
{
  size_t n = 0;
  while (vault_req(n))
    n++;
  return n;
}

static int setup(void **state)
{
  struct kv_client_opts o = {VAULT, "7.6", AKV_VAULT_KEYVAULT};
  struct kv_client_opts oh = {HSM, "7.6", AKV_VAULT_MHSM};
  (void)state;
  http = fake_http_new(&fake, NULL, 0);
  assert_non_null(http);
  fake.handler = handler;
  cred = fake_secret_cred(http);
  assert_non_null(cred);
  assert_int_equal(kv_client_new(http, cred, &o, &cl), KV_OK);
  assert_int_equal(kv_client_new(http, cred, &oh, &hsm), KV_OK);
  n_queue = next_queue = 0;
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kv_client_free(cl);
  kv_client_free(hsm);
  kv_cred_free(cred);
  fake_reset(&fake);
  kv_http_free(http);
  return 0;
}

static cJSON *body_of(const struct fake_req *r)
{
  cJSON *j;
  assert_non_null(r);
  assert_non_null(r->body);
  j = cJSON_Parse(r->body);
  assert_non_null(j);
  return j;
}

static void test_create_key(void **state)
{
  struct kv_tag tag = {(char *)"pkcs11-id", (char *)"0a0b"};
  struct kv_key_spec spec;
  struct kv_key *k = NULL;
  const struct fake_req *r;
  cJSON *b, *ops;
  (void)state;
  memset(&spec, 0, sizeof(spec));
  spec.kty = KV_KTY_EC;
  spec.crv = KV_CRV_P256K;
  spec.key_ops = KV_OP_SIGN | KV_OP_VERIFY;
  spec.exp = 1893456000;
  spec.tags = &tag;
  spec.n_tags = 1;
  q(200, EC_BUNDLE(VAULT, "gen1"));
  assert_int_equal(kv_create_key(cl, "gen1", &spec, &k, NULL), KV_OK);
  assert_non_null(k);
  assert_string_equal(k->name, "gen1");
  assert_string_equal(k->version, V1);
  assert_int_equal(k->attrs.exp, 1893456000);
  assert_int_equal(k->attrs.n_tags, 1);
  kv_key_free(k);
  r = vault_req(0);
  assert_string_equal(r->method, "POST");
  assert_string_equal(r->url, VAULT "/keys/gen1/create?api-version=7.6");
  b = body_of(r);
  assert_string_equal(cJSON_GetObjectItem(b, "kty")->valuestring, "EC");
  assert_string_equal(cJSON_GetObjectItem(b, "crv")->valuestring, "P-256K");
  assert_null(cJSON_GetObjectItem(b, "key_size"));
  ops = cJSON_GetObjectItem(b, "key_ops");
  assert_int_equal(cJSON_GetArraySize(ops), 2);
  assert_string_equal(cJSON_GetArrayItem(ops, 0)->valuestring, "sign");
  assert_string_equal(cJSON_GetArrayItem(ops, 1)->valuestring, "verify");
  assert_int_equal(
      (int64_t)cJSON_GetObjectItem(cJSON_GetObjectItem(b, "attributes"), "exp")->valuedouble,
      1893456000);
  assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "attributes"), "nbf"));
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "tags"), "pkcs11-id")->valuestring,
                      "0a0b");
  cJSON_Delete(b);

  /* RSA-HSM with a size; a reply about another key is a protocol error. */
  memset(&spec, 0, sizeof(spec));
  spec.kty = KV_KTY_RSA;
  spec.hsm = 1;
  spec.key_size = 3072;
  q(200, EC_BUNDLE(VAULT, "other"));
  assert_int_equal(kv_create_key(cl, "gen2", &spec, &k, NULL), KV_E_PROTOCOL);
  assert_null(k);
  b = body_of(vault_req(1));
  assert_string_equal(cJSON_GetObjectItem(b, "kty")->valuestring, "RSA-HSM");
  assert_int_equal(cJSON_GetObjectItem(b, "key_size")->valueint, 3072);
  assert_null(cJSON_GetObjectItem(b, "key_ops"));
  assert_null(cJSON_GetObjectItem(b, "tags"));
  cJSON_Delete(b);

  /* The service's refusals keep their meaning. */
  q(409, "{\"error\":{\"code\":\"Conflict\",\"message\":\"deleted but recoverable\"}}");
  assert_int_equal(kv_create_key(cl, "gen3", &spec, &k, NULL), KV_E_CONFLICT);
  q(403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"no keys/create\"}}");
  assert_int_equal(kv_create_key(cl, "gen3", &spec, &k, NULL), KV_E_FORBIDDEN);
}

static void test_create_checks(void **state)
{
  struct kv_key_spec spec;
  struct kv_key *k = NULL;
  struct kv_tag big[16];
  (void)state;
  memset(&spec, 0, sizeof(spec));
  spec.kty = KV_KTY_EC;
  assert_int_equal(kv_create_key(cl, "bad_name", &spec, &k, NULL), KV_E_INVALID);
  assert_int_equal(kv_create_key(cl, "", &spec, &k, NULL), KV_E_INVALID);
  /* Symmetric keys only in a Managed HSM, and a Managed HSM only holds HSM keys. */
  spec.kty = KV_KTY_OCT;
  spec.hsm = 1;
  assert_int_equal(kv_create_key(cl, "aes", &spec, &k, NULL), KV_E_UNSUPPORTED);
  spec.hsm = 0;
  assert_int_equal(kv_create_key(hsm, "aes", &spec, &k, NULL), KV_E_INVALID);
  /* More tags than the service keeps. */
  spec.kty = KV_KTY_EC;
  for (size_t i = 0; i < 16; i++) {
    big[i].name = (char *)"t";
    big[i].value = (char *)"v";
  }
  spec.tags = big;
  spec.n_tags = 16;
  assert_int_equal(kv_create_key(cl, "many-tags", &spec, &k, NULL), KV_E_INVALID);
  assert_int_equal(vault_reqs(), 0); /* nothing was sent */
}

static void test_create_hsm_aes(void **state)
{
  struct kv_key_spec spec;
  struct kv_key *k = NULL;
  cJSON *b;
  (void)state;
  memset(&spec, 0, sizeof(spec));
  spec.kty = KV_KTY_OCT;
  spec.hsm = 1;
  spec.key_size = 256;
  spec.key_ops = KV_OP_ENCRYPT | KV_OP_DECRYPT | KV_OP_WRAP | KV_OP_UNWRAP;
  q(200, "{\"attributes\":{\"created\":1,\"enabled\":true,\"updated\":1},\"key\":{\"key_ops\":"
         "[\"encrypt\",\"decrypt\",\"wrapKey\",\"unwrapKey\"],\"kid\":\"" HSM "/keys/aes1/" V1
         "\",\"kty\":\"oct-HSM\"}}");
  assert_int_equal(kv_create_key(hsm, "aes1", &spec, &k, NULL), KV_OK);
  assert_int_equal(k->kty, KV_KTY_OCT);
  assert_true(k->hsm);
  kv_key_free(k);
  b = body_of(vault_req(0));
  assert_string_equal(cJSON_GetObjectItem(b, "kty")->valuestring, "oct-HSM");
  assert_int_equal(cJSON_GetObjectItem(b, "key_size")->valueint, 256);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "key_ops")), 4);
  cJSON_Delete(b);
}

static void test_update_key(void **state)
{
  struct kv_tag tag = {(char *)"pkcs11-id", (char *)"0c"};
  struct kv_update u;
  struct kv_key *k = NULL;
  const struct fake_req *r;
  cJSON *b, *a;
  (void)state;
  memset(&u, 0, sizeof(u));
  u.set_nbf = 1; /* 0: clear it */
  u.set_exp = 1;
  u.exp = 1893456000;
  u.set_tags = 1;
  u.tags = &tag;
  u.n_tags = 1;
  q(200, EC_BUNDLE(VAULT, "upd"));
  assert_int_equal(kv_update_key(cl, "upd", V1, &u, &k, NULL), KV_OK);
  assert_non_null(k);
  kv_key_free(k);
  r = vault_req(0);
  assert_string_equal(r->method, "PATCH");
  assert_string_equal(r->url, VAULT "/keys/upd/" V1 "?api-version=7.6");
  b = body_of(r);
  a = cJSON_GetObjectItem(b, "attributes");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(a, "nbf")));
  assert_int_equal((int64_t)cJSON_GetObjectItem(a, "exp")->valuedouble, 1893456000);
  assert_null(cJSON_GetObjectItem(a, "enabled"));
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "tags"), "pkcs11-id")->valuestring,
                      "0c");
  cJSON_Delete(b);
  /* An empty tag set is sent as such (it removes every tag). */
  memset(&u, 0, sizeof(u));
  u.set_tags = 1;
  q(200, EC_BUNDLE(VAULT, "upd"));
  assert_int_equal(kv_update_key(cl, "upd", V1, &u, NULL, NULL), KV_OK);
  b = body_of(vault_req(1));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "tags")), 0);
  assert_null(cJSON_GetObjectItem(b, "attributes"));
  cJSON_Delete(b);
  assert_int_equal(kv_update_key(cl, "upd", "not-a-version", &u, NULL, NULL), KV_E_INVALID);
  q(404, "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"gone\"}}");
  assert_int_equal(kv_update_key(cl, "upd", V1, &u, NULL, NULL), KV_E_NOT_FOUND);
}

static void test_deletes(void **state)
{
  (void)state;
  q(200,
    "{\"recoveryId\":\"" VAULT "/deletedkeys/k1\",\"deletedDate\":1,\"scheduledPurgeDate\":2}");
  assert_int_equal(kv_delete_key(cl, "k1", NULL), KV_OK);
  assert_string_equal(vault_req(0)->method, "DELETE");
  assert_string_equal(vault_req(0)->url, VAULT "/keys/k1?api-version=7.6");
  q(404, "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"gone\"}}");
  assert_int_equal(kv_delete_key(cl, "k1", NULL), KV_E_NOT_FOUND);
  q(200, "{\"recoveryId\":\"" VAULT "/deletedsecrets/s1\"}");
  assert_int_equal(kv_delete_secret(cl, "s1", NULL), KV_OK);
  assert_string_equal(vault_req(2)->url, VAULT "/secrets/s1?api-version=7.6");
  q(200, "{\"recoveryId\":\"" VAULT "/deletedcertificates/c1\"}");
  assert_int_equal(kv_delete_certificate(cl, "c1", NULL), KV_OK);
  assert_string_equal(vault_req(3)->url, VAULT "/certificates/c1?api-version=7.6");
  /* Managed HSM has no secrets or certificates; bad names never leave. */
  assert_int_equal(kv_delete_secret(hsm, "s1", NULL), KV_E_UNSUPPORTED);
  assert_int_equal(kv_delete_certificate(hsm, "c1", NULL), KV_E_UNSUPPORTED);
  assert_int_equal(kv_delete_key(cl, "a/b", NULL), KV_E_INVALID);
  assert_int_equal(vault_reqs(), 4);
}

static void test_set_secret(void **state)
{
  static const unsigned char bin[] = {'a', 0xff, 'b'}, nul[] = {'a', 0, 'b'},
                             overlong[] = {0xc0, 0xaf}, surrogate[] = {0xed, 0xa0, 0x80};
  struct kv_secret *s = NULL;
  const struct fake_req *r;
  cJSON *b;
  (void)state;
  q(200, "{\"value\":\"h\\u00e9llo\",\"id\":\"" VAULT "/secrets/cfg/" V1 "\",\"contentType\":"
         "\"text/plain\",\"attributes\":{\"enabled\":true,\"created\":5,\"updated\":6}}");
  assert_int_equal(kv_set_secret(cl, "cfg", (const unsigned char *)"h\xc3\xa9llo", 6, "text/plain",
                                 NULL, 0, &s, NULL),
                   KV_OK);
  assert_non_null(s);
  assert_string_equal(s->name, "cfg");
  assert_string_equal(s->version, V1);
  assert_null(s->value); /* the reply's value is not kept */
  assert_int_equal(s->attrs.created, 5);
  kv_secret_free(s);
  r = vault_req(0);
  assert_string_equal(r->method, "PUT");
  assert_string_equal(r->url, VAULT "/secrets/cfg?api-version=7.6");
  b = body_of(r);
  assert_string_equal(cJSON_GetObjectItem(b, "value")->valuestring, "h\xc3\xa9llo");
  assert_string_equal(cJSON_GetObjectItem(b, "contentType")->valuestring, "text/plain");
  cJSON_Delete(b);
  /* Values a JSON string cannot carry as they are are refused before any request. */
  assert_int_equal(kv_set_secret(cl, "b", bin, sizeof(bin), NULL, NULL, 0, &s, NULL), KV_E_INVALID);
  assert_int_equal(kv_set_secret(cl, "b", nul, sizeof(nul), NULL, NULL, 0, &s, NULL), KV_E_INVALID);
  assert_int_equal(kv_set_secret(cl, "b", overlong, sizeof(overlong), NULL, NULL, 0, &s, NULL),
                   KV_E_INVALID);
  assert_int_equal(kv_set_secret(cl, "b", surrogate, sizeof(surrogate), NULL, NULL, 0, &s, NULL),
                   KV_E_INVALID);
  assert_int_equal(kv_set_secret(hsm, "b", (const unsigned char *)"x", 1, NULL, NULL, 0, &s, NULL),
                   KV_E_UNSUPPORTED);
  assert_int_equal(vault_reqs(), 1);
  /* A reply naming another secret is not believed. */
  q(200, "{\"id\":\"" VAULT "/secrets/other/" V1 "\",\"attributes\":{}}");
  assert_int_equal(kv_set_secret(cl, "cfg", (const unsigned char *)"x", 1, NULL, NULL, 0, &s, NULL),
                   KV_E_PROTOCOL);
  assert_null(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_hsm_aes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_update_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deletes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_secret, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
