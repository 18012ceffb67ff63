/* SPDX-License-Identifier: MIT */
/*
 * HTTP-dates (RFC 9110 section 5.6.7), as Retry-After and Date headers
 * carry them. Pure.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Parses the N bytes at S (no surrounding whitespace) as an HTTP-date:
 * IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850
 * "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994"
 * forms, into seconds since the epoch. NOW places a two-digit year (a year
 * more than 50 years ahead of NOW is in the past century). The weekday is
 * checked for form only; a leap second reads as :59. -EINVAL for anything
 * else. */
int httpdate_parse(const char *s, size_t n, int64_t now, int64_t *ret);
