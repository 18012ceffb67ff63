/* SPDX-License-Identifier: MIT */
/*
 * Zuora's v1 REST API as refreshd speaks it: the bodies of our requests, and
 * the answers turned into plain values and one verdict. Pure: bytes in,
 * values out; no I/O, no clock (callers pass "now"), no logging.
 *
 * Answers are read with json.c's tree, wiped when freed (a token answer
 * holds a bearer token), with what is nested deeper than Zuora ever sends
 * left out.
 *
 * What Zuora might send but does not document is tolerated: unknown keys are
 * ignored, and a member of the wrong type counts as absent.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpdate.h"
#include "json.h"
#include "macro.h"
#include "tz.h"
#include "utf8.h"
#include "zuora.h"

#define ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define KEY_ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
#define ID_MAX 128
#define STATUS_MAX 64
#define TOKEN_MAX 4096
#define EXPIRES_IN_DEFAULT 3600
#define EXPIRES_IN_MAX (7 * 86400)
#define ERROR_TEXT_MAX 500
#define ERROR_RAW_CHARS 200
#define RETRY_AFTER_MAX 86400
#define TRACK_ID_PREFIX "refreshd-"
#define TIME_FORMAT_MIN INT64_C(-62167219200) /* 0000-01-01T00:00:00Z */
#define TIME_FORMAT_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define PERIOD_TEXT "Only one refresh can be performed during a set period"

#define ZUORA_JOB_INIT                                                                                      \
        ((ZuoraJob) {                                                                                       \
                .progress = -1,                                                                             \
                .create_time = ZUORA_TIME_UNSET,                                                            \
                .update_time = ZUORA_TIME_UNSET,                                                            \
                .job_start_time = ZUORA_TIME_UNSET,                                                         \
                .job_end_time = ZUORA_TIME_UNSET,                                                           \
                .estimated_completion_time = ZUORA_TIME_UNSET,                                              \
                .scheduled_refresh_time = ZUORA_TIME_UNSET,                                                 \
        })

/* Zuora's answers are three levels deep: what is nested deeper than
 * this is left out of the tree, and the answer still read. */
static const JsonOptions json_options = {
        .max_depth = 32,
        .wipe = true,
};

static int zuora_json_parse(const char *body, size_t size, JsonDoc *ret) {
        return json_parse(body, size, &json_options, ret, NULL);
}

static const char *json_get_string(const JsonNode *o, const char *key) {
        return json_text(json_get(o, key), /* number_too= */ false);
}

/* ---- values ---- */

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static char ascii_tolower(char c) {
        return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Parses a JSON number, or the same in a string (" 3599", "+45.5", "1e2"),
 * truncated toward zero and clamped to MIN..MAX. Our own reader, not
 * strtod(): no locale, and no limit on the number of digits. */
static int parse_number_clamped(const char *s, int64_t min, int64_t max, int64_t *ret) {
        const char *p = s, *digits;
        size_t n_int = 0, n_frac = 0, n, i;
        int64_t exp = 0, pos, v;
        bool neg = false;
        uint64_t u = 0;

        p += strspn(p, " \t");
        if (*p == '-' || *p == '+')
                neg = *p++ == '-';
        digits = p;
        for (; is_digit(*p); p++)
                n_int++;
        if (n_int == 0)
                return -EINVAL;
        if (*p == '.') {
                for (p++; is_digit(*p); p++)
                        n_frac++;
                if (n_frac == 0)
                        return -EINVAL;
        }
        if (*p == 'e' || *p == 'E') {
                bool eneg = false;
                size_t n_exp = 0;

                p++;
                if (*p == '-' || *p == '+')
                        eneg = *p++ == '-';
                for (; is_digit(*p); p++, n_exp++)
                        if (exp < 100000000)
                                exp = exp * 10 + (*p - '0');
                if (n_exp == 0)
                        return -EINVAL;
                if (eneg)
                        exp = -exp;
        }
        p += strspn(p, " \t");
        if (*p != 0)
                return -EINVAL;

        /* The integer part is the first POS of the digits D (integer and
         * fraction digits, the point left out), padded with zeros. Leading
         * zeros add nothing; past 19 significant digits it is too large. */
        n = n_int + n_frac;
        pos = (int64_t) (n_int > INT32_MAX ? INT32_MAX : n_int) + exp;
#define DIGIT(j) ((j) < n_int ? digits[j] : (j) < n ? digits[(j) + 1] : '0')
        for (i = 0; i < n && DIGIT(i) == '0'; i++)
                ;
        if (i < n && pos - (int64_t) i > 19)
                v = neg ? INT64_MIN : INT64_MAX;
        else {
                for (size_t j = i; i < n && (int64_t) j < pos; j++)
                        u = u * 10 + (uint64_t) (DIGIT(j) - '0');
                if (u > INT64_MAX)
                        v = neg ? INT64_MIN : INT64_MAX;
                else
                        v = neg ? -(int64_t) u : (int64_t) u;
        }
#undef DIGIT
        *ret = v < min ? min : v > max ? max : v;
        return 0;
}

/* A number, or a string holding one; -EINVAL for anything else. */
static int json_number_clamped(const JsonNode *v, int64_t min, int64_t max, int64_t *ret) {
        const char *s = json_text(v, /* number_too= */ true);

        if (!s)
                return -EINVAL;
        return parse_number_clamped(s, min, max, ret);
}

static bool chars_only(const char *s, size_t min, size_t max, const char *allowed) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        return n >= min && n <= max && strspn(s, allowed) == n;
}

