/*
 * libFuzzer target: the bridge's parsers of untrusted input (wsbridge/message.c).
 *
 * Why this file exists: a WebSocket client controls the stream URL's query, the Origin, Host
 * and X-Forwarded-For headers and every message it sends; the bridge reads all of them with the
 * functions of message.c before anything else happens. This target feeds arbitrary bytes to
 * each of them and checks, besides the absence of crashes and out-of-bounds accesses (the
 * sanitizers), what must hold for any input: an accepted query has a cursor in [0, 2^63) and a
 * filter that keeps the status and terminal events; every reason is NUL-terminated, at most a
 * close frame's 123 bytes and free of control characters; a re-encoded parameter contains only
 * query characters and decodes back to its input through query_param; the chosen client
 * address is the peer or an address literal; a client message is a ping only when it is a JSON
 * object; and every message the bridge builds from the input is a JSON object that parses.
 *
 * Input: the first byte chooses the part exercised (its value modulo 5: query, client message,
 * Origin check, client address, parameter re-encoding); the rest is the text, split at the
 * first and second newline where a part takes several strings. Seeds are in corpus/wsmsg.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "risksim/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest input text looked at (longer inputs are cut). */
#define TEXT_MAX 16384

static void require(int cond)
{
    if (!cond)
        abort();
}

/* A reason: NUL-terminated within its buffer, short enough for a close frame, no control
 * characters. */
static void check_reason(const char *why, size_t cap)
{
    size_t n = strnlen(why, cap);
    require(n < cap);
    require(n <= WSMSG_REASON_MAX);
    for (size_t i = 0; i < n; i++)
        require((unsigned char)why[i] >= 0x20 && why[i] != 0x7f);
}

/* A JSON object that parses. */
static void check_json_object(const char *text, int len)
{
    if (len < 0)
        return;
    require((size_t)len == strlen(text));
    json_object *o = json_tokener_parse(text);
    require(o != NULL && json_object_is_type(o, json_type_object));
    json_object_put(o);
}

static void fuzz_query(const char *text)
{
    wsmsg_query q;
    char why[WSMSG_REASON_MAX + 1];
    if (wsmsg_query_parse(text, &q, why, sizeof(why)) == 0) {
        require(q.after >= 0);
        require((q.types & WSMSG_T_ALWAYS) == WSMSG_T_ALWAYS);
        require((q.types & ~WSMSG_T_ALL) == 0);
    } else {
        check_reason(why, sizeof(why));
    }
    char token[64];
    int found = wsmsg_query_token(text, token, sizeof(token));
    require(found >= -1 && found <= 1);
    require(strnlen(token, sizeof(token)) < sizeof(token));
    if (found != 1)
        require(token[0] == '\0');
}

static void fuzz_client(const char *text, size_t len)
{
    char why[128];
    wsmsg_client kind = wsmsg_client_parse(text, len, why, sizeof(why));
    require(strnlen(why, sizeof(why)) < sizeof(why));
    if (kind == WSMSG_CLIENT_PING) {
        json_object *o = json_tokener_parse(text);
        require(o != NULL && json_object_is_type(o, json_type_object));
        json_object_put(o);
        return;
    }
    char out[WSMSG_SMALL_MAX];
    check_json_object(out, wsmsg_bad_message(why, out, sizeof(out)));
    /* The bridge's messages built from client-controlled strings stay JSON objects. */
    char id[32];
    size_t n = len < sizeof(id) - 1 ? len : sizeof(id) - 1;
    memcpy(id, text, n);
    id[n] = '\0';
    check_json_object(out, wsmsg_reset(id, out, sizeof(out)));
    check_json_object(out, wsmsg_status(7, id, id, len, 3 * len, (int64_t)len, out, sizeof(out)));
}

/* Splits text at a newline: returns the rest after it (or NULL) and ends text there. */
static char *split(char *text)
{
    char *nl = strchr(text, '\n');
    if (nl == NULL)
        return NULL;
    *nl = '\0';
    return nl + 1;
}

static void fuzz_origin(char *text)
{
    char *origin = split(text);
    char *host = origin != NULL ? split(origin) : NULL;
    const char *modes[] = {"", "*", text};
    for (size_t i = 0; i < 3; i++) {
        int ok = wsmsg_origin_allowed(modes[i], origin, host);
        require(ok == 0 || ok == 1);
        if (i == 1 || origin == NULL || origin[0] == '\0')
            require(ok == 1);
    }
}

static void fuzz_client_ip(char *text, int proxy)
{
    char *xff = split(text);
    char ip[64];
    int from_xff = wsmsg_client_ip(text, proxy, xff, ip, sizeof(ip));
    require(strnlen(ip, sizeof(ip)) < sizeof(ip));
    if (from_xff) {
        require(proxy);
        require(strchr(ip, ',') == NULL && strchr(ip, ' ') == NULL);
    } else {
        require(strncmp(ip, text, strlen(ip)) == 0);
    }
}

static void fuzz_encode(const char *text, size_t len)
{
    static char out[3 * TEXT_MAX + 8];
    int n = wsmsg_encode_param(text, len, out, sizeof(out));
    require(n >= 0 && (size_t)n == strlen(out));
    for (int i = 0; i < n; i++) {
        char c = out[i];
        require((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == '=');
    }
    /* "name=value" with a plain name decodes back to the value. */
    const char *eq = memchr(text, '=', len);
    if (eq == NULL || eq == text || (size_t)(eq - text) > 16)
        return;
    for (const char *p = text; p < eq; p++) {
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            return;
    }
    char name[17];
    memcpy(name, text, (size_t)(eq - text));
    name[eq - text] = '\0';
    static char value[TEXT_MAX + 1];
    int found = query_param(out, name, value, sizeof(value));
    if (found == 1) {
        size_t vlen = len - (size_t)(eq + 1 - text);
        require(strlen(value) == vlen && memcmp(value, eq + 1, vlen) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static char text[TEXT_MAX + 1];
    size_t len = size - 1 < TEXT_MAX ? size - 1 : TEXT_MAX;
    memcpy(text, data + 1, len);
    text[len] = '\0';
    switch (data[0] % 5) {
    case 0:
        fuzz_query(text);
        break;
    case 1:
        fuzz_client(text, len);
        break;
    case 2:
        fuzz_origin(text);
        break;
    case 3:
        fuzz_client_ip(text, (data[0] / 5) & 1);
        break;
    default:
        fuzz_encode(text, strlen(text));
        break;
    }
    return 0;
}
