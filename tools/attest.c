/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11 attest NAME [--slot N] [--out DIR] [--root FILE]: fetches the Managed HSM key
 * attestation of a key, checks it with OpenSSL (src/kv/attest.c: both chains, the vendor's to a
 * trusted vendor root of --root, else of the slot's attestation_root, when there is one; the
 * blobs' signatures, the attested public key against the key's) and only then writes what a
 * certificate authority asks for. Files and checks: docs/usage.md "Key attestation for a CA". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kv/kv.h"
#include "tool.h"
#include "util/config.h"
#include "util/log.h"

#define OUT_MAX 8 /* files written */

struct out_file {
  const char *name;
  char *data;
  size_t len;
};

static char *pem_of(X509 *cert, size_t *len)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL, *copy = NULL;
  long n;
  if (b && PEM_write_bio_X509(b, cert) == 1 && (n = BIO_get_mem_data(b, &p)) > 0 &&
      (copy = malloc((size_t)n + 1))) {
    memcpy(copy, p, (size_t)n);
    copy[n] = '\0';
    *len = (size_t)n;
  }
  BIO_free(b);
  return copy;
}

static char *pubkey_pem(EVP_PKEY *pk, size_t *len)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL, *copy = NULL;
  long n;
  if (b && PEM_write_bio_PUBKEY(b, pk) == 1 && (n = BIO_get_mem_data(b, &p)) > 0 &&
      (copy = malloc((size_t)n + 1))) {
    memcpy(copy, p, (size_t)n);
    copy[n] = '\0';
    *len = (size_t)n;
  }
  BIO_free(b);
  return copy;
}

static char *dup_bytes(const unsigned char *p, size_t len)
{
  char *d = malloc(len ? len : 1);
  if (d && len)
    memcpy(d, p, len);
  return d;
}

