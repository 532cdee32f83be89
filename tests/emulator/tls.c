/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.c - key material generated at startup: a private CA, the HTTPS server
 * certificate (localhost, 127.0.0.1), the client certificate registered for
 * the client-assertion flow, and the key signing access tokens.
 */
#include "core.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static EVP_PKEY *gen_ec(void)
{
  return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static EVP_PKEY *gen_rsa(void)
{
  return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
  X509V3_CTX ctx;
  X509_EXTENSION *ext;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ext)
    return -1;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

/* Certificate for `key` with subject CN=cn, signed by issuer_key (self-signed when
 * issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
                       const char *san, long days)
{
  X509 *cert = X509_new();
  X509_NAME *name = NULL;
  unsigned char serial[16];
  BIGNUM *bn = NULL;
  if (!cert)
    return NULL;
  if (RAND_bytes(serial, sizeof(serial)) != 1)
    goto fail;
  serial[0] &= 0x7f;
  bn = BN_bin2bn(serial, sizeof(serial), NULL);
  if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
    goto fail;
  if (!X509_set_version(cert, 2) || !X509_gmtime_adj(X509_getm_notBefore(cert), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400) || !X509_set_pubkey(cert, key))
    goto fail;
  name = X509_NAME_new();
  if (!name ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
    goto fail;
  if (!X509_set_subject_name(cert, name))
    goto fail;
  if (!X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name))
    goto fail;
  X509 *iss = issuer ? issuer : cert;
  if (add_ext(cert, iss, NID_subject_key_identifier, "hash") != 0)
    goto fail;
  if (ca) {
    if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign") != 0)
      goto fail;
  } else {
    if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(cert, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0)
      goto fail;
  }
  if (issuer && add_ext(cert, iss, NID_authority_key_identifier, "keyid:always") != 0)
    goto fail;
  if (san && (add_ext(cert, iss, NID_subject_alt_name, san) != 0 ||
              add_ext(cert, iss, NID_ext_key_usage, "serverAuth") != 0))
    goto fail;
  if (!X509_sign(cert, issuer_key, EVP_sha256()))
    goto fail;
  X509_NAME_free(name);
  BN_free(bn);
  return cert;
fail:
  X509_NAME_free(name);
  BN_free(bn);
  X509_free(cert);
  return NULL;
}

static char *bio_text_new(BIO *bio)
{
  char *data = NULL;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0)
    return NULL;
  char *out = malloc((size_t)n + 1);
  if (!out)
    return NULL;
  memcpy(out, data, (size_t)n);
  out[n] = '\0';
  return out;
}

static int write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
  char *path = emu_strdup_printf("%s/%s", dir, name);
  int fd = -1, rc = -1;
  if (!path)
    return -1;
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    fprintf(stderr, "akv-emulator: cannot write %s: %m\n", path);
    goto out;
  }
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w <= 0) {
      fprintf(stderr, "akv-emulator: write %s failed: %m\n", path);
      goto out;
    }
    off += (size_t)w;
  }
  rc = 0;
out:
  if (fd >= 0)
    close(fd);
  free(path);
  return rc;
}

int tls_setup(struct emu_server *srv)
{
  EVP_PKEY *ca_key = NULL, *srv_key = NULL, *cli_key = NULL;
  X509 *ca = NULL, *srv_cert = NULL;
  BIO *b = NULL;
  char *text = NULL;
  int rc = -1;
  unsigned int mdlen;

  ca_key = gen_ec();
  srv_key = gen_ec();
  cli_key = gen_rsa();
  srv->token_key = gen_rsa();
  if (!ca_key || !srv_key || !cli_key || !srv->token_key)
    goto fail;
  ca = make_cert(ca_key, "akv-emulator test CA", NULL, ca_key, true, NULL, 30);
  if (!ca)
    goto fail;
  srv_cert = make_cert(srv_key, "localhost", ca, ca_key, false, "DNS:localhost,IP:127.0.0.1", 30);
  srv->client_cert = make_cert(cli_key, "akv-emulator client", NULL, cli_key, false, NULL, 30);
  if (!srv_cert || !srv->client_cert)
    goto fail;

  /* ca.pem */
  b = BIO_new(BIO_s_mem());
  if (!b || !PEM_write_bio_X509(b, ca) || !(text = bio_text_new(b)))
    goto fail;
  if (write_file(srv->state_dir, "ca.pem", text, 0644) != 0)
    goto out;
  free(text);
  text = NULL;
  BIO_free(b);

  /* server key and certificate, in memory for the HTTPS listeners */
  b = BIO_new(BIO_s_mem());
  if (!b || !PEM_write_bio_PrivateKey(b, srv_key, NULL, NULL, 0, NULL, NULL) ||
      !(srv->server_key_pem = bio_text_new(b)))
    goto fail;
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  if (!b || !PEM_write_bio_X509(b, srv_cert) || !(srv->server_cert_pem = bio_text_new(b)))
    goto fail;
  BIO_free(b);

  /* client.pem: certificate + private key, as AZURE_CLIENT_CERTIFICATE_PATH expects */
  b = BIO_new(BIO_s_mem());
  if (!b || !PEM_write_bio_X509(b, srv->client_cert) ||
      !PEM_write_bio_PrivateKey(b, cli_key, NULL, NULL, 0, NULL, NULL) || !(text = bio_text_new(b)))
    goto fail;
  if (write_file(srv->state_dir, "client.pem", text, 0600) != 0)
    goto out;

  if (!X509_digest(srv->client_cert, EVP_sha1(), srv->client_x5t, &mdlen) ||
      !X509_digest(srv->client_cert, EVP_sha256(), srv->client_x5t256, &mdlen))
    goto fail;
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "akv-emulator: generating TLS material failed\n");
  ERR_print_errors_fp(stderr);
out:
  if (text) {
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  BIO_free(b);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(srv_key);
  EVP_PKEY_free(cli_key);
  X509_free(ca);
  X509_free(srv_cert);
  return rc;
}
