/* SPDX-License-Identifier: MIT */
/*
 * The HTTP client on a real sd-event loop against the Zuora simulator
 * (tests/sim/zuora_sim.py, started as a child on a free port): what goes
 * over the wire, what comes back, every failure class with its errno and
 * maybe_sent, TLS, the connection pool's bound, cancellation, re-entrant
 * callbacks, and that redirects are never followed.
 *
 * The simulator's path comes from $ZUORA_SIM, else argv[1], else it is
 * found next to this source file.
 *
 * Callbacks only record what they saw; the asserts run afterwards, on the
 * test's own stack, because cmocka's failures longjmp and must not cross
 * sd-event's dispatch. The loop is driven with sd_event_run() until a
 * counter is reached rather than ended with sd_event_exit(): a loop that
 * has exited cannot run again, and the control API needs it after every
 * request under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "http.h"
#include "macro.h"
#include "sim-child.h"

#define LOOP_DEADLINE_USEC (20 * USEC_PER_SEC)
#define MiB ((size_t) 1024 * 1024)
#define GET(u) (&(HttpRequestSpec) { .method = HTTP_METHOD_GET, .url = (u) })

typedef struct Fixture {
        sd_event *event;
        Http *http;
        sd_event_source *deadline;
        bool timed_out;
        unsigned n_done;
} Fixture;

/* One request under test and the copy of its response. */
typedef struct Call {
        Fixture *f;
        HttpRequest *req;
        void *data;
        unsigned done;
        unsigned order; /* f->n_done when it finished, from 1 */
        int error;
        bool maybe_sent;
        bool body_terminated;
        long status;
        char *error_text;
        char *body;
        size_t body_size;
        char *location, *retry_after, *ratelimit_reset, *content_type;
        uint64_t elapsed_usec;
} Call;

static char tmpdir[] = "/tmp/test-http-XXXXXX";
static const char *sim_program;
static Sim sim = { .pid = -1 };
static Sim tls_sim = { .pid = -1 };

static void yajl_tree_freep(yajl_val *v) {
        if (*v)
                yajl_tree_free(*v);
}

static char *xstrdup(const char *s) {
        if (!s)
                return NULL;
        char *p = strdup(s);
        assert_non_null(p);
        return p;
}

static char *path_join(const char *a, const char *b) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s%s", a, b) >= 0);
        return p;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- the simulator ---- */

static char *sim_url(const char *path) {
        char *p = NULL;
        assert_true(asprintf(&p, "http://%s%s", sim.base, path) >= 0);
        return p;
}

/* ---- the loop ---- */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Fixture *f = userdata;
        f->timed_out = true;
        return 0;
}

/* Runs the loop until *counter reaches target; fails after a deadline. */
static void loop_until(Fixture *f, const unsigned *counter, unsigned target) {
        uint64_t now;

        assert_true(sd_event_now(f->event, CLOCK_MONOTONIC, &now) >= 0); /* > 0 before the first run */
        assert_int_equal(sd_event_add_time(f->event, &f->deadline, CLOCK_MONOTONIC, now + LOOP_DEADLINE_USEC,
                                           /* accuracy= */ 1, on_deadline, f),
                         0);
        while (*counter < target && !f->timed_out)
                assert_true(sd_event_run(f->event, UINT64_MAX) >= 0);
        f->deadline = sd_event_source_disable_unref(f->deadline);
        if (f->timed_out)
                fail_msg("the loop timed out waiting for %u callbacks (saw %u)", target, *counter);
}

static void add_timer(sd_event *e, sd_event_source **ret, uint64_t usec, sd_event_time_handler_t cb,
                      void *data) {
        int r = sd_event_add_time_relative(e, ret, CLOCK_MONOTONIC, usec, /* accuracy= */ 1, cb, data);
        assert_int_equal(r, 0);
}

static int on_flag_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (*(unsigned *) userdata)++;
        return 0;
}

/* Runs the loop for a while, whatever happens. */
static void loop_for(Fixture *f, uint64_t usec) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL;
        unsigned fired = 0;

        add_timer(f->event, &t, usec, on_flag_timer, &fired);
        loop_until(f, &fired, 1);
}

/* The options most tests use: TIMEOUT_USEC a call, MAX_CONCURRENT at once. */
static HttpOptions test_options(uint64_t timeout_usec, unsigned max_connections) {
        return (HttpOptions) {
                .user_agent = "refreshd-test/1.0",
                .timeout_usec = timeout_usec,
                .max_body = MiB,
                .max_connections = max_connections,
        };
}

static void fixture_init(Fixture *f, const HttpOptions *options) {
        HttpOptions defaults = test_options(10 * USEC_PER_SEC, 4);

        defaults.max_body = 4 * MiB;

        *f = (Fixture) {};
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(http_new(f->event, options ?: &defaults, &f->http), 0);
}

static void fixture_done(Fixture *f) {
        f->http = http_free(f->http);
        f->deadline = sd_event_source_disable_unref(f->deadline);
        f->event = sd_event_unref(f->event);
}

/* ---- requests ---- */

static void call_clear(Call *c) {
        free(c->error_text);
        free(c->body);
        free(c->location);
        free(c->retry_after);
        free(c->ratelimit_reset);
        free(c->content_type);
        *c = (Call) {};
}

static void call_record(Call *c, const HttpResponse *resp) {
        c->error = resp->error;
        c->maybe_sent = resp->maybe_sent;
        c->status = resp->status;
        c->error_text = xstrdup(resp->error_text);
        c->body_terminated = resp->body && resp->body[resp->body_size] == 0;
        c->body = malloc(resp->body_size + 1);
        assert_non_null(c->body);
        memcpy(c->body, resp->body ?: "", resp->body ? resp->body_size + 1 : 1);
        c->body_size = resp->body_size;
        c->location = xstrdup(resp->location);
        c->retry_after = xstrdup(resp->retry_after);
        c->ratelimit_reset = xstrdup(resp->ratelimit_reset);
        c->content_type = xstrdup(resp->content_type);
        c->elapsed_usec = resp->elapsed_usec;
}

