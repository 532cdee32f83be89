/* SPDX-License-Identifier: Apache-2.0 */
/*
 * entra.c - the Entra ID token endpoint (client secret, certificate assertion,
 * federated assertion), OpenID discovery, managed identity (IMDS and App Service
 * 2019) and the bearer token check of the vault listeners.
 */
#include "core.h"
#include "attest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#define VAULT_RESOURCE "https://vault.azure.net"
#define MHSM_RESOURCE "https://managedhsm.azure.net"
#define FEDERATED_AUD "api://AzureADTokenExchange"
#define MAX_FORM_FIELDS 24
#define CLOCK_SKEW 300

/* Issue serial of access tokens; token-revoke refuses every serial <= revoked_seq. */
static int64_t token_seq;
static int64_t revoked_seq;

struct form {
  char *name[MAX_FORM_FIELDS];
  char *value[MAX_FORM_FIELDS];
  size_t n;
};

static void form_free(struct form *f)
{
  for (size_t i = 0; i < f->n; i++) {
    free(f->name[i]);
    if (f->value[i]) {
      OPENSSL_cleanse(f->value[i], strlen(f->value[i]));
      free(f->value[i]);
    }
  }
  f->n = 0;
}

/* application/x-www-form-urlencoded (also used for query strings): '+' is a space. */
static int form_parse(const char *text, size_t len, struct form *f)
{
  size_t i = 0;
  f->n = 0;
  while (i < len) {
    size_t end = i;
    while (end < len && text[end] != '&')
      end++;
    if (end > i) {
      const char *eq = memchr(text + i, '=', end - i);
      size_t nlen = eq ? (size_t)(eq - (text + i)) : end - i;
      const char *v = eq ? eq + 1 : text + end;
      size_t vlen = eq ? (size_t)(text + end - v) : 0;
      char *n = NULL, *val = NULL, *tmp;
      if (f->n == MAX_FORM_FIELDS)
        return -1;
      tmp = strndup(text + i, nlen);
      if (!tmp)
        return -1;
      for (char *p = tmp; *p; p++)
        if (*p == '+')
          *p = ' ';
      n = emu_pct_decode_new(tmp, strlen(tmp));
      free(tmp);
      tmp = strndup(v, vlen);
      if (!tmp) {
        free(n);
        return -1;
      }
      for (char *p = tmp; *p; p++)
        if (*p == '+')
          *p = ' ';
      val = emu_pct_decode_new(tmp, strlen(tmp));
      OPENSSL_cleanse(tmp, strlen(tmp));
      free(tmp);
      if (!n || !val) {
        free(n);
        free(val);
        return -1;
      }
      f->name[f->n] = n;
      f->value[f->n] = val;
      f->n++;
    }
    i = end + 1;
  }
  return 0;
}

static const char *form_get(const struct form *f, const char *name)
{
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->name[i], name) == 0)
      return f->value[i];
  return NULL;
}

static void iso_now(char *buf, size_t len)
{
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* Entra-style OAuth error body. */
static void oauth_error(struct entra_out *out, unsigned status, const char *error, int code,
                        const char *desc)
{
  char trace[37], corr[37], ts[40], *full = NULL;
  cJSON *j = cJSON_CreateObject(), *codes;
  emu_uuid_new(trace);
  emu_uuid_new(corr);
  iso_now(ts, sizeof(ts));
  full = emu_strdup_printf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
                           code, desc, trace, corr, ts);
  out->status = status;
  if (!j || !full)
    goto fail;
  char uri[80];
  snprintf(uri, sizeof(uri), "https://login.microsoftonline.com/error?code=%d", code);
  if (!cJSON_AddStringToObject(j, "error", error) ||
      !cJSON_AddStringToObject(j, "error_description", full) ||
      !(codes = cJSON_AddArrayToObject(j, "error_codes")))
    goto fail;
  cJSON_AddItemToArray(codes, cJSON_CreateNumber(code));
  if (!cJSON_AddStringToObject(j, "timestamp", ts) ||
      !cJSON_AddStringToObject(j, "trace_id", trace) ||
      !cJSON_AddStringToObject(j, "correlation_id", corr) ||
      !cJSON_AddStringToObject(j, "error_uri", uri))
    goto fail;
  free(full);
  out->json = j;
  return;
fail:
  free(full);
  cJSON_Delete(j);
  out->status = 500;
  out->json = NULL;
}

