/* SPDX-License-Identifier: Apache-2.0 */
/*
 * main.c - akv-emulator: command line, startup (TLS material, listeners, seed,
 * ready file) and clean shutdown on SIGTERM/SIGINT.
 */
#include "core.h"
#include "attest.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

struct emu_server *emu_srv;

static void usage(FILE *f)
{
  fprintf(f,
          "usage: akv-emulator --ready-file FILE [--port-base N] [--vault NAME[:mhsm]]...\n"
          "                    [--seed FILE] [--faults SPEC] [--state DIR] [--token-ttl SECONDS]\n"
          "                    [--tenant-id ID] [--delete-delay-ms MS] [--quota N/S]\n"
          "Key Vault / Managed HSM emulator for tests (see docs/emulator.md).\n");
}

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
  char *end = NULL;
  errno = 0;
  if (!s || !*s || *s == '-')
    return -1;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static bool vault_name_ok(const char *n)
{
  size_t len = strlen(n);
  if (len < 3 || len > 24 || n[0] == '-' || n[len - 1] == '-')
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = n[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
      return false;
    if (c == '-' && n[i + 1] == '-')
      return false;
  }
  return true;
}

static int add_vault(struct emu_server *srv, const char *spec)
{
  char name[32];
  const char *colon = strchr(spec, ':');
  size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
  enum emu_vault_kind kind = EMU_KIND_VAULT;
  if (n >= sizeof(name))
    goto bad;
  memcpy(name, spec, n);
  name[n] = '\0';
  if (colon) {
    if (strcmp(colon + 1, "mhsm") == 0)
      kind = EMU_KIND_MHSM;
    else if (strcmp(colon + 1, "vault") != 0)
      goto bad;
  }
  if (!vault_name_ok(name))
    goto bad;
  for (size_t i = 0; i < srv->nvaults; i++)
    if (strcasecmp(srv->vaults[i].name, name) == 0) {
      fprintf(stderr, "akv-emulator: vault %s given twice\n", name);
      return -1;
    }
  if (srv->nvaults == EMU_MAX_VAULTS) {
    fprintf(stderr, "akv-emulator: at most %d vaults\n", EMU_MAX_VAULTS);
    return -1;
  }
  struct emu_vault *v = &srv->vaults[srv->nvaults];
  v->name = strdup(name);
  v->kind = kind;
  v->keys = keystore_new();
  if (!v->name || !v->keys) {
    free(v->name);
    keystore_free(v->keys);
    return -1;
  }
  pthread_mutex_init(&v->lock, NULL);
  srv->nvaults++;
  return 0;
bad:
  fprintf(stderr, "akv-emulator: bad --vault '%s' (NAME[:mhsm], 3-24 chars of 0-9a-zA-Z-)\n", spec);
  return -1;
}

static char *random_secret_new(size_t len)
{
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
  unsigned char r[64];
  char *s;
  if (len > sizeof(r) || RAND_bytes(r, (int)len) != 1 || !(s = malloc(len + 1)))
    return NULL;
  for (size_t i = 0; i < len; i++)
    s[i] = alphabet[r[i] % (sizeof(alphabet) - 1)];
  s[len] = '\0';
  return s;
}

