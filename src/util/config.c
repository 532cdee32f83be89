/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration loader (docs/config.md): JSON file found by search order, strict schema,
 * environment quick start, secrets only from files that group/other cannot read. Every error names
 * the file, the field path (e.g. `slots[1].ttl`) and the fix. */
#include "util/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <crypt.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/log.h"

#define CONFIG_MAX_BYTES (1024 * 1024)
#ifndef AKV_API_VERSION
#define AKV_API_VERSION "7.6"
#endif
#define SECRET_FILE_MAX (64 * 1024)
#define MAX_SLOTS 64
#define MAX_LIST 1024

/* ---- Azure domains --------------------------------------------------------------------------- */

static const struct {
  const char *suffix;   /* DNS suffix of vault hosts */
  const char *resource; /* token resource */
  enum akv_vault_kind kind;
} azure_domains[] = {
    {".vault.azure.net", "https://vault.azure.net", AKV_VAULT_KEYVAULT},
    {".managedhsm.azure.net", "https://managedhsm.azure.net", AKV_VAULT_MHSM},
    {".vault.azure.cn", "https://vault.azure.cn", AKV_VAULT_KEYVAULT},
    {".vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net", AKV_VAULT_KEYVAULT},
    {".managedhsm.usgovcloudapi.net", "https://managedhsm.usgovcloudapi.net", AKV_VAULT_MHSM},
    {".vault.microsoftazure.de", "https://vault.microsoftazure.de", AKV_VAULT_KEYVAULT},
};
#define N_DOMAINS (sizeof(azure_domains) / sizeof(azure_domains[0]))

int akv_azure_vault_host(const char *host, const char **resource, enum akv_vault_kind *kind)
{
  size_t hl;
  if (!host)
    return 0;
  hl = strlen(host);
  for (size_t i = 0; i < N_DOMAINS; i++) {
    size_t sl = strlen(azure_domains[i].suffix);
    /* A label must precede the suffix: "vault.azure.net" alone is not a vault. */
    if (hl > sl && strcasecmp(host + hl - sl, azure_domains[i].suffix) == 0 &&
        host[hl - sl - 1] != '.') {
      if (resource)
        *resource = azure_domains[i].resource;
      if (kind)
        *kind = azure_domains[i].kind;
      return 1;
    }
  }
  return 0;
}

int akv_known_vault_resource(const char *resource, const char **domain)
{
  size_t rl;
  if (!resource)
    return 0;
  rl = strlen(resource);
  while (rl > 0 && resource[rl - 1] == '/')
    rl--;
  for (size_t i = 0; i < N_DOMAINS; i++) {
    if (strlen(azure_domains[i].resource) == rl &&
        strncasecmp(resource, azure_domains[i].resource, rl) == 0) {
      if (domain)
        *domain = azure_domains[i].suffix;
      return 1;
    }
  }
  return 0;
}

/* ---- error reporting ------------------------------------------------------------------------- */

struct cfg_ctx {
  const char *file; /* for messages */
  char *err;
  size_t errlen;
  int failed;
  int inline_secret; /* the document itself holds a secret */
  char secret_field[256];
  int allow_no_slots; /* no configuration anywhere: a module with zero slots */
};

static int cfg_fail(struct cfg_ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(struct cfg_ctx *c, const char *field, const char *fmt, ...)
{
  va_list ap;
  int n;
  if (c->failed) /* first error wins: it is the one the user should fix first */
    return -1;
  c->failed = 1;
  if (!c->err || !c->errlen)
    return -1;
  if (field && *field)
    n = snprintf(c->err, c->errlen, "%s: field `%s`: ", c->file, field);
  else
    n = snprintf(c->err, c->errlen, "%s: ", c->file);
  if (n < 0 || (size_t)n >= c->errlen)
    return -1;
  va_start(ap, fmt);
  vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *json_type_name(const cJSON *v)
{
  if (cJSON_IsString(v))
    return "a string";
  if (cJSON_IsNumber(v))
    return "a number";
  if (cJSON_IsBool(v))
    return "a boolean";
  if (cJSON_IsNull(v))
    return "null";
  if (cJSON_IsArray(v))
    return "an array";
  if (cJSON_IsObject(v))
    return "an object";
  return "an invalid value";
}

/* ---- small helpers --------------------------------------------------------------------------- */

static void secret_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static void strv_free(char **v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

static void cred_free(struct akv_cred_config *c)
{
  free(c->tenant_id);
  free(c->client_id);
  secret_free(c->client_secret);
  free(c->certificate_path);
  secret_free(c->certificate_password);
  free(c->federated_token_file);
  free(c->authority_host);
  free(c->imds_endpoint);
  free(c->identity_endpoint);
  secret_free(c->identity_header);
  free(c->az_path);
  memset(c, 0, sizeof(*c));
}

void akv_config_free(struct akv_config *cfg)
{
  if (!cfg)
    return;
  free(cfg->path);
  free(cfg->log_file);
  free(cfg->audit_file);
  free(cfg->ca_file);
  free(cfg->proxy);
  free(cfg->api_version);
  strv_free(cfg->allowed_hosts, cfg->n_allowed_hosts);
  free(cfg->cache_file);
  secret_free(cfg->pin_hash);
  cred_free(&cfg->cred);
  free(cfg->attestation_root);
  sk_X509_pop_free(cfg->attestation_roots, X509_free);
  for (size_t i = 0; i < cfg->n_slots; i++) {
    struct akv_slot_config *s = &cfg->slots[i];
    free(s->attestation_root);
    sk_X509_pop_free(s->attestation_roots, X509_free);
    free(s->url);
    strv_free(s->replicas, s->n_replicas);
    free(s->label);
    strv_free(s->key_names, s->n_key_names);
    free(s->key_filter);
    secret_free(s->pin_hash);
    cred_free(&s->cred);
  }
  free(cfg->slots);
  free(cfg);
}

static int set_str(char **dst, const char *src)
{
  char *d = strdup(src);
  if (!d)
    return -1;
  free(*dst);
  *dst = d;
  return 0;
}

/* Reads a whole small file (cap bytes) into a NUL-terminated buffer. */
static int read_file_capped(const char *path, size_t cap, char **out, size_t *out_len,
                            struct stat *st_out, int *err_no)
{
  int fd = -1, rc = -1;
  struct stat st;
  char *buf = NULL;
  size_t len = 0, size = 0;
  *err_no = 0;
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    *err_no = errno;
    goto out;
  }
  if (fstat(fd, &st) != 0) {
    *err_no = errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    *err_no = EINVAL;
    goto out;
  }
  if ((size_t)st.st_size > cap) {
    *err_no = EFBIG;
    goto out;
  }
  /* The file's size (plus one byte to notice growth, plus the NUL), not cap: freeing a buffer of
   * cap (1 MB, mapped apart from the heap) would raise glibc's trim threshold for the whole process
   * (docs/performance.md "Memory per cached key"). Grown, never past cap + 2, if the file grew. */
  size = (size_t)st.st_size + 2;
  buf = malloc(size);
  if (!buf) {
    *err_no = ENOMEM;
    goto out;
  }
  for (;;) {
    ssize_t r;
    if (len + 1 >= size) {
      size_t nsize = size > (cap + 2) / 2 ? cap + 2 : size * 2;
      char *n = malloc(nsize);
      if (!n) {
        *err_no = ENOMEM;
        goto out;
      }
      memcpy(n, buf, len);
      OPENSSL_cleanse(buf, size); /* may hold a secret */
      free(buf);
      buf = n;
      size = nsize;
    }
    r = read(fd, buf + len, size - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *err_no = errno;
      goto out;
    }
    if (r == 0)
      break;
    len += (size_t)r;
    if (len > cap) {
      *err_no = EFBIG;
      goto out;
    }
  }
  buf[len] = '\0';
  if (st_out)
    *st_out = st;
  *out = buf;
  *out_len = len;
  buf = NULL;
  rc = 0;
out:
  if (buf) {
    OPENSSL_cleanse(buf, size);
    free(buf);
  }
  if (fd >= 0)
    close(fd);
  return rc;
}

/* A file holding a secret must not be readable by group or other. */
static int check_secret_perms(struct cfg_ctx *c, const char *field, const char *path,
                              const struct stat *st)
{
  if (st->st_mode & (S_IRWXG | S_IRWXO))
    return cfg_fail(c, field,
                    "%s holds a secret but group/other can access it (mode %03o); "
                    "fix: chmod 600 %s",
                    path, (unsigned)(st->st_mode & 0777), path);
  return 0;
}

/* ---- schema ---------------------------------------------------------------------------------- */

enum ftype { F_STR, F_SECRET, F_LONG, F_UINT, F_SIZE, F_I64, F_BOOL, F_STRLIST, F_CUSTOM };

struct field;
typedef int (*custom_fn)(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path);

struct field {
  const char *name;
  enum ftype type;
  size_t off;       /* offset of the member in obj */
  size_t count_off; /* F_STRLIST: offset of the size_t count */
  long long min, max;
  custom_fn fn;
  const char *example; /* shown in the fix text */
};

static int parse_object(struct cfg_ctx *c, const cJSON *obj, const struct field *fields,
                        size_t n_fields, void *dst, const char *path);

static int check_type(struct cfg_ctx *c, const cJSON *v, int ok, const char *want, const char *path,
                      const char *example)
{
  if (ok)
    return 0;
  return cfg_fail(c, path, "expected %s, got %s; fix: write it like %s", want, json_type_name(v),
                  example ? example : "the documentation in docs/config.md shows");
}

static int get_integer(struct cfg_ctx *c, const cJSON *v, const struct field *f, const char *path,
                       long long *out)
{
  double d;
  if (check_type(c, v, cJSON_IsNumber(v), "an integer", path, f->example))
    return -1;
  d = v->valuedouble;
  /* Range first (NaN fails it): converting a double outside long long's range is undefined
   * (found by tests/fuzz). 2^63 bounds it since (double)LLONG_MAX rounds up to 2^63. */
  if (!(d >= (double)f->min && d <= (double)f->max && d > -9223372036854775808.0 &&
        d < 9223372036854775808.0) ||
      d != (double)(long long)d)
    return cfg_fail(c, path, "expected an integer from %lld to %lld, got %g; fix: write it like %s",
                    f->min, f->max, d, f->example ? f->example : "");
  *out = (long long)d;
  return 0;
}

static int parse_strlist(struct cfg_ctx *c, const cJSON *v, const struct field *f, const char *path,
                         char ***out, size_t *n_out)
{
  size_t n, i = 0;
  char **list = NULL;
  const cJSON *it;
  char ipath[256];
  if (check_type(c, v, cJSON_IsArray(v), "an array of strings", path, f->example))
    return -1;
  n = (size_t)cJSON_GetArraySize(v);
  if (n > MAX_LIST)
    return cfg_fail(c, path, "too many entries (%zu, at most %d)", n, MAX_LIST);
  list = calloc(n ? n : 1, sizeof(*list));
  if (!list)
    return cfg_fail(c, path, "out of memory");
  cJSON_ArrayForEach(it, v)
  {
    snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
    if (check_type(c, it, cJSON_IsString(it), "a string", ipath, f->example) ||
        !(list[i] = strdup(it->valuestring))) {
      if (!c->failed)
        cfg_fail(c, ipath, "out of memory");
      strv_free(list, i);
      return -1;
    }
    i++;
  }
  strv_free(*out, *n_out);
  *out = list;
  *n_out = n;
  return 0;
}

static int parse_field(struct cfg_ctx *c, const cJSON *v, const struct field *f, void *dst,
                       const char *path)
{
  char *base = (char *)dst;
  long long ll;
  switch (f->type) {
  case F_STR:
  case F_SECRET:
    if (check_type(c, v, cJSON_IsString(v), "a string", path, f->example))
      return -1;
    if (f->type == F_SECRET && *v->valuestring) {
      c->inline_secret = 1;
      snprintf(c->secret_field, sizeof(c->secret_field), "%s", path);
    }
    if (f->type == F_SECRET) {
      char **slot = (char **)(base + f->off);
      secret_free(*slot);
      *slot = strdup(v->valuestring);
      if (!*slot)
        return cfg_fail(c, path, "out of memory");
      return 0;
    }
    if (set_str((char **)(base + f->off), v->valuestring))
      return cfg_fail(c, path, "out of memory");
    return 0;
  case F_LONG:
    if (get_integer(c, v, f, path, &ll))
      return -1;
    *(long *)(base + f->off) = (long)ll;
    return 0;
  case F_UINT:
    if (get_integer(c, v, f, path, &ll))
      return -1;
    *(unsigned *)(base + f->off) = (unsigned)ll;
    return 0;
  case F_SIZE:
    if (get_integer(c, v, f, path, &ll))
      return -1;
    *(size_t *)(base + f->off) = (size_t)ll;
    return 0;
  case F_I64:
    if (get_integer(c, v, f, path, &ll))
      return -1;
    *(int64_t *)(base + f->off) = (int64_t)ll;
    return 0;
  case F_BOOL:
    if (check_type(c, v, cJSON_IsBool(v), "true or false", path, f->example))
      return -1;
    *(int *)(base + f->off) = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
  case F_STRLIST:
    return parse_strlist(c, v, f, path, (char ***)(base + f->off), (size_t *)(base + f->count_off));
  case F_CUSTOM:
    return f->fn(c, v, dst, path);
  }
  return cfg_fail(c, path, "internal error: unknown field type");
}

static int parse_object(struct cfg_ctx *c, const cJSON *obj, const struct field *fields,
                        size_t n_fields, void *dst, const char *path)
{
  const cJSON *it;
  char fpath[256];
  if (check_type(c, obj, cJSON_IsObject(obj), "an object", path, "{ ... }"))
    return -1;
  cJSON_ArrayForEach(it, obj)
  {
    const struct field *f = NULL;
    const cJSON *other;
    snprintf(fpath, sizeof(fpath), "%s%s%s", path, *path ? "." : "", it->string);
    for (size_t i = 0; i < n_fields; i++)
      if (strcmp(fields[i].name, it->string) == 0)
        f = &fields[i];
    if (!f) {
      char known[512];
      size_t off = 0;
      known[0] = '\0';
      for (size_t i = 0; i < n_fields && off < sizeof(known); i++) {
        int n = snprintf(known + off, sizeof(known) - off, "%s%s", i ? ", " : "", fields[i].name);
        if (n < 0)
          break;
        off += (size_t)n;
      }
      return cfg_fail(c, fpath, "unknown field; fix: remove it or use one of: %s", known);
    }
    /* cJSON keeps duplicate members; a second value silently winning would hide mistakes. */
    for (other = obj->child; other != it; other = other->next)
      if (strcmp(other->string, it->string) == 0)
        return cfg_fail(c, fpath, "appears twice; fix: keep one");
    if (parse_field(c, it, f, dst, fpath))
      return -1;
  }
  return 0;
}

/* ---- enums ----------------------------------------------------------------------------------- */

static int parse_enum(struct cfg_ctx *c, const cJSON *v, const char *path, const char *const *names,
                      const int *values, size_t n, int *out)
{
  char list[256];
  size_t off = 0;
  list[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (cJSON_IsString(v) && strcasecmp(v->valuestring, names[i]) == 0) {
      *out = values[i];
      return 0;
    }
    int k = snprintf(list + off, sizeof(list) - off, "%s\"%s\"", i ? ", " : "", names[i]);
    if (k > 0 && (size_t)k < sizeof(list) - off)
      off += (size_t)k;
  }
  if (!cJSON_IsString(v))
    return cfg_fail(c, path, "expected a string (one of %s), got %s", list, json_type_name(v));
  return cfg_fail(c, path, "unknown value \"%s\"; fix: use one of %s", v->valuestring, list);
}

static const char *const cred_names[] = {"auto",        "client_secret",     "client_certificate",
                                         "certificate", "workload_identity", "managed_identity",
                                         "azure_cli"};
static const int cred_values[] = {AKV_CRED_AUTO,        AKV_CRED_SECRET,   AKV_CRED_CERTIFICATE,
                                  AKV_CRED_CERTIFICATE, AKV_CRED_WORKLOAD, AKV_CRED_MANAGED,
                                  AKV_CRED_CLI};

static int cred_type_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  int k;
  if (parse_enum(c, v, path, cred_names, cred_values, 7, &k))
    return -1;
  ((struct akv_cred_config *)obj)->kind = (enum akv_cred_kind)k;
  return 0;
}

static int log_level_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const names[] = {"error", "warn", "warning", "info", "debug"};
  static const int values[] = {0, 1, 1, 2, 3};
  return parse_enum(c, v, path, names, values, 5, &((struct akv_config *)obj)->log_level);
}

