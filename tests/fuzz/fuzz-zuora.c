/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for everything Zuora sends us: the input is fed whole to
 * each parser (job, job list, token, environment, error text, verdict) and,
 * split at its first newline, to the Retry-After reader; it also feeds the
 * request builders. Whatever comes back must keep the module's promises:
 * ids fit a URL path, tokens fit a header, error text is short, clean UTF-8,
 * outputs are untouched on failure. Any broken promise abort()s.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tz.h"
#include "utf8.h"
#include "zuora.h"

#define ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
#define TIME_MIN INT64_C(-62167305600) /* 0000-01-01 less a day of offset */
#define TIME_MAX INT64_C(253402387199) /* 9999-12-31 plus a day of offset */
#define NOW INT64_C(1796522400)        /* 2026-12-06T02:00:00Z */

#define check(x)                                                                                              \
        do {                                                                                                  \
                if (!(x))                                                                                     \
                        abort();                                                                              \
        } while (0)

static bool id_ok(const char *s, const char *allowed, size_t max) {
        size_t n = strlen(s);
        return n >= 1 && n <= max && strspn(s, allowed) == n;
}

static bool time_ok(int64_t t) {
        return t == ZUORA_TIME_UNSET || (t >= TIME_MIN && t <= TIME_MAX);
}

static void check_job(const ZuoraJob *j) {
        check(j->id && id_ok(j->id, ID_CHARS, 128));
        if (j->status) {
                size_t n = strlen(j->status);
                check(n >= 1 && n <= 64);
                for (size_t i = 0; i < n; i++)
                        check(j->status[i] >= 0x20 && j->status[i] <= 0x7e);
                check(!zuora_status_is_terminal(j->status) || zuora_status_is_known(j->status));
        }
        check(!j->test_environment_id || id_ok(j->test_environment_id, ID_CHARS, 128));
        check(j->progress >= -1 && j->progress <= 100);
        check(time_ok(j->create_time) && time_ok(j->job_start_time) && time_ok(j->job_end_time) &&
              time_ok(j->estimated_completion_time) && time_ok(j->scheduled_refresh_time));
        check(zuora_job_has_ended(j) == (zuora_status_is_terminal(j->status) || j->job_end_time != ZUORA_TIME_UNSET));
}

