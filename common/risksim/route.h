/*
 * risksim route: the router and query-string parser of the HTTP API (both daemons).
 *
 * Why this file exists: every request reaching risksim-fcgi (or the bridge) must be mapped to one
 * endpoint of the HTTP API, and the mapping must be the same behind Apache (mod_proxy_fcgi) and
 * lighttpd (mod_fastcgi), whatever the mount point. Doing it in pure functions over plain strings
 * keeps the rules in one place, lets the unit tests and the fuzz target drive them without a
 * server, and keeps the untrusted bytes of the request line away from the rest of the responder: a
 * handler receives a route kind, a job id that has already been checked, and a query string it
 * reads only through query_param. Nothing here allocates, prints or keeps state; route.c uses
 * libc alone.
 *
 * Endpoints (paths relative to the mount point base_path, e.g. "/risksim"):
 *
 *   GET /simulations?status=&limit=&before=, POST /simulations    ROUTE_SIMULATIONS
 *   POST /simulations/async                                        ROUTE_ASYNC
 *   GET, DELETE /simulations/{id}                                  ROUTE_JOB
 *   GET /simulations/{id}/events?after=SEQ&wait=S                  ROUTE_EVENTS
 *   GET /simulations/{id}/stream (WebSocket, served by the bridge) ROUTE_STREAM
 *   GET /healthz                                                   ROUTE_HEALTHZ
 *   GET /metrics                                                   ROUTE_METRICS
 *
 * Matching rules of route_match:
 *   - the URI is the raw request target, a path optionally followed by "?query"; the first '?'
 *     ends the path and everything after it is the query. A URI longer than ROUTE_URI_MAX bytes
 *     matches nothing;
 *   - the path must begin with base_path and continue with '/' right after it (a segment
 *     boundary: "/risksim" matches "/risksim/healthz", not "/risksimx/healthz"); with base_path
 *     "" the whole path is relative to "/";
 *   - the path must then be exactly one of the endpoints above: no trailing slash, no empty
 *     segment ("//"), no "." or ".." segment, and only visible ASCII (0x21 to 0x7E) with neither
 *     '%' nor '#'. Percent-encoding is never needed in a path of this API (job ids are plain
 *     letters and digits), so a '%' makes the path match nothing instead of being decoded; a
 *     client does not send a fragment, so a '#' matches nothing as well. Matching is
 *     case-sensitive;
 *   - the segment after "simulations" is a job id unless it is "async": "/simulations/async" is
 *     ROUTE_ASYNC and any longer path under it matches nothing. Any other segment is taken as
 *     the {id}; when it does not have the form of a job id (route_id_valid) the route keeps its
 *     kind (ROUTE_JOB, ROUTE_EVENTS or ROUTE_STREAM) with id_valid 0, so that the responder can
 *     answer "no such job" rather than "no such route".
 */
#ifndef RISKSIM_ROUTE_H
#define RISKSIM_ROUTE_H

#include <stddef.h>
#include <stdint.h>

/* The longest request URI (path and query, without the NUL) that route_match accepts. */
#define ROUTE_URI_MAX 8192

/* The longest base_path accepted (without the NUL). */
#define ROUTE_BASE_MAX 255

/* A job id: 26 characters of Crockford base32 in upper case, plus the NUL. */
#define ROUTE_ID_LEN 26
#define ROUTE_ID_SIZE (ROUTE_ID_LEN + 1)

/* The longest parameter name (decoded bytes) that query_param can look up. */
#define QUERY_NAME_MAX 64

typedef enum route_kind {
    ROUTE_NONE = 0,    /* no endpoint has this path (404) */
    ROUTE_SIMULATIONS, /* /simulations */
    ROUTE_ASYNC,       /* /simulations/async */
    ROUTE_JOB,         /* /simulations/{id} */
    ROUTE_EVENTS,      /* /simulations/{id}/events */
    ROUTE_STREAM,      /* /simulations/{id}/stream */
    ROUTE_HEALTHZ,     /* /healthz */
    ROUTE_METRICS      /* /metrics */
} route_kind;

/* The number of route kinds, ROUTE_NONE included. */
#define ROUTE_KINDS 8

typedef enum route_method {
    METHOD_GET = 0,
    METHOD_HEAD,
    METHOD_POST,
    METHOD_DELETE,
    METHOD_OPTIONS,
    METHOD_OTHER /* any other method, or none */
} route_method;

/* What route_match found. */
typedef struct route {
    route_kind kind;
    int id_valid;           /* ROUTE_JOB, ROUTE_EVENTS, ROUTE_STREAM: 1 when {id} is a job id */
    char id[ROUTE_ID_SIZE]; /* the id when id_valid, "" otherwise */
    const char *query;      /* into the URI just after the first '?', or "" when there is none
                               (set for every kind, ROUTE_NONE included); borrowed, lives as
                               long as the URI passed to route_match */
} route;

/* Returns the method named by the REQUEST_METHOD text: "GET", "HEAD", "POST", "DELETE" or
 * "OPTIONS" exactly (case-sensitive); METHOD_OTHER for anything else, NULL included. */
