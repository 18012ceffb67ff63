/* SPDX-License-Identifier: MIT */
/*
 * The events of an environment's lifecycle that hooks and webhooks
 * subscribe to, by their short names ("completed"), as values: what
 * happened, to which environment, slot and job, with a stable id. Written
 * as JSON (a hook's event file, a webhook's body, state.json's outbox), as
 * environment variables and as {name} placeholders in a hook's argv. Pure.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum EventKind {
        EVENT_SUBMITTED,   /* the POST was answered with a job */
        EVENT_STARTED,     /* the job was first seen IN_PROGRESS */
        EVENT_COMPLETED,   /* the job ended COMPLETED: the sandbox is refreshed */
        EVENT_FAILED,      /* the job ended FAILED, or the refresh failed for good without one */
        EVENT_CANCELED,    /* the job ended CANCELED */
        EVENT_LOST,        /* the job is gone at Zuora (404 while polling) */
        EVENT_REJECTED,    /* Zuora's refresh period refused the slot, or nextRefreshTime deferred it */
        EVENT_SKIPPED,     /* a rule skipped the slot (overlap, min_interval, when_ineligible: skip) */
        EVENT_RETRYING,    /* the slot is submitted again after a failure */
        EVENT_HOOK_FAILED, /* a hook of another event exited non-zero, was killed or did not start */
        _EVENT_KIND_MAX,
        _EVENT_KIND_INVALID = -EINVAL,
} EventKind;

#define EVENT_TIME_UNSET INT64_MIN
#define EVENT_ID_LEN 32 /* hexadecimal digits */

/* One event. Strings are owned (event_done() frees them) and may be NULL;
 * times are seconds since the epoch, EVENT_TIME_UNSET when there is none. */
typedef struct Event {
        EventKind kind;
        char id[EVENT_ID_LEN + 1];
        char *environment;
        char *environment_id;
        int64_t slot;
        char *job_id;
        char *job_status;
        int64_t job_start, job_end; /* Zuora's jobStartTime and jobEndTime, in its clock */
        char *track_id;
        char *message;    /* why, in words: a failure's message, a skip's reason */
        int64_t time;     /* when refreshd saw it happen, by our clock */
        unsigned attempt; /* RETRYING: the attempt that follows; 0 otherwise */
        bool test;        /* made up by `refreshd hooks`, not a real event */
} Event;

#define EVENT_INIT                                                                                          \
        {                                                                                                   \
                .kind = _EVENT_KIND_INVALID, .slot = EVENT_TIME_UNSET, .job_start = EVENT_TIME_UNSET,       \
                .job_end = EVENT_TIME_UNSET, .time = EVENT_TIME_UNSET                                       \
        }

void event_done(Event *e);

/* A deep copy of FROM. */
int event_copy(Event *to, const Event *from);

/* Sets e->id from what identifies the event: its environment, slot, job
 * and kind (and, for RETRYING, the attempt; for HOOK_FAILED, CAUSE, the id
 * of the event whose hook failed, and the hook, HOOK_KEY). The same
 * occurrence always gets the same id: a consumer tells a re-delivery from
 * a new event by it. */
void event_set_id(Event *e, const char *cause, const char *hook_key);

/* A 32-hex-digit digest of the SIZE bytes at DATA (FNV-1a, 128 bits): ids
 * and the keys of hooks and webhooks, not for secrets. */
void event_digest(const void *data, size_t size, char buf[static EVENT_ID_LEN + 1]);

/* ---- as text ---- */

typedef struct JsonWriter JsonWriter;
typedef struct JsonNode JsonNode;

/* The event as one JSON object: {"id", "event", "environment", ...}, times
 * in RFC 3339 UTC, absent values as null. */
void event_write(JsonWriter *w, const Event *e);

/* Reads what event_write() wrote. -EBADMSG (with *reterr_what naming the
 * field, a static string) for anything else. */
int event_read(const JsonNode *o, Event *ret, const char **reterr_what);

/* The placeholders a hook's argv and a webhook's text may use: "event",
 * "event_id", "environment", "environment_id", "slot", "job_id",
 * "job_status", "job_start", "job_end", "track_id", "message". */
bool event_placeholder_known(const char *name, size_t len);

/* TEMPLATE with every {name} replaced by the event's value ("" when it has
 * none) and "{{" "}}" by "{" "}". -EINVAL for an unknown name or an
 * unbalanced brace (*ret_bad, may be NULL, then points at it). */
int event_expand(const char *template, const Event *e, char **ret, const char **ret_bad);

/* The event as environment variables, "REFRESHD_EVENT=completed", ...: a
 * new NULL-terminated array of new strings (strv_free() it, macro.h), times in RFC
 * 3339 UTC, absent values left out. */
int event_environment(const Event *e, char ***ret);

/* One line for chat: "refreshd: uat completed (job 8f3…, slot 2026-…)". */
int event_summary(const Event *e, char **ret);

const char *event_kind_to_string(EventKind k);
EventKind event_kind_from_string(const char *s);

/* The names of the kinds, for did-you-mean: NULL-terminated. */
extern const char *const event_kind_names[];
