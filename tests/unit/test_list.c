/* kchat/list.h: the doubly linked list and the singly linked FIFO keep their order, their
 * ends and their length through pushes at both ends, pops and removals anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kchat/list.h"

typedef struct {
    int v;
    kc_list_node_t link;
    kc_slist_node_t slink;
} item_t;

/* The values of l in order, checked against the backward walk and len. */
static size_t list_values(const kc_list_t *l, int *out, size_t max)
{
    size_t n = 0;
    KC_LIST_FOREACH(it, l)
    {
        assert_true(n < max);
        out[n++] = KC_LIST_ENTRY(it, item_t, link)->v;
    }
    assert_int_equal(n, l->len);
    size_t back = n;
    for (kc_list_node_t *it = l->last; it; it = it->prev)
        assert_int_equal(KC_LIST_ENTRY(it, item_t, link)->v, out[--back]);
    assert_int_equal(back, 0);
    return n;
}

static void assert_list(const kc_list_t *l, const int *want, size_t n)
{
    int got[16];
    assert_int_equal(list_values(l, got, 16), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
    assert_int_equal(kc_list_empty(l), n == 0);
}

static void list_push_pop_remove(void **state)
{
    (void)state;
    item_t it[5] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}};
    kc_list_t l = {0};
    assert_list(&l, NULL, 0);
    assert_null(kc_list_pop_front(&l));
    assert_null(KC_LIST_ENTRY(l.first, item_t, link));

    kc_list_push_back(&l, &it[1].link);
    kc_list_push_back(&l, &it[2].link);
    kc_list_push_front(&l, &it[0].link);
    kc_list_push_back(&l, &it[3].link);
    assert_list(&l, (int[]){0, 1, 2, 3}, 4);

    /* From the middle, the first and the last. */
    kc_list_remove(&l, &it[2].link);
    assert_null(it[2].link.prev);
    assert_null(it[2].link.next);
    assert_list(&l, (int[]){0, 1, 3}, 3);
    kc_list_remove(&l, &it[0].link);
    assert_list(&l, (int[]){1, 3}, 2);
    kc_list_remove(&l, &it[3].link);
    assert_list(&l, (int[]){1}, 1);
    assert_ptr_equal(l.first, l.last);

    kc_list_push_front(&l, &it[4].link);
    assert_list(&l, (int[]){4, 1}, 2);
    assert_ptr_equal(KC_LIST_ENTRY(kc_list_pop_front(&l), item_t, link), &it[4]);
    assert_ptr_equal(KC_LIST_ENTRY(kc_list_pop_front(&l), item_t, link), &it[1]);
    assert_null(kc_list_pop_front(&l));
    assert_list(&l, NULL, 0);
    assert_null(l.last);

    /* A removed node can go back on. */
    kc_list_push_back(&l, &it[2].link);
    assert_list(&l, (int[]){2}, 1);
}

static void list_foreach_safe_removes(void **state)
{
    (void)state;
    item_t it[6];
    kc_list_t l = {0};
    for (int i = 0; i < 6; i++) {
        it[i].v = i;
        kc_list_push_back(&l, &it[i].link);
    }
    kc_list_node_t *tmp;
    KC_LIST_FOREACH_SAFE(n, tmp, &l)
    {
        if (KC_LIST_ENTRY(n, item_t, link)->v % 2 == 0)
            kc_list_remove(&l, n);
    }
    assert_list(&l, (int[]){1, 3, 5}, 3);
    KC_LIST_FOREACH_SAFE(n, tmp, &l)
    {
        kc_list_remove(&l, n);
    }
    assert_list(&l, NULL, 0);
}

static void assert_slist(const kc_slist_t *l, const int *want, size_t n)
{
    size_t i = 0;
    const kc_slist_node_t *last = NULL;
    KC_SLIST_FOREACH(it, l)
    {
        assert_true(i < n);
        assert_int_equal(KC_SLIST_ENTRY(it, item_t, slink)->v, want[i]);
        i++;
        last = it;
    }
    assert_int_equal(i, n);
    assert_int_equal(l->len, n);
    assert_ptr_equal(l->last, last);
    assert_int_equal(kc_slist_empty(l), n == 0);
}

static void slist_fifo(void **state)
{
    (void)state;
    item_t it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
    kc_slist_t l = {0};
    assert_slist(&l, NULL, 0);
    assert_null(kc_slist_pop_front(&l));
    assert_null(KC_SLIST_ENTRY(l.first, item_t, slink));

    /* push_front on an empty FIFO sets its last too. */
    kc_slist_push_front(&l, &it[1].slink);
    assert_slist(&l, (int[]){1}, 1);
    kc_slist_push_back(&l, &it[2].slink);
    kc_slist_push_front(&l, &it[0].slink);
    kc_slist_push_back(&l, &it[3].slink);
    assert_slist(&l, (int[]){0, 1, 2, 3}, 4);

    for (int i = 0; i < 4; i++) {
        kc_slist_node_t *n = kc_slist_pop_front(&l);
        assert_ptr_equal(KC_SLIST_ENTRY(n, item_t, slink), &it[i]);
        assert_null(n->next);
    }
    assert_null(kc_slist_pop_front(&l));
    assert_slist(&l, NULL, 0);
    assert_null(l.last);

    /* Emptied, it works again from either end. */
    kc_slist_push_back(&l, &it[3].slink);
    kc_slist_push_front(&l, &it[2].slink);
    assert_slist(&l, (int[]){2, 3}, 2);
}

/* One struct on both kinds of list at once, through its two links. */
static void both_lists_at_once(void **state)
{
    (void)state;
    item_t it[3] = {{.v = 0}, {.v = 1}, {.v = 2}};
    kc_list_t l = {0};
    kc_slist_t s = {0};
    for (int i = 0; i < 3; i++) {
        kc_list_push_front(&l, &it[i].link);
        kc_slist_push_back(&s, &it[i].slink);
    }
    kc_list_remove(&l, &it[1].link);
    assert_list(&l, (int[]){2, 0}, 2);
    assert_slist(&s, (int[]){0, 1, 2}, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_push_pop_remove),
        cmocka_unit_test(list_foreach_safe_removes),
        cmocka_unit_test(slist_fifo),
        cmocka_unit_test(both_lists_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
