/* SPDX-License-Identifier: MIT */
/*
 * The Zuora module against the documented shapes (the JobResponse example
 * from the API reference, word for word), the shapes Zuora might send
 * instead (unknown keys, nulls, wrong types, wrappers around lists), and
 * hostile input (every truncation of a valid answer, random byte flips,
 * depth bombs, invalid UTF-8, trailing garbage). The random part prints its
 * seed; set REFRESHD_TEST_SEED to replay a run. Runs clean under valgrind,
 * which is what checks the token paths for leaks and stray reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "tz.h"
#include "utf8.h"
#include "zuora.h"

/* The JobResponse example of "Create a test environment job", without the
 * "- " bullets of the rendered page. */
static const char seed_job[] =
        "{\n"
        "  \"createTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"createdById\": \"58f182ab203c447b8b9cd90382da030a\",\n"
        "  \"estimatedCompletionTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"id\": \"11111111-1111-1111-1111-111111111111\",\n"
        "  \"jobEndTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"jobStartTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"jobType\": \"REFRESH\",\n"
        "  \"progressPercentage\": 0,\n"
        "  \"scheduledRefreshTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"status\": \"QUEUED\",\n"
        "  \"testEnvironmentId\": \"11111111-1111-1111-1111-111111111111\",\n"
        "  \"updateTime\": \"2019-08-24T14:15:22Z\",\n"
        "  \"updatedById\": \"58f182ab203c447b8b9cd90382da030a\"\n"
        "}\n";

/* The same as the page renders it, bullets and all: not JSON. */
static const char seed_job_rendered[] =
        "{- \"createTime\": \"2019-08-24T14:15:22Z\",\n"
        "- \"id\": \"11111111-1111-1111-1111-111111111111\",\n"
        "- \"status\": \"QUEUED\"\n"
        "}";

static const char seed_token[] =
        "{\"access_token\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\",\"token_type\":\"bearer\","
        "\"expires_in\":3599,\"scope\":\"entity.1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc platform.write "
        "service.usage.delete\",\"jti\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\"}";

#define T_2019_08_24 INT64_C(1566656122) /* 2019-08-24T14:15:22Z */
#define T_2026_12_06 INT64_C(1796522400) /* 2026-12-06T02:00:00Z */

static int64_t iso(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

static int parse_job(const char *s, ZuoraJob *ret) {
        return zuora_parse_job(s, strlen(s), ret);
}

static void expect_job_bad(const char *s) {
        ZuoraJob j = { .id = (char *) "untouched" };
        int r = parse_job(s, &j);

        if (r != -EBADMSG)
                fail_msg("'%s' gave %d, want -EBADMSG", s, r);
        assert_string_equal(j.id, "untouched");
}

/* ---- jobs ---- */

static void test_job_seed(void **state) {
        ZuoraJob j;

        assert_int_equal(parse_job(seed_job, &j), 0);
        assert_string_equal(j.id, "11111111-1111-1111-1111-111111111111");
        assert_string_equal(j.status, "QUEUED");
        assert_int_equal(j.progress, 0);
        assert_string_equal(j.test_environment_id, "11111111-1111-1111-1111-111111111111");
        assert_int_equal(j.create_time, T_2019_08_24);
        assert_int_equal(j.job_start_time, T_2019_08_24);
        assert_int_equal(j.job_end_time, T_2019_08_24);
        assert_int_equal(j.estimated_completion_time, T_2019_08_24);
        assert_int_equal(j.scheduled_refresh_time, T_2019_08_24);
        assert_int_equal(iso("2019-08-24T14:15:22Z"), T_2019_08_24);
        /* The example has a jobEndTime: it has ended, whatever its status says. */
        assert_true(zuora_job_has_ended(&j));
        zuora_job_done(&j);
        assert_null(j.id);
        assert_null(j.status);
        assert_int_equal(j.progress, -1);
        assert_int_equal(j.job_end_time, ZUORA_TIME_UNSET);
        zuora_job_done(&j); /* twice is harmless */
        zuora_job_done(NULL);

        expect_job_bad(seed_job_rendered);
}

static void test_job_minimal_and_nulls(void **state) {
        ZuoraJob j;

        assert_int_equal(parse_job("{\"id\":\"2c92c0f9\"}", &j), 0);
        assert_string_equal(j.id, "2c92c0f9");
        assert_null(j.status);
        assert_null(j.test_environment_id);
        assert_int_equal(j.progress, -1);
        assert_int_equal(j.create_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.job_start_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.job_end_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.estimated_completion_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.scheduled_refresh_time, ZUORA_TIME_UNSET);
        assert_false(zuora_job_has_ended(&j));
        zuora_job_done(&j);

        assert_int_equal(parse_job("{\"id\":\"a\",\"status\":null,\"progressPercentage\":null,"
                                   "\"testEnvironmentId\":null,\"createTime\":null,\"jobStartTime\":null,"
                                   "\"jobEndTime\":null,\"estimatedCompletionTime\":null,"
                                   "\"scheduledRefreshTime\":null,\"jobType\":null}",
                                   &j),
                         0);
        assert_null(j.status);
        assert_int_equal(j.progress, -1);
        assert_int_equal(j.job_end_time, ZUORA_TIME_UNSET);
        zuora_job_done(&j);

        /* Unknown keys of every kind, before and after, nested deep. */
        assert_int_equal(parse_job(" \t\r\n{\"x\":{\"y\":[1,2,{\"z\":[[[]]]}],\"id\":\"inner\"},\"b\":true,"
                                   "\"f\":false,\"n\":-1.5e300,\"big\":123456789012345678901234567890,"
                                   "\"id\":\"outer\",\"status\":\"IN_PROGRESS\",\"extra\":\"\\u00e9\"} \n",
                                   &j),
                         0);
        assert_string_equal(j.id, "outer");
        assert_string_equal(j.status, "IN_PROGRESS");
        zuora_job_done(&j);

        /* A UTF-8 byte order mark is tolerated. */
        assert_int_equal(parse_job("\xEF\xBB\xBF{\"id\":\"bom\"}", &j), 0);
        assert_string_equal(j.id, "bom");
        zuora_job_done(&j);

        /* Escapes are decoded; the first of duplicate keys wins. */
        assert_int_equal(parse_job("{\"id\":\"ab\\u0063\\u002d1\",\"id\":\"second\"}", &j), 0);
        assert_string_equal(j.id, "abc-1");
        zuora_job_done(&j);
}

static void test_job_wrong_types(void **state) {
        ZuoraJob j;

        assert_int_equal(parse_job("{\"id\":\"a\",\"status\":5,\"progressPercentage\":true,"
                                   "\"testEnvironmentId\":[],\"createTime\":1566656122,\"jobStartTime\":{},"
                                   "\"jobEndTime\":false,\"estimatedCompletionTime\":\"soon\","
                                   "\"scheduledRefreshTime\":\"2019-13-01T00:00:00Z\"}",
                                   &j),
                         0);
        assert_null(j.status);
        assert_null(j.test_environment_id);
        assert_int_equal(j.progress, -1);
        assert_int_equal(j.create_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.job_start_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.job_end_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.estimated_completion_time, ZUORA_TIME_UNSET);
        assert_int_equal(j.scheduled_refresh_time, ZUORA_TIME_UNSET);
        zuora_job_done(&j);

        /* Statuses are kept as sent when short printable ASCII, else absent. */
        assert_int_equal(parse_job("{\"id\":\"a\",\"status\":\"in_progress\"}", &j), 0);
        assert_string_equal(j.status, "in_progress");
        zuora_job_done(&j);
        assert_int_equal(parse_job("{\"id\":\"a\",\"status\":\"Some New Status\"}", &j), 0);
        assert_string_equal(j.status, "Some New Status");
        zuora_job_done(&j);
        static const char *const bad_status[] = {
                "{\"id\":\"a\",\"status\":\"\"}",
                "{\"id\":\"a\",\"status\":\"IN\\nPROGRESS\"}",
                "{\"id\":\"a\",\"status\":\"IN\\u0000PROGRESS\"}",
                "{\"id\":\"a\",\"status\":\"\\u00c9TAT\"}",
                "{\"id\":\"a\",\"status\":\"A1234567890123456789012345678901234567890123456789012345678901234\"}",
        };
        for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
                assert_int_equal(parse_job(bad_status[i], &j), 0);
                assert_null(j.status);
                zuora_job_done(&j);
        }

        /* A bad testEnvironmentId is dropped, not fatal. */
        assert_int_equal(parse_job("{\"id\":\"a\",\"testEnvironmentId\":\"../etc\"}", &j), 0);
        assert_null(j.test_environment_id);
        zuora_job_done(&j);

        /* Times in the forms Zuora might use. */
        assert_int_equal(parse_job("{\"id\":\"a\",\"createTime\":\"2019-08-24T16:15:22.123+02:00\","
                                   "\"jobStartTime\":\"2019-08-24 14:15:22\",\"jobEndTime\":\"2019-08-24T14:15:22z\"}",
                                   &j),
                         0);
        assert_int_equal(j.create_time, T_2019_08_24);
        assert_int_equal(j.job_start_time, T_2019_08_24);
        assert_int_equal(j.job_end_time, T_2019_08_24);
        zuora_job_done(&j);
}

