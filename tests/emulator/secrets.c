/* SPDX-License-Identifier: Apache-2.0 */
/* secrets.c - Key Vault secrets of the emulator.
 *
 * Routes (vault kind only; the core answers Managed HSM itself):
 *   PUT    /secrets/{n}                     set (new version)            secrets.set
 *   GET    /secrets                         list (no values, paged)      secrets.list
 *   GET    /secrets/{n}/versions            list versions                secrets.versions
 *   GET    /secrets/{n}[/{v}]               get (latest when no v)       secrets.get
 *   PATCH  /secrets/{n}[/{v}]               update (no value returned)   secrets.update
 *   DELETE /secrets/{n}                     soft delete                  secrets.delete
 *   GET    /deletedsecrets                  list deleted                 secrets.deleted_list
 *   GET    /deletedsecrets/{n}              get deleted                  secrets.deleted_get
 *   DELETE /deletedsecrets/{n}              purge (204)                  secrets.purge
 *   POST   /deletedsecrets/{n}/recover      recover                      secrets.recover
 * The store lives in vault->secrets and is protected by vault->lock. */
#include "objects.h"
#include "x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SECRETS_MAX 10000        /* secrets per vault */
#define SECRET_VERSIONS_MAX 1000 /* versions per secret */
#define SECRET_CTYPE_MAX 255
#define CT_PKCS12 "application/x-pkcs12"
#define CT_PEM "application/x-pem-file"

struct sversion {
  char version[EMU_VERSION_LEN + 1];
  char *value;
  char *content_type;
  cJSON *tags;
  struct emu_attrs attrs;
  int managed;
  char *kid;
};

struct secret {
  struct objs_entry e; /* first: name, soft-delete state */
  struct sversion **v; /* creation order: the last one is the latest */
  size_t nv;
};

/* ---- store ---------------------------------------------------------------------------- */

static void sversion_free(struct sversion *sv)
{
  if (!sv)
    return;
  if (sv->value) {
    OPENSSL_cleanse(sv->value, strlen(sv->value));
    free(sv->value);
  }
  free(sv->content_type);
  cJSON_Delete(sv->tags);
  free(sv->kid);
  free(sv);
}

static void secret_free(struct objs_entry *e)
{
  struct secret *s = (struct secret *)e;
  size_t i;

  if (!s)
    return;
  for (i = 0; i < s->nv; i++)
    sversion_free(s->v[i]);
  free(s->v);
  free(s->e.name);
  free(s);
}

void secrets_store_free(void *store)
{
  objs_store_free(store, secret_free);
}

static struct secret *secret_find_inlock(struct emu_vault *vault, const char *name, size_t *idx)
{
  return (struct secret *)objs_find_inlock(vault->secrets, name, idx);
}

static struct sversion *secret_version_find(struct secret *s, const char *version)
{
  size_t i;

  if (!s->nv)
    return NULL;
  if (!version || !*version)
    return s->v[s->nv - 1];
  for (i = 0; i < s->nv; i++) {
    if (objs_ieq(s->v[i]->version, version))
      return s->v[i];
  }
  return NULL;
}

enum emu_rc secrets_state_inlock(struct emu_vault *vault, const char *name)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);

  if (!s)
    return EMU_E_NOT_FOUND;
  return s->e.deleted ? objs_deleted_state(&s->e) : EMU_OK;
}

