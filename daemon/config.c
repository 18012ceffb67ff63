/* SPDX-License-Identifier: MIT */
/*
 * Config loading in three steps: yamltree.c reads the file into nodes that
 * remember their line and column, the key tables below check every mapping
 * against what it may hold, and per-type parsers turn scalars into values.
 * Every problem is recorded and loading goes on, so one run of `refreshd
 * check` shows them all. The environments, most of the file, are loaded one
 * by one as they are read, and their part of the tree is dropped after each
 * (see loader_on_stream()).
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config-internal.h"
#include "duration.h"
#include "fileio.h"
#include "macro.h"
#include "sort.h"
#include "yamltree.h"

#define MIN_INTERVAL_HORIZON (1461 * 86400) /* four years, leap day included */
#define MIN_INTERVAL_MAX (366 * 24 * 3600 * USEC_PER_SEC)
_Static_assert(sizeof(EnvConfig) == 88, "an EnvConfig is 88 bytes");

/* ---- diagnostics ---- */

_printf_(5, 0) static int diag_addv(
        Diags *d, unsigned line, unsigned column, bool warning, const char *fmt, va_list ap) {
        char *m = NULL;

        if (vasprintf(&m, fmt, ap) < 0)
                return -ENOMEM;
        Diag *n = realloc(d->items, (d->n + 1) * sizeof(Diag));
        if (!n) {
                free(m);
                return -ENOMEM;
        }
        d->items = n;
        d->items[d->n++] = (Diag) { .line = line, .column = column, .warning = warning, .message = m };
        if (warning)
                d->n_warnings++;
        else
                d->n_errors++;
        return 0;
}

static int diag_compare(const void *a, const void *b) {
        const Diag *x = *(const Diag *const *) a, *y = *(const Diag *const *) b;

        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        if (x->column != y->column)
                return x->column < y->column ? -1 : 1;
        return x < y ? -1 : x > y; /* keep the order they were found in */
}

/* Puts D's items in file order, keeping the order they were found in for
 * one position: how they are printed does not then depend on the order
 * they were checked in. */
static int diags_sort(Diags *d) {
        _cleanup_free_ const Diag **sorted = NULL;
        _cleanup_free_ Diag *items = NULL;

        if (d->n < 2)
                return 0;
        sorted = reallocarray(NULL, d->n, sizeof(Diag *));
        items = reallocarray(NULL, d->n, sizeof(Diag));
        if (!sorted || !items)
                return -ENOMEM;
        for (size_t i = 0; i < d->n; i++)
                sorted[i] = &d->items[i];
        qsort(sorted, d->n, sizeof(Diag *), diag_compare);
        for (size_t i = 0; i < d->n; i++)
                items[i] = *sorted[i];
        free(d->items);
        d->items = TAKE_PTR(items);
        return 0;
}

/* Moves FROM's items to the end of TO. */
static int diags_append(Diags *to, Diags *from) {
        if (from->n == 0)
                return 0;
        Diag *n = reallocarray(to->items, to->n + from->n, sizeof(Diag));
        if (!n)
                return -ENOMEM;
        to->items = n;
        memcpy(to->items + to->n, from->items, from->n * sizeof(Diag));
        to->n += from->n;
        to->n_errors += from->n_errors;
        to->n_warnings += from->n_warnings;
        free(from->items);
        *from = (Diags) {};
        return 0;
}

void diags_print(const Diags *d, FILE *f) {
        _cleanup_free_ const Diag **sorted = calloc(d->n ? d->n : 1, sizeof(Diag *));

        for (size_t i = 0; sorted && i < d->n; i++)
                sorted[i] = &d->items[i];
        if (sorted)
                qsort(sorted, d->n, sizeof(Diag *), diag_compare);
        for (size_t i = 0; i < d->n; i++) {
                const Diag *g = sorted ? sorted[i] : &d->items[i];
                if (g->line > 0)
                        fprintf(f,
                                "%s:%u:%u: %s: %s\n",
                                d->path,
                                g->line,
                                g->column,
                                g->warning ? "warning" : "error",
                                g->message);
                else
                        fprintf(f, "%s: %s: %s\n", d->path, g->warning ? "warning" : "error", g->message);
        }
}

void diags_clear(Diags *d) {
        for (size_t i = 0; i < d->n; i++)
                free(d->items[i].message);
        free(d->items);
        free(d->path);
        *d = (Diags) {};
}

/* ---- the loader ---- */

_printf_(5, 6) void loader_diag(
        Loader *l, unsigned line, unsigned column, bool warning, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (diag_addv(l->diags, line, column, warning, fmt, ap) < 0)
                l->oom = -ENOMEM;
        va_end(ap);
}

/* The YAML tree's problems are errors of the file. */
static void loader_on_yaml_diag(void *userdata, unsigned line, unsigned column, const char *message) {
        loader_diag(userdata, line, column, false, "%s", message);
}

/* ---- key tables ---- */

/* Levenshtein distance, capped: enough for a did-you-mean. */
static unsigned edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned d[65][65];

        if (la > 64 || lb > 64)
                return UINT_MAX;
        for (size_t i = 0; i <= la; i++)
                d[i][0] = (unsigned) i;
        for (size_t j = 0; j <= lb; j++)
                d[0][j] = (unsigned) j;
        /* Optimal string alignment: a swap of two letters is one edit. */
        for (size_t i = 1; i <= la; i++)
                for (size_t j = 1; j <= lb; j++) {
                        unsigned cost =
                                tolower((unsigned char) a[i - 1]) != tolower((unsigned char) b[j - 1]);
                        unsigned best = d[i - 1][j - 1] + cost;
                        if (d[i - 1][j] + 1 < best)
                                best = d[i - 1][j] + 1;
                        if (d[i][j - 1] + 1 < best)
                                best = d[i][j - 1] + 1;
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                            d[i - 2][j - 2] + 1 < best)
                                best = d[i - 2][j - 2] + 1;
                        d[i][j] = best;
                }
        return d[la][lb];
}

const char *did_you_mean(const KeyInfo *table, const char *key) {
        const char *best = NULL;
        unsigned best_d = UINT_MAX;
        size_t len = strlen(key);

        for (const KeyInfo *k = table; k->name; k++) {
                unsigned d = edit_distance(key, k->name);
                if (d < best_d) {
                        best_d = d;
                        best = k->name;
                }
        }
        /* Close enough to be a typo: a third of the word, at least 1. */
        return best && best_d <= (len >= 6 ? len / 3 : 1) + (len >= 9) ? best : NULL;
}

