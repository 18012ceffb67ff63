/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "sort.h"

#define SORT_ELEMENT_MAX 64

static void swap(uint8_t *a, uint8_t *b, size_t size) {
        uint8_t t[SORT_ELEMENT_MAX];

        memcpy(t, a, size);
        memcpy(a, b, size);
        memcpy(b, t, size);
}

/* Moves the element at ROOT down the max-heap of the first N elements. */
static void sift_down(
        uint8_t *a, size_t root, size_t n, size_t size, SortCompareFunc compare, void *userdata) {
        for (;;) {
                size_t child = 2 * root + 1;
                if (child >= n)
                        return;
                if (child + 1 < n && compare(a + child * size, a + (child + 1) * size, userdata) < 0)
                        child++;
                if (compare(a + root * size, a + child * size, userdata) >= 0)
                        return;
                swap(a + root * size, a + child * size, size);
                root = child;
        }
}

void sort_in_place(void *base, size_t n, size_t size, SortCompareFunc compare, void *userdata) {
        uint8_t *a = base;

        assert(size <= SORT_ELEMENT_MAX);
        for (size_t i = n / 2; i-- > 0;)
                sift_down(a, i, n, size, compare, userdata);
        for (size_t end = n; end-- > 1;) {
                swap(a, a + end * size, size);
                sift_down(a, 0, end, size, compare, userdata);
        }
}
