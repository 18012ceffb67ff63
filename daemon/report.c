/* SPDX-License-Identifier: MIT */
/*
 * Reporting: turns one event (a MESSAGE_ID, a priority, a message and the
 * set REFRESHD_* fields) into exactly one journal entry or exactly one
 * console line. Both targets are rendered from the same list of
 * "KEY=value" strings, so the journal and the console can never disagree
 * about which fields an event carries.
 *
 * Only what the caller passes is written: no environment, no errno text, no
 * CODE_FILE/CODE_LINE (SD_JOURNAL_SUPPRESS_LOCATION), so a secret can reach
 * the log only if a caller hands it in.
 */
#define SD_JOURNAL_SUPPRESS_LOCATION 1

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "duration.h"
#include "macro.h"
#include "refreshd-messages.h"
#include "report-internal.h"
#include "tz.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* The number of REFRESHD_* fields in ReportFields. */
#define REPORT_FIELDS_MAX 14

/*
 * The one piece of module-level state refreshd accepts, like systemd's
 * log.c: where log lines go. It is process-wide by nature (there is one
 * stderr and one journal), main() sets it once with report_init() before
 * anything else logs, and until then lines go to stderr. The target is
 * always resolved: never LOG_TARGET_AUTO. A NULL console means stderr,
 * looked up at each write.
 */
static struct {
        LogTarget target;
        FILE *console;
} report = {
        .target = LOG_TARGET_CONSOLE,
};

/* The set fields of one event, each "REFRESHD_…=value", in ReportFields order. */
typedef struct FieldList {
        char *items[REPORT_FIELDS_MAX];
        size_t n;
} FieldList;

static void field_list_done(FieldList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i]);
        l->n = 0;
}

