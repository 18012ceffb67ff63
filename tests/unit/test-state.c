/* SPDX-License-Identifier: MIT */
/*
 * state.json: the exact text written for a full state and an empty one,
 * round trips, null and absent keys, every kind of damage the loader must
 * refuse (with a message that names the place), every prefix of a valid
 * file, and the file operations: an atomic save whose failures (no
 * directory, a rename that cannot happen, a file size limit, a full tmpfs)
 * leave the old file byte for byte and no temp file, the loader's size
 * limit, and moving a damaged file aside under a name that never replaces
 * an earlier one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "intentlog.h"
#include "state.h"
#include "tz.h"

#define T(s) iso(s)

static int64_t iso(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

static char *xstrdup(const char *s) {
        char *p = strdup(s);
        assert_non_null(p);
        return p;
}

/* ---- files ---- */

static char *dir_new(void) {
        const char *base = getenv("TMPDIR");
        char *d;

        assert_true(asprintf(&d, "%s/test-state.XXXXXX", base && *base ? base : "/tmp") > 0);
        assert_non_null(mkdtemp(d));
        return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void dir_free(char *d) {
        assert_int_equal(nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        free(d);
}

static char *path_in(const char *dir, const char *name) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static void write_file(const char *dir, const char *name, const char *text) {
        char *p = path_in(dir, name);
        FILE *f = fopen(p, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
        free(p);
}

/* The contents of DIR/NAME, or NULL when there is no such file. */
static char *read_file(const char *dir, const char *name) {
        char *p = path_in(dir, name), *buf = NULL;
        size_t n = 0;
        FILE *f = fopen(p, "re");

        free(p);
        if (!f)
                return NULL;
        FILE *m = open_memstream(&buf, &n);
        assert_non_null(m);
        for (int c; (c = fgetc(f)) != EOF;)
                fputc(c, m);
        fclose(f);
        assert_int_equal(fclose(m), 0);
        return buf;
}

/* Entries of DIR whose names start with PREFIX. */
static unsigned count_files(const char *dir, const char *prefix) {
        DIR *d = opendir(dir);
        unsigned n = 0;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                        n++;
        closedir(d);
        return n;
}

#define TEMP_PREFIX "." STATE_FILE_NAME "."

/* ---- states ---- */

static char *format(const State *s) {
        char *text = NULL;
        size_t size = 0;

        assert_int_equal(state_format(s, &text, &size), 0);
        assert_int_equal(strlen(text), size);
        return text;
}

static State *parse(const char *text) {
        State *s = NULL;
        char *m = NULL;
        int r = state_parse(text, strlen(text), &s, &m);

        if (r < 0)
                fail_msg("refused: %s (%s)\n%s", strerror(-r), m ? m : "no message", text);
        assert_null(m);
        return s;
}

/* TEXT is refused, and the message contains WANT. */
static void expect_bad_n(const char *text, size_t size, const char *want) {
        State *s = NULL;
        char *m = NULL;
        int r = state_parse(text, size, &s, &m);

        if (r != -EBADMSG)
                fail_msg("want -EBADMSG ('%s'), got %d for:\n%.*s", want, r, (int) size, text);
        assert_null(s);
        assert_non_null(m);
        if (!strstr(m, want))
                fail_msg("want a message with '%s', got '%s' for:\n%.*s", want, m, (int) size, text);
        free(m);
}

static void expect_bad(const char *text, const char *want) {
        expect_bad_n(text, strlen(text), want);
}

/* The body of environment "uat" is BODY. */
static void expect_bad_env(const char *body, const char *want) {
        char *text;

        assert_true(asprintf(&text, "{\"version\":1,\"environments\":{\"uat\":%s}}", body) > 0);
        expect_bad(text, want);
        free(text);
}

static StateEnv *env_get(State *s, const char *name, const char *id) {
        StateEnv *e = NULL;

        assert_int_equal(state_get(s, name, id, &e), 0);
        assert_non_null(e);
        return e;
}

static StateJob *job_new(
                const char *id, const char *url, const char *status, int progress, int64_t submitted_at, int64_t slot) {
        StateJob *j = calloc(1, sizeof(StateJob));

        assert_non_null(j);
        *j = (StateJob) {
                .id = id ? xstrdup(id) : NULL,
                .polling_url = url ? xstrdup(url) : NULL,
                .status = status ? xstrdup(status) : NULL,
                .progress = progress,
                .submitted_at = submitted_at,
                .slot = slot,
        };
        return j;
}

static StateLastJob *last_job_new(const char *id, const char *status, const char *message, int64_t ended_at,
                                  int64_t slot) {
        StateLastJob *j = calloc(1, sizeof(StateLastJob));

        assert_non_null(j);
        *j = (StateLastJob) {
                .id = id ? xstrdup(id) : NULL,
                .status = status ? xstrdup(status) : NULL,
                .message = message ? xstrdup(message) : NULL,
                .ended_at = ended_at,
                .slot = slot,
        };
        return j;
}

/* Every field set in "uat"; "dev" as after a failed submission; "new" just created. */
static State *full_state(void) {
        State *s = state_new();
        StateEnv *e;

        assert_non_null(s);
        s->log_id = UINT64_C(0xa1b2c3d4e5f60718);
        s->log_seq = 7;
        e = env_get(s, "uat", "8ad09be48db5aa7b");
        e->since = T("2026-11-01T00:00:00Z");
        e->last_slot = T("2026-12-06T02:00:00Z");
        e->last_submitted = T("2026-11-29T02:00:01Z");
        e->intent_slot = T("2026-12-06T02:00:00Z");
        e->intent_track_id = xstrdup("b1946ac9-2d1c-4f1c-9b57-3d1e5e2a3c11");
        e->intent_sent_at = T("2026-12-06T02:00:00Z");
        e->deferred_until = T("2026-12-07T02:00:00Z");
        e->zuora_last_refresh = T("2026-11-29T02:41:17Z");
        e->zuora_next_refresh = T("2026-12-13T02:00:00Z");
        e->job = job_new("2c92c0f9", "https://rest.zuora.com/jobs/2c92c0f9", "IN_PROGRESS", 45,
                         T("2026-12-06T02:00:01Z"), T("2026-12-06T02:00:00Z"));
        e->last_job = last_job_new("2c92c0f8", "FAILED", "quota \"exceeded\"\n\ttry later",
                                   T("2026-11-29T03:10:00Z"), T("2026-11-29T02:00:00Z"));

        e = env_get(s, "dev", "8ad0");
        e->last_slot = T("2026-12-06T02:00:00Z");
        e->last_job = last_job_new(
                        NULL, "SUBMIT_FAILED", "HTTP 400", T("2026-12-06T02:00:03Z"), STATE_TIME_UNSET);

        e = env_get(s, "new", "8ad1");
        e->job = job_new("j0", "/jobs/j0", NULL, 0, T("2026-12-06T02:00:01Z"), STATE_TIME_UNSET);
        return s;
}

static const char full_text[] =
        "{\n"
        "  \"version\": 1,\n"
        "  \"intent_log\": {\n"
        "    \"id\": \"a1b2c3d4e5f60718\",\n"
        "    \"seq\": 7\n"
        "  },\n"
        "  \"environments\": {\n"
        "    \"uat\": {\n"
        "      \"id\": \"8ad09be48db5aa7b\",\n"
        "      \"since\": \"2026-11-01T00:00:00Z\",\n"
        "      \"last_slot\": \"2026-12-06T02:00:00Z\",\n"
        "      \"last_submitted\": \"2026-11-29T02:00:01Z\",\n"
        "      \"intent\": {\n"
        "        \"slot\": \"2026-12-06T02:00:00Z\",\n"
        "        \"track_id\": \"b1946ac9-2d1c-4f1c-9b57-3d1e5e2a3c11\",\n"
        "        \"sent_at\": \"2026-12-06T02:00:00Z\"\n"
        "      },\n"
        "      \"deferred_until\": \"2026-12-07T02:00:00Z\",\n"
        "      \"zuora_last_refresh\": \"2026-11-29T02:41:17Z\",\n"
        "      \"zuora_next_refresh\": \"2026-12-13T02:00:00Z\",\n"
        "      \"job\": {\n"
        "        \"id\": \"2c92c0f9\",\n"
        "        \"polling_url\": \"https://rest.zuora.com/jobs/2c92c0f9\",\n"
        "        \"status\": \"IN_PROGRESS\",\n"
        "        \"progress\": 45,\n"
        "        \"submitted_at\": \"2026-12-06T02:00:01Z\",\n"
        "        \"slot\": \"2026-12-06T02:00:00Z\"\n"
        "      },\n"
        "      \"last_job\": {\n"
        "        \"id\": \"2c92c0f8\",\n"
        "        \"status\": \"FAILED\",\n"
        "        \"message\": \"quota \\\"exceeded\\\"\\n\\ttry later\",\n"
        "        \"ended_at\": \"2026-11-29T03:10:00Z\",\n"
        "        \"slot\": \"2026-11-29T02:00:00Z\"\n"
        "      }\n"
        "    },\n"
        "    \"dev\": {\n"
        "      \"id\": \"8ad0\",\n"
        "      \"since\": null,\n"
        "      \"last_slot\": \"2026-12-06T02:00:00Z\",\n"
        "      \"last_submitted\": null,\n"
        "      \"intent\": null,\n"
        "      \"deferred_until\": null,\n"
        "      \"zuora_last_refresh\": null,\n"
        "      \"zuora_next_refresh\": null,\n"
        "      \"job\": null,\n"
        "      \"last_job\": {\n"
        "        \"id\": null,\n"
        "        \"status\": \"SUBMIT_FAILED\",\n"
        "        \"message\": \"HTTP 400\",\n"
        "        \"ended_at\": \"2026-12-06T02:00:03Z\",\n"
        "        \"slot\": null\n"
        "      }\n"
        "    },\n"
        "    \"new\": {\n"
        "      \"id\": \"8ad1\",\n"
        "      \"since\": null,\n"
        "      \"last_slot\": null,\n"
        "      \"last_submitted\": null,\n"
        "      \"intent\": null,\n"
        "      \"deferred_until\": null,\n"
        "      \"zuora_last_refresh\": null,\n"
        "      \"zuora_next_refresh\": null,\n"
        "      \"job\": {\n"
        "        \"id\": \"j0\",\n"
        "        \"polling_url\": \"/jobs/j0\",\n"
        "        \"status\": null,\n"
        "        \"progress\": 0,\n"
        "        \"submitted_at\": \"2026-12-06T02:00:01Z\",\n"
        "        \"slot\": null\n"
        "      },\n"
        "      \"last_job\": null\n"
        "    }\n"
        "  }\n"
        "}\n";

static void assert_str_or_null(const char *a, const char *b) {
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

static void assert_env_equal(const StateEnv *a, const StateEnv *b) {
        assert_string_equal(a->name, b->name);
        assert_str_or_null(a->id, b->id);
        assert_int_equal(a->last_slot, b->last_slot);
        assert_int_equal(a->last_submitted, b->last_submitted);
        assert_int_equal(a->intent_slot, b->intent_slot);
        assert_str_or_null(a->intent_track_id, b->intent_track_id);
        assert_int_equal(a->intent_sent_at, b->intent_sent_at);
        assert_int_equal(a->deferred_until, b->deferred_until);
        assert_int_equal(a->zuora_last_refresh, b->zuora_last_refresh);
        assert_int_equal(a->zuora_next_refresh, b->zuora_next_refresh);
        assert_int_equal(!a->job, !b->job);
        if (a->job) {
                assert_str_or_null(a->job->id, b->job->id);
                assert_str_or_null(a->job->polling_url, b->job->polling_url);
                assert_str_or_null(a->job->status, b->job->status);
                assert_int_equal(a->job->progress, b->job->progress);
                assert_int_equal(a->job->submitted_at, b->job->submitted_at);
                assert_int_equal(a->job->slot, b->job->slot);
        }
        assert_int_equal(!a->last_job, !b->last_job);
        if (a->last_job) {
                assert_str_or_null(a->last_job->id, b->last_job->id);
                assert_str_or_null(a->last_job->status, b->last_job->status);
                assert_str_or_null(a->last_job->message, b->last_job->message);
                assert_int_equal(a->last_job->ended_at, b->last_job->ended_at);
                assert_int_equal(a->last_job->slot, b->last_job->slot);
        }
}

static void assert_state_equal(const State *a, const State *b) {
        assert_int_equal(a->log_id, b->log_id);
        assert_int_equal(a->log_seq, b->log_seq);
        assert_int_equal(a->n_envs, b->n_envs);
        for (size_t i = 0; i < a->n_envs; i++)
                assert_env_equal(&a->envs[i], &b->envs[i]);
}

static void assert_env_unset(const StateEnv *e) {
        assert_int_equal(e->last_slot, STATE_TIME_UNSET);
        assert_int_equal(e->last_submitted, STATE_TIME_UNSET);
        assert_int_equal(e->intent_slot, STATE_TIME_UNSET);
        assert_null(e->intent_track_id);
        assert_int_equal(e->intent_sent_at, STATE_TIME_UNSET);
        assert_int_equal(e->deferred_until, STATE_TIME_UNSET);
        assert_int_equal(e->zuora_last_refresh, STATE_TIME_UNSET);
        assert_int_equal(e->zuora_next_refresh, STATE_TIME_UNSET);
        assert_null(e->job);
        assert_null(e->last_job);
}

/* ---- format and parse ---- */

static void test_round_trip_full(void **state) {
        State *s = full_state(), *back;
        char *text = format(s), *again;

        assert_string_equal(text, full_text);
        back = parse(text);
        assert_state_equal(s, back);
        again = format(back);
        assert_string_equal(again, text);

        free(again);
        free(text);
        state_free(back);
        state_free(s);
}

static void test_round_trip_empty(void **state) {
        State *s = state_new(), *back;
        char *text;

        assert_non_null(s);
        text = format(s);
        assert_string_equal(text, "{\n  \"version\": 1,\n  \"environments\": {\n\n  }\n}\n");
        back = parse(text);
        assert_int_equal(back->n_envs, 0);
        assert_null(back->envs);

        free(text);
        state_free(back);
        state_free(s);
}

static void test_nulls_and_absent_keys(void **state) {
        State *s;

        /* Explicit nulls, and absent keys: both mean "unset". */
        s = parse("{\"version\": 1, \"environments\": {\"a\": {\"id\": null, \"last_slot\": null, "
                  "\"last_submitted\": null, \"intent\": null, \"deferred_until\": null, "
                  "\"zuora_last_refresh\": null, \"zuora_next_refresh\": null, \"job\": null, "
                  "\"last_job\": null}, \"b\": {}}}");
        assert_int_equal(s->n_envs, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_null(s->envs[i].id);
                assert_env_unset(&s->envs[i]);
        }
        state_free(s);

        /* Optional keys of the sub-objects. */
        s = parse("{\"version\": 1, \"environments\": {\"a\": {"
                  "\"intent\": {\"slot\": \"2026-12-06T02:00:00Z\"},"
                  "\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:01Z\","
                  "        \"status\": null, \"progress\": null, \"slot\": null},"
                  "\"last_job\": {\"ended_at\": \"2026-12-06T03:00:00Z\"}}}}");
        StateEnv *e = &s->envs[0];
        assert_int_equal(e->intent_slot, T("2026-12-06T02:00:00Z"));
        assert_null(e->intent_track_id);
        assert_int_equal(e->intent_sent_at, STATE_TIME_UNSET);
        assert_string_equal(e->job->id, "j");
        assert_string_equal(e->job->polling_url, "u");
        assert_null(e->job->status);
        assert_int_equal(e->job->progress, -1);
        assert_int_equal(e->job->slot, STATE_TIME_UNSET);
        assert_null(e->last_job->id);
        assert_null(e->last_job->status);
        assert_null(e->last_job->message);
        assert_int_equal(e->last_job->slot, STATE_TIME_UNSET);

        /* And written back as nulls, which read the same. */
        char *text = format(s), *again;
        assert_non_null(strstr(text, "\"track_id\": null"));
        assert_non_null(strstr(text, "\"progress\": null"));
        State *back = parse(text);
        again = format(back);
        assert_string_equal(text, again);
        free(again);
        free(text);
        state_free(back);
        state_free(s);
}

static void test_unknown_keys_ignored(void **state) {
        State *s = parse("{\"comment\": \"hand edited\", \"version\": 1, \"future\": [1, {\"a\": [[[]]]}],"
                         " \"environments\": {\"uat\": {\"id\": \"x\", \"colour\": \"blue\", \"nested\": {\"job\": 1},"
                         "  \"intent\": {\"slot\": \"2026-12-06T02:00:00Z\", \"why\": true},"
                         "  \"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:01Z\","
                         "           \"eta\": 3.5},"
                         "  \"last_job\": {\"ended_at\": \"2026-12-06T03:00:00Z\", \"extra\": null}}}}");

        assert_int_equal(s->n_envs, 1);
        assert_string_equal(s->envs[0].id, "x");
        assert_int_equal(s->envs[0].intent_slot, T("2026-12-06T02:00:00Z"));
        assert_string_equal(s->envs[0].job->id, "j");
        assert_non_null(s->envs[0].last_job);

        /* Dropped on the next write. */
        char *text = format(s);
        assert_null(strstr(text, "colour"));
        free(text);
        state_free(s);

        /* Comments are tolerated, as yajl_tree_parse() allows them. */
        s = parse("/* hand edited */ {\"version\": 1, // v1\n \"environments\": {}}");
        assert_int_equal(s->n_envs, 0);
        state_free(s);
}

static void test_times_normalised(void **state) {
        State *s = parse("{\"version\": 1, \"environments\": {\"a\": {"
                         "\"last_slot\": \"2026-12-06T03:00:00+01:00\", \"last_submitted\": \"2026-12-06T02:00:00.75Z\","
                         "\"deferred_until\": \"2026-12-07\"}}}");
        char *text = format(s);

        assert_non_null(strstr(text, "\"last_slot\": \"2026-12-06T02:00:00Z\""));
        assert_non_null(strstr(text, "\"last_submitted\": \"2026-12-06T02:00:00Z\""));
        assert_non_null(strstr(text, "\"deferred_until\": \"2026-12-07T00:00:00Z\""));
        free(text);
        state_free(s);
}

static void test_environment_order(void **state) {
        static const char *const names[] = { "zeta", "alpha", "mid", "Beta", "a.b" };
        State *s = state_new(), *back;
        char *text;

        for (size_t i = 0; i < 5; i++)
                env_get(s, names[i], "id");
        text = format(s);
        back = parse(text);
        assert_int_equal(back->n_envs, 5);
        for (size_t i = 0; i < 5; i++)
                assert_string_equal(back->envs[i].name, names[i]);

        free(text);
        state_free(back);
        state_free(s);
}

static void test_strings(void **state) {
        State *s = state_new(), *back;
        StateEnv *e = env_get(s, "ünïcode \"env\"\n", "id\x01\x7f");
        char *text;

        /* Not UTF-8 (a stray byte, an overlong '/', a surrogate, a cut sequence): each bad byte becomes
         * U+FFFD, since yajl would write it as it is and the loader would then refuse the file. */
        e->last_job = last_job_new(
                        "\xff", "a\xc0\xaf" "b", "\xed\xa0\x80 \xe2\x82", T("2026-12-06T00:00:00Z"), STATE_TIME_UNSET);
        text = format(s);
        back = parse(text);
        assert_string_equal(back->envs[0].name, "ünïcode \"env\"\n");
        assert_string_equal(back->envs[0].id, "id\x01\x7f");
        assert_string_equal(back->envs[0].last_job->id, "\xef\xbf\xbd");
        assert_string_equal(back->envs[0].last_job->status, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
        assert_string_equal(back->envs[0].last_job->message,
                            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");

        free(text);
        state_free(back);
        state_free(s);
}

static void test_format_refuses_invalid(void **state) {
        State *s = state_new();
        StateEnv *e = env_get(s, "a", "id");
        char *text = NULL;

        /* What the loader would refuse is not written. */
        e->job = job_new(NULL, "u", NULL, -1, T("2026-12-06T00:00:00Z"), STATE_TIME_UNSET);
        assert_int_equal(state_format(s, &text, NULL), -EINVAL);
        e->job = state_job_free(e->job);
        e->job = job_new("j", NULL, NULL, -1, T("2026-12-06T00:00:00Z"), STATE_TIME_UNSET);
        assert_int_equal(state_format(s, &text, NULL), -EINVAL);
        e->job->polling_url = xstrdup("u");
        e->job->submitted_at = STATE_TIME_UNSET;
        assert_int_equal(state_format(s, &text, NULL), -EINVAL);
        e->job = state_job_free(e->job);
        e->last_job = last_job_new("j", "COMPLETED", NULL, STATE_TIME_UNSET, STATE_TIME_UNSET);
        assert_int_equal(state_format(s, &text, NULL), -EINVAL);
        e->last_job = state_last_job_free(e->last_job);
        e->last_slot = INT64_MAX; /* no year to write it in */
        assert_int_equal(state_format(s, &text, NULL), -EINVAL);
        assert_null(text);

        /* A negative progress other than -1 is "unknown" too. */
        e->last_slot = STATE_TIME_UNSET;
        e->job = job_new("j", "u", NULL, -7, T("2026-12-06T00:00:00Z"), STATE_TIME_UNSET);
        text = format(s);
        assert_non_null(strstr(text, "\"progress\": null"));
        free(text);
        state_free(s);
}

/* ---- a file of an earlier version ---- */

/* tests/unit/data/state-0.1.0.json was written by refreshd 0.1.0 (main at
 * 548b37b, before state.json was read and written through one field
 * table): it loads, means what it meant, and is written back byte for byte. */
static void test_earlier_file_loads(void **state) {
        const char *file = __FILE__, *slash = strrchr(file, '/'), *data = getenv("TEST_DATA");
        char *path, *text = NULL, *again = NULL;
        size_t size = 0, n;
        FILE *f;
        State *s;

        if (data)
                assert_true(asprintf(&path, "%s/state-0.1.0.json", data) > 0);
        else
                assert_true(asprintf(&path, "%.*s/data/state-0.1.0.json", slash ? (int) (slash - file) : 1,
                                     slash ? file : ".") > 0);
        f = fopen(path, "re");
        assert_non_null(f);
        FILE *m = open_memstream(&text, &size);
        for (int c; (c = fgetc(f)) != EOF;)
                fputc(c, m);
        fclose(f);
        fclose(m);
        free(path);

        s = parse(text);
        assert_int_equal(s->n_envs, 3);
        assert_int_equal(s->log_id, 0x1f2e3d4c5b6a7988ULL);
        assert_int_equal(s->log_seq, 17);
        StateEnv *uat = state_find(s, "uat"), *dev = state_find(s, "dev-sandbox"), *eu = state_find(s, "eu-uat");
        assert_string_equal(uat->id, "11111111-1111-1111-1111-111111111111");
        assert_int_equal(uat->last_submitted, T("2026-12-06T03:00:00Z"));
        assert_string_equal(uat->job->status, "IN_PROGRESS");
        assert_int_equal(uat->job->progress, 45);
        assert_int_equal(uat->job->slot, T("2026-12-06T03:00:00Z"));
        assert_string_equal(uat->last_job->status, "COMPLETED");
        assert_null(uat->last_job->message);
        assert_int_equal(uat->intent_slot, STATE_TIME_UNSET);
        assert_int_equal(dev->intent_slot, T("2026-12-07T01:30:00Z"));
        assert_string_equal(dev->intent_track_id, "refreshd-0123456789abcdef0123456789abcdef");
        assert_null(dev->job);
        assert_null(dev->last_job->id);
        assert_string_equal(dev->last_job->status, "SUBMIT_FAILED");
        assert_int_equal(eu->deferred_until, T("2026-12-08T09:00:00Z"));

        assert_int_equal(state_format(s, &again, &n), 0);
        assert_true(size == n + 1 && text[n] == '\n');
        assert_memory_equal(again, text, n);
        free(again);
        free(text);
        state_free(s);
}

/* ---- what the loader refuses ---- */

static void test_not_json(void **state) {
        expect_bad("", "line 1, column 1: not JSON: premature EOF");
        expect_bad("   \n", "line 2, column 1: not JSON: premature EOF");
        expect_bad("nope", "line 1, column 2: not JSON: invalid string");
        expect_bad("{\"version\": 1,\n \"environments\": {}} {}", "line 2, column 23: not JSON: trailing garbage");
        expect_bad("{\"version\": 1,\n \"environments\": {,}}", "line 2, column 20: not JSON: invalid object key");
        expect_bad("{\"version\": 1, \"environments\": {\"a\": {\"id\": \"\xff\"}}}", "not JSON: invalid bytes in UTF8");
        expect_bad("{\"version\": 1, \"environments\": {\"a\": {\"id\": \"x\ny\"}}}", "line 1, column 47: not JSON");
        expect_bad_n("{\"version\": 1,\n  \"environments\": {}\0}", 37, "line 2, column 21: not JSON: NUL byte");
        expect_bad_n("{\"version\": 1, /* \0 */ \"environments\": {}}", 42, "line 1, column 19: not JSON: NUL byte");

        /* Nesting is bounded, even in keys we do not know. */
        char deep[300];
        size_t n = sprintf(deep, "{\"version\": 1, \"environments\": {}, \"x\": ");
        memset(deep + n, '[', 100);
        deep[n + 100] = 0;
        expect_bad(deep, "line 1, column 105: not JSON: nested too deeply");
        memset(deep + n, '[', 60);
        memset(deep + n + 60, ']', 60);
        strcpy(deep + n + 120, "}");
        state_free(parse(deep));
}

static void test_wrong_shape(void **state) {
        expect_bad("[]", "top level: not an object");
        expect_bad("\"state\"", "top level: not an object");
        expect_bad("null", "top level: not an object");
        expect_bad("{}", "version: missing");
        expect_bad("{\"version\": null, \"environments\": {}}", "version: missing");
        expect_bad("{\"version\": \"1\", \"environments\": {}}", "version: not a number");
        expect_bad("{\"version\": 2, \"environments\": {}}", "unsupported state version 2");
        expect_bad("{\"version\": 0, \"environments\": {}}", "unsupported state version 0");
        expect_bad("{\"version\": 1.0, \"environments\": {}}", "unsupported state version 1.0");
        expect_bad("{\"version\": 1e0, \"environments\": {}}", "unsupported state version 1e0");
        expect_bad("{\"version\": 99999999999999999999, \"environments\": {}}",
                   "unsupported state version 99999999999999999999");
        expect_bad("{\"version\": 1, \"version\": 1, \"environments\": {}}", "version: duplicate key");
        expect_bad("{\"version\": 1}", "environments: missing");
        expect_bad("{\"version\": 1, \"environments\": null}", "environments: missing");
        expect_bad("{\"version\": 1, \"environments\": []}", "environments: not an object");
        expect_bad("{\"version\": 1, \"environments\": {}, \"environments\": {}}", "environments: duplicate key");
        expect_bad("{\"version\": 1, \"environments\": {\"b\": {}, \"a\": {}, \"b\": {}}}",
                   "environments.b: duplicate key");
        expect_bad_env("\"x\"", "environments.uat: not an object");
        expect_bad_env("null", "environments.uat: not an object");
        expect_bad_env("[]", "environments.uat: not an object");
        expect_bad("{\"version\": 1, \"environments\": {\"a\": {}, \"\\udc00\": {}}}",
                   "environments.#2: name not UTF-8");
        expect_bad("{\"version\": 1, \"environments\": {\"a\\nb\": 5}}", "environments.#1: not an object");
        /* Names are kept as C strings: these two are the same name, "a". */
        expect_bad("{\"version\": 1, \"environments\": {\"a\\u0000b\": {}, \"a\\u0000c\": {}}}",
                   "environments.a: duplicate key");
}

/* Each environment is read from a tree of its own, cut out of the text
 * where the first pass found it: what that pass takes for the top level's
 * "environments" must be what the tree parser takes for it. */
static void test_environments_cut_out(void **state) {
        State *s;

        /* Anywhere in the object, after "version" or before it, with comments,
         * nested unknown keys, and an "environments" key deeper down. */
        s = parse("{\"other\": {\"environments\": {\"z\": 5}}, /* c */ \"environments\": {\n"
                  "  \"a\": {\"id\": \"A\", \"extra\": {\"environments\": [{}], \"x\": {\"y\": []}}},\n"
                  "  /* between */ \"b\" : { /* inside */ \"id\": \"B\", \"job\": {\"id\": \"j\", "
                  "\"polling_url\": \"/p\", \"submitted_at\": \"2026-12-06T02:00:00Z\"}} },\n"
                  "\"version\": 1}");
        assert_int_equal(s->n_envs, 2);
        assert_string_equal(s->envs[0].name, "a");
        assert_string_equal(s->envs[0].id, "A");
        assert_null(s->envs[0].job);
        assert_string_equal(s->envs[1].name, "b");
        assert_string_equal(s->envs[1].id, "B");
        assert_non_null(s->envs[1].job);
        assert_string_equal(s->envs[1].job->id, "j");
        state_free(s);

        /* Keys are C strings: this is "environments". */
        s = parse("{\"version\": 1, \"environments\\u0000x\": {\"a\": {\"id\": \"A\"}}}");
        assert_int_equal(s->n_envs, 1);
        assert_string_equal(s->envs[0].id, "A");
        state_free(s);
        expect_bad("{\"version\": 1, \"environments\": {}, \"environments\\u0000x\": {\"a\": {}}}",
                   "environments: duplicate key");
        expect_bad("{\"version\": 1, \"environments\": [{\"a\": {}}], \"environments\\u0000\": {}}",
                   "environments: duplicate key");

        /* An environment that is not an object, before or after one that is. */
        expect_bad("{\"version\": 1, \"environments\": {\"a\": [{\"id\": \"A\"}], \"b\": {}}}",
                   "environments.a: not an object");
        expect_bad("{\"version\": 1, \"environments\": {\"b\": {\"id\": \"B\"}, \"a\": [{\"x\": {}}]}}",
                   "environments.a: not an object");
        expect_bad("{\"version\": 1, \"environments\": {\"b\": {}, \"a\": \"{}\"}}",
                   "environments.a: not an object");
        /* The names are checked before any environment is read. */
        expect_bad("{\"version\": 1, \"environments\": {\"a\": {\"id\": 5}, \"a\": {}}}",
                   "environments.a: duplicate key");
}

static void test_wrong_types(void **state) {
        static const struct {
                const char *body, *want;
        } cases[] = {
                { "{\"id\": 5}", "environments.uat.id: not a string" },
                { "{\"id\": \"a\", \"id\": \"b\"}", "environments.uat.id: duplicate key" },
                { "{\"id\": \"\\udc00\"}", "environments.uat.id: not UTF-8" },    /* a lone surrogate */
                { "{\"id\": \"\xc0\xaf\"}", "environments.uat.id: not UTF-8" },  /* overlong, yajl lets it by */
                { "{\"last_slot\": 5}", "environments.uat.last_slot: not a time" },
                { "{\"last_submitted\": true}", "environments.uat.last_submitted: not a time" },
                { "{\"deferred_until\": {}}", "environments.uat.deferred_until: not a time" },
                { "{\"zuora_last_refresh\": []}", "environments.uat.zuora_last_refresh: not a time" },
                { "{\"zuora_next_refresh\": 1.5}", "environments.uat.zuora_next_refresh: not a time" },
                { "{\"intent\": []}", "environments.uat.intent: not an object" },
                { "{\"intent\": \"2026-12-06T02:00:00Z\"}", "environments.uat.intent: not an object" },
                { "{\"intent\": {}}", "environments.uat.intent.slot: missing" },
                { "{\"intent\": {\"slot\": \"2026-12-06T02:00:00Z\", \"track_id\": 1}}",
                  "environments.uat.intent.track_id: not a string" },
                { "{\"intent\": {\"slot\": \"2026-12-06T02:00:00Z\", \"sent_at\": \"soon\"}}",
                  "environments.uat.intent.sent_at: not a time" },
                { "{\"job\": \"j\"}", "environments.uat.job: not an object" },
                { "{\"job\": {\"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\"}}",
                  "environments.uat.job.id: missing" },
                { "{\"job\": {\"id\": null, \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\"}}",
                  "environments.uat.job.id: missing" },
                { "{\"job\": {\"id\": \"j\", \"submitted_at\": \"2026-12-06T02:00:00Z\"}}",
                  "environments.uat.job.polling_url: missing" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\"}}", "environments.uat.job.submitted_at: missing" },
                { "{\"job\": {\"id\": 7, \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\"}}",
                  "environments.uat.job.id: not a string" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": [], \"submitted_at\": \"2026-12-06T02:00:00Z\"}}",
                  "environments.uat.job.polling_url: not a string" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"status\": 3}}",
                  "environments.uat.job.status: not a string" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"progress\": \"45\"}}",
                  "environments.uat.job.progress: not a non-negative integer" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"progress\": -1}}",
                  "environments.uat.job.progress: not a non-negative integer" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"progress\": 4.5}}",
                  "environments.uat.job.progress: not a non-negative integer" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"progress\": 3000000000}}",
                  "environments.uat.job.progress: not a non-negative integer" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": 1796522400}}",
                  "environments.uat.job.submitted_at: not a time" },
                { "{\"job\": {\"id\": \"j\", \"polling_url\": \"u\", \"submitted_at\": \"2026-12-06T02:00:00Z\", "
                  "\"slot\": \"x\"}}",
                  "environments.uat.job.slot: not a time" },
                { "{\"last_job\": 1}", "environments.uat.last_job: not an object" },
                { "{\"last_job\": {}}", "environments.uat.last_job.ended_at: missing" },
                { "{\"last_job\": {\"ended_at\": \"2026-12-06T02:00:00Z\", \"id\": false}}",
                  "environments.uat.last_job.id: not a string" },
                { "{\"last_job\": {\"ended_at\": \"2026-12-06T02:00:00Z\", \"status\": {}}}",
                  "environments.uat.last_job.status: not a string" },
                { "{\"last_job\": {\"ended_at\": \"2026-12-06T02:00:00Z\", \"message\": [\"a\"]}}",
                  "environments.uat.last_job.message: not a string" },
                { "{\"last_job\": {\"ended_at\": \"2026-12-06T02:00:00Z\", \"slot\": 0}}",
                  "environments.uat.last_job.slot: not a time" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                expect_bad_env(cases[i].body, cases[i].want);
}

static void test_bad_times(void **state) {
        static const char *const bad[] = {
                "\"\"",
                "\"yesterday\"",
                "\"2026-13-01T00:00:00Z\"",
                "\"2026-02-29T00:00:00Z\"",
                "\"2026-12-06T24:00:00Z\"",
                "\"2026-12-06T02:60:00Z\"",
                "\"2026-12-06T02:00:00+24:00\"",
                "\"2026-12-06T02:00:00Q\"",
                "\"2026-12-06T02:00:00Z \"",
                "\"1796522400\"",
                "\"9999-12-31T23:59:59-01:00\"", /* year 10000 */
                "\"0000-01-01T00:00:00+01:00\"", /* year -1 */
        };
        char *body;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_true(asprintf(&body, "{\"last_slot\": %s}", bad[i]) > 0);
                expect_bad_env(body, "environments.uat.last_slot: not a time");
                free(body);
        }
}

static void test_every_prefix(void **state) {
        size_t n = strlen(full_text), valid = 0;

        /* A torn file (which the atomic save should never leave) is refused, never half read. */
        for (size_t len = 0; len <= n; len++) {
                char *copy = strndup(full_text, len), *m = NULL;
                State *s = NULL;
                int r = state_parse(copy, len, &s, &m);

                if (r == 0) {
                        assert_null(m);
                        assert_int_equal(s->n_envs, 3);
                        valid++;
                } else {
                        assert_int_equal(r, -EBADMSG);
                        assert_non_null(m);
                        assert_null(s);
                }
                free(m);
                state_free(s);
                free(copy);
        }
        assert_int_equal(valid, 2); /* with and without the final newline */
}

static void test_too_big(void **state) {
        size_t n = STATE_SIZE_MAX + 1;
        char *big = malloc(n), *m = NULL;
        State *s = NULL;

        assert_non_null(big);
        memset(big, ' ', n);
        assert_int_equal(state_parse(big, n, &s, &m), -EFBIG);
        assert_null(m);
        /* Just under the limit, it is only the JSON that is wrong. */
        expect_bad_n(big, n - 1, "premature EOF");
        free(big);
}

/* ---- the State API ---- */

static void test_get(void **state) {
        State *s = state_new();
        StateEnv *e;

        e = env_get(s, "uat", "A");
        assert_int_equal(s->n_envs, 1);
        assert_string_equal(e->name, "uat");
        assert_string_equal(e->id, "A");
        assert_env_unset(e);
        e->last_slot = T("2026-12-06T02:00:00Z");
        e->job = job_new("j", "u", NULL, -1, T("2026-12-06T02:00:01Z"), STATE_TIME_UNSET);
        env_get(s, "dev", "D")->last_slot = T("2026-12-06T02:00:00Z");

        /* Same id: the same entry, as it was. */
        e = env_get(s, "uat", "A");
        assert_ptr_equal(e, &s->envs[0]);
        assert_int_equal(e->last_slot, T("2026-12-06T02:00:00Z"));
        assert_non_null(e->job);
        assert_ptr_equal(state_find(s, "uat"), e);

        /* Another id: another Test Environment under the old name, so nothing applies; the place is kept. */
        e = env_get(s, "uat", "B");
        assert_int_equal(s->n_envs, 2);
        assert_ptr_equal(e, &s->envs[0]);
        assert_string_equal(e->name, "uat");
        assert_string_equal(e->id, "B");
        assert_env_unset(e);
        assert_int_equal(s->envs[1].last_slot, T("2026-12-06T02:00:00Z"));

        /* No id at all is an id too. */
        e = env_get(s, "x", NULL);
        assert_null(e->id);
        e->last_slot = 1;
        assert_int_equal(env_get(s, "x", NULL)->last_slot, 1);
        assert_int_equal(env_get(s, "x", "X")->last_slot, STATE_TIME_UNSET);
        assert_int_equal(state_get(s, "x", "X", NULL), 0);

        assert_null(state_find(s, "nope"));
        assert_null(state_find(NULL, "uat"));
        assert_int_equal(s->n_envs, 3);
        state_free(s);
}

static bool keep_listed(const char *name, void *userdata) {
        for (const char *const *k = userdata; *k; k++)
                if (strcmp(*k, name) == 0)
                        return true;
        return false;
}

static void test_prune(void **state) {
        static const char *const keep[] = { "a", "d", "gone", NULL }, *const none[] = { NULL };
        State *s = state_new();

        env_get(s, "a", "1");
        env_get(s, "b", "2")->job = job_new("j", "u", NULL, -1, 1, STATE_TIME_UNSET);
        env_get(s, "c", "3")->last_slot = 5;
        env_get(s, "d", "4");
        env_get(s, "e", "5")->last_job = last_job_new("j", "COMPLETED", NULL, 1, 1);

        /* "b" left the config, but its job is still running: it stays until that ends. */
        state_prune(s, keep_listed, (void *) keep);
        assert_int_equal(s->n_envs, 3);
        assert_string_equal(s->envs[0].name, "a");
        assert_string_equal(s->envs[1].name, "b");
        assert_string_equal(s->envs[2].name, "d");
        assert_ptr_equal(state_find(s, "d"), &s->envs[2]); /* found where it moved to */
        assert_null(state_find(s, "c"));

        s->envs[1].job = state_job_free(s->envs[1].job);
        state_prune(s, keep_listed, (void *) none);
        assert_int_equal(s->n_envs, 0);
        state_prune(NULL, keep_listed, (void *) keep);
        state_free(s);
}

/* The index by name follows appends, prunes and parsed files. */
static void test_find_many(void **state) {
        State *s = state_new(), *back = NULL;
        char *text = NULL, *m = NULL;
        const char *keep[1001] = {};
        char names[3000][8];

        s->log_id = 1; /* state_save() would start a generation, and the text would differ */
        for (size_t i = 0; i < 3000; i++) {
                snprintf(names[i], sizeof(names[i]), "e%zu", i);
                env_get(s, names[i], "I")->last_slot = (int64_t) i;
                if (i % 3 == 0)
                        keep[i / 3] = names[i];
        }
        for (size_t i = 0; i < 3000; i++)
                assert_int_equal(state_find(s, names[i])->last_slot, (int64_t) i);
        assert_null(state_find(s, "e3000"));

        state_prune(s, keep_listed, (void *) keep);
        assert_int_equal(s->n_envs, 1000);
        for (size_t i = 0; i < 3000; i++)
                if (i % 3 == 0)
                        assert_int_equal(state_find(s, names[i])->last_slot, (int64_t) i);
                else
                        assert_null(state_find(s, names[i]));
        env_get(s, "new", "N");
        assert_ptr_equal(state_find(s, "new"), &s->envs[1000]);

        assert_int_equal(state_format(s, &text, NULL), 0);
        assert_true(strlen(text) > 200 * 1024); /* more than a few buffers of state_save() */
        char *d = dir_new(), *saved;
        assert_int_equal(state_save(d, s), 0);
        saved = read_file(d, STATE_FILE_NAME);
        assert_string_equal(saved, text);
        free(saved);
        dir_free(d);
        assert_int_equal(state_parse(text, strlen(text), &back, &m), 0);
        assert_int_equal(state_find(back, "e2997")->last_slot, 2997);
        assert_null(state_find(back, "e2998"));
        env_get(back, "newer", "N");
        assert_ptr_equal(state_find(back, "newer"), &back->envs[1001]);
        free(text);
        state_free(back);
        state_free(s);
}

static void test_free_null(void **state) {
        assert_null(state_free(NULL));
        assert_null(state_job_free(NULL));
        assert_null(state_last_job_free(NULL));
}

/* ---- files ---- */

static void test_load_missing(void **state) {
        char *d = dir_new(), *m = NULL, *sub = path_in(d, "nonexistent");
        State *s = NULL;

        assert_int_equal(state_load(d, &s, &m), 0);
        assert_non_null(s);
        assert_int_equal(s->n_envs, 0);
        assert_null(m);
        state_free(s);
        s = NULL;
        assert_int_equal(state_load(sub, &s, &m), 0);
        state_free(s);
        free(sub);
        dir_free(d);
}

static void test_save_load(void **state) {
        char *d = dir_new(), *m = NULL, *on_disk, *p;
        State *s = full_state(), *back = NULL;
        struct stat st;

        assert_int_equal(state_save(d, s), 0);
        on_disk = read_file(d, STATE_FILE_NAME);
        assert_string_equal(on_disk, full_text);
        p = path_in(d, STATE_FILE_NAME);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(count_files(d, TEMP_PREFIX), 0);

        assert_int_equal(state_load(d, &back, &m), 0);
        assert_null(m);
        assert_state_equal(s, back);

        /* Saved again over it. */
        back->envs[0].last_slot = T("2026-12-13T02:00:00Z");
        assert_int_equal(state_save(d, back), 0);
        free(on_disk);
        on_disk = read_file(d, STATE_FILE_NAME);
        assert_non_null(strstr(on_disk, "\"last_slot\": \"2026-12-13T02:00:00Z\""));
        assert_int_equal(count_files(d, ""), 3); /* ".", "..", state.json */

        free(p);
        free(on_disk);
        state_free(back);
        state_free(s);
        dir_free(d);
}

/* What was measured of Zuora's clock is kept: written, read back, and
 * refused with a message when it is not what refreshd writes. */
static void test_zuora_clock_kept(void **state) {
        char *d = dir_new(), *m = NULL, *on_disk;
        State *s = state_new(), *back = NULL;
        int64_t at = T("2026-12-07T03:00:00Z") * (int64_t) 1000000, o, u;

        assert_non_null(s);
        assert_int_equal(state_save(d, s), 0);
        on_disk = read_file(d, STATE_FILE_NAME);
        assert_null(strstr(on_disk, "zuora_clock")); /* absent until measured */
        free(on_disk);

        zclock_restore(&s->zclock, -300 * (int64_t) 1000000 - 250000, 600000, at);
        assert_int_equal(state_save(d, s), 0);
        on_disk = read_file(d, STATE_FILE_NAME);
        assert_non_null(strstr(on_disk, "\"zuora_clock\""));
        assert_non_null(strstr(on_disk, "\"offset_us\": -300250000"));
        assert_int_equal(state_load(d, &back, &m), 0);
        assert_true(back->zclock.measured);
        zclock_estimate(&back->zclock, at, &o, &u);
        assert_int_equal(o, -300250000);
        assert_int_equal(u, 600000);
        state_free(back);
        back = NULL;
        free(on_disk);

        write_file(d, STATE_FILE_NAME,
                   "{\"version\": 1, \"zuora_clock\": {\"offset_us\": \"soon\", \"uncertainty_us\": 1, "
                   "\"at\": \"2026-12-07T03:00:00Z\"}, \"environments\": {}}\n");
        assert_int_equal(state_load(d, &back, &m), -EBADMSG);
        assert_null(back);
        assert_string_equal(m, "zuora_clock.offset_us: not a number of microseconds");
        free(m);
        state_free(s);
        dir_free(d);
}

static void test_load_corrupt(void **state) {
        char *d = dir_new(), *m = NULL, *p = path_in(d, STATE_FILE_NAME);
        State *s = NULL;
        int fd;

        write_file(d, STATE_FILE_NAME, "{\"version\": 1, \"environments\": {\"uat\": {\"last_slot\": \"noon\"}}}\n");
        assert_int_equal(state_load(d, &s, &m), -EBADMSG);
        assert_null(s);
        assert_string_equal(m, "environments.uat.last_slot: not a time");
        free(m);
        m = NULL;

        /* Bigger than anything we write: not even read (a sparse file, so this costs no space). */
        fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) STATE_SIZE_MAX + 1), 0);
        close(fd);
        assert_int_equal(state_load(d, &s, &m), -EFBIG);
        assert_null(m);

        /* Not a file. */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0700), 0);
        assert_int_equal(state_load(d, &s, &m), -EISDIR);

        free(p);
        dir_free(d);
}

/* A state whose file is far bigger than a few KiB. */
static State *big_state(void) {
        State *s = state_new();
        char *msg = malloc(64 * 1024);

        assert_non_null(msg);
        memset(msg, 'x', 64 * 1024 - 1);
        msg[64 * 1024 - 1] = 0;
        env_get(s, "big", "id")->last_job = last_job_new("j", "FAILED", msg, 1, 1);
        free(msg);
        return s;
}

/* DIR/state.json holds OLD, and no temp file is left. */
static void assert_untouched(const char *dir, const char *old) {
        char *now = read_file(dir, STATE_FILE_NAME);

        assert_non_null(now);
        assert_string_equal(now, old);
        assert_int_equal(count_files(dir, TEMP_PREFIX), 0);
        free(now);
}

static void test_save_failures(void **state) {
        char *d = dir_new(), *p = path_in(d, "nonexistent"), *old, *sp, *k;
        State *s = full_state(), *big = big_state();
        struct rlimit saved, small;
        int r;

        /* No directory, or not one: nothing is created. */
        assert_int_equal(state_save(p, s), -ENOENT);
        write_file(d, "file", "x");
        free(p);
        p = path_in(d, "file");
        assert_int_equal(state_save(p, s), -ENOTDIR);
        free(p);

        /* An invalid state is refused before any file is touched. */
        assert_int_equal(state_save(d, s), 0);
        old = read_file(d, STATE_FILE_NAME);
        s->envs[0].job->submitted_at = STATE_TIME_UNSET;
        assert_int_equal(state_save(d, s), -EINVAL);
        assert_untouched(d, old);

        /* A write that fails part way (the file size limit works even for root, unlike permissions). */
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
        small = saved;
        small.rlim_cur = 4096;
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
        r = state_save(d, big);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
        signal(SIGXFSZ, SIG_DFL);
        assert_int_equal(r, -EFBIG);
        assert_untouched(d, old);

        /* A rename that cannot happen: state.json is now a directory that is not empty. */
        s->envs[0].job->submitted_at = 1;
        sp = path_in(d, STATE_FILE_NAME);
        assert_int_equal(unlink(sp), 0);
        assert_int_equal(mkdir(sp, 0700), 0);
        write_file(sp, "keep", "k");
        assert_int_equal(state_save(d, s), -EISDIR);
        assert_int_equal(count_files(d, TEMP_PREFIX), 0);
        k = read_file(sp, "keep");
        assert_string_equal(k, "k");

        free(k);
        free(sp);
        free(old);
        state_free(big);
        state_free(s);
        dir_free(d);
}

static void test_save_full_filesystem(void **state) {
        char *d = dir_new(), *old;
        State *s = full_state(), *big = big_state();

        /* A tmpfs of 16 KiB, mounted in a mount namespace of our own so that nobody else sees it. */
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=16k,mode=0700") < 0) {
                print_message("skipped: cannot mount a small tmpfs here: %s\n", strerror(errno));
                state_free(big);
                state_free(s);
                dir_free(d);
                skip();
        }

        assert_int_equal(state_save(d, s), 0);
        old = read_file(d, STATE_FILE_NAME);
        assert_int_equal(state_save(d, big), -ENOSPC);
        assert_untouched(d, old);
        /* And a save that fits still works afterwards. */
        s->envs[0].last_slot = T("2026-12-13T02:00:00Z");
        assert_int_equal(state_save(d, s), 0);
        assert_int_equal(count_files(d, TEMP_PREFIX), 0);

        assert_int_equal(umount2(d, MNT_DETACH), 0);
        free(old);
        state_free(big);
        state_free(s);
        dir_free(d);
}

/* ---- the intent log ---- */

static void test_intent_record(void **state) {
        uint8_t buf[INTENT_LOG_RECORD_SIZE], zeros[INTENT_LOG_RECORD_SIZE] = {};
        IntentRecord r = { .log_id = 42, .seq = 1025, .slot = T("2026-12-06T02:00:00Z"), .sent_at = 7,
                           .name = "uat", .id = "8ad09be48db5aa7b", .track_id = "b1946ac9" }, back;
        char long_id[500];

        assert_int_equal(intent_record_encode(&r, buf), 0);
        assert_int_equal(intent_record_decode(buf, &back), 0);
        assert_int_equal(back.log_id, 42);
        assert_int_equal(back.seq, 1025);
        assert_int_equal(back.slot, r.slot);
        assert_int_equal(back.sent_at, 7);
        assert_string_equal(back.name, "uat");
        assert_string_equal(back.id, "8ad09be48db5aa7b");
        assert_string_equal(back.track_id, "b1946ac9");

        /* Any damaged byte, the checksum included, and the record is refused. */
        for (size_t i = 0; i < sizeof(buf); i++) {
                buf[i] ^= 0x20;
                assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
                buf[i] ^= 0x20;
        }
        assert_int_equal(intent_record_decode(zeros, &back), -EBADMSG);

        r.track_id = NULL;
        assert_int_equal(intent_record_encode(&r, buf), 0);
        assert_int_equal(intent_record_decode(buf, &back), 0);
        assert_null(back.track_id);

        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = 0;
        r.id = long_id;
        assert_int_equal(intent_record_encode(&r, buf), -E2BIG);
        r.id = "";
        assert_int_equal(intent_record_encode(&r, buf), -EINVAL);
        r.id = "x";
        r.log_id = 0;
        assert_int_equal(intent_record_encode(&r, buf), -EINVAL);
}

/* Records the intent for SLOT of entry NAME in S and in the log FD. */
static int log_intent(State *s, int fd, const char *name, const char *id, int64_t slot) {
        StateEnv *e = env_get(s, name, id);

        e->intent_slot = slot;
        e->intent_sent_at = slot + 1;
        free(e->intent_track_id);
        e->intent_track_id = xstrdup(name);
        return state_log_intents(s, fd, &e, 1);
}

static State *load(const char *d) {
        State *s = NULL;
        char *m = NULL;

        assert_int_equal(state_load(d, &s, &m), 0);
        assert_null(m);
        return s;
}

/* CRC-32C, bit by bit: the test's own, so that a record can be changed and sealed again. */
static void record_reseal(uint8_t buf[INTENT_LOG_RECORD_SIZE]) {
        uint32_t crc = 0xffffffff;

        for (size_t i = 0; i < INTENT_LOG_RECORD_SIZE - 4; i++) {
                crc ^= buf[i];
                for (int k = 0; k < 8; k++)
                        crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78 : crc >> 1;
        }
        crc = ~crc;
        memcpy(buf + INTENT_LOG_RECORD_SIZE - 4, &crc, 4);
}

/* A record whose checksum is right but whose fields do not fit is refused
 * all the same: only the checksum could let such a record through. */
static void test_intent_record_sealed_but_wrong(void **state) {
        static const struct {
                size_t offset;
                uint16_t value;
        } lengths[] = {
                { 40, 2 },      /* name "uat" said to be 2 long: no NUL there */
                { 40, 4 },      /* 4: past its NUL */
                { 40, 0 },      /* an empty name */
                { 42, 0 },      /* an empty id */
                { 42, 17 },     /* the id's NUL is not where it should be */
                { 42, 460 },    /* past the end of the record */
                { 44, 9 },      /* the track id's NUL is not where it should be */
                { 44, 0xfffe }, /* far past the end */
        };
        IntentRecord r = { .log_id = 42, .seq = 7, .slot = T("2026-12-06T02:00:00Z"), .sent_at = 7,
                           .name = "uat", .id = "8ad09be48db5aa7b", .track_id = "b1946ac9" }, back;
        uint8_t buf[INTENT_LOG_RECORD_SIZE];

        assert_int_equal(intent_record_encode(&r, buf), 0);
        record_reseal(buf);
        assert_int_equal(intent_record_decode(buf, &back), 0); /* the test's CRC is the log's */

        for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                assert_int_equal(intent_record_encode(&r, buf), 0);
                memcpy(buf + lengths[i].offset, &lengths[i].value, 2);
                record_reseal(buf);
                assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
        }

        /* Laid out right, but an empty name, then an empty id. */
        static const struct {
                uint16_t lengths[3];
                char data[24];
        } empty[] = {
                { { 0, 3, 0xffff }, "\0xyz" },
                { { 3, 0, 0xffff }, "uat\0" },
        };
        for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
                assert_int_equal(intent_record_encode(&r, buf), 0);
                memcpy(buf + 40, empty[i].lengths, sizeof(empty[i].lengths));
                memset(buf + 48, 0, INTENT_LOG_RECORD_SIZE - 4 - 48);
                memcpy(buf + 48, empty[i].data, sizeof(empty[i].data));
                record_reseal(buf);
                assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
        }

        uint64_t zero = 0;
        uint32_t version = 2;
        assert_int_equal(intent_record_encode(&r, buf), 0);
        memcpy(buf + 8, &zero, 8); /* log id 0 */
        record_reseal(buf);
        assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
        assert_int_equal(intent_record_encode(&r, buf), 0);
        memcpy(buf + 16, &zero, 8); /* seq 0 */
        record_reseal(buf);
        assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
        assert_int_equal(intent_record_encode(&r, buf), 0);
        memcpy(buf + 4, &version, 4);
        record_reseal(buf);
        assert_int_equal(intent_record_decode(buf, &back), -EBADMSG);
}

