/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11 doctor: explains, per slot, why keys do or do not show up.
 *
 * Two passes. The backend pass uses the Key Vault client the module is built on (src/kv) with
 * the same configuration: it gets a token from the slot's credential (reporting every source the
 * chain tried, from the backend's own log lines), decodes the token's claims locally to show who
 * the module is, then lists and gets the keys and reads their key_ops. The module pass loads
 * akv-pkcs11.so like any consumer and reads the objects it exposes with their PKCS#11 URIs, which
 * proves the module sees what the vault holds.
 *
 * "Without side effects": doctor only reads (token, list, get). It never reads secret values and
 * never performs a cryptographic operation, because Key Vault audits those as key use; sign,
 * decrypt and wrap are reported from the key's key_ops. --probe-sign adds one real sign of an
 * all-zero digest per sign-capable key: no state changes, but it is audited by the vault.
 *
 * The report is one cJSON document; the text form is rendered from it, so both say the same. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "kv/auth.h"
#include "kv/kv.h"
#include "modview.h"
#include "tool.h"
#include "util/b64.h"
#include "util/config.h"
#include "util/log.h"

#define LOG_READ_MAX (256 * 1024) /* what one step may log before doctor stops collecting */
#define MAX_KEYS 10000

/* ---- capturing the backend's log lines ------------------------------------------------------- */

/* The backend logs through akv_log; doctor points it at an unlinked temporary file and collects
 * the lines each step wrote, so the report quotes the module's own diagnostics. */
struct logcap {
  int rd;
};

/* A mkstemp template in $TMPDIR (or /tmp). */
static void temp_template(char *buf, size_t len, const char *stem)
{
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp || strlen(tmp) + strlen(stem) + 16 > len)
    tmp = "/tmp";
  snprintf(buf, len, "%s/%s.XXXXXX", tmp, stem);
}

static int logcap_open(struct logcap *lc)
{
  char buf[4096];
  int fd, had_debug = getenv("AKV_PKCS11_DEBUG") != NULL;
  lc->rd = -1;
  temp_template(buf, sizeof(buf), "akv-p11-log");
  fd = mkstemp(buf);
  if (fd < 0)
    return -1;
  close(fd);
  /* Debug lines of the auth category name every source a credential chain tried; the variable
   * is read at akv_log_init and removed again so the module loaded later keeps its own level. */
  if (!had_debug)
    setenv("AKV_PKCS11_DEBUG", "auth", 1);
  akv_log_init(AKV_LOG_INFO, buf);
  if (!had_debug)
    unsetenv("AKV_PKCS11_DEBUG");
  lc->rd = open(buf, O_RDONLY | O_CLOEXEC);
  unlink(buf);
  return lc->rd < 0 ? -1 : 0;
}