/* client_secret_file: the secret is read now so a later permission change cannot matter. */
static int secret_file_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct akv_cred_config *cred = obj;
  char *data = NULL;
  size_t len = 0;
  struct stat st;
  int e;
  if (check_type(c, v, cJSON_IsString(v), "a string (path of a file holding the client secret)",
                 path, "\"/etc/akv-pkcs11/secret\""))
    return -1;
  if (read_file_capped(v->valuestring, SECRET_FILE_MAX, &data, &len, &st, &e))
    return cfg_fail(c, path,
                    "cannot read %s: %s; fix: point it to a readable file of at most %d bytes",
                    v->valuestring, strerror(e), SECRET_FILE_MAX);
  if (check_secret_perms(c, path, v->valuestring, &st)) {
    secret_free(data);
    return -1;
  }
  while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
    data[--len] = '\0';
  if (len == 0) {
    secret_free(data);
    return cfg_fail(c, path, "%s is empty; fix: write the client secret into it", v->valuestring);
  }
  secret_free(cred->client_secret);
  cred->client_secret = data;
  return 0;
}

#define CRED_FIELD(n, t)                                                                           \
  {                                                                                                \
#n, t, offsetof(struct akv_cred_config, n), 0, 0, 0, NULL, NULL                                \
  }
static const struct field cred_fields[] = {
    {"type", F_CUSTOM, 0, 0, 0, 0, cred_type_fn, NULL},
    CRED_FIELD(tenant_id, F_STR),
    CRED_FIELD(client_id, F_STR),
    CRED_FIELD(client_secret, F_SECRET),
    {"client_secret_file", F_CUSTOM, 0, 0, 0, 0, secret_file_fn, NULL},
    CRED_FIELD(certificate_path, F_STR),
    CRED_FIELD(certificate_password, F_SECRET),
    CRED_FIELD(federated_token_file, F_STR),
    CRED_FIELD(authority_host, F_STR),
    CRED_FIELD(imds_endpoint, F_STR),
    CRED_FIELD(identity_endpoint, F_STR),
    CRED_FIELD(identity_header, F_SECRET),
    CRED_FIELD(az_path, F_STR),
};
#define N_CRED_FIELDS (sizeof(cred_fields) / sizeof(cred_fields[0]))

static int slot_cred_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct akv_slot_config *s = obj;
  s->has_cred = 1;
  return parse_object(c, v, cred_fields, N_CRED_FIELDS, &s->cred, path);
}

static int global_cred_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return parse_object(c, v, cred_fields, N_CRED_FIELDS, &((struct akv_config *)obj)->cred, path);
}

/* Slot fields that have no direct struct member are collected here during parsing. */
struct slot_extra {
  struct akv_slot_config *s;
  int kind_set;
  int objects_set;
  int login_set;
  int pin_set;
};

