/*
 * The flat compatibility form of a request.
 *
 * Why this file exists: older clients describe a tree as two flat lists, "portfolios" and
 * "leaves", linked by "parentName" (docs/api.md section 1, the flat form). This file checks such a
 * document (duplicate names, unknown parents, several or no roots, cycles, empty portfolios,
 * depth), reporting every problem with a pointer into the flat document, and converts it into
 * the same model as the tree form: node ids derived from the names, children ordered
 * sub-portfolios first then leaves (each in file order), preorder layout. Cycles and depth are
 * found without recursion. The rules shared with the tree form come from parse.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "parse.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define FLAT_CI 0.9 /* minLoss/maxLoss bound the central 90% interval */
#define NO_ENTRY (-1)

/* One portfolio or leaf of the flat document. Portfolios come first: entry i is
 * /portfolios/i for i < np and /leaves/(i - np) after. */
typedef struct flat_entry {
    int is_object;    /* the entry is a JSON object (others were reported and are skipped) */
    const char *name; /* NULL when missing or not a string (bytes belong to json-c) */
    size_t name_len;
    const char *parent_name; /* NULL for a root portfolio (absent, null or "") */
    size_t parent_len;
    int32_t parent;     /* entry index of the parent portfolio once resolved, else NO_ENTRY */
    uint32_t first;     /* its children are children[first .. first + nchildren) */
    uint32_t nchildren; /* number of children */
    uint32_t depth;     /* root 0 */
    int32_t node;       /* index in the model (preorder), NO_ENTRY until laid out */
    char *id;           /* derived node id (owned until moved into the model) */
    double p;           /* leaf: probability of the one event */
    rs_severity sev;    /* leaf: severity */
} flat_entry;

/* The whole flat document being converted. */
typedef struct flat_doc {
    rs_pctx *ctx;
    rs_model *model;
    size_t np, nl, n;   /* portfolios, leaves, both */
    flat_entry *e;      /* n entries */
    uint32_t *children; /* entry indices grouped by parent */
    uint32_t *order;    /* entry indices in preorder */
    size_t norder;
    int32_t root; /* entry index of the root portfolio */
    rs_set names; /* name -> entry index */
    rs_set ids;   /* derived ids */
} flat_doc;

/* Pushes the pointer of entry i; returns the mark to pop. */
static size_t push_entry(flat_doc *d, size_t i)
{
    size_t mark = rs_ptr_push_key(&d->ctx->ptr, i < d->np ? "portfolios" : "leaves");
    rs_ptr_push_index(&d->ctx->ptr, i < d->np ? i : i - d->np);
    return mark;
}

/* Writes entry i's pointer (and an optional key below it) into buf, for messages that
 * mention another entry. */
static void entry_pointer(const flat_doc *d, size_t i, char *buf, size_t size)
{
    if (i < d->np)
        snprintf(buf, size, "/portfolios/%zu", i);
    else
        snprintf(buf, size, "/leaves/%zu", i - d->np);
}

/* Writes into buf how messages name entry i: its quoted name. */
static void entry_label(const flat_doc *d, size_t i, char *buf, size_t size)
{
    char quoted[72];
    const flat_entry *e = &d->e[i];
    if (e->name == NULL) {
        entry_pointer(d, i, buf, size);
        return;
    }
    rs_quote(e->name, e->name_len, quoted, sizeof quoted);
    snprintf(buf, size, "%s \"%s\"", i < d->np ? "portfolio" : "leaf", quoted);
}

/* ---- checking the entries ---- */

/* Reads the "name" of entry i (at its pointer): the name rules, unique across the document. */
static void check_entry_name(flat_doc *d, size_t i, const struct json_object *obj)
{
    rs_pctx *ctx = d->ctx;
    flat_entry *e = &d->e[i];
    uint32_t other = 0;
    char where[48];
    if (!rs_get_string(ctx, obj, "name", RS_REQUIRED, &e->name, &e->name_len)) {
        e->name = NULL;
        return;
    }
    size_t mark = rs_ptr_push_key(&ctx->ptr, "name");
    rs_check_name(ctx, e->name, e->name_len);
    if (rs_set_insert(ctx, &d->names, e->name, e->name_len, (uint32_t)i, &other) == 0) {
        entry_pointer(d, other, where, sizeof where);
        rs_report(ctx, "duplicate", "this name is already used by %s", where);
    }
    rs_ptr_pop(&ctx->ptr, mark);
}

