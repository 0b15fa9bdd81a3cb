/*
 * Tests of request parsing and validation (engine/json.c, parse.c, parse_flat.c, model.c).
 *
 * Why this file exists: the request rules of docs/api.md section 1 and docs/request.md are the
 * contract between clients and the engine. A table of broken requests pins the status, code and
 * JSON pointer of each rule (both forms), a few requests prove that every problem is collected,
 * generated requests probe the limits (nesting, depth, node count), and valid requests pin the
 * model the parser builds: preorder, parents, defaults, the flat conversion and the seedVar rule.
 *
 * Request texts below are written with ' for " (and ` for a real '), to keep them readable.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "model.h"

/* ---- helpers ---- */

/* Turns a test text into JSON: ' becomes ", ` becomes '. The caller frees the copy. */
static char *json_text(const char *tmpl, size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    for (size_t i = 0; i < len; i++)
        s[i] = tmpl[i] == '\'' ? '"' : tmpl[i] == '`' ? '\'' : tmpl[i];
    s[len] = '\0';
    return s;
}

/* Parses a test text with limits (NULL: defaults). */
static rs_err parse_len(const char *tmpl, size_t len, const rs_limits *limits, rs_model **model,
                        rs_diag *diag)
{
    char *text = json_text(tmpl, len);
    rs_err err = rs_model_parse(text, len, limits, model, diag);
    free(text);
    return err;
}

static rs_err parse(const char *tmpl, rs_model **model, rs_diag *diag)
{
    return parse_len(tmpl, strlen(tmpl), NULL, model, diag);
}

/* Parses a text that must be valid; returns the model. */
static rs_model *parse_ok(const char *tmpl)
{
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    rs_err err = parse(tmpl, &model, diag);
    if (err != RS_OK) {
        for (size_t i = 0; i < rs_diag_count(diag); i++)
            print_error("  %s %s %s\n", rs_diag_pointer(diag, i), rs_diag_code(diag, i),
                        rs_diag_message(diag, i));
    }
    assert_int_equal(err, RS_OK);
    assert_non_null(model);
    rs_diag_free(diag);
    return model;
}

/* Returns the index of the problem with code at pointer, or -1. */
static long find_problem(const rs_diag *diag, const char *code, const char *pointer)
{
    for (size_t i = 0; i < rs_diag_count(diag); i++)
        if (strcmp(rs_diag_code(diag, i), code) == 0 &&
            strcmp(rs_diag_pointer(diag, i), pointer) == 0)
            return (long)i;
    return -1;
}

static void dump_diag(const rs_diag *diag)
{
    for (size_t i = 0; i < rs_diag_count(diag); i++)
        print_error("    got %s %s: %s\n", rs_diag_pointer(diag, i), rs_diag_code(diag, i),
                    rs_diag_message(diag, i));
}

/* Reads a whole file into a new buffer. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static const rs_node *node_by_id(const rs_model *m, const char *id)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].id, id) == 0)
            return &m->nodes[i];
    fail_msg("no node %s", id);
    return NULL;
}

/* ---- request building blocks (see the note at the top about quotes) ---- */

#define TREE(node) "{'root':" node "}"
#define LEAF_HEAD "'id':'l','type':'leaf'"
#define FREQ_OK "'frequency':{'type':'bernoulli','p':0.5}"
#define SEV_OK "'severity':{'type':'constant','value':1}"
#define SEV(s) TREE("{" LEAF_HEAD "," FREQ_OK ",'severity':" s "}")
#define FREQ(f) TREE("{" LEAF_HEAD ",'frequency':" f "," SEV_OK "}")
#define LEAF_EXTRA(x) TREE("{" LEAF_HEAD "," FREQ_OK "," SEV_OK "," x "}")
#define KID(id) "{'id':'" id "','type':'leaf'," FREQ_OK "," SEV_OK "}"
#define PORT(children) TREE("{'id':'r','type':'portfolio','children':[" children "]}")
#define TOP(fields) "{" fields ",'root':" KID("l") "}"
#define FLAT(p, l) "{'portfolios':[" p "],'leaves':[" l "]}"
#define FP(name) "{'name':'" name "'}"
#define FPP(name, parent) "{'name':'" name "','parentName':'" parent "'}"
#define FL(name, parent)                                                                           \
    "{'name':'" name "','parentName':'" parent "','probability':0.1,"                              \
    "'distributionShape':{'distributionType':'lognormal','minLoss':1,'maxLoss':10}}"
#define FLS(shape) "{'name':'L','parentName':'R','probability':0.1,'distributionShape':" shape "}"
#define A10 "aaaaaaaaaa"
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10
#define E10 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
#define E100 E10 E10 E10 E10 E10 E10 E10 E10 E10 E10
#define Q8 "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8"
#define INFEASIBLE "{'type':'metalog','percentiles':[0.1,0.5,0.9],'quantiles':[10,11,1000]}"

/* ---- the table of broken requests ---- */

typedef struct bad_case {
    const char *json;
    size_t len;          /* 0: strlen(json) */
    rs_err status;       /* RS_EJSON or RS_EVALIDATION */
    const char *code;    /* expected code ... */
    const char *pointer; /* ... at this pointer (at least one problem must match) */
    size_t count;        /* exact number of problems, or 0 for "at least one" */
    const char *message; /* a piece the matching message must contain, or NULL */
} bad_case;

#define J RS_EJSON
#define V RS_EVALIDATION

