/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config loader: any bytes either load into a
 * Config or give at least one error, never a crash, leak or hang.
 */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Diags diags = {};
        Config *c = NULL;
        int r;

        if (size > 64 * 1024)
                return 0;
        /* Relative secret paths then resolve under a directory that does not exist. */
        r = config_load_string("/nonexistent/fuzz.yaml", (const char *) data, size, 1796083200, &c, &diags);
        if (r == -EINVAL && diags.n_errors == 0)
                abort();
        config_free(c);
        diags_clear(&diags);
        return 0;
}
