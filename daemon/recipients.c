/* SPDX-License-Identifier: MIT */
#include "recipients.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "list.h"
#include "macro.h"
#include "report.h"

typedef struct Sync Sync;

/* One environment's sync: the list's GET, then its POSTs and DELETEs. */
struct Sync {
        Recipients *owner;
        LIST_FIELDS(Sync, syncs);
        char *environment;
        unsigned outstanding; /* calls not answered yet */
        bool again;           /* asked for while this one ran */
        bool failed;
};

struct Recipients {
        Client *client;
        State *state;
        Config *config;
        void (*save_later)(void *);
        void *userdata;
        LIST_HEAD(Sync) syncs;
        LIST_HEAD(struct SyncCall) calls;
};

/* A call of a sync, and what it was about. */
typedef struct SyncCall {
        Sync *sync;
        LIST_FIELDS(struct SyncCall, calls);
        ClientCall *call;
        char *id;
        char *address;
} SyncCall;

/* ---- the plan ---- */

static bool has_created(const State *s, const char *environment, const char *id) {
        for (size_t i = 0; s && i < s->n_recipients; i++)
                if (strcmp(s->recipients[i].environment, environment) == 0 &&
                    strcmp(s->recipients[i].id, id) == 0)
                        return true;
        return false;
}

static bool listed(const EnvConfig *ec, const char *address) {
        for (size_t i = 0; i < ec->actions->n_emails; i++)
                if (strcasecmp(ec->actions->emails[i].address, address) == 0)
                        return true;
        return false;
}

int recipients_plan(
        const EnvConfig *ec, const ZuoraRecipient *at, size_t n, const State *s, RecipientPlan *ret) {
        const EnvActions *a = ec->actions;
        RecipientPlan p = {
                .add = calloc(a->n_emails + 1, sizeof(void *)),
                .remove = calloc(n + 1, sizeof(void *)),
                .forget = calloc((s ? s->n_recipients : 0) + 1, sizeof(void *)),
        };

        if (!p.add || !p.remove || !p.forget) {
                recipient_plan_done(&p);
                return -ENOMEM;
        }
        for (size_t i = 0; i < a->n_emails; i++) {
                bool there = false;
                for (size_t j = 0; j < n && !there; j++)
                        there = strcasecmp(at[j].address, a->emails[i].address) == 0;
                if (!there)
                        p.add[p.n_add++] = &a->emails[i];
        }
        for (size_t j = 0; j < n; j++)
                if (has_created(s, ec->name, at[j].id) && !listed(ec, at[j].address))
                        p.remove[p.n_remove++] = &at[j];
        for (size_t i = 0; s && i < s->n_recipients; i++) {
                const StateRecipient *c = &s->recipients[i];
                bool there = false;
                if (strcmp(c->environment, ec->name) != 0)
                        continue;
                for (size_t j = 0; j < n && !there; j++)
                        there = strcmp(at[j].id, c->id) == 0;
                if (!there)
                        p.forget[p.n_forget++] = c;
        }
        *ret = p;
        return 0;
}

void recipient_plan_forget(const RecipientPlan *p, State *s, const char *environment) {
        /* From the last: a removal moves the records after it, never those
         * before, which the rest of p->forget points to. */
        for (size_t i = p->n_forget; i-- > 0;)
                state_recipient_remove(s, environment, p->forget[i]->id);
}

void recipient_plan_done(RecipientPlan *p) {
        free(p->add);
        free(p->remove);
        free(p->forget);
        *p = (RecipientPlan) {};
}

bool recipients_wanted(const EnvConfig *ec, const State *s) {
        if (ec->actions->n_emails > 0)
                return true;
        for (size_t i = 0; s && i < s->n_recipients; i++)
                if (strcmp(s->recipients[i].environment, ec->name) == 0)
                        return true;
        return false;
}

/* ---- syncing ---- */

static void sync_start(Sync *y);

