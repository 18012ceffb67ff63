/* SPDX-License-Identifier: MIT */
/*
 * state.json, read and written. The file looks like this (every time an
 * RFC 3339 UTC string, written "2026-12-06T02:00:00Z"; null and an absent
 * key both mean "unset"):
 *
 *   {"version": 1, "intent_log": {"id": "<16 hex digits>", "seq": N},
 *    "environments": {"uat": {
 *       "id": "…", "since": T, "last_slot": T, "last_submitted": T,
 *       "intent": {"slot": T!, "track_id": "…", "sent_at": T} | null,
 *       "deferred_until": T, "zuora_last_refresh": T, "zuora_next_refresh": T,
 *       "job": {"id": "…"!, "polling_url": "…"!, "status": "…", "progress": 45,
 *               "submitted_at": T!, "slot": T} | null,
 *       "last_job": {"id": "…", "status": "…", "message": "…", "ended_at": T!,
 *                    "slot": T} | null}}}
 *
 * Keys marked ! must be present and not null. Environments keep the order
 * of State.envs. The loader ignores keys it does not know, at any level, and
 * refuses everything else that is not as above with -EBADMSG and a message
 * naming the place ("environments.uat.last_slot: not a time", "line 3,
 * column 7: not JSON: premature EOF"): the file is written only by us,
 * through an atomic rename, so a file that does not fit is damaged or not
 * ours, and the caller moves it aside and starts clean rather than act on a
 * guess. Times are accepted in any form tz_parse_iso8601() reads and are
 * written back in the canonical one; duplicate keys are refused (RFC 8259
 * leaves their meaning open), and so are strings that are not UTF-8 once
 * their escapes are decoded (a lone "\udc00"; yajl only checks the raw
 * bytes' shape). Comments are tolerated, as yajl_tree_parse() allows them.
 * state_format() checks the same invariants, so it never writes a file that
 * state_parse() refuses, and a file it wrote reads back to the same text.
 *
 * Parsing is two passes over the text: yajl's event parser first checks the
 * syntax, bounds the nesting, finds the line and column of an error and
 * notes where each environment's value lies; then yajl_tree_parse() builds
 * the trees that are walked here: one of the top level without the
 * environments, then one per environment, dropped once read. (A tree of the
 * whole file takes four to five times its size: 25 MB at 10,000
 * environments with 1,000 jobs in flight.) The tree parser is never handed
 * text that fails, so its error paths (which leak in some yajl versions,
 * and give no position) are not taken, and its recursive free never meets a
 * deep tree.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "intentlog.h"
#include "macro.h"
#include "state.h"
#include "tz.h"

#define STATE_VERSION 1
#define STATE_SIZE_MAX ((size_t) 16 * 1024 * 1024)
#define STATE_DEPTH_MAX 64 /* ours is 4 deep; the rest is room for unknown keys */
#define STATE_TEMP_NAME "." STATE_FILE_NAME ".XXXXXX"
#define STATE_ASIDE_MAX 1000

DEFINE_TRIVIAL_CLEANUP_FUNC(State *, state_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(StateJob *, state_job_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(StateLastJob *, state_last_job_free);

static void yajl_tree_freep(yajl_val *v) {
        if (*v)
                yajl_tree_free(*v);
}

static void yajl_freep(yajl_handle *h) {
        if (*h)
                yajl_free(*h);
}

static void yajl_gen_freep(yajl_gen *g) {
        if (*g)
                yajl_gen_free(*g);
}

static void unlink_and_freep(char **p) {
        if (*p) {
                (void) unlink(*p);
                free(*p);
        }
}

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* ---- objects ---- */

State *state_new(void) {
        return calloc(1, sizeof(State));
}

StateJob *state_job_free(StateJob *j) {
        if (!j)
                return NULL;
        free(j->id);
        free(j->polling_url);
        free(j->status);
        free(j);
        return NULL;
}

StateLastJob *state_last_job_free(StateLastJob *j) {
        if (!j)
                return NULL;
        free(j->id);
        free(j->status);
        free(j->message);
        free(j);
        return NULL;
}

static void state_env_init(StateEnv *e) {
        *e = (StateEnv) {
                .since = STATE_TIME_UNSET,
                .last_slot = STATE_TIME_UNSET,
                .last_submitted = STATE_TIME_UNSET,
                .intent_slot = STATE_TIME_UNSET,
                .intent_sent_at = STATE_TIME_UNSET,
                .deferred_until = STATE_TIME_UNSET,
                .zuora_last_refresh = STATE_TIME_UNSET,
                .zuora_next_refresh = STATE_TIME_UNSET,
        };
}

static void state_env_done(StateEnv *e) {
        free(e->name); /* and the id, which is in the same block */
        free(e->intent_track_id);
        state_job_free(e->job);
        state_last_job_free(e->last_job);
}

State *state_free(State *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_envs; i++)
                state_env_done(&s->envs[i]);
        free(s->envs);
        free(s->index);
        free(s);
        return NULL;
}

/* ---- the index by name ---- */

/* FNV-1a: names are short and chosen by operators, not by an attacker. */
static size_t name_hash(const char *name) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                h = (h ^ *p) * UINT64_C(1099511628211);
        return (size_t) h;
}

static void index_drop(State *s) {
        s->index = mfree(s->index);
        s->index_size = s->n_indexed = 0;
}

/* Adds envs[I] unless an earlier entry has its name: the first one wins, as
 * a linear search would find it. */
static void index_add(State *s, size_t i) {
        const char *name = s->envs[i].name;

        if (!name)
                return;
        for (size_t h = name_hash(name) & (s->index_size - 1);; h = (h + 1) & (s->index_size - 1)) {
                size_t k = s->index[h];
                if (k == 0) {
                        s->index[h] = (uint32_t) (i + 1);
                        return;
                }
                if (streq_ptr(s->envs[k - 1].name, name))
                        return;
        }
}

/* Brings the index up to N_ENVS entries, at most half full. */
static int index_update(State *s) {
        if (s->n_indexed == s->n_envs && s->index)
                return 0;
        if (s->n_envs >= UINT32_MAX / 2)
                return -E2BIG; /* the entries are 32 bits */
        if (!s->index || s->n_envs * 2 > s->index_size) {
                size_t size = 64;
                while (size < s->n_envs * 2)
                        size *= 2;
                uint32_t *n = calloc(size, sizeof(uint32_t));
                if (!n)
                        return -ENOMEM;
                free(s->index);
                s->index = n;
                s->index_size = size;
                s->n_indexed = 0;
        }
        for (; s->n_indexed < s->n_envs; s->n_indexed++)
                index_add(s, s->n_indexed);
        return 0;
}

