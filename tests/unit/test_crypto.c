/* SPDX-License-Identifier: Apache-2.0 */
/* src/kv/crypto.c: request bodies that carry plaintext (encrypt, wrapkey) are wiped before their
 * memory is freed (docs/security.md "Secrets in memory and in logs"). Every block cJSON frees goes
 * through a hook that looks for the plaintext's base64url form in it before freeing; the fake
 * transport's own copy of the request (tests/unit/fake_http.h) is plain malloc, not looked at. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "fake_http.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "util/b64.h"

#define VAULT "https://myvault.vault.azure.net"
#define V1 "0123456789abcdef0123456789abcdef"

static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *cl;
static char token_body[128];
static char reply_body[512];

/* The base64url text the freed blocks must not hold, and how often one did. */
static const char *needle;
static int needle_freed;

static void checking_free(void *p)
{
  if (p && needle) {
    size_t n = malloc_usable_size(p), nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
      if (memcmp((char *)p + i, needle, nl) == 0) {
        needle_freed++;
        break;
      }
  }
  free(p);
}

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  (void)f;
  reply->status = 200;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    snprintf(token_body, sizeof(token_body),
             "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"tok\"}");
    reply->body = token_body;
    return;
  }
  reply->body = reply_body; /* a 256-byte RSA ciphertext */
}

static int setup(void **state)
{
  static const char *const allowed[] = {"localhost"};
  unsigned char ct[256];
  char *b64;
  struct kv_client_opts o = {VAULT, "7.6", AKV_VAULT_KEYVAULT};
  (void)state;
  http = fake_http_new(&fake, allowed, 1);
  assert_non_null(http);
  fake.handler = handler;
  cred = fake_secret_cred(http);
  assert_non_null(cred);
  assert_int_equal(kv_client_new(http, cred, &o, &cl), KV_OK);
  memset(ct, 7, sizeof(ct));
  b64 = akv_b64url_encode(ct, sizeof(ct));
  snprintf(reply_body, sizeof(reply_body), "{\"kid\":\"x\",\"value\":\"%s\"}", b64);
  free(b64);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  needle = NULL;
  kv_client_free(cl);
  kv_cred_free(cred);
  fake_reset(&fake);
  kv_http_free(http);
  return 0;
}

static void run_op(enum kv_cipher_op op, const char *alg)
{
  /* 48 distinctive bytes: their base64url form is what a stale copy would show. */
  static const unsigned char plain[] = "plaintext that must be wiped before free: 0123";
  struct kv_crypt_result r;
  char *b64 = akv_b64url_encode(plain, sizeof(plain) - 1);
  assert_non_null(b64);
  needle = b64;
  needle_freed = 0;
  assert_int_equal(kv_cipher(cl, op, "k", V1, alg, plain, sizeof(plain) - 1, NULL, &r, NULL),
                   KV_OK);
  kv_crypt_result_free(&r);
  needle = NULL;
  /* The request really carried it (so the check above means something). */
  assert_non_null(strstr(fake.reqs[fake.n_reqs - 1].body, b64));
  assert_int_equal(needle_freed, 0);
  free(b64);
}

static void test_encrypt_body_wiped(void **state)
{
  (void)state;
  run_op(KV_ENCRYPT, "RSA-OAEP-256");
}

static void test_wrapkey_body_wiped(void **state)
{
  (void)state;
  run_op(KV_WRAP, "RSA-OAEP");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_encrypt_body_wiped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrapkey_body_wiped, setup, teardown),
  };
  /* Before anything allocates with cJSON: cJSON's malloc stays malloc (the module frees some
   * printed buffers with free), only its frees are looked at. */
  cJSON_Hooks hooks = {malloc, checking_free};
  cJSON_InitHooks(&hooks);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
