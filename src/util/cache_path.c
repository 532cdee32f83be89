/* SPDX-License-Identifier: Apache-2.0 */
/* The cache file's path and trust checks (cache_path.h). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/cache_path.h"

int akv_cache_file_path(const char *configured, char *buf, size_t len)
{
  const char *env;
  int n;

  if (configured && !configured[0])
    return 0;
  if (configured)
    n = snprintf(buf, len, "%s", configured);
  else if ((env = secure_getenv("XDG_CACHE_HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/akv-pkcs11/cache.json", env);
  else if ((env = secure_getenv("HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/.cache/akv-pkcs11/cache.json", env);
  else
    return 0;
  return n > 0 && (size_t)n < len;
}

const char *akv_cache_not_private(const struct stat *st, mode_t forbidden, int root_ok)
{
  if (st->st_uid != geteuid() && !(root_ok && st->st_uid == 0))
    return "owned by another user";
  if (st->st_mode & forbidden & 022)
    return "writable by group or others";
  if (st->st_mode & forbidden)
    return "readable by group or others";
  return NULL;
}
