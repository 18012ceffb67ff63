/* SPDX-License-Identifier: MIT */
/*
 * Zuora's v1 REST API as refreshd speaks it: request bodies, and answers
 * (JSON parsed with yajl) turned into plain values and one verdict. Pure:
 * bytes in, values out; no I/O, no clock, no logging.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZUORA_TIME_UNSET INT64_MIN
#define ZUORA_TRACK_ID_MAX 65 /* 64 characters and a NUL */

/* A JobResponse, as much of it as refreshd uses. Times are seconds since
 * the epoch, ZUORA_TIME_UNSET when absent or null. */
typedef struct ZuoraJob {
        char *id;
        char *status;             /* as sent: "IN_PROGRESS"; NULL if absent */
        int progress;             /* 0..100, -1 when absent */
        char *test_environment_id;
        int64_t create_time;
        int64_t job_start_time;
        int64_t job_end_time;
        int64_t estimated_completion_time;
        int64_t scheduled_refresh_time;
} ZuoraJob;

/* What to do with an answer. */
typedef enum ZuoraVerdict {
        ZUORA_VERDICT_OK,            /* 2xx with a well-formed body */
        ZUORA_VERDICT_RETRY,         /* 5xx, transport errors, malformed or truncated JSON */
        ZUORA_VERDICT_RATE_LIMITED,  /* 429: retry after the delay the server asked for */
        ZUORA_VERDICT_REAUTH,        /* 401: new token, one retry */
        ZUORA_VERDICT_PERIOD,        /* 403/409 "Only one refresh can be performed during a set period" */
        ZUORA_VERDICT_FORBIDDEN,     /* any other 403: a missing permission */
        ZUORA_VERDICT_NOT_FOUND,     /* 404 */
        ZUORA_VERDICT_FAILED,        /* 400 and other 4xx: no retry */
        _ZUORA_VERDICT_MAX,
        _ZUORA_VERDICT_INVALID = -EINVAL,
} ZuoraVerdict;

void zuora_job_done(ZuoraJob *j); /* frees the members, not J */

/* Parses a JobResponse object. -EBADMSG when it is not JSON, not an
 * object, or has no string "id". */
int zuora_parse_job(const char *body, size_t size, ZuoraJob *ret);

/* Parses a job list: a bare array, or an object holding it under "result",
 * "data" or "jobs". Items without an id are skipped. */
int zuora_parse_job_list(const char *body, size_t size, ZuoraJob **ret, size_t *ret_n);
void zuora_job_list_free(ZuoraJob *jobs, size_t n);

/* Parses the OAuth token answer. The token is returned in a new buffer the
 * caller must wipe (explicit_bzero) before freeing; *ret_expires_in in
 * seconds (3600 when absent). */
int zuora_parse_token(const char *body, size_t size, char **ret_token, uint64_t *ret_expires_in);

/* Parses a TestEnvironment's lastRefreshTime and nextRefreshTime. -EBADMSG
 * when the body is not a JSON object or has neither. */
int zuora_parse_environment(const char *body, size_t size, int64_t *ret_last, int64_t *ret_next);

/* Zuora's own reason text from an error body ({"reasons":[{"message":…}]},
 * {"message":…}, {"error":…}), joined with "; ". NULL when there is none.
 * Newlines and control characters are replaced by spaces. */
char *zuora_error_text(const char *body, size_t size);

/* The verdict for an answer: STATUS 0 with TRANSPORT_ERROR < 0 for no
 * answer. BODY_OK says whether a 2xx body parsed as expected. */
ZuoraVerdict zuora_classify(long status, int transport_error, const char *body, size_t size, bool body_ok);

/* The delay a 429 asks for, from Retry-After (seconds or an HTTP-date,
 * relative to NOW) or else ratelimit-reset (seconds). -ENODATA when
 * neither is usable. */
int zuora_retry_after(const char *retry_after, const char *ratelimit_reset, int64_t now, uint64_t *ret_usec);

/* COMPLETED, FAILED, CANCELED and CANCELLED (any case). */
bool zuora_status_is_terminal(const char *status);

/* NEW, QUEUED, IN_PROGRESS and the terminal ones. */
bool zuora_status_is_known(const char *status);

/* A job has ended: a terminal status or a job end time. */
bool zuora_job_has_ended(const ZuoraJob *j);

/* A fresh Zuora-Track-Id: "refreshd-" and 32 hex digits of RANDOM. */
void zuora_track_id(const uint8_t random[16], char buf[static ZUORA_TRACK_ID_MAX]);

/* The create-job body: {"jobType":"REFRESH"}, plus scheduledRefreshTime
 * when SCHEDULED is not ZUORA_TIME_UNSET. Returns a new string. */
char *zuora_job_request_body(int64_t scheduled);

/* Idempotency-Key for environment ID's slot SLOT: stable across restarts. */
char *zuora_idempotency_key(const char *env_id, int64_t slot);

/* The form body of the token request, with both values URL-encoded. The
 * caller wipes it before freeing: it holds the secret. */
char *zuora_token_request_body(const char *client_id, const char *client_secret);

/* Parses an RFC 3339 time as Zuora writes it ("2019-08-24T14:15:22Z",
 * fractions and offsets allowed). */
int zuora_parse_time(const char *s, int64_t *ret);

const char *zuora_verdict_to_string(ZuoraVerdict v);
