/* SPDX-License-Identifier: Apache-2.0 */
/* The mechanism table and what it decides: which rows a slot offers, parameter validation, the
 * JWA algorithm, hash and curve facts, and the digests fetched once per C_Initialize. The
 * operation lifecycle on the session is in src/token/op.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "token/mech.h"
#include "token/op.h"
#include "util/log.h"

#define RSA_SV (CKF_SIGN | CKF_VERIFY)
#define RSA_ALL (CKF_SIGN | CKF_VERIFY | CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP)
#define RSA_ED (CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP)
#define EC_SV (CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)
#define AES_ED (CKF_ENCRYPT | CKF_DECRYPT)
#define AES_WU (CKF_WRAP | CKF_UNWRAP)

/* Key Vault RSA keys are 2048..4096 bits, EC keys P-256..P-521; AES keys 16..32 bytes. Session
 * secret keys make local AES and HMAC available on every slot; the vault computes them (CKF_HW)
 * on Managed HSM only. Digests and session key generation are always local. */
static const struct akv_mech mech_table[] = {
    {CKM_RSA_PKCS, "CKM_RSA_PKCS", AKV_MF_RSA_PKCS, CKK_RSA, 0, 2048, 4096, RSA_ALL, AKV_MW_ALL,
     AKV_MW_ALL},
    {CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS", AKV_MF_RSA_PKCS, CKK_RSA, CKM_SHA256, 2048, 4096,
     RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA384_RSA_PKCS, "CKM_SHA384_RSA_PKCS", AKV_MF_RSA_PKCS, CKK_RSA, CKM_SHA384, 2048, 4096,
     RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA512_RSA_PKCS, "CKM_SHA512_RSA_PKCS", AKV_MF_RSA_PKCS, CKK_RSA, CKM_SHA512, 2048, 4096,
     RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS", AKV_MF_RSA_PSS, CKK_RSA, 0, 2048, 4096, RSA_SV,
     AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS", AKV_MF_RSA_PSS, CKK_RSA, CKM_SHA256, 2048,
     4096, RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA384_RSA_PKCS_PSS, "CKM_SHA384_RSA_PKCS_PSS", AKV_MF_RSA_PSS, CKK_RSA, CKM_SHA384, 2048,
     4096, RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA512_RSA_PKCS_PSS, "CKM_SHA512_RSA_PKCS_PSS", AKV_MF_RSA_PSS, CKK_RSA, CKM_SHA512, 2048,
     4096, RSA_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP", AKV_MF_RSA_OAEP, CKK_RSA, 0, 2048, 4096, RSA_ED,
     AKV_MW_ALL, AKV_MW_ALL},
    {CKM_ECDSA, "CKM_ECDSA", AKV_MF_ECDSA, CKK_EC, 0, 256, 521, EC_SV, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256", AKV_MF_ECDSA, CKK_EC, CKM_SHA256, 256, 521, EC_SV,
     AKV_MW_ALL, AKV_MW_ALL},
    {CKM_ECDSA_SHA384, "CKM_ECDSA_SHA384", AKV_MF_ECDSA, CKK_EC, CKM_SHA384, 256, 521, EC_SV,
     AKV_MW_ALL, AKV_MW_ALL},
    {CKM_ECDSA_SHA512, "CKM_ECDSA_SHA512", AKV_MF_ECDSA, CKK_EC, CKM_SHA512, 256, 521, EC_SV,
     AKV_MW_ALL, AKV_MW_ALL},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", AKV_MF_HMAC, CKK_GENERIC_SECRET, CKM_SHA256, 16, 64,
     CKF_SIGN | CKF_VERIFY, AKV_MW_ALL, AKV_MW_MHSM},
    {CKM_SHA384_HMAC, "CKM_SHA384_HMAC", AKV_MF_HMAC, CKK_GENERIC_SECRET, CKM_SHA384, 16, 64,
     CKF_SIGN | CKF_VERIFY, AKV_MW_ALL, AKV_MW_MHSM},
    {CKM_SHA512_HMAC, "CKM_SHA512_HMAC", AKV_MF_HMAC, CKK_GENERIC_SECRET, CKM_SHA512, 16, 64,
     CKF_SIGN | CKF_VERIFY, AKV_MW_ALL, AKV_MW_MHSM},
    {CKM_AES_GCM, "CKM_AES_GCM", AKV_MF_AES_GCM, CKK_AES, 0, 16, 32, AES_ED, AKV_MW_ALL,
     AKV_MW_MHSM},
    {CKM_AES_CBC, "CKM_AES_CBC", AKV_MF_AES_CBC, CKK_AES, 0, 16, 32, AES_ED, AKV_MW_ALL,
     AKV_MW_MHSM},
    {CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD", AKV_MF_AES_CBC_PAD, CKK_AES, 0, 16, 32, AES_ED, AKV_MW_ALL,
     AKV_MW_MHSM},
    {CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP", AKV_MF_AES_KW, CKK_AES, 0, 16, 32, AES_WU, AKV_MW_ALL,
     AKV_MW_MHSM},
    {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD", AKV_MF_AES_KWP, CKK_AES, 0, 16, 32, AES_WU,
     AKV_MW_ALL, AKV_MW_MHSM},
    /* Key pairs are generated in the vault (src/token/write.c). */
    {CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN", AKV_MF_KEYGEN, CKK_RSA, 0, 2048, 4096,
     CKF_GENERATE_KEY_PAIR, AKV_MW_ALL, AKV_MW_ALL},
    {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", AKV_MF_KEYGEN, CKK_EC, 0, 256, 521,
     CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS, AKV_MW_ALL,
     AKV_MW_ALL},
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", AKV_MF_KEYGEN, CKK_AES, 0, 16, 32, CKF_GENERATE,
     AKV_MW_ALL, 0},
    {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN", AKV_MF_KEYGEN, CKK_GENERIC_SECRET, 0,
     8, 512, CKF_GENERATE, AKV_MW_ALL, 0},
    {CKM_SHA_1, "CKM_SHA_1", AKV_MF_DIGEST, AKV_NO_KEY_TYPE, CKM_SHA_1, 0, 0, CKF_DIGEST,
     AKV_MW_ALL, 0},
    {CKM_SHA224, "CKM_SHA224", AKV_MF_DIGEST, AKV_NO_KEY_TYPE, CKM_SHA224, 0, 0, CKF_DIGEST,
     AKV_MW_ALL, 0},
    {CKM_SHA256, "CKM_SHA256", AKV_MF_DIGEST, AKV_NO_KEY_TYPE, CKM_SHA256, 0, 0, CKF_DIGEST,
     AKV_MW_ALL, 0},
    {CKM_SHA384, "CKM_SHA384", AKV_MF_DIGEST, AKV_NO_KEY_TYPE, CKM_SHA384, 0, 0, CKF_DIGEST,
     AKV_MW_ALL, 0},
    {CKM_SHA512, "CKM_SHA512", AKV_MF_DIGEST, AKV_NO_KEY_TYPE, CKM_SHA512, 0, 0, CKF_DIGEST,
     AKV_MW_ALL, 0},
};

