/*
 * Tests of the daemons' log lines (common/log.c) through its public header.
 *
 * Why this file exists: operators and tools split the daemons' joined stderr into events by
 * line, so the format, the level filter, the one-event-one-line rule (sanitising and
 * truncation) and the atomicity of a line under many threads are promises. stderr is pointed at
 * a temporary file with dup2 for each check and read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "risksim/log.h"

/* stderr redirected to a temporary file. */
typedef struct capture {
    int saved; /* the original fd 2 */
    int fd;    /* the temporary file */
} capture;

static void capture_start(capture *c)
{
    char path[] = "/tmp/rslog-test-XXXXXX";
    c->fd = mkstemp(path);
    assert_true(c->fd >= 0);
    unlink(path);
    /* O_APPEND: writes from several threads each go to the end of the file. */
    assert_int_equal(fcntl(c->fd, F_SETFL, O_APPEND), 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(c->fd, STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (free it). */
static char *capture_end(capture *c)
{
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    off_t size = lseek(c->fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(c->fd, buf, (size_t)size, 0), size);
    buf[size] = '\0';
    close(c->fd);
    return buf;
}

/* The number of '\n' in s. */
static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* Checks that line starts with "YYYY-MM-DDTHH:MM:SS.mmmZ " and returns what follows. */
static const char *skip_timestamp(const char *line)
{
    static const char shape[] = "0000-00-00T00:00:00.000Z ";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == '0') {
            if (!isdigit((unsigned char)line[i]))
                fail_msg("not a timestamp at %zu: %s", i, line);
        } else if (line[i] != shape[i]) {
            fail_msg("not a timestamp at %zu: %s", i, line);
        }
    }
    return line + sizeof(shape) - 1;
}

/* Checks a whole output of one line: timestamp, then "PROGRAM[PID] " + rest + "\n". */
static void expect_line(const char *out, const char *program, const char *rest)
{
    assert_int_equal(count_lines(out), 1);
    const char *p = skip_timestamp(out);
    char want[RSLOG_LINE_MAX + 128];
    snprintf(want, sizeof(want), "%s[%ld] %s\n", program, (long)getpid(), rest);
    assert_string_equal(p, want);
}

static void test_format(void **state)
{
    (void)state;
    rslog_init("risksim-test", RSLOG_DEBUG);
    capture c;
    capture_start(&c);
    rslog(RSLOG_INFO, "hello %d %s", 42, "world");
    char *out = capture_end(&c);
    expect_line(out, "risksim-test", "info hello 42 world");
    /* The year is plausible (UTC, four digits). */
    assert_true(strncmp(out, "20", 2) == 0);
    free(out);

    capture_start(&c);
    rslog_job(RSLOG_WARN, "01J9ZQ8WQ5H3M4N5P6Q7R8S9T0", "lease lost after %u attempts", 3u);
    out = capture_end(&c);
    expect_line(out, "risksim-test",
                "warn job=01J9ZQ8WQ5H3M4N5P6Q7R8S9T0 lease lost after 3 "
                "attempts");
    free(out);

    capture_start(&c);
    rslog_job(RSLOG_ERROR, NULL, "no job");
    rslog_job(RSLOG_DEBUG, "", "empty job");
    out = capture_end(&c);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "] error no job\n"));
    assert_non_null(strstr(out, "] debug empty job\n"));
    assert_null(strstr(out, "job="));
    free(out);
}

static void test_levels(void **state)
{
    (void)state;
    rslog_init("risksim-test", RSLOG_WARN);
    assert_int_equal(rslog_get_level(), RSLOG_WARN);
    assert_true(rslog_enabled(RSLOG_ERROR));
    assert_true(rslog_enabled(RSLOG_WARN));
    assert_false(rslog_enabled(RSLOG_INFO));
    assert_false(rslog_enabled(RSLOG_DEBUG));
    capture c;
    capture_start(&c);
    rslog(RSLOG_DEBUG, "d");
    rslog(RSLOG_INFO, "i");
    rslog(RSLOG_WARN, "w");
    rslog(RSLOG_ERROR, "e");
    rslog_job(RSLOG_INFO, "J", "ji");
    rslog_job(RSLOG_ERROR, "J", "je");
    rslog_set_level(RSLOG_ERROR);
    rslog(RSLOG_WARN, "w2");
    rslog_set_level(RSLOG_DEBUG);
    rslog(RSLOG_DEBUG, "d2");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 4);
    assert_non_null(strstr(out, "] warn w\n"));
    assert_non_null(strstr(out, "] error e\n"));
    assert_non_null(strstr(out, "] error job=J je\n"));
    assert_non_null(strstr(out, "] debug d2\n"));
    assert_null(strstr(out, "] info"));
    assert_null(strstr(out, "w2"));
    free(out);

    /* Out-of-range levels are clamped. */
    rslog_set_level((rslog_level)99);
    assert_int_equal(rslog_get_level(), RSLOG_DEBUG);
    rslog_set_level((rslog_level)-5);
    assert_int_equal(rslog_get_level(), RSLOG_ERROR);
    assert_string_equal(rslog_level_name(RSLOG_ERROR), "error");
    assert_string_equal(rslog_level_name(RSLOG_WARN), "warn");
    assert_string_equal(rslog_level_name(RSLOG_INFO), "info");
    assert_string_equal(rslog_level_name(RSLOG_DEBUG), "debug");
    assert_string_equal(rslog_level_name((rslog_level)7), "?");
}

