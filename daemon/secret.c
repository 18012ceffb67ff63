/* SPDX-License-Identifier: MIT */
/*
 * Reading and wiping secrets. A secret file is read with one fstat-sized
 * read into a buffer that is wiped on every path; stdio is avoided because
 * its buffers would keep a copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "fileio.h"
#include "macro.h"
#include "secret.h"

#define SECRET_MAX_SIZE 4096

Secret *secret_free(Secret *s) {
        if (!s)
                return NULL;
        if (s->value) {
                explicit_bzero(s->value, s->size);
                free(s->value);
        }
        free(s);
        return NULL;
}

char *secret_string_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}

static int secret_new(const char *data, size_t size, Secret **ret) {
        Secret *s;

        while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r'))
                size--;
        if (size == 0)
                return -ENODATA;
        s = calloc(1, sizeof(Secret));
        if (!s)
                return -ENOMEM;
        s->value = malloc(size + 1);
        if (!s->value) {
                free(s);
                return -ENOMEM;
        }
        memcpy(s->value, data, size);
        s->value[size] = 0;
        s->size = size;
        *ret = s;
        return 0;
}

static int secret_read_file(const char *path, Secret **ret) {
        _cleanup_(closep) int fd = -EBADF;
        char buf[SECRET_MAX_SIZE + 1];
        struct stat st;
        size_t size = 0;
        int r;

        fd = open_regular(AT_FDCWD, path, O_RDONLY, 0, &st);
        if (fd < 0)
                return fd;
        if (st.st_mode & S_IWOTH)
                return -EPERM;
        r = read_full(fd, buf, sizeof(buf), &size);
        if (r < 0) {
                explicit_bzero(buf, sizeof(buf));
                return r;
        }
        if (size > SECRET_MAX_SIZE)
                r = -EFBIG;
        else
                r = secret_new(buf, size, ret);
        explicit_bzero(buf, sizeof(buf));
        return r;
}

char *secret_error_text(const Config *c, int r, bool warning, char *buf, size_t size) {
        const char *what;

        switch (r) {
        case -ENODATA:
                what = "is empty (or holds only line breaks)";
                break;
        case -EFBIG:
                what = "is longer than " STRINGIFY(SECRET_MAX_SIZE) " bytes; a client secret is far shorter";
                break;
        case -EPERM:
                what = "is writable by others; refusing it";
                break;
        case -EBADFD:
                what = "is not a regular file";
                break;
        case -ENOENT:
                what = c->secret_source == SECRET_SOURCE_ENV ? "is not set" : "does not exist";
                break;
        default:
                what = NULL;
        }
        snprintf(
                buf,
                size,
                "%s:%u:%u: %s: '%s': the client secret %s '%s' %s%s",
                c->path,
                c->secret_line,
                c->secret_column,
                warning ? "warning" : "error",
                secret_source_to_string(c->secret_source),
                c->secret_source == SECRET_SOURCE_ENV ? "in the environment variable" : "in",
                c->secret_name,
                what ?: "cannot be read: ",
                what ? "" : strerror(-r));
        return buf;
}

int secret_read(const Config *c, Secret **ret) {
        return secret_read_from(c->secret_source, c->secret_name, c->secret_path, ret);
}

int secret_read_from(SecretSource source, const char *name, const char *path, Secret **ret) {
        /* Whatever happens next, no core dump of this process may hold it. */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

        switch (source) {
        case SECRET_SOURCE_FILE:
        case SECRET_SOURCE_CREDENTIAL:
                return secret_read_file(path, ret);
        case SECRET_SOURCE_ENV: {
                const char *v = getenv(name);
                if (!v)
                        return -ENOENT;
                return secret_new(v, strlen(v), ret);
        }
        case _SECRET_SOURCE_MAX:
        case _SECRET_SOURCE_INVALID:
                break;
        }
        return -EINVAL;
}
