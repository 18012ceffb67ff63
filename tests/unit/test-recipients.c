/* SPDX-License-Identifier: MIT */
/* Keeping Zuora's e-mail list in step: what a sync adds, removes and
 * forgets, from the config, Zuora's list and what refreshd added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "recipients.h"
#include "state.h"

static Config *load(const char *emails) {
        char *text;
        Config *c = NULL;
        Diags d = {};

        setenv("REFRESHD_TEST_SECRET", "s", 1);
        assert_true(asprintf(&text,
                             "zuora:\n  base_url: https://rest.zuora.com\n  client_id: a\n"
                             "  client_secret_env: REFRESHD_TEST_SECRET\n"
                             "environments:\n  - name: uat\n    id: env-1\n    schedule: \"0 3 * * *\"\n%s",
                             emails) > 0);
        assert_int_equal(config_load_string("t.yaml", text, strlen(text), 1796612400, &c, &d), 0);
        diags_clear(&d);
        free(text);
        return c;
}

static void test_plan(void **state) {
        Config *c = load("    notify_emails:\n      - QA@example.com\n      - new@example.com\n");
        const EnvConfig *ec = &c->envs[0];
        ZuoraRecipient at[] = {
                { (char *) "n1", (char *) "qa@example.com", NULL },   /* listed (case aside): kept */
                { (char *) "n2", (char *) "hand@example.com", NULL }, /* added in Zuora's UI: never touched */
                { (char *) "n3", (char *) "old@example.com", NULL },  /* refreshd's, no longer listed: removed */
        };
        State *s = state_new();
        RecipientPlan p;

        assert_int_equal(state_recipient_add(s, "uat", "n3", "old@example.com"), 0);
        assert_int_equal(state_recipient_add(s, "uat", "n9", "gone@example.com"), 0); /* gone at Zuora: forgotten */
        assert_int_equal(state_recipient_add(s, "other", "n2", "hand@example.com"), 0); /* another env's */
        assert_int_equal(recipients_plan(ec, at, 3, s, &p), 0);
        assert_int_equal(p.n_add, 1);
        assert_string_equal(p.add[0]->address, "new@example.com");
        assert_int_equal(p.n_remove, 1);
        assert_string_equal(p.remove[0]->id, "n3");
        assert_int_equal(p.n_forget, 1);
        assert_string_equal(p.forget[0]->id, "n9");
        recipient_plan_done(&p);

        /* Forgotten from the state, several at once, the others kept in their order. */
        assert_int_equal(state_recipient_add(s, "uat", "n8", "gone2@example.com"), 0);
        assert_int_equal(state_recipient_add(s, "uat", "n7", "gone3@example.com"), 0);
        assert_int_equal(recipients_plan(ec, at, 3, s, &p), 0);
        assert_int_equal(p.n_forget, 3);
        recipient_plan_forget(&p, s, "uat");
        recipient_plan_done(&p);
        assert_int_equal(s->n_recipients, 2);
        assert_string_equal(s->recipients[0].id, "n3");
        assert_string_equal(s->recipients[1].environment, "other");
        assert_string_equal(s->recipients[1].id, "n2");

        /* Without the state nothing is removed. */
        assert_int_equal(recipients_plan(ec, at, 3, NULL, &p), 0);
        assert_int_equal(p.n_add, 1);
        assert_int_equal(p.n_remove, 0);
        recipient_plan_done(&p);
        assert_true(recipients_wanted(ec, NULL));
        state_free(s);
        config_free(c);

        /* No list in the config: only what refreshd added goes. */
        c = load("");
        s = state_new();
        assert_false(recipients_wanted(&c->envs[0], s));
        assert_int_equal(state_recipient_add(s, "uat", "n1", "qa@example.com"), 0);
        assert_true(recipients_wanted(&c->envs[0], s));
        assert_int_equal(recipients_plan(&c->envs[0], at, 3, s, &p), 0);
        assert_int_equal(p.n_add, 0);
        assert_int_equal(p.n_remove, 1);
        assert_string_equal(p.remove[0]->address, "qa@example.com");
        recipient_plan_done(&p);
        state_free(s);
        config_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plan),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
