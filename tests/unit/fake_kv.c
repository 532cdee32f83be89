/* SPDX-License-Identifier: Apache-2.0 */
/* Fake Key Vault backend (see fake_kv.h). Test code: in-memory, single vault, no network. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "fake_kv.h"

#define MAX_ITEMS 64
#define MAX_PAIRS 4

struct fake_key {
  char name[64], version[64];
  enum kv_kty kty;
  int pair;
  unsigned ops;
  struct kv_attrs attrs;
};
struct fake_cert {
  char name[64];
  enum kv_kty kty;
  int pair;
  struct kv_attrs attrs;
};
struct fake_secret {
  char name[64];
  char value[256];
  struct kv_attrs attrs;
};

static struct {
  struct fake_key keys[MAX_ITEMS];
  size_t n_keys;
  struct fake_cert certs[MAX_ITEMS];
  size_t n_certs;
  struct fake_secret secrets[MAX_ITEMS];
  size_t n_secrets;
  kv_rc fail;
  int64_t stamp;
} V;

struct fake_kv_calls fake_kv_calls;

/* fake_kv_add_bulk_keys: a count, not entries of V.keys. */
static struct {
  char prefix[16];
  size_t n;
  struct kv_attrs attrs;
} bulk;

static EVP_PKEY *rsa_pairs[MAX_PAIRS], *ec_pairs[MAX_PAIRS];

struct kv_http {
  int dummy;
};
struct kv_cred {
  int dummy;
};
struct kv_client {
  char url[256];
};

static void *xcalloc(size_t n, size_t s)
{
  void *p = calloc(n ? n : 1, s ? s : 1);
  if (!p)
    abort();
  return p;
}

static char *xstrdup(const char *s)
{
  char *p = s ? strdup(s) : NULL;
  if (s && !p)
    abort();
  return p;
}

EVP_PKEY *fake_kv_pair(enum kv_kty kty, int pair)
{
  EVP_PKEY **slot = kty == KV_KTY_RSA ? &rsa_pairs[pair] : &ec_pairs[pair];
  if (!*slot)
    *slot = kty == KV_KTY_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (!*slot)
    abort();
  return *slot;
}

void fake_kv_reset(void)
{
  memset(&V, 0, sizeof(V));
  memset(&bulk, 0, sizeof(bulk));
  V.stamp = 1700000000;
  memset(&fake_kv_calls, 0, sizeof(fake_kv_calls));
}

static struct kv_attrs fresh_attrs(void)
{
  struct kv_attrs a;
  memset(&a, 0, sizeof(a));
  a.enabled = 1;
  a.created = a.updated = ++V.stamp;
  return a;
}

struct kv_attrs *fake_kv_add_key(const char *name, const char *version, enum kv_kty kty, int pair,
                                 unsigned key_ops)
{
  struct fake_key *k = &V.keys[V.n_keys++];
  snprintf(k->name, sizeof(k->name), "%s", name);
  snprintf(k->version, sizeof(k->version), "%s", version);
  k->kty = kty;
  k->pair = pair;
  k->ops = key_ops;
  k->attrs = fresh_attrs();
  if (kty != KV_KTY_OCT)
    fake_kv_pair(kty, pair);
  return &k->attrs;
}

void fake_kv_add_bulk_keys(const char *prefix, size_t n)
{
  snprintf(bulk.prefix, sizeof(bulk.prefix), "%s", prefix);
  bulk.n = n;
  bulk.attrs = fresh_attrs();
  fake_kv_pair(KV_KTY_EC, 0);
}

