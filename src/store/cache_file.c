/* SPDX-License-Identifier: Apache-2.0 */
/* The cross-process cache file (see cache_file.h, docs/design.md "Cache file" and docs/security.md
 * "The cache file"). Layout: one header line, then JSON:
 *   akv-pkcs11-cache 5 MAC
 *   {"format":5,"slots":[{"fp":SLOT-FINGERPRINT,"built_at":T,"keys":[KEY...],"certs":[CERT...],
 *              "secrets":[SECRET...],"pending":[{"name":N,"created":T,"updated":T}...]}],
 *    "names":[{"fp":SLOT-FINGERPRINT,"name":N,"read_at":T,"keys":[KEY],"certs":[CERT]}...]}
 * MAC is the hex HMAC-SHA256, under the user's key file (config directory, never the cache
 * directory), of "akv-pkcs11-cache 5\n" followed by the JSON bytes. KEY is {"src":S,"bundle":B}
 * with B a KeyBundle as the vault sends it (public JWK, attributes, tags, managed); CERT is
 * {"src":S,"bundle":CertificateBundle} (+ "chain":N for the Nth chain certificate of that bundle);
 * SECRET is {"src":S,"item":list item}. Restoring parses them with the vault reply parsers
 * (kv/jwk.c) and builds the objects with the listing's constructors (object.c): the file holds no
 * attribute of its own, and nothing in it is checked less strictly than a vault reply. Objects
 * from the file never count as fetched (src_fetched_at 0), so the next refresh reads them from the
 * vault again. The fingerprint covers everything in the slot's config that changes the object
 * list and the principal the slot's access token names, which the process must have had first, so
 * a changed config, a credential that gets no token or another identity never reuses an old
 * entry. "names" holds what cold searches by label read (docs/design.md "Cold search by label"):
 * one record per fingerprint and name, never a listing (only a search by that label reads it). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "store/cache_file.h"
#include "util/cache_path.h"
#include "kv/json.h"
#include "kv/jwk.h"
#include "store/object.h"
#include "store/source.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/utc.h"

/* The file format: authenticated, with key tags, pending keys and the vault's JSON, its entries
 * keyed by the principal the slot's token names (docs/design.md "Cache file"). A file of another
 * format is not read. */
#define CACHE_FORMAT 5
#define FORMAT_STR "5"
#define MAGIC "akv-pkcs11-cache " FORMAT_STR
#define HDR_LEN (sizeof(MAGIC) + 64 + 1) /* MAGIC, ' ', 64 hex digits, '\n' */
#define CACHE_MAX_BYTES (32u << 20)
#define LOCK_WAIT_MS 30000
#define KEY_BYTES 32
#define KEY_FILE "cache.key"
/* built_at may be this far in the future (another process's clock read a moment later). */
#define MAX_SKEW_S 60
#define MAX_TIME 253402300799.0 /* 9999-12-31T23:59:59Z */
#define MAX_CHAIN 64
/* Per-name records kept: per fingerprint (what one process may read cold) and in all; the oldest
 * go first. A record older than the largest ttl the configuration accepts serves nobody. */
#define NAMES_PER_SLOT AKV_COLD_NAMES
#define NAMES_MAX 128
#define NAMES_MAX_AGE_S 86400
/* A per-name record is written in a search: the lock is waited for this long at most. */
#define NAME_LOCK_WAIT_MS 250

/* ---- warnings: one per cause and process, one per bad file version --------------------------- */

enum { W_DIR = 1u, W_LOCK = 2u, W_KEY = 4u, W_PRIV = 8u, W_CLAIMS = 16u };
static atomic_uint warned;
static atomic_uint_fast64_t bad_file_seen;

static int first_time(unsigned bit)
{
  return !(atomic_fetch_or(&warned, bit) & bit);
}

/* A file that was ignored: warned about once per version of it (device, inode, size, mtime). */
static void bad_file(const char *path, const struct stat *st, const char *why)
{
  uint64_t id = 1469598103934665603ULL,
           parts[5] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                       (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec};
  for (size_t i = 0; i < 5; i++)
    id = (id ^ parts[i]) * 1099511628211ULL;
  id |= 1;
  if (atomic_exchange(&bad_file_seen, id) != id)
    akv_warn(AKV_LOGC_CACHE, "cache file %s ignored: %s; the next listing rewrites it", path, why);
}

/* ---- where the file is, and whether it may be used ------------------------------------------- */

struct cf {
  char path[4096];             /* the file, for messages */
  char lock[4200];             /* the lock file, for messages */
  const char *base, *lockbase; /* their names in dirfd */
  int dirfd;
};

/* The file's path, or 0 when off ("" in the config) or unknown (util/cache_path.c). */
static int cache_path(char *buf, size_t len)
{
  const struct akv_config *cfg = akv_config();
  return cfg && akv_cache_file_path(cfg->cache_file, buf, len);
}

/* mkdir -m 0700 of dir and of its parent (~/.cache, ~/.config) when missing. */
static void make_private_dirs(const char *dir)
{
  char parent[4096];
  char *slash;
  snprintf(parent, sizeof(parent), "%s", dir);
  slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    (void)mkdir(parent, 0700);
  }
  (void)mkdir(dir, 0700);
}

/* Opens the file's directory when the cache file is on and may be used here: not in a privileged
 * process, a directory only this user (or root) can write, a lock file that is not a link and only
 * this user can write. 0 (cache off, warned once per cause) otherwise. */
