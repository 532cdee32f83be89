/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_http.h"
#include "kv/client.h"
#include "kv/kv.h"
#include "util/audit.h"
#include "util/b64.h"
#include "util/log.h"

#define VAULT "https://myvault.vault.azure.net"
#define V1 "0123456789abcdef0123456789abcdef"
#define TOKEN_OK "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"tok-%d\"}"

static struct fake_http fake;
static struct kv_http *http;
static struct kv_cred *cred;
static struct kv_client *cl;
static int token_requests;
static char token_body[128];
/* Vault replies, in order (token requests are answered by the handler). */
static struct fake_reply queue[32];
static size_t n_queue, next_queue;
static char dir[128];

static void handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  (void)f;
  if (strstr(req->url, "/oauth2/v2.0/token")) {
    snprintf(token_body, sizeof(token_body), TOKEN_OK, ++token_requests);
    reply->status = 200;
    reply->body = token_body;
    return;
  }
  if (next_queue < n_queue) {
    *reply = queue[next_queue++];
    return;
  }
  reply->status = 599;
  reply->body = "{\"error\":{\"code\":\"TestHasNoReply\",\"message\":\"unscripted\"}}";
}

static struct fake_reply *q(long status, const char *body)
{
  struct fake_reply *r = &queue[n_queue++];
  memset(r, 0, sizeof(*r));
  r->status = status;
  r->body = body;
  return r;
}

static struct kv_client *client_for(const char *url, enum akv_vault_kind kind)
{
  struct kv_client_opts o = {url, "7.6", kind};
  struct kv_client *c = NULL;
  assert_int_equal(kv_client_new(http, cred, &o, &c), KV_OK);
  return c;
}

static int setup(void **state)
{
  static const char *const allowed[] = {"localhost"};
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/akv-test-client-XXXXXX");
  assert_non_null(mkdtemp(dir));
  http = fake_http_new(&fake, allowed, 1);
  assert_non_null(http);
  fake.handler = handler;
  cred = fake_secret_cred(http);
  assert_non_null(cred);
  cl = client_for(VAULT, AKV_VAULT_KEYVAULT);
  token_requests = 0;
  n_queue = next_queue = 0;
  return 0;
}

static int teardown(void **state)
{
  char cmd[200];
  (void)state;
  kv_client_free(cl);
  kv_cred_free(cred);
  fake_reset(&fake);
  kv_http_free(http);
  akv_audit_close();
  akv_log_close();
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

/* The n-th request that went to the vault (token requests skipped). */
static const struct fake_req *vault_req(size_t n)
{
  for (size_t i = 0; i < fake.n_reqs; i++)
    if (!strstr(fake.reqs[i].url, "/oauth2/") && n-- == 0)
      return &fake.reqs[i];
  fail_msg("no vault request %zu", n);
  return NULL;
}

static void test_list_paging(void **state)
{
  struct kv_item_list l;
  (void)state;
  q(200,
    "{\"value\":[{\"kid\":\"" VAULT "/keys/k1\",\"attributes\":{\"enabled\":true,\"created\""
    ":1}},{\"kid\":\"" VAULT "/keys/k2\",\"attributes\":{\"enabled\":false},\"managed\":true,"
    "\"tags\":{\"env\":\"prod\"}}],\"nextLink\":\"https://myvault.vault.azure.net:443/keys?api-"
    "version=7.6&$skiptoken=abc&maxresults=25\"}");
  q(200, "{\"value\":[],\"nextLink\":\"" VAULT "/keys?api-version=7.6&$skiptoken=def\"}");
  q(200, "{\"value\":[{\"kid\":\"" VAULT "/keys/k3\"}],\"nextLink\":null}");
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_OK);
  assert_int_equal(l.n, 3);
  assert_string_equal(kv_item_list_at(&l, 0)->name, "k1");
  assert_null(kv_item_list_at(&l, 0)->version);
  assert_true(kv_item_list_at(&l, 0)->attrs.enabled);
  assert_false(kv_item_list_at(&l, 1)->attrs.enabled);
  assert_true(kv_item_list_at(&l, 1)->attrs.managed);
  assert_string_equal(kv_item_list_at(&l, 1)->attrs.tags[0].value, "prod");
  assert_string_equal(kv_item_list_at(&l, 2)->name, "k3");
  assert_true(kv_item_list_at(&l, 2)->attrs.enabled);
  kv_item_list_free(&l);
  assert_int_equal(token_requests, 1);
  assert_string_equal(vault_req(0)->url, VAULT "/keys?maxresults=25&api-version=7.6");
  assert_string_equal(vault_req(0)->bearer, "tok-1");
  assert_string_equal(vault_req(1)->url, "https://myvault.vault.azure.net:443/keys?api-version=7."
                                         "6&$skiptoken=abc&maxresults=25");
  assert_string_equal(vault_req(2)->bearer, "tok-1");
  /* Versions list: versioned ids. */
  q(200, "{\"value\":[{\"kid\":\"" VAULT "/keys/k1/" V1 "\"}]}");
  assert_int_equal(kv_list_key_versions(cl, "k1", &l, NULL), KV_OK);
  assert_string_equal(kv_item_list_at(&l, 0)->version, V1);
  assert_string_equal(vault_req(3)->url, VAULT "/keys/k1/versions?maxresults=25&api-version=7.6");
  kv_item_list_free(&l);
  /* Secrets and certificates use "id". */
  q(200, "{\"value\":[{\"id\":\"" VAULT "/secrets/s1\",\"contentType\":\"text/plain\"}]}");
  assert_int_equal(kv_list_secrets(cl, &l, NULL), KV_OK);
  assert_string_equal(kv_item_list_at(&l, 0)->content_type, "text/plain");
  kv_item_list_free(&l);
  q(200, "{\"value\":[{\"id\":\"" VAULT "/certificates/c1\",\"x5t\":\"abc\"}]}");
  assert_int_equal(kv_list_certificates(cl, &l, NULL), KV_OK);
  assert_string_equal(kv_item_list_at(&l, 0)->x5t, "abc");
  kv_item_list_free(&l);
}