static void test_intent_log_replay(void **state) {
        char *d = dir_new(), *p;
        State *s = state_new(), *back;
        StateEnv *e;
        int fd = -1;

        env_get(s, "uat", "U")->last_slot = T("2026-12-01T02:00:00Z");
        assert_int_equal(intent_log_open(d, &fd), 0);
        /* No state.json of this generation on disk yet: only a save makes an intent durable. */
        assert_int_equal(log_intent(s, fd, "uat", "U", T("2026-12-06T02:00:00Z")), -EAGAIN);
        assert_int_equal(state_save(d, s), 0);
        assert_int_not_equal(s->log_id, 0);
        assert_true(s->log_saved);

        /* Two intents in the log alone: the load finds both, and what firing did. */
        assert_int_equal(log_intent(s, fd, "uat", "U", T("2026-12-06T02:00:00Z")), 0);
        assert_int_equal(log_intent(s, fd, "new", "N", T("2026-12-06T03:00:00Z")), 0);
        back = load(d);
        assert_int_equal(back->log_id, s->log_id);
        assert_int_equal(back->log_seq, 2);
        assert_int_equal(back->log_saved_seq, 0);
        e = state_find(back, "uat");
        assert_int_equal(e->intent_slot, T("2026-12-06T02:00:00Z"));
        assert_int_equal(e->intent_sent_at, T("2026-12-06T02:00:01Z"));
        assert_string_equal(e->intent_track_id, "uat");
        assert_int_equal(e->last_slot, T("2026-12-06T02:00:00Z"));
        e = state_find(back, "new");
        assert_non_null(e);
        assert_string_equal(e->id, "N");
        assert_int_equal(e->intent_slot, T("2026-12-06T03:00:00Z"));
        assert_int_equal(e->since, T("2026-12-06T03:00:00Z"));
        state_free(back);

        /* A save covers them: cleared intents stay cleared. */
        state_find(s, "uat")->intent_slot = STATE_TIME_UNSET;
        assert_int_equal(state_save(d, s), 0);
        assert_int_equal(s->log_saved_seq, 2);
        back = load(d);
        assert_int_equal(state_find(back, "uat")->intent_slot, STATE_TIME_UNSET);
        assert_int_equal(back->log_seq, 2);
        state_free(back);

        /* A later record for the same entry wins, whichever ring place it has. */
        assert_int_equal(log_intent(s, fd, "uat", "U", T("2026-12-13T02:00:00Z")), 0);
        assert_int_equal(log_intent(s, fd, "uat", "U", T("2026-12-20T02:00:00Z")), 0);
        back = load(d);
        assert_int_equal(state_find(back, "uat")->intent_slot, T("2026-12-20T02:00:00Z"));
        state_free(back);

        /* Without its state.json the log means nothing: a fresh start. */
        p = path_in(d, STATE_FILE_NAME);
        assert_int_equal(unlink(p), 0);
        back = load(d);
        assert_int_equal(back->n_envs, 0);
        assert_int_equal(back->log_id, 0);
        state_free(back);

        /* Another generation's state.json does not take these records. */
        s->log_id ^= 1;
        assert_int_equal(state_save(d, s), 0);
        s->log_id ^= 1;
        s->log_saved_seq = 2; /* as on disk */
        back = load(d);
        assert_int_equal(state_find(back, "uat")->intent_slot, T("2026-12-20T02:00:00Z")); /* from state.json */
        assert_int_equal(back->log_seq, 4);
        state_free(back);

        free(p);
        close(fd);
        state_free(s);
        dir_free(d);
}

