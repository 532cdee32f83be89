/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11: shared declarations of the CLI's commands (akv-p11.c parses the command line). */
#ifndef AKV_TOOLS_TOOL_H
#define AKV_TOOLS_TOOL_H

/* Exit codes (documented in akv-p11.1). */
enum {
  TOOL_OK = 0,       /* healthy / found */
  TOOL_PROBLEM = 1,  /* problems found / not found */
  TOOL_USAGE = 2,    /* usage or configuration error */
};

struct tool_opts {
  const char *config;  /* --config: path or inline JSON, also passed to the module as pReserved */
  const char *module;  /* --module: the akv-pkcs11.so to load */
  const char *token;   /* --token LABEL */
  const char *type;    /* --type private|public|secret-key|cert|data */
  int json;            /* --json */
  int probe_sign;      /* --probe-sign */
};

int tool_doctor(const struct tool_opts *o);
int tool_list(const struct tool_opts *o);
int tool_uri(const struct tool_opts *o, const char *name);
/* akv-p11 audit verify FILE...: the hash chain of audit files, oldest first (audit_verify.c). */
int tool_audit_verify(int nfiles, char **files);

/* First 16 hex digits of SHA-256 of the vault URL: the token serial (DESIGN.md §2). */
void tool_vault_serial(const char *url, char out[17]);

#endif
