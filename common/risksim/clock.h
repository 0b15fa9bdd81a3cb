/*
 * risksim clock: the clocks and the timestamp format both daemons use.
 *
 * Why this file exists: leases, events and every `ts` a client sees are stamped with the wall
 * clock in milliseconds and written as RFC 3339 UTC with milliseconds; durations and timers use
 * the monotonic clock. The responder and the bridge must agree on both, so they are written
 * once here. (librisksim-db, below this layer, formats the `ts` of stored events the same way.)
 */
#ifndef RISKSIM_CLOCK_H
#define RISKSIM_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t rsclock_wall_ms(void);

/* Microseconds on the monotonic clock (CLOCK_MONOTONIC), for durations. */
int64_t rsclock_mono_us(void);

/* Seconds on the monotonic clock, for durations. */
double rsclock_monotonic(void);

/* Room for a timestamp written by rsclock_rfc3339, with its NUL. */
#define RSCLOCK_TS_SIZE 32

/* Writes ms (since the epoch) as "2026-11-22T04:35:45.123Z" (UTC, milliseconds) into out. */
void rsclock_rfc3339(int64_t ms, char out[RSCLOCK_TS_SIZE]);

#endif
