/* SPDX-License-Identifier: Apache-2.0 */
/*
 * keys.c - the key store of a vault and the /keys, /deletedkeys and /rng REST
 * operations (create, import, get, list, versions, update, rotate, soft delete,
 * recover, purge, crypto operations).
 */
#include "core.h"
#include "attest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

struct emu_key_version {
  int refs;
  char version[EMU_VERSION_LEN + 1];
  char *kid;
  char kty[16];
  char crv[8];
  int bits; /* RSA modulus / oct key bits */
  unsigned long pubexp;
  EVP_PKEY *pkey;   /* RSA / EC */
  unsigned char *k; /* oct */
  size_t klen;
  /* mutable, under the vault lock */
  cJSON *key_ops; /* array of strings */
  cJSON *tags;    /* object or NULL */
  struct emu_attrs attrs;
  int managed;
};

struct emu_key {
  char *name;
  struct emu_key_version **v; /* creation order; last = latest */
  size_t nv, capv;
  bool deleted;
  struct emu_deleted del;
  cJSON *rotation_policy; /* as last PUT (validated), NULL = service default */
};

struct emu_keystore {
  struct emu_key **k; /* sorted by name, case-insensitive */
  size_t n, cap;
};

static const char *const KEY_OPS[] = {"encrypt",   "decrypt", "sign",   "verify",   "wrapKey",
                                      "unwrapKey", "import",  "export", "deriveKey"};

/* ---- store primitives ------------------------------------------------------------ */

struct emu_keystore *keystore_new(void)
{
  return calloc(1, sizeof(struct emu_keystore));
}

struct emu_key_version *emu_key_version_ref(struct emu_key_version *kv)
{
  if (kv)
    __atomic_add_fetch(&kv->refs, 1, __ATOMIC_ACQ_REL);
  return kv;
}

