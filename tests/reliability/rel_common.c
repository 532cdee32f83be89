/* SPDX-License-Identifier: Apache-2.0 */
/* rel_common.c - see rel_common.h. */
#include "rel_common.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/ecdsa.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

int64_t rel_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *rel_env(const char *name)
{
  const char *v = getenv(name);
  if (!v || !*v) {
    fprintf(stderr, "FATAL: environment variable %s is not set (run through the runner script)\n",
            name);
    exit(1);
  }
  return v;
}

CK_FUNCTION_LIST_PTR rel_load(const char *module_path, void **dl)
{
  CK_C_GetFunctionList gfl;
  CK_FUNCTION_LIST_PTR f = NULL;
  *dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
  if (!*dl) {
    fprintf(stderr, "FATAL: dlopen %s: %s\n", module_path, dlerror());
    exit(1);
  }
  *(void **)(&gfl) = dlsym(*dl, "C_GetFunctionList");
  if (!gfl || gfl(&f) != CKR_OK || !f) {
    fprintf(stderr, "FATAL: %s: no usable C_GetFunctionList\n", module_path);
    exit(1);
  }
  return f;
}

CK_RV rel_initialize(CK_FUNCTION_LIST_PTR f, const char *config)
{
  CK_C_INITIALIZE_ARGS args;
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  args.pReserved = (void *)config;
  return f->C_Initialize(&args);
}

CK_SLOT_ID rel_first_slot(CK_FUNCTION_LIST_PTR f)
{
  CK_SLOT_ID slots[16];
  CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
  CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK || n == 0) {
    t_note("C_GetSlotList: %s, %lu slot(s)", t_rv_name(rv), (unsigned long)n);
    return (CK_SLOT_ID)-1;
  }
  return slots[0];
}

CK_OBJECT_HANDLE rel_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                          const char *label)
{
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},
      {CKA_LABEL, (void *)label, strlen(label)},
  };
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG got = 0;
  CK_RV rv = f->C_FindObjectsInit(s, tmpl, 2);
  if (rv != CKR_OK) {
    t_note("C_FindObjectsInit(%s): %s", label, t_rv_name(rv));
    return CK_INVALID_HANDLE;
  }
  rv = f->C_FindObjects(s, &h, 1, &got);
  if (rv != CKR_OK || got != 1) {
    t_note("C_FindObjects(%s): %s, %lu found", label, t_rv_name(rv), (unsigned long)got);
    h = CK_INVALID_HANDLE;
  }
  f->C_FindObjectsFinal(s);
  return h;
}

static size_t discard_cb(char *p, size_t size, size_t n, void *u)
{
  (void)p;
  (void)u;
  return size * n;
}

int rel_emu_faults(const char *spec)
{
  const char *control = rel_env("EMU_CONTROL");
  const char *ca = getenv("EMU_CA");
  char url[1024];
  long code = 0;
  CURLcode cc = CURLE_FAILED_INIT;
  CURL *h = curl_easy_init();
  if (!h)
    return -1;
  snprintf(url, sizeof(url), "%s/faults", control);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, spec);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(spec));
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
  if (ca)
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  cc = curl_easy_perform(h);
  if (cc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(h);
  if (cc != CURLE_OK || code / 100 != 2) {
    t_note("setting emulator faults '%s' failed: %s, HTTP %ld", spec, curl_easy_strerror(cc), code);
    return -1;
  }
  return 0;
}

struct grow {
  char buf[64 * 1024];
  size_t len;
};

static size_t grow_cb(char *p, size_t size, size_t n, void *u)
{
  struct grow *g = u;
  size_t len = size * n;
  if (len > sizeof(g->buf) - 1 - g->len)
    return 0; /* the fault listing is tiny: more is an error */
  memcpy(g->buf + g->len, p, len);
  g->len += len;
  g->buf[g->len] = '\0';
  return len;
}

/* GET url (TLS verified against $EMU_CA) parsed as JSON; NULL with a note on error. */
static cJSON *get_json(const char *url)
{
  const char *ca = getenv("EMU_CA");
  long code = 0;
  struct grow *g = calloc(1, sizeof(*g));
  cJSON *doc = NULL;
  CURLcode cc = CURLE_FAILED_INIT;
  CURL *h = curl_easy_init();
  if (!h || !g)
    goto out;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grow_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, g);
  if (ca)
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  cc = curl_easy_perform(h);
  if (cc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (cc != CURLE_OK || code != 200) {
    t_note("GET %s failed: %s, HTTP %ld", url, curl_easy_strerror(cc), code);
    goto out;
  }
  doc = cJSON_Parse(g->buf);
  if (!doc)
    t_note("GET %s: not JSON", url);
out:
  free(g);
  if (h)
    curl_easy_cleanup(h);
  return doc;
}