static void test_intent_log_ring(void **state) {
        char *d = dir_new(), *p;
        State *s = state_new(), *back;
        StateEnv *batch[INTENT_LOG_RECORDS];
        int fd = -1, raw;
        uint8_t byte;

        assert_int_equal(intent_log_open(d, &fd), 0);
        assert_int_equal(state_save(d, s), 0);
        /* The ring holds every record newer than state.json, and no more. */
        for (size_t i = 0; i < INTENT_LOG_RECORDS; i++) {
                char name[16];
                snprintf(name, sizeof(name), "e%zu", i);
                env_get(s, name, "I")->intent_slot = (int64_t) i;
        }
        for (size_t i = 0; i < INTENT_LOG_RECORDS; i++) /* once the array stops moving */
                batch[i] = &s->envs[i];
        assert_int_equal(state_log_intents(s, fd, batch, 1000), 0);
        assert_int_equal(state_log_intents(s, fd, batch + 1000, 24), 0);
        assert_int_equal(state_log_intents(s, fd, batch, 1), -ENOSPC);
        back = load(d);
        assert_int_equal(back->n_envs, INTENT_LOG_RECORDS);
        assert_int_equal(state_find(back, "e1023")->intent_slot, 1023);
        state_free(back);
        assert_int_equal(state_save(d, s), 0);
        assert_int_equal(state_log_intents(s, fd, batch, 1), 0); /* room again: it wraps */

        /* A torn record is not replayed; the rest are. */
        batch[5]->intent_slot = 5000;
        batch[6]->intent_slot = 6000;
        assert_int_equal(state_log_intents(s, fd, batch + 5, 2), 0);
        p = path_in(d, INTENT_LOG_FILE_NAME);
        raw = open(p, O_RDWR | O_CLOEXEC);
        assert_true(raw >= 0);
        off_t at = (off_t) (s->log_seq % INTENT_LOG_RECORDS) * INTENT_LOG_RECORD_SIZE + 100; /* e6's record */
        assert_int_equal(pread(raw, &byte, 1, at), 1);
        byte ^= 1;
        assert_int_equal(pwrite(raw, &byte, 1, at), 1);
        close(raw);
        back = load(d);
        assert_int_equal(state_find(back, "e5")->intent_slot, 5000);
        assert_int_equal(state_find(back, "e6")->intent_slot, 6); /* as state.json has it */
        state_free(back);

        free(p);
        close(fd);
        state_free(s);
        dir_free(d);
}

