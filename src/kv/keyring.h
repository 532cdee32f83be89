/* SPDX-License-Identifier: Apache-2.0 */
/* The access token shared between the user's processes through the Linux kernel keyring
 * (docs/security.md "The shared access token", docs/config.md `share_token`): one "user" key per
 * identity and credential, readable by its owner's uid only, expiring with the token. Raw
 * add_key(2) and keyctl(2) system calls: no libkeyutils at run time. */
#ifndef AKV_KV_KEYRING_H
#define AKV_KV_KEYRING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv/token.h"

/* Every description starts with this; the rest names the identity ("entra AUTHORITY TENANT
 * CLIENT RESOURCE", ...: auth.c). At most KV_KEYRING_DESC_MAX bytes with the NUL. */
#define KV_KEYRING_DESC_PREFIX "akv-pkcs11:token:v1:"
#define KV_KEYRING_DESC_MAX 1024

/* The payload of an entry: "AKVTOK1 EXPIRES_ON REFRESH_ON TOKEN" (Unix seconds, decimal; the token
 * in visible ASCII). At most this many bytes. */
#define KV_KEYRING_PAYLOAD_MAX (16 * 1024 + 64)

/* Writes t's entry into buf (NUL-terminated); returns its length without the NUL, 0 when it
 * does not fit or t is not a usable token. */
size_t kv_keyring_format(const struct kv_token *t, char *buf, size_t len);

/* Parses an entry's payload (len bytes, no NUL needed). 0 with *out filled (out->value malloc'd:
 * kv_token_clear) when it is a well-formed entry whose token has not expired at now; -1 with a
 * short reason in *why otherwise. */
int kv_keyring_parse(const char *payload, size_t len, int64_t now, struct kv_token *out,
                     const char **why);

/* Checks a KEYCTL_DESCRIBE answer "type;uid;gid;perm;description": a "user" key owned by uid,
 * nothing granted to a possessor, group or other (its owner's uid only), with exactly the
 * description desc. 0 when it is one this
 * module writes, -1 with a short reason in *why otherwise. */
int kv_keyring_describe_ok(const char *described, uid_t uid, const char *desc, const char **why);

/* 1 when the keyring can be used in this process (probed once; a keyring that is not there,
 * ENOSYS, EPERM or EACCES, is said once in the debug log and the tokens stay per process). */
int kv_keyring_available(void);

/* The entry under desc when a valid one is there: 0 and *out (kv_token_clear it); -1 when none
 * (or not one this module wrote: ignored, with one warning per process). */
int kv_keyring_get(const char *desc, struct kv_token *out);

/* Stores t under desc (replacing what is there), readable by its owner's uid only, expiring with
 * the token. 0 on success. */
int kv_keyring_put(const char *desc, const struct kv_token *t);

/* Drops the entry under desc when it holds refused (any entry when refused is NULL): a token
 * the vault answered 401 to. 1 when an entry was dropped. */
int kv_keyring_drop(const char *desc, const char *refused);

/* Single flight across processes: an exclusive flock on a file named after desc in
 * $XDG_RUNTIME_DIR/akv-pkcs11 (a directory only this user controls), waited for at most
 * wait_ms (0: not at all). The lock's fd (kv_keyring_unlock); -1 when there is no such directory
 * (the caller fetches without it); KV_KEYRING_BUSY when another process still held it after
 * wait_ms (another process is fetching; a warning when wait_ms > 0). */
#define KV_KEYRING_BUSY (-2)
int kv_keyring_lock(const char *desc, long wait_ms);
void kv_keyring_unlock(int fd);

#endif
