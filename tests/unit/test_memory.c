/* SPDX-License-Identifier: Apache-2.0 */
/* The per-key storage of src/store/object.c (docs/performance.md "Memory per cached key"): a
 * refresh that changes nothing allocates nothing per key (the same objects, key entries and strings
 * in both snapshots, one handle registry entry per key version, the pending keys of a listing in
 * one allocation), vault keys' attributes are built when asked with the values OpenSSL gives,
 * and the EVP_PKEY is built on first use and dropped by a refresh once unused for the ttl. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "model_helpers.h"

#include "store/cache.h"
#include "store/handles.h"
#include "store/object.h"
#include "store/snapshot.h"

#define OPS (KV_OP_SIGN | KV_OP_VERIFY | KV_OP_ENCRYPT)

static CK_SESSION_HANDLE sess;

static int setup(void **state)
{
  (void)state;
  fake_kv_reset();
  t_clock_now = 1800000000;
  fake_kv_add_key("rsa1", "v1", KV_KTY_RSA, 0, OPS);
  fake_kv_add_key("ec1", "e1", KV_KTY_EC, 0, OPS);
  fake_kv_add_key("ec2", "e2", KV_KTY_EC, 1, OPS);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_kv_fail(KV_OK);
  assert_int_equal(C_Finalize(NULL), CKR_OK);
  return 0;
}

static CK_ULONG count_all(void)
{
  CK_OBJECT_HANDLE h[64];
  return t_find(sess, NULL, 0, h, 64);
}

static struct akv_snapshot *snapshot(void)
{
  struct akv_snapshot *snap = akv_cache_peek(akv_module_slot(0)->cache);
  assert_non_null(snap);
  return snap;
}

/* Lists, refreshes past the hard TTL with nothing changed in the vault, and checks that the new
 * snapshot holds the very same objects, key entries and source strings: no per-key allocation
 * was made twice. */
static void refresh_shares(const char *cfg)
{
  struct akv_snapshot *a, *b;
  size_t i, keys = 0;
  unsigned gets;

  assert_int_equal(t_init(cfg), CKR_OK);
  sess = t_open(0);
  assert_int_equal(count_all(), 6);
  a = snapshot();
  gets = fake_kv_calls.get_key;
  t_clock_now += 200; /* past the hard TTL (ttl 100): the next lookup lists again */
  assert_int_equal(count_all(), 6);
  assert_int_equal(fake_kv_calls.list_keys, 2);
  assert_int_equal(fake_kv_calls.get_key, gets); /* no key read again */
  b = snapshot();
  assert_true(a != b); /* a new snapshot was published... */
  assert_int_equal(a->n, b->n);
  for (i = 0; i < a->n; i++) {
    /* ...holding the same storage (both are sorted by handle). */
    assert_ptr_equal(akv_snapshot_obj(a, i), akv_snapshot_obj(b, i));
    assert_ptr_equal(akv_snapshot_obj(a, i)->keyent, akv_snapshot_obj(b, i)->keyent);
    assert_ptr_equal(akv_snapshot_obj(a, i)->src, akv_snapshot_obj(b, i)->src);
    if (akv_snapshot_obj(a, i)->keyent) {
      keys++;
      /* The private and public objects of a key share one entry, which holds their strings. */
      assert_null(akv_snapshot_obj(a, i)->attrs);
      assert_ptr_equal(akv_snapshot_obj(a, i)->key, &akv_snapshot_obj(a, i)->keyent->key);
      assert_ptr_equal(akv_snapshot_obj(a, i)->src, akv_snapshot_obj(a, i)->keyent->src);
    }
  }
  assert_int_equal(keys, 6);
  /* One handle registry entry per key version, none added by the refresh; a key's public object
   * has the handle after its private object's. */
  assert_int_equal(akv_handles_count(), 3);
  for (i = 0; i < b->n; i++) {
    if (akv_snapshot_obj(b, i)->cls == CKO_PUBLIC_KEY) {
      struct akv_object *priv = akv_snapshot_find(b, akv_snapshot_obj(b, i)->handle - 1);
      assert_non_null(priv);
      assert_int_equal(priv->cls, CKO_PRIVATE_KEY);
      assert_ptr_equal(priv->keyent, akv_snapshot_obj(b, i)->keyent);
    }
  }
  akv_snapshot_unref(a);
  akv_snapshot_unref(b);
}

static void test_refresh_shares_listed(void **state)
{
  (void)state;
  refresh_shares(T_CFG(",\"ttl\":100"));
}

/* The same for keys read on demand (prefetch_keys 0: every key pending until a search). */
static void test_refresh_shares_pending(void **state)
{
  (void)state;
  refresh_shares(T_CFG(",\"ttl\":100,\"prefetch_keys\":0"));
}