static int parse_objects_value(struct cfg_ctx *c, const cJSON *v, const char *path, unsigned *out)
{
  static const char *const names[] = {"keys", "certificates", "secrets"};
  static const int values[] = {AKV_OBJ_KEYS, AKV_OBJ_CERTIFICATES, AKV_OBJ_SECRETS};
  const cJSON *it;
  unsigned mask = 0;
  size_t i = 0;
  char ipath[256];
  if (check_type(c, v, cJSON_IsArray(v), "an array of strings", path,
                 "[\"keys\", \"certificates\", \"secrets\"]"))
    return -1;
  cJSON_ArrayForEach(it, v)
  {
    int bit;
    snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i++);
    if (parse_enum(c, it, ipath, names, values, 3, &bit))
      return -1;
    mask |= (unsigned)bit;
  }
  *out = mask;
  return 0;
}

static int slot_objects_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct slot_extra *x = obj;
  x->objects_set = 1;
  return parse_objects_value(c, v, path, &x->s->objects);
}

static int slot_kind_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const names[] = {"vault", "keyvault", "mhsm", "managedhsm"};
  static const int values[] = {AKV_VAULT_KEYVAULT, AKV_VAULT_KEYVAULT, AKV_VAULT_MHSM,
                               AKV_VAULT_MHSM};
  struct slot_extra *x = obj;
  int k;
  if (parse_enum(c, v, path, names, values, 4, &k))
    return -1;
  x->s->kind = (enum akv_vault_kind)k;
  x->kind_set = 1;
  return 0;
}

static int slot_versions_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const names[] = {"latest", "all"};
  static const int values[] = {0, 1};
  return parse_enum(c, v, path, names, values, 2, &((struct slot_extra *)obj)->s->versions_all);
}

static int slot_public_ops_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const names[] = {"remote", "local"};
  static const int values[] = {0, 1};
  return parse_enum(c, v, path, names, values, 2, &((struct slot_extra *)obj)->s->public_ops_local);
}

static int slot_verify_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const names[] = {"local", "remote"};
  static const int values[] = {0, 1};
  return parse_enum(c, v, path, names, values, 2, &((struct slot_extra *)obj)->s->verify_remote);
}

/* "N/S": N operations per S seconds (docs/config.md "quota"). */
static int parse_rate(struct cfg_ctx *c, const cJSON *v, const char *path, uint32_t *n, uint32_t *w)
{
  unsigned long long a, b;
  int used = 0;
  if (check_type(c, v, cJSON_IsString(v), "a string", path, "\"2000/10\""))
    return -1;
  if (sscanf(v->valuestring, "%llu/%llu%n", &a, &b, &used) != 2 ||
      (size_t)used != strlen(v->valuestring) || !isdigit((unsigned char)v->valuestring[0]) ||
      a < 1 || a > 1000000 || b < 1 || b > 3600)
    return cfg_fail(c, path,
                    "\"%.40s\" is not a rate; fix: write OPERATIONS/SECONDS with 1-1000000 "
                    "operations per 1-3600 seconds, like \"2000/10\"",
                    v->valuestring);
  *n = (uint32_t)a;
  *w = (uint32_t)b;
  return 0;
}

static int slot_quota_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  static const char *const classes[AKV_QUOTA_NCLASS] = {"rsa2048", "rsa3072", "rsa4096", "ec",
                                                        "oct"};
  struct akv_quota_config *q = &((struct slot_extra *)obj)->s->quota;
  const cJSON *it;
  char ipath[256];
  uint32_t n, w;
  if (cJSON_IsString(v) &&
      (strcmp(v->valuestring, "off") == 0 || strcmp(v->valuestring, "hsm") == 0 ||
       strcmp(v->valuestring, "software") == 0)) {
    q->off = v->valuestring[0] == 'o';
    q->software = v->valuestring[0] == 's';
    return 0;
  }
  if (cJSON_IsString(v)) {
    if (parse_rate(c, v, path, &n, &w))
      return -1;
    for (size_t i = 0; i < AKV_QUOTA_NCLASS; i++) {
      q->count[i] = n;
      q->window_s[i] = w;
    }
    return 0;
  }
  if (!cJSON_IsObject(v))
    return cfg_fail(c, path,
                    "expected \"N/S\", \"off\", \"hsm\", \"software\" or an object of "
                    "rates by key class; fix: write it like {\"rsa2048\": \"2000/10\"}");
  cJSON_ArrayForEach(it, v)
  {
    size_t i;
    snprintf(ipath, sizeof(ipath), "%s.%s", path, it->string);
    for (i = 0; i < AKV_QUOTA_NCLASS && strcmp(classes[i], it->string) != 0; i++)
      ;
    if (i == AKV_QUOTA_NCLASS)
      return cfg_fail(c, ipath,
                      "unknown key class; fix: use one of: rsa2048, rsa3072, rsa4096, "
                      "ec, oct");
    if (parse_rate(c, it, ipath, &q->count[i], &q->window_s[i]))
      return -1;
  }
  return 0;
}

static int slot_pacing_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  if (check_type(c, v, cJSON_IsBool(v), "true or false", path, "false"))
    return -1;
  ((struct slot_extra *)obj)->s->quota.pacing_off = cJSON_IsFalse(v);
  return 0;
}

/* Slot fields address struct akv_slot_config through slot_extra.s: plain members use these
 * trampolines so the table stays declarative. */
#define SLOT_PLAIN(n, t, lo, hi, ex)                                                               \
  {                                                                                                \
#n, t, offsetof(struct akv_slot_config, n), 0, lo, hi, NULL, ex                                \
  }
static const struct field slot_plain_fields[] = {
    SLOT_PLAIN(url, F_STR, 0, 0, "\"https://NAME.vault.azure.net\""),
    SLOT_PLAIN(label, F_STR, 0, 0, "\"my-vault\""),
    {"replicas", F_STRLIST, offsetof(struct akv_slot_config, replicas),
     offsetof(struct akv_slot_config, n_replicas), 0, 0, NULL,
     "[\"https://NAME2.vault.azure.net\"]"},
    {"keys", F_STRLIST, offsetof(struct akv_slot_config, key_names),
     offsetof(struct akv_slot_config, n_key_names), 0, 0, NULL, "[\"key1\", \"key2\"]"},
    SLOT_PLAIN(key_filter, F_STR, 0, 0, "\"tls-*\""),
    SLOT_PLAIN(attestation_root, F_STR, 0, 0, "\"/etc/akv-pkcs11/vendor-root.pem\""),
    SLOT_PLAIN(show_disabled, F_BOOL, 0, 0, "false"),
    SLOT_PLAIN(read_only, F_BOOL, 0, 0, "true"),
    SLOT_PLAIN(allow_destroy, F_BOOL, 0, 0, "false"),
    SLOT_PLAIN(share_token, F_BOOL, 0, 0, "false"),
    {"ttl", F_I64, offsetof(struct akv_slot_config, ttl_s), 0, 0, 86400, NULL, "300"},
    {"secret_ttl", F_I64, offsetof(struct akv_slot_config, secret_ttl_s), 0, 0, 86400, NULL,
     "3600"},
    {"stale_if_error", F_I64, offsetof(struct akv_slot_config, stale_if_error_s), 0, 0, 604800,
     NULL, "3600"},
    {"prefetch_keys", F_I64, offsetof(struct akv_slot_config, prefetch_keys), 0, 0, 1000000, NULL,
     "100"},
    {"id_miss_refresh", F_I64, offsetof(struct akv_slot_config, id_miss_refresh_s), 0, 0, 3600,
     NULL, "5"},
};
#define N_SLOT_PLAIN (sizeof(slot_plain_fields) / sizeof(slot_plain_fields[0]))

static int slot_plain_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct slot_extra *x = obj;
  for (size_t i = 0; i < N_SLOT_PLAIN; i++)
    if (strcmp(slot_plain_fields[i].name, v->string) == 0)
      return parse_field(c, v, &slot_plain_fields[i], x->s, path);
  return cfg_fail(c, path, "internal error: no handler");
}

static int slot_credential_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return slot_cred_fn(c, v, ((struct slot_extra *)obj)->s, path);
}

/* ---- login (docs/security.md "Login") ------------------------------------------------------- */

int akv_pin_hash_valid(const char *s)
{
  static const char *const methods[] = {"$y$", "$gy$", "$7$", "$2b$", "$6$", "$5$"};
  const char *last;
  size_t i, n = sizeof(methods) / sizeof(methods[0]);
  if (!s)
    return 0;
  for (i = 0; i < n && strncmp(s, methods[i], strlen(methods[i])) != 0; i++)
    ;
  if (i == n || strlen(s) >= CRYPT_OUTPUT_SIZE)
    return 0;
  /* The alphabet of crypt(3) strings: a pasted line with a user name or a newline is not one. */
  for (const char *p = s; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("$./=,", *p))
      return 0;
  /* A setting without its hash ("$6$salt") would never match any PIN. */
  last = strrchr(s, '$');
  if (!last || strlen(last + 1) < 16)
    return 0;
  return crypt_checksalt(s) == CRYPT_SALT_OK;
}

static int parse_login(struct cfg_ctx *c, const cJSON *v, const char *path, int *out)
{
  static const char *const names[] = {"none", "required"};
  static const int values[] = {0, 1};
  return parse_enum(c, v, path, names, values, 2, out);
}

/* A pin_hash is kept like a secret (wiped on free, only in files group/other cannot read): it is
 * what an offline guess of the PIN would start from. Its value is never echoed: a clear PIN
 * written there by mistake must not reach a log. */
static int parse_pin_hash(struct cfg_ctx *c, const cJSON *v, const char *path, char **out)
{
  if (check_type(c, v, cJSON_IsString(v), "a string", path, "the output of mkpasswd -m yescrypt"))
    return -1;
  if (!akv_pin_hash_valid(v->valuestring))
    return cfg_fail(c, path,
                    "is not a crypt(3) string of a supported method (yescrypt $y$, sha512crypt "
                    "$6$, scrypt $7$, bcrypt $2b$, sha256crypt $5$); fix: write the output of "
                    "`mkpasswd -m yescrypt` (package whois), never the PIN itself");
  c->inline_secret = 1;
  snprintf(c->secret_field, sizeof(c->secret_field), "%s", path);
  secret_free(*out);
  *out = strdup(v->valuestring);
  return *out ? 0 : cfg_fail(c, path, "out of memory");
}

