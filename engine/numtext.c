/*
 * Numbers as text: the shortest exact decimal form of a double (see numtext.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "numtext.h"

const char *rs_num_text(double v, char buf[32])
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}
