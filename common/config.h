/* Declarative configuration: one table per program (name, type, bounds,
 * default, help, where it lands) drives the config file, the command-line
 * flags, validation and --help. */
#pragma once

#include "common/util.h"

#include <stdio.h>

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL, CONFIG_TYPE_MAX };

struct config_opt {
    const char *name;   /* flag --name, file key name */
    enum config_type type;
    size_t offset;      /* into the program's settings struct: char *,
                           int64_t or bool */
    int64_t min, max;   /* CONFIG_INT bounds */
    const char *def;    /* default as text (NULL: none) */
    const char *help;
};

#define CONFIG_FIELD(type, field) offsetof(type, field)

/* Apply every default to `settings`. Strings are allocated. */
void config_defaults(const struct config_opt *opts, size_t n, void *settings);
/* Set one option from text. 0, or -EINVAL/-ENOENT with a message on
 * stderr naming the option and the value. */
int config_set(const struct config_opt *opts, size_t n, void *settings,
               const char *name, const char *value);
/* Read "name = value" lines ('#' comments). 0 or -errno (message printed). */
int config_load_file(const struct config_opt *opts, size_t n, void *settings,
                     const char *path);
/* Parse --name value / --name=value / --flag / --no-flag from argv[start..].
 * Non-flag words are collected in order into ret_args (NULL-terminated,
 * caller frees the array only). "--config FILE" loads a file in place.
 * 0 or -EINVAL (message printed). */
int config_parse_args(const struct config_opt *opts, size_t n, void *settings,
                      int argc, char **argv, int start, char ***ret_args,
                      int *ret_nargs);
/* Print the option table as help text. */
void config_print_help(const struct config_opt *opts, size_t n, FILE *out);
/* Free the strings the table allocated in `settings`. */
void config_free(const struct config_opt *opts, size_t n, void *settings);
