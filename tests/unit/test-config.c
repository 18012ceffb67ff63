/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the config loader (daemon/config.c): the schema, the
 * defaults, and above all the diagnostics. Every error class is checked for
 * its exact line and column (from 1, as editors count), its severity and the
 * words its message must carry, since `refreshd check` is only as useful as
 * the place it points at. Most tests load text from memory with a fixed
 * "now"; the ones about files (size limit, missing file, secret files and
 * their modes, credentials) work in a fresh mkdtemp() directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "macro.h"

/* 2026-11-29T00:00:00Z, a Sunday (`date -u -d @1795910400`). */
#define NOW INT64_C(1795910400)

#define TEST_PATH "/nonexistent/refreshd.yaml"
#define SECRET_ENV "REFRESHD_TEST_SECRET"
#define ENV_ID "11111111-1111-1111-1111-111111111111"

/* Lines 1-4: a zuora section that is valid on its own. */
#define ZUORA_OK                                                                                              \
        "zuora:\n"                                                                                            \
        "  base_url: https://rest.zuora.com\n"                                                                \
        "  client_id: abc\n"                                                                                  \
        "  client_secret_env: " SECRET_ENV "\n"

/* Four lines: one valid environment. */
#define ENVS_OK                                                                                               \
        "environments:\n"                                                                                     \
        "  - name: uat\n"                                                                                     \
        "    id: " ENV_ID "\n"                                                                                \
        "    schedule: \"0 3 * * SUN#1\"\n"

/* Lines 5-8 after ZUORA_OK: environments with one entry whose schedule
 * (quoted, so its text starts at column 16 of line 8) is S. */
#define ENV_WITH_SCHEDULE(s)                                                                                  \
        "environments:\n"                                                                                     \
        "  - name: uat\n"                                                                                     \
        "    id: " ENV_ID "\n"                                                                                \
        "    schedule: \"" s "\"\n"

/* ---- helpers ---- */

typedef struct Loaded {
        int r;
        Config *config;
        Diags diags;
} Loaded;

static void loaded_done(Loaded *t) {
        t->config = config_free(t->config);
        diags_clear(&t->diags);
}

static Loaded load_text_as(const char *path, const char *text) {
        Loaded t = {};

        t.r = config_load_string(path, text, strlen(text), NOW, &t.config, &t.diags);
        return t;
}

static Loaded load_text(const char *text) {
        return load_text_as(TEST_PATH, text);
}

static Loaded load_file(const char *path) {
        Loaded t = {};

        t.r = config_load(path, NOW, &t.config, &t.diags);
        return t;
}

static void print_diags(const Diags *d) {
        print_error("  diagnostics (%u errors, %u warnings):\n", d->n_errors, d->n_warnings);
        for (size_t i = 0; i < d->n; i++)
                print_error("    %u:%u: %s: %s\n", d->items[i].line, d->items[i].column,
                            d->items[i].warning ? "warning" : "error", d->items[i].message);
}

static bool diag_matches(const Diag *g, unsigned line, unsigned column, bool warning,
                         const char *const *words) {
        if (g->line != line || g->column != column || g->warning != warning)
                return false;
        for (size_t i = 0; words[i]; i++)
                if (!strstr(g->message, words[i]))
                        return false;
        return true;
}

/* Fails unless D holds a diagnostic at exactly LINE:COLUMN, of that
 * severity, whose message contains every one of WORDS. */
static void assert_diag_impl(const Diags *d, unsigned line, unsigned column, bool warning,
                             const char *const *words, const char *file, int file_line) {
        for (size_t i = 0; i < d->n; i++)
                if (diag_matches(&d->items[i], line, column, warning, words))
                        return;

        print_error("expected %s at %u:%u containing", warning ? "a warning" : "an error", line, column);
        for (size_t i = 0; words[i]; i++)
                print_error(" \"%s\"", words[i]);
        print_error("\n");
        print_diags(d);
        _fail(file, file_line);
}

#define assert_diag(d, line, column, warning, ...)                                                            \
        assert_diag_impl((d), (line), (column), (warning), (const char *const[]) { __VA_ARGS__, NULL },       \
                         __FILE__, __LINE__)
#define assert_error_at(t, line, column, ...) assert_diag(&(t)->diags, line, column, false, __VA_ARGS__)
#define assert_warning_at(t, line, column, ...) assert_diag(&(t)->diags, line, column, true, __VA_ARGS__)

/* Fails unless T was refused with exactly N_ERRORS errors. */
static void assert_refused_impl(const Loaded *t, unsigned n_errors, const char *file, int file_line) {
        if (t->r == -EINVAL && !t->config && t->diags.n_errors == n_errors)
                return;
        print_error("expected -EINVAL with %u errors, got r=%d, config=%p\n", n_errors, t->r,
                    (void *) t->config);
        print_diags(&t->diags);
        _fail(file, file_line);
}

/* Fails unless T loaded, with no error and exactly N_WARNINGS warnings. */
static void assert_loaded_impl(const Loaded *t, unsigned n_warnings, const char *file, int file_line) {
        if (t->r == 0 && t->config && t->diags.n_errors == 0 && t->diags.n_warnings == n_warnings)
                return;
        print_error("expected a config with %u warnings, got r=%d, config=%p\n", n_warnings, t->r,
                    (void *) t->config);
        print_diags(&t->diags);
        _fail(file, file_line);
}

#define assert_refused(t, n) assert_refused_impl((t), (n), __FILE__, __LINE__)
#define assert_loaded(t, n) assert_loaded_impl((t), (n), __FILE__, __LINE__)

/* Loads TEXT and expects exactly one error, at LINE:COLUMN, naming WORDS. */
#define check_one_error(text, line, column, ...)                                                              \
        do {                                                                                                  \
                _cleanup_(loaded_done) Loaded _t = load_text(text);                                           \
                assert_refused(&_t, 1);                                                               \
                assert_error_at(&_t, line, column, __VA_ARGS__);                                              \
        } while (false)

/* Loads TEXT and expects a config with one warning at LINE:COLUMN. */
#define check_one_warning(text, line, column, ...)                                                            \
        do {                                                                                                  \
                _cleanup_(loaded_done) Loaded _t = load_text(text);                                           \
                assert_loaded(&_t, 1);                                                                        \
                assert_warning_at(&_t, line, column, __VA_ARGS__);                                            \
        } while (false)

/* Loads TEXT and expects a clean config. */
#define check_loads(text)                                                                                     \
        do {                                                                                                  \
                _cleanup_(loaded_done) Loaded _t = load_text(text);                                           \
                assert_loaded(&_t, 0);                                                                        \
        } while (false)

/* A zuora section (lines 1-4) with BASE_URL on line 2, then ENVS_OK. */
static char *text_with_base_url(const char *base_url) {
        char *s;

        assert_true(asprintf(&s,
                             "zuora:\n"
                             "  base_url: %s\n"
                             "  client_id: abc\n"
                             "  client_secret_env: " SECRET_ENV "\n" ENVS_OK,
                             base_url) >= 0);
        return s;
}

/* ---- temporary directories, for the tests that need files ---- */

static int tmpdir_setup(void **state) {
        char *dir = strdup("/tmp/refreshd-test-config-XXXXXX");

        if (!dir || !mkdtemp(dir)) {
                free(dir);
                return -1;
        }
        *state = dir;
        return 0;
}

static int tmpdir_teardown(void **state) {
        char *dir = *state;
        DIR *d = opendir(dir);

        if (d) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                closedir(d);
        }
        (void) rmdir(dir);
        free(dir);
        unsetenv("CREDENTIALS_DIRECTORY");
        return 0;
}

static char *path_in(const char *dir, const char *name) {
        char *p;

        assert_true(asprintf(&p, "%s/%s", dir, name) >= 0);
        return p;
}

/* Writes SIZE bytes of DATA to PATH with exactly MODE (umask aside). */
static void write_file(const char *path, const void *data, size_t size, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, size), (ssize_t) size);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
}

/* Makes a secret file with mkstemp() in DIR; returns its path. */
static char *make_secret(const char *dir, const char *content, mode_t mode) {
        char *p = path_in(dir, "secret-XXXXXX");
        int fd = mkstemp(p);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
        return p;
}

/* Writes DIR/refreshd.yaml with a zuora section whose secret line (line 4)
 * is SECRET_LINE, then ENVS_OK; returns the config's path. */
static char *write_config_with_secret(const char *dir, const char *secret_line) {
        char *path = path_in(dir, "refreshd.yaml"), *text;

        assert_true(asprintf(&text,
                             "zuora:\n"
                             "  base_url: https://rest.zuora.com\n"
                             "  client_id: abc\n"
                             "  %s\n" ENVS_OK,
                             secret_line) >= 0);
        write_file(path, text, strlen(text), 0644);
        free(text);
        return path;
}

/* ---- a valid file and what it yields ---- */

static void test_valid_config(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(
                "zuora:\n"
                "  base_url: https://rest.zuora.com/\n"
                "  client_id: \"0a1b2c\"\n"
                "  client_secret_env: " SECRET_ENV "\n"
                "  entity_id: \"8a8aa\"\n"
                "  request_timeout: 45s\n"
                "  max_concurrent_requests: 3\n"
                "environments:\n"
                "  - name: uat\n" /* line 9 */
                "    id: " ENV_ID "\n"
                "    schedule: \"0 3 * * SUN#1\"\n"
                "    timezone: Europe/Berlin\n"
                "    min_interval: 28d\n"
                "    enabled: true\n"
                "  - name: dev.2_x-y\n" /* line 15 */
                "    id: 22222222-2222-2222-2222-222222222222\n"
                "    schedule: \"@daily\"\n");
        const EnvConfig *e;

        assert_loaded(&t, 0);
        assert_string_equal(t.config->path, TEST_PATH);
        assert_string_equal(t.config->base_url, "https://rest.zuora.com");
        assert_string_equal(t.config->client_id, "0a1b2c");
        assert_int_equal(t.config->secret_source, SECRET_SOURCE_ENV);
        assert_string_equal(t.config->secret_name, SECRET_ENV);
        assert_string_equal(t.config->entity_id, "8a8aa");
        assert_null(t.config->ca_file);
        assert_int_equal(t.config->request_timeout, 45 * USEC_PER_SEC);
        assert_int_equal(t.config->max_concurrent_requests, 3);
        assert_int_equal(t.config->n_envs, 2);

        e = config_find_env(t.config, "uat");
        assert_non_null(e);
        assert_ptr_equal(e, &t.config->envs[0]);
        assert_string_equal(e->id, ENV_ID);
        assert_string_equal(e->schedule, "0 3 * * SUN#1");
        assert_non_null(e->cron);
        assert_string_equal(tz_name(e->tz), "Europe/Berlin");
        assert_int_equal(e->min_interval, 28 * 86400 * USEC_PER_SEC);
        assert_true(e->enabled);
        assert_int_equal(e->line, 9);

        e = config_find_env(t.config, "dev.2_x-y");
        assert_non_null(e);
        assert_string_equal(e->schedule, "@daily");
        assert_int_equal(e->line, 15);
        assert_null(config_find_env(t.config, "prod"));
}

