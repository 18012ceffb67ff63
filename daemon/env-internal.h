/* SPDX-License-Identifier: MIT */
/*
 * What the files of one environment's lifecycle share: env.c (the slot:
 * planning, firing, the eligibility check, the intent, retries),
 * env-list.c (the list check), env-submit.c (the POST and its verdicts) and
 * env-job.c (following the job to its end).
 * Nothing outside them includes this.
 */
#pragma once

#include "env.h"
#include "report.h"

/* What the first attempt at a slot waits for before its POST (Env.waiting). */
enum {
        WAIT_CHECK = 1 << 0,  /* the eligibility check's answer */
        WAIT_LIST = 1 << 1,   /* the list check's answer */
        WAIT_INTENT = 1 << 2, /* the intent on disk */
};

/* The host's clock, µs; and the wall clock in seconds. */
uint64_t env_now_usec(const Env *e, clockid_t clock);
int64_t env_now(const Env *e);

/* The state changed: have it written at the end of this turn of the loop. */
void env_save_later(const Env *e);

/* The URL of ENDPOINT for this environment (and JOB_ID). */
char *env_url(const Env *e, ZuoraEndpoint endpoint, const char *job_id);

/* The environment's entry in the state. */
StateEnv *env_st(const Env *e);

/* The fields every event of this environment carries, and SLOT. */
ReportFields env_fields(const Env *e, int64_t slot);

void env_set_error(Env *e, const char *text);

/* Event KIND happened, with F's fields (and JOB's times, may be NULL), saying MESSAGE (may be NULL). */
void env_event(Env *e, EventKind kind, const ReportFields *f, const ZuoraJob *job, const char *message);

/* The wait timer: a poll or a retry after DELAY µs. */
void env_arm_wait(Env *e, uint64_t delay);
void env_disarm_wait(Env *e);

/* Changes state and runs the new state's entry action. */
void env_enter_state(Env *e, EnvState s);

/* Works on SLOT now (DUE says why), unless the overlap or min_interval rule skips it. */
void env_begin(Env *e, int64_t slot, ReportDue due);

/* Plans the next slot. */
void env_schedule(Env *e);

/* The end of a slot's processing, whatever the outcome. */
void env_slot_done(Env *e);

/* The refresh of the current slot failed for good, saying MESSAGE. */
void env_fail(Env *e, const char *message);

/* Submits again after DELAY (UINT64_MAX: a backoff delay), unless retry_for has run out. */
void env_retry(Env *e, uint64_t delay, int64_t http_status, const char *track_id, const char *why);

/* A GET of ENDPOINT for this environment, answered to DONE. */
int env_get(Env *e, ZuoraEndpoint endpoint, ClientDoneFunc done, ClientCall **ret);

/* Cancels the checks out (CHECKING's GETs) and what they were waited for. */
void env_cancel_calls(Env *e);

/* CHECKING: one of the three (check, list, intent) is done; the POST
 * leaves after the last. */
void env_proceed(Env *e);

/* The list check's GET (env-list.c); < 0 when it cannot be sent. */
int env_list_send(Env *e);

/* LISTING's entry: the list check alone (env-list.c). */
void env_enter_listing(Env *e);

/* SUBMITTING's entry: the POST (env-submit.c). */
void env_enter_submitting(Env *e);

/* Follows JOB at POLLING_URL as the slot's refresh, ADOPTED or submitted (env-job.c). */
void env_track(Env *e, const ZuoraJob *job, const char *polling_url, bool adopted);

/* Polls the job followed now (env-job.c). */
void env_poll(Env *e);