static void expect_progress(const char *value, int want) {
        char body[256];
        ZuoraJob j;

        snprintf(body, sizeof(body), "{\"id\":\"p\",\"progressPercentage\":%s}", value);
        assert_int_equal(parse_job(body, &j), 0);
        if (j.progress != want)
                fail_msg("progressPercentage %s: got %d, want %d", value, j.progress, want);
        zuora_job_done(&j);
}

static void test_job_progress(void **state) {
        expect_progress("0", 0);
        expect_progress("45", 45);
        expect_progress("100", 100);
        expect_progress("\"45\"", 45);
        expect_progress("\" 7 \"", 7);
        expect_progress("\"+7\"", 7);
        expect_progress("\"007\"", 7);
        expect_progress("45.9", 45);
        expect_progress("\"99.99\"", 99);
        expect_progress("-3", 0);
        expect_progress("-0", 0);
        expect_progress("150", 100);
        expect_progress("1e2", 100);
        expect_progress("0.5e2", 50);
        expect_progress("5E1", 50);
        expect_progress("5e-1", 0);
        expect_progress("12.5e1", 100);
        expect_progress("1.25e1", 12);
        expect_progress("0.000000000000000000000000000000000001e37", 10);
        expect_progress("1e999", 100);
        expect_progress("-1e999", 0);
        expect_progress("1e-999", 0);
        expect_progress("1e99999999999999999999", 100);
        expect_progress("123456789012345678901234567890", 100);
        expect_progress("-123456789012345678901234567890", 0);
        expect_progress("9223372036854775808", 100);
        expect_progress("0e100000000", 0);
        expect_progress("\"abc\"", -1);
        expect_progress("\"\"", -1);
        expect_progress("\"45%\"", -1);
        expect_progress("\"1e\"", -1);
        expect_progress("\"1.\"", -1);
        expect_progress("\".5\"", -1);
        expect_progress("\"--1\"", -1);
        expect_progress("\"0x10\"", -1);
        expect_progress("\"4\\u00005\"", -1);
        expect_progress("[]", -1);
        expect_progress("{}", -1);
        expect_progress("true", -1);
        expect_progress("null", -1);
}