static const bad_case bad_cases[] = {
    /* not JSON: one problem, whole document */
    {"", 0, J, "invalid_json", "", 1, "end of input"},
    {"{'root':", 0, J, "invalid_json", "", 1, NULL},
    {"{} x", 0, J, "invalid_json", "", 1, "offset 3"},
    {"{}{}", 0, J, "invalid_json", "", 1, NULL},
    {"{'a':NaN}", 0, J, "invalid_json", "", 1, "NaN"},
    {"{'a':-Infinity}", 0, J, "invalid_json", "", 1, NULL},
    {"{`a`:1}", 0, J, "invalid_json", "", 1, "single quotes"},
    {"{'name':'a\tb'}", 0, J, "invalid_json", "", 1, "control character"},
    {"{'name':'\xff'}", 0, J, "invalid_json", "", 1, NULL},
    {"{'name':'\xc0\xaf'}", 0, J, "invalid_json", "", 1, "UTF-8"},
    {"{'name':'\xed\xa0\x80'}", 0, J, "invalid_json", "", 1, "UTF-8"},
    {"{}\0 ", 4, J, "invalid_json", "", 1, "NUL byte"},
    {"{'trials':01}", 0, J, "invalid_json", "", 1, NULL},
    {"{'trials':1.}", 0, J, "invalid_json", "", 1, NULL},
    {"{/*c*/}", 0, J, "invalid_json", "", 1, NULL},
    {"\xef\xbb\xbf{}", 0, J, "invalid_json", "", 1, NULL},
    {"{'a':tRue}", 0, J, "invalid_json", "", 1, NULL},
    /* the top level */
    {"[1]", 0, V, "type", "", 1, "object"},
    {"null", 0, V, "type", "", 1, NULL},
    {"{}", 0, V, "required", "/root", 1, NULL},
    {TOP("'trials':0"), 0, V, "out_of_range", "/trials", 1, NULL},
    {TOP("'trials':1.5"), 0, V, "type", "/trials", 1, NULL},
    {TOP("'trials':'10'"), 0, V, "type", "/trials", 1, NULL},
    {TOP("'trials':10000001"), 0, V, "out_of_range", "/trials", 1, NULL},
    {TOP("'trials':10,'nTrials':10"), 0, V, "conflict", "/nTrials", 1, NULL},
    {TOP("'nTrials':-3"), 0, V, "out_of_range", "/nTrials", 1, NULL},
    {TOP("'seed':100000000"), 0, V, "out_of_range", "/seed", 1, NULL},
    {TOP("'seed':1e400"), 0, V, "out_of_range", "/seed", 1, "finite"},
    {TOP("'seed':99999999999999999999"), 0, V, "out_of_range", "/seed", 1, NULL},
    {TOP("'seed':null"), 0, V, "type", "/seed", 1, NULL},
    {TOP("'quantiles':[]"), 0, V, "too_few", "/quantiles", 1, NULL},
    {TOP("'quantiles':[" Q8 "," Q8 "," Q8 "," Q8 ",0.9]"), 0, V, "too_many", "/quantiles", 1, NULL},
    {TOP("'quantiles':[0.5,0.9,0.50000000000001]"), 0, V, "duplicate", "/quantiles/2", 1, "p50"},
    {TOP("'quantiles':[0.5,1]"), 0, V, "out_of_range", "/quantiles/1", 1, NULL},
    {TOP("'quantiles':[0,0.5]"), 0, V, "out_of_range", "/quantiles/0", 1, NULL},
    {TOP("'quantiles':[0.5,'p99']"), 0, V, "type", "/quantiles/1", 1, NULL},
    {TOP("'quantiles':0.5"), 0, V, "type", "/quantiles", 1, NULL},
    {TOP("'name':''"), 0, V, "too_short", "/name", 1, NULL},
    {TOP("'name':'" A100 A100 "a'"), 0, V, "too_long", "/name", 1, NULL},
    {TOP("'name':'a\\u0001'"), 0, V, "invalid_format", "/name", 1, NULL},
    {TOP("'name':'a\\u0085'"), 0, V, "invalid_format", "/name", 1, NULL},
    {TOP("'name':'a\\u007f'"), 0, V, "invalid_format", "/name", 1, NULL},
    {TOP("'name':7"), 0, V, "type", "/name", 1, NULL},
    {TOP("'trails':5"), 0, V, "unknown_field", "/trails", 1, "did you mean \"trials\""},
    {TOP("'description':5"), 0, V, "type", "/description", 1, NULL},
    {TOP("'a/b~c':1"), 0, V, "unknown_field", "/a~1b~0c", 1, NULL},
    /* nodes */
    {TREE("{'type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V, "required", "/root/id", 1, NULL},
    {TREE("{'id':'','type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V, "too_short", "/root/id", 1,
     NULL},
    {TREE("{'id':'" A10 A10 A10 A10 A10 A10 "aaaaa','type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V,
     "too_long", "/root/id", 1, NULL},
    {TREE("{'id':'a b','type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V, "invalid_format", "/root/id",
     1, NULL},
    {TREE("{'id':'a\\u0000b','type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V, "invalid_format",
     "/root/id", 1, NULL},
    {TREE("{'id':7,'type':'leaf'," FREQ_OK "," SEV_OK "}"), 0, V, "type", "/root/id", 1, NULL},
    {PORT(KID("a") "," KID("b") "," KID("a")), 0, V, "duplicate", "/root/children/2/id", 1, NULL},
    {LEAF_EXTRA("'name':'x\\u0000y'"), 0, V, "invalid_format", "/root/name", 1, NULL},
    {LEAF_EXTRA("'name':'" E100 E100 "\xc3\xa9'"), 0, V, "too_long", "/root/name", 1, "201"},
    {TREE("{'id':'l','type':'risk'," FREQ_OK "," SEV_OK "}"), 0, V, "invalid_value", "/root/type",
     1, NULL},
    {TREE("{'id':'l'," FREQ_OK "," SEV_OK "}"), 0, V, "required", "/root/type", 1, NULL},
    {TREE("{'id':'r','type':'portfolio','children':[]}"), 0, V, "too_few", "/root/children", 1,
     NULL},
    {TREE("{'id':'r','type':'portfolio'}"), 0, V, "required", "/root/children", 1, NULL},
    {TREE("{'id':'r','type':'portfolio','children':{}}"), 0, V, "type", "/root/children", 1, NULL},
    {PORT(KID("a") ",[1]"), 0, V, "type", "/root/children/1", 1, NULL},
    {TREE("{'id':'r','type':'portfolio','children':[" KID("a") "]," FREQ_OK "}"), 0, V,
     "unknown_field", "/root/frequency", 1, NULL},
    {TREE("{'id':'r','type':'portfolio','children':[" KID("a") "],'colour':'red'}"), 0, V,
     "unknown_field", "/root/colour", 1, NULL},
    /* leaves: frequency */
    {TREE("{" LEAF_HEAD "," SEV_OK "}"), 0, V, "required", "/root/frequency", 1, NULL},
    {FREQ("[]"), 0, V, "type", "/root/frequency", 1, NULL},
    {FREQ("{'type':'binomial','p':0.5}"), 0, V, "invalid_value", "/root/frequency/type", 1,
     "binomial"},
    {FREQ("{'type':'bernoulli','p':1.5}"), 0, V, "out_of_range", "/root/frequency/p", 1, NULL},
    {FREQ("{'type':'bernoulli','p':-0.1}"), 0, V, "out_of_range", "/root/frequency/p", 1, NULL},
    {FREQ("{'type':'bernoulli'}"), 0, V, "required", "/root/frequency/p", 1, NULL},
    {FREQ("{'type':'poisson','lambda':1001}"), 0, V, "out_of_range", "/root/frequency/lambda", 1,
     NULL},
    {FREQ("{'type':'poisson','lamda':3}"), 0, V, "unknown_field", "/root/frequency/lamda", 2,
     "did you mean \"lambda\""},
    {FREQ("{'type':'poisson','lambda':1,'p':0.5}"), 0, V, "unknown_field", "/root/frequency/p", 1,
     NULL},
    /* leaves: severity */
    {TREE("{" LEAF_HEAD "," FREQ_OK "}"), 0, V, "required", "/root/severity", 1, NULL},
    {SEV("{'type':'normal'}"), 0, V, "invalid_value", "/root/severity/type", 1, NULL},
    {SEV("{'type':'lognormal','lower':0,'upper':10}"), 0, V, "out_of_range", "/root/severity/lower",
     1, NULL},
    {SEV("{'type':'lognormal','lower':10,'upper':5}"), 0, V, "conflict", "/root/severity/upper", 1,
     NULL},
    {SEV("{'type':'lognormal','lower':1,'upper':10,'mu':1}"), 0, V, "conflict", "/root/severity", 1,
     NULL},
    {SEV("{'type':'lognormal'}"), 0, V, "required", "/root/severity", 1, NULL},
    {SEV("{'type':'lognormal','lower':1}"), 0, V, "required", "/root/severity/upper", 1, NULL},
    {SEV("{'type':'lognormal','lower':1,'upper':10,'ci':1}"), 0, V, "out_of_range",
     "/root/severity/ci", 1, NULL},
    {SEV("{'type':'lognormal','mu':1,'sigma':0}"), 0, V, "out_of_range", "/root/severity/sigma", 1,
     NULL},
    {SEV("{'type':'lognormal','mu':1}"), 0, V, "required", "/root/severity/sigma", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.5],'quantiles':[1]}"), 0, V, "too_few",
     "/root/severity/percentiles", 2, NULL},
    {SEV("{'type':'metalog','percentiles':[" Q8 "," Q8 ",0.9],'quantiles':[1,2]}"), 0, V,
     "too_many", "/root/severity/percentiles", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.5,0.9],'quantiles':[1,2]}"), 0, V, "conflict",
     "/root/severity/quantiles", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.5,0.5],'quantiles':[1,2,3]}"), 0, V,
     "not_increasing", "/root/severity/percentiles/2", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.5,0.9],'quantiles':[1,3,2]}"), 0, V,
     "not_increasing", "/root/severity/quantiles/2", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.5,1],'quantiles':[1,2,3]}"), 0, V, "out_of_range",
     "/root/severity/percentiles/2", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[1,3],'lower':1}"), 0, V,
     "conflict", "/root/severity/lower", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[1,3],'upper':3}"), 0, V,
     "conflict", "/root/severity/upper", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[1,3],'lower':5,'upper':0}"), 0, V,
     "conflict", "/root/severity/upper", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[1,3],'terms':3}"), 0, V,
     "out_of_range", "/root/severity/terms", 1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[1,3],'terms':2.5}"), 0, V, "type",
     "/root/severity/terms", 1, NULL},
    {SEV(INFEASIBLE), 0, V, "infeasible", "/root/severity", 1, "node \"l\""},
    {SEV("{'type':'pert','min':-1,'mode':0,'max':1}"), 0, V, "out_of_range", "/root/severity/min",
     1, NULL},
    {SEV("{'type':'pert','min':0,'mode':5,'max':1}"), 0, V, "conflict", "/root/severity/mode", 1,
     NULL},
    {SEV("{'type':'pert','min':1,'mode':1,'max':1}"), 0, V, "conflict", "/root/severity/max", 1,
     NULL},
    {SEV("{'type':'pert','min':0,'mode':1,'max':2,'gamma':0}"), 0, V, "out_of_range",
     "/root/severity/gamma", 1, NULL},
    {SEV("{'type':'uniform','min':5,'max':1}"), 0, V, "conflict", "/root/severity/max", 1, NULL},
    {SEV("{'type':'uniform','min':-5,'max':1}"), 0, V, "out_of_range", "/root/severity/min", 1,
     NULL},
    {SEV("{'type':'constant','value':-5}"), 0, V, "out_of_range", "/root/severity/value", 1, NULL},
    /* amounts are at most 1e15 */
    {SEV("{'type':'lognormal','mu':700,'sigma':10}"), 0, V, "out_of_range", "/root/severity/mu", 1,
     NULL},
    {SEV("{'type':'lognormal','lower':1,'upper':2e15}"), 0, V, "out_of_range",
     "/root/severity/upper", 1, NULL},
    {SEV("{'type':'constant','value':2e15}"), 0, V, "out_of_range", "/root/severity/value", 1,
     NULL},
    {SEV("{'type':'uniform','min':0,'max':1e300}"), 0, V, "out_of_range", "/root/severity/max", 1,
     NULL},
    {SEV("{'type':'pert','min':0,'mode':1,'max':1e16}"), 0, V, "out_of_range", "/root/severity/max",
     1, NULL},
    {SEV("{'type':'metalog','percentiles':[0.1,0.9],'quantiles':[-2e15,1]}"), 0, V, "out_of_range",
     "/root/severity/quantiles/0", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'lognormal','minLoss':1,'maxLoss':1e16}")), 0, V,
     "out_of_range", "/leaves/0/distributionShape/maxLoss", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'scale','factor':1e7}]"), 0, V, "out_of_range",
     "/root/controls/0/factor", 1, NULL},
    {SEV("{'type':'constant','value':1,'min':0}"), 0, V, "unknown_field", "/root/severity/min", 1,
     NULL},
    /* leaves: controls, seedVar */
    {LEAF_EXTRA("'controls':{}"), 0, V, "type", "/root/controls", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'cap','amount':1}]"), 0, V, "invalid_value",
     "/root/controls/0/type", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'deductible','amount':-1}]"), 0, V, "out_of_range",
     "/root/controls/0/amount", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'limit','amount':5},{'type':'insurance','deductible':1}]"), 0,
     V, "required", "/root/controls/1/limit", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'scale','factor':'2'}]"), 0, V, "type",
     "/root/controls/0/factor", 1, NULL},
    {LEAF_EXTRA("'controls':[{'type':'scale','amount':2}]"), 0, V, "unknown_field",
     "/root/controls/0/amount", 2, NULL},
    {LEAF_EXTRA("'controls':[3]"), 0, V, "type", "/root/controls/0", 1, NULL},
    {LEAF_EXTRA("'controls':[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]"), 0, V,
     "too_many", "/root/controls", 1, NULL},
    {LEAF_EXTRA("'seedVar':0"), 0, V, "out_of_range", "/root/seedVar", 1, NULL},
    {LEAF_EXTRA("'seedVar':50000000"), 0, V, "out_of_range", "/root/seedVar", 1, NULL},
    {LEAF_EXTRA("'seedVar':1.5"), 0, V, "type", "/root/seedVar", 1, NULL},
    {PORT("{'id':'a','type':'leaf'," FREQ_OK "," SEV_OK ",'seedVar':7},"
          "{'id':'b','type':'leaf'," FREQ_OK "," SEV_OK ",'seedVar':7}"),
     0, V, "duplicate", "/root/children/1/seedVar", 1, "node \"a\""},
    /* the flat form */
    {FLAT(FP("R"), FL("L", "Nowhere")), 0, V, "unknown_parent", "/leaves/0/parentName", 1,
     "Nowhere"},
    {FLAT(FP("R"), FL("L", "R") "," FL("M", "L")), 0, V, "unknown_parent", "/leaves/1/parentName",
     1, "leaf"},
    {FLAT(FP("R") "," FP("S"), FL("L", "R") "," FL("M", "S")), 0, V, "conflict", "/portfolios/1", 1,
     NULL},
    {FLAT(FPP("A", "B") "," FPP("B", "A"), FL("L", "A")), 0, V, "cycle", "/portfolios/0/parentName",
     2, NULL},
    {FLAT(FP("R") "," FPP("A", "B") "," FPP("B", "C") "," FPP("C", "A"), FL("L", "R")), 0, V,
     "cycle", "/portfolios/1/parentName", 1, "\"A\" -> \"B\" -> \"C\" -> \"A\""},
    {FLAT(FP("R") "," FPP("S", "S"), FL("L", "R")), 0, V, "cycle", "/portfolios/1/parentName", 1,
     NULL},
    {FLAT("", FL("L", "R")), 0, V, "unknown_parent", "/leaves/0/parentName", 2, NULL},
    {FLAT("", FL("L", "R")), 0, V, "too_few", "/portfolios", 2, NULL},
    {FLAT(FP("R"), FL("R", "R")), 0, V, "duplicate", "/leaves/0/name", 1, NULL},
    {FLAT(FP("R") "," FPP("Empty", "R"), FL("L", "R")), 0, V, "too_few", "/portfolios/1", 1,
     "Empty"},
    {FLAT(FP("R"), "{'name':'L','parentName':'R','probability':1.2,'distributionShape':{"
                   "'distributionType':'lognormal','minLoss':1,'maxLoss':10}}"),
     0, V, "out_of_range", "/leaves/0/probability", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'weibull'}")), 0, V, "invalid_value",
     "/leaves/0/distributionShape/distributionType", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'lognormal','minLoss':10,'maxLoss':10}")), 0, V,
     "conflict", "/leaves/0/distributionShape/maxLoss", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'lognormal','maxLoss':10}")), 0, V, "required",
     "/leaves/0/distributionShape/minLoss", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'expert','percentiles':[0.1,0.9],'quantiles':[0,5]}")),
     0, V, "out_of_range", "/leaves/0/distributionShape/quantiles/0", 1, NULL},
    {FLAT(FP("R"), FLS("{'distributionType':'expert','percentiles':[0.1,0.5,0.9],"
                       "'quantiles':[10,11,1000]}")),
     0, V, "infeasible", "/leaves/0/distributionShape", 1, "leaf \"L\""},
    {FLAT(FP("R"), "{'name':'L','parentName':'R','probability':0.1,'colour':1,"
                   "'distributionShape':{'distributionType':'lognormal','minLoss':1,'maxLoss':2}}"),
     0, V, "unknown_field", "/leaves/0/colour", 1, NULL},
    {FLAT(FP("R"), "{'name':'L','probability':0.1,'distributionShape':{"
                   "'distributionType':'lognormal','minLoss':1,'maxLoss':2}}"),
     0, V, "required", "/leaves/0/parentName", 1, NULL},
    {FLAT(FP("R"), "{'name':'L','parentName':'','probability':0.1,'distributionShape':{"
                   "'distributionType':'lognormal','minLoss':1,'maxLoss':2}}"),
     0, V, "required", "/leaves/0/parentName", 1, NULL},
    {"{'portfolios':{},'leaves':[]}", 0, V, "type", "/portfolios", 1, NULL},
    {"{'portfolios':[" FP("R") "]}", 0, V, "required", "/leaves", 1, NULL},
    {FLAT("3", FL("L", "R")), 0, V, "type", "/portfolios/0", 0, NULL},
    {FLAT("{'name':'R','parentName':5}", FL("L", "R")), 0, V, "type", "/portfolios/0/parentName", 0,
     NULL},
    {"{'trials':5,'nTrials':5,'portfolios':[" FP("R") "],'leaves':[" FL("L", "R") "]}", 0, V,
     "conflict", "/nTrials", 1, NULL},
    {"{'portfolios':[" FP("R") "],'leaves':[" FL("L", "R") "],'root':5}", 0, V, "type", "/root", 0,
     NULL},
    {"{'portfolios':[" FP("R") "],'leaves':[" FL("L", "R") "],'depth':5}", 0, V, "unknown_field",
     "/depth", 1, NULL},
};