static void test_intent_log_open(void **state) {
        char *d = dir_new(), *p = path_in(d, INTENT_LOG_FILE_NAME), *sub = path_in(d, "nonexistent");
        struct rlimit saved, small;
        struct stat st;
        int fd = -1;

        /* Created whole, and a short file is made whole again. */
        assert_int_equal(intent_log_open(d, &fd), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, INTENT_LOG_RECORDS * INTENT_LOG_RECORD_SIZE);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_true((uint64_t) st.st_blocks * 512 >= INTENT_LOG_RECORDS * INTENT_LOG_RECORD_SIZE);
        assert_int_equal(ftruncate(fd, 1000), 0);
        close(fd);
        assert_int_equal(intent_log_open(d, &fd), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, INTENT_LOG_RECORDS * INTENT_LOG_RECORD_SIZE);
        close(fd);

        /* A disk too full for it keeps its room. */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
        small = saved;
        small.rlim_cur = 100 * 1024;
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
        assert_int_equal(intent_log_open(d, &fd), -EFBIG);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
        signal(SIGXFSZ, SIG_DFL);
        assert_int_equal(access(p, F_OK), -1);

        assert_int_equal(intent_log_open(sub, &fd), -ENOENT);
        assert_int_equal(mkdir(p, 0700), 0);
        assert_int_equal(intent_log_open(d, &fd), -EISDIR);
        /* Intents may be in it: a state that cannot be replayed is not loaded. */
        State *s = state_new(), *back = NULL;
        char *m = NULL, *want;
        assert_int_equal(state_save(d, s), 0);
        assert_int_equal(state_load(d, &back, &m), -EBADFD);
        assert_null(back);
        assert_true(asprintf(&want, "%s: not a regular file", p) > 0);
        assert_string_equal(m, want);
        free(want);
        free(m);
        state_free(s);
        free(p);
        free(sub);
        dir_free(d);
}