/* Reads a portfolio's optional "parentName": a string, null or "" (the root). */
static void check_portfolio_parent(flat_doc *d, flat_entry *e, const struct json_object *obj)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(obj, "parentName", &v) || v == NULL)
        return;
    if (!json_object_is_type(v, json_type_string)) {
        rs_report_key(d->ctx, "parentName", "type", "must be a string or null");
        return;
    }
    if (json_object_get_string_len(v) > 0) {
        e->parent_name = json_object_get_string(v);
        e->parent_len = (size_t)json_object_get_string_len(v);
    }
}

static void check_portfolio(flat_doc *d, size_t i, const struct json_object *obj)
{
    static const char *const fields[] = {"name", "parentName"};
    rs_check_fields(d->ctx, obj, fields, COUNT(fields));
    check_entry_name(d, i, obj);
    check_portfolio_parent(d, &d->e[i], obj);
}

/* Reads a leaf's distributionShape (at its pointer). Fields of the other distributionType are
 * ignored: legacy clients send them all. */
static void check_shape(flat_doc *d, size_t i, const struct json_object *shape)
{
    static const char *const fields[] = {"distributionType", "minLoss",   "maxLoss",
                                         "percentiles",      "quantiles", "terms"};
    rs_pctx *ctx = d->ctx;
    flat_entry *e = &d->e[i];
    const char *type = NULL;
    size_t len = 0;
    char label[96], quoted[72];
    rs_check_fields(ctx, shape, fields, COUNT(fields));
    if (!rs_get_string(ctx, shape, "distributionType", RS_REQUIRED, &type, &len))
        return;
    if (len == 9 && memcmp(type, "lognormal", 9) == 0) {
        rs_parse_lognormal_interval(ctx, shape, "minLoss", "maxLoss", FLAT_CI, &e->sev);
    } else if (len == 6 && memcmp(type, "expert", 6) == 0) {
        entry_label(d, i, label, sizeof label);
        rs_metalog_spec spec = {RS_METALOG_LOWER, 0.0, 0.0, NULL, NULL, label};
        e->sev.kind = RS_SEV_METALOG;
        rs_parse_metalog(ctx, shape, &spec, &e->sev.u.metalog);
    } else {
        rs_quote(type, len, quoted, sizeof quoted);
        rs_report_key(ctx, "distributionType", "invalid_value",
                      "\"%s\" is not one of \"lognormal\", \"expert\"", quoted);
    }
}

static void check_leaf(flat_doc *d, size_t i, const struct json_object *obj)
{
    static const char *const fields[] = {"name", "parentName", "probability", "distributionShape"};
    static const rs_range unit = {0.0, 1.0, 0, 0};
    rs_pctx *ctx = d->ctx;
    flat_entry *e = &d->e[i];
    const char *parent = NULL;
    size_t parent_len = 0;
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    check_entry_name(d, i, obj);
    if (rs_get_string(ctx, obj, "parentName", RS_REQUIRED, &parent, &parent_len)) {
        if (parent_len == 0)
            rs_report_key(ctx, "parentName", "required", "a leaf must name its portfolio");
        else
            e->parent_name = parent, e->parent_len = parent_len;
    }
    rs_get_number(ctx, obj, "probability", RS_REQUIRED, &unit, &e->p);
    const struct json_object *shape = rs_get_object(ctx, obj, "distributionShape", RS_REQUIRED);
    if (shape != NULL) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "distributionShape");
        check_shape(d, i, shape);
        rs_ptr_pop(&ctx->ptr, mark);
    }
}

/* Checks every entry of both arrays (those present). */
static void check_entries(flat_doc *d, const struct json_object *portfolios,
                          const struct json_object *leaves)
{
    for (size_t i = 0; i < d->n && !rs_failed(d->ctx); i++) {
        const struct json_object *obj = i < d->np ? json_object_array_get_idx(portfolios, i)
                                                  : json_object_array_get_idx(leaves, i - d->np);
        size_t mark = push_entry(d, i);
        d->e[i].is_object = json_object_is_type(obj, json_type_object);
        if (!d->e[i].is_object)
            rs_report(d->ctx, "type", "must be an object");
        else if (i < d->np)
            check_portfolio(d, i, obj);
        else
            check_leaf(d, i, obj);
        rs_ptr_pop(&d->ctx->ptr, mark);
    }
}

/* ---- linking: parents, the root, cycles ---- */

