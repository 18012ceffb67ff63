/* SPDX-License-Identifier: MIT */
/*
 * The manager owns the loop and every source on it. State writes are
 * grouped: whatever changes during one loop iteration is written by one
 * defer source at its end, so a thousand environments firing in the same
 * second cost one fsync; environments waiting for their intent to be on
 * disk send their POST right after that write. When the only hurry is
 * intents, they go to the intent log first (one fdatasync of blocks that
 * exist, about 0.1 ms), the POSTs leave, and state.json follows once the
 * checks still out have been answered and their POSTs have left too (or a
 * second later at most): written while they are out, it would hold up the
 * answers they wait for.
 */
#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "civil.h"
#include "control.h"
#include "env.h"
#include "macro.h"
#include "manager.h"
#include "outbox.h"
#include "recipients.h"
#include "report.h"
#include "secret.h"
#include "sort.h"
#include "varlink.h"

#define STATE_DIR_DEFAULT "/var/lib/refreshd"

char *manager_default_state_dir(void) {
        const char *d = getenv("STATE_DIRECTORY");
        char *p;

        if (!d || d[0] != '/')
                return strdup(STATE_DIR_DEFAULT);
        /* systemd may list several, separated by ':'; ours is the first. */
        p = strndup(d, strcspn(d, ":"));
        return p;
}