/* CONTEXT names the mapping in messages ("zuora", "environment 'uat'"). */
int parse_mapping(Loader *l, const YamlNode *map, const KeyInfo *table, void *target, const char *context) {
        bool seen[32] = {};

        l->context = context;

        if (map->kind != YAML_KIND_MAPPING) {
                error_at(
                        l,
                        map,
                        "%s must be a mapping of keys to values, not %s",
                        context,
                        yaml_kind_to_string(map->kind));
                return 0;
        }
        for (size_t i = 0; i + 1 < map->n_items; i += 2) {
                const YamlNode *key = map->items[i], *value = map->items[i + 1];
                const KeyInfo *k;

                if (key->kind != YAML_KIND_SCALAR) {
                        error_at(
                                l,
                                key,
                                "keys in %s must be plain words, not %s",
                                context,
                                yaml_kind_to_string(key->kind));
                        continue;
                }
                for (k = table; k->name; k++)
                        if (strcmp(k->name, key->value) == 0)
                                break;
                if (!k->name) {
                        const char *hint = did_you_mean(table, key->value);
                        if (hint)
                                error_at(
                                        l,
                                        key,
                                        "unknown key '%s' in %s; did you mean '%s'?",
                                        key->value,
                                        context,
                                        hint);
                        else
                                error_at(l, key, "unknown key '%s' in %s", key->value, context);
                        continue;
                }
                if (seen[k - table]) {
                        error_at(l, key, "duplicate key '%s' in %s", key->value, context);
                        continue;
                }
                seen[k - table] = true;
                if (k->parse)
                        k->parse(l, key, value, (uint8_t *) target + k->offset);
        }
        for (const KeyInfo *k = table; k->name; k++)
                if (k->required && !seen[k - table])
                        error_at(l, map, "%s is missing required key '%s'", context, k->name);
        return 0;
}

/* ---- scalar parsers ---- */

bool want_scalar(Loader *l, const YamlNode *key, const YamlNode *value) {
        if (value->kind != YAML_KIND_SCALAR) {
                error_at(
                        l,
                        value,
                        "%s: '%s' must be a single value, not %s",
                        l->context,
                        key->value,
                        yaml_kind_to_string(value->kind));
                return false;
        }
        if (value->plain && (value->value[0] == 0 || strcmp(value->value, "~") == 0 ||
                             strcasecmp(value->value, "null") == 0)) {
                error_at(l, value, "%s: '%s' needs a value", l->context, key->value);
                return false;
        }
        return true;
}

int parse_string(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        char **s = target;

        if (!want_scalar(l, key, value))
                return 0;
        free(*s);
        *s = strdup(value->value);
        if (!*s)
                l->oom = -ENOMEM;
        return 0;
}

static int parse_bool(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
        int *b = target;

        if (!want_scalar(l, key, value))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value->value, yes[i]) == 0) {
                        *b = true;
                        return 0;
                }
                if (strcasecmp(value->value, no[i]) == 0) {
                        *b = false;
                        return 0;
                }
        }
        error_at(l, value, "%s: '%s' must be true or false, not '%s'", l->context, key->value, value->value);
        return 0;
}

int parse_duration(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        uint64_t *u = target;
        unsigned line, column;
        size_t at = 0;
        int r;

        if (!want_scalar(l, key, value))
                return 0;
        r = duration_parse(value->value, u, &at);
        if (r >= 0)
                return 0;
        yaml_tree_position(l->tree, value, at, &line, &column);
        if (r == -ERANGE)
                loader_diag(
                        l,
                        line,
                        column,
                        false,
                        "%s: '%s': duration '%s' is too long",
                        l->context,
                        key->value,
                        value->value);
        else if (r < 0)
                loader_diag(
                        l,
                        line,
                        column,
                        false,
                        "%s: '%s': invalid duration '%s': write <number><unit>..., units ms, s, m, h, d, "
                        "w (for example 90s, 1h30m, 28d)",
                        l->context,
                        key->value,
                        value->value);
        return 0;
}

static int parse_when_ineligible(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        WhenIneligible *w = target;

        if (!want_scalar(l, key, value))
                return 0;
        for (WhenIneligible i = 0; i < _WHEN_INELIGIBLE_MAX; i++)
                if (strcmp(value->value, when_ineligible_to_string(i)) == 0) {
                        *w = i;
                        return 0;
                }
        error_at(
                l,
                value,
                "%s: '%s' must be 'defer' or 'skip', not '%s'",
                l->context,
                key->value,
                value->value);
        return 0;
}

static int parse_unsigned(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        unsigned *u = target;
        char *end;
        unsigned long v;

        if (!want_scalar(l, key, value))
                return 0;
        errno = 0;
        v = strtoul(value->value, &end, 10);
        if (!isdigit((unsigned char) value->value[0]) || *end || errno != 0 || v < 1 || v > 100000) {
                error_at(
                        l,
                        value,
                        "%s: '%s' must be a whole number from 1 to 100000, not '%s'",
                        l->context,
                        key->value,
                        value->value);
                return 0;
        }
        *u = (unsigned) v;
        return 0;
}

int parse_located(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        Located *loc = target;

        if (want_scalar(l, key, value))
                loc->node = value;
        return 0;
}

/* ---- sections ---- */

typedef struct ZuoraSection {
        Located base_url;
        char *client_id;
        Located secret_file, secret_credential, secret_env;
        char *entity_id;
        Located ca_file;
        uint64_t request_timeout;
        unsigned max_concurrent_requests;
} ZuoraSection;

struct EnvSection {
        char *name, *id;
        Located name_node, id_node, schedule;
        Located timezone;
        uint64_t poll_interval, min_interval, submit_ahead, retry_for;
        int catch_up, enabled; /* UNSET_BOOL, false or true */
        WhenIneligible when_ineligible;
        Located hooks, webhooks, emails;
        const EnvActions *actions;     /* once loaded */
        unsigned max_concurrent_hooks; /* defaults only; 0: unset */
};

#define UNSET_BOOL 2

static const KeyInfo zuora_keys[] = {
        { "base_url", parse_located, offsetof(ZuoraSection, base_url), true },
        { "client_id", parse_string, offsetof(ZuoraSection, client_id), true },
        { "client_secret_file", parse_located, offsetof(ZuoraSection, secret_file), false },
        { "client_secret_credential", parse_located, offsetof(ZuoraSection, secret_credential), false },
        { "client_secret_env", parse_located, offsetof(ZuoraSection, secret_env), false },
        { "entity_id", parse_string, offsetof(ZuoraSection, entity_id), false },
        { "ca_file", parse_located, offsetof(ZuoraSection, ca_file), false },
        { "request_timeout", parse_duration, offsetof(ZuoraSection, request_timeout), false },
        { "max_concurrent_requests",
          parse_unsigned,
          offsetof(ZuoraSection, max_concurrent_requests),
          false },
        {},
};