static int token_ttl(void)
{
  int t = faults_token_ttl();
  return t >= 0 ? t : emu_srv->token_ttl;
}

/* Access token for `resource`; appid/oid identify the caller. */
static char *access_token_new(const char *resource, const char *appid, const char *oid,
                              int64_t *exp_out)
{
  cJSON *c = cJSON_CreateObject();
  char *iss = emu_strdup_printf("https://sts.windows.net/%s/", emu_srv->tenant_id);
  char *tok = NULL;
  int64_t now = emu_now(), exp = now + token_ttl();
  if (!c || !iss)
    goto out;
  if (!cJSON_AddStringToObject(c, "aud", resource) || !cJSON_AddStringToObject(c, "iss", iss) ||
      !cJSON_AddNumberToObject(c, "iat", (double)now) ||
      !cJSON_AddNumberToObject(c, "nbf", (double)(now - 300)) ||
      !cJSON_AddNumberToObject(c, "exp", (double)exp) ||
      !cJSON_AddStringToObject(c, "appid", appid) || !cJSON_AddStringToObject(c, "oid", oid) ||
      !cJSON_AddStringToObject(c, "sub", oid) ||
      !cJSON_AddStringToObject(c, "tid", emu_srv->tenant_id) ||
      !cJSON_AddStringToObject(c, "idtyp", "app") || !cJSON_AddStringToObject(c, "ver", "1.0") ||
      !cJSON_AddNumberToObject(c, "emu_seq",
                               (double)__atomic_add_fetch(&token_seq, 1, __ATOMIC_ACQ_REL)))
    goto out;
  tok = jwt_sign_new(emu_srv->token_key, c, "akv-emulator-token-key");
  *exp_out = exp;
out:
  cJSON_Delete(c);
  free(iss);
  return tok;
}

/* "https://vault.azure.net/.default" -> resource, NULL when not a Key Vault scope. */
static const char *scope_resource(const char *scope)
{
  if (!scope)
    return NULL;
  if (strcmp(scope, VAULT_RESOURCE "/.default") == 0)
    return VAULT_RESOURCE;
  if (strcmp(scope, MHSM_RESOURCE "/.default") == 0)
    return MHSM_RESOURCE;
  return NULL;
}

static const char *mi_resource(const char *res)
{
  if (!res)
    return NULL;
  if (strcmp(res, VAULT_RESOURCE) == 0 || strcmp(res, VAULT_RESOURCE "/") == 0)
    return VAULT_RESOURCE;
  if (strcmp(res, MHSM_RESOURCE) == 0 || strcmp(res, MHSM_RESOURCE "/") == 0)
    return MHSM_RESOURCE;
  return NULL;
}

static bool claim_time_ok(const cJSON *claims)
{
  const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
  const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(claims, "nbf");
  int64_t now = emu_now();
  if (!cJSON_IsNumber(exp) || exp->valuedouble + CLOCK_SKEW < (double)now)
    return false;
  if (nbf && (!cJSON_IsNumber(nbf) || nbf->valuedouble - CLOCK_SKEW > (double)now))
    return false;
  return true;
}

static bool claim_is(const cJSON *claims, const char *name, const char *want)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
  return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* aud of a client assertion must be the token endpoint (localhost or 127.0.0.1 host). */
static bool assertion_aud_ok(const cJSON *claims)
{
  char a[512], b[512];
  const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
  snprintf(a, sizeof(a), "%s/%s/oauth2/v2.0/token", emu_srv->authority_host, emu_srv->tenant_id);
  snprintf(b, sizeof(b), "https://127.0.0.1:%u/%s/oauth2/v2.0/token", http_entra_port(),
           emu_srv->tenant_id);
  if (cJSON_IsString(aud))
    return strcmp(aud->valuestring, a) == 0 || strcmp(aud->valuestring, b) == 0;
  if (cJSON_IsArray(aud)) {
    const cJSON *x;
    cJSON_ArrayForEach(
        x, aud) if (cJSON_IsString(x) &&
                    (strcmp(x->valuestring, a) == 0 || strcmp(x->valuestring, b) == 0)) return true;
  }
  return false;
}

