/* SPDX-License-Identifier: Apache-2.0 */
/* See modview.h. */
#include "modview.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <p11-kit/uri.h>

/* Which module mv_default_module chose and what it looked at, for mv_open's error message. */
static char mv_default_path[4096];
static char mv_default_note[4200];

const char *mv_default_module(const char *installed)
{
  char exe[4096];
  char *slash;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  mv_default_note[0] = '\0';
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0'; /* the directory of the program: BUILD/tools in a meson build tree */
      slash = strrchr(exe, '/');
      if (slash && strcmp(slash + 1, "tools") == 0) {
        *slash = '\0';
        if ((size_t)snprintf(mv_default_path, sizeof(mv_default_path), "%s/src/akv-pkcs11.so",
                             exe) < sizeof(mv_default_path) &&
            access(mv_default_path, R_OK) == 0)
          return mv_default_path;
        snprintf(mv_default_note, sizeof(mv_default_note), "%s (the build tree's) is not there, ",
                 mv_default_path);
      }
    }
  }
  snprintf(mv_default_path, sizeof(mv_default_path), "%s", installed);
  return mv_default_path;
}

/* A token never holds more objects than this in one listing: a cap, not a realloc loop. */
#define MV_MAX_OBJECTS 100000
#define MV_MAX_SLOTS 256
#define MV_MAX_ATTR 65536

const char *mv_class_name(CK_OBJECT_CLASS cls)
{
  switch (cls) {
  case CKO_PRIVATE_KEY:
    return "private";
  case CKO_PUBLIC_KEY:
    return "public";
  case CKO_SECRET_KEY:
    return "secret-key";
  case CKO_CERTIFICATE:
    return "cert";
  case CKO_DATA:
    return "data";
  default:
    return "other";
  }
}

const char *mv_key_type_name(CK_KEY_TYPE kt)
{
  switch (kt) {
  case CKK_RSA:
    return "RSA";
  case CKK_EC:
    return "EC";
  case CKK_AES:
    return "AES";
  case CKK_GENERIC_SECRET:
    return "generic-secret";
  default:
    return "";
  }
}