/* clang-format off */
/* `defaults` and environments share these; an environment adds its own. */
#define ENV_SETTING_KEYS(type)                                                                                \
        { "timezone", parse_located, offsetof(type, timezone), false },                                       \
        { "poll_interval", parse_duration, offsetof(type, poll_interval), false },                            \
        { "catch_up", parse_bool, offsetof(type, catch_up), false },                                          \
        { "min_interval", parse_duration, offsetof(type, min_interval), false },                              \
        { "submit_ahead", parse_duration, offsetof(type, submit_ahead), false },                              \
        { "when_ineligible", parse_when_ineligible, offsetof(type, when_ineligible), false },                 \
        { "retry_for", parse_duration, offsetof(type, retry_for), false },                                    \
        { "hooks", parse_node, offsetof(type, hooks), false },                                                \
        { "webhooks", parse_node, offsetof(type, webhooks), false },                                          \
        { "notify_emails", parse_node, offsetof(type, emails), false }
/* clang-format on */

static const KeyInfo defaults_keys[] = {
        ENV_SETTING_KEYS(EnvSection),
        { "max_concurrent_hooks", parse_unsigned, offsetof(EnvSection, max_concurrent_hooks), false },
        {},
};

static const KeyInfo env_keys[] = {
        { "name", parse_located, offsetof(EnvSection, name_node), true },
        { "id", parse_located, offsetof(EnvSection, id_node), true },
        { "schedule", parse_located, offsetof(EnvSection, schedule), true },
        { "enabled", parse_bool, offsetof(EnvSection, enabled), false },
        ENV_SETTING_KEYS(EnvSection),
        {},
};

static const KeyInfo top_keys[] = {
        { "zuora", NULL, 0, true },          { "defaults", NULL, 0, false },
        { "environments", NULL, 0, true },   { "max_concurrent_hooks", NULL, 0, false },
        { "control_group", NULL, 0, false }, {},
};

static void env_section_unset(EnvSection *s) {
        *s = (EnvSection) {
                .poll_interval = UNSET_DURATION,
                .min_interval = UNSET_DURATION,
                .submit_ahead = UNSET_DURATION,
                .retry_for = UNSET_DURATION,
                .catch_up = UNSET_BOOL,
                .enabled = UNSET_BOOL,
                .when_ineligible = _WHEN_INELIGIBLE_INVALID,
        };
}

/* Fills what S leaves unset from D (the defaults, already complete). */
static void env_section_inherit(EnvSection *s, const EnvSection *d) {
        if (!s->timezone.node)
                s->timezone = d->timezone;
        if (s->poll_interval == UNSET_DURATION)
                s->poll_interval = d->poll_interval;
        if (s->min_interval == UNSET_DURATION)
                s->min_interval = d->min_interval;
        if (s->submit_ahead == UNSET_DURATION)
                s->submit_ahead = d->submit_ahead;
        if (s->retry_for == UNSET_DURATION)
                s->retry_for = d->retry_for;
        if (s->catch_up == UNSET_BOOL)
                s->catch_up = d->catch_up;
        if (s->enabled == UNSET_BOOL)
                s->enabled = d->enabled;
        if (s->when_ineligible < 0)
                s->when_ineligible = d->when_ineligible;
}

/* Looks up (or loads once) zone NAME; NULL with a diag when unknown. */
static Tz *loader_zone(Loader *l, const YamlNode *where, const char *context) {
        const char *name = where ? where->value : "UTC";
        Tz *tz = NULL;
        int r;

        for (size_t i = 0; i < l->n_zones; i++)
                if (strcmp(tz_name(l->zones[i]), name) == 0)
                        return l->zones[i];

        r = tz_load(name, &tz);
        if (r < 0) {
                if (where && r == -ENOMEM)
                        l->oom = r;
                else if (where)
                        error_at(
                                l,
                                where,
                                "%s: unknown time zone '%s'%s",
                                context,
                                name,
                                r == -EINVAL || r == -ENOENT
                                        ? " (use an IANA name such as Europe/Berlin or UTC)"
                                        : ": the tz database file is damaged");
                return NULL;
        }
        Tz **n = realloc(l->zones, (l->n_zones + 1) * sizeof(Tz *));
        if (!n) {
                tz_unref(tz);
                l->oom = -ENOMEM;
                return NULL;
        }
        l->zones = n;
        l->zones[l->n_zones++] = tz;
        return tz;
}

static void check_duration_range(
        Loader *l,
        const YamlNode *map,
        const char *context,
        const char *key,
        uint64_t v,
        uint64_t min,
        uint64_t max) {
        char a[DURATION_MAX], b[DURATION_MAX];

        if (v == UNSET_DURATION || (v >= min && v <= max))
                return;
        /* Point at the key's value when we can find it. */
        for (size_t i = 0; map && map->kind == YAML_KIND_MAPPING && i + 1 < map->n_items; i += 2)
                if (map->items[i]->kind == YAML_KIND_SCALAR && strcmp(map->items[i]->value, key) == 0) {
                        map = map->items[i + 1];
                        break;
                }
        if (max == UINT64_MAX - 1)
                error_at(l, map, "%s: '%s' must be at least %s", context, key, duration_format(min, a));
        else
                error_at(
                        l,
                        map,
                        "%s: '%s' must be between %s and %s",
                        context,
                        key,
                        duration_format(min, a),
                        duration_format(max, b));
}

static void check_settings(Loader *l, const YamlNode *map, const EnvSection *s, const char *context) {
        check_duration_range(
                l, map, context, "poll_interval", s->poll_interval, USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC);
        check_duration_range(
                l, map, context, "submit_ahead", s->submit_ahead, 0, 28 * 24 * 3600 * USEC_PER_SEC);
        check_duration_range(l, map, context, "retry_for", s->retry_for, 0, 7 * 24 * 3600 * USEC_PER_SEC);
        check_duration_range(l, map, context, "min_interval", s->min_interval, 0, MIN_INTERVAL_MAX);
}

bool is_loopback_host(const char *host) {
        if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
                return true;
        return strncmp(host, "127.", 4) == 0 && strspn(host + 4, "0123456789.") == strlen(host + 4);
}

static void check_base_url(Loader *l, const YamlNode *v, char **ret) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *fragment = NULL;
        CURLUcode rc;

        if (!u) {
                l->oom = -ENOMEM;
                return;
        }
        rc = curl_url_set(u, CURLUPART_URL, v->value, CURLU_NON_SUPPORT_SCHEME);
        if (rc != CURLUE_OK) {
                error_at(l, v, "'base_url': '%s' is not a valid URL: %s", v->value, curl_url_strerror(rc));
                goto finish;
        }
        (void) curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
        (void) curl_url_get(u, CURLUPART_HOST, &host, 0);
        (void) curl_url_get(u, CURLUPART_USER, &user, 0);
        (void) curl_url_get(u, CURLUPART_QUERY, &query, 0);
        (void) curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
        if (user || query || fragment) {
                /* Not echoed: it may hold a password. */
                error_at(l, v, "'base_url' must not carry a user name, a password, a query or a fragment");
                goto finish;
        }
        if (!scheme || !host ||
            (strcmp(scheme, "https") != 0 && !(strcmp(scheme, "http") == 0 && is_loopback_host(host)))) {
                error_at(
                        l,
                        v,
                        "'base_url': '%s' must start with https:// (http:// is allowed only to a loopback "
                        "address: 127.0.0.0/8, ::1, localhost)",
                        v->value);
                goto finish;
        }
        *ret = strdup(v->value);
        if (!*ret)
                l->oom = -ENOMEM;
        else {
                size_t n = strlen(*ret);
                while (n > 0 && (*ret)[n - 1] == '/')
                        (*ret)[--n] = 0;
        }