static void test_job_ids(void **state) {
        char body[512], id[200];
        ZuoraJob j;

        /* 128 characters of the alphabet: fine; 129: refused. */
        memset(id, 'a', 128);
        id[128] = 0;
        id[5] = '_';
        id[6] = '-';
        id[7] = 'Z';
        id[8] = '9';
        snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
        assert_int_equal(parse_job(body, &j), 0);
        assert_string_equal(j.id, id);
        zuora_job_done(&j);
        id[128] = 'a';
        id[129] = 0;
        snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
        expect_job_bad(body);

        static const char *const bad[] = {
                "{}",
                "{\"id\":\"\"}",
                "{\"id\":null}",
                "{\"id\":12345}",
                "{\"id\":[\"a\"]}",
                "{\"id\":{\"id\":\"a\"}}",
                "{\"id\":\"a/b\"}",
                "{\"id\":\"../x\"}",
                "{\"id\":\"a b\"}",
                "{\"id\":\"a:b\"}",
                "{\"id\":\"a?b\"}",
                "{\"id\":\"a%2Fb\"}",
                "{\"id\":\"a.b\"}",
                "{\"id\":\"\\u00e9\"}",
                "{\"id\":\"a\\u0000b\"}",
                "{\"id\":\"a\\nb\"}",
                "{\"ID\":\"abc\"}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_job_bad(bad[i]);
}

static void test_job_malformed(void **state) {
        static const char *const bad[] = {
                "",
                " ",
                "\n\t ",
                "null",
                "true",
                "5",
                "\"id\"",
                "[]",
                "[{\"id\":\"a\"}]",
                "{\"id\":\"a\"",
                "{\"id\":\"a\",}",
                "{\"id\":\"a\"} x",
                "{\"id\":\"a\"}{}",
                "{\"id\":\"a\"}{\"id\":\"b\"}",
                "{\"id\":\"a\"}]",
                /* A string left open after the value: yajl 2.1.0 alone accepts these. */
                "{\"id\":\"a\"}\"",
                "{\"id\":\"a\"} \"x",
                "{\"id\":\"a\"}\n\"abc\\\"",
                "{\"id\":\"a\"}\"null",
                "/* c */ {\"id\":\"a\"}",
                "{\"id\":\"a\"} // c",
                "{'id':'a'}",
                "{id:\"a\"}",
                "{\"id\":\"a\",\"n\":NaN}",
                "{\"id\":\"a\",\"n\":01}",
                "{\"id\":\"a\",\"n\":1.}",
                "{\"id\":\"a\",\"s\":\"\\x41\"}",
                "{\"id\":\"a\",\"s\":\"tab\there\"}",
                "\xEF\xBB\xBF",
                "<html><body>502 Bad Gateway</body></html>",
        };
        ZuoraJob j;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_job_bad(bad[i]);

        /* NULL with no size is an empty body. */
        assert_int_equal(zuora_parse_job(NULL, 0, &j), -EBADMSG);

        /* A NUL byte inside, or after the value. */
        static const char nul_inside[] = "{\"id\":\"a\0b\"}";
        static const char nul_after[] = "{\"id\":\"a\"}\0";
        assert_int_equal(zuora_parse_job(nul_inside, sizeof(nul_inside) - 1, &j), -EBADMSG);
        assert_int_equal(zuora_parse_job(nul_after, sizeof(nul_after) - 1, &j), -EBADMSG);
        /* The size is honoured: what lies past it is not read. */
        assert_int_equal(zuora_parse_job(nul_after, sizeof(nul_after) - 2, &j), 0);
        zuora_job_done(&j);

        /* Invalid UTF-8: a lone continuation byte, a truncated sequence, in a value and in a key. */
        expect_job_bad("{\"id\":\"a\",\"s\":\"\x80\"}");
        expect_job_bad("{\"id\":\"a\",\"s\":\"\xC3\"}");
        expect_job_bad("{\"id\":\"a\",\"s\":\"\xE2\x82\"}");
        expect_job_bad("{\"id\":\"a\",\"\xFF\":1}");
        expect_job_bad("{\"id\":\"a\",\"s\":\"\xF8\x88\x80\x80\x80\"}");
}

static char *repeat(const char *a, size_t n, const char *middle, const char *b) {
        size_t la = strlen(a), lm = strlen(middle), lb = strlen(b);
        char *s = malloc(la * n + lm + lb * n + 1), *p = s;

        assert_non_null(s);
        for (size_t i = 0; i < n; i++, p += la)
                memcpy(p, a, la);
        memcpy(p, middle, lm);
        p += lm;
        for (size_t i = 0; i < n; i++, p += lb)
                memcpy(p, b, lb);
        *p = 0;
        return s;
}

static void test_job_depth(void **state) {
        ZuoraJob j;
        char *s;

        /* A deep but well-formed value under an unknown key is dropped: the job stays. */
        s = repeat("{\"x\":[", 100000, "1", "]}");
        char *body = malloc(strlen(s) + 64);
        if (!body)
                abort(); /* (assert_non_null does not tell the compiler it stops here) */
        sprintf(body, "{\"deep\":%s,\"id\":\"after\"}", s);
        assert_int_equal(parse_job(body, &j), 0);
        assert_string_equal(j.id, "after");
        zuora_job_done(&j);
        free(body);
        free(s);

        /* The same, but the id is deep: not found. */
        s = repeat("{\"x\":", 100, "{\"id\":\"deep\"}", "}");
        expect_job_bad(s);
        free(s);

        /* Deep arrays as the whole body, closed and not. */
        s = repeat("[", 200000, "", "]");
        expect_job_bad(s);
        free(s);
        s = repeat("[", 200000, "", "");
        expect_job_bad(s);
        free(s);
        s = repeat("{\"a\":", 100000, "", "");
        expect_job_bad(s);
        free(s);

        /* 31 levels down is still kept (the job list reads two levels). */
        s = repeat("[", 31, "", "]");
        body = malloc(strlen(s) + 64);
        if (!body)
                abort(); /* (assert_non_null does not tell the compiler it stops here) */
        sprintf(body, "{\"k\":%s,\"id\":\"ok\"}", s);
        assert_int_equal(parse_job(body, &j), 0);
        zuora_job_done(&j);
        free(body);
        free(s);
}

static void test_job_every_prefix(void **state) {
        size_t n = strlen(seed_job), ok = 0;

        for (size_t len = 0; len <= n; len++) {
                ZuoraJob j;
                char *copy = malloc(len ? len : 1); /* exact size: valgrind sees any overread */
                int r;

                assert_non_null(copy);
                memcpy(copy, seed_job, len);
                r = zuora_parse_job(copy, len, &j);
                if (r == 0) {
                        ok++;
                        assert_string_equal(j.id, "11111111-1111-1111-1111-111111111111");
                        zuora_job_done(&j);
                        /* Only the whole object, with or without its final newline. */
                        assert_true(len >= n - 1);
                } else if (r != -EBADMSG)
                        fail_msg("prefix of %zu bytes: %d", len, r);
                free(copy);
        }
        assert_int_equal(ok, 2);
}

/* Random byte flips, insertions and deletions: never a crash, and a job
 * that parses is always well formed. */
static void test_job_mutations(void **state) {
        unsigned seed = (unsigned) time(NULL);
        const char *env = getenv("REFRESHD_TEST_SEED");
        size_t n = strlen(seed_job);
        char *buf = malloc(n + 16);

        assert_non_null(buf);
        if (env)
                seed = (unsigned) strtoul(env, NULL, 0);
        print_message("zuora mutation seed: %u (REFRESHD_TEST_SEED to replay)\n", seed);
        srand(seed);
        for (int round = 0; round < 20000; round++) {
                size_t len = n;
                ZuoraJob j;

                memcpy(buf, seed_job, n);
                for (int k = 1 + rand() % 3; k > 0; k--) {
                        size_t at = (size_t) rand() % len;
                        switch (rand() % 3) {
                        case 0:
                                buf[at] = (char) (rand() % 256);
                                break;
                        case 1:
                                memmove(buf + at, buf + at + 1, len - at - 1);
                                len--;
                                break;
                        default:
                                if (len < n + 15) {
                                        memmove(buf + at + 1, buf + at, len - at);
                                        buf[at] = "{}[]\",:0\\ e-"[rand() % 12];
                                        len++;
                                }
                        }
                }
                if (zuora_parse_job(buf, len, &j) == 0) {
                        assert_non_null(j.id);
                        assert_true(strlen(j.id) >= 1 && strlen(j.id) <= 128);
                        assert_true(j.progress >= -1 && j.progress <= 100);
                        zuora_job_done(&j);
                }
                char *text = zuora_error_text(buf, len);
                if (text) {
                        assert_true(strlen(text) <= 500);
                        assert_true(utf8_is_valid(text));
                        free(text);
                }
        }
        free(buf);
}

/* ---- job lists ---- */

static void expect_list(const char *body, size_t want_n, const char *const *want_ids) {
        ZuoraJob *jobs = (ZuoraJob *) 1;
        size_t n = 99;
        int r = zuora_parse_job_list(body, strlen(body), &jobs, &n);

        if (r != 0)
                fail_msg("'%s': %d", body, r);
        assert_int_equal(n, want_n);
        if (n == 0)
                assert_null(jobs);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(jobs[i].id, want_ids[i]);
        zuora_job_list_free(jobs, n);
}

static void expect_list_bad(const char *body) {
        ZuoraJob *jobs = (ZuoraJob *) 1;
        size_t n = 99;
        int r = zuora_parse_job_list(body, strlen(body), &jobs, &n);

        if (r != -EBADMSG)
                fail_msg("'%s' gave %d, want -EBADMSG", body, r);
        assert_ptr_equal(jobs, (ZuoraJob *) 1);
        assert_int_equal(n, 99);
}

static void test_job_list_shapes(void **state) {
        static const char *const ab[] = { "a", "b" };
        static const char *const b[] = { "b" };

        expect_list("[{\"id\":\"a\"},{\"id\":\"b\"}]", 2, ab);
        expect_list("{\"result\":[{\"id\":\"a\"},{\"id\":\"b\"}],\"size\":2}", 2, ab);
        expect_list("{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}", 2, ab);
        expect_list("{\"jobs\":[{\"id\":\"a\"},{\"id\":\"b\"}],\"nextPage\":null}", 2, ab);
        /* "result" before "data" before "jobs", whatever the order in the body. */
        expect_list("{\"jobs\":[{\"id\":\"a\"}],\"data\":[{\"id\":\"a\"}],\"result\":[{\"id\":\"b\"}]}", 1, b);
        expect_list("{\"jobs\":[{\"id\":\"a\"}],\"data\":[{\"id\":\"b\"}]}", 1, b);
        /* A key holding something else is passed over. */
        expect_list("{\"result\":null,\"data\":{\"id\":\"a\"},\"jobs\":[{\"id\":\"b\"}]}", 1, b);
        /* Empty lists. */
        expect_list("[]", 0, NULL);
        expect_list("{\"result\":[]}", 0, NULL);
        expect_list(" [ ] \n", 0, NULL);
        /* Items that are no job, or have no usable id, are skipped. */
        expect_list("[1,\"a\",null,true,[],{},{\"id\":\"\"},{\"id\":5},{\"id\":\"x/y\"},{\"id\":\"b\"},"
                    "[{\"id\":\"c\"}]]",
                    1, b);
        expect_list("[{\"id\":\"nope nope\"}]", 0, NULL);
        /* Each item is parsed in full. */
        ZuoraJob *jobs;
        size_t n;
        char body[2048];
        snprintf(body, sizeof(body), "{\"result\":[%s,{\"id\":\"x\",\"status\":\"COMPLETED\",\"progressPercentage\":100}]}",
                 seed_job);
        assert_int_equal(zuora_parse_job_list(body, strlen(body), &jobs, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(jobs[0].status, "QUEUED");
        assert_int_equal(jobs[0].create_time, T_2019_08_24);
        assert_string_equal(jobs[1].status, "COMPLETED");
        assert_int_equal(jobs[1].progress, 100);
        assert_true(zuora_job_has_ended(&jobs[1]));
        zuora_job_list_free(jobs, n);
        zuora_job_list_free(NULL, 0);

        expect_list_bad("");
        expect_list_bad("{}");
        expect_list_bad("{\"result\":{}}");
        expect_list_bad("{\"result\":null}");
        expect_list_bad("{\"Result\":[]}");
        expect_list_bad("{\"items\":[{\"id\":\"a\"}]}");
        expect_list_bad("{\"id\":\"a\"}");
        expect_list_bad("5");
        expect_list_bad("\"[]\"");
        expect_list_bad("null");
        expect_list_bad("[{\"id\":\"a\"}");
        expect_list_bad("[{\"id\":\"a\"}] [");
        expect_list_bad("[{\"id\":\"a\"},]");
        expect_list_bad("[{\"id\":\"a\"}]\"");
        expect_list_bad("[] \"[");
        expect_list_bad("{\"result\":[]}\"x");
}

static void test_job_list_large_and_prefixes(void **state) {
        size_t count = 2000, n;
        char *body = malloc(count * 32 + 16), *p = body;
        ZuoraJob *jobs;

        assert_non_null(body);
        p += sprintf(p, "{\"result\":[");
        for (size_t i = 0; i < count; i++)
                p += sprintf(p, "%s{\"id\":\"job-%zu\"}", i ? "," : "", i);
        sprintf(p, "]}");
        assert_int_equal(zuora_parse_job_list(body, strlen(body), &jobs, &n), 0);
        assert_int_equal(n, count);
        assert_string_equal(jobs[count - 1].id, "job-1999");
        zuora_job_list_free(jobs, n);
        free(body);

        static const char list[] = "{\"result\":[{\"id\":\"a\",\"status\":\"NEW\"},{\"id\":\"b\"}],\"size\":2}";
        size_t len = strlen(list);
        for (size_t k = 0; k < len; k++) {
                char *copy = malloc(k ? k : 1);
                assert_non_null(copy);
                memcpy(copy, list, k);
                assert_int_equal(zuora_parse_job_list(copy, k, &jobs, &n), -EBADMSG);
                free(copy);
        }
        assert_int_equal(zuora_parse_job_list(list, len, &jobs, &n), 0);
        assert_int_equal(n, 2);
        zuora_job_list_free(jobs, n);
}

/* ---- tokens ---- */

static int parse_token(const char *body, char **ret, uint64_t *ret_expires) {
        return zuora_parse_token(body, strlen(body), ret, ret_expires);
}

static void free_token(char *t) {
        if (!t)
                return;
        explicit_bzero(t, strlen(t));
        free(t);
}

static void expect_expires(const char *value, uint64_t want) {
        char body[256], *token = NULL;
        uint64_t e = 0;

        snprintf(body, sizeof(body), "{\"access_token\":\"t\",\"expires_in\":%s}", value);
        assert_int_equal(parse_token(body, &token, &e), 0);
        assert_string_equal(token, "t");
        if (e != want)
                fail_msg("expires_in %s: got %" PRIu64 ", want %" PRIu64, value, e, want);
        free_token(token);
}

static void test_token(void **state) {
        char *token = NULL;
        uint64_t e = 0;

        assert_int_equal(parse_token(seed_token, &token, &e), 0);
        assert_string_equal(token, "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
        assert_int_equal(e, 3599);
        free_token(token);

        /* The token lives in its own buffer, not in the body. */
        char body[] = "{\"access_token\":\"abc\"}";
        assert_int_equal(parse_token(body, &token, NULL), 0);
        assert_true(token < body || token >= body + sizeof(body));
        memset(body, 'x', sizeof(body) - 1);
        assert_string_equal(token, "abc");
        free_token(token);

        /* Escapes are decoded (this goes through yajl's own decode buffer). */
        assert_int_equal(parse_token("{\"access_token\":\"a\\/b\\u002bc=\"}", &token, &e), 0);
        assert_string_equal(token, "a/b+c=");
        assert_int_equal(e, 3600);
        free_token(token);

        expect_expires("3599", 3599);
        expect_expires("\"3599\"", 3599);
        expect_expires("3599.9", 3599);
        expect_expires("1", 1);
        expect_expires("0", 1);
        expect_expires("-5", 1);
        expect_expires("604800", 604800);
        expect_expires("604801", 604800);
        expect_expires("1e9", 604800);
        expect_expires("1e999", 604800);
        expect_expires("99999999999999999999999999", 604800);
        expect_expires("null", 3600);
        expect_expires("\"soon\"", 3600);
        expect_expires("true", 3600);
        expect_expires("{}", 3600);

        /* A 4096-byte token is accepted, 4097 is not. */
        char *big = malloc(4200);
        assert_non_null(big);
        strcpy(big, "{\"access_token\":\"");
        memset(big + strlen(big), 'A', 4096);
        strcpy(big + 17 + 4096, "\"}");
        assert_int_equal(parse_token(big, &token, &e), 0);
        assert_int_equal(strlen(token), 4096);
        free_token(token);
        strcpy(big + 17 + 4096, "A\"}");
        token = (char *) "untouched";
        assert_int_equal(parse_token(big, &token, &e), -EBADMSG);
        assert_string_equal(token, "untouched");
        free(big);

        static const char *const bad[] = {
                "",
                "{}",
                "[]",
                "\"token\"",
                "{\"access_token\":null}",
                "{\"access_token\":\"\"}",
                "{\"access_token\":12345}",
                "{\"access_token\":[\"a\"]}",
                "{\"access_token\":\"a b\"}",
                "{\"access_token\":\"a\\tb\"}",
                "{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
                "{\"access_token\":\"a\\u0000b\"}",
                "{\"access_token\":\"a\\u007fb\"}",
                "{\"access_token\":\"\\u00e9\"}",
                "{\"token\":\"abc\"}",
                "{\"access_token\":\"abc\"",
                "{\"access_token\":\"abc\"} x",
                "access_token=abc&expires_in=3600",
                "{\"access_token\":\"abc\"}\"",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                token = (char *) "untouched";
                e = 42;
                if (parse_token(bad[i], &token, &e) != -EBADMSG)
                        fail_msg("token body '%s' accepted", bad[i]);
                assert_string_equal(token, "untouched");
                assert_int_equal(e, 42);
        }

        /* Every prefix: refused, never a crash or a leak. */
        size_t n = strlen(seed_token);
        for (size_t k = 0; k < n; k++) {
                char *copy = malloc(k ? k : 1);
                assert_non_null(copy);
                memcpy(copy, seed_token, k);
                assert_int_equal(zuora_parse_token(copy, k, &token, &e), -EBADMSG);
                free(copy);
        }
}

/* ---- environments ---- */

static void test_environment(void **state) {
        int64_t last = 1, next = 2;

#define ENV(s) zuora_parse_environment(s, strlen(s), &last, &next)
        assert_int_equal(ENV("{\"id\":\"e\",\"status\":\"ACTIVE\",\"lastRefreshTime\":\"2019-08-24T14:15:22Z\","
                             "\"nextRefreshTime\":\"2026-12-06T02:00:00Z\"}"),
                         0);
        assert_int_equal(last, T_2019_08_24);
        assert_int_equal(next, T_2026_12_06);

        assert_int_equal(ENV("{\"lastRefreshTime\":\"2019-08-24T14:15:22Z\"}"), 0);
        assert_int_equal(last, T_2019_08_24);
        assert_int_equal(next, ZUORA_TIME_UNSET);

        assert_int_equal(ENV("{\"nextRefreshTime\":\"2026-12-06T03:00:00+01:00\",\"lastRefreshTime\":\"x\"}"), 0);
        assert_int_equal(last, ZUORA_TIME_UNSET);
        assert_int_equal(next, T_2026_12_06);

        /* Never refreshed: both null is an answer. */
        last = next = 7;
        assert_int_equal(ENV("{\"lastRefreshTime\":null,\"nextRefreshTime\":null}"), 0);
        assert_int_equal(last, ZUORA_TIME_UNSET);
        assert_int_equal(next, ZUORA_TIME_UNSET);

        last = next = 7;
        assert_int_equal(ENV("{\"id\":\"e\"}"), -EBADMSG);
        assert_int_equal(ENV("{\"lastRefreshTime\":5,\"nextRefreshTime\":\"later\"}"), -EBADMSG);
        assert_int_equal(ENV("{\"lastRefreshTime\":\"2019-08-24T14:15:22Z\""), -EBADMSG);
        assert_int_equal(ENV("[{\"lastRefreshTime\":\"2019-08-24T14:15:22Z\"}]"), -EBADMSG);
        assert_int_equal(ENV("\"2019-08-24T14:15:22Z\""), -EBADMSG);
        assert_int_equal(ENV(""), -EBADMSG);
        assert_int_equal(last, 7);
        assert_int_equal(next, 7);
#undef ENV

        /* The outputs are optional. */
        assert_int_equal(zuora_parse_environment("{\"lastRefreshTime\":null}", 24, NULL, NULL), 0);
}

/* ---- error text ---- */

static void expect_text_n(const char *body, size_t size, const char *want) {
        char *text = zuora_error_text(body, size);

        if (!body)
                body = "(null)";

        if (!want) {
                if (text)
                        fail_msg("'%s': got '%s', want nothing", body, text);
                return;
        }
        if (!text)
                fail_msg("'%s': got nothing, want '%s'", body, want);
        if (strcmp(text, want) != 0)
                fail_msg("'%s':\n got '%s'\nwant '%s'", body, text, want);
        free(text);
}

static void expect_text(const char *body, const char *want) {
        expect_text_n(body, body ? strlen(body) : 0, want);
}

static void test_error_text_shapes(void **state) {
        expect_text("{\"success\":false,\"reasons\":[{\"code\":50000040,\"message\":"
                    "\"Only one refresh can be performed during a set period\"}]}",
                    "Only one refresh can be performed during a set period (code 50000040)");
        expect_text("{\"success\":false,\"processId\":\"ABC\",\"reasons\":[{\"code\":53100020,\"message\":\"first\"},"
                    "{\"code\":\"53100320\",\"message\":\"second\"},{\"message\":\"third\"},{\"code\":5},{},7,\"eighth\"]}",
                    "first (code 53100020); second (code 53100320); third; code 5; eighth");
        expect_text("{\"reasons\":[{\"code\":null,\"message\":\"x\"},{\"code\":\"\",\"message\":\"y\"}]}", "x; y");
        expect_text("{\"message\":\"Authentication error\"}", "Authentication error");
        expect_text("{\"Message\":\"Capital\"}", "Capital");
        expect_text("{\"message\":\"m\",\"code\":\"E1\"}", "m (code E1)");
        expect_text("{\"Errors\":[{\"Code\":\"INVALID_VALUE\",\"Message\":\"bad field\"}],\"Success\":false}",
                    "bad field (code INVALID_VALUE)");
        expect_text("{\"errors\":[\"one\",\"two\"]}", "one; two");
        expect_text("{\"error\":\"invalid_client\",\"error_description\":\"Invalid client credentials\"}",
                    "invalid_client: Invalid client credentials");
        expect_text("{\"error\":\"invalid_grant\"}", "invalid_grant");
        expect_text("{\"error_description\":\"no grant\"}", "no grant");
        expect_text("{\"error\":\"\",\"error_description\":\"only this\"}", "only this");
        /* The simulator's OAuth answer carries both a message and an OAuth error. */
        expect_text("{\"error\":\"invalid_client\",\"message\":\"Authentication error\","
                    "\"error_description\":\"Invalid client credentials\"}",
                    "Authentication error; invalid_client: Invalid client credentials");
        expect_text("{\"error\":{\"code\":\"Forbidden\",\"message\":\"nope\"}}", "nope (code Forbidden)");
        expect_text("{\"title\":\"Bad Request\",\"detail\":\"field x\"}", "field x");
        expect_text("[{\"message\":\"a\"},{\"message\":\"b\"}]", "a; b");
        expect_text("\"just a string\"", "just a string");
        /* Reasons win over a top-level message. */
        expect_text("{\"message\":\"generic\",\"reasons\":[{\"message\":\"specific\"}]}", "specific");
        expect_text("{\"reasons\":[{\"message\":\"\"}],\"message\":\"fallback\"}", "fallback");
}

static void test_error_text_sanitising(void **state) {
        expect_text("{\"message\":\"line one\\nline two\\r\\n\\ttabbed\\u0000nul\\u0007bell\\u007fdel\"}",
                    "line one line two tabbed nul bell del");
        expect_text("{\"message\":\"  padded  \\n\"}", "padded");
        expect_text("{\"message\":\"C1\\u0085next\\u2028sep\"}", "C1 next sep");
        expect_text("{\"message\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"}", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
        /* Nothing usable: nothing. */
        expect_text("", NULL);
        expect_text(NULL, NULL);
        expect_text(" \r\n\t", NULL);
        expect_text_n("\0\0\0", 3, NULL);
        expect_text("{\"message\":\"   \"}", "{\"message\":\" \"}");
        /* JSON of a shape we do not know: its own text, compacted. */
        expect_text("{\"status\": \"error\",\n \"info\": 42}", "{\"status\": \"error\", \"info\": 42}");
        expect_text("{}", "{}");
        expect_text("{\"reasons\":[]}", "{\"reasons\":[]}");
        expect_text("null", "null");
        expect_text(" 42 ", "42");
        expect_text("false", "false");
        /* Trailing garbage makes it not JSON: the raw text. */
        expect_text("{\"message\":\"m\"}\"x", "{\"message\":\"m\"}\"x");
        expect_text("\"a\" \"b", "\"a\" \"b");
        expect_text("12 \"b", "12 \"b");
        expect_text("12 ", "12");
        /* Not JSON. */
        expect_text("Service Unavailable\r\n", "Service Unavailable");
        expect_text("upstream connect error\x01\x02 or disconnect", "upstream connect error or disconnect");
        expect_text("bad \xFF\xFE bytes \xC3", "bad ?? bytes ?");
        expect_text("\xC0\x80 overlong \xED\xA0\x80 surrogate", "?? overlong ??? surrogate");
        expect_text("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
                    "Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                    "502 Bad Gateway 502 Bad Gateway nginx");
        expect_text("<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body><h1>Zuora is down for "
                    "maintenance</h1></body></html>\n",
                    "Maintenance Zuora is down for maintenance");
        expect_text("<unterminated tag", NULL);
        expect_text("a < b > c", "a < b > c"); /* not HTML: kept as is */
        expect_text("{\"reasons\":[{\"message\":\"cut", "{\"reasons\":[{\"message\":\"cut");
}

static void test_error_text_caps(void **state) {
        char *body, *text;
        size_t n;

        /* Not JSON: the first 200 characters. */
        body = malloc(1001);
        assert_non_null(body);
        memset(body, 'a', 1000);
        body[1000] = 0;
        text = zuora_error_text(body, 1000);
        assert_non_null(text);
        assert_int_equal(strlen(text), 200);
        free(text);

        /* ... counted as characters: 200 two-byte ones are 400 bytes. */
        for (size_t i = 0; i < 1000; i += 2)
                memcpy(body + i, "\xC3\xA9", 2);
        text = zuora_error_text(body, 1000);
        assert_non_null(text);
        assert_int_equal(strlen(text), 400);
        assert_true(utf8_is_valid(text));
        free(text);
        free(body);

        /* JSON: at most 500 bytes, cut between characters. */
        for (size_t shift = 0; shift < 4; shift++) {
                size_t size = 64 + 3 * 1000;
                body = malloc(size);
                assert_non_null(body);
                n = (size_t) sprintf(body, "{\"reasons\":[{\"message\":\"%.*s", (int) shift, "xxx");
                for (size_t i = 0; i < 600; i++, n += 3)
                        memcpy(body + n, "\xE2\x82\xAC", 3);
                n += (size_t) sprintf(body + n, "\"},{\"message\":\"second\"}]}");
                text = zuora_error_text(body, n);
                assert_non_null(text);
                assert_true(strlen(text) <= 500);
                assert_true(strlen(text) >= 497);
                assert_true(utf8_is_valid(text));
                free(text);
                free(body);
        }

        /* Many reasons: joined up to the cap, never past it. */
        body = malloc(100 * 64);
        assert_non_null(body);
        n = (size_t) sprintf(body, "{\"reasons\":[");
        for (int i = 0; i < 100; i++)
                n += (size_t) sprintf(body + n, "%s{\"code\":%d,\"message\":\"reason number %d\"}", i ? "," : "",
                                      50000000 + i, i);
        sprintf(body + n, "]}");
        text = zuora_error_text(body, strlen(body));
        assert_non_null(text);
        assert_true(strlen(text) <= 500);
        assert_non_null(strstr(text, "reason number 0 (code 50000000); reason number 1 (code 50000001); "));
        free(text);
        free(body);
}

/* ---- verdicts ---- */

static void test_classify(void **state) {
        static const char period[] = "{\"success\":false,\"reasons\":[{\"code\":50000040,\"message\":"
                                     "\"Only one refresh can be performed during a set period\"}]}";
        static const char period_shouted[] = "ONLY ONE REFRESH CAN BE PERFORMED DURING A SET PERIOD.";
        static const char denied[] = "{\"success\":false,\"reasons\":[{\"code\":50000020,\"message\":"
                                     "\"You do not have permission\"}]}";
        static const char cut[] = "Only one refresh can be performed during a set perio";
        static const struct {
                long status;
                int transport_error;
                const char *body;
                bool body_ok;
                ZuoraVerdict want;
        } cases[] = {
                { 0, -ECONNRESET, NULL, false, ZUORA_VERDICT_RETRY },
                { 0, -ETIMEDOUT, NULL, true, ZUORA_VERDICT_RETRY },
                { 0, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { -1, -EIO, NULL, false, ZUORA_VERDICT_RETRY },
                { 200, 0, "{}", true, ZUORA_VERDICT_OK },
                { 201, 0, "{}", true, ZUORA_VERDICT_OK },
                { 299, 0, "{}", true, ZUORA_VERDICT_OK },
                { 200, 0, "", false, ZUORA_VERDICT_RETRY },
                { 204, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 200, 0, period, false, ZUORA_VERDICT_RETRY },
                { 401, 0, "{\"message\":\"Authentication error\"}", false, ZUORA_VERDICT_REAUTH },
                { 403, 0, period, false, ZUORA_VERDICT_PERIOD },
                { 403, 0, period_shouted, false, ZUORA_VERDICT_PERIOD },
                { 403, 0, denied, false, ZUORA_VERDICT_FORBIDDEN },
                { 403, 0, cut, false, ZUORA_VERDICT_FORBIDDEN },
                { 403, 0, NULL, false, ZUORA_VERDICT_FORBIDDEN },
                { 404, 0, NULL, false, ZUORA_VERDICT_NOT_FOUND },
                { 408, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 409, 0, period, false, ZUORA_VERDICT_PERIOD },
                { 409, 0, "{\"message\":\"conflict\"}", false, ZUORA_VERDICT_FAILED },
                { 429, 0, NULL, false, ZUORA_VERDICT_RATE_LIMITED },
                { 400, 0, period, false, ZUORA_VERDICT_FAILED },
                { 405, 0, NULL, false, ZUORA_VERDICT_FAILED },
                { 410, 0, NULL, false, ZUORA_VERDICT_FAILED },
                { 422, 0, NULL, false, ZUORA_VERDICT_FAILED },
                { 499, 0, NULL, false, ZUORA_VERDICT_FAILED },
                { 500, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 502, 0, "<html>502</html>", false, ZUORA_VERDICT_RETRY },
                { 503, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 504, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 599, 0, NULL, false, ZUORA_VERDICT_RETRY },
                { 100, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 199, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 301, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 302, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 304, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 307, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 600, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 999, 0, NULL, true, ZUORA_VERDICT_FAILED },
                { 1, 0, NULL, true, ZUORA_VERDICT_FAILED },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ZuoraVerdict v = zuora_classify(cases[i].status, cases[i].transport_error, cases[i].body,
                                                cases[i].body ? strlen(cases[i].body) : 0, cases[i].body_ok);
                if (v != cases[i].want)
                        fail_msg("status %ld body_ok %d: got %s, want %s", cases[i].status, cases[i].body_ok,
                                 zuora_verdict_to_string(v), zuora_verdict_to_string(cases[i].want));
        }

        /* Only SIZE bytes of the body are searched. */
        assert_int_equal(zuora_classify(403, 0, period, 20, false), ZUORA_VERDICT_FORBIDDEN);
}

static void test_verdict_to_string(void **state) {
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_OK), "ok");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_RETRY), "retry");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_RATE_LIMITED), "rate-limited");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_REAUTH), "reauth");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_PERIOD), "period");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_FORBIDDEN), "forbidden");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_NOT_FOUND), "not-found");
        assert_string_equal(zuora_verdict_to_string(ZUORA_VERDICT_FAILED), "failed");
        assert_null(zuora_verdict_to_string(_ZUORA_VERDICT_MAX));
        assert_null(zuora_verdict_to_string(_ZUORA_VERDICT_INVALID));
        for (int v = 0; v < _ZUORA_VERDICT_MAX; v++)
                assert_non_null(zuora_verdict_to_string((ZuoraVerdict) v));
}

