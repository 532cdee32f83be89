/* SPDX-License-Identifier: Apache-2.0 */
/* Credentials (docs/config.md, "Credential"): client secret, client certificate (RS256 client
 * assertion), workload identity, managed identity (App Service 2019, IMDS) and the Azure CLI,
 * alone or as the DefaultAzureCredential chain with one identity per slot. Tokens come through
 * the per-credential cache (token.c). Secrets and tokens are wiped after use and never logged. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kv/auth.h"
#include "kv/error.h"
#include "kv/http.h"
#include "kv/json.h"
#include "kv/keyring.h"
#include "kv/token.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/log.h"

extern char **environ;

#define DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define DEFAULT_IMDS "http://169.254.169.254"
#define FILE_MAX (64 * 1024)
#define CERT_FILE_MAX (1024 * 1024)
#define CLI_OUT_MAX (64 * 1024)
#define CLI_ERR_MAX 4096
#define CLI_TIMEOUT_MS 30000
#define IMDS_PROBE_CONNECT_MS 1000
#define WHY_LEN 320
#define SHARE_WAIT_MS 40000 /* bound on waiting for another process's token request */
#define FIX_LEN 512

enum src_kind { SRC_SECRET, SRC_CERT, SRC_WORKLOAD, SRC_APPSERVICE, SRC_IMDS, SRC_CLI, SRC_N };

static const char *const src_names[SRC_N] = {
    "client secret",           "client certificate",
    "workload identity",       "managed identity (App Service)",
    "managed identity (IMDS)", "Azure CLI",
};

/* Why one attempt at a source failed: the reason and what to do about it (one log line). */
struct src_err {
  char why[WHY_LEN];
  char fix[FIX_LEN];
  long status; /* HTTP status of a refusal, 0 when none came */
  int absent;  /* the source turned out not to be configured (IMDS probe: nothing there) */
};

struct kv_cred {
  struct kv_http *http;
  struct akv_cred_config cfg; /* owned copies */
  enum src_kind srcs[SRC_N];
  size_t n_srcs;
  int chained;            /* AKV_CRED_AUTO */
  pthread_mutex_t lock;   /* chosen, state, note, certificate material */
  pthread_mutex_t choose; /* one walk down the chain at a time until a source has worked */
  int chosen;             /* index into srcs of the source that worked, -1 = none yet */
  enum kv_src_state state[SRC_N];
  char note[SRC_N][WHY_LEN]; /* why a source was skipped or failed, for doctor */
  char desc[SRC_N][200];
  struct kv_token_cache *cache;
  OSSL_LIB_CTX *libctx; /* private: never re-enter a provider the host loaded */
  EVP_PKEY *cert_key;
  char *cert_x5t;
};

/* ---- small helpers ------------------------------------------------------------------------------
 */

static void cred_cfg_free(struct akv_cred_config *c)
{
  free(c->tenant_id);
  free(c->client_id);
  kv_secure_free(c->client_secret, 0);
  free(c->certificate_path);
  kv_secure_free(c->certificate_password, 0);
  free(c->federated_token_file);
  free(c->authority_host);
  free(c->imds_endpoint);
  free(c->identity_endpoint);
  kv_secure_free(c->identity_header, 0);
  free(c->az_path);
  memset(c, 0, sizeof(*c));
}

static int dup_opt(char **dst, const char *src)
{
  *dst = NULL;
  if (!src)
    return 0;
  *dst = strdup(src);
  return *dst ? 0 : -1;
}

static int cred_cfg_copy(struct akv_cred_config *d, const struct akv_cred_config *s)
{
  memset(d, 0, sizeof(*d));
  d->kind = s->kind;
  d->share_token = s->share_token;
  d->from_env = s->from_env;
  if (dup_opt(&d->tenant_id, s->tenant_id) || dup_opt(&d->client_id, s->client_id) ||
      dup_opt(&d->client_secret, s->client_secret) ||
      dup_opt(&d->certificate_path, s->certificate_path) ||
      dup_opt(&d->certificate_password, s->certificate_password) ||
      dup_opt(&d->federated_token_file, s->federated_token_file) ||
      dup_opt(&d->authority_host, s->authority_host) ||
      dup_opt(&d->imds_endpoint, s->imds_endpoint) ||
      dup_opt(&d->identity_endpoint, s->identity_endpoint) ||
      dup_opt(&d->identity_header, s->identity_header) || dup_opt(&d->az_path, s->az_path)) {
    cred_cfg_free(d);
    return -1;
  }
  return 0;
}

/* application/x-www-form-urlencoded / query component escaping (RFC 3986 unreserved kept). */
static int append_escaped(struct akv_buf *b, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char enc[3];
    int rc;
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      rc = akv_buf_append(b, s, 1);
    } else {
      enc[0] = '%';
      enc[1] = hex[c >> 4];
      enc[2] = hex[c & 15];
      rc = akv_buf_append(b, enc, 3);
    }
    if (rc)
      return rc;
  }
  return 0;
}

static int valid_tenant(const char *t)
{
  size_t n = t ? strlen(t) : 0;
  if (n == 0 || n > 128)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)t[i]) && t[i] != '-' && t[i] != '.' && t[i] != '_')
      return 0;
  return 1;
}

static size_t trim_len(const char *s, size_t len)
{
  while (len && isspace((unsigned char)s[len - 1]))
    len--;
  return len;
}

/* A file the process cannot open or read: the reason with the file's owner and mode and the
 * uid the process runs as (the usual cause: a worker that dropped privileges), and the fix. */
static void file_problem(struct src_err *e, const char *what, const char *verb, const char *path,
                         int err)
{
  struct stat st;
  unsigned uid = (unsigned)geteuid(), gid = (unsigned)getegid();
  if (stat(path, &st) == 0)
    snprintf(e->why, sizeof(e->why),
             "cannot %s %s %s: %s (owner uid %u gid %u, mode %04o; this process runs as uid %u "
             "gid %u)",
             verb, what, path, strerror(err), (unsigned)st.st_uid, (unsigned)st.st_gid,
             (unsigned)(st.st_mode & 07777), uid, gid);
  else
    snprintf(e->why, sizeof(e->why),
             "cannot %s %s %s: %s (stat: %s; this process runs as uid %u "
             "gid %u)",
             verb, what, path, strerror(err), strerror(errno), uid, gid);
  if (err == ENOENT || err == ENOTDIR)
    snprintf(e->fix, sizeof(e->fix), "point the configuration at the right file");
  else
    snprintf(e->fix, sizeof(e->fix),
             "let uid %u read %s and search its directories (a group it belongs to and chmod "
             "g+r), or give it its own copy",
             uid, path);
}

static int read_small_file(const char *what, const char *path, size_t cap, char **out, size_t *len,
                           struct src_err *e)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct akv_buf b;
  char chunk[4096];
  int rc = -1;
  akv_buf_init(&b, cap);
  if (fd < 0) {
    file_problem(e, what, "open", path, errno);
    return -1;
  }
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof(chunk));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      file_problem(e, what, "read", path, errno);
      goto out;
    }
    if (r == 0)
      break;
    if (akv_buf_append(&b, chunk, (size_t)r)) {
      snprintf(e->why, sizeof(e->why), "%s is larger than %zu bytes", path, cap);
      goto out;
    }
  }
  *len = b.len;
  *out = akv_buf_take(&b);
  rc = *out ? 0 : -1;
out:
  OPENSSL_cleanse(chunk, sizeof(chunk));
  akv_buf_free(&b);
  close(fd);
  return rc;
}

