/* SPDX-License-Identifier: MIT */
/*
 * What the files of one environment's lifecycle share: env.c (the slot:
 * planning, firing, the checks, the intent, retries), env-submit.c (the
 * POST and its verdicts) and env-job.c (following the job to its end).
 * Nothing outside them includes this.
 */
#pragma once

#include "env.h"
#include "report.h"

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

/* The wait timer: a poll or a retry after DELAY µs. */
void env_arm_wait(Env *e, uint64_t delay);
void env_disarm_wait(Env *e);

/* Changes state and runs the new state's entry action. */
void env_enter_state(Env *e, EnvState s);

/* Plans the next slot. */
void env_schedule(Env *e);

/* The end of a slot's processing, whatever the outcome. */
void env_slot_done(Env *e);

/* The refresh of the current slot failed for good, saying MESSAGE. */
void env_fail(Env *e, const char *message);

/* Submits again after DELAY (UINT64_MAX: a backoff delay), unless retry_for has run out. */
void env_retry(Env *e, uint64_t delay, int64_t http_status, const char *track_id, const char *why);

/* SUBMITTING's entry: the POST (env-submit.c). */
void env_enter_submitting(Env *e);

/* Follows JOB at POLLING_URL as the slot's refresh, ADOPTED or submitted (env-job.c). */
void env_track(Env *e, const ZuoraJob *job, const char *polling_url, bool adopted);

/* Polls the job followed now (env-job.c). */
void env_poll(Env *e);
