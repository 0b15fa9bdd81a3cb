/*
 * Error strings and the problem list (rs_diag).
 *
 * Why this file exists: the engine never prints. Callers get an rs_err, and where a request is
 * at fault, a list of problems with JSON pointers that the FastCGI responder turns into
 * problem+json and the CLI into readable lines. The list is bounded (RS_DIAG_MAX) so a hostile
 * request with a million broken nodes cannot make it grow without limit.
 */
#include <stdlib.h>
#include <string.h>

#include "risksim/engine.h"

#define DIAG_MESSAGE_MAX 512
#define DIAG_POINTER_MAX 4096

typedef struct diag_entry {
    char *pointer;
    char *code;
    char *message;
} diag_entry;

struct rs_diag {
    diag_entry *entries;
    size_t count;
    size_t capacity;
    int truncated; /* the "too_many_errors" entry has been added */
};

const char *rs_strerror(rs_err err)
{
    switch (err) {
    case RS_OK:
        return "success";
    case RS_ENOMEM:
        return "out of memory";
    case RS_EINVAL:
        return "invalid argument";
    case RS_EJSON:
        return "the request is not valid JSON";
    case RS_EVALIDATION:
        return "the request breaks one or more rules";
    case RS_ECANCELLED:
        return "the simulation was cancelled";
    case RS_ETHREAD:
        return "a worker thread could not be started";
    case RS_ELIMIT:
        return "a size limit would be exceeded";
    }
    return "unknown error";
}

rs_diag *rs_diag_new(void)
{
    return calloc(1, sizeof(rs_diag));
}

void rs_diag_clear(rs_diag *diag)
{
    if (diag == NULL)
        return;
    for (size_t i = 0; i < diag->count; i++) {
        free(diag->entries[i].pointer);
        free(diag->entries[i].code);
        free(diag->entries[i].message);
    }
    diag->count = 0;
    diag->truncated = 0;
}

void rs_diag_free(rs_diag *diag)
{
    if (diag == NULL)
        return;
    rs_diag_clear(diag);
    free(diag->entries);
    free(diag);
}

size_t rs_diag_count(const rs_diag *diag)
{
    return diag == NULL ? 0 : diag->count;
}

const char *rs_diag_pointer(const rs_diag *diag, size_t i)
{
    return diag->entries[i].pointer;
}

const char *rs_diag_code(const rs_diag *diag, size_t i)
{
    return diag->entries[i].code;
}

const char *rs_diag_message(const rs_diag *diag, size_t i)
{
    return diag->entries[i].message;
}

/* Copies at most max bytes of s into a new NUL-terminated string (cut on a UTF-8 boundary).
 * Returns NULL when out of memory. */
static char *copy_bounded(const char *s, size_t max)
{
    if (s == NULL)
        s = "";
    size_t len = strlen(s);
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0u) == 0x80u)
            len--;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

/* Makes room for one more entry. Returns RS_OK or RS_ENOMEM. */
static rs_err diag_reserve(rs_diag *diag)
{
    if (diag->count < diag->capacity)
        return RS_OK;
    size_t capacity = diag->capacity == 0 ? 8 : diag->capacity * 2;
    if (capacity > RS_DIAG_MAX + 1)
        capacity = RS_DIAG_MAX + 1;
    diag_entry *entries = realloc(diag->entries, capacity * sizeof(*entries));
    if (entries == NULL)
        return RS_ENOMEM;
    diag->entries = entries;
    diag->capacity = capacity;
    return RS_OK;
}

/* Appends one entry without the RS_DIAG_MAX check. */
static rs_err diag_append(rs_diag *diag, const char *pointer, const char *code, const char *message)
{
    if (diag_reserve(diag) != RS_OK)
        return RS_ENOMEM;
    diag_entry entry = {copy_bounded(pointer, DIAG_POINTER_MAX), copy_bounded(code, 64),
                        copy_bounded(message, DIAG_MESSAGE_MAX)};
    if (entry.pointer == NULL || entry.code == NULL || entry.message == NULL) {
        free(entry.pointer);
        free(entry.code);
        free(entry.message);
        return RS_ENOMEM;
    }
    diag->entries[diag->count++] = entry;
    return RS_OK;
}

rs_err rs_diag_add(rs_diag *diag, const char *pointer, const char *code, const char *message)
{
    if (diag == NULL || diag->truncated)
        return RS_OK;
    if (diag->count >= RS_DIAG_MAX) {
        diag->truncated = 1;
        return diag_append(diag, "", "too_many_errors",
                           "more problems were found than are listed; fix these first");
    }
    return diag_append(diag, pointer, code, message);
}
