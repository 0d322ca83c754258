/* The CLI's output helpers: SVG chart structure, CSV log, progress bar. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cli/plot.h"
#include "../cli/progress.h"

#define assert_contains(haystack, needle)                                                          \
    cr_assert(strstr((haystack), (needle)) != NULL, "output lacks \"%s\"", (needle))

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/chainrule-plot-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static const char *tmp_path(const char *name)
{
    static char buf[2][512];
    static int next;
    char *p = buf[next++ % 2];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A Fashion-MNIST-like run of n epochs. */
static cr_history run(size_t n, bool with_validation)
{
    cr_history h = {0};
    for (size_t e = 1; e <= n; e++) {
        double t = (double)e;
        cr_assert_eq(cr_history_add(&h, 0.22 + 0.5 * exp(-t / 4), 0.92 - 0.16 * exp(-t / 4),
                                    with_validation ? 0.30 + 0.2 * exp(-t / 3) : NAN,
                                    with_validation ? 0.885 - 0.06 * exp(-t / 3) : NAN, 3.25),
                     0);
    }
    return h;
}

/* Every x in d="..", cx and cy attributes lies inside the picture. */
static void assert_coordinates_inside(const char *svg)
{
    const char *keys[3] = {" cx=\"", " cy=\"", " d=\""};
    for (int k = 0; k < 3; k++)
        for (const char *p = strstr(svg, keys[k]); p; p = strstr(p + 1, keys[k])) {
            const char *q = p + strlen(keys[k]);
            while (*q && *q != '"') {
                char *end;
                double v;
                while (*q == 'M' || *q == 'L' || *q == ' ')
                    q++;
                if (*q == '"')
                    break;
                v = strtod(q, &end);
                cr_assert_neq(end, q, "not a number in a coordinate list");
                cr_assert(v >= 0.0 && v <= 960.0, "coordinate %g outside the picture", v);
                q = end;
            }
        }
}

Test(plot, svg_has_two_panels_axes_legend_and_series, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = run(20, true);
    char err[256] = "";
    char *svg;
    cr_assert_eq(
        cr_plot_svg(tmp_path("run.svg"), &h, "784-300-100-10 <SGD> & \"friends\"", err, sizeof err),
        0, "%s", err);
    svg = slurp(tmp_path("run.svg"));
    cr_assert_eq(strncmp(svg, "<?xml version=\"1.0\"", 19), 0);
    assert_contains(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"420\"");
    cr_assert_eq(strcmp(svg + strlen(svg) - 7, "</svg>\n"), 0);
    assert_contains(svg, "784-300-100-10 &lt;SGD&gt; &amp; &quot;friends&quot;</text>");
    assert_contains(svg, ">Loss</text>");
    assert_contains(svg, ">Accuracy</text>");
    cr_assert_eq(count(svg, ">epoch</text>"), 2, "an x label per panel");
    assert_contains(svg, ">loss</text>");
    assert_contains(svg, ">accuracy</text>");
    cr_assert_eq(count(svg, "<path "), 4, "train and validation in both panels");
    cr_assert_eq(count(svg, "stroke-dasharray"), 4, "validation dashed: 2 curves, 2 swatches");
    cr_assert_eq(count(svg, "<circle "), 80, "a dot per epoch and series when few epochs");
    /* Legends carry the last values: loss 0.22+0.5e^-5, accuracy 0.92-0.16e^-5. */
    assert_contains(svg, ">train 0.2234</text>");
    assert_contains(svg, ">validation 0.3003</text>");
    assert_contains(svg, ">train 0.9189</text>");
    assert_contains(svg, ">validation 0.8849</text>");
    /* Ticks: epochs 1, 5, ..., 20; loss 0.2 .. 0.7; accuracy 0.75 .. 0.95. */
    cr_assert_eq(count(svg, "text-anchor=\"middle\">20</text>"), 2);
    cr_assert_eq(count(svg, "text-anchor=\"middle\">5</text>"), 2);
    assert_contains(svg, ">0.7</text>");
    assert_contains(svg, ">0.2</text>");
    assert_contains(svg, ">0.95</text>");
    assert_contains(svg, ">0.75</text>");
    assert_coordinates_inside(svg);
    cr_assert_eq(access(tmp_path("run.svg.tmp"), F_OK), -1, "temporary file renamed");
    free(svg);
    cr_history_free(&h);
    cr_assert_eq(h.epochs, 0);
    cr_history_free(NULL);
}