/* Printable US-ASCII, nothing else: what may go into a header or a log line
 * unquoted. */
static bool is_visible_ascii(const char *s, size_t max, bool space_ok) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++) {
                unsigned char c = s[n];
                if (n >= max || c > 0x7e || c < 0x20 || (c == ' ' && !space_ok))
                        return false;
        }
        return n > 0;
}

/* Ids go into URL paths: a safe, short alphabet. */
static bool id_is_valid(const char *s) {
        return chars_only(s, 1, ID_MAX, ID_CHARS);
}

int zuora_parse_time(const char *s, int64_t *ret) {
        if (!s)
                return -EINVAL;
        return tz_parse_iso8601(s, ret);
}

static int64_t json_get_time(const JsonNode *o, const char *key) {
        const char *s = json_get_string(o, key);
        int64_t t;

        if (!s || zuora_parse_time(s, &t) < 0)
                return ZUORA_TIME_UNSET;
        return t;
}

/* ---- jobs ---- */

void zuora_job_done(ZuoraJob *j) {
        if (!j)
                return;
        free(j->id);
        free(j->status);
        free(j->test_environment_id);
        *j = ZUORA_JOB_INIT;
}

static int job_from_node(const JsonNode *o, ZuoraJob *ret) {
        _cleanup_(zuora_job_done) ZuoraJob j = ZUORA_JOB_INIT;
        const char *id, *status, *env;
        int64_t progress;

        if (!o || o->type != JSON_OBJECT)
                return -EBADMSG;
        id = json_get_string(o, "id");
        if (!id_is_valid(id))
                return -EBADMSG;
        j.id = strdup(id);
        if (!j.id)
                return -ENOMEM;

        /* Unknown statuses are kept (the caller tolerates them), but only if
         * they are short printable ASCII: they end up in logs and state. */
        status = json_get_string(o, "status");
        if (is_visible_ascii(status, STATUS_MAX, /* space_ok= */ true)) {
                j.status = strdup(status);
                if (!j.status)
                        return -ENOMEM;
        }
        env = json_get_string(o, "testEnvironmentId");
        if (id_is_valid(env)) {
                j.test_environment_id = strdup(env);
                if (!j.test_environment_id)
                        return -ENOMEM;
        }
        /* Documented as 0-100; it may come as "45" or 45.5: truncated, so
         * that 99.9 is not reported as done. */
        if (json_number_clamped(json_get(o, "progressPercentage"), 0, 100, &progress) >= 0)
                j.progress = (int) progress;

        j.create_time = json_get_time(o, "createTime");
        j.update_time = json_get_time(o, "updateTime");
        j.job_start_time = json_get_time(o, "jobStartTime");
        j.job_end_time = json_get_time(o, "jobEndTime");
        j.estimated_completion_time = json_get_time(o, "estimatedCompletionTime");
        j.scheduled_refresh_time = json_get_time(o, "scheduledRefreshTime");

        *ret = j;
        j = ZUORA_JOB_INIT;
        return 0;
}

int zuora_parse_job(const char *body, size_t size, ZuoraJob *ret) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        int r;

        assert(ret);

        r = zuora_json_parse(body, size, &d);
        if (r < 0)
                return r;
        return job_from_node(d.root, ret);
}

void zuora_job_list_free(ZuoraJob *jobs, size_t n) {
        if (!jobs)
                return;
        for (size_t i = 0; i < n; i++)
                zuora_job_done(&jobs[i]);
        free(jobs);
}

/* A list answer's array: the root, or the array under "result", "data",
 * "jobs" or "notifications". */
static const JsonNode *list_array(const JsonNode *root) {
        static const char *const keys[] = { "result", "data", "jobs", "notifications" };

        if (root->type == JSON_ARRAY)
                return root;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const JsonNode *v = json_get(root, keys[i]);
                if (v && v->type == JSON_ARRAY)
                        return v;
        }
        return NULL;
}

void zuora_recipients_free(ZuoraRecipient *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(l[i].id);
                free(l[i].address);
                free(l[i].name);
        }
        free(l);
}

