/*
 * Exported HDR entry point.
 *
 * Why this file exists: tests, benchmarks and tools call the generator through the public
 * header; the engine itself uses the inline version of rng.h.
 */
#include "risksim/engine.h"
#include "rng.h"

double rs_hdr(uint64_t trial, uint64_t variable, uint64_t entity, uint64_t seed3, uint64_t seed4)
{
    return rs_hdr_inline(trial, variable, entity, seed3, seed4);
}