static void test_bad_requests(void **state)
{
    (void)state;
    size_t failures = 0;
    assert_true(sizeof bad_cases / sizeof bad_cases[0] >= 50);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        rs_diag *diag = rs_diag_new();
        rs_model *model = NULL;
        size_t len = c->len ? c->len : strlen(c->json);
        rs_err err = parse_len(c->json, len, NULL, &model, diag);
        long hit = find_problem(diag, c->code, c->pointer);
        int ok = err == c->status && model == NULL && hit >= 0 &&
                 (c->count == 0 || rs_diag_count(diag) == c->count) &&
                 (c->message == NULL || strstr(rs_diag_message(diag, (size_t)hit), c->message));
        if (!ok) {
            print_error("case %zu: %s\n  want %d %s at \"%s\" (count %zu), got status %d\n", i,
                        c->json, c->status, c->code, c->pointer, c->count, err);
            dump_diag(diag);
            failures++;
        }
        rs_model_free(model);
        rs_diag_free(diag);
    }
    assert_int_equal(failures, 0);
}

/* ---- every problem is collected ---- */

static void expect_all(const char *json, const char *const *expected, size_t n)
{
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    assert_int_equal(parse(json, &model, diag), RS_EVALIDATION);
    assert_null(model);
    if (rs_diag_count(diag) != n)
        dump_diag(diag);
    assert_int_equal(rs_diag_count(diag), n);
    for (size_t i = 0; i < n; i++) {
        const char *sep = strchr(expected[i], ' ');
        char code[32];
        memcpy(code, expected[i], (size_t)(sep - expected[i]));
        code[sep - expected[i]] = '\0';
        if (find_problem(diag, code, sep + 1) < 0) {
            dump_diag(diag);
            fail_msg("missing %s", expected[i]);
        }
    }
    rs_diag_free(diag);
}