#define N_MECH (sizeof(mech_table) / sizeof(mech_table[0]))

/* Hash facts, also rows. */
static const struct {
  CK_MECHANISM_TYPE hash;
  size_t len;
  const char *ossl;
  CK_RSA_PKCS_MGF_TYPE mgf;
  int nid;
  const char *rs, *ps, *hs, *oaep;
} hash_table[] = {
    {CKM_SHA_1, 20, "SHA1", CKG_MGF1_SHA1, NID_sha1, NULL, NULL, NULL, "RSA-OAEP"},
    {CKM_SHA224, 28, "SHA224", CKG_MGF1_SHA224, NID_sha224, NULL, NULL, NULL, NULL},
    {CKM_SHA256, 32, "SHA256", CKG_MGF1_SHA256, NID_sha256, "RS256", "PS256", "HS256",
     "RSA-OAEP-256"},
    {CKM_SHA384, 48, "SHA384", CKG_MGF1_SHA384, NID_sha384, "RS384", "PS384", "HS384", NULL},
    {CKM_SHA512, 64, "SHA512", CKG_MGF1_SHA512, NID_sha512, "RS512", "PS512", "HS512", NULL},
};

#define N_HASH (sizeof(hash_table) / sizeof(hash_table[0]))

static int hash_index(CK_MECHANISM_TYPE hash)
{
  for (size_t i = 0; i < N_HASH; i++)
    if (hash_table[i].hash == hash)
      return (int)i;
  return -1;
}

