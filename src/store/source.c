/* SPDX-License-Identifier: Apache-2.0 */
/* Source ids of objects (src/store/source.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "store/source.h"

void akv_source_id(char *buf, size_t len, enum akv_source_kind kind, const char *name,
                   const char *version)
{
  if (kind == AKV_SRC_VERSION)
    snprintf(buf, len, "%c|%s|%s", (char)kind, name, version);
  else
    snprintf(buf, len, "%c|%s", (char)kind, name);
}

int akv_source_is(const char *src, enum akv_source_kind kind)
{
  return src && src[0] == (char)kind && src[1] == '|';
}

const char *akv_source_name(const char *src)
{
  return src + 2;
}

int akv_source_names(const char *src, enum akv_source_kind kind, const char *name)
{
  size_t nl = strlen(name);
  if (!akv_source_is(src, kind) || strncasecmp(src + 2, name, nl) != 0)
    return 0;
  return src[2 + nl] == '\0' || (kind == AKV_SRC_VERSION && src[2 + nl] == '|');
}

int akv_source_split(const char *src, enum akv_source_kind *kind, const char **name,
                     size_t *name_len, const char **version)
{
  const char *bar;
  if (!src || !strchr("kvcs", src[0]) || !src[0] || src[1] != '|')
    return 0;
  *kind = (enum akv_source_kind)src[0];
  *name = src + 2;
  bar = strchr(src + 2, '|');
  if ((*kind == AKV_SRC_VERSION) != (bar != NULL))
    return 0;
  *name_len = bar ? (size_t)(bar - *name) : strlen(*name);
  *version = bar ? bar + 1 : NULL;
  return 1;
}