static int recipient_from_node(const JsonNode *c, ZuoraRecipient *ret) {
        const char *id = json_text(json_get(c, "id"), true),
                   *address = json_text(json_get(c, "address"), false);
        const char *name = json_text(json_get(c, "name"), false);

        if (c->type != JSON_OBJECT || !id || !address || !id_is_valid(id))
                return -EBADMSG;
        *ret = (ZuoraRecipient) { .id = strdup(id),
                                  .address = strdup(address),
                                  .name = name ? strdup(name) : NULL };
        if (!ret->id || !ret->address || (name && !ret->name)) {
                free(ret->id);
                free(ret->address);
                free(ret->name);
                return -ENOMEM;
        }
        return 0;
}

/* A list answer's items, each read by FROM_NODE into a new array of
 * items of ELEM bytes (NULL when none is left); items it refuses are
 * skipped, and LIST_FREE frees what was read when memory runs out. */
static int parse_list(
        const char *body,
        size_t size,
        size_t elem,
        int (*from_node)(const JsonNode *c, void *item),
        void (*list_free)(void *items, size_t n),
        void **ret,
        size_t *ret_n) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        const JsonNode *array;
        uint8_t *items = NULL;
        size_t n = 0, allocated = 0;
        int r;

        assert(ret);
        assert(ret_n);

        r = zuora_json_parse(body, size, &d);
        if (r < 0)
                return r;
        array = list_array(d.root);
        if (!array)
                return -EBADMSG;
        for (const JsonNode *c = array->first; c; c = c->next)
                allocated++;
        if (allocated > 0 && !(items = calloc(allocated, elem)))
                return -ENOMEM;
        for (const JsonNode *c = array->first; c; c = c->next) {
                r = from_node(c, items + n * elem);
                if (r == -ENOMEM) {
                        list_free(items, n);
                        return r;
                }
                if (r >= 0)
                        n++;
        }
        if (n == 0)
                items = mfree(items);
        *ret = items;
        *ret_n = n;
        return 0;
}

static int recipient_from_node_void(const JsonNode *c, void *item) {
        return recipient_from_node(c, item);
}

static void recipients_free_void(void *items, size_t n) {
        zuora_recipients_free(items, n);
}

int zuora_parse_recipients(const char *body, size_t size, ZuoraRecipient **ret, size_t *ret_n) {
        return parse_list(
                body,
                size,
                sizeof(ZuoraRecipient),
                recipient_from_node_void,
                recipients_free_void,
                (void **) ret,
                ret_n);
}

int zuora_parse_recipient(const char *body, size_t size, ZuoraRecipient *ret) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        int r;

        r = zuora_json_parse(body, size, &d);
        if (r < 0)
                return r;
        return recipient_from_node(d.root, ret);
}

char *zuora_recipient_body(const char *address, const char *name) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        const char *text;
        size_t size;

        if (json_writer_init(&w, false, NULL, NULL) < 0)
                return NULL;
        json_put_open(&w);
        json_put_string(&w, "address");
        json_put_string(&w, address);
        json_put_string(&w, "name");
        json_put_string_or_null(&w, name);
        json_put_close(&w);
        if (json_writer_text(&w, &text, &size) < 0)
                return NULL;
        return strndup(text, size);
}

/* Items that are no job or have no usable id are skipped. */
static int job_from_node_void(const JsonNode *c, void *item) {
        return job_from_node(c, item);
}

static void job_list_free_void(void *items, size_t n) {
        zuora_job_list_free(items, n);
}

int zuora_parse_job_list(const char *body, size_t size, ZuoraJob **ret, size_t *ret_n) {
        return parse_list(
                body, size, sizeof(ZuoraJob), job_from_node_void, job_list_free_void, (void **) ret, ret_n);
}

/* ---- tokens and environments ---- */

int zuora_parse_token(const char *body, size_t size, char **ret_token, uint64_t *ret_expires_in) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        int64_t expires_in;
        const char *token;
        char *copy;
        int r;

        assert(ret_token);

        r = zuora_json_parse(body, size, &d);
        if (r < 0)
                return r;

        /* RFC 6750 §2.1: a b64token. We only insist on what keeps the
         * Authorization header intact: visible ASCII, no spaces. */
        token = json_get_string(d.root, "access_token");
        if (!is_visible_ascii(token, TOKEN_MAX, /* space_ok= */ false))
                return -EBADMSG;

        /* RFC 6749 §5.1: expires_in is a number of seconds. A silly value is
         * clamped rather than trusted: at least a second, at most a week. */
        if (json_number_clamped(json_get(d.root, "expires_in"), 1, EXPIRES_IN_MAX, &expires_in) < 0)
                expires_in = EXPIRES_IN_DEFAULT;

        copy = strdup(token);
        if (!copy)
                return -ENOMEM;
        *ret_token = copy;
        if (ret_expires_in)
                *ret_expires_in = (uint64_t) expires_in;
        return 0;
}