const char *mv_rv_name(CK_RV rv)
{
  static const struct {
    CK_RV rv;
    const char *name;
  } names[] = {
      {CKR_OK, "CKR_OK"},
      {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
      {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
      {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
      {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
      {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
      {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
      {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
      {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
      {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
  };
  static __thread char buf[32];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].rv == rv)
      return names[i].name;
  snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
  return buf;
}

char *mv_hex(const unsigned char *p, size_t n)
{
  static const char digits[] = "0123456789abcdef";
  char *s;
  if (n > (SIZE_MAX - 1) / 2)
    return NULL;
  s = malloc(2 * n + 1);
  if (!s)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  s[2 * n] = '\0';
  return s;
}

/* Token info strings are blank-padded, not NUL-terminated. */
static void trim_copy(char *dst, size_t dstlen, const CK_UTF8CHAR *src, size_t srclen)
{
  size_t n = srclen < dstlen - 1 ? srclen : dstlen - 1;
  memcpy(dst, src, n);
  while (n && dst[n - 1] == ' ')
    n--;
  dst[n] = '\0';
}

static void mv_object_clear(struct mv_object *o)
{
  free(o->label);
  free(o->id);
  free(o->uri);
  memset(o, 0, sizeof(*o));
}

static void mv_token_clear_objects(struct mv_token *t)
{
  for (size_t i = 0; i < t->n_objs; i++)
    mv_object_clear(&t->objs[i]);
  free(t->objs);
  t->objs = NULL;
  t->n_objs = 0;
  t->loaded = 0;
}

/* URI of the token, or of an object on it when attrs is non-NULL. */
static char *format_uri(const CK_TOKEN_INFO *info, const CK_ATTRIBUTE *attrs, size_t n_attrs)
{
  P11KitUri *uri = p11_kit_uri_new();
  char *s = NULL, *ret = NULL;
  if (!uri)
    return NULL;
  memcpy(p11_kit_uri_get_token_info(uri), info, sizeof(*info));
  for (size_t i = 0; i < n_attrs; i++)
    if (p11_kit_uri_set_attribute(uri, (CK_ATTRIBUTE_PTR)&attrs[i]) != P11_KIT_URI_OK)
      goto out;
  /* p11-kit's string is malloc'd: the caller frees it with free(). */
  if (p11_kit_uri_format(uri, attrs ? P11_KIT_URI_FOR_OBJECT_ON_TOKEN : P11_KIT_URI_FOR_TOKEN,
                         &s) != P11_KIT_URI_OK)
    goto out;
  ret = s;
out:
  p11_kit_uri_free(uri);
  return ret;
}

/* Reads one variable-length attribute into a malloc'd buffer (NUL-terminated for labels).
 * Absent or sensitive attributes give *out NULL and 0. */
static CK_RV get_var_attr(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                          CK_ATTRIBUTE_TYPE type, unsigned char **out, size_t *len)
{
  CK_ATTRIBUTE a = {type, NULL, 0};
  CK_RV rv;
  *out = NULL;
  *len = 0;
  rv = f->C_GetAttributeValue(s, h, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
      a.ulValueLen == (CK_ULONG)-1)
    return CKR_OK;
  if (rv != CKR_OK)
    return rv;
  if (a.ulValueLen > MV_MAX_ATTR)
    return CKR_DEVICE_MEMORY;
  a.pValue = calloc(1, a.ulValueLen + 1);
  if (!a.pValue)
    return CKR_HOST_MEMORY;
  rv = f->C_GetAttributeValue(s, h, &a, 1);
  if (rv != CKR_OK) {
    free(a.pValue);
    return rv;
  }
  *out = a.pValue;
  *len = a.ulValueLen;
  return CKR_OK;
}

/* Fixed-size attributes; absent ones keep their preset value. */
static void get_fixed_attrs(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                            struct mv_object *o)
{
  CK_BBOOL sign = 0, decrypt = 0, unwrap = 0, encrypt = 0, wrap = 0, verify = 0;
  CK_ULONG bits = 0, value_len = 0;
  CK_ATTRIBUTE one;
  struct {
    CK_ATTRIBUTE_TYPE type;
    void *p;
    CK_ULONG len;
  } want[] = {
      {CKA_KEY_TYPE, &o->key_type, sizeof(o->key_type)},
      {CKA_SIGN, &sign, sizeof(sign)},
      {CKA_DECRYPT, &decrypt, sizeof(decrypt)},
      {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
      {CKA_ENCRYPT, &encrypt, sizeof(encrypt)},
      {CKA_WRAP, &wrap, sizeof(wrap)},
      {CKA_VERIFY, &verify, sizeof(verify)},
      {CKA_MODULUS_BITS, &bits, sizeof(bits)},
      {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
  };
  /* One attribute per call: a module may answer a batch with an error for a single absent one. */
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    one.type = want[i].type;
    one.pValue = want[i].p;
    one.ulValueLen = want[i].len;
    (void)f->C_GetAttributeValue(s, h, &one, 1);
  }
  o->sign = sign == CK_TRUE;
  o->decrypt = decrypt == CK_TRUE;
  o->unwrap = unwrap == CK_TRUE;
  o->encrypt = encrypt == CK_TRUE;
  o->wrap = wrap == CK_TRUE;
  o->verify = verify == CK_TRUE;
  o->bits = bits ? bits : value_len * 8;
}

/* EC key size from CKA_EC_PARAMS (named curve OIDs the module uses). */
static CK_ULONG ec_bits(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
  static const struct {
    unsigned char oid[10];
    size_t len;
    CK_ULONG bits;
  } curves[] = {
      {{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 10, 256},
      {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 7, 384},
      {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 7, 521},
      {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}, 7, 256},
  };
  unsigned char *p = NULL;
  size_t n = 0;
  CK_ULONG bits = 0;
  if (get_var_attr(f, s, h, CKA_EC_PARAMS, &p, &n) != CKR_OK || !p)
    goto out;
  for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
    if (n == curves[i].len && memcmp(p, curves[i].oid, n) == 0)
      bits = curves[i].bits;
out:
  free(p);
  return bits;
}

static CK_RV read_object(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                         const CK_TOKEN_INFO *info, struct mv_object *o)
{
  CK_ATTRIBUTE a = {CKA_CLASS, &o->cls, sizeof(o->cls)};
  CK_ATTRIBUTE uri_attrs[3];
  size_t n_uri = 0, len;
  unsigned char *label = NULL;
  CK_RV rv;
  memset(o, 0, sizeof(*o));
  o->key_type = (CK_KEY_TYPE)-1;
  rv = f->C_GetAttributeValue(s, h, &a, 1);
  if (rv != CKR_OK)
    goto out;
  rv = get_var_attr(f, s, h, CKA_LABEL, &label, &len);
  if (rv != CKR_OK)
    goto out;
  o->label = (char *)label;
  rv = get_var_attr(f, s, h, CKA_ID, &o->id, &o->id_len);
  if (rv != CKR_OK)
    goto out;
  if (o->cls == CKO_PRIVATE_KEY || o->cls == CKO_PUBLIC_KEY || o->cls == CKO_SECRET_KEY) {
    get_fixed_attrs(f, s, h, o);
    if (o->key_type == CKK_EC)
      o->bits = ec_bits(f, s, h);
  }
  uri_attrs[n_uri++] = (CK_ATTRIBUTE){CKA_CLASS, &o->cls, sizeof(o->cls)};
  if (o->label)
    uri_attrs[n_uri++] = (CK_ATTRIBUTE){CKA_LABEL, o->label, (CK_ULONG)len};
  if (o->id)
    uri_attrs[n_uri++] = (CK_ATTRIBUTE){CKA_ID, o->id, (CK_ULONG)o->id_len};
  o->uri = format_uri(info, uri_attrs, n_uri);
  rv = o->uri ? CKR_OK : CKR_HOST_MEMORY;
out:
  return rv;
}

int mv_load_objects(struct mv_view *v, size_t i, char *err, size_t errlen)
{
  struct mv_token *t;
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE hs[64];
  CK_OBJECT_HANDLE *all = NULL;
  size_t n_all = 0, cap = 0;
  CK_ULONG got = 0;
  CK_RV rv;
  int ret = -1, finding = 0;
  if (!v || i >= v->n_toks) {
    snprintf(err, errlen, "no token %zu", i);
    return -1;
  }
  t = &v->toks[i];
  mv_token_clear_objects(t);
  rv = v->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    snprintf(err, errlen, "C_OpenSession: %s", mv_rv_name(rv));
    goto out;
  }
  rv = v->f->C_FindObjectsInit(s, NULL, 0);
  if (rv != CKR_OK) {
    snprintf(err, errlen, "C_FindObjectsInit: %s", mv_rv_name(rv));
    goto out;
  }
  finding = 1;
  for (;;) {
    rv = v->f->C_FindObjects(s, hs, sizeof(hs) / sizeof(hs[0]), &got);
    if (rv != CKR_OK) {
      snprintf(err, errlen, "C_FindObjects: %s", mv_rv_name(rv));
      goto out;
    }
    if (got == 0)
      break;
    if (n_all + got > MV_MAX_OBJECTS) {
      snprintf(err, errlen, "more than %d objects on one token", MV_MAX_OBJECTS);
      goto out;
    }
    if (n_all + got > cap) {
      size_t ncap = cap ? cap * 2 : 128;
      CK_OBJECT_HANDLE *n;
      while (ncap < n_all + got)
        ncap *= 2;
      n = realloc(all, ncap * sizeof(*all));
      if (!n) {
        snprintf(err, errlen, "out of memory");
        goto out;
      }
      all = n;
      cap = ncap;
    }
    memcpy(all + n_all, hs, got * sizeof(*hs));
    n_all += got;
  }
  v->f->C_FindObjectsFinal(s);
  finding = 0;
  if (n_all) {
    t->objs = calloc(n_all, sizeof(*t->objs));
    if (!t->objs) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
  }
  for (size_t k = 0; k < n_all; k++) {
    rv = read_object(v->f, s, all[k], &t->info, &t->objs[k]);
    t->n_objs = k + 1;
    if (rv != CKR_OK) {
      snprintf(err, errlen, "C_GetAttributeValue: %s", mv_rv_name(rv));
      goto out;
    }
  }
  t->loaded = 1;
  ret = 0;
out:
  if (finding)
    v->f->C_FindObjectsFinal(s);
  if (s != CK_INVALID_HANDLE)
    v->f->C_CloseSession(s);
  if (ret != 0)
    mv_token_clear_objects(t);
  free(all);
  return ret;
}

int mv_open(const char *module_path, const char *reserved, struct mv_view **out, char *err,
            size_t errlen)
{
  struct mv_view *v = NULL;
  CK_C_GetFunctionList get_list;
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slots[MV_MAX_SLOTS];
  CK_ULONG n = MV_MAX_SLOTS;
  CK_RV rv;
  int ret = -1;
  *out = NULL;
  v = calloc(1, sizeof(*v));
  if (!v) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  v->dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
  if (!v->dl) {
    if (module_path == mv_default_path)
      snprintf(err, errlen,
               "cannot load %s: %s (no -m and no AKV_PKCS11_MODULE: %sthe installed module was "
               "tried); fix: install the module, or name it with -m PATH or AKV_PKCS11_MODULE=PATH",
               module_path, dlerror(), mv_default_note);
    else
      snprintf(err, errlen,
               "cannot load %s: %s; fix: check the path given with -m or "
               "AKV_PKCS11_MODULE",
               module_path, dlerror());
    goto out;
  }
  get_list = (CK_C_GetFunctionList)dlsym(v->dl, "C_GetFunctionList");
  if (!get_list) {
    snprintf(err, errlen, "%s exports no C_GetFunctionList: not a PKCS#11 module", module_path);
    goto out;
  }
  rv = get_list(&v->f);
  if (rv != CKR_OK || !v->f) {
    snprintf(err, errlen, "C_GetFunctionList: %s", mv_rv_name(rv));
    goto out;
  }
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  /* libp11 and p11-kit pass the configuration this way too (x-init-reserved). */
  args.pReserved = (CK_VOID_PTR)reserved;
  rv = v->f->C_Initialize(&args);
  if (rv != CKR_OK) {
    snprintf(err, errlen, "C_Initialize: %s (the module's log says why)", mv_rv_name(rv));
    goto out;
  }
  v->initialized = 1;
  rv = v->f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK) {
    snprintf(err, errlen, "C_GetSlotList: %s", mv_rv_name(rv));
    goto out;
  }
  if (n) {
    v->toks = calloc(n, sizeof(*v->toks));
    if (!v->toks) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
  }
  for (CK_ULONG i = 0; i < n; i++) {
    struct mv_token *t = &v->toks[i];
    t->slot = slots[i];
    v->n_toks = i + 1;
    rv = v->f->C_GetTokenInfo(slots[i], &t->info);
    if (rv != CKR_OK) {
      snprintf(err, errlen, "C_GetTokenInfo(slot %lu): %s", (unsigned long)slots[i],
               mv_rv_name(rv));
      goto out;
    }
    trim_copy(t->label, sizeof(t->label), t->info.label, sizeof(t->info.label));
    trim_copy(t->model, sizeof(t->model), t->info.model, sizeof(t->info.model));
    trim_copy(t->manufacturer, sizeof(t->manufacturer), t->info.manufacturerID,
              sizeof(t->info.manufacturerID));
    trim_copy(t->serial, sizeof(t->serial), t->info.serialNumber, sizeof(t->info.serialNumber));
    t->uri = format_uri(&t->info, NULL, 0);
    if (!t->uri) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
  }
  *out = v;
  v = NULL;
  ret = 0;
out:
  mv_free(v);
  return ret;
}

void mv_free(struct mv_view *v)
{
  if (!v)
    return;
  for (size_t i = 0; i < v->n_toks; i++) {
    mv_token_clear_objects(&v->toks[i]);
    free(v->toks[i].uri);
  }
  free(v->toks);
  if (v->initialized)
    v->f->C_Finalize(NULL);
  /* The module is linked -z nodelete; dlclose only drops our reference. */
  if (v->dl)
    dlclose(v->dl);
  free(v);
}

cJSON *mv_object_json(const struct mv_object *ob)
{
  cJSON *j = cJSON_CreateObject();
  char *id = mv_hex(ob->id, ob->id_len);
  int key = ob->cls == CKO_PRIVATE_KEY || ob->cls == CKO_PUBLIC_KEY || ob->cls == CKO_SECRET_KEY;
  cJSON_AddStringToObject(j, "class", mv_class_name(ob->cls));
  cJSON_AddStringToObject(j, "label", ob->label ? ob->label : "");
  cJSON_AddStringToObject(j, "id", id ? id : "");
  if (key) {
    cJSON_AddStringToObject(j, "key_type", mv_key_type_name(ob->key_type));
    if (ob->bits)
      cJSON_AddNumberToObject(j, "bits", (double)ob->bits);
    if (ob->cls == CKO_PRIVATE_KEY || ob->cls == CKO_SECRET_KEY) {
      cJSON_AddBoolToObject(j, "sign", ob->sign);
      cJSON_AddBoolToObject(j, "decrypt", ob->decrypt);
      cJSON_AddBoolToObject(j, "unwrap", ob->unwrap);
    }
    if (ob->cls == CKO_PUBLIC_KEY || ob->cls == CKO_SECRET_KEY) {
      cJSON_AddBoolToObject(j, "verify", ob->verify);
      cJSON_AddBoolToObject(j, "encrypt", ob->encrypt);
      cJSON_AddBoolToObject(j, "wrap", ob->wrap);
    }
  }
  cJSON_AddStringToObject(j, "uri", ob->uri);
  free(id);
  return j;
}