static StateEnv *state_find_linear(State *s, const char *name) {
        for (size_t i = 0; i < s->n_envs; i++)
                if (streq_ptr(s->envs[i].name, name))
                        return &s->envs[i];
        return NULL;
}

StateEnv *state_find(State *s, const char *name) {
        if (!s || !name)
                return NULL;
        if (index_update(s) < 0)
                return state_find_linear(s, name); /* out of memory (or entries): slow, still right */
        for (size_t h = name_hash(name) & (s->index_size - 1);; h = (h + 1) & (s->index_size - 1)) {
                size_t k = s->index[h];
                if (k == 0)
                        return NULL;
                if (streq_ptr(s->envs[k - 1].name, name))
                        return &s->envs[k - 1];
        }
}

/* NAME and ID (may be NULL) in one block, "name\0id\0": one allocation an
 * entry instead of two, which at 10,000 entries is 320 KB of malloc's
 * headers and rounding. *RET_NAME owns it; *RET_ID points into it. */
static int name_id_dup(const char *name, const char *id, char **ret_name, char **ret_id) {
        size_t nl = strlen(name) + 1, il = id ? strlen(id) + 1 : 0;
        char *b = malloc(nl + il);

        if (!b)
                return -ENOMEM;
        memcpy(b, name, nl);
        if (id)
                memcpy(b + nl, id, il);
        *ret_name = b;
        *ret_id = id ? b + nl : NULL;
        return 0;
}

int state_get(State *s, const char *name, const char *id, StateEnv **ret) {
        _cleanup_free_ char *n = NULL;
        char *i = NULL;
        StateEnv *e;

        assert(s);
        assert(name);

        e = state_find(s, name);
        if (e && streq_ptr(e->id, id)) {
                if (ret)
                        *ret = e;
                return 0;
        }

        if (name_id_dup(name, id, &n, &i) < 0)
                return -ENOMEM;

        if (e)
                /* Same name, other Test Environment: nothing we knew applies to it. */
                state_env_done(e);
        else {
                if (GROW(s->envs, s->n_allocated, s->n_envs, 16) < 0)
                        return -ENOMEM;
                e = &s->envs[s->n_envs++];
        }
        state_env_init(e);
        e->name = TAKE_PTR(n);
        e->id = i;
        if (ret)
                *ret = e;
        return 0;
}

void state_prune(State *s, const char *const *names, size_t n) {
        size_t k = 0;

        if (!s)
                return;
        for (size_t i = 0; i < s->n_envs; i++) {
                StateEnv *e = &s->envs[i];
                bool keep = e->job != NULL; /* a job in flight is still ours to follow */

                for (size_t j = 0; !keep && j < n; j++)
                        keep = streq_ptr(e->name, names[j]);
                if (!keep) {
                        state_env_done(e);
                        continue;
                }
                if (k != i)
                        s->envs[k] = *e;
                k++;
        }
        s->n_envs = k;
        index_drop(s); /* entries moved */
}

/* ---- UTF-8 ---- */

/* Length of the UTF-8 sequence (RFC 3629) at P, N bytes available; 0 if there is none. */
static size_t utf8_char_len(const unsigned char *p, size_t n) {
        unsigned char lo = 0x80, hi = 0xBF;
        size_t len;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xC2 && p[0] <= 0xDF)
                len = 2;
        else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
                len = 3;
                if (p[0] == 0xE0)
                        lo = 0xA0; /* overlong */
                else if (p[0] == 0xED)
                        hi = 0x9F; /* surrogates */
        } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
                len = 4;
                if (p[0] == 0xF0)
                        lo = 0x90; /* overlong */
                else if (p[0] == 0xF4)
                        hi = 0x8F; /* beyond U+10FFFF */
        } else
                return 0;
        if (n < len || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
        return len;
}

static bool utf8_is_valid(const char *s) {
        size_t n = strlen(s);

        for (size_t i = 0, len; i < n; i += len) {
                len = utf8_char_len((const unsigned char *) s + i, n - i);
                if (len == 0)
                        return false;
        }
        return true;
}

/* ---- parsing ---- */

/* Refuses the file, saying why in *RETERR_MESSAGE. */
_printf_(2, 3) static int bad(char **reterr_message, const char *fmt, ...) {
        va_list ap;
        char *m;
        int r;

        if (!reterr_message)
                return -EBADMSG;
        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        *reterr_message = m;
        return -EBADMSG;
}

/* A syntax error at byte OFFSET of TEXT, as a line and column (both counted from 1, columns in bytes). */
static int bad_at(char **reterr_message, const char *text, size_t offset, const char *what) {
        unsigned line = 1, column = 1;

        for (size_t i = 0; i < offset; i++)
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        return bad(reterr_message, "line %u, column %u: not JSON: %s", line, column, what);
}

/* Where an environment's value lies in the text. */
typedef struct EnvSpan {
        char *name;         /* as yajl_tree_parse() keeps a key: up to a NUL */
        size_t start, end;  /* text[start] is '{', text[end - 1] its '}'; end 0: not an object */
} EnvSpan;

/* The members of the top level's (first) "environments" object, if it is one. */
typedef struct EnvIndex {
        EnvSpan *spans;
        size_t n, n_allocated;
        size_t open, close; /* just after its '{' and just after its '}' */
        bool found;
} EnvIndex;

static void env_index_done(EnvIndex *x) {
        for (size_t i = 0; i < x->n; i++)
                free(x->spans[i].name);
        free(x->spans);
}

typedef struct JsonCheck {
        yajl_handle handle;
        unsigned depth;
        bool too_deep;
        bool out_of_memory;
        EnvIndex *index;
        bool envs_next;     /* the top-level key just read is "environments" */
        bool in_envs;       /* between the braces of that object */
        bool member_next;   /* an environment's name was read, its value not yet */
} JsonCheck;

/* A value starts; OBJECT: it is an object (its '{' just read). */
static void json_check_on_value(JsonCheck *c, bool object) {
        size_t offset = yajl_get_bytes_consumed(c->handle);

        if (c->envs_next && object && !c->index->found) {
                c->index->found = c->in_envs = true;
                c->index->open = offset;
        } else if (c->in_envs && c->depth == 2 && c->member_next && object)
                c->index->spans[c->index->n - 1].start = offset - 1;
        if (c->depth == 1)
                c->envs_next = false;
        if (c->depth == 2)
                c->member_next = false;
}

