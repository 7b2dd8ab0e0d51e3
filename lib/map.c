/* map.c - SipHash-keyed chained hash map. */
#include "kchat/map.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

typedef struct node {
    struct node *next;
    uint64_t hash;
    void *val;
    size_t klen;
    unsigned char key[];
} node_t;

struct kc_map {
    node_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t size;
    unsigned char seed[crypto_shorthash_KEYBYTES];
};

static uint64_t hash(const kc_map_t *m, const void *key, size_t klen)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, klen, m->seed);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

kc_map_t *kc_map_new(void)
{
    if (sodium_init() < 0)
        abort();
    kc_map_t *m = kc_xcalloc(1, sizeof(*m));
    m->nbuckets = 16;
    m->buckets = kc_xcalloc(m->nbuckets, sizeof(node_t *));
    randombytes_buf(m->seed, sizeof(m->seed));
    return m;
}

void kc_map_destroy(kc_map_t *m, void (*free_val)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        node_t *n = m->buckets[i];
        while (n) {
            node_t *next = n->next;
            if (free_val)
                free_val(n->val);
            free(n);
            n = next;
        }
    }
    free(m->buckets);
    free(m);
}

size_t kc_map_size(const kc_map_t *m)
{
    return m->size;
}

static node_t **find(const kc_map_t *m, const void *key, size_t klen, uint64_t h)
{
    node_t **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp && !((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0))
        pp = &(*pp)->next;
    return pp;
}

void *kc_map_get(const kc_map_t *m, const void *key, size_t klen)
{
    node_t **pp = find(m, key, klen, hash(m, key, klen));
    return *pp ? (*pp)->val : NULL;
}

static void grow(kc_map_t *m)
{
    size_t nb = m->nbuckets * 2;
    node_t **b = kc_xcalloc(nb, sizeof(node_t *));
    for (size_t i = 0; i < m->nbuckets; i++) {
        node_t *n = m->buckets[i];
        while (n) {
            node_t *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

void *kc_map_put(kc_map_t *m, const void *key, size_t klen, void *val)
{
    uint64_t h = hash(m, key, klen);
    node_t **pp = find(m, key, klen, h);
    if (*pp) {
        void *old = (*pp)->val;
        (*pp)->val = val;
        return old;
    }
    node_t *n = kc_xmalloc(sizeof(node_t) + klen);
    n->next = NULL;
    n->hash = h;
    n->val = val;
    n->klen = klen;
    memcpy(n->key, key, klen);
    *pp = n;
    if (++m->size > m->nbuckets)
        grow(m);
    return NULL;
}

void *kc_map_remove(kc_map_t *m, const void *key, size_t klen)
{
    node_t **pp = find(m, key, klen, hash(m, key, klen));
    node_t *n = *pp;
    if (!n)
        return NULL;
    *pp = n->next;
    void *val = n->val;
    free(n);
    m->size--;
    return val;
}

void kc_map_each(const kc_map_t *m, void (*fn)(const void *key, size_t klen, void *val, void *arg),
                 void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (node_t *n = m->buckets[i]; n; n = n->next)
            fn(n->key, n->klen, n->val, arg);
}