/* Certificate assertion (header has x5t or x5t#S256) or federated token. 0 = accepted. */
static int check_assertion(const char *assertion, const char *client_id, struct entra_out *out)
{
  cJSON *hdr = jwt_header_new(assertion), *claims = NULL;
  const char *why = NULL;
  int rc = -1;
  if (!hdr) {
    oauth_error(out, 400, "invalid_request", 50027, "JWT token is invalid or malformed.");
    goto out;
  }
  const cJSON *x5t = cJSON_GetObjectItemCaseSensitive(hdr, "x5t");
  const cJSON *x5t256 = cJSON_GetObjectItemCaseSensitive(hdr, "x5t#S256");
  if (x5t || x5t256) {
    unsigned char *tp = NULL;
    size_t tplen = 0;
    bool match = false;
    if (cJSON_IsString(x5t256) && emu_b64url_decode(x5t256->valuestring, &tp, &tplen) == 0)
      match = tplen == 32 && CRYPTO_memcmp(tp, emu_srv->client_x5t256, 32) == 0;
    else if (cJSON_IsString(x5t) && emu_b64url_decode(x5t->valuestring, &tp, &tplen) == 0)
      match = tplen == 20 && CRYPTO_memcmp(tp, emu_srv->client_x5t, 20) == 0;
    free(tp);
    if (!match) {
      oauth_error(out, 401, "invalid_client", 700027,
                  "The certificate with identifier used to sign the client assertion is not "
                  "registered on application.");
      goto out;
    }
    EVP_PKEY *pub = X509_get0_pubkey(emu_srv->client_cert);
    claims = jwt_verify_new(assertion, pub, true, NULL, &why);
    if (!claims) {
      oauth_error(out, 401, "invalid_client", 700027,
                  "Client assertion failed signature validation.");
      goto out;
    }
    if (!claim_is(claims, "iss", client_id) || !claim_is(claims, "sub", client_id)) {
      oauth_error(out, 400, "invalid_client", 700021,
                  "Client assertion application identifier doesn't match 'client_id' parameter.");
      goto out;
    }
    if (!assertion_aud_ok(claims)) {
      oauth_error(out, 401, "invalid_client", 700212,
                  "No matching federated identity record found for presented assertion audience.");
      goto out;
    }
  } else {
    claims = jwt_verify_new(assertion, emu_srv->token_key, false, NULL, &why);
    if (!claims || !claim_is(claims, "aud", FEDERATED_AUD)) {
      oauth_error(out, 400, "invalid_client", 70021,
                  "No matching federated identity record found for presented assertion.");
      goto out;
    }
  }
  if (!claim_time_ok(claims)) {
    oauth_error(out, 400, "invalid_client", 700024,
                "Client assertion is not within its valid time range.");
    goto out;
  }
  rc = 0;
out:
  cJSON_Delete(hdr);
  cJSON_Delete(claims);
  return rc;
}