static int cf_open(struct cf *cf)
{
  char dir[4096];
  struct stat st;
  const char *why;
  char *slash;
  size_t dl;

  cf->dirfd = -1;
  if (!cache_path(cf->path, sizeof(cf->path)))
    return 0;
  if (getauxval(AT_SECURE)) {
    if (first_time(W_PRIV))
      akv_info(AKV_LOGC_CACHE, "cache file off: the process is privileged (setuid, setgid or "
                               "capabilities)");
    return 0;
  }
  if (snprintf(cf->lock, sizeof(cf->lock), "%s.lock", cf->path) >= (int)sizeof(cf->lock))
    return 0;
  snprintf(dir, sizeof(dir), "%s", cf->path);
  slash = strrchr(dir, '/');
  if (!slash) {
    snprintf(dir, sizeof(dir), ".");
    dl = 0;
  } else {
    dl = (size_t)(slash - dir) + 1;
    slash[slash == dir ? 1 : 0] = '\0';
  }
  cf->base = cf->path + dl;
  cf->lockbase = cf->lock + dl;
  if (!cf->base[0])
    return 0;
  if (!akv_config()->cache_file)
    make_private_dirs(dir); /* the default path: ours to create */
  cf->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cf->dirfd < 0 || fstat(cf->dirfd, &st) != 0) {
    if (first_time(W_DIR))
      akv_warn(AKV_LOGC_CACHE, "cache directory %s unusable (%s); the cache file is off", dir,
               strerror(errno));
    goto off;
  }
  if ((why = akv_cache_not_private(&st, 022, 1)) != NULL) {
    if (first_time(W_DIR))
      akv_warn(AKV_LOGC_CACHE,
               "cache directory %s refused: %s (mode %03o, uid %u); the cache file is off. "
               "Fix: chmod go-w %s, or set cache_file to a private directory",
               dir, why, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, dir);
    goto off;
  }
  if (fstatat(cf->dirfd, cf->lockbase, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      (!S_ISREG(st.st_mode) || (why = akv_cache_not_private(&st, 022, 0)) != NULL)) {
    if (first_time(W_LOCK))
      akv_warn(AKV_LOGC_CACHE,
               "cache file lock %s refused: %s (mode %03o, uid %u); the cache file is off. "
               "Fix: remove it",
               cf->lock, S_ISREG(st.st_mode) ? why : "not a regular file",
               (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
    goto off;
  }
  return 1;
off:
  if (cf->dirfd >= 0)
    close(cf->dirfd);
  cf->dirfd = -1;
  return 0;
}

static void cf_close(struct cf *cf)
{
  if (cf->dirfd >= 0)
    close(cf->dirfd);
  cf->dirfd = -1;
}

/* ---- the MAC key ----------------------------------------------------------------------------- */

/* $XDG_CONFIG_HOME/akv-pkcs11 or ~/.config/akv-pkcs11: the user's configuration, which whoever
 * writes the cache directory cannot read. */
static int key_dir(char *buf, size_t len)
{
  const char *env;
  int n;
  if ((env = secure_getenv("XDG_CONFIG_HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/akv-pkcs11", env);
  else if ((env = secure_getenv("HOME")) && env[0] == '/')
    n = snprintf(buf, len, "%s/.config/akv-pkcs11", env);
  else
    return 0;
  return n > 0 && (size_t)n < len;
}

static int write_all(int fd, const void *p, size_t len)
{
  const char *c = p;
  ssize_t w;
  while (len) {
    w = write(fd, c, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return 0;
    c += w;
    len -= (size_t)w;
  }
  return 1;
}

/* A new random key, published atomically (link: never replaces a key another process made). */
static int create_key(int dfd)
{
  unsigned char k[KEY_BYTES];
  char tmp[64];
  int fd, ok;

  if (RAND_priv_bytes_ex(akv_libctx(), k, sizeof(k), 0) != 1)
    return -1;
  snprintf(tmp, sizeof(tmp), KEY_FILE ".%ld.tmp", (long)getpid());
  (void)unlinkat(dfd, tmp, 0);
  fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  ok = fd >= 0 && write_all(fd, k, sizeof(k)) && fsync(fd) == 0;
  OPENSSL_cleanse(k, sizeof(k));
  if (fd >= 0)
    ok = close(fd) == 0 && ok;
  ok = ok && (linkat(dfd, tmp, dfd, KEY_FILE, 0) == 0 || errno == EEXIST);
  (void)unlinkat(dfd, tmp, 0);
  return ok ? openat(dfd, KEY_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
}

/* The user's MAC key (created on first use); 0 with one warning when there is none to be had. */
static int mac_key(unsigned char key[KEY_BYTES])
{
  char dir[4096];
  const char *why = NULL;
  struct stat st;
  int dfd = -1, fd = -1, ok = 0;
  ssize_t got;

  if (!key_dir(dir, sizeof(dir))) {
    snprintf(dir, sizeof(dir), "$XDG_CONFIG_HOME or ~/.config");
    why = "neither XDG_CONFIG_HOME nor HOME is an absolute path";
    goto out;
  }
  make_private_dirs(dir);
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0 || fstat(dfd, &st) != 0) {
    why = strerror(errno);
    goto out;
  }
  if ((why = akv_cache_not_private(&st, 022, 0)) != NULL)
    goto out;
  fd = openat(dfd, KEY_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    fd = create_key(dfd);
  if (fd < 0 || fstat(fd, &st) != 0) {
    why = strerror(errno);
    goto out;
  }
  if (!S_ISREG(st.st_mode) || st.st_size != KEY_BYTES) {
    why = "not a regular file of 32 bytes";
    goto out;
  }
  if ((why = akv_cache_not_private(&st, 077, 0)) != NULL)
    goto out;
  got = read(fd, key, KEY_BYTES);
  ok = got == KEY_BYTES;
  if (!ok)
    why = "short read";
out:
  if (fd >= 0)
    close(fd);
  if (dfd >= 0)
    close(dfd);
  if (!ok) {
    OPENSSL_cleanse(key, KEY_BYTES);
    if (first_time(W_KEY))
      akv_warn(AKV_LOGC_CACHE,
               "cache file off: no usable key to authenticate it (%s/" KEY_FILE ": %s). Fix: make "
               "that directory 0700 and the file 0600, owned by you, or remove the file",
               dir, why ? why : "unknown");
  }
  return ok;
}

/* HMAC-SHA256 over MAGIC "\n" || json, in the module's library context. */
static int compute_mac(const unsigned char key[KEY_BYTES], const char *json, size_t len,
                       unsigned char out[32])
{
  EVP_MAC *mac = EVP_MAC_fetch(akv_libctx(), "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                         OSSL_PARAM_construct_end()};
  size_t outl = 0;
  int ok = ctx && EVP_MAC_init(ctx, key, KEY_BYTES, params) &&
           EVP_MAC_update(ctx, (const unsigned char *)MAGIC "\n", sizeof(MAGIC)) &&
           EVP_MAC_update(ctx, (const unsigned char *)json, len) &&
           EVP_MAC_final(ctx, out, &outl, 32) && outl == 32;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return ok;
}

/* ---- numbers and strings from the file ------------------------------------------------------- */

/* An integral number within [lo, hi]; 0 when absent, not a number, not finite or out of range. */
static int get_num(const cJSON *o, const char *name, double lo, double hi, int64_t *v)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
  double d;
  if (!cJSON_IsNumber(it))
    return 0;
  d = it->valuedouble;
  if (!isfinite(d) || d < lo || d > hi || d != floor(d))
    return 0;
  *v = (int64_t)d;
  return 1;
}

static const char *get_str(const cJSON *o, const char *name)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Feeds one string of the identity (NULL as an absent field, distinct from ""). */
static int id_update(EVP_MD_CTX *md, const char *v)
{
  return v ? EVP_DigestUpdate(md, v, strlen(v) + 1) : EVP_DigestUpdate(md, "\x01", 2);
}

/* Who the slot's objects were listed for (docs/design.md "Cache file"): the principal the slot's
 * token names (tenant, object id, client application), or, when the token names none, the
 * configured credential: its source, tenant, client id and where each source gets its token from,
 * never a secret. Another principal may see other objects (or none), so it never shares an entry.
 */
static int identity_update(EVP_MD_CTX *md, const struct akv_slot_config *sc,
                           const struct kv_principal *who)
{
  const struct akv_config *cfg = akv_config();
  const struct akv_cred_config *cc = sc->has_cred ? &sc->cred : cfg ? &cfg->cred : NULL;
  char num[32];

  if (who->tid[0] && who->oid[0])
    return EVP_DigestUpdate(md, "principal|", 10) && id_update(md, who->tid) &&
           id_update(md, who->oid) && id_update(md, who->app);
  if (!cc)
    return EVP_DigestUpdate(md, "-", 1);
  snprintf(num, sizeof(num), "%d|%d|", (int)cc->kind, cc->client_secret != NULL);
  return EVP_DigestUpdate(md, num, strlen(num)) && id_update(md, cc->tenant_id) &&
         id_update(md, cc->client_id) && id_update(md, cc->authority_host) &&
         id_update(md, cc->certificate_path) && id_update(md, cc->federated_token_file) &&
         id_update(md, cc->imds_endpoint) && id_update(md, cc->identity_endpoint) &&
         id_update(md, cc->az_path);
}

/* Who the slot's token names: the file is read or written for a slot only once its credential has
 * produced a token in this process (docs/design.md "Decisions"), so a credential that produces none
 * is never shown a listing. CKR_OK, else the credential's error (logged where the token failed). */
static CK_RV principal(struct akv_slot *slot, struct kv_principal *who)
{
  kv_rc rc;

  if (!slot->client) {
    memset(who, 0, sizeof(*who));
    return CKR_FUNCTION_FAILED; /* no credential yet (opened at login): nothing to read */
  }
  rc = kv_client_principal(slot->client, who);
  if (rc != KV_OK)
    return akv_rv(rc);
  if ((!who->tid[0] || !who->oid[0]) && first_time(W_CLAIMS))
    akv_info(AKV_LOGC_CACHE,
             "%s: the access token names no tenant and object id (tid, oid claims); cache file "
             "entries are keyed by the configured credential instead",
             slot->cfg->url);
  return CKR_OK;
}

/* SHA-256 (hex) of what makes the slot's object list: its config and who it was listed for. *rv:
 * CKR_OK, else why there is none (principal's error, or CKR_FUNCTION_FAILED). */
static int fingerprint(struct akv_slot *slot, char out[65], CK_RV *rv)
{
  const struct akv_slot_config *sc = slot->cfg;
  /* In the module's own library context: a host's ENGINE or provider never sees this. */
  EVP_MD *sha;
  EVP_MD_CTX *md;
  struct kv_principal who;
  unsigned char h[32];
  unsigned hl = 0, i;
  char num[96];
  size_t k;
  int ok;

  *rv = principal(slot, &who);
  if (*rv != CKR_OK)
    return 0;
  *rv = CKR_FUNCTION_FAILED;
  sha = EVP_MD_fetch(akv_libctx(), "SHA256", NULL);
  md = EVP_MD_CTX_new();
  if (!md || !sha) {
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha);
    return 0;
  }
  snprintf(num, sizeof(num), "%d|%u|%d|%d|%d|%d|%zu|", CACHE_FORMAT, sc->objects, sc->versions_all,
           sc->show_disabled, sc->read_only, sc->allow_destroy, sc->n_key_names);
  ok = EVP_DigestInit_ex(md, sha, NULL) && EVP_DigestUpdate(md, sc->url, strlen(sc->url)) &&
       EVP_DigestUpdate(md, num, strlen(num)) &&
       (!sc->key_filter || EVP_DigestUpdate(md, sc->key_filter, strlen(sc->key_filter) + 1));
  for (k = 0; ok && k < sc->n_key_names; k++)
    ok = EVP_DigestUpdate(md, sc->key_names[k], strlen(sc->key_names[k]) + 1);
  ok = ok && identity_update(md, sc, &who) && EVP_DigestFinal_ex(md, h, &hl) && hl == 32;
  EVP_MD_CTX_free(md);
  EVP_MD_free(sha);
  for (i = 0; ok && i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
  if (ok)
    *rv = CKR_OK;
  return ok;
}

/* ---- reading --------------------------------------------------------------------------------- */

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* The file's JSON when it is ours, private, authentic under key and of this format; NULL
 * otherwise (missing: silently; anything else: one warning). *st is the file's identity. */
static cJSON *read_doc(const struct cf *cf, const unsigned char key[KEY_BYTES], struct stat *st)
{
  unsigned char want[32], got[32];
  const char *why = NULL;
  char *text = NULL;
  cJSON *doc = NULL;
  int64_t format = 0;
  ssize_t n;
  size_t off = 0, i;
  int fd, ok = 1;

  memset(st, 0, sizeof(*st));
  /* O_NONBLOCK: a FIFO planted in its place must not block the open (it is then refused). */
  fd = openat(cf->dirfd, cf->base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && fstatat(cf->dirfd, cf->base, st, AT_SYMLINK_NOFOLLOW) == 0)
      bad_file(cf->path, st, errno == ELOOP ? "a symbolic link" : strerror(errno));
    return NULL;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || akv_cache_not_private(st, 077, 0) ||
      (size_t)st->st_size > CACHE_MAX_BYTES) {
    why = "not a private file of this user";
    goto out;
  }
  text = malloc((size_t)st->st_size + 1);
  if (!text)
    goto out;
  while (off < (size_t)st->st_size) {
    n = read(fd, text + off, (size_t)st->st_size - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  text[off] = '\0';
  if (off < HDR_LEN || memcmp(text, MAGIC " ", sizeof(MAGIC)) != 0 || text[HDR_LEN - 1] != '\n') {
    why = "not an authenticated cache file of format " FORMAT_STR " (truncated, or an older "
          "format)";
    goto out;
  }
  for (i = 0; i < 32; i++) {
    int hi = hexval(text[sizeof(MAGIC) + 2 * i]), lo = hexval(text[sizeof(MAGIC) + 2 * i + 1]);
    ok = ok && hi >= 0 && lo >= 0;
    got[i] = (unsigned char)((hi & 15) << 4 | (lo & 15));
  }
  if (!ok || !compute_mac(key, text + HDR_LEN, off - HDR_LEN, want) ||
      CRYPTO_memcmp(want, got, sizeof(want)) != 0) {
    why = "its MAC does not match (altered, truncated, or written under another key)";
    goto out;
  }
  doc = cJSON_ParseWithLength(text + HDR_LEN, off - HDR_LEN);
  if (!doc || !get_num(doc, "format", 0, 1000, &format) || format != CACHE_FORMAT ||
      !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "slots"))) {
    why = "authentic but not of format " FORMAT_STR;
    cJSON_Delete(doc);
    doc = NULL;
  }
out:
  if (why)
    bad_file(cf->path, st, why);
  /* One line per read (open, MAC check, parse): what a search costs in file reads is counted
   * from it (integration test cold-file). */
  akv_dbg(AKV_LOGC_CACHE, "cache file %s: read %zu bytes (%s)", cf->path, off,
          doc ? "authentic" : "not used");
  OPENSSL_cleanse(want, sizeof(want));
  free(text);
  close(fd);
  return doc;
}

/* The objects restored from the file never count as read from the vault now (cache.c reuse): the
 * next refresh reads their source again, and its answer wins. */
static void not_fetched(struct akv_object **objs, size_t n)
{
  for (size_t i = 0; i < n; i++)
    objs[i]->src_fetched_at = 0;
}

/* A key version: its KeyBundle through the vault reply parser, its objects through the listing's
 * constructor; src names the key ("k|NAME", label NAME) or the version ("v|NAME|VER", label
 * NAME/VER) and must agree with the bundle's kid. */
static CK_RV load_key(struct akv_slot *slot, const cJSON *j, struct akv_object **objs,
                      size_t *n_objs)
{
  const char *src = get_str(j, "src"), *name, *version;
  enum akv_source_kind kind;
  struct kv_key *k = NULL;
  struct akv_keyent *ke = NULL;
  char label[300];
  size_t nl;
  CK_RV rv = CKR_FUNCTION_FAILED;

  *n_objs = 0;
  if (!src || strlen(src) > 260 || !akv_source_split(src, &kind, &name, &nl, &version) ||
      (kind != AKV_SRC_KEY && kind != AKV_SRC_VERSION) ||
      kv_key_from_bundle(cJSON_GetObjectItemCaseSensitive(j, "bundle"), &k) != KV_OK)
    goto out;
  if (nl != strlen(k->name) || strncasecmp(name, k->name, nl) != 0 ||
      (version && strcasecmp(version, k->version) != 0))
    goto out;
  if (kind == AKV_SRC_KEY)
    snprintf(label, sizeof(label), "%s", name);
  else
    snprintf(label, sizeof(label), "%.*s/%s", (int)nl, name, version);
  rv = akv_object_keyent_new(k, &ke); /* checks the material as a listing does (kv_key_to_pkey) */
  k = NULL;
  if (rv == CKR_OK)
    rv = akv_objects_from_key(slot, ke, label, src, objs, n_objs);
  if (rv == CKR_OK && *n_objs) {
    size_t m = 0;
    rv = akv_objects_attest(objs[0], objs + *n_objs, &m);
    if (rv != CKR_OK) {
      while (*n_objs)
        akv_object_unref(objs[--*n_objs]);
    }
    *n_objs += m;
  }
  if (rv == CKR_OK)
    not_fetched(objs, *n_objs);
out:
  kv_key_free(k);
  akv_object_keyent_unref(ke);
  return rv == CKR_OK ? rv : rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
}

/* A certificate (or the Nth certificate of its chain, named as cache.c add_chain names it). */
static CK_RV load_cert(struct akv_slot *slot, const cJSON *j, struct akv_object **out)
{
  const char *src = get_str(j, "src");
  struct kv_cert *c = NULL;
  char id[2200], name[200];
  int64_t chain = 0, created, updated;
  CK_RV rv = CKR_FUNCTION_FAILED;

  *out = NULL;
  if (!akv_source_is(src, AKV_SRC_CERT) ||
      (cJSON_GetObjectItemCaseSensitive(j, "chain") &&
       !get_num(j, "chain", 1, MAX_CHAIN, &chain)) ||
      kv_cert_from_bundle(cJSON_GetObjectItemCaseSensitive(j, "bundle"), "cache file", &c) !=
          KV_OK ||
      strcasecmp(src + 2, c->name) != 0)
    goto out;
  if (chain) {
    snprintf(id, sizeof(id), "%s#chain-%d", c->id, (int)chain);
    snprintf(name, sizeof(name), "%s-chain-%d", c->name, (int)chain);
    free(c->id);
    free(c->name);
    free(c->kid);
    c->kid = NULL;
    c->id = strdup(id);
    c->name = strdup(name);
    /* A chain certificate has only the leaf's times (cache.c add_chain). */
    created = c->attrs.created;
    updated = c->attrs.updated;
    kv_attrs_clear(&c->attrs);
    c->attrs.created = created;
    c->attrs.updated = updated;
    if (!c->id || !c->name) {
      rv = CKR_HOST_MEMORY;
      goto out;
    }
  }
  rv = akv_object_from_cert(slot, c, src, out); /* parses the DER as a listing does */
  if (rv == CKR_OK)
    not_fetched(out, 1);
out:
  kv_cert_free(c);
  return rv == CKR_OK ? rv : rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
}

/* A secret's data object (its value is never in the file). */
static CK_RV load_secret(struct akv_slot *slot, const cJSON *j, struct akv_object **out)
{
  const char *src = get_str(j, "src");
  struct kv_item it;
  CK_RV rv = CKR_FUNCTION_FAILED;

  *out = NULL;
  memset(&it, 0, sizeof(it));
  if (akv_source_is(src, AKV_SRC_SECRET) &&
      kv_item_from_json(cJSON_GetObjectItemCaseSensitive(j, "item"), "secrets", "id", &it) ==
          KV_OK &&
      strcasecmp(akv_source_name(src), it.name) == 0)
    rv = akv_object_from_secret(slot, &it, src, out);
  if (rv == CKR_OK)
    not_fetched(out, 1);
  free(it.id);
  free(it.name);
  free(it.version);
  free(it.content_type);
  free(it.x5t);
  kv_attrs_clear(&it.attrs);
  return rv == CKR_OK ? rv : rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
}

static const cJSON *find_entry(const cJSON *doc, const char *fp)
{
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "slots"))
  {
    const char *f = get_str(e, "fp");
    if (f && strcmp(f, fp) == 0)
      return e;
  }
  return NULL;
}

/* The entry's pending keys (absent: none). */
static CK_RV load_pending(const cJSON *e, struct akv_snapshot *snap)
{
  const cJSON *pending = cJSON_GetObjectItemCaseSensitive(e, "pending"), *it;
  int64_t created, updated;
  const char *name;
  int n;

  if (!pending)
    return CKR_OK;
  if (!cJSON_IsArray(pending))
    return CKR_FUNCTION_FAILED;
  n = cJSON_GetArraySize(pending);
  if (akv_ptrs_reserve(&snap->lazy, (size_t)n) != 0)
    return CKR_HOST_MEMORY;
  cJSON_ArrayForEach(it, pending)
  {
    struct akv_lazykey *lz;
    name = get_str(it, "name");
    if (!kv_valid_name(name) || !get_num(it, "created", 0, MAX_TIME, &created) ||
        !get_num(it, "updated", 0, MAX_TIME, &updated) || snap->n_lazy >= (size_t)n)
      return CKR_FUNCTION_FAILED;
    lz = akv_snapshot_lazykey_new(name, created, updated);
    if (!lz || akv_snapshot_add_lazy(snap, lz) != CKR_OK)
      return CKR_HOST_MEMORY;
  }
  return CKR_OK;
}

/* Every object of the entry (keys, certificates, secrets) into snap. */
static CK_RV load_objects(struct akv_slot *slot, const cJSON *e, struct akv_snapshot *snap)
{
  struct akv_object *objs[AKV_KEY_OBJECTS];
  const cJSON *it;
  size_t n, i;
  CK_RV rv = CKR_OK;

  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "keys"))
  {
    rv = load_key(slot, it, objs, &n);
    for (i = 0; i < n && rv == CKR_OK; i++)
      rv = akv_snapshot_add(snap, objs[i]);
    for (; i < n; i++)
      akv_object_unref(objs[i]);
    if (rv != CKR_OK)
      return rv;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "certs"))
  {
    if ((rv = load_cert(slot, it, &objs[0])) != CKR_OK ||
        (rv = akv_snapshot_add(snap, objs[0])) != CKR_OK)
      return rv;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "secrets"))
  {
    if ((rv = load_secret(slot, it, &objs[0])) != CKR_OK ||
        (rv = akv_snapshot_add(snap, objs[0])) != CKR_OK)
      return rv;
  }
  return load_pending(e, snap);
}

