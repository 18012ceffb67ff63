/* SPDX-License-Identifier: MIT */
/*
 * hooks:, webhooks: and notify_emails:, under defaults: and per
 * environment: what follows an environment's events. Each key of an
 * environment replaces the defaults' key of the same name, as every other
 * key does; an environment that writes none of them shares the defaults'
 * EnvActions. Everything lands in the Config's STRINGS arena.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-internal.h"

static const EnvActions no_actions = {};

/* The event names as a key table, for did-you-mean. */
static const KeyInfo event_table[] = {
        { "submitted" },
        { "started" },
        { "completed" },
        { "failed" },
        { "canceled" },
        { "lost" },
        { "rejected" },
        { "skipped" },
        { "retrying" },
        { "hook_failed" },
        {},
};
_Static_assert(ELEMENTSOF(event_table) == _EVENT_KIND_MAX + 1, "every event kind has a name");

const char *config_check_url(const char *url) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL;
        const char *why = NULL;

        if (!u)
                return "out of memory";
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                why = "is not a valid URL";
        else {
                (void) curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
                (void) curl_url_get(u, CURLUPART_HOST, &host, 0);
                if (!scheme || !host ||
                    (strcmp(scheme, "https") != 0 &&
                     !(strcmp(scheme, "http") == 0 && is_loopback_host(host))))
                        why = "must start with https:// (http:// only to a loopback address: 127.0.0.0/8, "
                              "::1, localhost)";
        }
        curl_free(scheme);
        curl_free(host);
        curl_url_cleanup(u);
        return why;
}

static void *loader_alloc(Loader *l, size_t size) {
        void *p = arena_alloc(&l->config->strings, size ? size : 1, 16);
        if (!p)
                l->oom = -ENOMEM;
        else
                memset(p, 0, size);
        return p;
}

static const char *loader_strdup(Loader *l, const char *s) {
        char *p = arena_strdup(&l->config->strings, s);
        if (!p)
                l->oom = -ENOMEM;
        return p;
}

/* ---- on: ---- */

static void parse_event_name(Loader *l, const YamlNode *v, const char *context, uint32_t *on) {
        EventKind k;

        if (v->kind != YAML_KIND_SCALAR) {
                error_at(l, v, "%s: 'on' lists event names, not %s", context, yaml_kind_to_string(v->kind));
                return;
        }
        k = event_kind_from_string(v->value);
        if (k >= 0) {
                *on |= UINT32_C(1) << k;
                return;
        }
        const char *hint = did_you_mean(event_table, v->value);
        if (hint)
                error_at(
                        l, v, "%s: unknown event '%s' in 'on'; did you mean '%s'?", context, v->value, hint);
        else
                error_at(
                        l,
                        v,
                        "%s: unknown event '%s' in 'on' (events: submitted, started, completed, failed, "
                        "canceled, lost, rejected, skipped, retrying, hook_failed)",
                        context,
                        v->value);
}

/* 'on': one event name or a list of them; at least one. */
static uint32_t parse_on(Loader *l, const YamlNode *v, const char *context) {
        uint32_t on = 0;

        if (v->kind == YAML_KIND_SEQUENCE)
                for (size_t i = 0; i < v->n_items; i++)
                        parse_event_name(l, v->items[i], context, &on);
        else
                parse_event_name(l, v, context, &on);
        if (v->kind == YAML_KIND_SEQUENCE && v->n_items == 0)
                error_at(l, v, "%s: 'on' names no event", context);
        return on;
}

/* ---- hooks ---- */

typedef struct HookSection {
        Located on, run;
        uint64_t timeout;
} HookSection;

int parse_node(Loader *l, const YamlNode *key, const YamlNode *value, void *target) {
        ((Located *) target)->node = value;
        return 0;
}

static const KeyInfo hook_keys[] = {
        { "on", parse_node, offsetof(HookSection, on), true },
        { "run", parse_node, offsetof(HookSection, run), true },
        { "timeout", parse_duration, offsetof(HookSection, timeout), false },
        {},
};

