/*
 * risksim config: the settings of both daemons (risksim-fcgi and risksim-wsbridge).
 *
 * Why this file exists: the two daemons read one configuration file and must agree on every
 * shared key (the job store, the log level, the JWT secret), on the syntax of the file and on
 * how the file, the environment and the command line combine. Keeping that in one table here,
 * rather than in each daemon, means a key has exactly one name, type, default, range and
 * message everywhere. docs/configuration.md documents every key; a test keeps it complete.
 *
 * The table is the source of truth: defaults are set by parsing each key's default text with the
 * same code that parses the file, so a default can never be outside its own range. Nothing here
 * prints except rscfg_print and rscfg_usage, which write to a stream the caller gives. The load
 * functions change libinih's run-time options (see config.c) and are meant to be called at
 * start-up, before other threads exist.
 */
#ifndef RISKSIM_CONFIG_H
#define RISKSIM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "risksim/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The file read when neither --config nor RISKSIM_CONFIG names one (skipped when missing). */
#define RSCFG_DEFAULT_PATH "/etc/risksim/risksim.conf"

/* The longest line of a configuration file, in bytes without the newline. */
#define RSCFG_LINE_MAX 8192

/* The largest configuration file read, in bytes. */
#define RSCFG_FILE_MAX (1024 * 1024)

/* Every setting. String members hold at most their size - 1 bytes (the key's maximum length). */
typedef struct rscfg {
    /* Shared by both daemons. */
    char db_path[4096];         /* the SQLite job store file */
    rslog_level log_level;      /* messages above this level are dropped */
    char auth_secret[513];      /* HS256 JWT secret; "" = authentication off */
    char allowed_origins[2049]; /* WebSocket Origins: "" = same origin, "*" = any, or a list */

    /* The responder, risksim-fcgi. */
    char listen[4096];           /* "" = socket on fd 0; unix:/path; HOST:PORT (rscfg_addr_parse) */
    unsigned int listen_mode;    /* mode of a unix socket (0 to 0777) */
    char base_path[256];         /* mount point: "" or "/x" without a trailing slash */
    unsigned int threads;        /* request threads */
    unsigned int workers;        /* job worker threads of this process (0: no async jobs here) */
    unsigned int sim_threads;    /* engine threads per simulation */
    size_t max_body_bytes;       /* largest request body */
    uint64_t max_sync_trials;    /* most trials of a synchronous request (<= max_trials) */
    uint64_t max_trials;         /* most trials of any request */
    unsigned int max_depth;      /* deepest model tree */
    unsigned int max_nodes;      /* most model nodes */
    unsigned int queue_size;     /* queued jobs before 503 */
    bool async_enabled;          /* whether asynchronous jobs are accepted */
    unsigned int lease_s;        /* job lease length */
    unsigned int max_attempts;   /* claims of one job before it fails */
    uint64_t retention_s;        /* how long finished jobs are kept; 0 = forever */
    uint64_t progress_trials;    /* trials between progress events of a job ... */
    unsigned int progress_ms;    /* ... and the least time between them */
    unsigned int max_wait_s;     /* longest long poll */
    unsigned int max_waiters;    /* concurrent long polls per process */
    unsigned int retry_after_s;  /* Retry-After of a 503 */
    size_t checkpoint_bytes;     /* WAL size above which maintenance empties it (TRUNCATE) */
    unsigned int maintenance_ms; /* period of the maintenance pass */
    char sync_deprecation[65];   /* Deprecation header on POST /simulations; "" = none */
    char sync_sunset[65];        /* Sunset header (an HTTP-date); "" = none */
    char sync_link[1025];        /* Link header; "" = none */

    /* The bridge, risksim-wsbridge. */
    char bridge_listen[256];          /* unix:/path or HOST:PORT (never "") */
    unsigned int poll_ms;             /* event log polling period */
    unsigned int heartbeat_s;         /* heartbeat message period */
    unsigned int ping_s;              /* WebSocket ping period */
    unsigned int idle_timeout_s;      /* a session with no traffic this long is closed */
    size_t max_frame_bytes;           /* largest client frame */
    unsigned int max_sessions;        /* open sessions */
    unsigned int max_sessions_per_ip; /* open sessions from one address */
    unsigned int session_queue;       /* messages queued to one slow client */
    bool ws_deflate;                  /* permessage-deflate */
} rscfg;

/* Sets every key of *cfg to its default. */
void rscfg_defaults(rscfg *cfg);

/* Sets one key from its text, given as in the file (without quotes, comments or surrounding
 * spaces). key is the file name of the key ("max_trials"). Returns 0, or -1 with
 * "key: message" (or "unknown key \"key\"") in err (errlen bytes; err may be NULL when errlen
 * is 0); *cfg is unchanged on failure. */