/* "pin": where the PIN is checked: against pin_hash, or as the password of the credential's
 * encrypted certificate key. */
static int parse_pin(struct cfg_ctx *c, const cJSON *v, const char *path, int *out)
{
  static const char *const names[] = {"pin_hash", "certificate_password"};
  static const int values[] = {0, 1};
  return parse_enum(c, v, path, names, values, 2, out);
}

static int slot_pin_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct slot_extra *x = obj;
  x->pin_set = 1;
  return parse_pin(c, v, path, &x->s->pin_certificate);
}

static int top_pin_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return parse_pin(c, v, path, &((struct akv_config *)obj)->pin_certificate);
}

static int slot_login_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct slot_extra *x = obj;
  x->login_set = 1;
  return parse_login(c, v, path, &x->s->login_required);
}

static int slot_pin_hash_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return parse_pin_hash(c, v, path, &((struct slot_extra *)obj)->s->pin_hash);
}

static int top_login_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return parse_login(c, v, path, &((struct akv_config *)obj)->login_required);
}

static int top_pin_hash_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  return parse_pin_hash(c, v, path, &((struct akv_config *)obj)->pin_hash);
}

static const struct field slot_fields[] = {
    {"url", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"label", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"replicas", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"kind", F_CUSTOM, 0, 0, 0, 0, slot_kind_fn, NULL},
    {"objects", F_CUSTOM, 0, 0, 0, 0, slot_objects_fn, NULL},
    {"keys", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"key_filter", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"versions", F_CUSTOM, 0, 0, 0, 0, slot_versions_fn, NULL},
    {"show_disabled", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"read_only", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"allow_destroy", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"share_token", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"ttl", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"secret_ttl", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"stale_if_error", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"prefetch_keys", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"id_miss_refresh", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
    {"public_ops", F_CUSTOM, 0, 0, 0, 0, slot_public_ops_fn, NULL},
    {"verify", F_CUSTOM, 0, 0, 0, 0, slot_verify_fn, NULL},
    {"credential", F_CUSTOM, 0, 0, 0, 0, slot_credential_fn, NULL},
    {"login", F_CUSTOM, 0, 0, 0, 0, slot_login_fn, NULL},
    {"pin_hash", F_CUSTOM, 0, 0, 0, 0, slot_pin_hash_fn, NULL},
    {"pin", F_CUSTOM, 0, 0, 0, 0, slot_pin_fn, NULL},
    {"quota", F_CUSTOM, 0, 0, 0, 0, slot_quota_fn, NULL},
    {"pacing", F_CUSTOM, 0, 0, 0, 0, slot_pacing_fn, NULL},
    {"attestation_root", F_CUSTOM, 0, 0, 0, 0, slot_plain_fn, NULL},
};
#define N_SLOT_FIELDS (sizeof(slot_fields) / sizeof(slot_fields[0]))

/* Per-slot parse state kept until validation (kind/objects given explicitly or not). */
struct slot_state {
  int kind_set;
  int objects_set;
  int login_set;
  int pin_set;
};

struct parse_state {
  struct slot_state *slots;
};

static void slot_defaults(struct akv_slot_config *s)
{
  memset(s, 0, sizeof(*s));
  s->objects = AKV_OBJ_KEYS | AKV_OBJ_CERTIFICATES;
  s->ttl_s = 300;
  s->secret_ttl_s = 3600;
  s->stale_if_error_s = 3600;
  s->prefetch_keys = 100;
  s->id_miss_refresh_s = 5;
  s->share_token = -1;
}

/* The global "slots" handler needs the parse state; it is passed through a file-local pointer
 * set only for the duration of one parse (akv_config_parse is not re-entrant per thread). */
static __thread struct parse_state *cur_state;

static int slots_fn(struct cfg_ctx *c, const cJSON *v, void *obj, const char *path)
{
  struct akv_config *cfg = obj;
  size_t n;
  const cJSON *it;
  char spath[256];
  if (check_type(c, v, cJSON_IsArray(v), "an array of slot objects", path,
                 "[{\"url\": \"https://NAME.vault.azure.net\"}]"))
    return -1;
  n = (size_t)cJSON_GetArraySize(v);
  if (n > MAX_SLOTS)
    return cfg_fail(c, path, "too many slots (%zu, at most %d)", n, MAX_SLOTS);
  cfg->slots = calloc(n ? n : 1, sizeof(*cfg->slots));
  cur_state->slots = calloc(n ? n : 1, sizeof(*cur_state->slots));
  if (!cfg->slots || !cur_state->slots)
    return cfg_fail(c, path, "out of memory");
  cJSON_ArrayForEach(it, v)
  {
    struct slot_extra x;
    size_t i = cfg->n_slots;
    slot_defaults(&cfg->slots[i]);
    cfg->n_slots++;
    x.s = &cfg->slots[i];
    x.kind_set = 0;
    x.objects_set = 0;
    x.login_set = 0;
    x.pin_set = 0;
    snprintf(spath, sizeof(spath), "%s[%zu]", path, i);
    if (parse_object(c, it, slot_fields, N_SLOT_FIELDS, &x, spath))
      return -1;
    cur_state->slots[i].kind_set = x.kind_set;
    cur_state->slots[i].objects_set = x.objects_set;
    cur_state->slots[i].login_set = x.login_set;
    cur_state->slots[i].pin_set = x.pin_set;
  }
  return 0;
}

#define CFG_FIELD(n, t, lo, hi, ex)                                                                \
  {                                                                                                \
#n, t, offsetof(struct akv_config, n), 0, lo, hi, NULL, ex                                     \
  }
static const struct field top_fields[] = {
    {"log_level", F_CUSTOM, 0, 0, 0, 0, log_level_fn, NULL},
    CFG_FIELD(log_file, F_STR, 0, 0, "\"/var/log/akv-pkcs11.log\" or \"syslog\""),
    CFG_FIELD(audit_file, F_STR, 0, 0, "\"/var/log/akv-pkcs11-audit.jsonl\""),
    CFG_FIELD(ca_file, F_STR, 0, 0, "\"/etc/ssl/certs/my-ca.pem\""),
    CFG_FIELD(proxy, F_STR, 0, 0, "\"http://proxy.example:3128\""),
    CFG_FIELD(api_version, F_STR, 0, 0, "\"7.6\""),
    {"allowed_hosts", F_STRLIST, offsetof(struct akv_config, allowed_hosts),
     offsetof(struct akv_config, n_allowed_hosts), 0, 0, NULL, "[\"localhost\"]"},
    CFG_FIELD(connect_timeout_ms, F_LONG, 1, 600000, "10000"),
    CFG_FIELD(request_timeout_ms, F_LONG, 1, 600000, "30000"),
    CFG_FIELD(deadline_ms, F_LONG, 1, 3600000, "30000"),
    CFG_FIELD(max_retries, F_UINT, 0, 20, "4"),
    CFG_FIELD(retry_base_ms, F_LONG, 1, 60000, "250"),
    CFG_FIELD(retry_cap_ms, F_LONG, 1, 600000, "8000"),
    CFG_FIELD(pool_size, F_UINT, 1, 256, "16"),
    CFG_FIELD(max_response_bytes, F_SIZE, 4096, 256LL * 1024 * 1024, "4194304"),
    CFG_FIELD(cache_file, F_STR, 0, 0, "\"\" (off) or \"/run/user/1000/akv-pkcs11.cache\""),
    CFG_FIELD(share_token, F_BOOL, 0, 0, "false"),
    CFG_FIELD(attestation_root, F_STR, 0, 0, "\"/etc/akv-pkcs11/vendor-root.pem\""),
    {"credential", F_CUSTOM, 0, 0, 0, 0, global_cred_fn, NULL},
    {"slots", F_CUSTOM, 0, 0, 0, 0, slots_fn, NULL},
    {"login", F_CUSTOM, 0, 0, 0, 0, top_login_fn, NULL},
    {"pin_hash", F_CUSTOM, 0, 0, 0, 0, top_pin_hash_fn, NULL},
    {"pin", F_CUSTOM, 0, 0, 0, 0, top_pin_fn, NULL},
};
#define N_TOP_FIELDS (sizeof(top_fields) / sizeof(top_fields[0]))

static void config_defaults(struct akv_config *cfg)
{
  cfg->log_level = AKV_LOG_WARN;
  cfg->connect_timeout_ms = 10000;
  cfg->request_timeout_ms = 30000;
  cfg->deadline_ms = 30000;
  cfg->max_retries = 4;
  cfg->retry_base_ms = 250;
  cfg->retry_cap_ms = 8000;
  cfg->pool_size = 16;
  cfg->share_token = 1;
  cfg->max_response_bytes = 4 * 1024 * 1024;
}

/* ---- environment ----------------------------------------------------------------------------- */

/* True in a privileged process (setuid/setgid, file capabilities): the environment and user
 * configuration files are then not used (docs/security.md "Privileged processes"). */
static int privileged(void)
{
  return getauxval(AT_SECURE) != 0;
}

/* secure_getenv: NULL for every name in a privileged process, whose environment was set by a less
 * trusted user. */
static const char *env_nonempty(const char *name)
{
  const char *v = secure_getenv(name);
  return v && *v ? v : NULL;
}

static int fill_env_str(char **dst, const char *name)
{
  const char *v = env_nonempty(name);
  if (*dst || !v)
    return 0;
  return set_str(dst, v);
}

static int fill_cred_env(struct cfg_ctx *c, struct akv_cred_config *cred)
{
  const char *kind = env_nonempty("AKV_PKCS11_CREDENTIAL");
  int had_secret = cred->client_secret != NULL, had_cert = cred->certificate_path != NULL;
  if (fill_env_str(&cred->tenant_id, "AZURE_TENANT_ID") ||
      fill_env_str(&cred->client_id, "AZURE_CLIENT_ID") ||
      fill_env_str(&cred->client_secret, "AZURE_CLIENT_SECRET") ||
      fill_env_str(&cred->certificate_path, "AZURE_CLIENT_CERTIFICATE_PATH") ||
      fill_env_str(&cred->certificate_password, "AZURE_CLIENT_CERTIFICATE_PASSWORD") ||
      fill_env_str(&cred->federated_token_file, "AZURE_FEDERATED_TOKEN_FILE") ||
      fill_env_str(&cred->authority_host, "AZURE_AUTHORITY_HOST") ||
      fill_env_str(&cred->imds_endpoint, "AKV_PKCS11_IMDS_ENDPOINT") ||
      fill_env_str(&cred->imds_endpoint, "AZURE_POD_IDENTITY_AUTHORITY_HOST") ||
      fill_env_str(&cred->identity_endpoint, "IDENTITY_ENDPOINT") ||
      fill_env_str(&cred->identity_header, "IDENTITY_HEADER") ||
      fill_env_str(&cred->az_path, "AKV_PKCS11_AZ_PATH"))
    return cfg_fail(c, "credential", "out of memory");
  if (!had_secret && cred->client_secret)
    cred->from_env |= AKV_CRED_ENV_SECRET;
  if (!had_cert && cred->certificate_path)
    cred->from_env |= AKV_CRED_ENV_CERT;
  if (kind && cred->kind == AKV_CRED_AUTO) {
    cJSON *v = cJSON_CreateString(kind);
    int k = 0, rc;
    if (!v)
      return cfg_fail(c, "credential", "out of memory");
    rc = parse_enum(c, v, "AKV_PKCS11_CREDENTIAL (environment)", cred_names, cred_values, 7, &k);
    cJSON_Delete(v);
    if (rc)
      return -1;
    cred->kind = (enum akv_cred_kind)k;
  }
  return 0;
}

/* Splits a comma-separated list; empty items are skipped. */
static int split_list(const char *s, char ***out, size_t *n_out)
{
  size_t n = 0, cap = 0;
  char **v = NULL;
  while (s && *s) {
    size_t len = strcspn(s, ",");
    const char *b = s, *e = s + len;
    while (b < e && isspace((unsigned char)*b))
      b++;
    while (e > b && isspace((unsigned char)e[-1]))
      e--;
    if (e > b) {
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 4;
        char **nv;
        if (ncap > MAX_LIST)
          goto fail;
        nv = realloc(v, ncap * sizeof(*v));
        if (!nv)
          goto fail;
        v = nv;
        cap = ncap;
      }
      v[n] = strndup(b, (size_t)(e - b));
      if (!v[n])
        goto fail;
      n++;
    }
    s += len;
    if (*s)
      s++;
  }
  *out = v;
  *n_out = n;
  return 0;
fail:
  strv_free(v, n);
  return -1;
}