void emu_key_version_unref(struct emu_key_version *kv)
{
  if (!kv || __atomic_sub_fetch(&kv->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  free(kv->kid);
  EVP_PKEY_free(kv->pkey);
  if (kv->k) {
    OPENSSL_cleanse(kv->k, kv->klen);
    free(kv->k);
  }
  cJSON_Delete(kv->key_ops);
  cJSON_Delete(kv->tags);
  free(kv);
}

EVP_PKEY *emu_key_version_pkey_peek(const struct emu_key_version *kv)
{
  return kv->pkey;
}

const char *emu_key_version_kid_peek(const struct emu_key_version *kv)
{
  return kv->kid;
}

static void key_free(struct emu_key *key)
{
  if (!key)
    return;
  for (size_t i = 0; i < key->nv; i++)
    emu_key_version_unref(key->v[i]);
  free(key->v);
  free(key->name);
  cJSON_Delete(key->rotation_policy);
  free(key);
}

void keystore_free(struct emu_keystore *ks)
{
  if (!ks)
    return;
  for (size_t i = 0; i < ks->n; i++)
    key_free(ks->k[i]);
  free(ks->k);
  free(ks);
}

static size_t find_pos_inlock(const struct emu_keystore *ks, const char *name, bool *found)
{
  size_t lo = 0, hi = ks->n;
  *found = false;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcasecmp(ks->k[mid]->name, name);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static struct emu_key *find_inlock(const struct emu_keystore *ks, const char *name)
{
  bool found;
  size_t pos = find_pos_inlock(ks, name, &found);
  return found ? ks->k[pos] : NULL;
}

static struct emu_key_version *version_inlock(const struct emu_key *key, const char *version)
{
  if (!key || key->nv == 0)
    return NULL;
  if (!version || !*version)
    return key->v[key->nv - 1];
  for (size_t i = 0; i < key->nv; i++)
    if (strcasecmp(key->v[i]->version, version) == 0)
      return key->v[i];
  return NULL;
}

static void remove_inlock(struct emu_keystore *ks, struct emu_key *key)
{
  for (size_t i = 0; i < ks->n; i++) {
    if (ks->k[i] == key) {
      memmove(&ks->k[i], &ks->k[i + 1], (ks->n - i - 1) * sizeof(ks->k[0]));
      ks->n--;
      key_free(key);
      return;
    }
  }
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int add_bn(cJSON *o, const char *member, EVP_PKEY *pkey, const char *param, size_t pad)
{
  BIGNUM *bn = NULL;
  unsigned char buf[1024];
  int n, rc = -1;
  if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
    return -1;
  if ((size_t)BN_num_bytes(bn) <= sizeof(buf)) {
    n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    if (n >= 0) {
      char *t = emu_b64url_encode(buf, (size_t)n);
      if (t && cJSON_AddStringToObject(o, member, t))
        rc = 0;
      free(t);
    }
  }
  BN_free(bn);
  return rc;
}

static size_t crv_len(const char *crv)
{
  return !strcmp(crv, "P-384") ? 48 : !strcmp(crv, "P-521") ? 66 : 32;
}

static cJSON *jwk_json_inlock(const struct emu_key_version *kv)
{
  cJSON *k = cJSON_CreateObject();
  if (!k || !cJSON_AddStringToObject(k, "kid", kv->kid) ||
      !cJSON_AddStringToObject(k, "kty", kv->kty))
    goto fail;
  cJSON *ops = cJSON_Duplicate(kv->key_ops, 1);
  if (!ops)
    goto fail;
  cJSON_AddItemToObject(k, "key_ops", ops);
  if (!strncmp(kv->kty, "RSA", 3)) {
    if (add_bn(k, "n", kv->pkey, OSSL_PKEY_PARAM_RSA_N, 0) != 0 ||
        add_bn(k, "e", kv->pkey, OSSL_PKEY_PARAM_RSA_E, 0) != 0)
      goto fail;
  } else if (!strncmp(kv->kty, "EC", 2)) {
    size_t fl = crv_len(kv->crv);
    if (!cJSON_AddStringToObject(k, "crv", kv->crv) ||
        add_bn(k, "x", kv->pkey, OSSL_PKEY_PARAM_EC_PUB_X, fl) != 0 ||
        add_bn(k, "y", kv->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, fl) != 0)
      goto fail;
  }
  return k;
fail:
  cJSON_Delete(k);
  return NULL;
}

static cJSON *attrs_json_inlock(const struct emu_vault *vault, const struct emu_key_version *kv)
{
  cJSON *a = emu_attrs_json_new(&kv->attrs);
  if (!a)
    return NULL;
  if (!cJSON_AddBoolToObject(a, "exportable", kv->attrs.exportable) ||
      (vault->kind == EMU_KIND_VAULT &&
       !cJSON_AddStringToObject(a, "hsmPlatform", strstr(kv->kty, "-HSM") ? "2" : "0"))) {
    cJSON_Delete(a);
    return NULL;
  }
  return a;
}

static int add_tags_managed(cJSON *o, const struct emu_key_version *kv)
{
  if (kv->tags) {
    cJSON *t = cJSON_Duplicate(kv->tags, 1);
    if (!t)
      return -1;
    cJSON_AddItemToObject(o, "tags", t);
  }
  if (kv->managed && !cJSON_AddTrueToObject(o, "managed"))
    return -1;
  return 0;
}

static cJSON *bundle_json_inlock(const struct emu_vault *vault, const struct emu_key_version *kv)
{
  cJSON *b = cJSON_CreateObject(), *k = NULL, *a = NULL;
  if (!b || !(k = jwk_json_inlock(kv)))
    goto fail;
  cJSON_AddItemToObject(b, "key", k);
  if (!(a = attrs_json_inlock(vault, kv)))
    goto fail;
  cJSON_AddItemToObject(b, "attributes", a);
  if (add_tags_managed(b, kv) != 0)
    goto fail;
  return b;
fail:
  cJSON_Delete(b);
  return NULL;
}

/* KeyItem: versioned kid for /versions, base id for lists. */
static cJSON *item_json_inlock(const struct emu_vault *vault, const struct emu_key *key,
                               const struct emu_key_version *kv, bool versioned)
{
  cJSON *o = cJSON_CreateObject(), *a;
  char *id = versioned ? strdup(kv->kid) : emu_obj_id_new(vault, "keys", key->name, NULL);
  if (!o || !id || !cJSON_AddStringToObject(o, "kid", id) || !(a = attrs_json_inlock(vault, kv)))
    goto fail;
  cJSON_AddItemToObject(o, "attributes", a);
  if (add_tags_managed(o, kv) != 0)
    goto fail;
  free(id);
  return o;
fail:
  free(id);
  cJSON_Delete(o);
  return NULL;
}

cJSON *emu_key_version_bundle_new(struct emu_vault *vault, const struct emu_key_version *kv)
{
  pthread_mutex_lock(&vault->lock);
  cJSON *b = bundle_json_inlock(vault, kv);
  pthread_mutex_unlock(&vault->lock);
  return b;
}

static cJSON *deleted_bundle_inlock(const struct emu_vault *vault, const struct emu_key *key)
{
  cJSON *b = bundle_json_inlock(vault, key->v[key->nv - 1]);
  if (b && emu_deleted_json_add(b, vault, "deletedkeys", key->name, &key->del) != 0) {
    cJSON_Delete(b);
    b = NULL;
  }
  return b;
}

/* ---- adding versions ---------------------------------------------------------------- */

static cJSON *default_ops(const char *kty)
{
  static const char *const rsa[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"};
  static const char *const ec[] = {"sign", "verify"};
  static const char *const oct[] = {"encrypt", "decrypt", "wrapKey", "unwrapKey"};
  if (!strncmp(kty, "RSA", 3))
    return cJSON_CreateStringArray(rsa, 6);
  if (!strncmp(kty, "EC", 2))
    return cJSON_CreateStringArray(ec, 2);
  return cJSON_CreateStringArray(oct, 4);
}

/* Validate key_ops: array of known operation names (case-insensitive, stored canonical). */
static int ops_parse(const cJSON *ops, cJSON **out, const char **err)
{
  cJSON *arr = NULL;
  const cJSON *it;
  *out = NULL;
  if (!ops || cJSON_IsNull(ops))
    return 0;
  if (!cJSON_IsArray(ops)) {
    *err = "key_ops must be an array of strings";
    return -1;
  }
  arr = cJSON_CreateArray();
  if (!arr) {
    *err = "out of memory";
    return -1;
  }
  cJSON_ArrayForEach(it, ops)
  {
    size_t i;
    if (!cJSON_IsString(it))
      goto bad;
    for (i = 0; i < sizeof(KEY_OPS) / sizeof(KEY_OPS[0]); i++)
      if (strcasecmp(it->valuestring, KEY_OPS[i]) == 0)
        break;
    if (i == sizeof(KEY_OPS) / sizeof(KEY_OPS[0]))
      goto bad;
    cJSON_AddItemToArray(arr, cJSON_CreateString(KEY_OPS[i]));
  }
  *out = arr;
  return 0;
bad:
  cJSON_Delete(arr);
  *err = "key_ops contains an unknown operation; allowed: encrypt, decrypt, sign, verify, wrapKey, "
         "unwrapKey, import, export";
  return -1;
}

/* Insert kv as the newest version of `name` (takes kv). */
static enum emu_rc add_version(struct emu_vault *vault, const char *name,
                               struct emu_key_version *kv)
{
  struct emu_keystore *ks = vault->keys;
  struct emu_key *key;
  enum emu_rc rc = EMU_E_NOMEM;
  bool found;
  pthread_mutex_lock(&vault->lock);
  size_t pos = find_pos_inlock(ks, name, &found);
  if (found) {
    key = ks->k[pos];
    if (key->deleted) {
      rc = emu_deleted_visible(&key->del) ? EMU_E_DELETED_RECOVERABLE : EMU_E_BEING_DELETED;
      goto out;
    }
    if (key->nv >= EMU_VERSIONS_MAX) {
      rc = EMU_E_FULL;
      goto out;
    }
  } else {
    if (ks->n >= EMU_KEYS_MAX) {
      rc = EMU_E_FULL;
      goto out;
    }
    if (ks->n == ks->cap) {
      size_t cap = ks->cap ? ks->cap * 2 : 16;
      struct emu_key **nk = realloc(ks->k, cap * sizeof(*nk));
      if (!nk)
        goto out;
      ks->k = nk;
      ks->cap = cap;
    }
    key = calloc(1, sizeof(*key));
    if (!key || !(key->name = strdup(name))) {
      free(key);
      goto out;
    }
    memmove(&ks->k[pos + 1], &ks->k[pos], (ks->n - pos) * sizeof(ks->k[0]));
    ks->k[pos] = key;
    ks->n++;
  }
  if (key->nv == key->capv) {
    size_t cap = key->capv ? key->capv * 2 : 4;
    struct emu_key_version **nv = realloc(key->v, cap * sizeof(*nv));
    if (!nv) {
      if (key->nv == 0)
        remove_inlock(ks, key);
      goto out;
    }
    key->v = nv;
    key->capv = cap;
  }
  /* the kid uses the stored (first-created) spelling of the name */
  kv->kid = emu_obj_id_new(vault, "keys", key->name, kv->version);
  if (!kv->kid) {
    if (key->nv == 0)
      remove_inlock(ks, key);
    goto out;
  }
  key->v[key->nv++] = kv;
  kv = NULL;
  rc = EMU_OK;
out:
  pthread_mutex_unlock(&vault->lock);
  emu_key_version_unref(kv);
  return rc;
}

/* New version object around material (pkey up-ref'd / k copied). */
static struct emu_key_version *kv_new(const char *kty, const char *crv, EVP_PKEY *pkey,
                                      const unsigned char *k, size_t klen,
                                      const struct emu_key_params *p, const char *version)
{
  struct emu_key_version *kv = calloc(1, sizeof(*kv));
  const char *err;
  if (!kv)
    return NULL;
  kv->refs = 1;
  snprintf(kv->kty, sizeof(kv->kty), "%s", kty);
  snprintf(kv->crv, sizeof(kv->crv), "%s", crv ? crv : "");
  if (version)
    snprintf(kv->version, sizeof(kv->version), "%s", version);
  else
    emu_version_new(kv->version);
  if (pkey) {
    if (!EVP_PKEY_up_ref(pkey))
      goto fail;
    kv->pkey = pkey;
    kv->bits = EVP_PKEY_get_bits(pkey);
  } else {
    kv->k = malloc(klen);
    if (!kv->k)
      goto fail;
    memcpy(kv->k, k, klen);
    kv->klen = klen;
    kv->bits = (int)klen * 8;
  }
  if (p->key_ops) {
    if (ops_parse(p->key_ops, &kv->key_ops, &err) != 0)
      goto fail;
  } else {
    kv->key_ops = default_ops(kty);
  }
  if (!kv->key_ops)
    goto fail;
  if (p->tags && !cJSON_IsNull(p->tags) && !(kv->tags = cJSON_Duplicate(p->tags, 1)))
    goto fail;
  kv->attrs = p->attrs;
  kv->attrs.created = kv->attrs.updated = emu_now();
  kv->managed = p->managed;
  return kv;
fail:
  emu_key_version_unref(kv);
  return NULL;
}

static const char *pkey_crv(EVP_PKEY *pkey)
{
  char group[64];
  size_t len = 0;
  if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len))
    return NULL;
  if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))
    return "P-256";
  if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384"))
    return "P-384";
  if (!strcmp(group, "secp521r1") || !strcmp(group, "P-521"))
    return "P-521";
  if (!strcmp(group, "secp256k1"))
    return "P-256K";
  return NULL;
}

enum emu_rc emu_keys_add_pkey(struct emu_vault *vault, const char *name, EVP_PKEY *pkey,
                              const struct emu_key_params *params,
                              char version_out[EMU_VERSION_LEN + 1])
{
  char kty[16];
  const char *crv = NULL;
  bool hsm = vault->kind == EMU_KIND_MHSM;
  if (!emu_name_valid(name) || !pkey)
    return EMU_E_INVALID;
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    snprintf(kty, sizeof(kty), "RSA%s", hsm ? "-HSM" : "");
  } else if (EVP_PKEY_is_a(pkey, "EC") && (crv = pkey_crv(pkey))) {
    snprintf(kty, sizeof(kty), "EC%s", hsm ? "-HSM" : "");
  } else {
    return EMU_E_INVALID;
  }
  struct emu_key_version *kv = kv_new(kty, crv, pkey, NULL, 0, params, params->version);
  if (!kv)
    return EMU_E_NOMEM;
  if (version_out)
    memcpy(version_out, kv->version, EMU_VERSION_LEN + 1);
  return add_version(vault, name, kv);
}

struct emu_key_version *emu_keys_get(struct emu_vault *vault, const char *name, const char *version)
{
  struct emu_key_version *kv = NULL;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && !key->deleted)
    kv = emu_key_version_ref(version_inlock(key, version));
  pthread_mutex_unlock(&vault->lock);
  return kv;
}

enum emu_rc emu_keys_delete(struct emu_vault *vault, const char *name, cJSON **bundle)
{
  enum emu_rc rc = EMU_E_NOT_FOUND;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && !key->deleted) {
    key->deleted = true;
    emu_deleted_init(&key->del);
    rc = EMU_OK;
    if (bundle && !(*bundle = deleted_bundle_inlock(vault, key)))
      rc = EMU_E_NOMEM;
  }
  pthread_mutex_unlock(&vault->lock);
  return rc;
}

enum emu_rc emu_keys_recover(struct emu_vault *vault, const char *name, cJSON **bundle)
{
  enum emu_rc rc = EMU_E_NOT_FOUND;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && key->deleted && emu_deleted_visible(&key->del)) {
    key->deleted = false;
    rc = EMU_OK;
    if (bundle && !(*bundle = bundle_json_inlock(vault, key->v[key->nv - 1])))
      rc = EMU_E_NOMEM;
  }
  pthread_mutex_unlock(&vault->lock);
  return rc;
}