static int field_addf(FieldList *l, const char *format, ...) _printf_(2, 3);
static int field_addf(FieldList *l, const char *format, ...) {
        va_list ap;
        int r;

        assert(l->n < ELEMENTSOF(l->items));

        va_start(ap, format);
        r = vasprintf(&l->items[l->n], format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        l->n++;
        return 0;
}

static int field_add_slot(FieldList *l, int64_t slot) {
        char buf[TZ_ISO_MAX];

        /* A slot outside years 0000–9999 cannot be written as RFC 3339: keep
         * the raw seconds rather than dropping the field. */
        if (tz_format_utc(slot, buf, sizeof(buf)) < 0)
                return field_addf(l, "REFRESHD_SLOT=%" PRId64, slot);
        return field_addf(l, "REFRESHD_SLOT=%s", buf);
}

static int field_add_retry(FieldList *l, int64_t usec) {
        /* Seconds with milliseconds, "12.500s"; sub-millisecond parts are
         * cut off. The magnitude is taken unsigned so that no value overflows. */
        uint64_t a = usec < 0 ? -(uint64_t) usec : (uint64_t) usec;

        return field_addf(
                l,
                "REFRESHD_RETRY_IN=%s%" PRIu64 ".%03" PRIu64 "s",
                usec < 0 ? "-" : "",
                a / USEC_PER_SEC,
                a % USEC_PER_SEC / USEC_PER_MSEC);
}

static int field_list_build(FieldList *l, const ReportFields *f) {
        int r = 0;

        if (!f)
                return 0;

        if (f->environment && r >= 0)
                r = field_addf(l, "REFRESHD_ENVIRONMENT=%s", f->environment);
        if (f->environment_id && r >= 0)
                r = field_addf(l, "REFRESHD_ENVIRONMENT_ID=%s", f->environment_id);
        if (f->slot != REPORT_UNSET && r >= 0)
                r = field_add_slot(l, f->slot);
        if (f->job_id && r >= 0)
                r = field_addf(l, "REFRESHD_JOB_ID=%s", f->job_id);
        if (f->job_status && r >= 0)
                r = field_addf(l, "REFRESHD_JOB_STATUS=%s", f->job_status);
        if (f->progress != REPORT_UNSET && r >= 0)
                r = field_addf(l, "REFRESHD_PROGRESS=%" PRId64, f->progress);
        if (f->track_id && r >= 0)
                r = field_addf(l, "REFRESHD_TRACK_ID=%s", f->track_id);
        if (f->http_status != REPORT_UNSET && r >= 0)
                r = field_addf(l, "REFRESHD_HTTP_STATUS=%" PRId64, f->http_status);
        if (f->retry_in_usec != REPORT_UNSET && r >= 0)
                r = field_add_retry(l, f->retry_in_usec);
        if (f->event && r >= 0)
                r = field_addf(l, "REFRESHD_EVENT=%s", f->event);
        if (f->event_id && r >= 0)
                r = field_addf(l, "REFRESHD_EVENT_ID=%s", f->event_id);
        if (f->hook && r >= 0)
                r = field_addf(l, "REFRESHD_HOOK=%s", f->hook);
        if (f->hook_stream && r >= 0)
                r = field_addf(l, "REFRESHD_HOOK_STREAM=%s", f->hook_stream);
        if (f->webhook_host && r >= 0)
                r = field_addf(l, "REFRESHD_WEBHOOK_HOST=%s", f->webhook_host);
        if (f->caller && r >= 0)
                r = field_addf(l, "REFRESHD_CALLER=%s", f->caller);
        if (f->reason && r >= 0)
                r = field_addf(l, "REFRESHD_REASON=%s", f->reason);
        return r;
}

static const char *priority_to_string(int priority) {
        static const char *const table[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",     [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };

        return table[LOG_PRI(priority)];
}

static bool char_is_control(unsigned char c) {
        return c < ' ' || c == 0x7f;
}

/* Control characters as \n, \r, \t or \xNN, so that an event stays on one line. */
static void write_control(FILE *out, unsigned char c) {
        switch (c) {
        case '\n':
                fputs("\\n", out);
                break;
        case '\r':
                fputs("\\r", out);
                break;
        case '\t':
                fputs("\\t", out);
                break;
        default:
                fprintf(out, "\\x%02x", c);
        }
}

static bool char_is_key(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
}

/* The message is written as the caller formatted it, but for control
 * characters and an '=' after a word: a message quoting Zuora's words
 * ("denied REFRESHD_JOB_STATUS=COMPLETED") must not read as a field of
 * the line, so that '=' is written \x3d. */
static void write_message(FILE *out, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (char_is_control(*p))
                        write_control(out, *p);
                else if (*p == '=' && p > (const unsigned char *) s && char_is_key(p[-1]))
                        fputs("\\x3d", out);
                else
                        fputc(*p, out);
}

/* logfmt: quoting is needed for an empty value and for one with a space, '"',
 * '=' or a control character. A lone '\' does not need it. */
static bool value_needs_quotes(const char *v) {
        if (!*v)
                return true;
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p == ' ' || *p == '"' || *p == '=' || char_is_control(*p))
                        return true;
        return false;
}

static void write_value(FILE *out, const char *v) {
        if (!value_needs_quotes(v)) {
                fputs(v, out);
                return;
        }

        fputc('"', out);
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p == '"' || *p == '\\') {
                        fputc('\\', out);
                        fputc(*p, out);
                } else if (char_is_control(*p))
                        write_control(out, *p);
                else
                        fputc(*p, out);
        fputc('"', out);
}

/* "2026-12-06T03:00:00.004Z": the wall clock, UTC, in milliseconds. */
static void write_timestamp(FILE *out) {
        struct timespec ts = {};
        char buf[TZ_ISO_MAX];
        size_t len;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        if (tz_format_utc(ts.tv_sec, buf, sizeof(buf)) < 0) {
                fprintf(out, "@%lld.%03ld", (long long) ts.tv_sec, ts.tv_nsec / 1000000);
                return;
        }

        /* Put the milliseconds in front of the 'Z'. */
        len = strlen(buf);
        assert(len > 0 && buf[len - 1] == 'Z');
        buf[len - 1] = 0;
        fprintf(out, "%s.%03ldZ", buf, ts.tv_nsec / 1000000);
}

/* Writes "TIME PRIORITY MESSAGE KEY=value …\n" with one fwrite(), so lines
 * from different writers do not interleave, then flushes. */
