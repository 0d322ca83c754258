/* The progress bar of `chainrule train` and its plain per-epoch line. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Redraw no more often than this (seconds): drawing costs a write(2). */
#define REDRAW_INTERVAL 0.1

double cr_progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int terminal_columns(FILE *out)
{
    const char *env = getenv("COLUMNS");
#ifdef TIOCGWINSZ
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
#else
    (void)out;
#endif
    if (env && atoi(env) >= 20)
        return atoi(env);
    return 80;
}

void cr_progress_begin(cr_progress *p, FILE *out, cr_progress_mode mode, int epoch, int epochs,
                       int64_t total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->start = cr_progress_now();
    p->last_draw = -1.0;
    p->enabled =
        out && mode != CR_PROGRESS_NEVER && (mode == CR_PROGRESS_ALWAYS || isatty(fileno(out)));
    p->columns = p->enabled ? terminal_columns(out) : 80;
}

double cr_progress_elapsed(const cr_progress *p) { return cr_progress_now() - p->start; }

/* "m:ss", or "h:mm:ss" from an hour on. */
static void format_duration(char *buf, size_t size, double seconds)
{
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void cr_progress_update(cr_progress *p, int64_t done, double loss, double accuracy)
{
    char head[48], tail[160], eta[32], bar[128];
    double now, elapsed;
    int width, filled;
    size_t len;
    if (!p->enabled)
        return;
    p->done = done;
    now = cr_progress_now();
    if (p->last_draw >= 0 && done < p->total && now - p->last_draw < REDRAW_INTERVAL)
        return;
    p->last_draw = now;
    elapsed = now - p->start;

    snprintf(head, sizeof head, "epoch %d/%d ", p->epoch, p->epochs);
    if (done > 0 && done < p->total)
        format_duration(eta, sizeof eta, elapsed / (double)done * (double)(p->total - done));
    else
        format_duration(eta, sizeof eta, elapsed);
    len = (size_t)snprintf(tail, sizeof tail, "  %lld/%lld  %3d%%  %s %s", (long long)done,
                           (long long)p->total,
                           p->total ? (int)(100.0 * (double)done / (double)p->total) : 100,
                           done < p->total ? "ETA" : "in", eta);
    if (isfinite(loss) && len < sizeof tail)
        len += (size_t)snprintf(tail + len, sizeof tail - len, "  loss %.4f", loss);
    if (isfinite(accuracy) && len < sizeof tail)
        snprintf(tail + len, sizeof tail - len, "  acc %.4f", accuracy);

    /* The bar takes what the terminal width leaves, within [10, 40]. */
    width = p->columns - 1 - (int)strlen(head) - (int)strlen(tail) - 2;
    width = width > 40 ? 40 : width < 10 ? 10 : width;
    filled = p->total ? (int)((double)width * (double)done / (double)p->total) : width;
    filled = filled > width ? width : filled;
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '=' : ' ';
    if (filled > 0 && filled < width)
        bar[filled - 1] = '>';
    bar[width] = '\0';
    /* \r returns to the line start; ESC[K clears what a longer line left. */
    fprintf(p->out, "\r%s[%s]%s\033[K", head, bar, tail);
    fflush(p->out);
    p->drawn = true;
}

void cr_progress_end(cr_progress *p)
{
    if (p->enabled && p->drawn) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
    }
    p->drawn = false;
}

void cr_progress_epoch_line(FILE *out, int epoch, int epochs, double loss, double accuracy,
                            double val_loss, double val_accuracy, double seconds)
{
    fprintf(out, "epoch %d/%d  loss %.4f  acc %.4f", epoch, epochs, loss, accuracy);
    if (isfinite(val_loss))
        fprintf(out, "  val_loss %.4f", val_loss);
    if (isfinite(val_accuracy))
        fprintf(out, "  val_acc %.4f", val_accuracy);
    fprintf(out, "  %.1f s\n", seconds);
    fflush(out);
}
