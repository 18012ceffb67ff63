/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, nothing
 * beyond U+10FFFF. One decoder for every module that checks or cleans text
 * from outside (Zuora's answers, state.json). Pure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_INVALID UINT32_MAX

/* The replacement character U+FFFD, encoded. */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Decodes the character at S (N > 0 bytes available) into its code point;
 * its length in *ret_len. UTF8_INVALID with *ret_len 1 when S does not start
 * a valid sequence, so that a bad byte is skipped alone. */
uint32_t utf8_decode(const char *s, size_t n, size_t *ret_len);

/* The length of the valid sequence at S (N > 0 bytes available), or 0. */
size_t utf8_char_len(const char *s, size_t n);

/* Whether the N bytes at S are valid UTF-8 (a NUL byte is U+0000, valid). */
bool utf8_is_valid_n(const char *s, size_t n);

/* Whether the C string S is valid UTF-8. */
bool utf8_is_valid(const char *s);

/* S (N bytes) with every byte that does not start a valid sequence replaced
 * by U+FFFD, as a new NUL-terminated string of *ret_len bytes. NULL when out
 * of memory. */
char *utf8_sanitize(const char *s, size_t n, size_t *ret_len);