/* Performs a token request and parses the reply; why gets a one-line reason on failure. */
static kv_rc token_request(struct kv_cred *cred, const struct kv_http_request *req,
                           const char *token_field, struct kv_token *out, struct src_err *e)
{
  struct kv_http_response resp;
  struct kv_http_request r = *req;
  kv_rc rc;
  kv_http_response_init(&resp);
  r.ca_file_reported = 1; /* a ca_file this process cannot open is named below, in e->why */
  rc = kv_http_do(cred->http, &r, &resp);
  if (rc != KV_OK) {
    const struct kv_http_opts *o = kv_http_opts_peek(cred->http);
    const char *cause = kv_http_fail_str(resp.fail);
    int fd = -1;
    snprintf(e->why, sizeof(e->why), "%s from %s: %s%s%s",
             rc == KV_E_NETWORK || rc == KV_E_TIMEOUT ? "no response" : "unusable response",
             req->url, kv_rc_str(rc), cause ? ": " : "", cause ? cause : "");
    if (resp.fail == KV_FAIL_DNS)
      snprintf(e->fix, sizeof(e->fix),
               "check the host name in %.200s (authority_host, "
               "imds_endpoint, identity_endpoint) and DNS (see the error before)",
               req->url);
    else if (resp.fail == KV_FAIL_TLS_TRUST)
      snprintf(e->fix, sizeof(e->fix),
               "set ca_file to the PEM file of the CA that issued the "
               "server's certificate (see the error before: it names the CA file in use)");
    /* The usual cause of a TLS failure after a privilege drop: a CA file the process cannot
     * read. Name it, with its owner and mode. */
    if (o && o->ca_file && strncmp(req->url, "https:", 6) == 0 &&
        (fd = open(o->ca_file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
      file_problem(e, "the CA file (ca_file)", "open", o->ca_file, errno);
    if (fd >= 0)
      close(fd);
    /* No answer at all (KV_E_NETWORK, KV_E_TIMEOUT) stays distinct: the IMDS probe needs it. */
    if (rc != KV_E_NOMEM && rc != KV_E_NETWORK && rc != KV_E_TIMEOUT)
      rc = KV_E_AUTH;
    goto out;
  }
  if (resp.status != 200) {
    const char *code = NULL, *desc = NULL;
    cJSON *doc = cJSON_ParseWithLength((const char *)resp.body.data, resp.body.len);
    const cJSON *ec = doc ? cJSON_GetObjectItemCaseSensitive(doc, "error") : NULL;
    const cJSON *d = doc ? cJSON_GetObjectItemCaseSensitive(doc, "error_description") : NULL;
    if (cJSON_IsObject(ec)) { /* some endpoints nest {"error":{"code","message"}} */
      d = cJSON_GetObjectItemCaseSensitive(ec, "message");
      ec = cJSON_GetObjectItemCaseSensitive(ec, "code");
    }
    e->status = resp.status;
    code = cJSON_IsString(ec) ? ec->valuestring : NULL;
    desc = cJSON_IsString(d) ? d->valuestring : NULL;
    snprintf(e->why, sizeof(e->why), "HTTP %ld from %s%s%s%s%.200s", resp.status, req->url,
             code ? ": " : "", code ? code : "", desc ? " - " : "", desc ? desc : "");
    for (char *p = e->why; *p; p++) /* the server's text stays on one line (doctor, logs) */
      if (iscntrl((unsigned char)*p))
        *p = ' ';
    cJSON_Delete(doc);
    rc = KV_E_AUTH;
    goto out;
  }
  rc =
      kv_token_parse((const char *)resp.body.data, resp.body.len, token_field, kv_token_now(), out);
  if (rc != KV_OK) {
    snprintf(e->why, sizeof(e->why), "unusable token response from %s", req->url);
    rc = rc == KV_E_NOMEM ? rc : KV_E_AUTH;
  }
out:
  kv_http_response_free(&resp);
  return rc;
}

static const char *authority(const struct kv_cred *cred, size_t *len)
{
  const char *a = cred->cfg.authority_host ? cred->cfg.authority_host : DEFAULT_AUTHORITY;
  *len = strlen(a);
  while (*len && a[*len - 1] == '/')
    (*len)--;
  return a;
}

/* client_credentials grant against Entra ID with a secret or a client assertion. */
static kv_rc entra_token(struct kv_cred *cred, const char *tenant, const char *resource,
                         const char *assertion, struct kv_token *out, struct src_err *e)
{
  struct akv_buf url, body;
  struct kv_http_request req;
  size_t alen;
  const char *auth = authority(cred, &alen);
  kv_rc rc = KV_E_NOMEM;
  akv_buf_init(&url, 4096);
  akv_buf_init(&body, 256 * 1024);
  if (!valid_tenant(tenant)) {
    snprintf(e->why, sizeof(e->why), "tenant id \"%.64s\" is missing or invalid",
             tenant ? tenant : "");
    snprintf(e->fix, sizeof(e->fix),
             "set tenant_id (AZURE_TENANT_ID) to the tenant's GUID or "
             "domain name");
    rc = KV_E_AUTH;
    goto out;
  }
  if (akv_buf_printf(&url, "%.*s/%s/oauth2/v2.0/token", (int)alen, auth, tenant) ||
      akv_buf_append_str(&body, "grant_type=client_credentials&client_id=") ||
      append_escaped(&body, cred->cfg.client_id) || akv_buf_append_str(&body, "&scope=") ||
      append_escaped(&body, resource) || append_escaped(&body, "/.default"))
    goto out;
  if (assertion) {
    if (akv_buf_append_str(&body, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-"
                                  "assertion-type%3Ajwt-bearer&client_assertion=") ||
        append_escaped(&body, assertion))
      goto out;
  } else {
    if (akv_buf_append_str(&body, "&client_secret=") ||
        append_escaped(&body, cred->cfg.client_secret))
      goto out;
  }
  memset(&req, 0, sizeof(req));
  req.method = "POST";
  req.url = (const char *)url.data;
  req.body = (const char *)body.data;
  req.body_len = body.len;
  req.content_type = "application/x-www-form-urlencoded";
  req.idempotent = 1; /* a token request has no side effect */
  rc = token_request(cred, &req, "access_token", out, e);
out:
  if (rc == KV_E_NOMEM)
    snprintf(e->why, sizeof(e->why), "out of memory");
  akv_buf_free(&url);
  akv_buf_free(&body); /* wiped: it held the secret or the assertion */
  return rc;
}

/* ---- client certificate: RS256 client assertion ------------------------------------------------
 */

static int akv_pem_pass_cb(char *buf, int size, int rwflag, void *u)
{
  const char *pw = u;
  size_t n;
  if (!pw)
    return 0;
  n = strlen(pw);
  if (n > (size_t)size)
    return -1;
  memcpy(buf, pw, n);
  return (int)n;
}

static kv_rc load_certificate_inlock(struct kv_cred *cred, struct src_err *e)
{
  char *pem = NULL;
  size_t len = 0;
  BIO *bio = NULL;
  X509 *x509 = NULL;
  EVP_PKEY *key = NULL;
  unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int derlen;
  EVP_MD *sha1 = NULL;
  kv_rc rc = KV_E_AUTH;
  if (cred->cert_key)
    return KV_OK;
  if (read_small_file("the certificate file", cred->cfg.certificate_path, CERT_FILE_MAX, &pem, &len,
                      e))
    goto out;
  bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio || !(x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
    snprintf(e->why, sizeof(e->why), "%s holds no PEM certificate", cred->cfg.certificate_path);
    goto out;
  }
  BIO_free(bio);
  bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio ||
      !(key = PEM_read_bio_PrivateKey_ex(bio, NULL, akv_pem_pass_cb, cred->cfg.certificate_password,
                                         cred->libctx, NULL))) {
    snprintf(e->why, sizeof(e->why), "%s holds no readable PEM private key (wrong password?)",
             cred->cfg.certificate_path);
    goto out;
  }
  if (!EVP_PKEY_is_a(key, "RSA")) {
    snprintf(e->why, sizeof(e->why), "%s: the client assertion needs an RSA key (RS256)",
             cred->cfg.certificate_path);
    goto out;
  }
  if (X509_check_private_key(x509, key) != 1) {
    snprintf(e->why, sizeof(e->why), "%s: the private key does not match the certificate",
             cred->cfg.certificate_path);
    goto out;
  }
  derlen = i2d_X509(x509, &der);
  sha1 = EVP_MD_fetch(cred->libctx, "SHA1", NULL);
  if (derlen <= 0 || !sha1 || EVP_Digest(der, (size_t)derlen, md, &mdlen, sha1, NULL) != 1) {
    snprintf(e->why, sizeof(e->why), "cannot compute the certificate thumbprint");
    goto out;
  }
  cred->cert_x5t = akv_b64url_encode(md, mdlen);
  if (!cred->cert_x5t) {
    rc = KV_E_NOMEM;
    goto out;
  }
  cred->cert_key = key;
  key = NULL;
  rc = KV_OK;
out:
  EVP_MD_free(sha1);
  OPENSSL_free(der);
  EVP_PKEY_free(key);
  X509_free(x509);
  BIO_free(bio);
  kv_secure_free(pem, len ? len : 1);
  return rc;
}

static char *b64url_json(cJSON *obj)
{
  char *txt = cJSON_PrintUnformatted(obj);
  char *enc;
  if (!txt)
    return NULL;
  enc = akv_b64url_encode((unsigned char *)txt, strlen(txt));
  cJSON_free(txt);
  return enc;
}

kv_rc kv_client_assertion(EVP_PKEY *key, OSSL_LIB_CTX *libctx, const char *x5t,
                          const char *audience, const char *client_id, int64_t now, char **out)
{
  cJSON *hdr = cJSON_CreateObject(), *claims = cJSON_CreateObject();
  char *h64 = NULL, *c64 = NULL, *s64 = NULL, *signing = NULL, *jwt = NULL;
  unsigned char *sig = NULL;
  size_t siglen = 0, n;
  EVP_MD_CTX *md = NULL;
  char jti[37];
  kv_rc rc = KV_E_NOMEM;
  *out = NULL;
  kv_uuid4(jti);
  if (!hdr || !claims || !cJSON_AddStringToObject(hdr, "alg", "RS256") ||
      !cJSON_AddStringToObject(hdr, "typ", "JWT") || !cJSON_AddStringToObject(hdr, "x5t", x5t) ||
      !cJSON_AddStringToObject(claims, "aud", audience) ||
      !cJSON_AddStringToObject(claims, "iss", client_id) ||
      !cJSON_AddStringToObject(claims, "sub", client_id) ||
      !cJSON_AddStringToObject(claims, "jti", jti) ||
      !cJSON_AddNumberToObject(claims, "nbf", (double)now) ||
      !cJSON_AddNumberToObject(claims, "iat", (double)now) ||
      !cJSON_AddNumberToObject(claims, "exp", (double)(now + 600)))
    goto out;
  h64 = b64url_json(hdr);
  c64 = b64url_json(claims);
  if (!h64 || !c64)
    goto out;
  n = strlen(h64) + strlen(c64) + 2;
  signing = malloc(n);
  if (!signing)
    goto out;
  snprintf(signing, n, "%s.%s", h64, c64);
  md = EVP_MD_CTX_new();
  rc = KV_E_AUTH;
  if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
      EVP_DigestSign(md, NULL, &siglen, (unsigned char *)signing, strlen(signing)) != 1 ||
      !(sig = malloc(siglen)) ||
      EVP_DigestSign(md, sig, &siglen, (unsigned char *)signing, strlen(signing)) != 1) {
    akv_err(AKV_LOGC_AUTH, "client assertion: RS256 signing failed");
    goto out;
  }
  rc = KV_E_NOMEM;
  s64 = akv_b64url_encode(sig, siglen);
  if (!s64)
    goto out;
  n = strlen(signing) + strlen(s64) + 2;
  jwt = malloc(n);
  if (!jwt)
    goto out;
  snprintf(jwt, n, "%s.%s", signing, s64);
  *out = jwt;
  rc = KV_OK;
out:
  EVP_MD_CTX_free(md);
  free(sig);
  free(s64);
  free(signing);
  free(h64);
  free(c64);
  cJSON_Delete(hdr);
  cJSON_Delete(claims);
  return rc;
}

static kv_rc fetch_cert(struct kv_cred *cred, const char *tenant, const char *resource,
                        struct kv_token *out, struct src_err *e)
{
  char aud[1024];
  char *jwt = NULL;
  size_t alen;
  const char *auth = authority(cred, &alen);
  kv_rc rc;
  pthread_mutex_lock(&cred->lock);
  rc = load_certificate_inlock(cred, e);
  pthread_mutex_unlock(&cred->lock);
  if (rc != KV_OK)
    return rc;
  if (!valid_tenant(tenant)) {
    snprintf(e->why, sizeof(e->why), "tenant id is missing or invalid");
    snprintf(e->fix, sizeof(e->fix),
             "set tenant_id (AZURE_TENANT_ID) to the tenant's GUID or "
             "domain name");
    return KV_E_AUTH;
  }
  snprintf(aud, sizeof(aud), "%.*s/%s/oauth2/v2.0/token", (int)alen, auth, tenant);
  /* cert_key/x5t never change once loaded, so they are read without the lock. */
  rc = kv_client_assertion(cred->cert_key, cred->libctx, cred->cert_x5t, aud, cred->cfg.client_id,
                           kv_token_now(), &jwt);
  if (rc != KV_OK) {
    snprintf(e->why, sizeof(e->why), "cannot build the client assertion");
    return rc;
  }
  rc = entra_token(cred, tenant, resource, jwt, out, e);
  kv_secure_free(jwt, 0);
  return rc;
}

static kv_rc fetch_workload(struct kv_cred *cred, const char *tenant, const char *resource,
                            struct kv_token *out, struct src_err *e)
{
  char *assertion = NULL;
  size_t len = 0;
  kv_rc rc;
  /* Re-read on every request: the kubelet rotates the projected token file. */
  if (read_small_file("the federated token file", cred->cfg.federated_token_file, FILE_MAX,
                      &assertion, &len, e))
    return KV_E_AUTH;
  len = trim_len(assertion, len);
  assertion[len] = '\0';
  if (!len) {
    snprintf(e->why, sizeof(e->why), "%s is empty", cred->cfg.federated_token_file);
    kv_secure_free(assertion, 1);
    return KV_E_AUTH;
  }
  rc = entra_token(cred, tenant, resource, assertion, out, e);
  kv_secure_free(assertion, 0);
  return rc;
}

/* ---- managed identity
 * ----------------------------------------------------------------------------- */

/* probe: the chain asks IMDS before it has answered once: a short connect timeout and one
 * attempt (nothing listens off Azure); no answer, or "no identity here" (HTTP 400), makes the
 * source absent rather than failed. A probe that did reach IMDS and got a transient error is
 * repeated with the normal retries. */
static kv_rc fetch_managed(struct kv_cred *cred, enum src_kind kind, const char *resource,
                           int probe, struct kv_token *out, struct src_err *e)
{
  struct akv_buf url, hdr;
  struct kv_http_request req;
  const char *base;
  const char *headers[1];
  kv_rc rc = KV_E_NOMEM;
  akv_buf_init(&url, 4096);
  akv_buf_init(&hdr, 8192);
  memset(&req, 0, sizeof(req));
  if (kind == SRC_APPSERVICE) {
    base = cred->cfg.identity_endpoint;
    if (akv_buf_append_str(&url, base) || akv_buf_append_str(&url, strchr(base, '?') ? "&" : "?") ||
        akv_buf_append_str(&url, "api-version=2019-08-01&resource=") ||
        append_escaped(&url, resource) ||
        akv_buf_printf(&hdr, "X-IDENTITY-HEADER: %s", cred->cfg.identity_header))
      goto out;
  } else {
    size_t bl;
    base = cred->cfg.imds_endpoint ? cred->cfg.imds_endpoint : DEFAULT_IMDS;
    bl = strlen(base);
    while (bl && base[bl - 1] == '/')
      bl--;
    if (akv_buf_append(&url, base, bl))
      goto out;
    /* An endpoint given with its path is used as is. */
    if (!strstr(base, "/metadata/identity/oauth2/token") &&
        akv_buf_append_str(&url, "/metadata/identity/oauth2/token"))
      goto out;
    if (akv_buf_append_str(&url, strchr(base, '?') ? "&" : "?") ||
        akv_buf_append_str(&url, "api-version=2018-02-01&resource=") ||
        append_escaped(&url, resource) || akv_buf_append_str(&hdr, "Metadata: true"))
      goto out;
  }
  if (cred->cfg.client_id &&
      (akv_buf_append_str(&url, "&client_id=") || append_escaped(&url, cred->cfg.client_id)))
    goto out;
  headers[0] = (const char *)hdr.data;
  req.method = "GET";
  req.url = (const char *)url.data;
  req.headers = headers;
  req.n_headers = 1;
  req.idempotent = 1;
  req.allow_http = 1;
  probe = probe && kind == SRC_IMDS;
  if (probe) {
    req.connect_timeout_ms = IMDS_PROBE_CONNECT_MS;
    req.no_retry = 1;
  }
  rc = token_request(cred, &req, "access_token", out, e);
  if (probe && (rc == KV_E_NETWORK || rc == KV_E_TIMEOUT)) {
    snprintf(e->why, sizeof(e->why), "no answer from %.200s (connect timeout %d ms)", req.url,
             IMDS_PROBE_CONNECT_MS);
    e->absent = 1;
  } else if (probe && e->status == 400) {
    e->absent = 1; /* IMDS answers 400 "Identity not found" on a VM without a managed identity */
  } else if (probe && (e->status == 429 || e->status >= 500)) {
    req.connect_timeout_ms = 0;
    req.no_retry = 0;
    memset(e, 0, sizeof(*e));
    rc = token_request(cred, &req, "access_token", out, e);
  }
out:
  if (rc == KV_E_NOMEM)
    snprintf(e->why, sizeof(e->why), "out of memory");
  akv_buf_free(&url);
  akv_buf_free(&hdr);
  return rc;
}

/* ---- Azure CLI ---------------------------------------------------------------------------------
 */

static int64_t mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs argv without a shell, capturing stdout (cap) and stderr (first bytes) within timeout. */
static int run_capture(char *const argv[], long timeout_ms, struct akv_buf *out,
                       struct akv_buf *err, int *exit_status, char *why, size_t whylen)
{
  int op[2] = {-1, -1}, ep[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  int fa_init = 0, rc = -1, status = 0;
  pid_t pid = -1;
  int64_t deadline = mono_ms() + timeout_ms;
  char chunk[4096];
  int open_fds = 2;
  if (pipe2(op, O_CLOEXEC) || pipe2(ep, O_CLOEXEC)) {
    snprintf(why, whylen, "pipe: %s", strerror(errno));
    goto out;
  }
  if (posix_spawn_file_actions_init(&fa)) {
    snprintf(why, whylen, "out of memory");
    goto out;
  }
  fa_init = 1;
  if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
      posix_spawn_file_actions_adddup2(&fa, op[1], 1) ||
      posix_spawn_file_actions_adddup2(&fa, ep[1], 2)) {
    snprintf(why, whylen, "out of memory");
    goto out;
  }
  errno = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  if (errno) {
    snprintf(why, whylen, "cannot run %s: %s", argv[0], strerror(errno));
    pid = -1;
    goto out;
  }
  close(op[1]);
  close(ep[1]);
  op[1] = ep[1] = -1;
  while (open_fds > 0) {
    struct pollfd pf[2] = {{op[0], POLLIN, 0}, {ep[0], POLLIN, 0}};
    int64_t left = deadline - mono_ms();
    int n;
    if (left <= 0) {
      snprintf(why, whylen, "%s did not finish within %ld ms", argv[0], timeout_ms);
      goto out;
    }
    n = poll(pf, 2, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(why, whylen, "poll: %s", strerror(errno));
      goto out;
    }
    for (int i = 0; i < 2; i++) {
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t r = read(pf[i].fd, chunk, sizeof(chunk));
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0) {
        close(i == 0 ? op[0] : ep[0]);
        if (i == 0)
          op[0] = -1;
        else
          ep[0] = -1;
        open_fds--;
        continue;
      }
      if (i == 0 && akv_buf_append(out, chunk, (size_t)r)) {
        snprintf(why, whylen, "%s printed more than %zu bytes", argv[0], out->max);
        goto out;
      }
      if (i == 1 && err->len < err->max)
        akv_buf_append(err, chunk,
                       (size_t)r > err->max - err->len ? err->max - err->len : (size_t)r);
    }
  }
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) { /* SIGCHLD ignored by the host: the status is gone, judge by the output */
      status = 0;
      break;
    }
    if (mono_ms() >= deadline) {
      snprintf(why, whylen, "%s did not exit within %ld ms", argv[0], timeout_ms);
      goto out;
    }
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  pid = -1;
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  rc = 0;
out:
  if (pid > 0) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  }
  OPENSSL_cleanse(chunk, sizeof(chunk));
  if (fa_init)
    posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 2; i++) {
    if (op[i] >= 0)
      close(op[i]);
    if (ep[i] >= 0)
      close(ep[i]);
  }
  return rc;
}

