/* fogctl's saved settings (see settings.c). */
#pragma once

#include "cli/cli.h"

/* The settings file path; caller frees. */
char *settings_path(void);
/* Fill c->url, key and ca where still unset: environment, then the file.
 * 0, or -errno with the message printed. */
int settings_load(struct cli *c);
