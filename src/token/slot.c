/* SPDX-License-Identifier: Apache-2.0 */
/* Slots and tokens: one per configured vault, in config order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "store/cache.h"
#include "token/pin.h"
#include "core/module.h"
#include "token/slot.h"
#include "util/log.h"
#include "util/serial.h"

static void slot_clear(struct akv_slot *slot)
{
  akv_cache_free(slot->cache);
  slot->cache = NULL;
  kv_client_free(slot->client);
  slot->client = NULL;
  kv_cred_free(slot->own_cred);
  slot->own_cred = NULL;
}

static CK_RV slot_init(struct akv_slot *slot, CK_SLOT_ID id, const struct akv_slot_config *sc,
                       const struct akv_config *cfg, struct kv_http *http, struct kv_cred *def_cred)
{
  struct kv_client_opts co;
  kv_rc rc;
  CK_RV rv = CKR_OK;

  memset(slot, 0, sizeof(*slot));
  slot->id = id;
  slot->cfg = sc;
  slot->http = http;
  if (akv_vault_serial(akv_libctx(), sc->url, slot->serial) != 0) {
    rv = CKR_GENERAL_ERROR;
    goto out;
  }
  akv_pad((unsigned char *)slot->label, sizeof(slot->label) - 1, sc->label ? sc->label : sc->url);
  slot->label[sizeof(slot->label) - 1] = '\0';
  /* No PIN, no token: the credential is built at the first login (akv_slot_open_credential),
   * from a key only the PIN opens. */
  if (sc->pin_certificate) {
    if (!akv_pin_key_file_encrypted((sc->has_cred ? &sc->cred : &cfg->cred)->certificate_path)) {
      rv = CKR_GENERAL_ERROR;
      goto out;
    }
    goto cache;
  }
  if (sc->has_cred) {
    rc = kv_cred_new(http, &sc->cred, &slot->own_cred);
    if (rc != KV_OK) {
      akv_err(AKV_LOGC_GEN, "slot %lu (%s): credential: %s", (unsigned long)id, sc->url,
              kv_rc_str(rc));
      rv = akv_rv_nomem_or(rc, CKR_GENERAL_ERROR);
      goto out;
    }
  }
  memset(&co, 0, sizeof(co));
  co.url = sc->url;
  co.api_version = cfg->api_version;
  co.kind = sc->kind;
  rc = kv_client_new(http, slot->own_cred ? slot->own_cred : def_cred, &co, &slot->client);
  if (rc == KV_OK)
    rc = kv_client_add_replicas(slot->client, (const char *const *)sc->replicas, sc->n_replicas,
                                &sc->quota);
  if (rc != KV_OK) {
    akv_err(AKV_LOGC_GEN, "slot %lu (%s): client: %s", (unsigned long)id, sc->url, kv_rc_str(rc));
    rv = akv_rv_nomem_or(rc, CKR_GENERAL_ERROR);
    goto out;
  }
cache:
  slot->cache = akv_cache_new(slot);
  if (!slot->cache)
    rv = CKR_HOST_MEMORY;
out:
  if (rv != CKR_OK)
    slot_clear(slot);
  return rv;
}

CK_RV akv_slots_new(const struct akv_config *cfg, struct kv_http *http, struct kv_cred *def_cred,
                    struct akv_slot **out, size_t *n)
{
  struct akv_slot *slots = NULL;
  size_t i;
  CK_RV rv = CKR_OK;

  *out = NULL;
  *n = 0;
  if (cfg->n_slots == 0) {
    /* Installed system-wide through p11-kit, the module is loaded by every program: no vault
     * configured is not an error, just an empty slot list. */
    akv_info(AKV_LOGC_GEN, "no vault configured: no slots");
    goto out;
  }
  slots = calloc(cfg->n_slots, sizeof(*slots));
  if (!slots) {
    rv = CKR_HOST_MEMORY;
    goto out;
  }
  for (i = 0; i < cfg->n_slots; i++) {
    rv = slot_init(&slots[i], (CK_SLOT_ID)i, &cfg->slots[i], cfg, http, def_cred);
    if (rv != CKR_OK) {
      akv_slots_free(slots, i);
      slots = NULL;
      goto out;
    }
  }
  *out = slots;
  *n = cfg->n_slots;
out:
  return rv;
}

void akv_slots_free(struct akv_slot *slots, size_t n)
{
  size_t i;
  if (!slots)
    return;
  for (i = 0; i < n; i++)
    slot_clear(&slots[i]);
  free(slots);
}

