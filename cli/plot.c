/* SVG charts and CSV logs of a training run. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "plot.h"

#include <chainrule/io.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- history */

int cr_history_add(cr_history *h, double train_loss, double train_acc, double val_loss,
                   double val_acc, double seconds)
{
    double **arrays[5] = {&h->train_loss, &h->train_acc, &h->val_loss, &h->val_acc, &h->seconds};
    double values[5] = {train_loss, train_acc, val_loss, val_acc, seconds};
    if (h->epochs == h->capacity) {
        size_t cap = h->capacity ? 2 * h->capacity : 32;
        for (int k = 0; k < 5; k++) {
            double *p = realloc(*arrays[k], cap * sizeof(double));
            if (!p)
                return -1; /* arrays already grown keep their old contents */
            *arrays[k] = p;
        }
        h->capacity = cap;
    }
    for (int k = 0; k < 5; k++)
        (*arrays[k])[h->epochs] = values[k];
    h->epochs++;
    return 0;
}

void cr_history_free(cr_history *h)
{
    if (!h)
        return;
    free(h->train_loss);
    free(h->train_acc);
    free(h->val_loss);
    free(h->val_acc);
    free(h->seconds);
    memset(h, 0, sizeof *h);
}

/* ------------------------------------------------------------ file output */

/* Both files go through the library's atomic writer (an unpredictable
   temporary name created exclusively, fsync, rename), so a reader never sees
   half a chart, a planted symbolic link is never followed and two runs
   writing the same file cannot mix their bytes. */
static int write_file(const char *path, io_writer write, void *ctx, char *err, size_t errlen)
{
    ad_error e;
    if (!path || !*path) {
        snprintf(err, errlen, "no output file name");
        return -1;
    }
    if (io_write_atomic(path, write, ctx, &e) != 0) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- CSV log */

static void csv_value(FILE *fp, double v)
{
    if (isfinite(v))
        fprintf(fp, ",%.6g", v);
    else
        fputc(',', fp);
}

static bool write_csv(FILE *fp, void *ctx)
{
    const cr_history *h = ctx;
    fputs("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n", fp);
    for (size_t i = 0; h && i < h->epochs; i++) {
        fprintf(fp, "%zu", i + 1);
        csv_value(fp, h->train_loss[i]);
        csv_value(fp, h->train_acc[i]);
        csv_value(fp, h->val_loss[i]);
        csv_value(fp, h->val_acc[i]);
        csv_value(fp, h->seconds[i]);
        fputc('\n', fp);
    }
    return !ferror(fp);
}

int cr_log_csv(const char *path, const cr_history *h, char *err, size_t errlen)
{
    return write_file(path, write_csv, (void *)h, err, errlen);
}

/* ------------------------------------------------------------------ SVG */

/* Geometry of the picture, in SVG user units (pixels). */
enum {
    SVG_W = 960,
    SVG_H = 420,
    PANEL_W = 370, /* plot area of a panel */
    PANEL_H = 280,
    PANEL_TOP = 70,
    PANEL_LEFT0 = 80, /* left edge of the first plot area */
    PANEL_STEP = 480  /* from one panel's left edge to the next */
};

#define TRAIN_COLOR "#1f77b4"
#define VAL_COLOR "#ff7f0e"

/* An axis: data range [lo, hi] with ticks every step from first. */
typedef struct axis {
    double lo, hi, first, step;
    int decimals;
} axis;

/* The smallest of 1, 2 or 5 times a power of ten that splits range into at
   most target intervals. */
static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f <= 1.0 + 1e-9 ? 1.0 : f <= 2.0 + 1e-9 ? 2.0 : f <= 5.0 + 1e-9 ? 5.0 : 10.0) * mag;
}

/* A y axis around [lo, hi] with about five ticks, its ends on ticks;
   clamped to [0, 1] when clamp01 (accuracy). */
static axis make_y_axis(double lo, double hi, bool clamp01)
{
    axis a;
    if (!(hi > lo)) { /* one value, or a constant series */
        double pad = fabs(lo) > 1e-12 ? fabs(lo) * 0.1 : 0.5;
        lo -= pad;
        hi += pad;
    }
    a.step = nice_step(hi - lo, 6);
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    if (clamp01) {
        a.lo = a.lo < 0.0 ? 0.0 : a.lo;
        a.hi = a.hi > 1.0 ? 1.0 : a.hi;
        if (!(a.hi > a.lo)) {
            a.lo = 0.0;
            a.hi = 1.0;
            a.step = 0.2;
        }
    }
    a.first = a.lo;
    a.decimals = a.step >= 1.0 ? 0 : (int)ceil(-log10(a.step) - 1e-9);
    return a;
}

