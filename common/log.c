/*
 * The daemons' log lines (see risksim/log.h for the format and the thread rules).
 *
 * Why this file exists: one event must be one line, whole, whatever the number of threads and
 * processes writing to the same stderr. Each call formats its line on the stack (bounded by
 * RSLOG_LINE_MAX), turns control characters into spaces and hands it to write(2) once. The only
 * state is the program name, set before threads start, and the level, an atomic read with
 * relaxed order so that a dropped message costs one load and a compare.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "risksim/log.h"

/* The longest job id shown. */
#define JOB_ID_MAX 64

static atomic_int log_level = RSLOG_INFO;
static char log_program[RSLOG_PROGRAM_MAX + 1] = "risksim";

/* Replaces control characters (and DEL) in s[0..len) by spaces. */
static void sanitise(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            s[i] = ' ';
    }
}

/* Copies at most max bytes of src into dst (cap bytes), sanitised; returns the bytes copied. */
static size_t copy_sanitised(char *dst, size_t cap, const char *src, size_t max)
{
    size_t n = 0;
    while (n < max && n + 1 < cap && src[n] != '\0') {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
    sanitise(dst, n);
    return n;
}

void rslog_init(const char *program, rslog_level level)
{
    if (program != NULL && program[0] != '\0')
        copy_sanitised(log_program, sizeof(log_program), program, RSLOG_PROGRAM_MAX);
    rslog_set_level(level);
}

void rslog_set_level(rslog_level level)
{
    int v = (int)level;
    if (v < RSLOG_ERROR)
        v = RSLOG_ERROR;
    if (v > RSLOG_DEBUG)
        v = RSLOG_DEBUG;
    atomic_store_explicit(&log_level, v, memory_order_relaxed);
}

rslog_level rslog_get_level(void)
{
    return (rslog_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int rslog_enabled(rslog_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *rslog_level_name(rslog_level level)
{
    switch (level) {
    case RSLOG_ERROR:
        return "error";
    case RSLOG_WARN:
        return "warn";
    case RSLOG_INFO:
        return "info";
    case RSLOG_DEBUG:
        return "debug";
    }
    return "?";
}

/* Writes "TIME PROGRAM[PID] LEVEL " and, with a job id, "job=ID " to buf (cap bytes). Returns
 * the length written (always < cap). */
static size_t format_prefix(char *buf, size_t cap, rslog_level level, const char *job_id)
{
    struct timespec ts = {0, 0};
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t secs = ts.tv_sec;
    gmtime_r(&secs, &tm);
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(ts.tv_nsec / 1000000), log_program, (long)getpid(),
                     rslog_level_name(level));
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= cap)
        len = cap - 1;
    if (job_id != NULL && job_id[0] != '\0') {
        char id[JOB_ID_MAX + 1];
        copy_sanitised(id, sizeof(id), job_id, JOB_ID_MAX);
        n = snprintf(buf + len, cap - len, "job=%s ", id);
        len += n < 0 ? 0 : (size_t)n;
        if (len >= cap)
            len = cap - 1;
    }
    return len;
}

/* Moves end back to the start of the UTF-8 character that contains buf[end] so that a cut never
 * splits a character. */
static size_t utf8_boundary(const char *buf, size_t end)
{
    size_t back = 0;
    while (end > 0 && back < 3 && ((unsigned char)buf[end] & 0xc0) == 0x80) {
        end--;
        back++;
    }
    return end;
}

/* Formats the message into buf (cap bytes, cap >= 4), sanitised, ending with "..." when it did
 * not fit. Returns its length (< cap). */
static size_t format_message(char *buf, size_t cap, const char *fmt, va_list ap)
{
    static const char unformattable[] = "(unformattable log message)";
    int n = vsnprintf(buf, cap, fmt, ap);
    if (n < 0) {
        size_t len = sizeof(unformattable) - 1 < cap ? sizeof(unformattable) - 1 : cap - 1;
        memcpy(buf, unformattable, len);
        buf[len] = '\0';
        return len;
    }
    size_t len = (size_t)n;
    if (len >= cap) {
        len = utf8_boundary(buf, cap - 4);
        memcpy(buf + len, "...", 4);
        len += 3;
    }
    sanitise(buf, len);
    return len;
}

/* Writes all of buf with as few write(2) calls as the kernel allows (one for a line). */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* Builds and writes one line; the caller has checked the level. */
static void write_line(rslog_level level, const char *job_id, const char *fmt, va_list ap)
{
    int saved = errno;
    char line[RSLOG_LINE_MAX];
    /* The prefix is at most about 200 bytes, so the message always has room. */
    size_t len = format_prefix(line, sizeof(line) / 2, level, job_id);
    len += format_message(line + len, sizeof(line) - len - 1, fmt, ap);
    line[len++] = '\n';
    write_all(STDERR_FILENO, line, len);
    errno = saved;
}

void rslog(rslog_level level, const char *fmt, ...)
{
    if (!rslog_enabled(level) || fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(level, NULL, fmt, ap);
    va_end(ap);
}

void rslog_job(rslog_level level, const char *job_id, const char *fmt, ...)
{
    if (!rslog_enabled(level) || fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(level, job_id, fmt, ap);
    va_end(ap);
}
