/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "arena.h"
#include "macro.h"
#include "yamltree.h"

#define YAML_MAX_DEPTH 32

struct YamlTree {
        YamlHooks hooks;
        /* The text: given, or read from FD by libyaml as it goes and read
         * again only if a message needs it (tree_text()), so that a large
         * file is not held in memory beside what it becomes. */
        const char *text;
        size_t size;
        int fd;
        size_t max_size;
        char *file_text;  /* TEXT when read from FD */
        size_t n_read;    /* bytes libyaml has read from FD */
        int read_error;   /* reading FD failed: -errno, or -EFBIG past MAX_SIZE */
        size_t skip;      /* FD: the bytes of a byte order mark at its start, left out */
        bool started;     /* FD: the first read is done */
        Arena arena;      /* the nodes */
        YamlNode **stack; /* children of the collections being read, innermost last */
        size_t n_stack, stack_allocated;
        bool streamed; /* a sequence was streamed already */
        int oom;
};

const char *yaml_kind_to_string(YamlKind k) {
        switch (k) {
        case YAML_KIND_SCALAR:
                return "a scalar";
        case YAML_KIND_MAPPING:
                return "a mapping";
        case YAML_KIND_SEQUENCE:
                return "a list";
        case _YAML_KIND_MAX:
        case _YAML_KIND_INVALID:
                break;
        }
        return NULL;
}

_printf_(4, 5) static void tree_diag(YamlTree *t, unsigned line, unsigned column, const char *fmt, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0) {
                m = NULL;
                t->oom = -ENOMEM;
                return;
        }
        t->hooks.diag(t->hooks.userdata, line, column, m);
}

static void tree_diag_mark(YamlTree *t, const yaml_mark_t *mark, const char *message) {
        tree_diag(t, (unsigned) mark->line + 1, (unsigned) mark->column + 1, "%s", message);
}

/* ---- the text ---- */

/* libyaml's input from FD. */
static int tree_read(void *userdata, unsigned char *buffer, size_t size, size_t *ret_size) {
        YamlTree *t = userdata;
        ssize_t n;

        do
                n = read(t->fd, buffer, size);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                t->read_error = -errno;
                return 0;
        }
        t->n_read += (size_t) n;
        if (!t->started) {
                /* A byte order mark is allowed, and stands for nothing
                 * (YAML 1.2 section 5.2); positions count from after it. */
                t->started = true;
                if (n >= 3 && memcmp(buffer, "\xEF\xBB\xBF", 3) == 0) {
                        memmove(buffer, buffer + 3, (size_t) n - 3);
                        n -= 3;
                        t->skip = 3;
                }
        }
        if (t->n_read > t->max_size) {
                /* It grew past the limit since the caller looked. */
                t->read_error = -EFBIG;
                return 0;
        }
        *ret_size = (size_t) n;
        return 1;
}

/* The text, for a message that needs to look at it; NULL when it cannot
 * be read again (a pipe). A file changed while it was read may then
 * point a message at the wrong place, never anywhere outside the text. */
static const char *tree_text(YamlTree *t) {
        size_t size = 0;
        ssize_t n;

        if (t->text || t->fd < 0)
                return t->text;
        t->file_text = malloc(t->max_size + 1);
        if (!t->file_text) {
                t->fd = -EBADF;
                return NULL;
        }
        while (size < t->max_size) {
                n = pread(t->fd, t->file_text + size, t->max_size - size, (off_t) (size + t->skip));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size += (size_t) n;
        }
        if (size == 0) {
                t->file_text = mfree(t->file_text);
                t->fd = -EBADF; /* not again */
                return NULL;
        }
        t->file_text[size] = 0;
        t->text = t->file_text;
        t->size = size;
        return t->text;
}

/* Line and column (from 1) of byte OFFSET of the text; 0:0 (the whole
 * file) when the text cannot be read. Columns count characters. */
