/*
 * HTTP over FastCGI: one request's parameters and body in, one response out, and the
 * application/problem+json errors of docs/api.md section 3.
 *
 * Why this file exists: the endpoints should read like the API they implement, not like the
 * FastCGI record layer. This module turns an accepted FCGX_Request into an http_req (method,
 * route, the headers the API uses, the body read to its end under max_body_bytes even when
 * Apache sends a chunked body without CONTENT_LENGTH) and writes responses: status line,
 * headers, body, HEAD without a body, and problem documents.
 */
#ifndef RISKSIM_FCGI_HTTP_H
#define RISKSIM_FCGI_HTTP_H

#include <fcgiapp.h>
#include <stddef.h>

#include "risksim/route.h"

struct json_object;

/* Longest REQUEST_URI accepted (longer ones are answered 414). */
#define HTTP_URI_MAX 8192

typedef struct http_req {
    FCGX_Request *fcgx;
    const char *method_text; /* as sent */
    route_method method;
    char uri[HTTP_URI_MAX + 1]; /* REQUEST_URI, or rebuilt from SCRIPT_NAME + PATH_INFO */
    int uri_too_long;
    route route;
    const char *content_type;    /* may be NULL */
    const char *authorization;   /* may be NULL */
    const char *idempotency_key; /* may be NULL */
    const char *prefer;          /* may be NULL */
    const char *remote_addr;     /* may be NULL */
    char *body;                  /* NUL-terminated, after http_read_body */
    size_t body_len;
    int status;   /* the status sent, for logs and metrics (0 until a response) */
    double start; /* monotonic seconds at accept */
} http_req;

/* Fills r from an accepted request and matches its route under base_path. */
void http_req_init(http_req *r, FCGX_Request *fcgx, const char *base_path);

/* Frees what http_req_init and http_read_body allocated. */
void http_req_clear(http_req *r);

/* Outcome of reading a body. */
typedef enum http_body_result {
    HTTP_BODY_OK = 0,
    HTTP_BODY_TOO_LARGE,  /* over max bytes (by CONTENT_LENGTH or by what arrived) */
    HTTP_BODY_BAD_LENGTH, /* CONTENT_LENGTH is not a number or does not match the body */
    HTTP_BODY_NOMEM
} http_body_result;

/* Reads the request body to its end (up to max bytes; CONTENT_LENGTH is checked when present,
 * and the stream is read to EOF when it is absent) into r->body. */
http_body_result http_read_body(http_req *r, size_t max);

/* Returns 1 when the request's Content-Type is JSON (application/json or a +json type, any
 * parameters), else 0. */
int http_is_json_type(const char *content_type);

/* Sends a response: status, the Content-Type (may be NULL for none), extra header lines
 * (each "Name: value\r\n", may be NULL) and body (len bytes; not sent for HEAD). */
void http_respond(http_req *r, int status, const char *content_type, const char *headers,
                  const char *body, size_t len);

/* Sends obj as application/json (or, with problem set, application/problem+json). */
void http_respond_json(http_req *r, int status, const char *headers, struct json_object *obj);

/* Sends a problem document: {"type":"urn:risksim:problem:<slug>","title","status","detail",
 * "instance"} plus "errors" when errors is non-NULL (ownership of errors passes to the call).
 * headers as in http_respond. */
void http_problem(http_req *r, int status, const char *slug, const char *title, const char *detail,
                  struct json_object *errors, const char *headers);

/* The reason phrase of an HTTP status ("Not Found"). */
const char *http_reason(int status);

#endif
