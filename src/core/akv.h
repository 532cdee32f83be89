/* SPDX-License-Identifier: Apache-2.0 */
/* The model's shared types and calls: module state, slots, sessions, objects and operations
 * (src/core, src/store, src/token, src/crypto; docs/design.md "Layers").
 * Locking: the module lock guards the session table and slot list only, and is never held across
 * I/O. A session is used through akv_session_acquire/release, which serialises calls on the same
 * session (its own mutex, which may be held across I/O) and keeps it alive. Objects are refcounted
 * and immutable once published (except lazily fetched secret values, under the object's lock). */
#ifndef AKV_MODEL_H
#define AKV_MODEL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "akv-pkcs11.h" /* the vendor attributes CKA_AKV_*, as consumers see them */

#include "kv/kv.h"
#include "util/config.h"
#include "util/ptrs.h"

struct akv_cache;
struct akv_op;
struct akv_keyent;
struct akv_objval;

/* ---- module -------------------------------------------------------------------------------- */

/* CKR_OK when initialised in this process; CKR_CRYPTOKI_NOT_INITIALIZED otherwise, including in a
 * forked child that has not called C_Initialize itself. Every C_* but C_Initialize/
 * C_GetFunctionList/C_GetInterface* calls it first. */
CK_RV akv_module_check(void);

/* The module's private OpenSSL library context: all local crypto (hashing, local verify/encrypt,
 * JWK to EVP_PKEY) uses it, so a host that loaded pkcs11-provider is never re-entered. */
OSSL_LIB_CTX *akv_libctx(void);

/* The loaded configuration (valid between C_Initialize and C_Finalize). */
const struct akv_config *akv_config(void);

/* Seconds since the epoch; tests inject a clock with akv_set_clock. */
int64_t akv_now(void);
void akv_set_clock(int64_t (*fn)(void));

/* The one translation from backend errors to CK_RV (src/rv.c). */
CK_RV akv_rv(kv_rc rc);
/* As akv_rv, for object (not key) calls: KV_E_NOT_FOUND -> CKR_OBJECT_HANDLE_INVALID. */
CK_RV akv_rv_object(kv_rc rc);
/* As akv_rv, for listings (object searches): KV_E_NOT_FOUND -> CKR_DEVICE_ERROR. */
CK_RV akv_rv_listing(kv_rc rc);
/* For the module's own work (building the transport, a credential, a client, reading public key
 * material, optional extras): CKR_OK for KV_OK, CKR_HOST_MEMORY for KV_E_NOMEM, `otherwise` for any
 * other failure. */
CK_RV akv_rv_nomem_or(kv_rc rc, CK_RV otherwise);
const char *akv_rv_name(CK_RV rv);
/* The CK_RV name of a kv_rc name ("KV_E_FORBIDDEN" -> "CKR_DEVICE_ERROR"), NULL if unknown;
 * registered with the audit trail. */
const char *akv_rv_outcome_name(const char *outcome);

/* ---- slots --------------------------------------------------------------------------------- */

struct akv_slot {
  CK_SLOT_ID id;                     /* 0-based index in config order */
  const struct akv_slot_config *cfg; /* points into the module's config */
  struct kv_client *client;          /* the vault */
  struct kv_cred *own_cred;          /* per-slot credential, NULL when using the default */
  char serial[17];                   /* first 16 hex digits of SHA-256(url) */
  char label[33];                    /* blank-padded token label source (NUL-terminated) */
  struct akv_cache *cache;
  /* Login state and session counts of the token, guarded by the module lock (model-private). */
  int logged_in;
  unsigned pin_failures; /* consecutive wrong user PINs (CKF_USER_PIN_COUNT_LOW, the delay) */
  struct kv_http *http;  /* the module's transport, for a credential opened at login */
  CK_ULONG n_sessions, n_rw_sessions;
};

/* Slot by id, or NULL. Valid until C_Finalize. */
struct akv_slot *akv_module_slot(CK_SLOT_ID id);

/* Forces the slot's object list to be refreshed at the next lookup (a key the cache knew answered
 * 404). No I/O. */