static void token_endpoint(const char *body, size_t body_len, const char *query,
                           struct entra_out *out)
{
  struct form f = {0};
  const char *grant, *client_id, *scope, *secret, *assertion, *atype, *resource;
  const char *app = emu_srv->client_id;
  char *tok = NULL;
  int64_t exp = 0;
  (void)query; /* client-request-id and friends are tolerated */
  out->op = "token";
  if (form_parse(body ? body : "", body_len, &f) != 0) {
    oauth_error(out, 400, "invalid_request", 900144, "The request body is not valid form data.");
    goto out;
  }
  grant = form_get(&f, "grant_type");
  client_id = form_get(&f, "client_id");
  scope = form_get(&f, "scope");
  secret = form_get(&f, "client_secret");
  assertion = form_get(&f, "client_assertion");
  atype = form_get(&f, "client_assertion_type");
  if (!grant) {
    oauth_error(out, 400, "invalid_request", 900144,
                "The request body must contain the following parameter: 'grant_type'.");
    goto out;
  }
  if (strcmp(grant, "client_credentials") != 0) {
    oauth_error(out, 400, "unsupported_grant_type", 70003,
                "The app requested an unsupported grant type.");
    goto out;
  }
  if (!client_id) {
    oauth_error(out, 400, "invalid_request", 900144,
                "The request body must contain the following parameter: 'client_id'.");
    goto out;
  }
  if (strcmp(client_id, emu_srv->other_client_id) == 0) {
    /* The second app: its secret only, and its tokens name it. */
    size_t a = secret ? strlen(secret) : 0, b = strlen(emu_srv->other_client_secret);
    if (!scope_resource(scope)) {
      oauth_error(out, 400, "invalid_scope", 70011,
                  "The provided request must include a 'scope' input parameter. The provided value "
                  "for the input parameter 'scope' is not valid.");
      goto out;
    }
    if (!secret || a != b || CRYPTO_memcmp(secret, emu_srv->other_client_secret, a) != 0) {
      oauth_error(out, 401, "invalid_client", 7000215,
                  "Invalid client secret provided. Ensure the secret being sent in the request is "
                  "the client secret value, not the client secret ID, for a secret added to app.");
      goto out;
    }
    app = emu_srv->other_client_id;
    resource = scope_resource(scope);
    goto issue;
  }
  if (strcmp(client_id, emu_srv->client_id) != 0) {
    oauth_error(out, 400, "unauthorized_client", 700016,
                "Application was not found in the directory. This can happen if the application "
                "has not been installed by the administrator of the tenant.");
    goto out;
  }
  resource = scope_resource(scope);
  if (!resource) {
    oauth_error(out, 400, "invalid_scope", 70011,
                "The provided request must include a 'scope' input parameter. The provided value "
                "for the input parameter 'scope' is not valid.");
    goto out;
  }
  if (secret) {
    size_t a = strlen(secret), b = strlen(emu_srv->client_secret);
    if (__atomic_load_n(&emu_srv->client_secret_revoked, __ATOMIC_RELAXED) || a != b ||
        CRYPTO_memcmp(secret, emu_srv->client_secret, a) != 0) {
      oauth_error(out, 401, "invalid_client", 7000215,
                  "Invalid client secret provided. Ensure the secret being sent in the request is "
                  "the client secret value, not the client secret ID, for a secret added to app.");
      goto out;
    }
  } else if (assertion) {
    if (!atype || strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") != 0) {
      oauth_error(out, 400, "invalid_request", 50027,
                  "Invalid client_assertion_type; expected "
                  "urn:ietf:params:oauth:client-assertion-type:jwt-bearer.");
      goto out;
    }
    if (check_assertion(assertion, client_id, out) != 0)
      goto out;
  } else {
    oauth_error(out, 401, "invalid_client", 7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.");
    goto out;
  }
issue:
  tok = access_token_new(resource, app, app, &exp);
  cJSON *j = cJSON_CreateObject();
  int ttl = (int)(exp - emu_now());
  if (!tok || !j || !cJSON_AddStringToObject(j, "token_type", "Bearer") ||
      !cJSON_AddNumberToObject(j, "expires_in", ttl) ||
      !cJSON_AddNumberToObject(j, "ext_expires_in", ttl) ||
      !cJSON_AddStringToObject(j, "access_token", tok)) {
    cJSON_Delete(j);
    out->status = 500;
    goto out;
  }
  out->status = 200;
  out->json = j;
out:
  if (tok) {
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
  }
  form_free(&f);
}

static cJSON *openid_config_new(const char *tenant)
{
  const char *a = emu_srv->authority_host;
  cJSON *j = cJSON_CreateObject();
  char *te = emu_strdup_printf("%s/%s/oauth2/v2.0/token", a, tenant);
  char *ae = emu_strdup_printf("%s/%s/oauth2/v2.0/authorize", a, tenant);
  char *iss = emu_strdup_printf("%s/%s/v2.0", a, tenant);
  char *jw = emu_strdup_printf("%s/%s/discovery/v2.0/keys", a, tenant);
  char *de = emu_strdup_printf("%s/%s/oauth2/v2.0/devicecode", a, tenant);
  char *eo = emu_strdup_printf("%s/%s/oauth2/v2.0/logout", a, tenant);
  if (!j || !te || !ae || !iss || !jw || !de || !eo ||
      !cJSON_AddStringToObject(j, "token_endpoint", te) ||
      !cJSON_AddStringToObject(j, "authorization_endpoint", ae) ||
      !cJSON_AddStringToObject(j, "device_authorization_endpoint", de) ||
      !cJSON_AddStringToObject(j, "end_session_endpoint", eo) ||
      !cJSON_AddStringToObject(j, "issuer", iss) || !cJSON_AddStringToObject(j, "jwks_uri", jw) ||
      !cJSON_AddStringToObject(j, "tenant_region_scope", "NA")) {
    cJSON_Delete(j);
    j = NULL;
  } else {
    cJSON *a1 = cJSON_AddArrayToObject(j, "token_endpoint_auth_methods_supported");
    cJSON_AddItemToArray(a1, cJSON_CreateString("client_secret_post"));
    cJSON_AddItemToArray(a1, cJSON_CreateString("private_key_jwt"));
    cJSON *a2 = cJSON_AddArrayToObject(j, "response_types_supported");
    cJSON_AddItemToArray(a2, cJSON_CreateString("code"));
    cJSON_AddItemToArray(a2, cJSON_CreateString("token"));
  }
  free(te);
  free(ae);
  free(iss);
  free(jw);
  free(de);
  free(eo);
  return j;
}

/* MSAL's instance discovery, answered with the emulator as the only alias. */
static cJSON *instance_discovery_new(void)
{
  const char *hostport = emu_srv->authority_host + strlen("https://");
  char *tde = emu_strdup_printf("%s/%s/v2.0/.well-known/openid-configuration",
                                emu_srv->authority_host, emu_srv->tenant_id);
  cJSON *j = cJSON_CreateObject(), *md, *m, *al;
  if (!j || !tde || !cJSON_AddStringToObject(j, "tenant_discovery_endpoint", tde) ||
      !cJSON_AddStringToObject(j, "api-version", "1.1") ||
      !(md = cJSON_AddArrayToObject(j, "metadata")) || !(m = cJSON_CreateObject())) {
    cJSON_Delete(j);
    free(tde);
    return NULL;
  }
  cJSON_AddItemToArray(md, m);
  cJSON_AddStringToObject(m, "preferred_network", hostport);
  cJSON_AddStringToObject(m, "preferred_cache", hostport);
  al = cJSON_AddArrayToObject(m, "aliases");
  cJSON_AddItemToArray(al, cJSON_CreateString(hostport));
  free(tde);
  return j;
}

static void control(const char *method, const char *path, const char *body, size_t body_len,
                    struct entra_out *out)
{
  char err[256] = "";
  out->op = NULL;
  if (strcmp(path, "/control/stats/reset") == 0 && strcmp(method, "POST") == 0) {
    stats_reset();
    out->status = 200;
    out->json = cJSON_CreateObject();
    return;
  }
  if (strcmp(path, "/control/faults") == 0 && strcmp(method, "GET") == 0) {
    out->status = 200;
    out->json = faults_json_new();
    return;
  }
  if (strcmp(path, "/control/faults") == 0 && strcmp(method, "POST") == 0) {
    cJSON *j = body_len ? emu_json_parse(body, body_len) : NULL;
    int rc;
    if (j && !cJSON_IsString(j) && !cJSON_IsObject(j) && !cJSON_IsArray(j)) {
      cJSON_Delete(j); /* "500" is a spec, not a JSON number */
      j = NULL;
    }
    if (j)
      rc = faults_set_json(j, err, sizeof(err));
    else {
      char *text = strndup(body ? body : "", body_len);
      rc = text ? faults_set(text, err, sizeof(err)) : -1;
      free(text);
    }
    cJSON_Delete(j);
    out->status = rc == 0 ? 200 : 400;
    out->json = rc == 0 ? faults_json_new() : cJSON_CreateObject();
    if (rc != 0 && out->json)
      cJSON_AddStringToObject(out->json, "error", err[0] ? err : "invalid fault spec");
    return;
  }
  if (strcmp(path, "/control/config") == 0 && strcmp(method, "POST") == 0) {
    cJSON *j = emu_json_parse(body ? body : "", body_len);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delete_delay_ms");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token_ttl");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "client_secret_revoked");
    const char *at =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "attestation_tamper"));
    static const char *const tampers[] = {"none", "chain", "blob", "key"};
    int tamper = -1;
    for (int i = 0; at && i < 4; i++)
      if (!strcmp(at, tampers[i]))
        tamper = i;
    bool ok = cJSON_IsObject(j) &&
              (!d || (cJSON_IsNumber(d) && d->valuedouble >= 0 && d->valuedouble <= 600000)) &&
              (!t || (cJSON_IsNumber(t) && t->valuedouble >= 1 && t->valuedouble <= 86400)) &&
              (!r || cJSON_IsBool(r)) &&
              (!cJSON_GetObjectItemCaseSensitive(j, "attestation_tamper") || tamper >= 0);
    if (ok) {
      /* single aligned stores; readers tolerate either value */
      if (d)
        __atomic_store_n(&emu_srv->delete_delay_ms, (int64_t)d->valuedouble, __ATOMIC_RELAXED);
      if (t)
        __atomic_store_n(&emu_srv->token_ttl, (int)t->valuedouble, __ATOMIC_RELAXED);
      if (r)
        __atomic_store_n(&emu_srv->client_secret_revoked, cJSON_IsTrue(r), __ATOMIC_RELAXED);
      if (tamper >= 0)
        emu_attest_set_tamper((enum emu_attest_tamper)tamper);
    }
    cJSON_Delete(j);
    out->status = ok ? 200 : 400;
    out->json = cJSON_CreateObject();
    if (out->json) {
      cJSON_AddNumberToObject(out->json, "delete_delay_ms", (double)emu_srv->delete_delay_ms);
      cJSON_AddNumberToObject(out->json, "token_ttl", emu_srv->token_ttl);
      cJSON_AddBoolToObject(out->json, "client_secret_revoked",
                            __atomic_load_n(&emu_srv->client_secret_revoked, __ATOMIC_RELAXED));
      cJSON_AddStringToObject(out->json, "attestation_tamper", tampers[emu_attest_get_tamper()]);
      if (!ok)
        cJSON_AddStringToObject(out->json, "error",
                                "expected {\"delete_delay_ms\":0..600000,\"token_ttl\":1..86400,"
                                "\"client_secret_revoked\":true|false,"
                                "\"attestation_tamper\":\"none|chain|blob|key\"}");
    }
    return;
  }
  out->status = 404;
  out->json = cJSON_CreateObject();
  if (out->json)
    cJSON_AddStringToObject(out->json, "error", "unknown control endpoint");
}

