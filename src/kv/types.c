/* SPDX-License-Identifier: Apache-2.0 */
/* Freeing the backend's value types (kv.h): kept apart from the code that talks to the vault, so
 * that the model's unit tests, whose fake vault replaces that code, free them with the same
 * functions. */
#include <stdlib.h>

#include <openssl/crypto.h>

#include "kv/json.h"
#include "kv/kv.h"

void kv_item_list_free(struct kv_item_list *l)
{
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++) {
    struct kv_item *it = (struct kv_item *)kv_item_list_at(l, i);
    free(it->id);
    free(it->name);
    free(it->version);
    free(it->content_type);
    free(it->x5t);
    kv_attrs_clear(&it->attrs);
  }
  for (size_t b = 0; b < (l->n + KV_ITEM_BLOCK - 1) / KV_ITEM_BLOCK; b++)
    free(l->blocks[b]);
  free(l->blocks);
  l->blocks = NULL;
  l->n = 0;
}

struct kv_item *kv_item_list_grow(struct kv_item_list *l)
{
  size_t b = l->n / KV_ITEM_BLOCK;
  if (l->n % KV_ITEM_BLOCK == 0) {
    /* The block table doubles: 8 bytes per 512 items, 1.6 KB at the listing's 100,000 cap. */
    if ((b & (b - 1)) == 0) {
      struct kv_item **nb = realloc(l->blocks, (b ? 2 * b : 1) * sizeof(*nb));
      if (!nb)
        return NULL;
      l->blocks = nb;
    }
    l->blocks[b] = calloc(KV_ITEM_BLOCK, sizeof(struct kv_item));
    if (!l->blocks[b])
      return NULL;
  }
  return &l->blocks[b][l->n % KV_ITEM_BLOCK];
}

void kv_cert_free(struct kv_cert *c)
{
  if (!c)
    return;
  free(c->id);
  free(c->kid);
  free(c->sid);
  free(c->name);
  free(c->version);
  free(c->der);
  kv_attrs_clear(&c->attrs);
  free(c);
}

void kv_secret_free(struct kv_secret *s)
{
  if (!s)
    return;
  free(s->id);
  free(s->name);
  free(s->version);
  free(s->content_type);
  free(s->kid);
  if (s->value)
    kv_secure_free(s->value, s->value_len ? s->value_len : 1);
  kv_attrs_clear(&s->attrs);
  free(s);
}

void kv_bytes_free(struct kv_bytes *b)
{
  if (!b)
    return;
  if (b->data) {
    OPENSSL_cleanse(b->data, b->len);
    free(b->data);
  }
  b->data = NULL;
  b->len = 0;
}

void kv_crypt_result_free(struct kv_crypt_result *r)
{
  if (!r)
    return;
  kv_bytes_free(&r->value);
  kv_bytes_free(&r->iv);
  kv_bytes_free(&r->tag);
}
