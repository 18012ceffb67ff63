/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "list.h"
#include "macro.h"
#include "varlink.h"

#define SERVICE_INTERFACE "org.varlink.service"
#define OUTPUT_MAX (4 * VARLINK_MESSAGE_MAX)

static const char service_description[] =
        "# The Varlink Service Interface is provided by every varlink service. It\n"
        "# describes the service and the interfaces it implements.\n"
        "interface org.varlink.service\n"
        "\n"
        "# Get a list of all the interfaces a service provides and information\n"
        "# about the implementation.\n"
        "method GetInfo() -> (\n"
        "  vendor: string,\n"
        "  product: string,\n"
        "  version: string,\n"
        "  url: string,\n"
        "  interfaces: []string\n"
        ")\n"
        "\n"
        "# Get the description of an interface that is implemented by this service.\n"
        "method GetInterfaceDescription(interface: string) -> (description: string)\n"
        "\n"
        "# The requested interface was not found.\n"
        "error InterfaceNotFound (interface: string)\n"
        "\n"
        "# The requested method was not found\n"
        "error MethodNotFound (method: string)\n"
        "\n"
        "# The interface defines the requested method, but the service does not\n"
        "# implement it.\n"
        "error MethodNotImplemented (method: string)\n"
        "\n"
        "# One of the passed parameters is invalid.\n"
        "error InvalidParameter (parameter: string)\n";

typedef struct Connection Connection;

struct VarlinkCall {
        Connection *conn; /* NULL once the connection is gone */
        bool oneway;
        JsonWriter w;
};

struct Connection {
        VarlinkServer *server;
        LIST_FIELDS(Connection, connections);
        int fd;
        sd_event_source *io;
        sd_event_source *timer; /* CLOCK_MONOTONIC: a message too slow, or nothing for too long */
        struct ucred cred;
        char in[VARLINK_MESSAGE_MAX + 1]; /* a message and its NUL */
        size_t n_in;
        uint64_t in_since; /* CLOCK_MONOTONIC µs: when the message in IN began */
        char *out;
        size_t n_out;
        VarlinkCall *call; /* being answered: nothing more is read till then */
        bool dispatching;  /* inside connection_dispatch(): C is freed after, not in it */
        bool dead;         /* to be closed when the dispatch returns */
};

struct VarlinkServer {
        sd_event *event;
        char *path;
        int fd;
        sd_event_source *listen;
        VarlinkServerOptions options;
        LIST_HEAD(Connection) connections;
};

static uint64_t now_monotonic(const VarlinkServer *s) {
        uint64_t now = 0;
        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        return now;
}

static void connection_free(Connection *c) {
        if (c->call)
                c->call->conn = NULL; /* answered later into the void */
        LIST_REMOVE(connections, &c->server->connections, c);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        if (c->fd >= 0)
                close(c->fd);
        free(c->out);
        free(c);
}

/* What the connection waits for: input while no call is answered, a chance
 * to write while output is left; and the deadline that goes with it. */
static void connection_update(Connection *c) {
        uint32_t events = (c->call ? 0 : EPOLLIN) | (c->n_out > 0 ? EPOLLOUT : 0);
        uint64_t deadline;

        (void) sd_event_source_set_io_events(c->io, events);
        if (c->call && c->n_out == 0) {
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF); /* our turn, not the peer's */
                return;
        }
        deadline = c->n_in > 0 || c->n_out > 0 ? c->in_since + VARLINK_MESSAGE_TIMEOUT_USEC
                                               : c->in_since + VARLINK_IDLE_TIMEOUT_USEC;
        (void) sd_event_source_set_time(c->timer, deadline);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

static int connection_queue(Connection *c, const char *text, size_t size) {
        char *p;

        if (c->n_out + size + 1 > OUTPUT_MAX)
                return -ENOBUFS;
        p = realloc(c->out, c->n_out + size + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p + c->n_out, text, size);
        p[c->n_out + size] = '\0';
        if (c->n_out == 0)
                c->in_since = now_monotonic(c->server); /* the peer has this long to read it */
        c->out = p;
        c->n_out += size + 1;
        return 0;
}

/* ---- answering ---- */

static VarlinkCall *call_new(Connection *c, bool oneway) {
        VarlinkCall *call = calloc(1, sizeof(*call));

        if (!call)
                return NULL;
        call->conn = c;
        call->oneway = oneway;
        if (json_writer_init(&call->w, /* beautify= */ false, NULL, NULL) < 0) {
                free(call);
                return NULL;
        }
        c->call = call;
        return call;
}