finish:
        curl_free(scheme);
        curl_free(host);
        curl_free(user);
        curl_free(query);
        curl_free(fragment);
        curl_url_cleanup(u);
}

/* Checks a secret file: there, a regular file, readable, not empty, not
 * writable by others. WARN_MODE: warn when group or others may read it. */
void check_secret_file(
        Loader *l, const YamlNode *v, const char *key, const char *what, const char *path, bool warn_mode) {
        struct stat st;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                error_at(l, v, "'%s': cannot read %s from '%s': %s", key, what, path, strerror(errno));
                return;
        }
        if (fstat(fd, &st) < 0)
                error_at(l, v, "'%s': cannot read %s from '%s': %s", key, what, path, strerror(errno));
        else if (!S_ISREG(st.st_mode))
                error_at(l, v, "'%s': '%s' is not a regular file", key, path);
        else if (st.st_size == 0)
                error_at(l, v, "'%s': the file of %s, '%s', is empty", key, what, path);
        else if (st.st_mode & S_IWOTH)
                error_at(
                        l,
                        v,
                        "'%s': '%s' is writable by anyone; refusing it (chmod 600 '%s')",
                        key,
                        path,
                        path);
        else if (warn_mode && (st.st_mode & (S_IRWXG | S_IRWXO)))
                warning_at(
                        l,
                        v,
                        "'%s': '%s' is readable by group or others (mode %03o); chmod 600 '%s'",
                        key,
                        path,
                        (unsigned) (st.st_mode & 0777),
                        path);
        close(fd);
}

