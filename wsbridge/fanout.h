/*
 * risksim-wsbridge fan-out: which sessions watch which job, and how many sessions each client
 * address holds.
 *
 * Why this file exists: the bridge reads every new event of the database in one query and must
 * hand each one to the sessions of its job without looking at the others, so that the cost of a
 * poll grows with the events, not with the connections (docs/internals.md). A hash map from job
 * id to an intrusive list of session nodes does that in constant time per event; a second map
 * counts the open sessions of each client address for max_sessions_per_ip. Both are plain data
 * structures (no sockets, no database), used by one thread, and hold at most one entry per open
 * session, so they are bounded by max_sessions.
 */
#ifndef RISKSIM_WSBRIDGE_FANOUT_H
#define RISKSIM_WSBRIDGE_FANOUT_H

#include <stddef.h>

/* Longest key (job id or address text) of either map, without the NUL. */
#define FAN_KEY_MAX 63

struct fan_entry;

/* A session's link in its job's list; embed it in the session. */
typedef struct fan_node {
    struct fan_node *prev;
    struct fan_node *next;
    struct fan_entry *entry; /* the job's entry while linked, NULL otherwise */
} fan_node;

typedef struct fan_map fan_map;

/* Creates an empty map. Returns NULL when out of memory. */
fan_map *fan_map_new(void);

/* Frees the map (the nodes belong to their sessions and are left alone). NULL is fine. */
void fan_map_free(fan_map *m);

/* Links node (not linked yet) into the list of job_id (at most FAN_KEY_MAX bytes), at its end.
 * Returns 0, or -1 (node unchanged) when out of memory or the id is too long. */
int fan_add(fan_map *m, const char *job_id, fan_node *node);

/* Unlinks node from its job's list (dropping the job when its list becomes empty). Does
 * nothing for a node that is not linked. */
void fan_remove(fan_map *m, fan_node *node);

/* The first node of job_id's list, or NULL when nobody watches it; follow ->next for the rest.
 * The list must not change while it is being walked. */
fan_node *fan_first(const fan_map *m, const char *job_id);

/* Jobs with at least one node. */
size_t fan_jobs(const fan_map *m);

typedef struct ip_map ip_map;

/* Creates an empty map. Returns NULL when out of memory. */
ip_map *ip_map_new(void);

/* Frees the map. NULL is fine. */
void ip_map_free(ip_map *m);

/* Counts one more session for ip (at most FAN_KEY_MAX bytes) when it holds fewer than limit.
 * Returns 0 (counted), 1 (ip is at its limit; nothing counted) or -1 (out of memory or the key
 * is too long; nothing counted). */
int ip_acquire(ip_map *m, const char *ip, unsigned limit);

/* Counts one session of ip less (forgetting ip at zero). Does nothing for an unknown ip. */
void ip_release(ip_map *m, const char *ip);

/* The sessions counted for ip. */
unsigned ip_count(const ip_map *m, const char *ip);

/* Addresses with at least one session. */
size_t ip_addresses(const ip_map *m);

#endif
