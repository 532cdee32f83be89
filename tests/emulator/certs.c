/* SPDX-License-Identifier: Apache-2.0 */
/* certs.c - Key Vault certificates of the emulator.
 *
 * Routes (vault kind only):
 *   POST   /certificates/{n}/create              202 CertificateOperation    certificates.create
 *   POST   /certificates/{n}/import              200 CertificateBundle       certificates.import
 *   GET    /certificates                          list (includePending)      certificates.list
 *   GET    /certificates/{n}/versions             list versions              certificates.versions
 *   GET    /certificates/{n}[/{v}]                get                        certificates.get
 *   PATCH  /certificates/{n}[/{v}]                update attributes/tags     certificates.update
 *   GET    /certificates/{n}/policy               get policy certificates.policy_get PATCH
 * /certificates/{n}/policy               update policy              certificates.policy_update GET
 * /certificates/{n}/pending              operation                  certificates.pending PATCH
 * /certificates/{n}/pending              cancel                     certificates.pending_update
 *   DELETE /certificates/{n}/pending              delete operation certificates.pending_delete POST
 * /certificates/{n}/pending/merge        merge x5c (issuer Unknown) certificates.merge DELETE
 * /certificates/{n}                      soft delete (+key, secret) certificates.delete GET
 * /deletedcertificates                   list deleted               certificates.deleted_list GET
 * /deletedcertificates/{n}               get deleted                certificates.deleted_get DELETE
 * /deletedcertificates/{n}               purge (204)                certificates.purge POST
 * /deletedcertificates/{n}/recover       recover                    certificates.recover
 *
 * A create allocates the new version at once: a placeholder (disabled, no cer) that the pending
 * operation fills. Issuer "Self" completes on the first GET of /pending or one second after the
 * create, whichever comes first; issuer "Unknown" stays inProgress until merged, cancelled or
 * deleted. Completing adds key {n} (managed, same version) through the key store and secret {n}
 * (managed, kid set, same version) in secrets.c. The store lives in vault->certs and is
 * protected by vault->lock; the key store is only called with that lock released. */
#include "objects.h"
#include "x509.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#define CERTS_MAX 5000
#define CERT_VERSIONS_MAX 500
#define SELF_COMPLETE_MS 1000
#define CT_PKCS12 "application/x-pkcs12"
#define CT_PEM "application/x-pem-file"

enum cop_status { COP_IN_PROGRESS, COP_COMPLETED, COP_FAILED, COP_CANCELLED };

/* A certificate operation (the /pending resource). Kept after completion so that GET /pending
 * reports "completed", until DELETE /pending. */
struct cop {
  char request_id[EMU_VERSION_LEN + 1];
  char version[EMU_VERSION_LEN + 1]; /* placeholder version it fills */
  char *issuer;
  char *csr_b64;
  EVP_PKEY *pkey;
  enum cop_status status;
  int cancellation_requested;
  int completing; /* completion running with the lock released */
  int polls;
  int64_t created_ms;
  char *err_code, *err_msg;
  struct emu_attrs attrs; /* requested certificate attributes */
  cJSON *tags;            /* requested tags */
};

struct cversion {
  char version[EMU_VERSION_LEN + 1];
  X509 *cert; /* NULL while the version is a pending placeholder */
  char *cer_b64;
  char x5t[40];
  struct emu_attrs attrs;
  cJSON *tags;
};

struct cert {
  struct objs_entry e; /* first: name, soft-delete state */
  struct cversion **v; /* creation order */
  size_t nv;
  cJSON *policy; /* stored policy without "id" */
  struct cop *op;
};

/* ---- store ------------------------------------------------------------------------------ */

static void cop_free(struct cop *op)
{
  if (!op)
    return;
  free(op->issuer);
  free(op->csr_b64);
  EVP_PKEY_free(op->pkey);
  free(op->err_code);
  free(op->err_msg);
  cJSON_Delete(op->tags);
  free(op);
}

static void cversion_free(struct cversion *cv)
{
  if (!cv)
    return;
  X509_free(cv->cert);
  free(cv->cer_b64);
  cJSON_Delete(cv->tags);
  free(cv);
}

static void cert_free(struct objs_entry *e)
{
  struct cert *c = (struct cert *)e;
  size_t i;

  if (!c)
    return;
  for (i = 0; i < c->nv; i++)
    cversion_free(c->v[i]);
  free(c->v);
  free(c->e.name);
  cJSON_Delete(c->policy);
  cop_free(c->op);
  free(c);
}

void certs_store_free(void *store)
{
  objs_store_free(store, cert_free);
}

static struct cert *cert_find_inlock(struct emu_vault *vault, const char *name, size_t *idx)
{
  return (struct cert *)objs_find_inlock(vault->certs, name, idx);
}

static struct cert *cert_live_inlock(struct emu_vault *vault, const char *name)
{
  struct cert *c = cert_find_inlock(vault, name, NULL);

  return c && !c->e.deleted ? c : NULL;
}

/* Create the certificate entry when absent. */
static struct cert *cert_get_or_add_inlock(struct emu_vault *vault, const char *name)
{
  struct cert *c = cert_find_inlock(vault, name, NULL);

  return c ? c : (struct cert *)objs_add_inlock(&vault->certs, name, sizeof(*c), CERTS_MAX);
}

/* Latest version: the newest issued one; a placeholder only when nothing was issued yet. */
static struct cversion *cert_latest(const struct cert *c)
{
  size_t i;

  for (i = c->nv; i > 0; i--) {
    if (c->v[i - 1]->cert)
      return c->v[i - 1];
  }
  return c->nv ? c->v[c->nv - 1] : NULL;
}

static struct cversion *cert_version_find(const struct cert *c, const char *version)
{
  size_t i;

  if (!version || !*version)
    return cert_latest(c);
  for (i = 0; i < c->nv; i++) {
    if (objs_ieq(c->v[i]->version, version))
      return c->v[i];
  }
  return NULL;
}

static struct cversion *cversion_add_inlock(struct cert *c, const char *version)
{
  struct cversion *cv, **nv;

  if (c->nv >= CERT_VERSIONS_MAX)
    return NULL;
  nv = realloc(c->v, (c->nv + 1) * sizeof(*nv));
  if (!nv)
    return NULL;
  c->v = nv;
  cv = calloc(1, sizeof(*cv));
  if (!cv)
    return NULL;
  snprintf(cv->version, sizeof(cv->version), "%s", version);
  cv->attrs.enabled = 1;
  cv->attrs.created = cv->attrs.updated = emu_now();
  c->v[c->nv++] = cv;
  return cv;
}

/* Fill a version with its issued certificate. Takes cert. */
static int cversion_issue(struct cversion *cv, X509 *cert, const struct emu_attrs *attrs)
{
  unsigned char *der = NULL;
  size_t len = 0;
  int rc = -1;

  if (x509_cert_der(cert, &der, &len) || x509_thumbprint_b64url(cert, cv->x5t, sizeof(cv->x5t)))
    goto out;
  free(cv->cer_b64);
  cv->cer_b64 = emu_b64_encode(der, len);
  if (!cv->cer_b64)
    goto out;
  X509_free(cv->cert);
  cv->cert = cert;
  cert = NULL;
  cv->attrs.enabled = attrs->enabled;
  cv->attrs.nbf = x509_not_before(cv->cert);
  cv->attrs.exp = x509_not_after(cv->cert);
  cv->attrs.updated = emu_now();
  rc = 0;
out:
  OPENSSL_free(der);
  X509_free(cert);
  return rc;
}

/* ---- JSON shapes ----------------------------------------------------------------------------- */

static int add_id(cJSON *obj, const char *member, struct emu_vault *vault, const char *coll,
                  const char *name, const char *version)
{
  char *id = emu_obj_id_new(vault, coll, name, version);
  int rc = id && cJSON_AddStringToObject(obj, member, id) ? 0 : -1;

  free(id);
  return rc;
}

static int add_sub_id(cJSON *obj, const char *member, struct emu_vault *vault, const char *name,
                      const char *sub)
{
  return add_id(obj, member, vault, "certificates", name, sub);
}

static cJSON *policy_json_new(struct emu_vault *vault, const struct cert *c)
{
  cJSON *p = cJSON_CreateObject(), *m;
  const cJSON *e;

  if (!p || add_sub_id(p, "id", vault, c->e.name, "policy"))
    goto fail;
  cJSON_ArrayForEach(e, c->policy)
  {
    m = cJSON_Duplicate(e, 1);
    if (!m || !cJSON_AddItemToObject(p, e->string, m)) {
      cJSON_Delete(m);
      goto fail;
    }
  }
  return p;
fail:
  cJSON_Delete(p);
  return NULL;
}

/* CertificateBundle: id, kid, sid, x5t, cer, attributes, tags, policy, pending. */
static cJSON *bundle_new(struct emu_vault *vault, const struct cert *c, const struct cversion *cv)
{
  cJSON *b = cJSON_CreateObject(), *m = NULL;

  if (!b || add_id(b, "id", vault, "certificates", c->e.name, cv->version))
    goto fail;
  if (cv->cert) {
    if (add_id(b, "kid", vault, "keys", c->e.name, cv->version) ||
        add_id(b, "sid", vault, "secrets", c->e.name, cv->version) ||
        !cJSON_AddStringToObject(b, "x5t", cv->x5t) ||
        !cJSON_AddStringToObject(b, "cer", cv->cer_b64))
      goto fail;
  }
  if (objs_json_add_attrs_tags(b, &cv->attrs, cv->tags))
    goto fail;
  m = policy_json_new(vault, c);
  if (!m || !cJSON_AddItemToObject(b, "policy", m))
    goto fail;
  m = NULL;
  if (c->op) {
    m = cJSON_CreateObject();
    if (!m || add_sub_id(m, "id", vault, c->e.name, "pending") ||
        !cJSON_AddItemToObject(b, "pending", m))
      goto fail;
    m = NULL;
  }
  return b;
fail:
  cJSON_Delete(m);
  cJSON_Delete(b);
  return NULL;
}

