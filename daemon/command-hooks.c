/* SPDX-License-Identifier: MIT */
/*
 * `refreshd hooks ENV --event NAME [--dry-run]`: an environment's hooks and
 * webhooks, run for a sample event of that kind (marked "test": true), as
 * the daemon runs them, with their output and exit status on standard
 * output; or, with --dry-run, what would run and where it would post. The
 * daemon's state is not touched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "command.h"
#include "duration.h"
#include "json.h"
#include "macro.h"
#include "outbox.h"
#include "report.h"
#include "state.h"

#define SAMPLE_JOB_ID "00000000000000000000000000000000"

/* A sample of KIND for EC, the fields such an event has filled in. */
static void sample_event(const EnvConfig *ec, EventKind kind, int64_t now, Event *e) {
        static const char *const status[_EVENT_KIND_MAX] = {
                [EVENT_SUBMITTED] = "NEW",         [EVENT_STARTED] = "IN_PROGRESS",
                [EVENT_COMPLETED] = "COMPLETED",   [EVENT_FAILED] = "FAILED",
                [EVENT_CANCELED] = "CANCELED",     [EVENT_LOST] = "LOST",
                [EVENT_HOOK_FAILED] = "COMPLETED",
        };
        bool job = status[kind] != NULL, ended = kind == EVENT_COMPLETED || kind == EVENT_FAILED ||
                                                 kind == EVENT_CANCELED || kind == EVENT_HOOK_FAILED;

        *e = (Event) EVENT_INIT;
        e->kind = kind;
        e->test = true;
        e->environment = (char *) ec->name;
        e->environment_id = (char *) ec->id;
        e->slot = now - now % 60;
        e->time = now;
        e->job_id = job ? (char *) SAMPLE_JOB_ID : NULL;
        e->job_status = (char *) status[kind];
        e->job_start = job && kind != EVENT_SUBMITTED ? e->slot : EVENT_TIME_UNSET;
        e->job_end = ended ? now : EVENT_TIME_UNSET;
        e->track_id = (char *) "refreshd-test";
        e->attempt = kind == EVENT_RETRYING ? 2 : 0;
        if (!job || kind == EVENT_HOOK_FAILED || kind == EVENT_FAILED)
                e->message = (char *) "a sample event from `refreshd hooks`";
        event_set_id(e, kind == EVENT_HOOK_FAILED ? "test" : NULL, NULL);
}

static void print_word(const char *w) {
        if (*w && strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./=:,@%+") ==
                          strlen(w)) {
                fputs(w, stdout);
                return;
        }
        putchar('\'');
        for (const char *p = w; *p; p++)
                if (*p == '\'')
                        fputs("'\\''", stdout);
                else
                        putchar(*p);
        putchar('\'');
}

static int dry_run(const EnvConfig *ec, const Event *ev) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        const EnvActions *a = ec->actions;
        const char *text;
        size_t size;
        unsigned n = 0;
        char took[DURATION_MAX];

        if (json_writer_init(&w, true, NULL, NULL) < 0)
                return -ENOMEM;
        event_write(&w, ev);
        if (json_writer_text(&w, &text, &size) < 0)
                return -ENOMEM;
        printf("event:\n%.*s\n", (int) size, text);
        for (size_t i = 0; i < a->n_hooks; i++) {
                const HookConfig *h = &a->hooks[i];
                if (!(h->on & (UINT32_C(1) << ev->kind)))
                        continue;
                fputs("hook: ", stdout);
                for (size_t j = 0; h->argv[j]; j++) {
                        _cleanup_free_ char *arg = NULL;
                        if (j > 0)
                                putchar(' ');
                        if (j == 0 || event_expand(h->argv[j], ev, &arg, NULL) < 0)
                                print_word(h->argv[j]);
                        else
                                print_word(arg);
                }
                printf("  (timeout %s)\n", duration_format(h->timeout, took));
                n++;
        }
        for (size_t i = 0; i < a->n_webhooks; i++) {
                const WebhookConfig *wh = &a->webhooks[i];
                if (!(wh->on & (UINT32_C(1) << ev->kind)))
                        continue;
                /* Where, never the URL itself: it may be a secret. */
                if (wh->url)
                        printf("webhook: POST (%s) to the url of line %u\n",
                               webhook_format_to_string(wh->format),
                               wh->line);
                else
                        printf("webhook: POST (%s) to the URL in %s '%s'\n",
                               webhook_format_to_string(wh->format),
                               wh->url_source == SECRET_SOURCE_ENV ? "variable" : "file",
                               wh->url_name);
                n++;
        }
        if (n == 0)
                printf("no hook or webhook of '%s' runs on '%s'\n",
                       ec->name,
                       event_kind_to_string(ev->kind));
        return 0;
}

static void on_save(void *userdata) {
}

static void on_idle(void *userdata) {
        (void) sd_event_exit(userdata, 0);
}

/* Runs them: the daemon's own outbox, on a scratch state, webhooks tried once. */
static int run_for_real(Config *c, const EnvConfig *ec, const Event *ev) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        char dir[] = "/tmp/refreshd-hooks-XXXXXX";
        State *state = state_new();
        Outbox *o = NULL;
        int r;

        if (!state)
                return -ENOMEM;
        if (!mkdtemp(dir)) {
                state_free(state);
                return -errno;
        }
        r = sd_event_new(&event);
        if (r >= 0)
                r = outbox_new(
                        &(OutboxOptions) { .event = event,
                                           .state = state,
                                           .files_dir = dir,
                                           .save_later = on_save,
                                           .idle = on_idle,
                                           .userdata = event,
                                           .once = true },
                        &o);
        if (r >= 0)
                r = outbox_set_config(o, c);
        if (r >= 0)
                r = outbox_raise(o, ec, ev);
        if (r >= 0)
                r = sd_event_loop(event);
        unsigned failures = o ? outbox_failures(o) : 0;
        outbox_free(o);
        state_free(state);
        (void) rmdir(dir);
        return r < 0 ? r : (int) failures;
}

int command_hooks(const char *config_path, const char *env_name, EventKind kind, bool dry) {
        _cleanup_(diags_clear) Diags diags = {};
        Config *c = NULL;
        Event ev;
        int r;

        r = config_load(config_path, (int64_t) time(NULL), &c, &diags);
        diags_print(&diags, stderr);
        if (r < 0)
                return EXIT_FAILURE;
        const EnvConfig *ec = config_find_env(c, env_name);
        if (!ec) {
                fprintf(stderr, "refreshd: no environment '%s' in %s\n", env_name, config_path);
                config_free(c);
                return EXIT_FAILURE;
        }
        sample_event(ec, kind, (int64_t) time(NULL), &ev);
        if (dry)
                r = dry_run(ec, &ev);
        else {
                const EnvActions *a = ec->actions;
                bool any = false;
                for (size_t i = 0; i < a->n_hooks; i++)
                        any = any || (a->hooks[i].on & (UINT32_C(1) << kind));
                for (size_t i = 0; i < a->n_webhooks; i++)
                        any = any || (a->webhooks[i].on & (UINT32_C(1) << kind));
                if (!any)
                        printf("no hook or webhook of '%s' runs on '%s'\n",
                               ec->name,
                               event_kind_to_string(kind));
                else if (outbox_check_webhook_urls(c, stderr) > 0)
                        r = 1;
                else {
                        report_init(LOG_TARGET_CONSOLE, stdout);
                        r = run_for_real(c, ec, &ev);
                }
        }
        config_free(c);
        if (r < 0)
                fprintf(stderr, "refreshd: %s\n", strerror(-r));
        return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