/* Writes one file in dir: created 0644, never through a symbolic link, replacing an older one. */
static int write_file(const char *dir, const struct out_file *f)
{
  char path[4096];
  size_t off = 0;
  int fd;
  if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, f->name) >= sizeof(path)) {
    fprintf(stderr, "akv-p11: attest: output path too long: %s/%s\n", dir, f->name);
    return -1;
  }
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "akv-p11: attest: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (off < f->len) {
    ssize_t w = write(fd, f->data + off, f->len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      fprintf(stderr, "akv-p11: attest: cannot write %s: %s\n", path, strerror(errno));
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  if (close(fd) != 0) {
    fprintf(stderr, "akv-p11: attest: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  printf("  %s/%s\n", dir, f->name);
  return 0;
}

/* The slot: --slot N (0-based, in configuration order, as the module numbers them), else the
 * first Managed HSM slot. */
static const struct akv_slot_config *pick_slot(const struct akv_config *cfg, long slot)
{
  if (slot >= 0) {
    if ((size_t)slot >= cfg->n_slots) {
      fprintf(stderr, "akv-p11: attest: no slot %ld (the configuration has %zu)\n", slot,
              cfg->n_slots);
      return NULL;
    }
    return &cfg->slots[slot];
  }
  for (size_t i = 0; i < cfg->n_slots; i++)
    if (cfg->slots[i].kind == AKV_VAULT_MHSM)
      return &cfg->slots[i];
  fprintf(stderr, "akv-p11: attest: no Managed HSM slot in the configuration: key attestation is "
                  "a Managed HSM feature (use --slot N to name one)\n");
  return NULL;
}

int tool_attest(const struct tool_opts *o, const char *name, long slot, const char *out_dir)
{
  struct akv_config *cfg = NULL;
  const struct akv_slot_config *s;
  struct kv_http_opts ho;
  struct kv_http *http = NULL;
  struct kv_cred *cred = NULL;
  struct kv_client *cl = NULL;
  struct kv_client_opts co;
  struct kv_key *key = NULL;
  struct kv_attestation *a = NULL;
  struct kv_attest_result res;
  struct out_file files[OUT_MAX];
  size_t nf = 0;
  EVP_PKEY *pk = NULL;
  STACK_OF(X509) *own_roots = NULL, *roots = NULL;
  char err[1024], roots_name[1200];
  int ret = TOOL_USAGE;
  kv_rc rc;

  memset(&res, 0, sizeof(res));
  memset(files, 0, sizeof(files));
  /* Backend warnings (the reason a check failed) go to stderr. */
  akv_log_init(AKV_LOG_WARN, "");
  if (akv_config_load(o->config, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: configuration error: %s\n", err);
    goto out;
  }
  /* The trusted vendor roots: --root, read as attestation_root is (config.c). */
  if (o->root && akv_attestation_roots_read(o->root, &own_roots, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: attest: --root: %s\n", err);
    goto out;
  }
  if (!(s = pick_slot(cfg, slot))) {
    ret = TOOL_PROBLEM;
    goto out;
  }
  if (s->kind != AKV_VAULT_MHSM) {
    fprintf(stderr,
            "akv-p11: attest: slot %s (%s) is a Key Vault: key attestation is a Managed HSM "
            "feature\n",
            s->label, s->url);
    ret = TOOL_PROBLEM;
    goto out;
  }
  roots = own_roots ? own_roots : s->attestation_roots;
  if (own_roots)
    snprintf(roots_name, sizeof(roots_name), "--root %s", o->root);
  else if (roots)
    snprintf(roots_name, sizeof(roots_name), "slot %s attestation_root %s", s->label,
             s->attestation_root);
  tool_http_opts(cfg, &ho);
  memset(&co, 0, sizeof(co));
  co.url = s->url;
  co.api_version = cfg->api_version;
  co.kind = s->kind;
  if ((rc = kv_http_new(&ho, &http)) != KV_OK ||
      (rc = kv_cred_new(http, s->has_cred ? &s->cred : &cfg->cred, &cred)) != KV_OK ||
      (rc = kv_client_new(http, cred, &co, &cl)) != KV_OK) {
    fprintf(stderr, "akv-p11: attest: slot %s: cannot set up the client (%s)\n", s->label,
            kv_rc_str(rc));
    goto out;
  }
  ret = TOOL_PROBLEM;

  /* The key as the vault describes it, then the attestation of that very version. */
  if ((rc = kv_get_key(cl, name, NULL, &key, NULL)) != KV_OK) {
    fprintf(stderr, "akv-p11: attest: key %s in %s: %s\n", name, s->label, kv_rc_str(rc));
    goto out;
  }
  if ((rc = kv_get_key_attestation(cl, name, key->version, &a, NULL)) != KV_OK) {
    fprintf(stderr, "akv-p11: attest: key %s in %s has no usable attestation (%s)\n", name,
            s->label, kv_rc_str(rc));
    goto out;
  }
  if (strcmp(a->key->kid, key->kid) != 0) {
    fprintf(stderr, "akv-p11: attest: the attestation describes %s, not %s\n", a->key->kid,
            key->kid);
    goto out;
  }
  if ((rc = kv_attestation_verify(a, NULL, roots, roots ? roots_name : NULL, &res)) != KV_OK) {
    fprintf(stderr,
            "akv-p11: attest: key %s: the attestation does not verify; nothing written (the "
            "reason is on the line above)\n",
            name);
    goto out;
  }
  if (key->kty != KV_KTY_OCT && kv_key_to_pkey(key, NULL, &pk) != KV_OK) {
    fprintf(stderr, "akv-p11: attest: key %s: its public key cannot be read\n", name);
    goto out;
  }

  /* Everything checked: build the files, then write them. The vendor's chain (partition
   * certificate, HSM card certificate: verify against the vendor root) and Microsoft's (partition
   * certificate, its root) apart, as a CA's `openssl verify` takes them. */
  size_t l = 0;
  char *d;
  d = pem_of(res.signer, &l);
  files[nf++] = (struct out_file){"partition.pem", d, l};
  d = pem_of(res.card, &l);
  files[nf++] = (struct out_file){"card.pem", d, l};
  d = pem_of(res.ms_part, &l);
  files[nf++] = (struct out_file){"ms-partition.pem", d, l};
  d = pem_of(res.ms_root, &l);
  files[nf++] = (struct out_file){"ms-root.pem", d, l};
  files[nf++] = (struct out_file){"chain.pem", strdup(a->cert_pem), a->cert_pem_len};
  files[nf++] = (struct out_file){"private-key-attestation.bin",
                                  dup_bytes(a->priv_blob, a->priv_len), a->priv_len};
  if (a->pub_blob)
    files[nf++] = (struct out_file){"public-key-attestation.bin",
                                    dup_bytes(a->pub_blob, a->pub_len), a->pub_len};
  if (pk) {
    d = pubkey_pem(pk, &l);
    files[nf++] = (struct out_file){"pubkey.pem", d, l};
  }
  d = kv_attestation_json(a, &l);
  files[nf++] = (struct out_file){"attestation.json", d, l};
  for (size_t i = 0; i < nf; i++)
    if (!files[i].data) {
      fprintf(stderr, "akv-p11: attest: out of memory\n");
      goto out;
    }
  if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "akv-p11: attest: cannot create %s: %s\n", out_dir, strerror(errno));
    goto out;
  }
  printf("%s: attestation verified (format %s; blobs signed by the HSM partition key and "
         "stating the key's public key; Microsoft's partition certificate chains to its root; "
         "the vendor's to the HSM card certificate%s%s)\n",
         key->kid, a->format_version, roots ? " and to a trusted vendor root of " : "",
         roots ? roots_name : "");
  if (!roots)
    printf("warning: the vendor root was not checked (give it with --root FILE or the slot's "
           "attestation_root)\n");
  if (res.extractable >= 0)
    printf("private key: %s\n", res.extractable ? "exportable (secure key release)"
                                                : "not extractable, never extractable");
  for (size_t i = 0; i < nf; i++)
    if (write_file(out_dir, &files[i]) != 0)
      goto out;
  ret = TOOL_OK;
out:
  for (size_t i = 0; i < nf; i++)
    free(files[i].data);
  EVP_PKEY_free(pk);
  sk_X509_pop_free(own_roots, X509_free);
  kv_attest_result_clear(&res);
  kv_attestation_free(a);
  kv_key_free(key);
  kv_client_free(cl);
  kv_cred_free(cred);
  kv_http_free(http);
  akv_config_free(cfg);
  akv_log_close();
  return ret;
}
