/* SPDX-License-Identifier: Apache-2.0 */
/* Slots and tokens (model-internal). */
#ifndef AKV_SLOT_H
#define AKV_SLOT_H

#include "core/akv.h"

/* Builds one slot per configured vault (clients and credentials, no network I/O). */
CK_RV akv_slots_new(const struct akv_config *cfg, struct kv_http *http, struct kv_cred *def_cred,
                    struct akv_slot **out, size_t *n);
/* Stops background work and frees the slots (wiping cached secrets). NULL ok. */
void akv_slots_free(struct akv_slot *slots, size_t n);

/* "pin": "certificate_password": the slot has no credential and no client until the first
 * successful login, which builds them with the PIN as the certificate key's password. Call with
 * the PIN already checked (akv_pin_opens_key) and login serialised; CKR_OK when the slot already
 * has its client. */
CK_RV akv_slot_open_credential(struct akv_slot *slot, const unsigned char *pin, size_t len);

void akv_slot_info(const struct akv_slot *slot, CK_SLOT_INFO *info);
/* Session counts and the login state are read under the module lock. */
void akv_slot_token_info(const struct akv_slot *slot, CK_TOKEN_INFO *info);

#endif