/* ---- Retry-After ---- */

#define NOW_1994 INT64_C(784111777) /* Sun, 06 Nov 1994 08:49:37 GMT */

static void expect_delay(const char *retry_after, const char *reset, int64_t now, int64_t want_sec) {
        uint64_t usec = 12345;
        int r = zuora_retry_after(retry_after, reset, now, &usec);

        if (want_sec < 0) {
                if (r != -ENODATA)
                        fail_msg("'%s' / '%s': %d, %" PRIu64 " us; want -ENODATA", retry_after ?: "(null)",
                                 reset ?: "(null)", r, usec);
                assert_int_equal(usec, 12345);
                return;
        }
        if (r != 0)
                fail_msg("'%s' / '%s': %d", retry_after ?: "(null)", reset ?: "(null)", r);
        if (usec != (uint64_t) want_sec * 1000000)
                fail_msg("'%s' / '%s': %" PRIu64 " us, want %" PRId64 " s", retry_after ?: "(null)",
                         reset ?: "(null)", usec, want_sec);
}

static void test_retry_after(void **state) {
        assert_int_equal(iso("1994-11-06T08:49:37Z"), NOW_1994);

        /* Delta-seconds. */
        expect_delay("120", NULL, NOW_1994, 120);
        expect_delay(" 120\t", NULL, NOW_1994, 120);
        expect_delay("0", NULL, NOW_1994, 0);
        expect_delay("000030", NULL, NOW_1994, 30);
        expect_delay("86400", NULL, NOW_1994, 86400);
        expect_delay("86401", NULL, NOW_1994, 86400);
        expect_delay("99999999999999999999999999999", NULL, NOW_1994, 86400);
        expect_delay("-5", NULL, NOW_1994, -1);
        expect_delay("+5", NULL, NOW_1994, -1);
        expect_delay("1.5", NULL, NOW_1994, -1);
        expect_delay("5s", NULL, NOW_1994, -1);
        expect_delay("5 5", NULL, NOW_1994, -1);
        expect_delay("", NULL, NOW_1994, -1);
        expect_delay("   ", NULL, NOW_1994, -1);
        expect_delay(NULL, NULL, NOW_1994, -1);

        /* HTTP-dates, in all three forms. */
        expect_delay("Sun, 06 Nov 1994 08:50:37 GMT", NULL, NOW_1994, 60);
        expect_delay("Sun, 06 Nov 1994 08:49:37 GMT", NULL, NOW_1994, 0);
        expect_delay("Sun, 06 Nov 1994 08:49:36 GMT", NULL, NOW_1994, 0);
        expect_delay("Sat, 01 Jan 1994 00:00:00 GMT", NULL, NOW_1994, 0);
        expect_delay("Mon, 07 Nov 1994 08:49:37 GMT", NULL, NOW_1994, 86400);
        expect_delay("Tue, 08 Nov 1994 08:49:37 GMT", NULL, NOW_1994, 86400);
        expect_delay("Sun, 6 Nov 1994 08:49:47 GMT", NULL, NOW_1994, 10);
        expect_delay("sun, 06 nov 1994 08:49:47 gmt", NULL, NOW_1994, 10);
        expect_delay("Sun, 06 Nov 1994 08:49:60 GMT", NULL, NOW_1994, 22);
        expect_delay("Sunday, 06-Nov-94 08:49:47 GMT", NULL, NOW_1994, 10);
        expect_delay("Sunday, 06-Nov-1994 08:49:47 GMT", NULL, NOW_1994, 10);
        expect_delay("Sun Nov  6 08:49:57 1994", NULL, NOW_1994, 20);
        expect_delay("Sun Nov 06 08:49:57 1994", NULL, NOW_1994, 20);
        /* RFC 9110: a two-digit year more than 50 years ahead is in the past. */
        int64_t now_2026 = iso("2026-06-01T00:00:00Z");
        expect_delay("Thursday, 01-Jan-76 00:00:00 GMT", NULL, now_2026, 86400); /* 2076 */
        expect_delay("Friday, 01-Jan-77 00:00:00 GMT", NULL, now_2026, 0);     /* 1977 */
        expect_delay("Monday, 01-Jun-26 00:01:00 GMT", NULL, now_2026, 60);
        /* Not dates. */
        expect_delay("Sun, 31 Feb 1994 08:49:37 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Foo 1994 08:49:37 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 1994 08:49:37", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 1994 08:49:37 CET", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 1994 24:00:00 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 1994 08:60:00 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 94 08:49:37 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun, 06 Nov 1994 08:49:37 GMT x", NULL, NOW_1994, -1);
        expect_delay("Sun,06 Nov 1994 08:49:37 GMT", NULL, NOW_1994, -1);
        expect_delay("Sundae, 06 Nov 1994 08:49:37 GMT", NULL, NOW_1994, -1);
        expect_delay("Sun Nov  6 08:49:57", NULL, NOW_1994, -1);
        expect_delay("Sunday, 06-Foo-94 08:49:47 GMT", NULL, NOW_1994, -1);
        expect_delay("Sunday, 06-Nov94 08:49:47 GMT", NULL, NOW_1994, -1);
        expect_delay("Sunday, 06-Nov-994 08:49:47 GMT", NULL, NOW_1994, -1);
        expect_delay("Sunday, 06-Nov- 94 08:49:47 GMT", NULL, NOW_1994, -1);
        expect_delay("1994-11-06T08:50:37Z", NULL, NOW_1994, -1);
        /* A far-off now: no overflow. */
        expect_delay("Sun, 06 Nov 1994 08:50:37 GMT", NULL, INT64_MIN, 86400);
        expect_delay("Sun, 06 Nov 1994 08:50:37 GMT", NULL, INT64_MAX, 0);
        expect_delay("Sunday, 06-Nov-94 08:50:37 GMT", NULL, INT64_MIN, -1); /* no century to pick */
        expect_delay("Sunday, 06-Nov-94 08:50:37 GMT", NULL, INT64_MAX, 0);

        /* ratelimit-reset, when Retry-After is absent or garbage. */
        expect_delay(NULL, "30", NOW_1994, 30);
        expect_delay("soon", " 30 ", NOW_1994, 30);
        expect_delay("", "30", NOW_1994, 30);
        expect_delay("10", "30", NOW_1994, 10);
        expect_delay(NULL, "999999", NOW_1994, 86400);
        /* An epoch time (some servers send one) rather than seconds. */
        char epoch[32];
        snprintf(epoch, sizeof(epoch), "%" PRId64, now_2026 + 100);
        expect_delay(NULL, epoch, now_2026, 100);
        snprintf(epoch, sizeof(epoch), "%" PRId64, now_2026 - 100);
        expect_delay(NULL, epoch, now_2026, 0);
        expect_delay(NULL, "-1", NOW_1994, -1);
        expect_delay(NULL, "x", NOW_1994, -1);
        expect_delay("x", "y", NOW_1994, -1);
        expect_delay(NULL, "", NOW_1994, -1);
}