static void on_done(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        Call *c = userdata;

        call_record(c, resp);
        c->done++;
        c->order = ++c->f->n_done;
}

static void call_submit_with(Fixture *f, Call *c, const HttpRequestSpec *spec, HttpDoneFunc done) {
        c->f = f;
        assert_int_equal(http_submit(f->http, spec, done, c, &c->req), 0);
        assert_non_null(c->req);
}

static void call_submit(Fixture *f, Call *c, const HttpRequestSpec *spec) {
        call_submit_with(f, c, spec, on_done);
}

/* GET (or POST with a JSON body) on the simulator, waiting for the answer. */
static void call_run(Fixture *f, Call *c, const char *path, const char *json) {
        _cleanup_free_ char *url = sim_url(path);

        call_submit(f, c,
                    &(HttpRequestSpec) {
                            .method = json ? HTTP_METHOD_POST : HTTP_METHOD_GET,
                            .url = url,
                            .body = json,
                            .body_size = json ? strlen(json) : 0,
                            .content_type = json ? "application/json" : NULL,
                    });
        loop_until(f, &c->done, 1);
}

/* A control API call that must succeed; returns the parsed answer. */
static yajl_val sim_request(Fixture *f, const char *path, const char *json) {
        _cleanup_(call_clear) Call c = {};
        char err[256];

        call_run(f, &c, path, json);
        if (c.error != 0 || c.status != 200)
                fail_msg("%s: error %d (%s), status %ld, simulator %s: %s", path, c.error, c.error_text,
                         c.status, sim_health(&sim), c.body);
        yajl_val v = yajl_tree_parse(c.body, err, sizeof(err));
        if (!v)
                fail_msg("%s: bad JSON: %s", path, err);
        return v;
}

static void sim_post(Fixture *f, const char *path, const char *json) {
        yajl_tree_free(sim_request(f, path, json));
}

/* Requests whose path matches never get an answer. */
static void sim_hang(Fixture *f, const char *path_re) {
        _cleanup_free_ char *rule = NULL;

        assert_true(asprintf(&rule, "{\"match\":{\"path\":\"%s\"},\"action\":\"hang\",\"times\":-1}",
                             path_re) >= 0);
        sim_post(f, "/_sim/faults", rule);
}

/* Faults and recorded requests start empty in every test. */
static void sim_reset(Fixture *f) {
        sim_post(f, "/_sim/reset", "{}");
}

static yajl_val sim_requests(Fixture *f, const char *path_re) {
        _cleanup_free_ char *path = path_join("/_sim/requests?path=", path_re);
        yajl_val v = sim_request(f, path, NULL);
        assert_true(YAJL_IS_ARRAY(v));
        return v;
}

static const char *rec_string(yajl_val rec, const char *key) {
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(rec, path, yajl_t_string);
        return v ? YAJL_GET_STRING(v) : NULL;
}

static double rec_number(yajl_val rec, const char *key) {
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(rec, path, yajl_t_number);
        assert_non_null(v);
        return YAJL_GET_DOUBLE(v);
}

/* A request header as the simulator received it (names are compared
 * case-insensitively; a repeated header counts as present, first value). */
static const char *rec_header(yajl_val rec, const char *name) {
        const char *path[] = { "headers", NULL };
        yajl_val h = yajl_tree_get(rec, path, yajl_t_object);

        assert_non_null(h);
        for (size_t i = 0; i < YAJL_GET_OBJECT(h)->len; i++) {
                if (strcasecmp(YAJL_GET_OBJECT(h)->keys[i], name) != 0)
                        continue;
                yajl_val v = YAJL_GET_OBJECT(h)->values[i];
                if (YAJL_IS_ARRAY(v) && YAJL_GET_ARRAY(v)->len > 0)
                        v = YAJL_GET_ARRAY(v)->values[0];
                return YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : "";
        }
        return NULL;
}

/* ---- tests ---- */

static void test_api(void **state) {
        sd_event *e = NULL;
        Http *h = NULL;
        HttpOptions o = { .max_body = 1024, .max_connections = 0 };

        assert_string_equal(http_method_to_string(HTTP_METHOD_GET), "GET");
        assert_string_equal(http_method_to_string(HTTP_METHOD_POST), "POST");
        assert_null(http_method_to_string(_HTTP_METHOD_MAX));
        assert_null(http_free(NULL));
        assert_int_equal(http_pending(NULL), 0);
        http_cancel(NULL);

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(http_new(e, &o, &h), -EINVAL);
        assert_null(h);
        o.max_connections = 1;
        assert_int_equal(http_new(e, &o, &h), 0);
        assert_int_equal(http_submit(h, &(HttpRequestSpec) { .method = HTTP_METHOD_GET }, NULL, NULL, NULL),
                         -EINVAL);
        assert_int_equal(http_submit(h,
                                     &(HttpRequestSpec) {
                                             .method = HTTP_METHOD_GET,
                                             .url = "http://127.0.0.1:9/",
                                             .body = "x",
                                             .body_size = 1,
                                     },
                                     NULL, NULL, NULL),
                         -EINVAL);
        assert_int_equal(http_pending(h), 0);
        http_free(h);
        sd_event_unref(e);
}

