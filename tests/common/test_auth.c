/*
 * Tests of the token checks both daemons share (common/auth.c) with tokens made by libjwt itself.
 *
 * Why this file exists: auth is the code whose mistakes are silent. Each way a token can be
 * wrong (missing, malformed, signed with another secret or another algorithm, unsigned, without
 * or past its expiry, for another job, without the admin scope) must be refused with the right
 * status, and each right token accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risksim/auth.h"

static const char *const SECRET = "test-secret-of-some-length-0123456789";
static const char *const JOB = "0123456789ABCDEFGHJKMNPQRS";
static const int64_t NOW = 1767225600;

/* Makes a token: alg, key, and grants (exp when > 0, job and scope when non-NULL). */
static char *make_token(jwt_alg_t alg, const char *key, long exp, const char *job,
                        const char *scope)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    if (exp > 0)
        assert_int_equal(jwt_add_grant_int(jwt, "exp", exp), 0);
    if (job != NULL)
        assert_int_equal(jwt_add_grant(jwt, "job", job), 0);
    if (scope != NULL)
        assert_int_equal(jwt_add_grant(jwt, "scope", scope), 0);
    assert_int_equal(
        jwt_set_alg(jwt, alg, (const unsigned char *)key, key != NULL ? (int)strlen(key) : 0), 0);
    char *token = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(token);
    return token;
}

static int check_bearer(const char *token, rsauth_need need, const char *job)
{
    char header[4200];
    snprintf(header, sizeof(header), "Bearer %s", token);
    char why[128];
    return rsauth_check(SECRET, header, NULL, need, job, NOW, why, sizeof(why));
}

static void test_off_allows_everything(void **state)
{
    (void)state;
    char why[64];
    assert_int_equal(rsauth_check("", NULL, NULL, RSAUTH_NEED_ADMIN, NULL, NOW, why, sizeof(why)),
                     0);
    assert_int_equal(rsauth_check(NULL, "Bearer x", NULL, RSAUTH_NEED_JOB, JOB, NOW, why, 64), 0);
}

static void test_missing_and_malformed(void **state)
{
    (void)state;
    char why[128];
    assert_int_equal(
        rsauth_check(SECRET, NULL, NULL, RSAUTH_NEED_USER, NULL, NOW, why, sizeof(why)), 401);
    assert_non_null(strstr(why, "required"));
    assert_int_equal(rsauth_check(SECRET, "Basic dXNlcjpwdw==", NULL, RSAUTH_NEED_USER, NULL, NOW,
                                  why, sizeof(why)),
                     401);
    assert_int_equal(rsauth_check(SECRET, "Bearer ", NULL, RSAUTH_NEED_USER, NULL, NOW, why, 128),
                     401);
    assert_int_equal(check_bearer("not.a.token", RSAUTH_NEED_USER, NULL), 401);
    assert_int_equal(check_bearer("", RSAUTH_NEED_USER, NULL), 401);
    char *huge = malloc(RSAUTH_TOKEN_MAX + 2);
    memset(huge, 'a', RSAUTH_TOKEN_MAX + 1);
    huge[RSAUTH_TOKEN_MAX + 1] = '\0';
    assert_int_equal(rsauth_check(SECRET, NULL, huge, RSAUTH_NEED_USER, NULL, NOW, why, 128), 401);
    free(huge);
}

static void test_signature_algorithm_and_expiry(void **state)
{
    (void)state;
    char *good = make_token(JWT_ALG_HS256, SECRET, NOW + 60, NULL, NULL);
    assert_int_equal(check_bearer(good, RSAUTH_NEED_USER, NULL), 0);
    /* The same token in the query parameter (browsers' WebSockets). */
    char why[128];
    assert_int_equal(rsauth_check(SECRET, NULL, good, RSAUTH_NEED_USER, NULL, NOW, why, 128), 0);
    /* Scheme name is case-insensitive. */
    char header[4200];
    snprintf(header, sizeof(header), "bearer %s", good);
    assert_int_equal(rsauth_check(SECRET, header, NULL, RSAUTH_NEED_USER, NULL, NOW, why, 128), 0);
    free(good);

    char *other_key =
        make_token(JWT_ALG_HS256, "another-secret-0123456789abcdef", NOW + 60, NULL, NULL);
    assert_int_equal(check_bearer(other_key, RSAUTH_NEED_USER, NULL), 401);
    free(other_key);
    char *hs512 = make_token(JWT_ALG_HS512, SECRET, NOW + 60, NULL, NULL);
    assert_int_equal(check_bearer(hs512, RSAUTH_NEED_USER, NULL), 401);
    free(hs512);
    char *unsigned_token = make_token(JWT_ALG_NONE, NULL, NOW + 60, NULL, NULL);
    assert_int_equal(check_bearer(unsigned_token, RSAUTH_NEED_USER, NULL), 401);
    free(unsigned_token);
    char *no_exp = make_token(JWT_ALG_HS256, SECRET, 0, NULL, NULL);
    assert_int_equal(check_bearer(no_exp, RSAUTH_NEED_USER, NULL), 401);
    free(no_exp);
    char *expired = make_token(JWT_ALG_HS256, SECRET, NOW, NULL, NULL);
    assert_int_equal(check_bearer(expired, RSAUTH_NEED_USER, NULL), 401);
    free(expired);
}

static void test_job_and_admin_scopes(void **state)
{
    (void)state;
    char *for_job = make_token(JWT_ALG_HS256, SECRET, NOW + 60, JOB, NULL);
    assert_int_equal(check_bearer(for_job, RSAUTH_NEED_JOB, JOB), 0);
    assert_int_equal(check_bearer(for_job, RSAUTH_NEED_JOB, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), 403);
    assert_int_equal(check_bearer(for_job, RSAUTH_NEED_USER, NULL), 403);
    assert_int_equal(check_bearer(for_job, RSAUTH_NEED_ADMIN, NULL), 403);
    free(for_job);
    char *user = make_token(JWT_ALG_HS256, SECRET, NOW + 60, NULL, NULL);
    assert_int_equal(check_bearer(user, RSAUTH_NEED_JOB, JOB), 0);
    assert_int_equal(check_bearer(user, RSAUTH_NEED_ADMIN, NULL), 403);
    free(user);
    char *admin = make_token(JWT_ALG_HS256, SECRET, NOW + 60, NULL, "admin");
    assert_int_equal(check_bearer(admin, RSAUTH_NEED_ADMIN, NULL), 0);
    assert_int_equal(check_bearer(admin, RSAUTH_NEED_JOB, JOB), 0);
    free(admin);
    char *other_scope = make_token(JWT_ALG_HS256, SECRET, NOW + 60, NULL, "reader");
    assert_int_equal(check_bearer(other_scope, RSAUTH_NEED_ADMIN, NULL), 403);
    free(other_scope);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_allows_everything),
        cmocka_unit_test(test_missing_and_malformed),
        cmocka_unit_test(test_signature_algorithm_and_expiry),
        cmocka_unit_test(test_job_and_admin_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
