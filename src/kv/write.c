/* SPDX-License-Identifier: Apache-2.0 */
/* Key Vault writes: create/update/delete keys, set/delete secrets, delete certificates. Request
 * bodies are built with cJSON; responses are parsed with the same strict helpers as the reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "kv/client.h"
#include "kv/json.h"
#include "kv/jwk.h"
#include "util/log.h"
#include "util/utf8.h"

#define MAX_ID_LEN 2048
#define MAX_SECRET (25 * 1024) /* the service's secret value limit */
#define MAX_TAGS 15            /* the service's tag limit */
#define MAX_TAG_LEN 256

static const char *kty_name(enum kv_kty kty, int hsm)
{
  switch (kty) {
  case KV_KTY_RSA:
    return hsm ? "RSA-HSM" : "RSA";
  case KV_KTY_EC:
    return hsm ? "EC-HSM" : "EC";
  case KV_KTY_OCT:
    return hsm ? "oct-HSM" : "oct";
  }
  return NULL;
}

static kv_rc add_key_ops(cJSON *body, unsigned ops)
{
  static const unsigned writable[] = {KV_OP_ENCRYPT, KV_OP_DECRYPT, KV_OP_SIGN,
                                      KV_OP_VERIFY,  KV_OP_WRAP,    KV_OP_UNWRAP};
  cJSON *arr;
  size_t i;
  if (!ops)
    return KV_OK;
  arr = cJSON_AddArrayToObject(body, "key_ops");
  if (!arr)
    return KV_E_NOMEM;
  for (i = 0; i < sizeof(writable) / sizeof(writable[0]); i++) {
    if ((ops & writable[i]) &&
        !cJSON_AddItemToArray(arr, cJSON_CreateString(kv_key_op_name(writable[i]))))
      return KV_E_NOMEM;
  }
  return KV_OK;
}

static kv_rc add_tags(cJSON *body, const struct kv_tag *tags, size_t n)
{
  cJSON *o;
  size_t i;
  if (n > MAX_TAGS) {
    akv_err(AKV_LOGC_KV, "at most %d tags per object", MAX_TAGS);
    return KV_E_INVALID;
  }
  o = cJSON_AddObjectToObject(body, "tags");
  if (!o)
    return KV_E_NOMEM;
  for (i = 0; i < n; i++) {
    if (!tags[i].name || !tags[i].value || !tags[i].name[0] || strlen(tags[i].name) > MAX_TAG_LEN ||
        strlen(tags[i].value) > MAX_TAG_LEN) {
      akv_err(AKV_LOGC_KV, "a tag name or value is empty or longer than %d characters",
              MAX_TAG_LEN);
      return KV_E_INVALID;
    }
    if (!cJSON_AddStringToObject(o, tags[i].name, tags[i].value))
      return KV_E_NOMEM;
  }
  return KV_OK;
}

/* attributes{enabled?, nbf?, exp?}: a time of 0 with its set_ flag clears it (null). */
static kv_rc add_attrs(cJSON *body, const struct kv_update *u)
{
  cJSON *a;
  if (!u->set_enabled && !u->set_nbf && !u->set_exp)
    return KV_OK;
  a = cJSON_AddObjectToObject(body, "attributes");
  if (!a)
    return KV_E_NOMEM;
  if (u->set_enabled && !cJSON_AddBoolToObject(a, "enabled", u->enabled ? 1 : 0))
    return KV_E_NOMEM;
  if (u->set_nbf && !(u->nbf ? cJSON_AddNumberToObject(a, "nbf", (double)u->nbf)
                             : cJSON_AddNullToObject(a, "nbf")))
    return KV_E_NOMEM;
  if (u->set_exp && !(u->exp ? cJSON_AddNumberToObject(a, "exp", (double)u->exp)
                             : cJSON_AddNullToObject(a, "exp")))
    return KV_E_NOMEM;
  return KV_OK;
}

/* One write call: body (may be NULL) serialised, sent, the reply's document in *doc. Takes url
 * (freed here; NULL means the URL could not be built). */