route_method route_method_parse(const char *method);

/* Returns 1 when base_path can be a mount point: "" or "/" followed by one or more segments
 * separated by '/', each non-empty, neither "." nor "..", of visible ASCII without '%', '#' or
 * '?', with no trailing slash, at most ROUTE_BASE_MAX bytes. Returns 0 otherwise (NULL included).
 */
int route_base_valid(const char *base_path);

/* Returns 1 when the len bytes at text have the form of a job id: exactly ROUTE_ID_LEN characters
 * of "0123456789ABCDEFGHJKMNPQRSTVWXYZ". Returns 0 otherwise. Reads at most len bytes. */
int route_id_valid(const char *text, size_t len);

/* Matches request_uri (REQUEST_URI, the raw target as sent by the client, "?query" included)
 * against the endpoints mounted at base_path, following the rules at the top of this file, and
 * fills *out; out->query points into request_uri, which the caller keeps alive while it uses the
 * route. Returns 0, whether or not a route was found (out->kind is ROUTE_NONE when none was).
 * Returns -1 when out is NULL, request_uri is NULL or base_path is not valid (route_base_valid);
 * *out (if any) is then ROUTE_NONE with query "". Reads at most ROUTE_URI_MAX + 1 bytes. */
int route_match(const char *request_uri, const char *base_path, route *out);

/* For servers that pass no REQUEST_URI: writes script_name followed by path_info, then '?' and
 * query_string when query_string is not empty, and a NUL to buf (len bytes). Any argument but buf
 * may be NULL, meaning "". Note that servers pass PATH_INFO decoded, so a URI rebuilt this way
 * cannot show the percent-encoding of the original. Returns 0, or -1 when buf is NULL or the
 * result does not fit in len bytes (buf is then "" when len > 0). */
int route_uri_from_parts(const char *script_name, const char *path_info, const char *query_string,
                         char *buf, size_t len);

/* Returns 1 when kind answers method, 0 otherwise. HEAD is allowed wherever GET is and OPTIONS
 * wherever a route exists; ROUTE_NONE allows nothing. */
int route_allows(route_kind kind, route_method method);

/* Returns the value of the Allow header for kind (for a 405 answer or OPTIONS), such as
 * "GET, HEAD, POST, OPTIONS": exactly the methods route_allows accepts, in the order GET, HEAD,
 * POST, DELETE, OPTIONS. "" for ROUTE_NONE or an unknown kind. The string is static. */
const char *route_allow_header(route_kind kind);

/* Returns a short, stable, static label of kind for metrics and logs: "simulations", "async",
 * "job", "events", "stream", "healthz", "metrics", or "none" (also for an unknown kind). */
const char *route_name(route_kind kind);

/* ---------------------------------------------------------------------------------------------
 * Query strings
 *
 * A query is application/x-www-form-urlencoded: parameters separated by '&', each "name=value"
 * or "name" alone (an empty value); only the first '=' separates, so "a=b=c" has the value "b=c".
 * In names and values '+' stands for a space and %XX (hex digits of either case) for the byte XX.
 * Empty parameters ("a=1&&b=2", a leading or trailing '&') are skipped. A parameter is malformed
 * when its name is empty ("=1"), when a '%' is not followed by two hex digits, or when its
 * decoded name or value contains a control character (0x00 to 0x1F or 0x7F) or is not valid
 * UTF-8. A decoded name or value is thus always printable text.
 * ------------------------------------------------------------------------------------------- */

/* Looks up the parameter name (compared with the decoded names) in query. Returns 1 when it
 * appears once: its decoded value is written to out (out_len bytes) with a NUL. Returns 0 when it
 * does not appear (out is then "" if out_len > 0). Returns -1 when query or name is NULL, name is
 * empty or longer than QUERY_NAME_MAX, any parameter of query is malformed, name appears more
 * than once, or its value does not fit in out_len bytes with the NUL; out is then "" if
 * out_len > 0. out may be NULL only when out_len is 0. */
int query_param(const char *query, const char *name, char *out, size_t out_len);

/* Checks each parameter of query in order: it must be well-formed and its decoded name must be
 * one of allowed (an array of names ending with NULL). Returns 0 when all are. Otherwise returns
 * -1 and writes to bad (bad_len bytes, NUL-terminated, cut at a UTF-8 character boundary) the
 * decoded name of the first parameter that is unknown or malformed; when that name itself cannot
 * be decoded, its raw bytes are written with each byte outside visible ASCII replaced by '?'.
 * Empty parameters are skipped; an empty name is reported as "". A NULL query or allowed gives
 * -1 and "". bad may be NULL only when bad_len is 0. */
int query_check_names(const char *query, const char *const *allowed, char *bad, size_t bad_len);

/* Parses text as an unsigned decimal in [min, max] and stores it in *out. The text must be
 * digits only: not empty, no sign, no space, no leading zero (except "0" itself, so that every
 * number has one spelling), and no overflow of uint64_t. Returns 0, or -1 (with *out unchanged)
 * when text is not such a number, is out of range, or an argument is NULL. */
int query_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out);

#endif
