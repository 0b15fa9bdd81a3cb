/*
 * Bearer-token checks with libjwt (see auth.h).
 *
 * Why this file exists: it is the only code that decides who may do what. libjwt verifies the
 * HS256 signature; this file pins the algorithm, requires an expiry, and applies the job and
 * admin scopes.
 */
#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "risksim/auth.h"

static void reason(char *why, size_t len, const char *text)
{
    if (why != NULL && len > 0)
        snprintf(why, len, "%s", text);
}

/* Extracts the token from "Bearer TOKEN" (scheme case-insensitive, one or more spaces).
 * Returns a pointer into authorization, or NULL when it is not a bearer credential. */
static const char *bearer_token(const char *authorization)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t != '\0' ? t : NULL;
}

/* Whether the decoded token allows need (on job_id). Returns 0 or 403. */
static int permitted(jwt_t *jwt, rsauth_need need, const char *job_id, char *why, size_t why_len)
{
    const char *job = jwt_get_grant(jwt, "job");
    const char *scope = jwt_get_grant(jwt, "scope");
    int admin = scope != NULL && strcmp(scope, "admin") == 0;
    if (need == RSAUTH_NEED_ADMIN && !admin) {
        reason(why, why_len, "this needs a token with \"scope\":\"admin\"");
        return 403;
    }
    if (job != NULL && !admin) {
        if (need != RSAUTH_NEED_JOB || job_id == NULL || strcmp(job, job_id) != 0) {
            reason(why, why_len, "the token is for another job");
            return 403;
        }
    }
    return 0;
}

int rsauth_check(const char *secret, const char *authorization, const char *token_param,
                 rsauth_need need, const char *job_id, int64_t now_s, char *why, size_t why_len)
{
    reason(why, why_len, "");
    if (secret == NULL || secret[0] == '\0')
        return 0;
    const char *token = bearer_token(authorization);
    if (token == NULL && authorization != NULL && authorization[0] != '\0') {
        reason(why, why_len, "the Authorization header is not a Bearer token");
        return 401;
    }
    if (token == NULL)
        token = token_param != NULL && token_param[0] != '\0' ? token_param : NULL;
    if (token == NULL) {
        reason(why, why_len, "a token is required");
        return 401;
    }
    if (strlen(token) > RSAUTH_TOKEN_MAX) {
        reason(why, why_len, "the token is too long");
        return 401;
    }
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
        jwt == NULL) {
        jwt_free(jwt);
        reason(why, why_len, "the token is malformed or its signature is wrong");
        return 401;
    }
    int status = 0;
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        reason(why, why_len, "the token must be signed with HS256");
        status = 401;
    } else if (errno != 0 || exp <= 0) {
        reason(why, why_len, "the token has no exp claim");
        status = 401;
    } else if ((int64_t)exp <= now_s) {
        reason(why, why_len, "the token has expired");
        status = 401;
    } else {
        status = permitted(jwt, need, job_id, why, why_len);
    }
    jwt_free(jwt);
    return status;
}