/* The bulk key of that name (and version "b1", or any when version is NULL) into *k, or NULL. */
static const struct fake_key *bulk_key(const char *name, const char *version, struct fake_key *k)
{
  size_t len = strlen(bulk.prefix), i;
  char *end;
  if (!bulk.n || strncmp(name, bulk.prefix, len) != 0 || (version && strcmp(version, "b1") != 0) ||
      strlen(name + len) != 6 || name[len] < '0' || name[len] > '9')
    return NULL;
  i = strtoul(name + len, &end, 10);
  if (*end || i >= bulk.n)
    return NULL;
  memset(k, 0, sizeof(*k));
  snprintf(k->name, sizeof(k->name), "%s", name);
  snprintf(k->version, sizeof(k->version), "b1");
  k->kty = KV_KTY_EC;
  k->ops = KV_OP_SIGN | KV_OP_VERIFY;
  k->attrs = bulk.attrs;
  return k;
}

struct kv_attrs *fake_kv_add_cert(const char *name, enum kv_kty kty, int pair)
{
  struct fake_cert *c = &V.certs[V.n_certs++];
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->kty = kty;
  c->pair = pair;
  c->attrs = fresh_attrs();
  fake_kv_pair(kty, pair);
  return &c->attrs;
}

struct kv_attrs *fake_kv_add_secret(const char *name, const char *value, int managed)
{
  struct fake_secret *s = &V.secrets[V.n_secrets++];
  snprintf(s->name, sizeof(s->name), "%s", name);
  snprintf(s->value, sizeof(s->value), "%s", value);
  s->attrs = fresh_attrs();
  s->attrs.managed = managed;
  return &s->attrs;
}

void fake_kv_set_secret(const char *name, const char *value)
{
  size_t i;
  for (i = 0; i < V.n_secrets; i++) {
    if (strcmp(V.secrets[i].name, name) == 0) {
      snprintf(V.secrets[i].value, sizeof(V.secrets[i].value), "%s", value);
      V.secrets[i].attrs.updated = ++V.stamp;
    }
  }
}

void fake_kv_remove_key(const char *name)
{
  size_t i = 0;
  while (i < V.n_keys) {
    if (strcmp(V.keys[i].name, name) == 0) {
      memmove(&V.keys[i], &V.keys[i + 1], (V.n_keys - i - 1) * sizeof(V.keys[0]));
      V.n_keys--;
    } else {
      i++;
    }
  }
}

void fake_kv_fail(kv_rc rc)
{
  V.fail = rc;
}

/* ---- kv.h: plumbing ------------------------------------------------------------------------- */

const char *kv_rc_str(kv_rc rc)
{
  static const char *const names[] = {"ok",        "nomem",        "invalid",    "not found",
                                      "forbidden", "unauthorized", "auth",       "bad request",
                                      "conflict",  "throttled",    "server",     "network",
                                      "timeout",   "protocol",     "unsupported"};
  return (unsigned)rc < sizeof(names) / sizeof(names[0]) ? names[rc] : "?";
}

/* The HTTP status the fake vault's answer stands for, to a caller that asked for it. */
static void status_out(long *http_status, long status)
{
  if (http_status)
    *http_status = status;
}

kv_rc kv_http_new(const struct kv_http_opts *opts, struct kv_http **out)
{
  (void)opts;
  __atomic_add_fetch(&fake_kv_calls.http_new, 1, __ATOMIC_SEQ_CST);
  *out = xcalloc(1, sizeof(**out));
  return KV_OK;
}

void kv_http_free(struct kv_http *http)
{
  if (http)
    __atomic_add_fetch(&fake_kv_calls.http_free, 1, __ATOMIC_SEQ_CST);
  free(http);
}

kv_rc kv_cred_new(struct kv_http *http, const struct akv_cred_config *cfg, struct kv_cred **out)
{
  (void)http;
  (void)cfg;
  __atomic_add_fetch(&fake_kv_calls.cred_new, 1, __ATOMIC_SEQ_CST);
  *out = xcalloc(1, sizeof(**out));
  return KV_OK;
}

void kv_cred_free(struct kv_cred *cred)
{
  if (cred)
    __atomic_add_fetch(&fake_kv_calls.cred_free, 1, __ATOMIC_SEQ_CST);
  free(cred);
}

