/* SPDX-License-Identifier: MIT */
/*
 * bench-rx: a minimal, fast stand-in for the Zuora API, for the daemon
 * benchmarks (bench-daemon.py). One thread, epoll, HTTP/1.1 keep-alive,
 * listen backlog 4096, every answer written with one send(). It records the
 * arrival time (CLOCK_REALTIME, taken when a request's head is complete) of
 * every request, so that firing delays and poll lags can be measured at a
 * receiver that keeps up with 1,000 connections at once, which the bundled
 * Python simulator (a thread per connection) may not.
 *
 * It answers only what refreshd needs, with the simulator's shapes:
 *   POST /oauth/token                           a token (any credentials)
 *   GET  /test-environments/{id}                never refreshed, no cooldown
 *   GET  /test-environments/{id}/jobs           [] (no job covers the slot)
 *   POST /test-environments/{id}/jobs           a new job, Location relative
 *   GET  /test-environments/{id}/jobs/{job}     the simulator's timeline:
 *        NEW 0.1 D, QUEUED to 0.2 D, IN_PROGRESS 0..99 % to D, COMPLETED
 * Control (not recorded):
 *   GET  /_rx/health                            ok
 *   GET  /_rx/requests?since=N                  TSV: seq time method path
 *   GET  /_rx/stats                             JSON counters
 *   POST /_rx/clear                             forget the recorded requests
 *
 * Usage: bench-rx [--host 127.0.0.1] [--port 0] [--port-file F]
 *                 [--job-seconds D] [--post-status N] [--backlog N]
 * SIGTERM/SIGINT: exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct Buf {
        char *p;
        size_t n, cap;
} Buf;

static void buf_reserve(Buf *b, size_t extra) {
        if (b->n + extra + 1 <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + extra + 1)
                cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
                perror("realloc");
                exit(1);
        }
        b->cap = cap;
}

static void buf_add(Buf *b, const void *data, size_t len) {
        buf_reserve(b, len);
        memcpy(b->p + b->n, data, len);
        b->n += len;
        b->p[b->n] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        buf_reserve(b, (size_t) len);
        va_start(ap, fmt);
        vsnprintf(b->p + b->n, (size_t) len + 1, fmt, ap);
        va_end(ap);
        b->n += (size_t) len;
}

static void buf_consume(Buf *b, size_t len) {
        memmove(b->p, b->p + len, b->n - len);
        b->n -= len;
        if (b->p)
                b->p[b->n] = 0;
}

typedef struct Conn {
        int fd;
        Buf in, out;
        bool close_after;
        bool want_out;
} Conn;

typedef struct Record {
        double t;
        char method[8];
        char *path;
} Record;

static Record *records;
static size_t n_records, cap_records;
static double *jobs_created; /* by job number, 1-based */
static size_t n_jobs, cap_jobs;
static double job_seconds = 3600;
static int post_status = 200;
static int epfd;
static unsigned long long n_accepted, n_open, max_open, n_requests;
static volatile sig_atomic_t stop;

