/* SPDX-License-Identifier: MIT */
/*
 * Reporting: one function per event kind, each with its own MESSAGE_ID
 * (refreshd-messages.h) and its own message, to the journal
 * (sd_journal_send, structured REFRESHD_* fields) or to the console (one
 * logfmt line per event). The manager and the environments call these;
 * nothing below them logs. Each MESSAGE_ID is used here and nowhere else,
 * which the documentation test checks against the catalog.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "zuora.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO, /* journal under systemd (JOURNAL_STREAM or INVOCATION_ID), else console */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_CONSOLE,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

#define REPORT_UNSET INT64_MIN

/* The structured fields of one event. Strings may be NULL and numbers
 * REPORT_UNSET: those fields are left out. */
typedef struct ReportFields {
        const char *environment;    /* REFRESHD_ENVIRONMENT */
        const char *environment_id; /* REFRESHD_ENVIRONMENT_ID */
        int64_t slot;               /* REFRESHD_SLOT, seconds; written as RFC 3339 UTC */
        const char *job_id;         /* REFRESHD_JOB_ID */
        const char *job_status;     /* REFRESHD_JOB_STATUS */
        int64_t progress;           /* REFRESHD_PROGRESS */
        const char *track_id;       /* REFRESHD_TRACK_ID */
        int64_t http_status;        /* REFRESHD_HTTP_STATUS */
        int64_t retry_in_usec;      /* REFRESHD_RETRY_IN, written in seconds with ms ("12.500s") */
        const char *event;          /* REFRESHD_EVENT: "completed" */
        const char *event_id;       /* REFRESHD_EVENT_ID */
        const char *hook;           /* REFRESHD_HOOK: the program a hook runs */
        const char *hook_stream;    /* REFRESHD_HOOK_STREAM: stdout or stderr */
        const char *webhook_host;   /* REFRESHD_WEBHOOK_HOST: never the whole URL */
        const char *caller;         /* REFRESHD_CALLER: who steered it, "uid 1000 (alice)" */
        const char *reason;         /* REFRESHD_REASON: the reason they gave */
} ReportFields;

#define REPORT_FIELDS_INIT                                                                                  \
        {                                                                                                   \
                .slot = REPORT_UNSET, .progress = REPORT_UNSET, .http_status = REPORT_UNSET,                \
                .retry_in_usec = REPORT_UNSET                                                               \
        }

/* Picks the target; CONSOLE writes to F (stderr when NULL). */
void report_init(LogTarget target, FILE *console);

/* The target actually in use (AUTO resolved). */
LogTarget report_target(void);

/* ---- the daemon's events ---- */

/* refreshd VERSION started with N_ENVS environments from CONFIG_PATH, state in STATE. */
void report_started(size_t n_envs, const char *config_path, const char *state);

/* Stopping on signal SIGNO. */
void report_stopping(int signo);

void report_reloaded(const char *config_path, size_t n_envs);
void report_reload_failed(const char *config_path);

/* STATE (a file) could not be written, error R. */
void report_state_write_failed(const char *state, int r);

/* Zuora's clock differs from ours by OFFSET_USEC (Zuora minus ours), give or
 * take UNCERTAINTY_USEC; AGREES: it no longer does, by more than a few seconds. */
void report_zuora_clock(int64_t offset_usec, int64_t uncertainty_usec, bool agrees);

/* STATE could not be read (WHY) and was moved to ASIDE (NULL: it could not be). */
void report_state_corrupt(const char *state, const char *why, const char *aside);

/* ---- an environment's events ----
 *
 * Each takes the environment's config (its name and id, and the zone the
 * times in the message are written in) and the event's fields; each writes
 * its own MESSAGE_ID, at its own priority. */

typedef enum ReportDue {
        REPORT_DUE_SLOT,         /* its time came */
        REPORT_DUE_CATCH_UP,     /* missed while refreshd was not running */
        REPORT_DUE_CLOCK_JUMPED, /* the clock jumped past it */
        REPORT_DUE_RESUMED,      /* held while paused, caught up on resume as told */
        _REPORT_DUE_MAX,
        _REPORT_DUE_INVALID = -EINVAL,
} ReportDue;

/* The slot F->slot fires. */
void report_slot_due(const EnvConfig *ec, const ReportFields *f, ReportDue why);

typedef enum ReportSkipReason {
        REPORT_SKIP_MISSED,           /* missed while not running, and catch_up is off */
        REPORT_SKIP_RUNNING,          /* job JOB_ID still runs */
        REPORT_SKIP_MIN_INTERVAL,     /* OTHER_SLOT was submitted less than MIN_INTERVAL before */
        REPORT_SKIP_SUBMITTING,       /* OTHER_SLOT is still being submitted */
        REPORT_SKIP_RUNNING_AT_ZUORA, /* job JOB_ID, not refreshd's for this slot, runs at Zuora */
        REPORT_SKIP_PAUSED,           /* paused by BY (until UNTIL), for NOTE */
        REPORT_SKIP_TOLD,             /* `refreshd skip` by BY, for NOTE */
        _REPORT_SKIP_REASON_MAX,
        _REPORT_SKIP_REASON_INVALID = -EINVAL,
} ReportSkipReason;