/* Appends the lines written since the last call to arr (without the timestamp/pid prefix). */
static void logcap_collect(struct logcap *lc, cJSON *arr)
{
  char *data = NULL, *line, *next;
  size_t len = 0;
  ssize_t r;
  if (lc->rd < 0)
    return;
  data = malloc(LOG_READ_MAX + 1);
  if (!data)
    return;
  while (len < LOG_READ_MAX) {
    r = read(lc->rd, data + len, LOG_READ_MAX - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  data[len] = '\0';
  /* Skip whatever did not fit, so the next step starts with its own lines. */
  if (len == LOG_READ_MAX)
    lseek(lc->rd, 0, SEEK_END);
  for (line = data; line && *line; line = next) {
    char *p;
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    p = strstr(line, "] ");
    if (arr && *line)
      cJSON_AddItemToArray(arr, cJSON_CreateString(p ? p + 2 : line));
  }
  free(data);
}

static void logcap_close(struct logcap *lc)
{
  akv_log_close();
  if (lc->rd >= 0)
    close(lc->rd);
  lc->rd = -1;
}

/* The module logs to stderr (unless its config names a file): doctor moves fd 2 to a temporary
 * file while it calls the module, then quotes those lines too. */
struct errcap {
  int saved, file;
};

static void errcap_begin(struct errcap *ec)
{
  char path[4096];
  temp_template(path, sizeof(path), "akv-p11-err");
  ec->saved = -1;
  ec->file = mkstemp(path);
  if (ec->file < 0)
    return;
  unlink(path);
  fflush(stderr);
  ec->saved = dup(STDERR_FILENO);
  if (ec->saved < 0 || dup2(ec->file, STDERR_FILENO) < 0) {
    close(ec->file);
    ec->file = -1;
  }
}

static void errcap_end(struct errcap *ec, cJSON *arr)
{
  struct logcap lc;
  if (ec->file < 0)
    return;
  fflush(stderr);
  if (ec->saved >= 0) {
    dup2(ec->saved, STDERR_FILENO);
    close(ec->saved);
  }
  lseek(ec->file, 0, SEEK_SET);
  lc.rd = ec->file;
  logcap_collect(&lc, arr);
  close(ec->file);
  ec->file = -1;
}

/* ---- report helpers ------------------------------------------------------------------------- */

struct report {
  cJSON *root;
  cJSON *problems; /* array of {slot, key, code, message} */
  cJSON *notes;
};

/* Appends {slot, key, code, message} to arr; slot, key and code may be NULL. */
static void report_vadd(cJSON *arr, const char *slot, const char *key, const char *code,
                        const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void report_vadd(cJSON *arr, const char *slot, const char *key, const char *code,
                        const char *fmt, va_list ap)
{
  char msg[2048];
  cJSON *p = cJSON_CreateObject();
  if (!p)
    return;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  if (slot)
    cJSON_AddStringToObject(p, "slot", slot);
  if (key)
    cJSON_AddStringToObject(p, "key", key);
  if (code)
    cJSON_AddStringToObject(p, "code", code);
  cJSON_AddStringToObject(p, "message", msg);
  cJSON_AddItemToArray(arr, p);
}

/* A problem makes doctor exit 1. */
static void problem(struct report *r, const char *slot, const char *key, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void problem(struct report *r, const char *slot, const char *key, const char *code,
                    const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  report_vadd(r->problems, slot, key, code, fmt, ap);
  va_end(ap);
}

/* A note is information (a disabled key, a truncated check), not a failure. */
static void note(struct report *r, const char *slot, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(struct report *r, const char *slot, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  report_vadd(r->notes, slot, NULL, NULL, fmt, ap);
  va_end(ap);
}

/* Progress: in text mode each check is announced on stderr as it ends, one flushed line each, so
 * a user sees where doctor is while a slow vault answers (the report on stdout follows at the
 * end). Off for --json. */
static int progress_on;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
  va_list ap;
  if (!progress_on)
    return;
  va_start(ap, fmt);
  fputs("doctor: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fflush(stderr);
  va_end(ap);
}

/* A slot whose vault did not answer within deadline_ms is not asked again: every further check
 * would wait as long (docs/troubleshooting.md, "akv-p11 doctor"). */
static void slot_timed_out(struct report *r, const struct akv_slot_config *s, const char *step,
                           long deadline_ms)
{
  problem(r, s->label, NULL, "SLOT_TIMEOUT",
          "slot %s: %s got no answer from %s within deadline_ms (%ld ms); the slot's remaining "
          "checks are skipped; fix: check that the URL is the vault's and that this host reaches "
          "it (firewall, proxy, private endpoint DNS)",
          s->label, step, s->url, deadline_ms > 0 ? deadline_ms : 30000);
  progress("slot %s: timed out, skipping its remaining checks", s->label);
}

/* Last line of a log array (the most specific error), or "" */
static const char *last_line(const cJSON *arr)
{
  const cJSON *it = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
  return cJSON_IsString(it) ? it->valuestring : "";
}

/* Lines of a log array that are errors, joined with "; " into buf. */
static const char *error_lines(const cJSON *arr, char *buf, size_t len)
{
  const cJSON *it;
  size_t off = 0;
  buf[0] = '\0';
  cJSON_ArrayForEach(it, arr)
  {
    if (!cJSON_IsString(it) || strncmp(it->valuestring, "ERROR ", 6) != 0)
      continue;
    int n = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", it->valuestring + 6);
    if (n < 0 || (size_t)n >= len - off)
      break;
    off += (size_t)n;
  }
  return off ? buf : last_line(arr);
}

/* Outcome of a read: "ok", "denied" (403), "unauthorized" (401), "not-found", "failed". */
static const char *read_outcome(kv_rc rc)
{
  switch (rc) {
  case KV_OK:
    return "ok";
  case KV_E_FORBIDDEN:
    return "denied";
  case KV_E_UNAUTHORIZED:
  case KV_E_AUTH:
    return "unauthorized";
  case KV_E_NOT_FOUND:
    return "not-found";
  default:
    return "failed";
  }
}

/* http_status: the step's final HTTP status (kv.h), 0 when no response arrived. */
static cJSON *step_result(kv_rc rc, long http_status, cJSON *log)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddStringToObject(o, "result", read_outcome(rc));
  cJSON_AddStringToObject(o, "rc", kv_rc_str(rc));
  cJSON_AddNumberToObject(o, "http_status", (double)http_status);
  if (log && cJSON_GetArraySize(log) > 0)
    cJSON_AddItemToObject(o, "log", cJSON_Duplicate(log, 1));
  return o;
}

/* ---- token identity ------------------------------------------------------------------------- */

/* Decodes the JWT payload locally (no signature check: this is our own token, only read for
 * display) into {tenant_id, app_id, object_id, ...}. The token itself is never stored. */
static cJSON *token_identity(const char *tok)
{
  const char *p1 = strchr(tok, '.'), *p2;
  unsigned char *payload = NULL;
  size_t plen = 0;
  cJSON *claims = NULL, *id = NULL;
  static const struct {
    const char *claim, *field;
  } map[] = {
      {"tid", "tenant_id"},    {"appid", "app_id"},        {"azp", "app_id"},
      {"oid", "object_id"},    {"idtyp", "identity_type"}, {"upn", "user"},
      {"unique_name", "user"}, {"aud", "audience"},        {"iss", "issuer"},
  };
  if (!p1 || !(p2 = strchr(p1 + 1, '.')))
    goto out;
  if (akv_b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), &payload, &plen) != 0)
    goto out;
  claims = cJSON_ParseWithLength((const char *)payload, plen);
  if (!claims)
    goto out;
  id = cJSON_CreateObject();
  if (!id)
    goto out;
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(claims, map[i].claim);
    if (cJSON_IsString(c) && !cJSON_GetObjectItemCaseSensitive(id, map[i].field))
      cJSON_AddStringToObject(id, map[i].field, c->valuestring);
  }
  {
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
    if (cJSON_IsNumber(exp))
      cJSON_AddNumberToObject(id, "expires_in_s", exp->valuedouble - (double)time(NULL));
  }
out:
  if (payload) {
    OPENSSL_cleanse(payload, plen);
    free(payload);
  }
  cJSON_Delete(claims);
  if (!id) {
    id = cJSON_CreateObject();
    if (id)
      cJSON_AddStringToObject(id, "error", "the access token is not a JWT (claims not readable)");
  }
  return id;
}

/* ---- slot checks ---------------------------------------------------------------------------- */

/* Token resource of a vault, as kv_client_new chooses it. */
static const char *slot_resource(const struct akv_slot_config *s)
{
  CURLU *u = curl_url();
  char *host = NULL;
  const char *res = NULL;
  enum akv_vault_kind kind;
  if (u && curl_url_set(u, CURLUPART_URL, s->url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    akv_azure_vault_host(host, &res, &kind);
  curl_free(host);
  curl_url_cleanup(u);
  if (!res)
    res = s->kind == AKV_VAULT_MHSM ? "https://managedhsm.azure.net" : "https://vault.azure.net";
  return res;
}

static const char *kty_name(const struct kv_key *k)
{
  switch (k->kty) {
  case KV_KTY_RSA:
    return k->hsm ? "RSA-HSM" : "RSA";
  case KV_KTY_EC:
    return k->hsm ? "EC-HSM" : "EC";
  case KV_KTY_OCT:
    return k->hsm ? "oct-HSM" : "oct";
  default:
    return "?";
  }
}

static void add_key_ops(cJSON *o, unsigned ops)
{
  cJSON *arr = cJSON_AddArrayToObject(o, "key_ops");
  for (unsigned bit = 1; arr && bit && kv_key_op_name(bit); bit <<= 1)
    if (ops & bit)
      cJSON_AddItemToArray(arr, cJSON_CreateString(kv_key_op_name(bit)));
}

/* JWA algorithm and digest length for a probe signature, NULL when the key cannot sign. */
static const char *probe_alg(const struct kv_key *k, size_t *dlen)
{
  *dlen = 32;
  if (k->kty == KV_KTY_RSA)
    return "RS256";
  if (k->kty != KV_KTY_EC)
    return NULL;
  switch (k->crv) {
  case KV_CRV_P256:
    return "ES256";
  case KV_CRV_P256K:
    return "ES256K";
  case KV_CRV_P384:
    *dlen = 48;
    return "ES384";
  case KV_CRV_P521:
    *dlen = 64;
    return "ES512";
  default:
    return NULL;
  }
}

/* permission of one operation from key_ops: "allowed", "not-allowed" or "not-applicable". */
static const char *perm(const struct kv_key *k, unsigned bit, int applicable)
{
  if (!applicable)
    return "not-applicable";
  return (k->key_ops & bit) ? "allowed" : "not-allowed";
}

static kv_rc check_key(struct report *r, struct logcap *lc, struct kv_client *cl,
                       const struct akv_slot_config *s, const char *name, int probe, cJSON *out)
{
  struct kv_key *k = NULL;
  cJSON *log = cJSON_CreateArray(), *perms, *item;
  const char *sign;
  long st = 0;
  kv_rc rc;
  int rsa, ec, oct;
  rc = kv_get_key(cl, name, NULL, &k, &st);
  logcap_collect(lc, log);
  progress("slot %s: key %s: get %s", s->label, name, read_outcome(rc));
  perms = cJSON_AddObjectToObject(out, "permissions");
  cJSON_AddItemToObject(perms, "get", step_result(rc, st, log));
  if (rc != KV_OK) {
    if (rc == KV_E_FORBIDDEN)
      problem(r, s->label, name, "GET_DENIED",
              "key %s: get denied (HTTP 403): the identity may list keys but not read this one, "
              "so the module leaves it out; fix: grant keys/get (role Key Vault Crypto User or "
              "Key Vault Reader, or the access policy's Get key permission)",
              name);
    else if (rc == KV_E_NOT_FOUND)
      problem(
          r, s->label, name, "KEY_NOT_FOUND", "key %s: not found in the vault (HTTP 404)%s", name,
          s->key_names ? ": fix the name in the slot's \"keys\" list" : " (deleted meanwhile?)");
    else if (rc != KV_E_TIMEOUT)
      problem(r, s->label, name, "GET_FAILED", "key %s: get failed (%s): %s", name, kv_rc_str(rc),
              last_line(log));
    goto out;
  }
  rsa = k->kty == KV_KTY_RSA;
  ec = k->kty == KV_KTY_EC;
  oct = k->kty == KV_KTY_OCT;
  cJSON_AddStringToObject(out, "kty", kty_name(k));
  if (rsa)
    cJSON_AddNumberToObject(out, "bits", (double)k->n_len * 8);
  if (ec)
    cJSON_AddStringToObject(out, "crv", kv_crv_name(k->crv));
  cJSON_AddStringToObject(out, "version", k->version ? k->version : "");
  cJSON_AddBoolToObject(out, "enabled", k->attrs.enabled);
  add_key_ops(out, k->key_ops);
  sign = perm(k, KV_OP_SIGN, rsa || ec);
  cJSON_AddStringToObject(perms, "sign", sign);
  cJSON_AddStringToObject(perms, "decrypt", perm(k, KV_OP_DECRYPT, rsa || oct));
  cJSON_AddStringToObject(perms, "wrap", perm(k, KV_OP_WRAP, rsa || oct));
  cJSON_AddStringToObject(perms, "unwrap", perm(k, KV_OP_UNWRAP, rsa || oct));
  if (!k->attrs.enabled)
    note(r, s->label, "key %s is disabled: hidden from PKCS#11 unless show_disabled is set", name);
  /* A private key object that can do nothing is the classic "my key is listed but signing
   * fails" case: say which operation is missing. */
  if ((rsa || ec) && !(k->key_ops & (KV_OP_SIGN | KV_OP_DECRYPT | KV_OP_UNWRAP))) {
    char ops[128] = "";
    cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(out, "key_ops"))
    {
      size_t l = strlen(ops);
      snprintf(ops + l, sizeof(ops) - l, "%s%s", l ? "," : "", o->valuestring);
    }
    problem(r, s->label, name, "SIGN_NOT_PERMITTED",
            "key %s (%s): key_ops [%s] do not permit sign%s, so its private key object has "
            "CKA_SIGN=FALSE and C_SignInit returns CKR_KEY_FUNCTION_NOT_PERMITTED; fix: "
            "az keyvault key set-attributes --vault-name VAULT --name %s --ops sign verify%s",
            name, kty_name(k), ops, rsa ? " (nor decrypt or unwrapKey)" : "", name,
            rsa ? " decrypt encrypt wrapKey unwrapKey" : "");
  }
  if (probe && strcmp(sign, "allowed") == 0 && k->attrs.enabled) {
    size_t dlen;
    const char *alg = probe_alg(k, &dlen);
    unsigned char digest[64] = {0};
    struct kv_bytes sig = {NULL, 0};
    while (cJSON_GetArraySize(log) > 0)
      cJSON_DeleteItemFromArray(log, 0);
    if (alg) {
      rc = kv_sign(cl, name, k->version, alg, digest, dlen, &sig, &st);
      logcap_collect(lc, log);
      progress("slot %s: key %s: probe signature %s", s->label, name, read_outcome(rc));
      kv_bytes_free(&sig);
      item = step_result(rc, st, log);
      cJSON_AddStringToObject(item, "alg", alg);
      cJSON_ReplaceItemInObjectCaseSensitive(perms, "sign",
                                             cJSON_CreateString(rc == KV_OK            ? "verified"
                                                                : rc == KV_E_FORBIDDEN ? "denied"
                                                                                       : "failed"));
      cJSON_AddItemToObject(out, "sign_probe", item);
      if (rc == KV_E_FORBIDDEN)
        problem(r, s->label, name, "SIGN_DENIED",
                "key %s: the probe signature was denied (HTTP 403) although key_ops allow "
                "sign: the identity lacks keys/sign; fix: grant Key Vault Crypto User (RBAC) or "
                "the Sign key permission (access policy)",
                name);
      else if (rc != KV_OK && rc != KV_E_TIMEOUT)
        problem(r, s->label, name, "SIGN_FAILED", "key %s: the probe signature failed (%s): %s",
                name, kv_rc_str(rc), last_line(log));
    }
  }
out:
  cJSON_Delete(log);
  kv_key_free(k);
  return rc;
}

/* A list step (keys, certificates, secrets). Returns the rc; on success *items holds the list. */
static kv_rc check_list(struct report *r, struct logcap *lc, struct kv_client *cl,
                        const struct akv_slot_config *s, const char *what, cJSON *slot,
                        struct kv_item_list *items)
{
  cJSON *log = cJSON_CreateArray(), *res;
  char key[64], buf[1024];
  long st = 0;
  kv_rc rc;
  memset(items, 0, sizeof(*items));
  if (strcmp(what, "keys") == 0)
    rc = kv_list_keys(cl, items, &st);
  else if (strcmp(what, "certificates") == 0)
    rc = kv_list_certificates(cl, items, &st);
  else
    rc = kv_list_secrets(cl, items, &st); /* names and attributes only: values are never read */
  logcap_collect(lc, log);
  progress("slot %s: list %s %s", s->label, what, read_outcome(rc));
  res = step_result(rc, st, log);
  if (rc == KV_OK)
    cJSON_AddNumberToObject(res, "count", (double)items->n);
  snprintf(key, sizeof(key), "list_%s", what);
  cJSON_AddItemToObject(slot, key, res);
  if (rc == KV_E_FORBIDDEN)
    problem(r, s->label, NULL, "LIST_DENIED",
            "slot %s: listing %s denied (HTTP 403): the module shows no %s; fix: grant %s/list "
            "(RBAC role Key Vault Crypto User/Reader, or the access policy's List permission), or "
            "name the keys in the slot's \"keys\" field (least-privilege mode, get only)",
            s->label, what, what, what);
  else if (rc != KV_OK && rc != KV_E_TIMEOUT)
    problem(r, s->label, NULL, "LIST_FAILED", "slot %s: listing %s failed (%s): %s", s->label, what,
            kv_rc_str(rc), error_lines(log, buf, sizeof(buf)));
  cJSON_Delete(log);
  return rc;
}

/* The credential's sources after the token request: which are configured, which one answers for
 * the slot (in use, or failed), and why each other one was skipped (docs/config.md, "Credential
 * chain"). */
static void add_sources(cJSON *cj, struct kv_cred *cred)
{
  static const char *const states[] = {"not_tried", "not_configured", "failed", "in_use"};
  struct kv_src_info src[8];
  size_t n = kv_cred_sources(cred, src, 8);
  const char *answering = NULL;
  cJSON *arr = cJSON_AddArrayToObject(cj, "sources");
  char buf[512];
  for (size_t i = 0; i < n; i++)
    if (src[i].state == KV_SRC_IN_USE || src[i].state == KV_SRC_FAILED)
      answering = src[i].desc;
  for (size_t i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", src[i].desc);
    if (src[i].configured < 0)
      cJSON_AddNullToObject(o, "configured");
    else
      cJSON_AddBoolToObject(o, "configured", src[i].configured);
    cJSON_AddStringToObject(o, "state", states[src[i].state]);
    if (src[i].state != KV_SRC_NOT_TRIED)
      snprintf(buf, sizeof(buf), "%s", src[i].note);
    else if (src[i].configured < 0)
      snprintf(buf, sizeof(buf), "not probed: %s answers for this slot",
               answering ? answering : "an earlier source");
    else if (src[i].configured)
      snprintf(buf, sizeof(buf), "configured%s%s%s, but %s answers for this slot",
               src[i].note[0] ? " (" : "", src[i].note, src[i].note[0] ? ")" : "",
               answering ? answering : "an earlier source");
    else
      snprintf(buf, sizeof(buf), "not configured: %s", src[i].note);
    cJSON_AddStringToObject(o, "detail", buf);
    cJSON_AddItemToArray(arr, o);
  }
}

/* Replica vaults (docs/reliability.md "Replica vaults"): whether each answers (a listing of its
 * keys, skipped in least-privilege mode) and the comparison of each checked key with the
 * primary's latest version, as the module makes it at a key's first use there. */
static void check_replicas(struct report *r, struct logcap *lc, struct kv_client *cl,
                           const struct akv_slot_config *s, const struct kv_item_list *keys,
                           cJSON *slot)
{
  size_t nk = s->key_names ? s->n_key_names : keys->n;
  cJSON *arr = cJSON_AddArrayToObject(slot, "replicas");
  char buf[1024];
  if (nk > MAX_KEYS)
    nk = MAX_KEYS;
  for (size_t i = 1; i < kv_client_n_vaults(cl); i++) {
    const char *url = kv_client_vault_url(cl, i);
    cJSON *o = cJSON_CreateObject(), *log = cJSON_CreateArray(), *ka;
    struct kv_item_list rl = {NULL, 0};
    size_t same = 0, differ = 0, missing = 0;
    kv_rc rc = KV_OK;
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddItemToArray(arr, o);
    if (!s->key_names)
      rc = kv_list_keys(kv_client_vault(cl, i), &rl, NULL);
    logcap_collect(lc, log);
    if (rc != KV_OK) {
      cJSON_AddStringToObject(o, "state", "failed");
      cJSON_AddStringToObject(o, "rc", kv_rc_str(rc));
      cJSON_AddItemToObject(o, "log", cJSON_Duplicate(log, 1));
      progress("slot %s: replica %s: list keys %s", s->label, url, read_outcome(rc));
      problem(r, s->label, NULL, "REPLICA_FAILED",
              "slot %s: replica %s does not answer a listing of its keys (%s): %s; the module "
              "serves its keys from the other vaults meanwhile",
              s->label, url, kv_rc_str(rc), error_lines(log, buf, sizeof(buf)));
      cJSON_Delete(log);
      continue;
    }
    if (!s->key_names)
      cJSON_AddNumberToObject(o, "keys_listed", (double)rl.n);
    kv_item_list_free(&rl);
    ka = cJSON_AddArrayToObject(o, "keys");
    for (size_t k = 0; k < nk; k++) {
      const char *name = s->key_names ? s->key_names[k] : kv_item_list_at(keys, k)->name;
      char ver[128], diff[160];
      cJSON *kj;
      if (!name || (s->key_filter && fnmatch(s->key_filter, name, 0) != 0))
        continue;
      ver[0] = '\0';
      rc = kv_replica_compare(cl, i, name, NULL, ver, sizeof(ver), diff, sizeof(diff));
      logcap_collect(lc, log);
      kj = cJSON_CreateObject();
      cJSON_AddStringToObject(kj, "name", name);
      cJSON_AddItemToArray(ka, kj);
      if (rc == KV_OK) {
        same++;
        cJSON_AddStringToObject(kj, "result", "same");
        cJSON_AddStringToObject(kj, "replica_version", ver);
      } else if (rc == KV_E_CONFLICT) {
        differ++;
        cJSON_AddStringToObject(kj, "result", "different");
        cJSON_AddStringToObject(kj, "difference", diff);
        problem(r, s->label, name, "REPLICA_KEY_DIFFERS",
                "slot %s: replica %s: key %s is not the primary's (%s): the module never uses "
                "this replica for it; fix: import the primary's key material into the replica "
                "under the same name",
                s->label, url, name, diff);
      } else if (rc == KV_E_UNSUPPORTED) {
        cJSON_AddStringToObject(kj, "result", "not_compared");
        cJSON_AddStringToObject(kj, "difference", diff);
      } else if (rc == KV_E_NOT_FOUND) {
        missing++;
        cJSON_AddStringToObject(kj, "result", "missing");
        problem(r, s->label, name, "REPLICA_KEY_MISSING",
                "slot %s: replica %s has no key %s (or the primary lost it): the primary serves "
                "it alone; fix: import the primary's key material into the replica under the "
                "same name",
                s->label, url, name);
      } else {
        cJSON_AddStringToObject(kj, "result", "error");
        cJSON_AddStringToObject(kj, "rc", kv_rc_str(rc));
        problem(r, s->label, name, "REPLICA_FAILED",
                "slot %s: replica %s: comparing key %s failed (%s): %s", s->label, url, name,
                kv_rc_str(rc), error_lines(log, buf, sizeof(buf)));
        if (rc == KV_E_TIMEOUT || rc == KV_E_NETWORK)
          break; /* every further key would wait as long */
      }
    }
    cJSON_AddStringToObject(o, "state", "reachable");
    cJSON_AddNumberToObject(o, "keys_same", (double)same);
    cJSON_AddNumberToObject(o, "keys_different", (double)differ);
    cJSON_AddNumberToObject(o, "keys_missing", (double)missing);
    progress("slot %s: replica %s: %zu key(s) the same, %zu different, %zu missing", s->label, url,
             same, differ, missing);
    cJSON_Delete(log);
  }
}

/* Backend pass of one slot; returns 1 when the credential worked (the module pass then reads it),
 * 2 when it worked but the vault then timed out (the module pass skips the slot), 0 otherwise. */
static int check_slot(struct report *r, struct logcap *lc, struct kv_http *http,
                      const struct akv_config *cfg, const struct akv_slot_config *s, int probe,
                      cJSON *slot)
{
  const struct akv_cred_config *cc = s->has_cred ? &s->cred : &cfg->cred;
  struct akv_cred_config own;
  const char *resource = slot_resource(s);
  struct kv_cred *cred = NULL;
  struct kv_client *cl = NULL;
  struct kv_client_opts co;
  struct kv_item_list keys, other;
  cJSON *cj = cJSON_AddObjectToObject(slot, "credential"), *log = cJSON_CreateArray(), *karr;
  char *tok = NULL, buf[1024];
  kv_rc rc;
  int ok = 0;
  memset(&keys, 0, sizeof(keys));
  memset(&other, 0, sizeof(other));
  cJSON_AddStringToObject(cj, "scope", s->has_cred ? "slot" : "global");
  cJSON_AddStringToObject(cj, "resource", resource);
  /* The source itself answers, never a token another process shared through the kernel keyring
   * (docs/usage.md): a revoked secret shows now, not when the shared token expires. */
  own = *cc;
  own.share_token = 0;
  rc = kv_cred_new(http, &own, &cred);
  logcap_collect(lc, log);
  if (rc != KV_OK) {
    cJSON_AddStringToObject(cj, "result", "invalid");
    cJSON_AddItemToObject(cj, "log", cJSON_Duplicate(log, 1));
    problem(r, s->label, NULL, "CREDENTIAL_INVALID",
            "slot %s: the credential cannot be built (%s): %s", s->label, kv_rc_str(rc),
            error_lines(log, buf, sizeof(buf)));
    goto out;
  }
  rc = kv_cred_token(cred, resource, NULL, 0, &tok);
  logcap_collect(lc, log);
  progress("slot %s: token for %s %s", s->label, resource, rc == KV_OK ? "ok" : kv_rc_str(rc));
  cJSON_AddStringToObject(cj, "source", kv_cred_describe(cred));
  add_sources(cj, cred);
  if (log && cJSON_GetArraySize(log) > 0)
    cJSON_AddItemToObject(cj, "log", cJSON_Duplicate(log, 1));
  if (rc != KV_OK) {
    cJSON_AddStringToObject(cj, "result", "failed");
    cJSON_AddStringToObject(cj, "rc", kv_rc_str(rc));
    problem(r, s->label, NULL, "CREDENTIAL_FAILED",
            "slot %s: no token for %s (%s): %s; every object of this slot is missing until this "
            "is fixed",
            s->label, resource, kv_rc_str(rc), error_lines(log, buf, sizeof(buf)));
    goto out;
  }
  cJSON_AddStringToObject(cj, "result", "ok");
  cJSON_AddItemToObject(cj, "identity", token_identity(tok));
  kv_secure_free(tok, 0);
  tok = NULL;
  ok = 1;

  memset(&co, 0, sizeof(co));
  co.url = s->url;
  co.api_version = cfg->api_version;
  co.kind = s->kind;
  rc = kv_client_new(http, cred, &co, &cl);
  if (rc == KV_OK)
    rc = kv_client_add_replicas(cl, (const char *const *)s->replicas, s->n_replicas, NULL);
  if (rc != KV_OK) {
    while (cJSON_GetArraySize(log) > 0)
      cJSON_DeleteItemFromArray(log, 0);
    logcap_collect(lc, log);
    problem(r, s->label, NULL, "VAULT_URL_INVALID", "slot %s: %s: %s", s->label, s->url,
            error_lines(log, buf, sizeof(buf)));
    goto out;
  }

  karr = cJSON_AddArrayToObject(slot, "keys");
  if (s->objects & AKV_OBJ_KEYS) {
    size_t n;
    if (s->key_names) {
      /* Least-privilege mode: the module never lists, so neither does doctor. */
      cJSON *l = cJSON_AddObjectToObject(slot, "list_keys");
      cJSON_AddStringToObject(l, "result", "skipped");
      cJSON_AddStringToObject(l, "reason", "keys named in the configuration: no list call");
      n = s->n_key_names;
    } else {
      rc = check_list(r, lc, cl, s, "keys", slot, &keys);
      if (rc == KV_E_TIMEOUT) {
        slot_timed_out(r, s, "listing keys", cfg->deadline_ms);
        ok = 2;
        goto out;
      }
      n = rc == KV_OK ? keys.n : 0;
    }
    if (n > MAX_KEYS) {
      note(r, s->label, "only the first %d of %zu keys are checked", MAX_KEYS, n);
      n = MAX_KEYS;
    }
    for (size_t i = 0; i < n; i++) {
      const char *name = s->key_names ? s->key_names[i] : kv_item_list_at(&keys, i)->name;
      cJSON *k;
      if (!name)
        continue;
      if (s->key_filter && fnmatch(s->key_filter, name, 0) != 0)
        continue;
      k = cJSON_CreateObject();
      cJSON_AddStringToObject(k, "name", name);
      rc = check_key(r, lc, cl, s, name, probe, k);
      cJSON_AddItemToArray(karr, k);
      if (rc == KV_E_TIMEOUT) {
        snprintf(buf, sizeof(buf), "reading key %s", name);
        slot_timed_out(r, s, buf, cfg->deadline_ms);
        ok = 2;
        goto out;
      }
    }
  }
  if (s->n_replicas && (s->objects & AKV_OBJ_KEYS))
    check_replicas(r, lc, cl, s, &keys, slot);
  for (int w = 0; w < 2; w++) {
    const char *what = w ? "secrets" : "certificates";
    if (!(s->objects & (w ? AKV_OBJ_SECRETS : AKV_OBJ_CERTIFICATES)))
      continue;
    rc = check_list(r, lc, cl, s, what, slot, &other);
    kv_item_list_free(&other);
    if (rc == KV_E_TIMEOUT) {
      snprintf(buf, sizeof(buf), "listing %s", what);
      slot_timed_out(r, s, buf, cfg->deadline_ms);
      ok = 2;
      goto out;
    }
  }
out:
  kv_item_list_free(&keys);
  kv_client_free(cl);
  kv_cred_free(cred);
  cJSON_Delete(log);
  return ok;
}

/* ---- module pass ---------------------------------------------------------------------------- */

/* Attaches the module's objects to the slot report and checks every healthy key is there. */
static void module_slot(struct report *r, struct mv_view *v, const struct akv_slot_config *s,
                        cJSON *slot, int cred_ok)
{
  char serial[17], err[512];
  cJSON *mj = cJSON_AddObjectToObject(slot, "module"), *objs, *k, *mlog = cJSON_CreateArray();
  struct mv_token *t = NULL;
  struct errcap ec;
  size_t ti = 0;
  int rc;
  tool_vault_serial(s->url, serial);
  cJSON_AddStringToObject(mj, "serial", serial);
  for (size_t i = 0; v && i < v->n_toks; i++)
    if (strcmp(v->toks[i].serial, serial) == 0) {
      t = &v->toks[i];
      ti = i;
    }
  if (!v)
    goto out;
  if (!t) {
    cJSON_AddStringToObject(mj, "result", "missing");
    problem(r, s->label, NULL, "MODULE_TOKEN_MISSING",
            "slot %s: the module shows no token with serial %s (is the module older than the "
            "configuration, or reading another configuration?)",
            s->label, serial);
    goto out;
  }
  cJSON_AddStringToObject(mj, "token", t->label);
  cJSON_AddStringToObject(mj, "uri", t->uri);
  if (!cred_ok) {
    cJSON_AddStringToObject(mj, "result", "skipped");
    cJSON_AddStringToObject(mj, "reason", "the credential failed: the module cannot list either");
    goto out;
  }
  if (cred_ok == 2) {
    cJSON_AddStringToObject(mj, "result", "skipped");
    cJSON_AddStringToObject(mj, "reason", "the vault timed out: the module would wait as long");
    goto out;
  }
  errcap_begin(&ec);
  rc = mv_load_objects(v, ti, err, sizeof(err));
  errcap_end(&ec, mlog);
  progress("slot %s: module objects %s", s->label, rc == 0 ? "ok" : "failed");
  if (cJSON_GetArraySize(mlog) > 0)
    cJSON_AddItemToObject(mj, "log", cJSON_Duplicate(mlog, 1));
  if (rc != 0) {
    cJSON_AddStringToObject(mj, "result", "failed");
    cJSON_AddStringToObject(mj, "error", err);
    problem(r, s->label, NULL, "MODULE_OBJECTS_FAILED",
            "slot %s: the module cannot list objects "
            "(%s): %s",
            s->label, err, last_line(mlog));
    goto out;
  }
  cJSON_AddStringToObject(mj, "result", "ok");
  objs = cJSON_AddArrayToObject(mj, "objects");
  for (size_t i = 0; i < t->n_objs; i++)
    cJSON_AddItemToArray(objs, mv_object_json(&t->objs[i]));
  /* Every readable, enabled key must appear; its URIs go next to it in the report. */
  cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(slot, "keys"))
  {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k, "name"));
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(k, "enabled");
    cJSON *uris = cJSON_AddArrayToObject(k, "uris");
    for (size_t i = 0; name && i < t->n_objs; i++)
      if (t->objs[i].label && strcmp(t->objs[i].label, name) == 0)
        cJSON_AddItemToArray(uris, cJSON_CreateString(t->objs[i].uri));
    if (cJSON_IsTrue(en) && cJSON_GetArraySize(uris) == 0)
      problem(r, s->label, name, "MODULE_KEY_MISSING",
              "key %s: readable in the vault but the module shows no object for it (unsupported "
              "key type, expired, or excluded by key_filter?)",
              name);
  }