static void mi_error(struct entra_out *out, unsigned status, const char *error, const char *desc)
{
  out->status = status;
  out->json = cJSON_CreateObject();
  if (out->json) {
    cJSON_AddStringToObject(out->json, "error", error);
    cJSON_AddStringToObject(out->json, "error_description", desc);
  }
}

/* IMDS and App Service (2019-08-01) token endpoints on the plain-HTTP listener. */
static void identity(const char *method, const char *path, const char *query,
                     const char *hdr_metadata, const char *hdr_identity, struct entra_out *out)
{
  struct form q = {0};
  const char *res, *ver;
  char *tok = NULL, num[32];
  int64_t exp = 0;
  bool imds = strcmp(path, "/metadata/identity/oauth2/token") == 0;
  bool appsvc = strcmp(path, "/msi/token") == 0;
  if (!imds && !appsvc) {
    mi_error(out, 404, "not_found", "Unknown managed identity endpoint.");
    return;
  }
  out->op = imds ? "imds" : "appservice";
  if (strcmp(method, "GET") != 0) {
    mi_error(out, 405, "invalid_request", "Only GET is supported.");
    return;
  }
  if (form_parse(query ? query : "", query ? strlen(query) : 0, &q) != 0) {
    mi_error(out, 400, "invalid_request", "Malformed query string.");
    goto out;
  }
  ver = form_get(&q, "api-version");
  res = mi_resource(form_get(&q, "resource"));
  if (imds) {
    if (!hdr_metadata || strcasecmp(hdr_metadata, "true") != 0) {
      mi_error(out, 400, "invalid_request", "Required metadata header not specified");
      goto out;
    }
    if (!ver || strcmp(ver, "2018-02-01") != 0) {
      mi_error(out, 400, "invalid_request",
               "Invalid or missing api-version (expected 2018-02-01).");
      goto out;
    }
  } else {
    size_t a = hdr_identity ? strlen(hdr_identity) : 0, b = strlen(emu_srv->identity_header);
    if (!hdr_identity || a != b || CRYPTO_memcmp(hdr_identity, emu_srv->identity_header, a) != 0) {
      mi_error(out, 401, "invalid_request", "Missing or invalid X-IDENTITY-HEADER.");
      goto out;
    }
    if (!ver || strcmp(ver, "2019-08-01") != 0) {
      mi_error(out, 400, "invalid_request",
               "Invalid or missing api-version (expected 2019-08-01).");
      goto out;
    }
  }
  if (!res) {
    mi_error(out, 400, "invalid_resource",
             "AADSTS500011: The resource principal was not found in the tenant.");
    goto out;
  }
  tok = access_token_new(res, emu_srv->client_id, emu_srv->client_id, &exp);
  cJSON *j = cJSON_CreateObject();
  if (!tok || !j || !cJSON_AddStringToObject(j, "access_token", tok)) {
    cJSON_Delete(j);
    out->status = 500;
    goto out;
  }
  if (imds) {
    cJSON_AddStringToObject(j, "refresh_token", "");
    snprintf(num, sizeof(num), "%lld", (long long)(exp - emu_now()));
    cJSON_AddStringToObject(j, "expires_in", num);
    snprintf(num, sizeof(num), "%lld", (long long)exp);
    cJSON_AddStringToObject(j, "expires_on", num);
    snprintf(num, sizeof(num), "%lld", (long long)(emu_now() - 300));
    cJSON_AddStringToObject(j, "not_before", num);
    cJSON_AddStringToObject(j, "resource", res);
    cJSON_AddStringToObject(j, "token_type", "Bearer");
  } else {
    snprintf(num, sizeof(num), "%lld", (long long)exp);
    cJSON_AddStringToObject(j, "expires_on", num);
    cJSON_AddStringToObject(j, "resource", res);
    cJSON_AddStringToObject(j, "token_type", "Bearer");
    cJSON_AddStringToObject(j, "client_id", emu_srv->client_id);
  }
  out->status = 200;
  out->json = j;
out:
  if (tok) {
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
  }
  form_free(&q);
}

