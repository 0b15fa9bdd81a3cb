/*
 * Numbers as text (private header).
 *
 * Why this file exists: problem messages and the result JSON both write doubles, and both want
 * the shortest text that reads back to the same double (exact, and "0.71" rather than
 * "0.70999999999999996"). One function does it for both.
 */
#ifndef RISKSIM_NUMTEXT_H
#define RISKSIM_NUMTEXT_H

/* Writes finite v with the fewest significant digits (15 to 17) that read back as the same
 * double into buf (at least 32 bytes). Returns buf. */
const char *rs_num_text(double v, char buf[32]);

#endif