static double now_real(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void rfc3339(double t, char out[32], bool round_up) {
        time_t s = (time_t) t;
        if (round_up && (double) s < t)
                s++;
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(out, 32, "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
}

static void record(const char *method, const char *path, size_t path_len) {
        if (n_records == cap_records) {
                cap_records = cap_records ? cap_records * 2 : 65536;
                records = realloc(records, cap_records * sizeof(Record));
                if (!records) {
                        perror("realloc");
                        exit(1);
                }
        }
        Record *r = &records[n_records++];
        r->t = now_real();
        snprintf(r->method, sizeof(r->method), "%s", method);
        r->path = strndup(path, path_len);
}

static void respond(Conn *c, int status, const char *ctype, const char *extra_headers, const char *body,
                    size_t body_len) {
        const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 400 ? "Bad Request"
                                                                                              : "Error";
        buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: bench-rx\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                   status, reason, ctype, body_len, extra_headers ? extra_headers : "",
                   c->close_after ? "Connection: close\r\n" : "");
        buf_add(&c->out, body, body_len);
}

static void respond_json(Conn *c, int status, const char *extra_headers, Buf *body) {
        respond(c, status, "application/json", extra_headers, body->p ? body->p : "", body->n);
}

static void job_view(Buf *b, const char *env_id, unsigned long long num, double created, double now, bool at_creation) {
        double D = job_seconds, new_end = created + 0.1 * D, start = created + 0.2 * D, span = 0.8 * D,
               end = start + span;
        const char *status;
        int progress = 0;
        double updated = now;
        char cs[32], us[32], ss[32] = "null", es[32] = "null", ec[32];

        if (at_creation) {
                status = "NEW";
                updated = created;
        } else if (now >= end) {
                status = "COMPLETED";
                progress = 100;
                updated = end;
                rfc3339(start, ss, false);
                rfc3339(end, es, false);
        } else if (now >= start) {
                status = "IN_PROGRESS";
                progress = (int) (100 * (now - start) / span);
                if (progress > 99)
                        progress = 99;
                rfc3339(start, ss, false);
        } else if (now >= new_end) {
                status = "QUEUED";
                updated = new_end;
        } else {
                status = "NEW";
                updated = created;
        }
        rfc3339(created, cs, false);
        rfc3339(updated, us, false);
        rfc3339(end, ec, true);
        buf_printf(b,
                   "{\"id\":\"%032llx\",\"testEnvironmentId\":\"%s\",\"jobType\":\"REFRESH\",\"status\":\"%s\","
                   "\"progressPercentage\":%d,\"createTime\":%s,\"updateTime\":%s,"
                   "\"createdById\":\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\",\"updatedById\":\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\","
                   "\"scheduledRefreshTime\":null,\"jobStartTime\":%s,\"jobEndTime\":%s,\"estimatedCompletionTime\":%s}",
                   num, env_id, status, progress, cs, us, ss, es, ec);
}

/* Handles one complete request; the path is not NUL-terminated. */
static void handle(Conn *c, const char *method, const char *target, size_t target_len) {
        Buf body = {};
        size_t path_len = target_len;
        const char *q = memchr(target, '?', target_len);
        if (q)
                path_len = (size_t) (q - target);
        char path[512];
        if (path_len >= sizeof(path))
                path_len = sizeof(path) - 1;
        memcpy(path, target, path_len);
        path[path_len] = 0;
        bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;

        if (strncmp(path, "/_rx/", 5) == 0) {
                if (get && strcmp(path, "/_rx/health") == 0) {
                        buf_printf(&body, "ok\n");
                        respond(c, 200, "text/plain", NULL, body.p, body.n);
                } else if (get && strcmp(path, "/_rx/requests") == 0) {
                        size_t since = 0;
                        if (q) {
                                const char *s = strstr(q, "since=");
                                if (s && s < target + target_len)
                                        since = strtoull(s + 6, NULL, 10);
                        }
                        buf_reserve(&body, 1);
                        for (size_t i = since; i < n_records; i++)
                                buf_printf(&body, "%zu\t%.6f\t%s\t%s\n", i + 1, records[i].t, records[i].method,
                                           records[i].path);
                        respond(c, 200, "text/tab-separated-values", NULL, body.p ? body.p : "", body.n);
                } else if (get && strcmp(path, "/_rx/stats") == 0) {
                        buf_printf(&body,
                                   "{\"requests\":%llu,\"recorded\":%zu,\"accepted\":%llu,\"open\":%llu,"
                                   "\"max_open\":%llu,\"jobs\":%zu}",
                                   n_requests, n_records, n_accepted, n_open, max_open, n_jobs);
                        respond_json(c, 200, NULL, &body);
                } else if (post && strcmp(path, "/_rx/clear") == 0) {
                        for (size_t i = 0; i < n_records; i++)
                                free(records[i].path);
                        n_records = 0;
                        buf_printf(&body, "{}");
                        respond_json(c, 200, NULL, &body);
                } else {
                        buf_printf(&body, "{\"message\":\"no such control\"}");
                        respond_json(c, 404, NULL, &body);
                }
                free(body.p);
                return;
        }

        n_requests++;
        record(method, path, path_len);
        double now = records[n_records - 1].t;

        if (post && strcmp(path, "/oauth/token") == 0) {
                buf_printf(&body, "{\"access_token\":\"bench-rx-token-0123456789abcdef\",\"token_type\":\"bearer\","
                                  "\"expires_in\":3600,\"scope\":\"bench\",\"jti\":\"0123456789abcdef\"}");
                respond_json(c, 200, "Cache-Control: no-store\r\n", &body);
                free(body.p);
                return;
        }
        /* /test-environments/{id}[/jobs[/{job}]] */
        const char *prefix = "/test-environments/";
        if (strncmp(path, prefix, strlen(prefix)) != 0) {
                buf_printf(&body, "{\"message\":\"No resource\"}");
                respond_json(c, 404, NULL, &body);
                free(body.p);
                return;
        }
        char *id = path + strlen(prefix);
        char *rest = strchr(id, '/');
        if (rest)
                *rest++ = 0;
        if (!rest && get) {
                buf_printf(&body,
                           "{\"id\":\"%s\",\"tenantId\":\"20001\",\"tenantName\":\"sandbox-bench\","
                           "\"environmentType\":\"CentralSandbox\",\"dataCopyType\":\"Full\",\"status\":\"ACTIVE\","
                           "\"sourceTenantId\":\"10000\",\"provisionTime\":\"2026-01-01T00:00:00Z\","
                           "\"deactivationTime\":null,\"lastRefreshTime\":null,\"nextRefreshTime\":null}",
                           id);
                respond_json(c, 200, NULL, &body);
        } else if (rest && strcmp(rest, "jobs") == 0 && get) {
                buf_printf(&body, "[]");
                respond_json(c, 200, NULL, &body);
        } else if (rest && strcmp(rest, "jobs") == 0 && post) {
                if (post_status != 200) {
                        buf_printf(&body,
                                   "{\"success\":false,\"reasons\":[{\"code\":50000040,\"message\":\"bench-rx: "
                                   "refused after arrival\"}]}");
                        respond_json(c, post_status, NULL, &body);
                } else {
                        if (n_jobs == cap_jobs) {
                                cap_jobs = cap_jobs ? cap_jobs * 2 : 4096;
                                jobs_created = realloc(jobs_created, cap_jobs * sizeof(double));
                                if (!jobs_created) {
                                        perror("realloc");
                                        exit(1);
                                }
                        }
                        jobs_created[n_jobs++] = now;
                        char loc[700];
                        snprintf(loc, sizeof(loc), "Location: /test-environments/%s/jobs/%032llx\r\n", id,
                                 (unsigned long long) n_jobs);
                        job_view(&body, id, n_jobs, now, now, true);
                        respond_json(c, 200, loc, &body);
                }
        } else if (rest && strncmp(rest, "jobs/", 5) == 0 && get && strlen(rest + 5) == 32) {
                unsigned long long num = strtoull(rest + 5, NULL, 16);
                if (num >= 1 && num <= n_jobs) {
                        job_view(&body, id, num, jobs_created[num - 1], now, false);
                        respond_json(c, 200, NULL, &body);
                } else {
                        buf_printf(&body, "{\"success\":false,\"reasons\":[{\"code\":50000020,\"message\":\"no job\"}]}");
                        respond_json(c, 404, NULL, &body);
                }
        } else {
                buf_printf(&body, "{\"message\":\"No resource\"}");
                respond_json(c, 404, NULL, &body);
        }
        free(body.p);
}

static void conn_close(Conn *c) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c->in.p);
        free(c->out.p);
        free(c);
        n_open--;
}