enum emu_rc secrets_add_inlock(struct emu_vault *vault, const char *name,
                               const struct emu_secret_params *p,
                               char version_out[EMU_VERSION_LEN + 1])
{
  const struct objs_store *st = vault->secrets;
  struct secret *s, *fresh = NULL;
  struct sversion *sv = NULL, **nv;
  enum emu_rc rc = EMU_E_NOMEM;
  size_t idx = 0;

  s = secret_find_inlock(vault, name, NULL);
  if (s && s->e.deleted) {
    rc = objs_deleted_state(&s->e);
    goto out;
  }
  if ((!s && st && st->n >= SECRETS_MAX) || (s && s->nv >= SECRET_VERSIONS_MAX)) {
    rc = EMU_E_FULL;
    goto out;
  }
  sv = calloc(1, sizeof(*sv));
  if (!sv)
    goto out;
  sv->value = strdup(p->value);
  sv->content_type = p->content_type ? strdup(p->content_type) : NULL;
  sv->tags = p->tags ? cJSON_Duplicate(p->tags, 1) : NULL;
  sv->kid = p->kid ? strdup(p->kid) : NULL;
  if (!sv->value || (p->content_type && !sv->content_type) || (p->tags && !sv->tags) ||
      (p->kid && !sv->kid))
    goto out;
  sv->managed = p->managed;
  sv->attrs = p->attrs;
  sv->attrs.created = sv->attrs.updated = emu_now();
  sv->attrs.exportable = 0;
  if (p->version)
    snprintf(sv->version, sizeof(sv->version), "%s", p->version);
  else
    emu_version_new(sv->version);
  if (!s) {
    fresh = (struct secret *)objs_add_inlock(&vault->secrets, name, sizeof(*fresh), SECRETS_MAX);
    if (!fresh)
      goto out;
    s = fresh;
  }
  nv = realloc(s->v, (s->nv + 1) * sizeof(*nv));
  if (!nv)
    goto out;
  s->v = nv;
  s->v[s->nv++] = sv;
  fresh = NULL;
  if (version_out)
    memcpy(version_out, sv->version, EMU_VERSION_LEN + 1);
  sv = NULL;
  rc = EMU_OK;
out:
  sversion_free(sv);
  /* A secret appended for this version but left without it goes again. */
  if (fresh && objs_find_inlock(vault->secrets, name, &idx)) {
    objs_remove_inlock(vault->secrets, idx);
    secret_free(&fresh->e);
  }
  return rc;
}

enum emu_rc secrets_delete_inlock(struct emu_vault *vault, const char *name)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);

  if (!s || s->e.deleted)
    return EMU_E_NOT_FOUND;
  s->e.deleted = 1;
  emu_deleted_init(&s->e.del);
  return EMU_OK;
}

enum emu_rc secrets_recover_inlock(struct emu_vault *vault, const char *name)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);

  if (!s || !s->e.deleted || !emu_deleted_visible(&s->e.del))
    return EMU_E_NOT_FOUND;
  s->e.deleted = 0;
  return EMU_OK;
}

/* Remove a secret whatever its state (undo of a failed restore). */
static void secrets_purge_hard_inlock(struct emu_vault *vault, const char *name)
{
  struct secret *s;
  size_t idx = 0;

  s = secret_find_inlock(vault, name, &idx);
  if (!s)
    return;
  objs_remove_inlock(vault->secrets, idx);
  secret_free(&s->e);
}

enum emu_rc secrets_purge_inlock(struct emu_vault *vault, const char *name)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);

  if (!s || !s->e.deleted || !emu_deleted_visible(&s->e.del))
    return EMU_E_NOT_FOUND;
  secrets_purge_hard_inlock(vault, name);
  return EMU_OK;
}

enum emu_rc secrets_update_inlock(struct emu_vault *vault, const char *name, const char *version,
                                  const struct emu_attrs *attrs, const cJSON *tags)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);
  struct sversion *sv;
  cJSON *dup = NULL;

  if (!s || s->e.deleted || !(sv = secret_version_find(s, version)))
    return EMU_E_NOT_FOUND;
  if (tags && !(dup = cJSON_Duplicate(tags, 1)))
    return EMU_E_NOMEM;
  if (dup) {
    cJSON_Delete(sv->tags);
    sv->tags = dup;
  }
  sv->attrs.enabled = attrs->enabled;
  sv->attrs.nbf = attrs->nbf;
  sv->attrs.exp = attrs->exp;
  sv->attrs.updated = emu_now();
  return EMU_OK;
}

enum emu_rc secrets_peek_inlock(struct emu_vault *vault, const char *name, const char *version,
                                const char **value, const char **content_type)
{
  struct secret *s = secret_find_inlock(vault, name, NULL);
  struct sversion *sv;

  if (!s || s->e.deleted || !(sv = secret_version_find(s, version)))
    return EMU_E_NOT_FOUND;
  *value = sv->value;
  *content_type = sv->content_type;
  return EMU_OK;
}

