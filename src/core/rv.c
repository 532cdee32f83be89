/* SPDX-License-Identifier: Apache-2.0 */
/* The one translation from backend errors (kv_rc) to CK_RV, and CKR names for traces. */
#include <string.h>
#include "core/akv.h"

CK_RV akv_rv(kv_rc rc)
{
  switch (rc) {
  case KV_OK:
    return CKR_OK;
  case KV_E_NOMEM:
    return CKR_HOST_MEMORY;
  /* A key the cache knew is gone from the vault (deleted meanwhile): the caller drops its entry. */
  case KV_E_NOT_FOUND:
    return CKR_KEY_HANDLE_INVALID;
  /* The service refused a request we built from the caller's input (length, algorithm...). */
  case KV_E_INVALID:
  case KV_E_BAD_REQUEST:
  case KV_E_CONFLICT:
    return CKR_FUNCTION_FAILED;
  case KV_E_UNSUPPORTED:
    return CKR_FUNCTION_NOT_SUPPORTED;
  /* Authorization, throttling, outages and hostile replies are device errors: the log names the
   * cause and C_GetSessionInfo.ulDeviceError carries the last HTTP status. */
  case KV_E_FORBIDDEN:
  case KV_E_UNAUTHORIZED:
  case KV_E_AUTH:
  case KV_E_THROTTLED:
  case KV_E_SERVER:
  case KV_E_NETWORK:
  case KV_E_TIMEOUT:
  case KV_E_PROTOCOL:
    return CKR_DEVICE_ERROR;
  }
  return CKR_GENERAL_ERROR;
}

CK_RV akv_rv_object(kv_rc rc)
{
  return rc == KV_E_NOT_FOUND ? CKR_OBJECT_HANDLE_INVALID : akv_rv(rc);
}

CK_RV akv_rv_nomem_or(kv_rc rc, CK_RV otherwise)
{
  if (rc == KV_OK)
    return CKR_OK;
  return rc == KV_E_NOMEM ? CKR_HOST_MEMORY : otherwise;
}

CK_RV akv_rv_listing(kv_rc rc)
{
  /* A 404 on a list call means the vault URL is wrong: the object it would name is the token. */
  return rc == KV_E_NOT_FOUND ? CKR_DEVICE_ERROR : akv_rv(rc);
}

#define RV_NAME(x)                                                                                 \
  {                                                                                                \
    x, #x                                                                                          \
  }

