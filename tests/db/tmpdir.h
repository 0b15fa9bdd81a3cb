/*
 * What the db test binaries share: a temporary directory holding one test database, and a few
 * helpers (opening, reading a value directly, counting events, big requests, a private mount
 * namespace for the disk-full tests).
 *
 * Why this file exists: every db test binary works on real database files in a fresh
 * directory and must leave nothing behind, whatever SQLite created beside the file (-wal,
 * -shm, a rollback journal after a kill), and the same small helpers should be written once.
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

/* A request JSON of about pad_bytes bytes ({"trials":1000,"pad":"xxx..."}), to fill pages
 * quickly; free it with free(). */
char *db_padded_request(size_t pad_bytes);

/* The number of events job id has (through the library); fails the test when it cannot read. */
size_t db_event_count(rsdb *db, const char *id);

/* Moves this process into a mount namespace of its own (as root, or through a user namespace
 * otherwise), so that it can mount a small tmpfs that nobody else sees and that disappears with
 * it (the disk-full tests). Fails the test when the system allows neither. */
void db_private_mounts(void);

#endif
