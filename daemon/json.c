/* SPDX-License-Identifier: MIT */
/*
 * The JSON reader and writer. The reader's tree is built node by node from
 * yajl's callbacks: every node goes on one list, newest first, so the tree
 * is freed by walking that list, and a streamed member (the newest nodes,
 * since a member's nodes come after it in the text) is freed by walking
 * the list down to it. yajl checks the syntax and UTF-8 and refuses most
 * trailing garbage; the one kind it lets through, a string left open after
 * the value, and NUL bytes (which it skips inside comments) are refused
 * here.
 *
 * With WIPE, the tree's strings, the pending key and yajl's own buffers (it
 * decodes escaped strings into one) are wiped before they are freed, through
 * wiping allocation functions: a token answer holds a bearer token. No copy
 * of the text is ever made.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "json.h"
#include "macro.h"
#include "utf8.h"

/* ---- wiped memory ---- */

static void free_wiped(void *p, size_t size) {
        if (!p)
                return;
        explicit_bzero(p, size);
        free(p);
}

/* yajl's allocations carry their size in a header, so that they can be
 * wiped when yajl frees them. */
typedef union WipeHeader {
        size_t size;
        max_align_t align;
} WipeHeader;

static void *wipe_malloc(void *ctx, size_t size) {
        WipeHeader *h;

        if (size > SIZE_MAX - sizeof(WipeHeader))
                return NULL;
        h = malloc(sizeof(WipeHeader) + size);
        if (!h)
                return NULL;
        h->size = size;
        return h + 1;
}

static void wipe_free(void *ctx, void *p) {
        WipeHeader *h;

        if (!p)
                return;
        h = (WipeHeader *) p - 1;
        free_wiped(h, sizeof(WipeHeader) + h->size);
}

static void *wipe_realloc(void *ctx, void *p, size_t size) {
        WipeHeader *h;
        void *n;

        if (!p)
                return wipe_malloc(ctx, size);
        /* Never realloc(): it could leave the old bytes behind unwiped. */
        n = wipe_malloc(ctx, size);
        if (!n)
                return NULL;
        h = (WipeHeader *) p - 1;
        memcpy(n, p, h->size < size ? h->size : size);
        wipe_free(ctx, p);
        return n;
}

/* ---- the tree ---- */

typedef struct Parser {
        JsonDoc doc;
        const JsonOptions *options;
        JsonNode *open;    /* the innermost open container that is kept */
        unsigned depth;    /* containers open and kept */
        uint64_t skipping; /* containers open inside one too deep to keep */
        char *key;         /* a member name waiting for its value */
        size_t key_len;
        yajl_handle handle;
        size_t end; /* where the top value ended in the text ... */
        bool ended; /* ... if it ended before yajl_complete_parse() */
        bool too_deep;
        JsonNode *stream; /* the streamed object, while it is open */
        bool streamed;    /* it was found */
        int error;
} Parser;

static char *memdup_nul(const void *p, size_t size) {
        char *s;

        if (size == SIZE_MAX)
                return NULL;
        s = malloc(size + 1);
        if (!s)
                return NULL;
        memcpy(s, p, size);
        s[size] = 0;
        return s;
}

static void node_free(JsonNode *n, bool wipe) {
        if (wipe) {
                free_wiped(n->key, n->key_len + 1);
                free_wiped(n->text, n->text_len + 1);
        } else {
                free(n->key);
                free(n->text);
        }
        free(n);
}

/* Frees the newest nodes, down to and including LAST. */
static void nodes_free_to(JsonDoc *d, const JsonNode *last) {
        while (d->nodes) {
                JsonNode *n = d->nodes;
                d->nodes = n->link;
                node_free(n, d->wipe);
                if (n == last)
                        return;
        }
}

void json_doc_done(JsonDoc *d) {
        nodes_free_to(d, NULL);
        *d = (JsonDoc) {};
}

static void parser_drop_key(Parser *p) {
        if (p->doc.wipe)
                free_wiped(p->key, p->key_len + 1);
        else
                free(p->key);
        p->key = NULL;
        p->key_len = 0;
}

/* Notes where the top value ended: inside a callback, yajl has consumed
 * exactly the bytes up to the end of the current token. */
static void parser_mark_end(Parser *p) {
        if (!p->handle)
                return; /* in yajl_complete_parse(): a number at the very end */
        p->end = yajl_get_bytes_consumed(p->handle);
        p->ended = true;
}

/* Whether a new container at the top level's member KEY is the object to stream. */
static bool parser_is_stream(Parser *p, JsonType type) {
        const JsonOptions *o = p->options;

        return o->stream && !p->streamed && type == JSON_OBJECT && p->open && p->open == p->doc.root &&
               p->open->type == JSON_OBJECT && p->key && strcmp(p->key, o->stream_key) == 0;
}

