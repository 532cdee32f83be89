/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions: the table (handle -> session), login state per token, session objects. A session
 * object belongs to (and dies with) the session that created it, and is visible to every session
 * of the application on the same token (PKCS#11 §4.4: Java's SunPKCS11, for one, creates a key in
 * one pooled session and uses it in another); all sessions' object arrays are guarded by sobj_lock,
 * taken after the module lock when both are needed. The module
 * lock guards the table and the slots' counters; each session's own mutex serialises the calls
 * made on it and may be held across I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/attest.h"
#include "store/cache.h"
#include "token/pin.h"
#include "core/module.h"
#include "store/object.h"
#include "token/session.h"
#include "token/slot.h"
#include "util/log.h"

static struct {
  struct akv_session **v; /* sorted by handle (handles only grow) */
  size_t n, cap;
  CK_SESSION_HANDLE next;
} tab;

static pthread_mutex_t sobj_lock = PTHREAD_MUTEX_INITIALIZER;
/* Serialises PIN checks (and the delay after a wrong one) across the process, so that guesses
 * from many threads or sessions wait in line. Taken after the session's lock, before the module
 * lock. */
static pthread_mutex_t login_lock = PTHREAD_MUTEX_INITIALIZER;

/* Takes the session's objects out (under sobj_lock) and releases them. */
static void drop_objects(struct akv_session *s)
{
  struct akv_object **v;
  size_t n, i;

  pthread_mutex_lock(&sobj_lock);
  v = s->objects;
  n = s->n_objects;
  s->objects = NULL;
  s->n_objects = 0;
  pthread_mutex_unlock(&sobj_lock);
  for (i = 0; i < n; i++)
    akv_object_unref(v[i]);
  free(v);
}