/* The pending keys of one listing are one allocation (entries and names), and have no handle. */
static void test_pending_one_block(void **state)
{
  struct akv_snapshot *snap = NULL;
  size_t i, named = 0;
  (void)state;
  assert_int_equal(t_init(T_CFG(",\"prefetch_keys\":0")), CKR_OK);
  assert_int_equal(akv_cache_get(akv_module_slot(0)->cache, &snap, NULL), CKR_OK);
  assert_non_null(snap);
  assert_int_equal(snap->n, 0);
  assert_int_equal(snap->n_lazy, 3);
  for (i = 0; i < snap->n_lazy; i++) {
    const struct akv_lazykey *lz = akv_snapshot_lazy(snap, i);
    assert_ptr_equal(lz->block, akv_snapshot_lazy(snap, 0)->block);
    assert_int_equal(lz->state, AKV_LAZY_PENDING);
    named += !strcmp(lz->name, "rsa1") || !strcmp(lz->name, "ec1") || !strcmp(lz->name, "ec2");
  }
  assert_int_equal(named, 3);
  assert_int_equal(akv_handles_count(), 0);
  akv_snapshot_unref(snap);
}

static struct akv_object *object(CK_OBJECT_CLASS cls, const char *label)
{
  CK_OBJECT_HANDLE h = t_find_one(sess, cls, label); /* lists first */
  struct akv_snapshot *snap = snapshot();
  struct akv_object *obj = akv_snapshot_find(snap, h);
  assert_non_null(obj);
  akv_object_ref(obj);
  akv_snapshot_unref(snap);
  return obj;
}

/* CKA_PUBLIC_KEY_INFO, CKA_EC_POINT and CKA_MODULUS built on demand are the bytes OpenSSL gives for
 * the same key, on both objects; a template on them matches. */
