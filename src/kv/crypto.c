/* SPDX-License-Identifier: Apache-2.0 */
/* Cryptographic operations as Key Vault calls: sign, verify, encrypt/decrypt/wrap/unwrap, rng.
 * Requests carry base64url values; results are checked for plausible sizes before use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "kv/client.h"
#include "kv/json.h"
#include "util/b64.h"
#include "util/log.h"

#define MAX_RESULT (4 * 1024 * 1024)
#define RSA_MIN_BYTES 256
#define RSA_MAX_BYTES 2048
#define RNG_MAX_PER_CALL 128

/* Expected signature size for alg: exact, or a range for RSA (modulus not known here). */
static void sig_len_bounds(const char *alg, size_t *lo, size_t *hi)
{
  *lo = 1;
  *hi = RSA_MAX_BYTES;
  if (strcmp(alg, "ES256") == 0 || strcmp(alg, "ES256K") == 0)
    *lo = *hi = 64;
  else if (strcmp(alg, "ES384") == 0)
    *lo = *hi = 96;
  else if (strcmp(alg, "ES512") == 0)
    *lo = *hi = 132;
  else if (strcmp(alg, "HS256") == 0)
    *lo = *hi = 32;
  else if (strcmp(alg, "HS384") == 0)
    *lo = *hi = 48;
  else if (strcmp(alg, "HS512") == 0)
    *lo = *hi = 64;
  else if (alg[0] == 'R' || alg[0] == 'P')
    *lo = RSA_MIN_BYTES;
}

/* Digest length the algorithm needs (0 = not checked here). */
static size_t digest_len_for(const char *alg)
{
  if (strcmp(alg, "RSNULL") == 0 || alg[0] == 'H')
    return 0;
  if (strlen(alg) >= 5 && (alg[0] == 'R' || alg[0] == 'P' || alg[0] == 'E')) {
    if (strncmp(alg + 2, "256", 3) == 0)
      return 32;
    if (strncmp(alg + 2, "384", 3) == 0)
      return 48;
    if (strncmp(alg + 2, "512", 3) == 0)
      return 64;
  }
  return 0;
}

static int alg_ok(const char *alg)
{
  size_t n = alg ? strlen(alg) : 0;
  if (n == 0 || n > 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((alg[i] >= 'A' && alg[i] <= 'Z') || (alg[i] >= 'a' && alg[i] <= 'z') ||
          (alg[i] >= '0' && alg[i] <= '9') || alg[i] == '-' || alg[i] == '_'))
      return 0;
  return 1;
}

#define URL_BUF 512

/* keys/<name>[/<version>]/<op> in buf, or (a vault URL too long for it) in *heap. */
static const char *op_url(struct kv_client *cl, const char *name, const char *version,
                          const char *op, char buf[URL_BUF], char **heap)
{
  const char *const segs[] = {"keys", name, version, op};
  const char *url = kv_client_path_url(cl, buf, URL_BUF, segs, 4);
  *heap = NULL;
  if (url)
    return url;
  if (version)
    *heap = kv_client_url(cl, "keys/%s/%s/%s", name, version, op);
  else
    *heap = kv_client_url(cl, "keys/%s/%s", name, op);
  return *heap;
}

static int add_b64(cJSON *o, const char *k, const unsigned char *p, size_t n)
{
  char *s = akv_b64url_encode(p, n);
  int ok;
  if (!s)
    return 0;
  ok = cJSON_AddStringToObject(o, k, s) != NULL;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  return ok;
}

/* Performs the call with the serialised body txt. The caller writes the audit line
 * (kv_client_audit) once it has judged the result. */
static kv_rc post_text(struct kv_client *cl, struct kv_call *call, const char *op, const char *url,
                       const char *txt, size_t txt_len, const char *name, const char *version,
                       const char *alg, int (*fast)(void *ctx, const char *data, size_t len),
                       void *fast_ctx, struct kv_attempt *at, cJSON **doc)
{
  kv_rc rc;
  memset(call, 0, sizeof(*call));
  call->op = op;
  call->method = "POST";
  call->url = url;
  call->idempotent = 1; /* crypto operations change nothing in the vault: safe to retry */
  call->name = name;
  call->version = version;
  call->alg = alg;
  call->defer_audit = 1;
  call->body = txt;
  call->body_len = txt_len;
  call->fast_body = fast;
  call->fast_ctx = fast_ctx;
  call->attempt = at;
  rc = kv_client_call(cl, call, doc);
  call->body = NULL;
  if (rc == KV_OK && !*doc && !call->fast_taken) {
    akv_err(AKV_LOGC_KV, "%s %s: empty response", op, name ? name : "");
    rc = KV_E_PROTOCOL;
  }
  return rc;
}