/* The x axis over epochs 1..n: integer ticks. */
static axis make_x_axis(size_t n)
{
    axis a;
    a.lo = n > 1 ? 1.0 : 0.0;
    a.hi = n > 1 ? (double)n : 2.0;
    a.step = nice_step(a.hi - a.lo, 8);
    a.step = a.step < 1.0 ? 1.0 : a.step;
    a.first = 1.0;
    a.decimals = 0;
    return a;
}

static double map_x(const axis *a, int left, double v)
{
    return left + (v - a->lo) / (a->hi - a->lo) * PANEL_W;
}

static double map_y(const axis *a, double v)
{
    return PANEL_TOP + PANEL_H - (v - a->lo) / (a->hi - a->lo) * PANEL_H;
}

static void xml_text(FILE *fp, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", fp);
            break;
        case '<':
            fputs("&lt;", fp);
            break;
        case '>':
            fputs("&gt;", fp);
            break;
        case '"':
            fputs("&quot;", fp);
            break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, fp);
        }
    }
}

/* min and max of the finite values of up to two series; false if none. */
static bool data_range(const double *a, const double *b, size_t n, double *lo, double *hi)
{
    bool any = false;
    const double *series[2] = {a, b};
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; series[s] && i < n; i++) {
            double v = series[s][i];
            if (!isfinite(v))
                continue;
            if (!any || v < *lo)
                *lo = v;
            if (!any || v > *hi)
                *hi = v;
            any = true;
        }
    return any;
}

static bool has_finite(const double *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        if (isfinite(v[i]))
            return true;
    return false;
}

static double last_finite(const double *v, size_t n)
{
    for (size_t i = n; v && i-- > 0;)
        if (isfinite(v[i]))
            return v[i];
    return NAN;
}

/* One series: a path broken at missing values, and dots when few. */
static void draw_series(FILE *fp, const double *v, size_t n, const axis *ax, const axis *ay,
                        int left, const char *color, bool dashed)
{
    bool pen_down = false;
    fprintf(fp,
            "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\"%s"
            " d=\"",
            color, dashed ? " stroke-dasharray=\"7 4\"" : "");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            pen_down = false;
            continue;
        }
        fprintf(fp, "%s%.2f %.2f ", pen_down ? "L" : "M", map_x(ax, left, (double)(i + 1)),
                map_y(ay, v[i]));
        pen_down = true;
    }
    fputs("\"/>\n", fp);
    if (n <= 40)
        for (size_t i = 0; i < n; i++)
            if (isfinite(v[i]))
                fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                        map_x(ax, left, (double)(i + 1)), map_y(ay, v[i]), color);
}

