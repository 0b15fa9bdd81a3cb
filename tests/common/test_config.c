/*
 * Tests of the daemons' configuration (common/config.c) through its public header.
 *
 * Why this file exists: a configuration mistake must stop a daemon with a message that points
 * at the line, variable or flag, and a valid configuration must mean the same thing from every
 * source. These tests walk every value type's accepted and refused texts with the exact
 * messages, the file syntax (comments, quotes, duplicates, sections, long lines), the
 * precedence of file, environment and flags, the choice of the file, the print/reload round trip
 * and the cross-key check, and keep docs/configuration.md complete. Files are written to a fresh
 * temporary directory; nothing depends on /etc.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risksim/config.h"

#define ERRLEN 512

/* A fresh temporary directory for files of one test. */
typedef struct fixture {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/rscfg-test-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    const char *names[] = {"a.conf", "b.conf", "default.conf"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", fx->dir, names[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Writes text to dir/name and stores the path in path (cap bytes). */
static void write_file(const fixture *fx, const char *name, const char *text, char *path,
                       size_t cap)
{
    snprintf(path, cap, "%s/%s", fx->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Sets key to value on a default configuration and expects success. */
static void expect_set(rscfg *cfg, const char *key, const char *value)
{
    char err[ERRLEN] = "";
    if (rscfg_set(cfg, key, value, err, sizeof(err)) != 0)
        fail_msg("%s = \"%s\" refused: %s", key, value, err);
}

/* Sets key to value on a default configuration and expects the error message msg (or any
 * message when msg is NULL); the configuration must not change. */
static void expect_refused(const char *key, const char *value, const char *msg)
{
    rscfg cfg, before;
    rscfg_defaults(&cfg);
    before = cfg;
    char err[ERRLEN] = "";
    if (rscfg_set(&cfg, key, value, err, sizeof(err)) == 0)
        fail_msg("%s = \"%s\" accepted", key, value);
    if (msg != NULL)
        assert_string_equal(err, msg);
    else
        assert_true(strncmp(err, key, strlen(key)) == 0);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

/* Loads text as a file named "t.conf" over the defaults, expecting success. */
static void load_text(rscfg *cfg, const char *text)
{
    char err[ERRLEN] = "";
    rscfg_defaults(cfg);
    if (rscfg_load_string(cfg, "t.conf", text, strlen(text), err, sizeof(err)) != 0)
        fail_msg("refused: %s\n---\n%s", err, text);
}

/* Loads text (len bytes) as "t.conf", expecting the error msg and an unchanged configuration. */
static void expect_file_error_n(const char *text, size_t len, const char *msg)
{
    rscfg cfg, before;
    rscfg_defaults(&cfg);
    before = cfg;
    char err[ERRLEN] = "";
    if (rscfg_load_string(&cfg, "t.conf", text, len, err, sizeof(err)) == 0)
        fail_msg("accepted:\n%s", text);
    assert_string_equal(err, msg);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void expect_file_error(const char *text, const char *msg)
{
    expect_file_error_n(text, strlen(text), msg);
}

/* Runs the whole load with argv (NULL-terminated, argv[0] included) and envp, the default file
 * default_path; returns its result with the message in err. */
static int load_all(rscfg *cfg, const char *default_path, char **argv, char **envp,
                    rscfg_actions *actions, char *err)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    err[0] = '\0';
    return rscfg_load_from(cfg, default_path, argc, argv, envp, actions, err, ERRLEN);
}

/* A string of n copies of c (free it). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Defaults and value types
 * ------------------------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    assert_string_equal(cfg.db_path, "/var/lib/risksim/risksim.db");
    assert_int_equal(cfg.log_level, RSLOG_INFO);
    assert_string_equal(cfg.auth_secret, "");
    assert_string_equal(cfg.allowed_origins, "");
    assert_string_equal(cfg.listen, "");
    assert_int_equal(cfg.listen_mode, 0660);
    assert_string_equal(cfg.base_path, "/risksim");
    assert_int_equal(cfg.threads, 8);
    assert_int_equal(cfg.workers, 2);
    assert_int_equal(cfg.sim_threads, 1);
    assert_int_equal(cfg.max_body_bytes, 1048576);
    assert_int_equal(cfg.max_sync_trials, 100000);
    assert_int_equal(cfg.max_trials, 10000000);
    assert_int_equal(cfg.max_depth, 32);
    assert_int_equal(cfg.max_nodes, 10000);
    assert_int_equal(cfg.queue_size, 100);
    assert_true(cfg.async_enabled);
    assert_int_equal(cfg.lease_s, 30);
    assert_int_equal(cfg.max_attempts, 3);
    assert_int_equal(cfg.retention_s, 604800);
    assert_int_equal(cfg.progress_trials, 10000);
    assert_int_equal(cfg.progress_ms, 100);
    assert_int_equal(cfg.max_wait_s, 30);
    assert_int_equal(cfg.max_waiters, 64);
    assert_int_equal(cfg.retry_after_s, 5);
    assert_int_equal(cfg.checkpoint_bytes, 4194304);
    assert_int_equal(cfg.maintenance_ms, 200);
    assert_string_equal(cfg.sync_deprecation, "");
    assert_string_equal(cfg.sync_sunset, "");
    assert_string_equal(cfg.sync_link, "");
    assert_string_equal(cfg.bridge_listen, "127.0.0.1:8091");
    assert_int_equal(cfg.poll_ms, 10);
    assert_int_equal(cfg.heartbeat_s, 15);
    assert_int_equal(cfg.ping_s, 25);
    assert_int_equal(cfg.idle_timeout_s, 300);
    assert_int_equal(cfg.max_frame_bytes, 4096);
    assert_int_equal(cfg.max_sessions, 10000);
    assert_int_equal(cfg.max_sessions_per_ip, 100);
    assert_int_equal(cfg.session_queue, 64);
    assert_false(cfg.ws_deflate);
    char err[ERRLEN];
    assert_int_equal(rscfg_check(&cfg, err, sizeof(err)), 0);
}

static void test_key_table(void **state)
{
    (void)state;
    size_t n = rscfg_key_count();
    assert_int_equal(n, 40);
    assert_null(rscfg_key_name(n));
    assert_null(rscfg_key_default(n));
    rscfg cfg;
    rscfg_defaults(&cfg);
    for (size_t i = 0; i < n; i++) {
        const char *name = rscfg_key_name(i);
        assert_non_null(name);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(name, rscfg_key_name(j));
        /* Every default is valid and setting it again changes nothing. */
        rscfg copy = cfg;
        expect_set(&copy, name, rscfg_key_default(i));
        assert_memory_equal(&copy, &cfg, sizeof(cfg));
    }
}

static void test_uint(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "threads", "1");
    assert_int_equal(cfg.threads, 1);
    expect_set(&cfg, "threads", "256");
    assert_int_equal(cfg.threads, 256);
    expect_set(&cfg, "threads", "007");
    assert_int_equal(cfg.threads, 7);
    expect_set(&cfg, "workers", "0");
    assert_int_equal(cfg.workers, 0);
    expect_set(&cfg, "max_wait_s", "0");
    assert_int_equal(cfg.max_wait_s, 0);
    expect_refused("threads", "0", "threads: must be a whole number from 1 to 256, not \"0\"");
    expect_refused("threads", "257", "threads: must be a whole number from 1 to 256, not \"257\"");
    expect_refused("threads", "", "threads: must be a whole number from 1 to 256, not \"\"");
    const char *bad[] = {"-1", "+1",   " 1",  "1 ",         "1 2",
                         "1x", "0x10", "1.0", "4294967297", "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("threads", bad[i], NULL);
    expect_refused("max_wait_s", "31",
                   "max_wait_s: must be a whole number from 0 to 30, not \"31\"");
    expect_refused("lease_s", "1", "lease_s: must be a whole number from 2 to 3600, not \"1\"");
}

static void test_u64(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "max_trials", "1000000000");
    assert_int_equal(cfg.max_trials, 1000000000u);
    expect_set(&cfg, "retention_s", "0");
    assert_int_equal(cfg.retention_s, 0);
    expect_set(&cfg, "retention_s", "3153600000");
    assert_true(cfg.retention_s == 3153600000u);
    expect_refused("retention_s", "3153600001",
                   "retention_s: must be a whole number from 0 to 3153600000, not \"3153600001\"");
    expect_refused("max_trials", "0", NULL);
    expect_refused("max_trials", "18446744073709551615", NULL);
    expect_refused("max_trials", "18446744073709551616", NULL);
    expect_refused("progress_trials", "1e6", NULL);
}

static void test_size(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "max_body_bytes", "1M");
    assert_int_equal(cfg.max_body_bytes, 1048576);
    expect_set(&cfg, "max_body_bytes", "64m");
    assert_int_equal(cfg.max_body_bytes, 67108864);
    expect_set(&cfg, "max_body_bytes", "1k");
    assert_int_equal(cfg.max_body_bytes, 1024);
    expect_set(&cfg, "max_body_bytes", "2K");
    assert_int_equal(cfg.max_body_bytes, 2048);
    expect_set(&cfg, "max_body_bytes", "5000");
    assert_int_equal(cfg.max_body_bytes, 5000);
    expect_set(&cfg, "checkpoint_bytes", "1G");
    assert_int_equal(cfg.checkpoint_bytes, 1073741824);
    expect_set(&cfg, "checkpoint_bytes", "0");
    assert_int_equal(cfg.checkpoint_bytes, 0);
    expect_set(&cfg, "max_frame_bytes", "128");
    assert_int_equal(cfg.max_frame_bytes, 128);
    expect_refused("max_body_bytes", "1023",
                   "max_body_bytes: must be a size in bytes from 1024 to 67108864 (a number, "
                   "optionally followed by k, M or G), not \"1023\"");
    expect_refused("max_body_bytes", "65537k", NULL);
    expect_refused("checkpoint_bytes", "2G", NULL);
    const char *bad[] = {"",   "M",   "1 M", "1MB", "1.5M",         "-1M",
                         "+1", "1kk", "0x1", "1M ", "17179869184G", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("max_body_bytes", bad[i], NULL);
}

static void test_bool(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    const char *yes[] = {"true", "TRUE", "Yes", "on", "oN", "1"};
    const char *no[] = {"false", "False", "NO", "off", "OFF", "0"};
    for (size_t i = 0; i < 6; i++) {
        expect_set(&cfg, "ws_deflate", yes[i]);
        assert_true(cfg.ws_deflate);
        expect_set(&cfg, "ws_deflate", no[i]);
        assert_false(cfg.ws_deflate);
    }
    expect_refused("async_enabled", "y",
                   "async_enabled: must be true or false (or yes/no, on/off, 1/0), not \"y\"");
    const char *bad[] = {"", "2", "truee", " true", "enabled", "-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("async_enabled", bad[i], NULL);
}

static void test_mode(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "listen_mode", "0600");
    assert_int_equal(cfg.listen_mode, 0600);
    expect_set(&cfg, "listen_mode", "666");
    assert_int_equal(cfg.listen_mode, 0666);
    expect_set(&cfg, "listen_mode", "0777");
    assert_int_equal(cfg.listen_mode, 0777);
    expect_set(&cfg, "listen_mode", "0");
    assert_int_equal(cfg.listen_mode, 0);
    expect_refused("listen_mode", "1000",
                   "listen_mode: must be an octal file mode from 0 to 0777, not \"1000\"");
    const char *bad[] = {"", "0778", "0x1ff", "-0660", "0660 ", "rw-rw----", "00000000000001000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("listen_mode", bad[i], NULL);
}

static void test_level(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "log_level", "debug");
    assert_int_equal(cfg.log_level, RSLOG_DEBUG);
    expect_set(&cfg, "log_level", "WARN");
    assert_int_equal(cfg.log_level, RSLOG_WARN);
    expect_set(&cfg, "log_level", "error");
    assert_int_equal(cfg.log_level, RSLOG_ERROR);
    expect_set(&cfg, "log_level", "Info");
    assert_int_equal(cfg.log_level, RSLOG_INFO);
    expect_refused("log_level", "verbose",
                   "log_level: must be error, warn, info or debug, not \"verbose\"");
    expect_refused("log_level", "", NULL);
    expect_refused("log_level", "2", NULL);
}

static void test_strings(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    char *path = repeat('a', 4095);
    path[0] = '/';
    expect_set(&cfg, "db_path", path);
    assert_string_equal(cfg.db_path, path);
    free(path);
    path = repeat('a', 4096);
    expect_refused("db_path", path, "db_path: is longer than 4095 bytes");
    free(path);
    expect_refused("db_path", "", "db_path: must not be empty");
    expect_refused("db_path", "/a\nb", "db_path: contains a control character");
    expect_refused("sync_link", "<a>\r\nX-Evil: 1", "sync_link: contains a control character");
    /* The secret is never quoted back. */
    char *secret = repeat('s', 512);
    expect_set(&cfg, "auth_secret", secret);
    assert_string_equal(cfg.auth_secret, secret);
    free(secret);
    secret = repeat('s', 513);
    expect_refused("auth_secret", secret, "auth_secret: is longer than 512 bytes");
    free(secret);
    char *dep = repeat('d', 64);
    expect_set(&cfg, "sync_deprecation", dep);
    free(dep);
    dep = repeat('d', 65);
    expect_refused("sync_deprecation", dep, "sync_deprecation: is longer than 64 bytes");
    free(dep);
    expect_set(&cfg, "sync_link", "<https://example.com/docs#sync>; rel=\"sunset\"");
    assert_string_equal(cfg.sync_link, "<https://example.com/docs#sync>; rel=\"sunset\"");
    expect_refused("no_such_key", "1", "unknown key \"no_such_key\"");
    char err[ERRLEN];
    assert_int_equal(rscfg_set(NULL, "threads", "1", err, sizeof(err)), -1);
    assert_int_equal(rscfg_set(&cfg, "threads", "x", NULL, 0), -1);
}

static void test_listen(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    const char *good[] = {"",
                          "unix:/run/risksim/fcgi.sock",
                          "127.0.0.1:9000",
                          "0.0.0.0:1",
                          "[::1]:9000",
                          "[::]:65535",
                          "[fe80::1]:80"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_set(&cfg, "listen", good[i]);
    expect_refused("listen", "unix:run/x.sock",
                   "listen: the unix socket path must be absolute (unix:/path)");
    expect_refused("listen", "localhost:9000",
                   "listen: \"localhost\" is not an IPv4 address (use a literal such as "
                   "127.0.0.1)");
    expect_refused("listen", "127.0.0.1",
                   "listen: must be unix:/ABSOLUTE/PATH, IPV4:PORT or [IPV6]:PORT");
    expect_refused("listen", "127.0.0.1:0",
                   "listen: the port must be a number from 1 to 65535, not \"0\"");
    const char *bad[] = {"127.0.0.1:65536", "127.0.0.1:",   "[::1]",      "[::1]9000",
                         "::1:9000",        "1.2.3.4:+80",  ":80",        "[]:80",
                         "1.2.3:80",        "[1.2.3.4]:80", "unix:",      "127.0.0.1:080000",
                         "[::1]:80x",       "*:80",         " 1.2.3.4:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("listen", bad[i], NULL);
    char *longpath = repeat('p', 5 + 108);
    memcpy(longpath, "unix:/", 6);
    expect_refused("listen", longpath, "listen: the unix socket path is longer than 107 bytes");
    longpath[5 + 107] = '\0';
    expect_set(&cfg, "listen", longpath);
    free(longpath);

    expect_set(&cfg, "bridge_listen", "unix:/run/risksim/ws.sock");
    expect_set(&cfg, "bridge_listen", "[::1]:8091");
    expect_refused("bridge_listen", "", NULL);
    expect_refused("bridge_listen", "8091", NULL);

    rscfg_addr addr;
    char err[ERRLEN];
    assert_int_equal(rscfg_addr_parse("", &addr, err, sizeof(err)), 0);
    assert_int_equal(addr.kind, RSCFG_ADDR_FD0);
    assert_int_equal(rscfg_addr_parse("unix:/tmp/x.sock", &addr, err, sizeof(err)), 0);
    assert_int_equal(addr.kind, RSCFG_ADDR_UNIX);
    assert_string_equal(addr.path, "/tmp/x.sock");
    assert_int_equal(rscfg_addr_parse("10.1.2.3:8080", &addr, err, sizeof(err)), 0);
    assert_int_equal(addr.kind, RSCFG_ADDR_INET);
    assert_string_equal(addr.host, "10.1.2.3");
    assert_int_equal(addr.port, 8080);
    assert_int_equal(rscfg_addr_parse("[2001:db8::1]:443", &addr, err, sizeof(err)), 0);
    assert_int_equal(addr.kind, RSCFG_ADDR_INET6);
    assert_string_equal(addr.host, "2001:db8::1");
    assert_int_equal(addr.port, 443);
    assert_int_equal(rscfg_addr_parse("x", &addr, err, sizeof(err)), -1);
}

static void test_base_path(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "base_path", "");
    expect_set(&cfg, "base_path", "/api");
    expect_set(&cfg, "base_path", "/a/b-c");
    expect_refused("base_path", "api",
                   "base_path: must be \"\" or start with \"/\" and not end with \"/\"");
    expect_refused("base_path", "/", NULL);
    expect_refused("base_path", "/api/", NULL);
    expect_refused("base_path", "/a b", "base_path: must not contain spaces, \"?\" or \"#\"");
    expect_refused("base_path", "/a?b", NULL);
    char *p = repeat('p', 256);
    p[0] = '/';
    expect_refused("base_path", p, "base_path: is longer than 255 bytes");
    free(p);
}

static void test_origins(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    const char *good[] = {"", "*", "https://app.example.com",
                          "https://app.example.com, http://localhost:8080",
                          "http://[::1]:3000,https://a.example"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_set(&cfg, "allowed_origins", good[i]);
    expect_refused("allowed_origins", "app.example.com",
                   "allowed_origins: \"app.example.com\" is not an origin: list origins such as "
                   "https://example.com:8443 separated by commas, or give \"*\" alone");
    const char *bad[] = {"https://a/",  "*,https://a", "https://a,,https://b", "https://", ",",
                         "https://a b", "ftp://a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("allowed_origins", bad[i], NULL);
}

static void test_http_date(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "sync_sunset", "Sun, 06 Nov 1994 08:49:37 GMT");
    expect_set(&cfg, "sync_sunset", "Fri, 31 Dec 2027 23:59:59 GMT");
    expect_set(&cfg, "sync_sunset", "");
    expect_refused("sync_sunset", "tomorrow",
                   "sync_sunset: must be an HTTP-date such as \"Sun, 06 Nov 1994 08:49:37 GMT\"");
    const char *bad[] = {"Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 32 Nov 1994 08:49:37 GMT",
                         "Sun, 06 Nox 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 24:49:37 GMT",
                         "Sunday, 06-Nov-94 08:49:37 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT ",
                         "2027-12-31T23:59:59Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("sync_sunset", bad[i], NULL);
}

/* ---------------------------------------------------------------------------------------------
 * The file syntax
 * ------------------------------------------------------------------------------------------- */

static void test_file_syntax(void **state)
{
    (void)state;
    rscfg cfg;
    load_text(&cfg, "# a comment\n"
                    "; another comment\n"
                    "\n"
                    "   \t\n"
                    "  threads = 4   \n"
                    "workers=0\n"
                    "sim_threads =3 # inline comment\n"
                    "max_depth = 16 ; inline comment\n"
                    "sync_link = <https://example.com/a#b>; rel=\"sunset\"  # comment\n"
                    "auth_secret = \"a #b ;c\"   ; comment after the quotes\n"
                    "base_path = \"\"\n"
                    "sync_deprecation = \"  spaces kept  \"\n"
                    "allowed_origins = https://a.example # the only one\n"
                    "log_level = debug");
    assert_int_equal(cfg.threads, 4);
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(cfg.sim_threads, 3);
    assert_int_equal(cfg.max_depth, 16);
    assert_string_equal(cfg.sync_link, "<https://example.com/a#b>; rel=\"sunset\"");
    assert_string_equal(cfg.auth_secret, "a #b ;c");
    assert_string_equal(cfg.base_path, "");
    assert_string_equal(cfg.sync_deprecation, "  spaces kept  ");
    assert_string_equal(cfg.allowed_origins, "https://a.example");
    assert_int_equal(cfg.log_level, RSLOG_DEBUG);

    /* CRLF line ends, a UTF-8 byte order mark, a quoted value holding quotes, an empty value. */
    load_text(&cfg, "\xEF\xBB\xBFthreads = 5\r\nsync_link = \"<x>; rel=\"a\"\"\r\nlisten =\r\n");
    assert_int_equal(cfg.threads, 5);
    assert_string_equal(cfg.sync_link, "<x>; rel=\"a\"");
    assert_string_equal(cfg.listen, "");

    /* Empty text changes nothing. */
    rscfg def;
    rscfg_defaults(&def);
    load_text(&cfg, "");
    assert_memory_equal(&cfg, &def, sizeof(cfg));
    load_text(&cfg, "\n# only comments\n");
    assert_memory_equal(&cfg, &def, sizeof(cfg));
}

static void test_file_errors(void **state)
{
    (void)state;
    expect_file_error("threads = 4\nthread = 4\n", "t.conf:2: unknown key \"thread\"");
    expect_file_error("# x\n\nthreads = many\n",
                      "t.conf:3: threads: must be a whole number from 1 to 256, not \"many\"");
    expect_file_error("threads = 4\nworkers = 1\n\nthreads = 5\n",
                      "t.conf:4: threads is set twice, on lines 1 and 4");
    expect_file_error("threads = 4\n[responder]\nworkers = 1\n",
                      "t.conf:2: sections ([...]) are not supported; write key = value lines only");
    expect_file_error("  [empty]\n",
                      "t.conf:1: sections ([...]) are not supported; write key = value lines only");
    expect_file_error("\xEF\xBB\xBF[x]\n",
                      "t.conf:1: sections ([...]) are not supported; write key = value lines only");
    expect_file_error("threads = 4\nworkers\n", "t.conf:2: expected key = value");
    expect_file_error("threads: 4\n", "t.conf:1: expected key = value");
    expect_file_error("= 4\n", "t.conf:1: expected key = value");
    expect_file_error("threads = 4\n  workers = 1\n  \tcontinued\n",
                      "t.conf:3: expected key = value");
    expect_file_error("base_path = \"/api\n",
                      "t.conf:1: base_path: the quoted value has no closing \"");
    expect_file_error("base_path = \"\n",
                      "t.conf:1: base_path: the quoted value has no closing \"");
    expect_file_error("base_path = \"/api\" x\n",
                      "t.conf:1: base_path: only a comment may follow the closing \"");
    expect_file_error("threads = 4 5\n",
                      "t.conf:1: threads: must be a whole number from 1 to 256, not \"4 5\"");
    expect_file_error("threads = 4\nworkers = 1\x01\n",
                      "t.conf:2: control character (byte 0x01) in line");
    expect_file_error("threads = 4\r5\n", "t.conf:1: control character (byte 0x0d) in line");
    expect_file_error_n("threads = 4\nworkers = 1\0\n", 25,
                        "t.conf:2: control character (byte 0x00) in line");
    expect_file_error("THREADS = 4\n", "t.conf:1: unknown key \"THREADS\"");
    expect_file_error("max-trials = 4\n", "t.conf:1: unknown key \"max-trials\"");
    expect_file_error("threads = \"4\"\nmax_sync_trials = 1\nmax_trials = x\n",
                      "t.conf:3: max_trials: must be a whole number from 1 to 1000000000, not "
                      "\"x\"");

    /* A line longer than RSCFG_LINE_MAX. */
    char *text = repeat('a', RSCFG_LINE_MAX + 20);
    memcpy(text, "db_path = /", 11);
    expect_file_error(text, "t.conf:1: line longer than 8192 bytes");
    free(text);

    char err[ERRLEN];
    rscfg cfg;
    rscfg_defaults(&cfg);
    assert_int_equal(rscfg_load_string(&cfg, "t.conf", NULL, 1, err, sizeof(err)), -1);
    assert_int_equal(rscfg_load_string(NULL, "t.conf", "", 0, err, sizeof(err)), -1);
    assert_int_equal(rscfg_load_string(&cfg, NULL, "", 0, NULL, 0), 0);
}

static void test_file_long_values(void **state)
{
    (void)state;
    /* Lines far beyond libinih's default 200-byte buffer, up to the largest value. */
    size_t n = 4095;
    char *path = repeat('d', n);
    path[0] = '/';
    size_t cap = n + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    snprintf(text, cap, "threads = 3\ndb_path = \"%s\"   # long\nworkers = 4\n", path);
    rscfg cfg;
    load_text(&cfg, text);
    assert_string_equal(cfg.db_path, path);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.workers, 4);
    /* The same without a final newline. */
    snprintf(text, cap, "db_path = %s", path);
    load_text(&cfg, text);
    assert_string_equal(cfg.db_path, path);
    free(text);
    free(path);

    path = repeat('d', 4096);
    path[0] = '/';
    cap = 4096 + 64;
    text = malloc(cap);
    assert_non_null(text);
    snprintf(text, cap, "\n\ndb_path = %s\n", path);
    expect_file_error(text, "t.conf:3: db_path: is longer than 4095 bytes");
    free(text);
    free(path);

    /* Exactly RSCFG_LINE_MAX bytes of line is accepted; the value is then refused by its
     * key's limit, which proves the whole line reached the handler. */
    text = repeat(' ', RSCFG_LINE_MAX + 1);
    memcpy(text, "sync_link = x", 13);
    text[RSCFG_LINE_MAX - 1] = 'y';
    text[RSCFG_LINE_MAX] = '\0';
    expect_file_error(text, "t.conf:1: sync_link: is longer than 1024 bytes");
    free(text);
}

static void test_load_file(void **state)
{
    fixture *fx = *state;
    char path[128];
    write_file(fx, "a.conf", "threads = 12\nlog_level = warn\n", path, sizeof(path));
    rscfg cfg;
    rscfg_defaults(&cfg);
    char err[ERRLEN] = "";
    assert_int_equal(rscfg_load_file(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.threads, 12);
    assert_int_equal(cfg.log_level, RSLOG_WARN);

    write_file(fx, "b.conf", "threads = 12\nbogus = 1\n", path, sizeof(path));
    assert_int_equal(rscfg_load_file(&cfg, path, err, sizeof(err)), -1);
    char want[ERRLEN];
    snprintf(want, sizeof(want), "%s:2: unknown key \"bogus\"", path);
    assert_string_equal(err, want);

    snprintf(path, sizeof(path), "%s/missing.conf", fx->dir);
    assert_int_equal(rscfg_load_file(&cfg, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    assert_int_equal(rscfg_load_file(&cfg, fx->dir, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: is a directory", fx->dir);
    assert_string_equal(err, want);
}

/* ---------------------------------------------------------------------------------------------
 * The whole load: file, environment, flags
 * ------------------------------------------------------------------------------------------- */

static void test_precedence(void **state)
{
    fixture *fx = *state;
    char path[128];
    write_file(fx, "a.conf",
               "threads = 2\nworkers = 3\nsim_threads = 4\nqueue_size = 50\nlog_level = error\n",
               path, sizeof(path));
    char config_arg[160];
    snprintf(config_arg, sizeof(config_arg), "--config=%s", path);
    char *argv[] = {
        "risksim-fcgi", config_arg, "--sim-threads", "7", "--queue-size=60", "--queue-size",
        "70",           NULL};
    char *envp[] = {"HOME=/root",           "RISKSIM_WORKERS=5",   "RISKSIM_SIM_THREADS=6",
                    "RISKSIM_QUEUE_SIZE=9", "RISKSIM_MAX_DEPTH=8", NULL};
    rscfg cfg;
    rscfg_actions actions;
    char err[ERRLEN];
    assert_int_equal(load_all(&cfg, NULL, argv, envp, &actions, err), 0);
    assert_int_equal(cfg.threads, 2);     /* file */
    assert_int_equal(cfg.workers, 5);     /* environment over file */
    assert_int_equal(cfg.sim_threads, 7); /* flag over environment and file */
    assert_int_equal(cfg.queue_size, 70); /* the last flag wins */
    assert_int_equal(cfg.max_depth, 8);   /* environment over default */
    assert_int_equal(cfg.log_level, RSLOG_ERROR);
    assert_int_equal(cfg.max_nodes, 10000); /* default */
    assert_string_equal(actions.config_file, path);
    assert_false(actions.help || actions.version || actions.print_config || actions.check_config);
}

static void test_file_choice(void **state)
{
    fixture *fx = *state;
    char a[128], b[128], def[128], missing[128], env_a[160], env_missing[160];
    write_file(fx, "a.conf", "threads = 11\n", a, sizeof(a));
    write_file(fx, "b.conf", "threads = 22\n", b, sizeof(b));
    snprintf(missing, sizeof(missing), "%s/missing.conf", fx->dir);
    snprintf(def, sizeof(def), "%s/default.conf", fx->dir);
    snprintf(env_a, sizeof(env_a), "RISKSIM_CONFIG=%s", a);
    snprintf(env_missing, sizeof(env_missing), "RISKSIM_CONFIG=%s", missing);
    rscfg cfg;
    rscfg_actions act;
    char err[ERRLEN], want[ERRLEN];

    /* The default file may be missing. */
    char *argv0[] = {"risksim-fcgi", NULL};
    char *noenv[] = {NULL};
    assert_int_equal(load_all(&cfg, missing, argv0, noenv, &act, err), 0);
    assert_null(act.config_file);
    assert_int_equal(cfg.threads, 8);
    assert_int_equal(load_all(&cfg, NULL, argv0, NULL, &act, err), 0);
    assert_null(act.config_file);

    /* The default file is read when it exists. */
    write_file(fx, "default.conf", "threads = 33\n", def, sizeof(def));
    assert_int_equal(load_all(&cfg, def, argv0, noenv, &act, err), 0);
    assert_int_equal(cfg.threads, 33);
    assert_string_equal(act.config_file, def);

    /* RISKSIM_CONFIG replaces the default file; --config replaces both. */
    char *envp[] = {env_a, NULL};
    assert_int_equal(load_all(&cfg, def, argv0, envp, &act, err), 0);
    assert_int_equal(cfg.threads, 11);
    assert_string_equal(act.config_file, a);
    char *argv_b[] = {"risksim-fcgi", "--config", b, NULL};
    assert_int_equal(load_all(&cfg, def, argv_b, envp, &act, err), 0);
    assert_int_equal(cfg.threads, 22);
    assert_string_equal(act.config_file, b);

    /* A file that was named must exist. */
    char *argv_missing[] = {"risksim-fcgi", "--config", missing, NULL};
    assert_int_equal(load_all(&cfg, def, argv_missing, noenv, &act, err), -1);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", missing);
    assert_string_equal(err, want);
    char *envp_missing[] = {env_missing, NULL};
    assert_int_equal(load_all(&cfg, def, argv0, envp_missing, &act, err), -1);
    assert_string_equal(err, want);
    char *argv_empty[] = {"risksim-fcgi", "--config=", NULL};
    assert_int_equal(load_all(&cfg, def, argv_empty, noenv, &act, err), -1);
    assert_string_equal(err, "--config: empty file name");
    char *envp_empty[] = {"RISKSIM_CONFIG=", NULL};
    assert_int_equal(load_all(&cfg, def, argv0, envp_empty, &act, err), -1);
    assert_string_equal(err, "RISKSIM_CONFIG: empty file name");

    /* An error in the file is reported with its name and line. */
    write_file(fx, "b.conf", "\nthreads = 0\n", b, sizeof(b));
    assert_int_equal(load_all(&cfg, def, argv_b, noenv, &act, err), -1);
    snprintf(want, sizeof(want), "%s:2: threads: must be a whole number from 1 to 256, not \"0\"",
             b);
    assert_string_equal(err, want);
}

static void test_env_and_flag_errors(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_actions act;
    char err[ERRLEN];
    char *argv0[] = {"risksim-fcgi", NULL};

    char *env_bad[] = {"RISKSIM_THREADS=lots", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv0, env_bad, &act, err), -1);
    assert_string_equal(err, "RISKSIM_THREADS: must be a whole number from 1 to 256, not \"lots\"");
    /* Environment values are taken literally: no trimming, quotes or comments. */
    char *env_space[] = {"RISKSIM_THREADS= 4", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv0, env_space, &act, err), -1);
    assert_string_equal(err, "RISKSIM_THREADS: must be a whole number from 1 to 256, not \" 4\"");
    char *env_literal[] = {"RISKSIM_SYNC_DEPRECATION=\"true\" # x", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv0, env_literal, &act, err), 0);
    assert_string_equal(cfg.sync_deprecation, "\"true\" # x");
    /* Variables that name no key are left alone (scripts share the prefix). */
    char *env_other[] = {"RISKSIM_UNDER_VALGRIND=1", "RISKSIM_threads=0",    "RISKSIM_=1",
                         "RISKSIM_THREADSX=1",       "NOTRISKSIM_THREADS=0", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv0, env_other, &act, err), 0);
    assert_int_equal(cfg.threads, 8);

    char *argv_bad[] = {"risksim-fcgi", "--threads", "0", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_bad, NULL, &act, err), -1);
    assert_string_equal(err, "--threads: must be a whole number from 1 to 256, not \"0\"");
    char *argv_bad_eq[] = {"risksim-fcgi", "--max-body-bytes=1T", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_bad_eq, NULL, &act, err), -1);
    assert_string_equal(err, "--max-body-bytes: must be a size in bytes from 1024 to 67108864 (a "
                             "number, optionally followed by k, M or G), not \"1T\"");
    char *argv_unknown[] = {"risksim-fcgi", "--thread", "4", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_unknown, NULL, &act, err), -1);
    assert_string_equal(err, "--thread: unknown option");
    char *argv_underscore[] = {"risksim-fcgi", "--max_trials=4", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_underscore, NULL, &act, err), -1);
    assert_string_equal(err, "--max_trials: unknown option");
    char *argv_missing[] = {"risksim-fcgi", "--threads", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_missing, NULL, &act, err), -1);
    assert_string_equal(err, "--threads: missing value");
    char *argv_config_missing[] = {"risksim-fcgi", "--config", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_config_missing, NULL, &act, err), -1);
    assert_string_equal(err, "--config: missing value");
    char *argv_novalue[] = {"risksim-fcgi", "--check-config=yes", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_novalue, NULL, &act, err), -1);
    assert_string_equal(err, "--check-config: takes no value");
    char *argv_positional[] = {"risksim-fcgi", "serve", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_positional, NULL, &act, err), -1);
    assert_string_equal(err, "\"serve\": unexpected argument");
    char *argv_dash[] = {"risksim-fcgi", "--", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_dash, NULL, &act, err), -1);
    assert_string_equal(err, "\"--\": unexpected argument");
    /* A flag's value may start with dashes. */
    char *argv_dashes[] = {"risksim-fcgi", "--sync-deprecation", "--x", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_dashes, NULL, &act, err), 0);
    assert_string_equal(cfg.sync_deprecation, "--x");
}

