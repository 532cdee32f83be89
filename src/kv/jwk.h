/* JWK parsing from cJSON (internal; kv.h has the public helpers). */
#ifndef AKV_KV_JWK_H
#define AKV_KV_JWK_H

#include <cjson/cJSON.h>

#include "kv/kv.h"

/* A JsonWebKey object; KV_E_PROTOCOL when kty/crv/material are not acceptable. */
kv_rc kv_key_from_jwk(const cJSON *jwk, struct kv_key **out);
/* A KeyBundle: {"key": JWK, "attributes": ..., "tags": ..., "managed": ...}. */
kv_rc kv_key_from_bundle(const cJSON *bundle, struct kv_key **out);

#endif