static const struct {
  CK_RV rv;
  const char *name;
} rv_names[] = {
    RV_NAME(CKR_OK),
    RV_NAME(CKR_CANCEL),
    RV_NAME(CKR_HOST_MEMORY),
    RV_NAME(CKR_SLOT_ID_INVALID),
    RV_NAME(CKR_GENERAL_ERROR),
    RV_NAME(CKR_FUNCTION_FAILED),
    RV_NAME(CKR_ARGUMENTS_BAD),
    RV_NAME(CKR_NO_EVENT),
    RV_NAME(CKR_NEED_TO_CREATE_THREADS),
    RV_NAME(CKR_CANT_LOCK),
    RV_NAME(CKR_ATTRIBUTE_READ_ONLY),
    RV_NAME(CKR_ATTRIBUTE_SENSITIVE),
    RV_NAME(CKR_ATTRIBUTE_TYPE_INVALID),
    RV_NAME(CKR_ATTRIBUTE_VALUE_INVALID),
    RV_NAME(CKR_ACTION_PROHIBITED),
    RV_NAME(CKR_DATA_INVALID),
    RV_NAME(CKR_DATA_LEN_RANGE),
    RV_NAME(CKR_DEVICE_ERROR),
    RV_NAME(CKR_DEVICE_MEMORY),
    RV_NAME(CKR_DEVICE_REMOVED),
    RV_NAME(CKR_ENCRYPTED_DATA_INVALID),
    RV_NAME(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV_NAME(CKR_FUNCTION_CANCELED),
    RV_NAME(CKR_FUNCTION_NOT_PARALLEL),
    RV_NAME(CKR_FUNCTION_NOT_SUPPORTED),
    RV_NAME(CKR_KEY_HANDLE_INVALID),
    RV_NAME(CKR_KEY_SIZE_RANGE),
    RV_NAME(CKR_KEY_TYPE_INCONSISTENT),
    RV_NAME(CKR_KEY_NOT_NEEDED),
    RV_NAME(CKR_KEY_CHANGED),
    RV_NAME(CKR_KEY_NEEDED),
    RV_NAME(CKR_KEY_INDIGESTIBLE),
    RV_NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV_NAME(CKR_KEY_NOT_WRAPPABLE),
    RV_NAME(CKR_KEY_UNEXTRACTABLE),
    RV_NAME(CKR_MECHANISM_INVALID),
    RV_NAME(CKR_MECHANISM_PARAM_INVALID),
    RV_NAME(CKR_OBJECT_HANDLE_INVALID),
    RV_NAME(CKR_OPERATION_ACTIVE),
    RV_NAME(CKR_OPERATION_NOT_INITIALIZED),
    RV_NAME(CKR_PIN_INCORRECT),
    RV_NAME(CKR_PIN_INVALID),
    RV_NAME(CKR_PIN_LEN_RANGE),
    RV_NAME(CKR_PIN_EXPIRED),
    RV_NAME(CKR_PIN_LOCKED),
    RV_NAME(CKR_SESSION_CLOSED),
    RV_NAME(CKR_SESSION_COUNT),
    RV_NAME(CKR_SESSION_HANDLE_INVALID),
    RV_NAME(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    RV_NAME(CKR_SESSION_READ_ONLY),
    RV_NAME(CKR_SESSION_EXISTS),
    RV_NAME(CKR_SESSION_READ_ONLY_EXISTS),
    RV_NAME(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV_NAME(CKR_SIGNATURE_INVALID),
    RV_NAME(CKR_SIGNATURE_LEN_RANGE),
    RV_NAME(CKR_TEMPLATE_INCOMPLETE),
    RV_NAME(CKR_TEMPLATE_INCONSISTENT),
    RV_NAME(CKR_TOKEN_NOT_PRESENT),
    RV_NAME(CKR_TOKEN_NOT_RECOGNIZED),
    RV_NAME(CKR_TOKEN_WRITE_PROTECTED),
    RV_NAME(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    RV_NAME(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    RV_NAME(CKR_USER_ALREADY_LOGGED_IN),
    RV_NAME(CKR_USER_NOT_LOGGED_IN),
    RV_NAME(CKR_USER_PIN_NOT_INITIALIZED),
    RV_NAME(CKR_USER_TYPE_INVALID),
    RV_NAME(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV_NAME(CKR_USER_TOO_MANY_TYPES),
    RV_NAME(CKR_WRAPPED_KEY_INVALID),
    RV_NAME(CKR_WRAPPED_KEY_LEN_RANGE),
    RV_NAME(CKR_WRAPPING_KEY_HANDLE_INVALID),
    RV_NAME(CKR_WRAPPING_KEY_SIZE_RANGE),
    RV_NAME(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    RV_NAME(CKR_RANDOM_SEED_NOT_SUPPORTED),
    RV_NAME(CKR_RANDOM_NO_RNG),
    RV_NAME(CKR_DOMAIN_PARAMS_INVALID),
    RV_NAME(CKR_CURVE_NOT_SUPPORTED),
    RV_NAME(CKR_BUFFER_TOO_SMALL),
    RV_NAME(CKR_SAVED_STATE_INVALID),
    RV_NAME(CKR_INFORMATION_SENSITIVE),
    RV_NAME(CKR_STATE_UNSAVEABLE),
    RV_NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV_NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV_NAME(CKR_MUTEX_BAD),
    RV_NAME(CKR_MUTEX_NOT_LOCKED),
    RV_NAME(CKR_NEW_PIN_MODE),
    RV_NAME(CKR_NEXT_OTP),
    RV_NAME(CKR_EXCEEDED_MAX_ITERATIONS),
    RV_NAME(CKR_FIPS_SELF_TEST_FAILED),
    RV_NAME(CKR_LIBRARY_LOAD_FAILED),
    RV_NAME(CKR_PIN_TOO_WEAK),
    RV_NAME(CKR_PUBLIC_KEY_INVALID),
    RV_NAME(CKR_FUNCTION_REJECTED),
};

const char *akv_rv_name(CK_RV rv)
{
  size_t i;
  for (i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++) {
    if (rv_names[i].rv == rv)
      return rv_names[i].name;
  }
  return (rv & CKR_VENDOR_DEFINED) ? "CKR_VENDOR_DEFINED" : "CKR_(unknown)";
}

/* For the audit trail: the CK_RV name the generic mapping gives to an outcome (a kv_rc name). */
const char *akv_rv_outcome_name(const char *outcome)
{
  for (int rc = KV_OK; rc <= KV_E_UNSUPPORTED; rc++)
    if (strcmp(kv_rc_str((kv_rc)rc), outcome) == 0)
      return akv_rv_name(akv_rv((kv_rc)rc));
  return NULL;
}
