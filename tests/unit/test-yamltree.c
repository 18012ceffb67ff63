/* SPDX-License-Identifier: MIT */
/*
 * The YAML tree: shapes and positions, every problem reported through the
 * hook with its place (aliases, NUL, depth, a second document, tabs, bad
 * UTF-8, a file past its limit), positions inside quoted, escaped and
 * folded scalars, and a streamed sequence whose items come one at a time.
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
#include <unistd.h>

#include "yamltree.h"

typedef struct Log {
        char lines[16][160];
        unsigned n;
        /* streaming */
        const char *stream_key;
        char items[16][32];
        unsigned n_items, n_end, n_values;
} Log;

static void on_diag(void *userdata, unsigned line, unsigned column, const char *message) {
        Log *l = userdata;

        assert_true(l->n < 16);
        snprintf(l->lines[l->n++], sizeof(l->lines[0]), "%u:%u %s", line, column, message);
}

static bool on_stream(void *userdata, const YamlNode *key, bool sequence) {
        Log *l = userdata;
        return l->stream_key && strcmp(key->value, l->stream_key) == 0 && sequence;
}

static void on_value(void *userdata, const YamlNode *key, const YamlNode *value) {
        ((Log *) userdata)->n_values++;
}

static void on_item(void *userdata, const YamlNode *item, size_t index) {
        Log *l = userdata;

        assert_int_equal(index, l->n_items);
        snprintf(l->items[l->n_items++], sizeof(l->items[0]), "%s@%u:%u",
                 item->kind == YAML_KIND_SCALAR ? item->value : yaml_kind_to_string(item->kind), item->line,
                 item->column);
}

static void on_end(void *userdata, const YamlNode *sequence, size_t n) {
        Log *l = userdata;

        assert_int_equal(n, l->n_items);
        assert_int_equal(sequence->n_items, 0);
        l->n_end++;
}

static int parse(const char *text, Log *l, YamlTree **ret_tree, const YamlNode **ret_root) {
        YamlHooks h = { .userdata = l, .diag = on_diag, .stream = on_stream, .value = on_value, .item = on_item,
                        .end = on_end };
        int r;

        assert_int_equal(yaml_tree_new(text, strlen(text), -EBADF, 1000, &h, ret_tree), 0);
        r = yaml_tree_parse(*ret_tree, ret_root);
        return r;
}

static void expect_problem(const char *text, const char *want) {
        Log l = {};
        YamlTree *t;
        const YamlNode *root;

        assert_int_equal(parse(text, &l, &t, &root), -EINVAL);
        assert_true(l.n >= 1);
        if (strcmp(l.lines[0], want) != 0)
                fail_msg("'%s': '%s', want '%s'", text, l.lines[0], want);
        yaml_tree_free(t);
}

static void test_shapes(void **state) {
        Log l = {};
        YamlTree *t;
        const YamlNode *root, *v;

        assert_int_equal(parse("a: 1\nb:\n  - x\n  - 'y z'\nc: {d: e}\n", &l, &t, &root), 0);
        assert_int_equal(l.n, 0);
        assert_int_equal(root->kind, YAML_KIND_MAPPING);
        assert_int_equal(root->n_items, 6);
        assert_string_equal(root->items[0]->value, "a");
        assert_true(root->items[1]->plain);
        v = root->items[3];
        assert_int_equal(v->kind, YAML_KIND_SEQUENCE);
        assert_int_equal(v->n_items, 2);
        assert_int_equal(v->items[1]->line, 4);
        assert_int_equal(v->items[1]->column, 5);
        assert_string_equal(v->items[1]->value, "y z");
        assert_false(v->items[1]->plain);
        assert_int_equal(root->items[5]->kind, YAML_KIND_MAPPING);
        assert_int_equal(l.n_values, 3);
        yaml_tree_free(t);

        assert_int_equal(parse("", &l, &t, &root), 0);
        assert_null(root);
        yaml_tree_free(t);
        assert_string_equal(yaml_kind_to_string(YAML_KIND_SEQUENCE), "a list");
}