static void test_get(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};
        _cleanup_free_ char *url = sim_url("/test-environments/t-get");
        const char *headers[] = { "X-Refreshd-Test: get", "Zuora-Track-Id: track-get", NULL };

        fixture_init(&f, NULL);
        sim_reset(&f);
        HttpRequestSpec spec = { .method = HTTP_METHOD_GET, .url = url, .headers = headers };

        call_submit(&f, &c, &spec);
        assert_int_equal(http_pending(f.http), 1);
        loop_until(&f, &c.done, 1);
        assert_int_equal(http_pending(f.http), 0);

        /* No token: the real API answers 401 with a JSON body. */
        assert_int_equal(c.error, 0);
        assert_true(c.maybe_sent);
        assert_int_equal(c.status, 401);
        assert_string_equal(c.content_type, "application/json");
        assert_true(c.body_size > 0 && c.body[0] == '{');
        assert_true(c.body_terminated);
        assert_true(c.elapsed_usec > 0);
        assert_non_null(c.error_text);
        assert_null(c.location);

        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "t-get");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, 1);
        yajl_val r = YAJL_GET_ARRAY(recs)->values[0];
        assert_string_equal(rec_string(r, "method"), "GET");
        assert_string_equal(rec_string(r, "path"), "/test-environments/t-get");
        assert_string_equal(rec_header(r, "User-Agent"), "refreshd-test/1.0");
        assert_string_equal(rec_header(r, "X-Refreshd-Test"), "get");
        assert_string_equal(rec_header(r, "Zuora-Track-Id"), "track-get");
        assert_string_equal(rec_header(r, "Accept-Encoding"), "gzip");
        assert_null(rec_header(r, "Content-Type"));
        assert_null(rec_header(r, "Expect"));
}

static void test_post(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call token = {}, big = {};
        _cleanup_free_ char *token_url = sim_url("/oauth/token");
        _cleanup_free_ char *big_url = sim_url("/test-environments/t-post/jobs");
        const char form[] = "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret";
        const char *headers[] = { "X-Refreshd-Test: post", NULL };
        /* Over 1 MiB: where curl would otherwise send "Expect: 100-continue". */
        size_t big_size = MiB + 4096;
        _cleanup_free_ char *body = malloc(big_size + 1);

        assert_non_null(body);
        memset(body, 'a', big_size);
        body[big_size] = 0;

        fixture_init(&f, NULL);
        sim_reset(&f);
        unsigned base = f.n_done;
        call_submit(&f, &token,
                    &(HttpRequestSpec) {
                            .method = HTTP_METHOD_POST,
                            .url = token_url,
                            .headers = headers,
                            .body = form,
                            .body_size = strlen(form),
                            .content_type = "application/x-www-form-urlencoded",
                    });
        call_submit(&f, &big,
                    &(HttpRequestSpec) {
                            .method = HTTP_METHOD_POST,
                            .url = big_url,
                            .body = body,
                            .body_size = big_size,
                            .content_type = "text/plain",
                    });
        memset(body, 'b', big_size); /* the body was copied */
        loop_until(&f, &f.n_done, base + 2);

        assert_int_equal(token.error, 0);
        assert_int_equal(token.status, 200);
        assert_non_null(strstr(token.body, "\"access_token\""));
        assert_int_equal(big.error, 0);
        assert_true(big.status >= 400); /* unauthenticated */

        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "^/oauth/token$");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, 1);
        yajl_val r = YAJL_GET_ARRAY(recs)->values[0];
        assert_string_equal(rec_string(r, "method"), "POST");
        assert_string_equal(rec_string(r, "body"), form);
        assert_string_equal(rec_header(r, "Content-Type"), "application/x-www-form-urlencoded");
        assert_string_equal(rec_header(r, "User-Agent"), "refreshd-test/1.0");
        assert_string_equal(rec_header(r, "X-Refreshd-Test"), "post");
        assert_null(rec_header(r, "Expect"));

        _cleanup_(yajl_tree_freep) yajl_val recs2 = sim_requests(&f, "t-post");
        assert_int_equal(YAJL_GET_ARRAY(recs2)->len, 1);
        r = YAJL_GET_ARRAY(recs2)->values[0];
        const char *got = rec_string(r, "body");
        assert_non_null(got);
        assert_int_equal(strlen(got), big_size);
        assert_true(strspn(got, "a") == big_size);
        assert_string_equal(rec_header(r, "Content-Type"), "text/plain");
        assert_null(rec_header(r, "Expect"));
}

static void test_status_404(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults",
                 "{\"match\":{\"path\":\"t-404\"},\"action\":\"status\",\"status\":404,"
                 "\"body\":\"no such thing\"}");
        call_run(&f, &c, "/test-environments/t-404", NULL);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.status, 404);
        assert_string_equal(c.body, "no such thing");
        assert_int_equal(c.body_size, strlen("no such thing"));
        assert_string_equal(c.content_type, "text/plain; charset=utf-8");
}

static void test_headers(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};

        fixture_init(&f, NULL);
        sim_reset(&f);
        /* The value with blanks around it must come back trimmed, and the
         * lower-case name must still be recognised. */
        sim_post(&f, "/_sim/faults",
                 "{\"match\":{\"path\":\"t-headers\"},\"action\":\"status\",\"status\":429,"
                 "\"retry_after\":7,\"headers\":{\"Location\":\"/test-environments/elsewhere\","
                 "\"ratelimit-reset\":\"  12\\t \"}}");
        call_run(&f, &c, "/test-environments/t-headers", NULL);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.status, 429);
        assert_string_equal(c.location, "/test-environments/elsewhere");
        assert_string_equal(c.retry_after, "7");
        assert_string_equal(c.ratelimit_reset, "12");
        assert_string_equal(c.content_type, "application/json");
}