static void session_unref(struct akv_session *s)
{
  size_t i;

  if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  for (i = 0; i < AKV_OP_COUNT; i++)
    akv_op_free(s->ops[i]);
  akv_op_free(s->spare_op);
  drop_objects(s);
  akv_ptrs_free(&s->find_handles);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* Ends everything the session holds; the struct stays until the last reference goes. Call with
 * s->lock held. */
static void session_end(struct akv_session *s)
{
  size_t i;

  s->closed = 1;
  for (i = 0; i < AKV_OP_COUNT; i++) {
    akv_op_free(s->ops[i]);
    s->ops[i] = NULL;
  }
  akv_op_free(s->spare_op);
  s->spare_op = NULL;
  drop_objects(s);
  akv_ptrs_free(&s->find_handles);
  s->find_active = 0;
  s->find_n = s->find_pos = 0;
}

static size_t find_index_inlock(CK_SESSION_HANDLE h, int *found)
{
  size_t lo = 0, hi = tab.n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tab.v[mid]->handle < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < tab.n && tab.v[lo]->handle == h;
  return lo;
}

CK_RV akv_sessions_init(void)
{
  memset(&tab, 0, sizeof(tab));
  tab.next = 1;
  return CKR_OK;
}

/* Session tables forked children abandoned, one per fork generation: kept reachable and never
 * used nor freed (the parent's sessions may hold operations on its connections), so a leak checker
 * counts them as reachable rather than lost (docs/reliability.md "Fork"). */
static struct abandoned_tab {
  struct abandoned_tab *prev;
  struct akv_session **v;
} * abandoned_tabs;

void akv_sessions_abandon(void)
{
  struct abandoned_tab *a = malloc(sizeof(*a));

  if (a) { /* out of memory: the table is only dropped; the child never uses it either way */
    a->prev = abandoned_tabs;
    a->v = tab.v;
    abandoned_tabs = a;
  }
  memset(&tab, 0, sizeof(tab));
  tab.next = 1;
  pthread_mutex_init(&sobj_lock, NULL);
  pthread_mutex_init(&login_lock, NULL);
}

/* Detaches a session from the table and the slot counters. Call with the module lock held. */
static void detach_inlock(size_t idx)
{
  struct akv_session *s = tab.v[idx];

  memmove(&tab.v[idx], &tab.v[idx + 1], (tab.n - idx - 1) * sizeof(tab.v[0]));
  tab.n--;
  s->slot->n_sessions--;
  if (s->flags & CKF_RW_SESSION)
    s->slot->n_rw_sessions--;
  /* Closing the token's last session logs the user out (PKCS#11 2.40 §5.6). */
  if (s->slot->n_sessions == 0)
    s->slot->logged_in = 0;
}

static void close_detached(struct akv_session *s)
{
  pthread_mutex_lock(&s->lock);
  session_end(s);
  pthread_mutex_unlock(&s->lock);
  session_unref(s);
}

void akv_sessions_shutdown(void)
{
  struct akv_session **all;
  size_t n, i;

  akv_lock();
  all = tab.v;
  n = tab.n;
  for (i = 0; i < n; i++) {
    struct akv_slot *slot = all[i]->slot;
    slot->n_sessions = 0;
    slot->n_rw_sessions = 0;
    slot->logged_in = 0;
  }
  memset(&tab, 0, sizeof(tab));
  tab.next = 1;
  akv_unlock();
  for (i = 0; i < n; i++)
    close_detached(all[i]);
  free(all);
}

/* The handle of the slot's oldest open session (tab.next when none is open). Call with the module
 * lock held. */
static CK_SESSION_HANDLE oldest_inlock(const struct akv_slot *slot)
{
  size_t i;
  for (i = 0; i < tab.n; i++) {
    if (tab.v[i]->slot == slot)
      return tab.v[i]->handle; /* the table is sorted by handle */
  }
  return tab.next;
}

/* Tells the slot's cache which sessions may still hold handles of superseded objects
 * (docs/lifecycle.md "Handles held across a rotation"); the cache releases those none can name. */
static void note_sessions(struct akv_slot *slot)
{
  CK_SESSION_HANDLE oldest, next;

  if (!slot->cache)
    return;
  akv_lock();
  oldest = oldest_inlock(slot);
  next = tab.next;
  akv_unlock();
  akv_cache_sessions(slot->cache, oldest, next);
}

CK_RV akv_session_open(CK_SLOT_ID slot_id, CK_FLAGS flags, CK_SESSION_HANDLE *out)
{
  struct akv_slot *slot = akv_module_slot(slot_id);
  struct akv_session *s = NULL;
  CK_RV rv = CKR_OK;

  if (!slot)
    return CKR_SLOT_ID_INVALID;
  /* Legacy parallel sessions were removed from PKCS#11: the flag is mandatory. */
  if (!(flags & CKF_SERIAL_SESSION))
    return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
  if ((flags & CKF_RW_SESSION) && slot->cfg->read_only)
    return CKR_TOKEN_WRITE_PROTECTED;

  s = calloc(1, sizeof(*s));
  if (!s)
    return CKR_HOST_MEMORY;
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s);
    return CKR_HOST_MEMORY;
  }
  s->refs = 1;
  s->slot = slot;
  s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);

  akv_lock();
  if (tab.n == tab.cap) {
    size_t cap = tab.cap ? tab.cap * 2 : 16;
    struct akv_session **v = realloc(tab.v, cap * sizeof(*v));
    if (!v) {
      rv = CKR_HOST_MEMORY;
      goto unlock;
    }
    tab.v = v;
    tab.cap = cap;
  }
  s->handle = tab.next++;
  tab.v[tab.n++] = s;
  slot->n_sessions++;
  if (s->flags & CKF_RW_SESSION)
    slot->n_rw_sessions++;
  *out = s->handle;
unlock:
  akv_unlock();
  if (rv != CKR_OK)
    session_unref(s);
  else
    note_sessions(slot);
  return rv;
}

CK_RV akv_session_close(CK_SESSION_HANDLE h)
{
  struct akv_session *s = NULL;
  struct akv_slot *slot;
  size_t idx;
  int found;

  akv_lock();
  idx = find_index_inlock(h, &found);
  if (found) {
    s = tab.v[idx];
    detach_inlock(idx);
  }
  akv_unlock();
  if (!s)
    return CKR_SESSION_HANDLE_INVALID;
  slot = s->slot;
  close_detached(s);
  note_sessions(slot);
  return CKR_OK;
}

