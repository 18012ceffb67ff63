/* SPDX-License-Identifier: MIT */
/*
 * The UTF-8 decoder against RFC 3629's table, at every edge: the ends of
 * each length, overlong forms, surrogates, past U+10FFFF, cut sequences,
 * and the repair of bad bytes; then against a brute-force encoder over every
 * code point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static void expect(const char *s, size_t n, uint32_t code, size_t len) {
        size_t got;
        uint32_t c = utf8_decode(s, n, &got);

        if (c != code || got != len)
                fail_msg("%zu bytes %02x...: U+%04X (%zu), want U+%04X (%zu)", n, (unsigned char) s[0], c, got, code,
                         len);
}

static void test_edges(void **state) {
        expect("A", 1, 'A', 1);
        expect("\x7f", 1, 0x7f, 1);
        expect("\0", 1, 0, 1);
        expect("\xc2\x80", 2, 0x80, 2);
        expect("\xdf\xbf", 2, 0x7ff, 2);
        expect("\xe0\xa0\x80", 3, 0x800, 3);
        expect("\xed\x9f\xbf", 3, 0xd7ff, 3);
        expect("\xee\x80\x80", 3, 0xe000, 3);
        expect("\xef\xbf\xbf", 3, 0xffff, 3);
        expect("\xf0\x90\x80\x80", 4, 0x10000, 4);
        expect("\xf4\x8f\xbf\xbf", 4, 0x10ffff, 4);

        /* Overlong, surrogates, too large, stray continuations, cut short: one byte skipped. */
        const char *bad[] = { "\xc0\xaf", "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xed\xa0\x80",
                              "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80",
                              "\xbf", "\xc2\x41", "\xe1\x80\x41" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect(bad[i], strlen(bad[i]), UTF8_INVALID, 1);
        expect("\xe1\x80", 2, UTF8_INVALID, 1);    /* cut: only two of three bytes available */
        expect("\xf0\x90\x80", 3, UTF8_INVALID, 1);
        assert_int_equal(utf8_char_len("\xe2\x82\xac", 3), 3);
        assert_int_equal(utf8_char_len("\xe2\x82", 2), 0);
}

/* Every code point, encoded by hand, decodes to itself. */
static void test_every_code_point(void **state) {
        for (uint32_t c = 0; c <= 0x10ffff; c++) {
                char b[4];
                size_t n;

                if (c >= 0xd800 && c <= 0xdfff)
                        continue;
                if (c < 0x80)
                        b[0] = (char) c, n = 1;
                else if (c < 0x800)
                        b[0] = (char) (0xc0 | c >> 6), b[1] = (char) (0x80 | (c & 0x3f)), n = 2;
                else if (c < 0x10000)
                        b[0] = (char) (0xe0 | c >> 12), b[1] = (char) (0x80 | ((c >> 6) & 0x3f)),
                        b[2] = (char) (0x80 | (c & 0x3f)), n = 3;
                else
                        b[0] = (char) (0xf0 | c >> 18), b[1] = (char) (0x80 | ((c >> 12) & 0x3f)),
                        b[2] = (char) (0x80 | ((c >> 6) & 0x3f)), b[3] = (char) (0x80 | (c & 0x3f)), n = 4;
                expect(b, n, c, n);
                assert_true(utf8_is_valid_n(b, n));
        }
}

static void test_valid_and_sanitize(void **state) {
        size_t n;
        char *s;

        assert_true(utf8_is_valid(""));
        assert_true(utf8_is_valid("Zürich €"));
        assert_false(utf8_is_valid("a\xffz"));
        assert_true(utf8_is_valid_n("a\0b", 3));
        assert_false(utf8_is_valid_n("\xe2\x82\xac", 2));

        s = utf8_sanitize("a\xff\xc0z\xe2\x82", 6, &n);
        assert_non_null(s);
        assert_string_equal(s, "a" UTF8_REPLACEMENT UTF8_REPLACEMENT "z" UTF8_REPLACEMENT UTF8_REPLACEMENT);
        assert_int_equal(n, strlen(s));
        assert_true(utf8_is_valid(s));
        free(s);
        s = utf8_sanitize("ok €", 6, &n);
        assert_string_equal(s, "ok €");
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_edges),
                cmocka_unit_test(test_every_code_point),
                cmocka_unit_test(test_valid_and_sanitize),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