static void test_gzip(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call small = {}, big = {};
        const char json[] = "{\"hello\":\"world\"}";
        char err[256];

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_post(&f, "/_sim/config", "{\"gzip_always\":true}");
        sim_post(&f, "/_sim/faults",
                 "[{\"match\":{\"path\":\"t-gzip-small\"},\"action\":\"status\",\"status\":200,"
                 "\"body\":{\"hello\":\"world\"}},"
                 "{\"match\":{\"path\":\"t-gzip-big\"},\"action\":\"huge_body\",\"size\":300000}]");
        call_run(&f, &small, "/test-environments/t-gzip-small", NULL);
        call_run(&f, &big, "/test-environments/t-gzip-big", NULL);

        /* Compressed on the wire, so a raw body would start with 1f 8b. */
        assert_int_equal(small.error, 0);
        assert_int_equal(small.status, 200);
        assert_string_equal(small.body, json);
        assert_int_equal(big.error, 0);
        assert_true(big.body_size > 300000);
        yajl_val v = yajl_tree_parse(big.body, err, sizeof(err));
        assert_non_null(v);
        yajl_tree_free(v);

        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "t-gzip");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, 2);
        assert_string_equal(rec_header(YAJL_GET_ARRAY(recs)->values[0], "Accept-Encoding"), "gzip");
}

static void test_body_cap(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call over = {}, under = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 2);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults",
                 "[{\"match\":{\"path\":\"t-over\"},\"action\":\"huge_body\"},"
                 "{\"match\":{\"path\":\"t-under\"},\"action\":\"huge_body\",\"size\":1000000}]");
        call_run(&f, &over, "/test-environments/t-over", NULL);
        call_run(&f, &under, "/test-environments/t-under", NULL);

        assert_int_equal(over.error, -EMSGSIZE);
        assert_true(over.maybe_sent);
        assert_int_equal(over.status, 200);
        assert_true(over.body_size <= MiB);
        assert_true(over.body_terminated);
        assert_non_null(strstr(over.error_text, "1048576"));

        assert_int_equal(under.error, 0);
        assert_true(under.body_size > 1000000 && under.body_size <= MiB);
}

static void test_timeout(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};
        HttpOptions o = test_options(USEC_PER_SEC, 4);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults", "{\"match\":{\"path\":\"t-hang\"},\"action\":\"hang\"}");
        uint64_t start = now_usec();
        call_run(&f, &c, "/test-environments/t-hang", NULL);
        uint64_t took = now_usec() - start;

        assert_int_equal(c.error, -ETIMEDOUT);
        assert_true(c.maybe_sent); /* the request was written, then no answer */
        assert_int_equal(c.status, 0);
        assert_int_equal(c.body_size, 0);
        assert_string_equal(c.body, "");
        assert_true(c.elapsed_usec >= 900 * USEC_PER_MSEC);
        assert_true(took >= 900 * USEC_PER_MSEC && took < 5 * USEC_PER_SEC);
}

typedef struct Late {
        Fixture *f;
        Call *call;
        char *url;
} Late;

static int on_late_submit(sd_event_source *s, uint64_t usec, void *userdata) {
        Late *l = userdata;

        call_submit(l->f, l->call, GET(l->url));
        return 0;
}

/* A request still times out on time when another one, started before it,
 * ended first: the curl timer is not moved to later deadlines, so it may
 * fire early, and must then be armed again for the deadline curl still
 * wants (curl does not repeat a deadline it already gave). */
static void test_timeout_after_earlier(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call slow = {}, hang = {};
        _cleanup_(sd_event_source_unrefp) sd_event_source *later = NULL;
        _cleanup_free_ char *slow_url = sim_url("/test-environments/t-early-slow");
        Late late = { .f = &f, .call = &hang, .url = sim_url("/test-environments/t-early-hang") };
        HttpOptions o = test_options(USEC_PER_SEC, 2);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults",
                 "[{\"match\":{\"path\":\"t-early-slow\"},\"action\":\"slow\",\"delay\":0.3},"
                 "{\"match\":{\"path\":\"t-early-hang\"},\"action\":\"hang\"}]");
        uint64_t start = now_usec();
        call_submit(&f, &slow, GET(slow_url));
        add_timer(f.event, &later, 200 * USEC_PER_MSEC, on_late_submit, &late);
        loop_until(&f, &slow.done, 1);
        loop_until(&f, &hang.done, 1);
        uint64_t took = now_usec() - start;

        assert_int_equal(slow.error, 0);
        assert_int_equal(hang.error, -ETIMEDOUT);
        assert_true(took >= 1100 * USEC_PER_MSEC && took < 3 * USEC_PER_SEC);
        free(late.url);
}

/* A port on which nothing listens: bound once by us, then released. */
static unsigned closed_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        _cleanup_(closep) int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        return ntohs(a.sin_port);
}

static void test_refused(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};
        _cleanup_free_ char *url = NULL;

        assert_true(asprintf(&url, "http://127.0.0.1:%u/x", closed_port()) >= 0);
        fixture_init(&f, NULL);
        HttpRequestSpec spec = { .method = HTTP_METHOD_POST, .url = url, .body = "{}", .body_size = 2 };

        call_submit(&f, &c, &spec);
        loop_until(&f, &c.done, 1);
        assert_int_equal(c.error, -ECONNREFUSED);
        assert_false(c.maybe_sent);
        assert_int_equal(c.status, 0);
        assert_string_equal(c.body, "");
        assert_true(strlen(c.error_text) > 0);
}

static void test_reset_mid_body(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults", "{\"match\":{\"path\":\"t-reset\"},\"action\":\"reset_mid_body\"}");
        call_run(&f, &c, "/test-environments/t-reset", NULL);
        assert_int_equal(c.error, -ECONNRESET);
        assert_true(c.maybe_sent);
        assert_true(c.body_terminated);
}

