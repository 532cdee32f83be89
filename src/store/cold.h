/* SPDX-License-Identifier: Apache-2.0 */
/* A search by label on a cold cache (src/store/cold.c, docs/design.md "Cold search by label"). */
#ifndef AKV_COLD_H
#define AKV_COLD_H

#include "store/cache.h"

/* The snapshot a search for objects labelled name answers from: on a cold slot (no listing yet,
 * nothing usable in the cache file), the cold snapshot holding what the listing would make of the
 * key and certificate of that name, read by name (one GET each; the first listing scheduled in the
 * background); otherwise, or when that read cannot give the listing's answer (the key is not
 * there or may not be read, the slot shows secrets...), akv_cache_get's (with its http_status).
 * No lock held. */
CK_RV akv_cold_get(struct akv_slot *slot, const char *name, struct akv_snapshot **out,
                   long *http_status);

#endif
