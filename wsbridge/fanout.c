/*
 * risksim-wsbridge fan-out: a small string-keyed hash table with separate chaining, used twice:
 * job id -> list of session nodes, and client address -> session count (see fanout.h).
 *
 * Why this file exists: the poller looks up the sessions of every event's job, and the
 * handshake the count of the client's address; both must be O(1) and bounded by the open
 * sessions. The table doubles when it holds more entries than buckets and never shrinks below
 * its first size; an entry is freed as soon as its list or count is empty.
 */
#include "fanout.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_BUCKETS 64

typedef struct fan_entry {
    struct fan_entry *next; /* in its bucket */
    char key[FAN_KEY_MAX + 1];
    fan_node *head; /* job map: the sessions' nodes */
    fan_node *tail;
    unsigned count; /* address map: sessions */
} fan_entry;

typedef struct table {
    fan_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t entries;
} table;

struct fan_map {
    table t;
};

struct ip_map {
    table t;
};

/* FNV-1a. */
static uint64_t hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *key != '\0'; key++) {
        h ^= (unsigned char)*key;
        h *= 1099511628211ULL;
    }
    return h;
}

static int table_init(table *t)
{
    t->buckets = calloc(FIRST_BUCKETS, sizeof(*t->buckets));
    t->nbuckets = FIRST_BUCKETS;
    t->entries = 0;
    return t->buckets != NULL ? 0 : -1;
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        fan_entry *e = t->buckets[i];
        while (e != NULL) {
            fan_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
}

static fan_entry *table_find(const table *t, const char *key)
{
    fan_entry *e = t->buckets[hash(key) & (t->nbuckets - 1)];
    while (e != NULL && strcmp(e->key, key) != 0)
        e = e->next;
    return e;
}

/* Doubles the buckets when the table is fuller than one entry per bucket (best effort: a failed
 * allocation leaves the table as it was, only slower). */
static void table_grow(table *t)
{
    if (t->entries < t->nbuckets)
        return;
    size_t n = t->nbuckets * 2;
    fan_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        fan_entry *e = t->buckets[i];
        while (e != NULL) {
            fan_entry *next = e->next;
            size_t j = hash(e->key) & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* Finds key or inserts an empty entry for it. Returns NULL when out of memory or too long. */
static fan_entry *table_get(table *t, const char *key)
{
    if (key == NULL || strlen(key) > FAN_KEY_MAX)
        return NULL;
    fan_entry *e = table_find(t, key);
    if (e != NULL)
        return e;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, strlen(key) + 1);
    table_grow(t);
    size_t i = hash(key) & (t->nbuckets - 1);
    e->next = t->buckets[i];
    t->buckets[i] = e;
    t->entries++;
    return e;
}

static void table_drop(table *t, fan_entry *e)
{
    fan_entry **p = &t->buckets[hash(e->key) & (t->nbuckets - 1)];
    while (*p != NULL && *p != e)
        p = &(*p)->next;
    if (*p == e) {
        *p = e->next;
        t->entries--;
        free(e);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Job id -> sessions
 * ------------------------------------------------------------------------------------------- */

fan_map *fan_map_new(void)
{
    fan_map *m = malloc(sizeof(*m));
    if (m == NULL || table_init(&m->t) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void fan_map_free(fan_map *m)
{
    if (m == NULL)
        return;
    table_free(&m->t);
    free(m);
}

int fan_add(fan_map *m, const char *job_id, fan_node *node)
{
    fan_entry *e = table_get(&m->t, job_id);
    if (e == NULL)
        return -1;
    node->entry = e;
    node->next = NULL;
    node->prev = e->tail;
    if (e->tail != NULL)
        e->tail->next = node;
    else
        e->head = node;
    e->tail = node;
    return 0;
}

void fan_remove(fan_map *m, fan_node *node)
{
    fan_entry *e = node->entry;
    if (e == NULL)
        return;
    if (node->prev != NULL)
        node->prev->next = node->next;
    else
        e->head = node->next;
    if (node->next != NULL)
        node->next->prev = node->prev;
    else
        e->tail = node->prev;
    node->prev = node->next = NULL;
    node->entry = NULL;
    if (e->head == NULL)
        table_drop(&m->t, e);
}

fan_node *fan_first(const fan_map *m, const char *job_id)
{
    if (job_id == NULL)
        return NULL;
    fan_entry *e = table_find(&m->t, job_id);
    return e != NULL ? e->head : NULL;
}

size_t fan_jobs(const fan_map *m)
{
    return m->t.entries;
}

/* ---------------------------------------------------------------------------------------------
 * Address -> session count
 * ------------------------------------------------------------------------------------------- */

ip_map *ip_map_new(void)
{
    ip_map *m = malloc(sizeof(*m));
    if (m == NULL || table_init(&m->t) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void ip_map_free(ip_map *m)
{
    if (m == NULL)
        return;
    table_free(&m->t);
    free(m);
}

int ip_acquire(ip_map *m, const char *ip, unsigned limit)
{
    fan_entry *e = table_get(&m->t, ip);
    if (e == NULL)
        return -1;
    if (e->count >= limit) {
        if (e->count == 0)
            table_drop(&m->t, e);
        return 1;
    }
    e->count++;
    return 0;
}

void ip_release(ip_map *m, const char *ip)
{
    if (ip == NULL || strlen(ip) > FAN_KEY_MAX)
        return;
    fan_entry *e = table_find(&m->t, ip);
    if (e == NULL)
        return;
    if (e->count > 0)
        e->count--;
    if (e->count == 0)
        table_drop(&m->t, e);
}

unsigned ip_count(const ip_map *m, const char *ip)
{
    if (ip == NULL || strlen(ip) > FAN_KEY_MAX)
        return 0;
    fan_entry *e = table_find(&m->t, ip);
    return e != NULL ? e->count : 0;
}

size_t ip_addresses(const ip_map *m)
{
    return m->t.entries;
}
