/* SPDX-License-Identifier: Apache-2.0 */
/* Audit trail: one JSON line per remote operation (docs/audit.md), appended to the configured
 * audit_file. Carries identifiers and outcomes only: never data, tokens or secrets. */
#ifndef AKV_UTIL_AUDIT_H
#define AKV_UTIL_AUDIT_H

#include <stdint.h>

struct akv_audit_event {
  const char *vault;             /* vault base URL */
  const char *operation;         /* "keys.sign", "keys.list", ... */
  const char *name;              /* object name, NULL for lists */
  const char *version;           /* NULL = latest / not applicable */
  const char *alg;               /* JWA algorithm, NULL when none */
  const char *outcome;           /* kv_rc name, "KV_OK" on success */
  long http_status;              /* 0 = no response */
  long latency_ms;
  const char *client_request_id; /* x-ms-client-request-id we sent */
  const char *request_id;        /* x-ms-request-id the service returned */
};

/* Opens (O_APPEND|O_CREAT, 0600) the audit file; NULL or "" closes it. 0 or -1 (logged). */
int akv_audit_open(const char *path);
void akv_audit_close(void);
int akv_audit_enabled(void);
/* The layer that owns CK_RV registers how an outcome (a kv_rc name) reads as a CK_RV name; the
 * backend itself knows no CK_RV. NULL unregisters. */
void akv_audit_set_outcome_mapper(const char *(*fn)(const char *outcome));
/* Writes one line; a no-op when no audit file is open. */
void akv_audit_record(const struct akv_audit_event *ev);

#endif
