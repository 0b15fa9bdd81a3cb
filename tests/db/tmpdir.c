/*
 * A temporary directory holding one test database (see tmpdir.h).
 */
#define _GNU_SOURCE /* unshare */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "tmpdir.h"

int db_tmpdir_make(db_tmpdir *t, const char *prefix)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/%.32s-XXXXXX", prefix);
    if (mkdtemp(t->dir) == NULL)
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/jobs.db", t->dir);
    return 0;
}

void db_tmpdir_remove(const db_tmpdir *t)
{
    DIR *d = opendir(t->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[384];
            snprintf(p, sizeof(p), "%s/%s", t->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(t->dir);
}

int db_tmpdir_setup(void **state)
{
    db_tmpdir *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    if (db_tmpdir_make(t, "rsdb-test") != 0) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

int db_tmpdir_teardown(void **state)
{
    db_tmpdir *t = *state;
    db_tmpdir_remove(t);
    free(t);
    return 0;
}

int64_t db_sql_int(const char *path, const char *sql)
{
    sqlite3 *conn = NULL;
    assert_int_equal(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_prepare_v2(conn, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(conn);
    return v;
}

rsdb *db_test_open(const char *path, rsdb_role role)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = role;
    rsdb *db = NULL;
    char err[256];
    rsdb_err rc = rsdb_open(path, &opt, &db, err, sizeof(err));
    if (rc != RSDB_OK)
        fail_msg("rsdb_open %s: %s: %s", path, rsdb_strerror(rc), err);
    return db;
}

size_t db_event_count(rsdb *db, const char *id)
{
    rsdb_event_list list;
    assert_int_equal(rsdb_events_job(db, id, 0, RSDB_EVENTS_MAX, &list), RSDB_OK);
    size_t n = list.count;
    rsdb_event_list_clear(&list);
    return n;
}

void db_private_mounts(void)
{
    int rc = geteuid() == 0 ? unshare(CLONE_NEWNS) : unshare(CLONE_NEWUSER | CLONE_NEWNS);
    if (rc != 0)
        fail_msg("unshare: %s (a private mount namespace is needed for the disk-full test)",
                 strerror(errno));
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
        fail_msg("making / private: %s", strerror(errno));
}

char *db_padded_request(size_t pad_bytes)
{
    char *req = malloc(pad_bytes + 32);
    assert_non_null(req);
    int n = snprintf(req, 32, "{\"trials\":1000,\"pad\":\"");
    memset(req + n, 'x', pad_bytes);
    memcpy(req + n + pad_bytes, "\"}", 3);
    return req;
}
