/* SPDX-License-Identifier: Apache-2.0 */
/* Base64 / base64url with strict decoding, table-driven. The decoder checks canonical form
 * directly (alphabet, padding, the stray low bits of the last character) instead of re-encoding:
 * a sign reply's signature is decoded on every C_Sign and OpenSSL's EVP block coders plus a
 * re-encode and three allocations cost more than the rest of the reply handling. */
#include "util/b64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static const char enc_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char enc_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decoding tables hold value + 1, so that 0 (every other byte, NUL included) means "not in the
 * alphabet". */
#define B64_COMMON                                                                                 \
  ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,          \
  ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,   \
  ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,  \
  ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,  \
  ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,  \
  ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,  \
  ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,  \
  ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62

static const unsigned char dec_std[256] = {B64_COMMON, ['+'] = 63, ['/'] = 64};
static const unsigned char dec_url[256] = {B64_COMMON, ['-'] = 63, ['_'] = 64};

/* Characters of the encoding of len bytes, padded or not; 0 when it would not fit a size_t. */
static size_t enc_len(size_t len, int pad)
{
  if (len > (SIZE_MAX - 4) / 4 * 3)
    return 0;
  if (pad)
    return 4 * ((len + 2) / 3);
  return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

static size_t encode_to(const unsigned char *data, size_t len, int url, char *out)
{
  const char *a = url ? enc_url : enc_std;
  size_t i = 0, o = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = a[(v >> 6) & 63];
    out[o++] = a[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)data[i] << 16;
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    if (!url) {
      out[o++] = '=';
      out[o++] = '=';
    }
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = a[(v >> 6) & 63];
    if (!url)
      out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

static char *encode(const unsigned char *data, size_t len, int url)
{
  size_t olen = enc_len(len, !url);
  char *out;
  if (len && !olen)
    return NULL;
  out = malloc(olen + 1);
  if (!out)
    return NULL;
  encode_to(data, len, url, out);
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

size_t akv_b64url_encode_to(const unsigned char *data, size_t len, char *out, size_t cap)
{
  size_t olen = enc_len(len, 0);
  if ((len && !olen) || olen >= cap)
    return 0;
  return encode_to(data, len, 1, out);
}

/* Decodes nchars alphabet characters (no padding) into out, which holds nchars / 4 * 3 + 2
 * bytes. Returns the decoded length, or (size_t)-1 for a character outside the alphabet or a
 * non-canonical end: a lone final character, or stray bits in the last one, would let two texts
 * decode to the same bytes. */
static size_t decode_chars(const unsigned char *t, size_t nchars, const unsigned char *dec,
                           unsigned char *out)
{
  size_t i = 0, o = 0, rest = nchars % 4;
  uint32_t v, a, b, c, d;
  if (rest == 1)
    return (size_t)-1;
  for (; i + 4 <= nchars; i += 4) {
    a = dec[t[i]];
    b = dec[t[i + 1]];
    c = dec[t[i + 2]];
    d = dec[t[i + 3]];
    if (!a || !b || !c || !d)
      return (size_t)-1;
    v = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  if (rest) {
    a = dec[t[i]];
    b = dec[t[i + 1]];
    c = rest == 3 ? dec[t[i + 2]] : 1;
    if (!a || !b || !c)
      return (size_t)-1;
    v = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6;
    /* 2 characters carry 1 byte (4 stray bits), 3 carry 2 bytes (2 stray bits). */
    if (rest == 2 ? (v & 0xffff) != 0 : (v & 0xff) != 0)
      return (size_t)-1;
    out[o++] = (unsigned char)(v >> 16);
    if (rest == 3)
      out[o++] = (unsigned char)(v >> 8);
  }
  return o;
}

static int decode(const char *text, size_t text_len, int url, unsigned char **out, size_t *out_len)
{
  size_t nchars, pad = 0, cap, n;
  unsigned char *buf;
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
    if (pad != (4 - nchars % 4) % 4)
      return -1;
  }
  cap = nchars / 4 * 3 + 2; /* at least 1 byte, even for empty input */
  buf = malloc(cap);
  if (!buf)
    return -1;
  n = decode_chars((const unsigned char *)text, nchars, url ? dec_url : dec_std, buf);
  if (n == (size_t)-1) {
    OPENSSL_cleanse(buf, cap); /* a partial decode of a secret */
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = n;
  return 0;
}

int akv_b64url_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len)
{
  return decode(text, text_len, 1, out, out_len);
}

int akv_b64_decode(const char *text, size_t text_len, unsigned char **out, size_t *out_len)
{
  return decode(text, text_len, 0, out, out_len);
}