/* ---- JSON shapes ------------------------------------------------------------------------ */

/* SecretBundle: value, contentType, id, managed, attributes, tags, kid (recorded order). */
static cJSON *bundle_new(struct emu_vault *vault, const struct secret *s, const struct sversion *sv,
                         int with_value)
{
  cJSON *b = cJSON_CreateObject(), *ret = NULL;
  char *id = emu_obj_id_new(vault, "secrets", s->e.name, sv->version);

  if (!b || !id)
    goto out;
  if (with_value && !cJSON_AddStringToObject(b, "value", sv->value))
    goto out;
  if (sv->content_type && !cJSON_AddStringToObject(b, "contentType", sv->content_type))
    goto out;
  if (!cJSON_AddStringToObject(b, "id", id))
    goto out;
  if (sv->managed && !cJSON_AddTrueToObject(b, "managed"))
    goto out;
  if (objs_json_add_attrs_tags(b, &sv->attrs, sv->tags))
    goto out;
  if (sv->kid && !cJSON_AddStringToObject(b, "kid", sv->kid))
    goto out;
  ret = b;
  b = NULL;
out:
  cJSON_Delete(b);
  free(id);
  return ret;
}

/* SecretItem: id (base id, or versioned for /versions), attributes, tags, contentType, managed. */
static cJSON *item_new(struct emu_vault *vault, const struct secret *s, const struct sversion *sv,
                       int versioned)
{
  cJSON *b = cJSON_CreateObject(), *ret = NULL;
  char *id = emu_obj_id_new(vault, "secrets", s->e.name, versioned ? sv->version : NULL);

  if (!b || !id || !cJSON_AddStringToObject(b, "id", id))
    goto out;
  if (objs_json_add_attrs_tags(b, &sv->attrs, sv->tags))
    goto out;
  if (sv->content_type && !cJSON_AddStringToObject(b, "contentType", sv->content_type))
    goto out;
  if (sv->managed && !cJSON_AddTrueToObject(b, "managed"))
    goto out;
  ret = b;
  b = NULL;
out:
  cJSON_Delete(b);
  free(id);
  return ret;
}

/* ---- request helpers --------------------------------------------------------------------- */

static int reply_conflict(struct emu_resp *resp, enum emu_rc rc, const char *name)
{
  if (rc == EMU_E_BEING_DELETED)
    return emu_resp_error(resp, 409, "Conflict", "ObjectIsBeingDeleted",
                          "Secret %s is currently being deleted and cannot be re-created; retry "
                          "later.",
                          name);
  return emu_resp_error(resp, 409, "Conflict", "ObjectIsDeletedButRecoverable",
                        "Secret %s is currently in a deleted but recoverable state, and its name "
                        "cannot be reused; in this state, the secret can only be recovered or "
                        "purged.",
                        name);
}

static int reply_managed(struct emu_resp *resp, const char *name)
{
  return emu_resp_error(resp, 403, "Forbidden", NULL,
                        "Secret %s is managed by certificate %s and can only be changed through "
                        "the certificate.",
                        name, name);
}

static int reply_rc(struct emu_resp *resp, enum emu_rc rc, const char *name)
{
  switch (rc) {
  case EMU_E_BEING_DELETED:
  case EMU_E_DELETED_RECOVERABLE:
    return reply_conflict(resp, rc, name);
  case EMU_E_FULL:
    return emu_resp_error(resp, 400, "BadParameter", NULL,
                          "The emulator's secret store is full (%d secrets, %d versions each).",
                          SECRETS_MAX, SECRET_VERSIONS_MAX);
  case EMU_E_NOT_FOUND:
    return emu_resp_not_found(resp, "Secret", name);
  default:
    return -1;
  }
}

/* Parse contentType/tags/attributes of a set or update body onto the outputs. */
static int parse_common(const cJSON *body, const char **ctype, const cJSON **tags,
                        struct emu_attrs *attrs, const char **err)
{
  int bad = 0;