static int write_atomic(const char *path, const char *text, mode_t mode)
{
  char *tmp = emu_strdup_printf("%s.tmp.%ld", path, (long)getpid());
  FILE *f = NULL;
  int rc = -1;
  if (!tmp)
    return -1;
  umask(077);
  f = fopen(tmp, "w");
  if (!f || fputs(text, f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    fprintf(stderr, "akv-emulator: cannot write %s: %s\n", tmp, strerror(errno));
    goto out;
  }
  if (fchmod(fileno(f), mode) != 0 || fclose(f) != 0) {
    f = NULL;
    fprintf(stderr, "akv-emulator: cannot write %s: %s\n", tmp, strerror(errno));
    goto out;
  }
  f = NULL;
  if (rename(tmp, path) != 0) {
    fprintf(stderr, "akv-emulator: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
    goto out;
  }
  rc = 0;
out:
  if (f)
    fclose(f);
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  return rc;
}

static int seed(struct emu_server *srv, const char *file)
{
  FILE *f = fopen(file, "r");
  char *buf = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  int rc = -1;
  static const char *const colls[] = {"keys", "secrets", "certificates"};
  if (!f) {
    fprintf(stderr, "akv-emulator: cannot open seed file %s: %s\n", file, strerror(errno));
    return -1;
  }
  buf = malloc(EMU_BODY_MAX * 4 + 1);
  if (!buf)
    goto out;
  len = fread(buf, 1, EMU_BODY_MAX * 4 + 1, f);
  if (len > EMU_BODY_MAX * 4) {
    fprintf(stderr, "akv-emulator: seed file %s is larger than 4 MiB\n", file);
    goto out;
  }
  root = emu_json_parse(buf, len);
  if (!cJSON_IsObject(root)) {
    fprintf(stderr, "akv-emulator: seed file %s is not a JSON object\n", file);
    goto out;
  }
  for (size_t c = 0; c < 3; c++) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, colls[c]), *it;
    if (!arr)
      continue;
    if (!cJSON_IsArray(arr)) {
      fprintf(stderr, "akv-emulator: seed: \"%s\" must be an array\n", colls[c]);
      goto out;
    }
    cJSON_ArrayForEach(it, arr)
    {
      const cJSON *vn = cJSON_GetObjectItemCaseSensitive(it, "vault");
      struct emu_vault *v = &srv->vaults[0];
      if (!cJSON_IsObject(it)) {
        fprintf(stderr, "akv-emulator: seed: entries of \"%s\" must be objects\n", colls[c]);
        goto out;
      }
      if (vn) {
        v = NULL;
        for (size_t i = 0; cJSON_IsString(vn) && i < srv->nvaults; i++)
          if (strcasecmp(srv->vaults[i].name, vn->valuestring) == 0)
            v = &srv->vaults[i];
        if (!v) {
          fprintf(stderr, "akv-emulator: seed: unknown vault in \"%s\" entry\n", colls[c]);
          goto out;
        }
      }
      if (c == 0 ? keys_seed(v, it) != 0 : emu_objs_seed(v, colls[c], it) != 0)
        goto out;
    }
  }
  rc = 0;
out:
  cJSON_Delete(root);
  free(buf);
  fclose(f);
  return rc;
}

static char *ready_json_new(struct emu_server *srv, const char *fedfile)
{
  cJSON *j = cJSON_CreateObject(), *arr;
  char *text = NULL;
  char *ca = emu_strdup_printf("%s/ca.pem", srv->state_dir);
  char *cli = emu_strdup_printf("%s/client.pem", srv->state_dir);
  char *ide = emu_strdup_printf("%s/msi/token", srv->imds_endpoint);
  char *stats = emu_strdup_printf("%s/stats", srv->authority_host);
  char *ctl = emu_strdup_printf("%s/control", srv->authority_host);
  char *vroot = emu_strdup_printf("%s/attestation-vendor-root.pem", srv->state_dir);
  if (!j || !ca || !cli || !ide || !stats || !ctl || !vroot)
    goto out;
  /* A Managed HSM's key attestation chains to a per-run vendor root (tests/emulator/attest.c). */
  for (size_t i = 0; i < srv->nvaults; i++)
    if (srv->vaults[i].kind == EMU_KIND_MHSM) {
      if (emu_attest_init(vroot) != 0)
        goto out;
      cJSON_AddStringToObject(j, "attestation_vendor_root", vroot);
      break;
    }
  cJSON_AddStringToObject(j, "ca_file", ca);
  cJSON_AddStringToObject(j, "authority_host", srv->authority_host);
  cJSON_AddStringToObject(j, "tenant_id", srv->tenant_id);
  cJSON_AddStringToObject(j, "client_id", srv->client_id);
  cJSON_AddStringToObject(j, "client_secret", srv->client_secret);
  cJSON_AddStringToObject(j, "other_client_id", srv->other_client_id);
  cJSON_AddStringToObject(j, "other_client_secret", srv->other_client_secret);
  cJSON_AddStringToObject(j, "client_certificate_file", cli);
  cJSON_AddStringToObject(j, "federated_token_file", fedfile);
  cJSON_AddStringToObject(j, "imds_endpoint", srv->imds_endpoint);
  cJSON_AddStringToObject(j, "identity_endpoint", ide);
  cJSON_AddStringToObject(j, "identity_header", srv->identity_header);
  arr = cJSON_AddArrayToObject(j, "vaults");
  for (size_t i = 0; arr && i < srv->nvaults; i++) {
    cJSON *v = cJSON_CreateObject();
    if (!v)
      goto out;
    cJSON_AddItemToArray(arr, v);
    cJSON_AddStringToObject(v, "name", srv->vaults[i].name);
    cJSON_AddStringToObject(v, "url", srv->vaults[i].base_url);
    cJSON_AddStringToObject(v, "kind", srv->vaults[i].kind == EMU_KIND_MHSM ? "mhsm" : "vault");
  }
  cJSON_AddStringToObject(j, "stats_url", stats);
  cJSON_AddStringToObject(j, "control_url", ctl);
  cJSON_AddStringToObject(j, "state_dir", srv->state_dir);
  cJSON_AddNumberToObject(j, "pid", (double)getpid());
  text = cJSON_Print(j);
out:
  cJSON_Delete(j);
  free(ca);
  free(cli);
  free(ide);
  free(stats);
  free(ctl);
  free(vroot);
  return text;
}