static int console_write(int priority, const char *message, const FieldList *l) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        FILE *m, *out;

        m = open_memstream(&line, &size);
        if (!m)
                return -ENOMEM;

        write_timestamp(m);
        fprintf(m, " %s ", priority_to_string(priority));
        write_message(m, message);
        for (size_t i = 0; i < l->n; i++) {
                const char *eq = strchr(l->items[i], '=');

                assert(eq);
                fputc(' ', m);
                fwrite(l->items[i], 1, (size_t) (eq - l->items[i]) + 1, m);
                write_value(m, eq + 1);
        }
        fputc('\n', m);
        if (fclose(m) != 0)
                return -ENOMEM;

        out = report.console ?: stderr;
        if (fwrite(line, 1, size, out) != size || fflush(out) != 0)
                return -EIO;
        return 0;
}

static int journal_write(const char *message_id, int priority, const char *message, const FieldList *l) {
        _cleanup_free_ char *m = NULL, *id = NULL;
        char prio[sizeof("PRIORITY=") + 1];
        struct iovec iov[4 + REPORT_FIELDS_MAX];
        size_t n = 0;
        int r;

        /* sd_journal_sendv() returns success when the socket does not exist
         * ("fail silently if the journal is not available"), which would
         * lose the line: look for it first. */
        if (access(JOURNAL_SOCKET, F_OK) < 0)
                return -errno;

        if (asprintf(&m, "MESSAGE=%s", message) < 0)
                return -ENOMEM;
        iov[n++] = (struct iovec) { .iov_base = m, .iov_len = strlen(m) };

        (void) snprintf(prio, sizeof(prio), "PRIORITY=%d", LOG_PRI(priority));
        iov[n++] = (struct iovec) { .iov_base = prio, .iov_len = strlen(prio) };

        if (message_id) {
                if (asprintf(&id, "MESSAGE_ID=%s", message_id) < 0)
                        return -ENOMEM;
                iov[n++] = (struct iovec) { .iov_base = id, .iov_len = strlen(id) };
        }

        iov[n++] = (struct iovec) { .iov_base = (char *) "SYSLOG_IDENTIFIER=refreshd",
                                    .iov_len = strlen("SYSLOG_IDENTIFIER=refreshd") };

        for (size_t i = 0; i < l->n; i++)
                iov[n++] = (struct iovec) { .iov_base = l->items[i], .iov_len = strlen(l->items[i]) };

        assert(n <= ELEMENTSOF(iov));
        r = sd_journal_sendv(iov, (int) n);
        return r;
}

/* Out of memory while logging: say so on stderr with a constant string and
 * one write(), which needs no memory. The event itself is lost. */
static void report_oom(void) {
        static const char msg[] = "refreshd: out of memory, log message lost\n";

        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
}

static void report_emitv(
        const char *message_id, int priority, const ReportFields *f, const char *format, va_list ap)
        _printf_(4, 0);
static void report_emitv(
        const char *message_id, int priority, const ReportFields *f, const char *format, va_list ap) {
        _cleanup_free_ char *message = NULL;
        FieldList l = {};
        int r;

        assert(format);

        if (vasprintf(&message, format, ap) < 0) {
                message = NULL;
                report_oom();
                return;
        }

        r = field_list_build(&l, f);
        if (r < 0)
                goto finish;

        if (report.target == LOG_TARGET_JOURNAL) {
                r = journal_write(message_id, priority, message, &l);
                if (r >= 0)
                        goto finish;
                /* No journal (no socket, or it refused the entry): this line
                 * goes to the console instead; the next one tries again. */
        }

        r = console_write(priority, message, &l);

finish:
        field_list_done(&l);
        if (r == -ENOMEM)
                report_oom();
}

void report_init(LogTarget target, FILE *console) {
        assert(target >= 0 && target < _LOG_TARGET_MAX);

        if (target == LOG_TARGET_AUTO) {
                /* systemd sets JOURNAL_STREAM when stdout/stderr go to the
                 * journal, and INVOCATION_ID for every service it runs. */
                const char *js = getenv("JOURNAL_STREAM"), *inv = getenv("INVOCATION_ID");

                target = (js && *js) || (inv && *inv) ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        }

        report.target = target;
        report.console = console;
}

