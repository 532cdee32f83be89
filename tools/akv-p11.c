/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11: the command-line companion of akv-pkcs11 (doctor, list, uri, cache, audit, attest). See
 * akv-p11.1. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "kv/kv.h"
#include "modview.h"
#include "tool.h"
#include "util/config.h"
#include "util/log.h"
#include "util/serial.h"

#ifndef AKV_DEFAULT_MODULE
#define AKV_DEFAULT_MODULE "akv-pkcs11.so"
#endif

static void usage(FILE *f)
{
  fprintf(
      f,
      "Usage: akv-p11 [OPTIONS] COMMAND [ARGS]\n"
      "\n"
      "Commands:\n"
      "  doctor        check the configuration, credentials, permissions and objects of every\n"
      "                slot and print what is wrong and how to fix it\n"
      "  list          list the objects the module exposes (table, or --json)\n"
      "  uri NAME      print the PKCS#11 URI of the object labelled NAME\n"
      "  cache clear   remove this user's cross-process cache file, so the next listing reads\n"
      "                the vault (docs/troubleshooting.md)\n"
      "  audit verify FILE...\n"
      "                check the hash chain of audit files (oldest first) and report the first\n"
      "                changed, missing or reordered line (docs/audit.md)\n"
      "  attest NAME   Managed HSM: fetch the key attestation of key NAME, check it with OpenSSL\n"
      "                and write it for a certificate authority (--out DIR, docs/usage.md)\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE   configuration file or inline JSON (default: the module's search:\n"
      "                      AKV_PKCS11_CONFIG, ~/.config/akv-pkcs11/config.json,\n"
      "                      /etc/akv-pkcs11/config.json, then the environment)\n"
      "  -m, --module PATH   the module to load (default: $AKV_PKCS11_MODULE, else run from\n"
      "                      a build tree BUILD/src/akv-pkcs11.so, else\n"
      "                      " AKV_DEFAULT_MODULE ")\n"
      "  -j, --json          machine-readable output (doctor, list)\n"
      "      --probe-sign    doctor: also sign an all-zero digest with every sign-capable key\n"
      "                      (no state change, but audited by Key Vault as key use)\n"
      "  -t, --token LABEL   list, uri: only this token\n"
      "      --type TYPE     uri: private (default for key pairs), public, secret-key, cert, data\n"
      "      --slot N        attest: the slot (0-based, configuration order; default: the first\n"
      "                      Managed HSM)\n"
      "      --out DIR       attest: where the files go (default: the current directory)\n"
      "      --root FILE     attest: the HSM vendor's root certificate(s) (PEM) the card\n"
      "                      certificate must chain to (not in the reply); default: the\n"
      "                      slot's attestation_root\n"
      "  -h, --help          this help\n"
      "  -V, --version       version\n"
      "\n"
      "Exit status: 0 healthy / found, 1 problems found / not found, 2 usage or configuration\n"
      "error.\n");
}

void tool_http_opts(const struct akv_config *cfg, struct kv_http_opts *ho)
{
  memset(ho, 0, sizeof(*ho));
  ho->ca_file = cfg->ca_file;
  ho->proxy = cfg->proxy;
  ho->connect_timeout_ms = cfg->connect_timeout_ms;
  ho->request_timeout_ms = cfg->request_timeout_ms;
  ho->deadline_ms = cfg->deadline_ms;
  ho->max_retries = cfg->max_retries;
  ho->retry_base_ms = cfg->retry_base_ms;
  ho->retry_cap_ms = cfg->retry_cap_ms;
  ho->pool_size = cfg->pool_size;
  ho->max_response_bytes = cfg->max_response_bytes;
  ho->allowed_hosts = (const char *const *)cfg->allowed_hosts;
  ho->n_allowed_hosts = cfg->n_allowed_hosts;
}

void tool_vault_serial(const char *url, char out[17])
{
  (void)akv_vault_serial(NULL, url, out); /* the module's serial (src/util/serial.c) */
}

/* The configuration is loaded here only to report its errors verbatim before the module would
 * bury them in a CKR_GENERAL_ERROR. */