static void test_collects_every_problem(void **state)
{
    (void)state;
    static const char *const tree_expected[] = {
        "conflict /nTrials",
        "out_of_range /seed",
        "duplicate /quantiles/1",
        "unknown_field /colour",
        "invalid_format /root/children/0/id",
        "out_of_range /root/children/0/frequency/p",
        "conflict /root/children/0/severity/upper",
        "duplicate /root/children/2/id",
        "unknown_field /root/children/2/frequency/lamda",
        "required /root/children/2/frequency/lambda",
        "out_of_range /root/children/2/controls/0/amount",
        "invalid_value /root/children/2/controls/1/type",
        "required /root/children/3/children",
    };
    expect_all("{'trials':5,'nTrials':5,'seed':-1,'quantiles':[0.9,0.9],'colour':1,'root':{"
               "'id':'r','type':'portfolio','children':["
               "{'id':'a b','type':'leaf','frequency':{'type':'bernoulli','p':2},"
               "'severity':{'type':'lognormal','lower':5,'upper':1}},"
               "{'id':'c','type':'leaf'," FREQ_OK "," SEV_OK "},"
               "{'id':'c','type':'leaf','frequency':{'type':'poisson','lamda':2}," SEV_OK ","
               "'controls':[{'type':'limit','amount':-1},{'type':'cap'}]},"
               "{'id':'p','type':'portfolio'}]}}",
               tree_expected, sizeof tree_expected / sizeof tree_expected[0]);

    static const char *const flat_expected[] = {
        "out_of_range /seed",
        "duplicate /portfolios/2/name",
        "out_of_range /leaves/0/probability",
        "conflict /leaves/1/distributionShape/maxLoss",
        "unknown_parent /leaves/2/parentName",
        "cycle /portfolios/3/parentName",
    };
    expect_all("{'seed':1e9,'portfolios':[" FP("R") "," FPP("A", "R") "," FPP(
                   "A", "R") ","
                             "{'name':'S','parentName':'S'}],'leaves':["
                             "{'name':'L1','parentName':'A','probability':-1,'distributionShape':{"
                             "'distributionType':'lognormal','minLoss':1,'maxLoss':2}},"
                             "{'name':'L2','parentName':'A','probability':0.5,'distributionShape':{"
                             "'distributionType':'lognormal','minLoss':3,'maxLoss':2}},"
                             "{'name':'L3','parentName':'X','probability':0.5,'distributionShape':{"
                             "'distributionType':'lognormal','minLoss':1,'maxLoss':2}}]}",
               flat_expected, sizeof flat_expected / sizeof flat_expected[0]);
}

