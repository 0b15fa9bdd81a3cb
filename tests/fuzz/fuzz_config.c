/*
 * libFuzzer target: the configuration parser (common/config.c).
 *
 * Why this file exists: the configuration file is read before anything else and by both
 * daemons, and its parser copies lines of any length through libinih with a reader of our own,
 * so it must hold for any bytes: no crash, overflow or leak (the sanitizers); on failure one
 * line of message, naming the file, and an unchanged configuration; on success a configuration
 * whose printed form reads back to the same configuration. The same bytes, split into lines,
 * are also used as command-line flags and as environment variables of the whole load, and the
 * first line as a listen address. Seeds are in corpus/config.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risksim/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ERRLEN 512
#define MAX_INPUT (64 * 1024)
#define MAX_ARGS 64

/* Stops the run (libFuzzer reports it with the input) when cond is false. */
static void require(int cond)
{
    if (!cond)
        abort();
}

/* A failure message: not empty and one line. */
static void require_message(const char *err)
{
    require(err[0] != '\0');
    require(strchr(err, '\n') == NULL);
}

/* rscfg_print into a new string (free it). */
static char *print_to_string(const rscfg *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    require(f != NULL);
    rscfg_print(cfg, f);
    require(fclose(f) == 0);
    return buf;
}

/* The bytes as a configuration file. */
static void check_file(const uint8_t *data, size_t size)
{
    rscfg *cfg = malloc(3 * sizeof(*cfg)); /* the loaded, the original and the reloaded */
    require(cfg != NULL);
    rscfg *before = cfg + 1, *again = cfg + 2;
    char err[ERRLEN] = "";
    rscfg_defaults(cfg);
    memcpy(before, cfg, sizeof(*cfg));
    if (rscfg_load_string(cfg, "fuzz.conf", (const char *)data, size, err, sizeof(err)) != 0) {
        require_message(err);
        require(strncmp(err, "fuzz.conf:", 10) == 0);
        require(memcmp(cfg, before, sizeof(*cfg)) == 0);
        free(cfg);
        return;
    }
    free(print_to_string(cfg)); /* with the secret, printed as a comment */
    cfg->auth_secret[0] = '\0';
    char *printed = print_to_string(cfg);
    rscfg_defaults(again);
    require(rscfg_load_string(again, "printed", printed, strlen(printed), err, sizeof(err)) == 0);
    char *reprinted = print_to_string(again);
    require(strcmp(printed, reprinted) == 0);
    free(printed);
    free(reprinted);
    free(cfg);
}

/* Splits the bytes at '\n' into at most MAX_ARGS NUL-terminated strings in buf (size + 1
 * bytes), leaving out those that would name a file to read. Returns their number. */
static int split_lines(const uint8_t *data, size_t size, char *buf, char **out)
{
    memcpy(buf, data, size);
    buf[size] = '\0';
    int n = 0;
    for (char *p = buf; n < MAX_ARGS && p <= buf + size;) {
        char *nl = memchr(p, '\n', (size_t)(buf + size - p));
        if (nl != NULL)
            *nl = '\0';
        if (strncmp(p, "--config", 8) != 0 && strncmp(p, "RISKSIM_CONFIG", 14) != 0)
            out[n++] = p;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return n;
}

/* The lines as flags, then as environment variables, of the whole load (no file is read). */
static void check_load(const uint8_t *data, size_t size)
{
    rscfg cfg;
    char *buf = malloc(size + 1);
    require(buf != NULL);
    char *lines[MAX_ARGS + 1]; /* and the NULL that ends them as envp */
    int n = split_lines(data, size, buf, lines);
    char *argv[MAX_ARGS + 2];
    argv[0] = "risksim-fuzz";
    for (int i = 0; i < n; i++)
        argv[i + 1] = lines[i];
    argv[n + 1] = NULL;
    char err[ERRLEN] = "";
    rscfg_actions act;
    if (rscfg_load_from(&cfg, NULL, n + 1, argv, NULL, &act, err, sizeof(err)) != 0)
        require_message(err);
    else
        require(act.config_file == NULL && rscfg_check(&cfg, err, sizeof(err)) == 0);
    lines[n] = NULL;
    char *argv0[] = {"risksim-fuzz", NULL};
    err[0] = '\0';
    if (rscfg_load_from(&cfg, NULL, 1, argv0, lines, &act, err, sizeof(err)) != 0)
        require_message(err);
    free(buf);
}

/* The first line as a listen address. */
static void check_addr(const uint8_t *data, size_t size)
{
    char text[256];
    size_t n = 0;
    while (n < size && n + 1 < sizeof(text) && data[n] != '\n' && data[n] != '\0') {
        text[n] = (char)data[n];
        n++;
    }
    text[n] = '\0';
    rscfg_addr addr;
    char err[ERRLEN] = "";
    if (rscfg_addr_parse(text, &addr, err, sizeof(err)) != 0) {
        require_message(err);
        return;
    }
    switch (addr.kind) {
    case RSCFG_ADDR_FD0:
        require(text[0] == '\0');
        break;
    case RSCFG_ADDR_UNIX:
        require(addr.path[0] == '/' && strlen(addr.path) < sizeof(addr.path));
        break;
    case RSCFG_ADDR_INET:
    case RSCFG_ADDR_INET6:
        require(addr.port >= 1 && addr.port <= 65535 && addr.host[0] != '\0');
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    check_file(data, size);
    check_load(data, size);
    check_addr(data, size);
    return 0;
}