static int objects_from_env(struct cfg_ctx *c, unsigned *mask)
{
  const char *v = env_nonempty("AKV_PKCS11_OBJECTS");
  char **items = NULL;
  size_t n = 0;
  unsigned m = 0;
  int rc = 0;
  if (!v)
    return 1; /* not set */
  if (split_list(v, &items, &n))
    return cfg_fail(c, "AKV_PKCS11_OBJECTS", "out of memory");
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (strcasecmp(items[i], "keys") == 0)
      m |= AKV_OBJ_KEYS;
    else if (strcasecmp(items[i], "certificates") == 0)
      m |= AKV_OBJ_CERTIFICATES;
    else if (strcasecmp(items[i], "secrets") == 0)
      m |= AKV_OBJ_SECRETS;
    else
      rc = cfg_fail(c, "AKV_PKCS11_OBJECTS (environment)",
                    "unknown object kind \"%s\"; fix: a comma-separated list of keys, "
                    "certificates, secrets",
                    items[i]);
  }
  strv_free(items, n);
  if (rc == 0)
    *mask = m;
  return rc;
}

static int slots_from_env(struct cfg_ctx *c, struct akv_config *cfg, struct parse_state *ps)
{
  const char *v = env_nonempty("AKV_PKCS11_VAULT_URL");
  char **urls = NULL;
  size_t n = 0;
  int rc = -1;
  if (!v)
    return 0;
  if (split_list(v, &urls, &n))
    return cfg_fail(c, "AKV_PKCS11_VAULT_URL", "out of memory");
  if (n > MAX_SLOTS) {
    cfg_fail(c, "AKV_PKCS11_VAULT_URL", "too many vaults (%zu, at most %d)", n, MAX_SLOTS);
    goto out;
  }
  free(cfg->slots);
  free(ps->slots);
  cfg->slots = calloc(n ? n : 1, sizeof(*cfg->slots));
  ps->slots = calloc(n ? n : 1, sizeof(*ps->slots));
  if (!cfg->slots || !ps->slots) {
    cfg_fail(c, "AKV_PKCS11_VAULT_URL", "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    struct akv_slot_config *s = &cfg->slots[i];
    char *hash = strchr(urls[i], '#');
    slot_defaults(s);
    cfg->n_slots++;
    /* "URL#mhsm" marks a Managed HSM on a custom host (the emulator); Azure hosts need no mark. */
    if (hash) {
      *hash = '\0';
      if (strcasecmp(hash + 1, "mhsm") == 0 || strcasecmp(hash + 1, "managedhsm") == 0)
        s->kind = AKV_VAULT_MHSM;
      else if (strcasecmp(hash + 1, "vault") == 0 || strcasecmp(hash + 1, "keyvault") == 0)
        s->kind = AKV_VAULT_KEYVAULT;
      else {
        cfg_fail(c, "AKV_PKCS11_VAULT_URL (environment)",
                 "unknown kind \"#%s\"; fix: use URL#mhsm or URL#vault", hash + 1);
        goto out;
      }
      ps->slots[i].kind_set = 1;
    }
    s->url = strdup(urls[i]);
    if (!s->url) {
      cfg_fail(c, "AKV_PKCS11_VAULT_URL", "out of memory");
      goto out;
    }
  }
  rc = 0;
out:
  strv_free(urls, n);
  return rc;
}

/* ---- validation ------------------------------------------------------------------------------ */

static int host_allowed(const struct akv_config *cfg, const char *host)
{
  for (size_t i = 0; i < cfg->n_allowed_hosts; i++)
    if (strcasecmp(cfg->allowed_hosts[i], host) == 0)
      return 1;
  return 0;
}

/* Validates and normalises a vault URL to "https://host[:port]". */
static int validate_url(struct cfg_ctx *c, struct akv_config *cfg, struct akv_slot_config *s,
                        int kind_set, const char *path)
{
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *upath = NULL, *query = NULL, *user = NULL,
       *frag = NULL;
  char *norm = NULL;
  enum akv_vault_kind kind = AKV_VAULT_KEYVAULT;
  int rc = -1, azure;
  size_t nlen;
  if (!u)
    return cfg_fail(c, path, "out of memory");
  if (!s->url || !*s->url) {
    cfg_fail(c, path, "missing; fix: add \"url\": \"https://NAME.vault.azure.net\"");
    goto out;
  }
  if (curl_url_set(u, CURLUPART_URL, s->url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
    cfg_fail(c, path, "\"%s\" is not a valid URL; fix: write it like https://NAME.vault.azure.net",
             s->url);
    goto out;
  }
  if (strcasecmp(scheme, "https") != 0) {
    cfg_fail(c, path,
             "\"%s\" must use https (bearer tokens are never sent in clear); fix: "
             "https://NAME.vault.azure.net",
             s->url);
    goto out;
  }
  curl_url_get(u, CURLUPART_PORT, &port, 0);
  curl_url_get(u, CURLUPART_PATH, &upath, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
  if (user || query || frag || (upath && strcmp(upath, "/") != 0 && *upath)) {
    cfg_fail(c, path,
             "\"%s\" must be the vault's base URL only (no path, query or user); fix: "
             "https://NAME.vault.azure.net",
             s->url);
    goto out;
  }
  azure = akv_azure_vault_host(host, NULL, &kind);
  if (!azure && !host_allowed(cfg, host)) {
    cfg_fail(c, path,
             "host \"%s\" is not an Azure Key Vault or Managed HSM host (*.vault.azure.net, "
             "*.managedhsm.azure.net, *.vault.azure.cn, *.vault.usgovcloudapi.net, "
             "*.managedhsm.usgovcloudapi.net, *.vault.microsoftazure.de); fix: correct the URL, "
             "or add \"%s\" to allowed_hosts (AKV_PKCS11_ALLOWED_HOSTS) for a private endpoint "
             "or the emulator",
             host, host);
    goto out;
  }
  if (!kind_set)
    s->kind = azure ? kind : AKV_VAULT_KEYVAULT;
  for (char *p = host; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  nlen = strlen(host) + (port ? strlen(port) : 0) + 16;
  norm = malloc(nlen);
  if (!norm) {
    cfg_fail(c, path, "out of memory");
    goto out;
  }
  if (port && strcmp(port, "443") != 0)
    snprintf(norm, nlen, "https://%s:%s", host, port);
  else
    snprintf(norm, nlen, "https://%s", host);
  free(s->url);
  s->url = norm;
  if (!s->label) {
    size_t dot = strcspn(host, ".");
    s->label = strndup(host, dot);
    if (!s->label) {
      cfg_fail(c, path, "out of memory");
      goto out;
    }
  }
  rc = 0;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(upath);
  curl_free(query);
  curl_free(user);
  curl_free(frag);
  curl_url_cleanup(u);
  return rc;
}

/* slots[i].replicas[k] (docs/config.md "replicas"): a vault base URL under the rules of url,
 * normalised the same way, of the slot's kind, neither the slot's url nor listed twice. */
static int validate_replica(struct cfg_ctx *c, struct akv_config *cfg, struct akv_slot_config *s,
                            size_t i, size_t k)
{
  struct akv_slot_config tmp;
  enum akv_vault_kind kind;
  char path[96], host[256];
  int rc;
  snprintf(path, sizeof(path), "slots[%zu].replicas[%zu]", i, k);
  if (k >= 8)
    return cfg_fail(c, path, "more than 8 replicas; fix: list at most 8 vaults");
  memset(&tmp, 0, sizeof(tmp));
  tmp.url = s->replicas[k];
  tmp.label = (char *)"-"; /* no label is derived from a replica */
  rc = validate_url(c, cfg, &tmp, 0, path);
  s->replicas[k] = tmp.url; /* normalised (the same string on failure) */
  if (rc)
    return -1;
  snprintf(host, sizeof(host), "%s", s->replicas[k] + 8); /* after "https://" */
  host[strcspn(host, ":")] = '\0';
  if (akv_azure_vault_host(host, NULL, &kind) && kind != s->kind)
    return cfg_fail(c, path,
                    "%s is a %s, the slot is a %s; fix: a replica holds the same keys "
                    "as the slot's vault, so it is of the same kind",
                    s->replicas[k], kind == AKV_VAULT_MHSM ? "Managed HSM" : "Key Vault",
                    s->kind == AKV_VAULT_MHSM ? "Managed HSM" : "Key Vault");
  if (strcasecmp(s->replicas[k], s->url) == 0)
    return cfg_fail(c, path, "%s is the slot's own url; fix: list only the other vaults",
                    s->replicas[k]);
  for (size_t j = 0; j < k; j++)
    if (strcasecmp(s->replicas[j], s->replicas[k]) == 0)
      return cfg_fail(c, path, "%s is already replicas[%zu]; fix: list each vault once",
                      s->replicas[k], j);
  return 0;
}

static int valid_key_name(const char *n)
{
  size_t len = strlen(n);
  if (len == 0 || len > 127)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)n[i]) && n[i] != '-')
      return 0;
  return 1;
}

static int starts_with_scheme(const char *s, int allow_http)
{
  return strncasecmp(s, "https://", 8) == 0 || (allow_http && strncasecmp(s, "http://", 7) == 0);
}

static int validate_cred(struct cfg_ctx *c, struct akv_cred_config *cred, const char *path)
{
  char fpath[256];
  struct stat st;
  if (cred->authority_host && !starts_with_scheme(cred->authority_host, 0)) {
    snprintf(fpath, sizeof(fpath), "%s.authority_host", path);
    return cfg_fail(c, fpath, "\"%s\" must be an https URL; fix: https://login.microsoftonline.com",
                    cred->authority_host);
  }
  if (cred->imds_endpoint && !starts_with_scheme(cred->imds_endpoint, 1)) {
    snprintf(fpath, sizeof(fpath), "%s.imds_endpoint", path);
    return cfg_fail(c, fpath, "\"%s\" must be an http(s) URL; fix: http://169.254.169.254",
                    cred->imds_endpoint);
  }
  if (cred->identity_endpoint && !starts_with_scheme(cred->identity_endpoint, 1)) {
    snprintf(fpath, sizeof(fpath), "%s.identity_endpoint", path);
    return cfg_fail(c, fpath, "\"%s\" must be an http(s) URL", cred->identity_endpoint);
  }
  /* The certificate file holds the private key: same rule as any secret file. */
  if (cred->certificate_path && stat(cred->certificate_path, &st) == 0) {
    snprintf(fpath, sizeof(fpath), "%s.certificate_path", path);
    if (check_secret_perms(c, fpath, cred->certificate_path, &st))
      return -1;
  }
  switch (cred->kind) {
  case AKV_CRED_SECRET:
  case AKV_CRED_CERTIFICATE:
  case AKV_CRED_WORKLOAD: {
    const char *need = NULL, *fix = NULL;
    if (!cred->tenant_id) {
      need = "tenant_id";
      fix = "set \"tenant_id\" or AZURE_TENANT_ID";
    } else if (!cred->client_id) {
      need = "client_id";
      fix = "set \"client_id\" or AZURE_CLIENT_ID";
    } else if (cred->kind == AKV_CRED_SECRET && !cred->client_secret) {
      need = "client_secret";
      fix = "set \"client_secret_file\" (a chmod 600 file) or AZURE_CLIENT_SECRET";
    } else if (cred->kind == AKV_CRED_CERTIFICATE && !cred->certificate_path) {
      need = "certificate_path";
      fix = "set \"certificate_path\" (PEM with certificate and key) or "
            "AZURE_CLIENT_CERTIFICATE_PATH";
    } else if (cred->kind == AKV_CRED_CERTIFICATE && stat(cred->certificate_path, &st) != 0) {
      snprintf(fpath, sizeof(fpath), "%s.certificate_path", path);
      return cfg_fail(c, fpath, "cannot access %s: %s; fix: point it to the PEM file",
                      cred->certificate_path, strerror(errno));
    } else if (cred->kind == AKV_CRED_WORKLOAD && !cred->federated_token_file) {
      need = "federated_token_file";
      fix = "set \"federated_token_file\" or AZURE_FEDERATED_TOKEN_FILE";
    }
    if (need) {
      snprintf(fpath, sizeof(fpath), "%s.%s", path, need);
      return cfg_fail(c, fpath, "required by credential type \"%s\" but missing; fix: %s",
                      cred_names[cred->kind == AKV_CRED_SECRET        ? 1
                                 : cred->kind == AKV_CRED_CERTIFICATE ? 2
                                                                      : 4],
                      fix);
    }
    break;
  }
  default:
    break;
  }
  return 0;
}

static int inherit_str(char **dst, const char *src)
{
  if (*dst || !src)
    return 0;
  return set_str(dst, src);
}

/* pin: "certificate_password" on slot i: the credential the slot uses must be a client certificate
 * whose key has no configured password, or the PIN would add nothing. */
static int check_pin_certificate(struct cfg_ctx *c, const struct akv_config *cfg,
                                 const struct akv_slot_config *s, size_t i, const char *fpath)
{
  const struct akv_cred_config *cred = s->has_cred ? &s->cred : &cfg->cred;
  if (s->pin_hash)
    return cfg_fail(c, fpath,
                    "is \"certificate_password\", so slots[%zu].pin_hash is never used; "
                    "fix: remove pin_hash",
                    i);
  if (cred->kind != AKV_CRED_CERTIFICATE)
    return cfg_fail(c, fpath,
                    "is \"certificate_password\" but the slot's credential is not a "
                    "client certificate; fix: set the credential's \"type\": "
                    "\"client_certificate\" with a certificate_path whose key is encrypted, or use "
                    "\"pin\": \"pin_hash\"");
  if (cred->certificate_password)
    return cfg_fail(
        c, fpath,
        "is \"certificate_password\" but a certificate password is "
        "configured (certificate_password or AZURE_CLIENT_CERTIFICATE_PASSWORD), so the "
        "PIN would add nothing; fix: remove the configured password");
  return 0;
}

/* Each slot's login: its own fields, else the top-level ones. */
static int finish_login(struct cfg_ctx *c, struct akv_config *cfg, struct parse_state *ps)
{
  char fpath[64];
  int any_required = 0;
  for (size_t i = 0; i < cfg->n_slots; i++) {
    struct akv_slot_config *s = &cfg->slots[i];
    if (!ps->slots[i].login_set)
      s->login_required = cfg->login_required;
    if (!ps->slots[i].pin_set)
      s->pin_certificate = cfg->pin_certificate;
    if (s->pin_certificate) {
      if (ps->slots[i].pin_set)
        snprintf(fpath, sizeof(fpath), "slots[%zu].pin", i);
      else
        snprintf(fpath, sizeof(fpath), "pin");
      /* The PIN opens the credential: there is no token without it, so there is a login. */
      if (ps->slots[i].login_set && !s->login_required)
        return cfg_fail(c, fpath,
                        "is \"certificate_password\" but slots[%zu].login is \"none\"; "
                        "fix: remove \"login\": \"none\" (the PIN is then always asked)",
                        i);
      s->login_required = 1;
      if (check_pin_certificate(c, cfg, s, i, fpath))
        return -1;
      any_required = 1;
      continue;
    }
    if (!s->login_required && s->pin_hash) {
      snprintf(fpath, sizeof(fpath), "slots[%zu].pin_hash", i);
      return cfg_fail(c, fpath,
                      "is set but the slot's login is \"none\", so no PIN is ever "
                      "asked; fix: add \"login\": \"required\" or remove pin_hash");
    }
    if (s->login_required && !s->pin_hash && cfg->pin_hash &&
        !(s->pin_hash = strdup(cfg->pin_hash)))
      return cfg_fail(c, NULL, "out of memory");
    if (s->login_required && !s->pin_hash) {
      if (ps->slots[i].login_set)
        snprintf(fpath, sizeof(fpath), "slots[%zu].login", i);
      else
        snprintf(fpath, sizeof(fpath), "login");
      return cfg_fail(c, fpath,
                      "is \"required\" but slots[%zu] has no pin_hash; fix: add "
                      "\"pin_hash\": the output of `mkpasswd -m yescrypt` (package whois), never "
                      "the PIN itself, or \"pin\": \"certificate_password\"",
                      i);
    }
    any_required |= s->login_required;
  }
  if (cfg->pin_hash && !any_required)
    return cfg_fail(c, "pin_hash",
                    "is set but no slot has \"login\": \"required\", so no PIN "
                    "is ever asked; fix: add \"login\": \"required\" or remove pin_hash");
  return 0;
}

/* ca_file chooses which servers are trusted: like the configuration file, it must be owned by
 * root or this process's user and not writable by group or other (docs/security.md
 * "Configuration, log and audit files"). A file that does not exist is left to the TLS layer,
 * which fails the first request with the reason. */
static int check_ca_file(struct cfg_ctx *c, const char *path)
{
  struct stat st;
  uid_t me = geteuid();
  if (stat(path, &st) != 0)
    return 0;
  if (st.st_uid != 0 && st.st_uid != me)
    return cfg_fail(c, "ca_file",
                    "%s is owned by uid %u, neither root nor this process's user (uid %u), and "
                    "whoever can change it chooses which servers are trusted; fix: chown %u %s, "
                    "or use a CA file you own",
                    path, (unsigned)st.st_uid, (unsigned)me, (unsigned)me, path);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return cfg_fail(c, "ca_file",
                    "group or other can write %s (mode %03o), and whoever can change it chooses "
                    "which servers are trusted; fix: chmod go-w %s",
                    path, (unsigned)(st.st_mode & 0777), path);
  return 0;
}

/* ---- attestation_root ------------------------------------------------------------------------ */

#define ROOTS_MAX_BYTES (256 * 1024)
#define ROOTS_MAX 32
#define ROOTS_FIX                                                                                  \
  "fix: name a PEM file of the HSM vendor's root certificate(s) (docs/usage.md \"Key attestation " \
  "for a CA\")"

/* The certificates of the PEM text, each a self-signed root; -1 with the reason in why. */
static int roots_parse(const char *path, const char *pem, size_t len, STACK_OF(X509) * roots,
                       char *why, size_t whylen)
{
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  int rc = -1;
  if (!bio) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  for (int n = 1;; n++) {
    char *pname = NULL, *header = NULL, subject[256];
    unsigned char *data = NULL;
    const unsigned char *p;
    long dlen = 0;
    X509 *x = NULL;
    ERR_set_mark();
    if (PEM_read_bio(bio, &pname, &header, &data, &dlen) != 1) {
      unsigned long e = ERR_peek_last_error();
      ERR_pop_to_mark();
      if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && n > 1)
        rc = 0; /* the end: text between and after certificates is allowed, as in CA bundles */
      else if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        snprintf(why, whylen,
                 "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----); " ROOTS_FIX, path);
      else
        snprintf(why, whylen, "%s: PEM entry %d is damaged (%s); " ROOTS_FIX, path, n,
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unreadable");
      break;
    }
    ERR_pop_to_mark();
    p = data;
    if (strcmp(pname, "CERTIFICATE") != 0)
      snprintf(why, whylen, "%s: PEM entry %d is a %s, not a CERTIFICATE; " ROOTS_FIX, path, n,
               pname);
    else if (n > ROOTS_MAX)
      snprintf(why, whylen, "%s holds more than %d certificates; " ROOTS_FIX, path, ROOTS_MAX);
    else if (!(x = d2i_X509(NULL, &p, dlen)) || p != data + dlen)
      snprintf(why, whylen, "%s: PEM entry %d is not an X.509 certificate; " ROOTS_FIX, path, n);
    else if (X509_check_issued(x, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(x)) != 1)
      snprintf(why, whylen,
               "%s: certificate %d (%s) is not self-signed, and only a root is trusted here; fix: "
               "give the vendor's root certificate, not the HSM card's or an intermediate",
               path, n, X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject)));
    else if (sk_X509_push(roots, x) > 0)
      x = NULL;
    else
      snprintf(why, whylen, "out of memory");
    ERR_clear_error();
    OPENSSL_free(pname);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (x) {
      X509_free(x);
      break;
    }
    if (sk_X509_num(roots) != n)
      break;
  }
  BIO_free(bio);
  return rc;
}

