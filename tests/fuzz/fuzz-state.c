/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the state.json loader: any bytes either parse, and
 * then format to a text that parses again and formats to the very same
 * bytes, or are refused with -EBADMSG and a message (-EFBIG and -ENOMEM
 * aside). Nothing the loader accepts may be written in a form it refuses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        State *s = NULL, *again = NULL;
        char *m = NULL, *text = NULL, *text2 = NULL;
        size_t n = 0, n2 = 0;
        int r;

        r = state_parse((const char *) data, size, &s, &m);
        if (r < 0) {
                if (s || (r == -EBADMSG) != !!m) /* a refusal says why; other errors have no message */
                        abort();
                if (r != -EBADMSG && r != -EFBIG && r != -ENOMEM)
                        abort();
                free(m);
                return 0;
        }
        if (m || !s)
                abort();

        if (state_format(s, &text, &n) < 0)
                abort();
        if (state_parse(text, n, &again, &m) < 0)
                abort();
        if (state_format(again, &text2, &n2) < 0)
                abort();
        if (n != n2 || memcmp(text, text2, n) != 0)
                abort();

        free(text2);
        free(text);
        state_free(again);
        state_free(s);
        return 0;
}
