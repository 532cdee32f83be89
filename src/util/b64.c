/* Base64 / base64url with strict decoding; the block coding itself is OpenSSL's. */
#include "util/b64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static int is_b64_char(unsigned char c, int url)
{
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
    return 1;
  if (url)
    return c == '-' || c == '_';
  return c == '+' || c == '/';
}

static char *encode(const unsigned char *data, size_t len, int url)
{
  size_t olen;
  char *out;
  int n;
  if (len > (SIZE_MAX / 4) * 3 - 3 || len > INT32_MAX / 2)
    return NULL;
  olen = 4 * ((len + 2) / 3);
  out = malloc(olen + 1);
  if (!out)
    return NULL;
  n = len ? EVP_EncodeBlock((unsigned char *)out, data, (int)len) : 0;
  out[n] = '\0';
  if (url) {
    for (int i = 0; i < n; i++) {
      if (out[i] == '+')
        out[i] = '-';
      else if (out[i] == '/')
        out[i] = '_';
    }
    while (n > 0 && out[n - 1] == '=')
      out[--n] = '\0';
  }
  return out;
}

char *akv_b64url_encode(const unsigned char *data, size_t len)
{
  return encode(data, len, 1);
}

char *akv_b64_encode(const unsigned char *data, size_t len)
{
  return encode(data, len, 0);
}

/* Decodes `nchars` alphabet characters (already validated, standard alphabet, padded to a
 * multiple of four with `pad` '=' characters) held in std. */
static int decode_std(const char *std, size_t padded_len, size_t pad, unsigned char **out,
                      size_t *out_len)
{
  unsigned char *buf;
  int n;
  char *check = NULL;
  int rc = -1;
  buf = malloc(padded_len / 4 * 3 + 1);
  if (!buf)
    return -1;
  n = padded_len ? EVP_DecodeBlock(buf, (const unsigned char *)std, (int)padded_len) : 0;
  if (n < 0 || (size_t)n < pad)
    goto out;
  n -= (int)pad;
  /* Non-canonical encodings (stray bits in the last character) would let two texts decode to
   * the same bytes; re-encoding must give the input back. */
  check = encode(buf, (size_t)n, 0);
  if (!check || strlen(check) != padded_len || memcmp(check, std, padded_len) != 0)
    goto out;
  *out = buf;
  *out_len = (size_t)n;
  buf = NULL;
  rc = 0;
out:
  free(check);
  if (buf) {
    OPENSSL_cleanse(buf, padded_len / 4 * 3 + 1);
    free(buf);
  }
  return rc;
}

static int decode(const char *text, size_t text_len, int url, unsigned char **out,
                  size_t *out_len)
{
  size_t nchars, pad = 0, padded;
  char *std = NULL;
  int rc = -1;
  if (!text)
    return -1;
  if (text_len == (size_t)-1)
    text_len = strlen(text);
  if (text_len > INT32_MAX / 2)
    return -1;
  nchars = text_len;
  if (!url) {
    /* Standard base64: padding required, at most two '=' at the very end. */
    if (text_len % 4 != 0)
      return -1;
    while (nchars > 0 && text[nchars - 1] == '=' && pad < 2) {
      nchars--;
      pad++;
    }
  }
  for (size_t i = 0; i < nchars; i++)
    if (!is_b64_char((unsigned char)text[i], url))
      return -1;
  if (nchars % 4 == 1)
    return -1;
  if (url)
    pad = (4 - nchars % 4) % 4;
  else if (pad != (4 - nchars % 4) % 4)
    return -1;
  padded = nchars + pad;
  std = malloc(padded + 1);
  if (!std)
    return -1;
  memcpy(std, text, nchars);
  if (url) {
    for (size_t i = 0; i < nchars; i++) {
      if (std[i] == '-')
        std[i] = '+';
      else if (std[i] == '_')
        std[i] = '/';
    }
  }
  memset(std + nchars, '=', pad);
  std[padded] = '\0';
  rc = decode_std(std, padded, pad, out, out_len);
  OPENSSL_cleanse(std, padded + 1);
  free(std);
  return rc;
}

int akv_b64url_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len)
{
  return decode(text, text_len, 1, out, out_len);
}

int akv_b64_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len)
{
  return decode(text, text_len, 0, out, out_len);
}