static int config_ok(const struct tool_opts *o)
{
  struct akv_config *cfg = NULL;
  char err[1024];
  akv_log_init(AKV_LOG_ERROR, "/dev/null");
  if (akv_config_load(o->config, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: configuration error: %s\n", err);
    akv_log_close();
    return 0;
  }
  akv_config_free(cfg);
  akv_log_close();
  return 1;
}

/* Opens the module and reads the objects of every token (or of --token). */
static int open_view(const struct tool_opts *o, struct mv_view **v)
{
  char err[512];
  int ret = TOOL_OK, seen = 0;
  if (!config_ok(o))
    return TOOL_USAGE;
  if (mv_open(o->module, o->config, v, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: %s\n", err);
    return TOOL_USAGE;
  }
  for (size_t i = 0; i < (*v)->n_toks; i++) {
    if (o->token && strcmp((*v)->toks[i].label, o->token) != 0)
      continue;
    seen = 1;
    if (mv_load_objects(*v, i, err, sizeof(err)) != 0) {
      fprintf(stderr, "akv-p11: token %s: %s (run `akv-p11 doctor` for the cause)\n",
              (*v)->toks[i].label, err);
      ret = TOOL_PROBLEM;
    }
  }
  if (o->token && !seen) {
    fprintf(stderr, "akv-p11: no token labelled '%s'\n", o->token);
    ret = TOOL_PROBLEM;
  }
  return ret;
}

int tool_list(const struct tool_opts *o)
{
  struct mv_view *v = NULL;
  cJSON *root = NULL, *toks;
  int ret = open_view(o, &v);
  if (!v)
    goto out;
  if (o->json) {
    char *s;
    root = cJSON_CreateObject();
    toks = cJSON_AddArrayToObject(root, "tokens");
    for (size_t i = 0; i < v->n_toks; i++) {
      const struct mv_token *t = &v->toks[i];
      cJSON *tj, *objs;
      if (o->token && strcmp(t->label, o->token) != 0)
        continue;
      tj = cJSON_CreateObject();
      cJSON_AddNumberToObject(tj, "slot", (double)t->slot);
      cJSON_AddStringToObject(tj, "label", t->label);
      cJSON_AddStringToObject(tj, "model", t->model);
      cJSON_AddStringToObject(tj, "manufacturer", t->manufacturer);
      cJSON_AddStringToObject(tj, "serial", t->serial);
      cJSON_AddStringToObject(tj, "uri", t->uri);
      cJSON_AddBoolToObject(tj, "loaded", t->loaded);
      objs = cJSON_AddArrayToObject(tj, "objects");
      for (size_t k = 0; k < t->n_objs; k++)
        cJSON_AddItemToArray(objs, mv_object_json(&t->objs[k]));
      cJSON_AddItemToArray(toks, tj);
    }
    s = cJSON_Print(root);
    if (!s) {
      fprintf(stderr, "akv-p11: out of memory\n");
      ret = TOOL_PROBLEM;
      goto out;
    }
    printf("%s\n", s);
    free(s);
    goto out;
  }
  printf("%-16s %-10s %-10s %-24s %-40s %s\n", "TOKEN", "CLASS", "KEY", "LABEL", "ID", "URI");
  for (size_t i = 0; i < v->n_toks; i++) {
    const struct mv_token *t = &v->toks[i];
    if (o->token && strcmp(t->label, o->token) != 0)
      continue;
    for (size_t k = 0; k < t->n_objs; k++) {
      const struct mv_object *ob = &t->objs[k];
      char kt[32] = "-";
      char *id = mv_hex(ob->id, ob->id_len);
      if (*mv_key_type_name(ob->key_type))
        snprintf(kt, sizeof(kt), "%s%s%lu", mv_key_type_name(ob->key_type), ob->bits ? "-" : "",
                 ob->bits ? (unsigned long)ob->bits : 0ul);
      if (!ob->bits && *mv_key_type_name(ob->key_type))
        snprintf(kt, sizeof(kt), "%s", mv_key_type_name(ob->key_type));
      printf("%-16s %-10s %-10s %-24s %-40s %s\n", t->label, mv_class_name(ob->cls), kt,
             ob->label ? ob->label : "", id && *id ? id : "-", ob->uri);
      free(id);
    }
  }
out:
  fflush(stdout);
  cJSON_Delete(root);
  mv_free(v);
  return ret;
}

/* Preference when --type is not given: what a consumer usually wants for a name. */
static int type_rank(CK_OBJECT_CLASS cls)
{
  switch (cls) {
  case CKO_PRIVATE_KEY:
    return 0;
  case CKO_SECRET_KEY:
    return 1;
  case CKO_CERTIFICATE:
    return 2;
  case CKO_PUBLIC_KEY:
    return 3;
  case CKO_DATA:
    return 4;
  default:
    return 5;
  }
}

int tool_uri(const struct tool_opts *o, const char *name)
{
  struct mv_view *v = NULL;
  const struct mv_object *best = NULL;
  const struct mv_token *best_tok = NULL, *other_tok = NULL;
  int ret = open_view(o, &v);
  if (!v)
    goto out;
  for (size_t i = 0; i < v->n_toks; i++) {
    const struct mv_token *t = &v->toks[i];
    for (size_t k = 0; k < t->n_objs; k++) {
      const struct mv_object *ob = &t->objs[k];
      if (!ob->label || strcmp(ob->label, name) != 0)
        continue;
      if (o->type && strcmp(mv_class_name(ob->cls), o->type) != 0)
        continue;
      if (best_tok && best_tok != t) {
        other_tok = t;
        continue;
      }
      if (!best || type_rank(ob->cls) < type_rank(best->cls)) {
        best = ob;
        best_tok = t;
      }
    }
  }
  if (other_tok) {
    fprintf(stderr, "akv-p11: '%s' exists on tokens '%s' and '%s'; choose one with --token\n", name,
            best_tok->label, other_tok->label);
    ret = TOOL_PROBLEM;
    goto out;
  }
  if (!best) {
    fprintf(stderr, "akv-p11: no %s%sobject labelled '%s'%s%s%s\n", o->type ? o->type : "",
            o->type ? " " : "", name, o->token ? " on token '" : "", o->token ? o->token : "",
            o->token ? "'" : "");
    ret = TOOL_PROBLEM;
    goto out;
  }
  printf("%s\n", best->uri);
  ret = TOOL_OK;
out:
  fflush(stdout);
  mv_free(v);
  return ret;
}

int main(int argc, char **argv)
{
  enum { OPT_PROBE = 256, OPT_TYPE, OPT_SLOT, OPT_OUT, OPT_ROOT };
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"module", required_argument, NULL, 'm'},
      {"json", no_argument, NULL, 'j'},
      {"probe-sign", no_argument, NULL, OPT_PROBE},
      {"token", required_argument, NULL, 't'},
      {"type", required_argument, NULL, OPT_TYPE},
      {"slot", required_argument, NULL, OPT_SLOT},
      {"out", required_argument, NULL, OPT_OUT},
      {"root", required_argument, NULL, OPT_ROOT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  static const char *const types[] = {"private", "public", "secret-key", "cert", "data"};
  struct tool_opts o;
  const char *cmd;
  int c, ok;
  memset(&o, 0, sizeof(o));
  o.slot = -1;
  o.module = getenv("AKV_PKCS11_MODULE");
  if (!o.module || !*o.module)
    o.module = mv_default_module(AKV_DEFAULT_MODULE);
  while ((c = getopt_long(argc, argv, "c:m:jt:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o.config = optarg;
      break;
    case 'm':
      o.module = optarg;
      break;
    case 'j':
      o.json = 1;
      break;
    case OPT_PROBE:
      o.probe_sign = 1;
      break;
    case 't':
      o.token = optarg;
      break;
    case OPT_TYPE:
      ok = 0;
      for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        ok |= strcmp(optarg, types[i]) == 0;
      if (!ok) {
        fprintf(stderr, "akv-p11: --type must be one of private, public, secret-key, cert, "
                        "data\n");
        return TOOL_USAGE;
      }
      o.type = optarg;
      break;
    case OPT_SLOT: {
      char *end = NULL;
      errno = 0;
      o.slot = strtol(optarg, &end, 10);
      if (errno || end == optarg || *end || o.slot < 0 || o.slot > 1023) {
        fprintf(stderr, "akv-p11: --slot must be a slot number 0..1023\n");
        return TOOL_USAGE;
      }
      break;
    }
    case OPT_OUT:
      o.out = optarg;
      break;
    case OPT_ROOT:
      o.root = optarg;
      break;
    case 'h':
      usage(stdout);
      return TOOL_OK;
    case 'V':
      printf("akv-p11 %s\n", AKV_VERSION);
      return TOOL_OK;
    default:
      usage(stderr);
      return TOOL_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return TOOL_USAGE;
  }
  cmd = argv[optind++];
  if (strcmp(cmd, "doctor") == 0 && optind == argc)
    return tool_doctor(&o);
  if (strcmp(cmd, "list") == 0 && optind == argc)
    return tool_list(&o);
  if (strcmp(cmd, "uri") == 0 && optind + 1 == argc)
    return tool_uri(&o, argv[optind]);
  if (strcmp(cmd, "cache") == 0 && optind + 1 == argc && strcmp(argv[optind], "clear") == 0)
    return tool_cache_clear(&o);
  if (strcmp(cmd, "audit") == 0 && optind + 1 < argc && strcmp(argv[optind], "verify") == 0)
    return tool_audit_verify(argc - optind - 1, argv + optind + 1);
  if (strcmp(cmd, "attest") == 0 && optind + 1 == argc)
    return tool_attest(&o, argv[optind], o.slot, o.out ? o.out : ".");
  if (strcmp(cmd, "help") == 0) {
    usage(stdout);
    return TOOL_OK;
  }
  fprintf(stderr, "akv-p11: unknown command or wrong arguments: %s\n", cmd);
  usage(stderr);
  return TOOL_USAGE;
}