/* Pages of a listing of many_total keys, many_per_page a page, named k00000.. in order: the page
 * is the skiptoken of the request. */
#define MANY_ITEMS 1337
static unsigned many_total = MANY_ITEMS, many_per_page = 25, many_pages;
static char many_body[16384];

static void many_handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  const char *tok = strstr(req->url, "skiptoken=");
  unsigned page = tok ? (unsigned)strtoul(tok + 10, NULL, 10) : 0, first = page * many_per_page;
  size_t len = 0;
  if (strstr(req->url, "/oauth2/")) {
    handler(f, req, reply);
    return;
  }
  many_pages++;
  len += (size_t)snprintf(many_body + len, sizeof(many_body) - len, "{\"value\":[");
  for (unsigned i = first; i < first + many_per_page && i < many_total; i++)
    len += (size_t)snprintf(many_body + len, sizeof(many_body) - len,
                            "%s{\"kid\":\"" VAULT "/keys/k%05u\",\"attributes\":{\"created\":%u}}",
                            i > first ? "," : "", i, i);
  if (first + many_per_page < many_total)
    snprintf(many_body + len, sizeof(many_body) - len,
             "],\"nextLink\":\"" VAULT "/keys?$skiptoken=%u\"}", page + 1);
  else
    snprintf(many_body + len, sizeof(many_body) - len, "]}");
  reply->status = 200;
  reply->body = many_body;
}

/* A listing of many pages spans several blocks of items (KV_ITEM_BLOCK): every item arrives once,
 * in the service's order, each block an allocation of its own. */
static void test_list_many_pages(void **state)
{
  struct kv_item_list l;
  char want[32];
  (void)state;
  many_pages = 0;
  fake.handler = many_handler;
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_OK);
  fake.handler = handler;
  assert_int_equal(l.n, MANY_ITEMS);
  assert_true(MANY_ITEMS > 2 * KV_ITEM_BLOCK);
  for (size_t i = 0; i < l.n; i++) {
    const struct kv_item *it = kv_item_list_at(&l, i);
    snprintf(want, sizeof(want), "k%05zu", i);
    assert_string_equal(it->name, want);
    assert_int_equal(it->attrs.created, (int64_t)i);
  }
  /* Blocks are separate allocations of KV_ITEM_BLOCK items, well under malloc's mmap threshold. */
  assert_true(KV_ITEM_BLOCK * sizeof(struct kv_item) <= 128 * 1024);
  assert_ptr_not_equal(l.blocks[0], l.blocks[1]);
  assert_ptr_equal(kv_item_list_at(&l, KV_ITEM_BLOCK), &l.blocks[1][0]);
  assert_ptr_equal(kv_item_list_at(&l, MANY_ITEMS - 1),
                   &l.blocks[(MANY_ITEMS - 1) / KV_ITEM_BLOCK][(MANY_ITEMS - 1) % KV_ITEM_BLOCK]);
  kv_item_list_free(&l);
  assert_null(l.blocks);
  assert_int_equal(l.n, 0);
  assert_int_equal(many_pages, (MANY_ITEMS + 24) / 25);
}

/* A listing of more items than the cap (100,000, src/kv/client.c) is refused with nothing returned:
 * 1,000 pages of 101 items reach it within the page cap. */
static void test_list_item_cap(void **state)
{
  struct kv_item_list l;
  (void)state;
  many_total = 1000 * 101;
  many_per_page = 101;
  many_pages = 0;
  fake.handler = many_handler;
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_E_PROTOCOL);
  fake.handler = handler;
  assert_null(l.blocks);
  assert_int_equal(l.n, 0);
  assert_int_equal(many_pages, 991); /* 990 pages hold 99,990 items; the 991st goes past */
  /* One page fewer (100,000 items exactly) is a listing. */
  many_total = 100000;
  many_per_page = 100;
  many_pages = 0;
  fake.handler = many_handler;
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_OK);
  fake.handler = handler;
  assert_int_equal(l.n, 100000);
  assert_string_equal(kv_item_list_at(&l, 99999)->name, "k99999");
  kv_item_list_free(&l);
  many_total = MANY_ITEMS;
  many_per_page = 25;
}

static void expect_list_rc(const char *body, kv_rc want)
{
  struct kv_item_list l = {NULL, 0};
  kv_rc rc;
  n_queue = next_queue = 0;
  q(200, "{\"value\":[{\"kid\":\"" VAULT "/keys/first\"}],\"nextLink\":\"" VAULT
         "/keys?$skiptoken=x\"}");
  q(200, body);
  rc = kv_list_keys(cl, &l, NULL);
  if (rc != want)
    fail_msg("%s for %s", kv_rc_str(rc), body);
  assert_null(l.blocks);
  assert_int_equal(l.n, 0);
}

