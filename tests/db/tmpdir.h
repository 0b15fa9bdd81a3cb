/*
 * A temporary directory holding one test database (shared by the db tests).
 *
 * Why this file exists: every db test binary works on real database files in a fresh
 * directory and must leave nothing behind, whatever SQLite created beside the file (-wal,
 * -shm, a rollback journal after a kill).
 */
#ifndef RISKSIM_TESTS_DB_TMPDIR_H
#define RISKSIM_TESTS_DB_TMPDIR_H

#include <stdint.h>

#include "risksim/db.h"

typedef struct db_tmpdir {
    char dir[64];   /* /tmp/<prefix>-XXXXXX */
    char path[128]; /* dir/jobs.db */
} db_tmpdir;

/* Creates a fresh directory /tmp/<prefix>-XXXXXX (prefix at most 32 bytes) and sets t->path to
 * jobs.db inside it. Returns 0, or -1 when the directory cannot be made. */
int db_tmpdir_make(db_tmpdir *t, const char *prefix);

/* Removes every file in the directory, then the directory itself. */
void db_tmpdir_remove(const db_tmpdir *t);

/* cmocka setup and teardown: *state becomes a new db_tmpdir (prefix "rsdb-test"), then is
 * removed and freed. */
int db_tmpdir_setup(void **state);
int db_tmpdir_teardown(void **state);

/* Opens path with the library's default options but the given role; fails the test when it
 * cannot. */
rsdb *db_test_open(const char *path, rsdb_role role);

/* Reads one integer with SQLite directly (read-only), as an independent check of the file;
 * fails the test when the query does not answer a row. */
int64_t db_sql_int(const char *path, const char *sql);

#endif
