/* SPDX-License-Identifier: MIT */
/*
 * The intent log's records and file. A record, in native byte order:
 *
 *   0  "RFDI"             4  version (u32, 1)
 *   8  log_id (u64)      16  seq (u64)
 *   24 slot (i64)        32  sent_at (i64)
 *   40 name, id, track_id lengths (u16 each; track_id 0xffff: none), 0 (u16)
 *   48 name NUL id NUL [track_id NUL]
 *   508 CRC-32C of bytes 0 to 507 (u32)
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "intentlog.h"
#include "macro.h"

#define RECORD_MAGIC "RFDI"
#define RECORD_VERSION 1
#define RECORD_HEADER 48
#define RECORD_CRC (INTENT_LOG_RECORD_SIZE - 4)
#define TRACK_NONE 0xffff
#define LOG_SIZE ((off_t) INTENT_LOG_RECORDS * INTENT_LOG_RECORD_SIZE)
#define READ_CHUNK 128 /* records per read() during a replay */

/* CRC-32C (Castagnoli), reflected, four bits at a time. */
static uint32_t crc32c(const uint8_t *p, size_t n) {
        static const uint32_t table[16] = {
                0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
                0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
                0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
        };
        uint32_t c = 0xffffffff;

        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                c = (c >> 4) ^ table[c & 15];
                c = (c >> 4) ^ table[c & 15];
        }
        return ~c;
}

static void put_u16(uint8_t *p, uint16_t v) {
        memcpy(p, &v, sizeof(v));
}