  *ctype = objs_json_str(body, "contentType", &bad);
  if (bad || (*ctype && strlen(*ctype) > SECRET_CTYPE_MAX)) {
    *err = "contentType must be a string of at most 255 characters.";
    return -1;
  }
  return objs_parse_attrs_tags(body, attrs, tags, err) ? -1 : 0;
}

enum { DELETED_GET, DELETED_PURGE, DELETED_RECOVER };

/* ---- operations ---------------------------------------------------------------------------- */

static int op_set(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct emu_secret_params p;
  struct secret *s;
  const cJSON *value;
  const char *err = NULL;
  char version[EMU_VERSION_LEN + 1];
  enum emu_rc rc;
  cJSON *bundle = NULL;

  memset(&p, 0, sizeof(p));
  p.attrs.enabled = 1;
  if (!emu_name_valid(name))
    return emu_resp_bad_param(resp,
                              "The secret name '%.200s' is invalid: use 1-127 characters "
                              "of 0-9, a-z, A-Z and '-'.",
                              name);
  if (!cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a JSON object with a 'value'.");
  value = cJSON_GetObjectItemCaseSensitive(req->body, "value");
  if (!cJSON_IsString(value))
    return emu_resp_bad_param(resp, "Property 'value' is required and must be a string.");
  if (strlen(value->valuestring) > EMU_SECRET_VALUE_MAX)
    return emu_resp_bad_param(resp, "The secret value exceeds the maximum size of %d bytes.",
                              EMU_SECRET_VALUE_MAX);
  if (parse_common(req->body, &p.content_type, &p.tags, &p.attrs, &err))
    return emu_resp_bad_param(resp, "%s", err);
  p.value = value->valuestring;

  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && !s->e.deleted && s->nv && s->v[s->nv - 1]->managed) {
    pthread_mutex_unlock(&vault->lock);
    return reply_managed(resp, s->e.name);
  }
  rc = secrets_add_inlock(vault, name, &p, version);
  if (rc == EMU_OK) {
    s = secret_find_inlock(vault, name, NULL);
    bundle = bundle_new(vault, s, secret_version_find(s, version), 1);
  }
  pthread_mutex_unlock(&vault->lock);
  if (rc != EMU_OK)
    return reply_rc(resp, rc, name);
  return objs_reply_json(resp, 200, bundle);
}

/* Convert a certificate secret value between PKCS#12 (base64) and PEM (2025-07-01
 * outContentType). Returns a malloc'd value (wipe before free) or NULL with *err. */
static char *convert_value(const char *value, const char *from, const char *to, const char **err)
{
  EVP_PKEY *pkey = NULL;
  X509 *leaf = NULL;
  STACK_OF(X509) *chain = NULL;
  char *out = NULL;

  if (x509_parse_import(value, "", objs_ieq(from, CT_PEM), &pkey, &leaf, &chain, err))
    goto out;
  out = objs_ieq(to, CT_PEM) ? x509_pem_new(pkey, leaf, chain)
                             : x509_pkcs12_b64_new(pkey, leaf, chain);
  if (!out)
    *err = "The secret value could not be converted.";
out:
  EVP_PKEY_free(pkey);
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  return out;
}

