/*
 * The clocks and the timestamp format of the daemons (see risksim/clock.h).
 *
 * Why this file exists: one definition of "now" and of how a time is written, for the responder
 * and the bridge alike.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "risksim/clock.h"

int64_t rsclock_wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t rsclock_mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

double rsclock_monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void rsclock_rfc3339(int64_t ms, char out[RSCLOCK_TS_SIZE])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL ||
        strftime(out, RSCLOCK_TS_SIZE, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, RSCLOCK_TS_SIZE, "1970-01-01T00:00:00");
        frac = 0;
    }
    size_t n = strlen(out);
    snprintf(out + n, RSCLOCK_TS_SIZE - n, ".%03dZ", frac);
}
