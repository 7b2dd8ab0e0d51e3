/* list.h - intrusive linked lists: a doubly linked list and a singly linked queue.
 *
 * The links live inside the caller's struct (a kc_list_node_t or kc_slist_node_t member),
 * so linking allocates nothing and a node is found back from its link with
 * KC_LIST_ENTRY / KC_SLIST_ENTRY. The lists own nothing: whoever unlinks a node frees it.
 *
 *   kc_list_t   first, last, len; push at either end, pop the first, remove any node in
 *               O(1). For sets that lose members from the middle (requests waiting with a
 *               deadline, suspended requests).
 *   kc_slist_t  first, last, len; push at either end, pop the first: a FIFO that costs one
 *               pointer per node. For queues consumed from the head.
 *
 * Both are NULL-terminated and an all-zero list is a valid empty one (calloc'd structs need
 * no init). Walk with KC_LIST_FOREACH / KC_SLIST_FOREACH, or with KC_LIST_FOREACH_SAFE when
 * the loop removes the node it is on; empty a list by popping its first node until there is
 * none. A node is on at most one list through one link member;
 * give a struct two members to put it on two lists.
 */
#ifndef KCHAT_LIST_H
#define KCHAT_LIST_H

#include <stddef.h>

/* The struct of type `type` whose member `member` is at ptr; NULL when ptr is NULL.
 * ptr is evaluated once. */
#define KC_LIST_ENTRY(ptr, type, member)                                                      \
    ((type *)kc_list_container_(kc_list_node_check_(ptr), offsetof(type, member)))
#define KC_SLIST_ENTRY(ptr, type, member)                                                     \
    ((type *)kc_list_container_(kc_slist_node_check_(ptr), offsetof(type, member)))

static inline void *kc_list_container_(void *link, size_t offset)
{
    return link ? (char *)link - offset : NULL;
}

/* ---- doubly linked ---- */

typedef struct kc_list_node {
    struct kc_list_node *prev, *next;
} kc_list_node_t;

typedef struct {
    kc_list_node_t *first, *last;
    size_t len;
} kc_list_t;

#define KC_LIST_FOREACH(n, l) for (kc_list_node_t *n = (l)->first; n; n = n->next)
/* tmp is a kc_list_node_t * declared by the caller; n may be removed in the body. */
#define KC_LIST_FOREACH_SAFE(n, tmp, l)                                                       \
    for (kc_list_node_t *n = (l)->first; n && ((tmp) = n->next, 1); n = (tmp))

/* Only a kc_list_node_t * gets through KC_LIST_ENTRY. */
static inline void *kc_list_node_check_(kc_list_node_t *n)
{
    return n;
}

static inline int kc_list_empty(const kc_list_t *l)
{
    return l->first == NULL;
}

static inline void kc_list_push_back(kc_list_t *l, kc_list_node_t *n)
{
    n->next = NULL;
    n->prev = l->last;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
    l->len++;
}

static inline void kc_list_push_front(kc_list_t *l, kc_list_node_t *n)
{
    n->prev = NULL;
    n->next = l->first;
    if (l->first)
        l->first->prev = n;
    else
        l->last = n;
    l->first = n;
    l->len++;
}

/* n must be on l. Its links are cleared. */
static inline void kc_list_remove(kc_list_t *l, kc_list_node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->first = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->last = n->prev;
    n->prev = n->next = NULL;
    l->len--;
}

/* Unlinks and returns the first node, or NULL when l is empty. */
static inline kc_list_node_t *kc_list_pop_front(kc_list_t *l)
{
    kc_list_node_t *n = l->first;
    if (n)
        kc_list_remove(l, n);
    return n;
}

/* ---- singly linked (a FIFO) ---- */

typedef struct kc_slist_node {
    struct kc_slist_node *next;
} kc_slist_node_t;

typedef struct {
    kc_slist_node_t *first, *last;
    size_t len;
} kc_slist_t;

#define KC_SLIST_FOREACH(n, l) for (kc_slist_node_t *n = (l)->first; n; n = n->next)

static inline void *kc_slist_node_check_(kc_slist_node_t *n)
{
    return n;
}

static inline int kc_slist_empty(const kc_slist_t *l)
{
    return l->first == NULL;
}

static inline void kc_slist_push_back(kc_slist_t *l, kc_slist_node_t *n)
{
    n->next = NULL;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
    l->len++;
}

static inline void kc_slist_push_front(kc_slist_t *l, kc_slist_node_t *n)
{
    n->next = l->first;
    if (!l->last)
        l->last = n;
    l->first = n;
    l->len++;
}

/* Unlinks and returns the first node, or NULL when l is empty. */
static inline kc_slist_node_t *kc_slist_pop_front(kc_slist_t *l)
{
    kc_slist_node_t *n = l->first;
    if (!n)
        return NULL;
    l->first = n->next;
    if (!l->first)
        l->last = NULL;
    n->next = NULL;
    l->len--;
    return n;
}

#endif
