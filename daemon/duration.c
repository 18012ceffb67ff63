/* SPDX-License-Identifier: MIT */
/*
 * The config file's duration syntax. Units are matched longest first so that
 * "ms" is never read as minutes followed by garbage.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "macro.h"

static const struct {
        const char *suffix;
        uint64_t usec;
} units[] = {
        /* Largest first: duration_format() walks this order. */
        { "w", 7 * 24 * 3600 * USEC_PER_SEC },
        { "d", 24 * 3600 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "ms", USEC_PER_MSEC }, /* before "m" when parsing */
        { "m", 60 * USEC_PER_SEC },
        { "s", USEC_PER_SEC },
};

int duration_parse(const char *s, uint64_t *ret_usec, size_t *reterr_offset) {
        const char *p = s;
        uint64_t total = 0;

        if (!*p) {
                *reterr_offset = 0;
                return -EINVAL;
        }
        while (*p) {
                const char *start = p;
                uint64_t v = 0;
                size_t i;

                if (*p < '0' || *p > '9') {
                        *reterr_offset = p - s;
                        return -EINVAL;
                }
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (v > (UINT64_MAX - 9) / 10) {
                                *reterr_offset = start - s;
                                return -ERANGE;
                        }
                        v = v * 10 + (uint64_t) (*p - '0');
                }
                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (strncmp(p, units[i].suffix, strlen(units[i].suffix)) == 0)
                                break;
                if (i == ELEMENTSOF(units)) {
                        *reterr_offset = p - s;
                        return -EINVAL;
                }
                if (v > UINT64_MAX / units[i].usec || total > UINT64_MAX - v * units[i].usec) {
                        *reterr_offset = start - s;
                        return -ERANGE;
                }
                total += v * units[i].usec;
                p += strlen(units[i].suffix);
        }
        *ret_usec = total;
        return 0;
}

char *duration_format(uint64_t usec, char buf[static DURATION_MAX]) {
        /* Days at most: "28d" reads better than "4w". */
        static const size_t order[] = { 1, 2, 4, 5, 3 }; /* d h m s ms */
        size_t len = 0;

        buf[0] = 0;
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                uint64_t u = units[order[k]].usec, n = usec / u;
                if (n == 0)
                        continue;
                len += snprintf(
                        buf + len,
                        DURATION_MAX - len,
                        "%llu%s",
                        (unsigned long long) n,
                        units[order[k]].suffix);
                usec -= n * u;
        }
        if (len == 0)
                snprintf(buf, DURATION_MAX, "0s");
        return buf;
}