/* ---- statuses ---- */

static void test_statuses(void **state) {
        static const char *const terminal[] = { "COMPLETED", "FAILED", "CANCELED", "CANCELLED",
                                                "completed", "Failed",  "canceled", "cAnCeLlEd" };
        static const char *const running[] = { "NEW", "QUEUED", "IN_PROGRESS", "new", "Queued", "in_progress" };
        static const char *const unknown[] = { "", "IN PROGRESS", "INPROGRESS", "COMPLETE", "COMPLETED ", "DONE",
                                               "PENDING" };

        for (size_t i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++) {
                assert_true(zuora_status_is_terminal(terminal[i]));
                assert_true(zuora_status_is_known(terminal[i]));
        }
        for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
                assert_false(zuora_status_is_terminal(running[i]));
                assert_true(zuora_status_is_known(running[i]));
        }
        for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
                assert_false(zuora_status_is_terminal(unknown[i]));
                assert_false(zuora_status_is_known(unknown[i]));
        }
        assert_false(zuora_status_is_terminal(NULL));
        assert_false(zuora_status_is_known(NULL));

        ZuoraJob j = { .id = (char *) "a", .progress = -1, .job_end_time = ZUORA_TIME_UNSET };
        assert_false(zuora_job_has_ended(&j));
        j.status = (char *) "IN_PROGRESS";
        assert_false(zuora_job_has_ended(&j));
        j.status = (char *) "canceled";
        assert_true(zuora_job_has_ended(&j));
        j.status = (char *) "SOMETHING_NEW";
        assert_false(zuora_job_has_ended(&j));
        j.job_end_time = 0; /* the epoch is a time too */
        assert_true(zuora_job_has_ended(&j));
        j.status = NULL;
        assert_true(zuora_job_has_ended(&j));
        assert_false(zuora_job_has_ended(NULL));
}

