/*
 * risksim log: the log lines of both daemons.
 *
 * Why this file exists: risksim-fcgi runs as several processes with many threads each, and the
 * bridge beside it, often with their stderr joined by the web server or the service manager
 * into one stream. Every event must stay one whole line in that stream, in one format that
 * tools can split: here each call builds its line in a bounded buffer and writes it with a
 * single write(2) of at most RSLOG_LINE_MAX bytes (not more than PIPE_BUF on Linux, so even a
 * pipe never interleaves two lines). Only the daemons call this; the libraries never log.
 *
 * Line format (UTC time with milliseconds; "job=ID " only with rslog_job):
 *   2026-11-22T04:35:45.123Z risksim-fcgi[1234] info job=ID message
 *
 * Threads: rslog_init must be called before other threads start. Everything else may be called
 * from any thread at any time; the level is an atomic, so rslog_set_level takes effect at once.
 */
#ifndef RISKSIM_LOG_H
#define RISKSIM_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/* Levels in increasing verbosity; a message is written when its level <= the set level. */
typedef enum rslog_level {
    RSLOG_ERROR = 0,
    RSLOG_WARN = 1,
    RSLOG_INFO = 2,
    RSLOG_DEBUG = 3
} rslog_level;

/* The longest line written, newline included; longer messages end with "...". */
#define RSLOG_LINE_MAX 4096

/* The longest program name shown; longer names are cut. */
#define RSLOG_PROGRAM_MAX 63

#if defined(__GNUC__) || defined(__clang__)
#define RSLOG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define RSLOG_PRINTF(fmt, args)
#endif

/* Sets the program name shown in every line (copied; at most RSLOG_PROGRAM_MAX bytes) and the
 * level. Before it is called the name is "risksim" and the level RSLOG_INFO. Not thread-safe:
 * call it before starting threads. */
void rslog_init(const char *program, rslog_level level);

/* Sets the level (clamped to RSLOG_ERROR..RSLOG_DEBUG); safe from any thread. */
void rslog_set_level(rslog_level level);

/* The current level. */
rslog_level rslog_get_level(void);

/* Non-zero when a message of this level would be written (to skip building costly arguments). */
int rslog_enabled(rslog_level level);

/* "error", "warn", "info" or "debug"; "?" for any other value. */
const char *rslog_level_name(rslog_level level);

/* Writes one line to stderr when level is enabled. Control characters in the message
 * (newlines included) become spaces; a message that does not fit ends with "...". errno is
 * preserved. */
void rslog(rslog_level level, const char *fmt, ...) RSLOG_PRINTF(2, 3);

/* rslog with "job=ID " before the message (job_id NULL or "" omits it; it is sanitised like the
 * message and cut at 64 bytes). */
void rslog_job(rslog_level level, const char *job_id, const char *fmt, ...) RSLOG_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif

#endif
