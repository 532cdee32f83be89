/* SPDX-License-Identifier: Apache-2.0 */
/* Credential internals shared with tests and `akv-p11 doctor`. */
#ifndef AKV_KV_AUTH_H
#define AKV_KV_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kv/kv.h"

/* RS256 client assertion JWT (header alg/typ/x5t; claims aud, iss=sub=client_id, jti, nbf, iat,
 * exp=now+600) signed with key in libctx. *out is malloc'd; wipe with kv_secure_free. */
kv_rc kv_client_assertion(EVP_PKEY *key, OSSL_LIB_CTX *libctx, const char *x5t,
                          const char *audience, const char *client_id, int64_t now, char **out);

/* What a credential source did so far (docs/config.md, "One identity per slot"). */
enum kv_src_state {
  KV_SRC_NOT_TRIED = 0, /* not reached: an earlier source is configured, or no token asked yet */
  KV_SRC_UNCONFIGURED,  /* its inputs are absent (or IMDS did not answer the probe): skipped */
  KV_SRC_FAILED,        /* configured, and its last attempt failed: the chain ended there */
  KV_SRC_IN_USE,        /* produced a token: the slot's identity for the life of the process */
};

struct kv_src_info {
  const char *desc; /* "client secret (configuration), tenant T, client C" */
  int configured;   /* 1 inputs present, 0 absent, -1 unknown without I/O (IMDS) */
  enum kv_src_state state;
  char note[320]; /* why it is not configured / why it failed / where az is */
};

/* The credential's sources in chain order (one for an explicit type) with their state; no I/O
 * and no process is started (the Azure CLI is looked up on PATH only). Returns how many. */
size_t kv_cred_sources(struct kv_cred *cred, struct kv_src_info *out, size_t max);

#endif
