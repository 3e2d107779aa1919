/*
 * ops — a persistent program of arithmetic steps: a C table of function
 * pointers kept in the store.
 *
 *   LD_PRELOAD=libtmfpreload.so ops add mul 3     appends "mul 3"
 *   LD_PRELOAD=libtmfpreload.so ops run 10        applies the steps to 10
 *   LD_PRELOAD=libtmfpreload.so ops list
 *
 * Each step is a malloc'd node holding a pointer to its entry of the
 * static table below (static data of the program) and, copied from it, a
 * pointer to the function (its code).  Both stay valid across restarts
 * because the preload runs the program at the same addresses each time;
 * after a rebuild the store is refused with TM_ELAYOUT, naming the
 * program, rather than jumping through a stale pointer.  Like kv, it does
 * not link tmfalloc: the preload provides the tm_* calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *tm_root(size_t size) __attribute__((weak));
extern int tm_begin(void) __attribute__((weak));
extern int tm_commit(void) __attribute__((weak));
extern const char *tm_strerror(int code) __attribute__((weak));

static double add(double x, double a) { return x + a; }
static double sub(double x, double a) { return x - a; }
static double mul(double x, double a) { return x * a; }
static double divide(double x, double a) { return x / a; }

struct opdef {
    const char *name;
    double (*fn)(double, double);
};

static const struct opdef table[] = {
    {"add", add}, {"sub", sub}, {"mul", mul}, {"div", divide},
};

struct step {
    struct step *next;
    const struct opdef *def;     /* into the static table */
    double (*fn)(double, double); /* into the code */
    double arg;
};

struct root {
    struct step *first, **last;
    long nsteps;
};

static int usage(void)
{
    fprintf(stderr, "usage: ops add add|sub|mul|div NUMBER | run NUMBER | list\n");
    return 2;
}

static int append(struct root *r, const char *name, double arg)
{
    struct step *s;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        if (strcmp(table[i].name, name) != 0)
            continue;
        if (!(s = malloc(sizeof *s)))
            return -1;
        s->next = NULL;
        s->def = &table[i];
        s->fn = table[i].fn;
        s->arg = arg;
        if (!r->last)
            r->last = &r->first;
        *r->last = s;
        r->last = &s->next;
        r->nsteps++;
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct root *r;
    int err;
    if (!tm_root) {
        fprintf(stderr, "ops: run me with LD_PRELOAD=libtmfpreload.so\n");
        return 2;
    }
    if (!(r = tm_root(sizeof *r))) {
        fprintf(stderr, "ops: %s\n", tm_strerror(errno));
        return 1;
    }
    if (argc == 4 && strcmp(argv[1], "add") == 0) {
        if ((err = tm_begin()) != 0) {
            fprintf(stderr, "ops: %s\n", tm_strerror(err));
            return 1;
        }
        err = append(r, argv[2], atof(argv[3]));
        if (tm_commit() != 0 || err < 0)
            return 1;
        if (err)
            return usage();
    } else if (argc == 3 && strcmp(argv[1], "run") == 0) {
        double x = atof(argv[2]);
        for (const struct step *s = r->first; s; s = s->next)
            x = s->fn(x, s->arg);
        printf("%g\n", x);
    } else if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (const struct step *s = r->first; s; s = s->next)
            printf("%s %g\n", s->def->name, s->arg);
        printf("(%ld steps)\n", r->nsteps);
    } else {
        return usage();
    }
    return 0;
}
