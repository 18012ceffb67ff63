/* SPDX-License-Identifier: MIT */
/*
 * The slot queue: every environment's next slot on one CLOCK_REALTIME
 * timer. A binary min-heap of (time, owner) entries keeps the earliest on
 * top, and one sd-event time source is armed for it; at 10,000
 * environments that is 24 bytes each instead of an event source each.
 *
 * Each owner keeps a SlotQueueIndex the queue updates as entries move, so
 * re-arming and disarming an owner's entry cost O(log n). When the time
 * comes, the entry leaves the queue before its callback runs, which may arm
 * it again. The wall clock is absolute here: a clock step moves every due
 * time with it, as the kernel does for absolute CLOCK_REALTIME timers.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define SLOTQ_NONE SIZE_MAX

/* Where an owner's entry sits in the heap, or SLOTQ_NONE when not queued. */
typedef size_t SlotQueueIndex;

typedef struct SlotQueue SlotQueue;

/* Called for an entry whose time came, after it left the queue. */
typedef void (*SlotQueueFunc)(void *owner);

int slotq_new(sd_event *event, SlotQueueFunc func, SlotQueue **ret);
SlotQueue *slotq_free(SlotQueue *q);

/* Queues OWNER for USEC (CLOCK_REALTIME µs), or moves its entry there. */
int slotq_arm(SlotQueue *q, SlotQueueIndex *index, uint64_t usec, void *owner);

/* Takes OWNER's entry out of the queue, if it is in. */
void slotq_disarm(SlotQueue *q, SlotQueueIndex *index);

/* How many entries are queued. */
size_t slotq_size(const SlotQueue *q);
