/* SPDX-License-Identifier: MIT */
/*
 * The config file: YAML in, one immutable, fully validated Config out. Every
 * mistake becomes a Diag with the file, line and column, and loading goes on
 * to find the others; a Config is handed out only when there were none.
 * Never logs; the caller prints the Diags. Never reads the client secret:
 * it only checks that its source is there.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "arena.h"
#include "cron.h"
#include "event.h"
#include "tz.h"

#define CONFIG_DEFAULT_PATH "/etc/refreshd/refreshd.yaml"
#define CONFIG_MAX_SIZE (8 * 1024 * 1024) /* 10,000 environments take about 1.3 MB */

typedef enum SecretSource {
        SECRET_SOURCE_FILE,
        SECRET_SOURCE_CREDENTIAL,
        SECRET_SOURCE_ENV,
        _SECRET_SOURCE_MAX,
        _SECRET_SOURCE_INVALID = -EINVAL,
} SecretSource;

typedef enum WhenIneligible {
        WHEN_INELIGIBLE_DEFER,
        WHEN_INELIGIBLE_SKIP,
        _WHEN_INELIGIBLE_MAX,
        _WHEN_INELIGIBLE_INVALID = -EINVAL,
} WhenIneligible;

typedef enum WebhookFormat {
        WEBHOOK_FORMAT_JSON,  /* the whole event */
        WEBHOOK_FORMAT_SLACK, /* {"text": one line}: Slack, Mattermost, Teams */
        _WEBHOOK_FORMAT_MAX,
        _WEBHOOK_FORMAT_INVALID = -EINVAL,
} WebhookFormat;

#define HOOK_TIMEOUT_DEFAULT (UINT64_C(30) * 60 * 1000000) /* µs */
#define MAX_CONCURRENT_HOOKS_DEFAULT 4

/* A command run on events: argv templates with {name} placeholders (event.h). */
typedef struct HookConfig {
        uint32_t on;                /* 1 << EventKind for each event it runs on */
        const char *const *argv;    /* NULL-terminated; argv[0] an absolute path */
        uint64_t timeout;           /* µs: then SIGTERM, and SIGKILL after HOOK_KILL_AFTER */
        char key[EVENT_ID_LEN + 1]; /* a digest of its argv: state.json's outbox names it by this */
        unsigned line, column;      /* where its entry starts */
} HookConfig;

/* A URL events are POSTed to. The URL may be a secret: it is written in
 * the config (URL), or read from a file, a credential or a variable. */
typedef struct WebhookConfig {
        uint32_t on;
        const char *url;         /* url:, or NULL ... */
        SecretSource url_source; /* ... and then where it is */
        const char *url_name;    /* the path, credential or variable as written */
        const char *url_path;    /* FILE and CREDENTIAL: the file it is read from */
        WebhookFormat format;
        char key[EVENT_ID_LEN + 1]; /* a digest of where its URL is, and its format */
        unsigned line, column;      /* of its url key's value */
} WebhookConfig;

/* A recipient of Zuora's own e-mails about an environment's jobs. */
typedef struct NotifyEmail {
        const char *address;
        const char *name; /* or NULL */
} NotifyEmail;

/* What follows an environment's events. Environments that say nothing of
 * their own share the defaults' (everything in the Config's STRINGS). */
typedef struct EnvActions {
        const HookConfig *hooks;
        size_t n_hooks;
        const WebhookConfig *webhooks;
        size_t n_webhooks;
        const NotifyEmail *emails;
        size_t n_emails;
} EnvActions;

/* The strings are in the Config's STRINGS, and environments with the same
 * schedule text share one string and one CronSpec (owned by the Config). */
typedef struct EnvConfig {
        const char *name;
        const char *id;       /* the Zuora Test Environment ID */
        const char *schedule; /* as written */
        const CronSpec *cron;
        Tz *tz;                                                        /* one reference */
        const EnvActions *actions;                                     /* never NULL */
        uint64_t poll_interval, min_interval, submit_ahead, retry_for; /* µs */
        unsigned line;                                                 /* where its entry starts */
        WhenIneligible when_ineligible : 8; /* 88 bytes in all: one per environment */
        bool catch_up;
        bool enabled;
} EnvConfig;

typedef struct Config {
        unsigned n_ref;
        char *path;
        char *base_url; /* without a trailing '/' */
        char *client_id;
        SecretSource secret_source;
        char *secret_name;                   /* the path, credential name or variable name as written */
        char *secret_path;                   /* FILE and CREDENTIAL: where the secret is read from */
        unsigned secret_line, secret_column; /* where its key's value is written */
        char *entity_id;                     /* or NULL */
        char *ca_file;                       /* or NULL */
        uint64_t request_timeout;            /* µs */
        unsigned max_concurrent_requests;
        unsigned max_concurrent_hooks; /* hooks running at once, all environments together */
        char *control_group; /* who may use the control socket besides root and refreshd; or NULL */
        gid_t control_gid;   /* its gid, when set */
        EnvConfig *envs;
        size_t n_envs;
        const EnvConfig **by_name; /* ENVS sorted by name, for config_find_env() */
        Arena strings;             /* the environments' strings */
        CronSpec **crons;          /* the distinct schedules */
        size_t n_crons;
} Config;

typedef struct Diag {
        unsigned line, column; /* from 1; 0 when the problem is the whole file */
        bool warning;
        char *message;
} Diag;

typedef struct Diags {
        char *path;
        Diag *items;
        size_t n;
        unsigned n_errors, n_warnings;
} Diags;

/* The config path to use when none is given: $CONFIGURATION_DIRECTORY/
 * refreshd.yaml under systemd, else CONFIG_DEFAULT_PATH. Returns a new string. */
char *config_default_path(void);

/* Loads and validates PATH. NOW (seconds since the epoch) anchors the
 * min_interval check, which looks four years ahead. Returns 0 and a Config
 * when DIAGS holds no error, -EINVAL when it does (warnings alone are fine),
 * -ENOMEM on allocation failure. */
int config_load(const char *path, int64_t now, Config **ret, Diags *diags);

/* Same, from text in memory (tests, fuzzing); PATH only names it in Diags. */
int config_load_string(
        const char *path, const char *text, size_t size, int64_t now, Config **ret, Diags *diags);

Config *config_ref(Config *c);

/* Drops a reference; frees with the last. */
Config *config_free(Config *c);

/* Looks up an environment by name (a binary search); NULL when there is none. */
const EnvConfig *config_find_env(const Config *c, const char *name);

/* Prints "PATH:LINE:COLUMN: error: MESSAGE", one line per Diag. */
void diags_print(const Diags *d, FILE *f);

void diags_clear(Diags *d);

/* Whether URL may receive events: https, or http to a loopback address.
 * NULL when it may, else why not (a static string). */
const char *config_check_url(const char *url);

/* Whether any environment has a hook, a webhook or an e-mail recipient. */
bool config_has_actions(const Config *c);

const char *secret_source_to_string(SecretSource s);
const char *webhook_format_to_string(WebhookFormat f);
const char *when_ineligible_to_string(WhenIneligible w);