/* The time field of o when it is younger than ttl_s (clamped to now), with an empty snapshot for
 * its objects (*snap, *rv CKR_OK): 1. 0 when stale, when the field is not a time (one warning) or
 * on CKR_HOST_MEMORY (*rv). Bounded before any arithmetic: a time near INT64_MIN (or 1e300) must
 * not make now - t overflow into "fresh forever". */
static int fresh_snapshot(const struct cf *cf, const struct stat *st, const cJSON *o,
                          const char *field, int64_t ttl_s, int64_t *t, struct akv_snapshot **snap,
                          CK_RV *rv)
{
  int64_t now = akv_now();
  char why[96];

  if (!get_num(o, field, 1, (double)now + MAX_SKEW_S, t)) {
    snprintf(why, sizeof(why), "%s%s is not a time between 1970 and now",
             strcmp(field, "read_at") == 0 ? "a name record's " : "", field);
    bad_file(cf->path, st, why);
    return 0;
  }
  if (*t > now)
    *t = now;
  if (now - *t >= ttl_s)
    return 0;
  if (!(*snap = calloc(1, sizeof(**snap)))) {
    *rv = CKR_HOST_MEMORY;
    return 0;
  }
  (*snap)->refs = 1;
  return 1;
}

/* The file as one lookup reads it: the slot's fingerprint, the file's identity (for warnings) and
 * its document when it is authentic (else NULL). */