static void wipe_tree(cJSON *doc)
{
  cJSON *it;
  if (!doc)
    return;
  cJSON_ArrayForEach(it, doc)
  {
    if (cJSON_IsString(it) && it->valuestring)
      OPENSSL_cleanse(it->valuestring, strlen(it->valuestring));
  }
}

/* Serialises body into a buffer of our own (cJSON_PrintPreallocated: cJSON's printer grows its
 * buffer by realloc, which can leave copies of the plaintext in freed memory), performs the call,
 * then wipes the serialised request and the strings of body (docs/security.md "Secrets in memory
 * and in logs"). body is a flat object of short strings and numbers. */
static kv_rc post_json(struct kv_client *cl, struct kv_call *call, const char *op, const char *url,
                       cJSON *body, const char *name, const char *version, const char *alg,
                       struct kv_attempt *at, cJSON **doc)
{
  const cJSON *it;
  size_t cap = 64, len;
  char *txt;
  kv_rc rc;
  cJSON_ArrayForEach(it, body)
  {
    /* Names and values are base64url, algorithm names and numbers: nothing is escaped. */
    cap += (it->string ? strlen(it->string) : 0) +
           (cJSON_IsString(it) && it->valuestring ? strlen(it->valuestring) : 32) + 8;
  }
  txt = malloc(cap);
  if (!txt || !cJSON_PrintPreallocated(body, txt, (int)cap, 0)) {
    if (txt)
      OPENSSL_cleanse(txt, cap);
    free(txt);
    wipe_tree(body);
    memset(call, 0, sizeof(*call));
    return KV_E_NOMEM;
  }
  len = strlen(txt);
  rc = post_text(cl, call, op, url, txt, len, name, version, alg, NULL, NULL, at, doc);
  OPENSSL_cleanse(txt, cap);
  free(txt);
  wipe_tree(body);
  return rc;
}

/* A sign reply is {"kid":"...","value":"<base64url>"}: when the strict scan finds a plain
 * "value" that decodes within bounds, no cJSON tree is built (it cost more than the rest of the
 * reply handling). Anything else goes through kv_json_parse and kv_json_b64url, which give the
 * verdict and the message. */
static int sign_fast_body(void *ctx, const char *data, size_t len)
{
  struct kv_bytes *sig = ctx;
  const char *v;
  size_t vl;
  if (!kv_json_fast_str(data, len, "value", &v, &vl) || vl > RSA_MAX_BYTES / 3 * 4 + 4)
    return 0;
  if (akv_b64url_decode(v, vl, &sig->data, &sig->len) != 0)
    return 0;
  if (sig->len > RSA_MAX_BYTES) {
    kv_bytes_free(sig);
    return 0;
  }
  return 1;
}

/* A key operation's arguments, for one attempt on one vault (kv_replica_run). */
struct op_ctx {
  const char *alg;
  const unsigned char *in, *sig;
  size_t in_len, sig_len;
  struct kv_bytes *out;
  int *valid;
  enum kv_cipher_op cop;
  const struct kv_aes_params *aes;
  struct kv_crypt_result *res;
  long *http_status; /* the caller's, NULL = not wanted: each attempt's final status */
};

/* Symmetric keys (AES, HMAC on a Managed HSM) have no public part to compare with a replica's:
 * the primary serves them (docs/reliability.md "Replica vaults"). */
static int spread(struct kv_client *cl, const char *alg)
{
  return kv_client_n_vaults(cl) > 1 && alg[0] != 'A' && alg[0] != 'H';
}

static kv_rc sign_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                          struct kv_attempt *at);

