/*
 * The result as JSON (docs/api.md section 2), with its Vega-Lite chart.
 *
 * Why this file exists: the responder stores and serves this JSON, the bridge streams it in the
 * `complete` event and the CLI prints it, so it is built in one place. Numbers are written in
 * their shortest form that reads back to the same double, so a stored result is exact and
 * compact; non-finite values (an undefined tail share) become null.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "numtext.h"
#include "sim.h"

/* A json-c double that serializes as the shortest decimal that reads back exactly. Returns
 * NULL (json-c's null) for a non-finite value, and NULL with *oom set when out of memory. */
static json_object *json_number(double x, int *oom)
{
    if (!isfinite(x))
        return NULL;
    char buf[32];
    json_object *o = json_object_new_double_s(x, rs_num_text(x, buf));
    if (o == NULL)
        *oom = 1;
    return o;
}

/* Adds key: value to obj; value NULL means JSON null unless *oom was set. */
static void put(json_object *obj, const char *key, json_object *value, int *oom)
{
    if (*oom) {
        json_object_put(value);
        return;
    }
    if (json_object_object_add(obj, key, value) != 0) {
        json_object_put(value);
        *oom = 1;
    }
}

static json_object *json_str(const char *s, int *oom)
{
    json_object *o = json_object_new_string(s);
    if (o == NULL)
        *oom = 1;
    return o;
}

static json_object *new_object(int *oom)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        *oom = 1;
    return o;
}

static json_object *new_array(int *oom)
{
    json_object *o = json_object_new_array();
    if (o == NULL)
        *oom = 1;
    return o;
}

static void append(json_object *array, json_object *value, int *oom)
{
    if (*oom || array == NULL) {
        json_object_put(value);
        return;
    }
    if (json_object_array_add(array, value) != 0) {
        json_object_put(value);
        *oom = 1;
    }
}

/* {"p50": v, ...} over the result's levels. */
static json_object *levels_object(const rs_model *model, const double *values, int *oom)
{
    json_object *o = new_object(oom);
    for (size_t j = 0; o != NULL && j < model->nlevels; j++)
        put(o, model->level_labels[j], json_number(values[j], oom), oom);
    return o;
}

static json_object *lec_array(const rs_node_stats *st, int *oom)
{
    json_object *a = new_array(oom);
    for (size_t i = 0; a != NULL && !*oom && i < st->lec_count; i++) {
        json_object *pt = new_object(oom);
        if (pt == NULL)
            break;
        put(pt, "loss", json_number(st->lec_loss[i], oom), oom);
        put(pt, "exceedance", json_number(st->lec_exceedance[i], oom), oom);
        append(a, pt, oom);
    }
    return a;
}

static json_object *node_object(const rs_model *model, const rs_node_stats *st, int *oom)
{
    json_object *o = new_object(oom);
    if (o == NULL)
        return NULL;
    put(o, "id", json_str(st->id, oom), oom);
    put(o, "name", json_str(st->name, oom), oom);
    put(o, "type", json_str(st->is_leaf ? "leaf" : "portfolio", oom), oom);
    put(o, "parent", st->parent_id ? json_str(st->parent_id, oom) : NULL, oom);
    put(o, "mean", json_number(st->mean, oom), oom);
    put(o, "stddev", json_number(st->stddev, oom), oom);
    put(o, "standardError", json_number(st->standard_error, oom), oom);
    put(o, "probabilityOfLoss", json_number(st->probability_of_loss, oom), oom);
    put(o, "max", json_number(st->max, oom), oom);
    put(o, "quantiles", levels_object(model, st->quantiles, oom), oom);
    put(o, "tvar", levels_object(model, st->tvar, oom), oom);
    put(o, "tailContribution",
        st->tail_contribution ? levels_object(model, st->tail_contribution, oom) : NULL, oom);
    put(o, "lec", lec_array(st, oom), oom);
    return o;
}

/* Data rows {node, loss, exceedance} of the chart: the root and its children, loss > 0 (the
 * loss axis is logarithmic). */
static json_object *chart_rows(const rs_result *result, int *oom)
{
    json_object *rows = new_array(oom);
    for (size_t i = 0; rows != NULL && !*oom && i < result->nnodes; i++) {
        const rs_node_stats *st = &result->nodes[i];
        if (st->depth > 1)
            continue;
        for (size_t k = 0; !*oom && k < st->lec_count; k++) {
            if (!(st->lec_loss[k] > 0.0))
                continue;
            json_object *row = new_object(oom);
            if (row == NULL)
                break;
            put(row, "node", json_str(st->name, oom), oom);
            put(row, "loss", json_number(st->lec_loss[k], oom), oom);
            put(row, "exceedance", json_number(st->lec_exceedance[k], oom), oom);
            append(rows, row, oom);
        }
    }
    return rows;
}