/* An argument's placeholders: every {name} must be one the events have. */
static void check_placeholders(Loader *l, const YamlNode *v, const char *context, const char *key) {
        _cleanup_free_ char *out = NULL;
        const char *bad;
        unsigned line, column;

        if (event_expand(v->value, NULL, &out, &bad) != -EINVAL)
                return;
        yaml_tree_position(l->tree, v, (size_t) (bad - v->value), &line, &column);
        if (*bad == '{' && strchr(bad, '}'))
                loader_diag(
                        l,
                        line,
                        column,
                        false,
                        "%s: '%s': unknown placeholder '%.*s' (placeholders: {event}, {event_id}, "
                        "{environment}, {environment_id}, {slot}, {job_id}, {job_status}, {job_start}, "
                        "{job_end}, {track_id}, {message}; '{{' for a brace)",
                        context,
                        key,
                        (int) (strchr(bad, '}') - bad + 1),
                        bad);
        else
                loader_diag(
                        l,
                        line,
                        column,
                        false,
                        "%s: '%s': unbalanced '%c' (write '%c%c' for a brace)",
                        context,
                        key,
                        *bad,
                        *bad,
                        *bad);
}

static void check_program(Loader *l, const YamlNode *v, const char *context) {
        struct stat st;

        if (v->value[0] != '/')
                error_at(
                        l,
                        v,
                        "%s: 'run': '%s' must be an absolute path to an executable (hooks run without a "
                        "shell or a search path)",
                        context,
                        v->value);
        else if (stat(v->value, &st) < 0)
                error_at(l, v, "%s: 'run': '%s': %s", context, v->value, strerror(errno));
        else if (!S_ISREG(st.st_mode) || access(v->value, X_OK) < 0)
                error_at(l, v, "%s: 'run': '%s' is not an executable file", context, v->value);
}

static const char *const *parse_argv(Loader *l, const YamlNode *run, const char *context) {
        const YamlNode *const *items = &run;
        size_t n = 1;

        if (run->kind == YAML_KIND_SEQUENCE) {
                items = (const YamlNode *const *) run->items;
                n = run->n_items;
        }
        if (n == 0) {
                error_at(l, run, "%s: 'run' is empty: give the program and its arguments", context);
                return NULL;
        }
        const char **argv = loader_alloc(l, (n + 1) * sizeof(char *));
        for (size_t i = 0; argv && i < n; i++) {
                const YamlNode *v = items[i];
                if (v->kind != YAML_KIND_SCALAR) {
                        error_at(
                                l,
                                v,
                                "%s: 'run' is a list of words (the program, then its arguments), not %s",
                                context,
                                yaml_kind_to_string(v->kind));
                        return NULL;
                }
                if (i == 0)
                        check_program(l, v, context);
                else
                        check_placeholders(l, v, context, "run");
                argv[i] = loader_strdup(l, v->value);
        }
        return argv;
}

/* The digest that names a hook in state.json: its words, each with its NUL. */
static void argv_key(const char *const *argv, char key[static EVENT_ID_LEN + 1]) {
        size_t size = 0;

        for (size_t i = 0; argv[i]; i++)
                size += strlen(argv[i]) + 1;
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        char *p = buf;
        for (size_t i = 0; buf && argv[i]; i++)
                p = stpcpy(p, argv[i]) + 1;
        event_digest(buf ? buf : "", buf ? size : 0, key);
}

static void load_hook(Loader *l, const YamlNode *node, size_t index, HookConfig *h, const char *context) {
        HookSection s = { .timeout = UNSET_DURATION };
        char sub[192];

        snprintf(sub, sizeof(sub), "%s: hooks[%zu]", context, index + 1);
        parse_mapping(l, node, hook_keys, &s, sub);
        *h = (HookConfig) { .line = node->line, .column = node->column };
        h->timeout = s.timeout == UNSET_DURATION ? HOOK_TIMEOUT_DEFAULT : s.timeout;
        if (s.timeout != UNSET_DURATION &&
            (s.timeout < USEC_PER_SEC || s.timeout > 7 * 24 * 3600 * USEC_PER_SEC))
                error_at(l, node, "%s: 'timeout' must be between 1s and 7d", sub);
        if (s.on.node)
                h->on = parse_on(l, s.on.node, sub);
        if (s.run.node)
                h->argv = parse_argv(l, s.run.node, sub);
        if (h->argv)
                argv_key(h->argv, h->key);
}

/* ---- webhooks ---- */

typedef struct WebhookSection {
        Located on, url, url_file, url_credential, url_env, format;
} WebhookSection;

