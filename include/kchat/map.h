/* map.h - a hash map from byte-string keys to pointers (the processor's per-conversation
 * state and dedupe window).
 *
 * Keys are hashed with SipHash-2-4 under a random key drawn at creation, so clients choosing
 * ids cannot aim collisions at one bucket. The map copies keys and owns them; values are the
 * caller's. Chained buckets, resized at load 1.
 */
#ifndef KCHAT_MAP_H
#define KCHAT_MAP_H

#include <stddef.h>

typedef struct kc_map kc_map_t;

kc_map_t *kc_map_new(void);
/* free_val (may be NULL) is called on every value. NULL map is a no-op. */
void kc_map_destroy(kc_map_t *m, void (*free_val)(void *));
size_t kc_map_size(const kc_map_t *m);
void *kc_map_get(const kc_map_t *m, const void *key, size_t klen);
/* Inserts or replaces; returns the value replaced, or NULL. */
void *kc_map_put(kc_map_t *m, const void *key, size_t klen, void *val);
/* Removes and returns the value, or NULL when absent. */
void *kc_map_remove(kc_map_t *m, const void *key, size_t klen);
/* Calls fn on every entry; fn must not change the map. */
void kc_map_each(const kc_map_t *m, void (*fn)(const void *key, size_t klen, void *val, void *arg),
                 void *arg);

#endif
