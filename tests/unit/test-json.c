/* SPDX-License-Identifier: MIT */
/*
 * The JSON reader (shapes, depth left out or refused, comments, NUL bytes,
 * a byte order mark, the open string yajl lets through, where errors are,
 * streaming: members handed over whole and freed, a stop from the hook) and
 * the writer (repaired UTF-8, a sticky error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static const JsonOptions plain = { .max_depth = 32 };

static int parse(const char *text, const JsonOptions *o, JsonDoc *d, JsonError *e) {
        return json_parse(text, strlen(text), o, d, e);
}

static void expect_error(const char *text, const JsonOptions *o, unsigned line, unsigned column, const char *what) {
        JsonDoc d = {};
        JsonError e = {};
        int r = parse(text, o, &d, &e);

        if (r != -EBADMSG)
                fail_msg("'%s': %d, want -EBADMSG", text, r);
        assert_null(d.root);
        if (e.line != line || e.column != column || !strstr(e.message, what))
                fail_msg("'%s': %u:%u %s, want %u:%u %s", text, e.line, e.column, e.message, line, column, what);
}

static void test_shapes(void **state) {
        JsonDoc d = {};
        const JsonNode *n;
        int64_t i;

        assert_int_equal(parse(" {\"a\": [1, -2.5e3, \"x\", true, false, null], \"b\": {\"c\": \"d\"}} ", &plain, &d,
                               NULL),
                         0);
        assert_int_equal(d.root->type, JSON_OBJECT);
        n = json_get(d.root, "a");
        assert_int_equal(n->type, JSON_ARRAY);
        n = n->first;
        assert_int_equal(json_integer(n, &i), 0);
        assert_int_equal(i, 1);
        n = n->next;
        assert_string_equal(json_text(n, /* number_too= */ true), "-2.5e3");
        assert_null(json_text(n, /* number_too= */ false));
        assert_int_equal(json_integer(n, &i), -EINVAL);
        n = n->next;
        assert_string_equal(json_text(n, false), "x");
        n = n->next;
        assert_true(n->type == JSON_BOOLEAN && n->boolean);
        n = n->next;
        assert_true(n->type == JSON_BOOLEAN && !n->boolean);
        assert_int_equal(n->next->type, JSON_NULL);
        assert_null(n->next->next);
        assert_string_equal(json_text(json_get(json_get(d.root, "b"), "c"), false), "d");
        assert_null(json_get(d.root, "c"));
        assert_null(json_get(json_get(d.root, "a"), "x")); /* not an object */
        json_doc_done(&d);
        assert_null(d.root);

        /* A key or a string with U+0000: the key is another key, the text no text. */
        assert_int_equal(parse("{\"a\\u0000b\": \"x\\u0000y\"}", &plain, &d, NULL), 0);
        assert_null(json_get(d.root, "a"));
        assert_int_equal(d.root->first->key_len, 3);
        assert_string_equal(d.root->first->key, "a");
        assert_null(json_text(d.root->first, false));
        json_doc_done(&d);

        /* A scalar at the top, a byte order mark, and a number at the very end. */
        assert_int_equal(parse("\xEF\xBB\xBF 42", &plain, &d, NULL), 0);
        assert_int_equal(json_integer(d.root, &i), 0);
        assert_int_equal(i, 42);
        json_doc_done(&d);
}

static void test_integers(void **state) {
        static const struct {
                const char *text;
                int r;
                int64_t value;
        } cases[] = {
                { "0", 0, 0 },
                { "-0", 0, 0 },
                { "9223372036854775807", 0, INT64_MAX },
                { "-9223372036854775808", 0, INT64_MIN },
                { "9223372036854775808", -ERANGE, 0 },
                { "-9223372036854775809", -ERANGE, 0 },
                { "99999999999999999999", -ERANGE, 0 },
                { "1.0", -EINVAL, 0 },
                { "1e0", -EINVAL, 0 },
                { "\"1\"", -EINVAL, 0 },
        };

        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                JsonDoc d = {};
                int64_t v = 7;

                assert_int_equal(parse(cases[k].text, &plain, &d, NULL), 0);
                assert_int_equal(json_integer(d.root, &v), cases[k].r);
                if (cases[k].r == 0)
                        assert_true(v == cases[k].value);
                json_doc_done(&d);
        }
}

static void test_refused(void **state) {
        expect_error("", &plain, 1, 1, "premature EOF");
        expect_error("  \n ", &plain, 2, 2, "premature EOF");
        expect_error("{\"a\": 1", &plain, 1, 8, "premature EOF");
        expect_error("{} {}", &plain, 1, 5, "trailing garbage");
        expect_error("{}\n\"open", &plain, 2, 1, "trailing garbage"); /* yajl 2.1.0 lets this by */
        expect_error("{\"a\": \"\xff\"}", &plain, 1, 9, "invalid bytes in UTF8");
        JsonDoc d = {};
        JsonError e;
        assert_int_equal(json_parse("{\"a\": 1} \0", 10, &plain, &d, &e), -EBADMSG);
        assert_int_equal(e.column, 10);
        assert_string_equal(e.message, "NUL byte");
        /* Comments only when asked, and a NUL inside one is still found. */
        expect_error("/* c */ {}", &plain, 1, 1, "comments are not enabled");
        JsonOptions c = { .max_depth = 32, .comments = true };
        assert_int_equal(parse("/* c */ {} // d", &c, &d, NULL), 0);
        json_doc_done(&d);
        assert_int_equal(parse("{} /* x */ // y\n ", &c, &d, NULL), 0);
        json_doc_done(&d);
        expect_error("{} /* x */ \"open", &c, 1, 12, "trailing garbage");
        assert_int_equal(json_parse("/* \0 */ {}", 10, &c, &d, &e), -EBADMSG);
        assert_int_equal(e.column, 4);
}