kv_rc kv_cred_token(struct kv_cred *cred, const char *resource, const char *tenant_hint,
                    int force_refresh, char **token)
{
  (void)cred;
  (void)resource;
  (void)tenant_hint;
  (void)force_refresh;
  *token = xstrdup("fake-token");
  return KV_OK;
}

const char *kv_cred_describe(const struct kv_cred *cred)
{
  (void)cred;
  return "fake credential";
}

void kv_secure_free(void *p, size_t len)
{
  if (!p)
    return;
  OPENSSL_cleanse(p, len ? len : strlen(p));
  free(p);
}

kv_rc kv_client_new(struct kv_http *http, struct kv_cred *cred, const struct kv_client_opts *opts,
                    struct kv_client **out)
{
  (void)http;
  (void)cred;
  __atomic_add_fetch(&fake_kv_calls.client_new, 1, __ATOMIC_SEQ_CST);
  *out = xcalloc(1, sizeof(**out));
  snprintf((*out)->url, sizeof((*out)->url), "%s", opts->url);
  return KV_OK;
}

kv_rc kv_client_add_replicas(struct kv_client *cl, const char *const *urls, size_t n,
                             const struct akv_quota_config *q)
{
  (void)cl;
  (void)urls;
  (void)q;
  return n ? KV_E_UNSUPPORTED : KV_OK; /* the fake has no replica vaults */
}

void kv_client_free(struct kv_client *cl)
{
  if (cl)
    __atomic_add_fetch(&fake_kv_calls.client_free, 1, __ATOMIC_SEQ_CST);
  free(cl);
}

/* The fake credential's token names one principal; it has none while the vault fails with
 * KV_E_AUTH (the credential produced no token). */
kv_rc kv_client_principal(struct kv_client *cl, struct kv_principal *out)
{
  (void)cl;
  memset(out, 0, sizeof(*out));
  if (V.fail == KV_E_AUTH)
    return KV_E_AUTH;
  snprintf(out->tid, sizeof(out->tid), "fake-tenant");
  snprintf(out->oid, sizeof(out->oid), "fake-object");
  return KV_OK;
}

/* ---- kv.h: vault reads ----------------------------------------------------------------------- */

static kv_rc failing(long *http_status)
{
  status_out(http_status, V.fail == KV_OK ? 200 : V.fail == KV_E_NOT_FOUND ? 404 : 503);
  return V.fail;
}

static struct kv_item *list_add(struct kv_item_list *l, const char *coll, const char *name,
                                const char *version, const struct kv_attrs *a)
{
  struct kv_item *it;
  char id[512];
  it = kv_item_list_grow(l);
  if (!it)
    abort();
  l->n++;
  if (version)
    snprintf(id, sizeof(id), "%s/%s/%s/%s", FAKE_VAULT_URL, coll, name, version);
  else
    snprintf(id, sizeof(id), "%s/%s/%s", FAKE_VAULT_URL, coll, name);
  it->id = xstrdup(id);
  it->name = xstrdup(name);
  it->version = xstrdup(version);
  it->attrs = *a;
  it->attrs.tags = NULL;
  it->attrs.n_tags = 0;
  return it;
}

/* The latest version of the key name, compared without case as the service does (its kid then
 * spells the name as stored). */
static const struct fake_key *latest_key(const char *name)
{
  const struct fake_key *k = NULL;
  size_t i;
  for (i = 0; i < V.n_keys; i++) {
    if (strcasecmp(V.keys[i].name, name) == 0)
      k = &V.keys[i];
  }
  return k;
}

kv_rc kv_list_keys(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.list_keys, 1, __ATOMIC_SEQ_CST);
  memset(out, 0, sizeof(*out));
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_keys; i++) {
    if (latest_key(V.keys[i].name) == &V.keys[i])
      list_add(out, "keys", V.keys[i].name, NULL, &V.keys[i].attrs);
  }
  for (i = 0; i < bulk.n; i++) {
    char name[64];
    snprintf(name, sizeof(name), "%s%06zu", bulk.prefix, i);
    list_add(out, "keys", name, NULL, &bulk.attrs);
  }
  return KV_OK;
}

