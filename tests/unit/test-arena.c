/* SPDX-License-Identifier: MIT */
/*
 * The arena (alignment, blocks larger than a block, marks), the in-place
 * sort (against qsort, on random arrays with ties), the intrusive lists,
 * and whole reads and writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "fileio.h"
#include "list.h"
#include "macro.h"
#include "sort.h"

static void test_arena(void **state) {
        Arena a = {};
        char *s;

        for (size_t align = 1; align <= 16; align *= 2) {
                void *p = arena_alloc(&a, 3, align);
                assert_non_null(p);
                assert_int_equal((uintptr_t) p % align, 0);
                memset(p, 0xab, 3);
        }
        s = arena_strdup(&a, "hello");
        assert_string_equal(s, "hello");

        ArenaMark m = arena_mark(&a);
        /* More than a block: a mapping of its own. */
        uint8_t *big = arena_alloc(&a, 3 * 1024 * 1024, 8);
        assert_non_null(big);
        big[3 * 1024 * 1024 - 1] = 1;
        for (int i = 0; i < 2000; i++)
                assert_non_null(arena_alloc(&a, 1000, 8)); /* a few more blocks */
        arena_release(&a, m);
        assert_string_equal(s, "hello"); /* what came before the mark stays */
        assert_ptr_equal(a.blocks, m.block);
        assert_non_null(arena_alloc(&a, 16, 16));
        arena_done(&a);
        assert_null(a.blocks);
        assert_null(arena_alloc(&a, SIZE_MAX - 8, 8));
}

static int sort_context;

typedef struct Pair {
        uint32_t key, seq;
} Pair;

static int compare_pairs(const void *x, const void *y, void *userdata) {
        assert_ptr_equal(userdata, &sort_context);
        const Pair *a = x, *b = y;
        if (a->key != b->key)
                return a->key < b->key ? -1 : 1;
        return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void test_sort(void **state) {
        unsigned seed = (unsigned) time(NULL);

        print_message("seed %u\n", seed);
        srand(seed);
        for (size_t n = 0; n < 300; n += 1 + n / 4) {
                Pair *a = calloc(n + 1, sizeof(Pair)), *b = calloc(n + 1, sizeof(Pair));
                for (size_t i = 0; i < n; i++)
                        a[i] = b[i] = (Pair) { .key = (uint32_t) rand() % 16, .seq = (uint32_t) i };
                sort_in_place(a, n, sizeof(Pair), compare_pairs, &sort_context);
                qsort_r(b, n, sizeof(Pair), compare_pairs, &sort_context);
                assert_memory_equal(a, b, n * sizeof(Pair));
                free(a);
                free(b);
        }
}

typedef struct Item {
        int v;
        LIST_FIELDS(struct Item, q);
} Item;

static void test_list(void **state) {
        LIST_HEAD(Item) l = {};
        Item items[4] = { { .v = 0 }, { .v = 1 }, { .v = 2 }, { .v = 3 } };

        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                LIST_APPEND(q, &l, &items[i]);
        assert_int_equal(l.n, 4);
        LIST_REMOVE(q, &l, &items[0]); /* the head */
        LIST_REMOVE(q, &l, &items[3]); /* the tail */
        LIST_REMOVE(q, &l, &items[1]); /* both neighbours gone */
        assert_ptr_equal(l.head, &items[2]);
        assert_ptr_equal(l.tail, &items[2]);
        assert_null(items[2].q_prev);
        assert_null(items[2].q_next);
        LIST_APPEND(q, &l, &items[0]);
        assert_ptr_equal(items[2].q_next, &items[0]);
        assert_ptr_equal(items[0].q_prev, &items[2]);
        LIST_REMOVE(q, &l, &items[2]);
        LIST_REMOVE(q, &l, &items[0]);
        assert_null(l.head);
        assert_null(l.tail);
        assert_int_equal(l.n, 0);
}

static void test_fileio(void **state) {
        char path[] = "/tmp/test-fileio.XXXXXX";
        int fd = mkstemp(path), p[2];
        char *buf = NULL, small[4];
        size_t n;

        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(write_all(fd, "0123456789", 10), 0);
        assert_int_equal(pwrite_all(fd, "ab", 2, 2), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(read_all(fd, 100, &buf, &n), 0);
        assert_int_equal(n, 10);
        assert_string_equal(buf, "01ab456789");
        free(buf);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(read_all(fd, 9, &buf, &n), -EFBIG); /* a regular file, refused by its size */
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(read_full(fd, small, sizeof(small), &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(small, "01ab", 4);
        close(fd);

        /* A pipe: read as it comes, refused past the limit. */
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write_all(p[1], "xyz", 3), 0);
        close(p[1]);
        assert_int_equal(read_all(p[0], 100, &buf, &n), 0);
        assert_string_equal(buf, "xyz");
        free(buf);
        close(p[0]);
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write_all(p[1], "xyz", 3), 0);
        close(p[1]);
        assert_int_equal(read_all(p[0], 2, &buf, &n), -EFBIG);
        close(p[0]);
        assert_int_equal(write_all(-1, "x", 1), -EBADF);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_arena),
                cmocka_unit_test(test_sort),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_fileio),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
