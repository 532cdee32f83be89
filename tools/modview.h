/* SPDX-License-Identifier: Apache-2.0 */
/* The module as PKCS#11 consumers see it: akv-p11 dlopens akv-pkcs11.so, reads every token and
 * object through the C_* functions and formats their PKCS#11 URIs with libp11-kit, so what it
 * prints is what pkcs11-tool, openssl and p11tool find. Nothing here talks to Key Vault directly.
 */
#ifndef AKV_TOOLS_MODVIEW_H
#define AKV_TOOLS_MODVIEW_H

#include <stddef.h>
#include <p11-kit/pkcs11.h>

struct mv_object {
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE key_type; /* (CK_KEY_TYPE)-1 when not a key */
  CK_ULONG bits;        /* modulus bits / curve field bits / AES bits, 0 when unknown */
  char *label;
  unsigned char *id;
  size_t id_len;
  int sign, decrypt, unwrap, encrypt, wrap, verify; /* CKA_SIGN ... (keys only) */
  char *uri;                                        /* pkcs11:...;id=...;object=...;type=... */
};

struct mv_token {
  CK_SLOT_ID slot;
  CK_TOKEN_INFO info;
  char label[33], model[17], manufacturer[33], serial[17]; /* blank-trimmed copies */
  char *uri; /* pkcs11:model=...;manufacturer=...;serial=...;token=... */
  struct mv_object *objs;
  size_t n_objs;
  int loaded; /* objects were read (mv_load_objects succeeded) */
};

struct mv_view {
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  int initialized;
  struct mv_token *toks;
  size_t n_toks;
};

/* The module to load when neither -m nor AKV_PKCS11_MODULE names one: run from a meson build
 * tree (this program is BUILD/tools/akv-p11), the build's BUILD/src/akv-pkcs11.so when it exists,
 * so that akv-p11 works right after the build; otherwise `installed`. mv_open's error then says
 * which paths were tried and how to choose. */
const char *mv_default_module(const char *installed);

/* Loads the module, C_Initialize (pReserved = reserved: the config path, or NULL for the module's
 * own search) and reads the slot list and token infos; no Key Vault request. 0, or -1 with a
 * message in err. */
int mv_open(const char *module_path, const char *reserved, struct mv_view **out, char *err,
            size_t errlen);

/* Reads every object of token i (this lists the vault). 0, or -1 with a message in err. */
int mv_load_objects(struct mv_view *v, size_t i, char *err, size_t errlen);

/* {class, label, id (hex), key_type, bits, sign..., uri} of one object (cJSON, caller owns). */
struct cJSON;
struct cJSON *mv_object_json(const struct mv_object *ob);

/* C_Finalize, dlclose and free; accepts NULL. */
void mv_free(struct mv_view *v);

/* "private", "public", "secret-key", "cert", "data" (p11-kit URI type names), or "other". */
const char *mv_class_name(CK_OBJECT_CLASS cls);
/* "RSA", "EC", "AES", "generic-secret" ... */
const char *mv_key_type_name(CK_KEY_TYPE kt);

/* Lower-case hex of an id; malloc'd (NULL on ENOMEM). */
char *mv_hex(const unsigned char *p, size_t n);

/* PKCS#11 return value name ("CKR_DEVICE_ERROR"), or "CKR_0x..." in a static buffer. */
const char *mv_rv_name(CK_RV rv);

#endif