out:
  cJSON_Delete(mlog);
}

/* ---- text rendering ------------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
  const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
  return s ? s : "";
}

static void print_log(const cJSON *o, const char *indent)
{
  const cJSON *l;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(o, "log"))
      printf("%s| %s\n", indent, cJSON_GetStringValue(l));
}

static void print_step(const char *what, const cJSON *st)
{
  const cJSON *count = cJSON_GetObjectItemCaseSensitive(st, "count");
  if (!st)
    return;
  printf("  %-18s %s", what, jstr(st, "result"));
  if (cJSON_IsNumber(count))
    printf(" (%d)", count->valueint);
  if (*jstr(st, "reason"))
    printf(" (%s)", jstr(st, "reason"));
  if (strcmp(jstr(st, "result"), "ok") != 0 && *jstr(st, "rc"))
    printf(" [%s, HTTP %d]", jstr(st, "rc"),
           cJSON_GetObjectItemCaseSensitive(st, "http_status")->valueint);
  printf("\n");
  if (strcmp(jstr(st, "result"), "ok") != 0)
    print_log(st, "      ");
}

static void print_cache_file(const cJSON *cf)
{
  const cJSON *age = cJSON_GetObjectItemCaseSensitive(cf, "age_s");
  if (!*jstr(cf, "path"))
    printf("cache file: off\n");
  else if (cJSON_IsNumber(age))
    printf("cache file: %s (written %.0f s ago)\n", jstr(cf, "path"), age->valuedouble);
  else
    printf("cache file: %s (none)\n", jstr(cf, "path"));
  printf("  %s\n", jstr(cf, "note"));
}

static void print_text(const cJSON *root)
{
  const cJSON *slot, *p, *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
  const cJSON *mod = cJSON_GetObjectItemCaseSensitive(root, "module");
  int np = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "problems"));
  printf("config: %s\n", *jstr(cfg, "path")       ? jstr(cfg, "path")
                         : *jstr(cfg, "searched") ? "(none found)"
                                                  : "(environment only)");
  print_cache_file(cJSON_GetObjectItemCaseSensitive(root, "cache_file"));
  printf("module: %s: %s%s%s\n", jstr(mod, "path"), jstr(mod, "result"),
         *jstr(mod, "error") ? ": " : "", jstr(mod, "error"));
  print_log(mod, "  ");
  cJSON_ArrayForEach(slot, cJSON_GetObjectItemCaseSensitive(root, "slots"))
  {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(slot, "credential");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "identity");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(slot, "module"), *k, *u;
    printf("\nslot %d: %s  %s (%s)\n", cJSON_GetObjectItemCaseSensitive(slot, "index")->valueint,
           jstr(slot, "label"), jstr(slot, "url"), jstr(slot, "kind"));
    printf("  credential (%s): %s: %s\n", jstr(c, "scope"), jstr(c, "source"), jstr(c, "result"));
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(c, "sources"))
        printf("      source %s: %s%s%s\n", jstr(u, "source"), jstr(u, "state"),
               *jstr(u, "detail") ? ": " : "", jstr(u, "detail"));
    print_log(c, "      ");
    if (id) {
      printf("  identity:          tenant %s, app %s, object %s", jstr(id, "tenant_id"),
             *jstr(id, "app_id") ? jstr(id, "app_id") : "-",
             *jstr(id, "object_id") ? jstr(id, "object_id") : "-");
      if (*jstr(id, "user"))
        printf(", user %s", jstr(id, "user"));
      printf("\n");
    }
    print_step("list keys:", cJSON_GetObjectItemCaseSensitive(slot, "list_keys"));
    print_step("list certificates:", cJSON_GetObjectItemCaseSensitive(slot, "list_certificates"));
    print_step("list secrets:", cJSON_GetObjectItemCaseSensitive(slot, "list_secrets"));
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(slot, "keys"))
    {
      const cJSON *pm = cJSON_GetObjectItemCaseSensitive(k, "permissions");
      printf("  key %s (%s%s%s):", jstr(k, "name"), jstr(k, "kty"), *jstr(k, "crv") ? " " : "",
             jstr(k, "crv"));
      if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(k, "bits")))
        printf(" %d bits,", cJSON_GetObjectItemCaseSensitive(k, "bits")->valueint);
      printf(" get %s, sign %s, decrypt %s, wrap %s\n",
             jstr(cJSON_GetObjectItemCaseSensitive(pm, "get"), "result"), jstr(pm, "sign"),
             jstr(pm, "decrypt"), jstr(pm, "wrap"));
      cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(k, "uris"))
          printf("      %s\n", cJSON_GetStringValue(u));
    }
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(slot, "replicas"))
    {
      const cJSON *rk;
      printf("  replica %s: %s", jstr(u, "url"), jstr(u, "state"));
      if (strcmp(jstr(u, "state"), "reachable") == 0)
        printf(" (keys: %d the same, %d different, %d missing)",
               cJSON_GetObjectItemCaseSensitive(u, "keys_same")->valueint,
               cJSON_GetObjectItemCaseSensitive(u, "keys_different")->valueint,
               cJSON_GetObjectItemCaseSensitive(u, "keys_missing")->valueint);
      else
        printf(" [%s]", jstr(u, "rc"));
      printf("\n");
      print_log(u, "      ");
      cJSON_ArrayForEach(rk, cJSON_GetObjectItemCaseSensitive(u, "keys"))
      {
        if (strcmp(jstr(rk, "result"), "same") == 0)
          continue;
        printf("      key %s: %s%s%s%s\n", jstr(rk, "name"), jstr(rk, "result"),
               *jstr(rk, "difference") || *jstr(rk, "rc") ? ": " : "", jstr(rk, "difference"),
               jstr(rk, "rc"));
      }
    }
    if (m && *jstr(m, "result")) {
      printf("  module token:      %s %s", jstr(m, "result"), jstr(m, "uri"));
      if (*jstr(m, "reason") || *jstr(m, "error"))
        printf(" (%s%s)", jstr(m, "reason"), jstr(m, "error"));
      printf("\n");
      cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(m, "objects"))
      {
        if (strcmp(jstr(u, "class"), "private") == 0 || strcmp(jstr(u, "class"), "public") == 0)
          continue; /* printed under their key */
        printf("      %s\n", jstr(u, "uri"));
      }
      print_log(m, "      ");
    }
  }
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "notes"))
      printf("\nnote: %s", jstr(p, "message"));
  if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "notes")))
    printf("\n");
  printf("\n");
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "problems"))
      printf("PROBLEM [%s] %s\n", jstr(p, "code"), jstr(p, "message"));
  if (np)
    printf("%d problem%s found\n", np, np == 1 ? "" : "s");
  else
    printf("healthy: no problems found\n");
}