/* The time on CLOCK, µs, as of this turn of the loop (now, before the loop runs). */
static uint64_t manager_now_usec(Manager *m, clockid_t clock) {
        struct timespec ts;
        uint64_t t;

        if (sd_event_now(m->event, clock, &t) >= 0)
                return t;
        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int64_t manager_now(Manager *m) {
        return (int64_t) (manager_now_usec(m, CLOCK_REALTIME) / USEC_PER_SEC);
}

static void manager_save_later(Manager *m);
static void manager_checks_changed(Manager *m, bool checking);
static void manager_update_status(Manager *m);
static void manager_arm_pause_timer(Manager *m);

/* ---- config ---- */

/* Prints a config's problems the same way `refreshd check` does. */
static void report_diags(const Diags *d) {
        for (size_t i = 0; i < d->n; i++) {
                const Diag *g = &d->items[i];
                if (g->line > 0)
                        report_log(
                                g->warning ? LOG_WARNING : LOG_ERR,
                                "%s:%u:%u: %s: %s",
                                d->path,
                                g->line,
                                g->column,
                                g->warning ? "warning" : "error",
                                g->message);
                else
                        report_log(
                                g->warning ? LOG_WARNING : LOG_ERR,
                                "%s: %s: %s",
                                d->path,
                                g->warning ? "warning" : "error",
                                g->message);
        }
}

static int load_config(Manager *m, Config **ret_config, Secret **ret_secret) {
        _cleanup_(diags_clear) Diags diags = {};
        Config *c = NULL;
        Secret *secret = NULL;
        int r;

        r = config_load(m->config_path, manager_now(m), &c, &diags);
        report_diags(&diags);
        if (r == -EINVAL)
                return MANAGER_ERR_CONFIG;
        if (r < 0)
                return r;
        r = secret_read(c, &secret);
        if (r < 0) {
                char why[600];
                report_log(LOG_ERR, "%s", secret_error_text(c, r, false, why, sizeof(why)));
                config_free(c);
                return MANAGER_ERR_CONFIG;
        }
        if (outbox_check_webhook_urls(c, NULL) > 0) {
                secret_free(secret);
                config_free(c);
                return MANAGER_ERR_CONFIG;
        }
        *ret_config = c;
        *ret_secret = secret;
        return 0;
}

/* ---- state ---- */

static int load_state(Manager *m) {
        _cleanup_free_ char *why = NULL, *aside = NULL;
        int r;

        r = store_load(m->store, &m->state, &why);
        if (r >= 0)
                return 0;
        if (r != -EBADMSG && r != -EFBIG) {
                report_log(LOG_ERR, "cannot read %s: %s", m->store->description, why ? why : strerror(-r));
                return r;
        }
        /* Unknown or corrupt state is not fatal: keep it for a human, start clean. */
        r = store_discard(m->store, manager_now(m), &aside);
        report_state_corrupt(m->store->description, why, r >= 0 ? aside : NULL);
        m->state = state_new();
        return m->state ? 0 : -ENOMEM;
}

/* Zuora's clock is reported when it is off by more than this, and again
 * when the offset moves by more than this. */
#define CLOCK_REPORT_USEC ((int64_t) (5 * USEC_PER_SEC))

static int64_t abs64(int64_t v) {
        return v < 0 ? -v : v;
}

/* Says when Zuora's clock, as measured, is off ours by more than a few
 * seconds (or moved since it was said), and when it agrees again. */
static void manager_check_clock(Manager *m) {
        int64_t offset, uncertainty;

        if (!m->state->zclock.measured)
                return;
        zclock_estimate(
                &m->state->zclock, (int64_t) manager_now_usec(m, CLOCK_REALTIME), &offset, &uncertainty);
        if (abs64(offset) > CLOCK_REPORT_USEC) {
                if (m->clock_warned && abs64(offset - m->clock_warned_offset) <= CLOCK_REPORT_USEC)
                        return;
                report_zuora_clock(offset, uncertainty, /* agrees= */ false);
                m->clock_warned = true;
                m->clock_warned_offset = offset;
        } else if (m->clock_warned) {
                report_zuora_clock(offset, uncertainty, /* agrees= */ true);
                m->clock_warned = false;
        }
}

static bool manager_save_now(Manager *m) {
        int r;

        manager_check_clock(m);
        r = store_save(m->store, m->state);

        if (r < 0) {
                /* Keep going in memory; the list check keeps refreshes at most once. */
                if (!m->save_failing) {
                        report_state_write_failed(m->store->description, r);
                        m->save_failing = true;
                }
                return false;
        }
        if (m->save_failing)
                report_log(LOG_NOTICE, "%s is written again", m->store->description);
        m->save_failing = false;
        return true;
}

static void manager_reap(Manager *m) {
        size_t k = 0;

        for (size_t i = 0; i < m->n_envs; i++) {
                Env *e = m->envs[i];
                if (env_is_finished(e))
                        env_free(e);
                else
                        m->envs[k++] = e;
        }
        m->n_envs = k;
}

/* Makes the intents that POSTs wait for durable in the intent log: 1 when
 * they are, 0 when none wait, < 0 when they must go through state.json (no
 * log yet, no room in its ring, an error). */
static int manager_log_intents(Manager *m) {
        _cleanup_free_ StateEnv **waiting = NULL;
        size_t n = 0;
        int r;

        for (size_t i = 0; i < m->n_envs; i++)
                n += env_intent_waiting(m->envs[i]) != NULL;
        if (n == 0)
                return 0;
        waiting = reallocarray(NULL, n, sizeof(StateEnv *));
        if (!waiting)
                return -ENOMEM;
        n = 0;
        for (size_t i = 0; i < m->n_envs; i++) {
                StateEnv *st = env_intent_waiting(m->envs[i]);
                if (st)
                        waiting[n++] = st;
        }
        r = store_record_intents(m->store, m->state, waiting, n);
        return r < 0 ? r : 1;
}

/* state.json waits while checks are out, so that its write (an fsync, a
 * rename, an fsync: 1-2 ms) does not hold up their answers and the POSTs
 * that follow; their intents are already in the log. The wait ends when the
 * last check ends, or after this long whatever comes. */
#define SAVE_POSTPONE_MAX_USEC (1 * USEC_PER_SEC)

static bool manager_postpone_save(Manager *m) {
        uint64_t now;

        if (m->n_checking == 0)
                return false;
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
                return false;
        if (m->save_postponed_usec == 0) {
                m->save_postponed_usec = now;
                if (sd_event_source_set_time(m->save_timer, now + SAVE_POSTPONE_MAX_USEC) < 0 ||
                    sd_event_source_set_enabled(m->save_timer, SD_EVENT_ONESHOT) < 0)
                        return false;
        }
        return now < m->save_postponed_usec + SAVE_POSTPONE_MAX_USEC;
}

static int manager_on_save_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        manager_save_later(userdata);
        return 0;
}

static void manager_checks_changed(Manager *m, bool checking) {
        if (checking) {
                m->n_checking++;
                return;
        }
        assert(m->n_checking > 0);
        if (--m->n_checking == 0 && m->save_postponed_usec != 0)
                manager_save_later(m);
}

