/* SPDX-License-Identifier: Apache-2.0 */
/* Module configuration (docs/config.md). Shared contract: src/util/config.c implements it (backend
 * helper); the model reads the structs. All strings are owned by the config and freed (secrets
 * wiped) by akv_config_free. */
#ifndef AKV_UTIL_CONFIG_H
#define AKV_UTIL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct stack_st_X509; /* OpenSSL's STACK_OF(X509) */

enum akv_cred_kind {
  AKV_CRED_AUTO = 0,    /* DefaultAzureCredential order: env secret/cert, workload, managed, cli */
  AKV_CRED_SECRET,      /* "client_secret" */
  AKV_CRED_CERTIFICATE, /* "client_certificate" */
  AKV_CRED_WORKLOAD,    /* "workload_identity" */
  AKV_CRED_MANAGED,     /* "managed_identity" */
  AKV_CRED_CLI,         /* "azure_cli" */
};

struct akv_cred_config {
  enum akv_cred_kind kind;
  char *tenant_id;
  char *client_id;
  char *client_secret;        /* wiped on free */
  char *certificate_path;     /* PEM with certificate and private key */
  char *certificate_password; /* wiped on free (reserved: PEM only today) */
  char *federated_token_file;
  char *authority_host;    /* default AZURE_AUTHORITY_HOST or https://login.microsoftonline.com */
  char *imds_endpoint;     /* override of http://169.254.169.254
                              (AZURE_POD_IDENTITY_AUTHORITY_HOST/IMDS_ENDPOINT) */
  char *identity_endpoint; /* App Service IDENTITY_ENDPOINT */
  char *identity_header;   /* App Service IDENTITY_HEADER, wiped on free */
  char *az_path;           /* path of the az CLI, default "az" from PATH */
  int share_token;         /* 1: tokens shared through the kernel keyring (docs/config.md
                              share_token); set by the configuration, 0 in a zeroed struct */
  unsigned from_env;       /* AKV_CRED_ENV_*: inputs taken from the environment (log names) */
};
#define AKV_CRED_ENV_SECRET 1u /* client_secret from AZURE_CLIENT_SECRET */
#define AKV_CRED_ENV_CERT 2u   /* certificate_path from AZURE_CLIENT_CERTIFICATE_PATH */

enum akv_objects {
  AKV_OBJ_KEYS = 1u << 0,
  AKV_OBJ_CERTIFICATES = 1u << 1,
  AKV_OBJ_SECRETS = 1u << 2,
};

enum akv_vault_kind {
  AKV_VAULT_KEYVAULT = 0,
  AKV_VAULT_MHSM = 1,
};

/* Pacing of a vault's cryptographic operations (docs/config.md "quota", "pacing"). Classes in
 * the order of enum kv_pace_class: rsa2048, rsa3072, rsa4096, ec, oct. */
#define AKV_QUOTA_NCLASS 5
struct akv_quota_config {
  int pacing_off;                   /* "pacing": false */
  int off;                          /* "quota": "off" */
  int software;                     /* "quota": "software": the software-key limits */
  uint32_t count[AKV_QUOTA_NCLASS]; /* operations per window; 0 = the documented limit */
  uint32_t window_s[AKV_QUOTA_NCLASS];
};

struct akv_slot_config {
  char *url;       /* https://NAME.vault.azure.net (normalised: no trailing slash) */
  char **replicas; /* vaults holding the same keys (normalised like url), same kind */
  size_t n_replicas;
  char *label;              /* token label; default: vault name (first DNS label) */
  enum akv_vault_kind kind; /* from the host (managedhsm.*) or "kind" field */
  unsigned objects;         /* enum akv_objects bits; default keys|certificates */
  char **key_names; /* lazy least-privilege mode when non-NULL: only these keys, no list call */
  size_t n_key_names;
  char *key_filter;  /* fnmatch(3) pattern on key names, NULL = all */
  int versions_all;  /* versions: "all" exposes older enabled versions */
  int show_disabled; /* expose disabled/expired keys (default 0) */
  int read_only;
  int allow_destroy;
  int64_t ttl_s;            /* object list TTL, default 300 */
  int64_t secret_ttl_s;     /* secret value TTL, default 3600 */
  int64_t stale_if_error_s; /* default 3600 */
  int64_t prefetch_keys;    /* more new keys than this in a listing: read on demand; default 100 */
  int public_ops_local;     /* public_ops: "local" (default "remote") */
  int verify_remote;        /* verify: "remote" (default "local") */
  int has_cred;             /* per-slot credential override present */
  struct akv_cred_config cred;
  int login_required;            /* login: "required" (default "none"); docs/security.md "Login" */
  char *pin_hash;                /* crypt(3) string of the user PIN, set when login_required */
  int pin_certificate;           /* pin: "certificate_password": the PIN is the password of the
                                    credential's encrypted certificate key (implies login_required) */
  int share_token;               /* share_token: the slot's (-1 while parsing: the module's) */
  struct akv_quota_config quota; /* "quota" and "pacing" */
  char *attestation_root; /* PEM file of trusted HSM vendor roots; the top-level one when unset */
  struct stack_st_X509 *attestation_roots; /* its certificates, read at load; NULL = none */
  /* id_miss_refresh: a search by CKA_ID that finds nothing lists again past this age (seconds,
   * 0 = never); default 5 (docs/design.md "Keys created since the listing"). */
  int64_t id_miss_refresh_s;
};