int akv_attestation_roots_read(const char *path, struct stack_st_X509 **out, char *why,
                               size_t whylen)
{
  STACK_OF(X509) *roots = NULL;
  struct stat st;
  uid_t me = geteuid();
  char *pem = NULL;
  size_t len = 0;
  int e = 0, rc = -1;
  *out = NULL;
  if (!path || !*path) {
    snprintf(why, whylen, "is empty; " ROOTS_FIX ", or leave the field out");
    return -1;
  }
  /* The checks of ca_file (check_ca_file), on the opened file: whoever can change it chooses
   * which HSMs' attestations are accepted. */
  if (read_file_capped(path, ROOTS_MAX_BYTES, &pem, &len, &st, &e) != 0) {
    snprintf(why, whylen, "cannot read %s: %s; " ROOTS_FIX, path,
             e == EINVAL  ? "not a regular file"
             : e == EFBIG ? "larger than 256 KiB"
                          : strerror(e));
    return -1;
  }
  if (st.st_uid != 0 && st.st_uid != me)
    snprintf(why, whylen,
             "%s is owned by uid %u, neither root nor this process's user (uid %u), and whoever "
             "can change it chooses which HSM vendor roots attestations are checked against; fix: "
             "chown %u %s, or use a file you own",
             path, (unsigned)st.st_uid, (unsigned)me, (unsigned)me, path);
  else if (st.st_mode & (S_IWGRP | S_IWOTH))
    snprintf(why, whylen,
             "group or other can write %s (mode %03o), and whoever can change it chooses which "
             "HSM vendor roots attestations are checked against; fix: chmod go-w %s",
             path, (unsigned)(st.st_mode & 0777), path);
  else if (!(roots = sk_X509_new_null()))
    snprintf(why, whylen, "out of memory");
  else if ((rc = roots_parse(path, pem, len, roots, why, whylen)) == 0)
    *out = roots;
  if (rc != 0)
    sk_X509_pop_free(roots, X509_free);
  free(pem);
  return rc;
}