/* A time member that is there: a time, or null (never refreshed). */
static bool json_time_present(const JsonNode *o, const char *key, int64_t *ret) {
        const JsonNode *v = json_get(o, key);

        if (v && v->type == JSON_NULL) {
                *ret = ZUORA_TIME_UNSET;
                return true;
        }
        *ret = json_get_time(o, key);
        return *ret != ZUORA_TIME_UNSET;
}

int zuora_parse_environment(const char *body, size_t size, int64_t *ret_last, int64_t *ret_next) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        int64_t last, next;
        bool has_last, has_next;
        int r;

        r = zuora_json_parse(body, size, &d);
        if (r < 0)
                return r;
        if (d.root->type != JSON_OBJECT)
                return -EBADMSG;

        /* Both may be null on an environment never refreshed: that is an
         * answer. Neither there (or both garbage): not a TestEnvironment. */
        has_last = json_time_present(d.root, "lastRefreshTime", &last);
        has_next = json_time_present(d.root, "nextRefreshTime", &next);
        if (!has_last && !has_next)
                return -EBADMSG;

        if (ret_last)
                *ret_last = last;
        if (ret_next)
                *ret_next = next;
        return 0;
}

/* ---- error text ---- */

/* A bounded text being assembled: whitespace and control characters become
 * one space, never leading or trailing; parts are joined with "; ". Whole
 * characters only, so cutting it short keeps it valid UTF-8. */
typedef struct TextBuf {
        char *buf;
        size_t len, max;
        size_t chars, max_chars;
        bool space; /* a space is due before the next character */
        bool sep;   /* a "; " is due before the next character */
        bool full;
} TextBuf;

static void text_put(TextBuf *t, const char *c, size_t n) {
        const char *pre = "";
        size_t pre_len;

        if (t->full)
                return;
        if (t->len > 0)
                pre = t->sep ? "; " : t->space ? " " : "";
        pre_len = strlen(pre);
        if (n > t->max - t->len || pre_len > t->max - t->len - n || t->chars >= t->max_chars) {
                t->full = true;
                return;
        }
        memcpy(t->buf + t->len, pre, pre_len);
        memcpy(t->buf + t->len + pre_len, c, n);
        t->len += pre_len + n;
        t->chars++;
        t->space = t->sep = false;
}

static bool is_blank_char(uint32_t c) {
        /* C0 and C1 controls, DEL, space, and the Unicode line and paragraph separators. */
        return c <= 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0x2028 || c == 0x2029;
}

/* Appends S, sanitised. With STRIP_TAGS, "<…>" counts as a space (HTML). */
static void text_append(TextBuf *t, const char *s, size_t len, bool strip_tags) {
        for (size_t i = 0; i < len && !t->full;) {
                uint32_t c;
                size_t n;

                if (strip_tags && s[i] == '<') {
                        const char *end = memchr(s + i, '>', len - i);
                        i = end ? (size_t) (end - s) + 1 : len;
                        t->space = true;
                        continue;
                }
                c = utf8_decode(s + i, len - i, &n);
                if (c == UTF8_INVALID)
                        text_put(t, "?", 1);
                else if (is_blank_char(c))
                        t->space = true;
                else
                        text_put(t, s + i, n);
                i += n;
        }
}

static void text_begin_part(TextBuf *t) {
        t->sep = t->len > 0;
}

static void text_append_node(TextBuf *t, const JsonNode *v) {
        text_append(t, v->text, v->text_len, /* strip_tags= */ false);
}

static const JsonNode *json_get_first(
        const JsonNode *o, const char *const *keys, size_t n_keys, bool number_too) {
        for (size_t i = 0; i < n_keys; i++) {
                const JsonNode *v = json_get(o, keys[i]);
                if (v && (v->type == JSON_STRING || (number_too && v->type == JSON_NUMBER)))
                        return v;
        }
        return NULL;
}

