/*
 * Backup: a consistent copy of the job store, taken while the service keeps running.
 *
 * Why this file exists: copying risksim.db with cp while it is in use loses what is still in its
 * -wal file or mixes two moments, and the sqlite3 shell may not be installed where the service
 * runs. rsdb_backup copies the open database with SQLite's online backup API, in steps of a few
 * hundred pages, inside one read transaction of the source: every step reads the same snapshot
 * (so writers of other connections never make the copy start over, and are never blocked, since
 * WAL readers do not block writers), and the copy is that one moment. The copy is then made one
 * self-contained file (journal_mode=DELETE) and verified with rsdb_check before the call
 * succeeds; on any failure the partial copy is removed. docs/internals.md, "Backup".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_internal.h"

/* Pages copied per sqlite3_backup_step (1 MiB of 4 KiB pages). */
#define BACKUP_STEP_PAGES 256

/* Longest destination path accepted (with room for the "-journal" of its siblings). */
#define BACKUP_PATH_MAX 4000

/* The files SQLite may keep beside a database: a backup refuses to start when one exists (it
 * could be a stale journal SQLite would roll into the new copy) and removes them on failure. */
static const char *const sibling_suffixes[] = {"-journal", "-wal", "-shm"};
#define SIBLING_COUNT (sizeof(sibling_suffixes) / sizeof(sibling_suffixes[0]))

/* Writes a formatted message to errbuf when there is room for one. */
static void set_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Maps an errno of creating the destination to an rsdb_err. */
static rsdb_err errno_err(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return RSDB_EFULL;
    case EIO:
        return RSDB_EIO;
    case ENOMEM:
        return RSDB_ENOMEM;
    default:
        return RSDB_EOPEN;
    }
}

/* Removes dest and whatever SQLite left beside it (errors ignored: best effort on a failure). */
static void remove_dest(const char *dest)
{
    char side[BACKUP_PATH_MAX + 16];
    for (size_t i = 0; i < SIBLING_COUNT; i++) {
        snprintf(side, sizeof(side), "%s%s", dest, sibling_suffixes[i]);
        (void)unlink(side);
    }
    (void)unlink(dest);
}

/* Creates dest as a new empty file (O_EXCL: never an existing one, nor through a symbolic
 * link), mode 0640 less the umask, after checking that no journal of an earlier database of that
 * name is left. Returns RSDB_OK, or an error with the reason in errbuf. */
static rsdb_err claim_dest(const char *dest, char *errbuf, size_t errlen)
{
    char side[BACKUP_PATH_MAX + 16];
    struct stat st;
    for (size_t i = 0; i < SIBLING_COUNT; i++) {
        snprintf(side, sizeof(side), "%s%s", dest, sibling_suffixes[i]);
        if (lstat(side, &st) == 0) {
            set_error(errbuf, errlen, "%s already exists; remove it or choose another destination",
                      side);
            return RSDB_EOPEN;
        }
    }
    int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            set_error(errbuf, errlen, "%s already exists; a backup never overwrites a file", dest);
        else
            set_error(errbuf, errlen, "%s: %s", dest, strerror(e));
        return errno_err(e);
    }
    if (close(fd) != 0) {
        int e = errno;
        set_error(errbuf, errlen, "%s: %s", dest, strerror(e));
        (void)unlink(dest);
        return errno_err(e);
    }
    return RSDB_OK;
}

/* Opens the (new, empty) destination file as a connection of its own, with src's busy timeout.
 * The copy is reached through an rsdb so that the library's statements and rsdb_check work on it.
 * Returns RSDB_OK with *out set (free with rsdb_free), or an error with the reason in errbuf. */
static rsdb_err open_copy(const rsdb *src, const char *dest, rsdb **out, char *errbuf,
                          size_t errlen)
{
    *out = NULL;
    rsdb *dst = calloc(1, sizeof(*dst));
    if (dst == NULL) {
        set_error(errbuf, errlen, "out of memory");
        return RSDB_ENOMEM;
    }
    dst->options = src->options;
    int rc = sqlite3_open_v2(dest, &dst->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rsdb_err err = db_fail(dst, rc, dest);
        set_error(errbuf, errlen, "%s", dst->errmsg);
        rsdb_free(dst);
        return err == RSDB_ESQL ? RSDB_EOPEN : err;
    }
    sqlite3_extended_result_codes(dst->conn, 1);
    sqlite3_busy_timeout(dst->conn, dst->options.busy_timeout_ms);
    *out = dst;
    return RSDB_OK;
}

/* Reads the schema version (one row of PRAGMA user_version) on db; with a transaction open, this
 * read is what starts its snapshot. */
static rsdb_err read_user_version(rsdb *db, int64_t *version)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_USER_VERSION, &err);
    if (stmt == NULL)
        return err;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int64(stmt, 0);
    else
        err = db_fail(db, rc, "user_version");
    db_reset(stmt);
    return err;
}

/* Ends the read transaction of begin_snapshot (if one is open), keeping the first error's
 * message. */
static void end_snapshot(rsdb *src)
{
    if (sqlite3_get_autocommit(src->conn))
        return;
    char saved[sizeof(src->errmsg)];
    memcpy(saved, src->errmsg, sizeof(saved));
    (void)db_exec_stmt(src, ST_ROLLBACK, "end of the backup's read transaction");
    memcpy(src->errmsg, saved, sizeof(saved));
}

