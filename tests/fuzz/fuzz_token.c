/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kv_token_parse, the reply of every token source (Entra's token endpoint, IMDS,
 * App Service, the az CLI's JSON): the token member, token_type, and the expiry from refresh_in,
 * expires_in, expires_on or expiresOn as numbers, numeric strings, RFC 3339, RFC 1123 or local
 * time. The first input byte picks the token member's name and the clock; the rest is the reply,
 * passed with its exact length and no NUL. */
#include "fuzz_common.h"

#include "kv/token.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  /* expiresOn (az CLI) is local time: fix the zone so a run is reproducible. */
  setenv("TZ", "UTC", 1);
  fuzz_log_init();
  return 0;
}

/* What an accepted token must be: it goes into an Authorization header. */
static int token_ok(const char *v)
{
  size_t n = 0;
  for (; v[n]; n++)
    if ((unsigned char)v[n] <= 0x20 || (unsigned char)v[n] >= 0x7f)
      return 0;
  return n > 0 && n <= 16 * 1024;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* 0: a moment in 2023; the others sit at the ends of what a clock may say. */
  static const int64_t clocks[] = {1700000000, 0, 4102444800 /* 2100 */, INT64_C(1) << 40};
  struct kv_token t;
  const char *field;
  int64_t now;
  char *body = NULL;
  kv_rc rc;
  if (size < 1)
    return 0;
  field = (data[0] & 1) ? "accessToken" : "access_token";
  now = clocks[(data[0] >> 1) % (sizeof clocks / sizeof clocks[0])];
  /* An exact-size copy so that a read past the body's length is an ASan report. */
  if (size > 1) {
    body = malloc(size - 1);
    if (!body)
      return 0;
    memcpy(body, data + 1, size - 1);
  }
  memset(&t, 0x5a, sizeof t);
  rc = kv_token_parse(body, size - 1, field, now, &t);
  if (rc == KV_OK) {
    if (!t.value || !token_ok(t.value))
      abort(); /* success yields a usable header value */
    if (!(t.expires_on > now && t.refresh_on > now && t.refresh_on <= t.expires_on))
      abort(); /* now < refresh_on <= expires_on */
  } else if (t.value || t.expires_on || t.refresh_on) {
    abort(); /* failure hands out nothing */
  }
  kv_token_clear(&t);
  free(body);
  return 0;
}
