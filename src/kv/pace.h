/* SPDX-License-Identifier: Apache-2.0 */
/* Pacing: a vault's cryptographic operations are spent from its documented quota, shared by all
 * of the user's processes through a small bucket file, so that requests wait their turn instead of
 * drawing 429s (docs/reliability.md "Pacing", docs/config.md "quota"). */
#ifndef AKV_KV_PACE_H
#define AKV_KV_PACE_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

struct kv_http;
struct kv_pace;

/* Operation classes: Key Vault weighs its per-vault limit by key type and size and enforces the
 * weighted sum (docs/config.md "quota"), so one vault has one budget that each class spends at
 * its own price. An RSA key of unknown size is priced as RSA-2048 until a reply shows its size. */
enum kv_pace_class {
  KV_PACE_RSA2048 = 0,
  KV_PACE_RSA3072,
  KV_PACE_RSA4096,
  KV_PACE_EC,
  KV_PACE_OCT, /* AES and HMAC keys (Managed HSM) */
  KV_PACE_NCLASS
};

/* The set of pacers of one kv_http (http.c creates and frees it; kv_http_pace_set in
 * src/kv/http.h hands it to callers). Every call below takes the set, never the kv_http, so that
 * pace.c uses nothing of http.c (src/kv has no cycle: docs/design.md "Layers"). */
struct kv_pace_set;
struct kv_pace_set *kv_pace_set_new(void);
void kv_pace_set_free(struct kv_pace_set *s);

/* Registers the pacers of every slot of cfg in set (kv_http_new, from opts->pace_cfg). A slot
 * with pacing off (docs/config.md) gets none. Never fails: a vault without a pacer is not paced. */
void kv_pace_setup(struct kv_pace_set *set, const struct akv_config *cfg);

/* The pacer of vault_url ("https://host[:port]", no trailing slash) in set: one per vault
 * URL per module instance, so that every caller in the process spends the same budget. An existing
 * pacer is returned as it is (kind and q are used only by the first open). q NULL = the
 * documented limits of kind. *out (may be NULL: register only) is a counted reference, NULL with
 * KV_OK when pacing is off for the vault ("pacing": false, "quota": "off", a Managed HSM or a host
 * outside the Azure vault domains without "quota"). Pacers live until kv_http_free. */
kv_rc kv_pace_open(struct kv_pace_set *set, const char *vault_url, enum akv_vault_kind kind,
                   const struct akv_quota_config *q, struct kv_pace **out);
void kv_pace_close(struct kv_pace *p);

/* Monotonic milliseconds, the clock of the deadlines below. */
int64_t kv_pace_now_ms(void);

/* Waits for the turn of one operation of class c and spends it; returns KV_OK, or KV_E_THROTTLED
 * at once (nothing spent) when the turn would come after deadline_ms (kv_pace_now_ms clock; 0 =
 * no deadline of its own: 30 s). p NULL: KV_OK at once. */
kv_rc kv_pace_take(struct kv_pace *p, enum kv_pace_class c, int64_t deadline_ms);

/* Operations of class c that could be sent now without waiting (0 when the next one would wait).
 * p NULL: LONG_MAX. */
long kv_pace_available(struct kv_pace *p, enum kv_pace_class c);

/* Milliseconds until an operation of class c may be sent (0 = now). p NULL: 0. */
long kv_pace_wait_ms(struct kv_pace *p, enum kv_pace_class c);

/* The vault answered 429 with Retry-After retry_after_ms (< 0: none given): nothing of this vault
 * is sent by any process before then. */
void kv_pace_throttled(struct kv_pace *p, long retry_after_ms);

/* The class of an operation with JWA alg on a key of rsa_bits (0 = unknown). */
enum kv_pace_class kv_pace_class_of(const char *alg, unsigned rsa_bits);

/* ---- internals, for kv_http_do and the unit tests -------------------------------------------- */

/* The pacing of one request, filled by kv_pace_request_begin. */
struct kv_pace_req {
  struct kv_pace *pace; /* NULL: not paced */
  enum kv_pace_class cls;
  int learn; /* sign/encrypt/wrapkey of an RSA key: its size is in the reply */
  uint32_t name_hash;
};

/* Finds the pacer and class of req (a POST to keys/NAME[/VERSION]/{sign,verify,encrypt,decrypt,
 * wrapkey,unwrapkey} of a paced vault); pr->pace NULL otherwise. */
void kv_pace_request_begin(struct kv_pace_set *set, const char *method, const char *url,
                           const char *body, size_t body_len, struct kv_pace_req *pr);
/* After a 2xx reply: learns an RSA key's size from the reply's "value". */
void kv_pace_request_done(const struct kv_pace_req *pr, const char *body, size_t body_len);

/* One budget as a GCRA cell (theoretical arrival time, microseconds of the monotonic clock). An
 * operation of cost_us (the window divided by the count, widened by the safety margin) may go at
 * max(tat, now) - tau_us; it then moves tat by cost_us. Returns the wait in µs (0 = now), or -1
 * when it would pass deadline_us (tat unchanged). */
int64_t kv_pace_gcra(int64_t *tat, int64_t now_us, int64_t cost_us, int64_t tau_us,
                     int64_t deadline_us);

/* Cost (µs) of one operation for a limit of count per window_s; tau (µs) for that window. */
int64_t kv_pace_cost_us(uint32_t count, uint32_t window_s);
int64_t kv_pace_tau_us(uint32_t count, uint32_t window_s);

/* Checks an open bucket file: a regular file owned by the effective user, not writable by group
 * or others, of the size the module writes (or empty). 0 when usable, else -1 with a reason
 * ("owned by uid 1001") in why. */
int kv_pace_file_check(int fd, char *why, size_t why_len);

#endif
