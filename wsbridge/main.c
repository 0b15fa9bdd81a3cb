/*
 * risksim-wsbridge: the WebSocket bridge's process: configuration, logging, then the service
 * loop of server.c until a stop signal.
 *
 * Why this file exists: the bridge starts the way the responder does: the same configuration
 * file, RISKSIM_* variables and --flags (common/config.c), the same --help, --version,
 * --print-config and --check-config, and a bad value stops the start with FILE:LINE before
 * anything listens. Everything else lives in the modules.
 */
#include <stdio.h>

#include "bridge.h"
#include "risksim/config.h"
#include "risksim/log.h"
#include "risksim/route.h"

extern char **environ;

#define PROGRAM "risksim-wsbridge"

/* Loads the configuration and handles the flags that only print. Returns 0 to run, or -1
 * with *exit_code set. */
static int load_config(rscfg *cfg, int argc, char **argv, int *exit_code)
{
    rscfg_actions actions;
    char err[1024];
    if (rscfg_load(cfg, argc, argv, environ, &actions, err, sizeof(err)) != 0) {
        fprintf(stderr, PROGRAM ": %s\n", err);
        *exit_code = 1;
        return -1;
    }
    *exit_code = 0;
    if (actions.help) {
        rscfg_usage(stdout, PROGRAM);
        return -1;
    }
    if (actions.version) {
        printf(PROGRAM " %s\n", RISKSIM_VERSION);
        return -1;
    }
    if (actions.print_config) {
        rscfg_print(cfg, stdout);
        return -1;
    }
    rscfg_addr addr;
    if (rscfg_addr_parse(cfg->bridge_listen, &addr, err, sizeof(err)) != 0 ||
        addr.kind == RSCFG_ADDR_FD0) {
        fprintf(stderr, PROGRAM ": bridge_listen: %s\n",
                addr.kind == RSCFG_ADDR_FD0 ? "must not be empty" : err);
        *exit_code = 1;
        return -1;
    }
    if (actions.check_config) {
        printf(PROGRAM ": configuration ok\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static rscfg cfg;
    int exit_code = 0;
    if (load_config(&cfg, argc, argv, &exit_code) != 0)
        return exit_code;
    rslog_init(PROGRAM, cfg.log_level);
    return wsb_run(&cfg);
}
