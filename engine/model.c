/*
 * The model's lifetime and read-only accessors.
 *
 * Why this file exists: the parser (parse.c, parse_flat.c) builds an rs_model and every other
 * part of the engine only reads it. Freeing a model (complete or half built after an error),
 * the public accessors of engine.h, the request limits' defaults and the label of a quantile
 * level ("p99.5") live here so that readers need not know how the parser works.
 */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

void rs_limits_default(rs_limits *limits)
{
    if (limits == NULL)
        return;
    limits->max_trials = 10000000u;
    limits->max_depth = RS_MAX_DEPTH;
    limits->max_nodes = RS_MAX_NODES;
}

/* Frees what one node owns (its struct stays). Safe on a zeroed or half-filled node. */
static void node_release(rs_node *node)
{
    free(node->id);
    free(node->name);
    free(node->children);
    free(node->controls);
    rs_poisson_free(&node->freq.poisson);
    if (node->sev.kind == RS_SEV_PERT)
        rs_pert_free(&node->sev.u.pert);
}

void rs_model_free(rs_model *model)
{
    if (model == NULL)
        return;
    for (size_t i = 0; i < model->nnodes; i++)
        node_release(&model->nodes[i]);
    free(model->nodes);
    free(model->leaves);
    free(model->name);
    free(model);
}

uint64_t rs_model_trials(const rs_model *model)
{
    return model == NULL ? 0 : model->trials;
}

uint32_t rs_model_seed(const rs_model *model)
{
    return model == NULL ? 0 : model->seed;
}

const char *rs_model_name(const rs_model *model)
{
    if (model == NULL || model->name == NULL)
        return "";
    return model->name;
}

size_t rs_model_node_count(const rs_model *model)
{
    return model == NULL ? 0 : model->nnodes;
}

size_t rs_model_leaf_count(const rs_model *model)
{
    return model == NULL ? 0 : model->nleaves;
}

void rs_level_label(double level, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return;
    snprintf(buf, size, "p%.10g", level * 100.0);
}
