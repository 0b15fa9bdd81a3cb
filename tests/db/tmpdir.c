/*
 * A temporary directory holding one test database (see tmpdir.h).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
