/* SPDX-License-Identifier: MIT */
/*
 * The Zuora client against the simulator: its admission queue (first come,
 * first sent, never more than max_concurrent_requests at Zuora), one token
 * request however many calls wait for it, one new token and one retry
 * after a 401, a queued call cancelled before it is sent, a reload while
 * calls wait (none sent without a token), and credentials that never leave
 * base_url.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "client.h"
#include "macro.h"
#include "sim-child.h"

#define LOOP_DEADLINE_USEC (20 * USEC_PER_SEC)

static char tmpdir[] = "/tmp/test-client-XXXXXX";
static const char *sim_program;
static Sim sim = { .pid = -1 };

typedef struct Fixture {
        sd_event *event;
        Config *config;
        Client *client;
        unsigned n_done;
} Fixture;

typedef struct Call {
        Fixture *f;
        ClientCall *call;
        unsigned done, order;
        ZuoraVerdict verdict;
        long status;
        bool token_failed;
} Call;

static void fixture_init(Fixture *f, unsigned max_concurrent) {
        char *text;
        Diags d = {};
        Secret *secret = NULL;

        *f = (Fixture) {};
        setenv("TEST_CLIENT_SECRET", "demo-secret", 1);
        assert_true(asprintf(&text,
                             "zuora:\n  base_url: http://%s\n  client_id: demo-client\n"
                             "  client_secret_env: TEST_CLIENT_SECRET\n  max_concurrent_requests: %u\n"
                             "environments:\n  - name: e\n    id: e1\n    schedule: \"0 3 * * *\"\n",
                             sim.base, max_concurrent) > 0);
        assert_int_equal(config_load_string("t.yaml", text, strlen(text), 0, &f->config, &d), 0);
        free(text);
        diags_clear(&d);
        assert_int_equal(secret_read(f->config, &secret), 0);
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(client_new(f->event, f->config, secret, &f->client), 0);
        assert_int_equal(sim_control(&sim, "POST", "/_sim/reset", "{}", NULL), 200);
}

static void fixture_done(Fixture *f) {
        client_free(f->client);
        config_free(f->config);
        sd_event_unref(f->event);
}

static void on_done(const ClientResult *r, void *userdata) {
        Call *c = userdata;

        c->done++;
        c->order = ++c->f->n_done;
        c->verdict = r->verdict;
        c->status = r->response->status;
        c->token_failed = r->token_failed;
        c->call = NULL;
}

static void call(Fixture *f, Call *c, const char *path, const char *track_id) {
        char *url;

        assert_true(asprintf(&url, "http://%s%s", sim.base, path) > 0);
        c->f = f;
        ClientRequest req = { .method = HTTP_METHOD_GET, .url = url, .track_id = track_id };
        assert_int_equal(client_call(f->client, &req, on_done, c, &c->call), 0);
        free(url);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

static void loop_until(Fixture *f, unsigned n_done) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *deadline = NULL;
        bool late = false;

        assert_int_equal(sd_event_add_time_relative(f->event, &deadline, CLOCK_MONOTONIC, LOOP_DEADLINE_USEC, 1,
                                                    on_deadline, &late),
                         0);
        while (f->n_done < n_done && !late)
                assert_true(sd_event_run(f->event, UINT64_MAX) >= 0);
        if (late)
                fail_msg("timed out waiting for %u answers (saw %u; simulator %s)", n_done, f->n_done,
                         sim_health(&sim));
}

/* The requests the simulator recorded for paths matching PATH_RE, in the order they came. */
static yajl_val requests(const char *path_re) {
        char *path, *body = NULL, err[200];
        yajl_val v;

        assert_true(asprintf(&path, "/_sim/requests?path=%s", path_re) > 0);
        assert_int_equal(sim_control(&sim, "GET", path, NULL, &body), 200);
        v = yajl_tree_parse(body, err, sizeof(err));
        assert_non_null(v);
        assert_true(YAJL_IS_ARRAY(v));
        free(path);
        free(body);
        return v;
}

static const char *header(yajl_val rec, const char *name) {
        const char *path[] = { "headers", name, NULL };
        yajl_val v = yajl_tree_get(rec, path, yajl_t_string);
        return v ? YAJL_GET_STRING(v) : NULL;
}

