/* SPDX-License-Identifier: Apache-2.0 */
/* The attestation behind a Managed HSM key's attestation data object (src/store/attest.h):
 * one GET /keys/{name}/{version}/attestation at the first read of its CKA_VALUE, the checks of
 * src/kv/attest.c plus the tie to the listed key (the same versioned kid and public key), then the
 * JSON kept until the object goes. The service's format (MRVL-1) has no key certificate, so there
 * is no attestation certificate object: a certificate with another public key must never share
 * the key's CKA_ID. The vendor's chain ends at the HSM card certificate, or at one of the slot's
 * attestation_root certificates when it has one (docs/config.md). docs/usage.md "Key attestation
 * for a CA" and docs/design.md "Decisions". */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "store/attest.h"
#include "store/attrs.h"
#include "util/log.h"

enum att_state { ATT_UNREAD = 0, ATT_READY, ATT_REFUSED };

struct akv_attest {
  int refs; /* atomic */
  struct akv_slot *slot;
  pthread_mutex_t lock;
  enum att_state state; /* under lock */
  char *json;           /* READY: kv_attestation_json, the data object's CKA_VALUE */
  size_t json_len;
  char *name, *version, *kid; /* the key version, pinned */
  unsigned char *spki;        /* its SubjectPublicKeyInfo (RSA/EC), else NULL */
  size_t spki_len;
};

struct akv_attest *akv_attest_new(struct akv_slot *slot, const char *name, const char *version,
                                  const char *kid, const unsigned char *spki, size_t spki_len)
{
  struct akv_attest *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->refs = 1;
  a->slot = slot;
  if (pthread_mutex_init(&a->lock, NULL) != 0) {
    free(a);
    return NULL;
  }
  a->name = strdup(name ? name : "");
  a->version = strdup(version ? version : "");
  a->kid = strdup(kid ? kid : "");
  if (spki_len && (a->spki = malloc(spki_len))) {
    memcpy(a->spki, spki, spki_len);
    a->spki_len = spki_len;
  }
  if (!a->name || !a->version || !a->kid || (spki_len && !a->spki)) {
    akv_attest_unref(a);
    return NULL;
  }
  return a;
}

struct akv_attest *akv_attest_ref(struct akv_attest *a)
{
  if (a)
    __atomic_add_fetch(&a->refs, 1, __ATOMIC_ACQ_REL);
  return a;
}

void akv_attest_unref(struct akv_attest *a)
{
  if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  free(a->json);
  free(a->name);
  free(a->version);
  free(a->kid);
  free(a->spki);
  pthread_mutex_destroy(&a->lock);
  free(a);
}

int akv_attest_lazy(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
  return cls == CKO_DATA && type == CKA_VALUE;
}

int akv_attest_asked(const CK_ATTRIBUTE *t, CK_ULONG n)
{
  CK_ULONG i;
  for (i = 0; i < n; i++) {
    if (t[i].type == CKA_LABEL || t[i].type == CKA_APPLICATION || t[i].type == CKA_AKV_ATTESTATION)
      return 1;
  }
  return 0;
}

int akv_attest_refused(struct akv_attest *a)
{
  int r;
  pthread_mutex_lock(&a->lock);
  r = a->state == ATT_REFUSED;
  pthread_mutex_unlock(&a->lock);
  return r;
}

/* ---- the fetch ------------------------------------------------------------------------------ */

/* Failures a later read may not see: the network, the service's load, the credential, a
 * permission not granted yet. Anything else (a malformed or unverifiable reply, a key without
 * attestation) stays the answer for this key version. */
static int transient(kv_rc rc)
{
  switch (rc) {
  case KV_E_NOMEM:
  case KV_E_FORBIDDEN:
  case KV_E_UNAUTHORIZED:
  case KV_E_AUTH:
  case KV_E_THROTTLED:
  case KV_E_SERVER:
  case KV_E_NETWORK:
  case KV_E_TIMEOUT:
    return 1;
  default:
    return 0;
  }
}

/* The reply describes the key version the objects belong to: its versioned kid and its public
 * key (the checks of kv_attestation_verify tie the blobs to the reply's key). */