static cJSON *deleted_bundle_new(struct emu_vault *vault, const struct cert *c)
{
  const struct cversion *cv = cert_latest(c);

  return objs_json_deleted(cv ? bundle_new(vault, c, cv) : NULL, vault, "deletedcertificates",
                           &c->e);
}

/* CertificateItem: id, attributes, tags, x5t. */
static cJSON *item_new(struct emu_vault *vault, const struct cert *c, const struct cversion *cv,
                       int versioned)
{
  cJSON *b = cJSON_CreateObject();

  if (!b || add_id(b, "id", vault, "certificates", c->e.name, versioned ? cv->version : NULL))
    goto fail;
  if (objs_json_add_attrs_tags(b, &cv->attrs, cv->tags))
    goto fail;
  if (cv->cert && !cJSON_AddStringToObject(b, "x5t", cv->x5t))
    goto fail;
  return b;
fail:
  cJSON_Delete(b);
  return NULL;
}

static const char *cop_status_name(enum cop_status s)
{
  switch (s) {
  case COP_IN_PROGRESS:
    return "inProgress";
  case COP_COMPLETED:
    return "completed";
  case COP_FAILED:
    return "failed";
  default:
    return "cancelled";
  }
}

/* CertificateOperation as recorded: id, issuer, csr, cancellation_requested, status,
 * status_details (in progress), target (completed), request_id, error (failed). */
static cJSON *op_json_new(struct emu_vault *vault, const struct cert *c, const struct cop *op)
{
  cJSON *o = cJSON_CreateObject(), *iss = NULL, *err = NULL;

  if (!o || add_sub_id(o, "id", vault, c->e.name, "pending"))
    goto fail;
  iss = cJSON_AddObjectToObject(o, "issuer");
  if (!iss || !cJSON_AddStringToObject(iss, "name", op->issuer))
    goto fail;
  if (op->csr_b64 && !cJSON_AddStringToObject(o, "csr", op->csr_b64))
    goto fail;
  if (!cJSON_AddBoolToObject(o, "cancellation_requested", op->cancellation_requested) ||
      !cJSON_AddStringToObject(o, "status", cop_status_name(op->status)))
    goto fail;
  if (op->status == COP_IN_PROGRESS &&
      !cJSON_AddStringToObject(o, "status_details",
                               "Pending certificate created. Certificate request is in progress. "
                               "This may take some time based on the issuer provider. Please "
                               "check again later."))
    goto fail;
  if (op->status == COP_COMPLETED && add_id(o, "target", vault, "certificates", c->e.name, NULL))
    goto fail;
  if (!cJSON_AddStringToObject(o, "request_id", op->request_id))
    goto fail;
  if (op->status == COP_FAILED) {
    err = cJSON_AddObjectToObject(o, "error");
    if (!err || !cJSON_AddStringToObject(err, "code", op->err_code) ||
        !cJSON_AddStringToObject(err, "message", op->err_msg))
      goto fail;
  }
  return o;
fail:
  cJSON_Delete(o);
  return NULL;
}

/* ---- policy ------------------------------------------------------------------------------ */

/* Subject of a certificate as "CN=a, O=b" in DER order. */
static char *subject_text_new(X509 *cert)
{
  X509_NAME *name = X509_get_subject_name(cert);
  size_t cap = 1024, len = 0;
  char *out = calloc(1, cap);
  int i;

  if (!out)
    return NULL;
  for (i = 0; i < X509_NAME_entry_count(name); i++) {
    X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
    const char *sn = OBJ_nid2sn(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));

    if (n >= 0 && sn) {
      int w = snprintf(out + len, cap - len, "%s%s=%.*s", len ? ", " : "", sn, n, utf8);

      if (w > 0 && (size_t)w < cap - len)
        len += (size_t)w;
    }
    OPENSSL_free(utf8);
  }
  return out;
}

/* x509_props of an imported certificate: subject, sans, ekus, key_usage, validity_months. */
static cJSON *x509_props_from_cert(X509 *cert)
{
  static const char *const ku_names[] = {"digitalSignature", "nonRepudiation", "keyEncipherment",
                                         "dataEncipherment", "keyAgreement",   "keyCertSign",
                                         "cRLSign",          "encipherOnly",   "decipherOnly"};
  static const uint32_t ku_bits[] = {KU_DIGITAL_SIGNATURE, KU_NON_REPUDIATION, KU_KEY_ENCIPHERMENT,
                                     KU_DATA_ENCIPHERMENT, KU_KEY_AGREEMENT,   KU_KEY_CERT_SIGN,
                                     KU_CRL_SIGN,          KU_ENCIPHER_ONLY,   KU_DECIPHER_ONLY};
  cJSON *p = cJSON_CreateObject(), *sans, *arr, *dns, *emails;
  char *subject = subject_text_new(cert);
  GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
  uint32_t ku = X509_get_key_usage(cert);
  int64_t days = (x509_not_after(cert) - x509_not_before(cert)) / 86400;
  char oid[128];
  int i, months;

  if (!p || !subject || !cJSON_AddStringToObject(p, "subject", subject))
    goto fail;
  sans = cJSON_AddObjectToObject(p, "sans");
  if (!sans)
    goto fail;
  dns = cJSON_CreateArray();
  emails = cJSON_CreateArray();
  if (!dns || !emails) {
    cJSON_Delete(dns);
    cJSON_Delete(emails);
    goto fail;
  }
  for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

    if (g->type == GEN_DNS)
      cJSON_AddItemToArray(dns, cJSON_CreateString((const char *)ASN1_STRING_get0_data(g->d.ia5)));
    else if (g->type == GEN_EMAIL)
      cJSON_AddItemToArray(emails,
                           cJSON_CreateString((const char *)ASN1_STRING_get0_data(g->d.ia5)));
  }
  if (cJSON_GetArraySize(dns))
    cJSON_AddItemToObject(sans, "dns_names", dns);
  else
    cJSON_Delete(dns);
  if (cJSON_GetArraySize(emails))
    cJSON_AddItemToObject(sans, "emails", emails);
  else
    cJSON_Delete(emails);
  arr = cJSON_AddArrayToObject(p, "ekus");
  if (!arr)
    goto fail;
  for (i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
    if (OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1) > 0)
      cJSON_AddItemToArray(arr, cJSON_CreateString(oid));
  }
  arr = cJSON_AddArrayToObject(p, "key_usage");
  if (!arr)
    goto fail;
  for (i = 0; ku != UINT32_MAX && i < (int)(sizeof(ku_bits) / sizeof(ku_bits[0])); i++) {
    if (ku & ku_bits[i])
      cJSON_AddItemToArray(arr, cJSON_CreateString(ku_names[i]));
  }
  months = (int)((days * 10000 + 152188) / 304375); /* days / 30.4375, rounded */
  if (!cJSON_AddNumberToObject(p, "validity_months", months < 1 ? 1 : months))
    goto fail;
  free(subject);
  GENERAL_NAMES_free(gens);
  EXTENDED_KEY_USAGE_free(eku);
  return p;
fail:
  free(subject);
  GENERAL_NAMES_free(gens);
  EXTENDED_KEY_USAGE_free(eku);
  cJSON_Delete(p);
  return NULL;
}

static int bool_member(const cJSON *obj, const char *name, int def, int *bad)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

  if (!it || cJSON_IsNull(it))
    return def;
  if (!cJSON_IsBool(it)) {
    *bad = 1;
    return def;
  }
  return cJSON_IsTrue(it);
}

static const char *curve_of(EVP_PKEY *pkey)
{
  char group[64];

  if (!EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), NULL))
    return NULL;
  if (!strcmp(group, "prime256v1"))
    return "P-256";
  if (!strcmp(group, "secp384r1"))
    return "P-384";
  if (!strcmp(group, "secp521r1"))
    return "P-521";
  if (!strcmp(group, "secp256k1"))
    return "P-256K";
  return NULL;
}

/* Object member that must be an object when present: returns it, NULL when absent, sets *bad
 * when it has another type. */
static const cJSON *obj_member(const cJSON *obj, const char *name, int *bad)
{
  const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;

  if (!it || cJSON_IsNull(it))
    return NULL;
  if (!cJSON_IsObject(it)) {
    *bad = 1;
    return NULL;
  }
  return it;
}

static int add_dup(cJSON *to, const char *name, const cJSON *from)
{
  cJSON *d = cJSON_Duplicate(from, 1);

  if (!d || !cJSON_AddItemToObject(to, name, d)) {
    cJSON_Delete(d);
    return -1;
  }
  return 0;
}

/* Normalise a request policy into the stored form with the service's defaults.
 * Create: in required, pkey/leaf NULL. Import: key and x509 facts come from pkey/leaf.
 * prev: the stored policy being replaced (keeps "created"). NULL + *err on bad input;
 * NULL with *err NULL means out of memory. */
