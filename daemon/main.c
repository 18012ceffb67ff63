/* SPDX-License-Identifier: MIT */
/*
 * The command line: parse the arguments, then run one command: `run` (the
 * daemon, here) or one of the operator commands in command.c.
 *
 * Layers, top to bottom (a file includes only its own layer and those below
 * it; tests/cli/test_layers.py checks every include against this list):
 *   main
 *   manager command
 *   control
 *   env outbox recipients
 *   client plan store state intentlog report secret timerq hook
 *   zuora zclock cron config http varlink tz duration event
 *   json yamltree arena utf8 httpdate sort fileio
 *   macro civil list refreshd-messages
 *
 * main runs one command; the manager owns the loop and hangs one env (an
 * environment's lifecycle) off it for each environment; an env reaches the
 * Zuora client, the planner, the state store and the reports, which speak
 * Zuora's API, the schedule and the config; below them is generic machinery
 * that knows nothing of refreshd, and at the bottom the smallest helpers.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <syslog.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "command.h"
#include "config.h"
#include "control.h"
#include "duration.h"
#include "macro.h"
#include "manager.h"
#include "report.h"
#include "state.h"
#include "tz.h"

#define EXIT_USAGE 2

typedef enum Command {
        COMMAND_RUN,
        COMMAND_CHECK,
        COMMAND_STATUS,
        COMMAND_REFRESH,
        COMMAND_CANCEL,
        COMMAND_HOOKS,
        COMMAND_PAUSE,
        COMMAND_RESUME,
        COMMAND_SKIP,
        COMMAND_UNSKIP,
        COMMAND_LIST,
        _COMMAND_MAX,
        _COMMAND_INVALID = -EINVAL,
} Command;

typedef struct Args {
        Command command;
        char *config_path;
        const char *env_name;
        unsigned next;
        int64_t from;
        bool from_set;
        bool json;
        char *state_dir;
        LogTarget log_target;
        bool wait;
        bool online;
        EventKind event; /* hooks */
        bool dry_run;
        char *control_socket;
        char **env_names; /* pause, resume: into argv */
        size_t n_env_names;
        int64_t until, slot; /* STATE_TIME_UNSET: not given */
        const char *reason;
        bool catch_up;
} Args;

static const char *command_to_string(Command c) {
        switch (c) {
        case COMMAND_RUN:
                return "run";
        case COMMAND_CHECK:
                return "check";
        case COMMAND_STATUS:
                return "status";
        case COMMAND_REFRESH:
                return "refresh";
        case COMMAND_CANCEL:
                return "cancel";
        case COMMAND_HOOKS:
                return "hooks";
        case COMMAND_PAUSE:
                return "pause";
        case COMMAND_RESUME:
                return "resume";
        case COMMAND_SKIP:
                return "skip";
        case COMMAND_UNSKIP:
                return "unskip";
        case COMMAND_LIST:
                return "list";
        case _COMMAND_MAX:
        case _COMMAND_INVALID:
                break;
        }
        return NULL;
}

static Command command_from_string(const char *s) {
        for (Command c = 0; c < _COMMAND_MAX; c++)
                if (strcmp(s, command_to_string(c)) == 0)
                        return c;
        return _COMMAND_INVALID;
}