static int is_executable(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The Azure CLI this credential runs: az_path, else `az`, looked up on PATH (absolute entries
 * only). Never in a privileged (AT_SECURE) process: PATH and the az login belong to whoever
 * started it (docs/security.md). -1 with the reason in why when there is none. */
static int find_az(const struct kv_cred *cred, char *path, size_t len, char *why, size_t whylen)
{
  const char *name = cred->cfg.az_path ? cred->cfg.az_path : "az";
  const char *p, *end;
  if (getauxval(AT_SECURE)) {
    snprintf(why, whylen, "privileged process (AT_SECURE): the Azure CLI is never run");
    return -1;
  }
  if (strchr(name, '/')) {
    if (!is_executable(name)) {
      snprintf(why, whylen, "az_path %.200s is not an executable file", name);
      return -1;
    }
    snprintf(path, len, "%s", name);
    return 0;
  }
  p = secure_getenv("PATH");
  for (p = p && *p ? p : "/usr/local/bin:/usr/bin:/bin"; *p; p = *end ? end + 1 : end) {
    size_t n;
    end = strchrnul(p, ':');
    n = (size_t)(end - p);
    if (n == 0 || *p != '/' || n + strlen(name) + 2 > len)
      continue;
    snprintf(path, len, "%.*s/%s", (int)n, p, name);
    if (is_executable(path))
      return 0;
  }
  snprintf(why, whylen, "no %.100s on PATH", name);
  return -1;
}

static kv_rc fetch_cli(struct kv_cred *cred, const char *tenant, const char *resource,
                       struct kv_token *out, struct src_err *e)
{
  char *argv[12], az[4096];
  int argc = 0, status = 0;
  struct akv_buf o, eb;
  kv_rc rc = KV_E_AUTH;
  akv_buf_init(&o, CLI_OUT_MAX);
  akv_buf_init(&eb, CLI_ERR_MAX);
  if (find_az(cred, az, sizeof(az), e->why, sizeof(e->why))) {
    snprintf(e->fix, sizeof(e->fix),
             "install the Azure CLI, set az_path (AKV_PKCS11_AZ_PATH), "
             "or configure another credential");
    goto out;
  }
  argv[argc++] = az;
  argv[argc++] = (char *)"account";
  argv[argc++] = (char *)"get-access-token";
  argv[argc++] = (char *)"--output";
  argv[argc++] = (char *)"json";
  argv[argc++] = (char *)"--resource";
  argv[argc++] = (char *)resource;
  if (tenant && valid_tenant(tenant)) {
    argv[argc++] = (char *)"--tenant";
    argv[argc++] = (char *)tenant;
  }
  argv[argc] = NULL;
  if (run_capture(argv, CLI_TIMEOUT_MS, &o, &eb, &status, e->why, sizeof(e->why)))
    goto out;
  if (status != 0) {
    const char *msg = eb.data ? (const char *)eb.data : "";
    size_t ml = strcspn(msg, "\r\n");
    snprintf(e->why, sizeof(e->why), "az exited with status %d%s%.*s", status, ml ? ": " : "",
             (int)(ml > 200 ? 200 : ml), msg);
    snprintf(e->fix, sizeof(e->fix),
             "run `az login` as uid %u (the user this process runs as), "
             "or configure another credential",
             (unsigned)geteuid());
    goto out;
  }
  rc = kv_token_parse((const char *)o.data, o.len, "accessToken", kv_token_now(), out);
  if (rc != KV_OK) {
    snprintf(e->why, sizeof(e->why), "az printed no usable token");
    rc = rc == KV_E_NOMEM ? rc : KV_E_AUTH;
  }
out:
  akv_buf_free(&o);
  akv_buf_free(&eb);
  return rc;
}

/* ---- the chain
 * ------------------------------------------------------------------------------------ */

/* One identity per slot (docs/config.md, "Credential chain"): in `auto`, a source whose inputs
 * are absent is skipped; the first configured source is the one that answers for the slot: its
 * failure ends the chain, and once it has produced a token it is the slot's only source for the
 * life of the process. */

static int entra_kind(enum src_kind k)
{
  return k == SRC_SECRET || k == SRC_CERT || k == SRC_WORKLOAD;
}

static kv_rc fetch_source(struct kv_cred *cred, enum src_kind k, const char *resource,
                          const char *tenant, int probe, struct kv_token *out, struct src_err *e)
{
  if (entra_kind(k) && !cred->cfg.client_id) {
    snprintf(e->why, sizeof(e->why), "the application (client) id is missing");
    snprintf(e->fix, sizeof(e->fix), "set client_id (AZURE_CLIENT_ID)");
    return KV_E_AUTH;
  }
  switch (k) {
  case SRC_SECRET:
    return entra_token(cred, tenant, resource, NULL, out, e);
  case SRC_CERT:
    return fetch_cert(cred, tenant, resource, out, e);
  case SRC_WORKLOAD:
    return fetch_workload(cred, tenant, resource, out, e);
  case SRC_APPSERVICE:
    if (!cred->cfg.identity_header) {
      snprintf(e->why, sizeof(e->why), "IDENTITY_ENDPOINT is set without IDENTITY_HEADER");
      snprintf(e->fix, sizeof(e->fix),
               "set identity_header (IDENTITY_HEADER) as the platform "
               "gives it, or unset IDENTITY_ENDPOINT");
      return KV_E_AUTH;
    }
    return fetch_managed(cred, k, resource, probe, out, e);
  case SRC_IMDS:
    return fetch_managed(cred, k, resource, probe, out, e);
  case SRC_CLI:
    return fetch_cli(cred, tenant, resource, out, e);
  default:
    snprintf(e->why, sizeof(e->why), "unknown source");
    return KV_E_INVALID;
  }
}

/* 1 when the inputs of source k are present (IMDS: always, the probe decides; the CLI: an az
 * that can be run), else 0 with the reason in why. No I/O, no process. */
static int source_configured(const struct kv_cred *cred, enum src_kind k, char *why, size_t wl)
{
  const struct akv_cred_config *c = &cred->cfg;
  char az[4096];
  switch (k) {
  case SRC_SECRET:
    if (c->client_secret)
      return 1;
    snprintf(why, wl, "no client secret (AZURE_CLIENT_SECRET, client_secret)");
    return 0;
  case SRC_CERT:
    if (c->certificate_path && !c->client_secret)
      return 1;
    snprintf(why, wl,
             c->certificate_path ? "the client secret takes precedence"
                                 : "no certificate (AZURE_CLIENT_CERTIFICATE_PATH, "
                                   "certificate_path)");
    return 0;
  case SRC_WORKLOAD:
    if (c->federated_token_file)
      return 1;
    snprintf(why, wl, "no federated token file (AZURE_FEDERATED_TOKEN_FILE)");
    return 0;
  case SRC_APPSERVICE:
    if (c->identity_endpoint)
      return 1;
    snprintf(why, wl, "no IDENTITY_ENDPOINT");
    return 0;
  case SRC_IMDS:
    return 1;
  case SRC_CLI:
    return find_az(cred, az, sizeof(az), why, wl) == 0;
  default:
    snprintf(why, wl, "unknown source");
    return 0;
  }
}

/* What to do about a failure the fetcher gave no specific fix for. */
static void default_fix(const struct kv_cred *cred, enum src_kind k, kv_rc rc, struct src_err *e)
{
  const struct akv_cred_config *c = &cred->cfg;
  const char *tid = c->tenant_id ? c->tenant_id : "(from the vault)";
  const char *cid = c->client_id ? c->client_id : "?";
  size_t alen;
  const char *auth = authority(cred, &alen);
  if (e->fix[0])
    return;
  if (rc == KV_E_NETWORK || rc == KV_E_TIMEOUT) {
    if (entra_kind(k))
      snprintf(e->fix, sizeof(e->fix),
               "check the network path to %.*s (DNS, proxy, firewall) "
               "and that ca_file holds the CA that signs it (see the warning before)",
               (int)(alen > 120 ? 120 : alen), auth);
    else if (k == SRC_APPSERVICE)
      snprintf(e->fix, sizeof(e->fix),
               "check IDENTITY_ENDPOINT: the platform sets it for the "
               "app and it must answer");
    else
      snprintf(e->fix, sizeof(e->fix),
               "check that this host is an Azure VM with a managed "
               "identity and reaches the IMDS endpoint");
    return;
  }
  switch (k) {
  case SRC_SECRET:
    snprintf(e->fix, sizeof(e->fix),
             "check tenant %.64s and client %.64s, and replace the "
             "client secret (AZURE_CLIENT_SECRET, client_secret) if it was rotated, expired or "
             "revoked",
             tid, cid);
    break;
  case SRC_CERT:
    snprintf(e->fix, sizeof(e->fix),
             "check that the certificate in %.120s is registered on app "
             "%.64s in tenant %.64s and still valid",
             c->certificate_path, cid, tid);
    break;
  case SRC_WORKLOAD:
    snprintf(e->fix, sizeof(e->fix),
             "check the federated credential of app %.64s in tenant "
             "%.64s against the token in %.120s",
             cid, tid, c->federated_token_file);
    break;
  case SRC_APPSERVICE:
  case SRC_IMDS:
    snprintf(e->fix, sizeof(e->fix),
             "assign a managed identity to this resource (client_id "
             "selects a user-assigned one) and grant it access to the vault");
    break;
  default:
    snprintf(e->fix, sizeof(e->fix), "update the Azure CLI, or configure another credential");
    break;
  }
}

static void set_state(struct kv_cred *cred, size_t i, enum kv_src_state st, const char *note)
{
  pthread_mutex_lock(&cred->lock);
  cred->state[i] = st;
  snprintf(cred->note[i], sizeof(cred->note[i]), "%s", note ? note : "");
  pthread_mutex_unlock(&cred->lock);
}

/* Source i produced a token (or another process's token for its identity): the slot's identity
 * from now on. */
static void mark_in_use(struct kv_cred *cred, size_t i)
{
  int was;
  pthread_mutex_lock(&cred->lock);
  was = cred->chosen;
  cred->chosen = (int)i;
  cred->state[i] = KV_SRC_IN_USE;
  cred->note[i][0] = '\0';
  pthread_mutex_unlock(&cred->lock);
  if (was != (int)i)
    akv_info(AKV_LOGC_AUTH, "credential: using %s", cred->desc[i]);
}

/* Runs source i; on failure one error line with the source, the reason and the fix. */
static kv_rc run_source(struct kv_cred *cred, size_t i, const char *resource, const char *tenant,
                        int first_walk, struct kv_token *out, int *absent)
{
  struct src_err e;
  enum src_kind k = cred->srcs[i];
  kv_rc rc;
  memset(&e, 0, sizeof(e));
  rc = fetch_source(cred, k, resource, tenant, first_walk && cred->chained, out, &e);
  if (rc == KV_OK) {
    mark_in_use(cred, i);
    return KV_OK;
  }
  if (rc == KV_E_NOMEM) {
    akv_err(AKV_LOGC_AUTH, "credential: %s: out of memory", cred->desc[i]);
    return rc;
  }
  if (e.absent && first_walk && cred->chained) {
    *absent = 1;
    set_state(cred, i, KV_SRC_UNCONFIGURED, e.why);
    akv_dbg(AKV_LOGC_AUTH, "credential chain: %s not configured: %s", cred->desc[i], e.why);
    return KV_E_AUTH;
  }
  default_fix(cred, k, rc, &e);
  set_state(cred, i, KV_SRC_FAILED, e.why);
  akv_err(AKV_LOGC_AUTH, "credential: %s failed: %s; fix: %s%s", cred->desc[i], e.why, e.fix,
          !cred->chained ? ""
          : first_walk   ? " (no other source is tried: one identity per slot, docs/config.md)"
                         : " (the slot's identity since its first token: no other source is "
                           "tried)");
  return KV_E_AUTH;
}

/* A tenant and a client id with none of the app's credentials is a client secret (or
 * certificate, or token file) that did not reach the process, more often than a user-assigned
 * managed identity that happens to have a tenant set: name what is missing. The chain's rules do
 * not change (docs/config.md, "Credential chain"): the app's sources are not configured, the walk
 * goes on. */
static void warn_half_app(const struct kv_cred *cred)
{
  const struct akv_cred_config *c = &cred->cfg;
  if (!c->tenant_id || !c->client_id || c->client_secret || c->certificate_path ||
      c->federated_token_file)
    return;
  akv_warn(AKV_LOGC_AUTH,
           "credential chain: tenant_id (AZURE_TENANT_ID) and client_id "
           "(AZURE_CLIENT_ID) are set but AZURE_CLIENT_SECRET is missing (and neither "
           "AZURE_CLIENT_CERTIFICATE_PATH for a certificate nor AZURE_FEDERATED_TOKEN_FILE for "
           "workload identity is set), so app %.64s is not used; the chain goes on to managed "
           "identity (client_id then selects a user-assigned identity) and the Azure CLI; fix: "
           "set AZURE_CLIENT_SECRET (or client_secret_file in the configuration), or unset "
           "AZURE_TENANT_ID if a managed identity is meant",
           c->client_id);
}

static kv_rc chain_fetch(void *ctx, const char *resource, const char *tenant, struct kv_token *out)
{
  struct kv_cred *cred = ctx;
  char skipped[1536] = "", why[WHY_LEN];
  size_t sl = 0;
  int chosen;
  kv_rc rc = KV_E_AUTH;
  pthread_mutex_lock(&cred->lock);
  chosen = cred->chosen;
  pthread_mutex_unlock(&cred->lock);
  if (chosen >= 0)
    return run_source(cred, (size_t)chosen, resource, tenant, 0, out, &(int){0});
  /* Until a source has worked, one thread at a time decides which one answers for the slot. */
  pthread_mutex_lock(&cred->choose);
  pthread_mutex_lock(&cred->lock);
  chosen = cred->chosen;
  pthread_mutex_unlock(&cred->lock);
  if (chosen >= 0) {
    pthread_mutex_unlock(&cred->choose);
    return run_source(cred, (size_t)chosen, resource, tenant, 0, out, &(int){0});
  }
  for (size_t i = 0; i < cred->n_srcs; i++) {
    int absent = 0;
    if (cred->chained && !source_configured(cred, cred->srcs[i], why, sizeof(why))) {
      set_state(cred, i, KV_SRC_UNCONFIGURED, why);
      akv_dbg(AKV_LOGC_AUTH, "credential chain: %s not configured: %s", cred->desc[i], why);
      if (cred->srcs[i] == SRC_SECRET)
        warn_half_app(cred);
      absent = 1;
    } else {
      rc = run_source(cred, i, resource, tenant, 1, out, &absent);
      if (!absent) {
        pthread_mutex_unlock(&cred->choose);
        return rc;
      }
      pthread_mutex_lock(&cred->lock);
      snprintf(why, sizeof(why), "%s", cred->note[i]);
      pthread_mutex_unlock(&cred->lock);
    }
    if (sl < sizeof(skipped))
      sl += (size_t)snprintf(skipped + sl, sizeof(skipped) - sl, "%s%s: %s", sl ? "; " : "",
                             src_names[cred->srcs[i]], why);
  }
  pthread_mutex_unlock(&cred->choose);
  akv_err(AKV_LOGC_AUTH,
          "credential chain: no source is configured: %s; fix: configure one "
          "(docs/config.md)",
          skipped);
  return KV_E_AUTH;
}

/* ---- the token shared between processes (kv/keyring.h, docs/security.md) ------------------- */

/* 1 when s can be a field of a keyring description: set, visible ASCII without blanks. */
static int desc_field_ok(const char *s)
{
  if (!s || !*s)
    return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
      return 0;
  return 1;
}

/* 16 hex digits of SHA-256 over label, a NUL and s: names the credential that proves an
 * identity in a keyring description without showing it. 0 or -1. */
static int cred_mark(const struct kv_cred *cred, const char *label, const char *s, char out[17])
{
  static const char hex[] = "0123456789abcdef";
  unsigned char dg[EVP_MAX_MD_SIZE];
  EVP_MD *md = EVP_MD_fetch(cred->libctx, "SHA256", NULL);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = md && ctx && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
           EVP_DigestUpdate(ctx, label, strlen(label) + 1) == 1 &&
           EVP_DigestUpdate(ctx, s, strlen(s)) == 1 && EVP_DigestFinal_ex(ctx, dg, NULL) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_MD_free(md);
  if (!ok)
    return -1;
  for (int i = 0; i < 8; i++) {
    out[2 * i] = hex[dg[i] >> 4];
    out[2 * i + 1] = hex[dg[i] & 15];
  }
  out[16] = '\0';
  OPENSSL_cleanse(dg, sizeof(dg));
  return 0;
}

/* The keyring description of the identity source k gets tokens for: who issues them (the
 * authority, the managed identity endpoint, the CLI's configuration directory), the tenant, the
 * client, the resource, and a digest of the credential that proves the identity (the client
 * secret; the certificate's or the federated token's file), so that a process never gets through
 * the keyring a token its own credential would not get. 0, or -1 when it cannot be named (then
 * nothing is shared). A client certificate whose key is encrypted is never shared: its password
 * (or the slot's PIN) is what gates the token, and the keyring would hand it to processes that do
 * not hold it. */
static int share_desc(const struct kv_cred *cred, enum src_kind k, const char *resource,
                      const char *tenant, char *buf, size_t len)
{
  const struct akv_cred_config *c = &cred->cfg;
  const char *issuer, *client = c->client_id ? c->client_id : "-", *kind;
  char dir[1024], mark[17] = "-";
  size_t alen = 0;
  int n;
  tenant = tenant && *tenant ? tenant : "-";
  switch (k) {
  case SRC_SECRET:
  case SRC_CERT:
  case SRC_WORKLOAD:
    if (k == SRC_CERT && c->certificate_password)
      return -1;
    if ((k == SRC_SECRET &&
         (!c->client_secret || cred_mark(cred, "secret", c->client_secret, mark))) ||
        (k == SRC_CERT &&
         (!c->certificate_path || cred_mark(cred, "certificate", c->certificate_path, mark))) ||
        (k == SRC_WORKLOAD &&
         (!c->federated_token_file || cred_mark(cred, "workload", c->federated_token_file, mark))))
      return -1;
    kind = "entra";
    issuer = authority(cred, &alen);
    break;
  case SRC_APPSERVICE:
    kind = "appservice";
    issuer = c->identity_endpoint;
    break;
  case SRC_IMDS:
    kind = "imds";
    issuer = c->imds_endpoint ? c->imds_endpoint : DEFAULT_IMDS;
    break;
  case SRC_CLI: {
    /* The CLI's tokens are those of its login, kept in its configuration directory. */
    const char *cd = secure_getenv("AZURE_CONFIG_DIR"), *home = secure_getenv("HOME");
    if (cd && *cd)
      n = snprintf(dir, sizeof(dir), "%s", cd);
    else if (home && *home)
      n = snprintf(dir, sizeof(dir), "%s/.azure", home);
    else
      return -1;
    if (n < 0 || (size_t)n >= sizeof(dir))
      return -1;
    kind = "cli";
    issuer = dir;
    break;
  }
  default:
    return -1;
  }
  if (!alen && issuer)
    alen = strlen(issuer);
  if (!desc_field_ok(issuer) || !desc_field_ok(tenant) || !desc_field_ok(client) ||
      !desc_field_ok(resource))
    return -1;
  n = snprintf(buf, len, KV_KEYRING_DESC_PREFIX "%s %.*s %s %s %s %s", kind, (int)alen, issuer,
               tenant, client, resource, mark);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The sources whose shared token this process would use, in chain order: the one in use, the one
 * source of an explicit credential, or the chain's first configured source (managed identity
 * through IMDS, which only a probe confirms, is followed by the Azure CLI). Their number. */
static size_t share_candidates(struct kv_cred *cred, size_t *idx)
{
  char why[WHY_LEN];
  size_t n = 0;
  int chosen;
  pthread_mutex_lock(&cred->lock);
  chosen = cred->chosen;
  pthread_mutex_unlock(&cred->lock);
  if (chosen >= 0 || !cred->chained) {
    idx[0] = chosen >= 0 ? (size_t)chosen : 0;
    return 1;
  }
  for (size_t i = 0; i < cred->n_srcs && n < 2; i++) {
    if (!source_configured(cred, cred->srcs[i], why, sizeof(why)))
      continue;
    idx[n++] = i;
    if (cred->srcs[i] != SRC_IMDS)
      break;
  }
  return n;
}

/* The candidate (index into descs) whose shared token is now in *out: one not yet due for refresh
 * or, when stale_ok, not yet expired. -1 when there is none. */
static int find_shared(char (*descs)[KV_KEYRING_DESC_MAX], size_t n, int stale_ok,
                       struct kv_token *out)
{
  for (size_t i = 0; i < n; i++) {
    if (!descs[i][0] || kv_keyring_get(descs[i], out))
      continue;
    if (stale_ok || kv_token_now() < out->refresh_on)
      return (int)i;
    kv_token_clear(out);
  }
  return -1;
}

/* The shared token in *out, of the candidate source src, is the one this process uses. */
static void use_shared(struct kv_cred *cred, size_t src, const struct kv_token *out)
{
  akv_dbg(AKV_LOGC_AUTH,
          "token sharing: token for %s taken from the kernel keyring, expires in "
          "%lld s",
          cred->desc[src], (long long)(out->expires_on - kv_token_now()));
  mark_in_use(cred, src);
}

static int take_shared(struct kv_cred *cred, const size_t *idx, char (*descs)[KV_KEYRING_DESC_MAX],
                       size_t n, int stale_ok, struct kv_token *out)
{
  int i = find_shared(descs, n, stale_ok, out);
  if (i < 0)
    return -1;
  use_shared(cred, idx[i], out);
  return 0;
}

struct fetch_ctx {
  struct kv_cred *cred;
  struct kv_token_ref *refused; /* the token the vault refused (forced refresh), or NULL */
};

/* The cache's fetch: the token another process left in the kernel keyring when there is a valid
 * one, else one process at a time fetches (the others wait for it, bounded) and leaves its token
 * there. A token the vault refused is dropped first. */
static kv_rc shared_fetch(void *ctx, const char *resource, const char *tenant, struct kv_token *out)
{
  struct fetch_ctx *fc = ctx;
  struct kv_cred *cred = fc->cred;
  char descs[2][KV_KEYRING_DESC_MAX];
  const char *lock_desc;
  size_t idx[2], n, usable = 0;
  int lock, chosen, stale;
  kv_rc rc;
  if (!cred->cfg.share_token || !kv_keyring_available())
    return chain_fetch(cred, resource, tenant, out);
  n = share_candidates(cred, idx);
  for (size_t i = 0; i < n; i++) {
    if (share_desc(cred, cred->srcs[idx[i]], resource, tenant, descs[i], sizeof(descs[i])))
      descs[i][0] = '\0';
    else
      usable++;
  }
  if (!usable)
    return chain_fetch(cred, resource, tenant, out);
  if (fc->refused)
    for (size_t i = 0; i < n; i++)
      if (descs[i][0])
        kv_keyring_drop(descs[i], kv_token_ref_str(fc->refused));
  if (take_shared(cred, idx, descs, n, 0, out) == 0)
    return KV_OK;
  lock_desc = descs[0][0] ? descs[0] : descs[1];
  /* Due for refresh but still valid, and another process is refreshing it: use it meanwhile
   * rather than wait (as threads do in the process's own cache, kv/token.c). */
  if (!fc->refused && (stale = find_shared(descs, n, 1, out)) >= 0) {
    lock = kv_keyring_lock(lock_desc, 0);
    if (lock == KV_KEYRING_BUSY) {
      use_shared(cred, idx[stale], out);
      return KV_OK;
    }
    kv_token_clear(out);
  } else {
    lock = kv_keyring_lock(lock_desc, SHARE_WAIT_MS);
  }
  /* Another process may have fetched while this one waited. */
  if (take_shared(cred, idx, descs, n, 0, out) == 0) {
    kv_keyring_unlock(lock);
    return KV_OK;
  }
  rc = chain_fetch(cred, resource, tenant, out);
  if (rc == KV_OK) {
    pthread_mutex_lock(&cred->lock);
    chosen = cred->chosen;
    pthread_mutex_unlock(&cred->lock);
    if (chosen >= 0 &&
        share_desc(cred, cred->srcs[chosen], resource, tenant, descs[0], sizeof(descs[0])) == 0)
      kv_keyring_put(descs[0], out);
  } else if (!fc->refused && take_shared(cred, idx, descs, n, 1, out) == 0) {
    /* The refresh failed but the shared token still works: as for the process's own. */
    akv_warn(AKV_LOGC_AUTH,
             "token refresh for %s failed (%s); using the cached token until it "
             "expires",
             resource, kv_rc_str(rc));
    rc = KV_OK;
  }
  kv_keyring_unlock(lock);
  return rc;
}

/* Where the input of an app source came from, as its name says it (docs/troubleshooting.md): ""
 * when there is none. */
static const char *input_origin(const struct akv_cred_config *c, enum src_kind k)
{
  if (k == SRC_SECRET && c->client_secret)
    return c->from_env & AKV_CRED_ENV_SECRET ? " (environment: AZURE_CLIENT_SECRET)"
                                             : " (configuration)";
  if (k == SRC_CERT && c->certificate_path)
    return c->from_env & AKV_CRED_ENV_CERT ? " (environment: AZURE_CLIENT_CERTIFICATE_PATH)"
                                           : " (configuration)";
  return "";
}

static void describe_sources(struct kv_cred *cred)
{
  const struct akv_cred_config *c = &cred->cfg;
  for (size_t i = 0; i < cred->n_srcs; i++) {
    enum src_kind k = cred->srcs[i];
    switch (k) {
    case SRC_SECRET:
    case SRC_CERT:
    case SRC_WORKLOAD:
      snprintf(cred->desc[i], sizeof(cred->desc[i]), "%s%s, tenant %.40s, client %.40s",
               src_names[k], input_origin(c, k), c->tenant_id ? c->tenant_id : "?",
               c->client_id ? c->client_id : "?");
      break;
    case SRC_IMDS:
      snprintf(cred->desc[i], sizeof(cred->desc[i]), "%s at %.60s%s%.40s", src_names[k],
               c->imds_endpoint ? c->imds_endpoint : DEFAULT_IMDS, c->client_id ? ", client " : "",
               c->client_id ? c->client_id : "");
      break;
    case SRC_APPSERVICE:
      snprintf(cred->desc[i], sizeof(cred->desc[i]), "%s at %.80s", src_names[k],
               c->identity_endpoint ? c->identity_endpoint : "(IDENTITY_ENDPOINT)");
      break;
    default:
      snprintf(cred->desc[i], sizeof(cred->desc[i]), "%s (%s)", src_names[k],
               c->az_path ? c->az_path : "az");
      break;
    }
  }
}

size_t kv_cred_sources(struct kv_cred *cred, struct kv_src_info *out, size_t max)
{
  size_t n = 0;
  if (!cred || !out)
    return 0;
  for (size_t i = 0; i < cred->n_srcs && n < max; i++, n++) {
    struct kv_src_info *s = &out[n];
    enum src_kind k = cred->srcs[i];
    char why[WHY_LEN] = "", az[4096];
    memset(s, 0, sizeof(*s));
    s->desc = cred->desc[i];
    pthread_mutex_lock(&cred->lock);
    s->state = cred->state[i];
    snprintf(s->note, sizeof(s->note), "%s", cred->note[i]);
    pthread_mutex_unlock(&cred->lock);
    if (!cred->chained)
      s->configured = 1;
    else if (k == SRC_IMDS)
      s->configured = s->state == KV_SRC_UNCONFIGURED ? 0 : s->state == KV_SRC_NOT_TRIED ? -1 : 1;
    else
      s->configured = source_configured(cred, k, why, sizeof(why));
    if (s->state == KV_SRC_NOT_TRIED && !s->configured)
      snprintf(s->note, sizeof(s->note), "%s", why);
    else if (s->state == KV_SRC_NOT_TRIED && k == SRC_CLI && cred->chained &&
             find_az(cred, az, sizeof(az), why, sizeof(why)) == 0)
      snprintf(s->note, sizeof(s->note), "az at %.280s", az);
  }
  return n;
}

kv_rc kv_cred_new(struct kv_http *http, const struct akv_cred_config *cfg, struct kv_cred **out)
{
  struct kv_cred *cred = NULL;
  const struct akv_cred_config *c = cfg;
  int env_ok;
  kv_rc rc = KV_E_NOMEM;
  if (!http || !cfg || !out)
    return KV_E_INVALID;
  *out = NULL;
  cred = calloc(1, sizeof(*cred));
  if (!cred)
    return KV_E_NOMEM;
  pthread_mutex_init(&cred->lock, NULL);
  pthread_mutex_init(&cred->choose, NULL);
  cred->http = http;
  cred->chosen = -1;
  if (cred_cfg_copy(&cred->cfg, cfg))
    goto out;
  cred->cache = kv_token_cache_new();
  cred->libctx = OSSL_LIB_CTX_new();
  if (!cred->cache || !cred->libctx)
    goto out;
  rc = KV_E_INVALID;
  env_ok = c->tenant_id && c->client_id;
  switch (c->kind) {
  case AKV_CRED_AUTO:
    /* Every source, in DefaultAzureCredential's order; which are configured is decided when a
     * token is first asked for (chain_fetch). */
    cred->chained = 1;
    for (int k = 0; k < SRC_N; k++)
      cred->srcs[cred->n_srcs++] = (enum src_kind)k;
    break;
  case AKV_CRED_SECRET:
    if (!env_ok || !c->client_secret) {
      akv_err(AKV_LOGC_AUTH, "client_secret credential needs tenant_id, client_id and a secret");
      goto out;
    }
    cred->srcs[cred->n_srcs++] = SRC_SECRET;
    break;
  case AKV_CRED_CERTIFICATE:
    if (!env_ok || !c->certificate_path) {
      akv_err(AKV_LOGC_AUTH,
              "client_certificate credential needs tenant_id, client_id and certificate_path");
      goto out;
    }
    cred->srcs[cred->n_srcs++] = SRC_CERT;
    break;
  case AKV_CRED_WORKLOAD:
    if (!env_ok || !c->federated_token_file) {
      akv_err(AKV_LOGC_AUTH, "workload_identity credential needs tenant_id, client_id and "
                             "federated_token_file");
      goto out;
    }
    cred->srcs[cred->n_srcs++] = SRC_WORKLOAD;
    break;
  case AKV_CRED_MANAGED:
    cred->srcs[cred->n_srcs++] =
        c->identity_endpoint && c->identity_header ? SRC_APPSERVICE : SRC_IMDS;
    break;
  case AKV_CRED_CLI:
    cred->srcs[cred->n_srcs++] = SRC_CLI;
    break;
  default:
    akv_err(AKV_LOGC_AUTH, "unknown credential kind %d", (int)c->kind);
    goto out;
  }
  describe_sources(cred);
  *out = cred;
  cred = NULL;
  rc = KV_OK;
out:
  kv_cred_free(cred);
  return rc;
}

void kv_cred_free(struct kv_cred *cred)
{
  if (!cred)
    return;
  kv_token_cache_free(cred->cache);
  EVP_PKEY_free(cred->cert_key);
  free(cred->cert_x5t);
  OSSL_LIB_CTX_free(cred->libctx);
  cred_cfg_free(&cred->cfg);
  pthread_mutex_destroy(&cred->lock);
  pthread_mutex_destroy(&cred->choose);
  free(cred);
}

kv_rc kv_cred_token_ref(struct kv_cred *cred, const char *resource, const char *tenant_hint,
                        int force_refresh, struct kv_token_ref **token)
{
  struct fetch_ctx fc;
  const char *tenant;
  kv_rc rc;
  if (!cred || !resource || !token)
    return KV_E_INVALID;
  /* A configured tenant wins; the challenge's tenant only fills in when none is configured. */
  tenant = cred->cfg.tenant_id ? cred->cfg.tenant_id : tenant_hint;
  fc.cred = cred;
  fc.refused = force_refresh ? kv_token_cache_peek(cred->cache, resource, tenant) : NULL;
  rc = kv_token_cache_get(cred->cache, resource, tenant, force_refresh, shared_fetch, &fc, token);
  kv_token_ref_unref(fc.refused);
  return rc;
}

kv_rc kv_cred_token(struct kv_cred *cred, const char *resource, const char *tenant_hint,
                    int force_refresh, char **token)
{
  struct kv_token_ref *ref = NULL;
  kv_rc rc;
  if (!token)
    return KV_E_INVALID;
  *token = NULL;
  rc = kv_cred_token_ref(cred, resource, tenant_hint, force_refresh, &ref);
  if (rc == KV_OK && !(*token = strdup(kv_token_ref_str(ref))))
    rc = KV_E_NOMEM;
  kv_token_ref_unref(ref);
  return rc;
}

const char *kv_cred_describe(const struct kv_cred *cred)
{
  int idx;
  if (!cred)
    return "(none)";
  pthread_mutex_lock((pthread_mutex_t *)&cred->lock);
  idx = cred->chosen;
  /* Before any token: the configured source that failed, as it answers for the slot. */
  for (size_t i = 0; idx < 0 && cred->chained && i < cred->n_srcs; i++)
    if (cred->state[i] == KV_SRC_FAILED)
      idx = (int)i;
  pthread_mutex_unlock((pthread_mutex_t *)&cred->lock);
  if (idx >= 0)
    return cred->desc[idx];
  return cred->chained ? "DefaultAzureCredential chain (no source has worked yet)" : cred->desc[0];
}
