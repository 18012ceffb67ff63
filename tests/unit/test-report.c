/* SPDX-License-Identifier: MIT */
/*
 * The console format (time prefix, priority names, logfmt quoting and
 * escaping, omitted fields, one line per event), --log-target parsing and
 * auto resolution, and the journal target falling back to stderr when
 * there is no journald socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "refreshd-messages.h"
#include "report-internal.h"
#include "tz.h"

#define TIME_PREFIX_LEN (sizeof("2026-12-06T03:00:00.004Z") - 1)

/* A console in memory: report_init(LOG_TARGET_CONSOLE, c->f). */
typedef struct Capture {
        FILE *f;
        char *buf;
        size_t size;
} Capture;

static void capture_start(Capture *c) {
        *c = (Capture) {};
        c->f = open_memstream(&c->buf, &c->size);
        assert_non_null(c->f);
        report_init(LOG_TARGET_CONSOLE, c->f);
}

static void capture_end(Capture *c) {
        report_init(LOG_TARGET_CONSOLE, NULL);
        assert_int_equal(fclose(c->f), 0);
        free(c->buf);
        *c = (Capture) {};
}

/* Checks that LINE starts with "YYYY-MM-DDTHH:MM:SS.mmmZ " close to now, and
 * returns what follows. */
static const char *skip_time(const char *line) {
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
        int64_t t;
        char stamp[TIME_PREFIX_LEN + 1];

        assert_true(strlen(line) > TIME_PREFIX_LEN);
        for (size_t i = 0; i < sizeof(shape) - 1; i++)
                if (shape[i] == 'd' ? !(line[i] >= '0' && line[i] <= '9') : line[i] != shape[i])
                        fail_msg("bad time prefix at %zu: '%s'", i, line);

        memcpy(stamp, line, TIME_PREFIX_LEN);
        stamp[TIME_PREFIX_LEN] = 0;
        assert_int_equal(tz_parse_iso8601(stamp, &t), 0);
        if (llabs(t - (int64_t) time(NULL)) > 5)
                fail_msg("time prefix '%s' is not now", stamp);

        return line + TIME_PREFIX_LEN + 1;
}

/* The one line captured since capture_start(), without its time prefix. */
static const char *captured_line(Capture *c) {
        const char *nl;

        assert_int_equal(fflush(c->f), 0);
        assert_non_null(c->buf);
        nl = strchr(c->buf, '\n');
        assert_non_null(nl);
        if (nl[1] != 0)
                fail_msg("more than one line: '%s'", c->buf);
        return skip_time(c->buf);
}

static void test_event_all_fields(void **state) {
        ReportFields f = REPORT_FIELDS_INIT;
        Capture c;

        f.environment = "uat";
        f.environment_id = "8ad0823f";
        assert_int_equal(tz_parse_iso8601("2026-12-06T03:00:00+01:00", &f.slot), 0);
        f.job_id = "2c92c0f9";
        f.job_status = "Processing";
        f.progress = 42;
        f.track_id = "T-1";
        f.http_status = 429;
        f.retry_in_usec = 12500000;

        capture_start(&c);
        report_event(REFRESHD_MESSAGE_RETRY, LOG_WARNING, &f, "Zuora asked '%s' to wait.", f.environment);
        assert_string_equal(
                        captured_line(&c),
                        "warning Zuora asked 'uat' to wait. REFRESHD_ENVIRONMENT=uat "
                        "REFRESHD_ENVIRONMENT_ID=8ad0823f REFRESHD_SLOT=2026-12-06T02:00:00Z "
                        "REFRESHD_JOB_ID=2c92c0f9 REFRESHD_JOB_STATUS=Processing REFRESHD_PROGRESS=42 "
                        "REFRESHD_TRACK_ID=T-1 REFRESHD_HTTP_STATUS=429 REFRESHD_RETRY_IN=12.500s\n");
        capture_end(&c);
}