static int loop_pages;

static void loop_handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  if (strstr(req->url, "/oauth2/")) {
    handler(f, req, reply);
    return;
  }
  loop_pages++;
  reply->status = 200;
  reply->body = "{\"value\":[],\"nextLink\":\"" VAULT "/keys?loop\"}";
}

static void test_list_hostile(void **state)
{
  (void)state;
  expect_list_rc("{\"value\":[],\"nextLink\":\"https://evil.example.com/keys?x\"}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[],\"nextLink\":\"http://myvault.vault.azure.net/keys\"}",
                 KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[],\"nextLink\":\"https://myvault.vault.azure.net:8443/keys\"}",
                 KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[],\"nextLink\":\"/keys?relative\"}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[],\"nextLink\":42}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":\"" VAULT "/keys/a\"}", KV_E_PROTOCOL); /* truncated */
  expect_list_rc("not json at all", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":{}}", KV_E_PROTOCOL);
  expect_list_rc("{\"nextLink\":null}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":7}]}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[\"x\"]}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":\"" VAULT "/secrets/a\"}]}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":\"" VAULT "/keys/a b\"}]}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":\"" VAULT "/keys/a\",\"attributes\":{\"created\":\"x\"}}]}",
                 KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[{\"kid\":\"" VAULT "/keys/a\",\"attributes\":[]}]}", KV_E_PROTOCOL);
  expect_list_rc("{\"value\":[]} {\"extra\":1}", KV_E_PROTOCOL);
  /* An endless chain of pages stops at the page cap. */
  {
    struct kv_item_list l = {NULL, 0};
    fake.handler = loop_handler;
    assert_int_equal(kv_list_keys(cl, &l, NULL), KV_E_PROTOCOL);
    assert_int_equal(loop_pages, 4000); /* MAX_ITEMS / 25: a 25,000-key vault (1,000 pages) lists */
    fake.handler = handler;
  }
}

static void test_oversized(void **state)
{
  static char big[80000];
  struct kv_item_list l;
  (void)state;
  memcpy(big, "{\"value\":[],\"pad\":\"", 19);
  memset(big + 19, 'a', sizeof(big) - 22);
  memcpy(big + sizeof(big) - 3, "\"}", 3);
  q(200, big);
  assert_int_equal(strlen(big), sizeof(big) - 1);
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_E_PROTOCOL);
  /* The same document under the cap is fine: it was the size that was refused. */
  big[100] = '\0';
  memcpy(big + 97, "\"}", 3);
  q(200, big);
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_OK);
  kv_item_list_free(&l);
}

#define EC_KEY_JSON(name, crvx)                                                                    \
  "{\"key\":{\"kid\":\"" VAULT "/keys/" name "/" V1 "\",\"kty\":\"EC\",\"crv\":\"P-256\","         \
  "\"key_ops\":[\"sign\",\"verify\"],\"x\":\"" crvx "\","                                          \
  "\"y\":\"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU\"},\"attributes\":{\"enabled\":true}}"
#define GX "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY"

static void test_get_key(void **state)
{
  struct kv_key *k = NULL;
  long st = -1;
  (void)state;
  q(200, EC_KEY_JSON("eckey", GX));
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_OK);
  assert_string_equal(k->version, V1);
  assert_int_equal(k->crv, KV_CRV_P256);
  kv_key_free(k);
  assert_string_equal(vault_req(0)->url, VAULT "/keys/eckey/?api-version=7.6");
  q(200, EC_KEY_JSON("eckey", GX));
  assert_int_equal(kv_get_key(cl, "eckey", V1, &k, NULL), KV_OK);
  kv_key_free(k);
  assert_string_equal(vault_req(1)->url, VAULT "/keys/eckey/" V1 "?api-version=7.6");
  /* Hostile: bad base64url, another key, wrong types. */
  q(200, EC_KEY_JSON("eckey", "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwp!"));
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  assert_null(k);
  q(200, EC_KEY_JSON("otherkey", GX));
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  q(200, "{\"key\":[]}");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  q(200, "");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  /* Service errors. */
  q(404, "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"A key with (name/id) nokey was not "
         "found in this key vault.\"}}");
  assert_int_equal(kv_get_key(cl, "nokey", NULL, &k, &st), KV_E_NOT_FOUND);
  assert_int_equal(st, 404);
  q(403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"no keys get permission\",\"innererror\":"
         "{\"code\":\"AccessDenied\"}}}");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_FORBIDDEN);
  q(409, "{\"error\":\"not an object\"}");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_CONFLICT);
  for (int i = 0; i < 5; i++)
    q(429, "{\"error\":{\"code\":\"Throttled\",\"message\":\"too many\"}}");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, &st), KV_E_THROTTLED);
  assert_int_equal(st, 429);
  for (int i = 0; i < 5; i++)
    q(503, NULL);
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, &st), KV_E_SERVER);
  assert_int_equal(st, 503);
  /* Bad names never reach the network. */
  size_t before = fake.n_reqs;
  assert_int_equal(kv_get_key(cl, "../secrets/x", NULL, &k, NULL), KV_E_INVALID);
  assert_int_equal(kv_get_key(cl, "ok", "v/1", &k, NULL), KV_E_INVALID);
  assert_int_equal(kv_get_key(cl, "", NULL, &k, NULL), KV_E_INVALID);
  assert_int_equal(fake.n_reqs, before);
}

