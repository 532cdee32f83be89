/* SPDX-License-Identifier: Apache-2.0 */
/* The writable side of the token (docs/lifecycle.md): key generation in the vault, data objects
 * as vault secrets, deletion and attribute updates. The vault is written first; then the slot's
 * snapshot is changed at once (akv_cache_apply), so the new objects are usable immediately and a
 * new process sees them through the cache file or its own listing. */
#include "token/write.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "kv/json.h"
#include "store/attrs.h"
#include "store/cache.h"
#include "store/object.h"
#include "store/source.h"
#include "token/op.h"
#include "token/session.h"
#include "util/log.h"
#include "util/utc.h"

#define NAME_RULE "^[0-9a-zA-Z-]{1,127}$"

/* ---- template parsing --------------------------------------------------------------------- */

CK_RV akv_write_name(const CK_ATTRIBUTE *label, char out[AKV_MAX_NAME + 1])
{
  const char *p;
  if (!label || !label->pValue || label->ulValueLen == 0) {
    akv_err(AKV_LOGC_P11, "CKA_LABEL names the object in the vault: give one matching %s",
            NAME_RULE);
    return label ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_TEMPLATE_INCOMPLETE;
  }
  p = label->pValue;
  /* The vault's rule (kv_valid_name), on a NUL-terminated copy of a label without NUL bytes. */
  if (label->ulValueLen <= AKV_MAX_NAME && !memchr(p, '\0', label->ulValueLen)) {
    memcpy(out, p, label->ulValueLen);
    out[label->ulValueLen] = '\0';
    if (kv_valid_name(out))
      return CKR_OK;
  }
  out[0] = '\0';
  akv_err(AKV_LOGC_P11, "CKA_LABEL \"%.*s\" is not a vault object name: it must match %s",
          (int)(label->ulValueLen > 130 ? 130 : label->ulValueLen), p, NAME_RULE);
  return CKR_ATTRIBUTE_VALUE_INVALID;
}

static int digits(const CK_CHAR *p, size_t n, int *v)
{
  size_t i;
  *v = 0;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return 0;
    *v = *v * 10 + (p[i] - '0');
  }
  return 1;
}

CK_RV akv_write_date(const CK_ATTRIBUTE *a, int64_t *t)
{
  const CK_DATE *d;
  struct akv_utc u = {0}, back;
  int y, mo, da;
  *t = 0;
  if (a->ulValueLen == 0)
    return CKR_OK;
  if (!a->pValue || a->ulValueLen != sizeof(CK_DATE))
    return CKR_ATTRIBUTE_VALUE_INVALID;
  d = a->pValue;
  if (!digits(d->year, 4, &y) || !digits(d->month, 2, &mo) || !digits(d->day, 2, &da) || y < 1970 ||
      y > 9999 || mo < 1 || mo > 12 || da < 1 || da > 31)
    return CKR_ATTRIBUTE_VALUE_INVALID;
  u.year = y;
  u.month = mo;
  u.day = da;
  /* Lock-free calendar arithmetic (util/utc.h), not timegm. 31 February counts on into March:
   * such a date is not a date. */
  akv_utc_from_epoch(akv_utc_to_epoch(&u), &back);
  if (back.day != da || back.month != mo)
    return CKR_ATTRIBUTE_VALUE_INVALID;
  *t = akv_utc_to_epoch(&u);
  return CKR_OK;
}

static const struct {
  const char *name;
  enum kv_crv crv;
} curve_names[] = {
    {"prime256v1", KV_CRV_P256}, {"secp256r1", KV_CRV_P256},  {"P-256", KV_CRV_P256},
    {"secp384r1", KV_CRV_P384},  {"P-384", KV_CRV_P384},      {"secp521r1", KV_CRV_P521},
    {"P-521", KV_CRV_P521},      {"secp256k1", KV_CRV_P256K}, {"P-256K", KV_CRV_P256K},
};

CK_RV akv_write_ec_params(const unsigned char *p, size_t len, enum kv_crv *crv)
{
  static const enum kv_crv all[] = {KV_CRV_P256, KV_CRV_P384, KV_CRV_P521, KV_CRV_P256K};
  const unsigned char *name = p;
  size_t i, name_len = len, olen;
  const unsigned char *oid;

  if (!p || len == 0)
    goto bad;
  for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    oid = kv_crv_oid_der(all[i], &olen);
    if (oid && olen == len && memcmp(oid, p, len) == 0) {
      *crv = all[i];
      return CKR_OK;
    }
  }
  /* Some tools send the curve's name as a DER PrintableString, others the bare name. */
  if (len >= 2 && p[0] == 0x13 && p[1] < 0x80 && (size_t)p[1] + 2 == len) {
    name = p + 2;
    name_len = p[1];
  }
  for (i = 0; i < sizeof(curve_names) / sizeof(curve_names[0]); i++) {
    if (strlen(curve_names[i].name) == name_len &&
        strncasecmp(curve_names[i].name, (const char *)name, name_len) == 0) {
      *crv = curve_names[i].crv;
      return CKR_OK;
    }
  }
bad:
  akv_err(AKV_LOGC_P11, "CKA_EC_PARAMS: not a curve the vault has (P-256, P-384, P-521, "
                        "secp256k1, as a DER OID or a curve name)");
  return CKR_ATTRIBUTE_VALUE_INVALID;
}

/* Attributes a key generation template may carry. */
static int keygen_attr_known(CK_ATTRIBUTE_TYPE t)
{
  switch (t) {
  case CKA_CLASS:
  case CKA_KEY_TYPE:
  case CKA_TOKEN:
  case CKA_PRIVATE:
  case CKA_LABEL:
  case CKA_ID:
  case CKA_SUBJECT:
  case CKA_SENSITIVE:
  case CKA_EXTRACTABLE:
  case CKA_MODIFIABLE:
  case CKA_COPYABLE:
  case CKA_DESTROYABLE:
  case CKA_START_DATE:
  case CKA_END_DATE:
  case CKA_SIGN:
  case CKA_VERIFY:
  case CKA_ENCRYPT:
  case CKA_DECRYPT:
  case CKA_WRAP:
  case CKA_UNWRAP:
  case CKA_DERIVE:
  case CKA_SIGN_RECOVER:
  case CKA_VERIFY_RECOVER:
  case CKA_TRUSTED:
  case CKA_WRAP_WITH_TRUSTED:
  case CKA_ALWAYS_AUTHENTICATE:
  case CKA_ALLOWED_MECHANISMS:
  case CKA_MODULUS_BITS:
  case CKA_PUBLIC_EXPONENT:
  case CKA_EC_PARAMS:
  case CKA_VALUE_LEN:
  case CKA_AKV_HSM:
    return 1;
  default:
    return 0;
  }
}