static cJSON *jwks_new(void)
{
  BIGNUM *n = NULL, *e = NULL;
  unsigned char nb[1024], eb[16];
  int nl, el;
  cJSON *j = NULL, *keys, *k;
  char *n64 = NULL, *e64 = NULL;
  if (!EVP_PKEY_get_bn_param(emu_srv->token_key, "n", &n) ||
      !EVP_PKEY_get_bn_param(emu_srv->token_key, "e", &e))
    goto out;
  nl = BN_bn2bin(n, nb);
  el = BN_bn2bin(e, eb);
  n64 = emu_b64url_encode(nb, (size_t)nl);
  e64 = emu_b64url_encode(eb, (size_t)el);
  j = cJSON_CreateObject();
  if (!n64 || !e64 || !j || !(keys = cJSON_AddArrayToObject(j, "keys")) ||
      !(k = cJSON_CreateObject())) {
    cJSON_Delete(j);
    j = NULL;
    goto out;
  }
  cJSON_AddItemToArray(keys, k);
  cJSON_AddStringToObject(k, "kty", "RSA");
  cJSON_AddStringToObject(k, "use", "sig");
  cJSON_AddStringToObject(k, "kid", "akv-emulator-token-key");
  cJSON_AddStringToObject(k, "n", n64);
  cJSON_AddStringToObject(k, "e", e64);
out:
  BN_free(n);
  BN_free(e);
  free(n64);
  free(e64);
  return j;
}