struct file_doc {
  char fp[65];
  struct cf cf;
  struct stat st;
  cJSON *doc;
  CK_RV rv; /* when open_doc gives 0: CKR_FUNCTION_FAILED, or the credential's error (no token) */
};

static int relist_mode(void);
static int first_drop(const char *fp);
/* How many times this thread holds the cross-process lock (lock_within, akv_cache_file_unlock). */
static _Thread_local int lock_held;
static void drop_entries(const struct cf *cf, const char *fp);

/* Reads the file once (open, MAC check, parse). 0 when the cache file is off or unusable here, or
 * the slot's credential produced no token (d->rv, nothing to close), else 1 (close_doc d). */
static int open_doc(struct akv_slot *slot, struct file_doc *d)
{
  unsigned char key[KEY_BYTES];

  d->doc = NULL;
  d->rv = CKR_FUNCTION_FAILED;
  memset(&d->st, 0, sizeof(d->st));
  if (!cf_open(&d->cf))
    return 0;
  if (!fingerprint(slot, d->fp, &d->rv)) {
    cf_close(&d->cf);
    return 0;
  }
  if (relist_mode()) {
    /* No listing or record from the file; the slot's own entries go once (akv-p11 doctor). */
    if (first_drop(d->fp))
      drop_entries(&d->cf, d->fp);
    return 1;
  }
  if (mac_key(key))
    d->doc = read_doc(&d->cf, key, &d->st);
  OPENSSL_cleanse(key, sizeof(key));
  return 1;
}

static void close_doc(struct file_doc *d)
{
  cJSON_Delete(d->doc);
  d->doc = NULL;
  cf_close(&d->cf);
}

/* The slot's listing in the document read (akv_cache_file_load). */
static CK_RV load_entry(struct akv_slot *slot, const struct file_doc *d, struct akv_snapshot **out)
{
  const cJSON *e;
  struct akv_snapshot *snap = NULL;
  int64_t built_at = 0, now = akv_now();
  CK_RV rv = CKR_FUNCTION_FAILED;

  *out = NULL;
  e = d->doc ? find_entry(d->doc, d->fp) : NULL;
  if (!e)
    goto out; /* none: listing is expected, nothing to warn about */
  if (!fresh_snapshot(&d->cf, &d->st, e, "built_at", slot->cfg->ttl_s, &built_at, &snap, &rv))
    goto out; /* stale (listing is expected), not a time (warned) or no memory */
  snap->built_at = built_at;
  rv = load_objects(slot, e, snap);
  if (rv != CKR_OK) {
    bad_file(d->cf.path, &d->st, "an entry fails the checks a vault reply must pass");
    goto out;
  }
  rv = akv_snapshot_sort(snap);
  if (rv != CKR_OK)
    goto out;
  akv_dbg(AKV_LOGC_CACHE, "%s: %zu object(s), %zu pending key(s) from the cache file (%lld s old)",
          slot->cfg->url, snap->n, snap->n_lazy, (long long)(now - built_at));
out:
  if (rv != CKR_OK) {
    akv_snapshot_unref(snap);
    snap = NULL;
  }
  *out = snap;
  return snap ? CKR_OK : CKR_FUNCTION_FAILED;
}