static void test_get_cert_and_secret(void **state)
{
  struct kv_cert *c = NULL;
  struct kv_secret *s = NULL;
  (void)state;
  q(200, "{\"id\":\"" VAULT "/certificates/c1/" V1 "\",\"kid\":\"" VAULT "/keys/c1/" V1 "\","
         "\"sid\":\"" VAULT "/secrets/c1/" V1 "\",\"x5t\":\"x\",\"cer\":\"MIIBAg==\","
         "\"attributes\":{\"enabled\":true,\"exp\":99}}");
  assert_int_equal(kv_get_certificate(cl, "c1", NULL, &c, NULL), KV_OK);
  assert_int_equal(c->der_len, 4);
  assert_memory_equal(c->der, "\x30\x82\x01\x02", 4);
  assert_string_equal(c->version, V1);
  assert_int_equal(c->attrs.exp, 99);
  kv_cert_free(c);
  q(200, "{\"id\":\"" VAULT "/certificates/c1/" V1 "\",\"cer\":\"MIIB-g\"}");
  assert_int_equal(kv_get_certificate(cl, "c1", NULL, &c, NULL), KV_E_PROTOCOL);
  q(200, "{\"value\":\"s3cr3t\",\"id\":\"" VAULT "/secrets/s1/" V1 "\",\"contentType\":\"text\"}");
  assert_int_equal(kv_get_secret(cl, "s1", NULL, &s, NULL), KV_OK);
  assert_int_equal(s->value_len, 6);
  assert_memory_equal(s->value, "s3cr3t", 6);
  assert_string_equal(s->content_type, "text");
  kv_secret_free(s);
  q(200, "{\"value\":5,\"id\":\"" VAULT "/secrets/s1/" V1 "\"}");
  assert_int_equal(kv_get_secret(cl, "s1", NULL, &s, NULL), KV_E_PROTOCOL);
}

static void test_sign_verify(void **state)
{
  struct kv_bytes sig = {NULL, 0};
  unsigned char digest[32] = {1, 2, 3};
  char body[256], *sig64;
  unsigned char raw[64];
  int valid = -1;
  (void)state;
  memset(raw, 0x5a, sizeof(raw));
  sig64 = akv_b64url_encode(raw, 64);
  snprintf(body, sizeof(body), "{\"kid\":\"" VAULT "/keys/k/" V1 "\",\"value\":\"%s\"}", sig64);
  q(200, body);
  assert_int_equal(kv_sign(cl, "k", NULL, "ES256", digest, 32, &sig, NULL), KV_OK);
  assert_int_equal(sig.len, 64);
  assert_memory_equal(sig.data, raw, 64);
  kv_bytes_free(&sig);
  assert_string_equal(vault_req(0)->url, VAULT "/keys/k/sign?api-version=7.6");
  assert_string_equal(vault_req(0)->method, "POST");
  assert_non_null(strstr(vault_req(0)->body, "\"alg\":\"ES256\""));
  assert_non_null(strstr(vault_req(0)->body, "\"value\":\"AQID"));
  /* A signature of the wrong length for the algorithm is a protocol error. */
  free(sig64);
  sig64 = akv_b64url_encode(raw, 63);
  snprintf(body, sizeof(body), "{\"value\":\"%s\"}", sig64);
  q(200, body);
  assert_int_equal(kv_sign(cl, "k", V1, "ES256", digest, 32, &sig, NULL), KV_E_PROTOCOL);
  assert_null(sig.data);
  q(200, "{\"value\":\"not base64!\"}");
  assert_int_equal(kv_sign(cl, "k", V1, "ES256", digest, 32, &sig, NULL), KV_E_PROTOCOL);
  q(200, "{\"value\":null}");
  assert_int_equal(kv_sign(cl, "k", V1, "ES256", digest, 32, &sig, NULL), KV_E_PROTOCOL);
  /* RS256 over a 384-bit digest is a caller error: no request. */
  size_t before = fake.n_reqs;
  assert_int_equal(kv_sign(cl, "k", V1, "RS256", digest, 20, &sig, NULL), KV_E_INVALID);
  assert_int_equal(kv_sign(cl, "k", V1, "ES256\"}", digest, 32, &sig, NULL), KV_E_INVALID);
  assert_int_equal(fake.n_reqs, before);
  q(200, "{\"value\":true}");
  assert_int_equal(kv_verify(cl, "k", V1, "ES256", digest, 32, raw, 64, &valid, NULL), KV_OK);
  assert_int_equal(valid, 1);
  q(200, "{\"value\":false}");
  assert_int_equal(kv_verify(cl, "k", V1, "ES256", digest, 32, raw, 64, &valid, NULL), KV_OK);
  assert_int_equal(valid, 0);
  q(200, "{\"value\":\"true\"}");
  assert_int_equal(kv_verify(cl, "k", V1, "ES256", digest, 32, raw, 64, &valid, NULL),
                   KV_E_PROTOCOL);
  q(200, "{}");
  assert_int_equal(kv_verify(cl, "k", V1, "ES256", digest, 32, raw, 64, &valid, NULL),
                   KV_E_PROTOCOL);
  free(sig64);
}

