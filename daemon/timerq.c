/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "macro.h"
#include "timerq.h"

typedef struct Entry {
        uint64_t usec;
        void *owner;
        TimerQueueIndex *index; /* the owner's, kept equal to the entry's place */
} Entry;

struct TimerQueue {
        sd_event_source *timer;
        clockid_t clock;
        TimerQueueFunc func;
        Entry *heap;
        size_t n, allocated;
};

static void place(TimerQueue *q, size_t i, Entry e) {
        q->heap[i] = e;
        *e.index = (TimerQueueIndex) i;
}

static void sift_up(TimerQueue *q, size_t i) {
        Entry e = q->heap[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (q->heap[parent].usec <= e.usec)
                        break;
                place(q, i, q->heap[parent]);
                i = parent;
        }
        place(q, i, e);
}

static void sift_down(TimerQueue *q, size_t i) {
        Entry e = q->heap[i];

        for (;;) {
                size_t child = 2 * i + 1;
                if (child >= q->n)
                        break;
                if (child + 1 < q->n && q->heap[child + 1].usec < q->heap[child].usec)
                        child++;
                if (e.usec <= q->heap[child].usec)
                        break;
                place(q, i, q->heap[child]);
                i = child;
        }
        place(q, i, e);
}

/* Removes the entry at I; the last one takes its place, and moves up or
 * down from there (never both). */
static void remove_at(TimerQueue *q, size_t i) {
        TimerQueueIndex *moved;

        *q->heap[i].index = TIMERQ_NONE;
        if (i == --q->n)
                return;
        moved = q->heap[q->n].index;
        place(q, i, q->heap[q->n]);
        sift_down(q, i);
        if (*moved == i)
                sift_up(q, i);
}

/* Arms the one timer for the top of the heap, or turns it off. */
static int rearm(TimerQueue *q) {
        int r;

        if (q->n == 0)
                return sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
        r = sd_event_source_set_time(q->timer, q->heap[0].usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
}

static int timerq_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        TimerQueue *q = userdata;
        uint64_t now;

        if (sd_event_now(sd_event_source_get_event(s), q->clock, &now) < 0)
                now = usec;
        /* Each callback may queue its owner again, even for a time already
         * past: it then fires in this same loop, as a due time should. */
        while (q->n > 0 && q->heap[0].usec <= now) {
                void *owner = q->heap[0].owner;
                remove_at(q, 0);
                q->func(owner);
        }
        (void) rearm(q);
        return 0;
}

int timerq_new(
        sd_event *event, clockid_t clock, const char *description, TimerQueueFunc func, TimerQueue **ret) {
        TimerQueue *q;
        int r;

        q = calloc(1, sizeof(TimerQueue));
        if (!q)
                return -ENOMEM;
        q->func = func;
        q->clock = clock;
        /* Accuracy 1 µs: sd-event's default of 0 means a 250 ms window. */
        r = sd_event_add_time(event, &q->timer, clock, 0, 1, timerq_on_timer, q);
        if (r < 0) {
                free(q);
                return r;
        }
        (void) sd_event_source_set_description(q->timer, description);
        r = sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
        if (r < 0) {
                timerq_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

TimerQueue *timerq_free(TimerQueue *q) {
        if (!q)
                return NULL;
        for (size_t i = 0; i < q->n; i++)
                *q->heap[i].index = TIMERQ_NONE;
        sd_event_source_disable_unref(q->timer);
        free(q->heap);
        free(q);
        return NULL;
}

int timerq_arm(TimerQueue *q, TimerQueueIndex *index, uint64_t usec, void *owner) {
        if (*index != TIMERQ_NONE) {
                size_t i = *index;
                q->heap[i].usec = usec;
                q->heap[i].owner = owner;
                sift_up(q, i);
                sift_down(q, *index);
        } else {
                if (q->n >= TIMERQ_NONE)
                        return -E2BIG;
                if (GROW(q->heap, q->allocated, q->n, 64) < 0)
                        return -ENOMEM;
                q->heap[q->n] = (Entry) { .usec = usec, .owner = owner, .index = index };
                *index = (TimerQueueIndex) q->n;
                sift_up(q, q->n++);
        }
        return *index == 0 ? rearm(q) : 0;
}

void timerq_disarm(TimerQueue *q, TimerQueueIndex *index) {
        bool top;

        if (*index == TIMERQ_NONE)
                return;
        top = *index == 0;
        remove_at(q, *index);
        if (top)
                (void) rearm(q);
}

size_t timerq_size(const TimerQueue *q) {
        return q->n;
}