/* attestation_root (docs/config.md): read at load; a slot without its own takes the top-level
 * one. A Key Vault has no key attestation, so a slot's own on a Key Vault is a mistake. */
static int finish_attestation_roots(struct cfg_ctx *c, struct akv_config *cfg)
{
  char why[1024], fpath[64];
  if (cfg->attestation_root &&
      akv_attestation_roots_read(cfg->attestation_root, &cfg->attestation_roots, why, sizeof(why)))
    return cfg_fail(c, "attestation_root", "%s", why);
  for (size_t i = 0; i < cfg->n_slots; i++) {
    struct akv_slot_config *s = &cfg->slots[i];
    snprintf(fpath, sizeof(fpath), "slots[%zu].attestation_root", i);
    if (s->attestation_root && s->kind != AKV_VAULT_MHSM)
      return cfg_fail(c, fpath,
                      "slots[%zu] is a Key Vault, which has no key attestation; fix: remove it, "
                      "or set \"kind\": \"mhsm\" if the vault is a Managed HSM",
                      i);
    if (s->attestation_root) {
      if (akv_attestation_roots_read(s->attestation_root, &s->attestation_roots, why, sizeof(why)))
        return cfg_fail(c, fpath, "%s", why);
    } else if (cfg->attestation_roots && s->kind == AKV_VAULT_MHSM) {
      if (inherit_str(&s->attestation_root, cfg->attestation_root) ||
          !(s->attestation_roots = X509_chain_up_ref(cfg->attestation_roots)))
        return cfg_fail(c, fpath, "out of memory");
    }
  }
  return 0;
}

