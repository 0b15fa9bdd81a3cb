/*
 * Bearer-token auth of docs/api.md section 6: HS256 JWTs signed with auth_secret.
 *
 * Why this file exists: every endpoint of the responder and the bridge's stream apply the same
 * rule, and a token check is security code that must be written once, strictly: the algorithm is
 * pinned to HS256 (never taken from the token), `exp` is required, a `job` claim limits the
 * token to reading that one job, and listing jobs needs `"scope":"admin"`.
 */
#ifndef RISKSIM_AUTH_H
#define RISKSIM_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* What a request wants to do, for the permission check. */
typedef enum rsauth_need {
    RSAUTH_NEED_USER = 0, /* create jobs, healthz, metrics: any valid token without a job claim */
    RSAUTH_NEED_JOB,      /* read or cancel job_id: a token without a job claim, or for that job */
    RSAUTH_NEED_ADMIN     /* list jobs: a token with "scope":"admin" */
} rsauth_need;

/* Longest token accepted. */
#define RSAUTH_TOKEN_MAX 4096

/* Checks a request's token. secret is the configured auth_secret ("" means auth is off: always
 * 0). The token is taken from authorization ("Bearer TOKEN") or else from token_param (the
 * `token` query parameter, already decoded; may be NULL). job_id is the job the request names
 * (for RSAUTH_NEED_JOB). Returns 0 (allowed), 401 (missing, malformed, wrongly signed, other
 * algorithm, no or past exp) or 403 (valid but not allowed), with a short reason in why. */
int rsauth_check(const char *secret, const char *authorization, const char *token_param,
                 rsauth_need need, const char *job_id, int64_t now_s, char *why, size_t why_len);

#endif