/* ---- entry ---------------------------------------------------------------------------------- */

/* The cross-process cache file (docs/config.md `cache_file`): its path and age. The module pass
 * runs with AKV_PKCS11_CACHE_RELIST=1 (docs/config.md "Environment variables"): the module takes no
 * listing from the file and drops the entries of the slots doctor checks (their configuration and
 * principal) before listing them from the vault, then writes them afresh; every other
 * configuration's and identity's entries stay (docs/design.md "Cache file"). The backend pass reads
 * the vault directly anyway. */
static cJSON *cache_file_before(const struct akv_config *cfg, cJSON *root)
{
  cJSON *cf = cJSON_AddObjectToObject(root, "cache_file");
  char path[4096];
  struct stat st;
  if (!tool_cache_path(cfg, path, sizeof(path))) {
    cJSON_AddNullToObject(cf, "path");
    cJSON_AddStringToObject(cf, "note", "off: every process lists the vault itself");
    return cf;
  }
  cJSON_AddStringToObject(cf, "path", path);
  if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
    cJSON_AddBoolToObject(cf, "present", 1);
    cJSON_AddNumberToObject(cf, "age_s", (double)(time(NULL) - st.st_mtim.tv_sec));
    cJSON_AddNumberToObject(cf, "bytes", (double)st.st_size);
  } else {
    cJSON_AddBoolToObject(cf, "present", 0);
  }
  cJSON_AddBoolToObject(cf, "relist", setenv("AKV_PKCS11_CACHE_RELIST", "1", 1) == 0);
  return cf;
}

