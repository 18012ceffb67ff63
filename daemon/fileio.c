/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

int open_regular(int dirfd, const char *path, int flags, mode_t mode, struct stat *ret_st) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;

        /* O_NONBLOCK: a FIFO would block the open itself; it is dropped after. */
        fd = openat(dirfd, path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
                return -errno;
        if (ret_st)
                *ret_st = st;
        return TAKE_FD(fd);
}

const char *fileio_error(int r) {
        return r == -EBADFD ? "not a regular file" : strerror(-r);
}

int read_full(int fd, void *buf, size_t size, size_t *ret_n) {
        size_t got = 0;

        while (got < size) {
                ssize_t n = read(fd, (uint8_t *) buf + got, size - got);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        *ret_n = got;
        return 0;
}

int read_all(int fd, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > max)
                return -EFBIG;

        /* Room for one byte more than the file has, so that the first read() can see the end. */
        for (;;) {
                size_t want = alloc > 0             ? alloc * 2
                              : S_ISREG(st.st_mode) ? (size_t) st.st_size + 1
                                                    : 4096,
                       n;
                char *b;
                int r;

                if (alloc > max)
                        return -EFBIG;
                if (want > max + 1)
                        want = max + 1;
                b = realloc(buf, want + 1);
                if (!b)
                        return -ENOMEM;
                buf = b;
                alloc = want;
                r = read_full(fd, buf + size, alloc - size, &n);
                if (r < 0)
                        return r;
                size += n;
                if (size < alloc)
                        break;
        }
        if (size > max)
                return -EFBIG;
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* write(), or pwrite() at OFFSET when it is not negative, until all is written. */
static int write_loop(int fd, const void *buf, size_t size, off_t offset) {
        while (size > 0) {
                ssize_t n = offset < 0 ? write(fd, buf, size) : pwrite(fd, buf, size, offset);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                buf = (const uint8_t *) buf + n;
                size -= (size_t) n;
                if (offset >= 0)
                        offset += n;
        }
        return 0;
}

int write_all(int fd, const void *buf, size_t size) {
        return write_loop(fd, buf, size, -1);
}

int pwrite_all(int fd, const void *buf, size_t size, off_t offset) {
        return offset < 0 ? -EINVAL : write_loop(fd, buf, size, offset);
}