LogTarget report_target(void) {
        return report.target;
}

void report_event(const char *message_id, int priority, const ReportFields *f, const char *format, ...) {
        va_list ap;

        assert(message_id);

        va_start(ap, format);
        report_emitv(message_id, priority, f, format, ap);
        va_end(ap);
}

void report_log(int priority, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        report_emitv(/* message_id= */ NULL, priority, /* f= */ NULL, format, ap);
        va_end(ap);
}

LogTarget log_target_from_string(const char *s) {
        if (!s)
                return _LOG_TARGET_INVALID;

        for (LogTarget t = 0; t < _LOG_TARGET_MAX; t++)
                if (strcmp(s, log_target_to_string(t)) == 0)
                        return t;
        return _LOG_TARGET_INVALID;
}

const char *log_target_to_string(LogTarget t) {
        switch (t) {
        case LOG_TARGET_AUTO:
                return "auto";
        case LOG_TARGET_JOURNAL:
                return "journal";
        case LOG_TARGET_CONSOLE:
                return "console";
        case _LOG_TARGET_MAX:
        case _LOG_TARGET_INVALID:
                break;
        }
        return NULL;
}

/* ---- the daemon's events ---- */

void report_started(size_t n_envs, const char *config_path, const char *state) {
        report_event(
                REFRESHD_MESSAGE_STARTED,
                LOG_INFO,
                NULL,
                "refreshd %s started: %zu environment%s from %s, state in %s",
                PROJECT_VERSION,
                n_envs,
                n_envs == 1 ? "" : "s",
                config_path,
                state);
}

void report_stopping(int signo) {
        report_event(
                REFRESHD_MESSAGE_STOPPING,
                LOG_INFO,
                NULL,
                "refreshd stopping on %s; jobs in flight go on at Zuora and are followed again at the next "
                "start",
                strsignal(signo));
}

void report_reloaded(const char *config_path, size_t n_envs) {
        report_event(
                REFRESHD_MESSAGE_RELOADED,
                LOG_INFO,
                NULL,
                "Reloaded %s: %zu environment%s",
                config_path,
                n_envs,
                n_envs == 1 ? "" : "s");
}

void report_reload_failed(const char *config_path) {
        report_event(
                REFRESHD_MESSAGE_RELOAD_FAILED,
                LOG_ERR,
                NULL,
                "Reloading %s failed; still running the config loaded before",
                config_path);
}

void report_state_write_failed(const char *state, int r) {
        report_event(
                REFRESHD_MESSAGE_STATE_WRITE_FAILED,
                LOG_ERR,
                NULL,
                "Cannot write %s: %s; keeping state in memory and retrying at each change",
                state,
                strerror(-r));
}

void report_zuora_clock(int64_t offset_usec, int64_t uncertainty_usec, bool agrees) {
        double o = (double) offset_usec / USEC_PER_SEC, u = (double) uncertainty_usec / USEC_PER_SEC;

        if (agrees)
                report_event(
                        REFRESHD_MESSAGE_ZUORA_CLOCK,
                        LOG_NOTICE,
                        NULL,
                        "Zuora's clock agrees with ours again: %+.1f s (±%.1f s)",
                        o,
                        u);
        else
                report_event(
                        REFRESHD_MESSAGE_ZUORA_CLOCK,
                        LOG_WARNING,
                        NULL,
                        "Zuora's clock is %.1f s %s ours (±%.1f s); its times are read through that offset",
                        o < 0 ? -o : o,
                        o < 0 ? "behind" : "ahead of",
                        u);
}

void report_state_corrupt(const char *state, const char *why, const char *aside) {
        report_event(
                REFRESHD_MESSAGE_STATE_CORRUPT,
                LOG_ERR,
                NULL,
                "State file %s is unreadable (%s); moved it to %s and starting with no state",
                state,
                why ?: "corrupt",
                aside ?: "(could not move it)");
}

/* ---- an environment's events ---- */

/* T in the environment's zone, "(unknown)" when unset. */
static const char *local(const EnvConfig *ec, int64_t t, char buf[static TZ_ISO_MAX]) {
        if (t == REPORT_UNSET || tz_format_local(ec->tz, t, buf, TZ_ISO_MAX) < 0)
                snprintf(buf, TZ_ISO_MAX, "(unknown)");
        return buf;
}

