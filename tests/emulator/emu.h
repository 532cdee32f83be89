/* SPDX-License-Identifier: Apache-2.0 */
/*
 * emu.h - internal contract of the Key Vault emulator (tests/emulator).
 *
 * Shared between the emulator core (main.c, http.c, keys.c, ...) and the object
 * handlers (secrets.c, certs.c).
 *
 * Threading: the HTTP server runs one thread per connection, so handlers run
 * concurrently. Every vault has one mutex (emu_vault.lock) protecting all of its
 * object stores (keys, secrets, certificates). The emu_keys_* functions below take
 * that lock themselves: never call them while holding it. Do not hold the lock
 * during expensive crypto (take a reference / EVP_PKEY_up_ref, unlock, compute).
 *
 * Memory: all strings returned by functions named _new/_dup/_encode are
 * malloc'd and owned by the caller (free()). cJSON given to a function named
 * _take or documented "taken" is owned by the callee from then on, even on error.
 */
#ifndef AKV_EMU_H
#define AKV_EMU_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

/* ---- limits ---------------------------------------------------------------- */

#define EMU_BODY_MAX (1024 * 1024) /* request bodies above this get 413 */
#define EMU_NAME_MAX 127           /* object names: ^[0-9a-zA-Z-]{1,127}$ */
#define EMU_VERSION_LEN 32         /* object versions: 32 lowercase hex */
#define EMU_MAX_SEGS 8             /* path segments after the collection */
#define EMU_MAX_QUERY 16           /* query parameters kept per request */
#define EMU_MAX_HEADERS 8          /* extra response headers per response */
#define EMU_PAGE_MAX 25            /* maxresults upper bound (and default) */
#define EMU_RECOVERABLE_DAYS 7     /* soft-delete retention reported */
#define EMU_RECOVERY_LEVEL "CustomizedRecoverable+Purgeable"

/* ---- vaults ------------------------------------------------------------------ */

enum emu_vault_kind {
  EMU_KIND_VAULT = 0, /* Key Vault: keys, secrets, certificates */
  EMU_KIND_MHSM = 1,  /* Managed HSM: keys only, HSM key types, oct-HSM */
};

struct emu_keystore; /* keys.c */

struct emu_vault {
  char *name; /* vault name as given on the command line */
  enum emu_vault_kind kind;
  char *base_url; /* "https://localhost:PORT" (no trailing slash); ids are built from it */
  unsigned port;
  pthread_mutex_t lock;      /* protects keys, secrets, certs below */
  struct emu_keystore *keys; /* owned by keys.c */
  void *secrets;             /* owned by secrets.c; NULL until first use */
  void *certs;               /* owned by certs.c; NULL until first use */
};

/* ---- requests and responses ---------------------------------------------------- */

struct emu_query {
  char *name;  /* percent-decoded, as sent (compare case-insensitively) */
  char *value; /* percent-decoded ('+' is not turned into a space) */
};

struct emu_req {
  struct emu_vault *vault;
  const char *method;      /* "GET", "PUT", "POST", "PATCH", "DELETE" (upper case) */
  const char *path;        /* percent-decoded path as sent, e.g. "/secrets/s1/", no query */
  const char *collection;  /* first path segment, lower-cased: "secrets", "deletedsecrets",
                              "certificates", "deletedcertificates", "keys", ... */
  char *seg[EMU_MAX_SEGS]; /* the segments after the collection, percent-decoded, original case;
                              one trailing empty segment ("/secrets/s1/") is dropped, so
                              "/secrets/s1/" and "/secrets/s1" both give nseg == 1 */
  size_t nseg;
  struct emu_query query[EMU_MAX_QUERY];
  size_t nquery;
  const char *api_version;       /* already validated (7.4, 7.5, 7.6, 2025-07-01, 2026-04-01) */
  const cJSON *body;             /* parsed JSON body; NULL when the request had no body. A body that
                                    is not valid JSON is rejected (400) before handlers run. */
  const char *client_request_id; /* x-ms-client-request-id or NULL */
};

struct emu_header {
  char *name;
  char *value;
};

struct emu_resp {
  unsigned status; /* 0 = not set yet */
  cJSON *json;     /* body (owned) or NULL */
  struct emu_header hdr[EMU_MAX_HEADERS];
  size_t nhdr;
};

/* Value of query parameter `name` (case-insensitive), or NULL. */
const char *emu_req_query(const struct emu_req *req, const char *name);