static void test_depth(void **state) {
        char deep[200];
        JsonDoc d = {};
        JsonOptions drop = { .max_depth = 3 }, refuse = { .max_depth = 3, .deep_is_error = true };

        snprintf(deep, sizeof(deep), "{\"a\": [[{\"x\": [1]}], 2], \"b\": 3}");
        /* Left out: the third level's children go, the rest stays. */
        assert_int_equal(parse(deep, &drop, &d, NULL), 0);
        const JsonNode *a = json_get(d.root, "a");
        assert_non_null(a);
        assert_int_equal(a->first->type, JSON_ARRAY);
        assert_null(a->first->first);
        assert_int_equal(a->first->next->type, JSON_NUMBER);
        assert_non_null(json_get(d.root, "b"));
        json_doc_done(&d);
        /* Refused, where the fourth level opens. */
        expect_error(deep, &refuse, 1, 10, "nested too deeply");
        assert_int_equal(parse("[[[1]]]", &refuse, &d, NULL), 0);
        json_doc_done(&d);
}

typedef struct Seen {
        char keys[8][16];
        unsigned n;
        int stop_at; /* the member that stops the parse, or -1 */
} Seen;

static int on_member(const JsonNode *member, void *userdata) {
        Seen *s = userdata;

        snprintf(s->keys[s->n], sizeof(s->keys[s->n]), "%s=%d%s", member->key, member->type,
                 member->type == JSON_OBJECT && member->first ? "+" : "");
        if ((int) s->n++ == s->stop_at)
                return -ECANCELED;
        return 0;
}

static void test_stream(void **state) {
        Seen s = { .stop_at = -1 };
        JsonOptions o = { .max_depth = 32, .stream_key = "e", .stream = on_member, .userdata = &s };
        JsonDoc d = {};

        assert_int_equal(parse("{\"x\": {\"e\": {\"no\": 1}}, \"e\": {\"a\": {\"k\": [1]}, \"b\": 5, \"c\": {}}, "
                               "\"e\": {\"z\": 1}, \"y\": 2}",
                               &o, &d, NULL),
                         0);
        /* Only the first top-level "e" that is an object; whole members. */
        assert_int_equal(s.n, 3);
        assert_string_equal(s.keys[0], "a=4+");
        assert_string_equal(s.keys[1], "b=2");
        assert_string_equal(s.keys[2], "c=4");
        /* The streamed object stays, empty; the rest of the tree is whole. */
        const JsonNode *e = json_get(d.root, "e");
        assert_int_equal(e->type, JSON_OBJECT);
        assert_null(e->first);
        assert_non_null(json_get(e->next, "z"));
        assert_non_null(json_get(d.root, "y"));
        unsigned nodes = 0;
        for (JsonNode *n = d.nodes; n; n = n->link)
                nodes++;
        assert_int_equal(nodes, 8); /* root, x, x.e, x.e.no, e, e (2nd), z, y: and nothing of a, b, c */
        json_doc_done(&d);

        /* A key that is "e" as a C string counts; an array does not. */
        s = (Seen) { .stop_at = -1 };
        assert_int_equal(parse("{\"e\": [], \"e\\u0000x\": {\"a\": 1}}", &o, &d, NULL), 0);
        assert_int_equal(s.n, 1);
        json_doc_done(&d);

        /* The hook stops it. */
        s = (Seen) { .stop_at = 1 };
        assert_int_equal(parse("{\"e\": {\"a\": 1, \"b\": 2, \"c\": 3}}", &o, &d, NULL), -ECANCELED);
        assert_int_equal(s.n, 2);
        assert_null(d.root);
}

static void test_writer(void **state) {
        JsonWriter w;
        const char *text;
        size_t n;

        assert_int_equal(json_writer_init(&w, /* beautify= */ false, NULL, NULL), 0);
        json_put_open(&w);
        json_put_string(&w, "k\xff");
        json_put_array_open(&w);
        json_put_int(&w, -3);
        json_put_bool(&w, true);
        json_put_null(&w);
        json_put_string_or_null(&w, NULL);
        json_put_string(&w, "\"é\"");
        json_put_array_close(&w);
        json_put_close(&w);
        assert_int_equal(json_writer_error(&w), 0);
        assert_int_equal(json_writer_text(&w, &text, &n), 0);
        assert_string_equal(text, "{\"k\xEF\xBF\xBD\":[-3,true,null,null,\"\\\"é\\\"\"]}");
        json_writer_done(&w);

        /* A wrong sequence sticks, and later calls do nothing. */
        assert_int_equal(json_writer_init(&w, false, NULL, NULL), 0);
        json_put_close(&w);
        assert_int_equal(json_writer_error(&w), -EINVAL);
        json_put_open(&w);
        json_writer_fail(&w, -ENOSPC);
        assert_int_equal(json_writer_error(&w), -EINVAL);
        assert_int_equal(json_writer_text(&w, &text, &n), -EINVAL);
        json_writer_done(&w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_shapes),
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_depth),
                cmocka_unit_test(test_stream),
                cmocka_unit_test(test_writer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