#define LOCAL(ec, t) local(ec, t, (char[TZ_ISO_MAX]) {})

void report_slot_due(const EnvConfig *ec, const ReportFields *f, ReportDue why) {
        const char *slot = LOCAL(ec, f->slot);
        char what[200];

        switch (why) {
        case REPORT_DUE_SLOT:
                snprintf(what, sizeof(what), "slot %s is due", slot);
                break;
        case REPORT_DUE_CATCH_UP:
                snprintf(
                        what,
                        sizeof(what),
                        "catching up the slot %s missed while refreshd was not running",
                        slot);
                break;
        case REPORT_DUE_CLOCK_JUMPED:
                snprintf(what, sizeof(what), "the clock jumped past the slot %s", slot);
                break;
        case REPORT_DUE_RESUMED:
                snprintf(what, sizeof(what), "catching up the slot %s held while paused, as told", slot);
                break;
        case _REPORT_DUE_MAX:
        case _REPORT_DUE_INVALID:
                assert_not_reached();
        }
        report_event(REFRESHD_MESSAGE_SLOT_FIRED, LOG_INFO, f, "Environment '%s': %s", ec->name, what);
}

char *report_skip_reason(const EnvConfig *ec, const ReportSkip *why, char *reason, size_t size) {
        switch (why->reason) {
        case REPORT_SKIP_MISSED:
                snprintf(reason, size, "missed while refreshd was not running, and catch_up is off");
                break;
        case REPORT_SKIP_RUNNING:
                snprintf(reason, size, "job %s is still running", why->job_id);
                break;
        case REPORT_SKIP_MIN_INTERVAL:
                snprintf(
                        reason,
                        size,
                        "the last refresh submitted was for the slot %s, less than min_interval %s before",
                        LOCAL(ec, why->other_slot),
                        duration_format(why->min_interval, (char[DURATION_MAX]) {}));
                break;
        case REPORT_SKIP_RUNNING_AT_ZUORA:
                snprintf(
                        reason,
                        size,
                        "job %s is already running at Zuora, not started for this slot%s",
                        why->job_id,
                        why->no_next_refresh
                                ? " (Zuora shows no nextRefreshTime, as it does while a refresh runs)"
                                : "");
                break;
        case REPORT_SKIP_SUBMITTING:
                snprintf(
                        reason,
                        size,
                        "the refresh for slot %s is still being submitted",
                        LOCAL(ec, why->other_slot));
                break;
        case REPORT_SKIP_PAUSED:
                snprintf(
                        reason,
                        size,
                        "paused by %s%s%s%s%s",
                        why->by ?: "an operator",
                        why->until != REPORT_UNSET ? " until " : "",
                        why->until != REPORT_UNSET ? LOCAL(ec, why->until) : "",
                        why->note ? ": " : "",
                        why->note ?: "");
                break;
        case REPORT_SKIP_TOLD:
                snprintf(
                        reason,
                        size,
                        "skipped by %s%s%s",
                        why->by ?: "an operator",
                        why->note ? ": " : "",
                        why->note ?: "");
                break;
        case _REPORT_SKIP_REASON_MAX:
        case _REPORT_SKIP_REASON_INVALID:
                assert_not_reached();
        }
        return reason;
}

void report_slot_skipped(const EnvConfig *ec, const ReportFields *f, const ReportSkip *why) {
        char reason[300];

        report_skip_reason(ec, why, reason, sizeof(reason));
        report_event(
                REFRESHD_MESSAGE_SKIPPED,
                LOG_NOTICE,
                f,
                "Environment '%s': slot %s skipped: %s",
                ec->name,
                LOCAL(ec, f->slot),
                reason);
}

/* " (reason: TEXT)", or nothing. */
#define REASON_SUFFIX(f) (f)->reason ? " (reason: " : "", (f)->reason ?: "", (f)->reason ? ")" : ""

