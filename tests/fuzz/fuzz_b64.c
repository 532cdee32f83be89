/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the strict base64 / base64url decoders (akv_b64_decode, akv_b64url_decode) that
 * read every signature, ciphertext, JWK member and certificate a vault returns. Oracle: a decoder
 * that only accepts the canonical form (docs in b64.h) must give back exactly its input when the
 * result is encoded again; and any bytes encoded must decode to themselves. The first input byte
 * picks the alphabet; the rest is the text (exact length, no NUL) or the bytes. */
#include "fuzz_common.h"

#include "util/b64.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_log_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int url;
  size_t len, out_len = 0, back_len = 0;
  char *text = NULL, *again = NULL, *enc = NULL;
  unsigned char *out = NULL, *back = NULL;
  if (size < 1)
    return 0;
  url = data[0] & 1;
  len = size - 1;
  /* Decode: exact-size copy, so a read past len is an ASan report. */
  text = malloc(len ? len : 1);
  if (!text)
    return 0;
  memcpy(text, data + 1, len);
  if ((url ? akv_b64url_decode(text, len, &out, &out_len)
           : akv_b64_decode(text, len, &out, &out_len)) == 0) {
    if (!out)
      abort(); /* success yields a buffer, even for empty input */
    again = url ? akv_b64url_encode(out, out_len) : akv_b64_encode(out, out_len);
    if (!again || strlen(again) != len || memcmp(again, text, len) != 0)
      abort(); /* only the canonical encoding is accepted */
  } else if (out) {
    abort();
  }
  /* Encode the same bytes as data, then decode them (strlen form: text_len (size_t)-1). */
  enc = url ? akv_b64url_encode(data + 1, len) : akv_b64_encode(data + 1, len);
  if (enc) {
    if ((url ? akv_b64url_decode(enc, (size_t)-1, &back, &back_len)
             : akv_b64_decode(enc, (size_t)-1, &back, &back_len)) != 0)
      abort(); /* our own encoding always decodes */
    if (back_len != len || (len && memcmp(back, data + 1, len) != 0))
      abort(); /* and round-trips */
  }
  free(back);
  free(enc);
  free(again);
  free(out);
  free(text);
  return 0;
}