Test(plot, svg_without_validation_gaps_and_empty, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = run(100, false), empty = {0};
    char err[256];
    char *svg;
    h.train_loss[50] = NAN; /* a diverged value breaks the line */
    cr_assert_eq(cr_plot_svg(tmp_path("a.svg"), &h, NULL, err, sizeof err), 0, "%s", err);
    svg = slurp(tmp_path("a.svg"));
    cr_assert_eq(count(svg, "<path "), 2);
    cr_assert_eq(count(svg, "validation"), 0);
    cr_assert_eq(count(svg, "<circle "), 0, "no dots for 100 epochs");
    cr_assert_eq(count(svg, "d=\"M"), 2);
    cr_assert_eq(count(svg, " M"), 1, "the loss curve restarts after the NaN");
    assert_contains(svg, ">chainrule training</text>");
    assert_contains(svg, "text-anchor=\"middle\">100</text>");
    assert_coordinates_inside(svg);
    free(svg);
    cr_assert_eq(cr_plot_svg(tmp_path("e.svg"), &empty, "t", err, sizeof err), 0);
    svg = slurp(tmp_path("e.svg"));
    cr_assert_eq(count(svg, ">no data</text>"), 2);
    free(svg);
    cr_history_free(&h);
}

Test(plot, one_epoch_and_constant_series, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = {0};
    char err[256];
    char *svg;
    cr_history_add(&h, 0.5, 1.0, 0.5, 1.0, 1.0);
    cr_assert_eq(cr_plot_svg(tmp_path("one.svg"), &h, "one", err, sizeof err), 0);
    svg = slurp(tmp_path("one.svg"));
    cr_assert_eq(count(svg, "<circle "), 4);
    cr_assert_eq(count(svg, ">nan") + count(svg, "-nan") + count(svg, "nan<"), 0);
    cr_assert_eq(count(svg, "inf"), 0);
    assert_contains(svg, ">1.00</text>"); /* the accuracy axis stops at 1 */
    cr_assert_eq(count(svg, ">1.05</text>"), 0);
    assert_coordinates_inside(svg);
    free(svg);
    cr_history_free(&h);
}