uid_t varlink_call_uid(const VarlinkCall *c) {
        return c->conn ? c->conn->cred.uid : (uid_t) -1;
}

pid_t varlink_call_pid(const VarlinkCall *c) {
        return c->conn ? c->conn->cred.pid : 0;
}

JsonWriter *varlink_reply_begin(VarlinkCall *c) {
        json_put_open(&c->w);
        json_put_string(&c->w, "parameters");
        json_put_open(&c->w);
        return &c->w;
}

JsonWriter *varlink_error_begin(VarlinkCall *c, const char *error) {
        json_put_open(&c->w);
        json_put_string(&c->w, "error");
        json_put_string(&c->w, error);
        json_put_string(&c->w, "parameters");
        json_put_open(&c->w);
        return &c->w;
}

static void connection_process(Connection *c);

void varlink_reply_end(VarlinkCall *call) {
        Connection *c = call->conn;
        const char *text;
        size_t size;
        int r;

        json_put_close(&call->w);
        json_put_close(&call->w);
        r = json_writer_text(&call->w, &text, &size);
        if (c && !call->oneway)
                r = r < 0 ? r : connection_queue(c, text, size);
        json_writer_done(&call->w);
        free(call);
        if (!c)
                return;
        c->call = NULL;
        if (r < 0)
                c->dead = true;
        if (c->dispatching)
                return; /* connection_process() goes on */
        if (c->dead) {
                connection_free(c);
                return;
        }
        connection_process(c); /* a call sent behind this one */
}

void varlink_error(VarlinkCall *c, const char *error, const char *key, const char *value) {
        JsonWriter *w = varlink_error_begin(c, error);

        if (key) {
                json_put_string(w, key);
                json_put_string(w, value);
        }
        varlink_reply_end(c);
}

static void service_get_info(VarlinkCall *call, const VarlinkServerOptions *o) {
        JsonWriter *w = varlink_reply_begin(call);

        json_put_string(w, "vendor");
        json_put_string(w, o->vendor);
        json_put_string(w, "product");
        json_put_string(w, o->product);
        json_put_string(w, "version");
        json_put_string(w, o->version);
        json_put_string(w, "url");
        json_put_string(w, o->url);
        json_put_string(w, "interfaces");
        json_put_array_open(w);
        json_put_string(w, SERVICE_INTERFACE);
        for (size_t i = 0; i < o->n_interfaces; i++)
                json_put_string(w, o->interfaces[i].name);
        json_put_array_close(w);
        varlink_reply_end(call);
}

static const VarlinkInterface *find_interface(const VarlinkServerOptions *o, const char *name, size_t len) {
        for (size_t i = 0; i < o->n_interfaces; i++)
                if (strlen(o->interfaces[i].name) == len && strncmp(o->interfaces[i].name, name, len) == 0)
                        return &o->interfaces[i];
        return NULL;
}