static void test_fields_omitted(void **state) {
        ReportFields f = REPORT_FIELDS_INIT;
        Capture c;

        capture_start(&c);
        report_event(REFRESHD_MESSAGE_STARTED, LOG_INFO, &f, "Started.");
        assert_string_equal(captured_line(&c), "info Started.\n");
        capture_end(&c);

        capture_start(&c);
        report_event(REFRESHD_MESSAGE_STARTED, LOG_INFO, NULL, "No fields at all.");
        assert_string_equal(captured_line(&c), "info No fields at all.\n");
        capture_end(&c);

        /* Zero is a value, not "unset". */
        f.environment = "prod";
        f.progress = 0;
        f.http_status = 0;
        f.retry_in_usec = 0;
        capture_start(&c);
        report_event(REFRESHD_MESSAGE_PROGRESS, LOG_INFO, &f, "Some.");
        assert_string_equal(
                        captured_line(&c),
                        "info Some. REFRESHD_ENVIRONMENT=prod REFRESHD_PROGRESS=0 REFRESHD_HTTP_STATUS=0 "
                        "REFRESHD_RETRY_IN=0.000s\n");
        capture_end(&c);

        f = (ReportFields) REPORT_FIELDS_INIT;
        f.job_id = "J";
        f.slot = 0;
        capture_start(&c);
        report_event(REFRESHD_MESSAGE_SUBMITTED, LOG_NOTICE, &f, "Submitted.");
        assert_string_equal(
                        captured_line(&c), "notice Submitted. REFRESHD_SLOT=1970-01-01T00:00:00Z REFRESHD_JOB_ID=J\n");
        capture_end(&c);
}

static void test_logfmt_quoting(void **state) {
        static const struct {
                const char *value;
                const char *written;
        } table[] = {
                { "plain", "plain" },
                { "", "\"\"" },
                { "two words", "\"two words\"" },
                { " ", "\" \"" },
                { "say \"hi\"", "\"say \\\"hi\\\"\"" },
                { "\"", "\"\\\"\"" },
                { "a=b", "\"a=b\"" },
                { "=", "\"=\"" },
                { "back\\slash", "back\\slash" },         /* a lone '\' needs no quotes */
                { "back \\slash", "\"back \\\\slash\"" }, /* but is escaped inside them */
                { "line\nbreak", "\"line\\nbreak\"" },
                { "tab\there", "\"tab\\there\"" },
                { "cr\r", "\"cr\\r\"" },
                { "\x01", "\"\\x01\"" },
                { "\x1b[31m", "\"\\x1b[31m\"" },
                { "del\x7f", "\"del\\x7f\"" },
                { "Zürich", "Zürich" },
                { "https://x/y?a", "https://x/y?a" },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                ReportFields f = REPORT_FIELDS_INIT;
                char *expected;
                Capture c;

                f.job_status = table[i].value;
                assert_true(asprintf(&expected, "err M REFRESHD_JOB_STATUS=%s\n", table[i].written) > 0);

                capture_start(&c);
                report_event(REFRESHD_MESSAGE_UNKNOWN_STATUS, LOG_ERR, &f, "M");
                assert_string_equal(captured_line(&c), expected);
                capture_end(&c);
                free(expected);
        }
}

static void test_message_one_line(void **state) {
        ReportFields f = REPORT_FIELDS_INIT;
        Capture c;

        f.environment = "a\nb";
        capture_start(&c);
        report_event(
                        REFRESHD_MESSAGE_FAILED,
                        LOG_ERR,
                        &f,
                        "first\nsecond\r\n\tthird \x01 \"kept\" = \\ as-is%s",
                        "\n");
        /* captured_line() fails on a second line. */
        assert_string_equal(
                        captured_line(&c),
                        "err first\\nsecond\\r\\n\\tthird \\x01 \"kept\" = \\ as-is\\n "
                        "REFRESHD_ENVIRONMENT=\"a\\nb\"\n");
        capture_end(&c);

        /* A long message is not cut. */
        char *big = malloc(10001);
        assert_non_null(big);
        memset(big, 'x', 10000);
        big[10000] = 0;
        capture_start(&c);
        report_log(LOG_DEBUG, "%s", big);
        const char *l = captured_line(&c);
        assert_int_equal(strlen(l), strlen("debug ") + 10000 + 1);
        assert_memory_equal(l + strlen("debug "), big, 10000);
        capture_end(&c);
        free(big);
}