static void conn_update_events(Conn *c) {
        bool want = c->out.n > 0;
        if (want == c->want_out)
                return;
        struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
}

/* Returns false when the connection was closed. */
static bool conn_flush(Conn *c) {
        while (c->out.n > 0) {
                ssize_t k = send(c->fd, c->out.p, c->out.n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        conn_close(c);
                        return false;
                }
                buf_consume(&c->out, (size_t) k);
        }
        if (c->out.n == 0 && c->close_after) {
                conn_close(c);
                return false;
        }
        conn_update_events(c);
        return true;
}

/* Parses and answers every complete request in c->in. */
static void conn_process(Conn *c) {
        for (;;) {
                char *end = c->in.p ? strstr(c->in.p, "\r\n\r\n") : NULL;
                if (!end) {
                        if (c->in.n > 65536)
                                c->close_after = true;
                        return;
                }
                size_t head_len = (size_t) (end - c->in.p) + 4;
                size_t content_length = 0;
                bool close_after = false;
                /* header lines */
                for (char *line = strstr(c->in.p, "\r\n") + 2; line < end;) {
                        char *eol = strstr(line, "\r\n");
                        if (strncasecmp(line, "Content-Length:", 15) == 0)
                                content_length = strtoull(line + 15, NULL, 10);
                        else if (strncasecmp(line, "Connection:", 11) == 0) {
                                const char *v = line + 11;
                                while (*v == ' ')
                                        v++;
                                if (strncasecmp(v, "close", 5) == 0)
                                        close_after = true;
                        }
                        line = eol + 2;
                }
                if (c->in.n < head_len + content_length)
                        return; /* body not complete yet */
                char method[8] = "";
                const char *sp1 = memchr(c->in.p, ' ', head_len);
                const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head_len - (size_t) (sp1 + 1 - c->in.p)) : NULL;
                if (!sp1 || !sp2 || sp1 - c->in.p >= (long) sizeof(method)) {
                        c->close_after = true;
                        Buf b = {};
                        buf_printf(&b, "{\"message\":\"bad request\"}");
                        respond_json(c, 400, NULL, &b);
                        free(b.p);
                        c->in.n = 0;
                        return;
                }
                memcpy(method, c->in.p, (size_t) (sp1 - c->in.p));
                c->close_after = close_after;
                handle(c, method, sp1 + 1, (size_t) (sp2 - sp1 - 1));
                buf_consume(&c->in, head_len + content_length);
                if (c->close_after)
                        return;
        }
}

