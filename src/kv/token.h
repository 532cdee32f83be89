/* SPDX-License-Identifier: Apache-2.0 */
/* Access tokens: parsing of token endpoint replies with robust expiry handling, and a cache per
 * (resource, tenant) with refresh ahead of expiry and single flight. */
#ifndef AKV_KV_TOKEN_H
#define AKV_KV_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

struct kv_token {
  char *value;        /* wiped on clear */
  int64_t expires_on; /* Unix seconds */
  int64_t refresh_on; /* when to refresh proactively */
};

void kv_token_clear(struct kv_token *t);

/* Parses a token reply: the token member (token_field: "access_token" or "accessToken"), expiry
 * from refresh_in, expires_in (number or numeric string), expires_on (number, numeric string,
 * RFC 3339, RFC 1123) or expiresOn (az CLI local time). KV_E_PROTOCOL when unusable. */
kv_rc kv_token_parse(const char *json, size_t len, const char *token_field, int64_t now,
                     struct kv_token *out);

/* Clock in Unix seconds; tests inject one (NULL restores time()). */
void kv_token_set_clock(int64_t (*now)(void));
int64_t kv_token_now(void);

typedef kv_rc (*kv_token_fetch_fn)(void *ctx, const char *resource, const char *tenant,
                                   struct kv_token *out);

/* A token handed out by the cache: immutable and counted, so a request borrows it without a copy.
 * The value is wiped when the last reference goes: the cache's own when a newer token replaces it
 * or the cache is freed, a request's when it has built its header. */
struct kv_token_ref;
const char *kv_token_ref_str(const struct kv_token_ref *r);
void kv_token_ref_unref(struct kv_token_ref *r); /* NULL ok */

struct kv_token_cache;
struct kv_token_cache *kv_token_cache_new(void);
void kv_token_cache_free(struct kv_token_cache *c);

/* A reference to a valid token for (resource, tenant; NULL tenant = ""): cached unless force or
 * past refresh_on; one caller fetches while others keep using a still-valid token or wait for the
 * fetch. The caller drops *token with kv_token_ref_unref. */
kv_rc kv_token_cache_get(struct kv_token_cache *c, const char *resource, const char *tenant,
                         int force, kv_token_fetch_fn fetch, void *ctx,
                         struct kv_token_ref **token);

/* A reference to the token the cache holds now for (resource, tenant), valid or not, or NULL:
 * the one a forced refresh replaces (the vault refused it), for the shared copy (kv/keyring.h). */
struct kv_token_ref *kv_token_cache_peek(struct kv_token_cache *c, const char *resource,
                                         const char *tenant);

/* The principal token names (kv.h, struct kv_principal) from its JWT payload, without checking the
 * signature: 1 when it names both a tenant and an object id (tid, oid), else 0 with *out's missing
 * members "" (a token that is not a JWT, a payload that is not base64url JSON or is longer than a
 * token may be, claims that are not short identifier strings). Logs nothing. */
int kv_token_principal(const char *token, struct kv_principal *out);

#endif
