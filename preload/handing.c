/*
 * handing.c — the libc calls that hand memory to their caller.
 *
 * What strdup, asprintf, getline, realpath(p, NULL), scandir and the like
 * return belongs to the program: made inside a write transaction, it must
 * land in the arena like any malloc of the program's.  But libc makes it
 * from inside libc, where an allocation is taken for libc's own
 * (callers.c).  So the preload exports these calls: when the program makes
 * one inside a write transaction, the wrapper marks the thread as being
 * inside a handing call (preload_handing) around libc's own function, and
 * callers.c lets its allocations go to the arena.  Calls from libc's own
 * modules (an NSS module's strdup) are not marked.  Outside transactions a
 * wrapper costs one thread-local test and an indirect call.
 *
 * Covered (glibc 2.36): strdup strndup wcsdup (and __strdup __strndup);
 * asprintf vasprintf __asprintf_chk __vasprintf_chk; getline getdelim
 * __getdelim; realpath __realpath_chk (with a NULL buffer)
 * canonicalize_file_name; getcwd (with a NULL buffer)
 * get_current_dir_name; tempnam; scandir scandir64 scandirat scandirat64;
 * tsearch (the tree's nodes) and hcreate_r (the table);
 * open_memstream (the buffer, not the stream; it grows through
 * _IO_str_overflow, see callers.c).  Not covered, so what they return
 * stays in glibc: glob and wordexp (they may load NSS modules, whose state
 * libc keeps), getaddrinfo, regcomp, newlocale, iconv_open,
 * backtrace_symbols, open_wmemstream (it grows through a hidden function).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "preload.h"

/* The next definition of name (libc's), resolved once. */
#define REAL(name)                                                                  \
    static __typeof__(name) *real_##name;                                           \
    if (unlikely(!real_##name))                                                     \
    real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* Returns call, made in the handing mode when the program (the caller at
 * ra) makes it inside a write transaction. */
#define HANDED(mode, ra, type, call)                                                \
    do {                                                                            \
        if (likely(!tm_route_store))                                                \
            return call;                                                            \
        int saved_ = preload_handing;                                               \
        preload_handing = callers_system(ra) ? saved_ : (mode);                     \
        type r_ = call;                                                             \
        preload_handing = saved_;                                                   \
        return r_;                                                                  \
    } while (0)

#define RA __builtin_return_address(0)

char *__strdup(const char *s);
char *__strndup(const char *s, size_t n);
ssize_t __getdelim(char **line, size_t *n, int delim, FILE *f);
int __vasprintf_chk(char **out, int flag, const char *fmt, va_list ap);
int __asprintf_chk(char **out, int flag, const char *fmt, ...);
char *__realpath_chk(const char *path, char *resolved, size_t len);

/* ---- strings ---- */

EXPORT char *strdup(const char *s)
{
    REAL(strdup);
    HANDED(HAND_ALL, RA, char *, real_strdup(s));
}

EXPORT char *__strdup(const char *s)
{
    REAL(__strdup);
    HANDED(HAND_ALL, RA, char *, real___strdup(s));
}

EXPORT char *strndup(const char *s, size_t n)
{
    REAL(strndup);
    HANDED(HAND_ALL, RA, char *, real_strndup(s, n));
}

EXPORT char *__strndup(const char *s, size_t n)
{
    REAL(__strndup);
    HANDED(HAND_ALL, RA, char *, real___strndup(s, n));
}

EXPORT wchar_t *wcsdup(const wchar_t *s)
{
    REAL(wcsdup);
    HANDED(HAND_ALL, RA, wchar_t *, real_wcsdup(s));
}

/* ---- formatted ---- */

static int vasprintf_from(const void *ra, char **out, const char *fmt, va_list ap)
{
    REAL(vasprintf);
    HANDED(HAND_ALL, ra, int, real_vasprintf(out, fmt, ap));
}

static int vasprintf_chk_from(const void *ra, char **out, int flag, const char *fmt, va_list ap)
{
    REAL(__vasprintf_chk);
    HANDED(HAND_ALL, ra, int, real___vasprintf_chk(out, flag, fmt, ap));
}

EXPORT int vasprintf(char **out, const char *fmt, va_list ap)
{
    return vasprintf_from(RA, out, fmt, ap);
}

EXPORT int asprintf(char **out, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = vasprintf_from(RA, out, fmt, ap);
    va_end(ap);
    return r;
}

EXPORT int __vasprintf_chk(char **out, int flag, const char *fmt, va_list ap)
{
    return vasprintf_chk_from(RA, out, flag, fmt, ap);
}

EXPORT int __asprintf_chk(char **out, int flag, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = vasprintf_chk_from(RA, out, flag, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- lines ---- */

EXPORT ssize_t getdelim(char **line, size_t *n, int delim, FILE *f)
{
    REAL(getdelim);
    HANDED(HAND_ALL, RA, ssize_t, real_getdelim(line, n, delim, f));
}

EXPORT ssize_t __getdelim(char **line, size_t *n, int delim, FILE *f)
{
    REAL(__getdelim);
    HANDED(HAND_ALL, RA, ssize_t, real___getdelim(line, n, delim, f));
}

EXPORT ssize_t getline(char **line, size_t *n, FILE *f)
{
    REAL(getline);
    HANDED(HAND_ALL, RA, ssize_t, real_getline(line, n, f));
}

/* ---- file names ---- */

EXPORT char *realpath(const char *path, char *resolved)
{
    REAL(realpath);
    HANDED(resolved ? HAND_NONE : HAND_ALL, RA, char *, real_realpath(path, resolved));
}

EXPORT char *__realpath_chk(const char *path, char *resolved, size_t len)
{
    REAL(__realpath_chk);
    HANDED(resolved ? HAND_NONE : HAND_ALL, RA, char *, real___realpath_chk(path, resolved, len));
}

EXPORT char *canonicalize_file_name(const char *path)
{
    REAL(canonicalize_file_name);
    HANDED(HAND_ALL, RA, char *, real_canonicalize_file_name(path));
}

EXPORT char *getcwd(char *buf, size_t size)
{
    REAL(getcwd);
    HANDED(buf ? HAND_NONE : HAND_ALL, RA, char *, real_getcwd(buf, size));
}

EXPORT char *get_current_dir_name(void)
{
    REAL(get_current_dir_name);
    HANDED(HAND_ALL, RA, char *, real_get_current_dir_name());
}

EXPORT char *tempnam(const char *dir, const char *prefix)
{
    REAL(tempnam);
    HANDED(HAND_ALL, RA, char *, real_tempnam(dir, prefix));
}

/* ---- directories ---- */

EXPORT int scandir(const char *dir, struct dirent ***list, int (*sel)(const struct dirent *),
                   int (*cmp)(const struct dirent **, const struct dirent **))
{
    REAL(scandir);
    HANDED(HAND_ALL, RA, int, real_scandir(dir, list, sel, cmp));
}

EXPORT int scandir64(const char *dir, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
                     int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    REAL(scandir64);
    HANDED(HAND_ALL, RA, int, real_scandir64(dir, list, sel, cmp));
}

EXPORT int scandirat(int fd, const char *dir, struct dirent ***list, int (*sel)(const struct dirent *),
                     int (*cmp)(const struct dirent **, const struct dirent **))
{
    REAL(scandirat);
    HANDED(HAND_ALL, RA, int, real_scandirat(fd, dir, list, sel, cmp));
}

EXPORT int scandirat64(int fd, const char *dir, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
                       int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    REAL(scandirat64);
    HANDED(HAND_ALL, RA, int, real_scandirat64(fd, dir, list, sel, cmp));
}

/* ---- search trees and tables (their nodes and table are the caller's) ---- */

EXPORT void *tsearch(const void *key, void **root, int (*cmp)(const void *, const void *))
{
    REAL(tsearch);
    HANDED(HAND_ALL, RA, void *, real_tsearch(key, root, cmp));
}

EXPORT int hcreate_r(size_t n, struct hsearch_data *table)
{
    REAL(hcreate_r);
    HANDED(HAND_ALL, RA, int, real_hcreate_r(n, table));
}

/* ---- streams ---- */

EXPORT FILE *open_memstream(char **buf, size_t *size)
{
    REAL(open_memstream);
    HANDED(HAND_ZEROED, RA, FILE *, real_open_memstream(buf, size));
}