CK_RV akv_slot_open_credential(struct akv_slot *slot, const unsigned char *pin, size_t len)
{
  const struct akv_config *cfg = akv_config();
  const struct akv_slot_config *sc = slot->cfg;
  struct akv_cred_config cc;
  struct kv_client_opts co;
  struct kv_cred *cred = NULL;
  struct kv_client *client = NULL;
  char *password = NULL;
  kv_rc rc = KV_E_NOMEM;

  if (slot->client)
    return CKR_OK;
  password = malloc(len + 1);
  if (!password)
    goto out;
  if (len)
    memcpy(password, pin, len);
  password[len] = '\0';
  /* A copy of the configured credential with the PIN as the key's password (kv_cred_new copies
   * it; this one is wiped below). */
  cc = sc->has_cred ? sc->cred : cfg->cred;
  cc.certificate_password = password;
  rc = kv_cred_new(slot->http, &cc, &cred);
  if (rc != KV_OK)
    goto out;
  memset(&co, 0, sizeof(co));
  co.url = sc->url;
  co.api_version = cfg->api_version;
  co.kind = sc->kind;
  rc = kv_client_new(slot->http, cred, &co, &client);
  if (rc == KV_OK)
    rc = kv_client_add_replicas(client, (const char *const *)sc->replicas, sc->n_replicas,
                                &sc->quota);
  if (rc != KV_OK)
    goto out;
  /* Published once; nothing reads them before (searches find nothing until then). */
  akv_lock();
  slot->own_cred = cred;
  slot->client = client;
  akv_unlock();
  cred = NULL;
  client = NULL;
out:
  if (rc != KV_OK)
    akv_err(AKV_LOGC_GEN, "slot %lu (%s): credential opened with the PIN: %s",
            (unsigned long)slot->id, sc->url, kv_rc_str(rc));
  kv_client_free(client);
  kv_cred_free(cred);
  if (password) {
    OPENSSL_cleanse(password, len + 1);
    free(password);
  }
  return akv_rv_nomem_or(rc, CKR_FUNCTION_FAILED);
}

void akv_slot_invalidate(struct akv_slot *slot)
{
  if (slot && slot->cache)
    akv_cache_invalidate(slot->cache);
}

void akv_slot_info(const struct akv_slot *slot, CK_SLOT_INFO *info)
{
  char desc[128];

  memset(info, 0, sizeof(*info));
  snprintf(desc, sizeof(desc), "%s %s",
           slot->cfg->kind == AKV_VAULT_MHSM ? "Azure Managed HSM" : "Azure Key Vault",
           slot->cfg->url);
  akv_pad(info->slotDescription, sizeof(info->slotDescription), desc);
  akv_pad(info->manufacturerID, sizeof(info->manufacturerID), "akv-pkcs11");
  /* The token is always present; it is neither removable nor a hardware slot. */
  info->flags = CKF_TOKEN_PRESENT;
  info->hardwareVersion.major = 0;
  info->hardwareVersion.minor = 0;
  info->firmwareVersion.major = AKV_VERSION_MAJOR; /* the module's version (meson.build) */
  info->firmwareVersion.minor = AKV_VERSION_MINOR;
}

void akv_slot_token_info(const struct akv_slot *slot, CK_TOKEN_INFO *info)
{
  memset(info, 0, sizeof(*info));
  akv_pad(info->label, sizeof(info->label), slot->label);
  akv_pad(info->manufacturerID, sizeof(info->manufacturerID), "akv-pkcs11");
  akv_pad(info->model, sizeof(info->model),
          slot->cfg->kind == AKV_VAULT_MHSM ? "Managed HSM" : "Key Vault");
  akv_pad(info->serialNumber, sizeof(info->serialNumber), slot->serial);
  /* Azure credentials authorize; with "login": "required" the user PIN guards the private keys
   * and secrets too (docs/security.md "Login"). A wrong PIN sets CKF_USER_PIN_COUNT_LOW until the
   * next right one; there is no lockout, so never CKF_USER_PIN_FINAL_TRY or CKF_USER_PIN_LOCKED. */
  info->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
  if (slot->cfg->login_required)
    info->flags |= CKF_LOGIN_REQUIRED;
  if (slot->pin_failures)
    info->flags |= CKF_USER_PIN_COUNT_LOW;
  if (slot->cfg->kind == AKV_VAULT_MHSM)
    info->flags |= CKF_RNG;
  if (slot->cfg->read_only)
    info->flags |= CKF_WRITE_PROTECTED;
  info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulSessionCount = slot->n_sessions;
  info->ulMaxRwSessionCount = slot->cfg->read_only ? 0 : CK_EFFECTIVELY_INFINITE;
  info->ulRwSessionCount = slot->n_rw_sessions;
  info->ulMaxPinLen = AKV_PIN_MAX;
  info->ulMinPinLen = 0;
  info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->hardwareVersion.major = 0;
  info->hardwareVersion.minor = 0;
  info->firmwareVersion.major = AKV_VERSION_MAJOR; /* the module's version (meson.build) */
  info->firmwareVersion.minor = AKV_VERSION_MINOR;
  /* No CKF_CLOCK_ON_TOKEN: utcTime is not meaningful and stays blank. */
  memset(info->utcTime, ' ', sizeof(info->utcTime));
}