Test(plot, svg_is_well_formed_xml, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = run(7, true);
    char err[256], cmd[700];
    if (access("/usr/bin/xmllint", X_OK) != 0)
        cr_skip_test("xmllint not installed (Debian: libxml2-utils)");
    cr_assert_eq(cr_plot_svg(tmp_path("x.svg"), &h, "a < b & c", err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/xmllint --noout '%s'", tmp_path("x.svg"));
    cr_assert_eq(system(cmd), 0);
    cr_history_free(&h);
}

Test(plot, csv_log_rows_and_missing_values, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = {0};
    char err[256];
    char *csv;
    cr_history_add(&h, 0.5, 0.8125, 0.25, 0.75, 12.5);
    cr_history_add(&h, 0.125, 0.875, NAN, INFINITY, 11.0);
    cr_assert_eq(cr_log_csv(tmp_path("log.csv"), &h, err, sizeof err), 0, "%s", err);
    csv = slurp(tmp_path("log.csv"));
    cr_assert_str_eq(csv, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n"
                          "1,0.5,0.8125,0.25,0.75,12.5\n"
                          "2,0.125,0.875,,,11\n");
    free(csv);
    cr_history_free(&h);
}

Test(plot, unwritable_path_is_reported, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_history h = run(3, true);
    char err[256] = "";
    cr_assert_eq(cr_plot_svg("/no/such/dir/run.svg", &h, NULL, err, sizeof err), -1);
    cr_assert_str_eq(err,
                     "cannot create a temporary file in /no/such/dir for /no/such/dir/run.svg: "
                     "No such file or directory");
    cr_assert_eq(cr_log_csv("/no/such/dir/run.csv", &h, err, sizeof err), -1);
    cr_assert_str_eq(err,
                     "cannot create a temporary file in /no/such/dir for /no/such/dir/run.csv: "
                     "No such file or directory");
    cr_assert_eq(mkdir(tmp_path("d"), 0700), 0);
    cr_assert_eq(cr_log_csv(tmp_path("d"), &h, err, sizeof err), -1);
    assert_contains(err, "Is a directory");
    cr_assert_eq(access(tmp_path("d.tmp"), F_OK), -1, "temporary file removed");
    cr_history_free(&h);
}

/* ---------------------------------------------------------------- progress */

static char *run_progress(cr_progress_mode mode, int64_t total, double loss, double acc)
{
    FILE *f = tmpfile();
    cr_progress p;
    char *out;
    long n;
    cr_assert_not_null(f);
    setenv("COLUMNS", "200", 1); /* a wide "terminal": the bar gets its full 40 */
    cr_progress_begin(&p, f, mode, 2, 5, total);
    for (int64_t b = 1; b <= total; b++)
        cr_progress_update(&p, b, loss, acc);
    cr_progress_end(&p);
    n = ftell(f);
    rewind(f);
    out = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

Test(progress, bar_shows_batches_percent_loss_accuracy)
{
    char *out = run_progress(CR_PROGRESS_ALWAYS, 10, 0.5, 0.25);
    assert_contains(out, "\repoch 2/5 [===>    "); /* 1/10 of a 40-wide bar */
    assert_contains(out, "  1/10   10%  ETA ");
    assert_contains(out, "  10/10  100%  in 0:00  loss 0.5000  acc 0.2500\033[K");
    assert_contains(out, "[========================================]");
    cr_assert_eq(strcmp(out + strlen(out) - 4, "\r\033[K"), 0, "the bar is erased at the end");
    cr_assert_lt(count(out, "\repoch"), 4, "redraws are throttled");
    free(out);
}

Test(progress, bar_leaves_out_nan_figures)
{
    char *out = run_progress(CR_PROGRESS_ALWAYS, 3, NAN, 0.5);
    cr_assert_eq(count(out, "loss"), 0);
    assert_contains(out, "acc 0.5000");
    free(out);
}

Test(progress, nothing_per_batch_when_not_a_terminal)
{
    char *out = run_progress(CR_PROGRESS_AUTO, 100, 0.5, 0.25); /* a file is no terminal */
    cr_assert_str_eq(out, "");
    free(out);
    out = run_progress(CR_PROGRESS_NEVER, 100, 0.5, 0.25);
    cr_assert_str_eq(out, "");
    free(out);
}

Test(progress, epoch_line_and_timing)
{
    FILE *f = tmpfile();
    char buf[256] = "";
    cr_progress p;
    cr_progress_epoch_line(f, 3, 20, 0.43214, 0.84556, NAN, NAN, 12.34);
    cr_progress_epoch_line(f, 4, 20, 0.4, 0.85, 0.41, 0.86, 9.0);
    rewind(f);
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf, "epoch 3/20  loss 0.4321  acc 0.8456  12.3 s\n");
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf, "epoch 4/20  loss 0.4000  acc 0.8500  val_loss 0.4100  val_acc 0.8600"
                          "  9.0 s\n");
    fclose(f);
    cr_progress_begin(&p, stderr, CR_PROGRESS_NEVER, 1, 1, 1);
    cr_assert_geq(cr_progress_elapsed(&p), 0.0);
    cr_assert_lt(cr_progress_elapsed(&p), 1.0);
}