static int op_get(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  const char *version = objs_req_version(req);
  struct emu_vault *vault = req->vault;
  struct secret *s;
  struct sversion *sv;
  cJSON *bundle = NULL, *val;
  const char *out_ct = emu_req_query(req, "outContentType"), *err = NULL;
  char *ctype = NULL, *converted = NULL;
  int ret = -1, disabled = 0, found = 0;

  if (out_ct && !objs_ieq(out_ct, CT_PEM) && !objs_ieq(out_ct, CT_PKCS12))
    return emu_resp_bad_param(resp, "outContentType must be '%s' or '%s'.", CT_PEM, CT_PKCS12);
  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && !s->e.deleted && (sv = secret_version_find(s, version))) {
    found = 1;
    disabled = !sv->attrs.enabled;
    if (!disabled) {
      bundle = bundle_new(vault, s, sv, 1);
      if (out_ct && sv->content_type)
        ctype = strdup(sv->content_type);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return objs_reply_not_found(resp, "Secret", name, version);
  if (disabled)
    return emu_resp_error(resp, 403, "Forbidden", "SecretDisabled",
                          "Operation get is not allowed on a disabled secret.");
  if (!bundle)
    return -1;
  if (out_ct && !objs_ieq(ctype, out_ct)) {
    if (!objs_ieq(ctype, CT_PEM) && !objs_ieq(ctype, CT_PKCS12)) {
      ret = emu_resp_bad_param(resp,
                               "outContentType is only supported for certificate secrets "
                               "(contentType %s or %s).",
                               CT_PKCS12, CT_PEM);
      goto out;
    }
    val = cJSON_GetObjectItemCaseSensitive(bundle, "value");
    converted = convert_value(val->valuestring, ctype, out_ct, &err);
    if (!converted) {
      ret = emu_resp_bad_param(resp, "%s", err);
      goto out;
    }
    OPENSSL_cleanse(val->valuestring, strlen(val->valuestring));
    if (!cJSON_ReplaceItemInObjectCaseSensitive(bundle, "value", cJSON_CreateString(converted)) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(bundle, "contentType", cJSON_CreateString(out_ct)))
      goto out;
  }
  ret = emu_resp_json(resp, 200, bundle);
  bundle = NULL;
out:
  free(ctype);
  if (converted) {
    OPENSSL_cleanse(converted, strlen(converted));
    free(converted);
  }
  if (bundle) {
    val = cJSON_GetObjectItemCaseSensitive(bundle, "value");
    if (cJSON_IsString(val))
      OPENSSL_cleanse(val->valuestring, strlen(val->valuestring));
    cJSON_Delete(bundle);
  }
  return ret;
}

static int op_update(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  const char *version = objs_req_version(req);
  struct emu_vault *vault = req->vault;
  struct secret *s;
  struct sversion *sv = NULL;
  struct emu_attrs attrs;
  const char *ctype, *err = NULL;
  const cJSON *tags;
  cJSON *bundle = NULL, *tags_dup = NULL;
  char *ct_dup = NULL;
  int managed = 0;

  if (!cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a JSON object.");
  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && !s->e.deleted)
    sv = secret_version_find(s, version);
  if (sv) {
    attrs = sv->attrs;
    managed = sv->managed;
  }
  pthread_mutex_unlock(&vault->lock);
  if (!sv)
    return objs_reply_not_found(resp, "Secret", name, version);
  if (managed)
    return reply_managed(resp, name);
  if (parse_common(req->body, &ctype, &tags, &attrs, &err))
    return emu_resp_bad_param(resp, "%s", err);
  if ((ctype && !(ct_dup = strdup(ctype))) || (tags && !(tags_dup = cJSON_Duplicate(tags, 1)))) {
    free(ct_dup);
    cJSON_Delete(tags_dup);
    return -1;
  }

  /* Look the version up again: it may have been purged while the lock was released. */
  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  sv = (s && !s->e.deleted) ? secret_version_find(s, version) : NULL;
  if (sv) {
    if (ct_dup) {
      free(sv->content_type);
      sv->content_type = ct_dup;
      ct_dup = NULL;
    }
    if (tags_dup) {
      cJSON_Delete(sv->tags);
      sv->tags = tags_dup;
      tags_dup = NULL;
    }
    sv->attrs.enabled = attrs.enabled;
    sv->attrs.nbf = attrs.nbf;
    sv->attrs.exp = attrs.exp;
    sv->attrs.updated = emu_now();
    bundle = bundle_new(vault, s, sv, 0);
  }
  pthread_mutex_unlock(&vault->lock);
  free(ct_dup);
  cJSON_Delete(tags_dup);
  if (!sv)
    return objs_reply_not_found(resp, "Secret", name, version);
  return objs_reply_json(resp, 200, bundle);
}

static int op_delete(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct secret *s;
  cJSON *bundle = NULL;
  int found = 0, managed = 0;

  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && !s->e.deleted && s->nv) {
    found = 1;
    managed = s->v[s->nv - 1]->managed;
    if (!managed) {
      secrets_delete_inlock(vault, name);
      bundle = objs_json_deleted(bundle_new(vault, s, s->v[s->nv - 1], 0), vault, "deletedsecrets",
                                 &s->e);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_not_found(resp, "Secret", name);
  if (managed)
    return reply_managed(resp, name);
  return objs_reply_json(resp, 200, bundle);
}

/* The latest version of a secret in the listings. */
static int list_item(struct emu_vault *vault, const struct objs_entry *e, const void *ctx,
                     cJSON **item)
{
  const struct secret *s = (const struct secret *)e;

  (void)ctx;
  if (!s->nv)
    return 0;
  *item = item_new(vault, s, s->v[s->nv - 1], 0);
  return *item ? 0 : -1;
}

static int op_list(struct emu_req *req, struct emu_resp *resp, int deleted)
{
  return objs_list_reply(req, resp, &req->vault->secrets, deleted, "deletedsecrets", list_item,
                         NULL);
}

static int versions_add(struct emu_vault *vault, const struct objs_entry *e, cJSON *items)
{
  const struct secret *s = (const struct secret *)e;
  size_t i;

  for (i = 0; i < s->nv; i++) {
    if (objs_items_add(items, item_new(vault, s, s->v[i], 1)))
      return -1;
  }
  return 0;
}

static int op_versions(struct emu_req *req, struct emu_resp *resp, int arg)
{
  return objs_versions_reply(req, resp, &req->vault->secrets, "Secret", versions_add);
}

/* GET /deletedsecrets/{n}, DELETE /deletedsecrets/{n}, POST /deletedsecrets/{n}/recover.
 * Secrets backing a certificate go with their certificate. */
static int op_deleted(struct emu_req *req, struct emu_resp *resp, int action)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct secret *s;
  cJSON *bundle = NULL;
  int found = 0, managed = 0;

  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && s->e.deleted && emu_deleted_visible(&s->e.del) && s->nv) {
    found = 1;
    managed = s->v[s->nv - 1]->managed;
    if (action == DELETED_GET) {
      bundle = objs_json_deleted(bundle_new(vault, s, s->v[s->nv - 1], 0), vault, "deletedsecrets",
                                 &s->e);
    } else if (!managed && action == DELETED_RECOVER) {
      secrets_recover_inlock(vault, name);
      bundle = bundle_new(vault, s, s->v[s->nv - 1], 0);
    } else if (!managed && action == DELETED_PURGE) {
      secrets_purge_inlock(vault, name);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_deleted_not_found(resp, "Secret", name);
  if (managed && action != DELETED_GET)
    return reply_managed(resp, name);
  if (action == DELETED_PURGE)
    return emu_resp_empty(resp, 204);
  return objs_reply_json(resp, 200, bundle);
}

/* ---- backup / restore ------------------------------------------------------------------------ */

static cJSON *sversion_backup_new(const struct sversion *sv)
{
  cJSON *o = cJSON_CreateObject();

  if (!o || !cJSON_AddStringToObject(o, "version", sv->version) ||
      !cJSON_AddStringToObject(o, "value", sv->value) ||
      (sv->content_type && !cJSON_AddStringToObject(o, "contentType", sv->content_type)) ||
      objs_json_add_tags(o, sv->tags) || !cJSON_AddBoolToObject(o, "enabled", sv->attrs.enabled) ||
      !cJSON_AddNumberToObject(o, "nbf", (double)sv->attrs.nbf) ||
      !cJSON_AddNumberToObject(o, "exp", (double)sv->attrs.exp) ||
      !cJSON_AddNumberToObject(o, "created", (double)sv->attrs.created) ||
      !cJSON_AddNumberToObject(o, "updated", (double)sv->attrs.updated)) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

static int op_backup(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct secret *s;
  cJSON *doc = NULL, *arr = NULL;
  int found = 0, managed = 0, ok = 0;
  size_t i;

  pthread_mutex_lock(&vault->lock);
  s = secret_find_inlock(vault, name, NULL);
  if (s && !s->e.deleted && s->nv) {
    found = 1;
    managed = s->v[s->nv - 1]->managed;
    doc = cJSON_CreateObject();
    arr = doc ? cJSON_AddArrayToObject(doc, "versions") : NULL;
    ok = arr && cJSON_AddStringToObject(doc, "name", s->e.name);
    for (i = 0; ok && !managed && i < s->nv; i++) {
      cJSON *v = sversion_backup_new(s->v[i]);

      ok = v && cJSON_AddItemToArray(arr, v);
      if (!ok)
        cJSON_Delete(v);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found || managed || !ok) {
    objs_backup_doc_free(doc);
    return !found    ? emu_resp_not_found(resp, "Secret", name)
           : managed ? reply_managed(resp, name)
                     : -1;
  }
  return objs_backup_reply(resp, doc, "Secret", name);
}

/* Re-create a secret with its versions, ids and times from a backup document. */
static enum emu_rc restore_inlock(struct emu_vault *vault, const cJSON *doc, const char *name)
{
  const cJSON *versions = cJSON_GetObjectItemCaseSensitive(doc, "versions"), *v;
  struct emu_secret_params p;
  struct secret *s;
  struct sversion *sv;
  enum emu_rc rc = EMU_E_INVALID;
  int bad = 0;

  cJSON_ArrayForEach(v, versions)
  {
    memset(&p, 0, sizeof(p));
    p.version = objs_json_str(v, "version", &bad);
    p.value = objs_json_str(v, "value", &bad);
    p.content_type = objs_json_str(v, "contentType", &bad);
    p.tags = cJSON_GetObjectItemCaseSensitive(v, "tags");
    if (bad || !p.version || !p.value)
      return EMU_E_INVALID;
    p.attrs.enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "enabled"));
    p.attrs.nbf = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "nbf"));
    p.attrs.exp = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "exp"));
    rc = secrets_add_inlock(vault, name, &p, NULL);
    if (rc != EMU_OK)
      return rc;
    s = secret_find_inlock(vault, name, NULL);
    sv = secret_version_find(s, p.version);
    sv->attrs.created =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "created"));
    sv->attrs.updated =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "updated"));
  }
  return rc;
}

