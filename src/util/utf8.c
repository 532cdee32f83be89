/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 validation (src/util/utf8.h). */
#include "util/utf8.h"

size_t akv_utf8_seq_len(const unsigned char *s, size_t avail, unsigned *cp_out)
{
  size_t n;
  unsigned cp;
  if (avail == 0)
    return 0;
  if (s[0] < 0x80) {
    n = 1;
    cp = s[0];
  } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
    n = 2;
    cp = s[0] & 0x1fu;
  } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    n = 3;
    cp = s[0] & 0x0fu;
  } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    n = 4;
    cp = s[0] & 0x07u;
  } else {
    return 0;
  }
  if (n > avail)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  if (cp_out)
    *cp_out = cp;
  return n;
}
