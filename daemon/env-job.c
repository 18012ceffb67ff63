/* SPDX-License-Identifier: MIT */
/*
 * An environment following its job: the poll at its Location every
 * poll_interval, each status and progress change reported, and the end
 * (COMPLETED, FAILED, CANCELED, a jobEndTime, or gone) recorded as the last
 * job, after which the next slot is planned.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "env-internal.h"
#include "macro.h"
#include "plan.h"
#include "report.h"

void env_track(Env *e, const ZuoraJob *job, const char *polling_url, bool adopted) {
        StateEnv *st = env_st(e);

        if (state_env_follow(st, job->id, polling_url, job->status, job->progress, env_now(e), e->slot) <
            0) {
                report_log(LOG_ERR, "environment '%s': out of memory", e->name);
                return;
        }
        /* min_interval counts from the slot a refresh was submitted for. */
        if (!adopted)
                st->last_submitted = e->slot;
        e->unknown_status_warned = false;
        e->poll_failing = false;
        if (adopted) {
                ReportFields f = env_fields(e, e->slot);
                f.job_id = job->id;
                f.job_status = job->status;
                report_adopted(e->ec, &f);
        }
        /* The slot is covered: the intent is fulfilled. */
        env_slot_done(e);
        env_enter_state(e, ENV_TRACKING);
        env_arm_wait(e, e->ec->poll_interval);
        env_save_later(e);
}

/* The job followed ended: it becomes the last job. LOST: it is gone at Zuora. */
static EventKind outcome_event(ZuoraOutcome outcome) {
        switch (outcome) {
        case ZUORA_OUTCOME_COMPLETED:
                return EVENT_COMPLETED;
        case ZUORA_OUTCOME_CANCELED:
                return EVENT_CANCELED;
        default:
                return EVENT_FAILED; /* FAILED, or a jobEndTime under a status of no known end */
        }
}

static void env_job_ended(Env *e, const char *status, const ZuoraJob *job, bool lost) {
        StateEnv *st = env_st(e);
        ZuoraOutcome outcome = zuora_status_outcome(status);
        ReportFields f = env_fields(e, st->job->slot);
        char message[300];

        f.job_id = st->job->id;
        f.job_status = status;
        if (lost) {
                report_job_lost(e->ec, &f);
                snprintf(
                        message,
                        sizeof(message),
                        "is gone: Zuora answers 404 for it; the refresh's outcome is unknown");
        } else {
                report_job_ended(e->ec, &f, outcome);
                snprintf(message, sizeof(message), "ended: %s", status);
        }
        env_event(
                e,
                lost ? EVENT_LOST : outcome_event(outcome),
                &f,
                job,
                !lost && outcome == ZUORA_OUTCOME_COMPLETED ? NULL : message);
        (void) state_env_end_job(
                st, status, !lost && outcome == ZUORA_OUTCOME_COMPLETED ? NULL : message, env_now(e));
        env_disarm_wait(e);
        env_save_later(e);
        env_enter_state(e, ENV_IDLE); /* plans the next slot, unless removed: then the manager frees it */
}

/* The job's new status and progress, reported as they change. */
static void env_job_update(Env *e, const ZuoraJob *job, const char *track_id, bool ended) {
        StateJob *sj = env_st(e)->job;
        bool status_changed = state_job_set_status(sj, job->status);
        bool progress_changed = job->progress >= 0 && job->progress != sj->progress;
        ReportFields f = env_fields(e, sj->slot);

        f.job_id = sj->id;
        f.track_id = track_id;
        if (progress_changed)
                sj->progress = job->progress;
        if (status_changed && !ended) {
                /* An end is reported once, as the job's end. */
                f.job_status = job->status;
                f.progress = job->progress >= 0 ? job->progress : REPORT_UNSET;
                report_job_status(e->ec, &f);
                if (job->status && strcasecmp(job->status, "IN_PROGRESS") == 0)
                        env_event(e, EVENT_STARTED, &f, job, NULL);
                if (!zuora_status_is_known(job->status) && !e->unknown_status_warned) {
                        report_job_unknown_status(e->ec, &f);
                        e->unknown_status_warned = true;
                }
        } else if (progress_changed && !status_changed && !ended) {
                f.job_status = sj->status;
                f.progress = job->progress;
                report_job_progress(e->ec, &f);
        }
        if ((status_changed && !ended) || (progress_changed && !status_changed && !ended))
                env_save_later(e);
        e->host->ops->status_changed(e->host);
}