/* ---- requests ---- */

static void test_track_id(void **state) {
        uint8_t random[16];
        char buf[ZUORA_TRACK_ID_MAX];

        for (int i = 0; i < 16; i++)
                random[i] = (uint8_t) (i * 17);
        memset(buf, 'X', sizeof(buf));
        zuora_track_id(random, buf);
        assert_string_equal(buf, "refreshd-00112233445566778899aabbccddeeff");
        assert_int_equal(strlen(buf), 41);

        memset(random, 0xff, sizeof(random));
        zuora_track_id(random, buf);
        assert_string_equal(buf, "refreshd-ffffffffffffffffffffffffffffffff");
        assert_int_equal(strcspn(buf, ":;\"' "), strlen(buf));
}

static void test_job_request_body(void **state) {
        char *s;
        ZuoraJob j;

        s = zuora_job_request_body(ZUORA_TIME_UNSET);
        assert_string_equal(s, "{\"jobType\":\"REFRESH\"}");
        free(s);

        s = zuora_job_request_body(T_2026_12_06);
        assert_string_equal(s, "{\"jobType\":\"REFRESH\",\"scheduledRefreshTime\":\"2026-12-06T02:00:00Z\"}");
        free(s);
        assert_int_equal(iso("2026-12-06T02:00:00Z"), T_2026_12_06);

        s = zuora_job_request_body(0);
        assert_string_equal(s, "{\"jobType\":\"REFRESH\",\"scheduledRefreshTime\":\"1970-01-01T00:00:00Z\"}");
        free(s);

        /* What we send reads back as JSON (our own parser: it is no job, it has no id). */
        s = zuora_job_request_body(T_2026_12_06);
        assert_int_equal(zuora_parse_job(s, strlen(s), &j), -EBADMSG);
        int64_t last, next;
        assert_int_equal(zuora_parse_environment(s, strlen(s), &last, &next), -EBADMSG);
        free(s);

        errno = 0;
        assert_null(zuora_job_request_body(iso("9999-12-31T23:59:59Z") + 1));
        assert_int_equal(errno, ERANGE);
        assert_null(zuora_job_request_body(INT64_MAX));
        assert_null(zuora_job_request_body(INT64_MIN + 1));
}

