/* SPDX-License-Identifier: MIT */
/* The events hooks and webhooks subscribe to: names, stable ids, JSON,
 * variables and placeholders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"
#include "json.h"
#include "macro.h"

static Event sample(EventKind kind) {
        Event e = EVENT_INIT;

        e.kind = kind;
        e.environment = (char *) "uat";
        e.environment_id = (char *) "env-1";
        e.slot = 1796612400; /* 2026-12-07T03:00:00Z */
        e.job_id = (char *) "8f3e";
        e.job_status = (char *) "COMPLETED";
        e.job_start = 1796612401;
        e.job_end = 1796616000;
        e.time = 1796616002;
        event_set_id(&e, NULL, NULL);
        return e;
}

static void test_names(void **state) {
        for (EventKind k = 0; k < _EVENT_KIND_MAX; k++) {
                assert_non_null(event_kind_to_string(k));
                assert_int_equal(event_kind_from_string(event_kind_to_string(k)), k);
        }
        assert_int_equal(event_kind_from_string("complete"), _EVENT_KIND_INVALID);
        assert_int_equal(event_kind_from_string(NULL), _EVENT_KIND_INVALID);
        assert_null(event_kind_to_string(_EVENT_KIND_MAX));
}

/* The same occurrence, the same id; any part of it different, another. */
static void test_ids(void **state) {
        Event a = sample(EVENT_COMPLETED), b = sample(EVENT_COMPLETED);

        assert_int_equal(strlen(a.id), EVENT_ID_LEN);
        assert_int_equal(strspn(a.id, "0123456789abcdef"), EVENT_ID_LEN);
        assert_string_equal(a.id, b.id);
        /* What is not part of the occurrence does not change it. */
        b.time += 60;
        b.job_status = (char *) "X";
        event_set_id(&b, NULL, NULL);
        assert_string_equal(a.id, b.id);

        char ids[8][EVENT_ID_LEN + 1];
        Event c;
        c = sample(EVENT_FAILED);
        memcpy(ids[0], c.id, sizeof(c.id));
        c = sample(EVENT_COMPLETED), c.environment = (char *) "uat2", event_set_id(&c, NULL, NULL);
        memcpy(ids[1], c.id, sizeof(c.id));
        c = sample(EVENT_COMPLETED), c.slot++, event_set_id(&c, NULL, NULL);
        memcpy(ids[2], c.id, sizeof(c.id));
        c = sample(EVENT_COMPLETED), c.job_id = NULL, event_set_id(&c, NULL, NULL);
        memcpy(ids[3], c.id, sizeof(c.id));
        c = sample(EVENT_COMPLETED), c.job_id = (char *) "", event_set_id(&c, NULL, NULL);
        memcpy(ids[4], c.id, sizeof(c.id));
        c = sample(EVENT_RETRYING), c.attempt = 2, event_set_id(&c, NULL, NULL);
        memcpy(ids[5], c.id, sizeof(c.id));
        c = sample(EVENT_RETRYING), c.attempt = 3, event_set_id(&c, NULL, NULL);
        memcpy(ids[6], c.id, sizeof(c.id));
        c = sample(EVENT_COMPLETED), c.test = true, event_set_id(&c, NULL, NULL);
        memcpy(ids[7], c.id, sizeof(c.id));
        for (size_t i = 0; i < 8; i++) {
                assert_string_not_equal(ids[i], a.id);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(ids[i], ids[j]);
        }
        /* hook_failed: one per failed hook of an event. */
        Event h1 = sample(EVENT_HOOK_FAILED), h2 = sample(EVENT_HOOK_FAILED);
        event_set_id(&h1, a.id, "hook:1");
        event_set_id(&h2, a.id, "hook:2");
        assert_string_not_equal(h1.id, h2.id);
        event_set_id(&h2, a.id, "hook:1");
        assert_string_equal(h1.id, h2.id);
}

static char *to_json(const Event *e) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        const char *text;
        size_t size;

        assert_int_equal(json_writer_init(&w, false, NULL, NULL), 0);
        event_write(&w, e);
        assert_int_equal(json_writer_text(&w, &text, &size), 0);
        return strndup(text, size);
}

