/* SPDX-License-Identifier: MIT */
#include "outbox.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "hook.h"
#include "http.h"
#include "json.h"
#include "list.h"
#include "macro.h"
#include "report.h"
#include "secret.h"
#include "zuora.h"

#define WEBHOOK_TIMEOUT (30 * USEC_PER_SEC)
#define WEBHOOK_MAX_BODY (64 * 1024)
#define WEBHOOK_MAX_IN_FLIGHT 8
#define WEBHOOK_BACKOFF_MAX (300 * USEC_PER_SEC)
#define HOOK_STARTS_PER_TURN 8
#define HOOK_PREFIX "hook:"
#define WEBHOOK_PREFIX "webhook:"

typedef struct Delivery Delivery;

/* One hook or webhook of one event, while it runs or waits to be tried again. */
struct Delivery {
        Outbox *outbox;
        LIST_FIELDS(Delivery, deliveries);
        char event_id[EVENT_ID_LEN + 1];
        char *key;
        char *environment;
        HookRun *hook;
        HttpRequest *request;
        sd_event_source *retry; /* a webhook waiting for its next attempt */
        char *event_file;
        char *host; /* a webhook's host, for logs: never its URL */
        unsigned attempt;
        uint64_t first_attempt; /* CLOCK_BOOTTIME µs */
};

struct Outbox {
        OutboxOptions options;
        Config *config;
        Http *http;
        LIST_HEAD(Delivery) deliveries;
        sd_event_source *kick;
        unsigned n_hooks, n_webhooks; /* running */
        unsigned budget;              /* hooks this turn of the loop may still start */
        bool more;                    /* some had to wait for the next turn */
        unsigned n_failures;
};

