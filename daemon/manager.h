/* SPDX-License-Identifier: MIT */
/*
 * The daemon: the sd_event loop and everything hanging off it (the Zuora
 * client, one Env per environment, the state file, signals, the watchdog,
 * sd_notify). main() runs: manager_new() -> manager_start() -> READY=1 ->
 * sd_event_loop().
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "client.h"
#include "config.h"
#include "env.h"
#include "state.h"
#include "store.h"
#include "timerq.h"

/* What manager_new() returns when the config (or its client secret) cannot
 * be used, its problems reported, and what nothing else in refreshd
 * returns: main() turns it, and only it, into exit status 78 (EX_CONFIG). */
#define MANAGER_ERR_CONFIG (-ENOEXEC)

typedef struct Manager {
        sd_event *event;
        char *config_path;
        char *state_dir;
        Config *config;
        Client *client;
        Store *store;
        State *state;
        EnvHost host;                  /* what the environments reach the rest through */
        struct Outbox *outbox;         /* the events' hooks and webhooks */
        char *outbox_dir;              /* where their event files go */
        struct Recipients *recipients; /* Zuora's e-mail lists in step with notify_emails */
        Env **envs;
        size_t n_envs;
        TimerQueue *slots; /* every environment's slot timer (CLOCK_REALTIME) */
        TimerQueue *waits; /* their polls and backoffs (CLOCK_BOOTTIME) */

        sd_event_source *save_source; /* defer: one state write per loop iteration */
        sd_event_source *save_timer;  /* CLOCK_MONOTONIC: ends a postponed write's wait */
        uint64_t save_postponed_usec; /* CLOCK_MONOTONIC: since when state.json waits for POSTs, or 0 */
        unsigned n_checking;          /* environments whose checks are out: a POST may follow */
        bool save_failing;            /* an error was logged for this failure streak */
        sd_event_source *reload_source;
        sd_event_source *clock_source;  /* wakes when CLOCK_REALTIME is set */
        sd_event_source *status_source; /* CLOCK_MONOTONIC: one STATUS= rebuild per second at most */
        uint64_t status_sent_usec;      /* CLOCK_MONOTONIC: when it was last rebuilt */
        char *status_text;              /* the last STATUS= sent */
        struct Control *control;        /* the control socket (io.refreshd.Manager); NULL: none */
        sd_event_source *pause_timer;   /* CLOCK_REALTIME: the next pause to end by itself */
        bool clock_warned;              /* Zuora's clock was reported off ... */
        int64_t clock_warned_offset;    /* ... by this much, µs */
} Manager;

/* Loads the config (errors printed; MANAGER_ERR_CONFIG when it cannot be
 * used) and the state. */
int manager_new(sd_event *event, const char *config_path, const char *state_dir, Manager **ret);
Manager *manager_free(Manager *m);

/* Arms every timer, resumes jobs in flight, catches up missed slots,
 * listens on the control socket at CONTROL_PATH (NULL: the default; a
 * socket that cannot be had is reported, and the daemon runs without) and
 * sends READY=1. */
int manager_start(Manager *m, const char *control_path);

/* The state directory to use when none is given: $STATE_DIRECTORY, else
 * /var/lib/refreshd. Returns a new string. */
char *manager_default_state_dir(void);