static void on_readable(Conn *c) {
        for (;;) {
                buf_reserve(&c->in, 16384);
                ssize_t k = recv(c->fd, c->in.p + c->in.n, c->in.cap - c->in.n - 1, 0);
                if (k == 0) {
                        conn_close(c);
                        return;
                }
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        conn_close(c);
                        return;
                }
                c->in.n += (size_t) k;
                c->in.p[c->in.n] = 0;
        }
        conn_process(c);
        conn_flush(c);
}

static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

int main(int argc, char **argv) {
        const char *host = "127.0.0.1", *port_file = NULL;
        int port = 0, backlog = 4096;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v) {
                        fprintf(stderr, "%s needs a value\n", a);
                        return 2;
                }
                if (strcmp(a, "--host") == 0)
                        host = v;
                else if (strcmp(a, "--port") == 0)
                        port = atoi(v);
                else if (strcmp(a, "--port-file") == 0)
                        port_file = v;
                else if (strcmp(a, "--job-seconds") == 0)
                        job_seconds = atof(v);
                else if (strcmp(a, "--post-status") == 0)
                        post_status = atoi(v);
                else if (strcmp(a, "--backlog") == 0)
                        backlog = atoi(v);
                else {
                        fprintf(stderr, "unknown option %s\n", a);
                        return 2;
                }
                i++;
        }

        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
                fprintf(stderr, "bad host %s\n", host);
                return 2;
        }
        if (bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0 || listen(lfd, backlog) < 0) {
                perror("bind/listen");
                return 2;
        }
        socklen_t alen = sizeof(addr);
        getsockname(lfd, (struct sockaddr *) &addr, &alen);
        port = ntohs(addr.sin_port);
        if (port_file) {
                char tmp[4096];
                snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
                FILE *f = fopen(tmp, "w");
                if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0) {
                        perror(port_file);
                        return 2;
                }
        }
        printf("listening on http://%s:%d\n", host, port);
        fflush(stdout);

        epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);

        struct epoll_event events[256];
        while (!stop) {
                int n = epoll_wait(epfd, events, 256, 500);
                for (int i = 0; i < n; i++) {
                        Conn *c = events[i].data.ptr;
                        if (!c) {
                                for (;;) {
                                        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                        if (fd < 0)
                                                break;
                                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                                        c = calloc(1, sizeof(Conn));
                                        c->fd = fd;
                                        struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                                        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                                        n_accepted++;
                                        if (++n_open > max_open)
                                                max_open = n_open;
                                }
                                continue;
                        }
                        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                on_readable(c);
                        else if (events[i].events & EPOLLOUT)
                                conn_flush(c);
                }
        }
        return 0;
}