static int manager_on_save(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        int r = manager_log_intents(m);

        if (r > 0)
                /* The rest once the POSTs are on their way. */
                manager_save_later(m);
        else if (r < 0 || !manager_postpone_save(m)) {
                (void) manager_save_now(m);
                m->save_postponed_usec = 0;
                (void) sd_event_source_set_enabled(m->save_timer, SD_EVENT_OFF);
        }
        /* The intents are on disk (or cannot be): their POSTs may leave. */
        for (size_t i = 0; i < m->n_envs; i++)
                env_on_intent_saved(m->envs[i]);
        manager_reap(m);
        manager_update_status(m);
        return 0;
}

static void manager_save_later(Manager *m) {
        if (m->save_source)
                (void) sd_event_source_set_enabled(m->save_source, SD_EVENT_ONESHOT);
}

/* ---- STATUS= ---- */

/* STATUS= is rebuilt at most this often: at 1,000 jobs polled every second
 * a rebuild per change walked all 10,000 environments a thousand times a
 * second, most of the daemon's CPU. The first change after a quiet second
 * still goes out at once. */
#define STATUS_MIN_INTERVAL_USEC (1 * USEC_PER_SEC)

/* At most this many busy environments are named; the rest are counted. */
#define STATUS_MAX_NAMED 5

/* Rebuilds STATUS= now. */
static void manager_send_status(Manager *m) {
        _cleanup_free_ char *text = NULL;
        char *running = NULL;
        const Env *next = NULL;
        size_t n_enabled = 0, n_running = 0;
        FILE *f;
        size_t size;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &m->status_sent_usec);
        f = open_memstream(&running, &size);
        if (!f)
                return;
        for (size_t i = 0; i < m->n_envs; i++) {
                const Env *e = m->envs[i];
                if (env_is_busy(e)) {
                        if (n_running < STATUS_MAX_NAMED) {
                                _cleanup_free_ char *s = env_status_text(e);
                                if (s)
                                        fprintf(f, "%s%s", ftell(f) > 0 ? ", " : "", s);
                        }
                        n_running++;
                }
                if (!e->removed && e->ec->enabled)
                        n_enabled++;
                if (e->next_slot != STATE_TIME_UNSET && (!next || e->next_slot < next->next_slot))
                        next = e;
        }
        if (n_running > STATUS_MAX_NAMED)
                fprintf(f, " and %zu more", n_running - STATUS_MAX_NAMED);
        fclose(f);

        char when[64] = "";
        if (next) {
                const char *abbr;
                CivilTime c;
                civil_from_seconds(next->next_slot + tz_offset(next->ec->tz, next->next_slot, &abbr), &c);
                int n = snprintf(
                        when,
                        sizeof(when),
                        "%04d-%02d-%02d %02d:%02d",
                        (int) c.year,
                        c.month,
                        c.day,
                        c.hour,
                        c.minute);
                if (c.second != 0)
                        n += snprintf(when + n, sizeof(when) - n, ":%02d", c.second);
                snprintf(when + n, sizeof(when) - n, " %s", abbr);
        }
        if (asprintf(
                    &text,
                    "%zu environment%s; running: %s; next: %s%s%s",
                    n_enabled,
                    n_enabled == 1 ? "" : "s",
                    running && running[0] ? running : "none",
                    next ? next->name : "none",
                    next ? " " : "",
                    when) < 0)
                text = NULL;
        free(running);
        if (!text || (m->status_text && strcmp(text, m->status_text) == 0))
                return;
        (void) sd_notifyf(false, "STATUS=%s", text);
        free(m->status_text);
        m->status_text = TAKE_PTR(text);
}

static int manager_on_status(sd_event_source *s, uint64_t usec, void *userdata) {
        manager_send_status(userdata);
        return 0;
}