size_t akv_mech_hash_len(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? 0 : hash_table[i].len;
}

const char *akv_mech_hash_name(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? NULL : hash_table[i].ossl;
}

CK_RSA_PKCS_MGF_TYPE akv_mech_hash_mgf(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? 0 : hash_table[i].mgf;
}

CK_MECHANISM_TYPE akv_mech_hash_by_len(size_t len)
{
  switch (len) {
  case 32:
    return CKM_SHA256;
  case 48:
    return CKM_SHA384;
  case 64:
    return CKM_SHA512;
  default:
    return 0;
  }
}

const char *akv_mech_jwa_rs(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? NULL : hash_table[i].rs;
}

const char *akv_mech_jwa_ps(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? NULL : hash_table[i].ps;
}

const char *akv_mech_jwa_hs(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? NULL : hash_table[i].hs;
}

const char *akv_mech_jwa_oaep(CK_MECHANISM_TYPE hash)
{
  int i = hash_index(hash);
  return i < 0 ? NULL : hash_table[i].oaep;
}

static const struct curve_row {
  enum kv_crv crv;
  const char *es;
  size_t digest_len, field_len, order_bits;
} curve_table[] = {
    {KV_CRV_P256, "ES256", 32, 32, 256},
    {KV_CRV_P384, "ES384", 48, 48, 384},
    {KV_CRV_P521, "ES512", 64, 66, 521},
    {KV_CRV_P256K, "ES256K", 32, 32, 256},
};

static const struct curve_row *curve_find(enum kv_crv crv)
{
  for (size_t i = 0; i < sizeof(curve_table) / sizeof(curve_table[0]); i++)
    if (curve_table[i].crv == crv)
      return &curve_table[i];
  return NULL;
}

const char *akv_mech_jwa_es(enum kv_crv crv)
{
  const struct curve_row *c = curve_find(crv);
  return c ? c->es : NULL;
}

size_t akv_mech_ec_digest_len(enum kv_crv crv)
{
  const struct curve_row *c = curve_find(crv);
  return c ? c->digest_len : 0;
}

size_t akv_mech_ec_field_len(enum kv_crv crv)
{
  const struct curve_row *c = curve_find(crv);
  return c ? c->field_len : 0;
}

size_t akv_mech_ec_order_bits(enum kv_crv crv)
{
  const struct curve_row *c = curve_find(crv);
  return c ? c->order_bits : 0;
}

/* A*GCM / A*CBC / A*CBCPAD need the key size; RFC 3394/5649 wrapping uses the service's
 * PKCS#11-named algorithms, which do not. */
const char *akv_mech_jwa_aes(enum akv_mfam fam, size_t key_bytes)
{
  static const char *const names[3][3] = {
      {"A128GCM", "A192GCM", "A256GCM"},
      {"A128CBC", "A192CBC", "A256CBC"},
      {"A128CBCPAD", "A192CBCPAD", "A256CBCPAD"},
  };
  int row, col;
  if (fam == AKV_MF_AES_KW)
    return "CKM_AES_KEY_WRAP";
  if (fam == AKV_MF_AES_KWP)
    return "CKM_AES_KEY_WRAP_PAD";
  if (fam == AKV_MF_AES_GCM)
    row = 0;
  else if (fam == AKV_MF_AES_CBC)
    row = 1;
  else if (fam == AKV_MF_AES_CBC_PAD)
    row = 2;
  else
    return NULL;
  if (key_bytes == 16)
    col = 0;
  else if (key_bytes == 24)
    col = 1;
  else if (key_bytes == 32)
    col = 2;
  else
    return NULL;
  return names[row][col];
}

/* ---- DigestInfo --------------------------------------------------------------------------------
 */