static uint64_t now_boottime(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int64_t now_realtime(void) {
        return (int64_t) time(NULL);
}

/* ---- deliveries ---- */

static Delivery *delivery_find(Outbox *o, const char *event_id, const char *key) {
        for (Delivery *d = o->deliveries.head; d; d = d->deliveries_next)
                if (strcmp(d->event_id, event_id) == 0 && strcmp(d->key, key) == 0)
                        return d;
        return NULL;
}

static Delivery *delivery_free(Delivery *d) {
        if (!d)
                return NULL;
        LIST_REMOVE(deliveries, &d->outbox->deliveries, d);
        if (d->hook) {
                d->hook = hook_run_free(d->hook);
                d->outbox->n_hooks--;
        }
        if (d->request) {
                http_cancel(d->request);
                d->outbox->n_webhooks--;
        }
        d->retry = sd_event_source_disable_unref(d->retry);
        if (d->event_file)
                (void) unlink(d->event_file);
        free(d->event_file);
        free(d->key);
        free(d->environment);
        free(d->host);
        free(d);
        return NULL;
}

static int delivery_new(Outbox *o, const Event *ev, const char *key, Delivery **ret) {
        Delivery *d = calloc(1, sizeof(Delivery));

        if (!d)
                return -ENOMEM;
        d->outbox = o;
        memcpy(d->event_id, ev->id, sizeof(d->event_id));
        d->key = strdup(key);
        d->environment = strdup(ev->environment);
        d->first_attempt = now_boottime();
        LIST_APPEND(deliveries, &o->deliveries, d);
        if (!d->key || !d->environment) {
                delivery_free(d);
                return -ENOMEM;
        }
        *ret = d;
        return 0;
}

static void outbox_kick(Outbox *o) {
        (void) sd_event_source_set_enabled(o->kick, SD_EVENT_ONESHOT);
}

static ReportFields event_fields(const Event *ev) {
        ReportFields f = REPORT_FIELDS_INIT;

        f.environment = ev->environment;
        f.environment_id = ev->environment_id;
        f.slot = ev->slot;
        f.job_id = ev->job_id;
        f.job_status = ev->job_status;
        f.event = event_kind_to_string(ev->kind);
        f.event_id = ev->id;
        return f;
}

/* Delivery KEY of event EVENT_ID is done: out of the state's outbox, and,
 * with the event's last, the environment's last event. */
static void outbox_done(Outbox *o, const char *event_id, const char *key) {
        State *s = o->options.state;
        ssize_t i = state_outbox_find(s, event_id);

        if (i >= 0) {
                Event last = { .kind = s->outbox[i].event.kind };
                StateEnv *st = state_find(s, s->outbox[i].event.environment);
                memcpy(last.id, event_id, sizeof(last.id));
                if (state_outbox_done(s, (size_t) i, key) && st)
                        (void) state_env_set_last_event(st, &last, now_realtime());
        }
        o->options.save_later(o->options.userdata);
        outbox_kick(o);
}

static void outbox_record_failure(Outbox *o, const char *environment, const char *text) {
        StateEnv *st = state_find(o->options.state, environment);

        o->n_failures++;
        if (st)
                (void) state_env_set_delivery_error(st, text, now_realtime());
}

/* The event D delivers, and its environment's config; NULL when either is gone. */
static const Event *delivery_event(const Delivery *d, const EnvConfig **ret_ec) {
        const State *s = d->outbox->options.state;
        ssize_t i = state_outbox_find(s, d->event_id);

        *ret_ec = config_find_env(d->outbox->config, d->environment);
        return i >= 0 && *ret_ec ? &s->outbox[i].event : NULL;
}

/* D ended, whatever the outcome: out of the outbox, and freed. */
static void delivery_finish(Delivery *d) {
        outbox_done(d->outbox, d->event_id, d->key);
        delivery_free(d);
}

/* ---- hooks ---- */

static const HookConfig *find_hook(const EnvConfig *ec, const char *key) {
        for (size_t i = 0; i < ec->actions->n_hooks; i++)
                if (strcmp(ec->actions->hooks[i].key, key + strlen(HOOK_PREFIX)) == 0)
                        return &ec->actions->hooks[i];
        return NULL;
}

static const WebhookConfig *find_webhook(const EnvConfig *ec, const char *key) {
        for (size_t i = 0; i < ec->actions->n_webhooks; i++)
                if (strcmp(ec->actions->webhooks[i].key, key + strlen(WEBHOOK_PREFIX)) == 0)
                        return &ec->actions->webhooks[i];
        return NULL;
}

static void on_hook_line(void *userdata, bool stderr, const char *line) {
        Delivery *d = userdata;
        const EnvConfig *ec;
        const Event *ev = delivery_event(d, &ec);
        const HookConfig *h = ev ? find_hook(ec, d->key) : NULL;

        if (!h)
                return;
        ReportFields f = event_fields(ev);
        f.hook = h->argv[0];
        f.hook_stream = stderr ? "stderr" : "stdout";
        report_hook_output(ec, &f, line);
}

/* A hook of EV failed (TEXT): hook_failed follows, unless EV is a hook_failed itself. */
static void raise_hook_failed(
        Outbox *o, const EnvConfig *ec, const Event *ev, const char *key, const char *text) {
        Event hf;

        if (ev->kind == EVENT_HOOK_FAILED || event_copy(&hf, ev) < 0)
                return;
        hf.kind = EVENT_HOOK_FAILED;
        free(hf.message);
        hf.message = strdup(text);
        hf.time = now_realtime();
        event_set_id(&hf, ev->id, key);
        (void) outbox_raise(o, ec, &hf);
        event_done(&hf);
}

static void on_hook_done(HookRun *run, const HookResult *res, void *userdata) {
        Delivery *d = userdata;
        const EnvConfig *ec;
        const Event *ev = delivery_event(d, &ec);
        const HookConfig *h = ev ? find_hook(ec, d->key) : NULL;
        char text[512];

        d->hook = NULL; /* freed by hook.c after this returns */
        d->outbox->n_hooks--;
        if (h) {
                ReportFields f = event_fields(ev);
                f.hook = h->argv[0];
                report_hook_finished(
                        ec, &f, res->exit_status, res->signal, res->timed_out, res->duration_usec);
        }
        if (h && (res->exit_status != 0 || res->timed_out)) {
                if (res->timed_out)
                        snprintf(text, sizeof(text), "hook %s ran past its timeout", h->argv[0]);
                else if (res->exit_status < 0)
                        snprintf(
                                text,
                                sizeof(text),
                                "hook %s was killed by signal %d",
                                h->argv[0],
                                res->signal);
                else
                        snprintf(
                                text,
                                sizeof(text),
                                "hook %s failed with exit status %d",
                                h->argv[0],
                                res->exit_status);
                outbox_record_failure(d->outbox, d->environment, text);
                raise_hook_failed(d->outbox, ec, ev, d->key, text);
        }
        delivery_finish(d);
}

static int write_event_file(const char *dir, const Event *ev, char **ret_path) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        _cleanup_free_ char *path = NULL;
        const char *text;
        size_t size;
        int r;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (asprintf(&path, "%s/%s.json", dir, ev->id) < 0)
                return -ENOMEM;
        r = json_writer_init(&w, true, NULL, NULL);
        if (r < 0)
                return r;
        event_write(&w, ev);
        r = json_writer_text(&w, &text, &size);
        if (r < 0)
                return r;
        /* Written again before each run: no fsync needed. */
        _cleanup_(closep) int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text, size);
        if (r < 0)
                return r;
        *ret_path = TAKE_PTR(path);
        return 0;
}

