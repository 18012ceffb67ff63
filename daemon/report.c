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

#include "macro.h"
#include "report.h"
#include "tz.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* The number of REFRESHD_* fields in ReportFields. */
#define REPORT_FIELDS_MAX 9

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
        return r;
}

static const char *priority_to_string(int priority) {
        static const char *const table[] = {
                [LOG_EMERG] = "emerg",
                [LOG_ALERT] = "alert",
                [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",
                [LOG_WARNING] = "warning",
                [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",
                [LOG_DEBUG] = "debug",
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

/* The message is written as the caller formatted it; only control
 * characters are escaped. */
static void write_message(FILE *out, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (char_is_control(*p))
                        write_control(out, *p);
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
