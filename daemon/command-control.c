/* SPDX-License-Identifier: MIT */
/*
 * The commands that steer the running daemon and see it, through its
 * control socket (io.refreshd.Manager): `pause`, `resume`, `skip`, `unskip`
 * and `list`. Those that change something need the daemon (exit 1, nothing
 * changed, when none answers); `list` falls back to the config and the
 * state file, and says so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "command.h"
#include "config.h"
#include "control.h"
#include "json.h"
#include "macro.h"
#include "plan.h"
#include "state.h"
#include "tz.h"
#include "varlink.h"

#define CALL_TIMEOUT_USEC (10 * USEC_PER_SEC)

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(State *, state_free);

static void writer_donep(JsonWriter *w) {
        json_writer_done(w);
}

/* Calls METHOD of the daemon at PATH with the parameters W holds (an open
 * object, closed here). 0 with *RET the reply; -ECONNREFUSED and -ENOENT
 * when no daemon answers (said on stderr unless QUIET). */
static int call_daemon(const char *path, const char *method, JsonWriter *w, bool quiet, JsonDoc *ret) {
        const char *text;
        size_t size;
        int fd, r;

        json_put_close(w);
        r = json_writer_text(w, &text, &size);
        if (r < 0)
                return r;
        r = varlink_connect(path, &fd);
        if (r < 0) {
                if (!quiet || (r != -ENOENT && r != -ECONNREFUSED))
                        fprintf(stderr,
                                "refreshd: no refreshd daemon answers on %s: %s\n",
                                path,
                                r == -EACCES ? "permission denied (root, refreshd's user or its "
                                               "control_group may use it)"
                                             : strerror(-r));
                return r;
        }
        r = varlink_call(fd, method, text, CALL_TIMEOUT_USEC, ret);
        close(fd);
        if (r < 0)
                fprintf(stderr, "refreshd: the daemon on %s did not answer: %s\n", path, strerror(-r));
        return r;
}

/* Says what error REPLY names; returns the exit status. */
static int reply_failed(const JsonDoc *reply) {
        const char *error = varlink_reply_error(reply);
        const JsonNode *p = varlink_reply_parameters(reply);
        const char *env = json_text(json_get(p, "environment"), false);

        if (strcmp(error, CONTROL_ERROR_NO_SUCH_ENVIRONMENT) == 0)
                fprintf(stderr, "refreshd: no environment '%s' in the running daemon's config\n", env);
        else if (strcmp(error, CONTROL_ERROR_NOT_A_SLOT) == 0)
                fprintf(stderr,
                        "refreshd: %s is no slot of environment '%s' still to come (see `refreshd check`)\n",
                        json_text(json_get(p, "slot"), false),
                        env);
        else if (strcmp(error, CONTROL_ERROR_NO_SLOT_COMES) == 0)
                fprintf(stderr, "refreshd: environment '%s' has no slot to come\n", env);
        else if (strcmp(error, CONTROL_ERROR_NOT_SKIPPED) == 0)
                fprintf(stderr, "refreshd: environment '%s' has no such slot to skip\n", env);
        else if (strcmp(error, CONTROL_ERROR_FAILED) == 0)
                fprintf(stderr,
                        "refreshd: the daemon failed: %s\n",
                        json_text(json_get(p, "message"), false));
        else
                fprintf(stderr, "refreshd: the daemon answered %s\n", error);
        return EXIT_FAILURE;
}

static void put_names(JsonWriter *w, char *const *names, size_t n) {
        json_put_string(w, "environments");
        json_put_array_open(w);
        for (size_t i = 0; i < n; i++)
                json_put_string(w, names[i]);
        json_put_array_close(w);
}

static void put_time_member(JsonWriter *w, const char *key, int64_t t) {
        char buf[TZ_ISO_MAX];

        if (t == STATE_TIME_UNSET || tz_format_utc(t, buf, sizeof(buf)) < 0)
                return;
        json_put_string(w, key);
        json_put_string(w, buf);
}

/* Calls METHOD with W's parameters; the exit status, *RET filled on success. */
static int steer(const char *path, const char *method, JsonWriter *w, JsonDoc *ret) {
        int r = call_daemon(path, method, w, false, ret);

        if (r < 0) {
                fprintf(stderr, "refreshd: nothing changed\n");
                return EXIT_FAILURE;
        }
        if (varlink_reply_error(ret)) {
                int k = reply_failed(ret);
                json_doc_done(ret);
                return k;
        }
        return EXIT_SUCCESS;
}

static int writer_new(JsonWriter *w) {
        int r = json_writer_init(w, /* beautify= */ false, NULL, NULL);
        if (r < 0)
                return r;
        json_put_open(w);
        return 0;
}