static void test_truncated(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults", "{\"match\":{\"path\":\"t-trunc\"},\"action\":\"truncated_json\"}");
        call_run(&f, &c, "/test-environments/t-trunc", NULL);
        /* A FIN before Content-Length was reached. */
        assert_int_equal(c.error, -ECONNRESET);
        assert_true(c.maybe_sent);
}

static int make_certificate(const char *cert, const char *key) {
        _cleanup_free_ char *cmd = NULL;

        if (system("openssl version >/dev/null 2>&1") != 0)
                return -ENOENT;
        assert_true(asprintf(&cmd,
                             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=refreshd-test "
                             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' >/dev/null 2>&1",
                             key, cert) >= 0);
        return system(cmd) == 0 ? 0 : -EIO;
}

static void tls_get(const char *ca_file, const char *url, Call *c) {
        _cleanup_(fixture_done) Fixture f = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 1);
        o.ca_file = ca_file;

        fixture_init(&f, &o);
        call_submit(&f, c, GET(url));
        loop_until(&f, &c->done, 1);
}

static void test_tls(void **state) {
        _cleanup_free_ char *cert = path_join(tmpdir, "/cert.pem"), *key = path_join(tmpdir, "/key.pem");
        _cleanup_free_ char *url = NULL;
        _cleanup_(call_clear) Call untrusted = {}, trusted = {};

        if (make_certificate(cert, key) < 0)
                skip(); /* no openssl here */
        const char *args[] = { "--tls-cert", cert, "--tls-key", key, NULL };
        assert_int_equal(sim_start(&tls_sim, sim_program, tmpdir, "tls", args), 0);
        assert_true(asprintf(&url, "https://%s/_sim/health", tls_sim.base) >= 0);

        tls_get(NULL, url, &untrusted);
        assert_int_equal(untrusted.error, -EPROTO);
        assert_false(untrusted.maybe_sent); /* the handshake failed, nothing was sent */
        assert_int_equal(untrusted.status, 0);
        assert_non_null(strcasestr(untrusted.error_text, "certificate"));

        tls_get(cert, url, &trusted);
        assert_int_equal(trusted.error, 0);
        assert_int_equal(trusted.status, 200);
        assert_string_equal(trusted.body, "ok");
        sim_stop(&tls_sim);
}

static int compare_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static void test_concurrency(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_free_ char *url = sim_url("/test-environments/t-conc");
        Call calls[20] = {};
        double t[ELEMENTSOF(calls)];
        const double delay = 0.3;

        fixture_init(&f, NULL); /* max_connections = 4: curl holds the others until a connection is free */
        sim_reset(&f);
        sim_post(&f, "/_sim/faults",
                 "{\"match\":{\"path\":\"t-conc\"},\"action\":\"slow\",\"delay\":0.3,\"times\":-1}");
        unsigned base = f.n_done;
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                call_submit(&f, &calls[i], GET(url));
        assert_int_equal(http_pending(f.http), ELEMENTSOF(calls));
        loop_until(&f, &f.n_done, base + ELEMENTSOF(calls));
        assert_int_equal(http_pending(f.http), 0);

        /* Every one answered; in which order is the caller's to keep (the
         * client's admission queue, test-client.c). */
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                assert_int_equal(calls[i].error, 0);
                assert_int_equal(calls[i].status, 401);
        }

        /* Each request keeps the server busy for `delay`. If five were in
         * flight at once, five arrivals would fall within less than that. */
        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "t-conc");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, ELEMENTSOF(calls));
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                t[i] = rec_number(YAJL_GET_ARRAY(recs)->values[i], "time");
        qsort(t, ELEMENTSOF(t), sizeof(double), compare_double);
        for (size_t i = 0; i + 4 < ELEMENTSOF(t); i++)
                if (t[i + 4] - t[i] < delay - 0.02)
                        fail_msg("requests %zu and %zu arrived %.3f s apart: more than 4 in flight", i,
                                 i + 4, t[i + 4] - t[i]);
        /* ... and the limit was actually used: the first four ran together. */
        assert_true(t[3] - t[0] < delay);

        /* The pool holds at most four connections, and they are reused. */
        unsigned ports[ELEMENTSOF(calls)], n_ports = 0;
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                unsigned p = (unsigned) rec_number(YAJL_GET_ARRAY(recs)->values[i], "client_port");
                bool seen = false;
                for (unsigned j = 0; j < n_ports; j++)
                        seen = seen || ports[j] == p;
                if (!seen)
                        ports[n_ports++] = p;
        }
        assert_true(n_ports <= 4);

        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                call_clear(&calls[i]);
}

/* Easy handles are pooled: a handle that ran a POST must carry nothing of
 * it into the GET after it (method, body, headers, its prereq callback),
 * and the other way round. */
