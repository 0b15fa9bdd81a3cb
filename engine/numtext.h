/*
 * Numbers as text (private header).
 *
 * Why this file exists: problem messages and the result JSON both write doubles, and both want
 * the shortest text that reads back to the same double (exact, and "0.71" rather than
 * "0.70999999999999996"). One formatter does it for both (numtext.c).
 */
#ifndef RISKSIM_NUMTEXT_H
#define RISKSIM_NUMTEXT_H

#include <stddef.h>

/* Room for any double's text, with its terminating NUL. */
#define RS_NUM_TEXT_SIZE 32

/* Writes v into buf as the shortest decimal that reads back (strtod) as the same double, one
 * digit longer in rare cases: plain notation ("0.0125", "640", "-3.5") for decimal exponents
 * from -5 to 16, scientific ("1.5e+20", "2.5e-07") otherwise; "-0" for negative zero; "nan",
 * "inf" and "-inf" for non-finite values (not JSON: callers write null for those). Returns the
 * length, without the NUL that ends buf. */
size_t rs_num_format(double v, char buf[RS_NUM_TEXT_SIZE]);

/* rs_num_format, returning buf (for printf arguments). */
const char *rs_num_text(double v, char buf[RS_NUM_TEXT_SIZE]);

#endif