static double number(yajl_val rec, const char *key) {
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(rec, path, yajl_t_number);
        assert_non_null(v);
        return YAJL_GET_DOUBLE(v);
}

static size_t count(const char *path_re) {
        yajl_val v = requests(path_re);
        size_t n = YAJL_GET_ARRAY(v)->len;
        yajl_tree_free(v);
        return n;
}

/* ---- tests ---- */

static void test_admission_is_first_come_first_sent(void **state) {
        const double delay = 0.3;
        Fixture f;
        Call calls[12] = {};
        char tracks[12][32];

        fixture_init(&f, 3);
        assert_int_equal(sim_control(&sim, "POST", "/_sim/faults",
                                     "{\"match\":{\"path\":\"t-fifo\"},\"action\":\"slow\",\"delay\":0.3,\"times\":-1}",
                                     NULL),
                         200);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                snprintf(tracks[i], sizeof(tracks[i]), "track-%02zu", i);
                call(&f, &calls[i], "/test-environments/t-fifo", tracks[i]);
        }
        loop_until(&f, ELEMENTSOF(calls));
        assert_int_equal(client_pending(f.client), 0);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                assert_int_equal(calls[i].verdict, ZUORA_VERDICT_OK);

        /* One token for all twelve. */
        assert_int_equal(count("oauth"), 1);

        /* Sent in the order they were made, three at a time: the calls of
         * each wave of three arrive together, after the wave before. */
        yajl_val recs = requests("t-fifo");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, ELEMENTSOF(calls));
        for (size_t k = 0; k < ELEMENTSOF(calls); k++) {
                const char *t = header(YAJL_GET_ARRAY(recs)->values[k], "Zuora-Track-Id");
                unsigned i;
                assert_non_null(t);
                assert_int_equal(sscanf(t, "track-%u", &i), 1);
                if (i / 3 != k / 3)
                        fail_msg("%s came %zuth: not in the wave of three it was sent in", t, k + 1);
        }
        /* ... and never more than three at once: four arrivals never fall within one delay. */
        for (size_t k = 0; k + 3 < ELEMENTSOF(calls); k++) {
                double a = number(YAJL_GET_ARRAY(recs)->values[k], "time");
                double b = number(YAJL_GET_ARRAY(recs)->values[k + 3], "time");
                if (b - a < delay - 0.02)
                        fail_msg("arrivals %zu and %zu are %.3f s apart: more than three in flight", k, k + 3, b - a);
        }
        yajl_tree_free(recs);
        fixture_done(&f);
}

static void test_queued_call_cancelled_is_never_sent(void **state) {
        Fixture f;
        Call a = {}, b = {}, c = {};

        fixture_init(&f, 1);
        assert_int_equal(sim_control(&sim, "POST", "/_sim/faults",
                                     "{\"match\":{\"path\":\"t-slow\"},\"action\":\"slow\",\"delay\":0.3,\"times\":-1}",
                                     NULL),
                         200);
        call(&f, &a, "/test-environments/t-slow", NULL);
        call(&f, &b, "/test-environments/t-never", NULL);
        call(&f, &c, "/test-environments/t-after", NULL);
        client_cancel(b.call);
        loop_until(&f, 2);
        assert_int_equal(a.done, 1);
        assert_int_equal(b.done, 0);
        assert_int_equal(c.done, 1);
        assert_int_equal(c.order, 2);
        assert_int_equal(count("t-never"), 0);
        fixture_done(&f);
}

static void test_401_gets_one_new_token(void **state) {
        Fixture f;
        Call a = {}, b = {};

        fixture_init(&f, 2);
        call(&f, &a, "/test-environments/t-auth", NULL);
        loop_until(&f, 1);
        assert_int_equal(a.verdict, ZUORA_VERDICT_OK);
        /* The token is revoked: the next call's 401 drops it, a new one is fetched, the call sent again. */
        assert_int_equal(sim_control(&sim, "POST", "/_sim/tokens/expire", "{}", NULL), 200);
        call(&f, &b, "/test-environments/t-auth", NULL);
        loop_until(&f, 2);
        assert_int_equal(b.verdict, ZUORA_VERDICT_OK);
        assert_int_equal(count("oauth"), 2);
        assert_int_equal(count("t-auth"), 3);
        fixture_done(&f);
}

