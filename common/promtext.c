/* Writing the Prometheus text exposition format (see promtext.h). */
#include "common/promtext.h"

#include <string.h>

void prom_family(struct buf *b, const char *name, const char *type,
                 const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_label_value(struct buf *b, const char *value)
{
    if (!value)
        return;
    for (const char *p = value; *p;) {
        size_t run = strcspn(p, "\\\"\n");
        buf_append(b, p, run);
        p += run;
        if (!*p)
            break;
        buf_puts(b, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n");
        p++;
    }
}
