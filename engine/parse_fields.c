/*
 * Reading JSON fields and reporting problems: the toolkit of the request parser.
 *
 * Why this file exists: both forms of the request (parse.c, parse_flat.c) read untrusted JSON
 * the same way. This file builds JSON pointers, records problems (counted always, kept in the
 * bounded rs_diag while it has room), quotes and checks ids and names, keeps the small hash
 * sets that find duplicates, and reads typed fields (numbers with ranges, integers, strings,
 * enums) reporting every mistake at its pointer. Nothing here knows what a risk model is.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "parse.h"

#define FNV_PRIME 1099511628211ull
#define MESSAGE_MAX 512

/* =============================================================================================
 * JSON pointers
 * ========================================================================================== */

/* Bytes key takes as an escaped segment, with its "/". */
static size_t segment_size(const char *key)
{
    size_t n = 1;
    for (const char *k = key; *k != '\0'; k++)
        n += (*k == '~' || *k == '/') ? 2 : 1;
    return n;
}

size_t rs_ptr_push_key(rs_ptr *ptr, const char *key)
{
    size_t mark = ptr->vlen;
    size_t need = segment_size(key);
    if (ptr->len == ptr->vlen && need < RS_PTR_MAX - ptr->len) {
        char *w = ptr->buf + ptr->len;
        *w++ = '/';
        for (const char *k = key; *k != '\0'; k++) {
            if (*k == '~' || *k == '/') {
                *w++ = '~';
                *w++ = *k == '~' ? '0' : '1';
            } else {
                *w++ = *k;
            }
        }
        *w = '\0';
        ptr->len += need;
    }
    ptr->vlen += need;
    return mark;
}

size_t rs_ptr_push_index(rs_ptr *ptr, size_t index)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%zu", index);
    return rs_ptr_push_key(ptr, digits);
}

void rs_ptr_pop(rs_ptr *ptr, size_t mark)
{
    ptr->vlen = mark;
    if (ptr->len > mark)
        ptr->len = mark;
    ptr->buf[ptr->len] = '\0';
}

/* =============================================================================================
 * Problems
 * ========================================================================================== */

/* Returns non-zero when a new problem would still be kept: there is a diag, it is not full
 * and memory has not run out. Otherwise problems are only counted (cheaply: a hostile request
 * with a million broken values costs no formatting). */
static int keeps_problems(const rs_pctx *ctx)
{
    return ctx->diag != NULL && ctx->err == RS_OK && rs_diag_count(ctx->diag) <= RS_DIAG_MAX;
}

/* Counts a problem and adds it to the diag (when there is one and memory allows). */
static void report_v(rs_pctx *ctx, const char *pointer, const char *code, const char *fmt,
                     va_list ap)
{
    char msg[MESSAGE_MAX];
    ctx->nerrors++;
    if (!keeps_problems(ctx))
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (rs_diag_add(ctx->diag, pointer, code, msg) != RS_OK)
        ctx->err = RS_ENOMEM;
}

void rs_report(rs_pctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, ctx->ptr.buf, code, fmt, ap);
    va_end(ap);
}

void rs_report_key(rs_pctx *ctx, const char *key, const char *code, const char *fmt, ...)
{
    va_list ap;
    size_t mark = rs_ptr_push_key(&ctx->ptr, key);
    va_start(ap, fmt);
    report_v(ctx, ctx->ptr.buf, code, fmt, ap);
    va_end(ap);
    rs_ptr_pop(&ctx->ptr, mark);
}

void rs_report_at(rs_pctx *ctx, const char *pointer, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, pointer, code, fmt, ap);
    va_end(ap);
}

int rs_failed(const rs_pctx *ctx)
{
    return ctx->err != RS_OK;
}

/* =============================================================================================
 * Strings: quoting for messages, copies, ids, names
 * ========================================================================================== */

void rs_quote(const char *s, size_t len, char *buf, size_t size)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t room = size - 4 < 60 ? size - 4 : 60; /* keep space for "..." */
    size_t i = 0, w = 0;
    while (i < len) {
        uint32_t cp = 0;
        size_t n = rs_utf8_decode(u + i, len - i, &cp);
        int bad = n == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
        size_t out = bad ? 1 : n;
        if (w + out > room)
            break;
        if (bad)
            buf[w] = '?';
        else
            memcpy(buf + w, s + i, n);
        w += out;
        i += n == 0 ? 1 : n;
    }
    if (i < len) {
        memcpy(buf + w, "...", 3);
        w += 3;
    }
    buf[w] = '\0';
}