/* Opens a read transaction on src and reads from it, so that its snapshot is fixed until
 * end_snapshot (db_read_retry retries it on RSDB_EBUSY). */
static rsdb_err begin_snapshot_once(rsdb *src, void *ctx)
{
    (void)ctx;
    rsdb_err err = db_exec_stmt(src, ST_BEGIN_READ, "begin the backup's read transaction");
    if (err != RSDB_OK)
        return err;
    int64_t version = 0;
    err = read_user_version(src, &version);
    if (err != RSDB_OK)
        end_snapshot(src);
    return err;
}

/* Copies every page of src's snapshot into dst, BACKUP_STEP_PAGES a step, backing off and
 * retrying a step that found a database locked (at most options.max_retries times in a row).
 * Returns RSDB_OK, or the error with its message in dst->errmsg. */
static rsdb_err copy_pages(rsdb *src, rsdb *dst)
{
    sqlite3_backup *backup = sqlite3_backup_init(dst->conn, "main", src->conn, "main");
    if (backup == NULL)
        return db_fail(dst, sqlite3_extended_errcode(dst->conn), "backup");
    int rc = SQLITE_OK;
    int attempt = 0;
    for (;;) {
        rc = sqlite3_backup_step(backup, BACKUP_STEP_PAGES);
        if (rc == SQLITE_OK) {
            attempt = 0;
        } else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
            if (attempt >= src->options.max_retries) {
                src->busy_failures++;
                break;
            }
            db_backoff(src, attempt++);
        } else {
            break; /* SQLITE_DONE, or an error */
        }
    }
    int finish_rc = sqlite3_backup_finish(backup);
    if (rc == SQLITE_DONE)
        return finish_rc == SQLITE_OK ? RSDB_OK : db_fail(dst, finish_rc, "backup");
    rsdb_err err = db_fail(dst, rc, "backup");
    if (err == RSDB_EBUSY)
        snprintf(dst->errmsg, sizeof(dst->errmsg), "backup: %s through every retry",
                 sqlite3_errstr(rc));
    return err;
}

/* Makes the copy one self-contained file: its header says WAL (copied from the source), so a
 * read first opens it as WAL, then journal_mode=DELETE checkpoints, switches the header back
 * and removes the -wal file. Returns RSDB_OK or the error (message in dst->errmsg). */
static rsdb_err make_self_contained(rsdb *dst)
{
    int64_t version = 0;
    rsdb_err err = read_user_version(dst, &version);
    if (err != RSDB_OK)
        return err;
    sqlite3_stmt *stmt = db_stmt_get(dst, ST_JOURNAL_DELETE, &err);
    if (stmt == NULL)
        return err;
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        err = db_fail(dst, rc, "journal_mode of the copy");
    } else {
        const char *mode = (const char *)sqlite3_column_text(stmt, 0);
        if (mode == NULL || strcmp(mode, "delete") != 0) {
            snprintf(dst->errmsg, sizeof(dst->errmsg), "journal_mode of the copy stayed %s",
                     mode == NULL ? "unknown" : mode);
            err = RSDB_EIO;
        }
    }
    db_reset(stmt);
    return err;
}

/* Copies src's snapshot into the open copy dst, then makes it self-contained and checks it.
 * The source's read transaction ends as soon as the pages are copied. Returns RSDB_OK, or the
 * error with its reason in errbuf. */
static rsdb_err backup_into(rsdb *src, rsdb *dst, char *errbuf, size_t errlen)
{
    rsdb_err err = db_read_retry(src, begin_snapshot_once, NULL);
    if (err != RSDB_OK) {
        set_error(errbuf, errlen, "%s", src->errmsg);
        return err;
    }
    err = copy_pages(src, dst);
    end_snapshot(src);
    if (err == RSDB_OK)
        err = make_self_contained(dst);
    if (err != RSDB_OK) {
        set_error(errbuf, errlen, "%s", dst->errmsg);
        return err;
    }
    char report[256] = "";
    err = rsdb_check(dst, report, sizeof(report));
    if (err == RSDB_ECORRUPT)
        set_error(errbuf, errlen, "the copy failed its check: %s", report);
    else if (err != RSDB_OK)
        set_error(errbuf, errlen, "check of the copy: %s", dst->errmsg);
    return err;
}

rsdb_err rsdb_backup(rsdb *db, const char *dest_path, char *errbuf, size_t errlen)
{
    set_error(errbuf, errlen, "%s", "");
    if (db == NULL || dest_path == NULL || dest_path[0] == '\0') {
        set_error(errbuf, errlen, "rsdb_backup: a connection and a destination are required");
        return RSDB_EINVAL;
    }
    if (strlen(dest_path) > BACKUP_PATH_MAX) {
        set_error(errbuf, errlen, "rsdb_backup: the destination path is too long");
        return RSDB_EINVAL;
    }
    rsdb_err err = claim_dest(dest_path, errbuf, errlen);
    if (err != RSDB_OK)
        return err;
    rsdb *dst = NULL;
    err = open_copy(db, dest_path, &dst, errbuf, errlen);
    if (err == RSDB_OK)
        err = backup_into(db, dst, errbuf, errlen);
    rsdb_free(dst);
    if (err != RSDB_OK)
        remove_dest(dest_path);
    return err;
}