static void test_problems(void **state) {
        expect_problem("a: &x 1\nb: *x\n", "2:4 YAML aliases ('*x') are not supported; write the value out");
        expect_problem("a: \"x\\0y\"\n", "1:4 NUL character in a value");
        expect_problem("---\na: 1\n---\nb: 2\n", "3:1 more than one YAML document in the file");
        expect_problem("a:\n\tb: 1\n", "2:1 tab character in indentation; YAML allows only spaces there");
        expect_problem("a: \xff\n", "1:4 not valid UTF-8 text: invalid leading UTF-8 octet (byte offset 3)");
        expect_problem("a: [1, 2\n", "2:1 invalid YAML: did not find expected ',' or ']' while parsing a flow sequence");

        char deep[200] = "";
        for (int i = 0; i < 33; i++)
                strcat(deep, "[");
        expect_problem(deep, "1:33 nested more than 32 levels deep");
}

static void test_positions(void **state) {
        Log l = {};
        YamlTree *t;
        const YamlNode *root;
        unsigned line, column;

        assert_int_equal(parse("a: \"x\\ty\"\nb: >\n  one\n  two\nc: plain\n", &l, &t, &root), 0);
        /* After the escape: "x\ty" byte 2 is 'y', written at column 8. */
        yaml_tree_position(t, root->items[1], 2, &line, &column);
        assert_int_equal(line, 1);
        assert_int_equal(column, 8);
        /* A folded scalar: "one two", byte 4 is 't' on the next line. */
        yaml_tree_position(t, root->items[3], 4, &line, &column);
        assert_int_equal(line, 4);
        assert_int_equal(column, 3);
        yaml_tree_position(t, root->items[5], 3, &line, &column);
        assert_int_equal(line, 5);
        assert_int_equal(column, 7);
        yaml_tree_free(t);
}

static void test_stream(void **state) {
        Log l = { .stream_key = "list" };
        YamlTree *t;
        const YamlNode *root;

        assert_int_equal(parse("first: 1\nlist:\n  - a\n  - {b: c}\n  - d\nlast: 2\nlist2: [x]\n", &l, &t, &root),
                         0);
        assert_int_equal(l.n_items, 3);
        assert_string_equal(l.items[0], "a@3:5");
        assert_string_equal(l.items[1], "a mapping@4:5");
        assert_string_equal(l.items[2], "d@5:5");
        assert_int_equal(l.n_end, 1);
        assert_int_equal(l.n_values, 3); /* first, last, list2: not the streamed one */
        assert_int_equal(root->items[3]->kind, YAML_KIND_SEQUENCE);
        yaml_tree_free(t);

        /* A mapping under that key is not streamed. */
        l = (Log) { .stream_key = "list" };
        assert_int_equal(parse("list: {a: b}\n", &l, &t, &root), 0);
        assert_int_equal(l.n_end, 0);
        yaml_tree_free(t);
}

static void test_fd(void **state) {
        char path[] = "/tmp/test-yamltree.XXXXXX";
        int fd = mkstemp(path);
        Log l = {};
        YamlHooks h = { .userdata = &l, .diag = on_diag };
        YamlTree *t;
        const YamlNode *root;

        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(write(fd, "a: [1, 2\n", 9), 9);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(yaml_tree_new(NULL, 0, fd, 1000, &h, &t), 0);
        assert_int_equal(yaml_tree_parse(t, &root), -EINVAL);
        assert_true(l.n >= 1);
        yaml_tree_free(t);

        /* Past the limit as it is read. */
        l = (Log) {};
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(yaml_tree_new(NULL, 0, fd, 4, &h, &t), 0);
        assert_int_equal(yaml_tree_parse(t, &root), -EINVAL);
        assert_string_equal(l.lines[0], "0:0 the file is more than 4 bytes long; a config may be at most 4 bytes");
        yaml_tree_free(t);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_shapes),
                cmocka_unit_test(test_problems),
                cmocka_unit_test(test_positions),
                cmocka_unit_test(test_stream),
                cmocka_unit_test(test_fd),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
