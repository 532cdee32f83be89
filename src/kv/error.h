/* SPDX-License-Identifier: Apache-2.0 */
/* Service error responses to kv_rc (the one mapping in the backend). */
#ifndef AKV_KV_ERROR_H
#define AKV_KV_ERROR_H

#include <stddef.h>

#include "kv/kv.h"

/* HTTP status to kv_rc (2xx = KV_OK, 0 = KV_E_NETWORK, unexpected = KV_E_PROTOCOL). */
kv_rc kv_status_rc(long status);

/* Maps a non-2xx response to kv_rc and logs the service's error code and message
 * ({"error":{"code","message"}} or Entra's {"error","error_description"}) prefixed by what. */
kv_rc kv_error_from_response(long status, const char *body, size_t body_len, const char *what);

/* 1 when body is a Key Vault error document ({"error":{"code": "..."}}). */
int kv_is_vault_error(const char *body, size_t body_len);

#endif
