/* SPDX-License-Identifier: MIT */
/*
 * The Zuora simulator (tests/sim/zuora_sim.py) as a child of a unit test:
 * started on a free port, asked through its control API with a blocking
 * HTTP/1.1 request of our own (never through the code under test), and
 * stopped.
 */
#pragma once

#include <sys/types.h>

typedef struct Sim {
        pid_t pid;
        char *base; /* "127.0.0.1:PORT", without a scheme */
} Sim;

/* Where the simulator is: $ZUORA_SIM, else ARGV[1], else beside these sources. */
const char *sim_path(int argc, char **argv);

/* Starts PATH with its files (port, log) in DIR under NAME, and EXTRA
 * arguments (NULL-terminated, may be NULL). 0, or why it did not start. */
int sim_start(Sim *s, const char *path, const char *dir, const char *name, const char *const *extra);
void sim_stop(Sim *s);

/* A test group's setup: makes the directory DIR (a mkdtemp() template) and
 * starts PATH in it as S. 0, or -1 with the reason printed. */
int sim_group_start(Sim *s, const char *path, char *dir);

/* Its teardown: stops S and removes DIR with what is in it. */
void sim_group_stop(Sim *s, const char *dir);

/* "running", or how the child ended: for failure messages. */
const char *sim_health(Sim *s);

/* A control request (METHOD to PATH, BODY may be NULL); its status, and
 * its body in *ret_body (may be NULL; the caller frees). < 0 when there was
 * no answer. */
int sim_control(const Sim *s, const char *method, const char *path, const char *body, char **ret_body);