static void test_report_log(void **state) {
        static const char *const names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };
        Capture c;

        for (int p = LOG_EMERG; p <= LOG_DEBUG; p++) {
                char *expected;

                assert_true(asprintf(&expected, "%s Config file '/etc/refreshd.yaml': %d errors.\n", names[p], p) > 0);
                capture_start(&c);
                report_log(p, "Config file '%s': %d errors.", "/etc/refreshd.yaml", p);
                assert_string_equal(captured_line(&c), expected);
                capture_end(&c);
                free(expected);
        }
}

static void test_retry_and_slot(void **state) {
        static const struct {
                int64_t usec;
                const char *written;
        } table[] = {
                { 12500000, "12.500s" }, { 0, "0.000s" },       { 999, "0.000s" },
                { 1000, "0.001s" },      { 1999999, "1.999s" }, { 3600000000, "3600.000s" },
                { -1500000, "-1.500s" }, { INT64_MAX, "9223372036854.775s" },
        };
        ReportFields f = REPORT_FIELDS_INIT;
        Capture c;

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                char *expected;

                f.retry_in_usec = table[i].usec;
                assert_true(asprintf(&expected, "info R REFRESHD_RETRY_IN=%s\n", table[i].written) > 0);
                capture_start(&c);
                report_event(REFRESHD_MESSAGE_RETRY, LOG_INFO, &f, "R");
                assert_string_equal(captured_line(&c), expected);
                capture_end(&c);
                free(expected);
        }

        /* A slot that has no RFC 3339 form keeps its seconds. */
        f = (ReportFields) REPORT_FIELDS_INIT;
        f.slot = INT64_MAX;
        capture_start(&c);
        report_event(REFRESHD_MESSAGE_SLOT_FIRED, LOG_INFO, &f, "S");
        assert_string_equal(captured_line(&c), "info S REFRESHD_SLOT=9223372036854775807\n");
        capture_end(&c);
}

static void test_target_strings(void **state) {
        for (LogTarget t = 0; t < _LOG_TARGET_MAX; t++) {
                assert_non_null(log_target_to_string(t));
                assert_int_equal(log_target_from_string(log_target_to_string(t)), t);
        }
        assert_string_equal(log_target_to_string(LOG_TARGET_AUTO), "auto");
        assert_string_equal(log_target_to_string(LOG_TARGET_JOURNAL), "journal");
        assert_string_equal(log_target_to_string(LOG_TARGET_CONSOLE), "console");
        assert_null(log_target_to_string(_LOG_TARGET_MAX));
        assert_null(log_target_to_string(_LOG_TARGET_INVALID));

        assert_int_equal(log_target_from_string(NULL), -EINVAL);
        assert_int_equal(log_target_from_string(""), -EINVAL);
        assert_int_equal(log_target_from_string("Journal"), -EINVAL);
        assert_int_equal(log_target_from_string("syslog"), -EINVAL);
        assert_int_equal(log_target_from_string("console "), -EINVAL);
}