enum emu_rc emu_keys_update_attrs(struct emu_vault *vault, const char *name, const char *version,
                                  const struct emu_attrs *attrs, const cJSON *tags)
{
  enum emu_rc rc = EMU_E_NOT_FOUND;
  cJSON *t = NULL;
  if (tags && !cJSON_IsNull(tags) && !(t = cJSON_Duplicate(tags, 1)))
    return EMU_E_NOMEM;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  struct emu_key_version *kv = key && !key->deleted ? version_inlock(key, version) : NULL;
  if (kv) {
    kv->attrs.enabled = attrs->enabled;
    kv->attrs.nbf = attrs->nbf;
    kv->attrs.exp = attrs->exp;
    kv->attrs.updated = emu_now();
    if (tags) {
      cJSON_Delete(kv->tags);
      kv->tags = t;
      t = NULL;
    }
    rc = EMU_OK;
  }
  pthread_mutex_unlock(&vault->lock);
  cJSON_Delete(t);
  return rc;
}

/* Remove a key whatever its state (undoing a partial restore). */
static void keys_purge_now(struct emu_vault *vault, const char *name)
{
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key)
    remove_inlock(vault->keys, key);
  pthread_mutex_unlock(&vault->lock);
}

enum emu_rc emu_keys_purge(struct emu_vault *vault, const char *name)
{
  enum emu_rc rc = EMU_E_NOT_FOUND;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && key->deleted && emu_deleted_visible(&key->del)) {
    remove_inlock(vault->keys, key);
    rc = EMU_OK;
  }
  pthread_mutex_unlock(&vault->lock);
  return rc;
}

/* ---- REST helpers ---------------------------------------------------------------------- */

static int rc_resp(struct emu_resp *resp, enum emu_rc rc, const char *name)
{
  switch (rc) {
  case EMU_E_NOT_FOUND:
    return emu_resp_not_found(resp, "Key", name);
  case EMU_E_BEING_DELETED:
    return emu_resp_error(
        resp, 409, "Conflict", "ObjectIsBeingDeleted",
        "Key %s is currently being deleted and cannot be re-created; retry later.", name);
  case EMU_E_DELETED_RECOVERABLE:
    return emu_resp_error(
        resp, 409, "Conflict", "ObjectIsDeletedButRecoverable",
        "Key %s is currently in a deleted but recoverable state, and its name "
        "cannot be reused; in this state, the key can only be recovered or purged.",
        name);
  case EMU_E_FULL:
    return emu_resp_error(
        resp, 403, "Forbidden", "QuotaExceeded",
        "The emulator limit of %d keys per vault / %d versions per key is reached.", EMU_KEYS_MAX,
        EMU_VERSIONS_MAX);
  case EMU_E_INVALID:
    return emu_resp_bad_param(resp, "Invalid key parameters.");
  default:
    return -1;
  }
}

static int respond_bundle(struct emu_vault *vault, struct emu_resp *resp,
                          const struct emu_key_version *kv)
{
  cJSON *b = emu_key_version_bundle_new(vault, kv);
  if (!b)
    return -1;
  return emu_resp_json(resp, 200, b);
}

struct create_spec {
  char kty[16];
  char crv[8];
  int bits;
  unsigned long pubexp;
};

/* kty/key_size/public_exponent/crv of a create request, after MHSM's -HSM upgrade. */
static int parse_create(const struct emu_vault *vault, const cJSON *body, struct create_spec *cs,
                        struct emu_resp *resp)
{
  const cJSON *kty = cJSON_GetObjectItemCaseSensitive(body, "kty");
  const cJSON *size = cJSON_GetObjectItemCaseSensitive(body, "key_size");
  const cJSON *pe = cJSON_GetObjectItemCaseSensitive(body, "public_exponent");
  const cJSON *crv = cJSON_GetObjectItemCaseSensitive(body, "crv");
  bool mhsm = vault->kind == EMU_KIND_MHSM;
  memset(cs, 0, sizeof(*cs));
  if (!cJSON_IsString(kty))
    return emu_resp_bad_param(resp, "The parameter 'kty' is required and must be a string."), -1;
  const char *t = kty->valuestring;
  bool hsm = mhsm || strstr(t, "-HSM") != NULL;
  if (!strcmp(t, "RSA") || !strcmp(t, "RSA-HSM"))
    snprintf(cs->kty, sizeof(cs->kty), "RSA%s", hsm ? "-HSM" : "");
  else if (!strcmp(t, "EC") || !strcmp(t, "EC-HSM"))
    snprintf(cs->kty, sizeof(cs->kty), "EC%s", hsm ? "-HSM" : "");
  else if ((!strcmp(t, "oct") || !strcmp(t, "oct-HSM")) && mhsm)
    snprintf(cs->kty, sizeof(cs->kty), "oct-HSM");
  else if (!strcmp(t, "oct") || !strcmp(t, "oct-HSM"))
    return emu_resp_bad_param(resp,
                              "Key type %s is not supported by this key vault; symmetric "
                              "keys need a managed HSM.",
                              t),
           -1;
  else
    return emu_resp_bad_param(resp,
                              "Invalid key type '%.32s'. Allowed: EC, EC-HSM, RSA, RSA-HSM, "
                              "oct-HSM.",
                              t),
           -1;
  if (size && !cJSON_IsNull(size) &&
      (!cJSON_IsNumber(size) || size->valuedouble != (int)size->valuedouble))
    return emu_resp_bad_param(resp, "key_size must be an integer."), -1;
  if (pe && !cJSON_IsNull(pe) &&
      (!cJSON_IsNumber(pe) || pe->valuedouble != (double)(unsigned long)pe->valuedouble))
    return emu_resp_bad_param(resp, "public_exponent must be an integer."), -1;
  if (crv && !cJSON_IsNull(crv) && !cJSON_IsString(crv))
    return emu_resp_bad_param(resp, "crv must be a string."), -1;
  int bits = size && cJSON_IsNumber(size) ? size->valueint : 0;
  if (cs->kty[0] == 'R') {
    cs->bits = bits ? bits : 2048;
    if (cs->bits != 2048 && cs->bits != 3072 && cs->bits != 4096)
      return emu_resp_bad_param(resp, "Invalid key size %d for RSA; allowed 2048, 3072, 4096.",
                                bits),
             -1;
    cs->pubexp = pe && cJSON_IsNumber(pe) ? (unsigned long)pe->valuedouble : 65537;
    if (cs->pubexp != 3 && cs->pubexp != 65537)
      return emu_resp_bad_param(resp, "Invalid public_exponent %lu; allowed 3 and 65537.",
                                cs->pubexp),
             -1;
  } else if (cs->kty[0] == 'E') {
    const char *c = crv && cJSON_IsString(crv) ? crv->valuestring : "P-256";
    if (strcmp(c, "P-256") && strcmp(c, "P-384") && strcmp(c, "P-521") && strcmp(c, "P-256K"))
      return emu_resp_bad_param(resp,
                                "Invalid curve name '%.16s'. Allowed: P-256, P-384, P-521, "
                                "P-256K.",
                                c),
             -1;
    snprintf(cs->crv, sizeof(cs->crv), "%s", c);
  } else {
    cs->bits = bits ? bits : 256;
    if (cs->bits != 128 && cs->bits != 192 && cs->bits != 256)
      return emu_resp_bad_param(resp, "Invalid key size %d for oct-HSM; allowed 128, 192, 256.",
                                bits),
             -1;
  }
  return 0;
}

static const char *ossl_group(const char *crv)
{
  return !strcmp(crv, "P-256")   ? "prime256v1"
         : !strcmp(crv, "P-384") ? "secp384r1"
         : !strcmp(crv, "P-521") ? "secp521r1"
                                 : "secp256k1";
}

/* Generate the material of cs. 0 or -1. */
static int generate(const struct create_spec *cs, EVP_PKEY **pkey, unsigned char *k)
{
  *pkey = NULL;
  if (cs->kty[0] == 'o')
    return RAND_bytes(k, cs->bits / 8) == 1 ? 0 : -1;
  if (cs->kty[0] == 'E') {
    *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", ossl_group(cs->crv));
    return *pkey ? 0 : -1;
  }
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
  BIGNUM *e = BN_new();
  int rc = -1;
  if (ctx && e && BN_set_word(e, cs->pubexp) && EVP_PKEY_keygen_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, cs->bits) == 1 &&
      EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) == 1 && EVP_PKEY_generate(ctx, pkey) == 1)
    rc = 0;
  EVP_PKEY_CTX_free(ctx);
  BN_free(e);
  return rc;
}

/* Common parameters of create/import: key_ops, attributes, tags. */
static int parse_common(const cJSON *body, struct emu_key_params *p, bool allow_ops,
                        struct emu_resp *resp)
{
  const char *err = NULL;
  cJSON *ops = NULL;
  memset(p, 0, sizeof(*p));
  p->attrs.enabled = 1;
  if (emu_attrs_apply(cJSON_GetObjectItemCaseSensitive(body, "attributes"), &p->attrs, 1, &err) !=
          0 ||
      emu_tags_valid(cJSON_GetObjectItemCaseSensitive(body, "tags"), &err) != 0)
    return emu_resp_bad_param(resp, "%s", err), -1;
  if (allow_ops) {
    if (ops_parse(cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &ops, &err) != 0)
      return emu_resp_bad_param(resp, "%s", err), -1;
    cJSON_Delete(ops);
    p->key_ops = cJSON_GetObjectItemCaseSensitive(body, "key_ops");
    if (cJSON_IsNull(p->key_ops))
      p->key_ops = NULL;
  }
  p->tags = cJSON_GetObjectItemCaseSensitive(body, "tags");
  return 0;
}