static void test_handle_reuse(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_free_ char *url_a = sim_url("/test-environments/t-reuse-a");
        _cleanup_free_ char *url_b = sim_url("/test-environments/t-reuse-b");
        _cleanup_free_ char *url_c = sim_url("/test-environments/t-reuse-c");
        _cleanup_free_ char *url_d = sim_url("/test-environments/t-reuse-d");
        const char *headers[] = { "X-Refreshd-Test: reuse", NULL };
        Call calls[5] = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 1);
        HttpRequestSpec post = {
                .method = HTTP_METHOD_POST,
                .headers = headers,
                .body = "{\"a\":1}",
                .body_size = 7,
                .content_type = "application/json",
        };

        fixture_init(&f, &o);
        sim_reset(&f);
        unsigned base = f.n_done;
        /* One after the other, so that each takes the handle the last gave back. */
        post.url = url_a;
        call_submit(&f, &calls[0], &post);
        loop_until(&f, &f.n_done, base + 1);
        call_submit(&f, &calls[1], GET(url_b));
        loop_until(&f, &f.n_done, base + 2);
        call_submit(&f, &calls[2], GET(url_c));
        loop_until(&f, &f.n_done, base + 3);
        post.url = url_d;
        call_submit(&f, &calls[3], &post);
        loop_until(&f, &f.n_done, base + 4);
        call_submit(&f, &calls[4], GET(url_b));
        loop_until(&f, &f.n_done, base + ELEMENTSOF(calls));
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                assert_int_equal(calls[i].error, 0);
                assert_int_equal(calls[i].status, 401);
                assert_int_equal(calls[i].order, base + i + 1);
        }

        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "t-reuse");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, ELEMENTSOF(calls));
        yajl_val r[ELEMENTSOF(calls)];
        unsigned port[ELEMENTSOF(calls)];
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                r[i] = YAJL_GET_ARRAY(recs)->values[i];
                port[i] = (unsigned) rec_number(r[i], "client_port");
        }
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                bool is_post = i == 0 || i == 3;
                const char *body = rec_string(r[i], "body");

                assert_string_equal(rec_string(r[i], "method"), is_post ? "POST" : "GET");
                assert_string_equal(rec_header(r[i], "User-Agent"), "refreshd-test/1.0");
                assert_string_equal(rec_header(r[i], "Accept-Encoding"), "gzip");
                assert_null(rec_header(r[i], "Expect"));
                if (is_post) {
                        assert_string_equal(body, "{\"a\":1}");
                        assert_string_equal(rec_header(r[i], "X-Refreshd-Test"), "reuse");
                        assert_string_equal(rec_header(r[i], "Content-Type"), "application/json");
                } else {
                        assert_true(!body || body[0] == 0);
                        assert_null(rec_header(r[i], "X-Refreshd-Test"));
                        assert_null(rec_header(r[i], "Content-Type"));
                        assert_null(rec_header(r[i], "Content-Length"));
                }
        }
        /* One connection for all: a POST takes a warm one and leaves it open. */
        for (size_t i = 1; i < ELEMENTSOF(calls); i++)
                assert_int_equal(port[i], port[0]);

        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                call_clear(&calls[i]);
}

/* A POST on a warm connection that closes without an answer (Zuora may
 * have acted on it): curl would send it again on a new connection by
 * itself. It must not: the call fails as "maybe sent", and the caller
 * decides. The next POST goes normally. */
static void test_post_never_resent(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call get = {}, post = {}, again = {};
        _cleanup_free_ char *url = sim_url("/test-environments/t-resend/jobs");
        HttpOptions o = test_options(10 * USEC_PER_SEC, 1);
        HttpRequestSpec spec = {
                .method = HTTP_METHOD_POST,
                .url = url,
                .body = "{}",
                .body_size = 2,
                .content_type = "application/json",
        };

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults", "{\"match\":{\"method\":\"POST\",\"path\":\"t-resend/jobs\"},"
                                     "\"action\":\"commit_then_fail\",\"variant\":\"close\",\"times\":1}");
        call_run(&f, &get, "/test-environments/t-resend", NULL);
        assert_int_equal(get.status, 401);

        unsigned base = f.n_done;
        call_submit(&f, &post, &spec);
        loop_until(&f, &f.n_done, base + 1);
        assert_int_equal(post.error, -ECONNRESET);
        assert_true(post.maybe_sent);
        assert_int_equal(post.status, 0);
        assert_non_null(strstr(post.error_text, "not sent again"));

        call_submit(&f, &again, &spec);
        loop_until(&f, &f.n_done, base + 2);
        assert_int_equal(again.error, 0);
        assert_int_equal(again.status, 401);

        _cleanup_(yajl_tree_freep) yajl_val recs = sim_requests(&f, "t-resend");
        assert_int_equal(YAJL_GET_ARRAY(recs)->len, 3); /* GET, POST, the next POST: none resent */
        yajl_val r[3];
        for (size_t i = 0; i < 3; i++)
                r[i] = YAJL_GET_ARRAY(recs)->values[i];
        assert_string_equal(rec_string(r[1], "method"), "POST");
        assert_string_equal(rec_string(r[2], "method"), "POST");
        /* The POST took the GET's warm connection. */
        assert_int_equal(rec_number(r[1], "client_port"), rec_number(r[0], "client_port"));
}

static int on_cancel_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Call *calls = userdata;
        Fixture *f = calls[0].f;

        /* The queued one first, then the one curl is running. */
        http_cancel(calls[1].req);
        calls[1].data = (void *) (uintptr_t) http_pending(f->http);
        http_cancel(calls[0].req);
        calls[0].data = (void *) (uintptr_t) http_pending(f->http);
        return 0;
}

static int on_exit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static void test_cancel(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_free_ char *url = sim_url("/test-environments/t-cancel");
        _cleanup_(sd_event_source_unrefp) sd_event_source *cancel = NULL, *stop = NULL;
        Call calls[2] = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 1);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_hang(&f, "t-cancel");
        call_submit(&f, &calls[0], GET(url));
        call_submit(&f, &calls[1], GET(url));
        assert_int_equal(http_pending(f.http), 2);

        add_timer(f.event, &cancel, 300 * USEC_PER_MSEC, on_cancel_timer, calls);
        add_timer(f.event, &stop, 800 * USEC_PER_MSEC, on_exit_timer, NULL);
        assert_int_equal(sd_event_loop(f.event), 0);

        assert_int_equal((uintptr_t) calls[1].data, 1);
        assert_int_equal((uintptr_t) calls[0].data, 0);
        assert_int_equal(calls[0].done + calls[1].done, 0);
        assert_int_equal(f.n_done, 2); /* the two control calls only */
        assert_int_equal(http_pending(f.http), 0);
}