char *rs_copy_str(rs_pctx *ctx, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        ctx->err = RS_ENOMEM;
        return NULL;
    }
    if (len > 0)
        memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

/* Returns non-zero for the characters an id may contain: [A-Za-z0-9_.-]. */
static int id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

int rs_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > RS_MAX_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!id_char((unsigned char)s[i]))
            return 0;
    return 1;
}

int rs_check_id(rs_pctx *ctx, const char *s, size_t len)
{
    if (len == 0) {
        rs_report(ctx, "too_short", "must not be empty");
        return 0;
    }
    if (len > RS_MAX_ID_LEN) {
        rs_report(ctx, "too_long", "must be at most %d characters (has %zu)", RS_MAX_ID_LEN, len);
        return 0;
    }
    if (!rs_id_valid(s, len)) {
        rs_report(ctx, "invalid_format",
                  "may contain only the letters A-Z and a-z, digits, '_', '.' and '-'");
        return 0;
    }
    return 1;
}

/* Returns non-zero for a code point a name may not contain: C0, DEL, C1. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

int rs_check_name(rs_pctx *ctx, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t chars = 0;
    if (len == 0) {
        rs_report(ctx, "too_short", "must not be empty");
        return 0;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = rs_utf8_decode(u + i, len - i, &cp);
        if (n == 0) {
            rs_report(ctx, "invalid_format", "is not valid UTF-8 (byte %zu)", i);
            return 0;
        }
        if (is_control(cp)) {
            rs_report(ctx, "invalid_format",
                      "must be printable: control character U+%04" PRIX32 " at byte %zu", cp, i);
            return 0;
        }
        chars++;
        i += n;
    }
    if (chars > RS_MAX_NAME_CHARS) {
        rs_report(ctx, "too_long", "must be at most %d characters (has %zu)", RS_MAX_NAME_CHARS,
                  chars);
        return 0;
    }
    return 1;
}

/* Returns non-zero when s (len bytes) equals the C string lit. */
static int str_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* =============================================================================================
 * Hash sets
 * ========================================================================================== */

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* FNV-1a step over a 32-bit index as 4 little-endian bytes (the seedVar path hash). */
uint64_t rs_fnv_index(uint64_t h, uint32_t index)
{
    unsigned char le[4] = {(unsigned char)(index & 0xFFu), (unsigned char)((index >> 8) & 0xFFu),
                           (unsigned char)((index >> 16) & 0xFFu),
                           (unsigned char)((index >> 24) & 0xFFu)};
    return fnv_bytes(h, le, sizeof le);
}

/* Hash of a set key: FNV-1a of a string, a mixer of a number. */
static uint64_t key_hash(const char *s, size_t len)
{
    if (s != NULL)
        return fnv_bytes(FNV_OFFSET, s, len);
    uint64_t z = (uint64_t)len + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The slot holding the key, or the empty slot where it would go. cap is a power of two and
 * the table is never full. */
static rs_set_slot *set_probe(rs_set_slot *slots, size_t cap, const char *s, size_t len, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        rs_set_slot *slot = &slots[i];
        if (!slot->used)
            return slot;
        if (slot->hash == h && slot->len == len &&
            ((s == NULL && slot->s == NULL) ||
             (s != NULL && slot->s != NULL && memcmp(slot->s, s, len) == 0)))
            return slot;
        i = (i + 1) & (cap - 1);
    }
}

/* Doubles the table. Returns 0, or -1 when out of memory (recorded in ctx). */
static int set_grow(rs_pctx *ctx, rs_set *set)
{
    size_t cap = set->cap == 0 ? 16 : set->cap * 2;
    rs_set_slot *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        ctx->err = RS_ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < set->cap; i++) {
        const rs_set_slot *old = &set->slots[i];
        if (old->used)
            *set_probe(slots, cap, old->s, old->len, old->hash) = *old;
    }
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
    return 0;
}

int rs_set_insert(rs_pctx *ctx, rs_set *set, const char *s, size_t len, uint32_t value,
                  uint32_t *existing)
{
    if ((set->count + 1) * 2 > set->cap && set_grow(ctx, set) != 0)
        return -1;
    uint64_t h = key_hash(s, len);
    rs_set_slot *slot = set_probe(set->slots, set->cap, s, len, h);
    if (slot->used) {
        if (existing != NULL)
            *existing = slot->value;
        return 0;
    }
    slot->s = s;
    slot->len = len;
    slot->hash = h;
    slot->value = value;
    slot->used = 1;
    set->count++;
    return 1;
}