kv_rc kv_list_key_versions(struct kv_client *cl, const char *name, struct kv_item_list *out,
                           long *http_status)
{
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.list_versions, 1, __ATOMIC_SEQ_CST);
  memset(out, 0, sizeof(*out));
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_keys; i++) {
    if (strcmp(V.keys[i].name, name) == 0)
      list_add(out, "keys", name, V.keys[i].version, &V.keys[i].attrs);
  }
  if (!out->n)
    status_out(http_status, 404);
  return out->n ? KV_OK : KV_E_NOT_FOUND;
}

kv_rc kv_list_key_versions_page(struct kv_client *cl, const char *name, struct kv_item_list *out,
                                long *http_status)
{
  return kv_list_key_versions(cl, name, out, http_status);
}

static void bn_out(const BIGNUM *bn, size_t pad, unsigned char **p, size_t *len)
{
  size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
  *p = xcalloc(1, n);
  if (BN_bn2binpad(bn, *p, (int)n) < 0)
    abort();
  *len = n;
}

static struct kv_key *make_key(const struct fake_key *fk)
{
  struct kv_key *k = xcalloc(1, sizeof(*k));
  char kid[512];
  BIGNUM *a = NULL, *b = NULL;
  EVP_PKEY *pk;

  snprintf(kid, sizeof(kid), "%s/keys/%s/%s", FAKE_VAULT_URL, fk->name, fk->version);
  k->kid = xstrdup(kid);
  k->name = xstrdup(fk->name);
  k->version = xstrdup(fk->version);
  k->kty = fk->kty;
  k->key_ops = fk->ops;
  k->attrs = fk->attrs;
  if (fk->kty == KV_KTY_RSA) {
    pk = fake_kv_pair(KV_KTY_RSA, fk->pair);
    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &a) ||
        !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &b))
      abort();
    /* A leading zero, as some JWK encoders send: the model must strip it. */
    bn_out(a, (size_t)BN_num_bytes(a) + 1, &k->n, &k->n_len);
    bn_out(b, 0, &k->e, &k->e_len);
  } else if (fk->kty == KV_KTY_EC) {
    pk = fake_kv_pair(KV_KTY_EC, fk->pair);
    k->crv = KV_CRV_P256;
    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
        !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
      abort();
    bn_out(a, 32, &k->x, &k->x_len);
    bn_out(b, 32, &k->y, &k->y_len);
  } else {
    k->hsm = 1;
  }
  BN_free(a);
  BN_free(b);
  return k;
}

kv_rc kv_get_key(struct kv_client *cl, const char *name, const char *version, struct kv_key **out,
                 long *http_status)
{
  const struct fake_key *fk = NULL;
  struct fake_key tmp;
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.get_key, 1, __ATOMIC_SEQ_CST);
  *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  if (!version) {
    fk = latest_key(name);
  } else {
    for (i = 0; i < V.n_keys; i++) {
      if (strcmp(V.keys[i].name, name) == 0 && strcmp(V.keys[i].version, version) == 0)
        fk = &V.keys[i];
    }
  }
  if (!fk)
    fk = bulk_key(name, version, &tmp);
  if (!fk) {
    status_out(http_status, 404);
    return KV_E_NOT_FOUND;
  }
  *out = make_key(fk);
  return KV_OK;
}

kv_rc kv_get_keys(struct kv_client *cl, const char *const *names, const char *const *versions,
                  size_t n, int threads, struct kv_key **out, kv_rc *rcs, long *statuses)
{
  size_t i;
  (void)threads;
  kv_rc rc = KV_OK;
  for (i = 0; i < n; i++) {
    rcs[i] = kv_get_key(cl, names[i], versions ? versions[i] : NULL, &out[i],
                        statuses ? &statuses[i] : NULL);
    if (rcs[i] != KV_OK && rc == KV_OK)
      rc = rcs[i];
  }
  return rc;
}

