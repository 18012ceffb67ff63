/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"

#define ARENA_BLOCK_SIZE ((size_t) 1024 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE 16
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void) (addr), (void) (size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void) (addr), (void) (size))
#define ARENA_REDZONE 0
#endif

struct ArenaBlock {
        ArenaBlock *next;
        size_t size, used; /* the whole mapping, header included */
};

static void block_unmap(ArenaBlock *b) {
        ASAN_UNPOISON_MEMORY_REGION(b, b->size); /* a later mapping may reuse the addresses */
        munmap(b, b->size);
}

void arena_done(Arena *a) {
        while (a->blocks) {
                ArenaBlock *b = a->blocks;
                a->blocks = b->next;
                block_unmap(b);
        }
}

void *arena_alloc(Arena *a, size_t size, size_t align) {
        ArenaBlock *b = a->blocks;
        size_t header = (sizeof(ArenaBlock) + 15) & ~(size_t) 15, at, want;

        if (size > SIZE_MAX / 2)
                return NULL;
        if (b) {
                at = (b->used + ARENA_REDZONE + align - 1) & ~(align - 1);
                if (at + size <= b->size) {
                        b->used = at + size;
                        ASAN_UNPOISON_MEMORY_REGION((uint8_t *) b + at, size);
                        return (uint8_t *) b + at;
                }
        }
        want = header + size + ARENA_REDZONE > ARENA_BLOCK_SIZE ? header + size + ARENA_REDZONE
                                                                : ARENA_BLOCK_SIZE;
        b = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
                return NULL;
        *b = (ArenaBlock) { .next = a->blocks, .size = want, .used = header + size };
        a->blocks = b;
        ASAN_POISON_MEMORY_REGION((uint8_t *) b + header, want - header);
        ASAN_UNPOISON_MEMORY_REGION((uint8_t *) b + header, size);
        return (uint8_t *) b + header;
}

char *arena_strdup(Arena *a, const char *s) {
        size_t n = strlen(s) + 1;
        char *p = arena_alloc(a, n, 1);

        if (p)
                memcpy(p, s, n);
        return p;
}

ArenaMark arena_mark(const Arena *a) {
        return (ArenaMark) { .block = a->blocks, .used = a->blocks ? a->blocks->used : 0 };
}

void arena_release(Arena *a, ArenaMark m) {
        while (a->blocks && a->blocks != m.block) {
                ArenaBlock *b = a->blocks;
                a->blocks = b->next;
                block_unmap(b);
        }
        if (a->blocks) {
                ASAN_POISON_MEMORY_REGION((uint8_t *) a->blocks + m.used, a->blocks->used - m.used);
                a->blocks->used = m.used;
        }
}