static void test_json_round_trip(void **state) {
        Event e = sample(EVENT_COMPLETED), back;
        _cleanup_free_ char *text = to_json(&e), *again = NULL;
        _cleanup_(json_doc_done) JsonDoc d = {};
        const char *what;

        assert_non_null(strstr(text, "\"event\":\"completed\""));
        assert_non_null(strstr(text, "\"slot\":\"2026-12-07T03:00:00Z\""));
        assert_non_null(strstr(text, "\"track_id\":null"));
        assert_non_null(strstr(text, "\"test\":false"));
        assert_int_equal(json_parse(text, strlen(text), &(JsonOptions) { .max_depth = 8 }, &d, NULL), 0);
        assert_int_equal(event_read(d.root, &back, &what), 0);
        again = to_json(&back);
        assert_string_equal(text, again);
        event_done(&back);

        /* What is not an event is refused, naming the field. */
        static const struct {
                const char *text, *what;
        } bad[] = {
                { "[]", "not an object" },
                { "{\"id\":\"x\",\"event\":\"completed\",\"environment\":\"u\"}", "id" },
                { "{\"id\":\"0123456789abcdef0123456789abcdef\",\"event\":\"done\",\"environment\":\"u\"}", "event" },
                { "{\"id\":\"0123456789abcdef0123456789abcdef\",\"event\":\"lost\"}", "environment" },
                { "{\"id\":\"0123456789abcdef0123456789abcdef\",\"event\":\"lost\",\"environment\":\"u\","
                  "\"slot\":\"yesterday\"}",
                  "slot" },
                { "{\"id\":\"0123456789abcdef0123456789abcdef\",\"event\":\"lost\",\"environment\":\"u\","
                  "\"attempt\":-1}",
                  "attempt" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                _cleanup_(json_doc_done) JsonDoc b = {};
                assert_int_equal(
                        json_parse(bad[i].text, strlen(bad[i].text), &(JsonOptions) { .max_depth = 8 }, &b, NULL), 0);
                assert_int_equal(event_read(b.root, &back, &what), -EBADMSG);
                assert_string_equal(what, bad[i].what);
        }
}

static void test_expand(void **state) {
        Event e = sample(EVENT_COMPLETED);
        char *out;
        const char *bad;

        assert_int_equal(event_expand("--sandbox={environment} {job_id}/{slot} {{x}} {track_id}.", &e, &out, &bad), 0);
        assert_string_equal(out, "--sandbox=uat 8f3e/2026-12-07T03:00:00Z {x} .");
        assert_null(bad);
        free(out);
        assert_int_equal(event_expand("{event}:{event_id}", &e, &out, NULL), 0);
        assert_int_equal(strlen(out), strlen("completed:") + EVENT_ID_LEN);
        free(out);
        assert_int_equal(event_expand("", &e, &out, NULL), 0);
        assert_string_equal(out, "");
        free(out);

        static const struct {
                const char *t;
                size_t at;
        } wrong[] = { { "a{b", 1 }, { "a}b", 1 }, { "{enviroment}", 0 }, { "ok {slot} {", 10 }, { "{}", 0 } };
        for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
                assert_int_equal(event_expand(wrong[i].t, &e, &out, &bad), -EINVAL);
                assert_ptr_equal(bad, wrong[i].t + wrong[i].at);
        }
        /* Checking alone, without an event. */
        assert_int_equal(event_expand("{job_end}", NULL, &out, NULL), 0);
        free(out);
        assert_true(event_placeholder_known("message", 7));
        assert_false(event_placeholder_known("secret", 6));
}

static void test_environment(void **state) {
        Event e = sample(EVENT_COMPLETED);
        char **env;
        size_t n = 0;

        assert_int_equal(event_environment(&e, &env), 0);
        for (; env[n]; n++)
                assert_int_equal(strncmp(env[n], "REFRESHD_", 9), 0);
        assert_string_equal(env[0], "REFRESHD_EVENT=completed");
        assert_int_equal(strncmp(env[1], "REFRESHD_EVENT_ID=", 18), 0);
        bool slot = false, track = false;
        for (size_t i = 0; i < n; i++) {
                slot = slot || strcmp(env[i], "REFRESHD_SLOT=2026-12-07T03:00:00Z") == 0;
                track = track || strncmp(env[i], "REFRESHD_TRACK_ID=", 18) == 0;
        }
        assert_true(slot);
        assert_false(track); /* absent values are left out */
        strv_free(env);
}

static void test_summary(void **state) {
        Event e = sample(EVENT_FAILED);
        char *s;

        e.message = (char *) "ended: FAILED";
        assert_int_equal(event_summary(&e, &s), 0);
        assert_string_equal(s, "refreshd: uat failed, job 8f3e COMPLETED, slot 2026-12-07T03:00:00Z: ended: FAILED");
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),        cmocka_unit_test(test_ids),
                cmocka_unit_test(test_json_round_trip), cmocka_unit_test(test_expand),
                cmocka_unit_test(test_environment),  cmocka_unit_test(test_summary),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