kv_rc kv_list_certificates(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.list_certs, 1, __ATOMIC_SEQ_CST);
  memset(out, 0, sizeof(*out));
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_certs; i++)
    list_add(out, "certificates", V.certs[i].name, NULL, &V.certs[i].attrs);
  return KV_OK;
}

/* Each fake certificate has one version, "v1" (kv_get_certificate). */
kv_rc kv_list_certificate_versions_page(struct kv_client *cl, const char *name,
                                        struct kv_item_list *out, long *http_status)
{
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.list_certs, 1, __ATOMIC_SEQ_CST);
  memset(out, 0, sizeof(*out));
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_certs; i++) {
    if (strcmp(V.certs[i].name, name) == 0)
      list_add(out, "certificates", name, "v1", &V.certs[i].attrs);
  }
  if (!out->n)
    status_out(http_status, 404);
  return out->n ? KV_OK : KV_E_NOT_FOUND;
}

static unsigned char *self_signed(const struct fake_cert *fc, size_t *len)
{
  EVP_PKEY *pk = fake_kv_pair(fc->kty, fc->pair);
  X509 *x = X509_new();
  X509_NAME *nm = X509_NAME_new();
  unsigned char *der = NULL, *copy;
  int n;

  if (!x || !nm)
    abort();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)fc->name, -1, -1, 0);
  X509_set_subject_name(x, nm);
  X509_set_issuer_name(x, nm);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
  X509_set_pubkey(x, pk);
  if (!X509_sign(x, pk, EVP_sha256()))
    abort();
  n = i2d_X509(x, &der);
  if (n <= 0)
    abort();
  copy = xcalloc(1, (size_t)n);
  memcpy(copy, der, (size_t)n);
  OPENSSL_free(der);
  X509_NAME_free(nm);
  X509_free(x);
  *len = (size_t)n;
  return copy;
}

kv_rc kv_get_certificate(struct kv_client *cl, const char *name, const char *version,
                         struct kv_cert **out, long *http_status)
{
  struct kv_cert *c;
  char buf[512];
  size_t i;
  (void)cl;
  (void)version;
  __atomic_add_fetch(&fake_kv_calls.get_cert, 1, __ATOMIC_SEQ_CST);
  *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_certs; i++) {
    if (strcmp(V.certs[i].name, name) != 0)
      continue;
    c = xcalloc(1, sizeof(*c));
    snprintf(buf, sizeof(buf), "%s/certificates/%s/v1", FAKE_VAULT_URL, name);
    c->id = xstrdup(buf);
    snprintf(buf, sizeof(buf), "%s/keys/%s/v1", FAKE_VAULT_URL, name);
    c->kid = xstrdup(buf);
    c->name = xstrdup(name);
    c->version = xstrdup("v1");
    c->der = self_signed(&V.certs[i], &c->der_len);
    c->attrs = V.certs[i].attrs;
    *out = c;
    return KV_OK;
  }
  status_out(http_status, 404);
  return KV_E_NOT_FOUND;
}

kv_rc kv_list_secrets(struct kv_client *cl, struct kv_item_list *out, long *http_status)
{
  size_t i;
  (void)cl;
  __atomic_add_fetch(&fake_kv_calls.list_secrets, 1, __ATOMIC_SEQ_CST);
  memset(out, 0, sizeof(*out));
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_secrets; i++)
    list_add(out, "secrets", V.secrets[i].name, NULL, &V.secrets[i].attrs);
  return KV_OK;
}

kv_rc kv_get_secret(struct kv_client *cl, const char *name, const char *version,
                    struct kv_secret **out, long *http_status)
{
  struct kv_secret *s;
  size_t i;
  (void)cl;
  (void)version;
  __atomic_add_fetch(&fake_kv_calls.get_secret, 1, __ATOMIC_SEQ_CST);
  *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_secrets; i++) {
    if (strcmp(V.secrets[i].name, name) != 0)
      continue;
    s = xcalloc(1, sizeof(*s));
    s->name = xstrdup(name);
    s->value_len = strlen(V.secrets[i].value);
    s->value = xcalloc(1, s->value_len);
    memcpy(s->value, V.secrets[i].value, s->value_len);
    s->attrs = V.secrets[i].attrs;
    *out = s;
    return KV_OK;
  }
  status_out(http_status, 404);
  return KV_E_NOT_FOUND;
}

