/* SPDX-License-Identifier: MIT */
#include "zclock.h"

#define USEC 1000000LL

/* How much C's bounds widen by NOW_USEC, from drift since they were set. */
static int64_t drift_usec(const ZuoraClock *c, int64_t now_usec) {
        int64_t elapsed = now_usec > c->at_usec ? now_usec - c->at_usec : c->at_usec - now_usec;
        return elapsed / (1000000 / ZCLOCK_DRIFT_PPM);
}

bool zclock_observe(ZuoraClock *c, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec) {
        /* The stamp S was read from Zuora's clock at some instant t of ours in
         * [sent, received]; Zuora's clock then showed S to S + 1 s. So the
         * offset (Zuora minus ours) is in [S - received, S + 1 s - sent]. */
        int64_t lo = stamp_sec * USEC - received_usec, hi = stamp_sec * USEC + USEC - sent_usec;
        bool stepped = false;

        if (received_usec < sent_usec)
                return false; /* our own clock went back meanwhile: no bound at all */
        if (c->measured) {
                int64_t d = drift_usec(c, received_usec), old_lo = c->lo_usec - d, old_hi = c->hi_usec + d;
                if (lo <= old_hi && hi >= old_lo) {
                        /* Both hold: the offset is in both. */
                        lo = lo > old_lo ? lo : old_lo;
                        hi = hi < old_hi ? hi : old_hi;
                } else
                        stepped = true; /* one of the clocks was set: what was known is void */
        }
        *c = (ZuoraClock) { .measured = true, .lo_usec = lo, .hi_usec = hi, .at_usec = received_usec };
        return stepped;
}

void zclock_estimate(const ZuoraClock *c, int64_t now_usec, int64_t *ret_offset, int64_t *ret_uncertainty) {
        if (!c || !c->measured) {
                *ret_offset = 0;
                *ret_uncertainty = ZCLOCK_UNMEASURED_USEC;
                return;
        }
        int64_t d = drift_usec(c, now_usec);
        *ret_offset = c->lo_usec + (c->hi_usec - c->lo_usec) / 2;
        *ret_uncertainty = (c->hi_usec - c->lo_usec) / 2 + d;
}

void zclock_to_ours(const ZuoraClock *c, int64_t t_sec, int64_t now_usec, int64_t *ret_lo, int64_t *ret_hi) {
        int64_t offset, u;

        zclock_estimate(c, now_usec, &offset, &u);
        /* Zuora's T .. T + 1 s, less the offset's interval; rounded outwards. */
        int64_t lo = t_sec * USEC - offset - u, hi = t_sec * USEC + USEC - offset + u;
        *ret_lo = lo >= 0 ? lo / USEC : -((-lo + USEC - 1) / USEC);
        *ret_hi = hi >= 0 ? (hi + USEC - 1) / USEC : -(-hi / USEC);
}

void zclock_restore(ZuoraClock *c, int64_t offset_usec, int64_t uncertainty_usec, int64_t at_usec) {
        *c = (ZuoraClock) {
                .measured = true,
                .lo_usec = offset_usec - uncertainty_usec,
                .hi_usec = offset_usec + uncertainty_usec,
                .at_usec = at_usec,
        };
}
