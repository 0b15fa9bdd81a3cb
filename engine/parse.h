/*
 * Helpers shared by the request parsers (private header).
 *
 * Why this file exists: the tree form (parse.c) and the flat compatibility form (parse_flat.c)
 * of a request obey the same rules for names, numbers, unknown fields, lognormal intervals and
 * metalog fits, report problems the same way (JSON pointer + stable code, every problem, never
 * only the first) and end in the same model. This header is the one place those rules live;
 * neither form re-implements them. json.c contributes the UTF-8 decoder.
 */
#ifndef RISKSIM_PARSE_H
#define RISKSIM_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "numtext.h"

struct json_object;

#if defined(__GNUC__)
#define RS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define RS_PRINTF(fmt, args)
#endif

/* Longest JSON pointer kept; deeper segments that do not fit are dropped, so a problem is then
 * reported at the deepest ancestor that fits. */
#define RS_PTR_MAX 1024

/* The JSON pointer (RFC 6901) of the value being checked. */
typedef struct rs_ptr {
    char buf[RS_PTR_MAX];
    size_t len;  /* bytes in buf (without the NUL) */
    size_t vlen; /* length the pointer would have without the RS_PTR_MAX cut */
} rs_ptr;

/* A small open-addressing hash set of strings (or of uint32 numbers), each with a value. The
 * strings are not copied: they must outlive the set. */
typedef struct rs_set_slot {
    const char *s; /* NULL for a number key */
    size_t len;    /* string length, or the number */
    uint64_t hash;
    uint32_t value;
    int used;
} rs_set_slot;

typedef struct rs_set {
    rs_set_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
} rs_set;

/* The state of one parse: where we are, what went wrong so far. */
typedef struct rs_pctx {
    rs_diag *diag;    /* may be NULL: problems are then only counted */
    rs_limits limits; /* already checked and capped */
    rs_ptr ptr;
    size_t nerrors;  /* problems found (also those the diag could not keep) */
    rs_err err;      /* RS_ENOMEM once an allocation failed; everything then unwinds */
    int stopped;     /* the node limit was hit: walks stop */
    int deep_seen;   /* too_deep was reported (it is reported once) */
    size_t node_cap; /* allocated entries of model->nodes */
    rs_set seeds;    /* explicit seedVars of the tree form, value = node index */
} rs_pctx;

/* An inclusive or exclusive numeric range; lo = -HUGE_VAL or hi = HUGE_VAL means unbounded. */
typedef struct rs_range {
    double lo, hi;
    int lo_open, hi_open;
} rs_range;

/* Whether a field must be present. */
enum { RS_OPTIONAL = 0, RS_REQUIRED = 1 };

/* ---- parse_fields.c: shared small helpers ---- */

/* FNV-1a offset basis: the hash of the empty path. */
#define FNV_OFFSET 14695981039346656037ull

/* FNV-1a step over a 32-bit index as 4 little-endian bytes (the seedVar path hash). */
uint64_t rs_fnv_index(uint64_t h, uint32_t index);

/* The JSON type name of v for messages ("object", "string", "null", ...). */
const char *rs_type_name(const struct json_object *v);
/* Reads the string field key of obj and returns its index in names[0..n), reporting
 * required/type/invalid_value; -1 when absent or wrong. */
int rs_get_enum(rs_pctx *ctx, const struct json_object *obj, const char *key,
                const char *const *names, size_t n);

/* ---- json.c ---- */

/* Decodes one UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF)
 * at s (len > 0 bytes available). Stores the code point in *cp and returns the sequence length
 * (1..4), or returns 0 when the bytes are not valid UTF-8. */
size_t rs_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/* ---- parse.c: pointers and problems ---- */

/* Appends the segment key (escaped per RFC 6901) to the pointer. Returns a mark for
 * rs_ptr_pop. */
size_t rs_ptr_push_key(rs_ptr *ptr, const char *key);
/* Appends an array index. Returns a mark for rs_ptr_pop. */
size_t rs_ptr_push_index(rs_ptr *ptr, size_t index);
/* Goes back to the pointer as it was when push returned mark. */
void rs_ptr_pop(rs_ptr *ptr, size_t mark);

/* Records a problem at the current pointer (the message is formatted like printf). */
void rs_report(rs_pctx *ctx, const char *code, const char *fmt, ...) RS_PRINTF(3, 4);
/* Records a problem at the current pointer plus one key segment. */
void rs_report_key(rs_pctx *ctx, const char *key, const char *code, const char *fmt, ...)
    RS_PRINTF(4, 5);
/* Records a problem at an absolute pointer. */
void rs_report_at(rs_pctx *ctx, const char *pointer, const char *code, const char *fmt, ...)
    RS_PRINTF(4, 5);
/* Returns non-zero once the parse must unwind (out of memory). */
int rs_failed(const rs_pctx *ctx);

/* ---- parse.c: reading fields ---- */

/* Checks every key of obj: keys listed in allowed (n entries) pass, "description" must be a
 * string, keys starting with "x-" are ignored, anything else is reported as unknown_field
 * (with a "did you mean" hint when a listed key is close). */
void rs_check_fields(rs_pctx *ctx, const struct json_object *obj, const char *const *allowed,
                     size_t n);
/* Returns non-zero when obj (an object) has the key, whatever its value (even null). */
int rs_has(const struct json_object *obj, const char *key);
/* Reads obj[key] as an object. Reports required (when required and absent) or type. Returns
 * the object, or NULL when absent or not an object. */
const struct json_object *rs_get_object(rs_pctx *ctx, const struct json_object *obj,
                                        const char *key, int required);
