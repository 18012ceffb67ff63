/* SPDX-License-Identifier: MIT */
/*
 * An arena: memory handed out from large blocks mapped from the system and
 * given back all at once (arena_done()), or back to a mark
 * (arena_release()). For data that lives and dies together: a parse tree,
 * the strings of a config. Under AddressSanitizer the free part of a block
 * and a gap after each allocation are poisoned, so reading past an
 * allocation is caught as it is with malloc().
 */
#pragma once

#include <stddef.h>

typedef struct ArenaBlock ArenaBlock;

typedef struct Arena {
        ArenaBlock *blocks; /* the newest first */
} Arena;

/* How far an arena is used, to go back to with arena_release(). */
typedef struct ArenaMark {
        ArenaBlock *block;
        size_t used;
} ArenaMark;

/* SIZE bytes aligned to ALIGN (a power of two, at most 16), or NULL when
 * out of memory. */
void *arena_alloc(Arena *a, size_t size, size_t align);

/* A copy of S in the arena, or NULL. */
char *arena_strdup(Arena *a, const char *s);

ArenaMark arena_mark(const Arena *a);

/* Frees everything allocated since M. */
void arena_release(Arena *a, ArenaMark m);

/* Frees everything; the arena is empty and may be used again. */
void arena_done(Arena *a);