/* Add material as a new version and answer with its bundle. */
static int store_and_respond(struct emu_vault *vault, const char *name, const char *kty,
                             const char *crv, EVP_PKEY *pkey, const unsigned char *k, size_t klen,
                             const struct emu_key_params *p, unsigned long pubexp,
                             struct emu_resp *resp)
{
  struct emu_key_version *kv = kv_new(kty, crv, pkey, k, klen, p, NULL);
  enum emu_rc rc;
  int out;
  if (!kv)
    return -1;
  kv->pubexp = pubexp;
  emu_key_version_ref(kv); /* keep one for the response */
  rc = add_version(vault, name, kv);
  if (rc == EMU_OK)
    out = respond_bundle(vault, resp, kv);
  else
    out = rc_resp(resp, rc, name);
  emu_key_version_unref(kv);
  return out;
}

static int create_key(struct emu_vault *vault, const char *name, const cJSON *body,
                      struct emu_resp *resp)
{
  struct create_spec cs;
  struct emu_key_params p;
  EVP_PKEY *pkey = NULL;
  unsigned char k[32];
  int rc;
  if (!body)
    return emu_resp_bad_param(resp, "The request body is required.");
  if (parse_create(vault, body, &cs, resp) != 0 || parse_common(body, &p, true, resp) != 0)
    return 0;
  /* fail fast on a deleted name before spending time on key generation */
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  enum emu_rc st = key && key->deleted ? (emu_deleted_visible(&key->del) ? EMU_E_DELETED_RECOVERABLE
                                                                         : EMU_E_BEING_DELETED)
                                       : EMU_OK;
  pthread_mutex_unlock(&vault->lock);
  if (st != EMU_OK)
    return rc_resp(resp, st, name);
  if (generate(&cs, &pkey, k) != 0) {
    ERR_clear_error();
    return -1;
  }
  rc = store_and_respond(vault, name, cs.kty, cs.crv, pkey, k, (size_t)cs.bits / 8, &p, cs.pubexp,
                         resp);
  EVP_PKEY_free(pkey);
  OPENSSL_cleanse(k, sizeof(k));
  return rc;
}

/* ---- import ------------------------------------------------------------------------------ */

static int jwk_bn(const cJSON *jwk, const char *name, BIGNUM **out, size_t *len_out)
{
  unsigned char *raw = NULL;
  size_t len = 0;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(jwk, name);
  *out = NULL;
  if (!v)
    return 0;
  if (!cJSON_IsString(v) || emu_b64url_decode(v->valuestring, &raw, &len) != 0 || len == 0 ||
      len > 1024) {
    free(raw);
    return -1;
  }
  *out = BN_bin2bn(raw, (int)len, NULL);
  if (len_out)
    *len_out = len;
  OPENSSL_cleanse(raw, len);
  free(raw);
  return *out ? 1 : -1;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  EVP_PKEY *pkey = NULL;
  if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey;
}

static EVP_PKEY *import_rsa(const cJSON *jwk, const char **err)
{
  static const char *const names[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
  static const char *const params[] = {
      OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,           OSSL_PKEY_PARAM_RSA_D,
      OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,     OSSL_PKEY_PARAM_RSA_EXPONENT1,
      OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  BIGNUM *bn[8] = {0};
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  EVP_PKEY *pkey = NULL;
  int have = 0;
  *err = "The key is not a valid RSA key.";
  if (!bld)
    goto out;
  for (int i = 0; i < 8; i++) {
    int r = jwk_bn(jwk, names[i], &bn[i], NULL);
    if (r < 0) {
      *err = "A member of the JSON web key is not valid base64url.";
      goto out;
    }
    if (r > 0)
      have |= 1 << i;
  }
  if ((have & 7) != 7) {
    *err = "An RSA key import needs n, e and d (the private key).";
    goto out;
  }
  int crt = (have & 0xf8) == 0xf8;
  for (int i = 0; i < (crt ? 8 : 3); i++)
    if (!OSSL_PARAM_BLD_push_BN(bld, params[i], bn[i]))
      goto out;
  pkey = pkey_fromdata("RSA", bld);
  if (pkey) {
    int bits = EVP_PKEY_get_bits(pkey);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pkey, NULL);
    bool ok = c && (!crt || EVP_PKEY_check(c) == 1);
    EVP_PKEY_CTX_free(c);
    if (!ok || (bits != 2048 && bits != 3072 && bits != 4096)) {
      *err = ok ? "RSA keys must be 2048, 3072 or 4096 bits." : "The RSA key is inconsistent.";
      EVP_PKEY_free(pkey);
      pkey = NULL;
    }
  }
out:
  for (int i = 0; i < 8; i++)
    BN_clear_free(bn[i]);
  OSSL_PARAM_BLD_free(bld);
  ERR_clear_error();
  return pkey;
}

static EVP_PKEY *import_ec(const cJSON *jwk, const char *crv, const char **err)
{
  BIGNUM *x = NULL, *y = NULL, *d = NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  EVP_PKEY *pkey = NULL;
  unsigned char pub[1 + 2 * 66];
  size_t fl = crv_len(crv);
  *err = "The key is not a valid EC key.";
  if (!bld || jwk_bn(jwk, "x", &x, NULL) <= 0 || jwk_bn(jwk, "y", &y, NULL) <= 0)
    goto out;
  if (jwk_bn(jwk, "d", &d, NULL) <= 0) {
    *err = "An EC key import needs x, y and d (the private key).";
    goto out;
  }
  pub[0] = 4;
  if (BN_bn2binpad(x, pub + 1, (int)fl) < 0 || BN_bn2binpad(y, pub + 1 + fl, (int)fl) < 0)
    goto out;
  if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, ossl_group(crv), 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * fl) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
    goto out;
  pkey = pkey_fromdata("EC", bld);
  if (pkey) {
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pkey, NULL);
    if (!c || EVP_PKEY_check(c) != 1) {
      *err = "The EC key is inconsistent (point not on the curve or d does not match).";
      EVP_PKEY_free(pkey);
      pkey = NULL;
    }
    EVP_PKEY_CTX_free(c);
  }
out:
  BN_free(x);
  BN_free(y);
  BN_clear_free(d);
  OSSL_PARAM_BLD_free(bld);
  ERR_clear_error();
  return pkey;
}

static int import_key(struct emu_vault *vault, const char *name, const cJSON *body,
                      struct emu_resp *resp)
{
  const cJSON *jwk = cJSON_GetObjectItemCaseSensitive(body, "key");
  const cJSON *hsmj = cJSON_GetObjectItemCaseSensitive(body, "Hsm");
  const cJSON *ktyj, *crvj;
  struct emu_key_params p;
  EVP_PKEY *pkey = NULL;
  unsigned char *k = NULL;
  size_t klen = 0;
  const char *err = NULL, *crv = NULL;
  char kty[16];
  int rc = 0;
  bool mhsm = vault->kind == EMU_KIND_MHSM;

  if (!body || !cJSON_IsObject(jwk))
    return emu_resp_bad_param(resp, "The parameter 'key' (a JSON web key) is required.");
  if (hsmj && !cJSON_IsNull(hsmj) && !cJSON_IsBool(hsmj))
    return emu_resp_bad_param(resp, "The parameter 'Hsm' must be a boolean.");
  if (parse_common(body, &p, false, resp) != 0)
    return 0;
  p.key_ops = cJSON_GetObjectItemCaseSensitive(jwk, "key_ops");
  if (cJSON_IsNull(p.key_ops))
    p.key_ops = NULL;
  if (p.key_ops) {
    cJSON *tmp = NULL;
    if (ops_parse(p.key_ops, &tmp, &err) != 0)
      return emu_resp_bad_param(resp, "%s", err);
    cJSON_Delete(tmp);
  }
  ktyj = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
  if (!cJSON_IsString(ktyj))
    return emu_resp_bad_param(resp, "The JSON web key needs a 'kty'.");
  const char *t = ktyj->valuestring;
  bool hsm = mhsm || cJSON_IsTrue(hsmj) || strstr(t, "-HSM");
  if (!strcmp(t, "RSA") || !strcmp(t, "RSA-HSM")) {
    snprintf(kty, sizeof(kty), "RSA%s", hsm ? "-HSM" : "");
    pkey = import_rsa(jwk, &err);
  } else if (!strcmp(t, "EC") || !strcmp(t, "EC-HSM")) {
    snprintf(kty, sizeof(kty), "EC%s", hsm ? "-HSM" : "");
    crvj = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
    if (!cJSON_IsString(crvj) ||
        (strcmp(crvj->valuestring, "P-256") && strcmp(crvj->valuestring, "P-384") &&
         strcmp(crvj->valuestring, "P-521") && strcmp(crvj->valuestring, "P-256K")))
      return emu_resp_bad_param(
          resp, "The JSON web key needs a valid 'crv' (P-256, P-384, P-521, P-256K).");
    crv = crvj->valuestring;
    pkey = import_ec(jwk, crv, &err);
  } else if ((!strcmp(t, "oct") || !strcmp(t, "oct-HSM")) && mhsm) {
    snprintf(kty, sizeof(kty), "oct-HSM");
    const cJSON *kj = cJSON_GetObjectItemCaseSensitive(jwk, "k");
    if (!cJSON_IsString(kj) || emu_b64url_decode(kj->valuestring, &k, &klen) != 0 ||
        (klen != 16 && klen != 24 && klen != 32)) {
      rc = emu_resp_bad_param(resp, "An oct-HSM key import needs 'k' with 16, 24 or 32 bytes.");
      goto out;
    }
  } else if (!strcmp(t, "oct") || !strcmp(t, "oct-HSM")) {
    return emu_resp_bad_param(resp, "Key type %s is not supported by this key vault.", t);
  } else {
    return emu_resp_bad_param(resp, "Invalid key type '%.32s'.", t);
  }
  if (!pkey && !k) {
    rc = emu_resp_bad_param(resp, "%s", err);
    goto out;
  }
  rc = store_and_respond(vault, name, kty, crv, pkey, k, klen, &p, 0, resp);
out:
  EVP_PKEY_free(pkey);
  if (k) {
    OPENSSL_cleanse(k, klen);
    free(k);
  }
  return rc;
}