static const KeyInfo webhook_keys[] = {
        { "on", parse_node, offsetof(WebhookSection, on), true },
        { "url", parse_located, offsetof(WebhookSection, url), false },
        { "url_file", parse_located, offsetof(WebhookSection, url_file), false },
        { "url_credential", parse_located, offsetof(WebhookSection, url_credential), false },
        { "url_env", parse_located, offsetof(WebhookSection, url_env), false },
        { "format", parse_located, offsetof(WebhookSection, format), false },
        {},
};

/* Where a webhook's URL comes from, checked as the client secret's source is. */
static void load_url_source(Loader *l, const WebhookSection *s, WebhookConfig *w, const char *context) {
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        const YamlNode *v;
        const char *why;

        if (s->url.node) {
                v = s->url.node;
                /* Not echoed: a webhook URL often is a secret. */
                if ((why = config_check_url(v->value)))
                        error_at(l, v, "%s: 'url' %s", context, why);
                w->url = loader_strdup(l, v->value);
        } else if ((v = s->url_file.node)) {
                w->url_source = SECRET_SOURCE_FILE;
                w->url_path = path_join(l->dir, v->value);
                check_secret_file(l, v, "url_file", "the webhook URL", w->url_path, true);
        } else if ((v = s->url_credential.node)) {
                w->url_source = SECRET_SOURCE_CREDENTIAL;
                if (strchr(v->value, '/') || v->value[0] == '.') {
                        error_at(
                                l,
                                v,
                                "%s: 'url_credential': '%s' must be a credential name, not a path",
                                context,
                                v->value);
                        return;
                }
                w->url_path = path_join(creds && creds[0] == '/' ? creds : l->dir, v->value);
                check_secret_file(
                        l, v, "url_credential", "the webhook URL", w->url_path, !(creds && creds[0] == '/'));
        } else {
                v = s->url_env.node;
                w->url_source = SECRET_SOURCE_ENV;
                const char *val = getenv(v->value);
                if (!val || !val[0])
                        error_at(
                                l,
                                v,
                                "%s: 'url_env': environment variable %s is %s",
                                context,
                                v->value,
                                val ? "empty" : "not set");
        }
        w->line = v->line;
        w->column = v->column;
        w->url_name = loader_strdup(l, v->value);
        if (w->url_path) {
                /* path_join() allocates with malloc(): move it into the arena. */
                char *p = (char *) w->url_path;
                w->url_path = loader_strdup(l, p);
                free(p);
        }
}

static void load_webhook(
        Loader *l, const YamlNode *node, size_t index, WebhookConfig *w, const char *context) {
        WebhookSection s = {};
        char sub[192], key[512];

        snprintf(sub, sizeof(sub), "%s: webhooks[%zu]", context, index + 1);
        parse_mapping(l, node, webhook_keys, &s, sub);
        *w = (WebhookConfig) { .line = node->line, .column = node->column };
        if (s.on.node)
                w->on = parse_on(l, s.on.node, sub);
        if (s.format.node) {
                const YamlNode *v = s.format.node;
                if (strcmp(v->value, "json") == 0)
                        w->format = WEBHOOK_FORMAT_JSON;
                else if (strcmp(v->value, "slack") == 0)
                        w->format = WEBHOOK_FORMAT_SLACK;
                else
                        error_at(l, v, "%s: 'format' must be 'json' or 'slack', not '%s'", sub, v->value);
        }
        int n = !!s.url.node + !!s.url_file.node + !!s.url_credential.node + !!s.url_env.node;
        if (n != 1) {
                error_at(
                        l,
                        node,
                        n == 0 ? "%s: give the URL with one of url, url_file, url_credential or url_env"
                               : "%s: give only one of url, url_file, url_credential and url_env",
                        sub);
                return;
        }
        load_url_source(l, &s, w, sub);
        snprintf(
                key,
                sizeof(key),
                "%s\n%s\n%s",
                w->url ? "url" : secret_source_to_string(w->url_source),
                w->url ? w->url : (w->url_name ? w->url_name : ""),
                webhook_format_to_string(w->format));
        event_digest(key, strlen(key), w->key);
}

/* ---- notify_emails ---- */

static bool valid_address(const char *a) {
        const char *at = strchr(a, '@');

        if (!at || at == a || strchr(at + 1, '@') || !strchr(at + 1, '.') || at[1] == '.' ||
            a[strlen(a) - 1] == '.' || strlen(a) > 254)
                return false;
        for (const char *p = a; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f || strchr("\"(),:;<>[\\]", *p))
                        return false;
        return true;
}

typedef struct EmailSection {
        Located address, name;
} EmailSection;