/* Set a JSON response; `body` is taken (may be NULL for an empty body). 0 or -1 (no memory). */
int emu_resp_json(struct emu_resp *resp, unsigned status, cJSON *body);
/* Empty body (e.g. 204 after purge). */
int emu_resp_empty(struct emu_resp *resp, unsigned status);
/* Service error body {"error":{"code":code,"message":msg[,"innererror":{"code":inner}]}}. */
int emu_resp_error(struct emu_resp *resp, unsigned status, const char *code, const char *inner,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Add a response header (copied). */
int emu_resp_header(struct emu_resp *resp, const char *name, const char *value);

/* Common errors with the service's texts. `what` is "Key", "Secret" or "Certificate". */
int emu_resp_not_found(struct emu_resp *resp, const char *what, const char *name);
int emu_resp_deleted_not_found(struct emu_resp *resp, const char *what, const char *name);
int emu_resp_bad_param(struct emu_resp *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int emu_resp_method_not_allowed(struct emu_resp *resp); /* 405 for a known path, wrong method */

/* ---- handlers of secrets.c and certs.c ------------------------------------------- */
/* secrets.c defines emu_secrets_handle, emu_objs_seed and emu_objs_vault_free; certs.c
 * defines emu_certs_handle. */

/* Called for collections "secrets"/"deletedsecrets" (emu_secrets_handle) and
 * "certificates"/"deletedcertificates" (emu_certs_handle) on a Key Vault (never MHSM,
 * the core answers those itself). The request is already authenticated and api-version
 * checked; the handler must fill resp and call emu_stats_count() with its operation name
 * (e.g. "secrets.get"). Return 0 when resp is filled, -1 on out of memory (-> 500). */
int emu_secrets_handle(struct emu_req *req, struct emu_resp *resp);
int emu_certs_handle(struct emu_req *req, struct emu_resp *resp);

/* Seed hook: called for each element of the seed file's "secrets" array (collection
 * "secrets") and "certificates" array (collection "certificates"), with the vault the
 * element's "vault" member names (default: first vault). Return 0 or -1 after printing
 * a clear message to stderr (the emulator then exits 2). */
int emu_objs_seed(struct emu_vault *vault, const char *collection, const cJSON *item);

/* Frees vault->secrets and vault->certs (called once at shutdown, no other thread running). */
void emu_objs_vault_free(struct emu_vault *vault);

/* ---- identifiers, encoding, time ------------------------------------------------ */

/* 1..127 chars of [0-9a-zA-Z-]. */
int emu_name_valid(const char *name);
/* 32 lowercase hex chars + NUL from RAND_bytes. */
void emu_version_new(char out[EMU_VERSION_LEN + 1]);
/* RFC 4122 v4 uuid, 36 chars + NUL. */
void emu_uuid_new(char out[37]);
/* "{base_url}/{collection}/{name}[/{version}]" (version NULL or "" -> base id). NULL on ENOMEM. */
char *emu_obj_id_new(const struct emu_vault *vault, const char *collection, const char *name,
                     const char *version);

/* base64url without padding (encode); decode accepts optional padding, rejects anything
 * else invalid. Decode returns 0 and a malloc'd buffer (NUL-terminated for convenience,
 * *outlen excludes it), or -1 on invalid input / ENOMEM. */
char *emu_b64url_encode(const unsigned char *data, size_t len);
int emu_b64url_decode(const char *text, unsigned char **out, size_t *outlen);
/* Standard base64 with padding. */
char *emu_b64_encode(const unsigned char *data, size_t len);
int emu_b64_decode(const char *text, unsigned char **out, size_t *outlen);

int64_t emu_now(void);    /* Unix seconds */
int64_t emu_now_ms(void); /* monotonic milliseconds */

/* ---- attributes, tags, soft delete (shared by keys/secrets/certificates) ------------- */

struct emu_attrs {
  int enabled; /* default 1 */
  int64_t nbf; /* 0 = absent */
  int64_t exp; /* 0 = absent */
  int64_t created;
  int64_t updated;
  int exportable; /* keys only */
};

/* Apply a request "attributes" object (enabled/nbf/exp, exportable when `keys`) onto
 * *attrs. Unknown members are ignored as the service does; wrong types -> -1 with a
 * static message in *err (use with emu_resp_bad_param). NULL attrs_json is fine. */
int emu_attrs_apply(const cJSON *attrs_json, struct emu_attrs *attrs, int keys, const char **err);
/* {"enabled",["nbf"],["exp"],"created","updated","recoveryLevel","recoverableDays"} */
cJSON *emu_attrs_json_new(const struct emu_attrs *attrs);
/* Validate "tags": object of string values, <= 15 members, name/value <= 256 chars. */
int emu_tags_valid(const cJSON *tags, const char **err);

struct emu_deleted {
  int64_t deleted_date; /* Unix seconds */
  int64_t scheduled_purge_date;
  int64_t visible_at_ms; /* emu_now_ms() after which /deleted* shows it */
};
/* Fill at delete time (uses the configured "being deleted" window, default 0). */
void emu_deleted_init(struct emu_deleted *del);
/* 0 while still "being deleted" (404 on /deleted*, 409 ObjectIsBeingDeleted on create). */
int emu_deleted_visible(const struct emu_deleted *del);
/* Add "recoveryId" ({base}/{deleted_collection}/{name}), "deletedDate", "scheduledPurgeDate". */
int emu_deleted_json_add(cJSON *bundle, const struct emu_vault *vault,
                         const char *deleted_collection, const char *name,
                         const struct emu_deleted *del);

/* ---- paging ---------------------------------------------------------------------- */

/* Respond with one page of `items` (a cJSON array in a stable order; taken):
 * {"value":[...],"nextLink":"https://localhost:PORT/<req
 * path>?api-version=..&$skiptoken=..[&maxresults=N]"|null}. Honours maxresults (1..25, else 400
 * BadParameter) and $skiptoken (opaque; bad -> 400). */
int emu_page(const struct emu_req *req, struct emu_resp *resp, cJSON *items);

/* ---- stats --------------------------------------------------------------------------- */

/* Count one operation, e.g. "secrets.get", "certificates.create". Thread-safe. */
void emu_stats_count(const char *op);

/* ---- key store API (keys.c) used by certificates ------------------------------------- */

enum emu_rc {
  EMU_OK = 0,
  EMU_E_NOMEM = -1,
  EMU_E_NOT_FOUND = -2,
  EMU_E_BEING_DELETED = -3,       /* 409 Conflict / ObjectIsBeingDeleted */
  EMU_E_DELETED_RECOVERABLE = -4, /* 409 Conflict / ObjectIsDeletedButRecoverable */
  EMU_E_INVALID = -5,             /* bad parameter (unsupported key type, ...) */
  EMU_E_FULL = -6,                /* store caps reached */
};

struct emu_key_version; /* one version of a key; immutable key material, refcounted */

struct emu_key_params {
  int managed;            /* 1 for certificate-backed keys */
  const cJSON *key_ops;   /* array of strings, NULL = defaults for the key type */
  const cJSON *tags;      /* object, NULL = none (copied) */
  struct emu_attrs attrs; /* enabled/nbf/exp/exportable used; created/updated set by the store */
  const char *version;    /* NULL = generate; else 32-hex version to use (certificates share it) */
};

/* Add a new version of key `name` holding `pkey` (RSA or EC; the store takes its own
 * reference). kty is "RSA"/"EC" (vault) and is stored as "-HSM" on MHSM. Creates the
 * key when absent. On success writes the version into version_out (may be NULL). */
enum emu_rc emu_keys_add_pkey(struct emu_vault *vault, const char *name, EVP_PKEY *pkey,
                              const struct emu_key_params *params,
                              char version_out[EMU_VERSION_LEN + 1]);
/* Reference to a version (version NULL or "" = latest), or NULL when absent/deleted. */
struct emu_key_version *emu_keys_get(struct emu_vault *vault, const char *name,
                                     const char *version);
struct emu_key_version *emu_key_version_ref(struct emu_key_version *kv);
void emu_key_version_unref(struct emu_key_version *kv);
EVP_PKEY *emu_key_version_pkey_peek(const struct emu_key_version *kv); /* NULL for oct */
const char *emu_key_version_kid_peek(const struct emu_key_version *kv);
/* KeyBundle JSON of that version (public parts only, as GET /keys/{n}/{v} returns). */
cJSON *emu_key_version_bundle_new(struct emu_vault *vault, const struct emu_key_version *kv);

/* Soft delete / recover / purge a whole key (all versions). On success *bundle (if not
 * NULL) receives the DeletedKeyBundle (delete) or KeyBundle (recover). */
enum emu_rc emu_keys_delete(struct emu_vault *vault, const char *name, cJSON **bundle);
enum emu_rc emu_keys_recover(struct emu_vault *vault, const char *name, cJSON **bundle);
enum emu_rc emu_keys_purge(struct emu_vault *vault, const char *name);

/* Set enabled/nbf/exp (from *attrs; exportable, created,
 * updated ignored) and, when tags is not NULL, replace the tags of one version (version NULL
 * or "" = latest) of a live key, certificate-managed or not; `updated` becomes now. Takes the
 * vault lock itself. EMU_OK, EMU_E_NOT_FOUND or EMU_E_NOMEM. */
enum emu_rc emu_keys_update_attrs(struct emu_vault *vault, const char *name, const char *version,
                                  const struct emu_attrs *attrs, const cJSON *tags);

#endif