int rs_set_find(const rs_set *set, const char *s, size_t len, uint32_t *value)
{
    if (set->cap == 0)
        return 0;
    const rs_set_slot *slot = set_probe(set->slots, set->cap, s, len, key_hash(s, len));
    if (!slot->used)
        return 0;
    if (value != NULL)
        *value = slot->value;
    return 1;
}

void rs_set_free(rs_set *set)
{
    free(set->slots);
    set->slots = NULL;
    set->cap = 0;
    set->count = 0;
}

/* =============================================================================================
 * Typed field readers
 * ========================================================================================== */

/* The JSON type of v, as messages name it. */
const char *rs_type_name(const struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
    case json_type_int:
        return "a number";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "unknown";
}

/* Edit distance of two short strings, or a large number when either is long. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[33];
    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Reports the unknown field key with a hint: the closest allowed name, or the allowed list. */
static void report_unknown(rs_pctx *ctx, const char *key, const char *const *allowed, size_t n)
{
    char quoted[72], list[256];
    const char *best = NULL;
    size_t best_d = 3, w = 0;
    if (!keeps_problems(ctx)) {
        ctx->nerrors++;
        return;
    }
    rs_quote(key, strlen(key), quoted, sizeof quoted);
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(key, allowed[i]);
        if (d < best_d)
            best_d = d, best = allowed[i];
    }
    if (best != NULL) {
        rs_report_key(ctx, key, "unknown_field", "unknown field \"%s\"; did you mean \"%s\"?",
                      quoted, best);
        return;
    }
    list[0] = '\0';
    for (size_t i = 0; i < n && w < sizeof list; i++) {
        int k = snprintf(list + w, sizeof list - w, "%s%s", i ? ", " : "", allowed[i]);
        if (k < 0)
            break;
        w += (size_t)k;
    }
    rs_report_key(ctx, key, "unknown_field",
                  "unknown field \"%s\"; allowed here: %s, \"description\" and \"x-\" extensions",
                  quoted, list);
}

void rs_check_fields(rs_pctx *ctx, const struct json_object *obj, const char *const *allowed,
                     size_t n)
{
    json_object_object_foreach(obj, key, val)
    {
        int known = 0;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (known || strncmp(key, "x-", 2) == 0)
            continue;
        if (strcmp(key, "description") == 0) {
            if (!json_object_is_type(val, json_type_string))
                rs_report_key(ctx, key, "type", "must be a string, not %s", rs_type_name(val));
            continue;
        }
        report_unknown(ctx, key, allowed, n);
    }
}

int rs_has(const struct json_object *obj, const char *key)
{
    return json_object_object_get_ex(obj, key, NULL);
}

/* Reads obj[key] into *v. Reports required when it is absent and required. Returns 1 when
 * present (the value may be null). */
static int get_field(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                     struct json_object **v)
{
    if (json_object_object_get_ex(obj, key, v))
        return 1;
    if (required)
        rs_report_key(ctx, key, "required", "is required");
    return 0;
}

const struct json_object *rs_get_object(rs_pctx *ctx, const struct json_object *obj,
                                        const char *key, int required)
{
    struct json_object *v = NULL;
    if (!get_field(ctx, obj, key, required, &v))
        return NULL;
    if (!json_object_is_type(v, json_type_object)) {
        rs_report_key(ctx, key, "type", "must be an object, not %s", rs_type_name(v));
        return NULL;
    }
    return v;
}

const struct json_object *rs_get_array(rs_pctx *ctx, const struct json_object *obj, const char *key,
                                       int required)
{
    struct json_object *v = NULL;
    if (!get_field(ctx, obj, key, required, &v))
        return NULL;
    if (!json_object_is_type(v, json_type_array)) {
        rs_report_key(ctx, key, "type", "must be an array, not %s", rs_type_name(v));
        return NULL;
    }
    return v;
}

