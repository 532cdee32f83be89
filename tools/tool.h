/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11: shared declarations of the CLI's commands (akv-p11.c parses the command line). */
#ifndef AKV_TOOLS_TOOL_H
#define AKV_TOOLS_TOOL_H

#include <stddef.h>

/* Exit codes (documented in akv-p11.1). */
enum {
  TOOL_OK = 0,      /* healthy / found */
  TOOL_PROBLEM = 1, /* problems found / not found */
  TOOL_USAGE = 2,   /* usage or configuration error */
};

struct tool_opts {
  const char *config; /* --config: path or inline JSON, also passed to the module as pReserved */
  const char *module; /* --module: the akv-pkcs11.so to load */
  const char *token;  /* --token LABEL */
  const char *type;   /* --type private|public|secret-key|cert|data */
  int json;           /* --json */
  int probe_sign;     /* --probe-sign */
  long slot;          /* --slot N (attest), -1 = not given */
  const char *out;    /* --out DIR (attest) */
  const char *root;   /* --root FILE (attest): the trusted root certificate(s), PEM */
};

int tool_doctor(const struct tool_opts *o);
int tool_list(const struct tool_opts *o);
int tool_uri(const struct tool_opts *o, const char *name);
/* akv-p11 audit verify FILE...: the hash chain of audit files, oldest first (audit_verify.c). */
int tool_audit_verify(int nfiles, char **files);

/* akv-p11 attest NAME: Managed HSM key attestation, checked, written into out_dir (attest.c). slot
 * -1 = the first Managed HSM slot. */
int tool_attest(const struct tool_opts *o, const char *name, long slot, const char *out_dir);

/* akv-p11 cache clear: removes this user's cross-process cache file (cache_clear.c). */
int tool_cache_clear(const struct tool_opts *o);
/* The cache file's path the module uses for cfg (util/cache_path.c); 0 when off or unknown. */
struct akv_config;
int tool_cache_path(const struct akv_config *cfg, char *buf, size_t len);
/* Removes it (cache_clear.c); msg says what was removed, that there was none, or why not. TOOL_OK
 * when it is gone or was never there. */
int tool_cache_remove(const struct akv_config *cfg, char *msg, size_t len);

/* The transport options of a loaded configuration (doctor, attest). */
struct akv_config;
struct kv_http_opts;
void tool_http_opts(const struct akv_config *cfg, struct kv_http_opts *ho);

/* First 16 hex digits of SHA-256 of the vault URL: the token serial (docs/usage.md). */
void tool_vault_serial(const char *url, char out[17]);

#endif