kv_rc kv_sign(struct kv_client *cl, const char *name, const char *version, const char *alg,
              const unsigned char *digest, size_t digest_len, struct kv_bytes *sig,
              long *http_status)
{
  struct op_ctx c;
  size_t want;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !sig || !digest || !alg_ok(alg))
    return KV_E_INVALID;
  sig->data = NULL;
  sig->len = 0;
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  want = digest_len_for(alg);
  if ((want && digest_len != want) || digest_len == 0 || digest_len > 1024) {
    akv_err(AKV_LOGC_KV, "keys.sign %s: %zu-byte input does not fit %s", name, digest_len, alg);
    return KV_E_INVALID;
  }
  memset(&c, 0, sizeof(c));
  c.alg = alg;
  c.in = digest;
  c.in_len = digest_len;
  c.out = sig;
  c.http_status = http_status;
  if (spread(cl, alg))
    return kv_replica_run(cl, "keys.sign", name, version, alg, sign_attempt, &c);
  return sign_attempt(cl, name, version, &c, NULL);
}

static kv_rc sign_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                          struct kv_attempt *at)
{
  const struct op_ctx *c = vctx;
  const char *alg = c->alg;
  const unsigned char *digest = c->in;
  size_t digest_len = c->in_len;
  struct kv_bytes *sig = c->out;
  static const char k_alg[] = "{\"alg\":\"", k_value[] = "\",\"value\":\"", k_end[] = "\"}";
  cJSON *doc = NULL;
  char *url_heap = NULL, urlbuf[URL_BUF];
  const char *url;
  /* {"alg":"<=32","value":"<=1366"}: alg_ok allows no character that JSON escapes, nor does
   * base64url, so the body is put together directly (cJSON building and printing it, or even
   * snprintf, cost more than the rest of this function). The bytes are those
   * cJSON_PrintUnformatted gives. */
  char body[1500];
  size_t lo, hi, o = 0, alg_len, b64_len;
  struct kv_call call;
  int audit = 0;
  kv_rc rc;
  url = op_url(cl, name, version, "sign", urlbuf, &url_heap);
  if (!url)
    return KV_E_NOMEM;
  alg_len = strlen(alg); /* at most 32 (alg_ok) */
  memcpy(body, k_alg, sizeof(k_alg) - 1);
  o = sizeof(k_alg) - 1;
  memcpy(body + o, alg, alg_len);
  o += alg_len;
  memcpy(body + o, k_value, sizeof(k_value) - 1);
  o += sizeof(k_value) - 1;
  /* 1024 bytes encode to 1366 characters: with the 55 above and 2 below it always fits. */
  b64_len = akv_b64url_encode_to(digest, digest_len, body + o, sizeof(body) - o - sizeof(k_end));
  if (!b64_len) {
    rc = KV_E_INVALID; /* cannot happen with the checks above; never send a cut body */
    goto out;
  }
  o += b64_len;
  memcpy(body + o, k_end, sizeof(k_end)); /* with its NUL */
  rc = post_text(cl, &call, "keys.sign", url, body, o + sizeof(k_end) - 1, name, version, alg,
                 sign_fast_body, sig, at, &doc);
  audit = 1;
  if (rc != KV_OK)
    goto out;
  if (!call.fast_taken &&
      (rc = kv_json_b64url(doc, "value", 1, RSA_MAX_BYTES, &sig->data, &sig->len)) != KV_OK)
    goto out;
  sig_len_bounds(alg, &lo, &hi);
  if (sig->len < lo || sig->len > hi) {
    akv_err(AKV_LOGC_KV, "keys.sign %s: %zu-byte signature is not a %s signature", name, sig->len,
            alg);
    kv_bytes_free(sig);
    rc = KV_E_PROTOCOL;
  }
out:
  kv_status_set(c->http_status, audit ? call.status : 0);
  if (audit)
    kv_client_audit(cl, &call, rc);
  OPENSSL_cleanse(body, o); /* what was written of it: the digest */
  cJSON_Delete(doc);
  free(url_heap);
  return rc;
}

static kv_rc verify_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                            struct kv_attempt *at);

kv_rc kv_verify(struct kv_client *cl, const char *name, const char *version, const char *alg,
                const unsigned char *digest, size_t digest_len, const unsigned char *sig,
                size_t sig_len, int *valid, long *http_status)
{
  struct op_ctx c;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !digest || !sig || !valid || !alg_ok(alg) || !digest_len || !sig_len)
    return KV_E_INVALID;
  *valid = 0;
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  memset(&c, 0, sizeof(c));
  c.alg = alg;
  c.in = digest;
  c.in_len = digest_len;
  c.sig = sig;
  c.sig_len = sig_len;
  c.valid = valid;
  c.http_status = http_status;
  if (spread(cl, alg))
    return kv_replica_run(cl, "keys.verify", name, version, alg, verify_attempt, &c);
  return verify_attempt(cl, name, version, &c, NULL);
}