/* The sign request is put together by hand: exactly the body cJSON would print, the URL of the
 * pinned version, and the heap fallback for a vault URL too long for the stack buffer. */
static void test_sign_request_bytes(void **state)
{
  struct kv_bytes sig = {NULL, 0};
  unsigned char digest[32], raw[64];
  char body[256], *sig64, *d64, want[256], longurl[700];
  struct kv_client *lc;
  (void)state;
  for (size_t i = 0; i < sizeof(digest); i++)
    digest[i] = (unsigned char)(0xf0 + i);
  memset(raw, 0x33, sizeof(raw));
  sig64 = akv_b64url_encode(raw, 64);
  d64 = akv_b64url_encode(digest, 32);
  snprintf(body, sizeof(body), "{\"value\":\"%s\"}", sig64);
  q(200, body);
  assert_int_equal(kv_sign(cl, "key-1", V1, "ES256", digest, 32, &sig, NULL), KV_OK);
  kv_bytes_free(&sig);
  assert_string_equal(vault_req(0)->url, VAULT "/keys/key-1/" V1 "/sign?api-version=7.6");
  snprintf(want, sizeof(want), "{\"alg\":\"ES256\",\"value\":\"%s\"}", d64);
  assert_string_equal(vault_req(0)->body, want);

  /* 1,024 bytes (the largest input) fit the body buffer. */
  {
    unsigned char big[1024];
    memset(big, 0xab, sizeof(big));
    q(200, body);
    assert_int_equal(kv_sign(cl, "key-1", V1, "RSNULL", big, sizeof(big), &sig, NULL),
                     KV_E_PROTOCOL);
    assert_int_equal(strlen(vault_req(1)->body),
                     strlen("{\"alg\":\"RSNULL\",\"value\":\"\"}") + 1366);
  }

  memset(longurl, 0, sizeof(longurl));
  memcpy(longurl, "https://localhost/", 18);
  memset(longurl + 18, 'p', 600);
  lc = client_for(longurl, AKV_VAULT_KEYVAULT);
  q(200, body);
  assert_int_equal(kv_sign(lc, "key-1", NULL, "ES256", digest, 32, &sig, NULL), KV_OK);
  kv_bytes_free(&sig);
  snprintf(want, sizeof(want), "/keys/key-1/sign?api-version=7.6");
  assert_int_equal(strncmp(vault_req(2)->url, longurl, strlen(longurl)), 0);
  assert_string_equal(vault_req(2)->url + strlen(longurl), want);
  kv_client_free(lc);
  free(sig64);
  free(d64);
}

static void test_path_url(void **state)
{
  const char *const segs[] = {"keys", "k", NULL, "sign"};
  char buf[128];
  size_t need = strlen(VAULT "/keys/k/sign?api-version=7.6");
  (void)state;
  assert_ptr_equal(kv_client_path_url(cl, buf, sizeof(buf), segs, 4), buf);
  assert_string_equal(buf, VAULT "/keys/k/sign?api-version=7.6");
  /* Exactly the length plus its NUL fits; one byte less does not. */
  assert_ptr_equal(kv_client_path_url(cl, buf, need + 1, segs, 4), buf);
  assert_null(kv_client_path_url(cl, buf, need, segs, 4));
  assert_null(kv_client_path_url(cl, buf, 10, segs, 4));
  assert_null(kv_client_path_url(cl, buf, 0, segs, 4));
}

static void test_cipher(void **state)
{
  struct kv_crypt_result r;
  unsigned char ct[256], pt[5] = "hello";
  char body[512], *b64;
  struct kv_aes_params aes = {NULL, 0, (const unsigned char *)"aad", 3, NULL, 0};
  (void)state;
  memset(ct, 7, sizeof(ct));
  b64 = akv_b64url_encode(ct, sizeof(ct));
  snprintf(body, sizeof(body), "{\"kid\":\"x\",\"value\":\"%s\"}", b64);
  q(200, body);
  assert_int_equal(kv_cipher(cl, KV_ENCRYPT, "k", V1, "RSA-OAEP-256", pt, 5, NULL, &r, NULL),
                   KV_OK);
  assert_int_equal(r.value.len, 256);
  kv_crypt_result_free(&r);
  assert_string_equal(vault_req(0)->url, VAULT "/keys/k/" V1 "/encrypt?api-version=7.6");
  q(200, "{\"value\":\"aGVsbG8\"}");
  assert_int_equal(kv_cipher(cl, KV_ENCRYPT, "k", V1, "RSA-OAEP-256", pt, 5, NULL, &r, NULL),
                   KV_E_PROTOCOL);
  assert_null(r.value.data);
  q(200, "{\"value\":\"aGVsbG8\"}");
  assert_int_equal(kv_cipher(cl, KV_UNWRAP, "k", V1, "RSA-OAEP", ct, 256, NULL, &r, NULL), KV_OK);
  assert_int_equal(r.value.len, 5);
  assert_memory_equal(r.value.data, "hello", 5);
  kv_crypt_result_free(&r);
  assert_non_null(strstr(vault_req(2)->url, "/unwrapkey?"));
  /* AES-GCM: the service returns iv and tag. */
  q(200, "{\"value\":\"aGVsbG8\",\"iv\":\"N6uTe16mFnewBJ-_\",\"tag\":\"rf2qJ09ulZWGl_2Cwr0Myw\"}");
  assert_int_equal(kv_cipher(cl, KV_ENCRYPT, "k", V1, "A256GCM", pt, 5, &aes, &r, NULL), KV_OK);
  assert_int_equal(r.iv.len, 12);
  assert_int_equal(r.tag.len, 16);
  kv_crypt_result_free(&r);
  assert_non_null(strstr(vault_req(3)->body, "\"aad\":\"YWFk\""));
  assert_null(strstr(vault_req(3)->body, "\"iv\""));
  q(200, "{\"value\":\"aGVsbG8\"}");
  assert_int_equal(kv_cipher(cl, KV_ENCRYPT, "k", V1, "A256GCM", pt, 5, &aes, &r, NULL),
                   KV_E_PROTOCOL);
  free(b64);
}