static void help(void) {
        printf("refreshd %s: refreshes Zuora test environments (sandboxes) on a schedule\n"
               "\n"
               "Usage: refreshd [COMMAND] [OPTIONS]\n"
               "\n"
               "Commands:\n"
               "  run                 run the scheduler in the foreground (the default)\n"
               "  check               validate the config and show the next fire times\n"
               "  status              show each environment's schedule and jobs\n"
               "  refresh ENV         submit one refresh of environment ENV now\n"
               "  cancel ENV          cancel the running refresh of environment ENV\n"
               "  hooks ENV --event NAME\n"
               "                      run ENV's hooks and webhooks for a sample event NAME\n"
               "  pause ENV...        fire nothing in ENV until resumed (or --until)\n"
               "  resume ENV...       fire again (--catch-up: the latest slot held fires now)\n"
               "  skip ENV            do not fire ENV's next slot (or --slot TIME)\n"
               "  unskip ENV          fire a skipped slot after all (the earliest, or --slot TIME)\n"
               "  list                every environment, sorted by its next fire\n"
               "\n"
               "Options:\n"
               "  -c, --config PATH   config file (default: $CONFIGURATION_DIRECTORY/refreshd.yaml,\n"
               "                      else " CONFIG_DEFAULT_PATH
               ")\n"
               "      --state-dir DIR where state.json is kept (default: $STATE_DIRECTORY,\n"
               "                      else /var/lib/refreshd)\n"
               "      --log-target T  run: auto, journal or console (default auto: the journal\n"
               "                      under systemd, else standard error)\n"
               "      --next N        check: how many fire times to show per environment (default 3)\n"
               "      --from TIME     check: show fire times after TIME (ISO 8601; UTC unless it has\n"
               "                      an offset; default now)\n"
               "      --online        check: also fetch a token and look up every environment\n"
               "      --json          check, status: print JSON on standard output\n"
               "      --wait          refresh: follow the job to its end (exit 0 on COMPLETED)\n"
               "      --event NAME    hooks: the event (submitted, started, completed, failed,\n"
               "                      canceled, lost, rejected, skipped, retrying, hook_failed)\n"
               "      --dry-run       hooks: print what would run and where it would post\n"
               "      --until TIME    pause: resume by itself then (ISO 8601, or a duration from\n"
               "                      now such as 2h or 3d)\n"
               "      --reason TEXT   pause, skip: why, for the journal and list\n"
               "      --catch-up      resume: fire the latest slot held while paused\n"
               "      --slot TIME     skip, unskip: that slot (ISO 8601) instead of the next\n"
               "      --control-socket PATH\n"
               "                      the daemon's control socket (default:\n"
               "                      $RUNTIME_DIRECTORY/io.refreshd.sock, else " CONTROL_SOCKET_DEFAULT
               ")\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n"
               "\n"
               "Exit status: 0 ok, 1 failure (invalid config, failed refresh), 2 usage error,\n"
               "78 when `run` finds its config invalid at start.\n",
               PROJECT_VERSION);
}

/* --until: an ISO 8601 time, or a duration from now ("2h"). */
static int parse_until(const char *s, int64_t *ret) {
        uint64_t usec;

        if (tz_parse_iso8601(s, ret) >= 0)
                return 0;
        if (duration_parse(s, &usec, NULL) < 0 || usec == 0)
                return -EINVAL;
        *ret = (int64_t) time(NULL) + (int64_t) (usec / USEC_PER_SEC);
        return 0;
}

_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("refreshd: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'refreshd --help'.\n", stderr);
        return -EINVAL;
}

enum {
        ARG_VERSION = 0x100,
        ARG_NEXT,
        ARG_FROM,
        ARG_JSON,
        ARG_STATE_DIR,
        ARG_LOG_TARGET,
        ARG_WAIT,
        ARG_ONLINE,
        ARG_EVENT,
        ARG_DRY_RUN,
        ARG_CONTROL_SOCKET,
        ARG_UNTIL,
        ARG_REASON,
        ARG_CATCH_UP,
        ARG_SLOT,
};