CK_RV akv_session_close_all(CK_SLOT_ID slot_id)
{
  struct akv_session **mine = NULL;
  size_t n = 0, i = 0;
  CK_RV rv = CKR_OK;

  akv_lock();
  if (tab.n) {
    mine = malloc(tab.n * sizeof(*mine));
    if (!mine) {
      rv = CKR_HOST_MEMORY;
      goto unlock;
    }
  }
  while (i < tab.n) {
    if (tab.v[i]->slot->id == slot_id) {
      mine[n++] = tab.v[i];
      detach_inlock(i);
    } else {
      i++;
    }
  }
unlock:
  akv_unlock();
  for (i = 0; i < n; i++)
    close_detached(mine[i]);
  free(mine);
  if (n)
    note_sessions(akv_module_slot(slot_id));
  return rv;
}

CK_RV akv_session_acquire(CK_SESSION_HANDLE h, struct akv_session **out)
{
  struct akv_session *s = NULL;
  size_t idx;
  int found;
  CK_RV rv = akv_module_check();

  if (rv != CKR_OK)
    return rv;
  akv_lock();
  idx = find_index_inlock(h, &found);
  if (found) {
    s = tab.v[idx];
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
  }
  akv_unlock();
  if (!s)
    return CKR_SESSION_HANDLE_INVALID;
  pthread_mutex_lock(&s->lock);
  /* Closed by another thread while this one waited for the session. */
  if (s->closed) {
    pthread_mutex_unlock(&s->lock);
    session_unref(s);
    return CKR_SESSION_CLOSED;
  }
  *out = s;
  return CKR_OK;
}

void akv_session_release(struct akv_session *s)
{
  if (!s)
    return;
  pthread_mutex_unlock(&s->lock);
  session_unref(s);
}

static int slot_logged_in(struct akv_slot *slot)
{
  int v;
  akv_lock();
  v = slot->logged_in;
  akv_unlock();
  return v;
}

int akv_session_logged_in(struct akv_session *s)
{
  return slot_logged_in(s->slot);
}

int akv_session_can_see(struct akv_session *s, const struct akv_object *obj)
{
  return !obj->is_private || slot_logged_in(s->slot);
}

/* Looks in one session's objects; with take, removes the object and hands over its reference.
 * Call with sobj_lock held. */
static struct akv_object *search_inlock(struct akv_session *o, CK_OBJECT_HANDLE h, int take)
{
  struct akv_object *obj;
  size_t i;

  for (i = 0; i < o->n_objects; i++) {
    if (o->objects[i]->handle != h)
      continue;
    obj = o->objects[i];
    if (!take)
      return akv_object_ref(obj);
    memmove(&o->objects[i], &o->objects[i + 1], (o->n_objects - i - 1) * sizeof(o->objects[0]));
    o->n_objects--;
    return obj;
  }
  return NULL;
}

/* A session object of s's token: s's own first, then those of the other sessions on the token. */
static struct akv_object *find_session_object(struct akv_session *s, CK_OBJECT_HANDLE h, int take)
{
  struct akv_object *obj;
  size_t i;

  pthread_mutex_lock(&sobj_lock);
  obj = search_inlock(s, h, take);
  pthread_mutex_unlock(&sobj_lock);
  if (obj)
    return obj;
  akv_lock();
  pthread_mutex_lock(&sobj_lock);
  for (i = 0; i < tab.n && !obj; i++) {
    if (tab.v[i] != s && tab.v[i]->slot == s->slot)
      obj = search_inlock(tab.v[i], h, take);
  }
  pthread_mutex_unlock(&sobj_lock);
  akv_unlock();
  return obj;
}

/* The object, and whether the session may see it (returned as CKR_USER_NOT_LOGGED_IN). */
static CK_RV session_object(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out)
{
  /* Token objects first: they are what every C_SignInit names, and their lookup takes only the
   * cache's lock, while the session objects' takes sobj_lock and, for other sessions' objects, the
   * module lock. Token and session objects draw handles from the same counter, so the order never
   * changes which object a handle names. Handles stay valid while their object is in the current
   * snapshot: no I/O here. A slot without a cache (being torn down, or a test's bare slot) has
   * session objects only. */
  struct akv_snapshot *snap = s->slot->cache ? akv_cache_peek(s->slot->cache) : NULL;
  struct akv_object *obj = akv_snapshot_find(snap, h);

  if (obj)
    akv_object_ref(obj);
  akv_snapshot_unref(snap);
  /* A call named it: it is handed out, and kept when a new version replaces it (docs/lifecycle.md
   * "Handles held across a rotation"); a handle whose version was replaced is found among the
   * superseded objects. */
  if (obj)
    akv_cache_hand_out(s->slot->cache, obj);
  else if (s->slot->cache)
    obj = akv_cache_held(s->slot->cache, h);
  if (!obj)
    obj = find_session_object(s, h, 0);
  if (!obj)
    return CKR_OBJECT_HANDLE_INVALID;
  if (!akv_session_can_see(s, obj)) {
    akv_object_unref(obj);
    return CKR_USER_NOT_LOGGED_IN;
  }
  *out = obj;
  return CKR_OK;
}