char *path_join(const char *dir, const char *name) {
        char *p;

        if (name[0] == '/')
                return strdup(name);
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

static void check_secret(Loader *l, const YamlNode *zuora, ZuoraSection *z) {
        Config *c = l->config;
        int n = !!z->secret_file.node + !!z->secret_credential.node + !!z->secret_env.node;

        if (n != 1) {
                error_at(
                        l,
                        zuora,
                        n == 0 ? "zuora: give the client secret with one of client_secret_file, "
                                 "client_secret_credential or client_secret_env"
                               : "zuora: give only one of client_secret_file, client_secret_credential and "
                                 "client_secret_env");
                return;
        }

        if (z->secret_file.node) {
                const YamlNode *v = z->secret_file.node;
                c->secret_line = v->line;
                c->secret_column = v->column;
                c->secret_source = SECRET_SOURCE_FILE;
                c->secret_name = strdup(v->value);
                c->secret_path = path_join(l->dir, v->value);
                if (!c->secret_name || !c->secret_path) {
                        l->oom = -ENOMEM;
                        return;
                }
                check_secret_file(
                        l,
                        v,
                        "client_secret_file",
                        "the client secret",
                        c->secret_path,
                        /* warn_mode= */ true);
        } else if (z->secret_credential.node) {
                const YamlNode *v = z->secret_credential.node;
                c->secret_line = v->line;
                c->secret_column = v->column;
                const char *creds = getenv("CREDENTIALS_DIRECTORY");

                c->secret_source = SECRET_SOURCE_CREDENTIAL;
                if (strchr(v->value, '/') || v->value[0] == '.') {
                        error_at(
                                l,
                                v,
                                "'client_secret_credential': '%s' must be a credential name, not a path",
                                v->value);
                        return;
                }
                c->secret_name = strdup(v->value);
                /* Under systemd LoadCredential= puts it in $CREDENTIALS_DIRECTORY;
                 * from a shell, the file of that name beside the config. */
                c->secret_path = path_join(creds && creds[0] == '/' ? creds : l->dir, v->value);
                if (!c->secret_name || !c->secret_path) {
                        l->oom = -ENOMEM;
                        return;
                }
                check_secret_file(
                        l,
                        v,
                        "client_secret_credential",
                        "the client secret",
                        c->secret_path,
                        /* warn_mode= */ !(creds && creds[0] == '/'));
        } else {
                const YamlNode *v = z->secret_env.node;
                c->secret_line = v->line;
                c->secret_column = v->column;
                const char *val;

                c->secret_source = SECRET_SOURCE_ENV;
                if (strspn(v->value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                            strlen(v->value) ||
                    isdigit((unsigned char) v->value[0])) {
                        error_at(
                                l,
                                v,
                                "'client_secret_env': '%s' is not an environment variable name",
                                v->value);
                        return;
                }
                c->secret_name = strdup(v->value);
                if (!c->secret_name) {
                        l->oom = -ENOMEM;
                        return;
                }
                val = getenv(v->value);
                if (!val || !val[0])
                        error_at(
                                l,
                                v,
                                "'client_secret_env': environment variable %s is %s",
                                v->value,
                                val ? "empty" : "not set");
        }
}

static void load_zuora(Loader *l, const YamlNode *node) {
        Config *c = l->config;
        ZuoraSection z = { .request_timeout = UNSET_DURATION };

        parse_mapping(l, node, zuora_keys, &z, "zuora");
        if (node->kind != YAML_KIND_MAPPING)
                goto finish;

        if (z.base_url.node)
                check_base_url(l, z.base_url.node, &c->base_url);
        c->client_id = TAKE_PTR(z.client_id);
        if (c->client_id && !c->client_id[0])
                error_at(l, node, "zuora: 'client_id' is empty");
        c->entity_id = TAKE_PTR(z.entity_id);
        if (c->entity_id && strpbrk(c->entity_id, "\r\n"))
                error_at(l, node, "zuora: 'entity_id' must be one line");
        if (z.ca_file.node) {
                c->ca_file = path_join(l->dir, z.ca_file.node->value);
                if (!c->ca_file)
                        l->oom = -ENOMEM;
                else if (access(c->ca_file, R_OK) < 0)
                        error_at(
                                l,
                                z.ca_file.node,
                                "'ca_file': cannot read '%s': %s",
                                c->ca_file,
                                strerror(errno));
        }
        if (z.request_timeout != UNSET_DURATION) {
                check_duration_range(
                        l,
                        node,
                        "zuora",
                        "request_timeout",
                        z.request_timeout,
                        USEC_PER_SEC,
                        3600 * USEC_PER_SEC);
                c->request_timeout = z.request_timeout;
        }
        if (z.max_concurrent_requests > 0)
                c->max_concurrent_requests = z.max_concurrent_requests;
        check_secret(l, node, &z);
finish:
        free(z.client_id);
        free(z.entity_id);
}

static bool is_ascii_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* 1 to 64 characters of A-Z a-z 0-9 and EXTRA. A loop rather than
 * strspn(), which builds its table anew on each call. */
static bool valid_word(const char *s, const char *extra) {
        size_t n = 0;

        for (; s[n]; n++)
                if (n == 64 || !(is_ascii_alnum(s[n]) || strchr(extra, s[n])))
                        return false;
        return n >= 1;
}

static bool valid_name(const char *s) {
        return valid_word(s, "_.-");
}

static bool valid_id(const char *s) {
        return valid_word(s, "-");
}

/* Warns about "0 2 1-7 * SUN": it fires on days 1-7 OR on Sundays. */
static void warn_either_days(Loader *l, const YamlNode *v, const char *context) {
        char f[6][64];
        int n = sscanf(v->value, "%63s %63s %63s %63s %63s %63s", f[0], f[1], f[2], f[3], f[4], f[5]);
        static const char *const weeks[] = { "1-7", "8-14", "15-21", "22-28" };
        const char *dom, *dow;

        if (n < 5)
                return;
        dom = f[n - 3];
        dow = f[n - 1];
        for (size_t i = 0; i < ELEMENTSOF(weeks); i++)
                if (strcmp(dom, weeks[i]) == 0 && strcspn(dow, ",-/#*L") == strlen(dow)) {
                        char fixed[400] = "";
                        for (int j = 0; j < n; j++) {
                                strcat(fixed, j ? " " : "");
                                if (j == n - 3)
                                        strcat(fixed, "*");
                                else if (j == n - 1)
                                        snprintf(fixed + strlen(fixed), 80, "%s#%zu", dow, i + 1);
                                else
                                        strcat(fixed, f[j]);
                        }
                        warning_at(
                                l,
                                v,
                                "%s: 'schedule' \"%s\" fires on days %s of the month OR on every %s (cron "
                                "matches either day field when both are set); for the %s %s of the month "
                                "write \"%s\"",
                                context,
                                v->value,
                                dom,
                                dow,
                                (const char *[]) { "first", "second", "third", "fourth" }[i],
                                dow,
                                fixed);
                        return;
                }
        warning_at(
                l,
                v,
                "%s: 'schedule' \"%s\" restricts both day-of-month and day-of-week, so it fires on a day "
                "that "
                "matches EITHER field (as cron does); for \"the first Sunday\" write '*' as day-of-month "
                "and "
                "SUN#1 as day-of-week",
                context,
                v->value);
}

static uint64_t string_hash(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * UINT64_C(1099511628211);
        return h;
}

static void schedules_insert(Loader *l, size_t index) {
        size_t mask = l->schedules_size - 1;
        size_t i = string_hash(l->config->envs[index].schedule) & mask;

        while (l->schedules[i])
                i = (i + 1) & mask;
        l->schedules[i] = index + 1;
}

/* Sets E's schedule and CronSpec from TEXT: those of an environment before
 * it with the same text, or parsed. Real configs repeat a few schedules
 * over many environments. */
static int loader_schedule(
        Loader *l, EnvConfig *e, const char *text, CronError *reterr, CronWarnings *retwarn) {
        Config *c = l->config;
        uint64_t hash = string_hash(text);
        CronSpec *spec = NULL;
        int r;

        for (size_t mask = l->schedules_size - 1, i = hash & mask; l->schedules_size && l->schedules[i];
             i = (i + 1) & mask) {
                const EnvConfig *o = &c->envs[l->schedules[i] - 1];
                if (strcmp(o->schedule, text) == 0) {
                        e->schedule = o->schedule;
                        e->cron = o->cron;
                        return 0;
                }
        }

        /* A schedule's warnings are given once, where it is first written. */
        r = cron_parse_warn(text, &spec, reterr, retwarn);
        if (r < 0)
                return r;
        if (GROW(c->crons, l->crons_allocated, c->n_crons, 16) < 0) {
                cron_spec_free(spec);
                return -ENOMEM;
        }
        c->crons[c->n_crons++] = spec;
        e->cron = spec;
        e->schedule = arena_strdup(&c->strings, text);
        if (!e->schedule)
                return -ENOMEM;

        /* At most half full. */
        if (c->n_crons * 2 > l->schedules_size) {
                size_t size = l->schedules_size ? l->schedules_size * 2 : 64, old_size = l->schedules_size;
                _cleanup_free_ size_t *old = l->schedules;

                l->schedules = calloc(size, sizeof(size_t));
                if (!l->schedules) {
                        l->schedules = TAKE_PTR(old);
                        return -ENOMEM;
                }
                l->schedules_size = size;
                for (size_t k = 0; k < old_size; k++)
                        if (old[k])
                                schedules_insert(l, old[k] - 1);
        }
        schedules_insert(l, (size_t) (e - c->envs));
        return 0;
}

static void check_schedule(Loader *l, EnvConfig *e, const YamlNode *v, const char *context) {
        CronError err = {};
        CronWarnings warnings = {};
        int64_t a, b;
        char ta[TZ_ISO_MAX], tb[TZ_ISO_MAX], gap[DURATION_MAX], min[DURATION_MAX];
        unsigned line, column;
        int r;

        r = loader_schedule(l, e, v->value, &err, &warnings);
        if (r == -ENOMEM) {
                l->oom = r;
                return;
        }
        if (r < 0) {
                yaml_tree_position(l->tree, v, err.offset, &line, &column);
                loader_diag(
                        l, line, column, false, "%s: 'schedule' \"%s\": %s", context, v->value, err.message);
                return;
        }
        for (size_t i = 0; i < warnings.n; i++) {
                yaml_tree_position(l->tree, v, warnings.items[i].offset, &line, &column);
                loader_diag(
                        l,
                        line,
                        column,
                        true,
                        "%s: 'schedule' \"%s\": %s",
                        context,
                        v->value,
                        warnings.items[i].message);
        }
        if (cron_days_either(e->cron))
                warn_either_days(l, v, context);

        if (!e->tz || e->min_interval < USEC_PER_SEC || e->min_interval > MIN_INTERVAL_MAX)
                return; /* a bad min_interval was reported already */
        if (cron_find_close_fires(
                    e->cron,
                    e->tz,
                    l->now,
                    MIN_INTERVAL_HORIZON,
                    (int64_t) (e->min_interval / USEC_PER_SEC),
                    &a,
                    &b) > 0) {
                int64_t wall_gap = (b + tz_offset(e->tz, b, NULL)) - (a + tz_offset(e->tz, a, NULL));
                (void) tz_format_local(e->tz, a, ta, sizeof(ta));
                (void) tz_format_local(e->tz, b, tb, sizeof(tb));
                error_at(
                        l,
                        v,
                        "%s: 'schedule' \"%s\" fires at %s and again at %s, %s apart, closer than "
                        "min_interval %s",
                        context,
                        v->value,
                        ta,
                        tb,
                        duration_format((uint64_t) wall_gap * USEC_PER_SEC, gap),
                        duration_format(e->min_interval, min));
        }
}

static void load_environment(Loader *l, const YamlNode *node, size_t index, const EnvSection *defaults) {
        Config *c = l->config;
        EnvSection s;
        char context[128];

        env_section_unset(&s);
        /* Name it first, so every message about it can say which it is. */
        const char *name = NULL;
        for (size_t i = 0; node->kind == YAML_KIND_MAPPING && i + 1 < node->n_items; i += 2)
                if (node->items[i]->kind == YAML_KIND_SCALAR && strcmp(node->items[i]->value, "name") == 0 &&
                    node->items[i + 1]->kind == YAML_KIND_SCALAR)
                        name = node->items[i + 1]->value;
        if (name) {
                /* "environment '%.64s'", without snprintf(): this runs for every environment. */
                size_t n = strnlen(name, 64);
                memcpy(context, "environment '", 13);
                memcpy(context + 13, name, n);
                memcpy(context + 13 + n, "'", 2);
        } else
                snprintf(context, sizeof(context), "environment #%zu", index + 1);

        parse_mapping(l, node, env_keys, &s, context);
        if (node->kind != YAML_KIND_MAPPING)
                return;
        /* Only its own values: a bad default was reported once already. */
        check_settings(l, node, &s, context);
        env_section_inherit(&s, defaults);

        if (GROW(c->envs, l->envs_allocated, c->n_envs, 64) < 0) {
                l->oom = -ENOMEM;
                return;
        }
        EnvConfig *e = &c->envs[c->n_envs++];
        *e = (EnvConfig) {
                .poll_interval = s.poll_interval,
                .min_interval = s.min_interval,
                .submit_ahead = s.submit_ahead,
                .retry_for = s.retry_for,
                .catch_up = s.catch_up,
                .enabled = s.enabled,
                .when_ineligible = s.when_ineligible,
                .line = node->line,
        };

        if (s.name_node.node) {
                const YamlNode *v = s.name_node.node;
                if (!valid_name(v->value))
                        error_at(
                                l, v, "%s: 'name' must be 1 to 64 characters of A-Z a-z 0-9 _ . -", context);
                e->name = arena_strdup(&c->strings, v->value);
                if (!e->name || GROW(l->names, l->names_allocated, l->n_names, 64) < 0)
                        l->oom = -ENOMEM;
                else
                        l->names[l->n_names++] = (NameAt) {
                                .env = (uint32_t) (e - c->envs),
                                .line = v->line,
                                .column = (uint16_t) (v->column < UINT16_MAX ? v->column : UINT16_MAX),
                        };
        }
        if (s.id_node.node) {
                const YamlNode *v = s.id_node.node;
                if (!valid_id(v->value))
                        error_at(
                                l,
                                v,
                                "%s: 'id' '%s' is not a Zuora test environment id (letters, digits and -)",
                                context,
                                v->value);
                e->id = arena_strdup(&c->strings, v->value);
                if (!e->id)
                        l->oom = -ENOMEM;
                else if (
                        e->name && l->n_names > 0 &&
                        l->names[l->n_names - 1].env == (uint32_t) (e - c->envs)) {
                        l->names[l->n_names - 1].id_line = v->line;
                        l->names[l->n_names - 1].id_column =
                                (uint16_t) (v->column < UINT16_MAX ? v->column : UINT16_MAX);
                }
        }
        e->actions = actions_load(
                l,
                &(ActionNodes) { s.hooks.node, s.webhooks.node, s.emails.node },
                defaults->actions,
                context);
        e->tz = tz_ref(loader_zone(l, s.timezone.node, context));
        if (s.schedule.node)
                check_schedule(l, e, s.schedule.node, context);
}

static int compare_position(const NameAt *x, const NameAt *y) {
        return x->line != y->line ? (x->line < y->line ? -1 : 1)
                                  : (x->column < y->column ? -1 : x->column > y->column);
}

static int compare_names_at(const void *a, const void *b, void *userdata) {
        const EnvConfig *envs = userdata;
        const NameAt *x = a, *y = b;
        int r = strcmp(envs[x->env].name, envs[y->env].name);

        return r != 0 ? r : compare_position(x, y);
}

/* By id; entries without an id (an error of their own) last. */
static int compare_ids_at(const void *a, const void *b, void *userdata) {
        const EnvConfig *envs = userdata;
        const NameAt *x = a, *y = b;
        const char *i = x->id_line ? envs[x->env].id : NULL, *j = y->id_line ? envs[y->env].id : NULL;
        int r = !i || !j ? (!i) - (!j) : strcmp(i, j);

        return r != 0 ? r : compare_position(x, y);
}

/* Names must be unique: sorted, duplicates are neighbours (N log N, where
 * comparing each with all before it took seconds at 10,000 environments). */
static void check_duplicate_names(Loader *l) {
        const EnvConfig *envs = l->config->envs;
        NameAt *names = l->names;

        sort_in_place(names, l->n_names, sizeof(NameAt), compare_names_at, l->config->envs);
        for (size_t i = 1, first = 0; i < l->n_names; i++) {
                if (strcmp(envs[names[i].env].name, envs[names[first].env].name) != 0) {
                        first = i;
                        continue;
                }
                loader_diag(
                        l,
                        names[i].line,
                        names[i].column,
                        false,
                        "duplicate environment name '%s' (first defined at line %u)",
                        envs[names[i].env].name,
                        names[first].line);
        }
}

/* Ids too: two environments on one sandbox would refresh it twice at a
 * slot they share, and each would take the other's job for its own. */
static void check_duplicate_ids(Loader *l) {
        const EnvConfig *envs = l->config->envs;
        NameAt *names = l->names;

        sort_in_place(names, l->n_names, sizeof(NameAt), compare_ids_at, l->config->envs);
        for (size_t i = 1, first = 0; i < l->n_names && names[i].id_line; i++) {
                if (strcmp(envs[names[i].env].id, envs[names[first].env].id) != 0) {
                        first = i;
                        continue;
                }
                loader_diag(
                        l,
                        names[i].id_line,
                        names[i].id_column,
                        false,
                        "environment '%s': 'id' '%s' is environment '%s''s too (line %u); one test "
                        "environment "
                        "may be listed once",
                        envs[names[i].env].name,
                        envs[names[i].env].id,
                        envs[names[first].env].name,
                        names[first].id_line);
        }
}

/* After the last environment of list NODE of N_ITEMS items. */
static void load_environments_end(Loader *l, const YamlNode *node, size_t n_items) {
        Config *c = l->config;

        if (n_items == 0)
                warning_at(l, node, "'environments' is empty: nothing will be refreshed");
        check_duplicate_names(l);
        check_duplicate_ids(l);
        /* Give back the room the list grew by. */
        if (c->n_envs > 0 && c->n_envs < l->envs_allocated) {
                EnvConfig *n = reallocarray(c->envs, c->n_envs, sizeof(EnvConfig));
                if (n) {
                        c->envs = n;
                        l->envs_allocated = c->n_envs;
                }
        }
}

static void load_environments(Loader *l, const YamlNode *node, const EnvSection *defaults) {
        if (node->kind != YAML_KIND_SEQUENCE) {
                error_at(
                        l,
                        node,
                        "'environments' must be a list (each item starting with '- name: ...'), not %s",
                        yaml_kind_to_string(node->kind));
                return;
        }
        for (size_t i = 0; i < node->n_items; i++)
                load_environment(l, node->items[i], i, defaults);
        load_environments_end(l, node, node->n_items);
}

static void load_defaults(Loader *l, const YamlNode *node, EnvSection *d) {
        EnvSection s;

        env_section_unset(&s);
        if (node) {
                parse_mapping(l, node, defaults_keys, &s, "defaults");
                check_settings(l, node, &s, "defaults");
        }
        /* What applies when neither defaults nor the environment say. */
        EnvSection builtin = {
                .poll_interval = 60 * USEC_PER_SEC,
                .min_interval = 0,
                .submit_ahead = 0,
                .retry_for = 3600 * USEC_PER_SEC,
                .catch_up = true,
                .enabled = true,
                .when_ineligible = WHEN_INELIGIBLE_DEFER,
        };
        env_section_inherit(&s, &builtin);
        s.actions = actions_load(
                l, &(ActionNodes) { s.hooks.node, s.webhooks.node, s.emails.node }, NULL, "defaults");
        *d = s;
        if (s.timezone.node && !loader_zone(l, s.timezone.node, "defaults"))
                d->timezone.node = NULL; /* reported once; environments then use UTC quietly */
}

/* A daemon-wide setting, at the top level or in defaults (not both). */
static void load_max_concurrent_hooks(Loader *l, const YamlNode *top, const EnvSection *d) {
        Config *c = l->config;
        unsigned n = 0;

        c->max_concurrent_hooks =
                d->max_concurrent_hooks ? d->max_concurrent_hooks : MAX_CONCURRENT_HOOKS_DEFAULT;
        if (!top)
                return;
        l->context = "the config file";
        parse_unsigned(l, &(YamlNode) { .value = (char *) "max_concurrent_hooks" }, top, &n);
        if (n && d->max_concurrent_hooks)
                error_at(l, top, "'max_concurrent_hooks' is given both here and in defaults; give it once");
        else if (n)
                c->max_concurrent_hooks = n;
}

/* control_group: the group that may use the control socket, besides root and refreshd. */
static void load_control_group(Loader *l, const YamlNode *key, const YamlNode *value) {
        Config *c = l->config;
        struct group gr, *found = NULL;
        char buf[4096];

        l->context = "the config file";
        if (parse_string(l, key, value, &c->control_group) < 0 || !c->control_group)
                return;
        if (getgrnam_r(c->control_group, &gr, buf, sizeof(buf), &found) != 0 || !found) {
                error_at(
                        l, value, "control_group: there is no group '%s' on this machine", c->control_group);
                return;
        }
        c->control_gid = found->gr_gid;
}

static void load_root(Loader *l, const YamlNode *root) {
        const YamlNode *zuora = NULL, *defaults = NULL, *envs = NULL, *max_hooks = NULL;
        EnvSection d;

        if (!root) {
                loader_diag(l, 0, 0, false, "the file is empty; see the example config refreshd.yaml");
                return;
        }
        parse_mapping(l, root, top_keys, NULL, "the config file");
        if (root->kind != YAML_KIND_MAPPING)
                return;
        for (size_t i = 0; i + 1 < root->n_items; i += 2) {
                const YamlNode *k = root->items[i];
                if (k->kind != YAML_KIND_SCALAR)
                        continue;
                if (strcmp(k->value, "zuora") == 0 && !zuora)
                        zuora = root->items[i + 1];
                else if (strcmp(k->value, "defaults") == 0 && !defaults)
                        defaults = root->items[i + 1];
                else if (strcmp(k->value, "environments") == 0 && !envs)
                        envs = root->items[i + 1];
                else if (strcmp(k->value, "max_concurrent_hooks") == 0 && !max_hooks)
                        max_hooks = root->items[i + 1];
                else if (strcmp(k->value, "control_group") == 0 && !l->config->control_group)
                        load_control_group(l, k, root->items[i + 1]);
        }
        if (zuora)
                load_zuora(l, zuora);
        /* The environments may have been loaded as the file was read, and
         * the defaults before them. */
        if (!(envs && envs == l->envs_node)) {
                load_defaults(l, defaults, &d);
                if (envs)
                        load_environments(l, envs, &d);
        }
        load_max_concurrent_hooks(l, max_hooks, envs && envs == l->envs_node ? l->defaults : &d);
}

/* The environments are most of a config (11 nodes each): the first
 * 'environments' list, if it follows the first 'defaults', is loaded item by
 * item as it is read, and each item's nodes are freed before the next is
 * read, so that at 10,000 environments the tree takes a few KB instead of
 * 7 MB. What loading finds goes to PENDING, and reaches the caller only if
 * the whole file parses: a file with a YAML error reports just that, as
 * when the tree was built first. Any other order of keys gets the whole
 * tree. */
static bool key_is(const YamlNode *key, const char *name) {
        return key->kind == YAML_KIND_SCALAR && strcmp(key->value, name) == 0;
}

static bool loader_on_stream(void *userdata, const YamlNode *key, bool sequence) {
        Loader *l = userdata;

        if (!key_is(key, "environments") || l->envs_seen)
                return false;
        l->envs_seen = true;
        if (!sequence || !l->defaults_node)
                return false;
        l->diags = &l->pending;
        load_defaults(l, l->defaults_node, l->defaults);
        l->diags = l->file_diags;
        return true;
}

static void loader_on_value(void *userdata, const YamlNode *key, const YamlNode *value) {
        Loader *l = userdata;

        if (key_is(key, "defaults") && !l->defaults_node)
                l->defaults_node = value;
}

static void loader_on_item(void *userdata, const YamlNode *item, size_t index) {
        Loader *l = userdata;

        l->diags = &l->pending;
        load_environment(l, item, index, l->defaults);
        l->diags = l->file_diags;
}

static void loader_on_end(void *userdata, const YamlNode *sequence, size_t n) {
        Loader *l = userdata;

        l->envs_node = sequence;
        l->diags = &l->pending;
        load_environments_end(l, sequence, n);
        l->diags = l->file_diags;
}

/* ---- entry points ---- */

static int compare_env_names(const void *a, const void *b) {
        return strcmp((*(const EnvConfig *const *) a)->name, (*(const EnvConfig *const *) b)->name);
}

/* Builds c->by_name; names are known to be there and unique. */
static int config_index_names(Config *c) {
        c->by_name = reallocarray(NULL, c->n_envs ? c->n_envs : 1, sizeof(EnvConfig *));
        if (!c->by_name)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_envs; i++)
                c->by_name[i] = &c->envs[i];
        qsort(c->by_name, c->n_envs, sizeof(EnvConfig *), compare_env_names);
        return 0;
}

char *config_default_path(void) {
        const char *dir = getenv("CONFIGURATION_DIRECTORY");
        char *p;

        if (!dir || dir[0] != '/')
                return strdup(CONFIG_DEFAULT_PATH);
        /* systemd may list several directories separated by ':'; ours is the first. */
        if (asprintf(&p, "%.*s/refreshd.yaml", (int) strcspn(dir, ":"), dir) < 0)
                return NULL;
        return p;
}

static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, slash - path);
}