void akv_slot_invalidate(struct akv_slot *slot);

/* ---- objects ------------------------------------------------------------------------------- */

struct akv_object {
  int refs; /* atomic */
  /* RSA: the modulus size in bits. */
  uint32_t modulus_bits;
  CK_OBJECT_HANDLE handle;
  /* CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKO_CERTIFICATE, CKO_DATA */
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE key_type; /* CKK_RSA, CKK_EC, CKK_AES, CKK_GENERIC_SECRET; (CK_KEY_TYPE)-1 if none */
  struct akv_slot *slot;
  CK_SESSION_HANDLE session; /* owning session for session objects, 0 for token objects */

  /* Keys in the vault: public parts of the exact version this object was listed with. The version
   * is pinned here: crypto always addresses key->name + key->version. */
  struct kv_key *key;
  /* A public key owned elsewhere (test fixtures); a vault key's EVP_PKEY is built on demand and
   * read through akv_object_pkey (src/store/object.h), never here. */
  EVP_PKEY *pkey;
  CK_BBOOL can_sign, can_verify, can_encrypt, can_decrypt, can_wrap, can_unwrap; /* from key_ops */
  CK_BBOOL is_private; /* CKA_PRIVATE: visible only when logged in */
  /* Atomic: its handle reached a caller (kept across a rotation, cache.c). */
  unsigned char handed_out;

  /* Session secret keys (C_UnwrapKey / C_GenerateKey): raw value (secret_len bytes, below), wiped
   * on free. */
  unsigned char *secret;

  /* Attributes of certificates, data objects and session keys, built once when the object is
   * created (CKA_VALUE of data objects excepted). NULL for vault keys, whose attributes are built
   * from their key entry when asked (src/store/object.c, docs/performance.md "Memory per cached
   * key"): read them with akv_object_attr. */
  CK_ATTRIBUTE *attrs;
  uint32_t n_attrs;
  uint32_t secret_len; /* of secret: paired with n_attrs, one word for both */

  /* Secrets (CKO_DATA): the value fetched lazily (src/store/object.c), NULL otherwise. */
  struct akv_objval *val;
  /* Attestation objects of a Managed HSM key: the attestation their lazy attributes are read
   * from (src/store/attest.h), shared by the key version's attestation objects; else NULL. */
  struct akv_attest *att;

  /* Model-private: shared public key material (owner of key, src and the label), and the source
   * record the object was built from (reused across refreshes while the source's created/updated
   * times are unchanged); a key object's src points into its key entry. */
  struct akv_keyent *keyent;
  char *src;
  int64_t src_created, src_updated;
  int64_t src_fetched_at; /* akv_now() when the source was read (see cache.c reuse) */
};

/* Room for the objects of a key version: private + public key (or a secret key) and, on a Managed
 * HSM, its attestation data object (src/store/object.h); one spare, kept so the cache file's
 * per-name record bound (AKV_CF_NAME_OBJECTS) reads records written before. */
#define AKV_KEY_OBJECTS 4

struct akv_object *akv_object_ref(struct akv_object *obj);
void akv_object_unref(struct akv_object *obj); /* NULL ok; wipes secrets on last unref */

/* A new session secret key (CKK_AES or CKK_GENERIC_SECRET) holding a copy of value, with the
 * standard secret-key attributes plus those of the caller's template (CKA_LABEL, CKA_ID,
 * CKA_ENCRYPT/DECRYPT/WRAP/UNWRAP/SIGN/VERIFY, CKA_EXTRACTABLE, CKA_SENSITIVE...). Returns NULL
 * with *rv set (CKR_TEMPLATE_INCONSISTENT, CKR_ATTRIBUTE_VALUE_INVALID, CKR_HOST_MEMORY ...).
 * Implemented by the model (object.c); used by C_GenerateKey / C_UnwrapKey. */
struct akv_object *akv_object_new_session_secret(struct akv_slot *slot, CK_KEY_TYPE type,
                                                 const unsigned char *value, size_t len,
                                                 const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_RV *rv);