CK_RV akv_cache_file_load(struct akv_slot *slot, struct akv_snapshot **out)
{
  struct file_doc d;
  CK_RV rv;

  *out = NULL;
  if (!open_doc(slot, &d))
    return d.rv;
  rv = load_entry(slot, &d, out);
  close_doc(&d);
  return rv;
}

/* ---- per-name records: reading ----------------------------------------------------------------
 */

/* The record of (fp, name) in doc's "names", or NULL. */
static cJSON *find_name(const cJSON *doc, const char *fp, const char *name)
{
  const cJSON *names = cJSON_GetObjectItemCaseSensitive(doc, "names");
  cJSON *r;
  if (!cJSON_IsArray(names))
    return NULL;
  cJSON_ArrayForEach(r, names)
  {
    const char *f = get_str(r, "fp"), *nm = get_str(r, "name");
    if (f && nm && strcmp(f, fp) == 0 && strcmp(nm, name) == 0)
      return r;
  }
  return NULL;
}

/* Whether a record's objects are what a cold search of name makes: at most one key (its objects
 * and attestation objects) and one certificate, all of that exact name, nothing pending. */
static int name_record_ok(const cJSON *r, const struct akv_snapshot *snap, const char *name)
{
  size_t i;
  if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "keys")) > 1 ||
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "certs")) > 1 ||
      cJSON_GetObjectItemCaseSensitive(r, "secrets") || snap->n_lazy ||
      snap->n > AKV_CF_NAME_OBJECTS)
    return 0;
  for (i = 0; i < snap->n; i++) {
    const char *src = akv_snapshot_obj(snap, i)->src;
    if ((!akv_source_is(src, AKV_SRC_KEY) && !akv_source_is(src, AKV_SRC_CERT)) ||
        strcmp(akv_source_name(src), name) != 0)
      return 0;
  }
  return 1;
}

/* The record of name in the document read (akv_cache_file_load_name). */
static CK_RV load_record(struct akv_slot *slot, const struct file_doc *d, const char *name,
                         struct akv_object **out, size_t *n, int64_t *read_at)
{
  const cJSON *r;
  struct akv_snapshot *snap = NULL;
  int64_t at = 0, now = akv_now();
  CK_RV rv = CKR_FUNCTION_FAILED;
  size_t i;

  *n = 0;
  *read_at = 0;
  r = d->doc ? find_name(d->doc, d->fp, name) : NULL;
  if (!r)
    goto out; /* none: the cold search reads the vault */
  if (!fresh_snapshot(&d->cf, &d->st, r, "read_at", slot->cfg->ttl_s, &at, &snap, &rv))
    goto out; /* stale (the cold search reads the vault), not a time (warned) or no memory */
  rv = load_objects(slot, r, snap);
  if (rv == CKR_OK && !name_record_ok(r, snap, name))
    rv = CKR_FUNCTION_FAILED;
  if (rv != CKR_OK) {
    if (rv != CKR_HOST_MEMORY)
      bad_file(d->cf.path, &d->st, "a name record fails the checks a vault reply must pass");
    goto out;
  }
  for (i = 0; i < snap->n; i++)
    out[i] = akv_object_ref(akv_snapshot_obj(snap, i));
  *n = snap->n;
  *read_at = at;
  akv_dbg(AKV_LOGC_CACHE, "%s: %zu object(s) of %s from the cache file (read %lld s ago)",
          slot->cfg->url, snap->n, name, (long long)(now - at));
out:
  akv_snapshot_unref(snap);
  return rv;
}

CK_RV akv_cache_file_load_name(struct akv_slot *slot, const char *name, struct akv_object **out,
                               size_t *n, int64_t *read_at)
{
  struct file_doc d;
  CK_RV rv;

  *n = 0;
  *read_at = 0;
  if (!open_doc(slot, &d))
    return d.rv;
  rv = load_record(slot, &d, name, out, n, read_at);
  close_doc(&d);
  return rv;
}

CK_RV akv_cache_file_load_cold(struct akv_slot *slot, const char *name, struct akv_snapshot **out,
                               struct akv_cf_name *rec)
{
  struct file_doc d;
  CK_RV rv;

  *out = NULL;
  rec->looked = 1;
  rec->found = 0;
  rec->n = 0;
  rec->read_at = 0;
  if (!open_doc(slot, &d))
    return d.rv;
  rv = load_entry(slot, &d, out);
  if (rv != CKR_OK) {
    /* No fresh listing: the record of name in the same document. */
    rec->found = load_record(slot, &d, name, rec->objs, &rec->n, &rec->read_at) == CKR_OK;
    rv = CKR_FUNCTION_FAILED;
  }
  close_doc(&d);
  return rv;
}

/* ---- writing --------------------------------------------------------------------------------- */

static int add_num(cJSON *o, const char *name, int64_t v)
{
  return cJSON_AddNumberToObject(o, name, (double)v) != NULL;
}

static int add_b64url(cJSON *o, const char *name, const unsigned char *p, size_t len)
{
  char buf[2200];
  if (!p)
    return 1;
  return akv_b64url_encode_to(p, len, buf, sizeof(buf)) > 0 &&
         cJSON_AddStringToObject(o, name, buf) != NULL;
}

/* attributes (times that are set, enabled) and tags, as the vault writes them. */
static int add_attrs(cJSON *j, const struct kv_attrs *a, int with_enabled)
{
  cJSON *at = cJSON_AddObjectToObject(j, "attributes"), *tags;
  size_t i;
  int ok = at && (!with_enabled || cJSON_AddBoolToObject(at, "enabled", a->enabled) != NULL) &&
           (!a->nbf || add_num(at, "nbf", a->nbf)) && (!a->exp || add_num(at, "exp", a->exp)) &&
           (!a->created || add_num(at, "created", a->created)) &&
           (!a->updated || add_num(at, "updated", a->updated)) &&
           (!a->exportable || cJSON_AddBoolToObject(at, "exportable", 1) != NULL);
  if (ok && a->managed)
    ok = cJSON_AddBoolToObject(j, "managed", 1) != NULL;
  if (!ok || !a->n_tags)
    return ok;
  tags = cJSON_AddObjectToObject(j, "tags");
  for (i = 0; tags && i < a->n_tags; i++) {
    if (!cJSON_AddStringToObject(tags, a->tags[i].name, a->tags[i].value))
      return 0;
  }
  return tags != NULL;
}

/* The KeyBundle the vault sent for this key version (its public part). */
static cJSON *key_bundle(const struct kv_key *k)
{
  cJSON *b = cJSON_CreateObject(), *jwk = NULL, *ops = NULL;
  char kty[16];
  size_t i;
  int ok;

  snprintf(kty, sizeof(kty), "%s%s",
           k->kty == KV_KTY_RSA  ? "RSA"
           : k->kty == KV_KTY_EC ? "EC"
                                 : "oct",
           k->hsm ? "-HSM" : "");
  ok = b && (jwk = cJSON_AddObjectToObject(b, "key")) != NULL &&
       cJSON_AddStringToObject(jwk, "kid", k->kid) && cJSON_AddStringToObject(jwk, "kty", kty) &&
       (ops = cJSON_AddArrayToObject(jwk, "key_ops")) != NULL;
  for (i = 0; ok && i < 32; i++) {
    if ((k->key_ops & (1u << i)) && kv_key_op_name(1u << i))
      ok = cJSON_AddItemToArray(ops, cJSON_CreateString(kv_key_op_name(1u << i)));
  }
  ok = ok && add_b64url(jwk, "n", k->n, k->n_len) && add_b64url(jwk, "e", k->e, k->e_len) &&
       (k->kty != KV_KTY_EC || cJSON_AddStringToObject(jwk, "crv", kv_crv_name(k->crv))) &&
       add_b64url(jwk, "x", k->x, k->x_len) && add_b64url(jwk, "y", k->y, k->y_len) &&
       add_attrs(b, &k->attrs, 1);
  if (!ok) {
    cJSON_Delete(b);
    b = NULL;
  }
  return b;
}

