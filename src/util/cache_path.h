/* SPDX-License-Identifier: Apache-2.0 */
/* Where the cross-process cache file is and whether a directory or file may be trusted
 * (docs/config.md `cache_file`, docs/security.md "The cache file"): shared by the module
 * (src/store/cache_file.c) and `akv-p11 cache clear` so both resolve the same path with the same
 * checks. */
#ifndef AKV_UTIL_CACHE_PATH_H
#define AKV_UTIL_CACHE_PATH_H

#include <stddef.h>
#include <sys/stat.h>

/* The file's path into buf: the configured cache_file (NULL = not set), else
 * $XDG_CACHE_HOME/akv-pkcs11/cache.json, else $HOME/.cache/akv-pkcs11/cache.json (absolute
 * variables only, secure_getenv). 0 when off ("" configured), unknown or too long. */
int akv_cache_file_path(const char *configured, char *buf, size_t len);

/* Why st may not be trusted (owned by another user, root allowed when root_ok; mode bits in
 * forbidden set), or NULL when only this user (or root) controls it. */
const char *akv_cache_not_private(const struct stat *st, mode_t forbidden, int root_ok);

#endif