/* ---- read / list ------------------------------------------------------------------------- */

static int get_key(struct emu_req *req, struct emu_resp *resp, const char *name,
                   const char *version)
{
  struct emu_vault *vault = req->vault;
  cJSON *b = NULL;
  emu_stats_count("keys.get");
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  struct emu_key_version *kv = key && !key->deleted ? version_inlock(key, version) : NULL;
  if (kv)
    b = bundle_json_inlock(vault, kv);
  pthread_mutex_unlock(&vault->lock);
  if (!kv)
    return emu_resp_not_found(resp, "Key", version && *version ? version : name);
  if (!b)
    return -1;
  return emu_resp_json(resp, 200, b);
}

static int list_keys(struct emu_req *req, struct emu_resp *resp, bool deleted)
{
  struct emu_vault *vault = req->vault;
  struct emu_keystore *ks = vault->keys;
  cJSON *items = cJSON_CreateArray();
  emu_stats_count(deleted ? "keys.list_deleted" : "keys.list");
  if (!items)
    return -1;
  pthread_mutex_lock(&vault->lock);
  for (size_t i = 0; i < ks->n; i++) {
    struct emu_key *key = ks->k[i];
    if (key->deleted != deleted || (deleted && !emu_deleted_visible(&key->del)))
      continue;
    cJSON *it = item_json_inlock(vault, key, key->v[key->nv - 1], false);
    if (it && deleted &&
        emu_deleted_json_add(it, vault, "deletedkeys", key->name, &key->del) != 0) {
      cJSON_Delete(it);
      it = NULL;
    }
    if (!it) {
      pthread_mutex_unlock(&vault->lock);
      cJSON_Delete(items);
      return -1;
    }
    cJSON_AddItemToArray(items, it);
  }
  pthread_mutex_unlock(&vault->lock);
  return emu_page(req, resp, items);
}

static int list_versions(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  cJSON *items = cJSON_CreateArray();
  bool found = false;
  emu_stats_count("keys.list_versions");
  if (!items)
    return -1;
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && !key->deleted) {
    found = true;
    for (size_t i = 0; i < key->nv; i++) {
      cJSON *it = item_json_inlock(vault, key, key->v[i], true);
      if (!it) {
        pthread_mutex_unlock(&vault->lock);
        cJSON_Delete(items);
        return -1;
      }
      cJSON_AddItemToArray(items, it);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found) {
    cJSON_Delete(items);
    return emu_resp_not_found(resp, "Key", name);
  }
  return emu_page(req, resp, items);
}

/* ---- update / rotate / delete ------------------------------------------------------------- */

static int update_key(struct emu_req *req, struct emu_resp *resp, const char *name,
                      const char *version)
{
  struct emu_vault *vault = req->vault;
  const cJSON *body = req->body;
  const char *err = NULL;
  cJSON *ops = NULL, *tags = NULL, *b = NULL;
  int rc;
  emu_stats_count("keys.update");
  if (!body)
    return emu_resp_bad_param(resp, "The request body is required.");
  const cJSON *tagsj = cJSON_GetObjectItemCaseSensitive(body, "tags");
  if (ops_parse(cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &ops, &err) != 0 ||
      emu_tags_valid(tagsj, &err) != 0) {
    cJSON_Delete(ops);
    return emu_resp_bad_param(resp, "%s", err);
  }
  if (tagsj && !cJSON_IsNull(tagsj) && !(tags = cJSON_Duplicate(tagsj, 1))) {
    cJSON_Delete(ops);
    return -1;
  }
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  struct emu_key_version *kv = key && !key->deleted ? version_inlock(key, version) : NULL;
  if (!kv) {
    pthread_mutex_unlock(&vault->lock);
    rc = emu_resp_not_found(resp, "Key", version && *version ? version : name);
    goto out;
  }
  if (kv->managed) {
    pthread_mutex_unlock(&vault->lock);
    rc =
        emu_resp_error(resp, 403, "Forbidden", NULL,
                       "Key %s is managed by a certificate; update the certificate instead.", name);
    goto out;
  }
  struct emu_attrs a = kv->attrs;
  if (emu_attrs_apply(cJSON_GetObjectItemCaseSensitive(body, "attributes"), &a, 1, &err) != 0) {
    pthread_mutex_unlock(&vault->lock);
    rc = emu_resp_bad_param(resp, "%s", err);
    goto out;
  }
  a.updated = emu_now();
  kv->attrs = a;
  if (ops) {
    cJSON_Delete(kv->key_ops);
    kv->key_ops = ops;
    ops = NULL;
  }
  if (tags) {
    cJSON_Delete(kv->tags);
    kv->tags = tags;
    tags = NULL;
  }
  b = bundle_json_inlock(vault, kv);
  pthread_mutex_unlock(&vault->lock);
  rc = b ? emu_resp_json(resp, 200, b) : -1;
out:
  cJSON_Delete(ops);
  cJSON_Delete(tags);
  return rc;
}

static int rotate_key(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  struct create_spec cs;
  struct emu_key_params p;
  EVP_PKEY *pkey = NULL;
  unsigned char k[32];
  cJSON *ops = NULL, *tags = NULL;
  int rc;
  emu_stats_count("keys.rotate");
  memset(&cs, 0, sizeof(cs));
  memset(&p, 0, sizeof(p));
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  struct emu_key_version *kv = key && !key->deleted ? version_inlock(key, NULL) : NULL;
  if (kv) {
    snprintf(cs.kty, sizeof(cs.kty), "%s", kv->kty);
    snprintf(cs.crv, sizeof(cs.crv), "%s", kv->crv);
    cs.bits = kv->bits;
    cs.pubexp = kv->pubexp ? kv->pubexp : 65537;
    ops = cJSON_Duplicate(kv->key_ops, 1);
    tags = kv->tags ? cJSON_Duplicate(kv->tags, 1) : NULL;
    p.attrs.enabled = 1;
    p.attrs.exportable = kv->attrs.exportable;
  }
  bool managed = kv && kv->managed;
  pthread_mutex_unlock(&vault->lock);
  if (!kv) {
    rc = emu_resp_not_found(resp, "Key", name);
    goto out;
  }
  if (managed) {
    rc = emu_resp_error(resp, 403, "Forbidden", NULL,
                        "Key %s is managed by a certificate and cannot be rotated.", name);
    goto out;
  }
  p.key_ops = ops;
  p.tags = tags;
  if (generate(&cs, &pkey, k) != 0) {
    ERR_clear_error();
    rc = -1;
    goto out;
  }
  rc = store_and_respond(vault, name, cs.kty, cs.crv, pkey, k, (size_t)cs.bits / 8, &p, cs.pubexp,
                         resp);
out:
  EVP_PKEY_free(pkey);
  OPENSSL_cleanse(k, sizeof(k));
  cJSON_Delete(ops);
  cJSON_Delete(tags);
  return rc;
}

static int delete_key(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  cJSON *b = NULL;
  emu_stats_count("keys.delete");
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  bool managed = key && !key->deleted && key->v[key->nv - 1]->managed;
  pthread_mutex_unlock(&vault->lock);
  if (managed)
    return emu_resp_error(resp, 403, "Forbidden", NULL,
                          "Key %s is managed by a certificate; delete the certificate instead.",
                          name);
  enum emu_rc rc = emu_keys_delete(vault, name, &b);
  if (rc != EMU_OK)
    return rc_resp(resp, rc, name);
  return emu_resp_json(resp, 200, b);
}

static int get_deleted(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  cJSON *b = NULL;
  bool found = false;
  emu_stats_count("keys.get_deleted");
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && key->deleted && emu_deleted_visible(&key->del)) {
    found = true;
    b = deleted_bundle_inlock(vault, key);
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_deleted_not_found(resp, "Key", name);
  return b ? emu_resp_json(resp, 200, b) : -1;
}