static int json_check_on_open(JsonCheck *c, bool object) {
        json_check_on_value(c, object);
        if (++c->depth > STATE_DEPTH_MAX) {
                c->too_deep = true;
                return 0; /* cancels the parse */
        }
        return 1;
}

static int json_check_on_start_map(void *userdata) {
        return json_check_on_open(userdata, true);
}

static int json_check_on_start_array(void *userdata) {
        return json_check_on_open(userdata, false);
}

static int json_check_on_end_map(void *userdata) {
        JsonCheck *c = userdata;
        size_t offset = yajl_get_bytes_consumed(c->handle);

        c->depth--;
        if (c->in_envs && c->depth == 2 && c->index->spans[c->index->n - 1].start > 0)
                c->index->spans[c->index->n - 1].end = offset;
        else if (c->in_envs && c->depth == 1) {
                c->index->close = offset;
                c->in_envs = false;
        }
        return 1;
}

static int json_check_on_end_array(void *userdata) {
        JsonCheck *c = userdata;

        c->depth--;
        return 1;
}

static int json_check_on_scalar(void *userdata) {
        json_check_on_value(userdata, false);
        return 1;
}

static int json_check_on_boolean(void *userdata, int b) {
        return json_check_on_scalar(userdata);
}

static int json_check_on_number(void *userdata, const char *s, size_t len) {
        return json_check_on_scalar(userdata);
}

static int json_check_on_string(void *userdata, const unsigned char *s, size_t len) {
        return json_check_on_scalar(userdata);
}

static int json_check_on_map_key(void *userdata, const unsigned char *key, size_t len) {
        JsonCheck *c = userdata;
        EnvIndex *x = c->index;

        /* Compared up to a NUL, as yajl_tree_parse() keeps keys: "environments\u0000x" is the same key. */
        if (c->depth == 1)
                c->envs_next = strnlen((const char *) key, len) == strlen("environments") &&
                        memcmp(key, "environments", strlen("environments")) == 0;
        if (!c->in_envs || c->depth != 2)
                return 1;
        if (x->n == x->n_allocated) {
                size_t want = x->n_allocated ? x->n_allocated * 2 : 64;
                EnvSpan *spans = reallocarray(x->spans, want, sizeof(EnvSpan));
                if (!spans) {
                        c->out_of_memory = true;
                        return 0;
                }
                x->spans = spans;
                x->n_allocated = want;
        }
        /* A key is kept up to its first NUL, as yajl_tree_parse() keeps it. */
        x->spans[x->n] = (EnvSpan) { .name = strndup((const char *) key, len) };
        if (!x->spans[x->n].name) {
                c->out_of_memory = true;
                return 0;
        }
        x->n++;
        c->member_next = true;
        return 1;
}

/* The first pass: is TEXT one JSON value that yajl_tree_parse() will accept,
 * and not too deep? Notes where the environments lie in INDEX. */
static int json_check(const char *text, size_t size, EnvIndex *index, char **reterr_message) {
        static const yajl_callbacks callbacks = {
                .yajl_null = json_check_on_scalar,
                .yajl_boolean = json_check_on_boolean,
                .yajl_number = json_check_on_number,
                .yajl_string = json_check_on_string,
                .yajl_start_map = json_check_on_start_map,
                .yajl_map_key = json_check_on_map_key,
                .yajl_end_map = json_check_on_end_map,
                .yajl_start_array = json_check_on_start_array,
                .yajl_end_array = json_check_on_end_array,
        };
        _cleanup_(yajl_freep) yajl_handle h = NULL;
        JsonCheck c = { .index = index };
        yajl_status st;
        size_t offset = size;
        const char *nul;
        unsigned char *e;
        int r;

        /* yajl_tree_parse() reads up to the first NUL, and yajl skips comments without looking inside. */
        nul = memchr(text, 0, size);
        if (nul)
                return bad_at(reterr_message, text, nul - text, "NUL byte");

        h = c.handle = yajl_alloc(&callbacks, NULL, &c);
        if (!h)
                return -ENOMEM;
        (void) yajl_config(h, yajl_allow_comments, 1); /* as yajl_tree_parse() does */

        st = yajl_parse(h, (const unsigned char *) text, size);
        if (st != yajl_status_ok)
                offset = yajl_get_bytes_consumed(h);
        else
                st = yajl_complete_parse(h);
        if (st == yajl_status_ok)
                return 0;
        if (c.out_of_memory)
                return -ENOMEM;
        if (c.too_deep)
                return bad_at(reterr_message, text, offset, "nested too deeply");

        /* "parse error: premature EOF\n": keep what comes after the kind. */
        e = yajl_get_error(h, /* verbose= */ 0, NULL, 0);
        if (!e)
                return -ENOMEM;
        char *what = strstr((char *) e, ": ");
        what = what ? what + 2 : (char *) e;
        what[strcspn(what, "\n")] = 0;
        r = bad_at(reterr_message, text, offset, what);
        yajl_free_error(h, e);
        return r;
}

/* "environments.uat" + "job" → "environments.uat.job"; the top level has the empty prefix. */
#define PATH_FMT "%s%s%s"
#define PATH(prefix, key) (prefix), (*(prefix) ? "." : ""), (key)

/* The value of KEY in object OBJ, or NULL when it is absent or null. */
static int object_get(
                yajl_val obj, const char *prefix, const char *key, yajl_val *ret, char **reterr_message) {
        yajl_val found = NULL;
        bool seen = false;

        for (size_t i = 0; i < obj->u.object.len; i++) {
                if (strcmp(obj->u.object.keys[i], key) != 0)
                        continue;
                if (seen)
                        return bad(reterr_message, PATH_FMT ": duplicate key", PATH(prefix, key));
                seen = true;
                found = obj->u.object.values[i];
        }
        *ret = YAJL_IS_NULL(found) ? NULL : found;
        return 0;
}

static int get_object(
                yajl_val obj, const char *prefix, const char *key, yajl_val *ret, char **reterr_message) {
        yajl_val v;
        int r;

        r = object_get(obj, prefix, key, &v, reterr_message);
        if (r < 0)
                return r;
        if (v && !YAJL_IS_OBJECT(v))
                return bad(reterr_message, PATH_FMT ": not an object", PATH(prefix, key));
        *ret = v;
        return 0;
}