/* ---- kv.h: remote cryptography is not part of the model's tests ---------------------------- */

kv_rc kv_sign(struct kv_client *cl, const char *name, const char *version, const char *alg,
              const unsigned char *digest, size_t digest_len, struct kv_bytes *sig,
              long *http_status)
{
  (void)cl, (void)name, (void)version, (void)alg, (void)digest, (void)digest_len, (void)sig;
  status_out(http_status, 0);
  return KV_E_UNSUPPORTED;
}

kv_rc kv_verify(struct kv_client *cl, const char *name, const char *version, const char *alg,
                const unsigned char *digest, size_t digest_len, const unsigned char *sig,
                size_t sig_len, int *valid, long *http_status)
{
  (void)cl, (void)name, (void)version, (void)alg, (void)digest, (void)digest_len;
  (void)sig, (void)sig_len, (void)valid;
  status_out(http_status, 0);
  return KV_E_UNSUPPORTED;
}

kv_rc kv_cipher(struct kv_client *cl, enum kv_cipher_op op, const char *name, const char *version,
                const char *alg, const unsigned char *in, size_t in_len,
                const struct kv_aes_params *aes, struct kv_crypt_result *out, long *http_status)
{
  (void)cl, (void)op, (void)name, (void)version, (void)alg, (void)in, (void)in_len, (void)aes;
  (void)out;
  status_out(http_status, 0);
  return KV_E_UNSUPPORTED;
}

kv_rc kv_random(struct kv_client *cl, unsigned char *out, size_t count, long *http_status)
{
  (void)cl;
  status_out(http_status, 200);
  return RAND_bytes(out, (int)count) == 1 ? KV_OK : KV_E_PROTOCOL;
}

/* ---- kv.h writes (src/kv/write.c) over the same in-memory vault ------------------------------ */

kv_rc kv_create_key(struct kv_client *cl, const char *name, const struct kv_key_spec *spec,
                    struct kv_key **out, long *http_status)
{
  char version[64];
  (void)cl;
  *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  if (V.n_keys >= MAX_ITEMS)
    return KV_E_SERVER;
  snprintf(version, sizeof(version), "%032llx", (unsigned long long)++V.stamp);
  fake_kv_add_key(name, version, spec->kty, MAX_PAIRS - 1, spec->key_ops);
  V.keys[V.n_keys - 1].attrs.nbf = spec->nbf;
  V.keys[V.n_keys - 1].attrs.exp = spec->exp;
  *out = make_key(&V.keys[V.n_keys - 1]);
  return KV_OK;
}

kv_rc kv_update_key(struct kv_client *cl, const char *name, const char *version,
                    const struct kv_update *u, struct kv_key **out, long *http_status)
{
  size_t i;
  (void)cl;
  if (out)
    *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_keys; i++) {
    struct fake_key *k = &V.keys[i];
    if (strcmp(k->name, name) != 0 || strcmp(k->version, version) != 0)
      continue;
    if (u->set_enabled)
      k->attrs.enabled = u->enabled;
    if (u->set_nbf)
      k->attrs.nbf = u->nbf;
    if (u->set_exp)
      k->attrs.exp = u->exp;
    k->attrs.updated = ++V.stamp;
    if (out)
      *out = make_key(k);
    return KV_OK;
  }
  status_out(http_status, 404);
  return KV_E_NOT_FOUND;
}