static int recover_key(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  cJSON *b = NULL;
  emu_stats_count("keys.recover");
  enum emu_rc rc = emu_keys_recover(req->vault, name, &b);
  if (rc == EMU_E_NOT_FOUND)
    return emu_resp_deleted_not_found(resp, "Key", name);
  if (rc != EMU_OK)
    return -1;
  return emu_resp_json(resp, 200, b);
}

static int purge_key(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  emu_stats_count("keys.purge");
  enum emu_rc rc = emu_keys_purge(req->vault, name);
  if (rc == EMU_E_NOT_FOUND)
    return emu_resp_deleted_not_found(resp, "Key", name);
  return emu_resp_empty(resp, 204);
}

/* ---- crypto ------------------------------------------------------------------------------ */

static const struct {
  const char *seg;
  enum key_op op;
  const char *keyop; /* key_ops member that permits it */
  const char *stat;
  bool window; /* refused outside nbf..exp */
} CRYPTO_OPS[] = {
    {"sign", OP_SIGN, "sign", "keys.sign", true},
    {"verify", OP_VERIFY, "verify", "keys.verify", false},
    {"encrypt", OP_ENCRYPT, "encrypt", "keys.encrypt", true},
    {"decrypt", OP_DECRYPT, "decrypt", "keys.decrypt", false},
    {"wrapkey", OP_WRAP, "wrapKey", "keys.wrapkey", true},
    {"unwrapkey", OP_UNWRAP, "unwrapKey", "keys.unwrapkey", false},
};

static int crypto_index(const char *seg)
{
  for (size_t i = 0; i < sizeof(CRYPTO_OPS) / sizeof(CRYPTO_OPS[0]); i++)
    if (strcasecmp(seg, CRYPTO_OPS[i].seg) == 0)
      return (int)i;
  return -1;
}

static bool ops_has(const cJSON *ops, const char *op)
{
  const cJSON *it;
  cJSON_ArrayForEach(it,
                     ops) if (cJSON_IsString(it) && strcmp(it->valuestring, op) == 0) return true;
  return false;
}

static int crypto_op(struct emu_req *req, struct emu_resp *resp, const char *name,
                     const char *version, int idx)
{
  struct emu_vault *vault = req->vault;
  struct emu_key_version *kv = NULL;
  int rc;
  char *kid = NULL;
  emu_stats_count(CRYPTO_OPS[idx].stat);
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  struct emu_key_version *v = key && !key->deleted ? version_inlock(key, version) : NULL;
  const char *deny = NULL, *inner = NULL;
  const char *op = CRYPTO_OPS[idx].keyop;
  if (v) {
    int64_t now = emu_now();
    if (!v->attrs.enabled) {
      deny = "is not allowed on a disabled key.";
      inner = "KeyDisabled";
    } else if (!ops_has(v->key_ops, CRYPTO_OPS[idx].keyop)) {
      deny = "is not permitted on this key (key_ops).";
      inner = "KeyOperationNotPermitted";
    } else if (CRYPTO_OPS[idx].window && v->attrs.nbf && now < v->attrs.nbf) {
      deny = "is not allowed: the key is not yet valid (nbf).";
      inner = "KeyNotYetValid";
    } else if (CRYPTO_OPS[idx].window && v->attrs.exp && now >= v->attrs.exp) {
      deny = "is not allowed: the key is expired (exp).";
      inner = "KeyExpired";
    } else {
      kv = emu_key_version_ref(v);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!v)
    return emu_resp_not_found(resp, "Key", version && *version ? version : name);
  if (!kv)
    return emu_resp_error(resp, 403, "Forbidden", inner, "Operation %s %s", op, deny);
  /* crypto runs without the vault lock; the version's material is immutable */
  struct key_material km = {kv->kty, kv->crv, kv->pkey, kv->k, kv->klen};
  kid = strdup(kv->kid);
  rc = kid ? keycrypto_run(&km, CRYPTO_OPS[idx].op, req->body, vault->kind == EMU_KIND_MHSM, kid,
                           resp)
           : -1;
  free(kid);
  emu_key_version_unref(kv);
  return rc;
}

static int rng(struct emu_req *req, struct emu_resp *resp)
{
  const cJSON *c = req->body ? cJSON_GetObjectItemCaseSensitive(req->body, "count") : NULL;
  unsigned char buf[128];
  emu_stats_count("rng");
  if (!cJSON_IsNumber(c) || c->valuedouble != (int)c->valuedouble || c->valueint < 1 ||
      c->valueint > 128)
    return emu_resp_bad_param(resp, "The parameter 'count' must be an integer between 1 and 128.");
  if (RAND_bytes(buf, c->valueint) != 1)
    return -1;
  char *v = emu_b64url_encode(buf, (size_t)c->valueint);
  cJSON *o = cJSON_CreateObject();
  OPENSSL_cleanse(buf, sizeof(buf));
  if (!v || !o || !cJSON_AddStringToObject(o, "value", v)) {
    free(v);
    cJSON_Delete(o);
    return -1;
  }
  free(v);
  return emu_resp_json(resp, 200, o);
}

/* ---- backup / restore ------------------------------------------------------------------ */
/* A backup blob is base64url(iv[12] || tag[16] || AES-256-GCM(JSON)) under a key that lives
 * only for this emulator run: it restores into any vault of the same run, like the service's
 * blobs restore within the same geography, and never exposes key material in the clear. */

#define BACKUP_MAGIC "akv-emulator-key-backup-1"

static cJSON *version_backup_json_inlock(const struct emu_key_version *kv)
{
  cJSON *o = cJSON_CreateObject(), *a;
  unsigned char *der = NULL;
  char *mat = NULL;
  int n = 0;
  if (!o)
    return NULL;
  if (kv->pkey) {
    n = i2d_PrivateKey(kv->pkey, &der);
    if (n <= 0)
      goto fail;
    mat = emu_b64url_encode(der, (size_t)n);
  } else {
    mat = emu_b64url_encode(kv->k, kv->klen);
  }
  if (!mat || !cJSON_AddStringToObject(o, "version", kv->version) ||
      !cJSON_AddStringToObject(o, "kty", kv->kty) || !cJSON_AddStringToObject(o, "crv", kv->crv) ||
      !cJSON_AddNumberToObject(o, "pubexp", (double)kv->pubexp) ||
      !cJSON_AddBoolToObject(o, "managed", kv->managed) ||
      !cJSON_AddStringToObject(o, kv->pkey ? "der" : "k", mat) ||
      !(a = cJSON_AddObjectToObject(o, "attrs")))
    goto fail;
  cJSON_AddBoolToObject(a, "enabled", kv->attrs.enabled);
  cJSON_AddNumberToObject(a, "nbf", (double)kv->attrs.nbf);
  cJSON_AddNumberToObject(a, "exp", (double)kv->attrs.exp);
  cJSON_AddNumberToObject(a, "created", (double)kv->attrs.created);
  cJSON_AddNumberToObject(a, "updated", (double)kv->attrs.updated);
  cJSON_AddBoolToObject(a, "exportable", kv->attrs.exportable);
  cJSON_AddItemToObject(o, "key_ops", cJSON_Duplicate(kv->key_ops, 1));
  if (kv->tags)
    cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(kv->tags, 1));
  goto out;
fail:
  cJSON_Delete(o);
  o = NULL;
out:
  if (der) {
    OPENSSL_cleanse(der, (size_t)n);
    OPENSSL_free(der);
  }
  if (mat) {
    OPENSSL_cleanse(mat, strlen(mat));
    free(mat);
  }
  return o;
}

/* AES-256-GCM seal/open with the run's backup key. */
static int backup_crypt(bool seal, const unsigned char *in, size_t inlen, unsigned char **out,
                        size_t *outlen)
{
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  unsigned char *buf = NULL;
  int l1 = 0, l2 = 0, rc = -1;
  size_t cap = inlen + 28;
  if (!ctx || inlen > INT32_MAX / 2 || (!seal && inlen < 28))
    goto out;
  buf = malloc(cap);
  if (!buf)
    goto out;
  if (seal) {
    if (RAND_bytes(buf, 12) != 1 ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, emu_srv->backup_key, buf) != 1 ||
        EVP_EncryptUpdate(ctx, buf + 28, &l1, in, (int)inlen) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + 28 + l1, &l2) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, buf + 12) != 1)
      goto out;
    *outlen = 28 + (size_t)l1 + (size_t)l2;
  } else {
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, emu_srv->backup_key, in) != 1 ||
        EVP_DecryptUpdate(ctx, buf, &l1, in + 28, (int)(inlen - 28)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 12)) != 1 ||
        EVP_DecryptFinal_ex(ctx, buf + l1, &l2) != 1)
      goto out;
    *outlen = (size_t)l1 + (size_t)l2;
  }
  *out = buf;
  buf = NULL;
  rc = 0;
out:
  if (buf) {
    OPENSSL_cleanse(buf, cap);
    free(buf);
  }
  EVP_CIPHER_CTX_free(ctx);
  ERR_clear_error();
  return rc;
}

