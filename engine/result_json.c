/*
 * The result as JSON (docs/api.md section 2), with its Vega-Lite chart.
 *
 * Why this file exists: the responder stores and serves this JSON, the bridge streams it in the
 * `complete` event and the CLI prints it, so it is built in one place. It is written straight
 * into one growing buffer (json-c's printbuf) rather than built as a json-c tree and serialized:
 * a result holds over a thousand numbers, and the tree (an object per number, then the
 * serialization, then the frees) cost several times the simulation of a small request. Numbers
 * are written in their shortest form that reads back to the same double (numtext.c), so a
 * stored result is exact and compact; non-finite values (an undefined tail share) become null.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <json-c/printbuf.h>

#include "numtext.h"
#include "sim.h"

/* The writer: the buffer and whether an append failed (then every later append is skipped). */
typedef struct jw {
    struct printbuf *pb;
    int oom;
} jw;

static void put_raw(jw *w, const char *s, size_t len)
{
    if (w->oom)
        return;
    if (len > (size_t)(INT32_MAX / 2) || printbuf_memappend(w->pb, s, (int)len) < 0)
        w->oom = 1;
}

/* A literal: its size is known at compile time. */
#define PUT_LIT(w, lit) put_raw((w), (lit), sizeof(lit) - 1)

/* s as a JSON string: quotes, and escapes for the quote, the backslash and control
 * characters (the engine's strings are valid UTF-8, checked when the request was parsed). */
static void put_string(jw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    PUT_LIT(w, "\"");
    const char *run = s; /* start of the bytes not yet written */
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put_raw(w, run, (size_t)(p - run));
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        if (c < 0x20) {
            switch (c) {
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                n = 6;
            }
        }
        put_raw(w, esc, n);
        run = p + 1;
    }
    put_raw(w, run, strlen(run));
    PUT_LIT(w, "\"");
}

/* A number, or null when it is not finite. */
static void put_number(jw *w, double x)
{
    if (!isfinite(x)) {
        PUT_LIT(w, "null");
        return;
    }
    char buf[RS_NUM_TEXT_SIZE];
    put_raw(w, buf, rs_num_format(x, buf));
}

static void put_uint(jw *w, unsigned long long x)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", x);
    put_raw(w, buf, (size_t)n);
}

/* `"key":` after a comma unless first. */
static void put_key(jw *w, const char *key, int first)
{
    if (!first)
        PUT_LIT(w, ",");
    put_string(w, key);
    PUT_LIT(w, ":");
}

/* {"p50": v, ...} over the result's levels. */
static void put_levels(jw *w, const rs_model *model, const double *values)
{
    PUT_LIT(w, "{");
    for (size_t j = 0; j < model->nlevels; j++) {
        put_key(w, model->level_labels[j], j == 0);
        put_number(w, values[j]);
    }
    PUT_LIT(w, "}");
}

/* One LEC point (or chart row, with its node's name first). */
static void put_point(jw *w, const char *node, double loss, double exceedance)
{
    PUT_LIT(w, "{");
    if (node != NULL) {
        PUT_LIT(w, "\"node\":");
        put_string(w, node);
        PUT_LIT(w, ",");
    }
    PUT_LIT(w, "\"loss\":");
    put_number(w, loss);
    PUT_LIT(w, ",\"exceedance\":");
    put_number(w, exceedance);
    PUT_LIT(w, "}");
}

static void put_node(jw *w, const rs_model *model, const rs_node_stats *st)
{
    PUT_LIT(w, "{\"id\":");
    put_string(w, st->id);
    PUT_LIT(w, ",\"name\":");
    put_string(w, st->name);
    PUT_LIT(w, ",\"type\":");
    put_string(w, st->is_leaf ? "leaf" : "portfolio");
    PUT_LIT(w, ",\"parent\":");
    if (st->parent_id != NULL)
        put_string(w, st->parent_id);
    else
        PUT_LIT(w, "null");
    PUT_LIT(w, ",\"mean\":");
    put_number(w, st->mean);
    PUT_LIT(w, ",\"stddev\":");
    put_number(w, st->stddev);
    PUT_LIT(w, ",\"standardError\":");
    put_number(w, st->standard_error);
    PUT_LIT(w, ",\"probabilityOfLoss\":");
    put_number(w, st->probability_of_loss);
    PUT_LIT(w, ",\"max\":");
    put_number(w, st->max);
    PUT_LIT(w, ",\"quantiles\":");
    put_levels(w, model, st->quantiles);
    PUT_LIT(w, ",\"tvar\":");
    put_levels(w, model, st->tvar);
    PUT_LIT(w, ",\"tailContribution\":");
    if (st->tail_contribution != NULL)
        put_levels(w, model, st->tail_contribution);
    else
        PUT_LIT(w, "null");
    PUT_LIT(w, ",\"lec\":[");
    for (size_t i = 0; i < st->lec_count && !w->oom; i++) {
        if (i > 0)
            PUT_LIT(w, ",");
        put_point(w, NULL, st->lec_loss[i], st->lec_exceedance[i]);
    }
    PUT_LIT(w, "]}");
}

