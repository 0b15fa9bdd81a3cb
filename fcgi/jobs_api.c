/*
 * The job endpoints: run synchronously, submit asynchronously, read, cancel, list.
 *
 * Why this file exists: these are the endpoints that create and change jobs; they share the
 * request validation (the engine's parser with the server's limits, every problem listed with
 * its JSON pointer), the idempotency rule, the job representation and the mapping of job-store
 * answers to statuses. Jobs of both endpoints are created through the process's group
 * committer, so a 200 or 202 is only sent once the job is durable.
 */
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "handlers.h"
#include "risksim/log.h"

/* ---------------------------------------------------------------------------------------------
 * Shared pieces
 * ------------------------------------------------------------------------------------------- */

void job_path(const app *a, const char *id, const char *suffix, char *buf, size_t len)
{
    snprintf(buf, len, "%s/simulations/%s%s", a->cfg.base_path, id, suffix);
}

static void add_time(json_object *o, const char *key, int64_t ms)
{
    if (ms <= 0) {
        json_object_object_add(o, key, NULL);
        return;
    }
    char text[RSCLOCK_TS_SIZE];
    rsclock_rfc3339(ms, text);
    json_object_object_add(o, key, json_object_new_string(text));
}

static json_object *links_of(const app *a, const char *id)
{
    char self[512], events[512], stream[512];
    job_path(a, id, "", self, sizeof(self));
    job_path(a, id, "/events", events, sizeof(events));
    job_path(a, id, "/stream", stream, sizeof(stream));
    json_object *links = json_object_new_object();
    json_object_object_add(links, "self", json_object_new_string(self));
    json_object_object_add(links, "events", json_object_new_string(events));
    json_object_object_add(links, "stream", json_object_new_string(stream));
    return links;
}

/* The job representation of GET /simulations/{id} without the result. */
static json_object *job_repr(const app *a, const rsdb_job *job)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(job->id));
    json_object_object_add(o, "status", json_object_new_string(rsdb_state_name(job->state)));
    double progress = job->trials > 0 ? (double)job->trials_done / (double)job->trials : 0.0;
    char progress_text[32]; /* six decimals, not the binary double's 17 digits */
    snprintf(progress_text, sizeof(progress_text), "%.6f", progress);
    json_object_object_add(o, "progress", json_object_new_double_s(progress, progress_text));
    json_object_object_add(o, "trialsDone", json_object_new_int64((int64_t)job->trials_done));
    json_object_object_add(o, "trials", json_object_new_int64((int64_t)job->trials));
    json_object_object_add(o, "attempts", json_object_new_int64(job->attempts));
    json_object_object_add(o, "cancelRequested", json_object_new_boolean(job->cancel_requested));
    add_time(o, "createdAt", job->created_ms);
    add_time(o, "startedAt", job->started_ms);
    add_time(o, "finishedAt", job->finished_ms);
    if (job->state == RSDB_FAILED) {
        json_object *e = json_object_new_object();
        json_object_object_add(
            e, "code", json_object_new_string(job->error_code ? job->error_code : "failed"));
        json_object_object_add(
            e, "message", json_object_new_string(job->error_message ? job->error_message : ""));
        json_object_object_add(o, "error", e);
    }
    json_object_object_add(o, "links", links_of(a, job->id));
    return o;
}

/* Sends obj's text with ,"result":<result> spliced in before its last brace (the stored result
 * is sent as stored, without parsing it again). */
static void respond_with_result(http_req *r, int status, const char *headers, json_object *obj,
                                const char *result)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL || len < 2 || result == NULL) {
        http_respond_json(r, status, headers, obj);
        return;
    }
    size_t rlen = strlen(result);
    char *body = malloc(len + rlen + 16);
    if (body == NULL) {
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
        return;
    }
    size_t n = len - 1;
    memcpy(body, text, n);
    memcpy(body + n, ",\"result\":", 10);
    n += 10;
    memcpy(body + n, result, rlen);
    n += rlen;
    body[n++] = '}';
    http_respond(r, status, "application/json", headers, body, n);
    free(body);
}