static int get_string(
                yajl_val obj,
                const char *prefix,
                const char *key,
                bool required,
                char **ret,
                char **reterr_message) {
        yajl_val v;
        char *s = NULL;
        int r;

        r = object_get(obj, prefix, key, &v, reterr_message);
        if (r < 0)
                return r;
        if (!v && required)
                return bad(reterr_message, PATH_FMT ": missing", PATH(prefix, key));
        if (v) {
                if (!YAJL_IS_STRING(v))
                        return bad(reterr_message, PATH_FMT ": not a string", PATH(prefix, key));
                if (!utf8_is_valid(v->u.string))
                        return bad(reterr_message, PATH_FMT ": not UTF-8", PATH(prefix, key));
                s = strdup(v->u.string);
                if (!s)
                        return -ENOMEM;
        }
        free(*ret);
        *ret = s;
        return 0;
}

static int get_time(
                yajl_val obj,
                const char *prefix,
                const char *key,
                bool required,
                int64_t *ret,
                char **reterr_message) {
        char buf[TZ_ISO_MAX];
        yajl_val v;
        int64_t t;
        int r;

        r = object_get(obj, prefix, key, &v, reterr_message);
        if (r < 0)
                return r;
        if (!v) {
                if (required)
                        return bad(reterr_message, PATH_FMT ": missing", PATH(prefix, key));
                *ret = STATE_TIME_UNSET;
                return 0;
        }
        /* Only times we can write back: "0000-01-01T00:00:00+01:00" reads, but is in year -1. */
        if (!YAJL_IS_STRING(v) || tz_parse_iso8601(v->u.string, &t) < 0 ||
            tz_format_utc(t, buf, sizeof(buf)) < 0)
                return bad(reterr_message, PATH_FMT ": not a time", PATH(prefix, key));
        *ret = t;
        return 0;
}

static int get_progress(yajl_val obj, const char *prefix, const char *key, int *ret, char **reterr_message) {
        yajl_val v;
        int r;

        r = object_get(obj, prefix, key, &v, reterr_message);
        if (r < 0)
                return r;
        if (!v) {
                *ret = -1;
                return 0;
        }
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > INT_MAX)
                return bad(reterr_message, PATH_FMT ": not a non-negative integer", PATH(prefix, key));
        *ret = (int) YAJL_GET_INTEGER(v);
        return 0;
}

static int parse_intent(yajl_val obj, const char *prefix, StateEnv *e, char **reterr_message) {
        _cleanup_free_ char *p = NULL;
        yajl_val v;
        int r;

        r = get_object(obj, prefix, "intent", &v, reterr_message);
        if (r < 0 || !v)
                return r;
        if (asprintf(&p, "%s.intent", prefix) < 0)
                return -ENOMEM;
        r = get_time(v, p, "slot", /* required= */ true, &e->intent_slot, reterr_message);
        if (r < 0)
                return r;
        r = get_string(v, p, "track_id", /* required= */ false, &e->intent_track_id, reterr_message);
        if (r < 0)
                return r;
        return get_time(v, p, "sent_at", /* required= */ false, &e->intent_sent_at, reterr_message);
}

static int parse_job(yajl_val obj, const char *prefix, StateJob **ret, char **reterr_message) {
        _cleanup_(state_job_freep) StateJob *j = NULL;
        _cleanup_free_ char *p = NULL;
        yajl_val v;
        int r;

        r = get_object(obj, prefix, "job", &v, reterr_message);
        if (r < 0 || !v)
                return r;
        if (asprintf(&p, "%s.job", prefix) < 0)
                return -ENOMEM;
        j = calloc(1, sizeof(StateJob));
        if (!j)
                return -ENOMEM;
        r = get_string(v, p, "id", /* required= */ true, &j->id, reterr_message);
        if (r < 0)
                return r;
        r = get_string(v, p, "polling_url", /* required= */ true, &j->polling_url, reterr_message);
        if (r < 0)
                return r;
        r = get_string(v, p, "status", /* required= */ false, &j->status, reterr_message);
        if (r < 0)
                return r;
        r = get_progress(v, p, "progress", &j->progress, reterr_message);
        if (r < 0)
                return r;
        r = get_time(v, p, "submitted_at", /* required= */ true, &j->submitted_at, reterr_message);
        if (r < 0)
                return r;
        r = get_time(v, p, "slot", /* required= */ false, &j->slot, reterr_message);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(j);
        return 0;
}

static int parse_last_job(yajl_val obj, const char *prefix, StateLastJob **ret, char **reterr_message) {
        _cleanup_(state_last_job_freep) StateLastJob *j = NULL;
        _cleanup_free_ char *p = NULL;
        yajl_val v;
        int r;

        r = get_object(obj, prefix, "last_job", &v, reterr_message);
        if (r < 0 || !v)
                return r;
        if (asprintf(&p, "%s.last_job", prefix) < 0)
                return -ENOMEM;
        j = calloc(1, sizeof(StateLastJob));
        if (!j)
                return -ENOMEM;
        /* No id when the submission itself failed ("SUBMIT_FAILED"). */
        r = get_string(v, p, "id", /* required= */ false, &j->id, reterr_message);
        if (r < 0)
                return r;
        r = get_string(v, p, "status", /* required= */ false, &j->status, reterr_message);
        if (r < 0)
                return r;
        r = get_string(v, p, "message", /* required= */ false, &j->message, reterr_message);
        if (r < 0)
                return r;
        r = get_time(v, p, "ended_at", /* required= */ true, &j->ended_at, reterr_message);
        if (r < 0)
                return r;
        r = get_time(v, p, "slot", /* required= */ false, &j->slot, reterr_message);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(j);
        return 0;
}

