/* SPDX-License-Identifier: Apache-2.0 */
/* The user PIN (docs/security.md "Login"): crypt(3) verification with libxcrypt and the delay
 * that slows down guessing. The login state machine itself is in session.c. */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "core/akv.h"
#include "token/pin.h"
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
    akv_err(AKV_LOGC_GEN,
            "login: the slot's pin_hash is not a usable crypt(3) string; fix: "
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
    akv_err(AKV_LOGC_GEN,
            "login: crypt(3) cannot check the slot's pin_hash (method disabled in "
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

#define KEY_FILE_MAX (1024 * 1024)

/* OpenSSL's password callback: the NUL-terminated PIN copy in u. */
static int pin_pass_cb(char *buf, int size, int rwflag, void *u)
{
  size_t n = strlen(u);
  (void)rwflag;
  if (n > (size_t)size)
    return -1;
  memcpy(buf, u, n);
  return (int)n;
}

/* The PEM file whole, in *pem (KEY_FILE_MAX + 1 bytes, the caller wipes and frees it), when its
 * private key is encrypted: an open key would take any PIN, so the PIN would be no second factor.
 * Returns its length, or -1 (logged). */
static long read_encrypted_pem(const char *path, char **pem)
{
  BIO *bio = path ? BIO_new_file(path, "r") : NULL;
  long n = -1;

  *pem = malloc(KEY_FILE_MAX + 1);
  if (!bio || !*pem || (n = BIO_read(bio, *pem, KEY_FILE_MAX)) <= 0) {
    akv_err(AKV_LOGC_GEN,
            "login: cannot read the certificate file %s for the PIN check; fix: "
            "check certificate_path",
            path ? path : "(none)");
    n = -1;
    goto out;
  }
  (*pem)[n] = '\0';
  if (!strstr(*pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") &&
      !strstr(*pem, "Proc-Type: 4,ENCRYPTED")) {
    akv_err(AKV_LOGC_GEN,
            "login: the private key in %s is not encrypted, so a PIN cannot be its "
            "password (pin: certificate_password); fix: encrypt it (openssl pkey -in KEY -aes256 "
            "-out KEY.enc) or use \"pin\": \"pin_hash\"",
            path);
    n = -1;
  }
out:
  BIO_free(bio);
  return n;
}

static void pem_free(char *pem)
{
  if (pem) {
    OPENSSL_cleanse(pem, KEY_FILE_MAX + 1);
    free(pem);
  }
}

int akv_pin_key_file_encrypted(const char *path)
{
  char *pem = NULL;
  long n = read_encrypted_pem(path, &pem);
  pem_free(pem);
  return n > 0;
}

int akv_pin_opens_key(const char *path, const unsigned char *pin, size_t len)
{
  BIO *bio = NULL;
  EVP_PKEY *key = NULL;
  char *pem = NULL, *phrase = NULL;
  long n;
  int rc = -1;

  if (len > AKV_PIN_MAX || (len && (!pin || memchr(pin, '\0', len))))
    return 0;
  if ((n = read_encrypted_pem(path, &pem)) < 0)
    goto out;
  bio = BIO_new_mem_buf(pem, (int)n);
  phrase = malloc(len + 1);
  if (!bio || !phrase) {
    akv_err(AKV_LOGC_GEN, "login: out of memory checking the PIN");
    goto out;
  }
  if (len)
    memcpy(phrase, pin, len);
  phrase[len] = '\0';
  key = PEM_read_bio_PrivateKey_ex(bio, NULL, pin_pass_cb, phrase, akv_libctx(), NULL);
  ERR_clear_error(); /* a wrong password is an answer, not an error to leave queued */
  rc = key != NULL;
out:
  EVP_PKEY_free(key);
  BIO_free(bio);
  pem_free(pem);
  if (phrase) {
    OPENSSL_cleanse(phrase, len + 1);
    free(phrase);
  }
  return rc;
}