static const KeyInfo email_keys[] = {
        { "address", parse_located, offsetof(EmailSection, address), true },
        { "name", parse_located, offsetof(EmailSection, name), false },
        {},
};

static void load_email(Loader *l, const YamlNode *node, NotifyEmail *m, const char *context) {
        EmailSection s = {};
        char sub[192];

        if (node->kind == YAML_KIND_SCALAR)
                s.address.node = node; /* a bare address */
        else {
                snprintf(sub, sizeof(sub), "%s: notify_emails", context);
                parse_mapping(l, node, email_keys, &s, sub);
        }
        if (!s.address.node)
                return;
        if (!valid_address(s.address.node->value)) {
                error_at(
                        l,
                        s.address.node,
                        "%s: notify_emails: '%s' is not an e-mail address",
                        context,
                        s.address.node->value);
                return;
        }
        m->address = loader_strdup(l, s.address.node->value);
        m->name = s.name.node ? loader_strdup(l, s.name.node->value) : NULL;
}

static void check_duplicate_emails(
        Loader *l, const YamlNode *list, const NotifyEmail *m, size_t n, const char *context) {
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; m[i].address && j < i; j++)
                        if (m[j].address && strcasecmp(m[i].address, m[j].address) == 0) {
                                error_at(
                                        l,
                                        list->items[i],
                                        "%s: notify_emails: '%s' is listed twice",
                                        context,
                                        m[i].address);
                                break;
                        }
}

/* ---- the lists ---- */

static bool want_list(Loader *l, const YamlNode *v, const char *context, const char *key) {
        if (v->kind == YAML_KIND_SEQUENCE)
                return true;
        error_at(l, v, "%s: '%s' must be a list, not %s", context, key, yaml_kind_to_string(v->kind));
        return false;
}

static void load_hooks(Loader *l, const YamlNode *v, EnvActions *a, const char *context) {
        if (!want_list(l, v, context, "hooks"))
                return;
        HookConfig *h = loader_alloc(l, v->n_items * sizeof(HookConfig));
        for (size_t i = 0; h && i < v->n_items; i++)
                load_hook(l, v->items[i], i, &h[i], context);
        a->hooks = h;
        a->n_hooks = h ? v->n_items : 0;
}

static void load_webhooks(Loader *l, const YamlNode *v, EnvActions *a, const char *context) {
        if (!want_list(l, v, context, "webhooks"))
                return;
        WebhookConfig *w = loader_alloc(l, v->n_items * sizeof(WebhookConfig));
        for (size_t i = 0; w && i < v->n_items; i++)
                load_webhook(l, v->items[i], i, &w[i], context);
        a->webhooks = w;
        a->n_webhooks = w ? v->n_items : 0;
}

static void load_emails(Loader *l, const YamlNode *v, EnvActions *a, const char *context) {
        if (!want_list(l, v, context, "notify_emails"))
                return;
        NotifyEmail *m = loader_alloc(l, v->n_items * sizeof(NotifyEmail));
        for (size_t i = 0; m && i < v->n_items; i++)
                load_email(l, v->items[i], &m[i], context);
        if (m)
                check_duplicate_emails(l, v, m, v->n_items, context);
        a->emails = m;
        a->n_emails = m ? v->n_items : 0;
}

const EnvActions *actions_load(
        Loader *l, const ActionNodes *n, const EnvActions *inherit, const char *context) {
        if (!inherit)
                inherit = &no_actions;
        if (!n->hooks && !n->webhooks && !n->emails)
                return inherit;
        EnvActions *a = loader_alloc(l, sizeof(EnvActions));
        if (!a)
                return inherit;
        *a = *inherit;
        if (n->hooks)
                load_hooks(l, n->hooks, a, context);
        if (n->webhooks)
                load_webhooks(l, n->webhooks, a, context);
        if (n->emails)
                load_emails(l, n->emails, a, context);
        return a;
}

bool config_has_actions(const Config *c) {
        for (size_t i = 0; i < c->n_envs; i++) {
                const EnvActions *a = c->envs[i].actions;
                if (a->n_hooks || a->n_webhooks || a->n_emails)
                        return true;
        }
        return false;
}

const char *webhook_format_to_string(WebhookFormat f) {
        static const char *const names[] = { "json", "slack" };
        return f >= 0 && f < _WEBHOOK_FORMAT_MAX ? names[f] : NULL;
}
