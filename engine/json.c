/*
 * Strict JSON text to json-c objects.
 *
 * Why this file exists: the request body is untrusted. json-c's tokener does the parsing, but
 * even in strict mode json-c 0.16 accepts things that are not JSON (NaN and Infinity literals,
 * single-quoted keys, raw control characters in strings, "1." and "-01", overlong or surrogate
 * UTF-8). A small lexical pass here rejects them, so "strict" in engine.h means RFC 8259 with
 * RFC 3629 UTF-8. Every failure is one "invalid_json" problem that says at which byte offset
 * and why.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "parse.h"

/* json-c takes an int length: longer texts are fed in chunks of this size. */
#define JSON_CHUNK ((size_t)1 << 30)

size_t rs_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFFu || (v >= 0xD800u && v <= 0xDFFFu))
        return 0;
    *cp = v;
    return n;
}

static int is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Length of the run of digits at s[i..len). */
static size_t digits(const unsigned char *s, size_t len, size_t i)
{
    size_t j = i;
    while (j < len && is_digit(s[j]))
        j++;
    return j - i;
}

/* Checks the number starting at s[0] (len bytes available) against the JSON grammar
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. Returns its length, or 0 when it is not a
 * JSON number (e.g. "-", "01", "1.", "-Infinity"). */
static size_t number_length(const unsigned char *s, size_t len)
{
    size_t i = 0, n;
    if (i < len && s[i] == '-')
        i++;
    n = digits(s, len, i);
    if (n == 0 || (s[i] == '0' && n > 1))
        return 0;
    i += n;
    if (i < len && s[i] == '.') {
        n = digits(s, len, i + 1);
        if (n == 0)
            return 0;
        i += 1 + n;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        n = digits(s, len, i);
        if (n == 0)
            return 0;
        i += n;
    }
    /* a number must not run on into more number characters ("1.2.3", "0123") */
    if (i < len &&
        (is_digit(s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '+' || s[i] == 'e' || s[i] == 'E'))
        return 0;
    return i;
}

/* A lexical problem: where and why. */
typedef struct lex_error {
    size_t offset;
    const char *why; /* NULL: none found */
} lex_error;

/* Why a byte that may not appear raw is refused. */
static const char *control_reason(unsigned char c)
{
    return c == 0 ? "NUL byte" : "unescaped control character";
}

/* Skips the string whose opening quote is at s[i]. Returns the offset after the closing quote
 * (or len when unterminated: json-c reports that), or sets *err. */
static size_t skip_string(const unsigned char *s, size_t len, size_t i, lex_error *err)
{
    size_t j = i + 1;
    while (j < len) {
        unsigned char c = s[j];
        uint32_t cp;
        size_t n;
        if (c == '"')
            return j + 1;
        if (c == '\\') {
            j += 2; /* the escape itself is checked by json-c */
            continue;
        }
        if (c < 0x20) {
            err->offset = j, err->why = control_reason(c);
            return len;
        }
        n = rs_utf8_decode(s + j, len - j, &cp);
        if (n == 0) {
            err->offset = j, err->why = "invalid UTF-8";
            return len;
        }
        j += n;
    }
    return len;
}

/* Checks the literal word (a run of letters) at s[i]: only true, false and null exist in JSON.
 * Returns the offset after it, or sets *err. */
static size_t skip_word(const unsigned char *s, size_t len, size_t i, lex_error *err)
{
    size_t j = i;
    while (j < len && is_alpha(s[j]))
        j++;
    size_t n = j - i;
    if ((n == 4 && memcmp(s + i, "true", 4) == 0) || (n == 5 && memcmp(s + i, "false", 5) == 0) ||
        (n == 4 && memcmp(s + i, "null", 4) == 0))
        return j;
    err->offset = i;
    err->why = "not a JSON literal (only true, false and null; no NaN or Infinity)";
    return len;
}

/* Finds the first lexical place where s breaks strict JSON (see the top of the file). Structure
 * is left to json-c. */
static lex_error lex_check(const unsigned char *s, size_t len)
{
    lex_error err = {0, NULL};
    size_t i = 0;
    while (i < len && err.why == NULL) {
        unsigned char c = s[i];
        if (c == '"') {
            i = skip_string(s, len, i, &err);
        } else if (is_json_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' ||
                   c == ':') {
            i++;
        } else if (c == '-' || is_digit(c)) {
            size_t n = number_length(s + i, len - i);
            if (n == 0) {
                err.offset = i, err.why = "not a JSON number";
                break;
            }
            i += n;
        } else if (is_alpha(c)) {
            i = skip_word(s, len, i, &err);
        } else {
            err.offset = i;
            err.why = c < 0x20    ? control_reason(c)
                      : c == '\'' ? "single quotes are not JSON"
                                  : "unexpected character";
        }
    }
    return err;
}

/* Runs json-c over the whole text (in chunks when it is longer than an int), then ends a
 * pending top-level number or literal with one space. On success returns 1 with the value in
 * *out (NULL for the JSON null) and the offset where it ended in *end; on failure returns 0 with
 * the offset in *end and the reason in *why. */
static int tokenize(struct json_tokener *tok, const char *text, size_t len,
                    struct json_object **out, size_t *end, const char **why)
{
    struct json_object *obj = NULL;
    enum json_tokener_error jerr = json_tokener_continue;
    size_t base = 0;
    while (base < len) {
        size_t n = len - base < JSON_CHUNK ? len - base : JSON_CHUNK;
        obj = json_tokener_parse_ex(tok, text + base, (int)n);
        jerr = json_tokener_get_error(tok);
        if (jerr != json_tokener_continue) {
            *end = base + json_tokener_get_parse_end(tok);
            break;
        }
        base += n;
    }
    if (jerr == json_tokener_continue) {
        obj = json_tokener_parse_ex(tok, " ", 1);
        jerr = json_tokener_get_error(tok);
        *end = len;
    }
    if (jerr == json_tokener_success) {
        *out = obj;
        return 1;
    }
    json_object_put(obj);
    *why =
        jerr == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(jerr);
    if (*end > len)
        *end = len;
    return 0;
}

/* Records the one "invalid_json" problem. Returns RS_EJSON, or RS_ENOMEM when even that
 * failed. */
static rs_err json_error(rs_diag *diag, size_t offset, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "invalid JSON at byte offset %zu: %s", offset, why);
    if (rs_diag_add(diag, "", "invalid_json", msg) != RS_OK)
        return RS_ENOMEM;
    return RS_EJSON;
}

