/* SPDX-License-Identifier: Apache-2.0 */
/* akv-pkcs11: vendor-defined attributes for applications (same values as the module uses).
 * Include after a PKCS#11 header (pkcs11.h) that defines CKA_VENDOR_DEFINED. */
#ifndef AKV_PKCS11_PUBLIC_H
#define AKV_PKCS11_PUBLIC_H

/* Full Key Vault identifier of the object's exact version (UTF-8, not NUL-terminated), e.g.
 * https://NAME.vault.azure.net/keys/KEY/VERSION. */
#ifndef CKA_AKV_KID
#define CKA_AKV_KID (CKA_VENDOR_DEFINED | 0x414B5601UL)
#endif
/* The object's version (UTF-8). */
#ifndef CKA_AKV_VERSION
#define CKA_AKV_VERSION (CKA_VENDOR_DEFINED | 0x414B5602UL)
#endif
/* CK_BBOOL: the key is HSM-protected (RSA-HSM, EC-HSM, oct-HSM). */
#ifndef CKA_AKV_HSM
#define CKA_AKV_HSM (CKA_VENDOR_DEFINED | 0x414B5603UL)
#endif
/* CK_BBOOL, TRUE on the attestation object of a Managed HSM key (the data object holding the whole
 * attestation), absent on every other object. Attestation objects are found only by a search
 * whose template names this attribute, CKA_LABEL or CKA_APPLICATION (docs/usage.md "Key
 * attestation for a CA"). */
#ifndef CKA_AKV_ATTESTATION
#define CKA_AKV_ATTESTATION (CKA_VENDOR_DEFINED | 0x414B5604UL)
#endif
/* CKA_APPLICATION of the attestation data object, whose CKA_VALUE is the attestation as JSON. */
#define AKV_ATTESTATION_APPLICATION "Azure Managed HSM key attestation"
/* The attestation objects' CKA_LABEL is the key's label followed by this. */
#define AKV_ATTESTATION_LABEL_SUFFIX " attestation"

#endif