kv_rc kv_delete_key(struct kv_client *cl, const char *name, long *http_status)
{
  (void)cl;
  if (failing(http_status) != KV_OK)
    return V.fail;
  if (!latest_key(name)) {
    status_out(http_status, 404);
    return KV_E_NOT_FOUND;
  }
  fake_kv_remove_key(name);
  return KV_OK;
}

kv_rc kv_set_secret(struct kv_client *cl, const char *name, const unsigned char *value, size_t len,
                    const char *content_type, const struct kv_tag *tags, size_t n_tags,
                    struct kv_secret **out, long *http_status)
{
  char v[256], id[512];
  struct kv_secret *s;
  (void)cl;
  (void)content_type;
  (void)tags;
  (void)n_tags;
  if (out)
    *out = NULL;
  if (failing(http_status) != KV_OK)
    return V.fail;
  if (len >= sizeof(v) || memchr(value, 0, len) || V.n_secrets >= MAX_ITEMS)
    return KV_E_INVALID;
  memcpy(v, value, len);
  v[len] = '\0';
  fake_kv_add_secret(name, v, 0);
  if (out) {
    s = xcalloc(1, sizeof(*s));
    snprintf(id, sizeof(id), "%s/secrets/%s/%032llx", FAKE_VAULT_URL, name,
             (unsigned long long)V.stamp);
    s->id = xstrdup(id);
    s->name = xstrdup(name);
    s->version = xstrdup(strrchr(id, '/') + 1);
    s->attrs = V.secrets[V.n_secrets - 1].attrs;
    *out = s;
  }
  return KV_OK;
}

kv_rc kv_delete_secret(struct kv_client *cl, const char *name, long *http_status)
{
  size_t i;
  (void)cl;
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_secrets; i++) {
    if (strcmp(V.secrets[i].name, name) == 0) {
      memmove(&V.secrets[i], &V.secrets[i + 1], (V.n_secrets - i - 1) * sizeof(V.secrets[0]));
      V.n_secrets--;
      return KV_OK;
    }
  }
  status_out(http_status, 404);
  return KV_E_NOT_FOUND;
}

kv_rc kv_delete_certificate(struct kv_client *cl, const char *name, long *http_status)
{
  size_t i;
  (void)cl;
  if (failing(http_status) != KV_OK)
    return V.fail;
  for (i = 0; i < V.n_certs; i++) {
    if (strcmp(V.certs[i].name, name) == 0) {
      memmove(&V.certs[i], &V.certs[i + 1], (V.n_certs - i - 1) * sizeof(V.certs[0]));
      V.n_certs--;
      fake_kv_remove_key(name);
      return KV_OK;
    }
  }
  status_out(http_status, 404);
  return KV_E_NOT_FOUND;
}

/* ---- kv.h: key attestation (none in the fake vault: a Managed HSM's answer for a key without
 * one, so its objects are refused at the first read; fake_kv_fail's failure when set) */

int fake_kv_attestation_calls;

kv_rc kv_get_key_attestation(struct kv_client *cl, const char *name, const char *version,
                             struct kv_attestation **out, long *http_status)
{
  (void)cl;
  (void)name;
  (void)version;
  *out = NULL;
  fake_kv_attestation_calls++;
  if (V.fail != KV_OK) {
    status_out(http_status, 503);
    return V.fail;
  }
  status_out(http_status, 400);
  return KV_E_BAD_REQUEST;
}

void kv_attestation_free(struct kv_attestation *a)
{
  free(a);
}

void kv_attest_result_clear(struct kv_attest_result *r)
{
  if (r)
    memset(r, 0, sizeof(*r));
}

kv_rc kv_attestation_verify(const struct kv_attestation *a, OSSL_LIB_CTX *libctx,
                            STACK_OF(X509) * roots, const char *roots_name,
                            struct kv_attest_result *res)
{
  (void)a;
  (void)libctx;
  (void)roots;
  (void)roots_name;
  (void)res;
  return KV_E_PROTOCOL;
}

char *kv_attestation_json(const struct kv_attestation *a, size_t *len)
{
  (void)a;
  (void)len;
  return NULL;
}
