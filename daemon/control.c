/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "control.h"
#include "macro.h"
#include "report.h"
#include "tz.h"
#include "varlink.h"

static const char control_description[] =
        "# refreshd's control interface: steer the schedule and see it.\n"
        "# Times are RFC 3339 strings; a slot is one of the schedule's fire times.\n"
        "interface io.refreshd.Manager\n"
        "\n"
        "type Environment (\n"
        "  name: string,\n"
        "  id: string,\n"
        "  schedule: string,\n"
        "  timezone: string,\n"
        "  enabled: bool,\n"
        "  state: string,\n"
        "  next: ?string,\n"
        "  last_slot: ?string,\n"
        "  last_status: ?string,\n"
        "  last_ended: ?string,\n"
        "  zuora_last_refresh: ?string,\n"
        "  job_id: ?string,\n"
        "  job_status: ?string,\n"
        "  progress: ?int,\n"
        "  paused: bool,\n"
        "  paused_until: ?string,\n"
        "  pause_reason: ?string,\n"
        "  paused_by: ?string,\n"
        "  skips: []string\n"
        ")\n"
        "\n"
        "# Fire nothing in these environments until Resume (or UNTIL); their jobs are still followed.\n"
        "method Pause(environments: []string, until: ?string, reason: ?string) -> ()\n"
        "\n"
        "# Fire again; with catch_up, the latest slot held while paused fires now.\n"
        "method Resume(environments: []string, catch_up: ?bool) -> (resumed: []string)\n"
        "\n"
        "# Do not fire SLOT (the next slot not skipped yet, when not given).\n"
        "method Skip(environment: string, slot: ?string, reason: ?string) -> (slot: string, already: bool)\n"
        "\n"
        "# Fire SLOT after all (the earliest skipped, when not given).\n"
        "method Unskip(environment: string, slot: ?string) -> (slot: string)\n"
        "\n"
        "# Every environment, sorted by its next fire.\n"
        "method List() -> (environments: []Environment)\n"
        "\n"
        "error NoSuchEnvironment (environment: string)\n"
        "error NotASlot (environment: string, slot: string)\n"
        "error NoSlotComes (environment: string)\n"
        "error NotSkipped (environment: string)\n"
        "error Failed (message: string)\n";

struct Control {
        VarlinkServer *server;
        const ControlOps *ops;
        void *userdata;
};

char *control_default_path(void) {
        const char *dir = getenv("RUNTIME_DIRECTORY");
        char *p;

        if (!dir || !*dir)
                return strdup(CONTROL_SOCKET_DEFAULT);
        /* RuntimeDirectory= may list several, separated by ':': the first is ours. */
        size_t n = strcspn(dir, ":");
        if (asprintf(&p, "%.*s/%s", (int) n, dir, CONTROL_SOCKET_NAME) < 0)
                return NULL;
        return p;
}

/* "uid 1000 (alice)", or "uid 1000" when the name is not known here. */
static void caller_name(const VarlinkCall *call, char *buf, size_t size) {
        uid_t uid = varlink_call_uid(call);
        struct passwd pw, *found = NULL;
        char pwbuf[1024];

        if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &found) == 0 && found)
                snprintf(buf, size, "uid %u (%s)", (unsigned) uid, found->pw_name);
        else
                snprintf(buf, size, "uid %u", (unsigned) uid);
}

static void put_time(JsonWriter *w, int64_t t) {
        char buf[TZ_ISO_MAX];

        if (t == STATE_TIME_UNSET || tz_format_utc(t, buf, sizeof(buf)) < 0)
                json_put_null(w);
        else
                json_put_string(w, buf);
}

/* The optional time parameter KEY: STATE_TIME_UNSET when absent; false when
 * it is there but no time. */
static bool param_time(const JsonNode *params, const char *key, int64_t *ret) {
        const JsonNode *v = json_get(params, key);

        *ret = STATE_TIME_UNSET;
        if (!v || v->type == JSON_NULL)
                return true;
        return json_text(v, false) && tz_parse_iso8601(json_text(v, false), ret) >= 0;
}

static const char *param_string(const JsonNode *params, const char *key) {
        return json_text(json_get(params, key), false);
}

/* The environments named in array KEY, all of them found, into ENVS (N);
 * answers CALL with the error and returns false otherwise. */
static bool param_envs(
        Control *c, VarlinkCall *call, const JsonNode *params, Env **envs, size_t max, size_t *n) {
        const JsonNode *l = json_get(params, "environments");

        *n = 0;
        if (!l || l->type != JSON_ARRAY || !l->first) {
                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "environments");
                return false;
        }
        for (const JsonNode *v = l->first; v; v = v->next) {
                const char *name = json_text(v, false);
                Env *e = name ? c->ops->find(c->userdata, name) : NULL;
                if (!name || *n >= max) {
                        varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "environments");
                        return false;
                }
                if (!e) {
                        varlink_error(call, CONTROL_ERROR_NO_SUCH_ENVIRONMENT, "environment", name);
                        return false;
                }
                envs[(*n)++] = e;
        }
        return true;
}

