/* SPDX-License-Identifier: MIT */
/*
 * A YAML document as a small tree of nodes that remember where they were
 * written (line, column, byte offsets), built from libyaml's event parser:
 * one document, aliases refused, nesting bounded, NUL characters refused.
 * Knows nothing of what the document means: every problem goes to the
 * caller's diagnostics hook, and the caller's key tables read the tree.
 *
 * The nodes live in an arena and go all at once. A long sequence under the
 * root mapping can be streamed instead: each item is handed to a hook as
 * soon as it is read, and its nodes are freed before the next is read, so
 * a file of 10,000 environments never stands in memory as a whole tree.
 *
 * Named yamltree, not yaml: <yaml.h> is libyaml's.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum YamlKind {
        YAML_KIND_SCALAR,
        YAML_KIND_MAPPING,
        YAML_KIND_SEQUENCE,
        _YAML_KIND_MAX,
        _YAML_KIND_INVALID = -EINVAL,
} YamlKind;

typedef struct YamlNode YamlNode;
struct YamlNode {
        char *value;      /* SCALAR, NUL-terminated */
        YamlNode **items; /* MAPPING: key, value, key, value...; SEQUENCE: items */
        size_t n_items;
        unsigned line, column; /* from 1 */
        unsigned start, end;   /* SCALAR: byte offsets of its text in the file */
        YamlKind kind;
        bool plain; /* SCALAR written without quotes */
};

typedef struct YamlHooks {
        void *userdata;
        /* A problem at LINE:COLUMN (from 1; 0:0 is the whole file). */
        void (*diag)(void *userdata, unsigned line, unsigned column, const char *message);
        /* Before the value of each key KEY of the root mapping: whether to
         * stream it, when it is a sequence (SEQUENCE says whether it is).
         * May be NULL: nothing is streamed. */
        bool (*stream)(void *userdata, const YamlNode *key, bool sequence);
        /* A value of the root mapping that was not streamed, once read. */
        void (*value)(void *userdata, const YamlNode *key, const YamlNode *value);
        /* An item of the streamed sequence (the INDEXth); its nodes are freed
         * when this returns. */
        void (*item)(void *userdata, const YamlNode *item, size_t index);
        /* The streamed sequence ended after N items; SEQUENCE is its node,
         * which stays in the tree without items. */
        void (*end)(void *userdata, const YamlNode *sequence, size_t n);
} YamlHooks;

typedef struct YamlTree YamlTree;

/* A tree to be read from the SIZE bytes at TEXT (kept, not copied), or,
 * with TEXT NULL, from FD as it is parsed (FD is the caller's and must stay
 * open while the tree lives). Either is refused past MAX_SIZE bytes. */
int yaml_tree_new(
        const char *text, size_t size, int fd, size_t max_size, const YamlHooks *hooks, YamlTree **ret);
YamlTree *yaml_tree_free(YamlTree *t);

/* Parses the document: *ret_root is its root node, or NULL for an empty
 * file. -EINVAL after a problem was reported, -ENOMEM. */
int yaml_tree_parse(YamlTree *t, const YamlNode **ret_root);

/* Where byte OFFSET of scalar NODE's value was written in the file: quotes,
 * escapes, block indicators and folded lines accounted for. The node's own
 * position when that cannot be told. */
void yaml_tree_position(
        YamlTree *t, const YamlNode *node, size_t offset, unsigned *ret_line, unsigned *ret_column);

/* "a scalar", "a mapping", "a list": for messages. */
const char *yaml_kind_to_string(YamlKind k);