static int loader_init(Loader *l, const char *path, int64_t now, Diags *diags) {
        free(diags->path);
        diags->path = strdup(path);
        l->dir = dir_of(path);
        l->config = calloc(1, sizeof(Config));
        if (!diags->path || !l->dir || !l->config)
                return -ENOMEM;
        *l->config = (Config) {
                .n_ref = 1,
                .path = strdup(path),
                .request_timeout = 30 * USEC_PER_SEC,
                .max_concurrent_requests = 8,
        };
        return l->config->path ? 0 : -ENOMEM;
}

static void loader_done(Loader *l) {
        yaml_tree_free(l->tree);
        free(l->names);
        free(l->schedules);
        diags_clear(&l->pending);
        for (size_t i = 0; i < l->n_zones; i++)
                tz_unref(l->zones[i]);
        free(l->zones);
        free(l->dir);
        config_free(l->config);
}

/* Parses the tree and loads what it holds; the problems in DIAGS. */
static int loader_run(Loader *l, Diags *diags) {
        const YamlNode *root = NULL;
        int r;

        r = yaml_tree_parse(l->tree, &root);
        if (r == -EINVAL && diags->n_errors == 0)
                loader_diag(l, 0, 0, false, "invalid YAML");
        if (r >= 0 && diags_append(diags, &l->pending) < 0)
                r = -ENOMEM;
        if (r >= 0)
                load_root(l, root);
        if (r >= 0 && diags_sort(diags) < 0)
                r = -ENOMEM;
        if (l->oom < 0)
                return l->oom;
        if (r >= 0 && diags->n_errors > 0)
                return -EINVAL;
        if (r >= 0)
                r = config_index_names(l->config);
        return r;
}