CK_RV akv_mech_digestinfo_parse(const unsigned char *der, size_t len, CK_MECHANISM_TYPE *hash,
                                const unsigned char **digest)
{
  CK_RV rv = CKR_DATA_INVALID;
  X509_SIG *sig = NULL;
  const unsigned char *p = der;
  const X509_ALGOR *alg = NULL;
  const ASN1_OCTET_STRING *octets = NULL;
  const ASN1_OBJECT *oid = NULL;
  const void *pval = NULL;
  int ptype = 0, nid;
  unsigned char *re = NULL;
  int re_len;
  CK_MECHANISM_TYPE h = 0;

  if (!der || len == 0 || len > 256)
    goto out;
  sig = d2i_X509_SIG(NULL, &p, (long)len);
  if (!sig || (size_t)(p - der) != len) {
    akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: input is not a DER DigestInfo (%zu bytes)", len);
    goto out;
  }
  /* Only the exact DER the service will rebuild (NULL parameters, minimal lengths) is accepted:
   * anything else would yield a signature over different bytes than the caller asked for. */
  re_len = i2d_X509_SIG(sig, &re);
  if (re_len < 0 || (size_t)re_len != len || memcmp(re, der, len) != 0) {
    akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: DigestInfo is not in canonical DER");
    goto out;
  }
  X509_SIG_get0(sig, &alg, &octets);
  X509_ALGOR_get0(&oid, &ptype, &pval, alg);
  nid = OBJ_obj2nid(oid);
  for (size_t i = 0; i < N_HASH; i++)
    if (hash_table[i].nid == nid)
      h = hash_table[i].hash;
  if (!akv_mech_jwa_rs(h)) {
    akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: DigestInfo of %s has no RS* algorithm",
            nid == NID_undef ? "(unknown)" : OBJ_nid2sn(nid));
    goto out;
  }
  if (ptype != V_ASN1_NULL) {
    akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: DigestInfo without NULL parameters");
    goto out;
  }
  if ((size_t)ASN1_STRING_length(octets) != akv_mech_hash_len(h)) {
    akv_dbg(AKV_LOGC_P11, "CKM_RSA_PKCS: DigestInfo digest has the wrong length");
    goto out;
  }
  *hash = h;
  /* The digest is the tail of the canonical encoding. */
  *digest = der + len - akv_mech_hash_len(h);
  rv = CKR_OK;
out:
  OPENSSL_free(re);
  X509_SIG_free(sig);
  return rv;
}

/* ---- table queries -----------------------------------------------------------------------------
 */

const struct akv_mech *akv_mech_find(CK_MECHANISM_TYPE type)
{
  for (size_t i = 0; i < N_MECH; i++)
    if (mech_table[i].type == type)
      return &mech_table[i];
  return NULL;
}

const struct akv_mech *akv_mech_for_slot(enum akv_vault_kind kind, CK_MECHANISM_TYPE type)
{
  const struct akv_mech *m = akv_mech_find(type);
  if (!m || !(m->offered & (1u << kind)))
    return NULL;
  return m;
}

CK_RV akv_mech_list(enum akv_vault_kind kind, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
  CK_ULONG n = 0;
  for (size_t i = 0; i < N_MECH; i++)
    if (mech_table[i].offered & (1u << kind))
      n++;
  if (!list) {
    *count = n;
    return CKR_OK;
  }
  if (*count < n) {
    *count = n;
    return CKR_BUFFER_TOO_SMALL;
  }
  n = 0;
  for (size_t i = 0; i < N_MECH; i++)
    if (mech_table[i].offered & (1u << kind))
      list[n++] = mech_table[i].type;
  *count = n;
  return CKR_OK;
}

CK_RV akv_mech_info(enum akv_vault_kind kind, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
  const struct akv_mech *m = akv_mech_for_slot(kind, type);
  if (!m)
    return CKR_MECHANISM_INVALID;
  info->ulMinKeySize = m->min_size;
  info->ulMaxKeySize = m->max_size;
  info->flags = m->flags | ((m->hw & (1u << kind)) ? CKF_HW : 0);
  return CKR_OK;
}

/* ---- validation at *Init -----------------------------------------------------------------------
 */

size_t akv_mech_aes_key_bytes(const struct akv_object *obj)
{
  const CK_ATTRIBUTE *a;
  if (obj->secret)
    return obj->secret_len;
  a = akv_object_attr(obj, CKA_VALUE_LEN);
  if (a && a->pValue && a->ulValueLen == sizeof(CK_ULONG))
    return (size_t) * (const CK_ULONG *)a->pValue;
  return 0;
}

static int no_params(const CK_MECHANISM *m)
{
  return m->ulParameterLen == 0;
}

