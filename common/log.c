/* Levelled logging: one line per message with time, program and level. */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level cur_level = LOG_INFO;
static const char *cur_ident = "fog";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level level) { cur_level = level; }
void log_set_ident(const char *ident) { cur_ident = ident; }
bool log_enabled(enum log_level level) { return level <= cur_level; }

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    struct timespec ts;
    struct tm tm;
    char when[32];
    va_list ap;

    if (level > cur_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%H:%M:%S", &tm);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ld %s %s: ", when, ts.tv_nsec / 1000000, cur_ident,
            names[level]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
}
