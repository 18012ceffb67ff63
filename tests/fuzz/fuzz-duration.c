/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for durations: any text either parses, and then formats
 * back to text that parses to the same value, or is refused with an offset
 * inside the text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char buf[DURATION_MAX];
        uint64_t usec, again;
        size_t at = 0;
        char *s;

        if (size > 256)
                return 0;
        s = strndup((const char *) data, size);
        if (!s)
                return 0;
        if (duration_parse(s, &usec, &at) < 0) {
                if (at > strlen(s))
                        abort();
        } else {
                /* Whole milliseconds survive a round trip; µs are below the syntax. */
                usec -= usec % 1000;
                if (duration_parse(duration_format(usec, buf), &again, &at) < 0 || again != usec)
                        abort();
        }
        free(s);
        return 0;
}
