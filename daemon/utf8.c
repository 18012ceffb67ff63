/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

uint32_t utf8_decode(const char *s, size_t n, size_t *ret_len) {
        const unsigned char *u = (const unsigned char *) s;
        uint32_t c, min;
        size_t len;

        *ret_len = 1;
        if (u[0] < 0x80)
                return u[0];
        if (u[0] >= 0xc2 && u[0] <= 0xdf)
                len = 2, c = u[0] & 0x1f, min = 0x80;
        else if (u[0] >= 0xe0 && u[0] <= 0xef)
                len = 3, c = u[0] & 0x0f, min = 0x800;
        else if (u[0] >= 0xf0 && u[0] <= 0xf4)
                len = 4, c = u[0] & 0x07, min = 0x10000;
        else
                return UTF8_INVALID;
        if (n < len)
                return UTF8_INVALID;
        for (size_t i = 1; i < len; i++) {
                if ((u[i] & 0xc0) != 0x80)
                        return UTF8_INVALID;
                c = c << 6 | (u[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return UTF8_INVALID;
        *ret_len = len;
        return c;
}

size_t utf8_char_len(const char *s, size_t n) {
        size_t len;

        return utf8_decode(s, n, &len) == UTF8_INVALID ? 0 : len;
}

bool utf8_is_valid_n(const char *s, size_t n) {
        for (size_t i = 0, len; i < n; i += len)
                if (utf8_decode(s + i, n - i, &len) == UTF8_INVALID)
                        return false;
        return true;
}

bool utf8_is_valid(const char *s) {
        return utf8_is_valid_n(s, strlen(s));
}

char *utf8_sanitize(const char *s, size_t n, size_t *ret_len) {
        size_t k = 0, len;
        char *out;

        /* At most three bytes for each byte of S. */
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += len)
                if (utf8_decode(s + i, n - i, &len) == UTF8_INVALID) {
                        memcpy(out + k, UTF8_REPLACEMENT, 3);
                        k += 3;
                } else {
                        memcpy(out + k, s + i, len);
                        k += len;
                }
        out[k] = 0;
        if (ret_len)
                *ret_len = k;
        return out;
}
