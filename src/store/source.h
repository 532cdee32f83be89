/* SPDX-License-Identifier: Apache-2.0 */
/* Where an object comes from in the vault, as one string (struct akv_object.src): "k|NAME" (a
 * key's current version), "v|NAME|VERSION" (an older version, versions: "all"), "c|NAME" (a
 * certificate), "s|NAME" (a secret). Objects of one source are carried over or replaced together
 * at a refresh, dropped together by a write, and kept together in the cache file. This is the only
 * place that builds or reads the form (src/store/source.c). */
#ifndef AKV_SOURCE_H
#define AKV_SOURCE_H

#include <stddef.h>

enum akv_source_kind {
  AKV_SRC_KEY = 'k',
  AKV_SRC_VERSION = 'v',
  AKV_SRC_CERT = 'c',
  AKV_SRC_SECRET = 's',
};

/* Writes the source id into buf (truncated to len like snprintf); version only for
 * AKV_SRC_VERSION. */
void akv_source_id(char *buf, size_t len, enum akv_source_kind kind, const char *name,
                   const char *version);

/* 1 when src (may be NULL) is a source id of that kind. */
int akv_source_is(const char *src, enum akv_source_kind kind);

/* The part after the kind: NAME, or NAME|VERSION for AKV_SRC_VERSION. src must be a source id. */
const char *akv_source_name(const char *src);

/* 1 when src is of that kind and names name (case-insensitive, as the vault compares names; any
 * version of an AKV_SRC_VERSION). */
int akv_source_names(const char *src, enum akv_source_kind kind, const char *name);

/* Splits a source id: its kind, name (name_len bytes) and version (NULL but for
 * AKV_SRC_VERSION). 0 when src is not a well-formed source id. */
int akv_source_split(const char *src, enum akv_source_kind *kind, const char **name,
                     size_t *name_len, const char **version);

#endif
