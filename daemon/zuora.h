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
        char *status; /* as sent: "IN_PROGRESS"; NULL if absent */
        int progress; /* 0..100, -1 when absent */
        char *test_environment_id;
        int64_t create_time;
        int64_t update_time;
        int64_t job_start_time;
        int64_t job_end_time;
        int64_t estimated_completion_time;
        int64_t scheduled_refresh_time;
} ZuoraJob;

/* What to do with an answer. */
typedef enum ZuoraVerdict {
        ZUORA_VERDICT_OK,           /* 2xx with a well-formed body */
        ZUORA_VERDICT_RETRY,        /* 5xx, transport errors, malformed or truncated JSON */
        ZUORA_VERDICT_RATE_LIMITED, /* 429: retry after the delay the server asked for */
        ZUORA_VERDICT_REAUTH,       /* 401: new token, one retry */
        ZUORA_VERDICT_PERIOD,       /* 403/409 "Only one refresh can be performed during a set period" */
        ZUORA_VERDICT_FORBIDDEN,    /* any other 403: a missing permission */
        ZUORA_VERDICT_NOT_FOUND,    /* 404 */
        ZUORA_VERDICT_FAILED,       /* 400 and other 4xx: no retry */
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

/* A recipient of Zuora's e-mails about an environment's jobs
 * (TestEnvironmentNotificationResponse). */
typedef struct ZuoraRecipient {
        char *id;
        char *address;
        char *name; /* may be NULL */
} ZuoraRecipient;

/* Parses the notifications list (shaped as the job list); items without a
 * usable id or an address are skipped. */
int zuora_parse_recipients(const char *body, size_t size, ZuoraRecipient **ret, size_t *ret_n);
int zuora_parse_recipient(const char *body, size_t size, ZuoraRecipient *ret);
void zuora_recipients_free(ZuoraRecipient *l, size_t n);

/* {"address": ADDRESS, "name": NAME or null}: a new string. */
char *zuora_recipient_body(const char *address, const char *name);

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

/* How a job ended, by its status. */
typedef enum ZuoraOutcome {
        ZUORA_OUTCOME_COMPLETED, /* the sandbox is refreshed */
        ZUORA_OUTCOME_FAILED,
        ZUORA_OUTCOME_CANCELED, /* CANCELED or CANCELLED */
        ZUORA_OUTCOME_OTHER,    /* a jobEndTime under another status, or none */
        _ZUORA_OUTCOME_MAX,
        _ZUORA_OUTCOME_INVALID = -EINVAL,
} ZuoraOutcome;

ZuoraOutcome zuora_status_outcome(const char *status);

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

/* The API's resources refreshd uses. */
typedef enum ZuoraEndpoint {
        ZUORA_ENDPOINT_TOKEN,         /* /oauth/token */
        ZUORA_ENDPOINT_ENVIRONMENT,   /* /test-environments/{id} */
        ZUORA_ENDPOINT_JOBS,          /* /test-environments/{id}/jobs */
        ZUORA_ENDPOINT_JOB,           /* /test-environments/{id}/jobs/{job} */
        ZUORA_ENDPOINT_JOB_ACTIONS,   /* /test-environments/{id}/jobs/{job}/actions */
        ZUORA_ENDPOINT_NOTIFICATIONS, /* /test-environments/{id}/notifications */
        ZUORA_ENDPOINT_NOTIFICATION,  /* /test-environments/{id}/notifications/{job}: JOB_ID is its id */
        _ZUORA_ENDPOINT_MAX,
        _ZUORA_ENDPOINT_INVALID = -EINVAL,
} ZuoraEndpoint;

/* BASE_URL (without a trailing '/') and the path of ENDPOINT for test
 * environment ENV_ID and job JOB_ID (either NULL where the endpoint has
 * none). A new string, or NULL when out of memory. */
char *zuora_url(const char *base_url, ZuoraEndpoint endpoint, const char *env_id, const char *job_id);

/* The cancel action's body. */
#define ZUORA_CANCEL_BODY "{\"jobAction\":\"CANCEL\"}"

/* An answer that did not give what was asked, as the operator is told of
 * it, by the daemon and the commands alike. */
typedef struct ZuoraAnswer {
        ZuoraVerdict verdict;
        long status;          /* 0: no answer */
        bool transport_error; /* no answer came: TEXT is the transport's words */
        bool token_failed;    /* no request was sent: the token could not be had */
        bool malformed;       /* a 2xx whose body is not what was asked */
        size_t body_size;
        const char *text; /* Zuora's reason or the transport's words; may be NULL */
} ZuoraAnswer;

/* Into BUF (SIZE bytes): "Zuora refused the credentials (401): check
 * client_id/client_secret", "Zuora answered 403 Forbidden (…): the OAuth
 * client's user needs the \"Refresh Central Sandbox\" … permission",
 * "Zuora answered 400: …", "no token: …", and so on. Returns BUF. */
char *zuora_answer_text(const ZuoraAnswer *a, char *buf, size_t size);
