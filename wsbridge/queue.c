/*
 * risksim-wsbridge queue: reference-counted messages and the per-session bounded queue with
 * progress collapsing (see queue.h for the rules).
 *
 * Why this file exists: the rules that keep a slow client's memory bounded without losing the
 * events that matter are the heart of the bridge's back-pressure, and they are easiest to get
 * right, and to test, as a small ring buffer with no knowledge of sockets.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

/* First allocation of a queue's ring: most sessions never hold more than a few messages. */
#define WSQ_FIRST_CAP 8

wsq_msg *wsq_msg_new(const char *text, size_t len, size_t headroom)
{
    if (text == NULL || len > SIZE_MAX - headroom - 1 - sizeof(wsq_msg))
        return NULL;
    wsq_msg *m = malloc(sizeof(*m) + headroom + len + 1);
    if (m == NULL)
        return NULL;
    m->refs = 1;
    m->len = len;
    m->text = m->data + headroom;
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    return m;
}

wsq_msg *wsq_msg_ref(wsq_msg *m)
{
    if (m != NULL)
        m->refs++;
    return m;
}

void wsq_msg_unref(wsq_msg *m)
{
    if (m != NULL && --m->refs == 0)
        free(m);
}

void wsq_init(wsq *q, size_t limit)
{
    memset(q, 0, sizeof(*q));
    q->limit = limit > 0 ? limit : 1;
    q->hard = q->limit + WSQ_EXTRA;
}

void wsq_clear(wsq *q)
{
    wsq_item it;
    while (wsq_pop(q, &it))
        wsq_msg_unref(it.msg);
    free(q->items);
    q->items = NULL;
    q->cap = 0;
    q->head = 0;
}

size_t wsq_count(const wsq *q)
{
    return q->count;
}

size_t wsq_room(const wsq *q)
{
    return q->count < q->limit ? q->limit - q->count : 0;
}

static wsq_item *at(wsq *q, size_t i)
{
    return &q->items[(q->head + i) % q->cap];
}

/* Makes room for one more item (up to the hard limit). Returns 0 or -1. */
static int grow(wsq *q)
{
    if (q->count < q->cap)
        return 0;
    if (q->count >= q->hard)
        return -1;
    size_t cap = q->cap == 0 ? WSQ_FIRST_CAP : q->cap * 2;
    if (cap > q->hard)
        cap = q->hard;
    wsq_item *items = malloc(cap * sizeof(*items));
    if (items == NULL)
        return -1;
    for (size_t i = 0; i < q->count; i++)
        items[i] = *at(q, i);
    free(q->items);
    q->items = items;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Removes the queued progress messages, all of them (keep_newest 0) or all but the newest one,
 * keeping the order of the rest. Returns how many were removed. */
static size_t collapse(wsq *q, int keep_newest)
{
    size_t newest = SIZE_MAX;
    if (keep_newest) {
        for (size_t i = q->count; i-- > 0;) {
            if (at(q, i)->cls == WSQ_PROGRESS) {
                newest = i;
                break;
            }
        }
    }
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < q->count; i++) {
        wsq_item it = *at(q, i);
        if (it.cls == WSQ_PROGRESS && i != newest) {
            wsq_msg_unref(it.msg);
            removed++;
            continue;
        }
        *at(q, kept++) = it;
    }
    q->count = kept;
    return removed;
}

static void append(wsq *q, wsq_msg *msg, wsq_class cls, int64_t seq)
{
    wsq_item *it = at(q, q->count);
    it->msg = wsq_msg_ref(msg);
    it->cls = cls;
    it->seq = seq;
    q->count++;
}

wsq_result wsq_push(wsq *q, wsq_msg *msg, wsq_class cls, int64_t seq, size_t *collapsed)
{
    size_t removed = 0;
    wsq_result result = WSQ_QUEUED;
    if (msg == NULL) {
        result = cls == WSQ_EVENT ? WSQ_OVERFLOW : WSQ_DROPPED;
        goto out;
    }
    if (q->count >= q->limit) {
        if (cls == WSQ_AUX) {
            result = WSQ_DROPPED;
            goto out;
        }
        /* A new progress message supersedes every queued one; an event keeps the newest. */
        removed = collapse(q, cls == WSQ_EVENT);
        if (cls == WSQ_PROGRESS && q->count >= q->limit) {
            result = WSQ_DROPPED;
            goto out;
        }
    }
    if (grow(q) != 0) {
        result = cls == WSQ_EVENT ? WSQ_OVERFLOW : WSQ_DROPPED;
        goto out;
    }
    append(q, msg, cls, seq);
out:
    if (collapsed != NULL)
        *collapsed = removed;
    return result;
}

int wsq_pop(wsq *q, wsq_item *out)
{
    if (q->count == 0)
        return 0;
    *out = *at(q, 0);
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return 1;
}