static bool key_chars_ok(const char *s) {
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s) &&
                strlen(s) < 255;
}

static void test_idempotency_key(void **state) {
        char *a, *b, *c;
        char long_id[300];

        a = zuora_idempotency_key("8a8082c45ab4f0b9015ab5086c060e29", T_2026_12_06);
        assert_string_equal(a, "refreshd-8a8082c45ab4f0b9015ab5086c060e29-20261206T020000Z");
        free(a);
        a = zuora_idempotency_key("11111111-1111-1111-1111-111111111111", T_2026_12_06 + 59);
        assert_string_equal(a, "refreshd-11111111-1111-1111-1111-111111111111-20261206T020059Z");
        free(a);

        /* Stable: the same environment and slot give the same key. */
        a = zuora_idempotency_key("uat", T_2026_12_06);
        b = zuora_idempotency_key("uat", T_2026_12_06);
        c = zuora_idempotency_key("uat", T_2026_12_06 + 60);
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
        free(a);
        free(b);
        free(c);

        /* Other ids are hashed, stably, into the same alphabet. */
        static const char *const weird[] = { "", "a_b", "a b", "a:b", "caf\xC3\xA9", "a\"b'c;d", "a/b" };
        for (size_t i = 0; i < sizeof(weird) / sizeof(weird[0]); i++) {
                a = zuora_idempotency_key(weird[i], T_2026_12_06);
                b = zuora_idempotency_key(weird[i], T_2026_12_06);
                assert_non_null(a);
                assert_string_equal(a, b);
                assert_true(key_chars_ok(a));
                assert_int_equal(strlen(a), strlen("refreshd-x0123456789abcdef-20261206T020000Z"));
                assert_memory_equal(a, "refreshd-x", 10);
                free(b);
                if (i > 0) {
                        b = zuora_idempotency_key(weird[i - 1], T_2026_12_06);
                        assert_string_not_equal(a, b);
                        free(b);
                }
                free(a);
        }

        memset(long_id, 'a', 128);
        long_id[128] = 0;
        a = zuora_idempotency_key(long_id, T_2026_12_06);
        assert_true(key_chars_ok(a));
        assert_int_equal(strlen(a), 9 + 128 + 1 + 16);
        free(a);
        memset(long_id, 'a', 299);
        long_id[299] = 0;
        a = zuora_idempotency_key(long_id, T_2026_12_06);
        assert_true(key_chars_ok(a));
        assert_memory_equal(a, "refreshd-x", 10);
        free(a);

        errno = 0;
        assert_null(zuora_idempotency_key("uat", INT64_MAX));
        assert_int_equal(errno, ERANGE);
        assert_null(zuora_idempotency_key("uat", INT64_MIN + 1));
        assert_null(zuora_idempotency_key("uat", iso("0000-01-01T00:00:00Z") - 1));
        a = zuora_idempotency_key("uat", iso("0000-01-01T00:00:00Z"));
        assert_string_equal(a, "refreshd-uat-00000101T000000Z");
        free(a);
        a = zuora_idempotency_key("uat", iso("9999-12-31T23:59:59Z"));
        assert_string_equal(a, "refreshd-uat-99991231T235959Z");
        free(a);
}

/* Decodes application/x-www-form-urlencoded VALUE (up to '&'). */
static char *form_decode(const char *s, size_t n) {
        char *out = malloc(n + 1), *p = out;

        assert_non_null(out);
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        unsigned v;
                        assert_true(i + 2 < n + 1);
                        assert_int_equal(sscanf(s + i + 1, "%2x", &v), 1);
                        *p++ = (char) v;
                        i += 2;
                } else if (s[i] == '+')
                        *p++ = ' ';
                else
                        *p++ = s[i];
        }
        *p = 0;
        return out;
}