/* {"field": f, "type": "quantitative", "title": t} and friends. */
static json_object *channel(const char *field, const char *type, const char *title, int *oom)
{
    json_object *c = new_object(oom);
    if (c == NULL)
        return NULL;
    put(c, "field", json_str(field, oom), oom);
    put(c, "type", json_str(type, oom), oom);
    put(c, "title", json_str(title, oom), oom);
    return c;
}

/* A complete Vega-Lite v5 spec plotting the LEC of the root and its children. */
static json_object *vega_lite(const rs_result *result, const rs_model *model, int *oom)
{
    json_object *spec = new_object(oom);
    if (spec == NULL)
        return NULL;
    put(spec, "$schema", json_str("https://vega.github.io/schema/vega-lite/v5.json", oom), oom);
    put(spec, "description",
        json_str("Loss exceedance curves: probability that the annual loss is at least x", oom),
        oom);
    put(spec, "title", json_str(model->name[0] ? model->name : "Loss exceedance", oom), oom);
    put(spec, "width", json_number(640, oom), oom);
    put(spec, "height", json_number(360, oom), oom);
    json_object *data = new_object(oom);
    if (data != NULL)
        put(data, "values", chart_rows(result, oom), oom);
    put(spec, "data", data, oom);
    json_object *mark = new_object(oom);
    if (mark != NULL) {
        put(mark, "type", json_str("line", oom), oom);
        put(mark, "interpolate", json_str("step-after", oom), oom);
    }
    put(spec, "mark", mark, oom);
    json_object *enc = new_object(oom);
    json_object *x = channel("loss", "quantitative", "Annual loss", oom);
    json_object *y = channel("exceedance", "quantitative", "P(loss \u2265 x)", oom);
    json_object *color = channel("node", "nominal", "Node", oom);
    json_object *scale = new_object(oom);
    if (scale != NULL)
        put(scale, "type", json_str("log", oom), oom);
    if (x != NULL)
        put(x, "scale", scale, oom);
    else
        json_object_put(scale);
    json_object *axis = new_object(oom);
    if (axis != NULL)
        put(axis, "format", json_str("%", oom), oom);
    if (y != NULL)
        put(y, "axis", axis, oom);
    else
        json_object_put(axis);
    if (enc != NULL) {
        put(enc, "x", x, oom);
        put(enc, "y", y, oom);
        put(enc, "color", color, oom);
    } else {
        json_object_put(x);
        json_object_put(y);
        json_object_put(color);
    }
    put(spec, "encoding", enc, oom);
    return spec;
}

rs_err rs_result_to_json(const rs_result *result, const rs_model *model, const rs_result_meta *meta,
                         json_object **out)
{
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    if (result == NULL || model == NULL || result->nnodes != model->nnodes)
        return RS_EINVAL;
    int oom = 0;
    json_object *o = new_object(&oom);
    if (o == NULL)
        return RS_ENOMEM;
    if (meta != NULL && meta->id != NULL)
        put(o, "id", json_str(meta->id, &oom), &oom);
    put(o, "name", json_str(model->name, &oom), &oom);
    if (meta != NULL && meta->status != NULL)
        put(o, "status", json_str(meta->status, &oom), &oom);
    json_object *trials = json_object_new_int64((int64_t)result->trials);
    oom |= trials == NULL;
    put(o, "trials", trials, &oom);
    json_object *seed = json_object_new_int64(result->seed);
    oom |= seed == NULL;
    put(o, "seed", seed, &oom);
    put(o, "rng", json_str("hdr", &oom), &oom);
    put(o, "durationMs", json_number(round(result->duration_ms * 1000.0) / 1000.0, &oom), &oom);
    json_object *nodes = new_array(&oom);
    for (size_t i = 0; nodes != NULL && !oom && i < result->nnodes; i++)
        append(nodes, node_object(model, &result->nodes[i], &oom), &oom);
    put(o, "nodes", nodes, &oom);
    put(o, "vegaLite", vega_lite(result, model, &oom), &oom);
    if (oom) {
        json_object_put(o);
        return RS_ENOMEM;
    }
    *out = o;
    return RS_OK;
}
