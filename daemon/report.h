/* SPDX-License-Identifier: MIT */
/*
 * Reporting: one function per event kind, each with its own MESSAGE_ID
 * (refreshd-messages.h), to the journal (sd_journal_send, structured
 * REFRESHD_* fields) or to the console (one logfmt line per event). Also
 * the one-line STATUS= for sd_notify. The manager and the commands call
 * these; nothing below them logs.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum LogTarget {
        LOG_TARGET_AUTO,      /* journal under systemd (JOURNAL_STREAM or INVOCATION_ID), else console */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_CONSOLE,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

#define REPORT_UNSET INT64_MIN

/* The structured fields of one event. Strings may be NULL and numbers
 * REPORT_UNSET: those fields are left out. */
typedef struct ReportFields {
        const char *environment;     /* REFRESHD_ENVIRONMENT */
        const char *environment_id;  /* REFRESHD_ENVIRONMENT_ID */
        int64_t slot;                /* REFRESHD_SLOT, seconds; written as RFC 3339 UTC */
        const char *job_id;          /* REFRESHD_JOB_ID */
        const char *job_status;      /* REFRESHD_JOB_STATUS */
        int64_t progress;            /* REFRESHD_PROGRESS */
        const char *track_id;        /* REFRESHD_TRACK_ID */
        int64_t http_status;         /* REFRESHD_HTTP_STATUS */
        int64_t retry_in_usec;       /* REFRESHD_RETRY_IN, written in seconds with ms ("12.500s") */
} ReportFields;

#define REPORT_FIELDS_INIT                                                                                     \
        { .slot = REPORT_UNSET, .progress = REPORT_UNSET, .http_status = REPORT_UNSET,                         \
          .retry_in_usec = REPORT_UNSET }

/* Picks the target; CONSOLE writes to F (stderr when NULL). */
void report_init(LogTarget target, FILE *console);

/* The target actually in use (AUTO resolved). */
LogTarget report_target(void);

/* Emits one event: MESSAGE_ID is a 32-hex-digit id from
 * refreshd-messages.h, PRIORITY a syslog level (LOG_INFO...). The message
 * must read well on its own. Console: "2026-12-06T03:00:00.004Z info
 * MESSAGE REFRESHD_ENVIRONMENT=uat ..." (logfmt: a value with spaces, '"'
 * or '=' is quoted with '"' and '\' escaped). */
void report_event(const char *message_id, int priority, const ReportFields *f, const char *format, ...)
        __attribute__((format(printf, 4, 5)));

/* A plain log line without a MESSAGE_ID (start-up, config errors). */
void report_log(int priority, const char *format, ...) __attribute__((format(printf, 2, 3)));

LogTarget log_target_from_string(const char *s);
const char *log_target_to_string(LogTarget t);