static const char *read_log(const char *path)
{
  static char buf[65536];
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
  return buf;
}

/* A 404 with neither Key Vault's error body nor its headers is a web server at a wrong URL: an
 * error naming the URL, not "this key does not exist" (docs/troubleshooting.md). */
static void test_not_a_vault(void **state)
{
  struct kv_key *k = NULL;
  struct kv_item_list l;
  char logpath[256];
  const char *log;
  (void)state;
  snprintf(logpath, sizeof(logpath), "%s/log", dir);
  akv_log_init(AKV_LOG_INFO, logpath);
  q(404, "<html><body>Not Found</body></html>");
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  assert_null(k);
  q(404, NULL);
  assert_int_equal(kv_list_keys(cl, &l, NULL), KV_E_PROTOCOL);
  log = read_log(logpath);
  assert_non_null(strstr(log, "keys.get eckey: HTTP 404 from " VAULT " without Key Vault's error "
                              "body or x-ms-keyvault headers: the URL is probably not a vault"));
  assert_non_null(strstr(log, "fix: check slots[].url"));
  /* The vault's own 404 stays "not found", without that line. */
  akv_log_init(AKV_LOG_INFO, logpath);
  assert_int_equal(truncate(logpath, 0), 0);
  q(404, "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"A key with (name/id) gone was "
         "not found in this key vault.\"}}");
  assert_int_equal(kv_get_key(cl, "gone", NULL, &k, NULL), KV_E_NOT_FOUND);
  log = read_log(logpath);
  assert_null(strstr(log, "probably not a vault"));
  assert_non_null(strstr(log, "KeyNotFound"));
}

/* A name that does not resolve and an untrusted certificate are named in the call's error line;
 * neither is retried when the transport says so (the libcurl transport does for both). */
static void test_network_causes(void **state)
{
  struct kv_key *k = NULL;
  struct fake_reply *r;
  char logpath[256];
  const char *log;
  size_t before;
  (void)state;
  snprintf(logpath, sizeof(logpath), "%s/log", dir);
  akv_log_init(AKV_LOG_INFO, logpath);
  assert_int_equal(kv_get_key(cl, "warm", NULL, &k, NULL), KV_E_SERVER); /* the token is fetched */
  before = fake.n_reqs;
  r = q(0, NULL);
  r->fail = KV_E_NETWORK;
  r->net_fail = KV_FAIL_DNS;
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_NETWORK);
  assert_int_equal(fake.n_reqs - before, 1); /* one attempt, no retry */
  before = fake.n_reqs;
  r = q(0, NULL);
  r->fail = KV_E_NETWORK;
  r->net_fail = KV_FAIL_TLS_TRUST;
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_NETWORK);
  assert_int_equal(fake.n_reqs - before, 1);
  log = read_log(logpath);
  assert_non_null(strstr(log, "keys.get eckey: KV_E_NETWORK after 1 attempt(s): the host name "
                              "does not resolve"));
  assert_non_null(strstr(log, "keys.get eckey: KV_E_NETWORK after 1 attempt(s): the server's "
                              "certificate is not trusted"));
}

static void test_challenge(void **state)
{
  struct kv_key *k = NULL;
  long st = -1;
  const char *log;
  char logpath[256];
  (void)state;
  snprintf(logpath, sizeof(logpath), "%s/log", dir);
  akv_log_init(AKV_LOG_INFO, logpath);
  q(401, "{\"error\":{\"code\":\"Unauthorized\",\"message\":\"AKV10000\"}}")->www_auth =
      "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1\", "
      "resource=\"https://vault.azure.net\"";
  q(200, EC_KEY_JSON("eckey", GX));
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_OK);
  kv_key_free(k);
  assert_int_equal(token_requests, 2); /* initial + forced refresh after the challenge */
  assert_string_equal(vault_req(1)->bearer, "tok-2");
  /* Still 401 after the refresh: unauthorized, one retry only. */
  q(401, NULL)->www_auth = "Bearer authorization=\"https://login.microsoftonline.com/t\", "
                           "resource=\"https://vault.azure.net\"";
  q(401, NULL)->www_auth = "Bearer authorization=\"https://login.microsoftonline.com/t\", "
                           "resource=\"https://vault.azure.net\"";
  q(200, EC_KEY_JSON("eckey", GX));
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, &st), KV_E_UNAUTHORIZED);
  assert_int_equal(st, 401);
  next_queue = n_queue; /* drop the unused reply */
  /* A challenge for another service or another cloud's domain is refused, no token asked. */
  int before = token_requests;
  q(401, NULL)->www_auth = "Bearer authorization=\"https://login.microsoftonline.com/t\", "
                           "resource=\"https://management.azure.com\"";
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  q(401, NULL)->www_auth = "Bearer authorization_uri=\"https://login.microsoftonline.com/t\", "
                           "scope=\"https://managedhsm.azure.net/.default\"";
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_E_PROTOCOL);
  assert_int_equal(token_requests, before);

  {
    FILE *f = fopen(logpath, "r");
    static char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
      fclose(f);
    log = buf;
  }
  assert_non_null(strstr(log, "does not match the requested domain"));
  assert_non_null(strstr(log, "not a Key Vault resource"));
  assert_null(strstr(log, "tok-")); /* tokens never logged */
}