/* Whether NAME can go into a message as it is: UTF-8 without control characters. */
static bool name_is_printable(const char *name) {
        for (const char *p = name; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return utf8_is_valid(name);
}

/* "environments.uat", or "environments.#3" for the third name when it would garble a log line. */
static int env_path(const char *name, size_t i, char **ret) {
        if ((name_is_printable(name) ? asprintf(ret, "environments.%s", name)
                                     : asprintf(ret, "environments.#%zu", i + 1)) < 0)
                return -ENOMEM;
        return 0;
}

/* The environment NAME, the Ith, whose value V is (NULL: not an object). */
static int parse_env(const char *name, size_t i, yajl_val v, StateEnv *e, char **reterr_message) {
        _cleanup_free_ char *id = NULL;
        const struct {
                const char *key;
                int64_t *t;
        } times[] = {
                { "since", &e->since },
                { "last_slot", &e->last_slot },
                { "last_submitted", &e->last_submitted },
                { "deferred_until", &e->deferred_until },
                { "zuora_last_refresh", &e->zuora_last_refresh },
                { "zuora_next_refresh", &e->zuora_next_refresh },
        };
        _cleanup_free_ char *p = NULL;
        int r;

        r = env_path(name, i, &p);
        if (r < 0)
                return r;
        if (!YAJL_IS_OBJECT(v))
                return bad(reterr_message, "%s: not an object", p);

        r = get_string(v, p, "id", /* required= */ false, &id, reterr_message);
        if (r < 0)
                return r;
        if (name_id_dup(name, id, &e->name, &e->id) < 0)
                return -ENOMEM;
        for (size_t k = 0; k < ELEMENTSOF(times); k++) {
                r = get_time(v, p, times[k].key, /* required= */ false, times[k].t, reterr_message);
                if (r < 0)
                        return r;
        }
        r = parse_intent(v, p, e, reterr_message);
        if (r < 0)
                return r;
        r = parse_job(v, p, &e->job, reterr_message);
        if (r < 0)
                return r;
        return parse_last_job(v, p, &e->last_job, reterr_message);
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Names must be UTF-8 and unique, compared as the C strings they are kept as: "a\u0000b" is "a". */
static int check_names(const EnvIndex *x, char **reterr_message) {
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ char *p = NULL;
        size_t n = x->n, bad_index = n;
        const char *what = NULL;
        int r;

        for (size_t i = 0; i < n && !what; i++)
                if (!utf8_is_valid(x->spans[i].name)) {
                        bad_index = i;
                        what = "name not UTF-8";
                }
        if (!what && n > 1) {
                names = reallocarray(NULL, n, sizeof(char *));
                if (!names)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        names[i] = x->spans[i].name;
                qsort(names, n, sizeof(char *), strcmp_ptr);
                for (size_t i = 1; i < n && !what; i++)
                        if (strcmp(names[i - 1], names[i]) == 0) {
                                /* The same pointers: find where it was, to name it. */
                                bad_index = 0;
                                while (x->spans[bad_index].name != names[i])
                                        bad_index++;
                                what = "duplicate key";
                        }
        }
        if (!what)
                return 0;
        r = env_path(x->spans[bad_index].name, bad_index, &p);
        if (r < 0)
                return r;
        return bad(reterr_message, "%s: %s", p, what);
}

/* The text without the environments' members: "{..., "environments": {}, ...}". */
static char *root_text(const char *text, size_t size, const EnvIndex *x) {
        char *t;

        if (!x->found)
                return strndup(text, size); /* yajl_tree_parse() wants a C string; there is no NUL inside */
        t = malloc(x->open + (size - x->close) + 2);
        if (!t)
                return NULL;
        memcpy(t, text, x->open);
        memcpy(t + x->open, text + x->close - 1, size - x->close + 1);
        t[x->open + (size - x->close) + 1] = 0;
        return t;
}

/* The Ith environment, from a tree of its own. */
static int parse_env_at(const char *text, const EnvIndex *x, size_t i, StateEnv *e, char **reterr_message) {
        _cleanup_(yajl_tree_freep) yajl_val v = NULL;
        const EnvSpan *span = &x->spans[i];

        if (span->end > 0) {
                _cleanup_free_ char *t = strndup(text + span->start, span->end - span->start);
                if (!t)
                        return -ENOMEM;
                v = yajl_tree_parse(t, NULL, 0);
                if (!v)
                        return -ENOMEM; /* the text passed the same parser */
        }
        return parse_env(span->name, i, v, e, reterr_message);
}

/* "intent_log": {"id": "<16 lowercase hex digits, not all 0>", "seq": N}, or absent (none yet). */
static int parse_intent_log(yajl_val root, State *s, char **reterr_message) {
        yajl_val log, id, seq;
        char *end;
        int r;

        r = get_object(root, "", "intent_log", &log, reterr_message);
        if (r < 0 || !log)
                return r;
        r = object_get(log, "intent_log", "id", &id, reterr_message);
        if (r < 0)
                return r;
        if (!id || !YAJL_IS_STRING(id) || strlen(id->u.string) != 16 ||
            strspn(id->u.string, "0123456789abcdef") != 16 ||
            (s->log_id = strtoull(id->u.string, &end, 16)) == 0)
                return bad(reterr_message, "intent_log.id: not 16 hexadecimal digits");
        r = object_get(log, "intent_log", "seq", &seq, reterr_message);
        if (r < 0)
                return r;
        if (!seq || !YAJL_IS_INTEGER(seq) || YAJL_GET_INTEGER(seq) < 0)
                return bad(reterr_message, "intent_log.seq: not a number of records");
        s->log_seq = s->log_saved_seq = (uint64_t) YAJL_GET_INTEGER(seq);
        return 0;
}

int state_parse(const char *text, size_t size, State **ret, char **reterr_message) {
        _cleanup_(yajl_tree_freep) yajl_val root = NULL;
        _cleanup_(state_freep) State *s = NULL;
        _cleanup_(env_index_done) EnvIndex index = {};
        yajl_val v, envs;
        int r;

        assert(text || size == 0);
        assert(ret);

        if (size > STATE_SIZE_MAX)
                return -EFBIG;
        if (size == 0)
                text = "";

        r = json_check(text, size, &index, reterr_message);
        if (r < 0)
                return r;
        {
                _cleanup_free_ char *t = root_text(text, size, &index);
                if (!t)
                        return -ENOMEM;
                root = yajl_tree_parse(t, NULL, 0);
        }
        if (!root)
                return -ENOMEM; /* the text passed the same parser, so that is what is left */
        if (!YAJL_IS_OBJECT(root))
                return bad(reterr_message, "top level: not an object");

        r = object_get(root, "", "version", &v, reterr_message);
        if (r < 0)
                return r;
        if (!v)
                return bad(reterr_message, "version: missing");
        if (!YAJL_IS_NUMBER(v))
                return bad(reterr_message, "version: not a number");
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) != STATE_VERSION)
                return bad(reterr_message, "unsupported state version %s", v->u.number.r);

        r = get_object(root, "", "environments", &envs, reterr_message);
        if (r < 0)
                return r;
        if (!envs)
                return bad(reterr_message, "environments: missing");
        /* One "environments", an object: the one the index describes. */
        assert(index.found);
        r = check_names(&index, reterr_message);
        if (r < 0)
                return r;

        s = state_new();
        if (!s)
                return -ENOMEM;
        r = parse_intent_log(root, s, reterr_message);
        if (r < 0)
                return r;
        yajl_tree_free(TAKE_PTR(root)); /* the environments' trees come one at a time */
        if (index.n > 0) {
                s->envs = reallocarray(NULL, index.n, sizeof(StateEnv));
                if (!s->envs)
                        return -ENOMEM;
                s->n_allocated = index.n;
        }
        for (size_t i = 0; i < index.n; i++) {
                StateEnv *e = &s->envs[s->n_envs++];

                state_env_init(e); /* counted first, so that state_free() frees what is half parsed */
                r = parse_env_at(text, &index, i, e, reterr_message);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- formatting ---- */

/* A writer with a sticky error, as ferror() for stdio. */
typedef struct Writer {
        yajl_gen gen;
        int r;
} Writer;

static void put_status(Writer *w, yajl_gen_status st) {
        if (w->r >= 0 && st != yajl_gen_status_ok)
                w->r = -EINVAL; /* only a wrong call sequence (our bug) fails */
}

/* Strings come from Zuora and operators: bytes that are not UTF-8 become U+FFFD, since yajl would write
 * them as they are and the loader (which checks) would refuse the file. */
static void put_string(Writer *w, const char *s) {
        _cleanup_free_ char *fixed = NULL;
        size_t n, k = 0;

        if (w->r < 0)
                return;
        n = strlen(s);
        for (size_t i = 0; i < n;) {
                size_t len = utf8_char_len((const unsigned char *) s + i, n - i);

                if (len == 0 && !fixed) {
                        fixed = malloc(n * 3 + 1);
                        if (!fixed) {
                                w->r = -ENOMEM;
                                return;
                        }
                        memcpy(fixed, s, i);
                        k = i;
                }
                if (len == 0) {
                        memcpy(fixed + k, "\xEF\xBF\xBD", 3);
                        k += 3;
                        i++;
                } else {
                        if (fixed)
                                memcpy(fixed + k, s + i, len);
                        k += len;
                        i += len;
                }
        }
        put_status(w, yajl_gen_string(w->gen, (const unsigned char *) (fixed ? fixed : s), k));
}

static void put_null(Writer *w) {
        if (w->r >= 0)
                put_status(w, yajl_gen_null(w->gen));
}

static void put_string_or_null(Writer *w, const char *s) {
        if (s)
                put_string(w, s);
        else
                put_null(w);
}

static void put_time(Writer *w, int64_t t) {
        char buf[TZ_ISO_MAX];

        if (w->r < 0)
                return;
        if (t == STATE_TIME_UNSET)
                put_null(w);
        else if (tz_format_utc(t, buf, sizeof(buf)) < 0)
                w->r = -EINVAL; /* outside years 0…9999 */
        else
                put_string(w, buf);
}

static void put_int(Writer *w, long long i) {
        if (w->r >= 0)
                put_status(w, yajl_gen_integer(w->gen, i));
}

static void put_open(Writer *w) {
        if (w->r >= 0)
                put_status(w, yajl_gen_map_open(w->gen));
}

static void put_close(Writer *w) {
        if (w->r >= 0)
                put_status(w, yajl_gen_map_close(w->gen));
}

/* What state_parse() requires of an entry. */
static bool env_is_valid(const StateEnv *e) {
        if (!e->name)
                return false;
        if (e->job && (!e->job->id || !e->job->polling_url || e->job->submitted_at == STATE_TIME_UNSET))
                return false;
        if (e->last_job && e->last_job->ended_at == STATE_TIME_UNSET)
                return false;
        return true;
}

static void put_env(Writer *w, const StateEnv *e) {
        if (!env_is_valid(e)) {
                if (w->r >= 0)
                        w->r = -EINVAL;
                return;
        }

        put_string(w, e->name);
        put_open(w);
        put_string(w, "id");
        put_string_or_null(w, e->id);
        put_string(w, "since");
        put_time(w, e->since);
        put_string(w, "last_slot");
        put_time(w, e->last_slot);
        put_string(w, "last_submitted");
        put_time(w, e->last_submitted);
        put_string(w, "intent");
        if (e->intent_slot == STATE_TIME_UNSET)
                put_null(w);
        else {
                put_open(w);
                put_string(w, "slot");
                put_time(w, e->intent_slot);
                put_string(w, "track_id");
                put_string_or_null(w, e->intent_track_id);
                put_string(w, "sent_at");
                put_time(w, e->intent_sent_at);
                put_close(w);
        }
        put_string(w, "deferred_until");
        put_time(w, e->deferred_until);
        put_string(w, "zuora_last_refresh");
        put_time(w, e->zuora_last_refresh);
        put_string(w, "zuora_next_refresh");
        put_time(w, e->zuora_next_refresh);

        put_string(w, "job");
        if (!e->job)
                put_null(w);
        else {
                put_open(w);
                put_string(w, "id");
                put_string(w, e->job->id);
                put_string(w, "polling_url");
                put_string(w, e->job->polling_url);
                put_string(w, "status");
                put_string_or_null(w, e->job->status);
                put_string(w, "progress");
                if (e->job->progress < 0)
                        put_null(w);
                else
                        put_int(w, e->job->progress);
                put_string(w, "submitted_at");
                put_time(w, e->job->submitted_at);
                put_string(w, "slot");
                put_time(w, e->job->slot);
                put_close(w);
        }

        put_string(w, "last_job");
        if (!e->last_job)
                put_null(w);
        else {
                put_open(w);
                put_string(w, "id");
                put_string_or_null(w, e->last_job->id);
                put_string(w, "status");
                put_string_or_null(w, e->last_job->status);
                put_string(w, "message");
                put_string_or_null(w, e->last_job->message);
                put_string(w, "ended_at");
                put_time(w, e->last_job->ended_at);
                put_string(w, "slot");
                put_time(w, e->last_job->slot);
                put_close(w);
        }
        put_close(w);
}

/* A generator as state.json is written: indented, for the operator who reads it. PRINT (may be NULL:
 * yajl's own buffer) receives the text. */
static yajl_gen state_gen_new(yajl_print_t print, void *userdata) {
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g)
                return NULL;
        if (!yajl_gen_config(g, yajl_gen_beautify, 1) || !yajl_gen_config(g, yajl_gen_indent_string, "  ") ||
            (print && !yajl_gen_config(g, yajl_gen_print_callback, print, userdata))) {
                yajl_gen_free(g);
                return NULL;
        }
        return g;
}

static int state_generate(const State *s, yajl_gen g) {
        Writer w = { .gen = g };

        put_open(&w);
        put_string(&w, "version");
        put_int(&w, STATE_VERSION);
        if (s->log_id != 0) {
                char id[17];
                snprintf(id, sizeof(id), "%016" PRIx64, s->log_id);
                put_string(&w, "intent_log");
                put_open(&w);
                put_string(&w, "id");
                put_string(&w, id);
                put_string(&w, "seq");
                put_int(&w, (long long) s->log_seq);
                put_close(&w);
        }
        put_string(&w, "environments");
        put_open(&w);
        for (size_t i = 0; i < s->n_envs; i++)
                put_env(&w, &s->envs[i]);
        put_close(&w);
        put_close(&w);
        return w.r;
}

int state_format(const State *s, char **ret, size_t *ret_size) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        const unsigned char *buf;
        size_t len;
        char *text;
        int r;

        assert(s);
        assert(ret);

        g = state_gen_new(NULL, NULL);
        if (!g)
                return -ENOMEM;
        r = state_generate(s, g);
        if (r < 0)
                return r;

        if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
                return -EINVAL;
        text = strndup((const char *) buf, len); /* strings are escaped, so there is no NUL inside */
        if (!text)
                return -ENOMEM;
        *ret = text;
        if (ret_size)
                *ret_size = len;
        return 0;
}

