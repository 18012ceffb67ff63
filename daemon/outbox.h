/* SPDX-License-Identifier: MIT */
/*
 * What follows an event: its hooks run and its webhooks posted, with the
 * care the refresh itself gets. An event that has any is put in the
 * state's outbox (written with the state) before the first of them runs,
 * and each hook or webhook leaves it only when it is done: a hook that
 * ended (whatever its exit status), a webhook that got a 2xx or was given
 * up. After a crash, what is still there runs again, with the same event
 * id.
 *
 * Hooks of one environment run one at a time, in event order; of different
 * environments side by side, at most max_concurrent_hooks. Webhooks go out
 * at once, through their own HTTP pool (never Zuora's: no token can reach
 * them), and are retried with backoff on 5xx, 429 and network errors for
 * the environment's retry_for.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "event.h"
#include "state.h"

typedef struct Outbox Outbox;

typedef struct OutboxOptions {
        sd_event *event;
        State *state;                       /* the outbox's entries live in it */
        const char *files_dir;              /* where the hooks' event files are written */
        void (*save_later)(void *userdata); /* the state changed */
        void (*idle)(void *userdata);       /* nothing left to run; may be NULL */
        void *userdata;
        bool once; /* webhooks are tried once (refreshd hooks) */
} OutboxOptions;

int outbox_new(const OutboxOptions *options, Outbox **ret);

/* Stops what runs (hooks get SIGTERM; they run again after a restart). */
Outbox *outbox_free(Outbox *o);

/* The config whose hooks and webhooks run (a reference is taken), at start
 * and on reload; then runs what the state's outbox holds. */
int outbox_set_config(Outbox *o, Config *c);

/* Event EV of environment EC happened: its hooks and webhooks are queued
 * (nothing when it has none, or when an event of the same id is queued). */
int outbox_raise(Outbox *o, const EnvConfig *ec, const Event *ev);

/* How many ended in failure (hook_failed, or a webhook given up). */
unsigned outbox_failures(const Outbox *o);

/* Each webhook of C whose URL is read from a file, a credential or a
 * variable, read and checked (https, or http to loopback); every problem
 * printed to F (NULL: reported) as PATH:LINE:COLUMN: error: …. Returns the
 * number of problems. */
unsigned outbox_check_webhook_urls(const Config *c, FILE *f);

/* Where the hooks' event files go: DIR/events, made absolute. A new string. */
char *outbox_files_dir(const char *state_dir);