rs_err rs_json_parse(const char *text, size_t len, struct json_object **out, rs_diag *diag)
{
    struct json_tokener *tok = NULL;
    struct json_object *obj = NULL;
    rs_err err = RS_OK;
    size_t end = 0;
    const char *why = NULL;
    lex_error lex;

    if (out == NULL || (text == NULL && len > 0))
        return RS_EINVAL;
    *out = NULL;
    if (text == NULL)
        text = "";
    lex = lex_check((const unsigned char *)text, len);
    tok = json_tokener_new_ex(RS_JSON_MAX_NESTING);
    if (tok == NULL) {
        err = RS_ENOMEM;
        goto out;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    int parsed = tokenize(tok, text, len, &obj, &end, &why);
    if (lex.why != NULL && (parsed || lex.offset < end)) {
        err = json_error(diag, lex.offset, lex.why);
        goto out;
    }
    if (!parsed) {
        err = json_error(diag, end, why);
        goto out;
    }
    while (end < len && is_json_space((unsigned char)text[end]))
        end++;
    if (end < len) {
        err = json_error(diag, end, "unexpected data after the JSON value");
        goto out;
    }
    *out = obj;
    obj = NULL;
out:
    json_object_put(obj);
    if (tok != NULL)
        json_tokener_free(tok);
    return err;
}
