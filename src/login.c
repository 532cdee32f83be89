/* SPDX-License-Identifier: Apache-2.0 */
/* The user PIN (docs/security.md "Login"): crypt(3) verification with libxcrypt and the delay
 * that slows down guessing. The login state machine itself is in session.c. */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "login.h"
#include "util/config.h"
#include "util/log.h"

#define DELAY_FIRST_MS 250L
#define DELAY_MAX_MS 4000L

long akv_pin_delay_ms(unsigned failures)
{
  long d = DELAY_FIRST_MS;
  if (failures == 0)
    return 0;
  while (--failures > 0 && d < DELAY_MAX_MS)
    d *= 2;
  return d < DELAY_MAX_MS ? d : DELAY_MAX_MS;
}

int akv_pin_check(const char *hash, const unsigned char *pin, size_t len)
{
  struct crypt_data *work = NULL;
  char *phrase = NULL;
  const char *out;
  size_t hlen;
  int rc = -1;

  /* The same test as the configuration's, so a hash that loaded is one crypt can check. */
  if (!akv_pin_hash_valid(hash)) {
    akv_err(AKV_LOGC_GEN, "login: the slot's pin_hash is not a usable crypt(3) string; fix: "
            "write the output of `mkpasswd -m yescrypt` into pin_hash (docs/config.md)");
    return -1;
  }
  if (len > AKV_PIN_MAX || (len && (!pin || memchr(pin, '\0', len))))
    return 0;
  work = calloc(1, sizeof(*work)); /* about 32 KiB: not for the stack */
  phrase = malloc(len + 1);
  if (!work || !phrase) {
    akv_err(AKV_LOGC_GEN, "login: out of memory checking the PIN");
    goto out;
  }
  if (len)
    memcpy(phrase, pin, len);
  phrase[len] = '\0';
  out = crypt_rn(phrase, hash, work, (int)sizeof(*work));
  hlen = strlen(hash);
  /* crypt_rn fails with NULL (or, in some builds, a string starting with '*'). */
  if (!out || out[0] == '*') {
    akv_err(AKV_LOGC_GEN, "login: crypt(3) cannot check the slot's pin_hash (method disabled in "
            "this libxcrypt?); fix: write a yescrypt pin_hash with `mkpasswd -m yescrypt`");
    goto out;
  }
  rc = strlen(out) == hlen && CRYPTO_memcmp(out, hash, hlen) == 0;
out:
  if (work) {
    OPENSSL_cleanse(work, sizeof(*work));
    free(work);
  }
  if (phrase) {
    OPENSSL_cleanse(phrase, len + 1);
    free(phrase);
  }
  return rc;
}
