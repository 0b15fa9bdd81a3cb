/*
 * risksim-wsbridge messages: the pure text handling of the stream (docs/api.md section 5).
 *
 * Why this file exists: everything the bridge reads from a client is untrusted text: the
 * query of the stream URL (after, types, token), the Origin, Host and X-Forwarded-For headers,
 * and the messages a client sends over the socket. Keeping every parser and every formatter of
 * the bridge's own messages here, as pure functions over plain strings (libc, json-c and
 * common/route.c only: no sockets, no database, no libwebsockets), lets the unit tests and the
 * libFuzzer target tests/fuzz/fuzz_wsmsg.c drive them without a server. Nothing here allocates
 * memory that outlives a call, keeps state or prints.
 */
#ifndef RISKSIM_WSBRIDGE_MESSAGE_H
#define RISKSIM_WSBRIDGE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* Room for an RFC 3339 UTC time with milliseconds ("2026-11-22T04:35:45.123Z") and its NUL. */

/* Room for the messages the bridge writes itself (pong, heartbeat, reset, status, errors). */
#define WSMSG_SMALL_MAX 512

/* The longest close reason a close frame carries (RFC 6455: 125 bytes less the 2-byte code). */
#define WSMSG_REASON_MAX 123

/* The longest token taken from the query (equal to RSAUTH_TOKEN_MAX of common/risksim/auth.h). */
#define WSMSG_TOKEN_MAX 4096

/* Event types as bits, for the `types` filter. */
#define WSMSG_T_STATUS 0x01u
#define WSMSG_T_PROGRESS 0x02u
#define WSMSG_T_COMPLETE 0x04u
#define WSMSG_T_ERROR 0x08u
#define WSMSG_T_CANCELLED 0x10u
#define WSMSG_T_ALL 0x1fu
/* What every session receives whatever its filter: the job's state and its end. */
#define WSMSG_T_ALWAYS (WSMSG_T_STATUS | WSMSG_T_COMPLETE | WSMSG_T_ERROR | WSMSG_T_CANCELLED)

/* Close codes of the stream (docs/api.md section 5). */
#define WSMSG_CLOSE_NORMAL 1000     /* the job completed or was cancelled */
#define WSMSG_CLOSE_GOING_AWAY 1001 /* the bridge stops, or the client was idle too long */
#define WSMSG_CLOSE_POLICY 1008     /* a bad query, or a client that never reads */
#define WSMSG_CLOSE_TOO_BIG 1009    /* a client message over max_frame_bytes */
#define WSMSG_CLOSE_INTERNAL 1011   /* the job store could not be read; try again later */
#define WSMSG_CLOSE_JOB_FAILED 4000 /* the job failed */
#define WSMSG_CLOSE_AUTH 4001       /* missing, invalid or foreign token */
#define WSMSG_CLOSE_ORIGIN 4003     /* Origin not allowed */
#define WSMSG_CLOSE_NOT_FOUND 4004  /* no such job */
#define WSMSG_CLOSE_TOO_MANY 4029   /* too many sessions, in total or from one address */

/* Returns the WSMSG_T_* bit of an event type name ("status", "progress", "complete", "error",
 * "cancelled"), or 0 for anything else (NULL included). */
unsigned wsmsg_type_bit(const char *type);

/* ---------------------------------------------------------------------------------------------
 * The stream URL's query: ?after=SEQ&types=a,b&token=JWT
 * ------------------------------------------------------------------------------------------- */

typedef struct wsmsg_query {
    int64_t after;  /* the client's cursor: events with a greater seq are sent; 0 when absent */
    unsigned types; /* WSMSG_T_* bits of the events sent; always contains WSMSG_T_ALWAYS */
} wsmsg_query;

/* Parses the query (the raw text after '?', "" for none) with the rules of common/route.h:
 * only the names after, types and token, each at most once; after a plain decimal in
 * [0, 2^63-1]; types a comma-separated list of event type names without blanks or empty
 * entries (status and the terminal types may be listed; they are always sent anyway). The
 * token's value is not looked at here (wsmsg_query_token). Returns 0 with *out filled, or -1
 * with a short reason (at most WSMSG_REASON_MAX bytes, valid UTF-8) in why. */
int wsmsg_query_parse(const char *query, wsmsg_query *out, char *why, size_t why_len);

/* Copies the decoded `token` parameter of query to out (out_len bytes). Returns 1 when it is
 * there once, 0 when absent, -1 when malformed, repeated or longer than out_len - 1 (out is then
 * ""). */
int wsmsg_query_token(const char *query, char *out, size_t out_len);