/* One reason: {"code": 50000040, "message": "…"} gives "… (code 50000040)". */
static void text_append_reason(TextBuf *t, const JsonNode *o) {
        static const char *const message_keys[] = {
                "message", "Message", "errorMessage", "detail", "title"
        };
        static const char *const code_keys[] = { "code", "Code", "errorCode" };
        const JsonNode *message, *code;

        if (o->type == JSON_STRING) {
                text_begin_part(t);
                text_append_node(t, o);
                return;
        }
        message = json_get_first(o, message_keys, ELEMENTSOF(message_keys), /* number_too= */ false);
        code = json_get_first(o, code_keys, ELEMENTSOF(code_keys), /* number_too= */ true);
        if (!message && !code)
                return;
        text_begin_part(t);
        if (message)
                text_append_node(t, message);
        if (code) {
                /* Sanitised apart first, so that an empty code leaves no "(code )". */
                char buf[64 + 1];
                TextBuf c = { .buf = buf, .max = 64, .max_chars = SIZE_MAX };

                text_append_node(&c, code);
                if (c.len > 0) {
                        const char *intro = message ? " (code " : "code ";
                        text_append(t, intro, strlen(intro), /* strip_tags= */ false);
                        text_append(t, c.buf, c.len, /* strip_tags= */ false);
                        if (message)
                                text_put(t, ")", 1);
                }
        }
}

static void text_append_reasons(TextBuf *t, const JsonNode *array) {
        for (const JsonNode *c = array->first; c && !t->full; c = c->next)
                text_append_reason(t, c);
}

/* Zuora's error shapes: {"success": false, "reasons": [{"code", "message"}]}
 * (v1), {"message": …}, {"Errors": [{"Code", "Message"}]} (older APIs), and
 * the OAuth endpoint's {"error": …, "error_description": …} (RFC 6749 §5.2). */
static void text_append_error_body(TextBuf *t, const JsonNode *root) {
        static const char *const list_keys[] = { "reasons", "Reasons", "errors", "Errors" };
        const JsonNode *error, *description;

        switch (root->type) {
        case JSON_STRING:
                text_append_reason(t, root);
                return;
        case JSON_ARRAY:
                text_append_reasons(t, root);
                return;
        case JSON_OBJECT:
                break;
        case JSON_NULL:
        case JSON_BOOLEAN:
        case JSON_NUMBER:
                return;
        }

        for (size_t i = 0; i < ELEMENTSOF(list_keys); i++) {
                const JsonNode *v = json_get(root, list_keys[i]);
                if (v && v->type == JSON_ARRAY)
                        text_append_reasons(t, v);
        }
        if (t->len == 0)
                text_append_reason(t, root);

        error = json_get(root, "error");
        description = json_get(root, "error_description");
        if (error && error->type == JSON_OBJECT)
                text_append_reason(t, error);
        else if (
                (error && error->type == JSON_STRING) || (description && description->type == JSON_STRING)) {
                text_begin_part(t);
                if (error && error->type == JSON_STRING)
                        text_append_node(t, error);
                if (description && description->type == JSON_STRING) {
                        if (t->len > 0 && !t->sep) {
                                text_put(t, ":", 1);
                                t->space = true;
                        }
                        text_append_node(t, description);
                }
        }
}

