/* SPDX-License-Identifier: Apache-2.0 */
/* objects.h - internal API between secrets.c, certs.c and what they share (objs.c).
 * Functions ending in _inlock expect vault->lock held by the caller. */
#ifndef EMU_OBJECTS_H
#define EMU_OBJECTS_H

#include "emu.h"

#define EMU_SECRET_VALUE_MAX (25 * 1024) /* service limit on a secret value */

struct emu_secret_params {
  const char *value;        /* copied, wiped on free */
  const char *content_type; /* NULL = none */
  const cJSON *tags;        /* object or NULL (copied) */
  struct emu_attrs attrs;   /* enabled/nbf/exp used; created/updated set by the store */
  int managed;              /* certificate-backed */
  const char *kid;          /* backing key id (managed secrets) or NULL */
  const char *version;      /* NULL = generate */
};

/* What a secret and a certificate have in common, as the first member of each (so that a pointer
 * to one converts to a pointer to the other): the name and the soft-delete state. */
struct objs_entry {
  char *name;
  int deleted;
  struct emu_deleted del;
};

/* A collection of entries in creation order (stable listing): vault->secrets and vault->certs,
 * NULL until the first entry. Functions ending in _inlock expect vault->lock held. */
struct objs_store {
  struct objs_entry **e;
  size_t n;
};

/* The entry named `name` (case-insensitive) and its index, or NULL. */
struct objs_entry *objs_find_inlock(void *store, const char *name, size_t *idx);
/* Append a zeroed entry of `size` bytes named `name` (the store created when absent); NULL when the
 * store holds `max` entries or out of memory. */
struct objs_entry *objs_add_inlock(void **store, const char *name, size_t size, size_t max);
/* Take entry `idx` out of the store (the caller frees it). */
void objs_remove_inlock(void *store, size_t idx);
/* Free the store and each entry with entry_free. */
void objs_store_free(void *store, void (*entry_free)(struct objs_entry *e));
/* State of a deleted entry: EMU_E_DELETED_RECOVERABLE, or EMU_E_BEING_DELETED while the delete
 * is not visible yet. */
enum emu_rc objs_deleted_state(const struct objs_entry *e);

/* "attributes" then "tags" (when not NULL) added to obj; 0 or -1. */
int objs_json_add_attrs_tags(cJSON *obj, const struct emu_attrs *attrs, const cJSON *tags);
/* obj (taken) with the deleted-object members (recoveryId, dates) of entry e, or NULL (obj freed)
 * when obj is NULL or on out of memory. */
cJSON *objs_json_deleted(cJSON *obj, struct emu_vault *vault, const char *deleted_coll,
                         const struct objs_entry *e);
/* Append item (taken; NULL counts as out of memory) to the array; 0 or -1. */
int objs_items_add(cJSON *items, cJSON *item);
/* Answer json (taken) with status; -1 (out of memory) when json is NULL. */
int objs_reply_json(struct emu_resp *resp, unsigned status, cJSON *json);
/* 404 for `what` (Secret, Certificate) name, or name/version when a version is given. */
int objs_reply_not_found(struct emu_resp *resp, const char *what, const char *name,
                         const char *version);
/* "tags" (NULL when absent or null) and "attributes" of a request body, applied onto *attrs;
 * -1 with *err on a bad value. */
int objs_parse_attrs_tags(const cJSON *body, struct emu_attrs *attrs, const cJSON **tags,
                          const char **err);

/* The list item of a live or deleted entry, or *item NULL when the entry is not listed; -1 on out
 * of memory. */
typedef int objs_item_fn(struct emu_vault *vault, const struct objs_entry *e, const void *ctx,
                         cJSON **item);
/* GET /{collection} (deleted 0) or /deleted{collection} (deleted 1, visible deletes only, with
 * their deleted members under deleted_coll): the items of item_fn, paged. */
int objs_list_reply(struct emu_req *req, struct emu_resp *resp, void *const *store, int deleted,
                    const char *deleted_coll, objs_item_fn *item_fn, const void *ctx);