void report_paused(const EnvConfig *ec, const ReportFields *f, int64_t until) {
        report_event(
                REFRESHD_MESSAGE_PAUSED,
                LOG_NOTICE,
                f,
                "Environment '%s': paused by %s%s%s%s%s%s",
                ec->name,
                f->caller ?: "an operator",
                until != REPORT_UNSET ? " until " : "",
                until != REPORT_UNSET ? LOCAL(ec, until) : "",
                REASON_SUFFIX(f));
}

void report_resumed(const EnvConfig *ec, const ReportFields *f, bool expired) {
        report_event(
                REFRESHD_MESSAGE_RESUMED,
                LOG_NOTICE,
                f,
                "Environment '%s': resumed %s%s%s%s%s",
                ec->name,
                expired ? "as its pause ended" : "by ",
                expired ? "" : f->caller ?: "an operator",
                f->slot != REPORT_UNSET ? "; slot " : "",
                f->slot != REPORT_UNSET ? LOCAL(ec, f->slot) : "",
                f->slot != REPORT_UNSET ? ", held while paused, is caught up now" : "");
}

void report_skip_changed(const EnvConfig *ec, const ReportFields *f, bool added) {
        report_event(
                REFRESHD_MESSAGE_SKIP_CHANGED,
                LOG_NOTICE,
                f,
                "Environment '%s': slot %s %s by %s%s%s%s",
                ec->name,
                LOCAL(ec, f->slot),
                added ? "will be skipped, as told" : "will fire again, as told",
                f->caller ?: "an operator",
                REASON_SUFFIX(f));
}

void report_ineligible(const EnvConfig *ec, const ReportFields *f, int64_t allowed_from, bool deferred) {
        if (deferred)
                report_event(
                        REFRESHD_MESSAGE_INELIGIBLE,
                        LOG_NOTICE,
                        f,
                        "Environment '%s': Zuora allows the next refresh from %s; slot %s is deferred to "
                        "then",
                        ec->name,
                        LOCAL(ec, allowed_from),
                        LOCAL(ec, f->slot));
        else
                report_event(
                        REFRESHD_MESSAGE_INELIGIBLE,
                        LOG_NOTICE,
                        f,
                        "Environment '%s': Zuora allows the next refresh from %s; slot %s is skipped (%s)",
                        ec->name,
                        LOCAL(ec, allowed_from),
                        LOCAL(ec, f->slot),
                        ec->when_ineligible == WHEN_INELIGIBLE_SKIP ? "when_ineligible: skip"
                                                                    : "the next slot comes first");
}

void report_refresh_failed(const EnvConfig *ec, const ReportFields *f, const char *message) {
        report_event(
                REFRESHD_MESSAGE_FAILED,
                LOG_ERR,
                f,
                "Environment '%s': the refresh for slot %s failed: %s",
                ec->name,
                LOCAL(ec, f->slot),
                message);
}

void report_retrying(const EnvConfig *ec, const ReportFields *f, const char *why, unsigned attempt) {
        report_event(
                REFRESHD_MESSAGE_RETRY,
                LOG_WARNING,
                f,
                "Environment '%s': slot %s: %s; retrying in %.1fs (attempt %u)",
                ec->name,
                LOCAL(ec, f->slot),
                why,
                (double) f->retry_in_usec / USEC_PER_SEC,
                attempt);
}

void report_outcome_unknown(const EnvConfig *ec, const ReportFields *f, const char *why) {
        report_event(
                REFRESHD_MESSAGE_OUTCOME_UNKNOWN,
                LOG_WARNING,
                f,
                "Environment '%s': slot %s: %s; looking for its job in Zuora's job list",
                ec->name,
                LOCAL(ec, f->slot),
                why);
}

void report_submitted(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_SUBMITTED,
                LOG_NOTICE,
                f,
                "Environment '%s': refresh for slot %s submitted: job %s (%s)",
                ec->name,
                LOCAL(ec, f->slot),
                f->job_id,
                f->job_status ?: "status unknown");
}

void report_rejected(const EnvConfig *ec, const ReportFields *f, const char *reason, int64_t next_allowed) {
        report_event(
                REFRESHD_MESSAGE_REJECTED,
                LOG_WARNING,
                f,
                "Environment '%s': slot %s rejected: %s%s%s",
                ec->name,
                LOCAL(ec, f->slot),
                reason,
                next_allowed != REPORT_UNSET ? "; the next refresh is allowed from " : "",
                next_allowed != REPORT_UNSET ? LOCAL(ec, next_allowed) : "");
}