int command_pause(const char *path, char *const *names, size_t n, int64_t until, const char *reason) {
        _cleanup_(writer_donep) JsonWriter w = {};
        _cleanup_(json_doc_done) JsonDoc reply = {};
        char buf[TZ_ISO_MAX];
        int k;

        if (writer_new(&w) < 0)
                return EXIT_FAILURE;
        put_names(&w, names, n);
        put_time_member(&w, "until", until);
        if (reason) {
                json_put_string(&w, "reason");
                json_put_string(&w, reason);
        }
        k = steer(path, CONTROL_INTERFACE ".Pause", &w, &reply);
        if (k != EXIT_SUCCESS)
                return k;
        for (size_t i = 0; i < n; i++)
                if (until != STATE_TIME_UNSET && tz_format_utc(until, buf, sizeof(buf)) >= 0)
                        printf("%s: paused until %s\n", names[i], buf);
                else
                        printf("%s: paused until resumed\n", names[i]);
        return EXIT_SUCCESS;
}

int command_resume(const char *path, char *const *names, size_t n, bool catch_up) {
        _cleanup_(writer_donep) JsonWriter w = {};
        _cleanup_(json_doc_done) JsonDoc reply = {};
        const JsonNode *resumed;
        int k;

        if (writer_new(&w) < 0)
                return EXIT_FAILURE;
        put_names(&w, names, n);
        json_put_string(&w, "catch_up");
        json_put_bool(&w, catch_up);
        k = steer(path, CONTROL_INTERFACE ".Resume", &w, &reply);
        if (k != EXIT_SUCCESS)
                return k;
        resumed = json_get(varlink_reply_parameters(&reply), "resumed");
        for (size_t i = 0; i < n; i++) {
                bool was = false;
                for (const JsonNode *v = resumed ? resumed->first : NULL; v && !was; v = v->next)
                        was = json_text(v, false) && strcmp(json_text(v, false), names[i]) == 0;
                printf("%s: %s\n", names[i], was ? "resumed" : "was not paused");
        }
        return EXIT_SUCCESS;
}

static int skip_call(
        const char *path,
        const char *method,
        const char *name,
        int64_t slot,
        const char *reason,
        JsonDoc *reply) {
        _cleanup_(writer_donep) JsonWriter w = {};

        if (writer_new(&w) < 0)
                return EXIT_FAILURE;
        json_put_string(&w, "environment");
        json_put_string(&w, name);
        put_time_member(&w, "slot", slot);
        if (reason) {
                json_put_string(&w, "reason");
                json_put_string(&w, reason);
        }
        return steer(path, method, &w, reply);
}

int command_skip(const char *path, const char *name, int64_t slot, const char *reason) {
        _cleanup_(json_doc_done) JsonDoc reply = {};
        const JsonNode *p;
        int k;

        k = skip_call(path, CONTROL_INTERFACE ".Skip", name, slot, reason, &reply);
        if (k != EXIT_SUCCESS)
                return k;
        p = varlink_reply_parameters(&reply);
        printf("%s: slot %s %s\n",
               name,
               json_text(json_get(p, "slot"), false),
               json_get(p, "already") && json_get(p, "already")->boolean ? "was already skipped"
                                                                         : "skipped");
        return EXIT_SUCCESS;
}

int command_unskip(const char *path, const char *name, int64_t slot) {
        _cleanup_(json_doc_done) JsonDoc reply = {};
        int k;

        k = skip_call(path, CONTROL_INTERFACE ".Unskip", name, slot, NULL, &reply);
        if (k != EXIT_SUCCESS)
                return k;
        printf("%s: slot %s fires again\n",
               name,
               json_text(json_get(varlink_reply_parameters(&reply), "slot"), false));
        return EXIT_SUCCESS;
}

/* ---- list ---- */

static bool skipped_in(int64_t slot, void *userdata) {
        const void **u = userdata;
        return state_skip_find(u[0], u[1], slot);
}