static int same_key(const struct akv_attest *a, const struct kv_attestation *att)
{
  unsigned char *spki = NULL;
  size_t len = 0;
  int same;
  if (!att->key->kid || strcasecmp(att->key->kid, a->kid) != 0)
    return 0;
  if (!a->spki)
    return att->key->kty == KV_KTY_OCT;
  if (kv_key_spki_der(att->key, akv_libctx(), &spki, &len) != KV_OK)
    return 0;
  same = len == a->spki_len && memcmp(spki, a->spki, len) == 0;
  free(spki);
  return same;
}

/* Reads and checks the attestation; on success fills a (under its lock), else refuses it or
 * reports a failure a later read may not see. */
static CK_RV fetch(struct akv_attest *a, kv_rc *failed_rc, long *failed_http)
{
  struct kv_attestation *att = NULL;
  struct kv_attest_result res;
  const struct akv_slot_config *sc = a->slot->cfg;
  STACK_OF(X509) *roots = sc ? sc->attestation_roots : NULL;
  size_t json_len = 0;
  char *json = NULL, roots_name[1024] = "";
  kv_rc rc;

  memset(&res, 0, sizeof(res));
  if (roots) /* names the slot in the warning of a chain that ends at another root */
    snprintf(roots_name, sizeof(roots_name), "slot %s attestation_root %s", sc->label,
             sc->attestation_root);
  rc = kv_get_key_attestation(a->slot->client, a->name, a->version, &att, failed_http);
  if (rc != KV_OK && transient(rc)) {
    akv_warn(AKV_LOGC_CACHE, "key %s: reading its attestation: %s (tried again at the next read)",
             a->name, kv_rc_str(rc));
    *failed_rc = rc;
    return akv_rv_nomem_or(rc, CKR_DEVICE_ERROR);
  }
  if (rc == KV_E_PROTOCOL) {
    /* kv_get_key_attestation logged what is malformed. */
  } else if (rc != KV_OK) {
    akv_warn(AKV_LOGC_CACHE, "key %s: the vault gives no attestation for version %s: %s", a->name,
             a->version, kv_rc_str(rc));
  } else if ((rc = kv_attestation_verify(att, akv_libctx(), roots, roots_name, &res)) != KV_OK) {
    /* kv_attestation_verify logged the check that failed. */
  } else if (!same_key(a, att)) {
    akv_warn(AKV_LOGC_CACHE,
             "key %s: the attestation describes another key than version %s's (%s), refused",
             a->name, a->version, att->key->kid ? att->key->kid : "no kid");
    rc = KV_E_PROTOCOL;
  } else if (!(json = kv_attestation_json(att, &json_len))) {
    kv_attest_result_clear(&res);
    kv_attestation_free(att);
    return CKR_HOST_MEMORY;
  }
  kv_attest_result_clear(&res);
  kv_attestation_free(att);
  pthread_mutex_lock(&a->lock);
  if (a->state == ATT_UNREAD && rc == KV_OK) {
    a->state = ATT_READY;
    a->json = json;
    a->json_len = json_len;
    json = NULL;
  } else if (a->state == ATT_UNREAD) {
    a->state = ATT_REFUSED;
    akv_info(AKV_LOGC_CACHE,
             "key %s: its attestation object is withdrawn (the key itself is unaffected)", a->name);
  }
  pthread_mutex_unlock(&a->lock);
  free(json);
  return CKR_OK;
}

CK_RV akv_attest_value(struct akv_attest *a, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type,
                       const void **p, size_t *len, kv_rc *failed_rc, long *failed_http)
{
  enum att_state st;
  CK_RV rv;

  pthread_mutex_lock(&a->lock);
  st = a->state;
  pthread_mutex_unlock(&a->lock);
  if (st == ATT_UNREAD && (rv = fetch(a, failed_rc, failed_http)) != CKR_OK)
    return rv;
  /* Once READY or REFUSED the state and the values never change. */
  pthread_mutex_lock(&a->lock);
  st = a->state;
  pthread_mutex_unlock(&a->lock);
  if (st != ATT_READY)
    return CKR_OBJECT_HANDLE_INVALID;
  if (cls != CKO_DATA || type != CKA_VALUE)
    return CKR_ATTRIBUTE_TYPE_INVALID;
  *p = a->json;
  *len = a->json_len;
  return CKR_OK;
}
