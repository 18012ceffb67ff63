/* SPDX-License-Identifier: MIT */
/*
 * Small helpers used everywhere: cleanup attributes and ownership handoff,
 * in the shape of systemd's cleanup-fundamental.h.
 */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _pure_ __attribute__((pure))

/* Marks code that a correct program never reaches. */
#define assert_not_reached() abort()

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* The struct of TYPE whose MEMBER PTR points to. */
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) -offsetof(type, member)))

/* Returns the value of *p and sets *p to NULL: hands ownership over. */
#define TAKE_PTR(p)                                                                                         \
        ({                                                                                                  \
                typeof(p) *_pp = &(p);                                                                      \
                typeof(p) _p = *_pp;                                                                        \
                *_pp = NULL;                                                                                \
                _p;                                                                                         \
        })

/* Returns the fd in FD and sets FD to -EBADF: hands ownership over. */
#define TAKE_FD(fd)                                                                                         \
        ({                                                                                                  \
                int _fd = (fd);                                                                             \
                (fd) = -EBADF;                                                                              \
                _fd;                                                                                        \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                             \
        static inline void func##p(type *p) {                                                               \
                if (*p)                                                                                     \
                        *p = func(*p);                                                                      \
        }

#define _cleanup_free_ _cleanup_(freep)

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Frees a NULL-terminated array of strings and the strings. */
static inline char **strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}

static inline void strv_freep(char ***l) {
        *l = strv_free(*l);
}

static inline void closep(int *fd) {
        if (*fd >= 0)
                (void) close(*fd);
}

/* Makes room for one more element in the array *P of *ALLOCATED elements
 * of SIZE bytes, N of them in use: doubles it (from MIN) when full. 0, or
 * -ENOMEM with the array as it was. Use GROW(). */
static inline int grow_array(void **p, size_t *allocated, size_t n, size_t size, size_t min) {
        if (n < *allocated)
                return 0;
        size_t room = *allocated ? *allocated * 2 : min;
        void *a = reallocarray(*p, room, size);
        if (!a)
                return -ENOMEM;
        *p = a;
        *allocated = room;
        return 0;
}

#define GROW(p, allocated, n, min) grow_array((void **) &(p), &(allocated), (n), sizeof(*(p)), (min))

#define USEC_PER_SEC ((uint64_t) 1000000ULL)
#define USEC_PER_MSEC ((uint64_t) 1000ULL)