static void test_sanitise(void **state)
{
    (void)state;
    rslog_init("risk\nsim", RSLOG_INFO);
    capture c;
    capture_start(&c);
    rslog(RSLOG_INFO, "first\nsecond\r\nthird\tfourth\x1b[31m%s", "\x7f end");
    rslog_job(RSLOG_INFO, "bad\nid", "x");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 2);
    char *second = strchr(out, '\n') + 1;
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)(second - out), out);
    expect_line(first, "risk sim", "info first second  third fourth [31m  end");
    assert_non_null(strstr(second, "] info job=bad id x\n"));
    free(out);
    /* UTF-8 is kept as it is. */
    rslog_init("risksim-test", RSLOG_INFO);
    capture_start(&c);
    rslog(RSLOG_INFO, "caf\xc3\xa9 \xe2\x82\xac");
    out = capture_end(&c);
    expect_line(out, "risksim-test", "info caf\xc3\xa9 \xe2\x82\xac");
    free(out);
}

static void test_truncation(void **state)
{
    (void)state;
    rslog_init("risksim-test", RSLOG_INFO);
    char *big = malloc(3 * RSLOG_LINE_MAX);
    assert_non_null(big);
    memset(big, 'x', 3 * RSLOG_LINE_MAX - 1);
    big[3 * RSLOG_LINE_MAX - 1] = '\0';
    capture c;
    capture_start(&c);
    rslog_job(RSLOG_INFO, "J", "%s", big);
    char *out = capture_end(&c);
    size_t len = strlen(out);
    assert_int_equal(count_lines(out), 1);
    assert_true(len <= RSLOG_LINE_MAX);
    assert_true(len > RSLOG_LINE_MAX - 8);
    assert_string_equal(out + len - 5, "x...\n");
    free(out);

    /* A cut never splits a UTF-8 character: 2-byte characters at every alignment. */
    for (size_t shift = 0; shift < 3; shift++) {
        size_t n = 0;
        for (; n < shift; n++)
            big[n] = 'a';
        while (n + 2 < 3 * RSLOG_LINE_MAX - 1) {
            big[n++] = '\xc3';
            big[n++] = '\xa9';
        }
        big[n] = '\0';
        capture_start(&c);
        rslog(RSLOG_INFO, "%s", big);
        out = capture_end(&c);
        len = strlen(out);
        assert_true(len <= RSLOG_LINE_MAX);
        assert_string_equal(out + len - 4, "...\n");
        /* The byte before "..." ends a character: it is 0xa9, or 'a' when nothing fitted. */
        unsigned char last = (unsigned char)out[len - 5];
        assert_true(last == 0xa9 || last == 'a');
        free(out);
    }
    free(big);

    /* A program name is cut at RSLOG_PROGRAM_MAX bytes. */
    char name[RSLOG_PROGRAM_MAX + 20];
    memset(name, 'p', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    rslog_init(name, RSLOG_INFO);
    capture_start(&c);
    rslog(RSLOG_INFO, "m");
    out = capture_end(&c);
    name[RSLOG_PROGRAM_MAX] = '\0';
    expect_line(out, name, "info m");
    free(out);
    rslog_init("risksim-test", RSLOG_INFO);
}

static void test_errno_kept(void **state)
{
    (void)state;
    rslog_init("risksim-test", RSLOG_INFO);
    capture c;
    capture_start(&c);
    errno = ENOSPC;
    rslog(RSLOG_ERROR, "write failed");
    assert_int_equal(errno, ENOSPC);
    errno = EACCES;
    rslog(RSLOG_DEBUG, "dropped");
    assert_int_equal(errno, EACCES);
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    free(out);
}

#define THREADS 8
#define LINES_PER_THREAD 500

static void *log_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[1500];
    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++) {
        if (i % 50 == 0)
            rslog_set_level(RSLOG_INFO); /* racing with logging is allowed */
        rslog_job(RSLOG_INFO, "T", "t=%d i=%d %s end", id, i, pad);
    }
    return NULL;
}

/* Checks one line written by log_thread; returns its thread number. */
static int check_thread_line(const char *line, size_t len)
{
    char copy[2048];
    assert_true(len < sizeof(copy));
    memcpy(copy, line, len);
    copy[len] = '\0';
    const char *p = strstr(skip_timestamp(copy), "] info job=T t=");
    assert_non_null(p);
    int id = -1, i = -1, used = 0;
    assert_int_equal(sscanf(p, "] info job=T t=%d i=%d %n", &id, &i, &used), 2);
    assert_true(id >= 0 && id < THREADS && i >= 0 && i < LINES_PER_THREAD);
    const char *pad = p + used;
    for (int k = 0; k < 1499; k++)
        assert_int_equal(pad[k], 'a' + id);
    assert_string_equal(pad + 1499, " end");
    return id;
}

static void test_threads(void **state)
{
    (void)state;
    rslog_init("risksim-test", RSLOG_INFO);
    capture c;
    capture_start(&c);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    char *out = capture_end(&c);
    int per_thread[THREADS] = {0};
    size_t lines = 0;
    for (const char *line = out; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        per_thread[check_thread_line(line, (size_t)(nl - line))]++;
        lines++;
        line = nl + 1;
    }
    assert_int_equal(lines, THREADS * LINES_PER_THREAD);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(per_thread[i], LINES_PER_THREAD);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),     cmocka_unit_test(test_levels),
        cmocka_unit_test(test_sanitise),   cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_errno_kept), cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
