/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the strict JSON getters every vault reply goes through (src/kv/json.c): the
 * whole-document parse (exact length, trailing data), and, on a list item / bundle / secret /
 * certificate, kv_json_str/dup/b64url/int64/bool, kv_json_attrs (attributes and tags) and
 * kv_parse_id on the id members, as the client reads them. */
#include "fuzz_common.h"

#include "kv/json.h"

#define ID_MAX 2048
#define DER_MAX (64 * 1024)
#define TAGS_MAX 64
#define TAG_LEN_MAX 512

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

/* A string getter's result: absent (NULL) or at most max bytes. */
static void check_str(const cJSON *doc, const char *name, size_t max)
{
  const char *s = (const char *)1;
  char *d = (char *)1;
  kv_rc rc = kv_json_str(doc, name, 0, max, &s);
  if ((rc == KV_OK && s && strlen(s) > max) || (rc != KV_OK && s))
    abort();
  if (kv_json_dup(doc, name, 0, max, &d) != rc)
    abort(); /* the copying getter agrees with the borrowing one */
  if ((d != NULL) != (s != NULL) || (d && strcmp(d, s) != 0))
    abort();
  free(d);
  if (kv_json_str(doc, name, 1, max, &s) == KV_OK && !s)
    abort(); /* required and accepted means present */
}

static void check_id(const cJSON *doc, const char *member, const char *collection)
{
  const char *id = NULL;
  char *name = NULL, *version = NULL;
  if (kv_json_str(doc, member, 0, ID_MAX, &id) != KV_OK || !id)
    return;
  if (kv_parse_id(id, collection, &name, &version) == KV_OK) {
    if (!name || !kv_valid_name(name) || (version && !kv_valid_version(version)))
      abort();
  } else if (name || version) {
    abort();
  }
  free(name);
  free(version);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *body;
  cJSON *doc;
  struct kv_attrs a;
  unsigned char *der = (unsigned char *)1;
  size_t der_len = 1;
  int64_t i64 = 42;
  int b = 7;
  kv_rc rc;
  /* Exact-size copy without NUL: the parser must honour the length. */
  body = malloc(size ? size : 1);
  if (!body)
    return 0;
  if (size)
    memcpy(body, data, size);
  doc = kv_json_parse(body, size, "fuzz");
  if (!doc) {
    free(body);
    return 0;
  }
  if (!cJSON_IsObject(doc))
    abort(); /* a parsed reply is always an object */
  check_str(doc, "contentType", 255);
  check_str(doc, "x5t", 128);
  check_id(doc, "id", "keys");
  check_id(doc, "kid", "keys");
  check_id(doc, "sid", "secrets");
  check_id(doc, "id", "certificates");
  rc = kv_json_b64url(doc, "cer", 0, DER_MAX, &der, &der_len);
  if (rc == KV_OK ? (der_len > DER_MAX || (der_len && !der)) : (der || der_len))
    abort();
  free(der);
  if (kv_json_int64(doc, "value", &i64) == KV_OK &&
      (i64 < -9000000000000000LL || i64 > 9000000000000000LL))
    abort(); /* in the range a double holds exactly */
  (void)kv_json_bool(doc, "managed", &b);
  if (b != 7 && b != 0 && b != 1)
    abort();
  rc = kv_json_attrs(doc, &a);
  if (rc == KV_OK) {
    if (a.n_tags > TAGS_MAX || (a.n_tags && !a.tags))
      abort();
    for (size_t i = 0; i < a.n_tags; i++)
      if (!a.tags[i].name || !a.tags[i].value || strlen(a.tags[i].name) > TAG_LEN_MAX ||
          strlen(a.tags[i].value) > TAG_LEN_MAX)
        abort();
  } else if (a.tags || a.n_tags) {
    abort(); /* failure leaves no tags behind */
  }
  kv_attrs_clear(&a);
  cJSON_Delete(doc);
  free(body);
  return 0;
}