void report_forbidden(const EnvConfig *ec, const ReportFields *f, const char *message) {
        report_event(REFRESHD_MESSAGE_FORBIDDEN, LOG_ERR, f, "Environment '%s': %s", ec->name, message);
}

void report_auth_failed(const EnvConfig *ec, const ReportFields *f, const char *message) {
        report_event(REFRESHD_MESSAGE_AUTH_FAILED, LOG_ERR, f, "Environment '%s': %s", ec->name, message);
}

void report_foreign_location(const EnvConfig *ec, const ReportFields *f, const char *url) {
        report_event(
                REFRESHD_MESSAGE_FOREIGN_URL,
                LOG_WARNING,
                f,
                "Environment '%s': Zuora's Location '%s' points away from base_url; refusing it and polling "
                "the "
                "job at its usual address",
                ec->name,
                url);
}

void report_adopted(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_ADOPTED,
                LOG_INFO,
                f,
                "Environment '%s': job %s (%s) already refreshes slot %s; following it instead of "
                "submitting",
                ec->name,
                f->job_id,
                f->job_status ?: "status unknown",
                LOCAL(ec, f->slot));
}

void report_job_status(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_STATUS_CHANGED,
                LOG_INFO,
                f,
                "Environment '%s': job %s is %s",
                ec->name,
                f->job_id,
                f->job_status);
}

void report_job_unknown_status(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_UNKNOWN_STATUS,
                LOG_WARNING,
                f,
                "Environment '%s': job %s has a status refreshd does not know, '%s'; polling goes on",
                ec->name,
                f->job_id,
                f->job_status);
}

void report_job_progress(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_PROGRESS,
                LOG_INFO,
                f,
                "Environment '%s': job %s at %d%%",
                ec->name,
                f->job_id,
                (int) f->progress);
}

void report_job_ended(const EnvConfig *ec, const ReportFields *f, ZuoraOutcome outcome) {
        if (outcome == ZUORA_OUTCOME_COMPLETED) {
                report_event(
                        REFRESHD_MESSAGE_FINISHED,
                        LOG_NOTICE,
                        f,
                        "Environment '%s': job %s completed: the sandbox is refreshed",
                        ec->name,
                        f->job_id);
                return;
        }
        report_event(
                outcome == ZUORA_OUTCOME_CANCELED ? REFRESHD_MESSAGE_CANCELLED : REFRESHD_MESSAGE_FAILED,
                LOG_ERR,
                f,
                "Environment '%s': job %s ended: %s",
                ec->name,
                f->job_id,
                f->job_status);
}

void report_job_lost(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_LOST,
                LOG_ERR,
                f,
                "Environment '%s': job %s is gone: Zuora answers 404 for it; the refresh's outcome is "
                "unknown",
                ec->name,
                f->job_id);
}

void report_poll_failed(const EnvConfig *ec, const ReportFields *f, const char *why) {
        report_event(
                REFRESHD_MESSAGE_RETRY,
                LOG_WARNING,
                f,
                "Environment '%s': polling job %s failed: %s; polling goes on",
                ec->name,
                f->job_id,
                why);
}

/* ---- what follows an event ---- */

void report_hook_output(const EnvConfig *ec, const ReportFields *f, const char *line) {
        report_event(
                REFRESHD_MESSAGE_HOOK_OUTPUT,
                strcmp(f->hook_stream ?: "", "stderr") == 0 ? LOG_WARNING : LOG_INFO,
                f,
                "Environment '%s': hook %s (%s): %s",
                ec->name,
                f->hook,
                f->event,
                line);
}

