/* SPDX-License-Identifier: Apache-2.0 */
/* A Managed HSM key's attestation data object (src/store/object.c akv_objects_attest,
 * src/store/attest.c) with the store layer and the fake backend, whose vault has no
 * attestation (docs/usage.md "Key attestation for a CA"): which keys get them, their attributes
 * before any read, the searches they answer, no request before a read of their content, a refusal
 * withdrawing them, a transient failure tried again. The content itself is checked against the
 * emulator by the integration test attest-objects. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/module.h"
#include "core/state.h"
#include "fake_kv.h"
#include "store/cache.h"
#include "store/handles.h"
#include "store/object.h"
#include "store/snapshot.h"

extern int fake_kv_attestation_calls; /* fake_kv.c */

static int64_t test_clock(void)
{
  return 1800000000;
}

static struct akv_slot_config sc;
static struct akv_slot slot;

static void slot_setup(enum akv_vault_kind kind)
{
  struct kv_client_opts co = {FAKE_VAULT_URL, "7.6", kind};
  fake_kv_reset();
  fake_kv_attestation_calls = 0;
  akv_set_clock(test_clock);
  atomic_store(&akv_state.next_handle, 1);
  assert_int_equal(akv_handles_init(), CKR_OK);
  memset(&sc, 0, sizeof(sc));
  sc.url = (char *)FAKE_VAULT_URL;
  sc.kind = kind;
  sc.objects = AKV_OBJ_KEYS;
  sc.ttl_s = 300;
  sc.secret_ttl_s = 3600;
  sc.stale_if_error_s = 3600;
  sc.prefetch_keys = 100;
  sc.login_required = 1; /* attestation objects stay public all the same */
  memset(&slot, 0, sizeof(slot));
  slot.cfg = &sc;
  assert_int_equal(kv_client_new(NULL, NULL, &co, &slot.client), KV_OK);
  slot.cache = akv_cache_new(&slot);
  assert_non_null(slot.cache);
}

static int setup_mhsm(void **state)
{
  (void)state;
  slot_setup(AKV_VAULT_MHSM);
  return 0;
}

static int setup_vault(void **state)
{
  (void)state;
  slot_setup(AKV_VAULT_KEYVAULT);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  akv_cache_free(slot.cache);
  kv_client_free(slot.client);
  akv_handles_free();
  fake_kv_fail(KV_OK);
  return 0;
}

/* The snapshot's object of class cls labelled label, or NULL. */
static struct akv_object *find(struct akv_snapshot *snap, CK_OBJECT_CLASS cls, const char *label)
{
  size_t i;
  for (i = 0; i < snap->n; i++) {
    const CK_ATTRIBUTE *a = akv_object_attr(akv_snapshot_obj(snap, i), CKA_LABEL);
    if (akv_snapshot_obj(snap, i)->cls == cls && a && a->ulValueLen == strlen(label) &&
        memcmp(a->pValue, label, a->ulValueLen) == 0)
      return akv_snapshot_obj(snap, i);
  }
  return NULL;
}

static int matches(struct akv_object *obj, const CK_ATTRIBUTE *t, CK_ULONG n)
{
  struct akv_fetch_status failed = {KV_OK, 0};
  return akv_object_matches(obj, t, n, &failed);
}

/* Every key gets a data object and no certificate (the service's format has no key certificate);
 * built with the listing, nothing fetched; its attributes before any read; the searches it
 * answers. */