/* A borrowed attribute as a NUL-terminated copy in buf ("" when absent or too long). */
static const char *attr_str(const struct akv_object *obj, CK_ATTRIBUTE_TYPE t, char *buf,
                            size_t len)
{
  const CK_ATTRIBUTE *a = akv_object_attr(obj, t);
  buf[0] = '\0';
  if (a && a->pValue && a->ulValueLen < len) {
    memcpy(buf, a->pValue, a->ulValueLen);
    buf[a->ulValueLen] = '\0';
  }
  return buf;
}

/* CK_DATE back to a time (midnight UTC of that day: the same CK_DATE again); 0 when empty. */
static int64_t date_time(const struct akv_object *obj, CK_ATTRIBUTE_TYPE t)
{
  const CK_ATTRIBUTE *a = akv_object_attr(obj, t);
  char buf[9];
  struct akv_utc u = {0};
  if (!a || a->ulValueLen != 8)
    return 0;
  memcpy(buf, a->pValue, 8);
  buf[8] = '\0';
  if (sscanf(buf, "%4d%2d%2d", &u.year, &u.month, &u.day) != 3)
    return 0;
  return akv_utc_to_epoch(&u); /* no timegm: its lock may be held at a fork */
}

/* A certificate object as the CertificateBundle it was built from. */
static cJSON *cert_json(const struct akv_object *obj)
{
  const CK_ATTRIBUTE *der = akv_object_attr(obj, CKA_VALUE), *cat, *id;
  cJSON *j = cJSON_CreateObject(), *b = NULL, *tags;
  char kid[2200], ver[200], hex[2 * 64 + 1], *chain, *certs;
  struct kv_attrs a;
  char *cer = NULL;
  CK_ULONG category = 0;
  int n = 0, ok;
  size_t i;

  memset(&a, 0, sizeof(a));
  attr_str(obj, CKA_AKV_KID, kid, sizeof(kid));
  attr_str(obj, CKA_AKV_VERSION, ver, sizeof(ver));
  cat = akv_object_attr(obj, CKA_CERTIFICATE_CATEGORY);
  if (cat && cat->ulValueLen == sizeof(category))
    memcpy(&category, cat->pValue, sizeof(category));
  chain = strstr(kid, "#chain-");
  if (chain) {
    n = atoi(chain + 7);
    *chain = '\0';
  }
  cer = der ? akv_b64_encode(der->pValue, der->ulValueLen) : NULL;
  ok = j && cer && kid[0] && cJSON_AddStringToObject(j, "src", obj->src) &&
       (!chain || add_num(j, "chain", n)) && (b = cJSON_AddObjectToObject(j, "bundle")) != NULL &&
       cJSON_AddStringToObject(b, "id", kid) && cJSON_AddStringToObject(b, "cer", cer);
  if (ok && !chain) {
    /* The certificate's key has the same name and version under /keys/. */
    certs = strstr(kid, "/certificates/");
    if (category == 1 && certs) {
      char k2[2200];
      snprintf(k2, sizeof(k2), "%.*s/keys/%s", (int)(certs - kid), kid, certs + 14);
      ok = cJSON_AddStringToObject(b, "kid", k2) != NULL;
    }
    a.nbf = date_time(obj, CKA_START_DATE);
    a.exp = date_time(obj, CKA_END_DATE);
    id = akv_object_attr(obj, CKA_ID);
    if (ok && id && id->ulValueLen && id->ulValueLen <= 64) {
      for (i = 0; i < id->ulValueLen; i++)
        snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)id->pValue)[i]);
      tags = cJSON_AddObjectToObject(b, "tags");
      ok = tags && cJSON_AddStringToObject(tags, "pkcs11-id", hex);
    }
  }
  a.created = obj->src_created;
  a.updated = obj->src_updated;
  ok = ok && add_attrs(b, &a, 0);
  free(cer);
  if (!ok) {
    cJSON_Delete(j);
    j = NULL;
  }
  return j;
}

/* A secret's data object as the list item it was built from. */
static cJSON *secret_json(const struct akv_object *obj)
{
  cJSON *j = cJSON_CreateObject(), *item = NULL;
  char id[2200];
  struct kv_attrs a;
  int ok;

  memset(&a, 0, sizeof(a));
  a.created = obj->src_created;
  a.updated = obj->src_updated;
  ok = j && attr_str(obj, CKA_AKV_KID, id, sizeof(id))[0] &&
       cJSON_AddStringToObject(j, "src", obj->src) &&
       (item = cJSON_AddObjectToObject(j, "item")) != NULL &&
       cJSON_AddStringToObject(item, "id", id) && add_attrs(item, &a, 0);
  if (!ok) {
    cJSON_Delete(j);
    j = NULL;
  }
  return j;
}

static int add_to(cJSON *arr, cJSON *it)
{
  if (it && cJSON_AddItemToArray(arr, it))
    return 1;
  cJSON_Delete(it);
  return 0;
}

/* Object i of a snapshot's objects, of a plain array's: objects_json's two sources. */
static const struct akv_object *snap_obj(const void *from, size_t i)
{
  return akv_snapshot_obj(from, i);
}

static const struct akv_object *array_obj(const void *from, size_t i)
{
  return ((struct akv_object *const *)from)[i];
}

static int cmp_keyent(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* The key entries of the n objects at(from, i), sorted (with repeats) into ke: their count, or
 * (size_t)-1 out of memory. */
static size_t keyents_sorted(const struct akv_object *(*at)(const void *, size_t), const void *from,
                             size_t n, struct akv_ptrs *ke)
{
  size_t i, m = 0;
  for (i = 0; i < n; i++) {
    struct akv_keyent *k = at(from, i)->keyent;
    if (k && akv_ptrs_put(ke, m++, k) != 0)
      return (size_t)-1;
  }
  return akv_ptrs_sort(ke, m, cmp_keyent) == 0 ? m : (size_t)-1;
}

/* 1 the first time k (one of the m sorted entries of ke) is asked for: its first slot in ke has
 * its bit in seen. */
static int keyent_first(const struct akv_ptrs *ke, size_t m, unsigned char *seen,
                        const struct akv_keyent *k)
{
  size_t lo = 0, hi = m;
  unsigned char bit;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)akv_ptrs_at(ke, mid) < (uintptr_t)k)
      lo = mid + 1;
    else
      hi = mid;
  }
  bit = (unsigned char)(1u << (lo % 8));
  if (seen[lo / 8] & bit)
    return 0;
  seen[lo / 8] |= bit;
  return 1;
}

/* The "keys" and "certs" (and with secrets, "secrets") arrays of the n objects at(from, i) into
 * e. A key version's private and public objects share one key entry, written once where the
 * first of them is: the entries are sorted once (blocks of 32 KB) and each one's first sight
 * marked in a bitmap of one bit per entry, n log n rather than a scan of every earlier object
 * (docs/performance.md "Listing and cache file at scale"). */
static int objects_json(cJSON *e, const struct akv_object *(*at)(const void *, size_t),
                        const void *from, size_t n, int with_secrets)
{
  cJSON *keys, *certs, *secrets = NULL, *it, *b;
  struct akv_ptrs ke;
  unsigned char *seen = NULL;
  size_t i, m = 0;
  int ok = (keys = cJSON_AddArrayToObject(e, "keys")) != NULL &&
           (certs = cJSON_AddArrayToObject(e, "certs")) != NULL &&
           (!with_secrets || (secrets = cJSON_AddArrayToObject(e, "secrets")) != NULL);

  memset(&ke, 0, sizeof(ke));
  if (ok) {
    m = keyents_sorted(at, from, n, &ke);
    ok = m != (size_t)-1 && (seen = calloc(m / 8 + 1, 1)) != NULL;
  }
  for (i = 0; ok && i < n; i++) {
    const struct akv_object *o = at(from, i);
    /* An object without a source still takes its key entry's first sight. */
    int first = o->keyent && keyent_first(&ke, m, seen, o->keyent);
    if (!o->src)
      continue;
    if (o->keyent) {
      /* One entry per key version: the private and public objects share it. */
      if (!first)
        continue;
      it = cJSON_CreateObject();
      b = key_bundle(o->key);
      ok = it && b && cJSON_AddStringToObject(it, "src", o->src) &&
           cJSON_AddItemToObject(it, "bundle", b);
      if (!ok)
        cJSON_Delete(b);
      ok = add_to(keys, ok ? it : (cJSON_Delete(it), NULL));
    } else if (o->cls == CKO_CERTIFICATE && akv_source_is(o->src, AKV_SRC_CERT)) {
      ok = add_to(certs, cert_json(o));
    } else if (secrets && o->cls == CKO_DATA && akv_source_is(o->src, AKV_SRC_SECRET)) {
      ok = add_to(secrets, secret_json(o));
    }
  }
  free(seen);
  akv_ptrs_free(&ke);
  return ok;
}

