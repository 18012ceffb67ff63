/* SPDX-License-Identifier: MIT */
/*
 * The timer queue: a random mix of arms, re-arms and disarms checked against
 * a plain array after every step (what is queued, for when, and the owners'
 * indexes), then the queue on a real sd-event loop: due entries fire in time
 * order, each once, an entry re-armed from its own callback for a past time
 * fires in the same turn, a disarmed one never fires, and the one timer
 * follows the top of the heap.
 *
 * Callbacks only record; asserts run on the test's own stack (cmocka's
 * failures longjmp and must not cross sd-event's dispatch).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timerq.h"

#define N_OWNERS 300

typedef struct Owner {
        TimerQueueIndex index;
        uint64_t usec; /* the reference: what it was armed for, or 0 */
        int fired;
        int rearm_times; /* re-arm itself from its callback this many times */
} Owner;

static Owner owners[N_OWNERS];
static int order[4 * N_OWNERS], n_order;
static TimerQueue *queue;

static void on_slot(void *owner) {
        Owner *o = owner;

        o->fired++;
        order[n_order++] = (int) (o - owners);
        if (o->rearm_times > 0) {
                o->rearm_times--;
                (void) timerq_arm(queue, &o->index, 1, o); /* long past: due again now */
        }
}

static void reset_owners(void) {
        for (int i = 0; i < N_OWNERS; i++)
                owners[i] = (Owner) { .index = TIMERQ_NONE };
        n_order = 0;
}

static uint64_t now_on(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Every owner the reference says is queued is in the queue at its index,
 * and no other is. */
static void check_against_reference(void) {
        size_t queued = 0;

        for (int i = 0; i < N_OWNERS; i++) {
                if (owners[i].usec == 0) {
                        assert_int_equal(owners[i].index, TIMERQ_NONE);
                        continue;
                }
                assert_int_not_equal(owners[i].index, TIMERQ_NONE);
                queued++;
        }
        assert_int_equal(timerq_size(queue), queued);
}

static void test_random_operations_keep_the_reference(void **unused) {
        sd_event *ev = NULL;
        unsigned seed = (unsigned) time(NULL);

        printf("seed %u\n", seed);
        srand(seed);
        assert_int_equal(sd_event_new(&ev), 0);
        assert_int_equal(timerq_new(ev, CLOCK_REALTIME, "test", on_slot, &queue), 0);
        reset_owners();
        uint64_t far = now_on(CLOCK_REALTIME) + 3600ULL * 1000000;
        for (int step = 0; step < 20000; step++) {
                Owner *o = &owners[rand() % N_OWNERS];
                if (rand() % 3 == 0) {
                        timerq_disarm(queue, &o->index);
                        o->usec = 0;
                } else {
                        o->usec = far + (uint64_t) (rand() % 1000);
                        assert_int_equal(timerq_arm(queue, &o->index, o->usec, o), 0);
                }
                check_against_reference();
        }
        /* Everything queued fires in time order (ties in any order), once. */
        for (int i = 0; i < N_OWNERS; i++)
                if (owners[i].usec != 0) {
                        uint64_t past = owners[i].usec - far + 1; /* keeps their order, all due */
                        owners[i].usec = past;
                        assert_int_equal(timerq_arm(queue, &owners[i].index, past, &owners[i]), 0);
                }
        size_t expected = timerq_size(queue);
        assert_int_equal(sd_event_run(ev, 1000000), 1);
        assert_int_equal((size_t) n_order, expected);
        for (int k = 1; k < n_order; k++)
                assert_true(owners[order[k - 1]].usec <= owners[order[k]].usec);
        for (int i = 0; i < N_OWNERS; i++) {
                assert_int_equal(owners[i].fired, owners[i].usec != 0 ? 1 : 0);
                assert_int_equal(owners[i].index, TIMERQ_NONE);
        }
        assert_int_equal(timerq_size(queue), 0);
        queue = timerq_free(queue);
        sd_event_unref(ev);
}

static void loop_fires_due_entries_in_order(clockid_t clock) {
        sd_event *ev = NULL;
        uint64_t t0 = now_on(clock);

        assert_int_equal(sd_event_new(&ev), 0);
        assert_int_equal(timerq_new(ev, clock, "test", on_slot, &queue), 0);
        reset_owners();
        /* 0 at +30 ms, 1 at +10 ms (re-arms itself twice, for a past time),
         * 2 at +20 ms then disarmed, 3 at +20 ms then moved to +5 ms. */
        assert_int_equal(timerq_arm(queue, &owners[0].index, t0 + 30000, &owners[0]), 0);
        assert_int_equal(timerq_arm(queue, &owners[1].index, t0 + 10000, &owners[1]), 0);
        owners[1].rearm_times = 2;
        assert_int_equal(timerq_arm(queue, &owners[2].index, t0 + 20000, &owners[2]), 0);
        assert_int_equal(timerq_arm(queue, &owners[3].index, t0 + 20000, &owners[3]), 0);
        timerq_disarm(queue, &owners[2].index);
        timerq_disarm(queue, &owners[2].index); /* twice is harmless */
        assert_int_equal(timerq_arm(queue, &owners[3].index, t0 + 5000, &owners[3]), 0);

        while (timerq_size(queue) > 0)
                assert_true(sd_event_run(ev, 1000000) >= 0);
        uint64_t elapsed = now_on(clock) - t0;

        int want[] = { 3, 1, 1, 1, 0 };
        assert_int_equal(n_order, 5);
        for (int k = 0; k < 5; k++)
                assert_int_equal(order[k], want[k]);
        assert_int_equal(owners[2].fired, 0);
        assert_true(elapsed >= 30000); /* not early */
        assert_true(elapsed < 2000000); /* and the timer followed the top */
        /* An empty queue leaves the loop nothing to wake for. */
        assert_int_equal(sd_event_run(ev, 50000), 0);
        queue = timerq_free(queue);
        sd_event_unref(ev);
}

static void test_loop_realtime(void **unused) {
        loop_fires_due_entries_in_order(CLOCK_REALTIME);
}

static void test_loop_boottime(void **unused) {
        loop_fires_due_entries_in_order(CLOCK_BOOTTIME);
}

static void test_free_with_entries_clears_owners(void **unused) {
        sd_event *ev = NULL;

        assert_int_equal(sd_event_new(&ev), 0);
        assert_int_equal(timerq_new(ev, CLOCK_REALTIME, "test", on_slot, &queue), 0);
        reset_owners();
        for (int i = 0; i < 10; i++)
                assert_int_equal(timerq_arm(queue, &owners[i].index, now_on(CLOCK_REALTIME) + 60000000, &owners[i]), 0);
        queue = timerq_free(queue);
        for (int i = 0; i < 10; i++)
                assert_int_equal(owners[i].index, TIMERQ_NONE);
        sd_event_unref(ev);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_random_operations_keep_the_reference),
                cmocka_unit_test(test_loop_realtime),
                cmocka_unit_test(test_loop_boottime),
                cmocka_unit_test(test_free_with_entries_clears_owners),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