static void test_auto_target(void **state) {
        char *js = getenv("JOURNAL_STREAM") ? strdup(getenv("JOURNAL_STREAM")) : NULL;
        char *inv = getenv("INVOCATION_ID") ? strdup(getenv("INVOCATION_ID")) : NULL;

        assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
        assert_int_equal(unsetenv("INVOCATION_ID"), 0);
        report_init(LOG_TARGET_AUTO, NULL);
        assert_int_equal(report_target(), LOG_TARGET_CONSOLE);

        assert_int_equal(setenv("JOURNAL_STREAM", "8:12345", 1), 0);
        report_init(LOG_TARGET_AUTO, NULL);
        assert_int_equal(report_target(), LOG_TARGET_JOURNAL);

        assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
        assert_int_equal(setenv("INVOCATION_ID", "3a5c1e0b9f2d4c6e8a7b1d2f3e4c5a6b", 1), 0);
        report_init(LOG_TARGET_AUTO, NULL);
        assert_int_equal(report_target(), LOG_TARGET_JOURNAL);

        /* Set but empty counts as not set. */
        assert_int_equal(setenv("INVOCATION_ID", "", 1), 0);
        assert_int_equal(setenv("JOURNAL_STREAM", "", 1), 0);
        report_init(LOG_TARGET_AUTO, NULL);
        assert_int_equal(report_target(), LOG_TARGET_CONSOLE);

        /* An explicit target ignores the environment. */
        assert_int_equal(setenv("INVOCATION_ID", "x", 1), 0);
        report_init(LOG_TARGET_CONSOLE, NULL);
        assert_int_equal(report_target(), LOG_TARGET_CONSOLE);
        assert_int_equal(unsetenv("INVOCATION_ID"), 0);
        report_init(LOG_TARGET_JOURNAL, NULL);
        assert_int_equal(report_target(), LOG_TARGET_JOURNAL);

        if (js)
                assert_int_equal(setenv("JOURNAL_STREAM", js, 1), 0);
        else
                assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
        if (inv)
                assert_int_equal(setenv("INVOCATION_ID", inv, 1), 0);
        else
                assert_int_equal(unsetenv("INVOCATION_ID"), 0);
        free(js);
        free(inv);
        report_init(LOG_TARGET_CONSOLE, NULL);
}

static void test_journal_fallback(void **state) {
        ReportFields f = REPORT_FIELDS_INIT;
        char path[] = "/tmp/test-report-XXXXXX";
        char buf[4096];
        ssize_t n;
        int fd, saved;
        Capture c;

        if (access("/run/systemd/journal/socket", F_OK) >= 0) {
                print_message("journald is running here; the fallback is not exercised\n");
                skip();
        }

        /* The journal target with no console falls back to stderr: point
         * fd 2 at a temporary file for the length of one event. */
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(unlink(path), 0);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(fflush(stderr), 0);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);

        report_init(LOG_TARGET_JOURNAL, NULL);
        f.environment = "uat";
        f.http_status = 503;
        report_event(REFRESHD_MESSAGE_RETRY, LOG_WARNING, &f, "No journal for '%s'.", "uat");
        report_log(LOG_INFO, "Plain line.");

        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        assert_int_equal(close(saved), 0);
        assert_int_equal(report_target(), LOG_TARGET_JOURNAL);

        n = pread(fd, buf, sizeof(buf) - 1, 0);
        assert_true(n > 0);
        buf[n] = 0;
        assert_int_equal(close(fd), 0);

        /* Two events, two lines. */
        char *nl = strchr(buf, '\n');
        assert_non_null(nl);
        *nl = 0;
        assert_string_equal(
                        skip_time(buf),
                        "warning No journal for 'uat'. REFRESHD_ENVIRONMENT=uat REFRESHD_HTTP_STATUS=503");
        assert_string_equal(skip_time(nl + 1), "info Plain line.\n");

        /* With a console given, the fallback goes there. */
        capture_start(&c);
        report_init(LOG_TARGET_JOURNAL, c.f);
        report_log(LOG_ERR, "To the console.");
        assert_string_equal(captured_line(&c), "err To the console.\n");
        capture_end(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_event_all_fields),
                cmocka_unit_test(test_fields_omitted),
                cmocka_unit_test(test_logfmt_quoting),
                cmocka_unit_test(test_message_one_line),
                cmocka_unit_test(test_report_log),
                cmocka_unit_test(test_retry_and_slot),
                cmocka_unit_test(test_target_strings),
                cmocka_unit_test(test_auto_target),
                cmocka_unit_test(test_journal_fallback),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
