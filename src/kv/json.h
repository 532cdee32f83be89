/* SPDX-License-Identifier: Apache-2.0 */
/* Strict JSON access for service responses: every getter checks the type, the presence and a
 * size cap, and logs what was wrong (never the value: it may be secret). */
#ifndef AKV_KV_JSON_H
#define AKV_KV_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kv/kv.h"

/* Whole-document parse: NULL on invalid JSON or trailing garbage (logged with ctx). */
cJSON *kv_json_parse(const char *data, size_t len, const char *ctx);

/* Fast path for small replies read on every operation (a sign reply): 1 when data is a JSON
 * object, by a strict RFC 8259 scan, whose first top-level member called name is a string
 * without escapes; *val then points at its characters in data (*val_len of them). 0 means "not
 * decided here": parse with kv_json_parse, which gives the verdict and its message. It accepts
 * only what kv_json_parse accepts, with the string kv_json_str would give. Logs nothing. */
int kv_json_fast_str(const char *data, size_t len, const char *name, const char **val,
                     size_t *val_len);

/* Borrowed string member (NULL when absent and !required). KV_E_PROTOCOL on wrong type, missing
 * when required, or longer than max_len. */
kv_rc kv_json_str(const cJSON *obj, const char *name, int required, size_t max_len,
                  const char **out);
/* Same, as a malloc'd copy (NULL when absent). */
kv_rc kv_json_dup(const cJSON *obj, const char *name, int required, size_t max_len, char **out);
/* base64url member decoded; absent and !required gives *out NULL, *len 0. */
kv_rc kv_json_b64url(const cJSON *obj, const char *name, int required, size_t max_bytes,
                     unsigned char **out, size_t *len);
/* Integer member (Unix seconds etc.); absent/null leaves *out unchanged. */
kv_rc kv_json_int64(const cJSON *obj, const char *name, int64_t *out);
/* Boolean member; absent/null leaves *out unchanged. */
kv_rc kv_json_bool(const cJSON *obj, const char *name, int *out);

/* attributes{enabled,nbf,exp,created,updated}, tags{}, managed from a bundle or list item. */
kv_rc kv_json_attrs(const cJSON *bundle, struct kv_attrs *a);
void kv_attrs_clear(struct kv_attrs *a);

/* Splits an object id "https://host[:port]/<collection>/<name>[/<version>]" checking the
 * collection and the name/version alphabets. version may come back NULL. */
kv_rc kv_parse_id(const char *id, const char *collection, char **name, char **version);

int kv_valid_name(const char *name);
int kv_valid_version(const char *version);

#endif