/* A private object does not exist for a session that is not logged in (PKCS#11 §4.4: C_GetAttri-
 * buteValue and the object calls have no "not logged in" answer). */
CK_RV akv_session_object(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out)
{
  CK_RV rv = session_object(s, h, out);
  /* The attestation objects of a refused attestation are gone for every call (docs/usage.md "Key
   * attestation for a CA"). */
  if (rv == CKR_OK && (*out)->att && akv_attest_refused((*out)->att)) {
    akv_object_unref(*out);
    *out = NULL;
    rv = CKR_OBJECT_HANDLE_INVALID;
  }
  return rv == CKR_USER_NOT_LOGGED_IN ? CKR_OBJECT_HANDLE_INVALID : rv;
}

CK_RV akv_session_op_key(struct akv_session *s, CK_OBJECT_HANDLE h, struct akv_object **out)
{
  struct akv_object *obj = NULL;
  CK_RV rv = session_object(s, h, &obj);
  if (rv == CKR_OBJECT_HANDLE_INVALID)
    return CKR_KEY_HANDLE_INVALID;
  if (rv != CKR_OK)
    return rv;
  if (obj->slot != s->slot) {
    akv_object_unref(obj);
    return CKR_KEY_HANDLE_INVALID;
  }
  *out = obj;
  return CKR_OK;
}

CK_RV akv_session_add_object(struct akv_session *s, struct akv_object *obj, CK_OBJECT_HANDLE *h)
{
  struct akv_object **v;
  CK_RV rv = CKR_OK;

  pthread_mutex_lock(&sobj_lock);
  v = realloc(s->objects, (s->n_objects + 1) * sizeof(*v));
  if (!v) {
    rv = CKR_HOST_MEMORY;
  } else {
    s->objects = v;
    obj->handle = akv_module_next_handle();
    obj->session = s->handle;
    s->objects[s->n_objects++] = obj;
    if (h)
      *h = obj->handle;
  }
  pthread_mutex_unlock(&sobj_lock);
  if (rv != CKR_OK)
    akv_object_unref(obj);
  return rv;
}

CK_RV akv_session_remove_object(struct akv_session *s, CK_OBJECT_HANDLE h)
{
  struct akv_object *obj = find_session_object(s, h, 1);
  if (!obj)
    return CKR_OBJECT_HANDLE_INVALID;
  akv_object_unref(obj);
  return CKR_OK;
}

size_t akv_session_objects(struct akv_session *s, struct akv_object ***out)
{
  struct akv_object **v = NULL;
  size_t n = 0, cap = 0, i, j;
  int self_listed = 0;

  *out = NULL;
  akv_lock();
  pthread_mutex_lock(&sobj_lock);
  for (i = 0; i < tab.n; i++) {
    if (tab.v[i]->slot == s->slot)
      cap += tab.v[i]->n_objects;
    self_listed |= tab.v[i] == s;
  }
  if (!self_listed)
    cap += s->n_objects;
  v = cap ? malloc(cap * sizeof(*v)) : NULL;
  for (i = 0; v && i <= tab.n; i++) {
    struct akv_session *o = i < tab.n ? tab.v[i] : (self_listed ? NULL : s);
    if (!o || o->slot != s->slot)
      continue;
    for (j = 0; j < o->n_objects; j++)
      v[n++] = akv_object_ref(o->objects[j]);
  }
  pthread_mutex_unlock(&sobj_lock);
  akv_unlock();
  *out = v;
  return n;
}

void akv_session_fetch_failed(struct akv_session *s, const struct akv_fetch_status *f)
{
  /* The status of this failure, 0 when no HTTP response arrived (network, timeout): a stale status
   * of an earlier failure would tell the operator the wrong story (docs/design.md). */
  s->device_error = f->http_status > 0 ? (CK_ULONG)f->http_status : 0;
  /* A key the cache knew answered 404: drop the listing so the next lookup refreshes it. */
  if (f->rc == KV_E_NOT_FOUND)
    akv_slot_invalidate(s->slot);
}