/* config_find_env() searches names sorted apart from the file's order. */
static void test_find_env_many(void **state) {
        char *text = NULL, name[16];
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        assert_non_null(f);
        fputs(ZUORA_OK "environments:\n", f);
        for (int i = 0; i < 500; i++)
                fprintf(f, "  - name: e%d\n    id: i%d\n    schedule: \"%d 3 * * *\"\n", (i * 7919) % 500, i,
                        i % 60);
        assert_int_equal(fclose(f), 0);

        _cleanup_(loaded_done) Loaded t = load_text(text);
        assert_loaded(&t, 0);
        for (int i = 0; i < 500; i++) {
                snprintf(name, sizeof(name), "e%d", (i * 7919) % 500);
                assert_ptr_equal(config_find_env(t.config, name), &t.config->envs[i]);
        }
        assert_null(config_find_env(t.config, "e500"));
        assert_null(config_find_env(t.config, ""));
        assert_null(config_find_env(t.config, "zz"));
        free(text);
}

/* Environments with the same schedule text share its string and CronSpec;
 * each still gets its own checks. */
static void test_schedules_shared(void **state) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        assert_non_null(f);
        fputs(ZUORA_OK "environments:\n", f);
        /* 300 distinct schedules, each written twice, far apart. */
        for (int i = 0; i < 600; i++)
                fprintf(f, "  - name: e%d\n    id: i%d\n    schedule: \"%d %d * * *\"\n", i, i, i % 60,
                        (i % 300) / 60);
        assert_int_equal(fclose(f), 0);
        {
                _cleanup_(loaded_done) Loaded t = load_text(text);
                assert_loaded(&t, 0);
                assert_int_equal(t.config->n_crons, 300);
                for (int i = 0; i < 600; i++) {
                        const EnvConfig *e = &t.config->envs[i], *twin = &t.config->envs[(i + 300) % 600];
                        char want[32];
                        int64_t next;

                        snprintf(want, sizeof(want), "%d %d * * *", i % 60, (i % 300) / 60);
                        assert_string_equal(e->schedule, want);
                        assert_ptr_equal(e->schedule, twin->schedule);
                        assert_ptr_equal(e->cron, twin->cron);
                        if (i > 0)
                                assert_ptr_not_equal(e->cron, t.config->envs[i - 1].cron);
                        assert_int_equal(cron_next(e->cron, NULL, NOW, &next), 0);
                        assert_int_equal(next, NOW + ((i % 300) / 60) * 3600 + (i % 60) * 60 + (i % 60 == 0 && i % 300 < 60 ? 86400 : 0));
                }
        }
        free(text);

        /* A shared schedule is still checked against each environment's min_interval. */
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "environments:\n"
                                                            "  - name: a\n"
                                                            "    id: a1\n"
                                                            "    schedule: \"0 * * * *\"\n"
                                                            "  - name: b\n"
                                                            "    id: a2\n"
                                                            "    schedule: \"0 * * * *\"\n"
                                                            "    min_interval: 2h\n"
                                                            "  - name: c\n"
                                                            "    id: a3\n"
                                                            "    schedule: \"0 * * * *\"\n"
                                                            "    min_interval: 3h\n"
                                                            "  - name: d\n"
                                                            "    id: a4\n"
                                                            "    schedule: \"0 61 * * *\"\n"
                                                            "  - name: e\n"
                                                            "    id: a5\n"
                                                            "    schedule: \"0 61 * * *\"\n");
                assert_refused(&t, 4);
                assert_error_at(&t, 11, 15, "closer than min_interval 2h");
                assert_error_at(&t, 15, 15, "closer than min_interval 3h");
                assert_error_at(&t, 19, 18, "hour value 61");
                assert_error_at(&t, 22, 18, "hour value 61");
        }
}

static void test_builtin_defaults(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK ENVS_OK);
        const EnvConfig *e;

        assert_loaded(&t, 0);
        assert_int_equal(t.config->request_timeout, 30 * USEC_PER_SEC);
        assert_int_equal(t.config->max_concurrent_requests, 8);
        assert_null(t.config->entity_id);
        assert_null(t.config->ca_file);
        assert_int_equal(t.config->n_envs, 1);

        e = &t.config->envs[0];
        assert_int_equal(e->poll_interval, 60 * USEC_PER_SEC);
        assert_true(e->catch_up);
        assert_int_equal(e->min_interval, 0);
        assert_int_equal(e->submit_ahead, 0);
        assert_int_equal(e->when_ineligible, WHEN_INELIGIBLE_DEFER);
        assert_int_equal(e->retry_for, 3600 * USEC_PER_SEC);
        assert_non_null(e->tz);
        assert_string_equal(tz_name(e->tz), "UTC");
        assert_true(e->enabled);
}

static void test_defaults_inheritance(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(
                ZUORA_OK
                "defaults:\n"
                "  timezone: Europe/Berlin\n"
                "  poll_interval: 5m\n"
                "  catch_up: false\n"
                "  min_interval: 1d\n"
                "  submit_ahead: 2m\n"
                "  when_ineligible: skip\n"
                "  retry_for: 2h\n"
                "environments:\n"
                "  - name: inherits\n"
                "    id: a1\n"
                "    schedule: \"0 3 * * *\"\n"
                "  - name: overrides\n"
                "    id: b2\n"
                "    schedule: \"0 3 * * *\"\n"
                "    timezone: America/New_York\n"
                "    poll_interval: 90s\n"
                "    catch_up: yes\n"
                "    min_interval: 1h30m\n"
                "    submit_ahead: 500ms\n"
                "    when_ineligible: defer\n"
                "    retry_for: 1w\n"
                "    enabled: off\n");
        const EnvConfig *a, *b;

        assert_loaded(&t, 0);
        a = config_find_env(t.config, "inherits");
        b = config_find_env(t.config, "overrides");
        assert_non_null(a);
        assert_non_null(b);

        assert_string_equal(tz_name(a->tz), "Europe/Berlin");
        assert_int_equal(a->poll_interval, 5 * 60 * USEC_PER_SEC);
        assert_false(a->catch_up);
        assert_int_equal(a->min_interval, 86400 * USEC_PER_SEC);
        assert_int_equal(a->submit_ahead, 120 * USEC_PER_SEC);
        assert_int_equal(a->when_ineligible, WHEN_INELIGIBLE_SKIP);
        assert_int_equal(a->retry_for, 2 * 3600 * USEC_PER_SEC);
        assert_true(a->enabled);

        assert_string_equal(tz_name(b->tz), "America/New_York");
        assert_int_equal(b->poll_interval, 90 * USEC_PER_SEC);
        assert_true(b->catch_up);
        assert_int_equal(b->min_interval, 5400 * USEC_PER_SEC);
        assert_int_equal(b->submit_ahead, 500 * USEC_PER_MSEC);
        assert_int_equal(b->when_ineligible, WHEN_INELIGIBLE_DEFER);
        assert_int_equal(b->retry_for, 7 * 86400 * USEC_PER_SEC);
        assert_false(b->enabled);
}

/* ---- unknown keys ---- */

static void test_unknown_keys(void **state) {
        /* Top level, with and without a suggestion. */
        check_one_error(ZUORA_OK ENVS_OK "enviroment: 1\n", 9, 1, "unknown key 'enviroment'",
                        "did you mean 'environments'?");
        check_one_error(ZUORA_OK ENVS_OK "colour: blue\n", 9, 1, "unknown key 'colour'");
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK ENVS_OK "colour: blue\n");
                assert_null(strstr(t.diags.items[0].message, "did you mean"));
        }
        /* A typo of a required key is unknown, and the key is then missing. */
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK "enviroments:\n  - name: uat\n");
                assert_refused(&t, 2);
                assert_error_at(&t, 5, 1, "unknown key 'enviroments'", "did you mean 'environments'?");
                assert_error_at(&t, 1, 1, "missing required key 'environments'");
        }

        /* In zuora. */
        check_one_error(ZUORA_OK "  entityid: x\n" ENVS_OK, 5, 3, "unknown key 'entityid'", "zuora",
                        "did you mean 'entity_id'?");
        check_one_error(ZUORA_OK "  proxy: x\n" ENVS_OK, 5, 3, "unknown key 'proxy'", "zuora");
        {
                _cleanup_(loaded_done) Loaded t = load_text(
                        "zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  clientid: abc\n"
                        "  client_secret_env: " SECRET_ENV "\n" ENVS_OK);
                assert_refused(&t, 2);
                assert_error_at(&t, 3, 3, "unknown key 'clientid'", "did you mean 'client_id'?");
                assert_error_at(&t, 2, 3, "zuora", "missing required key 'client_id'");
        }

        /* In defaults: 'enabled' belongs to environments only. */
        check_one_error(ZUORA_OK "defaults:\n  pol_interval: 5m\n" ENVS_OK, 6, 3,
                        "unknown key 'pol_interval'", "defaults", "did you mean 'poll_interval'?");
        check_one_error(ZUORA_OK "defaults:\n  timzone: UTC\n" ENVS_OK, 6, 3, "unknown key 'timzone'",
                        "did you mean 'timezone'?");
        check_one_error(ZUORA_OK "defaults:\n  colour: blue\n" ENVS_OK, 6, 3, "unknown key 'colour'",
                        "defaults");

        /* In an environment, which the message names. */
        check_one_error(ZUORA_OK ENVS_OK "    catchup: true\n", 9, 5, "unknown key 'catchup'",
                        "environment 'uat'", "did you mean 'catch_up'?");
        check_one_error(ZUORA_OK ENVS_OK "    owner: me\n", 9, 5, "unknown key 'owner'",
                        "environment 'uat'");
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "environments:\n"
                                                            "  - name: uat\n"
                                                            "    id: a1\n"
                                                            "    shedule: \"@daily\"\n");
                assert_refused(&t, 2);
                assert_error_at(&t, 8, 5, "unknown key 'shedule'", "environment 'uat'",
                                "did you mean 'schedule'?");
                assert_error_at(&t, 6, 5, "environment 'uat'", "missing required key 'schedule'");
        }

        /* A key that is not a scalar. */
        check_one_error(ZUORA_OK "  {a: 1}: 2\n" ENVS_OK, 5, 3, "keys in zuora");
}