static void service_get_description(
        VarlinkCall *call, const VarlinkServerOptions *o, const JsonNode *params) {
        const char *name = json_text(json_get(params, "interface"), false);
        const VarlinkInterface *i;
        const char *text;

        if (!name) {
                varlink_error(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", "interface");
                return;
        }
        i = find_interface(o, name, strlen(name));
        text = strcmp(name, SERVICE_INTERFACE) == 0 ? service_description : i ? i->description : NULL;
        if (!text) {
                varlink_error(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
                return;
        }
        JsonWriter *w = varlink_reply_begin(call);
        json_put_string(w, "description");
        json_put_string(w, text);
        varlink_reply_end(call);
}

static void service_call(
        VarlinkCall *call, const VarlinkServerOptions *o, const char *method, const JsonNode *params) {
        if (strcmp(method, SERVICE_INTERFACE ".GetInfo") == 0)
                service_get_info(call, o);
        else if (strcmp(method, SERVICE_INTERFACE ".GetInterfaceDescription") == 0)
                service_get_description(call, o, params);
        else
                varlink_error(call, VARLINK_ERROR_METHOD_NOT_FOUND, "method", method);
}

/* One whole message, TEXT (SIZE bytes, its NUL not counted). False when it
 * is no call: the connection is to be closed. */
static bool connection_dispatch(Connection *c, const char *text, size_t size) {
        const VarlinkServerOptions *o = &c->server->options;
        _cleanup_(json_doc_done) JsonDoc doc = {};
        const JsonNode *params, *oneway;
        const char *method, *dot;
        VarlinkCall *call;

        if (json_parse(text, size, &(JsonOptions) { .max_depth = 32, .deep_is_error = true }, &doc, NULL) <
                    0 ||
            doc.root->type != JSON_OBJECT)
                return false;
        method = json_text(json_get(doc.root, "method"), false);
        params = json_get(doc.root, "parameters");
        oneway = json_get(doc.root, "oneway");
        if (!method || (params && params->type != JSON_OBJECT && params->type != JSON_NULL) ||
            (oneway && oneway->type != JSON_BOOLEAN))
                return false;
        dot = strrchr(method, '.');
        call = call_new(c, oneway && oneway->boolean);
        if (!call)
                return false;
        if (params && params->type == JSON_NULL)
                params = NULL;
        static const JsonNode empty = { .type = JSON_OBJECT };
        if (!params)
                params = &empty;
        if (dot && (size_t) (dot - method) == strlen(SERVICE_INTERFACE) &&
            strncmp(method, SERVICE_INTERFACE, strlen(SERVICE_INTERFACE)) == 0) {
                service_call(call, o, method, params);
                return true;
        }
        const VarlinkInterface *i = dot ? find_interface(o, method, (size_t) (dot - method)) : NULL;
        if (!i) {
                _cleanup_free_ char *name = strndup(method, dot ? (size_t) (dot - method) : strlen(method));
                varlink_error(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name ? name : method);
                return true;
        }
        i->call(call, method, params, o->userdata);
        return true;
}

/* Dispatches the messages whole in the input, one at a time: after a call
 * nothing more is read until it is answered. Frees C when it must close. */
static void connection_process(Connection *c) {
        while (!c->call) {
                char *nul = memchr(c->in, '\0', c->n_in);
                size_t size;

                if (!nul) {
                        if (c->n_in > VARLINK_MESSAGE_MAX) {
                                connection_free(c); /* too long */
                                return;
                        }
                        break;
                }
                size = (size_t) (nul - c->in);
                /* Copied out: the input moves on before the call is answered. */
                _cleanup_free_ char *text = strndup(c->in, size);
                if (!text) {
                        connection_free(c);
                        return;
                }
                c->n_in -= size + 1;
                memmove(c->in, nul + 1, c->n_in);
                c->in_since = now_monotonic(c->server);
                c->dispatching = true;
                bool ok = connection_dispatch(c, text, size);
                c->dispatching = false;
                if (!ok || c->dead) {
                        connection_free(c);
                        return;
                }
        }
        connection_update(c);
}

static int connection_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Connection *c = userdata;
        (void) s;

        if (revents & EPOLLOUT && c->n_out > 0) {
                ssize_t n = send(fd, c->out, c->n_out, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        connection_free(c);
                        return 0;
                }
                if (n > 0) {
                        memmove(c->out, c->out + n, c->n_out - (size_t) n);
                        c->n_out -= (size_t) n;
                        c->in_since = now_monotonic(c->server);
                }
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR) && !c->call) {
                ssize_t n = recv(fd, c->in + c->n_in, sizeof(c->in) - c->n_in, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        connection_free(c); /* the peer is gone */
                        return 0;
                }
                if (n > 0) {
                        if (c->n_in == 0)
                                c->in_since = now_monotonic(c->server);
                        c->n_in += (size_t) n;
                }
                connection_process(c);
                return 0;
        }
        connection_update(c);
        return 0;
}

static int connection_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s;
        (void) usec;
        connection_free(userdata); /* too slow, or idle too long */
        return 0;
}

static int connection_new(VarlinkServer *s, int fd) {
        Connection *c = calloc(1, sizeof(*c));
        socklen_t len = sizeof(c ? c->cred : (struct ucred) {});
        int r;

        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        c->in_since = now_monotonic(s);
        LIST_APPEND(connections, &s->connections, c);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                r = -errno;
                connection_free(c);
                return r;
        }
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, connection_on_io, c);
        if (r >= 0)
                r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, 0, 1, connection_on_timer, c);
        if (r < 0) {
                connection_free(c);
                return r;
        }
        (void) sd_event_source_set_description(c->io, "varlink-connection");
        (void) sd_event_source_set_description(c->timer, "varlink-timeout");
        connection_update(c);
        return 0;
}

static int server_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        VarlinkServer *s = userdata;
        int cfd;
        (void) es;
        (void) revents;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0; /* EAGAIN, or the peer gave up: nothing to do */
        if (s->connections.n >= VARLINK_CONNECTIONS_MAX) {
                close(cfd);
                return 0;
        }
        (void) connection_new(s, cfd);
        return 0;
}

/* ---- the server ---- */

