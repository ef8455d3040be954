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

/* What a log line is about, kept per thread while a request or a pass over
 * one object runs: written as journal fields (REQUEST_ID, NODE_ID, VM_ID)
 * or appended to the text line as "[request=... node=... vm=...]". */
enum log_ctx { LOG_CTX_REQUEST, LOG_CTX_NODE, LOG_CTX_VM, LOG_CTX_MAX };
/* Set (value NULL: clear) one field of the calling thread's context; the
 * value is copied (at most 63 bytes kept). */
void log_ctx_set(enum log_ctx field, const char *value);
/* Clear every field of the calling thread's context. */
void log_ctx_clear(void);
/* The calling thread's context as a value, to carry a request's context
 * to the thread that goes on with it. */
#define LOG_CTX_LEN 64
struct log_ctx_saved {
    char v[LOG_CTX_MAX][LOG_CTX_LEN];
};
void log_ctx_save(struct log_ctx_saved *out);
void log_ctx_restore(const struct log_ctx_saved *in);

/* Send lines to the systemd journal's native socket at `socket_path`
 * (NULL: back to stderr) as structured entries: MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER and the context fields. A line the socket refuses goes
 * to stderr. The path is copied. */
void log_set_journal(const char *socket_path);
/* True when stderr is connected to the journal (JOURNAL_STREAM names its
 * device and inode), as under systemd with StandardError=journal. */
bool log_stderr_is_journal(void);
/* "error", "warn", "info", "debug" to a level: 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *ret);

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                   \
    } while (0)