static void expect_form_roundtrip(const char *id, const char *secret) {
        static const char a[] = "grant_type=client_credentials&client_id=";
        char *body = zuora_token_request_body(id, secret), *amp, *got;

        assert_non_null(body);
        assert_memory_equal(body, a, strlen(a));
        amp = strstr(body + strlen(a), "&client_secret=");
        assert_non_null(amp);
        assert_null(strchr(amp + 1, '&'));
        got = form_decode(body + strlen(a), (size_t) (amp - body) - strlen(a));
        assert_string_equal(got, id);
        free(got);
        got = form_decode(amp + 15, strlen(amp + 15));
        assert_string_equal(got, secret);
        free(got);
        /* Nothing but unreserved characters, '%' escapes and the separators. */
        for (const char *p = body; *p; p++)
                assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%&=", *p));
        explicit_bzero(body, strlen(body));
        free(body);
}

static void test_token_request_body(void **state) {
        char *s;

        s = zuora_token_request_body("6f3a-client", "s3cr3t");
        assert_string_equal(s, "grant_type=client_credentials&client_id=6f3a-client&client_secret=s3cr3t");
        free(s);

        s = zuora_token_request_body("a b&c=d+e", "p/w?x#y%z~._-\xC3\xA9\n");
        assert_string_equal(s, "grant_type=client_credentials&client_id=a%20b%26c%3Dd%2Be"
                               "&client_secret=p%2Fw%3Fx%23y%25z~._-%C3%A9%0A");
        free(s);

        s = zuora_token_request_body("", "");
        assert_string_equal(s, "grant_type=client_credentials&client_id=&client_secret=");
        free(s);

        char all[256];
        for (int i = 1; i < 256; i++)
                all[i - 1] = (char) i;
        all[255] = 0;
        expect_form_roundtrip(all, all);
        expect_form_roundtrip("plain", "with space and + plus");
}

static void test_parse_time(void **state) {
        int64_t t = 42;

        assert_int_equal(zuora_parse_time("2019-08-24T14:15:22Z", &t), 0);
        assert_int_equal(t, T_2019_08_24);
        assert_int_equal(zuora_parse_time("2019-08-24T14:15:22.999999Z", &t), 0);
        assert_int_equal(t, T_2019_08_24);
        assert_int_equal(zuora_parse_time("2019-08-24T07:15:22-07:00", &t), 0);
        assert_int_equal(t, T_2019_08_24);
        assert_int_equal(zuora_parse_time("2019-08-24T19:45:22+0530", &t), 0);
        assert_int_equal(t, T_2019_08_24);
        assert_int_equal(zuora_parse_time("2019-08-24 14:15:22", &t), 0);
        assert_int_equal(t, T_2019_08_24);
        assert_int_equal(zuora_parse_time("1970-01-01T00:00:00Z", &t), 0);
        assert_int_equal(t, 0);

        t = 42;
        assert_true(zuora_parse_time("", &t) < 0);
        assert_true(zuora_parse_time(NULL, &t) < 0);
        assert_true(zuora_parse_time("yesterday", &t) < 0);
        assert_true(zuora_parse_time("2019-02-29T00:00:00Z", &t) < 0);
        assert_true(zuora_parse_time("2019-08-24T14:15:22Zjunk", &t) < 0);
        assert_true(zuora_parse_time("1566656122", &t) < 0);
        assert_int_equal(t, 42);
}

/* ---- URLs, outcomes, words ---- */

static void test_urls(void **state) {
        static const struct {
                ZuoraEndpoint e;
                const char *want;
        } cases[] = {
                { ZUORA_ENDPOINT_TOKEN, "https://z/v1/oauth/token" },
                { ZUORA_ENDPOINT_ENVIRONMENT, "https://z/v1/test-environments/E" },
                { ZUORA_ENDPOINT_JOBS, "https://z/v1/test-environments/E/jobs" },
                { ZUORA_ENDPOINT_JOB, "https://z/v1/test-environments/E/jobs/J" },
                { ZUORA_ENDPOINT_JOB_ACTIONS, "https://z/v1/test-environments/E/jobs/J/actions" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *u = zuora_url("https://z/v1", cases[i].e, "E", "J");
                assert_string_equal(u, cases[i].want);
                free(u);
        }
        assert_null(zuora_url("https://z", _ZUORA_ENDPOINT_MAX, "E", "J"));
}

static void test_outcomes(void **state) {
        assert_int_equal(zuora_status_outcome("COMPLETED"), ZUORA_OUTCOME_COMPLETED);
        assert_int_equal(zuora_status_outcome("completed"), ZUORA_OUTCOME_COMPLETED);
        assert_int_equal(zuora_status_outcome("FAILED"), ZUORA_OUTCOME_FAILED);
        assert_int_equal(zuora_status_outcome("CANCELED"), ZUORA_OUTCOME_CANCELED);
        assert_int_equal(zuora_status_outcome("Cancelled"), ZUORA_OUTCOME_CANCELED);
        assert_int_equal(zuora_status_outcome("IN_PROGRESS"), ZUORA_OUTCOME_OTHER);
        assert_int_equal(zuora_status_outcome("COMPLETED_LATER"), ZUORA_OUTCOME_OTHER);
        assert_int_equal(zuora_status_outcome(NULL), ZUORA_OUTCOME_OTHER);
}

static const char *answer(ZuoraAnswer a) {
        static char buf[700];
        return zuora_answer_text(&a, buf, sizeof(buf));
}

static void test_answer_text(void **state) {
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_REAUTH, .status = 401 }),
                            "Zuora refused the credentials (401): check client_id/client_secret");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_REAUTH, .status = 401, .text = "bad" }),
                            "Zuora refused the credentials (401: bad): check client_id/client_secret");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_FORBIDDEN, .status = 403 }),
                            "Zuora answered 403 Forbidden (no reason given): the OAuth client's user needs the "
                            "\"Refresh Central Sandbox\" (or \"Refresh Developer Sandbox\") permission");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_PERIOD, .status = 403, .text = "Only" }),
                            "Zuora refused it: Only");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_FAILED, .status = 400 }),
                            "Zuora answered 400: (no reason given)");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_RETRY, .status = 503, .text = "busy" }),
                            "Zuora answered 503: busy");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_RETRY, .status = 503 }),
                            "Zuora answered 503");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_OK, .status = 200, .malformed = true }),
                            "Zuora answered 200, but with no body");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_OK, .status = 201, .malformed = true,
                                                   .body_size = 3 }),
                            "Zuora answered 201, but the body is not a job (not JSON, cut short, or without an id)");
        assert_string_equal(answer((ZuoraAnswer) { .transport_error = true, .text = "Connection refused" }),
                            "Connection refused");
        assert_string_equal(answer((ZuoraAnswer) { .token_failed = true, .status = 500 }),
                            "no token: the token endpoint failed");
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_RETRY }), "no answer");
        /* The token endpoint's own 401 is about the credentials, not "no token". */
        assert_string_equal(answer((ZuoraAnswer) { .verdict = ZUORA_VERDICT_REAUTH, .status = 401, .token_failed = true }),
                            "Zuora refused the credentials (401): check client_id/client_secret");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_job_seed),
                cmocka_unit_test(test_job_minimal_and_nulls),
                cmocka_unit_test(test_job_wrong_types),
                cmocka_unit_test(test_job_progress),
                cmocka_unit_test(test_job_ids),
                cmocka_unit_test(test_job_malformed),
                cmocka_unit_test(test_job_depth),
                cmocka_unit_test(test_job_every_prefix),
                cmocka_unit_test(test_job_mutations),
                cmocka_unit_test(test_job_list_shapes),
                cmocka_unit_test(test_job_list_large_and_prefixes),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_environment),
                cmocka_unit_test(test_error_text_shapes),
                cmocka_unit_test(test_error_text_sanitising),
                cmocka_unit_test(test_error_text_caps),
                cmocka_unit_test(test_classify),
                cmocka_unit_test(test_verdict_to_string),
                cmocka_unit_test(test_retry_after),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_outcomes),
                cmocka_unit_test(test_answer_text),
                cmocka_unit_test(test_statuses),
                cmocka_unit_test(test_track_id),
                cmocka_unit_test(test_job_request_body),
                cmocka_unit_test(test_idempotency_key),
                cmocka_unit_test(test_token_request_body),
                cmocka_unit_test(test_parse_time),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
