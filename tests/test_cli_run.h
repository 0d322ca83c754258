/* test_cli_run.h -- helpers shared by the tests that run the built chainrule
 * binary: a work directory per suite, paths in it, reading files, and
 * running `chainrule ARGS` with both output streams captured. The including
 * file defines CHAINRULE_CLI (the binary's path). */
#ifndef CHAINRULE_TEST_CLI_RUN_H
#define CHAINRULE_TEST_CLI_RUN_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef CHAINRULE_CLI
#error "CHAINRULE_CLI (path of the built chainrule binary) is not defined"
#endif
#ifndef CHAINRULE_TEST_DIR
#error "CHAINRULE_TEST_DIR is not defined"
#endif

static char workdir[256];

/* Creates $TMPDIR/TAG_XXXXXX (or under /tmp) as the work directory. */
static inline void make_workdir_tagged(const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(workdir, sizeof workdir, "%s/%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    cr_assert_not_null(mkdtemp(workdir), "mkdtemp %s", workdir);
}

static inline void remove_workdir(void)
{
    char cmd[512];
    if (workdir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", workdir);
    }
}

/* A path in the work directory (valid for the next 7 calls). */
static inline const char *wpath(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", workdir, name);
    return b;
}

/* The whole file, 0-terminated (caller frees), its length in *len (may be NULL). */
static inline char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    if (len)
        *len = (size_t)n;
    fclose(f);
    return s;
}

typedef struct {
    int status; /* exit status, or -1 when killed by a signal */
    char *out, *err;
} result;

static inline void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

/*
 * Runs a shell script with both streams captured, for what run_cli cannot
 * say (a file-size limit, stdout sent to /dev/full, a time limit). The
 * script names the binary as "$CLI"; its own redirections win over the
 * capture.
 */
#ifdef __GNUC__
__attribute__((format(printf, 1, 2)))
#endif
static inline result
run_sh(const char *fmt, ...)
{
    char script[2048], cmd[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(script, sizeof script, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "CLI='%s'; ( %s ) >'%s' 2>'%s' </dev/null", CHAINRULE_CLI, script,
             wpath("stdout"), wpath("stderr"));
    int st = system(cmd);
    result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(wpath("stdout"), NULL);
    r.err = slurp(wpath("stderr"), NULL);
    cr_assert(r.out && r.err, "cannot read the output of: %s", cmd);
    return r;
}

/* Runs `chainrule ARGS` (ARGS go through the shell) capturing both streams. */
#ifdef __GNUC__
__attribute__((format(printf, 1, 2)))
#endif
static inline result
run_cli(const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return run_sh("\"$CLI\" %s", args);
}

#endif