static void test_move_aside(void **state) {
        char *d = dir_new(), *path = NULL, *want, *text;
        int64_t now = T("2026-12-06T02:00:00Z");

        assert_int_equal(state_move_aside(d, now, &path), -ENOENT);
        assert_null(path);

        write_file(d, STATE_FILE_NAME, "first");
        assert_int_equal(state_move_aside(d, now, &path), 0);
        want = path_in(d, "state.json.corrupt-20261206T020000Z");
        assert_string_equal(path, want);
        free(want);
        free(path);
        assert_null(read_file(d, STATE_FILE_NAME));

        /* Collisions: never replace an earlier one. */
        write_file(d, STATE_FILE_NAME, "second");
        assert_int_equal(state_move_aside(d, now, &path), 0);
        want = path_in(d, "state.json.corrupt-20261206T020000Z-1");
        assert_string_equal(path, want);
        free(want);
        free(path);
        write_file(d, STATE_FILE_NAME, "third");
        assert_int_equal(state_move_aside(d, now, NULL), 0);

        text = read_file(d, "state.json.corrupt-20261206T020000Z");
        assert_string_equal(text, "first");
        free(text);
        text = read_file(d, "state.json.corrupt-20261206T020000Z-1");
        assert_string_equal(text, "second");
        free(text);
        text = read_file(d, "state.json.corrupt-20261206T020000Z-2");
        assert_string_equal(text, "third");
        free(text);

        /* Then the next start is a clean one. */
        State *s = NULL;
        char *m = NULL;
        assert_int_equal(state_load(d, &s, &m), 0);
        assert_int_equal(s->n_envs, 0);
        state_free(s);
        dir_free(d);
}