/* Resolves entry i's parentName to a portfolio. Returns 1 when resolved (or none needed). */
static int resolve_parent(flat_doc *d, size_t i)
{
    flat_entry *e = &d->e[i];
    uint32_t j = 0;
    char quoted[72];
    if (!e->is_object)
        return 0; /* reported already */
    if (e->parent_name == NULL)
        return i < d->np; /* a leaf without one was reported already */
    rs_quote(e->parent_name, e->parent_len, quoted, sizeof quoted);
    size_t mark = push_entry(d, i);
    int ok = 0;
    if (!rs_set_find(&d->names, e->parent_name, e->parent_len, &j))
        rs_report_key(d->ctx, "parentName", "unknown_parent", "no portfolio is named \"%s\"",
                      quoted);
    else if (j >= d->np)
        rs_report_key(d->ctx, "parentName", "unknown_parent", "\"%s\" is a leaf, not a portfolio",
                      quoted);
    else
        e->parent = (int32_t)j, ok = 1;
    rs_ptr_pop(&d->ctx->ptr, mark);
    return ok;
}

/* Finds the one root portfolio. Returns 1 when there is exactly one. */
static int find_root(flat_doc *d)
{
    char where[48];
    int ok = 1;
    d->root = NO_ENTRY;
    for (size_t i = 0; i < d->np; i++) {
        if (!d->e[i].is_object || d->e[i].parent_name != NULL)
            continue;
        if (d->root == NO_ENTRY) {
            d->root = (int32_t)i;
            continue;
        }
        entry_pointer(d, (size_t)d->root, where, sizeof where);
        size_t mark = push_entry(d, i);
        rs_report(d->ctx, "conflict",
                  "a second root: this portfolio has no parentName, like %s; exactly one "
                  "portfolio (the root) may have none",
                  where);
        rs_ptr_pop(&d->ctx->ptr, mark);
        ok = 0;
    }
    if (d->root == NO_ENTRY) {
        rs_report_at(d->ctx, "/portfolios", d->np == 0 ? "too_few" : "required",
                     "no root portfolio: exactly one portfolio must have no parentName");
        ok = 0;
    }
    return ok;
}

/* Reports the cycle through portfolio j, listing its names. */
static void report_cycle(flat_doc *d, int32_t j)
{
    char path[320], quoted[72];
    size_t w = 0;
    int32_t k = j;
    path[0] = '\0';
    do {
        rs_quote(d->e[k].name, d->e[k].name_len, quoted, sizeof quoted);
        int n = snprintf(path + w, sizeof path - w, "\"%s\" -> ", quoted);
        if (n < 0 || (size_t)n >= sizeof path - w)
            break;
        w += (size_t)n;
        k = d->e[k].parent;
    } while (k != j);
    rs_quote(d->e[j].name, d->e[j].name_len, quoted, sizeof quoted);
    size_t mark = push_entry(d, (size_t)j);
    rs_report_key(d->ctx, "parentName", "cycle", "the portfolios form a cycle: %s\"%s\"%s", path,
                  quoted, k == j ? "" : " ...");
    rs_ptr_pop(&d->ctx->ptr, mark);
}

/* Follows the parent links of the portfolios and reports every cycle once (at the first
 * portfolio of the cycle that a walk reaches twice). Iterative, O(portfolios). Returns 1 when
 * there is no cycle, 0 when there is one, -1 when out of memory. */
static int find_cycles(flat_doc *d)
{
    const uint32_t done = UINT32_MAX;
    uint32_t *state = calloc(d->np > 0 ? d->np : 1, sizeof *state); /* 0 new, w+1 on walk w */
    int ok = 1;
    if (state == NULL) {
        d->ctx->err = RS_ENOMEM;
        return -1;
    }
    for (size_t w = 0; w < d->np; w++) {
        int32_t j = (int32_t)w;
        while (j != NO_ENTRY && state[j] == 0) {
            state[j] = (uint32_t)w + 1;
            j = d->e[j].parent;
        }
        if (j != NO_ENTRY && state[j] == (uint32_t)w + 1) {
            report_cycle(d, j);
            ok = 0;
        }
        for (j = (int32_t)w; j != NO_ENTRY && state[j] == (uint32_t)w + 1; j = d->e[j].parent)
            state[j] = done;
    }
    free(state);
    return ok;
}

/* Resolves every parent, the root and checks for cycles. Returns 1 when the links form a
 * tree. */
