/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of the vault's JSON objects from cJSON (internal; kv.h has the public helpers). Shared
 * by the vault's replies (client.c) and the cross-process cache file (cache_file.c). */
#ifndef AKV_KV_JWK_H
#define AKV_KV_JWK_H

#include <cjson/cJSON.h>

#include "kv/kv.h"

/* A JsonWebKey object; KV_E_PROTOCOL when kty/crv/material are not acceptable. */
kv_rc kv_key_from_jwk(const cJSON *jwk, struct kv_key **out);
/* A KeyBundle: {"key": JWK, "attributes": ..., "tags": ..., "managed": ...}. */
kv_rc kv_key_from_bundle(const cJSON *bundle, struct kv_key **out);
/* A CertificateBundle: {"id", "kid", "sid", "cer" (base64 DER), "attributes", "tags"}. what names
 * the source in messages. The DER itself is parsed by its user (object.c). */
kv_rc kv_cert_from_bundle(const cJSON *doc, const char *what, struct kv_cert **out);
/* One list item {"<id_field>": id in collection, "attributes", "tags", "managed", "contentType",
 * "x5t"}; on failure the members set so far are left in *item for the caller to free. */
kv_rc kv_item_from_json(const cJSON *it, const char *collection, const char *id_field,
                        struct kv_item *item);

#endif