static void sync_free(Sync *y) {
        LIST_REMOVE(syncs, &y->owner->syncs, y);
        free(y->environment);
        free(y);
}

static ReportFields sync_fields(const EnvConfig *ec) {
        ReportFields f = REPORT_FIELDS_INIT;

        f.environment = ec->name;
        f.environment_id = ec->id;
        return f;
}

/* A call ended: the sync ends with the last (and starts again if asked). */
static void sync_call_end(Sync *y) {
        if (--y->outstanding > 0)
                return;
        if (y->again) {
                y->again = false;
                sync_start(y);
                if (y->outstanding > 0)
                        return;
        }
        sync_free(y);
}

static void sync_failed(Sync *y, const EnvConfig *ec, const ClientResult *res, const char *what) {
        char why[700], text[600];
        ZuoraAnswer a = client_result_answer(res, false);

        snprintf(why, sizeof(why), "%s: %s", what, zuora_answer_text(&a, text, sizeof(text)));
        if (!y->failed && ec) {
                ReportFields f = sync_fields(ec);
                f.http_status =
                        res->response && res->response->status ? res->response->status : REPORT_UNSET;
                report_recipients_failed(ec, &f, why);
        }
        y->failed = true;
}

static void sync_call_free(SyncCall *c) {
        if (c->call)
                LIST_REMOVE(calls, &c->sync->owner->calls, c);
        free(c->id);
        free(c->address);
        free(c);
}

static void on_added(const ClientResult *res, void *userdata) {
        SyncCall *c = userdata;
        Sync *y = c->sync;
        Recipients *r = y->owner;
        const EnvConfig *ec = config_find_env(r->config, y->environment);
        ZuoraRecipient got = {};

        if (res->verdict == ZUORA_VERDICT_OK && res->response &&
            zuora_parse_recipient(res->response->body, res->response->body_size, &got) >= 0) {
                (void) state_recipient_add(r->state, y->environment, got.id, got.address);
                r->save_later(r->userdata);
                if (ec) {
                        ReportFields f = sync_fields(ec);
                        report_recipient_changed(ec, &f, c->address, true);
                }
                free(got.id);
                free(got.address);
                free(got.name);
        } else
                sync_failed(y, ec, res, "adding a recipient");
        sync_call_free(c);
        sync_call_end(y);
}

static void on_removed(const ClientResult *res, void *userdata) {
        SyncCall *c = userdata;
        Sync *y = c->sync;
        Recipients *r = y->owner;
        const EnvConfig *ec = config_find_env(r->config, y->environment);

        /* Gone already is as good as removed. */
        if (res->verdict == ZUORA_VERDICT_OK || res->verdict == ZUORA_VERDICT_NOT_FOUND) {
                state_recipient_remove(r->state, y->environment, c->id);
                r->save_later(r->userdata);
                if (ec) {
                        ReportFields f = sync_fields(ec);
                        report_recipient_changed(ec, &f, c->address, false);
                }
        } else
                sync_failed(y, ec, res, "removing a recipient");
        sync_call_free(c);
        sync_call_end(y);
}

static int sync_send(
        Sync *y, const ClientRequest *req, ClientDoneFunc done, const char *id, const char *address) {
        SyncCall *c = calloc(1, sizeof(SyncCall));
        int r;

        if (!c || !(c->id = strdup(id ? id : "")) || !(c->address = strdup(address))) {
                if (c)
                        sync_call_free(c);
                return -ENOMEM;
        }
        c->sync = y;
        r = client_call(y->owner->client, req, done, c, &c->call);
        if (r < 0) {
                c->call = NULL;
                sync_call_free(c);
                return r;
        }
        LIST_APPEND(calls, &y->owner->calls, c);
        y->outstanding++;
        return 0;
}