static bool body_is_html(const char *body, size_t size) {
        size_t i = 0;

        while (i < size && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
                i++;
        return i < size && body[i] == '<';
}

char *zuora_error_text(const char *body, size_t size) {
        _cleanup_(json_doc_done) JsonDoc d = {};
        TextBuf t = {
                .max = ERROR_TEXT_MAX,
                .max_chars = SIZE_MAX,
        };

        if (!body)
                size = 0;
        t.buf = malloc(ERROR_TEXT_MAX + 1);
        if (!t.buf)
                return NULL;

        if (zuora_json_parse(body, size, &d) >= 0)
                text_append_error_body(&t, d.root);
        if (t.len == 0) {
                /* Not JSON (an HTML 502 page from a proxy), or JSON in a shape
                 * we do not know: the start of the body itself, which says
                 * more than nothing. */
                t = (TextBuf) {
                        .buf = t.buf,
                        .max = ERROR_TEXT_MAX,
                        .max_chars = ERROR_RAW_CHARS,
                };
                text_append(&t, body, size, body_is_html(body, size));
        }
        if (t.len == 0) {
                free(t.buf);
                return NULL;
        }
        t.buf[t.len] = 0;
        return t.buf;
}

/* ---- verdicts ---- */

/* Case-insensitive search for NEEDLE in the SIZE bytes at HAYSTACK. */
static bool mem_contains_ci(const char *haystack, size_t size, const char *needle) {
        size_t n = strlen(needle);

        if (!haystack || n > size)
                return false;
        for (size_t i = 0; i + n <= size; i++) {
                size_t j = 0;
                while (j < n && ascii_tolower(haystack[i + j]) == ascii_tolower(needle[j]))
                        j++;
                if (j == n)
                        return true;
        }
        return false;
}

ZuoraVerdict zuora_classify(long status, int transport_error, const char *body, size_t size, bool body_ok) {
        /* No answer at all (TRANSPORT_ERROR says why): try again later. */
        if (status <= 0)
                return ZUORA_VERDICT_RETRY;

        if (status >= 200 && status <= 299)
                /* A 2xx we cannot read (empty, cut short, not JSON) was probably
                 * mangled on the way: ask again rather than guess. */
                return body_ok ? ZUORA_VERDICT_OK : ZUORA_VERDICT_RETRY;

        switch (status) {
        case 401:
                return ZUORA_VERDICT_REAUTH;
        case 403:
                /* Zuora answers 403 both for the refresh period and for a missing
                 * permission; only the body tells them apart. */
                return mem_contains_ci(body, size, PERIOD_TEXT) ? ZUORA_VERDICT_PERIOD
                                                                : ZUORA_VERDICT_FORBIDDEN;
        case 404:
                return ZUORA_VERDICT_NOT_FOUND;
        case 408:
                return ZUORA_VERDICT_RETRY;
        case 409:
                return mem_contains_ci(body, size, PERIOD_TEXT) ? ZUORA_VERDICT_PERIOD
                                                                : ZUORA_VERDICT_FAILED;
        case 429:
                return ZUORA_VERDICT_RATE_LIMITED;
        }

        if (status >= 500 && status <= 599)
                return ZUORA_VERDICT_RETRY;

        /* Other 4xx: the request itself is wrong, sending it again will not
         * help. 1xx, 3xx and codes outside 100-599 too: redirects are never
         * followed (a redirected POST could create a job twice, or carry the
         * token to another host), so a 3xx is a failure the operator must see. */
        return ZUORA_VERDICT_FAILED;
}

/* ---- Retry-After ---- */

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

/* S without leading and trailing whitespace (RFC 9110 section 5.5 OWS): its start, and its length in *ret_n.
 */
static const char *trimmed(const char *s, size_t *ret_n) {
        size_t n = strlen(s);

        while (n > 0 && is_ows(*s))
                s++, n--;
        while (n > 0 && is_ows(s[n - 1]))
                n--;
        *ret_n = n;
        return s;
}

/* Digits only (RFC 9110 section 10.2.3 delta-seconds), saturated far beyond any
 * delay we accept. */
static int parse_seconds(const char *s, size_t n, int64_t *ret) {
        int64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return -EINVAL;
                if (v < INT64_C(1000000000000000))
                        v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int64_t seconds_until(int64_t t, int64_t now) {
        uint64_t d;

        if (t <= now)
                return 0;
        d = (uint64_t) t - (uint64_t) now; /* fits: T > NOW */
        return d > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (int64_t) d;
}

int zuora_retry_after(
        const char *retry_after, const char *ratelimit_reset, int64_t now, uint64_t *ret_usec) {
        int64_t v, t, delay = -1;
        const char *s;
        size_t n;

        assert(ret_usec);

        /* Retry-After first: seconds or a date. Anything else is ignored. */
        if (retry_after) {
                s = trimmed(retry_after, &n);
                if (parse_seconds(s, n, &v) >= 0)
                        delay = v;
                else if (httpdate_parse(s, n, now, &t) >= 0)
                        delay = seconds_until(t, now);
        }
        /* ratelimit-reset is seconds until the window resets; some servers put
         * an epoch time there instead, which no window length reaches. */
        if (delay < 0 && ratelimit_reset) {
                s = trimmed(ratelimit_reset, &n);
                if (parse_seconds(s, n, &v) >= 0)
                        delay = v >= 1000000000 ? seconds_until(v, now) : v;
        }
        if (delay < 0)
                return -ENODATA;

        if (delay > RETRY_AFTER_MAX)
                delay = RETRY_AFTER_MAX;
        *ret_usec = (uint64_t) delay * USEC_PER_SEC;
        return 0;
}

/* ---- statuses ---- */

static bool status_in(const char *status, const char *const *list, size_t n) {
        if (!status)
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcasecmp(status, list[i]) == 0)
                        return true;
        return false;
}

static const char *const terminal_statuses[] = { "COMPLETED", "FAILED", "CANCELED", "CANCELLED" };

bool zuora_status_is_terminal(const char *status) {
        return status_in(status, terminal_statuses, ELEMENTSOF(terminal_statuses));
}

bool zuora_status_is_known(const char *status) {
        static const char *const running[] = { "NEW", "QUEUED", "IN_PROGRESS" };

        return status_in(status, running, ELEMENTSOF(running)) || zuora_status_is_terminal(status);
}

ZuoraOutcome zuora_status_outcome(const char *status) {
        static const char *const canceled[] = { "CANCELED", "CANCELLED" };

        if (status && strcasecmp(status, "COMPLETED") == 0)
                return ZUORA_OUTCOME_COMPLETED;
        if (status && strcasecmp(status, "FAILED") == 0)
                return ZUORA_OUTCOME_FAILED;
        if (status_in(status, canceled, ELEMENTSOF(canceled)))
                return ZUORA_OUTCOME_CANCELED;
        return ZUORA_OUTCOME_OTHER;
}

bool zuora_job_has_ended(const ZuoraJob *j) {
        if (!j)
                return false;
        return zuora_status_is_terminal(j->status) || j->job_end_time != ZUORA_TIME_UNSET;
}

/* ---- requests ---- */

/* "2026-12-06T02:00:00Z". tz_format_utc() writes years 0000-9999 only, and
 * its day arithmetic would overflow near INT64_MIN: keep other instants away. */
static int format_utc(int64_t t, char buf[static TZ_ISO_MAX]) {
        if (t < TIME_FORMAT_MIN || t > TIME_FORMAT_MAX)
                return -ERANGE;
        return tz_format_utc(t, buf, TZ_ISO_MAX);
}

static const char hex_digits[] = "0123456789abcdef";

void zuora_track_id(const uint8_t random[16], char buf[static ZUORA_TRACK_ID_MAX]) {
        char *p = stpcpy(buf, TRACK_ID_PREFIX);

        /* Lowercase hex only: far from the characters Zuora forbids (: ; " '). */
        for (size_t i = 0; i < 16; i++) {
                *p++ = hex_digits[random[i] >> 4];
                *p++ = hex_digits[random[i] & 15];
        }
        *p = 0;
}

#define JOB_BODY_HEAD "{\"jobType\":\"REFRESH\",\"scheduledRefreshTime\":\""
#define JOB_BODY_TAIL "\"}"

char *zuora_job_request_body(int64_t scheduled) {
        char iso[TZ_ISO_MAX], *s;

        if (scheduled == ZUORA_TIME_UNSET)
                return strdup("{\"jobType\":\"REFRESH\"}");
        if (format_utc(scheduled, iso) < 0) {
                errno = ERANGE; /* not within years 0000-9999 */
                return NULL;
        }
        s = malloc(sizeof(JOB_BODY_HEAD) + strlen(iso) + sizeof(JOB_BODY_TAIL) - 1);
        if (!s)
                return NULL;
        strcpy(stpcpy(stpcpy(s, JOB_BODY_HEAD), iso), JOB_BODY_TAIL);
        return s;
}

/* FNV-1a, 64 bits: stable across builds and restarts, which is all we need. */
static uint64_t fnv1a64(const char *s) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

char *zuora_idempotency_key(const char *env_id, int64_t slot) {
        char iso[TZ_ISO_MAX], stamp[TZ_ISO_MAX], hashed[1 + 16 + 1], *p = stamp, *s;
        const char *id;

        assert(env_id);

        if (format_utc(slot, iso) < 0) {
                errno = ERANGE;
                return NULL;
        }
        /* "2026-12-06T02:00:00Z" → "20261206T020000Z" */
        for (const char *q = iso; *q; q++)
                if (*q != '-' && *q != ':')
                        *p++ = *q;
        *p = 0;

        /* Under 255 characters of [A-Za-z0-9-]. Test environment ids are
         * that already; any other id is replaced by "x" and a hash of it,
         * which cannot be mistaken for a 32-hex or UUID id. */
        if (chars_only(env_id, 1, ID_MAX, KEY_ID_CHARS))
                id = env_id;
        else {
                snprintf(hashed, sizeof(hashed), "x%016" PRIx64, fnv1a64(env_id));
                id = hashed;
        }
        s = malloc(strlen("refreshd-") + strlen(id) + 1 + strlen(stamp) + 1);
        if (!s)
                return NULL;
        sprintf(s, "refreshd-%s-%s", id, stamp);
        return s;
}

static bool is_unreserved(unsigned char c) {
        /* RFC 3986 §2.3 */
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '.' ||
               c == '_' || c == '~';
}

static size_t form_encoded_len(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                n += is_unreserved(*s) ? 1 : 3;
        return n;
}

/* application/x-www-form-urlencoded, written straight into the result, so
 * that no other copy of the secret is made. A space is "%20", which every
 * form decoder reads as a space (and "+" would be too, but "%20" is also
 * right for a decoder that only knows RFC 3986). */
static char *form_encode(char *p, const char *s) {
        for (; *s; s++) {
                unsigned char c = *s;
                if (is_unreserved(c))
                        *p++ = c;
                else {
                        *p++ = '%';
                        *p++ = "0123456789ABCDEF"[c >> 4];
                        *p++ = "0123456789ABCDEF"[c & 15];
                }
        }
        return p;
}

char *zuora_token_request_body(const char *client_id, const char *client_secret) {
        static const char a[] = "grant_type=client_credentials&client_id=", b[] = "&client_secret=";
        size_t id_len, secret_len;
        char *body, *p;

        assert(client_id);
        assert(client_secret);

        id_len = strlen(client_id);
        secret_len = strlen(client_secret);
        if (id_len > SIZE_MAX / 8 || secret_len > SIZE_MAX / 8)
                return NULL;
        body = malloc(sizeof(a) + form_encoded_len(client_id) + sizeof(b) + form_encoded_len(client_secret));
        if (!body)
                return NULL;
        p = stpcpy(body, a);
        p = form_encode(p, client_id);
        p = stpcpy(p, b);
        p = form_encode(p, client_secret);
        *p = 0;
        return body;
}

const char *zuora_verdict_to_string(ZuoraVerdict v) {
        switch (v) {
        case ZUORA_VERDICT_OK:
                return "ok";
        case ZUORA_VERDICT_RETRY:
                return "retry";
        case ZUORA_VERDICT_RATE_LIMITED:
                return "rate-limited";
        case ZUORA_VERDICT_REAUTH:
                return "reauth";
        case ZUORA_VERDICT_PERIOD:
                return "period";
        case ZUORA_VERDICT_FORBIDDEN:
                return "forbidden";
        case ZUORA_VERDICT_NOT_FOUND:
                return "not-found";
        case ZUORA_VERDICT_FAILED:
                return "failed";
        case _ZUORA_VERDICT_MAX:
        case _ZUORA_VERDICT_INVALID:
                break;
        }
        return NULL;
}

/* ---- URLs ---- */

char *zuora_url(const char *base_url, ZuoraEndpoint endpoint, const char *env_id, const char *job_id) {
        char *url = NULL;
        int r = -EINVAL;

        assert(base_url);
        switch (endpoint) {
        case ZUORA_ENDPOINT_TOKEN:
                r = asprintf(&url, "%s/oauth/token", base_url);
                break;
        case ZUORA_ENDPOINT_ENVIRONMENT:
                r = asprintf(&url, "%s/test-environments/%s", base_url, env_id);
                break;
        case ZUORA_ENDPOINT_JOBS:
                r = asprintf(&url, "%s/test-environments/%s/jobs", base_url, env_id);
                break;
        case ZUORA_ENDPOINT_JOB:
                r = asprintf(&url, "%s/test-environments/%s/jobs/%s", base_url, env_id, job_id);
                break;
        case ZUORA_ENDPOINT_JOB_ACTIONS:
                r = asprintf(&url, "%s/test-environments/%s/jobs/%s/actions", base_url, env_id, job_id);
                break;
        case ZUORA_ENDPOINT_NOTIFICATIONS:
                r = asprintf(&url, "%s/test-environments/%s/notifications", base_url, env_id);
                break;
        case ZUORA_ENDPOINT_NOTIFICATION:
                r = asprintf(&url, "%s/test-environments/%s/notifications/%s", base_url, env_id, job_id);
                break;
        case _ZUORA_ENDPOINT_MAX:
        case _ZUORA_ENDPOINT_INVALID:
                break;
        }
        return r < 0 ? NULL : url;
}

/* ---- words for the operator ---- */

char *zuora_answer_text(const ZuoraAnswer *a, char *buf, size_t size) {
        const char *text = a->text;

        /* What Zuora said first (a 401 from the token endpoint too), then
         * why nothing usable came. */
        if (a->verdict == ZUORA_VERDICT_REAUTH)
                snprintf(
                        buf,
                        size,
                        "Zuora refused the credentials (401%s%s): check client_id/client_secret",
                        text ? ": " : "",
                        text ?: "");
        else if (a->verdict == ZUORA_VERDICT_FORBIDDEN)
                snprintf(
                        buf,
                        size,
                        "Zuora answered 403 Forbidden (%s): the OAuth client's user needs the \"Refresh "
                        "Central "
                        "Sandbox\" (or \"Refresh Developer Sandbox\") permission",
                        text ?: "no reason given");
        else if (a->verdict == ZUORA_VERDICT_PERIOD)
                snprintf(buf, size, "Zuora refused it: %s", text ?: "(no reason)");
        else if (a->verdict == ZUORA_VERDICT_FAILED || a->verdict == ZUORA_VERDICT_NOT_FOUND)
                snprintf(buf, size, "Zuora answered %ld: %s", a->status, text ?: "(no reason given)");
        else if (a->token_failed)
                snprintf(buf, size, "no token: %s", text ?: "the token endpoint failed");
        else if (a->transport_error)
                snprintf(buf, size, "%s", text ?: "transport error");
        else if (a->malformed)
                snprintf(
                        buf,
                        size,
                        "Zuora answered %ld, but %s",
                        a->status,
                        a->body_size == 0 ? "with no body"
                                          : "the body is not a job (not JSON, cut short, or without an id)");
        else if (a->status > 0)
                snprintf(buf, size, "Zuora answered %ld%s%s", a->status, text ? ": " : "", text ?: "");
        else
                snprintf(buf, size, "%s", text ?: "no answer");
        return buf;
}