/* Reads obj[key] as an array, like rs_get_object. */
const struct json_object *rs_get_array(rs_pctx *ctx, const struct json_object *obj, const char *key,
                                       int required);
/* Reads obj[key] as a string into *s and *len (json-c keeps the bytes). Reports required or
 * type. Returns 1 when a string was read, 0 otherwise. */
int rs_get_string(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                  const char **s, size_t *len);
/* Reads obj[key] as a finite number within range (NULL: any finite number) into *out.
 * Reports required, type or out_of_range. Returns 1 when a valid value was stored, 0 otherwise
 * (*out is then unchanged). */
int rs_get_number(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                  const rs_range *range, double *out);
/* Checks that the value v (a JSON value, not a field) is a finite number within range; reports
 * at the current pointer. Returns 1 and stores it in *out when valid. */
int rs_number_value(rs_pctx *ctx, const struct json_object *v, const rs_range *range, double *out);
/* Reads obj[key] as an integer (a JSON integer or a double with an integral value) in
 * [lo, hi] into *out. Reports required, type or out_of_range. Returns 1 when stored. */
int rs_get_integer(rs_pctx *ctx, const struct json_object *obj, const char *key, int required,
                   int64_t lo, int64_t hi, int64_t *out);

/* ---- parse.c: names and ids ---- */

/* Returns non-zero when s (len bytes) is a valid node id: 1-64 chars of [A-Za-z0-9_.-]. */
int rs_id_valid(const char *s, size_t len);
/* Checks a node id at the current pointer (too_short, too_long, invalid_format). Returns 1
 * when valid. */
int rs_check_id(rs_pctx *ctx, const char *s, size_t len);
/* Checks a display name at the current pointer: 1-200 code points of printable UTF-8 (no C0 or
 * C1 control, no DEL, no NUL). Returns 1 when valid. */
int rs_check_name(rs_pctx *ctx, const char *s, size_t len);
/* Copies len bytes of s into a new NUL-terminated string (malloc). Returns NULL and records
 * RS_ENOMEM in ctx when out of memory. */
char *rs_copy_str(rs_pctx *ctx, const char *s, size_t len);
/* Writes into buf (size > 4) a short, safe quotation of a user string for messages: at most
 * about 60 bytes, cut on a UTF-8 boundary, with "..." when cut. */
void rs_quote(const char *s, size_t len, char *buf, size_t size);

/* ---- parse.c: sets ---- */

/* Inserts the string (or, with s NULL, the number len) with value. Returns 1 when inserted,
 * 0 when the key was already there (its value goes to *existing when not NULL), -1 when out of
 * memory (recorded in ctx). */
int rs_set_insert(rs_pctx *ctx, rs_set *set, const char *s, size_t len, uint32_t value,
                  uint32_t *existing);
/* Looks a key up. Returns 1 and its value in *value (may be NULL) when found, else 0. */
int rs_set_find(const rs_set *set, const char *s, size_t len, uint32_t *value);
/* Frees the table (not the keys) and empties the set. */
void rs_set_free(rs_set *set);

/* ---- parse.c: the request's common parts ---- */

/* Checks the top-level fields both forms share (name, trials/nTrials, seed, quantiles) and the
 * top level's keys against allowed (n entries), filling model->name, trials, seed and levels
 * (with the defaults where absent). */
void rs_parse_top(rs_pctx *ctx, const struct json_object *request, const char *const *allowed,
                  size_t n, rs_model *model);
/* Appends a zeroed node to model->nodes (growing it). Reports too_many at too_many_pointer and
 * sets ctx->stopped when the node limit is reached. Returns the new index, or -1 (limit or out
 * of memory). */
int32_t rs_model_add_node(rs_pctx *ctx, rs_model *model, const char *too_many_pointer);
/* Completes a model whose nodes, parents, depths and children are set: the leaf list and
 * leaf_index, height, default seedVars (nodes with seed_var 0; explicit ones are in
 * ctx->seeds) and Poisson tables. Only called on a request without problems. Returns RS_OK or
 * RS_ENOMEM. */
rs_err rs_model_finalize(rs_pctx *ctx, rs_model *model);

/* ---- parse.c: severities both forms use ---- */

/* Reads obj[lower_key] and obj[upper_key] as the bounds of the central ci interval of a
 * lognormal (0 < lower < upper) and stores mu and sigma in *sev. Returns 1 when valid. */
int rs_parse_lognormal_interval(rs_pctx *ctx, const struct json_object *obj, const char *lower_key,
                                const char *upper_key, double ci, rs_severity *sev);

/* How a metalog is bounded, and where its bounds came from. */
typedef struct rs_metalog_spec {
    rs_metalog_bounds bounds;
    double lower, upper;
    const char *lower_key; /* field that gave lower, or NULL when it is implied (flat form) */
    const char *upper_key; /* field that gave upper (NULL when absent) */
    const char *label;     /* how messages name the node, e.g. "node \"outage\"" */
} rs_metalog_spec;

/* Reads obj's "percentiles", "quantiles" and "terms" (2-16 pairs, strictly increasing, inside
 * the bounds of spec), then fits the metalog into *out. An infeasible or singular fit is
 * reported as "infeasible" at the current pointer. Returns 1 when the fit succeeded. */
int rs_parse_metalog(rs_pctx *ctx, const struct json_object *obj, const rs_metalog_spec *spec,
                     rs_metalog *out);

/* ---- parse_flat.c ---- */

/* Builds model's nodes from the flat compatibility form (portfolios/leaves arrays), reporting
 * every problem with a pointer into the flat document. The top-level fields are already
 * parsed. */
void rs_parse_flat(rs_pctx *ctx, const struct json_object *request, rs_model *model);

#endif
