/* SPDX-License-Identifier: MIT */
/*
 * The OAuth client secret, in its own small type: read from the source the
 * config names, kept only as long as needed, wiped (explicit_bzero) when
 * freed, and never printed. Reading one makes the process non-dumpable, so
 * a core dump cannot carry it.
 */
#pragma once

#include <stddef.h>

#include "config.h"

typedef struct Secret {
        char *value; /* NUL-terminated, without a trailing newline */
        size_t size;
} Secret;

/* Reads the secret from the source C names (file, credential or
 * environment variable). Trailing newlines are dropped. -ENODATA when it is
 * empty, -EPERM for a world-writable file, else a negative errno. */
int secret_read(const Config *c, Secret **ret);

/* Reads a secret from SOURCE: NAME (a variable) or PATH (a file), as secret_read(). */
int secret_read_from(SecretSource source, const char *name, const char *path, Secret **ret);

/* What went wrong reading C's secret (error R of secret_read()), as
 * "PATH:LINE:COLUMN: error: 'client_secret_file': …" ("warning:" when
 * WARNING), into BUF. */
char *secret_error_text(const Config *c, int r, bool warning, char *buf, size_t size);

/* Wipes and frees; accepts NULL. */
Secret *secret_free(Secret *s);

/* Wipes and frees a NUL-terminated string that held secret material. */
char *secret_string_free(char *s);