static cJSON *entry_json(const struct akv_snapshot *snap, const char *fp)
{
  cJSON *e = cJSON_CreateObject(), *pending = NULL, *it;
  size_t i;
  int ok = e && cJSON_AddStringToObject(e, "fp", fp) && add_num(e, "built_at", snap->built_at) &&
           objects_json(e, snap_obj, snap, snap->n, 1) &&
           (pending = cJSON_AddArrayToObject(e, "pending")) != NULL;

  /* Every pending entry is written as pending: one a search resolved since is read once more by
   * the next process, which is cheaper than taking the cache's lock here. */
  for (i = 0; ok && i < snap->n_lazy; i++) {
    const struct akv_lazykey *lz = akv_snapshot_lazy(snap, i);
    it = cJSON_CreateObject();
    ok = it && cJSON_AddStringToObject(it, "name", lz->name) &&
         add_num(it, "created", lz->created) && add_num(it, "updated", lz->updated);
    ok = add_to(pending, ok ? it : (cJSON_Delete(it), NULL));
  }
  if (!ok) {
    cJSON_Delete(e);
    e = NULL;
  }
  return e;
}

/* Header (with the MAC of json) and json into a temporary file, renamed over the file. */
static int write_atomic(const struct cf *cf, const unsigned char key[KEY_BYTES], const char *json)
{
  char tmp[4200], hdr[HDR_LEN + 1];
  unsigned char mac[32];
  size_t len = strlen(json), i;
  int fd, ok;

  if (!compute_mac(key, json, len, mac))
    return 0;
  memcpy(hdr, MAGIC " ", sizeof(MAGIC));
  for (i = 0; i < 32; i++)
    snprintf(hdr + sizeof(MAGIC) + 2 * i, 3, "%02x", mac[i]);
  hdr[HDR_LEN - 1] = '\n';
  hdr[HDR_LEN] = '\0';
  if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", cf->base, (long)getpid()) >= (int)sizeof(tmp))
    return 0;
  (void)unlinkat(cf->dirfd, tmp, 0);
  fd = openat(cf->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return 0;
  ok = write_all(fd, hdr, HDR_LEN) && write_all(fd, json, len);
  ok = close(fd) == 0 && ok;
  if (ok)
    ok = renameat(cf->dirfd, tmp, cf->dirfd, cf->base) == 0;
  if (!ok)
    (void)unlinkat(cf->dirfd, tmp, 0);
  return ok;
}

/* ---- per-name records: writing ----------------------------------------------------------------
 */

/* Removes from doc's "names" the records of fp read at or before fp_before (and the one of name
 * when name is set), and with fp_ttl > 0 those of fp at least fp_ttl old; records of any
 * fingerprint older than NAMES_MAX_AGE_S or malformed go too. */
static void prune_names(cJSON *doc, const char *fp, const char *name, int64_t fp_before,
                        int64_t fp_ttl)
{
  cJSON *names = cJSON_GetObjectItemCaseSensitive(doc, "names");
  int64_t now = akv_now(), at;
  int i;

  if (!cJSON_IsArray(names))
    return;
  for (i = cJSON_GetArraySize(names) - 1; i >= 0; i--) {
    const cJSON *r = cJSON_GetArrayItem(names, i);
    const char *f = get_str(r, "fp"), *nm = get_str(r, "name");
    int ours = f && strcmp(f, fp) == 0;
    if (!f || !nm || !get_num(r, "read_at", 1, (double)now + MAX_SKEW_S, &at) ||
        now - at >= NAMES_MAX_AGE_S ||
        (ours && (at <= fp_before || (name && strcmp(nm, name) == 0) ||
                  (fp_ttl > 0 && now - at >= fp_ttl))))
      cJSON_DeleteItemFromArray(names, i);
  }
}

/* Drops the oldest record (of fp only when fp is set) while there are more than max of them. */
static void bound_names(cJSON *names, const char *fp, int max)
{
  int i, count, oldest;
  int64_t at, oldest_at;

  for (;;) {
    count = 0;
    oldest = -1;
    oldest_at = INT64_MAX;
    for (i = 0; i < cJSON_GetArraySize(names); i++) {
      const cJSON *r = cJSON_GetArrayItem(names, i);
      const char *f = get_str(r, "fp");
      if (fp && (!f || strcmp(f, fp) != 0))
        continue;
      count++;
      if (!get_num(r, "read_at", 0, MAX_TIME, &at))
        at = 0;
      if (at < oldest_at) {
        oldest_at = at;
        oldest = i;
      }
    }
    if (count <= max || oldest < 0)
      return;
    cJSON_DeleteItemFromArray(names, oldest);
  }
}

static cJSON *name_json(const char *fp, const char *name, struct akv_object *const *objs, size_t n,
                        int64_t read_at)
{
  cJSON *r = cJSON_CreateObject();
  if (r && cJSON_AddStringToObject(r, "fp", fp) && cJSON_AddStringToObject(r, "name", name) &&
      add_num(r, "read_at", read_at) && objects_json(r, array_obj, objs, n, 0))
    return r;
  cJSON_Delete(r);
  return NULL;
}

static int lock_within(int wait_ms, int step_ms, int quiet);

void akv_cache_file_save_name(struct akv_slot *slot, const char *name,
                              struct akv_object *const *objs, size_t n, int64_t read_at)
{
  unsigned char key[KEY_BYTES];
  char fp[65];
  struct cf cf;
  struct stat st;
  cJSON *doc = NULL, *slots, *names, *rec;
  const cJSON *e;
  char *text = NULL;
  int64_t built_at = 0;
  int lock = -1;
  CK_RV rv;

  if (!n || n > AKV_CF_NAME_OBJECTS || !cf_open(&cf))
    return;
  if (!fingerprint(slot, fp, &rv)) {
    cf_close(&cf);
    return;
  }
  if (!mac_key(key))
    goto out;
  lock = lock_within(NAME_LOCK_WAIT_MS, 5, 1);
  if (lock < 0) {
    akv_dbg(AKV_LOGC_CACHE, "cache file %s: locked by another process, %s not recorded", cf.path,
            name);
    goto out;
  }
  doc = read_doc(&cf, key, &st);
  slots = doc ? cJSON_GetObjectItemCaseSensitive(doc, "slots") : NULL;
  if (!slots) {
    cJSON_Delete(doc);
    doc = cJSON_CreateObject();
    if (!doc || !add_num(doc, "format", CACHE_FORMAT) || !cJSON_AddArrayToObject(doc, "slots"))
      goto out;
  }
  /* A listing of the fingerprint made since the read answers the name already. */
  e = find_entry(doc, fp);
  if (e && get_num(e, "built_at", 1, (double)akv_now() + MAX_SKEW_S, &built_at) &&
      built_at >= read_at && akv_now() - built_at < slot->cfg->ttl_s)
    goto out;
  names = cJSON_GetObjectItemCaseSensitive(doc, "names");
  if (!cJSON_IsArray(names)) {
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "names");
    if (!(names = cJSON_AddArrayToObject(doc, "names")))
      goto out;
  }
  prune_names(doc, fp, name, 0, slot->cfg->ttl_s);
  rec = name_json(fp, name, objs, n, read_at);
  if (!rec || !cJSON_AddItemToArray(names, rec)) {
    cJSON_Delete(rec);
    goto out;
  }
  bound_names(names, fp, NAMES_PER_SLOT);
  bound_names(names, NULL, NAMES_MAX);
  text = cJSON_PrintUnformatted(doc);
  if (!text || !write_atomic(&cf, key, text))
    akv_warn(AKV_LOGC_CACHE, "cache file %s: cannot write it: %s", cf.path, strerror(errno));
  else
    akv_dbg(AKV_LOGC_CACHE, "cache file %s: %s recorded (%zu object(s))", cf.path, name, n);
out:
  OPENSSL_cleanse(key, sizeof(key));
  free(text);
  cJSON_Delete(doc);
  akv_cache_file_unlock(lock);
  cf_close(&cf);
}

