/*
 * tmf_map.c — "tmf map": a picture of the arena.  heap_walk (heap_check.c)
 * reports runs of header, superblock, used and free blocks, span metadata,
 * used and free slots and the fence; they are binned into cells of a
 * power-of-two number of bytes, each cell shown as the kind that covers most
 * of its bytes: ANSI colours and letters in the terminal, or a PNG drawn by
 * gnuplot from a data file and a script in a temporary directory.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap.h"
#include "tmf.h"

#define TARGET_ROWS 24

static const struct kind_look {
    char ch;
    const char *ansi; /* background colour */
    const char *name, *rgb;
} looks[HK_COUNT] = {
    [HK_HEADER] = {'H', "45", "header", "#b000b0"},
    [HK_SUPER] = {'S', "44", "superblock", "#2040d0"},
    [HK_USED] = {'#', "41", "used block", "#d02020"},
    [HK_FREE] = {'.', "42", "free block", "#30b030"},
    [HK_SPAN_META] = {'m', "43", "span metadata", "#c0a000"},
    [HK_SPAN_USED] = {'s', "101", "used small slots", "#ff8060"},
    [HK_SPAN_FREE] = {'o', "46", "free small slots", "#40c0c0"},
    [HK_FENCE] = {'|', "47", "fence", "#808080"},
};

struct map {
    uint64_t cell, ncells;   /* bytes per cell, number of cells */
    uint64_t (*bytes)[HK_COUNT]; /* per cell, per kind */
    uint64_t total[HK_COUNT];
};

static void add_run(void *ctx, uint64_t off, uint64_t len, int kind)
{
    struct map *m = ctx;
    uint64_t end = off + len;
    tmf_progress_set(end);
    m->total[kind] += len;
    while (off < end && off / m->cell < m->ncells) {
        uint64_t c = off / m->cell, stop = (c + 1) * m->cell;
        uint64_t n = (end < stop ? end : stop) - off;
        m->bytes[c][kind] += n;
        off += n;
    }
}

/* The kind covering most of a cell, except that any used byte shows: a
 * small live object must not vanish in a sea of free space. */
static int dominant(const uint64_t *b)
{
    int k, best = 0;
    if (b[HK_USED] || b[HK_SPAN_USED])
        return b[HK_USED] >= b[HK_SPAN_USED] ? HK_USED : HK_SPAN_USED;
    for (k = 1; k < HK_COUNT; k++)
        if (b[k] > b[best])
            best = k;
    return best;
}

/* Walks the heap of the open store into m; 0 or a TM_ code. */
static int build(tm_store *st, unsigned width, struct map *m)
{
    uint64_t size, want;
    struct log_scan scan;
    struct tm_view v;
    int r;
    memset(m, 0, sizeof *m);
    if ((r = tmf_read_begin(st, &scan)) != 0)
        return r;
    inspect_view(st, &v);
    size = v.sb->size, want = size / ((uint64_t)width * TARGET_ROWS);
    for (m->cell = 16; m->cell < want; m->cell <<= 1)
        ;
    m->ncells = (size + m->cell - 1) / m->cell;
    m->bytes = calloc(m->ncells, sizeof *m->bytes);
    tmf_progress_start("walking the heap", size);
    r = m->bytes ? -heap_walk(st, add_run, m) : ENOMEM;
    tmf_progress_end();
    tm_store_read_end(st);
    return r;
}

static void print_cell(int kind, int color)
{
    if (color)
        printf("\033[%sm%c\033[0m", looks[kind].ansi, looks[kind].ch);
    else
        putchar(looks[kind].ch);
}

static void print_text(const struct map *m, unsigned width, int color)
{
    uint64_t c;
    int k;
    char unit[32];
    if (m->cell >= 1024)
        snprintf(unit, sizeof unit, "%llu KiB", (unsigned long long)(m->cell >> 10));
    else
        snprintf(unit, sizeof unit, "%llu bytes", (unsigned long long)m->cell);
    printf("one cell = %s, %llu cells\n", unit, (unsigned long long)m->ncells);
    for (c = 0; c < m->ncells; c++) {
        if (c % width == 0)
            printf("%s%#10llx ", c ? "\n" : "", (unsigned long long)(c * m->cell));
        print_cell(dominant(m->bytes[c]), color);
    }
    printf("\n\nlegend:\n");
    for (k = 0; k < HK_COUNT; k++) {
        printf("  ");
        print_cell(k, color);
        printf(" %-17s %llu bytes\n", looks[k].name, (unsigned long long)m->total[k]);
    }
}