static CK_RV check_known(const CK_ATTRIBUTE *t, CK_ULONG n)
{
  CK_ULONG i;
  for (i = 0; i < n; i++) {
    if (!t[i].pValue && t[i].ulValueLen)
      return CKR_ARGUMENTS_BAD;
    if (!keygen_attr_known(t[i].type)) {
      akv_err(AKV_LOGC_P11, "key generation: attribute 0x%lx is not supported",
              (unsigned long)t[i].type);
      return CKR_ATTRIBUTE_TYPE_INVALID;
    }
  }
  return CKR_OK;
}

/* A byte-string attribute that may appear in either template: both copies must agree. */
static CK_RV pair_attr(const CK_ATTRIBUTE *a, const CK_ATTRIBUTE *b, const CK_ATTRIBUTE **out,
                       const char *what)
{
  *out = a ? a : b;
  if (a && b &&
      (a->ulValueLen != b->ulValueLen ||
       (a->ulValueLen && memcmp(a->pValue, b->pValue, a->ulValueLen) != 0))) {
    akv_err(AKV_LOGC_P11, "key generation: the public and private templates give different %s",
            what);
    return CKR_TEMPLATE_INCONSISTENT;
  }
  return CKR_OK;
}

/* A boolean from template t, or def. */
static CK_RV tbool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL def,
                   CK_BBOOL *v)
{
  *v = def;
  return akv_attrs_tmpl_bool(t, n, type, v);
}

/* Common part of both templates: class, key type, token, sensitivity, name, CKA_ID, dates, HSM. */
struct tmpl_side {
  const CK_ATTRIBUTE *t;
  CK_ULONG n;
  CK_OBJECT_CLASS cls;
};

