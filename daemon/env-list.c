/* SPDX-License-Identifier: MIT */
/*
 * An environment's list check: GET .../jobs before a slot's POST, and what
 * the list means for the slot. A job that covers the slot
 * (plan_covering_job(), Zuora's times read through its clock as measured)
 * is adopted and followed; one that runs at Zuora and does not cover it
 * skips the slot; with neither the POST goes ahead, unless the last POST's
 * answer may have made a job (must_list): then the refresh fails, and it
 * is never POSTed again.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "env-internal.h"
#include "macro.h"
#include "plan.h"
#include "report.h"

static void env_on_listed(const ClientResult *res, void *userdata);

int env_list_send(Env *e) {
        return env_get(e, ZUORA_ENDPOINT_JOBS, env_on_listed, &e->call);
}

/* LISTING: the list check alone, before a retry, for a deferred slot, or
 * after a restart; a refresh missed is worse than the small chance of a
 * double, so a list that cannot be asked for is no reason to wait. */
void env_enter_listing(Env *e) {
        int r = env_list_send(e);

        if (r >= 0)
                return;
        if (e->must_list)
                env_retry(e, UINT64_MAX, REPORT_UNSET, NULL, strerror(-r)); /* never a POST again */
        else
                env_enter_state(e, ENV_INTENT);
}

/* No job covers the slot (or the list could not be read): on to the POST. */
static void env_listed_none(Env *e) {
        if (e->state == ENV_CHECKING)
                env_proceed(e);
        else
                env_enter_state(e, ENV_INTENT);
}

/* The list could not be read. A refresh missed is worse than the small
 * chance of a double: on to the POST; but when the last POST may have
 * created a job (must_list), it is never sent again: the list is asked
 * for again, within retry_for. */
static void env_list_failed(Env *e, const ClientResult *res) {
        char why[700];

        if (!e->must_list) {
                env_listed_none(e);
                return;
        }
        ZuoraAnswer a = client_result_answer(res, /* malformed= */ res->verdict == ZUORA_VERDICT_OK);
        snprintf(
                why,
                sizeof(why),
                "the job list cannot be read (%s)",
                zuora_answer_text(&a, (char[600]) {}, 600));
        env_retry(e, UINT64_MAX, res->response->status, res->track_id, why);
}

/* A refresh already runs at Zuora that refreshd did not start for this
 * slot: the slot is skipped, as it is while a job of its own runs. */
static void env_skip_running(Env *e, const ZuoraJob *job) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e, e->slot);

        f.job_id = job->id;
        f.job_status = job->status;
        ReportSkip why = { .reason = REPORT_SKIP_RUNNING_AT_ZUORA,
                           .job_id = job->id,
                           /* Zuora's page: nextRefreshTime has no value while a job runs. */
                           .no_next_refresh = st->zuora_next_refresh == STATE_TIME_UNSET &&
                                              st->zuora_last_refresh != STATE_TIME_UNSET };
        report_slot_skipped(e->ec, &f, &why);
        env_event(e, EVENT_SKIPPED, &f, job, report_skip_reason(e->ec, &why, (char[300]) {}, 300));
        env_cancel_calls(e);
        env_slot_done(e);
}

/* What the list check knows besides the list. */
static void env_plan_slot(
        const Env *e, PlanSlot *ret, int64_t earlier[static 3], const char *known[static 2]) {
        StateEnv *st = env_st(e);

        earlier[0] = e->prev_slot;
        earlier[1] = st->last_job ? st->last_job->slot : STATE_TIME_UNSET;
        earlier[2] = st->last_submitted;
        known[0] = st->last_job ? st->last_job->id : NULL;
        known[1] = st->job ? st->job->id : NULL;
        *ret = (PlanSlot) {
                .slot = e->slot,
                .earlier = earlier,
                .n_earlier = 3,
                .known_ids = known,
                .n_known_ids = 2,
                .clock = e->host->ops->zuora_clock(e->host),
                .now_usec = (int64_t) env_now_usec(e, CLOCK_REALTIME),
        };
}

static void env_on_listed(const ClientResult *res, void *userdata) {
        Env *e = userdata;
        ZuoraJob *jobs = NULL;
        const ZuoraJob *found, *running;
        int64_t earlier[3];
        const char *known[2];
        PlanSlot ps;
        size_t n = 0;

        e->call = NULL;
        if (e->state == ENV_CHECKING)
                e->waiting &= ~WAIT_LIST;
        if (res->verdict != ZUORA_VERDICT_OK ||
            zuora_parse_job_list(res->response->body, res->response->body_size, &jobs, &n) < 0) {
                env_list_failed(e, res);
                return;
        }
        env_plan_slot(e, &ps, earlier, known);
        found = plan_covering_job(e->ec, &ps, jobs, n);
        running = found ? NULL : plan_running_job(jobs, n);
        if (found) {
                _cleanup_free_ char *url = env_url(e, ZUORA_ENDPOINT_JOB, found->id);
                env_cancel_calls(e); /* CHECKING: the eligibility check is moot */
                if (url)
                        env_track(e, found, url, /* adopted= */ true);
        } else if (running)
                env_skip_running(e, running);
        else if (e->must_list)
                /* Zuora said a job runs, or accepted a refresh whose job cannot
                 * be named, and none in the list is this slot's. */
                env_fail(e, e->last_error ?: "Zuora answered 409");
        else
                env_listed_none(e);
        zuora_job_list_free(jobs, n);
}
