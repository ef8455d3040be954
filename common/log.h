/* Levelled logging to stderr. Daemons and the CLI log; library folders only
 * at debug level (STYLE.md). */
#pragma once

#include "common/util.h"

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_LEVEL_MAX };

void log_set_level(enum log_level level);
/* Prefix each line with a program name (not owned; must outlive logging). */
void log_set_ident(const char *ident);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                   \
    } while (0)