/* A member of the streamed object is complete: hand it over, then free it. */
static int parser_member_done(Parser *p, JsonNode *member) {
        int r = p->options->stream(member, p->options->userdata);

        nodes_free_to(&p->doc, member);
        p->stream->first = p->stream->last = NULL;
        if (r < 0) {
                p->error = r;
                return 0; /* cancels the parse */
        }
        return 1;
}

static int parser_add(Parser *p, JsonType type, bool boolean, const void *text, size_t len) {
        bool container = type == JSON_OBJECT || type == JSON_ARRAY;
        JsonNode *n;

        if (container && p->skipping == 0 && p->depth >= p->options->max_depth &&
            p->options->deep_is_error) {
                p->too_deep = true;
                return 0; /* cancels the parse */
        }
        if (p->skipping > 0 || (container && p->depth >= p->options->max_depth)) {
                /* Too deep to matter: drop it, counting containers so that the end
                 * of the outermost dropped one is recognised. */
                if (container)
                        p->skipping++;
                parser_drop_key(p);
                return 1;
        }

        n = calloc(1, sizeof(JsonNode));
        if (!n)
                goto oom;
        n->link = p->doc.nodes;
        p->doc.nodes = n;
        n->type = type;
        n->boolean = boolean;
        if (text) {
                n->text = memdup_nul(text, len);
                if (!n->text)
                        goto oom;
                n->text_len = len;
        }
        if (container && parser_is_stream(p, type)) {
                p->stream = n;
                p->streamed = true;
        }
        n->key = TAKE_PTR(p->key);
        n->key_len = p->key_len;
        p->key_len = 0;

        if (p->open) {
                n->parent = p->open;
                if (p->open->last)
                        p->open->last->next = n;
                else
                        p->open->first = n;
                p->open->last = n;
        } else {
                p->doc.root = n; /* yajl allows one value at the top, not several */
                if (!container)
                        parser_mark_end(p);
        }

        if (container) {
                p->open = n;
                p->depth++;
        } else if (p->stream && n->parent == p->stream)
                return parser_member_done(p, n);
        return 1;

oom:
        p->error = -ENOMEM;
        return 0;
}

static int on_null(void *ctx) {
        return parser_add(ctx, JSON_NULL, false, NULL, 0);
}

static int on_boolean(void *ctx, int b) {
        return parser_add(ctx, JSON_BOOLEAN, b, NULL, 0);
}

static int on_number(void *ctx, const char *s, size_t len) {
        /* As written: huge numbers are no error, and the readers decide. */
        return parser_add(ctx, JSON_NUMBER, false, s, len);
}

static int on_string(void *ctx, const unsigned char *s, size_t len) {
        return parser_add(ctx, JSON_STRING, false, s, len);
}

static int on_start_map(void *ctx) {
        return parser_add(ctx, JSON_OBJECT, false, NULL, 0);
}

static int on_start_array(void *ctx) {
        return parser_add(ctx, JSON_ARRAY, false, NULL, 0);
}

static int on_end(void *ctx) {
        Parser *p = ctx;
        JsonNode *closed;

        if (p->skipping > 0) {
                p->skipping--;
                return 1;
        }
        closed = p->open;
        if (!closed)
                return 1;
        p->open = closed->parent;
        p->depth--;
        if (!p->open)
                parser_mark_end(p);
        if (closed == p->stream)
                p->stream = NULL;
        else if (p->stream && closed->parent == p->stream)
                return parser_member_done(p, closed);
        return 1;
}

static int on_key(void *ctx, const unsigned char *key, size_t len) {
        Parser *p = ctx;

        if (p->skipping > 0)
                return 1;
        parser_drop_key(p);
        p->key = memdup_nul(key, len);
        if (!p->key) {
                p->error = -ENOMEM;
                return 0;
        }
        p->key_len = len;
        return 1;
}

static const yajl_callbacks callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_number = on_number,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
};

/* Fills *E for byte OFFSET of TEXT: line and column counted from 1, in bytes. */
static int json_refuse(const char *text, size_t offset, const char *what, JsonError *e) {
        unsigned line = 1, column = 1;

        if (!e)
                return -EBADMSG;
        for (size_t i = 0; i < offset; i++)
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        *e = (JsonError) { .offset = offset, .line = line, .column = column };
        snprintf(e->message, sizeof(e->message), "%s", what);
        return -EBADMSG;
}

