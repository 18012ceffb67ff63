/* SPDX-License-Identifier: MIT */
/*
 * A timer queue: many owners' timers on one clock and one sd-event time
 * source. A binary min-heap of (time, owner) entries keeps the earliest on
 * top, and the source is armed for it; at 10,000 environments that is 24
 * bytes each instead of an event source (and its description) each. The
 * manager keeps two: the environments' slots on CLOCK_REALTIME, their polls
 * and backoffs on CLOCK_BOOTTIME.
 *
 * Each owner keeps a TimerQueueIndex the queue updates as entries move, so
 * re-arming and disarming an owner's entry cost O(log n). When the time
 * comes, the entry leaves the queue before its callback runs, which may arm
 * it again. Times are absolute on the queue's clock: on CLOCK_REALTIME a
 * clock step moves every due time with it, as the kernel does for absolute
 * wall-clock timers.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <time.h>

#define TIMERQ_NONE UINT32_MAX

/* Where an owner's entry sits in the heap, or TIMERQ_NONE when not queued.
 * 32 bits: one per environment, in every Env. */
typedef uint32_t TimerQueueIndex;

typedef struct TimerQueue TimerQueue;

/* Called for an entry whose time came, after it left the queue. */
typedef void (*TimerQueueFunc)(void *owner);

int timerq_new(
        sd_event *event, clockid_t clock, const char *description, TimerQueueFunc func, TimerQueue **ret);
TimerQueue *timerq_free(TimerQueue *q);

/* Queues OWNER for USEC (µs on the queue's clock), or moves its entry there. */
int timerq_arm(TimerQueue *q, TimerQueueIndex *index, uint64_t usec, void *owner);

/* Takes OWNER's entry out of the queue, if it is in. */
void timerq_disarm(TimerQueue *q, TimerQueueIndex *index);

/* How many entries are queued. */
size_t timerq_size(const TimerQueue *q);