static int op_restore(struct emu_req *req, struct emu_resp *resp, int arg)
{
  struct emu_vault *vault = req->vault;
  const char *err = NULL;
  char name[EMU_NAME_MAX + 1];
  cJSON *doc, *bundle = NULL;
  struct secret *s;
  enum emu_rc rc = EMU_E_INVALID;
  int ret;

  doc = objs_restore_doc_new(req, resp, name, &ret);
  if (!doc)
    return ret;
  pthread_mutex_lock(&vault->lock);
  rc = secrets_state_inlock(vault, name);
  if (rc == EMU_E_NOT_FOUND) {
    rc = restore_inlock(vault, doc, name);
    s = secret_find_inlock(vault, name, NULL);
    if (rc == EMU_OK)
      bundle = bundle_new(vault, s, s->v[s->nv - 1], 0);
    else if (s && !s->e.deleted)
      secrets_purge_hard_inlock(vault, name);
  } else if (rc == EMU_OK) {
    err = "exists";
  }
  pthread_mutex_unlock(&vault->lock);
  objs_backup_doc_free(doc);
  if (err)
    return emu_resp_error(resp, 409, "Conflict", NULL,
                          "Secret %s already exists; a backup restores only an absent name.", name);
  if (rc == EMU_E_INVALID)
    return emu_resp_bad_param(resp, "The backup blob holds an invalid secret version.");
  if (rc != EMU_OK)
    return reply_rc(resp, rc, name);
  return objs_reply_json(resp, 200, bundle);
}