/* The rows `list` shows, without a daemon: from the config and the state. */
static int list_offline(const char *config_path, const char *state_dir, JsonDoc *ret) {
        _cleanup_(diags_clear) Diags diags = {};
        _cleanup_(writer_donep) JsonWriter w = {};
        _cleanup_free_ char *why = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(state_freep) State *s = NULL;
        int64_t now = (int64_t) time(NULL);
        const char *text;
        size_t size;
        int r;

        r = config_load(config_path, now, &c, &diags);
        diags_print(&diags, stderr);
        if (r < 0)
                return r;
        r = state_load(state_dir, &s, &why);
        if (r < 0) {
                fprintf(stderr,
                        "refreshd: cannot read %s/%s: %s\n",
                        state_dir,
                        STATE_FILE_NAME,
                        why ?: strerror(-r));
                return r;
        }
        if (json_writer_init(&w, false, NULL, NULL) < 0)
                return -ENOMEM;
        json_put_open(&w);
        json_put_string(&w, "environments");
        json_put_array_open(&w);
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvConfig *ec = &c->envs[i];
                const StateEnv *st = state_find(s, ec->name);
                const void *u[] = { s, ec->name };
                int64_t after =
                        st && st->last_slot != STATE_TIME_UNSET && st->last_slot > now ? st->last_slot : now;
                int64_t until = !st || !st->pause                      ? PLAN_UNSET
                                : st->pause->until == STATE_TIME_UNSET ? INT64_MAX
                                                                       : st->pause->until;
                int64_t next = ec->enabled ? plan_next_fire(ec, after, until, skipped_in, u) : PLAN_UNSET;
                control_put_environment(&w, ec, s, NULL, next == PLAN_UNSET ? STATE_TIME_UNSET : next);
        }
        json_put_array_close(&w);
        json_put_close(&w);
        r = json_writer_text(&w, &text, &size);
        if (r < 0)
                return r;
        return json_parse(text, size, &(JsonOptions) { .max_depth = 16 }, ret, NULL);
}

/* "3w 5d", "2h 5min", "12s": the two largest units of SEC (>= 0). */
static char *format_span(int64_t sec, char *buf, size_t size) {
        static const struct {
                const char *unit;
                int64_t sec;
        } units[] = { { "y", 31557600 }, { "month", 2629800 }, { "w", 604800 }, { "d", 86400 },
                      { "h", 3600 },     { "min", 60 },        { "s", 1 } };
        size_t n = 0;
        int shown = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && shown < 2; i++) {
                int64_t k = sec / units[i].sec;
                if (k == 0 && !(shown == 0 && units[i].sec == 1))
                        continue;
                n += (size_t) snprintf(
                        buf + n,
                        n < size ? size - n : 0,
                        "%s%" PRId64 "%s",
                        shown ? " " : "",
                        k,
                        units[i].unit);
                sec -= k * units[i].sec;
                shown++;
        }
        return buf;
}