CK_RV akv_session_fail(struct akv_session *s, kv_rc rc, long http_status)
{
  struct akv_fetch_status f = {rc, http_status};
  akv_session_fetch_failed(s, &f);
  return akv_rv(rc);
}

CK_RV akv_session_key_failed(struct akv_session *s, struct akv_object *obj, kv_rc rc,
                             long http_status)
{
  CK_RV rv = akv_session_fail(s, rc, http_status);
  struct kv_key *k = NULL;
  int gone = rc == KV_E_NOT_FOUND;

  if (!obj || !obj->key || obj->session || !obj->src)
    return rv;
  /* 403 also means a missing permission or a key outside nbf/exp: only a version that reads
   * disabled is gone. One GET on the error path tells them apart. */
  if (rc == KV_E_FORBIDDEN) {
    kv_rc r2 = kv_get_key(obj->slot->client, obj->key->name, obj->key->version, &k, NULL);
    gone = r2 == KV_E_NOT_FOUND || (r2 == KV_OK && !k->attrs.enabled);
    kv_key_free(k);
  }
  if (!gone)
    return rv;
  akv_warn(AKV_LOGC_CACHE, "key %s/%s was %s in the vault: its objects are dropped", obj->key->name,
           obj->key->version, rc == KV_E_NOT_FOUND ? "deleted" : "disabled");
  /* That version only: a superseded one held by handles leaves the superseded table, a current one
   * the snapshot; the key's other versions stay. */
  (void)akv_cache_drop_version(s->slot->cache, obj);
  akv_slot_invalidate(s->slot);
  return CKR_KEY_HANDLE_INVALID;
}

void akv_session_info(struct akv_session *s, CK_SESSION_INFO *info)
{
  int rw = (s->flags & CKF_RW_SESSION) != 0;
  int user = slot_logged_in(s->slot);

  memset(info, 0, sizeof(*info));
  info->slotID = s->slot->id;
  info->flags = s->flags;
  info->ulDeviceError = s->device_error;
  if (user)
    info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
  else
    info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
}

/* Sleeps ms milliseconds (restarted after signals, bounded by the clock). */
static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* The PIN against the slot's pin_hash, or ("pin": "certificate_password") as the password of the
 * credential's certificate key, which the first right PIN opens for the slot. 1 match, 0 wrong,
 * -1 error (logged). */
static int pin_matches(struct akv_slot *slot, const unsigned char *pin, CK_ULONG pin_len, CK_RV *rv)
{
  const struct akv_config *cfg = akv_config();
  const struct akv_slot_config *sc = slot->cfg;
  int match;

  if (!sc->pin_certificate)
    return akv_pin_check(sc->pin_hash, pin, (size_t)pin_len);
  match = akv_pin_opens_key((sc->has_cred ? &sc->cred : &cfg->cred)->certificate_path, pin,
                            (size_t)pin_len);
  if (match == 1 && (*rv = akv_slot_open_credential(slot, pin, (size_t)pin_len)) != CKR_OK)
    return -1;
  return match;
}

/* CKU_USER on a slot with login required: the PIN checked (pin_matches), serialised with every
 * other check; a wrong PIN is answered after akv_pin_delay_ms(consecutive failures). */
static CK_RV login_user(struct akv_slot *slot, const unsigned char *pin, CK_ULONG pin_len)
{
  unsigned failures = 0;
  CK_RV rv = CKR_OK;
  int match;

  pthread_mutex_lock(&login_lock);
  akv_lock();
  if (slot->logged_in)
    rv = CKR_USER_ALREADY_LOGGED_IN;
  akv_unlock();
  if (rv != CKR_OK)
    goto out;
  rv = CKR_FUNCTION_FAILED;
  match = pin_matches(slot, pin, pin_len, &rv);
  if (match < 0)
    goto out;
  rv = CKR_OK;
  akv_lock();
  if (match) {
    slot->logged_in = 1;
    slot->pin_failures = 0;
  } else if (slot->pin_failures < 64) {
    failures = ++slot->pin_failures;
  } else {
    failures = slot->pin_failures;
  }
  akv_unlock();
  if (match) {
    akv_info(AKV_LOGC_P11, "slot %lu: user logged in", (unsigned long)slot->id);
    goto out;
  }
  akv_warn(AKV_LOGC_P11, "slot %lu: wrong user PIN (%u in a row); answering after %ld ms",
           (unsigned long)slot->id, failures, akv_pin_delay_ms(failures));
  sleep_ms(akv_pin_delay_ms(failures));
  rv = CKR_PIN_INCORRECT;
out:
  pthread_mutex_unlock(&login_lock);
  return rv;
}

