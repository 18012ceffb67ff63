/* SPDX-License-Identifier: MIT */
/*
 * Zuora's own e-mail list of each environment (GET/POST/DELETE
 * /test-environments/{id}/notifications) kept in step with notify_emails:
 * an address in the config and missing at Zuora is added; one refreshd
 * added (the state records which) and the config no longer lists is
 * removed; a recipient someone added in Zuora's UI is never touched. Each
 * change is logged. Runs at start, on reload and when a slot fires, one
 * sync per environment at a time; a failed one is tried again at the next
 * of those.
 */
#pragma once

#include <stdbool.h>

#include "client.h"
#include "config.h"
#include "state.h"
#include "zuora.h"

typedef struct Recipients Recipients;

int recipients_new(
        Client *client, State *state, void (*save_later)(void *), void *userdata, Recipients **ret);
Recipients *recipients_free(Recipients *r);

/* The config the lists come from (a reference is taken); syncs every
 * environment that has a list, or recipients refreshd added. */
void recipients_set_config(Recipients *r, Config *c);

/* Syncs environment EC's list (again after the one under way, if any). */
void recipients_sync(Recipients *r, const EnvConfig *ec);

/* What a sync changes, found from Zuora's list AT (N of them) and what
 * refreshd added to this environment (the state S; NULL: unknown, nothing
 * removed). */
typedef struct RecipientPlan {
        const NotifyEmail **add; /* into EC's list */
        size_t n_add;
        const ZuoraRecipient **remove; /* into AT */
        size_t n_remove;
        const StateRecipient **forget; /* into S: added by refreshd, gone at Zuora */
        size_t n_forget;
} RecipientPlan;

int recipients_plan(
        const EnvConfig *ec, const ZuoraRecipient *at, size_t n, const State *s, RecipientPlan *ret);
/* Removes P's forgotten records of ENVIRONMENT from S, the state P was planned from. */
void recipient_plan_forget(const RecipientPlan *p, State *s, const char *environment);
void recipient_plan_done(RecipientPlan *p);

/* Whether environment EC has anything to keep in step: a list in the
 * config, or recipients refreshd added (S may be NULL). */
bool recipients_wanted(const EnvConfig *ec, const State *s);