/* A diag of NULL still gives the right status. */
static void test_null_diag(void **state)
{
    (void)state;
    rs_model *model = NULL;
    char *text = json_text(SEV("{'type':'constant','value':-1}"),
                           strlen(SEV("{'type':'constant','value':-1}")));
    assert_int_equal(rs_model_parse(text, strlen(text), NULL, &model, NULL), RS_EVALIDATION);
    assert_null(model);
    assert_int_equal(rs_model_parse("{", 1, NULL, &model, NULL), RS_EJSON);
    free(text);
}

/* ---- generated requests: nesting, depth, node counts ---- */

/* Appends formatted text at *w in s (cap bytes), failing the test when it does not fit. */
static void append(char *s, size_t cap, size_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s + *w, cap - *w, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < cap - *w);
    *w += (size_t)n;
}

/* A chain of `levels` nodes: portfolios down to one leaf. Freed by the caller. */
static char *chain(size_t levels)
{
    size_t cap = levels * 80 + 200, w = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    append(s, cap, &w, "{'root':");
    for (size_t i = 1; i < levels; i++)
        append(s, cap, &w, "{'id':'p%zu','type':'portfolio','children':[", i);
    append(s, cap, &w, KID("leaf"));
    for (size_t i = 1; i < levels; i++)
        append(s, cap, &w, "]}");
    append(s, cap, &w, "}");
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    char *ok = chain(32);
    rs_model *model = parse_ok(ok);
    assert_int_equal(model->height, 32);
    assert_int_equal(model->nodes[31].depth, 31);
    assert_int_equal(model->nodes[31].parent, 30);
    rs_model_free(model);
    free(ok);

    char *deep = chain(60);
    char pointer[512] = "/root";
    for (int i = 0; i < 32; i++)
        strncat(pointer, "/children/0", sizeof pointer - strlen(pointer) - 1);
    rs_diag *diag = rs_diag_new();
    assert_int_equal(parse(deep, &model, diag), RS_EVALIDATION);
    assert_int_equal(rs_diag_count(diag), 1);
    assert_true(find_problem(diag, "too_deep", pointer) == 0);

    /* a server may lower the limit */
    rs_limits limits;
    rs_limits_default(&limits);
    limits.max_depth = 3;
    rs_diag_clear(diag);
    char *four = chain(4);
    assert_int_equal(parse_len(four, strlen(four), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "too_deep", "/root/children/0/children/0/children/0") >= 0);
    limits.max_depth = 1000; /* capped at 32 */
    rs_diag_clear(diag);
    assert_int_equal(parse_len(deep, strlen(deep), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "too_deep", pointer) == 0);
    rs_diag_free(diag);
    free(four);
    free(deep);
}

