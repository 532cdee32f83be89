/* SPDX-License-Identifier: Apache-2.0 */
/* The mechanism table (docs/mechanisms.md): one row per PKCS#11 mechanism drives
 * C_GetMechanismList/Info, *Init validation and the choice of the Key Vault (JWA) algorithm. */
#ifndef AKV_MECH_H
#define AKV_MECH_H

#include "core/akv.h"

/* What a mechanism does; the operation code dispatches on this, never on CKM_ values. */
enum akv_mfam {
  AKV_MF_DIGEST = 1, /* CKM_SHA_1 .. CKM_SHA512: local hash */
  AKV_MF_RSA_PKCS, /* CKM_RSA_PKCS (sign: DigestInfo -> RS*; encrypt: RSA1_5), CKM_SHAx_RSA_PKCS */
  AKV_MF_RSA_PSS,  /* CKM_RSA_PKCS_PSS, CKM_SHAx_RSA_PKCS_PSS -> PS* */
  AKV_MF_RSA_OAEP, /* CKM_RSA_PKCS_OAEP -> RSA-OAEP / RSA-OAEP-256 */
  AKV_MF_ECDSA,    /* CKM_ECDSA, CKM_ECDSA_SHAx -> ES* */
  AKV_MF_HMAC,     /* CKM_SHAx_HMAC -> HS* (remote) or local with session keys */
  AKV_MF_AES_GCM,
  AKV_MF_AES_CBC,
  AKV_MF_AES_CBC_PAD,
  AKV_MF_AES_KW,  /* RFC 3394 */
  AKV_MF_AES_KWP, /* RFC 5649 */
  AKV_MF_KEYGEN,  /* CKM_AES_KEY_GEN, CKM_GENERIC_SECRET_KEY_GEN: local session keys */
};

/* Slot kinds a row is offered on / computed in the vault on (CKF_HW). */
#define AKV_MW_KV (1u << AKV_VAULT_KEYVAULT)
#define AKV_MW_MHSM (1u << AKV_VAULT_MHSM)
#define AKV_MW_ALL (AKV_MW_KV | AKV_MW_MHSM)

#define AKV_NO_KEY_TYPE ((CK_KEY_TYPE)-1)

struct akv_mech {
  CK_MECHANISM_TYPE type;
  const char *name;
  enum akv_mfam fam;
  CK_KEY_TYPE key_type;        /* CKK_RSA, CKK_EC, CKK_AES, CKK_GENERIC_SECRET or AKV_NO_KEY_TYPE */
  CK_MECHANISM_TYPE hash;      /* built-in hash (hash-and-sign, HMAC, digest), 0 for the raw ones */
  CK_ULONG min_size, max_size; /* as PKCS#11 counts them: bits for RSA/EC, bytes for AES/HMAC */
  CK_FLAGS flags;              /* CKF_SIGN, CKF_ENCRYPT... (CKF_HW is added per slot kind) */
  unsigned offered;            /* AKV_MW_*: slot kinds listing the row */
  unsigned hw;                 /* AKV_MW_*: slot kinds where the vault computes it */
};

/* Row for a mechanism, or NULL. */
const struct akv_mech *akv_mech_find(CK_MECHANISM_TYPE type);

/* Row for a mechanism if offered on that vault kind, or NULL (-> CKR_MECHANISM_INVALID). */
const struct akv_mech *akv_mech_for_slot(enum akv_vault_kind kind, CK_MECHANISM_TYPE type);

/* C_GetMechanismList / C_GetMechanismInfo bodies for a vault kind. */
CK_RV akv_mech_list(enum akv_vault_kind kind, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count);
CK_RV akv_mech_info(enum akv_vault_kind kind, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);

/* Hash facts for CKM_SHA_1..CKM_SHA512 (0 / NULL when unknown). */
size_t akv_mech_hash_len(CK_MECHANISM_TYPE hash);
const char *akv_mech_hash_name(CK_MECHANISM_TYPE hash); /* OpenSSL name: "SHA256" ... */
CK_RSA_PKCS_MGF_TYPE akv_mech_hash_mgf(CK_MECHANISM_TYPE hash);
CK_MECHANISM_TYPE akv_mech_hash_by_len(size_t len); /* SHA-256/384/512 by digest length */

/* JWA names (NULL when the service has no such algorithm). */
const char *akv_mech_jwa_rs(CK_MECHANISM_TYPE hash);
const char *akv_mech_jwa_ps(CK_MECHANISM_TYPE hash);
const char *akv_mech_jwa_hs(CK_MECHANISM_TYPE hash);
const char *akv_mech_jwa_es(enum kv_crv crv);
const char *akv_mech_jwa_oaep(CK_MECHANISM_TYPE hash);
const char *akv_mech_jwa_aes(enum akv_mfam fam, size_t key_bytes);

/* The service's ECDSA digest size for a curve (32/48/64), the size of one of r and s (32/48/66)
 * and the bit length of the group order (256/384/521); 0 if unknown. */
size_t akv_mech_ec_digest_len(enum kv_crv crv);
size_t akv_mech_ec_field_len(enum kv_crv crv);
size_t akv_mech_ec_order_bits(enum kv_crv crv);

/* Recognises CKM_RSA_PKCS sign input that an RS* algorithm can sign: only the canonical DER
 * DigestInfo (NULL parameters, minimal lengths, no trailing bytes) of SHA-256/384/512, because the
 * service rebuilds exactly that encoding; sets *hash and *digest (points into der). Anything else
 * (SHA-1, other hashes, other bytes) gives CKR_DATA_INVALID: the caller signs it with RSNULL. */
CK_RV akv_mech_digestinfo_parse(const unsigned char *der, size_t len, CK_MECHANISM_TYPE *hash,
                                const unsigned char **digest);

#endif