static cJSON *policy_normalize(const cJSON *in, EVP_PKEY *pkey, X509 *leaf, const cJSON *prev,
                               const char **err)
{
  cJSON *out = cJSON_CreateObject(), *kp, *sp, *xp = NULL, *iss, *attrs, *la, *arr;
  const cJSON *ikp, *isp, *ixp, *iiss, *iattrs, *ila, *e, *pattrs;
  const char *kty, *crv = NULL, *ctype, *issuer;
  int bad = 0, exportable, reuse, key_size = 0, is_rsa;
  const cJSON *ks;
  int64_t now = emu_now(), created = now;

  *err = NULL;
  if (!out)
    return NULL;
  if (in && !cJSON_IsObject(in)) {
    *err = "policy must be an object.";
    goto fail;
  }
  ikp = obj_member(in, "key_props", &bad);
  isp = obj_member(in, "secret_props", &bad);
  ixp = obj_member(in, "x509_props", &bad);
  iiss = obj_member(in, "issuer", &bad);
  iattrs = obj_member(in, "attributes", &bad);
  if (bad) {
    *err = "policy.key_props, secret_props, x509_props, issuer and attributes must be objects.";
    goto fail;
  }

  /* key_props */
  exportable = bool_member(ikp, "exportable", 1, &bad);
  reuse = bool_member(ikp, "reuse_key", 0, &bad);
  kty = objs_json_str(ikp, "kty", &bad);
  if (pkey)
    kty = EVP_PKEY_is_a(pkey, "RSA") ? (kty && !strcmp(kty, "RSA-HSM") ? "RSA-HSM" : "RSA")
                                     : (kty && !strcmp(kty, "EC-HSM") ? "EC-HSM" : "EC");
  if (!kty)
    kty = "RSA";
  if (bad) {
    *err = "policy.key_props: exportable/reuse_key must be booleans and kty a string.";
    goto fail;
  }
  is_rsa = !strcmp(kty, "RSA") || !strcmp(kty, "RSA-HSM");
  if (!is_rsa && strcmp(kty, "EC") && strcmp(kty, "EC-HSM")) {
    *err = "policy.key_props.kty must be RSA, RSA-HSM, EC or EC-HSM.";
    goto fail;
  }
  if (is_rsa) {
    ks = cJSON_GetObjectItemCaseSensitive(ikp, "key_size");
    key_size = pkey ? EVP_PKEY_get_bits(pkey) : 2048;
    if (!pkey && ks && !cJSON_IsNull(ks)) {
      if (!cJSON_IsNumber(ks) ||
          (ks->valueint != 2048 && ks->valueint != 3072 && ks->valueint != 4096) ||
          ks->valuedouble != ks->valueint) {
        *err = "policy.key_props.key_size must be 2048, 3072 or 4096 for RSA.";
        goto fail;
      }
      key_size = ks->valueint;
    }
  } else {
    crv = pkey ? curve_of(pkey) : objs_json_str(ikp, "crv", &bad);
    if (!crv && !pkey && !bad)
      crv = "P-256";
    if (bad || !crv ||
        (strcmp(crv, "P-256") && strcmp(crv, "P-384") && strcmp(crv, "P-521") &&
         strcmp(crv, "P-256K"))) {
      *err = "policy.key_props.crv must be P-256, P-384, P-521 or P-256K.";
      goto fail;
    }
  }
  kp = cJSON_AddObjectToObject(out, "key_props");
  if (!kp || !cJSON_AddBoolToObject(kp, "exportable", exportable) ||
      !cJSON_AddStringToObject(kp, "kty", kty) ||
      (is_rsa && !cJSON_AddNumberToObject(kp, "key_size", key_size)) ||
      !cJSON_AddBoolToObject(kp, "reuse_key", reuse) ||
      (!is_rsa && !cJSON_AddStringToObject(kp, "crv", crv)))
    goto nomem;

  /* secret_props */
  ctype = objs_json_str(isp, "contentType", &bad);
  if (!ctype)
    ctype = CT_PKCS12;
  if (bad || (strcmp(ctype, CT_PKCS12) && strcmp(ctype, CT_PEM))) {
    *err = "policy.secret_props.contentType must be application/x-pkcs12 or "
           "application/x-pem-file.";
    goto fail;
  }
  sp = cJSON_AddObjectToObject(out, "secret_props");
  if (!sp || !cJSON_AddStringToObject(sp, "contentType", ctype))
    goto nomem;

  /* x509_props */
  if (leaf) {
    xp = x509_props_from_cert(leaf);
    if (!xp)
      goto nomem;
  } else {
    if (!ixp) {
      *err = "policy.x509_props with a subject is required.";
      goto fail;
    }
    if (x509_props_check(ixp, err))
      goto fail;
    xp = cJSON_CreateObject();
    if (!xp || add_dup(xp, "subject", cJSON_GetObjectItemCaseSensitive(ixp, "subject")))
      goto nomem;
    e = cJSON_GetObjectItemCaseSensitive(ixp, "sans");
    if (cJSON_IsObject(e) ? add_dup(xp, "sans", e) : !cJSON_AddObjectToObject(xp, "sans"))
      goto nomem;
    e = cJSON_GetObjectItemCaseSensitive(ixp, "ekus");
    if (cJSON_IsArray(e)) {
      if (add_dup(xp, "ekus", e))
        goto nomem;
    } else {
      arr = cJSON_AddArrayToObject(xp, "ekus");
      if (!arr || !cJSON_AddItemToArray(arr, cJSON_CreateString("1.3.6.1.5.5.7.3.1")) ||
          !cJSON_AddItemToArray(arr, cJSON_CreateString("1.3.6.1.5.5.7.3.2")))
        goto nomem;
    }
    e = cJSON_GetObjectItemCaseSensitive(ixp, "key_usage");
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) > 0) {
      if (add_dup(xp, "key_usage", e))
        goto nomem;
    } else {
      arr = cJSON_AddArrayToObject(xp, "key_usage");
      if (!arr || !cJSON_AddItemToArray(arr, cJSON_CreateString("digitalSignature")) ||
          (is_rsa && !cJSON_AddItemToArray(arr, cJSON_CreateString("keyEncipherment"))))
        goto nomem;
    }
    e = cJSON_GetObjectItemCaseSensitive(ixp, "validity_months");
    if (!cJSON_AddNumberToObject(xp, "validity_months", cJSON_IsNumber(e) ? e->valueint : 12))
      goto nomem;
  }
  e = cJSON_CreateObject();
  if (!e || !cJSON_AddFalseToObject((cJSON *)e, "ca") ||
      !cJSON_AddItemToObject(xp, "basic_constraints", (cJSON *)e)) {
    cJSON_Delete((cJSON *)e);
    goto nomem;
  }
  if (!cJSON_AddItemToObject(out, "x509_props", xp))
    goto nomem;
  xp = NULL;

  /* issuer and lifetime_actions */
  issuer = objs_json_str(iiss, "name", &bad);
  if (!issuer)
    issuer = leaf ? "Unknown" : "Self";
  if (bad) {
    *err = "policy.issuer.name must be a string.";
    goto fail;
  }
  if (!leaf && !objs_ieq(issuer, "Self") && !objs_ieq(issuer, "Unknown")) {
    *err = "policy.issuer.name: the emulator supports the issuers Self and Unknown only.";
    goto fail;
  }
  ila = cJSON_GetObjectItemCaseSensitive(in, "lifetime_actions");
  if (ila && !cJSON_IsNull(ila)) {
    if (!cJSON_IsArray(ila) || cJSON_GetArraySize(ila) > 10) {
      *err = "policy.lifetime_actions must be an array of at most 10 actions.";
      goto fail;
    }
    cJSON_ArrayForEach(e, ila)
    {
      if (!cJSON_IsObject(e)) {
        *err = "policy.lifetime_actions must hold objects {trigger, action}.";
        goto fail;
      }
    }
    if (add_dup(out, "lifetime_actions", ila))
      goto nomem;
  } else {
    cJSON *t, *a;

    la = cJSON_AddArrayToObject(out, "lifetime_actions");
    e = cJSON_CreateObject();
    if (!la || !e || !cJSON_AddItemToArray(la, (cJSON *)e)) {
      cJSON_Delete((cJSON *)e);
      goto nomem;
    }
    t = cJSON_AddObjectToObject((cJSON *)e, "trigger");
    a = cJSON_AddObjectToObject((cJSON *)e, "action");
    if (!t || !a || !cJSON_AddNumberToObject(t, "lifetime_percentage", 80) ||
        !cJSON_AddStringToObject(a, "action_type",
                                 objs_ieq(issuer, "Self") ? "AutoRenew" : "EmailContacts"))
      goto nomem;
  }
  iss = cJSON_AddObjectToObject(out, "issuer");
  if (!iss || !cJSON_AddStringToObject(iss, "name", issuer))
    goto nomem;
  e = cJSON_GetObjectItemCaseSensitive(iiss, "cty");
  if (cJSON_IsString(e) && add_dup(iss, "cty", e))
    goto nomem;
  e = cJSON_GetObjectItemCaseSensitive(iiss, "cert_transparency");
  if (cJSON_IsBool(e) && add_dup(iss, "cert_transparency", e))
    goto nomem;

  /* attributes */
  pattrs = prev ? cJSON_GetObjectItemCaseSensitive(prev, "attributes") : NULL;
  e = pattrs ? cJSON_GetObjectItemCaseSensitive(pattrs, "created") : NULL;
  if (cJSON_IsNumber(e))
    created = (int64_t)e->valuedouble;
  attrs = cJSON_AddObjectToObject(out, "attributes");
  if (!attrs || !cJSON_AddBoolToObject(attrs, "enabled", bool_member(iattrs, "enabled", 1, &bad)) ||
      !cJSON_AddNumberToObject(attrs, "created", (double)created) ||
      !cJSON_AddNumberToObject(attrs, "updated", (double)now))
    goto nomem;
  if (bad) {
    *err = "policy.attributes.enabled must be a boolean.";
    goto fail;
  }
  return out;
nomem:
  *err = NULL;
fail:
  cJSON_Delete(xp);
  cJSON_Delete(out);
  return NULL;
}

/* Members of the stored policy used to build a version. */
struct policy_facts {
  const char *kty, *crv, *ctype, *issuer;
  int key_size, exportable, reuse;
  const cJSON *x509_props;
};

static void policy_facts_get(const cJSON *policy, struct policy_facts *f)
{
  const cJSON *kp = cJSON_GetObjectItemCaseSensitive(policy, "key_props");
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(policy, "secret_props");
  const cJSON *iss = cJSON_GetObjectItemCaseSensitive(policy, "issuer");
  const cJSON *ks = cJSON_GetObjectItemCaseSensitive(kp, "key_size");
  const cJSON *crv = cJSON_GetObjectItemCaseSensitive(kp, "crv");

  f->kty = cJSON_GetObjectItemCaseSensitive(kp, "kty")->valuestring;
  f->crv = cJSON_IsString(crv) ? crv->valuestring : "";
  f->key_size = cJSON_IsNumber(ks) ? ks->valueint : 0;
  f->exportable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(kp, "exportable"));
  f->reuse = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(kp, "reuse_key"));
  f->ctype = cJSON_GetObjectItemCaseSensitive(sp, "contentType")->valuestring;
  f->issuer = cJSON_GetObjectItemCaseSensitive(iss, "name")->valuestring;
  f->x509_props = cJSON_GetObjectItemCaseSensitive(policy, "x509_props");
}