static kv_rc verify_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                            struct kv_attempt *at)
{
  const struct op_ctx *c = vctx;
  const char *alg = c->alg;
  cJSON *body = NULL, *doc = NULL;
  char *url_heap = NULL, urlbuf[URL_BUF];
  const char *url;
  int v = -1;
  struct kv_call call;
  int audit = 0;
  kv_rc rc = KV_E_NOMEM;
  body = cJSON_CreateObject();
  url = op_url(cl, name, version, "verify", urlbuf, &url_heap);
  if (!body || !url || !cJSON_AddStringToObject(body, "alg", alg) ||
      !add_b64(body, "digest", c->in, c->in_len) || !add_b64(body, "value", c->sig, c->sig_len))
    goto out;
  rc = post_json(cl, &call, "keys.verify", url, body, name, version, alg, at, &doc);
  audit = 1;
  if (rc != KV_OK)
    goto out;
  if ((rc = kv_json_bool(doc, "value", &v)) != KV_OK)
    goto out;
  if (v < 0) {
    akv_err(AKV_LOGC_KV, "keys.verify %s: response without a boolean \"value\"", name);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  *c->valid = v;
out:
  kv_status_set(c->http_status, audit ? call.status : 0);
  if (audit)
    kv_client_audit(cl, &call, rc);
  cJSON_Delete(body);
  cJSON_Delete(doc);
  free(url_heap);
  return rc;
}

static const char *cipher_op_name(enum kv_cipher_op op, const char **path)
{
  switch (op) {
  case KV_ENCRYPT:
    *path = "encrypt";
    return "keys.encrypt";
  case KV_DECRYPT:
    *path = "decrypt";
    return "keys.decrypt";
  case KV_WRAP:
    *path = "wrapkey";
    return "keys.wrapkey";
  case KV_UNWRAP:
    *path = "unwrapkey";
    return "keys.unwrapkey";
  }
  return NULL;
}

static kv_rc cipher_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                            struct kv_attempt *at);

kv_rc kv_cipher(struct kv_client *cl, enum kv_cipher_op op, const char *name, const char *version,
                const char *alg, const unsigned char *in, size_t in_len,
                const struct kv_aes_params *aes, struct kv_crypt_result *out, long *http_status)
{
  const char *path = NULL, *opname = cipher_op_name(op, &path);
  struct op_ctx c;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl || !out || !opname || !alg_ok(alg) || (!in && in_len) || in_len > MAX_RESULT / 2)
    return KV_E_INVALID;
  memset(out, 0, sizeof(*out));
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  memset(&c, 0, sizeof(c));
  c.alg = alg;
  c.in = in;
  c.in_len = in_len;
  c.cop = op;
  c.aes = aes;
  c.res = out;
  c.http_status = http_status;
  if (spread(cl, alg))
    return kv_replica_run(cl, opname, name, version, alg, cipher_attempt, &c);
  return cipher_attempt(cl, name, version, &c, NULL);
}