static void test_json_nesting(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = malloc(2 * n);
    assert_non_null(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    assert_int_equal(rs_model_parse(s, 2 * n, NULL, &model, diag), RS_EJSON);
    assert_int_equal(rs_diag_count(diag), 1);
    assert_string_equal(rs_diag_code(diag, 0), "invalid_json");
    /* RS_JSON_MAX_NESTING levels are fine */
    struct json_object *obj = NULL;
    size_t ok = RS_JSON_MAX_NESTING;
    memcpy(s + ok, s + 2 * n - ok, ok);
    assert_int_equal(rs_json_parse(s, 2 * ok, &obj, NULL), RS_OK);
    json_object_put(obj);
    assert_int_equal(rs_json_parse(s, 0, &obj, NULL), RS_EJSON);
    assert_int_equal(rs_json_parse("7 \n", 3, &obj, NULL), RS_OK);
    assert_int_equal(json_object_get_int(obj), 7);
    json_object_put(obj);
    rs_diag_free(diag);
    free(s);
}

/* A root portfolio with n leaf children. */
static char *wide(size_t n)
{
    size_t cap = n * 160 + 100, w = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    append(s, cap, &w, "{'root':{'id':'r','type':'portfolio','children':[");
    for (size_t i = 0; i < n; i++)
        append(s, cap, &w, "%s{'id':'l%zu','type':'leaf'," FREQ_OK "," SEV_OK "}", i ? "," : "", i);
    append(s, cap, &w, "]}}");
    return s;
}

static void test_node_count(void **state)
{
    (void)state;
    char *max = wide(RS_MAX_NODES - 1);
    rs_model *model = parse_ok(max);
    assert_int_equal(rs_model_node_count(model), RS_MAX_NODES);
    assert_int_equal(rs_model_leaf_count(model), RS_MAX_NODES - 1);
    /* seedVars of the leaves are all distinct and in range */
    for (size_t i = 0; i < model->nleaves; i++) {
        const rs_node *leaf = &model->nodes[model->leaves[i]];
        assert_true(leaf->seed_var >= 1 && leaf->seed_var < RS_MAX_SEED_VAR);
        assert_int_equal(leaf->leaf_index, i);
    }
    rs_model_free(model);
    free(max);

    char *over = wide(RS_MAX_NODES + 500);
    rs_diag *diag = rs_diag_new();
    assert_int_equal(parse(over, &model, diag), RS_EVALIDATION);
    assert_int_equal(rs_diag_count(diag), 1);
    assert_true(find_problem(diag, "too_many", "/root") == 0);
    free(over);

    rs_limits limits;
    rs_limits_default(&limits);
    limits.max_nodes = 3;
    char *three = wide(3);
    rs_diag_clear(diag);
    assert_int_equal(parse_len(three, strlen(three), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "too_many", "/root") >= 0);
    /* the flat form counts portfolios and leaves */
    rs_diag_clear(diag);
    const char *flat = FLAT(FP("R"), FL("a", "R") "," FL("b", "R") "," FL("c", "R"));
    assert_int_equal(parse_len(flat, strlen(flat), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "too_many", "") >= 0);
    free(three);
    rs_diag_free(diag);
}

static void test_flat_depth(void **state)
{
    (void)state;
    char buf[8192];
    size_t w = 0;
    append(buf, sizeof buf, &w, "{'portfolios':[{'name':'P0'}");
    for (int i = 1; i < 40; i++)
        append(buf, sizeof buf, &w, ",{'name':'P%d','parentName':'P%d'}", i, i - 1);
    append(buf, sizeof buf, &w, "],'leaves':[" FL("L", "P39") "]}");
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    assert_int_equal(parse(buf, &model, diag), RS_EVALIDATION);
    assert_int_equal(rs_diag_count(diag), 1);
    assert_true(find_problem(diag, "too_deep", "/portfolios/32") == 0);
    rs_diag_free(diag);
}

static void test_limits_and_nulls(void **state)
{
    (void)state;
    rs_limits limits;
    rs_model *model = NULL;
    rs_limits_default(&limits);
    assert_int_equal(limits.max_trials, 10000000u);
    assert_int_equal(limits.max_depth, 32);
    assert_int_equal(limits.max_nodes, 10000);
    limits.max_depth = 0;
    assert_int_equal(rs_model_parse("{}", 2, &limits, &model, NULL), RS_EINVAL);
    assert_int_equal(rs_model_parse("{}", 2, NULL, NULL, NULL), RS_EINVAL);
    assert_int_equal(rs_model_from_json(NULL, NULL, NULL, NULL), RS_EINVAL);
    assert_int_equal(rs_model_from_json(NULL, NULL, &model, NULL), RS_EVALIDATION);
    rs_model_free(NULL);
    assert_int_equal(rs_model_trials(NULL), 0);
    assert_string_equal(rs_model_name(NULL), "");
    assert_int_equal(rs_model_node_count(NULL), 0);

    /* trials are capped by the server's limit, also the default */
    rs_limits_default(&limits);
    limits.max_trials = 5000;
    rs_diag *diag = rs_diag_new();
    const char *t = TOP("'trials':5001");
    assert_int_equal(parse_len(t, strlen(t), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "out_of_range", "/trials") >= 0);
    rs_diag_clear(diag);
    const char *d = TREE(KID("l"));
    assert_int_equal(parse_len(d, strlen(d), &limits, &model, diag), RS_EVALIDATION);
    assert_true(find_problem(diag, "out_of_range", "/trials") >= 0);
    rs_diag_free(diag);
}

/* ---- valid requests ---- */

static void test_enterprise_example(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = read_file(RISKSIM_SOURCE_DIR "/examples/enterprise.json", &len);
    rs_diag *diag = rs_diag_new();
    rs_model *m = NULL;
    assert_int_equal(rs_model_parse(text, len, NULL, &m, diag), RS_OK);
    assert_int_equal(rs_diag_count(diag), 0);
    assert_string_equal(rs_model_name(m), "Enterprise cyber risk 2027");
    assert_int_equal(rs_model_trials(m), 100000);
    assert_int_equal(rs_model_seed(m), 42);
    assert_int_equal(rs_model_node_count(m), 3);
    assert_int_equal(rs_model_leaf_count(m), 2);
    assert_int_equal(m->height, 2);
    assert_int_equal(m->nlevels, 6);
    static const char *const labels[] = {"p50", "p90", "p95", "p99", "p99.5", "p99.9"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(m->level_labels[i], labels[i]);

    const rs_node *root = &m->nodes[0], *ransom = &m->nodes[1], *outage = &m->nodes[2];
    assert_string_equal(root->id, "enterprise");
    assert_string_equal(root->name, "Enterprise");
    assert_false(root->is_leaf);
    assert_int_equal(root->parent, -1);
    assert_int_equal(root->depth, 0);
    assert_int_equal(root->nchildren, 2);
    assert_int_equal(root->children[0], 1);
    assert_int_equal(root->children[1], 2);

    assert_string_equal(ransom->id, "ransomware");
    assert_true(ransom->is_leaf);
    assert_int_equal(ransom->parent, 0);
    assert_int_equal(ransom->depth, 1);
    assert_int_equal(ransom->freq.kind, RS_FREQ_BERNOULLI);
    assert_true(ransom->freq.p == 0.2);
    assert_int_equal(ransom->sev.kind, RS_SEV_LOGNORMAL);
    double mu = 0, sigma = 0;
    rs_lognormal_from_interval(500000, 8000000, 0.9, &mu, &sigma);
    assert_true(ransom->sev.u.lognormal.mu == mu && ransom->sev.u.lognormal.sigma == sigma);
    assert_true(fabs(mu - 0.5 * (log(500000.0) + log(8000000.0))) < 1e-12);

    assert_string_equal(outage->name, "Cloud outage");
    assert_int_equal(outage->freq.kind, RS_FREQ_POISSON);
    assert_true(outage->freq.poisson.lambda == 1.5);
    assert_non_null(outage->freq.poisson.cdf);
    assert_int_equal(outage->sev.kind, RS_SEV_METALOG);
    assert_int_equal(outage->sev.u.metalog.bounds, RS_METALOG_LOWER);
    assert_int_equal(outage->sev.u.metalog.terms, 3);
    assert_true(fabs(rs_metalog_quantile(&outage->sev.u.metalog, 0.5) - 90000) < 1e-6 * 90000);
    assert_int_equal(outage->ncontrols, 1);
    assert_int_equal(outage->controls[0].kind, RS_CTRL_DEDUCTIBLE);
    assert_true(outage->controls[0].a == 25000);

    assert_int_equal(m->leaves[0], 1);
    assert_int_equal(m->leaves[1], 2);
    assert_int_equal(ransom->leaf_index, 0);
    assert_int_equal(outage->leaf_index, 1);
    /* default seedVars: 1 + FNV-1a64(path) mod 49999999, paths [0] and [1] */
    assert_int_equal(ransom->seed_var, 18792276);
    assert_int_equal(outage->seed_var, 44637252);
    rs_model_free(m);
    rs_diag_free(diag);
    free(text);
}

static void test_defaults(void **state)
{
    (void)state;
    rs_model *m = parse_ok(TREE(KID("only")));
    assert_string_equal(rs_model_name(m), "");
    assert_int_equal(m->trials, RS_DEFAULT_TRIALS);
    assert_int_equal(m->seed, 0);
    assert_int_equal(m->nlevels, 6);
    assert_true(m->levels[4] == 0.995);
    assert_string_equal(m->nodes[0].name, "only"); /* name defaults to the id */
    assert_int_equal(m->height, 1);
    assert_int_equal(m->nodes[0].seed_var, 16282703); /* empty path */
    assert_int_equal(m->nodes[0].ncontrols, 0);
    rs_model_free(m);

    m = parse_ok(SEV("{'type':'pert','min':0,'mode':1,'max':3}"));
    assert_int_equal(m->nodes[0].sev.kind, RS_SEV_PERT);
    rs_pert pert;
    rs_pert_init(&pert, 0, 1, 3, 4);
    assert_true(m->nodes[0].sev.u.pert.alpha == pert.alpha);
    rs_model_free(m);

    m = parse_ok(SEV("{'type':'lognormal','lower':10,'upper':1000}"));
    double mu = 0, sigma = 0;
    rs_lognormal_from_interval(10, 1000, 0.9, &mu, &sigma); /* ci defaults to 0.9 */
    assert_true(m->nodes[0].sev.u.lognormal.sigma == sigma);
    rs_model_free(m);

    m = parse_ok(SEV("{'type':'metalog','percentiles':[0.1,0.5,0.9],'quantiles':[1,2,5]}"));
    assert_int_equal(m->nodes[0].sev.u.metalog.terms, 3); /* terms default to the pairs */
    assert_int_equal(m->nodes[0].sev.u.metalog.bounds, RS_METALOG_UNBOUNDED);
    rs_model_free(m);
}

static void test_accepted_forms(void **state)
{
    (void)state;
    rs_model *m = parse_ok(TOP("'nTrials':777,'seed':99999999.0,'name':'" E100 E100 "'"));
    assert_int_equal(m->trials, 777);
    assert_int_equal(m->seed, 99999999);
    assert_int_equal(strlen(m->name), 400); /* 200 code points of 2 bytes */
    rs_model_free(m);

    m = parse_ok(TOP("'trials':1e5,'quantiles':[0.9999,0.5,0.99]"));
    assert_int_equal(m->trials, 100000);
    assert_int_equal(m->nlevels, 3);
    assert_string_equal(m->level_labels[0], "p99.99");
    assert_string_equal(m->level_labels[1], "p50");
    assert_string_equal(m->level_labels[2], "p99");
    rs_model_free(m);

    /* extensions and descriptions anywhere are ignored */
    m = parse_ok("{'x-client':{'v':1},'description':'test','root':{'id':'r','type':'portfolio',"
                 "'description':'top','x-ui':[1,2],'children':[{'id':'a','type':'leaf',"
                 "'x-colour':'red','description':'','frequency':{'type':'poisson','lambda':0,"
                 "'x-note':1},'severity':{'type':'uniform','min':0,'max':0,'description':'d'},"
                 "'controls':[{'type':'insurance','deductible':1,'limit':2,'x-k':0},"
                 "{'type':'scale','factor':0.5},{'type':'limit','amount':9}],"
                 "'seedVar':49999999}]}}");
    const rs_node *a = &m->nodes[1];
    assert_int_equal(a->seed_var, 49999999);
    assert_int_equal(a->ncontrols, 3);
    assert_int_equal(a->controls[0].kind, RS_CTRL_INSURANCE);
    assert_true(a->controls[0].a == 1 && a->controls[0].b == 2);
    assert_int_equal(a->controls[1].kind, RS_CTRL_SCALE);
    assert_true(a->controls[1].a == 0.5);
    assert_int_equal(a->controls[2].kind, RS_CTRL_LIMIT);
    assert_int_equal(a->freq.kind, RS_FREQ_POISSON);
    assert_true(a->freq.poisson.lambda == 0);
    rs_model_free(m);
}

/* Seven symmetric percentiles make the exact 7-term system singular: without "terms" the fit
 * falls back to 6 terms; with "terms":7 asked explicitly it is refused. */
static void test_symmetric_metalog_fallback(void **state)
{
    (void)state;
#define SYM7 "'percentiles':[0.05,0.1,0.25,0.5,0.75,0.9,0.95],'quantiles':[1,2,4,7,12,20,30]"
    rs_model *m = parse_ok(SEV("{'type':'metalog'," SYM7 ",'lower':0}"));
    assert_int_equal(m->nodes[0].sev.u.metalog.terms, 6);
    rs_model_free(m);
    rs_diag *diag = rs_diag_new();
    rs_model *bad = NULL;
    assert_int_equal(parse(SEV("{'type':'metalog'," SYM7 ",'lower':0,'terms':7}"), &bad, diag),
                     RS_EVALIDATION);
    assert_true(find_problem(diag, "infeasible", "/root/severity") >= 0);
    rs_diag_free(diag);
#undef SYM7
}

static void test_level_label(void **state)
{
    (void)state;
    char buf[16];
    rs_level_label(0.5, buf, sizeof buf);
    assert_string_equal(buf, "p50");
    rs_level_label(0.995, buf, sizeof buf);
    assert_string_equal(buf, "p99.5");
    rs_level_label(0.99, buf, sizeof buf);
    assert_string_equal(buf, "p99");
    rs_level_label(0.9999, buf, sizeof buf);
    assert_string_equal(buf, "p99.99");
    rs_level_label(0.001, buf, sizeof buf);
    assert_string_equal(buf, "p0.1");
}

static void test_flat_example(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = read_file(RISKSIM_SOURCE_DIR "/examples/flat.json", &len);
    rs_model *m = NULL;
    assert_int_equal(rs_model_parse(text, len, NULL, &m, NULL), RS_OK);
    assert_int_equal(m->trials, 50000);
    assert_int_equal(m->seed, 7);
    /* preorder; a portfolio's sub-portfolios come before its leaves */
    static const char *const ids[] = {
        "Retail-Group", "IT---Cyber",     "Ransomware",       "Payment-platform-outage",
        "Operations",   "Warehouse-fire", "Supplier-default", "Data-protection-fine"};
    static const int parents[] = {-1, 0, 1, 1, 0, 4, 4, 0};
    assert_int_equal(m->nnodes, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(m->nodes[i].id, ids[i]);
        assert_int_equal(m->nodes[i].parent, parents[i]);
    }
    assert_string_equal(m->nodes[1].name, "IT & Cyber");
    assert_int_equal(m->nodes[0].nchildren, 3);
    assert_int_equal(m->nodes[0].children[2], 7);
    assert_int_equal(m->nleaves, 5);
    assert_int_equal(m->height, 3);
    const rs_node *ransom = node_by_id(m, "Ransomware");
    assert_int_equal(ransom->freq.kind, RS_FREQ_BERNOULLI);
    assert_true(ransom->freq.p == 0.15);
    double mu = 0, sigma = 0;
    rs_lognormal_from_interval(250000, 4000000, 0.9, &mu, &sigma);
    assert_true(ransom->sev.u.lognormal.mu == mu && ransom->sev.u.lognormal.sigma == sigma);
    const rs_node *supplier = node_by_id(m, "Supplier-default");
    assert_int_equal(supplier->sev.kind, RS_SEV_METALOG);
    assert_int_equal(supplier->sev.u.metalog.bounds, RS_METALOG_LOWER);
    assert_true(supplier->sev.u.metalog.lower == 0);
    assert_int_equal(supplier->sev.u.metalog.terms, 4);
    assert_int_equal(node_by_id(m, "Payment-platform-outage")->sev.u.metalog.terms, 3);
    rs_model_free(m);
    free(text);
}

static void test_flat_ids(void **state)
{
    (void)state;
    /* a name that is an id keeps it; slugs are made unique with a suffix */
    rs_model *m =
        parse_ok(FLAT(FP("a b") "," FPP("a-b", "a b"),
                      FL("a/b", "a-b") "," FL("\xc3\xa9t\xc3\xa9", "a b") "," FL("a.b", "a b")));
    assert_string_equal(node_by_id(m, "a-b")->name, "a-b");
    assert_string_equal(node_by_id(m, "a-b-2")->name, "a b");
    assert_string_equal(node_by_id(m, "a-b-3")->name, "a/b");
    assert_string_equal(node_by_id(m, "-t-")->name, "\xc3\xa9t\xc3\xa9");
    assert_string_equal(node_by_id(m, "a.b")->name, "a.b");
    rs_model_free(m);

    m = parse_ok(FLAT("{'name':'" A10 A10 A10 A10 A10 A10 "aaaa~'}",
                      FL("x", "" A10 A10 A10 A10 A10 A10 "aaaa~")));
    assert_int_equal(strlen(m->nodes[0].id), 64);
    rs_model_free(m);
}

/* The seedVars of a request's leaves, by id. */
static uint32_t seed_of(const rs_model *m, const char *id)
{
    return node_by_id(m, id)->seed_var;
}

static void test_seed_var_stability(void **state)
{
    (void)state;
#define SUB(kids) "{'id':'s','type':'portfolio','children':[" kids "]}"
    rs_model *before = parse_ok(PORT(KID("a") "," SUB(KID("b") "," KID("c")) "," KID("d")));
    rs_model *after = parse_ok(
        PORT(KID("a") "," SUB(KID("b") "," KID("c") "," KID("new1")) "," KID("d") "," KID("new2")));
    static const char *const kept[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(seed_of(before, kept[i]), seed_of(after, kept[i]));
    assert_int_not_equal(seed_of(after, "new1"), seed_of(after, "new2"));
    rs_model_free(before);
    rs_model_free(after);

    /* an explicit seedVar is reserved first: a default that collides moves up by one */
    rs_model *m = parse_ok(
        PORT(KID("a") ",{'id':'b','type':'leaf'," FREQ_OK "," SEV_OK ",'seedVar':18792276}"));
    assert_int_equal(seed_of(m, "b"), 18792276);
    assert_int_equal(seed_of(m, "a"), 18792277);
    rs_model_free(m);
#undef SUB
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_collects_every_problem),
        cmocka_unit_test(test_null_diag),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_json_nesting),
        cmocka_unit_test(test_node_count),
        cmocka_unit_test(test_flat_depth),
        cmocka_unit_test(test_limits_and_nulls),
        cmocka_unit_test(test_enterprise_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_accepted_forms),
        cmocka_unit_test(test_level_label),
        cmocka_unit_test(test_flat_example),
        cmocka_unit_test(test_flat_ids),
        cmocka_unit_test(test_seed_var_stability),
        cmocka_unit_test(test_symmetric_metalog_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