static void manager_update_status(Manager *m) {
        uint64_t now = 0, at;
        int enabled = SD_EVENT_OFF;

        if (!m->status_source) {
                manager_send_status(m);
                return;
        }
        if (sd_event_source_get_enabled(m->status_source, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return; /* already planned */
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        at = m->status_sent_usec + STATUS_MIN_INTERVAL_USEC;
        (void) sd_event_source_set_time(m->status_source, at > now ? at : now);
        (void) sd_event_source_set_enabled(m->status_source, SD_EVENT_ONESHOT);
}

/* ---- signals ---- */

static int manager_on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        report_stopping((int) si->ssi_signo);
        (void) manager_save_now(m);
        return sd_event_exit(m->event, 0);
}

static Env *manager_find_env(Manager *m, const char *name) {
        for (size_t i = 0; i < m->n_envs; i++)
                if (!m->envs[i]->removed && strcmp(m->envs[i]->name, name) == 0)
                        return m->envs[i];
        return NULL;
}

static int env_compare_by_name(const void *a, const void *b, void *userdata) {
        return strcmp((*(Env *const *) a)->name, (*(Env *const *) b)->name);
}

/* The environments not removed, sorted by name, so that a reload looks each
 * name up in log N steps (a search of the whole list per name made a reload
 * of 10,000 environments take 100 million comparisons). NULL when out of
 * memory; then manager_find_env() does. */
static Env **manager_sorted_envs(Manager *m, size_t *ret_n) {
        Env **sorted = reallocarray(NULL, m->n_envs ? m->n_envs : 1, sizeof(Env *));
        size_t n = 0;

        if (!sorted)
                return NULL;
        for (size_t i = 0; i < m->n_envs; i++)
                if (!m->envs[i]->removed)
                        sorted[n++] = m->envs[i];
        sort_in_place(sorted, n, sizeof(Env *), env_compare_by_name, NULL);
        *ret_n = n;
        return sorted;
}

static Env *sorted_envs_find(Env **sorted, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(sorted[mid]->name, name);
                if (c == 0)
                        return sorted[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int manager_add_env(Manager *m, Config *c, const EnvConfig *ec, Env **ret) {
        Env **n, *e;
        int r;

        n = realloc(m->envs, (m->n_envs + 1) * sizeof(Env *));
        if (!n)
                return -ENOMEM;
        m->envs = n;
        r = env_new(&m->host, c, ec, &e);
        if (r < 0)
                return r;
        m->envs[m->n_envs++] = e;
        if (ret)
                *ret = e;
        return 0;
}

/* Whether the state keeps the entry of environment NAME: it is in the config. */
static bool manager_keeps_entry(const char *name, void *userdata) {
        Manager *m = userdata;
        return config_find_env(m->config, name) != NULL;
}

static void manager_reload(Manager *m) {
        Config *c = NULL;
        Secret *secret = NULL;
        uint64_t now;
        int r;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        (void) sd_notifyf(
                false, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading", (unsigned long long) now);

        r = load_config(m, &c, &secret);
        if (r < 0) {
                report_reload_failed(m->config_path);
                free(m->status_text);
                m->status_text = NULL;
                manager_update_status(m);
                (void) sd_notify(false, "READY=1");
                return;
        }

        /* Environments gone from the file stop; their jobs are still followed. */
        for (size_t i = 0; i < m->n_envs; i++) {
                Env *e = m->envs[i];
                if (!e->removed && !config_find_env(c, e->name))
                        (void) env_remove(e);
        }
        size_t n_sorted = 0;
        _cleanup_free_ Env **sorted = manager_sorted_envs(m, &n_sorted);
        for (size_t i = 0; i < c->n_envs; i++) {
                Env *e = sorted ? sorted_envs_find(sorted, n_sorted, c->envs[i].name)
                                : manager_find_env(m, c->envs[i].name);
                if (e)
                        env_reconfigure(e, c, &c->envs[i]);
                else if (manager_add_env(m, c, &c->envs[i], &e) >= 0)
                        env_start(e);
        }
        client_reconfigure(m->client, c, secret);
        (void) outbox_set_config(m->outbox, c);
        recipients_set_config(m->recipients, c);
        config_free(m->config);
        m->config = c;
        manager_reap(m);
        state_prune(m->state, manager_keeps_entry, m);
        manager_save_later(m);
        /* The old config and the new one's parse tree were freed in pieces
         * scattered over the heap, which malloc keeps: at 10,000
         * environments that is 13 MB of RSS until it is given back. */
        (void) malloc_trim(0);

        manager_arm_pause_timer(m);
        report_reloaded(m->config_path, c->n_envs);
        free(m->status_text);
        m->status_text = NULL;
        manager_send_status(m);
        (void) sd_notify(false, "READY=1");
}

/* ---- the control socket ---- */

static Env *control_find(void *userdata, const char *name) {
        return manager_find_env(userdata, name);
}

static Env *const *control_envs(void *userdata, size_t *ret_n) {
        Manager *m = userdata;
        *ret_n = m->n_envs;
        return m->envs;
}

/* Arms the pause timer for the earliest pause that ends by itself. */
static void manager_arm_pause_timer(Manager *m) {
        int64_t next = INT64_MAX;

        for (size_t i = 0; i < m->n_envs; i++) {
                int64_t until = env_pause_until(m->envs[i]);
                if (until != STATE_TIME_UNSET && until < next)
                        next = until;
        }
        if (next == INT64_MAX) {
                (void) sd_event_source_set_enabled(m->pause_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(m->pause_timer, next < 0 ? 0 : (uint64_t) next * USEC_PER_SEC);
        (void) sd_event_source_set_enabled(m->pause_timer, SD_EVENT_ONESHOT);
}

static void control_pauses_changed(void *userdata) {
        manager_arm_pause_timer(userdata);
}

static int manager_on_pause_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int64_t now = manager_now(m);

        for (size_t i = 0; i < m->n_envs; i++) {
                int64_t until = env_pause_until(m->envs[i]);
                if (until != STATE_TIME_UNSET && until <= now)
                        (void) env_resume(m->envs[i], /* catch_up= */ false, /* by= */ NULL);
        }
        manager_arm_pause_timer(m);
        return 0;
}

static const ControlOps control_ops = {
        .find = control_find,
        .envs = control_envs,
        .pauses_changed = control_pauses_changed,
};

/* Whether a daemon already answers on PATH (then its socket is left alone). */
static bool control_socket_in_use(const char *path) {
        int fd;

        if (varlink_connect(path, &fd) < 0)
                return false;
        close(fd);
        return true;
}

static void manager_open_control(Manager *m, const char *control_path) {
        _cleanup_free_ char *def = control_path ? NULL : control_default_path();
        const char *path = control_path ?: def;
        gid_t group = m->config->control_group ? m->config->control_gid : (gid_t) -1;
        int r;

        if (!path)
                return;
        if (control_socket_in_use(path)) {
                report_log(
                        LOG_WARNING,
                        "control socket %s: another refreshd answers there; this one has none "
                        "(give it --control-socket PATH)",
                        path);
                return;
        }
        if (!control_path && !getenv("RUNTIME_DIRECTORY"))
                (void) mkdir("/run/refreshd", 0755); /* not under systemd: the default's directory */
        r = control_new(m->event, path, group, &control_ops, m, &m->control);
        if (r < 0)
                report_log(
                        LOG_WARNING,
                        "control socket %s: cannot listen: %s; pause, resume, skip and list cannot "
                        "reach this daemon",
                        path,
                        strerror(-r));
}

static int manager_on_reload(sd_event_source *s, void *userdata) {
        manager_reload(userdata);
        return 0;
}

static int manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        /* Reload from a defer source: never in the middle of another handler. */
        return sd_event_source_set_enabled(m->reload_source, SD_EVENT_ONESHOT);
}

/* ---- clock steps ---- */

static int manager_on_clock_change(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* A timerfd armed for the end of time with TFD_TIMER_CANCEL_ON_SET becomes
 * readable (read fails with ECANCELED) when the wall clock is set, as in
 * systemd's manager_setup_time_change(). */
static int manager_clock_watch_setup(Manager *m) {
        struct itimerspec its = {
                .it_value.tv_sec = (time_t) ((UINT64_C(1) << (sizeof(time_t) * 8 - 1)) - 1),
        };
        int fd, r;

        m->clock_source = sd_event_source_disable_unref(m->clock_source);
        fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        r = sd_event_add_io(m->event, &m->clock_source, fd, EPOLLIN, manager_on_clock_change, m);
        if (r < 0) {
                close(fd);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(m->clock_source, true);
        (void) sd_event_source_set_description(m->clock_source, "clock-change");
        return 0;
}

static int manager_on_clock_change(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;

        report_log(LOG_NOTICE, "The system clock was set; planning every schedule again");
        if (manager_clock_watch_setup(m) < 0)
                report_log(LOG_WARNING, "cannot watch for clock changes any more");
        for (size_t i = 0; i < m->n_envs; i++)
                env_replan(m->envs[i]);
        manager_update_status(m);
        return 0;
}

/* ---- life ---- */

/* ---- what the environments reach the rest through ---- */

static Manager *host_manager(EnvHost *h) {
        return container_of(h, Manager, host);
}

static uint64_t host_now(EnvHost *h, clockid_t clock) {
        return manager_now_usec(host_manager(h), clock);
}

static TimerQueue *host_queue(Manager *m, EnvTimer t) {
        return t == ENV_TIMER_SLOT ? m->slots : m->waits;
}

static int host_timer_arm(EnvHost *h, EnvTimer t, Env *e, TimerQueueIndex *index, uint64_t usec) {
        return timerq_arm(host_queue(host_manager(h), t), index, usec, e);
}

static void host_timer_disarm(EnvHost *h, EnvTimer t, TimerQueueIndex *index) {
        timerq_disarm(host_queue(host_manager(h), t), index);
}

static int host_call(
        EnvHost *h, const ClientRequest *req, ClientDoneFunc done, void *userdata, ClientCall **ret) {
        return client_call(host_manager(h)->client, req, done, userdata, ret);
}

static void host_cancel(EnvHost *h, ClientCall *call) {
        client_cancel(call);
}

static char *host_url(EnvHost *h, ZuoraEndpoint endpoint, const char *env_id, const char *job_id) {
        return client_url(host_manager(h)->client, endpoint, env_id, job_id);
}

static int host_resolve(EnvHost *h, const char *location, char **ret_url) {
        return client_resolve(host_manager(h)->client, location, ret_url);
}

static const ZuoraClock *host_zuora_clock(EnvHost *h) {
        return client_clock(host_manager(h)->client);
}

static void host_observe_clock(EnvHost *h, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec) {
        client_observe_clock(host_manager(h)->client, stamp_sec, sent_usec, received_usec);
}

static void host_save_later(EnvHost *h) {
        manager_save_later(host_manager(h));
}

static void host_checks_changed(EnvHost *h, bool checking) {
        manager_checks_changed(host_manager(h), checking);
}

static void host_status_changed(EnvHost *h) {
        manager_update_status(host_manager(h));
}

static void host_event(EnvHost *h, const EnvConfig *ec, const Event *ev) {
        (void) outbox_raise(host_manager(h)->outbox, ec, ev);
}

static void host_slot_fired(EnvHost *h, const EnvConfig *ec) {
        /* Zuora's e-mail list in step before the slot's POST lands. */
        recipients_sync(host_manager(h)->recipients, ec);
}

static void outbox_save_later(void *userdata) {
        manager_save_later(userdata);
}

static int manager_outbox_new(Manager *m) {
        _cleanup_free_ char *dir = outbox_files_dir(m->state_dir);
        int r;

        if (!dir)
                return -ENOMEM;
        r = outbox_new(
                &(OutboxOptions) { .event = m->event,
                                   .state = m->state,
                                   .files_dir = dir,
                                   .save_later = outbox_save_later,
                                   .userdata = m },
                &m->outbox);
        if (r < 0)
                return r;
        m->outbox_dir = TAKE_PTR(dir);
        return outbox_set_config(m->outbox, m->config);
}

static const EnvHostOps host_ops = {
        .now = host_now,
        .timer_arm = host_timer_arm,
        .timer_disarm = host_timer_disarm,
        .call = host_call,
        .cancel = host_cancel,
        .url = host_url,
        .resolve = host_resolve,
        .zuora_clock = host_zuora_clock,
        .observe_clock = host_observe_clock,
        .save_later = host_save_later,
        .checks_changed = host_checks_changed,
        .status_changed = host_status_changed,
        .event = host_event,
        .slot_fired = host_slot_fired,
};

/* ---- life ---- */

DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(Secret *, secret_free);

int manager_new(sd_event *event, const char *config_path, const char *state_dir, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(secret_freep) Secret *secret = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->host.ops = &host_ops;
        m->config_path = strdup(config_path);
        m->state_dir = strdup(state_dir);
        if (!m->config_path || !m->state_dir)
                return -ENOMEM;
        r = timerq_new(event, CLOCK_REALTIME, "slots", env_on_slot, &m->slots);
        if (r < 0)
                return r;
        r = timerq_new(event, CLOCK_BOOTTIME, "waits", env_on_wait, &m->waits);
        if (r < 0)
                return r;
        r = load_config(m, &m->config, &secret);
        if (r < 0)
                return r;
        r = store_file_new(m->state_dir, &m->store);
        if (r < 0)
                return r;
        r = load_state(m);
        if (r < 0)
                return r;
        /* Environments removed from the config while refreshd was not
         * running: their entries go (state.json stays bounded). */
        state_prune(m->state, manager_keeps_entry, m);
        m->host.state = m->state;
        r = client_new(event, m->config, TAKE_PTR(secret), &m->client);
        if (r < 0)
                return r;
        /* Events left in the outbox by the last run go on from here. */
        r = manager_outbox_new(m);
        if (r < 0)
                return r;
        r = recipients_new(m->client, m->state, outbox_save_later, m, &m->recipients);
        if (r < 0)
                return r;
        /* What the client measures of Zuora's clock is kept in the state. */
        client_set_clock(m->client, &m->state->zclock);
        for (size_t i = 0; i < m->config->n_envs; i++) {
                r = manager_add_env(m, m->config, &m->config->envs[i], NULL);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* In the reverse order of manager_new(), the control socket first: it reaches the envs. */
        control_free(m->control);
        for (size_t i = 0; i < m->n_envs; i++)
                env_free(m->envs[i]);
        free(m->envs);
        outbox_free(m->outbox);
        free(m->outbox_dir);
        recipients_free(m->recipients);
        client_free(m->client);
        state_free(m->state);
        store_free(m->store);
        config_free(m->config);
        timerq_free(m->waits);
        timerq_free(m->slots);
        sd_event_source_disable_unref(m->save_source);
        sd_event_source_disable_unref(m->save_timer);
        sd_event_source_disable_unref(m->reload_source);
        sd_event_source_disable_unref(m->clock_source);
        sd_event_source_disable_unref(m->status_source);
        sd_event_source_disable_unref(m->pause_timer);
        sd_event_unref(m->event);
        free(m->status_text);
        free(m->config_path);
        free(m->state_dir);
        free(m);
        return NULL;
}

int manager_start(Manager *m, const char *control_path) {
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        r = sd_event_add_signal(m->event, NULL, SIGTERM, manager_on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, manager_on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, manager_on_sighup, m);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &m->save_source, manager_on_save, m);
        if (r >= 0)
                r = sd_event_add_time(
                        m->event, &m->save_timer, CLOCK_MONOTONIC, 0, 1, manager_on_save_timer, m);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &m->reload_source, manager_on_reload, m);
        if (r >= 0)
                r = sd_event_add_time(
                        m->event, &m->status_source, CLOCK_MONOTONIC, 0, 1, manager_on_status, m);
        if (r >= 0)
                r = sd_event_add_time(
                        m->event, &m->pause_timer, CLOCK_REALTIME, 0, 1, manager_on_pause_timer, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->pause_timer, "pause-end");
        /* Idle priority: they run once everything pending in this turn of
         * the loop is done, so a burst of changes costs one state write (one
         * fsync) and one STATUS= rebuild (and that at most once a second). */
        (void) sd_event_source_set_priority(m->save_source, SD_EVENT_PRIORITY_IDLE);
        (void) sd_event_source_set_priority(m->status_source, SD_EVENT_PRIORITY_IDLE);
        (void) sd_event_source_set_description(m->status_source, "status");
        (void) sd_event_source_set_enabled(m->status_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(m->save_source, "state-save");
        (void) sd_event_source_set_description(m->reload_source, "reload");
        (void) sd_event_source_set_enabled(m->save_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(m->save_timer, "state-save-deadline");
        (void) sd_event_source_set_enabled(m->save_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(m->reload_source, SD_EVENT_OFF);
        r = manager_clock_watch_setup(m);
        if (r < 0)
                report_log(
                        LOG_WARNING,
                        "cannot watch for clock changes: %s; slots still fire on time",
                        strerror(-r));
        /* Pings WATCHDOG=1 when WatchdogSec= is set; a no-op otherwise. */
        (void) sd_event_set_watchdog(m->event, true);

        for (size_t i = 0; i < m->n_envs; i++) {
                r = env_start(m->envs[i]);
                if (r < 0)
                        return r;
        }
        recipients_set_config(m->recipients, m->config);
        manager_arm_pause_timer(m);
        manager_open_control(m, control_path);
        manager_save_later(m);
        /* What the start freed (state.json's tree, the config's parse) is
         * scattered over the heap: give it back before the first reload
         * stacks a second config on top. */
        (void) malloc_trim(0);

        report_started(m->n_envs, m->config_path, m->state_dir);
        /* STATUS= first, so that it is there when `systemctl start` returns. */
        manager_send_status(m);
        (void) sd_notify(false, "READY=1");
        return 0;
}
