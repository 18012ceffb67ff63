/* SPDX-License-Identifier: MIT */
/*
 * The operator commands beside the daemon: `check` (validates the config and
 * previews fire times), `status` (reads the config and
 * state.json, never talks to Zuora, never writes), `refresh`, `cancel` and
 * `check --online` (talk to Zuora with the daemon's own client), and `hooks`
 * (runs an environment's hooks and webhooks for a sample event). Each
 * returns the process exit status.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* Validates the config and prints the next NEXT fire times after FROM of
 * each environment (JSON with JSON); ONLINE: then command_check_online(). */
int command_check(const char *config_path, int64_t from, unsigned next, bool json, bool online);

int command_status(const char *config_path, const char *state_dir, bool json);

int command_refresh(const char *config_path, const char *env_name, bool wait);

int command_cancel(const char *config_path, const char *env_name);

int command_check_online(const char *config_path, const char *state_dir);

/* `refreshd hooks ENV --event NAME [--dry-run]`: ENV's hooks and webhooks
 * for a sample event of KIND (command-hooks.c). */
int command_hooks(const char *config_path, const char *env_name, EventKind kind, bool dry_run);

/* Through the daemon's control socket at PATH (command-control.c). */
int command_pause(const char *path, char *const *names, size_t n, int64_t until, const char *reason);
int command_resume(const char *path, char *const *names, size_t n, bool catch_up);
int command_skip(const char *path, const char *name, int64_t slot, const char *reason);
int command_unskip(const char *path, const char *name, int64_t slot);
/* Through the daemon, or from the config and the state when none answers. */
int command_list(const char *path, const char *config_path, const char *state_dir, bool json);