/* yajl's words for its error: "parse error: premature EOF\n" gives "premature EOF". */
static int json_refuse_yajl(yajl_handle h, const char *text, size_t offset, JsonError *e) {
        unsigned char *m = yajl_get_error(h, /* verbose= */ 0, NULL, 0);
        char *what;
        int r;

        if (!m)
                return -ENOMEM;
        what = strstr((char *) m, ": ");
        what = what ? what + 2 : (char *) m;
        what[strcspn(what, "\n")] = 0;
        r = json_refuse(text, offset, what, e);
        yajl_free_error(h, m);
        return r;
}

/* The first byte from I on that is neither whitespace nor, with COMMENTS,
 * part of a whole comment; SIZE when there is none. */
static size_t skip_blank(const char *text, size_t i, size_t size, bool comments) {
        while (i < size) {
                if (strchr(" \t\r\n", text[i]))
                        i++;
                else if (comments && i + 1 < size && text[i] == '/' && text[i + 1] == '/') {
                        const char *nl = memchr(text + i, '\n', size - i);
                        i = nl ? (size_t) (nl - text) + 1 : size;
                } else if (comments && i + 1 < size && text[i] == '/' && text[i + 1] == '*') {
                        const char *end = memmem(text + i + 2, size - i - 2, "*/", 2);
                        if (!end)
                                return i;
                        i = (size_t) (end - text) + 2;
                } else
                        return i;
        }
        return size;
}

/* Runs yajl over the text after SKIP bytes; 0, or why it was refused (in *RETERR). */
static int parser_run(Parser *p, const char *text, size_t skip, size_t size, JsonError *reterr) {
        yajl_alloc_funcs wiping = { .malloc = wipe_malloc, .realloc = wipe_realloc, .free = wipe_free };
        const char *body = text + skip;
        size_t n = size - skip, offset = size;
        yajl_status s;
        int r = 0;

        p->handle = yajl_alloc(&callbacks, p->doc.wipe ? &wiping : NULL, p);
        if (!p->handle)
                return -ENOMEM;
        /* Strict JSON, one value, UTF-8 checked; comments as asked. */
        (void) yajl_config(p->handle, yajl_allow_comments, p->options->comments ? 1 : 0);
        (void) yajl_config(p->handle, yajl_dont_validate_strings, 0);
        (void) yajl_config(p->handle, yajl_allow_trailing_garbage, 0);
        (void) yajl_config(p->handle, yajl_allow_multiple_values, 0);
        (void) yajl_config(p->handle, yajl_allow_partial_values, 0);

        s = yajl_parse(p->handle, (const unsigned char *) body, n);
        if (s != yajl_status_ok)
                offset = skip + yajl_get_bytes_consumed(p->handle);
        else {
                yajl_handle h = TAKE_PTR(p->handle); /* numbers at the very end come from here */
                s = yajl_complete_parse(h);
                p->handle = h;
        }
        if (p->error < 0)
                r = p->error;
        else if (p->too_deep)
                r = json_refuse(text, offset, "nested too deeply", reterr);
        else if (s != yajl_status_ok)
                r = json_refuse_yajl(p->handle, text, offset, reterr);
        else if (p->ended) {
                /* yajl 2.1.0 takes a string left open after the value for a
                 * token still to come, and so accepts '{}"…': the rest must be
                 * whitespace (and comments, where they are allowed). */
                size_t i = skip_blank(text, skip + p->end, size, p->options->comments);
                if (i < size)
                        r = json_refuse(text, i, "trailing garbage", reterr);
        }
        yajl_free(p->handle);
        p->handle = NULL;
        if (r == 0 && (!p->doc.root || p->open || p->skipping > 0))
                r = json_refuse(text, size, "premature EOF", reterr);
        return r;
}

int json_parse(const char *text, size_t size, const JsonOptions *options, JsonDoc *ret, JsonError *reterr) {
        Parser p = { .options = options, .doc.wipe = options->wipe };
        const char *nul;
        size_t skip = 0;
        int r;

        assert(ret);
        if (!text)
                size = 0;
        if (size == 0)
                return json_refuse("", 0, "premature EOF", reterr);
        /* yajl skips comments without looking inside, so look first. */
        nul = memchr(text, 0, size);
        if (nul)
                return json_refuse(text, (size_t) (nul - text), "NUL byte", reterr);
        /* RFC 8259 section 8.1: a parser may ignore a byte order mark rather than fail. */
        if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
                skip = 3;

        r = parser_run(&p, text, skip, size, reterr);
        parser_drop_key(&p);
        if (r < 0) {
                json_doc_done(&p.doc);
                return r;
        }
        *ret = p.doc;
        return 0;
}

/* ---- looking things up ---- */

const JsonNode *json_get(const JsonNode *o, const char *key) {
        size_t n = strlen(key);

        if (!o || o->type != JSON_OBJECT)
                return NULL;
        for (const JsonNode *c = o->first; c; c = c->next)
                if (c->key_len == n && memcmp(c->key, key, n) == 0)
                        return c;
        return NULL;
}