/* A time of row V's KEY: "Tue 2026-12-08 02:00:00 CET" (the local zone), or "-". */
static const char *row_time(const JsonNode *v, const char *key, char *buf, size_t size, int64_t *ret) {
        const char *text = json_text(json_get(v, key), false);
        struct tm tm;
        time_t t;

        *ret = STATE_TIME_UNSET;
        if (!text || tz_parse_iso8601(text, ret) < 0)
                return "-";
        t = (time_t) *ret;
        if (!localtime_r(&t, &tm) || strftime(buf, size, "%a %Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return text;
        return buf;
}

/* The STATE column: paused, skips, a running job, or idle. */
static void row_state(const JsonNode *v, char *buf, size_t size) {
        const JsonNode *skips = json_get(v, "skips");
        const char *until = json_text(json_get(v, "paused_until"), false);
        const char *job = json_text(json_get(v, "job_status"), false);
        const JsonNode *progress = json_get(v, "progress");
        const JsonNode *enabled = json_get(v, "enabled");
        size_t n = 0;

#define ADD(...) n += (size_t) snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__)
        buf[0] = '\0';
        if (enabled && enabled->type == JSON_BOOLEAN && !enabled->boolean)
                ADD("disabled");
        if (json_get(v, "paused") && json_get(v, "paused")->boolean)
                ADD("%spaused%s%s", n ? ", " : "", until ? " until " : "", until ?: "");
        if (skips && skips->first)
                ADD("%sskip %s", n ? ", " : "", json_text(skips->first, false));
        if (job)
                ADD("%srunning%s%s%s",
                    n ? ", " : "",
                    progress && progress->type == JSON_NUMBER ? " " : "",
                    progress && progress->type == JSON_NUMBER ? progress->text : "",
                    progress && progress->type == JSON_NUMBER ? "%" : "");
        if (n == 0)
                ADD("-");
#undef ADD
}

static int64_t row_next(const JsonNode *v) {
        const char *text = json_text(json_get(v, "next"), false);
        int64_t t;
        return text && tz_parse_iso8601(text, &t) >= 0 ? t : INT64_MAX;
}

static int compare_rows(const void *a, const void *b) {
        const JsonNode *x = *(const JsonNode *const *) a, *y = *(const JsonNode *const *) b;
        int64_t p = row_next(x), q = row_next(y);
        return p < q   ? -1
               : p > q ? 1
                       : strcmp(json_text(json_get(x, "name"), false),
                                json_text(json_get(y, "name"), false));
}

static void print_table(const JsonNode **rows, size_t n) {
        int64_t now = (int64_t) time(NULL);

        printf("%-28s %-11s %-28s %-11s %-16s %-20s %s\n",
               "NEXT",
               "LEFT",
               "LAST",
               "PASSED",
               "ENVIRONMENT",
               "SCHEDULE",
               "STATE");
        for (size_t i = 0; i < n; i++) {
                char next[64], last[64], left[32] = "-", passed[40] = "-", state[300];
                int64_t tn, tl;
                const char *ns = row_time(rows[i], "next", next, sizeof(next), &tn);
                const char *ls = row_time(rows[i], "last_slot", last, sizeof(last), &tl);
                if (tn != STATE_TIME_UNSET)
                        format_span(tn > now ? tn - now : 0, left, sizeof(left));
                if (tl != STATE_TIME_UNSET) {
                        char span[32];
                        snprintf(
                                passed,
                                sizeof(passed),
                                "%s ago",
                                format_span(now > tl ? now - tl : 0, span, sizeof(span)));
                }
                row_state(rows[i], state, sizeof(state));
                printf("%-28s %-11s %-28s %-11s %-16s %-20s %s\n",
                       ns,
                       left,
                       ls,
                       passed,
                       json_text(json_get(rows[i], "name"), false),
                       json_text(json_get(rows[i], "schedule"), false),
                       state);
        }
        printf("\n%zu environment%s listed.\n", n, n == 1 ? "" : "s");
}

static void print_json(const JsonNode **rows, size_t n);

int command_list(const char *path, const char *config_path, const char *state_dir, bool json) {
        _cleanup_(writer_donep) JsonWriter w = {};
        _cleanup_(json_doc_done) JsonDoc reply = {};
        _cleanup_free_ const JsonNode **rows = NULL;
        const JsonNode *envs;
        size_t n = 0;
        int r;

        if (writer_new(&w) < 0)
                return EXIT_FAILURE;
        r = call_daemon(path, CONTROL_INTERFACE ".List", &w, /* quiet= */ true, &reply);
        if (r == -ENOENT || r == -ECONNREFUSED) {
                fprintf(stderr,
                        "refreshd: no daemon answers on %s; showing the config and %s/%s instead\n",
                        path,
                        state_dir,
                        STATE_FILE_NAME);
                r = list_offline(config_path, state_dir, &reply);
        }
        if (r < 0)
                return EXIT_FAILURE;
        if (varlink_reply_error(&reply))
                return reply_failed(&reply);
        envs = json_get(
                reply.root->type == JSON_OBJECT && json_get(reply.root, "parameters")
                        ? varlink_reply_parameters(&reply)
                        : reply.root,
                "environments");
        for (const JsonNode *v = envs ? envs->first : NULL; v; v = v->next)
                n++;
        rows = calloc(n + 1, sizeof(*rows));
        if (!rows)
                return EXIT_FAILURE;
        n = 0;
        for (const JsonNode *v = envs ? envs->first : NULL; v; v = v->next)
                rows[n++] = v;
        qsort(rows, n, sizeof(*rows), compare_rows);
        if (json)
                print_json(rows, n);
        else
                print_table(rows, n);
        return EXIT_SUCCESS;
}

static void put_node(JsonWriter *w, const JsonNode *v) {
        switch (v->type) {
        case JSON_NULL:
                json_put_null(w);
                break;
        case JSON_BOOLEAN:
                json_put_bool(w, v->boolean);
                break;
        case JSON_NUMBER: {
                int64_t i;
                if (json_integer(v, &i) >= 0)
                        json_put_int(w, i);
                else
                        json_put_null(w);
                break;
        }
        case JSON_STRING:
                json_put_string(w, v->text);
                break;
        case JSON_OBJECT:
                json_put_open(w);
                for (const JsonNode *c = v->first; c; c = c->next) {
                        json_put_string(w, c->key);
                        put_node(w, c);
                }
                json_put_close(w);
                break;
        case JSON_ARRAY:
                json_put_array_open(w);
                for (const JsonNode *c = v->first; c; c = c->next)
                        put_node(w, c);
                json_put_array_close(w);
                break;
        }
}

static void print_json(const JsonNode **rows, size_t n) {
        _cleanup_(writer_donep) JsonWriter w = {};
        const char *text;
        size_t size;

        if (json_writer_init(&w, /* beautify= */ true, NULL, NULL) < 0)
                return;
        json_put_array_open(&w);
        for (size_t i = 0; i < n; i++)
                put_node(&w, rows[i]);
        json_put_array_close(&w);
        if (json_writer_text(&w, &text, &size) >= 0)
                fwrite(text, 1, size, stdout);
}