static uint16_t get_u16(const uint8_t *p) {
        uint16_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

int intent_record_encode(const IntentRecord *r, uint8_t buf[INTENT_LOG_RECORD_SIZE]) {
        uint32_t version = RECORD_VERSION, crc;
        size_t nl, il, tl, at = RECORD_HEADER;

        assert(r);
        if (!r->name || !r->id || !*r->name || !*r->id || r->log_id == 0)
                return -EINVAL;
        nl = strlen(r->name);
        il = strlen(r->id);
        tl = r->track_id ? strlen(r->track_id) : 0;
        if (nl + 1 + il + 1 + (r->track_id ? tl + 1 : 0) > RECORD_CRC - RECORD_HEADER)
                return -E2BIG;

        memset(buf, 0, INTENT_LOG_RECORD_SIZE);
        memcpy(buf, RECORD_MAGIC, 4);
        memcpy(buf + 4, &version, 4);
        memcpy(buf + 8, &r->log_id, 8);
        memcpy(buf + 16, &r->seq, 8);
        memcpy(buf + 24, &r->slot, 8);
        memcpy(buf + 32, &r->sent_at, 8);
        put_u16(buf + 40, (uint16_t) nl);
        put_u16(buf + 42, (uint16_t) il);
        put_u16(buf + 44, r->track_id ? (uint16_t) tl : TRACK_NONE);
        memcpy(buf + at, r->name, nl + 1);
        at += nl + 1;
        memcpy(buf + at, r->id, il + 1);
        at += il + 1;
        if (r->track_id)
                memcpy(buf + at, r->track_id, tl + 1);
        crc = crc32c(buf, RECORD_CRC);
        memcpy(buf + RECORD_CRC, &crc, 4);
        return 0;
}

/* The string of length LEN at *AT, NUL-terminated with no NUL inside, or NULL. */
static const char *take_string(const uint8_t *buf, size_t *at, size_t len) {
        const char *s = (const char *) buf + *at;

        if (*at + len + 1 > RECORD_CRC || memchr(s, 0, len + 1) != s + len)
                return NULL;
        *at += len + 1;
        return s;
}

int intent_record_decode(const uint8_t buf[INTENT_LOG_RECORD_SIZE], IntentRecord *ret) {
        IntentRecord r = {};
        uint32_t version, crc;
        uint16_t tl;
        size_t at = RECORD_HEADER;

        assert(ret);
        if (memcmp(buf, RECORD_MAGIC, 4) != 0)
                return -EBADMSG;
        memcpy(&crc, buf + RECORD_CRC, 4);
        if (crc != crc32c(buf, RECORD_CRC))
                return -EBADMSG;
        memcpy(&version, buf + 4, 4);
        if (version != RECORD_VERSION)
                return -EBADMSG;
        memcpy(&r.log_id, buf + 8, 8);
        memcpy(&r.seq, buf + 16, 8);
        memcpy(&r.slot, buf + 24, 8);
        memcpy(&r.sent_at, buf + 32, 8);
        r.name = take_string(buf, &at, get_u16(buf + 40));
        r.id = r.name ? take_string(buf, &at, get_u16(buf + 42)) : NULL;
        if (!r.id || !*r.name || !*r.id || r.log_id == 0 || r.seq == 0)
                return -EBADMSG;
        tl = get_u16(buf + 44);
        if (tl != TRACK_NONE && !(r.track_id = take_string(buf, &at, tl)))
                return -EBADMSG;
        *ret = r;
        return 0;
}

/* Writes zeros from FROM to the log's full size and flushes the file and
 * DIRFD (the file may be new). */
static int fill(int fd, int dirfd, off_t from) {
        static const uint8_t zeros[64 * 1024];

        for (off_t at = from; at < LOG_SIZE; at += sizeof(zeros)) {
                size_t n = LOG_SIZE - at < (off_t) sizeof(zeros) ? (size_t) (LOG_SIZE - at) : sizeof(zeros);
                int r = pwrite_all(fd, zeros, n, at);
                if (r < 0)
                        return r;
        }
        if (fsync(fd) < 0 || fsync(dirfd) < 0)
                return -errno;
        return 0;
}

int intent_log_open(const char *dir, int *ret_fd) {
        _cleanup_(closep) int dirfd = -EBADF, fd = -EBADF;
        struct stat st;
        int r;

        assert(dir);
        assert(ret_fd);
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        fd = open_regular(dirfd, INTENT_LOG_FILE_NAME, O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &st);
        if (fd < 0)
                return fd;
        if (st.st_size < LOG_SIZE) {
                /* A partial record at the end is rewritten too: it is damage. */
                r = fill(fd, dirfd, st.st_size / INTENT_LOG_RECORD_SIZE * INTENT_LOG_RECORD_SIZE);
                if (r < 0) {
                        /* A full disk keeps the room it had, for state.json. */
                        if (st.st_size == 0)
                                (void) unlinkat(dirfd, INTENT_LOG_FILE_NAME, 0);
                        else
                                (void) ftruncate(fd, st.st_size);
                        return r;
                }
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int intent_log_put(int fd, const IntentRecord *r) {
        uint8_t buf[INTENT_LOG_RECORD_SIZE];
        int k = intent_record_encode(r, buf);

        if (k < 0)
                return k;
        return pwrite_all(
                fd, buf, sizeof(buf), (off_t) (r->seq % INTENT_LOG_RECORDS) * INTENT_LOG_RECORD_SIZE);
}

int intent_log_sync(int fd) {
        return fdatasync(fd) < 0 ? -errno : 0;
}

/* ---- replay ---- */

typedef struct Found {
        uint8_t (*records)[INTENT_LOG_RECORD_SIZE];
        size_t n, allocated;
} Found;

static int cmp_seq(const void *a, const void *b) {
        uint64_t x, y;

        memcpy(&x, (const uint8_t *) a + 16, 8);
        memcpy(&y, (const uint8_t *) b + 16, 8);
        return x < y ? -1 : x > y;
}

/* Keeps the records of CHUNK (N of them) that belong to LOG_ID and are newer than AFTER_SEQ. */
static int collect(Found *f, const uint8_t *chunk, size_t n, uint64_t log_id, uint64_t after_seq) {
        for (size_t i = 0; i < n; i++) {
                const uint8_t *rec = chunk + i * INTENT_LOG_RECORD_SIZE;
                IntentRecord r;

                if (intent_record_decode(rec, &r) < 0 || r.log_id != log_id || r.seq <= after_seq)
                        continue;
                if (GROW(f->records, f->allocated, f->n, 16) < 0)
                        return -ENOMEM;
                memcpy(f->records[f->n++], rec, INTENT_LOG_RECORD_SIZE);
        }
        return 0;
}

int intent_log_replay(
        const char *dir,
        uint64_t log_id,
        uint64_t after_seq,
        int (*apply)(const IntentRecord *r, void *userdata),
        void *userdata) {
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ uint8_t *chunk = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;
        Found f = {};
        int r = 0;

        assert(dir);
        assert(apply);
        if (asprintf(&path, "%s/%s", dir, INTENT_LOG_FILE_NAME) < 0)
                return -ENOMEM;
        fd = open_regular(AT_FDCWD, path, O_RDONLY, 0, &st);
        if (fd < 0)
                return fd == -ENOENT ? 0 : fd;
        chunk = malloc(READ_CHUNK * INTENT_LOG_RECORD_SIZE);
        if (!chunk)
                return -ENOMEM;
        for (size_t read_records = 0; read_records < INTENT_LOG_RECORDS && r >= 0;) {
                size_t n = 0;
                r = read_full(fd, chunk, READ_CHUNK * INTENT_LOG_RECORD_SIZE, &n);
                if (r < 0 || n < INTENT_LOG_RECORD_SIZE)
                        break;
                n /= INTENT_LOG_RECORD_SIZE;
                r = collect(&f, chunk, n, log_id, after_seq);
                read_records += n;
        }
        if (r >= 0 && f.n > 0)
                qsort(f.records, f.n, INTENT_LOG_RECORD_SIZE, cmp_seq);
        for (size_t i = 0; i < f.n && r >= 0; i++) {
                IntentRecord rec;
                if (intent_record_decode(f.records[i], &rec) >= 0)
                        r = apply(&rec, userdata);
        }
        free(f.records);
        return r < 0 ? r : 0;
}