static void secret_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static void server_free(struct emu_server *srv, bool remove_state)
{
  for (size_t i = 0; i < srv->nvaults; i++) {
    struct emu_vault *v = &srv->vaults[i];
    emu_objs_vault_free(v);
    keystore_free(v->keys);
    pthread_mutex_destroy(&v->lock);
    free(v->name);
    free(v->base_url);
  }
  if (remove_state && srv->state_dir) {
    static const char *const files[] = {"ca.pem", "client.pem", "federated-token.jwt",
                                        "attestation-vendor-root.pem"};
    for (size_t i = 0; i < 4; i++) {
      char *p = emu_strdup_printf("%s/%s", srv->state_dir, files[i]);
      if (p)
        unlink(p);
      free(p);
    }
    rmdir(srv->state_dir);
  }
  free(srv->state_dir);
  free(srv->tenant_id);
  free(srv->client_id);
  secret_free(srv->client_secret);
  free(srv->other_client_id);
  secret_free(srv->other_client_secret);
  secret_free(srv->identity_header);
  free(srv->authority_host);
  free(srv->imds_endpoint);
  EVP_PKEY_free(srv->token_key);
  X509_free(srv->client_cert);
  secret_free(srv->server_key_pem);
  OPENSSL_cleanse(srv->backup_key, sizeof(srv->backup_key));
  free(srv->server_cert_pem);
  free(srv);
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {{"ready-file", required_argument, NULL, 'r'},
                                       {"port-base", required_argument, NULL, 'p'},
                                       {"vault", required_argument, NULL, 'v'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"faults", required_argument, NULL, 'f'},
                                       {"state", required_argument, NULL, 'd'},
                                       {"token-ttl", required_argument, NULL, 't'},
                                       {"tenant-id", required_argument, NULL, 'T'},
                                       {"delete-delay-ms", required_argument, NULL, 'D'},
                                       {"quota", required_argument, NULL, 'Q'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *ready = NULL, *seed_file = NULL, *faults_spec = NULL, *state = NULL, *tenant = NULL;
  unsigned long port_base = 0, v;
  char fault_err[256];
  char *fedtok = NULL, *fedfile = NULL, *readytext = NULL;
  bool made_state = false;
  int rc = 2, c, sig;
  sigset_t set;
  struct emu_server *srv = calloc(1, sizeof(*srv));
  if (!srv)
    return 2;
  emu_srv = srv;
  srv->token_ttl = 3599;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'r':
      ready = optarg;
      break;
    case 'p':
      if (parse_uint(optarg, 0, 65000, &port_base) != 0) {
        fprintf(stderr, "akv-emulator: bad --port-base '%s'\n", optarg);
        goto out;
      }
      break;
    case 'v':
      if (add_vault(srv, optarg) != 0)
        goto out;
      break;
    case 's':
      seed_file = optarg;
      break;
    case 'f':
      faults_spec = optarg;
      break;
    case 'd':
      state = optarg;
      break;
    case 't':
      if (parse_uint(optarg, 1, 86400, &v) != 0) {
        fprintf(stderr, "akv-emulator: bad --token-ttl '%s' (1..86400)\n", optarg);
        goto out;
      }
      srv->token_ttl = (int)v;
      break;
    case 'T':
      tenant = optarg;
      break;
    case 'D':
      if (parse_uint(optarg, 0, 600000, &v) != 0) {
        fprintf(stderr, "akv-emulator: bad --delete-delay-ms '%s' (0..600000)\n", optarg);
        goto out;
      }
      srv->delete_delay_ms = (int64_t)v;
      break;
    case 'Q':
      if (quota_set(optarg, fault_err, sizeof(fault_err)) != 0) {
        fprintf(stderr, "akv-emulator: bad --quota: %s\n", fault_err);
        goto out;
      }
      break;
    case 'h':
      usage(stdout);
      rc = 0;
      goto out;
    default:
      usage(stderr);
      goto out;
    }
  }
  if (optind < argc || !ready) {
    usage(stderr);
    goto out;
  }
  if (srv->nvaults == 0 && add_vault(srv, "demo") != 0)
    goto out;
  if (tenant && (strlen(tenant) > 64 || !emu_name_valid(tenant))) {
    fprintf(stderr, "akv-emulator: bad --tenant-id '%s'\n", tenant);
    goto out;
  }
  stats_init();
  if (faults_spec && faults_set(faults_spec, fault_err, sizeof(fault_err)) != 0) {
    fprintf(stderr, "akv-emulator: bad --faults: %s\n", fault_err);
    goto out;
  }

  /* signals: handled synchronously by sigwait in this thread; all server threads inherit the mask
   */
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  if (state) {
    if (mkdir(state, 0700) != 0 && errno != EEXIST) {
      fprintf(stderr, "akv-emulator: cannot create state dir %s: %s\n", state, strerror(errno));
      goto out;
    }
    srv->state_dir = realpath(state, NULL);
  } else {
    const char *tmp = getenv("TMPDIR");
    char *tmpl = emu_strdup_printf("%s/akv-emulator-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (tmpl && mkdtemp(tmpl)) {
      srv->state_dir = tmpl;
      made_state = true;
    } else {
      fprintf(stderr, "akv-emulator: cannot create a temporary state dir: %s\n", strerror(errno));
      free(tmpl);
      goto out;
    }
  }
  if (!srv->state_dir)
    goto out;

  char id[37];
  if (tenant) {
    srv->tenant_id = strdup(tenant);
  } else {
    emu_uuid_new(id);
    srv->tenant_id = strdup(id);
  }
  emu_uuid_new(id);
  srv->client_id = strdup(id);
  srv->client_secret = random_secret_new(40);
  emu_uuid_new(id);
  srv->other_client_id = strdup(id);
  srv->other_client_secret = random_secret_new(40);
  srv->identity_header = random_secret_new(32);
  if (!srv->tenant_id || !srv->client_id || !srv->client_secret || !srv->other_client_id ||
      !srv->other_client_secret || !srv->identity_header)
    goto out;
  if (tls_setup(srv) != 0 || RAND_bytes(srv->backup_key, sizeof(srv->backup_key)) != 1)
    goto out;
  if (http_start(srv, (unsigned)port_base) != 0)
    goto stop;
  fedtok = entra_federated_token_new();
  fedfile = emu_strdup_printf("%s/federated-token.jwt", srv->state_dir);
  if (!fedtok || !fedfile || write_atomic(fedfile, fedtok, 0600) != 0)
    goto stop;
  if (seed_file && seed(srv, seed_file) != 0)
    goto stop;
  readytext = ready_json_new(srv, fedfile);
  if (!readytext || write_atomic(ready, readytext, 0600) != 0)
    goto stop;

  printf("akv-emulator: authority %s (tenant %s), managed identity %s\n", srv->authority_host,
         srv->tenant_id, srv->imds_endpoint);
  for (size_t i = 0; i < srv->nvaults; i++)
    printf("akv-emulator: %s %s at %s\n",
           srv->vaults[i].kind == EMU_KIND_MHSM ? "managed HSM" : "vault", srv->vaults[i].name,
           srv->vaults[i].base_url);
  printf("akv-emulator: ready file %s, state dir %s\n", ready, srv->state_dir);
  fflush(stdout);

  if (sigwait(&set, &sig) != 0)
    goto stop;
  fprintf(stderr, "akv-emulator: signal %d, stopping\n", sig);
  rc = 0;
stop:
  http_stop();
out:
  secret_free(readytext);
  secret_free(fedtok);
  free(fedfile);
  faults_free();
  quota_free();
  stats_free();
  server_free(srv, made_state);
  emu_srv = NULL;
  return rc;
}