static int backup_key(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  cJSON *root = NULL, *arr;
  char *text = NULL, *blob64 = NULL;
  unsigned char *blob = NULL;
  size_t bloblen = 0;
  int rc = -1;
  bool found = false;
  emu_stats_count("keys.backup");
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && !key->deleted) {
    found = true;
    root = cJSON_CreateObject();
    if (root && cJSON_AddStringToObject(root, "magic", BACKUP_MAGIC) &&
        cJSON_AddStringToObject(root, "name", key->name) &&
        (arr = cJSON_AddArrayToObject(root, "versions"))) {
      for (size_t i = 0; i < key->nv; i++) {
        cJSON *v = version_backup_json_inlock(key->v[i]);
        if (!v) {
          cJSON_Delete(root);
          root = NULL;
          break;
        }
        cJSON_AddItemToArray(arr, v);
      }
    } else {
      cJSON_Delete(root);
      root = NULL;
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_not_found(resp, "Key", name);
  if (!root || !(text = cJSON_PrintUnformatted(root)))
    goto out;
  if (strlen(text) > EMU_BODY_MAX / 2) {
    rc = emu_resp_bad_param(resp, "Key %s has too many versions to back up.", name);
    goto out;
  }
  if (backup_crypt(true, (unsigned char *)text, strlen(text), &blob, &bloblen) != 0 ||
      !(blob64 = emu_b64url_encode(blob, bloblen)))
    goto out;
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddStringToObject(o, "value", blob64)) {
    cJSON_Delete(o);
    goto out;
  }
  rc = emu_resp_json(resp, 200, o);
out:
  cJSON_Delete(root);
  if (text) {
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  free(blob);
  free(blob64);
  return rc;
}

static bool version_ok(const char *v)
{
  if (!v || strlen(v) != EMU_VERSION_LEN)
    return false;
  for (const char *p = v; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

/* One version from its backup JSON (validated), or NULL. */
static struct emu_key_version *version_from_backup(const cJSON *v)
{
  const char *ver = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "version"));
  const char *kty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "kty"));
  const char *crv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "crv"));
  const char *der64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "der"));
  const char *k64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "k"));
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "attrs");
  struct emu_key_params p;
  struct emu_key_version *kv = NULL;
  unsigned char *mat = NULL;
  size_t len = 0;
  EVP_PKEY *pkey = NULL;
  memset(&p, 0, sizeof(p));
  if (!version_ok(ver) || !kty || !crv || !cJSON_IsObject(a) || (!der64 && !k64) ||
      emu_b64url_decode(der64 ? der64 : k64, &mat, &len) != 0)
    goto out;
  if (der64) {
    const unsigned char *q = mat;
    pkey = d2i_AutoPrivateKey(NULL, &q, (long)len);
    if (!pkey)
      goto out;
  } else if (len != 16 && len != 24 && len != 32) {
    goto out;
  }
  p.attrs.enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "enabled"));
  p.attrs.nbf = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "nbf"));
  p.attrs.exp = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "exp"));
  p.attrs.exportable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "exportable"));
  p.key_ops = cJSON_GetObjectItemCaseSensitive(v, "key_ops");
  p.tags = cJSON_GetObjectItemCaseSensitive(v, "tags");
  p.managed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "managed"));
  kv = kv_new(kty, crv, pkey, mat, len, &p, ver);
  if (kv) {
    kv->attrs.created =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "created"));
    kv->attrs.updated =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "updated"));
    kv->pubexp = (unsigned long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "pubexp"));
  }
out:
  EVP_PKEY_free(pkey);
  if (mat) {
    OPENSSL_cleanse(mat, len);
    free(mat);
  }
  return kv;
}

static int restore_key(struct emu_req *req, struct emu_resp *resp)
{
  struct emu_vault *vault = req->vault;
  const char *b64 =
      req->body ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->body, "value")) : NULL;
  unsigned char *blob = NULL, *plain = NULL;
  size_t bloblen = 0, plainlen = 0;
  cJSON *root = NULL;
  struct emu_key_version *latest = NULL;
  int rc = -1;
  emu_stats_count("keys.restore");
  if (!b64)
    return emu_resp_bad_param(resp, "The parameter 'value' (the backup blob) is required.");
  if (emu_b64url_decode(b64, &blob, &bloblen) != 0 ||
      backup_crypt(false, blob, bloblen, &plain, &plainlen) != 0 ||
      !(root = emu_json_parse((const char *)plain, plainlen)) ||
      strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "magic")) ?: "",
             BACKUP_MAGIC) != 0) {
    rc = emu_resp_bad_param(resp,
                            "The backup blob is invalid or was not made by this emulator run.");
    goto out;
  }
  const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "name"));
  const cJSON *vers = cJSON_GetObjectItemCaseSensitive(root, "versions"), *v;
  if (!emu_name_valid(name) || !cJSON_IsArray(vers) || cJSON_GetArraySize(vers) < 1) {
    rc = emu_resp_bad_param(resp, "The backup blob is invalid.");
    goto out;
  }
  pthread_mutex_lock(&vault->lock);
  bool exists = find_inlock(vault->keys, name) != NULL;
  pthread_mutex_unlock(&vault->lock);
  if (exists) {
    rc = emu_resp_error(resp, 409, "Conflict", NULL,
                        "Key %s already exists (or is deleted); restore needs an unused name.",
                        name);
    goto out;
  }
  cJSON_ArrayForEach(v, vers)
  {
    struct emu_key_version *kv = version_from_backup(v);
    if (!kv) {
      rc = emu_resp_bad_param(resp, "The backup blob is invalid.");
      keys_purge_now(vault, name);
      goto out;
    }
    emu_key_version_unref(latest);
    latest = emu_key_version_ref(kv);
    enum emu_rc r = add_version(vault, name, kv);
    if (r != EMU_OK) {
      rc = rc_resp(resp, r, name);
      keys_purge_now(vault, name);
      goto out;
    }
  }
  rc = respond_bundle(vault, resp, latest);
out:
  emu_key_version_unref(latest);
  cJSON_Delete(root);
  free(blob);
  if (plain) {
    OPENSSL_cleanse(plain, plainlen);
    free(plain);
  }
  return rc;
}

static bool is_method(const struct emu_req *req, const char *m)
{
  return strcmp(req->method, m) == 0;
}

/* ---- rotation policy (stored and returned; the emulator never rotates on its own) ------ */

/* ISO 8601 duration as used by rotation policies: P[nY][nM][nW][nD]. */
static bool duration_ok(const char *d)
{
  bool digits = false, unit = false;
  if (!d || d[0] != 'P' || strlen(d) > 32)
    return false;
  for (const char *p = d + 1; *p; p++) {
    if (*p >= '0' && *p <= '9') {
      digits = true;
    } else if (strchr("YMWD", *p) && digits) {
      digits = false;
      unit = true;
    } else {
      return false;
    }
  }
  return unit && !digits;
}

/* Validated copy of a KeyRotationPolicy body, or NULL with *err. */
static cJSON *policy_parse(const cJSON *body, const char **err)
{
  const cJSON *la = cJSON_GetObjectItemCaseSensitive(body, "lifetimeActions");
  const cJSON *at = cJSON_GetObjectItemCaseSensitive(body, "attributes"), *it;
  cJSON *out = cJSON_CreateObject(), *arr;
  *err = "lifetimeActions must be an array of {trigger:{timeAfterCreate|timeBeforeExpiry}, "
         "action:{type:Rotate|Notify}} with ISO 8601 durations";
  if (!out || !(arr = cJSON_AddArrayToObject(out, "lifetimeActions")))
    goto fail;
  if (la && !cJSON_IsNull(la)) {
    if (!cJSON_IsArray(la) || cJSON_GetArraySize(la) > 2)
      goto fail;
    cJSON_ArrayForEach(it, la)
    {
      const cJSON *tr = cJSON_GetObjectItemCaseSensitive(it, "trigger");
      const cJSON *ac = cJSON_GetObjectItemCaseSensitive(it, "action");
      const char *tac =
          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tr, "timeAfterCreate"));
      const char *tbe =
          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tr, "timeBeforeExpiry"));
      const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ac, "type"));
      if ((!tac == !tbe) || !duration_ok(tac ? tac : tbe) || !type ||
          (strcasecmp(type, "Rotate") && strcasecmp(type, "Notify")))
        goto fail;
      cJSON *o = cJSON_CreateObject(), *t, *a;
      if (!o)
        goto fail;
      cJSON_AddItemToArray(arr, o);
      if (!(t = cJSON_AddObjectToObject(o, "trigger")) ||
          !cJSON_AddStringToObject(t, tac ? "timeAfterCreate" : "timeBeforeExpiry",
                                   tac ? tac : tbe) ||
          !(a = cJSON_AddObjectToObject(o, "action")) ||
          !cJSON_AddStringToObject(a, "type", strcasecmp(type, "Rotate") ? "Notify" : "Rotate"))
        goto fail;
    }
  }
  cJSON *attrs = cJSON_AddObjectToObject(out, "attributes");
  if (!attrs)
    goto fail;
  if (at && !cJSON_IsNull(at)) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(at, "expiryTime");
    if (!cJSON_IsObject(at) || (e && !cJSON_IsNull(e) && !duration_ok(cJSON_GetStringValue(e)))) {
      *err = "attributes.expiryTime must be an ISO 8601 duration such as P2Y";
      goto fail;
    }
    if (e && !cJSON_IsNull(e) && !cJSON_AddStringToObject(attrs, "expiryTime", e->valuestring))
      goto fail;
  }
  return out;