/* ---- files ---- */

static int read_all(int fd, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > max)
                return -EFBIG;

        /* Room for one byte more than the file has, so that the first read() can see the end. */
        for (;;) {
                ssize_t n;

                if (size == alloc) {
                        size_t want = 4096;
                        char *b;

                        if (alloc > 0)
                                want = alloc * 2;
                        else if (S_ISREG(st.st_mode))
                                want = (size_t) st.st_size + 1;

                        if (alloc > max)
                                return -EFBIG;
                        if (want > max + 1)
                                want = max + 1;
                        b = realloc(buf, want);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        alloc = want;
                }
                n = read(fd, buf + size, alloc - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += n;
        }
        if (size > max)
                return -EFBIG;
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* A process killed in the middle of state_save() leaves its temp file;
 * the next start removes it (best effort: a read-only directory keeps it). */
static void remove_stale_temp_files(const char *dir) {
        _cleanup_free_ char *prefix = strndup(STATE_TEMP_NAME, strlen(STATE_TEMP_NAME) - 6); /* less XXXXXX */
        DIR *d;

        if (!prefix || !(d = opendir(dir)))
                return;
        for (struct dirent *de; (de = readdir(d));)
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
                    strlen(de->d_name) == strlen(STATE_TEMP_NAME))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

/* What tz_format_utc() can write: years 0000 to 9999. */
#define STATE_TIME_MIN INT64_C(-62167219200)
#define STATE_TIME_MAX INT64_C(253402300799)

static bool time_is_writable(int64_t t) {
        return t == STATE_TIME_UNSET || (t >= STATE_TIME_MIN && t <= STATE_TIME_MAX);
}

/* A record of the intent log newer than state.json: the intent, and what
 * firing its slot did to the entry (env_fire()). */
static int apply_intent(const IntentRecord *r, void *userdata) {
        State *s = userdata;
        StateEnv *e;
        char *track = NULL;
        int k;

        /* Written by us, with a checksum; still, nothing goes in that state_save() would refuse. */
        if (!name_is_printable(r->name) || !utf8_is_valid(r->name) || !utf8_is_valid(r->id) ||
            (r->track_id && !utf8_is_valid(r->track_id)) || !time_is_writable(r->slot) ||
            r->slot == STATE_TIME_UNSET || !time_is_writable(r->sent_at))
                return 0;
        if (r->track_id && !(track = strdup(r->track_id)))
                return -ENOMEM;
        k = state_get(s, r->name, r->id, &e);
        if (k < 0) {
                free(track);
                return k;
        }
        free(e->intent_track_id);
        e->intent_track_id = track;
        e->intent_slot = r->slot;
        e->intent_sent_at = r->sent_at;
        if (e->last_slot == STATE_TIME_UNSET || e->last_slot < r->slot)
                e->last_slot = r->slot;
        if (e->since == STATE_TIME_UNSET)
                e->since = r->slot;
        e->deferred_until = STATE_TIME_UNSET;
        if (r->seq > s->log_seq)
                s->log_seq = r->seq;
        return 0;
}

int state_load(const char *dir, State **ret, char **reterr_message) {
        _cleanup_(state_freep) State *s = NULL;
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_(closep) int fd = -EBADF;
        size_t size = 0;
        int r;

        assert(dir);
        assert(ret);

        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        remove_stale_temp_files(dir);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno != ENOENT)
                        return -errno;
                s = state_new(); /* first start */
                if (!s)
                        return -ENOMEM;
                *ret = TAKE_PTR(s);
                return 0;
        }
        r = read_all(fd, STATE_SIZE_MAX, &text, &size);
        if (r < 0)
                return r;
        r = state_parse(text, size, &s, reterr_message);
        if (r < 0)
                return r;
        if (s->log_id != 0) {
                s->log_saved = true;
                r = intent_log_replay(dir, s->log_id, s->log_saved_seq, apply_intent, s);
                if (r < 0) {
                        /* Intents may be in it: acting without them could submit a slot twice. */
                        if (reterr_message && r != -ENOMEM &&
                            asprintf(reterr_message, "%s/%s: %s", dir, INTENT_LOG_FILE_NAME,
                                     r == -EBADFD ? "not a regular file" : strerror(-r)) < 0)
                                *reterr_message = NULL;
                        return r;
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static int write_all(int fd, const char *buf, size_t size) {
        while (size > 0) {
                ssize_t n = write(fd, buf, size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                buf += n;
                size -= n;
        }
        return 0;
}

/* Whether state_generate() will succeed, found without generating. */
static bool state_is_writable(const State *s) {
        for (size_t i = 0; i < s->n_envs; i++) {
                const StateEnv *e = &s->envs[i];

                if (!env_is_valid(e) || !time_is_writable(e->since) || !time_is_writable(e->last_slot) ||
                    !time_is_writable(e->last_submitted) || !time_is_writable(e->intent_slot) ||
                    !time_is_writable(e->intent_sent_at) || !time_is_writable(e->deferred_until) ||
                    !time_is_writable(e->zuora_last_refresh) || !time_is_writable(e->zuora_next_refresh))
                        return false;
                if (e->job && (!time_is_writable(e->job->submitted_at) || !time_is_writable(e->job->slot)))
                        return false;
                if (e->last_job &&
                    (!time_is_writable(e->last_job->ended_at) || !time_is_writable(e->last_job->slot)))
                        return false;
        }
        return true;
}

/* The text goes to the file through a small buffer as it is generated: holding all of it (and yajl's
 * buffer, which doubles as it grows) took 7 MB at every save of 10,000 environments. */
typedef struct FileSink {
        int fd;
        int r;
        size_t n;
        char buf[64 * 1024];
} FileSink;

static void file_sink_flush(FileSink *f) {
        if (f->r >= 0 && f->n > 0)
                f->r = write_all(f->fd, f->buf, f->n);
        f->n = 0;
}

static void file_sink_on_print(void *userdata, const char *str, size_t len) {
        FileSink *f = userdata;

        while (len > 0 && f->r >= 0) {
                size_t k = sizeof(f->buf) - f->n < len ? sizeof(f->buf) - f->n : len;

                memcpy(f->buf + f->n, str, k);
                f->n += k;
                str += k;
                len -= k;
                if (f->n == sizeof(f->buf))
                        file_sink_flush(f);
        }
}

static int state_write(int fd, const State *s) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        _cleanup_free_ FileSink *f = malloc(sizeof(FileSink));
        int r;

        if (!f)
                return -ENOMEM;
        *f = (FileSink) { .fd = fd };
        g = state_gen_new(file_sink_on_print, f);
        if (!g)
                return -ENOMEM;
        r = state_generate(s, g);
        if (r < 0)
                return r;
        file_sink_flush(f);
        return f->r;
}

int state_save(const char *dir, State *s) {
        /* Declared before the fd, so that on the way out the fd is closed first, then the file unlinked. */
        _cleanup_(unlink_and_freep) char *tmp = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(closep) int dfd = -EBADF, fd = -EBADF;
        int r;

        assert(dir);
        assert(s);

        /* An invalid state is refused before any file is touched. */
        if (!state_is_writable(s))
                return -EINVAL;
        while (s->log_id == 0)
                if (getrandom(&s->log_id, sizeof(s->log_id), 0) != sizeof(s->log_id))
                        return -errno;
        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;

        /* mkostemp() opens with O_RDWR|O_CREAT|O_EXCL, mode 0600. */
        if (asprintf(&tmp, "%s/%s", dir, STATE_TEMP_NAME) < 0) {
                tmp = NULL; /* asprintf() leaves it undefined; nothing to unlink yet */
                return -ENOMEM;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(TAKE_PTR(tmp)); /* nothing was created */
                return r;
        }

        r = state_write(fd, s);
        if (r < 0)
                return r;
        if (fsync(fd) < 0)
                return -errno;
        /* close() is where NFS and quota report a failed write. */
        r = close(fd);
        fd = -EBADF;
        if (r < 0)
                return -errno;

        if (rename(tmp, path) < 0)
                return -errno;
        free(TAKE_PTR(tmp)); /* it is state.json now: nothing to unlink */

        /* Make the rename itself durable. If this fails, the new file is already in place and the old one
         * gone; the error still tells the caller that a crash now might bring the old one back. */
        if (fsync(dfd) < 0)
                return -errno;
        s->log_saved_seq = s->log_seq;
        s->log_saved = true;
        return 0;
}

int state_log_intents(State *s, int fd, StateEnv *const *envs, size_t n) {
        uint64_t first = s->log_seq + 1;
        int r = 0;

        assert(s);
        assert(envs || n == 0);
        if (!s->log_saved || fd < 0)
                return -EAGAIN;
        if (s->log_seq + n > s->log_saved_seq + INTENT_LOG_RECORDS)
                return -ENOSPC;
        s->log_seq += n;
        for (size_t i = 0; i < n && r >= 0; i++) {
                const StateEnv *e = envs[i];
                r = intent_log_put(fd, &(IntentRecord) {
                        .log_id = s->log_id,
                        .seq = first + i,
                        .slot = e->intent_slot,
                        .sent_at = e->intent_sent_at,
                        .name = e->name,
                        .id = e->id,
                        .track_id = e->intent_track_id,
                });
        }
        return r < 0 ? r : intent_log_sync(fd);
}

/* Like rename(), but never replaces TO: -EEXIST instead. */
static int rename_noreplace(const char *from, const char *to) {
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -errno;

        /* The file system cannot do it atomically. Only the holder of the state lock moves the file, so
         * looking first is good enough. */
        if (access(to, F_OK) >= 0)
                return -EEXIST;
        if (errno != ENOENT)
                return -errno;
        return rename(from, to) < 0 ? -errno : 0;
}

int state_move_aside(const char *dir, int64_t now, char **ret_path) {
        _cleanup_free_ char *from = NULL;
        char iso[TZ_ISO_MAX], stamp[TZ_ISO_MAX];
        size_t k = 0;
        int r;

        assert(dir);

        /* "2026-12-06T02:00:00Z" → "20261206T020000Z" */
        r = tz_format_utc(now, iso, sizeof(iso));
        if (r < 0)
                return r;
        for (const char *p = iso; *p; p++)
                if (*p != '-' && *p != ':')
                        stamp[k++] = *p;
        stamp[k] = 0;

        if (asprintf(&from, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < STATE_ASIDE_MAX; i++) {
                _cleanup_free_ char *to = NULL;

                if ((i == 0 ? asprintf(&to, "%s.corrupt-%s", from, stamp)
                            : asprintf(&to, "%s.corrupt-%s-%u", from, stamp, i)) < 0) {
                        to = NULL;
                        return -ENOMEM;
                }
                r = rename_noreplace(from, to);
                if (r == -EEXIST)
                        continue;
                if (r < 0)
                        return r;
                if (ret_path)
                        *ret_path = TAKE_PTR(to);
                return 0;
        }
        return -EEXIST;
}