/* ---- wrong types ---- */

static void test_wrong_types(void **state) {
        /* A list where a string is expected, in flow and in block style. */
        check_one_error(ZUORA_OK ENVS_OK "    timezone: [a, b]\n", 9, 15, "'timezone'",
                        "must be a single value", "a list");
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id:\n"
                        "    - abc\n"
                        "  client_secret_env: " SECRET_ENV "\n" ENVS_OK,
                        4, 5, "zuora", "'client_id'", "a list");
        check_one_error(ZUORA_OK "defaults:\n  timezone: {name: UTC}\n" ENVS_OK, 6, 13, "'timezone'",
                        "a mapping");

        /* Sections of the wrong shape. */
        check_one_error(ZUORA_OK "environments:\n  uat: 1\n", 6, 3, "'environments' must be a list",
                        "a mapping");
        check_one_error(ZUORA_OK "environments: uat\n", 5, 15, "'environments' must be a list", "a scalar");
        check_one_error("zuora: rest.zuora.com\n" ENVS_OK, 1, 8, "zuora must be a mapping", "a scalar");
        check_one_error("zuora: [a]\n" ENVS_OK, 1, 8, "zuora must be a mapping", "a list");
        check_one_error(ZUORA_OK "defaults: 3\n" ENVS_OK, 5, 11, "defaults must be a mapping", "a scalar");
        check_one_error("- a\n- b\n", 1, 1, "the config file must be a mapping", "a list");
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK "environments:\n  - uat\n  - [1]\n");
                assert_refused(&t, 2);
                assert_error_at(&t, 6, 5, "environment #1 must be a mapping", "a scalar");
                assert_error_at(&t, 7, 5, "environment #2 must be a mapping", "a list");
        }

        /* Booleans. */
        check_one_error(ZUORA_OK ENVS_OK "    catch_up: maybe\n", 9, 15, "'catch_up'", "true or false",
                        "'maybe'");
        check_one_error(ZUORA_OK ENVS_OK "    enabled: 1\n", 9, 14, "'enabled'", "true or false");
        check_one_error(ZUORA_OK "defaults:\n  catch_up: \"\"\n" ENVS_OK, 6, 13, "'catch_up'",
                        "true or false");

        /* Numbers. */
        check_one_error(ZUORA_OK "  max_concurrent_requests: eight\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'", "whole number", "'eight'");
        check_one_error(ZUORA_OK "  max_concurrent_requests: 0\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'");
        check_one_error(ZUORA_OK "  max_concurrent_requests: -1\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'");
        check_one_error(ZUORA_OK "  max_concurrent_requests: 2.5\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'");
        check_one_error(ZUORA_OK "  max_concurrent_requests: 100001\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'");
        check_one_error(ZUORA_OK "  max_concurrent_requests: 99999999999999999999999\n" ENVS_OK, 5, 28,
                        "'max_concurrent_requests'");

        /* Enumerations. */
        check_one_error(ZUORA_OK ENVS_OK "    when_ineligible: later\n", 9, 22, "'when_ineligible'",
                        "'defer'", "'skip'", "'later'");

        /* A key with no value at all points just past its colon. */
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval:\n", 9, 19, "'poll_interval' needs a value");
        check_one_error(ZUORA_OK ENVS_OK "    timezone: ~\n", 9, 15, "'timezone' needs a value");
        check_one_error(ZUORA_OK ENVS_OK "    enabled: null\n", 9, 14, "'enabled' needs a value");
}

/* ---- missing required keys: reported at the mapping that lacks them ---- */

static void test_missing_required_keys(void **state) {
        check_one_error("zuora:\n"
                        "  client_id: abc\n"
                        "  client_secret_env: " SECRET_ENV "\n" ENVS_OK,
                        2, 3, "zuora", "missing required key 'base_url'");
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_secret_env: " SECRET_ENV "\n" ENVS_OK,
                        2, 3, "zuora", "missing required key 'client_id'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - id: a1\n"
                        "    schedule: \"@daily\"\n",
                        6, 5, "environment #1", "missing required key 'name'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    schedule: \"@daily\"\n",
                        6, 5, "environment 'uat'", "missing required key 'id'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: a1\n",
                        6, 5, "environment 'uat'", "missing required key 'schedule'");
        check_one_error(ENVS_OK, 1, 1, "missing required key 'zuora'");
        check_one_error(ZUORA_OK, 1, 1, "missing required key 'environments'");
        check_one_error("# comment\n\ndefaults:\n  catch_up: true\n" ENVS_OK, 3, 1,
                        "missing required key 'zuora'");
        {
                /* Flow style: the mapping starts at its brace. */
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK "environments: [{name: a}]\n");
                assert_refused(&t, 2);
                assert_error_at(&t, 5, 16, "environment 'a'", "missing required key 'id'");
                assert_error_at(&t, 5, 16, "environment 'a'", "missing required key 'schedule'");
        }

        /* Names and ids must look right. */
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: a b\n"
                        "    id: a1\n"
                        "    schedule: \"@daily\"\n",
                        6, 11, "'name'", "A-Z a-z 0-9 _ . -");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: a2345678901234567890123456789012345678901234567890123456789012345\n"
                        "    id: a1\n"
                        "    schedule: \"@daily\"\n",
                        6, 11, "'name'", "1 to 64");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: x/y\n"
                        "    schedule: \"@daily\"\n",
                        7, 9, "environment 'uat'", "'id' 'x/y'");
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: \"\"\n"
                        "  client_secret_env: " SECRET_ENV "\n" ENVS_OK,
                        2, 3, "'client_id' is empty");

        /* An empty list loads, with a warning. */
        check_one_warning(ZUORA_OK "environments: []\n", 5, 15, "'environments' is empty");
}

/* ---- duplicates ---- */

static void test_duplicates(void **state) {
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "environments:\n"
                                                            "  - name: uat\n" /* line 6 */
                                                            "    id: a1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: dev\n"
                                                            "    id: a2\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: uat\n" /* line 12 */
                                                            "    id: a3\n"
                                                            "    schedule: \"@daily\"\n");
                assert_refused(&t, 1);
                assert_error_at(&t, 12, 11, "duplicate environment name 'uat'", "line 6");
        }

        /* One sandbox under two names: it would be refreshed twice at a slot
         * they share. The second id is the one reported. */
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "environments:\n"
                                                            "  - name: uat\n"
                                                            "    id: a1\n" /* line 7 */
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: dev\n"
                                                            "    id: a2\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: uat2\n"
                                                            "    id: a1\n" /* line 13 */
                                                            "    schedule: \"@hourly\"\n");
                assert_refused(&t, 1);
                assert_error_at(&t, 13, 9, "environment 'uat2'", "'id' 'a1'", "environment 'uat''s too (line 7)",
                                "listed once");
        }

        /* Duplicate keys: the second is the one reported. */
        check_one_error(ZUORA_OK ENVS_OK "zuora: {}\n", 9, 1, "duplicate key 'zuora'", "the config file");
        check_one_error(ZUORA_OK "  client_id: def\n" ENVS_OK, 5, 3, "duplicate key 'client_id'", "zuora");
        check_one_error(ZUORA_OK "defaults:\n  catch_up: true\n  catch_up: false\n" ENVS_OK, 7, 3,
                        "duplicate key 'catch_up'", "defaults");
        check_one_error(ZUORA_OK ENVS_OK "    schedule: \"@daily\"\n", 9, 5, "duplicate key 'schedule'",
                        "environment 'uat'");
}

/* ---- environments loaded as they are read ---- */

/* With 'defaults' before 'environments', each environment is loaded as soon
 * as it is read and its nodes are dropped; in any other order the whole tree
 * is built first. Both must find the same values and the same problems. */
#define STREAM_ENVS                                                                                           \
        "environments:\n"                                                                                     \
        "  - name: uat\n"                                                                                     \
        "    id: a1\n"                                                                                        \
        "    schedule: \"@daily\"\n"                                                                          \
        "  - name: dev\n"                                                                                     \
        "    id: a2\n"                                                                                        \
        "    schedule: \"0 61 * * *\"\n"                                                                      \
        "    timezone: Mars/Base\n"                                                                           \
        "  - name: uat\n"                                                                                     \
        "    id: a3\n"                                                                                        \
        "    schedul: \"@daily\"\n"                                                                           \
        "  - just a scalar\n"                                                                                 \
        "  - name: qa\n"                                                                                      \
        "    id: a4\n"                                                                                        \
        "    schedule: \"@hourly\"\n"                                                                         \
        "    poll_interval: 5m\n"
#define STREAM_DEFAULTS                                                                                       \
        "defaults:\n"                                                                                         \
        "  timezone: Europe/Berlin\n"                                                                         \
        "  poll_interval: 2m\n"

static void assert_stream_problems(const Loaded *t, unsigned envs_line) {
        assert_refused(t, 6);
        assert_error_at(t, envs_line + 6, 18, "'schedule' \"0 61 * * *\"", "hour value 61");
        assert_error_at(t, envs_line + 7, 15, "unknown time zone 'Mars/Base'");
        char first[32];
        snprintf(first, sizeof(first), "line %u", envs_line + 1);
        assert_error_at(t, envs_line + 8, 11, "duplicate environment name 'uat'", first);
        assert_error_at(t, envs_line + 10, 5, "unknown key 'schedul'", "did you mean 'schedule'");
        assert_error_at(t, envs_line + 8, 5, "environment 'uat' is missing required key 'schedule'");
        assert_error_at(t, envs_line + 11, 5, "environment #4 must be a mapping");
        /* In file order, whatever order they were found in. */
        for (size_t i = 1; i < t->diags.n; i++)
                assert_true(t->diags.items[i - 1].line < t->diags.items[i].line ||
                            (t->diags.items[i - 1].line == t->diags.items[i].line &&
                             t->diags.items[i - 1].column <= t->diags.items[i].column));
}

