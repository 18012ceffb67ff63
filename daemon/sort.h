/* SPDX-License-Identifier: MIT */
/*
 * Sorting in place. qsort() in glibc sorts a malloc()ed copy of the array
 * (160 KB for 10,000 entries of 16 bytes), which at a reload comes on top of
 * two configs: this is a heapsort, O(n log n) and no memory at all. It is not
 * stable; give the comparison a tie-breaker where order matters. Pure.
 */
#pragma once

#include <stddef.h>

typedef int (*SortCompareFunc)(const void *a, const void *b, void *userdata);

/* Sorts the N elements of SIZE bytes at BASE (at most 64 bytes each);
 * USERDATA goes to every COMPARE. */
void sort_in_place(void *base, size_t n, size_t size, SortCompareFunc compare, void *userdata);