static void cache_file_after(cJSON *cf)
{
  const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cf, "path"));
  struct stat st;
  if (!path)
    return;
  (void)unsetenv("AKV_PKCS11_CACHE_RELIST");
  int fresh = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
  cJSON_AddBoolToObject(cf, "refreshed", fresh);
  if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cf, "relist")))
    cJSON_AddStringToObject(cf, "note",
                            "doctor could not set AKV_PKCS11_CACHE_RELIST: its module pass may "
                            "answer listings from the cache file while it is younger than ttl");
  else
    cJSON_AddStringToObject(cf, "note",
                            fresh ? "doctor reads the vault directly: its module pass took nothing "
                                    "from the cache file and replaced the entries of the slots "
                                    "it checked; other configurations' and identities' entries "
                                    "are kept"
                                  : "doctor reads the vault directly: its module pass took nothing "
                                    "from the cache file and wrote none");
}

int tool_doctor(const struct tool_opts *o)
{
  struct akv_config *cfg = NULL;
  struct kv_http *http = NULL;
  struct kv_http_opts ho;
  struct mv_view *v = NULL;
  struct logcap lc = {-1};
  struct report r = {NULL, NULL, NULL};
  struct errcap ec;
  cJSON *cj, *slots, *mod, *mlog = NULL, *cache_cj;
  char err[1024];
  int *cred_ok = NULL, ret = TOOL_USAGE;
  kv_rc rc;

  r.root = cJSON_CreateObject();
  if (!r.root) {
    fprintf(stderr, "akv-p11: out of memory\n");
    goto out;
  }
  cj = cJSON_AddObjectToObject(r.root, "config");
  /* Quiet until the configuration is known: its errors are reported below, verbatim. */
  akv_log_init(AKV_LOG_ERROR, "/dev/null");
  if (akv_config_load(o->config, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: configuration error: %s\n", err);
    if (o->json) {
      cJSON_AddBoolToObject(cj, "ok", 0);
      cJSON_AddStringToObject(cj, "error", err);
      char *s = cJSON_Print(r.root);
      if (s)
        printf("%s\n", s);
      free(s);
    }
    goto out;
  }
  ret = TOOL_PROBLEM;
  progress_on = !o->json;
  cJSON_AddBoolToObject(cj, "ok", 1);
  if (cfg->path)
    cJSON_AddStringToObject(cj, "path", cfg->path);
  cJSON_AddNumberToObject(cj, "slots", (double)cfg->n_slots);
  r.problems = cJSON_AddArrayToObject(r.root, "problems");
  r.notes = cJSON_AddArrayToObject(r.root, "notes");
  progress("configuration %s: %zu slot%s", cfg->path ? cfg->path : "(environment only)",
           cfg->n_slots, cfg->n_slots == 1 ? "" : "s");
  if (cfg->n_slots == 0) {
    /* The module accepts this (zero slots: it is loaded into programs that never use it), but
     * whoever runs doctor means to use it. */
    char where[4400];
    akv_config_searched(where, sizeof(where));
    cJSON_AddStringToObject(cj, "searched", where);
    problem(&r, NULL, NULL, "NO_CONFIGURATION",
            "no configuration found (looked at %s): the module offers no slot, so consumers "
            "see \"No slots\"; fix: the smallest configuration that works is "
            "{\"slots\": [{\"url\": \"https://NAME.vault.azure.net\"}]} in "
            "/etc/akv-pkcs11/config.json or ~/.config/akv-pkcs11/config.json (credentials from "
            "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, a managed identity or az "
            "login), or export AKV_PKCS11_VAULT_URL=https://NAME.vault.azure.net",
            where);
  }
  slots = cJSON_AddArrayToObject(r.root, "slots");
  if (logcap_open(&lc) != 0) {
    note(&r, NULL, "cannot capture the backend's log lines (%s); they go to stderr",
         strerror(errno));
    akv_log_init(AKV_LOG_INFO, NULL);
  }

  tool_http_opts(cfg, &ho);
  rc = kv_http_new(&ho, &http);
  if (rc != KV_OK) {
    cJSON *l = cJSON_CreateArray();
    logcap_collect(&lc, l);
    problem(&r, NULL, NULL, "TRANSPORT_FAILED", "the HTTP transport cannot start (%s): %s",
            kv_rc_str(rc), last_line(l));
    cJSON_Delete(l);
  }
  cred_ok = calloc(cfg->n_slots + 1, sizeof(*cred_ok));
  if (!cred_ok)
    goto out;
  for (size_t i = 0; http && i < cfg->n_slots; i++) {
    const struct akv_slot_config *s = &cfg->slots[i];
    cJSON *sj = cJSON_CreateObject();
    cJSON_AddNumberToObject(sj, "index", (double)i);
    cJSON_AddStringToObject(sj, "label", s->label);
    cJSON_AddStringToObject(sj, "url", s->url);
    cJSON_AddStringToObject(sj, "kind", s->kind == AKV_VAULT_MHSM ? "mhsm" : "vault");
    cJSON_AddItemToArray(slots, sj);
    cred_ok[i] = check_slot(&r, &lc, http, cfg, s, o->probe_sign, sj);
  }
  logcap_close(&lc);

  cache_cj = cache_file_before(cfg, r.root);

  /* Module pass: the same configuration through the module, as a consumer loads it. */
  mod = cJSON_AddObjectToObject(r.root, "module");
  cJSON_AddStringToObject(mod, "path", o->module);
  mlog = cJSON_CreateArray();
  errcap_begin(&ec);
  if (mv_open(o->module, o->config, &v, err, sizeof(err)) != 0)
    v = NULL;
  errcap_end(&ec, mlog);
  if (cJSON_GetArraySize(mlog) > 0)
    cJSON_AddItemToObject(mod, "log", cJSON_Duplicate(mlog, 1));
  progress("module %s %s", o->module, v ? "loaded" : "failed");
  if (!v) {
    cJSON_AddStringToObject(mod, "result", "failed");
    cJSON_AddStringToObject(mod, "error", err);
    problem(&r, NULL, NULL, "MODULE_LOAD_FAILED", "the module %s cannot be used: %s%s%s", o->module,
            err, cJSON_GetArraySize(mlog) ? ": " : "", last_line(mlog));
  } else {
    cJSON_AddStringToObject(mod, "result", "loaded");
    cJSON_AddNumberToObject(mod, "tokens", (double)v->n_toks);
  }
  for (size_t i = 0; http && i < cfg->n_slots; i++)
    module_slot(&r, v, &cfg->slots[i], cJSON_GetArrayItem(slots, (int)i), cred_ok[i]);
  cache_file_after(cache_cj);

  cJSON_AddNumberToObject(r.root, "problem_count", cJSON_GetArraySize(r.problems));
  cJSON_AddBoolToObject(r.root, "healthy", cJSON_GetArraySize(r.problems) == 0);
  if (o->json) {
    char *s = cJSON_Print(r.root);
    if (!s) {
      fprintf(stderr, "akv-p11: out of memory\n");
      goto out;
    }
    printf("%s\n", s);
    free(s);
  } else {
    print_text(r.root);
  }
  ret = cJSON_GetArraySize(r.problems) ? TOOL_PROBLEM : TOOL_OK;
out:
  fflush(stdout);
  logcap_close(&lc);
  mv_free(v);
  kv_http_free(http);
  akv_config_free(cfg);
  cJSON_Delete(mlog);
  cJSON_Delete(r.root);
  free(cred_ok);
  return ret;
}