static void test_envs_streamed(void **state) {
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK STREAM_DEFAULTS STREAM_ENVS);
                assert_stream_problems(&t, 8);
        }
        {
                _cleanup_(loaded_done) Loaded t = load_text(STREAM_DEFAULTS ZUORA_OK STREAM_ENVS);
                assert_stream_problems(&t, 8);
        }
        {
                /* 'defaults' after the list: the tree is built first. */
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK STREAM_ENVS STREAM_DEFAULTS);
                assert_stream_problems(&t, 5);
        }
        {
                /* Both ways, the same config. */
                static const char *const texts[] = {
                        ZUORA_OK STREAM_DEFAULTS ENVS_OK "  - name: qa\n    id: a4\n    schedule: \"@hourly\"\n"
                                                         "    poll_interval: 5m\n",
                        ZUORA_OK ENVS_OK "  - name: qa\n    id: a4\n    schedule: \"@hourly\"\n"
                                         "    poll_interval: 5m\n" STREAM_DEFAULTS,
                };
                for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                        _cleanup_(loaded_done) Loaded t = load_text(texts[i]);
                        assert_loaded(&t, 0);
                        assert_int_equal(t.config->n_envs, 2);
                        const EnvConfig *uat = config_find_env(t.config, "uat"), *qa = config_find_env(t.config, "qa");
                        assert_non_null(uat);
                        assert_non_null(qa);
                        assert_string_equal(tz_name(uat->tz), "Europe/Berlin");
                        assert_int_equal(uat->poll_interval, 120 * USEC_PER_SEC);
                        assert_int_equal(qa->poll_interval, 300 * USEC_PER_SEC);
                        assert_string_equal(qa->schedule, "@hourly");
                }
        }
        /* A second 'environments' after 'defaults' is only a duplicate key. */
        check_one_error(ZUORA_OK ENVS_OK STREAM_DEFAULTS ENVS_OK, 12, 1, "duplicate key 'environments'");
        /* An empty 'defaults' is enough to load them as they are read. */
        check_one_error(ZUORA_OK "defaults: {}\n" ENVS_OK "    bogus: 1\n", 10, 5, "unknown key 'bogus'");
        /* Empty, and not a list. */
        check_one_warning(ZUORA_OK STREAM_DEFAULTS "environments: []\n", 8, 15, "'environments' is empty");
        check_one_error(ZUORA_OK STREAM_DEFAULTS "environments: {}\n", 8, 15, "'environments' must be a list");
}

/* A YAML error anywhere is all that is reported, even after environments
 * that were loaded (and had problems) before the parser got to it. */
static void test_envs_streamed_yaml_error(void **state) {
        check_one_error(ZUORA_OK STREAM_DEFAULTS STREAM_ENVS "  - name: [unclosed\n", 25, 1, "invalid YAML");
        check_one_error(ZUORA_OK STREAM_DEFAULTS STREAM_ENVS "    id: *alias\n", 24, 9, "aliases");
        check_one_error(ZUORA_OK STREAM_DEFAULTS STREAM_ENVS "---\nzuora: {}\n", 24, 1, "more than one YAML document");
}

/* ---- time zones ---- */

static void test_timezones(void **state) {
        /* Unknown in defaults: reported once, not again per environment. */
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "defaults:\n"
                                                            "  timezone: Mars/Olympus_Mons\n"
                                                            "environments:\n"
                                                            "  - name: a\n"
                                                            "    id: a1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: b\n"
                                                            "    id: b1\n"
                                                            "    schedule: \"@daily\"\n");
                assert_refused(&t, 1);
                assert_error_at(&t, 6, 13, "defaults", "unknown time zone 'Mars/Olympus_Mons'");
        }

        /* Unknown per environment, and names that are no zone names at all. */
        check_one_error(ZUORA_OK ENVS_OK "    timezone: Europe/Atlantis\n", 9, 15, "environment 'uat'",
                        "unknown time zone 'Europe/Atlantis'");
        check_one_error(ZUORA_OK ENVS_OK "    timezone: ../../etc/passwd\n", 9, 15,
                        "unknown time zone '../../etc/passwd'");
        check_one_error(ZUORA_OK ENVS_OK "    timezone: /etc/localtime\n", 9, 15, "unknown time zone");
        check_one_error(ZUORA_OK ENVS_OK "    timezone: \"\"\n", 9, 15, "unknown time zone");

        /* Valid zones load, and environments naming one zone share it. */
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                            "defaults:\n"
                                                            "  timezone: America/New_York\n"
                                                            "environments:\n"
                                                            "  - name: a\n"
                                                            "    id: a1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "    timezone: Europe/Berlin\n"
                                                            "  - name: b\n"
                                                            "    id: b1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "    timezone: Europe/Berlin\n"
                                                            "  - name: c\n"
                                                            "    id: c1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "  - name: d\n"
                                                            "    id: d1\n"
                                                            "    schedule: \"@daily\"\n"
                                                            "    timezone: UTC\n");
                assert_loaded(&t, 0);
                assert_int_equal(t.config->n_envs, 4);
                assert_string_equal(tz_name(t.config->envs[0].tz), "Europe/Berlin");
                assert_ptr_equal(t.config->envs[0].tz, t.config->envs[1].tz);
                assert_string_equal(tz_name(t.config->envs[2].tz), "America/New_York");
                assert_string_equal(tz_name(t.config->envs[3].tz), "UTC");
        }
}

/* ---- durations ---- */

static void test_durations_valid(void **state) {
        static const struct {
                const char *text;
                uint64_t usec;
        } cases[] = {
                { "90s", 90 * USEC_PER_SEC },
                { "1h30m", 5400 * USEC_PER_SEC },
                { "28d", 28 * 86400 * USEC_PER_SEC },
                { "1w", 7 * 86400 * USEC_PER_SEC },
                { "1500ms", 1500 * USEC_PER_MSEC },
                { "1m30s250ms", 90250 * USEC_PER_MSEC },
                { "\"2h\"", 7200 * USEC_PER_SEC },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL;
                assert_true(asprintf(&text, ZUORA_OK ENVS_OK "    min_interval: %s\n", cases[i].text) >= 0);
                _cleanup_(loaded_done) Loaded t = load_text(text);
                assert_loaded(&t, 0);
                assert_int_equal(t.config->envs[0].min_interval, cases[i].usec);
        }
        check_loads(ZUORA_OK ENVS_OK "    min_interval: 0s\n    submit_ahead: 0ms\n");
}

/* The error points at the offending character inside the scalar, counted
 * after the opening quote when there is one. */
static void test_durations_bad(void **state) {
        /* "    poll_interval: " is 19 columns: a plain value starts at 20. */
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 10x\n", 9, 22, "environment 'uat'",
                        "'poll_interval'", "invalid duration '10x'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 1h30\n", 9, 24, "invalid duration '1h30'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 1h 30m\n", 9, 22, "invalid duration '1h 30m'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 5 minutes\n", 9, 21, "invalid duration");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: s\n", 9, 20, "invalid duration 's'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: -5s\n", 9, 20, "invalid duration '-5s'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 1h.5m\n", 9, 22, "invalid duration");
        /* Quoted: the text starts one column after the quote at 20. */
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: \"10x\"\n", 9, 23, "invalid duration '10x'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: '90 s'\n", 9, 23, "invalid duration '90 s'");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: \"\"\n", 9, 21, "invalid duration ''");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: ''\n", 9, 21, "invalid duration ''");
        /* Overflow points at the number that overflows. */
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 99999999999999999999s\n", 9, 20,
                        "'poll_interval'", "too long");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 1s9999999999999w\n", 9, 22, "too long");
        check_one_error(ZUORA_OK "  request_timeout: 20x\n" ENVS_OK, 5, 22, "zuora", "'request_timeout'");
        check_one_error(ZUORA_OK "defaults:\n  min_interval: 3y\n" ENVS_OK, 6, 18, "defaults",
                        "'min_interval'");
}

static void test_duration_ranges(void **state) {
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 0s\n", 9, 20, "'poll_interval'",
                        "between 1s and 1d");
        check_one_error(ZUORA_OK ENVS_OK "    poll_interval: 25h\n", 9, 20, "'poll_interval'");
        check_one_error(ZUORA_OK ENVS_OK "    submit_ahead: 29d\n", 9, 19, "'submit_ahead'", "28d");
        check_one_error(ZUORA_OK ENVS_OK "    retry_for: 8d\n", 9, 16, "'retry_for'", "7d");
        check_one_error(ZUORA_OK "environments:\n"
                                 "  - name: uat\n"
                                 "    id: a1\n"
                                 "    schedule: \"0 0 29 FEB *\"\n"
                                 "    min_interval: 367d\n",
                        9, 19, "'min_interval'", "366d");
        check_one_error(ZUORA_OK "  request_timeout: 2h\n" ENVS_OK, 5, 20, "'request_timeout'", "1h");
        check_one_error(ZUORA_OK "  request_timeout: 500ms\n" ENVS_OK, 5, 20, "'request_timeout'");
        check_loads(ZUORA_OK "  request_timeout: 1h\n" ENVS_OK "    poll_interval: 1d\n    retry_for: 7d\n");
}

/* A value that is wrong in defaults is one mistake: it is reported once, at
 * its place in defaults, not again for each environment that inherits it. */
static void test_defaults_error_reported_once(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK
                                                    "defaults:\n"
                                                    "  poll_interval: 0s\n"
                                                    "  retry_for: 30d\n"
                                                    "environments:\n"
                                                    "  - name: a\n"
                                                    "    id: a1\n"
                                                    "    schedule: \"@daily\"\n"
                                                    "  - name: b\n"
                                                    "    id: b1\n"
                                                    "    schedule: \"@daily\"\n");

        assert_error_at(&t, 6, 18, "defaults", "'poll_interval'");
        assert_error_at(&t, 7, 14, "defaults", "'retry_for'");
        assert_refused(&t, 2);
}

/* ---- schedules ---- */

