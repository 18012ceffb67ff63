/* SPDX-License-Identifier: MIT */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "macro.h"
#include "tz.h"

const char *const event_kind_names[] = {
        [EVENT_SUBMITTED] = "submitted",     [EVENT_STARTED] = "started",   [EVENT_COMPLETED] = "completed",
        [EVENT_FAILED] = "failed",           [EVENT_CANCELED] = "canceled", [EVENT_LOST] = "lost",
        [EVENT_REJECTED] = "rejected",       [EVENT_SKIPPED] = "skipped",   [EVENT_RETRYING] = "retrying",
        [EVENT_HOOK_FAILED] = "hook_failed", [_EVENT_KIND_MAX] = NULL,
};

const char *event_kind_to_string(EventKind k) {
        return k >= 0 && k < _EVENT_KIND_MAX ? event_kind_names[k] : NULL;
}

EventKind event_kind_from_string(const char *s) {
        for (EventKind k = 0; s && k < _EVENT_KIND_MAX; k++)
                if (strcmp(s, event_kind_names[k]) == 0)
                        return k;
        return _EVENT_KIND_INVALID;
}

void event_done(Event *e) {
        free(e->environment);
        free(e->environment_id);
        free(e->job_id);
        free(e->job_status);
        free(e->track_id);
        free(e->message);
        *e = (Event) EVENT_INIT;
}

static int dup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

int event_copy(Event *to, const Event *from) {
        *to = *from;
        to->environment = to->environment_id = to->job_id = to->job_status = to->track_id = to->message =
                NULL;
        if (dup_or_null(from->environment, &to->environment) < 0 ||
            dup_or_null(from->environment_id, &to->environment_id) < 0 ||
            dup_or_null(from->job_id, &to->job_id) < 0 ||
            dup_or_null(from->job_status, &to->job_status) < 0 ||
            dup_or_null(from->track_id, &to->track_id) < 0 || dup_or_null(from->message, &to->message) < 0) {
                event_done(to);
                return -ENOMEM;
        }
        return 0;
}

/* ---- ids ---- */

typedef unsigned __int128 u128;

/* FNV-1a with the 128-bit prime 2^88 + 2^8 + 0x3b. */
static u128 fnv_add(u128 h, const void *data, size_t size) {
        const u128 prime = ((u128) 1 << 88) | 0x13b;
        const uint8_t *p = data;

        for (size_t i = 0; i < size; i++) {
                h ^= p[i];
                h *= prime;
        }
        return h;
}

static u128 fnv_basis(void) {
        return ((u128) 0x6c62272e07bb0142ULL << 64) | 0x62b821756295c58dULL;
}

static void u128_hex(u128 h, char buf[static EVENT_ID_LEN + 1]) {
        snprintf(
                buf,
                EVENT_ID_LEN + 1,
                "%016llx%016llx",
                (unsigned long long) (h >> 64),
                (unsigned long long) (h & UINT64_MAX));
}

void event_digest(const void *data, size_t size, char buf[static EVENT_ID_LEN + 1]) {
        u128_hex(fnv_add(fnv_basis(), data, size), buf);
}

/* Adds S and a separator that no string holds (NULL and "" differ). */
static u128 fnv_add_field(u128 h, const char *s) {
        static const uint8_t none = 0xff, end = 0;

        if (!s)
                return fnv_add(h, &none, 1);
        return fnv_add(fnv_add(h, s, strlen(s)), &end, 1);
}

void event_set_id(Event *e, const char *cause, const char *hook_key) {
        char slot[24], attempt[16];
        u128 h = fnv_basis();

        snprintf(slot, sizeof(slot), "%lld", (long long) e->slot);
        snprintf(attempt, sizeof(attempt), "%u", e->attempt);
        h = fnv_add_field(h, e->environment);
        h = fnv_add_field(h, e->slot == EVENT_TIME_UNSET ? NULL : slot);
        h = fnv_add_field(h, e->job_id);
        h = fnv_add_field(h, event_kind_to_string(e->kind));
        if (e->kind == EVENT_RETRYING)
                h = fnv_add_field(h, attempt);
        if (e->kind == EVENT_HOOK_FAILED) {
                h = fnv_add_field(h, cause);
                h = fnv_add_field(h, hook_key);
        }
        if (e->test)
                h = fnv_add_field(h, "test");
        u128_hex(h, e->id);
}

/* ---- fields ---- */

typedef enum FieldType {
        FIELD_STRING,
        FIELD_TIME,
} FieldType;