static void failed(VarlinkCall *call, int r) {
        varlink_error(call, CONTROL_ERROR_FAILED, "message", strerror(-r));
}

#define ENVS_PER_CALL 1024

static void method_pause(Control *c, VarlinkCall *call, const JsonNode *params, const char *by) {
        _cleanup_free_ Env **envs = calloc(ENVS_PER_CALL, sizeof(Env *));
        const char *reason = param_string(params, "reason");
        int64_t until;
        size_t n;

        if (!envs) {

                failed(call, -ENOMEM);

                return;
        }
        if (!param_time(params, "until", &until)) {
                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "until");
                return;
        }
        if (!param_envs(c, call, params, envs, ENVS_PER_CALL, &n))
                return;
        for (size_t i = 0; i < n; i++) {
                int r = env_pause(envs[i], until, reason, by);
                if (r < 0) {
                        failed(call, r);
                        return;
                }
        }
        c->ops->pauses_changed(c->userdata);
        (void) varlink_reply_begin(call);
        varlink_reply_end(call);
}

static void method_resume(Control *c, VarlinkCall *call, const JsonNode *params, const char *by) {
        _cleanup_free_ Env **envs = calloc(ENVS_PER_CALL, sizeof(Env *));
        const JsonNode *catch_up = json_get(params, "catch_up");
        size_t n;

        if (!envs) {

                failed(call, -ENOMEM);

                return;
        }
        if (catch_up && catch_up->type != JSON_BOOLEAN && catch_up->type != JSON_NULL) {
                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "catch_up");
                return;
        }
        if (!param_envs(c, call, params, envs, ENVS_PER_CALL, &n))
                return;
        JsonWriter *w = varlink_reply_begin(call);
        json_put_string(w, "resumed");
        json_put_array_open(w);
        for (size_t i = 0; i < n; i++)
                if (env_resume(envs[i], catch_up && catch_up->boolean, by))
                        json_put_string(w, envs[i]->name);
        json_put_array_close(w);
        c->ops->pauses_changed(c->userdata);
        varlink_reply_end(call);
}

/* The environment named by "environment", or NULL with CALL answered. */
static Env *param_env(Control *c, VarlinkCall *call, const JsonNode *params) {
        const char *name = param_string(params, "environment");
        Env *e = name ? c->ops->find(c->userdata, name) : NULL;

        if (!name)
                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "environment");
        else if (!e)
                varlink_error(call, CONTROL_ERROR_NO_SUCH_ENVIRONMENT, "environment", name);
        return e;
}

static void reply_slot(VarlinkCall *call, int64_t slot, int already) {
        JsonWriter *w = varlink_reply_begin(call);

        json_put_string(w, "slot");
        put_time(w, slot);
        if (already >= 0) {
                json_put_string(w, "already");
                json_put_bool(w, already);
        }
        varlink_reply_end(call);
}

static void slot_error(VarlinkCall *call, const Env *e, const JsonNode *params, int r) {
        if (r == -EINVAL) {
                JsonWriter *w = varlink_error_begin(call, CONTROL_ERROR_NOT_A_SLOT);
                json_put_string(w, "environment");
                json_put_string(w, e->name);
                json_put_string(w, "slot");
                json_put_string(w, param_string(params, "slot") ?: "");
                varlink_reply_end(call);
        } else if (r == -ENOENT)
                varlink_error(call, CONTROL_ERROR_NO_SLOT_COMES, "environment", e->name);
        else
                failed(call, r);
}

static void method_skip(Control *c, VarlinkCall *call, const JsonNode *params, const char *by) {
        int64_t slot, done;
        Env *e;
        int r;

        if (!param_time(params, "slot", &slot)) {

                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "slot");

                return;
        }
        e = param_env(c, call, params);
        if (!e)
                return;
        r = env_skip_slot(e, slot, param_string(params, "reason"), by, &done);
        if (r < 0) {
                slot_error(call, e, params, r);
                return;
        }
        reply_slot(call, done, r > 0);
}

static void method_unskip(Control *c, VarlinkCall *call, const JsonNode *params, const char *by) {
        int64_t slot, done;
        Env *e;
        int r;

        if (!param_time(params, "slot", &slot)) {

                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "slot");

                return;
        }
        e = param_env(c, call, params);
        if (!e)
                return;
        r = env_unskip_slot(e, slot, by, &done);
        if (r == -ENOENT) {
                varlink_error(call, CONTROL_ERROR_NOT_SKIPPED, "environment", e->name);
                return;
        }
        if (r < 0) {
                failed(call, r);
                return;
        }
        reply_slot(call, done, -1);
}