/* ENV_WITH_SCHEDULE puts the schedule's text at 8:16. */
static void test_schedule_errors(void **state) {
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 * * SUN#6"), 8, 24, "environment 'uat'",
                        "'schedule'", "'SUN#6'");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("61 * * * *"), 8, 16, "'schedule'", "61", "minute");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 24 * * *"), 8, 18, "hour", "24");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 32 * *"), 8, 20, "day-of-month", "32");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 * 13 *"), 8, 22, "month", "13");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 * * FUNDAY"), 8, 24, "day-of-week", "FUNDAY");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 1,2,x * *"), 8, 24, "day-of-month", "'x'");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0   3  * *  MON-FRI/0"), 8, 36, "step");
        /* Wrong field count and never-firing schedules concern the whole text. */
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 3 * *"), 8, 16, "expected 5 fields", "got 4");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 0 3 * * * *"), 8, 16, "expected 5 fields");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("0 0 30 FEB *"), 8, 16, "'schedule'", "0 0 30 FEB *",
                        "never fire");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE("@fortnightly"), 8, 16, "'@fortnightly'");
        check_one_error(ZUORA_OK ENV_WITH_SCHEDULE(""), 8, 16, "'schedule'");

        /* Plain and single-quoted scalars. */
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: 61 * * * *\n",
                        8, 15, "61");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: '0 3 * * SUN#6'\n",
                        8, 24, "'SUN#6'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: [0, 3]\n",
                        8, 15, "'schedule'", "a list");

        /* Valid forms. */
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("30 0 3 * * SUN#1"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("0 3 L * *"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("*/15 8-18 * JAN-MAR MON-FRI"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("@weekly"));
}

/* The error points at the offending field where it is in the file, also
 * when the scalar's text is not a verbatim copy of its value: a block scalar
 * (text on the next line), a plain scalar folded over two lines, a double-
 * quoted scalar with an escape before the field. */
static void test_schedule_error_in_unusual_scalars(void **state) {
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: >-\n"
                        "      0 3 * * SUN#6\n",
                        9, 15, "'SUN#6'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: 0 3 * *\n"
                        "      SUN#6\n",
                        9, 7, "'SUN#6'");
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: \"0 3 \\x2A * SUN#6\"\n",
                        8, 27, "'SUN#6'");
}

/* Both day fields restricted: cron ORs them. A warning, never an error. */
static void test_schedule_either_days_warning(void **state) {
        {
                _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK ENV_WITH_SCHEDULE("0 2 1-7 * SUN"));
                assert_loaded(&t, 1);
                assert_warning_at(&t, 8, 15, "environment 'uat'", "\"0 2 1-7 * SUN\"", "SUN#1",
                                  "\"0 2 * * SUN#1\"");
                assert_non_null(t.config->envs[0].cron);
        }
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("0 2 8-14 * MON"), 8, 15, "\"0 2 * * MON#2\"");
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("0 0 2 22-28 * FRI"), 8, 15, "\"0 0 2 * * FRI#4\"");
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("0 2 1,15 * SUN"), 8, 15, "EITHER", "SUN#1");
        /* Not when either day field is '*'. */
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("0 2 1-7 * *"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("0 2 * * SUN"));
}

/* Parsed, but perhaps not what was meant: a warning at the element. */
static void test_schedule_warnings(void **state) {
        /* "    schedule: \"" is 15 columns: the expression starts at 8:16. */
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("*/60 * * * *"), 8, 16, "environment 'uat'", "'*/60'",
                          "larger than the minute range 0-59", "minute 0 only");
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("0 0 */25 * *"), 8, 20, "days 1 and 26", "not every 25 days");
        check_one_warning(ZUORA_OK ENV_WITH_SCHEDULE("0 0 * * 0,7"), 8, 26, "'7' in day-of-week",
                          "0 and 7 are both Sunday");
        /* The forms other crons accept, with no warning. */
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("0 0 * * MON-SUN"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("0 0 * * 1/2"));
        check_loads(ZUORA_OK ENV_WITH_SCHEDULE("* * * * 7/1"));
}

/* ---- min_interval ---- */

static void test_min_interval(void **state) {
        /* Weekly is closer than 28d: both fire times are named, from now on. */
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: \"0 3 * * SUN\"\n"
                        "    min_interval: 28d\n",
                        8, 15, "environment 'uat'", "\"0 3 * * SUN\"", "2026-11-29T03:00:00",
                        "2026-12-06T03:00:00", "7d", "min_interval 28d");

        /* First Sundays are at least 28 days apart in local wall time, even
         * across a DST change (27d23h in real time in March and April). */
        check_loads(ZUORA_OK
                    "environments:\n"
                    "  - name: uat\n"
                    "    id: " ENV_ID "\n"
                    "    schedule: \"0 3 * * SUN#1\"\n"
                    "    min_interval: 28d\n"
                    "    timezone: Europe/Berlin\n");
        check_loads(ZUORA_OK
                    "defaults:\n"
                    "  timezone: America/New_York\n"
                    "  min_interval: 28d\n" ENV_WITH_SCHEDULE("30 1 * * SUN#1"));

        /* But not 29 days apart. */
        check_one_error(ZUORA_OK
                        "environments:\n"
                        "  - name: uat\n"
                        "    id: " ENV_ID "\n"
                        "    schedule: \"0 3 * * SUN#1\"\n"
                        "    min_interval: 29d\n"
                        "    timezone: Europe/Berlin\n",
                        8, 15, "28d apart", "min_interval 29d");

        /* Daily at two times, 1h apart, against a min_interval from defaults. */
        check_one_error(ZUORA_OK "defaults:\n  min_interval: 2h\n" ENV_WITH_SCHEDULE("0 3,4 * * *"), 10, 15,
                        "1h apart", "min_interval 2h");
        check_loads(ZUORA_OK "defaults:\n  min_interval: 1h\n" ENV_WITH_SCHEDULE("0 3,4 * * *"));
}

/* ---- base_url ---- */

static void check_base_url_refused(const char *url, const char *word) {
        _cleanup_free_ char *text = text_with_base_url(url);
        check_one_error(text, 2, 13, "'base_url'", url, word);
}

/* A URL that may hold a password is refused without being echoed. */
static void check_base_url_refused_quietly(const char *url, const char *word) {
        _cleanup_free_ char *text = text_with_base_url(url);
        _cleanup_(loaded_done) Loaded t = load_text(text);

        check_one_error(text, 2, 13, "'base_url'", word);
        for (size_t i = 0; i < t.diags.n; i++)
                assert_null(strstr(t.diags.items[i].message, "password@"));
}

static void check_base_url_loads(const char *url, const char *want) {
        _cleanup_free_ char *text = text_with_base_url(url);
        _cleanup_(loaded_done) Loaded t = load_text(text);

        assert_loaded(&t, 0);
        assert_string_equal(t.config->base_url, want);
}

static void test_base_url(void **state) {
        check_base_url_loads("https://rest.zuora.com", "https://rest.zuora.com");
        check_base_url_loads("https://rest.zuora.com/", "https://rest.zuora.com");
        check_base_url_loads("https://rest.test.zuora.com/v1/", "https://rest.test.zuora.com/v1");
        check_base_url_loads("https://rest.zuora.com:8443", "https://rest.zuora.com:8443");
        /* http:// only to loopback. */
        check_base_url_loads("http://127.0.0.1:8080", "http://127.0.0.1:8080");
        check_base_url_loads("http://127.1.2.3/", "http://127.1.2.3");
        check_base_url_loads("http://[::1]:8080", "http://[::1]:8080");
        check_base_url_loads("http://localhost:8080", "http://localhost:8080");

        check_base_url_refused("http://rest.zuora.com", "https://");
        check_base_url_refused("http://10.0.0.1", "https://");
        check_base_url_refused("http://128.0.0.1", "https://");
        check_base_url_refused("http://127.0.0.1.example.com", "https://");
        check_base_url_refused("http://localhost.example.com", "https://");
        check_base_url_refused("ftp://rest.zuora.com", "https://");
        check_base_url_refused_quietly("https://user@rest.zuora.com", "user name");
        check_base_url_refused_quietly("https://user:password@rest.zuora.com", "password");
        check_base_url_refused_quietly("https://rest.zuora.com/?a=b", "query");
        check_base_url_refused_quietly("https://rest.zuora.com/#top", "fragment");
        check_base_url_refused("rest.zuora.com", "not a valid URL");
        check_base_url_refused("https://", "not a valid URL");
}

/* ---- the client secret ---- */

static void test_secret_sources(void **state) {
        /* None, or two: reported at the zuora mapping. */
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: abc\n" ENVS_OK,
                        2, 3, "client_secret_file", "client_secret_credential", "client_secret_env");
        check_one_error(ZUORA_OK "  client_secret_file: /etc/hostname\n" ENVS_OK, 2, 3, "only one of");

        /* client_secret_env: set and not empty. */
        unsetenv("REFRESHD_TEST_UNSET");
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: abc\n"
                        "  client_secret_env: REFRESHD_TEST_UNSET\n" ENVS_OK,
                        4, 22, "'client_secret_env'", "REFRESHD_TEST_UNSET", "not set");
        assert_int_equal(setenv("REFRESHD_TEST_EMPTY", "", 1), 0);
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: abc\n"
                        "  client_secret_env: REFRESHD_TEST_EMPTY\n" ENVS_OK,
                        4, 22, "'client_secret_env'", "REFRESHD_TEST_EMPTY", "empty");
        unsetenv("REFRESHD_TEST_EMPTY");
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: abc\n"
                        "  client_secret_env: 1BAD-NAME\n" ENVS_OK,
                        4, 22, "'client_secret_env'", "1BAD-NAME");

        /* A credential is a name, not a path. */
        check_one_error("zuora:\n"
                        "  base_url: https://rest.zuora.com\n"
                        "  client_id: abc\n"
                        "  client_secret_credential: ../secret\n" ENVS_OK,
                        4, 29, "'client_secret_credential'", "not a path");
}

/* Writes a config whose line 4 is "  KEY: VALUE" into DIR and loads it. */
static Loaded load_with_secret(const char *dir, const char *key, const char *value) {
        _cleanup_free_ char *line = NULL, *path = NULL;

        assert_true(asprintf(&line, "%s: %s", key, value) >= 0);
        path = write_config_with_secret(dir, line);
        return load_file(path);
}

