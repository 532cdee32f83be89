/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core.h - emulator core internals (not part of the emu.h contract).
 */
#ifndef AKV_EMU_CORE_H
#define AKV_EMU_CORE_H

#include "emu.h"

#include <openssl/x509.h>

#include <stdbool.h>

#define EMU_MAX_VAULTS 16
#define EMU_KEYS_MAX 25000   /* keys per vault */
#define EMU_VERSIONS_MAX 500 /* versions per key */
#define EMU_TOKEN_MAX 8192   /* bearer token / assertion length cap */

/* ---- faults (faults.c) ----------------------------------------------------------- */

struct fault_decision {
  unsigned status;       /* 0 = none */
  int retry_after;       /* seconds, -1 = no header */
  bool retry_after_date; /* send Retry-After as an HTTP-date */
  unsigned latency_ms;
  bool drop, truncate, badjson, token_expired;
};

int faults_set(const char *spec, char *err, size_t errlen); /* "" clears */
int faults_set_json(const cJSON *json, char *err, size_t errlen);
void faults_decide(struct fault_decision *d); /* one data-plane request */
bool faults_token_expired(void);              /* consumes a token-expired firing */
bool faults_token_revoke(void);               /* consumes a token-revoke firing */
cJSON *faults_json_new(void);
int faults_token_ttl(void); /* -1 = not overridden */
void faults_free(void);

/* quota.c: --quota N/S (docs/emulator.md "Quota") */
int quota_set(const char *spec, char *err, size_t errlen);
bool quota_throttle(const struct emu_req *req, struct emu_resp *resp); /* true: resp is the 429 */
void quota_free(void);

/* ---- stats (stats.c) -------------------------------------------------------------- */

void stats_init(void);
void stats_request(void); /* one data-plane request */
/* connection accounting per listener (name: "entra", "identity" or the vault name) */
void stats_connection(const char *listener, bool opened);
void stats_reset(void);
void stats_throttled(void); /* one 429 of --quota */
cJSON *stats_json_new(void);
void stats_free(void);

/* ---- server configuration (main.c) ------------------------------------------------- */

struct emu_server {
  struct emu_vault vaults[EMU_MAX_VAULTS];
  size_t nvaults;
  char *state_dir;
  char *tenant_id;
  char *client_id;
  char *client_secret;
  /* A second app registration (client secret only): another principal of the tenant, whose tokens
   * name it (appid, oid), for tests of what one identity's cache shows another. */
  char *other_client_id;
  char *other_client_secret;
  char *identity_header;
  char *authority_host;      /* https://localhost:PORT */
  char *imds_endpoint;       /* http://127.0.0.1:PORT */
  int token_ttl;             /* seconds */
  int64_t delete_delay_ms;   /* "being deleted" window */
  int client_secret_revoked; /* control: the client secret was deleted from the app */
  EVP_PKEY *token_key;       /* signs access tokens and the federated token */
  X509 *client_cert;         /* registered for the client assertion flow */
  unsigned char client_x5t[20], client_x5t256[32];
  char *server_key_pem, *server_cert_pem;
  unsigned char backup_key[32]; /* AES-256-GCM key sealing key backups (per run) */
};

extern struct emu_server *emu_srv;

/* ---- TLS material (tls.c) ------------------------------------------------------------ */

/* Generate CA, server certificate (localhost / 127.0.0.1), the client certificate and the
 * token key; writes ca.pem and client.pem into the state dir. 0 or -1 (message printed). */
int tls_setup(struct emu_server *srv);

/* ---- JWT (jwt.c) ----------------------------------------------------------------------- */

/* RS256 JWT over `claims` (not taken) with `key`; header gets kid when not NULL. */
char *jwt_sign_new(EVP_PKEY *key, const cJSON *claims, const char *kid);
/* Split and decode; verifies the signature with `key` (RS256 or PS256 accepted when
 * allow_pss). Returns claims (caller frees) or NULL, *err set to a static reason. */
cJSON *jwt_verify_new(const char *token, EVP_PKEY *key, bool allow_pss, cJSON **header_out,
                      const char **err);
/* Header only, without checking anything. */
cJSON *jwt_header_new(const char *token);

/* ---- Entra ID / managed identity (entra.c) ----------------------------------------------- */

struct entra_out {
  unsigned status;
  cJSON *json;
  const char *op;
};
void entra_handle(const char *method, const char *path, const char *query, const char *body,
                  size_t body_len, const char *hdr_metadata, const char *hdr_identity,
                  bool identity_listener, struct entra_out *out);
/* Check a data-plane bearer token for this vault. 0 ok, else -1 with *why. */
int entra_check_bearer(const struct emu_vault *vault, const char *authz, const char **why);
/* JWT accepted as federated (workload identity) assertion, valid 7 days. */
char *entra_federated_token_new(void);

/* ---- keys (keys.c) --------------------------------------------------------------------- */

int keys_handle(struct emu_req *req, struct emu_resp *resp);
int keys_seed(struct emu_vault *vault, const cJSON *item);
struct emu_keystore *keystore_new(void);
void keystore_free(struct emu_keystore *ks);

/* ---- key crypto (keycrypto.c) ------------------------------------------------------------ */

struct key_material {
  const char *kty; /* RSA, RSA-HSM, EC, EC-HSM, oct-HSM */
  const char *crv; /* EC only */
  EVP_PKEY *pkey;  /* RSA/EC */
  const unsigned char *k;
  size_t klen; /* oct */
};

enum key_op { OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT, OP_WRAP, OP_UNWRAP };

/* Perform `op` with the request body; fills resp with the KeyOperationResult
 * ({"kid","value"[,"iv","tag","aad"]}, "alg" on MHSM) / KeyVerifyResult or an error.
 * Returns 0, or -1 on out of memory. */
int keycrypto_run(const struct key_material *km, enum key_op op, const cJSON *body, bool mhsm,
                  const char *kid, struct emu_resp *resp);

/* ---- http (http.c) -------------------------------------------------------------------- */

int http_start(struct emu_server *srv, unsigned port_base);
void http_stop(void);
unsigned http_entra_port(void);
unsigned http_identity_port(void);

/* ---- util.c internals ---------------------------------------------------------------- */

void emu_resp_clear(struct emu_resp *resp);
void emu_req_clear(struct emu_req *req);
/* percent-decoding; '+' kept. NULL on bad escape / NUL byte / ENOMEM. */
char *emu_pct_decode_new(const char *s, size_t len);
int emu_api_version_ok(const char *v);
void emu_json_sort(cJSON *item);
/* Parse exactly one JSON value (trailing non-whitespace is an error); NULL if invalid. */
cJSON *emu_json_parse(const char *text, size_t len); /* alphabetical member order, recursive */
/* malloc'd printf */
char *emu_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
