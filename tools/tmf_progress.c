/*
 * tmf_progress.c — progress of long work on stderr, and sizes for people.
 *
 *   checking the heap:  42% (1.7 GiB of 4.0 GiB, 2.1 GiB/s)
 *
 * redrawn in place at most ten times a second, and left on its line with
 * ", done." once the work is all done (a plain newline if it stopped short).
 * Shown only when stderr is a terminal, the work is at least PROGRESS_MIN
 * bytes, and --quiet was not given.  One meter at a time: the tool is
 * single-threaded, and the library's hook (tm__progress, which the commands
 * set to tmf_progress_add around a library call) feeds the current meter.
 */
#include <time.h>
#include <unistd.h>

#include "tmf.h"

#define PROGRESS_MIN ((uint64_t)64 << 20)
#define REDRAW_SECONDS 0.1

static int quiet;

static struct meter {
    const char *what;
    uint64_t total, done;
    double start, drawn; /* seconds, monotonic */
    int shown;
} m;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

const char *tmf_human(uint64_t n, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

/* The line, then tail: "" to redraw it later, or its end. */
static void draw(const char *tail)
{
    char done[32], total[32], rate[32];
    uint64_t d = m.done < m.total ? m.done : m.total;
    double secs = now() - m.start;
    m.drawn = now();
    fprintf(stderr, "\r%s: %3u%% (%s of %s, %s/s)\033[K%s", m.what, (unsigned)(d * 100 / m.total),
            tmf_human(d, done, sizeof done), tmf_human(m.total, total, sizeof total),
            tmf_human(secs > 1e-3 ? (uint64_t)((double)d / secs) : d * 1000, rate, sizeof rate), tail);
}

void tmf_progress_quiet(int q)
{
    quiet = q;
}

void tmf_progress_start(const char *what, uint64_t total)
{
    m.what = what;
    m.total = total;
    m.done = 0;
    m.shown = !quiet && total >= PROGRESS_MIN && isatty(STDERR_FILENO);
    if (m.shown) {
        m.start = now();
        draw("");
    }
}

void tmf_progress_set(uint64_t done)
{
    m.done = done;
    if (m.shown && now() - m.drawn >= REDRAW_SECONDS)
        draw("");
}

void tmf_progress_add(uint64_t bytes)
{
    tmf_progress_set(m.done + bytes);
}

void tmf_progress_end(void)
{
    if (m.shown)
        draw(m.done >= m.total ? ", done.\n" : "\n");
    m.shown = 0;
}