typedef struct Chain {
        Call calls[3];
        Call hang;
        char *url;
        int submit_result;
        size_t pending_in_callback;
} Chain;

/* Submits the next request and cancels a running one, from inside a done
 * callback; also cancels itself, which must change nothing. */
static void on_chain_done(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        Call *c = userdata;
        Chain *chain = c->data;
        size_t i = (size_t) (c - chain->calls);

        on_done(req, resp, c);
        http_cancel(req);
        if (i == 0)
                http_cancel(chain->hang.req);
        if (i + 1 < ELEMENTSOF(chain->calls)) {
                Call *next = &chain->calls[i + 1];
                HttpRequestSpec spec = { .method = HTTP_METHOD_GET, .url = chain->url };

                next->f = c->f;
                next->data = chain;
                chain->submit_result = http_submit(c->f->http, &spec, on_chain_done, next, &next->req);
        }
        if (i == 0)
                chain->pending_in_callback = http_pending(c->f->http);
}

static void test_submit_from_callback(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_free_ char *hang_url = sim_url("/test-environments/t-chain-hang");
        Chain chain = { .url = sim_url("/test-environments/t-chain") };

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_hang(&f, "t-chain-hang");
        unsigned base = f.n_done;
        call_submit(&f, &chain.hang, GET(hang_url));
        chain.calls[0].data = &chain;
        call_submit_with(&f, &chain.calls[0], GET(chain.url),
                         on_chain_done);
        loop_until(&f, &f.n_done, base + 3);
        loop_for(&f, 200 * USEC_PER_MSEC); /* nothing else may arrive */

        assert_int_equal(chain.submit_result, 0);
        assert_int_equal(chain.pending_in_callback, 1); /* only the new one */
        assert_int_equal(chain.hang.done, 0);
        for (size_t i = 0; i < ELEMENTSOF(chain.calls); i++) {
                assert_int_equal(chain.calls[i].done, 1);
                assert_int_equal(chain.calls[i].order, base + i + 1);
                assert_int_equal(chain.calls[i].status, 401);
                call_clear(&chain.calls[i]);
        }
        assert_int_equal(f.n_done, base + 3);
        assert_int_equal(http_pending(f.http), 0);
        free(chain.url);
}

static void test_no_redirect(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(call_clear) Call c = {};
        _cleanup_free_ char *fault = NULL, *target = NULL;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        _cleanup_(closep) int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        /* The other host: a listening socket that must see no connection. */
        assert_true(l >= 0);
        assert_int_equal(bind(l, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(l, 8), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *) &a, &len), 0);
        assert_true(asprintf(&target, "http://127.0.0.1:%u/stolen", ntohs(a.sin_port)) >= 0);
        assert_true(asprintf(&fault,
                             "{\"match\":{\"path\":\"t-redirect\"},\"action\":\"status\",\"status\":302,"
                             "\"headers\":{\"Location\":\"%s\"}}",
                             target) >= 0);

        fixture_init(&f, NULL);
        sim_reset(&f);
        sim_post(&f, "/_sim/faults", fault);
        call_run(&f, &c, "/test-environments/t-redirect", NULL);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.status, 302);
        assert_string_equal(c.location, target);

        loop_for(&f, 100 * USEC_PER_MSEC);
        assert_int_equal(accept4(l, NULL, NULL, SOCK_CLOEXEC), -1);
        assert_int_equal(errno, EAGAIN);
}

/* A one-shot server on the test's loop: reads one request head, answers
 * with fixed bytes and closes. For replies the simulator cannot make. */
typedef struct Canned {
        const char *reply;
        int listen_fd, conn_fd;
        sd_event_source *listen_source, *conn_source;
        char head[8192];
        size_t head_size;
        char *url;
} Canned;

static int on_canned_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Canned *c = userdata;
        ssize_t n = read(fd, c->head + c->head_size, sizeof(c->head) - 1 - c->head_size);

        if (n > 0) {
                c->head_size += (size_t) n;
                c->head[c->head_size] = 0;
                if (!strstr(c->head, "\r\n\r\n"))
                        return 0;
                (void) write(fd, c->reply, strlen(c->reply)); /* small: fits the socket buffer */
        }
        c->conn_source = sd_event_source_disable_unref(c->conn_source);
        c->conn_fd = (close(c->conn_fd), -1);
        return 0;
}

static int on_canned_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Canned *c = userdata;
        int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

        if (conn < 0 || c->conn_fd >= 0) {
                if (conn >= 0)
                        close(conn);
                return 0;
        }
        c->conn_fd = conn;
        sd_event *e = sd_event_source_get_event(s);
        return sd_event_add_io(e, &c->conn_source, conn, EPOLLIN, on_canned_conn, c);
}

static void canned_start(Canned *c, sd_event *e, const char *reply) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        *c = (Canned) { .reply = reply, .conn_fd = -1 };
        c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(c->listen_fd >= 0);
        assert_int_equal(bind(c->listen_fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(c->listen_fd, 8), 0);
        assert_int_equal(getsockname(c->listen_fd, (struct sockaddr *) &a, &len), 0);
        assert_int_equal(
                sd_event_add_io(e, &c->listen_source, c->listen_fd, EPOLLIN, on_canned_accept, c), 0);
        assert_true(asprintf(&c->url, "http://127.0.0.1:%u/canned", ntohs(a.sin_port)) >= 0);
}