/* docs/security.md "Login". A slot with login "none" accepts any PIN for CKU_USER (applications
 * that always log in keep working; nothing on it is private). With "required" the PIN is checked
 * against pin_hash. Either way the state is shared by all sessions of the token, as PKCS#11
 * requires. The token has no security officer: CKU_SO is refused with CKR_PIN_INCORRECT (no SO
 * PIN can match), after the read-only-session rule. */
CK_RV akv_session_login(struct akv_session *s, CK_USER_TYPE user, const unsigned char *pin,
                        CK_ULONG pin_len)
{
  CK_RV rv = CKR_OK;

  if (user == CKU_USER && s->slot->cfg->login_required)
    return login_user(s->slot, pin, pin_len);
  akv_lock();
  switch (user) {
  case CKU_USER:
    if (s->slot->logged_in)
      rv = CKR_USER_ALREADY_LOGGED_IN;
    else
      s->slot->logged_in = 1;
    break;
  case CKU_SO:
    if (s->slot->logged_in)
      rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    else if (s->slot->n_sessions > s->slot->n_rw_sessions)
      rv = CKR_SESSION_READ_ONLY_EXISTS;
    else
      rv = CKR_PIN_INCORRECT;
    break;
  case CKU_CONTEXT_SPECIFIC:
    /* No key has CKA_ALWAYS_AUTHENTICATE, so no operation ever waits for this login. */
    rv = CKR_OPERATION_NOT_INITIALIZED;
    break;
  default:
    rv = CKR_USER_TYPE_INVALID;
    break;
  }
  akv_unlock();
  return rv;
}

/* Takes the private session objects of every session on slot out of their sessions. Call with
 * the module lock and sobj_lock held; the caller unrefs them (outside the locks). */
static size_t take_private_inlock(struct akv_slot *slot, struct akv_object **v, size_t cap)
{
  size_t i, j, n = 0;

  for (i = 0; i < tab.n; i++) {
    struct akv_session *o = tab.v[i];
    if (o->slot != slot)
      continue;
    for (j = 0; j < o->n_objects;) {
      if (!o->objects[j]->is_private || n == cap) {
        j++;
        continue;
      }
      v[n++] = o->objects[j];
      memmove(&o->objects[j], &o->objects[j + 1], (o->n_objects - j - 1) * sizeof(o->objects[0]));
      o->n_objects--;
    }
  }
  return n;
}

/* Ends the login for every session of the application on the token and destroys its private
 * session objects (PKCS#11 C_Logout). Handles of private token objects answer
 * CKR_OBJECT_HANDLE_INVALID (CKR_USER_NOT_LOGGED_IN at a *Init) until the next login. */
CK_RV akv_session_logout(struct akv_session *s)
{
  struct akv_object **dead = NULL;
  size_t cap = 0, n = 0, i;
  CK_RV rv = CKR_OK;

  akv_lock();
  pthread_mutex_lock(&sobj_lock);
  if (!s->slot->logged_in) {
    rv = CKR_USER_NOT_LOGGED_IN;
    goto unlock;
  }
  for (i = 0; i < tab.n; i++)
    if (tab.v[i]->slot == s->slot)
      cap += tab.v[i]->n_objects;
  if (cap && !(dead = malloc(cap * sizeof(*dead)))) {
    rv = CKR_HOST_MEMORY; /* still logged in: nothing private was left behind */
    goto unlock;
  }
  n = take_private_inlock(s->slot, dead, cap);
  s->slot->logged_in = 0;
unlock:
  pthread_mutex_unlock(&sobj_lock);
  akv_unlock();
  for (i = 0; i < n; i++)
    akv_object_unref(dead[i]);
  free(dead);
  return rv;
}
