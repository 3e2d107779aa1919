/*
 * forward_preload.c — the least an LD_PRELOAD interposer can be: malloc,
 * free, calloc and realloc, each one jump to glibc's __libc_* entry point
 * and nothing else.  fallback_bench times it beside libtmfpreload.so, so
 * that the cost of interposing at all (a second indirect jump per call)
 * is measured apart from the preload's own tests.  Never installed.
 */
#include <stddef.h>

#define EXPORT __attribute__((visibility("default")))

void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

EXPORT void *malloc(size_t size) { return __libc_malloc(size); }
EXPORT void free(void *p) { __libc_free(p); }
EXPORT void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
EXPORT void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