void entra_handle(const char *method, const char *path, const char *query, const char *body,
                  size_t body_len, const char *hdr_metadata, const char *hdr_identity,
                  bool identity_listener, struct entra_out *out)
{
  char tenant[128];
  const char *rest;
  out->status = 404;
  out->json = NULL;
  out->op = NULL;
  if (identity_listener) {
    identity(method, path, query, hdr_metadata, hdr_identity, out);
    return;
  }
  if (strcmp(path, "/stats") == 0 && strcmp(method, "GET") == 0) {
    out->status = 200;
    out->json = stats_json_new();
    return;
  }
  if (strncmp(path, "/control/", 9) == 0) {
    control(method, path, body, body_len, out);
    return;
  }
  if (strcmp(path, "/common/discovery/instance") == 0 ||
      strcmp(path, "/organizations/discovery/instance") == 0) {
    out->op = "instance-discovery";
    out->status = 200;
    out->json = instance_discovery_new();
    return;
  }
  /* /{tenant}/... */
  rest = path[0] == '/' ? strchr(path + 1, '/') : NULL;
  if (!rest || (size_t)(rest - path - 1) >= sizeof(tenant)) {
    oauth_error(out, 404, "invalid_request", 90002, "Unknown endpoint.");
    return;
  }
  memcpy(tenant, path + 1, (size_t)(rest - path - 1));
  tenant[rest - path - 1] = '\0';
  bool known = strcmp(tenant, emu_srv->tenant_id) == 0;
  bool generic = strcmp(tenant, "common") == 0 || strcmp(tenant, "organizations") == 0;
  if (strcmp(rest, "/v2.0/.well-known/openid-configuration") == 0 && strcmp(method, "GET") == 0 &&
      (known || generic)) {
    out->op = "openid-configuration";
    out->status = 200;
    out->json = openid_config_new(tenant);
    return;
  }
  if (strcmp(rest, "/discovery/v2.0/keys") == 0 && strcmp(method, "GET") == 0) {
    out->op = "jwks";
    out->status = 200;
    out->json = jwks_new();
    return;
  }
  if (strcmp(rest, "/oauth2/v2.0/token") == 0) {
    if (strcmp(method, "POST") != 0) {
      oauth_error(out, 405, "invalid_request", 900561, "The endpoint only accepts POST requests.");
      return;
    }
    if (!known) {
      out->op = "token";
      oauth_error(out, 400, "invalid_request", 90002,
                  "Tenant not found. Check to make sure you have the correct tenant ID.");
      return;
    }
    token_endpoint(body, body_len, query, out);
    return;
  }
  oauth_error(out, 404, "invalid_request", 90002, "Unknown endpoint.");
}

