/* Writing the Prometheus text exposition format (0.0.4): family headers
 * and label values escaped so a name from outside cannot break a line. */
#pragma once

#include "common/buf.h"

/* "# HELP name help\n# TYPE name type\n" (help is our own text). */
void prom_family(struct buf *b, const char *name, const char *type,
                 const char *help);
/* Append `value` as a label value, without the quotes: backslash, double
 * quote and line feed escaped as the format requires (NULL: empty). */
void prom_label_value(struct buf *b, const char *value);
