/*
 * Batches and group commit of job creation.
 *
 * Why this file exists: a job accepted with 202 must survive a power loss, so the accepting
 * connection commits with synchronous=FULL, and one commit costs one fsync of the WAL. One
 * transaction per job would cap acceptance at the disk's fsync rate. Here several creations
 * share one transaction (rsdb_job_create_batch), each in its own savepoint so that a refused job
 * leaves the others alone, and concurrent request threads are gathered into such batches
 * (rsdb_committer): while one batch commits, the next one fills. The first waiting thread
 * commits for everyone in its batch, so there is no extra thread to start or stop.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* Whether err belongs to one item (the transaction goes on without it) rather than to the
 * database (the transaction stops). */
static int item_error(rsdb_err err)
{
    return err == RSDB_EINVAL || err == RSDB_ECONFLICT || err == RSDB_EQUEUEFULL ||
           err == RSDB_ERANDOM;
}

/* Applies one item in the savepoint "item"; an item error is rolled back to the savepoint and
 * left in item->err. Returns RSDB_OK to go on, or the database error that stops the batch. */
static rsdb_err apply_item(rsdb *db, rsdb_create *item)
{
    if (!db_create_valid(item)) {
        item->err = RSDB_EINVAL;
        return RSDB_OK;
    }
    rsdb_err err = db_exec_stmt(db, ST_SAVEPOINT, "savepoint");
    if (err != RSDB_OK)
        return err;
    item->err = db_create_in_tx(db, item);
    if (item->err != RSDB_OK && !item_error(item->err))
        return item->err;
    if (item->err != RSDB_OK) {
        err = db_exec_stmt(db, ST_ROLLBACK_SAVEPOINT, "rollback to savepoint");
        if (err != RSDB_OK)
            return err;
    }
    return db_exec_stmt(db, ST_RELEASE_SAVEPOINT, "release savepoint");
}

typedef struct batch_ctx {
    rsdb_create *items;
    size_t n;
} batch_ctx;

static rsdb_err batch_tx(rsdb *db, void *vctx)
{
    batch_ctx *ctx = vctx;
    for (size_t i = 0; i < ctx->n; i++) {
        ctx->items[i].err = RSDB_OK;
        ctx->items[i].existing = 0;
        ctx->items[i].id[0] = '\0';
    }
    for (size_t i = 0; i < ctx->n; i++) {
        rsdb_err err = apply_item(db, &ctx->items[i]);
        if (err != RSDB_OK)
            return err;
    }
    return RSDB_OK;
}

rsdb_err rsdb_job_create_batch(rsdb *db, rsdb_create *items, size_t n)
{
    if (db == NULL || items == NULL || n == 0 || n > RSDB_BATCH_MAX)
        return RSDB_EINVAL;
    batch_ctx ctx = {items, n};
    rsdb_err err = db_write_tx(db, batch_tx, &ctx);
    if (err != RSDB_OK) {
        for (size_t i = 0; i < n; i++) {
            items[i].err = err;
            items[i].existing = 0;
            items[i].id[0] = '\0';
        }
    }
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * Group commit
 * ------------------------------------------------------------------------------------------- */

/* A thread waiting for its item to be committed; lives on that thread's stack. */
typedef struct waiter {
    rsdb_create *item;
    int done;
    pthread_cond_t wake;
    struct waiter *next;
} waiter;

struct rsdb_committer {
    rsdb *db; /* used only by the thread at the head of the queue */
    pthread_mutex_t lock;
    waiter *head; /* oldest first; the head commits the next batch */
    waiter *tail;
    uint64_t commits;
    uint64_t items;
    uint64_t busy_retries;             /* the connection's count, copied under the lock */
    rsdb_create batch[RSDB_BATCH_MAX]; /* the head's working copy (only the head touches it) */
};

rsdb_err rsdb_committer_open(const char *path, const rsdb_options *options, rsdb_committer **out,
                             char *errbuf, size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    rsdb_options opt;
    rsdb_options_default(&opt);
    if (options != NULL)
        opt = *options;
    opt.role = RSDB_ROLE_ACCEPT;
    rsdb_committer *c = calloc(1, sizeof(*c));
    if (c == NULL || out == NULL) {
        free(c);
        return out == NULL ? RSDB_EINVAL : RSDB_ENOMEM;
    }
    rsdb_err err = rsdb_open(path, &opt, &c->db, errbuf, errlen);
    if (err != RSDB_OK || pthread_mutex_init(&c->lock, NULL) != 0) {
        rsdb_free(c->db);
        free(c);
        return err != RSDB_OK ? err : RSDB_ENOMEM;
    }
    *out = c;
    return RSDB_OK;
}

void rsdb_committer_free(rsdb_committer *committer)
{
    if (committer == NULL)
        return;
    pthread_mutex_destroy(&committer->lock);
    rsdb_free(committer->db);
    free(committer);
}

/* Runs the batch that starts at the head (the caller's own waiter) without holding the lock:
 * the items are copied in, committed together, and the answers copied back. Returns how many
 * waiters it took. Called with the lock held; returns with it held. */
static size_t commit_head_batch(rsdb_committer *c)
{
    size_t n = 0;
    for (waiter *w = c->head; w != NULL && n < RSDB_BATCH_MAX; w = w->next)
        c->batch[n++] = *w->item;
    pthread_mutex_unlock(&c->lock);
    rsdb_err err = rsdb_job_create_batch(c->db, c->batch, n);
    pthread_mutex_lock(&c->lock);
    if (err == RSDB_OK)
        c->commits++;
    c->items += n;
    c->busy_retries = c->db->busy_retries;
    waiter *w = c->head;
    for (size_t i = 0; i < n; i++, w = w->next)
        *w->item = c->batch[i];
    return n;
}

rsdb_err rsdb_committer_create(rsdb_committer *committer, rsdb_create *item)
{
    if (committer == NULL || item == NULL)
        return RSDB_EINVAL;
    waiter self = {item, 0, PTHREAD_COND_INITIALIZER, NULL};
    rsdb_committer *c = committer;
    pthread_mutex_lock(&c->lock);
    if (c->tail != NULL)
        c->tail->next = &self;
    else
        c->head = &self;
    c->tail = &self;
    while (!self.done && c->head != &self)
        pthread_cond_wait(&self.wake, &c->lock);
    if (!self.done) {
        /* At the head: commit for everyone queued so far, wake them, hand the head on. */
        size_t n = commit_head_batch(c);
        for (size_t i = 0; i < n; i++) {
            waiter *w = c->head;
            c->head = w->next;
            if (c->head == NULL)
                c->tail = NULL;
            w->done = 1;
            if (w != &self)
                pthread_cond_signal(&w->wake);
        }
        if (c->head != NULL)
            pthread_cond_signal(&c->head->wake);
    }
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&self.wake);
    return item->err;
}

void rsdb_committer_stats_get(rsdb_committer *committer, rsdb_committer_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (committer == NULL)
        return;
    pthread_mutex_lock(&committer->lock);
    out->commits = committer->commits;
    out->items = committer->items;
    out->busy_retries = committer->busy_retries;
    pthread_mutex_unlock(&committer->lock);
}