/* The event's fields, in the order they are written: the JSON key, the
 * variable (REFRESHD_ and the key in capitals) and the placeholder. */
typedef struct EventField {
        const char *key;
        FieldType type;
        size_t offset;
} EventField;

static const EventField fields[] = {
        { "environment", FIELD_STRING, offsetof(Event, environment) },
        { "environment_id", FIELD_STRING, offsetof(Event, environment_id) },
        { "slot", FIELD_TIME, offsetof(Event, slot) },
        { "job_id", FIELD_STRING, offsetof(Event, job_id) },
        { "job_status", FIELD_STRING, offsetof(Event, job_status) },
        { "job_start", FIELD_TIME, offsetof(Event, job_start) },
        { "job_end", FIELD_TIME, offsetof(Event, job_end) },
        { "track_id", FIELD_STRING, offsetof(Event, track_id) },
        { "message", FIELD_STRING, offsetof(Event, message) },
        { "time", FIELD_TIME, offsetof(Event, time) },
};

#define FIELD_STR(e, f) (*(char **) ((uint8_t *) (e) + (f)->offset))
#define FIELD_TIME_OF(e, f) (*(int64_t *) ((uint8_t *) (e) + (f)->offset))

/* The value of field F as text in BUF (times) or in the event; NULL when unset. */
static const char *field_text(const Event *e, const EventField *f, char *buf, size_t size) {
        if (f->type == FIELD_STRING)
                return FIELD_STR(e, f);
        int64_t t = FIELD_TIME_OF(e, f);
        if (t == EVENT_TIME_UNSET || tz_format_utc(t, buf, size) < 0)
                return NULL;
        return buf;
}

static const EventField *field_find(const char *name, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (strlen(fields[i].key) == len && memcmp(fields[i].key, name, len) == 0)
                        return &fields[i];
        return NULL;
}

void event_write(JsonWriter *w, const Event *e) {
        char buf[64];

        json_put_open(w);
        json_put_string(w, "id");
        json_put_string(w, e->id);
        json_put_string(w, "event");
        json_put_string(w, event_kind_to_string(e->kind));
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                json_put_string(w, fields[i].key);
                json_put_string_or_null(w, field_text(e, &fields[i], buf, sizeof(buf)));
        }
        json_put_string(w, "attempt");
        json_put_int(w, e->attempt);
        json_put_string(w, "test");
        json_put_bool(w, e->test);
        json_put_close(w);
}

static int read_field(const JsonNode *v, const EventField *f, Event *e) {
        if (!v || v->type == JSON_NULL)
                return 0;
        if (v->type != JSON_STRING || !json_text(v, false))
                return -EBADMSG;
        if (f->type == FIELD_TIME)
                return tz_parse_iso8601(v->text, &FIELD_TIME_OF(e, f)) < 0 ? -EBADMSG : 0;
        return (FIELD_STR(e, f) = strdup(v->text)) ? 0 : -ENOMEM;
}

int event_read(const JsonNode *o, Event *ret, const char **reterr_what) {
        Event e = EVENT_INIT;
        const JsonNode *v;
        int64_t n;
        int r;

        *reterr_what = "not an object";
        if (!o || o->type != JSON_OBJECT)
                return -EBADMSG;
        *reterr_what = "id";
        v = json_get(o, "id");
        if (!v || !json_text(v, false) || strlen(v->text) != EVENT_ID_LEN ||
            strspn(v->text, "0123456789abcdef") != EVENT_ID_LEN)
                return -EBADMSG;
        memcpy(e.id, v->text, EVENT_ID_LEN + 1);
        *reterr_what = "event";
        if ((e.kind = event_kind_from_string(json_text(json_get(o, "event"), false))) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                *reterr_what = fields[i].key;
                r = read_field(json_get(o, fields[i].key), &fields[i], &e);
                if (r < 0) {
                        event_done(&e);
                        return r;
                }
        }
        *reterr_what = "attempt";
        v = json_get(o, "attempt");
        if (v && (json_integer(v, &n) < 0 || n < 0 || n > UINT32_MAX)) {
                event_done(&e);
                return -EBADMSG;
        }
        e.attempt = v ? (unsigned) n : 0;
        v = json_get(o, "test");
        e.test = v && v->type == JSON_BOOLEAN && v->boolean;
        if (!e.environment) {
                *reterr_what = "environment";
                event_done(&e);
                return -EBADMSG;
        }
        *ret = e;
        return 0;
}

/* ---- placeholders ---- */

