/* SPDX-License-Identifier: Apache-2.0 */
/* Audit trail: one JSON line per remote operation (docs/audit.md), appended to the configured
 * audit_file. Carries identifiers and outcomes only: never data, tokens or secrets. Each line
 * starts with a sequence number and the SHA-256 of the line before it (docs/audit.md "Chain"). */
#ifndef AKV_UTIL_AUDIT_H
#define AKV_UTIL_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct akv_audit_event {
  const char *vault;     /* vault base URL */
  const char *operation; /* "keys.sign", "keys.list", ... */
  const char *name;      /* object name, NULL for lists */
  const char *version;   /* NULL = latest / not applicable */
  const char *alg;       /* JWA algorithm, NULL when none */
  const char *outcome;   /* kv_rc name, "KV_OK" on success */
  long http_status;      /* 0 = no response */
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

/* The chain (docs/audit.md "Chain"), shared by the writer and `akv-p11 audit verify`. */
#define AKV_AUDIT_LINE_MAX 8192 /* longest line the writer produces, its newline included */
#define AKV_AUDIT_HASH_HEX 64
#define AKV_AUDIT_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* SHA-256 of len bytes as lowercase hex into out (65 bytes). 0, or -1 when OpenSSL fails. */
int akv_audit_hash(const void *p, size_t len, char out[AKV_AUDIT_HASH_HEX + 1]);

/* The chain fields of one line. */
struct akv_audit_link {
  uint64_t seq;                      /* 1 for the first line of a chain */
  char prev[AKV_AUDIT_HASH_HEX + 1]; /* hash of the line before, lowercase hex */
  char chain[16];                    /* "new", "rotated", "restart"; "" when absent */
  char reason[160];                  /* chain_reason of a restart, "" when absent */
};

/* Parses the chain fields of one line (its bytes without the newline): a JSON object with "seq"
 * (an integer from 1 to 2^53) and "prev" (64 lowercase hex digits), and on the first line of a
 * chain "chain" (and "chain_reason"). 0, or -1 with what is wrong in why. */
int akv_audit_parse_link(const char *line, size_t len, struct akv_audit_link *out, char *why,
                         size_t whylen);

/* The last line of the file open for reading on fd, read from its tail (at most
 * AKV_AUDIT_LINE_MAX bytes + 1). The line's bytes, its newline included when it has one, are
 * copied to buf (cap > AKV_AUDIT_LINE_MAX) with *len. Returns 0 for an empty file, 1 for a
 * complete line, 2 for a last line without a newline, 3 for a last line longer than the bound
 * (buf then holds its final bytes), -1 on a read error (errno). */
int akv_audit_read_tail(int fd, char *buf, size_t cap, size_t *len);

#endif