static void env_on_polled_answer(Env *e, const ClientResult *res) {
        StateEnv *st = env_st(e);
        ZuoraJob job = {};

        if (res->verdict == ZUORA_VERDICT_NOT_FOUND) {
                env_job_ended(e, "LOST", NULL, /* lost= */ true);
                return;
        }
        if (res->verdict != ZUORA_VERDICT_OK ||
            zuora_parse_job(res->response->body, res->response->body_size, &job) < 0) {
                if (!e->poll_failing) {
                        ReportFields f = env_fields(e, st->job->slot);
                        f.job_id = st->job->id;
                        f.track_id = res->track_id;
                        f.http_status = res->response->status > 0 ? res->response->status : REPORT_UNSET;
                        report_poll_failed(
                                e->ec,
                                &f,
                                res->zuora_text                    ? res->zuora_text
                                : res->verdict == ZUORA_VERDICT_OK ? "the answer is not a job"
                                                                   : zuora_verdict_to_string(res->verdict));
                        e->poll_failing = true;
                }
                env_arm_wait(e, e->ec->poll_interval);
                return;
        }
        e->poll_failing = false;

        bool ended = zuora_job_has_ended(&job);
        env_job_update(e, &job, res->track_id, ended);
        if (ended)
                env_job_ended(e, job.status ?: "ENDED", &job, /* lost= */ false);
        else
                env_arm_wait(e, e->ec->poll_interval);
        zuora_job_done(&job);
}

static void env_on_polled(const ClientResult *res, void *userdata) {
        Env *e = userdata;

        e->call = NULL;
        env_on_polled_answer(e, res);
        /* After a restart, slots missed meanwhile are planned once the first
         * poll told whether the job is still running (skip) or not (catch up). */
        if (e->plan_after_poll) {
                e->plan_after_poll = false;
                if (e->state == ENV_TRACKING)
                        env_schedule(e);
        }
}

void env_poll(Env *e) {
        StateJob *j = env_st(e)->job;
        int r;

        r = e->host->ops->call(e->host, CLIENT_GET(j->polling_url), env_on_polled, e, &e->call);
        if (r == -EPERM) {
                /* A polling URL away from base_url (a state file from another
                 * config): never send the token there; use the usual address. */
                char *url = env_url(e, ZUORA_ENDPOINT_JOB, j->id);
                if (url) {
                        report_log(
                                LOG_WARNING,
                                "environment '%s': job %s: polling at %s instead of %s, which is not on "
                                "base_url",
                                e->name,
                                j->id,
                                url,
                                j->polling_url);
                        free(j->polling_url);
                        j->polling_url = url;
                        env_save_later(e);
                        r = e->host->ops->call(e->host, CLIENT_GET(url), env_on_polled, e, &e->call);
                }
        }
        if (r < 0) {
                report_log(
                        LOG_ERR, "environment '%s': cannot poll job %s: %s", e->name, j->id, strerror(-r));
                env_arm_wait(e, e->ec->poll_interval);
        }
}

bool env_is_busy(const Env *e) {
        StateEnv *st = env_st(e);
        return e->state != ENV_IDLE || (st && st->job);
}

char *env_status_text(const Env *e) {
        StateEnv *st = env_st(e);
        char *s = NULL;
        int r;

        if (st && st->job) {
                if (st->job->progress >= 0)
                        r = asprintf(
                                &s,
                                "%s %s %d%%",
                                e->name,
                                st->job->status ?: "SUBMITTED",
                                st->job->progress);
                else
                        r = asprintf(&s, "%s %s", e->name, st->job->status ?: "SUBMITTED");
        } else if (e->state != ENV_IDLE)
                r = asprintf(&s, "%s %s", e->name, env_state_to_string(e->state));
        else
                return NULL;
        return r < 0 ? NULL : s;
}
