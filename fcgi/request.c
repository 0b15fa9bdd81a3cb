/*
 * The dispatcher: from a matched route and method to an endpoint, with the answers every
 * endpoint shares (404, 405 with Allow, OPTIONS, 414, 426 for the stream, auth).
 *
 * Why this file exists: the rules that hold before any endpoint runs are applied in one place,
 * in one order (route, method, auth), so that no endpoint can forget one.
 */
#include <stdio.h>
#include <string.h>

#include "risksim/auth.h"
#include "handlers.h"

/* The permission a route and method need. */
static rsauth_need need_of(const http_req *r)
{
    switch (r->route.kind) {
    case ROUTE_JOB:
    case ROUTE_EVENTS:
    case ROUTE_STREAM:
        return RSAUTH_NEED_JOB;
    case ROUTE_SIMULATIONS:
        return r->method == METHOD_POST ? RSAUTH_NEED_USER : RSAUTH_NEED_ADMIN;
    default:
        return RSAUTH_NEED_USER;
    }
}

/* Applies auth. Returns 0 to go on, or -1 after answering 400/401/403. */
static int authorize(app *a, http_req *r)
{
    if (a->cfg.auth_secret[0] == '\0')
        return 0;
    char token[RSAUTH_TOKEN_MAX + 1];
    int found = query_param(r->route.query, "token", token, sizeof(token));
    if (found < 0) {
        http_problem(r, 400, "bad-query", "Bad query parameter",
                     "The token parameter is malformed or given twice.", NULL, NULL);
        return -1;
    }
    char why[128];
    int status = rsauth_check(a->cfg.auth_secret, r->authorization, found == 1 ? token : NULL,
                              need_of(r), r->route.id_valid ? r->route.id : NULL,
                              rsclock_wall_ms() / 1000, why, sizeof(why));
    if (status == 0)
        return 0;
    if (status == 401)
        http_problem(r, 401, "unauthorized", "Authentication required", why, NULL,
                     "WWW-Authenticate: Bearer realm=\"risksim\"\r\n");
    else
        http_problem(r, 403, "forbidden", "Not allowed", why, NULL, NULL);
    return -1;
}

/* The query parameters each endpoint knows (every one also accepts `token`, for auth). Query
 * strings are strict: an unknown name is a 400, so that a typo is never silently ignored. */
static const char *const *allowed_params(const http_req *r)
{
    static const char *const list[] = {"status", "limit", "before", "token", NULL};
    static const char *const events[] = {"after", "wait", "token", NULL};
    /* the stream's own (docs/api.md section 5), so that a stream URL that reaches the responder
     * (a web server without the WebSocket route) gets its 426, not a 400 */
    static const char *const stream[] = {"after", "types", "token", NULL};
    static const char *const plain[] = {"token", NULL};
    if (r->route.kind == ROUTE_SIMULATIONS && r->method != METHOD_POST)
        return list;
    if (r->route.kind == ROUTE_EVENTS)
        return events;
    if (r->route.kind == ROUTE_STREAM)
        return stream;
    return plain;
}

static void respond_method_not_allowed(http_req *r)
{
    char headers[128];
    snprintf(headers, sizeof(headers), "Allow: %s\r\n", route_allow_header(r->route.kind));
    char detail[160];
    snprintf(detail, sizeof(detail), "%s is not allowed here; allowed: %s.",
             r->method_text != NULL ? r->method_text : "This method",
             route_allow_header(r->route.kind));
    http_problem(r, 405, "method-not-allowed", "Method not allowed", detail, NULL, headers);
}

/* Runs the endpoint of an allowed, authorized request. */
static void dispatch(app *a, conn *c, http_req *r)
{
    int post = r->method == METHOD_POST;
    switch (r->route.kind) {
    case ROUTE_SIMULATIONS:
        if (post)
            handle_run_sync(a, c, r);
        else
            handle_list_jobs(a, c, r);
        return;
    case ROUTE_ASYNC:
        handle_submit_async(a, c, r);
        return;
    case ROUTE_JOB:
        if (r->method == METHOD_DELETE)
            handle_cancel_job(a, c, r);
        else
            handle_get_job(a, c, r);
        return;
    case ROUTE_EVENTS:
        handle_events(a, c, r);
        return;
    case ROUTE_STREAM:
        http_problem(r, 426, "upgrade-required", "This is a WebSocket endpoint",
                     "Open it as a WebSocket (served by the bridge); to poll, use the events "
                     "endpoint.",
                     NULL, "Upgrade: websocket\r\n");
        return;
    case ROUTE_HEALTHZ:
        handle_healthz(a, c, r);
        return;
    case ROUTE_METRICS:
        handle_metrics(a, c, r);
        return;
    case ROUTE_NONE:
    default:
        http_problem(r, 404, "not-found", "No such resource", NULL, NULL, NULL);
        return;
    }
}

void handle_request(app *a, conn *c, http_req *r)
{
    if (r->uri_too_long) {
        http_problem(r, 414, "uri-too-long", "URI too long", NULL, NULL, NULL);
        return;
    }
    if (r->route.kind == ROUTE_NONE) {
        http_problem(r, 404, "not-found", "No such resource",
                     "See the API description for the endpoints.", NULL, NULL);
        return;
    }
    if (r->method == METHOD_OPTIONS) {
        char headers[128];
        snprintf(headers, sizeof(headers), "Allow: %s\r\n", route_allow_header(r->route.kind));
        http_respond(r, 204, NULL, headers, NULL, 0);
        return;
    }
    if (!route_allows(r->route.kind, r->method)) {
        respond_method_not_allowed(r);
        return;
    }
    if (check_query_names(r, allowed_params(r)) != 0)
        return;
    if (authorize(a, r) != 0)
        return;
    dispatch(a, c, r);
}