static kv_rc write_call(struct kv_client *cl, const char *op, const char *method, char *url,
                        cJSON *body, int idempotent, const char *name, const char *version,
                        cJSON **doc, long *http_status)
{
  struct kv_call call;
  char *text = NULL;
  kv_rc rc;
  *doc = NULL;
  if (!url)
    return KV_E_NOMEM;
  if (body) {
    text = cJSON_PrintUnformatted(body);
    if (!text) {
      free(url);
      return KV_E_NOMEM;
    }
  }
  memset(&call, 0, sizeof(call));
  call.op = op;
  call.method = method;
  call.url = url;
  call.body = text;
  call.body_len = text ? strlen(text) : 0;
  call.idempotent = idempotent;
  call.name = name;
  call.version = version;
  rc = kv_client_call(cl, &call, doc);
  kv_status_set(http_status, call.status);
  free(url);
  if (text) {
    /* A secret's value travels in the body: wipe the serialised copy. */
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  return rc;
}

/* A KeyBundle reply about the key we named. */
static kv_rc key_reply(const char *op, const char *name, cJSON *doc, struct kv_key **out)
{
  struct kv_key *k = NULL;
  kv_rc rc;
  if (!doc) {
    akv_err(AKV_LOGC_KV, "%s %s: empty response", op, name);
    return KV_E_PROTOCOL;
  }
  rc = kv_key_from_bundle(doc, &k);
  if (rc != KV_OK)
    return rc;
  if (strcasecmp(k->name, name) != 0) {
    akv_err(AKV_LOGC_KV, "%s %s: the response describes another key (%s)", op, name, k->name);
    kv_key_free(k);
    return KV_E_PROTOCOL;
  }
  if (out)
    *out = k;
  else
    kv_key_free(k);
  return KV_OK;
}

kv_rc kv_create_key(struct kv_client *cl, const char *name, const struct kv_key_spec *spec,
                    struct kv_key **out, long *http_status)
{
  cJSON *body = NULL, *doc = NULL;
  struct kv_update times;
  const char *kty;
  kv_rc rc;

  kv_status_set(http_status, 0);
  if (!cl || !spec || !out)
    return KV_E_INVALID;
  *out = NULL;
  if ((rc = kv_check_name(name, NULL)) != KV_OK)
    return rc;
  if (kv_client_kind(cl) == AKV_VAULT_MHSM && !spec->hsm) {
    akv_err(AKV_LOGC_KV, "keys.create %s: a Managed HSM only holds -HSM keys", name);
    return KV_E_INVALID;
  }
  if (spec->kty == KV_KTY_OCT && kv_client_kind(cl) != AKV_VAULT_MHSM) {
    akv_err(AKV_LOGC_KV, "keys.create %s: symmetric keys exist only in a Managed HSM", name);
    return KV_E_UNSUPPORTED;
  }
  kty = kty_name(spec->kty, spec->hsm);
  if (!kty)
    return KV_E_INVALID;
  rc = KV_E_NOMEM;
  body = cJSON_CreateObject();
  if (!body || !cJSON_AddStringToObject(body, "kty", kty))
    goto out;
  if (spec->key_size && !cJSON_AddNumberToObject(body, "key_size", (double)spec->key_size))
    goto out;
  if (spec->kty == KV_KTY_EC && spec->crv != KV_CRV_NONE &&
      !cJSON_AddStringToObject(body, "crv", kv_crv_name(spec->crv)))
    goto out;
  memset(&times, 0, sizeof(times));
  times.set_nbf = spec->nbf != 0;
  times.nbf = spec->nbf;
  times.set_exp = spec->exp != 0;
  times.exp = spec->exp;
  if ((rc = add_key_ops(body, spec->key_ops)) != KV_OK || (rc = add_attrs(body, &times)) != KV_OK ||
      (spec->n_tags && (rc = add_tags(body, spec->tags, spec->n_tags)) != KV_OK))
    goto out;
  rc = write_call(cl, "keys.create", "POST", kv_client_url(cl, "keys/%s/create", name), body, 0,
                  name, NULL, &doc, http_status);
  if (rc == KV_OK)
    rc = key_reply("keys.create", name, doc, out);
out:
  cJSON_Delete(body);
  cJSON_Delete(doc);
  return rc;
}

kv_rc kv_update_key(struct kv_client *cl, const char *name, const char *version,
                    const struct kv_update *u, struct kv_key **out, long *http_status)
{
  cJSON *body = NULL, *doc = NULL;
  kv_rc rc;

  kv_status_set(http_status, 0);
  if (!cl || !u || !version)
    return KV_E_INVALID;
  if (out)
    *out = NULL;
  if ((rc = kv_check_name(name, version)) != KV_OK)
    return rc;
  rc = KV_E_NOMEM;
  body = cJSON_CreateObject();
  if (!body)
    goto out;
  if ((rc = add_attrs(body, u)) != KV_OK ||
      (u->set_tags && (rc = add_tags(body, u->tags, u->n_tags)) != KV_OK))
    goto out;
  rc = write_call(cl, "keys.update", "PATCH", kv_client_url(cl, "keys/%s/%s", name, version), body,
                  1, name, version, &doc, http_status);
  if (rc == KV_OK)
    rc = key_reply("keys.update", name, doc, out);
out:
  cJSON_Delete(body);
  cJSON_Delete(doc);
  return rc;
}

/* DELETE of a named object: the reply (the deleted bundle) is only checked to be JSON. */
static kv_rc delete_object(struct kv_client *cl, const char *op, const char *collection,
                           const char *name, long *http_status)
{
  cJSON *doc = NULL;
  kv_rc rc;
  kv_status_set(http_status, 0);
  if (!cl)
    return KV_E_INVALID;
  if ((rc = kv_check_name(name, NULL)) != KV_OK)
    return rc;
  /* Not idempotent for us: a resent DELETE that already worked would answer 404. */
  rc = write_call(cl, op, "DELETE", kv_client_url(cl, "%s/%s", collection, name), NULL, 0, name,
                  NULL, &doc, http_status);
  cJSON_Delete(doc);
  return rc;
}

kv_rc kv_delete_key(struct kv_client *cl, const char *name, long *http_status)
{
  return delete_object(cl, "keys.delete", "keys", name, http_status);
}

kv_rc kv_delete_secret(struct kv_client *cl, const char *name, long *http_status)
{
  kv_status_set(http_status, 0);
  if (cl && kv_client_kind(cl) == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  return delete_object(cl, "secrets.delete", "secrets", name, http_status);
}

kv_rc kv_delete_certificate(struct kv_client *cl, const char *name, long *http_status)
{
  kv_status_set(http_status, 0);
  if (cl && kv_client_kind(cl) == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  return delete_object(cl, "certificates.delete", "certificates", name, http_status);
}

/* UTF-8 text without NUL (src/util/utf8.h). */
static int utf8_text(const unsigned char *p, size_t len)
{
  size_t i = 0, n;
  while (i < len) {
    if (p[i] == 0 || (n = akv_utf8_seq_len(p + i, len - i, NULL)) == 0)
      return 0;
    i += n;
  }
  return 1;
}

kv_rc kv_set_secret(struct kv_client *cl, const char *name, const unsigned char *value, size_t len,
                    const char *content_type, const struct kv_tag *tags, size_t n_tags,
                    struct kv_secret **out, long *http_status)
{
  cJSON *body = NULL, *doc = NULL;
  struct kv_secret *s = NULL;
  char *text = NULL;
  kv_rc rc;

  kv_status_set(http_status, 0);
  if (!cl || (!value && len))
    return KV_E_INVALID;
  if (out)
    *out = NULL;
  if (kv_client_kind(cl) == AKV_VAULT_MHSM)
    return KV_E_UNSUPPORTED;
  if ((rc = kv_check_name(name, NULL)) != KV_OK)
    return rc;
  if (len > MAX_SECRET || !utf8_text(value, len)) {
    akv_err(AKV_LOGC_KV,
            "secrets.set %s: a secret value is UTF-8 text without NUL bytes of at "
            "most %d bytes",
            name, MAX_SECRET);
    return KV_E_INVALID;
  }
  rc = KV_E_NOMEM;
  text = malloc(len + 1);
  body = cJSON_CreateObject();
  if (!text || !body)
    goto out;
  if (len)
    memcpy(text, value, len);
  text[len] = '\0';
  if (!cJSON_AddStringToObject(body, "value", text) ||
      (content_type && !cJSON_AddStringToObject(body, "contentType", content_type)))
    goto out;
  if (n_tags && (rc = add_tags(body, tags, n_tags)) != KV_OK)
    goto out;
  rc = write_call(cl, "secrets.set", "PUT", kv_client_url(cl, "secrets/%s", name), body, 1, name,
                  NULL, &doc, http_status);
  if (rc != KV_OK)
    goto out;
  rc = KV_E_PROTOCOL;
  if (!doc) {
    akv_err(AKV_LOGC_KV, "secrets.set %s: empty response", name);
    goto out;
  }
  rc = KV_E_NOMEM;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  if ((rc = kv_json_dup(doc, "id", 1, MAX_ID_LEN, &s->id)) != KV_OK ||
      (rc = kv_parse_id(s->id, "secrets", &s->name, &s->version)) != KV_OK ||
      (rc = kv_json_dup(doc, "contentType", 0, 256, &s->content_type)) != KV_OK ||
      (rc = kv_json_attrs(doc, &s->attrs)) != KV_OK)
    goto out;
  if (strcasecmp(s->name, name) != 0) {
    akv_err(AKV_LOGC_KV, "secrets.set %s: the response describes another secret", name);
    rc = KV_E_PROTOCOL;
    goto out;
  }
  if (out) {
    *out = s;
    s = NULL;
  }
  rc = KV_OK;
out:
  if (body) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
    if (cJSON_IsString(v))
      OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
  }
  if (doc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "value");
    if (cJSON_IsString(v))
      OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
  }
  if (text) {
    OPENSSL_cleanse(text, len);
    free(text);
  }
  kv_secret_free(s);
  cJSON_Delete(body);
  cJSON_Delete(doc);
  return rc;
}
