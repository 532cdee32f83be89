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

#endif
