/* SPDX-License-Identifier: MIT */
/*
 * The intent log: DIR/intents, a ring of fixed-size records, each saying
 * "the POST for this environment's slot may be sent". state.json holds the
 * same intent too, but replacing state.json costs two flushes and a rename
 * (about 0.5-1 ms on a virtio disk), and it sits between a slot and its
 * POST. A record is written in place into a file whose blocks already
 * exist, with one fdatasync(): no metadata changes, about 0.1 ms.
 *
 * Each record carries the id of the log generation it belongs to and a
 * sequence number; state.json names the generation and the last sequence
 * number it covers, so only records newer than the state.json on disk are
 * replayed (state.c). A record is checked by a CRC-32C: a torn write (the
 * process or the machine died inside it) fails the check and is ignored,
 * which is right, since its POST cannot have left before the flush.
 * Records are 512 bytes, one sector each, at offsets that are multiples of
 * 512, so a torn write never touches a neighbour. Native byte order: the
 * file never leaves the machine.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INTENT_LOG_FILE_NAME "intents"
#define INTENT_LOG_RECORD_SIZE 512
#define INTENT_LOG_RECORDS 1024 /* the ring: 512 KiB */

typedef struct IntentRecord {
        uint64_t log_id; /* the generation; never 0 */
        uint64_t seq;    /* from 1; the record lives at slot seq % INTENT_LOG_RECORDS */
        int64_t slot;
        int64_t sent_at;
        const char *name; /* borrowed; decoded ones point into the record's buffer */
        const char *id;
        const char *track_id; /* may be NULL */
} IntentRecord;

/* Encodes R into BUF. -E2BIG when the three strings do not fit (names are
 * at most 64 bytes and track ids 64, so only an id of hundreds of bytes
 * does), -EINVAL for a record without name, id or generation. */
int intent_record_encode(const IntentRecord *r, uint8_t buf[INTENT_LOG_RECORD_SIZE]);

/* Decodes BUF into *RET (its strings point into BUF). -EBADMSG for
 * anything that is not a whole record: zeros, a torn write, damage. */
int intent_record_decode(const uint8_t buf[INTENT_LOG_RECORD_SIZE], IntentRecord *ret);

/* Opens DIR/intents for writing, creating it at its full size with every
 * block written (zeros) and flushed, so that a record's write later changes
 * no metadata. The fd in *RET_FD is the caller's. When the file cannot be
 * made whole (a full disk), it is left as it was, or removed if new. */
int intent_log_open(const char *dir, int *ret_fd);

/* Writes R at its place in the ring. Not durable until intent_log_sync(). */
int intent_log_put(int fd, const IntentRecord *r);

/* Makes every record put so far durable. */
int intent_log_sync(int fd);

/* Calls APPLY, in the order of their sequence numbers, for the records of
 * generation LOG_ID newer than AFTER_SEQ in DIR/intents. A missing file has
 * none. A negative return of APPLY stops the replay and is returned. */
int intent_log_replay(
        const char *dir,
        uint64_t log_id,
        uint64_t after_seq,
        int (*apply)(const IntentRecord *r, void *userdata),
        void *userdata);