int rs_get_string(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                  const char **s, size_t *len)
{
    struct json_object *v = NULL;
    if (!get_field(ctx, obj, key, required, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        rs_report_key(ctx, key, "type", "must be a string, not %s", rs_type_name(v));
        return 0;
    }
    *s = json_object_get_string(v);
    *len = (size_t)json_object_get_string_len(v);
    return 1;
}

/* Writes the range as text: "in [0, 1]", "> 0", ">= 0". */
static void range_text(const rs_range *r, char *buf, size_t size)
{
    int has_lo = isfinite(r->lo), has_hi = isfinite(r->hi);
    if (has_lo && has_hi)
        snprintf(buf, size, "in %c%.15g, %.15g%c", r->lo_open ? '(' : '[', r->lo, r->hi,
                 r->hi_open ? ')' : ']');
    else if (has_lo)
        snprintf(buf, size, "%s %.15g", r->lo_open ? ">" : ">=", r->lo);
    else if (has_hi)
        snprintf(buf, size, "%s %.15g", r->hi_open ? "<" : "<=", r->hi);
    else
        snprintf(buf, size, "finite");
}

int rs_number_value(rs_pctx *ctx, const struct json_object *v, const rs_range *range, double *out)
{
    char nb[32];
    char text[96];
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) {
        rs_report(ctx, "type", "must be a number, not %s", rs_type_name(v));
        return 0;
    }
    double d = json_object_get_double(v);
    if (!isfinite(d)) {
        rs_report(ctx, "out_of_range", "must be a finite number (this one overflows a double)");
        return 0;
    }
    if (range != NULL && ((range->lo_open ? !(d > range->lo) : !(d >= range->lo)) ||
                          (range->hi_open ? !(d < range->hi) : !(d <= range->hi)))) {
        range_text(range, text, sizeof text);
        rs_report(ctx, "out_of_range", "must be %s (is %s)", text, rs_num_text(d, nb));
        return 0;
    }
    *out = d;
    return 1;
}

int rs_get_number(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                  const rs_range *range, double *out)
{
    struct json_object *v = NULL;
    if (!get_field(ctx, obj, key, required, &v))
        return 0;
    size_t mark = rs_ptr_push_key(&ctx->ptr, key);
    int ok = rs_number_value(ctx, v, range, out);
    rs_ptr_pop(&ctx->ptr, mark);
    return ok;
}

/* Converts an integral double to int64, saturating (the caller's range check then fails). */
static int64_t saturate_int64(double d)
{
    if (d >= 9223372036854775807.0)
        return INT64_MAX;
    if (d <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

/* Reads the integer value of v (at the current pointer). Returns 1 and stores it, or reports
 * type / out_of_range and returns 0. */
static int integer_value(rs_pctx *ctx, const struct json_object *v, int64_t *out)
{
    char nb[32];
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v); /* saturates above INT64_MAX */
        return 1;
    }
    if (!json_object_is_type(v, json_type_double)) {
        rs_report(ctx, "type", "must be an integer, not %s", rs_type_name(v));
        return 0;
    }
    double d = json_object_get_double(v);
    if (!isfinite(d)) {
        rs_report(ctx, "out_of_range", "must be a finite number (this one overflows a double)");
        return 0;
    }
    if (d != floor(d)) {
        rs_report(ctx, "type", "must be an integer (is %s)", rs_num_text(d, nb));
        return 0;
    }
    *out = saturate_int64(d);
    return 1;
}

int rs_get_integer(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                   int64_t lo, int64_t hi, int64_t *out)
{
    struct json_object *v = NULL;
    int64_t x = 0;
    int ok = 0;
    if (!get_field(ctx, obj, key, required, &v))
        return 0;
    size_t mark = rs_ptr_push_key(&ctx->ptr, key);
    if (integer_value(ctx, v, &x)) {
        if (x < lo || x > hi) {
            rs_report(ctx, "out_of_range", "must be an integer in [%" PRId64 ", %" PRId64 "]", lo,
                      hi);
        } else {
            *out = x;
            ok = 1;
        }
    }
    rs_ptr_pop(&ctx->ptr, mark);
    return ok;
}

/* Reads obj[key] as one of the n strings in names. Returns its index, or -1 (absent, not a
 * string or not in the list: reported as required, type or invalid_value). */
int rs_get_enum(rs_pctx *ctx, const struct json_object *obj, const char *key,
                const char *const *names, size_t n)
{
    const char *s = NULL;
    size_t len = 0;
    char list[160], quoted[72];
    size_t w = 0;
    if (!rs_get_string(ctx, obj, key, RS_REQUIRED, &s, &len))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (str_is(s, len, names[i]))
            return (int)i;
    list[0] = '\0';
    for (size_t i = 0; i < n && w < sizeof list; i++) {
        int k = snprintf(list + w, sizeof list - w, "%s\"%s\"", i ? ", " : "", names[i]);
        if (k < 0)
            break;
        w += (size_t)k;
    }
    rs_quote(s, len, quoted, sizeof quoted);
    rs_report_key(ctx, key, "invalid_value", "\"%s\" is not one of %s", quoted, list);
    return -1;
}