int rel_emu_faults_fired(long *fired, size_t n)
{
  char url[1024];
  cJSON *doc;
  const cJSON *arr, *it;
  int count = -1;
  snprintf(url, sizeof(url), "%s/faults", rel_env("EMU_CONTROL"));
  doc = get_json(url);
  arr = cJSON_GetObjectItemCaseSensitive(doc, "faults");
  if (!cJSON_IsArray(arr)) {
    t_note("GET %s: no \"faults\" array", url);
    goto out;
  }
  count = 0;
  cJSON_ArrayForEach(it, arr)
  {
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(it, "fired");
    if ((size_t)count < n)
      fired[count] = cJSON_IsNumber(fi) ? (long)fi->valuedouble : -1;
    count++;
  }
out:
  cJSON_Delete(doc);
  return count;
}

long rel_emu_connections(const char *listener)
{
  cJSON *doc = get_json(rel_env("EMU_STATS"));
  const cJSON *by = cJSON_GetObjectItemCaseSensitive(doc, "connections_by_listener");
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(by, listener);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(l, "total");
  long v = cJSON_IsNumber(t) ? (long)t->valuedouble : -1;
  if (v < 0)
    t_note("the emulator's stats have no connections_by_listener.%s.total", listener);
  cJSON_Delete(doc);
  return v;
}

EVP_PKEY *rel_pubkey_load(const char *path)
{
  size_t len = 0;
  unsigned char *der = t_read_file_new(path, &len);
  const unsigned char *p = der;
  EVP_PKEY *k = NULL;
  if (!der)
    return NULL;
  k = d2i_PUBKEY(NULL, &p, (long)len);
  if (!k)
    t_note("%s is not a DER SubjectPublicKeyInfo", path);
  free(der);
  return k;
}

/* r||s (PKCS#11 ECDSA format) to a DER ECDSA-Sig-Value for OpenSSL. */
static int ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char **der, int *der_len)
{
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL);
  BIGNUM *s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
  int ok = 0;
  *der = NULL;
  if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
    r = s = NULL; /* owned by es now */
    *der_len = i2d_ECDSA_SIG(es, der);
    ok = *der_len > 0;
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(es);
  return ok;
}

static int verify_ec(EVP_PKEY *pub, const unsigned char *digest, const unsigned char *sig,
                     size_t sig_len)
{
  EVP_PKEY_CTX *ctx = NULL;
  unsigned char *der = NULL;
  int der_len = 0, ok = 0;
  if (sig_len != 64 || !ecdsa_raw_to_der(sig, sig_len, &der, &der_len))
    goto out;
  ctx = EVP_PKEY_CTX_new(pub, NULL);
  if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
    ok = EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32) == 1;
out:
  EVP_PKEY_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

static int verify_rsa(EVP_PKEY *pub, const unsigned char *msg, size_t msg_len,
                      const unsigned char *sig, size_t sig_len)
{
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = 0;
  if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1)
    ok = EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

void rel_sign_verify(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, enum rel_kind kind,
                     const struct rel_key *key, struct rel_sig_result *out)
{
  unsigned char msg[48], digest[32], sig[1024];
  CK_ULONG sig_len = sizeof(sig);
  CK_MECHANISM mech = {kind == REL_EC ? CKM_ECDSA : CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_SESSION_INFO info;
  int64_t t0;

  memset(out, 0, sizeof(*out));
  if (RAND_bytes(msg, sizeof(msg)) != 1 ||
      EVP_Digest(msg, sizeof(msg), digest, NULL, EVP_sha256(), NULL) != 1) {
    out->rv = CKR_GENERAL_ERROR;
    return;
  }
  t0 = rel_now_ms();
  out->rv = f->C_SignInit(s, &mech, key->priv);
  if (out->rv == CKR_OK) {
    if (kind == REL_EC)
      out->rv = f->C_Sign(s, digest, sizeof(digest), sig, &sig_len);
    else
      out->rv = f->C_Sign(s, msg, sizeof(msg), sig, &sig_len);
  }
  out->ms = rel_now_ms() - t0;
  if (out->rv != CKR_OK) {
    if (f->C_GetSessionInfo(s, &info) == CKR_OK)
      out->device_error = info.ulDeviceError;
    return;
  }
  out->verified = kind == REL_EC ? verify_ec(key->pub, digest, sig, sig_len)
                                 : verify_rsa(key->pub, msg, sizeof(msg), sig, sig_len);
}