/* An attribute of obj (not CKA_VALUE of data objects), or NULL. For a vault key the value is built
 * when asked, in storage of the calling thread that stays valid for its next three calls; a built
 * value longer than 256 bytes (an RSA key's CKA_PUBLIC_KEY_INFO) comes back with pValue NULL and
 * its length (read it with akv_object_get_attrs). */
const CK_ATTRIBUTE *akv_object_attr(const struct akv_object *obj, CK_ATTRIBUTE_TYPE type);

/* The public key of a vault key (RSA/EC) or fixture object for a local operation, referenced (the
 * caller frees it with EVP_PKEY_free), or NULL when there is none or on failure. A vault key's
 * EVP_PKEY is built at its first use and kept in its key entry (src/store/object.c). */
EVP_PKEY *akv_object_pkey(const struct akv_object *obj);
/* 1 when akv_object_pkey can give a public key (no EVP_PKEY is built). */
int akv_object_has_pkey(const struct akv_object *obj);

/* ---- sessions ------------------------------------------------------------------------------ */

enum akv_op_kind {
  AKV_OP_SIGN = 0,
  AKV_OP_VERIFY,
  AKV_OP_ENCRYPT,
  AKV_OP_DECRYPT,
  AKV_OP_DIGEST,
  AKV_OP_FIND,
  AKV_OP_COUNT
};

struct akv_session {
  int refs;             /* atomic; table holds one */
  pthread_mutex_t lock; /* held by acquire..release */
  CK_SESSION_HANDLE handle;
  struct akv_slot *slot;
  CK_FLAGS flags;                   /* CKF_SERIAL_SESSION | CKF_RW_SESSION */
  int closed;                       /* set by C_CloseSession; acquire fails afterwards */
  CK_ULONG device_error;            /* last HTTP status of a failed call (ulDeviceError) */
  struct akv_op *ops[AKV_OP_COUNT]; /* active operations, owned by the session */
  struct akv_op *spare_op;          /* an ended operation's zeroed storage, reused (mech.c) */
  struct akv_object **objects;      /* session objects it created (guarded by the model) */
  size_t n_objects;
  /* Active C_FindObjects search (model-private): matching handles collected at Init. */
  int find_active;
  struct akv_ptrs find_handles; /* CK_OBJECT_HANDLE values (src/token/find.c) */
  size_t find_n, find_pos;
};

/* Looks up and locks a session: CKR_SESSION_HANDLE_INVALID if unknown/closed,
 * CKR_CRYPTOKI_NOT_INITIALIZED (via akv_module_check) if the module is not initialised. */
CK_RV akv_session_acquire(CK_SESSION_HANDLE h, struct akv_session **out);
void akv_session_release(struct akv_session *s);

/* An object visible to the session (token objects of its slot, or session objects created by any
 * session on that token), referenced; CKR_OBJECT_HANDLE_INVALID otherwise. Call with the session
 * acquired. */
CK_RV akv_session_object(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out);

/* Adds a session object (takes the caller's reference) and assigns its handle. */
CK_RV akv_session_add_object(struct akv_session *s, struct akv_object *obj, CK_OBJECT_HANDLE *h);

/* Records a failed vault call on the session (its final HTTP status, 0 = no response, becomes
 * ulDeviceError) and maps rc. */
CK_RV akv_session_fail(struct akv_session *s, kv_rc rc, long http_status);

/* ---- operations (src/token/mech.c, src/crypto/) ------------------------------------------- */

/* Frees an operation's state (wiping buffers); called by the session on C_CloseSession,
 * C_Finalize, and when an operation ends. NULL ok. */
void akv_op_free(struct akv_op *op);

/* The length-query protocol, written once: if out is NULL, sets *out_len = len and returns CKR_OK
 * (operation kept); if *out_len < len, sets *out_len = len and returns CKR_BUFFER_TOO_SMALL
 * (operation kept); else copies, sets *out_len and returns CKR_OK. */
CK_RV akv_outbuf_copy_out(const void *src, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

#endif