/* ---- issuing: key + secret for a version --------------------------------------------------- */

struct issue_err {
  unsigned status;
  const char *code, *inner;
  char msg[256];
};

static void issue_err_set(struct issue_err *e, unsigned status, const char *code, const char *inner,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void issue_err_set(struct issue_err *e, unsigned status, const char *code, const char *inner,
                          const char *fmt, ...)
{
  va_list ap;

  e->status = status;
  e->code = code;
  e->inner = inner;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
  va_end(ap);
}

static void issue_err_rc(struct issue_err *e, enum emu_rc rc, const char *what, const char *name)
{
  if (rc == EMU_E_BEING_DELETED)
    issue_err_set(e, 409, "Conflict", "ObjectIsBeingDeleted",
                  "%s %s is currently being deleted and cannot be re-created; retry later.", what,
                  name);
  else if (rc == EMU_E_DELETED_RECOVERABLE)
    issue_err_set(e, 409, "Conflict", "ObjectIsDeletedButRecoverable",
                  "%s %s is currently in a deleted but recoverable state, and its name cannot be "
                  "reused; in this state, it can only be recovered or purged.",
                  what, name);
  else if (rc == EMU_E_FULL)
    issue_err_set(e, 400, "BadParameter", NULL, "The emulator's %s store is full (%s).", what,
                  name);
  else
    issue_err_set(e, 500, "InternalError", NULL, "Could not store %s %s.", what, name);
}

/* Store key {name}/{version} (managed) and secret {name}/{version} (managed, kid) for an
 * issued certificate. Called without the vault lock. */
static int issue_key_and_secret(struct emu_vault *vault, const char *name, const char *version,
                                EVP_PKEY *pkey, X509 *leaf, STACK_OF(X509) * chain,
                                const cJSON *policy, const struct emu_attrs *attrs,
                                const cJSON *tags, struct issue_err *e)
{
  struct policy_facts f;
  struct emu_key_params kp;
  struct emu_secret_params sp;
  char *value = NULL, *kid = NULL;
  enum emu_rc rc;
  int ret = -1;

  policy_facts_get(policy, &f);
  value = !strcmp(f.ctype, CT_PEM) ? x509_pem_new(f.exportable ? pkey : NULL, leaf, chain)
                                   : x509_pkcs12_b64_new(f.exportable ? pkey : NULL, leaf, chain);
  kid = emu_obj_id_new(vault, "keys", name, version);
  if (!value || !kid) {
    issue_err_set(e, 500, "InternalError", NULL, "Could not build the secret of %s.", name);
    goto out;
  }
  memset(&kp, 0, sizeof(kp));
  kp.managed = 1;
  kp.tags = tags;
  kp.attrs.enabled = attrs->enabled;
  kp.attrs.nbf = x509_not_before(leaf);
  kp.attrs.exp = x509_not_after(leaf);
  /* The key attribute "exportable" belongs to secure key release (it needs a release policy);
   * key_props.exportable only decides whether the secret carries the private key. */
  kp.attrs.exportable = 0;
  kp.version = version;
  rc = emu_keys_add_pkey(vault, name, pkey, &kp, NULL);
  if (rc != EMU_OK) {
    issue_err_rc(e, rc, "Key", name);
    goto out;
  }
  memset(&sp, 0, sizeof(sp));
  sp.value = value;
  sp.content_type = f.ctype;
  sp.tags = tags;
  sp.attrs.enabled = attrs->enabled;
  sp.attrs.nbf = kp.attrs.nbf;
  sp.attrs.exp = kp.attrs.exp;
  sp.managed = 1;
  sp.kid = kid;
  sp.version = version;
  pthread_mutex_lock(&vault->lock);
  rc = secrets_add_inlock(vault, name, &sp, NULL);
  pthread_mutex_unlock(&vault->lock);
  if (rc != EMU_OK) {
    issue_err_rc(e, rc, "Secret", name);
    goto out;
  }
  ret = 0;
out:
  if (value) {
    OPENSSL_cleanse(value, strlen(value));
    free(value);
  }
  free(kid);
  return ret;
}

/* Complete the pending operation of `name` when it is due (Self issuer) or when `force_cert`
 * is given (merge: takes force_cert and force_chain). Returns 0, or -1 with *e set when a
 * merge failed. Called without the vault lock. */
static int op_complete(struct emu_vault *vault, const char *name, X509 *force_cert,
                       STACK_OF(X509) * force_chain, struct issue_err *e)
{
  struct cert *c;
  struct cop *op;
  EVP_PKEY *pkey = NULL;
  cJSON *policy = NULL, *tags = NULL;
  struct emu_attrs attrs;
  char rid[EMU_VERSION_LEN + 1], version[EMU_VERSION_LEN + 1];
  X509 *leaf = force_cert;
  STACK_OF(X509) *chain = force_chain;
  struct cversion *cv;
  struct issue_err local;
  int due, ret = 0, ok, had_tags = 0;
  const char *err = NULL;

  if (!e)
    e = &local;
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  op = c ? c->op : NULL;
  due = op && op->status == COP_IN_PROGRESS && !op->completing;
  if (due && !force_cert)
    due = objs_ieq(op->issuer, "Self") &&
          (op->polls > 0 || emu_now_ms() - op->created_ms >= SELF_COMPLETE_MS);
  if (due) {
    op->completing = 1;
    EVP_PKEY_up_ref(op->pkey);
    pkey = op->pkey;
    policy = cJSON_Duplicate(c->policy, 1);
    tags = op->tags ? cJSON_Duplicate(op->tags, 1) : NULL;
    had_tags = op->tags != NULL;
    attrs = op->attrs;
    memcpy(rid, op->request_id, sizeof(rid));
    memcpy(version, op->version, sizeof(version));
  }
  pthread_mutex_unlock(&vault->lock);
  if (!due) {
    if (force_cert) {
      issue_err_set(e, 400, "BadParameter", NULL,
                    "Certificate %s has no pending operation waiting for a merge.", name);
      ret = -1;
    }
    goto out;
  }

  if (!policy || (had_tags && !tags)) {
    issue_err_set(e, 500, "InternalError", NULL, "Out of memory completing %s.", name);
    ok = 0;
  } else if (!leaf) {
    leaf = x509_selfsigned_new(pkey, cJSON_GetObjectItemCaseSensitive(policy, "x509_props"), &err);
    chain = sk_X509_new_null();
    ok = leaf && chain;
    if (!ok)
      issue_err_set(e, 500, "InternalError", NULL, "Could not sign the certificate of %s.", name);
  } else {
    ok = x509_matches_key(leaf, pkey);
    if (!ok)
      issue_err_set(e, 400, "BadParameter", NULL,
                    "The certificate in x5c[0] does not match the pending key of %s.", name);
  }
  if (ok)
    ok = !issue_key_and_secret(vault, name, version, pkey, leaf, chain, policy, &attrs, tags, e);

  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  op = c ? c->op : NULL;
  if (op && !strcmp(op->request_id, rid)) {
    op->completing = 0;
    cv = cert_version_find(c, version);
    X509 *dup = ok && cv ? X509_dup(leaf) : NULL;

    if (dup && !cversion_issue(cv, dup, &attrs)) {
      op->status = COP_COMPLETED;
    } else if (!force_cert || ok) {
      /* Self issuance that failed, or a merge whose storing failed, ends the operation. */
      op->status = COP_FAILED;
      free(op->err_code);
      free(op->err_msg);
      op->err_code = strdup(ok ? "InternalError" : e->code);
      op->err_msg = strdup(ok ? "Could not record the issued certificate." : e->msg);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  ret = ok ? 0 : -1;
out:
  EVP_PKEY_free(pkey);
  cJSON_Delete(policy);
  cJSON_Delete(tags);
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  return ret;
}

/* Complete every due Self operation of the vault (before listings). */
static void complete_due_all(struct emu_vault *vault)
{
  const struct objs_store *st;
  char **names = NULL;
  size_t i, n = 0;

  pthread_mutex_lock(&vault->lock);
  st = vault->certs;
  if (st && st->n)
    names = calloc(st->n, sizeof(*names));
  for (i = 0; names && i < st->n; i++) {
    const struct cert *c = (const struct cert *)st->e[i];
    const struct cop *op = c->op;

    if (!c->e.deleted && op && op->status == COP_IN_PROGRESS && objs_ieq(op->issuer, "Self"))
      names[n++] = strdup(c->e.name);
  }
  pthread_mutex_unlock(&vault->lock);
  for (i = 0; i < n; i++) {
    if (names[i])
      op_complete(vault, names[i], NULL, NULL, NULL);
    free(names[i]);
  }
  free(names);
}

/* ---- request helpers --------------------------------------------------------------------------
 */

static int reply_issue_err(struct emu_resp *resp, const struct issue_err *e)
{
  return emu_resp_error(resp, e->status, e->code, e->inner, "%s", e->msg);
}

static int reply_state_conflict(struct emu_resp *resp, const struct cert *c)
{
  struct issue_err e;

  issue_err_rc(&e, objs_deleted_state(&c->e), "Certificate", c->e.name);
  return reply_issue_err(resp, &e);
}

static int reply_pending_not_found(struct emu_resp *resp, const char *name)
{
  return emu_resp_error(resp, 404, "PendingCertificateNotFound", NULL,
                        "Pending certificate not found: %s", name);
}

enum { PENDING_GET, PENDING_CANCEL, PENDING_DELETE };
enum { DELETED_GET, DELETED_PURGE, DELETED_RECOVER };

/* ---- operations --------------------------------------------------------------------------------
 */

static int op_create(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct emu_attrs attrs = {.enabled = 1};
  const cJSON *tags = NULL;
  cJSON *policy = NULL, *body = NULL;
  struct policy_facts f;
  struct cert *c;
  struct cversion *prev;
  struct cop *op = NULL;
  EVP_PKEY *pkey = NULL;
  unsigned char *csr = NULL;
  size_t csr_len = 0;
  const char *err = NULL;
  char prev_version[EMU_VERSION_LEN + 1] = "";
  char loc[512];
  int ret = -1, conflict = 0;

  if (!emu_name_valid(name))
    return emu_resp_bad_param(resp,
                              "The certificate name '%.200s' is invalid: use 1-127 "
                              "characters of 0-9, a-z, A-Z and '-'.",
                              name);
  if (!cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a JSON object with a 'policy'.");
  if (objs_parse_attrs_tags(req->body, &attrs, &tags, &err))
    return emu_resp_bad_param(resp, "%s", err);
  if (!cJSON_GetObjectItemCaseSensitive(req->body, "policy"))
    return emu_resp_bad_param(resp, "Property 'policy' is required.");

  pthread_mutex_lock(&vault->lock);
  c = cert_find_inlock(vault, name, NULL);
  if (c && c->e.deleted) {
    conflict = 1;
    ret = reply_state_conflict(resp, c);
  } else if (c && c->op && c->op->status == COP_IN_PROGRESS) {
    conflict = 1;
    ret = emu_resp_error(resp, 409, "Conflict", NULL,
                         "Certificate %s has a pending operation in progress; complete, cancel "
                         "or delete it first.",
                         c->e.name);
  } else {
    policy = policy_normalize(cJSON_GetObjectItemCaseSensitive(req->body, "policy"), NULL, NULL,
                              c ? c->policy : NULL, &err);
    prev = c ? cert_latest(c) : NULL;
    if (prev && prev->cert)
      memcpy(prev_version, prev->version, sizeof(prev_version));
  }
  pthread_mutex_unlock(&vault->lock);
  if (conflict)
    goto out;
  if (!policy) {
    ret = err ? emu_resp_bad_param(resp, "%s", err) : -1;
    goto out;
  }
  policy_facts_get(policy, &f);

  /* reuse_key: the new version keeps the key pair of the current one. */
  if (f.reuse && prev_version[0]) {
    struct emu_key_version *kv = emu_keys_get(vault, name, prev_version);
    EVP_PKEY *old = kv ? emu_key_version_pkey_peek(kv) : NULL;

    if (old && EVP_PKEY_up_ref(old))
      pkey = old;
    emu_key_version_unref(kv);
  }
  if (!pkey)
    pkey = x509_keygen_new(f.kty, f.key_size, f.crv, &err);
  if (!pkey) {
    ret = emu_resp_bad_param(resp, "%s", err);
    goto out;
  }
  if (x509_csr_der(pkey, f.x509_props, &csr, &csr_len, &err)) {
    ret = emu_resp_bad_param(resp, "%s", err);
    goto out;
  }
  op = calloc(1, sizeof(*op));
  if (!op)
    goto out;
  op->issuer = strdup(objs_ieq(f.issuer, "Self") ? "Self" : "Unknown");
  op->csr_b64 = emu_b64_encode(csr, csr_len);
  op->tags = tags ? cJSON_Duplicate(tags, 1) : NULL;
  if (!op->issuer || !op->csr_b64 || (tags && !op->tags))
    goto out;
  op->pkey = pkey;
  pkey = NULL;
  op->attrs = attrs;
  op->created_ms = emu_now_ms();
  op->status = COP_IN_PROGRESS;
  emu_version_new(op->request_id);
  emu_version_new(op->version);

  pthread_mutex_lock(&vault->lock);
  c = cert_find_inlock(vault, name, NULL);
  if (c && (c->e.deleted || (c->op && c->op->status == COP_IN_PROGRESS))) {
    ret = c->e.deleted
              ? reply_state_conflict(resp, c)
              : emu_resp_error(resp, 409, "Conflict", NULL,
                               "Certificate %s has a pending operation in progress.", c->e.name);
  } else if ((c = cert_get_or_add_inlock(vault, name)) != NULL &&
             (prev = cversion_add_inlock(c, op->version)) != NULL) {
    prev->attrs.enabled = 0;
    prev->tags = tags ? cJSON_Duplicate(tags, 1) : NULL;
    cJSON_Delete(c->policy);
    c->policy = policy;
    policy = NULL;
    cop_free(c->op);
    c->op = op;
    op = NULL;
    body = op_json_new(vault, c, c->op);
    snprintf(loc, sizeof(loc), "%s/certificates/%s/pending?api-version=%s&request_id=%s",
             vault->base_url, c->e.name, req->api_version, c->op->request_id);
    ret = 0;
  } else {
    ret = emu_resp_bad_param(resp, "The emulator's certificate store is full.");
  }
  pthread_mutex_unlock(&vault->lock);
  if (ret || !body) {
    ret = ret ? ret : -1;
    goto out;
  }
  /* The service sends Retry-After: 10; one second keeps pollers that honour it fast. */
  ret = emu_resp_json(resp, 202, body);
  body = NULL;
  if (!ret)
    ret = emu_resp_header(resp, "Location", loc) || emu_resp_header(resp, "Retry-After", "1");
out:
  cJSON_Delete(body);
  cJSON_Delete(policy);
  OPENSSL_free(csr);
  EVP_PKEY_free(pkey);
  cop_free(op);
  return ret;
}

/* Add a fully issued version (import, seed). Takes leaf; chain is borrowed. */
static int add_issued(struct emu_vault *vault, const char *name, cJSON **policy, EVP_PKEY *pkey,
                      X509 *leaf, STACK_OF(X509) * chain, const struct emu_attrs *attrs,
                      const cJSON *tags, cJSON **bundle, struct issue_err *e)
{
  char version[EMU_VERSION_LEN + 1];
  struct cert *c;
  struct cversion *cv;
  int ret = -1;

  pthread_mutex_lock(&vault->lock);
  c = cert_find_inlock(vault, name, NULL);
  if (c && c->e.deleted) {
    issue_err_rc(e, objs_deleted_state(&c->e), "Certificate", c->e.name);
    pthread_mutex_unlock(&vault->lock);
    goto out;
  }
  pthread_mutex_unlock(&vault->lock);
  emu_version_new(version);
  if (issue_key_and_secret(vault, name, version, pkey, leaf, chain, *policy, attrs, tags, e))
    goto out;
  pthread_mutex_lock(&vault->lock);
  c = cert_get_or_add_inlock(vault, name);
  cv = c && !c->e.deleted ? cversion_add_inlock(c, version) : NULL;
  if (cv) {
    cv->tags = tags ? cJSON_Duplicate(tags, 1) : NULL;
    if (!cversion_issue(cv, leaf, attrs)) {
      cJSON_Delete(c->policy);
      c->policy = *policy;
      *policy = NULL;
      if (bundle)
        *bundle = bundle_new(vault, c, cv);
      ret = 0;
    }
    leaf = NULL;
  }
  pthread_mutex_unlock(&vault->lock);
  if (ret)
    issue_err_set(e, 500, "InternalError", NULL, "Could not record certificate %s.", name);
out:
  X509_free(leaf);
  return ret;
}

static int op_import(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct emu_attrs attrs = {.enabled = 1};
  const cJSON *tags = NULL, *in_policy, *sp;
  cJSON *policy = NULL, *bundle = NULL;
  const char *value, *pwd, *ctype = NULL, *err = NULL;
  EVP_PKEY *pkey = NULL;
  X509 *leaf = NULL;
  STACK_OF(X509) *chain = NULL;
  struct issue_err e;
  int bad = 0, is_pem, ret = -1;

  if (!emu_name_valid(name))
    return emu_resp_bad_param(resp,
                              "The certificate name '%.200s' is invalid: use 1-127 "
                              "characters of 0-9, a-z, A-Z and '-'.",
                              name);
  if (!cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a JSON object with a 'value'.");
  value = objs_json_str(req->body, "value", &bad);
  pwd = objs_json_str(req->body, "pwd", &bad);
  if (bad || !value)
    return emu_resp_bad_param(resp, "Property 'value' is required and 'value'/'pwd' must be "
                                    "strings.");
  if (objs_parse_attrs_tags(req->body, &attrs, &tags, &err))
    return emu_resp_bad_param(resp, "%s", err);
  in_policy = cJSON_GetObjectItemCaseSensitive(req->body, "policy");
  if (in_policy && cJSON_IsNull(in_policy))
    in_policy = NULL;
  if (in_policy && !cJSON_IsObject(in_policy))
    return emu_resp_bad_param(resp, "policy must be an object.");
  sp = in_policy ? cJSON_GetObjectItemCaseSensitive(in_policy, "secret_props") : NULL;
  if (cJSON_IsObject(sp))
    ctype = objs_json_str(sp, "contentType", &bad);
  /* The policy's contentType names the format of `value`; without one, PEM is recognised by
   * its armour and anything else must be a base64 PKCS#12. */
  is_pem = ctype ? objs_ieq(ctype, CT_PEM) : !strncmp(value, "-----BEGIN", 10);
  if (x509_parse_import(value, pwd, is_pem, &pkey, &leaf, &chain, &err)) {
    ret = emu_resp_bad_param(resp, "%s", err);
    goto out;
  }
  if (!EVP_PKEY_is_a(pkey, "RSA") && !EVP_PKEY_is_a(pkey, "EC")) {
    ret = emu_resp_bad_param(resp, "Only RSA and EC certificate keys can be imported.");
    goto out;
  }
  policy = policy_normalize(in_policy, pkey, leaf, NULL, &err);
  if (!policy) {
    ret = err ? emu_resp_bad_param(resp, "%s", err) : -1;
    goto out;
  }
  /* Without a policy contentType the stored secret keeps the imported format. */
  if (!ctype && is_pem) {
    cJSON *psp = cJSON_GetObjectItemCaseSensitive(policy, "secret_props");

    if (!cJSON_ReplaceItemInObjectCaseSensitive(psp, "contentType", cJSON_CreateString(CT_PEM)))
      goto out;
  }
  if (add_issued(vault, name, &policy, pkey, leaf, chain, &attrs, tags, &bundle, &e)) {
    leaf = NULL;
    ret = reply_issue_err(resp, &e);
    goto out;
  }
  leaf = NULL;
  if (!bundle)
    goto out;
  ret = emu_resp_json(resp, 200, bundle);
  bundle = NULL;
out:
  cJSON_Delete(bundle);
  cJSON_Delete(policy);
  EVP_PKEY_free(pkey);
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  return ret;
}

static int op_get(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  const char *version = objs_req_version(req);
  struct emu_vault *vault = req->vault;
  struct cert *c;
  struct cversion *cv;
  cJSON *bundle = NULL;
  int found = 0;

  op_complete(vault, name, NULL, NULL, NULL);
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  cv = c ? cert_version_find(c, version) : NULL;
  if (cv) {
    found = 1;
    bundle = bundle_new(vault, c, cv);
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return objs_reply_not_found(resp, "Certificate", name, version);
  return objs_reply_json(resp, 200, bundle);
}

static int op_update(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  const char *version = objs_req_version(req);
  struct emu_vault *vault = req->vault;
  struct cert *c;
  struct cversion *cv;
  struct emu_attrs attrs;
  const cJSON *tags = NULL, *in_policy;
  cJSON *bundle = NULL, *policy = NULL, *tags_dup = NULL;
  const char *err = NULL;
  char key_version[EMU_VERSION_LEN + 1] = "";
  struct emu_attrs key_attrs;
  int found = 0, ret = -1;

  if (!cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a JSON object.");
  in_policy = cJSON_GetObjectItemCaseSensitive(req->body, "policy");
  if (in_policy && cJSON_IsNull(in_policy))
    in_policy = NULL;
  op_complete(vault, name, NULL, NULL, NULL);
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  cv = c ? cert_version_find(c, version) : NULL;
  if (cv) {
    found = 1;
    attrs = cv->attrs;
    if (objs_parse_attrs_tags(req->body, &attrs, &tags, &err)) {
      ret = emu_resp_bad_param(resp, "%s", err);
      goto unlock;
    }
    if (in_policy) {
      policy = policy_normalize(in_policy, NULL, NULL, c->policy, &err);
      if (!policy) {
        ret = err ? emu_resp_bad_param(resp, "%s", err) : -1;
        goto unlock;
      }
    }
    if (tags && !(tags_dup = cJSON_Duplicate(tags, 1)))
      goto unlock;
    /* nbf/exp of a certificate are its X.509 validity; only enabled and tags change. */
    cv->attrs.enabled = attrs.enabled;
    cv->attrs.updated = emu_now();
    if (tags_dup) {
      cJSON_Delete(cv->tags);
      cv->tags = tags_dup;
      tags_dup = NULL;
    }
    if (policy) {
      cJSON_Delete(c->policy);
      c->policy = policy;
      policy = NULL;
    }
    if (cv->cert) {
      secrets_update_inlock(vault, c->e.name, cv->version, &cv->attrs, cv->tags);
      memcpy(key_version, cv->version, sizeof(key_version));
      key_attrs = cv->attrs;
    }
    bundle = bundle_new(vault, c, cv);
    ret = bundle ? 0 : -1;
  }
unlock:
  pthread_mutex_unlock(&vault->lock);
  cJSON_Delete(policy);
  cJSON_Delete(tags_dup);
  if (!found)
    return objs_reply_not_found(resp, "Certificate", name, version);
  /* The managed key follows its certificate (the key store takes the lock itself). */
  if (!ret && key_version[0])
    (void)emu_keys_update_attrs(vault, name, key_version, &key_attrs, tags);
  if (ret || !bundle) {
    cJSON_Delete(bundle);
    return ret;
  }
  return emu_resp_json(resp, 200, bundle);
}

/* Sections of a policy update replace the members they name; absent sections stay. Returns the
 * merged policy to normalise (caller deletes) or NULL on out of memory. */
static cJSON *policy_merge_new(const cJSON *stored, const cJSON *update)
{
  cJSON *merged = cJSON_Duplicate(stored, 1), *cur, *d = NULL;
  const cJSON *e, *m;

  if (!merged)
    return NULL;
  cJSON_ArrayForEach(e, update)
  {
    if (!strcmp(e->string, "id"))
      continue;
    cur = cJSON_GetObjectItemCaseSensitive(merged, e->string);
    if (cJSON_IsObject(e) && cJSON_IsObject(cur)) {
      cJSON_ArrayForEach(m, e)
      {
        d = cJSON_Duplicate(m, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(cur, m->string);
        if (!d || !cJSON_AddItemToObject(cur, m->string, d))
          goto fail;
      }
    } else {
      d = cJSON_Duplicate(e, 1);
      cJSON_DeleteItemFromObjectCaseSensitive(merged, e->string);
      if (!d || !cJSON_AddItemToObject(merged, e->string, d))
        goto fail;
    }
  }
  return merged;
fail:
  cJSON_Delete(d);
  cJSON_Delete(merged);
  return NULL;
}

static int op_policy(struct emu_req *req, struct emu_resp *resp, int update)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct cert *c;
  cJSON *merged = NULL, *policy = NULL, *out = NULL;
  const char *err = NULL;
  int found = 0;

  if (update && !cJSON_IsObject(req->body))
    return emu_resp_bad_param(resp, "The request body must be a policy object.");
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  if (c && c->policy) {
    found = 1;
    if (update) {
      merged = policy_merge_new(c->policy, req->body);
      policy = merged ? policy_normalize(merged, NULL, NULL, c->policy, &err) : NULL;
      if (policy) {
        cJSON_Delete(c->policy);
        c->policy = policy;
      }
    }
    if (!update || policy)
      out = policy_json_new(vault, c);
  }
  pthread_mutex_unlock(&vault->lock);
  cJSON_Delete(merged);
  if (!found)
    return emu_resp_not_found(resp, "Certificate", name);
  if (update && !policy && err)
    return emu_resp_bad_param(resp, "%s", err);
  return objs_reply_json(resp, 200, out);
}

/* GET, PATCH (cancel) or DELETE of /certificates/{n}/pending (PENDING_*). */
static int op_pending(struct emu_req *req, struct emu_resp *resp, int action)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct cert *c;
  cJSON *out = NULL;
  const cJSON *cancel = NULL;
  int found = 0;

  if (action == PENDING_CANCEL) {
    if (!cJSON_IsObject(req->body) || !cJSON_IsBool(cancel = cJSON_GetObjectItemCaseSensitive(
                                                        req->body, "cancellation_requested")))
      return emu_resp_bad_param(resp, "The request body must be {\"cancellation_requested\": "
                                      "true|false}.");
  }
  if (action == PENDING_GET) {
    pthread_mutex_lock(&vault->lock);
    c = cert_live_inlock(vault, name);
    if (c && c->op)
      c->op->polls++;
    pthread_mutex_unlock(&vault->lock);
    op_complete(vault, name, NULL, NULL, NULL);
  }
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  if (c && c->op) {
    found = 1;
    if (action == PENDING_CANCEL && cJSON_IsTrue(cancel) && c->op->status == COP_IN_PROGRESS &&
        !c->op->completing) {
      c->op->cancellation_requested = 1;
      c->op->status = COP_CANCELLED;
    }
    out = op_json_new(vault, c, c->op);
    if (action == PENDING_DELETE) {
      cop_free(c->op);
      c->op = NULL;
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return reply_pending_not_found(resp, name);
  return objs_reply_json(resp, 200, out);
}

static int op_merge(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  const cJSON *x5c, *e;
  X509 *leaf = NULL, *cert;
  STACK_OF(X509) *chain = NULL;
  struct issue_err ie;
  const char *err = NULL;
  int ret = -1, i = 0, found;

  if (!cJSON_IsObject(req->body) ||
      !cJSON_IsArray(x5c = cJSON_GetObjectItemCaseSensitive(req->body, "x5c")) ||
      cJSON_GetArraySize(x5c) < 1 || cJSON_GetArraySize(x5c) > 10)
    return emu_resp_bad_param(resp, "Property 'x5c' is required: an array of 1 to 10 base64 DER "
                                    "certificates, leaf first.");
  pthread_mutex_lock(&vault->lock);
  found = cert_live_inlock(vault, name) && cert_live_inlock(vault, name)->op;
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return reply_pending_not_found(resp, name);
  chain = sk_X509_new_null();
  if (!chain)
    goto out;
  cJSON_ArrayForEach(e, x5c)
  {
    if (!cJSON_IsString(e) || !(cert = x509_from_b64_der(e->valuestring, &err))) {
      ret = emu_resp_bad_param(resp, "%s", err ? err : "x5c must hold strings.");
      goto out;
    }
    if (i++ == 0) {
      leaf = cert;
    } else if (!sk_X509_push(chain, cert)) {
      X509_free(cert);
      goto out;
    }
  }
  ret = op_complete(vault, name, leaf, chain, &ie);
  leaf = NULL;
  chain = NULL;
  if (ret) {
    ret = reply_issue_err(resp, &ie);
    goto out;
  }
  {
    struct cert *c;
    cJSON *bundle = NULL;

    pthread_mutex_lock(&vault->lock);
    c = cert_live_inlock(vault, name);
    if (c && c->op)
      bundle = bundle_new(vault, c, cert_version_find(c, c->op->version));
    pthread_mutex_unlock(&vault->lock);
    ret = objs_reply_json(resp, 201, bundle);
  }
out:
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  return ret;
}

static int has_issued(const struct cert *c)
{
  size_t i;

  for (i = 0; i < c->nv; i++) {
    if (c->v[i]->cert)
      return 1;
  }
  return 0;
}

static int op_delete(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct cert *c;
  cJSON *bundle = NULL;
  int found = 0, issued = 0;

  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  if (c) {
    found = 1;
    issued = has_issued(c);
    c->e.deleted = 1;
    emu_deleted_init(&c->e.del);
    if (issued)
      secrets_delete_inlock(vault, c->e.name);
    bundle = deleted_bundle_new(vault, c);
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_not_found(resp, "Certificate", name);
  /* The managed key goes with its certificate; absent only when nothing was issued. */
  if (issued)
    (void)emu_keys_delete(vault, name, NULL);
  return objs_reply_json(resp, 200, bundle);
}

/* The latest version of a certificate in the listings; a pending one only with includePending. */
static int list_item(struct emu_vault *vault, const struct objs_entry *e, const void *ctx,
                     cJSON **item)
{
  const struct cert *c = (const struct cert *)e;
  const struct cversion *cv = cert_latest(c);
  const int *pending = ctx;

  if (!cv || (!cv->cert && !*pending))
    return 0;
  *item = item_new(vault, c, cv, 0);
  return *item ? 0 : -1;
}

static int op_list(struct emu_req *req, struct emu_resp *resp, int deleted)
{
  const char *ip = emu_req_query(req, "includePending");
  int pending = ip && objs_ieq(ip, "true");

  if (ip && !objs_ieq(ip, "true") && !objs_ieq(ip, "false"))
    return emu_resp_bad_param(resp, "includePending must be true or false.");
  if (!deleted)
    complete_due_all(req->vault);
  return objs_list_reply(req, resp, &req->vault->certs, deleted, "deletedcertificates", list_item,
                         &pending);
}

/* The issued versions (placeholders of pending operations are not listed). */
static int versions_add(struct emu_vault *vault, const struct objs_entry *e, cJSON *items)
{
  const struct cert *c = (const struct cert *)e;
  size_t i;

  for (i = 0; i < c->nv; i++) {
    if (c->v[i]->cert && objs_items_add(items, item_new(vault, c, c->v[i], 1)))
      return -1;
  }
  return 0;
}

static int op_versions(struct emu_req *req, struct emu_resp *resp, int arg)
{
  op_complete(req->vault, req->seg[0], NULL, NULL, NULL);
  return objs_versions_reply(req, resp, &req->vault->certs, "Certificate", versions_add);
}

/* Get, purge or recover (DELETED_*) a deleted certificate, with its managed key and secret. */
static int op_deleted(struct emu_req *req, struct emu_resp *resp, int action)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct cert *c;
  cJSON *bundle = NULL;
  size_t idx = 0;
  int found = 0, issued = 0;

  pthread_mutex_lock(&vault->lock);
  c = cert_find_inlock(vault, name, &idx);
  if (c && c->e.deleted && emu_deleted_visible(&c->e.del)) {
    found = 1;
    issued = has_issued(c);
    if (action == DELETED_GET) {
      bundle = deleted_bundle_new(vault, c);
    } else if (action == DELETED_RECOVER) {
      c->e.deleted = 0;
      if (issued)
        secrets_recover_inlock(vault, c->e.name);
      bundle = bundle_new(vault, c, cert_latest(c));
    } else {
      if (issued)
        secrets_purge_inlock(vault, c->e.name);
      objs_remove_inlock(vault->certs, idx);
      cert_free(&c->e);
    }
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_deleted_not_found(resp, "Certificate", name);
  if (issued && action == DELETED_RECOVER)
    (void)emu_keys_recover(vault, name, NULL);
  if (issued && action == DELETED_PURGE)
    (void)emu_keys_purge(vault, name);
  if (action == DELETED_PURGE)
    return emu_resp_empty(resp, 204);
  return objs_reply_json(resp, 200, bundle);
}

/* ---- backup / restore ------------------------------------------------------------------------ */

/* Backup document (sealed by objs_blob_seal_new): name, policy and each issued version with its
 * certificate, private key (DER), secret value and content type, enabled flag and tags. */
static cJSON *backup_doc_new_inlock(struct emu_vault *vault, const struct cert *c)
{
  cJSON *doc = cJSON_CreateObject(), *arr, *v;
  const char *value, *ctype;
  size_t i;

  if (!doc || !cJSON_AddStringToObject(doc, "name", c->e.name) || add_dup(doc, "policy", c->policy))
    goto fail;
  arr = cJSON_AddArrayToObject(doc, "versions");
  if (!arr)
    goto fail;
  for (i = 0; i < c->nv; i++) {
    const struct cversion *cv = c->v[i];

    if (!cv->cert)
      continue;
    if (secrets_peek_inlock(vault, c->e.name, cv->version, &value, &ctype) != EMU_OK)
      goto fail;
    v = cJSON_CreateObject();
    if (!v || !cJSON_AddItemToArray(arr, v)) {
      cJSON_Delete(v);
      goto fail;
    }
    if (!cJSON_AddStringToObject(v, "version", cv->version) ||
        !cJSON_AddStringToObject(v, "cer", cv->cer_b64) ||
        !cJSON_AddBoolToObject(v, "enabled", cv->attrs.enabled) ||
        objs_json_add_tags(v, cv->tags) || !cJSON_AddStringToObject(v, "value", value) ||
        !cJSON_AddStringToObject(v, "contentType", ctype ? ctype : CT_PKCS12))
      goto fail;
  }
  return doc;
fail:
  cJSON_Delete(doc);
  return NULL;
}

/* Add "key" (base64 DER private key from the key store) to each version of the document. */
static int backup_add_keys(struct emu_vault *vault, const char *name, cJSON *doc)
{
  cJSON *v;
  const cJSON *ver;
  struct emu_key_version *kv;
  unsigned char *der = NULL;
  char *b64 = NULL;
  int len, rc = 0;

  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "versions"))
  {
    ver = cJSON_GetObjectItemCaseSensitive(v, "version");
    kv = emu_keys_get(vault, name, ver->valuestring);
    len = kv && emu_key_version_pkey_peek(kv) ? i2d_PrivateKey(emu_key_version_pkey_peek(kv), &der)
                                              : -1;
    emu_key_version_unref(kv);
    b64 = len > 0 ? emu_b64_encode(der, (size_t)len) : NULL;
    if (der)
      OPENSSL_cleanse(der, (size_t)len);
    OPENSSL_free(der);
    der = NULL;
    if (!b64 || !cJSON_AddStringToObject(v, "key", b64))
      rc = -1;
    objs_text_free(b64);
    if (rc)
      break;
  }
  return rc;
}

static int op_backup(struct emu_req *req, struct emu_resp *resp, int arg)
{
  const char *name = req->seg[0];
  struct emu_vault *vault = req->vault;
  struct cert *c;
  cJSON *doc = NULL;
  int found = 0;

  op_complete(vault, name, NULL, NULL, NULL);
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  if (c && has_issued(c)) {
    found = 1;
    doc = backup_doc_new_inlock(vault, c);
  }
  pthread_mutex_unlock(&vault->lock);
  if (!found)
    return emu_resp_not_found(resp, "Certificate", name);
  if (!doc || backup_add_keys(vault, name, doc)) {
    objs_backup_doc_free(doc);
    return emu_resp_error(resp, 500, "InternalError", NULL,
                          "Certificate %s could not be backed up (key or secret missing).", name);
  }
  return objs_backup_reply(resp, doc, "Certificate", name);
}

/* Decoded material of one backed-up version. */
struct restored {
  const char *version, *value, *ctype;
  const cJSON *tags;
  int enabled;
  EVP_PKEY *pkey;
  X509 *cert;
};

static int restore_decode(const cJSON *v, struct restored *r)
{
  const char *key, *err = NULL;
  unsigned char *der = NULL;
  const unsigned char *p;
  size_t len = 0;
  int bad = 0;

  r->version = objs_json_str(v, "version", &bad);
  r->value = objs_json_str(v, "value", &bad);
  r->ctype = objs_json_str(v, "contentType", &bad);
  key = objs_json_str(v, "key", &bad);
  r->tags = cJSON_GetObjectItemCaseSensitive(v, "tags");
  r->enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "enabled"));
  if (bad || !r->version || !r->value || !r->ctype || !key ||
      !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "cer")))
    return -1;
  r->cert = x509_from_b64_der(cJSON_GetObjectItemCaseSensitive(v, "cer")->valuestring, &err);
  if (!r->cert || emu_b64_decode(key, &der, &len))
    return -1;
  p = der;
  r->pkey = d2i_AutoPrivateKey(NULL, &p, (long)len);
  OPENSSL_cleanse(der, len);
  free(der);
  return r->pkey && x509_matches_key(r->cert, r->pkey) ? 0 : -1;
}

static int op_restore(struct emu_req *req, struct emu_resp *resp, int arg)
{
  struct emu_vault *vault = req->vault;
  const cJSON *versions, *v, *policy;
  char name[EMU_NAME_MAX + 1], *kid = NULL;
  cJSON *doc, *bundle = NULL, *pol = NULL;
  struct restored *rs = NULL;
  struct issue_err e;
  struct emu_key_params kp;
  struct emu_secret_params sp;
  struct cert *c;
  struct cversion *cv;
  size_t n = 0, i;
  int ret = -1, exists;
  enum emu_rc rc;

  doc = objs_restore_doc_new(req, resp, name, &ret);
  if (!doc)
    return ret;
  ret = -1;
  versions = cJSON_GetObjectItemCaseSensitive(doc, "versions");
  policy = cJSON_GetObjectItemCaseSensitive(doc, "policy");
  if (!cJSON_IsObject(policy)) {
    ret = emu_resp_bad_param(resp, "The backup blob does not hold a certificate.");
    goto out;
  }
  rs = calloc((size_t)cJSON_GetArraySize(versions), sizeof(*rs));
  if (!rs)
    goto out;
  /* Decode everything before storing anything. */
  cJSON_ArrayForEach(v, versions)
  {
    if (restore_decode(v, &rs[n++])) {
      ret = emu_resp_bad_param(resp, "The backup blob holds an invalid certificate version.");
      goto out;
    }
  }
  pthread_mutex_lock(&vault->lock);
  c = cert_find_inlock(vault, name, NULL);
  exists = c != NULL;
  if (c)
    ret = c->e.deleted ? reply_state_conflict(resp, c)
                       : emu_resp_error(resp, 409, "Conflict", NULL,
                                        "Certificate %s already exists; a backup restores only an "
                                        "absent name.",
                                        name);
  pthread_mutex_unlock(&vault->lock);
  if (exists)
    goto out;
  for (i = 0; i < n; i++) {
    memset(&kp, 0, sizeof(kp));
    kp.managed = 1;
    kp.tags = rs[i].tags;
    kp.attrs.enabled = rs[i].enabled;
    kp.attrs.nbf = x509_not_before(rs[i].cert);
    kp.attrs.exp = x509_not_after(rs[i].cert);
    kp.version = rs[i].version;
    rc = emu_keys_add_pkey(vault, name, rs[i].pkey, &kp, NULL);
    kid = rc == EMU_OK ? emu_obj_id_new(vault, "keys", name, rs[i].version) : NULL;
    if (rc != EMU_OK || !kid) {
      issue_err_rc(&e, rc, "Key", name);
      ret = reply_issue_err(resp, &e);
      goto out;
    }
    memset(&sp, 0, sizeof(sp));
    sp.value = rs[i].value;
    sp.content_type = rs[i].ctype;
    sp.tags = rs[i].tags;
    sp.attrs = kp.attrs;
    sp.managed = 1;
    sp.kid = kid;
    sp.version = rs[i].version;
    pthread_mutex_lock(&vault->lock);
    rc = secrets_add_inlock(vault, name, &sp, NULL);
    c = rc == EMU_OK ? cert_get_or_add_inlock(vault, name) : NULL;
    cv = c ? cversion_add_inlock(c, rs[i].version) : NULL;
    if (cv) {
      struct emu_attrs attrs = {.enabled = rs[i].enabled};

      cv->tags = rs[i].tags ? cJSON_Duplicate(rs[i].tags, 1) : NULL;
      if (cversion_issue(cv, rs[i].cert, &attrs))
        cv = NULL;
      rs[i].cert = NULL;
    }
    pthread_mutex_unlock(&vault->lock);
    free(kid);
    kid = NULL;
    if (!cv) {
      issue_err_rc(&e, rc == EMU_OK ? EMU_E_NOMEM : rc, "Secret", name);
      ret = reply_issue_err(resp, &e);
      goto out;
    }
  }
  pol = cJSON_Duplicate(policy, 1);
  pthread_mutex_lock(&vault->lock);
  c = cert_live_inlock(vault, name);
  if (c && pol) {
    cJSON_Delete(c->policy);
    c->policy = pol;
    pol = NULL;
    bundle = bundle_new(vault, c, cert_latest(c));
  }
  pthread_mutex_unlock(&vault->lock);
  if (bundle) {
    ret = emu_resp_json(resp, 200, bundle);
    bundle = NULL;
  }
out:
  for (i = 0; i < n; i++) {
    EVP_PKEY_free(rs[i].pkey);
    X509_free(rs[i].cert);
  }
  free(rs);
  free(kid);
  cJSON_Delete(pol);
  cJSON_Delete(bundle);
  objs_backup_doc_free(doc);
  return ret;
}

static const struct objs_route cert_routes[] = {
    {"GET", 0, NULL, NULL, "certificates.list", op_list, 0},
    {"GET", 1, NULL, NULL, "certificates.get", op_get, 0},
    {"PATCH", 1, NULL, NULL, "certificates.update", op_update, 0},
    {"DELETE", 1, NULL, NULL, "certificates.delete", op_delete, 0},
    {"POST", 1, NULL, NULL, "certificates.restore", op_restore, 0},
    {"POST", 2, "create", NULL, "certificates.create", op_create, 0},
    {"POST", 2, "backup", NULL, "certificates.backup", op_backup, 0},
    {"POST", 2, "import", NULL, "certificates.import", op_import, 0},
    {"GET", 2, "versions", NULL, "certificates.versions", op_versions, 0},
    {"GET", 2, "policy", NULL, "certificates.policy_get", op_policy, 0},
    {"PATCH", 2, "policy", NULL, "certificates.policy_update", op_policy, 1},
    {"GET", 2, "pending", NULL, "certificates.pending", op_pending, PENDING_GET},
    {"PATCH", 2, "pending", NULL, "certificates.pending_update", op_pending, PENDING_CANCEL},
    {"DELETE", 2, "pending", NULL, "certificates.pending_delete", op_pending, PENDING_DELETE},
    {"GET", 2, NULL, NULL, "certificates.get", op_get, 0},
    {"PATCH", 2, NULL, NULL, "certificates.update", op_update, 0},
    {"POST", 3, "pending", "merge", "certificates.merge", op_merge, 0},
};

static const struct objs_route deleted_cert_routes[] = {
    {"GET", 0, NULL, NULL, "certificates.deleted_list", op_list, 1},
    {"GET", 1, NULL, NULL, "certificates.deleted_get", op_deleted, DELETED_GET},
    {"DELETE", 1, NULL, NULL, "certificates.purge", op_deleted, DELETED_PURGE},
    {"POST", 2, "recover", NULL, "certificates.recover", op_deleted, DELETED_RECOVER},
};

int emu_certs_handle(struct emu_req *req, struct emu_resp *resp)
{
  if (!strcmp(req->collection, "deletedcertificates"))
    return objs_dispatch(req, resp, deleted_cert_routes,
                         sizeof(deleted_cert_routes) / sizeof(deleted_cert_routes[0]));
  /* Issuers and contacts share the collection; the emulator has neither. */
  if (req->nseg > 0 && (objs_ieq(req->seg[0], "issuers") || objs_ieq(req->seg[0], "contacts")))
    return emu_resp_error(resp, 404, "NotFound", NULL,
                          "Certificate %s are not implemented by the emulator.", req->seg[0]);
  return objs_dispatch(req, resp, cert_routes, sizeof(cert_routes) / sizeof(cert_routes[0]));
}

/* ---- seeding ------------------------------------------------------------------------------------
 */

/* {"vault":"demo","name":"web","subject":"CN=web","kty":"RSA","key_size":2048,"crv":"P-256",
 *  "dns_names":["web.example"],"validity_months":12,"contentType":"application/x-pem-file",
 *  "exportable":true,"tags":{}} or {"name":..,"policy":{...}}: issued at once, no operation. */
int certs_seed(struct emu_vault *vault, const cJSON *item)
{
  const cJSON *in_policy = cJSON_GetObjectItemCaseSensitive(item, "policy"), *tags, *e;
  cJSON *built = NULL, *policy = NULL, *kp, *xp, *sp;
  struct emu_attrs attrs = {.enabled = 1};
  struct policy_facts f;
  struct issue_err ie;
  EVP_PKEY *pkey = NULL;
  X509 *leaf = NULL;
  STACK_OF(X509) *chain = NULL;
  const char *name, *err = NULL;
  int bad = 0, ret = -1;

  name = objs_json_str(item, "name", &bad);
  if (bad || !name || !emu_name_valid(name)) {
    fprintf(stderr, "akv-emulator: seed certificate: need a valid \"name\"\n");
    return -1;
  }
  tags = cJSON_GetObjectItemCaseSensitive(item, "tags");
  if (tags && emu_tags_valid(tags, &err)) {
    fprintf(stderr, "akv-emulator: seed certificate %s: %s\n", name, err);
    return -1;
  }
  if (!in_policy) {
    /* Shorthand members map onto a policy. */
    built = cJSON_CreateObject();
    kp = cJSON_AddObjectToObject(built, "key_props");
    xp = cJSON_AddObjectToObject(built, "x509_props");
    sp = cJSON_AddObjectToObject(built, "secret_props");
    if (!kp || !xp || !sp)
      goto nomem;
    e = cJSON_GetObjectItemCaseSensitive(item, "subject");
    if (e ? add_dup(xp, "subject", e) : !cJSON_AddStringToObject(xp, "subject", "CN=emulator"))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "kty")) && add_dup(kp, "kty", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "key_size")) && add_dup(kp, "key_size", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "crv")) && add_dup(kp, "crv", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "exportable")) && add_dup(kp, "exportable", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "validity_months")) &&
        add_dup(xp, "validity_months", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "contentType")) &&
        add_dup(sp, "contentType", e))
      goto nomem;
    if ((e = cJSON_GetObjectItemCaseSensitive(item, "dns_names"))) {
      cJSON *sans = cJSON_AddObjectToObject(xp, "sans");

      if (!sans || add_dup(sans, "dns_names", e))
        goto nomem;
    }
    in_policy = built;
  }
  policy = policy_normalize(in_policy, NULL, NULL, NULL, &err);
  if (!policy) {
    fprintf(stderr, "akv-emulator: seed certificate %s: %s\n", name, err ? err : "out of memory");
    goto out;
  }
  policy_facts_get(policy, &f);
  if (!objs_ieq(f.issuer, "Self")) {
    fprintf(stderr, "akv-emulator: seed certificate %s: only issuer Self can be seeded\n", name);
    goto out;
  }
  pkey = x509_keygen_new(f.kty, f.key_size, f.crv, &err);
  leaf = pkey ? x509_selfsigned_new(pkey, f.x509_props, &err) : NULL;
  chain = sk_X509_new_null();
  if (!pkey || !leaf || !chain) {
    fprintf(stderr, "akv-emulator: seed certificate %s: %s\n", name, err ? err : "out of memory");
    goto out;
  }
  if (add_issued(vault, name, &policy, pkey, leaf, chain, &attrs, tags, NULL, &ie)) {
    leaf = NULL;
    fprintf(stderr, "akv-emulator: seed certificate %s: %s\n", name, ie.msg);
    goto out;
  }
  leaf = NULL;
  ret = 0;
  goto out;
nomem:
  fprintf(stderr, "akv-emulator: seed certificate %s: out of memory\n", name);
out:
  cJSON_Delete(built);
  cJSON_Delete(policy);
  EVP_PKEY_free(pkey);
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  return ret;
}