fail:
  cJSON_Delete(out);
  return NULL;
}

static int rotation_policy(struct emu_req *req, struct emu_resp *resp, const char *name)
{
  struct emu_vault *vault = req->vault;
  bool put = is_method(req, "PUT"), found = false;
  const char *err = NULL;
  cJSON *newp = NULL, *out = NULL;
  int64_t now = emu_now();
  emu_stats_count(put ? "keys.update_rotation_policy" : "keys.get_rotation_policy");
  if (put) {
    if (!req->body)
      return emu_resp_bad_param(resp, "The request body is required.");
    if (!(newp = policy_parse(req->body, &err)))
      return emu_resp_bad_param(resp, "%s", err);
    cJSON *a = cJSON_GetObjectItemCaseSensitive(newp, "attributes");
    cJSON_AddNumberToObject(a, "created", (double)now);
    cJSON_AddNumberToObject(a, "updated", (double)now);
  }
  pthread_mutex_lock(&vault->lock);
  struct emu_key *key = find_inlock(vault->keys, name);
  if (key && !key->deleted) {
    found = true;
    if (newp) {
      cJSON *old = cJSON_GetObjectItemCaseSensitive(
          cJSON_GetObjectItemCaseSensitive(key->rotation_policy, "attributes"), "created");
      if (cJSON_IsNumber(old))
        cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetObjectItemCaseSensitive(newp, "attributes"), "created"),
                             old->valuedouble);
      cJSON_Delete(key->rotation_policy);
      key->rotation_policy = newp;
      newp = NULL;
    }
    out = key->rotation_policy ? cJSON_Duplicate(key->rotation_policy, 1) : NULL;
    if (!key->rotation_policy) {
      /* the service's default policy: notify 30 days before expiry */
      const char *err2;
      cJSON *def = cJSON_Parse("{\"lifetimeActions\":[{\"trigger\":{\"timeBeforeExpiry\":\"P30D\"},"
                               "\"action\":{\"type\":\"Notify\"}}],\"attributes\":{}}");
      out = def ? policy_parse(def, &err2) : NULL;
      cJSON_Delete(def);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  cJSON_Delete(newp);
  if (!found) {
    cJSON_Delete(out);
    return emu_resp_not_found(resp, "Key", name);
  }
  char *id = emu_strdup_printf("%s/keys/%s/rotationpolicy", vault->base_url, name);
  if (!out || !id) {
    free(id);
    cJSON_Delete(out);
    return -1;
  }
  cJSON *res = cJSON_CreateObject();
  if (!res || !cJSON_AddStringToObject(res, "id", id)) {
    free(id);
    cJSON_Delete(res);
    cJSON_Delete(out);
    return -1;
  }
  free(id);
  cJSON_AddItemToObject(res, "lifetimeActions", cJSON_DetachItemFromObject(out, "lifetimeActions"));
  cJSON_AddItemToObject(res, "attributes", cJSON_DetachItemFromObject(out, "attributes"));
  cJSON_Delete(out);
  return emu_resp_json(resp, 200, res);
}

/* ---- routing ---------------------------------------------------------------------------- */

static int bad_name(struct emu_resp *resp, const char *name)
{
  return emu_resp_bad_param(resp, "The request URI contains an invalid name: %.200s", name);
}

int keys_handle(struct emu_req *req, struct emu_resp *resp)
{
  const char *c = req->collection;
  const char *name = req->nseg ? req->seg[0] : NULL;
  int idx;

  if (!strcmp(c, "rng")) {
    if (req->vault->kind != EMU_KIND_MHSM || req->nseg)
      return emu_resp_error(resp, 404, "NotFound", NULL, "The requested resource does not exist.");
    return is_method(req, "POST") ? rng(req, resp) : emu_resp_method_not_allowed(resp);
  }
  if (name && !emu_name_valid(name))
    return bad_name(resp, name);

  if (!strcmp(c, "deletedkeys")) {
    if (req->nseg == 0)
      return is_method(req, "GET") ? list_keys(req, resp, true) : emu_resp_method_not_allowed(resp);
    if (req->nseg == 1) {
      if (is_method(req, "GET"))
        return get_deleted(req, resp, name);
      if (is_method(req, "DELETE"))
        return purge_key(req, resp, name);
      return emu_resp_method_not_allowed(resp);
    }
    if (req->nseg == 2 && !strcasecmp(req->seg[1], "recover"))
      return is_method(req, "POST") ? recover_key(req, resp, name)
                                    : emu_resp_method_not_allowed(resp);
    return emu_resp_error(resp, 404, "NotFound", NULL, "The requested resource does not exist.");
  }

  /* keys. An empty version segment (keys/{name}//attestation, as Microsoft's SDKs build the path
     when no version is given) is the latest version for the attestation, as the service answers
     it; anywhere else it stays the malformed URI it was. */
  if (req->nseg >= 2 && !*req->seg[1] &&
      !(req->nseg == 3 && !strcasecmp(req->seg[2], "attestation")))
    return emu_resp_bad_param(resp, "The request URI is malformed.");
  switch (req->nseg) {
  case 0:
    return is_method(req, "GET") ? list_keys(req, resp, false) : emu_resp_method_not_allowed(resp);
  case 1:
    if (!strcasecmp(name, "restore") && is_method(req, "POST"))
      return restore_key(req, resp);
    if (is_method(req, "GET"))
      return get_key(req, resp, name, NULL);
    if (is_method(req, "PUT")) {
      emu_stats_count("keys.import");
      return import_key(req->vault, name, req->body, resp);
    }
    if (is_method(req, "PATCH"))
      return update_key(req, resp, name, NULL);
    if (is_method(req, "DELETE"))
      return delete_key(req, resp, name);
    return emu_resp_method_not_allowed(resp);
  case 2: {
    const char *s = req->seg[1];
    if (!strcasecmp(s, "create")) {
      if (!is_method(req, "POST"))
        return emu_resp_method_not_allowed(resp);
      emu_stats_count("keys.create");
      return create_key(req->vault, name, req->body, resp);
    }
    if (!strcasecmp(s, "rotationpolicy"))
      return is_method(req, "GET") || is_method(req, "PUT") ? rotation_policy(req, resp, name)
                                                            : emu_resp_method_not_allowed(resp);
    if (!strcasecmp(s, "backup"))
      return is_method(req, "POST") ? backup_key(req, resp, name)
                                    : emu_resp_method_not_allowed(resp);
    if (!strcasecmp(s, "rotate"))
      return is_method(req, "POST") ? rotate_key(req, resp, name)
                                    : emu_resp_method_not_allowed(resp);
    if (!strcasecmp(s, "versions"))
      return is_method(req, "GET") ? list_versions(req, resp, name)
                                   : emu_resp_method_not_allowed(resp);
    if ((idx = crypto_index(s)) >= 0)
      return is_method(req, "POST") ? crypto_op(req, resp, name, NULL, idx)
                                    : emu_resp_method_not_allowed(resp);
    if (!strcasecmp(s, "attestation")) /* /keys/{n}/attestation: the version is optional */
      return is_method(req, "GET") ? emu_attest_handle(req, resp, name, NULL)
                                   : emu_resp_method_not_allowed(resp);
    if (is_method(req, "GET"))
      return get_key(req, resp, name, s);
    if (is_method(req, "PATCH"))
      return update_key(req, resp, name, s);
    return emu_resp_method_not_allowed(resp);
  }
  case 3:
    if (!strcasecmp(req->seg[2], "attestation"))
      return is_method(req, "GET")
                 ? emu_attest_handle(req, resp, name, *req->seg[1] ? req->seg[1] : NULL)
                 : emu_resp_method_not_allowed(resp);
    if ((idx = crypto_index(req->seg[2])) >= 0)
      return is_method(req, "POST") ? crypto_op(req, resp, name, req->seg[1], idx)
                                    : emu_resp_method_not_allowed(resp);
    break;
  default:
    break;
  }
  return emu_resp_error(resp, 404, "NotFound", NULL, "The requested resource does not exist.");
}

int keys_seed(struct emu_vault *vault, const cJSON *item)
{
  struct emu_resp resp;
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
  int rc = -1;
  memset(&resp, 0, sizeof(resp));
  if (!cJSON_IsString(name) || !emu_name_valid(name->valuestring)) {
    fprintf(stderr, "akv-emulator: seed: every key needs a valid \"name\"\n");
    return -1;
  }
  if (cJSON_GetObjectItemCaseSensitive(item, "key"))
    rc = import_key(vault, name->valuestring, item, &resp);
  else
    rc = create_key(vault, name->valuestring, item, &resp);
  if (rc != 0 || resp.status != 200) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp.json, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    fprintf(stderr, "akv-emulator: seed: key %s: %s\n", name->valuestring,
            cJSON_IsString(m) ? m->valuestring : "out of memory");
    rc = -1;
  }
  emu_resp_clear(&resp);
  return rc;
}
