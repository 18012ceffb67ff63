/* SPDX-License-Identifier: MIT */
/*
 * JSON, read and written, for every module that speaks it (Zuora's answers,
 * state.json, the commands' --json output). Pure.
 *
 * Reading builds a small tree of our own through yajl's event parser, not
 * yajl_tree_parse(), which needs a NUL-terminated copy, frees its tree
 * recursively (a deep but well-formed text would overflow the stack) and in
 * 2.1.0 leaks on some errors (CVE-2023-33460). The tree is built and freed
 * without recursion, nesting is bounded, and one object's members can be
 * streamed: each is handed over as soon as it is complete and freed after,
 * so a large state.json never stands in memory as a whole tree.
 *
 * Writing goes through yajl's generator with a sticky error, and strings
 * that are not UTF-8 are repaired (U+FFFD) rather than written as they are.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>

typedef enum JsonType {
        JSON_NULL,
        JSON_BOOLEAN,
        JSON_NUMBER,
        JSON_STRING,
        JSON_OBJECT,
        JSON_ARRAY,
} JsonType;

typedef struct JsonNode JsonNode;
struct JsonNode {
        JsonType type;
        bool boolean;   /* BOOLEAN */
        char *key;      /* the member name when the parent is an object; NUL-terminated */
        size_t key_len; /* it may hold NULs ("\u0000"): KEY as a C string ends at the first */
        char *text;     /* a string's value, or a number as written; NUL-terminated */
        size_t text_len;
        JsonNode *parent;
        JsonNode *first, *last; /* members or elements, in document order */
        JsonNode *next;         /* the next sibling */
        JsonNode *link;         /* the node allocated before this one: freeing needs no recursion */
};

/* A member of the streamed object, complete. It and its children are freed
 * when this returns; a negative return stops the parse and is returned. */
typedef int (*JsonMemberFunc)(const JsonNode *member, void *userdata);

typedef struct JsonOptions {
        unsigned max_depth; /* containers nested deeper ... */
        bool deep_is_error; /* ... fail the parse ("nested too deeply"), or are left out */
        bool comments;      /* allow C and C++ comments (yajl_allow_comments) */
        bool wipe;          /* every buffer that held a byte of the text is wiped when freed */
        /* Streams the members of the first top-level member whose key, as a C
         * string, is STREAM_KEY and whose value is an object: that object
         * stays in the tree, empty. */
        const char *stream_key;
        JsonMemberFunc stream;
        void *userdata;
} JsonOptions;

typedef struct JsonDoc {
        JsonNode *root;
        JsonNode *nodes; /* every node, newest first */
        bool wipe;
} JsonDoc;

/* Why a text was refused: where (offset, and line and column from 1,
 * counted in bytes) and what ("premature EOF", "NUL byte"). */
typedef struct JsonError {
        size_t offset;
        unsigned line, column;
        char message[96];
} JsonError;

/* Parses the SIZE bytes at TEXT as one JSON value (surrounding whitespace
 * aside; a leading byte order mark is skipped, RFC 8259 section 8.1).
 * -EBADMSG with *reterr filled (when not NULL) for anything else: empty,
 * truncated, trailing garbage, invalid UTF-8, a NUL byte anywhere (even in a
 * comment). */
int json_parse(const char *text, size_t size, const JsonOptions *options, JsonDoc *ret, JsonError *reterr);

/* Frees the tree; the doc is empty after. */
void json_doc_done(JsonDoc *d);

/* The first member of object O whose key is exactly KEY (byte for byte);
 * NULL when O is not an object or has none. */
const JsonNode *json_get(const JsonNode *o, const char *key);

/* The text of a string (or, with NUMBER_TOO, of a number), or NULL. A
 * string holding U+0000 is no usable text. */
const char *json_text(const JsonNode *v, bool number_too);

/* A number written as an integer (no fraction, no exponent) that fits in
 * 64 bits. -EINVAL for anything else. */
int json_integer(const JsonNode *v, int64_t *ret);

/* ---- writing ---- */

/* A generator with a sticky error, as ferror() for stdio: once a call fails
 * the rest do nothing, and json_writer_error() says what went wrong. */
typedef struct JsonWriter {
        yajl_gen gen;
        int r;
} JsonWriter;

/* BEAUTIFY: indented with two spaces. PRINT (may be NULL: yajl's own
 * buffer, see json_writer_text()) receives the text as it is generated. */
int json_writer_init(JsonWriter *w, bool beautify, yajl_print_t print, void *userdata);
void json_writer_done(JsonWriter *w);

/* 0, or the first error. */
int json_writer_error(const JsonWriter *w);

/* Fails the writer with R (a value that cannot be written). */
void json_writer_fail(JsonWriter *w, int r);

/* The text so far, when PRINT was NULL. */
int json_writer_text(JsonWriter *w, const char **ret, size_t *ret_size);

void json_put_open(JsonWriter *w);  /* { */
void json_put_close(JsonWriter *w); /* } */
void json_put_array_open(JsonWriter *w);
void json_put_array_close(JsonWriter *w);
void json_put_string(JsonWriter *w, const char *s); /* also a key */
void json_put_string_or_null(JsonWriter *w, const char *s);
void json_put_null(JsonWriter *w);
void json_put_bool(JsonWriter *w, bool b);
void json_put_int(JsonWriter *w, long long i);
/* VALUE / 10^DECIMALS, written with DECIMALS digits after the point: -300.125. */
void json_put_fixed(JsonWriter *w, long long value, unsigned decimals);