static CK_RV params_pss(struct akv_op *op, const CK_MECHANISM *m)
{
  const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
  if (!p || m->ulParameterLen != sizeof(*p))
    return CKR_MECHANISM_PARAM_INVALID;
  if (!akv_mech_jwa_ps(p->hashAlg) || (op->mech->hash && p->hashAlg != op->mech->hash)) {
    akv_info(AKV_LOGC_P11, "%s: hash 0x%lx refused (PS256/384/512 only, and the mechanism's own)",
             op->mech->name, (unsigned long)p->hashAlg);
    return CKR_MECHANISM_PARAM_INVALID;
  }
  /* Key Vault's PS* use MGF1 with the same hash and a salt as long as the hash (RFC 7518). */
  if (p->mgf != akv_mech_hash_mgf(p->hashAlg) || p->sLen != akv_mech_hash_len(p->hashAlg)) {
    akv_info(AKV_LOGC_P11, "%s: Key Vault requires MGF1 with the same hash and salt length %zu",
             op->mech->name, akv_mech_hash_len(p->hashAlg));
    return CKR_MECHANISM_PARAM_INVALID;
  }
  op->hash = p->hashAlg;
  op->alg = akv_mech_jwa_ps(p->hashAlg);
  return CKR_OK;
}

static CK_RV params_oaep(struct akv_op *op, const CK_MECHANISM *m)
{
  const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;
  if (!p || m->ulParameterLen != sizeof(*p))
    return CKR_MECHANISM_PARAM_INVALID;
  if (!akv_mech_jwa_oaep(p->hashAlg) || p->mgf != akv_mech_hash_mgf(p->hashAlg)) {
    akv_info(AKV_LOGC_P11, "CKM_RSA_PKCS_OAEP: Key Vault supports SHA-1 or SHA-256 with the same "
                           "MGF1 hash only");
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if ((p->source != 0 && p->source != CKZ_DATA_SPECIFIED) ||
      (p->pSourceData && p->ulSourceDataLen)) {
    akv_info(AKV_LOGC_P11, "CKM_RSA_PKCS_OAEP: Key Vault does not support an OAEP label");
    return CKR_MECHANISM_PARAM_INVALID;
  }
  op->hash = p->hashAlg;
  op->alg = akv_mech_jwa_oaep(p->hashAlg);
  return CKR_OK;
}

#define AKV_MAX_AAD 65536

static CK_RV params_gcm(struct akv_op *op, const CK_MECHANISM *m)
{
  const CK_GCM_PARAMS *p = m->pParameter;
  if (!p || m->ulParameterLen != sizeof(*p))
    return CKR_MECHANISM_PARAM_INVALID;
  if (p->ulTagBits % 8 || p->ulTagBits < 96 || p->ulTagBits > 128 || (p->ulAADLen && !p->pAAD) ||
      p->ulAADLen > AKV_MAX_AAD)
    return CKR_MECHANISM_PARAM_INVALID;
  if (op->remote) {
    /* The HSM always picks a 12-byte IV and makes a 16-byte tag; on encrypt it ignores a caller
     * IV, so the caller's 12-byte pIv buffer receives the IV the HSM chose. */
    if (p->ulTagBits != 128 || p->ulIvLen != 12 || !p->pIv) {
      akv_info(AKV_LOGC_P11, "CKM_AES_GCM on Managed HSM: a 12-byte IV buffer and a 128-bit tag "
                             "are required");
      return CKR_MECHANISM_PARAM_INVALID;
    }
    if (op->kind == AKV_OP_ENCRYPT)
      op->iv_out = p->pIv;
  } else if (!p->pIv || p->ulIvLen == 0 || p->ulIvLen > sizeof(op->iv)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  memcpy(op->iv, p->pIv, p->ulIvLen);
  op->iv_len = p->ulIvLen;
  op->tag_len = p->ulTagBits / 8;
  if (p->ulAADLen) {
    op->aad = malloc(p->ulAADLen);
    if (!op->aad)
      return CKR_HOST_MEMORY;
    memcpy(op->aad, p->pAAD, p->ulAADLen);
    op->aad_len = p->ulAADLen;
  }
  return CKR_OK;
}

CK_RV akv_mech_params(struct akv_op *op, const CK_MECHANISM *m)
{
  const struct akv_mech *row = op->mech;
  const struct akv_object *obj = op->obj;

  op->hash = row->hash;
  switch (row->fam) {
  case AKV_MF_DIGEST:
  case AKV_MF_KEYGEN:
    return no_params(m) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
  case AKV_MF_RSA_PKCS:
    if (!no_params(m))
      return CKR_MECHANISM_PARAM_INVALID;
    if (op->kind == AKV_OP_ENCRYPT || op->kind == AKV_OP_DECRYPT)
      op->alg = "RSA1_5";
    else if (row->hash)
      op->alg = akv_mech_jwa_rs(row->hash);
    return CKR_OK; /* raw sign: the DigestInfo decides */
  case AKV_MF_RSA_PSS:
    return params_pss(op, m);
  case AKV_MF_RSA_OAEP:
    return params_oaep(op, m);
  case AKV_MF_ECDSA:
    if (!no_params(m))
      return CKR_MECHANISM_PARAM_INVALID;
    op->alg = akv_mech_jwa_es(obj->key ? obj->key->crv : KV_CRV_NONE);
    if (!op->alg)
      return CKR_KEY_TYPE_INCONSISTENT; /* a curve Key Vault does not have */
    return CKR_OK;
  case AKV_MF_HMAC:
    if (!no_params(m))
      return CKR_MECHANISM_PARAM_INVALID;
    op->alg = akv_mech_jwa_hs(row->hash);
    return CKR_OK;
  case AKV_MF_AES_GCM:
    op->key_bytes = akv_mech_aes_key_bytes(obj);
    op->alg = akv_mech_jwa_aes(row->fam, op->key_bytes);
    return params_gcm(op, m);
  case AKV_MF_AES_CBC:
  case AKV_MF_AES_CBC_PAD:
    if (!m->pParameter || m->ulParameterLen != 16)
      return CKR_MECHANISM_PARAM_INVALID;
    memcpy(op->iv, m->pParameter, 16);
    op->iv_len = 16;
    op->key_bytes = akv_mech_aes_key_bytes(obj);
    op->alg = akv_mech_jwa_aes(row->fam, op->key_bytes);
    return CKR_OK;
  case AKV_MF_AES_KW:
  case AKV_MF_AES_KWP:
    /* Only the default RFC 3394/5649 IV is available in the HSM and here. */
    if (!no_params(m))
      return CKR_MECHANISM_PARAM_INVALID;
    op->key_bytes = akv_mech_aes_key_bytes(obj);
    op->alg = akv_mech_jwa_aes(row->fam, op->key_bytes);
    return CKR_OK;
  }
  return CKR_MECHANISM_INVALID;
}

/* The digests of every hash mechanism, fetched once per C_Initialize in the module's library
 * context: EVP_MD_fetch costs a method-store lookup under a lock (about 2.2k instructions), which
 * would otherwise run on every C_SignInit of a hash-and-sign mechanism. Written by C_Initialize
 * before the module is marked initialised and freed by C_Finalize after the sessions (whose
 * operations hold their own references through their EVP_MD_CTX) are closed, so entry points read
 * them without a lock. */
static const CK_MECHANISM_TYPE md_types[] = {CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384,
                                             CKM_SHA512};
#define N_MD (sizeof(md_types) / sizeof(md_types[0]))
static EVP_MD *md_cache[N_MD];

void akv_mech_md_cache_init(void)
{
  for (size_t i = 0; i < N_MD; i++) {
    const char *name = akv_mech_hash_name(md_types[i]);
    /* A digest the provider lacks stays NULL: akv_mech_md_fetch then fetches (and fails) per call.
     */
    md_cache[i] = name ? EVP_MD_fetch(akv_libctx(), name, NULL) : NULL;
  }
}

void akv_mech_md_cache_free(void)
{
  for (size_t i = 0; i < N_MD; i++) {
    EVP_MD_free(md_cache[i]);
    md_cache[i] = NULL;
  }
}

void akv_mech_md_cache_abandon(void)
{
  memset(md_cache, 0, sizeof(md_cache));
}

EVP_MD *akv_mech_md_fetch(CK_MECHANISM_TYPE hash)
{
  const char *name;
  for (size_t i = 0; i < N_MD; i++) {
    if (md_types[i] != hash)
      continue;
    /* A counted reference: callers free what they get, cached or fetched. */
    if (md_cache[i] && EVP_MD_up_ref(md_cache[i]))
      return md_cache[i];
    break;
  }
  name = akv_mech_hash_name(hash);
  return name ? EVP_MD_fetch(akv_libctx(), name, NULL) : NULL;
}