static void check_material(struct akv_object *obj)
{
  unsigned char spki[4096], mat[1024], *der = NULL, *p;
  CK_ATTRIBUTE t[2] = {{CKA_PUBLIC_KEY_INFO, spki, sizeof(spki)}, {0, mat, sizeof(mat)}};
  struct akv_fetch_status failed = {KV_OK, 0};
  EVP_PKEY *pk = akv_object_pkey(obj);
  int len;

  assert_non_null(pk);
  t[1].type = obj->key_type == CKK_RSA ? CKA_MODULUS : CKA_EC_POINT;
  assert_int_equal(akv_object_get_attrs(obj, t, 2, &failed), CKR_OK);
  len = i2d_PUBKEY(pk, &der);
  assert_true(len > 0);
  assert_int_equal(t[0].ulValueLen, (CK_ULONG)len);
  assert_memory_equal(spki, der, (size_t)len);
  OPENSSL_free(der);
  if (obj->key_type == CKK_EC) {
    unsigned char pt[200];
    size_t ptlen = 0;
    assert_true(EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", pt, sizeof(pt), &ptlen));
    /* DER OCTET STRING around the uncompressed point. */
    assert_int_equal(t[1].ulValueLen, ptlen + 2);
    assert_int_equal(mat[0], 0x04);
    assert_int_equal(mat[1], ptlen);
    assert_memory_equal(mat + 2, pt, ptlen);
  } else {
    BIGNUM *n = NULL;
    assert_true(EVP_PKEY_get_bn_param(pk, "n", &n));
    assert_int_equal(t[1].ulValueLen, (CK_ULONG)BN_num_bytes(n));
    p = malloc((size_t)BN_num_bytes(n));
    BN_bn2bin(n, p);
    assert_memory_equal(mat, p, t[1].ulValueLen);
    free(p);
    BN_free(n);
  }
  assert_int_equal(akv_object_matches(obj, t, 2, &failed), 1);
  mat[t[1].ulValueLen - 1] ^= 1;
  assert_int_equal(akv_object_matches(obj, t, 2, &failed), 0);
  EVP_PKEY_free(pk);
}

static void test_attributes_on_demand(void **state)
{
  struct akv_object *o;
  const CK_ATTRIBUTE *a;
  const char *labels[] = {"rsa1", "ec1"};
  size_t i;
  (void)state;
  assert_int_equal(t_init(T_CFG("")), CKR_OK);
  sess = t_open(0);
  for (i = 0; i < 2; i++) {
    o = object(CKO_PUBLIC_KEY, labels[i]);
    check_material(o);
    akv_object_unref(o);
    o = object(CKO_PRIVATE_KEY, labels[i]);
    check_material(o);
    /* Values through akv_object_attr (what src/token and src/crypto read). */
    a = akv_object_attr(o, CKA_LABEL);
    assert_non_null(a);
    assert_int_equal(a->ulValueLen, strlen(labels[i]));
    assert_memory_equal(a->pValue, labels[i], a->ulValueLen);
    a = akv_object_attr(o, CKA_SENSITIVE);
    assert_non_null(a);
    assert_int_equal(*(CK_BBOOL *)a->pValue, CK_TRUE);
    assert_null(akv_object_attr(o, CKA_VERIFY)); /* a public key's attribute */
    assert_null(akv_object_attr(o, CKA_VALUE_LEN));
    a = akv_object_attr(o, CKA_PUBLIC_KEY_INFO);
    assert_non_null(a);
    if (o->key_type == CKK_RSA) /* longer than the thread's storage: length only */
      assert_null(a->pValue);
    akv_object_unref(o);
  }
}

/* The EVP_PKEY is built at first use, shared, and dropped by a refresh after the ttl unused. */
static void test_pkey_on_demand(void **state)
{
  struct akv_object *priv, *pub;
  EVP_PKEY *a, *b;
  (void)state;
  assert_int_equal(t_init(T_CFG(",\"ttl\":100")), CKR_OK);
  sess = t_open(0);
  priv = object(CKO_PRIVATE_KEY, "ec1");
  pub = object(CKO_PUBLIC_KEY, "ec1");
  assert_ptr_equal(priv->keyent, pub->keyent);
  assert_null(pub->keyent->pkey); /* listing built none */
  assert_true(akv_object_has_pkey(pub));
  a = akv_object_pkey(pub);
  b = akv_object_pkey(priv);
  assert_non_null(a);
  assert_ptr_equal(a, b);
  assert_ptr_equal(pub->keyent->pkey, a);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
  /* Used within the ttl: a refresh keeps it. */
  t_clock_now += 50;
  akv_object_expire_value(pub, t_clock_now);
  assert_non_null(pub->keyent->pkey);
  /* Unused for the ttl: the refresh past the hard TTL drops it; the next use builds it again. */
  t_clock_now += 200;
  assert_int_equal(count_all(), 6);
  assert_null(pub->keyent->pkey);
  a = akv_object_pkey(pub);
  assert_non_null(a);
  EVP_PKEY_free(a);
  akv_object_unref(priv);
  akv_object_unref(pub);
}

/* akv_object_key_spki against OpenSSL for every curve (P-521's point needs a long DER length) and a
 * 4096-bit RSA key. */
static void test_spki_all_sizes(void **state)
{
  static const struct {
    const char *group;
    enum kv_crv crv;
  } curves[] = {{"P-256", KV_CRV_P256},
                {"P-384", KV_CRV_P384},
                {"P-521", KV_CRV_P521},
                {"secp256k1", KV_CRV_P256K}};
  unsigned char buf[4096], pt[200], nb[1024], eb[8], *der;
  size_t i, ptlen, fb;
  struct kv_key k;
  EVP_PKEY *pk;
  BIGNUM *n = NULL, *e = NULL;
  int len;
  (void)state;
  for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
    pk = EVP_EC_gen(curves[i].group);
    assert_non_null(pk);
    assert_true(EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", pt, sizeof(pt), &ptlen));
    fb = (ptlen - 1) / 2;
    memset(&k, 0, sizeof(k));
    k.kty = KV_KTY_EC;
    k.crv = curves[i].crv;
    k.x = pt + 1;
    k.y = pt + 1 + fb;
    k.x_len = k.y_len = fb;
    der = NULL;
    len = i2d_PUBKEY(pk, &der);
    assert_int_equal(akv_object_key_spki(&k, NULL, 0), (size_t)len);
    assert_int_equal(akv_object_key_spki(&k, buf, sizeof(buf)), (size_t)len);
    assert_memory_equal(buf, der, (size_t)len);
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
  }
  pk = EVP_RSA_gen(4096);
  assert_non_null(pk);
  assert_true(EVP_PKEY_get_bn_param(pk, "n", &n) && EVP_PKEY_get_bn_param(pk, "e", &e));
  memset(&k, 0, sizeof(k));
  k.kty = KV_KTY_RSA;
  k.n = nb;
  k.n_len = (size_t)BN_bn2bin(n, nb);
  k.e = eb;
  k.e_len = (size_t)BN_bn2bin(e, eb);
  der = NULL;
  len = i2d_PUBKEY(pk, &der);
  assert_int_equal(akv_object_key_spki(&k, buf, sizeof(buf)), (size_t)len);
  assert_memory_equal(buf, der, (size_t)len);
  /* Too small a buffer: the length, nothing written past it. */
  memset(buf, 0xAA, sizeof(buf));
  assert_int_equal(akv_object_key_spki(&k, buf, 100), (size_t)len);
  assert_int_equal(buf[100], 0xAA);
  OPENSSL_free(der);
  BN_free(n);
  BN_free(e);
  EVP_PKEY_free(pk);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_refresh_shares_listed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refresh_shares_pending, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pending_one_block, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attributes_on_demand, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pkey_on_demand, setup, teardown),
      cmocka_unit_test(test_spki_all_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
