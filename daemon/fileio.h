/* SPDX-License-Identifier: MIT */
/*
 * Whole reads and writes on file descriptors: short reads and writes and
 * EINTR are retried, so a caller sees all the bytes or an error.
 */
#pragma once

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Reads up to SIZE bytes into BUF, stopping early only at the end of the
 * file; how many in *ret_n. */
int read_full(int fd, void *buf, size_t size, size_t *ret_n);

/* Reads FD to its end into a new buffer, NUL-terminated after *ret_size
 * bytes. -EFBIG when it holds more than MAX bytes (a regular file larger
 * than that is refused before it is read). */
int read_all(int fd, size_t max, char **ret, size_t *ret_size);

/* Opens PATH (relative to DIRFD, or AT_FDCWD) with FLAGS (O_CLOEXEC and
 * O_NOCTTY added; MODE when it creates it) as a regular file: anything else
 * (a FIFO, a directory, a device) is refused with -EBADFD, without blocking
 * on it. Its status in *ret_st (may be NULL). */
int open_regular(int dirfd, const char *path, int flags, mode_t mode, struct stat *ret_st);

/* Words for an error of these functions: open_regular()'s -EBADFD is "not
 * a regular file", the rest strerror()'s. */
const char *fileio_error(int r);

/* Writes the SIZE bytes at BUF; -EIO if the file takes none. */
int write_all(int fd, const void *buf, size_t size);

/* Writes the SIZE bytes at BUF at OFFSET. */
int pwrite_all(int fd, const void *buf, size_t size, off_t offset);