/* Returns 1 to go on, 0 to exit successfully (help, version), <0 on a usage error. */
static int parse_args(int argc, char *argv[], Args *args) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "next", required_argument, NULL, ARG_NEXT },
                { "from", required_argument, NULL, ARG_FROM },
                { "json", no_argument, NULL, ARG_JSON },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "wait", no_argument, NULL, ARG_WAIT },
                { "online", no_argument, NULL, ARG_ONLINE },
                { "event", required_argument, NULL, ARG_EVENT },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "control-socket", required_argument, NULL, ARG_CONTROL_SOCKET },
                { "until", required_argument, NULL, ARG_UNTIL },
                { "reason", required_argument, NULL, ARG_REASON },
                { "catch-up", no_argument, NULL, ARG_CATCH_UP },
                { "slot", required_argument, NULL, ARG_SLOT },
                {},
        };
        bool check_only = false;
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        free(args->config_path);
                        args->config_path = strdup(optarg);
                        if (!args->config_path)
                                return -ENOMEM;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("refreshd %s\n", PROJECT_VERSION);
                        return 0;
                case ARG_NEXT: {
                        char *end;
                        errno = 0;
                        unsigned long n = strtoul(optarg, &end, 10);
                        if (optarg[0] < '0' || optarg[0] > '9' || *end || errno || n < 1 || n > 1000)
                                return usage_error("--next takes a number from 1 to 1000, not '%s'", optarg);
                        args->next = (unsigned) n;
                        check_only = true;
                        break;
                }
                case ARG_FROM:
                        if (tz_parse_iso8601(optarg, &args->from) < 0)
                                return usage_error(
                                        "--from takes an ISO 8601 time such as 2026-03-28T00:00:00Z, "
                                        "not '%s'",
                                        optarg);
                        args->from_set = true;
                        check_only = true;
                        break;
                case ARG_JSON:
                        args->json = true;
                        break;
                case ARG_STATE_DIR:
                        free(args->state_dir);
                        args->state_dir = strdup(optarg);
                        if (!args->state_dir)
                                return -ENOMEM;
                        break;
                case ARG_WAIT:
                        args->wait = true;
                        break;
                case ARG_ONLINE:
                        args->online = true;
                        check_only = true;
                        break;
                case ARG_EVENT:
                        args->event = event_kind_from_string(optarg);
                        if (args->event < 0)
                                return usage_error(
                                        "--event takes submitted, started, completed, failed, canceled, "
                                        "lost, "
                                        "rejected, skipped, retrying or hook_failed, not '%s'",
                                        optarg);
                        break;
                case ARG_DRY_RUN:
                        args->dry_run = true;
                        break;
                case ARG_CONTROL_SOCKET:
                        free(args->control_socket);
                        args->control_socket = strdup(optarg);
                        if (!args->control_socket)
                                return -ENOMEM;
                        break;
                case ARG_UNTIL:
                        if (parse_until(optarg, &args->until) < 0)
                                return usage_error(
                                        "--until takes an ISO 8601 time such as 2027-01-04T00:00:00+01:00 "
                                        "or a duration such as 2h, not '%s'",
                                        optarg);
                        break;
                case ARG_SLOT:
                        if (tz_parse_iso8601(optarg, &args->slot) < 0)
                                return usage_error(
                                        "--slot takes an ISO 8601 time such as 2026-12-08T02:00:00+01:00, "
                                        "not '%s'",
                                        optarg);
                        break;
                case ARG_REASON:
                        args->reason = optarg;
                        break;
                case ARG_CATCH_UP:
                        args->catch_up = true;
                        break;
                case ARG_LOG_TARGET:
                        args->log_target = log_target_from_string(optarg);
                        if (args->log_target < 0)
                                return usage_error(
                                        "--log-target takes auto, journal or console, not '%s'", optarg);
                        break;
                case ':':
                        return usage_error("option '%s' needs a value", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }

        if (optind < argc) {
                args->command = command_from_string(argv[optind]);
                if (args->command < 0)
                        return usage_error("unknown command '%s'", argv[optind]);
                optind++;
        }
        if (args->command == COMMAND_PAUSE || args->command == COMMAND_RESUME) {
                if (optind >= argc)
                        return usage_error(
                                "'%s' needs the names of environments", command_to_string(args->command));
                args->env_names = argv + optind;
                args->n_env_names = (size_t) (argc - optind);
                optind = argc;
        }
        if (args->command == COMMAND_REFRESH || args->command == COMMAND_CANCEL ||
            args->command == COMMAND_HOOKS || args->command == COMMAND_SKIP ||
            args->command == COMMAND_UNSKIP) {
                if (optind >= argc)
                        return usage_error(
                                "'%s' needs the name of an environment", command_to_string(args->command));
                args->env_name = argv[optind++];
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (check_only && args->command != COMMAND_CHECK)
                return usage_error("--next, --from and --online are options of 'check'");
        if (args->wait && args->command != COMMAND_REFRESH)
                return usage_error("--wait is an option of 'refresh'");
        if ((args->event >= 0 || args->dry_run) && args->command != COMMAND_HOOKS)
                return usage_error("--event and --dry-run are options of 'hooks'");
        if (args->command == COMMAND_HOOKS && args->event < 0)
                return usage_error("'hooks' needs --event NAME");
        if (args->json && args->command != COMMAND_CHECK && args->command != COMMAND_STATUS &&
            args->command != COMMAND_LIST)
                return usage_error("--json is an option of 'check', 'status' and 'list'");
        if (args->until != STATE_TIME_UNSET && args->command != COMMAND_PAUSE)
                return usage_error("--until is an option of 'pause'");
        if (args->reason && args->command != COMMAND_PAUSE && args->command != COMMAND_SKIP)
                return usage_error("--reason is an option of 'pause' and 'skip'");
        if (args->catch_up && args->command != COMMAND_RESUME)
                return usage_error("--catch-up is an option of 'resume'");
        if (args->slot != STATE_TIME_UNSET && args->command != COMMAND_SKIP &&
            args->command != COMMAND_UNSKIP)
                return usage_error("--slot is an option of 'skip' and 'unskip'");

        if (!args->config_path) {
                args->config_path = config_default_path();
                if (!args->config_path)
                        return -ENOMEM;
        }
        if (!args->state_dir) {
                args->state_dir = manager_default_state_dir();
                if (!args->state_dir)
                        return -ENOMEM;
        }
        if (!args->control_socket) {
                args->control_socket = control_default_path();
                if (!args->control_socket)
                        return -ENOMEM;
        }
        return 1;
}