void akv_cache_file_save(struct akv_slot *slot, const struct akv_snapshot *snap, unsigned flags)
{
  unsigned char key[KEY_BYTES];
  char fp[65];
  struct cf cf;
  struct stat st;
  cJSON *doc = NULL, *slots = NULL, *entry = NULL;
  char *text = NULL;
  int lock = -1, i, have_key;
  CK_RV rv;

  if (!snap || !cf_open(&cf))
    return;
  if (!fingerprint(slot, fp, &rv)) {
    cf_close(&cf);
    return;
  }
  have_key = mac_key(key);
  if (!have_key)
    goto out;
  if (!(flags & AKV_CF_HAVE_LOCK))
    lock = akv_cache_file_lock();
  /* Read-modify-write under the lock: other slots' (and other configs') entries are kept, when
   * the file is authentic; anything else is replaced. */
  doc = read_doc(&cf, key, &st);
  slots = doc ? cJSON_GetObjectItemCaseSensitive(doc, "slots") : NULL;
  if (!slots) {
    cJSON_Delete(doc);
    doc = cJSON_CreateObject();
    slots =
        doc && add_num(doc, "format", CACHE_FORMAT) ? cJSON_AddArrayToObject(doc, "slots") : NULL;
    if (!slots)
      goto out;
  }
  for (i = cJSON_GetArraySize(slots) - 1; i >= 0; i--) {
    const cJSON *old = cJSON_GetArrayItem(slots, i);
    const char *f = get_str(old, "fp");
    int64_t built_at = 0;
    if (f && strcmp(f, fp) == 0 && (flags & AKV_CF_IF_NOT_OLDER) &&
        get_num(old, "built_at", 1, (double)akv_now() + MAX_SKEW_S, &built_at) &&
        built_at > snap->built_at)
      goto out; /* another process listed since: its entry is the better one */
    if (!f || strcmp(f, fp) == 0)
      cJSON_DeleteItemFromArray(slots, i);
  }
  entry = entry_json(snap, fp);
  if (!entry || !cJSON_AddItemToArray(slots, entry)) {
    cJSON_Delete(entry);
    goto out;
  }
  /* The listing answers every name read before it started: those records go. */
  prune_names(doc, fp, NULL, snap->built_at, 0);
  text = cJSON_PrintUnformatted(doc);
  if (!text || !write_atomic(&cf, key, text))
    akv_warn(AKV_LOGC_CACHE, "cache file %s: cannot write it: %s", cf.path, strerror(errno));
out:
  OPENSSL_cleanse(key, sizeof(key));
  free(text);
  cJSON_Delete(doc);
  akv_cache_file_unlock(lock);
  cf_close(&cf);
}

/* ---- dropping a slot's entries (AKV_PKCS11_CACHE_RELIST) ------------------------------------- */

/* AKV_PKCS11_CACHE_RELIST=1 (docs/config.md "Environment variables", set by akv-p11 doctor for its
 * module pass): the process takes no listing or per-name record from the file, and before a slot's
 * first lookup drops that slot's entries from it (its fingerprint's listing and records, for this
 * principal); every other configuration's and principal's entries stay. The slot's listing then
 * writes its entry afresh as usual. secure_getenv: a privileged process has no cache file. */
static int relist_mode(void)
{
  const char *v = secure_getenv("AKV_PKCS11_CACHE_RELIST");
  return v && strcmp(v, "1") == 0;
}

/* Fingerprints whose entries this process dropped already: a later lookup of the slot must not
 * drop the entry its own listing wrote. 1 the first time for fp; 0 after, and when the table is
 * full (more than DROPPED_MAX fingerprints: nothing more is dropped, never an entry twice). */
#define DROPPED_MAX 256
static pthread_mutex_t dropped_lock = PTHREAD_MUTEX_INITIALIZER;
static char dropped[DROPPED_MAX][65];
static size_t n_dropped;

static int first_drop(const char *fp)
{
  int first = 1;
  size_t i;

  pthread_mutex_lock(&dropped_lock);
  for (i = 0; first && i < n_dropped; i++)
    first = strcmp(dropped[i], fp) != 0;
  if (first && n_dropped < DROPPED_MAX)
    memcpy(dropped[n_dropped++], fp, 65);
  else
    first = 0;
  pthread_mutex_unlock(&dropped_lock);
  return first;
}

/* Removes fp's listing and per-name records from the file, read and rewritten under the
 * cross-process lock like every write (MAC checked before, new MAC after, O_EXCL|O_NOFOLLOW 0600
 * temporary file renamed over it: write_atomic). A missing or unauthentic file is left to the
 * listing, which replaces it; one with nothing of fp's is not rewritten. */
static void drop_entries(const struct cf *cf, const char *fp)
{
  unsigned char key[KEY_BYTES];
  struct stat st;
  cJSON *doc = NULL, *arr;
  char *text = NULL;
  const char *which[2] = {"slots", "names"};
  int lock, i, k, dropped_n = 0;

  if (!mac_key(key))
    return;
  /* A refresh (cache.c refresh_since) looks up the file holding the lock already. */
  lock = lock_held ? -1 : akv_cache_file_lock();
  doc = read_doc(cf, key, &st);
  for (k = 0; doc && k < 2; k++) {
    arr = cJSON_GetObjectItemCaseSensitive(doc, which[k]);
    for (i = cJSON_GetArraySize(arr) - 1; cJSON_IsArray(arr) && i >= 0; i--) {
      const char *f = get_str(cJSON_GetArrayItem(arr, i), "fp");
      if (f && strcmp(f, fp) == 0) {
        cJSON_DeleteItemFromArray(arr, i);
        dropped_n++;
      }
    }
  }
  if (dropped_n) {
    text = cJSON_PrintUnformatted(doc);
    if (!text || !write_atomic(cf, key, text))
      akv_warn(AKV_LOGC_CACHE, "cache file %s: cannot write it: %s", cf->path, strerror(errno));
    else
      akv_dbg(AKV_LOGC_CACHE, "cache file %s: %d entr%s of slot %.12s dropped (relist)", cf->path,
              dropped_n, dropped_n == 1 ? "y" : "ies", fp);
  }
  OPENSSL_cleanse(key, sizeof(key));
  free(text);
  cJSON_Delete(doc);
  akv_cache_file_unlock(lock);
}

/* ---- locking --------------------------------------------------------------------------------- */

/* The lock file, flocked within wait_ms (polled every step_ms); -1 when the cache file is off or
 * the lock was not had in time (warned unless quiet). */
static int lock_within(int wait_ms, int step_ms, int quiet)
{
  struct timespec ts = {0, step_ms * 1000000L};
  struct stat st;
  struct cf cf;
  const char *why = NULL;
  int fd, waited;

  if (!cf_open(&cf))
    return -1;
  fd = openat(cf.dirfd, cf.lockbase, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0)
    why = errno == ELOOP ? "a symbolic link" : strerror(errno);
  else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    why = "not a regular file";
  else
    why = akv_cache_not_private(&st, 022, 0);
  if (why) {
    if (first_time(W_LOCK))
      akv_warn(AKV_LOGC_CACHE,
               "cache file lock %s refused: %s; the cache file is off. Fix: "
               "remove it",
               cf.lock, why);
    if (fd >= 0)
      close(fd);
    cf_close(&cf);
    return -1;
  }
  cf_close(&cf);
  for (waited = 0; waited < wait_ms; waited += step_ms) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      lock_held++;
      return fd;
    }
    if (errno != EWOULDBLOCK && errno != EINTR)
      break;
    nanosleep(&ts, NULL);
  }
  if (!quiet)
    akv_warn(AKV_LOGC_CACHE, "cache file lock %s: not acquired, refreshing without it", cf.lock);
  close(fd);
  return -1;
}

int akv_cache_file_lock(void)
{
  return lock_within(LOCK_WAIT_MS, 50, 0);
}

void akv_cache_file_unlock(int fd)
{
  if (fd < 0)
    return;
  lock_held--;
  (void)flock(fd, LOCK_UN);
  close(fd);
}
