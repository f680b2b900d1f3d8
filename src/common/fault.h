/*
 * fault — crash points for tests (SQLite's fault-injection idea, at process level).
 *
 * A crash point is a name in the code ("release_after_250"). When the environment
 * variable LAZARET_FAULT names it, reaching it ends the process at once with
 * _exit(FAULT_EXIT_STATUS): no cleanup, no flush, like a kill -9 at that line. The
 * e2e tests use it to crash the daemon at the moments they cannot reach with a
 * signal, then restart it and check what the store and the peers saw.
 *
 * A delay point ("store_slow_read") is a name the code asks about once
 * (fault_is_armed) to slow a path down instead of ending the process, so that a
 * test can make a small store answer as slowly as a large one.
 *
 * Test only: production never sets LAZARET_FAULT, and a daemon started with it
 * says so at start-up (fault_armed). Not for: error simulation inside a running
 * process (return codes).
 */
#ifndef LAZARET_FAULT_H
#define LAZARET_FAULT_H

#include <stdbool.h>

/* 128 + SIGKILL: a crash point looks like a kill -9 to whoever waits for us. */
#define FAULT_EXIT_STATUS 137
#define FAULT_ENV	  "LAZARET_FAULT"

/* The crash point named by LAZARET_FAULT, or NULL when none is armed. */
const char *fault_armed(void);

/* Ends the process with _exit(FAULT_EXIT_STATUS) when name is the armed point. */
void fault_point(const char *name);

/* True when name is the armed point (for delay points). */
bool fault_is_armed(const char *name);

#endif
