/* SPDX-License-Identifier: MIT */
/*
 * Operator commands. They run one step at a time, so each call spins the
 * event loop until its answer is in (sync_call): the same client, headers,
 * token handling and origin checks as the daemon, without its scheduling.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "command.h"
#include "json.h"
#include "macro.h"
#include "manager.h"
#include "outbox.h"
#include "recipients.h"
#include "state.h"
#include "zuora.h"

/* ---- one call at a time ---- */

typedef struct SyncCall {
        bool done;
        ZuoraVerdict verdict;
        long status;
        int error;
        bool token_failed;
        char *body;
        size_t body_size;
        char *location;
        char reason[700]; /* what went wrong, in the daemon's words */
        char track_id[ZUORA_TRACK_ID_MAX];
} SyncCall;

static void sync_call_done(SyncCall *s) {
        free(s->body);
        free(s->location);
        *s = (SyncCall) {};
}

static void sync_on_done(const ClientResult *r, void *userdata) {
        SyncCall *s = userdata;

        s->done = true;
        s->verdict = r->verdict;
        s->status = r->response->status;
        s->error = r->response->error;
        s->token_failed = r->token_failed;
        s->body = malloc(r->response->body_size + 1);
        if (s->body) {
                memcpy(s->body, r->response->body, r->response->body_size);
                s->body[r->response->body_size] = 0;
                s->body_size = r->response->body_size;
        }
        s->location = r->response->location ? strdup(r->response->location) : NULL;
        ZuoraAnswer a = client_result_answer(r, /* malformed= */ false);
        (void) zuora_answer_text(&a, s->reason, sizeof(s->reason));
        snprintf(s->track_id, sizeof(s->track_id), "%s", r->track_id ? r->track_id : "");
}

typedef struct Session {
        sd_event *event;
        Config *config;
        Client *client;
        const EnvConfig *env;
} Session;

static void session_done(Session *s) {
        client_free(s->client);
        config_free(s->config);
        sd_event_unref(s->event);
}