void control_put_environment(JsonWriter *w, const EnvConfig *ec, State *s, const char *state, int64_t next) {
        const StateEnv *st = state_find(s, ec->name);
        const StatePause *p = st ? st->pause : NULL;

        json_put_open(w);
        json_put_string(w, "name");
        json_put_string(w, ec->name);
        json_put_string(w, "id");
        json_put_string(w, ec->id);
        json_put_string(w, "schedule");
        json_put_string(w, ec->schedule);
        json_put_string(w, "timezone");
        json_put_string(w, tz_name(ec->tz));
        json_put_string(w, "enabled");
        json_put_bool(w, ec->enabled);
        json_put_string(w, "state");
        json_put_string_or_null(w, state);
        json_put_string(w, "next");
        put_time(w, next);
        json_put_string(w, "last_slot");
        put_time(w, st ? st->last_slot : STATE_TIME_UNSET);
        json_put_string(w, "last_status");
        json_put_string_or_null(w, st && st->last_job ? st->last_job->status : NULL);
        json_put_string(w, "last_ended");
        put_time(w, st && st->last_job ? st->last_job->ended_at : STATE_TIME_UNSET);
        json_put_string(w, "zuora_last_refresh");
        put_time(w, st ? st->zuora_last_refresh : STATE_TIME_UNSET);
        json_put_string(w, "job_id");
        json_put_string_or_null(w, st && st->job ? st->job->id : NULL);
        json_put_string(w, "job_status");
        json_put_string_or_null(w, st && st->job ? st->job->status : NULL);
        json_put_string(w, "progress");
        if (st && st->job && st->job->progress >= 0)
                json_put_int(w, st->job->progress);
        else
                json_put_null(w);
        json_put_string(w, "paused");
        json_put_bool(w, p);
        json_put_string(w, "paused_until");
        put_time(w, p ? p->until : STATE_TIME_UNSET);
        json_put_string(w, "pause_reason");
        json_put_string_or_null(w, p ? p->reason : NULL);
        json_put_string(w, "paused_by");
        json_put_string_or_null(w, p ? p->by : NULL);
        json_put_string(w, "skips");
        json_put_array_open(w);
        for (size_t i = 0; i < s->n_skips; i++)
                if (strcmp(s->skips[i].environment, ec->name) == 0)
                        put_time(w, s->skips[i].slot);
        json_put_array_close(w);
        json_put_close(w);
}

static void method_list(Control *c, VarlinkCall *call) {
        size_t n;
        Env *const *envs = c->ops->envs(c->userdata, &n);
        JsonWriter *w = varlink_reply_begin(call);

        json_put_string(w, "environments");
        json_put_array_open(w);
        for (size_t i = 0; i < n; i++)
                if (!envs[i]->removed)
                        control_put_environment(
                                w,
                                envs[i]->ec,
                                envs[i]->host->state,
                                env_state_to_string(envs[i]->state),
                                env_next_fire(envs[i]));
        json_put_array_close(w);
        varlink_reply_end(call);
}

static void control_on_call(VarlinkCall *call, const char *method, const JsonNode *params, void *userdata) {
        Control *c = userdata;
        const char *name = method + strlen(CONTROL_INTERFACE ".");
        char by[300];

        caller_name(call, by, sizeof(by));
        report_log(LOG_INFO, "control: %s called %s", by, method);
        if (strcmp(name, "Pause") == 0)
                method_pause(c, call, params, by);
        else if (strcmp(name, "Resume") == 0)
                method_resume(c, call, params, by);
        else if (strcmp(name, "Skip") == 0)
                method_skip(c, call, params, by);
        else if (strcmp(name, "Unskip") == 0)
                method_unskip(c, call, params, by);
        else if (strcmp(name, "List") == 0)
                method_list(c, call);
        else
                varlink_error(call, VARLINK_ERROR_METHOD_NOT_FOUND, "method", method);
}

int control_new(
        sd_event *event,
        const char *path,
        gid_t group,
        const ControlOps *ops,
        void *userdata,
        Control **ret) {
        Control *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->ops = ops;
        c->userdata = userdata;
        static const VarlinkInterface interface = {
                .name = CONTROL_INTERFACE,
                .description = control_description,
                .call = control_on_call,
        };
        r = varlink_server_new(
                event,
                path,
                &(VarlinkServerOptions) {
                        .vendor = "refreshd",
                        .product = "refreshd",
                        .version = PROJECT_VERSION,
                        .url = "man:refreshd(8)",
                        .interfaces = &interface,
                        .n_interfaces = 1,
                        .userdata = c,
                        .group = group,
                },
                &c->server);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

Control *control_free(Control *c) {
        if (!c)
                return NULL;
        varlink_server_free(c->server);
        free(c);
        return NULL;
}