/* Data rows {node, loss, exceedance} of the chart: the root and its children, loss > 0 (the
 * loss axis is logarithmic). */
static void put_chart_rows(jw *w, const rs_result *result)
{
    PUT_LIT(w, "[");
    int first = 1;
    for (size_t i = 0; i < result->nnodes && !w->oom; i++) {
        const rs_node_stats *st = &result->nodes[i];
        if (st->depth > 1)
            continue;
        for (size_t k = 0; k < st->lec_count; k++) {
            if (!(st->lec_loss[k] > 0.0))
                continue;
            if (!first)
                PUT_LIT(w, ",");
            first = 0;
            put_point(w, st->name, st->lec_loss[k], st->lec_exceedance[k]);
        }
    }
    PUT_LIT(w, "]");
}

/* A complete Vega-Lite v5 spec plotting the LEC of the root and its children. */
static void put_vega_lite(jw *w, const rs_result *result, const rs_model *model)
{
    PUT_LIT(w, "{\"$schema\":\"https://vega.github.io/schema/vega-lite/v5.json\","
               "\"description\":\"Loss exceedance curves: probability that the annual loss is at "
               "least x\",\"title\":");
    put_string(w, model->name[0] ? model->name : "Loss exceedance");
    PUT_LIT(w, ",\"width\":640,\"height\":360,\"data\":{\"values\":");
    put_chart_rows(w, result);
    PUT_LIT(w, "},\"mark\":{\"type\":\"line\",\"interpolate\":\"step-after\"},"
               "\"encoding\":{"
               "\"x\":{\"field\":\"loss\",\"type\":\"quantitative\",\"title\":\"Annual loss\","
               "\"scale\":{\"type\":\"log\"}},"
               "\"y\":{\"field\":\"exceedance\",\"type\":\"quantitative\","
               "\"title\":\"P(loss \u2265 x)\",\"axis\":{\"format\":\"%\"}},"
               "\"color\":{\"field\":\"node\",\"type\":\"nominal\",\"title\":\"Node\"}}}");
}

static void put_result(jw *w, const rs_result *result, const rs_model *model,
                       const rs_result_meta *meta)
{
    PUT_LIT(w, "{");
    int first = 1;
    if (meta != NULL && meta->id != NULL) {
        put_key(w, "id", first);
        put_string(w, meta->id);
        first = 0;
    }
    put_key(w, "name", first);
    put_string(w, model->name);
    if (meta != NULL && meta->status != NULL) {
        PUT_LIT(w, ",\"status\":");
        put_string(w, meta->status);
    }
    PUT_LIT(w, ",\"trials\":");
    put_uint(w, (unsigned long long)result->trials);
    PUT_LIT(w, ",\"seed\":");
    put_uint(w, (unsigned long long)result->seed);
    PUT_LIT(w, ",\"rng\":\"hdr\",\"durationMs\":");
    put_number(w, round(result->duration_ms * 1000.0) / 1000.0);
    PUT_LIT(w, ",\"nodes\":[");
    for (size_t i = 0; i < result->nnodes && !w->oom; i++) {
        if (i > 0)
            PUT_LIT(w, ",");
        put_node(w, model, &result->nodes[i]);
    }
    PUT_LIT(w, "],\"vegaLite\":");
    put_vega_lite(w, result, model);
    PUT_LIT(w, "}");
}

rs_err rs_result_json(const rs_result *result, const rs_model *model, const rs_result_meta *meta,
                      char **out, size_t *len)
{
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    if (len != NULL)
        *len = 0;
    if (result == NULL || model == NULL || result->nnodes != model->nnodes)
        return RS_EINVAL;
    jw w = {printbuf_new(), 0};
    if (w.pb == NULL)
        return RS_ENOMEM;
    put_result(&w, result, model, meta);
    if (w.oom) {
        printbuf_free(w.pb);
        return RS_ENOMEM;
    }
    if (len != NULL)
        *len = (size_t)printbuf_length(w.pb);
    *out = w.pb->buf; /* the text outlives the buffer's header */
    w.pb->buf = NULL;
    printbuf_free(w.pb);
    return RS_OK;
}

rs_err rs_result_to_json(const rs_result *result, const rs_model *model, const rs_result_meta *meta,
                         json_object **out)
{
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    rs_err err = rs_result_json(result, model, meta, &text, &len);
    if (err != RS_OK)
        return err;
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    if (tok != NULL) {
        *out = json_tokener_parse_ex(tok, text, (int)len);
        json_tokener_free(tok);
    }
    free(text);
    return *out != NULL ? RS_OK : RS_ENOMEM;
}