struct akv_config {
  char *path;    /* file it came from, or NULL (environment only) */
  int log_level; /* enum akv_log_level, default WARN */
  char *log_file;
  char *audit_file;
  char *ca_file;
  char *proxy;
  char *api_version;    /* default "7.6" */
  char **allowed_hosts; /* extra hosts besides the Azure vault domains */
  size_t n_allowed_hosts;
  long connect_timeout_ms;   /* default 10000 */
  long request_timeout_ms;   /* default 30000 */
  long deadline_ms;          /* per operation incl. retries, default 30000 */
  unsigned max_retries;      /* default 4 */
  long retry_base_ms;        /* default 250 */
  long retry_cap_ms;         /* default 8000 */
  unsigned pool_size;        /* max connections per host, default 16 */
  size_t max_response_bytes; /* default 4 MiB */
  char *cache_file;          /* cross-process cache; NULL = default path, "" = off */
  int share_token;           /* share_token: access token in the kernel keyring, default 1 */
  int login_required;        /* top-level login/pin_hash/pin: the default of every slot */
  char *pin_hash;
  int pin_certificate;
  struct akv_cred_config cred; /* default credential for slots without their own */
  char *attestation_root;      /* default attestation_root of every slot (docs/config.md) */
  struct stack_st_X509 *attestation_roots; /* its certificates, read at load; NULL = none */
  struct akv_slot_config *slots;
  size_t n_slots;
};

/* Finds and loads the configuration: reserved (C_Initialize pReserved, may be NULL: a path to a
 * JSON file, or inline JSON starting with '{'), then AKV_PKCS11_CONFIG, then
 * $XDG_CONFIG_HOME/akv-pkcs11/config.json (or ~/.config/...), then /etc/akv-pkcs11/config.json,
 * then environment only (AKV_PKCS11_VAULT_URL ...). Environment variables (AZURE_*, AKV_PKCS11_*)
 * fill what the file leaves unset. On error returns -1 and writes a message naming the file, the
 * field and what is expected into err. No network I/O. */
int akv_config_load(const char *reserved, struct akv_config **out, char *err, size_t errlen);

/* The places akv_config_load searches when nothing is passed, in order, as one line for messages
 * ("pReserved, AKV_PKCS11_CONFIG, /home/u/.config/akv-pkcs11/config.json, ..."). A loaded
 * configuration without a file and without slots (cfg->path NULL, n_slots 0) is "none found". */
void akv_config_searched(char *buf, size_t len);

/* Parses a JSON document (for tests and for akv_config_load). path is used in messages only. */
int akv_config_parse(const char *json, const char *path, struct akv_config **out, char *err,
                     size_t errlen);

void akv_config_free(struct akv_config *cfg);

/* 1 when s is a crypt(3) string of a method accepted for pin_hash (yescrypt "$y$", gost-yescrypt
 * "$gy$", scrypt "$7$", bcrypt "$2b$", sha512crypt "$6$", sha256crypt "$5$") that libxcrypt can
 * check; 0 otherwise. */
int akv_pin_hash_valid(const char *s);

/* The trusted HSM vendor root certificates of the PEM file path (attestation_root, akv-p11 attest
 * --root): read with the checks of ca_file (owned by root or this process's user, not writable by
 * group or other: docs/security.md), every entry a self-signed X.509 certificate, at least one.
 * 0 with *out (the caller frees it with sk_X509_pop_free(*out, X509_free)), or -1 with the reason
 * and the fix in why. */
int akv_attestation_roots_read(const char *path, struct stack_st_X509 **out, char *why,
                               size_t whylen);

/* Azure vault domains of the public and sovereign clouds. Returns 1 when host (no port) is a name
 * under one of them, setting *resource to the token resource of that cloud and service
 * ("https://vault.azure.net", "https://managedhsm.azure.net", ...) and *kind; 0 otherwise. */
int akv_azure_vault_host(const char *host, const char **resource, enum akv_vault_kind *kind);

/* 1 when resource (trailing '/' ignored) is a known Key Vault / Managed HSM token resource; sets
 * *domain to the DNS suffix a vault host of that resource ends with (".vault.azure.net"). */
int akv_known_vault_resource(const char *resource, const char **domain);

#endif