static const struct objs_route secret_routes[] = {
    {"GET", 0, NULL, NULL, "secrets.list", op_list, 0},
    {"PUT", 1, NULL, NULL, "secrets.set", op_set, 0},
    {"GET", 1, NULL, NULL, "secrets.get", op_get, 0},
    {"PATCH", 1, NULL, NULL, "secrets.update", op_update, 0},
    {"DELETE", 1, NULL, NULL, "secrets.delete", op_delete, 0},
    {"POST", 1, NULL, NULL, "secrets.restore", op_restore, 0},
    {"GET", 2, "versions", NULL, "secrets.versions", op_versions, 0},
    {"POST", 2, "backup", NULL, "secrets.backup", op_backup, 0},
    {"GET", 2, NULL, NULL, "secrets.get", op_get, 0},
    {"PATCH", 2, NULL, NULL, "secrets.update", op_update, 0},
};

static const struct objs_route deleted_secret_routes[] = {
    {"GET", 0, NULL, NULL, "secrets.deleted_list", op_list, 1},
    {"GET", 1, NULL, NULL, "secrets.deleted_get", op_deleted, DELETED_GET},
    {"DELETE", 1, NULL, NULL, "secrets.purge", op_deleted, DELETED_PURGE},
    {"POST", 2, "recover", NULL, "secrets.recover", op_deleted, DELETED_RECOVER},
};

