/* SPDX-License-Identifier: MIT */
/*
 * Zuora's clock, as far as it has been measured. Zuora stamps its answers
 * (the Date header) and the jobs it creates (createTime) with its own clock,
 * in whole seconds; each stamp was made between the moment our request left
 * and the moment its answer came, so it bounds the offset (Zuora's clock
 * minus ours) from both sides. The estimate is the intersection of those
 * bounds, widened as it ages by the most two healthy clocks drift apart; a
 * stamp outside it means a clock was set, and starts the estimate again.
 *
 * Every comparison of a Zuora time with one of ours goes through here:
 * zclock_to_ours() gives the interval of our clock a Zuora time may stand
 * for. Until anything is measured the interval is Zuora's time plus or
 * minus ZCLOCK_UNMEASURED_USEC. Pure: times in, times out.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* What an unmeasured clock may be off by (the adoption rule's allowance
 * before refreshd measured anything). */
#define ZCLOCK_UNMEASURED_USEC (300 * 1000 * 1000LL)

/* How fast two clocks may drift apart: 100 ppm, far more than NTP allows. */
#define ZCLOCK_DRIFT_PPM 100

typedef struct ZuoraClock {
        bool measured;
        int64_t lo_usec, hi_usec; /* Zuora's clock minus ours is in [lo, hi], µs ... */
        int64_t at_usec;          /* ... as of this time of ours (CLOCK_REALTIME µs) */
} ZuoraClock;

/* A stamp of Zuora's (STAMP_SEC, whole seconds: it may be up to a second
 * later than that) made after our SENT_USEC and before our RECEIVED_USEC.
 * Returns true when it moved the estimate by a clock step (the stamp did not
 * fit what was known). */
bool zclock_observe(ZuoraClock *c, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec);

/* The estimate as of NOW_USEC: the offset (Zuora minus ours) in *ret_offset
 * and how far it may be wrong either way in *ret_uncertainty, µs. */
void zclock_estimate(const ZuoraClock *c, int64_t now_usec, int64_t *ret_offset, int64_t *ret_uncertainty);

/* The interval [*ret_lo, *ret_hi] of our clock (seconds) that Zuora's time
 * T_SEC (whole seconds, as Zuora writes them) may stand for, as of NOW_USEC. */
void zclock_to_ours(const ZuoraClock *c, int64_t t_sec, int64_t now_usec, int64_t *ret_lo, int64_t *ret_hi);

/* Restores an estimate of OFFSET ± UNCERTAINTY µs made at AT_USEC (from the state). */
void zclock_restore(ZuoraClock *c, int64_t offset_usec, int64_t uncertainty_usec, int64_t at_usec);