/* The outbox, the recipients refreshd added and an entry's last event go
 * through state.json and back unchanged; an entry whose deliveries are all
 * done is not kept. */
static bool keep_only_uat(const char *name, void *userdata);

static void test_pause_and_skips_round_trip(void **state) {
        State *s = state_new(), *back;
        StateEnv *e;
        char *text, *again;

        assert_int_equal(state_get(s, "uat", "env-1", &e), 0);
        assert_int_equal(state_env_pause(e, 1796612400, 1796616000, "freeze", "uid 0 (root)"), 0);
        e->pause->held = 1796613000;
        /* Pausing again changes the end and the reason, not when it began. */
        assert_int_equal(state_env_pause(e, 1796612999, STATE_TIME_UNSET, NULL, "uid 1 (x)"), 0);
        assert_int_equal(e->pause->at, 1796612400);
        assert_int_equal(e->pause->until, STATE_TIME_UNSET);
        assert_null(e->pause->reason);
        assert_int_equal(state_skip_add(s, "uat", 1796700000, 1796612400, "demo", "uid 0 (root)"), 0);
        assert_int_equal(state_skip_add(s, "uat", 1796600000, 1796612400, NULL, "uid 0 (root)"), 0);
        assert_int_equal(state_skip_add(s, "uat", 1796700000, 1796612400, NULL, NULL), -EEXIST);
        assert_int_equal(state_skip_add(s, "gone", 1796700000, 1796612400, NULL, NULL), 0);
        /* The earliest of an environment's. */
        assert_int_equal(state_skip_find(s, "uat", STATE_TIME_UNSET)->slot, 1796600000);

        text = format(s);
        assert_non_null(strstr(text, "\"pause\""));
        assert_non_null(strstr(text, "\"skips\""));
        back = parse(text);
        assert_int_equal(state_find(back, "uat")->pause->held, 1796613000);
        assert_string_equal(state_find(back, "uat")->pause->by, "uid 1 (x)");
        assert_int_equal(back->n_skips, 3);
        assert_string_equal(state_skip_find(back, "uat", 1796700000)->reason, "demo");
        again = format(back);
        assert_string_equal(text, again);
        free(again);

        /* Past ones go; a pruned environment's go with it. */
        state_skips_drop_past(back, "uat", 1796600000);
        assert_null(state_skip_find(back, "uat", 1796600000));
        assert_non_null(state_skip_find(back, "uat", 1796700000));
        assert_true(state_skip_remove(back, "uat", 1796700000));
        assert_false(state_skip_remove(back, "uat", 1796700000));
        state_prune(back, keep_only_uat, NULL);
        assert_int_equal(back->n_skips, 0);
        assert_true(state_env_resume(state_find(back, "uat")));
        assert_false(state_env_resume(state_find(back, "uat")));
        again = format(back);
        assert_null(strstr(again, "\"pause\""));
        assert_null(strstr(again, "\"skips\""));
        free(again);
        free(text);
        state_free(back);
        state_free(s);

        expect_bad("{\"version\":1,\"environments\":{},\"skips\":{}}", "skips: not an array");
        expect_bad("{\"version\":1,\"environments\":{},\"skips\":[{\"environment\":\"u\"}]}", "skips[0].slot: missing");
        expect_bad("{\"version\":1,\"environments\":{},\"skips\":[{\"environment\":\"u\",\"slot\":\"2026-12-08T03:00:00Z\"},"
                   "{\"environment\":\"u\",\"slot\":\"2026-12-08T03:00:00Z\"}]}",
                   "skips[1]: a second skip of the same slot");
        expect_bad_env("{\"pause\":{\"until\":\"2026-12-08T03:00:00Z\"}}", "pause.at: missing");
}