int emu_secrets_handle(struct emu_req *req, struct emu_resp *resp)
{
  if (!strcmp(req->collection, "deletedsecrets"))
    return objs_dispatch(req, resp, deleted_secret_routes,
                         sizeof(deleted_secret_routes) / sizeof(deleted_secret_routes[0]));
  return objs_dispatch(req, resp, secret_routes, sizeof(secret_routes) / sizeof(secret_routes[0]));
}

/* ---- seeding and teardown ------------------------------------------------------------------ */

/* {"vault":"demo","name":"db-password","value":"...","contentType"?,"tags"?,"enabled"?} */
int secrets_seed(struct emu_vault *vault, const cJSON *item)
{
  struct emu_secret_params p;
  const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, "value");
  const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(item, "enabled");
  const char *name, *err = NULL;
  int bad = 0;
  enum emu_rc rc;

  memset(&p, 0, sizeof(p));
  p.attrs.enabled = 1;
  name = objs_json_str(item, "name", &bad);
  p.content_type = objs_json_str(item, "contentType", &bad);
  p.tags = cJSON_GetObjectItemCaseSensitive(item, "tags");
  if (bad || !name || !emu_name_valid(name) || !cJSON_IsString(value) ||
      strlen(value->valuestring) > EMU_SECRET_VALUE_MAX || (enabled && !cJSON_IsBool(enabled))) {
    fprintf(stderr,
            "akv-emulator: seed secret: need a valid \"name\", a string \"value\" (<= %d "
            "bytes), optional string \"contentType\", boolean \"enabled\", tags object\n",
            EMU_SECRET_VALUE_MAX);
    return -1;
  }
  if (p.tags && emu_tags_valid(p.tags, &err)) {
    fprintf(stderr, "akv-emulator: seed secret %s: %s\n", name, err);
    return -1;
  }
  if (enabled)
    p.attrs.enabled = cJSON_IsTrue(enabled);
  p.value = value->valuestring;
  pthread_mutex_lock(&vault->lock);
  rc = secrets_add_inlock(vault, name, &p, NULL);
  pthread_mutex_unlock(&vault->lock);
  if (rc != EMU_OK) {
    fprintf(stderr, "akv-emulator: seed secret %s: cannot store it (%d)\n", name, (int)rc);
    return -1;
  }
  return 0;
}

int emu_objs_seed(struct emu_vault *vault, const char *collection, const cJSON *item)
{
  if (vault->kind != EMU_KIND_VAULT) {
    fprintf(stderr,
            "akv-emulator: seed: %s can only be seeded into a Key Vault, not the Managed "
            "HSM %s\n",
            collection, vault->name);
    return -1;
  }
  if (!cJSON_IsObject(item)) {
    fprintf(stderr, "akv-emulator: seed: each %s element must be an object\n", collection);
    return -1;
  }
  if (!strcmp(collection, "secrets"))
    return secrets_seed(vault, item);
  if (!strcmp(collection, "certificates"))
    return certs_seed(vault, item);
  fprintf(stderr, "akv-emulator: seed: unknown collection %s\n", collection);
  return -1;
}

void emu_objs_vault_free(struct emu_vault *vault)
{
  secrets_store_free(vault->secrets);
  vault->secrets = NULL;
  certs_store_free(vault->certs);
  vault->certs = NULL;
}