/* Percent-encodes one decoded query parameter ("name=value", len bytes, as a server that
 * decodes the request target hands them over) back into query syntax: the first '=' stays, the
 * unreserved bytes A-Z a-z 0-9 - . _ ~ stay, every other byte becomes %XX. Writes the result and
 * a NUL to out. Returns its length, or -1 when it does not fit in out_len bytes. */
int wsmsg_encode_param(const char *param, size_t len, char *out, size_t out_len);

/* ---------------------------------------------------------------------------------------------
 * Handshake checks
 * ------------------------------------------------------------------------------------------- */

/* Whether a handshake's Origin is allowed by allowed_origins:
 *   - origin NULL or "" (not a browser): allowed;
 *   - allowed "*": any origin;
 *   - allowed "": the same origin only: the Origin's host and port equal the Host header's
 *     (a Host without a port means the default port of the Origin's scheme); when host is NULL
 *     or "" there is nothing to compare with and the Origin is allowed;
 *   - otherwise a comma-separated list of http(s)://host[:port] (blanks around entries are
 *     ignored): the Origin must equal one of them. Schemes and host names compare without
 *     regard to case, and a default port (80 for http, 443 for https) may be written or not.
 * An Origin that is not http(s)://host[:port] ("null", a path, bad port) is refused unless
 * allowed is "*". Returns 1 when allowed, 0 when not. */
int wsmsg_origin_allowed(const char *allowed, const char *origin, const char *host);

/* The client address used for max_sessions_per_ip: when the peer is the proxy (peer_is_proxy:
 * a loopback or unix socket peer) and xff (X-Forwarded-For, entries separated by commas) ends
 * with an IPv4 or IPv6 literal, that last entry; otherwise peer. Writes it and a NUL to out
 * (at most out_len bytes, cut if longer). Returns 1 when the address came from xff, else 0. */
int wsmsg_client_ip(const char *peer, int peer_is_proxy, const char *xff, char *out,
                    size_t out_len);

/* ---------------------------------------------------------------------------------------------
 * Client messages
 * ------------------------------------------------------------------------------------------- */

typedef enum wsmsg_client {
    WSMSG_CLIENT_PING = 0, /* {"type":"ping"}: answer with a pong */
    WSMSG_CLIENT_BAD       /* anything else: answer with a bad_message error */
} wsmsg_client;

/* Classifies one complete client text message of len bytes: a JSON object (strict syntax,
 * UTF-8, nesting at most 8) whose member "type" is "ping" is WSMSG_CLIENT_PING (other members
 * are ignored); anything else is WSMSG_CLIENT_BAD with a short reason in why (a static text,
 * never an echo of the client's bytes). */
wsmsg_client wsmsg_client_parse(const char *data, size_t len, char *why, size_t why_len);

/* ---------------------------------------------------------------------------------------------
 * The bridge's own messages. Each writes a JSON object and a NUL to out and returns its length,
 * or -1 when it does not fit in out_len bytes (WSMSG_SMALL_MAX is always enough for ids, states
 * and reasons of the lengths used by the bridge).
 * ------------------------------------------------------------------------------------------- */

/* {"type":"pong","ts":"…"} */
int wsmsg_pong(int64_t now_ms, char *out, size_t out_len);

/* {"type":"heartbeat","ts":"…"} */
int wsmsg_heartbeat(int64_t now_ms, char *out, size_t out_len);

/* {"type":"reset","jobId":"…"} */
int wsmsg_reset(const char *job_id, char *out, size_t out_len);

/* {"type":"error","error":{"code":"bad_message","message":"…"}} with message escaped. */
int wsmsg_bad_message(const char *message, char *out, size_t out_len);

/* The opening status of a session, in the field order of rsdb_event_json:
 * {"seq":S,"jobId":"…","type":"status","status":"…","progress":P,"trialsDone":D,
 *  "trials":T,"ts":"…"}, progress = D / T (0 when T is 0) with at most six decimals. */
int wsmsg_status(int64_t seq, const char *job_id, const char *state, uint64_t trials_done,
                 uint64_t trials, int64_t now_ms, char *out, size_t out_len);

/* The close reason of a shutdown: {"retryMs":N}, the delay a client should wait before it
 * reconnects. */
int wsmsg_goaway_reason(unsigned retry_ms, char *out, size_t out_len);

/* How a stored event ends a session: 1000 after `complete` or `cancelled`, 4000 after `error`
 * (every failed job ends with one, the lease reaper's included), 0 for every other event, a
 * `status` event too. Stores a static reason in *reason (may be NULL). */
int wsmsg_event_close(const char *type, const char **reason);

/* How a job already finished when a session starts ends it once the replay is done: 1000 for
 * "completed" and "cancelled", 4000 for "failed", 0 for any other state. Stores a static
 * reason in *reason (may be NULL). */
int wsmsg_state_close(const char *state, const char **reason);

#endif
