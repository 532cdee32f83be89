/* SPDX-License-Identifier: Apache-2.0 */
/* Stand-in for the model (module/session/object) used to build the crypto unit tests on their own
 * (tests/unit/fake_crypto_build.sh) while the real model is not linkable. Never compiled by meson:
 * the meson unit tests link the real model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "akv.h"

CK_RV akv_module_check(void)
{
  return CKR_OK;
}

OSSL_LIB_CTX *akv_libctx(void)
{
  return NULL;
}

CK_RV akv_rv(kv_rc rc)
{
  switch (rc) {
  case KV_OK:
    return CKR_OK;
  case KV_E_NOMEM:
    return CKR_HOST_MEMORY;
  case KV_E_NOT_FOUND:
    return CKR_KEY_HANDLE_INVALID;
  default:
    return CKR_DEVICE_ERROR;
  }
}

const char *akv_rv_name(CK_RV rv)
{
  static char buf[32];
  snprintf(buf, sizeof(buf), "0x%lx", (unsigned long)rv);
  return buf;
}

CK_RV akv_session_fail(struct akv_session *s, kv_rc rc)
{
  s->device_error = 400;
  return akv_rv(rc);
}

void kv_key_free(struct kv_key *k)
{
  if (!k)
    return;
  free(k->kid);
  free(k->name);
  free(k->version);
  free(k->n);
  free(k->e);
  free(k->x);
  free(k->y);
  free(k);
}

struct akv_object *akv_object_ref(struct akv_object *obj)
{
  __atomic_add_fetch(&obj->refs, 1, __ATOMIC_SEQ_CST);
  return obj;
}

void akv_object_unref(struct akv_object *obj)
{
  if (!obj || __atomic_sub_fetch(&obj->refs, 1, __ATOMIC_SEQ_CST) > 0)
    return;
  /* key and pkey belong to the shared key entry (here: the test fixtures), as in the model. */
  if (obj->secret) {
    OPENSSL_cleanse(obj->secret, obj->secret_len);
    free(obj->secret);
  }
  for (size_t i = 0; i < obj->n_attrs; i++)
    free(obj->attrs[i].pValue);
  free(obj->attrs);
  pthread_mutex_destroy(&obj->lock);
  free(obj);
}

const CK_ATTRIBUTE *akv_object_attr(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type)
{
  for (size_t i = 0; i < obj->n_attrs; i++)
    if (obj->attrs[i].type == type)
      return &obj->attrs[i];
  return NULL;
}

static CK_OBJECT_HANDLE next_handle = 5000;

/* Keeps CKA_LABEL/CKA_EXTRACTABLE/CKA_SENSITIVE of the template, enough for the tests. */
struct akv_object *akv_object_new_session_secret(struct akv_slot *slot, CK_KEY_TYPE type,
                                                 const unsigned char *value, size_t len,
                                                 const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_RV *rv)
{
  struct akv_object *obj = calloc(1, sizeof(*obj));
  obj->refs = 1;
  obj->cls = CKO_SECRET_KEY;
  obj->key_type = type;
  obj->slot = slot;
  pthread_mutex_init(&obj->lock, NULL);
  obj->secret = malloc(len ? len : 1);
  memcpy(obj->secret, value, len);
  obj->secret_len = len;
  obj->can_encrypt = obj->can_decrypt = obj->can_sign = obj->can_verify = CK_TRUE;
  obj->can_wrap = obj->can_unwrap = CK_TRUE;
  obj->attrs = calloc(n + 1, sizeof(CK_ATTRIBUTE));
  for (CK_ULONG i = 0; i < n; i++) {
    if (tmpl[i].type != CKA_LABEL && tmpl[i].type != CKA_EXTRACTABLE &&
        tmpl[i].type != CKA_SENSITIVE)
      continue;
    obj->attrs[obj->n_attrs].type = tmpl[i].type;
    obj->attrs[obj->n_attrs].pValue = malloc(tmpl[i].ulValueLen ? tmpl[i].ulValueLen : 1);
    memcpy(obj->attrs[obj->n_attrs].pValue, tmpl[i].pValue, tmpl[i].ulValueLen);
    obj->attrs[obj->n_attrs].ulValueLen = tmpl[i].ulValueLen;
    obj->n_attrs++;
  }
  *rv = CKR_OK;
  return obj;
}

CK_RV akv_session_object(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out)
{
  for (size_t i = 0; i < s->n_objects; i++)
    if (s->objects[i]->handle == h) {
      *out = akv_object_ref(s->objects[i]);
      return CKR_OK;
    }
  return CKR_OBJECT_HANDLE_INVALID;
}

CK_RV akv_session_add_object(struct akv_session *s, struct akv_object *obj, CK_OBJECT_HANDLE *h)
{
  struct akv_object **objs = realloc(s->objects, (s->n_objects + 1) * sizeof(*objs));
  if (!objs)
    return CKR_HOST_MEMORY;
  s->objects = objs;
  obj->handle = next_handle++;
  obj->session = s->handle;
  s->objects[s->n_objects++] = obj;
  *h = obj->handle;
  return CKR_OK;
}