/* A reload (new config and secret) drops the token while calls wait in the
 * queue: each waits for the new token; none goes out as "Bearer (null)". */
static void test_reload_with_calls_queued(void **state) {
        Fixture f;
        Call calls[6] = {};
        Secret *secret = NULL;

        fixture_init(&f, 1);
        assert_int_equal(sim_control(&sim, "POST", "/_sim/faults",
                                     "{\"match\":{\"path\":\"t-queued\"},\"action\":\"slow\",\"delay\":0.2,\"times\":-1}",
                                     NULL),
                         200);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                call(&f, &calls[i], "/test-environments/t-queued", NULL);
        /* The first is at Zuora, the rest queued behind it. */
        for (unsigned i = 0; i < 2000 && count("t-queued") == 0; i++)
                assert_true(sd_event_run(f.event, 1000) >= 0);
        assert_int_equal(count("t-queued"), 1);
        assert_int_equal(secret_read(f.config, &secret), 0);
        assert_int_equal(client_reconfigure(f.client, f.config, secret), 0);
        loop_until(&f, ELEMENTSOF(calls));
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                assert_int_equal(calls[i].verdict, ZUORA_VERDICT_OK);
        yajl_val recs = requests("t-queued");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, ELEMENTSOF(calls));
        for (size_t k = 0; k < ELEMENTSOF(calls); k++) {
                const char *auth = header(YAJL_GET_ARRAY(recs)->values[k], "Authorization");
                assert_non_null(auth);
                if (strncmp(auth, "Bearer ", 7) != 0 || strstr(auth, "(null)") || strlen(auth) < 8)
                        fail_msg("request %zu went out with \"%s\"", k, auth);
        }
        yajl_tree_free(recs);
        assert_int_equal(count("oauth"), 2);
        fixture_done(&f);
}

static void test_wrong_secret_fails_without_loop(void **state) {
        Fixture f;
        Call a = {};

        fixture_init(&f, 2);
        assert_int_equal(sim_control(&sim, "POST", "/_sim/config", "{\"client_secret\": \"other\"}", NULL), 200);
        call(&f, &a, "/test-environments/t-bad", NULL);
        loop_until(&f, 1);
        assert_true(a.token_failed);
        assert_int_equal(a.verdict, ZUORA_VERDICT_REAUTH);
        assert_int_equal(count("t-bad"), 0);
        assert_int_equal(count("oauth"), 1);
        fixture_done(&f);
}

static void test_credentials_stay_on_base_url(void **state) {
        Fixture f;
        ClientCall *c = NULL;
        char *url = NULL;

        fixture_init(&f, 2);
        assert_int_equal(client_call(f.client, CLIENT_GET("http://127.0.0.2:9/x"), on_done, NULL, &c), -EPERM);
        assert_null(c);
        assert_int_equal(client_resolve(f.client, "https://evil.example/jobs/1", &url), -EPERM);
        free(url);
        assert_int_equal(client_resolve(f.client, "/test-environments/e1/jobs/j", &url), 0);
        assert_true(client_url_is_ours(f.client, url));
        free(url);
        url = client_url(f.client, ZUORA_ENDPOINT_JOB, "e1", "j");
        assert_non_null(strstr(url, "/test-environments/e1/jobs/j"));
        free(url);
        assert_int_equal(client_pending(f.client), 0);
        fixture_done(&f);
}

/* ---- setup ---- */

static int group_setup(void **state) {
        return sim_group_start(&sim, sim_program, tmpdir);
}

static int group_teardown(void **state) {
        sim_group_stop(&sim, tmpdir);
        return 0;
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_admission_is_first_come_first_sent),
                cmocka_unit_test(test_queued_call_cancelled_is_never_sent),
                cmocka_unit_test(test_401_gets_one_new_token),
                cmocka_unit_test(test_reload_with_calls_queued),
                cmocka_unit_test(test_wrong_secret_fails_without_loop),
                cmocka_unit_test(test_credentials_stay_on_base_url),
        };

        sim_program = sim_path(argc, argv);
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