static int link_entries(flat_doc *d)
{
    int ok = 1;
    for (size_t i = 0; i < d->n && !rs_failed(d->ctx); i++)
        ok &= resolve_parent(d, i);
    ok &= find_root(d);
    if (!rs_failed(d->ctx))
        ok &= find_cycles(d) == 1;
    return ok && !rs_failed(d->ctx);
}

/* ---- layout: children, preorder, depth ---- */

/* Groups the entries by parent: sub-portfolios first, then leaves, each in file order (which is
 * entry order). Reports portfolios without children. Returns 1 when every portfolio has one. */
static int group_children(flat_doc *d)
{
    uint32_t next = 0;
    int ok = 1;
    char label[96];
    d->children = malloc((d->n > 0 ? d->n : 1) * sizeof *d->children);
    if (d->children == NULL) {
        d->ctx->err = RS_ENOMEM;
        return 0;
    }
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].parent != NO_ENTRY)
            d->e[d->e[i].parent].nchildren++;
    for (size_t i = 0; i < d->np; i++) {
        d->e[i].first = next;
        next += d->e[i].nchildren;
        if (d->e[i].nchildren == 0) {
            entry_label(d, i, label, sizeof label);
            size_t mark = push_entry(d, i);
            rs_report(d->ctx, "too_few", "%s has no children: a portfolio needs at least one",
                      label);
            rs_ptr_pop(&d->ctx->ptr, mark);
            ok = 0;
        }
        d->e[i].nchildren = 0; /* recounted while filling */
    }
    for (size_t i = 0; i < d->n; i++) {
        flat_entry *p = d->e[i].parent != NO_ENTRY ? &d->e[d->e[i].parent] : NULL;
        if (p != NULL)
            d->children[p->first + p->nchildren++] = (uint32_t)i;
    }
    return ok;
}

/* Lays the tree out in preorder with an explicit stack (no recursion), setting depth and the
 * model index of each entry. Reports too_deep once. Returns 1 when the tree fits the depth. */
static int layout(flat_doc *d)
{
    uint32_t *stack = malloc(d->n * sizeof *stack);
    size_t top = 0;
    int ok = 1;
    d->order = malloc(d->n * sizeof *d->order);
    if (stack == NULL || d->order == NULL) {
        free(stack);
        d->ctx->err = RS_ENOMEM;
        return 0;
    }
    stack[top++] = (uint32_t)d->root;
    d->e[d->root].depth = 0;
    while (top > 0) {
        uint32_t i = stack[--top];
        flat_entry *e = &d->e[i];
        if (e->depth >= d->ctx->limits.max_depth) {
            if (ok) {
                size_t mark = push_entry(d, i);
                rs_report(d->ctx, "too_deep", "the tree may have at most %" PRIu32 " levels",
                          d->ctx->limits.max_depth);
                rs_ptr_pop(&d->ctx->ptr, mark);
            }
            ok = 0;
            continue;
        }
        e->node = (int32_t)d->norder;
        d->order[d->norder++] = i;
        for (uint32_t k = e->nchildren; k > 0; k--) {
            uint32_t c = d->children[e->first + k - 1];
            d->e[c].depth = e->depth + 1;
            stack[top++] = c;
        }
    }
    free(stack);
    return ok;
}

/* ---- ids and the model ---- */

/* Makes a unique id for entry i from its name: invalid characters become '-', at most 64
 * bytes, then "-2", "-3", ... until unused. Returns the new id or NULL (out of memory). */
static char *slug_id(flat_doc *d, size_t i)
{
    const flat_entry *e = &d->e[i];
    const unsigned char *u = (const unsigned char *)e->name;
    char base[RS_MAX_ID_LEN + 1], candidate[RS_MAX_ID_LEN + 1];
    size_t len = 0;
    for (size_t k = 0; k < e->name_len && len < RS_MAX_ID_LEN;) {
        uint32_t cp = 0;
        size_t n = rs_utf8_decode(u + k, e->name_len - k, &cp);
        int keep = n == 1 && rs_id_valid((const char *)u + k, 1);
        base[len++] = keep ? (char)u[k] : '-';
        k += n == 0 ? 1 : n;
    }
    memcpy(candidate, base, len);
    size_t clen = len;
    for (uint32_t suffix = 2; rs_set_find(&d->ids, candidate, clen, NULL); suffix++) {
        char tail[16];
        int t = snprintf(tail, sizeof tail, "-%" PRIu32, suffix);
        size_t keep = len + (size_t)t <= RS_MAX_ID_LEN ? len : RS_MAX_ID_LEN - (size_t)t;
        memcpy(candidate, base, keep);
        memcpy(candidate + keep, tail, (size_t)t);
        clen = keep + (size_t)t;
    }
    return rs_copy_str(d->ctx, candidate, clen);
}