void handle_db_error(app *a, http_req *r, rsdb_err err, const char *what)
{
    char headers[64];
    snprintf(headers, sizeof(headers), "Retry-After: %u\r\n", a->cfg.retry_after_s);
    rslog(RSLOG_ERROR, "%s: %s", what, rsdb_strerror(err));
    switch (err) {
    case RSDB_EBUSY:
        http_problem(r, 503, "busy", "The job store is busy", "Try again shortly.", NULL, headers);
        return;
    case RSDB_EFULL:
        http_problem(r, 503, "storage-full", "The job store's disk is full",
                     "The service cannot store jobs until space is freed.", NULL, headers);
        return;
    case RSDB_EIO:
    case RSDB_EOPEN:
    case RSDB_ECORRUPT:
        http_problem(r, 503, "storage-unavailable", "The job store cannot be written",
                     rsdb_strerror(err), NULL, headers);
        return;
    case RSDB_ENOMEM:
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, headers);
        return;
    default:
        http_problem(r, 500, "internal", "Internal error", rsdb_strerror(err), NULL, NULL);
        return;
    }
}

/* Writes the lower-case hex SHA-256 of the body into out (65 bytes). Returns 0 or -1. */
static int body_hash(const http_req *r, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(r->body, r->body_len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

/* Longest Idempotency-Key accepted. */
#define IDEMPOTENCY_KEY_MAX 255

/* Checks the Idempotency-Key header's form: 1..255 printable ASCII characters. */
static int idempotency_key_valid(const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (key[i] < 0x20 || key[i] > 0x7e)
            return 0;
    }
    return 1;
}

/* The checks every POST shares: JSON content type (415), a body under max_body_bytes (413) and
 * a well-formed Idempotency-Key (400). Returns 0 when the request may go on, else -1 after
 * responding. */
static int read_post(app *a, http_req *r)
{
    if (!http_is_json_type(r->content_type)) {
        http_problem(r, 415, "unsupported-media-type", "Unsupported media type",
                     "Send the request as application/json.", NULL,
                     "Accept-Post: application/json\r\n");
        return -1;
    }
    if (r->idempotency_key != NULL && !idempotency_key_valid(r->idempotency_key)) {
        http_problem(r, 400, "bad-idempotency-key", "Bad Idempotency-Key",
                     "An Idempotency-Key is 1 to 255 printable ASCII characters.", NULL, NULL);
        return -1;
    }
    switch (http_read_body(r, (size_t)a->cfg.max_body_bytes)) {
    case HTTP_BODY_OK:
        return 0;
    case HTTP_BODY_TOO_LARGE: {
        char detail[128];
        snprintf(detail, sizeof(detail), "The body is larger than %llu bytes.",
                 (unsigned long long)a->cfg.max_body_bytes);
        http_problem(r, 413, "payload-too-large", "Request body too large", detail, NULL, NULL);
        return -1;
    }
    case HTTP_BODY_BAD_LENGTH:
        http_problem(r, 400, "bad-length", "Bad Content-Length",
                     "The body does not match its Content-Length.", NULL, NULL);
        return -1;
    case HTTP_BODY_NOMEM:
    default:
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
        return -1;
    }
}

/* The problem list of a diag as the "errors" member. */
static json_object *diag_errors(const rs_diag *diag)
{
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < rs_diag_count(diag); i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "pointer", json_object_new_string(rs_diag_pointer(diag, i)));
        json_object_object_add(e, "code", json_object_new_string(rs_diag_code(diag, i)));
        json_object_object_add(e, "message", json_object_new_string(rs_diag_message(diag, i)));
        json_object_array_add(list, e);
    }
    return list;
}

/* Parses and validates the body with the server's limits. Returns the model, or NULL after
 * responding 400 (not JSON) or 422 (broken rules). */
static rs_model *parse_request(app *a, http_req *r)
{
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    rs_err err =
        diag == NULL ? RS_ENOMEM : rs_model_parse(r->body, r->body_len, &a->limits, &model, diag);
    if (err == RS_EJSON) {
        http_problem(r, 400, "invalid-json", "The body is not valid JSON",
                     rs_diag_count(diag) > 0 ? rs_diag_message(diag, 0) : NULL, diag_errors(diag),
                     NULL);
    } else if (err == RS_EVALIDATION) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%zu rule%s of the request %s broken.",
                 rs_diag_count(diag), rs_diag_count(diag) == 1 ? "" : "s",
                 rs_diag_count(diag) == 1 ? "is" : "are");
        http_problem(r, 422, "validation", "The request breaks the rules of the API", detail,
                     diag_errors(diag), NULL);
    } else if (err != RS_OK) {
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
    }
    rs_diag_free(diag);
    return err == RS_OK ? model : NULL;
}