/* The hook's environment: a few of the daemon's (never a secret, nor the
 * credentials directory), then the event's. */
static int hook_environment(const Event *ev, const char *event_file, char ***ret) {
        static const char *const keep[] = { "LANG", "LC_ALL", "TZ", "STATE_DIRECTORY", "RUNTIME_DIRECTORY" };
        _cleanup_(strv_freep) char **vars = NULL;
        size_t n = 0, m;
        int r;

        r = event_environment(ev, &vars);
        if (r < 0)
                return r;
        for (m = 0; vars[m]; m++)
                ;
        char **l = calloc(m + ELEMENTSOF(keep) + 3, sizeof(char *));
        if (!l)
                return -ENOMEM;
        if (!(l[n++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")))
                goto oom;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                const char *v = getenv(keep[i]);
                if (v && asprintf(&l[n++], "%s=%s", keep[i], v) < 0) {
                        l[--n] = NULL;
                        goto oom;
                }
        }
        for (size_t i = 0; i < m; i++)
                l[n++] = TAKE_PTR(vars[i]);
        if (asprintf(&l[n++], "REFRESHD_EVENT_FILE=%s", event_file) < 0) {
                l[--n] = NULL;
                goto oom;
        }
        *ret = l;
        return 0;
oom:
        strv_free(l);
        return -ENOMEM;
}

static int hook_argv(const HookConfig *h, const Event *ev, char ***ret) {
        size_t n = 0;

        while (h->argv[n])
                n++;
        _cleanup_(strv_freep) char **argv = calloc(n + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = i == 0 ? ((argv[0] = strdup(h->argv[0])) ? 0 : -ENOMEM)
                               : event_expand(h->argv[i], ev, &argv[i], NULL);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(argv);
        return 0;
}

static int hook_start(Outbox *o, Delivery *d, const HookConfig *h, const Event *ev) {
        _cleanup_(strv_freep) char **argv = NULL, **envp = NULL;
        int r;

        r = write_event_file(o->options.files_dir, ev, &d->event_file);
        if (r >= 0)
                r = hook_argv(h, ev, &argv);
        if (r >= 0)
                r = hook_environment(ev, d->event_file, &envp);
        if (r < 0)
                return r;
        HookSpec spec = {
                .argv = (const char *const *) argv,
                .envp = (const char *const *) envp,
                .timeout = h->timeout,
                .line = on_hook_line,
                .done = on_hook_done,
                .userdata = d,
        };
        r = hook_run_start(o->options.event, &spec, &d->hook);
        if (r >= 0)
                o->n_hooks++;
        return r;
}

/* ---- webhooks ---- */

static char *url_host(const char *url) {
        CURLU *u = curl_url();
        char *host = NULL, *copy = NULL;

        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
                copy = strdup(host);
        curl_free(host);
        curl_url_cleanup(u);
        return copy ? copy : strdup("(unknown host)");
}

/* The URL (secret material: secret_string_free() it), read afresh for each attempt. */
static int webhook_url(const WebhookConfig *w, char **ret) {
        Secret *s = NULL;
        int r;

        if (w->url)
                return (*ret = strdup(w->url)) ? 0 : -ENOMEM;
        r = secret_read_from(w->url_source, w->url_name, w->url_path, &s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s->value);
        s->size = 0;
        secret_free(s);
        return config_check_url(*ret) ? (*ret = secret_string_free(*ret), -EINVAL) : 0;
}

static int webhook_body(const WebhookConfig *w, const Event *ev, char **ret, size_t *ret_size) {
        _cleanup_(json_writer_done) JsonWriter jw = {};
        _cleanup_free_ char *summary = NULL;
        const char *text;
        int r;

        r = json_writer_init(&jw, false, NULL, NULL);
        if (r < 0)
                return r;
        if (w->format == WEBHOOK_FORMAT_SLACK) {
                r = event_summary(ev, &summary);
                if (r < 0)
                        return r;
                json_put_open(&jw);
                json_put_string(&jw, "text");
                json_put_string(&jw, summary);
                json_put_close(&jw);
        } else
                event_write(&jw, ev);
        r = json_writer_text(&jw, &text, ret_size);
        if (r < 0)
                return r;
        return (*ret = strndup(text, *ret_size)) ? 0 : -ENOMEM;
}

static int webhook_start(Outbox *o, Delivery *d, const WebhookConfig *w, const Event *ev);

static int on_webhook_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Delivery *d = userdata;

        d->retry = sd_event_source_disable_unref(d->retry);
        outbox_kick(d->outbox); /* tried again by the next kick, within the in-flight bound */
        return 0;
}

static bool status_is_retryable(long status) {
        return status == 0 || status == 408 || status == 429 || status >= 500;
}

static uint64_t webhook_backoff(const Delivery *d, const HttpResponse *resp) {
        uint64_t delay = USEC_PER_SEC << (d->attempt < 9 ? d->attempt - 1 : 8);

        if (resp->status == 429 || resp->status == 503) {
                uint64_t asked;
                if (zuora_retry_after(resp->retry_after, resp->ratelimit_reset, now_realtime(), &asked) >= 0)
                        delay = asked;
        }
        return delay < WEBHOOK_BACKOFF_MAX ? delay : WEBHOOK_BACKOFF_MAX;
}

static void on_webhook_done(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        Delivery *d = userdata;
        Outbox *o = d->outbox;
        const EnvConfig *ec;
        const Event *ev = delivery_event(d, &ec);
        char why[300], text[400];

        d->request = NULL;
        o->n_webhooks--;
        if (!ev) {
                delivery_free(d);
                outbox_kick(o);
                return;
        }
        ReportFields f = event_fields(ev);
        f.webhook_host = d->host;
        f.http_status = resp->status > 0 ? resp->status : REPORT_UNSET;
        if (resp->error == 0 && resp->status >= 200 && resp->status < 300) {
                report_webhook_delivered(ec, &f);
                delivery_finish(d);
                return;
        }
        if (resp->error < 0)
                snprintf(why, sizeof(why), "%s", resp->error_text);
        else
                snprintf(why, sizeof(why), "HTTP %ld", resp->status);
        uint64_t delay = webhook_backoff(d, resp);
        bool retry = !o->options.once && status_is_retryable(resp->error < 0 ? 0 : resp->status) &&
                     now_boottime() + delay - d->first_attempt <= ec->retry_for;
        if (retry)
                f.retry_in_usec = (int64_t) delay;
        report_webhook_failed(ec, &f, why);
        if (retry && sd_event_add_time_relative(
                             o->options.event,
                             &d->retry,
                             CLOCK_BOOTTIME,
                             delay,
                             USEC_PER_SEC / 10,
                             on_webhook_retry,
                             d) >= 0)
                return;
        snprintf(text, sizeof(text), "webhook at %s: %s", d->host, why);
        outbox_record_failure(o, d->environment, text);
        delivery_finish(d);
}

static int webhook_start(Outbox *o, Delivery *d, const WebhookConfig *w, const Event *ev) {
        _cleanup_free_ char *body = NULL, *event_header = NULL, *id_header = NULL;
        char *url = NULL;
        size_t size;
        int r;

        r = webhook_url(w, &url);
        if (r < 0)
                return r;
        free(d->host);
        d->host = url_host(url);
        r = webhook_body(w, ev, &body, &size);
        if (r >= 0 && (asprintf(&event_header, "X-Refreshd-Event: %s", event_kind_to_string(ev->kind)) < 0 ||
                       asprintf(&id_header, "X-Refreshd-Event-Id: %s", ev->id) < 0))
                r = -ENOMEM;
        if (r >= 0) {
                const char *headers[] = { event_header, id_header, NULL };
                HttpRequestSpec spec = {
                        .method = HTTP_METHOD_POST,
                        .url = url,
                        .headers = headers,
                        .body = body,
                        .body_size = size,
                        .content_type = "application/json",
                };
                r = http_submit(o->http, &spec, on_webhook_done, d, &d->request);
        }
        secret_string_free(url);
        if (r < 0)
                return r;
        d->attempt++;
        o->n_webhooks++;
        return 0;
}

/* ---- running what can run ---- */

/* Environments whose next hook must wait: one runs, or an earlier event's waits. */
typedef struct Busy {
        const char **names;
        size_t n, allocated;
} Busy;

static bool busy_has(const Busy *b, const char *name) {
        for (size_t i = 0; i < b->n; i++)
                if (strcmp(b->names[i], name) == 0)
                        return true;
        return false;
}

static void busy_add(Busy *b, const char *name) {
        if (!busy_has(b, name) && GROW(b->names, b->allocated, b->n, 16) >= 0)
                b->names[b->n++] = name;
}

/* Drops KEY of entry I: what it names is gone from the config. */
static void drop(Outbox *o, size_t i, const char *key, const EnvConfig *ec, const char *what) {
        StateOutboxEntry *e = &o->options.state->outbox[i];
        _cleanup_free_ char *id = strdup(e->event.id), *k = strdup(key);
        ReportFields f = event_fields(&e->event);

        report_delivery_dropped(ec, &f, what);
        if (id && k)
                outbox_done(o, id, k);
}

static void start_failed(Outbox *o, Delivery *d, const EnvConfig *ec, const Event *ev, int r, bool hook) {
        ReportFields f = event_fields(ev);
        char text[300];

        if (hook) {
                const HookConfig *h = find_hook(ec, d->key);
                f.hook = h ? h->argv[0] : NULL;
                report_hook_start_failed(ec, &f, r);
                snprintf(text, sizeof(text), "hook %s could not be started: %s", f.hook, strerror(-r));
        } else {
                f.webhook_host = d->host;
                report_webhook_failed(
                        ec, &f, r == -EINVAL ? "its URL is not https (nor http to loopback)" : strerror(-r));
                snprintf(text, sizeof(text), "webhook: %s", strerror(-r));
        }
        outbox_record_failure(o, d->environment, text);
        if (hook)
                raise_hook_failed(o, ec, ev, d->key, text);
        delivery_finish(d);
}

/* One pass over the outbox; false when it changed under it (start again). */
static bool outbox_pass(Outbox *o, Busy *busy) {
        State *s = o->options.state;

        for (size_t i = 0; i < s->n_outbox; i++) {
                const Event *ev = &s->outbox[i].event;
                const EnvConfig *ec = config_find_env(o->config, ev->environment);
                bool hook_seen = false;

                for (char **k = s->outbox[i].pending; *k; k++) {
                        bool is_hook = strncmp(*k, HOOK_PREFIX, strlen(HOOK_PREFIX)) == 0;
                        const HookConfig *h = ec && is_hook ? find_hook(ec, *k) : NULL;
                        const WebhookConfig *w = ec && !is_hook ? find_webhook(ec, *k) : NULL;
                        Delivery *d = delivery_find(o, ev->id, *k);
                        int r;

                        if (!h && !w && !d) {
                                drop(o, i, *k, ec, is_hook ? "a hook" : "a webhook");
                                return false;
                        }
                        if (!is_hook) {
                                if ((d && (d->request || d->retry)) ||
                                    o->n_webhooks >= WEBHOOK_MAX_IN_FLIGHT || !w)
                                        continue;
                                if (!d && delivery_new(o, ev, *k, &d) < 0)
                                        continue;
                                r = webhook_start(o, d, w, ev);
                                if (r < 0) {
                                        start_failed(o, d, ec, ev, r, false);
                                        return false;
                                }
                                continue;
                        }
                        /* Hooks: the first pending one of the entry, if its environment is free. */
                        if (hook_seen)
                                continue;
                        hook_seen = true;
                        if (d || busy_has(busy, ev->environment) ||
                            o->n_hooks >= o->config->max_concurrent_hooks || !h) {
                                busy_add(busy, ev->environment);
                                continue;
                        }
                        busy_add(busy, ev->environment);
                        if (o->budget == 0) {
                                o->more = true;
                                continue;
                        }
                        o->budget--;
                        if (delivery_new(o, ev, *k, &d) < 0)
                                continue;
                        r = hook_start(o, d, h, ev);
                        if (r < 0) {
                                start_failed(o, d, ec, ev, r, true);
                                return false;
                        }
                }
        }
        return true;
}

static int on_kick(sd_event_source *source, void *userdata) {
        Outbox *o = userdata;
        Busy busy = {};

        if (!o->config)
                return 0;
        /* A few hooks a turn: a slot due meanwhile fires between them. */
        o->budget = HOOK_STARTS_PER_TURN;
        o->more = false;
        for (unsigned tries = 0; tries < 1000; tries++) {
                busy.n = 0;
                if (outbox_pass(o, &busy))
                        break;
        }
        free(busy.names);
        if (o->more)
                outbox_kick(o);
        if (o->deliveries.n == 0 && o->options.state->n_outbox == 0 && o->options.idle)
                o->options.idle(o->options.userdata);
        return 0;
}

/* ---- the interface ---- */

int outbox_new(const OutboxOptions *options, Outbox **ret) {
        _cleanup_free_ Outbox *o = calloc(1, sizeof(Outbox));
        int r;

        if (!o)
                return -ENOMEM;
        o->options = *options;
        HttpOptions http = {
                .user_agent = "refreshd/" PROJECT_VERSION,
                .timeout_usec = WEBHOOK_TIMEOUT,
                .max_body = WEBHOOK_MAX_BODY,
                .max_connections = WEBHOOK_MAX_IN_FLIGHT,
        };
        r = http_new(options->event, &http, &o->http);
        if (r < 0)
                return r;
        r = sd_event_add_defer(options->event, &o->kick, on_kick, o);
        if (r < 0) {
                http_free(o->http);
                return r;
        }
        (void) sd_event_source_set_enabled(o->kick, SD_EVENT_OFF);
        /* After the timers: a slot never waits for hooks to start. */
        (void) sd_event_source_set_priority(o->kick, SD_EVENT_PRIORITY_NORMAL + 10);
        (void) sd_event_source_set_description(o->kick, "outbox");
        *ret = TAKE_PTR(o);
        return 0;
}

Outbox *outbox_free(Outbox *o) {
        if (!o)
                return NULL;
        while (o->deliveries.head) {
                /* The event file stays for the hook's next run. */
                Delivery *d = o->deliveries.head;
                d->event_file = mfree(d->event_file);
                delivery_free(d);
        }
        o->kick = sd_event_source_disable_unref(o->kick);
        http_free(o->http);
        config_free(o->config);
        free(o);
        return NULL;
}

int outbox_set_config(Outbox *o, Config *c) {
        config_free(o->config);
        o->config = config_ref(c);
        outbox_kick(o);
        return 0;
}

/* The deliveries EV calls for in EC: its hooks' and webhooks' keys, each once. */
static int pending_keys(const EnvConfig *ec, EventKind kind, char ***ret) {
        const EnvActions *a = ec->actions;
        _cleanup_(strv_freep) char **l = calloc(a->n_hooks + a->n_webhooks + 1, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < a->n_hooks + a->n_webhooks; i++) {
                bool hook = i < a->n_hooks;
                uint32_t on = hook ? a->hooks[i].on : a->webhooks[i - a->n_hooks].on;
                const char *key = hook ? a->hooks[i].key : a->webhooks[i - a->n_hooks].key;
                char *k;
                if (!(on & (UINT32_C(1) << kind)))
                        continue;
                if (asprintf(&k, "%s%s", hook ? HOOK_PREFIX : WEBHOOK_PREFIX, key) < 0)
                        return -ENOMEM;
                bool dup = false;
                for (size_t j = 0; j < n && !dup; j++)
                        dup = strcmp(l[j], k) == 0;
                if (dup)
                        free(k);
                else
                        l[n++] = k;
        }
        *ret = TAKE_PTR(l);
        return (int) n;
}

int outbox_raise(Outbox *o, const EnvConfig *ec, const Event *ev) {
        char **keys = NULL;
        int r;

        if (state_outbox_find(o->options.state, ev->id) >= 0)
                return 0; /* seen again (a restart, a poll repeated): already queued */
        r = pending_keys(ec, ev->kind, &keys);
        if (r <= 0) {
                strv_free(keys);
                return r;
        }
        r = state_outbox_add(o->options.state, ev, keys);
        if (r < 0) {
                report_log(
                        LOG_ERR,
                        "environment '%s': out of memory: the hooks of event %s are lost",
                        ec->name,
                        event_kind_to_string(ev->kind));
                return r;
        }
        o->options.save_later(o->options.userdata);
        outbox_kick(o);
        return 0;
}

unsigned outbox_failures(const Outbox *o) {
        return o->n_failures;
}

unsigned outbox_check_webhook_urls(const Config *c, FILE *f) {
        unsigned problems = 0;

        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvActions *a = c->envs[i].actions;
                /* Environments sharing the defaults' webhooks are checked once. */
                if (i > 0 && a == c->envs[i - 1].actions)
                        continue;
                for (size_t j = 0; j < a->n_webhooks; j++) {
                        const WebhookConfig *w = &a->webhooks[j];
                        char *url = NULL;
                        const char *why = NULL;
                        if (w->url)
                                continue;
                        int r = webhook_url(w, &url);
                        if (r == -EINVAL)
                                why = "is not https:// (nor http:// to a loopback address)";
                        else if (r < 0)
                                why = strerror(-r);
                        secret_string_free(url);
                        if (!why)
                                continue;
                        problems++;
                        char line[1024];
                        snprintf(
                                line,
                                sizeof(line),
                                "%s:%u:%u: error: '%s': the webhook URL in '%s' %s%s",
                                c->path,
                                w->line,
                                w->column,
                                w->url_source == SECRET_SOURCE_FILE         ? "url_file"
                                : w->url_source == SECRET_SOURCE_CREDENTIAL ? "url_credential"
                                                                            : "url_env",
                                w->url_name,
                                r == -EINVAL ? "" : "cannot be read: ",
                                why);
                        if (f)
                                fprintf(f, "%s\n", line);
                        else
                                report_log(LOG_ERR, "%s", line);
                }
        }
        return problems;
}

char *outbox_files_dir(const char *state_dir) {
        _cleanup_free_ char *cwd = state_dir[0] == '/' ? NULL : getcwd(NULL, 0);
        char *p;

        /* Absolute: a hook is told where its event file is, whatever its working directory. */
        if (state_dir[0] != '/' && !cwd)
                return NULL;
        return asprintf(&p, "%s%s%s/events", cwd ? cwd : "", cwd ? "/" : "", state_dir) < 0 ? NULL : p;
}
