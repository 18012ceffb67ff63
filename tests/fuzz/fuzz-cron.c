/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the schedule parser: any text either parses into a
 * spec whose next fires are strictly increasing (its warnings, if any,
 * pointing inside the text), or is refused with a message that points
 * inside the text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        CronSpec *s = NULL;
        CronError err;
        CronWarnings warnings = {};
        char *expr;

        if (size > 512)
                return 0;
        expr = strndup((const char *) data, size);
        if (!expr)
                return 0;
        if (cron_parse_warn(expr, &s, &err, &warnings) < 0) {
                if (err.offset > strlen(expr))
                        abort();
        } else {
                if (warnings.n > CRON_WARNINGS_MAX)
                        abort();
                for (size_t i = 0; i < warnings.n; i++)
                        if (warnings.items[i].offset + warnings.items[i].length > strlen(expr) ||
                            !warnings.items[i].message[0])
                                abort();
                int64_t t = 1796083200; /* 2026-12-01 */
                for (int i = 0; i < 8; i++) {
                        int64_t next;
                        if (cron_next(s, NULL, t, &next) < 0)
                                break;
                        if (next <= t)
                                abort();
                        t = next;
                }
                cron_spec_free(s);
        }
        free(expr);
        return 0;
}