void report_hook_finished(
        const EnvConfig *ec,
        const ReportFields *f,
        int exit_status,
        int signal,
        bool timed_out,
        uint64_t duration_usec) {
        char took[DURATION_MAX];

        duration_format(duration_usec / USEC_PER_MSEC * USEC_PER_MSEC, took);
        if (exit_status == 0 && !timed_out)
                report_event(
                        REFRESHD_MESSAGE_HOOK_FINISHED,
                        LOG_INFO,
                        f,
                        "Environment '%s': hook %s for event %s finished after %s",
                        ec->name,
                        f->hook,
                        f->event,
                        took);
        else if (timed_out)
                report_event(
                        REFRESHD_MESSAGE_HOOK_FAILED,
                        LOG_ERR,
                        f,
                        "Environment '%s': hook %s for event %s ran past its timeout and was killed "
                        "(%s%s) after %s",
                        ec->name,
                        f->hook,
                        f->event,
                        signal ? "SIG" : "",
                        signal ? sigabbrev_np(signal) ?: "?" : "it exited",
                        took);
        else if (exit_status < 0)
                report_event(
                        REFRESHD_MESSAGE_HOOK_FAILED,
                        LOG_ERR,
                        f,
                        "Environment '%s': hook %s for event %s was killed by signal SIG%s after %s",
                        ec->name,
                        f->hook,
                        f->event,
                        sigabbrev_np(signal) ?: "?",
                        took);
        else
                report_event(
                        REFRESHD_MESSAGE_HOOK_FAILED,
                        LOG_ERR,
                        f,
                        "Environment '%s': hook %s for event %s failed with exit status %d after %s",
                        ec->name,
                        f->hook,
                        f->event,
                        exit_status,
                        took);
}

void report_hook_start_failed(const EnvConfig *ec, const ReportFields *f, int r) {
        report_event(
                REFRESHD_MESSAGE_HOOK_FAILED,
                LOG_ERR,
                f,
                "Environment '%s': hook %s for event %s could not be started: %s",
                ec->name,
                f->hook,
                f->event,
                strerror(-r));
}

void report_webhook_delivered(const EnvConfig *ec, const ReportFields *f) {
        report_event(
                REFRESHD_MESSAGE_WEBHOOK_DELIVERED,
                LOG_INFO,
                f,
                "Environment '%s': event %s posted to webhook at %s (HTTP %" PRId64 ")",
                ec->name,
                f->event,
                f->webhook_host,
                f->http_status);
}

void report_webhook_failed(const EnvConfig *ec, const ReportFields *f, const char *why) {
        char in[DURATION_MAX];

        if (f->retry_in_usec != REPORT_UNSET)
                report_event(
                        REFRESHD_MESSAGE_WEBHOOK_FAILED,
                        LOG_WARNING,
                        f,
                        "Environment '%s': posting event %s to webhook at %s failed: %s; trying again "
                        "in %s",
                        ec->name,
                        f->event,
                        f->webhook_host,
                        why,
                        duration_format((uint64_t) f->retry_in_usec / USEC_PER_SEC * USEC_PER_SEC, in));
        else
                report_event(
                        REFRESHD_MESSAGE_WEBHOOK_FAILED,
                        LOG_ERR,
                        f,
                        "Environment '%s': posting event %s to webhook at %s failed: %s; given up",
                        ec->name,
                        f->event,
                        f->webhook_host,
                        why);
}

void report_delivery_dropped(const EnvConfig *ec, const ReportFields *f, const char *what) {
        report_event(
                REFRESHD_MESSAGE_HOOK_FAILED,
                LOG_WARNING,
                f,
                "Environment '%s': %s for event %s is no longer in the configuration; not run",
                ec ? ec->name : f->environment,
                what,
                f->event);
}

void report_recipient_changed(const EnvConfig *ec, const ReportFields *f, const char *address, bool added) {
        report_event(
                REFRESHD_MESSAGE_RECIPIENTS,
                LOG_NOTICE,
                f,
                added ? "Environment '%s': %s added to Zuora's e-mail notifications"
                      : "Environment '%s': %s removed from Zuora's e-mail notifications",
                ec->name,
                address);
}

void report_recipients_failed(const EnvConfig *ec, const ReportFields *f, const char *why) {
        report_event(
                REFRESHD_MESSAGE_RECIPIENTS,
                LOG_WARNING,
                f,
                "Environment '%s': Zuora's e-mail notifications could not be kept in step: %s",
                ec->name,
                why);
}