static void canned_stop(Canned *c) {
        c->conn_source = sd_event_source_disable_unref(c->conn_source);
        c->listen_source = sd_event_source_disable_unref(c->listen_source);
        if (c->conn_fd >= 0)
                close(c->conn_fd);
        if (c->listen_fd >= 0)
                close(c->listen_fd);
        free(c->url);
        *c = (Canned) { .listen_fd = -1, .conn_fd = -1 };
}

static void canned_get(const char *reply, Call *c) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_(canned_stop) Canned server = { .listen_fd = -1, .conn_fd = -1 };

        fixture_init(&f, NULL);
        canned_start(&server, f.event, reply);
        call_submit(&f, c, GET(server.url));
        loop_until(&f, &c->done, 1);
}

/* Headers of an interim 1xx block are not the answer's. */
static void test_interim_headers(void **state) {
        _cleanup_(call_clear) Call c = {};

        canned_get("HTTP/1.1 103 Early Hints\r\n"
                   "Link: </style.css>; rel=preload\r\n"
                   "Location: /from-103\r\n"
                   "Retry-After: 99\r\n"
                   "\r\n"
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/plain\r\n"
                   "Content-Length: 2\r\n"
                   "RATELIMIT-RESET:\t5\r\n"
                   "\r\n"
                   "ok",
                   &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.status, 200);
        assert_string_equal(c.body, "ok");
        assert_null(c.location);
        assert_null(c.retry_after);
        assert_string_equal(c.ratelimit_reset, "5");
        assert_string_equal(c.content_type, "text/plain");
}

static void test_not_http(void **state) {
        _cleanup_(call_clear) Call c = {};

        canned_get("SSH-2.0-OpenSSH_9.2\r\n\r\n", &c);
        assert_int_equal(c.error, -EPROTO);
        assert_true(c.maybe_sent);
        assert_int_equal(c.status, 0);
}

/* A header line over curl's 100 KiB: said as such, not as "Out of memory". */
static void test_giant_header(void **state) {
        _cleanup_(call_clear) Call c = {};
        _cleanup_free_ char *answer = NULL;
        const size_t n = 1000 * 1000;
        char *p;

        answer = malloc(n + 100);
        assert_non_null(answer);
        p = stpcpy(answer, "HTTP/1.1 200 OK\r\nX-Big: ");
        memset(p, 'a', n);
        strcpy(p + n, "\r\nContent-Length: 2\r\n\r\n{}");
        canned_get(answer, &c);
        assert_int_equal(c.error, -EMSGSIZE);
        assert_non_null(strstr(c.error_text, "header line larger than curl takes"));
        assert_null(strstr(c.error_text, "memory"));
}

static void on_done_free(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        Call *c = userdata;
        Fixture *f = c->f;

        on_done(req, resp, c);
        f->http = http_free(f->http);
}

/* A done callback may free the whole client: the running and the queued
 * requests go without callbacks, and nothing touches the freed object. */
static void test_free_in_callback(void **state) {
        _cleanup_(fixture_done) Fixture f = {};
        _cleanup_free_ char *hang_url = sim_url("/test-environments/t-free-hang");
        _cleanup_free_ char *url = sim_url("/test-environments/t-free-cb");
        _cleanup_(call_clear) Call first = {};
        Call others[3] = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 2);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_hang(&f, "t-free-hang");
        unsigned base = f.n_done;
        call_submit(&f, &others[0], GET(hang_url));
        call_submit_with(&f, &first, GET(url), on_done_free);
        call_submit(&f, &others[1], GET(url));
        call_submit(&f, &others[2], GET(url));
        loop_until(&f, &f.n_done, base + 1);
        loop_for(&f, 200 * USEC_PER_MSEC);

        assert_null(f.http);
        assert_int_equal(first.done, 1);
        assert_int_equal(first.status, 401);
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                assert_int_equal(others[i].done, 0);
        assert_int_equal(f.n_done, base + 1);
}

static void test_free_pending(void **state) {
        _cleanup_free_ char *url = sim_url("/test-environments/t-free");
        Fixture f;
        Call calls[3] = {};
        HttpOptions o = test_options(10 * USEC_PER_SEC, 2);

        fixture_init(&f, &o);
        sim_reset(&f);
        sim_hang(&f, "t-free");
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                call_submit(&f, &calls[i], GET(url));
        loop_for(&f, 300 * USEC_PER_MSEC);
        assert_int_equal(http_pending(f.http), 3);

        /* Two in curl, one queued: all go without callbacks. */
        fixture_done(&f);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                assert_int_equal(calls[i].done, 0);
}

/* ---- setup ---- */

static int group_setup(void **state) {
        return sim_group_start(&sim, sim_program, tmpdir);
}

static int group_teardown(void **state) {
        sim_stop(&tls_sim);
        sim_group_stop(&sim, tmpdir);
        return 0;
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_api),
                cmocka_unit_test(test_get),
                cmocka_unit_test(test_post),
                cmocka_unit_test(test_status_404),
                cmocka_unit_test(test_headers),
                cmocka_unit_test(test_gzip),
                cmocka_unit_test(test_body_cap),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_timeout_after_earlier),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_reset_mid_body),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_tls),
                cmocka_unit_test(test_concurrency),
                cmocka_unit_test(test_handle_reuse),
                cmocka_unit_test(test_post_never_resent),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_submit_from_callback),
                cmocka_unit_test(test_no_redirect),
                cmocka_unit_test(test_interim_headers),
                cmocka_unit_test(test_not_http),
                cmocka_unit_test(test_giant_header),
                cmocka_unit_test(test_free_pending),
                cmocka_unit_test(test_free_in_callback),
        };

        sim_program = sim_path(argc, argv);
        /* A hung-up connection must not kill the test. */
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