int rscfg_set(rscfg *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Parses configuration text (len bytes, need not end with NUL) in the file syntax and applies
 * it over *cfg. name is used in messages only. Returns 0, or -1 with "NAME:LINE: message" in err;
 * *cfg is unchanged on failure. Does not run rscfg_check. */
int rscfg_load_string(rscfg *cfg, const char *name, const char *text, size_t len, char *err,
                      size_t errlen);

/* Reads the file at path (at most RSCFG_FILE_MAX bytes) and applies it as rscfg_load_string.
 * Returns 0, or -1 with "PATH: message" (cannot open or read) or "PATH:LINE: message" in err;
 * *cfg is unchanged on failure. A missing file is an error. */
int rscfg_load_file(rscfg *cfg, const char *path, char *err, size_t errlen);

/* The checks across keys (max_sync_trials <= max_trials). Returns 0, or -1 with a message naming
 * the keys in err. */
int rscfg_check(const rscfg *cfg, char *err, size_t errlen);

/* What the flags ask the daemon to do besides running. */
typedef struct rscfg_actions {
    int print_config; /* --print-config: print the loaded configuration and exit */
    int check_config; /* --check-config: load, check and exit */
    int help;         /* --help: print rscfg_usage and exit (nothing was loaded) */
    int version;      /* --version: print the version and exit (nothing was loaded) */
    /* The file that was read: points into argv, envp or the default path given; NULL when no
     * file was read (the default file was missing). */
    const char *config_file;
} rscfg_actions;

/* The whole load, in precedence order: defaults, then the file (--config FILE, else
 * $RISKSIM_CONFIG, else default_path when it exists; a file that was named and is missing is an
 * error), then the RISKSIM_<KEY> variables of envp (NULL-terminated; other RISKSIM_* variables
 * are ignored), then the --key-with-dashes VALUE (or =VALUE) flags of argv[1..argc-1], then
 * rscfg_check. argv may also contain --config FILE, --print-config, --check-config, --help and
 * --version; with --help or --version nothing is loaded and *cfg holds the defaults. Fills
 * *actions (may be NULL). Returns 0, or -1 with a message in err: "FILE:LINE: message",
 * "RISKSIM_KEY: message" or "--flag: message". Strings in *actions point into argv and envp. */
int rscfg_load_from(rscfg *cfg, const char *default_path, int argc, char *const *argv,
                    char *const *envp, rscfg_actions *actions, char *err, size_t errlen);

/* rscfg_load_from with default_path RSCFG_DEFAULT_PATH. */
int rscfg_load(rscfg *cfg, int argc, char *const *argv, char *const *envp, rscfg_actions *actions,
               char *err, size_t errlen);

/* Writes every key as "key = value" in the file syntax (strings quoted), grouped and commented,
 * so that the output can be read back as a file. A set auth_secret is never written: its line
 * is a comment giving only its length. */
void rscfg_print(const rscfg *cfg, FILE *out);

/* Writes the usage text: the action flags, then every key's flag with its default and a one-line
 * description. */
void rscfg_usage(FILE *out, const char *program);

/* The number of keys, and key i's file name and default text (NULL when i is out of range). */
size_t rscfg_key_count(void);
const char *rscfg_key_name(size_t i);
const char *rscfg_key_default(size_t i);

/* A parsed listen address (listen, bridge_listen). */
typedef enum rscfg_addr_kind {
    RSCFG_ADDR_FD0 = 0, /* "": the listening socket the web server passed on fd 0 */
    RSCFG_ADDR_UNIX,    /* unix:/absolute/path */
    RSCFG_ADDR_INET,    /* IPv4-LITERAL:PORT */
    RSCFG_ADDR_INET6    /* [IPv6-LITERAL]:PORT */
} rscfg_addr_kind;

typedef struct rscfg_addr {
    rscfg_addr_kind kind;
    char host[46];     /* INET and INET6: the IP literal, without brackets (for inet_pton) */
    unsigned int port; /* INET and INET6: 1 to 65535 */
    char path[108];    /* UNIX: the absolute path (fits sockaddr_un.sun_path) */
} rscfg_addr;

/* Parses a listen address: "" (RSCFG_ADDR_FD0), "unix:/absolute/path", "A.B.C.D:PORT" or
 * "[IPv6]:PORT" (IP literals only, no names). Returns 0 with *out filled, or -1 with a message
 * (not naming the key) in err. */
int rscfg_addr_parse(const char *value, rscfg_addr *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