static bool same_string(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A job that parses alone parses the same inside a list: bare, or under
 * "jobs" after an item that is skipped. */
static void check_same_in_list(const char *data, size_t size, const ZuoraJob *job) {
        static const char *const wrappers[][2] = { { "[", "]" }, { "{\"result\":", "}" }, { "{\"jobs\":[1,", "]}" } };

        if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
                return; /* a byte order mark is only tolerated at the very start */
        for (size_t w = 0; w < sizeof(wrappers) / sizeof(wrappers[0]); w++) {
                size_t a = strlen(wrappers[w][0]), b = strlen(wrappers[w][1]);
                char *buf = malloc(a + size + b);
                ZuoraJob *jobs;
                size_t n;
                int r;

                if (!buf)
                        return;
                memcpy(buf, wrappers[w][0], a);
                memcpy(buf + a, data, size);
                memcpy(buf + a + size, wrappers[w][1], b);
                r = zuora_parse_job_list(buf, a + size + b, &jobs, &n);
                free(buf);
                if (w == 1) {
                        /* {"result": {…}} holds no list */
                        check(r == -EBADMSG);
                        continue;
                }
                check(r == 0 && n == 1);
                check(strcmp(jobs[0].id, job->id) == 0 && same_string(jobs[0].status, job->status) &&
                      same_string(jobs[0].test_environment_id, job->test_environment_id) &&
                      jobs[0].progress == job->progress && jobs[0].create_time == job->create_time &&
                      jobs[0].job_start_time == job->job_start_time && jobs[0].job_end_time == job->job_end_time &&
                      jobs[0].estimated_completion_time == job->estimated_completion_time &&
                      jobs[0].scheduled_refresh_time == job->scheduled_refresh_time);
                zuora_job_list_free(jobs, n);
        }
}

/* Valid UTF-8 without the characters the error text blanks: C1 controls
 * and the line and paragraph separators. */
static bool text_is_clean(const char *s) {
        size_t n = strlen(s);

        for (size_t i = 0, len; i < n; i += len) {
                uint32_t c = utf8_decode(s + i, n - i, &len);
                if (c == UTF8_INVALID || (c >= 0x80 && c < 0xa0) || c == 0x2028 || c == 0x2029)
                        return false;
        }
        return true;
}

static void fuzz_parsers(const char *data, size_t size) {
        ZuoraJob job = { .id = (char *) "sentinel" }, *jobs = (ZuoraJob *) 1;
        size_t n = 12345;
        char *token = (char *) "sentinel", *text;
        uint64_t expires = 7;
        int64_t last = 1, next = 2;
        int r;

        r = zuora_parse_job(data, size, &job);
        if (r == 0) {
                check_job(&job);
                check_same_in_list(data, size, &job);
                zuora_job_done(&job);
                check(!job.id && !job.status && !job.test_environment_id);
        } else
                check(r == -EBADMSG && strcmp(job.id, "sentinel") == 0);

        r = zuora_parse_job_list(data, size, &jobs, &n);
        if (r == 0) {
                check((n == 0) == (jobs == NULL));
                for (size_t i = 0; i < n; i++)
                        check_job(&jobs[i]);
                zuora_job_list_free(jobs, n);
        } else
                check(r == -EBADMSG && jobs == (ZuoraJob *) 1 && n == 12345);

        r = zuora_parse_token(data, size, &token, &expires);
        if (r == 0) {
                size_t len = strlen(token);
                check(len >= 1 && len <= 4096);
                for (size_t i = 0; i < len; i++)
                        check(token[i] > 0x20 && token[i] < 0x7f);
                check(expires >= 1 && expires <= 7 * 86400);
                explicit_bzero(token, len);
                free(token);
        } else
                check(r == -EBADMSG && strcmp(token, "sentinel") == 0 && expires == 7);

        r = zuora_parse_environment(data, size, &last, &next);
        if (r == 0)
                check(time_ok(last) && time_ok(next));
        else
                check(r == -EBADMSG && last == 1 && next == 2);

        text = zuora_error_text(data, size);
        if (text) {
                size_t len = strlen(text);
                check(len >= 1 && len <= 500);
                check(text[0] != ' ' && text[len - 1] != ' ' && !strstr(text, "  "));
                for (size_t i = 0; i < len; i++)
                        check((unsigned char) text[i] >= 0x20 && text[i] != 0x7f);
                check(text_is_clean(text));
                free(text);
        }

        static const long statuses[] = { 0, 200, 201, 301, 400, 401, 403, 404, 408, 409, 429, 500, 503, 999 };
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
                for (int ok = 0; ok < 2; ok++) {
                        ZuoraVerdict v = zuora_classify(statuses[i], -5, data, size, ok);
                        check(v >= 0 && v < _ZUORA_VERDICT_MAX && zuora_verdict_to_string(v));
                }
        check((zuora_classify(403, 0, data, size, false) == ZUORA_VERDICT_PERIOD) ==
              (zuora_classify(409, 0, data, size, false) == ZUORA_VERDICT_PERIOD));
}

static void fuzz_strings(const char *data, size_t size) {
        char *s = strndup(data, size), *second, *out;
        uint64_t usec = 99;
        int64_t t = 42, slot = 0;
        int r;

        if (!s)
                return;
        second = strchr(s, '\n');
        if (second)
                *second++ = 0;

        /* Retry-After (first line) and ratelimit-reset (second line). */
        for (int i = 0; i < 3; i++) {
                static const int64_t nows[] = { NOW, INT64_MIN, INT64_MAX };
                usec = 99;
                r = zuora_retry_after(s, second, nows[i], &usec);
                if (r == 0)
                        check(usec <= UINT64_C(86400000000));
                else
                        check(r == -ENODATA && usec == 99);
        }

        /* Times: whatever parses formats back to the same instant. */
        r = zuora_parse_time(s, &t);
        if (r == 0) {
                char buf[TZ_ISO_MAX];
                int64_t back;
                check(t >= TIME_MIN && t <= TIME_MAX);
                if (tz_format_utc(t, buf, sizeof(buf)) == 0) {
                        check(zuora_parse_time(buf, &back) == 0 && back == t);
                        out = zuora_job_request_body(t);
                        check(out && strstr(out, buf));
                        free(out);
                }
        } else
                check(t == 42);
        check(!zuora_status_is_terminal(s) || zuora_status_is_known(s));

        /* Builders. */
        memcpy(&slot, data, size < sizeof(slot) ? size : sizeof(slot));
        out = zuora_idempotency_key(s, slot);
        if (out) {
                check(strncmp(out, "refreshd-", 9) == 0 && id_ok(out, KEY_CHARS, 254));
                free(out);
        }
        out = zuora_idempotency_key(s, NOW);
        check(out && id_ok(out, KEY_CHARS, 254));
        free(out);

        out = zuora_token_request_body(s, second ? second : "");
        check(out);
        check(strncmp(out, "grant_type=client_credentials&client_id=", 40) == 0);
        check(strspn(out, KEY_CHARS "._~%&=") == strlen(out));
        free(out);

        uint8_t random[16] = {};
        char track[ZUORA_TRACK_ID_MAX];
        memcpy(random, data, size < sizeof(random) ? size : sizeof(random));
        zuora_track_id(random, track);
        check(strlen(track) == 41 && strspn(track + 9, "0123456789abcdef") == 32);

        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 256 * 1024)
                return 0;
        fuzz_parsers((const char *) data, size);
        fuzz_strings((const char *) data, size);
        return 0;
}
