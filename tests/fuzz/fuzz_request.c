/*
 * libFuzzer target: the simulation request parser.
 *
 * Why this file exists: the request body is the engine's main untrusted input. This target feeds
 * arbitrary bytes to rs_model_parse with the default limits and checks what must hold for any
 * input: no crash, hang or leak (the sanitizers), a model exactly when the status is RS_OK, at
 * least one problem otherwise, problem strings that are valid UTF-8 (the responder puts them in
 * JSON), and a model whose tree is consistent (preorder, parents, depths, leaves, seedVars).
 * Build with -DRISKSIM_FUZZ=ON and clang; seeds are in corpus/request, keywords in request.dict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run (libFuzzer reports it with the input) when cond is false. */
static void require(int cond)
{
    if (!cond)
        abort();
}

/* Returns non-zero when s is valid UTF-8. */
static int valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = rs_utf8_decode(u + i, len - i, &cp);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Checks the tree of a model built without problems. */
static void check_model(const rs_model *m)
{
    size_t leaves = 0;
    require(m->nnodes >= 1 && m->nnodes <= RS_MAX_NODES);
    require(m->nodes[0].parent == -1 && m->nodes[0].depth == 0);
    require(m->height >= 1 && m->height <= RS_MAX_DEPTH);
    require(m->nlevels >= 1 && m->nlevels <= RS_MAX_QUANTILES);
    for (size_t i = 0; i < m->nnodes; i++) {
        const rs_node *n = &m->nodes[i];
        require(n->id != NULL && n->name != NULL);
        require(rs_id_valid(n->id, strlen(n->id)));
        if (i > 0) {
            require(n->parent >= 0 && (size_t)n->parent < i);
            require(n->depth == m->nodes[n->parent].depth + 1);
        }
        require(n->depth < m->height);
        for (uint32_t k = 0; k < n->nchildren; k++)
            require(n->children[k] > i && n->children[k] < m->nnodes &&
                    m->nodes[n->children[k]].parent == (int32_t)i);
        require(n->is_leaf ? n->nchildren == 0 : n->nchildren > 0);
        if (n->is_leaf) {
            require(n->seed_var >= 1 && n->seed_var < RS_MAX_SEED_VAR);
            require(m->leaves[n->leaf_index] == i);
            leaves++;
        }
    }
    require(leaves == m->nleaves);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rs_limits limits;
    rs_model *model = NULL;
    rs_diag *diag = rs_diag_new();
    if (diag == NULL)
        return 0;
    rs_limits_default(&limits);
    rs_err err = rs_model_parse((const char *)data, size, &limits, &model, diag);
    require((err == RS_OK) == (model != NULL));
    require(err == RS_OK || err == RS_EJSON || err == RS_EVALIDATION || err == RS_ENOMEM);
    if (err == RS_OK)
        check_model(model);
    else if (err != RS_ENOMEM)
        require(rs_diag_count(diag) >= 1);
    for (size_t i = 0; i < rs_diag_count(diag); i++)
        require(valid_utf8(rs_diag_pointer(diag, i)) && valid_utf8(rs_diag_message(diag, i)));
    rs_model_free(model);
    rs_diag_free(diag);
    return 0;
}
