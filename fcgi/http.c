/*
 * HTTP over FastCGI: request parameters, bodies and responses (see http.h).
 *
 * Why this file exists: FastCGI hands the responder CGI-style parameters and a stdin stream;
 * this file is the one place that knows how Apache's mod_proxy_fcgi and lighttpd's mod_fastcgi
 * pass them (REQUEST_URI, or SCRIPT_NAME + PATH_INFO; CONTENT_LENGTH or none for a chunked
 * body; HTTP_* headers) and how a FastCGI responder answers (a Status header, then the body).
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "http.h"

void http_req_init(http_req *r, FCGX_Request *fcgx, const char *base_path)
{
    memset(r, 0, sizeof(*r));
    r->fcgx = fcgx;
    r->start = rsclock_monotonic();
    FCGX_ParamArray env = fcgx->envp;
    r->method_text = FCGX_GetParam("REQUEST_METHOD", env);
    r->method = route_method_parse(r->method_text != NULL ? r->method_text : "");
    r->content_type = FCGX_GetParam("CONTENT_TYPE", env);
    r->authorization = FCGX_GetParam("HTTP_AUTHORIZATION", env);
    r->idempotency_key = FCGX_GetParam("HTTP_IDEMPOTENCY_KEY", env);
    r->prefer = FCGX_GetParam("HTTP_PREFER", env);
    r->remote_addr = FCGX_GetParam("REMOTE_ADDR", env);
    const char *uri = FCGX_GetParam("REQUEST_URI", env);
    if (uri != NULL) {
        size_t len = strlen(uri);
        if (len > HTTP_URI_MAX) {
            r->uri_too_long = 1;
            len = 0;
        }
        memcpy(r->uri, uri, len);
        r->uri[len] = '\0';
    } else if (route_uri_from_parts(
                   FCGX_GetParam("SCRIPT_NAME", env), FCGX_GetParam("PATH_INFO", env),
                   FCGX_GetParam("QUERY_STRING", env), r->uri, sizeof(r->uri)) != 0) {
        r->uri_too_long = 1;
        r->uri[0] = '\0';
    }
    route_match(r->uri, base_path, &r->route);
}

void http_req_clear(http_req *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* Parses CONTENT_LENGTH: 1 with *out set, 0 when absent or empty, -1 when malformed. */
static int content_length(const char *text, size_t *out)
{
    if (text == NULL || text[0] == '\0')
        return 0;
    size_t v = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10)
            return -1;
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return 1;
}

http_body_result http_read_body(http_req *r, size_t max)
{
    size_t declared = 0;
    int has_length = content_length(FCGX_GetParam("CONTENT_LENGTH", r->fcgx->envp), &declared);
    if (has_length < 0)
        return HTTP_BODY_BAD_LENGTH;
    if (has_length && declared > max)
        return HTTP_BODY_TOO_LARGE;
    size_t cap = has_length ? declared : 16384;
    if (cap > max)
        cap = max;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return HTTP_BODY_NOMEM;
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= max + 1) /* one byte past max proves the body is too large */
                break;
            size_t grown = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *bigger = realloc(buf, grown + 1);
            if (bigger == NULL) {
                free(buf);
                return HTTP_BODY_NOMEM;
            }
            buf = bigger;
            cap = grown;
        }
        int n = FCGX_GetStr(buf + len, (int)(cap - len > 65536 ? 65536 : cap - len), r->fcgx->in);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    r->body = buf;
    r->body_len = len;
    if (len > max)
        return HTTP_BODY_TOO_LARGE;
    if (has_length && len != declared)
        return HTTP_BODY_BAD_LENGTH;
    return HTTP_BODY_OK;
}

int http_is_json_type(const char *content_type)
{
    if (content_type == NULL)
        return 0;
    size_t len = strcspn(content_type, ";");
    while (len > 0 && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
        len--;
    static const char json[] = "application/json";
    if (len == sizeof(json) - 1 && strncasecmp(content_type, json, len) == 0)
        return 1;
    /* application/<anything>+json */
    static const char prefix[] = "application/";
    return len > sizeof(prefix) - 1 + 5 &&
           strncasecmp(content_type, prefix, sizeof(prefix) - 1) == 0 &&
           strncasecmp(content_type + len - 5, "+json", 5) == 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

void http_respond(http_req *r, int status, const char *content_type, const char *headers,
                  const char *body, size_t len)
{
    r->status = status;
    FCGX_Stream *out = r->fcgx->out;
    /* Formatted here: libfcgi's own FCGX_FPrintF knows no size_t conversions. */
    char head[512];
    int n = snprintf(head, sizeof(head), "Status: %d %s\r\n", status, http_reason(status));
    if (content_type != NULL && n > 0 && (size_t)n < sizeof(head))
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %s\r\n", content_type);
    if (body != NULL && n > 0 && (size_t)n < sizeof(head))
        snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", len);
    FCGX_PutS(head, out);
    FCGX_PutS("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n", out);
    if (headers != NULL)
        FCGX_PutS(headers, out);
    FCGX_PutS("\r\n", out);
    if (body != NULL && len > 0 && r->method != METHOD_HEAD) {
        size_t done = 0;
        while (done < len) {
            size_t part = len - done > 1u << 20 ? 1u << 20 : len - done;
            if (FCGX_PutStr(body + done, (int)part, out) < 0)
                break;
            done += part;
        }
    }
}

void http_respond_json(http_req *r, int status, const char *headers, struct json_object *obj)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL) {
        static const char fallback[] =
            "{\"type\":\"urn:risksim:problem:internal\",\"title\":\"Out of memory\","
            "\"status\":503}";
        http_respond(r, 503, "application/problem+json", "Retry-After: 1\r\n", fallback,
                     sizeof(fallback) - 1);
        return;
    }
    http_respond(r, status, status >= 400 ? "application/problem+json" : "application/json",
                 headers, text, len);
}

void http_problem(http_req *r, int status, const char *slug, const char *title, const char *detail,
                  struct json_object *errors, const char *headers)
{
    json_object *p = json_object_new_object();
    char type[128];
    snprintf(type, sizeof(type), "urn:risksim:problem:%s", slug);
    if (p != NULL) {
        json_object_object_add(p, "type", json_object_new_string(type));
        json_object_object_add(p, "title", json_object_new_string(title));
        json_object_object_add(p, "status", json_object_new_int(status));
        if (detail != NULL)
            json_object_object_add(p, "detail", json_object_new_string(detail));
        if (r->uri[0] != '\0')
            json_object_object_add(p, "instance", json_object_new_string(r->uri));
        if (errors != NULL)
            json_object_object_add(p, "errors", errors);
        errors = NULL;
    }
    json_object_put(errors);
    http_respond_json(r, status, headers, p);
    json_object_put(p);
}