static void test_objects_and_searches(void **state)
{
  static const char label[] = "signer attestation";
  CK_OBJECT_CLASS cert_cls = CKO_CERTIFICATE, data_cls = CKO_DATA;
  CK_BBOOL yes = CK_TRUE;
  struct akv_snapshot *snap = NULL;
  struct akv_object *priv, *data, *aes_data;
  struct akv_fetch_status failed = {KV_OK, 0};
  unsigned char kid[256], app[64];
  CK_BBOOL priv_attr = CK_TRUE;
  CK_ATTRIBUTE r[3] = {{CKA_PRIVATE, &priv_attr, sizeof(priv_attr)},
                       {CKA_AKV_KID, kid, sizeof(kid)},
                       {CKA_APPLICATION, app, sizeof(app)}};
  (void)state;
  fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  fake_kv_add_key("aes", "v1", KV_KTY_OCT, 0, KV_OP_ENCRYPT | KV_OP_DECRYPT);
  assert_int_equal(akv_cache_get(slot.cache, &snap, NULL), CKR_OK);
  assert_int_equal(snap->n, 2 + 1 + 1 + 1);
  priv = find(snap, CKO_PRIVATE_KEY, "signer");
  data = find(snap, CKO_DATA, label);
  aes_data = find(snap, CKO_DATA, "aes attestation");
  assert_non_null(priv);
  assert_non_null(data);
  assert_non_null(aes_data);
  assert_null(find(snap, CKO_CERTIFICATE, label)); /* no attestation certificate */
  assert_null(find(snap, CKO_CERTIFICATE, "aes attestation"));
  assert_string_equal(data->src, priv->src); /* it follows the key */
  assert_true(data->handle != priv->handle);
  assert_null(akv_object_attr(data, CKA_ID)); /* never the key's CKA_ID */

  /* Static attributes read without a request: public, the key's kid, the application. */
  assert_int_equal(akv_object_get_attrs(data, r, 3, &failed), CKR_OK);
  assert_int_equal(fake_kv_attestation_calls, 0);
  {
    const CK_ATTRIBUTE *pkid = akv_object_attr(priv, CKA_AKV_KID);
    assert_int_equal(r[1].ulValueLen, pkid->ulValueLen);
    assert_memory_equal(kid, pkid->pValue, pkid->ulValueLen);
    assert_int_equal(r[2].ulValueLen, strlen(AKV_ATTESTATION_APPLICATION));
    assert_memory_equal(app, AKV_ATTESTATION_APPLICATION, r[2].ulValueLen);
  }
  assert_int_equal(priv_attr, CK_FALSE);
  assert_false(data->is_private);

  /* Searches: by CKA_ID, by class or empty see nothing; by label, application or the vendor
   * attribute they do (no request: the values matched are the stored ones); a certificate by the
   * attestation label matches nothing. */
  {
    const CK_ATTRIBUTE *pid = akv_object_attr(priv, CKA_ID);
    CK_ATTRIBUTE by_id = {CKA_ID, pid->pValue, pid->ulValueLen};
    CK_ATTRIBUTE by_cls = {CKA_CLASS, &data_cls, sizeof(data_cls)};
    CK_ATTRIBUTE by_label[2] = {{CKA_CLASS, &data_cls, sizeof(data_cls)},
                                {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE cert_label[2] = {{CKA_CLASS, &cert_cls, sizeof(cert_cls)},
                                  {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE by_app[2] = {{CKA_CLASS, &data_cls, sizeof(data_cls)},
                              {CKA_APPLICATION, (void *)AKV_ATTESTATION_APPLICATION,
                               strlen(AKV_ATTESTATION_APPLICATION)}};
    CK_ATTRIBUTE by_vendor = {CKA_AKV_ATTESTATION, &yes, sizeof(yes)};
    CK_ATTRIBUTE wrong_label = {CKA_LABEL, "signer", 6};
    assert_int_equal(matches(data, &by_id, 1), 0);
    assert_int_equal(matches(priv, &by_id, 1), 1);
    assert_int_equal(matches(data, &by_cls, 1), 0);
    assert_int_equal(matches(data, NULL, 0), 0);
    assert_int_equal(matches(data, by_label, 2), 1);
    assert_int_equal(matches(data, cert_label, 2), 0);
    assert_int_equal(matches(data, by_app, 2), 1);
    assert_int_equal(matches(aes_data, by_app, 2), 1);
    assert_int_equal(matches(data, &by_vendor, 1), 1);
    assert_int_equal(matches(priv, &by_vendor, 1), 0);
    assert_int_equal(matches(data, &wrong_label, 1), 0);
  }
  assert_int_equal(fake_kv_attestation_calls, 0);
  akv_snapshot_unref(snap);
}

/* A transient failure is that read's only (CKR_DEVICE_ERROR, the status handed back); the vault's
 * "no attestation" withdraws the object: CKR_OBJECT_HANDLE_INVALID, no longer matched, no
 * further request; the key's own objects are untouched. */
static void test_refused_and_transient(void **state)
{
  static const char label[] = "ec attestation";
  struct akv_snapshot *snap = NULL;
  struct akv_object *priv, *data;
  struct akv_fetch_status failed = {KV_OK, 0};
  unsigned char buf[4096];
  CK_ATTRIBUTE v = {CKA_VALUE, buf, sizeof(buf)};
  CK_ATTRIBUTE lab = {CKA_LABEL, (void *)label, strlen(label)};
  CK_ATTRIBUTE sign_t;
  CK_BBOOL can_sign = CK_FALSE;
  (void)state;
  fake_kv_add_key("ec", "v1", KV_KTY_EC, 0, KV_OP_SIGN | KV_OP_VERIFY);
  assert_int_equal(akv_cache_get(slot.cache, &snap, NULL), CKR_OK);
  priv = find(snap, CKO_PRIVATE_KEY, "ec");
  data = find(snap, CKO_DATA, label);
  assert_non_null(data);

  fake_kv_fail(KV_E_SERVER);
  assert_int_equal(akv_object_get_attrs(data, &v, 1, &failed), CKR_DEVICE_ERROR);
  assert_int_equal(failed.rc, KV_E_SERVER);
  assert_int_equal(failed.http_status, 503);
  assert_int_equal(v.ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(matches(data, &lab, 1), 1); /* still offered */
  fake_kv_fail(KV_OK);

  failed.rc = KV_OK;
  v.ulValueLen = sizeof(buf);
  assert_int_equal(akv_object_get_attrs(data, &v, 1, &failed), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(fake_kv_attestation_calls, 2);
  /* The refusal stays, without a new request. */
  v.ulValueLen = sizeof(buf);
  assert_int_equal(akv_object_get_attrs(data, &v, 1, &failed), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(akv_object_get_attrs(data, &lab, 1, &failed), CKR_OBJECT_HANDLE_INVALID);
  assert_int_equal(matches(data, &lab, 1), 0);
  assert_int_equal(fake_kv_attestation_calls, 2);
  /* The key is unaffected. */
  sign_t.type = CKA_SIGN;
  sign_t.pValue = &can_sign;
  sign_t.ulValueLen = sizeof(can_sign);
  assert_int_equal(akv_object_get_attrs(priv, &sign_t, 1, &failed), CKR_OK);
  assert_int_equal(can_sign, CK_TRUE);
  akv_snapshot_unref(snap);
}

/* A Key Vault's keys have no attestation objects. */
static void test_vault_has_none(void **state)
{
  struct akv_snapshot *snap = NULL;
  (void)state;
  fake_kv_add_key("signer", "v1", KV_KTY_RSA, 0, KV_OP_SIGN | KV_OP_VERIFY);
  assert_int_equal(akv_cache_get(slot.cache, &snap, NULL), CKR_OK);
  assert_int_equal(snap->n, 2);
  assert_null(akv_snapshot_obj(snap, 0)->att);
  assert_null(akv_snapshot_obj(snap, 1)->att);
  akv_snapshot_unref(snap);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_objects_and_searches, setup_mhsm, teardown),
      cmocka_unit_test_setup_teardown(test_refused_and_transient, setup_mhsm, teardown),
      cmocka_unit_test_setup_teardown(test_vault_has_none, setup_vault, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
