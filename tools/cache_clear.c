/* SPDX-License-Identifier: Apache-2.0 */
/* akv-p11 cache clear: removes this user's cross-process cache file (docs/config.md `cache_file`,
 * docs/troubleshooting.md), the path the module uses (util/cache_path.c), with the module's checks
 * on its directory. The name is removed with unlinkat in the opened directory, so a symbolic link
 * in its place is removed itself and never followed. The lock file and the per-user key stay. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"
#include "util/cache_path.h"
#include "util/config.h"
#include "util/log.h"

int tool_cache_path(const struct akv_config *cfg, char *buf, size_t len)
{
  return akv_cache_file_path(cfg->cache_file, buf, len);
}

int tool_cache_remove(const struct akv_config *cfg, char *msg, size_t len)
{
  char path[4096], dir[4096];
  const char *base, *why;
  struct stat st;
  char *slash;
  int dfd = -1, ret = TOOL_PROBLEM;

  if (!tool_cache_path(cfg, path, sizeof(path))) {
    snprintf(msg, len,
             "no cache file: it is off (cache_file \"\") or neither XDG_CACHE_HOME nor "
             "HOME is an absolute path");
    return TOOL_OK;
  }
  snprintf(dir, sizeof(dir), "%s", path);
  slash = strrchr(dir, '/');
  if (!slash) {
    snprintf(dir, sizeof(dir), ".");
    base = path;
  } else {
    base = path + (slash - dir) + 1;
    slash[slash == dir ? 1 : 0] = '\0';
  }
  if (!*base) {
    snprintf(msg, len, "cache_file %s names a directory, not a file", path);
    return TOOL_USAGE;
  }
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    if (errno != ENOENT)
      snprintf(msg, len, "cache directory %s: %s", dir, strerror(errno));
    else {
      snprintf(msg, len, "no cache file at %s (its directory does not exist)", path);
      ret = TOOL_OK;
    }
    return ret;
  }
  if (fstat(dfd, &st) != 0) {
    snprintf(msg, len, "cache directory %s: %s", dir, strerror(errno));
    goto out;
  }
  if ((why = akv_cache_not_private(&st, 022, 1)) != NULL) {
    snprintf(msg, len,
             "cache directory %s refused: %s (mode %03o, uid %u); nothing removed. The module "
             "does not use a cache file there either",
             dir, why, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
    goto out;
  }
  if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT)
      snprintf(msg, len, "cache file %s: %s", path, strerror(errno));
    else {
      snprintf(msg, len, "no cache file at %s: nothing to remove", path);
      ret = TOOL_OK;
    }
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    snprintf(msg, len, "%s is a directory, not a cache file; nothing removed", path);
    goto out;
  }
  if (unlinkat(dfd, base, 0) != 0) {
    snprintf(msg, len, "cannot remove the cache file %s: %s", path, strerror(errno));
    goto out;
  }
  if (S_ISLNK(st.st_mode))
    snprintf(msg, len, "removed %s (a symbolic link, not followed: its target is untouched)", path);
  else
    snprintf(msg, len,
             "removed the cache file %s (%lld bytes, last written %lld s ago); the next listing "
             "reads the vault",
             path, (long long)st.st_size, (long long)(time(NULL) - st.st_mtim.tv_sec));
  ret = TOOL_OK;
out:
  close(dfd);
  return ret;
}

int tool_cache_clear(const struct tool_opts *o)
{
  struct akv_config *cfg = NULL;
  char msg[8400], err[1024];
  int ret = TOOL_USAGE;

  akv_log_init(AKV_LOG_ERROR, "/dev/null");
  if (akv_config_load(o->config, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "akv-p11: configuration error: %s\n", err);
  } else {
    ret = tool_cache_remove(cfg, msg, sizeof(msg));
    if (ret == TOOL_OK)
      printf("%s\n", msg);
    else
      fprintf(stderr, "akv-p11: %s\n", msg);
  }
  akv_config_free(cfg);
  akv_log_close();
  return ret;
}