/* Fills the idempotency part of spec from the request (hash into hash_buf). Returns 0, or -1
 * after responding. */
static int idempotency_spec(http_req *r, rsdb_job_spec *spec, char hash_buf[65])
{
    spec->idempotency_key = NULL;
    spec->body_hash = NULL;
    if (r->idempotency_key == NULL)
        return 0;
    if (body_hash(r, hash_buf) != 0) {
        http_problem(r, 503, "unavailable", "Cannot hash the body", NULL, NULL,
                     "Retry-After: 1\r\n");
        return -1;
    }
    spec->idempotency_key = r->idempotency_key;
    spec->body_hash = hash_buf;
    return 0;
}

static void respond_conflict(http_req *r)
{
    http_problem(r, 409, "idempotency-conflict", "Idempotency-Key reused with another body",
                 "This Idempotency-Key was used for a different request; use a new key.", NULL,
                 NULL);
}

/* ---------------------------------------------------------------------------------------------
 * POST /simulations/async (and POST /simulations with Prefer: respond-async)
 * ------------------------------------------------------------------------------------------- */

/* Sends job's representation with the given status and its Location. */
static void respond_job_repr(app *a, http_req *r, const rsdb_job *job, int status)
{
    char location[600];
    job_path(a, job->id, "", location, sizeof(location));
    char headers[700];
    snprintf(headers, sizeof(headers), "Location: %s\r\n", location);
    json_object *o = job_repr(a, job);
    http_respond_json(r, status, headers, o);
    json_object_put(o);
}

/* Answers with the representation of job id as it is stored now (202, or what the caller
 * says), Location set. */
static void respond_job(app *a, conn *c, http_req *r, const char *id, int status)
{
    rsdb_job *job = NULL;
    rsdb_err err = rsdb_job_get(c->db, id, &job);
    if (err != RSDB_OK) {
        handle_db_error(a, r, err, "read job");
        return;
    }
    respond_job_repr(a, r, job, status);
    rsdb_job_free(job);
}

/* Answers 202 for a job just created by item: the job as committed, queued. Reading it back
 * instead could show a later state, because an idle worker may claim (and a small job finish)
 * between the commit and the read, and the acknowledgement promises "queued". */
static void respond_created(app *a, http_req *r, const rsdb_create *item)
{
    rsdb_job job = {.state = RSDB_QUEUED, .trials = item->spec.trials, .created_ms = item->now_ms};
    memcpy(job.id, item->id, sizeof(job.id));
    respond_job_repr(a, r, &job, 202);
}

static void submit_async(app *a, conn *c, http_req *r, rs_model *model)
{
    char retry[64];
    snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", a->cfg.retry_after_s);
    if (!a->cfg.async_enabled) {
        http_problem(r, 503, "async-disabled", "Asynchronous jobs are switched off",
                     "This server runs simulations synchronously only (POST /simulations).", NULL,
                     retry);
        return;
    }
    char hash[65];
    rsdb_create item = {.spec = {.request = r->body, .trials = rs_model_trials(model)}};
    if (idempotency_spec(r, &item.spec, hash) != 0)
        return;
    item.queue_size = a->cfg.queue_size;
    item.now_ms = rsclock_wall_ms();
    rsdb_err err = rsdb_committer_create(a->committer, &item);
    if (err == RSDB_EQUEUEFULL) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%u jobs are waiting; try again later.",
                 a->cfg.queue_size);
        http_problem(r, 503, "queue-full", "The job queue is full", detail, NULL, retry);
        return;
    }
    if (err == RSDB_ECONFLICT) {
        respond_conflict(r);
        return;
    }
    if (err != RSDB_OK) {
        handle_db_error(a, r, err, "enqueue");
        return;
    }
    if (item.existing) {
        respond_job(a, c, r, item.id, 202); /* a repeat: the job's current state */
        return;
    }
    rslog_job(RSLOG_INFO, item.id, "queued (%llu trials)",
              (unsigned long long)rs_model_trials(model));
    respond_created(a, r, &item);
}