static CK_RV parse_common(enum akv_vault_kind kind, CK_KEY_TYPE kt, const struct tmpl_side *sides,
                          size_t n_sides, struct akv_keygen *g)
{
  const CK_ATTRIBUTE *label = NULL, *id = NULL, *a, *b;
  CK_BBOOL token_seen = CK_FALSE, hsm_set = CK_FALSE, hsm = CK_FALSE;
  CK_RV rv;
  size_t i;

  for (i = 0; i < n_sides; i++) {
    const CK_ATTRIBUTE *t = sides[i].t;
    CK_ULONG n = sides[i].n, cls = sides[i].cls, ktype = kt;
    CK_BBOOL token = CK_FALSE, v;
    if ((rv = check_known(t, n)) != CKR_OK ||
        (rv = akv_attrs_tmpl_ulong(t, n, CKA_CLASS, &cls)) != CKR_OK ||
        (rv = akv_attrs_tmpl_ulong(t, n, CKA_KEY_TYPE, &ktype)) != CKR_OK)
      return rv;
    if (cls != sides[i].cls || ktype != kt) {
      akv_err(AKV_LOGC_P11, "key generation: CKA_CLASS/CKA_KEY_TYPE do not fit the mechanism");
      return CKR_TEMPLATE_INCONSISTENT;
    }
    if ((rv = akv_attrs_tmpl_bool(t, n, CKA_TOKEN, &token)) != CKR_OK)
      return rv;
    if (!token) {
      /* Private keys never live in this process: a key pair or key is a vault key or nothing. */
      akv_err(AKV_LOGC_P11, "key generation: only token keys (CKA_TOKEN=TRUE) are generated, in "
                            "the vault; this module keeps no private keys in memory");
      return CKR_TEMPLATE_INCONSISTENT;
    }
    token_seen = CK_TRUE;
    if (cls != CKO_PUBLIC_KEY) {
      /* Tools send CKA_SENSITIVE=FALSE by default (pkcs11-tool --keygen does): the key is made
       * sensitive all the same, as its value never leaves the vault; asking for an extractable
       * key is a capability the vault cannot give, and is refused. */
      if ((rv = tbool(t, n, CKA_SENSITIVE, CK_TRUE, &v)) != CKR_OK)
        return rv;
      if (!v)
        akv_warn(AKV_LOGC_P11, "key generation: the key is sensitive (CKA_SENSITIVE=FALSE ignored: "
                               "vault keys never leave the vault)");
      if ((rv = tbool(t, n, CKA_EXTRACTABLE, CK_FALSE, &v)) != CKR_OK)
        return rv;
      if (v)
        goto never_leaves;
      if ((rv = tbool(t, n, CKA_ALWAYS_AUTHENTICATE, CK_FALSE, &v)) != CKR_OK)
        return rv;
      if (v) {
        akv_err(AKV_LOGC_P11, "key generation: CKA_ALWAYS_AUTHENTICATE is not supported");
        return CKR_TEMPLATE_INCONSISTENT;
      }
    }
    if ((a = akv_attrs_tmpl_find(t, n, CKA_AKV_HSM))) {
      if ((rv = akv_attrs_tmpl_bool(t, n, CKA_AKV_HSM, &v)) != CKR_OK)
        return rv;
      if (hsm_set && v != hsm) {
        akv_err(AKV_LOGC_P11, "key generation: the templates give different CKA_AKV_HSM");
        return CKR_TEMPLATE_INCONSISTENT;
      }
      hsm_set = CK_TRUE;
      hsm = v;
    }
    for (a = t; a < t + n; a++) {
      int64_t when;
      if (a->type != CKA_START_DATE && a->type != CKA_END_DATE)
        continue;
      if ((rv = akv_write_date(a, &when)) != CKR_OK) {
        akv_err(AKV_LOGC_P11, "key generation: CKA_START_DATE/CKA_END_DATE is not a valid date");
        return rv;
      }
      if (a->type == CKA_START_DATE)
        g->spec.nbf = when;
      else
        g->spec.exp = when;
    }
  }
  (void)token_seen;
  a = n_sides > 0 ? akv_attrs_tmpl_find(sides[0].t, sides[0].n, CKA_LABEL) : NULL;
  b = n_sides > 1 ? akv_attrs_tmpl_find(sides[1].t, sides[1].n, CKA_LABEL) : NULL;
  if ((rv = pair_attr(a, b, &label, "CKA_LABEL")) != CKR_OK)
    return rv;
  a = n_sides > 0 ? akv_attrs_tmpl_find(sides[0].t, sides[0].n, CKA_ID) : NULL;
  b = n_sides > 1 ? akv_attrs_tmpl_find(sides[1].t, sides[1].n, CKA_ID) : NULL;
  if ((rv = pair_attr(a, b, &id, "CKA_ID")) != CKR_OK)
    return rv;
  if ((rv = akv_write_name(label, g->name)) != CKR_OK)
    return rv;
  if (id && id->ulValueLen) {
    if (id->ulValueLen > AKV_MAX_ID) {
      akv_err(AKV_LOGC_P11, "CKA_ID: at most %d bytes (kept as a vault tag)", AKV_MAX_ID);
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    memcpy(g->id, id->pValue, id->ulValueLen);
    g->id_len = id->ulValueLen;
    for (i = 0; i < g->id_len; i++)
      snprintf(g->id_hex + 2 * i, 3, "%02x", g->id[i]);
    g->tag.name = (char *)AKV_TAG_ID;
    g->tag.value = g->id_hex;
    g->spec.tags = &g->tag;
    g->spec.n_tags = 1;
  }
  if (kind == AKV_VAULT_MHSM) {
    if (hsm_set && !hsm) {
      akv_err(AKV_LOGC_P11, "key generation: a Managed HSM only holds HSM keys (CKA_AKV_HSM)");
      return CKR_TEMPLATE_INCONSISTENT;
    }
    hsm = CK_TRUE;
  }
  g->spec.hsm = hsm ? 1 : 0;
  if (g->spec.nbf && g->spec.exp && g->spec.exp <= g->spec.nbf) {
    akv_err(AKV_LOGC_P11, "key generation: CKA_END_DATE is not after CKA_START_DATE");
    return CKR_TEMPLATE_INCONSISTENT;
  }
  return CKR_OK;
never_leaves:
  akv_err(AKV_LOGC_P11, "key generation: vault keys are always sensitive and never extractable");
  return CKR_TEMPLATE_INCONSISTENT;
}

/* key_ops bit from a boolean usage attribute (def when absent); `allowed` false makes TRUE an
 * inconsistency (a usage the key type cannot have in the vault). */
static CK_RV usage(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL def,
                   int allowed, unsigned bit, unsigned *ops)
{
  CK_BBOOL v;
  CK_RV rv = tbool(t, n, type, allowed ? def : CK_FALSE, &v);
  if (rv != CKR_OK)
    return rv;
  if (v && !allowed) {
    akv_err(AKV_LOGC_P11,
            "key generation: usage 0x%lx is not available for this key type in "
            "the vault",
            (unsigned long)type);
    return CKR_TEMPLATE_INCONSISTENT;
  }
  if (v)
    *ops |= bit;
  return CKR_OK;
}

CK_RV akv_write_parse_keypair(enum akv_vault_kind kind, CK_MECHANISM_TYPE mech,
                              const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                              CK_ULONG npriv, struct akv_keygen *g)
{
  struct tmpl_side sides[2] = {{pub, npub, CKO_PUBLIC_KEY}, {priv, npriv, CKO_PRIVATE_KEY}};
  const CK_ATTRIBUTE *a, *b, *v;
  CK_KEY_TYPE kt;
  CK_ULONG bits = 0;
  int rsa;
  CK_RV rv;

  memset(g, 0, sizeof(*g));
  if (mech == CKM_RSA_PKCS_KEY_PAIR_GEN)
    kt = CKK_RSA;
  else if (mech == CKM_EC_KEY_PAIR_GEN)
    kt = CKK_EC;
  else
    return CKR_MECHANISM_INVALID;
  rsa = kt == CKK_RSA;
  g->spec.kty = rsa ? KV_KTY_RSA : KV_KTY_EC;
  if ((rv = parse_common(kind, kt, sides, 2, g)) != CKR_OK)
    return rv;
  if (rsa) {
    a = akv_attrs_tmpl_find(pub, npub, CKA_MODULUS_BITS);
    b = akv_attrs_tmpl_find(priv, npriv, CKA_MODULUS_BITS);
    if ((rv = pair_attr(a, b, &v, "CKA_MODULUS_BITS")) != CKR_OK)
      return rv;
    if (!v) {
      akv_err(AKV_LOGC_P11, "RSA key generation needs CKA_MODULUS_BITS (2048, 3072 or 4096)");
      return CKR_TEMPLATE_INCOMPLETE;
    }
    if (v->ulValueLen != sizeof(CK_ULONG) ||
        ((bits = *(const CK_ULONG *)v->pValue) != 2048 && bits != 3072 && bits != 4096)) {
      akv_err(AKV_LOGC_P11, "CKA_MODULUS_BITS: the vault makes 2048, 3072 or 4096-bit RSA keys");
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    g->spec.key_size = (unsigned)bits;
    a = akv_attrs_tmpl_find(pub, npub, CKA_PUBLIC_EXPONENT);
    b = akv_attrs_tmpl_find(priv, npriv, CKA_PUBLIC_EXPONENT);
    if ((rv = pair_attr(a, b, &v, "CKA_PUBLIC_EXPONENT")) != CKR_OK)
      return rv;
    if (v) {
      const unsigned char *e = v->pValue;
      size_t len = v->ulValueLen;
      while (len > 1 && e[0] == 0) {
        e++;
        len--;
      }
      if (len != 3 || e[0] != 1 || e[1] != 0 || e[2] != 1) {
        akv_err(AKV_LOGC_P11, "CKA_PUBLIC_EXPONENT: the vault uses 65537 only");
        return CKR_ATTRIBUTE_VALUE_INVALID;
      }
    }
  } else {
    a = akv_attrs_tmpl_find(pub, npub, CKA_EC_PARAMS);
    b = akv_attrs_tmpl_find(priv, npriv, CKA_EC_PARAMS);
    if ((rv = pair_attr(a, b, &v, "CKA_EC_PARAMS")) != CKR_OK)
      return rv;
    if (!v) {
      akv_err(AKV_LOGC_P11, "EC key generation needs CKA_EC_PARAMS");
      return CKR_TEMPLATE_INCOMPLETE;
    }
    if ((rv = akv_write_ec_params(v->pValue, v->ulValueLen, &g->spec.crv)) != CKR_OK)
      return rv;
  }
  /* Usages: each half carries its own; unset ones default to what the vault would give. */
  if ((rv = usage(priv, npriv, CKA_SIGN, CK_TRUE, 1, KV_OP_SIGN, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(pub, npub, CKA_VERIFY, CK_TRUE, 1, KV_OP_VERIFY, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(priv, npriv, CKA_DECRYPT, CK_TRUE, rsa, KV_OP_DECRYPT, &g->spec.key_ops)) !=
          CKR_OK ||
      (rv = usage(pub, npub, CKA_ENCRYPT, CK_TRUE, rsa, KV_OP_ENCRYPT, &g->spec.key_ops)) !=
          CKR_OK ||
      (rv = usage(priv, npriv, CKA_UNWRAP, CK_TRUE, rsa, KV_OP_UNWRAP, &g->spec.key_ops)) !=
          CKR_OK ||
      (rv = usage(pub, npub, CKA_WRAP, CK_TRUE, rsa, KV_OP_WRAP, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(priv, npriv, CKA_SIGN_RECOVER, CK_FALSE, 0, 0, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(pub, npub, CKA_VERIFY_RECOVER, CK_FALSE, 0, 0, &g->spec.key_ops)) != CKR_OK)
    return rv;
  /* Tools ask for CKA_DERIVE on EC keys by default (pkcs11-tool does); the vault has no key
   * agreement, so the key comes without it (CKA_DERIVE reads FALSE) rather than not at all. */
  {
    CK_BBOOL d1 = CK_FALSE, d2 = CK_FALSE;
    if ((rv = akv_attrs_tmpl_bool(priv, npriv, CKA_DERIVE, &d1)) != CKR_OK ||
        (rv = akv_attrs_tmpl_bool(pub, npub, CKA_DERIVE, &d2)) != CKR_OK)
      return rv;
    if (d1 || d2)
      akv_warn(AKV_LOGC_P11, "key generation: %s gets no CKA_DERIVE (vault keys cannot derive)",
               g->name);
  }
  if (!g->spec.key_ops) {
    akv_err(AKV_LOGC_P11, "key generation: the templates allow no operation at all");
    return CKR_TEMPLATE_INCONSISTENT;
  }
  return CKR_OK;
}

CK_RV akv_write_parse_secret_key(enum akv_vault_kind kind, CK_MECHANISM_TYPE mech,
                                 const CK_ATTRIBUTE *t, CK_ULONG n, struct akv_keygen *g)
{
  struct tmpl_side side = {t, n, CKO_SECRET_KEY};
  CK_ULONG len = 0;
  CK_RV rv;

  memset(g, 0, sizeof(*g));
  if (mech != CKM_AES_KEY_GEN) {
    akv_err(AKV_LOGC_P11, "token secret keys: only CKM_AES_KEY_GEN (in a Managed HSM)");
    return CKR_MECHANISM_INVALID;
  }
  if (kind != AKV_VAULT_MHSM) {
    akv_err(AKV_LOGC_P11, "token AES keys exist only in a Managed HSM; this slot is a Key Vault "
                          "(use CKA_TOKEN=FALSE for a session key)");
    return CKR_TEMPLATE_INCONSISTENT;
  }
  g->spec.kty = KV_KTY_OCT;
  if ((rv = parse_common(kind, CKK_AES, &side, 1, g)) != CKR_OK)
    return rv;
  if (!akv_attrs_tmpl_find(t, n, CKA_VALUE_LEN)) {
    akv_err(AKV_LOGC_P11, "AES key generation needs CKA_VALUE_LEN (16, 24 or 32)");
    return CKR_TEMPLATE_INCOMPLETE;
  }
  if ((rv = akv_attrs_tmpl_ulong(t, n, CKA_VALUE_LEN, &len)) != CKR_OK)
    return rv;
  if (len != 16 && len != 24 && len != 32) {
    akv_err(AKV_LOGC_P11, "CKA_VALUE_LEN: a Managed HSM makes 16, 24 or 32-byte AES keys");
    return CKR_KEY_SIZE_RANGE;
  }
  g->spec.key_size = (unsigned)(len * 8);
  if ((rv = usage(t, n, CKA_ENCRYPT, CK_TRUE, 1, KV_OP_ENCRYPT, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(t, n, CKA_DECRYPT, CK_TRUE, 1, KV_OP_DECRYPT, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(t, n, CKA_WRAP, CK_TRUE, 1, KV_OP_WRAP, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(t, n, CKA_UNWRAP, CK_TRUE, 1, KV_OP_UNWRAP, &g->spec.key_ops)) != CKR_OK ||
      (rv = usage(t, n, CKA_DERIVE, CK_FALSE, 0, 0, &g->spec.key_ops)) != CKR_OK)
    return rv;
  if (!g->spec.key_ops) {
    akv_err(AKV_LOGC_P11, "key generation: the template allows no operation at all");
    return CKR_TEMPLATE_INCONSISTENT;
  }
  return CKR_OK;
}

/* ---- common checks ------------------------------------------------------------------------ */

static CK_RV token_writable(struct akv_session *s)
{
  if (s->slot->cfg->read_only) {
    akv_err(AKV_LOGC_P11, "slot %lu (%s) is read-only (read_only: true): no writes",
            (unsigned long)s->slot->id, s->slot->cfg->url);
    return CKR_TOKEN_WRITE_PROTECTED;
  }
  if (!(s->flags & CKF_RW_SESSION))
    return CKR_SESSION_READ_ONLY;
  /* With login required, nothing in the vault changes before C_Login (docs/security.md "Login"). */
  if (s->slot->cfg->login_required && !akv_session_logged_in(s)) {
    akv_err(AKV_LOGC_P11,
            "slot %lu: writing to the vault needs the user logged in (login: "
            "required); fix: C_Login first (pkcs11-tool --login)",
            (unsigned long)s->slot->id);
    return CKR_USER_NOT_LOGGED_IN;
  }
  return CKR_OK;
}

/* Objects of a vault name in the snapshot: key objects (every version), its certificate, its
 * secret, as `what` asks. */
struct drop_spec {
  const char *name;
  int keys, certs, secrets;
  const char *src; /* exactly this source instead, when set */
};

static int drop_match(const struct akv_object *obj, const void *arg)
{
  const struct drop_spec *d = arg;
  const char *src = obj->src;
  if (!src)
    return 0;
  if (d->src)
    return strcmp(src, d->src) == 0;
  if (d->keys && (akv_source_names(src, AKV_SRC_KEY, d->name) ||
                  akv_source_names(src, AKV_SRC_VERSION, d->name)))
    return 1;
  if (d->certs && akv_source_names(src, AKV_SRC_CERT, d->name))
    return 1;
  return d->secrets && akv_source_names(src, AKV_SRC_SECRET, d->name);
}

/* The key's objects (new or updated), built as a listing would build them, into the snapshot. */
static CK_RV publish_key(struct akv_session *s, struct kv_key *key, const char *label,
                         const char *src, const struct drop_spec *drop, struct akv_object **objs,
                         size_t *n)
{
  struct akv_keyent *ke = NULL;
  CK_RV rv;

  *n = 0;
  rv = akv_object_keyent_new(key, &ke); /* takes key */
  if (rv != CKR_OK)
    return rv;
  rv = akv_objects_from_key(s->slot, ke, label, src, objs, n);
  akv_object_keyent_unref(ke);
  if (rv != CKR_OK)
    return rv;
  /* A Managed HSM key's attestation objects, as a listing builds them (objs holds
   * AKV_KEY_OBJECTS). */
  if (*n) {
    size_t m = 0;
    rv = akv_objects_attest(objs[0], objs + *n, &m);
    *n += m;
  }
  if (rv == CKR_OK)
    rv = akv_cache_apply(s->slot->cache, drop_match, drop, objs, *n);
  if (rv != CKR_OK) {
    for (size_t i = 0; i < *n; i++)
      akv_object_unref(objs[i]);
    *n = 0;
  }
  return rv;
}

/* The slot would not show this key after a refresh: refuse before creating it. */
static CK_RV name_listed(struct akv_session *s, const char *name)
{
  const struct akv_slot_config *sc = s->slot->cfg;
  if (!(sc->objects & AKV_OBJ_KEYS)) {
    akv_err(AKV_LOGC_P11, "slot %lu does not show keys (objects): not generating %s",
            (unsigned long)s->slot->id, name);
    return CKR_TEMPLATE_INCONSISTENT;
  }
  if (sc->key_names) {
    for (size_t i = 0; i < sc->n_key_names; i++) {
      if (strcasecmp(sc->key_names[i], name) == 0)
        return CKR_OK;
    }
    akv_err(AKV_LOGC_P11, "slot %lu lists named keys only (keys) and %s is not one of them",
            (unsigned long)s->slot->id, name);
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  if (sc->key_filter && fnmatch(sc->key_filter, name, 0) != 0) {
    akv_err(AKV_LOGC_P11, "slot %lu: %s does not match the key filter %s",
            (unsigned long)s->slot->id, name, sc->key_filter);
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  return CKR_OK;
}

/* Generation never turns into a new version of an existing key (that would hide the key callers
 * use now): the name must be free. */
static CK_RV name_free(struct akv_session *s, const char *name)
{
  struct kv_key *k = NULL;
  long st = 0;
  kv_rc rc = kv_get_key(s->slot->client, name, NULL, &k, &st);
  kv_key_free(k);
  if (rc == KV_E_NOT_FOUND)
    return CKR_OK;
  if (rc == KV_OK) {
    akv_err(AKV_LOGC_P11,
            "a key named %s exists in the vault: choose another CKA_LABEL "
            "(rotate existing keys in the vault itself)",
            name);
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  return akv_session_fail(s, rc, st);
}

static CK_RV create_fail(struct akv_session *s, const char *name, kv_rc rc, long http_status)
{
  if (rc == KV_E_CONFLICT)
    akv_err(AKV_LOGC_P11,
            "%s: the vault refuses the name (409: deleted but recoverable, or "
            "being deleted); purge or recover it, or choose another CKA_LABEL",
            name);
  if (rc == KV_E_INVALID)
    return CKR_ATTRIBUTE_VALUE_INVALID;
  if (rc == KV_E_UNSUPPORTED)
    return CKR_TEMPLATE_INCONSISTENT;
  return akv_session_fail(s, rc == KV_E_NOT_FOUND ? KV_E_PROTOCOL : rc, http_status);
}

/* ---- versions that went away ------------------------------------------------------------ */

/* ---- key generation ----------------------------------------------------------------------- */

static CK_RV generate(struct akv_session *s, struct akv_keygen *g, struct akv_object **objs,
                      size_t *n)
{
  struct kv_key *key = NULL;
  struct akv_snapshot *snap = NULL;
  struct drop_spec drop;
  char src[AKV_MAX_NAME + 8];
  kv_rc rc;
  long st = 0;
  CK_RV rv;

  *n = 0;
  if ((rv = name_listed(s, g->name)) != CKR_OK || (rv = name_free(s, g->name)) != CKR_OK)
    return rv;
  /* The slot's listing first (usually there already), so the new objects join a snapshot. */
  if ((rv = akv_cache_get(s->slot->cache, &snap, NULL)) != CKR_OK)
    return rv;
  akv_snapshot_unref(snap);
  rc = kv_create_key(s->slot->client, g->name, &g->spec, &key, &st);
  if (rc != KV_OK)
    return create_fail(s, g->name, rc, st);
  akv_info(AKV_LOGC_P11, "generated key %s (%s) in %s", g->name, key->kid, s->slot->cfg->url);
  akv_source_id(src, sizeof(src), AKV_SRC_KEY, g->name, NULL);
  memset(&drop, 0, sizeof(drop));
  drop.src = src;
  return publish_key(s, key, g->name, src, &drop, objs, n);
}

CK_RV akv_write_generate_key_pair(struct akv_session *s, const CK_MECHANISM *m,
                                  const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                                  CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
  struct akv_keygen g;
  struct akv_object *objs[AKV_KEY_OBJECTS] = {NULL};
  size_t n = 0, i;
  CK_RV rv;

  /* No key pair lives outside the vault: every generation is a write. */
  if ((rv = token_writable(s)) != CKR_OK)
    return rv;
  rv = akv_write_parse_keypair(s->slot->cfg->kind, m->mechanism, pub, npub, priv, npriv, &g);
  if (rv == CKR_OK && (rv = akv_object_check_private(s->slot, CKO_PUBLIC_KEY, pub, npub)) == CKR_OK)
    rv = akv_object_check_private(s->slot, CKO_PRIVATE_KEY, priv, npriv);
  if (rv == CKR_OK && m->ulParameterLen)
    rv = CKR_MECHANISM_PARAM_INVALID;
  if (rv == CKR_OK)
    rv = generate(s, &g, objs, &n);
  if (rv == CKR_OK && n < 2) /* and the attestation objects on a Managed HSM */
    rv = CKR_GENERAL_ERROR;
  if (rv == CKR_OK) {
    *hpriv = objs[0]->handle;
    *hpub = objs[1]->handle;
  }
  for (i = 0; i < n; i++)
    akv_object_unref(objs[i]);
  return rv;
}

CK_RV akv_write_generate_key(struct akv_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *t,
                             CK_ULONG n, CK_OBJECT_HANDLE *out)
{
  struct akv_keygen g;
  struct akv_object *objs[AKV_KEY_OBJECTS] = {NULL};
  size_t nobj = 0, i;
  CK_RV rv;

  if ((rv = token_writable(s)) != CKR_OK)
    return rv;
  rv = akv_write_parse_secret_key(s->slot->cfg->kind, m->mechanism, t, n, &g);
  if (rv == CKR_OK)
    rv = akv_object_check_private(s->slot, CKO_SECRET_KEY, t, n);
  if (rv == CKR_OK && m->ulParameterLen)
    rv = CKR_MECHANISM_PARAM_INVALID;
  if (rv == CKR_OK)
    rv = generate(s, &g, objs, &nobj);
  if (rv == CKR_OK && nobj < 1)
    rv = CKR_GENERAL_ERROR;
  if (rv == CKR_OK)
    *out = objs[0]->handle;
  for (i = 0; i < nobj; i++)
    akv_object_unref(objs[i]);
  return rv;
}

/* ---- data objects as secrets -------------------------------------------------------------- */

static int data_attr_known(CK_ATTRIBUTE_TYPE t)
{
  switch (t) {
  case CKA_CLASS:
  case CKA_TOKEN:
  case CKA_PRIVATE:
  case CKA_LABEL:
  case CKA_VALUE:
  case CKA_APPLICATION:
  case CKA_OBJECT_ID:
  case CKA_MODIFIABLE:
  case CKA_COPYABLE:
  case CKA_DESTROYABLE:
    return 1;
  default:
    return 0;
  }
}

static int snapshot_has(struct akv_session *s, const struct drop_spec *d)
{
  struct akv_snapshot *snap = NULL;
  int found = 0;
  if (akv_cache_get(s->slot->cache, &snap, NULL) != CKR_OK)
    return 0;
  for (size_t i = 0; i < snap->n && !found; i++)
    found = drop_match(akv_snapshot_obj(snap, i), d);
  akv_snapshot_unref(snap);
  return found;
}

static CK_RV create_data(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                         CK_OBJECT_HANDLE *out)
{
  char name[AKV_MAX_NAME + 1], src[AKV_MAX_NAME + 8];
  const CK_ATTRIBUTE *value;
  struct kv_secret *sec = NULL;
  struct kv_item item;
  struct akv_object *obj = NULL;
  struct drop_spec drop;
  char *slash;
  kv_rc rc;
  long st = 0;
  CK_RV rv;
  CK_ULONG i;

  for (i = 0; i < n; i++) {
    if (!data_attr_known(t[i].type)) {
      akv_err(AKV_LOGC_P11, "data object: attribute 0x%lx is not kept by the vault",
              (unsigned long)t[i].type);
      return CKR_ATTRIBUTE_TYPE_INVALID;
    }
  }
  if ((rv = akv_object_check_private(s->slot, CKO_DATA, t, n)) != CKR_OK)
    return rv;
  if ((rv = akv_write_name(akv_attrs_tmpl_find(t, n, CKA_LABEL), name)) != CKR_OK)
    return rv;
  if (!(s->slot->cfg->objects & AKV_OBJ_SECRETS)) {
    akv_err(AKV_LOGC_P11,
            "data objects are vault secrets, and slot %lu does not show secrets "
            "(add \"secrets\" to its objects)",
            (unsigned long)s->slot->id);
    return CKR_TEMPLATE_INCONSISTENT;
  }
  value = akv_attrs_tmpl_find(t, n, CKA_VALUE);
  if (!value) {
    akv_err(AKV_LOGC_P11, "data object %s: CKA_VALUE is the secret's value: give one", name);
    return CKR_TEMPLATE_INCOMPLETE;
  }
  memset(&drop, 0, sizeof(drop));
  drop.name = name;
  drop.secrets = 1;
  if (snapshot_has(s, &drop)) {
    akv_err(AKV_LOGC_P11, "a data object (secret) named %s exists: choose another CKA_LABEL", name);
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  rc = kv_set_secret(s->slot->client, name, value->pValue, value->ulValueLen, NULL, NULL, 0, &sec,
                     &st);
  if (rc != KV_OK) {
    if (rc == KV_E_INVALID)
      akv_err(AKV_LOGC_P11, "data object %s: the vault stores UTF-8 text values only", name);
    return create_fail(s, name, rc, st);
  }
  /* The listing knows secrets by their base id: the object gets the identity it will keep. */
  slash = strrchr(sec->id, '/');
  if (sec->version && slash)
    *slash = '\0';
  memset(&item, 0, sizeof(item));
  item.id = sec->id;
  item.name = sec->name;
  item.attrs = sec->attrs;
  akv_source_id(src, sizeof(src), AKV_SRC_SECRET, sec->name, NULL);
  rv = akv_object_from_secret(s->slot, &item, src, &obj);
  if (rv == CKR_OK) {
    memset(&drop, 0, sizeof(drop));
    drop.src = src;
    rv = akv_cache_apply(s->slot->cache, drop_match, &drop, &obj, 1);
  }
  if (rv == CKR_OK)
    *out = obj->handle;
  akv_object_unref(obj);
  kv_secret_free(sec);
  return rv;
}

/* ---- session objects ------------------------------------------------------------------------ */

/* C_CreateObject with CKA_TOKEN=FALSE (template already checked for arguments and CKA_TOKEN):
 * secret keys with their value, usable for local AES and to be wrapped. */
static CK_RV session_object_create(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                   CK_OBJECT_HANDLE *out)
{
  CK_ULONG cls = (CK_ULONG)-1, kt = (CK_ULONG)-1;
  const CK_ATTRIBUTE *value;
  struct akv_object *obj;
  CK_RV rv;

  if ((rv = akv_attrs_tmpl_ulong(t, n, CKA_CLASS, &cls)) != CKR_OK ||
      (rv = akv_attrs_tmpl_ulong(t, n, CKA_KEY_TYPE, &kt)) != CKR_OK)
    return rv;
  if (cls == (CK_ULONG)-1)
    return CKR_TEMPLATE_INCOMPLETE;
  if (cls != CKO_SECRET_KEY)
    return CKR_FUNCTION_NOT_SUPPORTED;
  value = akv_attrs_tmpl_find(t, n, CKA_VALUE);
  if (kt == (CK_ULONG)-1 || !value)
    return CKR_TEMPLATE_INCOMPLETE;
  obj = akv_object_new_session_secret(s->slot, kt, value->pValue, value->ulValueLen, t, n, &rv);
  if (!obj)
    return rv;
  return akv_session_add_object(s, obj, out);
}

CK_RV akv_write_copy_object(struct akv_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE *out)
{
  struct akv_object *obj = NULL;
  CK_RV rv = akv_session_object(s, h, &obj);

  (void)out;
  if (rv != CKR_OK)
    return rv;
  /* Every object says CKA_COPYABLE = FALSE. */
  akv_object_unref(obj);
  return CKR_ACTION_PROHIBITED;
}

CK_RV akv_write_create_object(struct akv_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_HANDLE *out)
{
  CK_ULONG cls = (CK_ULONG)-1, i;
  CK_BBOOL token = CK_FALSE;
  CK_RV rv;

  for (i = 0; i < n; i++) {
    if (!t[i].pValue && t[i].ulValueLen)
      return CKR_ARGUMENTS_BAD;
  }
  if ((rv = akv_attrs_tmpl_bool(t, n, CKA_TOKEN, &token)) != CKR_OK ||
      (rv = akv_attrs_tmpl_ulong(t, n, CKA_CLASS, &cls)) != CKR_OK)
    return rv;
  if (!token)
    return session_object_create(s, t, n, out);
  if ((rv = token_writable(s)) != CKR_OK)
    return rv;
  switch (cls) {
  case CKO_DATA:
    return create_data(s, t, n, out);
  case CKO_CERTIFICATE:
    /* The service imports a certificate only together with its private key (PKCS#12/PEM), and
     * no call attaches one to an existing, non-exportable key. */
    akv_err(AKV_LOGC_P11,
            "a certificate cannot be stored alone in the vault: import it with its "
            "private key (az keyvault certificate import), or create it there from the key's CSR");
    return CKR_TEMPLATE_INCONSISTENT;
  case CKO_PRIVATE_KEY:
  case CKO_PUBLIC_KEY:
  case CKO_SECRET_KEY:
    akv_err(AKV_LOGC_P11,
            "token keys are generated in the vault (C_GenerateKeyPair / "
            "C_GenerateKey); importing key material through C_CreateObject is not supported");
    return CKR_TEMPLATE_INCONSISTENT;
  case (CK_ULONG)-1:
    return CKR_TEMPLATE_INCOMPLETE;
  default:
    return CKR_TEMPLATE_INCONSISTENT;
  }
}

/* ---- destruction ---------------------------------------------------------------------------- */

static CK_RV destroy_token(struct akv_session *s, struct akv_object *obj)
{
  struct drop_spec drop;
  const char *src = obj->src ? obj->src : "";
  char name[AKV_MAX_NAME + 1];
  size_t nl;
  kv_rc rc;
  long st = 0;
  CK_RV rv;

  if ((rv = token_writable(s)) != CKR_OK)
    return rv;
  if (!s->slot->cfg->allow_destroy) {
    akv_err(AKV_LOGC_P11, "slot %lu does not allow deleting vault objects (allow_destroy: false)",
            (unsigned long)s->slot->id);
    return CKR_ACTION_PROHIBITED;
  }
  nl = strcspn(src + (src[0] ? 2 : 0), "|");
  if (strlen(src) < 3 || src[1] != '|' || nl == 0 || nl > AKV_MAX_NAME)
    return CKR_ACTION_PROHIBITED;
  memcpy(name, src + 2, nl);
  name[nl] = '\0';
  memset(&drop, 0, sizeof(drop));
  drop.name = name;
  if (obj->att) {
    akv_err(AKV_LOGC_P11,
            "%s: an attestation object is the HSM's statement about the key and goes with it; "
            "destroy the private key to delete the key",
            name);
    return CKR_ACTION_PROHIBITED;
  }
  switch (src[0]) {
  case 'k':
    if (obj->cls == CKO_PUBLIC_KEY) {
      akv_err(AKV_LOGC_P11,
              "%s: the public key is half of a vault key; destroy the private key "
              "to delete the key",
              name);
      return CKR_ACTION_PROHIBITED;
    }
    if (obj->key && obj->key->attrs.managed) {
      akv_err(AKV_LOGC_P11, "%s backs a certificate: destroy the certificate to delete both", name);
      return CKR_ACTION_PROHIBITED;
    }
    rc = kv_delete_key(s->slot->client, name, &st);
    drop.keys = 1;
    break;
  case 'c':
    rc = kv_delete_certificate(s->slot->client, name, &st);
    drop.keys = drop.certs = drop.secrets = 1;
    break;
  case 's':
    rc = kv_delete_secret(s->slot->client, name, &st);
    drop.secrets = 1;
    break;
  default:
    akv_err(AKV_LOGC_P11,
            "%s: an older version cannot be deleted on its own (the vault deletes "
            "whole keys); disable it in the vault instead",
            name);
    return CKR_ACTION_PROHIBITED;
  }
  if (rc != KV_OK && rc != KV_E_NOT_FOUND)
    return akv_session_fail(s, rc, st);
  akv_info(AKV_LOGC_P11, "deleted %s (%c) from %s (soft delete)", name, src[0], s->slot->cfg->url);
  rv = akv_cache_apply(s->slot->cache, drop_match, &drop, NULL, 0);
  /* Already gone: the object disappears all the same, and the caller learns it was stale. */
  if (rc == KV_E_NOT_FOUND)
    return CKR_OBJECT_HANDLE_INVALID;
  return rv;
}

CK_RV akv_write_destroy_object(struct akv_session *s, CK_OBJECT_HANDLE h)
{
  struct akv_object *obj = NULL;
  CK_RV rv = akv_session_object(s, h, &obj);

  if (rv != CKR_OK)
    return rv;
  if (obj->session) {
    const CK_ATTRIBUTE *a = akv_object_attr(obj, CKA_DESTROYABLE);
    rv = a && !*(CK_BBOOL *)a->pValue ? CKR_ACTION_PROHIBITED : akv_session_remove_object(s, h);
  } else
    rv = destroy_token(s, obj);
  akv_object_unref(obj);
  return rv;
}

/* ---- attribute updates ---------------------------------------------------------------------- */

CK_RV akv_write_set_attrs(struct akv_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *t,
                          CK_ULONG n)
{
  struct akv_object *obj = NULL;
  struct kv_update u;
  struct kv_tag *tags = NULL;
  struct kv_key *key = NULL;
  struct akv_object *objs[AKV_KEY_OBJECTS] = {NULL};
  struct drop_spec drop;
  const CK_ATTRIBUTE *label;
  char id_hex[2 * AKV_MAX_ID + 1], lab[AKV_MAX_NAME + 16];
  size_t nobj = 0, i, nt = 0;
  CK_ULONG j;
  kv_rc rc;
  long st = 0;
  CK_RV rv;

  rv = akv_session_object(s, h, &obj);
  if (rv != CKR_OK)
    return rv;
  if (obj->session || obj->att) {
    /* Session and attestation objects are immutable (CKA_MODIFIABLE = FALSE). */
    rv = CKR_ACTION_PROHIBITED;
    goto out;
  }
  for (j = 0; j < n; j++) {
    if (!t[j].pValue && t[j].ulValueLen) {
      rv = CKR_ARGUMENTS_BAD;
      goto out;
    }
  }
  if ((rv = token_writable(s)) != CKR_OK)
    goto out;
  memset(&u, 0, sizeof(u));
  id_hex[0] = '\0';
  /* Everything is checked before anything is written: the update is all or nothing. */
  for (j = 0; j < n; j++) {
    const CK_ATTRIBUTE *a = &t[j];
    if (obj->key && (a->type == CKA_START_DATE || a->type == CKA_END_DATE)) {
      int64_t when;
      if ((rv = akv_write_date(a, &when)) != CKR_OK)
        goto out;
      if (a->type == CKA_START_DATE) {
        u.set_nbf = 1;
        u.nbf = when;
      } else {
        u.set_exp = 1;
        u.exp = when;
      }
    } else if (obj->key && a->type == CKA_ID) {
      if (a->ulValueLen > AKV_MAX_ID) {
        akv_err(AKV_LOGC_P11, "CKA_ID: at most %d bytes (kept as a vault tag)", AKV_MAX_ID);
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
      }
      for (i = 0; i < a->ulValueLen; i++)
        snprintf(id_hex + 2 * i, 3, "%02x", ((const unsigned char *)a->pValue)[i]);
      id_hex[2 * a->ulValueLen] = '\0';
      u.set_tags = 1;
    } else {
      if (a->type == CKA_LABEL)
        akv_err(AKV_LOGC_P11, "CKA_LABEL is the vault object's name and cannot change");
      else if (obj->key)
        akv_err(AKV_LOGC_P11, "only CKA_START_DATE, CKA_END_DATE and CKA_ID of a vault key "
                              "can change");
      rv = akv_object_attr(obj, a->type) ? CKR_ATTRIBUTE_READ_ONLY : CKR_ATTRIBUTE_TYPE_INVALID;
      goto out;
    }
  }
  if (!u.set_nbf && !u.set_exp && !u.set_tags)
    goto out; /* nothing changes */
  if (obj->key->attrs.managed) {
    akv_err(AKV_LOGC_P11, "%s backs a certificate: its attributes follow the certificate",
            obj->key->name);
    rv = CKR_ACTION_PROHIBITED;
    goto out;
  }
  if (u.set_tags) {
    /* PATCH replaces the tag set: keep the others, replace (or drop) ours. */
    tags = calloc(obj->key->attrs.n_tags + 1, sizeof(*tags));
    if (!tags) {
      rv = CKR_HOST_MEMORY;
      goto out;
    }
    for (i = 0; i < obj->key->attrs.n_tags; i++) {
      if (strcmp(obj->key->attrs.tags[i].name, AKV_TAG_ID) != 0)
        tags[nt++] = obj->key->attrs.tags[i];
    }
    if (id_hex[0]) {
      tags[nt].name = (char *)AKV_TAG_ID;
      tags[nt].value = id_hex;
      nt++;
    }
    u.tags = tags;
    u.n_tags = nt;
  }
  rc = kv_update_key(s->slot->client, obj->key->name, obj->key->version, &u, &key, &st);
  if (rc != KV_OK) {
    rv = akv_session_fail(s, rc, st);
    goto out;
  }
  /* The same version, new attributes: the objects keep their handles and label. */
  label = akv_object_attr(obj, CKA_LABEL);
  snprintf(lab, sizeof(lab), "%.*s", label ? (int)label->ulValueLen : 0,
           label ? (const char *)label->pValue : "");
  memset(&drop, 0, sizeof(drop));
  drop.src = obj->src;
  rv = publish_key(s, key, lab, obj->src, &drop, objs, &nobj);
  key = NULL;
  for (i = 0; i < nobj; i++)
    akv_object_unref(objs[i]);
out:
  free(tags);
  kv_key_free(key);
  akv_object_unref(obj);
  return rv;
}
