/*
 * The clocks of the responder (see app.h).
 *
 * Why this file exists: every module of the responder reads the same two clocks: the wall clock
 * in milliseconds that leases and events are stamped with, and the monotonic clock for
 * durations. They live in the core library so that the unit tests link them too.
 */
#include <time.h>

#include "app.h"

int64_t app_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

double app_monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
