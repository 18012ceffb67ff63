/* SPDX-License-Identifier: MIT */
/*
 * The control socket: interface io.refreshd.Manager over Varlink, which
 * the commands `pause`, `resume`, `skip`, `unskip` and `list` call. Every
 * call is logged with the caller's uid. Reaches the environments through
 * ControlOps, which the manager implements.
 */
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include "env.h"
#include "json.h"

#define CONTROL_INTERFACE "io.refreshd.Manager"
#define CONTROL_SOCKET_NAME "io.refreshd.sock"
/* Where the socket is when neither --control-socket nor $RUNTIME_DIRECTORY says. */
#define CONTROL_SOCKET_DEFAULT "/run/refreshd/" CONTROL_SOCKET_NAME

/* The errors of io.refreshd.Manager. */
#define CONTROL_ERROR_NO_SUCH_ENVIRONMENT CONTROL_INTERFACE ".NoSuchEnvironment"
#define CONTROL_ERROR_NOT_A_SLOT CONTROL_INTERFACE ".NotASlot"
#define CONTROL_ERROR_NO_SLOT_COMES CONTROL_INTERFACE ".NoSlotComes"
#define CONTROL_ERROR_NOT_SKIPPED CONTROL_INTERFACE ".NotSkipped"
#define CONTROL_ERROR_FAILED CONTROL_INTERFACE ".Failed"

typedef struct Control Control;

typedef struct ControlOps {
        /* The environment NAME, or NULL. */
        Env *(*find)(void *userdata, const char *name);
        /* Every environment, in config order; *RET_N of them. */
        Env *const *(*envs)(void *userdata, size_t *ret_n);
        /* A pause began or ended: when the next one ends may have changed. */
        void (*pauses_changed)(void *userdata);
} ControlOps;

/* Environment EC as List gives it (type Environment), from the state S:
 * its lifecycle's STATE (NULL: unknown, no daemon runs) and NEXT fire. */
void control_put_environment(JsonWriter *w, const EnvConfig *ec, State *s, const char *state, int64_t next);

/* The socket path to use: $RUNTIME_DIRECTORY/io.refreshd.sock, else the
 * default. Returns a new string. */
char *control_default_path(void);

/* Listens on PATH; GROUP (or (gid_t) -1) may talk to it besides its owner and root. */
int control_new(
        sd_event *event,
        const char *path,
        gid_t group,
        const ControlOps *ops,
        void *userdata,
        Control **ret);
Control *control_free(Control *c);
