/* SPDX-License-Identifier: Apache-2.0 */
/* kv_rc names and the mapping of service error responses to kv_rc. */
#include "kv/error.h"

#include <stdio.h>
#include <string.h>

#include "kv/json.h"
#include "util/log.h"

const char *kv_rc_str(kv_rc rc)
{
  switch (rc) {
  case KV_OK:
    return "KV_OK";
  case KV_E_NOMEM:
    return "KV_E_NOMEM";
  case KV_E_INVALID:
    return "KV_E_INVALID";
  case KV_E_NOT_FOUND:
    return "KV_E_NOT_FOUND";
  case KV_E_FORBIDDEN:
    return "KV_E_FORBIDDEN";
  case KV_E_UNAUTHORIZED:
    return "KV_E_UNAUTHORIZED";
  case KV_E_AUTH:
    return "KV_E_AUTH";
  case KV_E_BAD_REQUEST:
    return "KV_E_BAD_REQUEST";
  case KV_E_CONFLICT:
    return "KV_E_CONFLICT";
  case KV_E_THROTTLED:
    return "KV_E_THROTTLED";
  case KV_E_SERVER:
    return "KV_E_SERVER";
  case KV_E_NETWORK:
    return "KV_E_NETWORK";
  case KV_E_TIMEOUT:
    return "KV_E_TIMEOUT";
  case KV_E_PROTOCOL:
    return "KV_E_PROTOCOL";
  case KV_E_UNSUPPORTED:
    return "KV_E_UNSUPPORTED";
  }
  return "KV_E_UNKNOWN";
}

kv_rc kv_status_rc(long status)
{
  if (status >= 200 && status < 300)
    return KV_OK;
  switch (status) {
  case 400:
    return KV_E_BAD_REQUEST;
  case 401:
    return KV_E_UNAUTHORIZED;
  case 403:
    return KV_E_FORBIDDEN;
  case 404:
    return KV_E_NOT_FOUND;
  case 409:
    return KV_E_CONFLICT;
  case 429:
    return KV_E_THROTTLED;
  default:
    break;
  }
  if (status >= 500 && status < 600)
    return KV_E_SERVER;
  if (status == 0)
    return KV_E_NETWORK;
  return KV_E_PROTOCOL;
}

int kv_is_vault_error(const char *body, size_t body_len)
{
  cJSON *doc = body && body_len ? cJSON_ParseWithLength(body, body_len) : NULL;
  const cJSON *err = doc ? cJSON_GetObjectItemCaseSensitive(doc, "error") : NULL;
  int yes = cJSON_IsObject(err) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "code"));
  cJSON_Delete(doc);
  return yes;
}

kv_rc kv_error_from_response(long status, const char *body, size_t body_len, const char *what)
{
  kv_rc rc = kv_status_rc(status);
  cJSON *doc = NULL;
  const cJSON *err, *inner;
  const char *code = NULL, *msg = NULL, *inner_code = NULL;
  if (rc == KV_OK)
    return KV_OK;
  if (body && body_len) {
    const char *end = NULL;
    doc = cJSON_ParseWithLengthOpts(body, body_len, &end, 0);
  }
  err = doc ? cJSON_GetObjectItemCaseSensitive(doc, "error") : NULL;
  if (cJSON_IsObject(err)) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
    code = cJSON_IsString(c) ? c->valuestring : NULL;
    msg = cJSON_IsString(m) ? m->valuestring : NULL;
    inner = cJSON_GetObjectItemCaseSensitive(err, "innererror");
    if (cJSON_IsObject(inner)) {
      const cJSON *ic = cJSON_GetObjectItemCaseSensitive(inner, "code");
      inner_code = cJSON_IsString(ic) ? ic->valuestring : NULL;
    }
  } else if (cJSON_IsString(err)) {
    /* Entra ID token endpoint: {"error":"invalid_client","error_description":"AADSTS..."} */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, "error_description");
    code = err->valuestring;
    msg = cJSON_IsString(d) ? d->valuestring : NULL;
  }
  /* Service messages describe permissions and names, never secrets; still, cap their length. */
  akv_log(rc == KV_E_NOT_FOUND ? AKV_LOG_INFO : AKV_LOG_ERROR, AKV_LOGC_KV,
          "%s: HTTP %ld %s%s%s%s%s: %.400s", what, status, code ? code : "(no error code)",
          inner_code ? " (" : "", inner_code ? inner_code : "", inner_code ? ")" : "",
          rc == KV_E_FORBIDDEN ? " - the credential lacks the permission for this operation" : "",
          msg ? msg : "(no message)");
  cJSON_Delete(doc);
  return rc;
}