static int server_bind(VarlinkServer *s) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        mode_t mask;
        int r;

        if (strlen(s->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, s->path);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0)
                return -errno;
        if (unlink(s->path) < 0 && errno != ENOENT)
                return -errno;
        mask = umask(0177); /* 0600 from the start, never wider for a moment */
        r = bind(s->fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(mask);
        if (r < 0)
                return -errno;
        if (s->options.group != (gid_t) -1 &&
            (chown(s->path, (uid_t) -1, s->options.group) < 0 || chmod(s->path, 0660) < 0))
                return -errno;
        if (listen(s->fd, 16) < 0)
                return -errno;
        return 0;
}

int varlink_server_new(
        sd_event *event, const char *path, const VarlinkServerOptions *options, VarlinkServer **ret) {
        VarlinkServer *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->options = *options;
        s->fd = -1;
        s->path = strdup(path);
        if (!s->path) {
                varlink_server_free(s);
                return -ENOMEM;
        }
        r = server_bind(s);
        if (r >= 0)
                r = sd_event_add_io(event, &s->listen, s->fd, EPOLLIN, server_on_accept, s);
        if (r < 0) {
                varlink_server_free(s);
                return r;
        }
        (void) sd_event_source_set_description(s->listen, "varlink-listen");
        *ret = s;
        return 0;
}

VarlinkServer *varlink_server_free(VarlinkServer *s) {
        if (!s)
                return NULL;
        while (s->connections.head)
                connection_free(s->connections.head);
        sd_event_source_disable_unref(s->listen);
        if (s->fd >= 0) {
                close(s->fd);
                (void) unlink(s->path);
        }
        free(s->path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

/* ---- the client side ---- */

int varlink_connect(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Waits for EVENTS on FD until DEADLINE (CLOCK_MONOTONIC µs). */
static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                uint64_t now = now_usec();
                struct pollfd p = { .fd = fd, .events = events };
                int n;

                if (now >= deadline)
                        return -ETIMEDOUT;
                n = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (n > 0)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return -errno;
        }
}

static int send_all(int fd, const char *p, size_t size, uint64_t deadline) {
        while (size > 0) {
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                ssize_t n = send(fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (n > 0) {
                        p += n;
                        size -= (size_t) n;
                }
        }
        return 0;
}

/* Reads up to the first NUL into BUF (SIZE bytes at most). */
static int recv_message(int fd, char *buf, size_t size, size_t *ret_len, uint64_t deadline) {
        size_t n = 0;

        for (;;) {
                char *nul = memchr(buf, '\0', n);
                if (nul) {
                        *ret_len = (size_t) (nul - buf);
                        return 0;
                }
                if (n == size)
                        return -EBADMSG;
                int r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                ssize_t k = recv(fd, buf + n, size - n, MSG_DONTWAIT);
                if (k == 0)
                        return -ECONNRESET;
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (k > 0)
                        n += (size_t) k;
        }
}

int varlink_call(int fd, const char *method, const char *parameters, uint64_t timeout_usec, JsonDoc *ret) {
        uint64_t deadline = now_usec() + timeout_usec;
        _cleanup_free_ char *msg = NULL, *buf = NULL;
        JsonDoc doc = {};
        size_t len = 0;
        int n, r;

        /* METHOD is ours (no quoting needed); PARAMETERS an object's text. */
        n = asprintf(&msg, "{\"method\":\"%s\",\"parameters\":%s}", method, parameters ? parameters : "{}");
        if (n < 0)
                return -ENOMEM;
        r = send_all(fd, msg, (size_t) n + 1, deadline);
        if (r < 0)
                return r;
        buf = malloc(VARLINK_MESSAGE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        r = recv_message(fd, buf, VARLINK_MESSAGE_MAX + 1, &len, deadline);
        if (r < 0)
                return r;
        if (json_parse(buf, len, &(JsonOptions) { .max_depth = 64 }, &doc, NULL) < 0)
                return -EBADMSG;
        const JsonNode *p = json_get(doc.root, "parameters");
        const JsonNode *e = json_get(doc.root, "error");
        if (doc.root->type != JSON_OBJECT || (p && p->type != JSON_OBJECT) ||
            (e && e->type != JSON_STRING)) {
                json_doc_done(&doc);
                return -EBADMSG;
        }
        *ret = doc;
        return 0;
}

const char *varlink_reply_error(const JsonDoc *reply) {
        return json_text(json_get(reply->root, "error"), false);
}

const JsonNode *varlink_reply_parameters(const JsonDoc *reply) {
        static const JsonNode empty = { .type = JSON_OBJECT };
        const JsonNode *p = json_get(reply->root, "parameters");
        return p ? p : &empty;
}