/* Loads TEXT (SIZE bytes), or with TEXT NULL, the file open at FD. */
static int config_load_from(
        const char *path, const char *text, size_t size, int fd, int64_t now, Config **ret, Diags *diags) {
        EnvSection defaults;
        Loader l = { .diags = diags, .file_diags = diags, .defaults = &defaults, .now = now };
        const YamlHooks hooks = {
                .userdata = &l,
                .diag = loader_on_yaml_diag,
                .stream = loader_on_stream,
                .value = loader_on_value,
                .item = loader_on_item,
                .end = loader_on_end,
        };
        int r;

        r = loader_init(&l, path, now, diags);
        if (r >= 0 && size > CONFIG_MAX_SIZE) {
                loader_diag(
                        &l,
                        0,
                        0,
                        false,
                        "the file is %zu bytes long; a config may be at most %d bytes",
                        size,
                        CONFIG_MAX_SIZE);
                r = -EINVAL;
        }
        if (r >= 0)
                r = yaml_tree_new(text, size, fd, CONFIG_MAX_SIZE, &hooks, &l.tree);
        if (r >= 0)
                r = loader_run(&l, diags);
        if (r >= 0)
                *ret = TAKE_PTR(l.config);
        loader_done(&l);
        return r;
}

int config_load_string(
        const char *path, const char *text, size_t size, int64_t now, Config **ret, Diags *diags) {
        return config_load_from(path, text, size, -EBADF, now, ret, diags);
}