/* One deadline (30 s in fake_http_new) covers the whole call: a 401 that took 29.9 s leaves the
 * retry with the token refresh only the remaining 100 ms, not a fresh 30 s. */
static void test_operation_deadline(void **state)
{
  struct kv_key *k = NULL;
  int64_t t0 = fake.now_ms;
  struct fake_reply *r;
  (void)state;
  r = q(401, NULL);
  r->www_auth = "Bearer authorization=\"https://login.microsoftonline.com/t\", "
                "resource=\"https://vault.azure.net\"";
  r->delay_ms = 29900;
  for (int i = 0; i < 8; i++)
    q(503, "{\"error\":{\"code\":\"ServiceUnavailable\",\"message\":\"x\"}}")->delay_ms = 40;
  assert_int_not_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_OK);
  assert_null(k);
  assert_true(fake.now_ms - t0 <= 30000);
  /* The next call gets a whole deadline again. */
  next_queue = n_queue;
  t0 = fake.now_ms;
  q(503, "{}")->delay_ms = 9000;
  q(503, "{}")->delay_ms = 9000;
  q(200, EC_KEY_JSON("eckey", GX))->delay_ms = 9000;
  assert_int_equal(kv_get_key(cl, "eckey", NULL, &k, NULL), KV_OK);
  kv_key_free(k);
  assert_true(fake.now_ms - t0 > 25000);
}

static void test_custom_host_challenge(void **state)
{
  struct kv_client *lc = client_for("https://localhost:8443", AKV_VAULT_MHSM);
  struct kv_key *k = NULL;
  struct kv_client_opts o = {"https://other.example.com", "7.6", AKV_VAULT_KEYVAULT};
  struct kv_client *bad = NULL;
  (void)state;
  q(401, NULL)->www_auth = "Bearer authorization=\"https://login.microsoftonline.com/t\", "
                           "resource=\"https://managedhsm.azure.net\"";
  q(200, "{\"key\":{\"kid\":\"https://localhost:8443/keys/aes/" V1 "\",\"kty\":\"oct-HSM\"}}");
  assert_int_equal(kv_get_key(lc, "aes", NULL, &k, NULL), KV_OK);
  assert_int_equal(k->kty, KV_KTY_OCT);
  kv_key_free(k);
  assert_int_equal(kv_client_new(http, cred, &o, &bad), KV_E_INVALID);
  assert_null(bad);
  kv_client_free(lc);
}

static void test_random(void **state)
{
  struct kv_client *mh = client_for("https://h1.managedhsm.azure.net", AKV_VAULT_MHSM);
  unsigned char out[200];
  char b1[256], b2[256], *e1, *e2;
  unsigned char src[128];
  (void)state;
  assert_int_equal(kv_random(cl, out, 16, NULL), KV_E_UNSUPPORTED);
  memset(src, 0xab, sizeof(src));
  e1 = akv_b64url_encode(src, 128);
  e2 = akv_b64url_encode(src, 72);
  snprintf(b1, sizeof(b1), "{\"value\":\"%s\"}", e1);
  snprintf(b2, sizeof(b2), "{\"value\":\"%s\"}", e2);
  q(200, b1);
  q(200, b2);
  assert_int_equal(kv_random(mh, out, 200, NULL), KV_OK);
  assert_int_equal(out[199], 0xab);
  assert_non_null(strstr(vault_req(0)->body, "\"count\":128"));
  assert_non_null(strstr(vault_req(1)->body, "\"count\":72"));
  q(200, b2); /* 72 bytes where 128 were asked */
  assert_int_equal(kv_random(mh, out, 128, NULL), KV_E_PROTOCOL);
  free(e1);
  free(e2);
  kv_client_free(mh);
}

static void keys_handler(struct fake_http *f, const struct fake_req *req, struct fake_reply *reply)
{
  static char bodies[8][1024];
  static int n;
  const char *name;
  if (strstr(req->url, "/oauth2/")) {
    handler(f, req, reply);
    return;
  }
  name = strstr(req->url, "/keys/") + 6;
  if (strncmp(name, "missing", 7) == 0) {
    reply->status = 404;
    reply->body = "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"missing\"}}";
    return;
  }
  char *b = bodies[n++ % 8];
  snprintf(b, 1024, EC_KEY_JSON("%.*s", GX), (int)strcspn(name, "/"), name);
  reply->status = 200;
  reply->body = b;
}

