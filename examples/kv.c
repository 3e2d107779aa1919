/*
 * kv — a persistent key-value store built with plain malloc, strdup and free.
 *
 *   LD_PRELOAD=libtmfpreload.so kv put KEY VALUE
 *   LD_PRELOAD=libtmfpreload.so kv get KEY
 *   LD_PRELOAD=libtmfpreload.so kv del KEY
 *   LD_PRELOAD=libtmfpreload.so kv list
 *
 * The program is not linked with tmfalloc: it declares the few tm_* calls it
 * uses as weak symbols, which the preload provides.  Inside tm_begin/tm_commit
 * every malloc lands in the store file (TMF_PATH, default kv.tmf), so the list
 * survives restarts and crashes exactly as of the last commit.
 */
#define _GNU_SOURCE /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *tm_root(size_t size) __attribute__((weak));
extern int tm_begin(void) __attribute__((weak));
extern int tm_commit(void) __attribute__((weak));
extern int tm_read_begin(void) __attribute__((weak));
extern int tm_read_end(void) __attribute__((weak));
extern const char *tm_strerror(int code) __attribute__((weak));

struct entry {
    struct entry *next; /* sorted by key */
    char *key;
    char *value;
};

struct root {
    struct entry *head;
    long count;
};

static struct entry **find(struct root *r, const char *key)
{
    struct entry **p = &r->head;
    while (*p && strcmp((*p)->key, key) < 0)
        p = &(*p)->next;
    return p;
}

static int put(struct root *r, const char *key, const char *value)
{
    struct entry **p = find(r, key), *e = *p;
    char *v = strdup(value);
    if (!v)
        return -1;
    if (e && strcmp(e->key, key) == 0) {
        free(e->value);
        e->value = v;
        return 0;
    }
    if (!(e = malloc(sizeof *e)) || !(e->key = strdup(key))) {
        free(e);
        free(v);
        return -1;
    }
    e->value = v;
    e->next = *p;
    *p = e;
    r->count++;
    return 0;
}

static int del(struct root *r, const char *key)
{
    struct entry **p = find(r, key), *e = *p;
    if (!e || strcmp(e->key, key) != 0)
        return 1;
    *p = e->next;
    free(e->key);
    free(e->value);
    free(e);
    r->count--;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: kv put KEY VALUE | get KEY | del KEY | list\n");
    return 2;
}

/* Runs a change in a write transaction; 0 on success. */
static int change(struct root *r, int (*fn)(struct root *, const char *, const char *), const char *k,
                  const char *v)
{
    int err = tm_begin(), rc;
    if (err) {
        fprintf(stderr, "kv: tm_begin: %s\n", tm_strerror(err));
        return 1;
    }
    rc = fn(r, k, v);
    if ((err = tm_commit())) {
        fprintf(stderr, "kv: tm_commit: %s\n", tm_strerror(err));
        return 1;
    }
    return rc;
}

static int put2(struct root *r, const char *k, const char *v)
{
    return put(r, k, v) ? (fprintf(stderr, "kv: out of memory\n"), 1) : 0;
}

static int del2(struct root *r, const char *k, const char *v)
{
    (void)v;
    return del(r, k);
}

int main(int argc, char **argv)
{
    struct root *r;
    int rc = 0;
    if (!tm_root) {
        fprintf(stderr, "kv: run me with LD_PRELOAD=libtmfpreload.so\n");
        return 2;
    }
    if (argc < 2)
        return usage();
    if (!(r = tm_root(sizeof *r))) {
        perror("kv: tm_root");
        return 1;
    }
    if (strcmp(argv[1], "put") == 0 && argc == 4)
        return change(r, put2, argv[2], argv[3]);
    if (strcmp(argv[1], "del") == 0 && argc == 3)
        return change(r, del2, argv[2], NULL);
    if (strcmp(argv[1], "get") == 0 && argc == 3) {
        struct entry *e;
        tm_read_begin();
        e = *find(r, argv[2]);
        if (e && strcmp(e->key, argv[2]) == 0)
            printf("%s\n", e->value);
        else
            rc = 1;
        tm_read_end();
        return rc;
    }
    if (strcmp(argv[1], "list") == 0 && argc == 2) {
        tm_read_begin();
        for (struct entry *e = r->head; e; e = e->next)
            printf("%s=%s\n", e->key, e->value);
        printf("(%ld keys)\n", r->count);
        tm_read_end();
        return 0;
    }
    return usage();
}