static int finish(struct cfg_ctx *c, struct akv_config *cfg, struct parse_state *ps)
{
  unsigned env_objects = 0;
  int have_env_objects;
  char slot_path[64];
  const char *hosts = env_nonempty("AKV_PKCS11_ALLOWED_HOSTS");

  if (!cfg->n_allowed_hosts && hosts) {
    strv_free(cfg->allowed_hosts, 0);
    cfg->allowed_hosts = NULL;
    if (split_list(hosts, &cfg->allowed_hosts, &cfg->n_allowed_hosts))
      return cfg_fail(c, "AKV_PKCS11_ALLOWED_HOSTS", "out of memory");
  }
  if (fill_env_str(&cfg->ca_file, "AKV_PKCS11_CA_FILE") ||
      fill_env_str(&cfg->log_file, "AKV_PKCS11_LOG_FILE") ||
      fill_env_str(&cfg->audit_file, "AKV_PKCS11_AUDIT_FILE") ||
      fill_env_str(&cfg->proxy, "AKV_PKCS11_PROXY"))
    return cfg_fail(c, NULL, "out of memory");
  if (cfg->ca_file && check_ca_file(c, cfg->ca_file))
    return -1;
  if (!cfg->api_version && set_str(&cfg->api_version, AKV_API_VERSION))
    return cfg_fail(c, NULL, "out of memory");
  for (const char *p = cfg->api_version; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
      return cfg_fail(c, "api_version", "\"%s\" is not an api-version; fix: \"7.6\"",
                      cfg->api_version);
  if (cfg->retry_cap_ms < cfg->retry_base_ms)
    return cfg_fail(c, "retry_cap_ms",
                    "must not be smaller than retry_base_ms (%ld); fix: "
                    "raise it",
                    cfg->retry_base_ms);
  {
    /* Like log.c, the environment overrides the file here: it is how one debugs on the spot. */
    const char *lvl = env_nonempty("AKV_PKCS11_LOG_LEVEL");
    if (lvl) {
      static const char *const names[] = {"error", "warn", "warning", "info", "debug",
                                          "0",     "1",    "2",       "3"};
      static const int values[] = {0, 1, 1, 2, 3, 0, 1, 2, 3};
      cJSON *v = cJSON_CreateString(lvl);
      int rc;
      if (!v)
        return cfg_fail(c, NULL, "out of memory");
      rc =
          parse_enum(c, v, "AKV_PKCS11_LOG_LEVEL (environment)", names, values, 9, &cfg->log_level);
      cJSON_Delete(v);
      if (rc)
        return -1;
    }
  }
  if (fill_cred_env(c, &cfg->cred))
    return -1;
  if (validate_cred(c, &cfg->cred, "credential"))
    return -1;
  if (cfg->n_slots == 0 && slots_from_env(c, cfg, ps))
    return -1;
  if (cfg->n_slots == 0 && !c->allow_no_slots)
    return cfg_fail(c, "slots",
                    "no vault configured; fix: add \"slots\": [{\"url\": "
                    "\"https://NAME.vault.azure.net\"}] or set AKV_PKCS11_VAULT_URL");
  have_env_objects = objects_from_env(c, &env_objects);
  if (have_env_objects < 0)
    return -1;
  for (size_t i = 0; i < cfg->n_slots; i++) {
    struct akv_slot_config *s = &cfg->slots[i];
    snprintf(slot_path, sizeof(slot_path), "slots[%zu].url", i);
    if (validate_url(c, cfg, s, ps->slots[i].kind_set, slot_path))
      return -1;
    for (size_t k = 0; k < s->n_replicas; k++)
      if (validate_replica(c, cfg, s, i, k))
        return -1;
    if (!ps->slots[i].objects_set && have_env_objects == 0)
      s->objects = env_objects;
    if (s->kind == AKV_VAULT_MHSM && (s->objects & (AKV_OBJ_CERTIFICATES | AKV_OBJ_SECRETS))) {
      /* Managed HSM holds keys only; asking it for certificates would fail every refresh. */
      if (ps->slots[i].objects_set) {
        snprintf(slot_path, sizeof(slot_path), "slots[%zu].objects", i);
        return cfg_fail(c, slot_path, "a Managed HSM holds keys only; fix: [\"keys\"]");
      }
      s->objects = AKV_OBJ_KEYS;
    }
    for (size_t k = 0; k < s->n_key_names; k++) {
      if (!valid_key_name(s->key_names[k])) {
        snprintf(slot_path, sizeof(slot_path), "slots[%zu].keys[%zu]", i, k);
        return cfg_fail(c, slot_path,
                        "\"%s\" is not a key name (1-127 of 0-9, a-z, A-Z, -); fix: the name "
                        "only, not a URL",
                        s->key_names[k]);
      }
    }
    for (size_t j = 0; j < i; j++)
      if (strcasecmp(cfg->slots[j].url, s->url) == 0) {
        snprintf(slot_path, sizeof(slot_path), "slots[%zu].url", i);
        return cfg_fail(c, slot_path, "%s is already slots[%zu]; fix: list each vault once", s->url,
                        j);
      }
    if (s->has_cred) {
      snprintf(slot_path, sizeof(slot_path), "slots[%zu].credential", i);
      if (inherit_str(&s->cred.authority_host, cfg->cred.authority_host) ||
          inherit_str(&s->cred.imds_endpoint, cfg->cred.imds_endpoint) ||
          inherit_str(&s->cred.az_path, cfg->cred.az_path))
        return cfg_fail(c, slot_path, "out of memory");
      if (validate_cred(c, &s->cred, slot_path))
        return -1;
    }
    /* share_token (docs/config.md): the slot's own, else the module's. A slot without its own
     * credential uses the module's, token cache included, so it cannot differ from it. */
    if (s->share_token < 0) {
      s->share_token = cfg->share_token;
    } else if (!s->has_cred && s->share_token != cfg->share_token) {
      snprintf(slot_path, sizeof(slot_path), "slots[%zu].share_token", i);
      return cfg_fail(c, slot_path,
                      "is %s but the slot uses the module's credential, whose "
                      "token is %sshared; fix: set \"share_token\" at the top level, or give "
                      "the slot its own \"credential\"",
                      s->share_token ? "true" : "false", cfg->share_token ? "" : "not ");
    }
    s->cred.share_token = s->share_token;
  }
  cfg->cred.share_token = cfg->share_token;
  if (finish_attestation_roots(c, cfg))
    return -1;
  return finish_login(c, cfg, ps);
}

/* The "file" of a module that found no configuration anywhere. */
static const char no_config_path[] = "(no configuration found)";

static int parse_doc(const char *json, size_t len, const char *path, int check_inline_perm,
                     const struct stat *st, struct akv_config **out, char *err, size_t errlen)
{
  struct cfg_ctx c = {
      path ? path : "(inline configuration)", err, errlen, 0, 0, "", path == no_config_path};
  struct parse_state ps = {NULL};
  struct akv_config *cfg = calloc(1, sizeof(*cfg));
  cJSON *doc = NULL;
  const char *end = NULL;
  int rc = -1;
  if (err && errlen)
    err[0] = '\0';
  if (!cfg) {
    cfg_fail(&c, NULL, "out of memory");
    goto out;
  }
  config_defaults(cfg);
  if (json) {
    doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!doc) {
      size_t off = end && end >= json ? (size_t)(end - json) : 0;
      size_t line = 1;
      for (size_t i = 0; i < off && i < len; i++)
        if (json[i] == '\n')
          line++;
      cfg_fail(&c, NULL,
               "invalid JSON near line %zu (byte %zu); fix: check commas, quotes and "
               "braces (jq . FILE shows the error)",
               line, off);
      goto out;
    }
    cur_state = &ps;
    rc = parse_object(&c, doc, top_fields, N_TOP_FIELDS, cfg, "");
    cur_state = NULL;
    if (rc)
      goto out;
    rc = -1;
    if (c.inline_secret && check_inline_perm && st &&
        check_secret_perms(&c, c.secret_field, path, st))
      goto out;
  }
  if (path && json && !(cfg->path = strdup(path))) {
    cfg_fail(&c, NULL, "out of memory");
    goto out;
  }
  if (finish(&c, cfg, &ps))
    goto out;
  *out = cfg;
  cfg = NULL;
  rc = 0;
out:
  cJSON_Delete(doc);
  free(ps.slots);
  akv_config_free(cfg);
  /* Not logged here: the caller reports err once (C_Initialize logs it, the tools print it). */
  return rc;
}

int akv_config_parse(const char *json, const char *path, struct akv_config **out, char *err,
                     size_t errlen)
{
  if (!json || !out)
    return -1;
  return parse_doc(json, strlen(json), path, 0, NULL, out, err, errlen);
}

/* sshd's rule for its own files: a configuration another user can change is not the user's
 * configuration, whatever it holds. The owner must be root or this process's effective user, and
 * neither group nor other may write it. Checked on the opened file (fstat), not the path. */
static int check_config_owner_mode(const char *path, const struct stat *st, char *err,
                                   size_t errlen)
{
  uid_t me = geteuid();
  if (st->st_uid != 0 && st->st_uid != me) {
    snprintf(err, errlen,
             "%s: refused: the configuration file is owned by uid %u, neither root nor this "
             "process's user (uid %u), so another user can change it; fix: chown %u %s (or use "
             "a file you own)",
             path, (unsigned)st->st_uid, (unsigned)me, (unsigned)me, path);
    return -1;
  }
  if (st->st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(err, errlen,
             "%s: refused: group or other can write the configuration file (mode %03o), so "
             "another user can change it; fix: chmod go-w %s",
             path, (unsigned)(st->st_mode & 0777), path);
    return -1;
  }
  return 0;
}

static int load_file(const char *path, struct akv_config **out, char *err, size_t errlen)
{
  char *data = NULL;
  size_t len = 0;
  struct stat st;
  int e, rc;
  if (read_file_capped(path, CONFIG_MAX_BYTES, &data, &len, &st, &e)) {
    snprintf(err, errlen,
             "%s: cannot read the configuration: %s; fix: check the path and that "
             "it is a regular file of at most %d bytes",
             path, strerror(e), CONFIG_MAX_BYTES);
    return -1;
  }
  if (check_config_owner_mode(path, &st, err, errlen)) {
    OPENSSL_cleanse(data, len);
    free(data);
    return -1;
  }
  rc = parse_doc(data, len, path, 1, &st, out, err, errlen);
  OPENSSL_cleanse(data, len);
  free(data);
  return rc;
}

/* The user's configuration file: $XDG_CONFIG_HOME/akv-pkcs11/config.json, else
 * $HOME/.config/akv-pkcs11/config.json; "" when neither variable is set. */
static void user_config_path(char *path, size_t len)
{
  const char *env;
  if ((env = env_nonempty("XDG_CONFIG_HOME")))
    snprintf(path, len, "%s/akv-pkcs11/config.json", env);
  else if ((env = env_nonempty("HOME")))
    snprintf(path, len, "%s/.config/akv-pkcs11/config.json", env);
  else
    path[0] = '\0';
}

void akv_config_searched(char *buf, size_t len)
{
  char path[4096];
  user_config_path(path, sizeof(path));
  snprintf(buf, len,
           "pReserved, AKV_PKCS11_CONFIG, %s, /etc/akv-pkcs11/config.json, "
           "AKV_PKCS11_VAULT_URL",
           path[0] ? path : "~/.config/akv-pkcs11/config.json");
}

int akv_config_load(const char *reserved, struct akv_config **out, char *err, size_t errlen)
{
  char path[4096], searched[4300];
  const char *env;
  struct stat st;
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  if (!out)
    return -1;
  if (reserved && *reserved) {
    const char *p = reserved;
    while (isspace((unsigned char)*p))
      p++;
    if (*p == '{')
      return parse_doc(p, strlen(p), "(C_Initialize pReserved JSON)", 0, NULL, out, err, errlen);
    return load_file(reserved, out, err, errlen);
  }
  if (privileged())
    akv_info(AKV_LOGC_CONF,
             "privileged process (AT_SECURE): the environment and user configuration files are "
             "not used; only pReserved or /etc/akv-pkcs11/config.json");
  env = env_nonempty("AKV_PKCS11_CONFIG");
  if (env)
    return load_file(env, out, err, errlen);
  user_config_path(path, sizeof(path));
  if (path[0] && stat(path, &st) == 0)
    return load_file(path, out, err, errlen);
  if (stat("/etc/akv-pkcs11/config.json", &st) == 0)
    return load_file("/etc/akv-pkcs11/config.json", out, err, errlen);
  if (!env_nonempty("AKV_PKCS11_VAULT_URL")) {
    /* A module installed system-wide is loaded by p11-kit into every program: with no
     * configuration anywhere it offers zero slots instead of failing them all. Said at INFO, as
     * most of those programs never meant to use it. */
    akv_config_searched(searched, sizeof(searched));
    akv_info(AKV_LOGC_CONF,
             "no configuration found (looked at %s): no slots; fix: set "
             "AKV_PKCS11_VAULT_URL=https://NAME.vault.azure.net or "
             "AKV_PKCS11_CONFIG=/path/to/config.json",
             searched);
    return parse_doc(NULL, 0, no_config_path, 0, NULL, out, err, errlen);
  }
  return parse_doc(NULL, 0, "(environment)", 0, NULL, out, err, errlen);
}