const char *json_text(const JsonNode *v, bool number_too) {
        if (!v || !(v->type == JSON_STRING || (number_too && v->type == JSON_NUMBER)))
                return NULL;
        if (strlen(v->text) != v->text_len)
                return NULL;
        return v->text;
}

int json_integer(const JsonNode *v, int64_t *ret) {
        const char *p;
        uint64_t u = 0, limit;
        bool neg;

        if (!v || v->type != JSON_NUMBER)
                return -EINVAL;
        p = v->text;
        neg = *p == '-';
        p += neg;
        if (!*p || strspn(p, "0123456789") != strlen(p))
                return -EINVAL; /* a fraction or an exponent */
        limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
        for (; *p; p++) {
                unsigned d = (unsigned) (*p - '0');
                if (u > (limit - d) / 10)
                        return -ERANGE;
                u = u * 10 + d;
        }
        *ret = neg ? (int64_t) (0 - u) : (int64_t) u;
        return 0;
}

/* ---- writing ---- */

static void writer_status(JsonWriter *w, yajl_gen_status st) {
        if (w->r >= 0 && st != yajl_gen_status_ok)
                w->r = -EINVAL; /* only a wrong call sequence (our bug) fails */
}

int json_writer_init(JsonWriter *w, bool beautify, yajl_print_t print, void *userdata) {
        *w = (JsonWriter) {};
        w->gen = yajl_gen_alloc(NULL);
        if (!w->gen)
                return -ENOMEM;
        if ((beautify && (!yajl_gen_config(w->gen, yajl_gen_beautify, 1) ||
                          !yajl_gen_config(w->gen, yajl_gen_indent_string, "  "))) ||
            (print && !yajl_gen_config(w->gen, yajl_gen_print_callback, print, userdata))) {
                json_writer_done(w);
                return -ENOMEM;
        }
        return 0;
}

void json_writer_done(JsonWriter *w) {
        if (w->gen)
                yajl_gen_free(w->gen);
        *w = (JsonWriter) {};
}

int json_writer_error(const JsonWriter *w) {
        return w->r;
}

void json_writer_fail(JsonWriter *w, int r) {
        if (w->r >= 0)
                w->r = r;
}

int json_writer_text(JsonWriter *w, const char **ret, size_t *ret_size) {
        const unsigned char *buf;
        size_t len;

        if (w->r < 0)
                return w->r;
        if (yajl_gen_get_buf(w->gen, &buf, &len) != yajl_gen_status_ok)
                return -EINVAL;
        *ret = (const char *) buf;
        *ret_size = len;
        return 0;
}

void json_put_open(JsonWriter *w) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_map_open(w->gen));
}

void json_put_close(JsonWriter *w) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_map_close(w->gen));
}

void json_put_array_open(JsonWriter *w) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_array_open(w->gen));
}

void json_put_array_close(JsonWriter *w) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_array_close(w->gen));
}

/* Strings come from Zuora and operators: bytes that are not UTF-8 become
 * U+FFFD, since yajl would write them as they are, and a reader that checks
 * (ours does) would refuse the text. */
void json_put_string(JsonWriter *w, const char *s) {
        _cleanup_free_ char *fixed = NULL;
        size_t n;

        if (w->r < 0)
                return;
        n = strlen(s);
        if (!utf8_is_valid_n(s, n)) {
                fixed = utf8_sanitize(s, n, &n);
                if (!fixed) {
                        w->r = -ENOMEM;
                        return;
                }
        }
        writer_status(w, yajl_gen_string(w->gen, (const unsigned char *) (fixed ?: s), n));
}

void json_put_string_or_null(JsonWriter *w, const char *s) {
        if (s)
                json_put_string(w, s);
        else
                json_put_null(w);
}

void json_put_null(JsonWriter *w) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_null(w->gen));
}

void json_put_bool(JsonWriter *w, bool b) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_bool(w->gen, b));
}

void json_put_int(JsonWriter *w, long long i) {
        if (w->r >= 0)
                writer_status(w, yajl_gen_integer(w->gen, i));
}

void json_put_fixed(JsonWriter *w, long long value, unsigned decimals) {
        unsigned long long unit = 1,
                           a = value < 0 ? 0ULL - (unsigned long long) value : (unsigned long long) value;
        char buf[48];
        int n;

        assert(decimals > 0 && decimals <= 18);
        for (unsigned i = 0; i < decimals; i++)
                unit *= 10;
        n = snprintf(
                buf, sizeof(buf), "%s%llu.%0*llu", value < 0 ? "-" : "", a / unit, (int) decimals, a % unit);
        if (w->r >= 0)
                writer_status(w, yajl_gen_number(w->gen, buf, (size_t) n));
}