int entra_check_bearer(const struct emu_vault *vault, const char *authz, const char **why)
{
  cJSON *claims = NULL;
  const char *err = NULL;
  int rc = -1;
  const char *want = vault->kind == EMU_KIND_MHSM ? MHSM_RESOURCE : VAULT_RESOURCE;
  *why = NULL;
  if (!authz || strncasecmp(authz, "Bearer ", 7) != 0) {
    *why = "missing";
    return -1;
  }
  claims = jwt_verify_new(authz + 7, emu_srv->token_key, false, NULL, &err);
  if (!claims) {
    *why = "AKV10022: Invalid token: the signature could not be validated.";
    goto out;
  }
  const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
  if (!cJSON_IsNumber(exp) || exp->valuedouble <= (double)emu_now() || faults_token_expired()) {
    *why = "AKV10013: Invalid token: the token is expired.";
    goto out;
  }
  if (faults_token_revoke())
    __atomic_store_n(&revoked_seq, __atomic_load_n(&token_seq, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
  const cJSON *seq = cJSON_GetObjectItemCaseSensitive(claims, "emu_seq");
  if (!cJSON_IsNumber(seq) ||
      seq->valuedouble <= (double)__atomic_load_n(&revoked_seq, __ATOMIC_ACQUIRE)) {
    *why = "AKV10013: Invalid token: the token is expired.";
    goto out;
  }
  const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
  if (!cJSON_IsString(aud) || (strcmp(aud->valuestring, want) != 0 &&
                               !(strncmp(aud->valuestring, want, strlen(want)) == 0 &&
                                 strcmp(aud->valuestring + strlen(want), "/") == 0))) {
    *why = "AKV10022: Invalid audience.";
    goto out;
  }
  if (!claim_is(claims, "tid", emu_srv->tenant_id)) {
    *why = "AKV10032: Invalid issuer.";
    goto out;
  }
  rc = 0;
out:
  cJSON_Delete(claims);
  return rc;
}

char *entra_federated_token_new(void)
{
  cJSON *c = cJSON_CreateObject();
  char *tok = NULL;
  int64_t now = emu_now();
  char *iss = emu_strdup_printf("%s/federation", emu_srv->authority_host);
  if (c && iss && cJSON_AddStringToObject(c, "aud", FEDERATED_AUD) &&
      cJSON_AddStringToObject(c, "iss", iss) &&
      cJSON_AddStringToObject(c, "sub", "system:serviceaccount:default:akv-pkcs11") &&
      cJSON_AddNumberToObject(c, "iat", (double)now) &&
      cJSON_AddNumberToObject(c, "nbf", (double)now - 60) &&
      cJSON_AddNumberToObject(c, "exp", (double)(now + 7 * 86400)))
    tok = jwt_sign_new(emu_srv->token_key, c, "akv-emulator-token-key");
  cJSON_Delete(c);
  free(iss);
  return tok;
}