static bool keep_only_uat(const char *name, void *userdata) {
        return strcmp(name, "uat") == 0;
}

static void test_outbox_round_trip(void **state) {
        State *s = state_new(), *back;
        StateEnv *e;
        Event ev = EVENT_INIT;
        char **keys = calloc(3, sizeof(char *));

        assert_non_null(s);
        assert_int_equal(state_get(s, "uat", "env-1", &e), 0);
        ev.kind = EVENT_COMPLETED;
        ev.environment = (char *) "uat";
        ev.slot = 1796612400;
        ev.job_id = (char *) "8f3e";
        ev.time = 1796616000;
        event_set_id(&ev, NULL, NULL);
        keys[0] = strdup("hook:0123456789abcdef0123456789abcdef");
        keys[1] = strdup("webhook:fedcba9876543210fedcba9876543210");
        assert_int_equal(state_outbox_add(s, &ev, keys), 0);
        assert_int_equal(state_recipient_add(s, "uat", "n1", "qa@example.com"), 0);
        assert_int_equal(state_env_set_last_event(e, &ev, 1796616010), 0);
        assert_int_equal(state_env_set_delivery_error(e, "hook /x failed with exit status 3", 1796616005), 0);

        char *text = format(s);
        assert_non_null(strstr(text, "\"outbox\""));
        assert_non_null(strstr(text, "\"recipients\""));
        assert_non_null(strstr(text, "\"last_event\""));
        back = parse(text);
        assert_int_equal(back->n_outbox, 1);
        assert_string_equal(back->outbox[0].event.id, ev.id);
        assert_string_equal(back->outbox[0].pending[1], "webhook:fedcba9876543210fedcba9876543210");
        assert_null(back->outbox[0].pending[2]);
        assert_int_equal(back->n_recipients, 1);
        assert_string_equal(back->recipients[0].address, "qa@example.com");
        assert_string_equal(state_find(back, "uat")->last_event->error, "hook /x failed with exit status 3");
        char *again = format(back);
        assert_string_equal(text, again);
        free(again);

        /* Done one by one: the entry goes with its last delivery. */
        assert_false(state_outbox_done(back, 0, "hook:0123456789abcdef0123456789abcdef"));
        assert_int_equal(back->n_outbox, 1);
        assert_true(state_outbox_done(back, 0, "webhook:fedcba9876543210fedcba9876543210"));
        assert_int_equal(back->n_outbox, 0);
        assert_int_equal(state_outbox_find(back, ev.id), -ENOENT);
        state_recipient_remove(back, "uat", "n1");
        assert_int_equal(back->n_recipients, 0);
        again = format(back);
        assert_null(strstr(again, "\"outbox\""));
        assert_null(strstr(again, "\"recipients\""));
        free(again);
        free(text);
        state_free(back);
        state_free(s);

        expect_bad("{\"version\":1,\"environments\":{},\"outbox\":{}}", "outbox: not an array");
        expect_bad("{\"version\":1,\"environments\":{},\"outbox\":[{\"event\":{},\"pending\":[\"hook:x\"]}]}",
                   "outbox[0].event: id is not valid");
        expect_bad("{\"version\":1,\"environments\":{},\"outbox\":[{\"pending\":[1]}]}",
                   "outbox[0].pending[0]: not a string");
        expect_bad("{\"version\":1,\"environments\":{},\"recipients\":[{\"id\":\"n\"}]}", "recipients[0]: not");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_full),
                cmocka_unit_test(test_outbox_round_trip),
                cmocka_unit_test(test_pause_and_skips_round_trip),
                cmocka_unit_test(test_round_trip_empty),
                cmocka_unit_test(test_nulls_and_absent_keys),
                cmocka_unit_test(test_unknown_keys_ignored),
                cmocka_unit_test(test_times_normalised),
                cmocka_unit_test(test_environment_order),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_format_refuses_invalid),
                cmocka_unit_test(test_earlier_file_loads),
                cmocka_unit_test(test_not_json),
                cmocka_unit_test(test_wrong_shape),
                cmocka_unit_test(test_environments_cut_out),
                cmocka_unit_test(test_wrong_types),
                cmocka_unit_test(test_bad_times),
                cmocka_unit_test(test_every_prefix),
                cmocka_unit_test(test_too_big),
                cmocka_unit_test(test_get),
                cmocka_unit_test(test_prune),
                cmocka_unit_test(test_find_many),
                cmocka_unit_test(test_free_null),
                cmocka_unit_test(test_load_missing),
                cmocka_unit_test(test_save_load),
                cmocka_unit_test(test_zuora_clock_kept),
                cmocka_unit_test(test_load_corrupt),
                cmocka_unit_test(test_save_failures),
                cmocka_unit_test(test_move_aside),
                cmocka_unit_test(test_intent_record),
                cmocka_unit_test(test_intent_record_sealed_but_wrong),
                cmocka_unit_test(test_intent_log_replay),
                cmocka_unit_test(test_intent_log_ring),
                cmocka_unit_test(test_intent_log_open),
                cmocka_unit_test(test_save_full_filesystem), /* last: it leaves us in a mount namespace */
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