typedef struct ReportSkip {
        ReportSkipReason reason;
        const char *job_id;
        int64_t other_slot;
        uint64_t min_interval; /* µs */
        bool no_next_refresh;  /* RUNNING_AT_ZUORA: Zuora shows no nextRefreshTime, but a lastRefreshTime */
        const char *by;        /* PAUSED, TOLD */
        const char *note;      /* PAUSED, TOLD: their reason; may be NULL */
        int64_t until;         /* PAUSED: or REPORT_UNSET */
} ReportSkip;

void report_slot_skipped(const EnvConfig *ec, const ReportFields *f, const ReportSkip *why);

/* Why a slot was skipped, in words ("job 8f… is still running"), into REASON. */
char *report_skip_reason(const EnvConfig *ec, const ReportSkip *why, char *reason, size_t size);

/* ---- steering: F->caller did it, F->reason says why ---- */

/* Paused until UNTIL (REPORT_UNSET: until resumed). */
void report_paused(const EnvConfig *ec, const ReportFields *f, int64_t until);
/* Resumed: by F->caller, or by itself when its pause ended (EXPIRED); slot
 * F->slot, held while paused, fires now (REPORT_UNSET: none does). */
void report_resumed(const EnvConfig *ec, const ReportFields *f, bool expired);
/* Slot F->slot is to be skipped (ADDED) or fired again. */
void report_skip_changed(const EnvConfig *ec, const ReportFields *f, bool added);

/* Zuora allows no refresh before ALLOWED_FROM: the slot is DEFERRED to then, or skipped. */
void report_ineligible(const EnvConfig *ec, const ReportFields *f, int64_t allowed_from, bool deferred);

/* The refresh for the slot failed for good, saying MESSAGE. */
void report_refresh_failed(const EnvConfig *ec, const ReportFields *f, const char *message);

/* The slot is submitted again after F->retry_in_usec, the ATTEMPTth time, because of WHY. */
void report_retrying(const EnvConfig *ec, const ReportFields *f, const char *why, unsigned attempt);

/* The POST's answer (WHY) says Zuora may have created a job for the slot
 * that it did not name: its list is asked for it, and the POST is not sent again. */
void report_outcome_unknown(const EnvConfig *ec, const ReportFields *f, const char *why);

void report_submitted(const EnvConfig *ec, const ReportFields *f);

/* Zuora's refresh period refused the slot (REASON); NEXT_ALLOWED may be REPORT_UNSET. */
void report_rejected(const EnvConfig *ec, const ReportFields *f, const char *reason, int64_t next_allowed);

/* A 403 that is not the period (a missing permission), or a 401: MESSAGE says what to do. */
void report_forbidden(const EnvConfig *ec, const ReportFields *f, const char *message);
void report_auth_failed(const EnvConfig *ec, const ReportFields *f, const char *message);

/* The answer's Location URL points away from base_url. */
void report_foreign_location(const EnvConfig *ec, const ReportFields *f, const char *url);

/* Job F->job_id already refreshes the slot: it is followed instead of a submission. */
void report_adopted(const EnvConfig *ec, const ReportFields *f);

/* Job F->job_id has the new status F->job_status (with F->progress). */
void report_job_status(const EnvConfig *ec, const ReportFields *f);
void report_job_unknown_status(const EnvConfig *ec, const ReportFields *f);
void report_job_progress(const EnvConfig *ec, const ReportFields *f);

/* Job F->job_id ended with status F->job_status. */
void report_job_ended(const EnvConfig *ec, const ReportFields *f, ZuoraOutcome outcome);

/* Job F->job_id is gone at Zuora (404). */
void report_job_lost(const EnvConfig *ec, const ReportFields *f);

/* Polling job F->job_id failed (WHY); it goes on. */
void report_poll_failed(const EnvConfig *ec, const ReportFields *f, const char *why);

/* ---- what follows an event ---- */

/* A line hook F->hook wrote on F->hook_stream. */
void report_hook_output(const EnvConfig *ec, const ReportFields *f, const char *line);

/* Hook F->hook ended: EXIT_STATUS (-1: killed by SIGNAL), TIMED_OUT, after DURATION_USEC. */
void report_hook_finished(
        const EnvConfig *ec,
        const ReportFields *f,
        int exit_status,
        int signal,
        bool timed_out,
        uint64_t duration_usec);

/* Hook F->hook could not be started (error R). */
void report_hook_start_failed(const EnvConfig *ec, const ReportFields *f, int r);

/* The event was posted to F->webhook_host, which answered F->http_status. */
void report_webhook_delivered(const EnvConfig *ec, const ReportFields *f);

/* Posting it failed (WHY); F->retry_in_usec set: tried again then, else given up. */
void report_webhook_failed(const EnvConfig *ec, const ReportFields *f, const char *why);

/* A delivery of F->event_id (KEY) was dropped: its hook or webhook is no longer in the config. */
void report_delivery_dropped(const EnvConfig *ec, const ReportFields *f, const char *what);

/* Zuora's e-mail list of the environment changed: ADDRESS ADDED (or removed). */
void report_recipient_changed(const EnvConfig *ec, const ReportFields *f, const char *address, bool added);

/* Keeping the e-mail list in step failed (WHY); it is tried again later. */
void report_recipients_failed(const EnvConfig *ec, const ReportFields *f, const char *why);

/* A plain log line without a MESSAGE_ID (start-up, config errors). */
void report_log(int priority, const char *format, ...) __attribute__((format(printf, 2, 3)));

LogTarget log_target_from_string(const char *s);
const char *log_target_to_string(LogTarget t);
