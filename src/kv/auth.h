/* Credential internals shared with tests. */
#ifndef AKV_KV_AUTH_H
#define AKV_KV_AUTH_H

#include <stdint.h>

#include <openssl/evp.h>

#include "kv/kv.h"

/* RS256 client assertion JWT (header alg/typ/x5t; claims aud, iss=sub=client_id, jti, nbf, iat,
 * exp=now+600) signed with key in libctx. *out is malloc'd; wipe with kv_secure_free. */
kv_rc kv_client_assertion(EVP_PKEY *key, OSSL_LIB_CTX *libctx, const char *x5t,
                          const char *audience, const char *client_id, int64_t now, char **out);

#endif