void handle_submit_async(app *a, conn *c, http_req *r)
{
    if (read_post(a, r) != 0)
        return;
    rs_model *model = parse_request(a, r);
    if (model == NULL)
        return;
    submit_async(a, c, r, model);
    rs_model_free(model);
}

/* ---------------------------------------------------------------------------------------------
 * POST /simulations (synchronous)
 * ------------------------------------------------------------------------------------------- */

/* Whether the Prefer header asks for respond-async (RFC 7240: a comma-separated list of
 * preferences, names case-insensitive). */
static int prefers_async(const char *prefer)
{
    if (prefer == NULL)
        return 0;
    const char *p = prefer;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",;= \t");
        if (len == 13 && strncasecmp(p, "respond-async", 13) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* The Deprecation/Sunset/Link headers configured for the sync endpoint (a migration aid). */
static void deprecation_headers(const app *a, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    if (a->cfg.sync_deprecation[0] != '\0')
        n += (size_t)snprintf(buf + n, len - n, "Deprecation: %s\r\n", a->cfg.sync_deprecation);
    if (n < len && a->cfg.sync_sunset[0] != '\0')
        n += (size_t)snprintf(buf + n, len - n, "Sunset: %s\r\n", a->cfg.sync_sunset);
    if (n < len && a->cfg.sync_link[0] != '\0')
        snprintf(buf + n, len - n, "Link: %s\r\n", a->cfg.sync_link);
}

/* Runs model on this thread and returns the result text with id written in, and its length
 * in *len (NULL after responding on failure). */
static char *run_model(app *a, http_req *r, const rs_model *model, const char *id, size_t *len)
{
    rs_run_options opt = {.threads = a->cfg.sim_threads};
    rs_result *result = NULL;
    rs_err err = rs_simulate(model, &opt, &result);
    if (err != RS_OK) {
        rslog(RSLOG_ERROR, "sync run: %s", rs_strerror(err));
        http_problem(r, 503, "unavailable", "The simulation could not run", rs_strerror(err), NULL,
                     "Retry-After: 1\r\n");
        return NULL;
    }
    rs_result_meta meta = {id, "completed"};
    char *text = NULL;
    rs_result_json(result, model, &meta, &text, len);
    rs_result_free(result);
    if (text == NULL)
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
    return text;
}

/* Answers a repeated idempotent sync request with the stored job's result. */
static void respond_stored_result(app *a, conn *c, http_req *r, const char *id, const char *headers)
{
    rsdb_job *job = NULL;
    rsdb_err err = rsdb_job_get(c->db, id, &job);
    if (err != RSDB_OK) {
        handle_db_error(a, r, err, "read job");
        return;
    }
    if (job->state == RSDB_COMPLETED && job->result != NULL) {
        http_respond(r, 200, "application/json", headers, job->result, strlen(job->result));
    } else {
        json_object *o = job_repr(a, job);
        http_respond_json(r, 202, headers, o);
        json_object_put(o);
    }
    rsdb_job_free(job);
}

static void run_sync(app *a, conn *c, http_req *r, rs_model *model)
{
    if (rs_model_trials(model) > a->cfg.max_sync_trials) {
        char detail[512];
        snprintf(detail, sizeof(detail),
                 "trials is %llu; the synchronous endpoint runs at most %llu. Submit larger "
                 "runs to POST %s/simulations/async.",
                 (unsigned long long)rs_model_trials(model),
                 (unsigned long long)a->cfg.max_sync_trials, a->cfg.base_path);
        json_object *errors = json_object_new_array();
        json_object *e = json_object_new_object();
        json_object_object_add(e, "pointer", json_object_new_string("/trials"));
        json_object_object_add(e, "code", json_object_new_string("too_many_trials_for_sync"));
        json_object_object_add(e, "message", json_object_new_string(detail));
        json_object_array_add(errors, e);
        http_problem(r, 422, "validation", "Too many trials for the synchronous endpoint", detail,
                     errors, NULL);
        return;
    }
    char hash[65];
    rsdb_create item = {.spec = {.request = r->body, .trials = rs_model_trials(model)}};
    if (idempotency_spec(r, &item.spec, hash) != 0)
        return;
    char id[RSDB_ID_SIZE];
    if (rsdb_job_id_new(id) != RSDB_OK) {
        http_problem(r, 503, "unavailable", "No random bytes for a job id", NULL, NULL,
                     "Retry-After: 1\r\n");
        return;
    }
    size_t rlen = 0;
    char *result = run_model(a, r, model, id, &rlen);
    if (result == NULL)
        return;
    item.result = result;
    item.preset_id = id;
    item.now_ms = rsclock_wall_ms();
    rsdb_err err = rsdb_committer_create(a->committer, &item);
    char headers[2048];
    deprecation_headers(a, headers, sizeof(headers));
    size_t hn = strlen(headers);
    if (err == RSDB_OK) {
        char location[600];
        job_path(a, item.id, "", location, sizeof(location));
        snprintf(headers + hn, sizeof(headers) - hn, "Location: %s\r\n", location);
        if (item.existing)
            respond_stored_result(a, c, r, item.id, headers);
        else
            http_respond(r, 200, "application/json", headers, result, rlen);
    } else if (err == RSDB_ECONFLICT) {
        respond_conflict(r);
    } else {
        handle_db_error(a, r, err, "store sync job");
    }
    free(result);
}

void handle_run_sync(app *a, conn *c, http_req *r)
{
    if (read_post(a, r) != 0)
        return;
    rs_model *model = parse_request(a, r);
    if (model == NULL)
        return;
    if (prefers_async(r->prefer))
        submit_async(a, c, r, model);
    else
        run_sync(a, c, r, model);
    rs_model_free(model);
}

/* ---------------------------------------------------------------------------------------------
 * GET and DELETE /simulations/{id}
 * ------------------------------------------------------------------------------------------- */

rsdb_job *load_route_job(app *a, conn *c, http_req *r)
{
    rsdb_job *job = NULL;
    rsdb_err err = r->route.id_valid ? rsdb_job_get(c->db, r->route.id, &job) : RSDB_ENOTFOUND;
    if (err == RSDB_ENOTFOUND)
        http_problem(r, 404, "not-found", "No such job",
                     "There is no job with this id (it may have been pruned after its "
                     "retention).",
                     NULL, NULL);
    else if (err != RSDB_OK)
        handle_db_error(a, r, err, "read job");
    return err == RSDB_OK ? job : NULL;
}

void handle_get_job(app *a, conn *c, http_req *r)
{
    rsdb_job *job = load_route_job(a, c, r);
    if (job == NULL)
        return;
    json_object *o = job_repr(a, job);
    if (job->state == RSDB_COMPLETED)
        respond_with_result(r, 200, NULL, o, job->result);
    else
        http_respond_json(r, 200, NULL, o);
    json_object_put(o);
    rsdb_job_free(job);
}

void handle_cancel_job(app *a, conn *c, http_req *r)
{
    rsdb_job *job = load_route_job(a, c, r);
    if (job == NULL)
        return;
    int finished =
        job->state == RSDB_COMPLETED || job->state == RSDB_FAILED || job->state == RSDB_CANCELLED;
    rsdb_job_free(job);
    if (!finished) {
        rsdb_state after = RSDB_QUEUED;
        rsdb_err err = rsdb_job_cancel(c->db, r->route.id, rsclock_wall_ms(), &after);
        if (err != RSDB_OK) {
            handle_db_error(a, r, err, "cancel");
            return;
        }
        rslog_job(RSLOG_INFO, r->route.id, "%s",
                  after == RSDB_CANCELLED ? "cancelled while queued" : "cancel requested");
    }
    respond_job(a, c, r, r->route.id, finished ? 200 : 202);
}

/* ---------------------------------------------------------------------------------------------
 * GET /simulations (admin list)
 * ------------------------------------------------------------------------------------------- */

/* Parses a list cursor "CREATED_MS.ID". Returns 0 or -1. */
static int parse_cursor(const char *text, int64_t *created, char id[RSDB_ID_SIZE])
{
    const char *dot = strchr(text, '.');
    if (dot == NULL || dot == text || (size_t)(dot - text) > 19 || !rsdb_job_id_valid(dot + 1))
        return -1;
    char num[20];
    memcpy(num, text, (size_t)(dot - text));
    num[dot - text] = '\0';
    uint64_t v = 0;
    if (query_uint(num, 0, (uint64_t)INT64_MAX, &v) != 0)
        return -1;
    *created = (int64_t)v;
    memcpy(id, dot + 1, RSDB_ID_SIZE);
    return 0;
}

static void bad_query(http_req *r, const char *param, const char *detail)
{
    json_object *errors = json_object_new_array();
    json_object *e = json_object_new_object();
    json_object_object_add(e, "parameter", json_object_new_string(param));
    json_object_object_add(e, "code", json_object_new_string("invalid_parameter"));
    json_object_object_add(e, "message", json_object_new_string(detail));
    json_object_array_add(errors, e);
    http_problem(r, 400, "bad-query", "Bad query parameter", detail, errors, NULL);
}

int check_query_names(http_req *r, const char *const *allowed)
{
    char bad[64];
    if (query_check_names(r->route.query, allowed, bad, sizeof(bad)) == 0)
        return 0;
    char detail[160];
    snprintf(detail, sizeof(detail), "Unknown or malformed query parameter '%s'.", bad);
    bad_query(r, bad, detail);
    return -1;
}

/* The list's query: status filter, limit, cursor. Returns 0 or -1 after responding. */
static int list_query(http_req *r, rsdb_state *state, int *has_state, size_t *limit,
                      int64_t *before_created, char before_id[RSDB_ID_SIZE], int *has_before)
{
    char value[64];
    *has_state = 0;
    int found = query_param(r->route.query, "status", value, sizeof(value));
    if (found == 1) {
        static const rsdb_state states[] = {RSDB_QUEUED, RSDB_RUNNING, RSDB_COMPLETED, RSDB_FAILED,
                                            RSDB_CANCELLED};
        for (size_t i = 0; i < 5 && !*has_state; i++) {
            if (strcmp(value, rsdb_state_name(states[i])) == 0) {
                *state = states[i];
                *has_state = 1;
            }
        }
    }
    if (found < 0 || (found == 1 && !*has_state)) {
        bad_query(r, "status",
                  "status must be one of queued, running, completed, failed, cancelled.");
        return -1;
    }
    uint64_t n = 50;
    found = query_param(r->route.query, "limit", value, sizeof(value));
    if (found < 0 || (found == 1 && query_uint(value, 1, RSDB_LIST_MAX, &n) != 0)) {
        bad_query(r, "limit", "limit must be an integer from 1 to 1000.");
        return -1;
    }
    *limit = (size_t)n;
    *has_before = 0;
    found = query_param(r->route.query, "before", value, sizeof(value));
    if (found < 0 || (found == 1 && parse_cursor(value, before_created, before_id) != 0)) {
        bad_query(r, "before", "before must be the cursor of a previous page (its \"next\").");
        return -1;
    }
    *has_before = found == 1;
    return 0;
}

void handle_list_jobs(app *a, conn *c, http_req *r)
{
    rsdb_state state = RSDB_QUEUED;
    int has_state = 0, has_before = 0;
    size_t limit = 0;
    int64_t before_created = 0;
    char before_id[RSDB_ID_SIZE] = "";
    if (list_query(r, &state, &has_state, &limit, &before_created, before_id, &has_before) != 0)
        return;
    rsdb_job_list list = {0};
    rsdb_err err = rsdb_job_list_page(c->db, has_state ? &state : NULL, before_created,
                                      has_before ? before_id : NULL, limit, &list);
    if (err != RSDB_OK) {
        handle_db_error(a, r, err, "list jobs");
        return;
    }
    json_object *o = json_object_new_object();
    json_object *jobs = json_object_new_array();
    for (size_t i = 0; i < list.count; i++)
        json_object_array_add(jobs, job_repr(a, &list.items[i]));
    json_object_object_add(o, "jobs", jobs);
    if (list.count == limit && list.count > 0) {
        const rsdb_job *last = &list.items[list.count - 1];
        char cursor[64];
        snprintf(cursor, sizeof(cursor), "%lld.%s", (long long)last->created_ms, last->id);
        json_object_object_add(o, "next", json_object_new_string(cursor));
    } else {
        json_object_object_add(o, "next", NULL);
    }
    http_respond_json(r, 200, NULL, o);
    json_object_put(o);
    rsdb_job_list_clear(&list);
}
