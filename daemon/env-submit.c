/* SPDX-License-Identifier: MIT */
/*
 * An environment's POST and what its answer means: the job to follow, a
 * rejection by Zuora's refresh period (deferred by when_ineligible), a
 * failure for good, or a retry after a backoff (5xx, 429, no answer). An
 * answer that says Zuora may have created a job it does not let us follow
 * (a 409, a 2xx that cannot be read, a redirect) is never answered with
 * another POST: the list check adopts the job, or the refresh fails.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "env-internal.h"
#include "macro.h"
#include "plan.h"
#include "report.h"

static void env_on_submitted(const ClientResult *res, void *userdata);

/* Now, or T, by Zuora's clock as measured (its midpoint), in seconds. */
static int64_t zuora_time(const Env *e, int64_t t) {
        int64_t offset, uncertainty;

        zclock_estimate(
                e->host->ops->zuora_clock(e->host),
                (int64_t) env_now_usec(e, CLOCK_REALTIME),
                &offset,
                &uncertainty);
        return t + offset / 1000000;
}

/* SUBMITTING: the POST. */
void env_enter_submitting(Env *e) {
        StateEnv *st = env_st(e);
        _cleanup_free_ char *url = env_url(e, ZUORA_ENDPOINT_JOBS, NULL);
        _cleanup_free_ char *key = zuora_idempotency_key(e->ec->id, e->slot);
        /* submit_ahead: Zuora starts it at the slot, by its own clock. */
        _cleanup_free_ char *body =
                zuora_job_request_body(e->ec->submit_ahead > 0 ? zuora_time(e, e->slot) : ZUORA_TIME_UNSET);
        int r;

        ClientRequest req = {
                .method = HTTP_METHOD_POST,
                .url = url,
                .body = body,
                .idempotency_key = key,
                .track_id = st->intent_track_id,
        };
        r = url && key && body ? e->host->ops->call(e->host, &req, env_on_submitted, e, &e->call) : -ENOMEM;
        if (r < 0)
                env_retry(e, UINT64_MAX, REPORT_UNSET, NULL, strerror(-r));
}

static void env_submitted_ok(Env *e, const ClientResult *res, const ZuoraJob *job, ReportFields *f) {
        _cleanup_free_ char *url = NULL;
        int r = res->response->location ? e->host->ops->resolve(e->host, res->response->location, &url)
                                        : -ENOENT;

        if (r == -EPERM) {
                report_foreign_location(e->ec, f, url);
                url = mfree(url);
        }
        if (!url)
                url = env_url(e, ZUORA_ENDPOINT_JOB, job->id);
        /* Zuora created it between our POST and its answer: a reading of its clock. */
        if (job->create_time != ZUORA_TIME_UNSET && res->sent_usec > 0)
                e->host->ops->observe_clock(e->host, job->create_time, res->sent_usec, res->received_usec);
        f->job_id = job->id;
        f->job_status = job->status;
        report_submitted(e->ec, f);
        env_event(e, EVENT_SUBMITTED, f, job, NULL);
        if (url)
                env_track(e, job, url, /* adopted= */ false);
}

/* Zuora's refresh period: the slot is rejected, and deferred by when_ineligible. */
static void env_submitted_period(Env *e, const ZuoraAnswer *a, const ReportFields *f) {
        StateEnv *st = env_st(e);
        int64_t next = st->zuora_next_refresh, until;
        char msg[800];

        report_rejected(e->ec, f, zuora_answer_text(a, msg, sizeof(msg)), next);
        env_event(e, EVENT_REJECTED, f, NULL, msg);
        until = plan_defer_until(
                e->ec,
                e->host->ops->zuora_clock(e->host),
                e->slot,
                next,
                (int64_t) env_now_usec(e, CLOCK_REALTIME));
        if (until != PLAN_UNSET)
                st->deferred_until = until;
        env_slot_done(e);
}

static void env_on_submitted(const ClientResult *res, void *userdata) {
        Env *e = userdata;
        const HttpResponse *resp = res->response;
        ReportFields f = env_fields(e, e->slot);
        ZuoraJob job = {};
        char msg[800];

        e->call = NULL;
        f.track_id = res->track_id;
        f.http_status = resp->status > 0 ? resp->status : REPORT_UNSET;
        bool malformed =
                res->verdict == ZUORA_VERDICT_OK && zuora_parse_job(resp->body, resp->body_size, &job) < 0;
        ZuoraAnswer a = client_result_answer(res, malformed);

        /* A 2xx we cannot read, a redirect (never followed: a redirected
         * POST could create a job twice), or a 409 (a job already runs,
         * perhaps this slot's from a POST whose answer was lost): Zuora may
         * have a job for the slot that it does not let us follow. */
        if (!e->must_list &&
            (malformed || (resp->status >= 300 && resp->status <= 399) || resp->status == 409)) {
                zuora_answer_text(&a, msg, sizeof(msg));
                if (malformed || resp->status != 409)
                        snprintf(
                                msg + strlen(msg),
                                sizeof(msg) - strlen(msg),
                                "; Zuora may have accepted the refresh, so it is not submitted again");
                e->must_list = true;
                env_set_error(e, msg);
                report_outcome_unknown(e->ec, &f, msg);
                env_enter_state(e, ENV_LISTING);
                zuora_job_done(&job);
                return;
        }

        switch (a.verdict) {
        case ZUORA_VERDICT_OK:
                env_submitted_ok(e, res, &job, &f);
                break;
        case ZUORA_VERDICT_PERIOD:
                env_submitted_period(e, &a, &f);
                break;
        case ZUORA_VERDICT_FORBIDDEN:
                report_forbidden(e->ec, &f, zuora_answer_text(&a, msg, sizeof(msg)));
                env_fail(e, msg);
                break;
        case ZUORA_VERDICT_REAUTH:
                report_auth_failed(e->ec, &f, zuora_answer_text(&a, msg, sizeof(msg)));
                env_fail(e, msg);
                break;
        case ZUORA_VERDICT_FAILED:
        case ZUORA_VERDICT_NOT_FOUND:
                env_fail(e, zuora_answer_text(&a, msg, sizeof(msg)));
                break;
        case ZUORA_VERDICT_RATE_LIMITED: {
                uint64_t delay = UINT64_MAX;
                /* A Retry-After date is by Zuora's clock. */
                (void) zuora_retry_after(
                        resp->retry_after, resp->ratelimit_reset, zuora_time(e, env_now(e)), &delay);
                env_retry(e, delay, resp->status, res->track_id, "Zuora asks to slow down (429)");
                break;
        }
        case ZUORA_VERDICT_RETRY:
        case _ZUORA_VERDICT_MAX:
        case _ZUORA_VERDICT_INVALID:
                env_retry(
                        e, UINT64_MAX, resp->status, res->track_id, zuora_answer_text(&a, msg, sizeof(msg)));
                break;
        }
        zuora_job_done(&job);
}