/* Append the version items of a live entry to items; -1 on out of memory. */
typedef int objs_versions_fn(struct emu_vault *vault, const struct objs_entry *e, cJSON *items);
/* GET /{collection}/{name}/versions: 404 (what) unless live, else versions_fn's items, paged. */
int objs_versions_reply(struct emu_req *req, struct emu_resp *resp, void *const *store,
                        const char *what, objs_versions_fn *versions_fn);

/* Live / deleted state of secret `name`: EMU_OK (live), EMU_E_NOT_FOUND (absent),
 * EMU_E_BEING_DELETED or EMU_E_DELETED_RECOVERABLE. */
enum emu_rc secrets_state_inlock(struct emu_vault *vault, const char *name);
/* Add a version (creating the secret). Fails with the state codes above when deleted. */
enum emu_rc secrets_add_inlock(struct emu_vault *vault, const char *name,
                               const struct emu_secret_params *p,
                               char version_out[EMU_VERSION_LEN + 1]);
/* Soft delete / recover / purge the whole secret. */
enum emu_rc secrets_delete_inlock(struct emu_vault *vault, const char *name);
enum emu_rc secrets_recover_inlock(struct emu_vault *vault, const char *name);
enum emu_rc secrets_purge_inlock(struct emu_vault *vault, const char *name);
/* Apply enabled/nbf/exp and tags of a certificate update to the backing secret version. */
enum emu_rc secrets_update_inlock(struct emu_vault *vault, const char *name, const char *version,
                                  const struct emu_attrs *attrs, const cJSON *tags);

/* Borrowed value and content type (may be NULL) of a live secret version; valid while the lock is
 * held. EMU_E_NOT_FOUND when absent. */
enum emu_rc secrets_peek_inlock(struct emu_vault *vault, const char *name, const char *version,
                                const char **value, const char **content_type);

void secrets_store_free(void *store);
void certs_store_free(void *store);
int secrets_seed(struct emu_vault *vault, const cJSON *item);
int certs_seed(struct emu_vault *vault, const cJSON *item);

/* Routing table of a collection: method, number of segments after the collection, literal
 * second/third segment (case-insensitive; NULL = any value), stats name, handler and its arg.
 * Literal routes must precede wildcard routes of the same length. */
struct objs_route {
  const char *method;
  size_t nseg;
  const char *seg1;
  const char *seg2;
  const char *stat;
  int (*fn)(struct emu_req *req, struct emu_resp *resp, int arg);
  int arg;
};
/* Count and run the matching route; 404 NotFound for an unknown path, 405 for a wrong method. */
int objs_dispatch(struct emu_req *req, struct emu_resp *resp, const struct objs_route *routes,
                  size_t n);
/* The version segment of /{collection}/{name}/{version}, NULL for /{collection}/{name}. */
const char *objs_req_version(const struct emu_req *req);

/* Opaque backup blobs: base64url of AES-256-GCM under a per-process key (restorable into the same
 * emulator run only). seal: NULL when too large or on failure; open: plaintext or NULL when the
 * blob is not one of ours. Free both results with objs_text_free (wipes). */
char *objs_blob_seal_new(const char *plain);
char *objs_blob_open_new(const char *blob);
void objs_text_free(char *text);
/* Backup documents: {"name", "versions":[{..., "value", "key"}], ...}. free wipes value/key
 * strings; reply seals the document (taken) and answers {"value": blob}; restore_doc_new checks
 * the POST .../restore request, opens and parses its blob and copies its name (NULL: resp is
 * answered, *ret is the handler result). */
void objs_backup_doc_free(cJSON *doc);
int objs_backup_reply(struct emu_resp *resp, cJSON *doc, const char *what, const char *name);
cJSON *objs_restore_doc_new(struct emu_req *req, struct emu_resp *resp, char name[EMU_NAME_MAX + 1],
                            int *ret);

/* Small JSON helpers shared by both handlers. */
/* String member or NULL; *bad set to 1 when present with another type (null counts as absent). */
const char *objs_json_str(const cJSON *obj, const char *name, int *bad);
/* Deep copy of a JSON tags object into `bundle` under "tags" (nothing when tags is NULL). */
int objs_json_add_tags(cJSON *bundle, const cJSON *tags);
/* Case-insensitive string equality. */
int objs_ieq(const char *a, const char *b);

#endif
