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
#include <time.h>
#include <unistd.h>
#include <systemd/sd-event.h>
#include <yajl/yajl_gen.h>

#include "client.h"
#include "command.h"
#include "macro.h"
#include "state.h"
#include "zuora.h"


#define GEN_STR(g, s) yajl_gen_string(g, (const unsigned char *) (s), strlen(s))
#define GEN_STR_OR_NULL(g, s) ((s) ? GEN_STR(g, s) : yajl_gen_null(g))

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
        char *text;
        char track_id[ZUORA_TRACK_ID_MAX];
} SyncCall;

static void sync_call_done(SyncCall *s) {
        free(s->body);
        free(s->location);
        free(s->text);
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
        s->text = r->zuora_text ? strdup(r->zuora_text) : NULL;
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
        r = client_call(s->client, method, url, body, NULL, NULL, sync_on_done, out, NULL);
        if (r < 0)
                return r;
        while (!out->done) {
                r = sd_event_run(s->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
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

/* Why a call did not give what was asked, in words for the operator. */
static const char *sync_reason(const SyncCall *c, char *buf, size_t size) {
        if (c->verdict == ZUORA_VERDICT_REAUTH)
                snprintf(buf, size, "Zuora refused the credentials (401%s%s): check client_id/client_secret",
                         c->text ? ": " : "", c->text ? c->text : "");
        else if (c->verdict == ZUORA_VERDICT_FORBIDDEN)
                snprintf(buf, size,
                         "403 Forbidden%s%s: the OAuth client's user needs the \"Refresh Central Sandbox\" (or "
                         "\"Refresh Developer Sandbox\") permission",
                         c->text ? ": " : "", c->text ? c->text : "");
        else if (c->status > 0)
                snprintf(buf, size, "Zuora answered %ld%s%s", c->status, c->text ? ": " : "", c->text ? c->text : "");
        else
                snprintf(buf, size, "%s%s", c->token_failed ? "no token: " : "",
                         c->text ? c->text : "no answer");
        return buf;
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
                fprintf(stderr, "refreshd: cannot read the client secret (%s '%s'): %s\n",
                        secret_source_to_string(s->config->secret_source), s->config->secret_name, strerror(-r));
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
        _cleanup_free_ char *url = client_url(s->client, "/test-environments/%s/jobs", s->env->id);
        _cleanup_(sync_call_done) SyncCall c = {};
        ZuoraJob *jobs = NULL;
        size_t n = 0, best = SIZE_MAX;
        int r;

        if (!url)
                return -ENOMEM;
        r = sync_call(s, HTTP_METHOD_GET, url, NULL, &c);
        if (r < 0)
                return r;
        if (c.verdict != ZUORA_VERDICT_OK || zuora_parse_job_list(c.body, c.body_size, &jobs, &n) < 0) {
                sync_reason(&c, why, why_size);
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

/* ---- refresh ---- */

static int refresh_wait(Session *s, const char *polling_url, const char *job_id) {
        bool tty = isatty(STDOUT_FILENO);
        char *last_status = NULL;
        int last_progress = -2;

        for (;;) {
                _cleanup_(sync_call_done) SyncCall c = {};
                ZuoraJob job = {};
                int r;

                r = sync_call(s, HTTP_METHOD_GET, polling_url, NULL, &c);
                if (r < 0)
                        return r;
                if (c.verdict == ZUORA_VERDICT_NOT_FOUND) {
                        fprintf(stderr, "%sjob %s is gone: Zuora answers 404 for it\n", tty ? "\n" : "", job_id);
                        free(last_status);
                        return 1;
                }
                if (c.verdict == ZUORA_VERDICT_OK && zuora_parse_job(c.body, c.body_size, &job) >= 0) {
                        bool changed = job.progress != last_progress ||
                                !last_status != !job.status ||
                                (job.status && last_status && strcmp(job.status, last_status) != 0);
                        if (changed) {
                                printf(tty ? "\r\033[Kjob %s: %s %d%%" : "job %s: %s %d%%\n", job_id,
                                       job.status ? job.status : "?", job.progress < 0 ? 0 : job.progress);
                                fflush(stdout);
                                free(last_status);
                                last_status = job.status ? strdup(job.status) : NULL;
                                last_progress = job.progress;
                        }
                        if (zuora_job_has_ended(&job)) {
                                bool ok = job.status && strcasecmp(job.status, "COMPLETED") == 0;
                                if (tty)
                                        putchar('\n');
                                zuora_job_done(&job);
                                free(last_status);
                                return ok ? 0 : 1;
                        }
                        zuora_job_done(&job);
                }
                r = sync_sleep(s, s->env->poll_interval);
                if (r < 0) {
                        free(last_status);
                        return r;
                }
        }
}

int command_refresh(const char *config_path, const char *env_name, bool wait) {
        _cleanup_(session_done) Session s = {};
        _cleanup_(sync_call_done) SyncCall c = {};
        _cleanup_free_ char *url = NULL, *body = NULL, *polling = NULL;
        ZuoraJob running = {}, job = {};
        char why[700];
        int r;

        if (session_open(&s, config_path, env_name) < 0)
                return EXIT_FAILURE;

        /* Same rule as the daemon: a job that has not ended covers this. */
        r = newest_running(&s, &running, why, sizeof(why));
        if (r > 0) {
                fprintf(stderr, "refreshd: environment '%s' already has a running job: %s (%s)\n", env_name,
                        running.id, running.status ? running.status : "status unknown");
                zuora_job_done(&running);
                return EXIT_FAILURE;
        }
        if (r < 0)
                fprintf(stderr, "refreshd: cannot list the jobs of '%s' (%s); submitting anyway\n", env_name,
                        r == -EIO ? why : strerror(-r));

        url = client_url(s.client, "/test-environments/%s/jobs", s.env->id);
        body = zuora_job_request_body(ZUORA_TIME_UNSET);
        if (!url || !body)
                return EXIT_FAILURE;
        r = sync_call(&s, HTTP_METHOD_POST, url, body, &c);
        if (r < 0) {
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (c.verdict != ZUORA_VERDICT_OK || zuora_parse_job(c.body, c.body_size, &job) < 0) {
                fprintf(stderr, "refreshd: the refresh of '%s' was not submitted: %s (Zuora-Track-Id %s)\n",
                        env_name,
                        c.verdict == ZUORA_VERDICT_OK ? "the answer is not a job" : sync_reason(&c, why, sizeof(why)),
                        c.track_id);
                return EXIT_FAILURE;
        }
        r = c.location ? client_resolve(s.client, c.location, &polling) : -ENOENT;
        if (r == -EPERM) {
                fprintf(stderr, "refreshd: ignoring Location '%s': it points away from base_url\n", polling);
                polling = mfree(polling);
        }
        if (!polling)
                polling = client_url(s.client, "/test-environments/%s/jobs/%s", s.env->id, job.id);
        printf("%s\n%s\n", job.id, polling ? polling : "");
        fflush(stdout);
        r = wait && polling ? refresh_wait(&s, polling, job.id) : EXIT_SUCCESS;
        zuora_job_done(&job);
        return r < 0 ? EXIT_FAILURE : r;
}

/* ---- cancel ---- */

int command_cancel(const char *config_path, const char *env_name) {
        _cleanup_(session_done) Session s = {};
        _cleanup_(sync_call_done) SyncCall c = {};
        _cleanup_free_ char *url = NULL;
        ZuoraJob running = {}, job = {};
        char why[700];
        int r;

        if (session_open(&s, config_path, env_name) < 0)
                return EXIT_FAILURE;
        r = newest_running(&s, &running, why, sizeof(why));
        if (r <= 0) {
                fprintf(stderr, "refreshd: %s\n",
                        r == 0 ? "no running job to cancel" : r == -EIO ? why : strerror(-r));
                return EXIT_FAILURE;
        }
        url = client_url(s.client, "/test-environments/%s/jobs/%s/actions", s.env->id, running.id);
        r = url ? sync_call(&s, HTTP_METHOD_POST, url, "{\"jobAction\":\"CANCEL\"}", &c) : -ENOMEM;
        if (r < 0) {
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
                zuora_job_done(&running);
                return EXIT_FAILURE;
        }
        if (c.verdict != ZUORA_VERDICT_OK) {
                /* Zuora allows it only before the refresh reaches its reset stage, and says so. */
                fprintf(stderr, "refreshd: job %s was not cancelled: %s\n", running.id, sync_reason(&c, why, sizeof(why)));
                zuora_job_done(&running);
                return EXIT_FAILURE;
        }
        if (zuora_parse_job(c.body, c.body_size, &job) >= 0)
                printf("job %s: %s\n", job.id, job.status ? job.status : "cancel requested");
        else
                printf("job %s: cancel requested\n", running.id);
        zuora_job_done(&job);
        zuora_job_done(&running);
        return EXIT_SUCCESS;
}

/* ---- check --online ---- */

int command_check_online(const char *config_path) {
        _cleanup_(session_done) Session s = {};
        unsigned failed = 0;
        char why[700];

        if (session_open(&s, config_path, NULL) < 0)
                return EXIT_FAILURE;
        for (size_t i = 0; i < s.config->n_envs; i++) {
                const EnvConfig *e = &s.config->envs[i];
                _cleanup_free_ char *url = client_url(s.client, "/test-environments/%s", e->id);
                _cleanup_(sync_call_done) SyncCall c = {};
                int64_t last, next;
                char a[TZ_ISO_MAX] = "never", b[TZ_ISO_MAX] = "now";

                if (!url || sync_call(&s, HTTP_METHOD_GET, url, NULL, &c) < 0) {
                        failed++;
                        continue;
                }
                if (c.verdict == ZUORA_VERDICT_NOT_FOUND) {
                        printf("%s: error: Zuora knows no test environment with id '%s'\n", e->name, e->id);
                        failed++;
                } else if (c.verdict != ZUORA_VERDICT_OK || zuora_parse_environment(c.body, c.body_size, &last, &next) < 0) {
                        printf("%s: error: %s\n", e->name,
                               c.verdict == ZUORA_VERDICT_OK ? "the answer is not a test environment"
                                                             : sync_reason(&c, why, sizeof(why)));
                        failed++;
                        if (c.token_failed || c.verdict == ZUORA_VERDICT_REAUTH)
                                break; /* the same for every environment */
                } else {
                        if (last != ZUORA_TIME_UNSET)
                                (void) tz_format_local(e->tz, last, a, sizeof(a));
                        if (next != ZUORA_TIME_UNSET)
                                (void) tz_format_local(e->tz, next, b, sizeof(b));
                        printf("%s: ok: last refresh %s, next refresh allowed from %s\n", e->name, a, b);
                }
        }
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* The keys both `check --json` and `status --json` start an environment with. */
static void gen_env_identity(yajl_gen g, const EnvConfig *e) {
        GEN_STR(g, "name");
        GEN_STR(g, e->name);
        GEN_STR(g, "id");
        GEN_STR(g, e->id);
        GEN_STR(g, "schedule");
        GEN_STR(g, e->schedule);
        GEN_STR(g, "timezone");
        GEN_STR(g, tz_name(e->tz));
        GEN_STR(g, "enabled");
        yajl_gen_bool(g, e->enabled);
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

                        if (cron_next(e->cron, e->tz, t, &t) < 0 || tz_format_local(e->tz, t, local, sizeof(local)) < 0 ||
                            tz_format_utc(t, utc, sizeof(utc)) < 0) {
                                printf("  (no later fire time before the year 10000)\n");
                                break;
                        }
                        printf("  %s  %s\n", local, utc);
                }
        }
        return fflush(stdout) == 0 ? 0 : -errno;
}

static int check_print_json(const Config *c, int64_t from, unsigned next) {
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *buf;
        size_t len;

        if (!g)
                return -ENOMEM;
        yajl_gen_map_open(g);
        GEN_STR(g, "environments");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvConfig *e = &c->envs[i];
                int64_t times[1000];
                unsigned n = 0;

                for (int64_t t = from; n < next && cron_next(e->cron, e->tz, t, &t) >= 0; n++)
                        times[n] = t;

                yajl_gen_map_open(g);
                gen_env_identity(g, e);
                for (int utc = 0; utc <= 1; utc++) {
                        GEN_STR(g, utc ? "next_utc" : "next");
                        yajl_gen_array_open(g);
                        for (unsigned k = 0; k < n; k++) {
                                char s[TZ_ISO_MAX];
                                if ((utc ? tz_format_utc(times[k], s, sizeof(s))
                                         : tz_format_local(e->tz, times[k], s, sizeof(s))) >= 0)
                                        GEN_STR(g, s);
                        }
                        yajl_gen_array_close(g);
                }
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        yajl_gen_get_buf(g, &buf, &len);
        fwrite(buf, 1, len, stdout);
        putchar('\n');
        yajl_gen_free(g);
        return fflush(stdout) == 0 ? 0 : -errno;
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
                fprintf(stderr, "%s: %u error%s\n", config_path, diags.n_errors, diags.n_errors == 1 ? "" : "s");
                return EXIT_FAILURE;
        }
        r = json ? check_print_json(c, from, next) : check_print_text(c, from, next);
        config_free(c);
        if (r >= 0 && online)
                return command_check_online(config_path);
        if (r < 0) {
                fprintf(stderr, "refreshd: cannot write the output: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

/* ---- status ---- */

static void time_or_null(yajl_gen g, const EnvConfig *e, int64_t t) {
        char buf[TZ_ISO_MAX];

        if (t == STATE_TIME_UNSET || tz_format_local(e->tz, t, buf, sizeof(buf)) < 0)
                yajl_gen_null(g);
        else
                yajl_gen_string(g, (const unsigned char *) buf, strlen(buf));
}


static int64_t next_slot(const EnvConfig *e, const StateEnv *st, int64_t now) {
        int64_t t;

        if (!e->enabled)
                return STATE_TIME_UNSET;
        if (st && st->deferred_until != STATE_TIME_UNSET)
                return st->deferred_until;
        return cron_next(e->cron, e->tz, now, &t) < 0 ? STATE_TIME_UNSET : t;
}

static void status_json(const Config *c, State *state, int64_t now) {
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *buf;
        size_t len;

        if (!g)
                return;
        yajl_gen_map_open(g);
        GEN_STR(g, "environments");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvConfig *e = &c->envs[i];
                StateEnv *st = state_find(state, e->name);
                if (st && st->id && strcmp(st->id, e->id) != 0)
                        st = NULL; /* state of another environment under the same name */

                yajl_gen_map_open(g);
                gen_env_identity(g, e);
                GEN_STR(g, "next_slot");
                time_or_null(g, e, next_slot(e, st, now));
                GEN_STR(g, "last_slot");
                time_or_null(g, e, st ? st->last_slot : STATE_TIME_UNSET);
                GEN_STR(g, "job");
                if (st && st->job) {
                        yajl_gen_map_open(g);
                        GEN_STR(g, "id");
                        GEN_STR(g, st->job->id);
                        GEN_STR(g, "status");
                        GEN_STR_OR_NULL(g, st->job->status);
                        GEN_STR(g, "progress");
                        if (st->job->progress >= 0)
                                yajl_gen_integer(g, st->job->progress);
                        else
                                yajl_gen_null(g);
                        GEN_STR(g, "polling_url");
                        GEN_STR(g, st->job->polling_url);
                        GEN_STR(g, "submitted_at");
                        time_or_null(g, e, st->job->submitted_at);
                        GEN_STR(g, "slot");
                        time_or_null(g, e, st->job->slot);
                        yajl_gen_map_close(g);
                } else
                        yajl_gen_null(g);
                GEN_STR(g, "last_job");
                if (st && st->last_job) {
                        yajl_gen_map_open(g);
                        GEN_STR(g, "id");
                        GEN_STR_OR_NULL(g, st->last_job->id);
                        GEN_STR(g, "status");
                        GEN_STR_OR_NULL(g, st->last_job->status);
                        GEN_STR(g, "ended_at");
                        time_or_null(g, e, st->last_job->ended_at);
                        GEN_STR(g, "message");
                        GEN_STR_OR_NULL(g, st->last_job->message);
                        yajl_gen_map_close(g);
                } else
                        yajl_gen_null(g);
                GEN_STR(g, "zuora_last_refresh");
                time_or_null(g, e, st ? st->zuora_last_refresh : STATE_TIME_UNSET);
                GEN_STR(g, "zuora_next_refresh");
                time_or_null(g, e, st ? st->zuora_next_refresh : STATE_TIME_UNSET);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        yajl_gen_get_buf(g, &buf, &len);
        fwrite(buf, 1, len, stdout);
        putchar('\n');
        yajl_gen_free(g);
}

static const char *local(const EnvConfig *e, int64_t t, char buf[static TZ_ISO_MAX]) {
        if (t == STATE_TIME_UNSET || tz_format_local(e->tz, t, buf, TZ_ISO_MAX) < 0)
                return "-";
        return buf;
}

static void status_text(const Config *c, State *state, int64_t now) {
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvConfig *e = &c->envs[i];
                StateEnv *st = state_find(state, e->name);
                char a[TZ_ISO_MAX], b[TZ_ISO_MAX];

                if (st && st->id && strcmp(st->id, e->id) != 0)
                        st = NULL;
                printf("%s%s  %s  %s  \"%s\"%s\n", i ? "\n" : "", e->name, e->id, tz_name(e->tz), e->schedule,
                       e->enabled ? "" : "  (disabled)");
                printf("  next slot:  %s%s\n", local(e, next_slot(e, st, now), a),
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
                        printf("  last job:   %s %s, ended %s%s%s\n", st->last_job->id ? st->last_job->id : "-",
                               st->last_job->status ? st->last_job->status : "?", local(e, st->last_job->ended_at, a),
                               st->last_job->message ? ": " : "", st->last_job->message ? st->last_job->message : "");
                if (st && (st->zuora_last_refresh != STATE_TIME_UNSET || st->zuora_next_refresh != STATE_TIME_UNSET))
                        printf("  zuora:      last refresh %s, next allowed from %s\n",
                               local(e, st->zuora_last_refresh, a), local(e, st->zuora_next_refresh, b));
        }
}

int command_status(const char *config_path, const char *state_dir, bool json) {
        _cleanup_(diags_clear) Diags diags = {};
        _cleanup_free_ char *why = NULL;
        Config *c = NULL;
        State *state = NULL;
        int64_t now = (int64_t) time(NULL);
        int r;

        r = config_load(config_path, now, &c, &diags);
        diags_print(&diags, stderr);
        if (r < 0)
                return EXIT_FAILURE;
        r = state_load(state_dir, &state, &why);
        if (r < 0) {
                fprintf(stderr, "refreshd: cannot read %s/%s: %s\n", state_dir, STATE_FILE_NAME,
                        why ? why : strerror(-r));
                state = state_new();
        }
        if (state) {
                if (json)
                        status_json(c, state, now);
                else
                        status_text(c, state, now);
        }
        state_free(state);
        config_free(c);
        return r < 0 || fflush(stdout) != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