bool event_placeholder_known(const char *name, size_t len) {
        return (len == 5 && memcmp(name, "event", 5) == 0) ||
               (len == 8 && memcmp(name, "event_id", 8) == 0) || field_find(name, len);
}

/* The value of placeholder NAME, "" when the event has none. */
static const char *placeholder_value(const Event *e, const char *name, size_t len, char *buf, size_t size) {
        const char *v;

        if (len == 5 && memcmp(name, "event", 5) == 0)
                return event_kind_to_string(e->kind);
        if (len == 8 && memcmp(name, "event_id", 8) == 0)
                return e->id;
        v = field_text(e, field_find(name, len), buf, size);
        return v ? v : "";
}

typedef struct Text {
        char *s;
        size_t n, allocated;
} Text;

static int text_add(Text *t, const char *s, size_t n) {
        if (t->n + n + 1 > t->allocated) {
                size_t room = (t->n + n + 1) * 2;
                char *p = realloc(t->s, room);
                if (!p)
                        return -ENOMEM;
                t->s = p;
                t->allocated = room;
        }
        memcpy(t->s + t->n, s, n);
        t->n += n;
        t->s[t->n] = 0;
        return 0;
}

int event_expand(const char *template, const Event *e, char **ret, const char **ret_bad) {
        _cleanup_free_ char *out = NULL;
        const char *p = template;
        Text t = {};
        char buf[64];
        int r;

        r = text_add(&t, "", 0);
        while (r >= 0 && *p) {
                if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
                        r = text_add(&t, p, 1);
                        p += 2;
                } else if (*p == '{') {
                        const char *end = strchr(p + 1, '}');
                        size_t len = end ? (size_t) (end - p - 1) : 0;
                        if (!end || !event_placeholder_known(p + 1, len)) {
                                r = -EINVAL;
                                break;
                        }
                        const char *v = e ? placeholder_value(e, p + 1, len, buf, sizeof(buf)) : "";
                        r = text_add(&t, v, strlen(v));
                        p = end + 1;
                } else if (*p == '}')
                        r = -EINVAL;
                else {
                        size_t n = strcspn(p, "{}");
                        r = text_add(&t, p, n);
                        p += n;
                }
        }
        out = t.s;
        if (ret_bad)
                *ret_bad = r == -EINVAL ? p : NULL;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

/* ---- variables ---- */

static int env_add(char **l, size_t *n, const char *key, const char *value) {
        size_t len = strlen("REFRESHD_") + strlen(key) + 1 + strlen(value) + 1;
        char *s = malloc(len), *p;

        if (!s)
                return -ENOMEM;
        p = stpcpy(s, "REFRESHD_");
        for (const char *k = key; *k; k++)
                *p++ = (char) (*k >= 'a' && *k <= 'z' ? *k - 'a' + 'A' : *k);
        *p++ = '=';
        strcpy(p, value);
        l[(*n)++] = s;
        l[*n] = NULL;
        return 0;
}

int event_environment(const Event *e, char ***ret) {
        _cleanup_(strv_freep) char **l = calloc(ELEMENTSOF(fields) + 4, sizeof(char *));
        size_t n = 0;
        char buf[64];

        if (!l)
                return -ENOMEM;
        if (env_add(l, &n, "event", event_kind_to_string(e->kind)) < 0 ||
            env_add(l, &n, "event_id", e->id) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const char *v = field_text(e, &fields[i], buf, sizeof(buf));
                if (v && env_add(l, &n, fields[i].key, v) < 0)
                        return -ENOMEM;
        }
        if (e->test && env_add(l, &n, "event_test", "1") < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

int event_summary(const Event *e, char **ret) {
        char slot[64] = "", job[128] = "";
        const char *why = e->message ? e->message : "";

        if (e->slot != EVENT_TIME_UNSET && tz_format_utc(e->slot, slot + 7, sizeof(slot) - 7) >= 0)
                memcpy(slot, ", slot ", 7);
        if (e->job_id)
                snprintf(
                        job,
                        sizeof(job),
                        ", job %.64s%s%s",
                        e->job_id,
                        e->job_status ? " " : "",
                        e->job_status ? e->job_status : "");
        if (asprintf(
                    ret,
                    "refreshd%s: %s %s%s%s%s%s",
                    e->test ? " (test)" : "",
                    e->environment,
                    event_kind_to_string(e->kind),
                    job,
                    slot,
                    *why ? ": " : "",
                    why) < 0)
                return -ENOMEM;
        return 0;
}