/* A panel: frame, grid, ticks, labels, both series and the legend. */
static void draw_panel(FILE *fp, int left, const char *name, const double *train, const double *val,
                       size_t n, bool accuracy)
{
    double lo = 0, hi = 0;
    axis ax = make_x_axis(n), ay;
    int bottom = PANEL_TOP + PANEL_H, legend_y;
    bool has_train = has_finite(train, n), has_val = has_finite(val, n);

    fprintf(fp,
            "<text x=\"%d\" y=\"%d\" font-size=\"16\" font-weight=\"bold\" "
            "text-anchor=\"middle\">%s</text>\n",
            left + PANEL_W / 2, PANEL_TOP - 12, name);
    fprintf(fp,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            left, PANEL_TOP, PANEL_W, PANEL_H);
    if (!data_range(has_train ? train : NULL, has_val ? val : NULL, n, &lo, &hi)) {
        fprintf(fp,
                "<text x=\"%d\" y=\"%d\" font-size=\"14\" fill=\"#888\" "
                "text-anchor=\"middle\">no data</text>\n",
                left + PANEL_W / 2, PANEL_TOP + PANEL_H / 2);
        return;
    }
    ay = make_y_axis(lo, hi, accuracy);

    /* Horizontal grid lines with y tick labels. */
    for (int k = 0;; k++) {
        double v = ay.first + k * ay.step, y;
        if (v > ay.hi + ay.step * 1e-6)
            break;
        y = map_y(&ay, v);
        fprintf(fp, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#e4e4e4\"/>\n",
                left, y, left + PANEL_W, y);
        fprintf(fp, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#444\"/>\n",
                left - 5, y, left, y);
        fprintf(fp,
                "<text x=\"%d\" y=\"%.2f\" font-size=\"12\" text-anchor=\"end\" "
                "dominant-baseline=\"middle\">%.*f</text>\n",
                left - 8, y, ay.decimals, fabs(v) < ay.step * 1e-6 ? 0.0 : v);
    }
    /* Epoch ticks: 1, then the multiples of the step, up to the last epoch. */
    for (double v = 1.0; v <= (double)n + 1e-9; v = (floor(v / ax.step + 1e-9) + 1) * ax.step) {
        double x = map_x(&ax, left, v);
        fprintf(fp, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#444\"/>\n", x,
                bottom, x, bottom + 5);
        fprintf(fp,
                "<text x=\"%.2f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%.0f"
                "</text>\n",
                x, bottom + 19, v);
    }
    fprintf(fp, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">epoch</text>\n",
            left + PANEL_W / 2, bottom + 40);
    fprintf(fp,
            "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 %d %d)\">%s</text>\n",
            left - 52, PANEL_TOP + PANEL_H / 2, left - 52, PANEL_TOP + PANEL_H / 2,
            accuracy ? "accuracy" : "loss");

    if (has_train)
        draw_series(fp, train, n, &ax, &ay, left, TRAIN_COLOR, false);
    if (has_val)
        draw_series(fp, val, n, &ax, &ay, left, VAL_COLOR, true);

    /* Legend in the corner the curves usually leave empty: top right for a
       falling loss, bottom right for a rising accuracy. */
    legend_y = accuracy ? bottom - 12 - (has_train && has_val ? 22 : 0) - 10 : PANEL_TOP + 10;
    fprintf(fp,
            "<rect x=\"%d\" y=\"%d\" width=\"170\" height=\"%d\" fill=\"white\" "
            "fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n",
            left + PANEL_W - 180, legend_y, has_train && has_val ? 50 : 28);
    for (int s = 0, row = 0; s < 2; s++) {
        bool present = s == 0 ? has_train : has_val;
        char label[64];
        int y = legend_y + 18 + 22 * row;
        if (!present)
            continue;
        double last = last_finite(s == 0 ? train : val, n);
        snprintf(label, sizeof label, fabs(last) < 1000.0 ? "%s %.4f" : "%s %.4g",
                 s == 0 ? "train" : "validation", last);
        fprintf(fp,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"2\"%s/>\n",
                left + PANEL_W - 170, y - 4, left + PANEL_W - 140, y - 4,
                s == 0 ? TRAIN_COLOR : VAL_COLOR, s == 0 ? "" : " stroke-dasharray=\"7 4\"");
        fprintf(fp, "<text x=\"%d\" y=\"%d\" font-size=\"12\">%s</text>\n", left + PANEL_W - 132, y,
                label);
        row++;
    }
}

typedef struct {
    const cr_history *h;
    const char *title;
} svg_job;

static bool write_svg(FILE *fp, void *ctx)
{
    const svg_job *job = ctx;
    const cr_history *h = job->h;
    const char *title = job->title;
    size_t n = h ? h->epochs : 0;
    fprintf(fp,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, "
            "sans-serif\">\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    fputs("<title>", fp);
    xml_text(fp, title ? title : "chainrule training");
    fputs("</title>\n", fp);
    fprintf(fp, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", SVG_W, SVG_H);
    fprintf(fp, "<text x=\"%d\" y=\"28\" font-size=\"18\" text-anchor=\"middle\">", SVG_W / 2);
    xml_text(fp, title ? title : "chainrule training");
    fputs("</text>\n", fp);
    draw_panel(fp, PANEL_LEFT0, "Loss", h ? h->train_loss : NULL, h ? h->val_loss : NULL, n, false);
    draw_panel(fp, PANEL_LEFT0 + PANEL_STEP, "Accuracy", h ? h->train_acc : NULL,
               h ? h->val_acc : NULL, n, true);
    fputs("</svg>\n", fp);
    return !ferror(fp);
}

int cr_plot_svg(const char *path, const cr_history *h, const char *title, char *err, size_t errlen)
{
    svg_job job = {h, title};
    return write_file(path, write_svg, &job, err, errlen);
}
