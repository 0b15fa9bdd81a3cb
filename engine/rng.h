/*
 * The HDR counter-based generator, inline (private header).
 *
 * Why this file exists: HDR (Hubbard 2019) is the engine's only source of randomness and its
 * cost is the cost of the engine. Its formula is two linear hashes of the counter tuple, each
 * folded through a modular reduction of a large prime, combined and scaled to (0,1). Keeping it
 * inline lets the sampling loop compile it into place; rng.c exports the same function for
 * tests and tools.
 */
#ifndef RISKSIM_RNG_H
#define RISKSIM_RNG_H

#include <stdint.h>

/* HDR(trial, variable, entity, seed3, seed4) in (0,1). All arguments in [0, 10^9], so every
 * intermediate fits in 64 bits. */
static inline double rs_hdr_inline(uint64_t trial, uint64_t variable, uint64_t entity,
                                   uint64_t seed3, uint64_t seed4)
{
    const uint64_t big = 999999999999989u;
    uint64_t h1 = (trial * 2499997u + variable * 1800451u + entity * 2000371u + seed3 * 1796777u +
                   seed4 * 2299603u) %
                  7450589u;
    uint64_t h2 = (trial * 2246527u + variable * 2399993u + entity * 2100869u + seed3 * 1918303u +
                   seed4 * 1624729u) %
                  7450987u;
    uint64_t a = (big % (h1 * 4658u + 7450581u)) * 383u % 99991u;
    uint64_t b = (big % (h2 * 7580u + 7560584u)) * 17669u % 7440893u;
    uint64_t x = ((a * 7440893u + b) * 1343u) % 4294967296u;
    return ((double)x + 0.5) / 4294967296.0;
}

#endif