static void test_get_keys_concurrent(void **state)
{
  const char *names[] = {"a1", "a2", "missing", "a4", "a5"};
  struct kv_key *out[5];
  kv_rc rcs[5];
  long sts[5];
  (void)state;
  fake.handler = keys_handler;
  assert_int_equal(kv_get_keys(cl, names, NULL, 5, 1, out, rcs, sts), KV_E_NOT_FOUND);
  for (int i = 0; i < 5; i++) {
    if (i == 2) {
      /* Whichever thread fetched "missing", the caller sees its status. */
      assert_int_equal(rcs[i], KV_E_NOT_FOUND);
      assert_int_equal(sts[i], 404);
      assert_null(out[i]);
      continue;
    }
    assert_int_equal(rcs[i], KV_OK);
    assert_int_equal(sts[i], 200);
    assert_string_equal(out[i]->name, names[i]);
    kv_key_free(out[i]);
  }
  assert_int_equal(token_requests, 1); /* single flight across the threads */
  fake.handler = handler;
}

/* The thread of every request the fake served, for the sequential mode below. */
static pthread_t served_on[32];
static int n_served;

static void keys_handler_threads(struct fake_http *f, const struct fake_req *req,
                                 struct fake_reply *reply)
{
  if (n_served < 32)
    served_on[n_served++] = pthread_self();
  keys_handler(f, req, reply);
}

/* CKF_LIBRARY_CANT_CREATE_OS_THREADS: threads 0 reads the keys one after another in the caller's
 * thread; the default reads them on worker threads too. */
static void test_get_keys_sequential(void **state)
{
  const char *names[] = {"a1", "a2", "missing", "a4", "a5"};
  struct kv_key *out[5];
  kv_rc rcs[5];
  long sts[5];
  int i, others, pass;
  (void)state;
  fake.handler = keys_handler_threads;
  for (pass = 0; pass < 2; pass++) {
    n_served = 0;
    assert_int_equal(kv_get_keys(cl, names, NULL, 5, pass, out, rcs, sts), KV_E_NOT_FOUND);
    for (i = 0; i < 5; i++) {
      assert_int_equal(rcs[i], i == 2 ? KV_E_NOT_FOUND : KV_OK);
      assert_int_equal(sts[i], i == 2 ? 404 : 200);
      kv_key_free(out[i]);
    }
    assert_true(n_served >= 5);
    for (i = 0, others = 0; i < n_served; i++)
      others += !pthread_equal(served_on[i], pthread_self());
    if (pass == 0)
      assert_int_equal(others, 0);
  }
  fake.handler = handler;
}

static void test_audit_lines(void **state)
{
  char path[256], buf[4096];
  struct kv_bytes sig = {NULL, 0};
  unsigned char digest[32] = {0};
  FILE *f;
  size_t n;
  (void)state;
  snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
  assert_int_equal(akv_audit_open(path), 0);
  q(200, "{\"value\":\"AAAA\"}")->request_id = "srv-req-1";
  assert_int_equal(kv_sign(cl, "k", V1, "RS256", digest, 32, &sig, NULL), KV_E_PROTOCOL);
  q(404, "{\"error\":{\"code\":\"KeyNotFound\",\"message\":\"x\"}}");
  struct kv_key *k = NULL;
  assert_int_equal(kv_get_key(cl, "gone", NULL, &k, NULL), KV_E_NOT_FOUND);
  akv_audit_close();
  f = fopen(path, "r");
  assert_non_null(f);
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  assert_non_null(strstr(buf, "\"operation\":\"keys.sign\""));
  assert_non_null(strstr(buf, "\"name\":\"k\""));
  assert_non_null(strstr(buf, "\"alg\":\"RS256\""));
  assert_non_null(strstr(buf, "\"outcome\":\"KV_E_PROTOCOL\""));
  assert_non_null(strstr(buf, "\"http_status\":200"));
  assert_non_null(strstr(buf, "\"request_id\":\"srv-req-1\""));
  assert_non_null(strstr(buf, "\"client_request_id\":\""));
  assert_non_null(strstr(buf, "\"vault\":\"" VAULT "\""));
  assert_non_null(
      strstr(buf, "\"operation\":\"keys.get\",\"kid\":\"" VAULT "/keys/gone\",\"name\":\"gone\""));
  /* No CK_RV without the module's mapper registered. */
  assert_non_null(strstr(buf, "\"outcome\":\"KV_E_NOT_FOUND\",\"ck_rv\":null,\"http_status\":404"));
  assert_non_null(strstr(buf, "\"process\":\"test_client\""));
  assert_null(strstr(buf, "tok-"));
  assert_null(strstr(buf, "AAAA"));
  assert_int_equal(strchr(strchr(buf, '\n') + 1, '\n') - buf, (long)n - 1); /* two lines */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_hostile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_many_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_item_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_cert_and_secret, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sign_verify, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sign_request_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_path_url, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cipher, setup, teardown),
      cmocka_unit_test_setup_teardown(test_challenge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_operation_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_custom_host_challenge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_random, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_keys_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_keys_sequential, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_a_vault, setup, teardown),
      cmocka_unit_test_setup_teardown(test_network_causes, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
