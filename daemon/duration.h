/* SPDX-License-Identifier: MIT */
/*
 * Durations as the config file writes them: one or more <integer><unit>,
 * units ms, s, m, h, d, w ("90s", "1h30m", "28d"). Pure.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Longest text duration_format() writes, with its NUL. */
#define DURATION_MAX 64

/* Parses S into microseconds. On failure returns -EINVAL (-ERANGE on
 * overflow) and sets *reterr_offset to the offending byte. */
int duration_parse(const char *s, uint64_t *ret_usec, size_t *reterr_offset);

/* Writes USEC in the same units, days first: "28d", "1h30m", "0s". */
char *duration_format(uint64_t usec, char buf[static DURATION_MAX]);