/* "  client_secret_file: " is 22 columns: the value is at 4:23. */
static void test_secret_file_modes(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *good = make_secret(dir, "s3cret\n", 0600);
        _cleanup_free_ char *shared = make_secret(dir, "s3cret\n", 0644);
        _cleanup_free_ char *group = make_secret(dir, "s3cret\n", 0640);
        _cleanup_free_ char *world = make_secret(dir, "s3cret\n", 0666);
        _cleanup_free_ char *empty = make_secret(dir, "", 0600);
        _cleanup_free_ char *missing = path_in(dir, "no-such-secret");
        _cleanup_free_ char *relative = path_in(dir, "relative-secret");

        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", good);
                assert_loaded(&t, 0);
                assert_int_equal(t.config->secret_source, SECRET_SOURCE_FILE);
                assert_string_equal(t.config->secret_name, good);
                assert_string_equal(t.config->secret_path, good);
        }
        /* Readable by others or by the group: a warning, the config still loads. */
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", shared);
                assert_loaded(&t, 1);
                assert_warning_at(&t, 4, 23, "'client_secret_file'", shared, "644", "chmod 600");
                assert_string_equal(t.config->secret_path, shared);
        }
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", group);
                assert_loaded(&t, 1);
                assert_warning_at(&t, 4, 23, "'client_secret_file'", "640");
        }
        /* Writable by anyone: an error. */
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", world);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 23, "'client_secret_file'", world, "writable by anyone");
        }
        /* Empty, missing, or not a file. */
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", empty);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 23, "'client_secret_file'", empty, "empty");
        }
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", missing);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 23, "'client_secret_file'", missing, "No such file");
        }
        {
                _cleanup_(loaded_done) Loaded t = load_with_secret(dir, "client_secret_file", dir);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 23, "'client_secret_file'", "not a regular file");
        }
        /* A relative path is relative to the config file's directory. */
        write_file(relative, "s3cret", 6, 0600);
        {
                _cleanup_(loaded_done) Loaded t =
                        load_with_secret(dir, "client_secret_file", "relative-secret");
                assert_loaded(&t, 0);
                assert_string_equal(t.config->secret_name, "relative-secret");
                assert_string_equal(t.config->secret_path, relative);
        }
}

static void test_secret_credential(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *creds = path_in(dir, "creds");
        _cleanup_free_ char *in_creds = path_in(creds, "zuora-secret");
        _cleanup_free_ char *beside = path_in(dir, "zuora-secret");
        _cleanup_free_ char *path = write_config_with_secret(dir, "client_secret_credential: zuora-secret");

        assert_int_equal(mkdir(creds, 0700), 0);

        /* Without $CREDENTIALS_DIRECTORY: the file beside the config. */
        unsetenv("CREDENTIALS_DIRECTORY");
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 29, "'client_secret_credential'", beside);
        }
        write_file(beside, "s3cret", 6, 0600);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_loaded(&t, 0);
                assert_int_equal(t.config->secret_source, SECRET_SOURCE_CREDENTIAL);
                assert_string_equal(t.config->secret_name, "zuora-secret");
                assert_string_equal(t.config->secret_path, beside);
        }

        /* With it: only there, even though the file beside the config exists. */
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 29, "'client_secret_credential'", in_creds);
        }
        write_file(in_creds, "s3cret", 6, 0600);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_loaded(&t, 0);
                assert_string_equal(t.config->secret_path, in_creds);
        }
        write_file(in_creds, "", 0, 0600);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 4, 29, "'client_secret_credential'", "empty");
        }
        unsetenv("CREDENTIALS_DIRECTORY");
        (void) unlink(in_creds);
        (void) rmdir(creds);
}

/* ---- many mistakes, warnings ---- */

static void test_all_errors_reported(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text("zuora:\n"
                                                    "  base_url: http://rest.zuora.com\n"
                                                    "  client_id: abc\n"
                                                    "  client_secret_env: " SECRET_ENV "\n"
                                                    "  request_timout: 10s\n"
                                                    "defaults:\n"
                                                    "  timezone: Europe/Nowhere\n"
                                                    "  catch_up: perhaps\n"
                                                    "environments:\n"
                                                    "  - name: uat\n"
                                                    "    id: a1\n"
                                                    "    schedule: \"0 3 * * SUN#6\"\n"
                                                    "    poll_interval: 5x\n"
                                                    "  - name: uat\n"
                                                    "    schedule: \"61 * * * *\"\n");

        assert_refused(&t, 9);
        assert_error_at(&t, 2, 13, "'base_url'", "https://");
        assert_error_at(&t, 5, 3, "unknown key 'request_timout'", "did you mean 'request_timeout'?");
        assert_error_at(&t, 7, 13, "defaults", "unknown time zone 'Europe/Nowhere'");
        assert_error_at(&t, 8, 13, "defaults", "'catch_up'", "'perhaps'");
        assert_error_at(&t, 12, 24, "'SUN#6'");
        assert_error_at(&t, 13, 21, "'poll_interval'", "invalid duration '5x'");
        assert_error_at(&t, 14, 11, "duplicate environment name 'uat'", "line 10");
        assert_error_at(&t, 14, 5, "missing required key 'id'");
        assert_error_at(&t, 15, 16, "61");
}

static void test_warnings_do_not_fail(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *secret = make_secret(dir, "s3cret", 0644);
        _cleanup_free_ char *path = NULL, *text = NULL;

        assert_true(asprintf(&text,
                             "zuora:\n"
                             "  base_url: https://rest.zuora.com\n"
                             "  client_id: abc\n"
                             "  client_secret_file: %s\n"
                             "environments:\n"
                             "  - name: uat\n"
                             "    id: a1\n"
                             "    schedule: \"0 2 1-7 * SUN\"\n",
                             secret) >= 0);
        path = path_in(dir, "refreshd.yaml");
        write_file(path, text, strlen(text), 0644);

        _cleanup_(loaded_done) Loaded t = load_file(path);
        assert_loaded(&t, 2);
        assert_warning_at(&t, 4, 23, "readable by group or others");
        assert_warning_at(&t, 8, 15, "SUN#1");
        assert_int_equal(t.config->n_envs, 1);
        assert_string_equal(t.config->envs[0].name, "uat");
}

/* ---- YAML-level problems ---- */

static void test_yaml_syntax(void **state) {
        check_one_error("zuora: [unclosed\n", 2, 1, "invalid YAML");
        check_one_error("zuora:\n  base_url: x\n client_id: y\n", 3, 2, "invalid YAML");
        check_one_error("zuora: \"unterminated\n", 2, 1, "invalid YAML");
        check_one_error("zuora:\n  base_url: x\n  client_id: y: z\n", 3, 15, "invalid YAML");
}

static void test_yaml_tabs(void **state) {
        check_one_error("zuora:\n\tbase_url: x\n", 2, 1, "tab");
        check_one_error(ZUORA_OK "\tentity_id: x\n" ENVS_OK, 5, 1, "tab");
        check_one_error(ZUORA_OK "  \tentity_id: x\n" ENVS_OK, 5, 3, "tab");
}

/* A UTF-8 byte order mark (some editors write one) is not part of the text. */
static void test_yaml_bom(void **state) {
        {
                _cleanup_(loaded_done) Loaded t = load_text("\xef\xbb\xbf" ZUORA_OK ENVS_OK);
                assert_loaded(&t, 0);
        }
        /* Positions are those of the text after it. */
        check_one_error("\xef\xbb\xbf" ZUORA_OK ENV_WITH_SCHEDULE("0 3 * * SUN#9"), 8, 24, "SUN#9");
        /* Only at the very start. */
        check_one_error(ZUORA_OK "\xef\xbb\xbf" ENVS_OK, 5, 2, "invalid YAML");
}

static void test_yaml_not_utf8(void **state) {
        /* "  client_id: " is 13 columns. */
        check_one_error("zuora:\n  client_id: \xff\xfe\n", 2, 14, "UTF-8");
        check_one_error(ZUORA_OK ENVS_OK "    owner: caf\xff\n", 9, 15, "UTF-8");
        check_one_error("\xc0\xaf: 1\n", 1, 1, "UTF-8");
        {
                /* Multi-byte characters before the bad byte count as one column each. */
                _cleanup_(loaded_done) Loaded t = load_text("zuora:\n  client_id: \xc3\xa9\xc3\xa9\xff\n");
                assert_refused(&t, 1);
                assert_error_at(&t, 2, 16, "UTF-8");
        }
        {
                /* A NUL inside the text is no config either. */
                static const char text[] = "zuora:\n  client_id: a\0b\n";
                _cleanup_(loaded_done) Loaded t = {};
                t.r = config_load_string(TEST_PATH, text, sizeof(text) - 1, NOW, &t.config, &t.diags);
                assert_int_equal(t.r, -EINVAL);
                assert_null(t.config);
                assert_true(t.diags.n_errors >= 1);
        }
}

