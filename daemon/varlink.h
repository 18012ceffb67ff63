/* SPDX-License-Identifier: MIT */
/*
 * Varlink (https://varlink.org) over a local stream socket: JSON objects
 * ended by a NUL byte. The server side runs on sd-event: it accepts
 * connections, reads one call at a time, answers the org.varlink.service
 * interface (GetInfo, GetInterfaceDescription) itself and hands every other
 * method to the function its interface names. A connection that sends a
 * malformed or oversized message, or is too slow to send one, is closed and
 * nothing else is touched. The client side is blocking, for the commands.
 * Knows nothing of refreshd's methods.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "json.h"

/* A message, call or reply, is at most this long (its NUL aside). */
#define VARLINK_MESSAGE_MAX (64 * 1024)
/* A message begun must be whole within this long, µs ... */
#define VARLINK_MESSAGE_TIMEOUT_USEC (5 * 1000 * 1000ULL)
/* ... and a connection that sends nothing is closed after this long. */
#define VARLINK_IDLE_TIMEOUT_USEC (60 * 1000 * 1000ULL)
/* Connections beyond this many are closed as soon as accepted. */
#define VARLINK_CONNECTIONS_MAX 64

/* The standard errors (org.varlink.service). */
#define VARLINK_ERROR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED "org.varlink.service.MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"

typedef struct VarlinkServer VarlinkServer;
typedef struct VarlinkCall VarlinkCall;

/* Method METHOD of an interface was called with PARAMETERS (an object,
 * perhaps empty): answer with varlink_reply() or varlink_error(), now or
 * later; CALL is valid until then. */
typedef void (*VarlinkMethodFunc)(
        VarlinkCall *call, const char *method, const JsonNode *parameters, void *userdata);

typedef struct VarlinkInterface {
        const char *name;        /* "io.refreshd.Manager" */
        const char *description; /* its interface definition, as GetInterfaceDescription returns it */
        VarlinkMethodFunc call;
} VarlinkInterface;

typedef struct VarlinkServerOptions {
        const char *vendor, *product, *version, *url; /* GetInfo */
        const VarlinkInterface *interfaces;
        size_t n_interfaces;
        void *userdata;
        gid_t group; /* (gid_t) -1: the socket is its owner's only (0600); else also GROUP's (0660) */
} VarlinkServerOptions;

/* Listens on PATH (a stale socket there is replaced). */
int varlink_server_new(
        sd_event *event, const char *path, const VarlinkServerOptions *options, VarlinkServer **ret);
/* Closes every connection (calls not answered are dropped) and removes the socket. */
VarlinkServer *varlink_server_free(VarlinkServer *s);

/* Who called: SO_PEERCRED of its connection. */
uid_t varlink_call_uid(const VarlinkCall *c);
pid_t varlink_call_pid(const VarlinkCall *c);

/* The answer's parameters go into the writer varlink_reply_begin() returns
 * (already inside the "parameters" object), then varlink_reply_end()
 * sends it and frees CALL. A oneway call gets nothing, but still ends. */
JsonWriter *varlink_reply_begin(VarlinkCall *c);
void varlink_reply_end(VarlinkCall *c);
/* The same for error ERROR ("io.refreshd.Manager.NoSuchEnvironment"). */
JsonWriter *varlink_error_begin(VarlinkCall *c, const char *error);
/* ERROR with one string parameter KEY: VALUE (KEY NULL: none). */
void varlink_error(VarlinkCall *c, const char *error, const char *key, const char *value);

/* ---- the client side ---- */

/* Connects to PATH. -ENOENT, -ECONNREFUSED: nobody listens there; -EACCES: not ours to talk to. */
int varlink_connect(const char *path, int *ret_fd);

/* Calls METHOD with PARAMETERS (an object's text; NULL: {}) on FD and
 * waits up to TIMEOUT_USEC for the answer. On 0, *RET holds the reply:
 * its root has "parameters" and, for an error, "error". -ETIMEDOUT,
 * -EBADMSG (the answer is no Varlink reply), -ECONNRESET. */
int varlink_call(int fd, const char *method, const char *parameters, uint64_t timeout_usec, JsonDoc *ret);

/* The error a reply names, or NULL for a success. */
const char *varlink_reply_error(const JsonDoc *reply);
/* Its parameters (an object; never NULL for a valid reply). */
const JsonNode *varlink_reply_parameters(const JsonDoc *reply);