static void sync_apply(Sync *y, const EnvConfig *ec, const RecipientPlan *p) {
        Recipients *r = y->owner;

        recipient_plan_forget(p, r->state, ec->name);
        if (p->n_forget > 0)
                r->save_later(r->userdata);
        for (size_t i = 0; i < p->n_add; i++) {
                _cleanup_free_ char *url = client_url(r->client, ZUORA_ENDPOINT_NOTIFICATIONS, ec->id, NULL);
                _cleanup_free_ char *body = zuora_recipient_body(p->add[i]->address, p->add[i]->name);
                if (url && body)
                        (void) sync_send(
                                y,
                                &(ClientRequest) { .method = HTTP_METHOD_POST, .url = url, .body = body },
                                on_added,
                                NULL,
                                p->add[i]->address);
        }
        for (size_t i = 0; i < p->n_remove; i++) {
                _cleanup_free_ char *url =
                        client_url(r->client, ZUORA_ENDPOINT_NOTIFICATION, ec->id, p->remove[i]->id);
                if (url)
                        (void) sync_send(
                                y,
                                &(ClientRequest) { .method = HTTP_METHOD_DELETE, .url = url },
                                on_removed,
                                p->remove[i]->id,
                                p->remove[i]->address);
        }
}

static void on_listed(const ClientResult *res, void *userdata) {
        SyncCall *c = userdata;
        Sync *y = c->sync;
        const EnvConfig *ec = config_find_env(y->owner->config, y->environment);
        ZuoraRecipient *at = NULL;
        size_t n = 0;
        RecipientPlan p;

        sync_call_free(c);
        if (!ec) {
                sync_call_end(y);
                return;
        }
        if (res->verdict != ZUORA_VERDICT_OK || !res->response ||
            zuora_parse_recipients(res->response->body, res->response->body_size, &at, &n) < 0)
                sync_failed(y, ec, res, "reading the list");
        else if (recipients_plan(ec, at, n, y->owner->state, &p) >= 0) {
                sync_apply(y, ec, &p);
                recipient_plan_done(&p);
        }
        zuora_recipients_free(at, n);
        sync_call_end(y);
}

static void sync_start(Sync *y) {
        const EnvConfig *ec = config_find_env(y->owner->config, y->environment);
        _cleanup_free_ char *url =
                ec ? client_url(y->owner->client, ZUORA_ENDPOINT_NOTIFICATIONS, ec->id, NULL) : NULL;

        y->failed = false;
        if (url)
                (void) sync_send(y, CLIENT_GET(url), on_listed, NULL, "");
}

void recipients_sync(Recipients *r, const EnvConfig *ec) {
        if (!r->config || !recipients_wanted(ec, r->state))
                return;
        for (Sync *y = r->syncs.head; y; y = y->syncs_next)
                if (strcmp(y->environment, ec->name) == 0) {
                        y->again = true;
                        return;
                }
        Sync *y = calloc(1, sizeof(Sync));
        if (!y || !(y->environment = strdup(ec->name))) {
                free(y);
                report_log(LOG_ERR, "environment '%s': out of memory", ec->name);
                return;
        }
        y->owner = r;
        LIST_APPEND(syncs, &r->syncs, y);
        sync_start(y);
        if (y->outstanding == 0)
                sync_free(y);
}

void recipients_set_config(Recipients *r, Config *c) {
        config_free(r->config);
        r->config = config_ref(c);
        for (size_t i = 0; i < c->n_envs; i++)
                recipients_sync(r, &c->envs[i]);
}

int recipients_new(
        Client *client, State *state, void (*save_later)(void *), void *userdata, Recipients **ret) {
        Recipients *r = calloc(1, sizeof(Recipients));

        if (!r)
                return -ENOMEM;
        *r = (Recipients) {
                .client = client, .state = state, .save_later = save_later, .userdata = userdata
        };
        *ret = r;
        return 0;
}

Recipients *recipients_free(Recipients *r) {
        if (!r)
                return NULL;
        while (r->calls.head) {
                SyncCall *c = r->calls.head;
                client_cancel(c->call);
                sync_call_free(c);
        }
        while (r->syncs.head)
                sync_free(r->syncs.head);
        config_free(r->config);
        free(r);
        return NULL;
}
