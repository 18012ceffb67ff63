/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim-child.h"

const char *sim_path(int argc, char **argv) {
        static char path[4096];
        const char *env = getenv("ZUORA_SIM"), *file = __FILE__, *slash = strrchr(file, '/');

        if (env)
                return env;
        if (argc > 1)
                return argv[1];
        (void) snprintf(path, sizeof(path), "%.*s/../sim/zuora_sim.py", slash ? (int) (slash - file) : 1,
                        slash ? file : ".");
        return path;
}

static int sim_wait_port(Sim *s, const char *port_file) {
        for (unsigned i = 0; i < 1000; i++) {
                FILE *f = fopen(port_file, "re");
                if (f) {
                        unsigned port = 0;
                        int n = fscanf(f, "%u", &port);
                        fclose(f);
                        if (n == 1 && port > 0 && port < 65536)
                                return asprintf(&s->base, "127.0.0.1:%u", port) < 0 ? -ENOMEM : 0;
                }
                if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                        s->pid = -1;
                        return -ECHILD;
                }
                usleep(10000);
        }
        return -ETIMEDOUT;
}

int sim_start(Sim *s, const char *path, const char *dir, const char *name, const char *const *extra) {
        char *port_file = NULL, *log_file = NULL;
        const char *argv[16] = {};
        size_t n = 0;
        int r;

        if (asprintf(&port_file, "%s/%s.port", dir, name) < 0 || asprintf(&log_file, "%s/%s.log", dir, name) < 0)
                return -ENOMEM;
        argv[n++] = "python3";
        argv[n++] = path;
        argv[n++] = "--port-file";
        argv[n++] = port_file;
        argv[n++] = "--log";
        argv[n++] = log_file;
        for (const char *const *e = extra; e && *e && n < sizeof(argv) / sizeof(argv[0]) - 1; e++)
                argv[n++] = *e;

        s->pid = fork();
        if (s->pid < 0)
                r = -errno;
        else if (s->pid == 0) {
                int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (fd >= 0) {
                        (void) dup2(fd, STDIN_FILENO);
                        (void) dup2(fd, STDOUT_FILENO);
                }
                execvp("python3", (char **) argv);
                _exit(127);
        } else
                r = sim_wait_port(s, port_file);
        free(port_file);
        free(log_file);
        return r;
}

void sim_stop(Sim *s) {
        if (s->pid > 0) {
                (void) kill(s->pid, SIGTERM);
                (void) waitpid(s->pid, NULL, 0);
        }
        s->pid = -1;
        free(s->base);
        s->base = NULL;
}

const char *sim_health(Sim *s) {
        static char text[64];
        int status;

        if (s->pid <= 0 || waitpid(s->pid, &status, WNOHANG) != s->pid)
                return "running";
        s->pid = -1;
        if (WIFSIGNALED(status))
                (void) snprintf(text, sizeof(text), "killed by signal %d", WTERMSIG(status));
        else
                (void) snprintf(text, sizeof(text), "exited with status %d", WEXITSTATUS(status));
        return text;
}

static int sim_connect(const Sim *s) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        unsigned port = 0;
        int fd;

        if (!s->base || sscanf(s->base, "127.0.0.1:%u", &port) != 1)
                return -EINVAL;
        a.sin_port = htons((uint16_t) port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int sim_control(const Sim *s, const char *method, const char *path, const char *body, char **ret_body) {
        char *req = NULL, *resp = NULL, *b;
        size_t size = 0, allocated = 0;
        int fd, status = -EIO, len;

        fd = sim_connect(s);
        if (fd < 0)
                return fd;
        len = asprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                       method, path, s->base, body ? strlen(body) : 0, body ?: "");
        if (len < 0 || write(fd, req, (size_t) len) != len)
                goto finish;
        for (;;) {
                if (size + 4096 + 1 > allocated) {
                        allocated = (size + 4096 + 1) * 2;
                        b = realloc(resp, allocated);
                        if (!b)
                                goto finish;
                        resp = b;
                }
                ssize_t n = read(fd, resp + size, allocated - size - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size += (size_t) n;
        }
        if (!resp || sscanf(resp, "HTTP/1.%*d %d", &status) != 1) {
                status = -EIO;
                goto finish;
        }
        resp[size] = 0;
        b = strstr(resp, "\r\n\r\n");
        if (ret_body)
                *ret_body = strdup(b ? b + 4 : "");
finish:
        close(fd);
        free(req);
        free(resp);
        return status;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

int sim_group_start(Sim *s, const char *path, char *dir) {
        if (!mkdtemp(dir)) {
                fprintf(stderr, "cannot make %s: %m\n", dir);
                return -1;
        }
        if (sim_start(s, path, dir, "sim", NULL) < 0) {
                fprintf(stderr, "cannot start the simulator '%s'\n", path);
                return -1;
        }
        return 0;
}

void sim_group_stop(Sim *s, const char *dir) {
        sim_stop(s);
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