/* A problem with the whole file: DIAGS names PATH and holds it. -EINVAL. */
_printf_(3, 4) static int file_problem(const char *path, Diags *diags, const char *fmt, ...) {
        va_list ap;
        int r;

        free(diags->path);
        diags->path = strdup(path);
        if (!diags->path)
                return -ENOMEM;
        va_start(ap, fmt);
        r = diag_addv(diags, 0, 0, false, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -EINVAL;
}

int config_load(const char *path, int64_t now, Config **ret, Diags *diags) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;

        /* Never blocks on a FIFO (nor hangs a reload on one): a config is a regular file. */
        fd = open_regular(AT_FDCWD, path, O_RDONLY, 0, &st);
        if (fd < 0)
                return file_problem(path, diags, "cannot read the config file: %s", fileio_error(fd));
        /* A file too long is refused whatever it holds, before it is read.
         * libyaml reads the rest as it parses, and stops past the limit. */
        if (S_ISREG(st.st_mode) && st.st_size > CONFIG_MAX_SIZE)
                return file_problem(
                        path,
                        diags,
                        "the file is %jd bytes long; a config may be at most %d bytes",
                        (intmax_t) st.st_size,
                        CONFIG_MAX_SIZE);
        return config_load_from(path, NULL, 0, fd, now, ret, diags);
}

Config *config_ref(Config *c) {
        if (c)
                c->n_ref++;
        return c;
}

Config *config_free(Config *c) {
        if (!c || --c->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < c->n_envs; i++)
                tz_unref(c->envs[i].tz);
        free(c->envs);
        for (size_t i = 0; i < c->n_crons; i++)
                cron_spec_free(c->crons[i]);
        free(c->crons);
        arena_done(&c->strings);
        free(c->by_name);
        free(c->path);
        free(c->base_url);
        free(c->client_id);
        free(c->secret_name);
        free(c->secret_path);
        free(c->entity_id);
        free(c->control_group);
        free(c->ca_file);
        free(c);
        return NULL;
}

const EnvConfig *config_find_env(const Config *c, const char *name) {
        size_t lo = 0, hi = c->n_envs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int r = strcmp(c->by_name[mid]->name, name);
                if (r == 0)
                        return c->by_name[mid];
                if (r < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const char *secret_source_to_string(SecretSource s) {
        switch (s) {
        case SECRET_SOURCE_FILE:
                return "client_secret_file";
        case SECRET_SOURCE_CREDENTIAL:
                return "client_secret_credential";
        case SECRET_SOURCE_ENV:
                return "client_secret_env";
        case _SECRET_SOURCE_MAX:
        case _SECRET_SOURCE_INVALID:
                break;
        }
        return NULL;
}

const char *when_ineligible_to_string(WhenIneligible w) {
        switch (w) {
        case WHEN_INELIGIBLE_DEFER:
                return "defer";
        case WHEN_INELIGIBLE_SKIP:
                return "skip";
        case _WHEN_INELIGIBLE_MAX:
        case _WHEN_INELIGIBLE_INVALID:
                break;
        }
        return NULL;
}