/* ---- run ---- */

static int command_run(const Args *args) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Manager *m = NULL;
        int r;

        /* Blocks of 128 KiB and more (the config file, the config's and the
         * state's arrays of 10,000 environments) get mappings of their own,
         * whatever size was freed before: glibc otherwise raises this
         * threshold to the largest block freed, so that at a reload the
         * next config's arrays grow inside the heap, copied at each
         * doubling, and the copies stay resident until malloc_trim(). A
         * mapping grows by mremap() and goes back to the system when freed.
         * Setting it also fixes the trim threshold at its default. */
        (void) mallopt(M_MMAP_THRESHOLD, 128 * 1024);

        report_init(args->log_target, stderr);
        r = sd_event_default(&event);
        if (r < 0) {
                report_log(LOG_ERR, "cannot create the event loop: %s", strerror(-r));
                return EXIT_FAILURE;
        }
        r = manager_new(event, args->config_path, args->state_dir, &m);
        if (r == MANAGER_ERR_CONFIG) {
                /* EX_CONFIG: the unit's RestartPreventExitStatus= stops a restart loop. */
                report_log(LOG_ERR, "%s: invalid config, not starting", args->config_path);
                return EX_CONFIG;
        }
        if (r < 0) {
                report_log(LOG_ERR, "cannot start: %s", strerror(-r));
                return EXIT_FAILURE;
        }
        r = manager_start(m, args->control_socket);
        if (r >= 0)
                r = sd_event_loop(event);
        if (r < 0)
                report_log(LOG_ERR, "stopped: %s", strerror(-r));
        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        Args args = { .command = COMMAND_RUN,
                      .next = 3,
                      .log_target = LOG_TARGET_AUTO,
                      .event = _EVENT_KIND_INVALID,
                      .until = STATE_TIME_UNSET,
                      .slot = STATE_TIME_UNSET };
        int r;

        /* A reader that went away (refreshd run 2>&1 | head -1) is a write
         * error to ignore, not a reason to die. */
        (void) signal(SIGPIPE, SIG_IGN);

        r = parse_args(argc, argv, &args);
        if (r <= 0) {
                free(args.config_path);
                free(args.state_dir);
                free(args.control_socket);
                return r == 0 ? EXIT_SUCCESS : r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
        }
        if (!args.from_set)
                args.from = (int64_t) time(NULL);

        switch (args.command) {
        case COMMAND_CHECK:
                r = command_check(args.config_path, args.from, args.next, args.json, args.online);
                break;
        case COMMAND_RUN:
                r = command_run(&args);
                break;
        case COMMAND_STATUS:
                r = command_status(args.config_path, args.state_dir, args.json);
                break;
        case COMMAND_REFRESH:
                r = command_refresh(args.config_path, args.env_name, args.wait);
                break;
        case COMMAND_CANCEL:
                r = command_cancel(args.config_path, args.env_name);
                break;
        case COMMAND_HOOKS:
                r = command_hooks(args.config_path, args.env_name, args.event, args.dry_run);
                break;
        case COMMAND_PAUSE:
                r = command_pause(
                        args.control_socket, args.env_names, args.n_env_names, args.until, args.reason);
                break;
        case COMMAND_RESUME:
                r = command_resume(args.control_socket, args.env_names, args.n_env_names, args.catch_up);
                break;
        case COMMAND_SKIP:
                r = command_skip(args.control_socket, args.env_name, args.slot, args.reason);
                break;
        case COMMAND_UNSKIP:
                r = command_unskip(args.control_socket, args.env_name, args.slot);
                break;
        case COMMAND_LIST:
                r = command_list(args.control_socket, args.config_path, args.state_dir, args.json);
                break;
        case _COMMAND_MAX:
        case _COMMAND_INVALID:
                assert_not_reached();
        }
        free(args.config_path);
        free(args.state_dir);
        free(args.control_socket);
        return r;
}