static void test_actions(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_actions act;
    char err[ERRLEN];
    char *argv[] = {"risksim-fcgi", "--print-config", "--check-config", "--threads=3", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv, NULL, &act, err), 0);
    assert_true(act.print_config);
    assert_true(act.check_config);
    assert_false(act.help);
    assert_false(act.version);
    assert_int_equal(cfg.threads, 3);

    /* --help and --version load nothing, so a broken configuration cannot hide them. */
    char *argv_help[] = {"risksim-fcgi", "--config", "/nonexistent/x.conf", "--threads", "0",
                         "--help",       NULL};
    char *env_bad[] = {"RISKSIM_WORKERS=x", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_help, env_bad, &act, err), 0);
    assert_true(act.help);
    assert_int_equal(cfg.threads, 8);
    char *argv_h[] = {"risksim-fcgi", "-h", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_h, NULL, &act, err), 0);
    assert_true(act.help);
    char *argv_version[] = {"risksim-fcgi", "--version", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_version, env_bad, &act, err), 0);
    assert_true(act.version);

    /* NULL actions are allowed; argc 0 means no flags. */
    assert_int_equal(rscfg_load_from(&cfg, NULL, 0, NULL, NULL, NULL, err, sizeof(err)), 0);
    /* A failed load leaves the configuration alone. */
    rscfg before = cfg;
    char *argv_fail[] = {"risksim-fcgi", "--threads=4", "--workers=x", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_fail, NULL, &act, err), -1);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void test_cross_check(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_actions act;
    char err[ERRLEN];
    char *argv[] = {"risksim-fcgi", "--max-sync-trials", "200", "--max-trials", "100", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv, NULL, &act, err), -1);
    assert_string_equal(err, "max_sync_trials (200) must not be greater than max_trials (100)");
    char *argv_equal[] = {"risksim-fcgi", "--max-sync-trials", "100", "--max-trials", "100", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv_equal, NULL, &act, err), 0);
    /* Defaults 100000 <= 10000000; lowering max_trials alone trips it. */
    char *envp[] = {"RISKSIM_MAX_TRIALS=99999", NULL};
    char *argv0[] = {"risksim-fcgi", NULL};
    assert_int_equal(load_all(&cfg, NULL, argv0, envp, &act, err), -1);
    assert_string_equal(err,
                        "max_sync_trials (100000) must not be greater than max_trials (99999)");
    /* A file alone is not checked (later sources may fix it). */
    rscfg_defaults(&cfg);
    const char *text = "max_trials = 10\n";
    assert_int_equal(rscfg_load_string(&cfg, "t.conf", text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(rscfg_check(&cfg, err, sizeof(err)), -1);
}

/* ---------------------------------------------------------------------------------------------
 * Printing, usage, documentation
 * ------------------------------------------------------------------------------------------- */

/* rscfg_print into a new string (free it). */
static char *print_to_string(const rscfg *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    rscfg_print(cfg, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_print_roundtrip(void **state)
{
    (void)state;
    rscfg cfg;
    rscfg_defaults(&cfg);
    expect_set(&cfg, "db_path", "/srv/risk sim/jobs #1.db");
    expect_set(&cfg, "log_level", "debug");
    expect_set(&cfg, "allowed_origins", "https://a.example, http://b.example:8080");
    expect_set(&cfg, "listen", "[::1]:9000");
    expect_set(&cfg, "listen_mode", "0600");
    expect_set(&cfg, "base_path", "");
    expect_set(&cfg, "threads", "3");
    expect_set(&cfg, "workers", "0");
    expect_set(&cfg, "max_body_bytes", "2M");
    expect_set(&cfg, "max_trials", "1000000000");
    expect_set(&cfg, "async_enabled", "no");
    expect_set(&cfg, "retention_s", "0");
    expect_set(&cfg, "checkpoint_bytes", "0");
    expect_set(&cfg, "sync_deprecation", "@1767225600");
    expect_set(&cfg, "sync_sunset", "Fri, 31 Dec 2027 23:59:59 GMT");
    expect_set(&cfg, "sync_link", "\"<https://x/#a>; rel=\"sunset\" ; x\"");
    expect_set(&cfg, "bridge_listen", "unix:/run/risksim/ws.sock");
    expect_set(&cfg, "ws_deflate", "on");
    expect_set(&cfg, "sync_deprecation", "  \" # ; \"  ");

    char *printed = print_to_string(&cfg);
    rscfg again;
    rscfg_defaults(&again);
    char err[ERRLEN] = "";
    if (rscfg_load_string(&again, "printed", printed, strlen(printed), err, sizeof(err)) != 0)
        fail_msg("reload failed: %s\n%s", err, printed);
    char *reprinted = print_to_string(&again);
    assert_string_equal(printed, reprinted);
    assert_string_equal(again.db_path, cfg.db_path);
    assert_string_equal(again.sync_link, cfg.sync_link);
    assert_string_equal(again.sync_deprecation, cfg.sync_deprecation);
    assert_int_equal(again.listen_mode, 0600);
    assert_int_equal(again.max_body_bytes, 2097152);
    assert_false(again.async_enabled);
    assert_true(again.ws_deflate);
    assert_non_null(strstr(printed, "listen_mode = 0600\n"));
    assert_non_null(strstr(printed, "auth_secret = \"\"\n"));
    free(printed);
    free(reprinted);

    /* The secret is never printed; its line becomes a comment, so a reload leaves it unset. */
    expect_set(&cfg, "auth_secret", "correct horse battery staple");
    printed = print_to_string(&cfg);
    assert_null(strstr(printed, "horse"));
    assert_non_null(strstr(printed, "# auth_secret is set (28 bytes) and not shown\n"));
    rscfg_defaults(&again);
    assert_int_equal(
        rscfg_load_string(&again, "printed", printed, strlen(printed), err, sizeof(err)), 0);
    assert_string_equal(again.auth_secret, "");
    free(printed);
}

static void test_usage(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    rscfg_usage(f, "risksim-wsbridge");
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(buf, "Usage: risksim-wsbridge "));
    const char *actions[] = {"--config FILE", "--print-config", "--check-config", "--help",
                             "--version"};
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        assert_non_null(strstr(buf, actions[i]));
    for (size_t i = 0; i < rscfg_key_count(); i++) {
        char flag[80] = "  --";
        size_t n = strlen(flag);
        for (const char *p = rscfg_key_name(i); *p != '\0' && n + 2 < sizeof(flag); p++)
            flag[n++] = *p == '_' ? '-' : *p;
        flag[n++] = ' ';
        flag[n] = '\0';
        if (strstr(buf, flag) == NULL)
            fail_msg("usage lacks %s", flag);
    }
    assert_non_null(strstr(buf, "--threads N"));
    assert_non_null(strstr(buf, "[8]"));
    free(buf);
}

/* Reads a whole file into a new string (free it). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (len + 2 > cap) {
            cap = cap == 0 ? 4096 : cap * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        buf[len++] = (char)c;
    }
    fclose(f);
    if (buf == NULL)
        buf = calloc(1, 1);
    assert_non_null(buf);
    buf[len] = '\0';
    return buf;
}

static void test_docs(void **state)
{
    (void)state;
    char *doc = read_text(RISKSIM_SOURCE_DIR "/docs/configuration.md");
    for (size_t i = 0; i < rscfg_key_count(); i++) {
        const char *name = rscfg_key_name(i);
        const char *def = rscfg_key_default(i);
        /* The key's table row: "| `key` | `default` |" ("" for an empty default). */
        char row[256];
        if (def[0] != '\0')
            snprintf(row, sizeof(row), "\n| `%s` | `%s` |", name, def);
        else
            snprintf(row, sizeof(row), "\n| `%s` | `\"\"` |", name);
        if (strstr(doc, row) == NULL)
            fail_msg("docs/configuration.md has no row starting %s", row + 1);
    }
    const char *words[] = {"RISKSIM_CONFIG", "--print-config", "--check-config", "RISKSIM_",
                           RSCFG_DEFAULT_PATH};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(doc, words[i]) == NULL)
            fail_msg("docs/configuration.md does not mention %s", words[i]);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_level),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_base_path),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_file_syntax),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_long_values),
        cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_choice, setup, teardown),
        cmocka_unit_test(test_env_and_flag_errors),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_cross_check),
        cmocka_unit_test(test_print_roundtrip),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