static double now_seconds(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_yaml_alias_bomb(void **state) {
        _cleanup_free_ char *text = NULL;
        char *p;
        size_t size = 0;
        FILE *f = open_memstream(&p, &size);
        double start;

        /* "Billion laughs": ten levels of ten aliases each. */
        assert_non_null(f);
        fputs("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", f);
        for (char c = 'b'; c <= 'j'; c++)
                fprintf(f, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c, c - 1, c - 1, c - 1,
                        c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        assert_int_equal(fclose(f), 0);
        text = p;

        start = now_seconds();
        _cleanup_(loaded_done) Loaded t = load_text(text);
        assert_true(now_seconds() - start < 1.0);
        assert_refused(&t, 1);
        /* "b: &b [" is 7 columns: the first alias is at 2:8. */
        assert_error_at(&t, 2, 8, "aliases", "'*a'");

        /* A single alias is refused too: values are written out. */
        check_one_error(ZUORA_OK "defaults:\n  timezone: &tz UTC\n" ENVS_OK "    timezone: *tz\n", 11, 15,
                        "aliases", "'*tz'");
}

static void test_yaml_deep_nesting(void **state) {
        _cleanup_free_ char *flow = NULL, *block = NULL;
        size_t depth = 1000, k = 0;

        /* [[[[...]]]]: the 33rd bracket is one level too deep. */
        flow = malloc(2 * depth + 2);
        assert_non_null(flow);
        for (size_t i = 0; i < depth; i++)
                flow[k++] = '[';
        for (size_t i = 0; i < depth; i++)
                flow[k++] = ']';
        flow[k++] = '\n';
        flow[k] = 0;
        {
                _cleanup_(loaded_done) Loaded t = load_text(flow);
                assert_refused(&t, 1);
                assert_error_at(&t, 1, 33, "nested more than 32 levels");
        }

        /* k:\n k:\n  k:\n ...: the mapping on line 33 is too deep. */
        block = malloc(depth * (depth + 4) + 1);
        assert_non_null(block);
        k = 0;
        for (size_t i = 0; i < depth; i++) {
                memset(block + k, ' ', i);
                k += i;
                memcpy(block + k, i + 1 < depth ? "k:\n" : "k: v\n", i + 1 < depth ? 3 : 5);
                k += i + 1 < depth ? 3 : 5;
        }
        block[k] = 0;
        {
                _cleanup_(loaded_done) Loaded t = load_text(block);
                assert_refused(&t, 1);
                assert_error_at(&t, 33, 33, "nested more than 32 levels");
        }
}

static void test_yaml_documents(void **state) {
        check_one_error(ZUORA_OK ENVS_OK "---\nzuora: {}\n", 9, 1, "more than one YAML document");
        check_one_error("---\n" ZUORA_OK ENVS_OK "...\n---\n" ZUORA_OK ENVS_OK, 11, 1,
                        "more than one YAML document");
        /* One explicit document is fine. */
        check_loads("---\n" ZUORA_OK ENVS_OK "...\n");
}

static void test_yaml_empty(void **state) {
        check_one_error("", 0, 0, "empty");
        check_one_error("\n\n", 0, 0, "empty");
        check_one_error("# only a comment\n", 0, 0, "empty");
}

/* A valid config followed by comment lines, SIZE bytes in all. */
static char *make_padded_config(size_t size) {
        char *text = malloc(size + 1);

        assert_non_null(text);
        memset(text, '#', size);
        for (size_t i = 63; i < size; i += 64)
                text[i] = '\n';
        text[size - 1] = '\n';
        memcpy(text, ZUORA_OK ENVS_OK, strlen(ZUORA_OK ENVS_OK));
        text[size] = 0;
        return text;
}

static void test_size_limit_string(void **state) {
        _cleanup_free_ char *big = make_padded_config(10 * 1024 * 1024);
        _cleanup_free_ char *over = make_padded_config(CONFIG_MAX_SIZE + 1);
        _cleanup_free_ char *limit = make_padded_config(CONFIG_MAX_SIZE);

        {
                _cleanup_(loaded_done) Loaded t = load_text(big);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "10485760 bytes", "at most 8388608 bytes");
        }
        {
                _cleanup_(loaded_done) Loaded t = load_text(over);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "at most 8388608 bytes");
        }
        {
                _cleanup_(loaded_done) Loaded t = load_text(limit);
                assert_loaded(&t, 0);
        }
}

/* Through config_load(), a file over the limit must be refused, not cut at
 * the limit and the first part loaded. */
static void test_size_limit_file(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *path = path_in(dir, "big.yaml");
        _cleanup_free_ char *limit = make_padded_config(CONFIG_MAX_SIZE);
        _cleanup_free_ char *over = make_padded_config(CONFIG_MAX_SIZE + 1);
        _cleanup_free_ char *big = make_padded_config(10 * 1024 * 1024);

        write_file(path, limit, CONFIG_MAX_SIZE, 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_loaded(&t, 0);
        }
        write_file(path, over, CONFIG_MAX_SIZE + 1, 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "at most 8388608 bytes");
        }
        write_file(path, big, 10 * 1024 * 1024, 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "at most 8388608 bytes");
        }
}

static void test_load_file(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *missing = path_in(dir, "missing.yaml"), *path = path_in(dir, "refreshd.yaml");

        {
                _cleanup_(loaded_done) Loaded t = load_file(missing);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "cannot read", "No such file");
                assert_string_equal(t.diags.path, missing);
        }
        {
                _cleanup_(loaded_done) Loaded t = load_file(dir);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "cannot read");
        }

        write_file(path, ZUORA_OK ENVS_OK, strlen(ZUORA_OK ENVS_OK), 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_loaded(&t, 0);
                assert_string_equal(t.config->path, path);
                assert_string_equal(t.diags.path, path);
        }
        /* A byte order mark, read from the file: skipped, the positions after it. */
        static const char bom[] = "\xef\xbb\xbf" ZUORA_OK ENV_WITH_SCHEDULE("0 3 * * SUN#9");
        write_file(path, bom, strlen(bom), 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 1);
                assert_error_at(&t, 8, 24, "SUN#9");
        }
        write_file(path, "\xef\xbb\xbf" ZUORA_OK ENVS_OK, strlen("\xef\xbb\xbf" ZUORA_OK ENVS_OK), 0644);
        {
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_loaded(&t, 0);
        }
}

/* config_load() lets libyaml read the file as it parses and reads it again
 * only for a message that needs the text: the same problems at the same
 * places as from memory. */
static void assert_same_diags(const Loaded *a, const Loaded *b) {
        assert_int_equal(a->r, b->r);
        assert_int_equal(a->diags.n, b->diags.n);
        for (size_t i = 0; i < a->diags.n; i++) {
                assert_int_equal(a->diags.items[i].line, b->diags.items[i].line);
                assert_int_equal(a->diags.items[i].column, b->diags.items[i].column);
                assert_string_equal(a->diags.items[i].message, b->diags.items[i].message);
        }
}

static void test_load_file_positions(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *path = path_in(dir, "refreshd.yaml"), *many = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&many, &size);

        /* Far past libyaml's 16 KB reads, with problems that need the text at the end. */
        assert_non_null(f);
        fputs(ZUORA_OK "defaults:\n  poll_interval: 2m\nenvironments:\n", f);
        for (int i = 0; i < 2000; i++)
                fprintf(f, "  - name: e%d\n    id: i%d\n    schedule: \"%d 3 * * *\"\n", i, i, i % 60);
        fputs("  - name: last\n    id: x\n    schedule: \"0 3 * *  FRI#6\"\n    retry_for: \"1h 30x\"\n", f);
        assert_int_equal(fclose(f), 0);

        const char *const texts[] = {
                ZUORA_OK ENVS_OK,
                many,
                "zuora:\n\tbase_url: x\n",
                ZUORA_OK "  \tentity_id: x\n" ENVS_OK,
                "zuora:\n  client_id: \xc3\xa9\xc3\xa9\xff\n",
                ZUORA_OK ENVS_OK "    owner: caf\xff\n",
                ZUORA_OK ENV_WITH_SCHEDULE("0 3 * * SUN#9"),
                ZUORA_OK "environments:\n  - name: uat\n    id: a\n    schedule: >\n      0 3 * *\n      MON#7\n",
                ZUORA_OK "defaults:\n  poll_interval: \"1h\\t3q\"\n" ENVS_OK,
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                write_file(path, texts[i], strlen(texts[i]), 0644);
                _cleanup_(loaded_done) Loaded a = load_file(path);
                _cleanup_(loaded_done) Loaded b = load_text_as(path, texts[i]);
                assert_same_diags(&a, &b);
        }
        {
                write_file(path, many, strlen(many), 0644);
                _cleanup_(loaded_done) Loaded t = load_file(path);
                assert_refused(&t, 2);
                assert_error_at(&t, 6010, 25, "FRI#6");
                assert_error_at(&t, 6011, 19, "invalid duration");
        }

        /* A FIFO (or any file that is not a regular one) is refused at once,
         * without waiting for a writer: a reload must never hang on it. */
        _cleanup_free_ char *fifo = path_in(dir, "fifo.yaml");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        {
                _cleanup_(loaded_done) Loaded t = load_file(fifo);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "cannot read the config file: not a regular file");
        }
        {
                _cleanup_(loaded_done) Loaded t = load_file(dir);
                assert_refused(&t, 1);
                assert_error_at(&t, 0, 0, "not a regular file");
        }
        assert_int_equal(unlink(fifo), 0);
}

/* ---- paths and printing ---- */

static void test_default_path(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        unsetenv("CONFIGURATION_DIRECTORY");
        a = config_default_path();
        assert_string_equal(a, CONFIG_DEFAULT_PATH);
        assert_string_equal(a, "/etc/refreshd/refreshd.yaml");

        assert_int_equal(setenv("CONFIGURATION_DIRECTORY", "/etc/refreshd-test", 1), 0);
        b = config_default_path();
        assert_string_equal(b, "/etc/refreshd-test/refreshd.yaml");

        /* Several directories: the first is ours. */
        assert_int_equal(setenv("CONFIGURATION_DIRECTORY", "/etc/one:/etc/two", 1), 0);
        c = config_default_path();
        assert_string_equal(c, "/etc/one/refreshd.yaml");

        /* Not an absolute path: ignored. */
        assert_int_equal(setenv("CONFIGURATION_DIRECTORY", "", 1), 0);
        d = config_default_path();
        assert_string_equal(d, CONFIG_DEFAULT_PATH);

        unsetenv("CONFIGURATION_DIRECTORY");
}

static void test_diags_print(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text_as("conf/refreshd.yaml",
                                                       ZUORA_OK ENVS_OK "    timezone: Mars/Base\n"
                                                                        "    colour: blue\n"
                                                                        "    poll_interval: 1x\n");
        _cleanup_free_ char *out = NULL;
        size_t size = 0;
        FILE *f;

        assert_refused(&t, 3);
        f = open_memstream(&out, &size);
        assert_non_null(f);
        diags_print(&t.diags, f);
        assert_int_equal(fclose(f), 0);
        /* Sorted by position, one line each. */
        assert_string_equal(
                out,
                "conf/refreshd.yaml:9:15: error: environment 'uat': unknown time zone 'Mars/Base' "
                "(use an IANA name such as Europe/Berlin or UTC)\n"
                "conf/refreshd.yaml:10:5: error: unknown key 'colour' in environment 'uat'\n"
                "conf/refreshd.yaml:11:21: error: environment 'uat': 'poll_interval': "
                "invalid duration '1x': write <number><unit>..., units ms, s, m, h, d, w "
                "(for example 90s, 1h30m, 28d)\n");

        /* Warnings say so; whole-file problems have no position. */
        {
                _cleanup_(loaded_done) Loaded w = load_text_as("w.yaml", ZUORA_OK "environments: []\n");
                _cleanup_(loaded_done) Loaded e = load_text_as("e.yaml", "");
                _cleanup_free_ char *wout = NULL, *eout = NULL;

                f = open_memstream(&wout, &size);
                diags_print(&w.diags, f);
                assert_int_equal(fclose(f), 0);
                assert_string_equal(
                        wout, "w.yaml:5:15: warning: 'environments' is empty: nothing will be refreshed\n");

                f = open_memstream(&eout, &size);
                diags_print(&e.diags, f);
                assert_int_equal(fclose(f), 0);
                assert_string_equal(
                        eout, "e.yaml: error: the file is empty; see the example config refreshd.yaml\n");
        }
}

