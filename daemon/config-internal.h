/* SPDX-License-Identifier: MIT */
/*
 * What the files of the config loader share: config.c (the file, the
 * zuora section, defaults and environments) and config-actions.c (what
 * follows an event: hooks, webhooks, Zuora's e-mail list). Nothing outside
 * them includes this.
 */
#pragma once

#include "config.h"
#include "macro.h"
#include "yamltree.h"

typedef struct EnvSection EnvSection;

/* Where an environment's name and id were written: the duplicate checks
 * come after the environments' nodes are gone. 16 bytes: one per
 * environment. */
typedef struct NameAt {
        uint32_t env; /* its index in config->envs */
        uint32_t line, id_line;
        uint16_t column, id_column; /* columns past 65535 are cut */
} NameAt;

typedef struct Loader {
        Config *config;
        Diags *diags; /* where problems go: the caller's, or PENDING */
        YamlTree *tree;
        char *dir; /* the config file's directory */
        int64_t now;
        const char *context; /* the mapping being read, for messages: "zuora", "environment 'uat'" */
        Tz **zones;          /* loaded zones, shared by environments */
        size_t n_zones;
        int oom;

        /* Loading environments while the file is read (the stream hooks). */
        Diags *file_diags;             /* the caller's */
        Diags pending;                 /* what loading found: kept only if the whole file parses */
        const YamlNode *defaults_node; /* the root's first 'defaults' value, once read */
        EnvSection *defaults;          /* loaded from it, when ENVS_NODE is set */
        bool envs_seen;                /* the root's first 'environments' key was read */
        const YamlNode *envs_node;     /* its list, if loaded as read */
        size_t envs_allocated;         /* room in config->envs */
        NameAt *names;
        size_t n_names, names_allocated;

        /* The distinct schedules parsed so far: open addressing, power-of-two
         * size, an index into config->crons plus 1 (0: empty). */
        size_t *schedules;
        size_t schedules_size, crons_allocated;
} Loader;

_printf_(5, 6) void loader_diag(
        Loader *l, unsigned line, unsigned column, bool warning, const char *fmt, ...);

#define error_at(l, node, ...) loader_diag(l, (node)->line, (node)->column, false, __VA_ARGS__)
#define warning_at(l, node, ...) loader_diag(l, (node)->line, (node)->column, true, __VA_ARGS__)

typedef int (*KeyParser)(Loader *l, const YamlNode *key, const YamlNode *value, void *target);

typedef struct KeyInfo {
        const char *name;
        KeyParser parse;
        size_t offset; /* into the target struct */
        bool required;
} KeyInfo;

/* A value as written, with where it was, for checks that need the whole
 * section (schedule, timezone) after all keys are read. */
typedef struct Located {
        const YamlNode *node;
} Located;

/* The entry of TABLE closest to KEY, if close enough to be a typo; NULL otherwise. */
const char *did_you_mean(const KeyInfo *table, const char *key);

/* Checks mapping MAP against TABLE and parses each key into TARGET;
 * CONTEXT names it in messages ("zuora", "environment 'uat'"). */
int parse_mapping(Loader *l, const YamlNode *map, const KeyInfo *table, void *target, const char *context);

/* Whether VALUE is a scalar with a value (reported when not). */
bool want_scalar(Loader *l, const YamlNode *key, const YamlNode *value);

/* Key parsers. */
int parse_string(Loader *l, const YamlNode *key, const YamlNode *value, void *target);
int parse_duration(Loader *l, const YamlNode *key, const YamlNode *value, void *target);
int parse_located(Loader *l, const YamlNode *key, const YamlNode *value, void *target);

/* Takes any node, for the caller to read after the mapping. */
int parse_node(Loader *l, const YamlNode *key, const YamlNode *value, void *target);

bool is_loopback_host(const char *host);

#define UNSET_DURATION UINT64_MAX

/* Checks the file a secret is read from (WHAT: "the client secret"): there,
 * a regular file, readable, not empty, not writable by others; WARN_MODE:
 * warn when group or others may read it. */
void check_secret_file(
        Loader *l, const YamlNode *v, const char *key, const char *what, const char *path, bool warn_mode);

/* ---- config-actions.c ---- */

/* The hooks, webhooks and notify_emails values of a section, or NULL. */
typedef struct ActionNodes {
        const YamlNode *hooks, *webhooks, *emails;
} ActionNodes;

/* The section's EnvActions: INHERIT (the defaults'; NULL for none) where it
 * writes none of the three keys, else a new one with its own lists and
 * INHERIT's for the keys it leaves out. */
const EnvActions *actions_load(
        Loader *l, const ActionNodes *n, const EnvActions *inherit, const char *context);

/* NAME relative to DIR, unless absolute; a new string. */
char *path_join(const char *dir, const char *name);