static kv_rc cipher_attempt(struct kv_client *cl, const char *name, const char *version, void *vctx,
                            struct kv_attempt *at)
{
  const struct op_ctx *c = vctx;
  enum kv_cipher_op op = c->cop;
  const char *alg = c->alg;
  const unsigned char *in = c->in;
  size_t in_len = c->in_len;
  const struct kv_aes_params *aes = c->aes;
  struct kv_crypt_result *out = c->res;
  cJSON *body = NULL, *doc = NULL;
  char *url_heap = NULL, urlbuf[URL_BUF];
  const char *url;
  const char *path = NULL, *opname = cipher_op_name(op, &path);
  int rsa = strncmp(alg, "RSA", 3) == 0;
  int gcm = strstr(alg, "GCM") != NULL;
  struct kv_call call;
  int audit = 0;
  kv_rc rc = KV_E_NOMEM;
  body = cJSON_CreateObject();
  url = op_url(cl, name, version, path, urlbuf, &url_heap);
  if (!body || !url || !cJSON_AddStringToObject(body, "alg", alg) ||
      !add_b64(body, "value", in ? in : (const unsigned char *)"", in_len))
    goto out;
  if (aes && ((aes->iv_len && !add_b64(body, "iv", aes->iv, aes->iv_len)) ||
              (aes->aad_len && !add_b64(body, "aad", aes->aad, aes->aad_len)) ||
              (aes->tag_len && !add_b64(body, "tag", aes->tag, aes->tag_len))))
    goto out;
  rc = post_json(cl, &call, opname, url, body, name, version, alg, at, &doc);
  audit = 1;
  if (rc != KV_OK)
    goto out;
  if ((rc = kv_json_b64url(doc, "value", 1, MAX_RESULT, &out->value.data, &out->value.len)) !=
          KV_OK ||
      (rc = kv_json_b64url(doc, "iv", 0, 32, &out->iv.data, &out->iv.len)) != KV_OK ||
      (rc = kv_json_b64url(doc, "tag", 0, 32, &out->tag.data, &out->tag.len)) != KV_OK)
    goto out;
  rc = KV_E_PROTOCOL;
  if (rsa && (op == KV_ENCRYPT || op == KV_WRAP) &&
      (out->value.len < RSA_MIN_BYTES || out->value.len > RSA_MAX_BYTES)) {
    akv_err(AKV_LOGC_KV, "%s %s: %zu-byte result is not an RSA ciphertext", opname, name,
            out->value.len);
    goto out;
  }
  if (rsa && (op == KV_DECRYPT || op == KV_UNWRAP) && out->value.len > RSA_MAX_BYTES) {
    akv_err(AKV_LOGC_KV, "%s %s: %zu-byte result is too long for RSA", opname, name,
            out->value.len);
    goto out;
  }
  if (gcm && op == KV_ENCRYPT && (out->tag.len < 12 || out->iv.len == 0)) {
    akv_err(AKV_LOGC_KV, "%s %s: AES-GCM result without iv and tag", opname, name);
    goto out;
  }
  rc = KV_OK;
out:
  kv_status_set(c->http_status, audit ? call.status : 0);
  if (audit)
    kv_client_audit(cl, &call, rc);
  if (rc != KV_OK)
    kv_crypt_result_free(out);
  wipe_tree(doc);
  cJSON_Delete(body);
  cJSON_Delete(doc);
  free(url_heap);
  return rc;
}

kv_rc kv_random(struct kv_client *cl, unsigned char *out, size_t count, long *http_status)
{
  char *url = NULL;
  size_t done = 0;
  kv_rc rc = KV_OK;
  kv_status_set(http_status, 0);
  if (!cl || (!out && count))
    return KV_E_INVALID;
  if (kv_client_kind(cl) != AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  url = kv_client_url(cl, "rng");
  if (!url)
    return KV_E_NOMEM;
  while (done < count) {
    size_t n = count - done > RNG_MAX_PER_CALL ? RNG_MAX_PER_CALL : count - done;
    cJSON *body = cJSON_CreateObject(), *doc = NULL;
    struct kv_bytes b = {NULL, 0};
    struct kv_call call;
    call.op = NULL;
    call.status = 0;
    rc = KV_E_NOMEM;
    if (body && cJSON_AddNumberToObject(body, "count", (double)n))
      rc = post_json(cl, &call, "rng", url, body, NULL, NULL, NULL, NULL, &doc);
    kv_status_set(http_status, call.status);
    if (rc == KV_OK)
      rc = kv_json_b64url(doc, "value", 1, RNG_MAX_PER_CALL, &b.data, &b.len);
    if (rc == KV_OK && b.len != n) {
      akv_err(AKV_LOGC_KV, "rng: asked for %zu bytes, got %zu", n, b.len);
      rc = KV_E_PROTOCOL;
    }
    if (rc == KV_OK) {
      memcpy(out + done, b.data, n);
      done += n;
    }
    if (call.op)
      kv_client_audit(cl, &call, rc);
    kv_bytes_free(&b);
    wipe_tree(doc);
    cJSON_Delete(doc);
    cJSON_Delete(body);
    if (rc != KV_OK)
      break;
  }
  if (rc != KV_OK && out)
    OPENSSL_cleanse(out, count);
  free(url);
  return rc;
}