static void test_to_string(void **state) {
        assert_string_equal(secret_source_to_string(SECRET_SOURCE_FILE), "client_secret_file");
        assert_string_equal(secret_source_to_string(SECRET_SOURCE_CREDENTIAL), "client_secret_credential");
        assert_string_equal(secret_source_to_string(SECRET_SOURCE_ENV), "client_secret_env");
        assert_null(secret_source_to_string(_SECRET_SOURCE_INVALID));
        assert_string_equal(when_ineligible_to_string(WHEN_INELIGIBLE_DEFER), "defer");
        assert_string_equal(when_ineligible_to_string(WHEN_INELIGIBLE_SKIP), "skip");
        assert_null(when_ineligible_to_string(_WHEN_INELIGIBLE_MAX));
}

static int group_setup(void **state) {
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("CONFIGURATION_DIRECTORY");
        return setenv(SECRET_ENV, "s3cret", 1);
}

/* ---- hooks, webhooks, notify_emails ---- */

/* ZUORA_OK, then defaults (line 5) with LIST's lines from line 6, then ENVS_OK. */
#define WITH_DEFAULTS(list) ZUORA_OK "defaults:\n" list ENVS_OK

static void test_actions_valid(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(
                ZUORA_OK
                "max_concurrent_hooks: 2\n"
                "defaults:\n"
                "  hooks:\n"
                "    - on: [completed, failed]\n"
                "      run: [\"/bin/true\", \"--env={environment}\", \"{{literal}}\"]\n"
                "      timeout: 10m\n"
                "  webhooks:\n"
                "    - on: hook_failed\n"
                "      url: http://127.0.0.1:9/x\n"
                "      format: slack\n"
                "environments:\n"
                "  - name: uat\n"
                "    id: " ENV_ID "\n"
                "    schedule: \"0 3 * * *\"\n"
                "  - name: dev\n"
                "    id: dev-1\n"
                "    schedule: \"0 3 * * *\"\n"
                "    hooks: []\n"
                "    notify_emails:\n"
                "      - address: qa@example.com\n"
                "        name: QA\n"
                "      - ops@example.com\n");
        assert_loaded(&t, 0);
        const Config *c = t.config;
        assert_int_equal(c->max_concurrent_hooks, 2);
        const EnvConfig *uat = config_find_env(c, "uat"), *dev = config_find_env(c, "dev");
        assert_int_equal(uat->actions->n_hooks, 1);
        const HookConfig *h = &uat->actions->hooks[0];
        assert_int_equal(h->on, (1u << EVENT_COMPLETED) | (1u << EVENT_FAILED));
        assert_string_equal(h->argv[0], "/bin/true");
        assert_string_equal(h->argv[2], "{{literal}}");
        assert_null(h->argv[3]);
        assert_int_equal(h->timeout, 600 * USEC_PER_SEC);
        assert_int_equal(strlen(h->key), EVENT_ID_LEN);
        assert_int_equal(uat->actions->n_webhooks, 1);
        assert_int_equal(uat->actions->webhooks[0].format, WEBHOOK_FORMAT_SLACK);
        assert_int_equal(uat->actions->webhooks[0].on, 1u << EVENT_HOOK_FAILED);
        /* dev replaces the hooks (with none), keeps the defaults' webhooks, has its own e-mails. */
        assert_int_equal(dev->actions->n_hooks, 0);
        assert_int_equal(dev->actions->n_webhooks, 1);
        assert_int_equal(dev->actions->n_emails, 2);
        assert_string_equal(dev->actions->emails[0].name, "QA");
        assert_string_equal(dev->actions->emails[1].address, "ops@example.com");
        assert_null(dev->actions->emails[1].name);
        assert_int_equal(uat->actions->n_emails, 0);
        assert_true(config_has_actions(c));
}

static void test_actions_defaults(void **state) {
        _cleanup_(loaded_done) Loaded t = load_text(ZUORA_OK ENVS_OK);
        assert_loaded(&t, 0);
        assert_int_equal(t.config->max_concurrent_hooks, MAX_CONCURRENT_HOOKS_DEFAULT);
        assert_int_equal(t.config->envs[0].actions->n_hooks, 0);
        assert_false(config_has_actions(t.config));

        _cleanup_(loaded_done) Loaded u = load_text(WITH_DEFAULTS(
                "  max_concurrent_hooks: 7\n"
                "  hooks:\n"
                "    - on: completed\n"
                "      run: [/bin/true]\n"));
        assert_loaded(&u, 0);
        assert_int_equal(u.config->max_concurrent_hooks, 7);
        assert_int_equal(u.config->envs[0].actions->hooks[0].timeout, HOOK_TIMEOUT_DEFAULT);
}

static void test_actions_errors(void **state) {
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: [compelted]\n      run: [/bin/true]\n"), 7, 12,
                        "unknown event 'compelted'", "did you mean 'completed'?");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: [bogus]\n      run: [/bin/true]\n"), 7, 12,
                        "unknown event 'bogus'", "hook_failed");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: []\n      run: [/bin/true]\n"), 7, 11, "names no event");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [bin/true]\n"), 8, 13,
                        "must be an absolute path to an executable");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/nonexistent/prog]\n"), 8, 13,
                        "'/nonexistent/prog'", "No such file");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/etc/passwd]\n"), 8, 13,
                        "is not an executable file");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/bin/true, \"x{enviroment}\"]\n"),
                        8, 26, "unknown placeholder '{enviroment}'");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/bin/true, \"a{b\"]\n"), 8, 26,
                        "unbalanced '{'");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: []\n"), 8, 12, "'run' is empty");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - run: [/bin/true]\n"), 7, 7, "missing required key 'on'");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/bin/true]\n      timeout: 0s\n"),
                        7, 7, "'timeout' must be between 1s and 7d");
        check_one_error(WITH_DEFAULTS("  hooks:\n    - on: completed\n      run: [/bin/true]\n      tiemout: 1s\n"),
                        9, 7, "unknown key 'tiemout'", "did you mean 'timeout'?");
        check_one_error(WITH_DEFAULTS("  hooks: {}\n"), 6, 10, "'hooks' must be a list");
        check_one_error(WITH_DEFAULTS("  webhooks:\n    - on: failed\n      url: http://example.com/x\n"), 8, 12,
                        "'url' must start with https://");
        check_one_error(WITH_DEFAULTS("  webhooks:\n    - on: failed\n"), 7, 7, "give the URL with one of url");
        check_one_error(WITH_DEFAULTS("  webhooks:\n    - on: failed\n      url: https://a.example/x\n"
                                      "      url_env: " SECRET_ENV "\n"),
                        7, 7, "give only one of url");
        check_one_error(WITH_DEFAULTS("  webhooks:\n    - on: failed\n      url_env: REFRESHD_NO_SUCH_VAR\n"), 8, 16,
                        "REFRESHD_NO_SUCH_VAR is not set");
        check_one_error(WITH_DEFAULTS("  webhooks:\n    - on: failed\n      url: https://a.example/x\n"
                                      "      format: slak\n"),
                        9, 15, "'format' must be 'json' or 'slack', not 'slak'");
        check_one_error(WITH_DEFAULTS("  notify_emails:\n    - not-an-address\n"), 7, 7, "is not an e-mail address");
        check_one_error(WITH_DEFAULTS("  notify_emails:\n    - a@example.com\n    - address: A@example.com\n"), 8, 7,
                        "'A@example.com' is listed twice");
        check_one_error(WITH_DEFAULTS("  notify_emails:\n    - name: x\n"), 7, 7, "missing required key 'address'");
        check_one_error(ZUORA_OK "max_concurrent_hooks: 2\ndefaults:\n  max_concurrent_hooks: 3\n" ENVS_OK, 5, 23,
                        "given both here and in defaults");
        check_one_error(ZUORA_OK "max_concurrent_hooks: 0\n" ENVS_OK, 5, 23, "whole number from 1 to 100000");
        /* Per environment too, at the environment's own lines. */
        check_one_error(ZUORA_OK ENVS_OK "    hooks:\n      - on: done\n        run: [/bin/true]\n", 10, 13,
                        "environment 'uat': hooks[1]", "unknown event 'done'");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_config),
                cmocka_unit_test(test_find_env_many),
                cmocka_unit_test(test_schedules_shared),
                cmocka_unit_test(test_builtin_defaults),
                cmocka_unit_test(test_defaults_inheritance),
                cmocka_unit_test(test_unknown_keys),
                cmocka_unit_test(test_wrong_types),
                cmocka_unit_test(test_missing_required_keys),
                cmocka_unit_test(test_duplicates),
                cmocka_unit_test(test_envs_streamed),
                cmocka_unit_test(test_envs_streamed_yaml_error),
                cmocka_unit_test(test_timezones),
                cmocka_unit_test(test_durations_valid),
                cmocka_unit_test(test_durations_bad),
                cmocka_unit_test(test_duration_ranges),
                cmocka_unit_test(test_defaults_error_reported_once),
                cmocka_unit_test(test_schedule_errors),
                cmocka_unit_test(test_schedule_error_in_unusual_scalars),
                cmocka_unit_test(test_schedule_either_days_warning),
                cmocka_unit_test(test_schedule_warnings),
                cmocka_unit_test(test_min_interval),
                cmocka_unit_test(test_base_url),
                cmocka_unit_test(test_secret_sources),
                cmocka_unit_test_setup_teardown(test_secret_file_modes, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_secret_credential, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_all_errors_reported),
                cmocka_unit_test_setup_teardown(test_warnings_do_not_fail, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_yaml_syntax),
                cmocka_unit_test(test_yaml_tabs),
                cmocka_unit_test(test_yaml_bom),
                cmocka_unit_test(test_yaml_not_utf8),
                cmocka_unit_test(test_yaml_alias_bomb),
                cmocka_unit_test(test_yaml_deep_nesting),
                cmocka_unit_test(test_yaml_documents),
                cmocka_unit_test(test_yaml_empty),
                cmocka_unit_test(test_size_limit_string),
                cmocka_unit_test_setup_teardown(test_size_limit_file, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_load_file, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_load_file_positions, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_default_path),
                cmocka_unit_test(test_diags_print),
                cmocka_unit_test(test_to_string),
                cmocka_unit_test(test_actions_valid),
                cmocka_unit_test(test_actions_defaults),
                cmocka_unit_test(test_actions_errors),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