static void offset_to_position(YamlTree *t, size_t offset, unsigned *ret_line, unsigned *ret_column) {
        unsigned line = 1, column = 1;

        if (!tree_text(t)) {
                *ret_line = *ret_column = 0;
                return;
        }
        for (size_t i = 0; i < offset && i < t->size; i++) {
                if (t->text[i] == '\n') {
                        line++;
                        column = 1;
                } else if (((unsigned char) t->text[i] & 0xC0) != 0x80)
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

static void tree_yaml_error(YamlTree *t, const yaml_parser_t *p) {
        unsigned line, column;
        const char *problem = p->problem ? p->problem : "invalid YAML";

        if (p->error == YAML_READER_ERROR && t->read_error == -EFBIG) {
                tree_diag(
                        t,
                        0,
                        0,
                        "the file is more than %zu bytes long; a config may be at most %zu bytes",
                        t->max_size,
                        t->max_size);
                return;
        }
        if (p->error == YAML_READER_ERROR && t->read_error < 0) {
                tree_diag(t, 0, 0, "cannot read the config file: %s", strerror(-t->read_error));
                return;
        }
        if (p->error == YAML_READER_ERROR) {
                offset_to_position(t, p->problem_offset, &line, &column);
                tree_diag(
                        t,
                        line,
                        column,
                        "not valid UTF-8 text: %s (byte offset %zu)",
                        problem,
                        p->problem_offset);
                return;
        }
        line = (unsigned) p->problem_mark.line + 1;
        column = (unsigned) p->problem_mark.column + 1;
        if (tree_text(t) && p->problem_mark.index < t->size && t->text[p->problem_mark.index] == '\t')
                tree_diag(t, line, column, "tab character in indentation; YAML allows only spaces there");
        else if (p->context)
                tree_diag(t, line, column, "invalid YAML: %s %s", problem, p->context);
        else
                tree_diag(t, line, column, "invalid YAML: %s", problem);
}

/* ---- nodes ---- */

static YamlNode *node_new(YamlTree *t, YamlKind kind, const yaml_mark_t *m) {
        YamlNode *n = arena_alloc(&t->arena, sizeof(YamlNode), _Alignof(YamlNode));

        if (!n)
                return NULL;
        *n = (YamlNode) {
                .kind = kind,
                .line = (unsigned) m->line + 1,
                .column = (unsigned) m->column + 1,
        };
        return n;
}

static int stack_push(YamlTree *t, YamlNode *n) {
        if (GROW(t->stack, t->stack_allocated, t->n_stack, 256) < 0)
                return -ENOMEM;
        t->stack[t->n_stack++] = n;
        return 0;
}

static int parse_node_from(
        YamlTree *t, yaml_parser_t *p, yaml_event_t *event, unsigned depth, YamlNode **ret);
static int parse_root_value(YamlTree *t, yaml_parser_t *p, const YamlNode *key, YamlNode **ret);

/* Reads the next node from the event stream; -EINVAL after a reported
 * problem, -ENODATA at the end of a collection. */
static int parse_node(YamlTree *t, yaml_parser_t *p, unsigned depth, YamlNode **ret) {
        yaml_event_t ev;

        if (!yaml_parser_parse(p, &ev)) {
                tree_yaml_error(t, p);
                return -EINVAL;
        }
        return parse_node_from(t, p, &ev, depth, ret);
}

static int scalar_new(YamlTree *t, const yaml_event_t *ev, YamlNode **ret) {
        size_t len = ev->data.scalar.length;
        YamlNode *n = node_new(t, YAML_KIND_SCALAR, &ev->start_mark);

        if (n)
                n->value = arena_alloc(&t->arena, len + 1, 1);
        if (!n || !n->value)
                return -ENOMEM;
        memcpy(n->value, ev->data.scalar.value, len);
        n->value[len] = 0;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->start = (unsigned) ev->start_mark.index;
        n->end = (unsigned) ev->end_mark.index;
        if (memchr(n->value, 0, len)) {
                tree_diag(t, n->line, n->column, "NUL character in a value");
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* The node EVENT starts, without its children. */
static int node_from_event(YamlTree *t, const yaml_event_t *ev, unsigned depth, YamlNode **ret) {
        YamlNode *n;

        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                return scalar_new(t, ev, ret);
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
                n = node_new(
                        t,
                        ev->type == YAML_MAPPING_START_EVENT ? YAML_KIND_MAPPING : YAML_KIND_SEQUENCE,
                        &ev->start_mark);
                if (!n)
                        return -ENOMEM;
                if (depth >= YAML_MAX_DEPTH) {
                        tree_diag(t, n->line, n->column, "nested more than %d levels deep", YAML_MAX_DEPTH);
                        return -EINVAL;
                }
                *ret = n;
                return 0;
        case YAML_ALIAS_EVENT:
                tree_diag(
                        t,
                        (unsigned) ev->start_mark.line + 1,
                        (unsigned) ev->start_mark.column + 1,
                        "YAML aliases ('*%s') are not supported; write the value out",
                        ev->data.alias.anchor);
                return -EINVAL;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
                return -ENODATA;
        default:
                tree_diag_mark(t, &ev->start_mark, "unexpected YAML structure");
                return -EINVAL;
        }
}

/* Reads the children of collection N: they gather on the stack, and once
 * the collection ends they move to an array of exactly their number. */
static int parse_children(YamlTree *t, yaml_parser_t *p, YamlNode *n, unsigned depth) {
        size_t base = t->n_stack;
        int r;

        for (;;) {
                YamlNode *child = NULL;

                if (depth == 0 && n->kind == YAML_KIND_MAPPING && (t->n_stack - base) % 2 == 1)
                        r = parse_root_value(t, p, t->stack[t->n_stack - 1], &child);
                else
                        r = parse_node(t, p, depth + 1, &child);
                if (r == -ENODATA)
                        break;
                if (r >= 0)
                        r = stack_push(t, child);
                if (r < 0) {
                        t->n_stack = base;
                        return r;
                }
        }
        n->n_items = t->n_stack - base;
        if (n->n_items > 0) {
                n->items = arena_alloc(&t->arena, n->n_items * sizeof(YamlNode *), _Alignof(YamlNode *));
                if (!n->items) {
                        t->n_stack = base;
                        return -ENOMEM;
                }
                memcpy(n->items, t->stack + base, n->n_items * sizeof(YamlNode *));
        }
        t->n_stack = base;
        return 0;
}

/* The node that EVENT (consumed) starts. */
static int parse_node_from(
        YamlTree *t, yaml_parser_t *p, yaml_event_t *event, unsigned depth, YamlNode **ret) {
        YamlNode *n = NULL;
        int r;

        r = node_from_event(t, event, depth, &n);
        yaml_event_delete(event);
        if (r < 0)
                return r;
        if (n->kind != YAML_KIND_SCALAR) {
                r = parse_children(t, p, n, depth);
                if (r < 0)
                        return r;
        }
        *ret = n;
        return 0;
}

/* A sequence whose start event EV was read, item by item: each is handed
 * to the item hook and its nodes are freed before the next is read. */
static int parse_streamed(YamlTree *t, yaml_parser_t *p, yaml_event_t *ev, YamlNode **ret) {
        YamlNode *n = node_new(t, YAML_KIND_SEQUENCE, &ev->start_mark);
        size_t i = 0;
        int r;

        yaml_event_delete(ev);
        if (!n)
                return -ENOMEM;
        t->streamed = true;
        for (;; i++) {
                ArenaMark mark = arena_mark(&t->arena);
                YamlNode *item = NULL;

                r = parse_node(t, p, 2, &item);
                if (r == -ENODATA)
                        break;
                if (r < 0)
                        return r;
                t->hooks.item(t->hooks.userdata, item, i);
                arena_release(&t->arena, mark);
        }
        t->hooks.end(t->hooks.userdata, n, i);
        *ret = n; /* its items are gone: N_ITEMS stays 0 */
        return 0;
}

/* A value of the root mapping, after KEY: streamed when the hook asks. */
static int parse_root_value(YamlTree *t, yaml_parser_t *p, const YamlNode *key, YamlNode **ret) {
        yaml_event_t ev;
        int r;

        if (!yaml_parser_parse(p, &ev)) {
                tree_yaml_error(t, p);
                return -EINVAL;
        }
        if (t->hooks.stream && !t->streamed &&
            t->hooks.stream(t->hooks.userdata, key, ev.type == YAML_SEQUENCE_START_EVENT) &&
            ev.type == YAML_SEQUENCE_START_EVENT)
                return parse_streamed(t, p, &ev, ret);
        r = parse_node_from(t, p, &ev, 1, ret);
        if (r >= 0 && t->hooks.value)
                t->hooks.value(t->hooks.userdata, key, *ret);
        return r;
}

int yaml_tree_parse(YamlTree *t, const YamlNode **ret_root) {
        YamlNode *root = NULL;
        yaml_parser_t p;
        yaml_event_t ev;
        int r = 0;

        if (!yaml_parser_initialize(&p))
                return -ENOMEM;
        if (t->text)
                yaml_parser_set_input_string(&p, (const unsigned char *) t->text, t->size);
        else
                yaml_parser_set_input(&p, tree_read, t);
        yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

        for (bool done = false; !done;) {
                if (!yaml_parser_parse(&p, &ev)) {
                        tree_yaml_error(t, &p);
                        r = -EINVAL;
                        break;
                }
                switch (ev.type) {
                case YAML_DOCUMENT_START_EVENT:
                        if (root) {
                                tree_diag_mark(t, &ev.start_mark, "more than one YAML document in the file");
                                r = -EINVAL;
                                done = true;
                                break;
                        }
                        r = parse_node(t, &p, 0, &root);
                        if (r == -ENODATA)
                                r = -EINVAL;
                        if (r < 0)
                                done = true;
                        break;
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&p);
        if (t->oom < 0)
                return t->oom;
        if (r < 0)
                return r;
        *ret_root = root;
        return 0;
}

/* ---- positions ---- */

void yaml_tree_position(
        YamlTree *t, const YamlNode *value, size_t offset, unsigned *ret_line, unsigned *ret_column) {
        const char *src = tree_text(t), *v = value->value;
        size_t i = value->start, end = value->end < t->size ? value->end : t->size, j = 0;

        if (!src) {
                *ret_line = value->line;
                *ret_column = value->column;
                return;
        }

        /* Skip the opening quote, or a block scalar's header line. */
        if (i < end && (src[i] == '"' || src[i] == '\''))
                i++;
        else if (i < end && (src[i] == '|' || src[i] == '>')) {
                while (i < end && src[i] != '\n')
                        i++;
                while (i < end && (src[i] == '\n' || src[i] == ' '))
                        i++;
        }
        /* The value and its source side by side. */
        while (i < end && j < offset && v[j]) {
                if (src[i] == v[j]) {
                        i++;
                        j++;
                } else if (src[i] == '\\' && i + 1 < end) {
                        /* An escape stands for one character of the value. */
                        char e = src[i + 1];
                        i += e == 'x' ? 4 : e == 'u' ? 6 : e == 'U' ? 10 : 2;
                        for (j++; ((unsigned char) v[j] & 0xC0) == 0x80; j++)
                                ;
                } else if (src[i] == ' ' || src[i] == '\n' || src[i] == '\r' || src[i] == '\t') {
                        /* A line break folded into a space, or indentation. */
                        while (i < end &&
                               (src[i] == ' ' || src[i] == '\n' || src[i] == '\r' || src[i] == '\t'))
                                i++;
                        if (v[j] == ' ' || v[j] == '\n')
                                j++;
                } else
                        break; /* lost track: point at the scalar itself */
        }
        if (j < offset && v[j]) {
                *ret_line = value->line;
                *ret_column = value->column;
                return;
        }
        offset_to_position(t, i, ret_line, ret_column);
}

/* ---- life ---- */

int yaml_tree_new(
        const char *text, size_t size, int fd, size_t max_size, const YamlHooks *hooks, YamlTree **ret) {
        YamlTree *t = calloc(1, sizeof(YamlTree));

        if (!t)
                return -ENOMEM;
        if (text && size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
                text += 3; /* see tree_read() */
                size -= 3;
        }
        *t = (YamlTree) {
                .hooks = *hooks,
                .text = text,
                .size = text ? size : 0,
                .fd = text ? -EBADF : fd,
                .max_size = max_size,
        };
        *ret = t;
        return 0;
}

YamlTree *yaml_tree_free(YamlTree *t) {
        if (!t)
                return NULL;
        arena_done(&t->arena);
        free(t->stack);
        free(t->file_text);
        free(t);
        return NULL;
}