/* Derives every entry's node id: names that are valid ids keep them; the others get a slug,
 * in file order. Returns 1 on success, 0 when out of memory. */
static int derive_ids(flat_doc *d)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < d->n; i++) {
            flat_entry *e = &d->e[i];
            int valid = rs_id_valid(e->name, e->name_len);
            if (valid != (pass == 0))
                continue;
            e->id = valid ? rs_copy_str(d->ctx, e->name, e->name_len) : slug_id(d, i);
            if (e->id == NULL ||
                rs_set_insert(d->ctx, &d->ids, e->id, strlen(e->id), (uint32_t)i, NULL) < 0)
                return 0;
        }
    }
    return 1;
}

/* Fills a model node from entry i. Returns 1, or 0 when out of memory. */
static int fill_node(flat_doc *d, rs_node *node, size_t i)
{
    flat_entry *e = &d->e[i];
    node->id = e->id;
    e->id = NULL;
    node->name = rs_copy_str(d->ctx, e->name, e->name_len);
    if (node->name == NULL)
        return 0;
    node->parent = e->parent == NO_ENTRY ? -1 : d->e[e->parent].node;
    node->depth = e->depth;
    if (i < d->np) {
        node->children = malloc(e->nchildren * sizeof *node->children);
        if (node->children == NULL) {
            d->ctx->err = RS_ENOMEM;
            return 0;
        }
        for (uint32_t k = 0; k < e->nchildren; k++)
            node->children[k] = (uint32_t)d->e[d->children[e->first + k]].node;
        node->nchildren = e->nchildren;
        return 1;
    }
    node->is_leaf = 1;
    node->freq.kind = RS_FREQ_BERNOULLI;
    node->freq.p = e->p;
    node->sev = e->sev;
    return 1;
}

/* Builds the model's nodes in preorder. */
static void build_nodes(flat_doc *d)
{
    if (!derive_ids(d))
        return;
    for (size_t k = 0; k < d->norder; k++) {
        int32_t idx = rs_model_add_node(d->ctx, d->model, "");
        if (idx < 0 || !fill_node(d, &d->model->nodes[idx], d->order[k]))
            return;
    }
}

/* Frees what the document owns (not the model). */
static void flat_release(flat_doc *d)
{
    for (size_t i = 0; i < d->n && d->e != NULL; i++)
        free(d->e[i].id);
    free(d->e);
    free(d->children);
    free(d->order);
    rs_set_free(&d->names);
    rs_set_free(&d->ids);
}

void rs_parse_flat(rs_pctx *ctx, const struct json_object *request, rs_model *model)
{
    flat_doc d;
    memset(&d, 0, sizeof d);
    d.ctx = ctx;
    d.model = model;
    const struct json_object *portfolios = rs_get_array(ctx, request, "portfolios", RS_REQUIRED);
    const struct json_object *leaves = rs_get_array(ctx, request, "leaves", RS_REQUIRED);
    d.np = portfolios != NULL ? json_object_array_length(portfolios) : 0;
    d.nl = leaves != NULL ? json_object_array_length(leaves) : 0;
    d.n = d.np + d.nl;
    if (d.n > ctx->limits.max_nodes) {
        rs_report_at(ctx, "", "too_many",
                     "the tree has %zu portfolios and leaves; at most %" PRIu32 " nodes", d.n,
                     ctx->limits.max_nodes);
        ctx->stopped = 1;
        return;
    }
    d.e = calloc(d.n > 0 ? d.n : 1, sizeof *d.e);
    if (d.e == NULL) {
        ctx->err = RS_ENOMEM;
        return;
    }
    for (size_t i = 0; i < d.n; i++)
        d.e[i].parent = d.e[i].node = NO_ENTRY;
    check_entries(&d, portfolios, leaves);
    if (portfolios != NULL && leaves != NULL && !rs_failed(ctx) && link_entries(&d)) {
        int grouped = group_children(&d);
        if (!rs_failed(ctx) && layout(&d) && grouped && ctx->nerrors == 0)
            build_nodes(&d);
    }
    flat_release(&d);
}