static int sync_call(Session *s, HttpMethod method, const char *url, const char *body, SyncCall *out) {
        int r;

        *out = (SyncCall) {};
        r = client_call(
                s->client,
                &(ClientRequest) { .method = method, .url = url, .body = body },
                sync_on_done,
                out,
                NULL);
        if (r < 0)
                return r;
        while (!out->done) {
                r = sd_event_run(s->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ENDPOINT of the session's environment (and JOB_ID), with BODY for a POST. */
static int sync_call_env(
        Session *s,
        HttpMethod method,
        ZuoraEndpoint endpoint,
        const EnvConfig *e,
        const char *job_id,
        const char *body,
        SyncCall *out) {
        _cleanup_free_ char *url = client_url(s->client, endpoint, e->id, job_id);

        if (!url)
                return -ENOMEM;
        return sync_call(s, method, url, body, out);
}

static int sync_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

/* Waits USEC on the loop (polls between them are all a command does). */
static int sync_sleep(Session *s, uint64_t usec) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        bool done = false;
        int r;

        r = sd_event_add_time_relative(s->event, &timer, CLOCK_MONOTONIC, usec, 1000, sync_on_timer, &done);
        while (r >= 0 && !done)
                r = sd_event_run(s->event, UINT64_MAX);
        return r < 0 ? r : 0;
}

static int session_open(Session *s, const char *config_path, const char *env_name) {
        _cleanup_(diags_clear) Diags diags = {};
        Secret *secret = NULL;
        int r;

        *s = (Session) {};
        r = config_load(config_path, (int64_t) time(NULL), &s->config, &diags);
        diags_print(&diags, stderr);
        if (r < 0)
                return r;
        if (env_name) {
                s->env = config_find_env(s->config, env_name);
                if (!s->env) {
                        fprintf(stderr, "refreshd: no environment '%s' in %s\n", env_name, config_path);
                        return -ENOENT;
                }
        }
        r = secret_read(s->config, &secret);
        if (r < 0) {
                char why[600];
                fprintf(stderr, "%s\n", secret_error_text(s->config, r, false, why, sizeof(why)));
                return r;
        }
        r = sd_event_new(&s->event);
        if (r >= 0)
                r = client_new(s->event, s->config, secret, &s->client);
        else
                secret_free(secret);
        if (r < 0)
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
        return r;
}

/* The newest job of the environment that has not ended, from the list. */
static int newest_running(Session *s, ZuoraJob *ret, char *why, size_t why_size) {
        _cleanup_(sync_call_done) SyncCall c = {};
        ZuoraJob *jobs = NULL;
        size_t n = 0, best = SIZE_MAX;
        int r;

        r = sync_call_env(s, HTTP_METHOD_GET, ZUORA_ENDPOINT_JOBS, s->env, NULL, NULL, &c);
        if (r < 0)
                return r;
        if (c.verdict != ZUORA_VERDICT_OK || zuora_parse_job_list(c.body, c.body_size, &jobs, &n) < 0) {
                snprintf(why, why_size, "%s", c.reason);
                return -EIO;
        }
        for (size_t i = 0; i < n; i++)
                if (!zuora_job_has_ended(&jobs[i]) &&
                    (best == SIZE_MAX || jobs[i].create_time > jobs[best].create_time))
                        best = i;
        if (best == SIZE_MAX) {
                zuora_job_list_free(jobs, n);
                return 0;
        }
        *ret = jobs[best];
        jobs[best] = (ZuoraJob) {};
        zuora_job_list_free(jobs, n);
        return 1;
}

/* What `refresh` and `cancel` work with: a session for one environment,
 * the running job looked for, the last call. */
typedef struct EnvCommand {
        Session s;
        SyncCall c;
        ZuoraJob running;
        char why[700]; /* why the list could not be read */
} EnvCommand;

static void env_command_done(EnvCommand *x) {
        zuora_job_done(&x->running);
        sync_call_done(&x->c);
        session_done(&x->s);
}

/* Opens a session for ENV_NAME and looks for its running job: 1 with it in
 * X->running, 0 when none runs, < 0 when the list could not be read
 * (X->why says why). -ECANCELED when the session could not be opened (the
 * reason was printed). */
static int env_command_open(EnvCommand *x, const char *config_path, const char *env_name) {
        if (session_open(&x->s, config_path, env_name) < 0)
                return -ECANCELED;
        return newest_running(&x->s, &x->running, x->why, sizeof(x->why));
}

/* ---- refresh ---- */

typedef struct Progress {
        char *status;
        int progress;
} Progress;

/* Prints JOB's status when it changed since LAST: one line each, or one
 * line kept up to date on a terminal. */
static void print_progress(const char *job_id, const ZuoraJob *job, Progress *last, bool tty) {
        if (job->progress == last->progress && !last->status == !job->status &&
            (!job->status || strcmp(job->status, last->status) == 0))
                return;
        printf(tty ? "\r\033[Kjob %s: %s %d%%" : "job %s: %s %d%%\n",
               job_id,
               job->status ?: "?",
               job->progress < 0 ? 0 : job->progress);
        fflush(stdout);
        free(last->status);
        last->status = job->status ? strdup(job->status) : NULL;
        last->progress = job->progress;
}

static int refresh_wait(Session *s, const char *polling_url, const char *job_id) {
        bool tty = isatty(STDOUT_FILENO);
        Progress last = { .progress = -2 };
        int r = 0;

        for (;;) {
                _cleanup_(sync_call_done) SyncCall c = {};
                ZuoraJob job = {};

                r = sync_call(s, HTTP_METHOD_GET, polling_url, NULL, &c);
                if (r < 0)
                        break;
                if (c.verdict == ZUORA_VERDICT_NOT_FOUND) {
                        fprintf(stderr,
                                "%sjob %s is gone: Zuora answers 404 for it\n",
                                tty ? "\n" : "",
                                job_id);
                        r = 1;
                        break;
                }
                if (c.verdict == ZUORA_VERDICT_OK && zuora_parse_job(c.body, c.body_size, &job) >= 0) {
                        print_progress(job_id, &job, &last, tty);
                        if (zuora_job_has_ended(&job)) {
                                if (tty)
                                        putchar('\n');
                                r = zuora_status_outcome(job.status) == ZUORA_OUTCOME_COMPLETED ? 0 : 1;
                                zuora_job_done(&job);
                                break;
                        }
                        zuora_job_done(&job);
                }
                r = sync_sleep(s, s->env->poll_interval);
                if (r < 0)
                        break;
        }
        free(last.status);
        return r;
}

int command_refresh(const char *config_path, const char *env_name, bool wait) {
        _cleanup_(env_command_done) EnvCommand x = {};
        _cleanup_free_ char *body = NULL, *polling = NULL;
        ZuoraJob job = {};
        int r;

        /* Same rule as the daemon: a job that has not ended covers this. */
        r = env_command_open(&x, config_path, env_name);
        if (r == -ECANCELED)
                return EXIT_FAILURE;
        if (r > 0) {
                fprintf(stderr,
                        "refreshd: environment '%s' already has a running job: %s (%s)\n",
                        env_name,
                        x.running.id,
                        x.running.status ? x.running.status : "status unknown");
                return EXIT_FAILURE;
        }
        if (r < 0)
                fprintf(stderr,
                        "refreshd: cannot list the jobs of '%s' (%s); submitting anyway\n",
                        env_name,
                        r == -EIO ? x.why : strerror(-r));

        body = zuora_job_request_body(ZUORA_TIME_UNSET);
        if (!body)
                return EXIT_FAILURE;
        r = sync_call_env(&x.s, HTTP_METHOD_POST, ZUORA_ENDPOINT_JOBS, x.s.env, NULL, body, &x.c);
        if (r < 0) {
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (x.c.verdict != ZUORA_VERDICT_OK || zuora_parse_job(x.c.body, x.c.body_size, &job) < 0) {
                fprintf(stderr,
                        "refreshd: the refresh of '%s' was not submitted: %s (Zuora-Track-Id %s)\n",
                        env_name,
                        x.c.verdict == ZUORA_VERDICT_OK ? "the answer is not a job" : x.c.reason,
                        x.c.track_id);
                return EXIT_FAILURE;
        }
        r = x.c.location ? client_resolve(x.s.client, x.c.location, &polling) : -ENOENT;
        if (r == -EPERM) {
                fprintf(stderr, "refreshd: ignoring Location '%s': it points away from base_url\n", polling);
                polling = mfree(polling);
        }
        if (!polling)
                polling = client_url(x.s.client, ZUORA_ENDPOINT_JOB, x.s.env->id, job.id);
        printf("%s\n%s\n", job.id, polling ? polling : "");
        fflush(stdout);
        r = wait && polling ? refresh_wait(&x.s, polling, job.id) : EXIT_SUCCESS;
        zuora_job_done(&job);
        return r < 0 ? EXIT_FAILURE : r;
}

/* ---- cancel ---- */

int command_cancel(const char *config_path, const char *env_name) {
        _cleanup_(env_command_done) EnvCommand x = {};
        ZuoraJob job = {};
        int r;

        r = env_command_open(&x, config_path, env_name);
        if (r == -ECANCELED)
                return EXIT_FAILURE;
        if (r <= 0) {
                fprintf(stderr,
                        "refreshd: %s\n",
                        r == 0      ? "no running job to cancel"
                        : r == -EIO ? x.why
                                    : strerror(-r));
                return EXIT_FAILURE;
        }
        r = sync_call_env(
                &x.s,
                HTTP_METHOD_POST,
                ZUORA_ENDPOINT_JOB_ACTIONS,
                x.s.env,
                x.running.id,
                ZUORA_CANCEL_BODY,
                &x.c);
        if (r < 0)
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
        else if (x.c.verdict != ZUORA_VERDICT_OK)
                /* Zuora allows it only before the refresh reaches its reset stage, and says so. */
                fprintf(stderr, "refreshd: job %s was not cancelled: %s\n", x.running.id, x.c.reason);
        else if (zuora_parse_job(x.c.body, x.c.body_size, &job) >= 0)
                printf("job %s: %s\n", job.id, job.status ? job.status : "cancel requested");
        else
                printf("job %s: cancel requested\n", x.running.id);
        zuora_job_done(&job);
        return r < 0 || x.c.verdict != ZUORA_VERDICT_OK ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- check --online ---- */

/* What keeping E's e-mail list in step would change, printed; nothing is
 * changed. STATE (may be NULL) says which recipients refreshd added. */
static int check_recipients(Session *s, const EnvConfig *e, const State *state) {
        _cleanup_(sync_call_done) SyncCall c = {};
        ZuoraRecipient *at = NULL;
        size_t n = 0;
        RecipientPlan p;

        if (!recipients_wanted(e, state))
                return 0;
        if (sync_call_env(s, HTTP_METHOD_GET, ZUORA_ENDPOINT_NOTIFICATIONS, e, NULL, NULL, &c) < 0)
                return -EIO;
        if (c.verdict != ZUORA_VERDICT_OK || zuora_parse_recipients(c.body, c.body_size, &at, &n) < 0) {
                printf("%s: error: notify_emails: Zuora's list cannot be read: %s\n",
                       e->name,
                       c.verdict == ZUORA_VERDICT_OK ? "the answer is not a list" : c.reason);
                return -EIO;
        }
        if (recipients_plan(e, at, n, state, &p) < 0) {
                zuora_recipients_free(at, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p.n_add; i++)
                printf("%s: notify_emails: would add %s\n", e->name, p.add[i]->address);
        for (size_t i = 0; i < p.n_remove; i++)
                printf("%s: notify_emails: would remove %s (added by refreshd, no longer in the config)\n",
                       e->name,
                       p.remove[i]->address);
        for (size_t i = 0; i < n; i++) {
                bool listed = false, removed = false;
                for (size_t j = 0; j < e->actions->n_emails && !listed; j++)
                        listed = strcasecmp(e->actions->emails[j].address, at[i].address) == 0;
                for (size_t j = 0; j < p.n_remove && !removed; j++)
                        removed = p.remove[j] == &at[i];
                if (!listed && !removed)
                        printf("%s: notify_emails: %s is at Zuora and not in the config: left alone\n",
                               e->name,
                               at[i].address);
        }
        if (p.n_add + p.n_remove == 0)
                printf("%s: notify_emails: in step (%zu at Zuora)\n", e->name, n);
        recipient_plan_done(&p);
        zuora_recipients_free(at, n);
        return 0;
}

int command_check_online(const char *config_path, const char *state_dir) {
        _cleanup_(session_done) Session s = {};
        _cleanup_free_ char *why = NULL;
        State *state = NULL;
        unsigned failed = 0;

        if (session_open(&s, config_path, NULL) < 0)
                return EXIT_FAILURE;
        /* Which recipients refreshd added, if its state can be read here. */
        if (config_has_actions(s.config) && state_load(state_dir, &state, &why) < 0)
                state = NULL;
        for (size_t i = 0; i < s.config->n_envs; i++) {
                const EnvConfig *e = &s.config->envs[i];
                _cleanup_(sync_call_done) SyncCall c = {};
                int64_t last, next;
                char a[TZ_ISO_MAX] = "never", b[TZ_ISO_MAX] = "now";

                if (sync_call_env(&s, HTTP_METHOD_GET, ZUORA_ENDPOINT_ENVIRONMENT, e, NULL, NULL, &c) < 0) {
                        failed++;
                        continue;
                }
                if (c.verdict == ZUORA_VERDICT_NOT_FOUND) {
                        printf("%s: error: Zuora knows no test environment with id '%s'\n", e->name, e->id);
                        failed++;
                } else if (
                        c.verdict != ZUORA_VERDICT_OK ||
                        zuora_parse_environment(c.body, c.body_size, &last, &next) < 0) {
                        printf("%s: error: %s\n",
                               e->name,
                               c.verdict == ZUORA_VERDICT_OK ? "the answer is not a test environment"
                                                             : c.reason);
                        failed++;
                        if (c.token_failed || c.verdict == ZUORA_VERDICT_REAUTH)
                                break; /* the same for every environment */
                } else {
                        if (last != ZUORA_TIME_UNSET)
                                (void) tz_format_local(e->tz, last, a, sizeof(a));
                        if (next != ZUORA_TIME_UNSET)
                                (void) tz_format_local(e->tz, next, b, sizeof(b));
                        printf("%s: ok: last refresh %s, next refresh allowed from %s\n", e->name, a, b);
                        if (check_recipients(&s, e, state) < 0)
                                failed++;
                }
        }
        state_free(state);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- JSON output ---- */

/* Writes W's text and a newline on standard output. */
static int json_print(JsonWriter *w) {
        const char *text;
        size_t n;
        int r;

        r = json_writer_text(w, &text, &n);
        if (r < 0)
                return r;
        fwrite(text, 1, n, stdout);
        putchar('\n');
        return fflush(stdout) == 0 ? 0 : -errno;
}

static void put_key_string(JsonWriter *w, const char *key, const char *value) {
        json_put_string(w, key);
        json_put_string_or_null(w, value);
}

/* The keys both `check --json` and `status --json` start an environment with. */
static void put_env_identity(JsonWriter *w, const EnvConfig *e) {
        put_key_string(w, "name", e->name);
        put_key_string(w, "id", e->id);
        put_key_string(w, "schedule", e->schedule);
        put_key_string(w, "timezone", tz_name(e->tz));
        json_put_string(w, "enabled");
        json_put_bool(w, e->enabled);
}

/* T in zone TZ (the userdata), or null. */
static void put_local_time(JsonWriter *w, int64_t t, void *userdata) {
        char buf[TZ_ISO_MAX];

        if (t == STATE_TIME_UNSET || tz_format_local(userdata, t, buf, sizeof(buf)) < 0)
                json_put_null(w);
        else
                json_put_string(w, buf);
}

static void put_key_time(JsonWriter *w, const char *key, const EnvConfig *e, int64_t t) {
        json_put_string(w, key);
        put_local_time(w, t, e->tz);
}

/* {"environments": [...]} on standard output: one object per environment
 * of C, its identity first and then what PUT adds; the keys before
 * "environments" put by PUT_TOP (may be NULL). */
static int print_environments_json(
        const Config *c,
        void (*put_top)(JsonWriter *w, void *userdata),
        void (*put)(JsonWriter *w, const EnvConfig *e, void *userdata),
        void *userdata) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        int r;

        r = json_writer_init(&w, /* beautify= */ false, NULL, NULL);
        if (r < 0)
                return r;
        json_put_open(&w);
        if (put_top)
                put_top(&w, userdata);
        json_put_string(&w, "environments");
        json_put_array_open(&w);
        for (size_t i = 0; i < c->n_envs; i++) {
                json_put_open(&w);
                put_env_identity(&w, &c->envs[i]);
                put(&w, &c->envs[i], userdata);
                json_put_close(&w);
        }
        json_put_array_close(&w);
        json_put_close(&w);
        return json_print(&w);
}

/* ---- check ---- */

static int check_print_text(const Config *c, int64_t from, unsigned next) {
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvConfig *e = &c->envs[i];
                int64_t t = from;

                printf("%s%s  %s  \"%s\"\n", i ? "\n" : "", e->name, tz_name(e->tz), e->schedule);
                if (!e->enabled)
                        printf("  (disabled: these are the times it would fire)\n");
                for (unsigned n = 0; n < next; n++) {
                        char local[TZ_ISO_MAX], utc[TZ_ISO_MAX];

                        if (cron_next(e->cron, e->tz, t, &t) < 0 ||
                            tz_format_local(e->tz, t, local, sizeof(local)) < 0 ||
                            tz_format_utc(t, utc, sizeof(utc)) < 0) {
                                printf("  (no later fire time before the year 10000)\n");
                                break;
                        }
                        printf("  %s  %s\n", local, utc);
                }
        }
        return fflush(stdout) == 0 ? 0 : -errno;
}

static void check_put_times(JsonWriter *w, const EnvConfig *e, const int64_t *times, unsigned n, bool utc) {
        json_put_string(w, utc ? "next_utc" : "next");
        json_put_array_open(w);
        for (unsigned k = 0; k < n; k++) {
                char s[TZ_ISO_MAX];
                if ((utc ? tz_format_utc(times[k], s, sizeof(s))
                         : tz_format_local(e->tz, times[k], s, sizeof(s))) >= 0)
                        json_put_string(w, s);
        }
        json_put_array_close(w);
}

typedef struct CheckTimes {
        int64_t from;
        unsigned next;
} CheckTimes;

static void check_put_env(JsonWriter *w, const EnvConfig *e, void *userdata) {
        const CheckTimes *ct = userdata;
        int64_t times[1000];
        unsigned n = 0;

        for (int64_t t = ct->from; n < ct->next && cron_next(e->cron, e->tz, t, &t) >= 0; n++)
                times[n] = t;
        check_put_times(w, e, times, n, /* utc= */ false);
        check_put_times(w, e, times, n, /* utc= */ true);
}

static int check_print_json(const Config *c, int64_t from, unsigned next) {
        return print_environments_json(c, NULL, check_put_env, &(CheckTimes) { from, next });
}

int command_check(const char *config_path, int64_t from, unsigned next, bool json, bool online) {
        _cleanup_(diags_clear) Diags diags = {};
        Config *c = NULL;
        int r;

        r = config_load(config_path, from, &c, &diags);
        diags_print(&diags, stderr);
        if (r == -ENOMEM) {
                fprintf(stderr, "refreshd: out of memory\n");
                return EXIT_FAILURE;
        }
        if (r < 0) {
                fprintf(stderr,
                        "%s: %u error%s\n",
                        config_path,
                        diags.n_errors,
                        diags.n_errors == 1 ? "" : "s");
                return EXIT_FAILURE;
        }
        /* What `run` will read, read now: a secret that is empty or too
         * long fails here, where the operator looks, not at the start. */
        Secret *secret = NULL;
        char why[600];
        r = secret_read(c, &secret);
        secret_free(secret);
        if (r == -EACCES)
                /* Not this user's to read: the service's user reads it. */
                fprintf(stderr,
                        "%s (as this user; `run` reads it as the service's user)\n",
                        secret_error_text(c, r, /* warning= */ true, why, sizeof(why)));
        else if (r < 0) {
                fprintf(stderr,
                        "%s\n%s: 1 error\n",
                        secret_error_text(c, r, false, why, sizeof(why)),
                        config_path);
                config_free(c);
                return EXIT_FAILURE;
        }
        unsigned bad_urls = outbox_check_webhook_urls(c, stderr);
        if (bad_urls > 0) {
                fprintf(stderr, "%s: %u error%s\n", config_path, bad_urls, bad_urls == 1 ? "" : "s");
                config_free(c);
                return EXIT_FAILURE;
        }
        r = json ? check_print_json(c, from, next) : check_print_text(c, from, next);
        config_free(c);
        if (r >= 0 && online) {
                _cleanup_free_ char *state_dir = manager_default_state_dir();
                return command_check_online(config_path, state_dir);
        }
        if (r < 0) {
                fprintf(stderr, "refreshd: cannot write the output: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

/* ---- status ---- */

static int64_t next_slot(const EnvConfig *e, const StateEnv *st, int64_t now) {
        int64_t t;

        if (!e->enabled)
                return STATE_TIME_UNSET;
        if (st && st->deferred_until != STATE_TIME_UNSET)
                return st->deferred_until;
        return cron_next(e->cron, e->tz, now, &t) < 0 ? STATE_TIME_UNSET : t;
}

/* E's entry in STATE, unless it is of another environment under the same name. */
static StateEnv *status_entry(State *state, const EnvConfig *e) {
        StateEnv *st = state_find(state, e->name);

        return st && st->id && strcmp(st->id, e->id) != 0 ? NULL : st;
}

typedef struct StatusContext {
        State *state;
        int64_t now;
} StatusContext;

/* The hook a pending delivery KEY names, or NULL (a webhook, or gone from the config). */
static const char *pending_hook(const EnvConfig *e, const char *key) {
        if (strncmp(key, "hook:", 5) != 0)
                return NULL;
        for (size_t i = 0; i < e->actions->n_hooks; i++)
                if (strcmp(e->actions->hooks[i].key, key + 5) == 0)
                        return e->actions->hooks[i].argv[0];
        return NULL;
}

/* "last_event": {...} or null, "pending": [{"event", "event_id", "delivery", "hook"}]. */
static void status_put_events(JsonWriter *w, const EnvConfig *e, const State *state, const StateEnv *st) {
        const StateLastEvent *le = st ? st->last_event : NULL;

        json_put_string(w, "last_event");
        if (le) {
                json_put_open(w);
                put_key_string(w, "event", le->event);
                put_key_string(w, "id", le->id);
                put_key_time(w, "at", e, le->at);
                put_key_string(w, "error", le->error);
                put_key_time(w, "error_at", e, le->error_at);
                json_put_close(w);
        } else
                json_put_null(w);
        json_put_string(w, "pending");
        json_put_array_open(w);
        for (size_t i = 0; i < state->n_outbox; i++) {
                const StateOutboxEntry *o = &state->outbox[i];
                if (strcmp(o->event.environment, e->name) != 0)
                        continue;
                for (char **k = o->pending; *k; k++) {
                        json_put_open(w);
                        put_key_string(w, "event", event_kind_to_string(o->event.kind));
                        put_key_string(w, "event_id", o->event.id);
                        put_key_string(w, "delivery", strncmp(*k, "hook:", 5) == 0 ? "hook" : "webhook");
                        put_key_string(w, "hook", pending_hook(e, *k));
                        json_put_close(w);
                }
        }
        json_put_array_close(w);
}

static void status_put_env(JsonWriter *w, const EnvConfig *e, void *userdata) {
        const StatusContext *sc = userdata;
        StateEnv *st = status_entry(sc->state, e);

        put_key_time(w, "next_slot", e, next_slot(e, st, sc->now));
        put_key_time(w, "last_slot", e, st ? st->last_slot : STATE_TIME_UNSET);
        json_put_string(w, "job");
        state_write_job(w, st ? st->job : NULL, put_local_time, e->tz);
        json_put_string(w, "last_job");
        state_write_last_job(w, st ? st->last_job : NULL, put_local_time, e->tz);
        put_key_time(w, "zuora_last_refresh", e, st ? st->zuora_last_refresh : STATE_TIME_UNSET);
        put_key_time(w, "zuora_next_refresh", e, st ? st->zuora_next_refresh : STATE_TIME_UNSET);
        status_put_events(w, e, sc->state, st);
}

/* What was measured of Zuora's clock: its offset from ours and how far
 * that may be off, seconds; null until measured. */
static void status_put_clock(JsonWriter *w, void *userdata) {
        const StatusContext *sc = userdata;
        int64_t offset, uncertainty;

        zclock_estimate(&sc->state->zclock, sc->now * 1000000, &offset, &uncertainty);
        json_put_string(w, "zuora_clock_offset_s");
        if (sc->state->zclock.measured)
                json_put_fixed(w, offset / 1000, 3);
        else
                json_put_null(w);
        json_put_string(w, "zuora_clock_uncertainty_s");
        if (sc->state->zclock.measured)
                json_put_fixed(w, uncertainty / 1000, 3);
        else
                json_put_null(w);
}

static int status_json(const Config *c, State *state, int64_t now) {
        return print_environments_json(c, status_put_clock, status_put_env, &(StatusContext) { state, now });
}

static const char *local(const EnvConfig *e, int64_t t, char buf[static TZ_ISO_MAX]) {
        if (t == STATE_TIME_UNSET || tz_format_local(e->tz, t, buf, TZ_ISO_MAX) < 0)
                return "-";
        return buf;
}

static void status_text_events(const EnvConfig *e, const State *state, const StateEnv *st) {
        const StateLastEvent *le = st ? st->last_event : NULL;
        char a[TZ_ISO_MAX];

        if (le && le->event)
                printf("  last event: %s, delivered %s\n", le->event, local(e, le->at, a));
        if (le && le->error)
                printf("  failed:     %s, at %s\n", le->error, local(e, le->error_at, a));
        for (size_t i = 0; i < state->n_outbox; i++) {
                const StateOutboxEntry *o = &state->outbox[i];
                if (strcmp(o->event.environment, e->name) != 0)
                        continue;
                for (char **k = o->pending; *k; k++) {
                        const char *hook = pending_hook(e, *k);
                        printf("  pending:    %s for %s (event %s)\n",
                               hook                           ? hook
                               : strncmp(*k, "hook:", 5) == 0 ? "a hook"
                                                              : "a webhook",
                               event_kind_to_string(o->event.kind),
                               o->event.id);
                }
        }
}

static void status_text_env(const EnvConfig *e, const StateEnv *st, int64_t now, bool first) {
        char a[TZ_ISO_MAX], b[TZ_ISO_MAX];

        printf("%s%s  %s  %s  \"%s\"%s\n",
               first ? "" : "\n",
               e->name,
               e->id,
               tz_name(e->tz),
               e->schedule,
               e->enabled ? "" : "  (disabled)");
        printf("  next slot:  %s%s\n",
               local(e, next_slot(e, st, now), a),
               st && st->deferred_until != STATE_TIME_UNSET ? " (deferred until Zuora allows it)" : "");
        printf("  last slot:  %s\n", local(e, st ? st->last_slot : STATE_TIME_UNSET, a));
        if (st && st->job) {
                printf("  job:        %s %s", st->job->id, st->job->status ? st->job->status : "SUBMITTED");
                if (st->job->progress >= 0)
                        printf(" %d%%", st->job->progress);
                printf(", submitted %s\n", local(e, st->job->submitted_at, a));
        } else
                printf("  job:        -\n");
        if (st && st->last_job)
                printf("  last job:   %s %s, ended %s%s%s\n",
                       st->last_job->id ? st->last_job->id : "-",
                       st->last_job->status ? st->last_job->status : "?",
                       local(e, st->last_job->ended_at, a),
                       st->last_job->message ? ": " : "",
                       st->last_job->message ? st->last_job->message : "");
        if (st && (st->zuora_last_refresh != STATE_TIME_UNSET || st->zuora_next_refresh != STATE_TIME_UNSET))
                printf("  zuora:      last refresh %s, next allowed from %s\n",
                       local(e, st->zuora_last_refresh, a),
                       local(e, st->zuora_next_refresh, b));
}

static int status_text(const Config *c, State *state, int64_t now) {
        for (size_t i = 0; i < c->n_envs; i++) {
                StateEnv *st = status_entry(state, &c->envs[i]);
                status_text_env(&c->envs[i], st, now, i == 0);
                status_text_events(&c->envs[i], state, st);
        }
        return fflush(stdout) == 0 ? 0 : -errno;
}

int command_status(const char *config_path, const char *state_dir, bool json) {
        _cleanup_(diags_clear) Diags diags = {};
        _cleanup_free_ char *why = NULL;
        Config *c = NULL;
        State *state = NULL;
        int64_t now = (int64_t) time(NULL);
        int r, k = 0;

        r = config_load(config_path, now, &c, &diags);
        diags_print(&diags, stderr);
        if (r < 0)
                return EXIT_FAILURE;
        r = state_load(state_dir, &state, &why);
        if (r < 0) {
                fprintf(stderr,
                        "refreshd: cannot read %s/%s: %s\n",
                        state_dir,
                        STATE_FILE_NAME,
                        why ? why : strerror(-r));
                state = state_new();
        }
        if (state)
                k = json ? status_json(c, state, now) : status_text(c, state, now);
        state_free(state);
        config_free(c);
        return r < 0 || k < 0 || !state ? EXIT_FAILURE : EXIT_SUCCESS;
}