/* ---- PNG through gnuplot ---- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int write_data(const char *path, const struct map *m, unsigned width)
{
    FILE *f = fopen(path, "w");
    uint64_t c;
    if (!f)
        return -1;
    for (c = 0; c < m->ncells; c++)
        fprintf(f, "%llu %llu %d\n", (unsigned long long)(c % width),
                (unsigned long long)(c / width), dominant(m->bytes[c]));
    return fclose(f) == 0 ? 0 : -1;
}

/* A gnuplot single-quoted string: a quote inside is doubled, and nothing
 * else is special (names with a newline are refused before this). */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static int write_script(const char *path, const char *data, const char *png, const struct map *m,
                        unsigned width)
{
    FILE *f = fopen(path, "w");
    uint64_t rows = (m->ncells + width - 1) / width;
    int k;
    if (!f)
        return -1;
    fprintf(f, "set terminal png size %u,%llu\nset output ", 200 + width * 12,
            (unsigned long long)(120 + rows * 12));
    put_quoted(f, png);
    fprintf(f, "\n");
    fprintf(f, "set rmargin 22\n");
    fprintf(f, "set title 'tmfalloc arena: one cell = %llu bytes'\nunset key\n",
            (unsigned long long)m->cell);
    fprintf(f, "set xrange [-0.5:%u.5]\nset yrange [%llu.5:-0.5]\nunset xtics\nunset ytics\n",
            width - 1, (unsigned long long)(rows - 1));
    fprintf(f, "set cbrange [-0.5:%d.5]\nset palette maxcolors %d\nset palette defined (",
            HK_COUNT - 1, HK_COUNT);
    for (k = 0; k < HK_COUNT; k++)
        fprintf(f, "%s%d '%s'", k ? ", " : "", k, looks[k].rgb);
    fprintf(f, ")\nset cbtics (");
    for (k = 0; k < HK_COUNT; k++)
        fprintf(f, "%s'%s' %d", k ? ", " : "", looks[k].name, k);
    fprintf(f, ")\nplot ");
    put_quoted(f, data);
    fprintf(f, " using 1:2:3 with image\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* Runs "gnuplot script"; 0, 127 when gnuplot is missing, else its status. */
static int run_gnuplot(const char *script)
{
    int status;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int draw_png(const struct map *m, unsigned width, const char *png)
{
    const char *t = getenv("TMPDIR");
    char dir[512], data[600], script[600];
    int r = -1;
    if (strchr(png, '\n') || (t && strchr(t, '\n'))) {
        tmf_err(png, "a file name with a newline cannot be passed to gnuplot");
        return EXIT_DAMAGED;
    }
    snprintf(dir, sizeof dir, "%s/tmfmap.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        tmf_err(dir, "%s", strerror(errno));
        return EXIT_DAMAGED;
    }
    snprintf(data, sizeof data, "%s/arena.dat", dir);
    snprintf(script, sizeof script, "%s/arena.gp", dir);
    if (write_data(data, m, width) == 0 && write_script(script, data, png, m, width) == 0)
        r = run_gnuplot(script);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    if (r == 127)
        tmf_err("gnuplot", "not found: install gnuplot (e.g. apt-get install gnuplot-nox) for --png");
    else if (r != 0)
        tmf_err(png, "gnuplot failed to draw it");
    else
        printf("wrote %s (one cell = %llu bytes)\n", png, (unsigned long long)m->cell);
    return r == 0 ? EXIT_CLEAN : EXIT_DAMAGED;
}

int tmf_map(const struct tmf_args *a)
{
    struct map m;
    tm_store *st;
    int ex = tmf_open_ro(a->file, &st, NULL, 0), r;
    if (ex != EXIT_CLEAN)
        return ex == TMF_UNFINISHED ? EXIT_DAMAGED : ex;
    r = build(st, a->width, &m);
    tm_close(st);
    if (r != 0) {
        tmf_err(a->file, "%s", r == EROFS ? "recovery pending: run 'tmf recover' first"
                              : r == TM_ECORRUPT ? "damaged heap: run 'tmf check'"
                                                 : tm_strerror(r));
        free(m.bytes);
        return r == TM_ECORRUPT || r == EROFS ? EXIT_DAMAGED : EXIT_UNUSABLE;
    }
    if (a->png)
        ex = draw_png(&m, a->width, a->png);
    else
        print_text(&m, a->width, a->color < 0 ? isatty(STDOUT_FILENO) : a->color);
    free(m.bytes);
    return ex;
}
