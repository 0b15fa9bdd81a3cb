/*
 * risksim-wsbridge queue: the bounded queue of messages waiting for one slow client.
 *
 * Why this file exists: a client that reads slowly must never make the bridge buffer without
 * bound (docs/api.md section 5), yet the events that tell a client where its job is (status,
 * complete, error, cancelled, reset) must never be lost. The rule that reconciles the two lives
 * here, as plain data structures without sockets: a queue holds at most `limit` messages
 * (session_queue); once it is full, queued progress messages collapse to the newest one, a new
 * progress message replaces them, and a message that is neither progress nor an event (pong,
 * heartbeat, bad_message) is dropped. Events are always queued: a job has a few of them, so the
 * queue exceeds its limit only by those, and never beyond a hard limit.
 *
 * Messages are reference-counted, so that one event fanned out to every session watching a job
 * is built and stored once; each message keeps `headroom` free bytes before its text, where the
 * WebSocket library writes the frame header. The queue is used by one thread.
 */
#ifndef RISKSIM_WSBRIDGE_QUEUE_H
#define RISKSIM_WSBRIDGE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* How far past its limit a queue may grow with events that must not be dropped. */
#define WSQ_EXTRA 256

/* A message: text bytes after headroom free bytes, NUL-terminated. */
typedef struct wsq_msg {
    unsigned refs;
    size_t len;
    unsigned char *text; /* = data + headroom */
    unsigned char data[];
} wsq_msg;

/* Creates a message holding a copy of text (len bytes) after headroom free bytes, with one
 * reference. Returns NULL when out of memory. */
wsq_msg *wsq_msg_new(const char *text, size_t len, size_t headroom);

/* Adds a reference and returns m. */
wsq_msg *wsq_msg_ref(wsq_msg *m);

/* Drops a reference; the last one frees the message. NULL is fine. */
void wsq_msg_unref(wsq_msg *m);

/* What a queued message is, for the rules above. */
typedef enum wsq_class {
    WSQ_EVENT = 0, /* status, complete, error, cancelled, reset: never dropped */
    WSQ_PROGRESS,  /* progress: collapses to the newest when the queue is full */
    WSQ_AUX        /* pong, heartbeat, bad_message: dropped when the queue is full */
} wsq_class;

typedef struct wsq_item {
    wsq_msg *msg;
    wsq_class cls;
    int64_t seq; /* the event's seq (0 for the bridge's own messages) */
} wsq_item;

typedef struct wsq {
    wsq_item *items; /* a ring of cap entries, count of them used from head */
    size_t head;
    size_t count;
    size_t cap;
    size_t limit; /* session_queue */
    size_t hard;  /* limit + WSQ_EXTRA */
} wsq;

/* Prepares an empty queue of the given limit (at least 1). Allocates nothing yet. */
void wsq_init(wsq *q, size_t limit);

/* Drops every queued message and frees the storage; the queue is then empty (and can be used
 * again). */
void wsq_clear(wsq *q);

/* What wsq_push did. */
typedef enum wsq_result {
    WSQ_QUEUED = 0, /* queued (possibly after collapsing older progress messages) */
    WSQ_DROPPED,    /* not queued: the queue is full (progress or auxiliary message) */
    WSQ_OVERFLOW    /* an event could not be queued: hard limit reached or out of memory */
} wsq_result;

/* Queues msg (the queue takes a new reference on success) with the rules at the top of this
 * file. *collapsed (may be NULL) receives the number of queued progress messages removed to make
 * room. */
wsq_result wsq_push(wsq *q, wsq_msg *msg, wsq_class cls, int64_t seq, size_t *collapsed);

/* Takes the oldest message. Returns 1 with *out filled (the caller now owns its reference), or 0
 * when the queue is empty. */
int wsq_pop(wsq *q, wsq_item *out);

/* Messages queued. */
size_t wsq_count(const wsq *q);

/* Messages that can be queued before the limit is reached (0 when at or past it). */
size_t wsq_room(const wsq *q);

#endif
