/* SPDX-License-Identifier: Apache-2.0 */
/* p11_common.c - see p11_common.h. */
#include "p11_common.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define T_STATS_MAX (256 * 1024) /* the stats document is small; anything bigger is a bug */
#define T_FILE_MAX (1024 * 1024)

static unsigned t_checks, t_failed;

void t_note(const char *fmt, ...)
{
  va_list ap;
  fputs("# ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

void t_check(int ok, const char *fmt, ...)
{
  va_list ap;
  t_checks++;
  if (!ok)
    t_failed++;
  printf("%s %u - ", ok ? "ok" : "not ok", t_checks);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

int t_finish(const char *name)
{
  printf("\n# %s: %u checks, %u failed\n", name, t_checks, t_failed);
  return (t_checks == 0 || t_failed != 0) ? 1 : 0;
}

const char *t_rv_name(CK_RV rv)
{
  /* The codes these tests can meet by name; others as hex. */
  static const struct {
    CK_RV rv;
    const char *name;
  } names[] = {
      {CKR_OK, "CKR_OK"},
      {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
      {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
      {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
      {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
      {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
      {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID"},
      {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
      {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
      {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
      {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
      {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
      {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
      {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
      {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
      {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
      {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
      {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
  };
  static __thread char other[32];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].rv == rv)
      return names[i].name;
  snprintf(other, sizeof(other), "CKR_0x%lx", (unsigned long)rv);
  return other;
}

static void t_die(const char *what, CK_RV rv)
{
  fprintf(stderr, "FATAL: %s: %s (0x%lx)\n", what, t_rv_name(rv), (unsigned long)rv);
  exit(1);
}

void t_p11_open(struct t_p11 *p, const char *path)
{
  CK_C_GetFunctionList gfl;
  CK_C_INITIALIZE_ARGS args;
  CK_SLOT_ID slots[16];
  CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
  CK_RV rv;

  memset(p, 0, sizeof(*p));
  p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!p->dl) {
    fprintf(stderr, "FATAL: dlopen %s: %s\n", path, dlerror());
    exit(1);
  }
  *(void **)(&gfl) = dlsym(p->dl, "C_GetFunctionList");
  if (!gfl) {
    fprintf(stderr, "FATAL: %s exports no C_GetFunctionList\n", path);
    exit(1);
  }
  rv = gfl(&p->f);
  if (rv != CKR_OK)
    t_die("C_GetFunctionList", rv);
  memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  rv = p->f->C_Initialize(&args);
  if (rv != CKR_OK)
    t_die("C_Initialize", rv);
  rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK)
    t_die("C_GetSlotList", rv);
  if (n == 0) {
    fprintf(stderr, "FATAL: the module reports no slot with a token\n");
    exit(1);
  }
  p->slot = slots[0];
  rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->sess);
  if (rv != CKR_OK)
    t_die("C_OpenSession", rv);
}

void t_p11_close(struct t_p11 *p)
{
  if (p->f) {
    p->f->C_CloseSession(p->sess);
    p->f->C_Finalize(NULL);
  }
  /* The module is linked -z nodelete; dlclose is still the right call for a host program. */
  if (p->dl)
    dlclose(p->dl);
  memset(p, 0, sizeof(*p));
}

CK_OBJECT_HANDLE t_find(struct t_p11 *p, CK_OBJECT_CLASS cls, const char *label)
{
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},
      {CKA_LABEL, (void *)label, strlen(label)},
  };
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG got = 0;
  CK_RV rv;

  rv = p->f->C_FindObjectsInit(p->sess, tmpl, 2);
  if (rv != CKR_OK) {
    t_note("C_FindObjectsInit: %s", t_rv_name(rv));
    return CK_INVALID_HANDLE;
  }
  rv = p->f->C_FindObjects(p->sess, &h, 1, &got);
  if (rv != CKR_OK || got != 1)
    h = CK_INVALID_HANDLE;
  if (rv != CKR_OK)
    t_note("C_FindObjects: %s", t_rv_name(rv));
  p->f->C_FindObjectsFinal(p->sess);
  return h;
}

long t_find_all(struct t_p11 *p, CK_OBJECT_HANDLE **out)
{
  CK_OBJECT_HANDLE *all = NULL, chunk[64];
  size_t n = 0;
  CK_ULONG got;
  CK_RV rv;
  long result = -1;

  rv = p->f->C_FindObjectsInit(p->sess, NULL, 0);
  if (rv != CKR_OK) {
    t_note("C_FindObjectsInit: %s", t_rv_name(rv));
    return -1;
  }
  for (;;) {
    CK_OBJECT_HANDLE *grown;
    rv = p->f->C_FindObjects(p->sess, chunk, 64, &got);
    if (rv != CKR_OK) {
      t_note("C_FindObjects: %s", t_rv_name(rv));
      goto out;
    }
    if (got == 0)
      break;
    if (n + got > 100000) { /* a listing this large is a module bug, not data */
      t_note("C_FindObjects returned more than 100000 objects");
      goto out;
    }
    grown = realloc(all, (n + got) * sizeof(*all));
    if (!grown)
      goto out;
    all = grown;
    memcpy(all + n, chunk, got * sizeof(*all));
    n += got;
  }
  *out = all;
  all = NULL;
  result = (long)n;
out:
  p->f->C_FindObjectsFinal(p->sess);
  free(all);
  return result;
}

unsigned char *t_attr_new(struct t_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                          CK_ULONG *len)
{
  CK_ATTRIBUTE a = {type, NULL, 0};
  unsigned char *buf;

  *len = 0;
  if (p->f->C_GetAttributeValue(p->sess, h, &a, 1) != CKR_OK ||
      a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > T_FILE_MAX)
    return NULL;
  buf = malloc(a.ulValueLen + 1);
  if (!buf)
    return NULL;
  a.pValue = buf;
  if (p->f->C_GetAttributeValue(p->sess, h, &a, 1) != CKR_OK) {
    free(buf);
    return NULL;
  }
  buf[a.ulValueLen] = 0;
  *len = a.ulValueLen;
  return buf;
}

struct t_membuf {
  char *data;
  size_t len;
};

static size_t t_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct t_membuf *mb = userdata;
  size_t n = size * nmemb;
  char *grown;
  if (mb->len + n > T_STATS_MAX)
    return 0; /* curl reports a write error */
  grown = realloc(mb->data, mb->len + n + 1);
  if (!grown)
    return 0;
  mb->data = grown;
  memcpy(mb->data + mb->len, ptr, n);
  mb->len += n;
  mb->data[mb->len] = 0;
  return n;
}

int t_stats(const char *op, int64_t *total, int64_t *op_count)
{
  const char *url = getenv("EMU_STATS"), *ca = getenv("EMU_CA");
  struct t_membuf mb = {NULL, 0};
  CURL *c = NULL;
  cJSON *doc = NULL;
  const cJSON *t, *by, *o;
  long code = 0;
  int rc = -1;

  if (!url) {
    fprintf(stderr, "t_stats: EMU_STATS is not set\n");
    return -1;
  }
  c = curl_easy_init();
  if (!c)
    goto out;
  curl_easy_setopt(c, CURLOPT_URL, url);
  if (ca)
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, t_curl_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &mb);
  if (curl_easy_perform(c) != CURLE_OK) {
    fprintf(stderr, "t_stats: GET %s failed\n", url);
    goto out;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200 || !mb.data) {
    fprintf(stderr, "t_stats: GET %s -> HTTP %ld\n", url, code);
    goto out;
  }
  doc = cJSON_Parse(mb.data);
  t = cJSON_GetObjectItemCaseSensitive(doc, "requests_total");
  if (!cJSON_IsNumber(t)) {
    fprintf(stderr, "t_stats: no requests_total in %s\n", mb.data);
    goto out;
  }
  *total = (int64_t)t->valuedouble;
  if (op && op_count) {
    by = cJSON_GetObjectItemCaseSensitive(doc, "by_operation");
    o = cJSON_GetObjectItemCaseSensitive(by, op);
    *op_count = cJSON_IsNumber(o) ? (int64_t)o->valuedouble : 0;
  }
  rc = 0;
out:
  cJSON_Delete(doc);
  curl_easy_cleanup(c);
  free(mb.data);
  return rc;
}

char *t_hex_new(const unsigned char *b, size_t n)
{
  static const char digits[] = "0123456789abcdef";
  char *s = malloc(2 * n + 1);
  if (!s)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[b[i] >> 4];
    s[2 * i + 1] = digits[b[i] & 15];
  }
  s[2 * n] = 0;
  return s;
}

unsigned char *t_read_file_new(const char *path, size_t *len)
{
  FILE *fp = fopen(path, "rb");
  unsigned char *buf = NULL;
  size_t n;

  if (!fp) {
    fprintf(stderr, "cannot open %s\n", path);
    return NULL;
  }
  buf = malloc(T_FILE_MAX);
  if (buf) {
    n = fread(buf, 1, T_FILE_MAX, fp);
    if (ferror(fp) || n == T_FILE_MAX) {
      fprintf(stderr, "cannot read %s (error or larger than %d bytes)\n", path, T_FILE_MAX);
      free(buf);
      buf = NULL;
    } else {
      *len = n;
    }
  }
  fclose(fp);
  return buf;
}
